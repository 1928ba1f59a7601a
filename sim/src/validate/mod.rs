//! Request parsing and validation, as the service does it. Two layers:
//! - the service model's constraints (required members, types, lengths, ranges, enums):
//!   400 InvalidParameterException naming the member (see `fields`);
//! - the service's own rules across members (SupportedMessagingContentTypes must contain
//!   text/plain, initial message length per content type, PersistentChat and
//!   RelatedContactId mutually exclusive, attributes' total size, an unparseable body):
//!   400 InvalidRequestException naming the member.
//!
//! The result keeps a fingerprint of the request (the body without ClientToken, plus path
//! labels) so an idempotent retry can be compared with the original.

mod fields;
mod segments;

use serde_json::{Map, Value};

use crate::error::ApiError;
use fields::{Fields, check_len, constraint};

const REHYDRATION_TYPES: &[&str] = &["ENTIRE_PAST_SESSION", "FROM_SEGMENT"];
const MESSAGING_CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "text/markdown",
    "application/json",
    "application/vnd.amazonaws.connect.message.interactive",
    "application/vnd.amazonaws.connect.message.interactive.response",
];
/// Content types accepted for InitialMessage, and the maximum Content length of each.
const INITIAL_MESSAGE_LIMITS: &[(&str, usize)] = &[
    ("text/plain", 1_024),
    ("text/markdown", 1_024),
    ("application/json", 12_000),
    (
        "application/vnd.amazonaws.connect.message.interactive.response",
        12_288,
    ),
];
const ATTRIBUTES_MAX_BYTES: usize = 32_768;

/// `PersistentChat { RehydrationType, SourceContactId }`.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistentChat {
    pub rehydration_type: String,
    pub source_contact_id: String,
}

/// What the simulator needs from a valid StartChatContact request.
#[derive(Debug, Clone)]
pub struct StartChat {
    pub instance_id: String,
    pub persistent_chat: Option<PersistentChat>,
    pub related_contact_id: Option<String>,
    pub client_token: Option<String>,
    pub want_websocket: bool,
    pub want_connection_credentials: bool,
    pub want_streaming: bool,
    /// Whether `ChatDurationInMinutes` was set (refused on an account without custom durations).
    pub chat_duration: bool,
    /// `SegmentAttributes`, `DisconnectOnCustomerExit` and `ParticipantConfiguration` as sent,
    /// kept for `GET /_sim/contacts/{id}`.
    pub details: Value,
    pub fingerprint: u64,
}

/// What the simulator needs from a valid CreatePersistentContactAssociation request.
#[derive(Debug, Clone)]
pub struct Associate {
    pub instance_id: String,
    pub initial_contact_id: String,
    pub source_contact_id: String,
    pub rehydration_type: String,
    pub client_token: Option<String>,
    pub fingerprint: u64,
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("The request body is not valid JSON: {e}")))
}

/// A digest of the request's parameters: the body without ClientToken, plus the path
/// labels, hashed in canonical form (object keys sorted) so member order does not matter.
/// Stored instead of the request itself, which can carry 32 KB of attributes.
fn fingerprint(body: &Value, labels: &[(&str, &str)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Value::Object(map) = body {
        let mut keys: Vec<&String> = map.keys().filter(|k| *k != "ClientToken").collect();
        keys.sort();
        for k in keys {
            k.hash(&mut h);
            if let Some(v) = map.get(k) {
                hash_value(v, &mut h);
            }
        }
    }
    labels.hash(&mut h);
    h.finish()
}

fn hash_value(v: &Value, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(items) => {
            (4u8, items.len()).hash(h);
            for item in items {
                hash_value(item, h);
            }
        }
        Value::Object(map) => {
            (5u8, map.len()).hash(h);
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                k.hash(h);
                if let Some(v) = map.get(k) {
                    hash_value(v, h);
                }
            }
        }
    }
}

