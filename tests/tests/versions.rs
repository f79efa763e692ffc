//! The contract's versions: a module is bound to the version of `arc:llm` it was built for,
//! and one built for a version this host does not speak is refused by name, before it is
//! type-checked.

use std::sync::{Arc, OnceLock};

use arcllm::runtime::wit::{self, Contract, SUPPORTED};
use arcllm::runtime::{LoadError, LoadErrorKind, Module, ModuleSource, Runtime, Stack};
use arcllm::types::{Content, Message, Response, StopReason};
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::json;

fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::builder().build().expect("runtime")).clone()
}

async fn load(name: &str, bytes: &[u8]) -> Result<Arc<Module>, LoadError> {
    runtime().load_module(name, ModuleSource::Bytes, bytes.to_vec(), &json!({})).await
}

#[test]
fn the_host_supports_the_version_its_data_model_comes_from() {
    assert_eq!(wit::latest::VERSION, "0.3.0");
    assert_eq!(wit::latest::WORLD, "arc:llm/middleware@0.3.0");
    assert!(SUPPORTED.iter().any(|contract| contract.version == wit::latest::VERSION));
    for contract in SUPPORTED {
        assert_eq!(Contract::find(contract.version).map(|c| c.version), Some(contract.version));
        assert!(contract.world.ends_with(&format!("@{}", contract.version)), "{}", contract.world);
    }
}

#[test]
fn versions_are_matched_as_semver_allows() {
    let found = |version: &str| Contract::find(version).map(|contract| contract.version);
    assert_eq!(found("0.2.0"), Some("0.2.0"));
    // Patch releases of 0.2 are compatible with it, in both directions.
    assert_eq!(found("0.2.7"), Some("0.2.0"));
    assert_eq!(found("0.2.0+build.5"), Some("0.2.0"));
    // Below 1.0 the minor version is the breaking one.
    assert_eq!(found("0.3.0"), Some("0.3.0"));
    assert_eq!(found("0.3.4"), Some("0.3.0"));
    assert_eq!(found("0.1.0"), None);
    assert_eq!(found("0.4.0"), None);
    assert_eq!(found("1.2.0"), None);
    // Pre-releases match only themselves; a malformed version matches nothing.
    assert_eq!(found("0.2.1-rc.1"), None);
    assert_eq!(found("0.2"), None);
    assert_eq!(found("two"), None);
}

#[tokio::test]
async fn a_module_built_for_0_2_serves_a_call_in_a_stack_with_0_3_modules() {
    let rt = runtime();
    let old = rt
        .load_module("old", ModuleSource::Bytes, fixtures::TAG_V0_2.to_vec(), &json!({"n": 2}))
        .await
        .expect("the 0.2 fixture loads");
    assert_eq!(old.contract_version(), "0.2.0");
    assert!(old.imports().iter().any(|import| import == "arc:llm/provider@0.2.0"), "{old:?}");
    let tag = rt
        .load_module(
            "tag",
            ModuleSource::Bytes,
            fixtures::TAG.to_vec(),
            &json!({"tag": "v0.3", "suffix": "!"}),
        )
        .await
        .expect("the tag fixture loads");
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    for module in [&tag, &passthrough] {
        assert_eq!(module.contract_version(), "0.3.0", "{}", module.name);
        assert!(module.imports().iter().any(|import| import == "arc:llm/provider@0.3.0"), "{module:?}");
    }

    // 0.3 outside and inside the 0.2 layer; the outer 0.3 `tag` rewrites the request, so a
    // request handle a 0.3 layer made passes through the 0.2 one.
    let adapter = ScriptedProvider::ok("anthropic");
    let stack = Stack::new(rt, vec![tag, old, passthrough], adapter.clone());
    let mut request = full_request();
    request.messages.push(Message::user("last"));
    let response = stack.invoke(request.clone()).await.expect("invoke");
    // Everything the data model holds crosses the 0.2 layer both ways unchanged.
    let mut expected = sample_response("anthropic");
    expected.metadata.extend([
        ("tag-v0-2".to_string(), r#"{"n":2}"#.to_string()),
        ("tag-v0-2.stop".to_string(), "tool-use".to_string()),
        ("tag".to_string(), "v0.3".to_string()),
    ]);
    assert_eq!(response, expected);
    request.messages.last_mut().unwrap().content = Content::Text("last!".into());
    assert_eq!(adapter.calls().len(), 1);
    assert_eq!(adapter.calls()[0].request, request);
    assert_eq!(stack.query_name().await.unwrap(), "anthropic");
}

#[tokio::test]
async fn stop_reasons_0_2_lacks_reach_a_0_2_module_as_their_nearest_0_2_reason() {
    let rt = runtime();
    let old =
        rt.load_module("old", ModuleSource::Bytes, fixtures::TAG_V0_2.to_vec(), &json!({})).await.unwrap();
    let tag = rt
        .load_module("tag", ModuleSource::Bytes, fixtures::TAG.to_vec(), &json!({"tag": "t"}))
        .await
        .unwrap();
    let cases = [
        (StopReason::PauseTurn, "end-turn", StopReason::EndTurn),
        (StopReason::Refusal, "content-filter", StopReason::ContentFilter),
        (StopReason::ContextWindowExceeded, "max-tokens", StopReason::MaxTokens),
        (StopReason::StopSequence, "stop-sequence", StopReason::StopSequence),
    ];
    for (reason, seen, lifted) in cases {
        let answer = Response { stop_reason: reason, ..sample_response("anthropic") };
        let adapter = ScriptedProvider::scripted("anthropic", vec![], Ok(answer));
        // Through 0.3 layers only, the reason arrives as the adapter gave it.
        let modern = Stack::new(rt.clone(), vec![tag.clone()], adapter.clone());
        assert_eq!(modern.invoke(full_request()).await.unwrap().stop_reason, reason);
        // A 0.2 layer sees, and hands on, the nearest reason 0.2 has.
        let mixed = Stack::new(rt.clone(), vec![tag.clone(), old.clone()], adapter.clone());
        let response = mixed.invoke(full_request()).await.unwrap();
        assert_eq!(response.metadata_value("tag-v0-2.stop"), Some(seen), "{reason}");
        assert_eq!(response.stop_reason, lifted, "{reason}");
    }
}

/// A module of the 0.1 contract, reduced to its shape: it imports the next layer's
/// `provider` and exports its own (whose `name` answers "v0.1"), at version 0.1.0. Its
/// functions need not match 0.2's: the version is checked before any type is.
const MODULE_0_1: &str = r#"(component
    (import "arc:llm/provider@0.1.0" (instance $inner
        (export "name" (func (result string)))))
    (core module $m
        (memory (export "memory") 1)
        (data (i32.const 16) "v0.1")
        (func (export "name") (result i32)
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 4))
            (i32.const 0)))
    (core instance $i (instantiate $m))
    (alias core export $i "memory" (core memory $memory))
    (func $name (result string) (canon lift (core func $i "name") (memory $memory)))
    (instance $outer (export "name" (func $name)))
    (export "arc:llm/provider@0.1.0" (instance $outer)))"#;

