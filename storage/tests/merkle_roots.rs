//! Roots: apply, the streaming builder and an independent reference agree.

mod merkle_common;

use std::collections::BTreeMap;

use merkle_common::{clustered_path, reference_root, H};
use proptest::prelude::*;
use strata_storage::merkle::{
    key_path, root_of_sorted, root_of_sorted_parallel, value_hash, MemStore, Trie, TrieConfig,
    Update, EMPTY,
};

fn streaming_root(set: &BTreeMap<H, H>) -> H {
    root_of_sorted(set.iter().map(|(k, v)| (*k, *v))).unwrap()
}

/// An op: path selector (small domain so deletes and overwrites hit), value
/// (None = delete).
fn op_strategy() -> impl Strategy<Value = (u8, u16, Option<u8>)> {
    (
        0u8..4,
        0u16..300,
        proptest::option::weighted(0.7, any::<u8>()),
    )
}

/// Maps a selector to a path: cluster 0 uniform, others with shared
/// zero-byte prefixes of 1, 8 and 31 bytes.
fn path_of(cluster: u8, n: u16) -> H {
    let tail = key_path(&n.to_le_bytes());
    match cluster {
        0 => tail,
        1 => clustered_path(1, &tail),
        2 => clustered_path(8, &tail),
        _ => clustered_path(31, &tail),
    }
}

fn to_batch(ops: &[(u8, u16, Option<u8>)]) -> Vec<Update> {
    let mut map = BTreeMap::new();
    for (c, n, v) in ops {
        map.insert(path_of(*c, *n), v.map(|b| value_hash(&[b])));
    }
    map.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn apply_matches_streaming_and_reference(
        batches in prop::collection::vec(prop::collection::vec(op_strategy(), 0..120), 1..8),
        retained in 1u64..4,
    ) {
        let mut trie = Trie::open(MemStore::new(), TrieConfig::new().roots_retained(retained).threads(1)).unwrap();
        let mut model: BTreeMap<H, H> = BTreeMap::new();
        let mut roots = vec![EMPTY];
        for ops in &batches {
            let batch = to_batch(ops);
            for (p, v) in &batch {
                match v { Some(v) => { model.insert(*p, *v); } None => { model.remove(p); } }
            }
            let root = trie.apply(&batch).unwrap();
            prop_assert_eq!(root, streaming_root(&model));
            prop_assert_eq!(root, reference_root(&model));
            roots.push(root);
            for (p, v) in model.iter().take(20) {
                prop_assert_eq!(trie.get(p).unwrap(), Some(*v));
            }
        }
        // Every retained version still answers with its own root.
        let latest = trie.version();
        for v in trie.oldest_version()..=latest {
            prop_assert_eq!(trie.root_at(v).unwrap(), roots[v as usize]);
        }
        if trie.oldest_version() > 0 {
            prop_assert!(trie.root_at(trie.oldest_version() - 1).is_err());
        }
    }

    #[test]
    fn insert_then_delete_returns_to_old_root(
        base in prop::collection::vec(op_strategy(), 0..150),
        extra in prop::collection::vec((0u8..4, 300u16..600), 1..80),
    ) {
        let mut trie = Trie::open(MemStore::new(), TrieConfig::new().threads(1)).unwrap();
        let base: Vec<Update> = to_batch(&base).into_iter().filter(|(_, v)| v.is_some()).collect();
        let before = trie.apply(&base).unwrap();
        let mut ins = BTreeMap::new();
        let mut del = BTreeMap::new();
        for (c, n) in &extra {
            if base.iter().any(|(p, _)| *p == path_of(*c, *n)) {
                continue; // clustered paths collide; only fresh keys count
            }
            ins.insert(path_of(*c, *n), Some(value_hash(b"x")));
            del.insert(path_of(*c, *n), None);
        }
        let fresh = !ins.is_empty();
        let mid = trie.apply(&ins.into_iter().collect::<Vec<_>>()).unwrap();
        prop_assert_eq!(mid != before, fresh);
        let after = trie.apply(&del.into_iter().collect::<Vec<_>>()).unwrap();
        prop_assert_eq!(after, before);
    }

    #[test]
    fn batch_order_does_not_matter(
        ops in prop::collection::vec((0u8..4, 0u16..400, any::<u8>()), 0..200),
        cut in 0usize..200,
    ) {
        let all = to_batch(&ops.iter().map(|(c, n, v)| (*c, *n, Some(*v))).collect::<Vec<_>>());
        let cut = cut.min(all.len());
        let mut one = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
        let r1 = one.apply(&all).unwrap();
        // Same final set in two batches, the second first.
        let mut two = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
        two.apply(&all[cut..]).unwrap();
        let r2 = two.apply(&all[..cut]).unwrap();
        prop_assert_eq!(r1, r2);
    }
}

