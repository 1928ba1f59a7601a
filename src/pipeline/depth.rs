//! Polls `GetQueueAttributes` for the jobs queue and the DLQ every 30 s into the
//! `resume_chat_queue_messages` gauge, so dashboards and alerts see backlog and DLQ depth without a
//! separate CloudWatch exporter. Failures only leave the last values in place.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Queues;
use crate::metrics::Metrics;
use crate::queue::MessageQueue;

const EVERY: Duration = Duration::from_secs(30);

pub async fn poll<Q: MessageQueue>(
    queue: Arc<Q>,
    queues: Queues,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let targets: Vec<(&str, String)> = std::iter::once(("jobs", queues.jobs.clone()))
        .chain(queues.dead_letter.clone().map(|d| ("dead_letter", d)))
        .collect();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (name, url) in &targets {
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
                }
                Err(e) => {
                    metrics
                        .sqs_errors
                        .with_label_values(&["GetQueueAttributes", &e.code])
                        .inc();
                }
            }
        }
    }
}
