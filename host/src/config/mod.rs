//! `config.toml`: which provider, which modules, in which order, with which tables.
//!
//! The embedded default (`default.toml`, the seed's file) is overlaid key by key with the
//! user's file. Where the user's file is found: `--config PATH`, else `$ARCLLM_CONFIG`,
//! else `./arcllm.toml`, else `$XDG_CONFIG_HOME/arcllm/config.toml`.

mod error;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::ConfigError;

use crate::providers::{ProviderCatalog, ProviderConfigError};
use crate::runtime::CallLimits;
use crate::target::{ProviderName, Target};

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The modules built into arcllm (see [`crate::builtin`]).
pub const BUILTIN_MODULES: &[&str] = &["retry", "fallback", "passthrough"];

/// Sections of the ArcLLM Python library's config.toml that arcllm does not implement.
/// A file written for ArcLLM loads: each such section is accepted with a warning while it
/// is switched off, and is an error when it would switch something on.
const ARCLLM_SECTIONS: &[&str] = &["vault"];

/// Top-level tables this crate accepts but does not read: `arcllm serve`'s `[server]` and
/// `[aliases]`, which the gateway reads with [`Config::section`] and validates key by key.
pub const SERVER_SECTIONS: &[&str] = &["server", "aliases"];

/// Keys a module table may have that are arcllm's, not the module's.
const HOST_KEYS: &[&str] = &["enabled", "wasm", "reach", "share_state"];

/// The keys of `[limits]`.
const LIMIT_KEYS: &[&str] = &[
    "call_timeout_seconds",
    "configure_timeout_seconds",
    "compile_timeout_seconds",
    "max_calls_per_invoke",
    "max_module_bytes",
];

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
        let mut top_level = vec!["providers_dir", "defaults", "stack", "modules", "limits"];
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
            warnings,
            user,
            effective,
        })
    }
}

/// Reads typed values out of TOML tables, naming the file and key on failure.
struct Reader<'a> {
    file: &'a Path,
}

