//! Helpers shared by the socket tests (127.0.0.1 only).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use strata_net::frame::FrameDecoder;
use strata_net::handshake::{Handshake, Identity, Role};
use strata_net::message::Message;
use strata_net::{Config, Event, Handle, Node};

pub const CHAIN: [u8; 32] = [0x5a; 32];

pub fn config() -> Config {
    Config {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        chain_id: CHAIN,
        ..Config::default()
    }
}

pub fn start(cfg: Config) -> Handle {
    Node::start(cfg, Identity::generate().unwrap()).expect("node starts")
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

pub fn drain(h: &Handle, out: &mut Vec<Event>) {
    while let Some(e) = h.try_next_event() {
        out.push(e);
    }
}

/// True when the node closed the stream within `timeout`.
pub fn closed_by_node(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 65536];
    while t.elapsed() < timeout {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// A raw client that speaks the protocol by hand.
pub struct RawPeer {
    pub stream: TcpStream,
    pub identity: Identity,
    dec: FrameDecoder,
    pending: std::collections::VecDeque<(u8, Vec<u8>)>,
}

impl RawPeer {
    pub fn connect(addr: SocketAddr) -> RawPeer {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        RawPeer {
            stream,
            identity: Identity::generate().unwrap(),
            dec: FrameDecoder::new(64 << 20),
            pending: Default::default(),
        }
    }

    pub fn send(&mut self, m: &Message<'_>, rid: u64) {
        let mut w = Vec::new();
        m.encode_frame(rid, &mut w);
        self.stream.write_all(&w).unwrap();
    }

    /// Reads until a frame of `want` type arrives; returns its payload.
    /// Frames of other types are skipped.
    pub fn read_until(&mut self, want: u8) -> Vec<u8> {
        let mut buf = vec![0u8; 65536];
        loop {
            while let Some((t, p)) = self.pending.pop_front() {
                if t == want {
                    return p;
                }
            }
            let n = self.stream.read(&mut buf).expect("read");
            assert!(n > 0, "closed by node");
            let mut input = &buf[..n];
            while let Some(f) = self.dec.next(&mut input).expect("valid frames from node") {
                self.pending
                    .push_back((f.header.msg_type, f.payload.to_vec()));
            }
        }
    }

    /// Performs the handshake; `corrupt` flips a bit of our signature.
    pub fn handshake(&mut self, corrupt: bool) {
        let mut hs = Handshake::new(
            &self.identity,
            CHAIN,
            Role::Initiator,
            0,
            strata_net::handshake::random_bytes().unwrap(),
            0,
            10_000,
        );
        self.send(&Message::Hello(hs.hello()), 0);
        let p = self.read_until(0x01);
        let Ok(Message::Hello(theirs)) = Message::decode(0x01, &p) else {
            panic!("hello")
        };
        let mut sig = hs.on_hello(&self.identity, theirs).unwrap();
        if corrupt {
            sig[0] ^= 1;
        }
        self.send(&Message::Auth(sig), 0);
        if !corrupt {
            let p = self.read_until(0x02);
            let Ok(Message::Auth(s)) = Message::decode(0x02, &p) else {
                panic!("auth")
            };
            hs.on_auth(&s).unwrap();
        }
    }
}

/// Two connected nodes with their `PeerUp` events consumed.
pub fn connected_pair() -> (Handle, Handle) {
    connected_pair_with(config())
}

/// [`connected_pair`] with both nodes on `cfg` (`b` seeded with `a`).
pub fn connected_pair_with(cfg: Config) -> (Handle, Handle) {
    let a = start(cfg.clone());
    let mut c = cfg;
    c.seeds = vec![a.local_addr()];
    let b = start(c);
    for h in [&a, &b] {
        let up = h.next_event_timeout(Duration::from_secs(10));
        assert!(matches!(up, Some(Event::PeerUp { .. })), "{up:?}");
    }
    (a, b)
}

/// Node `b` (config `b_cfg`) answering requests with `responder` on its
/// I/O thread, and node `a` (config `a_cfg`, seeded with `b`) connected
/// to it: `(a, b)`.
pub fn connected_to_responder(
    a_cfg: Config,
    b_cfg: Config,
    responder: impl strata_net::Responder,
) -> (Handle, Handle) {
    let b = Node::start_with_responder(b_cfg, Identity::generate().unwrap(), responder)
        .expect("b starts");
    let mut a_cfg = a_cfg;
    a_cfg.seeds = vec![b.local_addr()];
    let a = start(a_cfg);
    assert!(
        wait_until(Duration::from_secs(10), || a.peers().len() == 1
            && b.peers().len() == 1),
        "the two nodes did not connect"
    );
    (a, b)
}
