//! Contact events: Amazon Connect publishes an event to EventBridge whenever a contact changes
//! state; an EventBridge rule can route them to an SQS queue. With `--contact-events-queue-url`
//! the sim plays that path for chats that end: one SendMessage per chat, `--contact-events-
//! delay-ms LO:HI` (EventBridge's delivery latency, uniform per chat) after the chat ended, whose
//! body is the EventBridge envelope of an `Amazon Connect Contact Event` with `eventType`
//! DISCONNECTED (`body`).
//!
//! Which chats end and when: see `core::endings`. The task (`run`) sleeps until the next chat
//! ends (one timer for all, woken when a new chat ends before the others), then sends each
//! event at its due time from a task of its own, so neither a slow queue nor the timer ever
//! holds the Connect handlers up. A failed SendMessage is retried (`BACKOFF`), then given up:
//! logged (warn) and counted in `contact_events.failed` of `/_sim/stats`; sent ones in `sent`.
//!
//! The SQS client is the AWS SDK's: credentials and region from the standard chain
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, ...; without any credentials,
//! static test ones, which moto accepts), SigV4-signed, the endpoint `--contact-events-endpoint`
//! or the queue URL's scheme://host:port. The ARNs in the events use the queue URL's account
//! (its first path segment when it is 12 digits, else 123456789012) and the client's region.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

use crate::core::Core;

/// The account in ARNs when the queue URL names none (moto's default account).
pub const DEFAULT_ACCOUNT: &str = "123456789012";
/// The region in ARNs when the SDK finds none.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Waits before the retries of a failed SendMessage (so 4 attempts in all).
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(1000),
];

/// `LO:HI` milliseconds (`--contact-events-delay-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayRange {
    pub lo_ms: u64,
    pub hi_ms: u64,
}

impl FromStr for DelayRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((lo, hi)) = s.split_once(':') else {
            return Err(format!("expected LO:HI milliseconds, got {s:?}"));
        };
        let parse = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|e| format!("{v:?} is not a number of milliseconds: {e}"))
        };
        let (lo_ms, hi_ms) = (parse(lo)?, parse(hi)?);
        if lo_ms > hi_ms {
            return Err(format!("LO ({lo_ms}) must not exceed HI ({hi_ms})"));
        }
        Ok(DelayRange { lo_ms, hi_ms })
    }
}

impl fmt::Display for DelayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.lo_ms, self.hi_ms)
    }
}

/// `scheme://host[:port]` of an http(s) URL (the SQS endpoint of a queue URL).
pub fn endpoint_of(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(format!("{scheme}://{host}"))
}

/// The account of a queue URL (`.../ACCOUNT/NAME`): its first path segment when that is 12
/// digits, else `DEFAULT_ACCOUNT`.
pub fn account_of(queue_url: &str) -> String {
    queue_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').nth(1))
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(DEFAULT_ACCOUNT)
        .to_owned()
}

/// A chat that ended, as the events task gets it from the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedChat {
    /// The InstanceId the chat was created with (as the sim saw it).
    pub instance: String,
    pub contact_id: String,
    /// The EventBridge event id.
    pub event_id: String,
    pub initiated_unix_ms: u64,
    pub disconnected_unix_ms: u64,
    /// When it ended, and when its event is to be delivered (ended + delay).
    pub ended_at: Instant,
    pub due: Instant,
}

/// ISO 8601 UTC, with milliseconds (`2026-12-03T12:00:00.123Z`) or whole seconds (`...:00Z`, the
/// envelope's `time`).
fn iso(unix_ms: u64, millis: bool) -> String {
    let ms = i128::from(unix_ms);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000) else {
        return String::new();
    };
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    if millis {
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
            t.millisecond()
        )
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

/// The instance's ARN; an InstanceId that already is an instance ARN is kept as it is.
fn instance_arn(account: &str, region: &str, instance: &str) -> String {
    if instance.starts_with("arn:") && instance.contains(":instance/") {
        instance.to_owned()
    } else {
        format!("arn:aws:connect:{region}:{account}:instance/{instance}")
    }
}

