//! The core: the passthrough module (twins of the seed's BaseModule tests), chains of
//! modules, and hostile modules that must not take the host down.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arcllm::runtime::{LoadError, LoadErrorKind, ModuleSource, Runtime, Stack};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::json;

/// One runtime per test binary, with a small CPU budget so the runaway-loop test is quick.
fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Runtime::builder()
                .cpu_budget(Duration::from_millis(200))
                .memory_limit(32 << 20)
                .build()
                .expect("runtime")
        })
        .clone()
}

async fn passthrough_chain(layers: usize, inner: Arc<dyn Provider>) -> Stack {
    let rt = runtime();
    let module = builtin(&rt, "passthrough", json!({})).await;
    Stack::new(rt, vec![module; layers], inner)
}

#[tokio::test]
async fn passthrough_delegates_invoke() {
    let adapter = ScriptedProvider::ok("anthropic");
    let chain = passthrough_chain(1, adapter.clone()).await;
    let request = Request::new(vec![Message::user("hi")]);
    let response = chain.invoke(request.clone()).await.expect("invoke");
    assert_eq!(response, sample_response("anthropic"));
    let calls = adapter.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].request, request);
}

#[tokio::test]
async fn passthrough_delegates_name_and_model() {
    let chain = passthrough_chain(1, ScriptedProvider::ok("anthropic")).await;
    assert_eq!(chain.query_name().await.unwrap(), "anthropic");
    assert_eq!(chain.query_model_name().await.unwrap(), "anthropic-model");
}

#[tokio::test]
async fn passthrough_delegates_validate_config() {
    let good = passthrough_chain(1, ScriptedProvider::ok("anthropic")).await;
    assert_eq!(good.validate_config().await, Ok(()));
    let bad = passthrough_chain(1, ScriptedProvider::ok("invalid_provider")).await;
    let err = bad.validate_config().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Config);
    assert_eq!(err.provider, "invalid_provider");
}

#[tokio::test]
async fn passthrough_is_a_provider() {
    fn takes_provider(p: Arc<dyn Provider>) -> Arc<dyn Provider> {
        p
    }
    let chain = passthrough_chain(1, ScriptedProvider::ok("openai")).await;
    let provider = takes_provider(Arc::new(chain));
    assert_eq!(provider.name(), "openai");
    assert_eq!(provider.model_name(), "openai-model");
    assert!(provider.invoke(Request::new(vec![Message::user("x")])).await.is_ok());
}

#[tokio::test]
async fn passthrough_passes_errors_unchanged() {
    let error = Error { retry_after_ms: Some(1500), should_retry: Some(true), ..api_error("anthropic", 429) };
    let chain = passthrough_chain(1, ScriptedProvider::failing("anthropic", error.clone())).await;
    assert_eq!(chain.invoke(full_request()).await, Err(error));
}

#[tokio::test]
async fn three_passthroughs_are_transparent_for_every_field() {
    let direct = ScriptedProvider::ok("anthropic");
    let expected = direct.invoke(full_request()).await.expect("direct call");

    let adapter = ScriptedProvider::ok("anthropic");
    let chain = passthrough_chain(3, adapter.clone()).await;
    let response = chain.invoke(full_request()).await.expect("chained call");
    assert_eq!(response, expected);
    // The request arrived at the bottom exactly as sent at the top.
    assert_eq!(adapter.calls()[0].request, full_request());
}

