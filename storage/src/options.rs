//! Configuration of a [`crate::Db`]: a by-value builder whose setters
//! document the defaults.

use std::fmt;

use crate::fault::{FileKind, FileWrapper, LogFileWrapper};
use crate::limits::{
    BLOCK_BYTES_TARGET, BLOCK_BYTES_TARGET_MAX, BLOCK_BYTES_TARGET_MIN, BLOCK_CACHE_BYTES_DEFAULT,
    IMMUTABLES_MAX_DEFAULT, L0_COMPACTION_TRIGGER_DEFAULT, L0_SLOWDOWN_WRITES_DEFAULT,
    L0_STOP_WRITES_DEFAULT, LEVEL1_BYTES_DEFAULT, LEVEL_SIZE_RATIO_DEFAULT, MEMTABLE_BYTES_DEFAULT,
    SLOWDOWN_BYTES_PER_S_DEFAULT, TABLE_BYTES_DEFAULT,
};
use crate::wal::LogFile;

/// What to do when a WAL has a bad record before its tail, or an older
/// WAL (not the newest) has a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WalRecovery {
    /// Refuse to open with `Error::Corruption` naming the file and offset
    /// (default). A torn final record of the newest WAL (the write that
    /// was in progress at the crash, never acknowledged as synced) is
    /// always dropped silently; a torn final record of an older WAL is
    /// corruption, because each older WAL was fsynced whole before the
    /// next one was started. Recovery is then always a prefix of the write
    /// order.
    #[default]
    Strict,
    /// In each WAL, keep every batch before the bad record or torn tail,
    /// drop it and everything after it in that WAL, go on with the next
    /// WAL, and open. Writes from the middle of the history can then be
    /// missing while later ones are present: recovery is no longer
    /// necessarily a prefix of the write order.
    BestEffort,
}

/// How WAL appends and fsyncs reach the kernel (see [`crate::wal`]).
///
/// Both backends write the same bytes in the same order and share the
/// same group commit; only the system calls differ, so a WAL written by
/// one is replayed by the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WalBackend {
    /// io_uring where it can be set up, else `std::fs`. The choice is
    /// made once at open; [`crate::Db::wal_backend`] reports it.
    Auto,
    /// io_uring only: [`crate::Db::open`] fails with
    /// [`crate::Error::IoUringUnavailable`] where it cannot be set up.
    IoUring,
    /// `write(2)` and `fdatasync(2)` through `std::fs` (default: measured
    /// faster than the io_uring backend here, see [`crate::wal`]).
    #[default]
    Std,
}

/// Options of [`crate::Db::open`].
#[derive(Clone)]
pub struct Options {
    pub(crate) memtable_bytes: usize,
    pub(crate) immutables_max: usize,
    pub(crate) l0_compaction_trigger: usize,
    pub(crate) l0_stop_writes: usize,
    /// `None`: the default, fitted between trigger and stop.
    pub(crate) l0_slowdown_writes: Option<usize>,
    pub(crate) slowdown_bytes_per_s: u64,
    pub(crate) level1_bytes: u64,
    pub(crate) level_size_ratio: u64,
    pub(crate) level_targets_dynamic: bool,
    pub(crate) table_bytes: u64,
    pub(crate) block_bytes: usize,
    pub(crate) block_cache_bytes: usize,
    pub(crate) wal_recovery: WalRecovery,
    pub(crate) zstd_level: Option<i32>,
    pub(crate) create_if_missing: bool,
    pub(crate) wal_wrapper: Option<LogFileWrapper>,
    pub(crate) file_wrapper: Option<FileWrapper>,
    pub(crate) wal_backend: WalBackend,
    /// Makes io_uring setup fail as in a container that blocks it.
    pub(crate) io_uring_unavailable_for_tests: bool,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("memtable_bytes", &self.memtable_bytes)
            .field("immutables_max", &self.immutables_max)
            .field("l0_compaction_trigger", &self.l0_compaction_trigger)
            .field("l0_stop_writes", &self.l0_stop_writes)
            .field("l0_slowdown_writes", &self.l0_slowdown_writes)
            .field("slowdown_bytes_per_s", &self.slowdown_bytes_per_s)
            .field("level1_bytes", &self.level1_bytes)
            .field("level_size_ratio", &self.level_size_ratio)
            .field("level_targets_dynamic", &self.level_targets_dynamic)
            .field("table_bytes", &self.table_bytes)
            .field("block_bytes", &self.block_bytes)
            .field("block_cache_bytes", &self.block_cache_bytes)
            .field("wal_recovery", &self.wal_recovery)
            .field("zstd_level", &self.zstd_level)
            .field("create_if_missing", &self.create_if_missing)
            .field("wal_wrapper", &self.wal_wrapper.is_some())
            .field("file_wrapper", &self.file_wrapper.is_some())
            .field("wal_backend", &self.wal_backend)
            .field(
                "io_uring_unavailable_for_tests",
                &self.io_uring_unavailable_for_tests,
            )
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memtable_bytes: MEMTABLE_BYTES_DEFAULT,
            immutables_max: IMMUTABLES_MAX_DEFAULT,
            l0_compaction_trigger: L0_COMPACTION_TRIGGER_DEFAULT,
            l0_stop_writes: L0_STOP_WRITES_DEFAULT,
            l0_slowdown_writes: None,
            slowdown_bytes_per_s: SLOWDOWN_BYTES_PER_S_DEFAULT,
            level1_bytes: LEVEL1_BYTES_DEFAULT,
            level_size_ratio: LEVEL_SIZE_RATIO_DEFAULT,
            level_targets_dynamic: true,
            table_bytes: TABLE_BYTES_DEFAULT,
            block_bytes: BLOCK_BYTES_TARGET,
            block_cache_bytes: BLOCK_CACHE_BYTES_DEFAULT,
            wal_recovery: WalRecovery::Strict,
            zstd_level: None,
            create_if_missing: true,
            wal_wrapper: None,
            file_wrapper: None,
            wal_backend: WalBackend::Std,
            io_uring_unavailable_for_tests: false,
        }
    }
}

