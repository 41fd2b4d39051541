//! The runtime against hand-written modules: metering, limits, deploy
//! checks and determinism.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("test WAT parses")
}

fn deploy(wat: &str) -> (Vm, Contract) {
    let vm = Vm::new();
    let c = vm.deploy_check(&wasm(wat)).expect("deployable");
    (vm, c)
}

fn run(wat: &str, entry: &str, gas: u64) -> Outcome {
    let (vm, c) = deploy(wat);
    vm.call(
        &c,
        &CallContext::default(),
        entry,
        &[],
        gas,
        &BTreeMap::new(),
    )
    .expect("no local fault")
}

/// The host imports a test module may use.
const IMPORTS: &str = r#"
  (import "strata" "input_len" (func $input_len (result i32)))
  (import "strata" "input_read" (func $input_read (param i32)))
  (import "strata" "storage_read" (func $storage_read (param i32 i32 i32 i32) (result i32)))
  (import "strata" "storage_write" (func $storage_write (param i32 i32 i32 i32)))
  (import "strata" "emit" (func $emit (param i32 i32)))
  (import "strata" "set_return" (func $set_return (param i32 i32)))
  (import "strata" "revert" (func $revert (param i32 i32)))
  (import "strata" "transfer" (func $transfer (param i32 i64) (result i32)))
  (import "strata" "balance" (func $balance (result i64)))
"#;

/// A counter: key "n" (8 bytes LE) + 1, emits the new value and returns it.
fn counter() -> String {
    format!(
        r#"(module {IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 0) "n")
  (func (export "bump")
    (local $len i32)
    (local.set $len (call $storage_read (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 8)))
    (if (i32.eq (local.get $len) (i32.const -1))
      (then (i64.store (i32.const 16) (i64.const 0))))
    (i64.store (i32.const 16) (i64.add (i64.load (i32.const 16)) (i64.const 1)))
    (call $storage_write (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 8))
    (call $emit (i32.const 16) (i32.const 8))
    (call $set_return (i32.const 16) (i32.const 8)))
  (func (export "bump_then_revert")
    (call $storage_write (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 8))
    (call $revert (i32.const 0) (i32.const 1))))"#
    )
}

#[test]
fn a_counter_reads_writes_emits_and_returns() {
    let (vm, c) = deploy(&counter());
    let mut store = BTreeMap::new();
    for want in 1..=3u64 {
        let out = vm
            .call(&c, &CallContext::default(), "bump", &[], 1_000_000, &store)
            .unwrap();
        assert_eq!(out.status, Status::Success);
        let v = want.to_le_bytes().to_vec();
        assert_eq!(
            out.writes.get(&([0; 32], b"n".to_vec())),
            Some(&Some(v.clone()))
        );
        assert_eq!(out.events, vec![([0; 32], v.clone())]);
        assert_eq!(out.return_data, v);
        assert!(out.gas_used > limits::STORAGE_WRITE_GAS, "{}", out.gas_used);
        store.insert(b"n".to_vec(), v);
    }
}

#[test]
fn a_revert_drops_the_writes_and_says_why() {
    let out = run(&counter(), "bump_then_revert", 1_000_000);
    assert_eq!(out.status, Status::Reverted("n".into()));
    assert!(out.writes.is_empty() && out.events.is_empty());
    assert!(out.gas_used > 0);
}

#[test]
fn the_same_call_gives_the_same_outcome_and_gas() {
    let (vm, c) = deploy(&counter());
    let store: BTreeMap<Vec<u8>, Vec<u8>> = [(b"n".to_vec(), 41u64.to_le_bytes().to_vec())].into();
    let a = vm.call(&c, &CallContext::default(), "bump", &[], 100_000, &store);
    let other = Vm::new();
    let c2 = other.deploy_check(&wasm(&counter())).unwrap();
    let b = other.call(&c2, &CallContext::default(), "bump", &[], 100_000, &store);
    assert_eq!(a, b);
}

#[test]
fn an_infinite_loop_ends_out_of_gas_charged_in_full() {
    let out = run(
        r#"(module (memory (export "memory") 1)
             (func (export "spin") (loop $l (br $l))))"#,
        "spin",
        200_000,
    );
    assert_eq!(out.status, Status::OutOfGas);
    assert_eq!(out.gas_used, 200_000);
}

