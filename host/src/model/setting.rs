//! Per-call module settings and how they combine with config.toml.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::{Config, ConfigError, ModuleCode};

/// How a caller sets one module, as the seed's `retry=False | True | {...}` keyword.
///
/// Priority: `Off` beats a `Table` beats `On` beats config.toml's `enabled`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Setting {
    /// Follow config.toml's `enabled`.
    #[default]
    Unset,
    /// Disabled, whatever config.toml says.
    Off,
    /// Enabled with config.toml's table.
    On,
    /// Enabled with config.toml's table overlaid by these keys (the call's keys win).
    Table(Map<String, Value>),
}

impl From<bool> for Setting {
    fn from(enabled: bool) -> Self {
        if enabled {
            Setting::On
        } else {
            Setting::Off
        }
    }
}

impl From<Value> for Setting {
    /// `false`/`true`/`{…}`, as a JSON value; anything else (e.g. `null`) is `Unset`.
    fn from(value: Value) -> Self {
        match value {
            Value::Bool(b) => b.into(),
            Value::Object(table) => Setting::Table(table),
            _ => Setting::Unset,
        }
    }
}

/// A module that will run, with the table it gets.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedModule {
    pub name: String,
    pub code: ModuleCode,
    pub table: Map<String, Value>,
}

/// Decides which modules run, in which order (config.toml's `[stack] order`, outermost
/// first) and with which tables.
pub fn plan(
    config: &Config,
    settings: &BTreeMap<String, Setting>,
) -> Result<Vec<PlannedModule>, ConfigError> {
    let file = config.file.clone().unwrap_or_else(|| "<embedded default>".into());
    let invalid = |key: String, message: String| ConfigError::Invalid { file: file.clone(), key, message };
    if let Some(unknown) = settings.keys().find(|name| !config.modules.contains_key(*name)) {
        return Err(invalid(
            format!("modules.{unknown}"),
            format!("no module `{unknown}` is configured (known: {})", known(config)),
        ));
    }
    let mut enabled = Vec::new();
    for (name, module) in &config.modules {
        let setting = settings.get(name).unwrap_or(&Setting::Unset);
        let on = match setting {
            Setting::Off => false,
            Setting::Table(_) | Setting::On => true,
            Setting::Unset => module.enabled,
        };
        if !on {
            continue;
        }
        if module.code == ModuleCode::Planned {
            tracing::debug!("module `{name}` is enabled but not built yet; ignoring it");
            continue;
        }
        if !config.order.contains(name) {
            return Err(invalid(
                "stack.order".into(),
                format!("module `{name}` is enabled but not placed in the stack order {:?}", config.order),
            ));
        }
        let mut table = module.table.clone();
        if let Setting::Table(overrides) = setting {
            table.extend(overrides.clone());
        }
        enabled.push(PlannedModule { name: name.clone(), code: module.code.clone(), table });
    }
    enabled.sort_by_key(|m| config.order.iter().position(|n| *n == m.name));
    Ok(enabled)
}

fn known(config: &Config) -> String {
    config.modules.keys().cloned().collect::<Vec<_>>().join(", ")
}
