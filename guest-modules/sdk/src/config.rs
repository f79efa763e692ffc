//! Reading a module's configuration table (JSON text handed to `configure`).
//!
//! Each reader names the key and what was wrong, so the host can report
//! "module `retry`: max_retries must be an integer >= 0, got -1".

use serde_json::{Map, Value};

/// A parsed configuration table.
pub struct Config {
    table: Map<String, Value>,
}

impl Config {
    /// Parses the JSON object the host passed to `configure`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(table)) => Ok(Config { table }),
            Ok(other) => Err(format!("configuration must be a table, got {other}")),
            Err(e) => Err(format!("configuration is not valid JSON: {e}")),
        }
    }

    /// Fails on the first key not in `known`, naming it and the accepted keys.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self.table.keys().find(|k| !known.contains(&k.as_str())) {
            Some(key) => Err(format!("unknown key `{key}` (expected one of: {})", known.join(", "))),
            None => Ok(()),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.table.get(key).filter(|v| !v.is_null())
    }

    /// An integer `>= 0`.
    pub fn u32(&self, key: &str, default: u32) -> Result<u32, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{key} must be an integer >= 0, got {v}")),
        }
    }

    /// `true` or `false`.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| format!("{key} must be true or false, got {v}")),
        }
    }

    /// A number `> 0`.
    pub fn positive_f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x > 0.0 && x.is_finite() => Ok(Some(x)),
                _ => Err(format!("{key} must be a number > 0, got {v}")),
            },
        }
    }

    /// A list of values, each read by `item`.
    pub fn list<T>(
        &self,
        key: &str,
        item: impl Fn(&Value) -> Option<T>,
        what: &str,
    ) -> Result<Option<Vec<T>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| item(v).ok_or_else(|| format!("{key} must be a list of {what}, found {v}")))
                .collect::<Result<Vec<T>, String>>()
                .map(Some),
            Some(v) => Err(format!("{key} must be a list of {what}, got {v}")),
        }
    }
}
