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
//! Determinism: the batch check and the one-by-one fallback check the same
//! cofactored equation ([`crate::signature`]), so whether a transaction is
//! accepted does not depend on which other transactions shared its batch.
//!
//! This is a pure function: the node runs it on its worker threads.
//!
//! A node sees most transactions more than once (from a client or gossip,
//! and again inside a pulled block), so its verifiers can share a
//! [`VerifiedIds`]: a transaction whose id is there was already found valid
//! and is not checked again. The id hashes the whole encoding, signature
//! included, so the same id means the same signed bytes.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use strata_storage::lru::{IdentityState, LruCache};

use crate::signature::{Batch, SenderKey};
use crate::tx::{PublicKey, Transaction, TxId};

/// Largest batch checked in one multi-scalar multiplication. 512 costs
/// ~7 % less per signature than 256 (`strata_signatures` in the
/// `mempool/ingest` bench; the multiplication's window grows); past it the
/// gain stops while a forged signature's fallback (one single check per
/// member) keeps growing. Transactions from gossip, framed clients and
/// the API are gathered into the same batches and share the fallback;
/// what bounds a forger is its budget and the ban or refusal that follows
/// a failed check (`src/intake.rs`).
pub const BATCH_TXS_MAX: usize = 512;

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

/// Ids a node's [`VerifiedIds`] remembers by default: about two seconds of
/// transactions at 60 k tx/s, the usual gap between a transaction's first
/// arrival and its last (gossip, a pulled block, a late push). A few MiB.
pub const VERIFIED_IDS_DEFAULT: usize = 131_072;

/// Ids of transactions found valid, shared by the verifiers of one node
/// (one chain id), oldest forgotten first.
///
/// ```
/// use std::sync::Arc;
/// use strata_consensus::verify::{Verifier, VerifiedIds};
///
/// let seen = Arc::new(VerifiedIds::new(1024));
/// let mut workers = Verifier::new().sharing(Arc::clone(&seen));
/// let mut engine = Verifier::new().sharing(seen);
/// // A transaction `workers` found valid is not checked again by `engine`.
/// # let _ = (&mut workers, &mut engine);
/// ```
pub struct VerifiedIds {
    ids: Mutex<LruCache<TxId, (), IdentityState>>,
    /// Signatures checked by the verifiers sharing this set.
    checked: AtomicU64,
    /// Transactions they did not check because their id was here.
    skipped: AtomicU64,
    /// Batches they checked (`checked / batches` is the mean batch size:
    /// small batches cost up to half as much again per signature).
    batches: AtomicU64,
}

impl VerifiedIds {
    /// Remembers up to `entries` ids (at least 1).
    pub fn new(entries: usize) -> Self {
        VerifiedIds {
            ids: Mutex::new(LruCache::with_hasher(entries.max(1), IdentityState)),
            checked: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        }
    }

