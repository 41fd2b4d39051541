//! Typed messages carried in frame payloads. Decoding borrows from the
//! payload (no allocation); every count is checked against the payload's
//! actual length and against [`crate::limits`] before it is used.
//!
//! Payload layouts (all integers little-endian; see `docs/protocol.md`):
//! - `Hello`: version u16, chain_id `[32]`, node_key `[32]`, challenge `[32]`,
//!   listen_port u16 (0 = not listening) — 100 bytes.
//! - `Auth`: signature `[64]`.
//! - `Ping`/`Pong`: nonce u64.
//! - `GetAddrs`: max u16.
//! - `Addrs`: count u16, then per address: family u8 (4 or 6), ip (4 or 16
//!   bytes), port u16.
//! - `Announce`/`PullRequest`: count u16, then count × id `[32]`.
//! - `Push`/`PullResponse`: count u16, then per item: id `[32]`, len u32, bytes.
//! - `Request`/`Response`: opaque bytes; the frame's request id pairs them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{Error, Result};
use crate::frame;
use crate::limits::{
    ADDRS_PER_MESSAGE_MAX, IDS_PER_MESSAGE_MAX, ITEMS_PER_MESSAGE_MAX, ITEM_BYTES_MAX,
};

/// A 32-byte item id (a blake3 hash of the item).
pub type ItemId = [u8; 32];

/// Message type bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum MsgType {
    Hello = 0x01,
    Auth = 0x02,
    Ping = 0x03,
    Pong = 0x04,
    GetAddrs = 0x05,
    Addrs = 0x06,
    Announce = 0x10,
    Push = 0x11,
    PullRequest = 0x12,
    PullResponse = 0x13,
    Quiet = 0x14,
    Request = 0x20,
    Response = 0x21,
}

impl MsgType {
    /// Parses a type byte.
    pub fn from_u8(b: u8) -> Result<MsgType> {
        Ok(match b {
            0x01 => MsgType::Hello,
            0x02 => MsgType::Auth,
            0x03 => MsgType::Ping,
            0x04 => MsgType::Pong,
            0x05 => MsgType::GetAddrs,
            0x06 => MsgType::Addrs,
            0x10 => MsgType::Announce,
            0x11 => MsgType::Push,
            0x12 => MsgType::PullRequest,
            0x13 => MsgType::PullResponse,
            0x14 => MsgType::Quiet,
            0x20 => MsgType::Request,
            0x21 => MsgType::Response,
            other => return Err(Error::UnknownMessageType(other)),
        })
    }
}

/// Size of a `Hello` payload.
pub const HELLO_BYTES: usize = 2 + 32 + 32 + 32 + 2;
/// Size of an `Auth` payload.
pub const AUTH_BYTES: usize = 64;

/// The first handshake message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version spoken.
    pub version: u16,
    /// Chain id.
    pub chain_id: [u8; 32],
    /// The sender's ed25519 node key.
    pub node_key: [u8; 32],
    /// A fresh random challenge.
    pub challenge: [u8; 32],
    /// Port the sender listens on (0 if none), for peer exchange.
    pub listen_port: u16,
}

impl Hello {
    /// The 100-byte payload.
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut b = [0u8; HELLO_BYTES];
        b[0..2].copy_from_slice(&self.version.to_le_bytes());
        b[2..34].copy_from_slice(&self.chain_id);
        b[34..66].copy_from_slice(&self.node_key);
        b[66..98].copy_from_slice(&self.challenge);
        b[98..100].copy_from_slice(&self.listen_port.to_le_bytes());
        b
    }
}

/// A decoded message, borrowing from the frame payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Handshake hello.
    Hello(Hello),
    /// Handshake signature.
    Auth([u8; 64]),
    /// Liveness probe.
    Ping(u64),
    /// Liveness answer.
    Pong(u64),
    /// Ask for up to `max` addresses.
    GetAddrs(u16),
    /// Addresses (validated).
    Addrs(Addrs<'a>),
    /// Ids the sender has.
    Announce(Ids<'a>),
    /// Pushed items.
    Push(Items<'a>),
    /// Ids the sender wants.
    PullRequest(Ids<'a>),
    /// Items answering a pull.
    PullResponse(Items<'a>),
    /// "Send me no gossip": neither pushed items nor announcements. A
    /// client (the bench) that only makes requests sends it once after the
    /// handshake; the peer still answers its pulls and requests.
    Quiet,
    /// Opaque request; answer with the same request id.
    Request(&'a [u8]),
    /// Opaque response.
    Response(&'a [u8]),
}

struct Cursor<'a> {
    b: &'a [u8],
    kind: &'static str,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Error::Malformed {
                kind: self.kind,
                reason: "payload too short",
            });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    #[inline]
    fn u16(&mut self) -> Result<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    #[inline]
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    #[inline]
    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn end(&self) -> Result<()> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed {
                kind: self.kind,
                reason: "trailing bytes",
            })
        }
    }
}

