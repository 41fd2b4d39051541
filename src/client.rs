//! A small blocking client of the node's HTTP API (ureq), and the `strata
//! tx` and `strata query` commands built on it.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use strata_consensus::state::{account_key, user_key};
use strata_consensus::tx::{
    signing_key_from_seed, TxBody, TxKind, CODE_BYTES_MAX, ENTRY_BYTES_MAX, INPUT_BYTES_MAX,
};
use strata_storage::merkle;

/// Client of one node's API.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of `addr` (`host:port` or a full `http://` URL).
    pub fn new(addr: &str) -> Client {
        let base = if addr.starts_with("http://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        Client {
            base,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
        }
    }

    fn answer(r: Result<ureq::Response, ureq::Error>, path: &str) -> Result<Value, String> {
        match r {
            Ok(resp) => resp
                .into_json()
                .map_err(|e| format!("{path}: bad JSON answer: {e}")),
            Err(ureq::Error::Status(code, resp)) => {
                let body: Value = resp.into_json().unwrap_or(Value::Null);
                Err(format!(
                    "{path}: HTTP {code}: {}",
                    body["error"].as_str().unwrap_or("(no message)")
                ))
            }
            Err(e) => Err(format!("{path}: {e}")),
        }
    }

    /// `GET path`, as JSON.
    ///
    /// # Errors
    /// Transport failures and non-2xx answers, with the server's message.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        Self::answer(self.agent.get(&format!("{}{path}", self.base)).call(), path)
    }

    /// `GET path`, as raw bytes (`/v1/blocks/{h}/ids`, `/metrics`).
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut self
                .agent
                .get(&format!("{}{path}", self.base))
                .call()
                .map_err(|e| format!("{path}: {e}"))?
                .into_reader(),
            &mut out,
        )
        .map_err(|e| format!("{path}: {e}"))?;
        Ok(out)
    }

    /// The node's `/metrics`, by name without the `strata_` prefix.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn metrics(&self) -> Result<HashMap<String, f64>, String> {
        let bytes = self.get_bytes("/metrics")?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("strata_")?.split_once(' '))
            .filter_map(|(name, v)| Some((name.to_string(), v.trim().parse().ok()?)))
            .collect())
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value, String> {
        Self::answer(
            self.agent
                .post(&format!("{}{path}", self.base))
                .send_json(body),
            path,
        )
    }
}

/// Parses 64 hex characters (surrounding whitespace ignored).
///
/// # Errors
/// A message naming `what`.
pub fn hex32(what: &str, text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|_| format!("{what}: expected 64 hex characters"))?;
    Ok(out)
}

/// Reads a key file: the 32-byte secret seed in hex, as `strata keygen`
/// writes it.
///
/// # Errors
/// Unreadable file or bad hex, naming the file.
pub fn read_seed(path: &std::path::Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    hex32(&path.display().to_string(), &text)
}

fn read_key(path: &std::path::Path) -> Result<ed25519_dalek::SigningKey, String> {
    Ok(signing_key_from_seed(&read_seed(path)?))
}

/// The public key (hex) of the secret key in `path` (`strata keygen
/// --show`).
///
/// # Errors
/// As [`read_seed`].
pub fn public_key_of(path: &std::path::Path) -> Result<String, String> {
    Ok(hex::encode(read_key(path)?.verifying_key().to_bytes()))
}

