//! Proofs: present keys prove inclusion, absent keys exclusion; no altered
//! proof, key, value or root verifies a false statement; decoding untrusted
//! bytes never panics.

mod merkle_common;

use std::collections::BTreeMap;

use merkle_common::{clustered_path, H};
use proptest::prelude::*;
use strata_storage::merkle::limits::PROOF_BYTES_MAX;
use strata_storage::merkle::{
    key_path, value_hash, verify, verify_path, MemStore, Proof, ProofError, Trie, TrieConfig,
    Update,
};

fn build(keys: &[(u16, u8)], cluster: usize) -> (Trie<MemStore>, BTreeMap<H, H>) {
    let mut model = BTreeMap::new();
    for (n, v) in keys {
        let path = clustered_path(cluster, &key_path(&n.to_le_bytes()));
        model.insert(path, value_hash(&[*v]));
    }
    let batch: Vec<Update> = model.iter().map(|(k, v)| (*k, Some(*v))).collect();
    let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    trie.apply(&batch).unwrap();
    (trie, model)
}

/// Whether `verify_path` may accept: the statement must be true.
fn statement_true(model: &BTreeMap<H, H>, path: &H, vh: Option<&H>) -> bool {
    model.get(path) == vh
}

fn flip(bytes: &mut [u8], bit: usize) {
    bytes[bit / 8] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn present_keys_prove_inclusion_absent_prove_exclusion(
        keys in prop::collection::vec((any::<u16>(), any::<u8>()), 0..150),
        absent in prop::collection::vec(any::<[u8; 32]>(), 1..20),
        cluster in prop::sample::select(vec![0usize, 1, 31]),
    ) {
        let (trie, model) = build(&keys, cluster);
        let root = trie.root();
        for (path, vh) in &model {
            let proof = trie.prove(path).unwrap();
            prop_assert!(proof.is_inclusion());
            let decoded = Proof::decode(&proof.encode()).unwrap();
            prop_assert_eq!(&decoded, &proof);
            prop_assert!(verify_path(&root, path, Some(vh), &decoded));
            prop_assert!(!verify_path(&root, path, None, &decoded));
        }
        for tail in &absent {
            let path = clustered_path(cluster, tail);
            if model.contains_key(&path) {
                continue;
            }
            let proof = trie.prove(&path).unwrap();
            prop_assert!(!proof.is_inclusion());
            let decoded = Proof::decode(&proof.encode()).unwrap();
            prop_assert!(verify_path(&root, &path, None, &decoded));
            prop_assert!(!verify_path(&root, &path, Some(&value_hash(b"?")), &decoded));
        }
    }

    #[test]
    fn no_single_bit_flip_verifies_a_false_statement(
        keys in prop::collection::vec((any::<u16>(), any::<u8>()), 1..80),
        pick in any::<prop::sample::Index>(),
        absent_tail in any::<[u8; 32]>(),
        cluster in prop::sample::select(vec![0usize, 31]),
    ) {
        let (trie, model) = build(&keys, cluster);
        let root = trie.root();
        let present: Vec<(H, H)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        let (ppath, pvh) = present[pick.index(present.len())];
        let apath = clustered_path(cluster, &absent_tail);
        let mut cases = vec![(ppath, Some(pvh))];
        if !model.contains_key(&apath) {
            cases.push((apath, None));
        }
        for (path, vh) in cases {
            let bytes = trie.prove(&path).unwrap().encode();
            let proof = Proof::decode(&bytes).unwrap();
            prop_assert!(verify_path(&root, &path, vh.as_ref(), &proof));
            // Proof bits.
            for bit in 0..bytes.len() * 8 {
                let mut bad = bytes.clone();
                flip(&mut bad, bit);
                if let Ok(bad_proof) = Proof::decode(&bad) {
                    prop_assert!(!verify_path(&root, &path, vh.as_ref(), &bad_proof),
                        "proof bit {} flipped still verifies", bit);
                }
            }
            // Path bits: accepted only if the statement is true for the new path.
            for bit in 0..256 {
                let mut bad = path;
                flip(&mut bad, bit);
                if verify_path(&root, &bad, vh.as_ref(), &proof) {
                    prop_assert!(statement_true(&model, &bad, vh.as_ref()));
                }
            }
            // Root bits.
            for bit in 0..256 {
                let mut bad = root;
                flip(&mut bad, bit);
                prop_assert!(!verify_path(&bad, &path, vh.as_ref(), &proof));
            }
            // Value-hash bits (inclusion only; exclusion has none).
            if let Some(vh) = vh {
                for bit in 0..256 {
                    let mut bad = vh;
                    flip(&mut bad, bit);
                    prop_assert!(!verify_path(&root, &path, Some(&bad), &proof));
                }
            }
        }
    }

    #[test]
    fn truncated_and_extended_proofs_are_errors(
        keys in prop::collection::vec((any::<u16>(), any::<u8>()), 1..60),
        probe in any::<[u8; 32]>(),
        extra in prop::collection::vec(any::<u8>(), 1..40),
    ) {
        let (trie, _) = build(&keys, 0);
        let bytes = trie.prove(&probe).unwrap().encode();
        for len in 0..bytes.len() {
            prop_assert!(Proof::decode(&bytes[..len]).is_err());
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        let is_trailing = matches!(Proof::decode(&longer), Err(ProofError::TrailingBytes { .. }));
        prop_assert!(is_trailing);
    }
}

#[test]
fn user_key_api_round_trip() {
    let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    let mut batch = strata_storage::merkle::Batch::new();
    batch
        .put(b"alice", b"1")
        .put(b"bob", b"2")
        .put(b"alice", b"3");
    batch.delete(b"nobody");
    let root = trie.apply(&batch.into_sorted()).unwrap();
    let p = trie.prove_key(b"alice").unwrap();
    assert!(verify(&root, b"alice", Some(b"3"), &p));
    assert!(!verify(&root, b"alice", Some(b"1"), &p));
    assert!(!verify(&root, b"alicf", Some(b"3"), &p));
    let p = trie.prove_key(b"carol").unwrap();
    assert!(verify(&root, b"carol", None, &p));
    assert!(!verify(&root, b"carol", Some(b""), &p));
}

#[test]
fn oversized_input_rejected_before_parsing() {
    let big = vec![1u8; PROOF_BYTES_MAX + 1];
    assert_eq!(
        Proof::decode(&big),
        Err(ProofError::Oversized {
            len: PROOF_BYTES_MAX + 1,
            max: PROOF_BYTES_MAX
        })
    );
    // The largest well-formed proof fits the limit exactly.
    let mut max = vec![1u8, 2, 0, 1];
    max.extend_from_slice(&[0xFF; 32]);
    max.extend_from_slice(&[7u8; 64]);
    max.extend_from_slice(&[9u8; 256 * 32]);
    assert_eq!(max.len(), PROOF_BYTES_MAX);
    let proof = Proof::decode(&max).unwrap();
    assert_eq!(proof.encode(), max);
}

/// Random bytes (a smoke version of the fuzz target in storage/fuzz):
/// decode never panics, and whatever decodes re-encodes to the same bytes
/// and can be verified without panicking.
#[test]
fn random_bytes_never_panic_the_decoder() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let root = key_path(b"root");
    let mut decoded_ok = 0;
    for round in 0..20_000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let len = (next() % 700) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            // Structurally plausible: a header whose lengths add up, then
            // random hashes, sometimes cut or extended by a few bytes.
            let depth = (next() % 257) as usize;
            let kind = (next() % 3) as u8;
            let mut b = vec![1u8, kind];
            b.extend_from_slice(&(depth as u16).to_le_bytes());
            let mut bitmap: Vec<u8> = (0..depth.div_ceil(8)).map(|_| next() as u8).collect();
            if depth % 8 != 0 {
                *bitmap.last_mut().unwrap() &= (1u8 << (depth % 8)) - 1;
            }
            let present: usize = bitmap.iter().map(|x| x.count_ones() as usize).sum();
            b.extend_from_slice(&bitmap);
            let body = present * 32 + if kind == 2 { 64 } else { 0 };
            b.extend((0..body).map(|_| next() as u8));
            match next() % 3 {
                0 => b.truncate(b.len().saturating_sub((next() % 5) as usize)),
                1 => b.extend((0..next() % 5).map(|_| next() as u8)),
                _ => {}
            }
            b
        };
        if let Ok(proof) = Proof::decode(&bytes) {
            decoded_ok += 1;
            assert_eq!(proof.encode(), bytes);
            let _ = verify_path(&root, &root, None, &proof);
            let _ = verify_path(&root, &root, Some(&root), &proof);
        }
    }
    assert!(
        decoded_ok > 0,
        "the generator should hit some valid encodings"
    );
}

