//! The durable [`Chain`]: finalized blocks, their transactions, the state
//! and the state's sparse merkle trie in one `strata-storage` [`Db`],
//! committed **atomically and durably** per block.
//!
//! Key layout (one byte of namespace, then fixed-width fields):
//!
//! | key | value |
//! |---|---|
//! | `s` ‖ state key (32) | state value |
//! | `t` ‖ trie record key | trie page / root / stale-list record |
//! | `b` ‖ height (8, big-endian) | encoded block |
//! | `x` ‖ height (8, big-endian) | the block's transactions: count (4) then, each, length (4) ‖ encoding |
//! | `i` ‖ block id (32) | height (8, little-endian) |
//! | `n` ‖ tx id (32) | height (8, little-endian) |
//! | `e` ‖ tx id (32) | a deploy's or call's receipt ([`crate::contract::Receipt`]) |
//! | `m` | height (8) ‖ last block id (32) ‖ state root (32) |
//! | `g` | the hash of the genesis the store was created with ([`Genesis::hash`]); opening with another genesis fails ([`ChainError::GenesisMismatch`]) |
//! | `r` | height (8, little-endian) ‖ block id (32): the preference this node last revealed to a validator (see [`DbChain::record_revealed`]) |
//! | `p` | height (8, little-endian): the lowest height whose `b`, `x`, `i`, `n` and `e` records are kept; absent means 1 (see [`crate::history`]) |
//! | `j` | a state sync's resume record ([`crate::sync::SyncProgress`]); only in a store that holds no chain yet (no `m`), deleted once the synced state is adopted |
//!
//! A commit executes nothing: it takes the block's state diff (a sorted run),
//! *stages* it on the trie ([`Trie::stage`]: the new root and the page
//! records, nothing written, the trie unmoved), puts trie pages, state
//! changes, the block, its transactions, the indexes and the `m` record into
//! **one** synced write batch, and only once that write succeeded moves the
//! trie to the new version ([`Trie::install`]). After a crash the store holds
//! either all of a block or none of it, so a reopened node is at exactly its
//! last committed height with the matching root; after a failed write the
//! trie is still at the last committed root.
//!
//! The genesis is not a batch: its state, trie pages, `g` and `m` records are
//! one sorted run written by bulk ingest straight into tables, installed
//! by one manifest edit (all or nothing; see `write_genesis`), so ten
//! million accounts never pass through the WAL or the memtable.

use crate::state::BlockEnv;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use strata_storage::lru::{IdentityState, LruCache};
use strata_storage::merkle::{self, NodeStore, Trie, TrieConfig};
use strata_storage::{Db, WriteBatch, WriteOptions};

use crate::block::{Block, BlockId};
use crate::engine::{Chain, LocalFault, StoredBlock};
use crate::genesis::Genesis;
use crate::state::{self, Account, ExecError, StateDiff, StateKey, StateReader};
use crate::tx::{PublicKey, Transaction, TxId};

const META_KEY: &[u8] = b"m";
/// The hash of the genesis the store was created with ([`Genesis::hash`]).
const GENESIS_KEY: &[u8] = b"g";
const REVEALED_KEY: &[u8] = b"r";

pub(crate) fn key(ns: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(ns);
    k.extend_from_slice(rest);
    k
}

/// Fewest pages of one trie level an adoption slice ingests as a run of
/// its own; fewer go through the write batch (a run this small would be
/// a table of a few KB in the last level, kept until a manual
/// compaction).
const ADOPT_RUN_ENTRIES_MIN: usize = 1024;

/// State entries staged on the trie at a time when a synced state is
/// adopted ([`DbChain::adopt_synced_state`]): 16 MiB of paths and value
/// hashes and the pages they write. A 10 M-entry join peaked at 2,018 MiB
/// RSS with slices of 2^18 and 2,130 MiB with 2^20 (the 512 MiB block
/// cache the adoption's scan fills is most of the rest), in about the
/// same time.
const ADOPT_SLICE_UPDATES: usize = 1 << 18;

/// Deletes every record of namespace `ns` through the WAL (unsynced; the
/// caller syncs what must be durable), a bounded batch at a time; returns
/// how many. For stores that hold no chain yet (a join starting over).
fn delete_namespace(db: &Db, ns: u8) -> Result<u64, ChainError> {
    /// Deletes per write batch: bounded memory for any namespace size.
    const DELETES_PER_BATCH: usize = 65_536;
    let mut deleted = 0u64;
    // Each batch scans on from just past the last key it deleted (not
    // from the prefix again, which would step over every tombstone
    // already written).
    let mut from = vec![ns];
    loop {
        let mut batch = WriteBatch::new();
        let mut last = None;
        for item in db.scan(from.clone()..vec![ns + 1])?.take(DELETES_PER_BATCH) {
            let (k, _) = item?;
            last = Some(k.clone());
            batch.delete(k);
        }
        let Some(mut last) = last else { break };
        deleted += batch.len() as u64;
        db.write(batch, WriteOptions::default())?;
        last.push(0);
        from = last;
    }
    Ok(deleted)
}

/// The trie's view of the `Db`: reads go to the `t` namespace. Its records
/// are written by [`DbChain`] in each block's batch (staged, never through
/// this store), so `write_batch` is never called.
struct TrieStore {
    db: Arc<Db>,
}

impl NodeStore for TrieStore {
    type Error = strata_storage::Error;

    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        self.db.get(&key(b't', k))
    }

    fn write_batch(
        &self,
        _puts: Vec<(Vec<u8>, Vec<u8>)>,
        _deletes: Vec<Vec<u8>>,
    ) -> Result<(), Self::Error> {
        unreachable!("DbChain stages trie versions and writes them in its own batch")
    }
}

/// The store key of state entry `k` (namespace `s`).
pub fn state_record_key(k: &StateKey) -> Vec<u8> {
    key(b's', k)
}

/// Stages the records of finalized `block` with its transactions `txs`:
/// the block (`b` + height), its transaction list (`x` + height), and the
/// id → height indexes of its transactions (`n`) and of itself (`i`).
/// State entries, trie pages and the `m` record are staged separately.
/// Public so that benchmarks can write exactly the node's records without
/// the trie.
pub fn stage_block(batch: &mut WriteBatch, block: &Block, txs: &[Arc<Transaction>]) {
    let height = block.height();
    let hb = height.to_be_bytes();
    batch.put(key(b'b', &hb), block.encode());
    let mut body = Vec::new();
    body.extend_from_slice(&(txs.len() as u32).to_le_bytes());
    for tx in txs {
        body.extend_from_slice(&(tx.encoded().len() as u32).to_le_bytes());
        body.extend_from_slice(tx.encoded());
        batch.put(key(b'n', tx.id()), height.to_le_bytes().to_vec());
    }
    batch.put(key(b'x', &hb), body);
    batch.put(key(b'i', block.id()), height.to_le_bytes().to_vec());
}

/// State entries [`StateCache`] keeps by default: a busy chain's working
/// set of accounts (senders are read at admission, block building,
/// execution); about 16 MiB.
pub const STATE_CACHE_ENTRIES: usize = 131_072;

