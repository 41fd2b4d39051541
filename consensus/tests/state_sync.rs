//! State sync end to end over a real store: a chain committed to a `Db`,
//! a snapshot of it served by in-memory peers (honest, lying, silent,
//! busy), and a `StateSync` that must end with exactly the snapshot's
//! state — its `s` records, their root — while every liar is caught by
//! the check its lie breaks. Also the codec: round trips, and errors
//! (never panics) on truncated, oversized and garbage input.

use std::collections::VecDeque;
use std::sync::Arc;

use strata_consensus::block::Block;
use strata_consensus::db_chain::DbChain;
use strata_consensus::engine::Chain;
use strata_consensus::error::DecodeError;
use strata_consensus::genesis::{devnet_account_key, Genesis};
use strata_consensus::mem_chain::MemChain;
use strata_consensus::state::StateKey;
use strata_consensus::sync::limits::{
    CHUNK_RESPONSE_BYTES_MAX, SNAPSHOT_HEADS_MAX, STATE_VALUE_BYTES_MAX,
};
use strata_consensus::sync::{
    choose_head, respond, serve_chunk, verify_chunk, BadChunk, Chunk, ChunkRequest, Failure,
    Outcome, RangeCursor, RefuseReason, ServedSnapshot, SnapshotHead, StateSync, StateSyncConfig,
    SyncError, SyncRequest, SyncResponse, TAG_CHUNK, TAG_HEADS, TAG_REFUSED,
};
use strata_consensus::tx::{Transaction, TxBody, TxKind, USER_VALUE_BYTES_MAX};
use strata_storage::merkle::{self, RangeProofError};
use strata_storage::{Db, Options};

fn tx(from: usize, nonce: u64, kind: TxKind) -> Arc<Transaction> {
    let key = devnet_account_key(from);
    Arc::new(
        TxBody {
            chain_id: Genesis::devnet(1).chain_id,
            sender: key.verifying_key().to_bytes(),
            nonce,
            fee: 3,
            kind,
        }
        .sign(&key)
        .unwrap(),
    )
}

fn commit_both(db: &mut DbChain, mem: &mut MemChain, height: u64, txs: Vec<Arc<Transaction>>) {
    let diff = mem
        .execute(strata_consensus::state::BlockEnv::default(), &txs)
        .unwrap();
    let ids = txs.iter().map(|t| *t.id()).collect();
    let block = Block::new(
        height,
        mem.last_block_id(),
        mem.state_root(),
        [9; 32],
        0,
        ids,
    )
    .unwrap();
    db.commit(&block, &txs, diff.clone()).unwrap();
    mem.commit(&block, &txs, diff).unwrap();
    assert_eq!(db.state_root(), mem.state_root());
}

/// Transfers to new accounts, user values of every size up to the limit,
/// and deletes of earlier ones: the state holds entries of three kinds and
/// sizes, and some keys were removed again.
fn block_txs(height: u64) -> Vec<Arc<Transaction>> {
    let nonce = height - 1;
    let mut txs = Vec::new();
    for i in 0..10 {
        let to = devnet_account_key(5_000 + 10 * height as usize + i)
            .verifying_key()
            .to_bytes();
        txs.push(tx(i, nonce, TxKind::Transfer { to, amount: 7 }));
    }
    let sizes = [1, 7, 64, 300, USER_VALUE_BYTES_MAX];
    for i in 10..20 {
        let key = format!("k{height}").into_bytes();
        let kind = if height == 4 && i < 13 {
            TxKind::Delete {
                key: b"k1".to_vec(),
            }
        } else {
            TxKind::Put {
                key,
                value: vec![height as u8; sizes[i % sizes.len()]],
            }
        };
        txs.push(tx(i, nonce, kind));
    }
    txs
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: Arc<Db>,
    served: ServedSnapshot,
    /// The snapshot's `s` records, keys without the namespace byte.
    records: Vec<(StateKey, Vec<u8>)>,
}

/// A devnet chain at height 5 whose snapshot was taken at height 4.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let genesis = Genesis::devnet(4);
    let db = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let mut chain = DbChain::open(Arc::clone(&db), &genesis).unwrap();
    let mut mem = MemChain::new(&genesis);
    for h in 1..=4 {
        commit_both(&mut chain, &mut mem, h, block_txs(h));
    }
    let served = ServedSnapshot::new(db.snapshot()).unwrap();
    // The node moves on; the snapshot stays at height 4.
    commit_both(&mut chain, &mut mem, 5, block_txs(5));
    let records: Vec<(StateKey, Vec<u8>)> = served
        .snapshot()
        .scan_prefix(b"s")
        .unwrap()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k[1..].try_into().unwrap(), v)
        })
        .collect();
    let head = *served.head();
    assert_eq!(head.height, 4);
    assert_eq!(head.entries, records.len() as u64);
    assert_ne!(
        head.state_root,
        chain.state_root(),
        "height 5 changed the state"
    );
    assert!(records.iter().any(|(_, v)| v.len() == USER_VALUE_BYTES_MAX));
    Fixture {
        _dir: dir,
        db,
        served,
        records,
    }
}

