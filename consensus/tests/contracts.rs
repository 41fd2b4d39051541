//! The example contracts (examples/contracts/) run through block
//! execution: the token against a model of balances and allowances over
//! random calls (its supply conserved), the counter, and the escrow.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;
use strata_consensus::contract::{contract_id, Receipt, ReceiptStatus};
use strata_consensus::state::{account_key, execute, user_key, Account, BlockEnv, StateKey};
use strata_consensus::tx::{signing_key_from_seed, PublicKey, Transaction, TxBody, TxKind};

const TOKEN: &str = include_str!("../../examples/contracts/token.wat");
const COUNTER: &str = include_str!("../../examples/contracts/counter.wat");
const USERS: u8 = 5;
const SUPPLY: u64 = 1_000;

type State = BTreeMap<StateKey, Vec<u8>>;

fn pk(n: u8) -> PublicKey {
    signing_key_from_seed(&[n; 32]).verifying_key().to_bytes()
}

struct Chain {
    state: State,
    nonces: HashMap<u8, u64>,
    height: u64,
}

impl Chain {
    fn new() -> Chain {
        let state = (0..USERS)
            .map(|n| {
                let a = Account {
                    balance: 1 << 40,
                    nonce: 0,
                };
                (account_key(&pk(n)), a.encode())
            })
            .collect();
        Chain {
            state,
            nonces: HashMap::new(),
            height: 0,
        }
    }

    fn tx(&mut self, n: u8, kind: TxKind) -> Arc<Transaction> {
        let nonce = self.nonces.entry(n).or_default();
        let tx = TxBody {
            chain_id: 1,
            sender: pk(n),
            nonce: *nonce,
            fee: 1,
            kind,
        }
        .sign(&signing_key_from_seed(&[n; 32]))
        .unwrap();
        *nonce += 1;
        Arc::new(tx)
    }

    /// Runs `txs` as one block; their receipts.
    fn block(&mut self, txs: &[Arc<Transaction>]) -> Vec<Receipt> {
        self.height += 1;
        let env = BlockEnv {
            height: self.height,
            timestamp_ms: self.height * 1_000,
        };
        let diff = execute(&self.state, env, txs).expect("the block applies");
        let receipts: HashMap<_, _> = diff.receipts.into_iter().collect();
        for (k, v) in diff.changes {
            match v {
                Some(v) => self.state.insert(k, v),
                None => self.state.remove(&k),
            };
        }
        txs.iter().map(|t| receipts[t.id()].clone()).collect()
    }

    fn deploy(&mut self, n: u8, wat: &str) -> [u8; 32] {
        let nonce = *self.nonces.get(&n).unwrap_or(&0);
        let code = wat::parse_str(wat).unwrap();
        let d = self.tx(
            n,
            TxKind::Deploy {
                code,
                gas_limit: 10_000_000,
                gas_price: 1,
            },
        );
        let r = self.block(&[d]);
        assert_eq!(r[0].status, ReceiptStatus::Success, "{}", r[0].message);
        contract_id(&pk(n), nonce)
    }

    fn call(&mut self, n: u8, contract: [u8; 32], entry: &str, input: Vec<u8>) -> Arc<Transaction> {
        self.tx(
            n,
            TxKind::Call {
                contract,
                value: 0,
                gas_limit: 1_000_000,
                gas_price: 1,
                entry: entry.into(),
                input,
            },
        )
    }

