//! Settings: each one an environment variable and a command-line flag (the flag wins). Values are
//! read as text by clap and validated here, so any problem becomes one line that names the
//! setting and says what is wrong, and the process exits with code 2.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::job::JobDefaults;

/// Settings as given, before validation. Field docs are the `--help` text. `Debug` masks the
/// Redis password (`REDIS_PASSWORD`, and any in `REDIS_URL`).
#[derive(clap::Args, Clone, Default)]
pub struct RawSettings {
    /// URL of the SQS queue the jobs arrive on (required).
    #[arg(long, env = "JOBS_QUEUE_URL")]
    pub jobs_queue_url: Option<String>,
    /// URL of the SQS queue results are published to (required).
    #[arg(long, env = "RESULTS_QUEUE_URL")]
    pub results_queue_url: Option<String>,
    /// URL of the dead-letter queue; jobs received more than MAX_RECEIVE_COUNT times are moved there.
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL")]
    pub dead_letter_queue_url: Option<String>,
    /// URL of an SQS queue that an EventBridge rule fills with Amazon Connect contact events
    /// (DISCONNECTED, channel CHAT): a full instance then starts one chat per chat that ended,
    /// instead of pacing guesses (optional).
    #[arg(long, env = "CONTACT_EVENTS_QUEUE_URL")]
    pub contact_events_queue_url: Option<String>,
    /// Connect instance id used when a job has no `instanceId`.
    #[arg(long, env = "CONNECT_INSTANCE_ID")]
    pub connect_instance_id: Option<String>,
    /// Contact flow id used when a startPersistentChat job has no `contactFlowId`.
    #[arg(long, env = "CONNECT_CONTACT_FLOW_ID")]
    pub connect_contact_flow_id: Option<String>,
    /// StartChatContact calls per second, the ceiling of the adaptive limiter [default: 2].
    #[arg(long, env = "START_CHAT_RATE")]
    pub start_chat_rate: Option<String>,
    /// StartChatContact burst [default: 5].
    #[arg(long, env = "START_CHAT_BURST")]
    pub start_chat_burst: Option<String>,
    /// CreatePersistentContactAssociation calls per second, the ceiling [default: 2].
    #[arg(long, env = "ASSOCIATE_RATE")]
    pub associate_rate: Option<String>,
    /// CreatePersistentContactAssociation burst [default: 5].
    #[arg(long, env = "ASSOCIATE_BURST")]
    pub associate_burst: Option<String>,
    /// Jobs worked on at once; messages are only received for free slots [default: 32].
    #[arg(long, env = "MAX_IN_FLIGHT")]
    pub max_in_flight: Option<String>,
    /// host:port of /metrics, /healthz and /readyz [default: 0.0.0.0:9464].
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Seconds to finish in-flight work after SIGTERM before releasing it [default: 25].
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<String>,
    /// `json` or `text` [default: json].
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
    /// A job received more times than this fails with RetriesExhausted and goes to the DLQ;
    /// keep it below the queue's redrive maxReceiveCount [default: 10].
    #[arg(long, env = "MAX_RECEIVE_COUNT")]
    pub max_receive_count: Option<String>,
    /// Seconds each in-flight job is kept invisible, extended by the heartbeat at half-time
    /// [default: 15: short, so a killed replica's jobs are worked again within about 15 s].
    #[arg(long, env = "VISIBILITY_TIMEOUT_SECONDS")]
    pub visibility_timeout_seconds: Option<String>,
    /// /readyz fails when no receive succeeded for this many seconds [default: 90].
    #[arg(long, env = "READY_STALE_SECONDS")]
    pub ready_stale_seconds: Option<String>,
    /// A start result published with less than this many seconds left of its participant
    /// token's 300 s connect window is failed as ConnectWindowExpired instead [default: 0].
    #[arg(long, env = "CONNECT_MARGIN_SECONDS")]
    pub connect_margin_seconds: Option<String>,
    /// Timeout of one Connect call, in seconds [default: 10].
    #[arg(long, env = "CONNECT_TIMEOUT_SECONDS")]
    pub connect_timeout_seconds: Option<String>,
    /// `redis://` or `rediss://` (TLS) `[user[:password]@]host[:port][/db]` of a Redis or Valkey
    /// shared by all replicas: the rate quota is then shared exactly through a GCRA in Redis
    /// (every replica must have the same rates and bursts). Cluster mode is detected (see
    /// REDIS_CLUSTER). Unset: local adaptive control only. Redis unreachable: local control until
    /// it is back.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Password of the Redis user, kept out of REDIS_URL (ECS injects it from Secrets Manager);
    /// the user name, if not `default`, goes in the URL. Never logged.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// PEM file of the CA certificates that `rediss://` trusts instead of the system roots (a
    /// self-hosted Redis with a private CA; ElastiCache needs none) [default: system roots].
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<String>,
    /// `auto`, `on` or `off`: whether REDIS_URL is a cluster-mode endpoint (slots, MOVED/ASK).
    /// `auto` asks the server (`INFO cluster`) when it first connects [default: auto].
    #[arg(long, env = "REDIS_CLUSTER")]
    pub redis_cluster: Option<String>,
    /// Prefix of the fleet limiter's Redis keys (`{prefix}:{operation}`) [default: resume-chat-worker].
    #[arg(long, env = "FLEET_LIMITER_PREFIX")]
    pub fleet_limiter_prefix: Option<String>,
}