/// The message body: the EventBridge envelope of a DISCONNECTED contact event of a chat.
pub fn body(account: &str, region: &str, chat: &EndedChat) -> Value {
    let instance = instance_arn(account, region, &chat.instance);
    let contact = format!("{instance}/contact/{}", chat.contact_id);
    json!({
        "version": "0",
        "id": chat.event_id,
        "detail-type": "Amazon Connect Contact Event",
        "source": "aws.connect",
        "account": account,
        "time": iso(chat.disconnected_unix_ms, false),
        "region": region,
        "resources": [contact, instance],
        "detail": {
            "eventType": "DISCONNECTED",
            "contactId": chat.contact_id,
            "initialContactId": chat.contact_id,
            "channel": "CHAT",
            "instanceArn": instance,
            "initiationMethod": "API",
            "initiationTimestamp": iso(chat.initiated_unix_ms, true),
            "disconnectTimestamp": iso(chat.disconnected_unix_ms, true),
        }
    })
}

/// Where events go: SQS in the binary, a recorder in tests.
pub trait Sink: Send + Sync + 'static {
    /// One SendMessage; `Err` with why it failed.
    fn send(&self, body: String) -> impl Future<Output = Result<(), String>> + Send;
}

/// SendMessage to the queue with the AWS SDK.
pub struct SqsSink {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    region: String,
}

impl SqsSink {
    /// The SDK client from the standard chain, with `endpoint` (None: the queue URL's).
    pub async fn new(
        queue_url: &str,
        endpoint: Option<&str>,
        credentials: Option<(String, String)>,
    ) -> Result<Self, String> {
        use aws_config::meta::region::RegionProviderChain;
        use aws_sdk_sqs::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};

        let endpoint = match endpoint {
            Some(e) => endpoint_of(e)?,
            None => endpoint_of(queue_url)?,
        };
        let region = RegionProviderChain::default_provider().or_else(DEFAULT_REGION);
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(region)
            .load()
            .await;
        let mut conf = aws_sdk_sqs::config::Builder::from(&shared)
            .endpoint_url(endpoint)
            .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            );
        let given = credentials.is_some();
        if let Some((key, secret)) = credentials {
            conf = conf.credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                key,
                secret,
                None,
                None,
                "connect-sim",
            )));
        }
        let found = given
            || match shared.credentials_provider() {
                Some(p) => p.provide_credentials().await.is_ok(),
                None => false,
            };
        if !found {
            tracing::warn!(
                "contact events: no AWS credentials found (AWS_ACCESS_KEY_ID, ...); signing with \
                 static test credentials"
            );
            conf = conf.credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "test",
                "test",
                None,
                None,
                "connect-sim",
            )));
        }
        let region = shared
            .region()
            .map_or_else(|| DEFAULT_REGION.to_owned(), ToString::to_string);
        Ok(SqsSink {
            client: aws_sdk_sqs::Client::from_conf(conf.build()),
            queue_url: queue_url.to_owned(),
            region,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }
}

impl Sink for SqsSink {
    async fn send(&self, body: String) -> Result<(), String> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let e = aws_sdk_sqs::error::DisplayErrorContext(e);
                e.to_string()
            })
    }
}

/// One event: attempts with backoff; true when it reached the queue.
async fn deliver<S: Sink>(sink: &S, body: String, contact_id: &str) -> bool {
    let mut last = String::new();
    for wait in std::iter::once(None).chain(BACKOFF.into_iter().map(Some)) {
        if let Some(wait) = wait {
            sleep(wait).await;
        }
        match sink.send(body.clone()).await {
            Ok(()) => return true,
            Err(e) => last = e,
        }
    }
    tracing::warn!(
        contact_id,
        attempts = BACKOFF.len() + 1,
        error = %last,
        "contact event not sent"
    );
    false
}

