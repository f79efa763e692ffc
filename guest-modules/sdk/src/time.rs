//! Sleeping and reading time through WASI clocks, which the host controls (in tests it
//! runs them on a paused, auto-advancing clock so backoffs are exact and instant).

use std::time::Duration;
use wasip2::clocks::monotonic_clock;

/// Monotonic now, in nanoseconds since an arbitrary start.
pub fn now_ns() -> u64 {
    monotonic_clock::now()
}

/// Blocks this module (not the host) for `duration`.
pub fn sleep(duration: Duration) {
    let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    if ns > 0 {
        monotonic_clock::subscribe_duration(ns).block();
    }
}

/// A uniform sample from `[0, 1)`, from the host's random source.
pub fn random_unit() -> f64 {
    // 53 random bits make every representable f64 in [0, 1) equally spaced.
    (wasip2::random::random::get_random_u64() >> 11) as f64 / (1u64 << 53) as f64
}
