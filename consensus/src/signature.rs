//! The transaction signature rule, checked alone or in batches with the
//! same answer.
//!
//! A transaction signature is ed25519 (RFC 8032 signing), accepted under the
//! **cofactored** equation `[8](s·B − R − h·A) = 0`, with
//! `h = SHA-512(R ‖ A ‖ M) mod ℓ`, and these encoding rules:
//! - `A` (the sender key) must decompress and must not be of small order
//!   (weak keys are refused before any signature is looked at);
//! - `R` must decompress (any encoding that does; `h` hashes the bytes as
//!   sent, so re-encoding `R` changes `h` and is no malleability);
//! - `s` must be canonical (`s < ℓ`): this is what rules out malleability.
//!
//! Why cofactored: a batch check must say "valid" exactly when every
//! signature in it would alone, or nodes that batched a transaction with
//! different neighbours would disagree on its validity — a consensus split.
//! With the cofactorless equation (what `ed25519_dalek::verify_strict`
//! checks alone, and what its `verify_batch` checks in a batch) a signature
//! whose `R` carries a small-order component fails alone but passes a batch
//! whenever its random coefficient happens to kill that component (1 time
//! in 8): the same transaction is then valid or not depending on its
//! batch. Multiplying by the cofactor removes every small-order component,
//! so the batch equation is the random linear combination of the single
//! equations and agrees with them (short of a 2⁻¹²⁸ accident). This is the
//! rule ZIP-215 chose for the same reason. Every signature `verify_strict`
//! accepts is accepted here, so nothing signed by a standard signer changes
//! status.
//!
//! Why not `ed25519_dalek::verify_batch` for speed either: it derives its
//! random coefficients through a merlin transcript (STROBE over Keccak, two
//! absorptions per signature and one squeeze per coefficient), a tenth of a
//! batch's time in the node's profile. Here they come from one keyed BLAKE3
//! pass over the batch's hashes and `s` values, keyed by a secret drawn from
//! the OS when the [`Batch`] is made: an attacker can neither predict the
//! coefficients nor choose inputs against them. Signatures by one sender
//! share one point in the multi-scalar multiplication (their `h·z` summed).
//!
//! ```
//! use ed25519_dalek::{Signer, SigningKey};
//! use strata_consensus::signature::{Batch, SenderKey};
//!
//! let signer = SigningKey::from_bytes(&[7; 32]);
//! let key = SenderKey::from_bytes(signer.verifying_key().as_bytes()).unwrap();
//! let signature = signer.sign(b"hello").to_bytes();
//! let mut batch = Batch::new();
//! assert!(batch.push(&key, b"hello", &signature));
//! assert!(batch.push(&key, b"hellO", &signature)); // well-formed, but wrong
//! assert!(!batch.verify());
//! assert_eq!(batch.verify_each(), [true, false]);
//! ```

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};
use strata_storage::lru::IdentityState;

/// A sender's public key, decompressed once: its 32-byte encoding (what
/// the signature hash covers) and its curve point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

impl SenderKey {
    /// The key encoded by `bytes`, or `None` when they are not a point on
    /// the curve or the point is of small order (a weak key, for which
    /// signatures prove nothing).
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<SenderKey> {
        let point = CompressedEdwardsY(*bytes).decompress()?;
        if point.is_small_order() {
            return None;
        }
        Some(SenderKey {
            bytes: *bytes,
            point,
        })
    }

    /// The encoding this key was made from.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// Checks one signature under the rule (module docs). A batch of one costs
/// the same; this is for callers holding a single transaction.
pub fn verify_one(key: &SenderKey, message: &[u8], signature: &[u8; 64]) -> bool {
    Parsed::new(key, message, signature).is_some_and(|p| p.holds(&key.point))
}

/// One signature, parsed and hashed.
struct Parsed {
    r: EdwardsPoint,
    s: Scalar,
    /// `h` as the 64-byte digest (fed to the coefficient hash) ...
    digest: [u8; 64],
    /// ... and reduced mod ℓ.
    h: Scalar,
}

impl Parsed {
    /// `None` when `s` is not canonical or `R` does not decompress.
    fn new(key: &SenderKey, message: &[u8], signature: &[u8; 64]) -> Option<Parsed> {
        let (r_bytes, s_bytes) = signature.split_at(32);
        let s_bytes: [u8; 32] = s_bytes.try_into().ok()?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
        let r = CompressedEdwardsY::from_slice(r_bytes).ok()?.decompress()?;
        let mut hasher = Sha512::new();
        hasher.update(r_bytes);
        hasher.update(key.bytes);
        hasher.update(message);
        let digest: [u8; 64] = hasher.finalize().into();
        let h = Scalar::from_bytes_mod_order_wide(&digest);
        Some(Parsed { r, s, digest, h })
    }

