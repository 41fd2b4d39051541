//! What a peer may cost this node, enforced before the work is done.
//!
//! Every consensus message a peer sends takes one token of its message
//! budget; a request that makes the node read its disk or serve a block (a
//! `GetBlock`, a query about a height older than the last
//! [`RECENT_HEIGHTS`]) also takes one of its request budget; the bytes of
//! every block served come out of the peer's byte budget and the node-wide
//! one. Each budget is a token bucket that refills continuously and holds
//! at most one second's worth. A message beyond the message budget is
//! dropped and the peer scored down for flooding (repeat offenders are
//! banned by the network layer's score); a request beyond the request
//! budget is dropped unanswered (the peer asks another node, as after
//! a lost message), and a block pull beyond it is scored down the same
//! way; a query about an old height is not (a node catching up polls
//! every height it replays). A block beyond the byte
//! budget is not served, without blame: a node catching up asks for
//! blocks whose size it cannot know. The limits and the
//! reasoning behind each default are in [`BudgetConfig`]; docs/protocol.md
//! ("What a peer may cost") says the same for peers.
//!
//! The budgets are held by the node's driver thread alone: no lock.

use strata_net::gossip::TokenBucket;
use strata_storage::lru::LruCache;

/// Heights below the last finalized one a query may ask about for free:
/// the chain keeps their ids in memory (see `DbChain::finalized_id`).
/// Older ones cost a disk read and take a request token.
pub const RECENT_HEIGHTS: u64 = 64;

/// Peers whose budgets are remembered at once, least recently seen
/// forgotten first. Connected peers are far fewer (the network layer's
/// limits), so a peer that disconnects and comes back within the next
/// thousands of others finds its buckets as it left them: reconnecting
/// does not refill them. One forgotten starts again with full buckets,
/// which is only generous, never unsafe: the node-wide buckets bound the
/// sum, and its connection and score live in the network layer.
pub const PEERS_REMEMBERED_MAX: usize = 4096;

/// The limits. Every field documents its default and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Consensus messages per second from one peer. Default 20,000: a
    /// validator on a 4-node loopback devnet sends another about 4,000 a
    /// second at full speed (polls every 2 ms tick, answers to the
    /// other's), and 8,000 with the latency settings; five times the
    /// first leaves room for bursts.
    pub messages_per_s: u64,
    /// Requests per second from one peer that read the disk or serve a
    /// block. Default 100: a node pulls a block from one voter per
    /// height, and one catching up asks about a few heights per poll.
    pub requests_per_s: u64,
    /// Requests per second from all peers together that read the disk or
    /// serve a block. Default 1,000: ten peers at their full
    /// `requests_per_s`. Each such request is one block record read (a
    /// few microseconds from the block cache, a disk read otherwise) on
    /// the consensus thread or the serving thread; the sum across peers is
    /// what bounds that thread's time, since anyone can make new keys or
    /// reconnect. Beyond it a request is dropped without blame.
    pub requests_per_s_total: u64,
    /// Bytes of blocks served to one peer per second. Default 16 MiB: a
    /// catching-up node pulls at least this from every peer it asks, ten
    /// times what a saturated devnet's chain grows by per second.
    pub serve_bytes_per_s: u64,
    /// Bytes of blocks served to all peers together per second. Default
    /// 64 MiB.
    pub serve_bytes_per_s_total: u64,
    /// Bytes of state-sync chunks served to one peer per second
    /// (`[sync] serve_bytes_per_s`, default 64 MiB). Apart from blocks':
    /// a join moves the whole state.
    pub snapshot_bytes_per_s: u64,
    /// Bytes of state-sync chunks served to all peers together per second
    /// (`[sync] serve_bytes_per_s_total`, default 128 MiB).
    pub snapshot_bytes_per_s_total: u64,
    /// Consensus messages per second from all peers that are not
    /// validators, together. Default 40,000. Validators are a known,
    /// bounded set, each held to `messages_per_s`; anyone else can make
    /// new keys, and without a shared budget enough of them, each within
    /// its own, would take the whole consensus thread. A non-validator
    /// only follows the chain (its queries are answered; its votes count
    /// nowhere), so when strangers together send too much, their messages
    /// are dropped without blame (none of them need be at fault).
    pub stranger_messages_per_s_total: u64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            messages_per_s: 20_000,
            requests_per_s: 100,
            requests_per_s_total: 1_000,
            serve_bytes_per_s: 16 << 20,
            serve_bytes_per_s_total: 64 << 20,
            snapshot_bytes_per_s: 64 << 20,
            snapshot_bytes_per_s_total: 128 << 20,
            stranger_messages_per_s_total: 40_000,
        }
    }
}

/// One peer's buckets.
struct PeerBudget {
    messages: TokenBucket,
    requests: TokenBucket,
    bytes: TokenBucket,
    snapshot_bytes: TokenBucket,
}

/// Budgets of every peer, and the node-wide one.
pub struct Budgets {
    config: BudgetConfig,
    peers: LruCache<[u8; 32], PeerBudget>,
    total_bytes: TokenBucket,
    total_snapshot_bytes: TokenBucket,
    total_requests: TokenBucket,
    strangers: TokenBucket,
}

