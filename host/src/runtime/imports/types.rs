//! `arc:llm/types`: the `request-handle` resource, whose requests live in the call's
//! resource table.

use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::StoreContextMut;

use super::Import;
use crate::runtime::sandbox::CallState;
use crate::runtime::wit::latest::arc_llm;
use crate::types::Request;

pub(super) const IMPORTS: &[Import] = &[Import { interface: "arc:llm/types", add_to_linker }];

/// What a `request-handle` refers to: the request itself, kept in the call's resource
/// table so that modules pass it on by handle instead of copying it into each other, and
/// the bytes it is charged to the call (0 for the caller's own request; see
/// `CallState::hold_module_request`).
pub struct HeldRequest(pub Request, pub(crate) usize);

/// A module that rewrites the request makes a new handle, and one that reads it gets a
/// copy; the handles the host lends are never copied. The requests behind the handles a
/// module makes are bounded in bytes per call: the constructor cannot return an error, so
/// a module going beyond the bound traps, and the call fails naming it.
fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(arc_llm!("types"))?;
    instance.resource("request-handle", ResourceType::host::<HeldRequest>(), |mut store, rep| {
        store.data_mut().drop_request(Resource::new_own(rep))
    })?;
    instance.func_wrap(
        "[constructor]request-handle",
        |mut store: StoreContextMut<'_, CallState>, (request,): (Request,)| {
            Ok((store.data_mut().hold_module_request(request)?,))
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
