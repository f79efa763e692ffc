//! The native HTTP adapters: the innermost layer of every stack.
//!
//! An adapter turns an arcllm [`Request`](crate::types::Request) into one vendor HTTP call
//! and the vendor's answer into a [`Response`](crate::types::Response) or a typed
//! [`Error`]. One adapter per wire format ([`ApiFormat`]); every provider file names its
//! format, so OpenAI-compatible servers (ollama, vllm, groq, ...) reuse the OpenAI adapter.
//!
//! Request defaults: `max_tokens` is the request's, else the model's `max_output_tokens`,
//! else [`DEFAULT_MAX_TOKENS`]; `temperature` is the request's, else the provider's
//! `default_temperature`, else omitted (the vendor's default).
//!
//! Requests that cannot be expressed in the vendor's format (tool-call arguments that are
//! not a JSON object, a tool-use block in a user message, ...) fail before anything is
//! sent, with an error of kind `parse` that says which message or tool call is at fault.
//!
//! Streaming (`Provider::invoke_stream`): the same body with `"stream": true`; a non-2xx
//! answer is the same typed error as without streaming, and the vendor's server-sent events
//! become [`StreamEvent`]s ([`sse`] frames them, each format maps them). The stream ends
//! with an error of kind `connection` if the body ends before the vendor's terminal event or
//! the connection breaks, `parse` for an event that is not the vendor's schema, `api` for an
//! error event, and `timeout` if the vendor falls silent for `timeout_seconds`.

mod anthropic;
pub mod http;
mod openai;
pub mod sse;
mod tls;

use std::fmt;
use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

use anthropic::AnthropicAdapter;
use openai::OpenAiAdapter;

use crate::provider::Provider;
use crate::providers::{ApiFormat, MaxTokensParam, ProviderConfig, ProviderConfigError};
use crate::stream::{self, EventStream, StreamEvent};
use crate::types::{Error, ErrorKind, Request, Response};