impl std::fmt::Debug for RawSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSettings")
            .field("jobs_queue_url", &self.jobs_queue_url)
            .field("results_queue_url", &self.results_queue_url)
            .field("dead_letter_queue_url", &self.dead_letter_queue_url)
            .field("contact_events_queue_url", &self.contact_events_queue_url)
            .field("connect_instance_id", &self.connect_instance_id)
            .field("connect_contact_flow_id", &self.connect_contact_flow_id)
            .field("start_chat_rate", &self.start_chat_rate)
            .field("start_chat_burst", &self.start_chat_burst)
            .field("associate_rate", &self.associate_rate)
            .field("associate_burst", &self.associate_burst)
            .field("max_in_flight", &self.max_in_flight)
            .field("metrics_addr", &self.metrics_addr)
            .field("shutdown_grace_seconds", &self.shutdown_grace_seconds)
            .field("log_format", &self.log_format)
            .field("max_receive_count", &self.max_receive_count)
            .field(
                "visibility_timeout_seconds",
                &self.visibility_timeout_seconds,
            )
            .field("ready_stale_seconds", &self.ready_stale_seconds)
            .field("connect_timeout_seconds", &self.connect_timeout_seconds)
            .field(
                "redis_url",
                &self
                    .redis_url
                    .as_deref()
                    .map(crate::rate::fleet::connection::redact),
            )
            .field(
                "redis_password",
                &self.redis_password.as_ref().map(|_| "<redacted>"),
            )
            .field("redis_ca_file", &self.redis_ca_file)
            .field("redis_cluster", &self.redis_cluster)
            .field("fleet_limiter_prefix", &self.fleet_limiter_prefix)
            .finish()
    }
}

/// A token bucket's ceiling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateSetting {
    pub per_second: f64,
    pub burst: u32,
}

/// The optional fleet-wide limiter in Redis. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetSetting {
    /// As given, including any password: hand it to the redis crate only, never to a log.
    pub redis_url: String,
    /// The URL with the password replaced by `***`: for logs and errors.
    pub redis_url_redacted: String,
    /// `REDIS_PASSWORD`, when the URL has none.
    pub password: Option<Secret>,
    /// `REDIS_CA_FILE`'s PEM contents (read at start-up), trusted instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub cluster: ClusterMode,
    pub prefix: String,
}

