//! The fallback module: when the inner provider fails, tries the providers of its `chain`
//! in order through the host's registry and returns the first success. When every one
//! fails, the primary (inner) error is returned unchanged.
//!
//! Fallback targets are bare adapters the host creates on first use, so a fallback never
//! recurses into another fallback and a retry around it never multiplies.

use std::sync::OnceLock;

use arcllm_module_sdk::config::Config;
use arcllm_module_sdk::{
    export, inner, log, registry, target, Error, Guest, Level, ModuleGuest, RequestHandle, Response,
};

/// At most this many chain entries: a longer chain is a configuration mistake.
const MAX_CHAIN: usize = 10;
const METADATA_KEY: &str = "arcllm.fallback.provider";

static CHAIN: OnceLock<Vec<String>> = OnceLock::new();

fn parse_chain(text: &str) -> Result<Vec<String>, String> {
    let config = Config::parse(text)?;
    config.deny_unknown(&["chain"])?;
    let chain =
        config.list("chain", |v| v.as_str().map(str::to_owned), "provider names")?.unwrap_or_default();
    if chain.len() > MAX_CHAIN {
        return Err(format!("chain has {} entries; at most {MAX_CHAIN} are allowed", chain.len()));
    }
    if let Some(bad) = chain.iter().find(|e| !target::valid(e)) {
        return Err(format!(
            "chain entry `{bad}` is not a valid provider target: expected {}",
            target::EXPECTED
        ));
    }
    Ok(chain)
}

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
        let mut last = &primary;
        let mut failures = Vec::new();
        for target in chain {
            log(Level::Warn, &format!("{}; falling back to {target}", last.summary()));
            match registry::invoke(target, request) {
                Ok(mut response) => {
                    response.add_metadata(METADATA_KEY, target);
                    return Ok(response);
                }
                Err(error) => failures.push(error),
            }
            last = failures.last().unwrap_or(&primary);
        }
        if !chain.is_empty() {
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
