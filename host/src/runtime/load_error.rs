//! Why a module could not be loaded, as a kind plus the underlying error as its source.

use std::fmt;

use super::limits;
use super::module::ModuleSource;
use super::wit::Contract;

/// Why a module could not be loaded: which module, from where, and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("module `{module}` ({source_desc}): {kind}")]
pub struct LoadError {
    /// The module's name in its stack.
    pub module: String,
    /// Where its bytes came from.
    pub source_desc: ModuleSource,
    /// What went wrong; its own source is the underlying error, where there is one.
    #[source]
    pub kind: LoadErrorKind,
}

impl LoadError {
    pub(super) fn new(module: &str, source_desc: &ModuleSource, kind: LoadErrorKind) -> Self {
        LoadError { module: module.to_string(), source_desc: source_desc.clone(), kind }
    }
}

/// What went wrong loading a module. A message carries the text of the underlying error as
/// well as exposing it as the source, so that one line says everything.
#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    /// The `.wasm` file could not be read.
    #[error("cannot read the file: {0}")]
    Read(#[source] std::io::Error),
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    /// A core module: arcllm runs components only.
    #[error("this is a core WebAssembly module, not a component; build it for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)")]
    NotAComponent,
    /// Wasmtime could not compile the bytes.
    #[error("invalid component: {}", Causes(&**.0))]
    Compile(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The component imports an interface that is not in `runtime::imports`' list.
    #[error("imports `{import}`, which arcllm does not grant (modules may import arc:llm/*, wasi:clocks/*, wasi:random/*, wasi:io/* and the wasi:cli basics; never files, sockets or HTTP)")]
    ForbiddenImport {
        /// The import's full name.
        import: String,
    },
    /// The component names a version of the `arc:llm` package this host does not speak.
    #[error(
        "is built for arc:llm@{version}, which this host does not support (it supports arc:llm@{}); rebuild it against a supported version of the contract",
        Contract::supported_list()
    )]
    UnsupportedVersion {
        /// The version the component names.
        version: String,
    },
    /// The component names several versions of the `arc:llm` package.
    #[error("names several versions of arc:llm ({}), where a module is built for one", .versions.join(", "))]
    MixedVersions {
        /// Every version it names.
        versions: Vec<String>,
    },
    /// The component does not fit the world of the version it was built for (the source is
    /// wasmtime's type-check error), or names no `arc:llm` interface at all.
    #[error("does not implement the {world} world: {}", Causes(&**.error))]
    WrongWorld {
        /// The world it was checked against.
        world: &'static str,
        /// Wasmtime's type-check error.
        #[source]
        error: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The file is bigger than the limit (`limits.max_module_bytes`); it was not compiled.
    #[error("the module is {size} bytes, over the limit of {max} bytes (limits.max_module_bytes)")]
    TooBig {
        /// The file's size, in bytes.
        size: u64,
        /// The limit, in bytes.
        max: usize,
    },
    /// Compiling took longer than the limit (`limits.compile_timeout_seconds`).
    #[error("compiling took longer than {} (limits.compile_timeout_seconds)", limits::seconds(*.limit))]
    CompileTimeout {
        /// The limit.
        limit: std::time::Duration,
    },
    /// The module rejected its configuration table, or a stack of it cannot be made.
    #[error("invalid configuration: {reason}")]
    Config {
        /// The module's own words, or the host's.
        reason: String,
    },
    /// The module trapped or failed while it was instantiated and configured.
    #[error("{reason}")]
    Start {
        /// What happened.
        reason: String,
    },
}

/// Writes an error and its causes on one line, `outer: inner: …`, as `{:#}` does for
/// wasmtime's errors.
struct Causes<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

/// A component that names no `arc:llm` interface: built for no version of the contract.
#[derive(Debug, thiserror::Error)]
#[error(
    "it neither imports nor exports any arc:llm interface (a module exports arc:llm/provider and arc:llm/module, of a version this host supports: {})",
    Contract::supported_list()
)]
pub(super) struct NoContract;