impl Options {
    /// Defaults: 64 MiB memtable, 2 immutable memtables, strict WAL
    /// recovery, no compression, create the directory if missing, WAL
    /// through `std::fs` ([`WalBackend::Std`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Memtable size that triggers a flush to an L0 table (default 64 MiB).
    /// The first write after the memtable reaches it freezes the memtable
    /// and hands it to the background flush worker.
    pub fn memtable_bytes(mut self, bytes: usize) -> Self {
        self.memtable_bytes = bytes.max(1);
        self
    }

    /// Full memtables that may wait for the background flush before
    /// writers wait for it (default 2, at least 1). Memory held by
    /// memtables is bounded by about `(immutables_max + 1) *
    /// memtable_bytes`, plus one batch.
    pub fn immutables_max(mut self, count: usize) -> Self {
        self.immutables_max = count.max(1);
        self
    }

    /// L0 file count at which the background compaction merges all of L0
    /// into the base level (L1 with static targets; default 4, at least
    /// 1).
    pub fn l0_compaction_trigger(mut self, files: usize) -> Self {
        self.l0_compaction_trigger = files.max(1);
        self
    }

    /// L0 file count at which a write that freezes a memtable waits for
    /// compaction (default 12; counted by [`crate::Db::write_stalls`]).
    /// Must exceed `l0_compaction_trigger`, else [`crate::Db::open`] fails
    /// with [`crate::Error::InvalidArgument`]: writers would wait for a
    /// compaction that never starts.
    pub fn l0_stop_writes(mut self, files: usize) -> Self {
        self.l0_stop_writes = files;
        self
    }

    /// L0 file count from which every write is delayed so that writes
    /// proceed at about [`Options::slowdown_bytes_per_s`] (default 8,
    /// or the nearest count between trigger and stop if 8 is not):
    /// compaction catches up gradually instead of writers hitting the
    /// hard stop at `l0_stop_writes` all at once. Must lie between
    /// `l0_compaction_trigger` and `l0_stop_writes` (inclusive), else
    /// [`crate::Db::open`] fails with [`crate::Error::InvalidArgument`].
    /// Delays are counted in [`crate::Stats::write_slowdowns`].
    pub fn l0_slowdown_writes(mut self, files: usize) -> Self {
        self.l0_slowdown_writes = Some(files);
        self
    }

    /// Write rate while slowed down, in key + value bytes per second
    /// (default 16 MiB/s, at least 1).
    pub fn slowdown_bytes_per_s(mut self, rate: u64) -> Self {
        self.slowdown_bytes_per_s = rate.max(1);
        self
    }

    /// Target size of the level L0 compacts into (default 256 MiB, at
    /// least 1 byte): L1 with static targets, the *base level* with
    /// dynamic ones ([`Options::level_targets_dynamic`]), and with those
    /// the least any level below the base targets. A level over its
    /// target is compacted into the next one.
    pub fn level1_bytes(mut self, bytes: u64) -> Self {
        self.level1_bytes = bytes.max(1);
        self
    }

    /// Size ratio between adjacent levels: level N+1 targets `ratio` times
    /// level N (default 10, at least 2).
    pub fn level_size_ratio(mut self, ratio: u64) -> Self {
        self.level_size_ratio = ratio.max(2);
        self
    }

    /// Whether level targets follow the data (default `true`): sized from
    /// the largest level up, each `level_size_ratio` times smaller than
    /// the one below and none under [`Options::level1_bytes`]; L0
    /// compacts into the shallowest level that target leaves room for
    /// (the *base level*, never below the first level holding data), and
    /// a small store lives in L0 and the last level alone. RocksDB's
    /// `level_compaction_dynamic_level_bytes`.
    ///
    /// **Why it is the default:** with static targets (L1 =
    /// `level1_bytes`, ×`level_size_ratio` per level) a store of a few
    /// hundred MiB lives in L1 and L2, L2 is never compacted further, and
    /// whatever it holds that L1 does not shadow stays: dead versions,
    /// and tombstones kept for a table at the bottom (an ingested
    /// genesis) they never meet. Sized from the bottom up, about 90 % of
    /// the data is in the last level and every tombstone reaches it; the
    /// space taken stays near the live data plus the upper levels.
    pub fn level_targets_dynamic(mut self, dynamic: bool) -> Self {
        self.level_targets_dynamic = dynamic;
        self
    }

