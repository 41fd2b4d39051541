//! Random modules run under a small gas limit (feature `fuzzing`): the
//! fuzz target `execute` (vm/fuzz) and its short version in the tests.
//!
//! `wasm-smith` builds a valid module from the fuzzer's bytes, restricted
//! to what the chain accepts (no floats, SIMD, threads, reference types,
//! one memory) and importing only the host API, with a memory exported as
//! `memory` and two entry points `a` and `b`. Each entry is called twice,
//! on two runtimes: the outcomes must be equal (determinism) and within
//! the gas limit (bounds); nothing may panic.

use std::collections::BTreeMap;

use crate::{CallContext, Outcome, Vm};

/// Gas each call gets.
pub const FUZZ_GAS: u64 = 100_000;

/// What became of one input.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The bytes did not make a module.
    NoModule,
    /// The deploy check refused the module (start function, …): why.
    Refused(String),
    /// It ran: each entry's outcome.
    Ran(Vec<Outcome>),
}

fn host_imports() -> Vec<u8> {
    wat::parse_str(format!("(module {})", crate::host::imports_wat()))
        .expect("the host imports parse")
}

fn config() -> wasm_smith::Config {
    let exports = r#"(module
        (memory (export "memory") 1)
        (func (export "a") unreachable)
        (func (export "b") unreachable))"#;
    wasm_smith::Config {
        available_imports: Some(host_imports()),
        exports: Some(wat::parse_str(exports).expect("the exports parse")),
        allow_floats: false,
        simd_enabled: false,
        relaxed_simd_enabled: false,
        threads_enabled: false,
        reference_types_enabled: false,
        gc_enabled: false,
        exceptions_enabled: false,
        tail_call_enabled: false,
        memory64_enabled: false,
        wide_arithmetic_enabled: false,
        compact_imports_enabled: false,
        extended_const_enabled: false,
        custom_page_sizes_enabled: false,
        max_memories: 0,
        allow_start_export: false,
        max_tables: 1,
        max_memory32_bytes: 16 * 65_536,
        ..wasm_smith::Config::default()
    }
}

/// Builds a module from `data` and runs it as described above.
///
/// # Panics
/// When two runs of the same call differ, or one passes its gas limit: the
/// failures this harness is for.
pub fn run(data: &[u8]) -> Verdict {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(module) = wasm_smith::Module::new(config(), &mut u) else {
        return Verdict::NoModule;
    };
    let code = module.to_bytes();
    let (vm, other) = (Vm::new(), Vm::new());
    let (contract, again) = match (vm.deploy_check(&code), other.deploy_check(&code)) {
        (Ok(c), Ok(a)) => (c, a),
        (Err(e), Err(f)) => {
            assert_eq!(e, f, "refused two ways");
            return Verdict::Refused(e.to_string());
        }
        (a, b) => panic!(
            "one runtime accepted, one refused: {:?} / {:?}",
            a.err(),
            b.err()
        ),
    };
    let store: BTreeMap<Vec<u8>, Vec<u8>> =
        [(vec![0], vec![1; 8]), (b"n".to_vec(), vec![2; 100])].into();
    let ctx = CallContext {
        caller: [1; 32],
        contract: [2; 32],
        height: 7,
        time_ms: 1_000,
        balance: 50,
        value: 5,
    };
    let mut outcomes = Vec::new();
    for entry in ["a", "b"] {
        let first = vm
            .call(&contract, &ctx, entry, b"input", FUZZ_GAS, &store)
            .expect("the map store never fails");
        let second = other
            .call(&again, &ctx, entry, b"input", FUZZ_GAS, &store)
            .expect("the map store never fails");
        assert_eq!(first, second, "entry {entry} ran two ways");
        assert!(
            first.gas_used <= FUZZ_GAS,
            "entry {entry} used {}",
            first.gas_used
        );
        outcomes.push(first);
    }
    Verdict::Ran(outcomes)
}
