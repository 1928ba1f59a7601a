//! [`CapacityGate`]: the active-chat capacity gate of StartChatContact.
//!
//! `LimitExceededException` means the instance has its maximum of concurrent active chats
//! (default 100; chats last minutes to hours). Calling again soon only wastes rate tokens, and
//! calling slower does not help, so this gate is separate from the rate limiter and never lowers
//! the rate.
//!
//! # Protocol
//!
//! States: **Open** → every call goes. **Closed** until a reopen time. **Probing**: one call is
//! out to test whether capacity is back.
//!
//! - `admit()`: Open → `Open`. Closed before the reopen time → `Closed { retry_after }` (the
//!   caller gives the job back to SQS with that visibility delay and slows receiving). Closed at
//!   or after the reopen time → `Probe` (the gate becomes Probing; exactly one caller gets it).
//!   Probing → `Closed { retry_after }` for everyone else, until the probe resolves or, if it is
//!   not resolved within `probe_timeout` (the probing task died, the answer was lost), the probe
//!   is forgotten and the next `admit()` gets a new `Probe`: the gate cannot stick.
//! - `on_limit_exceeded()`: Open → Closed for the initial cooldown. Probing (the probe failed:
//!   the limit still holds) → Closed for the cooldown × `multiplier`, capped at `max_cooldown`.
//!   Closed (an answer to a call that was in flight when the gate closed) → stays Closed, the
//!   reopen time is pushed to now + the current cooldown, and the cooldown does not grow: a
//!   burst of in-flight failures is one piece of evidence, not many.
//! - `on_success()` from any call, probe or not: Open, cooldown reset. A success of a call that
//!   was in flight when the gate closed is evidence that capacity exists now (a chat ended), so
//!   opening is fine; if it was a fluke the next `LimitExceeded` closes again with the initial
//!   cooldown.
//! - `on_probe_inconclusive()`: the probe failed for another reason (throttled, 5xx, network):
//!   Probing → Closed with the reopen time = now, so the next `admit()` is a new probe and the
//!   cooldown does not grow. No effect in other states.
//!
//! [`GateState`] is the pure core (explicit `now`); [`CapacityGate`] wraps it in a mutex and
//! reads `tokio::time::Instant::now()`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Timing of the gate.
#[derive(Clone, Debug, PartialEq)]
pub struct GateSettings {
    /// Cooldown after the gate first closes.
    pub initial_cooldown: Duration,
    /// Growth of the cooldown each time a probe finds the limit still in place.
    pub multiplier: f64,
    /// Cap of the cooldown.
    pub max_cooldown: Duration,
    /// A probe not resolved within this time is forgotten.
    pub probe_timeout: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            // Short: the capacity pacer already slows starts to the rate chats end; the gate only has to
            // stop the calls queued behind the one that found the limit. It doubles while the limit holds.
            initial_cooldown: Duration::from_millis(500),
            multiplier: 1.5,
            max_cooldown: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(30),
        }
    }
}

/// What the caller may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The gate is open: call.
    Open,
    /// The gate lets this one call through to test capacity; report its outcome.
    Probe,
    /// Do not call; retry after this delay (use it as the SQS visibility delay).
    Closed { retry_after: Duration },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    Closed { reopen_at: Instant },
    Probing { since: Instant },
}

/// Pure state machine of the gate. See the module documentation.
#[derive(Clone, Debug)]
pub struct GateState {
    settings: GateSettings,
    phase: Phase,
    cooldown: Duration,
}

impl GateState {
    /// An open gate.
    pub fn new(settings: GateSettings) -> Self {
        GateState {
            cooldown: settings.initial_cooldown,
            phase: Phase::Open,
            settings,
        }
    }

