//! Bounds on what the host does on a module's behalf: how long a call and a module's start
//! may take, how many provider calls one outer call may cause, how big an answer a module
//! may hand back, how big a module file may be and how long it may take to compile, and
//! how many of the runtime's instance slots one stack may hold.
//!
//! [`CallLimits`] are the configurable ones (config.toml's `[limits]` table); the answer
//! caps are constants. The per-call counters live in [`CallBudget`], one per store.

use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::bounds::{HostLimits, ResponseOver};
use super::wit::Capped;
use crate::text::clipped;
use crate::types::{Error, ErrorKind, Response};

/// Most bytes of text one response a module returns may carry: its content, thinking and
/// tool calls together, each tool call counting 72 bytes more for what the host holds for
/// it. Counted as the response is copied out of the module, which stops at the cap.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Most metadata entries one response a module returns may carry.
pub const MAX_METADATA_ENTRIES: usize = 1024;
/// Most bytes of metadata (keys and values together) one response a module returns may
/// carry.
pub const MAX_METADATA_BYTES: usize = 1 << 20;
/// Most bytes of an error message a module returned that the host repeats when it
/// rewrites the error: the module controls the text.
const MAX_QUOTED: usize = 1024;

/// Time and call limits around every module, configurable per model (config.toml's
/// `[limits]`) or per runtime ([`RuntimeBuilder::call_limits`](super::RuntimeBuilder::call_limits)).
#[derive(Clone, Debug, PartialEq)]
pub struct CallLimits {
    /// Longest one call through a stack may take, wall clock, waits included. Bounds a
    /// module that sleeps or waits forever; the adapters' own HTTP timeouts still apply
    /// beneath it. Default 600 s.
    pub call_timeout: Duration,
    /// Longest a module may take to be instantiated and configured (at load, and when a
    /// call needs a fresh instance). Default 10 s.
    pub configure_timeout: Duration,
    /// Most provider calls (to the inner provider or through the registry) all modules of
    /// a stack may make together within one outer call. Default 32.
    pub max_calls_per_invoke: u32,
    /// Largest module file (component bytes) the host compiles. Default 32 MiB.
    pub max_module_bytes: usize,
    /// Longest compiling one module may take. The compiling thread cannot be stopped: the
    /// load returns at the deadline and the thread finishes (and is discarded) in the
    /// background. Default 30 s.
    pub compile_timeout: Duration,
    /// Most instance slots one stack's calls may hold at once, so that calls stuck in one
    /// stack cannot starve the others. `None`: half the runtime's
    /// [`max_instances`](super::RuntimeBuilder::max_instances). Never below what one call
    /// of the stack needs.
    pub max_instances_per_stack: Option<usize>,
    /// Most bytes of requests that `request-handle`s made by modules may hold at once in
    /// one call. `None`: the runtime's
    /// ([`RuntimeBuilder::max_request_bytes_per_call`](super::RuntimeBuilder::max_request_bytes_per_call)).
    pub max_request_bytes_per_call: Option<usize>,
    /// Most bytes of one line a module logs. `None`: the runtime's
    /// ([`RuntimeBuilder::max_log_line_bytes`](super::RuntimeBuilder::max_log_line_bytes)).
    pub max_log_line_bytes: Option<usize>,
    /// Most lines the modules of one call may log. `None`: the runtime's
    /// ([`RuntimeBuilder::max_log_lines_per_call`](super::RuntimeBuilder::max_log_lines_per_call)).
    pub max_log_lines_per_call: Option<usize>,
    /// Most bytes of linear memory a store may hold and still be kept idle for reuse.
    /// `None`: the runtime's
    /// ([`RuntimeBuilder::max_idle_store_memory`](super::RuntimeBuilder::max_idle_store_memory)).
    pub max_idle_store_memory_bytes: Option<usize>,
    /// Most bytes of linear memory the idle stores of the stacks made with one runtime
    /// handle (one model: [`Runtime::with_call_limits`](super::Runtime::with_call_limits))
    /// may hold together. The runtime-wide bound
    /// ([`RuntimeBuilder::max_idle_memory`](super::RuntimeBuilder::max_idle_memory)) still
    /// applies. `None`: only the runtime-wide bound.
    pub max_idle_memory_bytes: Option<usize>,
}

