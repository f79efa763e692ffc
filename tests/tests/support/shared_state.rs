//! The modules' `SharedState` (guest-modules/sdk/src/shared.rs) over the host's real
//! `StateStore`, for the policies' native tests: an in-process store under a manual clock,
//! or a store whose backend is down (a Redis address nothing listens on), answering as
//! `on_error` says. Included by `#[path]` beside `mod shared`.

use std::time::Duration;

use arcllm::state::{
    Bucket, Clock, ManualClock, OnError, RedisSettings, Slot, StateKey, StateStore, WindowKind,
};

use crate::shared::{SharedState, Taken, Unavailable, Window};

/// One module's view of a store.
pub struct HostState {
    pub store: StateStore,
    pub module: String,
    runtime: tokio::runtime::Runtime,
}

impl HostState {
    /// An in-process store at time 0 of a manual clock, and the clock.
    pub fn memory(module: &str) -> (HostState, ManualClock) {
        let (clock, handle) = Clock::manual();
        (HostState::over(StateStore::memory(clock, 10_000), module), handle)
    }

    /// A store whose backend cannot be reached, answering as `on_error` says.
    pub fn down(module: &str, on_error: OnError) -> HostState {
        let runtime = runtime();
        let store = runtime.block_on(async {
            StateStore::redis(RedisSettings {
                url: "redis://127.0.0.1:1/".into(),
                key_prefix: "test".into(),
                timeout: Duration::from_millis(300),
                connect_timeout: Duration::from_millis(300),
            })
            .expect("a store for an unreachable server is made (it connects lazily)")
        });
        HostState { store: store.with_on_error(on_error), module: module.into(), runtime }
    }

    /// `store` as module `module` sees it.
    pub fn over(store: StateStore, module: &str) -> HostState {
        HostState { store, module: module.into(), runtime: runtime() }
    }

    fn key<'a>(&'a self, slot: Slot, key: &'a str) -> StateKey<'a> {
        StateKey { module: &self.module, slot, key: key.as_bytes() }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

fn host_window(window: Window) -> arcllm::state::Window {
    match window {
        Window::Fixed(length) => arcllm::state::Window { length, kind: WindowKind::Fixed },
        Window::Sliding(length) => arcllm::state::Window { length, kind: WindowKind::Sliding },
    }
}

fn unavailable(error: arcllm::state::StateError) -> Unavailable {
    assert!(error.is_unavailable(), "the policies never send an invalid operation: {error}");
    Unavailable(error.to_string())
}

impl SharedState for HostState {
    fn take(
        &mut self,
        key: &str,
        capacity: f64,
        refill_per_second: f64,
        cost: f64,
    ) -> Result<Taken, Unavailable> {
        let bucket = Bucket { capacity, refill_per_second };
        let taken = self.runtime.block_on(self.store.take(self.key(Slot::Bucket, key), bucket, cost));
        taken.map(|t| Taken { granted: t.granted, wait: t.wait }).map_err(unavailable)
    }
    fn incr(&mut self, key: &str, window: Window, by: u64) -> Result<u64, Unavailable> {
        let window = host_window(window);
        self.runtime.block_on(self.store.incr(self.key(Slot::Counter, key), window, by)).map_err(unavailable)
    }
    fn read(&mut self, key: &str, window: Window) -> Result<u64, Unavailable> {
        let window = host_window(window);
        self.runtime.block_on(self.store.read(self.key(Slot::Counter, key), window)).map_err(unavailable)
    }
    fn reset(&mut self, key: &str) -> Result<(), Unavailable> {
        self.runtime.block_on(self.store.delete(self.key(Slot::Counter, key))).map_err(unavailable)
    }
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, Unavailable> {
        let got = self.runtime.block_on(self.store.get(self.key(Slot::Value, key)));
        got.map(|v| v.map(|s| (s.value, s.age))).map_err(unavailable)
    }
    fn cas(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let swap = self.runtime.block_on(self.store.cas(self.key(Slot::Value, key), expected, new, ttl));
        swap.map(|s| s.swapped).map_err(unavailable)
    }
}
