//! `strata` — the Strata node binary.
//!
//! Subcommands built so far: `sim` (the deterministic consensus simulator)
//! and `keygen`. The node, devnet, bench, tx and query commands arrive with
//! their issue (#9); see README.md.

mod sim_cmd;

use clap::{Parser, Subcommand};

/// Strata: a blockchain full node built around its own LSM storage engine.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the deterministic consensus simulator over many seeds, or replay
    /// one seed with its event trace.
    ///
    /// Examples:
    ///   strata sim --seeds 1000 --nodes 10 --byzantine 2
    ///   strata sim --seed 35 --nodes 10 --byzantine 2 --trace
    Sim(sim_cmd::SimArgs),
    /// Generate a node or account key: prints the public key and writes the
    /// 32-byte secret seed, hex, to FILE (refusing to overwrite).
    Keygen {
        /// Where to write the secret key.
        #[arg(long, default_value = "strata.key")]
        out: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim_cmd::run(&args),
        Command::Keygen { out } => keygen(&out),
    }
}

fn keygen(out: &std::path::Path) -> std::process::ExitCode {
    use std::io::Write;
    let key = match strata_consensus::tx::generate_signing_key() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: the OS random source failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot create {}: {e}", out.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = writeln!(file, "{}", hex_encode(&key.to_bytes())) {
        eprintln!("error: writing {}: {e}", out.display());
        return std::process::ExitCode::FAILURE;
    }
    println!(
        "public key: {}",
        hex_encode(&key.verifying_key().to_bytes())
    );
    println!("secret key written to {}", out.display());
    std::process::ExitCode::SUCCESS
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
