//! Frames: the unit on the wire.
//!
//! ```text
//! offset size field
//! 0      4    magic        u32 LE, MAGIC
//! 4      1    msg_type     u8
//! 5      8    request_id   u64 LE (0 when not a request/response)
//! 13     4    payload_len  u32 LE, <= the configured maximum
//! 17     4    payload_crc  u32 LE, crc32 (IEEE) of the payload
//! 21     n    payload
//! ```
//!
//! The [`FrameDecoder`] is incremental: feed it bytes as they arrive, split
//! anywhere. The header is validated (magic, then length against the limit)
//! before a single byte is allocated for the payload, and the checksum is
//! verified before the payload is handed out. When a whole frame sits in the
//! input slice it is returned borrowed from that slice (no copy, no
//! allocation); only frames split across reads are copied into the decoder's
//! reusable buffer, which grows to at most the largest frame seen.

use crate::error::{Error, Result};
use crate::limits::FRAME_PAYLOAD_BYTES_MAX_CEILING;

/// Frame magic: `"STR1"` read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"STR1");
/// Size of the frame header in bytes.
pub const HEADER_BYTES: usize = 21;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type byte (see [`crate::message::MsgType`]).
    pub msg_type: u8,
    /// Request id; 0 when the message is not part of a request/response.
    pub request_id: u64,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// crc32 of the payload.
    pub payload_crc: u32,
}

impl Header {
    /// Writes the header's 21 bytes.
    #[inline]
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4] = self.msg_type;
        out[5..13].copy_from_slice(&self.request_id.to_le_bytes());
        out[13..17].copy_from_slice(&self.payload_len.to_le_bytes());
        out[17..21].copy_from_slice(&self.payload_crc.to_le_bytes());
        out
    }

    /// Parses and validates a header: magic first, then the length against
    /// `payload_bytes_max`. Never allocates.
    #[inline]
    pub fn decode(bytes: &[u8; HEADER_BYTES], payload_bytes_max: u32) -> Result<Header> {
        let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if magic != MAGIC {
            return Err(Error::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        let mut rid = [0u8; 8];
        rid.copy_from_slice(&bytes[5..13]);
        let payload_len = u32::from_le_bytes([bytes[13], bytes[14], bytes[15], bytes[16]]);
        if payload_len > payload_bytes_max {
            return Err(Error::FrameTooLarge {
                claimed_bytes: u64::from(payload_len),
                limit_bytes: payload_bytes_max,
            });
        }
        Ok(Header {
            msg_type: bytes[4],
            request_id: u64::from_le_bytes(rid),
            payload_len,
            payload_crc: u32::from_le_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]),
        })
    }
}

/// A frame whose payload's checksum has been verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: Header,
    /// The payload (checksum verified).
    pub payload: &'a [u8],
}

