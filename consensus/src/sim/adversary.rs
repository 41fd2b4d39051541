//! The simulator's Byzantine behaviours: the adversaries of the literature,
//! each a seeded node behaviour. Every choice draws from the run's seeded
//! generator, so a run replays exactly.
//!
//! The kinds that run a real engine ([`Byzantine::runs_engine`]) follow
//! the chain with honest code (they poll, pull and finalize, so they stay
//! at the honest nodes' height) and lie only where their kind says. The
//! simulator gives an adversary what the strongest one could have: the
//! querier's poll timeout and send time ([`Byzantine::LateAnswers`]) and
//! every honest node's current preference ([`Byzantine::Rebalancer`]).

use crate::block::BlockId;
use crate::engine::Message;
use crate::rng::Rng;

/// How a Byzantine node behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Never answers.
    Silent,
    /// Answers every query with a random block id (possibly unknown).
    RandomVoter,
    /// Runs a real engine but answers each querier at random with its
    /// preference or a random id: a different answer to different peers.
    Equivocator,
    /// Runs a real engine but proposes two different valid blocks at every
    /// height, serves both, and tells each querier, at random, that it
    /// prefers one or the other — the equivocating proposer.
    EquivocatingProposer,
    /// Runs a real engine and answers every query [`DUPLICATE_COPIES`]
    /// times, each copy mostly "no vote", sometimes its real preference or
    /// a random id: issue 17's finding 1, where one validator doing so
    /// closed every poll it sat in early and halted finality.
    DuplicateAnswers,
    /// Runs a real engine and answers with its real preference, but times
    /// each answer to reach the querier just before its poll times out (and
    /// one time in [`LATE_AFTER_TIMEOUT_ONE_IN`], just after), to stretch
    /// every poll it sits in to the timeout.
    LateAnswers,
    /// One validator key run by two engines, each with its own chain; every
    /// message to the key reaches one of them at random. Both run honest
    /// code, but they propose, see and prefer different things, so the key
    /// answers two ways ("twins").
    Twins,
    /// Runs a real engine and votes its real preference (its own proposal,
    /// often), but never serves a block: every pull of it is dropped.
    Withholding,
    /// Proposes two valid blocks at every height and serves both, and
    /// answers every query with whichever of the two blocks honest nodes
    /// prefer most is preferred by *fewer* of them — its own two when they
    /// are in play — to keep honest nodes split (the balance attack). It
    /// sees every honest node's preference at the moment it answers.
    Rebalancer,
    /// Runs no engine (so it never answers) and every tick sends each
    /// honest node a burst of junk — votes for unknown polls, queries at
    /// random heights — at `SimConfig::flood_messages_per_s`. Junk the
    /// engine does not penalise, so only the message budget stops it: an
    /// unsolicited block or vote would get it banned after five.
    Flooder,
}

impl Byzantine {
    /// Every kind, in declaration order.
    pub const ALL: [Byzantine; 10] = [
        Byzantine::Silent,
        Byzantine::RandomVoter,
        Byzantine::Equivocator,
        Byzantine::EquivocatingProposer,
        Byzantine::DuplicateAnswers,
        Byzantine::LateAnswers,
        Byzantine::Twins,
        Byzantine::Withholding,
        Byzantine::Rebalancer,
        Byzantine::Flooder,
    ];

    /// Whether the node runs a real engine (which gets transactions,
    /// ticks and every message its kind does not intercept).
    pub fn runs_engine(self) -> bool {
        !matches!(
            self,
            Byzantine::Silent | Byzantine::RandomVoter | Byzantine::Flooder
        )
    }

    /// Whether it proposes two blocks per height.
    pub fn proposes_twice(self) -> bool {
        matches!(
            self,
            Byzantine::EquivocatingProposer | Byzantine::Rebalancer
        )
    }
}

/// Answers a [`Byzantine::DuplicateAnswers`] node sends per query.
pub const DUPLICATE_COPIES: usize = 3;
/// A [`Byzantine::LateAnswers`] answer lands this far at most before the
/// querier's poll deadline (uniformly in 1..=this).
pub const LATE_BEFORE_TIMEOUT_MS_MAX: u64 = 8;
/// One late answer in this many lands just after the deadline instead.
pub const LATE_AFTER_TIMEOUT_ONE_IN: u64 = 4;

/// A block id nobody holds.
pub fn random_id(rng: &mut Rng) -> BlockId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    id[8] = 0xee;
    id
}

/// What each of a [`Byzantine::DuplicateAnswers`] node's copies says,
/// given its real preference: "no vote" three times in four, else the
/// preference or a random id.
pub fn duplicate_answers(
    rng: &mut Rng,
    real: Option<BlockId>,
) -> [Option<BlockId>; DUPLICATE_COPIES] {
    std::array::from_fn(|_| match rng.below(8) {
        0..=5 => None,
        6 => real,
        _ => Some(random_id(rng)),
    })
}

