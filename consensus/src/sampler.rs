//! Weighted peer sampling for Snowball polls, with pluggable weights.
//!
//! The weight function is what turns sampling consensus into something
//! else: uniform weights give plain Snowball over the validator set, stake
//! weights give voting power proportional to stake (a proof-of-stake flavour),
//! and proof-of-work weights give power proportional to the work proven for a
//! node's identity, so minting many cheap identities buys almost nothing.
//!
//! A poll draws `k` distinct *units of weight* without replacement: every
//! validator, the polling node included, is cut into units of at most
//! `ceil(total / k)`, and a validator's one answer counts once per unit of
//! it drawn ([`Sampler::sample`]). Under uniform weights that is `k`
//! distinct validators with one vote each. Under skewed weights it keeps a
//! validator's share of the votes near its share of the weight, where
//! drawing whole validators with one vote each gave Byzantine validators
//! more votes than weight (the heaviest honest validators, in every poll,
//! could not use their weight) and stalled the chain; and it bounds what
//! one validator can say in a poll to its units, where unbounded
//! Avalanche-style slots let one validator with 42 % of the stake, restarted
//! without memory of its vote, fill polls alone and split finality in a
//! 6-validator seed. Networks with at most `k` peers poll every peer once
//! (docs/consensus.md, "Sampling by weight").

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

    /// The validators to poll, each with the number of the poll's `k`
    /// votes its one answer counts for.
    ///
    /// With `k` peers or fewer: every peer, one vote each, and not the node,
    /// so small networks keep the quorums of `Params::capped_for` (the
    /// node's own vote would otherwise stand in for a peer's there).
    ///
    /// With more than `k` peers, the poll draws `k` distinct *units of
    /// weight*, each with probability proportional to its weight among the
    /// units not yet drawn. A validator is cut into units of at most
    /// `ceil(total / k)` (full units, then its remainder), and its answer
    /// counts once per unit drawn. Drawing whole validators instead (one
    /// vote each) saturates: a validator with a fifth of the weight or more
    /// is in nearly every poll and no poll can give it more than one vote,
    /// so the weight it cannot use goes to everyone else — Byzantine
    /// validators included, whose share of the votes then exceeds their
    /// share of the weight (27.6 % of the votes for 20 % of the stake in
    /// one simulated genesis, against the 20 % that `alpha = 4` of `k = 5`
    /// tolerates). Units keep every share of the votes near the share of
    /// the weight, while a validator still counts for at most
    /// `ceil(weight × k / total)` votes, never the whole poll unless it
    /// holds nearly all the weight (unbounded Avalanche-style slots let one
    /// restarted heavy validator fill a poll alone and split finality —
    /// docs/consensus.md, "Sampling by weight").
    ///
    /// The node itself is in the draw, its units like anyone's: its
    /// preference is one validator's vote (the caller counts it without a
    /// query). Uniform weights give one unit per validator: `k` distinct
    /// validators, one vote each.
    ///
    /// Validator sets are small (hundreds), so a linear scan per draw is the
    /// simple, allocation-light choice.
    pub fn sample(&self, k: usize, rng: &mut Rng) -> Vec<(PublicKey, usize)> {
        if self.len() <= k {
            return (0..self.keys.len())
                .filter(|i| Some(*i) != self.me)
                .map(|i| (self.keys[i], 1))
                .collect();
        }
        let total = self.total_weight();
        let unit = total.div_ceil(k as u64);
        // Per validator: full units not yet drawn, and its remainder unit
        // (weight `w % unit`, 0 if none) if not yet drawn.
        let mut full: Vec<u64> = self.weights.iter().map(|w| w / unit).collect();
        let mut rest: Vec<u64> = self.weights.iter().map(|w| w % unit).collect();
        let mut votes = vec![0usize; self.keys.len()];
        let mut remaining = total;
        let mut drawn = 0;
        while drawn < k && remaining > 0 {
            let mut pick = rng.below(remaining);
            for i in 0..self.keys.len() {
                let full_weight = full[i] * unit;
                if pick < full_weight {
                    full[i] -= 1;
                    remaining -= unit;
                } else if pick < full_weight + rest[i] {
                    remaining -= rest[i];
                    rest[i] = 0;
                } else {
                    pick -= full_weight + rest[i];
                    continue;
                }
                votes[i] += 1;
                drawn += 1;
                break;
            }
        }
        (0..self.keys.len())
            .filter(|i| votes[*i] > 0)
            .map(|i| (self.keys[i], votes[i]))
            .collect()
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
    fn uniform_samples_are_distinct_validators_with_one_vote_each() {
        let vs = validators(&[1; 10]);
        let s = Sampler::new(&vs, &vs[0].public_key, &Uniform);
        assert_eq!(s.len(), 9);
        let mut rng = Rng::new(1);
        let mut mine = 0;
        for _ in 0..1000 {
            let mut got = s.sample(5, &mut rng);
            assert_eq!(got.len(), 5);
            assert!(got.iter().all(|(_, votes)| *votes == 1));
            mine += got.iter().filter(|(p, _)| *p == vs[0].public_key).count();
            got.sort();
            got.dedup();
            assert_eq!(got.len(), 5);
        }
        // The node is one of ten: in about half its polls of five.
        assert!((400..600).contains(&mine), "drew itself {mine} times");
        let everyone = s.sample(9, &mut rng);
        assert_eq!(everyone.len(), 9);
        assert!(
            everyone
                .iter()
                .all(|(p, votes)| *p != vs[0].public_key && *votes == 1),
            "a poll of every peer leaves the node out"
        );
        assert_eq!(s.sample(50, &mut rng).len(), 9);
    }

    /// The stakes of simulator seed 16 (10 validators, the last two
    /// Byzantine with 20 % of the stake; one honest validator holds 42 %).
    /// Drawing one vote per distinct validator gave the Byzantine two
    /// 27.6 % of the votes (a model of the earlier `sample`), more than
    /// the 20 % that `alpha = 4` of `k = 5` tolerates, and most such seeds
    /// missed the liveness bound. Drawn by units of weight they get close
    /// to their share, and no validator gets more votes than its units.
    #[test]
    fn vote_shares_follow_weight_when_heavy_validators_saturate() {
        let stakes = [
            1168, 2887, 1610, 1109, 16248, 32940, 2881, 4120, 5247, 10494,
        ];
        let vs = validators(&stakes);
        let s = Sampler::new(&vs, &vs[0].public_key, &Stake);
        let total: u64 = stakes.iter().sum();
        assert_eq!(s.total_weight(), total);
        let k = 5;
        let mut rng = Rng::new(5);
        let polls = 20_000;
        let mut votes = [0usize; 10];
        for _ in 0..polls {
            let got = s.sample(k, &mut rng);
            assert_eq!(got.iter().map(|(_, n)| n).sum::<usize>(), k);
            for (peer, n) in got {
                let i = usize::from(peer[0] - 1);
                assert!(
                    n as u64 <= (stakes[i] * k as u64).div_ceil(total),
                    "validator {i}: {n} votes"
                );
                votes[i] += n;
            }
        }
        let share = |i: usize| votes[i] as f64 / (polls * k) as f64;
        let byzantine = share(8) + share(9);
        assert!(
            (0.19..0.235).contains(&byzantine),
            "Byzantine vote share {byzantine}"
        );
        // The 42 % validator counts for about 2 of 5 votes, not 1.
        assert!(share(5) > 0.3, "{}", share(5));
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
            let p = s.sample(1, &mut rng)[0].0;
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
            .filter(|_| s.sample(1, &mut rng)[0].0 == vs[0].public_key)
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
