//! The background caller: another client of the same account (a website widget, another
//! service) calling `--background-operation` at `--background-rate` per second, plus the
//! `--background-schedule` segments (a neighbour that comes and goes; times count from the start
//! or the last reset). It draws from the same token bucket on its own tokio timer and is counted
//! apart; it creates chats only with `--background-instance`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;

use crate::core::Core;
use crate::schedule::{Segment, next_change, rate_at};

/// The longest the caller sleeps without looking at the clock again: a reset moves the
/// schedule's origin, and this bounds how late it notices.
const MAX_IDLE: Duration = Duration::from_millis(100);
const MIN_SLEEP: Duration = Duration::from_millis(1);

/// Runs until the task is aborted. Returns at once when the caller never calls.
pub async fn run(core: Arc<Core>, rate: f64, schedule: Vec<Segment>) {
    let calls = |r: f64| r.is_finite() && r > 0.0;
    if !calls(rate) && !schedule.iter().any(|s| calls(s.rate)) {
        return;
    }
    // The next call is due once `credit` reaches 1: credit grows at the current rate, so a
    // change of rate takes effect at once and a steady rate gives evenly spaced calls.
    let mut credit = 0.0_f64;
    let mut last = core.elapsed().as_secs_f64();
    loop {
        let t = core.elapsed().as_secs_f64();
        if t < last {
            // A reset: the schedule starts over.
            credit = 0.0;
        } else {
            credit += (t - last) * rate_at(rate, &schedule, last);
        }
        last = t;
        // A hair below 1 is due too: float sums of (elapsed × rate) rarely land on 1 exactly.
        if credit >= 1.0 - 1e-9 {
            credit = (credit - 1.0).max(0.0);
            // After a stall, go on at the set rate rather than firing the missed calls at once.
            credit = credit.min(1.0);
            core.background_call();
            continue;
        }
        let r = rate_at(rate, &schedule, t);
        let wait = if calls(r) {
            Duration::from_secs_f64((1.0 - credit) / r)
        } else {
            next_change(&schedule, t).map_or(MAX_IDLE, |b| Duration::from_secs_f64(b - t))
        };
        // At least a millisecond (tokio's timer resolution): a zero sleep would spin on the
        // same instant under paused time.
        sleep(wait.clamp(MIN_SLEEP, MAX_IDLE)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    #[tokio::test(start_paused = true)]
    async fn the_neighbour_calls_only_while_its_schedule_says() {
        let config = SimConfig {
            start_chat_rate: 1000.0,
            start_chat_burst: 1000,
            background_schedule: vec!["2:4:5".parse().expect("valid")],
            ..SimConfig::default()
        };
        let core = Arc::new(Core::new(config.clone()));
        let task = tokio::spawn(run(
            Arc::clone(&core),
            0.0,
            config.background_schedule.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(1990)).await;
        assert_eq!(core.stats().background.attempted, 0);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s = core.stats();
        // 5/s for 2 s; the per-second timeline shows it in seconds 2 and 3 only.
        assert!((9..=10).contains(&s.background.attempted), "{s:?}");
        let per_second: Vec<u64> = s.timeline.iter().map(|t| t.background.accepted).collect();
        assert_eq!(per_second.iter().sum::<u64>(), s.background.attempted);
        assert_eq!(per_second[..2], [0, 0]);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_background_caller_can_use_the_association_quota() {
        let config = SimConfig {
            associate_rate: 0.0,
            associate_burst: 3,
            background_rate: 10.0,
            background_operation: crate::config::BackgroundOperation::Associate,
            ..SimConfig::default()
        };
        let core = Arc::new(Core::new(config));
        let task = tokio::spawn(run(Arc::clone(&core), 10.0, Vec::new()));
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let s = core.stats().background;
        // Three tokens in the association bucket, none taken from StartChatContact's.
        assert_eq!((s.accepted, s.refused), (3, 7));
        task.abort();
    }
}
