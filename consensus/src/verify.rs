//! Signature verification in batches.
//!
//! ed25519 batch verification checks many signatures for roughly half the
//! cost of checking them one by one, but a batch only says "all good" or "at
//! least one bad". When a batch fails, each of its signatures is re-checked
//! alone, so one bad signature (an attacker's, on purpose) cannot sink the
//! honest transactions batched with it. That fallback costs a single
//! verification per transaction of the failed batch, which is why the node
//! keeps batches small enough ([`BATCH_TXS_MAX`]) to bound the damage.
//!
//! Determinism: weak (small-order) public keys are refused before batching
//! and the one-by-one fallback uses `verify_strict`, so whether a transaction
//! is accepted does not depend on which other transactions shared its batch
//! beyond what the strict check itself decides.
//!
//! This is a pure function: the node runs it on its worker threads.

use ed25519_dalek::{Signature, VerifyingKey};
use strata_storage::lru::{IdentityState, LruCache};

use crate::tx::{PublicKey, Transaction};

/// Largest batch handed to one `verify_batch` call.
pub const BATCH_TXS_MAX: usize = 256;

/// The outcome for one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signature valid, chain id right.
    Valid,
    /// The transaction names another chain.
    WrongChain,
    /// The sender key is not a valid (or is a weak) ed25519 point.
    BadKey,
    /// The signature does not verify.
    BadSignature,
}

/// Senders whose decompressed public keys a [`Verifier`] keeps. Point
/// decompression costs a good fraction of a batched verification, and busy
/// senders send many transactions.
pub const KEY_CACHE_ENTRIES: usize = 16_384;

/// Verifies `txs` for `chain_id`, returning one verdict per transaction in
/// order. Batches of up to [`BATCH_TXS_MAX`]; failed batches are re-checked
/// one by one. A one-off [`Verifier`]; workers keep theirs.
pub fn verify_transactions(txs: &[Transaction], chain_id: u64) -> Vec<Verdict> {
    Verifier::new().verify(txs, chain_id)
}

/// A reusable verifier: scratch buffers and a cache of decompressed sender
/// keys, one per worker thread.
pub struct Verifier {
    scratch: Scratch,
    keys: LruCache<PublicKey, Option<VerifyingKey>, IdentityState>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier with an empty key cache of [`KEY_CACHE_ENTRIES`].
    pub fn new() -> Self {
        Self::with_key_cache(KEY_CACHE_ENTRIES)
    }

    /// A verifier caching up to `entries` sender keys (at least 1).
    pub fn with_key_cache(entries: usize) -> Self {
        Verifier {
            scratch: Scratch::default(),
            keys: LruCache::with_hasher(entries.max(1), IdentityState),
        }
    }

    /// Verifies `txs` for `chain_id`: one verdict per transaction, in order.
    pub fn verify(&mut self, txs: &[Transaction], chain_id: u64) -> Vec<Verdict> {
        let mut verdicts = Vec::with_capacity(txs.len());
        for chunk in txs.chunks(BATCH_TXS_MAX) {
            self.scratch
                .verify_chunk(chunk, chain_id, &mut self.keys, &mut verdicts);
        }
        verdicts
    }
}

/// The decompressed key of `sender`, or `None` when it is not a valid,
/// non-weak point (cached either way).
fn sender_key(
    cache: &mut LruCache<PublicKey, Option<VerifyingKey>, IdentityState>,
    sender: &PublicKey,
) -> Option<VerifyingKey> {
    if let Some(known) = cache.get(sender) {
        return *known;
    }
    let key = VerifyingKey::from_bytes(sender)
        .ok()
        .filter(|k| !k.is_weak());
    cache.put(*sender, key);
    key
}

/// Buffers reused across batches so the hot path does not allocate per
/// transaction. Messages are not among them: each transaction lends its
/// signed message ([`Transaction::signing_message`]), so nothing is copied.
#[derive(Default)]
struct Scratch {
    signatures: Vec<Signature>,
    keys: Vec<VerifyingKey>,
    /// Indices (into the chunk) of the transactions in the batch.
    members: Vec<usize>,
}