impl std::fmt::Debug for FleetSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSetting")
            .field("redis_url", &self.redis_url_redacted)
            .field("password", &self.password)
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A secret setting: `Debug` prints `<redacted>`, so no `{:?}` of the settings can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `REDIS_CLUSTER`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterMode {
    /// Ask the server (`INFO cluster`) when connecting.
    Auto,
    /// A cluster-mode endpoint (ElastiCache Serverless, cluster mode enabled).
    On,
    /// One primary (ElastiCache cluster mode disabled, a plain Redis).
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub jobs_queue_url: String,
    pub results_queue_url: String,
    pub dead_letter_queue_url: Option<String>,
    /// `CONTACT_EVENTS_QUEUE_URL`: chat ends from Connect's contact events.
    pub contact_events_queue_url: Option<String>,
    pub defaults: JobDefaults,
    pub start_chat: RateSetting,
    pub associate: RateSetting,
    pub max_in_flight: usize,
    pub metrics_addr: SocketAddr,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub max_receive_count: u32,
    pub visibility_timeout: Duration,
    pub ready_stale: Duration,
    pub connect_timeout: Duration,
    /// Least time left of the connect window for a start result to be published as a success.
    pub connect_margin: Duration,
    /// `None`: no `REDIS_URL`, local control only.
    pub fleet: Option<FleetSetting>,
}

/// One bad setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

