//! How a failure reads: the typed [`Error`] for each way a call can fail (the vendor's
//! status and message, a transport failure, a body that is not the vendor's schema), with
//! the key scrubbed from its text, and the vendor's retry hints read from the headers.

use std::time::SystemTime;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

use super::HttpClient;
use crate::types::{Error, ErrorKind};

/// The most characters of a vendor body kept in an error.
pub const BODY_EXCERPT_CHARS: usize = 500;

/// The first [`BODY_EXCERPT_CHARS`] characters of `text`, cut on a character boundary.
pub fn excerpt(text: &str) -> &str {
    match text.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// How long the vendor asks us to wait, in milliseconds: `retry-after-ms`, else
/// `retry-after` as seconds (fractions allowed), else `retry-after` as an HTTP date
/// (measured from `now`; a date in the past means 0). Unparseable values are ignored.
pub fn retry_after_ms(headers: &HeaderMap, now: SystemTime) -> Option<u64> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let non_negative = |v: &str| v.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0);
    if let Some(ms) = header("retry-after-ms").and_then(non_negative) {
        return Some(ms.ceil() as u64);
    }
    let value = header("retry-after")?;
    if let Some(seconds) = non_negative(value) {
        return Some((seconds * 1000.0).ceil() as u64);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).map_or(0, |wait| wait.as_millis().try_into().unwrap_or(u64::MAX)))
}

/// The vendor's own retry verdict, `x-should-retry: true|false`.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get("x-should-retry")?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl HttpClient {
    pub(super) fn timed_out(&self, doing: &str) -> Error {
        self.error(
            ErrorKind::Timeout,
            format!("timed out while {doing} (timeout_seconds = {})", self.timeout.as_secs_f64()),
        )
    }

    /// A `parse` error: a 2xx body that is not the vendor's schema.
    pub fn parse_error(&self, what: impl std::fmt::Display, body: &[u8]) -> Error {
        // Enough bytes for the excerpt and any key straddling its end, not megabytes.
        let head = &body[..body.len().min(4 * BODY_EXCERPT_CHARS + 1024)];
        let text = self.redact(&String::from_utf8_lossy(head));
        Error {
            body: Some(excerpt(&text).to_string()).filter(|b| !b.is_empty()),
            ..self.error(ErrorKind::Parse, what.to_string())
        }
    }

    /// An error of `kind` from this provider, its message scrubbed of the key.
    pub fn error(&self, kind: ErrorKind, message: impl AsRef<str>) -> Error {
        Error::new(kind, &self.provider, self.redact(message.as_ref()))
    }

    pub(super) fn too_large(&self, partial: &[u8]) -> Error {
        self.parse_error(
            format!(
                "the response body exceeds the limit of {} bytes (max_response_bytes)",
                self.max_response_bytes
            ),
            partial,
        )
    }

    pub(super) fn api_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
        let text = self.redact(&String::from_utf8_lossy(body));
        let reason = status.canonical_reason().map(|r| format!(" {r}")).unwrap_or_default();
        let message = match vendor_message(&text) {
            Some(vendor) => format!("HTTP {}{reason}: {}", status.as_u16(), excerpt(&vendor)),
            None => format!("HTTP {}{reason}", status.as_u16()),
        };
        Error {
            kind: ErrorKind::Api,
            status: Some(status.as_u16()),
            retry_after_ms: retry_after_ms(headers, SystemTime::now()),
            should_retry: should_retry(headers),
            provider: self.provider.clone(),
            message,
            body: Some(excerpt(&text).to_string()).filter(|b| !b.is_empty()),
        }
    }

    pub(super) fn transport_error(&self, error: &reqwest::Error, doing: &str) -> Error {
        let detail = causes(error);
        if error.is_timeout() {
            let what = if error.is_connect() { "connecting" } else { doing };
            self.error(
                ErrorKind::Timeout,
                format!(
                    "timed out while {what} (timeout_seconds = {}): {detail}",
                    self.timeout.as_secs_f64()
                ),
            )
        } else if error.is_connect() {
            self.error(ErrorKind::Connection, format!("cannot connect: {detail}"))
        } else if error.is_builder() {
            self.error(ErrorKind::Config, format!("cannot build the request: {detail}"))
        } else {
            self.error(ErrorKind::Connection, format!("connection failed while {doing}: {detail}"))
        }
    }
}

/// The human part of a vendor's error body: `error.message` (OpenAI, Anthropic and most
/// compatible servers), a string `error`, or a top-level `message`.
fn vendor_message(body: &str) -> Option<String> {
    let json: Value = serde_json::from_str(body).ok()?;
    let message = match &json["error"] {
        Value::String(s) => Some(s.as_str()),
        error => error["message"].as_str().or_else(|| json["message"].as_str()),
    };
    message.map(str::to_string).filter(|m| !m.trim().is_empty())
}

/// An error and its sources, joined: reqwest's own message alone hides the cause
/// ("connection refused" lives three sources down).
pub(super) fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
