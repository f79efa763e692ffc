//! Shared parts of the end-to-end tests: a scripted in-process provider, a request that
//! uses every field of the data model, and helpers to load the built-in modules.

pub mod http;
pub mod redis;
pub mod sse;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arcllm::runtime::{Module, ModuleSource, Runtime};
use arcllm::types::*;
use arcllm::Provider;
use async_trait::async_trait;

/// One recorded call to a [`ScriptedProvider`].
#[derive(Clone, Debug)]
pub struct Call {
    pub request: Request,
    /// tokio's clock at the call (paused in retry tests, so the gaps are the exact waits).
    pub at: tokio::time::Instant,
}

/// A provider that answers from a script (then repeats its fallback answer) and records
/// every request it gets, with the time it got it.
pub struct ScriptedProvider {
    name: String,
    model: String,
    script: Mutex<VecDeque<Result<Response, Error>>>,
    otherwise: Result<Response, Error>,
    calls: Mutex<Vec<Call>>,
}

impl ScriptedProvider {
    /// Always answers `sample_response()`.
    pub fn ok(name: &str) -> Arc<Self> {
        Self::scripted(name, vec![], Ok(sample_response(name)))
    }

    /// Always fails with `error`.
    pub fn failing(name: &str, error: Error) -> Arc<Self> {
        Self::scripted(name, vec![], Err(error))
    }

    /// Answers `script` in order, then `otherwise` forever.
    pub fn scripted(
        name: &str,
        script: Vec<Result<Response, Error>>,
        otherwise: Result<Response, Error>,
    ) -> Arc<Self> {
        Arc::new(ScriptedProvider {
            name: name.to_string(),
            model: format!("{name}-model"),
            script: Mutex::new(script.into()),
            otherwise,
            calls: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Seconds between consecutive calls.
    pub fn gaps(&self) -> Vec<f64> {
        let calls = self.calls();
        calls.windows(2).map(|w| (w[1].at - w[0].at).as_secs_f64()).collect()
    }
}

#[async_trait]
impl Provider for ScriptedProvider {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        self.calls.lock().unwrap().push(Call { request, at: tokio::time::Instant::now() });
        let next = self.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| self.otherwise.clone())
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn model_name(&self) -> &str {
        &self.model
    }
    async fn validate_config(&self) -> Result<(), Error> {
        if self.name.starts_with("invalid") {
            Err(Error::config(&self.name, "test provider configured as invalid"))
        } else {
            Ok(())
        }
    }
}

/// An `api` error with `status` from `provider`.
pub fn api_error(provider: &str, status: u16) -> Error {
    Error {
        body: Some(format!("{{\"error\":\"status {status}\"}}")),
        ..Error::api(provider, status, format!("HTTP {status}"))
    }
}

/// An error of `kind` (not `api`) from `provider`.
pub fn error_of(kind: ErrorKind, provider: &str) -> Error {
    Error::new(kind, provider, format!("{kind} failure"))
}

/// A response that fills every field of the data model.
pub fn sample_response(provider: &str) -> Response {
    Response {
        content: Some(format!("hello from {provider} — ünïcødé ✓")),
        tool_calls: vec![ToolCall {
            id: "call_1".into(),
            name: "search".into(),
            arguments: r#"{"q":"rust"}"#.into(),
        }],
        usage: Usage {
            input_tokens: 12,
            output_tokens: 34,
            total_tokens: 46,
            cache_read_tokens: Some(5),
            cache_write_tokens: Some(6),
            reasoning_tokens: Some(7),
        },
        model: format!("{provider}-model"),
        stop_reason: StopReason::ToolUse,
        thinking: Some("thinking it over".into()),
        metadata: vec![("adapter.request_id".into(), "req-123".into())],
    }
}

/// A request that uses every field of the data model: every role, every content block,
/// tools, and every option.
pub fn full_request() -> Request {
    Request {
        messages: vec![
            Message::system("You are terse."),
            Message::user("What is in this picture? Also search for rust."),
            Message {
                role: Role::User,
                content: Content::Blocks(vec![
                    ContentBlock::Text("look:".into()),
                    ContentBlock::Image(Image {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    }),
                ]),
            },
            Message {
                role: Role::Assistant,
                content: Content::Blocks(vec![
                    ContentBlock::Text("Searching.".into()),
                    ContentBlock::ToolUse(ToolUse {
                        id: "toolu_1".into(),
                        name: "search".into(),
                        arguments: r#"{"q":"rust"}"#.into(),
                    }),
                ]),
            },
            Message {
                role: Role::Tool,
                content: Content::Blocks(vec![ContentBlock::ToolResult(ToolResult {
                    tool_use_id: "toolu_1".into(),
                    content: "Rust is a language.".into(),
                    is_error: false,
                })]),
            },
        ],
        tools: vec![ToolDefinition {
            name: "search".into(),
            description: "Search the web".into(),
            parameters: r#"{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}"#.into(),
        }],
        options: Options {
            max_tokens: Some(256),
            temperature: Some(0.25),
            stop_sequences: vec!["STOP".into()],
            extra: Some(r#"{"top_p":0.9}"#.into()),
        },
    }
}

/// Loads the built-in module `name` with `config`; panics with the load error.
pub async fn builtin(runtime: &Runtime, name: &str, config: serde_json::Value) -> Arc<Module> {
    logs::route_every_event();
    let bytes = arcllm::builtin::get(name).unwrap_or_else(|| panic!("no built-in module {name}"));
    runtime
        .load_module(name, ModuleSource::Builtin, bytes.to_vec(), &config)
        .await
        .unwrap_or_else(|e| panic!("loading built-in {name}: {e}"))
}

/// The test fixture modules, compiled by `tests/build.rs`.
pub mod fixtures {
    pub const TAG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fixture_tag.wasm"));
    /// Built for contract 0.2: tags answers with its table (`tag-v0-2`) and the stop reason
    /// it was handed (`tag-v0-2.stop`).
    pub const TAG_V0_2: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fixture_tag_v0_2.wasm"));
    /// Misbehaves as its `mode` config says: `spin`, `trap`, `membomb`, `trap-second` or
    /// `leak-handle`.
    pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fixture_hostile.wasm"));
    pub const READS_FILES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fixture_reads_files.wasm"));
}

/// Captures what modules log (through the host's `tracing`) on the current thread.
pub mod logs {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Makes every `tracing` callsite ask the current thread's subscriber each time.
    ///
    /// `tracing` caches, per callsite, whether any subscriber is interested. A callsite
    /// first hit by one test thread while another installs its capturing subscriber can
    /// cache "never" and drop that test's events (a race in tracing-core's registration).
    /// A global subscriber that answers "sometimes" for every callsite and records nothing
    /// rules that out, as long as it is installed before any module runs: `builtin` and
    /// `capture` call this first.
    pub fn route_every_event() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let _ = tracing::subscriber::set_global_default(EveryCallsite);
        });
    }

    struct EveryCallsite;

    impl tracing::Subscriber for EveryCallsite {
        fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
            tracing::subscriber::Interest::sometimes()
        }
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// Installs a subscriber for this thread (use a current-thread tokio test) and returns
    /// the buffer it writes to, and the guard that keeps it installed.
    pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
        route_every_event();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }
}
