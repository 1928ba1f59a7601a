//! The receive loop. It takes in-flight slots first and asks SQS for exactly that many messages
//! (at most 10), so no message sits invisible waiting for a slot; long polls for 20 s; and races
//! every poll against shutdown, so SIGTERM aborts the poll at once.
//!
//! How much it holds follows what the limiters can start (see [`work_allowance`]): when every
//! instance is out of chat capacity, that is what their capacity machines allow, so start-chat
//! jobs wait in SQS rather than in a slot. While Connect refuses the worker's credentials
//! (`/readyz` says so) it takes one message per [`CREDENTIALS_PAUSE`], whose call probes whether
//! the credentials work again; the others wait in SQS untouched. Errors back off exponentially with full jitter (never spin); a missing queue or
//! denied access is logged clearly, turns `/readyz` to 503, and is retried slowly instead of
//! exiting into a crash loop.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tracing::{error, warn};

use super::Context;
use crate::connect::{ConnectApi, Operation};
use crate::queue::{MAX_BATCH, MessageQueue, QueueErrorKind};

const LONG_POLL: Duration = Duration::from_secs(20);
/// How much work a worker holds, in seconds at its limiters' current rates.
pub(crate) const LOOKAHEAD_SECS: f64 = 5.0;
const ALLOWANCE_PAUSE: Duration = Duration::from_millis(200);
/// Between receives while Connect refuses the worker's credentials: each receive takes one
/// job, whose call is the probe.
pub const CREDENTIALS_PAUSE: Duration = Duration::from_secs(5);

/// Jobs worth holding: what the limiters can start in [`LOOKAHEAD_SECS`] (start chats at the
/// slower of the rate and capacity pacers, associations at theirs, weighted by the recent mix of
/// jobs, see [`super::mix`]), at least one. With a fleet sharing
/// one quota, a replica whose share is small holds few jobs, so the backlog does not pile up in
/// slow replicas at the end of a burst.
///
/// At the end of a backlog a held-back replica holds only what its rate starts by the time the
/// fleet is done (see [`super::handoff`], "End of a backlog"; at least one job, so a fleet whose
/// replicas are all held back by a foreign caller never stops receiving), and no extra message:
/// otherwise the jobs other held-back replicas hand off would bounce between them instead of
/// reaching the replicas that run out first.
/// Returns (allowance, extra messages one receive may add on top of it).
fn work_allowance<Q, C>(ctx: &Context<Q, C>) -> (usize, usize) {
    let rate = super::mix::jobs_per_second(
        ctx.mix.start_share(),
        ctx.start_rate(Operation::StartChatContact),
        ctx.start_rate(Operation::CreatePersistentContactAssociation),
    );
    if let Some(finish) = ctx.handoff.fleet_finish()
        && super::handoff::held_back(ctx, Operation::StartChatContact)
    {
        return (super::handoff::keep_until(rate, finish).max(1), 0);
    }
    (((rate * LOOKAHEAD_SECS).ceil() as usize).max(1), 1)
}