/// Finalized state entries recently read or committed (`None` = absent),
/// in front of the `Db`. A read that hits skips the storage engine's
/// memtables and tables; the node reads each sender's account three to
/// four times per transaction. Kept exact by [`DbChain`]: every committed
/// change updates it after its batch is written, and only committed state
/// is read through it.
///
/// Readers on other threads ([`CommittedState`]: the block checker's
/// executions, the workers' balance pre-check) fill it too, so it is
/// split in [`STATE_CACHE_SHARDS`] LRUs by key, each behind its own lock:
/// the driver, the block checker and the workers read it at once.
///
/// A reader that missed, read the `Db`, and meanwhile a commit updated
/// the cache, may hold the value from before that commit: it leaves the
/// cache alone. A commit bumps `epoch` after its write and before it
/// updates any shard; a reader loads `epoch` before its `Db` read and
/// again under the shard's lock before inserting. If the second load
/// precedes the bump, the reader's insert precedes the commit's update of
/// that shard (which takes the same lock after the bump) and is
/// overwritten by it.
struct StateCache {
    shards: Box<[Mutex<Shard>]>,
    /// Commits applied to the cache since open.
    epoch: AtomicU64,
}

// State keys are blake3 outputs: the identity hash spreads them.
type Shard = LruCache<StateKey, Option<Vec<u8>>, IdentityState>;

/// Locks in the state cache (a power of two).
const STATE_CACHE_SHARDS: usize = 16;

impl StateCache {
    fn new(entries: usize) -> Self {
        let per_shard = entries.div_ceil(STATE_CACHE_SHARDS).max(1);
        StateCache {
            shards: (0..STATE_CACHE_SHARDS)
                .map(|_| Mutex::new(LruCache::with_hasher(per_shard, IdentityState)))
                .collect(),
            epoch: AtomicU64::new(0),
        }
    }

    /// The cached entry of `k`, or (on a miss) the epoch to hand to
    /// [`StateCache::fill`] after reading the store.
    fn get(&self, k: &StateKey) -> Result<Option<Vec<u8>>, u64> {
        let mut shard = self.shard(k);
        match shard.get(k) {
            Some(v) => Ok(v.clone()),
            None => Err(self.epoch.load(Ordering::SeqCst)),
        }
    }

    /// Caches `v`, read from the store after a miss at `epoch`, unless a
    /// commit has updated the cache since (`v` may predate it).
    fn fill(&self, k: &StateKey, v: &Option<Vec<u8>>, epoch: u64) {
        let mut shard = self.shard(k);
        if self.epoch.load(Ordering::SeqCst) == epoch {
            shard.put(*k, v.clone());
        }
    }

    /// A commit's changes, once its batch is written.
    fn commit(&self, changed: Vec<(StateKey, Option<Vec<u8>>)>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for (k, v) in changed {
            self.shard(&k).put(k, v);
        }
    }

    fn shard(&self, k: &StateKey) -> MutexGuard<'_, Shard> {
        // The last byte: the identity hash takes the first ones for the
        // shard's own table.
        let i = usize::from(k[31]) % STATE_CACHE_SHARDS;
        // Each operation is one call on the cache: a panic elsewhere
        // cannot leave it half-updated.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads finalized state from the `Db`, through the chain's cache.
struct DbState<'a> {
    db: &'a Db,
    cache: &'a StateCache,
}

impl StateReader for DbState<'_> {
    fn read(&self, k: &StateKey) -> Result<Option<Vec<u8>>, ExecError> {
        let epoch = match self.cache.get(k) {
            Ok(hit) => return Ok(hit),
            Err(epoch) => epoch,
        };
        let v = self
            .db
            .get(&state_record_key(k))
            .map_err(|e| ExecError::Read(e.to_string()))?;
        self.cache.fill(k, &v, epoch);
        Ok(v)
    }
}

/// A chain's committed state for other threads, through the chain's state
/// cache: executes blocks (the node runs
/// [`crate::engine::Output::Execute`] jobs on a worker) and reads
/// accounts (its workers' balance pre-check). Cheap to clone. A read that
/// overlaps a commit may see some state from before it and some from
/// after: an execution's result is then for a height the engine has left,
/// and the engine ignores it; a balance pre-check only decides what is
/// worth a signature check.
#[derive(Clone)]
pub struct CommittedState {
    db: Arc<Db>,
    cache: Arc<StateCache>,
}

impl CommittedState {
    fn reader(&self) -> DbState<'_> {
        DbState {
            db: &self.db,
            cache: &self.cache,
        }
    }

    /// Executes `txs` against the committed state.
    ///
    /// # Errors
    /// As [`state::execute`].
    pub fn execute(&self, env: BlockEnv, txs: &[Arc<Transaction>]) -> Result<StateDiff, ExecError> {
        state::execute_read_ahead(&self.reader(), env, txs, read_ahead_threads())
    }

    /// The committed accounts of `pks`, in order (the default account
    /// where there is none).
    ///
    /// # Errors
    /// When the store cannot be read or a record is corrupt.
    pub fn accounts(&self, pks: &[PublicKey]) -> Result<Vec<Account>, ExecError> {
        let reader = self.reader();
        pks.iter()
            .map(|pk| state::read_account(&reader, pk))
            .collect()
    }
}

/// Why the chain store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(#[from] strata_storage::Error),
    /// The trie failed.
    #[error("state trie: {0}")]
    Trie(#[from] merkle::Error),
    /// A stored record does not decode.
    #[error("corrupt chain record: {0}")]
    Corrupt(String),
    /// The genesis is invalid.
    #[error("genesis: {0}")]
    Genesis(#[from] crate::genesis::GenesisError),
    /// The store was created with another genesis.
    #[error(
        "this data directory holds a chain with genesis {stored}, not the given genesis {given}: \
         use the genesis it was created with, or another data directory"
    )]
    GenesisMismatch {
        /// Hash of the store's genesis, hex.
        stored: String,
        /// Hash of the genesis given, hex.
        given: String,
    },
}

/// A finalized chain stored in a [`Db`]. See the [module docs](self).
pub struct DbChain {
    db: Arc<Db>,
    trie: Trie<TrieStore>,
    chain_id: u64,
    height: u64,
    last_id: BlockId,
    root: [u8; 32],
    cache: Arc<StateCache>,
    /// Ids of the last [`RECENT_IDS`] committed blocks, oldest first (the
    /// last one is at `height`).
    recent_ids: VecDeque<BlockId>,
}

/// Threads a large block's state reads are spread over before it is
/// executed ([`state::execute_read_ahead`]): every core.
fn read_ahead_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Committed block ids [`DbChain`] remembers for queries about recent
/// heights (see [`Chain::finalized_id`]).
const RECENT_IDS: usize = 64;

