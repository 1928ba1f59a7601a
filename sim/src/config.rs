//! Simulator configuration: one struct used both as the library's `SimConfig` and as the
//! CLI's flags (clap derives the flags from the same fields, so `--help` documents every
//! field and the defaults cannot drift apart: `Default` is defined by parsing no flags).

use clap::{Args, Parser, ValueEnum};

use crate::contact_events::{self, DelayRange};
use crate::instances::{InstanceLimit, Prefill};
use crate::lifetimes::Lifetime;
use crate::schedule::Segment;

/// Every knob of the simulator. `SimConfig::default()` equals the CLI defaults.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct SimConfig {
    /// StartChatContact rate quota for the whole account, in calls per second (token bucket
    /// refill rate, continuous). A new account has 2/s.
    #[arg(long, default_value_t = 2.0, value_parser = non_negative_f64)]
    pub start_chat_rate: f64,
    /// StartChatContact burst quota (token bucket capacity). A new account has 5.
    #[arg(long, default_value_t = 5)]
    pub start_chat_burst: u32,
    /// CreatePersistentContactAssociation rate quota, in calls per second.
    #[arg(long, default_value_t = 2.0, value_parser = non_negative_f64)]
    pub associate_rate: f64,
    /// CreatePersistentContactAssociation burst quota (token bucket capacity).
    #[arg(long, default_value_t = 5)]
    pub associate_burst: u32,
    /// Concurrent active chats allowed per instance; beyond it StartChatContact answers
    /// 429 LimitExceededException.
    #[arg(long, default_value_t = 100)]
    pub max_active_chats: u32,
    /// How long each simulated chat stays active, in seconds (fractions allowed), whatever
    /// ChatDurationInMinutes says: tests use seconds where real chats last hours.
    #[arg(long, default_value_t = 60.0, value_parser = positive_f64)]
    pub chat_seconds: f64,
    /// Another caller in the same account (a website widget, another service) calling
    /// StartChatContact at this many calls per second, drawing from the same token bucket.
    /// Its calls only consume rate tokens (no chats), and are counted apart under
    /// `background` in the stats. 0 disables it.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative_f64)]
    pub background_rate: f64,
    /// Each chat's lifetime drawn from a seeded distribution instead of the fixed
    /// `chat_seconds`: `fixed:S`, `uniform:MIN:MAX` or `lognormal:MEAN:MIN:MAX[:SIGMA]`
    /// (seconds; see `lifetimes.rs`). Draws follow the creation order of chats.
    #[arg(long)]
    pub chat_lifetime: Option<Lifetime>,
    /// Active-chats limit of particular instances, `ID=N` (repeat or comma-separate); other
    /// instances have `max_active_chats`.
    #[arg(long, value_delimiter = ',')]
    pub instance_max_chats: Vec<InstanceLimit>,
    /// Chats other callers hold on an instance from the start (and after each reset),
    /// `ID=N` for the whole run or `ID=N:SECONDS` (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub instance_prefill: Vec<Prefill>,
    /// The background caller's rate over time, `FROM:TO:RATE` (seconds since the start or last
    /// reset, calls/s; repeat or comma-separate), added to `background_rate`.
    #[arg(long, value_delimiter = ',')]
    pub background_schedule: Vec<Segment>,
    /// Which operation the background caller calls (draws from that operation's bucket).
    #[arg(long, value_enum, default_value_t = BackgroundOperation::StartChat)]
    pub background_operation: BackgroundOperation,
    /// When set, the background caller's StartChatContact calls open real chats on this
    /// instance (lifetimes from the same distribution, their own draws), so other callers'
    /// chats compete for its capacity; a full instance refuses them (counted as refused).
    #[arg(long)]
    pub background_instance: Option<String>,
    /// Fraction (0..=1) of calls that pass the quotas and then fail with 500
    /// InternalServiceException. A share `fail_after_create_ratio` of them fail after the chat
    /// was created (a retry with the same ClientToken then returns that chat).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub fail_rate: f64,
    /// Which share (0..=1) of injected failures and dropped connections happen after the
    /// chat or association was created, as real partial failures do.
    #[arg(long, default_value_t = 0.5, value_parser = fraction)]
    pub fail_after_create_ratio: f64,
    /// Extra latency added to every Connect API response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction (0..=1) of calls that pass the quotas and whose connection is then closed
    /// without any response (some after the chat was created, see fail_after_create_ratio).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub drop_rate: f64,
    /// Known instance ids (repeat the flag or separate with commas). Empty: any instance id
    /// is accepted; otherwise any other id answers 404 ResourceNotFoundException.
    #[arg(long = "instance-id", value_delimiter = ',')]
    pub instance_ids: Vec<String>,
    /// A SourceContactId, InitialContactId or RelatedContactId starting with this prefix
    /// answers 404 ResourceNotFoundException. Empty disables the check.
    #[arg(long, default_value = "missing-")]
    pub missing_contact_prefix: String,
    /// How long a ClientToken is remembered for idempotent replays, in seconds.
    #[arg(long, default_value_t = 28_800.0, value_parser = positive_f64)]
    pub idempotency_ttl_seconds: f64,
    /// Seed for the fault-injection random draws (reproducible runs). Random when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start with a credential outage: every Connect call answers this credential error
    /// (switch it at run time with PUT /_sim/credentials; see credentials.rs). Off when absent.
    #[arg(long, value_enum)]
    pub credential_fault: Option<crate::credentials::CredentialFault>,
    /// The connect window, in seconds: StartChatContact's documentation says clients must
    /// connect (CreateParticipantConnection, `POST /participant/connection` here) within 5
    /// minutes, so a chat nobody connected to ends this long after it was created, freeing its
    /// capacity (counted in `chats_abandoned`). 0 turns the model off: chats live
    /// `--chat-seconds` whether or not anyone connects (benchmarks whose chats live longer than
    /// the window and that connect nobody).
    #[arg(long, default_value_t = 300.0, value_parser = non_negative_f64)]
    pub connect_window_seconds: f64,
    /// Play an account that does not support custom chat durations: a StartChatContact with
    /// ChatDurationInMinutes answers 400 InvalidRequestException, as the StartChatContact
    /// documentation warns.
    #[arg(long)]
    pub no_custom_chat_durations: bool,
    /// A past chat session that has ended, as its contact ids in order, e.g. `C1>C2>C3` (the
    /// persistent-chat documentation's example: C1 the initial contact, C3 its post-chat
    /// survey). Repeat the flag for more sessions. Any other contact id the sim has not seen is
    /// an ended one-segment chat session.
    #[arg(long = "past-session")]
    pub past_sessions: Vec<String>,
    /// A contact id with this prefix is a chat contact that is still active (it cannot be
    /// rehydrated). Empty disables it.
    #[arg(long, default_value = "active-")]
    pub active_contact_prefix: String,
    /// A contact id with this prefix is a voice contact, not a chat (it cannot be rehydrated).
    /// Empty disables it.
    #[arg(long, default_value = "voice-")]
    pub voice_contact_prefix: String,
    /// Contact events: every chat that ends (an API caller's, the background caller's, a
    /// prefilled one with SECONDS) sends one EventBridge `Amazon Connect Contact Event`
    /// envelope (`eventType` DISCONNECTED) to this SQS queue, as an EventBridge rule targeting
    /// the queue would (see contact_events.rs). Off when absent.
    #[arg(long)]
    pub contact_events_queue_url: Option<String>,
    /// Delivery latency of a contact event after its chat ended, `LO:HI` milliseconds, drawn
    /// uniformly per chat (seeded from `--seed`, own RNG streams).
    #[arg(long, default_value = "250:750")]
    pub contact_events_delay_ms: DelayRange,
    /// SQS endpoint for the contact events, `scheme://host[:port]`. Default: that of the queue
    /// URL (moto's queue URLs are on its endpoint).
    #[arg(long)]
    pub contact_events_endpoint: Option<String>,
    /// Access key id and secret to sign the contact events with, instead of the standard chain
    /// (for a simulator inside a test process whose moto enforces IAM; the binary reads the
    /// environment, never secrets on its command line).
    #[arg(skip)]
    pub contact_events_credentials: Option<(String, String)>,
}

