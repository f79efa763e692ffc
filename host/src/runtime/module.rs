//! Loading a module: checking that a `.wasm` file is an arcllm module, compiling it once,
//! checking its imports and the contract version it was built for, type-checking it
//! against that version's `middleware` world once (`InstancePre`), and checking its
//! configuration table before any call is made.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use super::engine::Runtime;
use super::imports;
use super::load_error::NoContract;
use super::load_error::{LoadError, LoadErrorKind};
use super::stack::Stack;
use super::wit::{Contract, MiddlewarePre};
use crate::provider::Provider;
use crate::target::Target;
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
    /// The module's name: its `[modules.<name>]` key, used in every error and log line.
    pub name: String,
    /// Where its code came from.
    pub source: ModuleSource,
    /// The configuration table as JSON text, handed to `configure` on every instance.
    pub config: String,
    /// Whether this module's instances may serve more than one call. Off by default: each
    /// call then gets fresh instances, so nothing one call leaves in a module's memory
    /// (a prompt kept in a global) reaches another call. See [`Module::with_share_state`].
    pub share_state: bool,
    pub(crate) compiled: Arc<Compiled>,
    /// The registry targets this module may call.
    reach: Vec<Target>,
}

impl Module {
    /// The providers this module may call through the registry, exactly as listed: the
    /// built-in fallback's `chain`, or the targets config.toml's `reach` key names for any
    /// other module. Empty: none. The inner provider is always reachable.
    pub fn reach(&self) -> &[Target] {
        &self.reach
    }

    /// This module (sharing its compiled component and configuration) allowed to reach
    /// exactly `reach` through the registry.
    pub fn with_reach(&self, reach: Vec<Target>) -> Arc<Module> {
        Arc::new(Module { reach, ..self.copy() })
    }

    /// This module with `share_state` set. When every module of a stack shares state, a
    /// call may be served by instances an earlier call left behind: faster (no
    /// instantiation and `configure` per call), but the module's globals then carry data
    /// from one call into the next, and between whoever makes those calls. Only for
    /// modules trusted to keep nothing per call.
    pub fn with_share_state(&self, share: bool) -> Arc<Module> {
        Arc::new(Module { share_state: share, ..self.copy() })
    }

    /// A copy sharing the compiled component.
    fn copy(&self) -> Module {
        Module {
            name: self.name.clone(),
            source: self.source.clone(),
            config: self.config.clone(),
            share_state: self.share_state,
            compiled: self.compiled.clone(),
            reach: self.reach.clone(),
        }
    }

    /// What the component imports, as `namespace:package/interface@version` names.
    pub fn imports(&self) -> &[String] {
        &self.compiled.imports
    }

    /// SHA-256 of the component's bytes.
    pub fn digest(&self) -> &[u8; 32] {
        &self.compiled.digest
    }

    /// The version of the `arc:llm` contract the module was built for, as its component
    /// names it (`0.2.0`).
    pub fn contract_version(&self) -> &str {
        &self.compiled.version
    }
}

/// A compiled and type-checked component, shared by every [`Module`] made from the same
/// bytes (see [`ComponentCache`]).
pub(crate) struct Compiled {
    pub(crate) pre: MiddlewarePre,
    imports: Vec<String>,
    version: String,
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
        let read_error = |e| LoadError::new(name, &source, LoadErrorKind::Read(e));
        // Refuse an oversized file before reading it, and read no more than the limit
        // even if it grows meanwhile.
        let max = self.call_limits.max_module_bytes;
        let size = tokio::fs::metadata(path).await.map_err(read_error)?.len();
        if size > max as u64 {
            return Err(LoadError::new(name, &source, LoadErrorKind::TooBig { size, max }));
        }
        let file = tokio::fs::File::open(path).await.map_err(read_error)?;
        let mut bytes = Vec::with_capacity(size as usize);
        let limit = max as u64 + 1;
        tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::AsyncReadExt::take(file, limit), &mut bytes)
            .await
            .map_err(read_error)?;
        self.load_module(name, source, bytes, config).await
    }

    /// Compiles `bytes` (or reuses the compiled component for identical bytes), checks
    /// its imports against what arcllm grants, the version of the contract it was built
    /// for against those this host supports, and its exports against that version's
    /// `middleware` world, and has a fresh instance accept `config` (a JSON object), so
    /// that a bad table fails here and not at the first call.
    pub async fn load_module(
        &self,
        name: &str,
        source: ModuleSource,
        bytes: Vec<u8>,
        config: &serde_json::Value,
    ) -> Result<Arc<Module>, LoadError> {
        let max = self.call_limits.max_module_bytes;
        if bytes.len() > max {
            return Err(LoadError::new(
                name,
                &source,
                LoadErrorKind::TooBig { size: bytes.len() as u64, max },
            ));
        }
        if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
            return Err(LoadError::new(name, &source, LoadErrorKind::NotWasm));
        }
        if bytes[4..8] != COMPONENT_LAYER {
            return Err(LoadError::new(name, &source, LoadErrorKind::NotAComponent));
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let compiled = match self.inner.components.get(&digest) {
            Some(compiled) => compiled,
            None => {
                let compiled =
                    self.compile(bytes, digest).await.map_err(|kind| LoadError::new(name, &source, kind))?;
                self.inner.components.insert(&compiled, source == ModuleSource::Builtin);
                compiled
            }
        };
        let config_text = if config.is_null() { "{}".to_string() } else { config.to_string() };
        let module = Arc::new(Module {
            name: name.to_string(),
            source: source.clone(),
            config: config_text,
            share_state: false,
            compiled,
            reach: default_reach(name, &source, config),
        });
        // Instantiate and configure once now: a bad table or a module that traps on start
        // is a load error, not a surprise at the first call.
        let probe = Stack::new(self.clone(), vec![module.clone()], Arc::new(NotCalled));
        if let Err(e) = probe.instantiate().await {
            let reason = e.message;
            let kind = if e.kind == crate::types::ErrorKind::Config {
                LoadErrorKind::Config { reason }
            } else {
                LoadErrorKind::Start { reason }
            };
            return Err(LoadError::new(name, &source, kind));
        }
        Ok(module)
    }
}

