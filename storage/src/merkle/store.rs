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

/// Lock shards of [`MemStore`]: parallel `apply` workers read pages at
/// the same time, and one shared lock made every read contend on one cache
/// line (reads took 2× as long with 2 threads).
const MEM_STORE_SHARDS: usize = 16;

type Shard = RwLock<HashMap<Vec<u8>, Vec<u8>, foldhash::fast::RandomState>>;

/// An in-memory [`NodeStore`] (hash maps behind sharded locks), for tests,
/// benches and light clients. Never fails. The trie only does point reads,
/// so a hash map (like `jmt`'s `MockTreeStore`) serves it; ordered
/// iteration is offered by [`MemStore::snapshot`], which sorts.
/// `write_batch` holds every shard's write lock, so readers never see part
/// of a batch.
#[derive(Debug, Default)]
pub struct MemStore {
    shards: [Shard; MEM_STORE_SHARDS],
}

const LOCK: &str = "lock poisoned only by a panic";

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard_of(key: &[u8]) -> usize {
        use std::hash::BuildHasher;
        // A fixed seed: the shard of a key must not change between calls.
        let state = foldhash::fast::FixedState::with_seed(0x5354_5241_5441);
        (state.hash_one(key) as usize) % MEM_STORE_SHARDS
    }

    /// Number of stored records.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().expect(LOCK).len())
            .sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of all keys and values.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .expect(LOCK)
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
            })
            .sum()
    }

    /// A copy of every record, in key order (for tests that corrupt them).
    pub fn snapshot(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let map = shard.read().expect(LOCK);
            out.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out.sort_unstable();
        out
    }

    /// Overwrites one record directly, bypassing the trie (for tests).
    pub fn put_raw(&self, key: Vec<u8>, value: Vec<u8>) {
        let mut map = self.shards[Self::shard_of(&key)].write().expect(LOCK);
        map.insert(key, value);
    }
}

impl NodeStore for MemStore {
    type Error = Infallible;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        let map = self.shards[Self::shard_of(key)].read().expect(LOCK);
        Ok(map.get(key).cloned())
    }

    fn write_batch(
        &self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    ) -> Result<(), Infallible> {
        // All shards, in index order (the only place taking several locks).
        let mut maps: Vec<_> = self.shards.iter().map(|s| s.write().expect(LOCK)).collect();
        for key in deletes {
            maps[Self::shard_of(&key)].remove(&key);
        }
        for (key, value) in puts {
            maps[Self::shard_of(&key)].insert(key, value);
        }
        Ok(())
    }
}
