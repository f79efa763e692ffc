//! A stack: modules around an inner provider, outermost first.

mod stores;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use wasmtime::component::Resource;
use wasmtime::Store;

use super::engine::Runtime;
use super::limits::{self, CallLimits};
use super::module::Module;
use super::pool::StorePool;
use super::registry::{EmptyRegistry, Registry};
use super::resume;
use super::sandbox::{CallState, RandomSource};
use super::streams;
use super::wit::Middleware;
use crate::provider::Provider;
use crate::state::StateStore;
use crate::stream::EventStream;
use crate::types::{Error, Request, Response};

/// Modules stacked around an inner provider: `modules[0]` wraps `modules[1]` … wraps
/// `inner`. A stack is itself a [`Provider`]. It is immutable and cheap to clone (clones
/// share idle stores). Each call runs in a store of its own, with one instance of every
/// layer: calls run concurrently, and a module that traps takes down only the call it
/// trapped in. By default every call gets fresh instances, so no module state outlives a
/// call. When every module opts in ([`Module::with_share_state`]), a store whose call ended
/// cleanly is kept for a later call
/// ([`RuntimeBuilder::max_idle_instances`](super::RuntimeBuilder::max_idle_instances)).
#[derive(Clone)]
pub struct Stack(Arc<Parts>);

/// What a stack is made of, behind one `Arc`: a clone of the stack is one count, and a
/// queued refill holds a `Weak` to it, so that it keeps no replaced stack (its adapter's
/// connections, its pool's stores, its compiled modules) alive.
#[derive(Clone)]
struct Parts {
    runtime: Runtime,
    modules: Arc<[Arc<Module>]>,
    inner: Arc<dyn Provider>,
    registry: Arc<dyn Registry>,
    state: StateStore,
    random: RandomSource,
    pool: Arc<StorePool>,
    // Sandbox bounds: time and call limits, and this stack's share of instance slots.
    limits: Arc<CallLimits>,
    share: Arc<Semaphore>,
    /// Every module opted in to sharing state: stores are kept and reused across calls.
    share_state: bool,
}

impl Stack {
    /// Stacks `modules` (outermost first) around `inner`.
    pub fn new(runtime: Runtime, modules: Vec<Arc<Module>>, inner: Arc<dyn Provider>) -> Self {
        let pool = Arc::new(StorePool::new(&runtime));
        let limits = runtime.call_limits.clone();
        let max = runtime.inner.max_instances();
        let share = limits.max_instances_per_stack.unwrap_or(max / 2).min(max).max(modules.len());
        let share_state = !modules.is_empty() && modules.iter().all(|m| m.share_state);
        Stack(Arc::new(Parts {
            runtime,
            share_state,
            modules: modules.into(),
            inner,
            registry: Arc::new(EmptyRegistry),
            state: StateStore::process_default(),
            random: RandomSource::os(),
            pool,
            limits,
            share: Arc::new(Semaphore::new(share)),
        }))
    }

    /// The registry that serves the modules' `arc:llm/registry` import (fallback targets).
    pub fn with_registry(self, registry: Arc<dyn Registry>) -> Self {
        self.changed(|parts| parts.registry = registry)
    }

    /// The shared state the modules' `arc:llm/state` import serves (default: the
    /// process-wide in-process store, [`StateStore::process_default`]).
    pub fn with_state(self, state: StateStore) -> Self {
        self.changed(|parts| parts.state = state)
    }

    /// Where the modules' WASI randomness comes from (default: the OS, through a CSPRNG
    /// per store). Tests pass a constant source to make the retry module's jitter exact.
    pub fn with_random(self, random: RandomSource) -> Self {
        self.changed(|parts| parts.random = random)
    }

    /// This stack with `change` made, and a pool of its own: stores made before the
    /// change serve only the stack they were made for.
    fn changed(mut self, change: impl FnOnce(&mut Parts)) -> Self {
        let parts = Arc::make_mut(&mut self.0);
        change(parts);
        parts.pool = Arc::new(StorePool::new(&parts.runtime));
        self
    }

    /// The modules, outermost first.
    pub fn modules(&self) -> &[Arc<Module>] {
        &self.0.modules
    }

    /// Whether calls may reuse instances an earlier call left: only when every module
    /// opted in to sharing state.
    pub fn shares_state(&self) -> bool {
        self.0.share_state
    }

    /// The provider at the bottom of the stack.
    pub fn inner(&self) -> &Arc<dyn Provider> {
        &self.0.inner
    }

    /// How many never-used stores, made ahead of calls, wait for this stack's calls
    /// ([`RuntimeBuilder::ready_stores`](super::RuntimeBuilder::ready_stores)).
    pub fn ready_stores(&self) -> usize {
        self.0.pool.ready_len()
    }

    /// The provider name as the outermost module reports it (through every layer).
    pub async fn query_name(&self) -> Result<String, Error> {
        self.query(|inner| inner.name().to_string(), async |outer, store| outer.call_name(store).await).await
    }

