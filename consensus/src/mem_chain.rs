//! An in-memory [`Chain`] for tests and the simulator: the finalized state
//! as a sorted map, blocks in a vector. Its state root is the sparse merkle
//! root of the state (`strata_storage::merkle`, state keys used directly as
//! paths since they are already blake3 hashes), so simulated and real nodes
//! agree on roots.

use crate::state::BlockEnv;
use std::collections::BTreeMap;
use std::sync::Arc;

use strata_storage::merkle;

use crate::block::{Block, BlockId};
use crate::engine::{Chain, LocalFault, StoredBlock};
use crate::genesis::Genesis;
use crate::state::{execute, read_account, Account, ExecError, StateDiff, StateKey};
use crate::tx::{PublicKey, Transaction};

/// A finalized chain held in memory.
#[derive(Clone, Debug)]
pub struct MemChain {
    chain_id: u64,
    state: BTreeMap<StateKey, Vec<u8>>,
    root: [u8; 32],
    blocks: Vec<(Block, Vec<Arc<Transaction>>)>,
}

/// The sparse merkle root over a state map: each entry is a leaf at path =
/// its (already hashed) state key with `value_hash(value)`. Streaming over
/// the sorted map, one pass.
pub fn state_commitment(state: &BTreeMap<StateKey, Vec<u8>>) -> [u8; 32] {
    merkle::root_of_sorted(state.iter().map(|(k, v)| (*k, merkle::value_hash(v))))
        .expect("a BTreeMap iterates in strictly increasing key order")
}

impl MemChain {
    /// The chain at genesis.
    ///
    /// # Panics
    /// If the genesis is invalid (validate it first).
    pub fn new(genesis: &Genesis) -> MemChain {
        let diff = genesis.initial_state().expect("validated genesis");
        let state: BTreeMap<StateKey, Vec<u8>> = diff
            .changes
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let root = state_commitment(&state);
        MemChain {
            chain_id: genesis.chain_id,
            state,
            root,
            blocks: Vec::new(),
        }
    }

    /// The finalized state.
    pub fn state(&self) -> &BTreeMap<StateKey, Vec<u8>> {
        &self.state
    }

    /// Ids of all finalized blocks, by height from 1.
    pub fn block_ids(&self) -> Vec<BlockId> {
        self.blocks.iter().map(|(b, _)| *b.id()).collect()
    }
}

impl Chain for MemChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn height(&self) -> u64 {
        self.blocks.len() as u64
    }

    fn last_block_id(&self) -> BlockId {
        self.blocks.last().map_or([0; 32], |(b, _)| *b.id())
    }

    fn state_root(&self) -> [u8; 32] {
        self.root
    }

    fn account(&self, account: &PublicKey) -> Result<Account, LocalFault> {
        read_account(&self.state, account).map_err(|e| LocalFault(e.to_string()))
    }

    fn execute(&self, env: BlockEnv, txs: &[Arc<Transaction>]) -> Result<StateDiff, ExecError> {
        execute(&self.state, env, txs)
    }

    fn commit(
        &mut self,
        block: &Block,
        txs: &[Arc<Transaction>],
        diff: StateDiff,
    ) -> Result<(), LocalFault> {
        if block.height() != self.height() + 1 || block.header().parent != self.last_block_id() {
            return Err(LocalFault(format!(
                "block at height {} does not extend the chain",
                block.height()
            )));
        }
        for (k, v) in diff.changes {
            match v {
                Some(v) => self.state.insert(k, v),
                None => self.state.remove(&k),
            };
        }
        self.root = state_commitment(&self.state);
        self.blocks.push((block.clone(), txs.to_vec()));
        Ok(())
    }

    fn finalized(&self, height: u64) -> Result<Option<StoredBlock>, LocalFault> {
        let Some(i) = height.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
            return Ok(None);
        };
        Ok(self.blocks.get(i).cloned())
    }
}