/// Parses and validates `PUT /contact/chat`.
pub fn start_chat(body: &[u8]) -> Result<StartChat, ApiError> {
    let value = parse_body(body)?;
    let f = Fields::top(&value)?;

    let instance_id = f.req_str("InstanceId", 1, 100)?;
    f.req_str("ContactFlowId", 1, 500)?;
    if let Some(attrs) = f.opt_obj("Attributes")? {
        check_attributes(&attrs)?;
    }
    let participant = f.req_obj("ParticipantDetails")?;
    participant.req_str("DisplayName", 1, 256)?;
    if let Some(pc) = f.opt_obj("ParticipantConfiguration")? {
        pc.opt_enum("ResponseMode", &["INCREMENTAL", "COMPLETE"])?;
    }
    if let Some(msg) = f.opt_obj("InitialMessage")? {
        check_initial_message(&msg)?;
    }
    let client_token = f.opt_str("ClientToken", 0, 500)?;
    let chat_duration = f.opt_int("ChatDurationInMinutes", 60, 10_080)?;
    check_supported_types(&f)?;
    let persistent_chat = match f.opt_obj("PersistentChat")? {
        Some(pc) => Some(check_persistent_chat(&pc)?),
        None => None,
    };
    let related_contact_id = f.opt_str("RelatedContactId", 1, 256)?;
    if persistent_chat.is_some() && related_contact_id.is_some() {
        return Err(ApiError::invalid_request(
            "PersistentChat and RelatedContactId cannot both be provided",
        ));
    }
    if let Some(seg) = f.opt_obj("SegmentAttributes")? {
        let supported: Vec<&str> = f
            .opt_list("SupportedMessagingContentTypes", 0, usize::MAX)?
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        segments::check(seg.map(), &supported)?;
    }
    f.opt_str("CustomerId", 1, 128)?;
    f.opt_enum_list("DisconnectOnCustomerExit", 1, 1, &["AGENT"])?;
    let connection_types = f
        .opt_enum_list(
            "ConnectionTypes",
            1,
            2,
            &[
                "WEBSOCKET",
                "CONNECTION_CREDENTIALS",
                "AUTHENTICATION_SESSION",
                "WEBRTC_CONNECTION",
            ],
        )?
        .unwrap_or_default();
    let want_streaming = match f.opt_obj("ChatStreamingConfiguration")? {
        Some(cs) => {
            cs.req_str("StreamingEndpointArn", 1, 350)?;
            true
        }
        None => false,
    };

    Ok(StartChat {
        instance_id: instance_id.to_string(),
        persistent_chat,
        related_contact_id: related_contact_id.map(str::to_string),
        client_token: client_token.map(str::to_string),
        want_websocket: connection_types.contains(&"WEBSOCKET"),
        want_connection_credentials: connection_types.contains(&"CONNECTION_CREDENTIALS"),
        want_streaming,
        chat_duration: chat_duration.is_some(),
        details: details(&value),
        fingerprint: fingerprint(&value, &[]),
    })
}

