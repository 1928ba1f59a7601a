//! Accounts without custom chat durations. The StartChatContact documentation: "If you use the
//! `ChatDurationInMinutes` parameter and receive a 400 error, your account may not support the
//! ability to configure custom chat durations." The job already passed our own check of the
//! documented range (60–10,080), so a 400 that names the duration on a job that sets it is this
//! account setting, not the job's value: [`explain`] turns it into `ChatDurationNotSupported`,
//! naming the job field and what to do, so the result and the `jobs_completed` metric say so. A
//! 400 that does not name the duration is kept as Connect's, with a hint when the job set one
//! (the real service's message is not documented, so the hint covers a wording we do not match).

use super::{ConnectError, ErrorClass};
use crate::job::Job;
use crate::outcome::codes;

/// Rewrites a rejected StartChatContact of a job with `chatDurationInMinutes`; any other error
/// is returned unchanged.
pub fn explain(job: &Job, err: ConnectError) -> ConnectError {
    let Some(minutes) = job.chat_duration_in_minutes else {
        return err;
    };
    let bad_request = matches!(
        err.code.as_str(),
        "InvalidRequestException" | "InvalidParameterException"
    );
    if err.class != ErrorClass::Rejected || !bad_request {
        return err;
    }
    let lower = err.message.to_ascii_lowercase();
    if lower.contains("chatdurationinminutes") || lower.contains("chat duration") {
        ConnectError {
            class: ErrorClass::Rejected,
            code: codes::CHAT_DURATION_NOT_SUPPORTED.to_owned(),
            message: format!(
                "field `chatDurationInMinutes` ({minutes}) is not supported by this Connect \
                 account: it does not allow custom chat durations (Connect answered {}: {}); \
                 leave chatDurationInMinutes out (chats then last Connect's default of 25 hours) \
                 or ask AWS Support to enable custom chat durations",
                err.code, err.message
            ),
        }
    } else {
        ConnectError {
            message: format!(
                "{} (the job sets chatDurationInMinutes: if this account does not support \
                 custom chat durations, leave it out)",
                err.message
            ),
            ..err
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobDefaults, parse_job};

    fn job(duration: bool) -> Job {
        let d = if duration {
            r#","chatDurationInMinutes":120"#
        } else {
            ""
        };
        let body = format!(
            r#"{{"jobId":"j","sourceContactId":"c","participant":{{"displayName":"A"}}{d}}}"#
        );
        let defaults = JobDefaults {
            instance_id: Some("i".into()),
            contact_flow_id: Some("f".into()),
        };
        match parse_job(&body, &defaults) {
            Ok(j) => j,
            Err(e) => panic!("{e}"),
        }
    }

    fn err(class: ErrorClass, code: &str, message: &str) -> ConnectError {
        ConnectError {
            class,
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_400_naming_the_duration_is_the_account_setting() {
        let e = explain(
            &job(true),
            err(
                ErrorClass::Rejected,
                "InvalidRequestException",
                "ChatDurationInMinutes: this account does not support custom chat durations",
            ),
        );
        assert_eq!(e.code, codes::CHAT_DURATION_NOT_SUPPORTED);
        assert!(
            e.message.starts_with("field `chatDurationInMinutes` (120)"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("leave chatDurationInMinutes out"),
            "{}",
            e.message
        );
    }

    #[test]
    fn other_400s_keep_connects_code_with_a_hint_and_others_are_untouched() {
        let e = explain(
            &job(true),
            err(ErrorClass::Rejected, "InvalidRequestException", "bad flow"),
        );
        assert_eq!(e.code, "InvalidRequestException");
        assert!(
            e.message
                .starts_with("bad flow (the job sets chatDurationInMinutes")
        );
        let untouched = [
            (
                job(false),
                err(
                    ErrorClass::Rejected,
                    "InvalidRequestException",
                    "ChatDurationInMinutes",
                ),
            ),
            (
                job(true),
                err(
                    ErrorClass::Throttled,
                    "TooManyRequestsException",
                    "Rate exceeded",
                ),
            ),
            (
                job(true),
                err(ErrorClass::Rejected, "ResourceNotFoundException", "no flow"),
            ),
        ];
        for (j, e) in untouched {
            assert_eq!(explain(&j, e.clone()), e);
        }
    }
}
