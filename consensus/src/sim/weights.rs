//! Unequal validator weights for the simulator: skewed stakes, or identities
//! with different proven work, with the Byzantine nodes holding a chosen
//! share of the total weight. Under weighted sampling the fault share that
//! matters is by weight, not by count: one validator with 20 % of the stake
//! is sampled as often as two of ten equal ones.
//!
//! Weights come from their own generator (seeded from the run's seed), so
//! choosing them does not shift any other random draw of a run.

use thiserror::Error;

use crate::rng::Rng;
use crate::sampler::Sampling;

/// The whole weight, in per mille.
pub const PER_MILLE: u64 = 1000;

/// Honest weights span `2^SKEW_BITS_MAX` to one (before Byzantine shares are
/// fitted): a skewed distribution, a few validators carrying much of the
/// weight, as real stake and hash-rate distributions do.
pub const SKEW_BITS_MAX: u64 = 5;

/// Largest work exponent an identity gets. Mining exactly `z` bits costs
/// about `2^(z + 1)` hashes, so this bounds the setup at ~16k hashes per
/// node (milliseconds).
pub const WORK_BITS_MAX: u32 = 13;

/// Stake of the lightest honest validator under stake sampling (the
/// heaviest has up to `2^SKEW_BITS_MAX` times more, plus a random part).
const STAKE_UNIT: u64 = 1000;

/// Why weights could not be assigned.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// A Byzantine weight share was asked with no Byzantine node, or no
    /// share with some.
    #[error("{byzantine} Byzantine nodes cannot hold {per_mille} per mille of the weight")]
    ShareWithoutNodes {
        /// Byzantine nodes.
        byzantine: usize,
        /// Share asked.
        per_mille: u64,
    },
    /// The share is not below the whole.
    #[error("Byzantine weight share {per_mille} per mille is not below {PER_MILLE}")]
    ShareTooLarge {
        /// Share asked.
        per_mille: u64,
    },
    /// Proof-of-work weights are powers of two up to `2^WORK_BITS_MAX`; the
    /// honest nodes cannot make up the rest of a tiny Byzantine share with
    /// that many identities.
    #[error("{honest} honest proof-of-work identities cannot balance a {per_mille} per mille Byzantine share with work up to {WORK_BITS_MAX} bits")]
    WorkShareUnreachable {
        /// Honest nodes.
        honest: usize,
        /// Share asked.
        per_mille: u64,
    },
}

/// Weights of every node of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weights {
    /// Weight of node `i` (the last `byzantine` nodes are the Byzantine
    /// ones). Under [`Sampling::Stake`] the genesis stake; under
    /// [`Sampling::ProofOfWork`] a power of two, the identity's proven work;
    /// under [`Sampling::Uniform`] 1.
    pub weights: Vec<u64>,
    /// Share of the total held by the Byzantine nodes, per mille, rounded
    /// to nearest (proof-of-work shares can miss the asked one slightly).
    pub byzantine_per_mille: u64,
}

/// Assigns weights to `nodes` nodes, the last `byzantine` of them holding
/// `byzantine_per_mille` of the total (ignored under uniform sampling, where
/// the share is the count's).
///
/// # Errors
/// A [`WeightsError`] when the share and the node counts do not fit.
pub fn assign(
    sampling: Sampling,
    nodes: usize,
    byzantine: usize,
    byzantine_per_mille: u64,
    seed: u64,
) -> Result<Weights, WeightsError> {
    assert!(byzantine < nodes, "at least one honest node");
    let honest = nodes - byzantine;
    if sampling == Sampling::Uniform {
        return Ok(Weights {
            weights: vec![1; nodes],
            byzantine_per_mille: share_per_mille(byzantine as u64, nodes as u64),
        });
    }
    if (byzantine == 0) != (byzantine_per_mille == 0) {
        return Err(WeightsError::ShareWithoutNodes {
            byzantine,
            per_mille: byzantine_per_mille,
        });
    }
    if byzantine_per_mille >= PER_MILLE {
        return Err(WeightsError::ShareTooLarge {
            per_mille: byzantine_per_mille,
        });
    }
    let mut rng = Rng::new(seed ^ 0x5745_4947_4854_5321);
    let mut weights = match sampling {
        Sampling::Stake => stakes(&mut rng, honest, byzantine, byzantine_per_mille),
        _ => works(&mut rng, honest, byzantine, byzantine_per_mille)?,
    };
    // Honest weights in random order, so node 0 is not always the heaviest.
    for i in (1..honest).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        weights.swap(i, j);
    }
    let bad: u64 = weights[honest..].iter().sum();
    let total: u64 = weights.iter().sum();
    assert!(weights.iter().all(|w| *w > 0), "every weight is positive");
    Ok(Weights {
        byzantine_per_mille: share_per_mille(bad, total),
        weights,
    })
}

fn share_per_mille(part: u64, total: u64) -> u64 {
    let (part, total) = (u128::from(part), u128::from(total));
    ((part * u128::from(PER_MILLE) + total / 2) / total) as u64
}

/// `whole * per_mille / (PER_MILLE - per_mille)`, rounded: the weight the
/// Byzantine side needs next to `whole` honest weight.
fn other_side(whole: u64, per_mille: u64) -> u64 {
    let num = u128::from(whole) * u128::from(per_mille);
    let den = u128::from(PER_MILLE - per_mille);
    ((num + den / 2) / den) as u64
}

