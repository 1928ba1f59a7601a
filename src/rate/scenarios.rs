//! Scenario tests of the adaptive rate control (in the style of vector's adaptive-concurrency
//! tests): each file in `tests/data/rate-scenarios/` describes a simulated Connect rate bucket,
//! other callers sharing it, and replicas of our worker, each with its own [`AdaptiveLimiter`],
//! plus the ranges the measured numbers must fall in.
//!
//! # The simulation
//!
//! Everything runs on a current-thread tokio runtime with paused time, so a 60 s scenario takes
//! milliseconds and is deterministic (latencies come from a seeded generator).
//! - The server bucket is Connect's: continuous refill at `rate`, capacity `burst`, starts full;
//!   a call arriving with less than one token is throttled and consumes nothing.
//! - A worker replica takes a job from the shared backlog, `acquire()`s, and sends; the call
//!   reaches the server after half the round trip and its outcome is fed back after the other
//!   half. Throttled and LimitExceeded jobs go back to the backlog (retried).
//! - Other callers send at a steady rate during their `[from_s, until_s)` and never retry.
//! - `stray_throttles_at_s`: the first worker call arriving after each instant is throttled
//!   even though the bucket has tokens (a glitch, or a neighbour's one-off burst).
//! - `limit_exceeded_fraction`: that share of the worker calls the bucket accepts are answered
//!   `LimitExceededException` instead (reported `Neutral`; the job is retried).
//!
//! # Measures (over `[measure_from_s, end)`, `end` = last success with a finite backlog)
//! - `goodput_fraction`: worker calls accepted / what the bucket had left for us
//!   (∫ (rate − active other callers' rates) dt).
//! - `throttled_fraction`: throttled worker calls / worker calls.
//! - `other_refused_fraction`: refused other calls / other calls.
//! - `startup_goodput_fraction`: the same as goodput over the first 2 s of the run.
//! - `min_allowed_rate_fraction`: lowest allowed rate of any replica (sampled every 100 ms) /
//!   ceiling.
//! - `fairness`: Jain's index of the replicas' accepted calls (1 = equal shares).
//! - `settle_s`: from when on every 5 s window's goodput stays within ±15 % of what was left.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::{AdaptiveLimiter, ControllerSettings, RateFeedback};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    /// The benchmark target where the expected ranges are looser (documentation only).
    #[serde(default)]
    #[allow(dead_code)]
    target: Option<String>,
    server: ServerSpec,
    duration_s: f64,
    #[serde(default)]
    jobs: Option<u64>,
    latency_ms: [f64; 2],
    replicas: ReplicaSpec,
    #[serde(default)]
    others: Vec<OtherSpec>,
    #[serde(default)]
    stray_throttles_at_s: Vec<f64>,
    #[serde(default)]
    limit_exceeded_fraction: f64,
    #[serde(default)]
    measure_from_s: f64,
    #[serde(default = "default_seed")]
    seed: u64,
    expect: Expect,
}

fn default_seed() -> u64 {
    7
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    rate: f64,
    burst: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicaSpec {
    count: usize,
    ceiling: f64,
    burst: u32,
    /// Replica `i` starts at `i × start_stagger_s`.
    #[serde(default)]
    start_stagger_s: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtherSpec {
    rate: f64,
    #[serde(default)]
    from_s: f64,
    until_s: Option<f64>,
}

type Range = [f64; 2];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    goodput_fraction: Option<Range>,
    throttled_fraction: Option<Range>,
    other_refused_fraction: Option<Range>,
    startup_goodput_fraction: Option<Range>,
    min_allowed_rate_fraction: Option<Range>,
    fairness: Option<Range>,
    settle_s: Option<Range>,
}

/// Deterministic latency source (splitmix64).
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Accepted,
    Throttled,
    LimitExceeded,
}

struct World {
    start: Instant,
    // Server bucket.
    level: f64,
    last_refill: Instant,
    rate: f64,
    burst: f64,
    stray: VecDeque<Instant>,
    limit_exceeded_fraction: f64,
    rng: Rng,
    latency_ms: [f64; 2],
    // Backlog: jobs neither succeeded nor in flight; None = endless.
    pending: Option<u64>,
    in_flight: u64,
    last_success: Option<Instant>,
    // Records (arrival times at the server).
    worker_accepted: Vec<Vec<f64>>,
    worker_throttled: Vec<f64>,
    /// Throttled worker calls per replica (arrival times), for the trace.
    replica_throttled: Vec<Vec<f64>>,
    worker_neutral: Vec<f64>,
    other_sent: Vec<f64>,
    other_refused: Vec<f64>,
    min_allowed_fraction: Vec<(f64, f64)>,
    /// (time, each replica's allowed rate), for the trace.
    replica_allowed: Vec<(f64, Vec<f64>)>,
}

