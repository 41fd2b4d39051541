//! Genesis: the chain id, the validator set with stakes and addresses, the
//! initial balances and the consensus parameters, read from TOML; plus a
//! built-in devnet genesis derived from fixed seeds so `strata node` runs with
//! no files at all.
//!
//! ```toml
//! chain_id = 1
//!
//! [consensus]          # every field optional; defaults shown
//! k = 20
//! alpha_preference = 15
//! alpha_confidence = 15
//! beta = 20
//!
//! [[validators]]
//! public_key = "9d61b19d…"   # 32-byte ed25519 key, hex
//! stake = 100
//! address = "127.0.0.1:9000"
//!
//! [[balances]]
//! public_key = "d75a9801…"
//! balance = 1000000
//!
//! [synthetic]          # optional: N accounts from a public seed (test networks)
//! seed = "strata-devnet/synthetic"
//! count = 10000000
//! balance = 1000000000000
//! ```
//!
//! The `[synthetic]` section and its key derivation: [`crate::synthetic`].

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::state::{account_key, Account, StateDiff, StateKey};
use crate::synthetic::{SyntheticAccounts, SyntheticKey, SYNTHETIC_ACCOUNTS_MAX};
use crate::tx::{signing_key_from_seed, PublicKey, TxSigner};

/// Snowball parameters carried by the genesis (validated by the consensus
/// engine, which also caps them for small networks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusParams {
    /// Peers sampled per poll. Default 20.
    pub k: usize,
    /// Votes for a block needed to move the preference. Default 15.
    pub alpha_preference: usize,
    /// Votes needed to count a poll as successful. Default 15.
    pub alpha_confidence: usize,
    /// Consecutive successful polls for finality. Default 20.
    pub beta: usize,
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            k: 20,
            alpha_preference: 15,
            alpha_confidence: 15,
            beta: 20,
        }
    }
}

/// One validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorEntry {
    /// ed25519 public key, hex.
    pub public_key: String,
    /// Stake (sampling weight under stake weighting).
    pub stake: u64,
    /// Where the validator listens, `host:port`.
    pub address: String,
}

/// One funded account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceEntry {
    /// ed25519 public key, hex.
    pub public_key: String,
    /// Initial balance.
    pub balance: u64,
}

/// A genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Chain id every transaction and handshake must carry.
    pub chain_id: u64,
    /// Consensus parameters.
    #[serde(default)]
    pub consensus: ConsensusParams,
    /// The validator set.
    pub validators: Vec<ValidatorEntry>,
    /// Initial balances.
    #[serde(default)]
    pub balances: Vec<BalanceEntry>,
    /// Accounts derived from a public seed (test networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticAccounts>,
}

/// Why a genesis was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// Not valid TOML for this schema.
    #[error("genesis is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A public key is not 32 bytes of hex.
    #[error("{what} public key {key:?} is not 64 hex characters")]
    BadKey {
        /// Validator or balance.
        what: &'static str,
        /// The text found.
        key: String,
    },
    /// A validator or account appears twice.
    #[error("duplicate {what} {key}")]
    Duplicate {
        /// Validator or balance.
        what: &'static str,
        /// The key.
        key: String,
    },
    /// No validators, or a validator with zero stake.
    #[error("invalid validator set: {0}")]
    Validators(&'static str),
    /// Balances add up past `u64::MAX`.
    #[error("total supply overflows u64")]
    SupplyOverflow,
    /// The `[synthetic]` section is out of bounds.
    #[error("synthetic accounts: {0}")]
    Synthetic(String),
}

/// A validated validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// Public key.
    pub public_key: PublicKey,
    /// Stake.
    pub stake: u64,
    /// Address.
    pub address: String,
}

fn parse_key(what: &'static str, text: &str) -> Result<PublicKey, GenesisError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| GenesisError::BadKey {
        what,
        key: text.to_string(),
    })?;
    Ok(out)
}

/// Devnet validator count of the built-in genesis.
pub const DEVNET_VALIDATORS: usize = 4;
/// Funded accounts of the built-in genesis (the bench tool's senders).
pub const DEVNET_ACCOUNTS: usize = 4096;
/// Balance of each devnet account.
pub const DEVNET_BALANCE: u64 = 1_000_000_000_000;
/// Devnet chain id.
pub const DEVNET_CHAIN_ID: u64 = 0x5354_5241_5441; // "STRATA"
/// First devnet P2P port; validator `i` listens on `DEVNET_BASE_PORT + i`.
pub const DEVNET_BASE_PORT: u16 = 9000;

