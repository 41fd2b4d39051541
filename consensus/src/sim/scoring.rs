//! What a real node does with a peer's misbehaviour and message rate, as
//! the simulator models it: a score per (receiver, sender) that penalties
//! lower and time restores, a ban at [`BAN_SCORE`] that closes the
//! connection both ways, and a per-peer message budget checked before a
//! message reaches the engine.
//!
//! The figures are the node's (src/node.rs turns an engine
//! [`Misbehaviour`] into a network-layer one; net/src/peer.rs scores it;
//! src/budget.rs holds the message budget): heavy faults (an invalid block,
//! a block served with other transactions) cost 100 points, light ones (an
//! unsolicited or duplicate vote, an unsolicited block) 20, a message over
//! budget 10; a score starts at 0, recovers one point a second up to 0,
//! and at -100 or below the key is banned for ten minutes. Only honest
//! nodes score: a Byzantine node may treat its peers however it likes, and
//! what it does with them is its behaviour, not a rule.
//!
//! What is not modelled: the network layer's own penalties (bad frames,
//! slow handshakes, missed pongs), the request and byte budgets of
//! src/budget.rs (the simulator serves blocks at no cost), and a score
//! that a reconnection would reset before the ban — a sender's score here
//! is reset only when its connection really is new (either side
//! restarted, or a ban ended).

use crate::engine::Misbehaviour;

/// Points an invalid block or wrong block data costs (the node maps both to
/// the network layer's `ProtocolViolation`): one is a ban.
pub const HEAVY_PENALTY_POINTS: i64 = 100;
/// Points an unsolicited or duplicate vote or an unsolicited block costs
/// (the network layer's `UnsolicitedResponse`).
pub const LIGHT_PENALTY_POINTS: i64 = 20;
/// Points a message over the sender's budget costs (`Flooding`).
pub const FLOODING_PENALTY_POINTS: i64 = 10;
/// Score at or below which the sender is banned (`SCORE_BAN_THRESHOLD`).
pub const BAN_SCORE: i64 = -100;
/// Time in which a negative score recovers one point.
pub const SCORE_RECOVERY_MS_PER_POINT: u64 = 1000;

const _: () = assert!(HEAVY_PENALTY_POINTS >= -BAN_SCORE);
const _: () = assert!(LIGHT_PENALTY_POINTS < -BAN_SCORE);
const _: () = assert!(FLOODING_PENALTY_POINTS < LIGHT_PENALTY_POINTS);

/// A penalty the simulator scores: an engine's [`Misbehaviour`], or a
/// message over the sender's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Penalty {
    /// An [`crate::engine::Output::Penalize`] from the receiver's engine.
    Engine(Misbehaviour),
    /// The sender's message budget was spent (the node's `Flooding`).
    Flooding,
}

impl Penalty {
    /// What it costs the sender's score.
    pub fn points(self) -> i64 {
        match self {
            Penalty::Engine(Misbehaviour::InvalidBlock | Misbehaviour::WrongBlockData) => {
                HEAVY_PENALTY_POINTS
            }
            Penalty::Engine(
                Misbehaviour::UnsolicitedVote
                | Misbehaviour::UnsolicitedBlock
                | Misbehaviour::DuplicateVote,
            ) => LIGHT_PENALTY_POINTS,
            Penalty::Flooding => FLOODING_PENALTY_POINTS,
        }
    }
}

/// Penalties given, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Penalties {
    /// Votes for a block that failed validation, or such blocks served.
    pub invalid_block: u64,
    /// Blocks served with transactions other than the ones their id names.
    pub wrong_block_data: u64,
    /// Votes for a poll the sender was not asked in, or at the wrong height.
    pub unsolicited_vote: u64,
    /// Block data nobody pulled from the sender.
    pub unsolicited_block: u64,
    /// A second answer to one poll.
    pub duplicate_vote: u64,
    /// Messages over the sender's budget.
    pub flooding: u64,
}

impl Penalties {
    /// Counts one.
    pub fn count(&mut self, penalty: Penalty) {
        let n = match penalty {
            Penalty::Engine(Misbehaviour::InvalidBlock) => &mut self.invalid_block,
            Penalty::Engine(Misbehaviour::WrongBlockData) => &mut self.wrong_block_data,
            Penalty::Engine(Misbehaviour::UnsolicitedVote) => &mut self.unsolicited_vote,
            Penalty::Engine(Misbehaviour::UnsolicitedBlock) => &mut self.unsolicited_block,
            Penalty::Engine(Misbehaviour::DuplicateVote) => &mut self.duplicate_vote,
            Penalty::Flooding => &mut self.flooding,
        };
        *n += 1;
    }

    /// Penalties of every reason.
    pub fn total(&self) -> u64 {
        self.invalid_block
            + self.wrong_block_data
            + self.unsolicited_vote
            + self.unsolicited_block
            + self.duplicate_vote
            + self.flooding
    }
}

