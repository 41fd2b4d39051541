//! `mempool/ingest`: the path a transaction batch from the network takes —
//! decode, batch-verify signatures, insert into the mempool — on one core,
//! next to the raw cost of verifying the same signatures with
//! `ed25519_dalek::verify_batch` (function `ed25519_verify_batch`), measured
//! in the same run. The ratio says how close ingest gets to the
//! verification limit (target: ≥ 85 %).
//!
//! Workload: 4,096 signed transfers from 1,024 devnet senders (4 nonces
//! each), per iteration. The verifier's sender-key cache is warm, as it is in
//! a node that keeps seeing the same active senders; the raw rival likewise
//! gets its keys already decompressed.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use strata_consensus::genesis::{devnet_account_key, DEVNET_CHAIN_ID};
use strata_consensus::mempool::{Mempool, MempoolConfig};
use strata_consensus::tx::{Transaction, TxBody, TxKind};
use strata_consensus::verify::{Verdict, Verifier};

const SENDERS: usize = 1024;
const NONCES: u64 = 4;

fn workload() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in 0..SENDERS {
        let key = devnet_account_key(s);
        for nonce in 0..NONCES {
            let tx = TxBody {
                chain_id: DEVNET_CHAIN_ID,
                sender: key.verifying_key().to_bytes(),
                nonce,
                fee: 1 + (s as u64 % 7),
                kind: TxKind::Transfer {
                    to: [7; 32],
                    amount: 1,
                },
            }
            .sign(&key)
            .expect("devnet key signs its own transactions");
            out.push(tx.encoded().to_vec());
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let encoded = workload();
    let n = encoded.len() as u64;
    let mut group = c.benchmark_group("mempool/ingest");
    group
        .throughput(Throughput::Elements(n))
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));

    let mut verifier = Verifier::new();
    group.bench_function("strata", |b| {
        b.iter_batched(
            || {
                Mempool::new(MempoolConfig {
                    txs_max: 8192,
                    ..MempoolConfig::default()
                })
            },
            |mut pool| {
                let txs: Vec<Transaction> = encoded
                    .iter()
                    .map(|bytes| Transaction::decode(bytes).expect("valid workload"))
                    .collect();
                let verdicts = verifier.verify(&txs, DEVNET_CHAIN_ID);
                for (tx, verdict) in txs.into_iter().zip(verdicts) {
                    if verdict == Verdict::Valid {
                        pool.insert(tx, 0, 0).expect("admitted");
                    }
                }
                assert_eq!(pool.len() as u64, n);
                pool
            },
            BatchSize::PerIteration,
        )
    });

    // The rival: the same signatures through the raw batch API, keys already
    // decompressed and messages already built, in batches of the same size.
    let txs: Vec<Transaction> = encoded
        .iter()
        .map(|b| Transaction::decode(b).unwrap())
        .collect();
    let messages: Vec<Vec<u8>> = txs
        .iter()
        .map(|tx| {
            let mut m = Vec::new();
            tx.signing_message_into(&mut m);
            m
        })
        .collect();
    let signatures: Vec<Signature> = txs
        .iter()
        .map(|tx| Signature::from_bytes(tx.signature()))
        .collect();
    let keys: Vec<VerifyingKey> = txs
        .iter()
        .map(|tx| VerifyingKey::from_bytes(tx.sender()).unwrap())
        .collect();
    let batch = strata_consensus::verify::BATCH_TXS_MAX;
    group.bench_function("ed25519_verify_batch", |b| {
        b.iter(|| {
            for start in (0..txs.len()).step_by(batch) {
                let end = (start + batch).min(txs.len());
                let msgs: Vec<&[u8]> = messages[start..end].iter().map(Vec::as_slice).collect();
                ed25519_dalek::verify_batch(&msgs, &signatures[start..end], &keys[start..end])
                    .expect("valid signatures");
            }
        })
    });
    group.finish();
}

criterion_group!(chain, bench);
criterion_main!(chain);
