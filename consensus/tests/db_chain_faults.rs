//! A failure of the node's own store is its own fault, never a peer's:
//! with a real [`DbChain`] over a real `strata_storage::Db` whose state
//! cannot be read, every read path returns an error classified as a local
//! fault (never the default account, never "absent", never an invalid
//! block), and an [`Engine`] handed a valid block by a peer halts instead
//! of penalising that peer.
//!
//! Why on-disk corruption and not an injected I/O error: the storage
//! engine's fault seams (`strata_storage::fault`) wrap only the files it
//! *writes* (WAL, tables, manifests) and tables are read through a memory
//! map, so there is no seam that fails a read. A data block whose crc32 no
//! longer matches is the failing read we can produce: the table reader
//! checks every block's checksum before parsing it and answers
//! `Error::Corruption` naming the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_consensus::db_chain::{state_record_key, DbChain};
use strata_consensus::engine::{
    run_jobs_inline, Chain, Engine, EngineConfig, Message, Output, SubmitError,
};
use strata_consensus::genesis::{
    devnet_account_key, devnet_account_public_keys, Genesis, DEVNET_BALANCE,
};
use strata_consensus::mem_chain::MemChain;
use strata_consensus::sampler::Uniform;
use strata_consensus::state::{account_key, ExecError, READ_AHEAD_TXS_MIN};
use strata_consensus::tx::{Transaction, TxBody, TxKind};
use strata_storage::{Db, Options};

/// Bytes of a state record key: the `s` namespace byte and a 32-byte state
/// key (db_chain.rs, "Key layout").
const STATE_RECORD_KEY_BYTES: usize = 33;

/// A devnet store at genesis whose data block holding one account's state
/// record is damaged on disk.
struct DamagedStore {
    dir: tempfile::TempDir,
    genesis: Genesis,
    /// Devnet account whose state record is in the damaged block.
    victim: usize,
    /// Devnet account whose state record is in an undamaged block.
    healthy: usize,
}

fn sst_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    v.sort();
    v
}

impl DamagedStore {
    /// Writes the devnet genesis (bulk-ingested straight into tables),
    /// closes the store, and flips one byte of a state record key that a
    /// data block stores whole (a restart point; docs/storage-format.md):
    /// that block's crc32 no longer matches. The account picked is the
    /// median of those found, so its block holds state records only (not
    /// the meta, genesis or trie records that opening the chain reads).
    fn new() -> DamagedStore {
        let genesis = Genesis::devnet(4);
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
            let chain = DbChain::open(Arc::clone(&db), &genesis).unwrap();
            drop(chain);
            db.close().unwrap();
        }
        let wanted: HashMap<Vec<u8>, usize> = devnet_account_public_keys()
            .iter()
            .enumerate()
            .map(|(i, pk)| (state_record_key(&account_key(pk)), i))
            .collect();
        // (record key, account, file, offset) of every record stored whole.
        let mut found: Vec<(Vec<u8>, usize, PathBuf, usize)> = Vec::new();
        for path in sst_files(dir.path()) {
            let bytes = std::fs::read(&path).unwrap();
            for (at, window) in bytes.windows(STATE_RECORD_KEY_BYTES).enumerate() {
                if window[0] == b's' {
                    if let Some(&account) = wanted.get(window) {
                        found.push((window.to_vec(), account, path.clone(), at));
                    }
                }
            }
        }
        assert!(
            found.len() >= 8,
            "only {} devnet state records found whole in the tables: has the \
             table format changed (compression, restart points)?",
            found.len()
        );
        found.sort();
        let (_, victim, path, at) = found[found.len() / 2].clone();
        let healthy = found[1].1;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0x5a;
        std::fs::write(&path, bytes).unwrap();
        DamagedStore {
            dir,
            genesis,
            victim,
            healthy,
        }
    }

    /// Opens the damaged store: opening reads only undamaged blocks.
    fn open(&self) -> DbChain {
        let db = Arc::new(Db::open(self.dir.path(), Options::new()).unwrap());
        DbChain::open(db, &self.genesis).expect("the damage is not in a block open reads")
    }
}

