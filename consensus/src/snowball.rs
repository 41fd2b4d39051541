//! Snowball: the per-height decision counters, and parameter validation.
//!
//! A node polls `k` sampled peers for their preferred block at a height and
//! feeds the votes to [`Snowball::record_poll`]:
//! - a block with at least `alpha_preference` votes gains one unit of
//!   *preference strength*; the preference moves to the block with the most
//!   strength (ties keep the current preference);
//! - if that block also has at least `alpha_confidence` votes, the poll is
//!   *successful*: the run of consecutive successful polls for that block
//!   grows by one (or restarts at one if the previous success was for another
//!   block);
//! - any other poll (no block reaches `alpha_preference`, or one reaches it
//!   but not `alpha_confidence`) resets the run to zero;
//! - the block is final when the run reaches `beta`.
//!
//! This is avalanchego's n-ary Snowball. Missing or late answers simply are
//! not votes, so they count against the quorums.

use std::collections::HashMap;

use thiserror::Error;

use crate::block::BlockId;

/// Snowball parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Peers sampled per poll.
    pub k: usize,
    /// Votes that move the preference.
    pub alpha_preference: usize,
    /// Votes that make a poll successful.
    pub alpha_confidence: usize,
    /// Consecutive successful polls for finality.
    pub beta: usize,
}

/// Why parameters were refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// `k` must be at least 1.
    #[error("k = {0} must be at least 1")]
    K(usize),
    /// `k/2 < alpha_preference` violated.
    #[error("alpha_preference = {alpha} must be more than k/2 (k = {k})")]
    AlphaPreference {
        /// alpha_preference.
        alpha: usize,
        /// k.
        k: usize,
    },
    /// `alpha_preference <= alpha_confidence <= k` violated.
    #[error("alpha_confidence = {alpha_c} must be in alpha_preference..=k ({alpha_p}..={k})")]
    AlphaConfidence {
        /// alpha_preference.
        alpha_p: usize,
        /// alpha_confidence.
        alpha_c: usize,
        /// k.
        k: usize,
    },
    /// `beta >= 1` violated.
    #[error("beta must be at least 1")]
    Beta,
}

impl Default for Params {
    /// avalanchego's defaults: k = 20, alpha = 15, beta = 20.
    fn default() -> Self {
        Params {
            k: 20,
            alpha_preference: 15,
            alpha_confidence: 15,
            beta: 20,
        }
    }
}

impl Params {
    /// Validates as avalanchego does: `k/2 < alpha_p <= alpha_c <= k`,
    /// `beta >= 1`.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.k == 0 {
            return Err(ParamsError::K(self.k));
        }
        if self.alpha_preference <= self.k / 2 {
            return Err(ParamsError::AlphaPreference {
                alpha: self.alpha_preference,
                k: self.k,
            });
        }
        if self.alpha_confidence < self.alpha_preference || self.alpha_confidence > self.k {
            return Err(ParamsError::AlphaConfidence {
                alpha_p: self.alpha_preference,
                alpha_c: self.alpha_confidence,
                k: self.k,
            });
        }
        if self.beta == 0 {
            return Err(ParamsError::Beta);
        }
        Ok(())
    }

    /// Caps `k` at `peers` (the validators other than this node) for small
    /// networks, scaling both alphas by the same fraction, rounded *down*,
    /// but never below a strict majority of the new `k` (the rule validation
    /// enforces). Rounding up would make small networks need unanimity — one
    /// silent validator among 5 would then stop the chain — so the quorum
    /// fraction may drop slightly (15/20 becomes 3/4 at k = 4), never to a
    /// minority.
    /// With no peers (a single-validator chain) the parameters come back
    /// unchanged and the caller decides alone.
    pub fn capped_for(&self, peers: usize) -> Params {
        if peers >= self.k || peers == 0 {
            return *self;
        }
        let k = peers;
        let scale = |alpha: usize| -> usize {
            let scaled = alpha * k / self.k;
            scaled.max(k / 2 + 1).min(k)
        };
        let alpha_preference = scale(self.alpha_preference);
        let alpha_confidence = scale(self.alpha_confidence).max(alpha_preference);
        Params {
            k,
            alpha_preference,
            alpha_confidence,
            beta: self.beta,
        }
    }
}

/// What a poll did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// Nothing reached `alpha_preference`, or the run was reset.
    Unsuccessful,
    /// A successful poll; the run for the preferred block is now this long.
    Successful {
        /// Consecutive successes.
        run: usize,
    },
    /// The block reached `beta` consecutive successful polls.
    Final(BlockId),
}

