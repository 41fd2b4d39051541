//! The mempool: transactions waiting for a block, bounded in count, bytes and
//! per sender, priced by fee.
//!
//! Indexes:
//! - `by_id`: the ordered robin-hood table keyed by transaction id — the
//!   primary store, iterable in id order for free (what pull-gossip and
//!   reconciliation want).
//! - `by_sender`: per sender, nonce → id (a `BTreeMap`, so a sender's run of
//!   nonces is ordered and contiguity is cheap to follow).
//! - `by_fee`: `(fee, id)` ascending: the cheapest transaction is the first
//!   to be evicted when the pool is full.
//! - `arrivals`: arrival order for TTL expiry (lazy deletion; compacted when
//!   it holds more than twice the pool's entries).
//!
//! Policy, named so it can be argued with:
//! - A transaction whose nonce is below the sender's account nonce is stale;
//!   one more than `per_sender_max` ahead of it is refused (it cannot be
//!   executed soon and would only occupy space).
//! - Replacing `(sender, nonce)` needs a fee at least
//!   `replace_fee_bump_percent` higher than the one it replaces.
//! - When the pool is full, a newcomer must pay strictly more than the
//!   cheapest resident, which is evicted: pushing others out costs real fees.
//! - Transactions older than `ttl_ms` are dropped by [`Mempool::expire`].
//!
//! Time is passed in (`now_ms`); the mempool reads no clock.
//!
//! # Example
//! ```
//! use strata_consensus::mempool::{Mempool, MempoolConfig};
//! use strata_consensus::tx::{signing_key_from_seed, TxBody, TxKind};
//!
//! let key = signing_key_from_seed(&[1; 32]);
//! let tx = TxBody {
//!     chain_id: 1,
//!     sender: key.verifying_key().to_bytes(),
//!     nonce: 0,
//!     fee: 5,
//!     kind: TxKind::Transfer { to: [2; 32], amount: 10 },
//! }
//! .sign(&key)
//! .unwrap();
//! let mut pool = Mempool::new(MempoolConfig::default());
//! pool.insert(tx.clone(), 0, 1_000).unwrap();
//! assert!(pool.contains(tx.id()));
//! let block = pool.build_block(100, |_| (1_000, 0));
//! assert_eq!(block, vec![*tx.id()]);
//! ```

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use strata_storage::ordered_table::OrderedTable;
use thiserror::Error;

use crate::tx::{PublicKey, Transaction, TxId, TxKind};

/// Mempool limits and policy. Every field documents its default.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Most transactions held. Default 1,000,000.
    pub txs_max: usize,
    /// Most encoded bytes held. Default 512 MiB.
    pub bytes_max: usize,
    /// Most transactions per sender, and how far past the account nonce a
    /// nonce may be. Default 1,024.
    pub per_sender_max: usize,
    /// Fee increase, in percent, needed to replace a pending transaction with
    /// the same sender and nonce. Default 10.
    pub replace_fee_bump_percent: u64,
    /// Time after which a pending transaction is dropped, in milliseconds.
    /// Default 600,000 (10 minutes).
    pub ttl_ms: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            txs_max: 1_000_000,
            bytes_max: 512 << 20,
            per_sender_max: 1024,
            replace_fee_bump_percent: 10,
            ttl_ms: 600_000,
        }
    }
}

/// Why a transaction was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Reject {
    /// Already pending.
    #[error("duplicate transaction")]
    Duplicate,
    /// The nonce was already used by a committed transaction.
    #[error("stale nonce {nonce}: the account is at nonce {account_nonce}")]
    StaleNonce {
        /// The transaction's nonce.
        nonce: u64,
        /// The account's next nonce.
        account_nonce: u64,
    },
    /// The nonce is too far ahead of the account's.
    #[error("nonce {nonce} is too far ahead of the account nonce {account_nonce}")]
    NonceTooFarAhead {
        /// The transaction's nonce.
        nonce: u64,
        /// The account's next nonce.
        account_nonce: u64,
    },
    /// A transaction with this sender and nonce is pending and the fee does
    /// not beat it by the required margin.
    #[error("replacement fee {fee} below the required {required}")]
    ReplacementUnderpriced {
        /// Offered fee.
        fee: u64,
        /// Fee needed.
        required: u64,
    },
    /// The sender already has `per_sender_max` pending transactions.
    #[error("sender has too many pending transactions")]
    SenderFull,
    /// The pool is full and the fee does not beat the cheapest resident.
    #[error("mempool full: fee {fee} does not beat the lowest pending fee {lowest}")]
    PoolFull {
        /// Offered fee.
        fee: u64,
        /// Lowest pending fee.
        lowest: u64,
    },
    /// The transaction alone is larger than the pool's byte budget.
    #[error("transaction larger than the mempool byte budget")]
    TooLarge,
}

