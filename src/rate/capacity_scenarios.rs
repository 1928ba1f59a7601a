//! Scenario tests of the per-instance capacity machine ([`InstanceCapacity`]): each file in
//! `tests/data/capacity-scenarios/` describes Connect instances (a maximum of active chats, the
//! lifetimes of our chats, other callers' chats), our backlog of start jobs, call latency and the
//! rate ceiling of our calls, plus the ranges the measured numbers must fall in, per seed and on
//! the mean over the seeds.
//!
//! # The simulation
//!
//! A pure event loop over explicit time (integer nanoseconds; the machine gets
//! `base + t`), deterministic per seed:
//! - An instance holds at most `max_chats` active chats, ours and other callers'. A start that
//!   reaches it with a free slot becomes a chat with a lifetime drawn from `lifetime` (the n-th
//!   chat of ours gets the n-th draw of its seeded stream); otherwise it is refused
//!   (`LimitExceeded`). Chat ends are never shown to the worker.
//! - Other callers start chats as a Poisson process (`rate` per second during
//!   `[from_s, until_s)`, plus `initial` chats at time 0), each with its own lifetime; a refused
//!   one is dropped. Their arrival times and lifetimes are drawn before the run, so both
//!   starters below see the same ones.
//! - Our worker: a backlog of jobs per instance (`jobs`, or endless, or `arrivals`), one
//!   [`InstanceCapacity`] per instance, and one rate ceiling (a token bucket, `ceiling`) shared
//!   by all our calls; with `replicas`, that many workers share the backlogs and split the
//!   ceiling evenly, each with its own machines.
//!   Whenever something may have changed (an answer, a token, a `NotBefore` instant) it offers
//!   a start to each instance in turn that has a job: a start goes when the ceiling has a token
//!   and the instance's machine says `Go`. A call reaches the instance after half its round
//!   trip (`latency_ms`, uniform) and is answered after the other half; a fraction
//!   `inconclusive_fraction` fails before reaching it (`Inconclusive`). A refused or failed job
//!   stays in the backlog.
//! - The clairvoyant bound: an ideal starter on the same seeds that sees every chat end and
//!   starts a job on an instance at the very moment it has a free slot and the shared ceiling
//!   has a token (no latency, no refusal).
//!
//! # Measures, per instance, over `[0, end]`
//! `end` is `duration_s`, or for finite backlogs the last job's start (each starter its own).
//! - `goodput`: our chats started / the ideal starter's over `duration_s` (endless backlog),
//!   or the ideal's drain time / ours (finite backlog). With other callers on the instance: our
//!   `utilization` / the ideal's (a starter that fills the instance sooner also refuses more of
//!   the other callers' chats, so counts of starts would reward taking their share).
//! - `utilization`: our chat-seconds / the capacity others left free (∫ (max − others) dt).
//! - `limit_exceeded`: refused calls / our calls.
//! - `drain_ratio`: (finite backlog) our drain time / the time its jobs need at the ceiling alone.
//! - `excess_wait_s`: (with `arrivals`) how much longer our jobs wait for their chat on average
//!   than the ideal starter's (from arrival to the answer of the start that succeeded).
//!
//! `CAPACITY_EVENTS_DELAY_MS=lo,hi` the contact events' delay,
//! `CAPACITY_SEEDS=a-b` overrides the seeds, `CAPACITY_TRACE=seed` prints a timeline of that
//! seed (one row per `CAPACITY_TRACE_STEP` seconds, default a 60th of the run),
//! `CAPACITY_SETTINGS=share,varied_share,step,escalation` overrides the machine's settings
//! (tuning).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::capacity::{CapacityAdmit, CapacityOutcome, CapacitySettings, InstanceCapacity};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    /// The target and whether it is met (documentation only).
    #[serde(default)]
    #[allow(dead_code)]
    target: Option<String>,
    /// Why the ranges are what they are; per-seed numbers (documentation only).
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
    duration_s: f64,
    /// Inclusive seed range.
    #[serde(default = "default_seeds")]
    seeds: [u64; 2],
    latency_ms: [f64; 2],
    ceiling: CeilingSpec,
    #[serde(default)]
    inconclusive_fraction: f64,
    /// Replicas of our worker, sharing the backlogs and the ceiling evenly, each with its own
    /// machines (the others' chats are other callers' to each).
    #[serde(default = "one_replica")]
    replicas: usize,
    /// Also measure over `[warmup_s, end]`: the steady state, without the search for the
    /// first free slot.
    #[serde(default)]
    warmup_s: Option<f64>,
    /// Connect's contact events: each chat end (ours and others') is reported to one replica
    /// (the events queue's competing consumers) this long after it (uniform, ms).
    #[serde(default)]
    contact_events: Option<EventsSpec>,
    instances: Vec<InstanceSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsSpec {
    delay_ms: [f64; 2],
    /// Share of events never delivered (EventBridge is best effort).
    #[serde(default)]
    lost: f64,
}

