//! An in-memory [`MessageQueue`] with SQS's visibility semantics, on tokio time: a received message
//! is hidden until its visibility timeout lapses, then delivered again with a higher receive count
//! and a new receipt handle; an old receipt handle cannot delete or extend it. Long polls wait on a
//! notification, so paused-time tests and the overhead benchmark run without moto's costs.
//! Queues spring into existence on first use, except URLs registered as missing (for tests of a
//! wrong `JOBS_QUEUE_URL`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    EntryFailure, MessageQueue, OutgoingMessage, QueueDepth, QueueError, QueueErrorKind,
    ReceivedMessage,
};

/// A message as tests see it: (body, attributes, receive count).
pub type StoredMessage = (String, Vec<(String, String)>, u32);

#[derive(Debug)]
struct Stored {
    message_id: String,
    body: String,
    attributes: Vec<(String, String)>,
    receive_count: u32,
    sent_timestamp_ms: u64,
    visible_at: Instant,
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<String, Vec<Stored>>,
    missing: HashSet<String>,
    next_id: u64,
    /// How long `depth` takes (SQS's `GetQueueAttributes` is a round trip); counted at its end.
    depth_latency: Duration,
    /// How long a receive's answer travels after its messages were hidden.
    receive_latency: Duration,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    state: Mutex<State>,
    arrived: Notify,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `depth` take `latency` (in tokio time) and count at its end, as a round trip to
    /// SQS does: what others do meanwhile shows in the count.
    pub fn set_depth_latency(&self, latency: Duration) {
        self.lock().depth_latency = latency;
    }

    /// Makes a receive's answer arrive `latency` (tokio time) after its messages were hidden, as
    /// SQS's does: meanwhile they count as in flight and nobody holds them yet.
    pub fn set_receive_latency(&self, latency: Duration) {
        self.lock().receive_latency = latency;
    }

    /// Makes every call on `queue_url` fail with `QueueMissing`.
    pub fn mark_missing(&self, queue_url: &str) {
        self.lock().missing.insert(queue_url.to_owned());
    }

    /// Undoes [`MemoryQueue::mark_missing`]: the queue is back (an outage ends).
    pub fn mark_present(&self, queue_url: &str) {
        self.lock().missing.remove(queue_url);
    }

    /// Sends one message with a body (as a producer would).
    pub fn push(&self, queue_url: &str, body: impl Into<String>) -> String {
        let mut s = self.lock();
        let id = Self::new_id(&mut s);
        s.queues
            .entry(queue_url.to_owned())
            .or_default()
            .push(Stored {
                message_id: id.clone(),
                body: body.into(),
                attributes: Vec::new(),
                receive_count: 0,
                sent_timestamp_ms: now_ms(),
                visible_at: Instant::now(),
                receipt: None,
            });
        drop(s);
        self.arrived.notify_waiters();
        id
    }

    /// Bodies of every message in the queue, visible or not.
    pub fn bodies(&self, queue_url: &str) -> Vec<String> {
        self.lock()
            .queues
            .get(queue_url)
            .map(|q| q.iter().map(|m| m.body.clone()).collect())
            .unwrap_or_default()
    }

