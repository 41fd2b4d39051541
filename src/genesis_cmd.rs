//! `strata genesis`: a new network's validator keys and genesis file.
//!
//! Decisions:
//! - Keys are generated from the OS random source (never from public
//!   seeds), one file per validator, mode 0600, next to the genesis; the
//!   operator moves each to its machine. Nothing is overwritten.
//! - The chain id is random unless given, so two networks made with this
//!   command never accept each other's transactions or handshakes.
//! - Funded accounts are given as `PUBKEY=AMOUNT` (an operator funds keys
//!   made with `strata keygen`); `--fund-validators AMOUNT` funds the
//!   validator keys themselves, for a quick test network.
//! - The file is validated ([`Genesis::validate`]) before anything is
//!   written.

use std::fmt::Write as _;
use std::path::Path;

use strata_consensus::genesis::{BalanceEntry, ConsensusParams, Genesis, ValidatorEntry};

use crate::client::write_secret_file;

/// What `strata genesis` makes.
#[derive(Debug)]
pub struct GenesisPlan<'a> {
    /// Validator P2P addresses (`host:port`), one key each.
    pub validators: &'a [String],
    /// Stake of every validator.
    pub stake: u64,
    /// `PUBKEY=AMOUNT` entries.
    pub fund: &'a [String],
    /// Balance given to each validator key too (0: none).
    pub fund_validators: u64,
    /// Chain id (`None`: random).
    pub chain_id: Option<u64>,
    /// Output directory.
    pub out_dir: &'a Path,
}

/// Parses one `PUBKEY=AMOUNT`.
///
/// # Errors
/// A message naming the entry.
fn parse_fund(entry: &str) -> Result<BalanceEntry, String> {
    let (pk, amount) = entry
        .split_once('=')
        .ok_or_else(|| format!("--fund {entry}: expected PUBKEY=AMOUNT"))?;
    crate::client::hex32("--fund public key", pk)?;
    let balance = amount
        .trim()
        .parse()
        .map_err(|_| format!("--fund {entry}: {amount:?} is not a whole amount"))?;
    Ok(BalanceEntry {
        public_key: pk.trim().to_string(),
        balance,
    })
}

/// Writes `genesis.toml` and `validator-N.key` into `plan.out_dir` and
/// returns what to tell the operator.
///
/// # Errors
/// Bad arguments, an invalid genesis, or files that exist already.
pub fn run(plan: &GenesisPlan<'_>) -> Result<String, String> {
    if plan.validators.is_empty() {
        return Err("give at least one validator address: --validators HOST:PORT,...".into());
    }
    if plan.stake == 0 {
        return Err("--stake must be positive".into());
    }
    for a in plan.validators {
        if a.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(format!("--validators: {a:?} is not HOST:PORT"));
        }
    }
    let genesis_path = plan.out_dir.join("genesis.toml");
    if genesis_path.exists() {
        return Err(format!(
            "{} exists; choose another --out-dir",
            genesis_path.display()
        ));
    }
    let mut keys = Vec::with_capacity(plan.validators.len());
    for _ in plan.validators {
        keys.push(
            strata_consensus::tx::generate_signing_key()
                .map_err(|e| format!("the OS random source failed: {e}"))?,
        );
    }
    let chain_id = match plan.chain_id {
        Some(id) => id,
        None => {
            let bytes = strata_net::handshake::random_bytes()
                .map_err(|e| format!("the OS random source failed: {e}"))?;
            u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
        }
    };
    let mut balances: Vec<BalanceEntry> = plan
        .fund
        .iter()
        .map(|f| parse_fund(f))
        .collect::<Result<_, _>>()?;
    if plan.fund_validators > 0 {
        balances.extend(keys.iter().map(|k| BalanceEntry {
            public_key: hex::encode(k.verifying_key().to_bytes()),
            balance: plan.fund_validators,
        }));
    }
    let genesis = Genesis {
        chain_id,
        consensus: ConsensusParams::default(),
        validators: plan
            .validators
            .iter()
            .zip(&keys)
            .map(|(address, k)| ValidatorEntry {
                public_key: hex::encode(k.verifying_key().to_bytes()),
                stake: plan.stake,
                address: address.clone(),
            })
            .collect(),
        balances,
        synthetic: None,
    };
    genesis.validate().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(plan.out_dir)
        .map_err(|e| format!("cannot create {}: {e}", plan.out_dir.display()))?;
    let mut report = String::new();
    for (i, k) in keys.iter().enumerate() {
        let path = plan.out_dir.join(format!("validator-{i}.key"));
        write_secret_file(&path, &(hex::encode(k.to_bytes()) + "\n"))?;
        let _ = writeln!(
            report,
            "validator {i}: {}  {}  key {}",
            plan.validators[i],
            hex::encode(k.verifying_key().to_bytes()),
            path.display()
        );
    }
    std::fs::write(&genesis_path, genesis.to_toml())
        .map_err(|e| format!("cannot write {}: {e}", genesis_path.display()))?;
    let _ = writeln!(
        report,
        "genesis {} (chain id {chain_id:#x}, hash {})",
        genesis_path.display(),
        hex::encode(genesis.hash())
    );
    let _ = writeln!(
        report,
        "on validator i: strata node --genesis genesis.toml --key validator-i.key --listen <its address> --data-dir DIR"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_valid_genesis_and_private_keys_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let validators = ["10.0.0.1:9000".to_string(), "10.0.0.2:9000".to_string()];
        let fund = [format!("{}=500", "ab".repeat(32))];
        let plan = GenesisPlan {
            validators: &validators,
            stake: 10,
            fund: &fund,
            fund_validators: 7,
            chain_id: Some(42),
            out_dir: dir.path(),
        };
        let report = run(&plan).unwrap();
        assert!(report.contains("validator 1: 10.0.0.2:9000"), "{report}");
        let text = std::fs::read_to_string(dir.path().join("genesis.toml")).unwrap();
        let g = Genesis::from_toml(&text).unwrap();
        assert_eq!(g.chain_id, 42);
        assert_eq!(g.validators.len(), 2);
        assert_eq!(g.balances.len(), 3);
        let key = crate::client::read_seed(&dir.path().join("validator-0.key")).unwrap();
        let pk = strata_consensus::tx::signing_key_from_seed(&key)
            .verifying_key()
            .to_bytes();
        assert_eq!(g.validators[0].public_key, hex::encode(pk));
        let mode = std::fs::metadata(dir.path().join("validator-0.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(run(&plan).unwrap_err().contains("exists"));
    }

    #[test]
    fn bad_arguments_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let plan = |validators: &[String], fund: &[String]| {
            run(&GenesisPlan {
                validators,
                stake: 1,
                fund,
                fund_validators: 0,
                chain_id: None,
                out_dir: dir.path(),
            })
            .unwrap_err()
        };
        assert!(plan(&[], &[]).contains("--validators"));
        assert!(plan(&["nohost".into()], &[]).contains("HOST:PORT"));
        assert!(plan(&["a:1".into()], &["zz=1".into()]).contains("--fund"));
        assert!(plan(&["a:1".into()], &[format!("{}=x", "ab".repeat(32))]).contains("whole"));
        assert!(!dir.path().join("genesis.toml").exists());
    }
}
