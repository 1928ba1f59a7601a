//! Error classification: a pure function from what the wire said (HTTP status, AWS error code) to
//! an [`ErrorClass`]. The AWS SDKs count `LimitExceededException` as a throttle and would retry it;
//! we classify by code first, so the active-chats quota is never mistaken for the rate quota.
//!
//! Credentials: the codes in [`CREDENTIAL_CODES`] (HTTP 400 or 403) mean that the worker's own
//! credentials or request signature were refused, whatever the job says. So does **any 403 other
//! than `AccessDeniedException`**: `AccessDeniedException` is IAM refusing the action on the
//! resource the job names (its instance, its contact), so it is the job's, and fails it with a
//! result; every other 403 (`MissingAuthenticationTokenException`, a bare 403 from a proxy, a
//! code we do not know) is about the request's signature or the caller, not the job. Such
//! failures are [`ErrorClass::Credentials`]: the job goes back to SQS and the worker reports
//! itself not ready until a call succeeds again. The SQS adapter (src/queue/sqs.rs) reads the
//! same codes as "not ready".

use super::ErrorClass;

/// Codes that mean "too fast" (the API rate quota).
const THROTTLE_CODES: &[&str] = &[
    "TooManyRequestsException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
];

/// Codes for failures on the service's side that another try may not see.
const TRANSIENT_CODES: &[&str] = &[
    "InternalServiceException",
    "ServiceUnavailableException",
    "InternalFailure",
];

/// Codes meaning the caller's credentials or signature were refused: an expired role session,
/// an unknown access key or session token, a wrong secret, a request signed with a drifted
/// clock.
pub const CREDENTIAL_CODES: &[&str] = &[
    "ExpiredTokenException",
    "ExpiredToken",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "InvalidAccessKeyId",
    "RequestExpired",
    "RequestTimeTooSkewed",
    "CredentialsError",
];

/// Classify a failed call. `status` is `None` when no HTTP response arrived (timeout, connection
/// refused or dropped), which is always worth another try.
pub fn classify(status: Option<u16>, code: Option<&str>) -> ErrorClass {
    match code {
        Some("LimitExceededException") => return ErrorClass::LimitExceeded,
        Some(c) if THROTTLE_CODES.contains(&c) => return ErrorClass::Throttled,
        Some(c) if TRANSIENT_CODES.contains(&c) => return ErrorClass::Transient,
        Some(c) if CREDENTIAL_CODES.contains(&c) => return ErrorClass::Credentials,
        _ => {}
    }
    match status {
        None => ErrorClass::Transient,
        Some(429) => ErrorClass::Throttled,
        // Request timeout: the request may not have reached the service at all.
        Some(408) => ErrorClass::Transient,
        Some(s) if s >= 500 => ErrorClass::Transient,
        // The only 403 about the job itself: IAM refusing the action on the job's resource.
        Some(403) if !matches!(code, Some("AccessDeniedException" | "AccessDenied")) => {
            ErrorClass::Credentials
        }
        Some(s) if (400..500).contains(&s) => ErrorClass::Rejected,
        // A non-error status with an error body: the response could not be understood.
        Some(_) => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_429s_are_told_apart_by_code() {
        assert_eq!(
            classify(Some(429), Some("TooManyRequestsException")),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify(Some(429), Some("ThrottlingException")),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify(Some(429), Some("LimitExceededException")),
            ErrorClass::LimitExceeded
        );
        // An unknown 429 is treated as the rate quota, the conservative reading.
        assert_eq!(classify(Some(429), None), ErrorClass::Throttled);
    }

    #[test]
    fn client_errors_are_rejected_and_server_errors_transient() {
        for code in [
            "InvalidRequestException",
            "InvalidParameterException",
            "ResourceNotFoundException",
            "AccessDeniedException",
        ] {
            assert_eq!(
                classify(Some(400), Some(code)),
                ErrorClass::Rejected,
                "{code}"
            );
        }
        assert_eq!(
            classify(Some(404), Some("ResourceNotFoundException")),
            ErrorClass::Rejected
        );
        assert_eq!(
            classify(Some(500), Some("InternalServiceException")),
            ErrorClass::Transient
        );
        assert_eq!(classify(Some(503), None), ErrorClass::Transient);
        assert_eq!(classify(Some(408), None), ErrorClass::Transient);
    }

    #[test]
    fn credential_and_signature_errors_are_not_the_jobs() {
        for (status, code) in [
            (400, "ExpiredTokenException"),
            (403, "ExpiredTokenException"),
            (403, "UnrecognizedClientException"),
            (403, "InvalidSignatureException"),
            (403, "SignatureDoesNotMatch"),
            (400, "InvalidClientTokenId"),
            (403, "MissingAuthenticationTokenException"),
        ] {
            assert_eq!(
                classify(Some(status), Some(code)),
                ErrorClass::Credentials,
                "{status} {code}"
            );
        }
        // Any other 403, with an unknown code or none: about the caller, not the job.
        assert_eq!(classify(Some(403), None), ErrorClass::Credentials);
        assert_eq!(
            classify(Some(403), Some("SomethingNew")),
            ErrorClass::Credentials
        );
        // AccessDeniedException is IAM refusing the job's instance or contact: the job's.
        assert_eq!(
            classify(Some(403), Some("AccessDeniedException")),
            ErrorClass::Rejected
        );
        assert_eq!(
            classify(Some(400), Some("AccessDeniedException")),
            ErrorClass::Rejected
        );
    }

    #[test]
    fn no_response_is_transient() {
        assert_eq!(classify(None, None), ErrorClass::Transient);
    }

    #[test]
    fn code_wins_over_status() {
        // A throttle reported with an odd status is still a throttle.
        assert_eq!(
            classify(Some(400), Some("ThrottlingException")),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify(Some(400), Some("LimitExceededException")),
            ErrorClass::LimitExceeded
        );
    }
}
