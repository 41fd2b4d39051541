//! The protocol driven in memory, with no socket and no clock: two
//! [`Protocol`]s wired back to back by a tiny simulator that carries each
//! one's queued bytes to the other, and tests that play a peer by hand
//! (garbage, floods, unsolicited responses, silence).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{ConnId, Protocol};
use crate::config::Config;
use crate::control::{Command, Event, RequestFailure, Shared};
use crate::handshake::Identity;
use crate::message::{write_item, Items, Message};
use crate::sys;

/// One simulated node: its protocol and what it reports.
struct SimNode {
    proto: Protocol,
    shared: Arc<Shared>,
    key: [u8; 32],
    addr: SocketAddr,
}

impl SimNode {
    fn new(n: u8, cfg: Config) -> SimNode {
        let addr: SocketAddr = format!("10.0.0.{n}:7000").parse().expect("address");
        let identity = Identity::from_seed([n; 32]);
        let key = identity.public();
        // The eventfd is never signalled: the protocol does not wake anyone.
        let shared = Arc::new(Shared::new(1024, sys::eventfd().expect("eventfd")));
        let proto = Protocol::new(cfg, identity, shared.clone(), None, addr, u64::from(n));
        SimNode {
            proto,
            shared,
            key,
            addr,
        }
    }

    fn events(&self) -> Vec<Event> {
        std::iter::from_fn(|| self.shared.pop_event()).collect()
    }

    fn closes(&mut self) -> Vec<ConnId> {
        let mut v = Vec::new();
        self.proto.take_closes(&mut v);
        v
    }

    /// Everything queued for `id`, as the driver would send it.
    fn output(&mut self, id: ConnId) -> Vec<u8> {
        let mut sendable = Vec::new();
        self.proto.take_sendable(&mut sendable);
        let mut buf = Vec::new();
        if self.proto.take_output(id, &mut buf) {
            self.proto.on_sent(id, buf.len());
        }
        buf
    }
}

/// Two nodes and one connection between them: `a` dialed `b`.
struct Pair {
    a: SimNode,
    b: SimNode,
    /// The connection as `a` and as `b` name it.
    ab: ConnId,
    ba: ConnId,
    now: u64,
}

impl Pair {
    fn new(cfg_a: Config, cfg_b: Config) -> Pair {
        let mut a = SimNode::new(1, cfg_a);
        let mut b = SimNode::new(2, cfg_b);
        let now = 1;
        a.proto.on_command(Command::Dial(b.addr), now);
        let mut dials = Vec::new();
        a.proto.take_dials(&mut dials);
        assert_eq!(dials.len(), 1, "one dial, to b");
        let (ab, to) = dials[0];
        assert_eq!(to, b.addr);
        a.proto.on_dial_started(ab);
        let a_remote: SocketAddr = "10.0.0.1:40000".parse().expect("address");
        let ba = b.proto.on_accepted(a_remote, now).expect("admitted");
        a.proto.on_connected(ab, now);
        Pair { a, b, ab, ba, now }
    }

    fn connected() -> Pair {
        let mut p = Pair::new(Config::default(), Config::default());
        p.pump();
        p
    }

    /// Carries bytes both ways until neither side has any to send.
    fn pump(&mut self) {
        pump(&mut self.a, &mut self.b, &[(self.ab, self.ba)], self.now);
    }

    fn tick(&mut self, ms: u64) {
        self.now += ms;
        self.a.proto.on_tick(self.now);
        self.b.proto.on_tick(self.now);
    }
}

/// Carries bytes both ways over every link (`a`'s id, `b`'s id) until no
/// side has any to send.
fn pump(a: &mut SimNode, b: &mut SimNode, links: &[(ConnId, ConnId)], now: u64) {
    loop {
        let mut moved = false;
        for &(ab, ba) in links {
            let to_b = a.output(ab);
            let to_a = b.output(ba);
            moved |= !to_b.is_empty() || !to_a.is_empty();
            b.proto.on_bytes(ba, &to_b, now);
            a.proto.on_bytes(ab, &to_a, now);
        }
        if !moved {
            return;
        }
    }
}

