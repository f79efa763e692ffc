//! `arc:llm/registry`: providers other than the inner one, which the host creates on
//! first use (what fallback walks).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;

use super::streaming::{bound_until_content, earliest};
use super::{call_off_fiber, HeldRequest, Import};
use crate::runtime::registry::Registry;
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
    let mut instance = linker.instance(&B::interface("registry"))?;
    instance.func_wrap_async(
        "invoke",
        |mut store: StoreContextMut<'_, CallState>, (target, request): (String, Resource<HeldRequest>)| {
            Box::new(async move {
                let deadline = store.data().first_event_deadline;
                let answer = match prepare(&mut store, &target, request)? {
                    Ok((registry, request)) => {
                        let to = target.clone();
                        let call = async move { registry.invoke(&to, request).await };
                        let answer = call_off_fiber(&target, deadline, call).await;
                        finish(&mut store, answer)
                    }
                    Err(error) => Err(error),
                };
                Ok((answer.map(B::Response::from).map_err(B::Error::from),))
            })
        },
    )?;
    if B::STREAMING {
        instance.func_wrap_async(
            "invoke-stream",
            |mut store: StoreContextMut<'_, CallState>,
             (target, request, timeout_ms): (String, Resource<HeldRequest>, Option<u64>)| {
                Box::new(async move {
                    let deadline = earliest(
                        store.data().first_event_deadline,
                        timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
                    );
                    let answer = match prepare(&mut store, &target, request)? {
                        Ok((registry, request)) => {
                            let to = target.clone();
                            let call = async move { registry.invoke_stream(&to, request).await };
                            let answer = call_off_fiber(&target, deadline, call).await;
                            finish(&mut store, answer)
                        }
                        Err(error) => Err(error),
                    };
                    let answer = match answer {
                        Ok(stream) => Ok(store.data_mut().hold_stream(stream)?),
                        Err(error) => Err(error),
                    };
                    if let (Ok(handle), Some(deadline)) = (&answer, deadline) {
                        bound_until_content(store.data_mut(), handle, deadline, &target)?;
                    }
                    Ok((answer,))
                })
            },
        )?;
    }
    Ok(())
}

/// Readies one registry call for the calling layer: counts it against the call allowance,
/// checks the module's reach, and copies the request for the registry (`Err`: the answer
/// the module gets instead).
fn prepare(
    store: &mut StoreContextMut<'_, CallState>,
    target: &str,
    request: Resource<HeldRequest>,
) -> wasmtime::Result<Result<(Arc<dyn Registry>, crate::types::Request), Error>> {
    if let Err(limit) = store.data_mut().budget.count_call() {
        return Err(store.data_mut().exceeded(limit));
    }
    let module = store.data().modules[store.data().current].clone();
    let parsed = match Target::parse(target) {
        Ok(parsed) => parsed,
        Err(error) => return Ok(Err(Error::from(error))),
    };
    if !module.reach().contains(&parsed) {
        return Ok(Err(unreachable_target(&module.name, &parsed, module.reach())));
    }
    let request = store.data().request(&request)?.clone();
    Ok(Ok((store.data().registry.clone(), request)))
}

/// Ends a registry call: the module resumes after its wait, and a `module` error it is
/// handed is one it may pass on.
fn finish<T>(store: &mut StoreContextMut<'_, CallState>, answer: Result<T, Error>) -> Result<T, Error> {
    super::provider::resumed_after_wait(store);
    if let Err(error) = &answer {
        store.data_mut().budget.issue(error);
    }
    answer
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
