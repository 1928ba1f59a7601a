//! `resume-chat-worker dlq replay`: moves messages from the dead-letter queue back to the jobs
//! queue, after the cause (a Connect outage, a wrong flow id) has been fixed.
//!
//! Mechanism of a replay: receive up to 10 messages from the DLQ (1 s long poll, hidden for
//! 60 s) → send each body with its string message attributes to the jobs queue (batches of at
//! most 10 entries and 256 KiB, transient failures re-sent) → delete from the DLQ only the messages
//! whose send succeeded. It stops when two receives in a row come back empty, or after `--max`
//! messages. A message whose send failed is not deleted: it stays in the DLQ and becomes visible
//! again after 60 s (this run does not try it again).
//!
//! Never losing a message is the invariant: a message leaves the DLQ only after its copy is in
//! the jobs queue. A crash (or a failed delete) between the two leaves it in both queues, so it
//! may be processed twice; that is harmless, because the worker derives the Connect `ClientToken`
//! from the jobId, so the second run returns the same chat instead of opening another one. Within
//! one run a message seen again after a failed delete is only deleted, not sent again.
//!
//! A replayed job keeps its jobId, so the worker publishes a second result for that jobId (the
//! first was the failure that sent it to the DLQ). Consumers dedupe by jobId and should let the
//! later result (by `completedAt`) win.
//!
//! To a FIFO jobs queue (`.fifo`), each copy carries `MessageGroupId` (its jobId) and a
//! `MessageDeduplicationId` (see `queue::fifo` and `replayed`).
//!
//! `--dry-run` moves nothing: it reports the DLQ's approximate depth (`GetQueueAttributes`) and a
//! sample of up to 10 jobIds, read by receiving with a 5 s visibility and releasing the messages
//! at once (visibility 0); nothing is deleted. The sample receive does raise the messages'
//! receive counts in the DLQ, which only matters if the DLQ itself has a redrive policy.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use super::CliError;
use super::batch::{RetryPolicy, send_batch_with_retry, split_batches};
use super::enqueue::{required_url, sqs_queue};
use crate::queue::{
    MAX_BATCH, MessageQueue, OutgoingMessage, QueueError, QueueErrorKind, ReceivedMessage, fifo,
};

/// Dead-letter queue tools.
#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// Move messages from the dead-letter queue back to the jobs queue.
    Replay(ReplayArgs),
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// URL of the dead-letter queue to read from.
    #[arg(long, env = "DEAD_LETTER_QUEUE_URL")]
    pub dlq_url: Option<String>,
    /// URL of the jobs queue to move the messages to.
    #[arg(long, env = "JOBS_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// Only report how many messages would be moved, with a sample of their jobIds.
    #[arg(long)]
    pub dry_run: bool,
    /// Move at most this many messages.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
}

/// Timings and limits of a replay (the defaults are the command's; tests shorten the pauses).
#[derive(Clone, Copy, Debug)]
pub struct ReplayOptions {
    pub max: Option<u64>,
    pub receive_wait: Duration,
    /// How long received DLQ messages stay hidden while they are copied.
    pub visibility: Duration,
    /// Consecutive empty receives that end the replay.
    pub empty_receives_to_stop: u32,
    pub retry: RetryPolicy,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            max: None,
            receive_wait: Duration::from_secs(1),
            visibility: Duration::from_secs(60),
            empty_receives_to_stop: 2,
            retry: RetryPolicy::default(),
        }
    }
}

/// A DLQ message that could not be moved (it stays in the DLQ).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotMoved {
    pub message_id: String,
    pub job_id: Option<String>,
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Copied to the jobs queue.
    pub moved: u64,
    pub not_moved: Vec<NotMoved>,
    /// Copied, but the delete from the DLQ failed: they are in both queues.
    pub not_deleted: u64,
    /// Why the replay stopped early (queue missing, access denied, receive failing), if it did.
    pub stopped: Option<String>,
}

/// What `--dry-run` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DryRun {
    /// Visible messages, capped by `--max`.
    pub would_move: u64,
    /// Messages hidden right now (being received by someone), not counted above.
    pub in_flight: u64,
    /// jobIds of up to 10 messages.
    pub sample: Vec<String>,
}

