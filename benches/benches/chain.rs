//! `mempool/ingest`: the path a transaction batch from the network takes —
//! decode, batch-verify signatures, insert into the mempool — on one core,
//! next to the raw cost of verifying the same signatures with
//! `ed25519_dalek::verify_batch` (function `ed25519_verify_batch`), measured
//! in the same run. The ratio says how close ingest gets to the
//! verification limit (target: ≥ 85 %).
//!
//! `strata_signatures` is strata's signature check alone
//! (`strata_consensus::signature::Batch`, the node's cofactored rule, keys
//! already decompressed) on the same batches: the like-for-like rival of
//! `ed25519_verify_batch`.
//!
//! Workload: 4,096 signed transfers from 1,024 devnet senders (4 nonces
//! each), per iteration, nonce-major (every sender's nonce 0, then every
//! nonce 1, ...): each batch of 256 holds 256 different senders, as under
//! a devnet's load, so strata's batch gains nothing from grouping one
//! sender's signatures. The verifier's sender-key cache is warm, as it is in
//! a node that keeps seeing the same active senders; the raw rival likewise
//! gets its keys already decompressed.
//!
//! `chain/commit`: what the node does when a block is final — execute it
//! against the finalized state, update the sparse merkle trie and write
//! state, trie pages, block and transactions in one synced batch
//! (`DbChain::execute` + `DbChain::commit`) — for a block of 10,000 signed
//! transfers on a 1,000,000-account state, in transactions per second.
//! Signing and block building happen outside the timed part
//! (`iter_custom`); every iteration commits the next block, with every
//! sender's nonce one higher. The rival, `strata_without_trie`, is the same
//! execution and the same synced batch minus the trie update and its pages
//! (state, block, transactions, indexes), on its own store holding the same
//! 1 M accounts: the ratio is what the state commitment costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use strata_consensus::block::Block;
use strata_consensus::db_chain::{self, DbChain};
use strata_consensus::engine::Chain;
use strata_consensus::genesis::{devnet_account_key, Genesis, DEVNET_CHAIN_ID};
use strata_consensus::mempool::{Mempool, MempoolConfig};
use strata_consensus::signature::{self, SenderKey};
use strata_consensus::state::{self, ExecError, StateKey, StateReader};
use strata_consensus::synthetic::{self, SyntheticAccounts, SyntheticKey};
use strata_consensus::tx::{Transaction, TxBody, TxKind, TxSigner};
use strata_consensus::verify::{Verdict, Verifier};
use strata_storage::{Db, Options, WriteBatch, WriteOptions};

const SENDERS: usize = 1024;
const NONCES: u64 = 4;
/// Every sender's account as the mempool sees it: able to pay for all.
const RICH: state::Account = state::Account {
    balance: u64::MAX,
    nonce: 0,
};

fn workload() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let keys: Vec<SigningKey> = (0..SENDERS).map(devnet_account_key).collect();
    for nonce in 0..NONCES {
        for (s, key) in keys.iter().enumerate() {
            let tx = TxBody {
                chain_id: DEVNET_CHAIN_ID,
                sender: key.verifying_key().to_bytes(),
                nonce,
                fee: 1 + (s as u64 % 7),
                kind: TxKind::Transfer {
                    to: [7; 32],
                    amount: 1,
                },
            }
            .sign(key)
            .expect("devnet key signs its own transactions");
            out.push(tx.encoded().to_vec());
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let encoded = workload();
    let n = encoded.len() as u64;
    let mut group = c.benchmark_group("mempool/ingest");
    group
        .throughput(Throughput::Elements(n))
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));

    let mut verifier = Verifier::new();
    group.bench_function("strata", |b| {
        b.iter_batched(
            || {
                Mempool::new(MempoolConfig {
                    txs_max: 8192,
                    ..MempoolConfig::default()
                })
            },
            |mut pool| {
                let txs: Vec<Transaction> = encoded
                    .iter()
                    .map(|bytes| Transaction::decode(bytes).expect("valid workload"))
                    .collect();
                let verdicts = verifier.verify(&txs, DEVNET_CHAIN_ID);
                for (tx, verdict) in txs.into_iter().zip(verdicts) {
                    if verdict == Verdict::Valid {
                        pool.insert(tx, RICH, 0).expect("admitted");
                    }
                }
                assert_eq!(pool.len() as u64, n);
                pool
            },
            BatchSize::PerIteration,
        )
    });

    // The rival: the same signatures through the raw batch API, keys already
    // decompressed and messages already built, in batches of the same size.
    let txs: Vec<Transaction> = encoded
        .iter()
        .map(|b| Transaction::decode(b).unwrap())
        .collect();
    let messages: Vec<Vec<u8>> = txs
        .iter()
        .map(|tx| {
            let mut m = Vec::new();
            tx.signing_message_into(&mut m);
            m
        })
        .collect();
    let signatures: Vec<Signature> = txs
        .iter()
        .map(|tx| Signature::from_bytes(tx.signature()))
        .collect();
    let keys: Vec<VerifyingKey> = txs
        .iter()
        .map(|tx| VerifyingKey::from_bytes(tx.sender()).unwrap())
        .collect();
    let batch = strata_consensus::verify::BATCH_TXS_MAX;
    group.bench_function("ed25519_verify_batch", |b| {
        b.iter(|| {
            for start in (0..txs.len()).step_by(batch) {
                let end = (start + batch).min(txs.len());
                let msgs: Vec<&[u8]> = messages[start..end].iter().map(Vec::as_slice).collect();
                ed25519_dalek::verify_batch(&msgs, &signatures[start..end], &keys[start..end])
                    .expect("valid signatures");
            }
        })
    });
    let sender_keys: Vec<SenderKey> = txs
        .iter()
        .map(|tx| SenderKey::from_bytes(tx.sender()).unwrap())
        .collect();
    let mut strata_batch = signature::Batch::new();
    group.bench_function("strata_signatures", |b| {
        b.iter(|| {
            for start in (0..txs.len()).step_by(batch) {
                let end = (start + batch).min(txs.len());
                strata_batch.clear();
                for i in start..end {
                    assert!(strata_batch.push(&sender_keys[i], &messages[i], txs[i].signature()));
                }
                assert!(strata_batch.verify(), "valid signatures");
            }
        })
    });
    group.finish();
}