/// Appends one frame to `out`. The payload must be at most `u32::MAX` bytes
/// (the receiver's limit is usually far lower).
pub fn encode_into(out: &mut Vec<u8>, msg_type: u8, request_id: u64, payload: &[u8]) {
    let payload_len = u32::try_from(payload.len()).expect("frame payload above u32::MAX bytes");
    let header = Header {
        msg_type,
        request_id,
        payload_len,
        payload_crc: crc32fast::hash(payload),
    };
    out.reserve(HEADER_BYTES + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
}

/// Starts a frame in `out` whose payload is written afterwards by the caller;
/// finish it with [`finish_frame`]. Returns the frame's start offset.
pub fn begin_frame(out: &mut Vec<u8>, msg_type: u8, request_id: u64) -> usize {
    let start = out.len();
    out.extend_from_slice(
        &Header {
            msg_type,
            request_id,
            payload_len: 0,
            payload_crc: 0,
        }
        .encode(),
    );
    start
}

/// Fills in the length and checksum of the frame begun at `start`.
pub fn finish_frame(out: &mut [u8], start: usize) {
    let payload = &out[start + HEADER_BYTES..];
    let len = u32::try_from(payload.len()).expect("frame payload above u32::MAX bytes");
    let crc = crc32fast::hash(payload);
    out[start + 13..start + 17].copy_from_slice(&len.to_le_bytes());
    out[start + 17..start + 21].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes exactly one frame from the front of `input`, returning it and the
/// number of bytes it used. A frame cut short is [`Error::Truncated`].
pub fn decode_one(input: &[u8], payload_bytes_max: u32) -> Result<(Frame<'_>, usize)> {
    let Some(head) = input.first_chunk::<HEADER_BYTES>() else {
        return Err(Error::Truncated {
            needed_bytes: HEADER_BYTES,
            got_bytes: input.len(),
        });
    };
    let header = Header::decode(head, payload_bytes_max)?;
    let total = HEADER_BYTES + header.payload_len as usize;
    if input.len() < total {
        return Err(Error::Truncated {
            needed_bytes: total,
            got_bytes: input.len(),
        });
    }
    let payload = &input[HEADER_BYTES..total];
    check_crc(&header, payload)?;
    Ok((Frame { header, payload }, total))
}

#[inline]
fn check_crc(header: &Header, payload: &[u8]) -> Result<()> {
    let actual = crc32fast::hash(payload);
    if actual != header.payload_crc {
        return Err(Error::BadChecksum {
            expected: header.payload_crc,
            actual,
        });
    }
    Ok(())
}

/// Incremental frame decoder for one connection.
#[derive(Debug)]
pub struct FrameDecoder {
    payload_bytes_max: u32,
    header_buf: [u8; HEADER_BYTES],
    header_filled: usize,
    /// The header of a frame whose payload is being accumulated.
    pending: Option<Header>,
    payload_buf: Vec<u8>,
    poisoned: bool,
}

impl FrameDecoder {
    /// A decoder refusing payloads above `payload_bytes_max` (clamped to
    /// [`FRAME_PAYLOAD_BYTES_MAX_CEILING`]).
    pub fn new(payload_bytes_max: u32) -> Self {
        FrameDecoder {
            payload_bytes_max: payload_bytes_max.min(FRAME_PAYLOAD_BYTES_MAX_CEILING),
            header_buf: [0; HEADER_BYTES],
            header_filled: 0,
            pending: None,
            payload_buf: Vec::new(),
            poisoned: false,
        }
    }

    /// Changes the payload limit for frames whose header has not been read
    /// yet (clamped to [`FRAME_PAYLOAD_BYTES_MAX_CEILING`]). The event loop
    /// starts every connection at the small handshake limit and raises it
    /// once the peer is authenticated, between two frames.
    pub fn set_payload_bytes_max(&mut self, payload_bytes_max: u32) {
        self.payload_bytes_max = payload_bytes_max.min(FRAME_PAYLOAD_BYTES_MAX_CEILING);
    }

    /// The current payload limit.
    pub fn payload_bytes_max(&self) -> u32 {
        self.payload_bytes_max
    }

    /// Bytes of a partial frame currently buffered.
    pub fn buffered_bytes(&self) -> usize {
        self.header_filled + self.payload_buf.len()
    }

    /// True when the decoder sits between frames (nothing partial buffered).
    pub fn is_idle(&self) -> bool {
        self.header_filled == 0 && self.pending.is_none()
    }

    /// Capacity of the reassembly buffer (for tests: it never exceeds the
    /// largest valid frame seen).
    pub fn buffer_capacity(&self) -> usize {
        self.payload_buf.capacity()
    }

    /// Takes the reassembly buffer. Right after [`FrameDecoder::next`]
    /// returned a frame whose payload it reassembled from several inputs
    /// (the payload does not point into the input), this is that payload,
    /// handed over without a copy; the decoder allocates a new buffer for
    /// the next frame that needs one. Taking it at any other time returns
    /// stale or empty bytes but does not disturb decoding.
    pub fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload_buf)
    }

    /// Decodes the next frame from `input`, advancing `input` past the bytes
    /// used. Returns `Ok(None)` when `input` is exhausted without completing a
    /// frame (the partial frame is kept). After an error the decoder is
    /// poisoned: the connection must be closed.
    pub fn next<'a, 'i: 'a>(&'a mut self, input: &mut &'i [u8]) -> Result<Option<Frame<'a>>> {
        if self.poisoned {
            return Err(Error::DecoderPoisoned);
        }
        self.next_inner(input)
    }

    #[inline]
    fn next_inner<'a, 'i: 'a>(&'a mut self, input: &mut &'i [u8]) -> Result<Option<Frame<'a>>> {
        // Fast path: between frames and a whole frame in the input.
        if self.header_filled == 0 && self.pending.is_none() {
            if let Some(head) = input.first_chunk::<HEADER_BYTES>() {
                let header = self.poison_on_err(Header::decode(head, self.payload_bytes_max))?;
                let total = HEADER_BYTES + header.payload_len as usize;
                if input.len() >= total {
                    let whole: &'i [u8] = input;
                    let payload = &whole[HEADER_BYTES..total];
                    *input = &whole[total..];
                    self.poison_on_err(check_crc(&header, payload))?;
                    return Ok(Some(Frame { header, payload }));
                }
                // The header is valid and the length within limits: buffer.
                self.header_buf.copy_from_slice(head);
                self.header_filled = HEADER_BYTES;
                *input = &input[HEADER_BYTES..];
                self.start_payload(header);
            }
        }
        // Slow path: accumulate the header, then the payload.
        if self.pending.is_none() {
            let need = HEADER_BYTES - self.header_filled;
            let take = need.min(input.len());
            self.header_buf[self.header_filled..self.header_filled + take]
                .copy_from_slice(&input[..take]);
            self.header_filled += take;
            *input = &input[take..];
            if self.header_filled < HEADER_BYTES {
                return Ok(None);
            }
            let header =
                self.poison_on_err(Header::decode(&self.header_buf, self.payload_bytes_max))?;
            self.start_payload(header);
        }
        let header = self.pending.expect("pending header set above");
        let need = header.payload_len as usize - self.payload_buf.len();
        let take = need.min(input.len());
        self.payload_buf.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.payload_buf.len() < header.payload_len as usize {
            return Ok(None);
        }
        self.pending = None;
        self.header_filled = 0;
        if let Err(e) = check_crc(&header, &self.payload_buf) {
            self.poisoned = true;
            return Err(e);
        }
        Ok(Some(Frame {
            header,
            payload: &self.payload_buf,
        }))
    }

    #[inline]
    fn poison_on_err<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn start_payload(&mut self, header: Header) {
        // The length was checked against the limit in `Header::decode`, so
        // this reservation is bounded by the configured maximum.
        self.payload_buf.clear();
        self.payload_buf.reserve(header.payload_len as usize);
        self.pending = Some(header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg_type: u8, rid: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_into(&mut v, msg_type, rid, payload);
        v
    }

    fn decode_all(dec: &mut FrameDecoder, chunks: &[&[u8]]) -> Result<Vec<(Header, Vec<u8>)>> {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut input: &[u8] = chunk;
            while let Some(f) = dec.next(&mut input)? {
                out.push((f.header, f.payload.to_vec()));
            }
        }
        Ok(out)
    }

    #[test]
    fn round_trip_from_every_split_point() {
        let mut wire = frame(7, 42, b"hello world, this is a payload");
        wire.extend(frame(8, 0, b""));
        wire.extend(frame(9, u64::MAX, &[0xAB; 300]));
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let mut dec = FrameDecoder::new(1024);
                let got = decode_all(&mut dec, &[&wire[..a], &wire[a..b], &wire[b..]]).unwrap();
                assert_eq!(got.len(), 3, "split {a}/{b}");
                assert_eq!(got[0].0.msg_type, 7);
                assert_eq!(got[0].0.request_id, 42);
                assert_eq!(got[0].1, b"hello world, this is a payload");
                assert_eq!(got[1].1, b"");
                assert_eq!(got[2].0.request_id, u64::MAX);
                assert_eq!(got[2].1, vec![0xAB; 300]);
                assert!(dec.is_idle());
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let wire = frame(1, 5, &[3u8; 1000]);
        let mut dec = FrameDecoder::new(4096);
        let chunks: Vec<&[u8]> = wire.chunks(1).collect();
        let got = decode_all(&mut dec, &chunks).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 1000);
    }

    #[test]
    fn a_taken_reassembly_buffer_holds_the_payload_and_decoding_goes_on() {
        let a: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut wire = frame(0x20, 1, &a);
        wire.extend_from_slice(&frame(0x21, 2, b"small"));
        wire.extend_from_slice(&frame(0x20, 3, &a[..2000]));
        let mut dec = FrameDecoder::new(4096);
        let mut taken = Vec::new();
        let mut borrowed = Vec::new();
        for chunk in wire.chunks(1024) {
            let mut input = chunk;
            while let Some(f) = dec.next(&mut input).unwrap() {
                let in_input = chunk.as_ptr_range().contains(&f.payload.as_ptr());
                let rid = f.header.request_id;
                if in_input {
                    borrowed.push((rid, f.payload.to_vec()));
                } else {
                    taken.push((rid, dec.take_payload()));
                }
            }
        }
        assert_eq!(taken, vec![(1, a.clone()), (3, a[..2000].to_vec())]);
        assert_eq!(borrowed, vec![(2, b"small".to_vec())]);
        assert!(dec.is_idle());
    }

    #[test]
    fn corrupt_crc_is_an_error() {
        let mut wire = frame(1, 0, b"abcdef");
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let mut dec = FrameDecoder::new(1024);
        assert!(matches!(
            decode_all(&mut dec, &[&wire]),
            Err(Error::BadChecksum { .. })
        ));
        // Poisoned afterwards.
        let mut input: &[u8] = &wire;
        assert!(matches!(dec.next(&mut input), Err(Error::DecoderPoisoned)));
        // Split delivery too.
        let mut dec = FrameDecoder::new(1024);
        assert!(matches!(
            decode_all(&mut dec, &[&wire[..10], &wire[10..]]),
            Err(Error::BadChecksum { .. })
        ));
        assert!(matches!(
            decode_one(&wire, 1024),
            Err(Error::BadChecksum { .. })
        ));
    }

    #[test]
    fn bad_magic_is_an_error() {
        let mut wire = frame(1, 0, b"abc");
        wire[0] = b'X';
        let mut dec = FrameDecoder::new(1024);
        assert!(matches!(
            decode_all(&mut dec, &[&wire]),
            Err(Error::BadMagic { .. })
        ));
        let mut dec = FrameDecoder::new(1024);
        let chunks: Vec<&[u8]> = wire.chunks(1).collect();
        assert!(matches!(
            decode_all(&mut dec, &chunks),
            Err(Error::BadMagic { .. })
        ));
    }

    #[test]
    fn four_gib_claim_is_refused_before_allocating() {
        let mut head = Header {
            msg_type: 1,
            request_id: 0,
            payload_len: u32::MAX,
            payload_crc: 0,
        }
        .encode();
        let mut dec = FrameDecoder::new(crate::limits::FRAME_PAYLOAD_BYTES_MAX_DEFAULT);
        let mut input: &[u8] = &head;
        match dec.next(&mut input) {
            Err(Error::FrameTooLarge {
                claimed_bytes,
                limit_bytes,
            }) => {
                assert_eq!(claimed_bytes, u64::from(u32::MAX));
                assert_eq!(limit_bytes, crate::limits::FRAME_PAYLOAD_BYTES_MAX_DEFAULT);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert_eq!(dec.buffer_capacity(), 0);
        // Split header too.
        let mut dec = FrameDecoder::new(1 << 20);
        let mut a: &[u8] = &head[..15];
        assert!(dec.next(&mut a).unwrap().is_none());
        let mut b: &[u8] = &head[15..];
        assert!(matches!(dec.next(&mut b), Err(Error::FrameTooLarge { .. })));
        assert_eq!(dec.buffer_capacity(), 0);
        // Just above a small limit.
        head[13..17].copy_from_slice(&101u32.to_le_bytes());
        assert!(matches!(
            decode_one(&head, 100),
            Err(Error::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_frame() {
        let wire = frame(1, 0, b"abcdef");
        for cut in 0..wire.len() {
            assert!(matches!(
                decode_one(&wire[..cut], 1024),
                Err(Error::Truncated { .. })
            ));
            let mut dec = FrameDecoder::new(1024);
            let mut input: &[u8] = &wire[..cut];
            assert!(dec.next(&mut input).unwrap().is_none());
            assert_eq!(dec.buffered_bytes(), cut);
        }
    }

    #[test]
    fn configured_limit_is_clamped_to_ceiling() {
        let dec = FrameDecoder::new(u32::MAX);
        assert_eq!(dec.payload_bytes_max, FRAME_PAYLOAD_BYTES_MAX_CEILING);
    }

    #[test]
    fn begin_finish_matches_encode_into() {
        let mut a = Vec::new();
        let start = begin_frame(&mut a, 3, 9);
        a.extend_from_slice(b"xyz");
        finish_frame(&mut a, start);
        assert_eq!(a, frame(3, 9, b"xyz"));
    }
}
