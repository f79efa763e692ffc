//! The transparent module: delegates everything to the inner provider unchanged. It is the
//! smallest complete example of the `arc:llm/middleware` world and the baseline the
//! benchmarks measure a layer's cost with.

use arcllm_module_sdk::{export, inner, Error, EventStream, Guest, ModuleGuest, RequestHandle, Response};

struct Passthrough;

impl Guest for Passthrough {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        inner::invoke(request)
    }
    /// The stream is handed on by handle: its events never enter this module.
    fn invoke_stream(request: &RequestHandle, first_event_timeout_ms: Option<u64>) -> Result<EventStream, Error> {
        inner::invoke_stream(request, first_event_timeout_ms)
    }
    arcllm_module_sdk::delegate_to_inner!();
}

impl ModuleGuest for Passthrough {
    fn configure(config: String) -> Result<(), String> {
        arcllm_module_sdk::config::Config::parse(&config)?.deny_unknown(&[])
    }
}

export!(Passthrough);