/// Skewed honest stakes; the Byzantine stake fitted to the share and split
/// unevenly among the Byzantine nodes.
fn stakes(rng: &mut Rng, honest: usize, byzantine: usize, per_mille: u64) -> Vec<u64> {
    let mut out: Vec<u64> = (0..honest)
        .map(|_| (STAKE_UNIT << rng.below(SKEW_BITS_MAX + 1)) + rng.below(STAKE_UNIT))
        .collect();
    if byzantine == 0 {
        return out;
    }
    let honest_total: u64 = out.iter().sum();
    let bad_total = other_side(honest_total, per_mille).max(byzantine as u64);
    let parts: Vec<u64> = (0..byzantine).map(|_| 1 << rng.below(3)).collect();
    let parts_total: u64 = parts.iter().sum();
    let mut given = 0;
    for (j, part) in parts.iter().enumerate() {
        let w = if j + 1 == byzantine {
            bad_total - given
        } else {
            (bad_total * part / parts_total).max(1)
        };
        given += w;
        out.push(w);
    }
    out
}

/// Powers of two (proven work). The Byzantine identities' work is drawn
/// first; the honest total that gives the share is then split into one
/// power of two per honest identity by random halvings, which leaves a
/// skewed spread.
fn works(
    rng: &mut Rng,
    honest: usize,
    byzantine: usize,
    per_mille: u64,
) -> Result<Vec<u64>, WeightsError> {
    if byzantine == 0 {
        return Ok((0..honest)
            .map(|_| 1 << rng.below(SKEW_BITS_MAX + 1))
            .collect());
    }
    let unreachable = WeightsError::WorkShareUnreachable { honest, per_mille };
    let bad_bits: Vec<u32> = (0..byzantine).map(|_| rng.below(3) as u32).collect();
    // Scale the Byzantine work up until the honest side has room for a
    // skewed split (four units per honest identity on average).
    let mut shift = 0;
    let mut good = loop {
        let bad: u64 = bad_bits.iter().map(|b| 1u64 << (b + shift)).sum();
        let good = other_side(bad, PER_MILLE - per_mille);
        if good >= 4 * honest as u64 {
            break good;
        }
        shift += 1;
        if bad_bits.iter().any(|b| b + shift > WORK_BITS_MAX) {
            return Err(unreachable);
        }
    };
    // One power of two per honest identity: at most `honest` set bits.
    while good.count_ones() as usize > honest {
        good &= good - 1;
    }
    let mut terms: Vec<u32> = (0..64).filter(|b| good & (1 << b) != 0).collect();
    // Halve terms above the cap first, then random ones, until every
    // honest identity has one.
    while terms.len() < honest {
        let i = match terms.iter().position(|t| *t > WORK_BITS_MAX) {
            Some(i) => i,
            None => {
                let splittable: Vec<usize> = (0..terms.len()).filter(|i| terms[*i] > 0).collect();
                splittable[rng.below(splittable.len() as u64) as usize]
            }
        };
        terms[i] -= 1;
        terms.push(terms[i]);
    }
    if terms.iter().any(|t| *t > WORK_BITS_MAX) {
        return Err(unreachable);
    }
    let mut out: Vec<u64> = terms.iter().map(|t| 1u64 << t).collect();
    out.extend(bad_bits.iter().map(|b| 1u64 << (b + shift)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byzantine_nodes_hold_the_asked_share() {
        for sampling in [Sampling::Stake, Sampling::ProofOfWork] {
            for nodes in [5, 10, 20, 50] {
                for per_mille in [100, 200, 330] {
                    for byzantine in [1, nodes / 5, nodes / 3] {
                        if byzantine == 0 {
                            continue;
                        }
                        for seed in 0..20 {
                            let w =
                                assign(sampling, nodes, byzantine, per_mille, seed).expect("fits");
                            assert_eq!(w.weights.len(), nodes);
                            let total: u64 = w.weights.iter().sum();
                            let bad: u64 = w.weights[nodes - byzantine..].iter().sum();
                            assert_eq!(w.byzantine_per_mille, share_per_mille(bad, total));
                            // Stake is exact to a unit; proof of work may
                            // drop low bits of the honest total.
                            let slack = if sampling == Sampling::Stake { 1 } else { 15 };
                            assert!(
                                w.byzantine_per_mille.abs_diff(per_mille) <= slack,
                                "{sampling:?} nodes {nodes} byz {byzantine} seed {seed}: {} vs {per_mille}",
                                w.byzantine_per_mille
                            );
                            if sampling == Sampling::ProofOfWork {
                                assert!(w
                                    .weights
                                    .iter()
                                    .all(|x| x.is_power_of_two() && *x <= 1 << WORK_BITS_MAX));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn honest_weights_are_skewed() {
        for sampling in [Sampling::Stake, Sampling::ProofOfWork] {
            let w = assign(sampling, 20, 0, 0, 3).expect("fits");
            let max = w.weights.iter().max().copied().unwrap_or(0);
            let min = w.weights.iter().min().copied().unwrap_or(0);
            assert!(max >= 4 * min, "{sampling:?}: {:?}", w.weights);
            assert_eq!(w.byzantine_per_mille, 0);
        }
    }

    #[test]
    fn uniform_share_is_the_count_share_and_mismatches_are_errors() {
        let w = assign(Sampling::Uniform, 10, 2, 0, 1).expect("fits");
        assert_eq!(w.weights, vec![1; 10]);
        assert_eq!(w.byzantine_per_mille, 200);
        assert_eq!(
            assign(Sampling::Stake, 10, 0, 200, 1),
            Err(WeightsError::ShareWithoutNodes {
                byzantine: 0,
                per_mille: 200
            })
        );
        assert_eq!(
            assign(Sampling::Stake, 10, 2, 0, 1),
            Err(WeightsError::ShareWithoutNodes {
                byzantine: 2,
                per_mille: 0
            })
        );
        assert_eq!(
            assign(Sampling::ProofOfWork, 10, 2, 1000, 1),
            Err(WeightsError::ShareTooLarge { per_mille: 1000 })
        );
    }
}
