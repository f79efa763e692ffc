//! What the host does on a module's behalf is bounded and attributed: wall-clock deadlines
//! on calls and on a module's start, a cap on provider calls per outer call, a registry
//! that reaches only what the configuration names, `module` errors only the host creates,
//! capped answers, a CPU budget that does not charge waiting, a fair share of instance
//! slots per stack, and module file size and compile time limits. Each test runs the
//! hostile fixture in the mode that used to get past the host.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcllm::runtime::{CallLimits, LazyRegistry, LoadErrorKind, Module, ModuleSource, Runtime, Stack};
use arcllm::target::Target;
use arcllm::types::*;
use arcllm::{load_model, Provider};
use arcllm_tests::*;
use async_trait::async_trait;
use serde_json::{json, Value};

/// A generous bound for anything that must return: far below the hour the fixture sleeps.
const PATIENCE: Duration = Duration::from_secs(30);

fn runtime(limits: CallLimits) -> Runtime {
    Runtime::builder().call_limits(limits).build().expect("runtime")
}

async fn hostile(rt: &Runtime, name: &str, config: Value) -> Arc<Module> {
    rt.load_module(name, ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config)
        .await
        .unwrap_or_else(|e| panic!("hostile {name} loads: {e}"))
}

fn request() -> Request {
    Request::new(vec![Message::user("hi")])
}

/// Runs `future`, failing the test if it does not return within [`PATIENCE`].
async fn returns<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future).await.expect("returned within the test's patience")
}

// ---- 1. wall-clock deadlines ------------------------------------------------------------

#[tokio::test]
async fn a_module_that_sleeps_in_a_call_times_out_naming_it() {
    let rt = runtime(CallLimits { call_timeout: Duration::from_millis(500), ..CallLimits::default() });
    let sleepy = hostile(&rt, "sleepy", json!({"mode": "sleep"})).await;
    let inner = ScriptedProvider::ok("anthropic");
    let stack = Stack::new(rt.clone(), vec![sleepy], inner.clone());
    let started = Instant::now();
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Timeout, "sleepy"), "{error:?}");
    assert!(error.message.contains("did not finish the call within 0.5 s"), "{}", error.message);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(inner.call_count(), 0);
}

#[tokio::test]
async fn a_timeout_names_the_inner_module_that_was_sleeping() {
    let rt = runtime(CallLimits { call_timeout: Duration::from_millis(500), ..CallLimits::default() });
    let outer = builtin(&rt, "passthrough", json!({})).await;
    let sleepy = hostile(&rt, "sleepy", json!({"mode": "sleep"})).await;
    let stack = Stack::new(rt.clone(), vec![outer, sleepy], ScriptedProvider::ok("anthropic"));
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Timeout, "sleepy"), "{error:?}");
}

#[tokio::test]
async fn a_module_that_sleeps_in_configure_fails_its_load() {
    let rt = runtime(CallLimits { configure_timeout: Duration::from_millis(500), ..CallLimits::default() });
    let config = json!({"mode": "sleep-configure"});
    let load = rt.load_module("drowsy", ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config);
    let error = returns(load).await.unwrap_err();
    assert_eq!(error.module, "drowsy");
    assert!(matches!(error.kind, LoadErrorKind::Start { .. }), "{error}");
    assert!(error.to_string().contains("did not start (instantiate and configure) within 0.5 s"), "{error}");
}

const HOSTILE_FILE: &str = "hostile.wasm";

fn model_config(mode: &str, limits: &str) -> String {
    format!(
        "[defaults]\nprovider = \"ollama\"\n\n[limits]\n{limits}\n\n[stack]\norder = [\"h\"]\n\n[modules.h]\nenabled = true\nwasm = \"{HOSTILE_FILE}\"\nmode = \"{mode}\"\n"
    )
}

