//! What a module logs reaches the host's log bounded and tagged: one line per message
//! (control characters escaped, so a module cannot forge a host line), at most 4 KiB of it,
//! at most 256 lines per call, every line naming the module.

use std::sync::Arc;

use arcllm::runtime::{Module, ModuleSource, Runtime, Stack};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::*;
use serde_json::json;

async fn hostile(rt: &Runtime, mode: &str, extra: serde_json::Value) -> Arc<Module> {
    let mut config = json!({ "mode": mode });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    rt.load_module(mode, ModuleSource::Bytes, fixtures::HOSTILE.to_vec(), &config).await.expect("loads")
}

async fn run(mode: &str, extra: serde_json::Value) -> String {
    let rt = Runtime::builder().build().unwrap();
    let (captured, _guard) = logs::capture();
    let module = hostile(&rt, mode, extra).await;
    let chain = Stack::new(rt.clone(), vec![module], ScriptedProvider::ok("anthropic"));
    chain.invoke(Request::new(vec![Message::user("hi")])).await.expect("the call succeeds");
    captured.text()
}

#[tokio::test(flavor = "current_thread")]
async fn a_newline_cannot_forge_a_host_log_line() {
    let text = run("forge-log", json!({})).await;
    let line = text.lines().find(|l| l.contains("innocent")).unwrap_or_else(|| panic!("logged: {text}"));
    assert!(
        line.contains("innocent\\n2026-01-01T00:00:00Z ERROR arcllm: forged host line\\u{1b}[31m"),
        "{line}"
    );
    assert!(line.contains("module=forge-log"), "{line}");
    assert!(!text.lines().any(|l| l.starts_with("2026-01-01")), "a forged line:\n{text}");
    assert!(!text.contains('\x1b'), "a raw escape sequence reached the log");
}

#[tokio::test(flavor = "current_thread")]
async fn a_huge_message_is_cut_to_4_kib_with_a_marker() {
    let text = run("big-log", json!({ "size": 4 << 20 })).await;
    let line = text.lines().find(|l| l.contains("xxxx")).unwrap_or_else(|| panic!("logged: {text}"));
    assert!(line.len() < 4096 + 512, "{} bytes logged", line.len());
    assert!(line.contains("[cut: 4096 of 4194304 bytes shown]"), "{}", &line[line.len() - 200..]);
    assert!(line.contains("module=big-log"));
    assert!(text.len() < 16 << 10, "{} bytes logged in all", text.len());
}

#[tokio::test(flavor = "current_thread")]
async fn a_flood_of_lines_stops_at_256_per_call_with_one_warning() {
    let text = run("log-flood", json!({ "count": 5000 })).await;
    let flood: Vec<&str> = text.lines().filter(|l| l.contains("flood line")).collect();
    assert_eq!(flood.len(), 256, "lines logged");
    assert!(flood.iter().all(|l| l.contains("module=log-flood")));
    let dropped: Vec<&str> =
        text.lines().filter(|l| l.contains("further lines in this call are dropped")).collect();
    assert_eq!(dropped.len(), 1, "{text}");
    assert!(dropped[0].contains("module `log-flood` logged 256 lines"), "{}", dropped[0]);
}

#[tokio::test(flavor = "current_thread")]
async fn the_line_budget_is_per_call_and_configurable() {
    let rt = Runtime::builder().max_log_lines_per_call(3).max_log_line_bytes(8).build().unwrap();
    let (captured, _guard) = logs::capture();
    let module = hostile(&rt, "log-flood", json!({ "count": 10 })).await.with_share_state(true);
    let chain = Stack::new(rt.clone(), vec![module], ScriptedProvider::ok("anthropic"));
    for _ in 0..2 {
        chain.invoke(Request::new(vec![Message::user("hi")])).await.expect("the call succeeds");
    }
    let text = captured.text();
    // "flood line 0" cut to 8 bytes; three per call, in each of the two calls (one store).
    assert_eq!(text.matches("flood li … [cut: 8 of").count(), 6, "{text}");
    assert_eq!(text.matches("further lines in this call are dropped").count(), 2, "{text}");
}