fn count(c: &mut Cursor<'_>, limit: u32) -> Result<usize> {
    let n = c.u16()?;
    if u32::from(n) > limit {
        return Err(Error::TooManyEntries {
            kind: c.kind,
            count: u32::from(n),
            limit,
        });
    }
    Ok(n as usize)
}

impl<'a> Message<'a> {
    /// Decodes a payload of the given type. Never panics, never allocates.
    pub fn decode(msg_type: u8, payload: &'a [u8]) -> Result<Message<'a>> {
        let t = MsgType::from_u8(msg_type)?;
        let kind = match t {
            MsgType::Hello => "hello",
            MsgType::Auth => "auth",
            MsgType::Ping => "ping",
            MsgType::Pong => "pong",
            MsgType::GetAddrs => "get_addrs",
            MsgType::Addrs => "addrs",
            MsgType::Announce => "announce",
            MsgType::Push => "push",
            MsgType::PullRequest => "pull_request",
            MsgType::PullResponse => "pull_response",
            MsgType::Quiet => "quiet",
            MsgType::Request => "request",
            MsgType::Response => "response",
        };
        let mut c = Cursor { b: payload, kind };
        let m = match t {
            MsgType::Hello => Message::Hello(Hello {
                version: c.u16()?,
                chain_id: c.arr()?,
                node_key: c.arr()?,
                challenge: c.arr()?,
                listen_port: c.u16()?,
            }),
            MsgType::Auth => Message::Auth(c.arr()?),
            MsgType::Ping => Message::Ping(u64::from_le_bytes(c.arr()?)),
            MsgType::Pong => Message::Pong(u64::from_le_bytes(c.arr()?)),
            MsgType::GetAddrs => Message::GetAddrs(c.u16()?),
            MsgType::Addrs => {
                let n = count(&mut c, ADDRS_PER_MESSAGE_MAX)?;
                let start = c.b;
                for _ in 0..n {
                    read_addr(&mut c)?;
                }
                let used = start.len() - c.b.len();
                Message::Addrs(Addrs {
                    count: n,
                    bytes: &start[..used],
                })
            }
            MsgType::Announce | MsgType::PullRequest => {
                let n = count(&mut c, IDS_PER_MESSAGE_MAX)?;
                let ids = Ids {
                    bytes: c.take(n * 32)?,
                };
                if t == MsgType::Announce {
                    Message::Announce(ids)
                } else {
                    Message::PullRequest(ids)
                }
            }
            MsgType::Push | MsgType::PullResponse => {
                let n = count(&mut c, ITEMS_PER_MESSAGE_MAX)?;
                let start = c.b;
                for _ in 0..n {
                    c.take(32)?;
                    let len = c.u32()?;
                    if len > ITEM_BYTES_MAX {
                        return Err(Error::Malformed {
                            kind,
                            reason: "item above ITEM_BYTES_MAX",
                        });
                    }
                    c.take(len as usize)?;
                }
                let used = start.len() - c.b.len();
                let items = Items {
                    count: n,
                    bytes: &start[..used],
                };
                if t == MsgType::Push {
                    Message::Push(items)
                } else {
                    Message::PullResponse(items)
                }
            }
            MsgType::Quiet => Message::Quiet,
            MsgType::Request => return Ok(Message::Request(payload)),
            MsgType::Response => return Ok(Message::Response(payload)),
        };
        c.end()?;
        Ok(m)
    }

    /// The message type byte.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Hello(_) => MsgType::Hello,
            Message::Auth(_) => MsgType::Auth,
            Message::Ping(_) => MsgType::Ping,
            Message::Pong(_) => MsgType::Pong,
            Message::GetAddrs(_) => MsgType::GetAddrs,
            Message::Addrs(_) => MsgType::Addrs,
            Message::Announce(_) => MsgType::Announce,
            Message::Push(_) => MsgType::Push,
            Message::PullRequest(_) => MsgType::PullRequest,
            Message::PullResponse(_) => MsgType::PullResponse,
            Message::Quiet => MsgType::Quiet,
            Message::Request(_) => MsgType::Request,
            Message::Response(_) => MsgType::Response,
        }
    }

    /// Appends this message as one frame to `out`.
    pub fn encode_frame(&self, request_id: u64, out: &mut Vec<u8>) {
        let start = frame::begin_frame(out, self.msg_type() as u8, request_id);
        match self {
            Message::Hello(h) => out.extend_from_slice(&h.encode()),
            Message::Auth(s) => out.extend_from_slice(s),
            Message::Ping(n) | Message::Pong(n) => out.extend_from_slice(&n.to_le_bytes()),
            Message::GetAddrs(n) => out.extend_from_slice(&n.to_le_bytes()),
            Message::Addrs(a) => {
                out.extend_from_slice(&(a.count as u16).to_le_bytes());
                out.extend_from_slice(a.bytes);
            }
            Message::Announce(ids) | Message::PullRequest(ids) => {
                out.extend_from_slice(&(ids.len() as u16).to_le_bytes());
                out.extend_from_slice(ids.bytes);
            }
            Message::Push(items) | Message::PullResponse(items) => {
                out.extend_from_slice(&(items.count as u16).to_le_bytes());
                out.extend_from_slice(items.bytes);
            }
            Message::Quiet => {}
            Message::Request(p) | Message::Response(p) => out.extend_from_slice(p),
        }
        frame::finish_frame(out, start);
    }
}