fn one_replica() -> usize {
    1
}

fn default_seeds() -> [u64; 2] {
    [1, 8]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CeilingSpec {
    rate: f64,
    burst: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceSpec {
    name: String,
    max_chats: u32,
    lifetime: Lifetime,
    /// Start jobs for this instance; none = an endless backlog.
    #[serde(default)]
    jobs: Option<u64>,
    /// Further jobs arriving while the run goes (then `jobs`, default 0, are there at the start).
    #[serde(default)]
    arrivals: Option<JobArrivals>,
    #[serde(default)]
    others: Vec<OtherSpec>,
    #[serde(default)]
    expect: Expect,
}

/// Jobs arriving in batches of `batch`, the batches a Poisson process of `rate / batch` per
/// second (`regular`: every `batch / rate` seconds instead).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobArrivals {
    rate: f64,
    #[serde(default = "one")]
    batch: u64,
    #[serde(default)]
    regular: bool,
}

fn one() -> u64 {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Lifetime {
    Fixed(f64),
    Uniform([f64; 2]),
    /// `mean` of the lifetime (not of its log) and `sigma` of its log; drawn again until within
    /// `[min, max]` when given.
    Lognormal {
        mean: f64,
        sigma: f64,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtherSpec {
    /// Poisson arrivals per second.
    rate: f64,
    lifetime: Lifetime,
    #[serde(default)]
    from_s: f64,
    #[serde(default)]
    until_s: Option<f64>,
    /// Chats of this caller already active at time 0.
    #[serde(default)]
    initial: u32,
}

type Range = [f64; 2];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bounds {
    /// Every seed's value in this range.
    #[serde(default)]
    seed: Option<Range>,
    /// The mean over the seeds in this range.
    #[serde(default)]
    mean: Option<Range>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    goodput: Option<Bounds>,
    #[serde(default)]
    utilization: Option<Bounds>,
    #[serde(default)]
    limit_exceeded: Option<Bounds>,
    #[serde(default)]
    drain_ratio: Option<Bounds>,
    #[serde(default)]
    calls: Option<Bounds>,
    #[serde(default)]
    excess_wait_s: Option<Bounds>,
    #[serde(default)]
    goodput_after_warmup: Option<Bounds>,
    #[serde(default)]
    limit_exceeded_after_warmup: Option<Bounds>,
}

/// splitmix64.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03)));
        r.next_f64();
        r
    }

    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.next_f64()).ln() / rate
    }

    fn lifetime(&mut self, l: &Lifetime) -> f64 {
        match *l {
            Lifetime::Fixed(s) => s,
            Lifetime::Uniform([a, b]) => a + (b - a) * self.next_f64(),
            Lifetime::Lognormal {
                mean,
                sigma,
                min,
                max,
            } => {
                let mu = mean.ln() - sigma * sigma / 2.0;
                let (lo, hi) = (min.unwrap_or(0.0), max.unwrap_or(f64::INFINITY));
                for _ in 0..1000 {
                    let x = (mu + sigma * self.normal()).exp();
                    if x >= lo && x <= hi {
                        return x;
                    }
                }
                mean.clamp(lo, hi)
            }
        }
    }
}

const NS: f64 = 1e9;

fn ns(secs: f64) -> u64 {
    (secs.max(0.0) * NS).round() as u64
}

/// Stream ids of the seeded generators.
const OUR_LIFETIMES: u64 = 1;
const LATENCY: u64 = 2;
const INCONCLUSIVE: u64 = 3;
const OTHERS: u64 = 100;
const JOBS: u64 = 200;
const EVENTS: u64 = 300;

/// Arrival times (ns) of job batches on each instance.
fn job_arrivals(s: &Scenario, seed: u64) -> Vec<Vec<u64>> {
    s.instances
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let Some(a) = &spec.arrivals else {
                return Vec::new();
            };
            let mut rng = Rng::new(seed, JOBS + i as u64);
            let every = a.batch.max(1) as f64 / a.rate.max(1e-9);
            let mut out = Vec::new();
            let mut t = if a.regular {
                every
            } else {
                rng.exponential(1.0 / every)
            };
            while t < s.duration_s {
                out.push(ns(t));
                t += if a.regular {
                    every
                } else {
                    rng.exponential(1.0 / every)
                };
            }
            out
        })
        .collect()
}

/// Queues the first batch of jobs of each instance.
fn seed_jobs(q: &mut Queue, jobs: &[Vec<u64>]) {
    for (i, j) in jobs.iter().enumerate() {
        if let Some(&t) = j.first() {
            q.push(t, Event::Jobs { i, n: 0 });
        }
    }
}

