//! A stack: modules around an inner provider, outermost first.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use wasmtime::component::Resource;
use wasmtime::Store;

use super::engine::Runtime;
use super::imports::HeldRequest;
use super::limits::{self, CallBudget, CallLimits};
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

    /// A store for one call, with every layer instantiated and configured: an idle one if
    /// the stack shares state and the pool has one, else a ready (never-used) one, else a
    /// fresh one. Then has the background thread make the next ready store. Returns the
    /// store with the outermost instance.
    async fn checkout(&self) -> Result<(Store<CallState>, Arc<Middleware>), Error> {
        let mut store = match self.0.pool.take(self.0.share_state) {
            Some(store) => store,
            None => self.instantiate().await?,
        };
        self.refill();
        store.data_mut().begin_call();
        store.set_epoch_deadline(1);
        let outer = store.data().instances[0].clone();
        Ok((store, outer))
    }

    /// Returns a store whose call has ended to the pool (if the stack shares state and
    /// nothing in it trapped); otherwise it is dropped, and the module state with it, on the
    /// background thread, which then tops the ready stores up (with the slots it freed).
    fn checkin(&self, store: Store<CallState>) {
        let unkept = if self.0.share_state { self.0.pool.put(store) } else { Some(store) };
        match unkept {
            Some(store) => self.discard(store),
            None => self.refill(),
        }
    }

    /// Has the background thread top the pool up to its ready stores. A refill stops when
    /// only it still holds the stack (a reload replaced it), when no instance slot is free
    /// (calls come first), or when a store fails to start (a call's own start reports why).
    fn refill(&self) {
        let Some(refill) = self.0.pool.start_refill(self.0.modules.len()) else { return };
        // The task may wait behind others on a busy machine: it must not keep a replaced
        // stack (its adapter's connections, its pool's stores) alive meanwhile.
        let weak = Arc::downgrade(&self.0);
        self.0.runtime.inner.background.spawn(async move {
            let _refill = refill;
            while let Some(stack) = weak.upgrade().map(Stack) {
                // Only this task holds the stack: a reload replaced it.
                if Arc::strong_count(&stack.0) <= 1 || !stack.0.pool.wants_ready(stack.0.modules.len()) {
                    break;
                }
                let unkept = match stack.instantiate_now().await {
                    None => break,
                    Some(Ok(store)) => stack.0.pool.put_ready(store),
                    Some(Err(e)) => {
                        tracing::debug!("a ready store of `{}` failed: {e}", stack.0.modules[0].name);
                        break;
                    }
                };
                if let Some(unkept) = unkept {
                    super::background::release(unkept);
                    break;
                }
            }
        });
    }

    /// Creates a store and instantiates and configures every layer in it, once the stack's
    /// share of the runtime's instances and the runtime itself have room for that many more:
    /// beyond either a call waits its turn (first come, first served) instead of failing on
    /// an exhausted instance pool. Starting all layers must end within the configure
    /// timeout.
    pub(crate) async fn instantiate(&self) -> Result<Store<CallState>, Error> {
        let too_many = |max: usize| {
            Error::config(
                &self.0.modules[0].name,
                format!(
                    "a stack of {} modules needs more instances than the runtime's max_instances ({max})",
                    self.0.modules.len()
                ),
            )
        };
        let count = u32::try_from(self.0.modules.len())
            .map_err(|_| too_many(self.0.runtime.inner.max_instances()))?;
        let share = self
            .0
            .share
            .clone()
            .acquire_many_owned(count)
            .await
            .map_err(|_| too_many(self.0.runtime.inner.max_instances()))?;
        let slots = self.0.runtime.inner.reserve_instances(self.0.modules.len()).await.map_err(too_many)?;
        self.start(share, slots).await
    }

    /// [`instantiate`](Self::instantiate) without waiting: `None` when the stack's share or
    /// the runtime has no room now, or calls wait for slots.
    async fn instantiate_now(&self) -> Option<Result<Store<CallState>, Error>> {
        let count = u32::try_from(self.0.modules.len()).ok()?;
        let share = self.0.share.clone().try_acquire_many_owned(count).ok()?;
        let slots = self.0.runtime.inner.try_reserve_instances(self.0.modules.len())?;
        Some(self.start(share, slots).await)
    }

    /// A store holding `share` and `slots`, with every layer started within the configure
    /// timeout.
    async fn start(
        &self,
        share: OwnedSemaphorePermit,
        slots: OwnedSemaphorePermit,
    ) -> Result<Store<CallState>, Error> {
        let state = CallState::new(
            slots,
            &self.0.runtime.inner,
            self.0.limits.host_limits(&self.0.runtime.inner.host_limits),
            self.0.modules.clone(),
            self.0.inner.clone(),
            self.0.registry.clone(),
            self.0.state.clone(),
            &self.0.random,
            CallBudget::new(&self.0.limits, Some(share)),
        );
        let mut store = Store::new(self.0.runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().on_epoch());
        store.set_epoch_deadline(1);
        let limit = self.0.limits.configure_timeout;
        let failed = match tokio::time::timeout(limit, self.start_layers(&mut store)).await {
            Ok(Ok(())) => return Ok(store),
            Ok(Err(error)) => error,
            Err(_elapsed) => {
                let name = &self.0.modules[store.data().current].name;
                limits::timeout_error(name, "did not start (instantiate and configure)", limit)
            }
        };
        self.discard(store);
        Err(failed)
    }

    /// Instantiates every layer in `store`, then configures each.
    async fn start_layers(&self, store: &mut Store<CallState>) -> Result<(), Error> {
        for (i, layer) in self.0.modules.iter().enumerate() {
            store.data_mut().current = i;
            let instance = layer
                .compiled
                .pre
                .instantiate_async(&mut *store)
                .await
                .map_err(|e| store.data_mut().trapped(i, e))?;
            store.data_mut().instances.push(Arc::new(instance));
        }
        for (i, layer) in self.0.modules.iter().enumerate() {
            store.data_mut().current = i;
            let instance = store.data().instances[i].clone();
            match instance.call_configure(&mut *store, &layer.config).await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Err(Error::config(
                        &layer.name,
                        format!("module `{}` rejected its configuration: {reason}", layer.name),
                    ))
                }
                Err(trap) => return Err(store.data_mut().trapped(i, trap)),
            }
        }
        Ok(())
    }

    /// A store for one call within `deadline`, or the timeout error naming the outermost
    /// module (the call waited for instance slots, or a fresh store to start).
    async fn checkout_by(&self, deadline: Instant) -> Result<(Store<CallState>, Arc<Middleware>), Error> {
        match tokio::time::timeout_at(deadline, self.checkout()).await {
            Ok(checked_out) => checked_out,
            Err(_elapsed) => Err(limits::timeout_error(
                &self.0.modules[0].name,
                "could not start the call (waiting for a free instance slot)",
                self.0.limits.call_timeout,
            )),
        }
    }

    /// [`checkout_by`](Self::checkout_by), with `request` put in the store's table: it goes
    /// in once, and every layer gets it by handle.
    async fn checkout_holding(
        &self,
        deadline: Instant,
        request: Request,
    ) -> Result<(Store<CallState>, Arc<Middleware>, Resource<HeldRequest>), Error> {
        let (mut store, outer) = self.checkout_by(deadline).await?;
        match store.data_mut().hold_request(request) {
            Ok(held) => Ok((store, outer, held)),
            Err(e) => {
                let error = store.data_mut().trapped(0, e);
                self.discard(store);
                Err(error)
            }
        }
    }

    /// The error of a call that ran out of time in `store`: it names the layer that was
    /// running (or waiting on the host) when the deadline passed. The store is dropped.
    fn timed_out(&self, store: Store<CallState>) -> Error {
        let name = &self.0.modules[store.data().current].name;
        let error = limits::timeout_error(name, "did not finish the call", self.0.limits.call_timeout);
        self.discard(store);
        error
    }

    /// Drops `store`, which serves no further call, in the order that keeps the pool's count
    /// of instances true (see `background::release`), then tops the ready stores up with
    /// the slots it freed. Every store a call gave up goes here, or back to the pool
    /// through `checkin`. In a task of its own on the caller's tokio runtime, so the caller
    /// does not wait for it (and never on the low-priority thread, which a busy machine may
    /// not run for a while: a store keeps its slots, memory and modules until dropped).
    fn discard(&self, store: Store<CallState>) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let stack = self.clone();
                drop(runtime.spawn(async move {
                    super::background::release(store);
                    stack.refill();
                }));
            }
            Err(_) => {
                super::background::release(store);
                self.refill();
            }
        }
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
