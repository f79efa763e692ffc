//! A stack's stores: a call checks one out (idle, ready or fresh) and gives it back when
//! it ends, to the pool or to be dropped; the background thread keeps ready stores made.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use wasmtime::component::Resource;
use wasmtime::Store;

use super::Stack;
use crate::runtime::background;
use crate::runtime::imports::HeldRequest;
use crate::runtime::limits::{self, CallBudget};
use crate::runtime::sandbox::CallState;
use crate::runtime::wit::Middleware;
use crate::types::{Error, Request};

impl Stack {
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
    pub(super) fn checkin(&self, store: Store<CallState>) {
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
                    background::release(unkept);
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
    pub(super) async fn checkout_by(
        &self,
        deadline: Instant,
    ) -> Result<(Store<CallState>, Arc<Middleware>), Error> {
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
    pub(super) async fn checkout_holding(
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
    pub(super) fn timed_out(&self, store: Store<CallState>) -> Error {
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
    pub(super) fn discard(&self, store: Store<CallState>) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let stack = self.clone();
                drop(runtime.spawn(async move {
                    background::release(store);
                    stack.refill();
                }));
            }
            Err(_) => {
                background::release(store);
                self.refill();
            }
        }
    }
}
