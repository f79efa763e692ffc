//! `arcllm demo`: real stacks against local servers that fail like real vendors.
//!
//! Nothing is mocked inside arcllm: the servers are real HTTP on loopback speaking the
//! Anthropic Messages and OpenAI Chat Completions formats, the adapters are the real ones,
//! and retry and fallback are the real wasm modules. Only the vendors are stand-ins.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use arcllm::config::Config;
use arcllm::providers::{ConfigSource, ProviderCatalog, ProviderConfig};
use arcllm::types::{Message, Options};
use arcllm::{load_model, Setting};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What a stand-in vendor answers to one request.
#[derive(Clone, Debug)]
enum Reply {
    Ok(&'static str),
    Fail { status: u16, retry_after: Option<&'static str> },
}

#[derive(Clone, Copy)]
enum Format {
    Anthropic,
    OpenAi,
}

/// A vendor stand-in on loopback that answers from a script, then succeeds.
struct Vendor {
    name: &'static str,
    format: Format,
    script: Mutex<VecDeque<Reply>>,
    started: Instant,
}

impl Vendor {
    async fn start(
        name: &'static str,
        format: Format,
        script: Vec<Reply>,
        started: Instant,
    ) -> anyhow::Result<SocketAddr> {
        let vendor = Arc::new(Vendor { name, format, script: Mutex::new(script.into()), started });
        let path = match format {
            Format::Anthropic => "/v1/messages",
            Format::OpenAi => "/v1/chat/completions",
        };
        let app =
            axum::Router::new().route(path, axum::routing::post(move || async move { vendor.answer() }));
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }

    fn answer(&self) -> Response {
        let reply = self
            .script
            .lock()
            .map(|mut s| s.pop_front())
            .ok()
            .flatten()
            .unwrap_or(Reply::Ok("Hello from the demo!"));
        let at = self.started.elapsed().as_secs_f64();
        match reply {
            Reply::Ok(text) => {
                println!("  [{at:5.2}s] {:<14} ⇠ 200 OK", self.name);
                let body = match self.format {
                    Format::Anthropic => json!({
                        "id": "msg_demo", "type": "message", "role": "assistant", "model": "claude-demo",
                        "content": [{"type": "text", "text": text}],
                        "stop_reason": "end_turn", "stop_sequence": null,
                        "usage": {"input_tokens": 12, "output_tokens": 7}
                    }),
                    Format::OpenAi => json!({
                        "id": "chatcmpl-demo", "object": "chat.completion", "created": 0, "model": "gpt-demo",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
                    }),
                };
                axum::Json(body).into_response()
            }
            Reply::Fail { status, retry_after } => {
                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let hint = retry_after.map(|s| format!(", Retry-After: {s}")).unwrap_or_default();
                println!("  [{at:5.2}s] {:<14} ⇠ {code}{hint}", self.name);
                let mut headers = HeaderMap::new();
                if let Some(value) = retry_after {
                    headers.insert("retry-after", HeaderValue::from_static(value));
                }
                let body =
                    json!({"type": "error", "error": {"type": "demo_error", "message": code.to_string()}});
                (code, headers, axum::Json(body)).into_response()
            }
        }
    }
}

fn provider(name: &str, format: Format, addr: SocketAddr) -> anyhow::Result<ProviderConfig> {
    let (api_format, model) = match format {
        Format::Anthropic => ("anthropic-messages", "claude-demo"),
        Format::OpenAi => ("openai-chat", "gpt-demo"),
    };
    let text = format!(
        "[provider]\napi_format = \"{api_format}\"\nbase_url = \"http://{addr}\"\napi_key_required = false\n\
         default_model = \"{model}\"\ntimeout_seconds = 5\nconnect_timeout_seconds = 1\n"
    );
    Ok(ProviderConfig::parse(name, &text, ConfigSource::Inline("arcllm demo".into()))?)
}

/// A loopback address nothing listens on: connections to it are refused at once.
async fn dead_address() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?)
}

fn table(value: serde_json::Value) -> Setting {
    Setting::from(value)
}