    fn token_balance(&self, token: &[u8; 32], who: u8) -> u64 {
        let mut key = vec![b'b'];
        key.extend_from_slice(&pk(who));
        self.state
            .get(&user_key(token, &key))
            .map_or(0, |v| u64::from_le_bytes(v.as_slice().try_into().unwrap()))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: u8,
        to: u8,
        amount: u64,
    },
    Approve {
        owner: u8,
        spender: u8,
        amount: u64,
    },
    TransferFrom {
        spender: u8,
        owner: u8,
        to: u8,
        amount: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    let amount = 0..SUPPLY / 2;
    prop_oneof![
        (user.clone(), user.clone(), amount.clone()).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (user.clone(), user.clone(), amount.clone()).prop_map(|(owner, spender, amount)| {
            Op::Approve {
                owner,
                spender,
                amount,
            }
        }),
        (user.clone(), user.clone(), user, amount).prop_map(|(spender, owner, to, amount)| {
            Op::TransferFrom {
                spender,
                owner,
                to,
                amount,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random transfers, approvals and spends of allowances, a few per
    /// block: every call succeeds exactly when the model says it may,
    /// balances match the model, and the supply never changes.
    #[test]
    fn the_token_conserves_its_supply_and_matches_a_model(
        blocks in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..8)
    ) {
        let mut chain = Chain::new();
        let token = chain.deploy(0, TOKEN);
        let init = chain.call(0, token, "init", SUPPLY.to_le_bytes().to_vec());
        prop_assert_eq!(&chain.block(&[init])[0].status, &ReceiptStatus::Success);
        let mut balances = [0u64; USERS as usize];
        balances[0] = SUPPLY;
        let mut allowances: HashMap<(u8, u8), u64> = HashMap::new();
        for ops in blocks {
            // One call per sender per block keeps the model's order the
            // block's canonical order (by sender, then nonce).
            let mut seen = std::collections::HashSet::new();
            let ops: Vec<Op> = ops
                .into_iter()
                .filter(|o| {
                    let sender = match o {
                        Op::Transfer { from, .. } => *from,
                        Op::Approve { owner, .. } => *owner,
                        Op::TransferFrom { spender, .. } => *spender,
                    };
                    seen.insert(sender)
                })
                .collect();
            let mut sorted = ops.clone();
            sorted.sort_by_key(|o| match o {
                Op::Transfer { from, .. } => pk(*from),
                Op::Approve { owner, .. } => pk(*owner),
                Op::TransferFrom { spender, .. } => pk(*spender),
            });
            let txs: Vec<_> = ops
                .iter()
                .map(|o| match *o {
                    Op::Transfer { from, to, amount } => {
                        let mut input = pk(to).to_vec();
                        input.extend_from_slice(&amount.to_le_bytes());
                        chain.call(from, token, "transfer", input)
                    }
                    Op::Approve { owner, spender, amount } => {
                        let mut input = pk(spender).to_vec();
                        input.extend_from_slice(&amount.to_le_bytes());
                        chain.call(owner, token, "approve", input)
                    }
                    Op::TransferFrom { spender, owner, to, amount } => {
                        let mut input = pk(owner).to_vec();
                        input.extend_from_slice(&pk(to));
                        input.extend_from_slice(&amount.to_le_bytes());
                        chain.call(spender, token, "transfer_from", input)
                    }
                })
                .collect();
            let receipts = chain.block(&txs);
            let by_sender: HashMap<PublicKey, &Receipt> = txs
                .iter()
                .zip(&receipts)
                .map(|(t, r)| (*t.sender(), r))
                .collect();
            for o in sorted {
                let (sender, ok) = match o {
                    Op::Transfer { from, to, amount } => {
                        let ok = balances[from as usize] >= amount;
                        if ok {
                            balances[from as usize] -= amount;
                            balances[to as usize] += amount;
                        }
                        (from, ok)
                    }
                    Op::Approve { owner, spender, amount } => {
                        allowances.insert((owner, spender), amount);
                        (owner, true)
                    }
                    Op::TransferFrom { spender, owner, to, amount } => {
                        let allowed = allowances.get(&(owner, spender)).copied().unwrap_or(0);
                        let ok = allowed >= amount && balances[owner as usize] >= amount;
                        if ok {
                            allowances.insert((owner, spender), allowed - amount);
                            balances[owner as usize] -= amount;
                            balances[to as usize] += amount;
                        }
                        (spender, ok)
                    }
                };
                let r = by_sender[&pk(sender)];
                let want = if ok { ReceiptStatus::Success } else { ReceiptStatus::Reverted };
                prop_assert_eq!(&r.status, &want, "{}", r.message);
            }
            for u in 0..USERS {
                prop_assert_eq!(chain.token_balance(&token, u), balances[u as usize]);
            }
            let total: u64 = (0..USERS).map(|u| chain.token_balance(&token, u)).sum();
            prop_assert_eq!(total, SUPPLY);
        }
    }
}

#[test]
fn the_token_refuses_a_second_init_and_bad_input() {
    let mut chain = Chain::new();
    let token = chain.deploy(0, TOKEN);
    let a = chain.call(0, token, "init", SUPPLY.to_le_bytes().to_vec());
    let b = chain.call(1, token, "init", SUPPLY.to_le_bytes().to_vec());
    let c = chain.call(2, token, "transfer", vec![1, 2, 3]);
    let r = chain.block(&[a, b, c]);
    let mut statuses: Vec<_> = r
        .iter()
        .map(|r| (r.status.clone(), r.message.clone()))
        .collect();
    statuses.sort_by_key(|s| s.1.clone());
    assert!(
        statuses.contains(&(ReceiptStatus::Reverted, "already initialised".into())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(ReceiptStatus::Reverted, "bad input".into())),
        "{statuses:?}"
    );
    let total: u64 = (0..USERS).map(|u| chain.token_balance(&token, u)).sum();
    assert_eq!(total, SUPPLY);
}

#[test]
fn the_counter_counts_across_blocks() {
    let mut chain = Chain::new();
    let counter = chain.deploy(1, COUNTER);
    for want in 1..=3u64 {
        let t = chain.call(2, counter, "bump", vec![]);
        let r = chain.block(&[t]);
        assert_eq!(r[0].return_data, want.to_le_bytes());
    }
    let g = chain.call(3, counter, "get", vec![]);
    assert_eq!(chain.block(&[g])[0].return_data, 3u64.to_le_bytes());
}

const ESCROW: &str = include_str!("../../examples/contracts/escrow.wat");

fn balance(chain: &Chain, who: &PublicKey) -> u64 {
    strata_consensus::state::read_account(&chain.state, who)
        .unwrap()
        .balance
}

#[test]
fn the_escrow_holds_value_until_its_arbiter_settles() {
    let mut chain = Chain::new();
    let escrow = chain.deploy(0, ESCROW);
    let (depositor, beneficiary, arbiter) = (1u8, 2u8, 3u8);
    let parties = [pk(beneficiary), pk(arbiter)].concat();
    let open = |chain: &mut Chain, value: u64| {
        chain.tx(
            depositor,
            TxKind::Call {
                contract: escrow,
                value,
                gas_limit: 1_000_000,
                gas_price: 1,
                entry: "open".into(),
                input: parties.clone(),
            },
        )
    };
    let o = open(&mut chain, 500);
    let r = chain.block(&[o]);
    assert_eq!(r[0].status, ReceiptStatus::Success, "{}", r[0].message);
    assert_eq!(balance(&chain, &escrow), 500);
    // A second open while one is held, and one with no value, revert and
    // keep nothing.
    let again = open(&mut chain, 10);
    let r = chain.block(&[again]);
    assert_eq!(
        (r[0].status.clone(), r[0].message.as_str()),
        (ReceiptStatus::Reverted, "already open")
    );
    assert_eq!(balance(&chain, &escrow), 500);
    // Only the arbiter settles.
    let by_beneficiary = chain.call(beneficiary, escrow, "release", pk(depositor).to_vec());
    let r = chain.block(&[by_beneficiary]);
    assert_eq!(
        (r[0].status.clone(), r[0].message.as_str()),
        (ReceiptStatus::Reverted, "not the arbiter")
    );
    let before = balance(&chain, &pk(beneficiary));
    let release = chain.call(arbiter, escrow, "release", pk(depositor).to_vec());
    let r = chain.block(&[release]);
    assert_eq!(r[0].status, ReceiptStatus::Success, "{}", r[0].message);
    assert_eq!(balance(&chain, &pk(beneficiary)), before + 500);
    assert_eq!(balance(&chain, &escrow), 0);
    assert_eq!(r[0].events[0].1[64..], 500u64.to_le_bytes());
    // Closed: a second release finds nothing; a new escrow refunds.
    let twice = chain.call(arbiter, escrow, "release", pk(depositor).to_vec());
    assert_eq!(chain.block(&[twice])[0].message, "no escrow");
    let o = open(&mut chain, 70);
    chain.block(&[o]);
    let show = chain.call(4, escrow, "show", pk(depositor).to_vec());
    let r = chain.block(&[show]);
    assert_eq!(r[0].return_data[64..], 70u64.to_le_bytes());
    let before = balance(&chain, &pk(depositor));
    let refund = chain.call(arbiter, escrow, "refund", pk(depositor).to_vec());
    chain.block(&[refund]);
    assert_eq!(balance(&chain, &pk(depositor)), before + 70);
    assert_eq!(balance(&chain, &escrow), 0);
}
