//! From hello to ready peer: the handshake messages, refusals and how they
//! score, admission of an authenticated peer (bans, reserved peers, the
//! inbound limit and eviction, duplicate connections), and promotion.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::requests::fail_pending;
use super::{push_event, Protocol};
use crate::control::{Event, RequestFailure};
use crate::error::HandshakeRefusal;
use crate::gossip::PeerGossip;
use crate::handshake::PeerInfo;
use crate::limits::ADDRS_ANSWER_MAX;
use crate::message::Message;
use crate::peer::{BanKey, Misbehaviour, PeerState};

impl Protocol {
    fn refuse(&mut self, slot: usize, r: HandshakeRefusal) {
        self.shared
            .stats
            .handshakes_refused
            .fetch_add(1, Ordering::Relaxed);
        match r {
            HandshakeRefusal::BadSignature | HandshakeRefusal::BadKey => {
                self.misbehave(slot, Misbehaviour::BadSignature)
            }
            HandshakeRefusal::UnexpectedMessage(_) => {
                self.misbehave(slot, Misbehaviour::ProtocolViolation)
            }
            HandshakeRefusal::Timeout => self.misbehave(slot, Misbehaviour::SlowHandshake),
            HandshakeRefusal::SelfConnection => {
                let conn = self.peers[slot].as_ref().expect("live");
                if let Some(a) = conn.peer_addr {
                    // Never dial our own address again.
                    self.addr_book.failed(&a);
                    self.bans.ban(BanKey::Addr(a), self.now_ms, u64::MAX / 4);
                }
                self.close_slot(slot)
            }
            _ => self.close_slot(slot),
        }
    }

    /// A message on a connection still in its handshake; returns false
    /// when the connection is closing.
    pub(super) fn on_handshake_msg(&mut self, slot: usize, msg: Message<'_>) -> bool {
        let now = self.now_ms;
        let conn = self.peers[slot].as_mut().expect("live slot");
        let hs = conn
            .hs
            .as_mut()
            .expect("handshaking connections have a handshake");
        match msg {
            Message::Hello(hello) => {
                // From a banned IP only a reserved peer may get in (once it
                // proves its key): any other claim is refused now, not
                // after the handshake's timeout.
                let restricted_stranger =
                    conn.restricted && !self.reserved.contains(&hello.node_key);
                if restricted_stranger || self.bans.is_banned(&BanKey::Node(hello.node_key), now) {
                    self.refuse(slot, HandshakeRefusal::Banned);
                    return false;
                }
                match hs.on_hello(&self.identity, hello) {
                    Ok(sig) => self.send_msg(slot, &Message::Auth(sig), 0),
                    Err(r) => {
                        self.refuse(slot, r);
                        false
                    }
                }
            }
            Message::Auth(sig) => match hs.on_auth(&sig) {
                Ok(info) => self.on_authenticated(slot, info),
                Err(r) => {
                    self.refuse(slot, r);
                    false
                }
            },
            _ => {
                self.refuse(slot, HandshakeRefusal::UnexpectedMessage("application"));
                false
            }
        }
    }

    fn on_authenticated(&mut self, slot: usize, info: PeerInfo) -> bool {
        let now = self.now_ms;
        let me = self.identity.public();
        if !self.admit(slot, &info, now) {
            self.shared
                .stats
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            self.close_slot(slot);
            return false;
        }
        if let Some(&other) = self.by_key.get(&info.node_key) {
            // Two connections to one node (both dialed at once). Both sides
            // keep the connection whose initiator has the lower key, so they
            // agree without talking.
            let initiator_key = |outbound: bool| if outbound { me } else { info.node_key };
            let new_out = self.peers[slot].as_ref().expect("live").outbound;
            let old_out = self.peers[other].as_ref().expect("live").outbound;
            if initiator_key(new_out) < initiator_key(old_out) {
                self.by_key.remove(&info.node_key);
                // Silent swap: the peer stays up, so no PeerDown.
                let old = self.peers[other].as_mut().expect("live");
                // Requests that went out on the old connection cannot be
                // answered on the new one; report them before the old
                // connection forgets whose they were.
                fail_pending(&self.shared, old, RequestFailure::PeerGone);
                old.peer = None;
                self.close_slot(other);
            } else {
                self.shared
                    .stats
                    .handshakes_refused
                    .fetch_add(1, Ordering::Relaxed);
                self.close_slot(slot);
                return false;
            }
            self.promote(slot, info, now, false);
            return true;
        }
        self.promote(slot, info, now, true);
        true
    }

    /// Whether peer `info`, just authenticated on `slot`, may stay: not
    /// banned (by its proven key); from a banned IP only as a reserved
    /// peer; inbound and not reserved only within `inbound_peers_max`,
    /// evicting the worst-scored such peer if it misbehaved.
    fn admit(&mut self, slot: usize, info: &PeerInfo, now: u64) -> bool {
        if self.bans.is_banned(&BanKey::Node(info.node_key), now) {
            return false;
        }
        let reserved = self.reserved.contains(&info.node_key);
        let conn = self.peers[slot].as_ref().expect("live");
        if reserved || conn.outbound || self.by_key.contains_key(&info.node_key) {
            // Reserved peers always; outbound ones were chosen by this
            // node (within `outbound_peers_max`); a second connection to
            // a known peer replaces, not adds (`on_authenticated`).
            return reserved || !conn.restricted;
        }
        if conn.restricted {
            return false;
        }
        let mut inbound = 0;
        let mut worst: Option<(i32, usize)> = None;
        for &s in self.by_key.values() {
            let Some(c) = self.peers[s].as_ref() else {
                continue;
            };
            let key = c.peer.map(|p| p.node_key);
            if c.outbound || c.closing || key.is_some_and(|k| self.reserved.contains(&k)) {
                continue;
            }
            inbound += 1;
            if worst.is_none_or(|(score, _)| c.score.0 < score) {
                worst = Some((c.score.0, s));
            }
        }
        if inbound < self.cfg.inbound_peers_max {
            return true;
        }
        match worst {
            Some((score, victim)) if score < 0 => {
                self.shared
                    .stats
                    .peers_evicted
                    .fetch_add(1, Ordering::Relaxed);
                self.close_slot(victim);
                true
            }
            _ => false,
        }
    }

    fn promote(&mut self, slot: usize, info: PeerInfo, now: u64, announce: bool) {
        let limits = self.push_limits();
        let conn = self.peers[slot].as_mut().expect("live");
        conn.state = PeerState::Ready;
        conn.peer = Some(info);
        conn.hs = None;
        conn.gossip = Some(PeerGossip::new(self.cfg.sent_ids_per_peer_max, limits, now));
        conn.ping_sent_ms = now;
        if !conn.outbound && info.listen_port != 0 {
            conn.peer_addr = Some(SocketAddr::new(conn.remote.ip(), info.listen_port));
        }
        let remote = conn.remote;
        if let Some(a) = conn.peer_addr {
            self.addr_book.succeeded(a, now);
        }
        self.by_key.insert(info.node_key, slot);
        self.peers_dirty = true;
        if announce {
            push_event(
                &self.shared,
                Event::PeerUp {
                    node_key: info.node_key,
                    addr: remote,
                },
            );
        }
        self.send_msg(slot, &Message::GetAddrs(ADDRS_ANSWER_MAX as u16), 0);
        if self.cfg.gossip_quiet {
            self.send_msg(slot, &Message::Quiet, 0);
        }
    }
}
