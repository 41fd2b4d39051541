//! Contracts.
//!
//! `wasm/call`: what the node does when a block is final (execute +
//! commit on a `DbChain`: the state diff, the trie update and one synced
//! batch), for a block of 1,000 token transfers through the example token
//! contract (`examples/contracts/token.wat`, function `strata`), next to
//! a block of 1,000 native transfers (function `native`) on a store of
//! the same size, in the same run. Each of 1,000 senders sends one
//! transfer per block; every iteration commits the next block (nonces one
//! higher). The ratio is what running a transfer as a contract costs
//! (target: ≥ 25 % of native). Signatures are not in the timed part of
//! either: they cost the same for both kinds.
//!
//! `wasm/host_call`: a contract calling the cheapest host function
//! (`block_height`) 10,000 times (`host`) and the same loop without the
//! call (`plain`): their difference over 10,000 is one host call's cost.
//!
//! `wasm/gas`: a loop of plain instructions run to a gas limit of
//! 10,000,000: elements per second is gas per second.
//!
//! With `--features compare`, the runtime not chosen beside the one
//! chosen: `wasm/engine/compile` compiles the example token module, and
//! `wasm/engine/fuel` runs the same loop to 10,000,000 units of fuel, in
//! wasmi (as `strata-vm` configures it) and in wasmtime (Cranelift, fuel
//! on, floats and SIMD still allowed: its nearest configuration).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ed25519_dalek::SigningKey;
use strata_consensus::block::Block;
use strata_consensus::contract::{contract_id, Receipt, ReceiptStatus};
use strata_consensus::db_chain::DbChain;
use strata_consensus::engine::Chain;
use strata_consensus::genesis::{devnet_account_key, Genesis, DEVNET_CHAIN_ID};
use strata_consensus::state::BlockEnv;
use strata_consensus::tx::{Transaction, TxBody, TxKind};
use strata_storage::{Db, Options};
use strata_vm::{CallContext, Vm};

const TOKEN: &str = include_str!("../../examples/contracts/token.wat");
/// Transactions per block, one per sender.
const BLOCK_TXS: usize = 1_000;
/// Gas each token transfer is given (it uses about a third).
const CALL_GAS: u64 = 200_000;

