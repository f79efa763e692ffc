//! The provider file schema (`<name>.toml`), parsed strictly and validated once at load.
//!
//! The schema follows ArcLLM's provider files: a `[provider]` table and one
//! `[models.<id>]` table per known model. Unknown keys are errors (`deny_unknown_fields`)
//! so a typo never silently falls back to a default. Everything an adapter needs is checked
//! here, so creating an adapter later can only fail on the environment (a missing key).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::error::ProviderConfigError;
use crate::target::{ProviderName, NAME_RULE};

/// Default request timeout, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 60.0;
/// Default connect timeout, in seconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECONDS: f64 = 10.0;
/// Default cap on a response body: 8 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 8 << 20;
/// The longest timeout accepted (a day); beyond that a value is surely a mistake.
const MAX_TIMEOUT_SECONDS: f64 = 86_400.0;
/// Headers that carry credentials: those come from `api_key_env` only, never from a file.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "x-api-key", "api-key", "proxy-authorization"];

/// Where a provider definition came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Embedded in the binary: `providers/<file>` of the arcllm source tree.
    Builtin(&'static str),
    /// A user's file.
    File(PathBuf),
    /// Built in code (tests, embedders); the string says by whom.
    Inline(String),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Builtin(file) => write!(f, "built-in providers/{file}"),
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Inline(what) => write!(f, "{what}"),
        }
    }
}

/// The wire format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiFormat {
    /// Anthropic Messages: `POST {base_url}/v1/messages`.
    AnthropicMessages,
    /// OpenAI Chat Completions and the many servers that copy it:
    /// `POST {base_url}/v1/chat/completions`.
    OpenaiChat,
}

impl fmt::Display for ApiFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiFormat::AnthropicMessages => "anthropic-messages",
            ApiFormat::OpenaiChat => "openai-chat",
        })
    }
}

/// Which body field carries the output-token limit in `openai-chat` requests.
///
/// OpenAI's own API deprecated `max_tokens` (its reasoning models reject it) in favour of
/// `max_completion_tokens`, while most OpenAI-compatible servers only know `max_tokens`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensParam {
    /// `max_tokens`: what OpenAI-compatible servers understand.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: what OpenAI's own API wants.
    MaxCompletionTokens,
}

impl MaxTokensParam {
    /// The JSON field name.
    pub fn field(self) -> &'static str {
        match self {
            MaxTokensParam::MaxTokens => "max_tokens",
            MaxTokensParam::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// The `[provider]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The wire format the provider speaks, which picks the adapter.
    pub api_format: ApiFormat,
    /// Scheme, host and optional path prefix; `/v1/...` is appended. https unless the host is
    /// loopback.
    pub base_url: String,
    /// Name of the environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// False for local servers that need no key.
    #[serde(default = "default_true")]
    pub api_key_required: bool,
    /// The model used when none is named.
    pub default_model: String,
    /// Sampling temperature when the request sets none; unset means the vendor's default.
    #[serde(default)]
    pub default_temperature: Option<f64>,
    /// Whole-request timeout, in seconds (fractions allowed).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Connect timeout, in seconds (fractions allowed).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: f64,
    /// Largest response body accepted; a bigger one is a `parse` error.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Headers sent with every request, e.g. for a proxy, or Prism's `Prefer` in tests.
    /// Credential headers are refused: keys come from `api_key_env` only.
    #[serde(default)]
    pub extra_headers: BTreeMap<String, String>,
    /// `openai-chat` only: the body field for the output-token limit.
    #[serde(default)]
    pub max_tokens_param: Option<MaxTokensParam>,
}

fn default_true() -> bool {
    true
}
fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_SECONDS
}
fn default_connect_timeout() -> f64 {
    DEFAULT_CONNECT_TIMEOUT_SECONDS
}
fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// A `[models.<id>]` table: what a model can do and what it costs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Input plus output tokens the model accepts.
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Used as `max_tokens` when the request sets none.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Whether the model can call tools.
    #[serde(default)]
    pub supports_tools: bool,
    /// Whether the model accepts images.
    #[serde(default)]
    pub supports_vision: bool,
    /// Whether the model has an extended-thinking mode.
    #[serde(default)]
    pub supports_thinking: bool,
    /// Informational, as in ArcLLM's files (`["text", "image"]`).
    #[serde(default)]
    pub input_modalities: Vec<String>,
    /// US dollars per million input tokens.
    #[serde(default)]
    pub cost_input_per_1m: Option<f64>,
    /// US dollars per million output tokens.
    #[serde(default)]
    pub cost_output_per_1m: Option<f64>,
    /// US dollars per million input tokens read from the prompt cache.
    #[serde(default)]
    pub cost_cache_read_per_1m: Option<f64>,
    /// US dollars per million input tokens written to the prompt cache.
    #[serde(default)]
    pub cost_cache_write_per_1m: Option<f64>,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    provider: ProviderSettings,
    #[serde(default)]
    models: BTreeMap<String, ModelSettings>,
}

/// One provider's validated definition.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderConfig {
    /// The provider's name: the file's stem.
    pub name: String,
    /// Where it was defined.
    pub source: ConfigSource,
    /// The `[provider]` table.
    pub provider: ProviderSettings,
    /// The `[models.<id>]` tables, by model id.
    pub models: BTreeMap<String, ModelSettings>,
}

