//! `strata node --dev`: a single-validator chain on this machine that
//! finalizes alone, with funded accounts whose keys are written next to it.
//!
//! Decisions:
//! - The genesis is the built-in devnet's (4,096 funded accounts from public
//!   seeds) with ONE validator, this node, at its listen address, and its
//!   own chain id ([`DEV_CHAIN_ID`]), so a dev node never joins a devnet.
//! - Everything lives in the data directory (default `strata-dev`, not the
//!   node's `strata-data`): `genesis.toml`, written at the first start and
//!   reused after, so a restarted dev chain keeps its blocks; and
//!   `dev-keys/account-N.key` for the first [`DEV_KEYS`] accounts, mode 0600.
//! - The keys are public test keys (anyone can derive them): the banner
//!   says so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use strata_consensus::genesis::{devnet_account_key, Genesis, DEVNET_BALANCE};

use crate::client::write_secret_file;
use crate::config::NodeConfig;

/// Chain id of a dev chain ("STRDEV"): not the devnet's, so the P2P
/// handshake keeps the two apart.
pub const DEV_CHAIN_ID: u64 = 0x5354_5244_4556;

/// Funded accounts whose key files `--dev` writes.
pub const DEV_KEYS: usize = 8;

/// Default data directory of a dev chain.
pub const DEV_DATA_DIR: &str = "strata-dev";

/// The genesis of a dev chain whose one validator listens on `listen`.
///
/// # Errors
/// A listen address without a port.
pub fn genesis(listen: &str) -> Result<Genesis, String> {
    let port: u16 = listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| format!("--listen {listen}: expected host:port"))?;
    let mut g = Genesis::devnet_on(1, port);
    g.chain_id = DEV_CHAIN_ID;
    g.validators[0].address = listen.to_string();
    Ok(g)
}

/// Prepares `config` for a dev chain: data dir, genesis file and key files.
/// Returns the banner to print (the accounts, their key files, and a first
/// transfer to try).
///
/// # Errors
/// File system failures, or a genesis file in the data dir that does not
/// parse.
pub fn prepare(config: &mut NodeConfig, data_dir_given: bool) -> Result<String, String> {
    if !data_dir_given {
        config.data_dir = PathBuf::from(DEV_DATA_DIR);
    }
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let genesis_path = dir.join("genesis.toml");
    if !genesis_path.exists() {
        std::fs::write(&genesis_path, genesis(&config.listen)?.to_toml())
            .map_err(|e| format!("cannot write {}: {e}", genesis_path.display()))?;
    }
    let genesis = crate::node::load_genesis(Some(&genesis_path))?;
    config.genesis = Some(genesis_path.clone());
    config.key = None;
    config.devnet_index = 0;
    let keys = dir.join("dev-keys");
    std::fs::create_dir_all(&keys).map_err(|e| format!("cannot create {}: {e}", keys.display()))?;
    let mut accounts = Vec::with_capacity(DEV_KEYS);
    for i in 0..DEV_KEYS {
        let key = devnet_account_key(i);
        let path = keys.join(format!("account-{i}.key"));
        if !path.exists() {
            write_secret_file(&path, &(hex::encode(key.to_bytes()) + "\n"))?;
        }
        accounts.push((hex::encode(key.verifying_key().to_bytes()), path));
    }
    Ok(banner(config, &genesis, &genesis_path, &accounts))
}

fn banner(
    config: &NodeConfig,
    genesis: &Genesis,
    genesis_path: &Path,
    accounts: &[(String, PathBuf)],
) -> String {
    let mut b = String::new();
    let _ = writeln!(
        b,
        "dev chain {:#x}: one validator (this node), P2P {}, API http://{}, data in {}",
        genesis.chain_id,
        config.listen,
        config.api,
        config.data_dir.display()
    );
    let _ = writeln!(b, "genesis: {}", genesis_path.display());
    let _ = writeln!(
        b,
        "funded accounts ({DEVNET_BALANCE} each; PUBLIC test keys, never use them elsewhere):"
    );
    for (i, (pk, path)) in accounts.iter().enumerate() {
        let _ = writeln!(b, "  {i}  {pk}  {}", path.display());
    }
    if let (Some((_, key0)), Some((pk1, _))) = (accounts.first(), accounts.get(1)) {
        let api = if config.api == "127.0.0.1:8080" {
            String::new()
        } else {
            format!(" --api {}", config.api)
        };
        let _ = writeln!(b, "try:");
        let _ = writeln!(
            b,
            "  strata tx{api} --key {} --to {pk1} --amount 10 --wait",
            key0.display()
        );
        let _ = writeln!(b, "  strata query{api} account {pk1}");
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_genesis_has_one_validator_at_the_listen_address_and_its_own_chain() {
        let g = genesis("127.0.0.1:9555").unwrap();
        assert_eq!(g.validators.len(), 1);
        assert_eq!(g.validators[0].address, "127.0.0.1:9555");
        assert_ne!(g.chain_id, strata_consensus::genesis::DEVNET_CHAIN_ID);
        g.validate().unwrap();
        assert!(genesis("nonsense").is_err());
    }

    #[test]
    fn prepare_writes_private_keys_and_reuses_its_genesis() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = NodeConfig {
            data_dir: dir.path().join("dev"),
            ..NodeConfig::default()
        };
        let banner = prepare(&mut cfg, true).unwrap();
        assert!(banner.contains("account-0.key"), "{banner}");
        let key = cfg.data_dir.join("dev-keys/account-0.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let first = std::fs::read(cfg.data_dir.join("genesis.toml")).unwrap();
        // A second start on another port keeps the chain's genesis.
        cfg.listen = "127.0.0.1:9999".into();
        prepare(&mut cfg, true).unwrap();
        assert_eq!(
            std::fs::read(cfg.data_dir.join("genesis.toml")).unwrap(),
            first
        );
    }
}
