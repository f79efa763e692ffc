//! Errors as each front end's clients expect them: the vendor's JSON error shape and an
//! HTTP status its SDK maps to its own exception type (`RateLimitError`,
//! `InternalServerError`, …).
//!
//! When the model's stack ran arcllm's retry module, the error it returns is final: retry
//! already retried (or decided not to), so the answer carries `x-should-retry: false`, which
//! the official SDKs obey instead of multiplying the attempts.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::Front;

/// Why a request failed, in the gateway's terms.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something the gateway does not translate (400).
    #[error("{0}")]
    InvalidRequest(String),
    /// No valid gateway key (401).
    #[error("missing or invalid API key (send the gateway's key as `Authorization: Bearer` or `x-api-key`)")]
    Unauthorized,
    /// The model names nothing the gateway knows (404).
    #[error("{0}")]
    ModelNotFound(String),
    /// The body is over `[server] max_body_bytes` (413).
    #[error("the request body is larger than the gateway accepts ({limit} bytes)")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Every slot and the queue are taken (503 with `Retry-After`).
    #[error("the gateway is at capacity; retry after {retry_after} s")]
    Overloaded {
        /// Seconds the client should wait.
        retry_after: u64,
    },
    /// The request passed `[server] request_timeout_seconds` (504).
    #[error("the request did not finish within the gateway's deadline ({0} s)")]
    Deadline(f64),
    /// The model's stack failed; `retried` when the stack ran arcllm's retry module.
    #[error("{}", .error.summary())]
    Upstream {
        /// The error the stack returned.
        error: arcllm::types::Error,
        /// Whether arcllm's retry module already handled it.
        retried: bool,
    },
    /// The gateway could not serve the request for a reason of its own (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest(message.into())
    }

    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        let code = match self {
            ApiError::InvalidRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::ModelNotFound(_) => 404,
            ApiError::TooLarge { .. } => 413,
            ApiError::Overloaded { .. } => 503,
            ApiError::Deadline(_) => 504,
            ApiError::Internal(_) => 500,
            ApiError::Upstream { error, .. } => upstream_status(error),
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
    }

    /// The error's `type` in the front end's vocabulary.
    fn kind(&self, front: Front) -> &'static str {
        let status = self.status().as_u16();
        match (front, status) {
            (_, 400) | (Front::OpenAi, 413) => "invalid_request_error",
            (_, 401) => "authentication_error",
            (_, 403) => "permission_error",
            (_, 404) => "not_found_error",
            (Front::Anthropic, 413) => "request_too_large",
            (_, 429) => "rate_limit_error",
            (Front::Anthropic, 503 | 529) => "overloaded_error",
            (Front::Anthropic, 504) => "timeout_error",
            (Front::Anthropic, _) => "api_error",
            (Front::OpenAi, _) => "server_error",
        }
    }

    /// The error as the front end's JSON body.
    pub fn body(&self, front: Front) -> Value {
        let message = self.to_string();
        match front {
            Front::OpenAi => json!({
                "error": {"message": message, "type": self.kind(front), "param": null, "code": self.code()}
            }),
            Front::Anthropic => {
                json!({"type": "error", "error": {"type": self.kind(front), "message": message}})
            }
        }
    }

    /// OpenAI's machine-readable `code`.
    fn code(&self) -> Value {
        match self {
            ApiError::Unauthorized => json!("invalid_api_key"),
            ApiError::ModelNotFound(_) => json!("model_not_found"),
            ApiError::TooLarge { .. } => json!("request_too_large"),
            ApiError::Overloaded { .. } => json!("overloaded"),
            ApiError::Upstream { error, .. } => json!(error.kind.as_str()),
            _ => Value::Null,
        }
    }

    /// Whether the client should not retry on its own: arcllm's retry already did.
    pub fn final_answer(&self) -> bool {
        matches!(self, ApiError::Upstream { retried: true, .. })
    }

    /// The whole HTTP answer for `front`.
    pub fn response(&self, front: Front) -> Response {
        let mut response = (self.status(), axum::Json(self.body(front))).into_response();
        let headers = response.headers_mut();
        if self.final_answer() {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        let retry_after = match self {
            ApiError::Overloaded { retry_after } => Some(*retry_after),
            ApiError::Upstream { error, .. } => error.retry_after_ms.map(|ms| ms.div_ceil(1000)),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            headers.insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}

/// The status a stack's error is answered with. The vendor's status passes through, except
/// that the vendor refusing the gateway's own credentials (401, 403) is the gateway's
/// failure (502), not the client's; errors without a status map by kind.
fn upstream_status(error: &arcllm::types::Error) -> u16 {
    use arcllm::types::ErrorKind;
    match (error.kind, error.status) {
        (ErrorKind::Api, Some(401 | 403)) => 502,
        (ErrorKind::Api, Some(status)) if (400..=599).contains(&status) => status,
        (ErrorKind::Api, _) => 502,
        (ErrorKind::Connection, _) => 502,
        (ErrorKind::Timeout, _) => 504,
        // The request could not be put in the vendor's format: the client's to fix.
        (ErrorKind::Parse, _) if error.message.starts_with("cannot encode the request") => 400,
        (ErrorKind::Parse, _) => 502,
        (ErrorKind::Config | ErrorKind::Module, _) => 500,
    }
}

#[cfg(test)]
mod tests {
    use arcllm::types::{Error, ErrorKind};

    use super::*;

    #[test]
    fn vendor_statuses_pass_through_but_credentials_do_not() {
        let api = |s| ApiError::Upstream { error: Error::api("openai", s, "x"), retried: false };
        assert_eq!(api(429).status(), 429);
        assert_eq!(api(529).status(), 529);
        assert_eq!(api(400).status(), 400);
        assert_eq!(api(401).status(), 502);
        let kind = |k| ApiError::Upstream { error: Error::new(k, "openai", "x"), retried: false };
        assert_eq!(kind(ErrorKind::Connection).status(), 502);
        assert_eq!(kind(ErrorKind::Timeout).status(), 504);
        assert_eq!(kind(ErrorKind::Module).status(), 500);
        let encode = Error::new(ErrorKind::Parse, "openai", "cannot encode the request: bad");
        assert_eq!(ApiError::Upstream { error: encode, retried: false }.status(), 400);
    }

    #[test]
    fn each_front_gets_its_own_shape_and_final_errors_say_so() {
        let error = ApiError::Upstream {
            error: Error { retry_after_ms: Some(1500), ..Error::api("anthropic", 429, "slow down") },
            retried: true,
        };
        let openai = error.body(Front::OpenAi);
        assert_eq!(openai["error"]["type"], "rate_limit_error");
        assert!(openai["error"]["message"].as_str().unwrap().contains("slow down"));
        let anthropic = error.body(Front::Anthropic);
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "rate_limit_error");
        let response = error.response(Front::Anthropic);
        assert_eq!(response.headers()["x-should-retry"], "false");
        assert_eq!(response.headers()["retry-after"], "2");
        let overloaded = ApiError::Overloaded { retry_after: 1 }.response(Front::OpenAi);
        assert_eq!(overloaded.status(), 503);
        assert!(overloaded.headers().get("x-should-retry").is_none());
        assert_eq!(
            ApiError::Overloaded { retry_after: 1 }.body(Front::Anthropic)["error"]["type"],
            "overloaded_error"
        );
    }
}