impl DbChain {
    /// Opens the chain in `db`, committing `genesis`'s state as height 0 if
    /// the store is empty.
    ///
    /// # Errors
    /// Storage failures, corrupt records, or an invalid genesis.
    pub fn open(db: Arc<Db>, genesis: &Genesis) -> Result<DbChain, ChainError> {
        genesis.validate()?;
        let mut chain = DbChain::attach(db, genesis.chain_id)?;
        let genesis_hash = genesis.hash();
        match chain.db.get(META_KEY)? {
            Some(meta) => {
                match chain.db.get(GENESIS_KEY)? {
                    Some(stored) if stored != genesis_hash => {
                        return Err(ChainError::GenesisMismatch {
                            stored: hex::encode(stored),
                            given: hex::encode(genesis_hash),
                        });
                    }
                    Some(_) => {}
                    // A store from before the genesis record: it takes the
                    // genesis it is opened with now (it could not check).
                    None => {
                        let mut batch = WriteBatch::new();
                        batch.put(GENESIS_KEY, genesis_hash);
                        chain.db.write(batch, WriteOptions { sync: true })?;
                    }
                }
                (chain.height, chain.last_id, chain.root) = decode_meta(&meta)?;
                // The last committed id is known from the `m` record, even
                // on a store that joined by state sync and holds no block.
                if chain.height > 0 {
                    chain.recent_ids.push_back(chain.last_id);
                }
                if chain.root != chain.trie.root() {
                    return Err(ChainError::Corrupt(format!(
                        "state root {} in the meta record, {} in the trie",
                        hex::encode(chain.root),
                        hex::encode(chain.trie.root())
                    )));
                }
            }
            None => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let entries = genesis.state_entries(threads)?;
                chain.write_genesis(&genesis_hash, entries)?;
            }
        }
        Ok(chain)
    }

    /// Completes a state sync into `db`: it holds the state entries (`s`
    /// records) of the snapshot after `height` (block `block_id`), ingested
    /// chunk by chunk as each was verified, and nothing else of a chain.
    /// Builds the trie over them a slice at a time (each slice's pages
    /// written by bulk ingest), checks its root against `state_root` (the
    /// root the chunks were verified against: a mismatch means the store
    /// lost or gained entries, a local fault), then writes the genesis
    /// hash, the `m` record and the history floor (`height + 1`: the node
    /// keeps no block below) as one sorted run by bulk ingest, so a crash
    /// leaves either a complete chain or none: without the `m` record the
    /// next call deletes the trie records an interrupted one left and
    /// builds again. [`DbChain::open`] then opens it at `height`.
    ///
    /// # Errors
    /// Storage failures, a store that already holds a chain, or a root
    /// that does not match.
    pub fn adopt_synced_state(
        db: &Arc<Db>,
        genesis: &Genesis,
        height: u64,
        block_id: &BlockId,
        state_root: &[u8; 32],
    ) -> Result<(), ChainError> {
        Self::adopt_in_slices(
            db,
            genesis,
            height,
            block_id,
            state_root,
            ADOPT_SLICE_UPDATES,
            ADOPT_RUN_ENTRIES_MIN,
        )
    }

    /// [`DbChain::adopt_synced_state`], staging `slice_updates` entries at
    /// a time and ingesting runs of at least `run_entries_min` pages
    /// ([`write_adopted_slice`]).
    fn adopt_in_slices(
        db: &Arc<Db>,
        genesis: &Genesis,
        height: u64,
        block_id: &BlockId,
        state_root: &[u8; 32],
        slice_updates: usize,
        run_entries_min: usize,
    ) -> Result<(), ChainError> {
        assert!(slice_updates > 0);
        if db.get(META_KEY)?.is_some() {
            return Err(ChainError::Corrupt(
                "state sync into a store that already holds a chain".into(),
            ));
        }
        let mut chain = DbChain::attach(Arc::clone(db), genesis.chain_id)?;
        if chain.trie.version() != 0 {
            // An earlier adoption stopped part-way (a crash between two
            // slices): its pages cover part of the state. Start again.
            delete_namespace(db, b't')?;
            chain = DbChain::attach(Arc::clone(db), genesis.chain_id)?;
        }
        // The trie is built a slice of the state at a time, each slice's
        // pages written as a sorted run before the next is staged: memory
        // is bounded by a slice, not the state (staging all of 10 M
        // entries at once held over 1 GiB of paths, hashes and pages).
        // Slices are consecutive key ranges, so each stage reads only the
        // few top pages the ones before it wrote.
        let mut entries = db.scan_prefix([b's'])?.peekable();
        let mut first = true;
        while first || entries.peek().is_some() {
            first = false;
            let mut updates = merkle::Batch::new();
            for item in entries.by_ref().take(slice_updates) {
                let (k, v) = item?;
                let key: StateKey = k
                    .get(1..)
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| ChainError::Corrupt("a state key of the wrong length".into()))?;
                updates.put_hashed(key, merkle::value_hash(&v));
            }
            let mut staged = chain.trie.stage(&updates.into_sorted())?;
            let (puts, deletes) = staged.take_writes();
            let mut trie_records: Vec<(Vec<u8>, Vec<u8>)> =
                puts.into_iter().map(|(k, v)| (key(b't', &k), v)).collect();
            trie_records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            write_adopted_slice(db, trie_records, deletes, run_entries_min)?;
            chain.trie.install(staged)?;
        }
        if chain.trie.root() != *state_root {
            return Err(ChainError::Corrupt(format!(
                "the synced state has root {}, the snapshot {}",
                hex::encode(chain.trie.root()),
                hex::encode(state_root)
            )));
        }
        const _: () =
            assert!(GENESIS_KEY[0] < META_KEY[0] && META_KEY[0] < crate::history::FLOOR_KEY[0]);
        let run = [
            (GENESIS_KEY.to_vec(), genesis.hash().to_vec()),
            (META_KEY.to_vec(), encode_meta(height, block_id, state_root)),
            (
                crate::history::FLOOR_KEY.to_vec(),
                (height + 1).to_le_bytes().to_vec(),
            ),
        ]
        .into_iter();
        db.ingest_sorted(run)?;
        // The resume record is done with. Left behind by a crash here it
        // is never read again: a store with an `m` record does not sync.
        db.delete(crate::sync::PROGRESS_KEY)?;
        Ok(())
    }

    /// Deletes every state entry and the sync resume record of a store
    /// that holds no chain yet: what a join that cannot resume (the
    /// snapshot it was fetching is no longer served) does before it
    /// fetches another snapshot, whose keys are not the same set. Returns
    /// how many entries were deleted. The resume record is deleted first,
    /// then the state entries and any trie records, as tombstones through
    /// the WAL synced at the end; entries ingested afterwards shadow them
    /// (an ingested run takes a newer sequence number).
    ///
    /// # Errors
    /// [`ChainError::Corrupt`] if the store holds a chain (an `m`
    /// record); storage failures.
    pub fn discard_synced_state(db: &Db) -> Result<u64, ChainError> {
        if db.get(META_KEY)?.is_some() {
            return Err(ChainError::Corrupt(
                "discarding the state of a store that holds a chain".into(),
            ));
        }
        // The resume record goes first (synced): after a crash part-way it
        // must not claim entries already deleted. Left-over entries
        // without it are what the next join deletes again.
        let progress = || {
            let mut b = WriteBatch::new();
            b.delete(crate::sync::PROGRESS_KEY.to_vec());
            b
        };
        db.write(progress(), WriteOptions { sync: true })?;
        let deleted = delete_namespace(db, b's')?;
        // Trie pages of an interrupted adoption go too: a later genesis
        // write or adoption needs an empty trie.
        delete_namespace(db, b't')?;
        // A synced write covers every write before it.
        db.write(progress(), WriteOptions { sync: true })?;
        Ok(deleted)
    }

    /// The chain's handles on `db` at height 0, before the `m` record is
    /// read or the genesis written.
    fn attach(db: Arc<Db>, chain_id: u64) -> Result<DbChain, ChainError> {
        let store = TrieStore {
            db: Arc::clone(&db),
        };
        let trie = Trie::open(store, TrieConfig::default())?;
        Ok(DbChain {
            db,
            root: trie.root(),
            trie,
            chain_id,
            height: 0,
            last_id: [0; 32],
            cache: Arc::new(StateCache::new(STATE_CACHE_ENTRIES)),
            recent_ids: VecDeque::with_capacity(RECENT_IDS),
        })
    }

    /// This chain's committed state, for other threads.
    pub fn committed_state(&self) -> CommittedState {
        CommittedState {
            db: Arc::clone(&self.db),
            cache: Arc::clone(&self.cache),
        }
    }

    /// Committed state, read through the cache.
    fn state(&self) -> DbState<'_> {
        DbState {
            db: &self.db,
            cache: &self.cache,
        }
    }

    /// The committed state value under `state_key` (through the cache).
    ///
    /// # Errors
    /// Storage failures.
    pub fn state_value(&self, state_key: &StateKey) -> Result<Option<Vec<u8>>, ChainError> {
        self.state()
            .read(state_key)
            .map_err(|e| ChainError::Corrupt(e.to_string()))
    }

    /// The state value under `state_key` with a merkle proof against the
    /// current root.
    ///
    /// # Errors
    /// Storage or trie failures.
    pub fn prove(
        &self,
        state_key: &StateKey,
    ) -> Result<(Option<Vec<u8>>, merkle::Proof), ChainError> {
        let value = self.db.get(&key(b's', state_key))?;
        let proof = self.trie.prove(state_key)?;
        Ok((value, proof))
    }

    /// Records that this node revealed `block` as its preference at
    /// `height` ([`crate::engine::Output::Revealed`]), so that after a
    /// restart it resumes that vote instead of casting a new one
    /// ([`crate::engine::Engine::resume_revealed`]). Not synced: it
    /// survives a process crash (kill -9), which is what restarts are;
    /// after a power loss a node may forget its last vote, as before.
    ///
    /// # Errors
    /// Storage failures.
    pub fn record_revealed(&self, height: u64, block: &BlockId) -> Result<(), ChainError> {
        let mut value = Vec::with_capacity(40);
        value.extend_from_slice(&height.to_le_bytes());
        value.extend_from_slice(block);
        let mut batch = WriteBatch::new();
        batch.put(REVEALED_KEY.to_vec(), value);
        self.db.write(batch, WriteOptions { sync: false })?;
        Ok(())
    }

    /// The preference last recorded by [`DbChain::record_revealed`], if
    /// it is for the height being decided (`height() + 1`).
    ///
    /// # Errors
    /// Storage failures or a corrupt record.
    pub fn revealed(&self) -> Result<Option<(u64, BlockId)>, ChainError> {
        let Some(v) = self.db.get(REVEALED_KEY)? else {
            return Ok(None);
        };
        let v: &[u8; 40] = v
            .as_slice()
            .try_into()
            .map_err(|_| ChainError::Corrupt("revealed-preference record length".into()))?;
        let height = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
        let mut block = [0u8; 32];
        block.copy_from_slice(&v[8..]);
        Ok((height == self.height + 1).then_some((height, block)))
    }

    /// Read access to the finalized blocks and indexes that needs no
    /// lock on this chain (see [`ChainReader`]).
    pub fn reader(&self) -> ChainReader {
        ChainReader::new(Arc::clone(&self.db))
    }

    /// The height at which transaction `id` was finalized, if it was.
    ///
    /// # Errors
    /// Storage failures.
    pub fn tx_height(&self, id: &TxId) -> Result<Option<u64>, ChainError> {
        self.reader().tx_height(id)
    }

    /// The height of block `id`, if finalized.
    ///
    /// # Errors
    /// Storage failures.
    pub fn block_height(&self, id: &BlockId) -> Result<Option<u64>, ChainError> {
        self.reader().block_height(id)
    }

    /// Counters of the trie's last committed version: pages and bytes
    /// written, hash compressions (the cost of the state commitment per
    /// block).
    pub fn trie_stats(&self) -> merkle::ApplyStats {
        self.trie.last_stats()
    }

    /// Writes the genesis as height 0 by **one bulk ingest** (no WAL, no
    /// memtable: `Db::ingest_sorted`): the sorted state entries, every trie
    /// page of the genesis version and the `g` and `m` records go to sorted tables
    /// installed by one manifest edit. A crash before that edit leaves
    /// the store as it was (empty: the next open writes the genesis again);
    /// after it, the whole genesis is there. The trie's pages are staged
    /// in memory first ([`Trie::stage`] on the empty trie, all cores), so
    /// the root is known before anything is written.
    fn write_genesis(
        &mut self,
        genesis_hash: &[u8; 32],
        entries: Vec<(StateKey, Account)>,
    ) -> Result<(), ChainError> {
        if self.trie.version() != 0 {
            // Only a genesis written in batches by an older build, and
            // interrupted, leaves trie records without an `m` record.
            return Err(ChainError::Corrupt(
                "the store holds trie records but no genesis record (a genesis write \
                 interrupted under an older version): remove the data directory"
                    .into(),
            ));
        }
        let mut updates = merkle::Batch::with_capacity(entries.len());
        for (k, account) in &entries {
            updates.put_hashed(*k, merkle::value_hash(&account.encode()));
        }
        let mut staged = self.trie.stage(&updates.into_sorted())?;
        let root = staged.root();
        let (puts, deletes) = staged.take_writes();
        assert!(
            deletes.is_empty(),
            "the genesis is the trie's first version"
        );
        let mut trie_records: Vec<(Vec<u8>, Vec<u8>)> =
            puts.into_iter().map(|(k, v)| (key(b't', &k), v)).collect();
        trie_records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Namespaces sort `g` < `m` < `s` < `t`: the genesis hash, the meta
        // record, then the state (sorted by state key), then the trie
        // records make one sorted run.
        const _: () = assert!(GENESIS_KEY[0] < META_KEY[0] && META_KEY[0] < b's' && b's' < b't');
        let meta = encode_meta(0, &[0; 32], &root);
        let state = entries
            .into_iter()
            .map(|(k, account)| (state_record_key(&k), account.encode()));
        let run = std::iter::once((GENESIS_KEY.to_vec(), genesis_hash.to_vec()))
            .chain(std::iter::once((META_KEY.to_vec(), meta)))
            .chain(state)
            .chain(trie_records);
        self.db.ingest_sorted(run)?;
        self.trie.install(staged)?;
        self.height = 0;
        self.last_id = [0; 32];
        self.root = root;
        Ok(())
    }

    /// Stages `changes` on the trie and puts the trie's records and the
    /// state entries in `batch`; returns the staged version (its root), to
    /// install once `batch` is written.
    fn stage_state(
        &mut self,
        batch: &mut WriteBatch,
        changes: BTreeMap<StateKey, Option<Vec<u8>>>,
    ) -> Result<merkle::Staged, ChainError> {
        let mut updates = merkle::Batch::with_capacity(changes.len());
        for (k, v) in &changes {
            match v {
                Some(v) => updates.put_hashed(*k, merkle::value_hash(v)),
                None => updates.delete_hashed(*k),
            };
        }
        let mut staged = self.trie.stage(&updates.into_sorted())?;
        let (puts, deletes) = staged.take_writes();
        for (k, v) in puts {
            batch.put(key(b't', &k), v);
        }
        for k in deletes {
            batch.delete(key(b't', &k));
        }
        for (k, v) in changes {
            match v {
                Some(v) => batch.put(state_record_key(&k), v),
                None => batch.delete(state_record_key(&k)),
            }
        }
        Ok(staged)
    }

    /// Writes one block (or the genesis state when `block` is `None`) in one
    /// synced batch.
    fn write_commit(
        &mut self,
        block: Option<&Block>,
        txs: &[Arc<Transaction>],
        diff: StateDiff,
    ) -> Result<(), ChainError> {
        let mut batch = WriteBatch::new();
        for (id, receipt) in &diff.receipts {
            batch.put(key(b'e', id), receipt.encode());
        }
        let staged = self.stage_state(&mut batch, diff.changes)?;
        let root = staged.root();
        let (height, id) = match block {
            Some(b) => (b.height(), *b.id()),
            None => (0, [0; 32]),
        };
        if let Some(b) = block {
            stage_block(&mut batch, b, txs);
        }
        batch.put(META_KEY.to_vec(), encode_meta(height, &id, &root));
        self.db.write(batch, WriteOptions { sync: true })?;
        // Only now is the new version durable: the trie moves to it.
        self.trie.install(staged)?;
        self.height = height;
        self.last_id = id;
        self.root = root;
        Ok(())
    }
}