impl Reader<'_> {
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid { file: self.file.to_path_buf(), key: key.to_string(), message }
    }

    fn only_keys(&self, table: &toml::Table, name: &str, known: &[&str]) -> Result<(), ConfigError> {
        match table.keys().find(|k| !known.contains(&k.as_str())) {
            Some(key) => Err(ConfigError::UnknownKey {
                file: self.file.to_path_buf(),
                table: if name.is_empty() { "top level".into() } else { name.into() },
                key: key.clone(),
                expected: known.join(", "),
            }),
            None => Ok(()),
        }
    }

    fn string(&self, table: &toml::Table, key: &str) -> Result<Option<String>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.invalid(key, format!("must be a string, got {other}"))),
        }
    }

    fn table(&self, table: &toml::Table, key: &str) -> Result<toml::Table, ConfigError> {
        match table.get(key) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t.clone()),
            Some(other) => Err(self.invalid(key, format!("must be a table, got {other}"))),
        }
    }

    /// One `[modules.<name>]` table; `None` for a disabled table of a module that does not
    /// exist (the caller warns). Enabling a module that does not exist is an error: a user
    /// who switched on `rate_limit` must not believe they are rate limited.
    fn module(
        &self,
        name: &str,
        table: toml::Table,
        base: &Path,
    ) -> Result<Option<ModuleConfig>, ConfigError> {
        let key = |k: &str| format!("modules.{name}.{k}");
        let enabled = match table.get("enabled") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                return Err(self.invalid(&key("enabled"), format!("must be true or false, got {other}")))
            }
        };
        let share_state = match table.get("share_state") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                return Err(self.invalid(&key("share_state"), format!("must be true or false, got {other}")))
            }
        };
        let wasm = match table.get("wasm") {
            None => None,
            Some(toml::Value::String(path)) => Some(base.join(path)),
            Some(other) => return Err(self.invalid(&key("wasm"), format!("must be a path, got {other}"))),
        };
        let code = match wasm {
            Some(path) => ModuleCode::Wasm(path),
            None if BUILTIN_MODULES.contains(&name) => ModuleCode::Builtin,
            None if !enabled => return Ok(None),
            None => {
                return Err(self.invalid(
                    &format!("modules.{name}"),
                    format!(
                        "no module `{name}` exists, so it cannot be enabled (built in: {}; a third-party module needs `wasm = \"path/to/{name}.wasm\"`)",
                        BUILTIN_MODULES.join(", ")
                    ),
                ))
            }
        };
        let reach = match table.get("reach") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    let target = item.as_str().ok_or_else(|| {
                        self.invalid(&key("reach"), format!("must be a list of provider targets, got {item}"))
                    })?;
                    Target::parse(target).map_err(|e| self.invalid(&key("reach"), e.to_string()))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(
                    self.invalid(&key("reach"), format!("must be a list of provider targets, got {other}"))
                )
            }
        };
        let module_table = table
            .into_iter()
            .filter(|(k, _)| !HOST_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k, toml_to_json(v)))
            .collect();
        Ok(Some(ModuleConfig { enabled, code, share_state, table: module_table, reach }))
    }

    /// `[limits]`: each key optional (its default otherwise), each a positive, finite number.
    fn limits(&self, table: &toml::Table) -> Result<CallLimits, ConfigError> {
        self.only_keys(table, "limits", LIMIT_KEYS)?;
        let mut limits = CallLimits::default();
        let seconds = |key: &str| -> Result<Option<std::time::Duration>, ConfigError> {
            let Some(value) = table.get(key) else { return Ok(None) };
            let number = value.as_float().or_else(|| value.as_integer().map(|i| i as f64));
            number
                .filter(|n| n.is_finite() && *n > 0.0)
                .and_then(|n| std::time::Duration::try_from_secs_f64(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.invalid(
                        &format!("limits.{key}"),
                        format!("must be a positive number of seconds, got {value}"),
                    )
                })
        };
        let count = |key: &str| -> Result<Option<u64>, ConfigError> {
            let Some(value) = table.get(key) else { return Ok(None) };
            match value.as_integer().filter(|n| *n > 0) {
                Some(n) => Ok(Some(n as u64)),
                None => Err(self
                    .invalid(&format!("limits.{key}"), format!("must be a positive integer, got {value}"))),
            }
        };
        if let Some(t) = seconds("call_timeout_seconds")? {
            limits.call_timeout = t;
        }
        if let Some(t) = seconds("configure_timeout_seconds")? {
            limits.configure_timeout = t;
        }
        if let Some(t) = seconds("compile_timeout_seconds")? {
            limits.compile_timeout = t;
        }
        if let Some(n) = count("max_calls_per_invoke")? {
            limits.max_calls_per_invoke = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = count("max_module_bytes")? {
            limits.max_module_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        Ok(limits)
    }

    /// `[vault]`, from ArcLLM's files: keys come from `api_key_env` here, so an empty
    /// `backend` (ArcLLM's default) is accepted with a warning and any other is an error.
    fn vault(&self, vault: &toml::Value) -> Result<String, ConfigError> {
        let backend = vault.get("backend").map(|b| b.as_str().map(str::trim));
        match backend {
            None | Some(Some("")) => Ok(format!(
                "{}: [vault] is ignored: arcllm reads API keys from the environment variable each provider file names (api_key_env)",
                self.file.display()
            )),
            Some(_) => Err(self.invalid(
                "vault.backend",
                "secret vaults are not supported: arcllm reads API keys from the environment variable each provider file names (api_key_env)".into(),
            )),
        }
    }

    /// Rejects `inf`, `-inf` and `nan` anywhere under `table`: no key of arcllm's or of a
    /// module's means anything by them, and JSON (what modules read) cannot carry them.
    fn no_non_finite(&self, table: &toml::Table, prefix: &str) -> Result<(), ConfigError> {
        fn check(reader: &Reader<'_>, key: &str, value: &toml::Value) -> Result<(), ConfigError> {
            match value {
                toml::Value::Float(f) if !f.is_finite() => Err(reader
                    .invalid(key, format!("{value} is not a finite number (inf and nan are not accepted)"))),
                toml::Value::Table(t) => reader.no_non_finite(t, key),
                toml::Value::Array(items) => {
                    items.iter().enumerate().try_for_each(|(i, v)| check(reader, &format!("{key}[{i}]"), v))
                }
                _ => Ok(()),
            }
        }
        for (key, value) in table {
            let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            check(self, &key, value)?;
        }
        Ok(())
    }
}

/// Parses TOML, turning a syntax error into one that names the line and column.
fn parse(text: &str, file: &Path) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Syntax { file: file.to_path_buf(), line, column, message: e.message().to_string() }
    })
}

/// Overlays `over` on `base`: tables merge key by key, anything else is replaced.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(first)?;
    match (rest.is_empty(), value) {
        (true, v) => Some(v),
        (false, toml::Value::Table(t)) => lookup(t, rest),
        _ => None,
    }
}

fn flatten(table: &toml::Table, path: &mut Vec<String>, visit: &mut dyn FnMut(&[String], &toml::Value)) {
    for (key, value) in table {
        path.push(key.clone());
        match value {
            toml::Value::Table(t) => flatten(t, path, visit),
            v => visit(path, v),
        }
        path.pop();
    }
}

/// TOML to JSON, for module tables (modules read JSON).
pub(crate) fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::from(f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}
