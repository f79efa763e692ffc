//! Loading a module: checking that a `.wasm` file is an arcllm module, compiling it once,
//! type-checking it against the `middleware` world once (`InstancePre`), and checking
//! its configuration table before any call is made.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use super::bindings::MiddlewarePre;
use super::engine::Runtime;
use super::sandbox::CallState;
use super::stack::Stack;
use crate::provider::Provider;
use crate::types::{Error, Request, Response};

/// Where a module came from, for error messages and `arcllm config show`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleSource {
    /// Compiled from `guest-modules/` and embedded in the binary.
    Builtin,
    /// A `.wasm` file.
    File(std::path::PathBuf),
    /// Bytes handed over by the embedding program.
    Bytes,
}

impl fmt::Display for ModuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleSource::Builtin => f.write_str("built-in"),
            ModuleSource::File(path) => write!(f, "{}", path.display()),
            ModuleSource::Bytes => f.write_str("in-memory bytes"),
        }
    }
}

/// A compiled, type-checked module with its configuration: ready to instantiate in any store.
pub struct Module {
    pub name: String,
    pub source: ModuleSource,
    /// The configuration table as JSON text, handed to `configure` on every instance.
    pub config: String,
    pub(crate) compiled: Arc<Compiled>,
}

impl Module {
    /// What the component imports, as `namespace:package/interface@version` names.
    pub fn imports(&self) -> &[String] {
        &self.compiled.imports
    }

    /// SHA-256 of the component's bytes.
    pub fn digest(&self) -> &[u8; 32] {
        &self.compiled.digest
    }
}

/// A compiled and type-checked component, shared by every [`Module`] made from the same
/// bytes (see [`ComponentCache`]).
pub(crate) struct Compiled {
    pub(crate) pre: MiddlewarePre<CallState>,
    imports: Vec<String>,
    digest: [u8; 32],
}

/// Compiled components by content hash, so that loading the same bytes again (a reload of
/// an unchanged file, the same module under two configurations) costs a hash, not a
/// compile. Third-party components are held weakly: one that no stack uses any more is
/// freed. Built-in ones are few and embedded in the binary anyway, so they stay compiled.
#[derive(Default)]
pub(crate) struct ComponentCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

enum Entry {
    Pinned(Arc<Compiled>),
    Weak(Weak<Compiled>),
}

impl Entry {
    fn get(&self) -> Option<Arc<Compiled>> {
        match self {
            Entry::Pinned(compiled) => Some(compiled.clone()),
            Entry::Weak(weak) => weak.upgrade(),
        }
    }
}

impl ComponentCache {
    fn get(&self, digest: &[u8; 32]) -> Option<Arc<Compiled>> {
        self.lock().get(digest).and_then(Entry::get)
    }

    fn insert(&self, compiled: &Arc<Compiled>, pinned: bool) {
        let mut entries = self.lock();
        entries.retain(|_, entry| entry.get().is_some());
        let entry =
            if pinned { Entry::Pinned(compiled.clone()) } else { Entry::Weak(Arc::downgrade(compiled)) };
        entries.insert(compiled.digest, entry);
    }

    /// How many compiled components are alive.
    pub(crate) fn len(&self) -> usize {
        self.lock().values().filter(|entry| entry.get().is_some()).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module").field("name", &self.name).field("source", &self.source).finish()
    }
}

/// Why a module could not be loaded. Every variant names the module and its source.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("module `{module}` ({source_desc}): cannot read the file: {reason}")]
    Read { module: String, source_desc: ModuleSource, reason: String },
    #[error("module `{module}` ({source_desc}): not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm { module: String, source_desc: ModuleSource },
    #[error("module `{module}` ({source_desc}): this is a core WebAssembly module, not a component; build it for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)")]
    NotAComponent { module: String, source_desc: ModuleSource },
    #[error("module `{module}` ({source_desc}): invalid component: {reason}")]
    Compile { module: String, source_desc: ModuleSource, reason: String },
    #[error("module `{module}` ({source_desc}): imports `{import}`, which arcllm does not grant (modules may import arc:llm/*, wasi:clocks/*, wasi:random/*, wasi:io/* and the wasi:cli basics; never files, sockets or HTTP)")]
    ForbiddenImport { module: String, source_desc: ModuleSource, import: String },
    #[error(
        "module `{module}` ({source_desc}): does not implement the {} world: {reason}",
        super::bindings::WORLD
    )]
    WrongWorld { module: String, source_desc: ModuleSource, reason: String },
    #[error("module `{module}` ({source_desc}): invalid configuration: {reason}")]
    Config { module: String, source_desc: ModuleSource, reason: String },
    #[error("module `{module}` ({source_desc}): {reason}")]
    Start { module: String, source_desc: ModuleSource, reason: String },
}

