//! The deterministic simulator over many seeds, as CI runs it: random
//! latency, drops, duplicates, a partition, crashes with restarts, and up to
//! 20 % Byzantine nodes (or weight) of each kind, under uniform, stake and
//! proof-of-work sampling. Any failing seed is printed with its
//! configuration; replay it with `strata sim --seed S ...` (or `sim::run`).
//! More seeds: `SIM_SEEDS=5000 cargo test -p strata-consensus --release --test sim_seeds`.

use strata_consensus::sampler::Sampling;
use strata_consensus::sim::{run, Byzantine, SimConfig};

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn config_for(seed: u64) -> SimConfig {
    let nodes = 5 + (seed % 6) as usize; // 5..=10
    let tenths = seed / 6 % 3; // 0 %, 10 %, 20 % Byzantine
    let kind = match seed % 4 {
        0 => Byzantine::Silent,
        1 => Byzantine::RandomVoter,
        2 => Byzantine::Equivocator,
        _ => Byzantine::EquivocatingProposer,
    };
    // The three sampling weights share the seeds (a third each, in blocks
    // of 18 that cover every size and Byzantine share) rather than tripling
    // the run time.
    let sampling = match seed / 18 % 3 {
        0 => Sampling::Uniform,
        1 => Sampling::Stake,
        _ => Sampling::ProofOfWork,
    };
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
        sampling,
        byzantine_weight_per_mille,
        target_height: 4,
        ..SimConfig::default()
    }
}

/// Every seed must keep agreement and validity and be live within the
/// bound — under stake and proof-of-work sampling with 20 % Byzantine
/// weight too. Those seeds were exempt from liveness (3 of their 60 missed
/// it) while polls drew whole validators with one vote each; see
/// `sampled_weight_keeps_twenty_percent_byzantine_weight_live` in
/// sim_weighted.rs.
#[test]
fn many_seeds_keep_agreement_validity_and_liveness() {
    let mut failures = Vec::new();
    for seed in 0..seeds() {
        let config = config_for(seed);
        let report = run(&config);
        if let Some(v) = report.violation {
            failures.push(format!(
                "seed {seed} (nodes {}, byzantine {} {:?}, {:?} sampling, Byzantine weight {} per mille): {v}",
                config.nodes,
                config.byzantine,
                config.byzantine_kind,
                config.sampling,
                report.byzantine_weight_per_mille
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Replays one seed with its event trace:
/// `SIM_REPLAY=35 cargo test -p strata-consensus --test sim_seeds replay -- --nocapture`.
#[test]
fn replay() {
    let Some(seed) = std::env::var("SIM_REPLAY")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let report = run(&SimConfig {
        trace: true,
        ..config_for(seed)
    });
    println!("{}", report.trace);
    println!("violation: {:?}", report.violation);
}

/// Fast polls between idle nodes, slow block validation (a node is busy
/// for 5–200 ms after receiving a pulled block, as a real node's driver
/// is), 4 validators (k capped to 3, alpha 2), the node's 400 ms poll
/// timeout: the timing regime in which a 4-process devnet split finality.
/// Honest limit: this model did NOT reproduce that split even with the
/// engine's fix reverted; the regression test for it is
/// `engine::tests::a_revealed_preference_moves_only_through_polls`. This
/// test checks agreement, validity and liveness under that timing.
#[test]
fn fast_polls_slow_blocks_keep_agreement() {
    let mut failures = Vec::new();
    for seed in 0..seeds() / 3 {
        let config = SimConfig {
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
        };
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
