//! The in-flight registry and its visibility heartbeat.
//!
//! Every received message is registered with the time its visibility lapses. Once a second the
//! heartbeat finds the messages whose visibility lapses within half a visibility timeout and
//! extends them all with `ChangeMessageVisibilityBatch` (10 per call), so SQS never hands a job to
//! a second worker while this one is waiting for a token, calling Connect or backing off, however
//! long that takes. A message leaves the registry before it is settled or given back, and the
//! heartbeat and a give-back never interleave (one lock), so an extension cannot overwrite a
//! requeue delay.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::queue::{MAX_BATCH, MessageQueue};

#[derive(Debug)]
struct Entry {
    receipt: String,
    hidden_until: Instant,
    /// The message's FIFO `MessageGroupId`, for grouping its result and DLQ copy.
    group_id: Option<String>,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct InFlight {
    entries: Mutex<HashMap<u64, Entry>>,
    /// Messages a receive on the wire may add (see [`InFlight::receiving`]).
    receiving: AtomicUsize,
    next_id: AtomicU64,
    /// Held while visibility changes are on the wire.
    visibility_lock: Mutex<()>,
    /// When the messages given back with a delay become visible again: until then SQS counts
    /// them as not visible, and the estimate of sharers must not take them for a sibling's.
    delayed: std::sync::Mutex<std::collections::BinaryHeap<std::cmp::Reverse<Instant>>>,
}

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a message just received with `visibility`; returns its registry id.
    pub async fn register(&self, receipt: &str, visibility: Duration) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            receipt: receipt.to_owned(),
            hidden_until: Instant::now() + visibility,
            group_id: None,
        };
        self.entries.lock().await.insert(id, entry);
        id
    }

    /// Records the FIFO `MessageGroupId` of a registered message (from a FIFO jobs queue).
    pub async fn set_group(&self, id: u64, group_id: Option<String>) {
        if let Some(e) = self.entries.lock().await.get_mut(&id) {
            e.group_id = group_id;
        }
    }

    /// The FIFO group of a registered message, if it came from a FIFO queue.
    pub async fn group(&self, id: u64) -> Option<String> {
        self.entries
            .lock()
            .await
            .get(&id)
            .and_then(|e| e.group_id.clone())
    }

    pub async fn remove(&self, id: u64) {
        self.entries.lock().await.remove(&id);
    }

    pub async fn len(&self) -> usize {
        self.entries.lock().await.len()
    }

    /// Marks a receive of up to `n` messages on the wire until the guard drops: SQS hides them
    /// before their answer arrives, so until then they count in [`InFlight::held`].
    pub fn receiving(&self, n: usize) -> Receiving<'_> {
        self.receiving.fetch_add(n, Ordering::Relaxed);
        Receiving { inflight: self, n }
    }

    /// Messages this replica holds or may be receiving: registered plus a receive's on the wire.
    pub async fn held(&self) -> usize {
        self.len().await + self.receiving.load(Ordering::Relaxed)
    }

    /// Messages this replica gave back with a delay that SQS still hides.
    pub async fn delayed(&self) -> usize {
        let now = Instant::now();
        let mut heap = self.delayed.lock().unwrap_or_else(|e| e.into_inner());
        while heap.peek().is_some_and(|r| r.0 <= now) {
            heap.pop();
        }
        heap.len()
    }

    fn note_delayed(&self, after: Duration) {
        if after > Duration::ZERO {
            let mut heap = self.delayed.lock().unwrap_or_else(|e| e.into_inner());
            heap.push(std::cmp::Reverse(Instant::now() + after));
        }
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// Removes the message and sets its visibility to `after` (0 releases it at once). Returns
    /// whether SQS accepted the change.
    pub async fn give_back<Q: MessageQueue>(
        &self,
        queue: &Q,
        queue_url: &str,
        id: u64,
        after: Duration,
    ) -> bool {
        let _guard = self.visibility_lock.lock().await;
        let receipt = match self.entries.lock().await.remove(&id) {
            Some(e) => e.receipt,
            None => return false,
        };
        let changed = matches!(queue.change_visibility_batch(queue_url, &[(receipt, after)]).await, Ok(f) if f.is_empty());
        if changed {
            self.note_delayed(after);
        }
        changed
    }

    /// One heartbeat: extends every message whose visibility lapses within `visibility / 2`.
    /// Returns (extended, failed).
    pub async fn extend_due<Q: MessageQueue>(
        &self,
        queue: &Q,
        queue_url: &str,
        visibility: Duration,
    ) -> (usize, usize) {
        let _guard = self.visibility_lock.lock().await;
        let now = Instant::now();
        let due: Vec<(u64, String)> = self
            .entries
            .lock()
            .await
            .iter()
            .filter(|(_, e)| e.hidden_until <= now + visibility / 2)
            .map(|(id, e)| (*id, e.receipt.clone()))
            .collect();
        let (mut extended, mut failed) = (0, 0);
        for chunk in due.chunks(MAX_BATCH) {
            let entries: Vec<(String, Duration)> =
                chunk.iter().map(|(_, r)| (r.clone(), visibility)).collect();
            let failures = match queue.change_visibility_batch(queue_url, &entries).await {
                Ok(f) => f.into_iter().map(|f| f.index).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!(error = %e, count = chunk.len(), "visibility extension failed; retrying next tick");
                    (0..chunk.len()).collect()
                }
            };
            let mut entries = self.entries.lock().await;
            for (i, (id, _)) in chunk.iter().enumerate() {
                if failures.contains(&i) {
                    failed += 1;
                } else if let Some(e) = entries.get_mut(id) {
                    e.hidden_until = now + visibility;
                    extended += 1;
                }
            }
        }
        (extended, failed)
    }
}

/// Runs the heartbeat until `stop`.
pub async fn heartbeat<Q: MessageQueue>(
    inflight: Arc<InFlight>,
    queue: Arc<Q>,
    queue_url: String,
    visibility: Duration,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (ok, failed) = inflight
            .extend_due(queue.as_ref(), &queue_url, visibility)
            .await;
        metrics
            .visibility_extensions
            .with_label_values(&["ok"])
            .inc_by(ok as u64);
        metrics
            .visibility_extensions
            .with_label_values(&["failed"])
            .inc_by(failed as u64);
    }
}

/// See [`InFlight::receiving`].
pub struct Receiving<'a> {
    inflight: &'a InFlight,
    n: usize,
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.inflight.receiving.fetch_sub(self.n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::memory::MemoryQueue;

    const Q: &str = "memory://jobs";

    #[tokio::test(start_paused = true)]
    async fn heartbeat_keeps_a_long_job_invisible() {
        let queue = Arc::new(MemoryQueue::new());
        queue.push(Q, "job");
        let visibility = Duration::from_secs(10);
        let msg = queue
            .receive(Q, 1, Duration::ZERO, visibility)
            .await
            .unwrap()
            .remove(0);
        let inflight = Arc::new(InFlight::new());
        let id = inflight.register(&msg.receipt_handle, visibility).await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(heartbeat(
            inflight.clone(),
            queue.clone(),
            Q.into(),
            visibility,
            Metrics::new(),
            stop.clone(),
        ));
        // Far longer than the visibility timeout: nobody else may receive it.
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(
                queue
                    .receive(Q, 1, Duration::ZERO, visibility)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        // Given back with a delay: the heartbeat no longer touches it and it returns after the delay.
        assert!(
            inflight
                .give_back(queue.as_ref(), Q, id, Duration::from_secs(3))
                .await
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        let again = queue
            .receive(Q, 1, Duration::ZERO, visibility)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);
        stop.cancel();
        task.await.unwrap();
    }
}
