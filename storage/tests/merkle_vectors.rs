//! Test vectors: roots another implementation must reproduce (they are
//! also printed in docs/storage-format.md).

mod merkle_common;

use std::collections::BTreeMap;

use merkle_common::reference_root;
use strata_storage::merkle::{
    key_path, root_of_sorted, value_hash, Batch, MemStore, Trie, TrieConfig, EMPTY,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// keys "key-0" .. "key-9", values "value-0" .. "value-9".
fn ten_keys() -> BTreeMap<[u8; 32], [u8; 32]> {
    (0..10)
        .map(|i| {
            (
                key_path(format!("key-{i}").as_bytes()),
                value_hash(format!("value-{i}").as_bytes()),
            )
        })
        .collect()
}

#[test]
fn ten_key_vector() {
    let set = ten_keys();
    let root = root_of_sorted(set.iter().map(|(k, v)| (*k, *v))).unwrap();
    assert_eq!(root, reference_root(&set));
    let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    let mut batch = Batch::new();
    for i in 0..10 {
        batch.put(
            format!("key-{i}").as_bytes(),
            format!("value-{i}").as_bytes(),
        );
    }
    assert_eq!(trie.apply(&batch.into_sorted()).unwrap(), root);
    assert_eq!(
        hex(&root),
        "ef61f474ba3d506c773b0c107d7a205bab95b6b87bfa7ac742eeddd49787a2c9"
    );
}

#[test]
fn one_key_vector() {
    let set: BTreeMap<_, _> = [(key_path(b"key-0"), value_hash(b"value-0"))].into();
    let root = root_of_sorted(set.iter().map(|(k, v)| (*k, *v))).unwrap();
    assert_eq!(
        hex(&root),
        "7c4a29b1322dedeee5d2fc4c2c2ea72c5c0166e56749c8515f076022e754728c"
    );
    assert_eq!(root_of_sorted(std::iter::empty()).unwrap(), EMPTY);
}
