//! Hostile peers against one node while an honest peer keeps exchanging
//! items with it. Each hostile connection must be dropped (and scored or
//! banned); the honest link must keep working throughout.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use strata_net::frame::Header;
use strata_net::message::{write_item, Items, Message};
use strata_net::{Event, Handle};

fn pair() -> (Handle, Handle) {
    let mut c = config();
    c.handshake_timeout_ms = 2_000;
    c.partial_frame_timeout_ms = 1_000;
    c.push_items_per_s = 200;
    c.frame_payload_bytes_max = 64 * 1024;
    c.send_queue_bytes_max = 128 * 1024;
    let target = start(c);
    let mut c = config();
    c.seeds = vec![target.local_addr()];
    let honest = start(c);
    assert!(wait_until(Duration::from_secs(5), || target.peers().len() == 1));
    (target, honest)
}

/// The honest peer still gets an item broadcast at the target.
fn honest_link_works(target: &Handle, honest: &Handle, tag: &str) {
    let id = target
        .broadcast(format!("still alive after {tag}").into_bytes())
        .unwrap();
    let mut seen = false;
    assert!(
        wait_until(Duration::from_secs(5), || {
            while let Some(e) = honest.try_next_event() {
                if matches!(e, Event::Item { id: got, .. } if got == id) {
                    seen = true;
                }
            }
            seen
        }),
        "honest peer stopped receiving after {tag}"
    );
}

fn dropped(h: &Handle) -> u64 {
    h.stats().peers_dropped.load(Ordering::Relaxed)
}

#[test]
fn garbage_bytes_are_dropped() {
    let (target, honest) = pair();
    let before = dropped(&target);
    let mut s = TcpStream::connect(target.local_addr()).unwrap();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&garbage);
    assert!(closed_by_node(&mut s, Duration::from_secs(3)));
    assert!(dropped(&target) > before);
    honest_link_works(&target, &honest, "garbage");
}

#[test]
fn four_gib_length_claim_is_dropped() {
    let (target, honest) = pair();
    let mut s = TcpStream::connect(target.local_addr()).unwrap();
    let head = Header {
        msg_type: 0x11,
        request_id: 0,
        payload_len: u32::MAX,
        payload_crc: 0,
    }
    .encode();
    s.write_all(&head).unwrap();
    assert!(closed_by_node(&mut s, Duration::from_secs(3)));
    assert!(target.stats().bans.load(Ordering::Relaxed) >= 1);
    honest_link_works(&target, &honest, "4 GiB claim");
}

#[test]
fn slowloris_is_dropped() {
    let (target, honest) = pair();
    let mut s = TcpStream::connect(target.local_addr()).unwrap();
    let mut hello = Vec::new();
    Message::Ping(1).encode_frame(0, &mut hello);
    // One byte every 200 ms: the 2 s handshake deadline ends it.
    let mut closed = false;
    for b in hello.iter().cycle().take(30) {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        if closed_by_node(&mut s, Duration::from_millis(200)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "slowloris kept its connection");
    honest_link_works(&target, &honest, "slowloris");
}

#[test]
fn bad_handshake_signature_is_banned() {
    let (target, honest) = pair();
    let mut p = RawPeer::connect(target.local_addr());
    p.handshake(true);
    assert!(closed_by_node(&mut p.stream, Duration::from_secs(3)));
    assert!(target.stats().bans.load(Ordering::Relaxed) >= 1);
    assert_eq!(target.peers().len(), 1);
    honest_link_works(&target, &honest, "bad signature");
}

#[test]
fn flood_beyond_rate_limit_is_banned() {
    let (target, honest) = pair();
    let mut p = RawPeer::connect(target.local_addr());
    p.handshake(false);
    assert!(wait_until(Duration::from_secs(3), || target.peers().len() == 2));
    // 200 items/s allowed; send 40 pushes of 100 distinct items at once.
    let mut closed = false;
    for m in 0..40u32 {
        let mut buf = Vec::new();
        for k in 0..100u32 {
            let item = format!("flood {m} {k}");
            write_item(
                &mut buf,
                blake3::hash(item.as_bytes()).as_bytes(),
                item.as_bytes(),
            );
        }
        let mut w = Vec::new();
        Message::Push(Items::from_encoded(100, &buf)).encode_frame(0, &mut w);
        if p.stream.write_all(&w).is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed || closed_by_node(&mut p.stream, Duration::from_secs(3)));
    assert!(target.stats().items_rate_limited.load(Ordering::Relaxed) > 0);
    assert!(target.stats().bans.load(Ordering::Relaxed) >= 1);
    honest_link_works(&target, &honest, "flood");
}

#[test]
fn junk_under_a_real_id_is_banned_and_the_real_item_still_arrives() {
    let (target, honest) = pair();
    let mut p = RawPeer::connect(target.local_addr());
    p.handshake(false);
    assert!(wait_until(Duration::from_secs(3), || target.peers().len() == 2));
    let real = b"a transaction the liar saw elsewhere".to_vec();
    let real_id = *blake3::hash(&real).as_bytes();
    let mut buf = Vec::new();
    write_item(&mut buf, &real_id, b"junk");
    let mut w = Vec::new();
    Message::Push(Items::from_encoded(1, &buf)).encode_frame(0, &mut w);
    let _ = p.stream.write_all(&w);
    assert!(closed_by_node(&mut p.stream, Duration::from_secs(3)));
    assert!(target.stats().bans.load(Ordering::Relaxed) >= 1);
    // The honest peer pushes the real item: the target takes it (its seen
    // cache did not record the liar's id).
    let id = honest.broadcast(real.clone()).unwrap();
    assert_eq!(id, real_id);
    let mut got = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            while let Some(e) = target.try_next_event() {
                if let Event::Item { id, item, .. } = e {
                    if id == real_id {
                        got = Some(item);
                    }
                }
            }
            got.is_some()
        }),
        "the real item never arrived after the junk"
    );
    assert_eq!(got.unwrap(), real);
    honest_link_works(&target, &honest, "id mismatch");
}

#[test]
fn never_reading_peer_is_dropped() {
    let (target, honest) = pair();
    let mut p = RawPeer::connect(target.local_addr());
    p.handshake(false);
    assert!(wait_until(Duration::from_secs(3), || target.peers().len() == 2));
    let before = dropped(&target);
    // The raw peer never reads again. Pushes and announces to it pile up in
    // the kernel buffers and then in its 128 KiB send queue.
    let mut k = 0u32;
    let ok = wait_until(Duration::from_secs(30), || {
        for _ in 0..16 {
            let mut item = vec![0u8; 16 * 1024];
            item[..4].copy_from_slice(&k.to_le_bytes());
            k += 1;
            let _ = target.broadcast(item);
        }
        target.peers().len() == 1 && dropped(&target) > before
    });
    assert!(ok, "never-reading peer not dropped after {k} items");
    honest_link_works(&target, &honest, "never-reading peer");
    drop(p);
}
