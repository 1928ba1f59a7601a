//! Parsing and validation of a job body (contract section 1), by hand over a `serde_json::Value`.
//!
//! Why by hand rather than `#[derive(Deserialize)]`: serde's errors name the Rust type, not the
//! JSON path, and would echo offending values (a customer id, an attribute) into the message.
//! Here every check produces a [`Bad`] that carries the field path and a sentence without the
//! value; [`parse_job`] then adds the jobId/action it could read, so a failure result can still be
//! correlated. The first problem found wins, in the order of the contract table, except that a
//! missing `instanceId`/`contactFlowId` with no configured default is reported last.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::limits::*;
use super::members;
use super::{
    Action, INITIAL_MESSAGE_CONTENT_TYPES, InitialMessage, InvalidJob, Job, JobDefaults,
    RehydrationType, SUPPORTED_MESSAGING_CONTENT_TYPES,
};

/// A rejection before the jobId/action echo is attached.
pub(super) struct Bad {
    field: Option<String>,
    message: String,
}

/// `field \`path\` <rest>`: the one sentence shape of every field error.
pub(super) fn bad(path: &str, rest: impl std::fmt::Display) -> Bad {
    Bad {
        field: Some(path.to_owned()),
        message: format!("field `{path}` {rest}"),
    }
}

pub(super) type Checked<T> = Result<T, Bad>;

/// Parses and validates one job body; see the module docs of [`crate::job`] for the rules.
pub fn parse_job(body: &str, defaults: &JobDefaults) -> Result<Job, InvalidJob> {
    let value: Value = serde_json::from_str(body).map_err(|e| InvalidJob {
        field: None,
        // serde_json's syntax errors carry a position, never the input text.
        message: format!("body is not valid JSON: {e}"),
        job_id: None,
        action: None,
    })?;
    let Value::Object(obj) = value else {
        return Err(InvalidJob {
            field: None,
            message: format!("body must be a JSON object, not {}", type_name(&value)),
            job_id: None,
            action: None,
        });
    };

    // Read both echo fields first so that either can be echoed when the other is invalid.
    let job_id = job_id(&obj);
    let action = action(&obj);
    let echo_id = job_id.as_ref().ok().cloned();
    let echo_action = action.as_ref().ok().copied();
    let with_echo = |b: Bad| InvalidJob {
        field: b.field,
        message: b.message,
        job_id: echo_id.clone(),
        action: echo_action,
    };
    let job_id = job_id.map_err(&with_echo)?;
    let action = action.map_err(&with_echo)?;
    fields(&obj, job_id, action, defaults).map_err(with_echo)
}

fn job_id(obj: &Map<String, Value>) -> Checked<String> {
    let id = required_str(obj, "jobId", JOB_ID_MAX)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if !id.chars().all(allowed) {
        return Err(bad("jobId", "must contain only A-Z a-z 0-9 . _ : -"));
    }
    Ok(id.to_owned())
}

fn action(obj: &Map<String, Value>) -> Checked<Action> {
    match opt_str(obj, "action", "action")? {
        None => Ok(Action::StartPersistentChat),
        Some(s) => Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                bad(
                    "action",
                    "must be one of startPersistentChat, associatePersistentContact",
                )
            }),
    }
}

/// Everything after jobId and action, in the order of the contract table.
fn fields(
    obj: &Map<String, Value>,
    job_id: String,
    action: Action,
    defaults: &JobDefaults,
) -> Checked<Job> {
    let start = action == Action::StartPersistentChat;

    // The job's own values are checked in table order; falling back to a default (and failing
    // when there is none) waits until the end, so a missing deployment setting does not hide the
    // job's own mistakes from `validate`.
    let instance_id = opt_bounded(obj, "instanceId", INSTANCE_ID_MAX)?;
    let contact_flow_id = if start {
        opt_bounded(obj, "contactFlowId", CONTACT_FLOW_ID_MAX)?
    } else {
        None
    };
    let source_contact_id = required_str(obj, "sourceContactId", CONTACT_ID_MAX)?.to_owned();
    let rehydration_type = match opt_str(obj, "rehydrationType", "rehydrationType")? {
        None => RehydrationType::default(),
        Some(s) => RehydrationType::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                bad(
                    "rehydrationType",
                    "must be one of ENTIRE_PAST_SESSION, FROM_SEGMENT",
                )
            })?,
    };
    let initial_contact_id = if start {
        None
    } else {
        match opt_bounded(obj, "initialContactId", CONTACT_ID_MAX)? {
            None => return Err(required_for("initialContactId", action)),
            some => some,
        }
    };
    let display_name = if start {
        Some(display_name(obj, action)?)
    } else {
        None
    };
    let attributes = attributes(obj)?;
    let initial_message = initial_message(obj)?;
    let chat_duration_in_minutes = chat_duration(obj)?;
    let supported_messaging_content_types = supported_types(obj)?;
    let disconnect_on_customer_exit = members::disconnect_on_customer_exit(obj)?;
    let segment_attributes =
        members::segment_attributes(obj, supported_messaging_content_types.as_deref())?;
    let response_mode = members::response_mode(obj)?;
    let customer_id = opt_bounded(obj, "customerId", CUSTOMER_ID_MAX)?;
    let not_after = not_after(obj)?;
    let instance_id = or_default(
        instance_id,
        "instanceId",
        &defaults.instance_id,
        "no default Connect instance is configured",
    )?;
    let contact_flow_id = if start {
        Some(or_default(
            contact_flow_id,
            "contactFlowId",
            &defaults.contact_flow_id,
            "no default contact flow is configured",
        )?)
    } else {
        None
    };

    Ok(Job {
        job_id,
        action,
        instance_id,
        contact_flow_id,
        source_contact_id,
        rehydration_type,
        initial_contact_id,
        display_name,
        attributes,
        initial_message,
        chat_duration_in_minutes,
        supported_messaging_content_types,
        disconnect_on_customer_exit,
        segment_attributes,
        response_mode,
        customer_id,
        not_after,
    })
}

