//! Scenario tests of the adaptive rate control (in the style of vector's adaptive-concurrency
//! tests): each file in `tests/data/rate-scenarios/` describes a simulated Connect rate bucket,
//! other callers sharing it, and replicas of our worker, each with its own [`AdaptiveLimiter`],
//! plus the ranges the measured numbers must fall in, for each seed and for their mean.
//!
//! # The simulation
//!
//! Everything runs on a current-thread tokio runtime with paused time, so a 60 s scenario takes
//! milliseconds and is deterministic (latencies and arrivals come from a seeded generator).
//! - The server bucket is Connect's: continuous refill at `rate`, capacity `burst`, starts full;
//!   a call arriving with less than one token is throttled and consumes nothing.
//! - Jobs: a backlog of `jobs` (endless if absent) present from the start, or, with
//!   `arrivals_per_s`, a Poisson stream of jobs (a trickle: no backlog).
//! - A worker replica takes a job, `acquire()`s, and sends; the call reaches the server after half
//!   the round trip (uniform in `latency_ms`; `decided_at` another fraction of it) and its
//!   outcome is fed back after the rest.
//!   Throttled and LimitExceeded jobs go back to the front of the queue (retried).
//! - Other callers send at a steady rate during their `[from_s, until_s)`, from a phase drawn
//!   per seed within their first period, and never retry.
//! - `stray_throttles_at_s`: the first worker call arriving after each instant is throttled
//!   even though the bucket has tokens (a glitch, or a neighbour's one-off burst).
//! - `limit_exceeded_fraction`: that share of the worker calls the bucket accepts are answered
//!   `LimitExceededException` instead (reported `Neutral`; the job is retried).
//! - `seeds: N` runs the scenario with seeds 1..=N (else once with `seed`, default 7).
//!
//! # Measures (over `[measure_from_s, end)`, `end` = with a finite backlog, the arrival of the
//! last accepted call at the server)
//! - `goodput_fraction`: worker calls accepted / what the bucket had for us: ∫ (rate − active
//!   other callers' rates) dt, plus the bucket's burst when measured from the start (it starts
//!   full, so a lone worker can have `burst + rate × T` in `T`); from the start means from our
//!   first call's arrival at the bucket (half a round trip in, or `decided_at` of it).
//! - `throttled_fraction`: throttled worker calls / worker calls.
//! - `throttled_fraction_after_10s`: the same from 10 s after the last replica started (a fleet
//!   after its start-up).
//! - `startup_429s_per_replica`: throttled worker calls until 10 s after the last replica
//!   started / replicas (the fleet's start-up, staggered or not).
//! - `other_refused_fraction`: refused other calls / other calls (they only call while present).
//! - `reclaim_s`: after the last other caller leaves, until the first 1 s window (sliding by
//!   0.1 s) in which our accepted calls reach 0.9 × the quota; at least 1 s. Absent when no
//!   caller leaves; the rest of the run if never.
//! - `startup_goodput_fraction`: goodput over the first 2 s, without the burst.
//! - `min_allowed_rate_fraction`: lowest allowed rate of any replica (sampled every 100 ms) /
//!   ceiling.
//! - `fairness`: Jain's index of the replicas' accepted calls (1 = equal shares).
//! - `settle_s`: from when on every 5 s window's goodput stays within ±15 % of what was left.
//! - `wait_p50_ms`, `wait_p99_ms`: per job, from its arrival to the answer of its successful call,
//!   minus that call's round trip: what our rate control adds to the latency a customer feels.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{AdaptiveLimiter, ControllerSettings, RateFeedback, RoundTrip};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    /// The target and how it stands (documentation only).
    #[serde(default)]
    #[allow(dead_code)]
    target: Option<String>,
    server: ServerSpec,
    duration_s: f64,
    #[serde(default)]
    jobs: Option<u64>,
    /// Poisson arrivals of jobs instead of a backlog.
    #[serde(default)]
    arrivals_per_s: Option<f64>,
    latency_ms: [f64; 2],
    /// Where in its round trip a call reaches the bucket, as a fraction of it: 0.5 (default)
    /// halfway; 0 when Connect decides on arrival and its latency comes after the decision, as
    /// in connect-sim (`--latency-ms` sleeps after deciding) and at AWS's front door.
    #[serde(default = "default_decided_at")]
    decided_at: f64,
    replicas: ReplicaSpec,
    #[serde(default)]
    others: Vec<OtherSpec>,
    #[serde(default)]
    stray_throttles_at_s: Vec<f64>,
    #[serde(default)]
    limit_exceeded_fraction: f64,
    #[serde(default)]
    measure_from_s: f64,
    /// Whether each replica gets the estimate of replicas sharing the quota that the pipeline
    /// would compute (default true; `RATE_SHARERS=off|on` overrides it for every file).
    #[serde(default = "default_true")]
    sharers_estimate: bool,
    /// How old SQS's counts are when read, seconds (default `SHARERS_STALENESS_S`, 1 s; moto's
    /// are exact, SQS's lag is unknown).
    #[serde(default)]
    count_staleness_s: Option<f64>,
    #[serde(default = "default_seed")]
    seed: u64,
    /// Run seeds 1..=seeds instead of `seed`.
    #[serde(default)]
    seeds: Option<u64>,
    /// Ranges every seed's measures must fall in.
    #[serde(default)]
    expect: BTreeMap<String, Range>,
    /// Ranges the mean over the seeds must fall in.
    #[serde(default)]
    expect_mean: BTreeMap<String, Range>,
}

