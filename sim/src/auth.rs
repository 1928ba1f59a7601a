//! Authentication check. The simulator holds no secrets, so it cannot verify a SigV4
//! signature; it checks that the request is SigV4-signed at all, which is what catches a
//! client that lost its credentials: `Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/
//! region/service/aws4_request, SignedHeaders=..., Signature=...`. Anything else is 403
//! AccessDeniedException, as Connect answers an unsigned or malformed request.

use axum::http::HeaderMap;

use crate::error::{ApiError, ErrorCode};

/// Accepts a request carrying a well-formed SigV4 `Authorization` header.
pub fn check(headers: &HeaderMap) -> Result<(), ApiError> {
    let denied = |why: &str| ApiError::new(ErrorCode::AccessDenied, why.to_string());
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(denied(
            "Missing Authentication Token: the request has no SigV4 Authorization header",
        ));
    };
    let Ok(value) = value.to_str() else {
        return Err(denied("Authorization header is not valid ASCII"));
    };
    let Some(rest) = value.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(denied(
            "Authorization header must use the AWS4-HMAC-SHA256 (SigV4) scheme",
        ));
    };
    let has = |part: &str| rest.split(',').any(|p| p.trim().starts_with(part));
    if !(has("Credential=") && has("SignedHeaders=") && has("Signature=")) {
        return Err(denied(
            "Authorization header must contain Credential, SignedHeaders and Signature",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(axum::http::header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn sigv4_header_is_accepted() {
        let h = with(
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/connect/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abcdef",
        );
        assert!(check(&h).is_ok());
    }

    #[test]
    fn missing_or_other_schemes_are_denied() {
        for h in [
            HeaderMap::new(),
            with("Bearer x"),
            with("AWS4-HMAC-SHA256 junk"),
        ] {
            let err = check(&h).err().map(|e| e.code);
            assert_eq!(err, Some(ErrorCode::AccessDenied));
        }
    }
}