fn root_of(entries: &[(StateKey, Vec<u8>)]) -> [u8; 32] {
    merkle::root_of_sorted(entries.iter().map(|(k, v)| (*k, merkle::value_hash(v)))).unwrap()
}

fn key_after(key: &StateKey) -> StateKey {
    let mut next = *key;
    for byte in next.iter_mut().rev() {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    next
}

/// How an in-memory peer answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Honest,
    ChangeValue,
    DropKey,
    AddKey,
    MoveHi,
    Garbage,
    Silent,
    Busy,
    UnknownHeight,
}

/// The answer of a peer with `behaviour` to `request`; `None`: silence.
fn answer(behaviour: Behaviour, served: &ServedSnapshot, request: &[u8]) -> Option<Vec<u8>> {
    let request = SyncRequest::decode(request).unwrap();
    let honest = respond(std::slice::from_ref(served), &request).unwrap();
    let mut chunk = match (behaviour, honest) {
        (Behaviour::Silent, _) => return None,
        (Behaviour::Busy, _) => return Some(SyncResponse::Refused(RefuseReason::Busy).encode()),
        (Behaviour::UnknownHeight, _) => {
            return Some(SyncResponse::Refused(RefuseReason::UnknownHeight).encode())
        }
        (Behaviour::Garbage, _) => return Some(vec![TAG_CHUNK, 1, 2, 3]),
        (Behaviour::Honest, honest) => return Some(honest.encode()),
        (_, SyncResponse::Chunk(chunk)) => chunk,
        (_, other) => panic!("a chunk request answered with {other:?}"),
    };
    let n = chunk.entries.len();
    match behaviour {
        Behaviour::ChangeValue => chunk.entries[n / 2].1.push(1),
        Behaviour::DropKey => {
            assert!(n >= 3, "the middle key of a chunk of {n}");
            chunk.entries.remove(n / 2);
        }
        Behaviour::AddKey => {
            let key = key_after(&chunk.entries[0].0);
            assert!(n >= 3 && key < chunk.entries[1].0);
            if !chunk.done {
                // Room for the extra key within the budget: the honest
                // chunk that ends one key earlier, with its proof.
                let SyncRequest::Chunk(asked) = request else {
                    unreachable!("a chunk answers a chunk request")
                };
                let shorter = ChunkRequest {
                    end: chunk.entries[n - 2].0,
                    ..asked
                };
                let Ok(SyncResponse::Chunk(c)) = serve_chunk(served.snapshot(), &shorter) else {
                    panic!("the shorter chunk");
                };
                chunk = Chunk { done: false, ..c };
            }
            chunk.entries.insert(1, (key, vec![5; 16]));
        }
        Behaviour::MoveHi => {
            // One key further than the last entry, or, when done, one
            // short of the end.
            chunk.hi = if chunk.done {
                let mut hi = chunk.hi;
                hi[31] ^= 1;
                hi
            } else {
                key_after(&chunk.hi)
            };
        }
        _ => unreachable!(),
    }
    Some(SyncResponse::Chunk(chunk).encode())
}

/// What a driven sync saw.
#[derive(Default)]
struct Run {
    by_range: Vec<Vec<(StateKey, Vec<u8>)>>,
    blamed: Vec<(u32, SyncError)>,
    refused: Vec<(u32, RefuseReason, bool)>,
    failures: Vec<Failure<u32>>,
    stale: usize,
    ingests: usize,
}

fn config() -> StateSyncConfig {
    StateSyncConfig::new()
        .ranges(8)
        .in_flight_max(6)
        .in_flight_per_peer_max(2)
        .chunk_bytes_max(8 * 1024)
        .request_timeout_ms(5_000)
        .busy_backoff_ms(500)
}

