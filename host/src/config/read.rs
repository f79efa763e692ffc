//! Typed reading of the TOML tree: each value checked where it is read, every failure
//! naming the file and the dotted key.

use std::path::Path;

use super::tree::toml_to_json;
use super::{ConfigError, ModuleCode, ModuleConfig, BUILTIN_MODULES, HOST_KEYS};
use crate::target::Target;

/// Reads typed values out of TOML tables, naming the file and key on failure.
pub(super) struct Reader<'a> {
    pub(super) file: &'a Path,
}

impl Reader<'_> {
    pub(super) fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid { file: self.file.to_path_buf(), key: key.to_string(), message }
    }

    pub(super) fn only_keys(
        &self,
        table: &toml::Table,
        name: &str,
        known: &[&str],
    ) -> Result<(), ConfigError> {
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

    pub(super) fn string(&self, table: &toml::Table, key: &str) -> Result<Option<String>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.invalid(key, format!("must be a string, got {other}"))),
        }
    }

    pub(super) fn table(&self, table: &toml::Table, key: &str) -> Result<toml::Table, ConfigError> {
        match table.get(key) {
            None => Ok(toml::Table::new()),
            Some(toml::Value::Table(t)) => Ok(t.clone()),
            Some(other) => Err(self.invalid(key, format!("must be a table, got {other}"))),
        }
    }

    /// One `[modules.<name>]` table; `None` for a disabled table of a module that does not
    /// exist (the caller warns). Enabling a module that does not exist is an error: a user
    /// who switched on `rate_limit` must not believe they are rate limited.
    pub(super) fn module(
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

    /// `[vault]`, from ArcLLM's files: keys come from `api_key_env` here, so an empty
    /// `backend` (ArcLLM's default) is accepted with a warning and any other is an error.
    pub(super) fn vault(&self, vault: &toml::Value) -> Result<String, ConfigError> {
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
    pub(super) fn no_non_finite(&self, table: &toml::Table, prefix: &str) -> Result<(), ConfigError> {
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
