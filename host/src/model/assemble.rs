//! Turns a model's recipe into a [`Snapshot`]: reads the configuration and the provider
//! catalog as they are now, plans the modules, loads them, and stacks them on the adapter.
//! Build and every reload go through here, so both check exactly the same things.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::snapshot::RequestDefaults;
use super::targets;
use super::{plan, BuildError, PlannedModule, Setting, Snapshot, Sources, StackEntry};
use crate::config::{Config, ConfigError, ModuleCode};
use crate::providers::{ProviderCatalog, DEFAULT_PROVIDERS_DIR};
use crate::runtime::{LoadError, Module, ModuleSource, RandomSource, Runtime, Stack};
use crate::state::StateStore;
use crate::Provider;

/// Where a model's configuration comes from.
#[derive(Clone, Default)]
pub(super) enum ConfigInput {
    /// In memory: every assembly uses it as it is.
    Given(Config),
    /// A file, re-read by every assembly.
    File(PathBuf),
    /// Whatever [`Config::discover`] finds at the time of each assembly.
    #[default]
    Discover,
}

/// The inputs a model is (re)built from. After the first build the provider and model
/// are pinned to what it resolved, so that a reload swaps modules but never the adapter's
/// provider or model.
#[derive(Clone)]
pub(super) struct Recipe {
    pub(super) config: ConfigInput,
    /// Replaces the catalog the configuration would give.
    pub(super) catalog: Option<Arc<ProviderCatalog>>,
    /// The provider's name (default: the configuration's).
    pub(super) provider: Option<String>,
    /// The model's name (default: the configuration's, else the provider's).
    pub(super) model: Option<String>,
    /// The caller's per-module settings, laid over config.toml.
    pub(super) settings: BTreeMap<String, Setting>,
    /// The wasm runtime (default: [`Runtime::shared`]).
    pub(super) runtime: Option<Runtime>,
    /// The modules' random source (default: the OS).
    pub(super) random: Option<RandomSource>,
    /// The modules' shared state (default: the process-wide store for config.toml's
    /// `[state]`).
    pub(super) state: Option<StateStore>,
}

impl Recipe {
    /// This recipe with `provider` and `model` (what its first snapshot resolved) in
    /// place of any the configuration would give.
    pub(super) fn pinned_to(self, provider: &str, model: &str) -> Self {
        Recipe { provider: Some(provider.to_string()), model: Some(model.to_string()), ..self }
    }

    /// Builds a whole snapshot numbered `version` (a reload numbers it when it publishes
    /// it): everything is read, compiled (on
    /// blocking threads, see `Runtime::load_module`) and checked, or nothing is returned.
    pub(super) async fn assemble(&self, version: u64) -> Result<Snapshot, BuildError> {
        let (config, catalog, providers_dir) = self.read_files().await?;
        let provider_name = self.provider.clone().unwrap_or_else(|| config.provider.clone());
        let model_name = self.model.clone().or_else(|| config.model.clone());
        let adapter = catalog.create(&provider_name, model_name.as_deref()).map_err(BuildError::Provider)?;
        let planned = plan(&config, &self.settings)?;
        let sources = self.sources(&config, &planned, providers_dir);
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }

