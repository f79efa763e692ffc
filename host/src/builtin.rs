//! The built-in modules, compiled from `guest-modules/` by `build.rs` and embedded here so
//! the `arcllm` binary is self-contained.

/// `guest-modules/passthrough`: delegates everything unchanged.
pub const PASSTHROUGH: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/arcllm_passthrough.wasm"));
/// `guest-modules/retry`: exponential backoff with jitter.
pub const RETRY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/arcllm_retry.wasm"));
/// `guest-modules/fallback`: walks a chain of other providers.
pub const FALLBACK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/arcllm_fallback.wasm"));

/// `guest-modules/rate_limit`: a token bucket per provider, in shared state.
pub const RATE_LIMIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/arcllm_rate_limit.wasm"));
/// `guest-modules/circuit_breaker`: stops calling a failing provider, in shared state.
pub const CIRCUIT_BREAKER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/arcllm_circuit_breaker.wasm"));

/// The built-in module called `name`, if there is one.
pub fn get(name: &str) -> Option<&'static [u8]> {
    match name {
        "passthrough" => Some(PASSTHROUGH),
        "retry" => Some(RETRY),
        "fallback" => Some(FALLBACK),
        "rate_limit" => Some(RATE_LIMIT),
        "circuit_breaker" => Some(CIRCUIT_BREAKER),
        _ => None,
    }
}
