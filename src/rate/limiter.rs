//! [`AdaptiveLimiter`]: the rate limiter of one Connect operation, a governor bucket at the
//! configured ceiling plus a pacer driven by the [`RateController`].
//!
//! # Why a pacer in front of a fixed governor bucket (and not a rebuilt bucket)
//!
//! governor quotas are immutable, and the controller's rate changes continuously while it
//! recovers after a cut. Rebuilding the governor limiter on every meaningful change would either
//! hand out a fresh burst (a full bucket right after a cut, exactly when we must be smooth) or,
//! started empty, insert a gap of up to one period at every rebuild (2 s at 0.5 calls/s). So:
//!
//! - The **governor** limiter is built once with the configured ceiling and burst, on a
//!   tokio-time clock ([`TokioClock`]). It is the hard guarantee that whatever the controller
//!   does, we never exceed the operator's configuration.
//! - The **pacer** is a small token bucket refilled at the controller's rate (read at every
//!   check, so a cut or a recovery step takes effect on the very next call) and holding about
//!   one token: calls go `1 / rate` apart, each delayed by a random jitter of up to
//!   `pacer_jitter` periods that never accumulates.
//! - **Burst credit.** Connect's bucket starts full and holds `burst` tokens; a lone worker may
//!   spend them (the bound for a lone worker includes them). It may not spend all: a
//!   bucket kept empty throttles every call that arrives a little early. So the pacer also lets
//!   a call go at once whenever [`RateController::credit`] is at least one token: the level of
//!   Connect's bucket as modelled for a lone caller, above a reserve of one token plus what
//!   the ceiling sends within the spread of recent round trips (calls arrive bunched by at most
//!   that; [`AdaptiveLimiter::feedback_trip`] measures each call's own), once the rate has been
//!   at the ceiling without a 429 for `burst / ceiling` plus a round trip (two callers at the ceiling drain a full bucket in
//!   `burst / ceiling`, so replicas that start together have heard their 429 by then and never
//!   spend the bucket into their storm). One credit call is in flight at a time: one that finds
//!   the bucket drained after all (a neighbour) costs one 429, which empties the model. A lone
//!   worker spends the credit once (early in its run) and then whenever it was idle: a trickle
//!   of jobs goes out without waiting for the pacer's slot. With `sharers` replicas of ours on
//!   the quota ([`AdaptiveLimiter::set_sharers`]) each call of ours stands for one of each
//!   sibling's in the model, so each replica spends its `1 / sharers` of the credit and the
//!   fleet no more than a lone worker.
//!
//! # Protocol for callers
//!
//! `acquire().await` before each call, then exactly one `feedback(..)` with the call's outcome
//! (`Neutral` if the token was acquired but no call was made). Waiters are served in FIFO order
//! (a fair tokio mutex); the waiter at the head sleeps until its slot and re-reads the rate at
//! least every `pacer_recheck` so a recovery is noticed. Nothing is reserved before `acquire`
//! returns, so dropping its future (cancellation) gives the turn to the next waiter and leaks
//! nothing.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use super::RateFeedback;
use super::clock::{TokioClock, TokioInstant};
use super::controller::{ControllerSettings, RateController, RoundTrip, sanitize_rate};

type Governor = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

struct Pacing {
    controller: RateController,
    /// Paced tokens, refilled at the allowed rate up to [`Pacing::capacity`].
    level: f64,
    /// When `level` was brought up to date.
    at: Instant,
    /// Level the next paced call waits for: 1 plus its jitter.
    threshold: f64,
    /// Calls sent and answers heard, and the send count of the last call that went on burst
    /// credit: the next credit call waits until that one is answered (answers come about in
    /// send order), so a credit that finds Connect's bucket drained after all (someone else
    /// emptied it) costs one 429, which empties the model, not the whole credit at once.
    sends: u64,
    answers: u64,
    credit_call: Option<u64>,
    rng: u64,
}