/// The members a test may want to read back from the created contact.
fn details(body: &Value) -> Value {
    let mut out = Map::new();
    for key in [
        "SegmentAttributes",
        "DisconnectOnCustomerExit",
        "ParticipantConfiguration",
    ] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// Parses and validates `POST /contact/persistent-contact-association/{InstanceId}/{InitialContactId}`.
pub fn associate(
    instance_id: &str,
    initial_contact_id: &str,
    body: &[u8],
) -> Result<Associate, ApiError> {
    check_len("InstanceId", instance_id.chars().count(), 1, 100)?;
    check_len(
        "InitialContactId",
        initial_contact_id.chars().count(),
        1,
        256,
    )?;
    let value = parse_body(body)?;
    let f = Fields::top(&value)?;
    let rehydration_type = f.req_enum("RehydrationType", REHYDRATION_TYPES)?;
    let source_contact_id = f.req_str("SourceContactId", 1, 256)?;
    let client_token = f.opt_str("ClientToken", 0, 500)?;
    Ok(Associate {
        instance_id: instance_id.to_string(),
        initial_contact_id: initial_contact_id.to_string(),
        source_contact_id: source_contact_id.to_string(),
        rehydration_type: rehydration_type.to_string(),
        client_token: client_token.map(str::to_string),
        fingerprint: fingerprint(
            &value,
            &[
                ("InstanceId", instance_id),
                ("InitialContactId", initial_contact_id),
            ],
        ),
    })
}

fn check_attributes(attrs: &Fields<'_>) -> Result<(), ApiError> {
    let mut total = 0usize;
    for (key, v) in attrs.map() {
        let path = attrs.path_of(key);
        check_len(&path, key.chars().count(), 1, 32_767)?;
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ApiError::invalid_parameter(format!(
                "Attributes: key '{key}' contains characters other than A-Z a-z 0-9 _ -"
            )));
        }
        let value = v
            .as_str()
            .ok_or_else(|| constraint(&path, "Member must be a string"))?;
        check_len(&path, value.chars().count(), 0, 32_767)?;
        total += key.len() + value.len();
    }
    if total > ATTRIBUTES_MAX_BYTES {
        return Err(ApiError::invalid_request(format!(
            "Attributes: keys and values together are {total} UTF-8 bytes, more than the \
             {ATTRIBUTES_MAX_BYTES} allowed per contact"
        )));
    }
    Ok(())
}

fn check_initial_message(msg: &Fields<'_>) -> Result<(), ApiError> {
    let content_type = msg.req_str("ContentType", 1, 100)?;
    let content = msg.req_str("Content", 1, 16_384)?;
    let Some((_, limit)) = INITIAL_MESSAGE_LIMITS
        .iter()
        .find(|(t, _)| *t == content_type)
    else {
        let allowed: Vec<&str> = INITIAL_MESSAGE_LIMITS.iter().map(|(t, _)| *t).collect();
        return Err(ApiError::invalid_request(format!(
            "InitialMessage.ContentType '{content_type}' is not supported; use one of: {}",
            allowed.join(", ")
        )));
    };
    let len = content.chars().count();
    if len > *limit {
        return Err(ApiError::invalid_request(format!(
            "InitialMessage.Content is {len} characters, more than the {limit} allowed for \
             {content_type}"
        )));
    }
    Ok(())
}

fn check_supported_types(f: &Fields<'_>) -> Result<(), ApiError> {
    let Some(items) = f.opt_list("SupportedMessagingContentTypes", 0, usize::MAX)? else {
        return Ok(());
    };
    let path = f.path_of("SupportedMessagingContentTypes");
    let mut has_plain = false;
    for item in items {
        let s = item
            .as_str()
            .ok_or_else(|| constraint(&path, "Member must be a list of strings"))?;
        check_len(&path, s.chars().count(), 1, 100)?;
        if !MESSAGING_CONTENT_TYPES.contains(&s) {
            return Err(ApiError::invalid_request(format!(
                "SupportedMessagingContentTypes: '{s}' is not supported; use any of: {}",
                MESSAGING_CONTENT_TYPES.join(", ")
            )));
        }
        has_plain |= s == "text/plain";
    }
    if !has_plain {
        return Err(ApiError::invalid_request(
            "SupportedMessagingContentTypes must contain text/plain",
        ));
    }
    Ok(())
}

fn check_persistent_chat(pc: &Fields<'_>) -> Result<PersistentChat, ApiError> {
    let rehydration = pc.opt_enum("RehydrationType", REHYDRATION_TYPES)?;
    let source = pc.opt_str("SourceContactId", 1, 256)?;
    // Both are optional in the model, but a persistent chat needs both to know what to
    // rehydrate from and how.
    match (rehydration, source) {
        (Some(r), Some(s)) => Ok(PersistentChat {
            rehydration_type: r.to_string(),
            source_contact_id: s.to_string(),
        }),
        (None, _) => Err(ApiError::invalid_request(
            "PersistentChat.RehydrationType is required for a persistent chat",
        )),
        (_, None) => Err(ApiError::invalid_request(
            "PersistentChat.SourceContactId is required for a persistent chat",
        )),
    }
}

#[cfg(test)]
mod tests;