/// `from` dials `to`, which accepts from `from_port`: the link's ids.
fn link(from: &mut SimNode, to: &mut SimNode, from_port: u16, now: u64) -> (ConnId, ConnId) {
    from.proto.on_command(Command::Dial(to.addr), now);
    let mut dials = Vec::new();
    from.proto.take_dials(&mut dials);
    assert_eq!(dials.len(), 1);
    let out = dials[0].0;
    from.proto.on_dial_started(out);
    let remote = SocketAddr::new(from.addr.ip(), from_port);
    let inb = to.proto.on_accepted(remote, now).expect("admitted");
    from.proto.on_connected(out, now);
    (out, inb)
}

fn frame(msg: &Message<'_>, request_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode_frame(request_id, &mut out);
    out
}

fn push_frame(items: &[Vec<u8>]) -> Vec<u8> {
    let mut buf = Vec::new();
    for item in items {
        write_item(&mut buf, blake3::hash(item).as_bytes(), item);
    }
    frame(&Message::Push(Items::from_encoded(items.len(), &buf)), 0)
}

#[test]
fn handshake_brings_both_peers_up() {
    let mut p = Pair::connected();
    let (a_key, b_key) = (p.a.key, p.b.key);
    assert!(p
        .a
        .events()
        .iter()
        .any(|e| matches!(e, Event::PeerUp { node_key, .. } if *node_key == b_key)));
    assert!(p
        .b
        .events()
        .iter()
        .any(|e| matches!(e, Event::PeerUp { node_key, addr } if *node_key == a_key && addr.port() == 40000)));
    p.a.proto.publish_peers_if_changed();
    let peers = p.a.shared.peers.lock().expect("peers").clone();
    assert_eq!(peers.len(), 1);
    assert!(peers[0].outbound);
    assert!(p.a.closes().is_empty() && p.b.closes().is_empty());
}

#[test]
fn broadcast_item_reaches_the_peer_once() {
    let mut p = Pair::connected();
    p.b.events();
    let item = b"a transaction".to_vec();
    let id = *blake3::hash(&item).as_bytes();
    p.a.proto.broadcast(id, item.clone());
    // The flush runs on the tick, every `gossip_flush_interval_ms`.
    p.tick(Config::default().gossip_flush_interval_ms);
    p.pump();
    let a_key = p.a.key;
    let items: Vec<Event> =
        p.b.events()
            .into_iter()
            .filter(|e| matches!(e, Event::Item { .. }))
            .collect();
    assert_eq!(
        items,
        vec![Event::Item {
            id,
            item: item.clone(),
            from: a_key
        }]
    );
    // Again: already seen, nothing new.
    p.a.proto.relay(id, item);
    p.tick(Config::default().gossip_flush_interval_ms);
    p.pump();
    assert!(!p.b.events().iter().any(|e| matches!(e, Event::Item { .. })));
}

#[test]
fn announced_item_is_pulled() {
    // A fanout of 0 pushes to no one: every peer is only announced to.
    let cfg = Config {
        gossip_fanout: 0,
        ..Config::default()
    };
    let mut p = Pair::new(cfg, Config::default());
    p.pump();
    let item = vec![7u8; 300];
    let id = *blake3::hash(&item).as_bytes();
    p.a.proto.broadcast(id, item.clone());
    p.tick(Config::default().gossip_flush_interval_ms);
    p.pump();
    assert!(p.b.events().contains(&Event::Item {
        id,
        item,
        from: p.a.key
    }));
    assert_eq!(p.b.shared.stats.items_new.load(Ordering::Relaxed), 1);
}

#[test]
fn request_and_response_round_trip() {
    let mut p = Pair::connected();
    let (a_key, b_key) = (p.a.key, p.b.key);
    p.a.proto.request(b_key, 9, b"question", p.now);
    p.pump();
    assert!(p.b.events().contains(&Event::Request {
        from: a_key,
        request_id: 9,
        payload: b"question".to_vec()
    }));
    p.b.proto.respond(a_key, 9, b"answer");
    p.pump();
    assert!(p.a.events().contains(&Event::Response {
        from: b_key,
        request_id: 9,
        payload: b"answer".to_vec()
    }));
    // Answered: its deadline passes without a failure.
    p.tick(Config::default().request_timeout_ms + 10);
    assert!(!p
        .a
        .events()
        .iter()
        .any(|e| matches!(e, Event::RequestFailed { .. })));
}

