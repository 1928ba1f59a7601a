//! The result message of the contract (section 2): one terminal [`JobResult`] per job.
//!
//! Mechanism: the constructors build the only three shapes a result can take (chat started,
//! contact associated, failed) so that the success/failure fields cannot be mixed up, and
//! [`JobResult::to_json`] serializes with the contract's camelCase names. Fields that do not apply
//! are omitted, except `jobId`, which is always present and `null` only when the job could not be
//! read. `completedAt` is RFC 3339 in UTC. `Debug` redacts the participant token, which lets
//! anyone holding it act as the customer in the chat.

use std::fmt;

use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::job::{Action, Job, Redacted};

/// Error codes the worker itself produces; Connect's own codes are passed through as they are.
pub mod codes {
    /// The body is not a valid job (contract section 1).
    pub const INVALID_JOB: &str = "InvalidJob";
    /// The job's `notAfter` passed before it could be started.
    pub const EXPIRED: &str = "Expired";
    /// Transient failures persisted through every retry.
    pub const RETRIES_EXHAUSTED: &str = "RetriesExhausted";
    /// The chat was created but its result could not be published before the participant
    /// token's connect window closed (see [`super::CONNECT_WINDOW`]).
    pub const CONNECT_WINDOW_EXPIRED: &str = "ConnectWindowExpired";
    /// The account does not support custom chat durations: the job must leave
    /// `chatDurationInMinutes` out.
    pub const CHAT_DURATION_NOT_SUPPORTED: &str = "ChatDurationNotSupported";
}

/// How long the participant token of a new chat can be used to connect: the StartChatContact
/// documentation says "clients must subscribe to the participant's connection for the created
/// chat within 5 minutes". Counted from when the worker got the Connect response, the only
/// instant it knows: the chat was created a little before (one call's latency), or, when the
/// response was an idempotent replay of an earlier call whose result was never published, up to
/// that earlier call's age before. So `connectBy` is a bound the chat can only be past sooner.
pub const CONNECT_WINDOW: time::Duration = time::Duration::seconds(300);

/// An `error.message` longer than this is cut, so a verbose upstream error cannot push the
/// result past the SQS message size limit.
const MAX_ERROR_MESSAGE_CHARS: usize = 4_096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Failed,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultError {
    pub code: String,
    pub message: String,
}

/// The body of one message on the results queue.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// Always serialized: `null` only when the body could not be read as a job at all.
    pub job_id: Option<String>,
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    /// Sensitive: redacted by `Debug`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continued_from_contact_id: Option<String>,
    /// Start results only: until when the participant token can be used to connect.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_rfc3339_utc"
    )]
    pub connect_by: Option<OffsetDateTime>,
    /// Start results only: when the Connect response arrived (not serialized; for the
    /// connect-window metric and check at publishing).
    #[serde(skip)]
    pub responded_at: Option<OffsetDateTime>,
    /// Boxed: a result travels by value through the pipeline, and most are successes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<ResultError>>,
    pub receive_count: u32,
    #[serde(serialize_with = "rfc3339_utc")]
    pub completed_at: OffsetDateTime,
}

impl JobResult {
    /// `StartChatContact` succeeded.
    #[allow(clippy::too_many_arguments)] // mirrors the contract fields one to one
    pub fn started_chat(
        job: &Job,
        message_id: &str,
        receive_count: u32,
        now: OffsetDateTime,
        contact_id: String,
        participant_id: String,
        participant_token: String,
        continued_from: Option<String>,
    ) -> Self {
        JobResult {
            contact_id: Some(contact_id),
            participant_id: Some(participant_id),
            participant_token: Some(participant_token),
            continued_from_contact_id: continued_from,
            connect_by: Some(now + CONNECT_WINDOW),
            responded_at: Some(now),
            ..Self::succeeded(job, message_id, receive_count, now)
        }
    }

