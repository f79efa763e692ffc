//! A stack: modules around an inner provider, outermost first.

use std::sync::Arc;

use async_trait::async_trait;
use wasmtime::component::Resource;
use wasmtime::Store;

use super::engine::Runtime;
use super::module::Module;
use super::pool::StorePool;
use super::registry::{EmptyRegistry, Registry};
use super::sandbox::{CallState, RandomSource};
use super::wit::Middleware;
use crate::provider::Provider;
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
pub struct Stack {
    runtime: Runtime,
    modules: Arc<[Arc<Module>]>,
    inner: Arc<dyn Provider>,
    registry: Arc<dyn Registry>,
    random: RandomSource,
    pool: Arc<StorePool>,
    /// Every module opted in to sharing state: stores are kept and reused across calls.
    share_state: bool,
}

impl Stack {
    /// Stacks `modules` (outermost first) around `inner`.
    pub fn new(runtime: Runtime, modules: Vec<Arc<Module>>, inner: Arc<dyn Provider>) -> Self {
        let pool = Arc::new(StorePool::new(runtime.inner.clone()));
        let share_state = !modules.is_empty() && modules.iter().all(|m| m.share_state);
        Stack {
            runtime,
            share_state,
            modules: modules.into(),
            inner,
            registry: Arc::new(EmptyRegistry),
            random: RandomSource::os(),
            pool,
        }
    }

    /// The registry that serves the modules' `arc:llm/registry` import (fallback targets).
    pub fn with_registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = registry;
        self.pool = Arc::new(StorePool::new(self.runtime.inner.clone()));
        self
    }

    /// Where the modules' WASI randomness comes from (default: the OS, through a CSPRNG
    /// per store). Tests pass a constant source to make the retry module's jitter exact.
    pub fn with_random(mut self, random: RandomSource) -> Self {
        self.random = random;
        self.pool = Arc::new(StorePool::new(self.runtime.inner.clone()));
        self
    }

    /// The modules, outermost first.
    pub fn modules(&self) -> &[Arc<Module>] {
        &self.modules
    }

    /// Whether calls may reuse instances an earlier call left: only when every module
    /// opted in to sharing state.
    pub fn shares_state(&self) -> bool {
        self.share_state
    }

    /// The provider at the bottom of the stack.
    pub fn inner(&self) -> &Arc<dyn Provider> {
        &self.inner
    }

    /// A store for one call, with every layer instantiated and configured: an idle one if
    /// the pool has one, else a fresh one. Returns it with the outermost instance.
    async fn checkout(&self) -> Result<(Store<CallState>, Arc<Middleware>), Error> {
        let idle = if self.share_state { self.pool.take() } else { None };
        let mut store = match idle {
            Some(store) => store,
            None => self.instantiate().await?,
        };
        store.data_mut().begin_call();
        store.set_epoch_deadline(1);
        let outer = store.data().instances[0].clone();
        Ok((store, outer))
    }

    /// Returns a store whose call has ended to the pool (if the stack shares state and
    /// nothing in it trapped); otherwise drops it, and the module state with it.
    fn checkin(&self, store: Store<CallState>) {
        if self.share_state {
            self.pool.put(store);
        }
    }

    /// Creates a store and instantiates and configures every layer in it, once the runtime
    /// has room for that many more instances: beyond it a call waits its turn (first come,
    /// first served) instead of failing on an exhausted instance pool.
    pub(crate) async fn instantiate(&self) -> Result<Store<CallState>, Error> {
        let slots = self.runtime.inner.reserve_instances(self.modules.len()).await.map_err(|max| {
            Error::config(
                &self.modules[0].name,
                format!(
                    "a stack of {} modules needs more instances than the runtime's max_instances ({max})",
                    self.modules.len()
                ),
            )
        })?;
        let state = CallState::new(
            slots,
            &self.runtime.inner,
            self.modules.clone(),
            self.inner.clone(),
            self.registry.clone(),
            &self.random,
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().on_epoch());
        store.set_epoch_deadline(1);
        for (i, layer) in self.modules.iter().enumerate() {
            store.data_mut().current = i;
            let instance = layer
                .compiled
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| store.data_mut().trapped(i, e))?;
            store.data_mut().instances.push(Arc::new(instance));
        }
        for (i, layer) in self.modules.iter().enumerate() {
            store.data_mut().current = i;
            let instance = store.data().instances[i].clone();
            match instance.call_configure(&mut store, &layer.config).await {
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
        Ok(store)
    }

    /// The provider name as the outermost module reports it (through every layer).
    pub async fn query_name(&self) -> Result<String, Error> {
        if self.modules.is_empty() {
            return Ok(self.inner.name().to_string());
        }
        let (mut store, outer) = self.checkout().await?;
        let name = outer.call_name(&mut store).await;
        let name = name.map_err(|trap| store.data_mut().trapped(0, trap))?;
        self.checkin(store);
        Ok(name)
    }

    /// The model name as the outermost module reports it (through every layer).
    pub async fn query_model_name(&self) -> Result<String, Error> {
        if self.modules.is_empty() {
            return Ok(self.inner.model_name().to_string());
        }
        let (mut store, outer) = self.checkout().await?;
        let name = outer.call_model_name(&mut store).await;
        let name = name.map_err(|trap| store.data_mut().trapped(0, trap))?;
        self.checkin(store);
        Ok(name)
    }
}

#[async_trait]
impl Provider for Stack {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        if self.modules.is_empty() {
            return self.inner.invoke(request).await;
        }
        let (mut store, outer) = self.checkout().await?;
        // The request goes into the store's table once; every layer gets it by handle.
        let held = store.data_mut().hold_request(request).map_err(|e| store.data_mut().trapped(0, e))?;
        let lent = Resource::new_borrow(held.rep());
        let result = outer.call_invoke(&mut store, lent).await;
        let result = result.unwrap_or_else(|trap| Err(store.data_mut().trapped(0, trap)));
        if store.data_mut().drop_request(held).is_ok() {
            self.checkin(store);
        }
        result
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn model_name(&self) -> &str {
        self.inner.model_name()
    }

    async fn validate_config(&self) -> Result<(), Error> {
        if self.modules.is_empty() {
            return self.inner.validate_config().await;
        }
        let (mut store, outer) = self.checkout().await?;
        let result = outer.call_validate_config(&mut store).await;
        let result = result.unwrap_or_else(|trap| Err(store.data_mut().trapped(0, trap)));
        self.checkin(store);
        result
    }
}
