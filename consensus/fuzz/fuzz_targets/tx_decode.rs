//! Fuzzes the transaction decoder: it must never panic, and whatever it
//! accepts must re-encode to exactly the input (one encoding per transaction).
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_consensus::tx::Transaction;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = Transaction::decode(data) {
        assert_eq!(tx.encoded(), data);
        let _ = tx.verify_signature();
    }
});
