//! `SegmentAttributes` of StartChatContact, as the service model (botocore's
//! `connect/2017-08-08/service-2.json`) and the StartChatContact documentation describe it:
//!
//! - a map of `SegmentAttributeName` (1–128 characters) to `SegmentAttributeValue`; keys of
//!   `A-Z a-z 0-9 _ -` and `:` (the documentation says "alphanumeric, -, and _" yet its own
//!   example key is `connect:Subtype`);
//! - a value is a structure with `ValueString` (0–1,024), `ValueMap` (recursive), `ValueInteger`,
//!   `ValueList` (recursive) or `ValueArn` (a valid ARN); the sim requires exactly one of them
//!   (the documentation calls it "a map with a single key-value pair");
//! - `ValueList` and `ValueArn` are "only supported for system-defined attributes": keys in the
//!   `connect:` namespace (for a `ValueMap`, its top-level attribute decides);
//! - `connect:Subtype` = `connect:Guide` needs both interactive content types in
//!   `SupportedMessagingContentTypes`.
//!
//! Model constraints answer 400 InvalidParameterException, service rules (system-only forms, the
//! ARN, the Guide rule) 400 InvalidRequestException, as elsewhere in `validate`. Values are never
//! echoed.

use serde_json::{Map, Value};

use super::fields::{check_len, constraint};
use crate::error::ApiError;

const SYSTEM_PREFIX: &str = "connect:";
pub const GUIDE_CONTENT_TYPES: [&str; 2] = [
    "application/vnd.amazonaws.connect.message.interactive",
    "application/vnd.amazonaws.connect.message.interactive.response",
];

/// Checks the whole `SegmentAttributes` map; `supported` is `SupportedMessagingContentTypes`.
pub fn check(map: &Map<String, Value>, supported: &[&str]) -> Result<(), ApiError> {
    check_map("SegmentAttributes", map, None)?;
    let guide = map
        .get("connect:Subtype")
        .and_then(|v| v.get("ValueString"))
        .and_then(Value::as_str)
        == Some("connect:Guide");
    if guide && !GUIDE_CONTENT_TYPES.iter().all(|t| supported.contains(t)) {
        return Err(ApiError::invalid_request(format!(
            "SupportedMessagingContentTypes must contain {} to set SegmentAttributes \
             connect:Subtype to connect:Guide",
            GUIDE_CONTENT_TYPES.join(" and ")
        )));
    }
    Ok(())
}

fn check_map(path: &str, map: &Map<String, Value>, system: Option<bool>) -> Result<(), ApiError> {
    for (key, value) in map {
        let key_path = format!("{path}.{key}");
        check_len(&key_path, key.chars().count(), 1, 128)?;
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
        {
            return Err(ApiError::invalid_parameter(format!(
                "{path}: key '{key}' contains characters other than A-Z a-z 0-9 _ - :"
            )));
        }
        let system = system.unwrap_or_else(|| key.starts_with(SYSTEM_PREFIX));
        check_value(&key_path, value, system)?;
    }
    Ok(())
}

fn check_value(path: &str, value: &Value, system: bool) -> Result<(), ApiError> {
    const FORMS: &str = "ValueString, ValueMap, ValueInteger, ValueList, ValueArn";
    let Value::Object(obj) = value else {
        return Err(constraint(path, "Member must be an object"));
    };
    let set: Vec<(&String, &Value)> = obj
        .iter()
        .filter(|(k, v)| !v.is_null() && FORMS.split(", ").any(|f| f == k.as_str()))
        .collect();
    let [(form, inner)] = set.as_slice() else {
        return Err(constraint(
            path,
            &format!("Member must have exactly one of {FORMS}"),
        ));
    };
    let inner_path = format!("{path}.{form}");
    let system_only = || {
        ApiError::invalid_request(format!(
            "{inner_path} is only supported for system-defined attributes (connect:...)"
        ))
    };
    match form.as_str() {
        "ValueString" | "ValueArn" => {
            let s = inner
                .as_str()
                .ok_or_else(|| constraint(&inner_path, "Member must be a string"))?;
            check_len(&inner_path, s.chars().count(), 0, 1_024)?;
            if form.as_str() == "ValueArn" {
                if !system {
                    return Err(system_only());
                }
                if !is_arn(s) {
                    return Err(ApiError::invalid_request(format!(
                        "{inner_path} must be a valid ARN"
                    )));
                }
            }
            Ok(())
        }
        "ValueInteger" => match inner.as_i64().map(i32::try_from) {
            Some(Ok(_)) => Ok(()),
            _ => Err(constraint(&inner_path, "Member must be an integer")),
        },
        "ValueMap" => match inner {
            Value::Object(m) => check_map(&inner_path, m, Some(system)),
            _ => Err(constraint(&inner_path, "Member must be an object")),
        },
        _ => {
            if !system {
                return Err(system_only());
            }
            let items = inner
                .as_array()
                .ok_or_else(|| constraint(&inner_path, "Member must be a list"))?;
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| check_value(&format!("{inner_path}[{i}]"), v, system))
        }
    }
}

/// `arn:partition:service:region:account:resource` with a partition `aws` or `aws-…`.
fn is_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return false;
    };
    let lower = |p: &str| {
        p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    *arn == "arn"
        && (*partition == "aws" || partition.starts_with("aws-") && lower(partition))
        && !service.is_empty()
        && lower(service)
        && lower(region)
        && (account.is_empty()
            || account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()))
        && !resource.is_empty()
}
