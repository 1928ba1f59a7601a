//! Token bucket with continuous refill, the shape of AWS API rate quotas: capacity = burst,
//! refilled at `rate` tokens per second, one token per call. It starts full. Time is passed
//! in (a `tokio::time::Instant`), so tests drive it deterministically.
//!
//! Invariant the tests rely on: over any window of length T, at most `burst + rate * T`
//! calls are admitted.

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token if one is available at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        // saturating: a caller whose `now` is slightly older than `last` (taken before
        // acquiring the lock) must not refill negatively or panic.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        if now > self.last {
            self.last = now;
        }
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 5, t0);
        let taken = (0..10).filter(|_| b.try_take(t0)).count();
        assert_eq!(taken, 5, "a full bucket admits exactly the burst");
        // Half a second at 2/s refills exactly one token.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t1));
        // A long idle period refills only up to the burst.
        let t2 = t1 + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| b.try_take(t2)).count(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_burst_plus_rate_in_any_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3.0, 4, t0);
        // Hammer it every 10 ms for 10 s and record admission times.
        let mut admitted = Vec::new();
        for i in 0..1000u64 {
            let t = t0 + Duration::from_millis(i * 10);
            if b.try_take(t) {
                admitted.push(i * 10);
            }
        }
        for (i, start) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|&&t| t < start + 1000)
                .count();
            assert!(
                in_window <= 4 + 3,
                "window at {start} ms admitted {in_window}"
            );
        }
        // And over the whole run the long-term rate holds.
        assert!(admitted.len() <= 4 + 3 * 10);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_burst_admits_nothing() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 0, t0);
        assert!(!b.try_take(t0 + Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_instant_does_not_panic_or_refill() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut b = TokenBucket::new(1.0, 1, t1);
        assert!(b.try_take(t1));
        assert!(!b.try_take(t0));
    }
}
