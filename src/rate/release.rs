//! [`ReleaseClock`]: predicts when the chats we started free their capacity, so that while the
//! active-chat limit holds, a start can go right when one of ours ends instead of at a blind
//! probe.
//!
//! # Why
//!
//! Connect does not tell us when a chat ends. Without a prediction the only way to find free
//! capacity is a probe on a timer: it either comes late (the capacity sits empty) or early (a
//! `LimitExceededException`, one more call burnt). Chats started together end together, so the
//! waves of starts at full capacity keep coming back, each costing several failed probes.
//! TCP solved the same problem with the ACK clock: a segment leaves when one is known to have
//! left the network. Here a chat we started `L` ago has probably ended.
//!
//! # Protocol (pure; the [`super::CapacityGate`] drives it)
//!
//! - The clock keeps the start times of the chats we presume still active, oldest first
//!   ([`ReleaseClock::on_started`] for every successful start, at most [`MAX_TRACKED`]).
//! - It learns the chat lifetime `L` from the gate's blind probes: a probe that succeeds while
//!   the limit held means one chat ended; presumed first in, first out, the oldest presumed-active
//!   one did, so `L ≈ now − oldest` ([`ReleaseClock::found_release`]). A probe that finds a
//!   release before the predicted one shortens `L` to its sample.
//! - While the limit holds, [`ReleaseClock::take_due`] hands out one predicted release per chat
//!   whose `start + L` has passed. A start sent on it either succeeds (it takes the ended chat's
//!   place) or hits the limit: that chat was miscounted or `L` is a bit short, so the chat is
//!   forgotten and `L` grows by [`EARLY_GROWTH`] ([`ReleaseClock::early`]).
//! - When the limit is hit, the chats older than `L` are presumed over and forgotten, and the
//!   count of the rest is remembered ([`ReleaseClock::on_full`]): from then on every start that
//!   succeeds took the place of the oldest, so the count cannot drift up while the gate is
//!   open and starts fill capacity that freed unseen.
//!
//! With chats of varied lengths the prediction is rougher; a wrong one costs one refused call,
//! the same as a blind probe, and lengthens `L`, so the clock goes quiet instead of burning
//! calls. Blind probes keep running beside it, so capacity that frees unpredicted (another
//! caller's chats ended, the quota was raised) is still found.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Most start times kept (the oldest are forgotten first); far above any chat quota.
pub const MAX_TRACKED: usize = 10_000;

/// Growth of the lifetime when a predicted release turned out early.
pub const EARLY_GROWTH: f64 = 1.02;

/// Shortest growth step of the lifetime on an early prediction.
const MIN_EARLY_STEP: Duration = Duration::from_millis(20);

/// The chats presumed active and their learned lifetime. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct ReleaseClock {
    active: VecDeque<Instant>,
    lifetime: Option<Duration>,
    /// How many of our chats were presumed active when the limit was last hit: while it holds,
    /// a new start takes the place of the oldest (one of ours must have ended for it to fit).
    full_count: Option<usize>,
}

impl ReleaseClock {
    /// The learned chat lifetime, once a probe has found a release.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// How many chats are presumed active.
    pub fn tracked(&self) -> usize {
        self.active.len()
    }

    /// A chat we started became active at `now`. Once the limit has been hit, our presumed
    /// active chats stay at the count of that moment: a start that fits means one of ours ended,
    /// presumed the oldest.
    pub fn on_started(&mut self, now: Instant) {
        let cap = self.full_count.unwrap_or(MAX_TRACKED).clamp(1, MAX_TRACKED);
        while self.active.len() >= cap {
            self.active.pop_front();
        }
        self.active.push_back(now);
    }

    /// The limit was hit after a time without it: chats older than the lifetime have ended.
    pub fn on_full(&mut self, now: Instant) {
        if let Some(lifetime) = self.lifetime {
            while let Some(&oldest) = self.active.front() {
                if oldest.checked_add(lifetime).is_some_and(|end| end <= now) {
                    self.active.pop_front();
                } else {
                    break;
                }
            }
        }
        self.full_count = Some(self.active.len());
    }

    /// A blind probe succeeded at `now` while the limit held: the oldest presumed-active chat
    /// ended. Learns (or shortens) the lifetime from it.
    pub fn found_release(&mut self, now: Instant) {
        let Some(oldest) = self.active.pop_front() else {
            return;
        };
        let sample = now.saturating_duration_since(oldest);
        if self.lifetime.is_none_or(|l| sample < l) {
            self.lifetime = Some(sample);
        }
    }

    /// When the next presumed release is due, if a lifetime is known.
    pub fn next_due(&self) -> Option<Instant> {
        let lifetime = self.lifetime?;
        let oldest = *self.active.front()?;
        oldest.checked_add(lifetime)
    }

    /// How many presumed releases fall due by `now + horizon` (none while the lifetime is
    /// unknown).
    pub fn due_within(&self, now: Instant, horizon: Duration) -> usize {
        let Some(lifetime) = self.lifetime else {
            return 0;
        };
        let by = now + horizon;
        self.active
            .partition_point(|&t| t.checked_add(lifetime).is_some_and(|end| end <= by))
    }

    /// Takes the next presumed release if it is due at `now`; returns the start time of the
    /// chat presumed ended (if the start sent on it fails, report [`ReleaseClock::early`], or
    /// give the time to [`ReleaseClock::restore`] when the failure says nothing about capacity).
    pub fn take_due(&mut self, now: Instant) -> Option<Instant> {
        if self.next_due()? <= now {
            self.active.pop_front()
        } else {
            None
        }
    }

