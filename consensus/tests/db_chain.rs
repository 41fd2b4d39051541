//! The durable chain against the in-memory one: the same blocks give the
//! same state roots, and a reopened store is at exactly its last committed
//! height with the matching root, blocks, transactions, indexes and proofs.

use std::sync::Arc;

use strata_consensus::block::Block;
use strata_consensus::db_chain::DbChain;
use strata_consensus::engine::Chain;
use strata_consensus::genesis::{devnet_account_key, Genesis};
use strata_consensus::history;
use strata_consensus::mem_chain::MemChain;
use strata_consensus::state::account_key;
use strata_consensus::tx::{Transaction, TxBody, TxKind};
use strata_storage::{merkle, Db, Options};

fn transfer(from: usize, nonce: u64, to: usize, amount: u64) -> Arc<Transaction> {
    let key = devnet_account_key(from);
    Arc::new(
        TxBody {
            chain_id: Genesis::devnet(1).chain_id,
            sender: key.verifying_key().to_bytes(),
            nonce,
            fee: 3,
            kind: TxKind::Transfer {
                to: devnet_account_key(to).verifying_key().to_bytes(),
                amount,
            },
        }
        .sign(&key)
        .unwrap(),
    )
}

fn commit_both(
    db: &mut DbChain,
    mem: &mut MemChain,
    height: u64,
    txs: Vec<Arc<Transaction>>,
) -> Block {
    let diff = mem
        .execute(strata_consensus::state::BlockEnv::default(), &txs)
        .unwrap();
    assert_eq!(
        db.execute(strata_consensus::state::BlockEnv::default(), &txs)
            .unwrap(),
        diff,
        "both stores execute alike"
    );
    let ids = txs.iter().map(|t| *t.id()).collect();
    let block = Block::new(
        height,
        mem.last_block_id(),
        mem.state_root(),
        [9; 32],
        0,
        ids,
    )
    .unwrap();
    db.commit(&block, &txs, diff.clone()).unwrap();
    mem.commit(&block, &txs, diff).unwrap();
    assert_eq!(
        db.state_root(),
        mem.state_root(),
        "height {height}: roots differ"
    );
    block
}

#[test]
fn durable_chain_matches_memory_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = Genesis::devnet(4);
    let mut mem = MemChain::new(&genesis);
    let mut blocks = Vec::new();
    let mut last_tx = None;
    {
        let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
        let mut chain = DbChain::open(Arc::clone(&db), &genesis).unwrap();
        assert_eq!(chain.height(), 0);
        assert_eq!(chain.state_root(), mem.state_root(), "genesis roots differ");
        for h in 1..=5u64 {
            let txs: Vec<_> = (0..20)
                .map(|i| transfer(i, h - 1, i + 100, 1_000 + h))
                .collect();
            last_tx = Some(*txs[7].id());
            blocks.push(commit_both(&mut chain, &mut mem, h, txs));
        }
        db.close().unwrap();
    }
    let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let chain = DbChain::open(db, &genesis).unwrap();
    assert_eq!(chain.height(), 5);
    assert_eq!(chain.state_root(), mem.state_root());
    assert_eq!(chain.last_block_id(), *blocks[4].id());
    for (i, b) in blocks.iter().enumerate() {
        let (got, txs) = chain.finalized(i as u64 + 1).unwrap().unwrap();
        assert_eq!(&got, b);
        assert_eq!(txs.len(), 20);
        assert_eq!(chain.block_height(b.id()).unwrap(), Some(i as u64 + 1));
    }
    assert_eq!(chain.tx_height(&last_tx.unwrap()).unwrap(), Some(5));
    // Balances and a proof of one account against the committed root.
    let pk = devnet_account_key(3).verifying_key().to_bytes();
    assert_eq!(chain.account(&pk).unwrap().nonce, 5);
    let (value, proof) = chain.prove(&account_key(&pk)).unwrap();
    let value = value.expect("the account exists");
    assert!(merkle::verify_path(
        &chain.state_root(),
        &account_key(&pk),
        Some(&merkle::value_hash(&value)),
        &proof
    ));
}

/// Queries about finalized heights are answered from the ids of recent
/// commits where the chain remembers them, and from the stored block
/// otherwise: both must name the block that was committed.
#[test]
fn finalized_ids_match_the_committed_blocks_recent_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = Genesis::devnet(4);
    let mut mem = MemChain::new(&genesis);
    let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let mut chain = DbChain::open(Arc::clone(&db), &genesis).unwrap();
    // More heights than the chain remembers ids for.
    let heights = 80u64;
    let blocks: Vec<_> = (1..=heights)
        .map(|h| {
            let txs = (0..2).map(|i| transfer(i, h - 1, i + 100, 1)).collect();
            commit_both(&mut chain, &mut mem, h, txs)
        })
        .collect();
    assert_eq!(chain.finalized_id(0), Ok(None));
    assert_eq!(chain.finalized_id(heights + 1), Ok(None));
    for (i, b) in blocks.iter().enumerate() {
        let h = i as u64 + 1;
        assert_eq!(chain.finalized_id(h), Ok(Some(*b.id())), "height {h}");
        assert_eq!(
            chain.finalized_block(h).unwrap().map(|b| *b.id()),
            Some(*b.id())
        );
    }
}

