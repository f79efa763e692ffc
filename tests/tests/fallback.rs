//! The fallback module, run as the real compiled component, with the host registry that
//! creates fallback providers on demand. Twins of the seed's fallback tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arcllm::runtime::{LazyRegistry, LoadErrorKind, ModuleSource, RandomSource, Runtime, Stack};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::{json, Value};

fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::builder().build().expect("runtime")).clone()
}

/// A registry over a fixed set of test providers that records every creation.
struct Fixture {
    providers: HashMap<String, Arc<ScriptedProvider>>,
    created: Arc<Mutex<Vec<(String, Option<String>)>>>,
}

impl Fixture {
    fn new(providers: Vec<Arc<ScriptedProvider>>) -> Self {
        Fixture {
            providers: providers.into_iter().map(|p| (p.name().to_string(), p)).collect(),
            created: Arc::default(),
        }
    }

    fn registry(&self) -> Arc<LazyRegistry> {
        let providers = self.providers.clone();
        let created = self.created.clone();
        Arc::new(LazyRegistry::new(move |name, model| {
            created.lock().unwrap().push((name.to_string(), model.map(str::to_string)));
            match providers.get(name) {
                Some(p) => Ok(p.clone() as Arc<dyn Provider>),
                None => Err(Error::config(name, format!("unknown provider `{name}`"))),
            }
        }))
    }

    fn created(&self) -> Vec<(String, Option<String>)> {
        self.created.lock().unwrap().clone()
    }
}

async fn fallback_chain(config: Value, primary: Arc<ScriptedProvider>, fixture: &Fixture) -> Stack {
    let rt = runtime();
    let module = builtin(&rt, "fallback", config).await;
    Stack::new(rt, vec![module], primary).with_registry(fixture.registry())
}

fn request() -> Request {
    Request::new(vec![Message::user("hello")])
}

#[tokio::test]
async fn primary_succeeds_no_fallback() {
    let primary = ScriptedProvider::ok("anthropic");
    let fixture = Fixture::new(vec![ScriptedProvider::ok("openai")]);
    let chain = fallback_chain(json!({"chain": ["openai"]}), primary.clone(), &fixture).await;
    let response = chain.invoke(request()).await.expect("primary answers");
    assert_eq!(response.content, sample_response("anthropic").content);
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("anthropic"));
    assert!(fixture.created().is_empty(), "the registry is not touched");
}

#[tokio::test]
async fn primary_fails_first_fallback_succeeds() {
    let primary = ScriptedProvider::failing("anthropic", api_error("anthropic", 503));
    let openai = ScriptedProvider::ok("openai");
    let fixture = Fixture::new(vec![openai.clone(), ScriptedProvider::ok("groq")]);
    let chain = fallback_chain(json!({"chain": ["openai", "groq"]}), primary.clone(), &fixture).await;
    let response = chain.invoke(request()).await.expect("fallback answers");
    assert_eq!(response.content, sample_response("openai").content);
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("openai"));
    assert_eq!(openai.calls()[0].request, request(), "the same request goes to the fallback");
    assert_eq!(fixture.created(), vec![("openai".to_string(), None)]);
}

#[tokio::test]
async fn primary_and_first_fail_second_succeeds() {
    let primary = ScriptedProvider::failing("anthropic", api_error("anthropic", 500));
    let openai = ScriptedProvider::failing("openai", error_of(ErrorKind::Timeout, "openai"));
    let groq = ScriptedProvider::ok("groq");
    let fixture = Fixture::new(vec![openai.clone(), groq.clone()]);
    let chain = fallback_chain(json!({"chain": ["openai", "groq"]}), primary.clone(), &fixture).await;
    let response = chain.invoke(request()).await.expect("second fallback answers");
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("groq"));
    assert_eq!((primary.call_count(), openai.call_count(), groq.call_count()), (1, 1, 1));
}

#[tokio::test]
async fn all_fail_returns_the_primary_error() {
    let primary_error = Error { retry_after_ms: Some(3000), ..api_error("anthropic", 429) };
    let primary = ScriptedProvider::failing("anthropic", primary_error.clone());
    let fixture = Fixture::new(vec![
        ScriptedProvider::failing("openai", api_error("openai", 500)),
        ScriptedProvider::failing("groq", error_of(ErrorKind::Connection, "groq")),
    ]);
    let chain = fallback_chain(json!({"chain": ["openai", "groq"]}), primary, &fixture).await;
    assert_eq!(chain.invoke(request()).await, Err(primary_error));
}

#[tokio::test]
async fn empty_chain_passes_the_error_through() {
    let error = api_error("anthropic", 503);
    let primary = ScriptedProvider::failing("anthropic", error.clone());
    let fixture = Fixture::new(vec![]);
    for config in [json!({}), json!({"chain": []})] {
        let chain = fallback_chain(config, primary.clone(), &fixture).await;
        assert_eq!(chain.invoke(request()).await, Err(error.clone()));
    }
    assert!(fixture.created().is_empty());
}

#[tokio::test]
async fn fallback_adapter_is_created_through_the_registry_by_name_and_model() {
    let primary = ScriptedProvider::failing("anthropic", api_error("anthropic", 503));
    let fixture = Fixture::new(vec![ScriptedProvider::ok("openai")]);
    let chain = fallback_chain(json!({"chain": ["openai/gpt-4o-mini"]}), primary, &fixture).await;
    let response = chain.invoke(request()).await.expect("fallback answers");
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("openai/gpt-4o-mini"));
    assert_eq!(fixture.created(), vec![("openai".to_string(), Some("gpt-4o-mini".to_string()))]);
}

