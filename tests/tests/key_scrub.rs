//! A vendor that echoes the API key inside a successful answer does not deliver it to the
//! modules: the adapter scrubs the key from everything it hands up the stack (content,
//! thinking, tool calls, model, metadata), as it does from error bodies.

use arcllm::runtime::{ModuleSource, Runtime, Stack};
use arcllm::types::*;
use arcllm::Provider;
use arcllm_tests::http::{provider_at, Canned, MockServer, TEST_KEY};
use serde_json::json;

async fn through_echoing_module(format: &str, reply: serde_json::Value) -> Response {
    let server =
        MockServer::start(Canned::json(reply).header("x-request-id", &format!("req-{TEST_KEY}"))).await;
    let adapter = provider_at(format, &server.url, "");
    let rt = Runtime::builder().build().unwrap();
    let config = json!({ "mode": "echo-content" });
    let module = rt
        .load_module("echo", ModuleSource::Bytes, arcllm_tests::fixtures::HOSTILE.to_vec(), &config)
        .await
        .expect("loads");
    let chain = Stack::new(rt, vec![module], adapter);
    let response = chain.invoke(Request::new(vec![Message::user("hi")])).await.expect("the call succeeds");
    assert_eq!(server.requests().len(), 1);
    response
}

fn assert_scrubbed(response: &Response) {
    let seen = response.metadata_value("hostile.seen").expect("the module reports what it saw");
    assert!(!seen.contains(TEST_KEY), "the module saw the key: {seen}");
    assert!(seen.contains("***"), "{seen}");
    let all = format!("{response:?}");
    assert!(!all.contains(TEST_KEY), "the key reached the response: {all}");
}

#[tokio::test]
async fn openai_a_key_echoed_in_a_successful_answer_never_reaches_a_module() {
    let response = through_echoing_module(
        "openai-chat",
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": format!("m-{TEST_KEY}"),
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant",
                "content": format!("your key is {TEST_KEY}, twice: {TEST_KEY}"),
                "tool_calls": [{"id": format!("call-{TEST_KEY}"), "type": "function",
                    "function": {"name": "f", "arguments": format!("{{\"key\":\"{TEST_KEY}\"}}")}}]
            }}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        }),
    )
    .await;
    assert_scrubbed(&response);
    assert_eq!(response.content.as_deref(), Some("your key is ***, twice: ***"));
    assert_eq!(response.tool_calls[0].arguments, "{\"key\":\"***\"}");
    assert_eq!(response.model, "m-***");
    assert_eq!(response.metadata_value("adapter.request_id"), Some("req-***"));
}

#[tokio::test]
async fn anthropic_a_key_echoed_in_text_or_thinking_never_reaches_a_module() {
    let response = through_echoing_module(
        "anthropic-messages",
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "thinking", "thinking": format!("the key {TEST_KEY} is in the header"), "signature": "s"},
                {"type": "text", "text": format!("key: {TEST_KEY}")}
            ],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 2}
        }),
    )
    .await;
    assert_scrubbed(&response);
    assert_eq!(response.thinking.as_deref(), Some("the key *** is in the header"));
}
