//! `load_model`: what agents call. One call returns a model whose `invoke` runs the
//! configured stack — `retry(fallback(adapter))` and any third-party modules — or the bare
//! adapter when no module is enabled.
//!
//! A model serves from an immutable [`Snapshot`] of its stack behind an atomic pointer:
//! [`Model::reload`] builds a whole new snapshot from the files and publishes it only when
//! every part of it loaded, so a call never sees half a stack and a bad file never takes
//! the model down. [`Model::watch`] reloads on its own when those files change.
//!
//! [`ModelBuilder`] holds the caller's options; `assemble` turns the resolved recipe into
//! a snapshot, for the build and for every reload; [`Model`] here publishes snapshots and
//! serves calls from the current one.

mod assemble;
mod builder;
mod setting;
mod snapshot;
mod targets;
mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;

pub use builder::{load_model, BuildError, ModelBuilder};
pub use setting::{plan, PlannedModule, Setting};
pub use snapshot::{Snapshot, Sources, StackEntry};
pub use watch::{WatchError, WatchHandle, WatchStatus, DEFAULT_DEBOUNCE};

use crate::stream::EventStream;
use crate::types::{Error, Message, Options, Request, Response, ToolDefinition};
use crate::Provider;
use assemble::Recipe;

/// A ready model: `invoke` runs its stack.
pub struct Model {
    /// What every reload rebuilds from, with the provider and model pinned at build.
    recipe: Recipe,
    /// The provider every snapshot calls, as resolved at build (from the builder, else
    /// config.toml): a reload never changes it.
    provider: String,
    /// The model every snapshot calls, as resolved at build (from the builder, else
    /// config.toml, else the provider's default).
    model: String,
    current: ArcSwap<Snapshot>,
    /// Numbers reloads in the order they start.
    reloads_started: AtomicU64,
    /// The number of the reload that published last. Held only to publish, never while a
    /// reload loads modules (untrusted code runs then), so one stuck reload cannot hold
    /// back the others.
    published: Mutex<u64>,
}

impl Model {
    /// A model serving `first`; its reloads rebuild from `recipe` pinned to the provider
    /// and model `first` resolved.
    fn new(recipe: Recipe, first: Snapshot) -> Self {
        let provider = first.provider.name().to_string();
        let model = first.provider.model_name().to_string();
        Model {
            recipe: recipe.pinned_to(&provider, &model),
            provider,
            model,
            current: ArcSwap::from_pointee(first),
            reloads_started: AtomicU64::new(0),
            published: Mutex::new(0),
        }
    }

    /// Sends `messages` with `tools` and `options` through the stack.
    pub async fn invoke(
        &self,
        messages: Vec<Message>,
        tools: Vec<ToolDefinition>,
        options: Options,
    ) -> Result<Response, Error> {
        self.invoke_request(Request { messages, tools, options }).await
    }

    /// Sends a whole request through the stack.
    pub async fn invoke_request(&self, request: Request) -> Result<Response, Error> {
        // Take the snapshot once: the call finishes on it even if it is replaced meanwhile.
        let snapshot = self.current.load_full();
        snapshot.invoke(request).await
    }

    /// Sends `messages` through the stack and returns the answer as a stream of events
    /// (see [`crate::stream`]), as the vendor sends it: retry and fallback act before the
    /// first content event, and the events after it reach the caller without entering any
    /// module. A module built for contract 0.2 answers whole (see the README's Streaming).
    pub async fn invoke_stream(
        &self,
        messages: Vec<Message>,
        tools: Vec<ToolDefinition>,
        options: Options,
    ) -> Result<EventStream, Error> {
        let snapshot = self.current.load_full();
        snapshot.invoke_stream(Request { messages, tools, options }).await
    }

    /// The stack calls start on now. Holding it keeps that version alive (and callable)
    /// after a reload replaces it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The version of the current stack: 1 after build, one more per successful reload.
    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    /// The files the current stack was built from (what [`Model::watch`] watches).
    pub fn sources(&self) -> Sources {
        self.current.load().sources.clone()
    }

