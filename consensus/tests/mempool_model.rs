//! The mempool under a random workload, checked against a simple model that
//! implements the documented policy with plain vectors: duplicates, stale and
//! far-ahead nonces, nonce gaps, what a sender can pay, replacement with the
//! fee bump, the per-sender limit, eviction of the cheapest when full, TTL
//! expiry, commits (which may leave a sender unable to pay), and which
//! senders have a transaction ready for a block.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_consensus::mempool::{Mempool, MempoolConfig, Reject};
use strata_consensus::state::Account;
use strata_consensus::tx::{signing_key_from_seed, Transaction, TxBody, TxId, TxKind};

const SENDERS: u8 = 6;
const TXS_MAX: usize = 12;
const PER_SENDER_MAX: usize = 4;
const TTL_MS: u64 = 50;
const BUMP_PERCENT: u64 = 10;
const GAP_MAX: u64 = 1;
/// Every transfer moves 1; fees are below 60. Some senders are poor:
/// their balance covers only a few transactions.
fn balance_of(sender: u8) -> u64 {
    if sender % 2 == 0 {
        1_000_000
    } else {
        40 + 30 * u64::from(sender)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        sender: u8,
        nonce: u64,
        fee: u64,
    },
    Advance(u64),
    Commit {
        sender: u8,
    },
    /// A transaction of `sender` the pool never held was finalized: its
    /// nonce moves on by one and its balance drops by `spent`.
    Foreign {
        sender: u8,
        spent: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..SENDERS, 0u64..6, 1u64..60).prop_map(|(sender, nonce, fee)| Op::Insert { sender, nonce, fee }),
        1 => (1u64..30).prop_map(Op::Advance),
        1 => (0..SENDERS).prop_map(|sender| Op::Commit { sender }),
        1 => (0..SENDERS, 0u64..100).prop_map(|(sender, spent)| Op::Foreign { sender, spent }),
    ]
}

fn make_tx(sender: u8, nonce: u64, fee: u64) -> Transaction {
    let k = signing_key_from_seed(&[sender + 1; 32]);
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

#[derive(Clone)]
struct ModelTx {
    id: TxId,
    sender: u8,
    nonce: u64,
    fee: u64,
    arrived: u64,
}

#[derive(Default)]
struct Model {
    txs: Vec<ModelTx>,
}

impl Model {
    fn spend(&self, sender: u8) -> u64 {
        self.txs
            .iter()
            .filter(|x| x.sender == sender)
            .map(|x| x.fee + 1)
            .sum()
    }

    /// The first nonce from the account's with no pending transaction.
    fn next_missing(&self, sender: u8, account_nonce: u64) -> u64 {
        let mut n = account_nonce;
        while self.txs.iter().any(|x| x.sender == sender && x.nonce == n) {
            n += 1;
        }
        n
    }

    fn insert(&mut self, t: ModelTx, account: Account) -> Result<(), &'static str> {
        if self.txs.iter().any(|x| x.id == t.id) {
            return Err("duplicate");
        }
        if t.nonce < account.nonce {
            return Err("stale");
        }
        if t.nonce - account.nonce >= PER_SENDER_MAX as u64 {
            return Err("far");
        }
        let same = self
            .txs
            .iter()
            .position(|x| x.sender == t.sender && x.nonce == t.nonce);
        if same.is_none() && t.nonce > self.next_missing(t.sender, account.nonce) + GAP_MAX {
            return Err("gap");
        }
        let mut old_spend = 0;
        if let Some(i) = same {
            let old = self.txs[i].fee;
            let required = old + (old * BUMP_PERCENT / 100).max(1);
            if t.fee < required {
                return Err("underpriced");
            }
            old_spend = old + 1;
        } else if self.txs.iter().filter(|x| x.sender == t.sender).count() >= PER_SENDER_MAX {
            return Err("sender full");
        }
        if self.spend(t.sender) - old_spend + t.fee + 1 > account.balance {
            return Err("balance");
        }
        let mut rest: Vec<ModelTx> = self.txs.clone();
        if let Some(i) = same {
            rest.remove(i);
        }
        // Evict cheapest (fee, id) while over the limit; refuse if not cheaper.
        rest.sort_by_key(|x| (x.fee, x.id));
        while rest.len() + 1 > TXS_MAX {
            if rest[0].fee >= t.fee {
                return Err("full");
            }
            rest.remove(0);
        }
        rest.push(t);
        self.txs = rest;
        Ok(())
    }

    /// The sender's account moved to `account`: drop what went stale, then
    /// its highest nonces while it cannot pay for all. Returns how many.
    fn refresh(&mut self, sender: u8, account: Account) -> usize {
        let before = self.txs.len();
        self.txs
            .retain(|x| !(x.sender == sender && x.nonce < account.nonce));
        while self.spend(sender) > account.balance {
            let top = self
                .txs
                .iter()
                .enumerate()
                .filter(|(_, x)| x.sender == sender)
                .max_by_key(|(_, x)| x.nonce)
                .map(|(i, _)| i)
                .expect("spend > 0 means pending");
            self.txs.remove(top);
        }
        before - self.txs.len()
    }

    /// Senders whose account nonce has a pending transaction.
    fn ready(&self, accounts: &BTreeMap<u8, Account>) -> bool {
        self.txs
            .iter()
            .any(|x| x.nonce == account_of(accounts, x.sender).nonce)
    }
}