/// Other threads read committed state through the chain's cache
/// (`CommittedState`) while blocks commit: after every commit, the
/// cache-first read must equal the store's. (The narrow interleaving that
/// could leave a stale entry is tested step by step in the module's unit
/// test `a_fill_that_predates_a_commit_is_dropped`; this one runs the
/// threads for real.)
#[test]
fn readers_on_other_threads_never_leave_a_stale_account_in_the_cache() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let genesis = Genesis::devnet(4);
    let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let mut chain = DbChain::open(Arc::clone(&db), &genesis).unwrap();
    let reader = chain.reader();
    let keys: Vec<_> = (0..32)
        .map(|i| devnet_account_key(i).verifying_key().to_bytes())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (state, keys, stop) = (chain.committed_state(), keys.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    state.accounts(&keys).unwrap();
                }
            })
        })
        .collect();
    for h in 1..=20u64 {
        // Each block moves every one of the 32 accounts.
        let txs: Vec<_> = (0..32)
            .map(|i| transfer(i, h - 1, (i + 1) % 32, h))
            .collect();
        let diff = chain
            .execute(strata_consensus::state::BlockEnv::default(), &txs)
            .unwrap();
        let ids = txs.iter().map(|t| *t.id()).collect();
        let block = Block::new(
            h,
            chain.last_block_id(),
            chain.state_root(),
            [9; 32],
            0,
            ids,
        )
        .unwrap();
        chain.commit(&block, &txs, diff).unwrap();
        for pk in &keys {
            let cached = chain.account(pk).unwrap();
            let (_, stored) = reader.account(pk).unwrap();
            assert_eq!(
                cached, stored,
                "height {h}: the cache holds a stale account"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
}

/// Pruning keeps exactly the last `retained` heights' history (blocks,
/// transaction lists, both indexes) and nothing of the older ones, leaves
/// the state alone, answers queries about pruned heights with "none", and
/// resumes where it stopped after the store is closed part-way.
#[test]
fn pruning_keeps_the_last_heights_and_resumes_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = Genesis::devnet(4);
    let mut mem = MemChain::new(&genesis);
    let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let mut chain = DbChain::open(Arc::clone(&db), &genesis).unwrap();
    let heights = 30u64;
    let retained = 10u64;
    let blocks: Vec<(Block, Vec<Arc<Transaction>>)> = (1..=heights)
        .map(|h| {
            let txs: Vec<_> = (0..3).map(|i| transfer(i, h - 1, i + 100, 1)).collect();
            (commit_both(&mut chain, &mut mem, h, txs.clone()), txs)
        })
        .collect();
    let root = chain.state_root();
    let target = history::target_floor(heights, retained);
    assert_eq!(target, heights - retained + 1);
    for h in 1..=5 {
        let pruned = history::prune_next(&db, target).unwrap().unwrap();
        assert_eq!((pruned.height, pruned.txs), (h, 3));
    }
    assert_eq!(history::floor(&db).unwrap(), 6);
    drop(chain);
    drop(db);
    let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let chain = DbChain::open(Arc::clone(&db), &genesis).unwrap();
    assert_eq!(
        history::floor(&db).unwrap(),
        6,
        "the floor survives a reopen"
    );
    while history::prune_next(&db, target).unwrap().is_some() {}
    assert_eq!(history::floor(&db).unwrap(), target);
    assert!(history::prune_next(&db, target).unwrap().is_none());

    let reader = chain.reader();
    for (b, txs) in &blocks {
        let h = b.height();
        let kept = h >= target;
        assert_eq!(chain.finalized(h).unwrap().is_some(), kept, "height {h}");
        assert_eq!(reader.block_height(b.id()).unwrap(), kept.then_some(h));
        for tx in txs {
            assert_eq!(reader.tx_height(tx.id()).unwrap(), kept.then_some(h));
        }
    }
    // Nothing of a pruned height is left behind: each namespace holds
    // exactly the kept heights' records.
    let count = |ns: &[u8]| db.scan_prefix(ns).unwrap().count() as u64;
    assert_eq!(count(b"b"), retained);
    assert_eq!(count(b"x"), retained);
    assert_eq!(count(b"i"), retained);
    assert_eq!(count(b"n"), 3 * retained);
    // The state is not history.
    assert_eq!(chain.state_root(), root);
    assert_eq!(chain.state_root(), mem.state_root());
}

/// A deploy's receipt is kept beside its block, readable by id, and
/// pruned with the block's history.
#[test]
fn receipts_are_history_kept_and_pruned_with_their_block() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let genesis = Genesis::devnet(1);
    let mut chain = DbChain::open(db.clone(), &genesis).unwrap();
    let key = devnet_account_key(3);
    let deploy = Arc::new(
        TxBody {
            chain_id: genesis.chain_id,
            sender: key.verifying_key().to_bytes(),
            nonce: 0,
            fee: 1,
            kind: TxKind::Deploy {
                code: wat::parse_str(include_str!("../../examples/contracts/counter.wat")).unwrap(),
                gas_limit: 1_000_000,
                gas_price: 1,
            },
        }
        .sign(&key)
        .unwrap(),
    );
    let txs = vec![deploy.clone()];
    let block = Block::new(
        1,
        chain.last_block_id(),
        chain.state_root(),
        [9; 32],
        5,
        vec![*deploy.id()],
    )
    .unwrap();
    let diff = chain
        .execute(strata_consensus::state::BlockEnv::of(&block), &txs)
        .unwrap();
    assert_eq!(diff.receipts.len(), 1);
    chain.commit(&block, &txs, diff).unwrap();
    let r = chain
        .reader()
        .receipt(deploy.id())
        .unwrap()
        .expect("a receipt");
    assert_eq!(r.status, strata_consensus::contract::ReceiptStatus::Success);
    let transfer_block = Block::new(
        2,
        chain.last_block_id(),
        chain.state_root(),
        [9; 32],
        6,
        vec![*transfer(1, 0, 2, 1).id()],
    )
    .unwrap();
    let t = vec![transfer(1, 0, 2, 1)];
    let diff = chain
        .execute(strata_consensus::state::BlockEnv::of(&transfer_block), &t)
        .unwrap();
    assert!(diff.receipts.is_empty(), "a transfer has no receipt");
    chain.commit(&transfer_block, &t, diff).unwrap();
    assert!(history::prune_next(&db, 2).unwrap().is_some());
    assert_eq!(chain.reader().receipt(deploy.id()).unwrap(), None);
}

