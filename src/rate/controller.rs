//! The adaptive rate controller of one Connect operation: a pure function of (time, outcomes).
//!
//! # Mechanism
//!
//! Connect's rate quota is a token bucket (refill = the quota, capacity = its burst) shared by
//! every caller in the account. We cannot see it; we only hear `429 TooManyRequests/Throttling`
//! when it is empty. The controller keeps an allowed rate `r` in `[floor, ceiling]` (ceiling =
//! the configured rate, which is the account's quota) and has five parts:
//!
//! 1. **Start at the ceiling.** Nothing says we share the quota until a 429 of our own does,
//!    unless the jobs queue shows siblings busy before our first call (joining, below).
//! 2. **One cut per congestion episode, to `β ×` the plateau.** A `Throttled` outcome outside
//!    an episode cuts. Further 429s are ignored until every call sent before the cut has been
//!    answered (they were sent at the old rate; the limiter reports sends through
//!    [`RateController::on_send`]), or `max_hold` has passed.
//! 3. **The plateau is our share of what the bucket gave out (one estimator).** A 429 means the
//!    bucket is empty now. At the start of the window (our first call, or the previous cut) its
//!    level `L` is known: full (`burst`) before our first call, empty at a cut. Over the window
//!    of length `T` it gave out `L + ceiling × T` tokens, split between the callers in
//!    proportion to how fast each called; we got `ours` of them (calls in flight counted as
//!    accepted). Our share is `ceiling × ours / (L + ceiling × T)`, divided by our utilization
//!    of the window (calls sent / calls allowed) when we were short of jobs, since what we got
//!    then only bounds the share from below. The plateau is `min(current rate, share)`, with
//!    two cases where the window cannot measure:
//!    - between two cuts the bucket may have sat full for a while (nobody took its refill), so
//!      there the share is a lower bound only and lowers the plateau no further than CUBIC's
//!      fast convergence, `(1 + β) / 2` of the rate of the 429 (RFC 8312 §4.6);
//!    - a first window in which none of our calls got through means others had drained the
//!      bucket before we came: we share it with at least one caller as fast as we are, so the
//!      plateau is at most half the ceiling.
//!
//!    This one rule replaces three mechanisms (the first cut sized by consumption, the plateau
//!    at the accepted rate of the last cycle, fast convergence for a 429 soon after a cut):
//!    replicas that start together land near `ceiling / replicas` after one 429 each, between
//!    two cuts it is our accepted rate, and a 429 soon after a cut (the rate still climbing)
//!    finds the window's rate below the current one and lowers the plateau.
//! 4. **One recovery curve.** After a cut, `r(τ) = w_max + (w_max − β w_max) ×
//!    ((τ − K) / K)³`, `τ` the curve's time since the cut (real time, except above the fair
//!    share, part 5): concave up to the plateau `w_max` at `K`, then convex above it
//!    toward the ceiling (the neighbour may have left): RFC 8312's CUBIC window in rate form.
//!    Its clock is `K = recovery_calls / w_max` ([`recovery_time`]), the one place where time
//!    stretches with the rate: the climb back spans the same number of calls at any rate, so a slow
//!    controller hears enough answers before it is back, the cut refills the same number of
//!    tokens into the server bucket (`(1 − β) × recovery_calls / 4`) at any rate, and replicas
//!    that share the quota K ways each cycle K times slower, so the fleet's 429 rate does not
//!    grow with its size. A cycle (down, back, probe until the bucket is empty again) spans
//!    about `2 × recovery_calls` calls with one 429.
//! 5. **The curve's clock runs `sharers` times slower above the fair share.** The curve is a
//!    function of its own time `τ`, which advances with real time below the fair share
//!    `ceiling / sharers` and `sharers` times slower above it ([`RateController::set_sharers`]:
//!    how many replicas of ours share the quota, an estimate the pipeline makes from the jobs
//!    queue). A replica cannot tell a sibling from a foreign caller by its 429s; the estimate
//!    says how much of what it does not get is its siblings'. Below the fair share the rest is a
//!    foreign caller's (or the replica got less than its siblings), so it probes as a lone worker
//!    does, and a lone worker (`sharers = 1`) takes back a departed neighbour's share at full
//!    speed. Above it, anything it gains it takes from a sibling: each probe that finds the
//!    quota still shared costs about one refused call, and `n` replicas each probing `n` times
//!    slower make as many probes as one lone worker. A new estimate changes only the clock's
//!    speed, never the rate at that instant. The same estimate splits the burst credit (each
//!    replica spends `1 / sharers` of it) and bounds the plateau of a first window in which
//!    none of our calls got through by the fair share.
//!
//! A replica that joins siblings already on the quota does not start at the ceiling (part 1):
//! [`RateController::join`] holds its calls until [`RateController::enter`] starts it as if
//! just cut at its fair share (`β ×` it, concave back), and the siblings' [`RateController::make_room`] steps
//! each of them down to its own at the same instant, so no 429 has to make the room
//! (`pipeline::sharers` reads the jobs queue at aligned instants for both). A replica that may
//! have started together with siblings [`RateController::look`]s: no call until the read after
//! its first receive, then [`RateController::enter`] on the plateau of its fair share (the
//! bucket is full) if others' messages show, or [`RateController::alone`] at the ceiling.
//!
//! The limiter also asks [`RateController::credit`] (burst credit for a lone worker): once we
//! have been at the ceiling without a 429 for longer than a second caller at our rate needs to
//! drain the bucket, plus a round trip to hear of it, the part of Connect's bucket beyond what
//! a round trip's worth of early arrivals needs may be spent at once (our `1 / sharers` of it);
//! see `limiter.rs`.
//!
//! `Accepted` and `Neutral` never lower the rate. `Neutral` covers everything that says nothing
//! about the rate quota: `LimitExceededException` (active-chat capacity), other 4xx, 5xx,
//! transport errors. Time enters only through the `now` arguments, so tests drive it with
//! explicit instants.

use std::time::Duration;

use tokio::time::Instant;

use super::RateFeedback;

