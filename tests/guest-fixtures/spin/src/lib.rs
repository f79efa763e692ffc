//! Hostile fixture: loops forever in `invoke`.

use arcllm_module_sdk::{export, inner, Error, Guest, ModuleGuest, Request, Response};

struct Hostile;

impl Guest for Hostile {
    fn invoke(request: Request) -> Result<Response, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(request.messages.len() as u64));
        }
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