/// Runs `sync` against peers `0..behaviours.len()` until done or after
/// `ingests_max` chunks, delivering answers out of order (alternately the
/// oldest and the newest), advancing time only when nothing is pending.
/// Ingests every verified chunk into `into` when given.
fn drive(
    sync: &mut StateSync<u32>,
    served: &ServedSnapshot,
    behaviours: &[Behaviour],
    ingests_max: usize,
    into: Option<&Db>,
) -> Run {
    let mut run = Run {
        by_range: vec![Vec::new(); 8],
        ..Run::default()
    };
    let mut now_ms = 0u64;
    let mut pending: VecDeque<(u64, u32, Option<Vec<u8>>)> = VecDeque::new();
    for step in 0..100_000u64 {
        while let Some(out) = sync.poll_request(now_ms) {
            let behaviour = behaviours[out.peer as usize];
            let reply = answer(behaviour, served, &out.payload());
            pending.push_back((out.ticket, out.peer, reply));
        }
        if sync.is_done() || run.ingests >= ingests_max {
            return run;
        }
        let next = if step % 2 == 0 {
            pending.pop_front()
        } else {
            pending.pop_back()
        };
        match next {
            Some((ticket, peer, Some(bytes))) => {
                match sync.on_response_bytes(ticket, &bytes, now_ms) {
                    Outcome::Ingest { range, chunk } => {
                        let seen = &mut run.by_range[range];
                        if let (Some((last, _)), Some((first, _))) =
                            (seen.last(), chunk.entries.first())
                        {
                            assert!(last < first, "chunks of a range arrive in key order");
                        }
                        if let Some(db) = into {
                            if !chunk.entries.is_empty() {
                                db.ingest_sorted(chunk.records()).unwrap();
                            }
                        }
                        seen.extend(chunk.entries);
                        run.ingests += 1;
                    }
                    Outcome::Blame { peer: p, error } => {
                        assert_eq!(p, peer);
                        assert!(error.is_peer_fault());
                        run.blamed.push((p, error));
                    }
                    Outcome::Refused {
                        peer: p,
                        reason,
                        dropped,
                    } => run.refused.push((p, reason, dropped)),
                    Outcome::Stale => run.stale += 1,
                }
            }
            // Silence: the request just never comes back.
            Some((_, _, None)) => {}
            None => {
                now_ms += 1_000;
                run.failures.extend(sync.on_tick(now_ms));
            }
        }
        now_ms += 1;
    }
    panic!("the sync did not finish: {:?}", sync.progress());
}

/// The sync is complete, and what it fetched is the snapshot's state.
fn assert_complete(fx: &Fixture, sync: &StateSync<u32>, fetched: Vec<(StateKey, Vec<u8>)>) {
    let progress = sync.finish().unwrap();
    assert_eq!(progress.entries, fx.records.len() as u64);
    assert_eq!(fetched.len(), fx.records.len());
    assert!(
        fetched == fx.records,
        "fetched state differs from the snapshot"
    );
    assert_eq!(root_of(&fetched), fx.served.head().state_root);
}

#[test]
fn a_full_sync_from_three_peers_is_exactly_the_snapshot_state() {
    let fx = fixture();
    let mut sync = StateSync::new(*fx.served.head(), config()).unwrap();
    for peer in 0..3 {
        sync.add_peer(peer).unwrap();
    }
    let target_dir = tempfile::tempdir().unwrap();
    let target = Db::open(target_dir.path(), Options::new()).unwrap();
    let run = drive(
        &mut sync,
        &fx.served,
        &[Behaviour::Honest; 3],
        usize::MAX,
        Some(&target),
    );
    assert!(run.blamed.is_empty() && run.refused.is_empty() && run.failures.is_empty());
    assert!(run.ingests > 3 * 8, "small chunks: {} of them", run.ingests);
    let progress = sync.progress();
    assert_eq!(progress.chunks as usize, run.ingests);
    assert_eq!(progress.ranges_done, 8);
    // Each sub-range stays within its bounds.
    for (range, entries) in run.by_range.iter().enumerate() {
        let (start, end) = sync.range_bounds(range).unwrap();
        assert!(entries.iter().all(|(k, _)| start <= *k && *k <= end));
    }
    assert_complete(&fx, &sync, run.by_range.concat());
    // Ingested chunk by chunk, the target store holds the same records.
    let ingested: Vec<(Vec<u8>, Vec<u8>)> =
        target.scan(..).unwrap().map(|kv| kv.unwrap()).collect();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = fx
        .served
        .snapshot()
        .scan_prefix(b"s")
        .unwrap()
        .map(|kv| kv.unwrap())
        .collect();
    assert!(ingested == expected);
    drop(fx.db);
}