        let file = config.file.clone().unwrap_or_else(|| "<embedded default>".into());
        let module_error = |module: &str, source: LoadError| {
            BuildError::Config(ConfigError::Module { file: file.clone(), module: module.to_string(), source })
        };
        // Check the tables of disabled built-ins too, so typos are found before the module
        // is switched on. An unchanged default table is known good and not loaded: a
        // disabled built-in then costs no compiled code in memory (about 0.5 MiB each) and
        // no instantiation at start-up, and a bare adapter makes no engine.
        let defaults = Config::embedded().modules;
        let unchecked: Vec<_> = (config.modules.iter())
            .filter(|(name, m)| m.code == ModuleCode::Builtin && !planned.iter().any(|p| &p.name == *name))
            .filter(|(name, m)| defaults.get(*name).is_none_or(|d| d.table != m.table))
            .collect();
        // The engine is made only when some module is to be loaded: a bare adapter runs no
        // wasm. config.toml's `[limits]` bound this model's loads and calls.
        let runtime = match (&self.runtime, planned.is_empty() && unchecked.is_empty()) {
            (Some(runtime), _) => Some(runtime.clone()),
            (None, true) => None,
            (None, false) => Some(Runtime::shared()?),
        }
        .map(|runtime| runtime.with_call_limits(config.limits.clone()))
        .map(|runtime| match config.cache.disk_override() {
            Some(dir) => runtime.with_disk_cache(dir),
            None => runtime,
        });
        for (name, module) in unchecked {
            let runtime = runtime.as_ref().expect("made when a table is to be checked");
            load(runtime, name, &module.code, &module.table).await.map_err(|e| module_error(name, e))?;
        }
        let mut modules = Vec::with_capacity(planned.len());
        for p in &planned {
            let runtime = runtime.as_ref().expect("made when a module is to be loaded");
            let module =
                load(runtime, &p.name, &p.code, &p.table).await.map_err(|e| module_error(&p.name, e))?;
            let module = module.with_share_state(p.share_state);
            modules.push(if p.reach.is_empty() {
                module
            } else {
                let mut reach = module.reach().to_vec();
                reach.extend(p.reach.iter().filter(|t| !module.reach().contains(t)).cloned());
                module.with_reach(reach)
            });
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
                let state = match &self.state {
                    Some(state) => state.clone(),
                    None => StateStore::shared(&config.state).map_err(|source| {
                        BuildError::Config(ConfigError::State { file: file.clone(), source })
                    })?,
                };
                let registry =
                    Arc::new(targets::registry(&catalog, &runtime, &modules, &state, self.random.as_ref()));
                let stack =
                    Stack::new(runtime, modules.clone(), adapter).with_registry(registry).with_state(state);
                Arc::new(match &self.random {
                    Some(random) => stack.with_random(random.clone()),
                    None => stack,
                })
            }
        };
        let defaults = RequestDefaults { temperature: config.temperature, max_tokens: config.max_tokens };
        Ok(Snapshot { version, provider, modules, stack, sources, defaults })
    }

    /// The sources the configuration on disk names now, whether or not it would load: the
    /// watcher follows them too, so that a config naming a module file that is not there
    /// yet reloads once the file arrives.
    pub(super) async fn pending_sources(&self) -> Option<Sources> {
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

    /// The configuration as it is now: the in-memory one, the named file re-read, or the
    /// file discovery finds now.
    fn read_config(&self) -> Result<Config, ConfigError> {
        match &self.config {
            ConfigInput::Given(config) => Ok(config.clone()),
            ConfigInput::File(file) => Config::from_file(file),
            ConfigInput::Discover => Config::discover(None),
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
        read.await.map_err(|source| {
            let file = match &self.config {
                ConfigInput::File(file) => file.clone(),
                _ => "<config>".into(),
            };
            BuildError::Config(ConfigError::ReadTask { file, source })
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
        let config_file = match self.config {
            ConfigInput::Given(_) => None,
            ConfigInput::File(_) | ConfigInput::Discover => config.file.clone(),
        };
        let modules = planned
            .iter()
            .filter_map(|p| match &p.code {
                ModuleCode::Wasm(path) => Some(path.clone()),
                _ => None,
            })
            .collect();
        Sources { config_file, providers_dir, modules }
    }
}

/// Loads one module with its table: a third-party module from its file, a built-in from
/// the bytes embedded in this crate.
async fn load(
    runtime: &Runtime,
    name: &str,
    code: &ModuleCode,
    table: &serde_json::Map<String, serde_json::Value>,
) -> Result<Arc<Module>, LoadError> {
    let config = serde_json::Value::Object(table.clone());
    match code {
        ModuleCode::Wasm(path) => runtime.load_module_file(name, path, &config).await,
        ModuleCode::Builtin => {
            let bytes = crate::builtin::get(name).unwrap_or_default();
            runtime.load_module(name, ModuleSource::Builtin, bytes.to_vec(), &config).await
        }
    }
}
