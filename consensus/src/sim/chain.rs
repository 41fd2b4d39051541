//! The chain a simulated node runs: the in-memory model ([`MemChain`]) or
//! the node's own [`DbChain`] over a storage [`Db`] in a temporary
//! directory, so the code that commits blocks in production (trie staging,
//! the block's one synced batch, reopening after a crash, the recorded
//! revealed preference) is the code the simulator checks.

use crate::state::BlockEnv;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata_storage::{Db, Options};

use crate::block::{Block, BlockId};
use crate::db_chain::DbChain;
use crate::engine::{Chain, LocalFault, StoredBlock};
use crate::genesis::Genesis;
use crate::mem_chain::MemChain;
use crate::state::{burned_key, read_account, Account, ExecError, StateDiff};
use crate::tx::{PublicKey, Transaction};

/// Which chain store the simulated nodes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChainStore {
    /// In memory ([`MemChain`]): fast; the default.
    #[default]
    Memory,
    /// The node's [`DbChain`] over a `Db` in a temporary directory per
    /// node, removed at the end of the run. A crash closes the `Db` and a
    /// restart reopens it, as a node's process does.
    Db,
}

/// One node's chain.
pub(super) enum SimChain {
    Mem(MemChain),
    Db(Box<DbNode>),
}

/// A [`DbChain`] and its directory. Fields drop in order: the store is
/// closed before its directory is removed.
pub(super) struct DbNode {
    /// `None` only while a restart reopens it.
    chain: Option<DbChain>,
    dir: TempDir,
}

impl DbNode {
    fn get(&self) -> &DbChain {
        self.chain.as_ref().expect("open between restarts")
    }

    fn get_mut(&mut self) -> &mut DbChain {
        self.chain.as_mut().expect("open between restarts")
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Numbers the temporary directories of this process.
static DIRS: AtomicU64 = AtomicU64::new(0);

impl SimChain {
    /// A fresh chain at `genesis` in the store `kind`.
    ///
    /// # Panics
    /// When the temporary directory or the `Db` cannot be created (the
    /// simulator's own environment, not a simulated fault).
    pub(super) fn new(kind: ChainStore, genesis: &Genesis) -> SimChain {
        match kind {
            ChainStore::Memory => SimChain::Mem(MemChain::new(genesis)),
            ChainStore::Db => {
                let dir = TempDir(std::env::temp_dir().join(format!(
                    "strata-sim-{}-{}",
                    std::process::id(),
                    DIRS.fetch_add(1, Ordering::Relaxed)
                )));
                SimChain::Db(Box::new(DbNode {
                    chain: Some(open(&dir.0, genesis)),
                    dir,
                }))
            }
        }
    }

    /// What a process crash and restart leave: the `Db` is closed and
    /// opened again from its files (nothing to do in memory, where the
    /// committed chain simply stays).
    pub(super) fn reopen(&mut self, genesis: &Genesis) {
        if let SimChain::Db(d) = self {
            // Closed first: one `Db` at a time may hold the directory.
            d.chain = None;
            d.chain = Some(open(&d.dir.0, genesis));
        }
    }

    /// The balance of `key` plus nothing else: for the supply check.
    pub(super) fn balance(&self, key: &PublicKey) -> u64 {
        match self {
            SimChain::Mem(c) => read_account(c.state(), key).map_or(0, |a| a.balance),
            SimChain::Db(d) => d.get().account(key).map_or(0, |a| a.balance),
        }
    }

    /// Fees burned so far: for the supply check.
    pub(super) fn burned(&self) -> u64 {
        let raw = match self {
            SimChain::Mem(c) => c.state().get(&burned_key()).cloned(),
            SimChain::Db(d) => d.get().state_value(&burned_key()).ok().flatten(),
        };
        raw.map_or(0, |b| {
            u64::from_le_bytes(b.as_slice().try_into().unwrap_or([0; 8]))
        })
    }

    /// Every finalized block id, height 1 first.
    pub(super) fn block_ids(&self) -> Vec<BlockId> {
        match self {
            SimChain::Mem(c) => c.block_ids(),
            SimChain::Db(d) => (1..=d.get().height())
                .map(|h| d.get().finalized_id(h).ok().flatten().unwrap_or([0; 32]))
                .collect(),
        }
    }

    /// Records a revealed preference where the node does (the `Db`); in
    /// memory the world keeps it.
    pub(super) fn record_revealed(&self, height: u64, block: &BlockId) {
        if let SimChain::Db(d) = self {
            d.get()
                .record_revealed(height, block)
                .expect("the simulator's temporary store failed");
        }
    }

    /// The preference recorded before a restart, if the store keeps it.
    pub(super) fn recorded_revealed(&self) -> Option<Option<(u64, BlockId)>> {
        match self {
            SimChain::Mem(_) => None,
            SimChain::Db(d) => Some(
                d.get()
                    .revealed()
                    .expect("the simulator's temporary store failed"),
            ),
        }
    }
}

fn open(dir: &Path, genesis: &Genesis) -> DbChain {
    let db = Db::open(dir, Options::new()).expect("the simulator's temporary store opens");
    DbChain::open(Arc::new(db), genesis).expect("the simulator's chain opens")
}

impl Chain for SimChain {
    fn chain_id(&self) -> u64 {
        match self {
            SimChain::Mem(c) => c.chain_id(),
            SimChain::Db(d) => d.get().chain_id(),
        }
    }
    fn height(&self) -> u64 {
        match self {
            SimChain::Mem(c) => c.height(),
            SimChain::Db(d) => d.get().height(),
        }
    }
    fn last_block_id(&self) -> BlockId {
        match self {
            SimChain::Mem(c) => c.last_block_id(),
            SimChain::Db(d) => d.get().last_block_id(),
        }
    }
    fn state_root(&self) -> [u8; 32] {
        match self {
            SimChain::Mem(c) => c.state_root(),
            SimChain::Db(d) => d.get().state_root(),
        }
    }
    fn account(&self, account: &PublicKey) -> Result<Account, LocalFault> {
        match self {
            SimChain::Mem(c) => c.account(account),
            SimChain::Db(d) => d.get().account(account),
        }
    }
    fn execute(&self, env: BlockEnv, txs: &[Arc<Transaction>]) -> Result<StateDiff, ExecError> {
        match self {
            SimChain::Mem(c) => c.execute(env, txs),
            SimChain::Db(d) => d.get().execute(env, txs),
        }
    }
    fn commit(
        &mut self,
        block: &Block,
        txs: &[Arc<Transaction>],
        diff: StateDiff,
    ) -> Result<(), LocalFault> {
        match self {
            SimChain::Mem(c) => c.commit(block, txs, diff),
            SimChain::Db(d) => d.get_mut().commit(block, txs, diff),
        }
    }
    fn finalized(&self, height: u64) -> Result<Option<StoredBlock>, LocalFault> {
        match self {
            SimChain::Mem(c) => c.finalized(height),
            SimChain::Db(d) => d.get().finalized(height),
        }
    }
    fn finalized_block(&self, height: u64) -> Result<Option<Block>, LocalFault> {
        match self {
            SimChain::Mem(c) => c.finalized_block(height),
            SimChain::Db(d) => d.get().finalized_block(height),
        }
    }
    fn finalized_id(&self, height: u64) -> Result<Option<BlockId>, LocalFault> {
        match self {
            SimChain::Mem(c) => c.finalized_id(height),
            SimChain::Db(d) => d.get().finalized_id(height),
        }
    }
}
