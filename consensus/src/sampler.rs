//! Weighted peer sampling for Snowball polls, with pluggable weights.
//!
//! The weight function is what turns sampling consensus into something
//! else: uniform weights give plain Snowball over the validator set, stake
//! weights give voting power proportional to stake (a proof-of-stake flavour),
//! and proof-of-work weights give power proportional to the work proven for a
//! node's identity, so minting many cheap identities buys almost nothing.
//!
//! Sampling is without replacement: a poll asks `k` distinct peers when at
//! least `k` have non-zero weight, and each answers with one vote. Weight
//! decides who is asked, never how much an answer counts. (Avalanche-style
//! slots, where a heavy validator fills several of the `k` and its answer
//! counts once per slot, were tried in the simulator and broke agreement
//! in a 6-validator seed where a validator with 42 % of the stake crashed
//! and restarted without memory of its vote — docs/consensus.md, "Sampling
//! by weight".)

use serde::{Deserialize, Serialize};

use crate::genesis::Validator;
use crate::rng::Rng;
use crate::tx::PublicKey;

/// Which weight function polls use. Spelled as in the node's config
/// (`sampling = "uniform" | "stake" | "proof_of_work"`) and in
/// `strata sim --sampling`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every validator equally ([`Uniform`]).
    #[default]
    Uniform,
    /// By genesis stake ([`Stake`]).
    Stake,
    /// By the proof of work behind each validator key ([`ProofOfWork`]).
    ProofOfWork,
}

/// How much say a validator has in polls.
pub trait SamplingWeight {
    /// The validator's weight; 0 means never sampled.
    fn weight(&self, validator: &Validator) -> u64;
}

/// Every validator weighs the same.
#[derive(Clone, Copy, Debug, Default)]
pub struct Uniform;

impl SamplingWeight for Uniform {
    fn weight(&self, _: &Validator) -> u64 {
        1
    }
}

/// Weight = stake from the genesis.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stake;

impl SamplingWeight for Stake {
    fn weight(&self, validator: &Validator) -> u64 {
        validator.stake
    }
}

/// Weight = the expected work behind the validator's identity: `2^z`, where
/// `z` is the number of leading zero bits of
/// `blake3("strata/pow\0" ‖ public key ‖ nonce)` for the validator's proven
/// nonce (capped at [`ProofOfWork::BITS_MAX`]). An identity with no work has
/// weight 1; one with 20 bits of work outweighs a million of them.
#[derive(Clone, Debug, Default)]
pub struct ProofOfWork {
    /// Each validator's best nonce (validators without one have weight 1).
    pub nonces: Vec<(PublicKey, u64)>,
}

impl ProofOfWork {
    /// Largest work exponent counted, so weights add up within `u64`.
    pub const BITS_MAX: u32 = 40;

    /// Leading zero bits of the work hash of `key` with `nonce`.
    pub fn work_bits(key: &PublicKey, nonce: u64) -> u32 {
        let mut h = blake3::Hasher::new();
        h.update(b"strata/pow\0");
        h.update(key);
        h.update(&nonce.to_le_bytes());
        let out = h.finalize();
        let head = u64::from_be_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"));
        head.leading_zeros().min(Self::BITS_MAX)
    }

    /// Searches nonces `0..tries` for the most work (for devnets and tests).
    pub fn mine(key: &PublicKey, tries: u64) -> (u64, u32) {
        (0..tries)
            .map(|n| (n, Self::work_bits(key, n)))
            .max_by_key(|(_, bits)| *bits)
            .unwrap_or((0, 0))
    }

    /// The first nonce below `tries_max` whose work is exactly `bits` (so
    /// the identity weighs exactly `2^bits`); expected `2^(bits + 1)` tries.
    /// `None` when no nonce in range has it. The simulator uses it to give
    /// identities chosen weights.
    pub fn mine_exact(key: &PublicKey, bits: u32, tries_max: u64) -> Option<u64> {
        (0..tries_max).find(|n| Self::work_bits(key, *n) == bits)
    }
}

impl SamplingWeight for ProofOfWork {
    fn weight(&self, validator: &Validator) -> u64 {
        let bits = self
            .nonces
            .iter()
            .find(|(k, _)| *k == validator.public_key)
            .map_or(0, |(k, nonce)| Self::work_bits(k, *nonce));
        1u64 << bits
    }
}

