//! `strata sim`: many seeds of the deterministic simulator, or one replayed.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::de::{value, Deserialize, IntoDeserializer};
use strata_consensus::sampler::Sampling;
use strata_consensus::sim::{self, Byzantine, PollCounts, SimConfig};
use strata_consensus::snowball::Params;

/// Parses `--sampling` through the enum's serde names, so the flag is
/// spelled exactly as `sampling` in the node's config.
fn parse_sampling(text: &str) -> Result<Sampling, String> {
    Sampling::deserialize(IntoDeserializer::<value::Error>::into_deserializer(text))
        .map_err(|_| format!("{text:?}: expected uniform, stake or proof_of_work"))
}

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
    /// Answers every query three times, mostly "no vote".
    DuplicateAnswers,
    /// Answers honestly, timed to land just before the poll's deadline.
    LateAnswers,
    /// One validator key run by two engines with their own chains.
    Twins,
    /// Votes its real preference but never serves a block.
    Withholding,
    /// Proposes two blocks and votes for whichever fewer honest nodes prefer.
    Rebalancer,
    /// Floods every honest node with junk votes and queries.
    Flooder,
}

impl ByzantineArg {
    fn kind(self) -> Byzantine {
        match self {
            ByzantineArg::Silent => Byzantine::Silent,
            ByzantineArg::Random => Byzantine::RandomVoter,
            ByzantineArg::Equivocate => Byzantine::Equivocator,
            ByzantineArg::EquivocatingProposer => Byzantine::EquivocatingProposer,
            ByzantineArg::DuplicateAnswers => Byzantine::DuplicateAnswers,
            ByzantineArg::LateAnswers => Byzantine::LateAnswers,
            ByzantineArg::Twins => Byzantine::Twins,
            ByzantineArg::Withholding => Byzantine::Withholding,
            ByzantineArg::Rebalancer => Byzantine::Rebalancer,
            ByzantineArg::Flooder => Byzantine::Flooder,
        }
    }
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
    /// The Byzantine validators stop at this virtual time (as if crashed
    /// for good); liveness is then required after it. Default: they act
    /// all run long.
    #[arg(long)]
    byzantine_until_ms: Option<u64>,
    /// How polls weigh validators: uniform, stake (the simulated genesis
    /// gets skewed stakes) or proof_of_work (identities with different
    /// proven work).
    #[arg(long, default_value = "uniform", value_parser = parse_sampling)]
    sampling: Sampling,
    /// With stake or proof_of_work sampling: the share of the total weight
    /// the Byzantine validators hold, in percent (default: their share of
    /// the count).
    #[arg(long)]
    byzantine_weight_percent: Option<u64>,
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
    /// No partitions or crashes (random latency and drops stay).
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
    let kind = args.byzantine_kind.kind();
    let config_for = |seed| SimConfig {
        seed,
        nodes: args.nodes,
        byzantine: args.byzantine,
        byzantine_kind: kind,
        byzantine_until_ms: args.byzantine_until_ms,
        sampling: args.sampling,
        byzantine_weight_per_mille: args.byzantine_weight_percent.map(|p| p.saturating_mul(10)),
        target_height: args.heights,
        faults: !args.no_faults,
        params,
        trace: args.trace,
        ..SimConfig::default()
    };
    if args.byzantine_weight_percent.is_some() && args.sampling == Sampling::Uniform {
        eprintln!("error: --byzantine-weight-percent needs --sampling stake or proof_of_work (uniform weight follows the count)");
        return ExitCode::FAILURE;
    }
    if let Err(e) = config_for(args.first_seed).weights() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.first_seed..args.first_seed + args.seeds).collect(),
    };
    let mut failed = 0;
    let mut virtual_ms_per_height = Vec::new();
    // Summed over passing seeds: polls charged to finalizations, and the
    // finalizations (so the mean weighs every finalization the same).
    let mut polls = PollCounts::default();
    let mut finalizations = 0u64;
    let mut byzantine_per_mille = Vec::new();
    // Many seeds take a while: a bar on stderr (indicatif draws nothing
    // when stderr is not a terminal, so logs and pipes stay clean).
    let bar = if seeds.len() > 1 {
        indicatif::ProgressBar::new(seeds.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("seeds [{bar:40}] {pos}/{len} {msg}")
            .expect("valid template"),
    );
    for seed in &seeds {
        bar.inc(1);
        let report = sim::run(&config_for(*seed));
        byzantine_per_mille.push(report.byzantine_weight_per_mille);
        if args.trace {
            print!("{}", report.trace);
        }
        if let Some(v) = &report.violation {
            failed += 1;
            bar.suspend(|| println!("FAIL seed {seed}: {v}"));
            bar.set_message(format!("{failed} failed"));
        } else if let Some(last) = report.height_done_ms.last() {
            virtual_ms_per_height.push(*last as f64 / report.height_done_ms.len() as f64);
            polls.opened += report.finality_polls.opened;
            polls.closed += report.finality_polls.closed;
            polls.successful += report.finality_polls.successful;
            finalizations += report.finalizations;
        }
    }
    bar.finish_and_clear();
    let per_finality = |x: u64| x as f64 / finalizations.max(1) as f64;
    let share_min = byzantine_per_mille.iter().min().copied().unwrap_or(0);
    let share_max = byzantine_per_mille.iter().max().copied().unwrap_or(0);
    let capped = params.capped_for(args.nodes - 1);
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
    println!(
        "sampling {:?}, Byzantine weight {:.1}-{:.1} %; in force k {} alpha {}; mean polls per finality {:.1} opened, {:.1} closed, {:.1} successful",
        args.sampling,
        share_min as f64 / 10.0,
        share_max as f64 / 10.0,
        capped.k,
        capped.alpha_confidence,
        per_finality(polls.opened),
        per_finality(polls.closed),
        per_finality(polls.successful),
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `strata sim --sampling` takes the config file's spelling of every
    /// weight kind (one enum, serde's names) and refuses others.
    #[test]
    fn sampling_flag_spells_like_the_config() {
        for kind in [Sampling::Uniform, Sampling::Stake, Sampling::ProofOfWork] {
            let name = serde_json::to_value(kind).expect("serialises");
            let name = name.as_str().expect("a unit variant is a string");
            assert_eq!(parse_sampling(name), Ok(kind), "{name}");
        }
        assert_eq!(parse_sampling("proof_of_work"), Ok(Sampling::ProofOfWork));
        assert!(parse_sampling("pos").is_err());
    }

    /// Every simulated adversary can be chosen from the command line, each
    /// by its own value.
    #[test]
    fn every_byzantine_kind_has_a_flag_value() {
        let chosen: Vec<Byzantine> = ByzantineArg::value_variants()
            .iter()
            .map(|a| a.kind())
            .collect();
        assert_eq!(chosen, Byzantine::ALL.to_vec());
    }
}
