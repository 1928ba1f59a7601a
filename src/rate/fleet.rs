//! The optional fleet-wide limiter: one GCRA per Connect operation in Redis, shared by every
//! replica, so K replicas together stay within the account's quota exactly instead of learning
//! their share from throttles (the local [`AdaptiveLimiter`](super::AdaptiveLimiter) still runs
//! in front of it and still adapts to throttles caused by callers outside the fleet).
//!
//! # Protocol
//!
//! - Key per operation: `"{prefix}:{operation}"`, e.g. `resume-chat-worker:StartChatContact`. It
//!   holds the GCRA's theoretical arrival time (TAT) in microseconds of Redis' clock, with a `PX`
//!   expiry so an idle key disappears (a missing key means a full burst).
//! - One Lua script ([`GCRA`]), run with `EVALSHA` (loaded again on `NOSCRIPT`, e.g. after Redis
//!   restarts), atomic in Redis. Its time is Redis' own `TIME`: replicas' clocks never matter.
//! - Rate and burst come from the operation's configured ceiling (`START_CHAT_RATE`/
//!   `START_CHAT_BURST`, `ASSOCIATE_RATE`/`ASSOCIATE_BURST`) and travel with every call: **every
//!   replica must be configured with the same values** (the whole account's quota), otherwise
//!   the last caller's values decide each slot.
//! - The GCRA's burst is the configured burst **minus one** (at least 1): one token of Connect's
//!   bucket is never spent, so it stays a cushion against jitter. With the exact burst the
//!   opening burst empties Connect's bucket, and from then on every call whose trip from Redis'
//!   grant to Connect is shorter than its predecessor's arrives a hair before its token and is
//!   throttled (tests/fleet_e2e.rs measured 1 throttle per 60 calls in 5 of 6 runs; with the
//!   cushion 0 in 5 of 5). The rate is exact, so the cost is one call of the first burst.
//! - The script answers 0 (granted, slot taken) or the microseconds until the next slot; the
//!   caller sleeps that long (tokio) and asks again. Within one process the callers of one
//!   operation queue in FIFO order and only the head asks Redis, so Redis sees about one request
//!   per replica per slot, not one per waiting job.
//!
//! # Fallback
//!
//! Every Redis call is bounded by a short timeout (200 ms for a script call, 1 s for a connection
//! attempt, which may include a TLS handshake, AUTH and reading a cluster's slot map). Any
//! error ends sharing: the job goes on with local control only (its local token is already
//! taken), a warning is logged once per outage, `resume_chat_fleet_limiter_errors_total` counts
//! and `resume_chat_fleet_limiter_state` shows 2. After a cooldown (5 s) the next caller tries to
//! connect again (one caller; the others stay local meanwhile); success logs once and shows 1.
//! The connection is made lazily, so a worker starts fine while Redis is down; the pipeline
//! makes the first attempt before its first receive (`pipeline::Worker::run`), so the first jobs
//! already share.
//!
//! # Why no `ConnectionManager`
//!
//! redis' `ConnectionManager` connects eagerly (its constructor fails while Redis is down) and
//! reconnects with its own retry schedule; here the cooldown and the "one attempt at a time,
//! everybody else local" rule are the point, so this file keeps a plain multiplexed connection
//! and replaces it itself.
//!
//! # Reaching Redis
//!
//! TLS (`rediss://`), a user and password, and cluster mode (ElastiCache Serverless for Valkey
//! or Redis, or a node-based cluster with or without cluster mode) live in [`connection`].

pub mod connection;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use redis::Script;
use tokio::time::Instant;

use crate::config::{ClusterMode, FleetSetting};
use connection::{ConnectOptions, Connector, RedisConn};

/// GCRA with burst: a call may go when `tat - now <= (burst - 1) * interval`, and then moves
/// `tat` one interval on. KEYS[1] = the operation's key; ARGV[1] = interval (µs), ARGV[2] = burst.
/// Numbers are Lua doubles: microsecond times (~1.8e15) are exact below 2^53.
pub const GCRA: &str = r#"
-- Effects replication: TIME is non-deterministic (a no-op from Redis 5 on, needed on 3.2/4).
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local allowance = (burst - 1) * interval
if tat - now > allowance then
  return math.ceil(tat - now - allowance)
