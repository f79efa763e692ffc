//! The linker every module is instantiated with: exactly the imports arcllm grants.
//!
//! - WASI (clocks, random, and the CLI/IO basics the Rust standard library links) from
//!   wasmtime-wasi, over a context that grants nothing;
//! - `arc:llm/types`: the `request-handle` resource, whose requests live in the store's
//!   resource table;
//! - `arc:llm/provider`: forwards to the next layer's export, or for the innermost layer
//!   to the native provider. There is no API to link one instance's export to another's
//!   import, so each forwarded call goes through this host function with `call_async`;
//! - `arc:llm/registry`: the host's lazily created fallback providers;
//! - `arc:llm/logging`: `tracing` events tagged with the module's name.
//!
//! Which layer is calling is `CallState::current`: calls within one store strictly nest,
//! so the forwarding function sets it to the callee for the duration of the call.

use wasmtime::component::{Linker, LinkerInstance, Resource, ResourceType};
use wasmtime::{Engine, StoreContextMut};

use super::bindings::arc::llm::logging::Level;
use super::bindings::{arc_llm, HeldRequest};
use super::sandbox::CallState;
use crate::types::{Error, Request, Response};

pub(crate) fn build(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    define_request_handle(&mut linker.instance(arc_llm!("types"))?)?;
    define_provider(&mut linker.instance(arc_llm!("provider"))?)?;
    linker.instance(arc_llm!("registry"))?.func_wrap_async(
        "invoke",
        |store: StoreContextMut<'_, CallState>, (target, request): (String, Resource<HeldRequest>)| {
            Box::new(async move {
                let request = store.data().request(&request)?.clone();
                let registry = store.data().registry.clone();
                Ok((registry.invoke(&target, request).await,))
            })
        },
    )?;
    linker.instance(arc_llm!("logging"))?.func_wrap(
        "log",
        |store: StoreContextMut<'_, CallState>, (level, message): (Level, String)| {
            let state = store.data();
            let module = &state.modules[state.current].name;
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

/// The `request-handle` resource: a module that rewrites the request makes a new one,
/// and one that reads it gets a copy; the handles the host lends are never copied.
fn define_request_handle(instance: &mut LinkerInstance<'_, CallState>) -> wasmtime::Result<()> {
    instance.resource("request-handle", ResourceType::host::<HeldRequest>(), |mut store, rep| {
        store.data_mut().drop_request(Resource::new_own(rep))
    })?;
    instance.func_wrap(
        "[constructor]request-handle",
        |mut store: StoreContextMut<'_, CallState>, (request,): (Request,)| {
            Ok((store.data_mut().hold_request(request)?,))
        },
    )?;
    instance.func_wrap(
        "[method]request-handle.get",
        |store: StoreContextMut<'_, CallState>, (handle,): (Resource<HeldRequest>,)| {
            Ok((store.data().request(&handle)?.clone(),))
        },
    )?;
    Ok(())
}

/// Serves a layer's `provider` import from the layer below it.
fn define_provider(instance: &mut LinkerInstance<'_, CallState>) -> wasmtime::Result<()> {
    instance.func_wrap_async(
        "invoke",
        |mut store: StoreContextMut<'_, CallState>, (request,): (Resource<HeldRequest>,)| {
            Box::new(async move {
                let result: Result<Response, Error> = match next_layer(&mut store) {
                    Some(next) => {
                        let instance = store.data().instances[next].clone();
                        let caller = enter(&mut store, next);
                        // The lent handle goes down as it came in: no copy of the request.
                        let result = instance.arc_llm_provider().call_invoke(&mut store, request).await;
                        store.data_mut().current = caller;
                        result.map_err(|trap| store.data_mut().unwind(next, trap))?
                    }
                    None => {
                        // The native provider takes the request by value: the one copy.
                        let request = store.data().request(&request)?.clone();
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
                    result.map_err(|trap| store.data_mut().unwind(next, trap))?
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
                    result.map_err(|trap| store.data_mut().unwind(next, trap))?
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
                    result.map_err(|trap| store.data_mut().unwind(next, trap))?
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