#[test]
fn a_gas_limit_above_the_maximum_is_capped() {
    let out = run(
        r#"(module (memory (export "memory") 1)
             (func (export "spin") (loop $l (br $l))))"#,
        "spin",
        u64::MAX,
    );
    assert_eq!(out.status, Status::OutOfGas);
    assert_eq!(out.gas_used, limits::GAS_LIMIT_MAX);
}

#[test]
fn deep_recursion_traps_on_the_stack_limit() {
    let out = run(
        r#"(module (memory (export "memory") 1)
             (func $down (call $down))
             (func (export "deep") (call $down)))"#,
        "deep",
        10_000_000,
    );
    assert!(
        matches!(&out.status, Status::Trapped(t) if t.contains("StackOverflow")),
        "{:?}",
        out.status
    );
    assert!(out.gas_used < 10_000_000);
}

#[test]
fn memory_cannot_grow_past_the_limit() {
    // Grows one page at a time until refused; returns the page count.
    let out = run(
        r#"(module (import "strata" "set_return" (func $set_return (param i32 i32)))
             (memory (export "memory") 1)
             (func (export "grow")
               (block $done (loop $l
                 (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
                 (br $l)))
               (i32.store (i32.const 0) (memory.size))
               (call $set_return (i32.const 0) (i32.const 4))))"#,
        "grow",
        1_000_000,
    );
    assert_eq!(out.status, Status::Success);
    assert_eq!(out.return_data, limits::MEMORY_PAGES_MAX.to_le_bytes());
    let bomb = run(
        r#"(module (memory (export "memory") 1)
             (func (export "bomb") (drop (memory.grow (i32.const 65535)))))"#,
        "bomb",
        1_000_000,
    );
    assert_eq!(bomb.status, Status::Success, "refused, not granted");
}

#[test]
fn a_storage_bomb_ends_at_a_limit_or_out_of_gas() {
    // Writes key i (4 bytes) = 1 KiB for i = 0, 1, 2, … forever.
    let bomb = format!(
        r#"(module {IMPORTS} (memory (export "memory") 1)
             (func (export "bomb") (local $i i32)
               (loop $l
                 (i32.store (i32.const 0) (local.get $i))
                 (call $storage_write (i32.const 0) (i32.const 4) (i32.const 64) (i32.const 1024))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br $l))))"#
    );
    let capped = run(&bomb, "bomb", limits::GAS_LIMIT_MAX);
    assert_eq!(capped.status, Status::LimitExceeded("writes per call"));
    assert!(capped.writes.is_empty());
    let poor = run(&bomb, "bomb", 100_000);
    assert_eq!(poor.status, Status::OutOfGas);
    assert_eq!(poor.gas_used, 100_000);
}

#[test]
fn lengths_and_pointers_from_the_contract_are_checked() {
    let long_key = format!(
        r#"(module {IMPORTS} (memory (export "memory") 1)
             (func (export "f") (call $storage_write (i32.const 0) (i32.const 129) (i32.const 0) (i32.const 1))))"#
    );
    assert_eq!(
        run(&long_key, "f", 1_000_000).status,
        Status::LimitExceeded("storage key")
    );
    let outside = format!(
        r#"(module {IMPORTS} (memory (export "memory") 1)
             (func (export "f") (call $emit (i32.const 65530) (i32.const 100))))"#
    );
    assert_eq!(
        run(&outside, "f", 1_000_000).status,
        Status::Trapped("memory access out of bounds".into())
    );
    let negative = format!(
        r#"(module {IMPORTS} (memory (export "memory") 1)
             (func (export "f") (call $set_return (i32.const 0) (i32.const -1))))"#
    );
    assert_eq!(
        run(&negative, "f", 1_000_000).status,
        Status::Trapped("memory access out of bounds".into())
    );
}

