//! FIFO queues: detected from the queue URL (SQS requires a FIFO queue's name to end in
//! `.fifo`), and the two ids every message sent to one must carry.
//!
//! - `MessageGroupId`: messages of one group are delivered in order, one group member in flight
//!   at a time. A job message's group is its jobId (the `jobId` message attribute, else the
//!   body's `jobId`, else a digest of the body for a body that names none); a result's group is
//!   the job's group when the job came from a FIFO jobs queue, else its jobId
//!   ([`FifoIds::for_result`]).
//! - `MessageDeduplicationId`: SQS drops a message whose id it saw in the last 5 minutes (and
//!   still answers success). A job message's id is a digest of its body and attributes, so the
//!   same job sent twice (an `enqueue` re-run, a `dlq replay` that crashed between send and
//!   delete) is kept once, while a corrected body is new. A result's id is a digest of the job
//!   and its outcome (status and code), so a redelivered job's second, identical result is
//!   dropped within the window, and a different later outcome is not.
//!
//! Every id is a lowercase hex SHA-256 (64 characters, within both ids' 128-character limit and
//! their character set) or a jobId (1–128 of `A-Z a-z 0-9 . _ : -`, also within the limits).

use sha2::{Digest, Sha256};

use super::OutgoingMessage;

/// True for an SQS FIFO queue URL (`https://sqs.<region>.amazonaws.com/<account>/<name>.fifo`).
pub fn is_fifo(queue_url: &str) -> bool {
    queue_url.trim_end_matches('/').ends_with(".fifo")
}

/// What a message sent to a FIFO queue carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoIds {
    pub group_id: String,
    pub dedup_id: String,
}

fn digest(domain: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    for p in parts {
        // Length-prefixed, so no choice of parts collides with another.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A jobId usable as a group id as it is (the job contract's charset and length).
fn usable_job_id(id: &str) -> Option<&str> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    ok.then_some(id)
}

impl FifoIds {
    /// Ids of a job message (enqueue, DLQ replay, a move to the dead-letter queue).
    pub fn for_message(m: &OutgoingMessage) -> FifoIds {
        let from_attribute = m
            .attributes
            .iter()
            .find(|(k, _)| k == "jobId")
            .and_then(|(_, v)| usable_job_id(v))
            .map(str::to_owned);
        let group_id = from_attribute
            .or_else(|| {
                serde_json::from_str::<serde_json::Value>(&m.body)
                    .ok()
                    .and_then(|v| {
                        v.get("jobId")
                            .and_then(|id| id.as_str())
                            .and_then(usable_job_id)
                            .map(str::to_owned)
                    })
            })
            .unwrap_or_else(|| digest("resume-chat-worker/fifo-group/v1", &[&m.body]));
        let mut attributes: Vec<&(String, String)> = m.attributes.iter().collect();
        attributes.sort();
        let mut parts: Vec<&str> = vec![&m.body];
        for (k, v) in attributes {
            parts.push(k);
            parts.push(v);
        }
        FifoIds {
            group_id,
            dedup_id: digest("resume-chat-worker/fifo-dedup/v1", &parts),
        }
    }

    /// Ids of a job's result: group = `job_group` (the job's own group on a FIFO jobs queue) or
    /// the jobId (the job's SQS message id when the body had no valid jobId); dedup from the job
    /// and its outcome.
    pub fn for_result(
        job_id: Option<&str>,
        message_id: &str,
        status: &str,
        code: &str,
        job_group: Option<&str>,
    ) -> FifoIds {
        let job = job_id
            .and_then(usable_job_id)
            .map_or_else(|| format!("message:{message_id}"), str::to_owned);
        let group_id =
            job_group
                .map(str::to_owned)
                .unwrap_or_else(|| match job_id.and_then(usable_job_id) {
                    Some(id) => id.to_owned(),
                    None => digest("resume-chat-worker/fifo-group/v1", &[&job]),
                });
        FifoIds {
            group_id,
            dedup_id: digest("resume-chat-worker/result-dedup/v1", &[&job, status, code]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str, attrs: &[(&str, &str)]) -> OutgoingMessage {
        OutgoingMessage {
            body: body.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn fifo_is_told_by_the_url() {
        assert!(is_fifo(
            "https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo"
        ));
        assert!(is_fifo("http://127.0.0.1:5000/123456789012/r.fifo/"));
        assert!(!is_fifo(
            "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
        ));
        assert!(!is_fifo(
            "https://sqs.us-east-1.amazonaws.com/123456789012/fifo-jobs"
        ));
    }

    #[test]
    fn a_job_message_is_grouped_by_its_job_id() {
        let a = FifoIds::for_message(&msg(r#"{"jobId":"j-1"}"#, &[("jobId", "j-1")]));
        assert_eq!(a.group_id, "j-1");
        // Without the attribute, the body's jobId.
        let b = FifoIds::for_message(&msg(r#"{"jobId":"j-1","x":1}"#, &[]));
        assert_eq!(b.group_id, "j-1");
        // The same job twice is one message; another body is another.
        assert_eq!(
            FifoIds::for_message(&msg(r#"{"jobId":"j-1"}"#, &[("jobId", "j-1")])),
            a
        );
        assert_ne!(b.dedup_id, a.dedup_id);
        // A body that names no usable jobId still gets valid ids.
        let c = FifoIds::for_message(&msg("not json", &[("jobId", "bad id!")]));
        assert_eq!((c.group_id.len(), c.dedup_id.len()), (64, 64));
    }

    #[test]
    fn attribute_order_does_not_change_the_dedup_id() {
        let a = FifoIds::for_message(&msg("b", &[("x", "1"), ("y", "2")]));
        let b = FifoIds::for_message(&msg("b", &[("y", "2"), ("x", "1")]));
        assert_eq!(a, b);
        let c = FifoIds::for_message(&msg("b", &[("x", "12")]));
        let d = FifoIds::for_message(&msg("b", &[("x1", "2")]));
        assert_ne!(c.dedup_id, d.dedup_id);
    }

    #[test]
    fn a_result_is_deduplicated_by_job_and_outcome() {
        let ok = FifoIds::for_result(Some("j-1"), "m-1", "succeeded", "none", None);
        assert_eq!(ok.group_id, "j-1");
        // A redelivery (another SQS message id) with the same outcome: the same message.
        assert_eq!(
            FifoIds::for_result(Some("j-1"), "m-2", "succeeded", "none", None),
            ok
        );
        let failed = FifoIds::for_result(Some("j-1"), "m-1", "failed", "RetriesExhausted", None);
        assert_ne!(failed.dedup_id, ok.dedup_id);
        assert_eq!(
            FifoIds::for_result(Some("j-1"), "m-1", "succeeded", "none", Some("customer-7"))
                .group_id,
            "customer-7"
        );
        let unknown = FifoIds::for_result(None, "m-9", "failed", "InvalidJob", None);
        assert_eq!(unknown.group_id.len(), 64);
        assert_ne!(
            unknown.dedup_id,
            FifoIds::for_result(None, "m-8", "failed", "InvalidJob", None).dedup_id
        );
    }
}