fn default_seed() -> u64 {
    7
}

fn default_true() -> bool {
    true
}

fn default_decided_at() -> f64 {
    0.5
}

/// How often a replica polls the jobs queue for the estimate of its sharers, seconds (the
/// pipeline's interval).
const SHARERS_POLL_S: f64 = 5.0;
/// How stale SQS's approximate counts are when read, seconds (a scenario's
/// `count_staleness_s` overrides it).
const SHARERS_STALENESS_S: f64 = 1.0;
/// When a replica that looks (`pipeline::sharers::first_read`: a backlog, no sibling busy)
/// reads the queue after its first receive: the first estimate's 100 ms poll and a 50 ms
/// round trip to SQS.
const LOOK_READ_S: f64 = 0.15;
/// From a replica's start until its first messages are in flight (its first receive), seconds:
/// before that the queue's counts cannot show it.
const FIRST_RECEIVE_S: f64 = 0.05;
/// How far a replica's clock is off the shared one (Amazon Time Sync keeps ECS tasks within a
/// millisecond; this allows for the poll's own round trip too), seconds.
const SHARERS_SKEW_S: f64 = 0.05;
/// Relative noise of the estimate (a ratio of two counts of jobs in flight, the smaller one
/// some tens of jobs): uniform in ±15 %.
const SHARERS_NOISE: f64 = 0.15;

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

/// The measures, in print order.
const MEASURES: &[&str] = &[
    "goodput_fraction",
    "throttled_fraction",
    "throttled_fraction_after_10s",
    "startup_429s_per_replica",
    "other_refused_fraction",
    "reclaim_s",
    "startup_goodput_fraction",
    "min_allowed_rate_fraction",
    "fairness",
    "settle_s",
    "wait_p50_ms",
    "wait_p99_ms",
];

/// Short labels for the per-seed table.
fn label(measure: &str) -> &str {
    match measure {
        "goodput_fraction" => "goodput",
        "throttled_fraction" => "429",
        "throttled_fraction_after_10s" => "429>10s",
        "startup_429s_per_replica" => "429/rep<10s",
        "other_refused_fraction" => "other_ref",
        "reclaim_s" => "reclaim_s",
        "startup_goodput_fraction" => "startup",
        "min_allowed_rate_fraction" => "min_allowed",
        "fairness" => "fair",
        "settle_s" => "settle_s",
        "wait_p50_ms" => "p50_ms",
        "wait_p99_ms" => "p99_ms",
        other => other,
    }
}

