//! The providers a model's modules reach through the registry (fallback's chain, a
//! third-party module's `reach`), and what guards them.
//!
//! A circuit breaker is about a provider, not about the model that happened to call it: when
//! a model's stack has the built-in `circuit_breaker`, each registry target runs behind that
//! same module, with the same table, over the same shared state (the module's own namespace,
//! keyed by the target's provider, or provider and model). So a breaker that any model or
//! replica opened for a provider makes fallback skip it, failing at once with the breaker's
//! error and no network call; a fallback's call may be the half-open probe; and a target's
//! failures count towards its breaker wherever it was called from, as the primary's do.

use std::sync::Arc;

use crate::providers::ProviderCatalog;
use crate::runtime::{LazyRegistry, Module, ModuleSource, RandomSource, Runtime, Stack};
use crate::state::StateStore;
use crate::Provider;

/// The built-in module that guards registry targets too.
const BREAKER: &str = "circuit_breaker";

/// The registry for a stack of `modules`: providers `catalog` makes on first use, each
/// behind the stack's built-in circuit breaker when it has one.
pub(super) fn registry(
    catalog: &Arc<ProviderCatalog>,
    runtime: &Runtime,
    modules: &[Arc<Module>],
    state: &StateStore,
    random: Option<&RandomSource>,
) -> LazyRegistry {
    let factory = catalog.factory();
    let breaker = modules.iter().find(|m| m.name == BREAKER && m.source == ModuleSource::Builtin);
    let Some(breaker) = breaker.cloned() else { return LazyRegistry::new(factory) };
    let (runtime, state, random) = (runtime.clone(), state.clone(), random.cloned());
    LazyRegistry::new(move |name, model| {
        let adapter = factory(name, model)?;
        let guarded = Stack::new(runtime.clone(), vec![breaker.clone()], adapter).with_state(state.clone());
        let guarded = match &random {
            Some(random) => guarded.with_random(random.clone()),
            None => guarded,
        };
        Ok(Arc::new(guarded) as Arc<dyn Provider>)
    })
}