/// Snowball state for one height.
#[derive(Clone, Debug)]
pub struct Snowball {
    params: Params,
    preference: Option<BlockId>,
    strength: HashMap<BlockId, u64>,
    /// Blocks that won a successful poll (`alpha_confidence`) here: what
    /// [`Snowball::forget_strength`] never forgets.
    confident: Vec<BlockId>,
    last_success: Option<BlockId>,
    run: usize,
    /// Polls in a row that did not succeed.
    failures: usize,
    finalized: Option<BlockId>,
}

impl Snowball {
    /// A fresh instance (no preference yet).
    pub fn new(params: Params) -> Self {
        debug_assert!(params.validate().is_ok());
        Snowball {
            params,
            preference: None,
            strength: HashMap::new(),
            confident: Vec::new(),
            last_success: None,
            run: 0,
            failures: 0,
            finalized: None,
        }
    }

    /// The current preference.
    pub fn preference(&self) -> Option<BlockId> {
        self.preference
    }

    /// Adopts `block` as the preference if there is none yet (a node's first
    /// valid block at a height, its own proposal or one pulled from a peer).
    pub fn offer(&mut self, block: BlockId) {
        if self.preference.is_none() {
            self.preference = Some(block);
        }
    }

    /// True while no block has reached `alpha_preference` in any poll: the
    /// preference is then only a first guess and may still be replaced by
    /// the caller's tie-break (see `Engine`'s proposer ranks).
    pub fn is_fresh(&self) -> bool {
        self.strength.is_empty()
    }

    /// Makes `block` the preference whatever the strengths: for a node
    /// resuming the preference it revealed before a restart (its
    /// strengths were lost with its memory).
    pub fn prefer(&mut self, block: BlockId) {
        self.preference = Some(block);
    }

    /// Replaces the preference while [`Snowball::is_fresh`]; ignored after.
    pub fn replace_fresh_preference(&mut self, block: BlockId) {
        if self.is_fresh() {
            self.preference = Some(block);
        }
    }

    /// Polls in a row that were not successful.
    pub fn failures(&self) -> usize {
        self.failures
    }

    /// Forgets preference strength (keeping the preference), so the block
    /// choice is fresh again. For breaking a stall in which honest nodes hold
    /// different strengthened preferences and no block can reach
    /// `alpha_preference` any more (possible in small networks with faulty
    /// nodes). Finality is untouched: it still needs `beta` consecutive
    /// successful polls, and the run of successes is already zero in a stall.
    pub fn forget_strength(&mut self) {
        self.strength.clear();
        self.failures = 0;
    }

    /// True when `block` won at least one successful poll here (votes
    /// for it reached `alpha_confidence`).
    pub fn was_confident(&self, block: &BlockId) -> bool {
        self.confident.contains(block)
    }

    /// The decided block, once final.
    pub fn finalized(&self) -> Option<BlockId> {
        self.finalized
    }

    /// Consecutive successful polls so far.
    pub fn run(&self) -> usize {
        self.run
    }

