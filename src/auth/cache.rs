//! A bounded cache keyed by a credential itself: hashed with the cache's
//! randomly seeded fast hasher and compared in constant time, so the hot
//! path never computes a SHA-256 of a long token.

use gatehouse_actors::ids::ct_eq;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

#[derive(Clone)]
pub struct TokenKey(Arc<str>);

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write(self.0.as_bytes());
    }
}

impl PartialEq for TokenKey {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for TokenKey {}

/// A borrowed key for lookups.
struct Lookup<'a>(&'a str);

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write(self.0.as_bytes());
    }
}

impl quick_cache::Equivalent<TokenKey> for Lookup<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        ct_eq(self.0.as_bytes(), key.0.as_bytes())
    }
}

/// At most `capacity` entries; the least useful are evicted first.
pub struct TokenCache<V: Clone> {
    inner: quick_cache::sync::Cache<TokenKey, V>,
}

impl<V: Clone> TokenCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: quick_cache::sync::Cache::new(capacity),
        }
    }

    #[inline]
    pub fn get(&self, token: &str) -> Option<V> {
        self.inner.get(&Lookup(token))
    }

    pub fn insert(&self, token: &str, value: V) {
        self.inner.insert(TokenKey(token.into()), value);
    }

    pub fn remove(&self, token: &str) {
        self.inner.remove(&Lookup(token));
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_by_the_whole_token_and_bounded() {
        let c = TokenCache::new(100);
        c.insert("abc.def.ghi", 1);
        assert_eq!(c.get("abc.def.ghi"), Some(1));
        assert_eq!(c.get("abc.def.gh"), None);
        assert_eq!(c.get("abc.def.ghj"), None);
        for i in 0..10_000 {
            c.insert(&format!("flood-{i}"), i);
        }
        assert!(c.len() <= 200, "{}", c.len());
        c.remove("flood-9999");
        assert_eq!(c.get("flood-9999"), None);
    }
}