    /// The single equation `[8](s·B − h·A − R) = 0`.
    fn holds(&self, a: &EdwardsPoint) -> bool {
        let sb_minus_ha = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-self.h, a, &self.s);
        (sb_minus_ha - self.r).mul_by_cofactor().is_identity()
    }
}

/// Signatures checked together: [`Batch::push`] them, then
/// [`Batch::verify`] (all valid?) and, when it says no,
/// [`Batch::verify_each`]. Reusable after [`Batch::clear`]; keeps its
/// buffers, so a worker's batch stops allocating after its first use.
pub struct Batch {
    /// Keys the random coefficients' hash; from the OS at creation.
    coefficient_key: [u8; 32],
    entries: Vec<Parsed>,
    /// Per entry, the index of its sender in `keys`.
    sender_of: Vec<usize>,
    keys: Vec<EdwardsPoint>,
    /// Sender key → index in `keys`. Keyed by the key's first 8 bytes
    /// unhashed: keys are attacker-chosen, so colliding ones can be ground,
    /// but a batch holds at most `verify::BATCH_TXS_MAX` of them, which
    /// bounds the worst case to a few hundred thousand comparisons — small
    /// beside the batch's own curve arithmetic.
    key_index: HashMap<[u8; 32], usize, IdentityState>,
    /// Multi-scalar multiplication inputs, reused.
    scalars: Vec<Scalar>,
    points: Vec<EdwardsPoint>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch with a fresh coefficient key. When the OS random
    /// source fails, the key is all zero: the coefficients are then still
    /// a hash of everything in the batch (what `ed25519_dalek::verify_batch`
    /// does always), just no longer secret.
    pub fn new() -> Self {
        let mut coefficient_key = [0u8; 32];
        if getrandom::getrandom(&mut coefficient_key).is_err() {
            coefficient_key = [0u8; 32];
        }
        Batch {
            coefficient_key,
            entries: Vec::new(),
            sender_of: Vec::new(),
            keys: Vec::new(),
            key_index: HashMap::with_hasher(IdentityState),
            scalars: Vec::new(),
            points: Vec::new(),
        }
    }

