//! Requests, one-way messages and responses larger than one 64 KiB receive
//! between two real nodes on 127.0.0.1 arrive intact. Such frames are
//! reassembled by the decoder, whose buffer is then moved into the event
//! rather than copied; this checks that path end to end.

mod common;

use std::time::Duration;

use common::*;
use strata_net::Event;

/// Distinct bytes per message, so a mixed-up or stale buffer shows.
fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j * 31 + i * 7) as u8).collect()
}

#[test]
fn large_messages_requests_and_responses_arrive_intact() {
    const TIMEOUT: Duration = Duration::from_secs(30);
    let (a, b) = connected_pair();
    let (a_key, b_key) = (a.node_key(), b.node_key());
    let sizes = [65_536, 65_537, 200_000, 100, 300_000, 1, 70_000];
    for (i, &len) in sizes.iter().enumerate() {
        a.send(b_key, payload(i, len)).unwrap();
    }
    for (i, &len) in sizes.iter().enumerate() {
        match b.next_event_timeout(TIMEOUT) {
            Some(Event::Message { from, payload: p }) => {
                assert_eq!(from, a_key);
                assert!(p == payload(i, len), "message {i} ({len} bytes) differs");
            }
            other => panic!("message {i}: {other:?}"),
        }
    }
    let rid = a.request(b_key, payload(100, 150_000)).unwrap();
    match b.next_event_timeout(TIMEOUT) {
        Some(Event::Request {
            from,
            request_id,
            payload: p,
        }) => {
            assert_eq!(from, a_key);
            assert!(p == payload(100, 150_000), "request differs");
            b.respond(from, request_id, payload(101, 250_000)).unwrap();
        }
        other => panic!("request: {other:?}"),
    }
    match a.next_event_timeout(TIMEOUT) {
        Some(Event::Response {
            request_id,
            payload: p,
            ..
        }) => {
            assert_eq!(request_id, rid);
            assert!(p == payload(101, 250_000), "response differs");
        }
        other => panic!("response: {other:?}"),
    }
}