impl Default for SimConfig {
    fn default() -> Self {
        // Parsing an empty command line cannot fail: every field has a default.
        DefaultsOnly::parse_from(["connect-sim"]).config
    }
}

impl SimConfig {
    /// Checks what clap cannot when the struct is built by hand (library use).
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("start_chat_rate", self.start_chat_rate),
            ("associate_rate", self.associate_rate),
            ("background_rate", self.background_rate),
            ("connect_window_seconds", self.connect_window_seconds),
        ];
        for (name, v) in rates {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be a finite number >= 0, got {v}"));
            }
        }
        let fractions = [
            ("fail_rate", self.fail_rate),
            ("drop_rate", self.drop_rate),
            ("fail_after_create_ratio", self.fail_after_create_ratio),
        ];
        for (name, v) in fractions {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        let positives = [
            ("chat_seconds", self.chat_seconds),
            ("idempotency_ttl_seconds", self.idempotency_ttl_seconds),
        ];
        for (name, v) in positives {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a finite number > 0, got {v}"));
            }
        }
        let scheduled = self.background_schedule.iter().any(|s| s.rate > 0.0);
        if self.background_instance.is_some()
            && self.background_operation != BackgroundOperation::StartChat
        {
            return Err("background_instance needs background_operation start-chat".into());
        }
        if self.background_instance.is_some() && self.background_rate == 0.0 && !scheduled {
            return Err("background_instance is set but the background caller never calls".into());
        }
        if let Some(url) = &self.contact_events_queue_url {
            contact_events::endpoint_of(url)
                .map_err(|e| format!("contact_events_queue_url: {e}"))?;
        }
        if let Some(endpoint) = &self.contact_events_endpoint {
            contact_events::endpoint_of(endpoint)
                .map_err(|e| format!("contact_events_endpoint: {e}"))?;
        }
        let d = self.contact_events_delay_ms;
        if d.lo_ms > d.hi_ms {
            return Err(format!(
                "contact_events_delay_ms: LO ({}) exceeds HI ({})",
                d.lo_ms, d.hi_ms
            ));
        }
        Ok(())
    }
}

