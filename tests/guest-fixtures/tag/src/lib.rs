//! A third-party-style module: tags each response with its configured `tag` (and its
//! position, so a test can see the stacking order), and can rewrite the request by
//! appending `suffix` to the last user message. With `count_calls = true` it also reports
//! how many calls this instance has served (`calls`), so a test can see instances reused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use arcllm_module_sdk::config::Config;
use arcllm_module_sdk::{
    export, inner, Content, Error, EventStream, Guest, ModuleGuest, Request, RequestHandle, Response, Role,
};

struct Settings {
    tag: String,
    suffix: Option<String>,
    count_calls: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();
static CALLS: AtomicU64 = AtomicU64::new(0);

struct Tag;

/// A copy of the request with `suffix` appended to the last user message's text.
fn with_suffix(request: &RequestHandle, suffix: &str) -> Request {
    let mut rewritten = request.get();
    if let Some(message) = rewritten.messages.iter_mut().rev().find(|m| m.role == Role::User) {
        if let Content::Text(text) = &mut message.content {
            text.push_str(suffix);
        }
    }
    rewritten
}

impl Guest for Tag {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let settings = SETTINGS.get().expect("configured before use");
        let mut response = match &settings.suffix {
            // Rewriting: read a copy, change it, and forward a new handle.
            Some(suffix) => inner::invoke(&RequestHandle::new(&with_suffix(request, suffix)))?,
            None => inner::invoke(request)?,
        };
        response.add_metadata("tag", &settings.tag);
        if settings.count_calls {
            response.add_metadata("calls", CALLS.fetch_add(1, Ordering::Relaxed) + 1);
        }
        Ok(response)
    }
    /// The stream is spliced with the tag as metadata for its `stop`: its events never
    /// enter this module. (The call counter counts buffered calls only.)
    fn invoke_stream(request: &RequestHandle, first_event_timeout_ms: Option<u64>) -> Result<EventStream, Error> {
        let settings = SETTINGS.get().expect("configured before use");
        let stream = match &settings.suffix {
            Some(suffix) => inner::invoke_stream(&RequestHandle::new(&with_suffix(request, suffix)), first_event_timeout_ms)?,
            None => inner::invoke_stream(request, first_event_timeout_ms)?,
        };
        Ok(EventStream::splice(&[], Some(stream), &[("tag".into(), settings.tag.clone())]))
    }
    arcllm_module_sdk::delegate_to_inner!();
}

impl ModuleGuest for Tag {
    fn configure(config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        config.deny_unknown(&["tag", "suffix", "count_calls"])?;
        let text = |key: &str| {
            config.get(key).map(|v| v.as_str().map(str::to_owned).ok_or(format!("{key} must be a string")))
        };
        let tag = text("tag").ok_or("tag is required")??;
        let suffix = text("suffix").transpose()?;
        let count_calls = match config.get("count_calls") {
            None => false,
            Some(v) => v.as_bool().ok_or("count_calls must be a boolean")?,
        };
        let _ = SETTINGS.set(Settings { tag, suffix, count_calls });
        Ok(())
    }
}

export!(Tag);
