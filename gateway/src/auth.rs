//! The gateway's own keys: who may call it. Vendor keys stay in the gateway's environment
//! (each provider file's `api_key_env`) and never come from, or go to, clients.
//!
//! Keys come from the environment variable `[server] api_keys_env` names, comma-separated.
//! A client sends one as `Authorization: Bearer <key>` (what OpenAI's SDK sends) or
//! `x-api-key: <key>` (Anthropic's). Comparison takes the same time whatever the key: both
//! sides are hashed and every configured key is compared in full.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::errors::ApiError;

/// The accepted keys, as SHA-256 digests (the keys themselves are not kept).
#[derive(Clone, Default)]
pub struct Keys(Vec<[u8; 32]>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} configured)", self.0.len())
    }
}

impl Keys {
    /// The keys in `value`, comma-separated; blanks are skipped.
    pub fn parse(value: &str) -> Self {
        Keys(value.split(',').map(str::trim).filter(|k| !k.is_empty()).map(digest).collect())
    }

    /// The keys in environment variable `var` (none when it is unset or empty).
    pub fn from_env(var: &str) -> Self {
        std::env::var(var).map(|v| Self::parse(&v)).unwrap_or_default()
    }

    /// How many keys there are; none means authentication is off.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Accepts the request when no key is configured, or when it presents one of the keys.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let presented = header("x-api-key").or_else(|| {
            header("authorization")
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        });
        let Some(presented) = presented else { return Err(ApiError::Unauthorized) };
        let presented = digest(presented.trim());
        // No early exit: the time taken does not depend on which key (if any) matched.
        let matched = self.0.iter().fold(0u8, |found, key| found | equal(key, &presented) as u8);
        if matched == 1 {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Constant-time equality of two digests.
fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn accepts_either_header_and_refuses_the_rest() {
        let keys = Keys::parse(" k1 , k2,,");
        assert_eq!(keys.len(), 2);
        assert!(keys.check(&headers("authorization", "Bearer k2")).is_ok());
        assert!(keys.check(&headers("x-api-key", "k1")).is_ok());
        assert!(keys.check(&headers("authorization", "Bearer k3")).is_err());
        assert!(keys.check(&headers("authorization", "k1")).is_err());
        assert!(keys.check(&HeaderMap::new()).is_err());
        assert!(Keys::parse("").check(&HeaderMap::new()).is_ok());
    }
}