impl Runtime {
    /// Compiles on a blocking thread (it is CPU-bound), checks the imports against what
    /// arcllm grants, finds the version of the contract the component was built for, and
    /// type-checks it against that version's `middleware` world. The version is checked
    /// first, so that a module for a version this host does not speak is refused as such,
    /// not with a type mismatch.
    async fn compile(&self, bytes: Vec<u8>, digest: [u8; 32]) -> Result<Arc<Compiled>, LoadErrorKind> {
        let inner = self.inner.clone();
        // A blocking thread cannot be stopped: past the limit the load returns, and the
        // thread's result is dropped whenever it finishes.
        let limit = self.call_limits.compile_timeout;
        let disk = self.disk_cache();
        let compiling = tokio::task::spawn_blocking(move || {
            inner.artifacts.component(&inner.engine, &bytes, &digest, disk.as_ref())
        });
        let component = tokio::time::timeout(limit, compiling)
            .await
            .map_err(|_elapsed| LoadErrorKind::CompileTimeout { limit })?
            .map_err(|e| LoadErrorKind::Compile(e.into()))?
            .map_err(|e| LoadErrorKind::Compile(e.into_boxed_dyn_error()))?;
        let component_type = component.component_type();
        let imports: Vec<String> =
            component_type.imports(self.engine()).map(|(name, _)| name.to_string()).collect();
        if let Some(import) = imports.iter().find(|i| !imports::granted(i)) {
            return Err(LoadErrorKind::ForbiddenImport { import: import.clone() });
        }
        let exports = component_type.exports(self.engine()).map(|(name, _)| name);
        let version = contract_version(imports.iter().map(String::as_str).chain(exports))?;
        let contract = Contract::find(&version)
            .ok_or_else(|| LoadErrorKind::UnsupportedVersion { version: version.clone() })?;
        let wrong_world = |e: wasmtime::Error| LoadErrorKind::WrongWorld {
            world: contract.world,
            error: e.into_boxed_dyn_error(),
        };
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = contract.bind(instance_pre).map_err(wrong_world)?;
        Ok(Arc::new(Compiled { pre, imports, version, digest }))
    }
}

/// The version of the `arc:llm` package that a component's import and export names carry
/// (`arc:llm/provider@0.2.0`): the version of the contract it was built for.
fn contract_version<'a>(names: impl Iterator<Item = &'a str>) -> Result<String, LoadErrorKind> {
    let mut versions: Vec<String> = Vec::new();
    for name in names.filter(|name| name.starts_with("arc:llm/")) {
        let version = name.split_once('@').map_or("(no version)", |(_, version)| version);
        if !versions.iter().any(|v| v == version) {
            versions.push(version.to_string());
        }
    }
    match versions.len() {
        0 => Err(LoadErrorKind::WrongWorld { world: super::wit::latest::WORLD, error: Box::new(NoContract) }),
        1 => Ok(versions.remove(0)),
        _ => Err(LoadErrorKind::MixedVersions { versions }),
    }
}

/// What a module may reach until told otherwise: the built-in fallback its `chain` (the
/// targets it was configured to try), any other module nothing.
fn default_reach(name: &str, source: &ModuleSource, config: &serde_json::Value) -> Vec<Target> {
    if *source != ModuleSource::Builtin || name != "fallback" {
        return Vec::new();
    }
    let chain = config.get("chain").and_then(serde_json::Value::as_array);
    chain.into_iter().flatten().filter_map(|entry| Target::parse(entry.as_str()?).ok()).collect()
}

/// The inner provider of the load-time probe, which only configures the module.
pub(crate) struct NotCalled;

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
