//! Who gets in, who gets banned, and for what (issue 17, findings 4, 6, 8,
//! 10 and 12), over real sockets on 127.0.0.1: a ban is keyed by a proven
//! key or else by IP; reserved peers (validators) get in whatever strangers
//! hold the inbound slots or however the IP is banned; a full node evicts
//! a misbehaving stranger for a newcomer; a connection buffers no more than
//! a handshake message before it is authenticated; pull responses carry
//! only what was pulled.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use strata_net::frame::Header;
use strata_net::handshake::{Identity, PROTOCOL_VERSION};
use strata_net::message::{write_item, Hello, Items, Message};
use strata_net::{Config, Event, Handle, Node};

fn start_as(cfg: Config, seed: u8) -> Handle {
    Node::start(cfg, Identity::from_seed([seed; 32])).expect("node starts")
}

fn key_of(seed: u8) -> [u8; 32] {
    Identity::from_seed([seed; 32]).public()
}

fn bans(h: &Handle) -> u64 {
    h.stats().bans.load(Ordering::Relaxed)
}

fn has_peer(h: &Handle, key: &[u8; 32]) -> bool {
    h.peers().iter().any(|p| p.node_key == *key)
}

/// A hello claiming `victim`'s key, then a zero signature: what anyone can
/// send, since node keys are public.
fn spoof_hello(target: &Handle, victim: [u8; 32]) {
    let mut s = TcpStream::connect(target.local_addr()).unwrap();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        chain_id: CHAIN,
        node_key: victim,
        challenge: [7; 32],
        listen_port: 0,
    };
    let mut w = Vec::new();
    Message::Hello(hello).encode_frame(0, &mut w);
    Message::Auth([0; 64]).encode_frame(0, &mut w);
    s.write_all(&w).unwrap();
    assert!(closed_by_node(&mut s, Duration::from_secs(5)));
}

/// Regression (finding 4): the ban was keyed by the key a peer *claimed*
/// in its hello, before it proved it, so a hello with a validator's public
/// key and a zero signature banned that validator for 10 minutes.
#[test]
fn a_spoofed_hello_does_not_get_the_claimed_key_banned() {
    let victim_key = key_of(0x11);
    let mut c = config();
    c.reserved_peers = vec![victim_key];
    let target = start(c);
    let before = bans(&target);
    spoof_hello(&target, victim_key);
    assert!(wait_until(Duration::from_secs(5), || bans(&target) > before));
    // The real owner of the key connects and is admitted.
    let mut c = config();
    c.seeds = vec![target.local_addr()];
    let victim = start_as(c, 0x11);
    assert!(
        wait_until(Duration::from_secs(10), || has_peer(&target, &victim_key)),
        "the spoofed key was banned"
    );
    drop(victim);
}

/// Regression (finding 8): a ban of an unauthenticated peer was keyed by
/// ip:port, so reconnecting from a new port got in. Now the IP is banned:
/// a stranger from it is refused, while a reserved peer proving its key
/// still gets in.
#[test]
fn misbehaving_before_authentication_bans_the_ip_but_not_reserved_peers() {
    let reserved_key = key_of(0x22);
    let mut c = config();
    c.reserved_peers = vec![reserved_key];
    let target = start(c);
    let mut s = TcpStream::connect(target.local_addr()).unwrap();
    s.write_all(&[0xAB; 64]).unwrap();
    assert!(closed_by_node(&mut s, Duration::from_secs(5)));
    assert!(wait_until(Duration::from_secs(5), || bans(&target) >= 1));
    // A stranger from the same IP and a new port: refused.
    let mut p = RawPeer::connect(target.local_addr());
    p.send(
        &Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            chain_id: CHAIN,
            node_key: p.identity.public(),
            challenge: [9; 32],
            listen_port: 0,
        }),
        0,
    );
    assert!(
        closed_by_node(&mut p.stream, Duration::from_secs(5)),
        "a stranger from a banned IP was kept"
    );
    let mut c = config();
    c.seeds = vec![target.local_addr()];
    let stranger = start(c.clone());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!has_peer(&target, &stranger.node_key()));
    // The reserved peer from that same IP: admitted.
    let reserved = start_as(c, 0x22);
    assert!(
        wait_until(Duration::from_secs(10), || has_peer(&target, &reserved_key)),
        "a reserved peer was refused"
    );
    drop(reserved);
}