/// `max_tokens` when neither the request nor the model's settings give one.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// An API key. It has no `Display`, its `Debug` prints `***`, and its value leaves this
/// crate only as a sensitive HTTP header value.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key read from the environment (or given by an embedder) so it cannot be
    /// printed by accident.
    pub fn new(value: impl Into<String>) -> Self {
        ApiKey(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Creates the adapter for `config`, calling `model` (the provider's `default_model` when
/// `None`), with the API key read from the process environment.
pub fn build(config: &ProviderConfig, model: Option<&str>) -> Result<Arc<dyn Provider>, Error> {
    build_with_env(config, model, &|var| std::env::var(var).ok())
}

/// As [`build`], reading environment variables through `env`.
pub fn build_with_env(
    config: &ProviderConfig,
    model: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Provider>, Error> {
    let settings = &config.provider;
    let model = model.unwrap_or(&settings.default_model);
    if model.trim().is_empty() {
        return Err(Error::config(&config.name, "the model name is empty"));
    }
    let api_key =
        settings.api_key_env.as_deref().and_then(env).filter(|key| !key.trim().is_empty()).map(ApiKey::new);
    if api_key.is_none() && settings.api_key_required {
        let env = settings.api_key_env.clone().unwrap_or_default();
        return Err(ProviderConfigError::MissingApiKey {
            provider: config.name.clone(),
            file: config.source.clone(),
            env,
        }
        .into());
    }
    if config.model(model).is_none() {
        tracing::debug!(provider = %config.name, model, "model not described in the provider file; using defaults");
    }
    Ok(match settings.api_format {
        ApiFormat::AnthropicMessages => Arc::new(HttpAdapter(AnthropicAdapter::new(config, model, api_key)?)),
        ApiFormat::OpenaiChat => Arc::new(HttpAdapter(OpenAiAdapter::new(config, model, api_key)?)),
    })
}

/// A vendor's wire format: how a request becomes a JSON body and a reply a response.
/// Everything else about an adapter (posting, errors, identity) is shared, in
/// [`HttpAdapter`].
pub(crate) trait WireFormat: Send + Sync + 'static {
    /// The vendor's server-sent events, read into [`StreamEvent`]s.
    type Events: sse::EventMapper;

    fn endpoint(&self) -> &Endpoint;
    fn body(&self, request: &Request) -> Result<Value, Error>;
    fn response(&self, headers: &HeaderMap, body: &[u8]) -> Result<Response, Error>;

    /// The body of a streaming call: [`body`](Self::body) asking for a stream (whatever
    /// `options.extra` says about streaming).
    fn stream_body(&self, request: &Request) -> Result<Value, Error> {
        let mut body = self.body(request)?;
        body["stream"] = Value::Bool(true);
        Ok(body)
    }

    /// A mapper for one streamed answer, which came with `headers`.
    fn events(&self, headers: &HeaderMap) -> Self::Events;
}

/// A [`Provider`] over HTTP for one [`WireFormat`]: encode, POST, decode.
struct HttpAdapter<W>(W);

#[async_trait::async_trait]
impl<W: WireFormat> Provider for HttpAdapter<W> {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        let body = self.0.body(&request)?;
        let endpoint = self.0.endpoint();
        let reply = endpoint.http.post_json(&endpoint.url, &body).await?;
        let mut response = self.0.response(&reply.headers, &reply.body)?;
        endpoint.http.scrub_response(&mut response);
        Ok(response)
    }

    async fn invoke_stream(&self, request: Request) -> Result<EventStream, Error> {
        let body = self.0.stream_body(&request)?;
        let endpoint = self.0.endpoint();
        let reply = endpoint.http.post_stream(&endpoint.url, &body).await?;
        if reply.is_json() {
            let body = reply.body.read_to_end().await?;
            return Ok(stream::from_response(self.0.response(&reply.headers, &body)?));
        }
        let mapping = sse::Mapping::new(self.0.events(&reply.headers), endpoint.http.max_response_bytes());
        Ok(sse::live(reply.body, mapping))
    }

    fn name(&self) -> &str {
        &self.0.endpoint().provider
    }

    fn model_name(&self) -> &str {
        &self.0.endpoint().model
    }

    async fn validate_config(&self) -> Result<(), Error> {
        self.0.endpoint().validate()
    }
}

/// An adapter's reading of server-sent events without the HTTP: the items
/// [`Provider::invoke_stream`] would yield for an SSE body held in memory. For replaying
/// recorded vendor streams and for measuring the mapping on its own.
pub struct SseReplay(Box<dyn Replay>);

impl SseReplay {
    /// The reading of the adapter `config` creates for `model` (the provider's
    /// `default_model` when `None`). Needs no API key.
    pub fn new(config: &ProviderConfig, model: Option<&str>) -> Result<Self, Error> {
        let model = model.unwrap_or(&config.provider.default_model);
        Ok(SseReplay(match config.provider.api_format {
            ApiFormat::AnthropicMessages => Box::new(AnthropicAdapter::new(config, model, None)?),
            ApiFormat::OpenaiChat => Box::new(OpenAiAdapter::new(config, model, None)?),
        }))
    }

    /// The stream's items for a body read in `chunks`, up to and including the first error.
    pub fn replay<'a>(&self, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Result<StreamEvent, Error>> {
        self.0.replay(&mut chunks.into_iter())
    }
}

trait Replay: Send + Sync {
    fn replay(&self, chunks: &mut dyn Iterator<Item = &[u8]>) -> Vec<Result<StreamEvent, Error>>;
}

impl<W: WireFormat> Replay for W {
    fn replay(&self, chunks: &mut dyn Iterator<Item = &[u8]>) -> Vec<Result<StreamEvent, Error>> {
        let http = &self.endpoint().http;
        sse::Mapping::new(self.events(&HeaderMap::new()), http.max_response_bytes()).replay(chunks)
    }
}

/// What both adapters hold: who they are, where they post, and the request defaults.
pub(crate) struct Endpoint {
    pub provider: String,
    pub model: String,
    /// Parsed once here: reqwest would otherwise parse (and IDNA-check) it on every request.
    pub url: reqwest::Url,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
    pub max_tokens_param: MaxTokensParam,
    pub api_key_required: bool,
    pub has_key: bool,
    pub http: http::HttpClient,
}

impl Endpoint {
    /// A system message's text: its text, or its text blocks joined by newlines (both
    /// vendors take the system prompt as text only).
    pub fn system_text(&self, index: usize, content: &crate::types::Content) -> Result<String, Error> {
        use crate::types::{Content, ContentBlock};
        match content {
            Content::Text(text) => Ok(text.clone()),
            Content::Blocks(blocks) => blocks
                .iter()
                .map(|block| match block {
                    ContentBlock::Text(text) => Ok(text.as_str()),
                    _ => {
                        Err(self.request_error(format!("system messages[{index}] may hold text blocks only")))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|texts| {
                    texts.join(
                        "
",
                    )
                }),
        }
    }

    /// `path` is appended to the provider's `base_url`; `headers` are the vendor's own.
    pub fn new(
        config: &ProviderConfig,
        model: &str,
        path: &str,
        headers: HeaderMap,
        api_key: Option<ApiKey>,
    ) -> Result<Self, Error> {
        let settings = &config.provider;
        let url = format!("{}{path}", settings.base_url.trim_end_matches('/'));
        let url = reqwest::Url::parse(&url).map_err(|e| {
            Error::config(&config.name, format!("base_url `{}` is not a URL: {e}", settings.base_url))
        })?;
        Ok(Endpoint {
            provider: config.name.clone(),
            model: model.to_string(),
            url,
            max_tokens: config.model(model).and_then(|m| m.max_output_tokens).unwrap_or(DEFAULT_MAX_TOKENS),
            temperature: settings.default_temperature,
            max_tokens_param: settings.max_tokens_param.unwrap_or_default(),
            api_key_required: settings.api_key_required,
            has_key: api_key.is_some(),
            http: http::HttpClient::new(&config.name, settings, headers, api_key)?,
        })
    }

    /// `max_tokens` for this request.
    pub fn max_tokens(&self, request: &Request) -> u32 {
        request.options.max_tokens.unwrap_or(self.max_tokens)
    }

    /// `temperature` for this request, if any.
    pub fn temperature(&self, request: &Request) -> Option<f64> {
        request.options.temperature.or(self.temperature)
    }

    /// A request that cannot be expressed in the vendor's format.
    pub fn request_error(&self, message: impl AsRef<str>) -> Error {
        self.http.error(ErrorKind::Parse, format!("cannot encode the request: {}", message.as_ref()))
    }

    /// Tool-call arguments (JSON text) as the JSON object they must be.
    pub fn tool_arguments(&self, id: &str, arguments: &str) -> Result<Value, Error> {
        match serde_json::from_str::<Value>(arguments) {
            Ok(value @ Value::Object(_)) => Ok(value),
            Ok(_) => {
                Err(self.request_error(format!("the arguments of tool call `{id}` are not a JSON object")))
            }
            Err(e) => {
                Err(self.request_error(format!("the arguments of tool call `{id}` are not valid JSON: {e}")))
            }
        }
    }

    /// The request's tool definitions, each as `name`, `description` (when there is one)
    /// and its parameter schema under `schema_key`, the schema parsed from JSON text into
    /// the object it must be. Each vendor wraps these in its own envelope.
    pub fn tools(&self, request: &Request, schema_key: &str) -> Result<Vec<Map<String, Value>>, Error> {
        request
            .tools
            .iter()
            .map(|tool| {
                let schema = match serde_json::from_str::<Value>(&tool.parameters) {
                    Ok(value @ Value::Object(_)) => value,
                    _ => {
                        return Err(self.request_error(format!(
                            "the parameters of tool `{}` are not a JSON Schema object",
                            tool.name
                        )))
                    }
                };
                let mut definition = Map::new();
                definition.insert("name".into(), Value::String(tool.name.clone()));
                if !tool.description.is_empty() {
                    definition.insert("description".into(), Value::String(tool.description.clone()));
                }
                definition.insert(schema_key.into(), schema);
                Ok(definition)
            })
            .collect()
    }

    /// Merges `options.extra` into the body; its keys win, as the escape hatch for vendor
    /// parameters arcllm does not model.
    pub fn merge_extra(&self, body: &mut Map<String, Value>, request: &Request) -> Result<(), Error> {
        let Some(extra) = request.options.extra.as_deref() else { return Ok(()) };
        match serde_json::from_str::<Value>(extra) {
            Ok(Value::Object(extra)) => {
                body.extend(extra);
                Ok(())
            }
            _ => Err(self.http.error(ErrorKind::Config, "options.extra must be a JSON object in JSON text")),
        }
    }

    /// For `validate_config`: a key is present whenever one is required.
    pub fn validate(&self) -> Result<(), Error> {
        if self.api_key_required && !self.has_key {
            return Err(self.http.error(ErrorKind::Config, "no API key is configured"));
        }
        Ok(())
    }

    /// `adapter.*` metadata from the response headers: the vendor's request id, and
    /// Prism's `sl-violations` (set only by the validating mock servers used in the
    /// conformance tests; real vendors never send it, so it costs nothing in production).
    pub fn header_metadata(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        let mut metadata = Vec::new();
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Some(id) = value("request-id").or_else(|| value("x-request-id")) {
            metadata.push(("adapter.request_id".to_string(), id));
        }
        if let Some(violations) = value("sl-violations") {
            metadata.push(("adapter.sl-violations".to_string(), violations));
        }
        metadata
    }
}
