//! The incremental frame decoder over arbitrary bytes and split points: it
//! must never panic and never buffer more than its limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_net::frame::{decode_one, FrameDecoder};
use strata_net::message::Message;

const LIMIT: u32 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = 1 + data[0] as usize;
    let body = &data[1..];
    let mut dec = FrameDecoder::new(LIMIT);
    'outer: for chunk in body.chunks(split) {
        let mut input = chunk;
        loop {
            match dec.next(&mut input) {
                Ok(Some(f)) => {
                    assert!(f.payload.len() <= LIMIT as usize);
                    let _ = Message::decode(f.header.msg_type, f.payload);
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
        assert!(dec.buffer_capacity() <= LIMIT as usize);
    }
    let _ = decode_one(body, LIMIT);
});
