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
//! - The **pacer** spaces calls `1 / rate` apart, reading the controller's rate at each call, so
//!   a cut or a recovery step takes effect on the very next call. It never bursts: Connect's
//!   bucket (capacity = burst) is shared, and keeping it full is what absorbs network jitter and
//!   the neighbours' bursts; a worker that spends it runs with an empty server bucket where every
//!   early-arriving call is throttled. Because of this the configured burst only bounds the
//!   governor; in practice the pacer's spacing never lets a burst form.
//!
//! # Protocol for callers
//!
//! `acquire().await` before each call, then exactly one `feedback(..)` with the call's outcome
//! (`Neutral` if the token was acquired but no call was made). Waiters are served in FIFO order
//! (a fair tokio mutex); the waiter at the head sleeps until its slot and re-reads the rate at
//! least every [`RECHECK`] so a recovery is noticed. Nothing is reserved before `acquire`
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
use super::controller::{ControllerSettings, RateController, sanitize_rate};

/// Longest single sleep of the waiter at the head, so a rate that recovers while it waits
/// shortens the wait.
const RECHECK: Duration = Duration::from_millis(200);

/// How late (as a fraction of the period) a call may be and still keep the schedule: a waiter
/// woken a little late does not push every later call back (no drift below the rate), but a
/// long idle time gives no credit (no burst).
const CATCH_UP: f64 = 0.1;

type Governor = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

struct Pacing {
    controller: RateController,
    /// Scheduled time of the last call, before jitter (may be slightly before it really went
    /// out).
    last_slot: Option<Instant>,
    /// Delay of the next call after its slot, as a fraction of the period.
    jitter: f64,
    rng: u64,
}

impl Pacing {
    fn period(&self, now: Instant) -> Duration {
        let rate = self.controller.rate(now);
        Duration::from_secs_f64(1.0 / sanitize_rate(rate))
    }

    /// The next call's slot (before jitter).
    fn next_slot(&self, now: Instant) -> Instant {
        match self.last_slot {
            None => now,
            Some(last) => last.checked_add(self.period(now)).unwrap_or(now),
        }
    }

    /// When the next call may go: its slot plus a random delay of up to [`JITTER`] periods.
    /// The delay never accumulates (the next slot counts from this slot, not from the
    /// release), so the average rate is exact; it only breaks phase locking: a replica whose
    /// calls always land just after a token refills would never see a 429 and never yield its
    /// share to replicas that always land just before.
    fn release_at(&self, now: Instant) -> Instant {
        let slot = self.next_slot(now);
        if self.last_slot.is_none() {
            return slot;
        }
        slot.checked_add(self.period(now).mul_f64(self.jitter))
            .unwrap_or(slot)
    }

    fn commit(&mut self, now: Instant) {
        let slot = self.next_slot(now);
        let earliest = now
            .checked_sub(self.period(now).mul_f64(CATCH_UP + JITTER))
            .unwrap_or(now);
        self.last_slot = Some(slot.max(earliest).min(now));
        self.controller.on_send(now);
        self.jitter = JITTER * next_unit(&mut self.rng);
    }
}

/// Largest random delay of a call after its slot, as a fraction of the period.
const JITTER: f64 = 0.2;

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
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / ceiling))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        AdaptiveLimiter {
            ceiling,
            governor: RateLimiter::direct_with_clock(quota, TokioClock),
            pacing: Mutex::new(Pacing {
                controller: {
                    let mut c = RateController::new(settings, ceiling, Instant::now());
                    c.set_server_burst(f64::from(burst.get()));
                    c
                },
                last_slot: None,
                jitter: 0.0,
                rng: next_seed(),
            }),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Waits until a call may be made; returns how long it waited. Cancel-safe.
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        let _turn = self.turn.lock().await;
        loop {
            let now = Instant::now();
            let slot = self.with_pacing(|p| p.release_at(now));
            if slot > now {
                tokio::time::sleep_until(slot.min(now + RECHECK)).await;
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
                    tokio::time::sleep(wait.clamp(Duration::from_millis(1), RECHECK)).await;
                }
            }
        }
    }

    /// Reports the outcome of one call made after [`AdaptiveLimiter::acquire`].
    pub fn feedback(&self, feedback: RateFeedback) {
        let now = Instant::now();
        self.with_pacing(|p| p.controller.on_feedback(now, feedback));
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
        let limiter = AdaptiveLimiter::new(10.0, 10);
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
        // A lone 429 after a run of successes: the default cut, 10 × 0.7.
        assert!((limiter.allowed_rate() - 7.0).abs() < 1e-9);
        limiter.acquire().await;
        let waited = limiter.acquire().await;
        assert!(waited > Duration::from_millis(100), "{waited:?}");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(limiter.allowed_rate(), 10.0);
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
        // 20 calls at 5/s, no burst: the last one at its slot 19 × 200 ms (+ jitter ≤ 40 ms).
        let elapsed = Instant::now() - start;
        assert!(elapsed >= Duration::from_millis(3800) && elapsed <= Duration::from_millis(3840));
    }
}