/// A signed transfer from devnet account `from` to `to`.
fn transfer(genesis: &Genesis, from: usize, to: usize, nonce: u64) -> Arc<Transaction> {
    let key = devnet_account_key(from);
    Arc::new(
        TxBody {
            chain_id: genesis.chain_id,
            sender: key.verifying_key().to_bytes(),
            nonce,
            fee: 1,
            kind: TxKind::Transfer {
                to: devnet_account_public_keys()[to],
                amount: 5,
            },
        }
        .sign(&key)
        .unwrap(),
    )
}

/// A local fault, and no verdict on the transactions.
fn assert_local(what: &str, result: Result<impl std::fmt::Debug, ExecError>) {
    match result {
        Err(e @ ExecError::Read(_)) | Err(e @ ExecError::CorruptState(_)) => {
            assert!(e.is_local_fault(), "{what}: {e} is not a local fault");
        }
        Err(e) => panic!("{what}: {e} blames the transactions, not the store"),
        Ok(v) => panic!("{what}: read through a damaged block as if it were fine: {v:?}"),
    }
}

/// Every read of state that lands on the damaged block fails as the
/// node's own fault: the account is an error (never the default account
/// a missing record reads as), the state value an error (never "absent"),
/// and a block touching it a local fault (never an invalid block), on the
/// plain and the read-ahead execution paths alike. Reads elsewhere still
/// work, so the store is otherwise usable.
#[test]
fn a_damaged_state_block_is_a_local_fault_never_a_default_account_or_invalid_block() {
    let store = DamagedStore::new();
    let chain = store.open();
    let g = &store.genesis;
    let victim_pk = devnet_account_public_keys()[store.victim];
    let healthy_pk = devnet_account_public_keys()[store.healthy];

    let healthy = chain
        .account(&healthy_pk)
        .expect("an undamaged block reads");
    assert_eq!(healthy.balance, DEVNET_BALANCE);
    match chain.account(&victim_pk) {
        Err(fault) => assert!(fault.0.contains(".sst"), "name the file: {fault}"),
        Ok(a) => panic!("the damaged account read as {a:?}"),
    }
    assert!(
        chain.state_value(&account_key(&victim_pk)).is_err(),
        "the damaged record read as a value or as absent"
    );

    // The sender's record is damaged; then only the recipient's.
    assert_local(
        "executing a transfer from the damaged account",
        chain.execute(
            strata_consensus::state::BlockEnv::default(),
            &[transfer(g, store.victim, store.healthy, 0)],
        ),
    );
    assert_local(
        "executing a transfer to the damaged account",
        chain.execute(
            strata_consensus::state::BlockEnv::default(),
            &[transfer(g, store.healthy, store.victim, 0)],
        ),
    );
    // A block large enough to be read ahead on several threads first.
    let mut big: Vec<Arc<Transaction>> = (0..READ_AHEAD_TXS_MIN)
        .map(|i| (i + 1000) % devnet_account_public_keys().len())
        .filter(|&from| from != store.victim)
        .map(|from| transfer(g, from, store.healthy, 0))
        .collect();
    big.push(transfer(g, store.victim, store.healthy, 0));
    assert!(big.len() >= READ_AHEAD_TXS_MIN);
    assert_local(
        "executing a read-ahead block",
        chain.execute(strata_consensus::state::BlockEnv::default(), &big),
    );

    // The other threads' view of the same state: the workers' balance
    // pre-check and the block checker.
    let committed = chain.committed_state();
    assert_local(
        "the workers' account read",
        committed.accounts(&[healthy_pk, victim_pk]),
    );
    assert_local(
        "the block checker's execution",
        committed.execute(
            strata_consensus::state::BlockEnv::default(),
            &[transfer(g, store.victim, store.healthy, 0)],
        ),
    );
    // The API's reader (one snapshot).
    assert!(
        chain.reader().account(&victim_pk).is_err(),
        "the API would show the damaged account as a default one"
    );
}

