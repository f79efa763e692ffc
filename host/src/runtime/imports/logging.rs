//! `arc:llm/logging`: `tracing` events tagged with the name of the module that logs.

use wasmtime::component::Linker;
use wasmtime::StoreContextMut;

use super::Import;
use crate::runtime::sandbox::CallState;
use crate::runtime::wit::latest::arc::llm::logging::Level;
use crate::runtime::wit::latest::arc_llm;

pub(super) const IMPORTS: &[Import] = &[Import { interface: "arc:llm/logging", add_to_linker }];

/// Events go to the `arcllm::module` target, with the calling layer's name as `module`.
fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
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
    Ok(())
}