#[test]
fn transfers_never_exceed_the_balance() {
    let (vm, c) = deploy(&format!(
        r#"(module {IMPORTS} (memory (export "memory") 1)
             (func (export "pay")
               (i32.store (i32.const 100) (call $transfer (i32.const 0) (i64.const 60)))
               (i32.store (i32.const 104) (call $transfer (i32.const 0) (i64.const 60)))
               (i64.store (i32.const 108) (call $balance))
               (call $set_return (i32.const 100) (i32.const 16))))"#
    ));
    let ctx = CallContext {
        contract: [9; 32],
        balance: 100,
        ..CallContext::default()
    };
    let out = vm
        .call(&c, &ctx, "pay", &[], 1_000_000, &BTreeMap::new())
        .unwrap();
    assert_eq!(out.status, Status::Success);
    assert_eq!(out.transfers, vec![([9; 32], [0; 32], 60)]);
    let mut want = Vec::new();
    want.extend_from_slice(&0i32.to_le_bytes());
    want.extend_from_slice(&1i32.to_le_bytes());
    want.extend_from_slice(&40u64.to_le_bytes());
    assert_eq!(out.return_data, want);
}

#[test]
fn input_reaches_the_contract_and_unknown_entries_are_named() {
    let echo = format!(
        r#"(module {IMPORTS} (memory (export "memory") 1)
             (func (export "echo")
               (call $input_read (i32.const 0))
               (call $set_return (i32.const 0) (call $input_len))))"#
    );
    let (vm, c) = deploy(&echo);
    let store = BTreeMap::new();
    let ctx = CallContext::default();
    let out = vm
        .call(&c, &ctx, "echo", b"hello", 100_000, &store)
        .unwrap();
    assert_eq!(out.return_data, b"hello");
    assert_eq!(
        vm.call(&c, &ctx, "nope", b"", 100_000, &store)
            .unwrap()
            .status,
        Status::NoSuchEntry
    );
    assert_eq!(
        vm.call(&c, &ctx, "memory", b"", 100_000, &store)
            .unwrap()
            .status,
        Status::NoSuchEntry
    );
    let big = vec![0; limits::INPUT_BYTES_MAX + 1];
    assert_eq!(
        vm.call(&c, &ctx, "echo", &big, 100_000, &store)
            .unwrap()
            .status,
        Status::LimitExceeded("input bytes")
    );
}

struct Broken;

impl ContractStore for Broken {
    fn read(&self, _: &[u8; 32], _: &[u8]) -> Result<Option<Vec<u8>>, LocalFault> {
        Err(LocalFault("disk gone".into()))
    }
}

#[test]
fn a_failed_state_read_is_the_nodes_fault_not_an_outcome() {
    let (vm, c) = deploy(&counter());
    assert_eq!(
        vm.call(&c, &CallContext::default(), "bump", &[], 1_000_000, &Broken),
        Err(LocalFault("disk gone".into()))
    );
}

