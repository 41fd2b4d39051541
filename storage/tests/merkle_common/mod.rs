//! Shared helpers of the merkle tests: an independent reference root and a
//! fault-injecting store.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_storage::merkle::{MemStore, NodeStore};

pub type H = [u8; 32];

/// The trie root straight from the written rules (docs/storage-format.md),
/// sharing no code with the crate: recursive split on path bits, a single
/// leaf stands for its subtree, keyed blake3 per domain.
pub fn reference_root(set: &BTreeMap<H, H>) -> H {
    let pairs: Vec<(H, H)> = set.iter().map(|(k, v)| (*k, *v)).collect();
    reference_subtree(&pairs, 0)
}

fn reference_subtree(pairs: &[(H, H)], depth: usize) -> H {
    let key_leaf = *blake3::hash(b"strata merkle v1 leaf").as_bytes();
    let key_node = *blake3::hash(b"strata merkle v1 node").as_bytes();
    match pairs {
        [] => [0u8; 32],
        [(path, vh)] => {
            let mut input = path.to_vec();
            input.extend_from_slice(vh);
            *blake3::keyed_hash(&key_leaf, &input).as_bytes()
        }
        _ => {
            let bit = |p: &H| p[depth / 8] & (0x80 >> (depth % 8)) != 0;
            let left: Vec<_> = pairs.iter().filter(|(p, _)| !bit(p)).cloned().collect();
            let right: Vec<_> = pairs.iter().filter(|(p, _)| bit(p)).cloned().collect();
            let mut input = reference_subtree(&left, depth + 1).to_vec();
            input.extend_from_slice(&reference_subtree(&right, depth + 1));
            *blake3::keyed_hash(&key_node, &input).as_bytes()
        }
    }
}

/// A store whose `write_batch` fails (without writing anything) once
/// `batches_ok` batches have succeeded.
pub struct FaultStore {
    pub inner: MemStore,
    pub batches_ok: AtomicU64,
}

/// The error `FaultStore` injects.
#[derive(Debug)]
pub struct Injected;

impl std::fmt::Display for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected write failure")
    }
}

impl std::error::Error for Injected {}

impl FaultStore {
    pub fn new(inner: MemStore, batches_ok: u64) -> Self {
        Self {
            inner,
            batches_ok: AtomicU64::new(batches_ok),
        }
    }
}

impl NodeStore for FaultStore {
    type Error = Injected;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Injected> {
        Ok(self.inner.get(key).expect("MemStore never fails"))
    }

    fn write_batch(
        &self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    ) -> Result<(), Injected> {
        let left = self.batches_ok.load(Ordering::SeqCst);
        if left == 0 {
            return Err(Injected);
        }
        self.batches_ok.store(left - 1, Ordering::SeqCst);
        self.inner
            .write_batch(puts, deletes)
            .expect("MemStore never fails");
        Ok(())
    }
}

/// Paths that often share long prefixes: `zero_bytes` leading zero bytes,
/// then random bytes. With 31 zero bytes leaves sit up to 256 deep.
pub fn clustered_path(zero_bytes: usize, tail: &H) -> H {
    let mut p = *tail;
    for b in p.iter_mut().take(zero_bytes.min(32)) {
        *b = 0;
    }
    p
}