#[tokio::test]
async fn a_stuck_reload_returns_and_holds_back_no_other_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(HOSTILE_FILE), fixtures::HOSTILE).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, model_config("none", "")).unwrap();
    let model = Arc::new(
        load_model("ollama")
            .config_file(&config)
            .runtime(Runtime::builder().build().unwrap())
            .build()
            .await
            .expect("builds"),
    );

    // A reload whose module sleeps in `configure` for an hour: bounded by the config's
    // own limit.
    std::fs::write(&config, model_config("sleep-configure", "configure_timeout_seconds = 2")).unwrap();
    let stuck = tokio::spawn({
        let model = model.clone();
        async move { model.reload().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stuck.is_finished(), "the stuck reload is still starting its module");

    // Meanwhile the file is fixed: a second reload does not wait behind the first.
    std::fs::write(&config, model_config("none", "")).unwrap();
    let started = Instant::now();
    returns(model.reload()).await.expect("the second reload succeeds");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    assert_eq!(model.version(), 2);
    assert!(!stuck.is_finished(), "the second reload did not wait for the first");

    let error = returns(stuck).await.unwrap().unwrap_err().to_string();
    assert!(error.contains("did not start (instantiate and configure) within 2 s"), "{error}");
    assert_eq!(model.version(), 2, "the failed reload published nothing");
}

// ---- 9. provider calls per outer call ---------------------------------------------------

#[tokio::test]
async fn a_call_storm_stops_at_the_call_cap() {
    let rt = runtime(CallLimits::default());
    let storm = hostile(&rt, "storm", json!({"mode": "call-storm", "count": 10000})).await;
    let inner = ScriptedProvider::ok("anthropic");
    let stack = Stack::new(rt.clone(), vec![storm], inner.clone());
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "storm"), "{error:?}");
    assert!(error.message.contains("more than 32 provider calls"), "{}", error.message);
    assert_eq!(inner.call_count(), 32);

    // The allowance is per outer call: the next call gets a whole one.
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!(error.provider, "storm");
    assert_eq!(inner.call_count(), 64);
}

#[tokio::test]
async fn the_call_cap_blames_the_outer_module_that_storms_through_an_inner_one() {
    let rt = runtime(CallLimits { max_calls_per_invoke: 10, ..CallLimits::default() });
    let storm = hostile(&rt, "storm", json!({"mode": "call-storm", "count": 10000})).await;
    let inner_layer = builtin(&rt, "passthrough", json!({})).await;
    let inner = ScriptedProvider::ok("anthropic");
    let stack = Stack::new(rt.clone(), vec![storm, inner_layer], inner.clone());
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "storm"), "{error:?}");
    assert_eq!(inner.call_count(), 5, "each storm call costs two: its own and passthrough's");
}

// ---- 8. reach ---------------------------------------------------------------------------

/// A registry that answers any target and records which it was asked to create.
fn recording_registry() -> (Arc<LazyRegistry>, Arc<Mutex<Vec<String>>>) {
    let created = Arc::new(Mutex::new(Vec::new()));
    let seen = created.clone();
    let registry = LazyRegistry::new(move |name, model| {
        seen.lock().unwrap().push(format!("{name}/{}", model.unwrap_or("-")));
        Ok(ScriptedProvider::ok(name) as Arc<dyn Provider>)
    });
    (Arc::new(registry), created)
}

#[tokio::test]
async fn a_module_reaches_no_provider_its_configuration_does_not_name() {
    let rt = runtime(CallLimits::default());
    let reacher = hostile(&rt, "reacher", json!({"mode": "reach", "target": "ollama"})).await;
    let (registry, created) = recording_registry();
    let stack = Stack::new(rt.clone(), vec![reacher.clone()], ScriptedProvider::ok("anthropic"))
        .with_registry(registry);
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Config, "reacher"), "{error:?}");
    assert!(error.message.contains("may not call provider `ollama`"), "{}", error.message);
    assert!(created.lock().unwrap().is_empty(), "the host created no provider for it");

    // Named in its reach, the same target is served.
    let allowed = reacher.with_reach(vec![Target::parse("ollama").unwrap()]);
    let (registry, created) = recording_registry();
    let stack =
        Stack::new(rt.clone(), vec![allowed], ScriptedProvider::ok("anthropic")).with_registry(registry);
    let response = returns(stack.invoke(request())).await.expect("reach allows it");
    assert_eq!(response.model, "ollama-model");
    assert_eq!(*created.lock().unwrap(), ["ollama/-"]);
}

#[tokio::test]
async fn the_builtin_fallback_reaches_exactly_its_chain() {
    let rt = runtime(CallLimits::default());
    let fallback = builtin(&rt, "fallback", json!({"chain": ["openai", "groq/llama"]})).await;
    let reach: Vec<String> = fallback.reach().iter().map(ToString::to_string).collect();
    assert_eq!(reach, ["openai", "groq/llama"]);
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    assert!(passthrough.reach().is_empty());
}