    /// May a call go at `now`? May turn Closed into Probing.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.phase {
            Phase::Open => Admission::Open,
            Phase::Closed { reopen_at } if now < reopen_at => Admission::Closed {
                retry_after: reopen_at - now,
            },
            Phase::Probing { since }
                if now.saturating_duration_since(since) < self.settings.probe_timeout =>
            {
                Admission::Closed {
                    retry_after: self.probing_retry_after(since, now),
                }
            }
            // Cooldown over, or the last probe was forgotten: this caller probes.
            Phase::Closed { .. } | Phase::Probing { .. } => {
                self.phase = Phase::Probing { since: now };
                Admission::Probe
            }
        }
    }

    /// A call (probe or not) failed with `LimitExceededException` at `now`.
    pub fn on_limit_exceeded(&mut self, now: Instant) {
        match self.phase {
            Phase::Open => self.cooldown = self.settings.initial_cooldown,
            Phase::Probing { .. } => {
                self.cooldown = self
                    .cooldown
                    .mul_f64(self.settings.multiplier.max(1.0))
                    .min(self.settings.max_cooldown);
            }
            Phase::Closed { .. } => {}
        }
        self.phase = Phase::Closed {
            reopen_at: now.checked_add(self.cooldown).unwrap_or(now),
        };
    }

    /// A call (probe or not) succeeded: capacity exists.
    pub fn on_success(&mut self) {
        self.phase = Phase::Open;
        self.cooldown = self.settings.initial_cooldown;
    }

    /// The probe failed for a reason that says nothing about capacity: allow another probe.
    pub fn on_probe_inconclusive(&mut self, now: Instant) {
        if let Phase::Probing { .. } = self.phase {
            self.phase = Phase::Closed { reopen_at: now };
        }
    }

    /// Closed or probing.
    pub fn is_closed(&self) -> bool {
        self.phase != Phase::Open
    }

    /// 0 open, 1 closed, 2 probing (a metrics gauge).
    pub fn state_code(&self) -> i64 {
        match self.phase {
            Phase::Open => 0,
            Phase::Closed { .. } => 1,
            Phase::Probing { .. } => 2,
        }
    }

    /// How long until calls may be tried again; `None` when open.
    pub fn reopens_in(&self, now: Instant) -> Option<Duration> {
        match self.phase {
            Phase::Open => None,
            Phase::Closed { reopen_at } => Some(reopen_at.saturating_duration_since(now)),
            Phase::Probing { since } => Some(self.probing_retry_after(since, now)),
        }
    }

    /// While a probe is out, others wait one cooldown (the probe usually answers within a
    /// second, and a success reopens at once), but never past the probe's timeout.
    fn probing_retry_after(&self, since: Instant, now: Instant) -> Duration {
        let expires = since
            .checked_add(self.settings.probe_timeout)
            .unwrap_or(since);
        self.cooldown
            .min(expires.saturating_duration_since(now))
            .max(Duration::from_millis(100))
    }
}

/// Thread-safe active-chat gate; share it with an `Arc`.
#[derive(Debug)]
pub struct CapacityGate {
    state: Mutex<GateState>,
}

impl CapacityGate {
    /// An open gate.
    pub fn new(settings: GateSettings) -> Self {
        CapacityGate {
            state: Mutex::new(GateState::new(settings)),
        }
    }

    /// May a StartChatContact call go now? `Probe` is the single call let through after the
    /// cooldown; report its outcome with one of the `on_*` methods.
    pub fn admit(&self) -> Admission {
        let now = Instant::now();
        self.with(|s| s.admit(now))
    }

    /// A call failed with `LimitExceededException`.
    pub fn on_limit_exceeded(&self) {
        let now = Instant::now();
        self.with(|s| s.on_limit_exceeded(now));
    }

    /// A call succeeded.
    pub fn on_success(&self) {
        self.with(|s| s.on_success());
    }

    /// The probe call failed for another reason.
    pub fn on_probe_inconclusive(&self) {
        let now = Instant::now();
        self.with(|s| s.on_probe_inconclusive(now));
    }

    /// Closed or probing.
    pub fn is_closed(&self) -> bool {
        self.with(|s| s.is_closed())
    }

    /// 0 open, 1 closed, 2 probing.
    pub fn state_code(&self) -> i64 {
        self.with(|s| s.state_code())
    }

    /// How long until calls may be tried again; `None` when open.
    pub fn reopens_in(&self) -> Option<Duration> {
        let now = Instant::now();
        self.with(|s| s.reopens_in(now))
    }