/// What an admitted transaction displaced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// The pending transaction with the same sender and nonce it replaced.
    pub replaced: Option<TxId>,
    /// Transactions evicted (lowest fees first) to make room.
    pub evicted: Vec<TxId>,
}

struct Entry {
    tx: Arc<Transaction>,
    arrived_ms: u64,
}

/// Transactions the id table holds before its first growth. Sized for
/// the pool's usual working set, not its limit: a table for `txs_max`
/// (1 M by default) is ~90 MB written at start (a devnet node's resident
/// memory at start: 157 MB with it, 65 MB without), and its few thousand
/// live entries would be spread over all those pages. Growth is one
/// ordered pass, rare and amortized. (Devnet throughput was the same
/// either way, within noise.)
pub const BY_ID_INITIAL_CAPACITY: usize = 65_536;

/// The pool of pending transactions. See the [module docs](self).
pub struct Mempool {
    config: MempoolConfig,
    by_id: OrderedTable<Entry>,
    by_sender: HashMap<PublicKey, BTreeMap<u64, TxId>>,
    by_fee: BTreeSet<(u64, TxId)>,
    arrivals: VecDeque<(u64, TxId)>,
    bytes: usize,
}

impl Mempool {
    /// An empty pool. The id table starts sized for
    /// [`BY_ID_INITIAL_CAPACITY`] transactions (or `txs_max`, if smaller)
    /// and doubles as the pool fills.
    pub fn new(config: MempoolConfig) -> Self {
        assert!(
            config.txs_max > 0 && config.per_sender_max > 0,
            "mempool limits must be positive"
        );
        Mempool {
            by_id: OrderedTable::with_capacity(config.txs_max.min(BY_ID_INITIAL_CAPACITY)),
            by_sender: HashMap::new(),
            by_fee: BTreeSet::new(),
            arrivals: VecDeque::new(),
            bytes: 0,
            config,
        }
    }

    /// Pending transactions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Encoded bytes pending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when `id` is pending.
    pub fn contains(&self, id: &TxId) -> bool {
        self.by_id.contains_key(id)
    }

    /// The pending transaction `id`.
    pub fn get(&self, id: &TxId) -> Option<&Arc<Transaction>> {
        self.by_id.get(id).map(|e| &e.tx)
    }

    /// Hints the id table to load `id`'s slot (for batch ingest: call it a
    /// few transactions ahead of `insert`).
    pub fn prefetch(&self, id: &TxId) {
        self.by_id.prefetch(id);
    }

