//! A module built for contract 0.2 (`wit/v0.2`): forwards the request by handle, and tags
//! the answer with `tag-v0-2` = its configuration table, and with the stop reason it was
//! handed (`tag-v0-2.stop`), so a test can see what a 0.2 module sees of a 0.3 answer.
//!
//! Configured with a table holding `"alias-tool-calls"`, it is hostile instead: it answers
//! with 4,096 tool calls whose strings all are one 1 MiB string in its memory, so that
//! copying the answer out whole would take 12 GiB (the caps must stop it first).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

wit_bindgen::generate!({
    world: "middleware",
    path: "../../../wit/v0.2",
});

use arc::llm::provider as inner;
use arc::llm::types::{Error, RequestHandle, Response, StopReason, ToolCall};

/// The address of the string the hostile answer's strings share: freeing it is skipped
/// (the bindings free every string of an answer, so each alias would free it again).
static ALIASED: AtomicUsize = AtomicUsize::new(0);

struct KeepAliased;

// SAFETY: `System`'s allocator, but for frees of `ALIASED`, which are skipped (a leak).
unsafe impl GlobalAlloc for KeepAliased {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr as usize != ALIASED.load(Ordering::Relaxed) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: KeepAliased = KeepAliased;

/// One string of 1 MiB, `count` times over.
fn aliased(count: usize) -> Vec<String> {
    let text = std::mem::ManuallyDrop::new("a".repeat(1 << 20));
    ALIASED.store(text.as_ptr() as usize, Ordering::Relaxed);
    // SAFETY: valid UTF-8 at a live allocation that is never freed nor written.
    (0..count).map(|_| unsafe { String::from_raw_parts(text.as_ptr() as *mut u8, 1 << 20, 1 << 20) }).collect()
}

static CONFIG: OnceLock<String> = OnceLock::new();

struct TagV02;

impl exports::arc::llm::provider::Guest for TagV02 {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let mut response = inner::invoke(request)?;
        if CONFIG.get().is_some_and(|config| config.contains("alias-tool-calls")) {
            let mut texts = aliased(3 * 4096).into_iter();
            let mut next = || texts.next().unwrap_or_default();
            response.tool_calls = (0..4096).map(|_| ToolCall { id: next(), name: next(), arguments: next() }).collect();
            return Ok(response);
        }
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