/// Every constant of the rate control (controller and pacer), each with where its value comes
/// from. None was chosen because it moved one benchmark run.
#[derive(Clone, Debug, PartialEq)]
pub struct ControllerSettings {
    /// β, the cut: the new rate is `β × w_max`. 0.7 is RFC 8312's `β_cubic` (CUBIC, also
    /// botocore's adaptive retry mode): deep enough that one cut takes a caller at its share
    /// below it with room to refill the bucket, shallow enough that a stray 429 costs little.
    pub decrease_factor: f64,
    /// Calls the recovery after a cut spans: `K = recovery_calls / w_max`. With the estimate of
    /// sharers (part 5) it trades only a lone worker's two neighbour targets against each other
    /// (docs/rate-control.md, "The trade-off the estimate of sharers breaks"):
    /// - after a neighbour at `n` of the quota `Q` leaves, the rate is back at `Q` within
    ///   `K × (1 + ∛(n / ((1 − β)(Q − n))))` at worst (it left just after a cut), about half of
    ///   that on average, `K = recovery_calls / (Q − n)`: fewer calls, sooner back;
    /// - while it is there, each probe that finds it costs it about `n / (r + n)` of a refused
    ///   call, one probe per cycle of about `2 × recovery_calls` calls: fewer calls, more
    ///   refusals.
    ///
    /// 30 puts the neighbour (4/s of 10/s) back at the quota in 3.0 s on average (its
    /// target: 5 s; 35 gives 5.8 s) with 2.3 % of its calls refused (35: 3.9 %: the refusals
    /// vary more between seeds than between values), and the cut refills
    /// `(1 − β) × 30 / 4 ≈ 2.3` tokens into the server bucket (within the smallest burst
    /// Connect gives, 5). Fleets probe `sharers` times slower above their fair share whatever
    /// this is: 1.0–1.4 % 429s after their start-up at 30 (2.2–3.1 % without the estimate).
    /// Measured over 8 seeds with 25, 30, 35 and 45: docs/rate-control.md.
    pub recovery_calls: f64,
    /// The floor as a fraction of the ceiling: 1/20, the share of one replica among 20. Beyond
    /// that local control cannot resolve shares anyway; such fleets should use `REDIS_URL`.
    pub floor_fraction: f64,
    /// Longest congestion episode: calls whose answers never come must not stretch it. 10 s is
    /// the default `CONNECT_TIMEOUT_SECONDS`, after which every call has an answer (an error).
    pub max_hold: Duration,
    /// Tokens the pacer leaves in Connect's bucket for calls that reach it sooner than their
    /// send order says: it spends credit only above `1 + ceiling × (spread of recent round
    /// trips: longest − shortest) × burst_reserve`. Calls sent `1 / ceiling` apart reach Connect
    /// bunched by at most the spread of their one-way delays, which the spread of the round
    /// trips bounds when the variation is on one leg (Connect's processing after its throttle
    /// decision, the network before it) — not their length: at 1 s round trips that vary by
    /// 20 ms nothing bunches, and a reserve of the round trip's length (11 tokens at 10/s)
    /// would exceed the bucket and spend none of it. 1: that bound. 0 spends the whole bucket;
    /// a large value turns the credit off.
    pub burst_reserve: f64,
    /// Largest random delay of a paced call after its slot, as a fraction of the period. It
    /// never accumulates (the average rate is exact) and breaks phase locking: a replica whose
    /// calls always land just after a token refills would never hear a 429. 0.2 of a period is
    /// larger than the phase differences that lock (under a round-trip's spread) and small
    /// enough not to bunch calls.
    pub pacer_jitter: f64,
    /// How late (fraction of the period) a waiter may wake and still keep the schedule: tokio's
    /// timer fires up to 1 ms late, which at 100 calls/s is 0.1 of a period.
    pub pacer_catch_up: f64,
    /// Longest single sleep of the waiter at the head, so a rate that recovers while it waits
    /// shortens the wait: 200 ms is a fifth of the period at 1 call/s and a small fraction of
    /// any recovery time (`recovery_calls / rate`, 3 s at 10/s).
    pub pacer_recheck: Duration,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            decrease_factor: 0.7,
            recovery_calls: 30.0,
            floor_fraction: 0.05,
            max_hold: Duration::from_secs(10),
            burst_reserve: 1.0,
            pacer_jitter: 0.2,
            pacer_catch_up: 0.1,
            pacer_recheck: Duration::from_millis(200),
        }
    }
}

impl ControllerSettings {
    /// Sets a numeric field by name (tuning sessions: the scenario runner's `RATE_SETTINGS`);
    /// false if there is no such field.
    pub fn set(&mut self, name: &str, value: f64) -> bool {
        match name {
            "decrease_factor" => self.decrease_factor = value,
            "recovery_calls" => self.recovery_calls = value,
            "floor_fraction" => self.floor_fraction = value,
            "max_hold" => self.max_hold = Duration::from_secs_f64(value.max(0.0)),
            "burst_reserve" => self.burst_reserve = value,
            "pacer_jitter" => self.pacer_jitter = value,
            "pacer_catch_up" => self.pacer_catch_up = value,
            "pacer_recheck" => self.pacer_recheck = Duration::from_secs_f64(value.max(0.001)),
            _ => return false,
        }
        true
    }
}

/// The episode that started with the last cut.
#[derive(Clone, Copy, Debug)]
struct Episode {
    /// When the rate was cut.
    at: Instant,
    /// Sends counted when the cut happened: the episode lasts until as many answers came back.
    sends_at_cut: u64,
}

/// What happened since the bucket's level was last known (our first call, or the last cut).
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    /// The bucket's level at `start`: its burst before our first call, 0 at a cut.
    level: f64,
    sends: u64,
    accepted: u64,
    throttled: u64,
    /// ∫ allowed rate dt since `start`, up to `at` (for the utilization).
    offered: f64,
    at: Instant,
}

impl Window {
    fn new(start: Instant, level: f64) -> Self {
        Window {
            start,
            level,
            sends: 0,
            accepted: 0,
            throttled: 0,
            offered: 0.0,
            at: start,
        }
    }
}

/// Allowed rate of one operation, driven by outcomes. See the module documentation.
#[derive(Clone, Debug)]
pub struct RateController {
    settings: ControllerSettings,
    ceiling: f64,
    floor: f64,
    /// Plateau of the recovery curve.
    w_max: f64,
    /// `β × w_max`: the start of the recovery curve (the rate right after the last cut, before
    /// the floor clamps it).
    cut_rate: f64,
    /// Curve time `τ` of the recovery curve (seconds since the last cut on the curve's own
    /// clock, which runs `sharers` times slower above the fair share), as of `curve_at`.
    /// Before any cut it is `K`: the curve is at its plateau, the ceiling.
    curve_time: f64,
    curve_at: Instant,
    /// The recovery clock `K` of the current curve, seconds.
    k: f64,
    /// How many replicas of ours share the quota (an estimate, at least 1), see
    /// [`RateController::set_sharers`].
    sharers: f64,
    /// Since when the rate is at the ceiling (for the burst credit).
    at_ceiling_since: Instant,
    episode: Option<Episode>,
    sends: u64,
    answers: u64,
    /// `None` until our first call.
    window: Option<Window>,
    cuts: u64,
    /// The server bucket's burst, if known (the configured burst is the account's).
    server_burst: Option<f64>,
    /// The server bucket's level if we are alone (or our siblings do as we do): refills at the
    /// ceiling, `sharers` tokens per send of ours, empty at a 429 (and when it was last brought
    /// up to date).
    alone_level: f64,
    alone_at: Instant,
    /// Round trips of recent calls, see [`RoundTrips`].
    round_trips: RoundTrips,
    /// Joining siblings that hold the quota ([`RateController::join`]): no call before this
    /// instant unless [`RateController::enter`] comes first.
    joining_until: Option<Instant>,
    /// Whether we joined: the bucket was not full at our first call (siblings kept it near
    /// empty), so our first window starts empty.
    joined: bool,
    /// Whether the hold is a look ([`RateController::look`]): replicas that may have started
    /// with us, into a full bucket.
    looking: bool,
}

/// How an answer measures its call's round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundTrip {
    /// Matched with the oldest unanswered send (exact while answers keep their order).
    InOrder,
    /// The call was sent at this instant: exact even when answers overtake each other.
    SentAt(Instant),
    /// No round trip to measure: the call was not made, or its answer is unknown.
    Unmeasured,
}

/// The longest and shortest round trips of the last `window` to `2 × window` answers (see
/// [`RoundTrip`]: the pipeline's permits pass each call's send time; in-order matching narrows
/// the spread when long and varied round trips let answers overtake).
#[derive(Clone, Debug)]
struct RoundTrips {
    in_flight: std::collections::VecDeque<Instant>,
    current: f64,
    previous: f64,
    current_shortest: f64,
    previous_shortest: f64,
    samples: u64,
}

impl Default for RoundTrips {
    fn default() -> Self {
        RoundTrips {
            in_flight: std::collections::VecDeque::new(),
            current: 0.0,
            previous: 0.0,
            current_shortest: f64::INFINITY,
            previous_shortest: f64::INFINITY,
            samples: 0,
        }
    }
}

impl RoundTrips {
    /// Most sends we remember unanswered: beyond it the oldest are forgotten (lost answers).
    const MAX_IN_FLIGHT: usize = 10_000;

