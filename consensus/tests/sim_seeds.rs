//! The deterministic simulator over many seeds, as CI runs it: random
//! latency, drops, a partition, crashes with restarts, and up to 20 %
//! Byzantine nodes (or weight) of every kind ([`Byzantine::ALL`]: silent,
//! random voters, equivocators, double proposers, duplicate and late
//! answers, twins, withholding, the rebalancer, floods), under uniform,
//! stake and proof-of-work sampling, with the adversary acting for the whole
//! run or stopping when the faults heal. Honest nodes score and ban as the
//! node does, and no honest node may ban another. Any failing seed is
//! printed with its configuration; replay it with
//! `SIM_REPLAY=S cargo test -p strata-consensus --test sim_seeds replay -- --nocapture`
//! (or `sim::run(&config_for(S))`). Seeds of double proposers and twins
//! may not replay exactly (docs/consensus.md, "Adversaries"). Other seed
//! counts: `SIM_SEEDS=5000 cargo test -p strata-consensus --release --test
//! sim_seeds many`; the 10,000 seeds after the default ones are
//! `ten_thousand_seeds_keep_agreement_validity_and_liveness` (ignored).

use std::sync::atomic::{AtomicU64, Ordering};

use strata_consensus::sampler::Sampling;
use strata_consensus::sim::{run, Byzantine, ChainStore, SimConfig};

/// Seeds of the default run: every combination of [`config_for`] twice.
const DEFAULT_SEEDS: u64 = 1_080;

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS)
}

/// The configuration of CI seed `seed`. Consecutive seeds cycle through the
/// ten Byzantine kinds; blocks of 10 through six network sizes (5–10),
/// blocks of 60 through 0/10/20 % Byzantine share, blocks of 180 through
/// the three sampling weights, and blocks of 540 through an adversary
/// acting all run long or stopping at 3 s: any 540 consecutive seeds cover
/// every combination once.
fn config_for(seed: u64) -> SimConfig {
    let kind = Byzantine::ALL[(seed % 10) as usize];
    let nodes = 5 + (seed / 10 % 6) as usize; // 5..=10
    let tenths = seed / 60 % 3; // 0 %, 10 %, 20 % Byzantine
    let sampling = match seed / 180 % 3 {
        0 => Sampling::Uniform,
        1 => Sampling::Stake,
        _ => Sampling::ProofOfWork,
    };
    let byzantine_until_ms = (seed / 540 % 2 == 1).then_some(3_000);
    let (byzantine, byzantine_weight_per_mille) = if sampling == Sampling::Uniform {
        (tenths as usize * nodes / 10, None) // by count, rounded down
    } else if tenths == 0 {
        (0, None)
    } else {
        // By weight: at least one Byzantine node, holding exactly the share.
        ((tenths as usize * nodes / 10).max(1), Some(tenths * 100))
    };
    SimConfig {
        seed,
        nodes,
        byzantine,
        byzantine_kind: kind,
        byzantine_until_ms,
        sampling,
        byzantine_weight_per_mille,
        target_height: 4,
        ..SimConfig::default()
    }
}

