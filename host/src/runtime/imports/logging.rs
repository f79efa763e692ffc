//! `arc:llm/logging`: `tracing` events tagged with the name of the module that logs.
//!
//! A module's log line is bounded before it reaches the host's log: at most
//! `HostLimits::log_line_bytes` of it (cut with a marker), its control characters escaped
//! (a newline cannot start a forged host line, an escape sequence cannot recolour the
//! terminal), and at most `HostLimits::log_lines_per_call` lines per call, after which one
//! warning says that the rest are dropped. The message is read in place from the module's
//! memory: only the part that is logged is copied.

use wasmtime::component::{Linker, WasmStr};
use wasmtime::StoreContextMut;

use super::Import;
use crate::runtime::bounds::log_line;
use crate::runtime::sandbox::CallState;
use crate::runtime::wit::latest::arc::llm::logging::Level;
use crate::runtime::wit::{for_each_version, Bindings};

pub(super) const IMPORTS: &[Import] = &[Import {
    interface: "arc:llm/logging",
    add_to_linker: |linker| for_each_version!(add_to_linker, linker),
}];

const TARGET: &str = "arcllm::module";

/// Whether an event at `level` from a module would be recorded: lines nobody records are
/// neither read nor counted.
fn enabled(level: Level) -> bool {
    match level {
        Level::Trace => tracing::enabled!(target: TARGET, tracing::Level::TRACE),
        Level::Debug => tracing::enabled!(target: TARGET, tracing::Level::DEBUG),
        Level::Info => tracing::enabled!(target: TARGET, tracing::Level::INFO),
        Level::Warn => tracing::enabled!(target: TARGET, tracing::Level::WARN),
        Level::Error => tracing::enabled!(target: TARGET, tracing::Level::ERROR),
    }
}

/// Events go to the `arcllm::module` target, with the calling layer's name as `module`.
fn add_to_linker<B: Bindings>(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.instance(&B::interface("logging"))?.func_wrap(
        "log",
        |mut store: StoreContextMut<'_, CallState>, (level, message): (B::Level, WasmStr)| {
            let level: Level = level.into();
            if !enabled(level) {
                return Ok(());
            }
            let state = store.data();
            let (max_lines, max_bytes) = (state.host_limits.log_lines_per_call, state.host_limits.log_line_bytes);
            let logged = state.usage.log_lines;
            if logged > max_lines {
                return Ok(());
            }
            let module = state.modules[state.current].name.clone();
            store.data_mut().usage.log_lines += 1;
            if logged == max_lines {
                tracing::warn!(target: TARGET, module = %module, "module `{module}` logged {max_lines} lines in this call; its further lines in this call are dropped");
                return Ok(());
            }
            let line = log_line(&message.to_str(&store)?, max_bytes);
            match level {
                Level::Trace => tracing::trace!(target: TARGET, module = %module, "{line}"),
                Level::Debug => tracing::debug!(target: TARGET, module = %module, "{line}"),
                Level::Info => tracing::info!(target: TARGET, module = %module, "{line}"),
                Level::Warn => tracing::warn!(target: TARGET, module = %module, "{line}"),
                Level::Error => tracing::error!(target: TARGET, module = %module, "{line}"),
            }
            Ok(())
        },
    )?;
    Ok(())
}
