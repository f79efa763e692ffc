//! A hostile module: misbehaves in `invoke` as its `mode` says.
//! - `spin`: loops forever (the CPU budget must stop it);
//! - `trap`: executes `unreachable`;
//! - `membomb`: grows its memory until it is stopped (the memory cap must stop it).

use std::sync::OnceLock;

use arcllm_module_sdk::config::Config;
use arcllm_module_sdk::{export, inner, Error, Guest, ModuleGuest, Request, Response};

static MODE: OnceLock<String> = OnceLock::new();

struct Hostile;

impl Guest for Hostile {
    fn invoke(request: Request) -> Result<Response, Error> {
        match MODE.get().map(String::as_str) {
            Some("spin") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(request.messages.len() as u64));
                }
            }
            Some("trap") => core::arch::wasm32::unreachable(),
            Some("membomb") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => inner::invoke(&request),
        }
    }
    arcllm_module_sdk::delegate_to_inner!();
}

impl ModuleGuest for Hostile {
    fn configure(config: String) -> Result<(), String> {
        let config = Config::parse(&config)?;
        config.deny_unknown(&["mode"])?;
        let mode = config.get("mode").and_then(|v| v.as_str()).unwrap_or("none").to_string();
        let _ = MODE.set(mode);
        Ok(())
    }
}

export!(Hostile);