fn seeded_key(domain: &str, index: usize) -> SigningKey {
    let mut h = blake3::Hasher::new();
    h.update(domain.as_bytes());
    h.update(&(index as u64).to_le_bytes());
    signing_key_from_seed(h.finalize().as_bytes())
}

/// The key of devnet validator `index` (public seeds: devnet only).
pub fn devnet_validator_key(index: usize) -> SigningKey {
    seeded_key("strata-devnet/validator", index)
}

/// The key of devnet account `index` (public seeds: devnet only).
pub fn devnet_account_key(index: usize) -> SigningKey {
    seeded_key("strata-devnet/account", index)
}

/// Seed of the synthetic accounts `strata devnet --accounts N` adds.
pub const DEVNET_SYNTHETIC_SEED: &str = "strata-devnet/synthetic";

/// The signing key of an account of the devnet account space (see
/// [`Genesis::devnet_with_accounts`]): indexes below [`DEVNET_ACCOUNTS`]
/// are the built-in accounts, the rest the synthetic ones of `genesis`.
pub enum AccountKey {
    /// A built-in devnet account (standard ed25519 key from a seed).
    Seeded(SigningKey),
    /// A synthetic account.
    Synthetic(SyntheticKey),
}

impl TxSigner for AccountKey {
    fn public_key(&self) -> PublicKey {
        match self {
            AccountKey::Seeded(k) => k.public_key(),
            AccountKey::Synthetic(k) => k.public_key(),
        }
    }

    fn sign_message(&self, message: &[u8]) -> [u8; crate::tx::SIGNATURE_BYTES] {
        match self {
            AccountKey::Seeded(k) => k.sign_message(message),
            AccountKey::Synthetic(k) => k.sign_message(message),
        }
    }
}

/// The public keys of the [`DEVNET_ACCOUNTS`] devnet accounts, derived once
/// (deriving an ed25519 key costs a scalar multiplication).
pub fn devnet_account_public_keys() -> &'static [PublicKey] {
    static KEYS: std::sync::OnceLock<Vec<PublicKey>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        (0..DEVNET_ACCOUNTS)
            .map(|i| devnet_account_key(i).verifying_key().to_bytes())
            .collect()
    })
}

