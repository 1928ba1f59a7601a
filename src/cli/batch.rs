//! Sending many messages with `SendMessageBatch`, shared by `enqueue` and `dlq replay`.
//!
//! Mechanism:
//! - [`split_batches`] cuts a list of messages into runs of at most 10 entries whose payload
//!   (bodies plus attribute names, types and values, as SQS counts it) stays within 256 KiB,
//!   SQS's classic limit for a whole batch (accounts that allow 1 MiB accept these too). A single
//!   message above the limit goes alone and SQS decides; it would be refused as a sender fault.
//! - [`send_batch_with_retry`] sends one such batch and re-sends only the entries that failed
//!   for a reason that may pass (not a sender fault), with doubling pauses on tokio time. A whole
//!   call that fails is retried the same way when the error is transient; a missing queue or a
//!   denied call is returned as fatal at once, since every later batch would fail alike.
//!
//! A retried entry that had in fact arrived is sent twice. That is harmless for jobs: the worker
//! derives the Connect `ClientToken` from the jobId, so a duplicate never opens a second chat.

use std::ops::Range;
use std::time::Duration;

use crate::queue::{MAX_BATCH, MessageQueue, OutgoingMessage, QueueError, QueueErrorKind};

/// SQS's payload limit for one `SendMessageBatch` (sum over its entries), in bytes.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Attribute data type we send; it counts towards the message size.
const STRING_TYPE: &str = "String";

/// The size of a message as SQS counts it: body, and each attribute's name, type and value.
pub fn message_size(m: &OutgoingMessage) -> usize {
    m.body.len()
        + m.attributes
            .iter()
            .map(|(k, v)| k.len() + STRING_TYPE.len() + v.len())
            .sum::<usize>()
}

/// Consecutive index ranges of `messages`, each at most [`MAX_BATCH`] entries and
/// [`MAX_BATCH_BYTES`] bytes (except a lone message that is larger by itself).
pub fn split_batches(messages: &[OutgoingMessage]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in messages.iter().enumerate() {
        let size = message_size(m);
        let full = i - start == MAX_BATCH || bytes + size > MAX_BATCH_BYTES;
        if i > start && full {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(start..messages.len());
    }
    out
}

/// How often and how patiently to re-send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub attempts: u32,
    /// Pause before the second attempt; doubled before each further one.
    pub first_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_pause: Duration::from_millis(200),
        }
    }
}

/// An entry that was not sent, for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailure {
    /// Index into the batch passed to [`send_batch_with_retry`].
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// What became of one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Indices (into the batch) that SQS accepted, ascending.
    pub sent: Vec<usize>,
    pub failed: Vec<SendFailure>,
    /// The queue is missing or the call is denied: the caller should stop sending.
    pub fatal: Option<QueueError>,
}

/// Sends `batch` (≤ 10 entries) to `queue_url`, re-sending what failed and may still pass.
pub async fn send_batch_with_retry<Q: MessageQueue>(
    queue: &Q,
    queue_url: &str,
    batch: &[OutgoingMessage],
    policy: RetryPolicy,
) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    // Indices into `batch` still to be sent.
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let attempts = policy.attempts.max(1);
    for attempt in 0..attempts {
        if pending.is_empty() {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(
                policy
                    .first_pause
                    .saturating_mul(1 << (attempt - 1).min(16)),
            )
            .await;
        }
        let last = attempt + 1 == attempts;
        let messages: Vec<OutgoingMessage> = pending
            .iter()
            .filter_map(|&i| batch.get(i).cloned())
            .collect();
        match queue.send_batch(queue_url, &messages).await {
            Err(e) if e.kind != QueueErrorKind::Transient || last => {
                fail_all(&mut outcome, &pending, &e.code, &e.message);
                if e.kind != QueueErrorKind::Transient {
                    outcome.fatal = Some(e);
                }
                pending.clear();
            }
            Err(_) => {}
            Ok(failures) => {
                let mut retry = Vec::new();
                let mut failed_positions = vec![false; pending.len()];
                for f in failures {
                    let Some(&original) = pending.get(f.index) else {
                        continue;
                    };
                    if let Some(flag) = failed_positions.get_mut(f.index) {
                        *flag = true;
                    }
                    if f.sender_fault || last {
                        outcome.failed.push(SendFailure {
                            index: original,
                            code: f.code,
                            message: f.message,
                        });
                    } else {
                        retry.push(original);
                    }
                }
                for (pos, &original) in pending.iter().enumerate() {
                    if !failed_positions[pos] {
                        outcome.sent.push(original);
                    }
                }
                pending = retry;
            }
        }
    }
    outcome.sent.sort_unstable();
    outcome.failed.sort_by_key(|f| f.index);
    outcome
}