#[test]
fn each_lying_peer_is_blamed_for_its_lie_and_the_sync_completes_elsewhere() {
    let fx = fixture();
    type IsExpected = fn(&SyncError) -> bool;
    let cases: [(Behaviour, IsExpected); 5] = [
        (Behaviour::ChangeValue, |e| {
            matches!(
                e,
                SyncError::BadChunk {
                    reason: BadChunk::Proof(RangeProofError::RootMismatch)
                }
            )
        }),
        (Behaviour::DropKey, |e| {
            matches!(
                e,
                SyncError::BadChunk {
                    reason: BadChunk::Proof(RangeProofError::RootMismatch)
                }
            )
        }),
        (Behaviour::AddKey, |e| {
            matches!(
                e,
                SyncError::BadChunk {
                    reason: BadChunk::Proof(RangeProofError::RootMismatch)
                }
            )
        }),
        (Behaviour::MoveHi, |e| {
            matches!(
                e,
                SyncError::BadChunk {
                    reason: BadChunk::WrongHi { .. }
                }
            )
        }),
        (Behaviour::Garbage, |e| {
            matches!(e, SyncError::Decode(DecodeError::Truncated { .. }))
        }),
    ];
    for (liar, is_expected) in cases {
        let mut sync = StateSync::new(*fx.served.head(), config()).unwrap();
        for peer in 0..3 {
            sync.add_peer(peer).unwrap();
        }
        // Peer 0 comes first among equals, so it is asked at once.
        let behaviours = [liar, Behaviour::Honest, Behaviour::Honest];
        let run = drive(&mut sync, &fx.served, &behaviours, usize::MAX, None);
        assert_eq!(run.blamed.len(), 1, "{liar:?}: blamed {:?}", run.blamed);
        let (peer, error) = &run.blamed[0];
        assert_eq!(*peer, 0);
        assert!(is_expected(error), "{liar:?}: {error}");
        // The liar's other request in flight was re-asked: its answer is stale.
        assert!(run.stale <= 1);
        assert_eq!(sync.progress().peers, 2, "{liar:?}: the liar is dropped");
        assert_complete(&fx, &sync, run.by_range.concat());
    }
}

#[test]
fn a_silent_peer_times_out_and_is_dropped_while_the_sync_completes() {
    let fx = fixture();
    let mut sync = StateSync::new(*fx.served.head(), config()).unwrap();
    for peer in 0..3 {
        sync.add_peer(peer).unwrap();
    }
    let behaviours = [Behaviour::Silent, Behaviour::Honest, Behaviour::Honest];
    let run = drive(&mut sync, &fx.served, &behaviours, usize::MAX, None);
    assert!(!run.failures.is_empty());
    assert!(run.failures.iter().all(|f| f.peer == 0));
    assert!(run.failures.iter().any(|f| f.dropped), "{:?}", run.failures);
    assert!(run.blamed.is_empty(), "silence is not a lie");
    assert_complete(&fx, &sync, run.by_range.concat());
}

#[test]
fn busy_and_heightless_peers_are_refusals_not_faults() {
    let fx = fixture();
    let mut sync = StateSync::new(*fx.served.head(), config()).unwrap();
    for peer in 0..3 {
        sync.add_peer(peer).unwrap();
    }
    let behaviours = [Behaviour::Busy, Behaviour::UnknownHeight, Behaviour::Honest];
    let run = drive(&mut sync, &fx.served, &behaviours, usize::MAX, None);
    assert!(run.blamed.is_empty());
    assert!(run.refused.contains(&(0, RefuseReason::Busy, false)));
    assert!(run
        .refused
        .contains(&(1, RefuseReason::UnknownHeight, true)));
    assert_eq!(
        sync.progress().peers,
        2,
        "the busy peer stays, the other goes"
    );
    assert_complete(&fx, &sync, run.by_range.concat());
}

#[test]
fn a_sync_resumes_from_its_cursors() {
    let fx = fixture();
    let mut first = StateSync::new(*fx.served.head(), config()).unwrap();
    first.add_peer(0).unwrap();
    let behaviours = [Behaviour::Honest];
    let before = drive(&mut first, &fx.served, &behaviours, 10, None);
    assert!(!first.is_done());
    // What a node would persist after each ingest; in-flight requests are lost.
    let cursors: Vec<RangeCursor> = first.cursors().collect();
    let entries_done = first.progress().entries;
    drop(first);
    let mut second =
        StateSync::resume(*fx.served.head(), config(), &cursors, entries_done).unwrap();
    second.add_peer(7).unwrap();
    let after = drive(
        &mut second,
        &fx.served,
        &[Behaviour::Honest; 8],
        usize::MAX,
        None,
    );
    let mut fetched: Vec<_> = before
        .by_range
        .into_iter()
        .chain(after.by_range)
        .flatten()
        .collect();
    fetched.sort();
    assert_complete(&fx, &second, fetched);
    assert!(matches!(
        StateSync::<u32>::resume(*fx.served.head(), config(), &cursors[1..], 0),
        Err(SyncError::Config(_))
    ));
    let mut outside = cursors.clone();
    outside[0] = RangeCursor::Next([0xff; 32]);
    assert!(matches!(
        StateSync::<u32>::resume(*fx.served.head(), config(), &outside, 0),
        Err(SyncError::Config(_))
    ));
}

