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
//! - A nonce may run at most `nonce_gap_max` past the sender's next
//!   missing nonce (the first nonce from the account's on that no pending
//!   transaction has): gossip may reorder a sender's transactions a little,
//!   but a transaction that cannot run until many others arrive is refused
//!   with [`Reject::NonceGap`] rather than held for its whole TTL.
//! - The sender must be able to pay: the spend (fee, plus the amount of a
//!   transfer) of all its pending transactions and the newcomer together
//!   may not exceed its balance in the finalized state
//!   ([`Reject::InsufficientBalance`]). Incoming transfers still pending do
//!   not count. So every pending transaction could be executed, and junk
//!   from empty accounts never enters, is never relayed and cannot price
//!   honest users out of a full pool.
//! - Replacing `(sender, nonce)` needs a fee at least
//!   `replace_fee_bump_percent` higher than the one it replaces.
//! - When the pool is full, a newcomer must pay strictly more than the
//!   cheapest resident, which is evicted: pushing others out costs real fees.
//! - Transactions older than `ttl_ms` are dropped by [`Mempool::expire`].
//!
//! The pool keeps, per pending sender, its finalized account as of the last
//! admission or commit that touched it (kept exact by
//! [`Mempool::remove_committed`], which is given every account a finalized
//! block changed), and the set of *ready* senders, whose next transaction
//! is pending. Block building walks only ready senders and reads no state,
//! and whether there is anything to propose ([`Mempool::has_ready`]) is one
//! check: the work of a timer tick does not grow with pending transactions
//! that cannot run.
//!
//! Time is passed in (`now_ms`, a monotonic clock); the mempool reads no clock.
//!
//! # Example
//! ```
//! use strata_consensus::mempool::{Mempool, MempoolConfig};
//! use strata_consensus::state::Account;
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
//! let account = Account { balance: 1_000, nonce: 0 };
//! pool.insert(tx.clone(), account, 1_000).unwrap();
//! assert!(pool.contains(tx.id()));
//! let block = pool.build_block(100);
//! assert_eq!(block, vec![*tx.id()]);
//! ```

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use strata_storage::ordered_table::OrderedTable;
use thiserror::Error;

use crate::state::Account;
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
    /// How far a nonce may run past the sender's next missing nonce.
    /// 0 admits only the next one. Default 64: enough for a sender's
    /// transactions reordered by gossip, far less than a TTL's worth.
    pub nonce_gap_max: u64,
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
            nonce_gap_max: 64,
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
    /// The nonce leaves a gap of more than `nonce_gap_max` after the
    /// sender's next missing nonce.
    #[error(
        "nonce gap: nonce {nonce}, but the sender's next missing nonce is {expected} \
         (at most {gap_max} ahead of it are held)"
    )]
    NonceGap {
        /// The transaction's nonce.
        nonce: u64,
        /// The first nonce from the account's that no pending transaction has.
        expected: u64,
        /// The configured gap limit.
        gap_max: u64,
    },
    /// The sender's balance does not cover this transaction together with
    /// its pending ones.
    #[error(
        "insufficient balance: {balance}, but this and the sender's pending \
         transactions spend {needed}"
    )]
    InsufficientBalance {
        /// The sender's balance in the finalized state.
        balance: u64,
        /// Fees and amounts of its pending transactions and this one.
        needed: u128,
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

/// One sender with pending transactions.
struct Sender {
    /// Its account in the finalized state, as of the last admission or
    /// commit that touched it (exact: see the module docs).
    account: Account,
    /// Pending transactions by nonce.
    pending: BTreeMap<u64, TxId>,
    /// What they spend together ([`spend_of`], summed; `u128` so no sum of
    /// `u64` fees and amounts overflows).
    spend: u128,
    /// The first nonce from `account.nonce` on with no pending transaction.
    next_nonce: u64,
}

impl Sender {
    fn new(account: Account) -> Self {
        Sender {
            account,
            pending: BTreeMap::new(),
            spend: 0,
            next_nonce: account.nonce,
        }
    }

    /// Moves `next_nonce` past every pending nonce that follows it.
    fn advance_next_nonce(&mut self) {
        self.next_nonce = self.next_nonce.max(self.account.nonce);
        while self.pending.contains_key(&self.next_nonce) {
            self.next_nonce += 1;
        }
    }

    fn is_ready(&self) -> bool {
        self.pending.contains_key(&self.account.nonce)
    }
}

/// Transactions the id table holds before its first growth. Sized for
/// the pool's usual working set, not its limit: a table for `txs_max`
/// (1 M by default) is ~90 MB written at start (a devnet node's resident
/// memory at start: 157 MB with it, 65 MB without), and its few thousand
/// live entries would be spread over all those pages. Growth is one
/// ordered pass, rare and amortized. (Devnet throughput was the same
/// either way, within noise.)
pub const BY_ID_INITIAL_CAPACITY: usize = 65_536;

/// What a pending transaction waits for ([`Mempool::waiting_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// It is its sender's next nonce: the next block built can take it.
    Block,
    /// Its sender's transactions with lower nonces, all pending, go first.
    Earlier {
        /// How many.
        count: u64,
    },
    /// A lower nonce of its sender was never received: nothing after it
    /// can execute until a transaction with that nonce arrives.
    Nonce {
        /// The first missing nonce.
        missing: u64,
    },
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waiting::Block => write!(f, "the next block (it is its sender's next nonce)"),
            Waiting::Earlier { count } => {
                write!(f, "{count} earlier pending transactions of its sender")
            }
            Waiting::Nonce { missing } => write!(
                f,
                "its sender's nonce {missing}, which this node has not received (a gap)"
            ),
        }
    }
}

