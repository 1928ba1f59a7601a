//! The mix of operations among recent jobs, to size how much work a replica holds.
//!
//! The receiver holds a few seconds of work, but cannot tell a job's operation before parsing it,
//! and the two operations have their own limiters. Adding both rates would count a limiter that
//! no job uses (an idle associate limiter at its ceiling made a StartChatContact replica at 0.5/s
//! hold 2.5/s worth of jobs). So the expected time per job is weighted by the recent mix:
//! `1 / (s / r_start + (1 − s) / r_associate)` jobs/s, `s` = the share of StartChatContact jobs.

use std::sync::Mutex;

use crate::connect::Operation;

/// Counts halve when their sum reaches this, so the mix follows the recent jobs.
const WINDOW: f64 = 200.0;

/// Decayed counts of jobs per operation.
#[derive(Default)]
pub struct JobMix {
    counts: Mutex<(f64, f64)>,
}

impl JobMix {
    /// A job of `op` was received.
    pub fn record(&self, op: Operation) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match op {
            Operation::StartChatContact => c.0 += 1.0,
            Operation::CreatePersistentContactAssociation => c.1 += 1.0,
        }
        if c.0 + c.1 >= WINDOW {
            c.0 /= 2.0;
            c.1 /= 2.0;
        }
    }

    /// Share of StartChatContact among recent jobs; 1 before any job (the common case).
    pub fn start_share(&self) -> f64 {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let total = c.0 + c.1;
        if total > 0.0 { c.0 / total } else { 1.0 }
    }
}

/// Jobs per second this replica starts at these limiter rates for a mix with `start_share`
/// StartChatContact jobs.
pub fn jobs_per_second(start_share: f64, start_rate: f64, associate_rate: f64) -> f64 {
    let s = start_share.clamp(0.0, 1.0);
    let time = |share: f64, rate: f64| {
        if share == 0.0 {
            0.0
        } else if rate > 0.0 {
            share / rate
        } else {
            f64::INFINITY
        }
    };
    let per_job = time(s, start_rate) + time(1.0 - s, associate_rate);
    if per_job.is_finite() && per_job > 0.0 {
        1.0 / per_job
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unused_limiter_adds_nothing() {
        // Only start-chat jobs: the idle associate limiter's 2/s does not count.
        assert_eq!(jobs_per_second(1.0, 0.5, 2.0), 0.5);
        assert_eq!(jobs_per_second(0.0, 0.5, 2.0), 2.0);
        // Half and half: 1 / (0.5/1 + 0.5/4) = 1.6 jobs/s.
        assert!((jobs_per_second(0.5, 1.0, 4.0) - 1.6).abs() < 1e-9);
        assert_eq!(jobs_per_second(1.0, 0.0, 2.0), 0.0);
    }

    #[test]
    fn the_mix_follows_recent_jobs() {
        let mix = JobMix::default();
        assert_eq!(mix.start_share(), 1.0);
        for _ in 0..100 {
            mix.record(Operation::StartChatContact);
        }
        assert_eq!(mix.start_share(), 1.0);
        for _ in 0..300 {
            mix.record(Operation::CreatePersistentContactAssociation);
        }
        // The old start-chat jobs have decayed away.
        assert!(mix.start_share() < 0.2, "{}", mix.start_share());
    }
}