impl Pacing {
    /// One token, plus room for the largest jitter and a late wake-up, so neither shifts the
    /// schedule; no more, so an idle pacer gives no burst of its own.
    fn capacity(&self) -> f64 {
        let s = self.controller.settings();
        1.0 + s.pacer_jitter.max(0.0) + s.pacer_catch_up.max(0.0)
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        let rate = sanitize_rate(self.controller.rate(now));
        self.level = (self.level + dt * rate).min(self.capacity());
        self.at = now;
    }

    /// When the next call may go: now if a paced token or a burst credit is there, else when
    /// the paced level reaches the threshold at the current rate.
    fn release_at(&mut self, now: Instant) -> Instant {
        if let Some(until) = self.controller.gate(now) {
            // A joiner waits for its entry; nothing accumulates meanwhile.
            self.level = self.level.min(self.capacity());
            self.at = now;
            return until;
        }
        self.refill(now);
        if self.level >= self.threshold || self.may_spend_credit(now) {
            return now;
        }
        let rate = sanitize_rate(self.controller.rate(now));
        let wait = Duration::from_secs_f64(((self.threshold - self.level) / rate).min(1e6));
        now.checked_add(wait).unwrap_or(now)
    }

    fn may_spend_credit(&self, now: Instant) -> bool {
        let answered = self.credit_call.is_none_or(|n| self.answers >= n);
        answered && self.controller.credit(now) >= 1.0
    }

    /// A call goes at `now` (after [`Pacing::release_at`] said it may).
    fn commit(&mut self, now: Instant) {
        self.refill(now);
        self.sends = self.sends.saturating_add(1);
        if self.level >= self.threshold {
            self.level -= 1.0;
        } else {
            // On burst credit, which `on_send` takes from the bucket model.
            self.credit_call = Some(self.sends);
        }
        self.controller.on_send(now);
        self.threshold = 1.0 + self.controller.settings().pacer_jitter * next_unit(&mut self.rng);
    }
}

/// A uniform number in [0, 1) from a splitmix64 state.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

thread_local! {
    /// Seeds of the limiters created on this thread: distinct per limiter, and reproducible in
    /// tests (each test runs on its own thread or process).
    static SEEDS: std::cell::Cell<u64> = const { std::cell::Cell::new(0x5EED) };
}