    /// The result as it may be published at `now`: a start result whose connect window has
    /// closed, or has less than `margin` left (`CONNECT_MARGIN_SECONDS`: the time consumers
    /// need to connect), becomes a failure (`ConnectWindowExpired`), because its token can no
    /// longer connect in time and Connect ends a chat nobody connected to. Re-calling would not help:
    /// the job's ClientToken replays the same token. The consumer needs to know at once, with the
    /// contact id, to send the job again under a new jobId for a fresh chat. Anything else is
    /// returned as it is.
    pub fn for_publishing_at(self, now: OffsetDateTime, margin: std::time::Duration) -> Self {
        let (Some(by), Some(contact)) = (self.connect_by, self.contact_id.as_deref()) else {
            return self;
        };
        if now + margin <= by {
            return self;
        }
        let at = |t: OffsetDateTime| {
            t.to_offset(UtcOffset::UTC)
                .format(&Rfc3339)
                .unwrap_or_else(|_| t.to_string())
        };
        let message = format!(
            "chat {contact} was created, but its result could not be published before the \
             participant token's 5-minute connect window closed at {} (less the {} s margin of \
             CONNECT_MARGIN_SECONDS); Connect ends a chat nobody connects to, and a retry with this job's ClientToken would return the same token: \
             send the job again with a new jobId for a fresh chat",
            at(by),
            margin.as_secs()
        );
        JobResult {
            responded_at: self.responded_at,
            ..Self::failed(
                self.job_id,
                self.action,
                &self.message_id,
                self.receive_count,
                now,
                codes::CONNECT_WINDOW_EXPIRED,
                message,
            )
        }
    }

    /// `CreatePersistentContactAssociation` succeeded; Connect returns only the contact it
    /// continued from.
    pub fn associated(
        job: &Job,
        message_id: &str,
        receive_count: u32,
        now: OffsetDateTime,
        continued_from: Option<String>,
    ) -> Self {
        JobResult {
            continued_from_contact_id: continued_from,
            ..Self::succeeded(job, message_id, receive_count, now)
        }
    }

    /// The job ended without success. `job_id`/`action` are whatever could be read (see
    /// [`crate::job::InvalidJob`]); `code` is one of [`codes`] or a Connect error code.
    pub fn failed(
        job_id: Option<String>,
        action: Option<Action>,
        message_id: &str,
        receive_count: u32,
        now: OffsetDateTime,
        code: &str,
        message: String,
    ) -> Self {
        JobResult {
            job_id,
            message_id: message_id.to_owned(),
            action,
            status: Status::Failed,
            contact_id: None,
            participant_id: None,
            participant_token: None,
            continued_from_contact_id: None,
            connect_by: None,
            responded_at: None,
            error: Some(Box::new(ResultError {
                code: code.to_owned(),
                message: truncate(message),
            })),
            receive_count,
            completed_at: now,
        }
    }

    fn succeeded(job: &Job, message_id: &str, receive_count: u32, now: OffsetDateTime) -> Self {
        JobResult {
            job_id: Some(job.job_id.clone()),
            message_id: message_id.to_owned(),
            action: Some(job.action),
            status: Status::Succeeded,
            contact_id: None,
            participant_id: None,
            participant_token: None,
            continued_from_contact_id: None,
            connect_by: None,
            responded_at: None,
            error: None,
            receive_count,
            completed_at: now,
        }
    }

    /// The message body. Serializing these plain fields cannot fail; should it ever, a minimal
    /// body that still names the job is returned rather than losing the result.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::json!({
                "jobId": self.job_id,
                "messageId": self.message_id,
                "status": self.status,
                "error": {"code": "SerializationFailed", "message": e.to_string()},
                "receiveCount": self.receive_count,
            })
            .to_string()
        })
    }
}

impl fmt::Debug for JobResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand only to keep `participant_token` out of logs; keep the list in sync.
        f.debug_struct("JobResult")
            .field("job_id", &self.job_id)
            .field("message_id", &self.message_id)
            .field("action", &self.action)
            .field("status", &self.status)
            .field("contact_id", &self.contact_id)
            .field("participant_id", &self.participant_id)
            .field(
                "participant_token",
                &self.participant_token.as_ref().map(|_| Redacted),
            )
            .field("continued_from_contact_id", &self.continued_from_contact_id)
            .field("connect_by", &self.connect_by)
            .field("error", &self.error)
            .field("receive_count", &self.receive_count)
            .field("completed_at", &self.completed_at)
            .finish()
    }
}

/// RFC 3339 in UTC (`...Z`). A date RFC 3339 cannot express (year beyond 9999) falls back to
/// `time`'s display form instead of failing the whole result.
fn rfc3339_utc<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let utc = t.checked_to_offset(UtcOffset::UTC).unwrap_or(*t);
    match utc.format(&Rfc3339) {
        Ok(text) => s.serialize_str(&text),
        Err(_) => s.serialize_str(&utc.to_string()),
    }
}

fn opt_rfc3339_utc<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339_utc(t, s),
        None => s.serialize_none(),
    }
}

