//! The queues' depths (`GetQueueAttributes`), read in one place for everything in the worker that
//! needs them.
//!
//! Three loops want the jobs queue's counts: the estimate of sharers (every
//! [`super::sharers::EVERY`] while this replica holds jobs), the end-of-backlog check of the
//! handoff (at most every [`super::handoff::DEPTH_EVERY`] while a held-back replica has a job
//! waiting) and the `resume_chat_queue_messages` gauge ([`poll`], every [`EVERY`], with the DLQ's).
//! [`JobsDepth::read`] is their one reader: every reading sets the gauge, so the gauge is as
//! fresh as the freshest reading and its own poll asks only when no other loop read the queue in
//! the last half [`EVERY`]. The two control loops always read afresh (`fresh_within` zero): their
//! counts change within a second at a fleet's start-up, and a shared reading a second old gave
//! replicas a first estimate of 1.2 sharers instead of 5 (benchmark fleet3, 2026-12-03: start-up
//! 429s per replica 1.33–1.67 → 2.0–2.67, goodput 0.992–0.997 → 0.973–0.986). Callers that ask
//! at the same time wait for one request (the lock is held across it). A failed read is counted
//! in `resume_chat_sqs_errors_total`, returns `None` and leaves the last values in place.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Context, Queues};
use crate::metrics::Metrics;
use crate::queue::{MessageQueue, QueueDepth};

/// Between two readings of the gauge: dashboards and alerts look at minutes, not seconds.
const EVERY: Duration = Duration::from_secs(30);

/// The jobs queue's last reading and when it was taken (see the module doc).
#[derive(Default)]
pub struct JobsDepth {
    last: Mutex<Option<(Instant, QueueDepth)>>,
}

impl JobsDepth {
    /// The jobs queue's depth: the last reading if it is younger than `fresh_within` (never, when
    /// zero), else a new one. `None` if the read failed (counted; the last values stay).
    pub async fn read<Q: MessageQueue>(
        &self,
        queue: &Q,
        queues: &Queues,
        metrics: &Metrics,
        fresh_within: Duration,
    ) -> Option<QueueDepth> {
        let mut last = self.last.lock().await;
        if let Some((at, depth)) = *last
            && !fresh_within.is_zero()
            && at.elapsed() < fresh_within
        {
            return Some(depth);
        }
        let depth = read_into_gauge(queue, &queues.jobs, "jobs", metrics).await?;
        *last = Some((Instant::now(), depth));
        Some(depth)
    }
}

/// One `GetQueueAttributes` for `url`, into the gauge under `name`.
async fn read_into_gauge<Q: MessageQueue>(
    queue: &Q,
    url: &str,
    name: &str,
    metrics: &Metrics,
) -> Option<QueueDepth> {
    match queue.depth(url).await {
        Ok(d) => {
            for (state, n) in [
                ("visible", d.visible),
                ("in_flight", d.in_flight),
                ("delayed", d.delayed),
            ] {
                metrics
                    .queue_messages
                    .with_label_values(&[name, state])
                    .set(n as i64);
            }
            Some(d)
        }
        Err(e) => {
            metrics
                .sqs_errors
                .with_label_values(&["GetQueueAttributes", &e.code])
                .inc();
            None
        }
    }
}

/// Keeps the gauge of the jobs queue and the DLQ fresh until `stop`: the DLQ's is read every
/// [`EVERY`], the jobs queue's at most `1.5 ×` [`EVERY`] old (a reading of another loop younger
/// than half of it is reused).
pub async fn poll<Q: MessageQueue, C>(ctx: Arc<Context<Q, C>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        ctx.jobs_depth(EVERY / 2).await;
        if let Some(dlq) = &ctx.queues.dead_letter {
            read_into_gauge(&*ctx.queue, dlq, "dead_letter", &ctx.metrics).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::counted::Counted;
    use crate::queue::memory::MemoryQueue;
    use prometheus::{IntCounterVec, Opts};

    const FRESH: Duration = Duration::from_secs(1);

    fn setup() -> (Counted<MemoryQueue>, IntCounterVec, Queues, Metrics) {
        let requests = IntCounterVec::new(Opts::new("r", "r"), &["operation"]).unwrap();
        let queue = Counted::new(MemoryQueue::new(), requests.clone());
        let queues = Queues {
            jobs: "jobs".into(),
            results: "results".into(),
            dead_letter: None,
        };
        (queue, requests, queues, Metrics::new())
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_younger_than_the_callers_limit_is_shared_and_an_older_one_is_not() {
        let (queue, requests, queues, metrics) = setup();
        let calls = || requests.with_label_values(&["GetQueueAttributes"]).get();
        let jobs = JobsDepth::default();
        queue.inner().push("jobs", "a");
        let first = jobs.read(&queue, &queues, &metrics, FRESH).await;
        assert_eq!(first.map(|d| d.visible), Some(1));
        assert_eq!(calls(), 1);
        let visible = || {
            metrics
                .queue_messages
                .with_label_values(&["jobs", "visible"])
                .get()
        };
        assert_eq!(visible(), 1, "every reading sets the gauge");

        // Another loop, half a second later: the same reading, no request.
        queue.inner().push("jobs", "b");
        tokio::time::advance(FRESH / 2).await;
        let shared = jobs.read(&queue, &queues, &metrics, FRESH).await;
        assert_eq!(shared, first);
        assert_eq!(calls(), 1);

        // Past the limit: a new request, and the gauge follows it.
        tokio::time::advance(FRESH).await;
        let fresh = jobs.read(&queue, &queues, &metrics, FRESH).await;
        assert_eq!(fresh.map(|d| d.visible), Some(2));
        assert_eq!(calls(), 2);
        assert_eq!(visible(), 2);

        // Zero: always a new reading.
        jobs.read(&queue, &queues, &metrics, Duration::ZERO).await;
        assert_eq!(calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_is_counted_returns_none_and_leaves_the_last_values() {
        let (queue, _, queues, metrics) = setup();
        let jobs = JobsDepth::default();
        queue.inner().push("jobs", "a");
        jobs.read(&queue, &queues, &metrics, FRESH).await;
        queue.inner().mark_missing("jobs");
        tokio::time::advance(FRESH * 2).await;
        assert_eq!(jobs.read(&queue, &queues, &metrics, FRESH).await, None);
        let errors = metrics
            .sqs_errors
            .with_label_values(&[
                "GetQueueAttributes",
                "AWS.SimpleQueueService.NonExistentQueue",
            ])
            .get();
        assert_eq!(errors, 1);
        let visible = metrics
            .queue_messages
            .with_label_values(&["jobs", "visible"])
            .get();
        assert_eq!(visible, 1);
    }
}