#[test]
fn empty_and_single_leaf_roots() {
    assert_eq!(root_of_sorted(std::iter::empty()).unwrap(), EMPTY);
    let p = key_path(b"k");
    let v = value_hash(b"v");
    let single = BTreeMap::from([(p, v)]);
    assert_eq!(streaming_root(&single), reference_root(&single));
    assert_eq!(
        streaming_root(&single),
        strata_storage::merkle::leaf_hash(&p, &v)
    );
}

#[test]
fn unsorted_input_is_an_error_not_a_wrong_root() {
    let a = key_path(b"a");
    let b = key_path(b"b");
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    assert!(root_of_sorted([(hi, EMPTY), (lo, EMPTY)]).is_err());
    assert!(root_of_sorted([(lo, EMPTY), (lo, EMPTY)]).is_err());
    let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    assert!(trie.apply(&[(hi, None), (lo, None)]).is_err());
}

#[test]
fn large_batches_parallel_equals_serial_equals_streaming() {
    let n = 20_000u32;
    let mut model = BTreeMap::new();
    for i in 0..n {
        model.insert(key_path(&i.to_le_bytes()), value_hash(&i.to_be_bytes()));
    }
    let batch: Vec<Update> = model.iter().map(|(k, v)| (*k, Some(*v))).collect();
    let mut serial = Trie::open(MemStore::new(), TrieConfig::new().threads(1)).unwrap();
    let mut parallel = Trie::open(MemStore::new(), TrieConfig::new().threads(2)).unwrap();
    let expected = streaming_root(&model);
    assert_eq!(serial.apply(&batch).unwrap(), expected);
    assert_eq!(parallel.apply(&batch).unwrap(), expected);
    let pairs: Vec<(H, H)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(root_of_sorted_parallel(&pairs, 2).unwrap().0, expected);
    assert_eq!(
        root_of_sorted_parallel(&pairs[..1], 2).unwrap().0,
        streaming_root(&BTreeMap::from([pairs[0]]))
    );
    // Update every third key and delete every fifth, in parallel.
    let mut second = Vec::new();
    for (i, (k, _)) in model.clone().iter().enumerate() {
        if i % 5 == 0 {
            model.remove(k);
            second.push((*k, None));
        } else if i % 3 == 0 {
            let v = value_hash(&[i as u8]);
            model.insert(*k, v);
            second.push((*k, Some(v)));
        }
    }
    let expected = streaming_root(&model);
    assert_eq!(serial.apply(&second).unwrap(), expected);
    assert_eq!(parallel.apply(&second).unwrap(), expected);
    assert_eq!(reference_root(&model), expected);
}

#[test]
fn pruning_leaves_no_pages_behind() {
    let retained = 3;
    let mut trie = Trie::open(MemStore::new(), TrieConfig::new().roots_retained(retained)).unwrap();
    let keys: Vec<H> = (0u32..3000).map(|i| key_path(&i.to_le_bytes())).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    for round in 0u8..4 {
        let batch: Vec<Update> = sorted
            .iter()
            .map(|k| (*k, Some(value_hash(&[round]))))
            .collect();
        trie.apply(&batch).unwrap();
    }
    let deletes: Vec<Update> = sorted.iter().map(|k| (*k, None)).collect();
    assert_eq!(trie.apply(&deletes).unwrap(), EMPTY);
    for _ in 0..retained {
        trie.apply(&[]).unwrap();
    }
    let pages = trie
        .store()
        .snapshot()
        .into_iter()
        .filter(|(k, _)| k[0] == b'p')
        .count();
    assert_eq!(pages, 0, "pages of pruned versions must be deleted");
}
