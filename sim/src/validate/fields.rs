//! Typed access to the members of a JSON object with the service model's constraints
//! (required, type, length in characters, range, enum). A failed constraint becomes 400
//! InvalidParameterException whose message names the member by its path in the request,
//! in the style of AWS validation messages. JSON `null` counts as absent, as AWS SDK
//! deserializers treat it. Values are never echoed (CustomerId is sensitive).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The members of one JSON object, and where it sits in the request (`""` at top level).
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

pub fn constraint(path: &str, what: &str) -> ApiError {
    ApiError::invalid_parameter(format!(
        "1 validation error detected: Value at '{path}' failed to satisfy constraint: {what}"
    ))
}

impl<'a> Fields<'a> {
    pub fn top(value: &'a Value) -> Result<Self, ApiError> {
        match value {
            Value::Object(map) => Ok(Fields {
                map,
                path: String::new(),
            }),
            _ => Err(ApiError::invalid_request(
                "The request body must be a JSON object",
            )),
        }
    }

    pub fn path_of(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn require<T>(&self, name: &str, v: Option<T>) -> Result<T, ApiError> {
        v.ok_or_else(|| constraint(&self.path_of(name), "Member must not be null"))
    }

    /// An optional string of `min..=max` characters.
    pub fn opt_str(&self, name: &str, min: usize, max: usize) -> Result<Option<&'a str>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let path = self.path_of(name);
        let s = v
            .as_str()
            .ok_or_else(|| constraint(&path, "Member must be a string"))?;
        check_len(&path, s.chars().count(), min, max)?;
        Ok(Some(s))
    }

    pub fn req_str(&self, name: &str, min: usize, max: usize) -> Result<&'a str, ApiError> {
        let v = self.opt_str(name, min, max)?;
        self.require(name, v)
    }

    /// An optional string that must be one of `allowed`.
    pub fn opt_enum(&self, name: &str, allowed: &[&str]) -> Result<Option<&'a str>, ApiError> {
        let Some(s) = self.opt_str(name, 0, usize::MAX)? else {
            return Ok(None);
        };
        if allowed.contains(&s) {
            Ok(Some(s))
        } else {
            Err(constraint(
                &self.path_of(name),
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            ))
        }
    }

    pub fn req_enum(&self, name: &str, allowed: &[&str]) -> Result<&'a str, ApiError> {
        let v = self.opt_enum(name, allowed)?;
        self.require(name, v)
    }

    /// An optional integer within `min..=max`.
    pub fn opt_int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let path = self.path_of(name);
        let n = v
            .as_i64()
            .ok_or_else(|| constraint(&path, "Member must be an integer"))?;
        if n < min {
            return Err(constraint(
                &path,
                &format!("Member must have value greater than or equal to {min}"),
            ));
        }
        if n > max {
            return Err(constraint(
                &path,
                &format!("Member must have value less than or equal to {max}"),
            ));
        }
        Ok(Some(n))
    }

    /// An optional nested object.
    pub fn opt_obj(&self, name: &str) -> Result<Option<Fields<'a>>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let path = self.path_of(name);
        match v {
            Value::Object(map) => Ok(Some(Fields { map, path })),
            _ => Err(constraint(&path, "Member must be an object")),
        }
    }

    pub fn req_obj(&self, name: &str) -> Result<Fields<'a>, ApiError> {
        let v = self.opt_obj(name)?;
        self.require(name, v)
    }

    /// The raw map of a nested object (for string maps such as Attributes).
    pub fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    /// An optional list with `min..=max` items.
    pub fn opt_list(
        &self,
        name: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<&'a [Value]>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let path = self.path_of(name);
        let items = v
            .as_array()
            .ok_or_else(|| constraint(&path, "Member must be a list"))?;
        check_len(&path, items.len(), min, max)?;
        Ok(Some(items.as_slice()))
    }

    /// An optional list of strings, each one of `allowed`.
    pub fn opt_enum_list(
        &self,
        name: &str,
        min: usize,
        max: usize,
        allowed: &[&str],
    ) -> Result<Option<Vec<&'a str>>, ApiError> {
        let Some(items) = self.opt_list(name, min, max)? else {
            return Ok(None);
        };
        let path = self.path_of(name);
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let s = item
                .as_str()
                .filter(|s| allowed.contains(s))
                .ok_or_else(|| {
                    constraint(
                        &path,
                        &format!(
                            "Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                            allowed.join(", ")
                        ),
                    )
                })?;
            out.push(s);
        }
        Ok(Some(out))
    }
}

pub fn check_len(path: &str, len: usize, min: usize, max: usize) -> Result<(), ApiError> {
    if len < min {
        return Err(constraint(
            path,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if len > max {
        return Err(constraint(
            path,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}
