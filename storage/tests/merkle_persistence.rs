//! Persistence: reopening continues from the committed root; a failed write
//! batch leaves the previous root intact; corrupt records are errors.

mod merkle_common;

use std::sync::Arc;

use merkle_common::FaultStore;
use strata_storage::merkle::{
    key_path, value_hash, verify_path, Error, MemStore, Trie, TrieConfig, Update,
};

fn batch(range: std::ops::Range<u32>, tag: u8) -> Vec<Update> {
    let mut b: Vec<Update> = range
        .map(|i| (key_path(&i.to_le_bytes()), Some(value_hash(&[tag]))))
        .collect();
    b.sort();
    b
}

#[test]
fn reopen_continues_from_the_same_root() {
    let store = Arc::new(MemStore::new());
    let mut trie = Trie::open(Arc::clone(&store), TrieConfig::new()).unwrap();
    trie.apply(&batch(0..500, 1)).unwrap();
    let root = trie.apply(&batch(250..900, 2)).unwrap();
    let version = trie.version();
    drop(trie);

    let mut reopened = Trie::open(Arc::clone(&store), TrieConfig::new()).unwrap();
    assert_eq!(reopened.root(), root);
    assert_eq!(reopened.version(), version);
    // Past roots survive the reopen too.
    assert!(reopened.root_at(version - 1).is_ok());
    let next = reopened.apply(&batch(100..200, 3)).unwrap();

    // A trie that never closed reaches the same root.
    let mut continuous = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    continuous.apply(&batch(0..500, 1)).unwrap();
    continuous.apply(&batch(250..900, 2)).unwrap();
    assert_eq!(continuous.apply(&batch(100..200, 3)).unwrap(), next);
}

#[test]
fn failed_write_batch_keeps_previous_root() {
    let store = Arc::new(FaultStore::new(MemStore::new(), 2));
    let mut trie = Trie::open(Arc::clone(&store), TrieConfig::new()).unwrap();
    trie.apply(&batch(0..300, 1)).unwrap();
    let good = trie.apply(&batch(0..100, 2)).unwrap();
    let good_version = trie.version();

    let err = trie.apply(&batch(50..400, 3)).unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err}");
    assert_eq!(trie.root(), good);
    assert_eq!(trie.version(), good_version);
    // Poisoned until reopened, even once the store works again.
    store
        .batches_ok
        .store(10, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(trie.apply(&batch(0..1, 4)), Err(Error::Poisoned)));
    // Proofs against the committed root still work.
    let path = key_path(&7u32.to_le_bytes());
    let proof = trie.prove(&path).unwrap();
    assert!(verify_path(&good, &path, Some(&value_hash(&[2])), &proof));
    drop(trie);

    let mut reopened = Trie::open(Arc::clone(&store), TrieConfig::new()).unwrap();
    assert_eq!(reopened.root(), good);
    assert_eq!(reopened.version(), good_version);
    let retried = reopened.apply(&batch(50..400, 3)).unwrap();
    let mut clean = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    clean.apply(&batch(0..300, 1)).unwrap();
    clean.apply(&batch(0..100, 2)).unwrap();
    assert_eq!(clean.apply(&batch(50..400, 3)).unwrap(), retried);
}

#[test]
fn every_apply_is_one_write_batch() {
    struct Counting {
        inner: MemStore,
        batches: std::sync::atomic::AtomicU64,
    }
    impl strata_storage::merkle::NodeStore for Counting {
        type Error = std::convert::Infallible;
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error> {
            self.inner.get(key)
        }
        fn write_batch(
            &self,
            puts: Vec<(Vec<u8>, Vec<u8>)>,
            deletes: Vec<Vec<u8>>,
        ) -> Result<(), Self::Error> {
            self.batches
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.write_batch(puts, deletes)
        }
    }
    let store = Counting {
        inner: MemStore::new(),
        batches: Default::default(),
    };
    let mut trie = Trie::open(&store, TrieConfig::new().threads(2)).unwrap();
    trie.apply(&batch(0..5000, 1)).unwrap();
    trie.apply(&batch(0..3000, 2)).unwrap();
    assert_eq!(store.batches.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Stored pages are untrusted: flipping any byte of any record must give an
/// error or a correct answer from `prove`, `open` and `apply` — never a
/// panic. (Proofs are also hash-checked page by page.)
#[test]
fn corrupt_records_are_errors_not_panics() {
    let store = Arc::new(MemStore::new());
    let mut trie = Trie::open(Arc::clone(&store), TrieConfig::new()).unwrap();
    let root = trie.apply(&batch(0..400, 1)).unwrap();
    drop(trie);
    let records = store.snapshot();
    let probes: Vec<_> = (0u32..40)
        .map(|i| key_path(&(i * 13).to_le_bytes()))
        .collect();
    let mut state = 99u64;
    for (key, value) in &records {
        for _ in 0..6 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut bad = value.clone();
            if bad.is_empty() {
                continue;
            }
            let at = (state >> 33) as usize % bad.len();
            bad[at] ^= 1 << ((state >> 20) % 8);
            store.put_raw(key.clone(), bad);
            if let Ok(mut t) = Trie::open(Arc::clone(&store), TrieConfig::new()) {
                for p in &probes {
                    if let Ok(proof) = t.prove(p) {
                        // A proof that came out must still be honest.
                        let vh = value_hash(&[1]);
                        let present = (0u32..400).any(|i| key_path(&i.to_le_bytes()) == *p);
                        let claim = if present { Some(&vh) } else { None };
                        assert!(verify_path(&root, p, claim, &proof) || t.root() != root);
                    }
                }
                let _ = t.apply(&batch(390..410, 2));
            }
            store.put_raw(key.clone(), value.clone());
        }
    }
}

/// The trie over the LSM `Db`: batches across flushes and `Db` reopens
/// reach the same root as a trie that never closed, and a `Db` dropped
/// without `close` (crash after synced batches) keeps the committed root.
#[test]
fn db_backed_reopen_and_crash() {
    use strata_storage::{Db, Options};
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::new().memtable_bytes(64 << 10);
    let db = Arc::new(Db::open(dir.path(), opts()).unwrap());
    let mut trie = Trie::open(Arc::clone(&db), TrieConfig::new()).unwrap();
    trie.apply(&batch(0..500, 1)).unwrap();
    let root = trie.apply(&batch(250..900, 2)).unwrap();
    let version = trie.version();
    drop(trie);
    db.close().unwrap();
    drop(db);

    let db = Arc::new(Db::open(dir.path(), opts()).unwrap());
    let mut reopened = Trie::open(Arc::clone(&db), TrieConfig::new()).unwrap();
    assert_eq!(reopened.root(), root);
    assert_eq!(reopened.version(), version);
    let next = reopened.apply(&batch(100..200, 3)).unwrap();
    // No close: every `write_batch` is synced, so this is a crash.
    drop(reopened);
    drop(db);

    let db = Arc::new(Db::open(dir.path(), opts()).unwrap());
    let reopened = Trie::open(Arc::clone(&db), TrieConfig::new()).unwrap();
    assert_eq!(reopened.root(), next);

    let mut continuous = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    continuous.apply(&batch(0..500, 1)).unwrap();
    continuous.apply(&batch(250..900, 2)).unwrap();
    assert_eq!(continuous.apply(&batch(100..200, 3)).unwrap(), next);
}