/// Writes a secret (a key file) readable by its owner only (mode 0600,
/// set at creation, so it is never readable by others even for a moment).
/// Refuses to overwrite an existing file.
///
/// # Errors
/// File system failures, naming the file.
pub fn write_secret_file(path: &std::path::Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// How long `strata tx --wait` waits for finality.
pub const TX_WAIT_S: u64 = 60;

/// `strata tx`: signs one transaction with the key in `key_file`, using the
/// account's current nonce (unless given), and submits it; with `wait`,
/// returns once it is final (or fails after [`TX_WAIT_S`]).
///
/// # Errors
/// Any failure, as a message.
pub fn submit_tx(
    api: &str,
    key_file: &std::path::Path,
    fee: u64,
    nonce: Option<u64>,
    kind: TxKind,
    wait: bool,
) -> Result<String, String> {
    let client = Client::new(api);
    let key = read_key(key_file)?;
    let sender = key.verifying_key().to_bytes();
    let status = client.get("/v1/status")?;
    let chain_id = status["chain_id"]
        .as_u64()
        .ok_or("status: no chain_id in the answer")?;
    let nonce = match nonce {
        Some(n) => n,
        None => client.get(&format!("/v1/accounts/{}", hex::encode(sender)))?["nonce"]
            .as_u64()
            .unwrap_or(0),
    };
    let tx = TxBody {
        chain_id,
        sender,
        nonce,
        fee,
        kind,
    }
    .sign(&key)
    .map_err(|e| e.to_string())?;
    let answer = client.post_json(
        "/v1/txs",
        &serde_json::json!({ "txs": [hex::encode(tx.encoded())] }),
    )?;
    let Some(id) = answer["results"][0]["id"].as_str() else {
        return Err(format!(
            "refused: {}",
            answer["results"][0]["error"].as_str().unwrap_or("unknown")
        ));
    };
    if !wait {
        return Ok(format!("submitted {id} (nonce {nonce})"));
    }
    eprintln!("submitted {id} (nonce {nonce}); waiting for finality");
    let deadline = std::time::Instant::now() + Duration::from_secs(TX_WAIT_S);
    loop {
        let status = client.get(&format!("/v1/txs/{id}"))?;
        if status["status"] == "finalized" {
            let mut msg = format!(
                "finalized {id} at height {}",
                status["height"].as_u64().unwrap_or(0)
            );
            if !status["result"].is_null() {
                msg.push_str(&format!("\nresult {}", status["result"]));
            }
            return Ok(msg);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{id} not finalized within {TX_WAIT_S} s (status: {}); \
                 `strata query tx {id}` tells what it waits for",
                status["status"]
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Parses a transfer, put or delete from the CLI's words.
///
/// # Errors
/// Bad hex or lengths, or a combination that is none of the three.
pub fn tx_kind(
    to: Option<&str>,
    amount: Option<u64>,
    put: Option<(&str, &str)>,
    delete: Option<&str>,
) -> Result<TxKind, String> {
    match (to, amount, put, delete) {
        (Some(to), Some(amount), None, None) => Ok(TxKind::Transfer {
            to: hex32("--to", to)?,
            amount,
        }),
        (None, None, Some((k, v)), None) => Ok(TxKind::Put {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
        }),
        (None, None, None, Some(k)) => Ok(TxKind::Delete {
            key: k.as_bytes().to_vec(),
        }),
        (Some(_), None, ..) => Err("--to needs --amount".into()),
        (None, Some(_), ..) => Err("--amount needs --to".into()),
        _ => Err(
            "say what the transaction does: --to PUBKEY --amount N (a transfer), \
             --put KEY --value VALUE, or --delete KEY (one of the three)"
                .into(),
        ),
    }
}

/// A deploy of the module in `file`: binary WebAssembly, or text when the
/// name ends in `.wat` (compiled here).
///
/// # Errors
/// The file cannot be read, or its text does not compile.
pub fn deploy_kind(
    file: &std::path::Path,
    gas_limit: u64,
    gas_price: u64,
) -> Result<TxKind, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let code = if file.extension().is_some_and(|e| e == "wat") {
        wat::parse_bytes(&bytes)
            .map_err(|e| format!("{}: {e}", file.display()))?
            .into_owned()
    } else {
        bytes
    };
    if code.len() > CODE_BYTES_MAX {
        return Err(format!(
            "{}: the module is {} bytes, over the {CODE_BYTES_MAX} a deploy may carry",
            file.display(),
            code.len()
        ));
    }
    Ok(TxKind::Deploy {
        code,
        gas_limit,
        gas_price,
    })
}

/// A call of `entry` of `contract` (hex id) with `input` (hex).
///
/// # Errors
/// Bad hex, or an entry or input over its limit.
pub fn call_kind(
    contract: &str,
    entry: &str,
    input: &str,
    value: u64,
    gas_limit: u64,
    gas_price: u64,
) -> Result<TxKind, String> {
    let input = hex::decode(input).map_err(|_| "--input: not hex".to_string())?;
    if entry.len() > ENTRY_BYTES_MAX || input.len() > INPUT_BYTES_MAX {
        return Err(format!(
            "the entry name is at most {ENTRY_BYTES_MAX} bytes and the input at most {INPUT_BYTES_MAX}"
        ));
    }
    Ok(TxKind::Call {
        contract: hex32("contract", contract)?,
        value,
        gas_limit,
        gas_price,
        entry: entry.to_string(),
        input,
    })
}

/// `strata query key`: fetches a state value with its proof and checks the
/// proof locally against the returned root.
///
/// # Errors
/// Transport failures, or a proof that does not verify.
pub fn query_key(api: &str, owner: Option<&str>, key: &str) -> Result<String, String> {
    let client = Client::new(api);
    let (path, state_key) = match owner {
        Some(owner) => {
            let o = hex32("owner", owner)?;
            (
                format!(
                    "/v1/state/{}/{}",
                    hex::encode(o),
                    hex::encode(key.as_bytes())
                ),
                user_key(&o, key.as_bytes()),
            )
        }
        // Without an owner, KEY is an account public key.
        None => {
            let pk = hex32("account", key)?;
            (
                format!("/v1/state/{}", hex::encode(account_key(&pk))),
                account_key(&pk),
            )
        }
    };
    let a = client.get(&path)?;
    let root = hex32("root", a["root"].as_str().unwrap_or(""))?;
    let proof_bytes =
        hex::decode(a["proof"].as_str().unwrap_or("")).map_err(|_| "proof: not hex".to_string())?;
    let proof = merkle::Proof::decode(&proof_bytes).map_err(|e| format!("proof: {e}"))?;
    let value = match a["value"].as_str() {
        Some(v) => Some(hex::decode(v).map_err(|_| "value: not hex".to_string())?),
        None => None,
    };
    let vh = value.as_deref().map(merkle::value_hash);
    if !merkle::verify_path(&root, &state_key, vh.as_ref(), &proof) {
        return Err(format!(
            "the proof does NOT verify against root {}: do not trust this answer",
            hex::encode(root)
        ));
    }
    let shown = match &value {
        Some(v) => format!("value {} ({} bytes)", hex::encode(v), v.len()),
        None => "absent".into(),
    };
    Ok(format!(
        "{shown}\nproof verified locally against state root {} at height {}",
        hex::encode(root),
        a["height"]
    ))
}
