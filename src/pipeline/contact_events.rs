//! The contact-events reader: chat ends from Amazon Connect, for the capacity machines.
//!
//! Connect publishes contact events to EventBridge (`source` `aws.connect`, `detail-type`
//! `Amazon Connect Contact Event`). An operator's rule matching `eventType` `DISCONNECTED` and
//! `channel` `CHAT` with an SQS target (deploy/cloudformation/worker.yaml has one) delivers
//! each event as a message whose body is the event itself. With `CONTACT_EVENTS_QUEUE_URL`
//! set, this task long-polls that queue and hands every ended chat to its instance's capacity
//! machine ([`crate::rate::instances::CapacityBook::freed`]): a full instance then starts one
//! chat per chat that ended instead of pacing guesses (`rate::freed`).
//!
//! # Protocol
//! - Receive up to 10, wait 20 s (SQS's longest poll), handle each, delete them in one batch.
//!   Every message is deleted once read, whatever it says: an event is information, not a job,
//!   and one that cannot be understood will not be understood on redelivery (counted as
//!   `malformed`; the body is never logged, it names customers' contacts).
//! - The end's time is the event's `disconnectTimestamp` (else the envelope's `time`, else the
//!   receipt), so an event delivered late is still placed before or after a refusal correctly.
//! - Duplicates (EventBridge and SQS both deliver at least once, and a failed delete comes
//!   back) are dropped by contact id over the last [`RECENT_IDS`] events: a second token for
//!   one slot would be a refused call.
//! - Events for instances this worker has no machine for are ignored (a rule may match every
//!   instance of the account).
//! - Health: while receives succeed the machines run on events; when they have failed for a
//!   whole long poll (20 s) the machines fall back to the blind pace, and back to events at
//!   the next success. Failed receives back off from 1 s to 20 s.
//! - Pipeline tests feed it through the same [`MessageQueue`] as the jobs ([`memory`]).
//!
//! [`memory`]: crate::queue::memory

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::decide::Now;
use crate::queue::{MAX_BATCH, MessageQueue};

/// SQS's longest long poll; also how long receives may fail before the machines stop
/// trusting events.
const LONG_POLL: Duration = Duration::from_secs(20);
/// Read messages are deleted at once; this only covers a slow delete.
const VISIBILITY: Duration = Duration::from_secs(30);
/// Contact ids remembered against duplicates: a few minutes of a busy account's chat ends.
pub const RECENT_IDS: usize = 4096;

/// What one message said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContactEvent {
    /// A chat ended on `instance_id` at `ended` (when the event says).
    ChatEnded {
        instance_id: String,
        contact_id: String,
        ended: Option<OffsetDateTime>,
    },
    /// Another event type or channel.
    Other,
}

/// Why a message is not a contact event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not JSON")]
    NotJson,
    #[error("not an Amazon Connect contact event (source/detail-type)")]
    NotContactEvent,
    #[error("no instance in detail.instanceArn")]
    NoInstance,
    #[error("no detail.contactId")]
    NoContactId,
}

/// Parses one message body (an EventBridge event).
pub fn parse(body: &str) -> Result<ContactEvent, Malformed> {
    let v: Value = serde_json::from_str(body).map_err(|_| Malformed::NotJson)?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    if text(&v, "source").as_deref() != Some("aws.connect")
        || text(&v, "detail-type").as_deref() != Some("Amazon Connect Contact Event")
    {
        return Err(Malformed::NotContactEvent);
    }
    let detail = v.get("detail").ok_or(Malformed::NotContactEvent)?;
    let is =
        |key: &str, want: &str| text(detail, key).is_some_and(|s| s.eq_ignore_ascii_case(want));
    if !(is("eventType", "DISCONNECTED") && is("channel", "CHAT")) {
        return Ok(ContactEvent::Other);
    }
    let instance_id = text(detail, "instanceArn")
        .as_deref()
        .and_then(instance_of_arn)
        .ok_or(Malformed::NoInstance)?;
    let contact_id = text(detail, "contactId")
        .filter(|s| !s.is_empty())
        .ok_or(Malformed::NoContactId)?;
    let when = |s: Option<String>| s.and_then(|s| OffsetDateTime::parse(&s, &Rfc3339).ok());
    let ended = when(text(detail, "disconnectTimestamp")).or_else(|| when(text(&v, "time")));
    Ok(ContactEvent::ChatEnded {
        instance_id,
        contact_id,
        ended,
    })
}