pub async fn run() -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(ModuleLog);
    let _ = tracing::subscriber::set_global_default(subscriber);

    println!(
        "arcllm demo: real adapters and real wasm modules against local servers that fail like vendors.\n"
    );
    let scenarios: [(&str, fn(Instant) -> Scenario); 4] = [
        ("1. retry rides out a 429 (with Retry-After) and a 503", rate_limited),
        ("2. the primary is down: retry gives up fast, fallback answers", dead_primary),
        ("3. a 401 is never retried", unauthorized),
        ("4. everything fails: the primary's error comes back", all_down),
    ];
    let mut failures = 0;
    for (title, make) in scenarios {
        println!("── {title}");
        let started = Instant::now();
        let outcome = make(started).run(started).await?;
        let secs = started.elapsed().as_secs_f64();
        match outcome {
            Ok(line) => println!("  ✓ {line}  ({secs:.2}s)\n"),
            Err(line) => {
                println!("  ✗ {line}  ({secs:.2}s)\n");
                failures += 1;
            }
        }
    }
    println!("{failures} of 4 calls ended in an error, as scripted (scenarios 3 and 4 are meant to fail).");
    if failures != 2 {
        return Err(DemoFailed(format!("the demo expected exactly 2 failing calls, saw {failures}")).into());
    }
    Ok(())
}

/// Prints what modules log (`arcllm::module` events), tagged with the module's name.
struct ModuleLog;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ModuleLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "arcllm::module" {
            return;
        }
        #[derive(Default)]
        struct Fields {
            module: String,
            message: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "module" => self.module = format!("{value:?}"),
                    "message" => self.message = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (module, level) = (format!("[{}]", fields.module), event.metadata().level());
        println!("  {:>8} {module:<14} {level} {}", "", fields.message);
    }
}

/// One demo call: vendors to start, and the model to build over them.
struct Scenario {
    anthropic: Option<Vec<Reply>>,
    openai: Option<Vec<Reply>>,
    primary_dead: bool,
    retry: Setting,
    fallback: Setting,
}

impl Scenario {
    async fn run(self, started: Instant) -> anyhow::Result<Result<String, String>> {
        let mut catalog = ProviderCatalog::builtin()?;
        if let Some(script) = self.anthropic {
            let addr = Vendor::start("local-anthropic", Format::Anthropic, script, started).await?;
            catalog.insert(provider("demo_anthropic", Format::Anthropic, addr)?);
        }
        if let Some(script) = self.openai {
            let addr = Vendor::start("local-openai", Format::OpenAi, script, started).await?;
            catalog.insert(provider("demo_openai", Format::OpenAi, addr)?);
        }
        let primary = if self.primary_dead {
            catalog.insert(provider("demo_dead", Format::Anthropic, dead_address().await?)?);
            "demo_dead"
        } else {
            "demo_anthropic"
        };
        let model = load_model(primary)
            .config(Config::embedded())
            .catalog(catalog)
            .retry(self.retry)
            .fallback(self.fallback)
            .build()
            .await?;
        println!("  stack: {} → {primary}", model.stack_names().join(" → "));
        let result = model.invoke(vec![Message::user("Say hello.")], vec![], Options::default()).await;
        Ok(match result {
            Ok(response) => {
                let meta =
                    response.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
                Ok(format!("{:?} [{meta}]", response.content.unwrap_or_default()))
            }
            Err(error) => Err(error.summary()),
        })
    }
}

fn rate_limited(_: Instant) -> Scenario {
    Scenario {
        anthropic: Some(vec![
            Reply::Fail { status: 429, retry_after: Some("1") },
            Reply::Fail { status: 503, retry_after: None },
            Reply::Ok("Hello, after a 429 and a 503!"),
        ]),
        openai: None,
        primary_dead: false,
        retry: table(json!({"backoff_base_seconds": 0.25})),
        fallback: Setting::Off,
    }
}

fn dead_primary(_: Instant) -> Scenario {
    Scenario {
        anthropic: None,
        openai: Some(vec![Reply::Ok("Hello from the fallback provider!")]),
        primary_dead: true,
        retry: table(json!({"max_retries": 1, "backoff_base_seconds": 0.2})),
        fallback: table(json!({"chain": ["demo_openai"]})),
    }
}

fn unauthorized(_: Instant) -> Scenario {
    Scenario {
        anthropic: Some(vec![Reply::Fail { status: 401, retry_after: None }]),
        openai: None,
        primary_dead: false,
        retry: Setting::On,
        fallback: Setting::Off,
    }
}

fn all_down(_: Instant) -> Scenario {
    Scenario {
        anthropic: Some(vec![Reply::Fail { status: 503, retry_after: None }; 3]),
        openai: Some(vec![Reply::Fail { status: 500, retry_after: None }; 3]),
        primary_dead: false,
        retry: table(json!({"max_retries": 2, "backoff_base_seconds": 0.2})),
        fallback: table(json!({"chain": ["demo_openai"]})),
    }
}

/// The demo ran and a scenario did not end as scripted (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoFailed(pub String);
