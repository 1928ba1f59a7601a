//! How many replicas of ours share the Connect quota, estimated from SQS, for the rate limiters.
//!
//! A replica cannot tell from Connect's answers whether the other callers draining the quota are
//! replicas of its own fleet (which probe for capacity too, so each must probe gently) or a
//! foreign caller (whose share should be taken back quickly once it leaves): a 429 looks the same.
//! The jobs queue tells them apart. Every replica of ours holds the jobs it works as in-flight
//! messages of that queue, and a foreign caller holds none, so
//! `ApproximateNumberOfMessagesNotVisible / our in-flight jobs` estimates the replicas working the
//! backlog. Within a second of this replica's first jobs in flight, then every [`EVERY`] while it
//! has jobs in flight, [`run`] reads the queue's depth and tells both limiters
//! ([`crate::rate::AdaptiveLimiter::set_sharers`]).
//!
//! The estimate errs high, never below 1: messages given back to SQS with a visibility delay
//! (capacity waits) count as not visible too, and SQS's counts are approximate. A high estimate
//! slows the probe above the plateau and splits the burst credit; it never raises the rate.
//! SQS counts at some instant of the request while the receiver goes on receiving, so "ours"
//! is the larger of what this replica holds before and after the request, a receive on the
//! wire included ([`super::inflight::InFlight::held`]): over the count
//! before it alone, a lone replica's own new jobs looked like a sibling's in the first seconds
//! of a run (1.3-1.6 in the benchmark, 2026-12-03), and its burst credit was split by that.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Context;
use crate::connect::Operation;
use crate::queue::MessageQueue;

/// Between two estimates: a fleet's make-up changes over tens of seconds (tasks starting,
/// scaling), and one `GetQueueAttributes` per 5 s per replica costs nothing.
pub const EVERY: Duration = Duration::from_secs(5);

/// The estimate from the queue's not-visible count and ours: at least 1.
pub fn estimate(not_visible: u64, ours: usize) -> f64 {
    if ours == 0 {
        return 1.0;
    }
    (not_visible as f64 / ours as f64).max(1.0)
}

/// How often the loop looks whether an estimate is due: the first one goes out within this of
/// the first jobs in flight, the ones after every [`EVERY`].
const LOOK: Duration = Duration::from_secs(1);

/// Updates the limiters' sharer estimate until `stop`. While this replica holds no job the last
/// estimate stays (the counts say nothing then).
pub async fn run<Q: MessageQueue, C>(ctx: Arc<Context<Q, C>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(LOOK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if last.is_some_and(|t| t.elapsed() < EVERY) {
            continue;
        }
        // Holding no job (a receive on the wire is not one yet), the counts say nothing.
        if ctx.inflight.is_empty().await {
            continue;
        }
        let before = ctx.inflight.held().await;
        last = Some(tokio::time::Instant::now());
        let depth = tokio::select! {
            _ = stop.cancelled() => return,
            d = ctx.jobs_depth(Duration::ZERO) => d,
        };
        // SQS counts at some instant of the request's round trip, and the receiver goes on
        // receiving meanwhile (fastest in the first seconds, when the first estimate is taken):
        // over what we held before the request, our own new messages would count as a
        // sibling's (a lone replica estimated 1.3-1.6 in the benchmark, which split its burst
        // credit). What we hold at either end, a receive on the wire included (SQS hides its
        // messages before they reach us), bounds what we held when SQS counted.
        let after = ctx.inflight.held().await;
        if let Some(d) = depth {
            let n = estimate(d.in_flight, before.max(after));
            for op in Operation::ALL {
                ctx.limiter(op).set_sharers(n);
            }
            ctx.metrics.rate_sharers.set(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_queues_in_flight_over_ours_and_never_below_one() {
        assert_eq!(estimate(30, 10), 3.0);
        assert_eq!(estimate(5, 10), 1.0, "counts lag: never below one");
        assert_eq!(estimate(0, 0), 1.0);
        assert_eq!(estimate(12, 0), 1.0);
        assert_eq!(estimate(15, 6), 2.5);
    }
}
