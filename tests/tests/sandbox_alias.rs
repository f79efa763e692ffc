//! A request a module builds by hand, whose many messages all point at one string in its
//! memory: copying it out would take far more than the module's memory cap. The host
//! charges each string to the call's bound before copying it, so the module is stopped
//! with the host's memory barely touched. Alone in its binary, so that the process's peak
//! resident size is this test's.

use arcllm::runtime::{ModuleSource, Runtime, Stack};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::json;

/// The process's peak resident size, in bytes (`VmHWM`).
fn peak_resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test]
async fn aliased_strings_are_charged_before_they_are_copied() {
    // 2,000 messages aliasing one 4 MiB string: 8 GB copied out, eagerly.
    let rt = Runtime::builder().max_request_bytes_per_call(64 << 20).build().unwrap();
    let config = json!({"mode": "alias-handle", "size": 4 << 20, "count": 2000});
    let module = rt
        .load_module("alias", ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config)
        .await
        .expect("loads");
    let stack = Stack::new(rt.clone(), vec![module], ScriptedProvider::ok("anthropic"));
    let before = peak_resident();
    let error = stack.invoke(Request::new(vec![Message::user("hi")])).await.expect_err("stopped");
    let grown = peak_resident().saturating_sub(before);
    assert_eq!((error.kind, error.provider.as_str()), (ErrorKind::Module, "alias"), "{error}");
    assert!(error.message.contains("more than 67108864 bytes of requests"), "{error}");
    // The bound (64 MiB) plus the module's own memory and slack; not gigabytes.
    assert!(grown < 200 << 20, "the host's peak grew by {} MiB", grown >> 20);

    // Within the bound the same request is made and the call goes through.
    let config = json!({"mode": "alias-handle", "size": 1024, "count": 100});
    let module = rt
        .load_module("alias", ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config)
        .await
        .expect("loads");
    let stack = Stack::new(rt.clone(), vec![module], ScriptedProvider::ok("anthropic"));
    stack.invoke(Request::new(vec![Message::user("hi")])).await.expect("within the bound");
}
