//! Per-peer bookkeeping: connection state, misbehaviour score, bans and
//! reconnect backoff. Time is passed in (milliseconds), never read here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::limits::SCORE_BAN_THRESHOLD;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// TCP connect in flight.
    Connecting,
    /// Connected, handshake in progress.
    Handshaking,
    /// Authenticated; application messages flow.
    Ready,
    /// Being closed.
    Closing,
}

/// Kinds of misbehaviour, each with its penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// A frame with a bad crc32.
    BadChecksum,
    /// A frame with a bad magic.
    BadMagic,
    /// A handshake signature that does not verify.
    BadSignature,
    /// A frame over the size limit.
    Oversize,
    /// A payload that does not decode.
    Undecodable,
    /// A response nobody asked for.
    UnsolicitedResponse,
    /// Pushing beyond the rate limit.
    Flooding,
    /// Not finishing the handshake in time.
    SlowHandshake,
    /// Not reading: the send queue overflowed.
    NotReading,
    /// Missed pongs.
    Unresponsive,
    /// A partial frame trickling in too slowly (slowloris).
    SlowFrame,
    /// A handshake message out of order or a second hello.
    ProtocolViolation,
    /// A gossip item whose id is not the hash of its bytes.
    ItemIdMismatch,
    /// An item the application refused as invalid (a transaction whose
    /// signature does not verify), reported through `Handle::penalize`:
    /// nodes that relay only what they validated never send one.
    InvalidItem,
}

impl Misbehaviour {
    /// Score penalty (positive number subtracted from the score).
    pub fn penalty(self) -> i32 {
        match self {
            // Protocol violations that an honest implementation never commits:
            // one is enough to ban.
            Misbehaviour::BadChecksum
            | Misbehaviour::BadMagic
            | Misbehaviour::BadSignature
            | Misbehaviour::Oversize
            | Misbehaviour::Undecodable
            | Misbehaviour::ItemIdMismatch
            | Misbehaviour::InvalidItem
            | Misbehaviour::ProtocolViolation => 100,
            Misbehaviour::UnsolicitedResponse => 20,
            Misbehaviour::Flooding => 10,
            Misbehaviour::SlowHandshake | Misbehaviour::NotReading | Misbehaviour::SlowFrame => 50,
            Misbehaviour::Unresponsive => 25,
        }
    }

    /// True when the connection must be closed at once regardless of score
    /// (the byte stream can no longer be trusted to be in sync).
    pub fn closes_connection(self) -> bool {
        !matches!(
            self,
            Misbehaviour::UnsolicitedResponse | Misbehaviour::Flooding
        )
    }
}

/// A peer's score: starts at 0, drops on misbehaviour, slowly recovers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Score(pub i32);

impl Score {
    /// Applies a penalty; returns true when the peer must now be banned.
    pub fn penalize(&mut self, m: Misbehaviour) -> bool {
        self.0 = self.0.saturating_sub(m.penalty());
        self.0 <= SCORE_BAN_THRESHOLD
    }
    /// Recovers one point (called on a timer), up to 0.
    pub fn recover(&mut self) {
        if self.0 < 0 {
            self.0 += 1;
        }
    }
}

/// What a ban is keyed by.
///
/// A node key is banned only once proven (after the handshake): a key a
/// peer merely *claims* in its hello may be anyone's, and banning it would
/// let a stranger get a validator banned by sending a hello with its public
/// key. Misbehaviour before authentication bans the remote IP address (not
/// the port, which the peer picks anew for every connection); connections
/// from a banned IP may still authenticate as a reserved peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BanKey {
    /// An authenticated (proven) node key.
    Node([u8; 32]),
    /// A remote IP address (misbehaviour before authentication).
    Ip(IpAddr),
    /// An address never to dial (our own, found by a self-connection).
    Addr(SocketAddr),
}

/// Timed bans, bounded: when full, the ban expiring soonest is dropped.
#[derive(Debug)]
pub struct BanList {
    bans: HashMap<BanKey, u64>,
    entries_max: usize,
}

impl BanList {
    /// A ban list holding at most `entries_max` bans.
    pub fn new(entries_max: usize) -> Self {
        assert!(entries_max > 0);
        BanList {
            bans: HashMap::with_capacity(entries_max),
            entries_max,
        }
    }
    /// Bans `key` until `now_ms + duration_ms`.
    pub fn ban(&mut self, key: BanKey, now_ms: u64, duration_ms: u64) {
        self.bans.retain(|_, until| *until > now_ms);
        if self.bans.len() >= self.entries_max && !self.bans.contains_key(&key) {
            if let Some(soonest) = self.bans.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k) {
                self.bans.remove(&soonest);
            }
        }
        self.bans.insert(key, now_ms.saturating_add(duration_ms));
    }
    /// True while `key` is banned.
    pub fn is_banned(&self, key: &BanKey, now_ms: u64) -> bool {
        self.bans.get(key).is_some_and(|until| *until > now_ms)
    }
    /// Number of bans held (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.bans.len()
    }
    /// True when no bans are held.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }
}

/// Exponential reconnect backoff with a cap.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    base_ms: u64,
    max_ms: u64,
    attempts: u32,
}

impl Backoff {
    /// Backoff starting at `base_ms`, doubling, capped at `max_ms`.
    pub fn new(base_ms: u64, max_ms: u64) -> Self {
        Backoff {
            base_ms,
            max_ms,
            attempts: 0,
        }
    }
    /// Delay before the next attempt, and counts the attempt.
    pub fn next_delay_ms(&mut self) -> u64 {
        let d = self
            .base_ms
            .saturating_mul(1u64 << self.attempts.min(32))
            .min(self.max_ms);
        self.attempts = self.attempts.saturating_add(1);
        d
    }
    /// Resets after a successful connection.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_bans_at_once_flooding_takes_several() {
        let mut s = Score::default();
        assert!(s.penalize(Misbehaviour::BadChecksum));
        let mut s = Score::default();
        for _ in 0..9 {
            assert!(!s.penalize(Misbehaviour::Flooding));
        }
        assert!(s.penalize(Misbehaviour::Flooding));
        s.recover();
        assert_eq!(s.0, -99);
    }

    #[test]
    fn bans_expire_and_are_bounded() {
        let mut b = BanList::new(2);
        let k1 = BanKey::Node([1; 32]);
        let k2 = BanKey::Ip("127.0.0.1".parse().unwrap());
        let k3 = BanKey::Node([3; 32]);
        b.ban(k1, 0, 100);
        b.ban(k2, 0, 200);
        assert!(b.is_banned(&k1, 99));
        assert!(!b.is_banned(&k1, 100));
        b.ban(k3, 50, 1000);
        assert_eq!(b.len(), 2);
        assert!(!b.is_banned(&k1, 60), "soonest-expiring ban evicted");
        assert!(b.is_banned(&k3, 60));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::new(100, 1000);
        let d: Vec<u64> = (0..6).map(|_| b.next_delay_ms()).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay_ms(), 100);
    }
}
