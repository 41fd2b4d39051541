//! Why a run missed its liveness bound, as far as the simulator can tell
//! from outside the engines: which blocks the stuck honest nodes prefer
//! and who proposed them, and whether a stuck node ever received the
//! block the others finalized. Two stalls have a name because seeds found
//! them in the engine (docs/consensus.md, "Adversaries"); anything else is
//! [`Stall::Other`].

use std::collections::HashMap;

use crate::block::BlockId;

/// A diagnosed liveness failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stall {
    /// Honest nodes at `height` are split between blocks that one
    /// validator proposed (an equivocating proposer's two, or twins'): the
    /// engine ranks proposals by proposer, so no tie-break separates them,
    /// and a split that no poll can settle stays for good.
    SameProposerSplit {
        /// Height being decided.
        height: u64,
        /// The validator that proposed the blocks.
        proposer: usize,
        /// Each preferred block and how many stuck honest nodes prefer it.
        preferences: Vec<(BlockId, usize)>,
    },
    /// Honest node `node` pulled but never received the block the other
    /// honest nodes finalized at `height` (or, when none did, a block other
    /// stuck nodes prefer), so it cannot vote for it; `asked` lists the
    /// validators it pulled it from, one entry per pull.
    BlockNeverReceived {
        /// The stuck node.
        node: usize,
        /// The height it is stuck at.
        height: u64,
        /// The block the others finalized there.
        block: BlockId,
        /// Validators it asked for the block, one entry per ask.
        asked: Vec<usize>,
    },
    /// Something else.
    Other,
}

/// What the simulator records during a run to diagnose a stall: bounded
/// by the run's messages (a few thousand blocks and pulls).
#[derive(Default)]
pub(super) struct Evidence {
    /// Proposer (validator index) of every block seen on the wire or
    /// proposed twice.
    pub proposer: HashMap<BlockId, usize>,
    /// Per (honest slot, its incarnation, block): validators it sent a
    /// pull to.
    pub pulls: HashMap<(usize, u32, BlockId), Vec<usize>>,
    /// (honest slot, incarnation, block) whose block data reached that
    /// incarnation's engine (a restarted node forgets what it received).
    pub received: HashMap<(usize, u32, BlockId), ()>,
}

/// One stuck honest node: its slot and incarnation, the height it is
/// deciding, and its preference there.
pub(super) struct Stuck {
    pub slot: usize,
    pub epoch: u32,
    pub deciding: u64,
    pub preference: Option<BlockId>,
}

impl Evidence {
    /// Diagnoses a run whose honest nodes are `stuck` (those at the lowest
    /// height), given what every honest node finalized.
    pub fn diagnose(&self, stuck: &[Stuck], finalized: &HashMap<u64, BlockId>) -> Stall {
        let Some(first) = stuck.first() else {
            return Stall::Other;
        };
        let height = first.deciding;
        // The blocks the stuck nodes could settle on: the one finalized
        // there, or else those they prefer, the most preferred first. A node
        // that never received one of them cannot vote for it.
        let mut counts: Vec<(BlockId, usize)> = Vec::new();
        for p in stuck.iter().filter_map(|s| s.preference) {
            match counts.iter_mut().find(|(b, _)| *b == p) {
                Some((_, n)) => *n += 1,
                None => counts.push((p, 1)),
            }
        }
        counts.sort_by_key(|(b, n)| (std::cmp::Reverse(*n), *b));
        let targets: Vec<BlockId> = match finalized.get(&height) {
            Some(b) => vec![*b],
            None => counts.iter().map(|(b, _)| *b).collect(),
        };
        for block in targets {
            let never = stuck.iter().find(|s| {
                s.preference != Some(block)
                    && !self.received.contains_key(&(s.slot, s.epoch, block))
                    && self.pulls.contains_key(&(s.slot, s.epoch, block))
            });
            if let Some(s) = never {
                return Stall::BlockNeverReceived {
                    node: s.slot,
                    height,
                    block,
                    asked: self.pulls[&(s.slot, s.epoch, block)].clone(),
                };
            }
        }
        let proposers: Vec<Option<usize>> = counts
            .iter()
            .map(|(b, _)| self.proposer.get(b).copied())
            .collect();
        match proposers[..] {
            [Some(a), ref rest @ ..] if !rest.is_empty() && rest.iter().all(|p| *p == Some(a)) => {
                counts.sort();
                Stall::SameProposerSplit {
                    height,
                    proposer: a,
                    preferences: counts,
                }
            }
            _ => Stall::Other,
        }
    }
}
