//! Request/response between two real nodes on 127.0.0.1: every id returned
//! by `Handle::request` ends in exactly one `Event::Response` or one
//! `Event::RequestFailed` — timeout, disconnect, no connection, too many
//! pending — and a response after the timeout is treated as unsolicited.

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_net::limits::PENDING_REQUESTS_PER_PEER_MAX;
use strata_net::{Config, Event, Handle, RequestFailure};

/// Two connected nodes: `a` (built from `a_cfg`) and `b`, which dials it.
fn pair(a_cfg: Config) -> (Handle, Handle) {
    let a = start(a_cfg);
    let mut c = config();
    c.seeds = vec![a.local_addr()];
    let b = start(c);
    assert!(
        wait_until(Duration::from_secs(10), || a.peers().len() == 1
            && b.peers().len() == 1),
        "the two nodes did not connect"
    );
    (a, b)
}

/// Pops events from `h` until one matches `want` or `timeout` passes; the
/// others are kept in `seen`.
fn wait_for(
    h: &Handle,
    timeout: Duration,
    seen: &mut Vec<Event>,
    mut want: impl FnMut(&Event) -> bool,
) -> Option<Event> {
    let t = Instant::now();
    loop {
        while let Some(e) = h.try_next_event() {
            if want(&e) {
                return Some(e);
            }
            seen.push(e);
        }
        if t.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn failed(request_id: u64) -> impl FnMut(&Event) -> bool {
    move |e| matches!(e, Event::RequestFailed { request_id: r, .. } if *r == request_id)
}

fn request_for(request_id: u64) -> impl FnMut(&Event) -> bool {
    move |e| matches!(e, Event::Request { request_id: r, .. } if *r == request_id)
}

#[test]
fn unanswered_request_times_out_and_a_late_response_is_unsolicited() {
    const TIMEOUT_MS: u64 = 300;
    let mut cfg = config();
    cfg.request_timeout_ms = TIMEOUT_MS;
    let (a, b) = pair(cfg);
    let (a_key, b_key) = (a.node_key(), b.node_key());
    let mut seen = Vec::new();

    // Never answered: reported as timed out, not before the timeout and not
    // much after it (the tick is 10 ms; the rest is slack for a loaded
    // shared machine).
    let sent = Instant::now();
    let rid = a.request(b_key, b"never answered".to_vec()).unwrap();
    wait_for(&b, Duration::from_secs(5), &mut seen, request_for(rid)).expect("b got it");
    let e = wait_for(&a, Duration::from_secs(5), &mut seen, failed(rid)).expect("reported");
    let waited = sent.elapsed();
    assert_eq!(
        e,
        Event::RequestFailed {
            to: b_key,
            request_id: rid,
            reason: RequestFailure::TimedOut
        }
    );
    assert!(
        waited >= Duration::from_millis(TIMEOUT_MS),
        "reported after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(TIMEOUT_MS + 2_000),
        "reported after {waited:?}"
    );

    // The answer arrives late: no Response event, the responder is scored
    // down (lightly: it stays connected).
    b.respond(a_key, rid, b"too late".to_vec()).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || a
            .peers()
            .first()
            .is_some_and(|p| p.score < 0)),
        "late response not penalised: {:?}",
        a.peers()
    );
    std::thread::sleep(Duration::from_millis(100));
    let late = wait_for(&a, Duration::from_millis(200), &mut seen, |e| {
        matches!(e, Event::Response { .. })
    });
    assert_eq!(late, None, "a late response must not be delivered");
    assert_eq!(a.peers().len(), 1, "a light penalty does not disconnect");

    // An answered request ends in its Response and nothing else, even once
    // its deadline has passed.
    let rid2 = a.request(b_key, b"answered".to_vec()).unwrap();
    wait_for(&b, Duration::from_secs(5), &mut seen, request_for(rid2)).expect("b got it");
    b.respond(a_key, rid2, b"answer".to_vec()).unwrap();
    let e = wait_for(&a, Duration::from_secs(5), &mut seen, |e| {
        matches!(e, Event::Response { .. })
    })
    .expect("response");
    assert_eq!(
        e,
        Event::Response {
            from: b_key,
            request_id: rid2,
            payload: b"answer".to_vec()
        }
    );
    std::thread::sleep(Duration::from_millis(TIMEOUT_MS + 200));
    assert_eq!(
        wait_for(&a, Duration::from_millis(50), &mut seen, failed(rid2)),
        None,
        "an answered request must not also fail"
    );
}