#[test]
fn deploy_refuses_what_cannot_run_the_same_everywhere() {
    let vm = Vm::new();
    let check = |wat: &str| vm.deploy_check(&wasm(wat)).map(|_| ());
    assert!(matches!(
        vm.deploy_check(&vec![0; limits::CODE_BYTES_MAX + 1]),
        Err(DeployError::TooLarge { .. })
    ));
    assert_eq!(
        vm.deploy_check(b"(module)").unwrap_err(),
        DeployError::NotWasm
    );
    assert!(matches!(
        vm.deploy_check(b"\0asm\x01\0\0\0garbage"),
        Err(DeployError::Invalid(_))
    ));
    let floats = check(
        r#"(module (memory (export "memory") 1)
             (func (export "f") (drop (f32.add (f32.const 1) (f32.const 2)))))"#,
    );
    assert!(matches!(floats, Err(DeployError::Invalid(_))), "{floats:?}");
    let start =
        check(r#"(module (memory (export "memory") 1) (func $s) (start $s) (func (export "f")))"#);
    assert!(matches!(start, Err(DeployError::Invalid(_))), "{start:?}");
    let env = check(
        r#"(module (import "env" "abort" (func)) (memory (export "memory") 1) (func (export "f")))"#,
    );
    assert!(matches!(env, Err(DeployError::Import { .. })), "{env:?}");
    let unknown = check(
        r#"(module (import "strata" "exec" (func)) (memory (export "memory") 1) (func (export "f")))"#,
    );
    assert!(
        matches!(unknown, Err(DeployError::Import { .. })),
        "{unknown:?}"
    );
    let wrong_sig = check(
        r#"(module (import "strata" "emit" (func (param i32))) (memory (export "memory") 1) (func (export "f")))"#,
    );
    assert!(
        matches!(wrong_sig, Err(DeployError::Import { .. })),
        "{wrong_sig:?}"
    );
    let imported_memory =
        check(r#"(module (import "strata" "memory" (memory 1)) (func (export "f")))"#);
    assert!(
        matches!(imported_memory, Err(DeployError::Import { .. })),
        "{imported_memory:?}"
    );
    assert!(matches!(
        check(r#"(module (func (export "f")))"#),
        Err(DeployError::Memory(_))
    ));
    assert!(matches!(
        check(r#"(module (memory (export "memory") 17) (func (export "f")))"#),
        Err(DeployError::Memory(_))
    ));
    assert_eq!(
        check(r#"(module (memory (export "memory") 1) (func (export "f") (param i32)))"#),
        Err(DeployError::NoEntry)
    );
}

/// Every host function of the table is defined with the signature the
/// deploy check demands: a module importing all of them deploys and runs.
#[test]
fn every_host_function_links() {
    let mut wat = format!("(module\n{}", crate::host::imports_wat());
    wat.push_str(r#"(memory (export "memory") 1) (func (export "f")))"#);
    let out = run(&wat, "f", 1_000);
    assert_eq!(out.status, Status::Success);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random mutations of a valid module are refused at deploy or run to
    /// an outcome within the gas limit, the same outcome twice.
    #[test]
    fn mutated_modules_are_refused_or_run_bounded(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut code = wasm(&counter());
        for (at, byte) in edits {
            let i = at.index(code.len());
            code[i] = byte;
        }
        let vm = Vm::new();
        if let Ok(c) = vm.deploy_check(&code) {
            for entry in ["bump", "bump_then_revert"] {
                let a = vm.call(&c, &CallContext::default(), entry, &[], 50_000, &BTreeMap::new()).unwrap();
                let b = vm.call(&c, &CallContext::default(), entry, &[], 50_000, &BTreeMap::new()).unwrap();
                prop_assert!(a.gas_used <= 50_000);
                prop_assert_eq!(a, b);
            }
        }
    }
}

/// The fuzz target in miniature: 300 random modules from fixed seeds
/// (`cd vm/fuzz && cargo +nightly fuzz run execute` for the real one).
#[test]
fn random_modules_run_deterministic_and_bounded() {
    use crate::fuzzing::{run, Verdict};
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let (mut ran, mut refused, mut none) = (0, 0, 0);
    let mut statuses = std::collections::BTreeMap::new();
    let mut gas = 0;
    for _ in 0..300 {
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        match run(&data) {
            Verdict::Ran(outcomes) => {
                ran += 1;
                for o in outcomes {
                    *statuses.entry(o.status.name()).or_insert(0) += 1;
                    gas = gas.max(o.gas_used);
                }
            }
            Verdict::Refused(why) => {
                if refused < 3 {
                    eprintln!("refused: {why}");
                }
                refused += 1
            }
            Verdict::NoModule => none += 1,
        }
    }
    eprintln!("ran {ran}, refused {refused}, no module {none}; {statuses:?}, most gas {gas}");
    assert!(statuses.len() >= 3, "the calls end too alike: {statuses:?}");
    assert!(
        ran >= 150,
        "too few modules ran: {ran} (refused {refused}, none {none})"
    );
}

/// Contracts by id, their storage and balances: a store for nested calls.
#[derive(Default)]
struct World {
    contracts: std::collections::HashMap<[u8; 32], Contract>,
    balances: std::collections::HashMap<[u8; 32], u64>,
}

impl ContractStore for World {
    fn read(&self, _: &[u8; 32], _: &[u8]) -> Result<Option<Vec<u8>>, LocalFault> {
        Ok(None)
    }
    fn balance(&self, account: &[u8; 32]) -> Result<u64, LocalFault> {
        Ok(self.balances.get(account).copied().unwrap_or(0))
    }
    fn contract(&self, id: &[u8; 32]) -> Result<Option<Contract>, LocalFault> {
        Ok(self.contracts.get(id).cloned())
    }
}

/// A proxy: `go` reads callee (32) ‖ value (8) ‖ gas (8) ‖ entry length
/// (1) ‖ entry ‖ the callee's input, calls it, writes key "p" and returns code (4) ‖ the callee's return
/// data. `bump` writes key "n" and returns "hi"; `fail` writes "n" and
/// reverts "no"; `spin` loops; `self` calls its own `bump`.
fn proxy() -> String {
    r#"(module
      (import "strata" "input_len" (func $input_len (result i32)))
      (import "strata" "input_read" (func $input_read (param i32)))
      (import "strata" "storage_write" (func $write (param i32 i32 i32 i32)))
      (import "strata" "set_return" (func $ret (param i32 i32)))
      (import "strata" "revert" (func $revert (param i32 i32)))
      (import "strata" "contract" (func $me (param i32)))
      (import "strata" "balance" (func $balance (result i64)))
      (import "strata" "call" (func $call (param i32 i32 i32 i32 i32 i64 i64) (result i32)))
      (import "strata" "return_data_len" (func $rlen (result i32)))
      (import "strata" "return_data_read" (func $rread (param i32)))
      (memory (export "memory") 1)
      (data (i32.const 2000) "hinopn")
      (func (export "go") (local $code i32) (local $elen i32)
        (call $input_read (i32.const 0))
        (local.set $elen (i32.load8_u (i32.const 48)))
        (local.set $code (call $call (i32.const 0) (i32.const 49) (local.get $elen)
          (i32.add (i32.const 49) (local.get $elen))
          (i32.sub (call $input_len) (i32.add (i32.const 49) (local.get $elen)))
          (i64.load (i32.const 32)) (i64.load (i32.const 40))))
        (call $write (i32.const 2004) (i32.const 1) (i32.const 2000) (i32.const 2))
        (i32.store (i32.const 1000) (local.get $code))
        (call $rread (i32.const 1004))
        (call $ret (i32.const 1000) (i32.add (i32.const 4) (call $rlen))))
      (func (export "bump")
        (call $write (i32.const 2005) (i32.const 1) (i32.const 2000) (i32.const 2))
        (call $ret (i32.const 2000) (i32.const 2)))
      (func (export "fail")
        (call $write (i32.const 2005) (i32.const 1) (i32.const 2000) (i32.const 2))
        (call $revert (i32.const 2002) (i32.const 2)))
      (func (export "spin") (loop $l (br $l)))
      (func (export "bal")
        (i64.store (i32.const 1000) (call $balance))
        (call $ret (i32.const 1000) (i32.const 8)))
      (func (export "self")
        (call $me (i32.const 0))
        (i32.store (i32.const 1000)
          (call $call (i32.const 0) (i32.const 2100) (i32.const 4) (i32.const 0) (i32.const 0)
            (i64.const 0) (i64.const 100000)))
        (call $ret (i32.const 1000) (i32.const 4)))
      (data (i32.const 2100) "bump"))"#
        .to_string()
}

fn go(callee: [u8; 32], value: u64, gas: u64, entry: &str) -> Vec<u8> {
    let mut input = callee.to_vec();
    input.extend_from_slice(&value.to_le_bytes());
    input.extend_from_slice(&gas.to_le_bytes());
    input.push(entry.len() as u8);
    input.extend_from_slice(entry.as_bytes());
    input
}

fn world(n: u8) -> (Vm, World) {
    let vm = Vm::new();
    let c = vm.deploy_check(&wasm(&proxy())).unwrap();
    let mut w = World::default();
    for i in 1..=n {
        w.contracts.insert([i; 32], c.clone());
    }
    (vm, w)
}

fn call_in(vm: &Vm, w: &World, id: u8, balance: u64, input: &[u8]) -> Outcome {
    let ctx = CallContext {
        caller: [100; 32],
        contract: [id; 32],
        balance,
        ..CallContext::default()
    };
    let c = w.contracts[&[id; 32]].clone();
    vm.call(&c, &ctx, "go", input, 1_000_000, w).unwrap()
}

#[test]
fn a_nested_call_joins_its_effects_and_returns_its_data() {
    let (vm, w) = world(2);
    let out = call_in(&vm, &w, 1, 0, &go([2; 32], 0, 100_000, "bump"));
    assert_eq!(out.status, Status::Success);
    assert_eq!(out.return_data, [&0i32.to_le_bytes()[..], b"hi"].concat());
    assert_eq!(
        out.writes.get(&([2; 32], b"n".to_vec())),
        Some(&Some(b"hi".to_vec()))
    );
    assert_eq!(
        out.writes.get(&([1; 32], b"p".to_vec())),
        Some(&Some(b"hi".to_vec()))
    );
}

#[test]
fn a_failed_nested_call_is_undone_and_the_caller_goes_on() {
    let (vm, w) = world(2);
    let out = call_in(&vm, &w, 1, 100, &go([2; 32], 30, 100_000, "fail"));
    assert_eq!(out.status, Status::Success);
    assert_eq!(
        out.return_data,
        [&(CallCode::Reverted as i32).to_le_bytes()[..], b"no"].concat()
    );
    assert!(
        !out.writes.contains_key(&([2; 32], b"n".to_vec())),
        "{:?}",
        out.writes
    );
    assert!(
        out.transfers.is_empty(),
        "the value came back: {:?}",
        out.transfers
    );
    // Out of gas in the callee costs the caller the callee's budget only.
    let out = call_in(&vm, &w, 1, 0, &go([2; 32], 0, 20_000, "spin"));
    assert_eq!(out.status, Status::Success);
    assert_eq!(out.return_data, (CallCode::OutOfGas as i32).to_le_bytes());
    assert!(
        out.gas_used > 20_000 && out.gas_used < 100_000,
        "{}",
        out.gas_used
    );
    let missing = call_in(&vm, &w, 1, 0, &go([7; 32], 0, 20_000, "bump"));
    assert_eq!(
        missing.return_data,
        (CallCode::NoSuchContract as i32).to_le_bytes()
    );
}

#[test]
fn value_moves_with_a_call_and_never_overdraws() {
    let (vm, w) = world(2);
    let out = call_in(&vm, &w, 1, 100, &go([2; 32], 30, 100_000, "bal"));
    assert_eq!(
        out.return_data,
        [&0i32.to_le_bytes()[..], &30u64.to_le_bytes()].concat()
    );
    assert_eq!(out.transfers, vec![([1; 32], [2; 32], 30)]);
    let poor = call_in(&vm, &w, 1, 10, &go([2; 32], 30, 100_000, "bal"));
    assert_eq!(
        poor.return_data,
        (CallCode::Insufficient as i32).to_le_bytes()
    );
    assert!(poor.transfers.is_empty());
}

#[test]
fn reentrancy_and_depth_are_refused() {
    let (vm, w) = world(6);
    // 1 → 2 → 1: refused at the second entry into 1.
    let out = call_in(&vm, &w, 1, 0, &go([2; 32], 0, 200_000, "self"));
    assert_eq!(out.status, Status::Success);
    assert_eq!(
        out.return_data,
        [
            &0i32.to_le_bytes()[..],
            &(CallCode::Reentrancy as i32).to_le_bytes()
        ]
        .concat(),
        "2 may call itself? no: it is on the stack"
    );
    // A chain 1 → 2 → 3 → 4 → 5 → 6 is one call too deep.
    let mut input = go([6; 32], 0, 50_000, "bump");
    for next in (2..=5u8).rev() {
        input = [go([next; 32], 0, 300_000, "go"), input].concat();
    }
    let out = call_in(&vm, &w, 1, 0, &input);
    assert_eq!(out.status, Status::Success);
    let codes: Vec<i32> = out
        .return_data
        .chunks(4)
        .take(5)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(codes[..4], [0, 0, 0, 0], "{codes:?}");
    assert_eq!(codes[4], CallCode::TooDeep as i32, "{codes:?}");
}
