//! Synthetic accounts: a genesis section that declares `count` funded
//! accounts whose keys derive from a public seed and an index, so a state
//! of ten million accounts costs three lines of TOML and every node
//! derives the same accounts.
//!
//! ```toml
//! [synthetic]
//! seed = "strata-devnet/synthetic"
//! count = 10000000
//! balance = 1000000000000
//! ```
//!
//! **Key derivation (devnet and benchmarks only: every secret is public).**
//! Deriving a standard ed25519 key costs a SHA-512 and a base-point
//! multiplication, ~13 µs here: 130 s of CPU for ten million accounts, on
//! every node. Synthetic keys instead put account `i`'s secret scalar at
//! `s0 + i`, where `s0` comes from the seed, so its public key is the
//! previous one plus the base point: one point addition and one
//! compression, ~3.6 µs ([`public_keys`] walks a range that way on each
//! core). Signatures are standard ed25519 (RFC 8032 signing from an
//! expanded secret: the scalar and a per-account nonce prefix), so
//! verifiers cannot tell synthetic senders from any other. Keys whose
//! secrets differ by known offsets are worthless as secrets — one reveals
//! them all — which is why the seed is public and the section is meant for
//! test networks; a real network funds real keys in `[[balances]]`.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::{EdwardsPoint, Scalar};
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::tx::{PublicKey, TxSigner};

/// Most synthetic accounts one genesis may declare: the genesis state and
/// its trie are built in memory and staged as one trie batch (the merkle
/// module's `BATCH_UPDATES_MAX`), ~200 bytes of RAM per account while the
/// genesis is written.
pub const SYNTHETIC_ACCOUNTS_MAX: u64 = 1 << 24;

/// The `[synthetic]` genesis section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticAccounts {
    /// Public seed the keys derive from.
    pub seed: String,
    /// Accounts `0..count`.
    pub count: u64,
    /// Initial balance of each.
    pub balance: u64,
}

/// The secret scalar of account 0 and the base of every nonce prefix.
fn base(seed: &str) -> (Scalar, blake3::Hasher) {
    let mut wide = [0u8; 64];
    let mut h = blake3::Hasher::new_derive_key("strata synthetic account scalar v1");
    h.update(seed.as_bytes());
    h.finalize_xof().fill(&mut wide);
    let mut prefix = blake3::Hasher::new_derive_key("strata synthetic account prefix v1");
    prefix.update(&(seed.len() as u64).to_le_bytes());
    prefix.update(seed.as_bytes());
    (Scalar::from_bytes_mod_order_wide(&wide), prefix)
}

/// The signing key of synthetic account `index` under `seed`.
pub struct SyntheticKey {
    secret: ExpandedSecretKey,
    public: VerifyingKey,
}

impl SyntheticKey {
    /// Derives account `index`'s key (one base-point multiplication).
    pub fn derive(seed: &str, index: u64) -> SyntheticKey {
        let (s0, mut prefix) = base(seed);
        let scalar = s0 + Scalar::from(index);
        prefix.update(&index.to_le_bytes());
        let secret = ExpandedSecretKey {
            scalar,
            hash_prefix: *prefix.finalize().as_bytes(),
        };
        let public = VerifyingKey::from(EdwardsPoint::mul_base(&scalar));
        SyntheticKey { secret, public }
    }
}

impl TxSigner for SyntheticKey {
    fn public_key(&self) -> PublicKey {
        self.public.to_bytes()
    }

    fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        raw_sign::<sha2::Sha512>(&self.secret, message, &self.public).to_bytes()
    }
}

impl SyntheticAccounts {
    /// Total balance, or `None` on overflow.
    pub fn supply(&self) -> Option<u64> {
        self.balance.checked_mul(self.count)
    }

    /// The public keys of accounts `range`, in index order, on `threads`
    /// threads (each walks its part by point additions).
    pub fn public_keys(&self, range: std::ops::Range<u64>, threads: usize) -> Vec<PublicKey> {
        public_keys(&self.seed, range, threads)
    }
}

/// The public keys of synthetic accounts `range` under `seed`, in index
/// order, on `threads` threads.
pub fn public_keys(seed: &str, range: std::ops::Range<u64>, threads: usize) -> Vec<PublicKey> {
    let len = range.end.saturating_sub(range.start);
    let threads = (threads.max(1) as u64).min(len.div_ceil(4096).max(1));
    let per = len.div_ceil(threads);
    let (s0, _) = base(seed);
    let mut out = Vec::with_capacity(len as usize);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                let start = range.start + t * per;
                let end = (start + per).min(range.end);
                scope.spawn(move || {
                    let mut point = EdwardsPoint::mul_base(&(s0 + Scalar::from(start)));
                    let mut keys = Vec::with_capacity((end - start) as usize);
                    for _ in start..end {
                        keys.push(point.compress().to_bytes());
                        point += ED25519_BASEPOINT_POINT;
                    }
                    keys
                })
            })
            .collect();
        for part in parts {
            out.extend(part.join().expect("key derivation does not panic"));
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{TxBody, TxKind};

    #[test]
    fn walked_keys_are_the_derived_keys_and_sign_verifiable_transactions() {
        let seed = "test-seed";
        let keys = public_keys(seed, 1000..1100, 3);
        assert_eq!(keys.len(), 100);
        for (i, pk) in keys.iter().enumerate() {
            assert_eq!(
                SyntheticKey::derive(seed, 1000 + i as u64).public_key(),
                *pk
            );
        }
        // Another seed, other keys; no two accounts share a key.
        assert_ne!(public_keys("other", 1000..1001, 1)[0], keys[0]);
        let distinct: std::collections::BTreeSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());

        let key = SyntheticKey::derive(seed, 1042);
        let tx = TxBody {
            chain_id: 9,
            sender: key.public_key(),
            nonce: 0,
            fee: 1,
            kind: TxKind::Transfer {
                to: keys[0],
                amount: 5,
            },
        }
        .sign(&key)
        .unwrap();
        assert!(tx.verify_signature(), "standard ed25519 verification");
    }
}
