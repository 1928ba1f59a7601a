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
//! # Release clock
//!
//! Beside the blind probes, the gate keeps a [`ReleaseClock`] of the chats we started. Once a
//! probe has found a release (and so taught the clock how long our chats live), a closed gate
//! also admits one `Clocked` call each time one of our chats is predicted to end: the capacity is
//! refilled as it frees instead of at the next probe. The caller reports the outcome with the
//! call's [`GateCall`]: a clocked start that succeeds leaves the gate closed (it only took the
//! ended chat's place); one that hits the limit puts the chat back and lengthens the lifetime.
//! While the clock knows a lifetime `L`, blind probes wait at least `min(3 L, max_cooldown)`:
//! the clock finds our own releases, the probes are for capacity that frees unpredicted.
//!
//! [`GateState`] is the pure core (explicit `now`); [`CapacityGate`] wraps it in a mutex and
//! reads `tokio::time::Instant::now()`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::release::ReleaseClock;

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
    /// The gate is closed, but one of our chats is predicted to have ended: this call may take
    /// its place. Report its outcome with [`GateCall::Clocked`] and this start time.
    Clocked { started: Instant },
    /// Do not call; retry after this delay (use it as the SQS visibility delay).
    Closed { retry_after: Duration },
}

/// Which admission a call went out on, for reporting its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateCall {
    /// Admitted by an open gate.
    Regular,
    /// The blind probe.
    Probe,
    /// On the predicted release of the chat started at `started`.
    Clocked { started: Instant },
}

impl GateCall {
    /// A short name for logs: `regular`, `probe` or `clocked`.
    pub fn as_str(&self) -> &'static str {
        match self {
            GateCall::Regular => "regular",
            GateCall::Probe => "probe",
            GateCall::Clocked { .. } => "clocked",
        }
    }
}

/// What a StartChatContact call said about chat capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityOutcome {
    /// The chat started.
    Started,
    /// `LimitExceededException`.
    LimitExceeded,
    /// Failed for another reason (throttled, 5xx, network, not sent): says nothing.
    Inconclusive,
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
    clock: ReleaseClock,
}

impl GateState {
    /// An open gate.
    pub fn new(settings: GateSettings) -> Self {
        GateState {
            cooldown: settings.initial_cooldown,
            phase: Phase::Open,
            settings,
            clock: ReleaseClock::default(),
        }
    }

    /// The chat lifetime learned by the release clock, once a probe found a release.
    pub fn learned_lifetime(&self) -> Option<Duration> {
        self.clock.lifetime()
    }

    /// Reports the outcome of a call admitted as `call`. See the module documentation.
    pub fn report(&mut self, now: Instant, call: GateCall, outcome: CapacityOutcome) {
        match (call, outcome) {
            (GateCall::Clocked { .. }, CapacityOutcome::Started) => {
                // The new chat took the ended one's place; the gate stays as it is.
                self.clock.on_started(now);
            }
            (GateCall::Clocked { .. }, CapacityOutcome::LimitExceeded) => {
                self.clock.early();
                if self.phase == Phase::Open {
                    self.on_limit_exceeded(now);
                }
            }
            (GateCall::Clocked { started }, CapacityOutcome::Inconclusive) => {
                self.clock.restore(started);
            }
            (call, CapacityOutcome::Started) => {
                if call == GateCall::Probe && self.phase != Phase::Open {
                    self.clock.found_release(now);
                }
                self.clock.on_started(now);
                self.on_success();
            }
            (_, CapacityOutcome::LimitExceeded) => self.on_limit_exceeded(now),
            (GateCall::Probe, CapacityOutcome::Inconclusive) => self.on_probe_inconclusive(now),
            (GateCall::Regular, CapacityOutcome::Inconclusive) => {}
        }
    }

    /// The wait before the next blind probe: the cooldown, but while the clock knows the
    /// lifetime at least three times it (capped at `max_cooldown`): each blind probe that finds
    /// the limit costs a refused call, and the clock already finds our own releases.
    fn blind_wait(&self) -> Duration {
        match self.clock.lifetime() {
            Some(l) => self
                .cooldown
                .max(l.saturating_mul(3).min(self.settings.max_cooldown)),
            None => self.cooldown,
        }
    }

    /// `wait`, shortened to the next predicted release.
    fn until_next_release(&self, now: Instant, wait: Duration) -> Duration {
        match self.clock.next_due() {
            Some(due) => wait.min(due.saturating_duration_since(now)),
            None => wait,
        }
    }

