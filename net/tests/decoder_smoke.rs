//! Feeds pseudo-random bytes (and mutated valid frames) to every decoder:
//! they must return errors, never panic, and never buffer more than the limit.
//! The same checks run for much longer under `cargo fuzz` (net/fuzz).

use strata_net::frame::{decode_one, FrameDecoder};
use strata_net::handshake::{Handshake, Identity, Role};
use strata_net::message::{write_item, Items, Message};

const LIMIT: u32 = 64 * 1024;

fn feed(data: &[u8], split: usize) {
    let mut dec = FrameDecoder::new(LIMIT);
    for chunk in data.chunks(split.max(1)) {
        let mut input = chunk;
        loop {
            match dec.next(&mut input) {
                Ok(Some(f)) => {
                    let _ = Message::decode(f.header.msg_type, f.payload);
                }
                Ok(None) => break,
                Err(_) => return,
            }
            if input.is_empty() {
                break;
            }
        }
        assert!(dec.buffer_capacity() <= LIMIT as usize);
    }
    let _ = decode_one(data, LIMIT);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut buf = vec![0u8; 4096];
    for round in 0..2000 {
        let len = rng.usize(..buf.len());
        for b in &mut buf[..len] {
            *b = rng.u8(..);
        }
        feed(&buf[..len], 1 + round % 97);
        for t in 0..=255u8 {
            let _ = Message::decode(t, &buf[..len.min(300)]);
        }
    }
}

#[test]
fn mutated_frames_never_panic() {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut items = Vec::new();
    write_item(&mut items, &[1; 32], b"payload");
    write_item(&mut items, &[2; 32], &[9; 100]);
    let mut wire = Vec::new();
    Message::Push(Items::from_encoded(2, &items)).encode_frame(0, &mut wire);
    Message::Ping(1).encode_frame(0, &mut wire);
    for _ in 0..20_000 {
        let mut w = wire.clone();
        for _ in 0..1 + rng.usize(..4) {
            let i = rng.usize(..w.len());
            w[i] = rng.u8(..);
        }
        // Re-fix checksums half the time so the message decoders see the
        // mutated payloads too.
        if rng.usize(..2) == 0 {
            let (f, _) = match decode_one(&w, LIMIT) {
                Ok(x) => x,
                Err(_) => continue,
            };
            let _ = Message::decode(f.header.msg_type, f.payload);
        }
        feed(&w, 1 + rng.usize(..50));
    }
}

#[test]
fn random_handshake_messages_never_panic() {
    let id = Identity::from_seed([3; 32]);
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..2000 {
        let mut hs = Handshake::new(&id, [0; 32], Role::Responder, 0, [1; 32], 0, 1000);
        let mut b = [0u8; 100];
        for x in &mut b {
            *x = rng.u8(..);
        }
        b[2..34].fill(0); // right chain, so the key and signature paths run
        if let Ok(Message::Hello(h)) = Message::decode(0x01, &b) {
            let _ = hs.on_hello(&id, h);
        }
        let mut sig = [0u8; 64];
        for x in &mut sig {
            *x = rng.u8(..);
        }
        assert!(hs.on_auth(&sig).is_err());
    }
}
