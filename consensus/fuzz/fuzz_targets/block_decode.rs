//! Fuzzes the block decoder: never a panic, and accepted input re-encodes
//! byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_consensus::block::Block;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = Block::decode(data) {
        assert_eq!(block.encode(), data);
    }
});
