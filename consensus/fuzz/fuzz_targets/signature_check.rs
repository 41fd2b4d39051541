//! Differential fuzzing of the transaction signature rule
//! (`strata_consensus::signature`): never a panic; a signature checked alone
//! and inside a batch (next to an honest one) gets the same answer; every
//! signature `ed25519_dalek::verify_strict` accepts is accepted.
//!
//! Input: a mode byte, then bytes. Mode even: key (32) ‖ signature (64) ‖
//! message, all raw. Mode odd: a signing seed (32) ‖ a nonce seed (32) ‖
//! message: a real signature whose `R` gets the small-order point number
//! `mode / 2 % 8` added (and `s` computed for that `R`), so the fuzzer
//! reaches the mixed-order signatures that split cofactorless batches
//! (the rule must accept them, alone and batched).
#![no_main]
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha512};
use strata_consensus::signature::{verify_one, Batch, SenderKey};

fn mixed(seed: &[u8; 32], nonce: &[u8; 32], torsion: usize, message: &[u8]) -> ([u8; 32], [u8; 64]) {
    let signer = SigningKey::from_bytes(seed);
    let a = signer.to_scalar();
    let r = Scalar::from_bytes_mod_order(*nonce);
    let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[torsion]).compress();
    let key = signer.verifying_key().to_bytes();
    let mut h = Sha512::new();
    h.update(big_r.as_bytes());
    h.update(key);
    h.update(message);
    let h = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice((r + h * a).as_bytes());
    (key, sig)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (key_bytes, sig, message): ([u8; 32], [u8; 64], &[u8]) = if mode % 2 == 0 {
        if rest.len() < 96 {
            return;
        }
        (
            rest[..32].try_into().unwrap(),
            rest[32..96].try_into().unwrap(),
            &rest[96..],
        )
    } else {
        if rest.len() < 64 {
            return;
        }
        let (k, s) = mixed(
            rest[..32].try_into().unwrap(),
            rest[32..64].try_into().unwrap(),
            usize::from(mode / 2 % 8),
            &rest[64..],
        );
        (k, s, &rest[64..])
    };
    let Some(key) = SenderKey::from_bytes(&key_bytes) else {
        return;
    };
    let alone = verify_one(&key, message, &sig);
    assert!(mode % 2 == 0 || alone, "a mixed-order signature is refused");
    if let Ok(dalek) = VerifyingKey::from_bytes(&key_bytes) {
        let strict = dalek
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok();
        assert!(!strict || alone, "verify_strict accepts what the rule refuses");
    }
    let honest = SigningKey::from_bytes(&[9; 32]);
    let honest_key = SenderKey::from_bytes(honest.verifying_key().as_bytes()).unwrap();
    let mut batch = Batch::new();
    assert!(batch.push(&honest_key, b"honest", &honest.sign(b"honest").to_bytes()));
    if batch.push(&key, message, &sig) {
        assert_eq!(batch.verify(), alone, "batch and single answers differ");
        assert_eq!(batch.verify_each(), [true, alone]);
    } else {
        assert!(!alone, "refused at push, accepted alone");
    }
});
