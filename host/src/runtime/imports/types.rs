//! `arc:llm/types`: the `request-handle` resource, whose requests live in the call's
//! resource table.

use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::StoreContextMut;

use super::lazy_request::LazyRequest;
use super::Import;
use crate::runtime::sandbox::CallState;
use crate::runtime::wit::{for_each_version, Bindings};

pub(super) const IMPORTS: &[Import] = &[Import {
    interface: "arc:llm/types",
    add_to_linker: |linker| for_each_version!(add_to_linker, linker),
}];

/// What a `request-handle` refers to: the request itself, kept in the call's resource
/// table so that modules pass it on by handle instead of copying it into each other, and
/// the bytes it is charged to the call (0 for the caller's own request; see
/// `CallState::hold_module_request`).
pub struct HeldRequest(pub crate::types::Request, pub(crate) usize);

/// A module that rewrites the request makes a new handle, and one that reads it gets a
/// copy; the handles the host lends are never copied. The requests behind the handles a
/// module makes are bounded in bytes per call: the constructor cannot return an error, so
/// a module going beyond the bound traps, and the call fails naming it.
/// Every version's `request-handle` is the same host resource: a handle a 0.2 layer makes
/// can be forwarded to a 0.3 layer, and the other way round.
fn add_to_linker<B: Bindings>(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(&B::interface("types"))?;
    instance.resource("request-handle", ResourceType::host::<HeldRequest>(), |mut store, rep| {
        store.data_mut().drop_request(Resource::new_own(rep))
    })?;
    // Lifted lazily and copied out only as far as the call's bound allows: see
    // `lazy_request`.
    instance.func_wrap(
        "[constructor]request-handle",
        |mut store: StoreContextMut<'_, CallState>, (request,): (LazyRequest,)| {
            let (left, limit) = store.data().request_bytes_left();
            let request = request.copy_out(&mut store, left, limit)?;
            Ok((store.data_mut().hold_module_request(request)?,))
        },
    )?;
    instance.func_wrap(
        "[method]request-handle.get",
        |store: StoreContextMut<'_, CallState>, (handle,): (Resource<HeldRequest>,)| {
            Ok((B::Request::from(store.data().request(&handle)?.clone()),))
        },
    )?;
    Ok(())
}
