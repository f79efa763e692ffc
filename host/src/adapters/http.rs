//! What every adapter does the same way on the wire: one HTTP client per adapter with its
//! timeouts, a POST that reads the body in bounded chunks, and the translation of every
//! failure into the typed [`Error`] that retry and fallback decide on.
//!
//! Nothing here logs or returns the API key: request headers are never logged, the key's
//! header value is marked sensitive, and any text that reaches an error (a vendor body, a
//! transport message) or a successful response (content, thinking, tool calls, model,
//! metadata) is scrubbed of the key's value first, in case a server echoes it: whatever
//! the adapter returns is handed to modules, which must never see the key.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;

use super::ApiKey;
use crate::providers::ProviderSettings;
use crate::types::{Error, ErrorKind, Response};

/// The most characters of a vendor body kept in an error.
pub const BODY_EXCERPT_CHARS: usize = 500;

/// How much of a non-2xx body is read: enough for the vendor's message and the excerpt.
const ERROR_BODY_BYTES: usize = 64 << 10;

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

/// A 2xx answer, body read in full.
pub(crate) struct Reply {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// An adapter's connection to its vendor.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    provider: String,
    headers: HeaderMap,
    timeout: Duration,
    max_response_bytes: usize,
    /// Kept only to scrub it from error text.
    secret: Option<ApiKey>,
}

impl HttpClient {
    /// A client for `provider` with its timeouts; `headers` (the vendor's, with auth) are
    /// sent on every request, after which `extra_headers` are added and win.
    pub fn new(
        provider: &str,
        settings: &ProviderSettings,
        mut headers: HeaderMap,
        secret: Option<ApiKey>,
    ) -> Result<Self, Error> {
        let tls = super::tls::client_config()
            .map_err(|e| Error::config(provider, format!("cannot configure TLS: {e}")))?;
        let timeout = Duration::from_secs_f64(settings.timeout_seconds);
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // Vendor APIs do not redirect; following one would send `x-api-key` (which
            // reqwest, unlike `authorization`, does not strip) to whatever host it names.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(Duration::from_secs_f64(settings.connect_timeout_seconds))
            .build()
            .map_err(|e| Error::config(provider, format!("cannot build the HTTP client: {}", causes(&e))))?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &settings.extra_headers {
            let invalid =
                || Error::config(provider, format!("extra header `{name}` is not a valid HTTP header"));
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            headers.insert(name, HeaderValue::from_str(value).map_err(|_| invalid())?);
        }
        Ok(HttpClient {
            client,
            provider: provider.to_string(),
            headers,
            timeout,
            max_response_bytes: usize::try_from(settings.max_response_bytes).unwrap_or(usize::MAX),
            secret,
        })
    }

