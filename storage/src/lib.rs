//! `strata-storage`: the storage engine of the Strata node, usable on its own.
//!
//! # The LSM engine ([`Db`])
//!
//! A log-structured key-value store: arbitrary byte keys (up to
//! [`limits::KEY_BYTES_MAX`] = 4 KiB) and values (up to
//! [`limits::VALUE_BYTES_MAX`] = 16 MiB); over-limit input is
//! [`Error::InvalidArgument`]. Writes go to a write-ahead log (one
//! crc32-framed record per [`WriteBatch`], group commit for synced writers)
//! and a memtable. A full memtable is frozen (writers continue into a
//! fresh memtable and WAL) and a background worker writes it to a sorted
//! table file in level 0 (4 KiB prefix-compressed blocks with restart
//! points, per-block crc32, optional zstd, an index block, a bloom filter,
//! a footer with magic number and version), recorded in a checksummed
//! manifest. At most [`Options::immutables_max`] frozen memtables wait for
//! the worker; past that, writes wait (backpressure, counted by
//! [`Db::write_stalls`]). A second worker runs leveled compaction
//! (`compaction` module docs): L0 into the base level at
//! [`Options::l0_compaction_trigger`] tables, each deeper level into the
//! next once over its target size (targets sized from the largest level
//! up, [`Options::level_targets_dynamic`]),
//! dropping versions no live snapshot can read and tombstones with nothing
//! beneath them; writes also wait while L0 has
//! [`Options::l0_stop_writes`] tables. Reads look in the memtable, the
//! frozen memtables, L0 newest first, then at most one table per deeper
//! level; range scans merge the same sources, ascending ([`Db::scan`],
//! [`Db::scan_prefix`]) or descending ([`Db::scan_rev`]), over ranges of
//! any byte-string key type ([`KeyBounds`]). [`Db::snapshot`] reads at a
//! fixed sequence number and holds back the versions it reads until
//! dropped. [`Db::compact_range`] compacts on
//! demand; [`Db::stats`] reports level shapes and write amplification.
//! Byte layouts and compaction rules: `docs/storage-format.md`, "LSM
//! files".
//!
//! Visibility and durability ([`Db::write`] has the details): a write is
//! visible to readers as soon as it is in the memtable, before its fsync;
//! a write acknowledged as synced survives kill -9 and power loss; and
//! after any crash, recovery holds a prefix of the write order. A crash can
//! therefore lose a write a reader saw only if it was not acknowledged as
//! synced.
//!
//! Recovery: a torn final record of the newest WAL (the one being
//! appended to) is truncated away. Every older WAL was fsynced whole when
//! the next one was started, so a torn tail there, like any other bad byte
//! in a WAL, a table or the manifest, is [`Error::Corruption`] naming the
//! file and offset (or, for the WAL, best-effort recovery if
//! [`WalRecovery::BestEffort`] is chosen). After a failed write or fsync
//! the `Db` is poisoned: it refuses writes ([`Error::Poisoned`]) until it
//! is reopened; a failed background flush likewise makes every later
//! write and flush return [`Error::Background`]. Either way, every
//! acknowledged write is still in a WAL and is recovered at reopen.
//!
//! What it is not (yet), and the limits that follow:
//! - One compaction at a time, on one worker thread; a large compaction
//!   (or [`Db::compact_range`]) delays the next one, and writers stall at
//!   `l0_stop_writes` until L0 is compacted; from `l0_slowdown_writes`
//!   on, writes are first slowed to `slowdown_bytes_per_s`. Compaction
//!   I/O is not rate-limited.
//! - One flush worker thread, flushing the oldest frozen memtable first;
//!   the write that finds the memtable full freezes it (fsyncing the old
//!   WAL, then creating and fsyncing a new WAL and its directory entry, on
//!   the writer's path with the writer lock held).
//! - The manifest is rewritten only at open; it grows by one record per
//!   flush and compaction until then.
//! - The memtable keeps every version of a key (compaction drops them
//!   once they reach tables). While all its keys are 32 bytes
//!   it is an [`ordered_table::OrderedTable`] (robin-hood, key-ordered: no
//!   sort at flush or scan); any other key length switches it to a
//!   SwissTable plus a sorted key view built once per flush or scan and
//!   cached until a new key arrives.
//! - WAL appends and fsyncs go through io_uring where it can be set up,
//!   else through `std::fs`, chosen once at open ([`WalBackend`],
//!   reported by [`Db::wal_backend`]; why, in [`wal`]). Tables, manifests
//!   and reads always use `std::fs` and memory maps. Both backends sit
//!   behind the [`wal::LogFile`] trait. Tests inject faults through it:
//!   [`Options::wal_wrapper`] for WALs, [`Options::file_wrapper`] for
//!   tables, manifests and `CURRENT` (renames, directory fsyncs and reads
//!   are not wrapped).
//! - Scans copy the memtable range they cover; tables are read one
//!   decoded block at a time. Data blocks are read through a block
//!   cache ([`Options::block_cache_bytes`], default 8 MiB, decompressed and
//!   checksum-verified blocks shared by all tables, LRU per shard; hits
//!   and misses in [`Db::stats`]); flushes and compactions bypass it.
//!   Index and bloom blocks stay decoded in memory for every open table
//!   (not counted in the cache budget).
//! - The directory is locked (`flock` on its `LOCK` file) while a `Db` is
//!   open: a second open, in this process or another, is
//!   [`Error::Locked`]. The lock is advisory: it does not stop other
//!   programs. Table files are memory-mapped; truncating one under an
//!   open `Db` would crash the process.
//!
//! ```
//! use strata_storage::{Db, Options, WriteBatch, WriteOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path(), Options::new())?;
//! db.put(b"apple", b"red")?;
//! let mut batch = WriteBatch::new();
//! batch.put(b"banana".to_vec(), b"yellow".to_vec());
//! batch.delete(b"apple".to_vec());
//! let before = db.snapshot();
//! db.write(batch, WriteOptions { sync: true })?;
//! assert_eq!(db.get(b"apple")?, None);
//! assert_eq!(before.get(b"apple")?, Some(b"red".to_vec()));
//! let all: Vec<_> = db.scan(..)?.collect::<Result<_, _>>()?;
//! assert_eq!(all, vec![(b"banana".to_vec(), b"yellow".to_vec())]);
//! db.flush()?;
//! db.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Other structures
//! - [`ordered_table::OrderedTable`]: an ordered robin-hood hash table for
//!   uniformly distributed 32-byte keys (blake3 outputs). Slot order is key
//!   order, so it iterates sorted without sorting. It backs the mempool and
//!   the memtable of hashed keys.
//! - [`lru::LruCache`]: a fixed-capacity LRU cache whose robin-hood slots are
//!   also the nodes of its recency list (one allocation). It backs the block
//!   cache and the per-peer "already sent" sets.
//! - [`merkle`]: the sparse merkle trie; [`Db`] implements
//!   [`merkle::NodeStore`] (one synced write batch per trie `apply`).
//!
//! What this crate is not: it contains no node, network or consensus code, and
//! nothing in it knows about blocks or transactions.
//!
//! # Example: the ordered table
//! ```
//! use strata_storage::ordered_table::OrderedTable;
//!
//! let mut mempool: OrderedTable<u32> = OrderedTable::with_capacity(1024);
//! for n in 0u32..100 {
//!     mempool.insert(*blake3::hash(&n.to_le_bytes()).as_bytes(), n);
//! }
//! // Iteration is in ascending id order, with no sort.
//! let ids: Vec<_> = mempool.iter().map(|(id, _)| *id).collect();
//! assert!(ids.windows(2).all(|w| w[0] < w[1]));
//! ```

#![deny(missing_docs)]

pub mod lru;
pub mod merkle;
pub mod ordered_table;

pub mod batch;
pub mod error;
pub mod fault;
pub mod limits;
mod record;
pub mod wal;
#[cfg(target_os = "linux")]
mod wal_uring;

mod compaction;
mod db;
mod dir_lock;
mod flush;
mod ingest;
mod inner;
mod iter;
mod lock_order;
mod manifest;
mod memtable;
mod open;
mod options;
mod outputs;
mod range;
mod stats;
mod table;
mod version;

pub use db::{
    Db, LevelStats, Options, Scan, Snapshot, Stats, TableInfo, WalBackend, WalRecovery, WriteBatch,
    WriteOptions,
};
pub use error::Error;
pub use ingest::IngestStats;
pub use range::{prefix_range, KeyBounds};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
