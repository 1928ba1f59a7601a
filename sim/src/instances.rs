//! Per-instance chat capacity: Connect's active-chats quota is per instance, and other callers
//! (agents' desktops, a website widget, another service) hold chats on the same instance.
//!
//! - `--instance-max-chats A=5,B=1000000`: the active-chats limit of these instances; any other
//!   instance has `--max-active-chats`.
//! - `--instance-prefill A=5` or `A=5:30`: chats other callers hold on the instance from the start
//!   (and again after every reset): for the whole run, or until SECONDS after the start. They
//!   count against the instance's limit like ours, and are not in `chats_created` or `chats`.

use std::fmt;
use std::str::FromStr;

/// `ID=N`: an instance and a count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLimit {
    pub instance: String,
    pub max_chats: u32,
}

/// `ID=N[:SECONDS]`: chats held by other callers from the start, for SECONDS (None: forever).
#[derive(Debug, Clone, PartialEq)]
pub struct Prefill {
    pub instance: String,
    pub chats: u32,
    pub seconds: Option<f64>,
}

fn split_id(s: &str) -> Result<(&str, &str), String> {
    match s.split_once('=') {
        Some((id, rest)) if !id.trim().is_empty() => Ok((id.trim(), rest.trim())),
        _ => Err(format!("expected INSTANCE_ID=VALUE, got {s:?}")),
    }
}

impl FromStr for InstanceLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (id, n) = split_id(s)?;
        let max_chats = n
            .parse()
            .map_err(|e| format!("{n:?} is not a chat count: {e}"))?;
        Ok(InstanceLimit {
            instance: id.to_string(),
            max_chats,
        })
    }
}

impl FromStr for Prefill {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (id, rest) = split_id(s)?;
        let (n, secs) = match rest.split_once(':') {
            Some((n, secs)) => (n, Some(secs)),
            None => (rest, None),
        };
        let chats = n
            .parse()
            .map_err(|e| format!("{n:?} is not a chat count: {e}"))?;
        let seconds = match secs {
            None => None,
            Some(v) => {
                let v: f64 = v
                    .parse()
                    .map_err(|e| format!("{v:?} is not a number of seconds: {e}"))?;
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("seconds must be a finite number > 0, got {v}"));
                }
                Some(v)
            }
        };
        Ok(Prefill {
            instance: id.to_string(),
            chats,
            seconds,
        })
    }
}

impl fmt::Display for InstanceLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.instance, self.max_chats)
    }
}

/// The active-chats limit of `instance`: its own entry (the last one given wins), else `default`.
pub fn max_chats(limits: &[InstanceLimit], default: u32, instance: &str) -> u32 {
    limits
        .iter()
        .rev()
        .find(|l| l.instance == instance)
        .map_or(default, |l| l.max_chats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_prefills_parse() {
        let l: InstanceLimit = "A=5".parse().expect("valid");
        assert_eq!((l.instance.as_str(), l.max_chats), ("A", 5));
        let p: Prefill = "A=5:30".parse().expect("valid");
        assert_eq!(p.seconds, Some(30.0));
        let p: Prefill = "B=2".parse().expect("valid");
        assert_eq!((p.chats, p.seconds), (2, None));
        for bad in ["A", "=5", "A=x", "A=-1"] {
            assert!(bad.parse::<InstanceLimit>().is_err(), "{bad}");
        }
        for bad in ["A=5:0", "A=5:x", "A"] {
            assert!(bad.parse::<Prefill>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_instance_without_its_own_limit_has_the_default() {
        let limits = vec![
            "A=5".parse().expect("valid"),
            "B=7".parse().expect("valid"),
            "A=6".parse().expect("valid"),
        ];
        assert_eq!(max_chats(&limits, 100, "A"), 6);
        assert_eq!(max_chats(&limits, 100, "B"), 7);
        assert_eq!(max_chats(&limits, 100, "C"), 100);
    }
}