/// Runs `seeds` on every core (seeds are independent) and fails with every
/// violation.
fn check_seeds(seeds: std::ops::Range<u64>) {
    let next = AtomicU64::new(seeds.start);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut found: Vec<(u64, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut found = Vec::new();
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= seeds.end {
                            return found;
                        }
                        let config = config_for(seed);
                        let report = run(&config);
                        let Some(v) = report.violation else {
                            continue;
                        };
                        found.push((
                            seed,
                            format!(
                                "seed {seed} (nodes {}, byzantine {} {:?} until {:?}, {:?} sampling, Byzantine weight {} per mille): {v}",
                                config.nodes,
                                config.byzantine,
                                config.byzantine_kind,
                                config.byzantine_until_ms,
                                config.sampling,
                                report.byzantine_weight_per_mille
                            ),
                        ));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a seed worker panicked"))
            .collect()
    });
    found.sort();
    assert!(
        found.is_empty(),
        "{} failing seeds:\n{}",
        found.len(),
        found
            .into_iter()
            .map(|(_, line)| line)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every seed must keep agreement and validity, see no honest node ban
/// another, and be live within the bound — every Byzantine kind at up to
/// 20 % of the weight, under each sampling weight. 1,080 seeds (every
/// combination of `config_for` twice) by default, on every core.
#[test]
fn many_seeds_keep_agreement_validity_and_liveness() {
    check_seeds(0..seeds());
}

/// The same over the next 10,000 seeds:
/// `cargo test -p strata-consensus --release --test sim_seeds ten_thousand -- --ignored`.
#[test]
#[ignore]
fn ten_thousand_seeds_keep_agreement_validity_and_liveness() {
    check_seeds(DEFAULT_SEEDS..DEFAULT_SEEDS + 10_000);
}

/// Replays one seed with its event trace:
/// `SIM_REPLAY=35 cargo test -p strata-consensus --test sim_seeds replay -- --nocapture`.
/// The simulator can run the node's own chain store instead of the
/// in-memory model: `DbChain` over a storage `Db` per node, closed at every
/// crash and reopened at every restart, the revealed preference read back
/// from it. Both commit the same state under the same root, so a seed must
/// run exactly the same either way: the traces (every message, block id
/// and finalization) are compared line by line, for seeds spread over
/// every kind, size, share and sampling weight. `SIM_DB_SEEDS` sets how
/// many (default 24).
#[test]
fn the_node_chain_store_runs_exactly_as_the_model() {
    let count: u64 = std::env::var("SIM_DB_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    // 47 is prime to 10, 60, 180 and 540: consecutive picks change kind,
    // size, share, weight and adversary end.
    let picks: Vec<u64> = (0..count).map(|i| i * 47 % DEFAULT_SEEDS).collect();
    let next = AtomicU64::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mismatches: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut found = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(&seed) = picks.get(i) else {
                            return found;
                        };
                        let memory = SimConfig {
                            trace: true,
                            ..config_for(seed)
                        };
                        let db = SimConfig {
                            chain: ChainStore::Db,
                            ..memory.clone()
                        };
                        let (a, b) = (run(&memory), run(&db));
                        assert!(a.trace.lines().count() > 100, "seed {seed}: no trace");
                        if let Some(v) = &b.violation {
                            found.push(format!("seed {seed} on DbChain: {v}"));
                        } else if a.trace != b.trace {
                            let line = a
                                .trace
                                .lines()
                                .zip(b.trace.lines())
                                .find(|(x, y)| x != y)
                                .map(|(x, y)| format!("memory: {x}\n    db:     {y}"))
                                .unwrap_or_else(|| "one trace is longer".into());
                            found.push(format!("seed {seed}: traces differ\n    {line}"));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn replay() {
    let Some(seed) = std::env::var("SIM_REPLAY")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let mut config = SimConfig {
        trace: true,
        ..config_for(seed)
    };
    // SIM_UNREACHABLE=0: the node does not tell its engine about peers
    // it has no connection to (for comparisons).
    if std::env::var("SIM_UNREACHABLE").is_ok_and(|v| v == "0") {
        config.peer_limits.report_unreachable = false;
    }
    let report = run(&config);
    println!("{}", report.trace);
    println!("violation: {:?}", report.violation);
}

/// The configuration of [`fast_polls_slow_blocks_keep_agreement`]'s seed
/// `seed`.
fn fast_polls_slow_blocks(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        nodes: 4,
        byzantine: 0,
        target_height: 4,
        latency_ms: (1, 3),
        block_delay_ms: (5, 200),
        poll_timeout_ms: Some(400),
        drop_per_mille: 0,
        duplicate_per_mille: 0,
        faults: false,
        ..SimConfig::default()
    }
}

/// How many of 1,000 seeds of the fast-polls, slow-blocks model split
/// finality, against polls in flight and proposal pushes: the table in
/// docs/consensus.md, "Polls in flight and agreement". About ten minutes:
/// `cargo test -p strata-consensus --release --features sim --test
/// sim_seeds -- --ignored --nocapture polls_in_flight_and_agreement`.
#[test]
#[ignore]
fn polls_in_flight_and_agreement() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    println!("| polls in flight | proposals pushed | seeds that split finality |");
    println!("|---:|---|---:|");
    for push in [0, 16] {
        for in_flight in [1, 2, 4, 6, 10] {
            let split = (0..seeds)
                .filter(|seed| {
                    let config = SimConfig {
                        polls_in_flight: Some(in_flight),
                        proposal_push_peers: Some(push),
                        ..fast_polls_slow_blocks(*seed)
                    };
                    run(&config)
                        .violation
                        .is_some_and(|v| v.starts_with("agreement"))
                })
                .count();
            let pushed = if push > 0 { "yes" } else { "no" };
            println!("| {in_flight} | {pushed} | {split} of {seeds} |");
        }
    }
}

/// Fast polls between idle nodes, slow block validation (a node is busy
/// for 5–200 ms after receiving a pulled block, as a real node's driver
/// is), 4 validators (k capped to 3, alpha 2), the node's 400 ms poll
/// timeout: the timing regime in which a 4-process devnet split finality.
/// Honest limit: this model did NOT reproduce that split even with the
/// engine's fix reverted; the regression test for it is
/// `engine::tests::a_revealed_preference_moves_only_through_polls`. This
/// test checks agreement, validity and liveness under that timing.
///
/// It did find another split: before proposals were pushed to the other
/// validators (`EngineConfig::proposal_push_peers`), seeds 235, 275 and
/// 286 (10 of the first 1,000) finalized two blocks at one height, with
/// the default 4 polls in flight; with pushes, none of 1,000. Hence 300
/// seeds here.
#[test]
fn fast_polls_slow_blocks_keep_agreement() {
    let mut failures = Vec::new();
    for seed in 0..300 {
        let config = fast_polls_slow_blocks(seed);
        if let Some(v) = run(&config).violation {
            failures.push(format!("seed {seed}: {v}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
