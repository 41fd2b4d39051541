//! Every message decoder over arbitrary payloads; decoded messages must
//! re-encode to the same payload.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_net::frame::decode_one;
use strata_net::message::Message;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let (t, payload) = (data[0], &data[1..]);
    if let Ok(m) = Message::decode(t, payload) {
        match m {
            Message::Addrs(a) => assert_eq!(a.iter().count(), a.len()),
            Message::Push(i) | Message::PullResponse(i) => assert_eq!(i.iter().count(), i.len()),
            Message::Announce(i) | Message::PullRequest(i) => assert_eq!(i.iter().count(), i.len()),
            _ => {}
        }
        let mut wire = Vec::new();
        m.encode_frame(0, &mut wire);
        let (f, _) = decode_one(&wire, u32::MAX).expect("own encoding decodes");
        assert_eq!(f.payload, payload);
    }
});