/// The node's peer limits as the simulator applies them; each field
/// documents its default (the node's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Whether honest nodes score penalties and ban. Default true. Off,
    /// penalties are still counted in the report, but nobody is banned
    /// and messages over budget are still dropped.
    pub scoring: bool,
    /// Messages one peer may send one node per second (the token bucket's
    /// refill). Default 20,000, the node's `BudgetConfig::messages_per_s`.
    pub messages_per_s: u64,
    /// The bucket's capacity: the burst a peer may send at once. Default
    /// 20,000 (one second's worth, as the node's).
    pub messages_burst: u64,
    /// How long a ban lasts. Default 600,000 (ten minutes, the network
    /// layer's `BAN_DURATION_MS_DEFAULT`).
    pub ban_ms: u64,
    /// Time a node's driver spends on one message it hands to its engine
    /// (decoding it and the engine's work), during which the next messages
    /// wait. Default 5,000 ns: the network layer's receive path measures
    /// about 2 µs a message (docs/benchmarks.md, `net/recv_path`) and the
    /// engine's handling of a vote or query is of the same order; not
    /// measured on the node as a whole. A pulled block costs
    /// `SimConfig::block_delay_ms` on top.
    pub message_cost_ns: u64,
    /// Time a message the budget drops costs the driver (taken off the
    /// channel, one bucket check, never decoded). Default 200 ns.
    pub dropped_message_cost_ns: u64,
    /// Whether a node tells its engine about peers it has no connection to
    /// (`Engine::peer_unreachable`, as src/node.rs does: on a lost
    /// connection, and for a query to a peer without one), so that their
    /// poll slots count as "no vote" at once. Default true; off, such
    /// queries are sent and lost, and the polls wait for their timeout.
    pub report_unreachable: bool,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            scoring: true,
            messages_per_s: 20_000,
            messages_burst: 20_000,
            ban_ms: 600_000,
            message_cost_ns: 5_000,
            dropped_message_cost_ns: 200,
            report_unreachable: true,
        }
    }
}

/// A token bucket in whole milliseconds, as the node's
/// (`strata_net::gossip::TokenBucket`): refilled on use.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u64,
    last_ms: u64,
}

/// What one honest node holds about one sender.
#[derive(Clone, Copy, Debug)]
struct Entry {
    score: i64,
    /// When the score last recovered (or was last at 0).
    recovered_ms: u64,
    banned_until_ms: u64,
    bucket: Bucket,
}

/// What a ban says about who banned whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    /// The validator that banned.
    pub by: usize,
    /// The validator banned.
    pub banned: usize,
    /// The penalty that crossed the threshold.
    pub last: Penalty,
}

/// Scores, bans and budgets of every (receiver, sender) pair of validators,
/// dense: simulated networks have tens of validators.
pub struct Scoreboard {
    limits: PeerLimits,
    validators: usize,
    entries: Vec<Entry>,
}

impl Scoreboard {
    /// Every pair at score 0, unbanned, with a full bucket at `now_ms`.
    pub fn new(limits: PeerLimits, validators: usize, now_ms: u64) -> Scoreboard {
        assert!(limits.messages_burst > 0, "a budget of no message");
        let fresh = Entry {
            score: 0,
            recovered_ms: now_ms,
            banned_until_ms: 0,
            bucket: Bucket {
                tokens: limits.messages_burst,
                last_ms: now_ms,
            },
        };
        Scoreboard {
            limits,
            validators,
            entries: vec![fresh; validators * validators],
        }
    }

    fn entry(&mut self, receiver: usize, sender: usize) -> &mut Entry {
        &mut self.entries[receiver * self.validators + sender]
    }

    fn fresh(&self, now_ms: u64) -> Entry {
        Entry {
            score: 0,
            recovered_ms: now_ms,
            banned_until_ms: 0,
            bucket: Bucket {
                tokens: self.limits.messages_burst,
                last_ms: now_ms,
            },
        }
    }

    /// True while either validator bans the other: their connection is
    /// closed, and nothing passes either way.
    pub fn cut(&self, a: usize, b: usize, now_ms: u64) -> bool {
        let n = self.validators;
        self.entries[a * n + b].banned_until_ms > now_ms
            || self.entries[b * n + a].banned_until_ms > now_ms
    }

    /// Takes one token of `sender`'s budget at `receiver`; false when the
    /// message is over budget (and must be dropped).
    pub fn take_token(&mut self, receiver: usize, sender: usize, now_ms: u64) -> bool {
        let PeerLimits {
            messages_per_s,
            messages_burst,
            ..
        } = self.limits;
        let b = &mut self.entry(receiver, sender).bucket;
        let added = now_ms
            .saturating_sub(b.last_ms)
            .saturating_mul(messages_per_s)
            / 1000;
        if added > 0 {
            b.tokens = b.tokens.saturating_add(added).min(messages_burst);
            b.last_ms = now_ms;
        }
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }

    /// Scores `penalty` against `sender` at `receiver`; returns the ban
    /// when it crossed [`BAN_SCORE`] (the connection closes, and the
    /// score starts again at 0 when the ban ends). Does nothing with
    /// scoring off.
    pub fn penalize(
        &mut self,
        receiver: usize,
        sender: usize,
        penalty: Penalty,
        now_ms: u64,
    ) -> Option<Ban> {
        if !self.limits.scoring {
            return None;
        }
        let ban_ms = self.limits.ban_ms;
        let fresh = self.fresh(now_ms);
        let e = self.entry(receiver, sender);
        if e.banned_until_ms > now_ms {
            return None; // already cut off
        }
        // Lazy recovery: one point per whole second since the last one.
        let points = (now_ms - e.recovered_ms.min(now_ms)) / SCORE_RECOVERY_MS_PER_POINT;
        e.score = (e.score + points as i64).min(0);
        e.recovered_ms += points * SCORE_RECOVERY_MS_PER_POINT;
        if e.score == 0 {
            e.recovered_ms = now_ms;
        }
        e.score -= penalty.points();
        if e.score > BAN_SCORE {
            return None;
        }
        *e = Entry {
            banned_until_ms: now_ms + ban_ms,
            ..fresh
        };
        Some(Ban {
            by: receiver,
            banned: sender,
            last: penalty,
        })
    }

    /// `validator` restarted: its own memory (scores, bans, budgets of its
    /// peers) is gone, and its peers see a new connection from it (score
    /// and budget fresh; their bans of its key stand).
    pub fn restarted(&mut self, validator: usize, now_ms: u64) {
        let fresh = self.fresh(now_ms);
        for peer in 0..self.validators {
            *self.entry(validator, peer) = fresh;
            let e = self.entry(peer, validator);
            *e = Entry {
                banned_until_ms: e.banned_until_ms,
                ..fresh
            };
        }
    }

    /// The sender's current score at the receiver (for tests).
    pub fn score(&self, receiver: usize, sender: usize) -> i64 {
        self.entries[receiver * self.validators + sender].score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_light_penalties_ban_and_time_forgives() {
        let mut board = Scoreboard::new(PeerLimits::default(), 3, 0);
        let light = Penalty::Engine(Misbehaviour::DuplicateVote);
        for _ in 0..4 {
            assert_eq!(board.penalize(0, 1, light, 10), None);
        }
        assert_eq!(board.score(0, 1), -80);
        // Forty seconds later 40 points are back: two more fit.
        assert_eq!(board.penalize(0, 1, light, 40_010), None);
        assert_eq!(board.score(0, 1), -60);
        assert_eq!(board.penalize(0, 1, light, 40_010), None);
        let ban = board.penalize(0, 1, light, 40_010);
        assert_eq!(
            ban,
            Some(Ban {
                by: 0,
                banned: 1,
                last: light
            })
        );
        assert!(board.cut(0, 1, 40_011) && board.cut(1, 0, 40_011));
        assert!(!board.cut(0, 2, 40_011));
        assert!(!board.cut(0, 1, 40_010 + 600_000));
    }

    #[test]
    fn one_heavy_penalty_bans() {
        let mut board = Scoreboard::new(PeerLimits::default(), 2, 0);
        let heavy = Penalty::Engine(Misbehaviour::WrongBlockData);
        assert!(board.penalize(1, 0, heavy, 5).is_some());
    }

    #[test]
    fn the_budget_refills_at_its_rate_up_to_the_burst() {
        let limits = PeerLimits {
            messages_per_s: 1000,
            messages_burst: 10,
            ..PeerLimits::default()
        };
        let mut board = Scoreboard::new(limits, 2, 0);
        for _ in 0..10 {
            assert!(board.take_token(0, 1, 0));
        }
        assert!(!board.take_token(0, 1, 0));
        // 5 ms at 1000/s: five tokens.
        for _ in 0..5 {
            assert!(board.take_token(0, 1, 5));
        }
        assert!(!board.take_token(0, 1, 5));
        // An hour idle refills only the burst.
        for _ in 0..10 {
            assert!(board.take_token(0, 1, 3_600_000));
        }
        assert!(!board.take_token(0, 1, 3_600_000));
    }

    #[test]
    fn a_restart_forgets_scores_but_not_bans_of_the_restarted() {
        let mut board = Scoreboard::new(PeerLimits::default(), 3, 0);
        let heavy = Penalty::Engine(Misbehaviour::InvalidBlock);
        let light = Penalty::Engine(Misbehaviour::UnsolicitedBlock);
        assert!(board.penalize(0, 1, heavy, 1).is_some());
        assert_eq!(board.penalize(2, 1, light, 1), None);
        assert_eq!(board.penalize(1, 2, light, 1), None);
        board.restarted(1, 2);
        assert!(board.cut(0, 1, 3), "node 0's ban of 1 stands");
        assert_eq!(board.score(2, 1), 0, "a new connection");
        assert_eq!(board.score(1, 2), 0, "node 1 forgot");
    }

    #[test]
    fn scoring_off_never_bans() {
        let limits = PeerLimits {
            scoring: false,
            ..PeerLimits::default()
        };
        let mut board = Scoreboard::new(limits, 2, 0);
        let heavy = Penalty::Engine(Misbehaviour::InvalidBlock);
        assert_eq!(board.penalize(0, 1, heavy, 1), None);
        assert!(!board.cut(0, 1, 2));
    }
}