struct Fixture {
    chain: DbChain,
    keys: Vec<SigningKey>,
    nonces: Vec<u64>,
    token: [u8; 32],
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A devnet chain; with `token`, the token deployed by account 0 and
    /// 1,000 tokens given to each sender.
    fn new(token: bool) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = Options::new()
            .memtable_bytes(64 << 20)
            .zstd_level(None)
            .block_cache_bytes(256 << 20);
        let db = Arc::new(Db::open(dir.path(), options).expect("open db"));
        let chain = DbChain::open(db, &Genesis::devnet(4)).expect("genesis commits");
        let keys: Vec<SigningKey> = (0..=BLOCK_TXS).map(devnet_account_key).collect();
        let mut f = Fixture {
            chain,
            nonces: vec![0; keys.len()],
            keys,
            token: contract_id(&devnet_account_key(0).verifying_key().to_bytes(), 0),
            _dir: dir,
        };
        if token {
            let code = wat::parse_str(TOKEN).expect("the token parses");
            let deploy = f.tx(
                0,
                TxKind::Deploy {
                    code,
                    gas_limit: 10_000_000,
                    gas_price: 1,
                },
            );
            f.commit(&[deploy]);
            let init = f.call(
                0,
                "init",
                (BLOCK_TXS as u64 * 1_000_000).to_le_bytes().to_vec(),
            );
            f.commit(&[init]);
            let gifts: Vec<_> = (1..=BLOCK_TXS)
                .map(|s| {
                    let mut input = f.keys[s].verifying_key().to_bytes().to_vec();
                    input.extend_from_slice(&1_000_000u64.to_le_bytes());
                    f.call(0, "transfer", input)
                })
                .collect();
            let receipts = f.commit(&gifts);
            assert!(receipts.iter().all(|r| r.status == ReceiptStatus::Success));
        }
        f
    }

    fn tx(&mut self, sender: usize, kind: TxKind) -> Arc<Transaction> {
        let key = &self.keys[sender];
        let tx = TxBody {
            chain_id: DEVNET_CHAIN_ID,
            sender: key.verifying_key().to_bytes(),
            nonce: self.nonces[sender],
            fee: 1,
            kind,
        }
        .sign(key)
        .expect("a devnet key signs its own transactions");
        self.nonces[sender] += 1;
        Arc::new(tx)
    }

    fn call(&mut self, sender: usize, entry: &str, input: Vec<u8>) -> Arc<Transaction> {
        let token = self.token;
        self.tx(
            sender,
            TxKind::Call {
                contract: token,
                value: 0,
                gas_limit: CALL_GAS,
                gas_price: 1,
                entry: entry.into(),
                input,
            },
        )
    }

    /// The next block, holding `txs`.
    fn block_of(&self, txs: &[Arc<Transaction>]) -> Block {
        let mut ids: Vec<_> = txs.iter().map(|t| *t.id()).collect();
        ids.sort_unstable();
        Block::new(
            self.chain.height() + 1,
            self.chain.last_block_id(),
            self.chain.state_root(),
            [0; 32],
            0,
            ids,
        )
        .expect("a block")
    }

    /// Executes and commits `txs` as the next block; the receipts.
    fn commit(&mut self, txs: &[Arc<Transaction>]) -> Vec<Receipt> {
        let block = self.block_of(txs);
        let diff = self
            .chain
            .execute(BlockEnv::of(&block), txs)
            .expect("the block applies");
        self.chain.commit(&block, txs, diff).expect("commit");
        let reader = self.chain.reader();
        txs.iter()
            .filter_map(|t| reader.receipt(t.id()).expect("read"))
            .collect()
    }

    /// One block: every sender sends 1 (token or native) to the next.
    fn next_block(&mut self, token: bool) -> Vec<Arc<Transaction>> {
        (1..=BLOCK_TXS)
            .map(|s| {
                let to = self.keys[s % BLOCK_TXS + 1].verifying_key().to_bytes();
                if token {
                    let mut input = to.to_vec();
                    input.extend_from_slice(&1u64.to_le_bytes());
                    self.call(s, "transfer", input)
                } else {
                    self.tx(s, TxKind::Transfer { to, amount: 1 })
                }
            })
            .collect()
    }

    fn commit_blocks(&mut self, iters: u64, token: bool) -> Duration {
        let mut timed = Duration::ZERO;
        for _ in 0..iters {
            let txs = self.next_block(token);
            let block = self.block_of(&txs);
            let started = Instant::now();
            let diff = self
                .chain
                .execute(BlockEnv::of(&block), &txs)
                .expect("the block applies");
            let executed = started.elapsed();
            self.chain.commit(&block, &txs, diff).expect("commit");
            timed += started.elapsed();
            if std::env::var("WASM_SPLIT").is_ok() {
                eprintln!(
                    "execute {executed:?} commit {:?}",
                    started.elapsed() - executed
                );
            }
        }
        timed
    }
}

fn call(c: &mut Criterion) {
    let mut token = Fixture::new(true);
    // Every transfer of a block succeeds, and uses what the docs say.
    let probe = token.next_block(true);
    let receipts = token.commit(&probe);
    assert!(receipts.iter().all(|r| r.status == ReceiptStatus::Success));
    eprintln!(
        "wasm/call: a token transfer uses {} gas",
        receipts[0].gas_used
    );
    let mut native = Fixture::new(false);
    let mut group = c.benchmark_group("wasm/call");
    group
        .throughput(Throughput::Elements(BLOCK_TXS as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("strata", |b| {
        b.iter_custom(|iters| token.commit_blocks(iters, true))
    });
    group.bench_function("native", |b| {
        b.iter_custom(|iters| native.commit_blocks(iters, false))
    });
    group.finish();
}

const LOOP: &str = r#"(module
  (import "strata" "block_height" (func $height (result i64)))
  (memory (export "memory") 1)
  (func (export "host") (local $i i32) (local $s i64)
    (loop $l
      (local.set $s (i64.add (local.get $s) (call $height)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000)))))
  (func (export "plain") (local $i i32) (local $s i64)
    (loop $l
      (local.set $s (i64.add (local.get $s) (i64.extend_i32_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000)))))
  (func (export "spin") (local $i i64)
    (loop $l
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l))))"#;

