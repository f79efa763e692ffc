//! The host's `arc:llm/state` import as the policies' [`SharedState`]: what a module
//! passes to a policy written against `shared.rs`.

use std::time::Duration;

use crate::arc::llm::state as wit;
use crate::shared::{SharedState, Taken, Unavailable, Window};

/// The host's shared state, in this module's namespace.
pub struct HostState;

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn window(window: Window) -> wit::Window {
    match window {
        Window::Fixed(length) => wit::Window { length_ms: ms(length), kind: wit::WindowKind::Fixed },
        Window::Sliding(length) => wit::Window { length_ms: ms(length), kind: wit::WindowKind::Sliding },
    }
}

/// Either failure stops what needed the answer; an invalid operation is a module's bug,
/// named in the text.
fn failed(error: wit::StateError) -> Unavailable {
    match error {
        wit::StateError::Unavailable(why) => Unavailable(why),
        wit::StateError::Invalid(why) => Unavailable(format!("invalid state operation: {why}")),
    }
}

impl SharedState for HostState {
    fn take(&mut self, key: &str, capacity: f64, refill_per_second: f64, cost: f64) -> Result<Taken, Unavailable> {
        let taken = wit::take(key, capacity, refill_per_second, cost).map_err(failed)?;
        Ok(Taken { granted: taken.granted, wait: Duration::from_millis(taken.wait_ms) })
    }
    fn incr(&mut self, key: &str, over: Window, by: u64) -> Result<u64, Unavailable> {
        wit::incr(key, window(over), by).map_err(failed)
    }
    fn read(&mut self, key: &str, over: Window) -> Result<u64, Unavailable> {
        wit::read(key, window(over)).map_err(failed)
    }
    fn reset(&mut self, key: &str) -> Result<(), Unavailable> {
        wit::delete(wit::Slot::Counter, key).map_err(failed)
    }
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, Unavailable> {
        let stored = wit::get(key).map_err(failed)?;
        Ok(stored.map(|s| (s.value, Duration::from_millis(s.age_ms))))
    }
    fn cas(&mut self, key: &str, expected: Option<&[u8]>, new: Option<&[u8]>, ttl: Duration) -> Result<bool, Unavailable> {
        wit::cas(key, expected, new, ms(ttl)).map_err(failed)
    }
}
