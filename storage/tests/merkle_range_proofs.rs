//! Range proofs: every range of every leaf set proves and verifies, the
//! stored-page prover agrees with the in-memory one at every retained
//! version, and no altered run, proof or root verifies.

mod merkle_common;

use std::collections::BTreeMap;

use merkle_common::{clustered_path, reference_root, H};
use proptest::prelude::*;
use strata_storage::merkle::limits::RANGE_PROOF_BYTES_MAX;
use strata_storage::merkle::{
    key_path, leaf_hash, value_hash, verify_range, Error, MemStore, OutsideItem, RangeProof,
    RangeProofError, Trie, TrieConfig, Update,
};

/// The leaves of `model` with paths in `[lo, hi]`: what a state-sync chunk
/// holds.
fn expected_run(model: &BTreeMap<H, H>, lo: &H, hi: &H) -> Vec<(H, H)> {
    model.range(*lo..=*hi).map(|(p, v)| (*p, *v)).collect()
}

fn all_leaves(model: &BTreeMap<H, H>) -> Vec<(H, H)> {
    model.iter().map(|(p, v)| (*p, *v)).collect()
}

/// `path + 1` (wrapping), as a 256-bit big-endian number.
fn inc(path: &H) -> H {
    let mut out = *path;
    for byte in out.iter_mut().rev() {
        let (next, carry) = byte.overflowing_add(1);
        *byte = next;
        if !carry {
            break;
        }
    }
    out
}

/// `path - 1` (wrapping).
fn dec(path: &H) -> H {
    let mut out = *path;
    for byte in out.iter_mut().rev() {
        let (next, borrow) = byte.overflowing_sub(1);
        *byte = next;
        if !borrow {
            break;
        }
    }
    out
}

/// A small deterministic generator for picking bounds inside a case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn path(&mut self) -> H {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        out
    }
}

/// Ranges worth checking for `model`: the full range, single paths (present
/// and absent), bounds on, just beside and between existing paths, empty
/// ranges between neighbours, and random bounds.
fn ranges(model: &BTreeMap<H, H>, rng: &mut Rng, cluster: usize) -> Vec<(H, H)> {
    let paths: Vec<H> = model.keys().copied().collect();
    let mut out = vec![([0u8; 32], [0xFFu8; 32])];
    let pick = |rng: &mut Rng| -> H {
        if paths.is_empty() || rng.below(4) == 0 {
            clustered_path(cluster, &rng.path())
        } else {
            let p = paths[rng.below(paths.len())];
            match rng.below(3) {
                0 => p,
                1 => inc(&p),
                _ => dec(&p),
            }
        }
    };
    for _ in 0..12 {
        let (a, b) = (pick(rng), pick(rng));
        out.push((a.min(b), a.max(b)));
    }
    for _ in 0..3 {
        let p = pick(rng);
        out.push((p, p));
    }
    if paths.len() >= 2 {
        // Strictly between two neighbours: no leaf in range.
        let i = rng.below(paths.len() - 1);
        let (lo, hi) = (inc(&paths[i]), dec(&paths[i + 1]));
        if lo <= hi {
            out.push((lo, hi));
        }
        // Exactly from one existing path to another.
        let j = rng.below(paths.len());
        out.push((paths[i.min(j)], paths[i.max(j)]));
    }
    out.push(([0u8; 32], [0u8; 32]));
    out.push(([0xFFu8; 32], [0xFFu8; 32]));
    out
}

/// One altered `(run, proof, root)`, named for the failure message.
struct Alteration {
    name: String,
    run: Vec<(H, H)>,
    proof: RangeProof,
    root: H,
}