impl Chain for DbChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn height(&self) -> u64 {
        self.height
    }

    fn last_block_id(&self) -> BlockId {
        self.last_id
    }

    fn state_root(&self) -> [u8; 32] {
        self.root
    }

    fn account(&self, account: &PublicKey) -> Result<Account, LocalFault> {
        state::read_account(&self.state(), account).map_err(|e| LocalFault(e.to_string()))
    }

    fn execute(&self, env: BlockEnv, txs: &[Arc<Transaction>]) -> Result<StateDiff, ExecError> {
        state::execute_read_ahead(&self.state(), env, txs, read_ahead_threads())
    }

    fn commit(
        &mut self,
        block: &Block,
        txs: &[Arc<Transaction>],
        diff: StateDiff,
    ) -> Result<(), LocalFault> {
        if block.height() != self.height + 1 || block.header().parent != self.last_id {
            return Err(LocalFault(format!(
                "block at height {} does not extend height {}",
                block.height(),
                self.height
            )));
        }
        // The cache learns the block's changes only once they are
        // written: a failed commit (the engine then halts) leaves it
        // holding the state that is on disk.
        let changed: Vec<(StateKey, Option<Vec<u8>>)> =
            diff.changes.iter().map(|(k, v)| (*k, v.clone())).collect();
        self.write_commit(Some(block), txs, diff)
            .map_err(|e| LocalFault(e.to_string()))?;
        self.cache.commit(changed);
        if self.recent_ids.len() == RECENT_IDS {
            self.recent_ids.pop_front();
        }
        self.recent_ids.push_back(*block.id());
        Ok(())
    }

    fn finalized(&self, height: u64) -> Result<Option<StoredBlock>, LocalFault> {
        if height == 0 || height > self.height {
            return Ok(None);
        }
        self.reader()
            .read_block(height)
            .map_err(|e| LocalFault(e.to_string()))
    }

    fn finalized_block(&self, height: u64) -> Result<Option<Block>, LocalFault> {
        if height == 0 || height > self.height {
            return Ok(None);
        }
        self.reader()
            .read_header_and_ids(height)
            .map_err(|e| LocalFault(e.to_string()))
    }

    fn finalized_id(&self, height: u64) -> Result<Option<BlockId>, LocalFault> {
        // Commits are consecutive: the ring holds heights
        // `height - len + 1 ..= height`.
        let first = self.height + 1 - self.recent_ids.len() as u64;
        if (first..=self.height).contains(&height) {
            return Ok(self.recent_ids.get((height - first) as usize).copied());
        }
        if height == 0 || height > self.height {
            return Ok(None);
        }
        self.reader()
            .read_block_id(height)
            .map_err(|e| LocalFault(e.to_string()))
    }
}