/// The pool of pending transactions. See the [module docs](self).
pub struct Mempool {
    config: MempoolConfig,
    by_id: OrderedTable<Entry>,
    by_sender: HashMap<PublicKey, Sender>,
    /// Senders whose account nonce has a pending transaction.
    ready: HashSet<PublicKey>,
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
            ready: HashSet::new(),
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

    /// True when some sender's next transaction is pending: a block can be
    /// built. One check, whatever the pool holds.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Encoded bytes pending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when `id` is pending.
    pub fn contains(&self, id: &TxId) -> bool {
        self.by_id.contains_key(id)
    }

    /// What pending transaction `id` waits for (`None`: not pending).
    /// Answers "why is my transaction not final" without a scan: one
    /// lookup by id, one by sender, and at most the sender's pending
    /// nonces below it (bounded by `per_sender_max`).
    pub fn waiting_for(&self, id: &TxId) -> Option<Waiting> {
        let tx = &self.by_id.get(id)?.tx;
        let sender = self.by_sender.get(tx.sender())?;
        let account_nonce = sender.account.nonce;
        if tx.nonce() == account_nonce {
            return Some(Waiting::Block);
        }
        let mut expected = account_nonce;
        for &nonce in sender
            .pending
            .range(account_nonce..tx.nonce())
            .map(|(n, _)| n)
        {
            if nonce != expected {
                break;
            }
            expected += 1;
        }
        if expected < tx.nonce() {
            return Some(Waiting::Nonce { missing: expected });
        }
        Some(Waiting::Earlier {
            count: tx.nonce() - account_nonce,
        })
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
    /// `account` is the sender's account in the finalized state.
    ///
    /// # Errors
    /// A [`Reject`] saying why it was refused. The pool is then unchanged,
    /// but for the sender's pending transactions being brought up to date
    /// with `account` first, if it moved since the pool last saw it.
    pub fn insert(
        &mut self,
        tx: Transaction,
        account: Account,
        now_ms: u64,
    ) -> Result<Admitted, Reject> {
        let id = *tx.id();
        if self.by_id.contains_key(&id) {
            return Err(Reject::Duplicate);
        }
        let (sender, nonce, fee) = (*tx.sender(), tx.nonce(), tx.fee());
        let account_nonce = account.nonce;
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
        // The caller's account is the freshest view of the finalized state;
        // a pending sender's may be older only if a commit that changed it
        // was not reported (it always is by the engine). Catch up first.
        if self
            .by_sender
            .get(&sender)
            .is_some_and(|s| s.account != account)
        {
            self.refresh(&sender, account);
        }
        // One lookup of the sender serves every check below.
        let (same_nonce, sender_pending, expected, spend) = match self.by_sender.get(&sender) {
            Some(s) => (
                s.pending.get(&nonce).copied(),
                s.pending.len(),
                s.next_nonce.max(account_nonce),
                s.spend,
            ),
            None => (None, 0, account_nonce, 0),
        };
        if same_nonce.is_none() && nonce > expected.saturating_add(self.config.nonce_gap_max) {
            return Err(Reject::NonceGap {
                nonce,
                expected,
                gap_max: self.config.nonce_gap_max,
            });
        }
        let old_spend = match same_nonce {
            Some(old) => {
                let old_fee = self.by_id.get(&old).map_or(0, |e| e.tx.fee());
                let bump = old_fee.saturating_mul(self.config.replace_fee_bump_percent) / 100;
                let required = old_fee.saturating_add(bump.max(1));
                if fee < required {
                    return Err(Reject::ReplacementUnderpriced { fee, required });
                }
                self.by_id
                    .get(&old)
                    .map_or(0, |e| u128::from(spend_of(&e.tx)))
            }
            None if sender_pending >= self.config.per_sender_max => {
                return Err(Reject::SenderFull);
            }
            None => 0,
        };
        let needed = spend - old_spend + u128::from(spend_of(&tx));
        if needed > u128::from(account.balance) {
            return Err(Reject::InsufficientBalance {
                balance: account.balance,
                needed,
            });
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
        let s = self
            .by_sender
            .entry(sender)
            .or_insert_with(|| Sender::new(account));
        s.pending.insert(nonce, id);
        s.spend += u128::from(spend_of(&tx));
        s.advance_next_nonce();
        if s.is_ready() {
            self.ready.insert(sender);
        }
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
        let sender = *tx.sender();
        if let Some(s) = self.by_sender.get_mut(&sender) {
            let nonce = tx.nonce();
            if s.pending.remove(&nonce).is_some() {
                s.spend -= u128::from(spend_of(&tx));
                if nonce >= s.account.nonce && nonce < s.next_nonce {
                    s.next_nonce = nonce;
                }
            }
            if s.pending.is_empty() {
                self.by_sender.remove(&sender);
                self.ready.remove(&sender);
            } else if !s.is_ready() {
                self.ready.remove(&sender);
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

    /// After a block is final: removes the transactions it included, and
    /// brings every pending sender among `touched` — the accounts the block
    /// changed, with their new state — up to date: transactions its new
    /// nonce made stale are dropped, and so are its highest nonces while
    /// its new balance cannot pay for them all. The caller must pass every
    /// account the block changed (its senders and recipients) for the
    /// pool's view of accounts to stay exact. Returns how many transactions
    /// were removed.
    pub fn remove_committed(
        &mut self,
        included: &[TxId],
        touched: impl IntoIterator<Item = (PublicKey, Account)>,
    ) -> usize {
        let mut removed = 0;
        for id in included {
            if self.remove(id).is_some() {
                removed += 1;
            }
        }
        for (pk, account) in touched {
            removed += self.refresh(&pk, account);
        }
        removed
    }

    /// Sets pending sender `pk`'s finalized account to `account`, dropping
    /// what that made stale and, from the highest nonce down, what its
    /// balance can no longer pay for. Returns how many were dropped.
    fn refresh(&mut self, pk: &PublicKey, account: Account) -> usize {
        let Some(s) = self.by_sender.get_mut(pk) else {
            return 0;
        };
        s.account = account;
        let stale: Vec<TxId> = s
            .pending
            .range(..account.nonce)
            .map(|(_, id)| *id)
            .collect();
        s.advance_next_nonce();
        let mut removed = stale.len();
        for id in stale {
            self.remove(&id);
        }
        // A transaction of this sender we never held may have spent what
        // our pending ones counted on: drop from the top until the rest is
        // affordable again.
        while let Some(s) = self.by_sender.get(pk) {
            if s.spend <= u128::from(s.account.balance) {
                if s.is_ready() {
                    self.ready.insert(*pk);
                } else {
                    self.ready.remove(pk);
                }
                break;
            }
            let (_, top) = s.pending.last_key_value().expect("spend > 0 means pending");
            let top = *top;
            self.remove(&top);
            removed += 1;
        }
        removed
    }

    /// Picks up to `txs_max` transactions for a block, returned in ascending
    /// id order (the block's canonical order). Higher fees first, while each
    /// sender's nonces stay contiguous from its account nonce and its balance
    /// covers every fee and transfer chosen, and within the block-wide
    /// bounds of [`crate::state::check_block_bounds`] (bytes, gas).
    ///
    /// Cost: O(R + k log R) for R ready senders and k chosen transactions;
    /// no sort of the pool, no state read.
    pub fn build_block(&self, txs_max: usize) -> Vec<TxId> {
        // Max-heap of each sender's next executable transaction by fee (ties
        // by id for determinism).
        let mut heads: BinaryHeap<(u64, TxId, PublicKey, u64)> = BinaryHeap::new();
        let mut budget: HashMap<PublicKey, u64> = HashMap::with_capacity(self.ready.len());
        for sender in &self.ready {
            let s = &self.by_sender[sender];
            let nonce = s.account.nonce;
            if let Some(entry) = s.pending.get(&nonce).and_then(|id| self.by_id.get(id)) {
                heads.push((entry.tx.fee(), *entry.tx.id(), *sender, nonce));
                budget.insert(*sender, s.account.balance);
            }
        }
        let mut chosen = Vec::with_capacity(txs_max.min(self.len()));
        let (mut bytes_left, mut gas_left) = (
            crate::state::BLOCK_TX_BYTES_MAX,
            crate::state::BLOCK_GAS_MAX,
        );
        while chosen.len() < txs_max {
            let Some((_, id, sender, nonce)) = heads.pop() else {
                break;
            };
            let Some(entry) = self.by_id.get(&id) else {
                continue;
            };
            let (bytes, gas) = (entry.tx.encoded().len(), entry.tx.body().kind.gas_limit());
            if bytes > bytes_left || gas > gas_left {
                continue; // not in this block: its later nonces wait too
            }
            let cost = spend_of(&entry.tx);
            let left = budget
                .get_mut(&sender)
                .expect("every head's sender has a budget");
            let Some(rest) = left.checked_sub(cost) else {
                continue; // cannot afford it: its later nonces cannot run either
            };
            *left = rest;
            bytes_left -= bytes;
            gas_left -= gas;
            chosen.push(id);
            let next = nonce + 1;
            if let Some(next_id) = self.by_sender[&sender].pending.get(&next) {
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
                    .and_then(|s| s.pending.get(&entry.tx.nonce())),
                Some(id)
            );
        }
        assert_eq!(bytes, self.bytes);
        assert_eq!(self.by_fee.len(), self.len());
        assert_eq!(
            self.by_sender
                .values()
                .map(|s| s.pending.len())
                .sum::<usize>(),
            self.len()
        );
        assert!(self.len() <= self.config.txs_max && self.bytes <= self.config.bytes_max);
        for (pk, s) in &self.by_sender {
            assert!(!s.pending.is_empty() && s.pending.len() <= self.config.per_sender_max);
            let spend: u128 = s
                .pending
                .values()
                .map(|id| u128::from(spend_of(&self.by_id.get(id).expect("indexed").tx)))
                .sum();
            assert_eq!(spend, s.spend, "sender spend");
            assert!(s.spend <= u128::from(s.account.balance), "affordable");
            assert!(s.next_nonce >= s.account.nonce);
            assert!(!s.pending.contains_key(&s.next_nonce), "next nonce missing");
            assert!(
                (s.account.nonce..s.next_nonce).all(|n| s.pending.contains_key(&n)),
                "run before next nonce"
            );
            assert_eq!(self.ready.contains(pk), s.is_ready(), "ready set");
        }
        assert!(self.ready.iter().all(|pk| self.by_sender.contains_key(pk)));
    }
}

/// The most executing `tx` may take from its sender's balance: fee,
/// amount or value, and the whole gas budget (the unused part is refunded
/// after, which this view ignores until the block is committed).
pub fn spend_of(tx: &Transaction) -> u64 {
    let kind = &tx.body().kind;
    let amount = match *kind {
        TxKind::Transfer { amount, .. } | TxKind::Call { value: amount, .. } => amount,
        _ => 0,
    };
    tx.fee()
        .saturating_add(amount)
        .saturating_add(kind.gas_budget())
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

    /// A rich account at `nonce`.
    fn acct(nonce: u64) -> Account {
        Account {
            balance: 1_000_000,
            nonce,
        }
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
    fn a_pending_transaction_says_what_it_waits_for() {
        let mut p = small(10);
        let (t0, t1, t3) = (tx(1, 5, 5), tx(1, 6, 5), tx(1, 8, 5));
        for t in [&t0, &t1, &t3] {
            p.insert(t.clone(), acct(5), 0).unwrap();
        }
        assert_eq!(p.waiting_for(t0.id()), Some(Waiting::Block));
        assert_eq!(p.waiting_for(t1.id()), Some(Waiting::Earlier { count: 1 }));
        assert_eq!(p.waiting_for(t3.id()), Some(Waiting::Nonce { missing: 7 }));
        assert_eq!(p.waiting_for(tx(2, 0, 1).id()), None);
        assert!(Waiting::Nonce { missing: 7 }
            .to_string()
            .contains("nonce 7"));
    }

    #[test]
    fn duplicate_stale_and_far_ahead_are_refused() {
        let mut p = small(10);
        let t = tx(1, 2, 5);
        p.insert(t.clone(), acct(2), 0).unwrap();
        assert_eq!(p.insert(t, acct(2), 0), Err(Reject::Duplicate));
        assert!(matches!(
            p.insert(tx(1, 1, 5), acct(2), 0),
            Err(Reject::StaleNonce { .. })
        ));
        assert!(matches!(
            p.insert(tx(1, 6, 5), acct(2), 0),
            Err(Reject::NonceTooFarAhead { .. })
        ));
        p.check_invariants();
    }

    /// Regression (issue 17, finding 3): transfers from empty accounts were
    /// admitted, relayed and held for the whole TTL, and could price honest
    /// users out of a full pool. Now a sender must be able to pay for all
    /// its pending transactions.
    #[test]
    fn a_sender_must_afford_all_its_pending_transactions() {
        let mut p = small(10);
        let broke = Account {
            balance: 0,
            nonce: 0,
        };
        let e = p.insert(tx(1, 0, 5), broke, 0).unwrap_err();
        assert_eq!(
            e,
            Reject::InsufficientBalance {
                balance: 0,
                needed: 6
            }
        );
        assert!(e.to_string().starts_with("insufficient balance"), "{e}");
        // 13 covers two transfers of 1 at fee 5 (6 each), not three.
        let poor = Account {
            balance: 13,
            nonce: 0,
        };
        p.insert(tx(2, 0, 5), poor, 0).unwrap();
        p.insert(tx(2, 1, 5), poor, 0).unwrap();
        assert!(matches!(
            p.insert(tx(2, 2, 5), poor, 0),
            Err(Reject::InsufficientBalance { needed: 18, .. })
        ));
        // A replacement counts its own spend, not its predecessor's too.
        p.insert(tx(2, 1, 6), poor, 0).unwrap();
        assert!(matches!(
            p.insert(tx(2, 1, 7), poor, 0),
            Err(Reject::InsufficientBalance { needed: 14, .. })
        ));
        assert_eq!(p.len(), 2);
        p.check_invariants();
    }

    #[test]
    fn a_nonce_gap_wider_than_the_limit_is_refused() {
        let mut p = Mempool::new(MempoolConfig {
            nonce_gap_max: 2,
            ..Default::default()
        });
        p.insert(tx(1, 0, 1), acct(0), 0).unwrap();
        p.insert(tx(1, 1, 1), acct(0), 0).unwrap();
        // The next missing nonce is 2: 4 is within the gap, 5 is not.
        let e = p.insert(tx(1, 5, 1), acct(0), 0).unwrap_err();
        assert_eq!(
            e,
            Reject::NonceGap {
                nonce: 5,
                expected: 2,
                gap_max: 2
            }
        );
        assert!(e.to_string().starts_with("nonce gap"), "{e}");
        p.insert(tx(1, 4, 1), acct(0), 0).unwrap();
        // Filling the gap moves the next missing nonce past the run.
        p.insert(tx(1, 2, 1), acct(0), 0).unwrap();
        p.insert(tx(1, 3, 1), acct(0), 0).unwrap();
        p.insert(tx(1, 7, 1), acct(0), 0).unwrap();
        p.check_invariants();
    }

    #[test]
    fn replacement_needs_the_fee_bump() {
        let mut p = small(10);
        let first = tx(1, 0, 100);
        p.insert(first.clone(), acct(0), 0).unwrap();
        assert_eq!(
            p.insert(tx(1, 0, 109), acct(0), 0),
            Err(Reject::ReplacementUnderpriced {
                fee: 109,
                required: 110
            })
        );
        let better = tx(1, 0, 110);
        let admitted = p.insert(better.clone(), acct(0), 0).unwrap();
        assert_eq!(admitted.replaced, Some(*first.id()));
        assert!(!p.contains(first.id()) && p.contains(better.id()));
        p.check_invariants();
    }

    #[test]
    fn full_pool_evicts_the_cheapest_only_for_a_better_fee() {
        let mut p = small(3);
        for (seed, fee) in [(1, 10), (2, 20), (3, 30)] {
            p.insert(tx(seed, 0, fee), acct(0), 0).unwrap();
        }
        assert_eq!(
            p.insert(tx(4, 0, 10), acct(0), 0),
            Err(Reject::PoolFull {
                fee: 10,
                lowest: 10
            })
        );
        let admitted = p.insert(tx(4, 0, 11), acct(0), 0).unwrap();
        assert_eq!(admitted.evicted, vec![*tx(1, 0, 10).id()]);
        assert_eq!(p.len(), 3);
        p.check_invariants();
    }

    #[test]
    fn expiry_after_ttl() {
        let mut p = small(10);
        p.insert(tx(1, 0, 1), acct(0), 0).unwrap();
        p.insert(tx(2, 0, 1), acct(0), 50).unwrap();
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
            p.insert(tx(1, n, 1), acct(0), 0).unwrap();
        }
        p.insert(tx(2, 1, 50), acct(0), 0).unwrap();
        p.insert(tx(3, 0, 40), acct(0), 0).unwrap();
        let block = p.build_block(2);
        let mut want = vec![*tx(3, 0, 40).id(), *tx(1, 0, 1).id()];
        want.sort();
        assert_eq!(
            block, want,
            "sender 2 has a nonce gap; highest executable fees first"
        );
        assert_eq!(p.build_block(10).len(), 4);
    }

    /// Regression (issue 17, finding 3): a pool of transactions that cannot
    /// run made every timer tick scan every sender (200,000 of them moved
    /// finality p50 to 800 ms). Only ready senders count now.
    #[test]
    fn a_pool_of_gapped_transactions_has_nothing_ready() {
        let mut p = Mempool::new(MempoolConfig::default());
        for seed in 0..50 {
            p.insert(tx(seed, 3, 1), acct(0), 0).unwrap();
        }
        assert_eq!(p.len(), 50);
        assert!(!p.has_ready());
        assert!(p.build_block(100).is_empty());
        p.insert(tx(7, 0, 1), acct(0), 0).unwrap();
        assert!(p.has_ready());
        assert_eq!(p.build_block(100), vec![*tx(7, 0, 1).id()]);
        p.check_invariants();
    }

    #[test]
    fn committed_and_stale_are_removed() {
        let mut p = small(100);
        let a = tx(1, 0, 1);
        let b = tx(1, 1, 1);
        let c = tx(1, 2, 1);
        for t in [&a, &b, &c] {
            p.insert(t.clone(), acct(0), 0).unwrap();
        }
        // A block included `a`, and another node's transaction used nonce 1.
        let sender = *a.sender();
        let removed = p.remove_committed(&[*a.id()], [(sender, acct(2))]);
        assert_eq!(removed, 2);
        assert!(p.contains(c.id()) && p.len() == 1);
        assert!(p.has_ready(), "nonce 2 is next");
        p.check_invariants();
    }

    /// A commit that left a sender poorer than its pending transactions
    /// need (one of its transactions we never held spent the balance)
    /// drops its highest nonces until the rest is affordable.
    #[test]
    fn a_commit_that_drains_a_sender_drops_what_it_can_no_longer_pay() {
        let mut p = small(100);
        let txs: Vec<Transaction> = (0..3).map(|n| tx(1, n, 1)).collect();
        for t in &txs {
            p.insert(t.clone(), acct(0), 0).unwrap();
        }
        let sender = *txs[0].sender();
        let poorer = Account {
            balance: 4,
            nonce: 0,
        };
        assert_eq!(p.remove_committed(&[], [(sender, poorer)]), 1);
        assert!(p.contains(txs[0].id()) && p.contains(txs[1].id()));
        assert!(!p.contains(txs[2].id()));
        p.check_invariants();
    }
}
