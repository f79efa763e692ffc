//! Hostile fixture: grows its memory until it is stopped.

use arcllm_module_sdk::{export, inner, Error, Guest, ModuleGuest, Request, Response};

struct Hostile;

impl Guest for Hostile {
    fn invoke(request: Request) -> Result<Response, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            if hoard.len() == usize::MAX {
                return inner::invoke(&request);
            }
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