fn display_name(obj: &Map<String, Value>, action: Action) -> Checked<String> {
    const PATH: &str = "participant.displayName";
    let participant = match obj.get("participant") {
        None | Some(Value::Null) => return Err(required_for(PATH, action)),
        Some(Value::Object(p)) => p,
        Some(other) => return Err(bad("participant", must_be("an object", other))),
    };
    match opt_str(participant, "displayName", PATH)? {
        None => Err(required_for(PATH, action)),
        Some(s) => Ok(bounded(PATH, s, DISPLAY_NAME_MAX)?.to_owned()),
    }
}

fn attributes(obj: &Map<String, Value>) -> Checked<BTreeMap<String, String>> {
    let map = match obj.get("attributes") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(bad("attributes", must_be("an object of strings", other))),
    };
    let mut out = BTreeMap::new();
    let mut total_bytes = 0usize;
    for (key, value) in map {
        let path = format!("attributes.{}", shown(key));
        if key.is_empty() {
            return Err(bad("attributes", "must not have an empty key"));
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(
                &path,
                "has a key with characters other than A-Z a-z 0-9 _ -",
            ));
        }
        let Value::String(value) = value else {
            return Err(bad(&path, must_be("a string", value)));
        };
        total_bytes = total_bytes
            .saturating_add(key.len())
            .saturating_add(value.len());
        out.insert(key.clone(), value.clone());
    }
    if total_bytes > ATTRIBUTES_MAX_BYTES {
        return Err(bad(
            "attributes",
            format_args!(
                "must total at most {} UTF-8 bytes of keys and values (got {})",
                thousands(ATTRIBUTES_MAX_BYTES),
                thousands(total_bytes)
            ),
        ));
    }
    Ok(out)
}

fn initial_message(obj: &Map<String, Value>) -> Checked<Option<InitialMessage>> {
    let msg = match obj.get("initialMessage") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(bad("initialMessage", must_be("an object", other))),
    };
    let Some(content_type) = opt_str(msg, "contentType", "initialMessage.contentType")? else {
        return Err(bad(
            "initialMessage.contentType",
            "is required when initialMessage is present",
        ));
    };
    let Some(&(_, max)) = INITIAL_MESSAGE_CONTENT_TYPES
        .iter()
        .find(|(t, _)| *t == content_type)
    else {
        let names: Vec<&str> = INITIAL_MESSAGE_CONTENT_TYPES
            .iter()
            .map(|(t, _)| *t)
            .collect();
        return Err(bad(
            "initialMessage.contentType",
            format_args!("must be one of {}", names.join(", ")),
        ));
    };
    let Some(content) = opt_str(msg, "content", "initialMessage.content")? else {
        return Err(bad(
            "initialMessage.content",
            "is required when initialMessage is present",
        ));
    };
    let chars = content.chars().count();
    if chars == 0 {
        return Err(bad("initialMessage.content", "must not be empty"));
    }
    if chars > max {
        return Err(bad(
            "initialMessage.content",
            format_args!(
                "must be at most {} characters for {content_type} (got {})",
                thousands(max),
                thousands(chars)
            ),
        ));
    }
    Ok(Some(InitialMessage {
        content_type: content_type.to_owned(),
        content: content.to_owned(),
    }))
}

