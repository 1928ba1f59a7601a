//! [`InstanceCapacity`]: the active-chat capacity of one Connect instance, as a pure machine.
//!
//! `LimitExceededException` from StartChatContact means the instance holds its maximum of
//! concurrent active chats (a quota per instance, default 100). Chats live seconds to hours and
//! vary widely; other callers start chats on the same instance; and the worker never sees a chat
//! end. All it sees is whether each start it sends comes back `Started` or `LimitExceeded`.
//!
//! # Mechanism
//!
//! While the instance has room the machine is **open**: every start goes (the rate limiter
//! alone paces them). The first `LimitExceeded` makes it **limited**: starts are paced by a
//! token bucket whose rate `r` estimates the rate at which capacity frees. In saturation a start
//! succeeds exactly when a chat has ended since the last one, so the successful starts *are* the
//! departures, and `r` is steered by them:
//!
//! - **Equilibrium.** Each `Started` raises `log r` by `a` (`step`); each `LimitExceeded` lowers
//!   it by `a·k`. The drift is zero when `LimitExceeded` is `1/(1+k)` of the answers, whatever
//!   the lifetimes: `k` comes from the refusal budget (`limit_exceeded_share`), not from a fit.
//!   A pace a little above the departure rate is what that share costs; a pace below it would
//!   leave freed capacity idle.
//! - **One piece of evidence per refusal.** A `LimitExceeded` for a call that was already in
//!   flight when an earlier one came back (answers come back roughly in send order, so the
//!   next `in_flight` answers) says the same thing again: it empties the bucket but does not cut.
//! - **Consecutive refusals back off faster.** The n-th `LimitExceeded` without a `Started`
//!   between cuts `a·k·escalation^(n−1)`, at most halving `r` (`max_cut`): the gap between
//!   probes grows geometrically while the instance stays full (others hold it, or our chats are
//!   long and none has ended yet), so finding the first free slot after a time `T` costs
//!   `O(log T)` refused calls. This is the old gate's probe cooldown, merged into the pacer.
//! - **The run's top is remembered.** A `Started` that ends such a run (two or more refusals)
//!   moves `log r` halfway back to the rate the run began at (a bisection between a rate known
//!   to be too high and one at which a slot was found), instead of climbing from the bottom
//!   by `a` per start.
//! - **Long runs of successes climb faster.** The n-th consecutive `Started` raises `log r` by
//!   `a·escalation^((n − 2k)/k)` once `n > 2k`: in equilibrium a run averages `k`, so a much
//!   longer one means capacity freed (another caller left) and the pace should find it in a few
//!   runs' time, not at `a` per start.
//! - **The first cut.** At the first `LimitExceeded` after an open period `r` starts from our
//!   own start rate just before it (the last `rate_window` starts): that is what filled the
//!   instance, far above the departure rate when chats are long, and the consecutive-refusal
//!   backoff brings it down in a few probes.
//! - **Burst.** Tokens not used (no job to start) accumulate up to `burst`: capacity that freed
//!   during an idle period stays free, so the starts it allows may go at once. A refusal empties
//!   the bucket (the instance is full now). `burst` is the count of our starts the instance held
//!   when it was found full (the starts of the open period before it): more of our chats than
//!   that cannot have ended, which is all the machine can know.
//! - **Back to open.** The machine cannot see chats end, but it can see its pace stop binding:
//!   when the bucket overflows by a whole `burst` (tokens offered and never used, with no
//!   refusal), as many of our chats as it held have had time to end and the caller did not even
//!   need the pace, so the instance is no longer the limit and every start may go again.
//! - **Inconclusive** answers (throttled, 5xx, transport, not sent) say nothing about capacity:
//!   their token is given back.
//!
//! Time enters only through the `now` arguments (no clock reads, no I/O); one machine per
//! Connect instance. Design notes and the scenario family: `docs/capacity-control.md` and
//! `tests/data/capacity-scenarios/`.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Every constant of [`InstanceCapacity`], each with where its value comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacitySettings {
    /// Share of StartChatContact answers that may be `LimitExceeded` while the instance is
    /// full: `k = 1/share − 1`. 0.04, from the budget: ≤ 5 % for fixed lifetimes (the
    /// tighter of its two budgets: the machine cannot tell fixed lifetimes from varied ones),
    /// less one point for the refusals of backoff runs and of calls already in flight.
    pub limit_exceeded_share: f64,
    /// `a`: rise of `log r` per `Started` (a refusal lowers it by `a·k`). 0.004: a refusal
    /// cuts `a·k` ≈ 10 %, the same order as the idle capacity it costs while the pace climbs
    /// back (`a·k²/4` slots on average with fixed lifetimes, 2.3 % of a 20-chat instance);
    /// a smaller `a` follows a change in the departure rate too slowly.
    pub step: f64,
    /// Growth of the cut per consecutive refusal, and of the rise per `k` successes beyond
    /// `2k` in a row. 2: doubling, the usual exponential backoff; finding capacity after a time
    /// `T` costs `log₂(T·r)` refusals and comes at most `T` late.
    pub escalation: f64,
    /// Deepest single cut of `log r`: ln 2, halve the rate (the gap between probes at most
    /// doubles per refusal, as in the old gate's cooldown).
    pub max_cut: f64,
    /// Starts over which the open period's start rate is measured for the first cut. 20: the
    /// smallest instance of the scenario family holds 20 chats; 20 intervals give the rate within
    /// about ±25 % (Poisson) and remember only the last fill, not hours of trickle.
    pub rate_window: usize,
    /// Start rate assumed when the very first answer is a refusal (nothing measured): 1/s, the
    /// probe cadence of the old gate; the backoff halves it per refusal.
    pub unknown_rate: f64,
    /// Lowest pace: one start per 10 minutes, a sixth of the longest chats' hour (capacity that
    /// frees while everything is held by others is found at most that late; the cost is six
    /// refused calls an hour).
    pub min_rate: f64,
    /// Highest pace: 1,000/s, far above any StartChatContact quota (keeps `r` finite; in
    /// practice the pace stops binding and the machine opens long before).
    pub max_rate: f64,
    /// Smallest bucket: one start.
    pub min_burst: f64,
}

