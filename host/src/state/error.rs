//! What can go wrong with an operation on shared state.

/// Why an operation on shared state failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The arguments cannot describe a valid operation (a key too long, a capacity that is
    /// not a positive number, a cost above the bucket's capacity, …). Never excused by
    /// `on_error = "open"`: it is the caller's mistake, not the backend's.
    #[error("invalid state operation: {0}")]
    Invalid(String),
    /// The backend could not answer: Redis unreachable, slow past the timeout, or out of
    /// room. With `on_error = "open"` the store answers permissively instead.
    #[error("shared state unavailable ({backend}): {reason}")]
    Unavailable {
        /// `memory` or `redis`.
        backend: &'static str,
        /// What happened, in words.
        reason: String,
        /// The client's error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The backend could not be set up from its configuration (no URL in the named
    /// environment variable, a URL the client cannot parse).
    #[error("[state]: {0}")]
    Config(String),
}

impl StateError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        StateError::Invalid(message.into())
    }

    pub(crate) fn unavailable(backend: &'static str, reason: impl Into<String>) -> Self {
        StateError::Unavailable { backend, reason: reason.into(), source: None }
    }

    /// Whether the backend failed (as opposed to the caller asking for something invalid).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StateError::Unavailable { .. })
    }
}