    /// Size at which a compaction starts a new output table (default
    /// 32 MiB, at least 1 byte). Tables are cut only between keys, so one
    /// can exceed it by the versions of one key.
    pub fn table_bytes(mut self, bytes: u64) -> Self {
        self.table_bytes = bytes.max(1);
        self
    }

    /// Target size of a data block before compression (default 4 KiB,
    /// clamped to 1 KiB..=1 MiB). A point read that misses the block cache
    /// checks and copies one whole block, so smaller blocks make cold
    /// reads cheaper; larger ones make scans and compression better and
    /// the in-memory index smaller. Tables written with another size stay
    /// readable (the index records each block's extent).
    pub fn block_bytes(mut self, bytes: usize) -> Self {
        self.block_bytes = bytes.clamp(BLOCK_BYTES_TARGET_MIN, BLOCK_BYTES_TARGET_MAX);
        self
    }

    /// Bytes of decompressed data blocks kept in memory, shared by all
    /// tables (default 8 MiB; 0 turns the cache off). Hits and misses are
    /// in [`crate::Db::stats`].
    pub fn block_cache_bytes(mut self, bytes: usize) -> Self {
        self.block_cache_bytes = bytes;
        self
    }

    /// The L0 file count that slows writes: as set, else the default
    /// moved into `l0_compaction_trigger..=l0_stop_writes`.
    pub(crate) fn effective_l0_slowdown_writes(&self) -> usize {
        self.l0_slowdown_writes.unwrap_or_else(|| {
            L0_SLOWDOWN_WRITES_DEFAULT
                .min(self.l0_stop_writes)
                .max(self.l0_compaction_trigger)
        })
    }

    /// Checks relations between options that setters cannot check alone.
    pub(crate) fn validate(&self) -> crate::error::Result<()> {
        if self.l0_stop_writes <= self.l0_compaction_trigger {
            return Err(crate::Error::InvalidArgument(format!(
                "l0_stop_writes ({}) must exceed l0_compaction_trigger ({})",
                self.l0_stop_writes, self.l0_compaction_trigger
            )));
        }
        let slowdown = self.effective_l0_slowdown_writes();
        if !(self.l0_compaction_trigger..=self.l0_stop_writes).contains(&slowdown) {
            return Err(crate::Error::InvalidArgument(format!(
                "l0_slowdown_writes ({slowdown}) must lie between l0_compaction_trigger ({}) \
                 and l0_stop_writes ({})",
                self.l0_compaction_trigger, self.l0_stop_writes
            )));
        }
        Ok(())
    }

    /// WAL recovery mode (default [`WalRecovery::Strict`]).
    pub fn wal_recovery(mut self, mode: WalRecovery) -> Self {
        self.wal_recovery = mode;
        self
    }

    /// Compress table data blocks with zstd at `level` (default: off).
    pub fn zstd_level(mut self, level: Option<i32>) -> Self {
        self.zstd_level = level;
        self
    }

    /// Create the directory if it does not exist (default true).
    pub fn create_if_missing(mut self, yes: bool) -> Self {
        self.create_if_missing = yes;
        self
    }

    /// How WAL appends and fsyncs reach the kernel (default
    /// [`WalBackend::Std`]; [`WalBackend::Auto`] uses io_uring if it can
    /// be set up, else `std::fs`).
    pub fn wal_backend(mut self, backend: WalBackend) -> Self {
        self.wal_backend = backend;
        self
    }

    /// Makes io_uring setup fail at open as it does where a seccomp
    /// profile blocks it, so tests can check the fallback and the error
    /// on any machine (default false).
    #[doc(hidden)]
    pub fn io_uring_unavailable_for_tests(mut self, yes: bool) -> Self {
        self.io_uring_unavailable_for_tests = yes;
        self
    }

    /// Wraps every WAL file the engine creates; tests use it to inject
    /// write and fsync failures (default: none).
    pub fn wal_wrapper(mut self, wrapper: LogFileWrapper) -> Self {
        self.wal_wrapper = Some(wrapper);
        self
    }

    /// Wraps every table, manifest and `CURRENT.tmp` file the engine
    /// writes; tests use it to inject write and fsync failures (default:
    /// none). Renames and directory fsyncs are not wrapped.
    pub fn file_wrapper(mut self, wrapper: FileWrapper) -> Self {
        self.file_wrapper = Some(wrapper);
        self
    }

    /// Applies the file wrapper, if any, to a new file of `kind`.
    pub(crate) fn wrap_file(&self, kind: FileKind, file: Box<dyn LogFile>) -> Box<dyn LogFile> {
        match &self.file_wrapper {
            Some(w) => w(kind, file),
            None => file,
        }
    }
}