/// Message attribute a replay to a FIFO jobs queue sets to the DLQ message's id (see
/// `replayed`).
pub const REPLAYED_FROM_ATTRIBUTE: &str = "resumeChatReplayedFrom";

/// The copy of a DLQ message for the jobs queue: its body and attributes. To a FIFO jobs queue
/// it also carries [`REPLAYED_FROM_ATTRIBUTE`] = the DLQ message id (replacing an earlier one),
/// because its deduplication id is derived from body and attributes (`queue::fifo`): without
/// it, a job replayed within 5 minutes of its first send would be dropped by SQS as a duplicate
/// of itself, while a re-run of the same replay (a crash between send and delete) still
/// deduplicates.
fn replayed(m: &ReceivedMessage, fifo: bool) -> OutgoingMessage {
    let mut attributes = m.attributes.clone();
    if fifo {
        attributes.retain(|(k, _)| k != REPLAYED_FROM_ATTRIBUTE);
        attributes.push((REPLAYED_FROM_ATTRIBUTE.to_owned(), m.message_id.clone()));
    }
    OutgoingMessage {
        body: m.body.clone(),
        attributes,
    }
}

/// The jobId of a DLQ message: from the body, else from its `jobId` attribute.
pub fn job_id_of(m: &ReceivedMessage) -> Option<String> {
    let from_body = serde_json::from_str::<serde_json::Value>(&m.body)
        .ok()
        .and_then(|v| v.get("jobId").and_then(|id| id.as_str()).map(str::to_owned));
    from_body.or_else(|| {
        m.attributes
            .iter()
            .find(|(k, _)| k == "jobId")
            .map(|(_, v)| v.clone())
    })
}