#[test]
fn a_late_answer_after_a_timeout_is_stale_and_the_range_is_asked_again() {
    let fx = fixture();
    let mut sync = StateSync::new(*fx.served.head(), config().ranges(1).in_flight_max(1)).unwrap();
    sync.add_peer(0).unwrap();
    sync.add_peer(1).unwrap();
    let first = sync.poll_request(0).unwrap();
    assert!(sync.poll_request(0).is_none(), "one range, one request");
    assert!(sync.on_tick(4_999).is_empty());
    let failures = sync.on_tick(5_000);
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].ticket, failures[0].dropped),
        (first.ticket, false)
    );
    let late = answer(Behaviour::Honest, &fx.served, &first.payload()).unwrap();
    assert!(matches!(
        sync.on_response_bytes(first.ticket, &late, 5_001),
        Outcome::Stale
    ));
    let again = sync.poll_request(5_001).unwrap();
    assert_eq!(again.request, first.request);
    assert_ne!(
        again.peer, first.peer,
        "the peer that failed the range is avoided"
    );
    assert!(sync.on_failure(again.ticket).is_some());
    assert!(
        sync.on_failure(again.ticket).is_none(),
        "a ticket fails once"
    );
}

#[test]
fn a_tiny_budget_still_returns_one_entry_and_an_empty_range_proves_empty() {
    let fx = fixture();
    let head = *fx.served.head();
    for bytes_max in [0, 1, 40] {
        let asked = ChunkRequest {
            height: head.height,
            lo: [0; 32],
            end: [0xff; 32],
            bytes_max,
        };
        let SyncResponse::Chunk(chunk) = serve_chunk(fx.served.snapshot(), &asked).unwrap() else {
            panic!("not a chunk");
        };
        assert_eq!(chunk.entries.len(), 1);
        assert!(!chunk.done);
        assert_eq!(chunk.hi, fx.records[0].0);
        let verified = verify_chunk(&head, &asked, chunk).unwrap();
        assert_eq!(verified.entries, fx.records[..1]);
    }
    // Between two neighbouring keys there is nothing, and the proof says so.
    let lo = key_after(&fx.records[0].0);
    assert!(lo < fx.records[1].0);
    let asked = ChunkRequest {
        height: head.height,
        lo,
        end: lo,
        bytes_max: 1 << 20,
    };
    let SyncResponse::Chunk(chunk) = serve_chunk(fx.served.snapshot(), &asked).unwrap() else {
        panic!("not a chunk");
    };
    assert!(chunk.done && chunk.entries.is_empty() && chunk.hi == lo);
    assert!(verify_chunk(&head, &asked, chunk.clone()).is_ok());
    // Claiming emptiness over a range that holds a key fails.
    let wider = ChunkRequest {
        lo: fx.records[1].0,
        end: fx.records[1].0,
        ..asked
    };
    let lie = Chunk {
        lo: wider.lo,
        hi: wider.end,
        ..chunk
    };
    assert!(matches!(
        verify_chunk(&head, &wider, lie),
        Err(SyncError::BadChunk {
            reason: BadChunk::Proof(_)
        })
    ));
}

#[test]
fn the_server_refuses_what_it_cannot_serve_and_checks_its_snapshot() {
    let fx = fixture();
    let head = *fx.served.head();
    let served = std::slice::from_ref(&fx.served);
    assert_eq!(
        respond(served, &SyncRequest::Heads).unwrap(),
        SyncResponse::Heads(vec![head])
    );
    let asked = ChunkRequest {
        height: head.height + 1,
        lo: [0; 32],
        end: [0xff; 32],
        bytes_max: 1024,
    };
    assert_eq!(
        respond(served, &SyncRequest::Chunk(asked)).unwrap(),
        SyncResponse::Refused(RefuseReason::UnknownHeight)
    );
    assert!(matches!(
        serve_chunk(fx.served.snapshot(), &asked),
        Err(SyncError::SnapshotHeight {
            snapshot: 4,
            asked: 5
        })
    ));
    let inverted = ChunkRequest {
        height: head.height,
        lo: [2; 32],
        end: [1; 32],
        bytes_max: 1024,
    };
    assert_eq!(
        serve_chunk(fx.served.snapshot(), &inverted).unwrap(),
        SyncResponse::Refused(RefuseReason::BadRange)
    );
}

