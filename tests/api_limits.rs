//! The HTTP API's protective limits (src/api.rs, `[http]` in
//! src/config.rs), against a real single-validator `strata node` process
//! started with small limits in its config file: the per-IP and global
//! connection caps, the header and request timeouts, the per-IP
//! transaction budget (429 with `Retry-After`), and the mempool's refusal
//! reasons as an API client sees them.
//!
//! Not tested here: the 503 a submission gets when the verification queue
//! is full. That queue's bound is `VERIFY_JOBS_MAX` (256 batches) in
//! src/node.rs, a constant with no config knob, and filling it from the
//! API needs more than 256 submissions in flight at once while the
//! workers are still busy, which depends on how fast this machine
//! verifies: a test of it would be flaky. tests/overload.rs fills the same
//! queue through the framed P2P path and checks its busy answer there.
//!
//! Connections are made by hand (`TcpStream`, HTTP/1.1 written out) where
//! a test counts them: the shared devnet helper's client pools its
//! keep-alive connections, and each one would take a per-IP slot.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{transfer, Devnet};
use strata_consensus::genesis::{devnet_account_key, DEVNET_BALANCE};
use strata_consensus::tx::{Transaction, TxBody, TxKind};

/// How long a test waits for the node's API to answer at all (a first
/// start writes the genesis).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client here waits for any one answer before calling the
/// connection stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn api_addr(net: &Devnet) -> String {
    format!("127.0.0.1:{}", net.api[0])
}

/// A plain HTTP/1.1 answer: status and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// Sends `GET path` on `stream` (keep-alive) and reads one answer; `None`
/// when the server closed the connection or reset it instead.
fn get_on(stream: &mut TcpStream, path: &str) -> Option<Answer> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: strata\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    read_answer(stream)
}

/// Reads one answer with a `Content-Length` body from `stream`.
fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no answer within {ANSWER_TIMEOUT:?}: {e}")
            }
            // Reset (or the like): the server closed it.
            Err(_) => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("body cut short: {e}"),
        }
    }
    Some(Answer {
        status,
        body: String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string(),
    })
}

