//! Shared state as the modules' policies see it: a plain-Rust trait over the host's
//! `state` operations. The module implements it with the WIT import; the host's tests
//! implement it over the host's in-process backend under a manual clock, so the policies
//! (`rate_limit`, `circuit_breaker`, retry's budget) are tested natively, decisions and
//! state together. This file depends on nothing else in the SDK.
//!
//! Keys are the module's own: the host puts them in the module's namespace.

use std::time::Duration;

/// The backend could not answer and the host is configured to fail closed
/// (`[state] on_error = "closed"`): the module should refuse what needed the answer. With
/// `on_error = "open"` the host answers permissively instead and this never happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

/// The answer to a token-bucket take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Taken {
    /// Whether the tokens were taken.
    pub granted: bool,
    /// When not granted: how long until enough tokens will be there.
    pub wait: Duration,
}

/// How a counter counts over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Within aligned windows of this length; resets at each boundary.
    Fixed(Duration),
    /// Over the last this-long, estimated from two fixed windows.
    Sliding(Duration),
}

/// What a module may do with its shared state.
pub trait SharedState {
    /// Takes `cost` tokens from the bucket `key` (capacity `capacity`, refilled at
    /// `refill_per_second`; created full).
    fn take(
        &mut self,
        key: &str,
        capacity: f64,
        refill_per_second: f64,
        cost: f64,
    ) -> Result<Taken, Unavailable>;
    /// Adds `by` to the counter `key`; its count in `window` after.
    fn incr(&mut self, key: &str, window: Window, by: u64) -> Result<u64, Unavailable>;
    /// The count of the counter `key` in `window`.
    fn read(&mut self, key: &str, window: Window) -> Result<u64, Unavailable>;
    /// Forgets the counter `key`.
    fn reset(&mut self, key: &str) -> Result<(), Unavailable>;
    /// The value `key` and how long ago it was set, if it is set and alive.
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, Unavailable>;
    /// Sets `key` to `new` (`None`: removes it) for `ttl`, if it is `expected` (`None`: if
    /// it is not set). Whether it was set.
    fn cas(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<bool, Unavailable>;
}