    /// POSTs `body` as JSON to `url`: a 2xx reply, or the typed error for anything else.
    pub async fn post_json(&self, url: &str, body: &Value) -> Result<Reply, Error> {
        let started = Instant::now();
        let payload = serde_json::to_vec(body)
            .map_err(|e| self.error(ErrorKind::Parse, format!("cannot encode the request: {e}")))?;
        let mut response = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .body(payload)
            .send()
            .await
            .map_err(|e| self.transport_error(&e, "sending the request and awaiting the answer"))?;
        let status = response.status();
        tracing::debug!(provider = %self.provider, %url, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "vendor answered");
        if !status.is_success() {
            let limit = self.max_response_bytes.min(ERROR_BODY_BYTES);
            // The status decides; a body cut short or over the limit still yields the excerpt.
            let body = match read_bounded(&mut response, limit).await {
                Ok(body) | Err(BodyError::TooLarge(body)) | Err(BodyError::Transport(_, body)) => body,
            };
            return Err(self.api_error(status, response.headers(), &body));
        }
        if let Some(length) =
            response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            if length > self.max_response_bytes as u64 {
                return Err(self.too_large(&[]));
            }
        }
        let body = read_bounded(&mut response, self.max_response_bytes).await.map_err(|e| match e {
            BodyError::TooLarge(partial) => self.too_large(&partial),
            BodyError::Transport(e, _) => self.transport_error(&e, "reading the response body"),
        })?;
        Ok(Reply { headers: response.headers().clone(), body })
    }

    /// POSTs `body` as JSON to `url` for a streamed answer: a 2xx reply whose body is read
    /// as it arrives, or the typed error for anything else, read from the error body as in
    /// [`post_json`](Self::post_json).
    ///
    /// `timeout_seconds` bounds the wait for the answer to begin and each wait for the next
    /// piece of it, not the whole stream: a long answer that keeps arriving is not cut off.
    pub async fn post_stream(&self, url: &str, body: &Value) -> Result<StreamReply, Error> {
        let payload = serde_json::to_vec(body)
            .map_err(|e| self.error(ErrorKind::Parse, format!("cannot encode the request: {e}")))?;
        let send = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            // Replaces the client's whole-call deadline; the waits are bounded below.
            .timeout(STREAM_DEADLINE)
            .body(payload)
            .send();
        let mut response = match tokio::time::timeout(self.timeout, send).await {
            Ok(sent) => {
                sent.map_err(|e| self.transport_error(&e, "sending the request and awaiting the answer"))?
            }
            Err(_) => return Err(self.timed_out("awaiting the answer")),
        };
        let status = response.status();
        tracing::debug!(provider = %self.provider, %url, status = status.as_u16(), "vendor answered a streaming call");
        if !status.is_success() {
            let limit = self.max_response_bytes.min(ERROR_BODY_BYTES);
            let read = tokio::time::timeout(self.timeout, read_bounded(&mut response, limit)).await;
            let body = match read {
                Ok(Ok(body) | Err(BodyError::TooLarge(body)) | Err(BodyError::Transport(_, body))) => body,
                Err(_) => Vec::new(),
            };
            return Err(self.api_error(status, response.headers(), &body));
        }
        Ok(StreamReply {
            headers: response.headers().clone(),
            body: BodyStream { response, http: self.clone() },
        })
    }

    /// The most bytes one response (or one streamed event) may take.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// `text` (a piece of a streamed answer) without the key, should the vendor echo it.
    pub fn scrub(&self, text: String) -> String {
        match &self.secret {
            Some(key) if !key.expose().is_empty() && text.contains(key.expose()) => self.redact(&text),
            _ => text,
        }
    }

    fn timed_out(&self, doing: &str) -> Error {
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

    fn too_large(&self, partial: &[u8]) -> Error {
        self.parse_error(
            format!(
                "the response body exceeds the limit of {} bytes (max_response_bytes)",
                self.max_response_bytes
            ),
            partial,
        )
    }

    fn api_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
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

    fn transport_error(&self, error: &reqwest::Error, doing: &str) -> Error {
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

    /// Replaces the API key wherever it occurs in `response` (a vendor that echoes it back
    /// would otherwise hand it to every module above the adapter).
    pub fn scrub_response(&self, response: &mut Response) {
        let Some(key) = self.secret.as_ref().map(ApiKey::expose).filter(|k| !k.is_empty()) else {
            return;
        };
        let scrub = |text: &mut String| {
            if text.contains(key) {
                *text = text.replace(key, "***");
            }
        };
        response.content.iter_mut().for_each(scrub);
        response.thinking.iter_mut().for_each(scrub);
        scrub(&mut response.model);
        for call in &mut response.tool_calls {
            scrub(&mut call.id);
            scrub(&mut call.name);
            scrub(&mut call.arguments);
        }
        for (name, value) in &mut response.metadata {
            scrub(name);
            scrub(value);
        }
    }

    fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(key) if !key.expose().is_empty() && text.contains(key.expose()) => {
                text.replace(key.expose(), "***")
            }
            _ => text.to_string(),
        }
    }
}

/// How long a streaming call may last in reqwest's eyes: in effect no limit, since
/// [`HttpClient::post_stream`] bounds each wait itself.
const STREAM_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A 2xx answer to a streaming call; its body not read yet.
pub(crate) struct StreamReply {
    pub headers: HeaderMap,
    pub body: BodyStream,
}

impl StreamReply {
    /// Whether the vendor answered with a JSON body instead of an event stream (a server
    /// that ignores `"stream": true`).
    pub fn is_json(&self) -> bool {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
    }
}

/// The body of a streamed answer, read a chunk at a time. Dropping it closes the
/// connection, which cancels the call at the vendor.
pub(crate) struct BodyStream {
    response: reqwest::Response,
    http: HttpClient,
}

impl BodyStream {
    /// The next bytes of the body, `None` at its end; waiting longer than `timeout_seconds`
    /// for them is a `timeout` error, a broken connection a `connection` error.
    pub async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, Error> {
        match tokio::time::timeout(self.http.timeout, self.response.chunk()).await {
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(e)) => Err(self.http.transport_error(&e, "reading the streamed answer")),
            Err(_) => Err(self.http.timed_out("waiting for the next part of the streamed answer")),
        }
    }

    /// The whole body, within `max_response_bytes`.
    pub async fn read_to_end(mut self) -> Result<Vec<u8>, Error> {
        let http = &self.http;
        let read =
            tokio::time::timeout(http.timeout, read_bounded(&mut self.response, http.max_response_bytes));
        match read.await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(BodyError::TooLarge(partial))) => Err(http.too_large(&partial)),
            Ok(Err(BodyError::Transport(e, _))) => Err(http.transport_error(&e, "reading the response body")),
            Err(_) => Err(http.timed_out("reading the response body")),
        }
    }
}

enum BodyError {
    /// Over the limit; what was read so far (at most the limit).
    TooLarge(Vec<u8>),
    /// The connection broke; what was read so far.
    Transport(reqwest::Error, Vec<u8>),
}

/// Reads the body chunk by chunk, never keeping more than `limit` bytes.
async fn read_bounded(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return Err(BodyError::TooLarge(body));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(BodyError::Transport(e, body)),
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
fn causes(error: &dyn std::error::Error) -> String {
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
