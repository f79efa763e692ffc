//! `load_model`: what agents call. One call returns a model whose `invoke` runs the
//! configured chain — `retry(fallback(adapter))` and any third-party modules — or the bare
//! adapter when no module is enabled.

mod setting;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;

pub use setting::{plan, PlannedModule, Setting};

use crate::config::{Config, ConfigError, ModuleCode};
use crate::providers::{ProviderCatalog, ProviderConfigError};
use crate::runtime::{Chain, LazyRegistry, LoadError, ModuleSource, RandomSource, Runtime, RuntimeError};
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
    /// The configuration (default: [`Config::discover`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
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
        let snapshot = self.snapshot().await?;
        // Pin what was resolved: a reload swaps modules, never the provider under them.
        let recipe = ModelBuilder {
            provider: Some(snapshot.provider.name().to_string()),
            model: Some(snapshot.provider.model_name().to_string()),
            ..self
        };
        Ok(Model { recipe, current: ArcSwap::from_pointee(snapshot) })
    }

    async fn snapshot(&self) -> Result<Snapshot, BuildError> {
        let config = match &self.config {
            Some(config) => config.clone(),
            None => Config::discover(None)?,
        };
        let catalog = match &self.catalog {
            Some(catalog) => catalog.clone(),
            None => Arc::new(config.catalog()?),
        };
        let provider_name = self.provider.clone().unwrap_or_else(|| config.provider.clone());
        let model_name = self.model.clone().or_else(|| config.model.clone());
        let adapter = catalog.create(&provider_name, model_name.as_deref()).map_err(BuildError::Provider)?;
        let planned = plan(&config, &self.settings)?;

        let runtime = match &self.runtime {
            Some(runtime) => runtime.clone(),
            None => Runtime::shared()?,
        };
        let file = config.file.clone().unwrap_or_else(|| "<embedded default>".into());
        let module_error = |module: &str, source: LoadError| {
            BuildError::Config(ConfigError::Module { file: file.clone(), module: module.to_string(), source })
        };
        // Check the tables of disabled built-ins too: cheap (compiled once) and it finds
        // typos before the module is switched on.
        for (name, module) in &config.modules {
            if module.code == ModuleCode::Builtin && !planned.iter().any(|p| &p.name == name) {
                load(&runtime, name, &module.code, &module.table).await.map_err(|e| module_error(name, e))?;
            }
        }
        let mut modules = Vec::with_capacity(planned.len());
        for p in &planned {
            modules.push(
                load(&runtime, &p.name, &p.code, &p.table).await.map_err(|e| module_error(&p.name, e))?,
            );
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
        let provider: Arc<dyn Provider> = if modules.is_empty() {
            adapter
        } else {
            let registry = Arc::new(LazyRegistry::new(catalog.factory()));
            let chain = Chain::new(runtime, modules, adapter).with_registry(registry);
            Arc::new(match &self.random {
                Some(random) => chain.with_random(random.clone()),
                None => chain,
            })
        };
        Ok(Snapshot { provider, stack })
    }
}

async fn load(
    runtime: &Runtime,
    name: &str,
    code: &ModuleCode,
    table: &serde_json::Map<String, serde_json::Value>,
) -> Result<Arc<crate::runtime::Module>, LoadError> {
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

/// What one build produced: the provider to call and the stack it is made of.
struct Snapshot {
    provider: Arc<dyn Provider>,
    stack: Vec<StackEntry>,
}

/// A ready model: `invoke` runs its chain.
pub struct Model {
    recipe: ModelBuilder,
    current: ArcSwap<Snapshot>,
}

impl Model {
    /// Sends `messages` with `tools` and `options` through the chain.
    pub async fn invoke(
        &self,
        messages: Vec<Message>,
        tools: Vec<ToolDefinition>,
        options: Options,
    ) -> Result<Response, Error> {
        self.invoke_request(Request { messages, tools, options }).await
    }

    /// Sends a whole request through the chain.
    pub async fn invoke_request(&self, request: Request) -> Result<Response, Error> {
        // Take the snapshot once: the call finishes on it even if it is replaced meanwhile.
        let snapshot = self.current.load_full();
        snapshot.provider.invoke(request).await
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

    /// Rebuilds from the same options (re-reading config.toml and module files when they
    /// came from disk) and swaps the result in. Calls already running finish on the chain
    /// they started on. On error, the current chain keeps serving.
    pub async fn reload(&self) -> Result<(), BuildError> {
        let snapshot = self.recipe.snapshot().await?;
        self.current.store(Arc::new(snapshot));
        Ok(())
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
