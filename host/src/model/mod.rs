//! `load_model`: what agents call. One call returns a model whose `invoke` runs the
//! configured stack — `retry(fallback(adapter))` and any third-party modules — or the bare
//! adapter when no module is enabled.
//!
//! A model serves from an immutable [`Snapshot`] of its stack behind an atomic pointer:
//! [`Model::reload`] builds a whole new snapshot from the files and publishes it only when
//! every part of it loaded, so a call never sees half a stack and a bad file never takes
//! the model down. [`Model::watch`] reloads on its own when those files change.

mod setting;
mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;

pub use setting::{plan, PlannedModule, Setting};
pub use watch::{WatchError, WatchHandle, WatchStatus, DEFAULT_DEBOUNCE};

use crate::config::{Config, ConfigError, ModuleCode};
use crate::providers::{ProviderCatalog, ProviderConfigError, DEFAULT_PROVIDERS_DIR};
use crate::runtime::{
    LazyRegistry, LoadError, Module, ModuleSource, RandomSource, Runtime, RuntimeError, Stack,
};
use crate::types::{Error, Message, Options, Request, Response, ToolDefinition};
use crate::Provider;

/// Starts building a model for `provider` (a name from the provider catalog).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use arcllm::{load_model, Setting, types::Message};
/// let model = load_model("anthropic").retry(Setting::On).build().await?;
/// let answer = model.invoke(vec![Message::user("Hello")], vec![], Default::default()).await?;
/// # Ok(()) }
/// ```
pub fn load_model(provider: &str) -> ModelBuilder {
    ModelBuilder { provider: Some(provider.to_string()), ..ModelBuilder::default() }
}