impl World {
    fn secs(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.start).as_secs_f64()
    }

    fn latency(&mut self) -> Duration {
        let [lo, hi] = self.latency_ms;
        Duration::from_secs_f64((lo + (hi - lo) * self.rng.next_f64()) / 1000.0)
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let dt = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.level = (self.level + dt * self.rate).min(self.burst);
        self.last_refill = now;
        if self.level >= 1.0 {
            self.level -= 1.0;
            true
        } else {
            false
        }
    }

    fn worker_call(&mut self, now: Instant, replica: usize) -> Answer {
        let t = self.secs(now);
        if self.stray.front().is_some_and(|s| *s <= now) {
            self.stray.pop_front();
            self.worker_throttled.push(t);
            self.replica_throttled[replica].push(t);
            return Answer::Throttled;
        }
        if !self.take_token(now) {
            self.worker_throttled.push(t);
            self.replica_throttled[replica].push(t);
            return Answer::Throttled;
        }
        if self.limit_exceeded_fraction > 0.0 && self.rng.next_f64() < self.limit_exceeded_fraction
        {
            self.worker_neutral.push(t);
            return Answer::LimitExceeded;
        }
        self.worker_accepted[replica].push(t);
        Answer::Accepted
    }

    fn other_call(&mut self, now: Instant) {
        let t = self.secs(now);
        self.other_sent.push(t);
        if !self.take_token(now) {
            self.other_refused.push(t);
        }
    }
}

type Shared = Arc<Mutex<World>>;

fn lock(world: &Shared) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

async fn replica(world: Shared, limiter: Arc<AdaptiveLimiter>, index: usize, end: Instant) {
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        let took = {
            let mut w = lock(&world);
            match w.pending {
                None => true,
                Some(0) if w.in_flight == 0 => return,
                Some(0) => false,
                Some(n) => {
                    w.pending = Some(n - 1);
                    true
                }
            }
        };
        if !took {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        limiter.acquire().await;
        let (half_trip, back_trip) = {
            let mut w = lock(&world);
            w.in_flight += 1;
            let l = w.latency();
            (l / 2, l - l / 2)
        };
        let world = Arc::clone(&world);
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            tokio::time::sleep(half_trip).await;
            let answer = lock(&world).worker_call(Instant::now(), index);
            tokio::time::sleep(back_trip).await;
            limiter.feedback(match answer {
                Answer::Accepted => RateFeedback::Accepted,
                Answer::Throttled => RateFeedback::Throttled,
                Answer::LimitExceeded => RateFeedback::Neutral,
            });
            let mut w = lock(&world);
            w.in_flight -= 1;
            if answer == Answer::Accepted {
                w.last_success = Some(Instant::now());
            } else if let Some(n) = w.pending {
                w.pending = Some(n + 1);
            }
        });
    }
}

async fn other_caller(world: Shared, rate: f64, from: Instant, until: Instant) {
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut next = from;
    while next < until {
        tokio::time::sleep_until(next).await;
        let half_trip = lock(&world).latency() / 2;
        let world = Arc::clone(&world);
        tokio::spawn(async move {
            tokio::time::sleep(half_trip).await;
            lock(&world).other_call(Instant::now());
        });
        next += period;
    }
}