    /// Messages in the queue with their attributes and receive counts, visible or not.
    pub fn messages(&self, queue_url: &str) -> Vec<StoredMessage> {
        self.lock()
            .queues
            .get(queue_url)
            .map(|q| {
                q.iter()
                    .map(|m| (m.body.clone(), m.attributes.clone(), m.receive_count))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn len(&self, queue_url: &str) -> usize {
        self.lock().queues.get(queue_url).map_or(0, Vec::len)
    }

    pub fn is_empty(&self, queue_url: &str) -> bool {
        self.len(queue_url) == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the data half-updated in a harmful way.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_id(s: &mut State) -> String {
        s.next_id += 1;
        format!("m-{:08}", s.next_id)
    }

    fn check(s: &State, queue_url: &str, operation: &'static str) -> Result<(), QueueError> {
        if s.missing.contains(queue_url) {
            return Err(QueueError {
                kind: QueueErrorKind::QueueMissing,
                operation,
                code: "AWS.SimpleQueueService.NonExistentQueue".to_owned(),
                message: format!("queue {queue_url} does not exist"),
            });
        }
        Ok(())
    }

    fn take_visible(
        &self,
        queue_url: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let mut s = self.lock();
        Self::check(&s, queue_url, "ReceiveMessage")?;
        let now = Instant::now();
        let mut ids = Vec::new();
        let Some(queue) = s.queues.get(queue_url) else {
            return Ok(Vec::new());
        };
        for (i, m) in queue.iter().enumerate() {
            if ids.len() == max {
                break;
            }
            if m.visible_at <= now {
                ids.push(i);
            }
        }
        let mut receipts = Vec::with_capacity(ids.len());
        for _ in &ids {
            let r = Self::new_id(&mut s);
            receipts.push(format!("rh-{r}"));
        }
        let Some(queue) = s.queues.get_mut(queue_url) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(ids.len());
        for (i, receipt) in ids.into_iter().zip(receipts) {
            let m = &mut queue[i];
            m.receive_count += 1;
            m.visible_at = now + visibility;
            m.receipt = Some(receipt.clone());
            out.push(ReceivedMessage {
                message_id: m.message_id.clone(),
                receipt_handle: receipt,
                body: m.body.clone(),
                receive_count: m.receive_count,
                sent_timestamp_ms: Some(m.sent_timestamp_ms),
                attributes: m.attributes.clone(),
                group_id: None,
            });
        }
        Ok(out)
    }

    fn next_visible_at(&self, queue_url: &str) -> Option<Instant> {
        self.lock()
            .queues
            .get(queue_url)
            .and_then(|q| q.iter().map(|m| m.visible_at).min())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn invalid_receipt(index: usize) -> EntryFailure {
    EntryFailure {
        index,
        code: "ReceiptHandleIsInvalid".to_owned(),
        message: "the receipt handle is not the current one".to_owned(),
        sender_fault: true,
    }
}

impl MessageQueue for MemoryQueue {
    async fn receive(
        &self,
        queue_url: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before looking, so a push between the look and the wait is not missed.
            let arrived = self.arrived.notified();
            let got = self.take_visible(queue_url, max.clamp(1, super::MAX_BATCH), visibility)?;
            if !got.is_empty() || Instant::now() >= deadline {
                let latency = self.lock().receive_latency;
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                return Ok(got);
            }
            let wake = self
                .next_visible_at(queue_url)
                .map_or(deadline, |t| t.max(Instant::now()).min(deadline));
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn send_batch(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let mut s = self.lock();
        Self::check(&s, queue_url, "SendMessageBatch")?;
        let now = Instant::now();
        let mut stored = Vec::with_capacity(messages.len());
        for m in messages {
            let id = Self::new_id(&mut s);
            stored.push(Stored {
                message_id: id,
                body: m.body.clone(),
                attributes: m.attributes.clone(),
                receive_count: 0,
                sent_timestamp_ms: now_ms(),
                visible_at: now,
                receipt: None,
            });
        }
        s.queues
            .entry(queue_url.to_owned())
            .or_default()
            .extend(stored);
        drop(s);
        self.arrived.notify_waiters();
        Ok(Vec::new())
    }

    async fn delete_batch(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let mut s = self.lock();
        Self::check(&s, queue_url, "DeleteMessageBatch")?;
        let queue = s.queues.entry(queue_url.to_owned()).or_default();
        let mut failed = Vec::new();
        for (i, r) in receipt_handles.iter().enumerate() {
            match queue
                .iter()
                .position(|m| m.receipt.as_deref() == Some(r.as_str()))
            {
                Some(pos) => {
                    queue.remove(pos);
                }
                None => failed.push(invalid_receipt(i)),
            }
        }
        Ok(failed)
    }

    async fn change_visibility_batch(
        &self,
        queue_url: &str,
        entries: &[(String, Duration)],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let mut s = self.lock();
        Self::check(&s, queue_url, "ChangeMessageVisibilityBatch")?;
        let now = Instant::now();
        let queue = s.queues.entry(queue_url.to_owned()).or_default();
        let mut failed = Vec::new();
        for (i, (r, d)) in entries.iter().enumerate() {
            // Like SQS: only the latest receipt of a message that is still hidden can change it.
            match queue
                .iter_mut()
                .find(|m| m.receipt.as_deref() == Some(r.as_str()) && m.visible_at > now)
            {
                Some(m) => m.visible_at = now + *d,
                None => failed.push(invalid_receipt(i)),
            }
        }
        drop(s);
        self.arrived.notify_waiters();
        Ok(failed)
    }

    async fn send_delayed(
        &self,
        queue_url: &str,
        message: &OutgoingMessage,
        delay: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let mut s = self.lock();
        Self::check(&s, queue_url, "SendMessage")?;
        let id = Self::new_id(&mut s);
        s.queues
            .entry(queue_url.to_owned())
            .or_default()
            .push(Stored {
                message_id: id,
                body: message.body.clone(),
                attributes: message.attributes.clone(),
                receive_count: 0,
                sent_timestamp_ms: now_ms(),
                visible_at: Instant::now() + delay.min(super::MAX_DELAY),
                receipt: None,
            });
        Ok(Vec::new())
    }

    async fn depth(&self, queue_url: &str) -> Result<QueueDepth, QueueError> {
        let latency = self.lock().depth_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let s = self.lock();
        Self::check(&s, queue_url, "GetQueueAttributes")?;
        let now = Instant::now();
        let mut d = QueueDepth::default();
        for m in s.queues.get(queue_url).into_iter().flatten() {
            if m.visible_at <= now {
                d.visible += 1;
            } else {
                d.in_flight += 1;
            }
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "memory://jobs";

    #[tokio::test(start_paused = true)]
    async fn a_hidden_message_comes_back_after_its_visibility_with_a_new_receipt() {
        let q = MemoryQueue::new();
        q.push(Q, "a");
        let first = q
            .receive(Q, 10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        assert!(
            q.receive(Q, 10, Duration::ZERO, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        let second = q
            .receive(Q, 10, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(second[0].receive_count, 2);
        // The stale receipt can no longer delete it; the current one can.
        let failed = q
            .delete_batch(Q, &[first[0].receipt_handle.clone()])
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert!(
            q.delete_batch(Q, &[second[0].receipt_handle.clone()])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(q.is_empty(Q));
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_on_arrival_and_times_out_when_empty() {
        let q = std::sync::Arc::new(MemoryQueue::new());
        let start = Instant::now();
        assert!(
            q.receive(Q, 1, Duration::from_secs(20), Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        let producer = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            producer.push(Q, "late");
        });
        let start = Instant::now();
        let got = q
            .receive(Q, 1, Duration::from_secs(20), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn visibility_zero_releases_at_once() {
        let q = MemoryQueue::new();
        q.push(Q, "a");
        let got = q
            .receive(Q, 1, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        q.change_visibility_batch(Q, &[(got[0].receipt_handle.clone(), Duration::ZERO)])
            .await
            .unwrap();
        assert_eq!(
            q.receive(Q, 1, Duration::ZERO, Duration::from_secs(30))
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