#[test]
fn request_deadline_expiry_fails_it_and_a_late_response_is_unsolicited() {
    let mut p = Pair::connected();
    let (a_key, b_key) = (p.a.key, p.b.key);
    p.a.proto.request(b_key, 5, b"slow", p.now);
    p.pump();
    p.a.events();
    let timeout = Config::default().request_timeout_ms;
    p.tick(timeout);
    assert!(
        !p.a.events()
            .iter()
            .any(|e| matches!(e, Event::RequestFailed { .. })),
        "not before the timeout"
    );
    p.tick(3);
    assert!(p.a.events().contains(&Event::RequestFailed {
        to: b_key,
        request_id: 5,
        reason: RequestFailure::TimedOut
    }));
    p.b.proto.respond(a_key, 5, b"too late");
    p.pump();
    assert!(!p
        .a
        .events()
        .iter()
        .any(|e| matches!(e, Event::Response { .. })));
    // Scored, not closed: an unsolicited response costs 20 points.
    p.a.proto.publish_peers_if_changed();
    assert_eq!(p.a.shared.peers.lock().expect("peers")[0].score, -20);
    assert!(p.a.closes().is_empty());
}

#[test]
fn request_to_an_unknown_peer_fails_at_once() {
    let mut p = Pair::connected();
    p.a.proto.request([9; 32], 1, b"?", p.now);
    assert!(p.a.events().contains(&Event::RequestFailed {
        to: [9; 32],
        request_id: 1,
        reason: RequestFailure::NotConnected
    }));
}

#[test]
fn pending_requests_fail_when_the_connection_closes() {
    let mut p = Pair::connected();
    let b_key = p.b.key;
    p.a.proto.request(b_key, 3, b"x", p.now);
    p.a.events();
    // The driver lost the connection (the peer hung up).
    p.a.proto.close(p.ab);
    let ev = p.a.events();
    assert!(ev.contains(&Event::RequestFailed {
        to: b_key,
        request_id: 3,
        reason: RequestFailure::PeerGone
    }));
    assert!(ev.contains(&Event::PeerDown { node_key: b_key }));
    assert_eq!(p.a.closes(), vec![p.ab]);
}

