//! A chain: modules stacked around an inner provider, outermost first.

use std::sync::Arc;

use async_trait::async_trait;
use wasmtime::Store;

use super::bindings::Middleware;
use super::engine::Runtime;
use super::module::Module;
use super::registry::{EmptyRegistry, Registry};
use super::sandbox::{CallState, RandomSource};
use crate::provider::Provider;
use crate::types::{Error, Request, Response};

/// Modules stacked around an inner provider: `modules[0]` wraps `modules[1]` … wraps
/// `inner`. A chain is itself a [`Provider`]. It is immutable and cheap to clone; each
/// call instantiates every layer in a store of its own, so calls run concurrently and a
/// module that traps takes down only the call it trapped in.
#[derive(Clone)]
pub struct Chain {
    runtime: Runtime,
    layers: Arc<[Arc<Module>]>,
    inner: Arc<dyn Provider>,
    registry: Arc<dyn Registry>,
    random: RandomSource,
}

impl Chain {
    /// Stacks `modules` (outermost first) around `inner`.
    pub fn new(runtime: Runtime, modules: Vec<Arc<Module>>, inner: Arc<dyn Provider>) -> Self {
        Chain {
            runtime,
            layers: modules.into(),
            inner,
            registry: Arc::new(EmptyRegistry),
            random: RandomSource::os(),
        }
    }

    /// The registry that serves the modules' `arc:llm/registry` import (fallback targets).
    pub fn with_registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = registry;
        self
    }

    /// Where the modules' WASI randomness comes from (default: the OS). Tests pass a
    /// constant source to make the retry module's jitter exact.
    pub fn with_random(mut self, random: RandomSource) -> Self {
        self.random = random;
        self
    }

    /// The modules, outermost first.
    pub fn modules(&self) -> &[Arc<Module>] {
        &self.layers
    }

    /// The provider at the bottom of the chain.
    pub fn inner(&self) -> &Arc<dyn Provider> {
        &self.inner
    }

    /// Creates this call's store and instances, configured and ready; returns the outermost.
    pub(crate) async fn start(&self) -> Result<(Store<CallState>, Arc<Middleware>), Error> {
        let state = CallState::new(
            &self.runtime.inner,
            self.layers.clone(),
            self.inner.clone(),
            self.registry.clone(),
            &self.random,
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().on_epoch());
        store.set_epoch_deadline(1);
        for (i, layer) in self.layers.iter().enumerate() {
            store.data_mut().current = i;
            let instance = layer
                .compiled
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| store.data().module_error(i, e))?;
            store.data_mut().instances.push(Arc::new(instance));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            store.data_mut().current = i;
            let instance = store.data().instances[i].clone();
            match instance.arc_llm_module().call_configure(&mut store, &layer.config).await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => {
                    return Err(Error::config(
                        &layer.name,
                        format!("module `{}` rejected its configuration: {reason}", layer.name),
                    ))
                }
                Err(trap) => return Err(store.data().module_error(i, trap)),
            }
        }
        store.data_mut().current = 0;
        let outer = store.data().instances[0].clone();
        Ok((store, outer))
    }

    /// The provider name as the outermost module reports it (through every layer).
    pub async fn query_name(&self) -> Result<String, Error> {
        if self.layers.is_empty() {
            return Ok(self.inner.name().to_string());
        }
        let (mut store, outer) = self.start().await?;
        outer.arc_llm_provider().call_name(&mut store).await.map_err(|t| store.data().module_error(0, t))
    }

    /// The model name as the outermost module reports it (through every layer).
    pub async fn query_model_name(&self) -> Result<String, Error> {
        if self.layers.is_empty() {
            return Ok(self.inner.model_name().to_string());
        }
        let (mut store, outer) = self.start().await?;
        outer
            .arc_llm_provider()
            .call_model_name(&mut store)
            .await
            .map_err(|t| store.data().module_error(0, t))
    }
}

#[async_trait]
impl Provider for Chain {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        if self.layers.is_empty() {
            return self.inner.invoke(request).await;
        }
        let (mut store, outer) = self.start().await?;
        let result = outer.arc_llm_provider().call_invoke(&mut store, &request).await;
        result.unwrap_or_else(|trap| Err(store.data().module_error(0, trap)))
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn model_name(&self) -> &str {
        self.inner.model_name()
    }

    async fn validate_config(&self) -> Result<(), Error> {
        if self.layers.is_empty() {
            return self.inner.validate_config().await;
        }
        let (mut store, outer) = self.start().await?;
        let result = outer.arc_llm_provider().call_validate_config(&mut store).await;
        result.unwrap_or_else(|trap| Err(store.data().module_error(0, trap)))
    }
}