/// Blocks of deploys and calls (the token: init, transfers, approvals,
/// spends, failures) give the same diffs and the same roots on the
/// durable store and the in-memory one: contract execution depends on
/// nothing but the state and the block.
#[test]
fn contract_blocks_give_the_same_roots_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = Genesis::devnet(4);
    let mut mem = MemChain::new(&genesis);
    let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let mut chain = DbChain::open(db, &genesis).unwrap();
    let chain_id = genesis.chain_id;
    let sign = |from: usize, nonce: u64, kind: TxKind| {
        let key = devnet_account_key(from);
        Arc::new(
            TxBody {
                chain_id,
                sender: key.verifying_key().to_bytes(),
                nonce,
                fee: 1,
                kind,
            }
            .sign(&key)
            .unwrap(),
        )
    };
    let owner = devnet_account_key(0).verifying_key().to_bytes();
    let token = strata_consensus::contract::contract_id(&owner, 0);
    let call = |from: usize, nonce: u64, entry: &str, input: Vec<u8>| {
        sign(
            from,
            nonce,
            TxKind::Call {
                contract: token,
                value: 0,
                gas_limit: 200_000,
                gas_price: 1,
                entry: entry.into(),
                input,
            },
        )
    };
    let pk = |i: usize| devnet_account_key(i).verifying_key().to_bytes().to_vec();
    let amount = |a: u64| a.to_le_bytes().to_vec();
    let code = wat::parse_str(include_str!("../../examples/contracts/token.wat")).unwrap();
    commit_both(
        &mut chain,
        &mut mem,
        1,
        vec![sign(
            0,
            0,
            TxKind::Deploy {
                code,
                gas_limit: 5_000_000,
                gas_price: 1,
            },
        )],
    );
    commit_both(
        &mut chain,
        &mut mem,
        2,
        vec![call(0, 1, "init", amount(1_000))],
    );
    let mut nonce0 = 2;
    for h in 3..=6u64 {
        let mut txs = Vec::new();
        for to in 1..=5usize {
            txs.push(call(
                0,
                nonce0,
                "transfer",
                [pk(to), amount(h * to as u64)].concat(),
            ));
            nonce0 += 1;
        }
        let n = h - 3;
        txs.push(call(1, n, "approve", [pk(2), amount(3)].concat()));
        txs.push(call(
            2,
            n,
            "transfer_from",
            [pk(1), pk(3), amount(2)].concat(),
        ));
        txs.push(call(4, n, "transfer", [pk(5), amount(10_000)].concat())); // reverts
        commit_both(&mut chain, &mut mem, h, txs);
    }
}
