//! Per-call module settings and how they combine with config.toml.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::{Config, ConfigError, ModuleCode};
use crate::target::Target;

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
    /// Enabled with config.toml's table overlaid by these keys (the call's keys win). A key
    /// set to `null` is unset in this table: config.toml's value stays (not the module's
    /// built-in default). `enabled` is honoured: `{"enabled": false}` is [`Setting::Off`].
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
    /// The module's name in config.toml.
    pub name: String,
    /// Where its code comes from.
    pub code: ModuleCode,
    /// config.toml's `share_state`: whether its instances may serve more than one call.
    pub share_state: bool,
    /// The table it is loaded with: config.toml's, overlaid with the call's.
    pub table: Map<String, Value>,
    /// The providers config.toml lets it call through the registry (`reach`).
    pub reach: Vec<Target>,
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
        let overrides = match setting {
            Setting::Table(table) => Some(call_table(name, table)?),
            _ => None,
        };
        let on = match (setting, &overrides) {
            (Setting::Off, _) => false,
            (_, Some(CallTable { enabled: Some(enabled), .. })) => *enabled,
            (Setting::Table(_) | Setting::On, _) => true,
            (Setting::Unset, _) => module.enabled,
        };
        if !on {
            continue;
        }
        if !config.order.contains(name) {
            return Err(invalid(
                "stack.order".into(),
                format!("module `{name}` is enabled but not placed in the stack order {:?}", config.order),
            ));
        }
        let mut table = module.table.clone();
        if let Some(overrides) = overrides {
            table.extend(overrides.keys);
        }
        enabled.push(PlannedModule {
            name: name.clone(),
            code: module.code.clone(),
            share_state: module.share_state,
            table,
            reach: module.reach.clone(),
        });
    }
    enabled.sort_by_key(|m| config.order.iter().position(|n| *n == m.name));
    Ok(enabled)
}

/// A per-call table, read: `enabled` is honoured (a table with `enabled = false` switches
/// the module off like `Off`), `null` values are dropped so that config.toml's value stays,
/// and `wasm`, `reach` and `share_state` cannot be set per call.
struct CallTable {
    enabled: Option<bool>,
    keys: Map<String, Value>,
}

fn call_table(module: &str, table: &Map<String, Value>) -> Result<CallTable, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Call {
        module: module.to_string(),
        key: key.to_string(),
        message,
    };
    let enabled = match table.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => return Err(invalid("enabled", format!("must be true or false, got {other}"))),
    };
    if table.contains_key("wasm") {
        return Err(invalid("wasm", "a module's file is set in config.toml, not per call".into()));
    }
    if table.contains_key("reach") {
        return Err(invalid("reach", "what a module may reach is set in config.toml, not per call".into()));
    }
    if table.contains_key("share_state") {
        return Err(invalid(
            "share_state",
            "whether a module shares state is set in config.toml, not per call".into(),
        ));
    }
    let keys = table
        .iter()
        .filter(|(key, value)| key.as_str() != "enabled" && !value.is_null())
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok(CallTable { enabled, keys })
}

fn known(config: &Config) -> String {
    config.modules.keys().cloned().collect::<Vec<_>>().join(", ")
}