/// A keep-alive connection to node 0 on which `GET /v1/status` was
/// answered 200: the API is up, and this connection holds one of its
/// slots. Connections refused before the API is bound are retried; they
/// never reached the server's accept loop.
fn ready_connection(net: &Devnet) -> TcpStream {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(mut s) = TcpStream::connect(api_addr(net)) {
            if let Some(Answer { status: 200, .. }) = get_on(&mut s, "/v1/status") {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the API never answered:\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a connection looks like from the client's side right now.
#[derive(Debug, PartialEq, Eq)]
enum Peek {
    /// The server closed or reset it.
    Closed,
    /// Open, nothing to read.
    Open,
    /// The server sent bytes (unexpected on an idle connection).
    Data,
}

fn peek(stream: &TcpStream) -> Peek {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let seen = match stream.peek(&mut byte) {
        Ok(0) => Peek::Closed,
        Ok(_) => Peek::Data,
        Err(e) if e.kind() == ErrorKind::WouldBlock => Peek::Open,
        Err(_) => Peek::Closed,
    };
    stream.set_nonblocking(false).unwrap();
    seen
}

/// Reads from `stream` until the server closes it (answer bytes, if any,
/// are kept) or `limit` passes; returns when it closed, measured from
/// `since`, and what was read. `None` when it was still open at `limit`.
fn closed_after(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> (Option<Duration>, Vec<u8>) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let left = limit.saturating_sub(since.elapsed());
        if left.is_zero() {
            return (None, got);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return (Some(since.elapsed()), got),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (None, got)
            }
            Err(_) => return (Some(since.elapsed()), got),
        }
    }
}

/// One IP may hold `connections_per_ip_max` connections: with that many
/// open (idle, well inside the header timeout), further ones from
/// 127.0.0.1 are accepted and closed at once, never served; the held ones
/// still are. Once the held ones are closed, a new connection is served.
#[test]
fn connections_past_the_per_ip_cap_are_closed_and_the_cap_frees_up() {
    const PER_IP_MAX: usize = 4;
    const EXTRA: usize = 3;
    // The header timeout is far longer than the test, so no idle
    // connection here is closed by it.
    let net = Devnet::start_with_config(
        1,
        Some(&format!(
            "[http]\nconnections_max = 64\nconnections_per_ip_max = {PER_IP_MAX}\n\
             header_timeout_ms = 120000\n"
        )),
    );
    let mut held = vec![ready_connection(&net)];
    let mut opened: Vec<TcpStream> = (0..PER_IP_MAX - 1 + EXTRA)
        .map(|_| TcpStream::connect(api_addr(&net)).expect("the kernel accepts the connect"))
        .collect();

    // The extra ones are closed promptly: within seconds, against a
    // header timeout of two minutes.
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let closed = loop {
        let closed = opened.iter().filter(|s| peek(s) == Peek::Closed).count();
        if closed >= EXTRA || Instant::now() > deadline {
            break closed;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        closed, EXTRA,
        "{PER_IP_MAX} + {EXTRA} connections from one IP: {closed} closed by the server"
    );
    opened.retain(|s| peek(s) != Peek::Closed);
    held.append(&mut opened);
    assert_eq!(held.len(), PER_IP_MAX);
    // The held ones were accepted and are served.
    for (i, s) in held.iter_mut().enumerate() {
        let answer = get_on(s, "/v1/status");
        assert!(
            matches!(answer, Some(Answer { status: 200, .. })),
            "held connection {i}: {answer:?}"
        );
    }
    // At the cap, a new connection gets no answer: it is closed.
    let mut refused = TcpStream::connect(api_addr(&net)).unwrap();
    let answer = get_on(&mut refused, "/v1/status");
    assert!(answer.is_none(), "served past the per-IP cap: {answer:?}");

    // Closing the held ones frees the slots (as soon as the server sees
    // each close).
    drop(held);
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let mut s = TcpStream::connect(api_addr(&net)).unwrap();
        if let Some(Answer { status: 200, .. }) = get_on(&mut s, "/v1/status") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slot freed after every held connection closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// At `connections_max` the server stops accepting: a further connection
/// waits in the kernel's backlog, unanswered (not closed), and is served
/// as soon as a held one closes.
#[test]
fn past_connections_max_a_connection_waits_and_is_served_when_a_slot_frees() {
    const CONNECTIONS_MAX: usize = 3;
    let net = Devnet::start_with_config(
        1,
        Some(&format!(
            "[http]\nconnections_max = {CONNECTIONS_MAX}\nconnections_per_ip_max = 64\n\
             header_timeout_ms = 120000\n"
        )),
    );
    let mut held = vec![ready_connection(&net)];
    for _ in 1..CONNECTIONS_MAX {
        let mut s = TcpStream::connect(api_addr(&net)).unwrap();
        let answer = get_on(&mut s, "/v1/status");
        assert!(
            matches!(answer, Some(Answer { status: 200, .. })),
            "{answer:?}"
        );
        held.push(s);
    }
    let mut waiting = TcpStream::connect(api_addr(&net)).unwrap();
    waiting
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: strata\r\n\r\n")
        .unwrap();
    // Unanswered while every slot is held: a served request takes
    // milliseconds, so a second without an answer is the limit at work.
    let since = Instant::now();
    let (closed, got) = closed_after(&mut waiting, since, Duration::from_secs(1));
    assert!(
        closed.is_none() && got.is_empty(),
        "past connections_max the server answered or closed: {:?} after {closed:?}",
        String::from_utf8_lossy(&got)
    );
    drop(held.pop());
    let answer = read_answer(&mut waiting);
    assert!(
        matches!(answer, Some(Answer { status: 200, .. })),
        "the waiting connection was not served once a slot freed: {answer:?}"
    );
}

/// A connection that sends part of a request line and then nothing is
/// closed once `header_timeout_ms` has passed: not long before (it is a
/// timeout, not a refusal) and not long after. So is a keep-alive
/// connection left idle after an answer.
#[test]
fn a_stalled_request_head_is_closed_at_the_header_timeout() {
    const HEADER_TIMEOUT_MS: u64 = 2_000;
    let timeout = Duration::from_millis(HEADER_TIMEOUT_MS);
    // Hyper's own default is 30 s: ten times ours stays below it, so the
    // test fails if the configured timeout is not applied.
    let limit = timeout * 10;
    let net = Devnet::start_with_config(
        1,
        Some(&format!(
            "[http]\nheader_timeout_ms = {HEADER_TIMEOUT_MS}\nrequest_timeout_ms = 60000\n"
        )),
    );
    let mut idle = ready_connection(&net);
    let idle_since = Instant::now();
    let mut stalled = TcpStream::connect(api_addr(&net)).unwrap();
    stalled.write_all(b"GET /v1/sta").unwrap();
    let stalled_since = Instant::now();
    // Both watched at once, each from its own start.
    let ((stalled_closed, stalled_got), (idle_closed, idle_got)) = std::thread::scope(|scope| {
        let s = scope.spawn(|| closed_after(&mut stalled, stalled_since, limit));
        let i = scope.spawn(|| closed_after(&mut idle, idle_since, limit));
        (s.join().unwrap(), i.join().unwrap())
    });

    let closed = stalled_closed.unwrap_or_else(|| {
        panic!("a stalled request head was still open after {limit:?} (timeout {timeout:?})")
    });
    assert!(
        closed >= timeout / 2,
        "a stalled request head closed after {closed:?}, well before the {timeout:?} timeout"
    );
    // Hyper closes without an answer (a 408 would do too); the request is
    // never served.
    let text = String::from_utf8_lossy(&stalled_got);
    assert!(
        stalled_got.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );

    let closed = idle_closed.unwrap_or_else(|| {
        panic!("an idle keep-alive connection was still open after {limit:?} (timeout {timeout:?})")
    });
    assert!(
        closed >= timeout / 2,
        "an idle keep-alive connection closed after {closed:?}, well before the {timeout:?} timeout"
    );
    assert!(
        idle_got.is_empty(),
        "{}",
        String::from_utf8_lossy(&idle_got)
    );
}

/// A request whose body stalls is answered 408 once `request_timeout_ms`
/// has passed (not long before, not long after).
#[test]
fn a_stalled_body_is_answered_408_at_the_request_timeout() {
    const REQUEST_TIMEOUT_MS: u64 = 2_000;
    let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
    let net = Devnet::start_with_config(
        1,
        Some(&format!(
            "[http]\nrequest_timeout_ms = {REQUEST_TIMEOUT_MS}\nheader_timeout_ms = 60000\n"
        )),
    );
    drop(ready_connection(&net));
    let mut s = TcpStream::connect(api_addr(&net)).unwrap();
    s.write_all(
        b"POST /v1/txs HTTP/1.1\r\nHost: strata\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"txs\": [",
    )
    .unwrap();
    let since = Instant::now();
    let answer = read_answer(&mut s).expect("an answer, not a bare close");
    let after = since.elapsed();
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(
        answer.body.contains("request not done within"),
        "{answer:?}"
    );
    assert!(
        after >= timeout / 2 && after <= ANSWER_TIMEOUT,
        "answered 408 after {after:?} (timeout {timeout:?})"
    );
}

/// POSTs a binary batch on a fresh connection: (status, `Retry-After`,
/// body).
fn post_batch(net: &Devnet, txs: &[Transaction]) -> (u16, Option<String>, String) {
    let body = strata_consensus::wire::Payload::Txs(txs.to_vec()).encode();
    let agent = ureq::AgentBuilder::new().timeout(ANSWER_TIMEOUT).build();
    let r = agent
        .post(&net.url(0, "/v1/txs"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(&body);
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST /v1/txs: {e}"),
    };
    let retry = r.header("Retry-After").map(String::from);
    (r.status(), retry, r.into_string().unwrap_or_default())
}

/// One address may submit `txs_per_s_per_ip` transactions a second:
/// batches sent at once beyond that budget are answered 429 with a
/// `Retry-After`, and after that long the same batch is taken.
#[test]
fn submissions_past_the_per_ip_budget_get_429_with_retry_after() {
    const TXS_PER_S: usize = 50;
    const BATCHES: usize = 4;
    let net = Devnet::start_with_config(
        1,
        Some(&format!("[http]\ntxs_per_s_per_ip = {TXS_PER_S}\n")),
    );
    drop(ready_connection(&net));
    // Each batch is a whole second's budget, from senders of its own.
    let batches: Vec<Vec<Transaction>> = (0..BATCHES)
        .map(|b| {
            (0..TXS_PER_S)
                .map(|i| transfer(&net.genesis, 100 + b * TXS_PER_S + i, 1, 0))
                .collect()
        })
        .collect();
    // All at once: the budget is charged before any signature is checked,
    // so every batch but the first to be charged finds it spent (it
    // refills one batch's worth a second).
    let barrier = std::sync::Barrier::new(BATCHES);
    let answers: Vec<(u16, Option<String>, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .iter()
            .map(|batch| {
                let (net, barrier) = (&net, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    post_batch(net, batch)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // For failure messages: status, Retry-After and the start of the body.
    let summary: Vec<(u16, Option<&str>, String)> = answers
        .iter()
        .map(|(status, retry, body)| (*status, retry.as_deref(), body.chars().take(80).collect()))
        .collect();
    let accepted = answers.iter().filter(|a| a.0 == 200).count();
    let limited: Vec<usize> = (0..BATCHES).filter(|&i| answers[i].0 == 429).collect();
    assert!(accepted >= 1, "the budget took no batch: {summary:?}");
    assert!(
        !limited.is_empty(),
        "{BATCHES} batches of {TXS_PER_S} at once against {TXS_PER_S}/s: no 429: {summary:?}"
    );
    assert_eq!(accepted + limited.len(), BATCHES, "{summary:?}");
    for &i in &limited {
        let (_, retry, body) = &answers[i];
        let retry_s: u64 = retry
            .as_deref()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {:?}", summary[i]));
        assert!(retry_s >= 1, "{:?}", summary[i]);
        assert!(body.contains("transactions per second"), "{body}");
    }
    // Waiting as told refills the budget: the refused batch is taken.
    let (_, retry, _) = &answers[limited[0]];
    let wait_s: u64 = retry.as_deref().unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_secs(wait_s) + Duration::from_millis(100));
    let (status, _, body) = post_batch(&net, &batches[limited[0]]);
    assert_eq!(status, 200, "{body}");
}

/// A transaction from devnet account `from`, signed.
fn signed(net: &Devnet, from: usize, nonce: u64, amount: u64) -> Transaction {
    let key = devnet_account_key(from);
    TxBody {
        chain_id: net.genesis.chain_id,
        sender: key.verifying_key().to_bytes(),
        nonce,
        fee: 1,
        kind: TxKind::Transfer {
            to: [7; 32],
            amount,
        },
    }
    .sign(&key)
    .unwrap()
}

/// POSTs `txs` as JSON; returns the per-transaction results (`Ok(id)` or
/// `Err(reason)`).
fn submit_each(net: &Devnet, txs: &[Transaction]) -> Vec<Result<String, String>> {
    let body = serde_json::json!({
        "txs": txs.iter().map(|t| hex::encode(t.encoded())).collect::<Vec<_>>()
    });
    let (code, v) = net.post(
        0,
        "/v1/txs",
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{v}");
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match (r["id"].as_str(), r["error"].as_str()) {
            (Some(id), _) => Ok(id.to_string()),
            (_, Some(e)) => Err(e.to_string()),
            _ => panic!("a result with neither id nor error: {v}"),
        })
        .collect()
}

/// The reason transaction `i` of `results` was refused; panics if it was
/// admitted.
fn reason(results: &[Result<String, String>], i: usize) -> &str {
    match &results[i] {
        Err(e) => e,
        Ok(id) => panic!("transaction {i} was admitted as {id}: {results:?}"),
    }
}

/// The API names the mempool's reason for each refused transaction: a
/// nonce past `mempool.nonce_gap_max` is a "nonce gap" (the bound itself
/// is admitted), one past `per_sender_max` is "too far ahead", and a
/// transfer the sender cannot pay is "insufficient balance", whether it
/// is unfundable alone (refused before its signature is checked) or only
/// together with the sender's pending ones (refused by the mempool).
#[test]
fn refusals_name_nonce_gap_and_insufficient_balance() {
    const NONCE_GAP_MAX: u64 = 4;
    // No block is proposed during the test (a 10-minute proposal delay),
    // so what is pending stays pending and balances stay at genesis.
    let net = Devnet::start_with_config(
        1,
        Some(&format!(
            "[mempool]\nnonce_gap_max = {NONCE_GAP_MAX}\n\n[consensus]\npropose_delay_ms = 600000\n"
        )),
    );
    net.wait_ready(READY_TIMEOUT);

    let results = submit_each(
        &net,
        &[
            signed(&net, 10, NONCE_GAP_MAX, 1),
            signed(&net, 11, NONCE_GAP_MAX + 1, 1),
            signed(&net, 12, 5_000, 1),
        ],
    );
    assert!(results[0].is_ok(), "a nonce at the gap bound: {results:?}");
    let e = reason(&results, 1);
    assert!(
        e.starts_with(&format!(
            "nonce gap: nonce {}, but the sender's next missing nonce is 0",
            NONCE_GAP_MAX + 1
        )),
        "{e}"
    );
    let e = reason(&results, 2);
    assert!(e.contains("too far ahead"), "{e}");

    // Alone unfundable (amount + fee is one more than the balance):
    // refused before its signature is checked, which the unfunded count
    // shows (the mempool would give the same reason later).
    let unfunded = || net.metric(0, "strata_txs_unfunded_total");
    let unfunded_before = unfunded();
    let results = submit_each(&net, &[signed(&net, 20, 0, DEVNET_BALANCE)]);
    let e = reason(&results, 0);
    assert!(
        e.starts_with(&format!("insufficient balance: {DEVNET_BALANCE}")),
        "{e}"
    );
    assert_eq!(
        unfunded(),
        unfunded_before + 1.0,
        "not refused before checking"
    );
    // Each fundable alone, not together: the mempool refuses the second.
    let half = DEVNET_BALANCE / 2;
    let results = submit_each(&net, &[signed(&net, 21, 0, half)]);
    assert!(results[0].is_ok(), "{results:?}");
    let results = submit_each(&net, &[signed(&net, 21, 1, half)]);
    let e = reason(&results, 0);
    assert!(
        e.starts_with(&format!(
            "insufficient balance: {DEVNET_BALANCE}, but this and the sender's pending \
             transactions spend {}",
            2 * (half + 1)
        )),
        "{e}"
    );
    assert_eq!(net.get(0, "/v1/status").0, 200);
}