#[test]
fn verify_chunk_names_each_broken_rule() {
    let fx = fixture();
    let head = *fx.served.head();
    let asked = ChunkRequest {
        height: head.height,
        lo: [0x40; 32],
        end: [0x7f; 32],
        bytes_max: 4096,
    };
    let SyncResponse::Chunk(good) = serve_chunk(fx.served.snapshot(), &asked).unwrap() else {
        panic!("not a chunk");
    };
    assert!(good.entries.len() >= 3 && !good.done);
    assert!(verify_chunk(&head, &asked, good.clone()).is_ok());
    let reason = |chunk: Chunk| match verify_chunk(&head, &asked, chunk) {
        Err(SyncError::BadChunk { reason }) => reason,
        other => panic!("{other:?}"),
    };
    let mut c = good.clone();
    c.height += 1;
    assert!(matches!(reason(c), BadChunk::WrongHeight { .. }));
    let mut c = good.clone();
    c.lo[31] ^= 1;
    assert!(matches!(reason(c), BadChunk::WrongLo { .. }));
    let mut c = good.clone();
    c.entries.swap(0, 1);
    assert_eq!(reason(c), BadChunk::NotAscending { index: 1 });
    let mut c = good.clone();
    c.entries[0].1 = vec![0; STATE_VALUE_BYTES_MAX + 1];
    assert!(matches!(reason(c), BadChunk::ValueTooLong { index: 0, .. }));
    let mut c = good.clone();
    c.entries.extend(
        fx.records
            .iter()
            .filter(|(k, _)| *k > good.hi)
            .take(200)
            .cloned(),
    );
    c.hi = c.entries.last().unwrap().0;
    assert!(matches!(reason(c), BadChunk::OverBudget { .. }));
    let mut c = good.clone();
    c.entries.clear();
    assert_eq!(reason(c), BadChunk::EmptyNotDone);
    let mut c = good.clone();
    c.done = true;
    assert!(matches!(reason(c), BadChunk::WrongHi { .. }));
    let mut c = good.clone();
    let before_lo = fx
        .records
        .iter()
        .rev()
        .find(|(k, _)| *k < asked.lo)
        .unwrap()
        .clone();
    // Within the budget: drop the last entry (which alone is honest).
    c.entries.pop();
    c.hi = c.entries.last().unwrap().0;
    c.entries.insert(0, before_lo);
    assert!(matches!(reason(c), BadChunk::OutsideRange { index: 0, .. }));
    let mut c = good.clone();
    c.proof.items.pop();
    assert!(matches!(reason(c), BadChunk::Proof(_)));
    // A chunk verified against another head's root fails the proof.
    let other = SnapshotHead {
        state_root: [7; 32],
        ..head
    };
    assert!(matches!(
        verify_chunk(&other, &asked, good),
        Err(SyncError::BadChunk {
            reason: BadChunk::Proof(RangeProofError::RootMismatch)
        })
    ));
}

fn sample_messages(fx: &Fixture) -> (Vec<SyncRequest>, Vec<SyncResponse>) {
    let head = *fx.served.head();
    let asked = ChunkRequest {
        height: head.height,
        lo: [0x10; 32],
        end: [0x30; 32],
        bytes_max: 2048,
    };
    let chunk = serve_chunk(fx.served.snapshot(), &asked).unwrap();
    let empty = serve_chunk(
        fx.served.snapshot(),
        &ChunkRequest {
            lo: key_after(&fx.records[0].0),
            end: key_after(&fx.records[0].0),
            ..asked
        },
    )
    .unwrap();
    let heads: Vec<SnapshotHead> = (0..SNAPSHOT_HEADS_MAX as u64)
        .map(|i| SnapshotHead {
            height: 100 * i,
            ..head
        })
        .collect();
    (
        vec![SyncRequest::Heads, SyncRequest::Chunk(asked)],
        vec![
            SyncResponse::Heads(Vec::new()),
            SyncResponse::Heads(heads),
            chunk,
            empty,
            SyncResponse::Refused(RefuseReason::UnknownHeight),
            SyncResponse::Refused(RefuseReason::Busy),
            SyncResponse::Refused(RefuseReason::BadRange),
        ],
    )
}