/// The validators a node may poll, with their weights: its peers and,
/// when it is a validator itself, the node.
///
/// The node belongs to its own sample space because a poll stands for the
/// whole validator set by weight. Leaving it out skews every poll of a heavy
/// validator: one holding 36 % of the weight then sees a 20 % Byzantine
/// share as 20 / 64 = 31 % of its peers, fails most polls with `k = 5`,
/// `alpha = 4`, falls behind, and — being in nearly every other node's
/// sample — stalls everyone with its "no block yet" answers
/// (docs/consensus.md, "Sampling by weight").
#[derive(Clone, Debug)]
pub struct Sampler {
    /// Validators with non-zero weight; the node's own key among them when
    /// it is one.
    keys: Vec<PublicKey>,
    weights: Vec<u64>,
    /// Index of the node's own key in `keys`.
    me: Option<usize>,
}

impl Sampler {
    /// A sampler over `validators` (which may include `me`), weighted by
    /// `weight`.
    pub fn new(validators: &[Validator], me: &PublicKey, weight: &dyn SamplingWeight) -> Self {
        let mut keys = Vec::new();
        let mut weights = Vec::new();
        let mut mine = None;
        for v in validators {
            let w = weight.weight(v);
            if w > 0 {
                if v.public_key == *me {
                    mine = Some(keys.len());
                }
                keys.push(v.public_key);
                weights.push(w);
            }
        }
        Sampler {
            keys,
            weights,
            me: mine,
        }
    }

    /// Peers with non-zero weight (the node itself not counted).
    pub fn len(&self) -> usize {
        self.keys.len() - usize::from(self.me.is_some())
    }

    /// True when there is no peer to poll.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weight of `peer` (0 if unknown).
    pub fn weight_of(&self, peer: &PublicKey) -> u64 {
        self.keys
            .iter()
            .position(|p| p == peer)
            .map_or(0, |i| self.weights[i])
    }

    /// Total weight of the peers and the node.
    pub fn total_weight(&self) -> u64 {
        self.weights.iter().sum()
    }

