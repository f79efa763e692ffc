//! A runtime without the pooling allocator (`RuntimeBuilder::pooling(false)`: every
//! instance maps its own memory): modules run as they do pooled, and the limits set on the
//! builder still hold.

use std::time::Duration;

use arcllm::runtime::{Runtime, Stack};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::json;

#[tokio::test]
async fn without_pooling_modules_run_and_a_memory_hog_is_still_stopped() {
    let rt = Runtime::builder()
        .pooling(false)
        .memory_limit(16 << 20)
        .wasm_stack_limit(256 << 10)
        .epoch_tick(Duration::from_millis(2))
        .max_idle_store_memory(1 << 20)
        .build()
        .expect("an on-demand runtime");
    let passthrough = builtin(&rt, "passthrough", json!({})).await;
    let adapter = ScriptedProvider::ok("anthropic");
    let stack = Stack::new(rt.clone(), vec![passthrough.clone(), passthrough], adapter.clone());
    let request = Request::new(vec![Message::user("hi")]);
    for _ in 0..3 {
        assert_eq!(stack.invoke(request.clone()).await.expect("invoke"), sample_response("anthropic"));
    }
    assert_eq!(adapter.call_count(), 3);

    // The memory limit applies to on-demand instances too: the module fails, not the host.
    let hog = rt
        .load_module(
            "hog",
            arcllm::runtime::ModuleSource::Bytes,
            fixtures::HOSTILE.to_vec(),
            &json!({"mode": "membomb"}),
        )
        .await
        .expect("the hostile fixture loads");
    let stack = Stack::new(rt, vec![hog], ScriptedProvider::ok("anthropic"));
    let error = stack.invoke(request).await.expect_err("the memory bomb must fail");
    assert_eq!(error.kind, ErrorKind::Module, "{error}");
    assert!(error.to_string().contains("memory"), "{error}");
}
