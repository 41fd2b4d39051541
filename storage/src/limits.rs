//! Limits of the LSM engine, kept together and checked against each other.

/// Largest user key, in bytes. Keys are stored with a `u16` length.
pub const KEY_BYTES_MAX: usize = 4096;
/// Largest value, in bytes (16 MiB).
pub const VALUE_BYTES_MAX: usize = 16 << 20;
/// Largest number of operations in one write batch.
pub const BATCH_OPS_MAX: usize = 1 << 20;
/// Largest encoded write batch (one WAL record payload), in bytes (64 MiB).
pub const BATCH_BYTES_MAX: usize = 64 << 20;
/// Default target size of a table data block before compression, in
/// bytes (see [`crate::Options::block_bytes`]). 4 KiB, as RocksDB: a point
/// read that misses the block cache checks and copies one block, and with
/// 16 KiB blocks that made random reads 1.6× slower (docs/benchmarks.md).
pub const BLOCK_BYTES_TARGET: usize = 4 << 10;
/// Smallest target data block size the options accept, in bytes.
pub const BLOCK_BYTES_TARGET_MIN: usize = 1 << 10;
/// Largest target data block size the options accept, in bytes.
pub const BLOCK_BYTES_TARGET_MAX: usize = 1 << 20;
/// Largest block (data, index or bloom) a reader accepts, in bytes. A
/// block holds at least one entry, so it must fit the largest entry.
pub const BLOCK_BYTES_MAX: usize = 32 << 20;
/// Entries between two restart points of a data block.
pub const BLOCK_RESTART_INTERVAL: usize = 16;
/// Bloom filter bits per key (~1% false positives with 7 probes).
pub const BLOOM_BITS_PER_KEY: usize = 10;
/// Largest record of the manifest log, in bytes.
pub const MANIFEST_RECORD_BYTES_MAX: usize = 64 << 20;
/// Number of levels kept in a version: L0 (overlapping tables, newest
/// first) and L1..L6 (each a sorted run of disjoint tables).
pub const LEVELS: usize = 7;
/// Default L0 file count at which L0 is compacted into L1.
pub const L0_COMPACTION_TRIGGER_DEFAULT: usize = 4;
/// Default L0 file count from which writes are slowed to
/// `slowdown_bytes_per_s` (see [`crate::Options::l0_slowdown_writes`]).
pub const L0_SLOWDOWN_WRITES_DEFAULT: usize = 8;
/// Default write rate while slowed down, in bytes per second (RocksDB's
/// `delayed_write_rate` default).
pub const SLOWDOWN_BYTES_PER_S_DEFAULT: u64 = 16 << 20;
/// A slowed writer sleeps once it owes at least this much delay, in
/// microseconds (shorter sleeps overshoot more than they are worth).
pub const SLOWDOWN_SLEEP_US_MIN: u64 = 1000;
/// Default L0 file count at which writes wait for compaction.
pub const L0_STOP_WRITES_DEFAULT: usize = 12;
/// Default target size of the base level (L1 with static targets), in
/// bytes (256 MiB, RocksDB's `max_bytes_for_level_base`), and the least
/// any level targets with dynamic ones; a level targets `level_size_ratio`
/// times the one above. With 64 MiB and static targets, 10 M random puts
/// wrote 6.98 bytes per user byte (WAL included) against 6.45 with
/// 256 MiB (docs/benchmarks.md).
pub const LEVEL1_BYTES_DEFAULT: u64 = 256 << 20;
/// Default size ratio between adjacent levels.
pub const LEVEL_SIZE_RATIO_DEFAULT: u64 = 10;
/// Default block cache size, in bytes (8 MiB).
pub const BLOCK_CACHE_BYTES_DEFAULT: usize = 8 << 20;
/// Most shards of the block cache, each with its own lock.
pub const BLOCK_CACHE_SHARDS_MAX: usize = 16;
/// Smallest block cache shard, in bytes: eight target-size blocks (a
/// smaller cache gets fewer shards, down to one), so no shard is too
/// small to hold a block.
pub const BLOCK_CACHE_SHARD_BYTES_MIN: usize = 8 * BLOCK_BYTES_TARGET;
/// Block size assumed when sizing a cache shard's hash table (its entry
/// count); smaller blocks only mean the count, not the bytes, binds.
pub const BLOCK_CACHE_ENTRY_BYTES_MIN: usize = 1 << 10;
/// Default size at which a compaction cuts an output table, in bytes
/// (32 MiB; a table can be larger by one key's versions).
pub const TABLE_BYTES_DEFAULT: u64 = 32 << 20;
/// Default memtable size that triggers a flush, in bytes (64 MiB).
pub const MEMTABLE_BYTES_DEFAULT: usize = 64 << 20;
/// Default number of full memtables that may wait for the background
/// flush before writers wait (backpressure).
pub const IMMUTABLES_MAX_DEFAULT: usize = 2;
/// Submission-queue entries of each io_uring a WAL owns. The WAL has at
/// most one operation in flight per ring (the append ring and the fsync
/// ring are separate), so the smallest ring the kernel accepts is enough.
pub const WAL_RING_ENTRIES: u32 = 2;
/// Largest byte count of one io_uring write submission. Linux caps a
/// single write at `0x7fff_f000` bytes anyway; a longer append is
/// submitted in pieces of this size.
pub const WAL_WRITE_BYTES_MAX: usize = 1 << 30;
/// Largest encode buffer the io_uring WAL backend keeps between appends;
/// a bigger append's buffer is freed after it, so one huge batch does not
/// pin its memory for the life of the WAL.
pub const WAL_RING_BUFFER_BYTES_KEPT: usize = 1 << 20;

const _: () = assert!(KEY_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(KEY_BYTES_MAX + VALUE_BYTES_MAX + 64 <= BATCH_BYTES_MAX);
const _: () = assert!(KEY_BYTES_MAX + VALUE_BYTES_MAX + BLOCK_BYTES_TARGET_MAX <= BLOCK_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(BLOCK_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(WAL_WRITE_BYTES_MAX <= 0x7fff_f000);
const _: () = assert!(WAL_RING_ENTRIES.is_power_of_two());
// Writes stop only above the trigger, so compaction always has work that
// brings L0 back under the stop (otherwise stalled writers would wait
// forever).
const _: () = assert!(L0_COMPACTION_TRIGGER_DEFAULT < L0_STOP_WRITES_DEFAULT);
const _: () = assert!(LEVEL_SIZE_RATIO_DEFAULT >= 2);
const _: () = assert!(LEVELS >= 2 && LEVELS <= u8::MAX as usize);