#[test]
fn request_to_a_peer_that_disconnects_fails_with_peer_gone() {
    // The default timeout (10 s) is far longer than the test waits, so the
    // failure can only come from the disconnect.
    let (a, b) = pair(config());
    let b_key = b.node_key();
    let mut seen = Vec::new();
    let rid = a.request(b_key, b"unanswered".to_vec()).unwrap();
    wait_for(&b, Duration::from_secs(5), &mut seen, request_for(rid)).expect("b got it");
    let sent = Instant::now();
    b.shutdown().unwrap();
    let e = wait_for(&a, Duration::from_secs(5), &mut seen, failed(rid)).expect("reported");
    assert_eq!(
        e,
        Event::RequestFailed {
            to: b_key,
            request_id: rid,
            reason: RequestFailure::PeerGone
        }
    );
    assert!(sent.elapsed() < Duration::from_secs(5));

    // Once the peer is down, a request to it is not sent at all.
    assert!(wait_until(Duration::from_secs(5), || a.peers().is_empty()));
    let rid = a.request(b_key, b"to nobody".to_vec()).unwrap();
    let e = wait_for(&a, Duration::from_secs(5), &mut seen, failed(rid)).expect("reported");
    assert_eq!(
        e,
        Event::RequestFailed {
            to: b_key,
            request_id: rid,
            reason: RequestFailure::NotConnected
        }
    );
}

#[test]
fn request_to_an_unknown_node_fails_with_not_connected() {
    let a = start(config());
    let mut seen = Vec::new();
    let stranger = [7u8; 32];
    let rid = a.request(stranger, b"hello?".to_vec()).unwrap();
    let e = wait_for(&a, Duration::from_secs(5), &mut seen, failed(rid)).expect("reported");
    assert_eq!(
        e,
        Event::RequestFailed {
            to: stranger,
            request_id: rid,
            reason: RequestFailure::NotConnected
        }
    );
}

/// Answers every request `b` has received, until `count` are answered.
fn answer_all(b: &Handle, count: usize) {
    let mut answered = 0;
    assert!(
        wait_until(Duration::from_secs(20), || {
            while let Some(e) = b.try_next_event() {
                if let Event::Request {
                    from, request_id, ..
                } = e
                {
                    b.respond(from, request_id, request_id.to_le_bytes().to_vec())
                        .unwrap();
                    answered += 1;
                }
            }
            answered >= count
        }),
        "b answered {answered} of {count}"
    );
}

/// Counts responses at `a` until `count` arrived; returns the failures seen.
fn collect_responses(a: &Handle, count: usize) -> Vec<Event> {
    let mut responses = 0;
    let mut failures = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            while let Some(e) = a.try_next_event() {
                match e {
                    Event::Response {
                        request_id,
                        payload,
                        ..
                    } => {
                        assert_eq!(payload, request_id.to_le_bytes());
                        responses += 1;
                    }
                    e @ Event::RequestFailed { .. } => failures.push(e),
                    _ => {}
                }
            }
            responses >= count
        }),
        "a got {responses} of {count} responses"
    );
    failures
}

#[test]
fn requests_beyond_the_pending_limit_fail_with_too_many_pending() {
    let (a, b) = pair(config());
    let b_key = b.node_key();
    let mut seen = Vec::new();
    let mut rids = Vec::new();
    for i in 0..PENDING_REQUESTS_PER_PEER_MAX as u32 {
        rids.push(a.request(b_key, i.to_le_bytes().to_vec()).unwrap());
    }
    let over = a.request(b_key, b"one too many".to_vec()).unwrap();
    let e = wait_for(&a, Duration::from_secs(5), &mut seen, failed(over)).expect("reported");
    assert_eq!(
        e,
        Event::RequestFailed {
            to: b_key,
            request_id: over,
            reason: RequestFailure::TooManyPending
        }
    );
    assert!(
        seen.iter()
            .all(|e| !matches!(e, Event::RequestFailed { .. })),
        "only the request over the limit fails: {seen:?}"
    );
    answer_all(&b, rids.len());
    let failures = collect_responses(&a, rids.len());
    assert!(failures.is_empty(), "{failures:?}");

    // A second full round reuses the freed slots; its deadlines are pushed
    // behind the answered ones, which makes the queue compact them away.
    for i in 0..PENDING_REQUESTS_PER_PEER_MAX as u32 {
        a.request(b_key, i.to_le_bytes().to_vec()).unwrap();
    }
    answer_all(&b, PENDING_REQUESTS_PER_PEER_MAX);
    let failures = collect_responses(&a, PENDING_REQUESTS_PER_PEER_MAX);
    assert!(failures.is_empty(), "{failures:?}");
}

