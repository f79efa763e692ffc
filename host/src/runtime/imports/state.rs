//! `arc:llm/state`: shared state across calls and replicas (`crate::state`), for modules
//! of contract 0.3 and later.
//!
//! The host names every key: the calling module's name (from the stack, never from the
//! module) and the kind of state around the module's own key, so no module reaches another's
//! state. Each operation is bounded (key and value sizes, windows, the backend's timeout),
//! counted against the call's allowance of state operations
//! (`HostLimits::state_ops_per_call`; one more stops the module like any other limit), and
//! a wait on the backend re-arms the CPU budget's epoch deadline as other waits do.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::StoreContextMut;

use super::Import;
use crate::runtime::module::Module;
use crate::runtime::sandbox::CallState;
use crate::runtime::wit::since_v0_3::arc::llm::state::{
    Slot as WitSlot, StateError as WitError, Stored as WitStored, Taken, Window as WitWindow,
    WindowKind as WitKind,
};
use crate::state::{Bucket, Slot, StateError, StateKey, StateStore, Window, WindowKind};

pub(super) const IMPORTS: &[Import] = &[Import { interface: "arc:llm/state", add_to_linker }];

/// The interface's full name: it exists from contract 0.3 on.
const INTERFACE: &str = concat!("arc:llm/state@", crate::runtime::wit::since_v0_3::version!());

type Answer<T> = wasmtime::Result<(Result<T, WitError>,)>;

fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(INTERFACE)?;
    instance.func_wrap_async(
        "take",
        |mut store: StoreContextMut<'_, CallState>,
         (key, capacity, refill, cost): (String, f64, f64, f64)| {
            Box::new(async move {
                let (module, state) = begin(&mut store)?;
                let key = StateKey { module: &module.name, slot: Slot::Bucket, key: key.as_bytes() };
                let bucket = Bucket { capacity, refill_per_second: refill };
                let answer = state.take(key, bucket, cost).await;
                finish(
                    &mut store,
                    answer.map(|t| Taken { granted: t.granted, wait_ms: ms(t.wait), remaining: t.remaining }),
                )
            })
        },
    )?;
    instance.func_wrap_async(
        "incr",
        |mut store: StoreContextMut<'_, CallState>, (key, window, by): (String, WitWindow, u64)| {
            Box::new(async move {
                let (module, state) = begin(&mut store)?;
                let key = StateKey { module: &module.name, slot: Slot::Counter, key: key.as_bytes() };
                let answer = state.incr(key, window_of(window), by).await;
                finish(&mut store, answer)
            })
        },
    )?;
    instance.func_wrap_async(
        "read",
        |mut store: StoreContextMut<'_, CallState>, (key, window): (String, WitWindow)| {
            Box::new(async move {
                let (module, state) = begin(&mut store)?;
                let key = StateKey { module: &module.name, slot: Slot::Counter, key: key.as_bytes() };
                let answer = state.read(key, window_of(window)).await;
                finish(&mut store, answer)
            })
        },
    )?;
    instance.func_wrap_async("get", |mut store: StoreContextMut<'_, CallState>, (key,): (String,)| {
        Box::new(async move {
            let (module, state) = begin(&mut store)?;
            let key = StateKey { module: &module.name, slot: Slot::Value, key: key.as_bytes() };
            let answer = state.get(key).await;
            finish(&mut store, answer.map(|v| v.map(|s| WitStored { value: s.value, age_ms: ms(s.age) })))
        })
    })?;
    instance.func_wrap_async(
        "cas",
        |mut store: StoreContextMut<'_, CallState>,
         (key, expected, new, ttl_ms): (String, Option<Vec<u8>>, Option<Vec<u8>>, u64)| {
            Box::new(async move {
                let (module, state) = begin(&mut store)?;
                let key = StateKey { module: &module.name, slot: Slot::Value, key: key.as_bytes() };
                let ttl = Duration::from_millis(ttl_ms);
                let answer = state.cas(key, expected.as_deref(), new.as_deref(), ttl).await;
                finish(&mut store, answer.map(|s| s.swapped))
            })
        },
    )?;
    instance.func_wrap_async(
        "delete",
        |mut store: StoreContextMut<'_, CallState>, (slot, key): (WitSlot, String)| {
            Box::new(async move {
                let (module, state) = begin(&mut store)?;
                let slot = match slot {
                    WitSlot::Bucket => Slot::Bucket,
                    WitSlot::Counter => Slot::Counter,
                    WitSlot::Value => Slot::Value,
                };
                let answer = state.delete(StateKey { module: &module.name, slot, key: key.as_bytes() }).await;
                finish(&mut store, answer)
            })
        },
    )?;
    Ok(())
}

/// Counts the operation against the call's allowance (one too many stops the module), and
/// returns the calling module's name and the store.
fn begin(store: &mut StoreContextMut<'_, CallState>) -> wasmtime::Result<(Arc<Module>, StateStore)> {
    let data = store.data_mut();
    let max = data.host_limits.state_ops_per_call;
    if let Err(limit) = data.usage.count_state_op(max) {
        return Err(data.exceeded(limit));
    }
    Ok((data.modules[data.current].clone(), data.state.clone()))
}

/// Re-arms the epoch deadline after the wait, and turns the store's answer into the WIT's.
fn finish<T>(store: &mut StoreContextMut<'_, CallState>, answer: Result<T, StateError>) -> Answer<T> {
    super::provider::resumed_after_wait(store);
    Ok((answer.map_err(|error| match error {
        StateError::Invalid(why) => WitError::Invalid(why),
        other => WitError::Unavailable(other.to_string()),
    }),))
}

fn window_of(window: WitWindow) -> Window {
    let kind = match window.kind {
        WitKind::Fixed => WindowKind::Fixed,
        WitKind::Sliding => WindowKind::Sliding,
    };
    Window { length: Duration::from_millis(window.length_ms), kind }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
