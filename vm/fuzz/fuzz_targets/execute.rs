//! Random valid modules (wasm-smith, restricted to what the chain
//! accepts) deployed and called under a small gas limit: execution must be
//! deterministic, within the limit, and never panic
//! (`strata_vm::fuzzing::run`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata_vm::fuzzing::run(data);
});
