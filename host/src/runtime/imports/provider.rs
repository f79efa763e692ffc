//! `arc:llm/provider`: a layer's import, served by the layer below it, or for the
//! innermost layer by the native provider.
//!
//! There is no API to link one instance's export to another's import, so each forwarded
//! call goes through a host function here that calls the next instance's export. Which
//! layer is calling is `CallState::current`: calls within one store strictly nest, so
//! [`forward`] sets it to the callee for the duration of the call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::component::{Linker, LinkerInstance, Resource};
use wasmtime::StoreContextMut;

use super::streaming::{bound_until_content, earliest};
use super::{call_off_fiber, HeldRequest, HeldStream, Import};
use crate::runtime::sandbox::CallState;
use crate::runtime::wit::{for_each_version, Bindings, Middleware};
use crate::types::Error;
use crate::Provider;

pub(super) const IMPORTS: &[Import] = &[Import {
    interface: "arc:llm/provider",
    add_to_linker: |linker| for_each_version!(add_to_linker, linker),
}];

/// The import of a layer built for version `B`: the next layer may speak another version,
/// so what it returns is lifted into the host's data model and lowered into `B`'s.
fn add_to_linker<B: Bindings>(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(&B::interface("provider"))?;
    instance.func_wrap_async(
        "invoke",
        |mut store: StoreContextMut<'_, CallState>, (request,): (Resource<HeldRequest>,)| {
            Box::new(async move {
                // Every call inward counts against the outer call's allowance, and the
                // layer that makes one too many is stopped.
                if let Err(limit) = store.data_mut().budget.count_call() {
                    return Err(store.data_mut().exceeded(limit));
                }
                let result = forward(
                    &mut store,
                    request,
                    // The lent handle goes down as it came in: no copy of the request.
                    async |next, store, request| {
                        let answer = next.call_invoke(&mut *store, request).await?;
                        // What the layer below returns is checked as it leaves it, so that
                        // an oversized answer or a forged error is blamed on that layer.
                        let layer = store.data().modules[store.data().current].clone();
                        Ok(store.data_mut().budget.check_returned(&layer.name, answer))
                    },
                    async |store, request| {
                        // The native provider takes the request by value: the one copy.
                        let request = store.data().request(&request)?.clone();
                        let inner = store.data().inner.clone();
                        // Within a streaming call's first-event window (under a 0.2 layer,
                        // which answers whole), the buffered call ends with the window.
                        let deadline = store.data().first_event_deadline;
                        let answer =
                            call_native(inner, deadline, async move |inner| inner.invoke(request).await)
                                .await;
                        resumed_after_wait(store);
                        if let Err(error) = &answer {
                            store.data_mut().budget.issue(error);
                        }
                        Ok(answer)
                    },
                )
                .await?;
                Ok((result.map(B::Response::from).map_err(B::Error::from),))
            })
        },
    )?;
    if B::STREAMING {
        add_invoke_stream(&mut instance)?;
    }
    instance.func_wrap_async("name", |mut store: StoreContextMut<'_, CallState>, (): ()| {
        Box::new(async move {
            let name = forward(
                &mut store,
                (),
                async |next, store, ()| next.call_name(store).await,
                async |store, ()| Ok(store.data().inner.name().to_string()),
            )
            .await?;
            Ok((name,))
        })
    })?;
    instance.func_wrap_async("model-name", |mut store: StoreContextMut<'_, CallState>, (): ()| {
        Box::new(async move {
            let name = forward(
                &mut store,
                (),
                async |next, store, ()| next.call_model_name(store).await,
                async |store, ()| Ok(store.data().inner.model_name().to_string()),
            )
            .await?;
            Ok((name,))
        })
    })?;
    instance.func_wrap_async("validate-config", |mut store: StoreContextMut<'_, CallState>, (): ()| {
        Box::new(async move {
            let result = forward(
                &mut store,
                (),
                async |next, store, ()| {
                    let answer = next.call_validate_config(&mut *store).await?;
                    let layer = store.data().modules[store.data().current].clone();
                    Ok(store.data_mut().budget.check_returned(&layer.name, answer))
                },
                async |store, ()| {
                    let inner = store.data().inner.clone();
                    let answer = call_native(inner, None, async |inner| inner.validate_config().await).await;
                    resumed_after_wait(store);
                    if let Err(error) = &answer {
                        store.data_mut().budget.issue(error);
                    }
                    Ok(answer)
                },
            )
            .await?;
            Ok((result.map_err(B::Error::from),))
        })
    })?;
    Ok(())
}

