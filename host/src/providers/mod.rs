//! Provider definitions: the TOML schema, the built-in files, and the catalog that overlays a
//! user's directory on them and creates adapters by name.
//!
//! A user's `<name>.toml` replaces the built-in provider of that name as a whole (no
//! field-by-field merge, so what the file says is all there is) or adds a new one. Files are
//! validated when the catalog is loaded; API keys are read from the environment only when an
//! adapter is created, so listing providers never needs a key.

mod builtin;
mod config;
mod error;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::{
    ApiFormat, ConfigSource, MaxTokensParam, ModelSettings, ProviderConfig, ProviderSettings,
    DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_SECONDS,
};
pub use error::ProviderConfigError;

use crate::adapters;
use crate::provider::Provider;
use crate::target::{ProviderName, Target};
use crate::types::Error;

/// The directory name looked for beside the user's config file.
pub const DEFAULT_PROVIDERS_DIR: &str = "providers";

/// Every known provider, by name.
#[derive(Clone, Debug)]
pub struct ProviderCatalog {
    providers: BTreeMap<String, ProviderConfig>,
}

impl ProviderCatalog {
    /// The built-in providers only.
    pub fn builtin() -> Result<Self, ProviderConfigError> {
        let mut providers = BTreeMap::new();
        for &(name, file, text) in builtin::BUILTIN {
            providers
                .insert(name.to_string(), ProviderConfig::parse(name, text, ConfigSource::Builtin(file))?);
        }
        Ok(ProviderCatalog { providers })
    }

    /// The built-ins overlaid with the user's providers for the config file at
    /// `config_file`: those in `providers_dir` (the `providers_dir` key of config.toml,
    /// relative to that file) when it is set, else in `providers/` beside the file if that
    /// exists. A `providers_dir` that names no directory is an error.
    pub fn for_config_file(
        config_file: &Path,
        providers_dir: Option<&str>,
    ) -> Result<Self, ProviderConfigError> {
        let base = config_file.parent().unwrap_or(Path::new(""));
        let mut catalog = Self::builtin()?;
        match providers_dir {
            Some(dir) => catalog.overlay_dir_keyed(&base.join(dir), Some("providers_dir"))?,
            None => {
                let implicit = base.join(DEFAULT_PROVIDERS_DIR);
                if implicit.exists() {
                    catalog.overlay_dir_keyed(&implicit, None)?;
                }
            }
        }
        Ok(catalog)
    }

    /// Adds (or replaces) every `*.toml` provider file in `dir`, in file-name order.
    pub fn overlay_dir(&mut self, dir: &Path) -> Result<(), ProviderConfigError> {
        self.overlay_dir_keyed(dir, None)
    }

    fn overlay_dir_keyed(&mut self, dir: &Path, key: Option<&str>) -> Result<(), ProviderConfigError> {
        if !dir.is_dir() {
            return Err(ProviderConfigError::NotADirectory {
                path: dir.to_path_buf(),
                key: key.map(str::to_string),
            });
        }
        let directory_error = |source: std::io::Error| ProviderConfigError::Directory {
            path: dir.to_path_buf(),
            key: key.map(str::to_string),
            source,
        };
        let entries = std::fs::read_dir(dir).map_err(directory_error)?;
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let path = entry.map_err(directory_error)?.path();
            if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            self.insert(ProviderConfig::load(&path)?);
        }
        Ok(())
    }

    /// Adds `config`, replacing any provider of the same name.
    pub fn insert(&mut self, config: ProviderConfig) {
        self.providers.insert(config.name.clone(), config);
    }

    /// The names of all providers, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.providers.keys().map(String::as_str).collect()
    }

    /// The definition of `name`.
    pub fn get(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.get(name)
    }

    /// The definition of `name`, or an error that lists the known providers.
    pub fn require(&self, name: &str) -> Result<&ProviderConfig, ProviderConfigError> {
        self.get(name).ok_or_else(|| ProviderConfigError::Unknown {
            name: name.to_string(),
            known: self.providers.keys().cloned().collect(),
        })
    }

    /// Creates the adapter for provider `name` calling `model` (the provider's
    /// `default_model` when `None`), reading its API key from the process environment.
    pub fn create(&self, name: &str, model: Option<&str>) -> Result<Arc<dyn Provider>, Error> {
        self.create_with_env(name, model, &|var| std::env::var(var).ok())
    }

    /// As [`create`](Self::create), reading environment variables through `env` (for
    /// embedders that keep their environment elsewhere, and for tests).
    pub fn create_with_env(
        &self,
        name: &str,
        model: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<dyn Provider>, Error> {
        if let Err(error) = ProviderName::parse(name) {
            return Err(Error::config(error.name(), error.to_string()));
        }
        let config = self.require(name)?;
        adapters::build_with_env(config, model, env)
    }

    /// Creates the adapter for a target written `name` or `name/model` (see [`Target`]).
    pub fn create_target(&self, target: &str) -> Result<Arc<dyn Provider>, Error> {
        let target = Target::parse(target)?;
        self.create(target.name(), target.model())
    }

    /// A factory for [`crate::runtime::LazyRegistry::new`]: the registry's targets are
    /// created from this catalog.
    pub fn factory(
        self: &Arc<Self>,
    ) -> impl Fn(&str, Option<&str>) -> Result<Arc<dyn Provider>, Error> + Send + Sync + 'static {
        let catalog = Arc::clone(self);
        move |name, model| catalog.create(name, model)
    }
}