async fn sampler(world: Shared, limiters: Vec<Arc<AdaptiveLimiter>>, end: Instant) {
    while Instant::now() < end {
        let min = limiters
            .iter()
            .map(|l| l.allowed_rate() / l.ceiling())
            .fold(f64::INFINITY, f64::min);
        {
            let mut w = lock(&world);
            let t = w.secs(Instant::now());
            w.min_allowed_fraction.push((t, min));
            let each = limiters.iter().map(|l| l.allowed_rate()).collect();
            w.replica_allowed.push((t, each));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug)]
struct Measured {
    end_s: f64,
    goodput_fraction: f64,
    throttled_fraction: f64,
    other_refused_fraction: f64,
    startup_goodput_fraction: f64,
    min_allowed_rate_fraction: f64,
    fairness: f64,
    settle_s: f64,
    worker_calls: usize,
    throttled: usize,
}

async fn run(s: &Scenario) -> Measured {
    let start = Instant::now();
    let world: Shared = Arc::new(Mutex::new(World {
        start,
        level: s.server.burst,
        last_refill: start,
        rate: s.server.rate,
        burst: s.server.burst,
        stray: s
            .stray_throttles_at_s
            .iter()
            .map(|t| start + Duration::from_secs_f64(*t))
            .collect(),
        limit_exceeded_fraction: s.limit_exceeded_fraction,
        rng: Rng(std::env::var("RATE_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(s.seed)),
        latency_ms: s.latency_ms,
        pending: s.jobs,
        in_flight: 0,
        last_success: None,
        worker_accepted: vec![Vec::new(); s.replicas.count],
        worker_throttled: Vec::new(),
        replica_throttled: vec![Vec::new(); s.replicas.count],
        worker_neutral: Vec::new(),
        other_sent: Vec::new(),
        other_refused: Vec::new(),
        min_allowed_fraction: Vec::new(),
        replica_allowed: Vec::new(),
    }));
    let end = start + Duration::from_secs_f64(s.duration_s);
    let mut tasks = Vec::new();
    let mut limiters = Vec::new();
    for other in &s.others {
        let until = other.until_s.unwrap_or(s.duration_s).min(s.duration_s);
        tasks.push(tokio::spawn(other_caller(
            Arc::clone(&world),
            other.rate,
            start + Duration::from_secs_f64(other.from_s),
            start + Duration::from_secs_f64(until),
        )));
    }
    let (ceiling, burst) = (s.replicas.ceiling, s.replicas.burst);
    let mut replica_tasks = Vec::new();
    for i in 0..s.replicas.count {
        let stagger = Duration::from_secs_f64(s.replicas.start_stagger_s * i as f64);
        let limiter = Arc::new(AdaptiveLimiter::with_settings(settings(), ceiling, burst));
        limiters.push(Arc::clone(&limiter));
        let w = Arc::clone(&world);
        replica_tasks.push(tokio::spawn(async move {
            tokio::time::sleep(stagger).await;
            replica(w, limiter, i, end).await;
        }));
    }
    tasks.push(tokio::spawn(sampler(Arc::clone(&world), limiters, end)));
    for t in replica_tasks {
        let _ = t.await;
    }
    // Let the last answers come back.
    tokio::time::sleep(Duration::from_secs_f64(s.latency_ms[1] / 1000.0 + 0.01)).await;
    for t in tasks {
        t.abort();
    }
    let w = lock(&world);
    if std::env::var_os("RATE_SCENARIO_TRACE").is_some() {
        trace(&w, s.duration_s);
    }
    let end_s = match (s.jobs, w.last_success) {
        (Some(_), Some(t)) => w.secs(t),
        _ => s.duration_s,
    };
    measure(s, &w, end_s)
}

/// Controller settings: the defaults, or for tuning sessions `RATE_SETTINGS` =
/// "decrease,min_decrease,recovery_s,probe_gain,prior,recovery_calls".
fn settings() -> ControllerSettings {
    let mut s = ControllerSettings::default();
    if let Ok(v) = std::env::var("RATE_SETTINGS") {
        let f: Vec<f64> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        if let [d, m, k, g, p, n] = f[..] {
            s.recovery_calls = n;
            s.decrease_factor = d;
            s.min_decrease_factor = m;
            s.recovery_time = Duration::from_secs_f64(k);
            s.probe_gain = g;
            s.prior = p;
        }
    }
    if std::env::var_os("RATE_NO_SHARE").is_some() {
        s.use_share_estimate = false;
    }
    s
}

/// Per-second timeline on stdout (set `RATE_SCENARIO_TRACE` to see it).
fn trace(w: &World, duration_s: f64) {
    let mut t = 0.0;
    while t < duration_s {
        let acc: usize = w
            .worker_accepted
            .iter()
            .map(|r| count_in(r, t, t + 1.0))
            .sum();
        // Per replica: accepted/throttled this second, and the allowed rate at its start.
        let each = w
            .replica_allowed
            .iter()
            .find(|(s, _)| *s >= t)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let allowed: f64 = each.iter().sum();
        let replicas: Vec<String> = each
            .iter()
            .enumerate()
            .map(|(i, a)| {
                format!(
                    "{}/{}@{a:.1}",
                    count_in(&w.worker_accepted[i], t, t + 1.0),
                    count_in(&w.replica_throttled[i], t, t + 1.0)
                )
            })
            .collect();
        println!(
            "t={t:>4.0} accepted={acc:>3} throttled={:>2} other_refused={:>2} allowed={allowed:.2} {}",
            count_in(&w.worker_throttled, t, t + 1.0),
            count_in(&w.other_refused, t, t + 1.0),
            replicas.join(" "),
        );
        t += 1.0;
    }
}

/// ∫ (server rate − active other callers) dt over [a, b].
fn available(s: &Scenario, a: f64, b: f64) -> f64 {
    let mut total = s.server.rate * (b - a);
    for o in &s.others {
        let until = o.until_s.unwrap_or(s.duration_s);
        let overlap = (until.min(b) - o.from_s.max(a)).max(0.0);
        total -= o.rate * overlap;
    }
    total.max(f64::MIN_POSITIVE)
}

fn count_in(times: &[f64], a: f64, b: f64) -> usize {
    times.iter().filter(|t| **t >= a && **t < b).count()
}

fn measure(s: &Scenario, w: &World, end_s: f64) -> Measured {
    let from = s.measure_from_s;
    let accepted_in =
        |a: f64, b: f64| -> usize { w.worker_accepted.iter().map(|r| count_in(r, a, b)).sum() };
    let accepted = accepted_in(from, end_s);
    let throttled = count_in(&w.worker_throttled, from, end_s);
    let neutral = count_in(&w.worker_neutral, from, end_s);
    let calls = accepted + throttled + neutral;
    let other_sent = count_in(&w.other_sent, from, end_s);
    let other_refused = count_in(&w.other_refused, from, end_s);
    let startup_end = 2.0f64.min(end_s);
    let per_replica: Vec<f64> = w
        .worker_accepted
        .iter()
        .map(|r| count_in(r, from, end_s) as f64)
        .collect();
    let sum: f64 = per_replica.iter().sum();
    let sum_sq: f64 = per_replica.iter().map(|x| x * x).sum();
    let fairness = if sum_sq > 0.0 {
        sum * sum / (per_replica.len() as f64 * sum_sq)
    } else {
        0.0
    };
    let ok = |a: f64| {
        let g = accepted_in(a, a + 5.0) as f64 / available(s, a, a + 5.0);
        (0.85..=1.15).contains(&g)
    };
    let mut settle_s = 0.0;
    let mut a = 0.0;
    while a + 5.0 <= end_s {
        if !ok(a) {
            settle_s = a + 1.0;
        }
        a += 1.0;
    }
    let ratio = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    Measured {
        end_s,
        goodput_fraction: accepted as f64 / available(s, from, end_s),
        throttled_fraction: ratio(throttled, calls),
        other_refused_fraction: ratio(other_refused, other_sent),
        startup_goodput_fraction: accepted_in(0.0, startup_end) as f64
            / available(s, 0.0, startup_end),
        min_allowed_rate_fraction: w
            .min_allowed_fraction
            .iter()
            .filter(|(t, _)| *t >= from && *t < end_s)
            .map(|(_, m)| *m)
            .fold(f64::INFINITY, f64::min),
        fairness,
        settle_s,
        worker_calls: calls,
        throttled,
    }
}

fn check(name: &str, m: &Measured, e: &Expect) -> Vec<String> {
    let mut failures = Vec::new();
    let mut one = |label: &str, range: Option<Range>, value: f64| {
        if let Some([lo, hi]) = range
            && !(value >= lo && value <= hi)
        {
            failures.push(format!("{name}: {label} = {value:.4} not in [{lo}, {hi}]"));
        }
    };
    one("goodput_fraction", e.goodput_fraction, m.goodput_fraction);
    one(
        "throttled_fraction",
        e.throttled_fraction,
        m.throttled_fraction,
    );
    one(
        "other_refused_fraction",
        e.other_refused_fraction,
        m.other_refused_fraction,
    );
    one(
        "startup_goodput_fraction",
        e.startup_goodput_fraction,
        m.startup_goodput_fraction,
    );
    one(
        "min_allowed_rate_fraction",
        e.min_allowed_rate_fraction,
        m.min_allowed_rate_fraction,
    );
    one("fairness", e.fairness, m.fairness);
    one("settle_s", e.settle_s, m.settle_s);
    failures
}

fn run_file(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rate-scenarios")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let scenario: Scenario =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let m = rt.block_on(run(&scenario));
    println!(
        "scenario {name}: goodput {:.4} throttled {:.4} ({}/{}) other_refused {:.4} startup {:.3} \
         min_allowed {:.3} fairness {:.3} settle {:.0}s end {:.1}s ({})",
        m.goodput_fraction,
        m.throttled_fraction,
        m.throttled,
        m.worker_calls,
        m.other_refused_fraction,
        m.startup_goodput_fraction,
        m.min_allowed_rate_fraction,
        m.fairness,
        m.settle_s,
        m.end_s,
        scenario.description,
    );
    let failures = check(name, &m, &scenario.expect);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_file(stringify!($name));
            }
        )*
    };
}

scenarios!(
    steady,
    stray_429,
    noisy_neighbour,
    noisy_neighbour_local,
    neighbour_comes_and_goes,
    fleet_3,
    fleet_6,
    fleet_6_staggered,
    fleet_6_bench_like,
    fleet_3_bench_like,
    fleet_3_after_startup,
    fleet_6_after_startup,
    fractional_ceiling,
    fractional_fleet,
    limit_exceeded_is_neutral,
    connect_default_quota,
);