/// `invoke-stream`: the next layer's, or the native provider's stream. A first-event timeout
/// holds for everything beneath while the call runs (`CallState::first_event_deadline`),
/// and for the stream it returns until that stream's first content event.
fn add_invoke_stream(instance: &mut LinkerInstance<'_, CallState>) -> wasmtime::Result<()> {
    instance.func_wrap_async(
        "invoke-stream",
        |mut store: StoreContextMut<'_, CallState>,
         (request, timeout_ms): (Resource<HeldRequest>, Option<u64>)| {
            Box::new(async move {
                if let Err(limit) = store.data_mut().budget.count_call() {
                    return Err(store.data_mut().exceeded(limit));
                }
                let enclosing = store.data().first_event_deadline;
                let deadline =
                    earliest(enclosing, timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms)));
                store.data_mut().first_event_deadline = deadline;
                let result = forward(
                    &mut store,
                    request,
                    async |next, store, request| {
                        let remaining = deadline.map(|d| {
                            u64::try_from(d.saturating_duration_since(Instant::now()).as_millis())
                                .unwrap_or(u64::MAX)
                        });
                        let answer = next.call_invoke_stream(&mut *store, request, remaining).await?;
                        let layer = store.data().modules[store.data().current].clone();
                        Ok(store.data_mut().budget.check_returned(&layer.name, answer))
                    },
                    async |store, request| {
                        let request = store.data().request(&request)?.clone();
                        let inner = store.data().inner.clone();
                        let answer = call_native(inner, deadline, async move |inner| {
                            inner.invoke_stream(request).await
                        })
                        .await;
                        resumed_after_wait(store);
                        match answer {
                            Ok(stream) => Ok(Ok(store.data_mut().hold_stream(stream)?)),
                            Err(error) => {
                                store.data_mut().budget.issue(&error);
                                Ok(Err(error))
                            }
                        }
                    },
                )
                .await;
                store.data_mut().first_event_deadline = enclosing;
                let result: Result<Resource<HeldStream>, _> = result?;
                if let (Ok(handle), Some(deadline)) = (&result, deadline) {
                    let provider = store.data().inner.name().to_string();
                    bound_until_content(store.data_mut(), handle, deadline, &provider)?;
                }
                Ok((result,))
            })
        },
    )?;
    Ok(())
}

/// Serves one `provider` function for the calling layer, with `arg`. When a layer is below
/// the caller, runs `next_layer` on its instance with that layer marked as running (its
/// imports are attributed to it and its CPU time charged to it), then restores the caller;
/// a trap there unwinds the whole call. When the caller is innermost, runs `native`, which
/// calls the inner provider.
async fn forward<A, R>(
    store: &mut StoreContextMut<'_, CallState>,
    arg: A,
    next_layer: impl AsyncFnOnce(&Middleware, &mut StoreContextMut<'_, CallState>, A) -> wasmtime::Result<R>,
    native: impl AsyncFnOnce(&mut StoreContextMut<'_, CallState>, A) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let next = store.data().current + 1;
    let Some(instance) = store.data().instances.get(next).cloned() else {
        return boxed(|| native(store, arg)).await;
    };
    let caller = std::mem::replace(&mut store.data_mut().current, next);
    let result = boxed(|| next_layer(&instance, store, arg)).await;
    store.data_mut().current = caller;
    result.map_err(|trap| store.data_mut().unwind(next, trap))
}

/// The future `make` makes, on the heap. [`forward`] runs on the calling layer's fiber, and
/// while the layer below runs, every frame above it stays on that stack (see
/// `off_fiber`): inline, either branch's future would be part of `forward`'s caller's frame,
/// and built on the stack before being moved to the heap, 1.5 KiB more of it. Made here, in
/// a frame of its own that is gone before the future is first polled, it costs neither.
#[inline(never)]
fn boxed<F: Future>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    Box::pin(make())
}

/// Re-arms the CPU budget's epoch deadline after the host waited for a module (on a
/// provider, a sleep): the ticks that passed meanwhile were not the module's, and left
/// armed they would charge it one as soon as it runs again.
pub(super) fn resumed_after_wait(store: &mut StoreContextMut<'_, CallState>) {
    store.set_epoch_deadline(1);
}

/// Calls the native provider, off the calling module's fiber ([`call_off_fiber`]).
async fn call_native<T, F>(
    inner: Arc<dyn Provider>,
    deadline: Option<Instant>,
    call: impl FnOnce(Arc<dyn Provider>) -> F,
) -> Result<T, Error>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    call_off_fiber(inner.name(), deadline, call(inner.clone())).await
}
