//! `arc:llm/registry`: providers other than the inner one, which the host creates on
//! first use (what fallback walks).

use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;

use super::{HeldRequest, Import};
use crate::runtime::sandbox::CallState;
use crate::runtime::wit::latest::arc_llm;

pub(super) const IMPORTS: &[Import] = &[Import { interface: "arc:llm/registry", add_to_linker }];

/// The registry gets the request by value: a copy, as it goes to a bare adapter.
fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
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
    Ok(())
}