#[test]
fn every_message_round_trips_and_every_prefix_or_extension_fails() {
    let fx = fixture();
    let (requests, responses) = sample_messages(&fx);
    for request in &requests {
        let bytes = request.encode();
        assert_eq!(SyncRequest::decode(&bytes).unwrap(), *request);
        assert!(
            SyncResponse::decode(&bytes).is_err(),
            "requests are not responses"
        );
        for len in 0..bytes.len() {
            assert!(SyncRequest::decode(&bytes[..len]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SyncRequest::decode(&longer).is_err());
    }
    for response in &responses {
        let bytes = response.encode();
        assert_eq!(SyncResponse::decode(&bytes).unwrap(), *response);
        assert!(
            SyncRequest::decode(&bytes).is_err(),
            "responses are not requests"
        );
        for len in 0..bytes.len() {
            assert!(
                SyncResponse::decode(&bytes[..len]).is_err(),
                "prefix of {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SyncResponse::decode(&longer).is_err());
    }
}

#[test]
fn oversized_and_malformed_messages_are_errors() {
    let too_long =
        |r: Result<SyncResponse, DecodeError>| matches!(r, Err(DecodeError::TooLong { .. }));
    let mut huge = vec![0u8; CHUNK_RESPONSE_BYTES_MAX + 1];
    huge[0] = TAG_CHUNK;
    assert!(too_long(SyncResponse::decode(&huge)));
    assert!(matches!(
        SyncRequest::decode(&[0x41; 78]),
        Err(DecodeError::TooLong { .. })
    ));
    // Nine heads.
    let mut heads = vec![TAG_HEADS, 9];
    heads.extend_from_slice(&[0; 9 * 80]);
    assert!(too_long(SyncResponse::decode(&heads)));
    // Heights not ascending.
    let mut heads = vec![TAG_HEADS, 2];
    heads.extend_from_slice(&[0; 2 * 80]);
    assert_eq!(
        SyncResponse::decode(&heads),
        Err(DecodeError::NotSorted {
            field: "snapshot heights"
        })
    );
    // A chunk header, then the given tail.
    let chunk = |done: u8, tail: &[u8]| {
        let mut b = vec![TAG_CHUNK];
        b.extend_from_slice(&[0; 8 + 32 + 32]);
        b.push(done);
        b.extend_from_slice(tail);
        b
    };
    assert!(matches!(
        SyncResponse::decode(&chunk(2, &[0; 8])),
        Err(DecodeError::UnknownTag {
            field: "done flag",
            tag: 2
        })
    ));
    // An entry count past the limit, announced in a short message.
    assert!(too_long(SyncResponse::decode(&chunk(
        0,
        &u32::MAX.to_le_bytes()
    ))));
    // One entry with a value over the limit.
    let mut entry = 1u32.to_le_bytes().to_vec();
    entry.extend_from_slice(&[0; 32]);
    entry.extend_from_slice(&(STATE_VALUE_BYTES_MAX as u16 + 1).to_le_bytes());
    assert!(too_long(SyncResponse::decode(&chunk(0, &entry))));
    // A proof length past the limit.
    let mut no_entries = 0u32.to_le_bytes().to_vec();
    no_entries.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(too_long(SyncResponse::decode(&chunk(0, &no_entries))));
    assert!(matches!(
        SyncResponse::decode(&[TAG_REFUSED, 9]),
        Err(DecodeError::UnknownTag {
            field: "refuse reason",
            tag: 9
        })
    ));
    assert!(SyncResponse::decode(&[]).is_err());
    assert!(
        SyncRequest::decode(&[0x05]).is_err(),
        "a wire tag is no sync tag"
    );
}

/// A small xorshift: deterministic garbage without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_and_mutated_messages_never_panic_and_accepted_ones_reencode_exactly() {
    let fx = fixture();
    let (requests, responses) = sample_messages(&fx);
    let mut seeds: Vec<Vec<u8>> = requests.iter().map(SyncRequest::encode).collect();
    seeds.extend(responses.iter().map(SyncResponse::encode));
    let mut rng = Rng(0x5eed);
    let check = |bytes: &[u8]| {
        if let Ok(r) = SyncRequest::decode(bytes) {
            assert_eq!(r.encode(), bytes);
        }
        if let Ok(r) = SyncResponse::decode(bytes) {
            assert_eq!(r.encode(), bytes);
        }
    };
    for _ in 0..20_000 {
        let len = (rng.next() % 200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(first) = bytes.first_mut() {
            *first = 0x40 + (*first % 6);
        }
        check(&bytes);
        let seed = &seeds[(rng.next() % seeds.len() as u64) as usize];
        let mut mutated = seed.clone();
        for _ in 0..1 + rng.next() % 3 {
            if !mutated.is_empty() {
                let at = (rng.next() % mutated.len() as u64) as usize;
                mutated[at] ^= 1 << (rng.next() % 8);
            }
        }
        check(&mutated);
    }
}

#[test]
fn the_head_is_the_highest_a_two_thirds_quorum_reports() {
    let head = |height: u64, root: u8| SnapshotHead {
        height,
        block_id: [height as u8; 32],
        state_root: [root; 32],
        entries: 3,
    };
    // The same peer twice, and a head twice in one answer, count once:
    // 40 + 20 of 100 is no quorum (counted twice it would be).
    let mut answers = vec![
        (1, 40, vec![head(10, 1), head(10, 1)]),
        (1, 40, vec![head(10, 1)]),
        (2, 20, vec![head(10, 1), head(20, 1)]),
    ];
    assert_eq!(choose_head(&answers, 100), None);
    answers.push((3, 10, vec![head(10, 1), head(20, 1)]));
    // 70 > 2/3 of 100 at height 10; height 20 has only 30.
    assert_eq!(choose_head(&answers, 100), Some(head(10, 1)));
    assert_eq!(choose_head(&answers, 104), Some(head(10, 1)));
    assert_eq!(
        choose_head(&answers, 105),
        None,
        "70 is not over 2/3 of 105"
    );
    assert_eq!(choose_head(&answers, 0), None);
    // The entry count must agree too: the root does not commit to it.
    let mut miscounted = head(10, 1);
    miscounted.entries += 1;
    answers[3].2 = vec![miscounted];
    assert_eq!(choose_head(&answers, 100), None);
    // Two quorums at one height: over 1/3 reported both; choose nothing.
    let split = vec![
        (1, 70, vec![head(30, 1), head(20, 1)]),
        (2, 70, vec![head(30, 2), head(20, 1)]),
    ];
    assert_eq!(choose_head(&split, 100), None);
}

/// What a join that cannot resume does: entries of another snapshot (and
/// its resume record) are deleted by `discard_synced_state`, after which
/// the fetched snapshot is adopted with its root. Without the discard the
/// stale keys would stay and the adoption fails on the root; a store that
/// holds a chain is never discarded.
#[test]
fn discarded_entries_of_another_snapshot_leave_room_for_the_right_one() {
    let fx = fixture();
    let genesis = Genesis::devnet(4);
    let head = *fx.served.head();
    let dir = tempfile::tempdir().unwrap();
    let target = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let with_ns = |entries: &[(StateKey, Vec<u8>)]| -> Vec<(Vec<u8>, Vec<u8>)> {
        entries
            .iter()
            .map(|(k, v)| ([&b"s"[..], k].concat(), v.clone()))
            .collect()
    };
    // An earlier run's entries: half the snapshot, plus a key it lacks.
    let mut stale = fx.records[..fx.records.len() / 2].to_vec();
    stale.push(([0xff; 32], b"not in the snapshot".to_vec()));
    target.ingest_sorted(with_ns(&stale)).unwrap();
    target
        .put(strata_consensus::sync::PROGRESS_KEY, b"resume record")
        .unwrap();
    assert_eq!(
        DbChain::discard_synced_state(&target).unwrap(),
        stale.len() as u64
    );
    assert_eq!(target.scan_prefix(b"s").unwrap().count(), 0);
    assert_eq!(
        target.get(strata_consensus::sync::PROGRESS_KEY).unwrap(),
        None
    );
    // The right snapshot's entries, ingested after the deletes, shadow them.
    target.ingest_sorted(with_ns(&fx.records)).unwrap();
    DbChain::adopt_synced_state(
        &target,
        &genesis,
        head.height,
        &head.block_id,
        &head.state_root,
    )
    .unwrap();
    let chain = DbChain::open(Arc::clone(&target), &genesis).unwrap();
    assert_eq!(chain.state_root(), head.state_root);
    assert!(DbChain::discard_synced_state(&target).is_err());

    // Without the discard, the extra key makes the root differ.
    let dir = tempfile::tempdir().unwrap();
    let dirty = Arc::new(Db::open(dir.path(), Options::new()).unwrap());
    let mut all = fx.records.clone();
    all.push(([0xff; 32], b"not in the snapshot".to_vec()));
    dirty.ingest_sorted(with_ns(&all)).unwrap();
    let err = DbChain::adopt_synced_state(
        &dirty,
        &genesis,
        head.height,
        &head.block_id,
        &head.state_root,
    )
    .unwrap_err();
    assert!(err.to_string().contains("root"), "{err}");
}
