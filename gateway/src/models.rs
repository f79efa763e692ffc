//! Model routing: which [`Model`] serves a request.
//!
//! The client's `model` is an alias from `[aliases]`, else a target `provider` or
//! `provider/model`. Each distinct (provider, model, per-request module settings) gets one
//! `Model`, built on first use with the same rules as `load_model` (config.toml, then the
//! request's `x-arcllm-*` settings with `Setting` priority), kept (at most `[server]
//! max_models`, the least recently used dropped beyond), and reloaded with everything else.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arcllm::config::Config;
use arcllm::model::WatchHandle;
use arcllm::target::Target;
use arcllm::{load_model, BuildError, Model, Setting};
use axum::http::HeaderMap;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::errors::ApiError;

/// The modules a request may set by header, and the headers.
pub const MODULE_HEADERS: &[(&str, &str)] = &[("retry", "x-arcllm-retry"), ("fallback", "x-arcllm-fallback")];

/// Per-request module settings from `x-arcllm-retry` / `x-arcllm-fallback`: `off`, `on`
/// or a JSON table. Refused unless `[server] allow_module_headers` is true.
pub fn module_settings(headers: &HeaderMap, allowed: bool) -> Result<BTreeMap<String, Setting>, ApiError> {
    let mut settings = BTreeMap::new();
    for (module, header) in MODULE_HEADERS {
        let Some(value) = headers.get(*header) else { continue };
        if !allowed {
            return Err(ApiError::invalid(format!(
                "header `{header}` is not allowed: per-request module settings are off ([server] allow_module_headers)"
            )));
        }
        let text = value.to_str().unwrap_or_default().trim();
        let setting = match text {
            "off" => Setting::Off,
            "on" => Setting::On,
            _ => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(table)) => Setting::Table(table),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "header `{header}` must be `off`, `on` or a JSON object, got `{text}`"
                    )))
                }
            },
        };
        settings.insert(module.to_string(), setting);
    }
    Ok(settings)
}

/// The target `model` stands for: an alias, else `provider` or `provider/model`.
pub fn resolve(model: &str, aliases: &BTreeMap<String, Target>) -> Result<Target, ApiError> {
    if let Some(target) = aliases.get(model) {
        return Ok(target.clone());
    }
    Target::parse(model).map_err(|e| {
        let known = aliases.keys().cloned().collect::<Vec<_>>().join(", ");
        ApiError::ModelNotFound(format!(
            "model `{model}` is neither an alias (known: {}) nor `provider` or `provider/model`: {e}",
            if known.is_empty() { "none" } else { &known }
        ))
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    provider: String,
    model: Option<String>,
    settings: String,
}

/// A built model, and its file watcher.
struct Built {
    model: Arc<Model>,
    _watch: Option<WatchHandle>,
}

struct Entry {
    cell: Arc<OnceCell<Arc<Built>>>,
    last_used: u64,
}

/// The models built so far.
pub struct Models {
    config_file: Option<PathBuf>,
    max_models: usize,
    watch: bool,
    entries: Mutex<HashMap<Key, Entry>>,
    clock: AtomicU64,
}

impl Models {
    /// Models read from `config_file` (or the embedded default), at most `max_models`
    /// kept, each watching its files when `watch`.
    pub fn new(config_file: Option<PathBuf>, max_models: usize, watch: bool) -> Self {
        Models { config_file, max_models, watch, entries: Mutex::default(), clock: AtomicU64::new(0) }
    }

    /// The model for `target` with `settings`, built now if it is not yet.
    pub async fn get(
        &self,
        target: &Target,
        settings: &BTreeMap<String, Setting>,
    ) -> Result<Arc<Model>, ApiError> {
        let canonical = settings
            .iter()
            .map(|(name, s)| match s {
                Setting::Unset => format!("{name}=unset"),
                Setting::Off => format!("{name}=off"),
                Setting::On => format!("{name}=on"),
                Setting::Table(t) => format!("{name}={}", Value::Object(t.clone())),
            })
            .collect::<Vec<_>>()
            .join(";");
        let key = Key {
            provider: target.name().to_string(),
            model: target.model().map(str::to_owned),
            settings: canonical,
        };
        let cell = self.entry(&key);
        let built = cell.get_or_try_init(|| self.build(target, settings)).await;
        match built {
            Ok(built) => Ok(built.model.clone()),
            Err(error) => {
                // Not kept: a fixed config or a returning key serves the next request.
                let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                if entries.get(&key).is_some_and(|e| Arc::ptr_eq(&e.cell, &cell)) {
                    entries.remove(&key);
                }
                Err(error)
            }
        }
    }

    fn entry(&self, key: &Key) -> Arc<OnceCell<Arc<Built>>> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = entries.get_mut(key) {
            entry.last_used = now;
            return entry.cell.clone();
        }
        if entries.len() >= self.max_models {
            if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone()) {
                entries.remove(&oldest);
            }
        }
        let cell = Arc::new(OnceCell::new());
        entries.insert(key.clone(), Entry { cell: cell.clone(), last_used: now });
        cell
    }

    async fn build(
        &self,
        target: &Target,
        settings: &BTreeMap<String, Setting>,
    ) -> Result<Arc<Built>, ApiError> {
        let mut builder = load_model(target.name());
        if let Some(model) = target.model() {
            builder = builder.model(model);
        }
        if let Some(file) = &self.config_file {
            builder = builder.config_file(file);
        }
        for (name, setting) in settings {
            builder = builder.module(name, setting.clone());
        }
        let model = Arc::new(builder.build().await.map_err(|e| build_error(target, e))?);
        let watch = match self.watch {
            true => match model.watch() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!("{target}: changes to its files will not reload it: {e}");
                    None
                }
            },
            false => None,
        };
        tracing::info!("{target}: built {}", model.snapshot());
        Ok(Arc::new(Built { model, _watch: watch }))
    }

    /// Every model built so far.
    pub fn built(&self) -> Vec<(String, Arc<Model>)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .filter_map(|(key, entry)| {
                let name = match &key.model {
                    Some(model) => format!("{}/{model}", key.provider),
                    None => key.provider.clone(),
                };
                entry.cell.get().map(|built| (name, built.model.clone()))
            })
            .collect()
    }

    /// Reloads every built model (see `Model::reload`): calls in flight finish on the stack
    /// they started on. Returns the failures; a model that failed keeps its old stack.
    pub async fn reload_all(&self) -> Vec<(String, BuildError)> {
        let reloads =
            self.built().into_iter().map(|(name, model)| async move { (name, model.reload().await) });
        futures_util::future::join_all(reloads)
            .await
            .into_iter()
            .filter_map(|(name, result)| result.err().map(|e| (name, e)))
            .collect()
    }
}