impl Scratch {
    fn verify_chunk(
        &mut self,
        chunk: &[Transaction],
        chain_id: u64,
        key_cache: &mut LruCache<PublicKey, Option<VerifyingKey>, IdentityState>,
        out: &mut Vec<Verdict>,
    ) {
        let base = out.len();
        self.signatures.clear();
        self.keys.clear();
        self.members.clear();
        for (i, tx) in chunk.iter().enumerate() {
            if tx.body().chain_id != chain_id {
                out.push(Verdict::WrongChain);
                continue;
            }
            let Some(key) = sender_key(key_cache, tx.sender()) else {
                out.push(Verdict::BadKey);
                continue;
            };
            self.signatures.push(Signature::from_bytes(tx.signature()));
            self.keys.push(key);
            self.members.push(i);
            out.push(Verdict::Valid); // provisional, settled below
        }
        if self.members.is_empty() {
            return;
        }
        let messages: Vec<&[u8]> = self
            .members
            .iter()
            .map(|&i| chunk[i].signing_message())
            .collect();
        if ed25519_dalek::verify_batch(&messages, &self.signatures, &self.keys).is_ok() {
            return;
        }
        for (slot, &i) in self.members.iter().enumerate() {
            let ok = self.keys[slot]
                .verify_strict(messages[slot], &self.signatures[slot])
                .is_ok();
            if !ok {
                out[base + i] = Verdict::BadSignature;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{signing_key_from_seed, TxBody, TxKind};

    fn tx(seed: u8, nonce: u64, chain_id: u64) -> Transaction {
        let k = signing_key_from_seed(&[seed; 32]);
        TxBody {
            chain_id,
            sender: k.verifying_key().to_bytes(),
            nonce,
            fee: 1,
            kind: TxKind::Transfer {
                to: [1; 32],
                amount: 1,
            },
        }
        .sign(&k)
        .unwrap()
    }

    /// A transaction whose signature is valid bytes but for another message.
    fn forged(seed: u8) -> Transaction {
        let good = tx(seed, 0, 7);
        let other = tx(seed, 1, 7);
        let mut bytes = good.encoded().to_vec();
        let n = bytes.len();
        bytes[n - 64..].copy_from_slice(other.signature());
        Transaction::decode(&bytes).unwrap()
    }

    #[test]
    fn all_good_batch_passes() {
        let txs: Vec<_> = (0..300).map(|i| tx((i % 50) as u8, i, 7)).collect();
        assert!(verify_transactions(&txs, 7)
            .iter()
            .all(|v| *v == Verdict::Valid));
    }

    #[test]
    fn one_bad_signature_keeps_the_good_ones() {
        let mut txs: Vec<_> = (0..100).map(|i| tx(i as u8, 0, 7)).collect();
        txs[37] = forged(200);
        let verdicts = verify_transactions(&txs, 7);
        for (i, v) in verdicts.iter().enumerate() {
            let want = if i == 37 {
                Verdict::BadSignature
            } else {
                Verdict::Valid
            };
            assert_eq!(*v, want, "transaction {i}");
        }
    }

    #[test]
    fn wrong_chain_and_bad_key_are_named() {
        let mut txs = vec![tx(1, 0, 8), tx(2, 0, 7)];
        // Sender bytes that are not a curve point: flip the sender of a copy.
        let mut raw = tx(3, 0, 7).encoded().to_vec();
        raw[9..41].fill(0xFF);
        txs.push(Transaction::decode(&raw).unwrap());
        let verdicts = verify_transactions(&txs, 7);
        assert_eq!(verdicts[0], Verdict::WrongChain);
        assert_eq!(verdicts[1], Verdict::Valid);
        assert!(matches!(
            verdicts[2],
            Verdict::BadKey | Verdict::BadSignature
        ));
    }
}
