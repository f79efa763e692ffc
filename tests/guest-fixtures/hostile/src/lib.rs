//! A hostile module: misbehaves in `invoke` as its `mode` says.
//! - `spin`: loops forever (the CPU budget must stop it);
//! - `trap`: executes `unreachable`;
//! - `membomb`: grows its memory until it is stopped (the memory cap must stop it);
//! - `trap-second`: serves its first call, traps on the second (a reused instance that
//!   trapped must not be used again);
//! - `leak-handle`: makes a request handle and never drops it (a store holding it must
//!   not be reused).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use arcllm_module_sdk::config::Config;
use arcllm_module_sdk::{export, inner, Error, Guest, ModuleGuest, RequestHandle, Response};

static MODE: OnceLock<String> = OnceLock::new();
static CALLS: AtomicU64 = AtomicU64::new(0);

struct Hostile;

impl Guest for Hostile {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let call = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        match MODE.get().map(String::as_str) {
            Some("spin") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
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
            Some("trap-second") if call == 2 => core::arch::wasm32::unreachable(),
            Some("leak-handle") => {
                std::mem::forget(RequestHandle::new(&request.get()));
                inner::invoke(request)
            }
            _ => inner::invoke(request),
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