impl ProviderConfig {
    /// Parses and validates the text of `<name>.toml`.
    pub fn parse(name: &str, text: &str, source: ConfigSource) -> Result<Self, ProviderConfigError> {
        if !ProviderName::is_valid(name) {
            return Err(ProviderConfigError::invalid(
                name,
                &source,
                None,
                format!("the provider name must match {NAME_RULE}"),
            ));
        }
        let file: ProviderFile = toml::from_str(text).map_err(|error| {
            let key = error.span().and_then(|span| key_at(text, span.start));
            ProviderConfigError::invalid(name, &source, key, error.to_string().trim_end().to_string())
        })?;
        let config =
            ProviderConfig { name: name.to_string(), source, provider: file.provider, models: file.models };
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a user's provider file; the provider is named after the file.
    pub fn load(path: &std::path::Path) -> Result<Self, ProviderConfigError> {
        let name = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default().to_string();
        if let Err(source) = ProviderName::parse(&name) {
            return Err(ProviderConfigError::InvalidName { name, path: path.to_path_buf(), source });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ProviderConfigError::Read {
            provider: name.clone(),
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&name, &text, ConfigSource::File(path.to_path_buf()))
    }

    /// The settings of `model`, if the file describes it.
    pub fn model(&self, model: &str) -> Option<&ModelSettings> {
        self.models.get(model)
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> ProviderConfigError {
        ProviderConfigError::invalid(&self.name, &self.source, key.to_string(), message)
    }

    fn validate(&self) -> Result<(), ProviderConfigError> {
        let p = &self.provider;
        check_base_url(&p.base_url).map_err(|message| self.invalid("provider.base_url", message))?;
        match &p.api_key_env {
            // The value is not echoed: a pasted key is the likeliest invalid name.
            Some(env) if !valid_env_name(env) => {
                return Err(self.invalid(
                    "provider.api_key_env",
                    "must name an environment variable (letters, digits and _, not starting with a digit), not hold the key itself",
                ))
            }
            None if p.api_key_required => {
                return Err(self.invalid(
                    "provider.api_key_env",
                    "missing: name the environment variable that holds the API key, or set api_key_required = false",
                ))
            }
            _ => {}
        }
        if p.default_model.trim().is_empty() {
            return Err(self.invalid("provider.default_model", "must not be empty"));
        }
        if let Some(t) = p.default_temperature {
            if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
                return Err(
                    self.invalid("provider.default_temperature", format!("{t} is not between 0 and 2"))
                );
            }
        }
        for (key, value) in [
            ("provider.timeout_seconds", p.timeout_seconds),
            ("provider.connect_timeout_seconds", p.connect_timeout_seconds),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= MAX_TIMEOUT_SECONDS) {
                return Err(self.invalid(
                    key,
                    format!("{value} is not a number of seconds in (0, {MAX_TIMEOUT_SECONDS}]"),
                ));
            }
        }
        if p.max_response_bytes == 0 || usize::try_from(p.max_response_bytes).is_err() {
            return Err(self.invalid("provider.max_response_bytes", "must be a positive number of bytes"));
        }
        for (name, value) in &p.extra_headers {
            let key = format!("provider.extra_headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.invalid(&key, format!("`{name}` is not a valid HTTP header name")))?;
            if CREDENTIAL_HEADERS.contains(&header.as_str()) {
                return Err(self.invalid(
                    &key,
                    "credentials are read from the environment (api_key_env), never from a file",
                ));
            }
            HeaderValue::from_str(value).map_err(|_| self.invalid(&key, "not a valid HTTP header value"))?;
        }
        if p.max_tokens_param.is_some() && p.api_format != ApiFormat::OpenaiChat {
            return Err(
                self.invalid("provider.max_tokens_param", "only applies to api_format = \"openai-chat\"")
            );
        }
        for (id, model) in &self.models {
            let costs = [
                ("cost_input_per_1m", model.cost_input_per_1m),
                ("cost_output_per_1m", model.cost_output_per_1m),
                ("cost_cache_read_per_1m", model.cost_cache_read_per_1m),
                ("cost_cache_write_per_1m", model.cost_cache_write_per_1m),
            ];
            for (field, cost) in costs {
                if cost.is_some_and(|c| !(c.is_finite() && c >= 0.0)) {
                    return Err(
                        self.invalid(&format!("models.{id}.{field}"), "must be a non-negative number")
                    );
                }
            }
            if model.max_output_tokens == Some(0) {
                return Err(self.invalid(&format!("models.{id}.max_output_tokens"), "must be positive"));
            }
        }
        Ok(())
    }
}

/// `base_url` must be http(s) with a host, no credentials, query or fragment, and https
/// unless the host is loopback (a local server).
fn check_base_url(base_url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(base_url).map_err(|e| format!("`{base_url}` is not a URL: {e}"))?;
    let host = url.host_str().ok_or_else(|| format!("`{base_url}` has no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials: the API key is read from api_key_env".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{base_url}` must not have a query or fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => {
            Err(format!("`{base_url}` must use https (plain http is only allowed for a loopback host)"))
        }
        other => Err(format!("`{base_url}`: scheme `{other}` is not http or https")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The dotted key at byte `offset` of a TOML document, found by reading table headers and
/// `key =` lines: good enough to point a user at the right line for serde's messages
/// (the TOML error that follows also quotes the line).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut table: Option<String> = None;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let trimmed = line.trim();
        let header =
            trimmed.strip_prefix('[').and_then(|rest| rest.split(']').next()).map(|h| unquote_key(h.trim()));
        if offset < end || end == text.len() {
            if let Some(header) = header {
                return Some(header);
            }
            let key = trimmed.split('=').next().map(|k| unquote_key(k.trim())).filter(|k| !k.is_empty())?;
            return Some(match table {
                Some(table) => format!("{table}.{key}"),
                None => key,
            });
        }
        if let Some(header) = header {
            table = Some(header);
        }
        start = end;
    }
    table
}

/// `models."llama3.2"` → `models.llama3.2`: quotes help TOML, not the reader.
fn unquote_key(key: &str) -> String {
    key.replace(['"', '\''], "")
}
