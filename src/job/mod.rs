//! The job message of the contract (section 1), parsed once at the edge into a [`Job`].
//!
//! Mechanism: [`parse_job`] reads the body into a `serde_json::Value` and then checks every field by
//! hand (see [`parse`]), so each rejection names the exact field path (`initialMessage.content`,
//! `attributes.tier`, `supportedMessagingContentTypes[1]`) and no input can panic it: `serde_json`
//! already bounds nesting depth and rejects invalid escapes, everything after that is total.
//!
//! Rules that are not obvious from the contract table:
//! - JSON `null` for an optional field means "absent"; an empty string is "empty", not "missing".
//! - Fields that only apply to the other action (`contactFlowId` and `participant` on
//!   `associatePersistentContact`, `initialContactId` on `startPersistentChat`) are ignored, not
//!   rejected, so a producer can send one shape for both actions.
//! - The other optional fields are validated for both actions; the associate call simply does not
//!   use the `StartChatContact`-only ones (attributes, initial message, duration, content types,
//!   `disconnectOnCustomerExit`, `segmentAttributes`, `participantConfiguration`).
//! - Error messages never contain the value of `customerId`, of an attribute, or of message content.

mod members;
#[cfg(test)]
mod members_tests;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use parse::parse_job;

/// Limits of the contract, in characters unless named `_BYTES`.
pub mod limits {
    pub const JOB_ID_MAX: usize = 128;
    pub const INSTANCE_ID_MAX: usize = 100;
    pub const CONTACT_FLOW_ID_MAX: usize = 500;
    pub const CONTACT_ID_MAX: usize = 256;
    pub const DISPLAY_NAME_MAX: usize = 256;
    pub const ATTRIBUTES_MAX_BYTES: usize = 32_768;
    pub const CUSTOMER_ID_MAX: usize = 128;
    pub const CHAT_DURATION_MIN: i64 = 60;
    pub const CHAT_DURATION_MAX: i64 = 10_080;
    /// `SegmentAttributeName` in the service model: 1–128 characters.
    pub const SEGMENT_ATTRIBUTE_NAME_MAX: usize = 128;
    /// `SegmentAttributeValueString` (also `ValueArn`): 0–1,024 characters.
    pub const SEGMENT_ATTRIBUTE_STRING_MAX: usize = 1_024;
}

/// The content types a `connect:Guide` chat (segment attribute `connect:Subtype` =
/// `connect:Guide`) must declare in `supportedMessagingContentTypes`, as the StartChatContact
/// documentation requires.
pub const GUIDE_CONTENT_TYPES: [&str; 2] = [
    "application/vnd.amazonaws.connect.message.interactive",
    "application/vnd.amazonaws.connect.message.interactive.response",
];

/// Content types an initial message may have, with the maximum content length in characters.
pub const INITIAL_MESSAGE_CONTENT_TYPES: [(&str, usize); 4] = [
    ("text/plain", 1_024),
    ("text/markdown", 1_024),
    ("application/json", 12_000),
    (
        "application/vnd.amazonaws.connect.message.interactive.response",
        12_288,
    ),
];

/// Content types a chat may declare in `supportedMessagingContentTypes` (`text/plain` is mandatory).
pub const SUPPORTED_MESSAGING_CONTENT_TYPES: [&str; 5] = [
    "text/plain",
    "text/markdown",
    "application/json",
    "application/vnd.amazonaws.connect.message.interactive",
    "application/vnd.amazonaws.connect.message.interactive.response",
];

/// What the job asks Connect to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// `StartChatContact` with `PersistentChat` (the default).
    StartPersistentChat,
    /// `CreatePersistentContactAssociation`.
    AssociatePersistentContact,
}

impl Action {
    pub const ALL: [Action; 2] = [
        Action::StartPersistentChat,
        Action::AssociatePersistentContact,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Action::StartPersistentChat => "startPersistentChat",
            Action::AssociatePersistentContact => "associatePersistentContact",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of the past chat Connect copies into the resumed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RehydrationType {
    #[default]
    EntirePastSession,
    FromSegment,
}

impl RehydrationType {
    pub const ALL: [RehydrationType; 2] = [
        RehydrationType::EntirePastSession,
        RehydrationType::FromSegment,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RehydrationType::EntirePastSession => "ENTIRE_PAST_SESSION",
            RehydrationType::FromSegment => "FROM_SEGMENT",
        }
    }
}

impl fmt::Display for RehydrationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `SegmentAttributeValue` of the service model: exactly one of its five forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentValue {
    /// `ValueString`: 0–1,024 characters.
    String(String),
    /// `ValueMap`: names (as segment attribute names) to values.
    Map(BTreeMap<String, SegmentValue>),
    /// `ValueInteger`: a 32-bit integer.
    Integer(i32),
    /// `ValueList`: system-defined (`connect:`) attributes only.
    List(Vec<SegmentValue>),
    /// `ValueArn`: an ARN, system-defined (`connect:`) attributes only.
    Arn(String),
}

/// `ParticipantConfiguration.ResponseMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseMode {
    Incremental,
    Complete,
}

impl ResponseMode {
    pub const ALL: [ResponseMode; 2] = [ResponseMode::Incremental, ResponseMode::Complete];