fn trimmed(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn required_url(v: &Option<String>, setting: &'static str) -> Result<String, ConfigError> {
    let Some(s) = trimmed(v) else {
        return Err(bad(setting, "is required (the URL of an SQS queue)"));
    };
    url(s, setting)
}

fn url(s: &str, setting: &'static str) -> Result<String, ConfigError> {
    if !(s.starts_with("https://") || s.starts_with("http://")) || s.len() < 10 {
        return Err(bad(
            setting,
            format!(
                "must be an SQS queue URL such as https://sqs.us-east-1.amazonaws.com/123456789012/jobs, got {s:?}"
            ),
        ));
    }
    Ok(s.to_owned())
}

fn number<T: std::str::FromStr>(
    v: &Option<String>,
    setting: &'static str,
    default: T,
    what: &str,
    ok: impl Fn(&T) -> bool,
) -> Result<T, ConfigError> {
    match trimmed(v) {
        None => Ok(default),
        Some(s) => match s.parse::<T>() {
            Ok(n) if ok(&n) => Ok(n),
            _ => Err(bad(setting, format!("must be {what}, got {s:?}"))),
        },
    }
}

fn rate(v: &Option<String>, setting: &'static str) -> Result<f64, ConfigError> {
    number(
        v,
        setting,
        2.0,
        "a number of calls per second greater than 0 and at most 10000",
        |r: &f64| r.is_finite() && *r > 0.0 && *r <= 10_000.0,
    )
}

fn burst(v: &Option<String>, setting: &'static str) -> Result<u32, ConfigError> {
    number(
        v,
        setting,
        5,
        "a whole number from 1 to 10000",
        |b: &u32| (1..=10_000).contains(b),
    )
}

fn seconds(
    v: &Option<String>,
    setting: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    number(
        v,
        setting,
        default,
        &format!("a whole number of seconds from {min} to {max}"),
        |s: &u64| (min..=max).contains(s),
    )
    .map(Duration::from_secs)
}

/// Checks `REDIS_URL` (`redis://` or `rediss://`, optional `user[:password]@`, host, optional
/// port, optional `/db`) and returns it with its redacted form. No error ever echoes a password:
/// a value that does not parse is not shown at all.
fn redis_url(s: &str) -> Result<(String, String), ConfigError> {
    let form = "must be redis://[user[:password]@]host[:port][/db] or rediss://... (TLS), such as rediss://my-cache.serverless.use1.cache.amazonaws.com:6379";
    let Some(url) = redis::parse_redis_url(s) else {
        let shown = if s.contains('@') {
            "a value that is not a URL (not shown: it may hold a password)".to_owned()
        } else {
            format!("{s:?}")
        };
        return Err(bad("REDIS_URL", format!("{form}, got {shown}")));
    };
    let mut redacted = url.clone();
    if url.password().is_some() {
        let _ = redacted.set_password(Some("***"));
    }
    let shown = redacted.as_str().to_owned();
    let problem = |what: &str| bad("REDIS_URL", format!("{what}; {form}, got {shown:?}"));
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(problem("only redis:// and rediss:// are supported"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(problem("has no host"));
    }
    if url.port() == Some(0) {
        return Err(problem("port 0"));
    }
    if url.fragment().is_some() || url.query().is_some() {
        // `#insecure` would turn certificate checks off: not offered.
        return Err(problem(
            "no ?query or #fragment (certificate checks cannot be turned off)",
        ));
    }
    let db = url.path().trim_start_matches('/');
    if !(db.is_empty() || (db.len() <= 5 && db.parse::<u32>().is_ok())) {
        return Err(problem("the path must be a database number"));
    }
    Ok((s.to_owned(), shown))
}

fn fleet(raw: &RawSettings) -> Result<Option<FleetSetting>, ConfigError> {
    let prefix = match trimmed(&raw.fleet_limiter_prefix) {
        None => "resume-chat-worker".to_owned(),
        Some(p)
            if p.len() <= 100
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')) =>
        {
            p.to_owned()
        }
        Some(p) => {
            return Err(bad(
                "FLEET_LIMITER_PREFIX",
                format!("must be 1 to 100 characters of A-Z a-z 0-9 . _ : -, got {p:?}"),
            ));
        }
    };
    let cluster = match trimmed(&raw.redis_cluster)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("auto") => ClusterMode::Auto,
        Some("on" | "true" | "yes") => ClusterMode::On,
        Some("off" | "false" | "no") => ClusterMode::Off,
        Some(other) => {
            return Err(bad(
                "REDIS_CLUSTER",
                format!("must be auto, on or off, got {other:?}"),
            ));
        }
    };
    // Not trimmed: a password may have any characters; only an empty one counts as unset.
    let password = raw
        .redis_password
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(|p| Secret(p.to_owned()));
    let Some(url) = trimmed(&raw.redis_url) else {
        for (set, setting) in [
            (password.is_some(), "REDIS_PASSWORD"),
            (trimmed(&raw.redis_ca_file).is_some(), "REDIS_CA_FILE"),
        ] {
            if set {
                return Err(bad(setting, "is set but REDIS_URL is not"));
            }
        }
        return Ok(None);
    };
    let (redis_url, redis_url_redacted) = redis_url(url)?;
    let parsed = redis::parse_redis_url(&redis_url);
    if password.is_some() && parsed.as_ref().is_some_and(|u| u.password().is_some()) {
        return Err(bad(
            "REDIS_PASSWORD",
            "is set and REDIS_URL holds a password too: give it in one place only",
        ));
    }
    let ca_pem = match trimmed(&raw.redis_ca_file) {
        None => None,
        Some(_) if parsed.as_ref().is_some_and(|u| u.scheme() != "rediss") => {
            return Err(bad(
                "REDIS_CA_FILE",
                "needs a rediss:// REDIS_URL (TLS); redis:// does not use certificates",
            ));
        }
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| bad("REDIS_CA_FILE", format!("cannot read {path:?}: {e}")))?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(bad(
                    "REDIS_CA_FILE",
                    format!("{path:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
                ));
            }
            Some(pem)
        }
    };
    Ok(Some(FleetSetting {
        redis_url,
        redis_url_redacted,
        password,
        ca_pem,
        cluster,
        prefix,
    }))
}

/// Parses `host:port`; a host name is resolved once, at start-up.
pub fn parse_addr(s: &str) -> Option<SocketAddr> {
    s.parse().ok().or_else(|| s.to_socket_addrs().ok()?.next())
}