/// Deterministic generator (splitmix64).
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
    /// See [`Scenario::decided_at`].
    decided_at: f64,
    /// Jobs waiting for a replica (their arrival times); with `endless`, a job is always there.
    queue: VecDeque<Instant>,
    endless: bool,
    /// Each replica's configured ceiling (what a backlog's holdings are measured by).
    replica_ceiling: f64,
    /// No more jobs will arrive (backlog given at the start, or the arrivals ended).
    arrivals_done: bool,
    in_flight: u64,
    // Records (arrival times at the server, seconds).
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
    /// Per finished job: its wait, seconds (see `wait_p50_ms`).
    waits: Vec<f64>,
    /// Per replica: when it started and when it ran out of work (seconds), for the estimate of
    /// sharers.
    replica_span: Vec<(Option<f64>, Option<f64>)>,
    /// How old the queue's counts are when read, seconds.
    staleness_s: f64,
}

impl World {
    fn secs(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.start).as_secs_f64()
    }

    fn latency(&mut self) -> Duration {
        let [lo, hi] = self.latency_ms;
        Duration::from_secs_f64((lo + (hi - lo) * self.rng.next_f64()) / 1000.0)
    }

    /// A round trip split at the bucket: (to the decision, back).
    fn trip(&mut self) -> (Duration, Duration) {
        let l = self.latency();
        let to = l.mul_f64(self.decided_at);
        (to, l - to)
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

    /// The next job for a replica: `Some(arrival)`, or `None` if there is none now.
    fn take_job(&mut self, now: Instant) -> Option<Instant> {
        if self.endless {
            return Some(now);
        }
        self.queue.pop_front()
    }

    /// Whether a replica without a job can stop: no job will come any more.
    fn finished(&self) -> bool {
        !self.endless && self.arrivals_done && self.queue.is_empty() && self.in_flight == 0
    }
}

impl World {
    /// Whether replica `j` has work at `t` (started and received its first messages, not run
    /// out of work).
    fn is_working(&self, j: usize, t: f64) -> bool {
        let (from, until) = self.replica_span[j];
        from.is_some_and(|f| f + FIRST_RECEIVE_S <= t) && until.is_none_or(|u| u > t)
    }

    /// Replicas other than `me` with work at `t` (started, not run out of work).
    fn others_working(&self, me: usize, t: f64) -> usize {
        (0..self.replica_span.len())
            .filter(|&j| j != me && self.is_working(j, t))
            .count()
    }
}

type Shared = Arc<Mutex<World>>;

/// What the replica reads of the jobs queue at `t`: the estimate of sharers (about 1 + the
/// other replicas with work, with noise, `SHARERS_STALENESS_S` old) and the others' messages in
/// flight (the count model: one per other replica with work; `RATE_SHARERS_MODEL=held`: the
/// ratio the pipeline really computes, each replica holding what it starts in 5 s,
/// `receiver::work_allowance`, and the others' holdings in messages).
fn read_queue(w: &World, me: usize, t: f64, noise: f64, held: bool) -> (f64, f64) {
    let seen = t - w.staleness_s;
    match w.replica_allowed.last().filter(|_| held) {
        Some((_, rates)) => {
            let lookahead = crate::pipeline::receiver::LOOKAHEAD_SECS;
            let hold = |r: f64| (r * lookahead).ceil().max(1.0) + 1.0;
            let others: f64 = (0..rates.len())
                .filter(|&j| j != me && w.is_working(j, seen))
                .map(|j| hold(rates[j]))
                .sum();
            let ours = hold(rates[me]);
            (((others + ours) / ours * noise).max(1.0), others)
        }
        None => {
            let others = w.others_working(me, seen) as f64;
            // Replicas hold what they start in the look-ahead only while there is a backlog to
            // take it from; a trickle's replicas hold the odd job.
            let lookahead = crate::pipeline::receiver::LOOKAHEAD_SECS;
            let backlog = w.endless || w.queue.len() as f64 >= w.replica_ceiling * lookahead / 2.0;
            let holding = if backlog { others } else { 0.0 };
            ((1.0 + others * noise).max(1.0), holding)
        }
    }
}

/// Others' messages in flight that mean a busy sibling (or a joiner's announcement): in the
/// count model one replica with work, in the held model what the quota starts in half the
/// look-ahead (the pipeline's `sharers::busy_threshold`).
fn busy_threshold(held: bool, ceiling: f64) -> f64 {
    if held {
        crate::pipeline::sharers::busy_threshold(ceiling)
    } else {
        1.0
    }
}

