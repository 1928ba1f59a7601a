//! Settling: publish each job's result, then delete the job, in batches.
//!
//! Protocol, per batch of up to 10 finished jobs:
//! 1. Jobs bound for the dead-letter queue are sent there first, one message per call (bodies can
//!    be large). If that fails, the job is neither published nor deleted: SQS delivers it again.
//! 2. Results go out with `SendMessageBatch` (attributes `jobId`, `status`; on a FIFO results
//!    queue also `MessageGroupId` and `MessageDeduplicationId`, see `queue::fifo`), once: a job
//!    whose result (or DLQ move) failed is told so and stays in flight, hidden by the heartbeat;
//!    its decision (`crate::decide`) retries the publish with backoff, so a result goes out within
//!    seconds of the results queue coming back, without a second Connect call. Each attempt first
//!    checks the connect window of a start result, so one that kept failing is never published
//!    late as a success.
//! 3. Only jobs whose result was published are deleted with `DeleteMessageBatch` (and leave the
//!    in-flight registry).
//!
//! In each round of step 2, a start result whose participant token's connect window has closed is
//! turned into a `ConnectWindowExpired` failure (`JobResult::for_publishing_at`); after it, the
//! time from each start result's Connect response to its publishing is observed in
//! `resume_chat_connect_window_used_seconds`.
//!
//! A failed delete means the job will be delivered again and its result published twice, which
//! the contract allows (consumers dedupe by `jobId`).
//!
//! Requests arrive on a channel; the settler sends as soon as 10 are waiting, or after a short
//! linger so a lone result is not delayed.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::inflight::InFlight;
use crate::metrics::Metrics;
use crate::outcome::{JobResult, codes};
use crate::queue::fifo::FifoIds;
use crate::queue::{MAX_BATCH, MessageQueue, OutgoingMessage};

/// How long the settler waits for more results before sending a partial batch.
const LINGER: Duration = Duration::from_millis(5);

/// A finished job, ready to settle.
#[derive(Debug)]
pub struct SettleRequest {
    pub result: JobResult,
    pub receipt_handle: String,
    pub inflight_id: u64,
    /// Set when the job goes to the dead-letter queue: its original body and attributes.
    pub dead_letter: Option<OutgoingMessage>,
    /// Told how the settling went: `true` when published and deleted.
    pub done: oneshot::Sender<bool>,
}

/// Where results and jobs live.
#[derive(Clone, Debug)]
pub struct Queues {
    pub jobs: String,
    pub results: String,
    pub dead_letter: Option<String>,
}

/// The results-queue message of a result, with the `jobId` and `status` attributes.
fn result_message(result: &JobResult) -> OutgoingMessage {
    OutgoingMessage {
        body: result.to_json(),
        attributes: vec![
            (
                "jobId".to_owned(),
                result
                    .job_id
                    .clone()
                    .unwrap_or_else(|| "unknown".to_owned()),
            ),
            ("status".to_owned(), result.status.as_str().to_owned()),
        ],
    }
}

/// The FIFO ids of a result (used when the results queue is FIFO): grouped by the job's own
/// group when it came from a FIFO jobs queue, else by jobId, and deduplicated by job and outcome
/// so a redelivered job's identical second result is dropped by SQS.
fn result_fifo_ids(result: &JobResult, job_group: Option<&str>) -> FifoIds {
    let code = result.error.as_ref().map_or("none", |e| e.code.as_str());
    FifoIds::for_result(
        result.job_id.as_deref(),
        &result.message_id,
        result.status.as_str(),
        code,
        job_group,
    )
}

pub struct Settler<Q> {
    pub queue: Arc<Q>,
    pub queues: Queues,
    pub inflight: Arc<InFlight>,
    pub metrics: Metrics,
    /// `CONNECT_MARGIN_SECONDS`: least time left of a token's connect window to publish it.
    pub connect_margin: Duration,
}