fn truncate(message: String) -> String {
    match message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        None => message,
        Some((cut, _)) => format!("{}…", &message[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobDefaults, parse_job};
    use serde_json::{Value, json};

    fn job(body: Value) -> Job {
        let defaults = JobDefaults {
            instance_id: Some("inst-1".into()),
            contact_flow_id: Some("flow-1".into()),
        };
        match parse_job(&body.to_string(), &defaults) {
            Ok(job) => job,
            Err(e) => panic!("test job must be valid: {e}"),
        }
    }

    fn start_job() -> Job {
        job(
            json!({"jobId": "job-1", "sourceContactId": "c-past", "participant": {"displayName": "Ana"},
                   "customerId": "cust-secret-77"}),
        )
    }

    fn at(unix: i64) -> OffsetDateTime {
        match OffsetDateTime::from_unix_timestamp(unix) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    fn parsed(r: &JobResult) -> Value {
        match serde_json::from_str(&r.to_json()) {
            Ok(v) => v,
            Err(e) => panic!("to_json must produce JSON: {e}"),
        }
    }

    #[test]
    fn started_chat_serializes_every_contract_field_in_camel_case() {
        let r = JobResult::started_chat(
            &start_job(),
            "msg-1",
            2,
            at(1_700_000_000),
            "contact-9".into(),
            "part-3".into(),
            "tok-secret".into(),
            Some("c-past".into()),
        );
        assert_eq!(
            parsed(&r),
            json!({
                "jobId": "job-1", "messageId": "msg-1", "action": "startPersistentChat",
                "status": "succeeded", "contactId": "contact-9", "participantId": "part-3",
                "participantToken": "tok-secret", "continuedFromContactId": "c-past",
                "connectBy": "2023-11-14T22:18:20Z",
                "receiveCount": 2, "completedAt": "2023-11-14T22:13:20Z"
            })
        );
    }

    #[test]
    fn associated_has_only_continued_from() {
        let j = job(
            json!({"jobId": "job-2", "action": "associatePersistentContact",
                           "sourceContactId": "c-past", "initialContactId": "c-now"}),
        );
        let r = JobResult::associated(&j, "msg-2", 1, at(0), Some("c-past".into()));
        assert_eq!(
            parsed(&r),
            json!({
                "jobId": "job-2", "messageId": "msg-2", "action": "associatePersistentContact",
                "status": "succeeded", "continuedFromContactId": "c-past",
                "receiveCount": 1, "completedAt": "1970-01-01T00:00:00Z"
            })
        );
    }

    #[test]
    fn associated_without_continued_from_omits_it() {
        let j = job(
            json!({"jobId": "job-2", "action": "associatePersistentContact",
                           "sourceContactId": "c-past", "initialContactId": "c-now"}),
        );
        let v = parsed(&JobResult::associated(&j, "m", 1, at(0), None));
        assert!(v.get("continuedFromContactId").is_none(), "{v}");
    }

    #[test]
    fn failed_with_unknown_job_has_null_job_id_and_no_action() {
        let r = JobResult::failed(
            None,
            None,
            "msg-3",
            1,
            at(0),
            codes::INVALID_JOB,
            "body is not valid JSON".into(),
        );
        assert_eq!(
            parsed(&r),
            json!({
                "jobId": null, "messageId": "msg-3", "status": "failed",
                "error": {"code": "InvalidJob", "message": "body is not valid JSON"},
                "receiveCount": 1, "completedAt": "1970-01-01T00:00:00Z"
            })
        );
    }

    #[test]
    fn failed_echoes_what_an_invalid_job_could_read() {
        let err = match parse_job(
            r#"{"jobId":"job-4","action":"associatePersistentContact"}"#,
            &JobDefaults::default(),
        ) {
            Ok(j) => panic!("must be invalid: {j:?}"),
            Err(e) => e,
        };
        let r = JobResult::failed(
            err.job_id.clone(),
            err.action,
            "m",
            3,
            at(0),
            codes::INVALID_JOB,
            err.to_string(),
        );
        let v = parsed(&r);
        assert_eq!(v["jobId"], "job-4");
        assert_eq!(v["action"], "associatePersistentContact");
        assert_eq!(v["error"]["code"], "InvalidJob");
        assert_eq!(v["receiveCount"], 3);
    }

    #[test]
    fn worker_error_codes_match_the_contract() {
        assert_eq!(codes::INVALID_JOB, "InvalidJob");
        assert_eq!(codes::EXPIRED, "Expired");
        assert_eq!(codes::RETRIES_EXHAUSTED, "RetriesExhausted");
        assert_eq!(Status::Succeeded.as_str(), "succeeded");
        assert_eq!(Status::Failed.as_str(), "failed");
    }

    #[test]
    fn completed_at_is_normalized_to_utc() {
        let offset = match UtcOffset::from_hms(2, 0, 0) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        let r = JobResult::failed(
            None,
            None,
            "m",
            1,
            at(0).to_offset(offset),
            codes::EXPIRED,
            "x".into(),
        );
        assert_eq!(parsed(&r)["completedAt"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn completed_at_beyond_rfc3339_range_still_serializes() {
        let far = match time::Date::from_calendar_date(12_000, time::Month::January, 1) {
            Ok(d) => d.midnight().assume_utc(),
            Err(_) => return, // `time` built without large dates: nothing to check
        };
        let r = JobResult::failed(None, None, "m", 1, far, codes::EXPIRED, "x".into());
        assert!(parsed(&r)["completedAt"].is_string());
    }

    #[test]
    fn long_error_messages_are_truncated() {
        let r = JobResult::failed(
            None,
            None,
            "m",
            1,
            at(0),
            "InvalidRequestException",
            "é".repeat(10_000),
        );
        let message = r.error.map(|e| e.message).unwrap_or_default();
        assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn short_error_messages_are_kept() {
        let msg = "x".repeat(MAX_ERROR_MESSAGE_CHARS);
        let r = JobResult::failed(
            None,
            None,
            "m",
            1,
            at(0),
            "AccessDeniedException",
            msg.clone(),
        );
        assert_eq!(r.error.map(|e| e.message), Some(msg));
    }

    #[test]
    fn debug_redacts_the_participant_token_and_job_debug_the_customer_id() {
        let j = start_job();
        let r = JobResult::started_chat(
            &j,
            "m",
            1,
            at(0),
            "c".into(),
            "p".into(),
            "tok-secret".into(),
            None,
        );
        let debug = format!("{r:?} {r:#?}");
        assert!(!debug.contains("tok-secret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("job-1"), "{debug}");
        let job_debug = format!("{j:?} {j:#?}");
        assert!(!job_debug.contains("cust-secret-77"), "{job_debug}");
    }

    #[test]
    fn a_start_result_past_its_connect_window_is_published_as_a_failure() {
        let r = JobResult::started_chat(
            &start_job(),
            "m",
            2,
            at(1_000),
            "contact-9".into(),
            "p".into(),
            "tok-secret".into(),
            None,
        );
        // Up to and at connectBy it is published as it is.
        let zero = std::time::Duration::ZERO;
        assert_eq!(r.clone().for_publishing_at(at(1_300), zero), r);
        // A margin moves the limit earlier.
        let margin = std::time::Duration::from_secs(60);
        assert_eq!(r.clone().for_publishing_at(at(1_240), margin), r);
        let v = parsed(&r.clone().for_publishing_at(at(1_241), margin));
        assert_eq!(v["error"]["code"], codes::CONNECT_WINDOW_EXPIRED);
        let late = r.for_publishing_at(at(1_301), zero);
        let v = parsed(&late);
        assert_eq!(v["status"], "failed");
        assert_eq!(v["error"]["code"], codes::CONNECT_WINDOW_EXPIRED);
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("contact-9")
                && msg.contains("1970-01-01T00:21:40Z")
                && msg.contains("new jobId"),
            "{msg}"
        );
        assert!(
            v.get("participantToken").is_none() && v.get("connectBy").is_none(),
            "{v}"
        );
        assert_eq!(
            (v["jobId"].as_str(), v["receiveCount"].as_u64()),
            (Some("job-1"), Some(2))
        );
        // The metric still knows when the response came.
        assert_eq!(late.responded_at, Some(at(1_000)));
        // Results without a window are never touched.
        let a = JobResult::associated(&start_job(), "m", 1, at(0), None);
        assert_eq!(a.clone().for_publishing_at(at(100_000), margin), a);
    }

    #[test]
    fn debug_of_a_failure_is_not_redacted_needlessly() {
        let r = JobResult::failed(
            Some("job-9".into()),
            None,
            "m",
            1,
            at(0),
            codes::EXPIRED,
            "late".into(),
        );
        let debug = format!("{r:?}");
        assert!(!debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("late"), "{debug}");
    }
}