#[test]
fn garbage_before_the_handshake_bans_the_ip_and_closes() {
    let mut b = SimNode::new(2, Config::default());
    let remote: SocketAddr = "10.0.0.66:5000".parse().expect("address");
    let id = b.proto.on_accepted(remote, 1).expect("admitted");
    b.proto
        .on_bytes(id, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    assert_eq!(b.closes(), vec![id]);
    assert_eq!(b.shared.stats.bans.load(Ordering::Relaxed), 1);
    assert_eq!(b.shared.stats.peers_dropped.load(Ordering::Relaxed), 1);
    // The IP is banned: a new connection from it is refused at accept
    // (no peer is reserved).
    let again: SocketAddr = "10.0.0.66:5001".parse().expect("address");
    assert!(b.proto.on_accepted(again, 2).is_none());
    assert_eq!(b.shared.stats.accepts_refused.load(Ordering::Relaxed), 1);
}

#[test]
fn wrong_chain_is_refused() {
    let other = Config {
        chain_id: [42; 32],
        ..Config::default()
    };
    let mut p = Pair::new(Config::default(), other);
    p.pump();
    assert_eq!(p.b.closes(), vec![p.ba]);
    assert_eq!(
        p.b.shared.stats.handshakes_refused.load(Ordering::Relaxed),
        1
    );
    assert!(!p
        .b
        .events()
        .iter()
        .any(|e| matches!(e, Event::PeerUp { .. })));
}

#[test]
fn application_message_during_the_handshake_is_a_violation() {
    let mut b = SimNode::new(2, Config::default());
    let remote: SocketAddr = "10.0.0.9:5000".parse().expect("address");
    let id = b.proto.on_accepted(remote, 1).expect("admitted");
    b.proto.on_bytes(id, &frame(&Message::Ping(1), 0), 1);
    assert_eq!(b.closes(), vec![id]);
    assert_eq!(b.shared.stats.bans.load(Ordering::Relaxed), 1);
}

#[test]
fn silent_handshake_times_out() {
    let mut b = SimNode::new(2, Config::default());
    let remote: SocketAddr = "10.0.0.9:5000".parse().expect("address");
    let id = b.proto.on_accepted(remote, 1).expect("admitted");
    // Accepted at 1 ms: the deadline is 1 ms + the timeout.
    b.proto.on_tick(Config::default().handshake_timeout_ms);
    assert!(b.closes().is_empty(), "not before the deadline");
    b.proto.on_tick(1 + Config::default().handshake_timeout_ms);
    assert_eq!(b.closes(), vec![id]);
}

#[test]
fn handshake_slots_per_ip_are_bounded() {
    let cfg = Config {
        handshakes_per_ip_max: 2,
        ..Config::default()
    };
    let mut b = SimNode::new(2, cfg);
    for port in 0..2 {
        let remote = SocketAddr::from(([10, 0, 0, 9], 5000 + port));
        assert!(b.proto.on_accepted(remote, 1).is_some());
    }
    assert!(b
        .proto
        .on_accepted("10.0.0.9:6000".parse().expect("a"), 1)
        .is_none());
    assert!(b
        .proto
        .on_accepted("10.0.0.10:6000".parse().expect("a"), 1)
        .is_some());
}

#[test]
fn unanswered_pings_time_out() {
    let mut p = Pair::connected();
    let cfg = Config::default();
    // The ping goes out; its pong is never delivered.
    p.tick(cfg.ping_interval_ms);
    let ping = p.a.output(p.ab);
    assert!(!ping.is_empty());
    p.tick(cfg.pong_timeout_ms);
    assert!(p.a.closes().is_empty(), "not at the deadline");
    p.tick(1);
    // 25 points and closed: the connection is dropped, the peer not banned.
    assert_eq!(p.a.closes(), vec![p.ab]);
    assert_eq!(p.a.shared.stats.bans.load(Ordering::Relaxed), 0);
    assert!(p
        .a
        .events()
        .contains(&Event::PeerDown { node_key: p.b.key }));
}

#[test]
fn answered_pings_keep_the_connection() {
    let mut p = Pair::connected();
    let cfg = Config::default();
    for _ in 0..4 {
        p.tick(cfg.ping_interval_ms);
        p.pump();
        p.tick(cfg.pong_timeout_ms + 1);
    }
    assert!(p.a.closes().is_empty() && p.b.closes().is_empty());
}

#[test]
fn pushes_beyond_the_rate_limit_ban_the_flooder() {
    let cfg = Config {
        push_items_per_s: 2,
        ..Config::default()
    };
    let mut p = Pair::new(Config::default(), cfg);
    p.pump();
    // `a` floods `b` by hand: every push past the first holds items over
    // the budget, at 10 points each, and a score of -100 bans.
    let mut n = 0u32;
    let mut floods = 0;
    while p.b.closes().is_empty() {
        assert!(floods < 20, "never banned");
        let items: Vec<Vec<u8>> = (0..4)
            .map(|_| {
                n += 1;
                n.to_le_bytes().to_vec()
            })
            .collect();
        p.b.proto.on_bytes(p.ba, &push_frame(&items), p.now);
        floods += 1;
    }
    assert_eq!(floods, 10);
    assert_eq!(p.b.shared.stats.bans.load(Ordering::Relaxed), 1);
    assert!(p.b.shared.stats.items_rate_limited.load(Ordering::Relaxed) > 0);
    // Banned by its proven key: it cannot come back.
    let mut c = SimNode::new(1, Config::default());
    c.proto.on_command(Command::Dial(p.b.addr), p.now);
    let mut dials = Vec::new();
    c.proto.take_dials(&mut dials);
    let cb = dials[0].0;
    let bc =
        p.b.proto
            .on_accepted("10.0.0.1:40001".parse().expect("a"), p.now)
            .expect("the IP is not banned");
    c.proto.on_connected(cb, p.now);
    let hello = c.output(cb);
    p.b.proto.on_bytes(bc, &hello, p.now);
    assert_eq!(p.b.closes(), vec![bc]);
}

#[test]
fn item_whose_id_is_not_its_hash_bans() {
    let mut p = Pair::connected();
    let mut buf = Vec::new();
    write_item(&mut buf, &[0; 32], b"not the preimage");
    let f = frame(&Message::Push(Items::from_encoded(1, &buf)), 0);
    p.b.proto.on_bytes(p.ba, &f, p.now);
    assert_eq!(p.b.closes(), vec![p.ba]);
    assert_eq!(p.b.shared.stats.bans.load(Ordering::Relaxed), 1);
    assert!(!p.b.events().iter().any(|e| matches!(e, Event::Item { .. })));
}

#[test]
fn unsolicited_pull_response_is_scored() {
    let mut p = Pair::connected();
    let item = b"never asked for".to_vec();
    let mut buf = Vec::new();
    write_item(&mut buf, blake3::hash(&item).as_bytes(), &item);
    let f = frame(&Message::PullResponse(Items::from_encoded(1, &buf)), 0);
    p.b.proto.on_bytes(p.ba, &f, p.now);
    p.b.proto.publish_peers_if_changed();
    assert_eq!(p.b.shared.peers.lock().expect("peers")[0].score, -20);
    assert!(!p.b.events().iter().any(|e| matches!(e, Event::Item { .. })));
}

#[test]
fn a_peer_that_does_not_read_is_dropped() {
    let mut p = Pair::connected();
    let b_key = p.b.key;
    let cap = Config::default().send_queue_bytes_max;
    let chunk = vec![0u8; 1 << 20];
    // Nothing is taken from a's queue: b is not reading.
    for _ in 0..cap / chunk.len() + 1 {
        p.a.proto.send(b_key, &chunk);
    }
    assert_eq!(p.a.closes(), vec![p.ab]);
    assert!(p.a.events().contains(&Event::PeerDown { node_key: b_key }));
}

#[test]
fn frames_split_anywhere_are_reassembled() {
    let mut p = Pair::connected();
    let (a_key, b_key) = (p.a.key, p.b.key);
    let payload = vec![5u8; 5000];
    p.a.proto.request(b_key, 11, &payload, p.now);
    let bytes = p.a.output(p.ab);
    for chunk in bytes.chunks(7) {
        p.b.proto.on_bytes(p.ba, chunk, p.now);
    }
    assert!(p.b.events().contains(&Event::Request {
        from: a_key,
        request_id: 11,
        payload
    }));
}

#[test]
fn slot_is_reused_only_after_release() {
    let mut b = SimNode::new(2, Config::default());
    let first = b
        .proto
        .on_accepted("10.0.0.9:1".parse().expect("a"), 1)
        .expect("admitted");
    b.proto.close(first);
    assert_eq!(b.closes(), vec![first]);
    let second = b
        .proto
        .on_accepted("10.0.0.9:2".parse().expect("a"), 1)
        .expect("admitted");
    assert_ne!(first.slot, second.slot, "closed but not released");
    b.proto.release(first);
    let third = b
        .proto
        .on_accepted("10.0.0.9:3".parse().expect("a"), 1)
        .expect("admitted");
    assert_eq!(third.slot, first.slot);
    // Bytes for the old id are not the new connection's.
    let garbage = [0xAB; 64];
    b.proto.on_bytes(first, &garbage, 1);
    assert!(b.closes().is_empty());
    b.proto.on_bytes(third, &garbage, 1);
    assert_eq!(b.closes(), vec![third]);
}

#[test]
fn simultaneous_dials_keep_one_connection_on_both_sides() {
    let mut a = SimNode::new(1, Config::default());
    let mut b = SimNode::new(2, Config::default());
    let (ab1, ba1) = link(&mut a, &mut b, 40000, 1);
    let (ba2, ab2) = link(&mut b, &mut a, 40001, 1);
    pump(&mut a, &mut b, &[(ab1, ba1), (ab2, ba2)], 1);
    // Each side closes one connection, the same one: the one whose
    // initiator has the higher key.
    let (a_closed, b_closed) = (a.closes(), b.closes());
    assert_eq!(a_closed.len(), 1);
    assert_eq!(b_closed.len(), 1);
    let keep_first = a.key < b.key;
    assert_eq!(a_closed[0], if keep_first { ab2 } else { ab1 });
    assert_eq!(b_closed[0], if keep_first { ba2 } else { ba1 });
    // The peer stays up throughout: one PeerUp, no PeerDown.
    for (n, other) in [(&a, b.key), (&b, a.key)] {
        let ev = n.events();
        let ups = ev
            .iter()
            .filter(|e| matches!(e, Event::PeerUp { node_key, .. } if *node_key == other))
            .count();
        assert_eq!(ups, 1);
        assert!(!ev.iter().any(|e| matches!(e, Event::PeerDown { .. })));
    }
}

#[test]
fn full_inbound_slots_evict_only_a_misbehaving_peer() {
    let cfg = Config {
        inbound_peers_max: 1,
        ..Config::default()
    };
    let mut b = SimNode::new(2, cfg);
    let mut a = SimNode::new(1, Config::default());
    let (ab, ba) = link(&mut a, &mut b, 40000, 1);
    pump(&mut a, &mut b, &[(ab, ba)], 1);
    // A newcomer finds the one inbound slot taken by a well-behaved peer.
    let mut c = SimNode::new(3, Config::default());
    let (cb, bc) = link(&mut c, &mut b, 40000, 1);
    pump(&mut c, &mut b, &[(cb, bc)], 1);
    assert_eq!(b.closes(), vec![bc]);
    assert_eq!(b.shared.stats.peers_evicted.load(Ordering::Relaxed), 0);
    // Once that peer has misbehaved, the next newcomer takes its slot.
    let item = b"never asked for".to_vec();
    let mut buf = Vec::new();
    write_item(&mut buf, blake3::hash(&item).as_bytes(), &item);
    b.proto.on_bytes(
        ba,
        &frame(&Message::PullResponse(Items::from_encoded(1, &buf)), 0),
        1,
    );
    b.events();
    let mut d = SimNode::new(4, Config::default());
    let (db, bd) = link(&mut d, &mut b, 40000, 1);
    pump(&mut d, &mut b, &[(db, bd)], 1);
    assert_eq!(b.closes(), vec![ba]);
    assert_eq!(b.shared.stats.peers_evicted.load(Ordering::Relaxed), 1);
    let ev = b.events();
    assert!(ev.contains(&Event::PeerDown { node_key: a.key }));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::PeerUp { node_key, .. } if *node_key == d.key)));
}