    /// Pending transactions in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Transaction>> {
        self.by_id.iter().map(|(_, e)| &e.tx)
    }

    /// Admits a transaction whose signature was already verified.
    /// `account_nonce` is the sender's next nonce in the finalized state.
    ///
    /// # Errors
    /// A [`Reject`] saying why it was refused; the pool is then unchanged.
    pub fn insert(
        &mut self,
        tx: Transaction,
        account_nonce: u64,
        now_ms: u64,
    ) -> Result<Admitted, Reject> {
        let id = *tx.id();
        if self.by_id.contains_key(&id) {
            return Err(Reject::Duplicate);
        }
        let (sender, nonce, fee) = (*tx.sender(), tx.nonce(), tx.fee());
        if nonce < account_nonce {
            return Err(Reject::StaleNonce {
                nonce,
                account_nonce,
            });
        }
        if nonce - account_nonce >= self.config.per_sender_max as u64 {
            return Err(Reject::NonceTooFarAhead {
                nonce,
                account_nonce,
            });
        }
        let size = tx.encoded().len();
        if size > self.config.bytes_max {
            return Err(Reject::TooLarge);
        }
        // One lookup of the sender's run serves both checks below.
        let (same_nonce, sender_pending) = match self.by_sender.get(&sender) {
            Some(run) => (run.get(&nonce).copied(), run.len()),
            None => (None, 0),
        };
        if let Some(old) = same_nonce {
            let old_fee = self.by_id.get(&old).map_or(0, |e| e.tx.fee());
            let bump = old_fee.saturating_mul(self.config.replace_fee_bump_percent) / 100;
            let required = old_fee.saturating_add(bump.max(1));
            if fee < required {
                return Err(Reject::ReplacementUnderpriced { fee, required });
            }
        } else if sender_pending >= self.config.per_sender_max {
            return Err(Reject::SenderFull);
        }

        // Room: a replacement frees its predecessor's place first. Then evict
        // the cheapest until the newcomer fits, refusing if it is not
        // strictly better paid than each one it would push out. Check before
        // evicting anything, so a refusal leaves the pool unchanged.
        let freed_bytes = same_nonce
            .and_then(|old| self.by_id.get(&old))
            .map_or(0, |e| e.tx.encoded().len());
        let freed_count = usize::from(same_nonce.is_some());
        let mut count_after = self.len() - freed_count + 1;
        let mut bytes_after = self.bytes - freed_bytes + size;
        let mut victims = Vec::new();
        for &(victim_fee, victim) in self.by_fee.iter() {
            if count_after <= self.config.txs_max && bytes_after <= self.config.bytes_max {
                break;
            }
            if Some(victim) == same_nonce {
                continue;
            }
            if victim_fee >= fee {
                return Err(Reject::PoolFull {
                    fee,
                    lowest: victim_fee,
                });
            }
            let victim_bytes = self.by_id.get(&victim).map_or(0, |e| e.tx.encoded().len());
            count_after -= 1;
            bytes_after -= victim_bytes;
            victims.push(victim);
        }

        let replaced = same_nonce.inspect(|old| {
            self.remove(old);
        });
        for victim in &victims {
            self.remove(victim);
        }
        self.by_sender.entry(sender).or_default().insert(nonce, id);
        self.by_fee.insert((fee, id));
        self.arrivals.push_back((now_ms, id));
        self.bytes += size;
        self.by_id.insert(
            id,
            Entry {
                tx: Arc::new(tx),
                arrived_ms: now_ms,
            },
        );
        if self.arrivals.len() > 2 * self.config.txs_max {
            self.compact_arrivals();
        }
        debug_assert!(self.len() <= self.config.txs_max && self.bytes <= self.config.bytes_max);
        Ok(Admitted {
            replaced,
            evicted: victims,
        })
    }

    /// Removes `id` from every index, returning it.
    pub fn remove(&mut self, id: &TxId) -> Option<Arc<Transaction>> {
        let entry = self.by_id.remove(id)?;
        let tx = entry.tx;
        self.bytes -= tx.encoded().len();
        self.by_fee.remove(&(tx.fee(), *id));
        if let Some(nonces) = self.by_sender.get_mut(tx.sender()) {
            nonces.remove(&tx.nonce());
            if nonces.is_empty() {
                self.by_sender.remove(tx.sender());
            }
        }
        Some(tx)
    }

    /// Drops transactions that arrived `ttl_ms` or more before `now_ms`,
    /// returning their ids.
    pub fn expire(&mut self, now_ms: u64) -> Vec<TxId> {
        let mut expired = Vec::new();
        while let Some(&(arrived_ms, id)) = self.arrivals.front() {
            if arrived_ms.saturating_add(self.config.ttl_ms) > now_ms {
                break;
            }
            self.arrivals.pop_front();
            // Skip stale arrival records (removed, or removed and re-added).
            if self
                .by_id
                .get(&id)
                .is_some_and(|e| e.arrived_ms == arrived_ms)
            {
                self.remove(&id);
                expired.push(id);
            }
        }
        expired
    }

    /// After a block is final: removes the transactions it included and any
    /// pending transaction its state changes made stale. `account_nonce`
    /// gives each touched sender's next nonce in the new state.
    pub fn remove_committed(
        &mut self,
        included: &[TxId],
        account_nonce: impl Fn(&PublicKey) -> u64,
    ) -> usize {
        let mut removed = 0;
        let mut senders = Vec::new();
        for id in included {
            if let Some(tx) = self.remove(id) {
                senders.push(*tx.sender());
                removed += 1;
            }
        }
        // Senders of included transactions we never saw may have advanced
        // too, but their pending entries (if any) are found here only when
        // they share a sender with something we held; the rest go stale and
        // are refused at block building and dropped by TTL.
        senders.sort_unstable();
        senders.dedup();
        for sender in senders {
            let next = account_nonce(&sender);
            let stale: Vec<TxId> = self
                .by_sender
                .get(&sender)
                .map(|m| m.range(..next).map(|(_, id)| *id).collect())
                .unwrap_or_default();
            for id in stale {
                self.remove(&id);
                removed += 1;
            }
        }
        removed
    }

    /// Picks up to `txs_max` transactions for a block, returned in ascending
    /// id order (the block's canonical order). Higher fees first, while each
    /// sender's nonces stay contiguous from its account nonce and its balance
    /// covers every fee and transfer chosen. `account` gives `(balance,
    /// nonce)` in the finalized state.
    ///
    /// Cost: O(S + k log S) for S pending senders and k chosen transactions;
    /// no sort of the pool.
    pub fn build_block(
        &self,
        txs_max: usize,
        account: impl Fn(&PublicKey) -> (u64, u64),
    ) -> Vec<TxId> {
        // Max-heap of each sender's next executable transaction by fee (ties
        // by id for determinism).
        let mut heads: BinaryHeap<(u64, TxId, PublicKey, u64)> = BinaryHeap::new();
        let mut budget: HashMap<PublicKey, u64> = HashMap::new();
        for (sender, nonces) in &self.by_sender {
            let (balance, nonce) = account(sender);
            if let Some(id) = nonces.get(&nonce) {
                if let Some(entry) = self.by_id.get(id) {
                    heads.push((entry.tx.fee(), *id, *sender, nonce));
                    budget.insert(*sender, balance);
                }
            }
        }
        let mut chosen = Vec::with_capacity(txs_max.min(self.len()));
        while chosen.len() < txs_max {
            let Some((_, id, sender, nonce)) = heads.pop() else {
                break;
            };
            let Some(entry) = self.by_id.get(&id) else {
                continue;
            };
            let cost = spend_of(&entry.tx);
            let left = budget
                .get_mut(&sender)
                .expect("every head's sender has a budget");
            let Some(rest) = left.checked_sub(cost) else {
                continue; // cannot afford it: its later nonces cannot run either
            };
            *left = rest;
            chosen.push(id);
            let next = nonce + 1;
            if let Some(next_id) = self.by_sender.get(&sender).and_then(|m| m.get(&next)) {
                if let Some(e) = self.by_id.get(next_id) {
                    heads.push((e.tx.fee(), *next_id, sender, next));
                }
            }
        }
        chosen.sort_unstable();
        chosen
    }

    fn compact_arrivals(&mut self) {
        let by_id = &self.by_id;
        self.arrivals
            .retain(|(ms, id)| by_id.get(id).is_some_and(|e| e.arrived_ms == *ms));
    }

    /// Checks that the indexes agree; panics otherwise. For tests.
    pub fn check_invariants(&self) {
        let mut bytes = 0;
        for (id, entry) in self.by_id.iter() {
            assert_eq!(entry.tx.id(), id);
            bytes += entry.tx.encoded().len();
            assert!(self.by_fee.contains(&(entry.tx.fee(), *id)));
            assert_eq!(
                self.by_sender
                    .get(entry.tx.sender())
                    .and_then(|m| m.get(&entry.tx.nonce())),
                Some(id)
            );
        }
        assert_eq!(bytes, self.bytes);
        assert_eq!(self.by_fee.len(), self.len());
        assert_eq!(
            self.by_sender.values().map(BTreeMap::len).sum::<usize>(),
            self.len()
        );
        assert!(self.len() <= self.config.txs_max && self.bytes <= self.config.bytes_max);
        for nonces in self.by_sender.values() {
            assert!(!nonces.is_empty() && nonces.len() <= self.config.per_sender_max);
        }
    }
}

