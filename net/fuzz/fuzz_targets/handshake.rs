//! The handshake state machine fed arbitrary hello and auth payloads: it
//! must never panic and never accept a signature it did not get from the key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_net::handshake::{Handshake, Identity, Role};
use strata_net::message::Message;

fuzz_target!(|data: &[u8]| {
    let id = Identity::from_seed([7; 32]);
    let mut hs = Handshake::new(&id, [0; 32], Role::Responder, 0, [1; 32], 0, 1000);
    let (hello, auth) = data.split_at(data.len().min(100));
    if let Ok(Message::Hello(h)) = Message::decode(0x01, hello) {
        let _ = hs.on_hello(&id, h);
    }
    if let Ok(Message::Auth(sig)) = Message::decode(0x02, auth) {
        // Random bytes are (overwhelmingly) not a valid signature.
        let _ = hs.on_auth(&sig);
    }
});
