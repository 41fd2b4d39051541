//! Received bytes to handled frames: the per-connection frame decoder, the
//! score of a malformed stream, and the dispatch of each message.
//!
//! Payloads are borrowed from the driver's receive buffer; only a frame
//! split across receives is reassembled (by the decoder), and a request or
//! response so reassembled is moved into its event, not copied.

use std::sync::atomic::Ordering;

use super::requests::Opaque;
use super::{ConnId, Protocol};
use crate::error::Error;
use crate::frame::{FrameDecoder, Header};
use crate::limits::ADDRS_ANSWER_MAX;
use crate::message::{write_addr, Addrs, Message, MsgType};
use crate::peer::{Misbehaviour, PeerState};

impl Protocol {
    /// Handles bytes received on connection `id`, at `now_ms`: every whole
    /// frame in them (with what earlier receives left partial) is handled,
    /// until the connection closes. A malformed stream scores the peer and
    /// closes the connection.
    pub(crate) fn on_bytes(&mut self, id: ConnId, buf: &[u8], now_ms: u64) {
        self.now_ms = now_ms;
        let slot = id.slot;
        let Some(conn) = self.peer_mut(id) else {
            return;
        };
        if conn.closing {
            return;
        }
        let mut dec = std::mem::replace(&mut conn.decoder, FrameDecoder::new(0));
        let mut input: &[u8] = buf;
        loop {
            match dec.next(&mut input) {
                Ok(Some(f)) => {
                    self.shared.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                    let header = f.header;
                    // A payload that does not point into the receive buffer
                    // was reassembled by the decoder (a frame split across
                    // receives, as every 64 KiB one is). An opaque payload
                    // is then moved into its event instead of copied.
                    let reassembled =
                        !f.payload.is_empty() && !buf.as_ptr_range().contains(&f.payload.as_ptr());
                    // A request the responder will see is lent to it from
                    // the reassembly buffer rather than moved out, so the
                    // decoder keeps that buffer for the next large frame
                    // (a request it declines is then copied into its event).
                    let lent = self.responder.is_some()
                        && header.msg_type == MsgType::Request as u8
                        && header.request_id != 0;
                    let open = if !is_opaque(header.msg_type) {
                        self.on_frame(slot, header, f.payload)
                    } else if reassembled && !lent {
                        self.on_reassembled_opaque(slot, header, dec.take_payload())
                    } else {
                        self.on_borrowed_opaque(slot, header, f.payload)
                    };
                    if !open {
                        break;
                    }
                    // The frame may have completed the handshake: from the
                    // next frame on, the peer may send full-size ones.
                    if dec.payload_bytes_max() < self.cfg.frame_payload_bytes_max
                        && self.peers[slot]
                            .as_ref()
                            .is_some_and(|c| c.state == PeerState::Ready)
                    {
                        dec.set_payload_bytes_max(self.cfg.frame_payload_bytes_max);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let m = match e {
                        Error::BadMagic { .. } => Misbehaviour::BadMagic,
                        Error::FrameTooLarge { .. } => Misbehaviour::Oversize,
                        Error::BadChecksum { .. } => Misbehaviour::BadChecksum,
                        _ => Misbehaviour::Undecodable,
                    };
                    self.misbehave(slot, m);
                    break;
                }
            }
        }
        // Closing or not, the connection is this protocol's until the
        // driver releases it.
        let conn = self.peers[slot]
            .as_mut()
            .expect("released only by the driver");
        if dec.is_idle() {
            conn.partial_since_ms = 0;
        } else if conn.partial_since_ms == 0 {
            conn.partial_since_ms = now_ms.max(1);
        }
        conn.decoder = dec;
    }

    /// Handles one frame; returns false when the connection is closing.
    fn on_frame(&mut self, slot: usize, h: Header, payload: &[u8]) -> bool {
        let msg = match Message::decode(h.msg_type, payload) {
            Ok(m) => m,
            Err(_) => {
                self.misbehave(slot, Misbehaviour::Undecodable);
                return false;
            }
        };
        let conn = self.peers[slot].as_mut().expect("live slot");
        if conn.closing {
            return false;
        }
        if conn.state == PeerState::Handshaking {
            return self.on_handshake_msg(slot, msg);
        }
        match msg {
            Message::Hello(_) | Message::Auth(_) => {
                self.misbehave(slot, Misbehaviour::ProtocolViolation);
                return false;
            }
            Message::Ping(n) => {
                self.send_msg(slot, &Message::Pong(n), 0);
            }
            Message::Pong(n) => {
                if conn.awaiting_pong && n == conn.ping_nonce {
                    conn.awaiting_pong = false;
                }
            }
            Message::GetAddrs(max) => {
                let n = (max as usize).min(ADDRS_ANSWER_MAX);
                let sample = self.addr_book.sample(n, &mut self.rng);
                let mut buf = Vec::with_capacity(sample.len() * 19);
                for a in &sample {
                    write_addr(&mut buf, a);
                }
                self.send_msg(
                    slot,
                    &Message::Addrs(Addrs::from_encoded(sample.len(), &buf)),
                    0,
                );
            }
            Message::Addrs(addrs) => {
                for a in addrs.iter() {
                    self.addr_book.add(a);
                }
            }
            Message::Announce(ids) => self.on_announce(slot, ids),
            Message::Push(items) => return self.on_items(slot, items, false),
            Message::PullResponse(items) => return self.on_items(slot, items, true),
            Message::PullRequest(ids) => self.on_pull_request(slot, ids),
            Message::Quiet => conn.quiet = true,
            Message::Request(p) => self.on_opaque(slot, h, false, Opaque::Borrowed(p)),
            Message::Response(p) => self.on_opaque(slot, h, true, Opaque::Borrowed(p)),
        }
        self.is_open(slot)
    }

    /// Handles a request or response frame whose payload the decoder
    /// reassembled and handed over; returns false when the connection is
    /// closing. Anything but a ready connection takes the general path.
    fn on_reassembled_opaque(&mut self, slot: usize, h: Header, payload: Vec<u8>) -> bool {
        if !self.is_ready(slot) {
            return self.on_frame(slot, h, &payload);
        }
        let response = h.msg_type == MsgType::Response as u8;
        self.on_opaque(slot, h, response, Opaque::Owned(payload));
        self.is_open(slot)
    }

    /// Handles a request or response frame whose payload lies in the
    /// receive buffer; returns false when the connection is closing. The
    /// path every small request and response takes: straight to
    /// `on_opaque` for a ready connection, skipping the general decode and
    /// dispatch of `on_frame` (whose large stack frame showed in the
    /// 128-byte `net/loopback` profile).
    fn on_borrowed_opaque(&mut self, slot: usize, h: Header, payload: &[u8]) -> bool {
        if !self.is_ready(slot) {
            return self.on_frame(slot, h, payload);
        }
        let response = h.msg_type == MsgType::Response as u8;
        self.on_opaque(slot, h, response, Opaque::Borrowed(payload));
        self.is_open(slot)
    }

    fn is_ready(&self, slot: usize) -> bool {
        self.peers[slot]
            .as_ref()
            .is_some_and(|c| !c.closing && c.state == PeerState::Ready)
    }
}

/// True for the message types whose payload is opaque to this crate and
/// goes into an event whole: requests (and one-way messages) and responses.
fn is_opaque(msg_type: u8) -> bool {
    msg_type == MsgType::Request as u8 || msg_type == MsgType::Response as u8
}
