//! [`Counted`]: any [`MessageQueue`] with a count of the requests it makes, by SQS operation.
//!
//! SQS bills per request, and a worker's request mix (receives, heartbeats, give-backs, results,
//! deletes, depth polls) is what an operator looks at when the bill or a throttled queue says the
//! worker asks too much. Every call is one request of the operation the SQS adapter makes for
//! it, counted whether it succeeds or not (failures are in `resume_chat_sqs_errors_total` too).

use std::time::Duration;

use prometheus::IntCounterVec;

use super::fifo::FifoIds;
use super::{EntryFailure, MessageQueue, OutgoingMessage, QueueDepth, QueueError, ReceivedMessage};

/// See the module doc.
pub struct Counted<Q> {
    inner: Q,
    requests: IntCounterVec,
}

impl<Q> Counted<Q> {
    /// Counts `inner`'s requests into `requests` (label: `operation`).
    pub fn new(inner: Q, requests: IntCounterVec) -> Self {
        Counted { inner, requests }
    }

    /// The queue it counts for.
    pub fn inner(&self) -> &Q {
        &self.inner
    }

    fn count(&self, operation: &str) {
        self.requests.with_label_values(&[operation]).inc();
    }
}

impl<Q: MessageQueue> MessageQueue for Counted<Q> {
    async fn receive(
        &self,
        queue_url: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.count("ReceiveMessage");
        self.inner.receive(queue_url, max, wait, visibility).await
    }

    async fn send_batch(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        self.count("SendMessageBatch");
        self.inner.send_batch(queue_url, messages).await
    }

    async fn send_batch_with_ids(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
        ids: &[FifoIds],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        self.count("SendMessageBatch");
        self.inner
            .send_batch_with_ids(queue_url, messages, ids)
            .await
    }

    async fn delete_batch(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        self.count("DeleteMessageBatch");
        self.inner.delete_batch(queue_url, receipt_handles).await
    }

    async fn change_visibility_batch(
        &self,
        queue_url: &str,
        entries: &[(String, Duration)],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        self.count("ChangeMessageVisibilityBatch");
        self.inner.change_visibility_batch(queue_url, entries).await
    }

    async fn depth(&self, queue_url: &str) -> Result<QueueDepth, QueueError> {
        self.count("GetQueueAttributes");
        self.inner.depth(queue_url).await
    }

    async fn send_delayed(
        &self,
        queue_url: &str,
        message: &OutgoingMessage,
        delay: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        self.count("SendMessage");
        self.inner.send_delayed(queue_url, message, delay).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::memory::MemoryQueue;
    use prometheus::Opts;

    #[tokio::test]
    async fn each_call_counts_one_request_of_its_operation_and_is_passed_on() {
        let requests = IntCounterVec::new(Opts::new("r", "r"), &["operation"]).unwrap();
        let q = Counted::new(MemoryQueue::new(), requests.clone());
        let msg = OutgoingMessage {
            body: "x".into(),
            attributes: Vec::new(),
        };
        q.send_batch("q", std::slice::from_ref(&msg)).await.unwrap();
        q.send_delayed("q", &msg, Duration::ZERO).await.unwrap();
        let got = q
            .receive("q", 10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(got.len(), 2, "the inner queue got both messages");
        q.delete_batch("q", &[got[0].receipt_handle.clone()])
            .await
            .unwrap();
        q.depth("q").await.unwrap();
        let n = |op: &str| requests.with_label_values(&[op]).get();
        assert_eq!(n("SendMessageBatch"), 1);
        assert_eq!(n("SendMessage"), 1);
        assert_eq!(n("ReceiveMessage"), 1);
        assert_eq!(n("DeleteMessageBatch"), 1);
        assert_eq!(n("GetQueueAttributes"), 1);
        assert_eq!(n("ChangeMessageVisibilityBatch"), 0);
    }
}