#[tokio::test]
async fn concurrent_invokes_do_not_block_each_other() {
    /// Holds every call until `n` calls are inside at once: only possible if the chain
    /// runs them concurrently.
    struct Barrier(tokio::sync::Barrier);
    #[async_trait::async_trait]
    impl Provider for Barrier {
        async fn invoke(&self, _request: Request) -> Result<Response, Error> {
            self.0.wait().await;
            Ok(sample_response("barrier"))
        }
        fn name(&self) -> &str {
            "barrier"
        }
        fn model_name(&self) -> &str {
            "barrier"
        }
    }
    let n = 16;
    let chain = passthrough_chain(2, Arc::new(Barrier(tokio::sync::Barrier::new(n)))).await;
    let calls = (0..n).map(|_| {
        let chain = chain.clone();
        tokio::spawn(async move { chain.invoke(Request::new(vec![Message::user("x")])).await })
    });
    let results = tokio::time::timeout(Duration::from_secs(30), futures_join(calls.collect()))
        .await
        .expect("no deadlock");
    assert!(results.iter().all(|r| r.is_ok()));
}

async fn futures_join(
    handles: Vec<tokio::task::JoinHandle<Result<Response, Error>>>,
) -> Vec<Result<Response, Error>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

// ---- hostile modules -------------------------------------------------------------------

async fn load(name: &str, bytes: &[u8]) -> Result<Arc<arcllm::runtime::Module>, LoadError> {
    runtime().load_module(name, ModuleSource::Bytes, bytes.to_vec(), &json!({})).await
}

async fn load_hostile(mode: &str) -> Arc<arcllm::runtime::Module> {
    runtime()
        .load_module(mode, ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &json!({ "mode": mode }))
        .await
        .expect("hostile module loads: it misbehaves only when called")
}

/// After a hostile module misbehaves, a healthy chain on the same runtime still answers.
async fn healthy_chain_still_serves() {
    let chain = passthrough_chain(2, ScriptedProvider::ok("anthropic")).await;
    assert_eq!(chain.invoke(full_request()).await, Ok(sample_response("anthropic")));
}