/// Why a model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Providers(#[from] ProviderConfigError),
    #[error("{}", .0.summary())]
    Provider(Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Options for [`load_model`]; see [`ModelBuilder::build`].
#[derive(Clone, Default)]
pub struct ModelBuilder {
    provider: Option<String>,
    model: Option<String>,
    settings: BTreeMap<String, Setting>,
    config: Option<Config>,
    config_file: Option<PathBuf>,
    catalog: Option<Arc<ProviderCatalog>>,
    runtime: Option<Runtime>,
    random: Option<RandomSource>,
}

impl ModelBuilder {
    /// The model to call (default: config.toml's `defaults.model`, else the provider's
    /// `default_model`).
    pub fn model(mut self, model: &str) -> Self {
        self.model = Some(model.to_string());
        self
    }
    /// The retry module: `Off`, `On`, a `Table` of overrides, or `Unset` (config.toml).
    pub fn retry(self, setting: impl Into<Setting>) -> Self {
        self.module("retry", setting)
    }
    /// The fallback module: `Off`, `On`, a `Table` of overrides, or `Unset` (config.toml).
    pub fn fallback(self, setting: impl Into<Setting>) -> Self {
        self.module("fallback", setting)
    }
    /// Any module configured in config.toml, by name.
    pub fn module(mut self, name: &str, setting: impl Into<Setting>) -> Self {
        self.settings.insert(name.to_string(), setting.into());
        self
    }
    /// The configuration, in memory (default: [`Config::discover`]). A reload keeps it
    /// as it is (module and provider files are still re-read); for reloads that pick up
    /// edits to config.toml, use [`ModelBuilder::config_file`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self.config_file = None;
        self
    }
    /// The configuration file (default: [`Config::discover`]), read now and again by
    /// every [`Model::reload`], so that editing it changes the running stack.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self.config = None;
        self
    }
    /// The provider catalog (default: the configuration's).
    pub fn catalog(mut self, catalog: ProviderCatalog) -> Self {
        self.catalog = Some(Arc::new(catalog));
        self
    }
    /// The wasm runtime (default: the process-wide [`Runtime::shared`]).
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = Some(runtime);
        self
    }
    /// The modules' random source (default: the OS).
    pub fn random(mut self, random: RandomSource) -> Self {
        self.random = Some(random);
        self
    }

    /// Resolves the configuration, creates the adapter, and loads and checks every
    /// enabled module. Built-in module tables are checked even when disabled, so a typo in
    /// config.toml is found now and not the day the module is switched on.
    pub async fn build(self) -> Result<Model, BuildError> {
        let snapshot = self.snapshot(1).await?;
        // Pin what was resolved: a reload swaps modules, never the provider under them.
        let recipe = ModelBuilder {
            provider: Some(snapshot.provider.name().to_string()),
            model: Some(snapshot.provider.model_name().to_string()),
            ..self
        };
        Ok(Model { recipe, current: ArcSwap::from_pointee(snapshot), reloading: tokio::sync::Mutex::new(()) })
    }

    /// The configuration as it is now: the in-memory one, the named file re-read, or the
    /// file discovery finds now.
    fn read_config(&self) -> Result<Config, ConfigError> {
        match (&self.config, &self.config_file) {
            (Some(config), _) => Ok(config.clone()),
            (None, Some(file)) => Config::from_file(file),
            (None, None) => Config::discover(None),
        }
    }

    /// Reads config.toml and the provider files on a blocking thread: they are small, but a
    /// reload runs beside live calls and must not hold an async thread on disk I/O.
    async fn read_files(&self) -> Result<(Config, Arc<ProviderCatalog>, Option<PathBuf>), BuildError> {
        let recipe = self.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<_, BuildError> {
            let config = recipe.read_config()?;
            let catalog = match &recipe.catalog {
                Some(catalog) => catalog.clone(),
                None => Arc::new(config.catalog()?),
            };
            let providers_dir = recipe.providers_dir(&config);
            Ok((config, catalog, providers_dir))
        });
        read.await.map_err(|e| {
            let file = self.config_file.clone().unwrap_or_else(|| "<config>".into());
            BuildError::Config(ConfigError::Read { file, reason: format!("the reading task failed: {e}") })
        })?
    }

    /// The directory of user provider files the catalog is read from, if there is one
    /// (it reads the disk: call it on a blocking thread).
    fn providers_dir(&self, config: &Config) -> Option<PathBuf> {
        match (&self.catalog, &config.file) {
            (None, Some(file)) => {
                let base = file.parent().unwrap_or(Path::new(""));
                Some(base.join(config.providers_dir.as_deref().unwrap_or(DEFAULT_PROVIDERS_DIR)))
                    .filter(|dir| dir.is_dir())
            }
            _ => None,
        }
    }

    /// The files a snapshot of `config` comes from and a reload would re-read.
    fn sources(&self, config: &Config, planned: &[PlannedModule], providers_dir: Option<PathBuf>) -> Sources {
        // An in-memory config is not re-read, so its file is not a source.
        let config_file = if self.config.is_some() { None } else { config.file.clone() };
        let modules = planned
            .iter()
            .filter_map(|p| match &p.code {
                ModuleCode::Wasm(path) => Some(path.clone()),
                _ => None,
            })
            .collect();
        Sources { config_file, providers_dir, modules }
    }

    /// The sources the configuration on disk names now, whether or not it would load: the
    /// watcher follows them too, so that a config naming a module file that is not there
    /// yet reloads once the file arrives.
    async fn pending_sources(&self) -> Option<Sources> {
        let recipe = self.clone();
        tokio::task::spawn_blocking(move || {
            let config = recipe.read_config().ok()?;
            let planned = plan(&config, &recipe.settings).ok()?;
            Some(recipe.sources(&config, &planned, recipe.providers_dir(&config)))
        })
        .await
        .ok()
        .flatten()
    }

    /// Builds a whole snapshot numbered `version`: everything is read, compiled (on
    /// blocking threads, see `Runtime::load_module`) and checked, or nothing is returned.
    async fn snapshot(&self, version: u64) -> Result<Snapshot, BuildError> {
        let (config, catalog, providers_dir) = self.read_files().await?;
        let provider_name = self.provider.clone().unwrap_or_else(|| config.provider.clone());
        let model_name = self.model.clone().or_else(|| config.model.clone());
        let adapter = catalog.create(&provider_name, model_name.as_deref()).map_err(BuildError::Provider)?;
        let planned = plan(&config, &self.settings)?;
        let sources = self.sources(&config, &planned, providers_dir);

        let file = config.file.clone().unwrap_or_else(|| "<embedded default>".into());
        let module_error = |module: &str, source: LoadError| {
            BuildError::Config(ConfigError::Module { file: file.clone(), module: module.to_string(), source })
        };
        // Check the tables of disabled built-ins too, so typos are found before the module
        // is switched on. With no module enabled an unchanged default table (known good) is
        // not loaded: a bare adapter makes no engine.
        let defaults = Config::embedded().modules;
        let unchecked: Vec<_> = (config.modules.iter())
            .filter(|(name, m)| m.code == ModuleCode::Builtin && !planned.iter().any(|p| &p.name == *name))
            .filter(|(name, m)| !planned.is_empty() || defaults.get(*name).is_none_or(|d| d.table != m.table))
            .collect();
        // The engine is made only when some module is to be loaded: a bare adapter runs no wasm.
        let runtime = match (&self.runtime, planned.is_empty() && unchecked.is_empty()) {
            (Some(runtime), _) => Some(runtime.clone()),
            (None, true) => None,
            (None, false) => Some(Runtime::shared()?),
        };
        for (name, module) in unchecked {
            let runtime = runtime.as_ref().expect("made when a table is to be checked");
            load(runtime, name, &module.code, &module.table).await.map_err(|e| module_error(name, e))?;
        }
        let mut modules = Vec::with_capacity(planned.len());
        for p in &planned {
            let runtime = runtime.as_ref().expect("made when a module is to be loaded");
            modules
                .push(load(runtime, &p.name, &p.code, &p.table).await.map_err(|e| module_error(&p.name, e))?);
        }
        let stack: Vec<StackEntry> = modules
            .iter()
            .zip(&planned)
            .map(|(m, p)| StackEntry {
                name: m.name.clone(),
                source: m.source.clone(),
                table: p.table.clone(),
            })
            .collect();
        let provider: Arc<dyn Provider> = match runtime.filter(|_| !modules.is_empty()) {
            None => adapter,
            Some(runtime) => {
                let registry = Arc::new(LazyRegistry::new(catalog.factory()));
                let stack = Stack::new(runtime, modules.clone(), adapter).with_registry(registry);
                Arc::new(match &self.random {
                    Some(random) => stack.with_random(random.clone()),
                    None => stack,
                })
            }
        };
        Ok(Snapshot { version, provider, modules, stack, sources })
    }
}