/// Counts and samples the DLQ without moving or deleting anything.
pub async fn dry_run<Q: MessageQueue>(
    queue: &Q,
    dlq_url: &str,
    max: Option<u64>,
) -> Result<DryRun, QueueError> {
    let depth = queue.depth(dlq_url).await?;
    let peek = queue
        .receive(
            dlq_url,
            MAX_BATCH,
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .await?;
    let sample = peek
        .iter()
        .map(|m| job_id_of(m).unwrap_or_else(|| format!("(no jobId; message {})", m.message_id)))
        .collect();
    // Release at once; if this fails they come back by themselves after 5 s.
    let release: Vec<(String, Duration)> = peek
        .iter()
        .map(|m| (m.receipt_handle.clone(), Duration::ZERO))
        .collect();
    if !release.is_empty() {
        let _ = queue.change_visibility_batch(dlq_url, &release).await;
    }
    let would_move = max.map_or(depth.visible, |m| depth.visible.min(m));
    Ok(DryRun {
        would_move,
        in_flight: depth.in_flight,
        sample,
    })
}

/// Moves messages from `dlq_url` to `jobs_url`; see the module doc.
pub async fn replay<Q: MessageQueue>(
    queue: &Q,
    dlq_url: &str,
    jobs_url: &str,
    options: ReplayOptions,
) -> ReplaySummary {
    let mut summary = ReplaySummary::default();
    // Message ids copied in this run, and ids that failed: a message seen again is not re-sent.
    let mut copied: HashSet<String> = HashSet::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut empty_receives = 0;
    loop {
        let want = options.max.map_or(MAX_BATCH as u64, |m| {
            m.saturating_sub(summary.moved).min(MAX_BATCH as u64)
        });
        if want == 0 {
            break;
        }
        let received = match receive_with_retry(queue, dlq_url, want as usize, options).await {
            Ok(r) => r,
            Err(e) => {
                summary.stopped = Some(e.to_string());
                break;
            }
        };
        if received.is_empty() {
            empty_receives += 1;
            if empty_receives >= options.empty_receives_to_stop {
                break;
            }
            continue;
        }
        empty_receives = 0;

        let mut to_delete: Vec<String> = Vec::new();
        let mut fresh: Vec<ReceivedMessage> = Vec::new();
        for m in received {
            if copied.contains(&m.message_id) {
                to_delete.push(m.receipt_handle);
            } else if !failed.contains(&m.message_id) {
                fresh.push(m);
            }
        }
        let outgoing: Vec<OutgoingMessage> = fresh
            .iter()
            .map(|m| replayed(m, fifo::is_fifo(jobs_url)))
            .collect();
        for range in split_batches(&outgoing) {
            let (Some(batch), Some(originals)) =
                (outgoing.get(range.clone()), fresh.get(range.clone()))
            else {
                continue;
            };
            if summary.stopped.is_some() {
                release(queue, dlq_url, originals).await;
                continue;
            }
            let outcome = send_batch_with_retry(queue, jobs_url, batch, options.retry).await;
            for &i in &outcome.sent {
                if let Some(m) = originals.get(i) {
                    copied.insert(m.message_id.clone());
                    to_delete.push(m.receipt_handle.clone());
                    summary.moved += 1;
                }
            }
            for f in &outcome.failed {
                if let Some(m) = originals.get(f.index) {
                    failed.insert(m.message_id.clone());
                    summary.not_moved.push(NotMoved {
                        message_id: m.message_id.clone(),
                        job_id: job_id_of(m),
                        code: f.code.clone(),
                        message: f.message.clone(),
                    });
                }
            }
            if let Some(e) = outcome.fatal {
                // The operator will fix the queue and run again: give these back at once.
                let held: Vec<ReceivedMessage> = outcome
                    .failed
                    .iter()
                    .filter_map(|f| originals.get(f.index).cloned())
                    .collect();
                release(queue, dlq_url, &held).await;
                summary.stopped = Some(e.to_string());
            }
        }
        summary.not_deleted += delete_with_retry(queue, dlq_url, &to_delete, options.retry).await;
        if summary.stopped.is_some() {
            break;
        }
    }
    summary
}

async fn receive_with_retry<Q: MessageQueue>(
    queue: &Q,
    dlq_url: &str,
    max: usize,
    options: ReplayOptions,
) -> Result<Vec<ReceivedMessage>, QueueError> {
    let mut attempt = 0;
    loop {
        match queue
            .receive(dlq_url, max, options.receive_wait, options.visibility)
            .await
        {
            Err(e)
                if e.kind == QueueErrorKind::Transient && attempt + 1 < options.retry.attempts =>
            {
                tokio::time::sleep(
                    options
                        .retry
                        .first_pause
                        .saturating_mul(1 << attempt.min(16)),
                )
                .await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Deletes by receipt handle, re-trying what failed transiently; returns how many stayed.
async fn delete_with_retry<Q: MessageQueue>(
    queue: &Q,
    dlq_url: &str,
    receipts: &[String],
    retry: RetryPolicy,
) -> u64 {
    let mut left = 0;
    for chunk in receipts.chunks(MAX_BATCH) {
        let mut pending: Vec<String> = chunk.to_vec();
        for attempt in 0..retry.attempts.max(1) {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(retry.first_pause.saturating_mul(1 << (attempt - 1).min(16)))
                    .await;
            }
            match queue.delete_batch(dlq_url, &pending).await {
                Ok(failures) => {
                    // A sender fault (stale receipt handle) will not pass on a retry.
                    left += failures.iter().filter(|f| f.sender_fault).count() as u64;
                    pending = failures
                        .iter()
                        .filter(|f| !f.sender_fault)
                        .filter_map(|f| pending.get(f.index).cloned())
                        .collect();
                }
                Err(e) if e.kind != QueueErrorKind::Transient => break,
                Err(_) => {}
            }
        }
        left += pending.len() as u64;
    }
    left
}

/// Makes received messages visible again at once (best effort).
async fn release<Q: MessageQueue>(queue: &Q, dlq_url: &str, messages: &[ReceivedMessage]) {
    let entries: Vec<(String, Duration)> = messages
        .iter()
        .map(|m| (m.receipt_handle.clone(), Duration::ZERO))
        .collect();
    if !entries.is_empty() {
        let _ = queue.change_visibility_batch(dlq_url, &entries).await;
    }
}

/// Runs `dlq replay`: exit 0 when everything received was moved, 1 otherwise, 2 for a missing setting.
pub async fn command(command: DlqCommand) -> Result<ExitCode, CliError> {
    let DlqCommand::Replay(args) = command;
    let dlq_url = required_url(
        args.dlq_url.as_deref(),
        "DEAD_LETTER_QUEUE_URL",
        "--dlq-url",
    )?;
    let jobs_url = required_url(args.queue_url.as_deref(), "JOBS_QUEUE_URL", "--queue-url")?;
    let queue = sqs_queue().await?;
    if args.dry_run {
        let found = dry_run(&queue, &dlq_url, args.max)
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?;
        println!(
            "dry run: would move {} messages from DLQ to jobs queue (nothing moved)",
            found.would_move
        );
        if found.in_flight > 0 {
            println!(
                "{} more messages are in flight in the DLQ (hidden by a receiver) and not counted",
                found.in_flight
            );
        }
        if !found.sample.is_empty() {
            println!("sample jobIds: {}", found.sample.join(", "));
        }
        return Ok(ExitCode::SUCCESS);
    }

    let summary = replay(
        &queue,
        &dlq_url,
        &jobs_url,
        ReplayOptions {
            max: args.max,
            ..ReplayOptions::default()
        },
    )
    .await;
    println!("moved {} messages from DLQ to jobs queue", summary.moved);
    for n in summary.not_moved.iter().take(20) {
        let job = n
            .job_id
            .as_deref()
            .map(|id| format!(" (jobId {id})"))
            .unwrap_or_default();
        eprintln!(
            "message {}{job}: not moved: {}: {} (it stays in the DLQ)",
            n.message_id, n.code, n.message
        );
    }
    if summary.not_deleted > 0 {
        eprintln!(
            "warning: {} messages were copied but could not be deleted from the DLQ; they will be \
             visible there again (a duplicate job is harmless: same jobId, same chat)",
            summary.not_deleted
        );
    }
    match (summary.stopped, summary.not_moved.len()) {
        (Some(why), _) => Err(CliError::Failed(format!("replay stopped: {why}"))),
        (None, 0) => Ok(ExitCode::SUCCESS),
        (None, n) => Err(CliError::Failed(format!(
            "{n} messages could not be moved; they stay in the DLQ"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_replay_to_a_fifo_queue_names_the_dlq_message_once() {
        let mut m = super::ReceivedMessage {
            message_id: "dlq-msg-2".into(),
            receipt_handle: "r".into(),
            body: "{}".into(),
            receive_count: 1,
            sent_timestamp_ms: None,
            group_id: None,
            attributes: vec![
                ("jobId".into(), "j".into()),
                (super::REPLAYED_FROM_ATTRIBUTE.into(), "dlq-msg-1".into()),
            ],
        };
        let fifo = super::replayed(&m, true);
        assert_eq!(
            fifo.attributes,
            vec![
                ("jobId".to_owned(), "j".to_owned()),
                (
                    super::REPLAYED_FROM_ATTRIBUTE.to_owned(),
                    "dlq-msg-2".to_owned()
                ),
            ]
        );
        m.attributes.truncate(1);
        // A standard queue gets the message as it was.
        assert_eq!(super::replayed(&m, false).attributes, m.attributes);
    }

    use super::super::batch::testing::{FlakyQueue, SendPlan};
    use super::*;
    use crate::queue::memory::MemoryQueue;

    const DLQ: &str = "memory://dlq";
    const JOBS: &str = "memory://jobs";

    fn body(id: &str) -> String {
        format!(r#"{{"jobId":"{id}","sourceContactId":"c","participant":{{"displayName":"Ana"}}}}"#)
    }

    fn options() -> ReplayOptions {
        ReplayOptions {
            retry: RetryPolicy {
                attempts: 3,
                first_pause: Duration::from_millis(10),
            },
            ..ReplayOptions::default()
        }
    }

    fn fill(q: &MemoryQueue, n: usize) {
        for i in 0..n {
            q.push(DLQ, body(&format!("d{i}")));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn replay_moves_every_message_with_its_body_and_attributes() {
        let q = FlakyQueue::default();
        fill(&q.inner, 23);
        let tagged = vec![
            ("jobId".to_owned(), "tagged".to_owned()),
            ("tenant".to_owned(), "t1".to_owned()),
        ];
        q.inner
            .send_batch(
                DLQ,
                &[OutgoingMessage {
                    body: body("tagged"),
                    attributes: tagged.clone(),
                }],
            )
            .await
            .unwrap();
        let summary = replay(&q, DLQ, JOBS, options()).await;
        assert_eq!(
            summary,
            ReplaySummary {
                moved: 24,
                ..Default::default()
            }
        );
        assert!(q.inner.is_empty(DLQ));
        let mut bodies = q.inner.bodies(JOBS);
        bodies.sort();
        let mut expected: Vec<String> = (0..23)
            .map(|i| body(&format!("d{i}")))
            .chain([body("tagged")])
            .collect();
        expected.sort();
        assert_eq!(bodies, expected);
        let moved_tagged = q
            .inner
            .messages(JOBS)
            .into_iter()
            .find(|(b, _, _)| *b == body("tagged"));
        assert_eq!(moved_tagged.map(|(_, a, _)| a), Some(tagged));
    }

    #[tokio::test(start_paused = true)]
    async fn replay_stops_at_max() {
        let q = FlakyQueue::default();
        fill(&q.inner, 25);
        let summary = replay(
            &q,
            DLQ,
            JOBS,
            ReplayOptions {
                max: Some(12),
                ..options()
            },
        )
        .await;
        assert_eq!(summary.moved, 12);
        assert_eq!(q.inner.len(JOBS), 12);
        assert_eq!(q.inner.len(DLQ), 13);
        // Receives asked for 10 and then only the 2 still allowed.
        assert_eq!(q.calls(), vec![10, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_whose_send_failed_stays_in_the_dlq() {
        let q = FlakyQueue::new(vec![SendPlan::FailEntries(vec![(1, true)])]);
        fill(&q.inner, 3);
        let summary = replay(&q, DLQ, JOBS, options()).await;
        assert_eq!(summary.moved, 2);
        assert_eq!(summary.not_moved.len(), 1);
        assert_eq!(summary.not_moved[0].job_id.as_deref(), Some("d1"));
        assert_eq!(q.inner.bodies(DLQ), vec![body("d1")]);
        assert_eq!(q.inner.len(JOBS), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_send_failures_are_retried_and_nothing_is_lost() {
        let q = FlakyQueue::new(vec![
            SendPlan::FailCall(QueueErrorKind::Transient),
            SendPlan::FailEntries(vec![(0, false)]),
        ]);
        fill(&q.inner, 5);
        let summary = replay(&q, DLQ, JOBS, options()).await;
        assert_eq!(
            summary,
            ReplaySummary {
                moved: 5,
                ..Default::default()
            }
        );
        assert!(q.inner.is_empty(DLQ));
        assert_eq!(q.inner.len(JOBS), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_jobs_queue_stops_the_replay_and_releases_what_it_held() {
        let q = FlakyQueue::new(vec![SendPlan::FailCall(QueueErrorKind::QueueMissing)]);
        fill(&q.inner, 4);
        let summary = replay(&q, DLQ, JOBS, options()).await;
        assert_eq!(summary.moved, 0);
        assert!(summary.stopped.is_some());
        assert_eq!(q.inner.len(DLQ), 4, "nothing deleted");
        assert_eq!(
            q.inner.depth(DLQ).await.unwrap().visible,
            4,
            "released at once"
        );
        assert!(q.inner.is_empty(JOBS));
    }

    #[tokio::test(start_paused = true)]
    async fn dry_run_counts_and_samples_without_moving_or_hiding_anything() {
        let q = MemoryQueue::new();
        fill(&q, 14);
        let found = dry_run(&q, DLQ, None).await.unwrap();
        assert_eq!(found.would_move, 14);
        assert_eq!(found.in_flight, 0);
        assert_eq!(
            found.sample,
            (0..10).map(|i| format!("d{i}")).collect::<Vec<_>>()
        );
        assert_eq!(q.len(DLQ), 14);
        assert!(q.is_empty(JOBS));
        // Released at once: all 14 are visible again.
        assert_eq!(q.depth(DLQ).await.unwrap().visible, 14);
        assert_eq!(dry_run(&q, DLQ, Some(3)).await.unwrap().would_move, 3);
    }

    #[test]
    fn job_id_comes_from_the_body_or_else_the_attribute() {
        let mut m = ReceivedMessage {
            message_id: "m1".into(),
            receipt_handle: "r".into(),
            body: body("from-body"),
            receive_count: 1,
            sent_timestamp_ms: None,
            attributes: vec![("jobId".into(), "from-attr".into())],
            group_id: None,
        };
        assert_eq!(job_id_of(&m).as_deref(), Some("from-body"));
        m.body = "not json".into();
        assert_eq!(job_id_of(&m).as_deref(), Some("from-attr"));
        m.attributes.clear();
        assert_eq!(job_id_of(&m), None);
    }
}
