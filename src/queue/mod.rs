//! SQS, as the worker sees it: the [`MessageQueue`] trait over queue URLs, with an `aws-sdk-sqs`
//! adapter ([`sqs::SqsQueue`]) and an in-memory queue with the same visibility semantics
//! ([`memory::MemoryQueue`]) for fast pipeline tests and benchmarks of the worker's own cost;
//! [`counted::Counted`] counts any queue's requests by operation (the metrics).
//!
//! Batch operations take up to 10 entries (SQS's limit) and report per-entry failures by the
//! entry's index in the input, so callers handle partial batch failures without string ids.

pub mod counted;
pub mod fifo;
pub mod memory;
pub mod sqs;

use std::future::Future;
use std::time::Duration;

/// SQS's limit on entries per batch call and messages per receive.
pub const MAX_BATCH: usize = 10;

/// SQS's longest message delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Message attribute carrying a recycled job's original `SentTimestamp` (ms), so its age survives
/// recycling (see `pipeline::process`).
pub const ORIGINAL_SENT_ATTRIBUTE: &str = "resumeChatOriginalSentTimestamp";

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// SQS `ApproximateReceiveCount`: 1 on first delivery.
    pub receive_count: u32,
    /// SQS `SentTimestamp`, milliseconds since the Unix epoch.
    pub sent_timestamp_ms: Option<u64>,
    /// String message attributes (e.g. an operator's tags), kept when moving to the DLQ.
    pub attributes: Vec<(String, String)>,
    /// SQS `MessageGroupId`: set for messages of a FIFO queue (for the pipeline to keep the
    /// group's order and to group the job's result and DLQ copy by it).
    pub group_id: Option<String>,
}

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// String message attributes.
    pub attributes: Vec<(String, String)>,
}

/// One entry of a batch that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFailure {
    /// Index into the batch that was passed in.
    pub index: usize,
    pub code: String,
    pub message: String,
    /// SQS says the request itself was wrong (retrying will not help).
    pub sender_fault: bool,
}

/// What kind of failure a whole queue call had; decides between "retry soon" and "tell the operator".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueErrorKind {
    /// The queue does not exist (wrong URL, deleted).
    QueueMissing,
    /// Credentials or IAM policy deny the call.
    AccessDenied,
    /// Everything else: throttling, 5xx, network.
    Transient,
}

/// A failed queue call, classified at the adapter boundary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed ({code}): {message}")]
pub struct QueueError {
    pub kind: QueueErrorKind,
    pub operation: &'static str,
    pub code: String,
    pub message: String,
}

/// Approximate counts from `GetQueueAttributes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

/// The SQS operations the worker and its operator commands use.
pub trait MessageQueue: Send + Sync + 'static {
    /// Long-polls for up to `max` (≤ 10) messages, hiding them for `visibility`.
    fn receive(
        &self,
        queue_url: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send;

    /// Sends up to 10 messages. To a FIFO queue, each carries the ids of
    /// [`fifo::FifoIds::for_message`].
    fn send_batch(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send;

    /// Sends up to 10 messages with their FIFO ids (`ids[i]` for `messages[i]`), used only when
    /// `queue_url` is a FIFO queue. The default ignores the ids, for queues that do not model
    /// FIFO.
    fn send_batch_with_ids(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
        ids: &[fifo::FifoIds],
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send {
        let _ = ids;
        self.send_batch(queue_url, messages)
    }

    /// Deletes up to 10 messages by receipt handle.
    fn delete_batch(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send;

    /// Sets the visibility timeout of up to 10 messages, counted from now.
    fn change_visibility_batch(
        &self,
        queue_url: &str,
        entries: &[(String, Duration)],
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send;

    fn depth(&self, queue_url: &str)
    -> impl Future<Output = Result<QueueDepth, QueueError>> + Send;

    /// Sends one message that becomes visible after `delay` (capped at [`MAX_DELAY`]). The
    /// default sends it at once, for fakes that do not model delays.
    fn send_delayed(
        &self,
        queue_url: &str,
        message: &OutgoingMessage,
        delay: Duration,
    ) -> impl Future<Output = Result<Vec<EntryFailure>, QueueError>> + Send {
        let _ = delay;
        async move {
            self.send_batch(queue_url, std::slice::from_ref(message))
                .await
        }
    }
}
