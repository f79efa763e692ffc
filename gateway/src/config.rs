//! The gateway's part of config.toml: the `[server]` table and `[aliases]`.
//!
//! Every key is checked: an unknown key, a value of the wrong type or out of range is an
//! error naming the file and the key, as everywhere else in config.toml.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arcllm::config::{Config, ConfigError};
use arcllm::target::Target;

/// The keys of `[server]`.
const SERVER_KEYS: &[&str] = &[
    "listen",
    "api_keys_env",
    "max_body_bytes",
    "max_concurrent",
    "queue",
    "request_timeout_seconds",
    "header_read_timeout_seconds",
    "body_read_timeout_seconds",
    "shutdown_grace_seconds",
    "allow_module_headers",
    "access_log",
    "log_level",
    "max_models",
    "watch",
];

/// `[server]`: how `arcllm serve` listens, authenticates and bounds its work.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// `listen`: the address to bind (default `127.0.0.1:8080`; `--listen` wins).
    pub listen: SocketAddr,
    /// `api_keys_env`: the environment variable holding the gateway's own keys,
    /// comma-separated (default `ARCLLM_SERVER_API_KEYS`).
    pub api_keys_env: String,
    /// `max_body_bytes`: the largest request body; a bigger one is answered 413.
    pub max_body_bytes: usize,
    /// `max_concurrent`: requests served at once.
    pub max_concurrent: usize,
    /// `queue`: requests waiting for a slot; one more is answered 503 with `Retry-After`.
    pub queue: usize,
    /// `request_timeout_seconds`: the deadline of one request, queueing and streaming
    /// included.
    pub request_timeout: Duration,
    /// `header_read_timeout_seconds`: how long a client may take to send its headers.
    pub header_read_timeout: Duration,
    /// `body_read_timeout_seconds`: how long a client may take to send its body.
    pub body_read_timeout: Duration,
    /// `shutdown_grace_seconds`: how long requests in flight may take to finish after
    /// SIGTERM or SIGINT.
    pub shutdown_grace: Duration,
    /// `allow_module_headers`: whether `x-arcllm-retry` and `x-arcllm-fallback` may change
    /// a request's module settings (default false: such a request is refused).
    pub allow_module_headers: bool,
    /// `access_log`: one log line per request (default true).
    pub access_log: bool,
    /// `log_level`: the default log level (`error`, `warn`, `info`, `debug`, `trace`);
    /// `RUST_LOG` wins.
    pub log_level: String,
    /// `max_models`: distinct models kept built; the least recently used is dropped beyond.
    pub max_models: usize,
    /// `watch`: reload when config.toml, a provider file or a module file changes (default
    /// true; SIGHUP always reloads).
    pub watch: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_keys_env: "ARCLLM_SERVER_API_KEYS".into(),
            max_body_bytes: 16 << 20,
            max_concurrent: 512,
            queue: 2048,
            request_timeout: Duration::from_secs(600),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            allow_module_headers: false,
            access_log: true,
            log_level: "info".into(),
            max_models: 64,
            watch: true,
        }
    }
}

/// What `arcllm serve` reads from config.toml: the library's configuration and its own
/// tables.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The configuration file, if one was found (reloads re-read it).
    pub file: Option<PathBuf>,
    /// The library's configuration (providers, modules, limits).
    pub config: Config,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[aliases]`: a model name clients may use, and the target it stands for.
    pub aliases: BTreeMap<String, Target>,
}

impl GatewayConfig {
    /// Finds config.toml as every arcllm command does (`explicit`, else `$ARCLLM_CONFIG`,
    /// `./arcllm.toml`, `$XDG_CONFIG_HOME/arcllm/config.toml`), and reads it.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        match Config::locate(explicit)? {
            Some(found) => Self::from_file(&found.path),
            None => Self::from_config(Config::embedded()),
        }
    }

    /// Reads `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_config(Config::from_file(path)?)
    }

    /// The gateway's tables of an already read configuration.
    pub fn from_config(config: Config) -> Result<Self, ConfigError> {
        let file = config.file.clone();
        let reader = Reader { file: file.clone().unwrap_or_else(|| "<embedded default>".into()) };
        let server = match config.section("server") {
            None => ServerConfig::default(),
            Some(toml::Value::Table(table)) => reader.server(table)?,
            Some(other) => return Err(reader.invalid("server", format!("must be a table, got {other}"))),
        };
        let aliases = match config.section("aliases") {
            None => BTreeMap::new(),
            Some(toml::Value::Table(table)) => reader.aliases(table)?,
            Some(other) => return Err(reader.invalid("aliases", format!("must be a table, got {other}"))),
        };
        Ok(GatewayConfig { file, config, server, aliases })
    }
}