async fn assert_module_error(name: &str, reason: &str) {
    let module = load_hostile(name).await;
    let passthrough = builtin(&runtime(), "passthrough", json!({})).await;
    let adapter = ScriptedProvider::ok("anthropic");
    // The hostile module sits between two healthy ones: the error must name it.
    let chain = Stack::new(runtime(), vec![passthrough.clone(), module, passthrough], adapter.clone());
    let err = chain.invoke(full_request()).await.expect_err("hostile module must fail the call");
    assert_eq!(err.kind, ErrorKind::Module, "{err}");
    assert_eq!(err.provider, name, "{err}");
    assert!(err.message.contains(reason), "expected `{reason}` in: {err}");
    // The same chain (fresh instances per call) fails the same way, cleanly, again.
    assert_eq!(chain.invoke(full_request()).await.unwrap_err().kind, ErrorKind::Module);
    healthy_chain_still_serves().await;
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_cpu_budget() {
    assert_module_error("spin", "CPU budget").await;
}

#[tokio::test]
async fn unreachable_trap_is_a_module_error() {
    assert_module_error("trap", "unreachable").await;
}

#[tokio::test]
async fn memory_growth_past_the_cap_is_a_module_error() {
    assert_module_error("membomb", "memory").await;
}

#[tokio::test]
async fn a_module_reading_files_is_refused_at_load() {
    let err = load("reads-files", fixtures::READS_FILES).await.unwrap_err();
    match &err.kind {
        LoadErrorKind::ForbiddenImport { import } => {
            assert_eq!(err.module, "reads-files");
            assert!(import.starts_with("wasi:filesystem/"), "{err}");
        }
        other => panic!("expected ForbiddenImport, got {other}"),
    }
    healthy_chain_still_serves().await;
}

#[tokio::test]
async fn a_component_importing_sockets_is_refused_at_load() {
    let bytes = wat::parse_str(r#"(component (import "wasi:sockets/tcp@0.2.0" (instance)))"#).unwrap();
    let err = load("sockets", &bytes).await.unwrap_err();
    assert!(
        matches!(&err.kind, LoadErrorKind::ForbiddenImport { import } if import == "wasi:sockets/tcp@0.2.0"),
        "{err}"
    );
    assert!(err.to_string().contains("`sockets`"), "{err}");
    healthy_chain_still_serves().await;
}

#[tokio::test]
async fn a_component_exporting_the_wrong_interface_is_refused_at_load() {
    let bytes = wat::parse_str(
        r#"(component
             (core module $m (func (export "f") (result i32) i32.const 42))
             (core instance $i (instantiate $m))
             (func (export "answer") (result u32) (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let err = load("wrong-world", &bytes).await.unwrap_err();
    assert!(matches!(err.kind, LoadErrorKind::WrongWorld { .. }), "{err}");
    assert!(err.to_string().contains("arc:llm/provider"), "the error names the missing export: {err}");
    healthy_chain_still_serves().await;
}

#[tokio::test]
async fn a_core_module_is_not_a_component() {
    let bytes = wat::parse_str("(module (func (export \"invoke\")))").unwrap();
    let err = load("core", &bytes).await.unwrap_err();
    assert!(matches!(err.kind, LoadErrorKind::NotAComponent), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
}

#[tokio::test]
async fn garbage_is_not_wasm() {
    let err = load("garbage", b"#!/bin/sh\necho not wasm\n").await.unwrap_err();
    assert!(matches!(err.kind, LoadErrorKind::NotWasm), "{err}");
    let err = load("short", b"\0as").await.unwrap_err();
    assert!(matches!(err.kind, LoadErrorKind::NotWasm), "{err}");
}

#[tokio::test]
async fn a_truncated_component_is_a_compile_error() {
    let bytes = &arcllm::builtin::PASSTHROUGH[..arcllm::builtin::PASSTHROUGH.len() / 2];
    let err = load("truncated", bytes).await.unwrap_err();
    assert!(matches!(err.kind, LoadErrorKind::Compile { .. }), "{err}");
}

#[tokio::test]
async fn load_errors_keep_their_causes() {
    use std::error::Error as _;
    // Compilation: the kind, then wasmtime's error, whose text the message also carries.
    let bytes = &arcllm::builtin::PASSTHROUGH[..arcllm::builtin::PASSTHROUGH.len() / 2];
    let err = load("truncated", bytes).await.unwrap_err();
    let kind = err.source().expect("the kind is the source");
    let cause = kind.source().expect("wasmtime's error is the kind's source");
    assert!(err.to_string().contains(&cause.to_string()), "{err} / {cause}");
    // Reading: the io::Error itself.
    let missing = std::env::temp_dir().join("arcllm-no-such-module.wasm");
    let err = runtime().load_module_file("missing", &missing, &json!({})).await.unwrap_err();
    let io = err.source().and_then(|kind| kind.source()).and_then(|e| e.downcast_ref::<std::io::Error>());
    assert_eq!(io.map(std::io::Error::kind), Some(std::io::ErrorKind::NotFound), "{err}");
    assert!(err.to_string().contains("cannot read the file"), "{err}");
}

#[tokio::test]
async fn a_bad_configuration_table_is_refused_at_load() {
    let err = runtime()
        .load_module(
            "passthrough",
            ModuleSource::Builtin,
            arcllm::builtin::PASSTHROUGH.to_vec(),
            &json!({"bogus": 1}),
        )
        .await
        .unwrap_err();
    assert!(matches!(err.kind, LoadErrorKind::Config { .. }), "{err}");
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[tokio::test]
async fn identical_bytes_compile_once() {
    let rt = Runtime::builder().build().unwrap();
    let config = json!({"tag": "x"});
    let load = || rt.load_module("tag", ModuleSource::Bytes, fixtures::TAG.to_vec(), &config);
    let (a, b) = (load().await.unwrap(), load().await.unwrap());
    assert_eq!(a.digest(), b.digest());
    assert_eq!(rt.compiled_components(), 1);
    drop((a, b));
    assert_eq!(rt.compiled_components(), 0, "unused third-party components are freed");
    let retry = builtin(&rt, "retry", json!({})).await;
    drop(retry);
    assert_eq!(rt.compiled_components(), 1, "built-ins stay compiled");
}