impl Default for CapacitySettings {
    fn default() -> Self {
        CapacitySettings {
            limit_exceeded_share: 0.04,
            step: 0.004,
            escalation: 2.0,
            max_cut: std::f64::consts::LN_2,
            rate_window: 20,
            unknown_rate: 1.0,
            min_rate: 1.0 / 600.0,
            max_rate: 1_000.0,
            min_burst: 1.0,
        }
    }
}

impl CapacitySettings {
    /// `k`: the cut of a refusal in units of the rise of a success.
    fn k(&self) -> f64 {
        let share = self.limit_exceeded_share.clamp(1e-4, 0.5);
        1.0 / share - 1.0
    }
}

/// What a StartChatContact said about capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityOutcome {
    /// The chat started (capacity was free).
    Started,
    /// `LimitExceededException`: the instance is full.
    LimitExceeded,
    /// Anything else (throttled, 5xx, transport error, not sent): says nothing about capacity.
    Inconclusive,
}

/// May a start go now?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityAdmit {
    /// Send one StartChatContact, then [`InstanceCapacity::report`] its outcome exactly once.
    Go,
    /// Do not ask again before this instant (unless another report changes things).
    NotBefore(Instant),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// No refusal since `since`: every start goes.
    Open { since: Instant },
    /// Starts paced by the bucket.
    Limited,
}