    /// The start sent on a release taken with [`ReleaseClock::take_due`] hit the limit: either
    /// that chat was not ours to count (it ended unseen long ago, and its place was already
    /// taken) or the lifetime is a bit longer than we thought. The chat stays forgotten, so a
    /// miscounted one costs one refused call, not one per growth step, and the lifetime grows a
    /// little.
    pub fn early(&mut self) {
        if let Some(l) = self.lifetime {
            let grown = l.mul_f64(EARLY_GROWTH).max(l + MIN_EARLY_STEP);
            self.lifetime = Some(grown);
        }
        if let Some(n) = self.full_count.as_mut() {
            *n = n.saturating_sub(1).max(1);
        }
    }

    /// The start sent on a release failed for a reason that says nothing about capacity: the
    /// chat started at `started` is presumed active again, in its place by age.
    pub fn restore(&mut self, started: Instant) {
        let at = self.active.partition_point(|&t| t <= started);
        self.active.insert(at, started);
        if self.active.len() > MAX_TRACKED {
            self.active.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Twenty chats started 50 ms apart from `t0`.
    fn wave(t0: Instant) -> ReleaseClock {
        let mut c = ReleaseClock::default();
        for i in 0..20 {
            c.on_started(t0 + ms(50 * i));
        }
        c
    }

    #[test]
    fn nothing_is_predicted_before_a_release_was_found() {
        let t0 = Instant::now();
        let mut c = wave(t0);
        assert_eq!(c.next_due(), None);
        assert_eq!(c.take_due(t0 + Duration::from_secs(60)), None);
        assert_eq!(c.tracked(), 20);
    }

    #[test]
    fn a_found_release_sets_the_lifetime_and_predicts_the_rest() {
        let t0 = Instant::now();
        let mut c = wave(t0);
        c.found_release(t0 + ms(5_100));
        assert_eq!(c.lifetime(), Some(ms(5_100)));
        assert_eq!(c.due_within(t0 + ms(5_100), ms(500)), 10);
        // The second chat (started at 50 ms) is due at 5.15 s, not before.
        assert_eq!(c.take_due(t0 + ms(5_149)), None);
        assert_eq!(c.take_due(t0 + ms(5_150)), Some(t0 + ms(50)));
        assert_eq!(c.next_due(), Some(t0 + ms(5_200)));
    }

    #[test]
    fn an_early_prediction_forgets_the_chat_and_grows_the_lifetime() {
        let t0 = Instant::now();
        let mut c = wave(t0);
        c.on_full(t0 + ms(1_000));
        c.found_release(t0 + ms(5_000));
        let started = c.take_due(t0 + ms(5_050)).unwrap();
        assert_eq!(started, t0 + ms(50));
        c.early();
        assert_eq!(c.lifetime(), Some(ms(5_100)));
        // The next one is due on the grown lifetime.
        assert_eq!(c.next_due(), Some(t0 + ms(100) + ms(5_100)));
        assert_eq!(c.tracked(), 18);
        // And the count at full shrank with it: 19 starts keep 19 presumed active.
        for i in 0..19 {
            c.on_started(t0 + ms(6_000 + i));
        }
        assert_eq!(c.tracked(), 19);
    }

    #[test]
    fn once_full_a_start_takes_the_place_of_the_oldest() {
        let t0 = Instant::now();
        let mut c = wave(t0);
        c.on_full(t0 + ms(1_000));
        // The gate opened again and ten starts went through: ten of ours must have ended.
        for i in 0..10 {
            c.on_started(t0 + ms(5_000 + 10 * i));
        }
        assert_eq!(c.tracked(), 20);
        c.found_release(t0 + ms(5_600));
        // The oldest left is the eleventh of the first wave (started at 500 ms).
        assert_eq!(c.lifetime(), Some(ms(5_100)));
    }

    #[test]
    fn a_release_found_before_the_prediction_shortens_the_lifetime() {
        let t0 = Instant::now();
        let mut c = wave(t0);
        c.found_release(t0 + ms(6_000));
        c.found_release(t0 + ms(5_550));
        assert_eq!(c.lifetime(), Some(ms(5_500)));
        // A later, longer sample does not lengthen it: late finds are late probes.
        c.found_release(t0 + ms(9_000));
        assert_eq!(c.lifetime(), Some(ms(5_500)));
    }

    #[test]
    fn hitting_the_limit_again_forgets_chats_older_than_the_lifetime() {
        let t0 = Instant::now();
        let mut c = wave(t0);
        c.found_release(t0 + ms(5_000));
        // Never full before: ten more starts add up, then the limit at 7.5 s.
        for i in 0..10 {
            c.on_started(t0 + ms(5_000 + 100 * i));
        }
        assert_eq!(c.tracked(), 29);
        c.on_full(t0 + ms(7_500));
        // Started before 2.5 s: all of the first wave is gone, the ten new ones stay.
        assert_eq!(c.tracked(), 10);
        assert_eq!(c.next_due(), Some(t0 + ms(10_000)));
    }

    #[test]
    fn restore_keeps_the_order_by_age_and_the_bound() {
        let t0 = Instant::now();
        let mut c = wave(t0);
        c.found_release(t0 + ms(5_000));
        let a = c.take_due(t0 + ms(6_000)).unwrap();
        let b = c.take_due(t0 + ms(6_000)).unwrap();
        c.restore(b);
        c.restore(a);
        assert_eq!(c.take_due(t0 + ms(6_000)), Some(a));
        let mut big = ReleaseClock::default();
        for i in 0..(MAX_TRACKED as u64 + 5) {
            big.on_started(t0 + ms(i));
        }
        big.restore(t0 + ms(3));
        assert_eq!(big.tracked(), MAX_TRACKED);
    }
}