/// Read access to a chain's finalized blocks, indexes and state through
/// its `Db`, without the [`DbChain`] itself: a finalized block never
/// changes, and a commit is one atomic batch, so another thread (the
/// node's API, the workers serving blocks to peers) reads with no lock on
/// the chain — state and proofs from one storage snapshot, so the height,
/// root, value and proof it returns belong together. Cheap to clone.
#[derive(Clone)]
pub struct ChainReader {
    db: Arc<Db>,
}

/// A state value with its merkle proof, as of one committed height.
#[derive(Debug)]
pub struct ProvenValue {
    /// Height the state was read at.
    pub height: u64,
    /// State root at that height.
    pub root: [u8; 32],
    /// The value, if any.
    pub value: Option<Vec<u8>>,
    /// Inclusion (or exclusion) proof against `root`.
    pub proof: merkle::Proof,
}

/// The record namespaces of the key layout (module docs), for
/// [`ChainReader::usage`].
const NAMESPACES: [(u8, &str); 12] = [
    (b's', "state entries"),
    (b't', "trie pages and records"),
    (b'b', "blocks"),
    (b'x', "block transactions"),
    (b'n', "transaction index"),
    (b'e', "receipts"),
    (b'i', "block index"),
    (b'm', "meta record"),
    (b'g', "genesis hash"),
    (b'r', "revealed preference"),
    (b'p', "history floor"),
    (b'j', "state sync progress"),
];

/// What one record namespace holds ([`ChainReader::usage`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceUsage {
    /// The namespace byte.
    pub namespace: char,
    /// What it holds.
    pub what: &'static str,
    /// Live entries.
    pub entries: u64,
    /// Bytes of their keys.
    pub key_bytes: u64,
    /// Bytes of their values.
    pub value_bytes: u64,
}

/// The trie's view of a storage snapshot: reads only.
pub(crate) struct SnapshotTrieStore<'a>(&'a strata_storage::Snapshot);

impl NodeStore for SnapshotTrieStore<'_> {
    type Error = strata_storage::Error;

    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
        self.0.get(&key(b't', k))
    }

    fn write_batch(
        &self,
        _puts: Vec<(Vec<u8>, Vec<u8>)>,
        _deletes: Vec<Vec<u8>>,
    ) -> Result<(), Self::Error> {
        // Opening and proving never write; an error rather than a panic
        // keeps a future misuse from taking the node down.
        Err(strata_storage::Error::InvalidArgument(
            "a snapshot trie is read-only".into(),
        ))
    }
}

/// The committed height, block id and state root `snapshot` sees (its `m`
/// record), with the trie as of that height, checked to be at that root:
/// what proofs and served state-sync chunks are read against.
///
/// # Errors
/// Storage failures, no or a corrupt `m` record, or a trie whose root is
/// not the record's.
pub(crate) fn snapshot_trie(
    snap: &strata_storage::Snapshot,
) -> Result<(u64, BlockId, [u8; 32], Trie<SnapshotTrieStore<'_>>), ChainError> {
    let (height, id, root) = match snap.get(META_KEY)? {
        Some(meta) => decode_meta(&meta)?,
        None => return Err(ChainError::Corrupt("no committed height yet".into())),
    };
    let trie = Trie::open(SnapshotTrieStore(snap), TrieConfig::default())?;
    if trie.root() != root {
        return Err(ChainError::Corrupt(format!(
            "state root {} in the meta record, {} in the trie",
            hex::encode(root),
            hex::encode(trie.root())
        )));
    }
    Ok((height, id, root, trie))
}