    /// Signatures pushed since the last clear.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was pushed since the last clear.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the pushed signatures, keeping the buffers.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.sender_of.clear();
        self.keys.clear();
        self.key_index.clear();
    }

    /// Adds `signature` by `key` over `message`. Returns false (and adds
    /// nothing) when the signature is malformed — `s` not canonical or `R`
    /// not a point — which no equation can save.
    pub fn push(&mut self, key: &SenderKey, message: &[u8], signature: &[u8; 64]) -> bool {
        let Some(parsed) = Parsed::new(key, message, signature) else {
            return false;
        };
        let next = self.keys.len();
        let sender = *self.key_index.entry(key.bytes).or_insert(next);
        if sender == next {
            self.keys.push(key.point);
        }
        self.entries.push(parsed);
        self.sender_of.push(sender);
        true
    }

    /// True when every pushed signature holds (an empty batch holds).
    /// Checks `[8](Σ zᵢ·(sᵢ·B − Rᵢ − hᵢ·Aᵢ)) = 0` with
    /// random 128-bit `zᵢ`: one multi-scalar multiplication over
    /// `1 + signatures + senders` points.
    pub fn verify(&mut self) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        let n = self.entries.len();
        let mut coefficients = blake3::Hasher::new_keyed(&self.coefficient_key);
        coefficients.update(&(n as u64).to_le_bytes());
        for entry in &self.entries {
            coefficients.update(&entry.digest);
            coefficients.update(entry.s.as_bytes());
        }
        let mut stream = coefficients.finalize_xof();

        // Σ zᵢ·(sᵢ·B − Rᵢ − hᵢ·A): B's coefficient Σ zᵢsᵢ, Rᵢ's −zᵢ, and
        // each sender's −Σ zᵢhᵢ over its signatures.
        self.scalars.clear();
        self.points.clear();
        self.scalars.push(Scalar::ZERO); // B's, set below
        self.points.push(ED25519_BASEPOINT_POINT);
        let keys_at = 1 + n;
        self.scalars.resize(keys_at + self.keys.len(), Scalar::ZERO);
        let mut b_coefficient = Scalar::ZERO;
        let mut z_bytes = [0u8; 16];
        for (i, entry) in self.entries.iter().enumerate() {
            stream.fill(&mut z_bytes);
            let z = Scalar::from(u128::from_le_bytes(z_bytes));
            b_coefficient += z * entry.s;
            self.scalars[1 + i] = -z;
            self.points.push(entry.r);
            self.scalars[keys_at + self.sender_of[i]] -= z * entry.h;
        }
        self.scalars[0] = b_coefficient;
        self.points.extend_from_slice(&self.keys);
        debug_assert_eq!(self.scalars.len(), self.points.len());
        EdwardsPoint::vartime_multiscalar_mul(&self.scalars, &self.points)
            .mul_by_cofactor()
            .is_identity()
    }

    /// Each pushed signature checked alone, in push order: what to do after
    /// [`Batch::verify`] said no, to find the bad ones.
    pub fn verify_each(&self) -> Vec<bool> {
        self.entries
            .iter()
            .zip(&self.sender_of)
            .map(|(entry, &sender)| entry.holds(&self.keys[sender]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
    use proptest::prelude::*;

    use super::*;

    fn signer(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn key(signer: &SigningKey) -> SenderKey {
        SenderKey::from_bytes(signer.verifying_key().as_bytes()).unwrap()
    }

    /// A signature by `signer` over `message` whose `R` is the honest
    /// nonce point plus `torsion` (a small-order point), with `s` computed
    /// for that `R`: the cofactored equation holds, the cofactorless one
    /// fails unless `torsion` is the identity. Anyone holding the key can
    /// make one.
    fn mixed_signature(signer: &SigningKey, message: &[u8], nonce: u8, torsion: usize) -> [u8; 64] {
        let a = signer.to_scalar();
        let r = Scalar::from(u64::from(nonce) + 1);
        let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[torsion]).compress();
        let mut hasher = Sha512::new();
        hasher.update(big_r.as_bytes());
        hasher.update(signer.verifying_key().as_bytes());
        hasher.update(message);
        let h = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
        let s = r + h * a;
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(big_r.as_bytes());
        out[32..].copy_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn standard_signatures_pass_alone_and_batched() {
        let mut batch = Batch::new();
        for i in 0..40u8 {
            let s = signer(i % 7); // repeated senders share a point
            let message = [i; 33];
            let sig = s.sign(&message).to_bytes();
            assert!(verify_one(&key(&s), &message, &sig));
            assert!(batch.push(&key(&s), &message, &sig));
        }
        assert_eq!(batch.len(), 40);
        assert!(batch.verify());
        assert!(batch.verify_each().iter().all(|ok| *ok));
        batch.clear();
        assert!(batch.is_empty() && batch.verify());
    }

    #[test]
    fn each_kind_of_forgery_is_caught_and_located() {
        let s = signer(1);
        let other = signer(2);
        let good = s.sign(b"pay 5").to_bytes();
        let mut flipped_s = good;
        flipped_s[40] ^= 1;
        let mut flipped_r = s.sign(b"pay 6").to_bytes();
        flipped_r[3] ^= 4;
        let cases: [(&SenderKey, &[u8], [u8; 64]); 4] = [
            (&key(&s), b"pay 500", good),   // other message
            (&key(&other), b"pay 5", good), // other key
            (&key(&s), b"pay 5", flipped_s),
            (&key(&s), b"pay 6", flipped_r),
        ];
        for (k, message, sig) in cases {
            assert!(!verify_one(k, message, &sig));
            let mut batch = Batch::new();
            for i in 0..9u8 {
                let m = [i; 4];
                assert!(batch.push(&key(&s), &m, &s.sign(&m).to_bytes()));
            }
            if batch.push(k, message, &sig) {
                assert!(!batch.verify(), "a batch with a forgery passed");
                let each = batch.verify_each();
                assert_eq!(each.iter().filter(|ok| !**ok).count(), 1);
                assert!(!each[9]);
            }
        }
    }

    #[test]
    fn malformed_signatures_are_refused_at_push() {
        let s = signer(3);
        let sig = s.sign(b"m").to_bytes();
        // s + ℓ: the same signature re-encoded, refused (malleability).
        let mut malleated = sig;
        let s_scalar = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
        let mut wide = [0u8; 32];
        let ell: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        assert_eq!(Scalar::from_bytes_mod_order(ell), Scalar::ZERO, "ℓ");
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(s_scalar.as_bytes()[i]) + u16::from(ell[i]) + carry;
            wide[i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "s + ℓ fits 32 bytes for this s");
        malleated[32..].copy_from_slice(&wide);
        assert!(!verify_one(&key(&s), b"m", &malleated));
        assert!(!Batch::new().push(&key(&s), b"m", &malleated));
        // An R that is no point: find a y with no x.
        let mut bad_r = sig;
        let y = (0u8..=255)
            .find(|y| CompressedEdwardsY([*y; 32]).decompress().is_none())
            .unwrap();
        bad_r[..32].copy_from_slice(&[y; 32]);
        assert!(!verify_one(&key(&s), b"m", &bad_r));
        assert!(!Batch::new().push(&key(&s), b"m", &bad_r));
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        for torsion in EIGHT_TORSION {
            assert_eq!(SenderKey::from_bytes(torsion.compress().as_bytes()), None);
        }
        let y = (0u8..=255)
            .find(|y| CompressedEdwardsY([*y; 32]).decompress().is_none())
            .unwrap();
        assert_eq!(SenderKey::from_bytes(&[y; 32]), None);
        let s = signer(4);
        assert_eq!(key(&s).as_bytes(), s.verifying_key().as_bytes());
    }

    /// The reason for the cofactored rule: a signature with a small-order
    /// component in `R` gets the same answer alone and in any batch here,
    /// while `ed25519_dalek` refuses it alone and accepts it in some
    /// batches (the old node's rule: a consensus split waiting to happen).
    #[test]
    fn a_mixed_order_nonce_gets_one_answer_whatever_its_batch() {
        let s = signer(5);
        let mixed = mixed_signature(&s, b"split me", 9, 1);
        let dalek_key = VerifyingKey::from_bytes(s.verifying_key().as_bytes()).unwrap();
        let dalek_sig = ed25519_dalek::Signature::from_bytes(&mixed);
        assert!(dalek_key.verify_strict(b"split me", &dalek_sig).is_err());
        assert!(verify_one(&key(&s), b"split me", &mixed));

        let mut dalek_answers = [0usize; 2];
        for neighbours in 1..=48u8 {
            let messages: Vec<[u8; 2]> = (0..neighbours).map(|i| [i, neighbours]).collect();
            let mut batch = Batch::new();
            let mut msgs: Vec<&[u8]> = Vec::new();
            let mut sigs = Vec::new();
            for m in &messages {
                let sig = s.sign(m);
                assert!(batch.push(&key(&s), m, &sig.to_bytes()));
                msgs.push(m);
                sigs.push(sig);
            }
            assert!(batch.push(&key(&s), b"split me", &mixed));
            msgs.push(b"split me");
            sigs.push(dalek_sig);
            assert!(batch.verify(), "refused with {neighbours} neighbours");
            assert!(batch.verify_each().iter().all(|ok| *ok));
            let keys = vec![dalek_key; msgs.len()];
            let ok = ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok();
            dalek_answers[usize::from(ok)] += 1;
        }
        assert!(
            dalek_answers[0] > 0 && dalek_answers[1] > 0,
            "dalek's batch answer did not depend on the batch: {dalek_answers:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Batch and single checks agree on random mixes of good, forged,
        /// and mixed-order signatures from a few senders.
        #[test]
        fn batch_answer_is_the_and_of_single_answers(
            kinds in proptest::collection::vec((0u8..6, 0u8..4, any::<u8>()), 1..40),
        ) {
            let mut batch = Batch::new();
            let mut singles = Vec::new();
            for (i, (kind, sender, salt)) in kinds.iter().enumerate() {
                let s = signer(*sender + 10);
                let message = [*salt, i as u8, 1, 2, 3];
                let sig = match kind {
                    0..=2 => s.sign(&message).to_bytes(),
                    3 => s.sign(&[*salt]).to_bytes(),              // other message
                    4 => mixed_signature(&s, &message, *salt, usize::from(salt % 8)),
                    _ => signer(*sender + 20).sign(&message).to_bytes(), // other key
                };
                let k = key(&s);
                prop_assert!(batch.push(&k, &message, &sig));
                singles.push(verify_one(&k, &message, &sig));
            }
            prop_assert_eq!(batch.verify_each(), singles.clone());
            prop_assert_eq!(batch.verify(), singles.iter().all(|ok| *ok));
        }

        /// The `signature_check` fuzz target in miniature: arbitrary key,
        /// signature and message bytes never panic, and batched (beside an
        /// honest signature) they get the answer they get alone.
        #[test]
        fn random_bytes_get_one_answer(
            key_bytes in any::<[u8; 32]>(),
            sig_head in any::<[u8; 32]>(),
            sig_tail in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&sig_head);
            sig[32..].copy_from_slice(&sig_tail);
            let Some(k) = SenderKey::from_bytes(&key_bytes) else {
                return Ok(());
            };
            let alone = verify_one(&k, &message, &sig);
            let honest = signer(30);
            let mut batch = Batch::new();
            prop_assert!(batch.push(&key(&honest), b"ok", &honest.sign(b"ok").to_bytes()));
            if batch.push(&k, &message, &sig) {
                prop_assert_eq!(batch.verify(), alone);
                prop_assert_eq!(batch.verify_each(), vec![true, alone]);
            } else {
                prop_assert!(!alone);
            }
        }
    }
}