/// Interfaces a module may import (the version is not part of the match).
const GRANTED: &[&str] = &[
    "arc:llm/types",
    "arc:llm/provider",
    "arc:llm/registry",
    "arc:llm/logging",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

fn granted(import: &str) -> bool {
    let unversioned = import.split_once('@').map_or(import, |(name, _)| name);
    GRANTED.contains(&unversioned)
}

/// The header of a component (as opposed to a core module): `\0asm`, version 0x0d, layer 1.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
const COMPONENT_LAYER: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

impl Runtime {
    /// Reads, compiles and checks the module at `path`. See [`Runtime::load_module`].
    pub async fn load_module_file(
        &self,
        name: &str,
        path: &Path,
        config: &serde_json::Value,
    ) -> Result<Arc<Module>, LoadError> {
        let source = ModuleSource::File(path.to_path_buf());
        let bytes = tokio::fs::read(path).await.map_err(|e| LoadError::Read {
            module: name.to_string(),
            source_desc: source.clone(),
            reason: e.to_string(),
        })?;
        self.load_module(name, source, bytes, config).await
    }

    /// Compiles `bytes` (or reuses the compiled component for identical bytes), checks
    /// its imports against what arcllm grants and its exports against the `middleware`
    /// world, and has a fresh instance accept `config` (a JSON object), so that a bad
    /// table fails here and not at the first call.
    pub async fn load_module(
        &self,
        name: &str,
        source: ModuleSource,
        bytes: Vec<u8>,
        config: &serde_json::Value,
    ) -> Result<Arc<Module>, LoadError> {
        if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
            return Err(LoadError::NotWasm { module: name.to_string(), source_desc: source });
        }
        if bytes[4..8] != COMPONENT_LAYER {
            return Err(LoadError::NotAComponent { module: name.to_string(), source_desc: source });
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let compiled = match self.inner.components.get(&digest) {
            Some(compiled) => compiled,
            None => {
                let compiled =
                    self.compile(bytes, digest).await.map_err(|e| e.into_load_error(name, &source))?;
                self.inner.components.insert(&compiled, source == ModuleSource::Builtin);
                compiled
            }
        };
        let config_text = if config.is_null() { "{}".to_string() } else { config.to_string() };
        let module = Arc::new(Module {
            name: name.to_string(),
            source: source.clone(),
            config: config_text,
            compiled,
        });
        // Instantiate and configure once now: a bad table or a module that traps on start
        // is a load error, not a surprise at the first call.
        let probe = Stack::new(self.clone(), vec![module.clone()], Arc::new(NotCalled));
        if let Err(e) = probe.instantiate().await {
            let reason = e.message;
            return Err(if e.kind == crate::types::ErrorKind::Config {
                LoadError::Config { module: name.to_string(), source_desc: source, reason }
            } else {
                LoadError::Start { module: name.to_string(), source_desc: source, reason }
            });
        }
        Ok(module)
    }
}

/// A load failure before the module has a name attached (compilation is shared by name).
enum CompileError {
    Compile(String),
    Forbidden(String),
    WrongWorld(String),
}

impl CompileError {
    fn into_load_error(self, name: &str, source: &ModuleSource) -> LoadError {
        let (module, source_desc) = (name.to_string(), source.clone());
        match self {
            CompileError::Compile(reason) => LoadError::Compile { module, source_desc, reason },
            CompileError::Forbidden(import) => LoadError::ForbiddenImport { module, source_desc, import },
            CompileError::WrongWorld(reason) => LoadError::WrongWorld { module, source_desc, reason },
        }
    }
}

impl Runtime {
    /// Compiles on a blocking thread (it is CPU-bound), then checks imports against what
    /// arcllm grants and exports against the `middleware` world.
    async fn compile(&self, bytes: Vec<u8>, digest: [u8; 32]) -> Result<Arc<Compiled>, CompileError> {
        let inner = self.inner.clone();
        let component =
            tokio::task::spawn_blocking(move || inner.artifacts.component(&inner.engine, &bytes, &digest))
                .await
                .map_err(|e| CompileError::Compile(e.to_string()))?
                .map_err(|e| CompileError::Compile(format!("{e:#}")))?;
        let imports: Vec<String> =
            component.component_type().imports(self.engine()).map(|(name, _)| name.to_string()).collect();
        if let Some(import) = imports.iter().find(|i| !granted(i)) {
            return Err(CompileError::Forbidden(import.clone()));
        }
        let wrong_world = |e: wasmtime::Error| CompileError::WrongWorld(format!("{e:#}"));
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = MiddlewarePre::new(instance_pre).map_err(wrong_world)?;
        Ok(Arc::new(Compiled { pre, imports, digest }))
    }
}

/// The inner provider of the load-time probe, which only configures the module.
struct NotCalled;

#[async_trait::async_trait]
impl Provider for NotCalled {
    async fn invoke(&self, _request: Request) -> Result<Response, Error> {
        Err(Error::config("probe", "modules may not call their inner provider from `configure`"))
    }
    fn name(&self) -> &str {
        "probe"
    }
    fn model_name(&self) -> &str {
        "probe"
    }
}