impl RawSettings {
    /// Validates every setting, reporting the first bad one.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let jobs_queue_url = required_url(&self.jobs_queue_url, "JOBS_QUEUE_URL")?;
        let results_queue_url = required_url(&self.results_queue_url, "RESULTS_QUEUE_URL")?;
        if jobs_queue_url == results_queue_url {
            return Err(bad(
                "RESULTS_QUEUE_URL",
                "must not be the jobs queue (results would be read back as jobs)",
            ));
        }
        let dead_letter_queue_url = trimmed(&self.dead_letter_queue_url)
            .map(|s| url(s, "DEAD_LETTER_QUEUE_URL"))
            .transpose()?;
        let contact_events_queue_url = trimmed(&self.contact_events_queue_url)
            .map(|s| url(s, "CONTACT_EVENTS_QUEUE_URL"))
            .transpose()?;
        if let Some(events) = &contact_events_queue_url {
            let clash = [Some(&jobs_queue_url), Some(&results_queue_url)]
                .into_iter()
                .chain([dead_letter_queue_url.as_ref()])
                .flatten()
                .any(|q| q == events);
            if clash {
                return Err(bad(
                    "CONTACT_EVENTS_QUEUE_URL",
                    "must be a queue of its own (its messages are deleted once read)",
                ));
            }
        }
        let id = |v: &Option<String>, setting, max: usize| -> Result<Option<String>, ConfigError> {
            match trimmed(v) {
                Some(s) if s.chars().count() > max => {
                    Err(bad(setting, format!("must be at most {max} characters")))
                }
                other => Ok(other.map(str::to_owned)),
            }
        };
        let defaults = JobDefaults {
            instance_id: id(&self.connect_instance_id, "CONNECT_INSTANCE_ID", 100)?,
            contact_flow_id: id(
                &self.connect_contact_flow_id,
                "CONNECT_CONTACT_FLOW_ID",
                500,
            )?,
        };
        let start_chat = RateSetting {
            per_second: rate(&self.start_chat_rate, "START_CHAT_RATE")?,
            burst: burst(&self.start_chat_burst, "START_CHAT_BURST")?,
        };
        let associate = RateSetting {
            per_second: rate(&self.associate_rate, "ASSOCIATE_RATE")?,
            burst: burst(&self.associate_burst, "ASSOCIATE_BURST")?,
        };
        let max_in_flight = number(
            &self.max_in_flight,
            "MAX_IN_FLIGHT",
            32,
            "a whole number from 1 to 10000",
            |n: &usize| (1..=10_000).contains(n),
        )?;
        let metrics_addr = match trimmed(&self.metrics_addr) {
            None => SocketAddr::from(([0, 0, 0, 0], 9464)),
            Some(s) => parse_addr(s).ok_or_else(|| {
                bad(
                    "METRICS_ADDR",
                    format!("must be host:port such as 0.0.0.0:9464, got {s:?}"),
                )
            })?,
        };
        let shutdown_grace = seconds(
            &self.shutdown_grace_seconds,
            "SHUTDOWN_GRACE_SECONDS",
            25,
            0,
            3600,
        )?;
        let log_format = match trimmed(&self.log_format)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(bad(
                    "LOG_FORMAT",
                    format!("must be json or text, got {other:?}"),
                ));
            }
        };
        let max_receive_count = number(
            &self.max_receive_count,
            "MAX_RECEIVE_COUNT",
            10,
            "a whole number from 1 to 1000",
            |n: &u32| (1..=1000).contains(n),
        )?;
        let visibility_timeout = seconds(
            &self.visibility_timeout_seconds,
            "VISIBILITY_TIMEOUT_SECONDS",
            15,
            5,
            43_200,
        )?;
        let ready_stale = seconds(
            &self.ready_stale_seconds,
            "READY_STALE_SECONDS",
            90,
            25,
            86_400,
        )?;
        let connect_timeout = seconds(
            &self.connect_timeout_seconds,
            "CONNECT_TIMEOUT_SECONDS",
            10,
            1,
            300,
        )?;
        // Up to the whole window: 300 fails every start result (tests use it).
        let connect_margin = seconds(
            &self.connect_margin_seconds,
            "CONNECT_MARGIN_SECONDS",
            0,
            0,
            300,
        )?;
        if connect_timeout >= visibility_timeout {
            return Err(bad(
                "CONNECT_TIMEOUT_SECONDS",
                "must be shorter than VISIBILITY_TIMEOUT_SECONDS",
            ));
        }
        let fleet = fleet(self)?;
        Ok(Settings {
            jobs_queue_url,
            results_queue_url,
            dead_letter_queue_url,
            contact_events_queue_url,
            defaults,
            start_chat,
            associate,
            max_in_flight,
            metrics_addr,
            shutdown_grace,
            log_format,
            max_receive_count,
            visibility_timeout,
            ready_stale,
            connect_timeout,
            connect_margin,
            fleet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> RawSettings {
        RawSettings {
            jobs_queue_url: Some("http://127.0.0.1:5000/000000000000/jobs".into()),
            results_queue_url: Some("http://127.0.0.1:5000/000000000000/results".into()),
            ..RawSettings::default()
        }
    }

    #[test]
    fn defaults_apply() {
        let s = minimal().validate().unwrap();
        assert_eq!(
            s.start_chat,
            RateSetting {
                per_second: 2.0,
                burst: 5
            }
        );
        assert_eq!(s.max_in_flight, 32);
        assert_eq!(s.metrics_addr.port(), 9464);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.shutdown_grace, Duration::from_secs(25));
        assert_eq!(s.connect_margin, Duration::ZERO);
    }

    #[test]
    fn each_error_names_its_setting() {
        let cases: Vec<(RawSettings, &str)> = vec![
            (
                RawSettings {
                    jobs_queue_url: None,
                    ..minimal()
                },
                "JOBS_QUEUE_URL",
            ),
            (
                RawSettings {
                    results_queue_url: Some("  ".into()),
                    ..minimal()
                },
                "RESULTS_QUEUE_URL",
            ),
            (
                RawSettings {
                    results_queue_url: Some("jobs".into()),
                    ..minimal()
                },
                "RESULTS_QUEUE_URL",
            ),
            (
                RawSettings {
                    start_chat_rate: Some("0".into()),
                    ..minimal()
                },
                "START_CHAT_RATE",
            ),
            (
                RawSettings {
                    start_chat_rate: Some("NaN".into()),
                    ..minimal()
                },
                "START_CHAT_RATE",
            ),
            (
                RawSettings {
                    associate_burst: Some("1.5".into()),
                    ..minimal()
                },
                "ASSOCIATE_BURST",
            ),
            (
                RawSettings {
                    max_in_flight: Some("-1".into()),
                    ..minimal()
                },
                "MAX_IN_FLIGHT",
            ),
            (
                RawSettings {
                    metrics_addr: Some("nope".into()),
                    ..minimal()
                },
                "METRICS_ADDR",
            ),
            (
                RawSettings {
                    log_format: Some("xml".into()),
                    ..minimal()
                },
                "LOG_FORMAT",
            ),
            (
                RawSettings {
                    dead_letter_queue_url: Some("dlq".into()),
                    ..minimal()
                },
                "DEAD_LETTER_QUEUE_URL",
            ),
            (
                RawSettings {
                    connect_timeout_seconds: Some("90".into()),
                    ..minimal()
                },
                "CONNECT_TIMEOUT_SECONDS",
            ),
        ];
        for (raw, setting) in cases {
            let err = raw.validate().expect_err(setting);
            assert_eq!(err.setting, setting);
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn fleet_limiter_settings() {
        assert_eq!(minimal().validate().unwrap().fleet, None);
        let s = RawSettings {
            redis_url: Some("redis://127.0.0.1:6379/2".into()),
            ..minimal()
        }
        .validate()
        .unwrap();
        let f = s.fleet.unwrap();
        assert_eq!(f.redis_url, "redis://127.0.0.1:6379/2");
        assert_eq!(f.prefix, "resume-chat-worker");
        assert_eq!(f.cluster, ClusterMode::Auto);
        assert_eq!((f.password, f.ca_pem), (None, None));
        let s = RawSettings {
            redis_url: Some("rediss://worker@my-cache.serverless.use1.cache.amazonaws.com".into()),
            redis_password: Some("s3cr3t pass".into()),
            redis_cluster: Some("ON".into()),
            fleet_limiter_prefix: Some("team-a:rcw".into()),
            ..minimal()
        }
        .validate()
        .unwrap();
        let f = s.fleet.unwrap();
        assert_eq!(f.prefix, "team-a:rcw");
        assert_eq!(f.cluster, ClusterMode::On);
        assert_eq!(f.password, Some(Secret("s3cr3t pass".into())));
        for (url, prefix, setting) in [
            ("http://127.0.0.1:6379", "", "REDIS_URL"),
            ("redis://127.0.0.1:0", "", "REDIS_URL"),
            ("redis://127.0.0.1:6379/x", "", "REDIS_URL"),
            ("rediss://127.0.0.1:6379#insecure", "", "REDIS_URL"),
            ("redis://127.0.0.1:6379", "a b", "FLEET_LIMITER_PREFIX"),
        ] {
            let err = RawSettings {
                redis_url: Some(url.into()),
                fleet_limiter_prefix: Some(prefix.into()),
                ..minimal()
            }
            .validate()
            .expect_err(url);
            assert_eq!(err.setting, setting, "{url}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn the_redis_password_never_shows() {
        // In the URL: accepted, redacted in Debug and in the redacted form.
        let s = RawSettings {
            redis_url: Some("rediss://worker:hunter2@cache.internal:6379".into()),
            ..minimal()
        }
        .validate()
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("rediss://worker:***@cache.internal:6379"),
            "{debug}"
        );
        // Not in the raw settings' Debug either.
        let raw = RawSettings {
            redis_url: Some("rediss://worker:hunter2@cache.internal:6379".into()),
            redis_password: Some("hunter3".into()),
            ..minimal()
        };
        let debug = format!("{raw:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("hunter3"),
            "{debug}"
        );
        // From REDIS_PASSWORD: redacted in Debug.
        let s = RawSettings {
            redis_url: Some("rediss://cache.internal:6379".into()),
            redis_password: Some("hunter2".into()),
            ..minimal()
        }
        .validate()
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        // Errors never echo it, whatever is wrong.
        for (url, password, setting) in [
            (
                "rediss://u:hunter2@cache.internal:6379/x",
                None,
                "REDIS_URL",
            ),
            ("rediss://u:hunter2@cache internal:6379", None, "REDIS_URL"),
            ("memcached://u:hunter2@cache:1", None, "REDIS_URL"),
            (
                "rediss://u:hunter2@cache:6379",
                Some("other"),
                "REDIS_PASSWORD",
            ),
        ] {
            let err = RawSettings {
                redis_url: Some(url.into()),
                redis_password: password.map(str::to_owned),
                ..minimal()
            }
            .validate()
            .expect_err(url);
            assert_eq!(err.setting, setting, "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn redis_extras_need_their_url() {
        for (raw, setting) in [
            (
                RawSettings {
                    redis_password: Some("x".into()),
                    ..minimal()
                },
                "REDIS_PASSWORD",
            ),
            (
                RawSettings {
                    redis_url: Some("redis://h:1".into()),
                    redis_ca_file: Some("/etc/hosts".into()),
                    ..minimal()
                },
                "REDIS_CA_FILE",
            ),
            (
                RawSettings {
                    redis_url: Some("rediss://h:1".into()),
                    redis_ca_file: Some("/nonexistent/ca.pem".into()),
                    ..minimal()
                },
                "REDIS_CA_FILE",
            ),
            (
                RawSettings {
                    redis_url: Some("rediss://h:1".into()),
                    redis_ca_file: Some("Cargo.toml".into()),
                    ..minimal()
                },
                "REDIS_CA_FILE",
            ),
            (
                RawSettings {
                    redis_url: Some("redis://h:1".into()),
                    redis_cluster: Some("maybe".into()),
                    ..minimal()
                },
                "REDIS_CLUSTER",
            ),
        ] {
            assert_eq!(raw.validate().expect_err(setting).setting, setting);
        }
    }

    #[test]
    fn fractional_rates_are_allowed() {
        let s = RawSettings {
            start_chat_rate: Some("0.5".into()),
            ..minimal()
        }
        .validate()
        .unwrap();
        assert_eq!(s.start_chat.per_second, 0.5);
    }
}