/// Whether the join protocol runs (`RATE_JOIN=off` turns it off for a comparison).
fn join_enabled() -> bool {
    std::env::var("RATE_JOIN").as_deref() != Ok("off")
}

/// What the pipeline does before its first receive (`pipeline::sharers::first_read`): reads the
/// jobs queue; if other replicas hold the quota's work, the limiter joins (no call until the
/// estimate of an aligned poll) and the replica takes no job until the next aligned instant has
/// passed (the third value: seconds until then). Synchronous, so it comes before the replica's
/// first call.
fn first_read(world: &Shared, limiter: &AdaptiveLimiter, me: usize, seed: u64) -> (f64, bool, f64) {
    let held = std::env::var("RATE_SHARERS_MODEL").as_deref() == Ok("held");
    let w = lock(world);
    let t = w.secs(Instant::now());
    let mut rng = Rng(seed ^ 0x1E57_u64.rotate_left(33) ^ (me as u64 + 1).rotate_left(12));
    let noise = 1.0 + SHARERS_NOISE * (2.0 * rng.next_f64() - 1.0);
    let (n, others) = read_queue(&w, me, t, noise, held);
    let lookahead = crate::pipeline::receiver::LOOKAHEAD_SECS;
    let backlog = w.endless || w.queue.len() as f64 >= w.replica_ceiling * lookahead / 2.0;
    let mut looking = false;
    let mut quiet_s = 0.0;
    if join_enabled() && others >= busy_threshold(held, limiter.ceiling()) {
        let until = Instant::now() + crate::pipeline::sharers::JOIN_WAIT_MAX;
        limiter.join(until);
        // The pipeline's margin after the instant is twice a read's round trip: 2 ms here.
        // Without a backlog nobody compares counts for a rise, and the pipeline does not wait.
        if backlog {
            quiet_s = ((t / SHARERS_POLL_S).floor() + 1.0) * SHARERS_POLL_S - t + 0.002;
        }
    } else if look_enabled() && backlog {
        limiter.look(Instant::now() + Duration::from_secs(4));
        looking = true;
    }
    limiter.set_sharers(n);
    (others, looking, quiet_s)
}

/// Whether a replica that starts into a backlog with no sibling busy looks before its first
/// call (`RATE_LOOK=off` turns it off for a comparison).
fn look_enabled() -> bool {
    std::env::var("RATE_LOOK").as_deref() != Ok("off")
}