impl ChainReader {
    /// A reader over the chain records in `db`.
    pub fn new(db: Arc<Db>) -> Self {
        ChainReader { db }
    }

    /// Logical bytes of each record namespace (keys and values as
    /// written, before compression and before versions are dropped), from
    /// one snapshot: what the chain stores per block, per transaction and
    /// for its state. Scans the whole store: an operator's tool
    /// (`strata inspect`), not a request path.
    ///
    /// # Errors
    /// Storage failures.
    pub fn usage(&self) -> Result<Vec<NamespaceUsage>, ChainError> {
        let snap = self.db.snapshot();
        let mut out: Vec<NamespaceUsage> = NAMESPACES
            .iter()
            .map(|&(ns, what)| NamespaceUsage {
                namespace: ns as char,
                what,
                entries: 0,
                key_bytes: 0,
                value_bytes: 0,
            })
            .collect();
        for item in snap.scan(..)? {
            let (k, v) = item?;
            let Some(&ns) = k.first() else { continue };
            let i = match NAMESPACES.iter().position(|&(n, _)| n == ns) {
                Some(i) => i,
                None => {
                    out.push(NamespaceUsage {
                        namespace: ns as char,
                        what: "unknown",
                        entries: 0,
                        key_bytes: 0,
                        value_bytes: 0,
                    });
                    out.len() - 1
                }
            };
            let u = &mut out[i];
            u.entries += 1;
            u.key_bytes += k.len() as u64;
            u.value_bytes += v.len() as u64;
        }
        Ok(out)
    }

    /// The committed account of `pk` and the height it was read at, from
    /// one snapshot.
    ///
    /// # Errors
    /// Storage failures or a corrupt record.
    pub fn account(&self, pk: &PublicKey) -> Result<(u64, Account), ChainError> {
        let snap = self.db.snapshot();
        let height = match snap.get(META_KEY)? {
            Some(meta) => decode_meta(&meta)?.0,
            None => 0,
        };
        let k = state::account_key(pk);
        let account = match snap.get(&state_record_key(&k))? {
            None => Account::default(),
            Some(v) => Account::decode(&v)
                .ok_or_else(|| ChainError::Corrupt(format!("account record {}", hex::encode(k))))?,
        };
        Ok((height, account))
    }

    /// The receipt of deploy or call `id` (`None` for any other
    /// transaction, or one not executed yet).
    ///
    /// # Errors
    /// Storage failures or a corrupt record.
    pub fn receipt(&self, id: &TxId) -> Result<Option<crate::contract::Receipt>, ChainError> {
        match self.db.get(&key(b'e', id))? {
            None => Ok(None),
            Some(v) => crate::contract::Receipt::decode(&v)
                .map(Some)
                .map_err(|e| ChainError::Corrupt(format!("receipt {}: {e}", hex::encode(id)))),
        }
    }

    /// The state value under `state_key` with a proof against the root of
    /// the last committed height, all from one snapshot.
    ///
    /// # Errors
    /// Storage or trie failures.
    pub fn prove(&self, state_key: &StateKey) -> Result<ProvenValue, ChainError> {
        let snap = self.db.snapshot();
        let value = snap.get(&state_record_key(state_key))?;
        let (height, _, root, trie) = snapshot_trie(&snap)?;
        let proof = trie.prove(state_key)?;
        Ok(ProvenValue {
            height,
            root,
            value,
            proof,
        })
    }

    /// The last committed height, block id and state root, from the `m`
    /// record (`None` before the genesis is written).
    ///
    /// # Errors
    /// Storage failures or a corrupt record.
    pub fn head(&self) -> Result<Option<(u64, BlockId, [u8; 32])>, ChainError> {
        let Some(meta) = self.db.get(META_KEY)? else {
            return Ok(None);
        };
        decode_meta(&meta).map(Some)
    }

    /// The height at which transaction `id` was finalized, if it was.
    ///
    /// # Errors
    /// Storage failures.
    pub fn tx_height(&self, id: &TxId) -> Result<Option<u64>, ChainError> {
        self.index(b'n', id)
    }

    /// The height of block `id`, if finalized.
    ///
    /// # Errors
    /// Storage failures.
    pub fn block_height(&self, id: &BlockId) -> Result<Option<u64>, ChainError> {
        self.index(b'i', id)
    }

    fn index(&self, ns: u8, id: &[u8; 32]) -> Result<Option<u64>, ChainError> {
        match self.db.get(&key(ns, id))? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| ChainError::Corrupt("index record length".into()))?;
                Ok(Some(u64::from_le_bytes(b)))
            }
        }
    }

    /// The block record at `height` alone (no transactions).
    ///
    /// # Errors
    /// Storage failures or a corrupt record.
    pub fn read_header_and_ids(&self, height: u64) -> Result<Option<Block>, ChainError> {
        let Some(block_bytes) = self.db.get(&key(b'b', &height.to_be_bytes()))? else {
            return Ok(None);
        };
        Block::decode(&block_bytes)
            .map(Some)
            .map_err(|e| ChainError::Corrupt(format!("block {height}: {e}")))
    }

    /// The lowest height whose block and transactions this store keeps
    /// ([`crate::history`]; 1 when nothing was pruned).
    ///
    /// # Errors
    /// Storage failures or a corrupt floor record.
    pub fn history_floor(&self) -> Result<u64, ChainError> {
        crate::history::floor(&self.db)
    }

    /// The id of the block at `height`: the hash of its header, read
    /// without decoding the block's transaction ids (up to 320 KiB of
    /// them), since any peer may ask about an old height (its request
    /// budget bounds how often).
    ///
    /// # Errors
    /// Storage failures or a record too short to hold a header.
    pub fn read_block_id(&self, height: u64) -> Result<Option<BlockId>, ChainError> {
        let Some(block_bytes) = self.db.get(&key(b'b', &height.to_be_bytes()))? else {
            return Ok(None);
        };
        block_record_id(height, &block_bytes).map(Some)
    }

    /// The block at `height` with its transactions.
    ///
    /// # Errors
    /// Storage failures or a corrupt record.
    pub fn read_block(&self, height: u64) -> Result<Option<StoredBlock>, ChainError> {
        let hb = height.to_be_bytes();
        let Some(block) = self.read_header_and_ids(height)? else {
            return Ok(None);
        };
        let body = self
            .db
            .get(&key(b'x', &hb))?
            .ok_or_else(|| ChainError::Corrupt(format!("block {height}: no transactions")))?;
        let corrupt = || ChainError::Corrupt(format!("block {height}: transaction list"));
        let txs = crate::history::tx_slices(height, &body)?
            .into_iter()
            .map(|bytes| {
                Transaction::decode(bytes)
                    .map(Arc::new)
                    .map_err(|_| corrupt())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((block, txs)))
    }

    /// [`crate::engine::serve_block`] over this reader: the block `id` at
    /// `height` with its transactions, if finalized there. Compares the id
    /// (from the block record) before reading the transactions.
    ///
    /// # Errors
    /// Storage failures or a corrupt record.
    pub fn serve(&self, height: u64, id: &BlockId) -> Result<Option<StoredBlock>, ChainError> {
        match self.read_header_and_ids(height)? {
            Some(b) if b.id() == id => self.read_block(height),
            _ => Ok(None),
        }
    }
}