end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return 0
"#;

/// Tuning of the link to Redis. `Debug` never shows a password.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// Where and how to connect (URL, password, CA bundle, cluster mode).
    pub connect: ConnectOptions,
    /// Key prefix; keys are `"{prefix}:{operation}"`.
    pub prefix: String,
    /// Bound of one script call (with its reload on `NOSCRIPT`).
    pub call_timeout: Duration,
    /// Bound of one connection attempt (TCP, TLS handshake, AUTH, a cluster's slot map).
    pub connect_timeout: Duration,
    /// Time in fallback before the next connection attempt.
    pub cooldown: Duration,
}

impl FleetOptions {
    /// A plain `redis://` (or `rediss://` with system roots) URL, cluster mode detected.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        FleetOptions {
            connect: ConnectOptions {
                url: url.into(),
                password: None,
                ca_pem: None,
                cluster: ClusterMode::Auto,
            },
            prefix: prefix.into(),
            call_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(1),
            cooldown: Duration::from_secs(5),
        }
    }

    /// From the validated settings (`REDIS_URL`, `REDIS_PASSWORD`, `REDIS_CA_FILE`,
    /// `REDIS_CLUSTER`, `FLEET_LIMITER_PREFIX`).
    pub fn from_setting(s: &FleetSetting) -> Self {
        let mut o = FleetOptions::new(&s.redis_url, &s.prefix);
        o.connect.password = s.password.as_ref().map(|p| p.0.clone());
        o.connect.ca_pem = s.ca_pem.clone();
        o.connect.cluster = s.cluster;
        o
    }
}

/// Where the fleet limiter stands (the `resume_chat_fleet_limiter_state` gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetState {
    /// No `REDIS_URL`: local control only, by configuration.
    Disabled = 0,
    /// Slots come from Redis.
    Shared = 1,
    /// Redis unreachable (or not reached yet): local control only until it answers again.
    Fallback = 2,
}

/// The link's metric handles (registered in [`crate::metrics::Metrics`], or free-standing in
/// tests).
#[derive(Clone)]
pub struct FleetMetrics {
    pub state: IntGauge,
    pub errors: IntCounter,
}

impl FleetMetrics {
    /// Handles registered nowhere.
    pub fn unregistered() -> Self {
        FleetMetrics {
            state: IntGauge::new("fleet_state", "unregistered").unwrap_or_else(|_| unreachable!()),
            errors: IntCounter::new("fleet_errors", "unregistered")
                .unwrap_or_else(|_| unreachable!()),
        }
    }
}