    /// May a call go at `now`? May turn Closed into Probing.
    pub fn admit(&mut self, now: Instant) -> Admission {
        if self.phase == Phase::Open {
            return Admission::Open;
        }
        if let Some(started) = self.clock.take_due(now) {
            return Admission::Clocked { started };
        }
        match self.phase {
            Phase::Open => Admission::Open,
            Phase::Closed { reopen_at } if now < reopen_at => Admission::Closed {
                retry_after: self.until_next_release(now, reopen_at - now),
            },
            Phase::Probing { since }
                if now.saturating_duration_since(since) < self.settings.probe_timeout =>
            {
                Admission::Closed {
                    retry_after: self.until_next_release(now, self.probing_retry_after(since, now)),
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
            Phase::Open => {
                self.cooldown = self.settings.initial_cooldown;
                self.clock.on_full(now);
            }
            Phase::Probing { .. } => {
                self.cooldown = self
                    .cooldown
                    .mul_f64(self.settings.multiplier.max(1.0))
                    .min(self.settings.max_cooldown);
            }
            Phase::Closed { .. } => {}
        }
        self.phase = Phase::Closed {
            reopen_at: now.checked_add(self.blind_wait()).unwrap_or(now),
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

    /// Whether the release clock predicts releases of our chats (it knows their lifetime and
    /// presumes some active): a closed gate then still takes starts as they come due.
    pub fn predicts_releases(&self) -> bool {
        self.clock.next_due().is_some()
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
            Phase::Closed { reopen_at } => {
                Some(self.until_next_release(now, reopen_at.saturating_duration_since(now)))
            }
            Phase::Probing { since } => {
                Some(self.until_next_release(now, self.probing_retry_after(since, now)))
            }
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
    /// Bumped on every report of an outcome, so jobs held for the gate wake when it may have
    /// changed (see [`CapacityGate::changes`]).
    changes: tokio::sync::watch::Sender<u64>,
}

impl CapacityGate {
    /// An open gate.
    pub fn new(settings: GateSettings) -> Self {
        CapacityGate {
            state: Mutex::new(GateState::new(settings)),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A receiver whose `changed()` resolves at the next outcome reported to the gate (a probe
    /// succeeded, the limit was hit again, ...). Subscribe before [`CapacityGate::admit`] so no
    /// change between the two is missed.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// May a StartChatContact call go now? `Probe` is the single call let through after the
    /// cooldown; report its outcome with one of the `on_*` methods.
    pub fn admit(&self) -> Admission {
        let now = Instant::now();
        self.with(|s| s.admit(now))
    }

    /// Reports the outcome of a call admitted as `call`.
    pub fn report(&self, call: GateCall, outcome: CapacityOutcome) {
        let now = Instant::now();
        self.with(|s| s.report(now, call, outcome));
        self.changed();
    }

    /// The chat lifetime learned by the release clock.
    pub fn learned_lifetime(&self) -> Option<Duration> {
        self.with(|s| s.learned_lifetime())
    }

    /// A call failed with `LimitExceededException`.
    pub fn on_limit_exceeded(&self) {
        let now = Instant::now();
        self.with(|s| s.on_limit_exceeded(now));
        self.changed();
    }

    /// A call succeeded.
    pub fn on_success(&self) {
        self.with(|s| s.on_success());
        self.changed();
    }

    /// The probe call failed for another reason.
    pub fn on_probe_inconclusive(&self) {
        let now = Instant::now();
        self.with(|s| s.on_probe_inconclusive(now));
        self.changed();
    }

    /// Closed or probing.
    pub fn is_closed(&self) -> bool {
        self.with(|s| s.is_closed())
    }

    /// 0 open, 1 closed, 2 probing.
    pub fn state_code(&self) -> i64 {
        self.with(|s| s.state_code())
    }

    /// While closed and predicting releases: how many of our chats are expected to end within
    /// `horizon`. `None` when open or not predicting.
    pub fn predicted_releases(&self, horizon: Duration) -> Option<usize> {
        let now = Instant::now();
        self.with(|s| {
            (s.is_closed() && s.predicts_releases()).then(|| s.clock.due_within(now, horizon))
        })
    }

    /// Whether the release clock predicts releases of our chats.
    pub fn predicts_releases(&self) -> bool {
        self.with(|s| s.predicts_releases())
    }

    /// Closed, and not predicting releases: no start can go until a probe finds capacity.
    pub fn is_shut(&self) -> bool {
        self.with(|s| s.is_closed() && !s.predicts_releases())
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The benchmark's situation: 20 chats of 5 s fill the capacity, the limit is hit, blind
    /// probes find the first release, and from then on the clock times the starts.
    #[test]
    fn the_release_clock_times_starts_once_a_probe_found_a_release() {
        let t0 = Instant::now();
        let mut g = GateState::new(GateSettings::default());
        for i in 0..20 {
            g.report(t0 + ms(50 * i), GateCall::Regular, CapacityOutcome::Started);
        }
        g.report(
            t0 + ms(1_000),
            GateCall::Regular,
            CapacityOutcome::LimitExceeded,
        );
        // No lifetime known yet: closed for the plain cooldown, no prediction.
        assert!(!g.predicts_releases());
        assert_eq!(g.admit(t0 + ms(1_200)), closed(ms(300)));
        assert_eq!(g.admit(t0 + ms(1_500)), Admission::Probe);
        g.report(
            t0 + ms(1_510),
            GateCall::Probe,
            CapacityOutcome::LimitExceeded,
        );
        assert_eq!(g.admit(t0 + ms(5_100)), Admission::Probe);
        g.report(t0 + ms(5_100), GateCall::Probe, CapacityOutcome::Started);
        // The probe found the first chat's end: lifetime 5.1 s, and the gate opened.
        assert_eq!(g.learned_lifetime(), Some(ms(5_100)));
        assert_eq!(g.admit(t0 + ms(5_100)), Admission::Open);
        for i in 1..20 {
            g.report(
                t0 + ms(5_100 + 50 * i),
                GateCall::Regular,
                CapacityOutcome::Started,
            );
        }
        g.report(
            t0 + ms(6_200),
            GateCall::Regular,
            CapacityOutcome::LimitExceeded,
        );
        assert!(g.predicts_releases());
        // Closed: the next start waits for the first chat of the refill (5.1 s + 5.1 s) ...
        assert_eq!(g.admit(t0 + ms(6_300)), closed(ms(3_900)));
        assert_eq!(g.reopens_in(t0 + ms(6_300)), Some(ms(3_900)));
        // ... and then takes its place without opening the gate.
        let first = g.admit(t0 + ms(10_200));
        assert_eq!(
            first,
            Admission::Clocked {
                started: t0 + ms(5_100)
            }
        );
        assert_eq!(g.admit(t0 + ms(10_200)), closed(ms(50)));
        g.report(
            t0 + ms(10_210),
            GateCall::Clocked {
                started: t0 + ms(5_100),
            },
            CapacityOutcome::Started,
        );
        assert_eq!(g.state_code(), 1);
        // A start on the next release finds the limit: too early, the lifetime grows.
        let Admission::Clocked { started } = g.admit(t0 + ms(10_250)) else {
            panic!("a predicted release");
        };
        g.report(
            t0 + ms(10_260),
            GateCall::Clocked { started },
            CapacityOutcome::LimitExceeded,
        );
        assert_eq!(g.learned_lifetime(), Some(ms(5_202)));
        assert_eq!(g.state_code(), 1);
        // Blind probes still come, but no sooner than three times the lifetime after the limit
        // (6.2 s + 15.3 s), however many predicted starts went meanwhile.
        let mut now = t0 + ms(21_400);
        while let Admission::Clocked { started } = g.admit(now) {
            g.report(now, GateCall::Clocked { started }, CapacityOutcome::Started);
            now += ms(1);
        }
        assert!(matches!(g.admit(t0 + ms(21_450)), Admission::Closed { .. }));
        assert_eq!(g.admit(t0 + ms(21_500)), Admission::Probe);
    }

    #[test]
    fn an_inconclusive_clocked_start_gives_the_release_back() {
        let t0 = Instant::now();
        let mut g = GateState::new(GateSettings::default());
        g.report(t0, GateCall::Regular, CapacityOutcome::Started);
        g.report(
            t0 + ms(100),
            GateCall::Regular,
            CapacityOutcome::LimitExceeded,
        );
        assert_eq!(g.admit(t0 + ms(600)), Admission::Probe);
        g.report(t0 + ms(700), GateCall::Probe, CapacityOutcome::Started);
        g.report(
            t0 + ms(800),
            GateCall::Regular,
            CapacityOutcome::LimitExceeded,
        );
        let due = g.admit(t0 + ms(1_400));
        assert_eq!(
            due,
            Admission::Clocked {
                started: t0 + ms(700)
            }
        );
        g.report(
            t0 + ms(1_400),
            GateCall::Clocked {
                started: t0 + ms(700),
            },
            CapacityOutcome::Inconclusive,
        );
        assert_eq!(g.admit(t0 + ms(1_400)), due);
        assert_eq!(g.learned_lifetime(), Some(ms(700)));
    }
}
