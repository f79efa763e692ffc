//! What every adapter does the same way on the wire: one HTTP client per adapter with its
//! timeouts, a POST that reads the body in bounded chunks, and the translation of every
//! failure into the typed [`Error`] that retry and fallback decide on.
//!
//! Nothing here logs or returns the API key: request headers are never logged, the key's
//! header value is marked sensitive, and any text that reaches an error (a vendor body, a
//! transport message) or a successful response (content, thinking, tool calls, model,
//! metadata) is scrubbed of the key's value first, in case a server echoes it: whatever
//! the adapter returns is handed to modules, which must never see the key.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use serde_json::Value;

use super::ApiKey;
use crate::providers::ProviderSettings;
use crate::types::{Error, ErrorKind, Response};

/// How much of a non-2xx body is read: enough for the vendor's message and the excerpt.
const ERROR_BODY_BYTES: usize = 64 << 10;

mod body;
mod errors;

pub(crate) use body::{BodyStream, StreamReply};
pub use errors::{excerpt, retry_after_ms, should_retry, BODY_EXCERPT_CHARS};

use body::{read_bounded, BodyError};
use errors::causes;

/// How long a streaming call may last in reqwest's eyes: in effect no limit, since
/// [`HttpClient::post_stream`] bounds each wait itself.
const STREAM_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

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
    pub async fn post_json(&self, url: &reqwest::Url, body: &Value) -> Result<Reply, Error> {
        let started = Instant::now();
        let payload = serde_json::to_vec(body)
            .map_err(|e| self.error(ErrorKind::Parse, format!("cannot encode the request: {e}")))?;
        let mut response = self
            .client
            .post(url.clone())
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
    pub async fn post_stream(&self, url: &reqwest::Url, body: &Value) -> Result<StreamReply, Error> {
        let payload = serde_json::to_vec(body)
            .map_err(|e| self.error(ErrorKind::Parse, format!("cannot encode the request: {e}")))?;
        let send = self
            .client
            .post(url.clone())
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