/// `Handle::batch` queues requests and answers with one wake of the I/O
/// thread each; `Handle::next_events` takes what is queued in one call. Every
/// request of a batch is answered exactly once, with its own payload echoed,
/// and `max` bounds what one `next_events` call takes.
#[test]
fn batched_requests_and_responses_are_each_answered_once() {
    const REQUESTS: usize = 200;
    let (a, b) = pair(config());
    let (a_key, b_key) = (a.node_key(), b.node_key());
    let mut ids = std::collections::HashSet::new();
    {
        let mut batch = a.batch();
        for i in 0..REQUESTS {
            let rid = batch
                .request(b_key, (i as u32).to_le_bytes().to_vec())
                .unwrap();
            assert!(ids.insert(rid), "request id {rid} returned twice");
        }
        batch.commit();
    }
    // b answers in batches of at most 7, echoing each payload.
    let mut events = Vec::new();
    let mut answered = 0;
    let t = Instant::now();
    while answered < REQUESTS {
        assert!(t.elapsed() < Duration::from_secs(10), "b got {answered}");
        events.clear();
        let n = b.next_events(&mut events, 7, Duration::from_millis(100));
        assert!(n <= 7 && n == events.len(), "took {n} for a max of 7");
        let mut batch = b.batch();
        for e in events.drain(..) {
            if let Event::Request {
                from,
                request_id,
                payload,
            } = e
            {
                assert_eq!(from, a_key);
                batch.respond(from, request_id, payload).unwrap();
                answered += 1;
            }
        }
        // Dropped here: the drop wakes the loop as `commit` would.
    }
    let mut got = std::collections::HashMap::new();
    let t = Instant::now();
    while got.len() < REQUESTS {
        assert!(t.elapsed() < Duration::from_secs(10), "a got {}", got.len());
        events.clear();
        a.next_events(&mut events, usize::MAX, Duration::from_millis(100));
        for e in events.drain(..) {
            if let Event::Response {
                from,
                request_id,
                payload,
            } = e
            {
                assert_eq!(from, b_key);
                assert!(ids.contains(&request_id), "unknown id {request_id}");
                assert!(got.insert(request_id, payload).is_none(), "answered twice");
            }
        }
    }
    // Each answer carries its own request's payload: ids and payloads were
    // assigned in the same order.
    let mut by_id: Vec<_> = got.into_iter().collect();
    by_id.sort();
    for (i, (_, payload)) in by_id.iter().enumerate() {
        assert_eq!(payload, &(i as u32).to_le_bytes().to_vec());
    }
    assert_eq!(a.next_events(&mut events, 0, Duration::from_secs(5)), 0);
    assert_eq!(a.next_events(&mut events, 8, Duration::from_millis(20)), 0);
    assert!(events.is_empty());
}

/// A node started with a `Responder` answers on its I/O thread the requests
/// the responder takes (no `Event::Request` for them) and passes the others
/// on as events, including those whose answer would exceed the frame limit;
/// those are then answered through the handle as usual.
#[test]
fn responder_answers_in_the_loop_and_passes_on_what_it_declines() {
    const REQUESTS: u32 = 100;
    let mut b_cfg = config();
    b_cfg.frame_payload_bytes_max = 64 << 10;
    b_cfg.send_queue_bytes_max = 1 << 20;
    // Even requests are answered with their payload reversed; odd ones are
    // declined; request 2 gets an answer over the frame limit.
    let responder = |_from: &[u8; 32], request: &[u8], answer: &mut Vec<u8>| {
        assert!(answer.is_empty(), "the answer buffer starts empty");
        let n = u32::from_le_bytes(request.try_into().expect("4 bytes"));
        if n == 2 {
            answer.resize((64 << 10) + 1, 0);
            return true;
        }
        if n % 2 == 1 {
            return false;
        }
        answer.extend(request.iter().rev());
        true
    };
    let (a, b) = connected_to_responder(config(), b_cfg, responder);
    let b_key = b.node_key();
    let mut sent = std::collections::HashMap::new();
    {
        let mut batch = a.batch();
        for n in 0..REQUESTS {
            let rid = batch.request(b_key, n.to_le_bytes().to_vec()).unwrap();
            sent.insert(rid, n);
        }
    }
    let mut declined = Vec::new();
    let mut answers = std::collections::HashMap::new();
    let mut events = Vec::new();
    let t = Instant::now();
    while answers.len() < REQUESTS as usize {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "got {}",
            answers.len()
        );
        events.clear();
        b.next_events(&mut events, usize::MAX, Duration::from_millis(5));
        for e in events.drain(..) {
            if let Event::Request {
                from,
                request_id,
                payload,
            } = e
            {
                declined.push(u32::from_le_bytes(payload[..].try_into().unwrap()));
                b.respond(from, request_id, b"from the handle".to_vec())
                    .unwrap();
            }
        }
        a.next_events(&mut events, usize::MAX, Duration::from_millis(5));
        for e in events.drain(..) {
            if let Event::Response {
                request_id,
                payload,
                ..
            } = e
            {
                let n = sent[&request_id];
                assert!(answers.insert(n, payload).is_none(), "{n} answered twice");
            }
        }
    }
    declined.sort();
    let expected: Vec<u32> = (0..REQUESTS).filter(|n| n % 2 == 1 || *n == 2).collect();
    assert_eq!(declined, expected, "requests passed on as events");
    for (n, payload) in answers {
        if n % 2 == 1 || n == 2 {
            assert_eq!(payload, b"from the handle", "request {n}");
        } else {
            let mut want = n.to_le_bytes().to_vec();
            want.reverse();
            assert_eq!(payload, want, "request {n}");
        }
    }
}
