//! Idle stores kept for reuse, so that a call does not instantiate and configure every
//! layer again.
//!
//! Only stacks whose modules all opted in to sharing state use a pool: by default every
//! call gets fresh instances. A store serves one call at a time. When its call ends
//! cleanly (nothing trapped, no leaked request handle, the caller did not give up
//! mid-call) it goes back to its stack's pool; a store that trapped is dropped with its call. What idle stores hold is bounded
//! across all stacks of a runtime, in instances and in bytes of linear memory, so a burst
//! of a thousand calls does not leave a thousand warm stores behind, idle stores never take
//! the pooling allocator's slots that calls in flight need, and a module that grew its
//! memory does not keep it resident after its call: a store whose memory is over
//! `HostLimits::idle_store_memory_bytes` is dropped rather than kept. A runtime handle made
//! with `CallLimits::max_idle_memory_bytes` (a model's config.toml `[limits]`) also bounds
//! the idle memory of its own stacks.

use std::sync::{Arc, Mutex};

use wasmtime::Store;

use super::engine::{Runtime, RuntimeInner};
use super::sandbox::CallState;

/// The runtime-wide allowance of idle instances and of their memory.
pub(crate) struct IdleBudget {
    left: Mutex<Allowance>,
}

struct Allowance {
    instances: usize,
    memory_bytes: usize,
}

impl IdleBudget {
    pub(crate) fn new(instances: usize, memory_bytes: usize) -> Self {
        IdleBudget { left: Mutex::new(Allowance { instances, memory_bytes }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Allowance> {
        self.left.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, instances: usize, memory_bytes: usize) -> bool {
        let mut left = self.lock();
        match (left.instances.checked_sub(instances), left.memory_bytes.checked_sub(memory_bytes)) {
            (Some(instances), Some(memory_bytes)) => {
                *left = Allowance { instances, memory_bytes };
                true
            }
            _ => false,
        }
    }

    fn give_back(&self, instances: usize, memory_bytes: usize) {
        let mut left = self.lock();
        left.instances += instances;
        left.memory_bytes += memory_bytes;
    }
}

/// What an idle store holds against the budget: its instances and their memory.
fn weight(store: &Store<CallState>) -> (usize, usize) {
    (store.data().instances.len(), store.data().limits.memory_bytes())
}

/// One stack's idle stores.
pub(crate) struct StorePool {
    runtime: Arc<RuntimeInner>,
    /// The allowance of the runtime handle the stack was made with, if it has its own.
    handle: Option<Arc<IdleBudget>>,
    /// Most memory one idle store may hold.
    store_memory_bytes: usize,
    idle: Mutex<Vec<Store<CallState>>>,
}

impl StorePool {
    pub(crate) fn new(runtime: &Runtime) -> Self {
        let store_memory_bytes = (runtime.call_limits.max_idle_store_memory_bytes)
            .unwrap_or(runtime.inner.host_limits.idle_store_memory_bytes);
        StorePool {
            runtime: runtime.inner.clone(),
            handle: runtime.idle_share.clone(),
            store_memory_bytes,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Gives an idle store's weight back to every allowance it was taken from.
    fn give_back(&self, instances: usize, memory_bytes: usize) {
        self.runtime.idle.give_back(instances, memory_bytes);
        if let Some(handle) = &self.handle {
            handle.give_back(0, memory_bytes);
        }
    }

    /// An idle store, if there is one.
    pub(crate) fn take(&self) -> Option<Store<CallState>> {
        let store = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        let (instances, memory_bytes) = weight(&store);
        self.give_back(instances, memory_bytes);
        Some(store)
    }

    /// Keeps `store` for a later call if it is reusable, its memory is within the idle
    /// store limit, and the runtime's allowance of idle instances and memory is not spent;
    /// drops it otherwise.
    pub(crate) fn put(&self, store: Store<CallState>) {
        let (instances, memory_bytes) = weight(&store);
        if !store.data().reusable() || memory_bytes > self.store_memory_bytes {
            return;
        }
        if let Some(handle) = &self.handle {
            if !handle.take(0, memory_bytes) {
                return;
            }
        }
        if self.runtime.idle.take(instances, memory_bytes) {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(store);
        } else if let Some(handle) = &self.handle {
            handle.give_back(0, memory_bytes);
        }
    }
}

impl Drop for StorePool {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(|e| e.into_inner());
        let weights: Vec<_> = idle.iter().map(weight).collect();
        for (instances, memory_bytes) in weights {
            self.give_back(instances, memory_bytes);
        }
    }
}
