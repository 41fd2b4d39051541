//! Requests, one-way messages and responses larger than one receive (a
//! 32 KiB ring buffer, or a connection's own 64 KiB buffer) between two
//! real nodes on 127.0.0.1 arrive intact. Such frames are
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
    // Receives into the shared provided-buffer ring (32 KiB buffers).
    large_messages_arrive_intact(config());
}

#[test]
fn large_messages_arrive_intact_with_per_connection_receive_buffers() {
    let mut cfg = config();
    cfg.recv_buffer_ring = false;
    large_messages_arrive_intact(cfg);
}

fn large_messages_arrive_intact(cfg: strata_net::Config) {
    const TIMEOUT: Duration = Duration::from_secs(30);
    let (a, b) = connected_pair_with(cfg);
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

/// One receive buffer shared by four connections that send at once: the
/// receives that find it taken end with `ENOBUFS` and are re-armed, and
/// every byte still arrives, in order per sender.
#[test]
fn four_senders_share_a_single_receive_buffer() {
    const SENDERS: usize = 4;
    const MESSAGES: usize = 40;
    let mut cfg = config();
    cfg.recv_buffers = 1;
    // Only the four connections under test: without these limits the
    // nodes' address exchange (every second) has the sink dial the
    // senders and the senders dial each other, and a sender then holds
    // more than the one peer the wait below expects. On a loaded machine
    // the handshakes took past the first exchange and the test failed.
    cfg.outbound_peers_max = 0;
    let sink = start(cfg);
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let mut c = config();
            c.seeds = vec![sink.local_addr()];
            c.outbound_peers_max = 1;
            c.inbound_peers_max = 0;
            start(c)
        })
        .collect();
    assert!(wait_until(Duration::from_secs(10), || sink.peers().len()
        == SENDERS
        && senders.iter().all(|s| s.peers().len() == 1)));
    let mut events = Vec::new();
    drain(&sink, &mut events);
    let sink_key = sink.node_key();
    std::thread::scope(|scope| {
        for (k, s) in senders.iter().enumerate() {
            scope.spawn(move || {
                for i in 0..MESSAGES {
                    s.send(sink_key, payload(k * 1000 + i, 20_000 + i * 997))
                        .unwrap();
                }
            });
        }
    });
    let mut next = vec![0usize; SENDERS];
    let keys: Vec<_> = senders.iter().map(|s| s.node_key()).collect();
    let t = std::time::Instant::now();
    while next.iter().sum::<usize>() < SENDERS * MESSAGES {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "received only {next:?} messages per sender"
        );
        let Some(e) = sink.next_event_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if let Event::Message { from, payload: p } = e {
            let k = keys.iter().position(|key| *key == from).expect("a sender");
            let i = next[k];
            assert!(
                p == payload(k * 1000 + i, 20_000 + i * 997),
                "sender {k} message {i} differs"
            );
            next[k] += 1;
        }
    }
    let shortages = sink
        .stats()
        .recv_buffer_shortages
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(shortages > 0, "the single buffer was never short");
}