/// Alterations of a valid `(run, proof, root)` that must all fail: each is
/// a different statement about the same root, or a different root. Every
/// non-empty outside item is altered; run leaves and empty items (mostly
/// the deep levels of the bound paths) are sampled, to keep the case count
/// affordable.
fn tampered(
    rng: &mut Rng,
    model: &BTreeMap<H, H>,
    lo: &H,
    hi: &H,
    run: &[(H, H)],
    proof: &RangeProof,
    root: &H,
) -> Vec<Alteration> {
    let mut out = Vec::new();
    let same = |name: &str, run: Vec<(H, H)>, proof: RangeProof| Alteration {
        name: name.to_string(),
        run,
        proof,
        root: *root,
    };
    let mut sampled: Vec<usize> = (0..run.len())
        .filter(|i| *i < 2 || *i + 2 >= run.len())
        .collect();
    if !run.is_empty() {
        sampled.extend((0..4).map(|_| rng.below(run.len())));
    }
    for i in sampled {
        let mut dropped = run.to_vec();
        dropped.remove(i);
        out.push(same("drop a run leaf", dropped, proof.clone()));
        let mut changed = run.to_vec();
        changed[i].1[0] ^= 1;
        out.push(same("change a value hash", changed, proof.clone()));
    }
    let candidates = [*lo, *hi, inc(lo), dec(hi)];
    if let Some(extra) = candidates
        .iter()
        .find(|p| lo <= *p && *p <= hi && !model.contains_key(*p))
    {
        let mut added = run.to_vec();
        added.push((*extra, value_hash(b"forged")));
        added.sort();
        out.push(same("add a leaf in range", added, proof.clone()));
    }
    let empty_sample = rng.below(16);
    for (i, item) in proof.items.iter().enumerate() {
        if *item == OutsideItem::Empty && i >= 4 && i % 16 != empty_sample {
            continue;
        }
        let mut with = |name: &str, replacement: OutsideItem| {
            let mut p = proof.clone();
            p.items[i] = replacement;
            out.push(same(name, run.to_vec(), p));
        };
        let forged_leaf = OutsideItem::Leaf {
            path: [0xA5; 32],
            value_hash: [1; 32],
        };
        match *item {
            OutsideItem::Empty => {
                with("outside Empty -> Leaf", forged_leaf);
                with("outside Empty -> Node", OutsideItem::Node([7; 32]));
            }
            OutsideItem::Leaf { path, value_hash } => {
                with("outside Leaf -> Empty", OutsideItem::Empty);
                // Any other hash than the leaf's own (see
                // `a_leaf_item_given_as_its_hash_is_the_same_statement`).
                with("outside Leaf -> Node", OutsideItem::Node([7; 32]));
                let mut nearby = path;
                nearby[31] ^= 1;
                with(
                    "move an outside leaf within its node",
                    OutsideItem::Leaf {
                        path: nearby,
                        value_hash,
                    },
                );
                let mut far = path;
                far[0] ^= 0x80;
                with(
                    "move an outside leaf to the other half",
                    OutsideItem::Leaf {
                        path: far,
                        value_hash,
                    },
                );
            }
            OutsideItem::Node(hash) => {
                with("outside Node -> Empty", OutsideItem::Empty);
                with("outside Node -> Leaf", forged_leaf);
                let mut other = hash;
                other[5] ^= 1;
                with("change an outside node hash", OutsideItem::Node(other));
            }
        }
    }
    if !proof.items.is_empty() {
        let mut truncated = proof.clone();
        truncated.items.pop();
        out.push(same("truncate the items", run.to_vec(), truncated));
        let mut first_dropped = proof.clone();
        first_dropped.items.remove(0);
        out.push(same("drop the first item", run.to_vec(), first_dropped));
    }
    let mut extended = proof.clone();
    extended.items.push(OutsideItem::Empty);
    out.push(same("append an item", run.to_vec(), extended));
    let mut wrong_root = *root;
    wrong_root[31] ^= 1;
    out.push(Alteration {
        root: wrong_root,
        ..same("wrong root", run.to_vec(), proof.clone())
    });
    out
}

