//! Idle stores kept for reuse, so that a call does not instantiate and configure every
//! layer again.
//!
//! Only stacks whose modules all opted in to sharing state use a pool: by default every
//! call gets fresh instances. A store serves one call at a time. When its call ends cleanly (nothing trapped, no
//! leaked request handle, the caller did not give up mid-call) it goes back to its stack's
//! pool; a store that trapped is dropped with its call. The number of idle instances is
//! bounded across all stacks of a runtime, so a burst of a thousand calls does not leave a
//! thousand warm stores behind, and idle stores never take the pooling allocator's slots
//! that calls in flight need.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::Store;

use super::engine::RuntimeInner;
use super::sandbox::CallState;

/// The runtime-wide allowance of idle instances.
pub(crate) struct IdleBudget {
    left: AtomicUsize,
}

impl IdleBudget {
    pub(crate) fn new(max: usize) -> Self {
        IdleBudget { left: AtomicUsize::new(max) }
    }

    fn take(&self, instances: usize) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(instances))
            .is_ok()
    }

    fn give_back(&self, count: usize) {
        self.left.fetch_add(count, Ordering::AcqRel);
    }
}

/// One stack's idle stores.
pub(crate) struct StorePool {
    runtime: Arc<RuntimeInner>,
    idle: Mutex<Vec<Store<CallState>>>,
}

impl StorePool {
    pub(crate) fn new(runtime: Arc<RuntimeInner>) -> Self {
        StorePool { runtime, idle: Mutex::new(Vec::new()) }
    }

    /// An idle store, if there is one.
    pub(crate) fn take(&self) -> Option<Store<CallState>> {
        let store = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        self.runtime.idle.give_back(store.data().instances.len());
        Some(store)
    }

    /// Keeps `store` for a later call if it is reusable and the runtime's allowance of
    /// idle instances is not spent; drops it otherwise.
    pub(crate) fn put(&self, store: Store<CallState>) {
        if store.data().reusable() && self.runtime.idle.take(store.data().instances.len()) {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(store);
        }
    }
}

impl Drop for StorePool {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(|e| e.into_inner());
        self.runtime.idle.give_back(idle.iter().map(|store| store.data().instances.len()).sum());
    }
}