impl CallLimits {
    /// `runtime`'s bounds on host work with this handle's overrides applied.
    pub(crate) fn host_limits(&self, runtime: &HostLimits) -> HostLimits {
        HostLimits {
            request_bytes_per_call: self.max_request_bytes_per_call.unwrap_or(runtime.request_bytes_per_call),
            log_line_bytes: self.max_log_line_bytes.unwrap_or(runtime.log_line_bytes),
            log_lines_per_call: self.max_log_lines_per_call.unwrap_or(runtime.log_lines_per_call),
            idle_store_memory_bytes: self
                .max_idle_store_memory_bytes
                .unwrap_or(runtime.idle_store_memory_bytes),
            idle_memory_bytes: runtime.idle_memory_bytes,
            state_ops_per_call: runtime.state_ops_per_call,
            stream_events_per_call: runtime.stream_events_per_call,
            stream_bytes_per_call: runtime.stream_bytes_per_call,
        }
    }
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            call_timeout: Duration::from_secs(600),
            configure_timeout: Duration::from_secs(10),
            max_calls_per_invoke: 32,
            max_module_bytes: 32 << 20,
            compile_timeout: Duration::from_secs(30),
            max_instances_per_stack: None,
            max_request_bytes_per_call: None,
            max_log_line_bytes: None,
            max_log_lines_per_call: None,
            max_idle_store_memory_bytes: None,
            max_idle_memory_bytes: None,
        }
    }
}

/// A limit a module ran into: unwinds the call like a trap, and is reported against the
/// module that caused it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LimitExceeded {
    #[error("made more than {max} provider calls within one call (limits.max_calls_per_invoke)")]
    Calls { max: u32 },
    #[error("made more than {max} shared-state operations within one call (RuntimeBuilder::max_state_ops_per_call)")]
    StateOps { max: usize },
}

/// What one store's call has spent of its limits, and the module errors the host handed to
/// its modules (so that only those may come back out of a module).
pub(crate) struct CallBudget {
    /// This stack's share of the runtime's instance slots, held as long as the store is.
    _share: Option<OwnedSemaphorePermit>,
    max_calls: u32,
    calls: u32,
    /// Errors of kind `module` the host gave a module in this call.
    issued: Vec<Error>,
    /// The epoch tick: a WASI wait at least this long is not charged to the module.
    pub(crate) tick: Duration,
    /// Whether the running module has just resumed from a WASI wait of at least a tick.
    resumed_from_wait: bool,
}

impl CallBudget {
    pub(crate) fn new(limits: &CallLimits, share: Option<OwnedSemaphorePermit>) -> Self {
        CallBudget {
            _share: share,
            max_calls: limits.max_calls_per_invoke,
            calls: 0,
            issued: Vec::new(),
            tick: Duration::MAX,
            resumed_from_wait: false,
        }
    }

    /// Notes that a module waited `waited` in a WASI poll: if that spans a tick, the epoch
    /// deadline it finds passed when it resumes is the wait's, not its own running.
    pub(crate) fn waited(&mut self, waited: Duration) {
        if waited >= self.tick {
            self.resumed_from_wait = true;
        }
    }

    /// Whether the epoch deadline that just passed is owed to a wait (and forgets it: one
    /// tick per wait at most).
    pub(crate) fn take_wait(&mut self) -> bool {
        std::mem::take(&mut self.resumed_from_wait)
    }

    /// Readies the budget for the store's next call.
    pub(crate) fn begin_call(&mut self) {
        self.calls = 0;
        self.issued.clear();
        self.resumed_from_wait = false;
    }