/// The id of a stored block record (`b` + height): the blake3 of its
/// header bytes, without decoding the transaction ids after them.
pub(crate) fn block_record_id(height: u64, record: &[u8]) -> Result<BlockId, ChainError> {
    let header = record
        .get(..crate::block::HEADER_BYTES)
        .ok_or_else(|| ChainError::Corrupt(format!("block {height}: shorter than a header")))?;
    Ok(*blake3::hash(header).as_bytes())
}

fn encode_meta(height: u64, id: &BlockId, root: &[u8; 32]) -> Vec<u8> {
    let mut meta = Vec::with_capacity(72);
    meta.extend_from_slice(&height.to_le_bytes());
    meta.extend_from_slice(id);
    meta.extend_from_slice(root);
    meta
}

fn decode_meta(meta: &[u8]) -> Result<(u64, BlockId, [u8; 32]), ChainError> {
    let meta: &[u8; 72] = meta
        .try_into()
        .map_err(|_| ChainError::Corrupt("meta record length".into()))?;
    let height = u64::from_le_bytes(meta[..8].try_into().expect("8 bytes"));
    let mut id = [0u8; 32];
    id.copy_from_slice(&meta[8..40]);
    let mut root = [0u8; 32];
    root.copy_from_slice(&meta[40..72]);
    Ok((height, id, root))
}

