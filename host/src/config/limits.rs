//! `[limits]`: the time, call and size limits around every module of the stack.

use super::read::Reader;
use super::ConfigError;
use crate::runtime::CallLimits;

/// The keys of `[limits]`.
const LIMIT_KEYS: &[&str] = &[
    "call_timeout_seconds",
    "configure_timeout_seconds",
    "compile_timeout_seconds",
    "max_calls_per_invoke",
    "max_module_bytes",
    "max_instances_per_stack",
    "max_request_bytes_per_call",
    "max_log_line_bytes",
    "max_log_lines_per_call",
    "max_idle_store_memory_bytes",
    "max_idle_memory_bytes",
];

impl Reader<'_> {
    /// `[limits]`: each key optional (its default otherwise), each a positive, finite number.
    pub(super) fn limits(&self, table: &toml::Table) -> Result<CallLimits, ConfigError> {
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
        let size = |key: &str| -> Result<Option<usize>, ConfigError> {
            Ok(count(key)?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
        };
        limits.max_instances_per_stack = size("max_instances_per_stack")?;
        limits.max_request_bytes_per_call = size("max_request_bytes_per_call")?;
        limits.max_log_line_bytes = size("max_log_line_bytes")?;
        limits.max_log_lines_per_call = size("max_log_lines_per_call")?;
        limits.max_idle_store_memory_bytes = size("max_idle_store_memory_bytes")?;
        limits.max_idle_memory_bytes = size("max_idle_memory_bytes")?;
        Ok(limits)
    }
}