    /// Counts one provider call; errs once the call's allowance is spent.
    pub(crate) fn count_call(&mut self) -> Result<(), LimitExceeded> {
        if self.calls >= self.max_calls {
            return Err(LimitExceeded::Calls { max: self.max_calls });
        }
        self.calls += 1;
        Ok(())
    }

    /// Remembers a `module` error the host hands to a module, which that module may pass on.
    pub(crate) fn issue(&mut self, error: &Error) {
        if error.kind == ErrorKind::Module && !self.issued.contains(error) {
            self.issued.push(error.clone());
        }
    }

    /// What the host lets out of module `name`'s export: an error of kind `module` the host
    /// did not create is rewritten to blame `name` (a module cannot pin a failure on
    /// another), and a response over the caps is replaced by an error naming `name`.
    pub(crate) fn check_returned<T: Returned>(
        &mut self,
        name: &str,
        result: Result<T, Error>,
    ) -> Result<T::Checked, Error> {
        let checked = match result {
            Ok(value) => value.check(name),
            Err(error) if error.kind == ErrorKind::Module && !self.issued.contains(&error) => {
                Err(forged_module_error(name, &error))
            }
            Err(error) => Err(error),
        };
        if let Err(error) = &checked {
            self.issue(error);
        }
        checked
    }
}

/// What a module's export returns on success, checked against the caps.
pub(crate) trait Returned: Sized {
    /// What the host passes on.
    type Checked;
    fn check(self, module: &str) -> Result<Self::Checked, Error>;
}

impl Returned for () {
    type Checked = ();
    fn check(self, _module: &str) -> Result<(), Error> {
        Ok(self)
    }
}

/// A response, whose caps were applied as it was copied out of the module.
impl Returned for Capped {
    type Checked = Response;
    fn check(self, module: &str) -> Result<Response, Error> {
        self.0.map_err(|over| over_the_caps(module, over))
    }
}

/// The error that replaces a response module `module` returned over the caps.
pub(crate) fn over_the_caps(module: &str, over: ResponseOver) -> Error {
    Error::new(
        ErrorKind::Module,
        module,
        format!("module `{module}` returned a response over the limit: {over}"),
    )
}

/// The error that replaces a `module` error module `name` made up.
fn forged_module_error(name: &str, error: &Error) -> Error {
    Error::new(
        ErrorKind::Module,
        name,
        format!(
            "module `{name}` returned an error of kind module naming `{}`: {}",
            clipped(&error.provider, MAX_QUOTED),
            clipped(&error.message, MAX_QUOTED)
        ),
    )
}

/// A timeout error naming `module`.
pub(crate) fn timeout_error(module: &str, what: &str, limit: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        module,
        format!("module `{module}` {what} within {} (limits)", seconds(limit)),
    )
}

/// `1.5 s`, `600 s`.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_module_error_is_rewritten_and_a_host_one_passes() {
        let mut budget = CallBudget::new(&CallLimits::default(), None);
        let forged = Error::new(ErrorKind::Module, "retry", "module `retry` exceeded its CPU budget");
        let out = budget.check_returned::<()>("hostile", Err(forged)).unwrap_err();
        assert_eq!((out.kind, out.provider.as_str()), (ErrorKind::Module, "hostile"));
        assert!(out.message.contains("naming `retry`"), "{}", out.message);
        // The rewritten error is the host's: passed on by an outer module, it stays.
        let passed = budget.check_returned::<()>("outer", Err(out.clone())).unwrap_err();
        assert_eq!(passed, out);
        let api = Error::api("openai", 503, "down");
        assert_eq!(budget.check_returned::<()>("hostile", Err(api.clone())), Err(api));
    }

    #[test]
    fn the_call_allowance_counts_down() {
        let limits = CallLimits { max_calls_per_invoke: 2, ..CallLimits::default() };
        let mut budget = CallBudget::new(&limits, None);
        assert!(budget.count_call().is_ok() && budget.count_call().is_ok());
        assert!(budget.count_call().is_err());
        budget.begin_call();
        assert!(budget.count_call().is_ok());
    }
}