fn build_model(seeds: &[(u16, u8)], cluster: usize) -> BTreeMap<H, H> {
    seeds
        .iter()
        .map(|(n, v)| {
            (
                clustered_path(cluster, &key_path(&n.to_le_bytes())),
                value_hash(&[*v]),
            )
        })
        .collect()
}

fn trie_of(model: &BTreeMap<H, H>) -> Trie<MemStore> {
    let mut trie = Trie::open(MemStore::new(), TrieConfig::new().threads(1)).unwrap();
    let batch: Vec<Update> = model.iter().map(|(k, v)| (*k, Some(*v))).collect();
    trie.apply(&batch).unwrap();
    trie
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Every range proves and verifies (in memory and from stored pages,
    /// which agree), survives encode/decode, and every alteration fails.
    #[test]
    fn every_range_proves_and_no_alteration_verifies(
        seeds in prop::collection::vec((any::<u16>(), any::<u8>()), 0..300),
        cluster in prop::sample::select(vec![0usize, 1, 31]),
        rng_seed in any::<u64>(),
    ) {
        let model = build_model(&seeds, cluster);
        let leaves = all_leaves(&model);
        let root = reference_root(&model);
        let trie = trie_of(&model);
        prop_assert_eq!(trie.root(), root);
        let mut rng = Rng(rng_seed | 1);
        for (lo, hi) in ranges(&model, &mut rng, cluster) {
            let run = expected_run(&model, &lo, &hi);
            let proof = RangeProof::from_sorted(&leaves, &lo, &hi).unwrap();
            prop_assert_eq!(&trie.prove_range(&lo, &hi).unwrap(), &proof);
            let bytes = proof.encode();
            prop_assert!(bytes.len() <= RANGE_PROOF_BYTES_MAX);
            let decoded = RangeProof::decode(&bytes).unwrap();
            prop_assert_eq!(&decoded, &proof);
            prop_assert_eq!(verify_range(&root, &lo, &hi, &run, &decoded), Ok(()));
            for bad in tampered(&mut rng, &model, &lo, &hi, &run, &proof, &root) {
                prop_assert!(
                    verify_range(&bad.root, &lo, &hi, &bad.run, &bad.proof).is_err(),
                    "{} verified for [{:02x?}.., {:02x?}..]", bad.name, &lo[..4], &hi[..4]
                );
            }
        }
    }
}

/// An in-range leaf sitting collapsed at a node that straddles `lo` could
/// be passed off as the outside item of that node's outside child and left
/// out of the run: the combine step moves it back up to where it sits, so
/// the root matches. Only the check that an outside leaf lies under its node
/// catches it (with the check removed from `verify_range`, this test fails).
#[test]
fn collapsed_in_range_leaf_presented_as_outside_is_rejected() {
    // p = 0110… sits alone in the left half (depth 1), b = 1100… alone in
    // the right half. Range [0100…, 1…1]: the left half straddles lo, its
    // children are 00… (outside) and 01… (inside, holding p).
    let mut p = [0u8; 32];
    p[0] = 0b0110_0000;
    let mut b = [0u8; 32];
    b[0] = 0b1100_0000;
    let (vp, vb) = (value_hash(b"p"), value_hash(b"b"));
    let model: BTreeMap<H, H> = [(p, vp), (b, vb)].into_iter().collect();
    let root = reference_root(&model);
    let mut lo = [0u8; 32];
    lo[0] = 0b0100_0000;
    let hi = [0xFFu8; 32];

    let honest = RangeProof::from_sorted(&all_leaves(&model), &lo, &hi).unwrap();
    assert_eq!(honest.items, [OutsideItem::Empty]);
    assert_eq!(
        verify_range(&root, &lo, &hi, &[(p, vp), (b, vb)], &honest),
        Ok(())
    );

    // The attack: p as the outside leaf of 00…, the run without it.
    let forged = RangeProof {
        items: vec![OutsideItem::Leaf {
            path: p,
            value_hash: vp,
        }],
    };
    assert_eq!(
        verify_range(&root, &lo, &hi, &[(b, vb)], &forged),
        Err(RangeProofError::OutsideLeafNotUnderNode { index: 0, depth: 2 })
    );
}

/// The one change of kind the verifier cannot see: an outside leaf given as
/// `Node(leaf_hash)` hashes the same wherever its sibling is not empty
/// (the combine step only treats leaves specially beside an empty sibling).
/// It is the same statement — the item is outside the range either way — so
/// the proof still shows exactly the run. Provers emit the `Leaf` form.
#[test]
fn a_leaf_item_given_as_its_hash_is_the_same_statement() {
    let model: BTreeMap<H, H> = (0u32..40)
        .map(|i| (key_path(&i.to_le_bytes()), value_hash(&[i as u8])))
        .collect();
    let leaves = all_leaves(&model);
    let root = reference_root(&model);
    let mut rng = Rng(99);
    let mut swapped_ok = 0;
    for (lo, hi) in ranges(&model, &mut rng, 0) {
        let run = expected_run(&model, &lo, &hi);
        let proof = RangeProof::from_sorted(&leaves, &lo, &hi).unwrap();
        for (i, item) in proof.items.iter().enumerate() {
            if let OutsideItem::Leaf { path, value_hash } = item {
                let mut p = proof.clone();
                p.items[i] = OutsideItem::Node(leaf_hash(path, value_hash));
                if verify_range(&root, &lo, &hi, &run, &p).is_ok() {
                    swapped_ok += 1;
                    // Still no other run verifies with it.
                    if let Some(first) = run.first() {
                        assert!(
                            verify_range(&root, &lo, &hi, &run[1..], &p).is_err(),
                            "{first:?}"
                        );
                    }
                }
            }
        }
    }
    assert!(swapped_ok > 0);
}

/// The stored-page prover gives the in-memory proof of that version's leaf
/// set at every retained version of a trie that grows and shrinks.
#[test]
fn stored_prover_agrees_with_from_sorted_at_every_retained_version() {
    let retained = 5;
    let mut trie = Trie::open(
        MemStore::new(),
        TrieConfig::new().roots_retained(retained).threads(1),
    )
    .unwrap();
    let mut model: BTreeMap<H, H> = BTreeMap::new();
    let mut models = vec![model.clone()];
    let mut rng = Rng(0x5EED);
    for version in 1u64..=12 {
        let mut batch: BTreeMap<H, Option<H>> = BTreeMap::new();
        for _ in 0..(40 + rng.below(200)) {
            let n = rng.below(600) as u32;
            let path = clustered_path((version % 3) as usize, &key_path(&n.to_le_bytes()));
            let op = (rng.below(4) != 0).then(|| value_hash(&version.to_le_bytes()));
            batch.insert(path, op);
        }
        for (p, op) in &batch {
            match op {
                Some(v) => model.insert(*p, *v),
                None => model.remove(p),
            };
        }
        let updates: Vec<Update> = batch.into_iter().collect();
        assert_eq!(trie.apply(&updates).unwrap(), reference_root(&model));
        models.push(model.clone());
        for v in trie.oldest_version()..=version {
            let at = &models[v as usize];
            let root = trie.root_at(v).unwrap();
            let leaves = all_leaves(at);
            for (lo, hi) in ranges(at, &mut rng, 0) {
                let proof = trie.prove_range_at(v, &lo, &hi).unwrap();
                assert_eq!(
                    proof,
                    RangeProof::from_sorted(&leaves, &lo, &hi).unwrap(),
                    "version {v}"
                );
                let run = expected_run(at, &lo, &hi);
                assert_eq!(verify_range(&root, &lo, &hi, &run, &proof), Ok(()));
            }
        }
    }
    let old = trie.oldest_version() - 1;
    assert!(matches!(
        trie.prove_range_at(old, &[0; 32], &[0xFF; 32]),
        Err(Error::VersionNotRetained { .. })
    ));
}

#[test]
fn inverted_bounds_are_refused() {
    let (lo, hi) = ([2u8; 32], [1u8; 32]);
    let trie = trie_of(&BTreeMap::new());
    assert!(matches!(
        trie.prove_range(&lo, &hi),
        Err(Error::RangeInverted { .. })
    ));
    assert_eq!(
        RangeProof::from_sorted(&[], &lo, &hi),
        Err(RangeProofError::RangeInverted)
    );
    assert_eq!(
        verify_range(&[0; 32], &lo, &hi, &[], &RangeProof::default()),
        Err(RangeProofError::RangeInverted)
    );
}

#[test]
fn run_checks_come_first() {
    let model: BTreeMap<H, H> = (0u32..20)
        .map(|i| (key_path(&i.to_le_bytes()), value_hash(b"v")))
        .collect();
    let root = reference_root(&model);
    let (lo, hi) = ([0x20u8; 32], [0xC0u8; 32]);
    let proof = RangeProof::from_sorted(&all_leaves(&model), &lo, &hi).unwrap();
    let run = expected_run(&model, &lo, &hi);
    assert!(run.len() >= 2);
    let mut reversed = run.clone();
    reversed.swap(0, 1);
    assert_eq!(
        verify_range(&root, &lo, &hi, &reversed, &proof),
        Err(RangeProofError::Unsorted { index: 1 })
    );
    let mut duplicated = run.clone();
    duplicated.insert(1, run[0]);
    assert_eq!(
        verify_range(&root, &lo, &hi, &duplicated, &proof),
        Err(RangeProofError::Unsorted { index: 1 })
    );
    let mut outside = run.clone();
    outside.push(([0xF0; 32], value_hash(b"v")));
    assert_eq!(
        verify_range(&root, &lo, &hi, &outside, &proof),
        Err(RangeProofError::LeafOutsideRange { index: run.len() })
    );
}

/// The smoke form of the `merkle_range_proof_decode` fuzz target: random
/// and mutated bytes never panic the decoder, whatever decodes re-encodes
/// to the same bytes, and verifying it never panics.
#[test]
fn random_bytes_never_panic_the_range_decoder() {
    let model: BTreeMap<H, H> = (0u32..30)
        .map(|i| (key_path(&i.to_le_bytes()), value_hash(b"v")))
        .collect();
    let root = reference_root(&model);
    let (lo, hi) = ([0x30u8; 32], [0xB0u8; 32]);
    let valid = RangeProof::from_sorted(&all_leaves(&model), &lo, &hi)
        .unwrap()
        .encode();
    let run = expected_run(&model, &lo, &hi);
    let mut rng = Rng(7);
    let mut decoded_ok = 0;
    for round in 0..20_000 {
        let mut bytes = if round % 2 == 0 {
            valid.clone()
        } else {
            let len = rng.below(300);
            (0..len).map(|_| rng.next() as u8).collect()
        };
        for _ in 0..rng.below(4) {
            if bytes.is_empty() {
                break;
            }
            match rng.below(3) {
                0 => {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let keep = rng.below(bytes.len());
                    bytes.truncate(keep);
                }
                _ => bytes.push(rng.next() as u8),
            }
        }
        if round % 7 == 0 && bytes.len() >= 3 {
            bytes[0] = 1;
            bytes[1] = (bytes.len() % 5) as u8;
            bytes[2] = 0;
        }
        if let Ok(proof) = RangeProof::decode(&bytes) {
            decoded_ok += 1;
            assert_eq!(proof.encode(), bytes);
            let _ = verify_range(&root, &lo, &hi, &run, &proof);
            let _ = verify_range(&root, &lo, &lo, &[], &proof);
        }
    }
    assert!(decoded_ok > 0);
}
