//! Commit crash test with real processes: a child (this test binary,
//! re-executed with `CHILD_DIR_ENV` set) commits blocks of transfers through
//! `DbChain` and prints each committed height; the parent SIGKILLs it at a
//! random moment — between or during commits — reopens, and checks that the
//! store is at a committed height at least as high as the last acknowledged
//! one, that the stored root is the root of the stored state (no block half
//! applied), and that total supply is conserved.

// The kill -9 step, shared with the storage crate's crash test.
#[path = "../../storage/tests/support/kill.rs"]
mod kill;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_consensus::block::Block;
use strata_consensus::db_chain::DbChain;
use strata_consensus::engine::Chain;
use strata_consensus::genesis::{devnet_account_key, devnet_account_public_keys, Genesis};
use strata_consensus::state::burned_key;
use strata_consensus::tx::{TxBody, TxKind};
use strata_storage::{merkle, Db, Options};

const CHILD_DIR_ENV: &str = "STRATA_CHAIN_CRASH_DIR";
const SENDERS: usize = 16;

fn open(dir: &str, genesis: &Genesis) -> (Arc<Db>, DbChain) {
    // A small memtable so kills also land in flushes.
    let db = Arc::new(Db::open(dir, Options::new().memtable_bytes(64 << 10)).unwrap());
    let chain = DbChain::open(Arc::clone(&db), genesis).unwrap();
    (db, chain)
}

fn child(dir: &str) {
    let genesis = Genesis::devnet(4);
    let (_db, mut chain) = open(dir, &genesis);
    let keys: Vec<_> = (0..SENDERS).map(devnet_account_key).collect();
    let mut out = std::io::stdout().lock();
    loop {
        let height = chain.height() + 1;
        let txs: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let sender = key.verifying_key().to_bytes();
                Arc::new(
                    TxBody {
                        chain_id: genesis.chain_id,
                        sender,
                        nonce: chain.account(&sender).unwrap().nonce,
                        fee: 2,
                        kind: TxKind::Transfer {
                            to: devnet_account_public_keys()[(i + 1) % SENDERS],
                            amount: 5,
                        },
                    }
                    .sign(key)
                    .unwrap(),
                )
            })
            .collect();
        let diff = chain
            .execute(strata_consensus::state::BlockEnv::default(), &txs)
            .unwrap();
        let ids = txs.iter().map(|t| *t.id()).collect();
        let block = Block::new(
            height,
            chain.last_block_id(),
            chain.state_root(),
            [1; 32],
            0,
            ids,
        )
        .unwrap();
        chain.commit(&block, &txs, diff).unwrap();
        writeln!(out, "ACK {height}").unwrap();
        out.flush().unwrap();
    }
}

/// Checks the reopened store; returns its height.
fn check(dir: &str, genesis: &Genesis, supply: u64) -> u64 {
    let (db, chain) = open(dir, genesis);
    // The stored root is the root of the stored state: nothing half applied.
    let mut pairs = Vec::new();
    for kv in db.scan(b"s".to_vec()..b"t".to_vec()).unwrap() {
        let (k, v) = kv.unwrap();
        let path: [u8; 32] = k[1..].try_into().unwrap();
        pairs.push((path, merkle::value_hash(&v)));
    }
    assert_eq!(
        merkle::root_of_sorted(pairs).unwrap(),
        chain.state_root(),
        "state and root disagree"
    );
    let balances: u64 = devnet_account_public_keys()
        .iter()
        .map(|pk| chain.account(pk).unwrap().balance)
        .sum();
    let burned = db
        .get(&[b"s".as_slice(), burned_key().as_slice()].concat())
        .unwrap()
        .map_or(0, |b| u64::from_le_bytes(b.as_slice().try_into().unwrap()));
    assert_eq!(
        balances + burned,
        supply,
        "supply not conserved at height {}",
        chain.height()
    );
    if chain.height() > 0 {
        let (block, txs) = chain
            .finalized(chain.height())
            .expect("the store reads")
            .expect("the last block is stored");
        assert_eq!(*block.id(), chain.last_block_id());
        assert_eq!(txs.len(), SENDERS);
    }
    chain.height()
}

fn run_cycles(test_name: &str, cycles: u64, budget: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_string();
    let genesis = Genesis::devnet(4);
    let supply = genesis.total_supply().unwrap();
    let started = Instant::now();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut last_height = 0;
    for cycle in 0..cycles {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // The child spends its first few hundred ms deriving the devnet keys
        // and opening the store; kill somewhere in the commits after that.
        let delay_ms = 300 + rng % 500;
        let envs = [(CHILD_DIR_ENV, dir_str.clone())];
        let acked = kill::run_and_kill(test_name, &envs, Duration::from_millis(delay_ms))
            .unwrap_or(last_height);
        let height = check(&dir_str, &genesis, supply);
        assert!(
            height >= acked,
            "cycle {cycle}: height {height} below acknowledged {acked}"
        );
        assert!(
            height >= last_height,
            "cycle {cycle}: height went back from {last_height} to {height}"
        );
        last_height = height;
        assert!(
            started.elapsed() < budget,
            "crash test over its time budget"
        );
    }
    eprintln!("{cycles} kill -9 cycles, final height {last_height}");
    assert!(last_height > 0, "no block was ever committed");
}

#[test]
fn kill9_between_and_during_commits() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        return child(&dir);
    }
    run_cycles(
        "kill9_between_and_during_commits",
        30,
        Duration::from_secs(120),
    );
}

#[test]
#[ignore = "long: 300 kill -9 cycles"]
fn kill9_many_commit_cycles() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        return child(&dir);
    }
    run_cycles("kill9_many_commit_cycles", 300, Duration::from_secs(1200));
}
