//! Round-trip times to peers, measured from the engine's own polls: a
//! query's send time and its answer's arrival, both on the monotonic clock
//! the engine is given. They set how long a poll waits for its answers and
//! how many polls are open at once, so the same configuration serves
//! validators 15 µs apart on one machine and 200 ms apart on two
//! continents.
//!
//! The estimator is TCP's (RFC 6298, Jacobson and Karels): a smoothed
//! round trip `srtt` and its mean deviation `rttvar`, gains ⅛ and ¼. The
//! engine also samples answers that come after their poll closed, or a
//! peer whose round trip grew past the wait would never be measured
//! again. Unlike TCP there is no backoff on a missed deadline: a silent
//! peer would then stretch every poll it is drawn in to the cap (the
//! simulator caught exactly that halting a height), and one that answers
//! ever later can stretch only the polls that need its answer (the
//! engine waits for the fastest peers that can make a poll successful,
//! not for every peer drawn).
//!
//! ```
//! use strata_consensus::rtt::PeerRtts;
//!
//! let mut rtts = PeerRtts::default();
//! let peer = [7u8; 32];
//! rtts.sample(&peer, 100);
//! rtts.sample(&peer, 100);
//! // Two round trips plus four deviations: room for one TCP resend.
//! assert!(rtts.timeout_ms(&peer, 400, 2_000) >= 400);
//! assert_eq!(rtts.typical_ms(), Some(100));
//! ```

use std::collections::HashMap;

use crate::tx::PublicKey;

/// Peers whose round trip is tracked, at most: one entry per validator
/// that answered a poll, so the validator set bounds it already; this
/// bounds it again against a caller that feeds other ids.
pub const PEERS_MAX: usize = 4_096;

/// Linux's least retransmission timeout above the round trip (`TCP_RTO_MIN`,
/// 200 ms), in µs: a lost message's resend comes no sooner.
const TCP_RTO_MIN_US: u64 = 200_000;

/// One peer's estimate, in microseconds so that loopback round trips do
/// not round to zero.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    srtt_us: u64,
    rttvar_us: u64,
}

/// Round-trip estimates per peer. See the [module docs](self).
#[derive(Debug, Default)]
pub struct PeerRtts {
    peers: HashMap<PublicKey, Estimate>,
}

impl PeerRtts {
    /// One answer from `peer`, `rtt_ms` after its query was sent.
    pub fn sample(&mut self, peer: &PublicKey, rtt_ms: u64) {
        let r = rtt_ms.saturating_mul(1_000);
        if let Some(e) = self.peers.get_mut(peer) {
            let err = e.srtt_us.abs_diff(r);
            e.rttvar_us = e.rttvar_us - e.rttvar_us / 4 + err / 4;
            e.srtt_us = e.srtt_us - e.srtt_us / 8 + r / 8;
        } else if self.peers.len() < PEERS_MAX {
            self.peers.insert(
                *peer,
                Estimate {
                    srtt_us: r,
                    rttvar_us: r / 2,
                },
            );
        }
    }

    /// How long a poll asking `peer` waits for its answer, in ms: two
    /// round trips and four deviations, or 200 ms if more (a lost query or
    /// answer is resent by TCP after its retransmission timeout, a round
    /// trip and the larger of four deviations and Linux's 200 ms minimum,
    /// then takes its round trip), never below
    /// `floor_ms` (the configured timeout, also the wait for a peer not
    /// measured yet: Linux resends no sooner than 200 ms) nor above
    /// `cap_ms` (what a peer answering ever later may cost a poll).
    pub fn timeout_ms(&self, peer: &PublicKey, floor_ms: u64, cap_ms: u64) -> u64 {
        let Some(e) = self.peers.get(peer) else {
            return floor_ms.min(cap_ms.max(floor_ms));
        };
        let wait_us = 2 * e.srtt_us + (4 * e.rttvar_us).max(TCP_RTO_MIN_US);
        let wait_ms = wait_us.div_ceil(1_000);
        wait_ms.clamp(floor_ms, cap_ms.max(floor_ms))
    }

    /// The median smoothed round trip over the peers measured, in ms
    /// (rounded up); `None` before any answer.
    pub fn typical_ms(&self) -> Option<u64> {
        if self.peers.is_empty() {
            return None;
        }
        let mut all: Vec<u64> = self.peers.values().map(|e| e.srtt_us).collect();
        let mid = all.len() / 2;
        let (_, median, _) = all.select_nth_unstable(mid);
        Some(median.div_ceil(1_000))
    }

    /// The smoothed round trip to `peer` in µs, if measured.
    pub fn srtt_us(&self, peer: &PublicKey) -> Option<u64> {
        self.peers.get(peer).map(|e| e.srtt_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PublicKey = [1u8; 32];

    #[test]
    fn a_steady_round_trip_converges_and_its_deviation_shrinks() {
        let mut r = PeerRtts::default();
        for _ in 0..64 {
            r.sample(&P, 100);
        }
        assert_eq!(r.srtt_us(&P), Some(100_000));
        // 2 × 100 ms, and 200 ms for a resend: the deviation decayed to
        // (almost) nothing.
        assert_eq!(r.timeout_ms(&P, 0, 10_000), 400);
    }

    #[test]
    fn an_unmeasured_peer_waits_the_floor_and_the_cap_bounds_everything() {
        let mut r = PeerRtts::default();
        assert_eq!(r.timeout_ms(&P, 400, 2_000), 400);
        assert_eq!(r.typical_ms(), None);
        r.sample(&P, 5_000);
        assert_eq!(r.timeout_ms(&P, 400, 2_000), 2_000);
        // A cap below the floor never undercuts the floor.
        assert_eq!(r.timeout_ms(&P, 400, 100), 400);
    }

    #[test]
    fn a_jump_in_round_trip_widens_the_wait_at_once() {
        let mut r = PeerRtts::default();
        for _ in 0..64 {
            r.sample(&P, 50);
        }
        let before = r.timeout_ms(&P, 0, 100_000);
        r.sample(&P, 300);
        // srtt moves ⅛ of the way, rttvar ¼: 2·81 + 4·62 ≈ 410 ms,
        // against 2·50 + 200 before.
        let after = r.timeout_ms(&P, 0, 100_000);
        assert_eq!(before, 300);
        assert!(after > 400, "{before} → {after}");
    }

    #[test]
    fn the_typical_round_trip_is_the_median_peer() {
        let mut r = PeerRtts::default();
        for (i, ms) in [20u64, 80, 200, 150, 30].iter().enumerate() {
            r.sample(&[i as u8; 32], *ms);
        }
        assert_eq!(r.typical_ms(), Some(80));
        let mut sub_ms = PeerRtts::default();
        sub_ms.sample(&P, 0);
        assert_eq!(sub_ms.typical_ms(), Some(0));
    }
}
