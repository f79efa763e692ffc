//! The versions of the `arc:llm` contract this host speaks, and modules bound to the one
//! they were built for.
//!
//! Each version has its own bindings, generated from its WIT (`wit/v0.2`, …), an entry in
//! [`SUPPORTED`], and a variant in `MiddlewarePre` and `Middleware`. A module is bound
//! to the version its component names (`arc:llm/provider@0.2.0`), so a host that learns a
//! new version keeps loading modules built for the older ones, and a module built for a
//! version the host does not speak is refused by name before it is type-checked.
//! The host's own data model ([`crate::types`]) is the newest version's.

use wasmtime::component::{InstancePre, Resource};
use wasmtime::AsContextMut;

use super::imports::HeldRequest;
use super::sandbox::CallState;
use crate::types::{Error, Response};

pub mod since_v0_2;

pub use since_v0_2 as latest;

/// Every version of the contract this host loads modules for, oldest first.
pub const SUPPORTED: &[Contract] = &[since_v0_2::CONTRACT];

/// One version of the contract: what a module built for it names, and how the host binds
/// such a module.
pub struct Contract {
    /// The version of the `arc:llm` package, e.g. `0.2.0`.
    pub version: &'static str,
    /// The world a module built for it implements, e.g. `arc:llm/middleware@0.2.0`.
    pub world: &'static str,
    /// Type-checks a module against this version's world.
    bind: fn(InstancePre<CallState>) -> wasmtime::Result<MiddlewarePre>,
}

impl Contract {
    /// The supported version a module naming `arc:llm@{version}` can be served by: the
    /// same version, or one semver calls compatible with it (same major version; for 0.x
    /// the same minor), the rule wasmtime applies when it links names with versions.
    pub fn find(version: &str) -> Option<&'static Contract> {
        SUPPORTED.iter().find(|contract| compatible(contract.version, version))
    }

    /// The supported versions, for messages: `0.2.0, 0.3.0`.
    pub fn supported_list() -> String {
        SUPPORTED.iter().map(|contract| contract.version).collect::<Vec<_>>().join(", ")
    }

    pub(crate) fn bind(&self, pre: InstancePre<CallState>) -> wasmtime::Result<MiddlewarePre> {
        (self.bind)(pre)
    }
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract").field("version", &self.version).finish()
    }
}

/// Whether semver lets a module built for `found` run against bindings of `ours`.
fn compatible(ours: &str, found: &str) -> bool {
    ours == found || compatibility_track(ours).is_some_and(|track| Some(track) == compatibility_track(found))
}

/// The versions a version is compatible with: `(major, None)` from 1.0, `(0, Some(minor))`
/// below it. `None` for 0.0.x and pre-releases, which are compatible only with themselves.
fn compatibility_track(version: &str) -> Option<(u64, Option<u64>)> {
    let release = version.split('+').next()?;
    if release.contains('-') {
        return None;
    }
    let mut parts = release.split('.').map(|part| part.parse::<u64>().ok());
    let (major, minor, _patch) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() {
        return None;
    }
    match (major, minor) {
        (0, 0) => None,
        (0, minor) => Some((0, Some(minor))),
        (major, _) => Some((major, None)),
    }
}

/// A module compiled and type-checked against the version of the contract it was built
/// for, ready to instantiate in any store.
pub(crate) enum MiddlewarePre {
    V0_2(since_v0_2::MiddlewarePre<CallState>),
}

impl MiddlewarePre {
    pub(crate) async fn instantiate_async(
        &self,
        store: impl AsContextMut<Data = CallState>,
    ) -> wasmtime::Result<Middleware> {
        Ok(match self {
            MiddlewarePre::V0_2(pre) => Middleware::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance of a module, whatever version of the contract it speaks. Its exports take
/// and return the host's data model.
pub(crate) enum Middleware {
    V0_2(since_v0_2::Middleware),
}

/// Runs `$call` on the bindings of whichever version `$self` speaks: one arm per
/// supported version.
macro_rules! each_version {
    ($self:expr, $instance:ident => $call:expr) => {
        match $self {
            Middleware::V0_2($instance) => $call,
        }
    };
}

impl Middleware {
    pub(crate) async fn call_invoke(
        &self,
        store: impl AsContextMut<Data = CallState>,
        request: Resource<HeldRequest>,
    ) -> wasmtime::Result<Result<Response, Error>> {
        each_version!(self, instance => instance.arc_llm_provider().call_invoke(store, request).await)
    }

    pub(crate) async fn call_name(
        &self,
        store: impl AsContextMut<Data = CallState>,
    ) -> wasmtime::Result<String> {
        each_version!(self, instance => instance.arc_llm_provider().call_name(store).await)
    }

    pub(crate) async fn call_model_name(
        &self,
        store: impl AsContextMut<Data = CallState>,
    ) -> wasmtime::Result<String> {
        each_version!(self, instance => instance.arc_llm_provider().call_model_name(store).await)
    }

    pub(crate) async fn call_validate_config(
        &self,
        store: impl AsContextMut<Data = CallState>,
    ) -> wasmtime::Result<Result<(), Error>> {
        each_version!(self, instance => instance.arc_llm_provider().call_validate_config(store).await)
    }

    pub(crate) async fn call_configure(
        &self,
        store: impl AsContextMut<Data = CallState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        each_version!(self, instance => instance.arc_llm_module().call_configure(store, config).await)
    }
}