    fn on_send(&mut self, now: Instant) {
        if self.in_flight.len() >= Self::MAX_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back(now);
    }

    /// An answer at `now`, measured as `trip` says.
    fn on_answer(&mut self, now: Instant, window: f64, trip: RoundTrip) {
        let Some(oldest) = self.in_flight.pop_front() else {
            return;
        };
        let sent = match trip {
            RoundTrip::InOrder => oldest,
            RoundTrip::SentAt(sent) => sent,
            RoundTrip::Unmeasured => return,
        };
        let rtt = now.saturating_duration_since(sent).as_secs_f64();
        self.current = self.current.max(rtt);
        self.current_shortest = self.current_shortest.min(rtt);
        self.samples += 1;
        if self.samples as f64 >= window.max(1.0) {
            self.previous = self.current;
            self.previous_shortest = self.current_shortest;
            self.current = 0.0;
            self.current_shortest = f64::INFINITY;
            self.samples = 0;
        }
    }

    fn longest(&self) -> f64 {
        self.current.max(self.previous)
    }

    /// Longest minus shortest: how far apart in time calls sent together can reach Connect
    /// (0 before any answer).
    fn spread(&self) -> f64 {
        let shortest = self.current_shortest.min(self.previous_shortest);
        if shortest.is_finite() {
            (self.longest() - shortest).max(0.0)
        } else {
            0.0
        }
    }
}

impl RateController {
    /// A controller allowing `ceiling` calls/s from `now` on. A non-finite or non-positive
    /// ceiling (configuration validates it first) is treated as 0.001 calls/s.
    pub fn new(settings: ControllerSettings, ceiling: f64, now: Instant) -> Self {
        let ceiling = sanitize_rate(ceiling);
        let floor = clamp(ceiling * settings.floor_fraction, 0.001, ceiling);
        let k = recovery_time(&settings, ceiling);
        RateController {
            ceiling,
            floor,
            w_max: ceiling,
            cut_rate: ceiling,
            // As if the last cut were long ago: the curve is at its plateau, the ceiling.
            curve_time: k,
            curve_at: now,
            k,
            sharers: 1.0,
            at_ceiling_since: now,
            episode: None,
            sends: 0,
            answers: 0,
            window: None,
            cuts: 0,
            server_burst: None,
            alone_level: 0.0,
            alone_at: now,
            round_trips: RoundTrips::default(),
            joining_until: None,
            joined: false,
            looking: false,
            settings,
        }
    }

    /// The burst of the quota's bucket (the configured burst: like the ceiling, it is the
    /// account's). With it the first cut is sized by our share of what the bucket gave out, and
    /// a lone worker may spend the bucket's upper half.
    pub fn set_server_burst(&mut self, burst: f64) {
        self.server_burst = (burst.is_finite() && burst > 0.0).then_some(burst);
        if self.window.is_none() {
            self.alone_level = self.server_burst.unwrap_or(0.0);
        }
    }

    /// The configured ceiling (calls/s).
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The lowest rate the controller will go to (calls/s).
    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// How many times the rate was cut.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    /// The settings in use.
    pub fn settings(&self) -> &ControllerSettings {
        &self.settings
    }

    /// A call was sent at `now` (lets the controller tell answers to calls sent before a cut
    /// from answers to calls sent after it, and count what we asked the bucket for).
    pub fn on_send(&mut self, now: Instant) {
        // A joiner's first call finds the bucket as its siblings keep it: near empty.
        let burst = if self.joined {
            0.0
        } else {
            self.server_burst.unwrap_or(0.0)
        };
        let w = self.window.get_or_insert(Window::new(now, burst));
        w.sends = w.sends.saturating_add(1);
        self.advance(now);
        self.sends = self.sends.saturating_add(1);
        // Our siblings, as far as we know, do as we do: the bucket gives one token to each.
        self.alone_level = (self.alone_level - self.sharers).max(0.0);
        self.round_trips.on_send(now);
    }

    /// One call's outcome arrived at `now`.
    pub fn on_feedback(&mut self, now: Instant, feedback: RateFeedback) {
        self.on_answer(now, feedback, RoundTrip::InOrder);
    }

    /// One call's outcome arrived at `now`, with how to measure its round trip.
    pub fn on_feedback_trip(&mut self, now: Instant, feedback: RateFeedback, trip: RoundTrip) {
        self.on_answer(now, feedback, trip);
    }

    fn on_answer(&mut self, now: Instant, feedback: RateFeedback, trip: RoundTrip) {
        self.advance(now);
        self.answers = self.answers.saturating_add(1);
        self.round_trips
            .on_answer(now, self.settings.recovery_calls, trip);
        match feedback {
            RateFeedback::Neutral => {}
            RateFeedback::Accepted => {
                if let Some(w) = &mut self.window {
                    w.accepted = w.accepted.saturating_add(1);
                }
            }
            RateFeedback::Throttled => {
                if let Some(w) = &mut self.window {
                    w.throttled = w.throttled.saturating_add(1);
                }
                // The bucket is empty now, whoever emptied it.
                self.alone_level = 0.0;
                if !self.in_episode(now) {
                    self.cut(now);
                }
            }
        }
    }

    /// Allowed calls/s at `now`.
    pub fn rate(&self, now: Instant) -> f64 {
        self.curve(self.curve_time_at(now))
    }

    /// How many replicas of ours share the quota, from `now` on: an estimate (it may be noisy
    /// or stale), at least 1; 1 until set. The curve's clock runs `sharers` times slower above
    /// the fair share `ceiling / sharers` (module documentation, part 5).
    pub fn set_sharers(&mut self, now: Instant, sharers: f64) {
        self.advance(now);
        let n = if sharers.is_finite() { sharers } else { 1.0 };
        self.sharers = n.clamp(1.0, 1.0 / self.settings.floor_fraction.max(1e-6));
        if self.rate(now) < self.ceiling {
            self.at_ceiling_since = self.reaches(now, self.ceiling);
        }
    }

    /// Siblings of ours already work the quota: the jobs queue showed their messages before our
    /// first call. Entering at the ceiling would overdraw the bucket they keep near empty, and
    /// each of them would hear a 429 before making room (about one per replica present per
    /// join). So make no call until [`RateController::enter`] (the estimate every replica reads
    /// at the same instant, when the siblings make room) or until `until`; then start at our
    /// fair share. Ignored once we have called.
    pub fn join(&mut self, now: Instant, until: Instant) {
        if self.window.is_some() || self.sends > 0 {
            return;
        }
        self.advance(now);
        self.joining_until = Some(until);
        self.joined = true;
        // The bucket is the siblings': nothing in it is ours to spend at once.
        self.alone_level = 0.0;
        self.alone_at = now;
    }

    /// Replicas that start together read the queue before any of them received, so none
    /// joined (the count showed no sibling); their first messages show a moment later. So make
    /// no call until the read after our first receive: [`RateController::enter`] if it shows
    /// others' messages (we started together: each at its fair share), [`RateController::alone`]
    /// if not (at the ceiling, as if we had never waited), or until `until`. The bucket is full:
    /// nobody of ours has drained it. Ignored once we have called or joined.
    pub fn look(&mut self, now: Instant, until: Instant) {
        if self.window.is_some() || self.sends > 0 || self.joining_until.is_some() {
            return;
        }
        self.advance(now);
        self.joining_until = Some(until);
        self.looking = true;
    }

    /// The read after our first receive showed no other replica: the look ends at the ceiling,
    /// as if it had never been (a lone worker spends its burst credit at once).
    pub fn alone(&mut self, now: Instant) {
        if self.looking && self.joining_until.take().is_some() {
            self.advance(now);
            self.looking = false;
            // The credit's quiet time counts from the first call that may go: replicas that
            // started together must hear their 429s before any spends the bucket, and the
            // look sent nothing (counted from our start, fleet_3_bench_like's start-ups rose
            // from 1.5 to 1.9 429s per replica).
            self.at_ceiling_since = now;
        }
    }