#[tokio::test]
async fn config_reach_lets_a_third_party_module_call_what_it_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(HOSTILE_FILE), fixtures::HOSTILE).unwrap();
    let config = dir.path().join("config.toml");
    let text = |reach: &str| {
        format!(
            "[defaults]\nprovider = \"ollama\"\n\n[stack]\norder = [\"h\"]\n\n[modules.h]\nenabled = true\nwasm = \"{HOSTILE_FILE}\"\nmode = \"reach\"\ntarget = \"openai/gpt-4o\"\n{reach}\n"
        )
    };
    std::fs::write(&config, text("reach = [\"groq\", \"openai/gpt-4o\"]")).unwrap();
    let model = load_model("ollama").config_file(&config).build().await.expect("builds");
    let reach: Vec<String> = model.snapshot().modules()[0].reach().iter().map(ToString::to_string).collect();
    assert_eq!(reach, ["groq", "openai/gpt-4o"]);
    assert!(
        !model.snapshot().modules()[0].config.contains("\"reach\":"),
        "reach is the host's key, not the module's"
    );

    std::fs::write(&config, text("")).unwrap();
    let model = load_model("ollama").config_file(&config).build().await.expect("builds");
    let error =
        returns(model.invoke(vec![Message::user("hi")], vec![], Options::default())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Config, "h"), "{error:?}");

    std::fs::write(&config, text("reach = [\"Not A Target\"]")).unwrap();
    let error = load_model("ollama").config_file(&config).build().await.err().expect("refused");
    assert!(error.to_string().contains("modules.h.reach"), "{error}");
}

// ---- 12. only the host creates `module` errors -------------------------------------------

#[tokio::test]
async fn a_module_cannot_blame_another_module() {
    let rt = runtime(CallLimits::default());
    let forger = hostile(&rt, "forger", json!({"mode": "forge-module-error", "target": "retry"})).await;
    let stack = Stack::new(rt.clone(), vec![forger.clone()], ScriptedProvider::ok("anthropic"));
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "forger"), "{error:?}");
    assert!(
        error.message.contains("module `forger` returned an error of kind module naming `retry`"),
        "{}",
        error.message
    );

    // Inner: rewritten where it leaves the forger, and passed on unchanged by the outer layer.
    let outer = builtin(&rt, "passthrough", json!({})).await;
    let stack = Stack::new(rt.clone(), vec![outer, forger], ScriptedProvider::ok("anthropic"));
    let inner_error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!(inner_error, error);
}

#[tokio::test]
async fn a_host_module_error_passed_on_by_a_module_is_kept() {
    // A stack as the inner provider of another: its module errors are the host's.
    let rt = runtime(CallLimits::default());
    let forger = hostile(&rt, "forger", json!({"mode": "forge-module-error", "target": "retry"})).await;
    let nested = Stack::new(rt.clone(), vec![forger], ScriptedProvider::ok("anthropic"));
    let outer = builtin(&rt, "passthrough", json!({})).await;
    let stack = Stack::new(rt.clone(), vec![outer], Arc::new(nested));
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "forger"), "{error:?}");
}

// ---- 7. capped answers ------------------------------------------------------------------

#[tokio::test]
async fn an_oversized_answer_is_refused_and_blamed_on_the_module_that_made_it() {
    let rt = runtime(CallLimits::default());
    let big = hostile(&rt, "big", json!({"mode": "big-response", "size": 17 << 20, "count": 0})).await;
    let stack = Stack::new(rt.clone(), vec![big.clone()], ScriptedProvider::ok("anthropic"));
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "big"), "{error:?}");
    assert!(error.message.contains("over the limit"), "{}", error.message);

    let outer = builtin(&rt, "passthrough", json!({})).await;
    let stack = Stack::new(rt.clone(), vec![outer.clone(), big], ScriptedProvider::ok("anthropic"));
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "big"), "{error:?}");

    let chatty = hostile(&rt, "chatty", json!({"mode": "big-response", "size": 10, "count": 2000})).await;
    let stack = Stack::new(rt.clone(), vec![outer, chatty], ScriptedProvider::ok("anthropic"));
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!(error.provider, "chatty", "{error:?}");
    assert!(error.message.contains("metadata entries"), "{}", error.message);
}

#[tokio::test]
async fn an_answer_within_the_caps_passes() {
    let rt = runtime(CallLimits::default());
    let big = hostile(&rt, "big", json!({"mode": "big-response", "size": 1 << 20, "count": 100})).await;
    let stack = Stack::new(rt.clone(), vec![big], ScriptedProvider::ok("anthropic"));
    let response = returns(stack.invoke(request())).await.expect("within the caps");
    assert_eq!(response.content.map(|c| c.len()), Some(1 << 20));
}

// ---- 3. the CPU budget does not charge waiting ------------------------------------------

