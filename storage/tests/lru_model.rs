//! Model-based property tests of `LruCache` against a plain reference LRU (a
//! `Vec` kept in recency order): every operation's result, the eviction
//! choice and the full recency order must match, for foldhash-hashed keys and
//! for 32-byte ids under the identity hash.

use proptest::prelude::*;
use strata_storage::lru::{IdentityState, LruCache, Put};

/// The simplest correct LRU: most recent first.
struct ModelLru {
    capacity: usize,
    entries: Vec<(u16, u32)>,
}

impl ModelLru {
    fn position(&self, k: u16) -> Option<usize> {
        self.entries.iter().position(|(key, _)| *key == k)
    }

    fn put(&mut self, k: u16, v: u32) -> Put<u16, u32> {
        if let Some(i) = self.position(k) {
            let (_, old) = self.entries.remove(i);
            self.entries.insert(0, (k, v));
            return Put::Updated(old);
        }
        self.entries.insert(0, (k, v));
        if self.entries.len() > self.capacity {
            let (key, value) = self.entries.pop().unwrap();
            return Put::Evicted { key, value };
        }
        Put::Inserted
    }

    fn get(&mut self, k: u16) -> Option<u32> {
        let i = self.position(k)?;
        let e = self.entries.remove(i);
        self.entries.insert(0, e);
        Some(e.1)
    }

    fn peek(&self, k: u16) -> Option<u32> {
        self.position(k).map(|i| self.entries[i].1)
    }

    fn remove(&mut self, k: u16) -> Option<u32> {
        self.position(k).map(|i| self.entries.remove(i).1)
    }

    fn pop_lru(&mut self) -> Option<(u16, u32)> {
        self.entries.pop()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(u16, u32),
    Get(u16),
    Peek(u16),
    Remove(u16),
    PopLru,
}

fn op_strategy(key_space: u16) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..key_space, any::<u32>()).prop_map(|(k, v)| Op::Put(k, v)),
        4 => (0..key_space).prop_map(Op::Get),
        1 => (0..key_space).prop_map(Op::Peek),
        3 => (0..key_space).prop_map(Op::Remove),
        1 => Just(Op::PopLru),
    ]
}

/// Ids for the identity-hash cache: blake3 of the small model key, so the
/// mapping is one-to-one and the ids are uniform.
fn id(k: u16) -> [u8; 32] {
    *blake3::hash(&k.to_le_bytes()).as_bytes()
}

fn run(capacity: usize, ops: Vec<Op>) {
    let mut model = ModelLru {
        capacity,
        entries: Vec::new(),
    };
    let mut by_key: LruCache<u16, u32> = LruCache::new(capacity);
    let mut by_id: LruCache<[u8; 32], u32, IdentityState> =
        LruCache::with_hasher(capacity, IdentityState);
    for op in ops {
        match op {
            Op::Put(k, v) => {
                let want = model.put(k, v);
                let got_id = match by_id.put(id(k), v) {
                    Put::Inserted => Put::Inserted,
                    Put::Updated(old) => Put::Updated(old),
                    Put::Evicted { key, value } => {
                        assert_eq!(
                            Some(key),
                            match &want {
                                Put::Evicted { key, .. } => Some(id(*key)),
                                _ => None,
                            }
                        );
                        Put::Evicted { key: 0, value }
                    }
                };
                let got = by_key.put(k, v);
                assert_eq!(got, want);
                let want_id = match want {
                    Put::Evicted { value, .. } => Put::Evicted { key: 0, value },
                    other => other,
                };
                assert_eq!(got_id, want_id);
            }
            Op::Get(k) => {
                let want = model.get(k);
                assert_eq!(by_key.get(&k).copied(), want);
                assert_eq!(by_id.get(&id(k)).copied(), want);
            }
            Op::Peek(k) => {
                let want = model.peek(k);
                assert_eq!(by_key.peek(&k).copied(), want);
                assert_eq!(by_id.peek(&id(k)).copied(), want);
            }
            Op::Remove(k) => {
                let want = model.remove(k);
                assert_eq!(by_key.remove(&k), want);
                assert_eq!(by_id.remove(&id(k)), want);
            }
            Op::PopLru => {
                let want = model.pop_lru();
                assert_eq!(by_key.pop_lru(), want);
                assert_eq!(by_id.pop_lru(), want.map(|(k, v)| (id(k), v)));
            }
        }
        assert_eq!(by_key.len(), model.entries.len());
        assert_eq!(by_id.len(), model.entries.len());
    }
    by_key.check_invariants();
    by_id.check_invariants();
    let order: Vec<(u16, u32)> = by_key.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(order, model.entries, "recency order differs from the model");
    let order_id: Vec<([u8; 32], u32)> = by_id.iter().map(|(k, v)| (*k, *v)).collect();
    let want_id: Vec<([u8; 32], u32)> = model.entries.iter().map(|(k, v)| (id(*k), *v)).collect();
    assert_eq!(order_id, want_id);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A small cache under a key space several times its size: constant
    /// eviction, many robin-hood moves.
    #[test]
    fn small_cache_matches_model(capacity in 1usize..40, ops in proptest::collection::vec(op_strategy(120), 1..1500)) {
        run(capacity, ops);
    }

    /// A larger cache with deletion storms (remove-heavy op mix comes from
    /// the key space being close to the capacity).
    #[test]
    fn large_cache_matches_model(capacity in 100usize..600, ops in proptest::collection::vec(op_strategy(700), 1..3000)) {
        run(capacity, ops);
    }
}

/// Filling a cache exactly to capacity, then replacing every entry: each put
/// past capacity evicts exactly the oldest.
#[test]
fn full_turnover_evicts_in_insertion_order() {
    let capacity = 10_000usize;
    let mut cache = LruCache::with_hasher(capacity, IdentityState);
    for n in 0..capacity as u32 {
        assert_eq!(cache.put(id(n as u16), n), Put::Inserted);
    }
    let mut cache2: LruCache<u32, u32> = LruCache::new(capacity);
    for n in 0..capacity as u32 {
        cache2.put(n, n);
    }
    for n in 0..capacity as u32 {
        match cache2.put(n + capacity as u32, n) {
            Put::Evicted { key, .. } => assert_eq!(key, n),
            other => panic!("expected eviction of {n}, got {other:?}"),
        }
    }
    cache.check_invariants();
    cache2.check_invariants();
}