/// A validator whose disk fails under the state a peer's valid block
/// reads halts, and its outputs penalise no one: the block is not
/// "invalid" and the peer that served it is not to blame (before the
/// engine told local faults apart, such a peer was banned; see
/// `a_local_read_failure_halts_and_blames_no_one` in engine.rs, which
/// does this with a stub chain).
#[test]
fn a_peers_valid_block_over_a_failing_disk_halts_the_engine_and_blames_no_one() {
    let store = DamagedStore::new();
    let mut damaged = store.open();
    let g = &store.genesis;
    let validators = g.validator_set().unwrap();
    // The proposer runs on a healthy chain with the same genesis.
    let mut healthy = MemChain::new(g);
    assert_eq!(healthy.state_root(), damaged.state_root());
    assert_eq!(healthy.last_block_id(), damaged.last_block_id());

    let mut proposer = Engine::new(
        validators[0].public_key,
        &validators,
        &Uniform,
        EngineConfig::default(),
        &healthy,
        1,
        0,
    );
    let mut me = Engine::new(
        validators[1].public_key,
        &validators,
        &Uniform,
        EngineConfig::default(),
        &damaged,
        2,
        0,
    );
    let tx = transfer(g, store.victim, store.healthy, 0);
    assert_eq!(
        proposer.submit(vec![(*tx).clone()], &healthy, 0),
        1,
        "the proposer admits a valid transfer"
    );
    // Well past every rank's proposal delay: the proposer proposes and
    // executes its block.
    let out = proposer.on_tick(&mut healthy, 10_000, 10_000);
    run_jobs_inline(&mut proposer, &mut healthy, out, 10_000);
    let block = proposer.preference().expect("the proposer proposed");

    let from = validators[0].public_key;
    let mut outputs = Vec::new();
    let out = me.on_tick(&mut damaged, 10_000, 10_000);
    let polls = run_jobs_inline(&mut me, &mut damaged, out, 10_000);
    let poll_id = polls
        .iter()
        .find_map(|o| match o {
            Output::Send {
                to,
                msg: Message::Query { poll_id, .. },
            } if *to == from => Some(*poll_id),
            _ => None,
        })
        .expect("a poll asks the proposer");
    outputs.extend(polls);
    let vote = Message::Vote {
        poll_id,
        height: 1,
        block: Some(block),
    };
    let out = me.on_message(from, vote, &mut damaged, 10_001);
    let out = run_jobs_inline(&mut me, &mut damaged, out, 10_001);
    let pull = out
        .iter()
        .find_map(|o| match o {
            Output::Send { to, msg } if *to == from && matches!(msg, Message::GetBlock { .. }) => {
                Some(msg.clone())
            }
            _ => None,
        })
        .expect("the vote for an unknown block pulls it from the voter");
    outputs.extend(out);
    let served = proposer.on_message(validators[1].public_key, pull, &mut healthy, 10_001);
    let data = served
        .into_iter()
        .find_map(|o| match o {
            Output::Send {
                msg: msg @ Message::BlockData { .. },
                ..
            } => Some(msg),
            _ => None,
        })
        .expect("the proposer serves its block");
    let out = me.on_message(from, data, &mut damaged, 10_002);
    let out = run_jobs_inline(&mut me, &mut damaged, out, 10_002);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Halted { reason } if reason.contains(".sst"))),
        "no halt naming the damaged file: {out:?}"
    );
    outputs.extend(out);
    // Later input is ignored, and still blames no one; a client's
    // transaction is refused as the node's own failure.
    let out = me.on_tick(&mut damaged, 20_000, 20_000);
    outputs.extend(run_jobs_inline(&mut me, &mut damaged, out, 20_000));
    assert!(
        matches!(
            me.submit_verified(vec![(*tx).clone()], &damaged, 20_001)[..],
            [Err(SubmitError::Local(_))]
        ),
        "admission over the damaged account is not a local failure"
    );

    let penalties: Vec<&Output> = outputs
        .iter()
        .filter(|o| matches!(o, Output::Penalize { .. }))
        .collect();
    assert!(penalties.is_empty(), "peers blamed: {penalties:?}");
    assert!(me.halted().is_some(), "the engine did not halt");
    assert_eq!(
        me.stats().invalid_blocks,
        0,
        "the valid block was counted invalid"
    );
    assert_eq!(
        me.preference(),
        None,
        "the unexecuted block became a preference"
    );
}
