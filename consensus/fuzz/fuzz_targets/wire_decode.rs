//! Fuzzes the node payload decoder (consensus messages and transaction
//! batches from peers): never a panic, and accepted input re-encodes byte
//! for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_consensus::wire::Payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Payload::decode(data) {
        assert_eq!(p.encode(), data);
    }
});
