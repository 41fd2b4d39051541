//! Model-based property tests of `OrderedTable` against `BTreeMap`: every
//! operation must return what the model returns, iteration and ranges must be
//! in the model's (sorted) order, and the structural invariants must hold
//! after every sequence — including growth, deletion storms, and keys that
//! share a long prefix (all landing on one home slot).

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use strata_storage::ordered_table::{Key, OrderedTable};

#[derive(Debug, Clone)]
enum Op {
    Insert(Key, u32),
    Remove(Key),
    Get(Key),
    Range(Key, Option<Key>),
    Clear,
}

/// A key from one of three families: uniform (blake3 of a small id, so ids
/// repeat and updates/removals hit), adversarial (a shared 16-byte prefix),
/// and boundary values (all zeros / all ones ends of the key space).
fn key_strategy() -> impl Strategy<Value = Key> {
    prop_oneof![
        6 => (0u32..400).prop_map(|n| *blake3::hash(&n.to_le_bytes()).as_bytes()),
        3 => (0u32..400).prop_map(|n| {
            let mut k = *blake3::hash(&n.to_be_bytes()).as_bytes();
            k[..16].fill(0x42);
            k
        }),
        1 => (0u8..8, any::<bool>()).prop_map(|(b, high)| {
            let mut k = if high { [0xFF; 32] } else { [0; 32] };
            k[31] = b;
            k
        }),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (key_strategy(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        5 => key_strategy().prop_map(Op::Remove),
        3 => key_strategy().prop_map(Op::Get),
        1 => (key_strategy(), proptest::option::of(key_strategy())).prop_map(|(a, b)| Op::Range(a, b)),
        1 => Just(Op::Clear),
    ]
}

fn check_against_model(ops: Vec<Op>, presized: bool) {
    let mut table = if presized {
        OrderedTable::with_capacity(512)
    } else {
        OrderedTable::new()
    };
    let mut model: BTreeMap<Key, u32> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Insert(k, v) => assert_eq!(table.insert(k, v), model.insert(k, v)),
            Op::Remove(k) => assert_eq!(table.remove(&k), model.remove(&k)),
            Op::Get(k) => {
                assert_eq!(table.get(&k), model.get(&k));
                assert_eq!(table.contains_key(&k), model.contains_key(&k));
            }
            Op::Range(a, b) => {
                let end = match b {
                    Some(b) if b >= a => Bound::Excluded(b),
                    _ => Bound::Unbounded,
                };
                let got: Vec<(Key, u32)> = table
                    .range((Bound::Included(a), end))
                    .map(|(k, v)| (*k, *v))
                    .collect();
                let want: Vec<(Key, u32)> = model
                    .range((Bound::Included(a), end))
                    .map(|(k, v)| (*k, *v))
                    .collect();
                assert_eq!(got, want);
            }
            Op::Clear => {
                table.clear();
                model.clear();
            }
        }
        assert_eq!(table.len(), model.len());
    }
    table.check_invariants();
    let got: Vec<(Key, u32)> = table.iter().map(|(k, v)| (*k, *v)).collect();
    let want: Vec<(Key, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got, want, "iteration order differs from the sorted model");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_btreemap_growing(ops in proptest::collection::vec(op_strategy(), 1..2000)) {
        check_against_model(ops, false);
    }

    #[test]
    fn matches_btreemap_presized(ops in proptest::collection::vec(op_strategy(), 1..2000)) {
        check_against_model(ops, true);
    }

    #[test]
    fn get_mut_updates_in_place(keys in proptest::collection::vec(key_strategy(), 1..300)) {
        let mut table = OrderedTable::new();
        let mut model = BTreeMap::new();
        for k in &keys {
            table.insert(*k, 0u32);
            model.insert(*k, 0u32);
        }
        for k in &keys {
            *table.get_mut(k).unwrap() += 1;
            *model.get_mut(k).unwrap() += 1;
        }
        let got: Vec<(Key, u32)> = table.iter().map(|(k, v)| (*k, *v)).collect();
        let want: Vec<(Key, u32)> = model.into_iter().collect();
        prop_assert_eq!(got, want);
    }
}

/// Growth from the minimum size to 200 k keys, then a deletion storm that
/// removes keys in a different order, checking invariants at checkpoints.
#[test]
fn growth_and_deletion_storm() {
    let n = 200_000u32;
    let keys: Vec<Key> = (0..n)
        .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
        .collect();
    let mut table = OrderedTable::new();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(table.insert(*k, i as u32), None);
    }
    table.check_invariants();
    assert_eq!(table.spilled_len(), 0, "uniform keys must never spill");
    // Remove every key with an odd index, from the back.
    for (i, k) in keys.iter().enumerate().rev() {
        if i % 2 == 1 {
            assert_eq!(table.remove(k), Some(i as u32));
        }
    }
    table.check_invariants();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(table.get(k).copied(), (i % 2 == 0).then_some(i as u32));
    }
    let mut sorted: Vec<Key> = keys.iter().step_by(2).copied().collect();
    sorted.sort();
    let seen: Vec<Key> = table.iter().map(|(k, _)| *k).collect();
    assert_eq!(seen, sorted);
}

/// 20 k keys sharing a 24-byte prefix: one home slot for all of them, in a
/// table that grows. Everything must still be found, in order, and the slot
/// array must not balloon (growth counts only keys placed in slots).
#[test]
fn adversarial_prefix_with_growth() {
    let mut table = OrderedTable::new();
    let mut model = BTreeMap::new();
    for i in 0u32..20_000 {
        let mut k = *blake3::hash(&i.to_le_bytes()).as_bytes();
        k[..24].fill(0);
        table.insert(k, i);
        model.insert(k, i);
    }
    table.check_invariants();
    assert!(
        table.capacity() < 1024,
        "adversarial keys grew the slot array to {}",
        table.capacity()
    );
    let got: Vec<(Key, u32)> = table.iter().map(|(k, v)| (*k, *v)).collect();
    let want: Vec<(Key, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got, want);
    for (k, v) in &model {
        assert_eq!(table.remove(k), Some(*v));
    }
    assert!(table.is_empty());
}
