//! The TOML tree itself: parsing with positions, overlaying, walking, and the JSON
//! modules read.

use std::path::Path;

use super::ConfigError;

/// Parses TOML, turning a syntax error into one that names the line and column.
pub(super) fn parse(text: &str, file: &Path) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| {
        let offset = e.span().map_or(0, |span| span.start).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Syntax { file: file.to_path_buf(), line, column, message: e.message().to_string() }
    })
}

/// Overlays `over` on `base`: tables merge key by key, anything else is replaced.
pub(super) fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

pub(super) fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(first)?;
    match (rest.is_empty(), value) {
        (true, v) => Some(v),
        (false, toml::Value::Table(t)) => lookup(t, rest),
        _ => None,
    }
}

pub(super) fn flatten(
    table: &toml::Table,
    path: &mut Vec<String>,
    visit: &mut dyn FnMut(&[String], &toml::Value),
) {
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
pub(super) fn toml_to_json(value: toml::Value) -> serde_json::Value {
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