/// Writes one adoption slice's trie records (sorted) and the deletes of
/// the page versions it replaced. Pages are ingested as one sorted run
/// per trie level (`'t' 'p' level`); smaller groups (the few top pages,
/// the root and stale-list records) and the deletes go through one
/// write batch.
///
/// **Why a run per level:** a page key is `level ‖ prefix ‖ version`,
/// and slices are consecutive key ranges, so a slice's pages at one
/// level come after every earlier slice's pages at that level (the one
/// page on the boundary is rewritten under a newer version, which sorts
/// after the old one). The per-level runs of all slices are thus
/// disjoint and each goes straight to the last level. One run spanning
/// every level overlapped every earlier slice's run and landed a level
/// higher each time (L6, L5, … L1, then L0), leaving the adopted store
/// with data in every level: compaction rewrote it, and the engine's
/// base level stayed at L1 for the node's life.
fn write_adopted_slice(
    db: &Db,
    records: Vec<(Vec<u8>, Vec<u8>)>,
    deletes: Vec<Vec<u8>>,
    run_entries_min: usize,
) -> Result<(), ChainError> {
    // The trie level of a page record (`'t' 'p' level …`), else `None`.
    let level_of = |k: &[u8]| {
        (k.get(1) == Some(&b'p'))
            .then(|| k.get(2).copied())
            .flatten()
    };
    let mut batch = WriteBatch::new();
    for k in deletes {
        batch.delete(key(b't', &k));
    }
    // Sorted records: the pages of one level are one contiguous group.
    for group in records.chunk_by(|a, b| level_of(&a.0).is_some_and(|l| level_of(&b.0) == Some(l)))
    {
        if level_of(&group[0].0).is_some() && group.len() >= run_entries_min {
            db.ingest_sorted(group.iter().map(|(k, v)| (k, v)))?;
        } else {
            for (k, v) in group {
                batch.put(k.clone(), v.clone());
            }
        }
    }
    db.write(batch, WriteOptions::default())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::BalanceEntry;
    use strata_storage::Options;

    /// The interleaving that would leave a stale entry: a reader misses,
    /// reads the store, a commit changes the key and updates the cache,
    /// then the reader fills. The fill must be dropped.
    #[test]
    fn a_fill_that_predates_a_commit_is_dropped() {
        let cache = StateCache::new(64);
        let k = [7u8; 32];
        let Err(epoch) = cache.get(&k) else {
            panic!("an empty cache misses")
        };
        let old = Some(b"before".to_vec());
        cache.commit(vec![(k, Some(b"after".to_vec()))]);
        cache.fill(&k, &old, epoch);
        assert_eq!(cache.get(&k), Ok(Some(b"after".to_vec())));
        // With no commit in between, the fill is kept.
        let k2 = [8u8; 32];
        let Err(epoch) = cache.get(&k2) else {
            panic!("a miss")
        };
        cache.fill(&k2, &old, epoch);
        assert_eq!(cache.get(&k2), Ok(old));
    }

    /// Adoption in slices of any size builds the chain's own root; one
    /// that stopped after writing trie pages (here: a wrong root, after
    /// every slice was written) leaves records the next call deletes
    /// before it builds again.
    #[test]
    fn adopting_in_slices_builds_the_root_and_recovers_from_a_partial_build() {
        let genesis = big_genesis(3_000);
        let source_dir = tempfile::tempdir().unwrap();
        let source = Arc::new(Db::open(source_dir.path(), Options::new()).unwrap());
        let chain = DbChain::open(Arc::clone(&source), &genesis).unwrap();
        let (root, id) = (chain.state_root(), chain.last_id);
        let state: Vec<(Vec<u8>, Vec<u8>)> = source
            .scan_prefix([b's'])
            .unwrap()
            .map(|kv| kv.unwrap())
            .collect();
        assert!(state.len() >= 3_000);
        // 100: 30 slices, more than the trie's 16 retained roots, so the
        // later slices also delete the pages the earlier ones replaced.
        for slice in [100, usize::MAX] {
            let dir = tempfile::tempdir().unwrap();
            let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
            db.ingest_sorted(state.iter().cloned()).unwrap();
            let wrong = [9u8; 32];
            let err =
                DbChain::adopt_in_slices(&db, &genesis, 0, &id, &wrong, slice, 1).unwrap_err();
            assert!(err.to_string().contains("root"), "{err}");
            assert!(db.scan_prefix([b't']).unwrap().next().is_some());
            DbChain::adopt_in_slices(&db, &genesis, 0, &id, &root, slice, 1).unwrap();
            let adopted = DbChain::open(Arc::clone(&db), &genesis).unwrap();
            assert_eq!(adopted.state_root(), root, "slices of {slice}");
            assert_eq!(adopted.height(), 0);
        }
        // A fresh adoption's page runs (one per trie level per slice,
        // here from 8 pages) are disjoint: every one lands in the last
        // level, none above it.
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
        db.ingest_sorted(state.iter().cloned()).unwrap();
        DbChain::adopt_in_slices(&db, &genesis, 0, &id, &root, 100, 8).unwrap();
        let pages: Vec<_> = db
            .tables()
            .into_iter()
            .filter(|t| t.smallest.starts_with(b"tp"))
            .collect();
        assert!(pages.len() > 30, "{} page runs", pages.len());
        let last = strata_storage::limits::LEVELS - 1;
        assert!(
            pages.iter().all(|t| t.level == last),
            "levels {:?}",
            pages.iter().map(|t| t.level).collect::<Vec<_>>()
        );
        let adopted = DbChain::open(Arc::clone(&db), &genesis).unwrap();
        assert_eq!(adopted.state_root(), root);
    }

    /// A genesis with `accounts` funded (arbitrary 32-byte) accounts.
    fn big_genesis(accounts: u64) -> Genesis {
        let mut g = Genesis::devnet(1);
        g.balances = (0..accounts)
            .map(|i| BalanceEntry {
                public_key: hex::encode(blake3::hash(&i.to_le_bytes()).as_bytes()),
                balance: 1_000 + i,
            })
            .collect();
        g
    }

    // A store remembers its genesis: reopening with the same one works,
    // with another one (a changed balance) fails naming both hashes and
    // leaves the store as it was; a store without the record (an older
    // build) takes the genesis it is opened with.
    #[test]
    fn a_store_refuses_another_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
        let genesis = big_genesis(10);
        let root = DbChain::open(Arc::clone(&db), &genesis).unwrap().root;
        assert!(DbChain::open(Arc::clone(&db), &genesis).is_ok());
        let mut other = genesis.clone();
        other.balances[3].balance += 1;
        match DbChain::open(Arc::clone(&db), &other) {
            Err(ChainError::GenesisMismatch { stored, given }) => {
                assert_eq!(stored, hex::encode(genesis.hash()));
                assert_eq!(given, hex::encode(other.hash()));
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("another genesis was accepted"),
        }
        assert_eq!(DbChain::open(Arc::clone(&db), &genesis).unwrap().root, root);
        db.delete(GENESIS_KEY).unwrap();
        assert!(DbChain::open(Arc::clone(&db), &other).is_ok());
        assert!(matches!(
            DbChain::open(Arc::clone(&db), &genesis),
            Err(ChainError::GenesisMismatch { .. })
        ));
    }

    // The bulk-ingested genesis has the root of the same accounts applied
    // to the trie in ordinary batches and the root the streaming builder
    // computes; it reopens at height 0 with that root, and its accounts
    // read back.
    #[test]
    fn bulk_genesis_has_the_root_of_incremental_writes_and_of_the_stream() {
        let mut genesis = big_genesis(5_000);
        genesis.synthetic = Some(crate::synthetic::SyntheticAccounts {
            seed: "db-chain-test".into(),
            count: 3_000,
            balance: 77,
        });
        let entries = genesis.state_entries(2).unwrap();
        assert_eq!(entries.len(), 8_000);
        let streamed = merkle::root_of_sorted(
            entries
                .iter()
                .map(|(k, a)| (*k, merkle::value_hash(&a.encode()))),
        )
        .unwrap();
        let mut incremental = Trie::open(merkle::MemStore::new(), TrieConfig::default()).unwrap();
        for chunk in entries.chunks(700) {
            let mut batch = merkle::Batch::new();
            for (k, a) in chunk {
                batch.put_hashed(*k, merkle::value_hash(&a.encode()));
            }
            incremental.apply(&batch.into_sorted()).unwrap();
        }
        assert_eq!(incremental.root(), streamed);

        let dir = tempfile::tempdir().unwrap();
        {
            let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
            let chain = DbChain::open(db, &genesis).unwrap();
            assert_eq!(chain.state_root(), streamed);
        }
        let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
        let reopened = DbChain::open(db, &genesis).unwrap();
        assert_eq!(reopened.state_root(), streamed);
        assert_eq!(reopened.height(), 0);
        let usage = reopened.reader().usage().unwrap();
        let of = |ns: char| usage.iter().find(|u| u.namespace == ns).unwrap().clone();
        assert_eq!(of('s').entries, 8_000);
        assert_eq!(of('s').value_bytes, 8_000 * 16, "an account is 16 bytes");
        assert_eq!(of('m').entries, 1);
        assert!(of('t').entries > 8_000 / 16, "pages for 8,000 leaves");
        assert_eq!(of('b').entries, 0);
        let pk: PublicKey = *blake3::hash(&4_999u64.to_le_bytes()).as_bytes();
        assert_eq!(reopened.account(&pk).unwrap().balance, 5_999);
        let synthetic = genesis
            .account_key(crate::genesis::DEVNET_ACCOUNTS as u64 + 2_999)
            .unwrap();
        use crate::tx::TxSigner;
        assert_eq!(
            reopened.account(&synthetic.public_key()).unwrap().balance,
            77
        );
        // A proof of a synthetic account checks against the root.
        let key = state::account_key(&synthetic.public_key());
        let proven = reopened.reader().prove(&key).unwrap();
        assert_eq!(proven.root, streamed);
        assert!(merkle::verify_path(
            &streamed,
            &key,
            proven.value.as_deref().map(merkle::value_hash).as_ref(),
            &proven.proof
        ));
    }

    /// A WAL whose appends fail once `fail` is set (ENOSPC).
    #[derive(Debug)]
    struct FailingWal {
        inner: Box<dyn strata_storage::wal::LogFile>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl strata_storage::wal::LogFile for FailingWal {
        fn append(&self, buf: &[u8]) -> std::io::Result<()> {
            if self.fail.load(std::sync::atomic::Ordering::Acquire) {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            self.inner.append(buf)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.inner.sync()
        }
    }

    /// Regression (issue 18, item 3): the trie moved its root forward when
    /// it handed its pages over, before the block's batch was written; a
    /// failed write left the chain's trie ahead of what was on disk. Now
    /// the trie installs a staged version only after the write succeeded.
    #[test]
    fn a_failed_commit_write_leaves_the_trie_at_the_committed_root() {
        use crate::engine::Chain;
        use crate::genesis::devnet_account_key;
        use crate::tx::{TxBody, TxKind};

        let genesis = Genesis::devnet(1);
        let dir = tempfile::tempdir().unwrap();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = Arc::clone(&fail);
        let options = Options::new().wal_wrapper(Arc::new(move |inner| {
            Box::new(FailingWal {
                inner,
                fail: Arc::clone(&f),
            }) as Box<dyn strata_storage::wal::LogFile>
        }));
        let db = Arc::new(Db::open(dir.path(), options).unwrap());
        let mut chain = DbChain::open(db, &genesis).unwrap();
        let root = chain.state_root();
        let key = devnet_account_key(0);
        let tx = Arc::new(
            TxBody {
                chain_id: genesis.chain_id,
                sender: key.verifying_key().to_bytes(),
                nonce: 0,
                fee: 1,
                kind: TxKind::Transfer {
                    to: [5; 32],
                    amount: 7,
                },
            }
            .sign(&key)
            .unwrap(),
        );
        let diff = chain
            .execute(BlockEnv::default(), std::slice::from_ref(&tx))
            .unwrap();
        let block = Block::new(1, chain.last_block_id(), root, [0; 32], 0, vec![*tx.id()]).unwrap();
        fail.store(true, std::sync::atomic::Ordering::Release);
        assert!(chain.commit(&block, &[tx], diff).is_err());
        assert_eq!(chain.height(), 0);
        assert_eq!(chain.state_root(), root);
        assert_eq!(
            chain.trie.root(),
            root,
            "the trie moved past what is on disk"
        );
        assert_eq!(chain.trie.version(), 1, "genesis is version 1");
    }
}
