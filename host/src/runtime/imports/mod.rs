//! Everything a module may import, decided in one place: [`IMPORTS`].
//!
//! Each file here serves one host interface and declares, next to the code that links it,
//! the interface names it grants. The linker every module is instantiated with is built
//! from [`IMPORTS`], and the check at load time (a module that imports anything else is
//! refused, before it is type-checked) reads the same list, so what is linked and what is
//! allowed cannot drift apart.

use wasmtime::component::Linker;
use wasmtime::Engine;

use super::sandbox::CallState;

mod lazy_events;
mod lazy_request;
mod logging;
mod provider;
mod registry;
mod state;
mod streaming;
mod types;
mod wasi;

pub use streaming::HeldStream;
pub use types::HeldRequest;
pub(crate) use wasi::context as wasi_context;

/// One interface a module may import, and how the host serves it.
pub(crate) struct Import {
    /// `namespace:package/interface`, without the version: any version of it is granted
    /// (type-checking decides whether the module's version fits the host's).
    pub(crate) interface: &'static str,
    /// Defines the interface in the linker.
    add_to_linker: fn(&mut Linker<CallState>) -> wasmtime::Result<()>,
}

/// What a module may import, one host interface per line.
const IMPORTS: &[&[Import]] = &[
    types::IMPORTS,     // arc:llm/types: the request-handle resource
    streaming::IMPORTS, // arc:llm/streaming (0.3 on): the event-stream resource
    provider::IMPORTS,  // arc:llm/provider: the next layer inward
    registry::IMPORTS,  // arc:llm/registry: other providers, by name
    logging::IMPORTS,   // arc:llm/logging: tracing events tagged with the module's name
    state::IMPORTS,     // arc:llm/state (0.3 on): shared state, in the module's namespace
    wasi::IMPORTS,      // WASI clocks, random, I/O and CLI basics, over a context granting nothing
];

/// The linker every module is instantiated with: exactly the interfaces of [`IMPORTS`].
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    for import in IMPORTS.iter().copied().flatten() {
        (import.add_to_linker)(&mut linker)?;
    }
    Ok(linker)
}

/// Whether a module may import `import` (`namespace:package/interface@version`).
pub(crate) fn granted(import: &str) -> bool {
    let unversioned = import.split_once('@').map_or(import, |(name, _)| name);
    IMPORTS.iter().copied().flatten().any(|granted| granted.interface == unversioned)
}
