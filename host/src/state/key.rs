//! Keys as the host names them: the module's name and the kind of state around the key the
//! module chose, so that no key a module can write names another module's state.

use std::hash::{BuildHasher, Hasher};

use super::ops::Slot;

/// A key of one module's state: `(module, slot, key)`, compared part by part and never
/// concatenated on the in-process path (a lookup allocates nothing).
#[derive(Clone, Copy, Debug)]
pub struct StateKey<'a> {
    /// The module's name, as the host knows it (never chosen by the module).
    pub module: &'a str,
    /// Which kind of state.
    pub slot: Slot,
    /// The module's own key.
    pub key: &'a [u8],
}

impl StateKey<'_> {
    /// The key's hash under `hasher`, over all three parts.
    pub(crate) fn hash_with(&self, hasher: &impl BuildHasher) -> u64 {
        let mut h = hasher.build_hasher();
        h.write_u8(self.slot.tag());
        h.write_usize(self.module.len());
        h.write(self.module.as_bytes());
        h.write(self.key);
        h.finish()
    }

    /// Whether `owned` (made by [`StateKey::to_owned_bytes`]) is this key.
    pub(crate) fn matches(&self, owned: &[u8]) -> bool {
        let module = self.module.as_bytes();
        let header = 1 + 4;
        owned.len() == header + module.len() + self.key.len()
            && owned[0] == self.slot.tag()
            && owned[1..5] == (module.len() as u32).to_be_bytes()
            && &owned[header..header + module.len()] == module
            && &owned[header + module.len()..] == self.key
    }

    /// The key as one owned byte string: tag, module length, module, key. Made once, when
    /// the key is first stored.
    pub(crate) fn to_owned_bytes(&self) -> Box<[u8]> {
        let module = self.module.as_bytes();
        let mut out = Vec::with_capacity(5 + module.len() + self.key.len());
        out.push(self.slot.tag());
        out.extend_from_slice(&(module.len() as u32).to_be_bytes());
        out.extend_from_slice(module);
        out.extend_from_slice(self.key);
        out.into_boxed_slice()
    }

    /// The Redis key: `{prefix}:{module length}:{module}:{slot}:{key}`. The length makes it
    /// unambiguous whatever characters the module's name or key hold.
    pub(crate) fn redis_key(&self, prefix: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(prefix.len() + 16 + self.module.len() + self.key.len());
        out.extend_from_slice(prefix.as_bytes());
        out.push(b':');
        out.extend_from_slice(self.module.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(self.module.as_bytes());
        out.push(b':');
        out.push(self.slot.tag());
        out.push(b':');
        out.extend_from_slice(self.key);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_slots_and_keys_never_run_into_each_other() {
        let a = StateKey { module: "ab", slot: Slot::Bucket, key: b"c" };
        let b = StateKey { module: "a", slot: Slot::Bucket, key: b"bc" };
        let c = StateKey { module: "ab", slot: Slot::Counter, key: b"c" };
        assert!(a.matches(&a.to_owned_bytes()));
        assert!(!a.matches(&b.to_owned_bytes()) && !b.matches(&a.to_owned_bytes()));
        assert!(!a.matches(&c.to_owned_bytes()));
        assert_ne!(a.redis_key("arcllm"), b.redis_key("arcllm"));
        assert_eq!(a.redis_key("arcllm"), b"arcllm:2:ab:b:c");
        let s = std::collections::hash_map::RandomState::new();
        assert_eq!(a.hash_with(&s), StateKey { ..a }.hash_with(&s));
    }
}
