//! The mempool under a random workload, checked against a simple model that
//! implements the documented policy with plain vectors: duplicates, stale and
//! far-ahead nonces, replacement with the fee bump, the per-sender limit,
//! eviction of the cheapest when full, and TTL expiry.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_consensus::mempool::{Mempool, MempoolConfig, Reject};
use strata_consensus::tx::{signing_key_from_seed, Transaction, TxBody, TxId, TxKind};

const SENDERS: u8 = 6;
const TXS_MAX: usize = 12;
const PER_SENDER_MAX: usize = 4;
const TTL_MS: u64 = 50;
const BUMP_PERCENT: u64 = 10;

#[derive(Clone, Debug)]
enum Op {
    Insert { sender: u8, nonce: u64, fee: u64 },
    Advance(u64),
    Commit { sender: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..SENDERS, 0u64..6, 1u64..60).prop_map(|(sender, nonce, fee)| Op::Insert { sender, nonce, fee }),
        1 => (1u64..30).prop_map(Op::Advance),
        1 => (0..SENDERS).prop_map(|sender| Op::Commit { sender }),
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
    fn insert(&mut self, t: ModelTx, account_nonce: u64) -> Result<(), &'static str> {
        if self.txs.iter().any(|x| x.id == t.id) {
            return Err("duplicate");
        }
        if t.nonce < account_nonce {
            return Err("stale");
        }
        if t.nonce - account_nonce >= PER_SENDER_MAX as u64 {
            return Err("far");
        }
        let same = self
            .txs
            .iter()
            .position(|x| x.sender == t.sender && x.nonce == t.nonce);
        if let Some(i) = same {
            let old = self.txs[i].fee;
            let required = old + (old * BUMP_PERCENT / 100).max(1);
            if t.fee < required {
                return Err("underpriced");
            }
        } else if self.txs.iter().filter(|x| x.sender == t.sender).count() >= PER_SENDER_MAX {
            return Err("sender full");
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
}

fn reject_name(r: &Reject) -> &'static str {
    match r {
        Reject::Duplicate => "duplicate",
        Reject::StaleNonce { .. } => "stale",
        Reject::NonceTooFarAhead { .. } => "far",
        Reject::ReplacementUnderpriced { .. } => "underpriced",
        Reject::SenderFull => "sender full",
        Reject::PoolFull { .. } => "full",
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
            ttl_ms: TTL_MS,
            replace_fee_bump_percent: BUMP_PERCENT,
            ..MempoolConfig::default()
        });
        let mut model = Model::default();
        let mut account_nonce: BTreeMap<u8, u64> = BTreeMap::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Insert { sender, nonce, fee } => {
                    let tx = make_tx(sender, nonce, fee);
                    let an = *account_nonce.get(&sender).unwrap_or(&0);
                    let got = pool.insert(tx.clone(), an, now).map(|_| ()).map_err(|r| reject_name(&r));
                    let want = model.insert(ModelTx { id: *tx.id(), sender, nonce, fee, arrived: now }, an);
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
                    let an = *account_nonce.get(&sender).unwrap_or(&0);
                    let Some(t) = model.txs.iter().find(|t| t.sender == sender && t.nonce == an).cloned() else { continue };
                    account_nonce.insert(sender, an + 1);
                    let removed = pool.remove_committed(&[t.id], |_| an + 1);
                    let before = model.txs.len();
                    model.txs.retain(|x| !(x.sender == sender && x.nonce <= an));
                    prop_assert_eq!(removed, before - model.txs.len());
                }
            }
            pool.check_invariants();
            prop_assert_eq!(pool.len(), model.txs.len());
            for t in &model.txs {
                prop_assert!(pool.contains(&t.id));
            }
        }
    }
}