/// One instance's capacity machine. See the module documentation.
#[derive(Clone, Debug)]
pub struct InstanceCapacity {
    settings: CapacitySettings,
    phase: Phase,
    /// `log r`, once a refusal was seen.
    log_rate: Option<f64>,
    /// Bucket level (starts), at `refilled`.
    level: f64,
    refilled: Instant,
    /// Bucket size.
    burst: f64,
    /// Tokens that overflowed the bucket since the last refusal.
    unused: f64,
    /// Starts admitted and not yet reported.
    in_flight: u32,
    /// Answers still to come for calls that were in flight at the last counted refusal.
    stale: u32,
    /// Consecutive counted refusals, and `log r` before the first of them.
    fail_run: u32,
    run_top: f64,
    /// Consecutive `Started` since the last counted refusal.
    success_run: u32,
    /// Times of the last starts of the open period (for the first cut) and their count.
    open_starts: VecDeque<Instant>,
    open_count: u32,
}

impl InstanceCapacity {
    /// An open machine.
    pub fn new(settings: CapacitySettings, now: Instant) -> Self {
        InstanceCapacity {
            burst: settings.min_burst.max(1.0),
            settings,
            phase: Phase::Open { since: now },
            log_rate: None,
            level: 0.0,
            refilled: now,
            unused: 0.0,
            in_flight: 0,
            stale: 0,
            fail_run: 0,
            run_top: 0.0,
            success_run: 0,
            open_starts: VecDeque::new(),
            open_count: 0,
        }
    }

    /// Ask to start one chat now. `Go`: send one StartChatContact and later call
    /// [`InstanceCapacity::report`] exactly once with its outcome. `NotBefore(t)`: do not ask
    /// again before `t`.
    pub fn admit(&mut self, now: Instant) -> CapacityAdmit {
        if self.phase == Phase::Limited {
            self.refill(now);
        }
        if self.phase == Phase::Limited {
            if self.level < 1.0 {
                let wait = (1.0 - self.level) / self.rate();
                return CapacityAdmit::NotBefore(now + Duration::from_secs_f64(wait.min(1e6)));
            }
            self.level -= 1.0;
        }
        self.in_flight = self.in_flight.saturating_add(1);
        CapacityAdmit::Go
    }

    /// The outcome of a start admitted with `Go`.
    pub fn report(&mut self, outcome: CapacityOutcome, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let stale = self.stale > 0;
        self.stale = self.stale.saturating_sub(1);
        if self.phase == Phase::Limited {
            self.refill(now);
        }
        match (self.phase, outcome) {
            (Phase::Open { .. }, CapacityOutcome::Started) => {
                self.open_count = self.open_count.saturating_add(1);
                self.open_starts.push_back(now);
                while self.open_starts.len() > self.settings.rate_window.max(1) {
                    self.open_starts.pop_front();
                }
            }
            (Phase::Open { since }, CapacityOutcome::LimitExceeded) => self.limit_found(since, now),
            (Phase::Open { .. }, CapacityOutcome::Inconclusive) => {}
            (Phase::Limited, CapacityOutcome::Started) => self.started(stale),
            (Phase::Limited, CapacityOutcome::LimitExceeded) => {
                self.found_full();
                if !stale {
                    self.refused();
                }
            }
            (Phase::Limited, CapacityOutcome::Inconclusive) => {
                self.level = (self.level + 1.0).min(self.burst);
            }
        }
    }

    /// Whether the instance has been found full and starts are being paced.
    pub fn is_limited(&self) -> bool {
        self.phase == Phase::Limited
    }

    /// Starts per second the machine expects to allow now while limited (`None` when open, or
    /// when the pace no longer binds and the next admit will open it).
    pub fn start_rate(&self, now: Instant) -> Option<f64> {
        if self.phase != Phase::Limited || self.would_open(now) {
            return None;
        }
        Some(self.rate())
    }

    /// Starts the bucket would allow at once at `now` (0 when open: nothing is paced).
    pub fn ready_starts(&self, now: Instant) -> f64 {
        if self.phase != Phase::Limited {
            return 0.0;
        }
        let (level, _) = self.level_at(now);
        level.max(0.0)
    }

    /// For the gauge: 0 open, 1 limited.
    pub fn state_code(&self) -> i64 {
        match self.phase {
            Phase::Open { .. } => 0,
            Phase::Limited => 1,
        }
    }