    /// The modules around the adapter, outermost first (empty: the bare adapter).
    pub fn stack(&self) -> Vec<StackEntry> {
        self.current.load().stack.clone()
    }

    /// The names of [`Model::stack`], outermost first.
    pub fn stack_names(&self) -> Vec<String> {
        self.current.load().stack.iter().map(|e| e.name.clone()).collect()
    }

    /// True when no module is enabled: calls go straight to the adapter, no wasm at all.
    pub fn is_bare(&self) -> bool {
        self.current.load().stack.is_empty()
    }

    /// Rebuilds from the same options and publishes the result as the next version: the
    /// config file is re-read (unless the model was given an in-memory
    /// [`ModelBuilder::config`]), and so are the provider files and every module file.
    /// Unchanged module files cost a hash, not a compile (compiled components are cached
    /// by content); changed ones compile on blocking threads.
    ///
    /// Calls already running finish on the stack they started on; calls that start after
    /// this returns use the new one. The provider and model stay those resolved at build.
    /// On error (a file that cannot be read, is not a component, does not implement the
    /// module world, has a config table its module rejects, a TOML syntax error …) nothing
    /// is published, the current stack keeps serving, and the error names the file.
    ///
    /// Reloads run concurrently (a module that is slow to start holds back no other
    /// reload; its start is bounded by `[limits] configure_timeout_seconds`). Versions only
    /// go up: a reload publishes as the next version, unless one that started after it has
    /// published already — then its stack, built from files read earlier, is dropped and
    /// this returns `Ok` with the newer stack serving.
    pub async fn reload(&self) -> Result<(), BuildError> {
        self.publish_next().await.map(drop)
    }

    /// [`Model::reload`], returning the snapshot it published.
    async fn publish_next(&self) -> Result<Arc<Snapshot>, BuildError> {
        let number = self.reloads_started.fetch_add(1, Ordering::AcqRel) + 1;
        // Numbered when published: the version is not known until then.
        let mut snapshot = self.recipe.assemble(0).await?;
        let mut published = self.published.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *published > number {
            return Ok(self.current.load_full());
        }
        snapshot.version = self.current.load().version + 1;
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        *published = number;
        Ok(snapshot)
    }

    /// Starts reloading this model whenever one of its [`Model::sources`] changes on disk,
    /// after the changes settle for [`DEFAULT_DEBOUNCE`]. Opt-in; stops when the handle is
    /// dropped. Needs a tokio runtime. See [`WatchHandle`].
    pub fn watch(self: &Arc<Self>) -> Result<WatchHandle, WatchError> {
        self.watch_debounced(DEFAULT_DEBOUNCE)
    }

    /// As [`Model::watch`], reloading once changes have settled for `debounce`.
    pub fn watch_debounced(self: &Arc<Self>, debounce: Duration) -> Result<WatchHandle, WatchError> {
        watch::start(self, debounce)
    }

    /// The sources the watcher should follow: the current stack's, and those of the
    /// configuration on disk even when it does not load (yet).
    async fn watch_targets(&self) -> Vec<Sources> {
        let mut targets = vec![self.sources()];
        if let Some(pending) = self.recipe.pending_sources().await {
            if pending != targets[0] {
                targets.push(pending);
            }
        }
        targets
    }
}

#[async_trait]
impl Provider for Model {
    async fn invoke(&self, request: Request) -> Result<Response, Error> {
        self.invoke_request(request).await
    }
    async fn invoke_stream(&self, request: Request) -> Result<EventStream, Error> {
        self.current.load_full().invoke_stream(request).await
    }
    /// The provider resolved at build, which every snapshot calls.
    fn name(&self) -> &str {
        &self.provider
    }
    /// The model resolved at build, which every snapshot calls.
    fn model_name(&self) -> &str {
        &self.model
    }
    async fn validate_config(&self) -> Result<(), Error> {
        self.current.load_full().provider.validate_config().await
    }
}
