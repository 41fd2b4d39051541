//! `strata sim`: many seeds of the deterministic simulator, or one replayed.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use strata_consensus::sim::{self, Byzantine, SimConfig};
use strata_consensus::snowball::Params;

/// Byzantine behaviours, as CLI values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ByzantineArg {
    /// Never answers.
    Silent,
    /// Votes for random block ids.
    Random,
    /// Votes differently to different peers.
    Equivocate,
    /// Proposes two valid blocks per height and votes for either at random.
    EquivocatingProposer,
}

/// Arguments of `strata sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of seeds to run (from --first-seed).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Replay exactly this seed (prints its trace with --trace).
    #[arg(long)]
    seed: Option<u64>,
    /// Validators.
    #[arg(long, default_value_t = 7)]
    nodes: usize,
    /// Byzantine validators among them.
    #[arg(long, default_value_t = 0)]
    byzantine: usize,
    /// How Byzantine validators behave.
    #[arg(long, value_enum, default_value_t = ByzantineArg::Random)]
    byzantine_kind: ByzantineArg,
    /// Heights every honest node must finalize.
    #[arg(long, default_value_t = 5)]
    heights: u64,
    /// Snowball k.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Snowball alpha (preference and confidence).
    #[arg(long, default_value_t = 4)]
    alpha: usize,
    /// Snowball beta.
    #[arg(long, default_value_t = 8)]
    beta: usize,
    /// No partitions or crashes (drops and duplicates stay).
    #[arg(long)]
    no_faults: bool,
    /// Print the event trace (with --seed).
    #[arg(long)]
    trace: bool,
}

/// Runs the command; the exit code is non-zero when any seed fails.
pub fn run(args: &SimArgs) -> ExitCode {
    let params = Params {
        k: args.k,
        alpha_preference: args.alpha,
        alpha_confidence: args.alpha,
        beta: args.beta,
    };
    if let Err(e) = params.validate() {
        eprintln!("error: invalid Snowball parameters: {e}");
        return ExitCode::FAILURE;
    }
    if args.byzantine >= args.nodes {
        eprintln!("error: --byzantine must be below --nodes");
        return ExitCode::FAILURE;
    }
    let kind = match args.byzantine_kind {
        ByzantineArg::Silent => Byzantine::Silent,
        ByzantineArg::Random => Byzantine::RandomVoter,
        ByzantineArg::Equivocate => Byzantine::Equivocator,
        ByzantineArg::EquivocatingProposer => Byzantine::EquivocatingProposer,
    };
    let config_for = |seed| SimConfig {
        seed,
        nodes: args.nodes,
        byzantine: args.byzantine,
        byzantine_kind: kind,
        target_height: args.heights,
        faults: !args.no_faults,
        params,
        trace: args.trace,
        ..SimConfig::default()
    };
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.first_seed..args.first_seed + args.seeds).collect(),
    };
    let mut failed = 0;
    let mut virtual_ms_per_height = Vec::new();
    for seed in &seeds {
        let report = sim::run(&config_for(*seed));
        if args.trace {
            print!("{}", report.trace);
        }
        if let Some(v) = &report.violation {
            failed += 1;
            println!("FAIL seed {seed}: {v}");
        } else if let Some(last) = report.height_done_ms.last() {
            virtual_ms_per_height.push(*last as f64 / report.height_done_ms.len() as f64);
        }
    }
    let mean = if virtual_ms_per_height.is_empty() {
        0.0
    } else {
        virtual_ms_per_height.iter().sum::<f64>() / virtual_ms_per_height.len() as f64
    };
    println!(
        "{} seeds, {} passed, {} failed; nodes {}, byzantine {} ({:?}), k {} alpha {} beta {}; mean virtual time per height {:.0} ms",
        seeds.len(),
        seeds.len() - failed,
        failed,
        args.nodes,
        args.byzantine,
        kind,
        args.k,
        args.alpha,
        args.beta,
        mean
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
