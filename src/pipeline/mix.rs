//! The mix of operations among recent jobs, to size how much work a replica holds.
//!
//! The receiver holds a few seconds of work, but cannot tell a job's operation before parsing it,
//! and the two operations have their own limiters, which run side by side. Adding both rates
//! would count a limiter that no job uses (an idle associate limiter at its ceiling made a
//! StartChatContact replica at 0.5/s hold 2.5/s worth of jobs); adding their times per job, as
//! if one limiter waited for the other, counts half of a balanced mix (start 10/s, associate
//! 5/s, two starts per association: 7.5 jobs/s where the limiters do 15, so the receiver held
//! half its lookahead and a batch of mostly starts left the associate limiter idle). So the jobs
//! per second are those of the operation that binds first: with a share `s` of StartChatContact
//! jobs, `min(r_start / s, r_associate / (1 − s))`, an operation no recent job uses left out.

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
/// StartChatContact jobs: the limiters work in parallel, so the operation whose jobs take its
/// limiter longest sets the pace; 0 if a used operation's rate is 0 (or not a number).
pub fn jobs_per_second(start_share: f64, start_rate: f64, associate_rate: f64) -> f64 {
    let s = if start_share.is_nan() {
        1.0
    } else {
        start_share.clamp(0.0, 1.0)
    };
    let pace = |share: f64, rate: f64| {
        if share == 0.0 {
            f64::INFINITY
        } else if rate > 0.0 {
            rate / share
        } else {
            0.0
        }
    };
    let jobs = pace(s, start_rate).min(pace(1.0 - s, associate_rate));
    if jobs.is_finite() { jobs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_that_binds_first_sets_the_pace() {
        // Only start-chat jobs: the idle associate limiter's 2/s does not count.
        assert_eq!(jobs_per_second(1.0, 0.5, 2.0), 0.5);
        assert_eq!(jobs_per_second(0.0, 0.5, 2.0), 2.0);
        // Half and half: the start limiter binds, 1 / 0.5 = 2 jobs/s (the associate limiter,
        // at 4/s, does its half with room to spare).
        assert!((jobs_per_second(0.5, 1.0, 4.0) - 2.0).abs() < 1e-9);
        // Two starts per association at 10/s and 5/s: both bind at 15 jobs/s, twice what adding
        // their times per job (7.5) says.
        assert!((jobs_per_second(2.0 / 3.0, 10.0, 5.0) - 15.0).abs() < 1e-9);
        assert_eq!(jobs_per_second(1.0, 0.0, 2.0), 0.0);
        assert_eq!(jobs_per_second(0.5, 2.0, f64::NAN), 0.0);
        assert_eq!(jobs_per_second(f64::NAN, 2.0, 4.0), 2.0);
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