fn account_of(accounts: &BTreeMap<u8, Account>, sender: u8) -> Account {
    accounts.get(&sender).copied().unwrap_or(Account {
        balance: balance_of(sender),
        nonce: 0,
    })
}

fn reject_name(r: &Reject) -> &'static str {
    match r {
        Reject::Duplicate => "duplicate",
        Reject::StaleNonce { .. } => "stale",
        Reject::NonceTooFarAhead { .. } => "far",
        Reject::ReplacementUnderpriced { .. } => "underpriced",
        Reject::SenderFull => "sender full",
        Reject::PoolFull { .. } => "full",
        Reject::NonceGap { .. } => "gap",
        Reject::InsufficientBalance { .. } => "balance",
        _ => "other",
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn mempool_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
        let mut pool = Mempool::new(MempoolConfig {
            txs_max: TXS_MAX,
            per_sender_max: PER_SENDER_MAX,
            nonce_gap_max: GAP_MAX,
            ttl_ms: TTL_MS,
            replace_fee_bump_percent: BUMP_PERCENT,
            ..MempoolConfig::default()
        });
        let mut model = Model::default();
        let mut accounts: BTreeMap<u8, Account> = BTreeMap::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Insert { sender, nonce, fee } => {
                    let tx = make_tx(sender, nonce, fee);
                    let account = account_of(&accounts, sender);
                    let got = pool.insert(tx.clone(), account, now).map(|_| ()).map_err(|r| reject_name(&r));
                    let want = model.insert(ModelTx { id: *tx.id(), sender, nonce, fee, arrived: now }, account);
                    prop_assert_eq!(got, want);
                }
                Op::Advance(ms) => {
                    now += ms;
                    let mut got = pool.expire(now);
                    got.sort();
                    let mut want: Vec<TxId> = model.txs.iter().filter(|t| t.arrived + TTL_MS <= now).map(|t| t.id).collect();
                    want.sort();
                    model.txs.retain(|t| t.arrived + TTL_MS > now);
                    prop_assert_eq!(got, want);
                }
                Op::Commit { sender } => {
                    // The lowest pending nonce of `sender` is finalized (if it
                    // is the account's next), advancing the account.
                    let account = account_of(&accounts, sender);
                    let Some(t) = model.txs.iter().find(|t| t.sender == sender && t.nonce == account.nonce).cloned() else { continue };
                    let after = Account { balance: account.balance - (t.fee + 1), nonce: account.nonce + 1 };
                    accounts.insert(sender, after);
                    let pk = *t_sender_key(sender);
                    let removed = pool.remove_committed(&[t.id], [(pk, after)]);
                    model.txs.retain(|x| x.id != t.id);
                    let refreshed = model.refresh(sender, after);
                    prop_assert_eq!(removed, 1 + refreshed);
                }
                Op::Foreign { sender, spent } => {
                    let account = account_of(&accounts, sender);
                    let after = Account {
                        balance: account.balance.saturating_sub(spent),
                        nonce: account.nonce + 1,
                    };
                    accounts.insert(sender, after);
                    let removed = pool.remove_committed(&[], [(*t_sender_key(sender), after)]);
                    prop_assert_eq!(removed, model.refresh(sender, after));
                }
            }
            pool.check_invariants();
            prop_assert_eq!(pool.len(), model.txs.len());
            for t in &model.txs {
                prop_assert!(pool.contains(&t.id));
            }
            prop_assert_eq!(pool.has_ready(), model.ready(&accounts));
        }
    }
}

/// The public key of model sender `sender` (as `make_tx` signs).
fn t_sender_key(sender: u8) -> &'static [u8; 32] {
    static KEYS: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    &KEYS.get_or_init(|| {
        (0..SENDERS)
            .map(|s| {
                signing_key_from_seed(&[s + 1; 32])
                    .verifying_key()
                    .to_bytes()
            })
            .collect()
    })[usize::from(sender)]
}