/// A batch of jobs arrived: add it, queue the next.
fn jobs_arrive(
    s: &Scenario,
    insts: &mut [Inst],
    jobs: &[Vec<u64>],
    q: &mut Queue,
    i: usize,
    n: usize,
) {
    let batch = s.instances[i].arrivals.as_ref().map_or(0, |a| a.batch);
    if let Some(p) = insts[i].pending.as_mut() {
        *p += batch;
    }
    let at = jobs[i][n];
    insts[i]
        .waiting
        .extend(std::iter::repeat_n(at, batch as usize));
    if let Some(&t) = jobs[i].get(n + 1) {
        q.push(t, Event::Jobs { i, n: n + 1 });
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Replica `r` tries to start jobs.
    Wake { r: usize },
    /// A call of replica `r` reaches instance `i`; its answer takes `back` ns more; its job
    /// arrived at `since`.
    Arrive {
        r: usize,
        i: usize,
        back: u64,
        since: u64,
    },
    /// The answer of a call of replica `r` comes back.
    Answer {
        r: usize,
        i: usize,
        outcome: u8,
        since: u64,
    },
    /// A chat ends.
    End { i: usize, ours: bool },
    /// The contact event of a chat on instance `i` that ended at `ended` reaches replica `r`.
    Freed { r: usize, i: usize, ended: u64 },
    /// Another caller's start reaches instance `i` (index into its arrivals).
    Other { i: usize, n: usize },
    /// The n-th batch of jobs for instance `i` arrives.
    Jobs { i: usize, n: usize },
}

struct Queue {
    heap: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, e)));
    }
}

/// The ceiling of our calls, shared by every instance.
struct Ceiling {
    level: f64,
    at: u64,
    rate: f64,
    burst: f64,
}

impl Ceiling {
    fn level(&mut self, now: u64) -> f64 {
        let dt = now.saturating_sub(self.at) as f64 / NS;
        self.level = (self.level + dt * self.rate).min(self.burst.max(1.0));
        self.at = now;
        self.level
    }

    /// When the next token is there.
    fn next_token(&mut self, now: u64) -> u64 {
        let l = self.level(now);
        now + ns((1.0 - l).max(0.0) / self.rate) + 1
    }
}

/// One instance's live state in a run.
struct Inst {
    max: u32,
    ours: u32,
    others: u32,
    pending: Option<u64>,
    started: u64,
    calls: u64,
    refused: u64,
    done_at: Option<u64>,
    lifetimes: Rng,
    /// ∫ ours dt and ∫ others dt (chat-ns), up to `area_at`.
    ours_area: f64,
    others_area: f64,
    area_at: u64,
    /// (started, calls, refused) at the warm-up's end.
    at_warmup: Option<(u64, u64, u64)>,
    /// Arrival times of the pending jobs (with `arrivals`), oldest first, and the waits of
    /// the jobs whose chat started.
    waiting: VecDeque<u64>,
    wait_sum: f64,
    wait_n: u64,
}

impl Inst {
    fn advance(&mut self, now: u64, end: u64) {
        let to = now.min(end);
        if to > self.area_at {
            let dt = (to - self.area_at) as f64;
            self.ours_area += dt * f64::from(self.ours);
            self.others_area += dt * f64::from(self.others);
            self.area_at = to;
        }
    }

    fn snapshot(&mut self, now: u64, warmup: Option<u64>) {
        if warmup.is_some_and(|w| now >= w) && self.at_warmup.is_none() {
            self.at_warmup = Some((self.started, self.calls, self.refused));
        }
    }

    fn free(&self) -> bool {
        self.ours + self.others < self.max
    }
}

