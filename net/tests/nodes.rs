//! Several nodes in one process on 127.0.0.1: discovery from one seed,
//! gossip reaching every node exactly once, request/response, and the
//! io_uring start-up failure path.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use strata_net::{Error, Event, Node};

#[test]
fn eight_nodes_discover_from_one_seed_and_gossip_exactly_once() {
    const N: usize = 8;
    let seed = start(config());
    let mut nodes = vec![seed];
    for _ in 1..N {
        let mut c = config();
        c.seeds = vec![nodes[0].local_addr()];
        nodes.push(start(c));
    }
    let all_connected = wait_until(Duration::from_secs(20), || {
        nodes.iter().all(|n| n.peers().len() == N - 1)
    });
    assert!(
        all_connected,
        "peer counts: {:?}",
        nodes.iter().map(|n| n.peers().len()).collect::<Vec<_>>()
    );

    let mut events: Vec<Vec<Event>> = vec![Vec::new(); N];
    for (i, n) in nodes.iter().enumerate() {
        drain(n, &mut events[i]);
    }
    // A batch of items from one node, and one item from another.
    let mut ids = Vec::new();
    for k in 0..50u32 {
        ids.push(
            nodes[3]
                .broadcast(format!("item {k} from node 3").into_bytes())
                .unwrap(),
        );
    }
    ids.push(nodes[6].broadcast(b"from node 6".to_vec()).unwrap());

    let count_items = |evs: &Vec<Event>| {
        let mut m: HashMap<[u8; 32], usize> = HashMap::new();
        for e in evs {
            if let Event::Item { id, .. } = e {
                *m.entry(*id).or_default() += 1;
            }
        }
        m
    };
    let done = wait_until(Duration::from_secs(20), || {
        for (i, n) in nodes.iter().enumerate() {
            drain(n, &mut events[i]);
        }
        (0..N).all(|i| {
            let m = count_items(&events[i]);
            // A node does not report its own broadcasts back to itself.
            let expect = match i {
                3 => 1,
                6 => ids.len() - 1,
                _ => ids.len(),
            };
            m.len() == expect
        })
    });
    assert!(
        done,
        "not every node got every item: {:?}",
        (0..N)
            .map(|i| count_items(&events[i]).len())
            .collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_millis(500));
    for (i, n) in nodes.iter().enumerate() {
        drain(n, &mut events[i]);
        let m = count_items(&events[i]);
        assert!(
            m.values().all(|&c| c == 1),
            "node {i} reported an item twice"
        );
    }
    // Each directed link carries an item at most once.
    let received: u64 = nodes
        .iter()
        .map(|n| {
            let s = n.stats();
            s.items_new.load(std::sync::atomic::Ordering::Relaxed)
                + s.items_duplicate.load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(
        received <= (ids.len() * N * (N - 1)) as u64,
        "received {received}"
    );

    // Request/response between two nodes.
    let to = nodes[1].node_key();
    let rid = nodes[0].request(to, b"ping?".to_vec()).unwrap();
    let mut got_req = None;
    assert!(wait_until(Duration::from_secs(5), || {
        while let Some(e) = nodes[1].try_next_event() {
            if let Event::Request {
                from,
                request_id,
                payload,
            } = e
            {
                got_req = Some((from, request_id, payload));
            }
        }
        got_req.is_some()
    }));
    let (from, request_id, payload) = got_req.unwrap();
    assert_eq!(payload, b"ping?");
    nodes[1]
        .respond(from, request_id, b"pong!".to_vec())
        .unwrap();
    let mut got = None;
    assert!(wait_until(Duration::from_secs(5), || {
        while let Some(e) = nodes[0].try_next_event() {
            if let Event::Response {
                request_id,
                payload,
                ..
            } = e
            {
                got = Some((request_id, payload));
            }
        }
        got.is_some()
    }));
    assert_eq!(got.unwrap(), (rid, b"pong!".to_vec()));
    for n in nodes {
        n.shutdown().unwrap();
    }
}

#[test]
fn io_uring_unavailable_fails_start_with_a_fix() {
    let mut c = config();
    c.io_uring_force_unavailable = true;
    match Node::start(c, strata_net::handshake::Identity::generate().unwrap()) {
        Err(e @ Error::IoUringUnavailable { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("seccomp") && msg.contains("io_uring_disabled"),
                "{msg}"
            );
        }
        other => panic!("expected IoUringUnavailable, got {other:?}"),
    }
}

#[test]
fn other_chain_is_refused() {
    let a = start(config());
    let mut c = config();
    c.chain_id = [1; 32];
    c.seeds = vec![a.local_addr()];
    let b = start(c);
    std::thread::sleep(Duration::from_millis(700));
    assert!(a.peers().is_empty() && b.peers().is_empty());
    assert!(
        a.stats()
            .handshakes_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

/// A node started with `gossip_quiet` is sent no gossip by its peers (no
/// push, no announcement), while it can still gossip itself and the
/// others keep gossiping to each other.
#[test]
fn a_quiet_peer_is_sent_no_gossip() {
    let hub = start(config());
    let mut c = config();
    c.seeds = vec![hub.local_addr()];
    let other = start(c.clone());
    c.gossip_quiet = true;
    let quiet = start(c);
    assert!(
        wait_until(Duration::from_secs(20), || hub.peers().len() == 2
            && !other.peers().is_empty()
            && !quiet.peers().is_empty()),
        "the three nodes did not connect"
    );
    let items = |h: &strata_net::Handle, evs: &mut Vec<Event>| {
        drain(h, evs);
        evs.iter()
            .filter(|e| matches!(e, Event::Item { .. }))
            .count()
    };
    let (mut at_hub, mut at_other, mut at_quiet) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..20u32 {
        hub.broadcast(format!("hub item {k}").into_bytes()).unwrap();
    }
    // The quiet node's own item still reaches the others.
    quiet.broadcast(b"from the quiet node".to_vec()).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || items(&other, &mut at_other)
            == 21
            && items(&hub, &mut at_hub) == 1),
        "the others did not get every item: other {}, hub {}",
        items(&other, &mut at_other),
        items(&hub, &mut at_hub)
    );
    // Gossip is flushed every 20 ms: well past that, still nothing.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(items(&quiet, &mut at_quiet), 0, "a quiet peer got gossip");
    assert_eq!(
        quiet
            .stats()
            .items_new
            .load(std::sync::atomic::Ordering::Relaxed)
            + quiet
                .stats()
                .items_duplicate
                .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "items reached the quiet peer's network loop"
    );
}

/// With `relay_received` off, a node passes on only what its application
/// relays: an item from A reaches B, and C (connected only to B) gets it
/// once B relays it, from B.
#[test]
fn without_relay_received_an_item_goes_on_only_when_relayed() {
    let mut c = config();
    c.relay_received = false;
    let b = start(c);
    // A and C reach each other only through B.
    let mut c = config();
    c.seeds = vec![b.local_addr()];
    c.inbound_peers_max = 0;
    c.outbound_peers_max = 1;
    let a = start(c.clone());
    let cc = start(c);
    assert!(
        wait_until(Duration::from_secs(20), || b.peers().len() == 2
            && a.peers().len() == 1
            && cc.peers().len() == 1),
        "the line A - B - C did not form"
    );
    let item = b"validated at B first".to_vec();
    let id = a.broadcast(item.clone()).unwrap();
    let mut at_b = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            while let Some(e) = b.try_next_event() {
                if let Event::Item { id: got, item, .. } = e {
                    if got == id {
                        at_b = Some(item);
                    }
                }
            }
            at_b.is_some()
        }),
        "B never got A's item"
    );
    let at_c = |evs: &mut Vec<Event>| {
        drain(&cc, evs);
        evs.iter()
            .filter_map(|e| match e {
                Event::Item { id: got, from, .. } if *got == id => Some(*from),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let mut evs = Vec::new();
    std::thread::sleep(Duration::from_millis(500)); // many gossip flushes
    assert!(at_c(&mut evs).is_empty(), "B passed the item on unasked");
    b.relay(id, at_b.unwrap()).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !at_c(&mut evs).is_empty()),
        "C never got the relayed item"
    );
    assert_eq!(at_c(&mut evs), [b.node_key()]);
}