fn chat_duration(obj: &Map<String, Value>) -> Checked<Option<i32>> {
    const PATH: &str = "chatDurationInMinutes";
    let range = format!(
        "an integer from {CHAT_DURATION_MIN} to {}",
        thousands(CHAT_DURATION_MAX as usize)
    );
    match obj.get(PATH) {
        None | Some(Value::Null) => Ok(None),
        // `as_i64` is `None` for floats (even `60.0`) and for integers beyond i64: both rejected.
        Some(Value::Number(n)) => match n.as_i64() {
            Some(m) if (CHAT_DURATION_MIN..=CHAT_DURATION_MAX).contains(&m) => {
                // The range fits in i32, so the conversion cannot fail; map it anyway.
                i32::try_from(m)
                    .map(Some)
                    .map_err(|_| bad(PATH, format_args!("must be {range}")))
            }
            _ => Err(bad(PATH, format_args!("must be {range}"))),
        },
        Some(other) => Err(bad(PATH, must_be(&range, other))),
    }
}

fn supported_types(obj: &Map<String, Value>) -> Checked<Option<Vec<String>>> {
    const PATH: &str = "supportedMessagingContentTypes";
    let items = match obj.get(PATH) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(bad(PATH, must_be("an array of strings", other))),
    };
    let mut out = Vec::with_capacity(items.len().min(SUPPORTED_MESSAGING_CONTENT_TYPES.len()));
    for (i, item) in items.iter().enumerate() {
        let path = format!("{PATH}[{i}]");
        let Value::String(s) = item else {
            return Err(bad(&path, must_be("a string", item)));
        };
        if !SUPPORTED_MESSAGING_CONTENT_TYPES.contains(&s.as_str()) {
            return Err(bad(
                &path,
                format_args!(
                    "must be one of {}",
                    SUPPORTED_MESSAGING_CONTENT_TYPES.join(", ")
                ),
            ));
        }
        out.push(s.clone());
    }
    if !out.iter().any(|t| t == "text/plain") {
        return Err(bad(PATH, "must contain text/plain"));
    }
    Ok(Some(out))
}

fn not_after(obj: &Map<String, Value>) -> Checked<Option<OffsetDateTime>> {
    const PATH: &str = "notAfter";
    match opt_str(obj, PATH, PATH)? {
        None => Ok(None),
        Some("") => Err(bad(PATH, "must not be empty")),
        Some(s) => OffsetDateTime::parse(s, &Rfc3339).map(Some).map_err(|_| {
            bad(
                PATH,
                "must be an RFC 3339 timestamp such as 2025-01-31T23:59:00Z",
            )
        }),
    }
}

/// An optional string field of 1..=max characters.
fn opt_bounded(obj: &Map<String, Value>, key: &str, max: usize) -> Checked<Option<String>> {
    match opt_str(obj, key, key)? {
        None => Ok(None),
        Some(s) => Ok(Some(bounded(key, s, max)?.to_owned())),
    }
}

/// The job's value, else the configured default, else an error naming the field.
fn or_default(
    value: Option<String>,
    key: &str,
    default: &Option<String>,
    why_required: &str,
) -> Checked<String> {
    match (value, default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.clone()),
        (None, None) => Err(bad(key, format_args!("is required because {why_required}"))),
    }
}

fn required_str<'a>(obj: &'a Map<String, Value>, key: &str, max: usize) -> Checked<&'a str> {
    match opt_str(obj, key, key)? {
        None => Err(bad(key, "is required")),
        Some(s) => bounded(key, s, max),
    }
}

/// The string at `key`, `None` when absent or `null`; `path` names it in errors.
pub(super) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Checked<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(path, must_be("a string", other))),
    }
}

/// 1..=max characters (Unicode scalar values, not bytes).
fn bounded<'a>(path: &str, s: &'a str, max: usize) -> Checked<&'a str> {
    if s.is_empty() {
        return Err(bad(path, "must not be empty"));
    }
    let chars = s.chars().count();
    if chars > max {
        return Err(bad(
            path,
            format_args!(
                "must be at most {} characters (got {})",
                thousands(max),
                thousands(chars)
            ),
        ));
    }
    Ok(s)
}

fn required_for(path: &str, action: Action) -> Bad {
    bad(path, format_args!("is required for action {action}"))
}

pub(super) fn must_be(expected: &str, got: &Value) -> String {
    format!("must be {expected}, not {}", type_name(got))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A key as it may appear in a field path: at most 64 characters, control characters escaped, so
/// a hostile key cannot bloat or break the one-line message.
pub(super) fn shown(key: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = key.chars().take(MAX).flat_map(char::escape_debug).collect();
    if key.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// 32768 → "32,768", as the contract writes its limits.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