    /// The validators to poll. With more than `k` peers: `k` distinct
    /// validators, each draw with probability proportional to weight among
    /// those not yet drawn — the node itself included, since its own
    /// preference is one validator's vote like any other (the caller counts
    /// it without sending a query). With `k` peers or fewer: every peer,
    /// and not the node, so small networks keep the quorums of
    /// `Params::capped_for` (the node's own vote would otherwise stand in
    /// for a peer's there).
    /// Validator sets are small (hundreds), so a linear scan per draw is the
    /// simple, allocation-light choice.
    pub fn sample(&self, k: usize, rng: &mut Rng) -> Vec<PublicKey> {
        if self.len() <= k {
            return (0..self.keys.len())
                .filter(|i| Some(*i) != self.me)
                .map(|i| self.keys[i])
                .collect();
        }
        let mut taken = vec![false; self.keys.len()];
        let mut remaining: u64 = self.total_weight();
        let mut out = Vec::with_capacity(k);
        while out.len() < k && remaining > 0 {
            let mut pick = rng.below(remaining);
            for (i, w) in self.weights.iter().enumerate() {
                if taken[i] {
                    continue;
                }
                if pick < *w {
                    taken[i] = true;
                    remaining -= *w;
                    out.push(self.keys[i]);
                    break;
                }
                pick -= *w;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators(stakes: &[u64]) -> Vec<Validator> {
        stakes
            .iter()
            .enumerate()
            .map(|(i, s)| Validator {
                public_key: [i as u8 + 1; 32],
                stake: *s,
                address: String::new(),
            })
            .collect()
    }

    #[test]
    fn samples_are_distinct_and_bounded() {
        let vs = validators(&[1; 10]);
        let s = Sampler::new(&vs, &vs[0].public_key, &Uniform);
        assert_eq!(s.len(), 9);
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let mut got = s.sample(5, &mut rng);
            assert_eq!(got.len(), 5);
            got.sort();
            got.dedup();
            assert_eq!(got.len(), 5);
        }
        let everyone = s.sample(9, &mut rng);
        assert_eq!(everyone.len(), 9);
        assert!(
            !everyone.contains(&vs[0].public_key),
            "a poll of every peer leaves the node out"
        );
        assert_eq!(s.sample(50, &mut rng).len(), 9);
    }

    /// A heavy validator left out of its own sample sees the Byzantine
    /// share of its peers, not of the set: with half the stake it would
    /// see 20 % Byzantine stake as 40 %. Drawn from the whole set, it
    /// finds itself in its polls as often as any peer would find it.
    #[test]
    fn a_heavy_validator_draws_itself_by_weight() {
        let vs = validators(&[50, 5, 5, 5, 5, 5, 5, 10, 10]);
        let me = vs[0].public_key;
        let s = Sampler::new(&vs, &me, &Stake);
        assert_eq!(s.len(), 8);
        assert_eq!(s.total_weight(), 100);
        let mut rng = Rng::new(11);
        let polls = 10_000;
        let (mut mine, mut byzantine) = (0u32, 0u32);
        for _ in 0..polls {
            let got = s.sample(3, &mut rng);
            assert_eq!(got.len(), 3);
            mine += u32::from(got.contains(&me));
            byzantine += got.iter().filter(|p| p[0] >= 8).count() as u32;
        }
        let mine = f64::from(mine) / f64::from(polls);
        assert!(mine > 0.85, "drawn itself in {mine} of its polls");
        // The two 10 % validators fill 27 % of the slots (a model of this
        // draw); left out, the node would give them 36 %.
        let byzantine = f64::from(byzantine) / f64::from(3 * polls);
        assert!(byzantine < 0.30, "{byzantine}");
    }

    #[test]
    fn stake_weighted_single_draws_follow_stake() {
        let vs = validators(&[0, 10, 30, 60]);
        let s = Sampler::new(&vs, &[0xFF; 32], &Stake);
        assert_eq!(s.len(), 3, "zero stake is never sampled");
        let mut rng = Rng::new(7);
        let mut hits = [0u32; 4];
        let draws = 100_000;
        for _ in 0..draws {
            let p = s.sample(1, &mut rng)[0];
            hits[(p[0] - 1) as usize] += 1;
        }
        for (i, want) in [(1, 0.10), (2, 0.30), (3, 0.60)] {
            let got = f64::from(hits[i]) / f64::from(draws);
            assert!((got - want).abs() < 0.01, "validator {i}: {got} vs {want}");
        }
    }

    #[test]
    fn proof_of_work_makes_cheap_identities_weightless() {
        let vs = validators(&[1, 1, 1, 1, 1]);
        let (nonce, bits) = ProofOfWork::mine(&vs[0].public_key, 1 << 14);
        assert!(
            bits >= 8,
            "2^14 tries find at least 8 bits of work, found {bits}"
        );
        let pow = ProofOfWork {
            nonces: vec![(vs[0].public_key, nonce)],
        };
        let s = Sampler::new(&vs, &[0xFF; 32], &pow);
        assert_eq!(s.weight_of(&vs[0].public_key), 1 << bits);
        assert_eq!(s.weight_of(&vs[1].public_key), 1);
        let mut rng = Rng::new(3);
        let worker = (0..10_000)
            .filter(|_| s.sample(1, &mut rng)[0] == vs[0].public_key)
            .count();
        assert!(
            worker > 9_500,
            "the identity with work should win almost every draw: {worker}"
        );
    }

    #[test]
    fn mine_exact_gives_exactly_the_asked_weight() {
        let key = [7u8; 32];
        for bits in 0..10 {
            let nonce = ProofOfWork::mine_exact(&key, bits, 1 << 20).expect("found");
            assert_eq!(ProofOfWork::work_bits(&key, nonce), bits);
            let pow = ProofOfWork {
                nonces: vec![(key, nonce)],
            };
            let v = Validator {
                public_key: key,
                stake: 1,
                address: String::new(),
            };
            assert_eq!(pow.weight(&v), 1 << bits);
        }
        assert_eq!(ProofOfWork::mine_exact(&key, 39, 16), None);
    }

    #[test]
    fn sampling_names_match_the_config_spelling() {
        for (kind, name) in [
            (Sampling::Uniform, "uniform"),
            (Sampling::Stake, "stake"),
            (Sampling::ProofOfWork, "proof_of_work"),
        ] {
            #[derive(Serialize, Deserialize)]
            struct Section {
                sampling: Sampling,
            }
            let text = toml::to_string(&Section { sampling: kind }).expect("serialises");
            assert_eq!(text.trim(), format!("sampling = \"{name}\""));
            let back: Section = toml::from_str(&text).expect("parses");
            assert_eq!(back.sampling, kind);
        }
    }
}