/// Answers after `delay` of wall-clock time.
struct Slow {
    delay: Duration,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Provider for Slow {
    async fn invoke(&self, _request: Request) -> Result<Response, Error> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(self.delay).await;
        Ok(sample_response("slow"))
    }
    fn name(&self) -> &str {
        "slow"
    }
    fn model_name(&self) -> &str {
        "slow-model"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_a_slow_provider_costs_no_cpu_budget() {
    let limits = CallLimits { max_calls_per_invoke: 1000, ..CallLimits::default() };
    let rt = Runtime::builder().cpu_budget(Duration::from_millis(100)).call_limits(limits).build().unwrap();
    let patient = hostile(&rt, "patient", json!({"mode": "slow-inner", "count": 400})).await;
    let slow = Arc::new(Slow { delay: Duration::from_millis(6), calls: Default::default() });
    let stack = Stack::new(rt.clone(), vec![patient], slow.clone());
    returns(stack.invoke(request())).await.expect("400 waits of 6 ms fit a 100 ms CPU budget");
    assert_eq!(slow.calls.load(std::sync::atomic::Ordering::Relaxed), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_in_backoffs_costs_no_cpu_budget() {
    // 30 backoffs of 6 ms each against a 20 ms CPU budget (4 ticks): each sleep in WASI
    // used to cost a tick when the module woke up.
    let rt = Runtime::builder().cpu_budget(Duration::from_millis(20)).build().unwrap();
    let config = json!({"max_retries": 30, "backoff_base_seconds": 0.006, "max_wait_seconds": 0.006});
    let retry = builtin(&rt, "retry", config).await;
    let failing = ScriptedProvider::failing("anthropic", api_error("anthropic", 503));
    let stack = Stack::new(rt.clone(), vec![retry], failing.clone())
        .with_random(arcllm::runtime::RandomSource::repeating(vec![0]));
    let error = returns(stack.invoke(request())).await.unwrap_err();
    assert_eq!((error.kind, error.status), (ErrorKind::Api, Some(503)), "{error:?}");
    assert_eq!(failing.call_count(), 31);
}

// ---- 2. a fair share of instance slots --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_stuck_on_every_call_leaves_slots_for_another() {
    let rt = Runtime::builder().max_instances(8).build().unwrap();
    let sleepy = hostile(&rt, "sleepy", json!({"mode": "sleep"})).await;
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    let stuck = Stack::new(rt.clone(), vec![sleepy], ScriptedProvider::ok("anthropic"));
    let stuck_calls: Vec<_> = (0..16)
        .map(|_| {
            let stuck = stuck.clone();
            tokio::spawn(async move { stuck.invoke(request()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let healthy = Stack::new(rt.clone(), vec![passthrough], ScriptedProvider::ok("anthropic"));
    let answer = tokio::time::timeout(Duration::from_secs(10), healthy.invoke(request())).await;
    assert!(matches!(answer, Ok(Ok(_))), "the second stack still gets slots: {answer:?}");
    for call in &stuck_calls {
        assert!(!call.is_finished(), "the stuck calls are still sleeping");
        call.abort();
    }
}

// ---- 14. module file size and compile time -----------------------------------------------

#[tokio::test]
async fn a_module_file_over_the_size_limit_is_refused_before_compiling() {
    let rt = runtime(CallLimits { max_module_bytes: 1000, ..CallLimits::default() });
    let error = rt
        .load_module("huge", ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(error.kind, LoadErrorKind::TooBig { max: 1000, .. }), "{error}");
    assert!(error.to_string().contains("limits.max_module_bytes"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.wasm");
    std::fs::write(&path, fixtures::HOSTILE).unwrap();
    let error = rt.load_module_file("huge", &path, &json!({})).await.unwrap_err();
    assert!(matches!(error.kind, LoadErrorKind::TooBig { .. }), "{error}");
    assert_eq!(rt.compiled_components(), 0, "nothing was compiled");
}

#[tokio::test]
async fn a_compile_over_the_time_limit_returns() {
    // No disk cache: the other tests here load the same file, and a compiled copy found on
    // disk would load without compiling at all.
    let limits = CallLimits { compile_timeout: Duration::from_nanos(1), ..CallLimits::default() };
    let rt = Runtime::builder().call_limits(limits).disk_cache(None).build().expect("runtime");
    let config = json!({});
    let load = rt.load_module("slow", ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config);
    let error = returns(load).await.unwrap_err();
    assert!(matches!(error.kind, LoadErrorKind::CompileTimeout { .. }), "{error}");
    assert!(error.to_string().contains("limits.compile_timeout_seconds"), "{error}");
}
