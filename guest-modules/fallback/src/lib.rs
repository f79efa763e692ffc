//! The fallback module: when the inner provider fails, tries the providers of its `chain`
//! in order through the host's registry and returns the first success. When every one
//! fails, the primary (inner) error is returned unchanged.
//!
//! Fallback targets are bare adapters the host creates on first use, so a fallback never
//! recurses into another fallback and a retry around it never multiplies.

mod policy;

use std::sync::OnceLock;

use arcllm_module_sdk::{config, target};
use arcllm_module_sdk::{
    export, inner, log, registry, Error, Guest, Level, ModuleGuest, RequestHandle, Response,
};
use policy::{parse_chain, Walk};

const METADATA_KEY: &str = "arcllm.fallback.provider";

static CHAIN: OnceLock<Vec<String>> = OnceLock::new();

struct Fallback;

impl Guest for Fallback {
    fn invoke(request: &RequestHandle) -> Result<Response, Error> {
        let primary = match inner::invoke(request) {
            Ok(mut response) => {
                response.add_metadata(METADATA_KEY, inner::name());
                return Ok(response);
            }
            Err(error) => error,
        };
        let chain = CHAIN.get().map(Vec::as_slice).unwrap_or_default();
        let walked = policy::walk(
            chain,
            &primary,
            |last: &Error, target| log(Level::Warn, &format!("{}; falling back to {target}", last.summary())),
            |target| registry::invoke(target, request),
        );
        match walked {
            Walk::Answered { target, mut response } => {
                response.add_metadata(METADATA_KEY, &chain[target]);
                Ok(response)
            }
            Walk::Exhausted { failures } => {
                if let Some(last) = failures.last() {
                    log(
                        Level::Error,
                        &format!(
                            "{}; all {} fallbacks failed, returning the primary error",
                            last.summary(),
                            chain.len()
                        ),
                    );
                }
                Err(primary)
            }
        }
    }
    arcllm_module_sdk::delegate_to_inner!();
}

impl ModuleGuest for Fallback {
    fn configure(config: String) -> Result<(), String> {
        let chain = parse_chain(&config)?;
        let _ = CHAIN.set(chain);
        Ok(())
    }
}

export!(Fallback);