fn read_addr(c: &mut Cursor<'_>) -> Result<SocketAddr> {
    let fam = c.take(1)?[0];
    let ip = match fam {
        4 => IpAddr::V4(Ipv4Addr::from(c.arr::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(c.arr::<16>()?)),
        _ => {
            return Err(Error::Malformed {
                kind: "addrs",
                reason: "unknown address family",
            })
        }
    };
    Ok(SocketAddr::new(ip, c.u16()?))
}

/// Appends one address in wire form.
pub fn write_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_le_bytes());
}

/// A validated list of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs<'a> {
    count: usize,
    bytes: &'a [u8],
}

impl<'a> Addrs<'a> {
    /// Wraps addresses already encoded with [`write_addr`]; `count` must match.
    pub fn from_encoded(count: usize, bytes: &'a [u8]) -> Self {
        Addrs { count, bytes }
    }
    /// Number of addresses.
    pub fn len(&self) -> usize {
        self.count
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Iterates the addresses.
    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> + 'a {
        let mut c = Cursor {
            b: self.bytes,
            kind: "addrs",
        };
        // Validated at decode (or built by `write_addr`), so reads succeed.
        (0..self.count).map_while(move |_| read_addr(&mut c).ok())
    }
}

/// A validated list of ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids<'a> {
    bytes: &'a [u8],
}

impl<'a> Ids<'a> {
    /// Wraps concatenated 32-byte ids.
    ///
    /// # Panics
    /// If the length is not a multiple of 32.
    pub fn from_bytes(bytes: &'a [u8]) -> Self {
        assert!(bytes.len() % 32 == 0, "ids must be 32 bytes each");
        Ids { bytes }
    }
    /// Number of ids.
    pub fn len(&self) -> usize {
        self.bytes.len() / 32
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// Iterates the ids.
    pub fn iter(&self) -> impl Iterator<Item = &'a ItemId> + 'a {
        self.bytes.chunks_exact(32).map(|c| {
            c.try_into()
                .expect("chunks_exact(32) yields 32-byte chunks")
        })
    }
}

/// A validated list of `(id, item)` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Items<'a> {
    count: usize,
    bytes: &'a [u8],
}

impl<'a> Items<'a> {
    /// Wraps items encoded with [`write_item`]; `count` must match.
    pub fn from_encoded(count: usize, bytes: &'a [u8]) -> Self {
        Items { count, bytes }
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        self.count
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Iterates `(id, item bytes)`.
    pub fn iter(&self) -> ItemsIter<'a> {
        ItemsIter {
            rest: self.bytes,
            left: self.count,
        }
    }
}

/// Iterator over [`Items`].
#[derive(Debug)]
pub struct ItemsIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for ItemsIter<'a> {
    type Item = (&'a ItemId, &'a [u8]);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let mut c = Cursor {
            b: self.rest,
            kind: "items",
        };
        // Validated at decode; a short read ends the iteration.
        let id: &'a [u8; 32] = c.take(32).ok()?.try_into().ok()?;
        let len = c.u32().ok()?;
        let item = c.take(len as usize).ok()?;
        self.rest = c.b;
        self.left -= 1;
        Some((id, item))
    }
}