    /// The model name as the outermost module reports it (through every layer).
    pub async fn query_model_name(&self) -> Result<String, Error> {
        self.query(
            |inner| inner.model_name().to_string(),
            async |outer, store| outer.call_model_name(store).await,
        )
        .await
    }

    /// Asks the outermost module (`ask`), within the call deadline; the bare adapter
    /// answers itself (`bare`).
    async fn query(
        &self,
        bare: impl FnOnce(&dyn Provider) -> String,
        ask: impl AsyncFnOnce(&Middleware, &mut Store<CallState>) -> wasmtime::Result<String>,
    ) -> Result<String, Error> {
        if self.0.modules.is_empty() {
            return Ok(bare(&*self.0.inner));
        }
        let deadline = Instant::now() + self.0.limits.call_timeout;
        let (mut store, outer) = self.checkout_by(deadline).await?;
        let Ok(answer) = tokio::time::timeout_at(deadline, ask(&outer, &mut store)).await else {
            return Err(self.timed_out(store));
        };
        let answer = answer.map_err(|trap| store.data_mut().trapped(0, trap));
        self.checkin(store);
        answer
    }
}

#[async_trait]
impl Provider for Stack {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        if self.0.modules.is_empty() {
            return self.0.inner.invoke(request).await;
        }
        let deadline = Instant::now() + self.0.limits.call_timeout;
        let (mut store, outer, held) = self.checkout_holding(deadline, request).await?;
        let lent = Resource::new_borrow(held.rep());
        let Ok(result) = tokio::time::timeout_at(deadline, outer.call_invoke(&mut store, lent)).await else {
            return Err(self.timed_out(store));
        };
        let result = match result {
            Ok(answer) => store.data_mut().budget.check_returned(&self.0.modules[0].name, answer),
            Err(trap) => Err(store.data_mut().trapped(0, trap)),
        };
        match store.data_mut().drop_request(held) {
            Ok(()) => self.checkin(store),
            Err(_) => self.discard(store),
        }
        result
    }

    /// Streams through every layer: each 0.3 layer's `invoke-stream` (a 0.2 layer answers
    /// whole, replayed as events). The layers run until the outermost returns its stream,
    /// which is once retry and fallback have seen the answer's first content (the commit
    /// point); the events after it flow from the adapter to the caller without entering
    /// wasm, and the store is released then, unless a layer handed its stream on as
    /// resumable: then the store is kept until the stream ends, to call that layer again
    /// should the answer fail (`runtime::resume`). The call deadline bounds the whole
    /// stream, resumptions included.
    async fn invoke_stream(&self, request: Request) -> Result<EventStream, Error> {
        if self.0.modules.is_empty() {
            return self.0.inner.invoke_stream(request).await;
        }
        let deadline = Instant::now() + self.0.limits.call_timeout;
        let (mut store, outer, held) = self.checkout_holding(deadline, request).await?;
        let lent = Resource::new_borrow(held.rep());
        let Ok(result) =
            tokio::time::timeout_at(deadline, outer.call_invoke_stream(&mut store, lent, None)).await
        else {
            return Err(self.timed_out(store));
        };
        let result = match result {
            Ok(answer) => store.data_mut().budget.check_returned(&self.0.modules[0].name, answer),
            Err(trap) => Err(store.data_mut().trapped(0, trap)),
        };
        let stream = match result {
            Ok(handle) => store.data_mut().take_stream(handle).map_err(|e| store.data_mut().trapped(0, e)),
            Err(error) => Err(error),
        };
        let request_dropped = store.data_mut().drop_request(held).is_ok();
        let timeout = limits::timeout_error(
            &self.0.modules[0].name,
            "did not finish the call",
            self.0.limits.call_timeout,
        );
        if store.data().resume_armed {
            if let Ok(stream) = stream {
                // A layer may resume the answer: its instance must outlive the call.
                let stack = self.clone();
                let done = move |store| match request_dropped {
                    true => stack.checkin(store),
                    false => stack.discard(store),
                };
                return Ok(streams::ends_by(resume::driven(store, stream, done), deadline, timeout));
            }
        }
        // The caller has its stream: tearing the store down (or topping the pool up) is not
        // its wait.
        match request_dropped {
            true => self.checkin(store),
            false => self.discard(store),
        }
        Ok(streams::ends_by(stream?, deadline, timeout))
    }

    fn name(&self) -> &str {
        self.0.inner.name()
    }

    fn model_name(&self) -> &str {
        self.0.inner.model_name()
    }

    async fn validate_config(&self) -> Result<(), Error> {
        if self.0.modules.is_empty() {
            return self.0.inner.validate_config().await;
        }
        let deadline = Instant::now() + self.0.limits.call_timeout;
        let (mut store, outer) = self.checkout_by(deadline).await?;
        let Ok(result) = tokio::time::timeout_at(deadline, outer.call_validate_config(&mut store)).await
        else {
            return Err(self.timed_out(store));
        };
        let result = match result {
            Ok(answer) => store.data_mut().budget.check_returned(&self.0.modules[0].name, answer),
            Err(trap) => Err(store.data_mut().trapped(0, trap)),
        };
        self.checkin(store);
        result
    }
}