/// Why a budget refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The peer's own budget is spent: its fault (scored down).
    Peer,
    /// The node-wide budget is spent: nobody's fault (not scored).
    Node,
}

impl Budgets {
    /// Empty budgets (every peer starts with full buckets).
    pub fn new(config: BudgetConfig, now_ms: u64) -> Self {
        Budgets {
            config,
            peers: LruCache::new(PEERS_REMEMBERED_MAX),
            total_bytes: TokenBucket::new(
                config.serve_bytes_per_s_total,
                config.serve_bytes_per_s_total,
                now_ms,
            ),
            total_snapshot_bytes: TokenBucket::new(
                config.snapshot_bytes_per_s_total,
                config.snapshot_bytes_per_s_total,
                now_ms,
            ),
            total_requests: TokenBucket::new(
                config.requests_per_s_total,
                config.requests_per_s_total,
                now_ms,
            ),
            strangers: TokenBucket::new(
                config.stranger_messages_per_s_total,
                config.stranger_messages_per_s_total,
                now_ms,
            ),
        }
    }

    fn peer(&mut self, peer: &[u8; 32], now_ms: u64) -> &mut PeerBudget {
        if !self.peers.contains(peer) {
            let c = self.config;
            self.peers.put(
                *peer,
                PeerBudget {
                    messages: TokenBucket::new(c.messages_per_s, c.messages_per_s, now_ms),
                    requests: TokenBucket::new(c.requests_per_s, c.requests_per_s, now_ms),
                    bytes: TokenBucket::new(c.serve_bytes_per_s, c.serve_bytes_per_s, now_ms),
                    snapshot_bytes: TokenBucket::new(
                        c.snapshot_bytes_per_s,
                        c.snapshot_bytes_per_s,
                        now_ms,
                    ),
                },
            );
        }
        self.peers.get_mut(peer).expect("just inserted")
    }

    /// Takes one message token from `peer` and, for a peer that is not a
    /// `validator`, one from the strangers' shared budget.
    ///
    /// # Errors
    /// Which budget could not pay: the peer's own (its fault) or the
    /// strangers' (nobody's in particular).
    pub fn message(
        &mut self,
        peer: &[u8; 32],
        validator: bool,
        now_ms: u64,
    ) -> Result<(), Refused> {
        if !self.peer(peer, now_ms).messages.try_take(1, now_ms) {
            return Err(Refused::Peer);
        }
        if !validator && !self.strangers.try_take(1, now_ms) {
            self.peer(peer, now_ms).messages.refund(1);
            return Err(Refused::Node);
        }
        Ok(())
    }

    /// Takes one request token from `peer` and one from the node's.
    ///
    /// # Errors
    /// Which budget could not pay: the peer's own (its fault) or the
    /// node's (nobody's in particular; the peer keeps its token).
    pub fn request(&mut self, peer: &[u8; 32], now_ms: u64) -> Result<(), Refused> {
        if !self.peer(peer, now_ms).requests.try_take(1, now_ms) {
            return Err(Refused::Peer);
        }
        if !self.total_requests.try_take(1, now_ms) {
            self.peer(peer, now_ms).requests.refund(1);
            return Err(Refused::Node);
        }
        Ok(())
    }

    /// Takes `bytes` from `peer`'s byte budget and the node's, or nothing.
    ///
    /// # Errors
    /// Which budget could not pay.
    pub fn serve(&mut self, peer: &[u8; 32], bytes: usize, now_ms: u64) -> Result<(), Refused> {
        self.take_bytes(peer, bytes, false, now_ms)
    }

    /// As [`Budgets::serve`], from the state-sync chunk budgets.
    ///
    /// # Errors
    /// Which budget could not pay.
    pub fn serve_snapshot(
        &mut self,
        peer: &[u8; 32],
        bytes: usize,
        now_ms: u64,
    ) -> Result<(), Refused> {
        self.take_bytes(peer, bytes, true, now_ms)
    }

