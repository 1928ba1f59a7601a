//! A `governor` clock that reads tokio's clock.
//!
//! governor's default clock reads `std::time::Instant`, which ignores tokio's paused time, so a
//! limiter built on it would never refill under `#[tokio::test(start_paused = true)]`. This clock
//! wraps [`tokio::time::Instant`]: in production it is the monotonic clock, in paused-time tests it
//! advances only when tokio advances it, so rate-limited code is deterministic in tests.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;

/// A point in tokio time, usable as governor's `Reference`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(pub tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    fn add(self, rhs: Nanos) -> TokioInstant {
        // Overflow is centuries away; saturate instead of panicking.
        TokioInstant(self.0.checked_add(Duration::from(rhs)).unwrap_or(self.0))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_duration_since(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        TokioInstant(
            self.0
                .checked_sub(Duration::from(duration))
                .unwrap_or(self.0),
        )
    }
}

/// governor clock backed by `tokio::time::Instant::now()`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = TokioClock;
        let a = clock.now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let b = clock.now();
        assert_eq!(
            Duration::from(b.duration_since(a)),
            Duration::from_millis(1500)
        );
        assert_eq!(Duration::from(a.duration_since(b)), Duration::ZERO);
        assert_eq!(
            b.saturating_sub(Nanos::from(Duration::from_millis(1500))),
            a
        );
        assert_eq!(a + Nanos::from(Duration::from_millis(1500)), b);
    }
}