/// Receives until `ctx.stop_receiving`; spawns one task per message.
pub async fn run<Q: MessageQueue, C: ConnectApi>(
    ctx: Arc<Context<Q, C>>,
    slots: Arc<Semaphore>,
    tasks: tokio_util::task::TaskTracker,
) {
    let mut failures: u32 = 0;
    let mut backlog = false;
    loop {
        let Some(first) = wait_for_slot(&ctx, &slots).await else {
            return;
        };
        // Hold only a few seconds of work: jobs beyond what the limiters can start soon stay in
        // SQS, where another replica with headroom can take them.
        let busy = ctx
            .settings
            .max_in_flight
            .saturating_sub(slots.available_permits());
        let (allowance, extra) = work_allowance(&ctx);
        if busy + 1 > allowance + extra {
            drop(first);
            if ctx
                .until_stopped(tokio::time::sleep(ALLOWANCE_PAUSE))
                .await
                .is_none()
            {
                return;
            }
            // Busy is healthy: keep readiness fresh, as when every slot is taken.
            ctx.health.receive_succeeded().await;
            ctx.metrics.last_receive_success.set(unix_now());
            continue;
        }
        let mut permits = vec![first];

        let mut max = MAX_BATCH.min(allowance + extra - busy);
        if ctx.health.connect_credentials_failing() {
            if ctx
                .until_stopped(tokio::time::sleep(CREDENTIALS_PAUSE))
                .await
                .is_none()
            {
                return;
            }
            max = 1;
        }
        while permits.len() < max {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }

        let visibility = ctx.settings.visibility_timeout;
        // While there is a backlog (the last receive got all it asked for), what SQS hides for
        // this receive counts as held until it is registered: the estimate of sharers reads the
        // queue's hidden messages against ours meanwhile. A long poll on a drained queue hides
        // nothing and counts nothing.
        let asked = permits.len();
        let receiving = ctx.inflight.receiving(if backlog { asked } else { 0 });
        let received = ctx
            .until_stopped(ctx.queue.receive(
                &ctx.queues.jobs,
                permits.len(),
                LONG_POLL,
                visibility,
            ))
            .await;
        let Some(received) = received else { return };
        match received {
            Ok(messages) => {
                failures = 0;
                backlog = messages.len() >= asked;
                ctx.health.receive_succeeded().await;
                ctx.metrics.last_receive_success.set(unix_now());
                ctx.metrics.jobs_received.inc_by(messages.len() as u64);
                for msg in messages {
                    let Some(permit) = permits.pop() else {
                        // SQS returned more than asked for: give the extra back at once.
                        warn!("received more messages than requested; releasing the extra one");
                        let _ = ctx
                            .queue
                            .change_visibility_batch(
                                &ctx.queues.jobs,
                                &[(msg.receipt_handle, Duration::ZERO)],
                            )
                            .await;
                        continue;
                    };
                    let id = ctx.inflight.register(&msg.receipt_handle, visibility).await;
                    ctx.inflight.set_group(id, msg.group_id.clone()).await;
                    ctx.metrics.jobs_in_flight.inc();
                    // A FIFO group's messages take their places in the order SQS returned them.
                    let place = msg.group_id.as_deref().map(|g| ctx.groups.enter(g));
                    let task_ctx = ctx.clone();
                    tasks.spawn(async move {
                        super::process::process(task_ctx.clone(), msg, id, place).await;
                        task_ctx.metrics.jobs_in_flight.dec();
                        drop(permit);
                    });
                }
                drop(receiving);
            }
            Err(e) => {
                drop(receiving);
                failures = failures.saturating_add(1);
                ctx.metrics
                    .sqs_errors
                    .with_label_values(&["ReceiveMessage", &e.code])
                    .inc();
                let hard = matches!(
                    e.kind,
                    QueueErrorKind::QueueMissing | QueueErrorKind::AccessDenied
                );
                if hard {
                    let why = match e.kind {
                        QueueErrorKind::QueueMissing => format!(
                            "the jobs queue does not exist: {} ({})",
                            ctx.queues.jobs, e.code
                        ),
                        _ => format!(
                            "access to the jobs queue is denied: {} ({})",
                            ctx.queues.jobs, e.code
                        ),
                    };
                    error!(error = %e, "{why}; check JOBS_QUEUE_URL and the task role");
                    ctx.health.receive_failed_hard(why).await;
                } else {
                    warn!(error = %e, failures, "receiving jobs failed; backing off");
                }
                drop(permits);
                let delay = receive_backoff(failures, hard, rand::random());
                if ctx.until_stopped(tokio::time::sleep(delay)).await.is_none() {
                    return;
                }
            }
        }
    }
}

/// Waits for a free slot. All slots busy is a healthy state, not a stalled poller: while waiting,
/// readiness and the last-receive gauge are kept fresh so neither `/readyz` nor the
/// no-successful-receive alert fire on a saturated worker. `None` when receiving stops.
async fn wait_for_slot<Q: MessageQueue, C: ConnectApi>(
    ctx: &Context<Q, C>,
    slots: &Arc<Semaphore>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        let acquire = tokio::time::timeout(Duration::from_secs(5), slots.clone().acquire_owned());
        match ctx.until_stopped(acquire).await? {
            Ok(permit) => return permit.ok(),
            Err(_saturated) => {
                ctx.health.receive_succeeded().await;
                ctx.metrics.last_receive_success.set(unix_now());
            }
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Backoff after the `failures`-th consecutive receive error: full jitter over an envelope that
/// doubles from 200 ms to 20 s (60 s for a missing queue or denied access, which need a human),
/// but never below 100 ms, so the loop cannot spin.
pub fn receive_backoff(failures: u32, hard: bool, jitter: f64) -> Duration {
    let cap = if hard {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(20)
    };
    let envelope = Duration::from_millis(200)
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(cap);
    crate::decide::full_jitter(envelope, jitter).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_backoff_grows_is_capped_and_never_spins() {
        assert_eq!(receive_backoff(1, false, 0.0), Duration::from_millis(100));
        assert_eq!(receive_backoff(1, false, 0.999).as_millis(), 199);
        assert_eq!(receive_backoff(4, false, 0.5), Duration::from_millis(800));
        assert_eq!(receive_backoff(100, false, 0.999).as_secs(), 19);
        assert_eq!(receive_backoff(100, true, 0.999).as_secs(), 59);
    }
}
