//! A node driven on the caller's thread (`Node::start_driven`): requests and
//! answers across a driven/threaded pair in both directions, the poll
//! timeout, commands queued between polls, and shutdown. 127.0.0.1 only.

mod common;

use std::time::{Duration, Instant};

use common::{config, start};
use strata_net::handshake::Identity;
use strata_net::{DrivenNode, Event, Node};

/// Turns `node`'s loop until `done` holds, collecting its events.
fn poll_until(
    node: &mut DrivenNode,
    events: &mut Vec<Event>,
    timeout: Duration,
    mut done: impl FnMut(&DrivenNode, &[Event]) -> bool,
) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if done(node, events) {
            return true;
        }
        node.poll_events(events, 1024, Duration::from_millis(20))
            .expect("poll");
    }
    done(node, events)
}

fn driven_client_of(server_addr: std::net::SocketAddr) -> DrivenNode {
    let cfg = strata_net::Config {
        seeds: vec![server_addr],
        ..config()
    };
    Node::start_driven(cfg, Identity::generate().unwrap()).expect("driven node starts")
}

/// A driven client seeded with `server`, polled until both list each
/// other as peers.
fn connected_driven_client_of(server: &strata_net::Handle) -> DrivenNode {
    let mut client = driven_client_of(server.local_addr());
    let mut events = Vec::new();
    assert!(
        poll_until(&mut client, &mut events, Duration::from_secs(10), |c, _| {
            c.handle().peers().len() == 1 && server.peers().len() == 1
        }),
        "the driven client did not connect"
    );
    client
}

#[test]
fn driven_client_gets_every_answer_from_a_responder() {
    driven_client_gets_every_answer(true);
}

#[test]
fn driven_client_gets_every_answer_with_per_connection_receive_buffers() {
    driven_client_gets_every_answer(false);
}

fn driven_client_gets_every_answer(recv_buffer_ring: bool) {
    let cfg = strata_net::Config {
        recv_buffer_ring,
        ..config()
    };
    let echo = |_: &[u8; 32], req: &[u8], answer: &mut Vec<u8>| {
        answer.extend_from_slice(req);
        answer.reverse();
        true
    };
    let server = Node::start_with_responder(cfg.clone(), Identity::generate().unwrap(), echo)
        .expect("server starts");
    let mut client = Node::start_driven(
        strata_net::Config {
            seeds: vec![server.local_addr()],
            ..cfg
        },
        Identity::generate().unwrap(),
    )
    .expect("driven node starts");
    let mut events = Vec::new();
    assert!(
        poll_until(&mut client, &mut events, Duration::from_secs(10), |c, _| {
            c.handle().peers().len() == 1
        }),
        "the driven client did not connect"
    );
    // Several rounds of a window of requests, as the loopback bench sends:
    // queued through the handle on even rounds, framed at once from a
    // borrowed payload (`DrivenNode::request`) on odd ones.
    let mut expected = std::collections::HashMap::new();
    for round in 0..20u32 {
        for i in 0..64u32 {
            let payload = [round.to_le_bytes(), i.to_le_bytes()].concat();
            let rid = if round % 2 == 0 {
                client
                    .handle()
                    .request(server.node_key(), payload.clone())
                    .unwrap()
            } else {
                client.request(server.node_key(), &payload)
            };
            let mut reversed = payload;
            reversed.reverse();
            expected.insert(rid, reversed);
        }
        events.clear();
        let t = Instant::now();
        let mut answered = 0;
        while answered < 64 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "round {round}: answers missing"
            );
            events.clear();
            client
                .poll_events(&mut events, 1024, Duration::from_secs(1))
                .unwrap();
            for e in events.drain(..) {
                match e {
                    Event::Response {
                        request_id,
                        payload,
                        from,
                    } => {
                        assert_eq!(from, server.node_key());
                        assert_eq!(Some(payload), expected.remove(&request_id));
                        answered += 1;
                    }
                    Event::RequestFailed { .. } => panic!("{e:?}"),
                    _ => {}
                }
            }
        }
    }
    assert!(expected.is_empty());
}

#[test]
fn threaded_client_is_answered_by_a_driven_server() {
    let mut server = Node::start_driven(config(), Identity::generate().unwrap()).unwrap();
    let client = start(strata_net::Config {
        seeds: vec![server.handle().local_addr()],
        ..config()
    });
    let mut events = Vec::new();
    assert!(
        poll_until(&mut server, &mut events, Duration::from_secs(10), |s, _| {
            s.handle().peers().len() == 1 && client.peers().len() == 1
        }),
        "the nodes did not connect"
    );
    let rid = client
        .request(server.handle().node_key(), b"ping".to_vec())
        .unwrap();
    // The request reaches the driven server only while it polls.
    let mut request = None;
    assert!(poll_until(
        &mut server,
        &mut events,
        Duration::from_secs(10),
        |_, evs| {
            request = evs.iter().find_map(|e| match e {
                Event::Request {
                    from,
                    request_id,
                    payload,
                } if payload == b"ping" => Some((*from, *request_id)),
                _ => None,
            });
            request.is_some()
        }
    ));
    let (from, request_id) = request.unwrap();
    assert_eq!(from, client.node_key());
    server.respond(from, request_id, b"pong");
    // The answer goes out in the server's next turn.
    let t = Instant::now();
    let answer = loop {
        assert!(t.elapsed() < Duration::from_secs(10), "no answer");
        server
            .poll_events(&mut events, 1024, Duration::from_millis(5))
            .unwrap();
        if let Some(Event::Response {
            request_id,
            payload,
            ..
        }) = client.next_event_timeout(Duration::from_millis(5))
        {
            break (request_id, payload);
        }
    };
    assert_eq!(answer, (rid, b"pong".to_vec()));
}

#[test]
fn poll_returns_after_its_timeout_and_a_zero_timeout_does_not_block() {
    let mut node = Node::start_driven(config(), Identity::generate().unwrap()).unwrap();
    let mut events = Vec::new();
    let t = Instant::now();
    assert_eq!(
        node.poll_events(&mut events, 16, Duration::from_millis(150))
            .unwrap(),
        0
    );
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let t = Instant::now();
    for _ in 0..100 {
        assert_eq!(
            node.poll_events(&mut events, 16, Duration::ZERO).unwrap(),
            0
        );
    }
    // 100 non-blocking turns; each would take a whole tick if it blocked.
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(node.poll_events(&mut events, 0, Duration::ZERO).unwrap(), 0);
}

/// A request queued while nobody turns the loop is sent by the next
/// poll's first turn, and that poll returns with the answer long before
/// its timeout (it does not sleep out the timeout, nor wait for a tick).
#[test]
fn a_request_queued_between_polls_goes_out_with_the_next_poll() {
    let server = Node::start_with_responder(
        config(),
        Identity::generate().unwrap(),
        |_: &[u8; 32], _: &[u8], a: &mut Vec<u8>| {
            a.push(1);
            true
        },
    )
    .unwrap();
    let mut client = connected_driven_client_of(&server);
    let mut events = Vec::new();
    client.handle().request(server.node_key(), vec![7]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let n = client
        .poll_events(&mut events, 16, Duration::from_secs(30))
        .unwrap();
    assert!(n >= 1);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Response { payload, .. } if payload == &[1])));
}

#[test]
fn dropping_a_driven_node_disconnects_it() {
    let server = start(config());
    let client = connected_driven_client_of(&server);
    drop(client);
    assert!(
        common::wait_until(Duration::from_secs(10), || server.peers().is_empty()),
        "the server still lists the dropped driven node"
    );
}
