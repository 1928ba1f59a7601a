//! Error classification: a pure function from what the wire said (HTTP status, AWS error code) to
//! an [`ErrorClass`]. The AWS SDKs count `LimitExceededException` as a throttle and would retry it;
//! we classify by code first, so the active-chats quota is never mistaken for the rate quota.

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

/// Classify a failed call. `status` is `None` when no HTTP response arrived (timeout, connection
/// refused or dropped), which is always worth another try.
pub fn classify(status: Option<u16>, code: Option<&str>) -> ErrorClass {
    match code {
        Some("LimitExceededException") => return ErrorClass::LimitExceeded,
        Some(c) if THROTTLE_CODES.contains(&c) => return ErrorClass::Throttled,
        Some(c) if TRANSIENT_CODES.contains(&c) => return ErrorClass::Transient,
        _ => {}
    }
    match status {
        None => ErrorClass::Transient,
        Some(429) => ErrorClass::Throttled,
        // Request timeout: the request may not have reached the service at all.
        Some(408) => ErrorClass::Transient,
        Some(s) if s >= 500 => ErrorClass::Transient,
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
