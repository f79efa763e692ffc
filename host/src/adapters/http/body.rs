//! Reading a vendor's answer: a streamed body a chunk at a time, each wait bounded, and a
//! whole body within a byte limit.

use reqwest::header::{HeaderMap, CONTENT_TYPE};

use super::HttpClient;
use crate::types::Error;

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
    pub(super) response: reqwest::Response,
    pub(super) http: HttpClient,
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

pub(super) enum BodyError {
    /// Over the limit; what was read so far (at most the limit).
    TooLarge(Vec<u8>),
    /// The connection broke; what was read so far.
    Transport(reqwest::Error, Vec<u8>),
}

/// Reads the body chunk by chunk, never keeping more than `limit` bytes.
pub(super) async fn read_bounded(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
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
