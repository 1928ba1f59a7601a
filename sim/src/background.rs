//! The background caller: another client of the same account (a website widget, another
//! service) calling StartChatContact at `--background-rate` per second. It draws from the
//! same token bucket on its own tokio timer and is counted apart; it creates no chats.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{MissedTickBehavior, interval};

use crate::core::Core;

/// Runs until the task is aborted. A rate of 0 (or a non-finite one) returns at once.
pub async fn run(core: Arc<Core>, rate: f64) {
    if !(rate.is_finite() && rate > 0.0) {
        return;
    }
    let mut ticks = interval(Duration::from_secs_f64(1.0 / rate));
    // After a stall, go on at the set rate rather than firing the missed calls at once.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick fires immediately; skip it so the first call comes one period in.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        core.background_attempt();
    }
}