    /// Until when no call may go (a joiner waiting for its entry, or a look), if any. Past the
    /// deadline a joiner enters at the fair share of the last estimate, a look at the ceiling
    /// unless an estimate came.
    pub fn gate(&mut self, now: Instant) -> Option<Instant> {
        let until = self.joining_until?;
        if now < until {
            return Some(until);
        }
        self.enter(now, self.sharers);
        None
    }

    /// Whether the controller waits for its entry ([`RateController::join`]).
    pub fn is_joining(&self) -> bool {
        self.joining_until.is_some()
    }

    /// The estimate of sharers that every replica read at the same instant (an aligned poll,
    /// see `pipeline::sharers`): a joiner enters as if just cut at its fair share
    /// `ceiling / sharers` (at `β ×` it, concave back to it in `K`, then convex above it with
    /// the clock slowed by `sharers`); otherwise the same as [`RateController::set_sharers`].
    pub fn enter(&mut self, now: Instant, sharers: f64) {
        self.set_sharers(now, sharers);
        if std::mem::take(&mut self.looking) {
            // Started together: the bucket is full and every replica steps to its own share of
            // the same count, so the shares add up to the quota and none has to be cut below
            // it. On the plateau, above it at the slowed clock: the probes spend the burst.
            if self.joining_until.take().is_some() {
                if self.sharers > 1.0 {
                    self.step_to(now, self.fair_share(), true);
                } else {
                    // Alone after all (a deadline with no estimate): as `alone`.
                    self.at_ceiling_since = now;
                }
            }
            return;
        }
        if self.joining_until.take().is_some() {
            // As if cut at the fair share: the siblings keep the bucket empty, and a joiner that
            // entered on the plateau left it no token for the pacers' jitter (the benchmark's
            // staggered fleet: the last joiner's four 429s within seconds of its entry). The
            // climb back refills what a cut refills, `(1 − β) × recovery_calls / 4` tokens.
            self.step_to(now, self.fair_share(), false);
        }
    }

    /// A sibling joined (the others' messages in flight rose by what a joiner holds): from now
    /// on at most our fair share `ceiling / sharers`, at the instant the joiner enters at its
    /// own, so the room it needs is made without a 429. A rate below it stays.
    pub fn make_room(&mut self, now: Instant, sharers: f64) {
        self.set_sharers(now, sharers);
        if self.joining_until.is_some() {
            return;
        }
        let share = self.fair_share();
        if self.rate(now) > share {
            self.step_to(now, share, true);
        }
    }

    /// Puts the curve's plateau at `level` (no 429, no episode: a later cut measures from the
    /// window as it was), the rate on it (`on_plateau`) or at its start, `β ×` it, as right
    /// after a cut.
    fn step_to(&mut self, now: Instant, level: f64, on_plateau: bool) {
        self.advance(now);
        self.w_max = clamp(level, self.floor, self.ceiling);
        self.cut_rate = self.w_max * self.settings.decrease_factor;
        self.k = recovery_time(&self.settings, self.w_max);
        self.curve_time = if on_plateau { self.k } else { 0.0 };
        self.curve_at = now;
        self.at_ceiling_since = self.reaches(now, self.ceiling);
    }

    /// The estimate of replicas sharing the quota in use.
    pub fn sharers(&self) -> f64 {
        self.sharers
    }

    /// Our fair share of the quota among our replicas, `ceiling / sharers`: above it the
    /// curve's clock runs `sharers` times slower.
    fn fair_share(&self) -> f64 {
        self.ceiling / self.sharers
    }

    /// The recovery curve at curve time `τ`: CUBIC's window in rate form.
    fn curve(&self, tau: f64) -> f64 {
        let x = (tau - self.k) / self.k;
        clamp(
            self.w_max + (self.w_max - self.cut_rate) * x * x * x,
            self.floor,
            self.ceiling,
        )
    }

    /// The curve time at which the curve reaches `level` (∞ if never).
    fn curve_time_of(&self, level: f64) -> f64 {
        if level > self.ceiling {
            return f64::INFINITY;
        }
        let rise = self.w_max - self.cut_rate;
        if rise <= 0.0 {
            return if level <= self.w_max {
                0.0
            } else {
                f64::INFINITY
            };
        }
        let tau = self.k + self.k * ((level - self.w_max) / rise).cbrt();
        if tau.is_nan() { 0.0 } else { tau.max(0.0) }
    }

