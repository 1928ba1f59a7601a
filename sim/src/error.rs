//! Errors as Amazon Connect sends them on the restJson1 protocol: an HTTP status, the
//! `x-amzn-ErrorType` header carrying the error code (what every AWS SDK reads first), an
//! `x-amzn-RequestId`, and a JSON body with the message. Connect's own (modeled) errors
//! carry the message as `Message`, the model's member name; the API Gateway front door's
//! `TooManyRequestsException` uses lowercase `message`. SDKs accept either key.

use axum::http::StatusCode;
use serde_json::json;

/// The error codes the simulator can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    AccessDenied,
    InvalidParameter,
    InvalidRequest,
    ResourceNotFound,
    /// StartChatContact rate quota (API Gateway throttling, not in the service model).
    TooManyRequests,
    /// CreatePersistentContactAssociation rate quota (modeled).
    Throttling,
    /// Concurrent active chats quota (modeled for StartChatContact).
    LimitExceeded,
    InternalService,
    UnknownOperation,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AccessDenied => "AccessDeniedException",
            ErrorCode::InvalidParameter => "InvalidParameterException",
            ErrorCode::InvalidRequest => "InvalidRequestException",
            ErrorCode::ResourceNotFound => "ResourceNotFoundException",
            ErrorCode::TooManyRequests => "TooManyRequestsException",
            ErrorCode::Throttling => "ThrottlingException",
            ErrorCode::LimitExceeded => "LimitExceededException",
            ErrorCode::InternalService => "InternalServiceException",
            ErrorCode::UnknownOperation => "UnknownOperationException",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::AccessDenied => StatusCode::FORBIDDEN,
            ErrorCode::InvalidParameter | ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::ResourceNotFound | ErrorCode::UnknownOperation => StatusCode::NOT_FOUND,
            ErrorCode::TooManyRequests | ErrorCode::Throttling | ErrorCode::LimitExceeded => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ErrorCode::InternalService => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One error response: code plus a message a person can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// The JSON body, with the message key this kind of error uses on the wire.
    pub fn body(&self) -> serde_json::Value {
        match self.code {
            ErrorCode::TooManyRequests | ErrorCode::UnknownOperation => {
                json!({ "message": self.message })
            }
            _ => json!({ "Message": self.message }),
        }
    }
}
