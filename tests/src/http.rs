//! Local HTTP servers for the adapter tests, on 127.0.0.1 with an OS-chosen port: a
//! recording vendor double (axum) that answers a canned reply, and raw TCP servers that
//! misbehave in ways axum would not (closing mid-body, never answering).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcllm::providers::{ConfigSource, ProviderCatalog, ProviderConfig};
use arcllm::types::Error;
use arcllm::Provider;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The API key the test providers are created with: tests assert it never leaks.
pub const TEST_KEY: &str = "sk-test-SECRET-0123456789";
/// The environment variable name the test provider files use for it.
pub const TEST_KEY_ENV: &str = "ARCLLM_TEST_API_KEY";

/// One request the double received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub json: Value,
}

impl Recorded {
    /// A request header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the double answers.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

impl Canned {
    /// 200 with a JSON body.
    pub fn json(body: Value) -> Self {
        Self::status(200, body.to_string())
    }

    /// `status` with a body sent as `application/json`.
    pub fn status(status: u16, body: impl Into<Bytes>) -> Self {
        Canned {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            delay: None,
        }
    }

    /// An OpenAI Chat Completions answer ("hi", 5 tokens) when `status` is 200, else
    /// `status` with an OpenAI-style `server_error` body.
    pub fn openai(status: u16) -> Self {
        if status == 200 {
            return Self::json(serde_json::json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            }));
        }
        Self::status(
            status,
            serde_json::json!({"error": {"message": "down", "type": "server_error"}}).to_string(),
        )
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// A vendor double: records every request and answers `Canned`.
pub struct MockServer {
    /// `http://127.0.0.1:<port>`, to use as a provider's `base_url`.
    pub url: String,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Answers every request with `reply`.
    pub async fn start(reply: Canned) -> Self {
        let recorded: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let log = recorded.clone();
        let handler = move |method: Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            let reply = reply.clone();
            async move {
                let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push(Recorded { method, path: uri.path().to_string(), headers, json });
                if let Some(delay) = reply.delay {
                    tokio::time::sleep(delay).await;
                }
                let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
                for (name, value) in &reply.headers {
                    response = response.header(name.as_str(), value.as_str());
                }
                response.body(Body::from(reply.body)).unwrap()
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockServer { url, recorded, task }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// The one request the test expected; panics if there were none or several.
    pub fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request, got {requests:#?}");
        requests.into_iter().next().unwrap()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw server that answers every connection with `head` (status line and headers, CRLF
/// terminated, blank line included) and `body`, then closes the connection; with `hold`,
/// keeps it open that long first (a server that stalls).
pub async fn raw_server(head: String, body: Vec<u8>, hold: Option<Duration>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let head = head.clone();
            let body = body.clone();
            tokio::spawn(async move {
                // Read the request head (enough to not reset a client mid-send).
                let mut buf = vec![0u8; 64 << 10];
                let _ = tokio::time::timeout(Duration::from_millis(500), socket.read(&mut buf)).await;
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
                let _ = socket.flush().await;
                if let Some(hold) = hold {
                    tokio::time::sleep(hold).await;
                }
            });
        }
    });
    url
}

/// A loopback port nothing listens on: bound, then released.
pub async fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// A provider file for a test provider of `api_format` at `base_url`, with `extra` lines
/// appended to its `[provider]` table (and any tables after them).
pub fn provider_toml(api_format: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[provider]\napi_format = \"{api_format}\"\nbase_url = \"{base_url}\"\napi_key_env = \"{TEST_KEY_ENV}\"\ndefault_model = \"test-model\"\n{extra}\n"
    )
}

/// A catalog holding the built-ins and `name` defined by `toml`.
pub fn catalog_with(name: &str, toml: &str) -> ProviderCatalog {
    let mut catalog = ProviderCatalog::builtin().expect("built-in providers");
    let config = ProviderConfig::parse(name, toml, ConfigSource::Inline("test".into()))
        .unwrap_or_else(|e| panic!("test provider file does not parse: {e}\n{toml}"));
    catalog.insert(config);
    catalog
}

/// Environment lookups that know only the test key.
pub fn test_env(var: &str) -> Option<String> {
    (var == TEST_KEY_ENV).then(|| TEST_KEY.to_string())
}

/// Creates provider `name` from a catalog of the built-ins plus `toml`, with the test key.
pub fn provider(name: &str, toml: &str) -> Arc<dyn Provider> {
    catalog_with(name, toml)
        .create_with_env(name, None, &test_env)
        .unwrap_or_else(|e| panic!("creating {name}: {e}"))
}

/// A provider of `api_format` in front of the double at `base_url`.
pub fn provider_at(api_format: &str, base_url: &str, extra: &str) -> Arc<dyn Provider> {
    provider("testvendor", &provider_toml(api_format, base_url, extra))
}

/// Asserts that nothing in `error` (message, body, debug form) contains the test key.
pub fn assert_no_key(error: &Error) {
    let text = format!("{error} {error:?}");
    assert!(!text.contains(TEST_KEY), "the API key leaked into an error: {text}");
}
