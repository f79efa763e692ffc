//! Provider targets as the host's registry accepts them: `name` (the provider's default
//! model) or `name/model`.
//!
//! The host applies the same rule when a module calls `registry::invoke`; checking it in a
//! module's `configure` turns a typo into a load error instead of a failure at the first
//! fallback. This file depends on nothing else in the SDK, so the host's tests can compile
//! it and check that both sides agree.

/// The longest provider name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The longest model part of a target, in bytes.
pub const MAX_MODEL_LEN: usize = 256;

/// What a valid target looks like, for error messages.
pub const EXPECTED: &str = concat!(
    "`name` or `name/model`, name matching ^[a-z][a-z0-9_]*$ (at most 64 characters), ",
    "model at most 256 bytes"
);

/// Whether `target` is `name` or `name/model`, where `name` matches `^[a-z][a-z0-9_]*$`
/// (at most [`MAX_NAME_LEN`] bytes) and `model`, everything after the first `/`, is
/// non-empty and at most [`MAX_MODEL_LEN`] bytes.
pub fn valid(target: &str) -> bool {
    let (name, model) = match target.split_once('/') {
        Some((name, model)) => (name, Some(model)),
        None => (target, None),
    };
    valid_name(name) && model.is_none_or(|model| !model.is_empty() && model.len() <= MAX_MODEL_LEN)
}

/// Whether `name` is a bare provider name: `^[a-z][a-z0-9_]*$`, at most [`MAX_NAME_LEN`]
/// bytes.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