    /// Batches the verifiers sharing this set have checked.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Signatures the verifiers sharing this set have checked.
    pub fn checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    /// Transactions they took as valid without a check, already known.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// True when `id` was found valid (and not yet forgotten).
    pub fn contains(&self, id: &TxId) -> bool {
        self.lock().contains(id)
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<TxId, (), IdentityState>> {
        // The cache holds no invariant a panicking holder could break
        // halfway (each put is one call), so a poisoned lock is usable.
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A reusable verifier: scratch buffers and a cache of decompressed sender
/// keys, one per worker thread; optionally a node's shared [`VerifiedIds`].
pub struct Verifier {
    scratch: Scratch,
    keys: LruCache<PublicKey, Option<SenderKey>, IdentityState>,
    known: Option<Arc<VerifiedIds>>,
    /// Indices (into the caller's slice) still to check, reused.
    todo: Vec<usize>,
    /// The chunk being checked, reused.
    chunk: Vec<usize>,
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
            known: None,
            todo: Vec::new(),
            chunk: Vec::new(),
        }
    }

    /// This verifier, skipping transactions whose ids are in `known` and
    /// adding those it finds valid. All verifiers sharing one set must
    /// verify for the same chain id.
    pub fn sharing(mut self, known: Arc<VerifiedIds>) -> Self {
        self.known = Some(known);
        self
    }

    /// Verifies `txs` for `chain_id`: one verdict per transaction, in order.
    pub fn verify<T: Borrow<Transaction>>(&mut self, txs: &[T], chain_id: u64) -> Vec<Verdict> {
        let mut verdicts = vec![Verdict::Valid; txs.len()];
        self.todo.clear();
        self.todo.extend(0..txs.len());
        self.forget_known(txs, chain_id, txs.len());
        // Even chunks: 300 transactions verify as 150 + 150, not 256 + 44
        // (a small batch costs more per signature).
        let chunks = self.todo.len().div_ceil(BATCH_TXS_MAX);
        let per_chunk = self.todo.len().div_ceil(chunks.max(1)).max(1);
        let mut checked = 0;
        let mut batches = 0;
        let mut members = std::mem::take(&mut self.chunk);
        while !self.todo.is_empty() {
            // Ids found valid meanwhile by another verifier sharing the set
            // (the driver checking a pulled block while a worker checks the
            // same transactions from gossip) are not checked again: the set
            // is consulted before each chunk (the first was, just above)
            // and fed after it, so two verifiers overlap by at most a chunk.
            if batches > 0 {
                self.forget_known(txs, chain_id, per_chunk);
            }
            members.clear();
            members.extend(self.todo.drain(..per_chunk.min(self.todo.len())));
            self.scratch
                .verify_chunk(txs, &members, chain_id, &mut self.keys, &mut verdicts);
            checked += members.len();
            batches += 1;
            if let Some(known) = &self.known {
                let mut ids = known.lock();
                for &i in &members {
                    if verdicts[i] == Verdict::Valid {
                        ids.put(*txs[i].borrow().id(), ());
                    }
                }
            }
        }
        if let Some(known) = &self.known {
            known.checked.fetch_add(checked as u64, Ordering::Relaxed);
            known.batches.fetch_add(batches, Ordering::Relaxed);
            known
                .skipped
                .fetch_add((txs.len() - checked) as u64, Ordering::Relaxed);
        }
        self.chunk = members;
        verdicts
    }

    /// Drops from the first `window` entries of `todo` the transactions
    /// whose ids the shared set holds (they are valid: their verdicts stay
    /// `Valid`).
    fn forget_known<T: Borrow<Transaction>>(&mut self, txs: &[T], chain_id: u64, window: usize) {
        let Some(known) = &self.known else {
            return;
        };
        let window = window.min(self.todo.len());
        let ids = known.lock();
        let mut kept = 0;
        for at in 0..window {
            let i = self.todo[at];
            let tx = txs[i].borrow();
            if tx.body().chain_id != chain_id || !ids.contains(tx.id()) {
                self.todo[kept] = i;
                kept += 1;
            }
        }
        self.todo.drain(kept..window);
    }
}

/// The decompressed key of `sender`, or `None` when it is not a valid,
/// non-weak point (cached either way).
fn sender_key(
    cache: &mut LruCache<PublicKey, Option<SenderKey>, IdentityState>,
    sender: &PublicKey,
) -> Option<SenderKey> {
    if let Some(known) = cache.get(sender) {
        return *known;
    }
    let key = SenderKey::from_bytes(sender);
    cache.put(*sender, key);
    key
}

/// Buffers reused across batches so the hot path does not allocate per
/// transaction. Messages are not among them: each transaction lends its
/// signed message ([`Transaction::signing_message`]), so nothing is copied.
#[derive(Default)]
struct Scratch {
    batch: Batch,
    /// Indices (into the caller's slice) of the transactions in the batch.
    members: Vec<usize>,
}

impl Scratch {
    /// Settles `out[i]` for each `i` in `chosen` (at most
    /// [`BATCH_TXS_MAX`] of them), checking `txs[i]` in one batch.
    fn verify_chunk<T: Borrow<Transaction>>(
        &mut self,
        txs: &[T],
        chosen: &[usize],
        chain_id: u64,
        key_cache: &mut LruCache<PublicKey, Option<SenderKey>, IdentityState>,
        out: &mut [Verdict],
    ) {
        debug_assert!(chosen.len() <= BATCH_TXS_MAX);
        self.batch.clear();
        self.members.clear();
        for &i in chosen {
            let tx = txs[i].borrow();
            if tx.body().chain_id != chain_id {
                out[i] = Verdict::WrongChain;
                continue;
            }
            let Some(key) = sender_key(key_cache, tx.sender()) else {
                out[i] = Verdict::BadKey;
                continue;
            };
            if !self.batch.push(&key, tx.signing_message(), tx.signature()) {
                out[i] = Verdict::BadSignature;
                continue;
            }
            self.members.push(i);
            out[i] = Verdict::Valid; // provisional, settled below
        }
        if self.batch.verify() {
            return;
        }
        for (&i, ok) in self.members.iter().zip(self.batch.verify_each()) {
            if !ok {
                out[i] = Verdict::BadSignature;
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

    #[test]
    fn shared_ids_remember_only_valid_transactions_and_skip_them() {
        let known = Arc::new(VerifiedIds::new(1024));
        let mut a = Verifier::new().sharing(Arc::clone(&known));
        let mut b = Verifier::new().sharing(Arc::clone(&known));
        let good: Vec<_> = (0..300).map(|i| tx((i % 50) as u8, i, 7)).collect();
        let mut batch = good.clone();
        batch.push(forged(201));
        batch.push(tx(9, 0, 8)); // another chain
        let verdicts = a.verify(&batch, 7);
        assert_eq!(verdicts[..300], [Verdict::Valid; 300]);
        assert_eq!(verdicts[300], Verdict::BadSignature);
        assert_eq!(verdicts[301], Verdict::WrongChain);
        assert_eq!(known.len(), 300, "only the valid ones are remembered");
        assert_eq!((known.checked(), known.skipped()), (302, 0));
        assert!(good.iter().all(|t| known.contains(t.id())));
        // A remembered id is not checked again: plant a forged
        // transaction's id and the other verifier takes it as valid,
        // which is why only verifiers of one node (one chain) may share.
        let planted = forged(202);
        known.lock().put(*planted.id(), ());
        assert_eq!(
            b.verify(&[planted, forged(203)], 7),
            [Verdict::Valid, Verdict::BadSignature]
        );
        assert_eq!((known.checked(), known.skipped()), (303, 1));
        // The chain id is still checked for a remembered transaction.
        assert_eq!(b.verify(&good[..1], 8), [Verdict::WrongChain]);
    }
}