/// Runs until aborted: sends every ended chat's event at its due time (see the module docs).
/// Aborting it drops the events not sent yet.
pub async fn run<S: Sink>(core: Arc<Core>, sink: Arc<S>, account: String, region: String) {
    let mut sends = JoinSet::new();
    loop {
        let (ended, next) = core.take_ended(Instant::now());
        for chat in ended {
            let body = body(&account, &region, &chat).to_string();
            let (sink, core) = (Arc::clone(&sink), Arc::clone(&core));
            sends.spawn(async move {
                sleep_until(chat.due).await;
                let sent = deliver(&*sink, body, &chat.contact_id).await;
                core.count_contact_event(sent);
            });
        }
        let wake = core.ends_changed().notified();
        let timer = async {
            match next {
                Some(t) => sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wake => {}
            () = timer => {}
            // Reap finished sends so the set does not grow.
            Some(_) = sends.join_next(), if !sends.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn ended() -> EndedChat {
        let now = Instant::now();
        EndedChat {
            instance: "inst-1".into(),
            contact_id: "c0ffee00-0000-4000-8000-000000000001".into(),
            event_id: "e0000000-0000-4000-8000-000000000002".into(),
            // 2026-12-03T12:00:00.250Z and 12:00:05.125Z
            initiated_unix_ms: 1_796_299_200_250,
            disconnected_unix_ms: 1_796_299_205_125,
            ended_at: now,
            due: now,
        }
    }

    #[test]
    fn the_body_is_the_eventbridge_envelope_of_a_disconnected_chat() {
        let v = body("123456789012", "us-east-1", &ended());
        let instance = "arn:aws:connect:us-east-1:123456789012:instance/inst-1";
        let contact = format!("{instance}/contact/c0ffee00-0000-4000-8000-000000000001");
        let expected = json!({
            "version": "0",
            "id": "e0000000-0000-4000-8000-000000000002",
            "detail-type": "Amazon Connect Contact Event",
            "source": "aws.connect",
            "account": "123456789012",
            "time": "2026-12-03T12:00:05Z",
            "region": "us-east-1",
            "resources": [contact, instance],
            "detail": {
                "eventType": "DISCONNECTED",
                "contactId": "c0ffee00-0000-4000-8000-000000000001",
                "initialContactId": "c0ffee00-0000-4000-8000-000000000001",
                "channel": "CHAT",
                "instanceArn": instance,
                "initiationMethod": "API",
                "initiationTimestamp": "2026-12-03T12:00:00.250Z",
                "disconnectTimestamp": "2026-12-03T12:00:05.125Z",
            }
        });
        assert_eq!(v, expected);
        // An InstanceId given as an ARN stays that ARN.
        let chat = EndedChat {
            instance: "arn:aws:connect:eu-west-2:210987654321:instance/abc".into(),
            ..ended()
        };
        let v = body("123456789012", "us-east-1", &chat);
        assert_eq!(
            v["detail"]["instanceArn"],
            "arn:aws:connect:eu-west-2:210987654321:instance/abc"
        );
        assert_eq!(
            v["resources"][0],
            format!(
                "arn:aws:connect:eu-west-2:210987654321:instance/abc/contact/{}",
                chat.contact_id
            )
        );
    }

    #[test]
    fn delays_endpoints_and_accounts_parse() {
        assert_eq!(
            "250:750".parse::<DelayRange>(),
            Ok(DelayRange {
                lo_ms: 250,
                hi_ms: 750
            })
        );
        assert_eq!(
            "0:0".parse::<DelayRange>().map(|d| d.to_string()),
            Ok("0:0".to_string())
        );
        for bad in ["", "5", "5:", ":5", "9:1", "1.5:2", "-1:2", "1:2:3"] {
            assert!(bad.parse::<DelayRange>().is_err(), "{bad}");
        }
        let q = "http://127.0.0.1:4566/123456789012/contact-events";
        assert_eq!(endpoint_of(q).as_deref(), Ok("http://127.0.0.1:4566"));
        assert_eq!(
            endpoint_of("https://sqs.us-east-1.amazonaws.com/210987654321/q").as_deref(),
            Ok("https://sqs.us-east-1.amazonaws.com")
        );
        assert_eq!(endpoint_of("http://h:1").as_deref(), Ok("http://h:1"));
        for bad in ["127.0.0.1:4566/q", "ftp://h/q", "http:///q", ""] {
            assert!(endpoint_of(bad).is_err(), "{bad}");
        }
        assert_eq!(
            account_of("https://sqs.us-east-1.amazonaws.com/210987654321/q"),
            "210987654321"
        );
        assert_eq!(account_of("http://localhost:9324/queue/q"), DEFAULT_ACCOUNT);
        assert_eq!(account_of("http://localhost:9324"), DEFAULT_ACCOUNT);
    }

    /// Records (when, body) of each send; fails the first `fail` calls.
    struct Recorder {
        sent: Mutex<Vec<(Instant, Value)>>,
        fail: Mutex<u32>,
    }

    impl Sink for Recorder {
        async fn send(&self, body: String) -> Result<(), String> {
            {
                let mut fail = self.fail.lock().unwrap_or_else(|e| e.into_inner());
                if *fail > 0 {
                    *fail -= 1;
                    return Err("injected".into());
                }
            }
            let v = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            self.sent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Instant::now(), v));
            Ok(())
        }
    }

    fn recorder(fail: u32) -> Arc<Recorder> {
        Arc::new(Recorder {
            sent: Mutex::new(Vec::new()),
            fail: Mutex::new(fail),
        })
    }

    fn sent(r: &Recorder) -> Vec<(Instant, Value)> {
        r.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn events_config() -> crate::SimConfig {
        crate::SimConfig {
            start_chat_rate: 1000.0,
            start_chat_burst: 1000,
            seed: Some(3),
            contact_events_queue_url: Some("http://127.0.0.1:1/123456789012/contact-events".into()),
            ..crate::SimConfig::default()
        }
    }

    fn start_chat(core: &Core, instance: &str, source: &str) -> String {
        let body = json!({
            "InstanceId": instance, "ContactFlowId": "flow",
            "ParticipantDetails": {"DisplayName": "Ana"}, "ClientToken": source,
        });
        let req = crate::validate::start_chat(body.to_string().as_bytes()).expect("valid request");
        match core.start_chat(&req) {
            crate::core::Outcome::Ok(b) => {
                let v: Value = serde_json::from_str(&b).expect("JSON");
                v["ContactId"].as_str().unwrap_or_default().to_owned()
            }
            other => panic!("not created: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_chat_sends_one_event_its_delay_after_it_ended() {
        let core = Arc::new(Core::new(crate::SimConfig {
            chat_lifetime: Some("uniform:1:10".parse().expect("valid")),
            connect_window_seconds: 0.0,
            ..events_config()
        }));
        let sink = recorder(0);
        let task = tokio::spawn(run(
            Arc::clone(&core),
            Arc::clone(&sink),
            DEFAULT_ACCOUNT.into(),
            DEFAULT_REGION.into(),
        ));
        let t0 = Instant::now();
        let ids: Vec<String> = (0..20)
            .map(|i| start_chat(&core, "inst-1", &format!("c{i}")))
            .collect();
        let lifetimes: Vec<u64> = core.stats().chats.iter().map(|c| c.lifetime_ms).collect();
        sleep(Duration::from_secs(12)).await;
        let got = sent(&sink);
        assert_eq!(got.len(), 20);
        assert_eq!(core.stats().contact_events.sent, 20);
        assert_eq!(core.stats().contact_events.failed, 0);
        assert_eq!(core.pending_ends(), 0);
        for (id, life) in ids.iter().zip(&lifetimes) {
            let (at, v) = got
                .iter()
                .find(|(_, v)| v["detail"]["contactId"] == id.as_str())
                .expect("an event per chat");
            assert_eq!(v["detail"]["eventType"], "DISCONNECTED");
            let after_end = at.duration_since(t0).as_millis() as i128 - i128::from(*life);
            // 250..=750 ms after the end (a millisecond of rounding either way).
            assert!((249..=751).contains(&after_end), "{after_end} ms");
        }
        // The timestamps: initiation at the epoch, disconnect its lifetime later.
        let (_, v) = &got[0];
        let id = v["detail"]["contactId"].as_str().unwrap_or_default();
        let i = ids.iter().position(|c| c == id).expect("known");
        let parse = |s: &Value| {
            time::OffsetDateTime::parse(
                s.as_str().unwrap_or_default(),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("RFC 3339")
        };
        let lived =
            parse(&v["detail"]["disconnectTimestamp"]) - parse(&v["detail"]["initiationTimestamp"]);
        assert!((lived.whole_milliseconds() - i128::from(lifetimes[i])).abs() <= 1);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unconnected_chat_ends_at_its_window_and_a_connected_one_at_its_lifetime() {
        let core = Arc::new(Core::new(crate::SimConfig {
            chat_seconds: 10.0,
            connect_window_seconds: 2.0,
            contact_events_delay_ms: DelayRange { lo_ms: 0, hi_ms: 0 },
            ..events_config()
        }));
        let sink = recorder(0);
        let task = tokio::spawn(run(
            Arc::clone(&core),
            Arc::clone(&sink),
            DEFAULT_ACCOUNT.into(),
            DEFAULT_REGION.into(),
        ));
        let t0 = Instant::now();
        let lonely = start_chat(&core, "A", "lonely");
        let body = json!({
            "InstanceId": "A", "ContactFlowId": "flow",
            "ParticipantDetails": {"DisplayName": "Bo"}, "ClientToken": "talker",
        });
        let req = crate::validate::start_chat(body.to_string().as_bytes()).expect("valid");
        let crate::core::Outcome::Ok(b) = core.start_chat(&req) else {
            panic!("not created");
        };
        let v: Value = serde_json::from_str(&b).expect("JSON");
        let token = v["ParticipantToken"].as_str().unwrap_or_default();
        core.connect_participant(token).expect("connects");
        sleep(Duration::from_secs(5)).await;
        let got = sent(&sink);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1["detail"]["contactId"], lonely.as_str());
        assert_eq!(got[0].0.duration_since(t0), Duration::from_secs(2));
        sleep(Duration::from_secs(6)).await;
        let got = sent(&sink);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1["detail"]["contactId"], v["ContactId"]);
        assert_eq!(got[1].0.duration_since(t0), Duration::from_secs(10));
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn other_callers_chats_end_too_and_failures_are_retried_then_counted() {
        let core = Arc::new(Core::new(crate::SimConfig {
            chat_seconds: 3.0,
            instance_prefill: vec![
                "P=2:1".parse().expect("valid"),
                "F=3".parse().expect("valid"),
            ],
            background_rate: 1.0,
            background_instance: Some("B".into()),
            ..events_config()
        }));
        // Fails 3 times: the first event succeeds on its last attempt.
        let sink = recorder(3);
        let task = tokio::spawn(run(
            Arc::clone(&core),
            Arc::clone(&sink),
            DEFAULT_ACCOUNT.into(),
            DEFAULT_REGION.into(),
        ));
        assert!(core.background_call());
        sleep(Duration::from_secs(5)).await;
        let got = sent(&sink);
        let instances: Vec<String> = got
            .iter()
            .map(|(_, v)| {
                v["detail"]["instanceArn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        // Two prefilled chats of P (1 s), the background chat on B (3 s); F's never end.
        assert_eq!(instances.iter().filter(|i| i.ends_with("/P")).count(), 2);
        assert_eq!(instances.iter().filter(|i| i.ends_with("/B")).count(), 1);
        assert_eq!(got.len(), 3);
        assert_ne!(
            got[0].1["detail"]["contactId"],
            got[1].1["detail"]["contactId"]
        );
        assert_eq!(core.stats().contact_events.sent, 3);
        task.abort();

        // A sink that always fails: 4 attempts, then counted as failed.
        let core = Arc::new(Core::new(crate::SimConfig {
            chat_seconds: 1.0,
            ..events_config()
        }));
        let sink = recorder(u32::MAX);
        let task = tokio::spawn(run(
            Arc::clone(&core),
            Arc::clone(&sink),
            DEFAULT_ACCOUNT.into(),
            DEFAULT_REGION.into(),
        ));
        start_chat(&core, "A", "x");
        sleep(Duration::from_secs(5)).await;
        let s = core.stats();
        assert_eq!((s.contact_events.sent, s.contact_events.failed), (0, 1));
        assert_eq!(
            *sink.fail.lock().unwrap_or_else(|e| e.into_inner()),
            u32::MAX - 4
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_seed_gives_the_same_delays_and_a_reset_forgets_active_chats() {
        async fn delays(seed: u64) -> Vec<u128> {
            let core = Arc::new(Core::new(crate::SimConfig {
                chat_seconds: 1.0,
                seed: Some(seed),
                ..events_config()
            }));
            let sink = recorder(0);
            let task = tokio::spawn(run(
                Arc::clone(&core),
                Arc::clone(&sink),
                DEFAULT_ACCOUNT.into(),
                DEFAULT_REGION.into(),
            ));
            let t0 = Instant::now();
            for i in 0..10 {
                start_chat(&core, "A", &format!("c{i}"));
            }
            sleep(Duration::from_secs(3)).await;
            task.abort();
            let mut d: Vec<u128> = sent(&sink)
                .iter()
                .map(|(at, _)| at.duration_since(t0).as_millis())
                .collect();
            d.sort_unstable();
            d
        }
        assert_eq!(delays(1).await, delays(1).await);
        assert_ne!(delays(1).await, delays(2).await);

        let core = Arc::new(Core::new(crate::SimConfig {
            chat_seconds: 1.0,
            ..events_config()
        }));
        let sink = recorder(0);
        let task = tokio::spawn(run(
            Arc::clone(&core),
            Arc::clone(&sink),
            DEFAULT_ACCOUNT.into(),
            DEFAULT_REGION.into(),
        ));
        start_chat(&core, "A", "before");
        assert_eq!(core.pending_ends(), 1);
        core.reset();
        assert_eq!(core.pending_ends(), 0);
        start_chat(&core, "A", "after");
        sleep(Duration::from_secs(3)).await;
        assert_eq!(sent(&sink).len(), 1);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_flag_nothing_is_tracked() {
        let core = Core::new(crate::SimConfig {
            start_chat_rate: 1000.0,
            start_chat_burst: 1000,
            ..crate::SimConfig::default()
        });
        let _ = start_chat(&core, "A", "x");
        assert_eq!(core.pending_ends(), 0);
        let (ended, next) = core.take_ended(Instant::now());
        assert!(ended.is_empty() && next.is_none());
    }
}
