//! The `aws-sdk-sqs` adapter. It asks for `ApproximateReceiveCount` and `SentTimestamp` on every
//! receive, uses batch ids equal to the entry index, and classifies every error into a
//! [`QueueError`]; this is the only file that matches on `SdkError` for SQS.
//!
//! A queue whose URL ends in `.fifo` is a FIFO queue: every message sent to it carries a
//! `MessageGroupId` and a `MessageDeduplicationId` (see `fifo`); standard queues get neither.
//!
//! The SDK's own retries stay on here (standard mode): SQS calls are idempotent or made safe by
//! receipt handles, and a retried `SendMessageBatch` at worst duplicates a result, which the
//! contract allows (consumers dedupe by `jobId`).

use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::fifo::{FifoIds, is_fifo};
use super::{
    EntryFailure, MessageQueue, OutgoingMessage, QueueDepth, QueueError, QueueErrorKind,
    ReceivedMessage,
};

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
}

impl SqsQueue {
    /// Builds the client from the shared AWS config (`AWS_ENDPOINT_URL_SQS` points it at moto).
    /// The operation timeout leaves room for a 20 s long poll.
    pub fn new(shared: &aws_config::SdkConfig) -> Self {
        let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build();
        let config = aws_sdk_sqs::config::Builder::from(shared)
            .timeout_config(timeouts)
            .build();
        SqsQueue {
            client: aws_sdk_sqs::Client::from_conf(config),
        }
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }
}

fn to_queue_error<E>(
    operation: &'static str,
    err: SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // An error body the SDK cannot read (a proxy's, or moto's XML IAM errors on the JSON
    // protocol) still has its status: a 403 is a refusal, whatever the body says.
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err
        .code()
        .map(str::to_owned)
        .or_else(|| (status == Some(403)).then(|| "Http403".to_owned()));
    let message = err.message().map(str::to_owned).unwrap_or_else(|| {
        let mut parts = vec![err.to_string()];
        let mut next = std::error::Error::source(&err);
        while let Some(e) = next {
            parts.push(e.to_string());
            next = e.source();
        }
        parts.join(": ")
    });
    let kind = match code.as_deref() {
        Some(
            "AWS.SimpleQueueService.NonExistentQueue"
            | "QueueDoesNotExist"
            | "QueueDoesNotExistException",
        ) => QueueErrorKind::QueueMissing,
        Some(
            "AccessDenied"
            | "AccessDeniedException"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "Http403",
        ) => QueueErrorKind::AccessDenied,
        _ => QueueErrorKind::Transient,
    };
    QueueError {
        kind,
        operation,
        code: code.unwrap_or_else(|| "Transport".to_owned()),
        message,
    }
}

fn failures(list: &[aws_sdk_sqs::types::BatchResultErrorEntry]) -> Vec<EntryFailure> {
    list.iter()
        .filter_map(|f| {
            Some(EntryFailure {
                index: f.id().parse().ok()?,
                code: f.code().to_owned(),
                message: f.message().unwrap_or_default().to_owned(),
                sender_fault: f.sender_fault(),
            })
        })
        .collect()
}

fn string_attribute(value: &str) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .ok()
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl MessageQueue for SqsQueue {
    async fn receive(
        &self,
        queue_url: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max.clamp(1, super::MAX_BATCH) as i32)
            .wait_time_seconds(secs(wait).min(20))
            .visibility_timeout(secs(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| to_queue_error("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let system = m.attributes.as_ref();
                let receive_count = system
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let sent_timestamp_ms = system
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|v| v.parse().ok());
                let group_id = system
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned();
                let attributes = m
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.string_value?)))
                    .collect();
                Some(ReceivedMessage {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                    sent_timestamp_ms,
                    attributes,
                    group_id,
                })
            })
            .collect())
    }

    async fn send_batch(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let ids: Vec<FifoIds> = if is_fifo(queue_url) {
            messages.iter().map(FifoIds::for_message).collect()
        } else {
            Vec::new()
        };
        self.send_batch_with_ids(queue_url, messages, &ids).await
    }

    async fn send_batch_with_ids(
        &self,
        queue_url: &str,
        messages: &[OutgoingMessage],
        ids: &[FifoIds],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let fifo = is_fifo(queue_url);
        let mut entries = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&m.body);
            if fifo {
                // A FIFO queue refuses the whole call when an entry lacks its group id.
                let own;
                let ids = match ids.get(i) {
                    Some(ids) => ids,
                    None => {
                        own = FifoIds::for_message(m);
                        &own
                    }
                };
                entry = entry
                    .message_group_id(&ids.group_id)
                    .message_deduplication_id(&ids.dedup_id);
            }
            for (k, v) in &m.attributes {
                if let Some(value) = string_attribute(v) {
                    entry = entry.message_attributes(k, value);
                }
            }
            entries.push(entry.build().map_err(|e| QueueError {
                kind: QueueErrorKind::Transient,
                operation: "SendMessageBatch",
                code: "InvalidEntry".to_owned(),
                message: e.to_string(),
            })?);
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| to_queue_error("SendMessageBatch", e))?;
        Ok(failures(out.failed()))
    }

    async fn delete_batch(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let entries = receipt_handles
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .ok()
            })
            .collect();
        let out = self
            .client
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| to_queue_error("DeleteMessageBatch", e))?;
        Ok(failures(out.failed()))
    }

    async fn change_visibility_batch(
        &self,
        queue_url: &str,
        entries: &[(String, Duration)],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let entries = entries
            .iter()
            .enumerate()
            .filter_map(|(i, (r, d))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(secs(*d).min(43_200))
                    .build()
                    .ok()
            })
            .collect();
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| to_queue_error("ChangeMessageVisibilityBatch", e))?;
        Ok(failures(out.failed()))
    }

    async fn send_delayed(
        &self,
        queue_url: &str,
        message: &OutgoingMessage,
        delay: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        let mut req = self
            .client
            .send_message()
            .queue_url(queue_url)
            .message_body(&message.body)
            .delay_seconds(secs(delay.min(super::MAX_DELAY)));
        for (k, v) in &message.attributes {
            if let Some(value) = string_attribute(v) {
                req = req.message_attributes(k, value);
            }
        }
        req.send()
            .await
            .map_err(|e| to_queue_error("SendMessage", e))?;
        Ok(Vec::new())
    }

    async fn depth(&self, queue_url: &str) -> Result<QueueDepth, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| to_queue_error("GetQueueAttributes", e))?;
        let get = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }
}
