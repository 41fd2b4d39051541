//! `strata` — the Strata node binary.
//!
//! For now it only answers `--version` and `--help`; the node, devnet, bench
//! and query subcommands arrive with their issues (see README.md).

use clap::Parser;

/// Strata: a blockchain full node built around its own LSM storage engine.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!(
        "strata {}: the node, devnet and bench commands are not built yet; see README.md",
        env!("CARGO_PKG_VERSION")
    );
}
