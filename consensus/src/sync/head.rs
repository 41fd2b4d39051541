//! Choosing the snapshot to sync: the head a weighted quorum vouches for.

use std::collections::{BTreeMap, BTreeSet};

use super::limits::{HEAD_QUORUM_DEN, HEAD_QUORUM_NUM};
use super::message::SnapshotHead;

/// The snapshot head to sync from the `Heads` answers of validators:
/// `(peer, weight, heads)`, with `total_weight` the weight of the whole
/// validator set (not only of those who answered). Returns the highest
/// head — the whole `(height, block_id, state_root, entries)` — reported
/// by peers holding more than `HEAD_QUORUM_NUM / HEAD_QUORUM_DEN` (2/3) of
/// `total_weight`, or `None`.
///
/// **Why two thirds.** The state root is what every chunk is checked
/// against, so a forged head means ingesting a forged state: safety comes
/// first, liveness second (a joining node can wait for more answers). With
/// a quorum over 2/3, a forged head needs faulty weight over 2/3 behind
/// it: twice the 1/3 most BFT protocols assume, and more than the
/// Byzantine weight the simulator exercises (up to 35 %, see
/// docs/consensus.md). Any such quorum contains honest weight, and honest
/// nodes only announce snapshots of finalized heights. The price: over 1/3 of the weight
/// silent or behind stalls the choice, which waiting for more answers
/// (or an older, more widely served height) resolves. `entries` is part
/// of what must agree because the root does not commit to it.
///
/// Each peer counts once (its first answer) and each of its heads once.
/// If two different heads at the same height both reach the quorum, more
/// than 1/3 of the weight reported both: the assumption is broken and
/// nothing is chosen.
///
/// ```
/// use strata_consensus::sync::{choose_head, SnapshotHead};
/// let head = |height, root| SnapshotHead { height, block_id: [height as u8; 32], state_root: [root; 32], entries: 10 };
/// let answers = vec![
///     ("a", 40, vec![head(100, 1), head(200, 2)]),
///     ("b", 30, vec![head(100, 1), head(200, 2)]),
///     ("c", 30, vec![head(100, 1), head(200, 9)]), // a liar at 200
/// ];
/// // 200 has 70 of 100 (> 2/3): chosen.
/// assert_eq!(choose_head(&answers, 100), Some(head(200, 2)));
/// // Out of 120, 200 has 70 (not > 80) but 100 has 100.
/// assert_eq!(choose_head(&answers, 120), Some(head(100, 1)));
/// ```
pub fn choose_head<P: Ord>(
    answers: &[(P, u64, Vec<SnapshotHead>)],
    total_weight: u64,
) -> Option<SnapshotHead> {
    let mut seen = BTreeSet::new();
    let mut support: BTreeMap<SnapshotHead, u128> = BTreeMap::new();
    for (peer, weight, heads) in answers {
        if !seen.insert(peer) {
            continue;
        }
        let distinct: BTreeSet<&SnapshotHead> = heads.iter().collect();
        for head in distinct {
            *support.entry(*head).or_default() += u128::from(*weight);
        }
    }
    let quorum = |weight: u128| {
        weight * u128::from(HEAD_QUORUM_DEN)
            > u128::from(total_weight) * u128::from(HEAD_QUORUM_NUM)
    };
    // Heads sort by height first: walk down from the highest.
    let mut chosen: Option<SnapshotHead> = None;
    for (head, weight) in support.iter().rev() {
        if let Some(c) = chosen {
            if c.height != head.height {
                break;
            }
        }
        if total_weight == 0 || !quorum(*weight) {
            continue;
        }
        if chosen.is_some() {
            // Two quorums at one height.
            return None;
        }
        chosen = Some(*head);
    }
    chosen
}