    /// Curve time at `now`: real time below the fair share, `sharers` times slower above it.
    fn curve_time_at(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.curve_at).as_secs_f64();
        let tau = self.curve_time;
        let slow = self.curve_time_of(self.fair_share());
        if tau >= slow {
            tau + dt / self.sharers
        } else if tau + dt <= slow {
            tau + dt
        } else {
            slow + (tau + dt - slow) / self.sharers
        }
    }

    /// When (at the current `sharers`) the rate reaches `level`, seen from `now` (brought up to
    /// date): `now` if it is there, far in the future if never.
    fn reaches(&self, now: Instant, level: f64) -> Instant {
        let target = self.curve_time_of(level);
        let tau = self.curve_time;
        let slow = self.curve_time_of(self.fair_share());
        let real = if target <= tau {
            0.0
        } else if tau >= slow {
            (target - tau) * self.sharers
        } else if target <= slow {
            target - tau
        } else {
            (slow - tau) + (target - slow) * self.sharers
        };
        let real = if real.is_finite() { real.min(1e6) } else { 1e6 };
        now.checked_add(Duration::from_secs_f64(real))
            .unwrap_or(now)
    }

    /// Calls that may go at once on top of the paced rate at `now`: the level of the server
    /// bucket above its reserve, as far as a lone caller can know it. Zero unless the rate has
    /// been at the ceiling, without a 429, for `burst / ceiling` plus the longest recent round
    /// trip: two callers at the ceiling drain a full bucket in `burst / ceiling` (more drain
    /// it sooner), so by then replicas that started together have heard their 429 and none
    /// spends the bucket into their storm. The reserve is one token plus what the ceiling sends
    /// within the spread of recent round trips (see [`ControllerSettings::burst_reserve`]).
    pub fn credit(&self, now: Instant) -> f64 {
        let Some(burst) = self.server_burst else {
            return 0.0;
        };
        if self.joining_until.is_some() || self.rate(now) < self.ceiling {
            return 0.0;
        }
        let quiet = now.saturating_duration_since(self.at_ceiling_since);
        let rtt = self.round_trips.longest();
        if quiet.as_secs_f64() < burst / self.ceiling + rtt {
            return 0.0;
        }
        let reserve = 1.0 + self.ceiling * self.round_trips.spread() * self.settings.burst_reserve;
        // With siblings the model's bucket is theirs too: each spends its part of what is above
        // the reserve, so together they spend no more than a lone worker would.
        let credit = (self.alone_level_at(now) - reserve) / self.sharers;
        if credit.is_finite() {
            credit.max(0.0)
        } else {
            0.0
        }
    }

    /// The lone-caller model of the server bucket at `now`.
    fn alone_level_at(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.alone_at).as_secs_f64();
        (self.alone_level + dt * self.ceiling).min(self.server_burst.unwrap_or(0.0))
    }

    /// Brings the integrals up to `now`.
    fn advance(&mut self, now: Instant) {
        self.curve_time = self.curve_time_at(now);
        self.curve_at = self.curve_at.max(now);
        self.alone_level = self.alone_level_at(now);
        self.alone_at = now;
        let rate = self.rate(now);
        if let Some(w) = &mut self.window {
            let dt = now.saturating_duration_since(w.at).as_secs_f64();
            w.offered += dt * rate;
            w.at = now;
        }
    }

    /// Whether a 429 at `now` belongs to the episode of the last cut (and is ignored).
    fn in_episode(&mut self, now: Instant) -> bool {
        let Some(ep) = self.episode else {
            return false;
        };
        if now.saturating_duration_since(ep.at) >= self.settings.max_hold {
            // Answers to some sends never came (cancelled calls): forget them.
            self.answers = self.answers.max(ep.sends_at_cut);
            self.episode = None;
            return false;
        }
        if self.answers <= ep.sends_at_cut {
            return true;
        }
        self.episode = None;
        false
    }

    /// Our share of the quota over the current window, if it can be measured (see the module
    /// documentation, part 3).
    fn share(&self, now: Instant) -> Option<f64> {
        let w = self.window.as_ref()?;
        let t = now.saturating_duration_since(w.start).as_secs_f64();
        // Calls still in flight are counted as accepted: most are, and leaving them out would
        // bias a short window low by one round trip's worth of calls.
        let ours = (w.sends.saturating_sub(w.throttled) as f64).max(w.accepted as f64);
        // A first window in which none of our calls got through contradicts "full at our first
        // call" (others had drained it): its level is unknown, taken as empty.
        let level = if w.accepted == 0 { 0.0 } else { w.level };
        let given_out = level + self.ceiling * t;
        if ours < 1.0 || given_out < 1.0 {
            // Nothing of ours got through, or too short to hand out a token: no measure.
            return None;
        }
        let share = self.ceiling * ours / given_out;
        let utilization = if w.offered > 0.0 {
            (w.sends as f64 / w.offered).min(1.0)
        } else {
            1.0
        };
        Some(share / utilization.max(1e-9))
    }

    fn cut(&mut self, now: Instant) {
        let current = self.rate(now);
        let beta = self.settings.decrease_factor;
        let plateau = match (self.share(now), &self.window) {
            (Some(share), Some(w)) => {
                // From full to empty, every token the bucket gave out was taken: the share
                // stands. Between two 429s the bucket may have sat full for a while (nobody
                // asked for its refill), so the share is only a lower bound; it lowers the
                // plateau no further than CUBIC's fast convergence, (1 + β) / 2 of the rate of
                // the 429 (RFC 8312 §4.6). (Trusting windows shorter than `burst / ceiling`,
                // in which the bucket cannot have overflowed, was tried: the share measured
                // right after a burst is noisy, `noisy_neighbour_local` fell from 0.93 to 0.85.)
                let lowest = if w.level > 0.0 {
                    0.0
                } else {
                    current * (1.0 + beta) / 2.0
                };
                current.min(share.max(lowest))
            }
            // Our very first window, and none of our calls got through: others had drained the
            // bucket before we came, so we share it with at least one caller at least as fast
            // as we are; at most half of it is ours.
            (None, Some(w)) if self.cuts == 0 && w.accepted == 0 => {
                current.min(self.ceiling / 2.0_f64.max(self.sharers))
            }
            _ => current,
        };
        self.w_max = clamp(plateau, self.floor, self.ceiling);
        // Not clamped to the floor: the curve must rise even from a plateau at the floor.
        self.cut_rate = self.w_max * beta;
        self.k = recovery_time(&self.settings, self.w_max);
        self.curve_time = 0.0;
        self.curve_at = now;
        self.at_ceiling_since = self.reaches(now, self.ceiling);
        self.window = Some(Window::new(now, 0.0));
        self.episode = Some(Episode {
            at: now,
            // The answer to the call that triggered this cut is already counted.
            sends_at_cut: self.sends.max(self.answers),
        });
        self.cuts = self.cuts.saturating_add(1);
    }
}

/// The recovery clock: `K = recovery_calls / w_max` seconds, so the curve spans the same number
/// of calls at any rate (see the module documentation, part 4). The one place where time is
/// stretched for slow controllers (crowded ones: part 5).
pub fn recovery_time(settings: &ControllerSettings, w_max: f64) -> f64 {
    let k = settings.recovery_calls / sanitize_rate(w_max);
    if k.is_finite() && k > 1e-3 {
        k.min(1e6)
    } else {
        1e-3
    }
}

/// A usable rate from configuration input: finite and positive, else 0.001 calls/s.
pub(crate) fn sanitize_rate(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 {
        rate.clamp(0.001, 1_000_000.0)
    } else {
        0.001
    }
}