/// What the pipeline does after its first read (`pipeline::sharers::run`): every
/// `SHARERS_POLL_S`, on instants aligned on the shared clock (each replica's own clock off by up
/// to `SHARERS_SKEW_S`), it reads the jobs queue's messages in flight (all replicas',
/// `SHARERS_STALENESS_S` old) over its own, about 1 + the other replicas with work, with noise.
/// A joiner into a backlog takes no job until the aligned instant after its start has passed
/// (the pipeline's quiet wait), then enters at the first aligned read whose count shows it (its
/// first jobs at least `SHARERS_STALENESS_S` before the read, as its siblings see it); a replica
/// whose others' messages rose by a joiner's makes room for it at the same instant. Holdings
/// here are whole replicas (or rates, `RATE_SHARERS_MODEL=held`), so an announcement neither
/// fills over several receives nor shrinks after the entry; the pipeline's rules for those
/// (`pipeline::sharers`) have no counterpart here.
/// Its own generator, so turning the estimate off leaves every other draw of the run as it was.
async fn sharers_poller(
    world: Shared,
    limiter: Arc<AdaptiveLimiter>,
    me: usize,
    seed: u64,
    mut last_others: f64,
    looking: bool,
    quiet_s: f64,
) {
    let mut rng = Rng(seed ^ 0x5A4E_u64.rotate_left(40) ^ (me as u64 + 1).rotate_left(20));
    // `RATE_SHARERS_NOISE` overrides the noise (tuning sessions).
    let noise_width = std::env::var("RATE_SHARERS_NOISE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SHARERS_NOISE);
    let held = std::env::var("RATE_SHARERS_MODEL").as_deref() == Ok("held");
    let skew = SHARERS_SKEW_S * (2.0 * rng.next_f64() - 1.0);
    // A joiner's messages show from the end of its quiet wait, when it takes its first jobs.
    let (started, threshold) = {
        let w = lock(&world);
        (
            w.secs(Instant::now()) + quiet_s,
            busy_threshold(held, limiter.ceiling()),
        )
    };
    let margin = lock(&world).staleness_s;
    if looking {
        // The read after the first receive: others who started with us show if the counts
        // are fresher than the gap; each then enters at its share (never above half), else
        // this replica goes alone at the ceiling.
        tokio::time::sleep(Duration::from_secs_f64(LOOK_READ_S)).await;
        let (n, others) = {
            let w = lock(&world);
            let t = w.secs(Instant::now());
            // Its own generator: with `RATE_LOOK=off` every other draw stays as it was.
            let mut look = Rng(seed ^ 0x100C_u64.rotate_left(27) ^ (me as u64 + 1).rotate_left(9));
            let noise = 1.0 + noise_width * (2.0 * look.next_f64() - 1.0);
            read_queue(&w, me, t, noise, held)
        };
        last_others = if others >= threshold.min(5.0) {
            limiter.enter(n.max(2.0));
            // As in the pipeline: no room made at the first aligned read for those who
            // started with us.
            f64::INFINITY
        } else {
            limiter.alone();
            limiter.set_sharers(n);
            others
        };
    }
    let mut cuts = limiter.cuts();
    // `RATE_ALIGNED=off`: each replica's own 5 s (±10 %) instead (a comparison).
    let aligned = std::env::var("RATE_ALIGNED").as_deref() != Ok("off");
    loop {
        let wait = {
            let w = lock(&world);
            let t = w.secs(Instant::now());
            if aligned {
                let next =
                    ((t - skew) / SHARERS_POLL_S).floor() * SHARERS_POLL_S + SHARERS_POLL_S + skew;
                (next - t).max(0.001)
            } else {
                SHARERS_POLL_S * (0.9 + 0.2 * rng.next_f64())
            }
        };
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        let (n, others, t) = {
            let w = lock(&world);
            let t = w.secs(Instant::now());
            let noise = 1.0 + noise_width * (2.0 * rng.next_f64() - 1.0);
            let (n, others) = read_queue(&w, me, t, noise, held);
            (n, others, t)
        };
        if limiter.is_joining() {
            if t >= started + margin {
                limiter.enter(n);
            } else {
                limiter.set_sharers(n);
            }
        } else if join_enabled() && others >= last_others + threshold && limiter.cuts() == cuts {
            // Room is made once: by a 429 if one cut us since the last read, else here.
            limiter.make_room(n);
        } else {
            limiter.set_sharers(n);
        }
        last_others = others;
        cuts = limiter.cuts();
    }
}

fn lock(world: &Shared) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

async fn replica(
    world: Shared,
    jobs: Arc<Notify>,
    limiter: Arc<AdaptiveLimiter>,
    index: usize,
    end: Instant,
) {
    {
        let mut w = lock(&world);
        let t = w.secs(Instant::now());
        w.replica_span[index].0 = Some(t);
    }
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        let job = {
            let mut w = lock(&world);
            if w.finished() {
                let t = w.secs(now);
                w.replica_span[index].1 = Some(t);
                return;
            }
            w.take_job(now)
        };
        let Some(arrival) = job else {
            // Woken by an arrival or a retried job; the timeout ends the run in time.
            let _ = tokio::time::timeout(Duration::from_millis(50), jobs.notified()).await;
            continue;
        };
        limiter.acquire().await;
        let sent = Instant::now();
        let (half_trip, back_trip) = {
            let mut w = lock(&world);
            w.in_flight += 1;
            w.trip()
        };
        let world = Arc::clone(&world);
        let limiter = Arc::clone(&limiter);
        let jobs = Arc::clone(&jobs);
        tokio::spawn(async move {
            tokio::time::sleep(half_trip).await;
            let answer = lock(&world).worker_call(Instant::now(), index);
            tokio::time::sleep(back_trip).await;
            let feedback = match answer {
                Answer::Accepted => RateFeedback::Accepted,
                Answer::Throttled => RateFeedback::Throttled,
                Answer::LimitExceeded => RateFeedback::Neutral,
            };
            limiter.feedback_trip(feedback, RoundTrip::SentAt(sent));
            let now = Instant::now();
            let mut w = lock(&world);
            w.in_flight -= 1;
            if answer == Answer::Accepted {
                let wait = now.saturating_duration_since(arrival) - (half_trip + back_trip);
                w.waits.push(wait.as_secs_f64());
            } else if !w.endless {
                w.queue.push_front(arrival);
                drop(w);
                jobs.notify_one();
            }
        });
    }
}

