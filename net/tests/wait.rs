//! `Handle::next_event_timeout` between two real nodes on 127.0.0.1: a
//! waiter wakes promptly when a message arrives, returns `None` once the
//! timeout passes with nothing queued, and receives every message of a
//! burst without falling back to polling.

mod common;

use std::time::{Duration, Instant};

use common::*;
use strata_net::{Error, Event};

/// Generous against a loaded 2-core CI machine, and still far below the
/// waits' timeouts, so a waiter that slept out its timeout fails the test.
const PROMPT: Duration = Duration::from_secs(2);
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn a_waiter_wakes_promptly_when_a_message_arrives() {
    let (a, b) = connected_pair();
    let b_key = b.node_key();
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            // Let the receiver go to sleep first.
            std::thread::sleep(Duration::from_millis(200));
            let sent_at = Instant::now();
            a.send(b_key, b"wake up".to_vec()).unwrap();
            sent_at
        });
        let t = Instant::now();
        let ev = b.next_event_timeout(WAIT_TIMEOUT);
        let received_at = Instant::now();
        let sent_at = sender.join().unwrap();
        assert_eq!(
            ev,
            Some(Event::Message {
                from: a.node_key(),
                payload: b"wake up".to_vec()
            })
        );
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "returned before the message was sent"
        );
        let latency = received_at.saturating_duration_since(sent_at);
        assert!(latency < PROMPT, "woke {latency:?} after the send");
    });
}

#[test]
fn a_waiter_returns_none_after_the_timeout() {
    let (a, b) = connected_pair();
    for timeout in [
        Duration::ZERO,
        Duration::from_millis(100),
        Duration::from_millis(300),
    ] {
        let t = Instant::now();
        assert_eq!(b.next_event_timeout(timeout), None);
        let waited = t.elapsed();
        assert!(waited >= timeout, "waited {waited:?} of {timeout:?}");
        assert!(
            waited < timeout + PROMPT,
            "waited {waited:?} of {timeout:?}"
        );
    }
    drop(a);
}

#[test]
fn a_burst_of_messages_is_received_in_full_and_in_order() {
    const MESSAGES: u32 = 20_000;
    let (a, b) = connected_pair();
    let b_key = b.node_key();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..MESSAGES {
                loop {
                    match a.send(b_key, i.to_le_bytes().to_vec()) {
                        Ok(()) => break,
                        // Backpressure from the command queue: retry.
                        Err(Error::QueueFull { .. }) => std::thread::yield_now(),
                        Err(e) => panic!("send {i}: {e}"),
                    }
                }
            }
        });
        for i in 0..MESSAGES {
            match b.next_event_timeout(WAIT_TIMEOUT) {
                Some(Event::Message { payload, .. }) => {
                    assert_eq!(payload, i.to_le_bytes(), "message {i} out of order");
                }
                other => panic!("message {i}: got {other:?}"),
            }
        }
    });
    assert_eq!(
        b.stats()
            .events_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(b.try_next_event(), None);
}

#[test]
fn several_threads_waiting_on_one_handle_share_the_events() {
    const MESSAGES: u32 = 2_000;
    let (a, b) = connected_pair();
    let b_key = b.node_key();
    let received = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while received.load(std::sync::atomic::Ordering::SeqCst) < MESSAGES {
                    if let Some(Event::Message { .. }) =
                        b.next_event_timeout(Duration::from_millis(50))
                    {
                        received.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
        for i in 0..MESSAGES {
            while a.send(b_key, i.to_le_bytes().to_vec()).is_err() {
                std::thread::yield_now();
            }
        }
        assert!(
            wait_until(WAIT_TIMEOUT, || received
                .load(std::sync::atomic::Ordering::SeqCst)
                == MESSAGES),
            "only {} of {MESSAGES} received",
            received.load(std::sync::atomic::Ordering::SeqCst)
        );
    });
}