/// Regression (finding 6): strangers with fresh keys filled every inbound
/// slot and validators were then refused. Reserved peers do not count
/// against the limit, and a stranger beyond it is refused.
#[test]
fn a_reserved_peer_gets_in_when_strangers_hold_every_inbound_slot() {
    let reserved_key = key_of(0x33);
    let mut c = config();
    c.inbound_peers_max = 2;
    c.reserved_peers = vec![reserved_key];
    let target = start(c);
    let mut c = config();
    c.seeds = vec![target.local_addr()];
    let strangers: Vec<Handle> = (0..2).map(|_| start(c.clone())).collect();
    assert!(wait_until(Duration::from_secs(10), || target.peers().len() == 2));
    let reserved = start_as(c.clone(), 0x33);
    assert!(
        wait_until(Duration::from_secs(10), || has_peer(&target, &reserved_key)),
        "the reserved peer was refused"
    );
    let late = start(c);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !has_peer(&target, &late.node_key()),
        "a third stranger got in"
    );
    assert_eq!(target.peers().len(), 3);
    drop((strangers, reserved));
}

/// When the inbound slots are full, a newcomer takes the place of the
/// worst-scored stranger if that one misbehaved.
#[test]
fn a_misbehaving_stranger_is_evicted_for_a_newcomer() {
    let mut c = config();
    c.inbound_peers_max = 1;
    let target = start(c);
    let mut rude = RawPeer::connect(target.local_addr());
    rude.handshake(false);
    assert!(wait_until(Duration::from_secs(5), || target.peers().len() == 1));
    // A response to a request never made: a light penalty (score -20).
    rude.send(&Message::Response(b"unasked"), 77);
    assert!(wait_until(Duration::from_secs(5), || target
        .peers()
        .iter()
        .any(|p| p.score < 0)));
    let mut c = config();
    c.seeds = vec![target.local_addr()];
    let newcomer = start(c);
    assert!(
        wait_until(Duration::from_secs(10), || has_peer(
            &target,
            &newcomer.node_key()
        )),
        "the newcomer was refused"
    );
    assert!(closed_by_node(&mut rude.stream, Duration::from_secs(5)));
    assert!(target.stats().peers_evicted.load(Ordering::Relaxed) >= 1);
}

/// Regression (finding 12): before the handshake a connection could make
/// the node buffer a 4 MiB partial frame. Now a frame over the handshake
/// limit is refused from its header.
#[test]
fn a_large_frame_before_the_handshake_is_refused() {
    let target = start(config());
    let mut s = TcpStream::connect(target.local_addr()).unwrap();
    let head = Header {
        msg_type: 0x01,
        request_id: 0,
        payload_len: 4096,
        payload_crc: 0,
    }
    .encode();
    s.write_all(&head).unwrap();
    s.write_all(&[0u8; 1024]).unwrap();
    assert!(closed_by_node(&mut s, Duration::from_secs(5)));
    assert!(wait_until(Duration::from_secs(5), || bans(&target) >= 1));
}

/// Regression (finding 10): pull responses nobody asked for were taken
/// like any push and were not rate limited. Now one carrying no pulled id
/// is penalised and its items dropped.
#[test]
fn an_unsolicited_pull_response_is_penalised_and_dropped() {
    let target = start(config());
    let mut p = RawPeer::connect(target.local_addr());
    p.handshake(false);
    assert!(wait_until(Duration::from_secs(5), || target.peers().len() == 1));
    let item = b"never pulled".to_vec();
    let id = *blake3::hash(&item).as_bytes();
    let mut buf = Vec::new();
    write_item(&mut buf, &id, &item);
    p.send(&Message::PullResponse(Items::from_encoded(1, &buf)), 0);
    assert!(wait_until(Duration::from_secs(5), || target
        .peers()
        .iter()
        .any(|p| p.score < 0)));
    std::thread::sleep(Duration::from_millis(200));
    let mut events = Vec::new();
    drain(&target, &mut events);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Item { id: got, .. } if *got == id)),
        "an unsolicited item was delivered"
    );
}
