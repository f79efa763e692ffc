//! `config.toml`: which provider, which modules, in which order, with which tables.
//!
//! The embedded default (`default.toml`, the seed's file) is overlaid key by key with the
//! user's file. Where the user's file is found: `--config PATH`, else `$ARCLLM_CONFIG`,
//! else `./arcllm.toml`, else `$XDG_CONFIG_HOME/arcllm/config.toml`.

mod cache;
mod error;
mod limits;
mod read;
mod tree;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use cache::CacheConfig;
pub use error::ConfigError;

use read::Reader;
use tree::{flatten, lookup, merge, parse};

use crate::providers::{ProviderCatalog, ProviderConfigError};
use crate::runtime::CallLimits;
use crate::target::{ProviderName, Target};

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The modules built into arcllm (see [`crate::builtin`]).
pub const BUILTIN_MODULES: &[&str] = &["retry", "fallback", "rate_limit", "circuit_breaker", "passthrough"];

/// Sections of the ArcLLM Python library's config.toml that arcllm does not implement.
/// A file written for ArcLLM loads: each such section is accepted with a warning while it
/// is switched off, and is an error when it would switch something on.
const ARCLLM_SECTIONS: &[&str] = &["vault"];

/// Top-level tables this crate accepts but does not read: `arcllm serve`'s `[server]` and
/// `[aliases]`, which the gateway reads with [`Config::section`] and validates key by key.
pub const SERVER_SECTIONS: &[&str] = &["server", "aliases"];

/// Keys a module table may have that are arcllm's, not the module's.
const HOST_KEYS: &[&str] = &["enabled", "wasm", "reach", "share_state"];

/// Where a module's code comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleCode {
    /// One of [`BUILTIN_MODULES`].
    Builtin,
    /// A `.wasm` file (resolved against the config file's directory).
    Wasm(PathBuf),
}

/// One `[modules.<name>]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleConfig {
    /// Whether the module runs unless a call says otherwise.
    pub enabled: bool,
    /// Where its code comes from.
    pub code: ModuleCode,
    /// `share_state`: whether the module's instances may serve more than one call, so that
    /// what one call leaves in its memory is visible to later calls (default false: every
    /// call gets fresh instances).
    pub share_state: bool,
    /// The table handed to the module at load, without arcllm's own keys.
    pub table: serde_json::Map<String, serde_json::Value>,
    /// `reach`: the providers the module may call through the registry, besides what it
    /// may reach anyway (the built-in fallback: its `chain`).
    pub reach: Vec<Target>,
}

/// The effective configuration: the embedded default overlaid with the user's file.
#[derive(Clone, Debug)]
pub struct Config {
    /// The user's file, if one was found.
    pub file: Option<PathBuf>,
    /// The provider used when none is named.
    pub provider: String,
    /// The model used when none is named (else the provider's default).
    pub model: Option<String>,
    /// `defaults.temperature`: the sampling temperature of calls that set none.
    pub temperature: Option<f64>,
    /// `defaults.max_tokens`: the output-token limit of calls that set none.
    pub max_tokens: Option<u32>,
    /// `providers_dir`, relative to the config file.
    pub providers_dir: Option<String>,
    /// The stack, outermost first.
    pub order: Vec<String>,
    /// Every `[modules.<name>]` table, by name.
    pub modules: BTreeMap<String, ModuleConfig>,
    /// `[limits]`: time, call and file limits around every module of the stack.
    pub limits: CallLimits,
    /// `[cache]`: the compile cache on disk for third-party modules.
    pub cache: CacheConfig,
    /// `[state]`: where modules' shared state lives (see [`crate::state`]).
    pub state: crate::state::StateConfig,
    /// What the file has that arcllm accepts but does not act on (a disabled table for a
    /// module that does not exist, an ArcLLM section it does not implement), one sentence
    /// each naming the file and key. Logged at `warn` whenever a model is built from this
    /// configuration, and printed by `arcllm config show`.
    pub warnings: Vec<String>,
    /// The user's own table, to tell where each effective value came from.
    user: toml::Table,
    effective: toml::Table,
}

