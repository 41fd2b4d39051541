//! `strata-benches`: criterion benchmarks of Strata's hot paths, each run
//! side by side with the library a user would pick instead. The benchmarks
//! live in `benches/benches/`; this library holds the shared workload
//! generators so every bench uses the same keys.
#![deny(missing_docs)]

/// `n` distinct, uniformly distributed 32-byte keys (blake3 of a counter,
/// exactly what transaction ids and hashed state keys look like), with
/// `seed` selecting a disjoint family.
pub fn uniform_keys(n: usize, seed: u64) -> Vec<[u8; 32]> {
    (0..n as u64)
        .map(|i| {
            let mut input = [0u8; 16];
            input[..8].copy_from_slice(&seed.to_le_bytes());
            input[8..].copy_from_slice(&i.to_le_bytes());
            *blake3::hash(&input).as_bytes()
        })
        .collect()
}

/// A deterministic permutation of `0..n` (Fisher–Yates over splitmix64), used
/// to look keys up in an order unrelated to insertion.
pub fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_permutation_is_complete() {
        let mut keys = uniform_keys(10_000, 7);
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 10_000);
        let mut p = shuffled_indices(1000, 3);
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }
}