/// Poisson arrivals at `rate` until `until`.
async fn arrivals(world: Shared, jobs: Arc<Notify>, rate: f64, until: Instant) {
    loop {
        let gap = {
            let mut w = lock(&world);
            -(1.0 - w.rng.next_f64()).ln() / rate
        };
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        let now = Instant::now();
        if now >= until {
            lock(&world).arrivals_done = true;
            return;
        }
        lock(&world).queue.push_back(now);
        jobs.notify_one();
    }
}

async fn other_caller(world: Shared, rate: f64, from: Instant, until: Instant) {
    let period = Duration::from_secs_f64(1.0 / rate);
    // A phase of its own per seed: steady calls that start on the same instant every seed would
    // meet our pacer in the same phase every seed, and the seeds would not average over it.
    let mut next = from + period.mul_f64(lock(&world).rng.next_f64());
    while next < until {
        tokio::time::sleep_until(next).await;
        let half_trip = lock(&world).trip().0;
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

/// One seed's measures by name (see the module documentation).
type Measured = BTreeMap<&'static str, f64>;

async fn run(s: &Scenario, seed: u64) -> Measured {
    super::limiter::reseed_jitter(seed);
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
        rng: Rng(seed),
        latency_ms: s.latency_ms,
        decided_at: s.decided_at.clamp(0.0, 1.0),
        queue: match (s.arrivals_per_s, s.jobs) {
            (None, Some(n)) => (0..n).map(|_| start).collect(),
            _ => VecDeque::new(),
        },
        endless: s.arrivals_per_s.is_none() && s.jobs.is_none(),
        replica_ceiling: s.replicas.ceiling,
        arrivals_done: s.arrivals_per_s.is_none(),
        in_flight: 0,
        worker_accepted: vec![Vec::new(); s.replicas.count],
        worker_throttled: Vec::new(),
        replica_throttled: vec![Vec::new(); s.replicas.count],
        worker_neutral: Vec::new(),
        other_sent: Vec::new(),
        other_refused: Vec::new(),
        min_allowed_fraction: Vec::new(),
        replica_allowed: Vec::new(),
        waits: Vec::new(),
        replica_span: vec![(None, None); s.replicas.count],
        staleness_s: s.count_staleness_s.unwrap_or(SHARERS_STALENESS_S),
    }));
    let sharers_estimate = match std::env::var("RATE_SHARERS").as_deref() {
        Ok("off") => false,
        Ok("on") => true,
        _ => s.sharers_estimate,
    };
    let end = start + Duration::from_secs_f64(s.duration_s);
    let jobs = Arc::new(Notify::new());
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
    if let Some(rate) = s.arrivals_per_s {
        tasks.push(tokio::spawn(arrivals(
            Arc::clone(&world),
            Arc::clone(&jobs),
            rate,
            end,
        )));
    }
    let (ceiling, burst) = (s.replicas.ceiling, s.replicas.burst);
    let mut replica_tasks = Vec::new();
    for i in 0..s.replicas.count {
        let stagger = Duration::from_secs_f64(s.replicas.start_stagger_s * i as f64);
        let limiter = Arc::new(AdaptiveLimiter::with_settings(settings(), ceiling, burst));
        limiters.push(Arc::clone(&limiter));
        let (w, j) = (Arc::clone(&world), Arc::clone(&jobs));
        let poller = sharers_estimate.then(|| (Arc::clone(&world), Arc::clone(&limiter)));
        replica_tasks.push(tokio::spawn(async move {
            tokio::time::sleep(stagger).await;
            let mut quiet_s = 0.0;
            let poller = poller.map(|(w, l)| {
                let (others, looking, quiet) = first_read(&w, &l, i, seed);
                quiet_s = quiet;
                tokio::spawn(sharers_poller(w, l, i, seed, others, looking, quiet))
            });
            tokio::time::sleep(Duration::from_secs_f64(quiet_s)).await;
            replica(w, j, limiter, i, end).await;
            if let Some(p) = poller {
                p.abort();
            }
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
    // With a finite backlog the run ends when the bucket took our last job: the last accepted
    // call's arrival at the server (its answer still travels back, which no quota bounds).
    let last_accepted = w
        .worker_accepted
        .iter()
        .flat_map(|r| r.iter().copied())
        .fold(None, |acc: Option<f64>, t| {
            Some(acc.map_or(t, |a| a.max(t)))
        });
    let end_s = match (s.jobs, s.arrivals_per_s, last_accepted) {
        (Some(_), None, Some(t)) => t,
        _ => s.duration_s,
    };
    measure(s, &w, end_s)
}

/// Controller settings: the defaults, or for tuning sessions `RATE_SETTINGS` =
/// "field=value,..." (see [`ControllerSettings::set`]).
fn settings() -> ControllerSettings {
    let mut s = ControllerSettings::default();
    if let Ok(v) = std::env::var("RATE_SETTINGS") {
        for pair in v.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value: f64 = value
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("RATE_SETTINGS {pair:?}: {e}"));
            assert!(
                s.set(name.trim(), value),
                "RATE_SETTINGS: no field {name:?}"
            );
        }
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

/// Rate the other callers take at `t`.
fn others_at(s: &Scenario, t: f64) -> f64 {
    s.others
        .iter()
        .filter(|o| t >= o.from_s && t < o.until_s.unwrap_or(s.duration_s))
        .map(|o| o.rate)
        .sum()
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

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn measure(s: &Scenario, w: &World, end_s: f64) -> Measured {
    // The quota cannot be used before our first call reaches the bucket.
    let first_arrival = w
        .worker_accepted
        .iter()
        .flat_map(|r| r.iter().copied())
        .chain(w.worker_throttled.iter().copied())
        .fold(f64::INFINITY, f64::min);
    let from = if s.measure_from_s > 0.0 {
        s.measure_from_s
    } else if first_arrival.is_finite() {
        first_arrival.min(end_s)
    } else {
        0.0
    };
    let accepted_in =
        |a: f64, b: f64| -> usize { w.worker_accepted.iter().map(|r| count_in(r, a, b)).sum() };
    let ratio = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let calls_in = |a: f64, b: f64| {
        accepted_in(a, b) + count_in(&w.worker_throttled, a, b) + count_in(&w.worker_neutral, a, b)
    };
    let accepted = accepted_in(from, end_s);
    let throttled = count_in(&w.worker_throttled, from, end_s);
    let calls = calls_in(from, end_s);
    let bound = available(s, from, end_s)
        + if s.measure_from_s <= 0.0 {
            s.server.burst
        } else {
            0.0
        };
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
    let startup = 10.0 + s.replicas.start_stagger_s * (s.replicas.count.max(1) - 1) as f64;
    let mut m = Measured::new();
    m.insert("goodput_fraction", accepted as f64 / bound);
    m.insert("throttled_fraction", ratio(throttled, calls));
    m.insert(
        "throttled_fraction_after_10s",
        ratio(
            count_in(&w.worker_throttled, startup, end_s),
            calls_in(startup, end_s),
        ),
    );
    m.insert(
        "startup_429s_per_replica",
        count_in(&w.worker_throttled, 0.0, startup) as f64 / s.replicas.count.max(1) as f64,
    );
    m.insert(
        "other_refused_fraction",
        ratio(
            count_in(&w.other_refused, from, end_s),
            count_in(&w.other_sent, from, end_s),
        ),
    );
    let departure = s
        .others
        .iter()
        .filter_map(|o| o.until_s)
        .filter(|u| *u < end_s)
        .fold(None, |acc: Option<f64>, u| {
            Some(acc.map_or(u, |a| a.max(u)))
        });
    if let Some(left) = departure {
        let mut t = left;
        let mut reclaim = end_s - left;
        while t + 1.0 <= end_s {
            let quota = s.server.rate - others_at(s, t);
            if accepted_in(t, t + 1.0) as f64 >= 0.9 * quota {
                reclaim = t + 1.0 - left;
                break;
            }
            t += 0.1;
        }
        m.insert("reclaim_s", reclaim);
    }
    m.insert(
        "startup_goodput_fraction",
        accepted_in(0.0, startup_end) as f64 / available(s, 0.0, startup_end),
    );
    m.insert(
        "min_allowed_rate_fraction",
        w.min_allowed_fraction
            .iter()
            .filter(|(t, _)| *t >= from && *t < end_s)
            .map(|(_, m)| *m)
            .fold(f64::INFINITY, f64::min),
    );
    m.insert("fairness", fairness);
    m.insert("settle_s", settle_s);
    m.insert("wait_p50_ms", percentile(&w.waits, 0.5) * 1000.0);
    m.insert("wait_p99_ms", percentile(&w.waits, 0.99) * 1000.0);
    m
}

fn check(what: &str, m: &Measured, expect: &BTreeMap<String, Range>) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, [lo, hi]) in expect {
        match m.get(name.as_str()) {
            Some(v) if *v >= *lo && *v <= *hi => {}
            Some(v) => failures.push(format!("{what}: {name} = {v:.4} not in [{lo}, {hi}]")),
            None => failures.push(format!("{what}: {name} was not measured")),
        }
    }
    failures
}

fn row(m: &Measured) -> String {
    MEASURES
        .iter()
        .filter_map(|k| m.get(k).map(|v| format!("{} {v:.4}", label(k))))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn run_file(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rate-scenarios")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let scenario: Scenario =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    for key in scenario.expect.keys().chain(scenario.expect_mean.keys()) {
        assert!(
            MEASURES.contains(&key.as_str()),
            "{path:?}: unknown measure {key:?}"
        );
    }
    // `RATE_SEEDS=N` overrides the file's seeds, `RATE_SEED=N` runs seed N alone (tuning
    // sessions).
    let one: Option<u64> = std::env::var("RATE_SEED").ok().and_then(|v| v.parse().ok());
    let seeds: Vec<u64> = match std::env::var("RATE_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        _ if one.is_some() => one.into_iter().collect(),
        Some(n) => (1..=n).collect(),
        None => match scenario.seeds {
            Some(n) => (1..=n.max(1)).collect(),
            None => vec![scenario.seed],
        },
    };
    println!("scenario {name}: {}", scenario.description);
    let mut failures = Vec::new();
    let mut sums = BTreeMap::<&'static str, f64>::new();
    for seed in &seeds {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let m = rt.block_on(run(&scenario, *seed));
        println!("  seed {seed:>2}: {}", row(&m));
        failures.extend(check(&format!("{name} seed {seed}"), &m, &scenario.expect));
        for (k, v) in &m {
            *sums.entry(k).or_default() += v;
        }
    }
    let mean: Measured = sums
        .into_iter()
        .map(|(k, v)| (k, v / seeds.len() as f64))
        .collect();
    println!("  mean   : {}", row(&mean));
    failures.extend(check(&format!("{name} mean"), &mean, &scenario.expect_mean));
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
    fleet_3_without_sharers,
    fleet_3_neighbour,
    fleet_6,
    fleet_6_staggered,
    fleet_6_bench_like,
    fleet_3_bench_like,
    fleet_3_skewed_start,
    fleet_3_fresh_counts,
    fractional_ceiling,
    fractional_fleet,
    limit_exceeded_is_neutral,
    connect_default_quota,
    lone_default_quota,
    neighbour_4_of_10,
    neighbour_brief_8_of_10,
    neighbour_twice,
    fleet_3_staggered,
    high_latency,
    high_latency_decided_first,
    high_latency_fleet_3,
    trickle,
    trickle_default_quota,
    trickle_fleet_3,
);