    pub fn as_str(&self) -> &'static str {
        match self {
            ResponseMode::Incremental => "INCREMENTAL",
            ResponseMode::Complete => "COMPLETE",
        }
    }
}

/// The first message of the resumed chat, sent on the customer's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMessage {
    pub content_type: String,
    pub content: String,
}

/// A validated job. Every field already satisfies the contract, so the pipeline passes them to
/// Connect as they are.
#[derive(Clone, PartialEq, Eq)]
pub struct Job {
    pub job_id: String,
    pub action: Action,
    /// The job's `instanceId`, or the configured default.
    pub instance_id: String,
    /// `Some` for [`Action::StartPersistentChat`] (the job's or the default), `None` for associate.
    pub contact_flow_id: Option<String>,
    pub source_contact_id: String,
    pub rehydration_type: RehydrationType,
    /// `Some` for [`Action::AssociatePersistentContact`], `None` for start.
    pub initial_contact_id: Option<String>,
    /// `Some` for [`Action::StartPersistentChat`], `None` for associate.
    pub display_name: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub initial_message: Option<InitialMessage>,
    pub chat_duration_in_minutes: Option<i32>,
    pub supported_messaging_content_types: Option<Vec<String>>,
    /// `DisconnectOnCustomerExit`: participant types (only `AGENT` exists) disconnected when the
    /// customer leaves, so the customer can go on to a disconnect flow such as a survey.
    pub disconnect_on_customer_exit: Option<Vec<String>>,
    /// `SegmentAttributes` (e.g. `connect:Subtype`); empty when the job has none.
    pub segment_attributes: BTreeMap<String, SegmentValue>,
    /// `ParticipantConfiguration.ResponseMode`.
    pub response_mode: Option<ResponseMode>,
    /// Sensitive: redacted by `Debug`, never put in logs or error messages.
    pub customer_id: Option<String>,
    pub not_after: Option<OffsetDateTime>,
}

/// Domain separation for [`Job::client_token`]; bump the version only if tokens may change,
/// which would let a job redelivered across the change open a second chat.
const CLIENT_TOKEN_DOMAIN: &str = "resume-chat-worker/client-token/v1";

impl Job {
    /// Deterministic Connect `ClientToken`: same job → same token, so a redelivered job never opens
    /// a second chat. sha256 of a versioned domain string, the action and the jobId, as 64 hex
    /// characters. The action is included so that reusing a jobId for the other action is not
    /// mistaken by Connect for a retry of a different request.
    pub fn client_token(&self) -> String {
        let mut hasher = Sha256::new();
        // Newline separators cannot occur in any part (the jobId charset excludes them), so the
        // encoding is unambiguous.
        hasher.update(CLIENT_TOKEN_DOMAIN.as_bytes());
        hasher.update(b"\n");
        hasher.update(self.action.as_str().as_bytes());
        hasher.update(b"\n");
        hasher.update(self.job_id.as_bytes());
        hex::encode(hasher.finalize())
    }

    /// True when the job has a `notAfter` and `now` is strictly past it: a job may still be
    /// started at exactly `notAfter` ("not started by then").
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.not_after.is_some_and(|not_after| now > not_after)
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand only to keep `customer_id` out of logs; keep the field list in sync.
        f.debug_struct("Job")
            .field("job_id", &self.job_id)
            .field("action", &self.action)
            .field("instance_id", &self.instance_id)
            .field("contact_flow_id", &self.contact_flow_id)
            .field("source_contact_id", &self.source_contact_id)
            .field("rehydration_type", &self.rehydration_type)
            .field("initial_contact_id", &self.initial_contact_id)
            .field("display_name", &self.display_name)
            .field("attributes", &self.attributes)
            .field("initial_message", &self.initial_message)
            .field("chat_duration_in_minutes", &self.chat_duration_in_minutes)
            .field(
                "supported_messaging_content_types",
                &self.supported_messaging_content_types,
            )
            .field(
                "disconnect_on_customer_exit",
                &self.disconnect_on_customer_exit,
            )
            .field("segment_attributes", &self.segment_attributes)
            .field("response_mode", &self.response_mode)
            .field("customer_id", &self.customer_id.as_ref().map(|_| Redacted))
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Stands in for a sensitive value in `Debug` output.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Configured fallbacks for fields a job may leave out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobDefaults {
    pub instance_id: Option<String>,
    pub contact_flow_id: Option<String>,
}

/// Why a body is not a valid job. `Display` is one sentence that names the field, e.g.
/// "field `participant.displayName` is required for action startPersistentChat".
///
/// `job_id` and `action` are echoed when they could be read validly even though another field is
/// invalid, so the failure result can still be correlated; `action` is `Some(StartPersistentChat)`
/// when the body leaves it out (the default applies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidJob {
    /// Path of the offending field (`initialMessage.content`, `attributes.tier`,
    /// `supportedMessagingContentTypes[0]`); `None` when the body as a whole is wrong.
    pub field: Option<String>,
    /// The whole sentence, field name included.
    pub message: String,
    pub job_id: Option<String>,
    pub action: Option<Action>,
}