#[tokio::test]
async fn a_module_built_for_0_1_is_refused_naming_its_version_and_the_supported_ones() {
    let bytes = wat::parse_str(MODULE_0_1).expect("valid component text");
    let err = load("old", &bytes).await.expect_err("0.1 is not supported");
    assert!(
        matches!(&err.kind, LoadErrorKind::UnsupportedVersion { version } if version == "0.1.0"),
        "refused for its version, not a type mismatch: {err}"
    );
    assert_eq!(err.module, "old");
    let message = err.to_string();
    assert!(message.contains("module `old`"), "{message}");
    assert!(message.contains("arc:llm@0.1.0"), "{message}");
    assert!(message.contains("arc:llm@0.2.0, 0.3.0"), "{message}");
}

#[tokio::test]
async fn a_compatible_version_passes_the_version_check_and_is_type_checked() {
    // 0.2.9 is compatible with 0.2.0, so the module is type-checked against 0.2's world,
    // which it does not implement (it exports nothing).
    let bytes = wat::parse_str(r#"(component (import "arc:llm/logging@0.2.9" (instance)))"#).unwrap();
    let err = load("later-patch", &bytes).await.unwrap_err();
    assert!(
        matches!(&err.kind, LoadErrorKind::WrongWorld { world, .. } if *world == "arc:llm/middleware@0.2.0"),
        "{err}"
    );
    assert!(err.to_string().contains("arc:llm/provider"), "names the missing export: {err}");
}

#[tokio::test]
async fn a_module_naming_two_versions_is_refused() {
    let bytes = wat::parse_str(
        r#"(component
             (import "arc:llm/logging@0.1.0" (instance))
             (import "arc:llm/registry@0.2.0" (instance)))"#,
    )
    .unwrap();
    let err = load("mixed", &bytes).await.unwrap_err();
    match &err.kind {
        LoadErrorKind::MixedVersions { versions } => assert_eq!(versions, &["0.1.0", "0.2.0"]),
        other => panic!("expected MixedVersions, got {other}"),
    }
}

#[tokio::test]
async fn a_component_without_any_arc_llm_interface_is_told_what_is_supported() {
    let bytes = wat::parse_str(r#"(component (import "wasi:clocks/wall-clock@0.2.0" (instance)))"#).unwrap();
    let err = load("not-a-module", &bytes).await.unwrap_err();
    assert!(matches!(err.kind, LoadErrorKind::WrongWorld { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("any arc:llm interface"), "{message}");
    assert!(message.contains("arc:llm/provider"), "{message}");
    assert!(message.contains("0.2.0, 0.3.0"), "{message}");
}
