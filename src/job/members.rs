//! The StartChatContact members a resume needs beyond the basics: `disconnectOnCustomerExit`,
//! `segmentAttributes` and `participantConfiguration`, checked as the service model and the
//! StartChatContact documentation check them (botocore's `connect/2017-08-08/service-2.json`):
//!
//! - `DisconnectOnCustomerExit`: a list of exactly one participant type; the only type is `AGENT`.
//! - `SegmentAttributes`: a map of `SegmentAttributeName` (1–128 characters) to
//!   `SegmentAttributeValue`. The documentation allows "only alphanumeric, -, and _" in keys yet
//!   its own example is `connect:Subtype`, so `:` (the `connect:` namespace separator) is allowed
//!   as well. A value is an object with exactly one of the model's five forms, written in the
//!   job in camelCase as the documentation's own example does (`{"valueString": "connect:Guide"}`):
//!   `valueString` (0–1,024 characters), `valueMap` (names to values, recursively), `valueInteger`
//!   (32-bit), `valueList` (values) and `valueArn` (an ARN of at most 1,024 characters). The
//!   model documents `valueList` and `valueArn` as "only supported for system-defined
//!   attributes", i.e. keys in the `connect:` namespace.
//! - The Guide rule: `"connect:Subtype": {"valueString": "connect:Guide"}` needs both
//!   interactive content types in `supportedMessagingContentTypes`.
//! - `ParticipantConfiguration.ResponseMode`: `INCREMENTAL` or `COMPLETE`.
//!
//! Messages never echo values (a segment attribute may carry customer data), only keys, and only
//! as [`shown`] cuts them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::limits::{SEGMENT_ATTRIBUTE_NAME_MAX, SEGMENT_ATTRIBUTE_STRING_MAX};
use super::parse::{Checked, bad, must_be, opt_str, shown};
use super::{GUIDE_CONTENT_TYPES, ResponseMode, SegmentValue};

/// The one participant type `DisconnectOnCustomerExit` knows.
const DISCONNECT_TYPES: [&str; 1] = ["AGENT"];
/// The namespace of system-defined segment attributes.
const SYSTEM_PREFIX: &str = "connect:";
const SUBTYPE: &str = "connect:Subtype";
const GUIDE: &str = "connect:Guide";

pub(super) fn disconnect_on_customer_exit(
    obj: &Map<String, Value>,
) -> Checked<Option<Vec<String>>> {
    const PATH: &str = "disconnectOnCustomerExit";
    let items = match obj.get(PATH) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(bad(PATH, must_be("an array of strings", other))),
    };
    if items.len() != 1 {
        return Err(bad(
            PATH,
            format_args!("must have exactly 1 item (got {})", items.len()),
        ));
    }
    let mut out = Vec::with_capacity(1);
    for (i, item) in items.iter().enumerate() {
        let path = format!("{PATH}[{i}]");
        let Value::String(s) = item else {
            return Err(bad(&path, must_be("a string", item)));
        };
        if !DISCONNECT_TYPES.contains(&s.as_str()) {
            return Err(bad(&path, "must be AGENT"));
        }
        out.push(s.clone());
    }
    Ok(Some(out))
}

pub(super) fn response_mode(obj: &Map<String, Value>) -> Checked<Option<ResponseMode>> {
    const PATH: &str = "participantConfiguration";
    let config = match obj.get(PATH) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(c)) => c,
        Some(other) => return Err(bad(PATH, must_be("an object", other))),
    };
    const MODE: &str = "participantConfiguration.responseMode";
    match opt_str(config, "responseMode", MODE)? {
        None => Ok(None),
        Some(s) => ResponseMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .map(Some)
            .ok_or_else(|| bad(MODE, "must be one of INCREMENTAL, COMPLETE")),
    }
}

pub(super) fn segment_attributes(
    obj: &Map<String, Value>,
    supported_types: Option<&[String]>,
) -> Checked<BTreeMap<String, SegmentValue>> {
    const PATH: &str = "segmentAttributes";
    let map = match obj.get(PATH) {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(bad(PATH, must_be("an object", other))),
    };
    let out = value_map(PATH, map, None)?;
    if out.get(SUBTYPE) == Some(&SegmentValue::String(GUIDE.to_owned())) {
        let declared = |t: &str| supported_types.is_some_and(|s| s.iter().any(|d| d == t));
        if !GUIDE_CONTENT_TYPES.iter().all(|t| declared(t)) {
            return Err(bad(
                "supportedMessagingContentTypes",
                format_args!(
                    "must contain {} when segmentAttributes sets {SUBTYPE} to {GUIDE}",
                    GUIDE_CONTENT_TYPES.join(" and ")
                ),
            ));
        }
    }
    Ok(out)
}

