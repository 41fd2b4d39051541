//! The per-table bloom filter over user keys.
//!
//! Layout: `probes: u8`, then the bit array (bit `i` is bit `i % 8` of byte
//! `i / 8`). Key hash: 64-bit FNV-1a; probe `j` sets bit
//! `(h + j * delta) mod bits` with `delta = (h >> 33) | 1` (double hashing).
//! FNV is fixed here, not a library hasher, because its output is on disk.

use std::path::Path;

use crate::error::{Error, Result};
use crate::limits::BLOOM_BITS_PER_KEY;

/// Probes per key: ~ln 2 × bits per key.
const PROBES: u8 = 7;

fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Builds a filter from the hashes of distinct keys.
#[derive(Debug, Default)]
pub(crate) struct BloomBuilder {
    hashes: Vec<u64>,
}

impl BloomBuilder {
    pub(crate) fn add(&mut self, key: &[u8]) {
        self.hashes.push(hash(key));
    }

    pub(crate) fn finish(&self) -> Vec<u8> {
        let bits = (self.hashes.len() * BLOOM_BITS_PER_KEY).max(64);
        let bytes = bits.div_ceil(8);
        let bits = (bytes * 8) as u64;
        let mut out = vec![0u8; 1 + bytes];
        out[0] = PROBES;
        for &h in &self.hashes {
            let delta = (h >> 33) | 1;
            let mut x = h;
            for _ in 0..PROBES {
                let bit = x % bits;
                out[1 + (bit / 8) as usize] |= 1 << (bit % 8);
                x = x.wrapping_add(delta);
            }
        }
        out
    }
}

/// A loaded filter.
#[derive(Debug)]
pub(crate) struct Bloom {
    probes: u8,
    bits: Vec<u8>,
}

impl Bloom {
    pub(crate) fn decode(file: &Path, offset: u64, raw: &[u8]) -> Result<Bloom> {
        match raw {
            [probes @ 1..=32, bits @ ..] if !bits.is_empty() => Ok(Bloom {
                probes: *probes,
                bits: bits.to_vec(),
            }),
            _ => Err(Error::corruption(file, offset, "bloom filter: bad header")),
        }
    }

    /// False means the key is certainly absent.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        let bits = (self.bits.len() * 8) as u64;
        let h = hash(key);
        let delta = (h >> 33) | 1;
        let mut x = h;
        for _ in 0..self.probes {
            let bit = x % bits;
            if self.bits[(bit / 8) as usize] & (1 << (bit % 8)) == 0 {
                return false;
            }
            x = x.wrapping_add(delta);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_few_false_positives() {
        let mut b = BloomBuilder::default();
        for i in 0..10_000u32 {
            b.add(&i.to_le_bytes());
        }
        let f = Bloom::decode(Path::new("t"), 0, &b.finish()).unwrap();
        assert!((0..10_000u32).all(|i| f.may_contain(&i.to_le_bytes())));
        let fp = (10_000..20_000u32)
            .filter(|i| f.may_contain(&i.to_le_bytes()))
            .count();
        assert!(fp < 300, "{fp} false positives in 10000");
    }
}
