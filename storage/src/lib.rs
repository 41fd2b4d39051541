//! `strata-storage`: the storage engine of the Strata node, usable on its own.
//!
//! What is here now:
//! - [`ordered_table::OrderedTable`]: an ordered robin-hood hash table for
//!   uniformly distributed 32-byte keys (blake3 outputs). Slot order is key
//!   order, so it iterates sorted without sorting. It backs the mempool and
//!   the memtable of hashed keys.
//! - [`lru::LruCache`]: a fixed-capacity LRU cache whose robin-hood slots are
//!   also the nodes of its recency list (one allocation). It backs the block
//!   cache and the per-peer "already sent" sets.
//!
//! What this crate is not: it contains no node, network or consensus code, and
//! nothing in it knows about blocks or transactions.
//!
//! # Example
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
pub mod limits;
mod record;
pub mod wal;

mod db;
mod iter;
mod manifest;
mod memtable;
mod options;
mod table;
mod version;

pub use db::{Db, Options, Scan, Snapshot, WalRecovery, WriteBatch, WriteOptions};
pub use error::Error;