/// Appends one `(id, item)` in wire form.
pub fn write_item(out: &mut Vec<u8>, id: &ItemId, item: &[u8]) {
    out.extend_from_slice(id);
    out.extend_from_slice(&(item.len() as u32).to_le_bytes());
    out.extend_from_slice(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message<'_>, rid: u64) {
        let mut wire = Vec::new();
        m.encode_frame(rid, &mut wire);
        let (f, used) = frame::decode_one(&wire, 1 << 20).unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(f.header.request_id, rid);
        let back = Message::decode(f.header.msg_type, f.payload).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn every_message_round_trips() {
        let hello = Hello {
            version: 1,
            chain_id: [1; 32],
            node_key: [2; 32],
            challenge: [3; 32],
            listen_port: 9000,
        };
        round_trip(Message::Hello(hello), 0);
        round_trip(Message::Auth([9; 64]), 0);
        round_trip(Message::Ping(77), 0);
        round_trip(Message::Pong(77), 0);
        round_trip(Message::GetAddrs(32), 0);
        let mut ab = Vec::new();
        write_addr(&mut ab, &"127.0.0.1:9000".parse().unwrap());
        write_addr(&mut ab, &"[::1]:9001".parse().unwrap());
        let addrs = Addrs::from_encoded(2, &ab);
        round_trip(Message::Addrs(addrs), 0);
        assert_eq!(
            addrs.iter().collect::<Vec<_>>(),
            vec![
                "127.0.0.1:9000".parse::<SocketAddr>().unwrap(),
                "[::1]:9001".parse().unwrap()
            ]
        );
        let ids = [[5u8; 32], [6u8; 32]].concat();
        round_trip(Message::Announce(Ids::from_bytes(&ids)), 0);
        round_trip(Message::PullRequest(Ids::from_bytes(&ids)), 0);
        let mut ib = Vec::new();
        write_item(&mut ib, &[7; 32], b"item one");
        write_item(&mut ib, &[8; 32], b"");
        let items = Items::from_encoded(2, &ib);
        round_trip(Message::Push(items), 0);
        round_trip(Message::PullResponse(items), 0);
        let got: Vec<_> = items.iter().collect();
        assert_eq!(
            got,
            vec![(&[7u8; 32], &b"item one"[..]), (&[8u8; 32], &b""[..])]
        );
        round_trip(Message::Request(b"query"), 12);
        round_trip(Message::Response(b"answer"), 12);
        round_trip(Message::Quiet, 0);
    }

    #[test]
    fn counts_beyond_payload_are_malformed() {
        // Claims 4000 ids with none present.
        let p = 4000u16.to_le_bytes();
        assert!(matches!(
            Message::decode(0x10, &p),
            Err(Error::Malformed { .. })
        ));
        // Claims more than the limit.
        let p = u16::MAX.to_le_bytes();
        assert!(matches!(
            Message::decode(0x10, &p),
            Err(Error::TooManyEntries { .. })
        ));
        // Item claiming 4 GiB.
        let mut p = 1u16.to_le_bytes().to_vec();
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Message::decode(0x11, &p),
            Err(Error::Malformed { .. })
        ));
        // Trailing bytes.
        let mut p = 8u64.to_le_bytes().to_vec();
        p.push(0);
        assert!(matches!(
            Message::decode(0x03, &p),
            Err(Error::Malformed { .. })
        ));
        // Unknown type and bad family.
        assert!(matches!(
            Message::decode(0xEE, &[]),
            Err(Error::UnknownMessageType(0xEE))
        ));
        assert!(matches!(
            Message::decode(0x06, &[1, 0, 5, 0, 0]),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn truncations_of_every_message_are_errors() {
        let mut wire = Vec::new();
        let mut ib = Vec::new();
        write_item(&mut ib, &[7; 32], b"item one");
        Message::Push(Items::from_encoded(1, &ib)).encode_frame(0, &mut wire);
        let payload = &wire[frame::HEADER_BYTES..];
        for cut in 0..payload.len() {
            assert!(Message::decode(0x11, &payload[..cut]).is_err());
        }
        let h = Hello {
            version: 1,
            chain_id: [0; 32],
            node_key: [0; 32],
            challenge: [0; 32],
            listen_port: 0,
        }
        .encode();
        for cut in 0..h.len() {
            assert!(Message::decode(0x01, &h[..cut]).is_err());
        }
    }
}