#[test]
fn reserved_peers_are_dialed_beyond_the_outbound_limit_and_redialed() {
    let reserved: Vec<([u8; 32], SocketAddr)> = (2..5u8)
        .map(|n| {
            let key = Identity::from_seed([n; 32]).public();
            (key, format!("10.0.0.{n}:7000").parse().expect("address"))
        })
        .collect();
    let cfg = Config {
        outbound_peers_max: 1,
        reserved_dials: reserved.clone(),
        ..Config::default()
    };
    let mut a = SimNode::new(1, cfg);
    let mut now = 1_000;
    a.proto.on_tick(now);
    let mut dials = Vec::new();
    a.proto.take_dials(&mut dials);
    let mut to: Vec<SocketAddr> = dials.iter().map(|d| d.1).collect();
    to.sort();
    let want: Vec<SocketAddr> = reserved.iter().map(|r| r.1).collect();
    assert_eq!(to, want, "every reserved peer, beyond outbound_peers_max 1");

    // Dials under way are not repeated.
    for d in &dials {
        a.proto.on_dial_started(d.0);
    }
    now += 5 * crate::limits::RESERVED_REDIAL_MS;
    a.proto.on_tick(now);
    let mut again = Vec::new();
    a.proto.take_dials(&mut again);
    assert!(again.is_empty(), "{again:?}");

    // A failed dial is retried, but not before RESERVED_REDIAL_MS.
    a.proto.on_dial_failed(dials[0].0);
    a.proto.on_tick(now + 100);
    a.proto.take_dials(&mut again);
    assert_eq!(again.len(), 1, "the failed one only: {again:?}");
    assert_eq!(again[0].1, dials[0].1);
    a.proto.on_dial_failed(again[0].0);
    again.clear();
    a.proto
        .on_tick(now + 200 + crate::limits::RESERVED_REDIAL_MS / 2);
    a.proto.take_dials(&mut again);
    assert!(again.is_empty(), "redialed too soon: {again:?}");
    a.proto
        .on_tick(now + 200 + crate::limits::RESERVED_REDIAL_MS);
    a.proto.take_dials(&mut again);
    assert_eq!(again.len(), 1);
}

#[test]
fn a_connected_reserved_peer_is_not_dialed_again() {
    let b_key = Identity::from_seed([2; 32]).public();
    let b_addr: SocketAddr = "10.0.0.2:7000".parse().expect("address");
    let cfg_b = Config {
        reserved_dials: vec![(
            Identity::from_seed([1; 32]).public(),
            "10.0.0.1:7000".parse().expect("address"),
        )],
        ..Config::default()
    };
    let cfg_a = Config {
        reserved_dials: vec![(b_key, b_addr)],
        ..Config::default()
    };
    // `a` dialed `b`; `b` reserves `a` but only got `a`'s inbound connection.
    let mut p = Pair::new(cfg_a, cfg_b);
    p.pump();
    for _ in 0..30 {
        p.tick(100);
        p.pump();
        let mut dials = Vec::new();
        p.a.proto.take_dials(&mut dials);
        p.b.proto.take_dials(&mut dials);
        assert!(dials.is_empty(), "{dials:?}");
    }
}
