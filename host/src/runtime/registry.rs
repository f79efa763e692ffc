//! The host side of the `arc:llm/registry` import: providers other than the inner one,
//! created on first use and cached. The cache is bounded (least recently used out): every
//! target a module names would otherwise create an adapter that lives as long as the stack.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::provider::Provider;
use crate::stream::EventStream;
use crate::target::Target;
use crate::types::{Error, Request, Response};

/// Resolves the targets a module names (`name` or `name/model`) to providers.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Sends `request` to the provider `target` names (`name` or `name/model`).
    async fn invoke(&self, target: &str, request: Request) -> Result<Response, Error>;

    /// Sends `request` to `target` and streams the answer (see [`Provider::invoke_stream`]).
    /// By default the answer is buffered: `invoke`, replayed as events.
    async fn invoke_stream(&self, target: &str, request: Request) -> Result<EventStream, Error> {
        Ok(crate::stream::from_response(self.invoke(target, request).await?))
    }
}

/// Makes the provider for a target's name and optional model (both already checked by
/// [`Target::parse`]); called at most once per target.
pub type ProviderFactory = dyn Fn(&str, Option<&str>) -> Result<Arc<dyn Provider>, Error> + Send + Sync;

/// How many targets a [`LazyRegistry`] keeps by default.
pub const DEFAULT_REGISTRY_CAPACITY: usize = 64;

/// A [`Registry`] that creates each target lazily with a factory and reuses it afterwards,
/// keeping at most `capacity` of them (the least recently used one goes first).
pub struct LazyRegistry {
    factory: Box<ProviderFactory>,
    cache: Mutex<Cache>,
}

struct Cache {
    /// Each target with its provider and when it was last used.
    entries: HashMap<Target, (Arc<dyn Provider>, u64)>,
    clock: u64,
    capacity: usize,
    created: usize,
}

impl LazyRegistry {
    /// A registry whose targets `factory` makes, the first time each is named.
    pub fn new(
        factory: impl Fn(&str, Option<&str>) -> Result<Arc<dyn Provider>, Error> + Send + Sync + 'static,
    ) -> Self {
        let cache =
            Cache { entries: HashMap::new(), clock: 0, capacity: DEFAULT_REGISTRY_CAPACITY, created: 0 };
        LazyRegistry { factory: Box::new(factory), cache: Mutex::new(cache) }
    }

    /// Keeps at most `capacity` targets (at least 1; default [`DEFAULT_REGISTRY_CAPACITY`]).
    pub fn with_capacity(self, capacity: usize) -> Self {
        self.lock().capacity = capacity.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The provider for `target`, created now if it is not cached.
    pub fn get(&self, target: &str) -> Result<Arc<dyn Provider>, Error> {
        let target = Target::parse(target)?;
        let mut cache = self.lock();
        cache.clock += 1;
        let now = cache.clock;
        if let Some((provider, used)) = cache.entries.get_mut(&target) {
            *used = now;
            return Ok(provider.clone());
        }
        let provider = (self.factory)(target.name(), target.model())?;
        cache.created += 1;
        if cache.entries.len() >= cache.capacity {
            let oldest = cache.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(t, _)| t.clone());
            if let Some(oldest) = oldest {
                cache.entries.remove(&oldest);
            }
        }
        cache.entries.insert(target, (provider.clone(), now));
        Ok(provider)
    }

    /// How many targets have been created so far (a target evicted and named again is
    /// created again).
    pub fn created(&self) -> usize {
        self.lock().created
    }

    /// How many targets are cached now.
    pub fn cached(&self) -> usize {
        self.lock().entries.len()
    }
}

#[async_trait]
impl Registry for LazyRegistry {
    async fn invoke(&self, target: &str, request: Request) -> Result<Response, Error> {
        let provider = self.get(target)?;
        provider.invoke(request).await
    }
    async fn invoke_stream(&self, target: &str, request: Request) -> Result<EventStream, Error> {
        let provider = self.get(target)?;
        provider.invoke_stream(request).await
    }
}

/// A registry with no providers: every target is a config error.
pub struct EmptyRegistry;

#[async_trait]
impl Registry for EmptyRegistry {
    async fn invoke(&self, target: &str, _request: Request) -> Result<Response, Error> {
        Target::parse(target)?;
        Err(Error::config(
            target,
            format!("no provider registry is configured, so `{target}` cannot be loaded"),
        ))
    }
}