/// A map of segment attribute names to values. `system` is whether the top-level attribute the
/// map sits in is system-defined (`None` at the top level: each key decides for itself).
fn value_map(
    path: &str,
    map: &Map<String, Value>,
    system: Option<bool>,
) -> Checked<BTreeMap<String, SegmentValue>> {
    let mut out = BTreeMap::new();
    for (key, value) in map {
        if key.is_empty() {
            return Err(bad(path, "must not have an empty key"));
        }
        let key_path = format!("{path}.{}", shown(key));
        if key.chars().count() > SEGMENT_ATTRIBUTE_NAME_MAX {
            return Err(bad(
                &key_path,
                format_args!("has a key longer than {SEGMENT_ATTRIBUTE_NAME_MAX} characters"),
            ));
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
        {
            return Err(bad(
                &key_path,
                "has a key with characters other than A-Z a-z 0-9 _ - :",
            ));
        }
        let system = system.unwrap_or_else(|| key.starts_with(SYSTEM_PREFIX));
        out.insert(key.clone(), segment_value(&key_path, value, system)?);
    }
    Ok(out)
}

/// One `SegmentAttributeValue`: an object with exactly one of the five forms.
fn segment_value(path: &str, value: &Value, system: bool) -> Checked<SegmentValue> {
    const FORMS: &str = "valueString, valueMap, valueInteger, valueList, valueArn";
    let Value::Object(obj) = value else {
        return Err(bad(
            path,
            must_be(&format!("an object with one of {FORMS}"), value),
        ));
    };
    let set: Vec<(&String, &Value)> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(form, inner)] = set.as_slice() else {
        return Err(bad(
            path,
            format_args!("must have exactly one of {FORMS} (got {})", set.len()),
        ));
    };
    let inner_path = format!("{path}.{form}");
    let system_only = |what: &str| {
        bad(
            &inner_path,
            format_args!(
                "is only supported for system-defined attributes (keys starting with {SYSTEM_PREFIX}), {what}"
            ),
        )
    };
    match form.as_str() {
        "valueString" => Ok(SegmentValue::String(segment_string(&inner_path, inner)?)),
        "valueArn" => {
            if !system {
                return Err(system_only("not for user-defined ones"));
            }
            let arn = segment_string(&inner_path, inner)?;
            if !is_arn(&arn) {
                return Err(bad(
                    &inner_path,
                    "must be an ARN (arn:partition:service:region:account:resource)",
                ));
            }
            Ok(SegmentValue::Arn(arn))
        }
        "valueInteger" => match inner.as_i64().map(i32::try_from) {
            Some(Ok(n)) => Ok(SegmentValue::Integer(n)),
            _ => Err(bad(
                &inner_path,
                must_be("an integer from -2,147,483,648 to 2,147,483,647", inner),
            )),
        },
        "valueMap" => match inner {
            Value::Object(m) => Ok(SegmentValue::Map(value_map(&inner_path, m, Some(system))?)),
            other => Err(bad(&inner_path, must_be("an object", other))),
        },
        "valueList" => {
            if !system {
                return Err(system_only("not for user-defined ones"));
            }
            let Value::Array(items) = inner else {
                return Err(bad(&inner_path, must_be("an array", inner)));
            };
            items
                .iter()
                .enumerate()
                .map(|(i, v)| segment_value(&format!("{inner_path}[{i}]"), v, system))
                .collect::<Checked<Vec<_>>>()
                .map(SegmentValue::List)
        }
        _ => Err(bad(
            &format!("{path}.{}", shown(form)),
            format_args!("is not a segment attribute value form; use one of {FORMS}"),
        )),
    }
}

fn segment_string(path: &str, v: &Value) -> Checked<String> {
    let Value::String(s) = v else {
        return Err(bad(path, must_be("a string", v)));
    };
    let chars = s.chars().count();
    if chars > SEGMENT_ATTRIBUTE_STRING_MAX {
        return Err(bad(
            path,
            format_args!(
                "must be at most 1,024 characters (got {})",
                super::parse::thousands(chars)
            ),
        ));
    }
    Ok(s.clone())
}

/// `arn:partition:service:region:account:resource`: partition `aws` or `aws-…`, a service of
/// `a-z 0-9 -`, a region of `a-z 0-9 -` (may be empty), an account of 12 digits (may be empty),
/// and a non-empty resource (which may itself contain `:`).
pub(crate) fn is_arn(s: &str) -> bool {
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let lower = |p: &str| {
        p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    (partition == "aws" || partition.starts_with("aws-") && lower(partition))
        && !service.is_empty()
        && lower(service)
        && lower(region)
        && (account.is_empty()
            || account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()))
        && !resource.is_empty()
}
