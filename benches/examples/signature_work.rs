//! Repeatable work for counting instructions of signature batches (this VM
//! has no hardware counters and its wall time is noisy): runs `ITERS`
//! passes of strata's batch (`strata_consensus::signature::Batch`) or of
//! `ed25519_dalek::verify_batch` over 8,192 signatures from 8,192 senders
//! (no sender twice in a batch), in batches of `SIZE`, and prints the wall
//! time per signature. Instructions per signature are the difference of two
//! runs under callgrind divided by the extra signatures:
//!
//! ```sh
//! cargo build --release -p strata-benches --example signature_work
//! for it in 1 3; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/signature_work strata 512 $it; done
//! # (Collected₃ − Collected₁) / (2 × 8192)
//! ```
//!
//! Usage: `signature_work strata|dalek SIZE ITERS`.

use std::time::Instant;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use strata_consensus::signature::{Batch, SenderKey};

/// Signatures per pass, each by its own sender.
const SIGNATURES: usize = 8192;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(which), Some(size), Some(iters)) = (
        args.get(1),
        args.get(2).and_then(|s| s.parse::<usize>().ok()),
        args.get(3).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: signature_work strata|dalek SIZE ITERS");
        std::process::exit(2);
    };
    let size = size.max(1);
    let signers: Vec<SigningKey> = (0..SIGNATURES as u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            SigningKey::from_bytes(&seed)
        })
        .collect();
    // Transfer-sized messages (a transaction's signed bytes are ~140).
    let messages: Vec<Vec<u8>> = (0..SIGNATURES)
        .map(|i| {
            let mut m = vec![7u8; 140];
            m[..8].copy_from_slice(&(i as u64).to_le_bytes());
            m
        })
        .collect();
    let signatures: Vec<Signature> = signers
        .iter()
        .zip(&messages)
        .map(|(k, m)| k.sign(m))
        .collect();
    let signature_bytes: Vec<[u8; 64]> = signatures.iter().map(Signature::to_bytes).collect();
    let dalek_keys: Vec<VerifyingKey> = signers.iter().map(SigningKey::verifying_key).collect();
    let keys: Vec<SenderKey> = dalek_keys
        .iter()
        .map(|k| SenderKey::from_bytes(k.as_bytes()).expect("valid key"))
        .collect();

    let mut batch = Batch::new();
    let started = Instant::now();
    for _ in 0..iters {
        for start in (0..SIGNATURES).step_by(size) {
            let end = (start + size).min(SIGNATURES);
            let ok = if which == "dalek" {
                let m: Vec<&[u8]> = messages[start..end].iter().map(Vec::as_slice).collect();
                ed25519_dalek::verify_batch(&m, &signatures[start..end], &dalek_keys[start..end])
                    .is_ok()
            } else {
                batch.clear();
                for i in start..end {
                    assert!(batch.push(&keys[i], &messages[i], &signature_bytes[i]));
                }
                batch.verify()
            };
            assert!(ok, "valid signatures refused");
        }
    }
    let per_signature_us =
        started.elapsed().as_secs_f64() * 1e6 / (iters.max(1) * SIGNATURES) as f64;
    println!("{which} batch {size}: {per_signature_us:.2} µs per signature (wall)");
}