/// Accounts in the state `chain/commit` commits onto, unless
/// `STRATA_BENCH_ACCOUNTS` says otherwise.
const COMMIT_ACCOUNTS: u64 = 1_000_000;

fn commit_accounts() -> u64 {
    std::env::var("STRATA_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(COMMIT_ACCOUNTS)
        .max(COMMIT_BLOCK_TXS as u64)
}
/// Transfers per committed block; also the number of senders (one transfer
/// each per block, so each block advances every sender's nonce by one).
const COMMIT_BLOCK_TXS: usize = 10_000;
/// Initial balance of every account: enough for any number of blocks.
const COMMIT_BALANCE: u64 = 1 << 40;

/// The synthetic genesis, the senders' keys and the next nonce.
struct Workload {
    genesis: Genesis,
    accounts: u64,
    senders: Vec<SyntheticKey>,
    next_nonce: u64,
}

const COMMIT_SEED: &str = "strata-bench/chain-commit";

impl Workload {
    /// Senders are [`COMMIT_BLOCK_TXS`] synthetic accounts spread evenly
    /// over the space.
    fn new() -> Workload {
        let accounts = commit_accounts();
        let stride = accounts / COMMIT_BLOCK_TXS as u64;
        let senders = (0..COMMIT_BLOCK_TXS as u64)
            .map(|i| SyntheticKey::derive(COMMIT_SEED, i * stride))
            .collect();
        let mut genesis = Genesis::devnet(1);
        genesis.balances.clear();
        genesis.synthetic = Some(SyntheticAccounts {
            seed: COMMIT_SEED.into(),
            count: accounts,
            balance: COMMIT_BALANCE,
        });
        Workload {
            genesis,
            accounts,
            senders,
            next_nonce: 0,
        }
    }

    /// The next block's transactions: every sender's transfer at the next
    /// nonce to a pseudo-random account, signed on all cores (untimed).
    fn next_txs(&mut self) -> Vec<Arc<Transaction>> {
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = COMMIT_BLOCK_TXS.div_ceil(threads);
        let accounts = self.accounts;
        std::thread::scope(|scope| {
            let parts: Vec<_> = self
                .senders
                .chunks(per)
                .enumerate()
                .map(|(part, keys)| {
                    scope.spawn(move || {
                        keys.iter()
                            .enumerate()
                            .map(|(i, key)| {
                                let n = nonce * COMMIT_BLOCK_TXS as u64 + (part * per + i) as u64;
                                let to = splitmix(n) % accounts;
                                let to = synthetic::public_keys(COMMIT_SEED, to..to + 1, 1)[0];
                                Arc::new(
                                    TxBody {
                                        chain_id: DEVNET_CHAIN_ID,
                                        sender: key.public_key(),
                                        nonce,
                                        fee: 1,
                                        kind: TxKind::Transfer { to, amount: 3 },
                                    }
                                    .sign(key)
                                    .expect("the sender's own key"),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().expect("signing thread"))
                .collect()
        })
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The node's storage settings (`src/config.rs` defaults).
fn node_options() -> Options {
    Options::new()
        .memtable_bytes(64 << 20)
        .zstd_level(None)
        .block_cache_bytes(512 << 20)
}

/// Strata's chain store with the workload's genesis committed.
struct ChainFixture {
    chain: DbChain,
    workload: Workload,
    _dir: tempfile::TempDir,
}

impl ChainFixture {
    fn new() -> ChainFixture {
        let started = Instant::now();
        let workload = Workload::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(Db::open(dir.path(), node_options()).expect("open db"));
        let chain = DbChain::open(db, &workload.genesis).expect("genesis commits");
        eprintln!(
            "chain/commit/strata: {} accounts committed as genesis in {:.1} s",
            workload.accounts,
            started.elapsed().as_secs_f64()
        );
        ChainFixture {
            chain,
            workload,
            _dir: dir,
        }
    }

    /// Commits `iters` blocks, timing only execute + commit.
    fn commit_blocks(&mut self, iters: u64) -> Duration {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let txs = self.workload.next_txs();
            let block = Block::new(
                self.chain.height() + 1,
                self.chain.last_block_id(),
                self.chain.state_root(),
                [0; 32],
                0,
                txs.iter().map(|t| *t.id()).collect(),
            )
            .expect("a block of 10 k transactions");
            let started = Instant::now();
            let diff = self
                .chain
                .execute(state::BlockEnv::of(&block), &txs)
                .expect("every transfer applies");
            self.chain.commit(&block, &txs, diff).expect("commit");
            timed += started.elapsed();
        }
        timed
    }
}

/// Reads state entries from a plain store: the rival's executor input.
struct PlainState<'a>(&'a Db);

impl StateReader for PlainState<'_> {
    fn read(&self, k: &StateKey) -> Result<Option<Vec<u8>>, ExecError> {
        self.0
            .get(&db_chain::state_record_key(k))
            .map_err(|e| ExecError::Read(e.to_string()))
    }
}

/// The rival: the same genesis state in a store without a trie, and the
/// same records per block (keys as `DbChain` lays them out) minus trie
/// pages.
struct PlainFixture {
    db: Db,
    workload: Workload,
    height: u64,
    last_id: [u8; 32],
    _dir: tempfile::TempDir,
}

impl PlainFixture {
    fn new() -> PlainFixture {
        let started = Instant::now();
        let workload = Workload::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path(), node_options()).expect("open db");
        // The same state, bulk-ingested as the node does (minus the trie).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let entries = workload.genesis.state_entries(threads).expect("valid");
        let run = std::iter::once((b"m".to_vec(), 0u64.to_le_bytes().to_vec())).chain(
            entries
                .into_iter()
                .map(|(k, a)| (db_chain::state_record_key(&k), a.encode())),
        );
        db.ingest_sorted(run).expect("ingest");
        eprintln!(
            "chain/commit/strata_without_trie: {} accounts written in {:.1} s",
            workload.accounts,
            started.elapsed().as_secs_f64()
        );
        PlainFixture {
            db,
            workload,
            height: 0,
            last_id: [0; 32],
            _dir: dir,
        }
    }

    /// Commits `iters` blocks, timing only execution and the synced write.
    fn commit_blocks(&mut self, iters: u64) -> Duration {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let txs = self.workload.next_txs();
            let block = Block::new(
                self.height + 1,
                self.last_id,
                [0; 32],
                [0; 32],
                0,
                txs.iter().map(|t| *t.id()).collect(),
            )
            .expect("a block of 10 k transactions");
            let started = Instant::now();
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let diff = state::execute_read_ahead(
                &PlainState(&self.db),
                state::BlockEnv::default(),
                &txs,
                threads,
            )
            .expect("every transfer applies");
            let mut batch = WriteBatch::new();
            for (k, v) in diff.changes {
                match v {
                    Some(v) => batch.put(db_chain::state_record_key(&k), v),
                    None => batch.delete(db_chain::state_record_key(&k)),
                }
            }
            db_chain::stage_block(&mut batch, &block, &txs);
            let height = block.height();
            let mut meta = height.to_le_bytes().to_vec();
            meta.extend_from_slice(block.id());
            batch.put(b"m".to_vec(), meta);
            self.db
                .write(batch, WriteOptions { sync: true })
                .expect("synced write");
            timed += started.elapsed();
            self.height = height;
            self.last_id = *block.id();
        }
        timed
    }
}

fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("chain/commit");
    group
        .throughput(Throughput::Elements(COMMIT_BLOCK_TXS as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));
    {
        // Built on first use, so a filter that skips the group skips the
        // setup too; dropped (store and all) before the rival runs.
        let mut fixture: Option<ChainFixture> = None;
        group.bench_function("strata", |b| {
            let f = fixture.get_or_insert_with(ChainFixture::new);
            b.iter_custom(|iters| f.commit_blocks(iters));
        });
    }
    {
        let mut fixture: Option<PlainFixture> = None;
        group.bench_function("strata_without_trie", |b| {
            let f = fixture.get_or_insert_with(PlainFixture::new);
            b.iter_custom(|iters| f.commit_blocks(iters));
        });
    }
    group.finish();
}

criterion_group!(chain, bench, commit);
criterion_main!(chain);