    fn with<T>(&self, f: impl FnOnce(&mut GateState) -> T) -> T {
        // The state is plain data and every transition is complete, so a poisoned lock is usable.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

impl Default for CapacityGate {
    fn default() -> Self {
        CapacityGate::new(GateSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' numbers assume a 2 s first cooldown.
    fn two_second_gate() -> GateSettings {
        GateSettings {
            initial_cooldown: Duration::from_secs(2),
            multiplier: 2.0,
            ..GateSettings::default()
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn closed(retry_after: Duration) -> Admission {
        Admission::Closed { retry_after }
    }

    #[test]
    fn open_until_limit_exceeded() {
        let t0 = Instant::now();
        let mut g = GateState::new(two_second_gate());
        assert_eq!(g.admit(t0), Admission::Open);
        assert_eq!(g.state_code(), 0);
        assert_eq!(g.reopens_in(t0), None);
        g.on_limit_exceeded(t0);
        assert!(g.is_closed());
        assert_eq!(g.state_code(), 1);
        assert_eq!(g.admit(t0 + secs(1)), closed(secs(1)));
        assert_eq!(g.reopens_in(t0 + secs(1)), Some(secs(1)));
    }

    #[test]
    fn one_probe_after_the_cooldown_then_growing_cooldown_capped() {
        let mut g = GateState::new(two_second_gate());
        let mut now = Instant::now();
        g.on_limit_exceeded(now);
        let mut expected = secs(2);
        for _ in 0..8 {
            now += expected;
            assert_eq!(g.admit(now), Admission::Probe);
            assert_eq!(g.state_code(), 2);
            // Only one probe at a time.
            assert!(matches!(g.admit(now), Admission::Closed { .. }));
            g.on_limit_exceeded(now);
            expected = (expected * 2).min(secs(60));
            assert_eq!(g.reopens_in(now), Some(expected));
        }
        assert_eq!(expected, secs(60));
    }

    #[test]
    fn success_opens_and_resets_the_cooldown() {
        let mut g = GateState::new(two_second_gate());
        let t0 = Instant::now();
        g.on_limit_exceeded(t0);
        assert_eq!(g.admit(t0 + secs(2)), Admission::Probe);
        g.on_limit_exceeded(t0 + secs(2));
        assert_eq!(g.reopens_in(t0 + secs(2)), Some(secs(4)));
        assert_eq!(g.admit(t0 + secs(6)), Admission::Probe);
        g.on_success();
        assert_eq!(g.admit(t0 + secs(6)), Admission::Open);
        g.on_limit_exceeded(t0 + secs(7));
        assert_eq!(g.reopens_in(t0 + secs(7)), Some(secs(2)));
    }

    #[test]
    fn in_flight_answers_while_closed() {
        let mut g = GateState::new(two_second_gate());
        let t0 = Instant::now();
        g.on_limit_exceeded(t0);
        // More LimitExceeded from calls already in flight: stays closed, cooldown does not grow.
        g.on_limit_exceeded(t0 + Duration::from_millis(500));
        assert_eq!(g.reopens_in(t0 + Duration::from_millis(500)), Some(secs(2)));
        // A success of a call that was in flight: capacity exists, open.
        g.on_success();
        assert_eq!(g.admit(t0 + secs(1)), Admission::Open);
    }

    #[test]
    fn a_lost_probe_is_forgotten() {
        let mut g = GateState::new(two_second_gate());
        let t0 = Instant::now();
        g.on_limit_exceeded(t0);
        assert_eq!(g.admit(t0 + secs(2)), Admission::Probe);
        assert_eq!(g.admit(t0 + secs(3)), closed(secs(2)));
        // Near the timeout, others are told to come back when it expires.
        assert_eq!(g.admit(t0 + secs(31)), closed(secs(1)));
        assert_eq!(g.admit(t0 + secs(32)), Admission::Probe);
    }

    #[test]
    fn inconclusive_probe_allows_another_without_growth() {
        let mut g = GateState::new(two_second_gate());
        let t0 = Instant::now();
        g.on_limit_exceeded(t0);
        assert_eq!(g.admit(t0 + secs(2)), Admission::Probe);
        g.on_probe_inconclusive(t0 + secs(3));
        assert_eq!(g.state_code(), 1);
        assert_eq!(g.admit(t0 + secs(3)), Admission::Probe);
        g.on_limit_exceeded(t0 + secs(3));
        assert_eq!(g.reopens_in(t0 + secs(3)), Some(secs(4)));
        // Inconclusive outside of probing changes nothing.
        g.on_probe_inconclusive(t0 + secs(4));
        assert_eq!(g.reopens_in(t0 + secs(4)), Some(secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn wrapper_uses_tokio_time() {
        let gate = CapacityGate::new(two_second_gate());
        assert_eq!(gate.admit(), Admission::Open);
        gate.on_limit_exceeded();
        assert!(gate.is_closed());
        assert_eq!(gate.reopens_in(), Some(secs(2)));
        tokio::time::sleep(secs(2)).await;
        assert_eq!(gate.admit(), Admission::Probe);
        assert_eq!(gate.state_code(), 2);
        gate.on_probe_inconclusive();
        assert_eq!(gate.admit(), Admission::Probe);
        gate.on_success();
        assert!(!gate.is_closed());
        assert_eq!(gate.state_code(), 0);
    }
}