/// A client holding a slightly old root still verifies: proofs at every
/// retained version check against that version's root and its values.
#[test]
fn proofs_against_retained_past_roots() {
    let retained = 4;
    let mut trie = Trie::open(MemStore::new(), TrieConfig::new().roots_retained(retained)).unwrap();
    let paths: Vec<H> = (0u32..300).map(|i| key_path(&i.to_le_bytes())).collect();
    let mut history = Vec::new();
    for round in 0u8..8 {
        let mut batch: Vec<Update> = paths
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i as u8).wrapping_add(round) % 3 != 0)
            .map(|(_, p)| (*p, Some(value_hash(&[round]))))
            .collect();
        // Delete a few each round so exclusion changes between versions.
        batch.extend(
            paths
                .iter()
                .skip(round as usize)
                .step_by(7)
                .map(|p| (*p, None)),
        );
        batch.sort_by_key(|u| u.0);
        batch.dedup_by_key(|u| u.0);
        let root = trie.apply(&batch).unwrap();
        history.push((root, batch));
    }
    let mut state: BTreeMap<H, H> = BTreeMap::new();
    let mut states = Vec::new();
    for (_, batch) in &history {
        for (p, v) in batch {
            match v {
                Some(v) => state.insert(*p, *v),
                None => state.remove(p),
            };
        }
        states.push(state.clone());
    }
    for version in trie.oldest_version().max(1)..=trie.version() {
        let (root, _) = &history[version as usize - 1];
        assert_eq!(trie.root_at(version).unwrap(), *root);
        let state = &states[version as usize - 1];
        for p in paths.iter().step_by(11) {
            let proof = trie.prove_at(version, p).unwrap();
            assert!(
                verify_path(root, p, state.get(p), &proof),
                "version {version}"
            );
        }
    }
    assert!(trie.prove_at(trie.oldest_version() - 1, &paths[0]).is_err());
}