/// What executing `tx` takes from its sender's balance.
pub fn spend_of(tx: &Transaction) -> u64 {
    match tx.body().kind {
        TxKind::Transfer { amount, .. } => tx.fee().saturating_add(amount),
        _ => tx.fee(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{signing_key_from_seed, TxBody};

    fn tx(seed: u8, nonce: u64, fee: u64) -> Transaction {
        let k = signing_key_from_seed(&[seed; 32]);
        TxBody {
            chain_id: 1,
            sender: k.verifying_key().to_bytes(),
            nonce,
            fee,
            kind: TxKind::Transfer {
                to: [0; 32],
                amount: 1,
            },
        }
        .sign(&k)
        .unwrap()
    }

    fn small(txs_max: usize) -> Mempool {
        Mempool::new(MempoolConfig {
            txs_max,
            per_sender_max: 4,
            ttl_ms: 100,
            ..Default::default()
        })
    }

    #[test]
    fn duplicate_stale_and_far_ahead_are_refused() {
        let mut p = small(10);
        let t = tx(1, 2, 5);
        p.insert(t.clone(), 2, 0).unwrap();
        assert_eq!(p.insert(t, 2, 0), Err(Reject::Duplicate));
        assert!(matches!(
            p.insert(tx(1, 1, 5), 2, 0),
            Err(Reject::StaleNonce { .. })
        ));
        assert!(matches!(
            p.insert(tx(1, 6, 5), 2, 0),
            Err(Reject::NonceTooFarAhead { .. })
        ));
        p.check_invariants();
    }

    #[test]
    fn replacement_needs_the_fee_bump() {
        let mut p = small(10);
        let first = tx(1, 0, 100);
        p.insert(first.clone(), 0, 0).unwrap();
        assert_eq!(
            p.insert(tx(1, 0, 109), 0, 0),
            Err(Reject::ReplacementUnderpriced {
                fee: 109,
                required: 110
            })
        );
        let better = tx(1, 0, 110);
        let admitted = p.insert(better.clone(), 0, 0).unwrap();
        assert_eq!(admitted.replaced, Some(*first.id()));
        assert!(!p.contains(first.id()) && p.contains(better.id()));
        p.check_invariants();
    }

    #[test]
    fn full_pool_evicts_the_cheapest_only_for_a_better_fee() {
        let mut p = small(3);
        for (seed, fee) in [(1, 10), (2, 20), (3, 30)] {
            p.insert(tx(seed, 0, fee), 0, 0).unwrap();
        }
        assert_eq!(
            p.insert(tx(4, 0, 10), 0, 0),
            Err(Reject::PoolFull {
                fee: 10,
                lowest: 10
            })
        );
        let admitted = p.insert(tx(4, 0, 11), 0, 0).unwrap();
        assert_eq!(admitted.evicted, vec![*tx(1, 0, 10).id()]);
        assert_eq!(p.len(), 3);
        p.check_invariants();
    }

    #[test]
    fn expiry_after_ttl() {
        let mut p = small(10);
        p.insert(tx(1, 0, 1), 0, 0).unwrap();
        p.insert(tx(2, 0, 1), 0, 50).unwrap();
        assert_eq!(p.expire(99).len(), 0);
        assert_eq!(p.expire(100), vec![*tx(1, 0, 1).id()]);
        assert_eq!(p.expire(150).len(), 1);
        assert!(p.is_empty());
    }

    #[test]
    fn block_prefers_fees_and_keeps_nonces_contiguous() {
        let mut p = small(100);
        // Sender 1: nonces 0..3 with low fees; sender 2: nonce 1 only (gap);
        // sender 3: one high-fee transaction.
        for n in 0..3 {
            p.insert(tx(1, n, 1), 0, 0).unwrap();
        }
        p.insert(tx(2, 1, 50), 0, 0).unwrap();
        p.insert(tx(3, 0, 40), 0, 0).unwrap();
        let block = p.build_block(2, |_| (1_000, 0));
        let mut want = vec![*tx(3, 0, 40).id(), *tx(1, 0, 1).id()];
        want.sort();
        assert_eq!(
            block, want,
            "sender 2 has a nonce gap; highest executable fees first"
        );
        // Balance limits: sender 1 can afford only two (cost 2 each).
        let block = p.build_block(10, |_| (4, 0));
        assert_eq!(block.len(), 2);
    }

    #[test]
    fn committed_and_stale_are_removed() {
        let mut p = small(100);
        let a = tx(1, 0, 1);
        let b = tx(1, 1, 1);
        let c = tx(1, 2, 1);
        for t in [&a, &b, &c] {
            p.insert(t.clone(), 0, 0).unwrap();
        }
        // A block included `a`, and another node's transaction used nonce 1.
        let removed = p.remove_committed(&[*a.id()], |_| 2);
        assert_eq!(removed, 2);
        assert!(p.contains(c.id()) && p.len() == 1);
        p.check_invariants();
    }
}