/// Arrival times (ns) and lifetimes of the other callers' chats on one instance, sorted.
fn other_arrivals(spec: &InstanceSpec, seed: u64, i: usize, duration: f64) -> Vec<(u64, f64)> {
    let mut all = Vec::new();
    for (j, o) in spec.others.iter().enumerate() {
        let mut rng = Rng::new(seed, OTHERS + 10 * i as u64 + j as u64);
        for _ in 0..o.initial {
            all.push((0, rng.lifetime(&o.lifetime)));
        }
        let until = o.until_s.unwrap_or(duration).min(duration);
        if o.rate > 0.0 {
            let mut t = o.from_s + rng.exponential(o.rate);
            while t < until {
                all.push((ns(t), rng.lifetime(&o.lifetime)));
                t += rng.exponential(o.rate);
            }
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    all
}

fn new_insts(s: &Scenario, seed: u64) -> Vec<Inst> {
    s.instances
        .iter()
        .enumerate()
        .map(|(i, spec)| Inst {
            max: spec.max_chats,
            ours: 0,
            others: 0,
            pending: if spec.arrivals.is_some() {
                Some(spec.jobs.unwrap_or(0))
            } else {
                spec.jobs
            },
            started: 0,
            calls: 0,
            refused: 0,
            done_at: spec
                .jobs
                .filter(|&j| j == 0 && spec.arrivals.is_none())
                .map(|_| 0),
            lifetimes: Rng::new(seed, OUR_LIFETIMES + 1000 * i as u64),
            ours_area: 0.0,
            others_area: 0.0,
            area_at: 0,
            at_warmup: None,
            waiting: if spec.arrivals.is_some() {
                vec![0; spec.jobs.unwrap_or(0) as usize].into()
            } else {
                VecDeque::new()
            },
            wait_sum: 0.0,
            wait_n: 0,
        })
        .collect()
}

fn has_job(inst: &Inst) -> bool {
    inst.pending.is_none_or(|p| p > 0)
}

/// Takes the oldest job; returns when it arrived.
fn take_job(inst: &mut Inst) -> u64 {
    if let Some(p) = inst.pending.as_mut() {
        *p -= 1;
    }
    inst.waiting.pop_front().unwrap_or(0)
}

/// A job that arrived at `since` got its chat at `now`.
fn job_done(inst: &mut Inst, since: u64, now: u64) {
    inst.wait_sum += now.saturating_sub(since) as f64 / NS;
    inst.wait_n += 1;
}

fn start_chat(inst: &mut Inst, spec: &InstanceSpec, now: u64, q: &mut Queue, i: usize) {
    inst.ours += 1;
    inst.started += 1;
    let l = inst.lifetimes.lifetime(&spec.lifetime);
    q.push(now + ns(l), Event::End { i, ours: true });
    if spec.jobs.is_some()
        && spec.arrivals.is_none()
        && inst.pending == Some(0)
        && inst.done_at.is_none()
    {
        inst.done_at = Some(now);
    }
}

fn other_arrives(inst: &mut Inst, lifetime: f64, now: u64, q: &mut Queue, i: usize) {
    if inst.free() {
        inst.others += 1;
        q.push(now + ns(lifetime), Event::End { i, ours: false });
    }
}

/// Other callers' chats active at time 0 take their slots before anything else happens; the
/// first later arrival of each instance is queued.
fn seed_others(q: &mut Queue, insts: &mut [Inst], arrivals: &[Vec<(u64, f64)>]) {
    for (i, a) in arrivals.iter().enumerate() {
        let mut n = 0;
        while let Some(&(0, lifetime)) = a.get(n) {
            other_arrives(&mut insts[i], lifetime, 0, q, i);
            n += 1;
        }
        if let Some(&(t, _)) = a.get(n) {
            q.push(t, Event::Other { i, n });
        }
    }
}

/// Per-instance results of one run.
#[derive(Clone, Debug, Default)]
struct InstResult {
    started: u64,
    calls: u64,
    refused: u64,
    /// Drain time (s) for a finite backlog.
    drain_s: Option<f64>,
    utilization: f64,
    /// (started, calls, refused) after the warm-up.
    after: Option<(u64, u64, u64)>,
    /// Mean wait of a job for its chat (s), with `arrivals`.
    wait_s: Option<f64>,
}

fn results(s: &Scenario, insts: &mut [Inst], end: u64) -> Vec<InstResult> {
    insts
        .iter_mut()
        .zip(&s.instances)
        .map(|(inst, spec)| {
            inst.advance(end, end);
            let after = inst
                .at_warmup
                .map(|(a, b, c)| (inst.started - a, inst.calls - b, inst.refused - c));
            let free = f64::from(spec.max_chats) * end as f64 - inst.others_area;
            InstResult {
                started: inst.started,
                calls: inst.calls,
                refused: inst.refused,
                drain_s: inst.done_at.map(|t| t as f64 / NS),
                utilization: if free > 0.0 {
                    inst.ours_area / free
                } else {
                    0.0
                },
                after,
                wait_s: (spec.arrivals.is_some() && inst.wait_n > 0)
                    .then(|| inst.wait_sum / inst.wait_n as f64),
            }
        })
        .collect()
}

/// The ideal starter: sees every chat end, starts the moment a slot and a token are free.
fn run_ideal(
    s: &Scenario,
    seed: u64,
    arrivals: &[Vec<(u64, f64)>],
    jobs: &[Vec<u64>],
) -> Vec<InstResult> {
    let end = ns(s.duration_s);
    let warmup = s.warmup_s.map(ns);
    let mut insts = new_insts(s, seed);
    let mut q = Queue {
        heap: BinaryHeap::new(),
        seq: 0,
    };
    let mut ceiling = Ceiling {
        level: s.ceiling.burst,
        at: 0,
        rate: s.ceiling.rate,
        burst: s.ceiling.burst,
    };
    seed_others(&mut q, &mut insts, arrivals);
    seed_jobs(&mut q, jobs);
    q.push(0, Event::Wake { r: 0 });
    let mut rr = 0usize;
    let mut token_wake = false;
    while let Some(Reverse((now, _, e))) = q.heap.pop() {
        if now > end {
            break;
        }
        for inst in insts.iter_mut() {
            inst.advance(now, end);
            inst.snapshot(now, warmup);
        }
        match e {
            Event::End { i, ours } => {
                if ours {
                    insts[i].ours -= 1;
                } else {
                    insts[i].others -= 1;
                }
            }
            Event::Other { i, n } => {
                other_arrives(&mut insts[i], arrivals[i][n].1, now, &mut q, i);
                if let Some(next) = arrivals[i].get(n + 1) {
                    q.push(next.0, Event::Other { i, n: n + 1 });
                }
            }
            Event::Wake { .. } => token_wake = false,
            Event::Jobs { i, n } => jobs_arrive(s, &mut insts, jobs, &mut q, i, n),
            Event::Arrive { .. } | Event::Answer { .. } | Event::Freed { .. } => {}
        }
        // Start wherever a slot is free, one instance after the other, while tokens last.
        loop {
            let n = insts.len();
            let Some(k) = (0..n)
                .map(|d| (rr + d) % n)
                .find(|&k| has_job(&insts[k]) && insts[k].free())
            else {
                break;
            };
            if ceiling.level(now) < 1.0 {
                if !token_wake {
                    token_wake = true;
                    q.push(ceiling.next_token(now), Event::Wake { r: 0 });
                }
                break;
            }
            ceiling.level -= 1.0;
            let since = take_job(&mut insts[k]);
            job_done(&mut insts[k], since, now);
            insts[k].calls += 1;
            start_chat(&mut insts[k], &s.instances[k], now, &mut q, k);
            rr = (k + 1) % n;
        }
    }
    results(s, &mut insts, end)
}

fn settings() -> CapacitySettings {
    let mut s = CapacitySettings::default();
    if let Ok(v) = std::env::var("CAPACITY_SETTINGS") {
        let f: Vec<f64> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        if let [share, varied, step, escalation] = f[..] {
            s.limit_exceeded_share = share;
            s.varied_limit_exceeded_share = varied;
            s.step = step;
            s.escalation = escalation;
        }
    }
    s
}

/// `CAPACITY_EVENTS_DELAY_MS=lo,hi` overrides the scenarios' event delay (a sweep).
fn events_delay() -> Option<[f64; 2]> {
    let v = std::env::var("CAPACITY_EVENTS_DELAY_MS").ok()?;
    let f: Vec<f64> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    match f[..] {
        [lo, hi] => Some([lo, hi]),
        _ => None,
    }
}

const STARTED: u8 = 0;
const REFUSED: u8 = 1;
const INCONCLUSIVE_ANSWER: u8 = 2;

/// One replica of our worker: a capacity machine per instance, its own rate ceiling.
struct Replica {
    machines: Vec<InstanceCapacity>,
    ceiling: Ceiling,
    /// Per instance: do not offer a start before this (the machine's `NotBefore`).
    wake_at: Vec<Option<u64>>,
    token_wake: Option<u64>,
    rr: usize,
}

/// Our worker: `replicas` replicas sharing the backlogs, each with its machines.
fn run_ours(
    s: &Scenario,
    seed: u64,
    arrivals: &[Vec<(u64, f64)>],
    jobs: &[Vec<u64>],
    trace: bool,
) -> Vec<InstResult> {
    let end = ns(s.duration_s);
    let warmup = s.warmup_s.map(ns);
    let base = Instant::now();
    let at = |t: u64| base + Duration::from_nanos(t);
    let mut insts = new_insts(s, seed);
    let count = s.replicas.max(1);
    // The replicas share the account's rate quota evenly (the rate controller's job).
    let mut reps: Vec<Replica> = (0..count)
        .map(|_| Replica {
            machines: s
                .instances
                .iter()
                .map(|_| {
                    let mut settings = settings();
                    settings.contact_events = s.contact_events.is_some();
                    InstanceCapacity::new(settings, base)
                })
                .collect(),
            ceiling: Ceiling {
                level: (s.ceiling.burst / count as f64).max(1.0),
                at: 0,
                rate: s.ceiling.rate / count as f64,
                burst: (s.ceiling.burst / count as f64).max(1.0),
            },
            wake_at: vec![None; s.instances.len()],
            token_wake: None,
            rr: 0,
        })
        .collect();
    let mut q = Queue {
        heap: BinaryHeap::new(),
        seq: 0,
    };
    let mut latency = Rng::new(seed, LATENCY);
    let mut fails = Rng::new(seed, INCONCLUSIVE);
    let mut events = Rng::new(seed, EVENTS);
    seed_others(&mut q, &mut insts, arrivals);
    seed_jobs(&mut q, jobs);
    for r in 0..count {
        q.push(0, Event::Wake { r });
    }
    let trace_step = std::env::var("CAPACITY_TRACE_STEP")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|step| step.is_finite() && *step > 0.0)
        .map_or(ns(s.duration_s / 60.0), ns)
        .max(1);
    let mut next_trace = 0u64;
    let mut window: Vec<(u64, u64)> = vec![(0, 0); insts.len()];
    while let Some(Reverse((now, _, e))) = q.heap.pop() {
        if now > end {
            break;
        }
        for inst in insts.iter_mut() {
            inst.advance(now, end);
            inst.snapshot(now, warmup);
        }
        while trace && now >= next_trace {
            let row: Vec<String> = insts
                .iter()
                .enumerate()
                .zip(window.iter_mut())
                .map(|((i, inst), w)| {
                    let rates: Vec<String> = reps
                        .iter()
                        .map(|rep| {
                            rep.machines[i]
                                .start_rate(at(now))
                                .map_or("open".to_string(), |r| format!("{r:.3}"))
                        })
                        .collect();
                    let row = format!(
                        "ours={:>3} others={:>3} started={:>4} refused={:>3} rate={}",
                        inst.ours,
                        inst.others,
                        inst.started - w.0,
                        inst.refused - w.1,
                        rates.join("/"),
                    );
                    *w = (inst.started, inst.refused);
                    row
                })
                .collect();
            println!("t={:>8.1} {}", next_trace as f64 / NS, row.join(" | "));
            next_trace += trace_step;
        }
        // Which replicas may start something now.
        let woken: Vec<usize> = match e {
            Event::End { i, ours } => {
                if ours {
                    insts[i].ours -= 1;
                } else {
                    insts[i].others -= 1;
                }
                if let Some(ev) = &s.contact_events {
                    let [lo, hi] = events_delay().unwrap_or(ev.delay_ms);
                    let delay = ns((lo + (hi - lo) * events.next_f64()) / 1000.0);
                    let r = ((events.next_f64() * count as f64) as usize).min(count - 1);
                    if ev.lost <= 0.0 || events.next_f64() >= ev.lost {
                        q.push(now + delay, Event::Freed { r, i, ended: now });
                    }
                }
                continue;
            }
            Event::Freed { r, i, ended } => {
                reps[r].machines[i].freed(at(ended), at(now));
                reps[r].wake_at[i] = None;
                vec![r]
            }
            Event::Other { i, n } => {
                other_arrives(&mut insts[i], arrivals[i][n].1, now, &mut q, i);
                if let Some(next) = arrivals[i].get(n + 1) {
                    q.push(next.0, Event::Other { i, n: n + 1 });
                }
                continue;
            }
            Event::Jobs { i, n } => {
                jobs_arrive(s, &mut insts, jobs, &mut q, i, n);
                (0..count).collect()
            }
            Event::Arrive { r, i, back, since } => {
                let outcome = if insts[i].free() {
                    start_chat(&mut insts[i], &s.instances[i], now, &mut q, i);
                    STARTED
                } else {
                    REFUSED
                };
                q.push(
                    now + back,
                    Event::Answer {
                        r,
                        i,
                        outcome,
                        since,
                    },
                );
                continue;
            }
            Event::Answer {
                r,
                i,
                outcome,
                since,
            } => {
                let o = match outcome {
                    STARTED => CapacityOutcome::Started,
                    REFUSED => CapacityOutcome::LimitExceeded,
                    _ => CapacityOutcome::Inconclusive,
                };
                reps[r].machines[i].report(o, at(now));
                reps[r].wake_at[i] = None;
                if outcome == REFUSED {
                    insts[i].refused += 1;
                }
                if outcome == STARTED {
                    job_done(&mut insts[i], since, now);
                    vec![r]
                } else {
                    // The job goes back to the head of the queue, its arrival time kept: any
                    // replica may take it.
                    if let Some(p) = insts[i].pending.as_mut() {
                        *p += 1;
                    }
                    if s.instances[i].arrivals.is_some() {
                        insts[i].waiting.push_front(since);
                    }
                    (0..count).collect()
                }
            }
            Event::Wake { r } => {
                let rep = &mut reps[r];
                if rep.token_wake == Some(now) {
                    rep.token_wake = None;
                }
                for w in rep.wake_at.iter_mut() {
                    if *w == Some(now) {
                        *w = None;
                    }
                }
                vec![r]
            }
        };
        for r in woken {
            let rep = &mut reps[r];
            // Offer a start to each instance with a job in turn until none takes one.
            let n = insts.len();
            let mut idle = 0;
            while idle < n {
                let k = rep.rr;
                rep.rr = (rep.rr + 1) % n;
                idle += 1;
                if !has_job(&insts[k]) || rep.wake_at[k].is_some_and(|w| w > now) {
                    continue;
                }
                if rep.ceiling.level(now) < 1.0 {
                    let t = rep.ceiling.next_token(now);
                    if rep.token_wake.is_none_or(|w| w > t) {
                        rep.token_wake = Some(t);
                        q.push(t, Event::Wake { r });
                    }
                    break;
                }
                match rep.machines[k].admit(at(now)) {
                    CapacityAdmit::Go => {
                        idle = 0;
                        rep.ceiling.level -= 1.0;
                        let since = take_job(&mut insts[k]);
                        insts[k].calls += 1;
                        let [lo, hi] = s.latency_ms;
                        let trip = ns((lo + (hi - lo) * latency.next_f64()) / 1000.0);
                        let there = trip / 2;
                        if fails.next_f64() < s.inconclusive_fraction {
                            q.push(
                                now + trip,
                                Event::Answer {
                                    r,
                                    i: k,
                                    outcome: INCONCLUSIVE_ANSWER,
                                    since,
                                },
                            );
                        } else {
                            q.push(
                                now + there,
                                Event::Arrive {
                                    r,
                                    i: k,
                                    back: trip - there,
                                    since,
                                },
                            );
                        }
                    }
                    CapacityAdmit::NotBefore(t) => {
                        let t = now.max(ns(t.saturating_duration_since(base).as_secs_f64())) + 1;
                        rep.wake_at[k] = Some(t);
                        q.push(t, Event::Wake { r });
                    }
                }
            }
        }
    }
    results(s, &mut insts, end)
}

/// One seed's numbers for one instance.
#[derive(Clone, Debug)]
struct Row {
    goodput: f64,
    utilization: f64,
    ideal_utilization: f64,
    limit_exceeded: f64,
    drain_ratio: Option<f64>,
    goodput_after: Option<f64>,
    limit_exceeded_after: Option<f64>,
    /// Our jobs' mean wait for their chat minus the ideal starter's (s), with `arrivals`.
    excess_wait_s: Option<f64>,
    started: u64,
    ideal_started: u64,
    calls: u64,
    refused: u64,
}

fn run_seed(s: &Scenario, seed: u64, trace: bool) -> Vec<Row> {
    let arrivals: Vec<Vec<(u64, f64)>> = s
        .instances
        .iter()
        .enumerate()
        .map(|(i, spec)| other_arrivals(spec, seed, i, s.duration_s))
        .collect();
    let jobs = job_arrivals(s, seed);
    let ideal = run_ideal(s, seed, &arrivals, &jobs);
    let ours = run_ours(s, seed, &arrivals, &jobs, trace);
    ours.iter()
        .zip(&ideal)
        .zip(&s.instances)
        .map(|((o, i), spec)| {
            let finite = spec.jobs.filter(|_| spec.arrivals.is_none());
            let goodput = match (finite, o.drain_s, i.drain_s) {
                (Some(_), Some(d), Some(di)) => di / d.max(1e-9),
                (Some(_), None, _) => 0.0,
                // Another caller's chats are refused when ours fill the instance, so a starter
                // that fills it faster also takes more of it: compare the shares of what the
                // other callers left free.
                _ if !spec.others.is_empty() => o.utilization / i.utilization.max(1e-9),
                _ => o.started as f64 / (i.started as f64).max(1.0),
            };
            Row {
                goodput,
                utilization: o.utilization,
                ideal_utilization: i.utilization,
                limit_exceeded: o.refused as f64 / (o.calls as f64).max(1.0),
                drain_ratio: finite
                    .map(|j| o.drain_s.unwrap_or(f64::INFINITY) / (j as f64 / s.ceiling.rate)),
                goodput_after: match (o.after, i.after) {
                    (Some(oa), Some(ia)) if spec.others.is_empty() => {
                        Some(oa.0 as f64 / (ia.0 as f64).max(1.0))
                    }
                    _ => None,
                },
                excess_wait_s: o.wait_s.zip(i.wait_s).map(|(o, i)| o - i),
                limit_exceeded_after: o.after.map(|a| a.2 as f64 / (a.1 as f64).max(1.0)),
                started: o.started,
                ideal_started: i.started,
                calls: o.calls,
                refused: o.refused,
            }
        })
        .collect()
}

fn check(label: &str, bounds: &Option<Bounds>, values: &[f64], failures: &mut Vec<String>) {
    let Some(b) = bounds else {
        return;
    };
    if let Some([lo, hi]) = b.seed {
        for (n, v) in values.iter().enumerate() {
            if !(*v >= lo && *v <= hi) {
                failures.push(format!(
                    "{label}: seed #{} = {v:.4} not in [{lo}, {hi}]",
                    n + 1
                ));
            }
        }
    }
    if let Some([lo, hi]) = b.mean {
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        if !(mean >= lo && mean <= hi) {
            failures.push(format!("{label}: mean = {mean:.4} not in [{lo}, {hi}]"));
        }
    }
}

fn run_file(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/capacity-scenarios")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let s: Scenario = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let [mut lo, mut hi] = s.seeds;
    if let Ok(v) = std::env::var("CAPACITY_SEEDS")
        && let Some((a, b)) = v.split_once('-')
        && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
    {
        (lo, hi) = (a, b);
    }
    let trace_seed: Option<u64> = std::env::var("CAPACITY_TRACE")
        .ok()
        .and_then(|v| v.parse().ok());
    let seeds: Vec<u64> = (lo..=hi).collect();
    let rows: Vec<Vec<Row>> = seeds
        .iter()
        .map(|&seed| run_seed(&s, seed, trace_seed == Some(seed)))
        .collect();
    println!("scenario {name}: {}", s.description);
    let mut failures = Vec::new();
    for (i, spec) in s.instances.iter().enumerate() {
        let col = |f: &dyn Fn(&Row) -> f64| -> Vec<f64> { rows.iter().map(|r| f(&r[i])).collect() };
        println!(
            "  instance {} | seed | goodput | utilization (ideal) | LimitExceeded (count) | calls | \
             started (ideal) | drain ratio | after warm-up: goodput, LimitExceeded | excess wait |",
            spec.name
        );
        let opt = |v: Option<f64>, pct: bool| match v {
            Some(x) if pct => format!("{:.1} %", 100.0 * x),
            Some(x) => format!("{x:.3}"),
            None => "-".to_string(),
        };
        for (seed, r) in seeds.iter().zip(&rows) {
            let r = &r[i];
            println!(
                "  | {seed} | {:.3} | {:.3} ({:.3}) | {:.1} % ({}) | {} | {} ({}) | {} | {}, {} | {} |",
                r.goodput,
                r.utilization,
                r.ideal_utilization,
                100.0 * r.limit_exceeded,
                r.refused,
                r.calls,
                r.started,
                r.ideal_started,
                opt(r.drain_ratio, false),
                opt(r.goodput_after, false),
                opt(r.limit_exceeded_after, true),
                opt(r.excess_wait_s, false),
            );
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let metrics: [(&str, &Option<Bounds>, Vec<f64>); 8] = [
            (
                "excess_wait_s",
                &spec.expect.excess_wait_s,
                col(&|r| r.excess_wait_s.unwrap_or(f64::NAN)),
            ),
            ("goodput", &spec.expect.goodput, col(&|r| r.goodput)),
            (
                "utilization",
                &spec.expect.utilization,
                col(&|r| r.utilization),
            ),
            (
                "limit_exceeded",
                &spec.expect.limit_exceeded,
                col(&|r| r.limit_exceeded),
            ),
            ("calls", &spec.expect.calls, col(&|r| r.calls as f64)),
            (
                "drain_ratio",
                &spec.expect.drain_ratio,
                col(&|r| r.drain_ratio.unwrap_or(f64::NAN)),
            ),
            (
                "goodput_after_warmup",
                &spec.expect.goodput_after_warmup,
                col(&|r| r.goodput_after.unwrap_or(f64::NAN)),
            ),
            (
                "limit_exceeded_after_warmup",
                &spec.expect.limit_exceeded_after_warmup,
                col(&|r| r.limit_exceeded_after.unwrap_or(f64::NAN)),
            ),
        ];
        let means: Vec<String> = metrics
            .iter()
            .filter(|(_, _, v)| v.iter().all(|x| x.is_finite()))
            .map(|(label, _, v)| format!("{label} {:.4}", mean(v)))
            .collect();
        println!("  mean: {}", means.join(", "));
        for (label, bounds, values) in &metrics {
            check(
                &format!("{name}/{}: {label}", spec.name),
                bounds,
                values,
                &mut failures,
            );
        }
    }
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
    fixed_5s,
    uniform_1_15s,
    lognormal_5s,
    lognormal_5s_c100,
    lognormal_60s,
    lognormal_1h,
    others_half,
    others_come_and_go,
    others_fill_then_leave,
    two_instances_one_full,
    batches_fixed_5s,
    arrivals_lognormal_60s,
    inconclusive_lognormal_60s,
    fleet_3_lognormal_60s,
    fleet_3_fixed_5s,
    rate_bound_lognormal_60s,
    slow_connect_lognormal_60s,
    bench_capacity_160,
    bench_lifetimes_160,
    fixed_5s_events,
    uniform_1_15s_events,
    lognormal_5s_events,
    lognormal_60s_events,
    lognormal_1h_events,
    others_half_events,
    others_fill_then_leave_events,
    two_instances_one_full_events,
    batches_fixed_5s_events,
    fleet_3_fixed_5s_events,
    fleet_3_lognormal_60s_events,
    lognormal_60s_events_lost_5pct,
    lognormal_60s_events_silent,
    bench_capacity_160_events,
    bench_lifetimes_160_events,
);