impl Genesis {
    /// Parses and validates a TOML genesis.
    ///
    /// # Errors
    /// A [`GenesisError`] saying what is wrong.
    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis = toml::from_str(text)?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// The TOML text of this genesis.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a genesis always serialises")
    }

    /// The built-in devnet: `validators` validators with equal stake on
    /// loopback ports from [`DEVNET_BASE_PORT`], and [`DEVNET_ACCOUNTS`]
    /// funded accounts, all from fixed public seeds.
    pub fn devnet(validators: usize) -> Genesis {
        Genesis::devnet_on(validators, DEVNET_BASE_PORT)
    }

    /// [`Genesis::devnet`] with validator `i` on `127.0.0.1:base_port + i`
    /// (`strata devnet --base-port` and tests use it to avoid port clashes).
    pub fn devnet_on(validators: usize, base_port: u16) -> Genesis {
        Genesis {
            chain_id: DEVNET_CHAIN_ID,
            consensus: ConsensusParams::default(),
            validators: (0..validators)
                .map(|i| ValidatorEntry {
                    public_key: hex::encode(devnet_validator_key(i).verifying_key().to_bytes()),
                    stake: 100,
                    address: format!("127.0.0.1:{}", usize::from(base_port) + i),
                })
                .collect(),
            balances: devnet_account_public_keys()
                .iter()
                .map(|key| BalanceEntry {
                    public_key: hex::encode(key),
                    balance: DEVNET_BALANCE,
                })
                .collect(),
            synthetic: None,
        }
    }

    /// The built-in devnet with `accounts` funded accounts in all: the
    /// [`DEVNET_ACCOUNTS`] built-in ones and, past them, synthetic accounts
    /// from [`DEVNET_SYNTHETIC_SEED`] with the same balance (`strata devnet
    /// --accounts N`). Index `i` of this account space is
    /// [`Genesis::account_key`]`(i)`.
    pub fn devnet_with_accounts(validators: usize, base_port: u16, accounts: u64) -> Genesis {
        let mut genesis = Genesis::devnet_on(validators, base_port);
        let extra = accounts.saturating_sub(DEVNET_ACCOUNTS as u64);
        if extra > 0 {
            genesis.synthetic = Some(SyntheticAccounts {
                seed: DEVNET_SYNTHETIC_SEED.to_string(),
                count: extra,
                balance: DEVNET_BALANCE,
            });
        }
        genesis
    }

    /// Accounts of the devnet account space: the built-in ones, then the
    /// synthetic ones.
    pub fn devnet_account_space(&self) -> u64 {
        DEVNET_ACCOUNTS as u64 + self.synthetic.as_ref().map_or(0, |s| s.count)
    }

    /// The key of account `index` of the devnet account space (see
    /// [`Genesis::devnet_with_accounts`]); `None` past its end.
    pub fn account_key(&self, index: u64) -> Option<AccountKey> {
        if index < DEVNET_ACCOUNTS as u64 {
            return Some(AccountKey::Seeded(devnet_account_key(index as usize)));
        }
        let synthetic = self.synthetic.as_ref()?;
        let i = index - DEVNET_ACCOUNTS as u64;
        (i < synthetic.count)
            .then(|| AccountKey::Synthetic(SyntheticKey::derive(&synthetic.seed, i)))
    }

    /// The public keys of accounts `range` of the devnet account space,
    /// on `threads` threads.
    pub fn account_public_keys(
        &self,
        range: std::ops::Range<u64>,
        threads: usize,
    ) -> Vec<PublicKey> {
        let builtin = DEVNET_ACCOUNTS as u64;
        let mut out = Vec::with_capacity(range.end.saturating_sub(range.start) as usize);
        let low = range.start.min(builtin)..range.end.min(builtin);
        out.extend(low.map(|i| devnet_account_public_keys()[i as usize]));
        if let Some(s) = &self.synthetic {
            let high = range.start.max(builtin) - builtin
                ..range.end.min(builtin + s.count).max(builtin) - builtin;
            if high.start < high.end {
                out.extend(s.public_keys(high, threads));
            }
        }
        out
    }

    /// Checks keys, duplicates, stakes and supply.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), GenesisError> {
        self.validator_set()?;
        self.total_supply()?;
        Ok(())
    }

    /// The genesis's identity: blake3 over its canonical TOML (the form
    /// [`Genesis::to_toml`] writes, so formatting and comments of the file
    /// it was read from do not count). A data directory remembers the hash
    /// of the genesis it was created with and refuses another one.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"strata/genesis\0");
        h.update(self.to_toml().as_bytes());
        *h.finalize().as_bytes()
    }

    /// The chain id of the P2P handshake (`strata_net::Config::chain_id`):
    /// peers of another chain are refused before any message. Derived from
    /// the chain id, so every node and client of one genesis agrees.
    pub fn net_chain_id(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"strata/net-chain\0");
        h.update(&self.chain_id.to_le_bytes());
        *h.finalize().as_bytes()
    }

    /// The validators, parsed.
    ///
    /// # Errors
    /// On a bad or duplicate key, zero stake or an empty set.
    pub fn validator_set(&self) -> Result<Vec<Validator>, GenesisError> {
        if self.validators.is_empty() {
            return Err(GenesisError::Validators("no validators"));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(self.validators.len());
        for v in &self.validators {
            let public_key = parse_key("validator", &v.public_key)?;
            if !seen.insert(public_key) {
                return Err(GenesisError::Duplicate {
                    what: "validator",
                    key: v.public_key.clone(),
                });
            }
            if v.stake == 0 {
                return Err(GenesisError::Validators("a validator has zero stake"));
            }
            out.push(Validator {
                public_key,
                stake: v.stake,
                address: v.address.clone(),
            });
        }
        Ok(out)
    }

    /// Sum of the initial balances.
    ///
    /// # Errors
    /// On overflow or a bad key.
    pub fn total_supply(&self) -> Result<u64, GenesisError> {
        let mut total = 0u64;
        let mut seen = BTreeSet::new();
        for b in &self.balances {
            let key = parse_key("balance", &b.public_key)?;
            if !seen.insert(key) {
                return Err(GenesisError::Duplicate {
                    what: "balance",
                    key: b.public_key.clone(),
                });
            }
            total = total
                .checked_add(b.balance)
                .ok_or(GenesisError::SupplyOverflow)?;
        }
        if let Some(s) = &self.synthetic {
            if s.count > SYNTHETIC_ACCOUNTS_MAX {
                return Err(GenesisError::Synthetic(format!(
                    "count {} is over the limit of {SYNTHETIC_ACCOUNTS_MAX}",
                    s.count
                )));
            }
            if s.seed.is_empty() {
                return Err(GenesisError::Synthetic("the seed is empty".into()));
            }
            total = s
                .supply()
                .and_then(|supply| total.checked_add(supply))
                .ok_or(GenesisError::SupplyOverflow)?;
        }
        Ok(total)
    }

    /// Funded accounts: the `[[balances]]` entries and the synthetic ones.
    pub fn account_count(&self) -> u64 {
        self.balances.len() as u64 + self.synthetic.as_ref().map_or(0, |s| s.count)
    }

    /// The state before block 1 as a run sorted by state key: every
    /// funded account, explicit and synthetic (keys derived on `threads`
    /// threads). This is what a node writes at first start, by bulk ingest.
    ///
    /// # Errors
    /// On a bad key, or a synthetic account that is also listed in
    /// `[[balances]]`.
    pub fn state_entries(&self, threads: usize) -> Result<Vec<(StateKey, Account)>, GenesisError> {
        self.total_supply()?;
        let mut entries = Vec::with_capacity(self.account_count() as usize);
        for b in &self.balances {
            let key = parse_key("balance", &b.public_key)?;
            entries.push((
                account_key(&key),
                Account {
                    balance: b.balance,
                    nonce: 0,
                },
            ));
        }
        if let Some(s) = &self.synthetic {
            let account = Account {
                balance: s.balance,
                nonce: 0,
            };
            // Derive and hash in slices, so the public keys of ten million
            // accounts never sit in memory beside their state keys.
            const SLICE: u64 = 1 << 20;
            let mut start = 0;
            while start < s.count {
                let end = (start + SLICE).min(s.count);
                let keys = s.public_keys(start..end, threads);
                entries.extend(keys.iter().map(|pk| (account_key(pk), account)));
                start = end;
            }
        }
        entries.sort_unstable_by_key(|e| e.0);
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(GenesisError::Duplicate {
                what: "account (state key)",
                key: hex::encode(w[0].0),
            });
        }
        Ok(entries)
    }

    /// The state before block 1: the funded accounts.
    ///
    /// # Errors
    /// On a bad key.
    pub fn initial_state(&self) -> Result<StateDiff, GenesisError> {
        let changes: BTreeMap<_, _> = self
            .state_entries(1)?
            .into_iter()
            .map(|(k, a)| (k, Some(a.encode())))
            .collect();
        Ok(StateDiff {
            changes,
            touched: Vec::new(),
            receipts: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_round_trips_through_toml() {
        let g = Genesis::devnet(4);
        let back = Genesis::from_toml(&g.to_toml()).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.validator_set().unwrap().len(), 4);
        assert_eq!(
            back.total_supply().unwrap(),
            DEVNET_BALANCE * DEVNET_ACCOUNTS as u64
        );
        // Fixed seeds: the devnet is the same on every machine.
        assert_eq!(Genesis::devnet(4), g);
    }

    #[test]
    fn bad_genesis_is_explained() {
        let key = hex::encode([7u8; 32]);
        let dup = format!(
            "chain_id = 1\n[[validators]]\npublic_key = \"{key}\"\nstake = 1\naddress = \"a\"\n\
             [[validators]]\npublic_key = \"{key}\"\nstake = 1\naddress = \"b\"\n"
        );
        assert!(matches!(
            Genesis::from_toml(&dup),
            Err(GenesisError::Duplicate { .. })
        ));
        let short =
            "chain_id = 1\n[[validators]]\npublic_key = \"abcd\"\nstake = 1\naddress = \"a\"\n";
        assert!(matches!(
            Genesis::from_toml(short),
            Err(GenesisError::BadKey { .. })
        ));
        let unknown = "chain_id = 1\nvalidators = []\nsurprise = 3\n";
        assert!(matches!(
            Genesis::from_toml(unknown),
            Err(GenesisError::Toml(_))
        ));
        let empty = "chain_id = 1\nvalidators = []\n";
        assert!(matches!(
            Genesis::from_toml(empty),
            Err(GenesisError::Validators(_))
        ));
    }
}