fn build_error(target: &Target, error: BuildError) -> ApiError {
    match &error {
        BuildError::Provider(e) if e.message.contains("unknown provider") => {
            ApiError::ModelNotFound(format!("model `{target}`: {}", e.message))
        }
        BuildError::Config(arcllm::config::ConfigError::Call { .. }) => ApiError::invalid(error.to_string()),
        _ => ApiError::Internal(format!("model `{target}` cannot be built: {error}")),
    }
}

/// Loads and compiles every module config.toml enables, so that the first request does not
/// pay for it and a module that does not load stops the start (`/readyz` waits for this).
pub async fn warm(config: &Config) -> Result<usize, String> {
    use arcllm::config::ModuleCode;
    use arcllm::runtime::{ModuleSource, Runtime};
    let planned = arcllm::model::plan(config, &BTreeMap::new()).map_err(|e| e.to_string())?;
    if planned.is_empty() {
        return Ok(0);
    }
    let runtime = Runtime::shared().map_err(|e| e.to_string())?.with_call_limits(config.limits.clone());
    for module in &planned {
        let table = Value::Object(module.table.clone());
        let loaded = match &module.code {
            ModuleCode::Wasm(path) => runtime.load_module_file(&module.name, path, &table).await,
            ModuleCode::Builtin => {
                let bytes = arcllm::builtin::get(&module.name).unwrap_or_default().to_vec();
                runtime.load_module(&module.name, ModuleSource::Builtin, bytes, &table).await
            }
        };
        loaded.map_err(|e| format!("[modules.{}]: {e}", module.name))?;
    }
    Ok(planned.len())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn aliases_win_then_targets_and_the_rest_is_not_found() {
        let aliases = BTreeMap::from([("fast".to_string(), Target::parse("groq/llama-3").unwrap())]);
        assert_eq!(resolve("fast", &aliases).unwrap().to_string(), "groq/llama-3");
        assert_eq!(resolve("openai/gpt-4o", &aliases).unwrap().model(), Some("gpt-4o"));
        assert_eq!(resolve("anthropic", &aliases).unwrap().name(), "anthropic");
        let missing = resolve("gpt-4o", &aliases).unwrap_err();
        assert_eq!(missing.status(), 404);
        assert!(missing.to_string().contains("fast"), "{missing}");
    }

    #[test]
    fn module_headers_parse_and_are_refused_unless_allowed() {
        let mut headers = HeaderMap::new();
        headers.insert("x-arcllm-retry", HeaderValue::from_static("off"));
        headers.insert("x-arcllm-fallback", HeaderValue::from_static(r#"{"chain": ["openai"]}"#));
        let settings = module_settings(&headers, true).unwrap();
        assert_eq!(settings["retry"], Setting::Off);
        assert!(matches!(&settings["fallback"], Setting::Table(t) if t["chain"][0] == "openai"));
        assert_eq!(module_settings(&headers, false).unwrap_err().status(), 400);
        headers.insert("x-arcllm-retry", HeaderValue::from_static("maybe"));
        assert!(module_settings(&headers, true).unwrap_err().to_string().contains("x-arcllm-retry"));
        assert!(module_settings(&HeaderMap::new(), false).unwrap().is_empty());
    }
}