    /// Records one poll's votes (`None` entries are peers that did not
    /// answer in time or had no valid preference).
    pub fn record_poll(&mut self, votes: &[Option<BlockId>]) -> PollOutcome {
        if let Some(done) = self.finalized {
            return PollOutcome::Final(done);
        }
        // Count votes; polls are k (≤ a few dozen) answers, so a small vec
        // of (block, count) beats hashing.
        let mut counts: Vec<(BlockId, usize)> = Vec::with_capacity(4);
        for vote in votes.iter().flatten() {
            match counts.iter_mut().find(|(b, _)| b == vote) {
                Some((_, c)) => *c += 1,
                None => counts.push((*vote, 1)),
            }
        }
        let Some(&(top, votes_for_top)) = counts.iter().max_by_key(|(b, c)| (*c, *b)) else {
            self.run = 0;
            self.failures += 1;
            return PollOutcome::Unsuccessful;
        };
        if votes_for_top < self.params.alpha_preference {
            self.run = 0;
            self.failures += 1;
            return PollOutcome::Unsuccessful;
        }
        let strength = {
            let s = self.strength.entry(top).or_insert(0);
            *s += 1;
            *s
        };
        let current = self
            .preference
            .map_or(0, |p| self.strength.get(&p).copied().unwrap_or(0));
        if self.preference.is_none() || strength > current {
            self.preference = Some(top);
        }
        if votes_for_top < self.params.alpha_confidence {
            self.run = 0;
            self.failures += 1;
            return PollOutcome::Unsuccessful;
        }
        self.failures = 0;
        if !self.confident.contains(&top) {
            self.confident.push(top);
        }
        if self.last_success == Some(top) {
            self.run += 1;
        } else {
            self.last_success = Some(top);
            self.run = 1;
        }
        if self.run >= self.params.beta && self.preference == Some(top) {
            self.finalized = Some(top);
            return PollOutcome::Final(top);
        }
        PollOutcome::Successful { run: self.run }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: BlockId = [1; 32];
    const B: BlockId = [2; 32];

    fn params() -> Params {
        Params {
            k: 5,
            alpha_preference: 3,
            alpha_confidence: 4,
            beta: 3,
        }
    }

    #[test]
    fn validation_follows_avalanchego() {
        assert!(Params::default().validate().is_ok());
        assert!(matches!(
            Params {
                alpha_preference: 10,
                ..Params::default()
            }
            .validate(),
            Err(ParamsError::AlphaPreference { .. })
        ));
        assert!(matches!(
            Params {
                alpha_confidence: 14,
                ..Params::default()
            }
            .validate(),
            Err(ParamsError::AlphaConfidence { .. })
        ));
        assert!(matches!(
            Params {
                alpha_confidence: 21,
                ..Params::default()
            }
            .validate(),
            Err(ParamsError::AlphaConfidence { .. })
        ));
        assert_eq!(
            Params {
                beta: 0,
                ..Params::default()
            }
            .validate(),
            Err(ParamsError::Beta)
        );
        assert_eq!(
            Params {
                k: 0,
                ..Params::default()
            }
            .validate(),
            Err(ParamsError::K(0))
        );
    }

    #[test]
    fn capping_keeps_quorum_fractions() {
        for peers in 1..40 {
            let p = Params::default().capped_for(peers);
            p.validate().unwrap();
            assert!(p.k <= peers.max(20));
            // Always a strict majority, and at most one vote below the
            // defaults' 15/20 fraction.
            assert!(p.alpha_preference * 2 > p.k, "peers {peers}: {p:?}");
            if peers < 20 {
                assert!(
                    (p.alpha_preference + 1) * 20 >= 15 * p.k,
                    "peers {peers}: {p:?}"
                );
            }
        }
        let small = |k, alpha| Params {
            k,
            alpha_preference: alpha,
            alpha_confidence: alpha,
            beta: 20,
        };
        assert_eq!(Params::default().capped_for(3), small(3, 2));
        assert_eq!(Params::default().capped_for(4), small(4, 3));
    }

    #[test]
    fn finality_after_beta_consecutive_successes() {
        let mut s = Snowball::new(params());
        s.offer(A);
        assert_eq!(
            s.record_poll(&[Some(A); 5]),
            PollOutcome::Successful { run: 1 }
        );
        assert_eq!(
            s.record_poll(&[Some(A), Some(A), Some(A), Some(A), None]),
            PollOutcome::Successful { run: 2 }
        );
        assert_eq!(s.record_poll(&[Some(A); 5]), PollOutcome::Final(A));
        assert_eq!(s.finalized(), Some(A));
    }

    #[test]
    fn an_unsuccessful_poll_resets_the_run() {
        let mut s = Snowball::new(params());
        s.record_poll(&[Some(A); 5]);
        s.record_poll(&[Some(A); 5]);
        // 3 votes: alpha_preference but not alpha_confidence.
        assert_eq!(
            s.record_poll(&[Some(A), Some(A), Some(A), None, None]),
            PollOutcome::Unsuccessful
        );
        assert_eq!(s.run(), 0);
        assert_eq!(
            s.record_poll(&[Some(A); 5]),
            PollOutcome::Successful { run: 1 }
        );
    }

    #[test]
    fn preference_follows_the_strongest_block() {
        let mut s = Snowball::new(params());
        s.offer(A);
        s.record_poll(&[Some(B), Some(B), Some(B), Some(A), None]);
        assert_eq!(s.preference(), Some(B), "B gained strength, A had none");
        s.record_poll(&[Some(A), Some(A), Some(A), None, None]);
        assert_eq!(s.preference(), Some(B), "a tie keeps the preference");
        s.record_poll(&[Some(A), Some(A), Some(A), Some(A), None]);
        assert_eq!(s.preference(), Some(A));
    }

    #[test]
    fn switching_blocks_restarts_the_run() {
        let mut s = Snowball::new(params());
        s.record_poll(&[Some(A); 5]);
        s.record_poll(&[Some(A); 5]);
        assert_eq!(
            s.record_poll(&[Some(B); 5]),
            PollOutcome::Successful { run: 1 }
        );
        assert_eq!(s.finalized(), None);
    }
}
