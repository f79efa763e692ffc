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
//!
//! A pool also keeps a few *ready* stores: instantiated and configured ahead of a call and
//! never used, made on the runtime's background thread after a call took one
//! (`RuntimeBuilder::ready_stores`), so that a call does not pay for instantiation while
//! its caller waits. A ready store is as fresh as one made for the call, so isolation is
//! unchanged: every store still serves one call unless its stack shares state. Ready stores
//! count against the same allowances as idle ones, hold their stack's share of instance
//! slots, and go with the pool when the stack is dropped (a reload).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

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

    fn has_room(&self, instances: usize) -> bool {
        self.lock().instances >= instances
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
    /// Never-used stores, made ahead of calls.
    ready: Mutex<Vec<Store<CallState>>>,
    /// How many idle and ready stores the background thread keeps this pool at.
    ready_target: usize,
    /// A background refill of this pool is under way.
    refilling: AtomicBool,
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
            ready: Mutex::new(Vec::new()),
            ready_target: runtime.inner.ready_stores,
            refilling: AtomicBool::new(false),
        }
    }

    /// Gives an idle store's weight back to every allowance it was taken from.
    fn give_back(&self, instances: usize, memory_bytes: usize) {
        self.runtime.idle.give_back(instances, memory_bytes);
        if let Some(handle) = &self.handle {
            handle.give_back(0, memory_bytes);
        }
    }

    /// A store for a call: an idle one if `reuse` and there is one, else a ready
    /// (never-used) one, if there is one.
    pub(crate) fn take(&self, reuse: bool) -> Option<Store<CallState>> {
        let idle = if reuse { self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() } else { None };
        let store = match idle {
            Some(store) => store,
            None => self.ready.lock().unwrap_or_else(|e| e.into_inner()).pop()?,
        };
        let (instances, memory_bytes) = weight(&store);
        self.give_back(instances, memory_bytes);
        Some(store)
    }

    /// Takes `store`'s weight from every allowance, or gives `store` back when one is spent.
    fn charge(&self, store: Store<CallState>) -> Result<Store<CallState>, Store<CallState>> {
        let (instances, memory_bytes) = weight(&store);
        if memory_bytes > self.store_memory_bytes {
            return Err(store);
        }
        if let Some(handle) = &self.handle {
            if !handle.take(0, memory_bytes) {
                return Err(store);
            }
        }
        if self.runtime.idle.take(instances, memory_bytes) {
            Ok(store)
        } else {
            if let Some(handle) = &self.handle {
                handle.give_back(0, memory_bytes);
            }
            Err(store)
        }
    }

    /// Keeps `store` for a later call if it is reusable, its memory is within the idle
    /// store limit, and the runtime's allowance of idle instances and memory is not spent;
    /// else hands it back, to be dropped.
    pub(crate) fn put(&self, store: Store<CallState>) -> Option<Store<CallState>> {
        if !store.data().reusable() {
            return Some(store);
        }
        match self.charge(store) {
            Ok(store) => self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(store),
            Err(unkept) => return Some(unkept),
        }
        None
    }

    /// Keeps a never-used `store` for a later call, within the same allowances as idle
    /// stores; else hands it back, to be dropped.
    pub(crate) fn put_ready(&self, store: Store<CallState>) -> Option<Store<CallState>> {
        match self.charge(store) {
            Ok(store) => self.ready.lock().unwrap_or_else(|e| e.into_inner()).push(store),
            Err(unkept) => return Some(unkept),
        }
        None
    }

    /// How many never-used stores wait for calls.
    pub(crate) fn ready_len(&self) -> usize {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the pool holds fewer idle and ready stores than it keeps ready, and the
    /// runtime's idle allowance has room for one more store of `instances`.
    pub(crate) fn wants_ready(&self, instances: usize) -> bool {
        let held = self.idle.lock().unwrap_or_else(|e| e.into_inner()).len() + self.ready_len();
        held < self.ready_target && self.runtime.idle.has_room(instances)
    }

    /// Claims the pool's refill for the caller, if it wants ready stores and no refill is
    /// under way; the refill ends when the returned guard is dropped.
    pub(crate) fn start_refill(self: &Arc<Self>, instances: usize) -> Option<Refill> {
        if !self.wants_ready(instances) || self.refilling.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Refill(Arc::downgrade(self)))
    }
}

/// A pool's refill under way (see [`StorePool::start_refill`]); it does not keep the pool.
pub(crate) struct Refill(Weak<StorePool>);

impl Drop for Refill {
    fn drop(&mut self) {
        if let Some(pool) = self.0.upgrade() {
            pool.refilling.store(false, Ordering::Release);
        }
    }
}

impl Drop for StorePool {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|e| e.into_inner()));
        let ready = std::mem::take(self.ready.get_mut().unwrap_or_else(|e| e.into_inner()));
        let weights: Vec<_> = idle.iter().chain(&ready).map(weight).collect();
        for (instances, memory_bytes) in weights {
            self.give_back(instances, memory_bytes);
        }
        idle.into_iter().chain(ready).for_each(super::background::release);
    }
}
