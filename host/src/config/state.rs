//! config.toml's `[state]` table: where modules' shared state lives.
//!
//! ```toml
//! [state]
//! backend = "redis"              # or "memory" (default): this process only
//! url_env = "ARCLLM_REDIS_URL"   # the variable holding redis://host:port/db
//! on_error = "open"              # or "closed": see `crate::state::OnError`
//! timeout_seconds = 0.5          # one operation, round trip included
//! connect_timeout_seconds = 1.0
//! key_prefix = "arcllm"          # deployments sharing a server keep apart by prefix
//! # max_keys = 100000            # memory only: most keys held at once
//! ```
//!
//! Keys of the other backend are errors, not ignored.

use std::path::Path;
use std::time::Duration;

use super::ConfigError;
use crate::state::{
    BackendConfig, OnError, StateConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_MAX_KEYS,
    DEFAULT_TIMEOUT, DEFAULT_URL_ENV,
};

/// The top-level table this file reads.
pub(super) const TABLE: &str = "state";

const KEYS: &[&str] = &[
    "backend",
    "on_error",
    "max_keys",
    "url_env",
    "key_prefix",
    "timeout_seconds",
    "connect_timeout_seconds",
];
const REDIS_ONLY: &[&str] = &["url_env", "key_prefix", "timeout_seconds", "connect_timeout_seconds"];
const MEMORY_ONLY: &[&str] = &["max_keys"];

/// Reads `[state]` (absent: the in-process default).
pub(super) fn parse(file: &Path, table: Option<&toml::Value>) -> Result<StateConfig, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        file: file.to_path_buf(),
        key: format!("{TABLE}.{key}"),
        message,
    };
    let table = match table {
        None => return Ok(StateConfig::default()),
        Some(toml::Value::Table(table)) => table,
        Some(other) => return Err(invalid("", format!("must be a table, got {other}")).retitled()),
    };
    if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(ConfigError::UnknownKey {
            file: file.to_path_buf(),
            table: TABLE.into(),
            key: key.clone(),
            expected: KEYS.join(", "),
        });
    }
    let string = |key: &str| -> Result<Option<String>, ConfigError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(invalid(key, format!("must be a non-empty string, got {other}"))),
        }
    };
    let seconds = |key: &str, default: Duration| -> Result<Duration, ConfigError> {
        let Some(value) = table.get(key) else { return Ok(default) };
        value
            .as_float()
            .or_else(|| value.as_integer().map(|i| i as f64))
            .filter(|n| n.is_finite() && *n > 0.0 && *n <= 3600.0)
            .and_then(|n| Duration::try_from_secs_f64(n).ok())
            .ok_or_else(|| invalid(key, format!("must be a number of seconds in (0, 3600], got {value}")))
    };
    let on_error = match string("on_error")?.as_deref() {
        None | Some("open") => OnError::Open,
        Some("closed") => OnError::Closed,
        Some(other) => {
            return Err(invalid("on_error", format!("must be \"open\" or \"closed\", got \"{other}\"")))
        }
    };
    let backend = string("backend")?.unwrap_or_else(|| "memory".into());
    let not_for = |keys: &[&str], backend: &str| -> Result<(), ConfigError> {
        match keys.iter().find(|k| table.contains_key(**k)) {
            Some(key) => Err(invalid(key, format!("does not apply to backend = \"{backend}\""))),
            None => Ok(()),
        }
    };
    let backend = match backend.as_str() {
        "memory" => {
            not_for(REDIS_ONLY, "memory")?;
            let max_keys = match table.get("max_keys") {
                None => DEFAULT_MAX_KEYS,
                Some(value) => {
                    value.as_integer().filter(|n| *n > 0).and_then(|n| usize::try_from(n).ok()).ok_or_else(
                        || invalid("max_keys", format!("must be a positive integer, got {value}")),
                    )?
                }
            };
            BackendConfig::Memory { max_keys }
        }
        "redis" => {
            not_for(MEMORY_ONLY, "redis")?;
            let url_env = string("url_env")?.unwrap_or_else(|| DEFAULT_URL_ENV.into());
            if !url_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(
                    "url_env",
                    format!("must name an environment variable, got \"{url_env}\""),
                ));
            }
            BackendConfig::Redis {
                url_env,
                key_prefix: string("key_prefix")?.unwrap_or_else(|| DEFAULT_KEY_PREFIX.into()),
                timeout: seconds("timeout_seconds", DEFAULT_TIMEOUT)?,
                connect_timeout: seconds("connect_timeout_seconds", DEFAULT_CONNECT_TIMEOUT)?,
            }
        }
        other => {
            return Err(invalid("backend", format!("must be \"memory\" or \"redis\", got \"{other}\"")));
        }
    };
    Ok(StateConfig { backend, on_error })
}

trait Retitled {
    fn retitled(self) -> Self;
}

impl Retitled for ConfigError {
    /// `state.` for the table itself reads `state`.
    fn retitled(self) -> Self {
        match self {
            ConfigError::Invalid { file, key, message } => {
                ConfigError::Invalid { file, key: key.trim_end_matches('.').to_string(), message }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<StateConfig, String> {
        let table: toml::Table = text.parse().unwrap();
        parse(Path::new("config.toml"), table.get("state")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_is_in_process_and_open() {
        assert_eq!(read("").unwrap(), StateConfig::default());
        assert_eq!(read("[state]\n").unwrap(), StateConfig::default());
    }

    #[test]
    fn a_redis_table_reads_every_key() {
        let config = read(
            "[state]\nbackend = \"redis\"\nurl_env = \"MY_REDIS\"\non_error = \"closed\"\ntimeout_seconds = 0.2\nconnect_timeout_seconds = 2\nkey_prefix = \"gw\"\n",
        )
        .unwrap();
        assert_eq!(config.on_error, OnError::Closed);
        assert_eq!(
            config.backend,
            BackendConfig::Redis {
                url_env: "MY_REDIS".into(),
                key_prefix: "gw".into(),
                timeout: Duration::from_millis(200),
                connect_timeout: Duration::from_secs(2),
            }
        );
    }

    #[test]
    fn mistakes_are_errors_naming_the_key() {
        for (text, needle) in [
            ("[state]\nbackend = \"etcd\"\n", "state.backend"),
            ("[state]\non_error = \"maybe\"\n", "state.on_error"),
            ("[state]\nurl = \"redis://x\"\n", "unknown key `url` in [state]"),
            ("[state]\nurl_env = \"X\"\n", "state.url_env"),
            ("[state]\nbackend = \"redis\"\nmax_keys = 5\n", "state.max_keys"),
            ("[state]\nbackend = \"redis\"\ntimeout_seconds = 0\n", "state.timeout_seconds"),
            ("[state]\nbackend = \"redis\"\nurl_env = \"A B\"\n", "state.url_env"),
            ("[state]\nmax_keys = -1\n", "state.max_keys"),
            ("state = 3\n", "`state`"),
        ] {
            let err = read(text).unwrap_err();
            assert!(err.contains(needle) && err.contains("config.toml"), "{text:?}: {err}");
        }
    }
}