    fn take_bytes(
        &mut self,
        peer: &[u8; 32],
        bytes: usize,
        snapshot: bool,
        now_ms: u64,
    ) -> Result<(), Refused> {
        let n = bytes as u64;
        let c = self.config;
        let (per_peer, per_node) = if snapshot {
            (c.snapshot_bytes_per_s, c.snapshot_bytes_per_s_total)
        } else {
            (c.serve_bytes_per_s, c.serve_bytes_per_s_total)
        };
        // An answer larger than a whole second's budget could never be
        // served: let it through once the bucket is full instead.
        let peer_n = n.min(per_peer);
        fn bucket(b: &mut PeerBudget, snapshot: bool) -> &mut TokenBucket {
            if snapshot {
                &mut b.snapshot_bytes
            } else {
                &mut b.bytes
            }
        }
        if !bucket(self.peer(peer, now_ms), snapshot).try_take(peer_n, now_ms) {
            return Err(Refused::Peer);
        }
        let total = if snapshot {
            &mut self.total_snapshot_bytes
        } else {
            &mut self.total_bytes
        };
        if !total.try_take(n.min(per_node), now_ms) {
            // Nothing was served: the peer keeps its share.
            bucket(self.peer(peer, now_ms), snapshot).refund(peer_n);
            return Err(Refused::Node);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BudgetConfig {
        BudgetConfig {
            messages_per_s: 10,
            requests_per_s: 2,
            requests_per_s_total: 3,
            serve_bytes_per_s: 1_000,
            serve_bytes_per_s_total: 1_500,
            snapshot_bytes_per_s: 4_000,
            snapshot_bytes_per_s_total: 6_000,
            stranger_messages_per_s_total: 15,
        }
    }

    #[test]
    fn each_peer_has_its_own_buckets_refilled_over_time() {
        let mut b = Budgets::new(config(), 0);
        let (p, q) = ([1; 32], [2; 32]);
        for _ in 0..10 {
            assert_eq!(b.message(&p, true, 0), Ok(()));
        }
        assert_eq!(
            b.message(&p, true, 0),
            Err(Refused::Peer),
            "burst is one second's worth"
        );
        assert_eq!(b.message(&q, true, 0), Ok(()), "another peer is untouched");
        assert_eq!(
            b.message(&p, true, 100),
            Ok(()),
            "refilled: 10/s for 100 ms"
        );
        assert_eq!(b.request(&p, 0), Ok(()));
        assert_eq!(b.request(&p, 0), Ok(()));
        assert_eq!(b.request(&p, 0), Err(Refused::Peer));
        assert_eq!(b.request(&p, 500), Ok(()));
    }

    /// Many peers each within their own request budget cannot together
    /// make the node read more than its own.
    #[test]
    fn requests_come_out_of_the_peer_and_the_node() {
        let mut b = Budgets::new(config(), 0);
        assert_eq!(b.request(&[1; 32], 0), Ok(()));
        assert_eq!(b.request(&[2; 32], 0), Ok(()));
        assert_eq!(b.request(&[3; 32], 0), Ok(()));
        assert_eq!(b.request(&[4; 32], 0), Err(Refused::Node), "node: 3/s");
        // Refused by the node, peer 4 kept its own tokens: two once the
        // node's bucket refills (3/s: one every 334 ms).
        assert_eq!(b.request(&[4; 32], 700), Ok(()));
        assert_eq!(b.request(&[4; 32], 1_000), Ok(()));
        assert_eq!(b.request(&[4; 32], 1_000), Err(Refused::Peer));
    }

    /// Strangers (not validators) share one budget on top of their own:
    /// many keys each within its own budget cannot take the node.
    #[test]
    fn strangers_share_a_budget_validators_do_not() {
        let mut b = Budgets::new(config(), 0);
        let mut refused = 0;
        for i in 0..20u8 {
            for _ in 0..5 {
                if b.message(&[100 + i; 32], false, 0).is_err() {
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, 100 - 15, "15 stranger messages a second in all");
        // A stranger refused by the shared budget keeps its own tokens.
        assert_eq!(b.message(&[200; 32], false, 0), Err(Refused::Node));
        // Validators are not held to it.
        for v in 0..5u8 {
            assert_eq!(b.message(&[v; 32], true, 0), Ok(()));
        }
    }

    #[test]
    fn bytes_come_out_of_the_peer_and_the_node() {
        let mut b = Budgets::new(config(), 0);
        let (p, q) = ([1; 32], [2; 32]);
        assert_eq!(b.serve(&p, 800, 0), Ok(()));
        assert_eq!(b.serve(&p, 800, 0), Err(Refused::Peer));
        assert_eq!(b.serve(&q, 800, 0), Err(Refused::Node), "node: 1,500/s");
        // The refused attempt cost `q` nothing.
        assert_eq!(b.serve(&q, 700, 0), Ok(()));
        // Larger than a whole second's budget: served when the bucket is full.
        assert_eq!(b.serve(&q, 1 << 20, 2_000), Ok(()));
        assert_eq!(b.serve(&p, 500, 2_000), Err(Refused::Node));
    }

    #[test]
    fn snapshot_chunks_have_budgets_of_their_own() {
        let mut b = Budgets::new(config(), 0);
        let (p, q) = ([1; 32], [2; 32]);
        // Blocks spent to the last byte leave the snapshot budget whole.
        assert_eq!(b.serve(&p, 1_000, 0), Ok(()));
        assert_eq!(b.serve_snapshot(&p, 3_500, 0), Ok(()));
        assert_eq!(b.serve_snapshot(&p, 1_000, 0), Err(Refused::Peer));
        assert_eq!(
            b.serve_snapshot(&q, 3_000, 0),
            Err(Refused::Node),
            "node: 6,000/s"
        );
        assert_eq!(b.serve_snapshot(&q, 2_500, 0), Ok(()));
        // And chunks spent leave blocks' alone.
        assert_eq!(b.serve(&q, 500, 0), Ok(()));
    }
}
