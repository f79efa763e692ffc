//! The linker every module is instantiated with: exactly the imports arcllm grants.
//!
//! - WASI (clocks, random, and the CLI/IO basics the Rust standard library links) from
//!   wasmtime-wasi, over a context that grants nothing;
//! - `arc:llm/provider`: forwards to the next layer's export, or for the innermost layer
//!   to the native provider. There is no API to link one instance's export to another's
//!   import, so each forwarded call goes through this host function with `call_async`;
//! - `arc:llm/registry`: the host's lazily created fallback providers;
//! - `arc:llm/logging`: `tracing` events tagged with the module's name.
//!
//! Which layer is calling is `CallState::current`: calls within one store strictly nest,
//! so the forwarding function sets it to the callee for the duration of the call.

use wasmtime::component::{Linker, LinkerInstance};
use wasmtime::{Engine, StoreContextMut};

use super::bindings::arc::llm::logging::Level;
use super::sandbox::CallState;
use crate::types::{Error, Request, Response};

pub(crate) const PROVIDER: &str = "arc:llm/provider@0.1.0";
const REGISTRY: &str = "arc:llm/registry@0.1.0";
const LOGGING: &str = "arc:llm/logging@0.1.0";

pub(crate) fn build(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    define_provider(&mut linker.instance(PROVIDER)?)?;
    linker.instance(REGISTRY)?.func_wrap_async(
        "invoke",
        |store: StoreContextMut<'_, CallState>, (target, request): (String, Request)| {
            Box::new(async move {
                let registry = store.data().registry.clone();
                Ok((registry.invoke(&target, request).await,))
            })
        },
    )?;
    linker.instance(LOGGING)?.func_wrap(
        "log",
        |store: StoreContextMut<'_, CallState>, (level, message): (Level, String)| {
            let state = store.data();
            let module = &state.layers[state.current].name;
            match level {
                Level::Trace => tracing::trace!(target: "arcllm::module", module = %module, "{message}"),
                Level::Debug => tracing::debug!(target: "arcllm::module", module = %module, "{message}"),
                Level::Info => tracing::info!(target: "arcllm::module", module = %module, "{message}"),
                Level::Warn => tracing::warn!(target: "arcllm::module", module = %module, "{message}"),
                Level::Error => tracing::error!(target: "arcllm::module", module = %module, "{message}"),
            }
            Ok(())
        },
    )?;
    Ok(linker)
}

/// Serves a layer's `provider` import from the layer below it.
fn define_provider(instance: &mut LinkerInstance<'_, CallState>) -> wasmtime::Result<()> {
    instance.func_wrap_async(
        "invoke",
        |mut store: StoreContextMut<'_, CallState>, (request,): (Request,)| {
            Box::new(async move {
                let result: Result<Response, Error> = match next_layer(&mut store) {
                    Some(next) => {
                        let instance = store.data().instances[next].clone();
                        let caller = enter(&mut store, next);
                        let result = instance.arc_llm_provider().call_invoke(&mut store, &request).await;
                        store.data_mut().current = caller;
                        result.unwrap_or_else(|trap| Err(store.data().module_error(next, trap)))
                    }
                    None => {
                        let inner = store.data().inner.clone();
                        inner.invoke(request).await
                    }
                };
                Ok((result,))
            })
        },
    )?;
    instance.func_wrap_async("name", |mut store: StoreContextMut<'_, CallState>, (): ()| {
        Box::new(async move {
            Ok((match next_layer(&mut store) {
                Some(next) => {
                    let instance = store.data().instances[next].clone();
                    let caller = enter(&mut store, next);
                    let result = instance.arc_llm_provider().call_name(&mut store).await;
                    store.data_mut().current = caller;
                    result?
                }
                None => store.data().inner.name().to_string(),
            },))
        })
    })?;
    instance.func_wrap_async("model-name", |mut store: StoreContextMut<'_, CallState>, (): ()| {
        Box::new(async move {
            Ok((match next_layer(&mut store) {
                Some(next) => {
                    let instance = store.data().instances[next].clone();
                    let caller = enter(&mut store, next);
                    let result = instance.arc_llm_provider().call_model_name(&mut store).await;
                    store.data_mut().current = caller;
                    result?
                }
                None => store.data().inner.model_name().to_string(),
            },))
        })
    })?;
    instance.func_wrap_async("validate-config", |mut store: StoreContextMut<'_, CallState>, (): ()| {
        Box::new(async move {
            let result: Result<(), Error> = match next_layer(&mut store) {
                Some(next) => {
                    let instance = store.data().instances[next].clone();
                    let caller = enter(&mut store, next);
                    let result = instance.arc_llm_provider().call_validate_config(&mut store).await;
                    store.data_mut().current = caller;
                    result.unwrap_or_else(|trap| Err(store.data().module_error(next, trap)))
                }
                None => {
                    let inner = store.data().inner.clone();
                    inner.validate_config().await
                }
            };
            Ok((result,))
        })
    })?;
    Ok(())
}

/// The index of the layer below the calling one, or `None` when the caller is innermost.
fn next_layer(store: &mut StoreContextMut<'_, CallState>) -> Option<usize> {
    let next = store.data().current + 1;
    (next < store.data().instances.len()).then_some(next)
}

/// Marks `layer` as running; returns the layer to restore afterwards.
fn enter(store: &mut StoreContextMut<'_, CallState>, layer: usize) -> usize {
    std::mem::replace(&mut store.data_mut().current, layer)
}