/// Where a user config file was found, and by which rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The file.
    pub path: PathBuf,
    /// `--config`, `ARCLLM_CONFIG`, `./arcllm.toml` or `XDG_CONFIG_HOME`.
    pub rule: &'static str,
}

impl Config {
    /// The embedded default alone.
    pub fn embedded() -> Config {
        Self::build(None, toml::Table::new()).expect("the embedded default config is valid")
    }

    /// The embedded default overlaid with the file at `path`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { file: path.to_path_buf(), source })?;
        Self::from_toml(&text, path)
    }

    /// The embedded default overlaid with `text`, read as if from `path` (which names it
    /// in errors and anchors relative paths).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let user = parse(text, path)?;
        Self::build(Some(path.to_path_buf()), user)
    }

    /// The configuration a program run now would use: see [`Config::locate`].
    pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match Self::locate(explicit)? {
            Some(found) => Self::from_file(&found.path),
            None => Ok(Self::embedded()),
        }
    }

    /// Finds the user's file: `explicit` (from `--config`), else `$ARCLLM_CONFIG`, else
    /// `./arcllm.toml`, else `$XDG_CONFIG_HOME/arcllm/config.toml` (XDG defaulting to
    /// `~/.config`). A path given explicitly or by the variable must exist.
    pub fn locate(explicit: Option<&Path>) -> Result<Option<Located>, ConfigError> {
        let must_exist = |path: PathBuf, rule| {
            if path.is_file() {
                Ok(Some(Located { path, rule }))
            } else {
                Err(ConfigError::Missing { file: path, rule })
            }
        };
        if let Some(path) = explicit {
            return must_exist(path.to_path_buf(), "--config");
        }
        if let Some(path) = std::env::var_os("ARCLLM_CONFIG").filter(|p| !p.is_empty()) {
            return must_exist(PathBuf::from(path), "ARCLLM_CONFIG");
        }
        let local = PathBuf::from("arcllm.toml");
        if local.is_file() {
            return Ok(Some(Located { path: local, rule: "./arcllm.toml" }));
        }
        let xdg = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")));
        if let Some(path) = xdg.map(|dir| dir.join("arcllm").join("config.toml")).filter(|p| p.is_file()) {
            return Ok(Some(Located { path, rule: "XDG_CONFIG_HOME" }));
        }
        Ok(None)
    }

    /// The provider catalog this configuration sees: the built-ins overlaid with the
    /// user's provider files (`providers_dir`, or `providers/` beside the config file).
    pub fn catalog(&self) -> Result<ProviderCatalog, ProviderConfigError> {
        match &self.file {
            Some(file) => ProviderCatalog::for_config_file(file, self.providers_dir.as_deref()),
            None => ProviderCatalog::builtin(),
        }
    }

    /// One of the [`SERVER_SECTIONS`] as the user's file (over the embedded default) has
    /// it, for the program that reads and validates it.
    pub fn section(&self, name: &str) -> Option<&toml::Value> {
        SERVER_SECTIONS.contains(&name).then(|| self.effective.get(name)).flatten()
    }

    /// Every effective value as `(dotted.key, value, origin)`, where origin is the user's
    /// file or `default`.
    pub fn provenance(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let origin = self.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
        flatten(&self.effective, &mut Vec::new(), &mut |path, value| {
            let from_user = lookup(&self.user, path).is_some();
            let source = if from_user { origin.clone() } else { "default".to_string() };
            out.push((path.join("."), value.to_string(), source));
        });
        out
    }

    fn build(file: Option<PathBuf>, user: toml::Table) -> Result<Config, ConfigError> {
        let label = file.clone().unwrap_or_else(|| PathBuf::from("<embedded default>"));
        let mut effective = parse(DEFAULT_TOML, &label)?;
        merge(&mut effective, &user);
        let base = file.as_deref().and_then(Path::parent).unwrap_or(Path::new("")).to_path_buf();
        let reader = Reader { file: &label };

        let mut warnings = Vec::new();
        let mut top_level = vec!["providers_dir", "defaults", "stack", "modules", "limits", "cache", state::TABLE];
        // Read and validated by the program they configure (`arcllm serve`), see `section`.
        top_level.extend(SERVER_SECTIONS);
        top_level.extend(ARCLLM_SECTIONS);
        reader.only_keys(&effective, "", &top_level)?;
        reader.no_non_finite(&effective, "")?;
        let providers_dir = reader.string(&effective, "providers_dir")?;
        if let Some(vault) = effective.get("vault") {
            warnings.push(reader.vault(vault)?);
        }
        let defaults = reader.table(&effective, "defaults")?;
        reader.only_keys(&defaults, "defaults", &["provider", "model", "temperature", "max_tokens"])?;
        let provider = reader.string(&defaults, "provider")?.unwrap_or_default();
        if let Err(error) = ProviderName::parse(&provider) {
            return Err(reader.invalid("defaults.provider", error.to_string()));
        }
        let model = reader.string(&defaults, "model")?;
        let temperature = match defaults.get("temperature") {
            None => None,
            Some(value) => match value.as_float().or_else(|| value.as_integer().map(|i| i as f64)) {
                Some(t) if (0.0..=2.0).contains(&t) => Some(t),
                _ => {
                    return Err(reader.invalid(
                        "defaults.temperature",
                        format!("must be a number from 0 to 2, got {value}"),
                    ))
                }
            },
        };
        let max_tokens = match defaults.get("max_tokens") {
            None => None,
            Some(value) => match value.as_integer().and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0) {
                Some(n) => Some(n),
                None => {
                    return Err(reader
                        .invalid("defaults.max_tokens", format!("must be a positive integer, got {value}")))
                }
            },
        };

        let limits = reader.limits(&reader.table(&effective, "limits")?)?;
        let cache = reader.cache(&reader.table(&effective, "cache")?, &base)?;
        let state = state::parse(&label, effective.get(state::TABLE))?;

        let mut modules = BTreeMap::new();
        for (name, value) in reader.table(&effective, "modules")? {
            let key = format!("modules.{name}");
            let toml::Value::Table(table) = value else {
                return Err(reader.invalid(&key, "must be a table".into()));
            };
            match reader.module(&name, table, &base)? {
                Some(module) => {
                    modules.insert(name.clone(), module);
                }
                None => warnings.push(format!(
                    "{}: [modules.{name}] is ignored: no module `{name}` exists (built in: {}; a third-party module needs `wasm = \"path/to/{name}.wasm\"`)",
                    label.display(),
                    BUILTIN_MODULES.join(", ")
                )),
            }
        }

        let stack = reader.table(&effective, "stack")?;
        reader.only_keys(&stack, "stack", &["order"])?;
        let order = match stack.get("order") {
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| reader.invalid("stack.order", "must be a list of module names".into()))?,
            _ => return Err(reader.invalid("stack.order", "must be a list of module names".into())),
        };
        for (i, name) in order.iter().enumerate() {
            if !modules.contains_key(name) {
                return Err(reader.invalid(
                    "stack.order",
                    format!("`{name}` is not a module: declare it as [modules.{name}] with `wasm = \"…\"`"),
                ));
            }
            if order[..i].contains(name) {
                return Err(reader.invalid("stack.order", format!("`{name}` appears twice")));
            }
        }
        Ok(Config {
            file,
            provider,
            model,
            temperature,
            max_tokens,
            providers_dir,
            order,
            modules,
            limits,
            cache,
            state,
            warnings,
            user,
            effective,
        })
    }
}