/// The operation the background caller uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackgroundOperation {
    /// StartChatContact.
    StartChat,
    /// CreatePersistentContactAssociation.
    Associate,
}

#[derive(Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    config: SimConfig,
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err("must be a finite number >= 0".into())
    }
}

fn positive_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err("must be a finite number > 0".into())
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_cli_defaults() {
        let c = SimConfig::default();
        assert_eq!(c.start_chat_rate, 2.0);
        assert_eq!(c.start_chat_burst, 5);
        assert_eq!(c.associate_rate, 2.0);
        assert_eq!(c.associate_burst, 5);
        assert_eq!(c.max_active_chats, 100);
        assert_eq!(c.missing_contact_prefix, "missing-");
        assert!(c.instance_ids.is_empty());
        assert_eq!(c.fail_rate, 0.0);
        assert_eq!(c.drop_rate, 0.0);
        assert_eq!(c.connect_window_seconds, 300.0);
        assert!(!c.no_custom_chat_durations);
        assert!(c.past_sessions.is_empty());
        assert_eq!(c.chat_lifetime, None);
        assert!(c.instance_max_chats.is_empty() && c.instance_prefill.is_empty());
        assert!(c.background_schedule.is_empty());
        assert_eq!(c.background_operation, BackgroundOperation::StartChat);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn instance_ids_accept_repeats_and_commas() {
        let c =
            DefaultsOnly::parse_from(["connect-sim", "--instance-id", "a,b", "--instance-id", "c"])
                .config;
        assert_eq!(c.instance_ids, ["a", "b", "c"]);
    }

    #[test]
    fn scenario_flags_parse() {
        let c = DefaultsOnly::parse_from([
            "x",
            "--chat-lifetime",
            "lognormal:5:1:15",
            "--instance-max-chats",
            "A=5,B=1000000",
            "--instance-prefill",
            "A=5",
            "--background-schedule",
            "8:20:4",
            "--background-operation",
            "associate",
        ])
        .config;
        assert!(matches!(c.chat_lifetime, Some(Lifetime::LogNormal { .. })));
        assert_eq!(c.instance_max_chats.len(), 2);
        assert_eq!(c.instance_prefill[0].chats, 5);
        assert_eq!(c.background_schedule[0].rate, 4.0);
        assert_eq!(c.background_operation, BackgroundOperation::Associate);
        assert!(c.validate().is_ok());
        assert!(DefaultsOnly::try_parse_from(["x", "--chat-lifetime", "uniform:9:1"]).is_err());
        assert!(DefaultsOnly::try_parse_from(["x", "--background-schedule", "5:1:1"]).is_err());
    }

    #[test]
    fn contact_event_flags_parse() {
        let c = SimConfig::default();
        assert_eq!(c.contact_events_queue_url, None);
        assert_eq!(c.contact_events_endpoint, None);
        assert_eq!(
            c.contact_events_delay_ms,
            DelayRange {
                lo_ms: 250,
                hi_ms: 750
            }
        );
        let c = DefaultsOnly::parse_from([
            "x",
            "--contact-events-queue-url",
            "http://127.0.0.1:5000/123456789012/contact-events",
            "--contact-events-delay-ms",
            "0:20",
        ])
        .config;
        assert_eq!(
            c.contact_events_queue_url.as_deref(),
            Some("http://127.0.0.1:5000/123456789012/contact-events")
        );
        assert_eq!(
            c.contact_events_delay_ms,
            DelayRange {
                lo_ms: 0,
                hi_ms: 20
            }
        );
        assert!(c.validate().is_ok());
        let c = DefaultsOnly::parse_from([
            "x",
            "--contact-events-queue-url",
            "https://sqs.eu-west-1.amazonaws.com/210987654321/events",
            "--contact-events-endpoint",
            "http://localhost:4566",
        ])
        .config;
        assert_eq!(
            c.contact_events_endpoint.as_deref(),
            Some("http://localhost:4566")
        );
        assert!(c.validate().is_ok());
        for bad in ["750:250", "250", "a:b", "-1:5", "1:2:3"] {
            assert!(
                DefaultsOnly::try_parse_from(["x", "--contact-events-delay-ms", bad]).is_err(),
                "{bad}"
            );
        }
        let c = SimConfig {
            contact_events_queue_url: Some("not a url".into()),
            ..SimConfig::default()
        };
        assert!(c.validate().is_err());
        let c = SimConfig {
            contact_events_endpoint: Some("ftp://x".into()),
            ..SimConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        assert!(DefaultsOnly::try_parse_from(["x", "--fail-rate", "1.5"]).is_err());
        assert!(DefaultsOnly::try_parse_from(["x", "--chat-seconds", "0"]).is_err());
        let c = SimConfig {
            drop_rate: -0.1,
            ..SimConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
