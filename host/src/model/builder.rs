//! `load_model` and its options: what a caller asks for, before anything is read or loaded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::assemble::{ConfigInput, Recipe};
use super::{Model, Setting};
use crate::config::{Config, ConfigError};
use crate::providers::{ProviderCatalog, ProviderConfigError};
use crate::runtime::{RandomSource, Runtime, RuntimeError};
use crate::state::StateStore;
use crate::types::Error;

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

/// Why a model could not be built (or reloaded).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// config.toml (or a per-call setting) is at fault.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A provider file or the providers directory is at fault.
    #[error(transparent)]
    Providers(#[from] ProviderConfigError),
    /// The catalog could not create the adapter (unknown provider, missing key, ...). The
    /// message is the error's one-line summary, as the generated `Display` prints the
    /// whole record; the record itself stays reachable as the source.
    #[error("{}", .0.summary())]
    Provider(#[source] Error),
    /// The wasm runtime could not be created or could not stack the modules.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Options for [`load_model`]; see [`ModelBuilder::build`].
#[derive(Clone, Default)]
pub struct ModelBuilder {
    provider: Option<String>,
    model: Option<String>,
    settings: BTreeMap<String, Setting>,
    config: ConfigInput,
    catalog: Option<Arc<ProviderCatalog>>,
    runtime: Option<Runtime>,
    random: Option<RandomSource>,
    state: Option<StateStore>,
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
        self.config = ConfigInput::Given(config);
        self
    }
    /// The configuration file (default: [`Config::discover`]), read now and again by
    /// every [`Model::reload`], so that editing it changes the running stack.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = ConfigInput::File(path.into());
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

    /// The modules' shared state (default: the process-wide store for config.toml's
    /// `[state]`, shared by every model built with the same table). Models given one store
    /// share their rate limits, breakers and budgets, as replicas on one Redis do.
    pub fn state(mut self, state: StateStore) -> Self {
        self.state = Some(state);
        self
    }

    /// Resolves the configuration, creates the adapter, and loads and checks every
    /// enabled module. Built-in module tables are checked even when disabled, so a typo in
    /// config.toml is found now and not the day the module is switched on.
    pub async fn build(self) -> Result<Model, BuildError> {
        let recipe = Recipe {
            config: self.config,
            catalog: self.catalog,
            provider: self.provider,
            model: self.model,
            settings: self.settings,
            runtime: self.runtime,
            random: self.random,
            state: self.state,
        };
        let snapshot = recipe.assemble(1).await?;
        // The model pins what was resolved: a reload swaps modules, never the provider
        // under them.
        Ok(Model::new(recipe, snapshot))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_provider_error_prints_its_summary_and_keeps_the_record_as_source() {
        let record = Error::config("nope", "unknown provider");
        let err = BuildError::Provider(record.clone());
        assert_eq!(err.to_string(), record.summary());
        let source = err.source().and_then(|s| s.downcast_ref::<Error>());
        assert_eq!(source, Some(&record));
    }
}