/// A `REDIS_URL` the redis crate does not accept.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL: {0}")]
pub struct FleetError(#[from] redis::RedisError);

enum Link {
    /// Connected; `generation` tells a stale connection's error from the current one's.
    Up {
        connection: RedisConn,
        generation: u64,
    },
    /// Not connected; the next connection attempt may start at `retry_at`.
    Down { retry_at: Instant },
}

/// What was published last, to log each transition once.
struct Status {
    state: FleetState,
    connected_once: bool,
    outage_reported: bool,
}

/// The process' link to Redis, shared by the operations' [`FleetLimiter`]s.
pub struct FleetLink {
    connector: Connector,
    /// The URL with any password masked, for log lines.
    shown_url: String,
    options: FleetOptions,
    script: Script,
    link: Mutex<Link>,
    generation: AtomicU64,
    status: Mutex<Status>,
    metrics: FleetMetrics,
}

impl FleetLink {
    /// No connection is made here (see [`FleetLink::check`]); only the URL is checked.
    pub fn new(options: FleetOptions, metrics: FleetMetrics) -> Result<Self, FleetError> {
        let connector = Connector::new(&options.connect, options.connect_timeout)?;
        let shown_url = connection::redact(&options.connect.url);
        // Not connected yet: Fallback until Redis first answers (the worker runs on local control
        // meanwhile), without a warning unless that first attempt fails.
        metrics.state.set(FleetState::Fallback as i64);
        Ok(FleetLink {
            connector,
            shown_url,
            options,
            script: Script::new(GCRA),
            link: Mutex::new(Link::Down {
                retry_at: Instant::now(),
            }),
            generation: AtomicU64::new(0),
            status: Mutex::new(Status {
                state: FleetState::Fallback,
                connected_once: false,
                outage_reported: false,
            }),
            metrics,
        })
    }

    /// Current state.
    pub fn state(&self) -> FleetState {
        lock(&self.status).state
    }

    /// Redis errors so far.
    pub fn errors(&self) -> u64 {
        self.metrics.errors.get()
    }

    /// Connects (if the cooldown allows) and pings: start-up's early state and log line.
    pub async fn check(&self) -> FleetState {
        if let Some((mut connection, generation)) = self.connection().await {
            let ping = redis::cmd("PING");
            let r = tokio::time::timeout(
                self.options.call_timeout,
                ping.query_async::<String>(&mut connection),
            )
            .await;
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.on_error(generation, &e.to_string()),
                Err(_) => self.on_error(generation, "timed out"),
            }
        }
        self.state()
    }

    /// The current connection, or a new one when the cooldown has passed; `None`: go local.
    async fn connection(&self) -> Option<(RedisConn, u64)> {
        let now = Instant::now();
        {
            let mut link = lock(&self.link);
            match &mut *link {
                Link::Up {
                    connection,
                    generation,
                } => return Some((connection.clone(), *generation)),
                Link::Down { retry_at } if *retry_at > now => return None,
                // This caller makes the attempt; the others stay local until the cooldown ends.
                Link::Down { retry_at } => *retry_at = now + self.options.cooldown,
            }
        }
        let t = self.options.connect_timeout;
        let attempt = tokio::time::timeout(t, self.connector.connect(t)).await;
        match attempt {
            Ok(Ok(connection)) => {
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *lock(&self.link) = Link::Up {
                    connection: connection.clone(),
                    generation,
                };
                self.publish(FleetState::Shared, "");
                Some((connection, generation))
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed("connection timed out");
                None
            }
        }
    }

    /// A call on connection `generation` failed: drop it (unless a newer one replaced it).
    fn on_error(&self, generation: u64, error: &str) {
        {
            let mut link = lock(&self.link);
            if matches!(&*link, Link::Up { generation: g, .. } if *g == generation) {
                *link = Link::Down {
                    retry_at: Instant::now() + self.options.cooldown,
                };
            }
        }
        self.failed(error);
    }

    fn failed(&self, error: &str) {
        self.metrics.errors.inc();
        self.publish(FleetState::Fallback, error);
    }

    /// Sets the gauge and logs once per transition (an outage is reported once, not per call).
    fn publish(&self, new: FleetState, error: &str) {
        let mut status = lock(&self.status);
        let old = status.state;
        status.state = new;
        self.metrics.state.set(new as i64);
        match new {
            FleetState::Shared if old != FleetState::Shared => {
                if status.connected_once {
                    tracing::info!(
                        "fleet limiter: Redis is back; sharing the quota via Redis again"
                    );
                } else {
                    tracing::info!(redis = %self.shown_url, "fleet limiter: Redis reached; sharing the quota via Redis");
                }
                status.connected_once = true;
                status.outage_reported = false;
            }
            FleetState::Fallback if !status.outage_reported => {
                status.outage_reported = true;
                tracing::warn!(
                    error,
                    cause = connection::cause(error),
                    redis = %self.shown_url,
                    retry_every_s = self.options.cooldown.as_secs_f64(),
                    "fleet limiter: Redis unreachable; local rate control only until it answers"
                );
            }
            FleetState::Fallback => {
                tracing::debug!(error, "fleet limiter: Redis still unreachable")
            }
            _ => {}
        }
    }

    /// One script call: `Ok(0)` granted, `Ok(µs)` wait, `Err` fall back.
    async fn try_slot(&self, key: &str, interval_us: u64, burst: u32) -> Result<u64, ()> {
        let Some((mut connection, generation)) = self.connection().await else {
            return Err(());
        };
        let mut invocation = self.script.prepare_invoke();
        invocation.key(key).arg(interval_us).arg(burst);
        let r = tokio::time::timeout(
            self.options.call_timeout,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;
        match r {
            Ok(Ok(wait)) => Ok(u64::try_from(wait).unwrap_or(0)),
            Ok(Err(e)) => {
                self.on_error(generation, &e.to_string());
                Err(())
            }
            Err(_) => {
                self.on_error(generation, "call timed out");
                Err(())
            }
        }
    }
}

/// Longest single sleep between two asks: a wait longer than this (replicas configured
/// differently) is re-asked rather than trusted.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// The fleet-wide slot of one Connect operation. `Send + Sync`.
pub struct FleetLimiter {
    link: std::sync::Arc<FleetLink>,
    key: String,
    interval_us: u64,
    burst: u32,
    /// FIFO among this process' waiters; only the head asks Redis.
    turn: tokio::sync::Mutex<()>,
}

impl FleetLimiter {
    /// The limiter of `operation` at `per_second` (may be fractional) with the configured `burst`
    /// (the GCRA keeps one token back: `burst - 1`, at least 1).
    pub fn new(
        link: std::sync::Arc<FleetLink>,
        operation: &str,
        per_second: f64,
        burst: u32,
    ) -> Self {
        let rate = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        let key = format!("{}:{operation}", link.options.prefix);
        FleetLimiter {
            link,
            key,
            interval_us: (1e6 / rate).round().max(1.0) as u64,
            burst: burst.saturating_sub(1).max(1),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The GCRA's burst: the configured one minus the cushion token (at least 1).
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The Redis key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The shared link.
    pub fn link(&self) -> &FleetLink {
        &self.link
    }

    /// Waits for a fleet-wide slot; returns how long it waited. Returns at once (slot or not)
    /// when Redis is unreachable: the caller's local token is its only control then. A Redis
    /// problem never holds a caller longer than one call timeout. Cancel-safe: a slot is only
    /// taken by the call that returns it.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        let _turn = self.turn.lock().await;
        loop {
            match self
                .link
                .try_slot(&self.key, self.interval_us, self.burst)
                .await
            {
                Ok(0) | Err(()) => return started.elapsed(),
                Ok(wait_us) => {
                    tokio::time::sleep(Duration::from_micros(wait_us).min(MAX_SLEEP)).await;
                }
            }
        }
    }
}

impl std::fmt::Debug for FleetLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLimiter")
            .field("key", &self.key)
            .field("interval_us", &self.interval_us)
            .field("burst", &self.burst)
            .field("state", &self.link.state())
            .finish()
    }
}

