//! A binary sparse merkle trie over 256-bit paths: the chain-state
//! commitment (DESIGN.md §4).
//!
//! What it is:
//! - **Shape**: a key's path is `blake3(key)` (or a caller-hashed 32 bytes);
//!   leaves sit as high as they can (a subtree holding one leaf *is* that
//!   leaf), so a key set has exactly one shape and one root.
//! - **Hashes**: one blake3 compression each, domain-separated by blake3
//!   key ([`hash`]); the empty subtree is 32 zero bytes.
//! - **[`root_of_sorted`]**: the root of a sorted run of `(path, value_hash)`
//!   in one streaming pass (a stack of at most 257 entries, no tree built).
//! - **[`Trie`]**: the persistent trie in a [`NodeStore`], stored as 16-way
//!   pages (4 levels each) keyed by `level ‖ path prefix ‖ version`.
//!   [`Trie::apply`] takes a sorted batch, rewrites only pages on changed
//!   paths (hashing the 16 top subtrees on all cores for big batches) and
//!   commits them with ONE `write_batch`. The latest
//!   [`TrieConfig::roots_retained`] roots (default 16) stay provable.
//! - **Proofs** ([`Proof`]): inclusion or exclusion, compact bytes (empty
//!   siblings skipped via a bitmap), decoded with limits and typed errors,
//!   checked by the stand-alone [`verify`].
//! - **Range proofs** ([`RangeProof`]): that a sorted run of leaves is
//!   exactly the set of leaves in an inclusive path range, for state sync
//!   chunks; made from stored pages ([`Trie::prove_range_at`]) or a whole
//!   sorted set ([`RangeProof::from_sorted`]), checked by [`verify_range`].
//!
//! What it is not: it stores value *hashes*, not values (the state itself
//! lives in the LSM); it does not cache pages (the store's block cache
//! does); it keeps no history beyond the retained roots.
//!
//! Exact hashing rules and byte layouts: `docs/storage-format.md`,
//! "Sparse merkle trie".
//!
//! # Example
//! ```
//! use strata_storage::merkle::{root_of_sorted, verify, Batch, MemStore, Trie, TrieConfig};
//!
//! let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
//! let mut batch = Batch::new();
//! for i in 0u32..1000 {
//!     batch.put(&i.to_le_bytes(), b"balance");
//! }
//! let sorted = batch.into_sorted();
//! let root = trie.apply(&sorted).unwrap();
//! // The same set through the streaming builder gives the same root.
//! let pairs = sorted.iter().map(|(p, v)| (*p, v.unwrap()));
//! assert_eq!(root_of_sorted(pairs).unwrap(), root);
//! let proof = trie.prove_key(&7u32.to_le_bytes()).unwrap();
//! let bytes = proof.encode();
//! let decoded = strata_storage::merkle::Proof::decode(&bytes).unwrap();
//! assert!(verify(&root, &7u32.to_le_bytes(), Some(b"balance"), &decoded));
//! ```

mod batch;
mod error;
pub mod hash;
pub mod limits;
mod page;
mod proof;
mod range_proof;
mod range_prover;
mod sorted;
mod store;
mod trie;

pub use batch::{Batch, Update};
pub use error::{Error, ProofError, RangeProofError};
pub use hash::{key_path, leaf_hash, node_hash, value_hash, Hash32, EMPTY};
pub use proof::{verify, verify_path, Proof, Terminal};
pub use range_proof::{verify_range, OutsideItem, RangeProof};
pub use sorted::{root_of_sorted, root_of_sorted_parallel, SortedRootBuilder};
pub use store::{MemStore, NodeStore};
pub use trie::{ApplyStats, Puts, Staged, Trie, TrieConfig};