fn fail_all(outcome: &mut BatchOutcome, pending: &[usize], code: &str, message: &str) {
    for &index in pending {
        outcome.failed.push(SendFailure {
            index,
            code: code.to_owned(),
            message: message.to_owned(),
        });
    }
}

/// Test doubles: a queue that fails chosen sends, over a [`crate::queue::memory::MemoryQueue`].
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use crate::queue::memory::MemoryQueue;
    use crate::queue::{
        EntryFailure, MessageQueue, OutgoingMessage, QueueDepth, QueueError, QueueErrorKind,
        ReceivedMessage,
    };

    /// What the next `send_batch` call does.
    #[derive(Clone, Debug)]
    pub enum SendPlan {
        /// These entries (by index in the call) fail; `true` marks a sender fault.
        FailEntries(Vec<(usize, bool)>),
        /// The whole call fails.
        FailCall(QueueErrorKind),
    }

    /// A [`MemoryQueue`] whose sends follow a script; after the script, sends succeed.
    #[derive(Default)]
    pub struct FlakyQueue {
        pub inner: MemoryQueue,
        plans: Mutex<VecDeque<SendPlan>>,
        /// Sizes of the batches passed to `send_batch`, in order.
        pub calls: Mutex<Vec<usize>>,
    }

    impl FlakyQueue {
        pub fn new(plans: Vec<SendPlan>) -> Self {
            FlakyQueue {
                plans: Mutex::new(plans.into()),
                ..Default::default()
            }
        }

        pub fn calls(&self) -> Vec<usize> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    impl MessageQueue for FlakyQueue {
        async fn receive(
            &self,
            queue_url: &str,
            max: usize,
            wait: Duration,
            visibility: Duration,
        ) -> Result<Vec<ReceivedMessage>, QueueError> {
            self.inner.receive(queue_url, max, wait, visibility).await
        }

        async fn send_batch(
            &self,
            queue_url: &str,
            messages: &[OutgoingMessage],
        ) -> Result<Vec<EntryFailure>, QueueError> {
            if let Ok(mut c) = self.calls.lock() {
                c.push(messages.len());
            }
            let plan = self.plans.lock().ok().and_then(|mut p| p.pop_front());
            match plan {
                None => self.inner.send_batch(queue_url, messages).await,
                Some(SendPlan::FailCall(kind)) => Err(QueueError {
                    kind,
                    operation: "SendMessageBatch",
                    code: format!("{kind:?}"),
                    message: "scripted failure".to_owned(),
                }),
                Some(SendPlan::FailEntries(failing)) => {
                    let kept: Vec<OutgoingMessage> = messages
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !failing.iter().any(|(f, _)| f == i))
                        .map(|(_, m)| m.clone())
                        .collect();
                    self.inner.send_batch(queue_url, &kept).await?;
                    Ok(failing
                        .into_iter()
                        .filter(|(i, _)| *i < messages.len())
                        .map(|(index, sender_fault)| EntryFailure {
                            index,
                            code: if sender_fault {
                                "InvalidParameterValue"
                            } else {
                                "InternalError"
                            }
                            .to_owned(),
                            message: "scripted entry failure".to_owned(),
                            sender_fault,
                        })
                        .collect())
                }
            }
        }

        async fn delete_batch(
            &self,
            queue_url: &str,
            receipt_handles: &[String],
        ) -> Result<Vec<EntryFailure>, QueueError> {
            self.inner.delete_batch(queue_url, receipt_handles).await
        }

        async fn change_visibility_batch(
            &self,
            queue_url: &str,
            entries: &[(String, Duration)],
        ) -> Result<Vec<EntryFailure>, QueueError> {
            self.inner.change_visibility_batch(queue_url, entries).await
        }

        async fn depth(&self, queue_url: &str) -> Result<QueueDepth, QueueError> {
            self.inner.depth(queue_url).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{FlakyQueue, SendPlan};
    use super::*;

    const Q: &str = "memory://jobs";

    fn msg(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: body.to_owned(),
            attributes: vec![("jobId".to_owned(), "j".to_owned())],
        }
    }

    #[test]
    fn batches_hold_at_most_ten_entries() {
        let messages: Vec<_> = (0..23).map(|i| msg(&i.to_string())).collect();
        assert_eq!(split_batches(&messages), vec![0..10, 10..20, 20..23]);
        assert!(split_batches(&[]).is_empty());
    }

    #[test]
    fn batches_are_split_by_payload_size() {
        // 100 KiB bodies: two fit in 256 KiB, a third does not.
        let big = "x".repeat(100 * 1024);
        let messages: Vec<_> = (0..5).map(|_| msg(&big)).collect();
        let batches = split_batches(&messages);
        assert_eq!(batches, vec![0..2, 2..4, 4..5]);
        for b in &batches {
            let bytes: usize = messages[b.clone()].iter().map(message_size).sum();
            assert!(bytes <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn attributes_count_towards_the_size() {
        // Body exactly at the limit: with its attribute it is over, so the next message starts a batch.
        let at_limit = "x".repeat(MAX_BATCH_BYTES - "jobIdStringj".len());
        assert_eq!(message_size(&msg(&at_limit)), MAX_BATCH_BYTES);
        assert_eq!(split_batches(&[msg(&at_limit), msg("a")]), vec![0..1, 1..2]);
    }

    #[test]
    fn an_oversized_message_goes_alone() {
        let huge = "x".repeat(MAX_BATCH_BYTES + 1);
        assert_eq!(
            split_batches(&[msg("a"), msg(&huge), msg("b")]),
            vec![0..1, 1..2, 2..3]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_entry_failures_are_resent_and_sender_faults_are_not() {
        let q = FlakyQueue::new(vec![SendPlan::FailEntries(vec![(1, false), (3, true)])]);
        let batch: Vec<_> = (0..5).map(|i| msg(&format!("m{i}"))).collect();
        let out = send_batch_with_retry(&q, Q, &batch, RetryPolicy::default()).await;
        assert_eq!(out.sent, vec![0, 1, 2, 4]);
        assert_eq!(out.failed.len(), 1);
        assert_eq!(out.failed[0].index, 3);
        assert_eq!(out.failed[0].code, "InvalidParameterValue");
        assert!(out.fatal.is_none());
        // The retry carried only the failed transient entry.
        assert_eq!(q.calls(), vec![5, 1]);
        let mut bodies = q.inner.bodies(Q);
        bodies.sort();
        assert_eq!(bodies, ["m0", "m1", "m2", "m4"]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_the_last_attempt() {
        let plans = vec![SendPlan::FailEntries(vec![(0, false)]); 10];
        let q = FlakyQueue::new(plans);
        let policy = RetryPolicy {
            attempts: 3,
            first_pause: Duration::from_millis(10),
        };
        let out = send_batch_with_retry(&q, Q, &[msg("a"), msg("b")], policy).await;
        assert_eq!(out.sent, vec![1]);
        assert_eq!(
            out.failed.iter().map(|f| f.index).collect::<Vec<_>>(),
            vec![0]
        );
        assert_eq!(q.calls(), vec![2, 1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_call_failure_is_retried() {
        let q = FlakyQueue::new(vec![SendPlan::FailCall(QueueErrorKind::Transient)]);
        let out = send_batch_with_retry(&q, Q, &[msg("a"), msg("b")], RetryPolicy::default()).await;
        assert_eq!(out.sent, vec![0, 1]);
        assert!(out.failed.is_empty());
        assert_eq!(q.calls(), vec![2, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_queue_is_fatal_at_once() {
        let q = FlakyQueue::new(vec![SendPlan::FailCall(QueueErrorKind::QueueMissing)]);
        let out = send_batch_with_retry(&q, Q, &[msg("a"), msg("b")], RetryPolicy::default()).await;
        assert!(out.sent.is_empty());
        assert_eq!(out.failed.len(), 2);
        assert_eq!(
            out.fatal.map(|e| e.kind),
            Some(QueueErrorKind::QueueMissing)
        );
        assert_eq!(q.calls(), vec![2]);
    }
}
