//! Fuzzes the merkle proof decoder with untrusted bytes: it must never
//! panic, must accept only canonical encodings (decode → encode is the
//! identity), and verifying whatever it accepts must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_storage::merkle::{verify_path, Proof};

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = Proof::decode(data) {
        assert_eq!(proof.encode(), data, "accepted a non-canonical encoding");
        let path = [0x5Au8; 32];
        let _ = verify_path(&path, &path, None, &proof);
        let _ = verify_path(&path, &path, Some(&path), &proof);
    }
});