#[tokio::test]
async fn fallback_is_created_on_demand_and_cached() {
    let primary = ScriptedProvider::scripted(
        "anthropic",
        vec![
            Ok(sample_response("anthropic")),
            Err(api_error("anthropic", 503)),
            Err(api_error("anthropic", 503)),
        ],
        Ok(sample_response("anthropic")),
    );
    let openai = ScriptedProvider::ok("openai");
    let fixture = Fixture::new(vec![openai.clone()]);
    let chain = fallback_chain(json!({"chain": ["openai"]}), primary, &fixture).await;

    chain.invoke(request()).await.expect("primary answers");
    assert!(fixture.created().is_empty(), "no registry call before a failure");
    chain.invoke(request()).await.expect("fallback answers");
    assert_eq!(fixture.created().len(), 1);
    chain.invoke(request()).await.expect("fallback answers again");
    assert_eq!(fixture.created().len(), 1, "the second failure reuses the cached adapter");
    assert_eq!(openai.call_count(), 2);
}

#[tokio::test]
async fn unknown_fallback_is_a_config_error_and_the_walk_goes_on() {
    let primary = ScriptedProvider::failing("anthropic", api_error("anthropic", 503));
    let fixture = Fixture::new(vec![ScriptedProvider::ok("groq")]);
    let chain = fallback_chain(json!({"chain": ["nosuch", "groq"]}), primary, &fixture).await;
    let response = chain.invoke(request()).await.expect("groq answers after nosuch fails");
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("groq"));
}

#[tokio::test]
async fn logs_each_fallback_step_at_warn() {
    let (logs, _guard) = logs::capture();
    let primary = ScriptedProvider::failing("anthropic", api_error("anthropic", 503));
    let fixture = Fixture::new(vec![ScriptedProvider::failing("openai", api_error("openai", 500))]);
    let chain = fallback_chain(json!({"chain": ["openai"]}), primary, &fixture).await;
    assert!(chain.invoke(request()).await.is_err());
    let text = logs.text();
    assert!(text.lines().any(|l| l.contains("WARN") && l.contains("falling back to openai")), "{text}");
    assert!(text.lines().any(|l| l.contains("ERROR") && l.contains("all 1 fallbacks failed")), "{text}");
}

#[tokio::test]
async fn invalid_chains_are_rejected_at_load() {
    let eleven: Vec<String> = (0..11).map(|i| format!("p{i}")).collect();
    let cases = [
        (json!({"chain": eleven}), "at most 10"),
        (json!({"chain": "openai"}), "chain"),
        (json!({"chain": ["Bad-Name"]}), "Bad-Name"),
        (json!({"chain": ["openai/"]}), "openai/"),
        (json!({"chain": [42]}), "chain"),
        (json!({"chains": ["openai"]}), "chains"),
    ];
    for (config, needle) in cases {
        let err = runtime()
            .load_module("fallback", ModuleSource::Builtin, arcllm::builtin::FALLBACK.to_vec(), &config)
            .await
            .expect_err(&format!("{config} must be rejected"));
        assert!(matches!(err.kind, LoadErrorKind::Config { .. }), "{config}: {err}");
        assert!(err.to_string().contains(needle), "{config}: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_around_fallback_does_not_multiply() {
    // Retry(Fallback(adapter)): the fallback answers, so retry makes exactly one attempt.
    let rt = runtime();
    let primary = ScriptedProvider::failing("anthropic", api_error("anthropic", 503));
    let openai = ScriptedProvider::ok("openai");
    let fixture = Fixture::new(vec![openai.clone()]);
    let retry = builtin(&rt, "retry", json!({})).await;
    let fallback = builtin(&rt, "fallback", json!({"chain": ["openai"]})).await;
    let chain = Stack::new(rt, vec![retry, fallback], primary.clone())
        .with_registry(fixture.registry())
        .with_random(RandomSource::repeating(vec![0]));
    let response = chain.invoke(request()).await.expect("fallback answers");
    assert_eq!(response.metadata_value("arcllm.retry.attempts"), Some("1"));
    assert_eq!(response.metadata_value("arcllm.fallback.provider"), Some("openai"));
    assert_eq!((primary.call_count(), openai.call_count()), (1, 1));

    // When everything fails, retry sees the primary's (retryable) error and walks the
    // whole fallback chain once per attempt.
    let primary = ScriptedProvider::failing("anthropic", api_error("anthropic", 503));
    let openai = ScriptedProvider::failing("openai", api_error("openai", 500));
    let fixture = Fixture::new(vec![openai.clone()]);
    let retry = builtin(&runtime(), "retry", json!({"max_retries": 2})).await;
    let fallback = builtin(&runtime(), "fallback", json!({"chain": ["openai"]})).await;
    let chain = Stack::new(runtime(), vec![retry, fallback], primary.clone())
        .with_registry(fixture.registry())
        .with_random(RandomSource::repeating(vec![0]));
    assert_eq!(chain.invoke(request()).await.unwrap_err().provider, "anthropic");
    assert_eq!((primary.call_count(), openai.call_count()), (3, 3));
}