    fn rate(&self) -> f64 {
        self.log_rate
            .map(f64::exp)
            .unwrap_or(self.settings.unknown_rate)
            .clamp(self.settings.min_rate, self.settings.max_rate)
    }

    fn clamp_log(&self, log: f64) -> f64 {
        log.clamp(self.settings.min_rate.ln(), self.settings.max_rate.ln())
    }

    /// The bucket's level at `now` and the tokens that overflowed since `refilled`.
    fn level_at(&self, now: Instant) -> (f64, f64) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        let level = self.level + dt * self.rate();
        if level > self.burst {
            (self.burst, level - self.burst)
        } else {
            (level, 0.0)
        }
    }

    fn would_open(&self, now: Instant) -> bool {
        let (_, overflow) = self.level_at(now);
        self.unused + overflow >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        if self.would_open(now) {
            self.open(now);
            return;
        }
        let (level, overflow) = self.level_at(now);
        self.level = level;
        self.unused += overflow;
        self.refilled = now;
    }

    fn open(&mut self, now: Instant) {
        self.phase = Phase::Open { since: now };
        self.open_starts.clear();
        self.open_count = 0;
        self.fail_run = 0;
        self.success_run = 0;
        self.unused = 0.0;
        self.level = 0.0;
        self.refilled = now;
    }

    /// The first refusal after an open period.
    fn limit_found(&mut self, since: Instant, now: Instant) {
        let measured = self.open_starts.front().and_then(|&first| {
            let span = now.saturating_duration_since(first).as_secs_f64();
            (span > 0.0).then(|| self.open_starts.len() as f64 / span)
        });
        let start_rate = match (measured, self.log_rate) {
            (Some(r), _) => r,
            (None, Some(log)) => log.exp(),
            (None, None) => self.settings.unknown_rate,
        };
        let _ = since;
        self.burst = self
            .burst
            .max(self.open_count as f64)
            .max(self.settings.min_burst);
        self.phase = Phase::Limited;
        self.log_rate = Some(self.clamp_log(start_rate.max(f64::MIN_POSITIVE).ln()));
        self.fail_run = 0;
        self.success_run = 0;
        self.level = 0.0;
        self.refilled = now;
        self.refused();
    }

    /// A refusal says the instance was full when that call reached it: saved-up tokens and the
    /// time since the last start at the pace are both void; the pace starts over from now.
    fn found_full(&mut self) {
        self.level = self.level.min(0.0);
    }

    /// A counted refusal while limited.
    fn refused(&mut self) {
        let log = self.log_rate.unwrap_or(self.settings.unknown_rate.ln());
        if self.fail_run == 0 {
            self.run_top = log;
        }
        let s = &self.settings;
        let cut = (s.step * s.k() * s.escalation.powi(self.fail_run.min(64) as i32)).min(s.max_cut);
        self.log_rate = Some(self.clamp_log(log - cut));
        self.fail_run = self.fail_run.saturating_add(1);
        self.success_run = 0;
        self.unused = 0.0;
        self.found_full();
        self.stale = self.in_flight;
        if self.fail_run == 1 {
            // The first refusal after starts that fitted: the pace is about right and this call
            // came a little before a chat ended. Its token goes back, so one start goes as soon
            // as the answer is in (it reaches the instance a round trip after the refused one);
            // its answer is the same evidence as this one.
            self.level = 1.0;
            self.stale = self.stale.saturating_add(1);
        }
    }

    /// A `Started` while limited.
    fn started(&mut self, stale: bool) {
        let s = &self.settings;
        let k = s.k();
        let mut log = self.log_rate.unwrap_or(s.unknown_rate.ln());
        let _ = stale;
        if self.fail_run >= 2 {
            log = log.max((log + self.run_top) / 2.0);
        }
        self.fail_run = 0;
        self.success_run = self.success_run.saturating_add(1);
        let beyond = (f64::from(self.success_run) - 2.0 * k).max(0.0) / k;
        let rise = (s.step * s.escalation.powf(beyond)).min(s.max_cut);
        self.log_rate = Some(self.clamp_log(log + rise));
    }
}