fn host_and_gas(c: &mut Criterion) {
    let vm = Vm::new();
    let module = vm
        .deploy_check(&wat::parse_str(LOOP).expect("the loop parses"))
        .expect("deployable");
    let store: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let ctx = CallContext::default();
    let mut group = c.benchmark_group("wasm/host_call");
    group.throughput(Throughput::Elements(10_000));
    for entry in ["host", "plain"] {
        group.bench_function(entry, |b| {
            b.iter(|| {
                let out = vm
                    .call(&module, &ctx, entry, &[], 10_000_000, &store)
                    .expect("no local fault");
                assert_eq!(out.status, strata_vm::Status::Success);
                out
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("wasm/gas");
    let gas = 10_000_000;
    group.throughput(Throughput::Elements(gas));
    group.bench_function("strata", |b| {
        b.iter(|| {
            let out = vm
                .call(&module, &ctx, "spin", &[], gas, &store)
                .expect("no local fault");
            assert_eq!(out.status, strata_vm::Status::OutOfGas);
            out
        })
    });
    group.finish();
}

#[cfg(feature = "compare")]
fn engines(c: &mut Criterion) {
    let token = wat::parse_str(TOKEN).expect("the token parses");
    let spin = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "spin") (local $i i64)
               (loop $l (local.set $i (i64.add (local.get $i) (i64.const 1))) (br $l))))"#,
    )
    .expect("the loop parses");
    let vm = Vm::new();
    let mut config = wasmtime::Config::new();
    config.consume_fuel(true);
    let engine = wasmtime::Engine::new(&config).expect("wasmtime engine");

    let mut group = c.benchmark_group("wasm/engine/compile");
    group.throughput(Throughput::Bytes(token.len() as u64));
    group.bench_function("wasmi", |b| {
        b.iter(|| vm.deploy_check(&token).expect("deployable"))
    });
    group.bench_function("wasmtime", |b| {
        b.iter(|| wasmtime::Module::new(&engine, &token).expect("compiles"))
    });
    group.finish();

    let fuel = 10_000_000u64;
    let mut group = c.benchmark_group("wasm/engine/fuel");
    group.throughput(Throughput::Elements(fuel));
    let module = vm.deploy_check(&spin).expect("deployable");
    let store: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    group.bench_function("wasmi", |b| {
        b.iter(|| {
            let out = vm
                .call(&module, &CallContext::default(), "spin", &[], fuel, &store)
                .expect("no local fault");
            assert_eq!(out.status, strata_vm::Status::OutOfGas);
        })
    });
    let wt_module = wasmtime::Module::new(&engine, &spin).expect("compiles");
    group.bench_function("wasmtime", |b| {
        b.iter(|| {
            let mut store = wasmtime::Store::new(&engine, ());
            store.set_fuel(fuel).expect("fuel on");
            let instance =
                wasmtime::Instance::new(&mut store, &wt_module, &[]).expect("instantiates");
            let f = instance
                .get_typed_func::<(), ()>(&mut store, "spin")
                .expect("exported");
            assert!(f.call(&mut store, ()).is_err(), "runs out of fuel");
        })
    });
    group.finish();
}

#[cfg(not(feature = "compare"))]
fn engines(_: &mut Criterion) {}

criterion_group!(benches, call, host_and_gas, engines);
criterion_main!(benches);
