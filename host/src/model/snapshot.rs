//! What a model serves from: one immutable, fully loaded version of its stack, and the
//! files it was built from.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::runtime::{Module, ModuleSource};
use crate::stream::EventStream;
use crate::types::{Error, Options, Request, Response};
use crate::Provider;

/// One module of a model's stack, as loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct StackEntry {
    /// The module's name in config.toml.
    pub name: String,
    /// Where its code was loaded from.
    pub source: ModuleSource,
    /// The table the module was configured with.
    pub table: serde_json::Map<String, serde_json::Value>,
}

/// The files a model's stack was built from: what a reload re-reads and
/// [`Model::watch`](super::Model::watch) watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// config.toml, when reloads re-read it (not for an in-memory
    /// [`ModelBuilder::config`](super::ModelBuilder::config)).
    pub config_file: Option<PathBuf>,
    /// The directory of the user's provider files, when the catalog comes from one.
    pub providers_dir: Option<PathBuf>,
    /// The `.wasm` file of every enabled third-party module, outermost first.
    pub modules: Vec<PathBuf>,
}

/// One published version of a model's stack: the compiled modules with their tables and
/// the adapter under them. Immutable: a reload publishes a new snapshot instead of changing
/// this one, and a snapshot is freed when the model has moved on and its last call ended.
///
/// A caller that wants several calls on the very same stack (one agent turn, say) can hold
/// [`Model::snapshot`](super::Model::snapshot) and call it directly: it is a [`Provider`].
pub struct Snapshot {
    pub(super) version: u64,
    /// The outermost layer: the module stack, or the bare adapter when no module runs.
    pub(super) provider: Arc<dyn Provider>,
    pub(super) modules: Vec<Arc<Module>>,
    pub(super) stack: Vec<StackEntry>,
    pub(super) sources: Sources,
    pub(super) defaults: RequestDefaults,
}

/// config.toml's `[defaults] temperature` and `max_tokens`: the options of calls that set
/// none. A call's own options win.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct RequestDefaults {
    pub(super) temperature: Option<f64>,
    pub(super) max_tokens: Option<u32>,
}

impl RequestDefaults {
    fn apply(&self, options: &mut Options) {
        options.temperature = options.temperature.or(self.temperature);
        options.max_tokens = options.max_tokens.or(self.max_tokens);
    }
}

impl Snapshot {
    /// 1 for the stack [`ModelBuilder::build`](super::ModelBuilder::build) made, one more for
    /// each successful reload.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The modules around the adapter, outermost first (empty: the bare adapter).
    pub fn stack(&self) -> &[StackEntry] {
        &self.stack
    }

    /// The loaded modules, outermost first: what runs, with the tables they were given.
    /// Modules loaded from identical bytes share one compiled component.
    pub fn modules(&self) -> &[Arc<Module>] {
        &self.modules
    }

    /// The files this snapshot was built from.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }
}

impl fmt::Display for Snapshot {
    /// `stack v3 (retry → tag → anthropic/claude-…)`: what a reload log line names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stack v{} (", self.version)?;
        for entry in &self.stack {
            write!(f, "{} → ", entry.name)?;
        }
        write!(f, "{}/{})", self.provider.name(), self.provider.model_name())
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("stack", &self.stack)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Provider for Snapshot {
    async fn invoke(&self, mut request: Request) -> Result<Response, Error> {
        self.defaults.apply(&mut request.options);
        self.provider.invoke(request).await
    }
    /// Streams through the stack (see [`Stack`](crate::runtime::Stack)'s `invoke_stream`),
    /// or straight from the bare adapter.
    async fn invoke_stream(&self, mut request: Request) -> Result<EventStream, Error> {
        self.defaults.apply(&mut request.options);
        self.provider.invoke_stream(request).await
    }
    fn name(&self) -> &str {
        self.provider.name()
    }
    fn model_name(&self) -> &str {
        self.provider.model_name()
    }
    async fn validate_config(&self) -> Result<(), Error> {
        self.provider.validate_config().await
    }
}
