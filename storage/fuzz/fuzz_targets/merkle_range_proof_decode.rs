//! Fuzzes the merkle range proof decoder with untrusted bytes: it must never
//! panic, must accept only canonical encodings (decode → encode is the
//! identity), and verifying whatever it accepts against a fixed small trie
//! must not panic either. The same property runs as a smoke test in the
//! normal suite: storage/tests/merkle_range_proofs.rs,
//! `random_bytes_never_panic_the_range_decoder`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_storage::merkle::{root_of_sorted, verify_range, RangeProof};

type H = [u8; 32];

/// A fixed trie of 16 leaves (paths `i * 16` in every byte), its root, and
/// the run of `[0x30…, 0xB0…]`.
struct Fixture {
    root: H,
    run: Vec<(H, H)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let leaves: Vec<(H, H)> = (0u8..16).map(|i| ([i * 16; 32], [i; 32])).collect();
        let root = root_of_sorted(leaves.iter().copied()).expect("sorted");
        let run = leaves
            .iter()
            .copied()
            .filter(|(p, _)| *p >= LO && *p <= HI)
            .collect();
        Fixture { root, run }
    })
}

const LO: H = [0x30; 32];
const HI: H = [0xB0; 32];

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = RangeProof::decode(data) {
        assert_eq!(proof.encode(), data, "accepted a non-canonical encoding");
        let f = fixture();
        let _ = verify_range(&f.root, &LO, &HI, &f.run, &proof);
        let _ = verify_range(&f.root, &LO, &LO, &[], &proof);
        let _ = verify_range(&f.root, &[0; 32], &[0xFF; 32], &f.run, &proof);
    }
});
