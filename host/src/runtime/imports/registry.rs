//! `arc:llm/registry`: providers other than the inner one, which the host creates on
//! first use (what fallback walks).

use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;

use super::{HeldRequest, Import};
use crate::runtime::sandbox::CallState;
use crate::runtime::wit::{for_each_version, Bindings};
use crate::target::Target;
use crate::types::Error;

pub(super) const IMPORTS: &[Import] = &[Import {
    interface: "arc:llm/registry",
    add_to_linker: |linker| for_each_version!(add_to_linker, linker),
}];

/// The registry gets the request by value: a copy, as it goes to a bare adapter. A module
/// reaches only the targets its configuration names ([`Module::reach`]); any other is a
/// `config` error naming the module, and the host never creates its provider.
///
/// [`Module::reach`]: crate::runtime::Module::reach
fn add_to_linker<B: Bindings>(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.instance(&B::interface("registry"))?.func_wrap_async(
        "invoke",
        |mut store: StoreContextMut<'_, CallState>, (target, request): (String, Resource<HeldRequest>)| {
            Box::new(async move {
                let answer = invoke(&mut store, target, request).await?;
                Ok((answer.map(B::Response::from).map_err(B::Error::from),))
            })
        },
    )?;
    Ok(())
}

/// Serves one registry call for the calling layer.
async fn invoke(
    store: &mut StoreContextMut<'_, CallState>,
    target: String,
    request: Resource<HeldRequest>,
) -> wasmtime::Result<Result<crate::types::Response, Error>> {
    if let Err(limit) = store.data_mut().budget.count_call() {
        return Err(store.data_mut().exceeded(limit));
    }
    let module = store.data().modules[store.data().current].clone();
    let parsed = match Target::parse(&target) {
        Ok(parsed) => parsed,
        Err(error) => return Ok(Err(Error::from(error))),
    };
    if !module.reach().contains(&parsed) {
        return Ok(Err(unreachable_target(&module.name, &parsed, module.reach())));
    }
    let request = store.data().request(&request)?.clone();
    let registry = store.data().registry.clone();
    let answer = registry.invoke(&target, request).await;
    super::provider::resumed_after_wait(store);
    if let Err(error) = &answer {
        store.data_mut().budget.issue(error);
    }
    Ok(answer)
}

/// The error a module gets for a target outside its reach.
fn unreachable_target(module: &str, target: &Target, reach: &[Target]) -> Error {
    let allowed = if reach.is_empty() {
        "it may reach none: name targets in its configuration (`reach = [...]`, or fallback's `chain`)"
            .to_string()
    } else {
        let names: Vec<String> = reach.iter().map(Target::to_string).collect();
        format!("it may reach only {}", names.join(", "))
    };
    Error::config(module, format!("module `{module}` may not call provider `{target}`: {allowed}"))
}