/// When a [`Byzantine::LateAnswers`] answer to a query sent at `sent_ms`
/// is to reach the querier, whose polls time out after `poll_timeout_ms`.
pub fn late_arrival_ms(rng: &mut Rng, sent_ms: u64, poll_timeout_ms: u64) -> u64 {
    let deadline = sent_ms + poll_timeout_ms;
    if rng.chance(1, LATE_AFTER_TIMEOUT_ONE_IN) {
        deadline + 1 + rng.below(LATE_BEFORE_TIMEOUT_MS_MAX)
    } else {
        deadline - (1 + rng.below(LATE_BEFORE_TIMEOUT_MS_MAX)).min(deadline)
    }
}

/// A [`Byzantine::Rebalancer`]'s answer at a height: `honest` holds the
/// preference of every honest node at that height (one entry per node that
/// has one), `own` the two blocks it proposed there. Of the two blocks
/// preferred by most honest nodes (its own counting as preferred by none
/// when fewer are in play, and winning ties), it names the one fewer
/// prefer, at random on a tie: every answer pushes toward an even split.
pub fn rebalance(rng: &mut Rng, honest: &[BlockId], own: Option<[BlockId; 2]>) -> Option<BlockId> {
    // (block, honest nodes preferring it, proposed by the rebalancer);
    // a handful of blocks at most.
    let mut tally: Vec<(BlockId, usize, bool)> = Vec::with_capacity(4);
    for b in own.iter().flatten() {
        tally.push((*b, 0, true));
    }
    for b in honest {
        match tally.iter_mut().find(|(id, _, _)| id == b) {
            Some((_, n, _)) => *n += 1,
            None => tally.push((*b, 1, false)),
        }
    }
    // Most preferred first; its own blocks first among equals (it can
    // serve them), then by id so the order is deterministic.
    tally.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    match tally[..] {
        [] => None,
        [(only, _, _)] => Some(only),
        [(first, n1, _), (second, n2, _), ..] => {
            if n1 == n2 && rng.chance(1, 2) {
                Some(first)
            } else {
                Some(second)
            }
        }
    }
}

/// One junk message of a [`Byzantine::Flooder`]'s burst, for a node at
/// `height`: a vote for a poll that does not exist (a random id, which an
/// engine takes for a late answer to a closed poll) or a query at a height
/// near it. Neither is misbehaviour the engine can see.
pub fn junk(rng: &mut Rng, height: u64) -> Message {
    let poll_id = rng.next_u64() | 1 << 63;
    let near = height.saturating_sub(2) + rng.below(4);
    if rng.chance(1, 2) {
        Message::Vote {
            poll_id,
            height: near,
            block: rng.chance(1, 2).then(|| random_id(rng)),
        }
    } else {
        Message::Query {
            poll_id,
            height: near,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rebalancer_names_the_minority_of_the_top_two() {
        let mut rng = Rng::new(1);
        let (a, b, x) = ([1; 32], [2; 32], [3; 32]);
        // Nobody prefers anything: one of its own two.
        let v = rebalance(&mut rng, &[], Some([a, b]));
        assert!(v == Some(a) || v == Some(b));
        // Three prefer a, one b: b.
        assert_eq!(rebalance(&mut rng, &[a, a, b, a], Some([a, b])), Some(b));
        // Everyone on an honest block x: its own blocks are the runner-up.
        let v = rebalance(&mut rng, &[x, x, x], Some([a, b]));
        assert!(v == Some(a) || v == Some(b), "{v:?}");
        // Honest split between x and its a: the minority, a.
        assert_eq!(rebalance(&mut rng, &[x, x, a], Some([a, b])), Some(a));
        // Without its own blocks at that height: the honest minority.
        assert_eq!(rebalance(&mut rng, &[x, b, x], None), Some(b));
        assert_eq!(rebalance(&mut rng, &[], None), None);
    }

    #[test]
    fn late_answers_land_around_the_deadline() {
        let mut rng = Rng::new(2);
        let (mut before, mut after) = (0, 0);
        for _ in 0..1000 {
            let at = late_arrival_ms(&mut rng, 1000, 180);
            assert!(
                (1180 - LATE_BEFORE_TIMEOUT_MS_MAX..=1180 + LATE_BEFORE_TIMEOUT_MS_MAX)
                    .contains(&at)
            );
            assert_ne!(at, 1180);
            if at < 1180 {
                before += 1;
            } else {
                after += 1;
            }
        }
        assert!(before > 2 * after && after > 150, "{before} {after}");
    }

    #[test]
    fn duplicate_answers_are_mostly_no_vote() {
        let mut rng = Rng::new(3);
        let real = Some([7; 32]);
        let copies: Vec<Option<BlockId>> = (0..1000)
            .flat_map(|_| duplicate_answers(&mut rng, real))
            .collect();
        let none = copies.iter().filter(|c| c.is_none()).count();
        let real_n = copies.iter().filter(|c| **c == real).count();
        assert!((2000..2500).contains(&none), "{none}");
        assert!(real_n > 250, "{real_n}");
    }
}
