//! [`Stats`]: the shape of the levels and the write counters of a
//! [`crate::Db`] since open, from [`crate::Db::stats`].

use std::sync::atomic::Ordering;

use crate::inner::Counters;
use crate::table::cache::BlockCache;

/// Files and bytes of one level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LevelStats {
    /// Tables in the level.
    pub files: usize,
    /// Sum of their file sizes.
    pub bytes: u64,
    /// Entries (versions and tombstones) in them.
    pub entries: u64,
    /// Tombstones among those entries (tables recorded before tombstones
    /// were counted count none).
    pub deletions: u64,
}

/// One live table, from [`crate::Db::tables`]: where it sits and what it
/// holds, as RocksDB's `GetLiveFilesMetaData` gives (for tools that show
/// which key ranges hold a store's bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableInfo {
    /// Level (0 is the flushed, overlapping level).
    pub level: usize,
    /// File number (the file is `{number:06}.sst`).
    pub number: u64,
    /// First user key held.
    pub smallest: Vec<u8>,
    /// Last user key held.
    pub largest: Vec<u8>,
    /// File size.
    pub bytes: u64,
    /// Entries (versions and tombstones).
    pub entries: u64,
    /// Tombstones among them (0 for tables recorded before they were
    /// counted).
    pub deletions: u64,
}

/// A point-in-time view of the engine, from [`crate::Db::stats`]. Byte
/// counters start at zero at every open.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Per level, L0 first ([`crate::limits::LEVELS`] entries).
    pub levels: Vec<LevelStats>,
    /// Key and value bytes accepted by writes (deletes count their key).
    pub user_bytes_written: u64,
    /// Table bytes written by memtable flushes (not counting the table
    /// written at open from replayed WALs).
    pub flush_bytes_written: u64,
    /// Versions memtable flushes left out because a newer version shadows
    /// them for every possible reader (no snapshot old enough).
    pub flush_versions_dropped: u64,
    /// Table bytes written by compactions (trivial moves write none).
    pub compaction_bytes_written: u64,
    /// `(flush + compaction bytes) / user bytes`; 0 before any write.
    /// The WAL is not counted.
    pub write_amplification: f64,
    /// Compactions that rewrote tables.
    pub compactions: u64,
    /// Compactions that only moved tables one level down.
    pub trivial_moves: u64,
    /// Writes that waited for a background worker (see
    /// [`crate::Db::write_stalls`]).
    pub write_stalls: u64,
    /// Writes delayed because L0 had `l0_slowdown_writes` tables (see
    /// [`crate::Options::l0_slowdown_writes`]).
    pub write_slowdowns: u64,
    /// Time slowed writes slept, in microseconds.
    pub write_slowdown_us: u64,
    /// Data block lookups the block cache answered (0 without a cache).
    pub block_cache_hits: u64,
    /// Data block lookups it did not (the block was read from the file).
    pub block_cache_misses: u64,
    /// Bytes of blocks the cache holds now.
    pub block_cache_bytes: u64,
}

impl Stats {
    pub(crate) fn new(
        levels: Vec<LevelStats>,
        c: &Counters,
        write_stalls: u64,
        cache: Option<&BlockCache>,
    ) -> Stats {
        let user = c.user_bytes.load(Ordering::Relaxed);
        let flush = c.flush_bytes.load(Ordering::Relaxed);
        let compaction = c.compaction_bytes.load(Ordering::Relaxed);
        let write_amplification = if user == 0 {
            0.0
        } else {
            (flush + compaction) as f64 / user as f64
        };
        Stats {
            levels,
            user_bytes_written: user,
            flush_bytes_written: flush,
            flush_versions_dropped: c.flush_versions_dropped.load(Ordering::Relaxed),
            compaction_bytes_written: compaction,
            write_amplification,
            compactions: c.compactions.load(Ordering::Relaxed),
            trivial_moves: c.trivial_moves.load(Ordering::Relaxed),
            write_stalls,
            write_slowdowns: c.slowdowns.load(Ordering::Relaxed),
            write_slowdown_us: c.slowdown_us.load(Ordering::Relaxed),
            block_cache_hits: cache.map_or(0, BlockCache::hits),
            block_cache_misses: cache.map_or(0, BlockCache::misses),
            block_cache_bytes: cache.map_or(0, BlockCache::bytes),
        }
    }

    /// `hits / (hits + misses)` of the block cache; 0 before any lookup.
    pub fn block_cache_hit_rate(&self) -> f64 {
        let lookups = self.block_cache_hits + self.block_cache_misses;
        if lookups == 0 {
            0.0
        } else {
            self.block_cache_hits as f64 / lookups as f64
        }
    }

    /// Tables in all levels.
    pub fn files(&self) -> usize {
        self.levels.iter().map(|l| l.files).sum()
    }

    /// Bytes of all tables.
    pub fn table_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.bytes).sum()
    }
}
