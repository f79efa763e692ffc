//! A module built for contract 0.2 (`wit/v0.2`): forwards the request by handle, and tags
//! the answer with `tag-v0-2` = its configuration table, and with the stop reason it was
//! handed (`tag-v0-2.stop`), so a test can see what a 0.2 module sees of a 0.3 answer.

use std::sync::OnceLock;

wit_bindgen::generate!({
    world: "middleware",
    path: "../../../wit/v0.2",
});

use arc::llm::provider as inner;
use arc::llm::types::{Error, RequestHandle, Response, StopReason};

static CONFIG: OnceLock<String> = OnceLock::new();

struct TagV02;

impl exports::arc::llm::provider::Guest for TagV02 {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let mut response = inner::invoke(request)?;
        let stop = match response.stop_reason {
            StopReason::EndTurn => "end-turn",
            StopReason::ToolUse => "tool-use",
            StopReason::MaxTokens => "max-tokens",
            StopReason::StopSequence => "stop-sequence",
            StopReason::ContentFilter => "content-filter",
        };
        response.metadata.push(("tag-v0-2".into(), CONFIG.get().cloned().unwrap_or_default()));
        response.metadata.push(("tag-v0-2.stop".into(), stop.into()));
        Ok(response)
    }
    fn name() -> String {
        inner::name()
    }
    fn model_name() -> String {
        inner::model_name()
    }
    fn validate_config() -> Result<(), Error> {
        inner::validate_config()
    }
}

impl exports::arc::llm::module::Guest for TagV02 {
    fn configure(config: String) -> Result<(), String> {
        let _ = CONFIG.set(config);
        Ok(())
    }
}

export!(TagV02);