/// `arn:aws:connect:REGION:ACCOUNT:instance/ID` → `ID`.
fn instance_of_arn(arn: &str) -> Option<String> {
    let rest = arn.split_once(":instance/")?.1;
    let id = rest.split('/').next()?;
    (!id.is_empty() && id.len() <= 100).then(|| id.to_owned())
}

/// The tokio instant of a wall-clock time: `now.mono` less how long ago it was (never later
/// than `now`: a clock ahead of ours puts the end at the receipt).
pub fn instant_of(ended: Option<OffsetDateTime>, now: Now) -> Instant {
    let Some(ended) = ended else {
        return now.mono;
    };
    match Duration::try_from(now.wall - ended) {
        Ok(ago) => now.mono.checked_sub(ago).unwrap_or(now.mono),
        Err(_) => now.mono,
    }
}

/// Contact ids seen lately, oldest forgotten first.
#[derive(Default)]
pub struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    /// Whether `id` is new (and remembers it).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= RECENT_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// Reads the contact-events queue until `stop` (returns at once without one).
pub async fn run<Q: MessageQueue, C>(ctx: Arc<Context<Q, C>>, stop: CancellationToken) {
    let Some(url) = ctx.settings.contact_events_queue_url.clone() else {
        return;
    };
    ctx.metrics.contact_events_readable.set(1);
    let mut recent = RecentIds::default();
    let mut last_ok = Instant::now();
    let mut backoff = Duration::from_secs(1);
    let mut trusted = true;
    loop {
        let got = tokio::select! {
            _ = stop.cancelled() => return,
            r = ctx.queue.receive(&url, MAX_BATCH, LONG_POLL, VISIBILITY) => r,
        };
        let messages = match got {
            Ok(m) => m,
            Err(e) => {
                ctx.metrics
                    .sqs_errors
                    .with_label_values(&["ReceiveMessage", &e.code])
                    .inc();
                if trusted && last_ok.elapsed() >= LONG_POLL {
                    trusted = false;
                    ctx.capacity.set_contact_events(false);
                    ctx.metrics.contact_events_readable.set(0);
                    tracing::warn!(
                        error = %e,
                        "contact events unreadable for 20 s: chat capacity paced without them"
                    );
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(LONG_POLL);
                continue;
            }
        };
        last_ok = Instant::now();
        backoff = Duration::from_secs(1);
        if !trusted {
            trusted = true;
            ctx.capacity.set_contact_events(true);
            ctx.metrics.contact_events_readable.set(1);
            tracing::info!("contact events readable again");
        }
        let now = Now::read();
        for m in &messages {
            let kind = match parse(&m.body) {
                Ok(ContactEvent::ChatEnded {
                    instance_id,
                    contact_id,
                    ended,
                }) => {
                    if recent.first_time(&contact_id) {
                        ctx.capacity.freed(&instance_id, instant_of(ended, now));
                        "chat_ended"
                    } else {
                        "duplicate"
                    }
                }
                Ok(ContactEvent::Other) => "other",
                Err(why) => {
                    tracing::warn!(message_id = %m.message_id, problem = %why, "contact event not understood; deleted");
                    "malformed"
                }
            };
            ctx.metrics.contact_events.with_label_values(&[kind]).inc();
        }
        if messages.is_empty() {
            continue;
        }
        let handles: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        match ctx.queue.delete_batch(&url, &handles).await {
            Ok(failures) => {
                for f in failures {
                    ctx.metrics
                        .sqs_errors
                        .with_label_values(&["DeleteMessageBatch", &f.code])
                        .inc();
                }
            }
            Err(e) => {
                ctx.metrics
                    .sqs_errors
                    .with_label_values(&["DeleteMessageBatch", &e.code])
                    .inc();
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event as EventBridge delivers it, ended now (the wall clock).
    pub(crate) fn event(instance: &str, contact: &str, event_type: &str, channel: &str) -> String {
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        event_at(instance, contact, event_type, channel, &now)
    }

    fn event_at(
        instance: &str,
        contact: &str,
        event_type: &str,
        channel: &str,
        ended: &str,
    ) -> String {
        serde_json::json!({
            "version": "0",
            "id": "5a1b2c3d-0000-0000-0000-000000000000",
            "detail-type": "Amazon Connect Contact Event",
            "source": "aws.connect",
            "account": "123456789012",
            "time": "2026-12-03T12:00:01Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventType": event_type,
                "contactId": contact,
                "channel": channel,
                "instanceArn": format!("arn:aws:connect:us-east-1:123456789012:instance/{instance}"),
                "initiationMethod": "API",
                "disconnectTimestamp": ended
            }
        })
        .to_string()
    }

    #[test]
    fn a_disconnected_chat_is_a_chat_end_on_its_instance() {
        let at = "2026-12-03T12:00:00.250Z";
        let e = parse(&event_at("inst-1", "c-1", "DISCONNECTED", "CHAT", at)).unwrap();
        let ContactEvent::ChatEnded {
            instance_id,
            contact_id,
            ended,
        } = e
        else {
            panic!("{e:?}");
        };
        assert_eq!(
            (instance_id.as_str(), contact_id.as_str()),
            ("inst-1", "c-1")
        );
        assert_eq!(ended.unwrap().millisecond(), 250);
    }

    #[test]
    fn other_events_and_channels_are_ignored_and_junk_is_malformed() {
        for (t, c) in [("CONNECTED_TO_AGENT", "CHAT"), ("DISCONNECTED", "VOICE")] {
            assert_eq!(parse(&event("i", "c", t, c)), Ok(ContactEvent::Other));
        }
        assert_eq!(parse("{"), Err(Malformed::NotJson));
        assert_eq!(
            parse(r#"{"source":"aws.s3"}"#),
            Err(Malformed::NotContactEvent)
        );
        let no_instance = event("", "c", "DISCONNECTED", "CHAT");
        assert_eq!(parse(&no_instance), Err(Malformed::NoInstance));
        let no_contact = event("i", "", "DISCONNECTED", "CHAT");
        assert_eq!(parse(&no_contact), Err(Malformed::NoContactId));
    }

    #[test]
    fn an_end_is_placed_in_the_past_by_its_age_never_in_the_future() {
        let now = Now {
            mono: Instant::now(),
            wall: OffsetDateTime::from_unix_timestamp(1_000_000).unwrap(),
        };
        let ended = OffsetDateTime::from_unix_timestamp(1_000_000 - 2).unwrap();
        let at = instant_of(Some(ended), now);
        assert_eq!(now.mono.duration_since(at), Duration::from_secs(2));
        let ahead = OffsetDateTime::from_unix_timestamp(1_000_000 + 5).unwrap();
        assert_eq!(instant_of(Some(ahead), now), now.mono);
        assert_eq!(instant_of(None, now), now.mono);
    }

    #[test]
    fn duplicates_are_dropped_over_a_bounded_memory() {
        let mut r = RecentIds::default();
        assert!(r.first_time("a"));
        assert!(!r.first_time("a"));
        for k in 0..RECENT_IDS {
            r.first_time(&k.to_string());
        }
        assert!(r.first_time("a"), "forgotten after RECENT_IDS others");
    }
}