/// Restarts this thread's jitter seeds from `seed`, so a scenario's run with one seed does not
/// depend on the runs before it on the thread.
#[cfg(test)]
pub(crate) fn reseed_jitter(seed: u64) {
    SEEDS.with(|c| c.set(0x5EED ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
}

/// A jitter seed: distinct per limiter, and per process outside tests (replicas must not jitter
/// in step).
fn next_seed() -> u64 {
    let n = SEEDS.with(|c| {
        let n = c.get();
        c.set(n.wrapping_add(0x9E37_79B9));
        n
    });
    #[cfg(not(test))]
    let n = n ^ u64::from(std::process::id()).rotate_left(32);
    n
}

/// Adaptive rate limiter of one Connect operation. `Send + Sync`; share it with an `Arc`.
pub struct AdaptiveLimiter {
    ceiling: f64,
    governor: Governor,
    pacing: Mutex<Pacing>,
    /// FIFO order among waiters; held while the head waiter sleeps until its slot.
    turn: tokio::sync::Mutex<()>,
    /// Wakes the head waiter when a join or a look ends, so its first call does not wait for
    /// the next recheck.
    entered: tokio::sync::Notify,
}

impl AdaptiveLimiter {
    /// A limiter allowing at most `ceiling_per_second` calls/s (may be fractional) and a burst of
    /// `burst` (0 is treated as 1), starting at the ceiling.
    pub fn new(ceiling_per_second: f64, burst: u32) -> Self {
        Self::with_settings(ControllerSettings::default(), ceiling_per_second, burst)
    }

    /// Like [`AdaptiveLimiter::new`] with explicit controller tuning.
    pub fn with_settings(
        settings: ControllerSettings,
        ceiling_per_second: f64,
        burst: u32,
    ) -> Self {
        let ceiling = sanitize_rate(ceiling_per_second);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let now = Instant::now();
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / ceiling))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        AdaptiveLimiter {
            ceiling,
            governor: RateLimiter::direct_with_clock(quota, TokioClock),
            pacing: Mutex::new(Pacing {
                controller: {
                    let mut c = RateController::new(settings, ceiling, now);
                    c.set_server_burst(f64::from(burst.get()));
                    c
                },
                // The first call goes at once, without jitter.
                level: 1.0,
                at: now,
                threshold: 1.0,
                sends: 0,
                answers: 0,
                credit_call: None,
                rng: next_seed(),
            }),
            turn: tokio::sync::Mutex::new(()),
            entered: tokio::sync::Notify::new(),
        }
    }

    /// Waits until a call may be made; returns how long it waited. Cancel-safe.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        let _turn = self.turn.lock().await;
        let recheck = self.with_pacing(|p| p.controller.settings().pacer_recheck);
        loop {
            let now = Instant::now();
            // Registered before the slot is computed, so an entry in between still wakes us.
            let entered = self.entered.notified();
            let slot = self.with_pacing(|p| p.release_at(now));
            if slot > now {
                tokio::select! {
                    _ = tokio::time::sleep_until(slot.min(now + recheck)) => {}
                    _ = entered => {}
                }
                continue;
            }
            match self.governor.check() {
                Ok(()) => {
                    self.with_pacing(|p| p.commit(now));
                    return now.saturating_duration_since(started);
                }
                Err(not_until) => {
                    // Only rounding can get here: the pacer never exceeds the ceiling.
                    let wait = not_until.wait_time_from(TokioClock.now());
                    tokio::time::sleep(wait.clamp(Duration::from_millis(1), recheck)).await;
                }
            }
        }
    }

    /// Reports the outcome of one call made after [`AdaptiveLimiter::acquire`].
    pub fn feedback(&self, feedback: RateFeedback) {
        let now = Instant::now();
        self.with_pacing(|p| {
            p.answers = p.answers.saturating_add(1);
            p.controller.on_feedback(now, feedback);
        });
    }

    /// [`AdaptiveLimiter::feedback`] with how to measure the call's round trip: `SentAt` the
    /// instant its `acquire` returned (exact even when answers come back out of order), or
    /// `Unmeasured` for a call not made or whose answer is unknown.
    pub fn feedback_trip(&self, feedback: RateFeedback, trip: RoundTrip) {
        let now = Instant::now();
        self.with_pacing(|p| {
            p.answers = p.answers.saturating_add(1);
            p.controller.on_feedback_trip(now, feedback, trip);
        });
    }

    /// How many replicas of ours share this operation's quota: an estimate, at least 1 (values
    /// below 1 or not finite count as 1), noisy or stale is fine; 1 until set. The pipeline
    /// computes it from the jobs queue: `ApproximateNumberOfMessagesNotVisible` (every
    /// replica's jobs in flight) over this replica's own jobs in flight (a foreign caller holds
    /// none of our messages). Above its fair share (`ceiling / sharers`) the controller probes
    /// `sharers` times slower, so a fleet probes about as often as one lone worker, and a lone
    /// worker (1) takes back a departed neighbour's share at full speed.
    pub fn set_sharers(&self, sharers: f64) {
        let now = Instant::now();
        self.with_pacing(|p| p.controller.set_sharers(now, sharers));
    }

    /// Siblings of ours already work this quota (the jobs queue showed their messages before
    /// our first call): no call until [`AdaptiveLimiter::enter`] or `until`, then at the fair
    /// share ([`RateController::join`]).
    pub fn join(&self, until: Instant) {
        let now = Instant::now();
        self.with_pacing(|p| p.controller.join(now, until));
    }

    /// Replicas of ours may have started with this one: no call until the read after the first
    /// receive says whether they did ([`AdaptiveLimiter::enter`]) or not
    /// ([`AdaptiveLimiter::alone`]), or until `until` ([`RateController::look`]).
    pub fn look(&self, until: Instant) {
        let now = Instant::now();
        self.with_pacing(|p| p.controller.look(now, until));
    }

    /// No replica started with this one: the look ends at the ceiling ([`RateController::alone`]).
    pub fn alone(&self) {
        let now = Instant::now();
        self.with_pacing(|p| p.controller.alone(now));
        self.entered.notify_waiters();
    }

    /// Whether calls wait for the entry of a join (or the end of a look).
    pub fn is_joining(&self) -> bool {
        self.with_pacing(|p| p.controller.is_joining())
    }

    /// The estimate read at an aligned poll: a joiner enters at its fair share, a look ends
    /// there (started together) ([`RateController::enter`]); otherwise as
    /// [`AdaptiveLimiter::set_sharers`].
    pub fn enter(&self, sharers: f64) {
        let now = Instant::now();
        self.with_pacing(|p| p.controller.enter(now, sharers));
        self.entered.notify_waiters();
    }

    /// A sibling joined: at most the fair share from now on ([`RateController::make_room`]).
    pub fn make_room(&self, sharers: f64) {
        let now = Instant::now();
        self.with_pacing(|p| p.controller.make_room(now, sharers));
    }

    /// The estimate of replicas sharing the quota in use (a metrics gauge).
    pub fn sharers(&self) -> f64 {
        self.with_pacing(|p| p.controller.sharers())
    }

    /// Allowed calls/s now (a metrics gauge).
    pub fn allowed_rate(&self) -> f64 {
        let now = Instant::now();
        self.with_pacing(|p| p.controller.rate(now))
    }

    /// The configured ceiling, calls/s.
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// How many times the rate was cut (a metrics counter).
    pub fn cuts(&self) -> u64 {
        self.with_pacing(|p| p.controller.cuts())
    }

    fn with_pacing<T>(&self, f: impl FnOnce(&mut Pacing) -> T) -> T {
        // A panic while holding the lock cannot leave Pacing inconsistent in a harmful way
        // (plain numbers), so a poisoned lock is used as is.
        let mut guard = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

impl std::fmt::Debug for AdaptiveLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveLimiter")
            .field("ceiling", &self.ceiling)
            .field("allowed_rate", &self.allowed_rate())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn is_send_and_sync() {
        assert_send_sync::<AdaptiveLimiter>();
    }

    #[tokio::test(start_paused = true)]
    async fn paces_at_the_ceiling_without_a_burst() {
        // Burst 1: nothing above the one-token reserve, so no burst credit.
        let limiter = AdaptiveLimiter::new(10.0, 1);
        let start = Instant::now();
        let mut sends = Vec::new();
        for _ in 0..21 {
            limiter.acquire().await;
            sends.push(Instant::now() - start);
        }
        // Call k goes at its slot k × 100 ms plus a jitter of at most 20 ms that never
        // accumulates: no burst, no drift.
        assert_eq!(sends[0], Duration::ZERO);
        for (k, sent) in sends.iter().enumerate() {
            let slot = Duration::from_millis(100) * k as u32;
            assert!(
                *sent >= slot && *sent <= slot + Duration::from_millis(20),
                "{k}: {sent:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_ceiling() {
        let limiter = AdaptiveLimiter::new(0.5, 1);
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        let waited = limiter.acquire().await;
        assert!(waited >= Duration::from_millis(1600) && waited <= Duration::from_millis(2400));
        let elapsed = Instant::now() - start;
        assert!(elapsed >= Duration::from_secs(4) && elapsed <= Duration::from_millis(4400));
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_slows_the_next_calls_and_neutral_does_not() {
        let limiter = AdaptiveLimiter::new(10.0, 10);
        for _ in 0..20 {
            limiter.acquire().await;
            limiter.feedback(RateFeedback::Accepted);
        }
        for _ in 0..20 {
            limiter.acquire().await;
            limiter.feedback(RateFeedback::Neutral);
        }
        assert_eq!(limiter.allowed_rate(), 10.0);
        limiter.feedback(RateFeedback::Throttled);
        // The first 429: cut to β (0.7) × our share of what the bucket gave out, below 7.
        let cut = limiter.allowed_rate();
        assert!(cut < 7.0 && cut > 4.0, "{cut}");
        limiter.acquire().await;
        let waited = limiter.acquire().await;
        assert!(waited > Duration::from_millis(100), "{waited:?}");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(limiter.allowed_rate(), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_worker_spends_the_burst_after_a_quiet_start() {
        // 10/s burst 10: quiet for 10 / 10 = 1 s (plus a round trip, none here: answers come
        // at once), then the bucket above one token goes out at once.
        let limiter = AdaptiveLimiter::new(10.0, 10);
        let start = Instant::now();
        let mut sends = Vec::new();
        while Instant::now() - start < Duration::from_secs(6) {
            limiter.acquire().await;
            limiter.feedback(RateFeedback::Accepted);
            sends.push(Instant::now() - start);
        }
        let in_window = |a: u64, b: u64| {
            sends
                .iter()
                .filter(|t| **t >= Duration::from_millis(a) && **t < Duration::from_millis(b))
                .count()
        };
        assert_eq!(in_window(0, 950), 10);
        let extra = in_window(950, 3_000) - 20;
        assert!((7..=9).contains(&extra), "{extra}: {sends:?}");
        assert_eq!(in_window(3_000, 6_000), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn sharers_spend_their_part_of_the_burst() {
        // Idle at the ceiling (10/s burst 10), then a cluster of jobs: a lone worker sends at
        // once what is above the one-token reserve, 9 calls (one paced, 8 on credit); one of
        // three sharers sends its third of them, 3 (each call stands for one of each
        // sibling's). Estimates that make no sense count as one sharer.
        async fn at_once(sharers: f64) -> usize {
            let limiter = AdaptiveLimiter::new(10.0, 10);
            limiter.set_sharers(sharers);
            tokio::time::sleep(Duration::from_secs(3)).await;
            let start = Instant::now();
            let mut n = 0;
            for _ in 0..12 {
                limiter.acquire().await;
                limiter.feedback(RateFeedback::Accepted);
                if Instant::now() - start < Duration::from_millis(50) {
                    n += 1;
                }
            }
            n
        }
        assert_eq!(at_once(1.0).await, 9);
        assert_eq!(at_once(f64::NAN).await, 9);
        assert_eq!(at_once(3.0).await, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn no_credit_below_the_ceiling_and_after_a_429() {
        let limiter = AdaptiveLimiter::new(10.0, 10);
        limiter.acquire().await;
        limiter.feedback(RateFeedback::Throttled);
        // Cut to 7/s and climbing back: paced, no burst.
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
            limiter.feedback(RateFeedback::Accepted);
        }
        assert!(Instant::now() - start > Duration::from_millis(1_000));
        // Idle at the ceiling for a while: the bucket refilled, ten calls go in well under the
        // 0.9 s they would take paced.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
            limiter.feedback(RateFeedback::Accepted);
        }
        assert!(Instant::now() - start < Duration::from_millis(600));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiters_do_not_stall_others() {
        let limiter = Arc::new(AdaptiveLimiter::new(0.1, 1));
        let start = Instant::now();
        limiter.acquire().await;
        // Ten waiters give up long before their slot (t = 10 s).
        for _ in 0..10 {
            let l = Arc::clone(&limiter);
            let r =
                tokio::time::timeout(Duration::from_millis(300), async move { l.acquire().await })
                    .await;
            assert!(r.is_err());
        }
        // Nothing was reserved by the cancelled ones: the next call still goes at its slot,
        // t = 10 s (plus at most 2 s of jitter), not 10 slots later.
        limiter.acquire().await;
        let elapsed = Instant::now() - start;
        assert!(elapsed >= Duration::from_secs(10) && elapsed <= Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_share_the_rate() {
        let limiter = Arc::new(AdaptiveLimiter::new(5.0, 5));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let l = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    l.acquire().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 20 calls at 5/s: paced for the first second (burst / rate), then one call on burst
        // credit, which is never answered here, so no second one: the last call near
        // (19 − 1) × 200 ms.
        let elapsed = Instant::now() - start;
        assert!(
            elapsed >= Duration::from_millis(3_550) && elapsed <= Duration::from_millis(3_700),
            "{elapsed:?}"
        );
    }
}
