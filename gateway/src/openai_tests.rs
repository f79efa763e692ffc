//! The Chat Completions front end, both directions.

use arcllm::stream::{response_events, StreamEvent};
use arcllm::types::{ToolCall, Usage};
use serde_json::json;

use super::*;

fn decode_json(body: Value) -> Result<Decoded, ApiError> {
    decode(body.to_string().as_bytes())
}

#[test]
fn decodes_every_mapped_field() {
    let decoded = decode_json(json!({
        "model": "anthropic/claude-sonnet-4-5",
        "messages": [
            {"role": "developer", "content": "Be terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "look:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
            ]},
            {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"rust\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"wasm\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Rust is a language."},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "WASM too."}]}
        ],
        "tools": [{"type": "function", "function": {"name": "search", "description": "Search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
        "tool_choice": "auto",
        "max_completion_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": "STOP",
        "n": 1,
        "stream": true,
        "stream_options": {"include_usage": true}
    }))
    .unwrap();
    assert_eq!(decoded.model, "anthropic/claude-sonnet-4-5");
    assert!(decoded.stream && decoded.include_usage);
    let r = &decoded.request;
    assert_eq!(r.messages.len(), 4, "the two tool messages are one turn: {:?}", r.messages);
    assert_eq!(r.messages[0], Message::system("Be terse."));
    assert_eq!(
        r.messages[1].content,
        Content::Blocks(vec![
            ContentBlock::Text("look:".into()),
            ContentBlock::Image(Image { media_type: "image/png".into(), data: "iVBORw0KGgo=".into() }),
        ])
    );
    let Content::Blocks(calls) = &r.messages[2].content else { panic!("{:?}", r.messages[2]) };
    assert_eq!(
        calls[0],
        ContentBlock::ToolUse(ToolUse {
            id: "call_1".into(),
            name: "search".into(),
            arguments: r#"{"q":"rust"}"#.into()
        })
    );
    assert_eq!(r.messages[3].role, Role::Tool);
    let Content::Blocks(results) = &r.messages[3].content else { panic!() };
    assert_eq!(
        results[1],
        ContentBlock::ToolResult(ToolResult {
            tool_use_id: "call_2".into(),
            content: "WASM too.".into(),
            is_error: false
        })
    );
    assert_eq!(r.tools[0].name, "search");
    assert_eq!(
        serde_json::from_str::<Value>(&r.tools[0].parameters).unwrap()["properties"]["q"]["type"],
        "string"
    );
    assert_eq!(r.options.max_tokens, Some(64));
    assert_eq!(r.options.temperature, Some(0.5));
    assert_eq!(r.options.stop_sequences, vec!["STOP".to_string()]);
    assert_eq!(
        serde_json::from_str::<Value>(r.options.extra.as_deref().unwrap()).unwrap(),
        json!({"top_p": 0.9})
    );
}

#[test]
fn refuses_what_it_does_not_translate_naming_the_field() {
    for (body, needle) in [
        (json!({"model": "openai", "messages": [], "logit_bias": {"1": 2}}), "`logit_bias`"),
        (json!({"model": "openai", "messages": [], "n": 2}), "`n`"),
        (json!({"model": "openai", "messages": [], "tool_choice": "required"}), "tool_choice"),
        (json!({"messages": []}), "`model`"),
        (json!({"model": "openai"}), "`messages`"),
        (
            json!({"model": "openai", "messages": [{"role": "user", "content": "hi", "name": "bob"}]}),
            "`messages[0].name`",
        ),
        (
            json!({"model": "openai", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "openai", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
            "data URL",
        ),
        (json!({"model": "openai", "messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role"),
        (
            json!({"model": "openai", "messages": [], "stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (json!({"model": "openai", "messages": [], "temperature": "hot"}), "`temperature` must be a number"),
    ] {
        let error = decode_json(body.clone()).expect_err(&body.to_string());
        assert_eq!(error.status(), 400);
        assert!(error.to_string().contains(needle), "{body}: {error}");
    }
    assert!(decode(b"{not json").unwrap_err().to_string().contains("not valid JSON"));
}

#[test]
fn null_fields_count_as_absent() {
    let decoded =
        decode_json(json!({"model": "openai", "messages": [{"role": "user", "content": "hi"}], "user": null, "top_p": null}))
            .unwrap();
    assert_eq!(decoded.request.options.extra, None);
}

fn response() -> Response {
    Response {
        content: Some("Hello".into()),
        tool_calls: vec![ToolCall {
            id: "call_9".into(),
            name: "search".into(),
            arguments: r#"{"q":"x"}"#.into(),
        }],
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            total_tokens: 19,
            cache_read_tokens: Some(3),
            cache_write_tokens: Some(1),
            reasoning_tokens: Some(2),
        },
        model: "claude-x".into(),
        stop_reason: StopReason::ToolUse,
        thinking: Some("hmm".into()),
        metadata: vec![("arcllm.retry.attempts".into(), "2".into())],
    }
}

#[test]
fn encodes_a_response_as_a_chat_completion() {
    let body = encode(&response(), "chatcmpl-1", 7);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "claude-x");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Hello");
    assert_eq!(choice["message"]["reasoning_content"], "hmm");
    assert_eq!(choice["message"]["tool_calls"][0]["function"]["arguments"], r#"{"q":"x"}"#);
    // Anthropic-style counts (input without cache) become OpenAI's prompt tokens with cache.
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2}
        })
    );
}

/// The data of each `data:` frame, as JSON (`[DONE]` as a string).
fn frames(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let data = f.strip_prefix("data: ").expect(f);
            serde_json::from_str(data).unwrap_or_else(|_| json!(data))
        })
        .collect()
}

#[test]
fn streams_chunks_then_usage_then_done() {
    let mut encoder = ChunkEncoder::new("chatcmpl-1".into(), 7, true);
    let text: String = response_events(response()).into_iter().flat_map(|e| encoder.event(e)).collect();
    let chunks = frames(&text);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c == "[DONE]" || c["id"] == "chatcmpl-1"));
    let content: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, "Hello");
    let start = chunks.iter().find(|c| c["choices"][0]["delta"]["tool_calls"][0]["id"] == "call_9").unwrap();
    assert_eq!(start["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "search");
    let n = chunks.len();
    assert_eq!(chunks[n - 3]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[n - 2]["choices"], json!([]));
    assert_eq!(chunks[n - 2]["usage"]["total_tokens"], 19);
    assert_eq!(chunks[n - 1], "[DONE]");
}

#[test]
fn without_include_usage_there_is_no_usage_chunk_and_errors_are_error_objects() {
    let mut encoder = ChunkEncoder::new("c".into(), 7, false);
    let mut text = String::new();
    for event in [
        StreamEvent::MessageStart { model: "m".into() },
        StreamEvent::TextDelta("a".into()),
        StreamEvent::Usage(response().usage),
        StreamEvent::Stop { reason: StopReason::EndTurn, metadata: vec![] },
    ] {
        text.extend(encoder.event(event));
    }
    let chunks = frames(&text);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()), "{chunks:?}");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    let error = encoder.error(&ApiError::Upstream {
        error: arcllm::types::Error::api("openai", 500, "boom"),
        retried: true,
    });
    assert_eq!(frames(&error)[0]["error"]["type"], "server_error");
}
