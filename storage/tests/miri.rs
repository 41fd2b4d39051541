//! A small, fast subset of the table and cache tests for Miri, covering every
//! `unsafe` block: placement with shifting, backward-shift deletion, growth,
//! spilling, iteration, eviction with list patching, and drops of values that
//! own heap memory (so a double drop or a leak is caught).
//!
//! Run: `cargo +nightly miri test -p strata-storage --test miri`
//! (it also runs, quickly, in the normal `cargo test`).

use strata_storage::lru::{IdentityState, LruCache, Put};
use strata_storage::ordered_table::{Key, OrderedTable};

fn key(n: u32) -> Key {
    // Cheap to compute under Miri (no blake3): spread n over the top bytes
    // with a multiplicative hash so homes are uniform.
    let h = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&h.to_be_bytes());
    k[8..12].copy_from_slice(&n.to_le_bytes());
    k
}

#[test]
fn ordered_table_owned_values() {
    let mut t: OrderedTable<String> = OrderedTable::new();
    for n in 0..60 {
        assert!(t.insert(key(n), format!("v{n}")).is_none());
    }
    assert_eq!(t.insert(key(3), "again".to_string()).as_deref(), Some("v3"));
    for n in (0..60).step_by(3) {
        assert!(t.remove(&key(n)).is_some());
    }
    let count = t.iter().count();
    assert_eq!(count, 40);
    let at_or_after = t.iter().filter(|(k, _)| **k >= key(10)).count();
    assert_eq!(t.range(key(10)..).count(), at_or_after);
    // Adversarial: shared prefix forces spilling.
    for n in 0..80 {
        let mut k = key(n);
        k[..8].fill(7);
        t.insert(k, String::from("spilled"));
    }
    assert!(t.spilled_len() > 0);
    t.check_invariants();
    t.clear();
    assert!(t.is_empty());
    t.insert(key(1), "kept for drop".into());
}

#[test]
fn lru_owned_keys_and_values() {
    let mut c: LruCache<String, Vec<u8>> = LruCache::new(20);
    for n in 0..50u32 {
        c.put(n.to_string(), vec![n as u8; 3]);
        if n % 4 == 0 {
            c.get(&(n / 2).to_string());
        }
        if n % 5 == 0 {
            c.remove(&(n / 3).to_string());
        }
    }
    c.check_invariants();
    assert!(c.pop_lru().is_some());
    let mut ids: LruCache<Key, Box<u32>, IdentityState> = LruCache::with_hasher(8, IdentityState);
    for n in 0..40 {
        let mut k = key(n);
        if n % 2 == 0 {
            k[..8].fill(1); // half the keys collide on one home
        }
        if let Put::Evicted { value, .. } = ids.put(k, Box::new(n)) {
            assert!(*value < n);
        }
    }
    ids.check_invariants();
}
