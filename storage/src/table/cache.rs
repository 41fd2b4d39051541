//! The block cache: decompressed, checksum-verified data blocks shared by
//! every table of a [`crate::Db`], bounded in bytes.
//!
//! Keyed by (table number, block offset): table numbers are never reused,
//! so a dropped table's blocks can only age out, never be misread. Split
//! into up to [`BLOCK_CACHE_SHARDS_MAX`] shards of at least
//! [`BLOCK_CACHE_SHARD_BYTES_MIN`], each an [`LruCache`] behind its own
//! mutex holding at most `capacity / shards` bytes of blocks, so readers on
//! different blocks rarely contend. A block larger than a shard is not
//! cached. Flushes and compactions bypass the cache (a one-off pass over
//! cold data would evict the hot set), so hits and misses count reads by
//! users only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::limits::{
    BLOCK_CACHE_ENTRY_BYTES_MIN, BLOCK_CACHE_SHARDS_MAX, BLOCK_CACHE_SHARD_BYTES_MIN,
};
use crate::lru::{LruCache, Put, CAPACITY_MAX};

/// A cached block: raw (uncompressed) data block bytes.
pub(crate) type CachedBlock = Arc<[u8]>;

struct Shard {
    lru: LruCache<(u64, u64), CachedBlock>,
    bytes: usize,
}

/// See the module docs.
pub(crate) struct BlockCache {
    shards: Box<[Mutex<Shard>]>,
    shard_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("shard_bytes", &self.shard_bytes)
            .finish()
    }
}

const LOCK: &str = "block cache shards are poisoned only by a panic while held";

impl BlockCache {
    /// A cache of `capacity_bytes`, or `None` for 0 (no cache).
    pub(crate) fn new(capacity_bytes: usize) -> Option<Arc<BlockCache>> {
        if capacity_bytes == 0 {
            return None;
        }
        let shard_count =
            (capacity_bytes / BLOCK_CACHE_SHARD_BYTES_MIN).clamp(1, BLOCK_CACHE_SHARDS_MAX);
        // Rounded down: all shards together stay within the capacity.
        let shard_bytes = capacity_bytes / shard_count;
        // The entry count only sizes the hash table; bytes are the bound.
        let entries = (shard_bytes / BLOCK_CACHE_ENTRY_BYTES_MIN).clamp(16, CAPACITY_MAX);
        let shards = (0..shard_count)
            .map(|_| {
                Mutex::new(Shard {
                    lru: LruCache::new(entries),
                    bytes: 0,
                })
            })
            .collect();
        Some(Arc::new(BlockCache {
            shards,
            shard_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }))
    }

    fn shard(&self, table: u64, offset: u64) -> &Mutex<Shard> {
        // Blocks of one table sit at scattered offsets; mixing both spreads
        // a hot table over every shard.
        let h = (table.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ offset)
            .wrapping_mul(0xff51_afd7_ed55_8ccd);
        &self.shards[(h >> 32) as usize % self.shards.len()]
    }

    /// The cached block at `offset` of table `table`, counting a hit or a
    /// miss.
    pub(crate) fn get(&self, table: u64, offset: u64) -> Option<CachedBlock> {
        let found = self
            .shard(table, offset)
            .lock()
            .expect(LOCK)
            .lru
            .get(&(table, offset))
            .cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches `block`, evicting least recently used blocks of its shard
    /// until the shard is within its bytes.
    pub(crate) fn insert(&self, table: u64, offset: u64, block: CachedBlock) {
        let len = block.len();
        if len > self.shard_bytes {
            return;
        }
        let mut shard = self.shard(table, offset).lock().expect(LOCK);
        shard.bytes += len;
        match shard.lru.put((table, offset), block) {
            Put::Inserted => {}
            Put::Updated(old) => shard.bytes -= old.len(),
            Put::Evicted { value, .. } => shard.bytes -= value.len(),
        }
        while shard.bytes > self.shard_bytes {
            let Some((_, value)) = shard.lru.pop_lru() else {
                break;
            };
            shard.bytes -= value.len();
        }
        assert!(
            shard.bytes <= self.shard_bytes,
            "a shard stays within its bytes"
        );
    }

    /// Lookups that found their block, since open.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that did not, since open.
    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Bytes of blocks held now.
    pub(crate) fn bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().expect(LOCK).bytes as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_bytes_and_counts_hits_and_misses() {
        // Small: one shard of 1000 bytes.
        let cache = BlockCache::new(1000).unwrap();
        assert_eq!(cache.shards.len(), 1);
        assert!(cache.get(1, 0).is_none());
        for offset in 0..1000u64 {
            cache.insert(1, offset, vec![offset as u8; 100].into());
            assert!(cache.bytes() <= 1000);
        }
        // The most recent block is there; the oldest were evicted.
        assert_eq!(cache.get(1, 999).unwrap()[0], (999 % 256) as u8);
        assert!(cache.get(1, 0).is_none());
        assert_eq!((cache.hits(), cache.misses()), (1, 2));
        // Too big for a shard: not cached.
        cache.insert(2, 0, vec![0; 1001].into());
        assert!(cache.get(2, 0).is_none());
        // Replacing a block keeps the byte count exact.
        cache.insert(3, 0, vec![0; 10].into());
        cache.insert(3, 0, vec![0; 20].into());
        assert_eq!(cache.get(3, 0).unwrap().len(), 20);
        assert!(BlockCache::new(0).is_none());
        let big = BlockCache::new(64 << 20).unwrap();
        assert_eq!(big.shards.len(), BLOCK_CACHE_SHARDS_MAX);
        assert!(big.shard_bytes * big.shards.len() <= 64 << 20);
    }
}