async fn load(
    runtime: &Runtime,
    name: &str,
    code: &ModuleCode,
    table: &serde_json::Map<String, serde_json::Value>,
) -> Result<Arc<Module>, LoadError> {
    let config = serde_json::Value::Object(table.clone());
    match code {
        ModuleCode::Wasm(path) => runtime.load_module_file(name, path, &config).await,
        ModuleCode::Builtin | ModuleCode::Planned => {
            let bytes = crate::builtin::get(name).unwrap_or_default();
            runtime.load_module(name, ModuleSource::Builtin, bytes.to_vec(), &config).await
        }
    }
}

/// One module of a model's stack, as loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct StackEntry {
    pub name: String,
    pub source: ModuleSource,
    /// The table the module was configured with.
    pub table: serde_json::Map<String, serde_json::Value>,
}

/// The files a model's stack was built from: what a reload re-reads and
/// [`Model::watch`] watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// config.toml, when reloads re-read it (not for an in-memory [`ModelBuilder::config`]).
    pub config_file: Option<PathBuf>,
    /// The directory of the user's provider files, when the catalog comes from one.
    pub providers_dir: Option<PathBuf>,
    /// The `.wasm` file of every enabled third-party module, outermost first.
    pub modules: Vec<PathBuf>,
}

/// One published version of a model's stack: the compiled modules with their tables and
/// the adapter under them. Immutable: a reload publishes a new snapshot instead of changing
/// this one, and a snapshot is freed when the model has moved on and its last call ended.
///
/// A caller that wants several calls on the very same stack (one agent turn, say) can hold
/// [`Model::snapshot`] and call it directly: it is a [`Provider`].
pub struct Snapshot {
    version: u64,
    provider: Arc<dyn Provider>,
    modules: Vec<Arc<Module>>,
    stack: Vec<StackEntry>,
    sources: Sources,
}

impl Snapshot {
    /// 1 for the stack [`ModelBuilder::build`] made, one more for each successful reload.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The modules around the adapter, outermost first (empty: the bare adapter).
    pub fn stack(&self) -> &[StackEntry] {
        &self.stack
    }

    /// The loaded modules, outermost first: what runs, with the tables they were given.
    /// Modules loaded from identical bytes share one compiled component.
    pub fn modules(&self) -> &[Arc<Module>] {
        &self.modules
    }

    /// The files this snapshot was built from.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }
}

impl fmt::Display for Snapshot {
    /// `stack v3 (retry → tag → anthropic/claude-…)`: what a reload log line names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stack v{} (", self.version)?;
        for entry in &self.stack {
            write!(f, "{} → ", entry.name)?;
        }
        write!(f, "{}/{})", self.provider.name(), self.provider.model_name())
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("stack", &self.stack)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Provider for Snapshot {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        self.provider.invoke(request).await
    }
    fn name(&self) -> &str {
        self.provider.name()
    }
    fn model_name(&self) -> &str {
        self.provider.model_name()
    }
    async fn validate_config(&self) -> Result<(), Error> {
        self.provider.validate_config().await
    }
}