struct Reader {
    file: PathBuf,
}

impl Reader {
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid { file: self.file.clone(), key: key.to_string(), message }
    }

    fn server(&self, table: &toml::Table) -> Result<ServerConfig, ConfigError> {
        if let Some(key) = table.keys().find(|k| !SERVER_KEYS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownKey {
                file: self.file.clone(),
                table: "server".into(),
                key: key.clone(),
                expected: SERVER_KEYS.join(", "),
            });
        }
        let mut s = ServerConfig::default();
        let key = |k: &str| format!("server.{k}");
        if let Some(value) = table.get("listen") {
            let text = value.as_str().ok_or_else(|| {
                self.invalid(
                    &key("listen"),
                    format!("must be an address such as \"127.0.0.1:8080\", got {value}"),
                )
            })?;
            s.listen = text.parse().map_err(|e| {
                self.invalid(&key("listen"), format!("`{text}` is not an IP address and port: {e}"))
            })?;
        }
        if let Some(value) = table.get("api_keys_env") {
            match value.as_str().map(str::trim) {
                Some(name) if !name.is_empty() && !name.contains('=') => s.api_keys_env = name.to_string(),
                _ => {
                    return Err(self.invalid(
                        &key("api_keys_env"),
                        format!("must name an environment variable, got {value}"),
                    ))
                }
            }
        }
        let count = |k: &str, default: usize| -> Result<usize, ConfigError> {
            match table.get(k) {
                None => Ok(default),
                Some(value) => {
                    value.as_integer().filter(|n| *n > 0).and_then(|n| usize::try_from(n).ok()).ok_or_else(
                        || self.invalid(&key(k), format!("must be a positive integer, got {value}")),
                    )
                }
            }
        };
        s.max_body_bytes = count("max_body_bytes", s.max_body_bytes)?;
        s.max_concurrent = count("max_concurrent", s.max_concurrent)?;
        s.max_models = count("max_models", s.max_models)?;
        s.queue = match table.get("queue") {
            None => s.queue,
            // 0 is allowed: no queue, answer 503 as soon as every slot is taken.
            Some(value) => value.as_integer().filter(|n| *n >= 0).map(|n| n as usize).ok_or_else(|| {
                self.invalid(&key("queue"), format!("must be a non-negative integer, got {value}"))
            })?,
        };
        let seconds = |k: &str, default: Duration| -> Result<Duration, ConfigError> {
            let Some(value) = table.get(k) else { return Ok(default) };
            value
                .as_float()
                .or_else(|| value.as_integer().map(|i| i as f64))
                .filter(|n| n.is_finite() && *n > 0.0)
                .and_then(|n| Duration::try_from_secs_f64(n).ok())
                .ok_or_else(|| {
                    self.invalid(&key(k), format!("must be a positive number of seconds, got {value}"))
                })
        };
        s.request_timeout = seconds("request_timeout_seconds", s.request_timeout)?;
        s.header_read_timeout = seconds("header_read_timeout_seconds", s.header_read_timeout)?;
        s.body_read_timeout = seconds("body_read_timeout_seconds", s.body_read_timeout)?;
        s.shutdown_grace = seconds("shutdown_grace_seconds", s.shutdown_grace)?;
        let flag = |k: &str, default: bool| -> Result<bool, ConfigError> {
            match table.get(k) {
                None => Ok(default),
                Some(toml::Value::Boolean(b)) => Ok(*b),
                Some(value) => Err(self.invalid(&key(k), format!("must be true or false, got {value}"))),
            }
        };
        s.allow_module_headers = flag("allow_module_headers", s.allow_module_headers)?;
        s.access_log = flag("access_log", s.access_log)?;
        s.watch = flag("watch", s.watch)?;
        if let Some(value) = table.get("log_level") {
            const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
            match value.as_str() {
                Some(level) if LEVELS.contains(&level) => s.log_level = level.to_string(),
                _ => {
                    return Err(self.invalid(
                        &key("log_level"),
                        format!("must be one of {}, got {value}", LEVELS.join(", ")),
                    ))
                }
            }
        }
        Ok(s)
    }

    fn aliases(&self, table: &toml::Table) -> Result<BTreeMap<String, Target>, ConfigError> {
        let mut aliases = BTreeMap::new();
        for (name, value) in table {
            let key = format!("aliases.{name}");
            if name.trim().is_empty() || name.contains('/') {
                return Err(self.invalid(&key, "an alias is a model name without `/`".into()));
            }
            let text = value.as_str().ok_or_else(|| {
                self.invalid(
                    &key,
                    format!("must be a target such as \"groq/llama-3.3-70b-versatile\", got {value}"),
                )
            })?;
            let target = Target::parse(text).map_err(|e| self.invalid(&key, e.to_string()))?;
            aliases.insert(name.clone(), target);
        }
        Ok(aliases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_config(Config::from_toml(text, Path::new("test.toml"))?)
    }

    #[test]
    fn defaults_without_tables() {
        let config = read("").unwrap();
        assert_eq!(config.server, ServerConfig::default());
        assert!(config.aliases.is_empty());
    }

    #[test]
    fn reads_every_key() {
        let config = read(
            "[server]\nlisten = \"0.0.0.0:9000\"\napi_keys_env = \"KEYS\"\nmax_body_bytes = 10\nmax_concurrent = 2\nqueue = 0\nrequest_timeout_seconds = 1.5\nheader_read_timeout_seconds = 2\nbody_read_timeout_seconds = 3\nshutdown_grace_seconds = 4\nallow_module_headers = true\naccess_log = false\nlog_level = \"warn\"\nmax_models = 3\nwatch = false\n[aliases]\nfast = \"groq/llama-3.3-70b-versatile\"\n",
        )
        .unwrap();
        let s = &config.server;
        assert_eq!(s.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(
            (s.api_keys_env.as_str(), s.max_body_bytes, s.max_concurrent, s.queue),
            ("KEYS", 10, 2, 0)
        );
        assert_eq!(s.request_timeout, Duration::from_millis(1500));
        assert_eq!(s.shutdown_grace, Duration::from_secs(4));
        assert!(s.allow_module_headers && !s.access_log && !s.watch);
        assert_eq!((s.log_level.as_str(), s.max_models), ("warn", 3));
        assert_eq!(config.aliases["fast"].to_string(), "groq/llama-3.3-70b-versatile");
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        for (text, needle) in [
            ("[server]\nlisten_addr = \"x\"", "unknown key `listen_addr` in [server]"),
            ("[server]\nlisten = \"localhost\"", "server.listen"),
            ("[server]\nmax_concurrent = 0", "server.max_concurrent"),
            ("[server]\nqueue = -1", "server.queue"),
            ("[server]\nrequest_timeout_seconds = -1", "server.request_timeout_seconds"),
            ("[server]\naccess_log = \"yes\"", "server.access_log"),
            ("[server]\nlog_level = \"loud\"", "server.log_level"),
            ("[aliases]\nfast = \"Not A Provider\"", "aliases.fast"),
            ("[aliases]\n\"a/b\" = \"openai\"", "aliases.a/b"),
            ("server = 3", "`server`"),
        ] {
            let error = read(text).expect_err(text).to_string();
            assert!(error.contains(needle), "{text}: {error}");
            assert!(error.contains("test.toml"), "{text}: {error}");
        }
    }
}
