//! Hostile fixture: executes `unreachable` in `invoke`.

use arcllm_module_sdk::{export, inner, Error, Guest, ModuleGuest, Request, Response};

struct Hostile;

impl Guest for Hostile {
    fn invoke(request: Request) -> Result<Response, Error> {
        let _ = request;
        core::arch::wasm32::unreachable()
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

impl ModuleGuest for Hostile {
    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }
}

export!(Hostile);