impl<Q: MessageQueue> Settler<Q> {
    /// Runs until every sender is dropped and the channel is drained.
    pub async fn run(self, mut rx: mpsc::Receiver<SettleRequest>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    biased;
                    more = rx.recv() => match more {
                        Some(r) => batch.push(r),
                        None => break,
                    },
                    _ = &mut linger => break,
                }
            }
            self.settle(batch).await;
        }
    }

    async fn settle(&self, batch: Vec<SettleRequest>) {
        // 1. Dead-letter moves first.
        let mut ready = Vec::with_capacity(batch.len());
        for req in batch {
            if let (Some(dlq), Some(body)) = (&self.queues.dead_letter, &req.dead_letter) {
                // On a FIFO DLQ the copy keeps the job's own group (when it had one).
                let mut ids = FifoIds::for_message(body);
                if let Some(group) = self.inflight.group(req.inflight_id).await {
                    ids.group_id = group;
                }
                match self
                    .queue
                    .send_batch_with_ids(dlq, std::slice::from_ref(body), &[ids])
                    .await
                {
                    Ok(f) if f.is_empty() => self.metrics.jobs_dead_lettered.inc(),
                    Ok(f) => {
                        self.sqs_error(
                            "SendMessage",
                            f.first().map_or("Unknown", |f| f.code.as_str()),
                        );
                        self.unsettled(req, "moving the job to the dead-letter queue failed")
                            .await;
                        continue;
                    }
                    Err(e) => {
                        self.sqs_error("SendMessage", &e.code);
                        self.unsettled(req, "moving the job to the dead-letter queue failed")
                            .await;
                        continue;
                    }
                }
            }
            ready.push(req);
        }
        if ready.is_empty() {
            return;
        }

        // The jobs' FIFO groups (a FIFO jobs queue), read before the registry forgets them.
        let mut groups = Vec::with_capacity(ready.len());
        for r in &ready {
            groups.push(self.inflight.group(r.inflight_id).await);
        }

        // 2. Publish results, retrying entries that failed through no fault of ours. Each round
        // first checks the connect window of what it sends, so a result that kept failing to go
        // out is not published late as a success.
        let now = OffsetDateTime::now_utc();
        let mut batch = Vec::with_capacity(ready.len());
        let mut ids = Vec::with_capacity(ready.len());
        for (req, group) in ready.iter_mut().zip(&groups) {
            self.check_window(req, now);
            batch.push(result_message(&req.result));
            ids.push(result_fifo_ids(&req.result, group.as_deref()));
        }
        let mut pending: Vec<usize> = (0..ready.len()).collect();
        match self
            .queue
            .send_batch_with_ids(&self.queues.results, &batch, &ids)
            .await
        {
            Ok(failures) => {
                pending = failures.iter().map(|f| f.index).collect();
                for f in &failures {
                    self.sqs_error("SendMessageBatch", &f.code);
                }
            }
            Err(e) => {
                self.sqs_error("SendMessageBatch", &e.code);
                tracing::warn!(error = %e, "publishing results failed");
            }
        }
        let published: Vec<bool> = (0..ready.len()).map(|i| !pending.contains(&i)).collect();
        self.metrics
            .results_published
            .inc_by(published.iter().filter(|p| **p).count() as u64);
        let out_at = OffsetDateTime::now_utc();
        for (r, _) in ready.iter().zip(&published).filter(|(_, p)| **p) {
            if let Some(responded) = r.result.responded_at {
                self.metrics
                    .connect_window_used
                    .observe((out_at - responded).as_seconds_f64().max(0.0));
            }
        }

        // 3. Delete the jobs whose results are out.
        let receipts: Vec<String> = ready
            .iter()
            .zip(&published)
            .filter(|(_, p)| **p)
            .map(|(r, _)| r.receipt_handle.clone())
            .collect();
        if !receipts.is_empty() {
            match self.queue.delete_batch(&self.queues.jobs, &receipts).await {
                Ok(failures) => {
                    for f in failures {
                        self.sqs_error("DeleteMessageBatch", &f.code);
                        tracing::warn!(code = %f.code, "job not deleted after its result was published; it will be delivered again");
                    }
                }
                Err(e) => {
                    self.sqs_error("DeleteMessageBatch", &e.code);
                    tracing::warn!(error = %e, "deleting settled jobs failed; they will be delivered again");
                }
            }
        }

        for (req, ok) in ready.into_iter().zip(published) {
            if ok {
                self.inflight.remove(req.inflight_id).await;
                let code = req
                    .result
                    .error
                    .as_ref()
                    .map_or("none", |e| e.code.as_str());
                self.metrics
                    .jobs_completed
                    .with_label_values(&[req.result.status.as_str(), code])
                    .inc();
            }
            let _ = req.done.send(ok);
        }
    }

    /// A start result past its participant token's connect window (less the margin) is not
    /// published as a success (see `JobResult::for_publishing_at`).
    fn check_window(&self, req: &mut SettleRequest, now: OffsetDateTime) {
        let was = req.result.status;
        req.result = req
            .result
            .clone()
            .for_publishing_at(now, self.connect_margin);
        if req.result.status != was {
            tracing::warn!(
                job_id = req.result.job_id.as_deref().unwrap_or(""),
                code = codes::CONNECT_WINDOW_EXPIRED,
                "the chat's connect window closed before its result could be published"
            );
        }
    }

    /// The job could not be settled now: it stays in flight (hidden by the heartbeat) and its
    /// own decision retries or gives it back.
    async fn unsettled(&self, req: SettleRequest, why: &str) {
        tracing::warn!(
            job_id = req.result.job_id.as_deref().unwrap_or(""),
            why,
            "job not settled"
        );
        let _ = req.done.send(false);
    }

    fn sqs_error(&self, operation: &str, code: &str) {
        self.metrics
            .sqs_errors
            .with_label_values(&[operation, code])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobDefaults, parse_job};
    use crate::queue::memory::MemoryQueue;

    const JOBS: &str = "mem://jobs";
    const RESULTS: &str = "mem://results";

    fn settler(queue: Arc<MemoryQueue>, margin: Duration) -> Settler<MemoryQueue> {
        Settler {
            queue,
            queues: Queues {
                jobs: JOBS.into(),
                results: RESULTS.into(),
                dead_letter: None,
            },
            inflight: Arc::new(InFlight::new()),
            metrics: Metrics::new(),
            connect_margin: margin,
        }
    }

    fn started(responded: OffsetDateTime) -> JobResult {
        let defaults = JobDefaults {
            instance_id: Some("i".into()),
            contact_flow_id: Some("f".into()),
        };
        let body = r#"{"jobId":"j-1","sourceContactId":"c","participant":{"displayName":"A"}}"#;
        let job = parse_job(body, &defaults).unwrap_or_else(|e| panic!("{e}"));
        JobResult::started_chat(
            &job,
            "m-1",
            1,
            responded,
            "contact-1".into(),
            "p".into(),
            "tok".into(),
            None,
        )
    }

    async fn settle_one(s: &Settler<MemoryQueue>, q: &MemoryQueue, result: JobResult) -> bool {
        let receipt = {
            q.push(JOBS, "{}");
            let got = q
                .receive(JOBS, 1, Duration::ZERO, Duration::from_secs(30))
                .await
                .unwrap_or_default();
            got.first()
                .map(|m| m.receipt_handle.clone())
                .unwrap_or_default()
        };
        let id = s.inflight.register(&receipt, Duration::from_secs(30)).await;
        let (done, rx) = oneshot::channel();
        s.settle(vec![SettleRequest {
            result,
            receipt_handle: receipt,
            inflight_id: id,
            dead_letter: None,
            done,
        }])
        .await;
        rx.await.unwrap_or(false)
    }

    fn published(q: &MemoryQueue) -> Vec<serde_json::Value> {
        q.bodies(RESULTS)
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect()
    }

    #[tokio::test]
    async fn a_fresh_token_is_published_and_its_wait_observed() {
        let q = Arc::new(MemoryQueue::new());
        let s = settler(q.clone(), Duration::ZERO);
        assert!(settle_one(&s, &q, started(OffsetDateTime::now_utc())).await);
        let out = published(&q);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["status"], "succeeded");
        assert!(out[0]["connectBy"].is_string(), "{}", out[0]);
        assert_eq!(s.metrics.connect_window_used.get_sample_count(), 1);
        assert!(s.metrics.connect_window_used.get_sample_sum() < 60.0);
        assert!(q.is_empty(JOBS), "settled jobs are deleted");
    }

    #[tokio::test]
    async fn a_token_past_its_window_is_published_as_connect_window_expired() {
        let q = Arc::new(MemoryQueue::new());
        let s = settler(q.clone(), Duration::ZERO);
        let long_ago = OffsetDateTime::now_utc() - time::Duration::seconds(301);
        assert!(settle_one(&s, &q, started(long_ago)).await);
        let out = published(&q);
        assert_eq!(out[0]["status"], "failed");
        assert_eq!(out[0]["error"]["code"], codes::CONNECT_WINDOW_EXPIRED);
        assert!(out[0].get("participantToken").is_none());
        let expired = s
            .metrics
            .jobs_completed
            .with_label_values(&["failed", codes::CONNECT_WINDOW_EXPIRED])
            .get();
        assert_eq!(expired, 1);
        assert!(s.metrics.connect_window_used.get_sample_sum() > 300.0);
        // And a margin moves the limit: 60 s left is not enough for a 120 s margin.
        let q = Arc::new(MemoryQueue::new());
        let s = settler(q.clone(), Duration::from_secs(120));
        let recent = OffsetDateTime::now_utc() - time::Duration::seconds(240);
        assert!(settle_one(&s, &q, started(recent)).await);
        assert_eq!(
            published(&q)[0]["error"]["code"],
            codes::CONNECT_WINDOW_EXPIRED
        );
    }
}