/// `f64::clamp` that cannot panic on `lo > hi` or NaN.
fn clamp(x: f64, lo: f64, hi: f64) -> f64 {
    if x.is_nan() {
        return lo;
    }
    x.max(lo).min(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// The defaults with round numbers: recovery over 30 calls (3 s at 10/s), cut 0.5.
    fn plain() -> ControllerSettings {
        ControllerSettings {
            decrease_factor: 0.5,
            recovery_calls: 30.0,
            ..ControllerSettings::default()
        }
    }

    fn controller(ceiling: f64) -> (RateController, Instant) {
        let t0 = Instant::now();
        (RateController::new(plain(), ceiling, t0), t0)
    }

    /// `n` calls sent and accepted at `rate` from `from`; returns when the last went.
    fn accept_at(c: &mut RateController, from: Instant, rate: f64, n: u32) -> Instant {
        let mut at = from;
        for k in 0..n {
            at = from + secs(f64::from(k) / rate);
            c.on_send(at);
            c.on_feedback(at, RateFeedback::Accepted);
        }
        at
    }

    fn throttle(c: &mut RateController, at: Instant) {
        c.on_send(at);
        c.on_feedback(at, RateFeedback::Throttled);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn starts_at_the_ceiling() {
        let (c, t0) = controller(10.0);
        assert_eq!(c.rate(t0), 10.0);
        assert_eq!(c.rate(t0 + Duration::from_secs(100)), 10.0);
    }

    #[test]
    fn accepted_and_neutral_never_lower_the_rate() {
        let (mut c, t0) = controller(10.0);
        for i in 0..1000 {
            let now = t0 + ms(i * 10);
            c.on_send(now);
            let fb = if i % 2 == 0 {
                RateFeedback::Neutral
            } else {
                RateFeedback::Accepted
            };
            c.on_feedback(now, fb);
            assert_eq!(c.rate(now), 10.0);
        }
        assert_eq!(c.cuts(), 0);
    }

    #[test]
    fn the_first_cut_is_our_share_of_what_the_bucket_gave_out() {
        let t0 = Instant::now();
        let run = |burst: Option<f64>| {
            let mut c = RateController::new(plain(), 10.0, t0);
            if let Some(b) = burst {
                c.set_server_burst(b);
            }
            // Five calls at the ceiling go through, the sixth (at 0.5 s) is throttled: the bucket
            // (burst 10, full at our first call) gave out 10 + 10 × 0.5 = 15 tokens; we got 5.
            accept_at(&mut c, t0, 10.0, 5);
            throttle(&mut c, t0 + ms(500));
            c
        };
        let c = run(Some(10.0));
        let share = 10.0 * 5.0 / 15.0;
        // Cut to β × share, back at the share after K = 30 / share seconds.
        assert!(close(c.rate(t0 + ms(500)), 0.5 * share), "{}", c.rate(t0));
        let k = 30.0 / share;
        assert!(close(c.rate(t0 + ms(500) + secs(k)), share));
        // Without the burst the bucket's level is taken as 0: the window's own rate, here the
        // ceiling.
        let c = run(None);
        assert!(close(c.rate(t0 + ms(500)), 5.0), "{}", c.rate(t0 + ms(500)));
    }

    #[test]
    fn later_cuts_plateau_at_the_accepted_rate_since_the_last_cut() {
        let (mut c, t0) = controller(10.0);
        accept_at(&mut c, t0, 10.0, 50);
        let t1 = t0 + Duration::from_secs(5);
        throttle(&mut c, t1);
        // Cut from 10 to 5; calls go as fast as allowed for 2 s, climbing back toward 10.
        let mut sent = 0u32;
        let mut at = t1 + ms(1);
        while at < t1 + Duration::from_secs(2) {
            c.on_send(at);
            c.on_feedback(at, RateFeedback::Accepted);
            sent += 1;
            at += secs(1.0 / c.rate(at));
        }
        let current = c.rate(at);
        throttle(&mut c, at);
        // The plateau is what we got over the window (its sends, the last one refused) of
        // what the bucket gave out: below the rate of the 429, above (1 + β) / 2 of it.
        let t = at.saturating_duration_since(t1).as_secs_f64();
        let share = 10.0 * f64::from(sent) / (10.0 * t);
        let plateau = c.rate(at) / 0.5;
        assert!(close(plateau, share), "{plateau} vs {share}");
        assert!(plateau < 0.95 * current && plateau > 0.75 * current);
    }

    #[test]
    fn a_window_short_of_jobs_does_not_lower_the_plateau() {
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        // 1 call/s while 10/s were allowed, then a 429 (a neighbour took the rest): what we got
        // says nothing about our share, the plateau stays at the rate of the 429.
        let last = accept_at(&mut c, t0, 1.0, 20);
        let at = last + Duration::from_secs(1);
        throttle(&mut c, at);
        // Got 20 of 200 tokens, but asked for only 21 of 200 allowed: the share is about the
        // whole rate.
        assert!((c.rate(at) - 5.0).abs() < 0.3, "{}", c.rate(at));
    }

    #[test]
    fn replicas_starting_together_land_near_equal_shares() {
        // Three replicas at 10/s on a 10/s bucket of burst 10: it runs dry at 0.5 s, each got
        // about 5 of the 15 tokens. Each one's first cut goes to β × 10 × 6 / 16.
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        accept_at(&mut c, t0, 10.0, 5);
        throttle(&mut c, t0 + ms(500));
        let share = 10.0 * 5.0 / 15.0;
        assert!(close(c.rate(t0 + ms(500) + secs(30.0 / share)), share));
    }

    #[test]
    fn a_429_soon_after_a_cut_lowers_the_plateau() {
        let (mut c, t0) = controller(10.0);
        accept_at(&mut c, t0, 10.0, 50);
        let t1 = t0 + Duration::from_secs(5);
        throttle(&mut c, t1);
        // Plateau 10 (we had it all), cut to 5, climbing back over 3 s.
        let t2 = t1 + Duration::from_secs(1);
        let mut at = t1 + ms(1);
        while at < t2 {
            c.on_send(at);
            c.on_feedback(at, RateFeedback::Accepted);
            at += secs(1.0 / c.rate(at));
        }
        let current = c.rate(t2);
        throttle(&mut c, t2);
        // The window's rate (about the average since the cut) is below the rate of the 429,
        // but the plateau goes no lower than (1 + β) / 2 of it (β = 0.5 here).
        let plateau = c.rate(t2) / 0.5;
        assert!(plateau < current * 0.95, "{plateau} vs {current}");
        assert!(plateau >= current * 0.75 - 1e-9, "{plateau} vs {current}");
    }

    #[test]
    fn the_recovery_spans_the_same_number_of_calls_at_any_rate() {
        for ceiling in [1.0, 10.0, 100.0] {
            let (mut c, t0) = controller(ceiling);
            let last = accept_at(&mut c, t0, ceiling, 100);
            throttle(&mut c, last);
            let k = 30.0 / ceiling;
            // Concave: more than half way back after a third of K, at the plateau after K.
            let third = c.rate(last + secs(k / 3.0));
            assert!(third > 0.75 * ceiling && third < ceiling, "{third}");
            assert!(close(c.rate(last + secs(k)), ceiling), "{ceiling}");
        }
    }

    #[test]
    fn above_the_plateau_the_probe_mirrors_the_recovery() {
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        // As above: plateau 10 × 5 / 15, cut to half of it, K = 30 / plateau.
        accept_at(&mut c, t0, 10.0, 5);
        let at = t0 + ms(500);
        throttle(&mut c, at);
        let w_max = 10.0 * 5.0 / 15.0;
        let k = 30.0 / w_max;
        let cut = c.rate(at);
        assert!(close(cut, w_max / 2.0));
        assert!(close(c.rate(at + secs(k)), w_max));
        // K after the plateau the rate is as far above it as the cut was below it; later it
        // reaches the ceiling.
        assert!(close(c.rate(at + secs(2.0 * k)), 2.0 * w_max - cut));
        assert_eq!(c.rate(at + secs(3.0 * k)), 10.0);
    }

    #[test]
    fn further_429s_in_the_same_episode_are_ignored() {
        let (mut c, t0) = controller(10.0);
        accept_at(&mut c, t0, 10.0, 50);
        let t1 = t0 + Duration::from_secs(5);
        // Five calls in flight at the old rate when the first 429 arrives.
        for _ in 0..5 {
            c.on_send(t1);
        }
        c.on_feedback(t1, RateFeedback::Throttled);
        let after_cut = c.rate(t1);
        for i in 1..5 {
            c.on_feedback(t1 + ms(60 + i), RateFeedback::Throttled);
        }
        assert_eq!(c.cuts(), 1);
        assert!(c.rate(t1 + ms(70)) >= after_cut);
        // A call sent after the cut and throttled is a new episode.
        c.on_send(t1 + ms(100));
        c.on_feedback(t1 + ms(200), RateFeedback::Throttled);
        assert_eq!(c.cuts(), 2);
        assert!(c.rate(t1 + ms(200)) < after_cut);
    }

    #[test]
    fn lost_answers_end_the_episode_after_max_hold() {
        let (mut c, t0) = controller(10.0);
        for _ in 0..10 {
            c.on_send(t0);
        }
        c.on_feedback(t0, RateFeedback::Throttled);
        c.on_feedback(t0 + ms(9_900), RateFeedback::Throttled);
        assert_eq!(c.cuts(), 1);
        c.on_feedback(t0 + ms(10_100), RateFeedback::Throttled);
        assert_eq!(c.cuts(), 2);
    }

    #[test]
    fn never_below_the_floor_nor_above_the_ceiling() {
        let (mut c, t0) = controller(10.0);
        let mut now = t0;
        for _ in 0..200 {
            now += ms(100);
            throttle(&mut c, now);
            assert!(c.rate(now) >= 0.5 - 1e-12);
        }
        assert!((c.rate(now) - 0.5).abs() < 1e-9);
        assert_eq!(c.rate(now + Duration::from_secs(3600)), 10.0);
    }

    #[test]
    fn fractional_ceiling_and_floor() {
        let (c, t0) = controller(0.5);
        assert_eq!(c.rate(t0), 0.5);
        assert!((c.floor() - 0.025).abs() < 1e-12);
    }

    #[test]
    fn bad_ceilings_do_not_panic() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            let (mut c, t0) = controller(bad);
            c.set_server_burst(f64::NAN);
            throttle(&mut c, t0);
            let r = c.rate(t0);
            assert!(r.is_finite() && r > 0.0);
            assert!(c.credit(t0).is_finite());
        }
    }

    #[test]
    fn credit_only_after_a_quiet_start_at_the_ceiling() {
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        // Quiet for burst / ceiling = 1 s first (plus a round trip, none measured yet); then the
        // bucket above a reserve of one token.
        assert_eq!(c.credit(t0 + ms(900)), 0.0);
        assert!(close(c.credit(t0 + ms(1_000)), 9.0));
        // Spending it empties it; idling refills it at the ceiling.
        let t2 = t0 + ms(1_000);
        for _ in 0..9 {
            c.on_send(t2);
            c.on_feedback(t2, RateFeedback::Accepted);
        }
        assert!(c.credit(t2) < 1e-9);
        assert!(close(c.credit(t2 + ms(200)), 2.0));
        // A 429 empties the bucket; the quiet time restarts when the rate is back at the
        // ceiling, and the bucket has refilled at the ceiling since the 429.
        let t3 = t2 + ms(200);
        throttle(&mut c, t3);
        assert_eq!(c.credit(t3 + ms(1)), 0.0);
        let back = c.reaches(t3, 10.0);
        assert_eq!(c.credit(back + ms(900)), 0.0);
        assert!(close(c.credit(back + ms(1_100)), 9.0));
        // No burst known, no credit.
        let c = RateController::new(plain(), 10.0, t0);
        assert_eq!(c.credit(t0 + Duration::from_secs(60)), 0.0);
    }

    #[test]
    fn the_reserve_holds_the_spread_of_round_trips_not_their_length() {
        let t0 = Instant::now();
        // Round trips of 1.0 to 1.3 s (as many of each): the reserve is 1 + 10 × 0.3 = 4
        // tokens, whatever their length.
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        for k in 0..30u32 {
            let sent = t0 + ms(100) * k;
            c.on_send(sent);
            c.on_feedback_trip(
                sent + ms(1_000 + 100 * u64::from(k % 4)),
                RateFeedback::Accepted,
                RoundTrip::SentAt(sent),
            );
        }
        let at = t0 + Duration::from_secs(10);
        assert!(close(c.credit(at), 10.0 - 4.0), "{}", c.credit(at));
        // The same calls, all answered after exactly 1 s: nothing bunches, one token is kept.
        let mut fixed = RateController::new(plain(), 10.0, t0);
        fixed.set_server_burst(10.0);
        for k in 0..30u32 {
            let sent = t0 + ms(100) * k;
            fixed.on_send(sent);
            fixed.on_feedback_trip(
                sent + ms(1_000),
                RateFeedback::Accepted,
                RoundTrip::SentAt(sent),
            );
        }
        assert!(close(fixed.credit(at), 10.0 - 1.0), "{}", fixed.credit(at));
        // Round trips from 0.2 to 1.5 s: the reserve exceeds the bucket, no credit.
        let mut varied = RateController::new(plain(), 10.0, t0);
        varied.set_server_burst(10.0);
        varied.on_send(t0);
        varied.on_send(t0 + ms(100));
        let trip = |sent| RoundTrip::SentAt(sent);
        varied.on_feedback_trip(t0 + ms(300), RateFeedback::Accepted, trip(t0 + ms(100)));
        varied.on_feedback_trip(t0 + ms(1_500), RateFeedback::Accepted, trip(t0));
        assert_eq!(varied.credit(at), 0.0);
    }

    #[test]
    fn calls_not_made_measure_no_round_trip() {
        // A permit dropped before its call (an instance found full at the claim) answers at
        // once: no sample, or the spread would take in a round trip of zero.
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        for k in 0..30u32 {
            let sent = t0 + ms(100) * k;
            c.on_send(sent);
            let trip = if k % 2 == 0 {
                RoundTrip::SentAt(sent)
            } else {
                RoundTrip::Unmeasured
            };
            let answer = if k % 2 == 0 { ms(1_000) } else { ms(1) };
            c.on_feedback_trip(sent + answer, RateFeedback::Neutral, trip);
        }
        let at = t0 + Duration::from_secs(10);
        assert!(close(c.credit(at), 10.0 - 1.0), "{}", c.credit(at));
    }

    #[test]
    fn answers_matched_in_order_without_send_times() {
        // Callers that do not pass send times: the k-th answer is the k-th send's.
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        c.on_send(t0);
        c.on_send(t0 + ms(100));
        c.on_feedback(t0 + ms(1_000), RateFeedback::Accepted);
        c.on_feedback(t0 + ms(1_100), RateFeedback::Accepted);
        // 1 s each: no spread, one token kept.
        let at = t0 + Duration::from_secs(10);
        assert!(close(c.credit(at), 10.0 - 1.0), "{}", c.credit(at));
    }

    #[test]
    fn a_first_call_throttled_means_at_most_half() {
        // The bucket was not full at our first call after all: someone at least as fast as we
        // are drained it, so the plateau is half the ceiling, the cut half of that (β = 0.5).
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        throttle(&mut c, t0);
        assert!(close(c.rate(t0), 2.5), "{}", c.rate(t0));
    }

    /// The first cut of `replicas_starting_together_land_near_equal_shares`: plateau 10/3,
    /// cut to half of it (β = 0.5), K = 30 / plateau. Returns the controller and the cut's time.
    fn cut_to_a_third(t0: Instant, sharers: f64) -> (RateController, Instant, f64) {
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        c.set_sharers(t0, sharers);
        accept_at(&mut c, t0, 10.0, 5);
        let at = t0 + ms(500);
        throttle(&mut c, at);
        (c, at, 30.0 / (10.0 / 3.0))
    }

    #[test]
    fn above_the_fair_share_the_curve_runs_sharers_times_slower() {
        let t0 = Instant::now();
        let w = 10.0 / 3.0;
        let (lone, at, k) = cut_to_a_third(t0, 1.0);
        let (three, _, _) = cut_to_a_third(t0, 3.0);
        // Below the plateau (= the fair share of three) both recover alike.
        for t in [0.0, 0.5 * k, k] {
            assert!(
                close(lone.rate(at + secs(t)), three.rate(at + secs(t))),
                "{t}"
            );
        }
        assert!(close(three.rate(at + secs(k)), w));
        // Above it, the lone worker's curve is as far above the plateau after 2 K as the cut
        // was below it; three replicas' curves get there after 4 K (K + 3 × K).
        assert!(close(lone.rate(at + secs(2.0 * k)), 2.0 * w - w / 2.0));
        assert!(close(three.rate(at + secs(4.0 * k)), 2.0 * w - w / 2.0));
        assert!(close(three.rate(at + secs(2.0 * k)), w + (w / 2.0) / 27.0));
    }

    #[test]
    fn below_the_fair_share_the_curve_climbs_at_full_speed() {
        // Two sharers: the fair share is 5, above the plateau 10/3. Up to 5 the curve is the
        // lone one; from there on it runs twice as slow.
        let t0 = Instant::now();
        let w: f64 = 10.0 / 3.0;
        let (lone, at, k) = cut_to_a_third(t0, 1.0);
        let (two, _, _) = cut_to_a_third(t0, 2.0);
        let t_f = k + k * ((5.0 - w) / (w / 2.0)).cbrt();
        for t in [0.5 * k, k, 1.5 * k, t_f] {
            assert!(
                close(lone.rate(at + secs(t)), two.rate(at + secs(t))),
                "{t}"
            );
        }
        let later = t_f + 1.0;
        let x = (t_f + 0.5 - k) / k;
        assert!(close(two.rate(at + secs(later)), w + (w / 2.0) * x * x * x));
        assert!(two.rate(at + secs(later)) < lone.rate(at + secs(later)));
    }

    #[test]
    fn a_new_estimate_of_sharers_keeps_the_rate_continuous() {
        let (mut c, at, k) = cut_to_a_third(Instant::now(), 1.0);
        let mut now = at;
        for (i, n) in [3.0, 1.0, 6.0, 2.5, 1.0].into_iter().enumerate() {
            now = at + secs(k * (0.7 + 0.6 * i as f64));
            let before = c.rate(now);
            c.set_sharers(now, n);
            assert!(
                close(c.rate(now), before),
                "{n}: {} vs {before}",
                c.rate(now)
            );
        }
        // Back to one sharer, the curve reaches the ceiling as the lone one does.
        assert_eq!(c.rate(now + secs(10.0 * k)), 10.0);
    }

    #[test]
    fn bad_estimates_of_sharers_count_as_one_and_are_capped() {
        let (mut c, t0) = controller(10.0);
        for bad in [f64::NAN, f64::NEG_INFINITY, f64::INFINITY, -3.0, 0.0, 0.5] {
            c.set_sharers(t0, bad);
            assert_eq!(c.sharers(), 1.0, "{bad}");
        }
        // At most one replica per floor: 1 / floor_fraction = 20.
        c.set_sharers(t0, 1e9);
        assert_eq!(c.sharers(), 20.0);
    }

    #[test]
    fn sharers_split_the_burst_credit() {
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        c.set_sharers(t0, 3.0);
        // As in `credit_only_after_a_quiet_start_at_the_ceiling`: 9 tokens above the reserve,
        // a third of them ours.
        assert_eq!(c.credit(t0 + ms(900)), 0.0);
        let t1 = t0 + ms(1_000);
        assert!(close(c.credit(t1), 3.0));
        // A call of ours stands for one of each sibling's: our part drops by one call.
        c.on_send(t1);
        assert!(close(c.credit(t1), 2.0));
    }

    #[test]
    fn a_first_call_throttled_among_sharers_means_at_most_the_fair_share() {
        let t0 = Instant::now();
        let mut c = RateController::new(plain(), 10.0, t0);
        c.set_server_burst(10.0);
        c.set_sharers(t0, 4.0);
        throttle(&mut c, t0);
        // Plateau 10 / 4, cut to half of it.
        assert!(close(c.rate(t0), 1.25), "{}", c.rate(t0));
    }

    #[test]
    fn a_joiner_makes_no_call_until_it_enters_at_its_fair_share() {
        let (mut c, t0) = controller(10.0);
        c.set_server_burst(10.0);
        c.join(t0, t0 + secs(7.0));
        assert!(c.is_joining());
        assert_eq!(c.gate(t0 + secs(1.0)), Some(t0 + secs(7.0)));
        assert_eq!(c.credit(t0 + secs(1.0)), 0.0, "the bucket is the siblings'");
        let at = t0 + secs(3.0);
        c.enter(at, 4.0);
        assert!(!c.is_joining());
        assert_eq!(c.gate(at), None);
        // As if cut there: at β × the fair share, back on it after `K`; above it the probe runs
        // `sharers` times slower, so after another `K` of real time it has climbed only as far
        // as a lone worker's does in `K / 4`.
        let beta = plain().decrease_factor;
        assert!(close(c.rate(at), beta * 2.5), "{}", c.rate(at));
        let k = recovery_time(&plain(), 2.5);
        assert!(close(c.rate(at + secs(k)), 2.5), "{}", c.rate(at + secs(k)));
        let lone = 2.5 + (2.5 - beta * 2.5) * (0.25_f64).powi(3);
        let later = c.rate(at + secs(2.0 * k));
        assert!(close(later, lone), "{later} vs {lone}");
        assert_eq!(c.cuts(), 0, "entering is not a cut");
    }

    #[test]
    fn a_joiner_whose_entry_never_comes_enters_at_the_deadline() {
        let (mut c, t0) = controller(10.0);
        c.join(t0, t0 + secs(7.0));
        c.set_sharers(t0 + secs(1.0), 2.0);
        assert_eq!(c.gate(t0 + secs(7.0)), None);
        assert!(close(c.rate(t0 + secs(7.0)), plain().decrease_factor * 5.0));
    }

    #[test]
    fn a_look_that_finds_replicas_started_with_us_enters_on_the_plateau_of_the_fair_share() {
        let (mut c, t0) = controller(10.0);
        c.set_server_burst(10.0);
        c.look(t0, t0 + secs(4.0));
        assert!(c.is_joining());
        assert_eq!(
            c.gate(t0 + ms(200)),
            Some(t0 + secs(4.0)),
            "no call while looking"
        );
        let at = t0 + ms(300);
        c.enter(at, 3.0);
        assert_eq!(c.gate(at), None);
        // The bucket is full and each of the three steps to its third: on the plateau, not cut.
        assert!(close(c.rate(at), 10.0 / 3.0), "{}", c.rate(at));
        assert_eq!(c.cuts(), 0);
        // Its first window starts from the full bucket (not joined): a 429 after 2 s of calls
        // at 10/3 while the others took the rest sizes the share from `burst + ceiling × T`.
        accept_at(&mut c, at, 10.0 / 3.0, 7);
        throttle(&mut c, at + secs(2.1));
        // (A joiner's window starts empty: 21 tokens, our 8 of them above our rate, so it
        // would be cut to `β ×` its rate, 2.33.)
        let cut = c.rate(at + secs(2.1));
        let beta = plain().decrease_factor;
        assert!(cut < beta * 10.0 / 3.0 - 0.2, "{cut}");
    }

    #[test]
    fn a_look_that_finds_no_one_goes_at_the_ceiling_with_its_burst() {
        let (mut c, t0) = controller(10.0);
        c.set_server_burst(10.0);
        c.look(t0, t0 + secs(4.0));
        assert_eq!(c.credit(t0 + ms(500)), 0.0, "nothing goes while looking");
        let at = t0 + secs(1.5);
        c.alone(at);
        assert!(!c.is_joining());
        assert_eq!(c.gate(at), None);
        assert_eq!(c.rate(at), 10.0);
        // The bucket the look left full is a lone worker's credit once it has been at the
        // ceiling for `burst / ceiling` from the first call that may go, not from its start.
        assert_eq!(c.credit(at + ms(900)), 0.0);
        assert!(
            c.credit(at + ms(1_100)) >= 8.0,
            "{}",
            c.credit(at + ms(1_100))
        );
        // `alone` on a joiner (siblings busy) changes nothing: it waits for its entry.
        let (mut j, t0) = controller(10.0);
        j.join(t0, t0 + secs(7.0));
        j.alone(t0 + secs(1.0));
        assert!(j.is_joining());
    }

    #[test]
    fn a_look_whose_read_never_comes_goes_at_the_ceiling_at_its_deadline() {
        let (mut c, t0) = controller(10.0);
        c.look(t0, t0 + secs(4.0));
        assert_eq!(c.gate(t0 + secs(4.0)), None);
        assert_eq!(c.rate(t0 + secs(4.0)), 10.0);
        assert!(!c.is_joining());
    }

    #[test]
    fn joining_after_the_first_call_changes_nothing() {
        let (mut c, t0) = controller(10.0);
        c.on_send(t0);
        c.join(t0, t0 + secs(7.0));
        c.look(t0, t0 + secs(4.0));
        assert!(!c.is_joining());
        assert_eq!(c.gate(t0), None);
        assert_eq!(c.rate(t0), 10.0);
    }

    #[test]
    fn making_room_steps_down_to_the_fair_share_never_up() {
        let (mut c, t0) = controller(10.0);
        accept_at(&mut c, t0, 10.0, 20);
        let at = t0 + secs(3.0);
        c.make_room(at, 2.0);
        assert!(close(c.rate(at), 5.0), "{}", c.rate(at));
        assert_eq!(c.cuts(), 0);
        // Below the fair share it stays where it is.
        let (mut low, at, _) = cut_to_a_third(Instant::now(), 1.0);
        let before = low.rate(at);
        low.make_room(at, 2.0);
        assert!(close(low.rate(at), before));
    }
}