/// A poisoned lock holds plain values that stay consistent; use it as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(url: &str) -> std::sync::Arc<FleetLink> {
        let mut o = FleetOptions::new(url, "p");
        o.cooldown = Duration::from_secs(5);
        std::sync::Arc::new(FleetLink::new(o, FleetMetrics::unregistered()).unwrap())
    }

    #[test]
    fn keys_and_intervals() {
        let l = FleetLimiter::new(link("redis://127.0.0.1:1"), "StartChatContact", 0.5, 0);
        assert_eq!(l.key(), "p:StartChatContact");
        assert_eq!(l.interval_us, 2_000_000);
        assert_eq!(l.burst(), 1);
        let l = FleetLimiter::new(link("redis://127.0.0.1:1"), "X", 10.0, 5);
        assert_eq!((l.interval_us, l.burst()), (100_000, 4));
        let l = FleetLimiter::new(link("redis://127.0.0.1:1"), "X", f64::NAN, 3);
        assert_eq!(l.interval_us, 1_000_000);
    }

    #[test]
    fn a_bad_url_is_an_error() {
        let r = FleetLink::new(
            FleetOptions::new("http://x", "p"),
            FleetMetrics::unregistered(),
        );
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn redis_down_means_local_at_once_and_one_attempt_per_cooldown() {
        // Port 1 on loopback: connection refused at once.
        let l = FleetLimiter::new(link("redis://127.0.0.1:1"), "StartChatContact", 1.0, 1);
        for _ in 0..20 {
            let waited = l.acquire().await;
            assert!(waited < Duration::from_secs(1), "{waited:?}");
        }
        assert_eq!(l.link().state(), FleetState::Fallback);
        // Twenty calls within the cooldown: one connection attempt, one error.
        assert_eq!(l.link().errors(), 1);
    }
}
