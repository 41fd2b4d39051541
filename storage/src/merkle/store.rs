//! The seam between the trie and whatever stores its nodes.
//!
//! The trie needs only point reads and one atomic write batch per `apply`,
//! so the LSM `Db` of this crate implements [`NodeStore`] with a thin
//! adapter (`get` forwards to `Db::get`, `write_batch` builds one `Db` write
//! batch of puts and deletes and commits it). Keys are short byte strings
//! starting with one namespace byte (see `docs/storage-format.md`); a caller
//! sharing a `Db` with other data can prefix them in its adapter.
//!
//! Contract: `write_batch` is atomic — after it returns `Ok`, every put and
//! delete is visible (and durable, if the store promises durability); after
//! it returns `Err`, the trie assumes nothing about what was written and
//! refuses further writes until reopened.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};

/// Point reads plus one atomic write batch: all the trie asks of storage.
///
/// `Sync` because large batches read pages from several threads.
pub trait NodeStore: Sync {
    /// The store's error type (boxed into `merkle::Error::Store`).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The value stored under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Atomically applies all `puts` and `deletes` (no key appears in both).
    fn write_batch(
        &self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    ) -> Result<(), Self::Error>;
}

impl<S: NodeStore + Send> NodeStore for Arc<S> {
    type Error = S::Error;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        (**self).get(key)
    }

    fn write_batch(
        &self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    ) -> Result<(), Self::Error> {
        (**self).write_batch(puts, deletes)
    }
}

impl<S: NodeStore> NodeStore for &S {
    type Error = S::Error;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        (**self).get(key)
    }

    fn write_batch(
        &self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    ) -> Result<(), Self::Error> {
        (**self).write_batch(puts, deletes)
    }
}

/// An in-memory [`NodeStore`] (a hash map behind a lock), for tests,
/// benches and light clients. Never fails. The trie only does point reads,
/// so a hash map (like `jmt`'s `MockTreeStore`) serves it; ordered
/// iteration is offered by [`MemStore::snapshot`], which sorts.
#[derive(Debug, Default)]
pub struct MemStore {
    map: RwLock<HashMap<Vec<u8>, Vec<u8>, foldhash::fast::RandomState>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored records.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .expect("lock poisoned only by a panic")
            .len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of all keys and values.
    pub fn bytes(&self) -> usize {
        self.map
            .read()
            .expect("lock poisoned only by a panic")
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }

    /// A copy of every record, in key order (for tests that corrupt them).
    pub fn snapshot(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let map = self.map.read().expect("lock poisoned only by a panic");
        let mut out: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_unstable();
        out
    }

    /// Overwrites one record directly, bypassing the trie (for tests).
    pub fn put_raw(&self, key: Vec<u8>, value: Vec<u8>) {
        let mut map = self.map.write().expect("lock poisoned only by a panic");
        map.insert(key, value);
    }
}

impl NodeStore for MemStore {
    type Error = Infallible;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        let map = self.map.read().expect("lock poisoned only by a panic");
        Ok(map.get(key).cloned())
    }

    fn write_batch(
        &self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    ) -> Result<(), Infallible> {
        let mut map = self.map.write().expect("lock poisoned only by a panic");
        for key in deletes {
            map.remove(&key);
        }
        for (key, value) in puts {
            map.insert(key, value);
        }
        Ok(())
    }
}