/// A ready model: `invoke` runs its stack.
pub struct Model {
    recipe: ModelBuilder,
    current: ArcSwap<Snapshot>,
    /// Held while a reload builds: reloads publish one at a time, in the order they
    /// started, so versions only go up and a slow reload never overwrites a newer one.
    reloading: tokio::sync::Mutex<()>,
}

impl Model {
    /// Sends `messages` with `tools` and `options` through the stack.
    pub async fn invoke(
        &self,
        messages: Vec<Message>,
        tools: Vec<ToolDefinition>,
        options: Options,
    ) -> Result<Response, Error> {
        self.invoke_request(Request { messages, tools, options }).await
    }

    /// Sends a whole request through the stack.
    pub async fn invoke_request(&self, request: Request) -> Result<Response, Error> {
        // Take the snapshot once: the call finishes on it even if it is replaced meanwhile.
        let snapshot = self.current.load_full();
        snapshot.provider.invoke(request).await
    }

    /// The stack calls start on now. Holding it keeps that version alive (and callable)
    /// after a reload replaces it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The version of the current stack: 1 after build, one more per successful reload.
    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    /// The files the current stack was built from (what [`Model::watch`] watches).
    pub fn sources(&self) -> Sources {
        self.current.load().sources.clone()
    }

    /// The modules around the adapter, outermost first (empty: the bare adapter).
    pub fn stack(&self) -> Vec<StackEntry> {
        self.current.load().stack.clone()
    }

    /// The names of [`Model::stack`], outermost first.
    pub fn stack_names(&self) -> Vec<String> {
        self.current.load().stack.iter().map(|e| e.name.clone()).collect()
    }

    /// True when no module is enabled: calls go straight to the adapter, no wasm at all.
    pub fn is_bare(&self) -> bool {
        self.current.load().stack.is_empty()
    }

    /// Rebuilds from the same options and publishes the result as the next version: the
    /// config file is re-read (unless the model was given an in-memory
    /// [`ModelBuilder::config`]), and so are the provider files and every module file.
    /// Unchanged module files cost a hash, not a compile (compiled components are cached
    /// by content); changed ones compile on blocking threads.
    ///
    /// Calls already running finish on the stack they started on; calls that start after
    /// this returns use the new one. The provider and model stay those resolved at build.
    /// On error (a file that cannot be read, is not a component, does not implement the
    /// module world, has a config table its module rejects, a TOML syntax error …) nothing
    /// is published, the current stack keeps serving, and the error names the file.
    pub async fn reload(&self) -> Result<(), BuildError> {
        self.publish_next().await.map(drop)
    }

    /// [`Model::reload`], returning the snapshot it published.
    async fn publish_next(&self) -> Result<Arc<Snapshot>, BuildError> {
        let _one_at_a_time = self.reloading.lock().await;
        let next = self.current.load().version + 1;
        let snapshot = Arc::new(self.recipe.snapshot(next).await?);
        self.current.store(snapshot.clone());
        Ok(snapshot)
    }

    /// Starts reloading this model whenever one of its [`Model::sources`] changes on disk,
    /// after the changes settle for [`DEFAULT_DEBOUNCE`]. Opt-in; stops when the handle is
    /// dropped. Needs a tokio runtime. See [`WatchHandle`].
    pub fn watch(self: &Arc<Self>) -> Result<WatchHandle, WatchError> {
        self.watch_debounced(DEFAULT_DEBOUNCE)
    }

    /// As [`Model::watch`], reloading once changes have settled for `debounce`.
    pub fn watch_debounced(self: &Arc<Self>, debounce: Duration) -> Result<WatchHandle, WatchError> {
        watch::start(self, debounce)
    }

    /// The sources the watcher should follow: the current stack's, and those of the
    /// configuration on disk even when it does not load (yet).
    async fn watch_targets(&self) -> Vec<Sources> {
        let mut targets = vec![self.sources()];
        if let Some(pending) = self.recipe.pending_sources().await {
            if pending != targets[0] {
                targets.push(pending);
            }
        }
        targets
    }
}

#[async_trait]
impl Provider for Model {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        self.invoke_request(request).await
    }
    fn name(&self) -> &str {
        self.recipe.provider.as_deref().unwrap_or_default()
    }
    fn model_name(&self) -> &str {
        self.recipe.model.as_deref().unwrap_or_default()
    }
    async fn validate_config(&self) -> Result<(), Error> {
        self.current.load_full().provider.validate_config().await
    }
}
