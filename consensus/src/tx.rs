//! Transactions: the canonical binary encoding, strict decoding, signing and
//! ids.
//!
//! Layout (all integers little-endian, fixed width; `docs/protocol.md` has the
//! same table):
//!
//! | field       | bytes | notes                                         |
//! |-------------|-------|-----------------------------------------------|
//! | version     | 1     | [`TX_VERSION`]                                |
//! | chain_id    | 8     | must match the node's chain                   |
//! | sender      | 32    | ed25519 public key                            |
//! | nonce       | 8     | per sender, starts at 0, +1 per transaction   |
//! | fee         | 8     | paid by the sender, burned (see `fee` below)  |
//! | kind tag    | 1     | 0 transfer, 1 put, 2 delete, 3 deploy, 4 call |
//! | kind body   | var   | transfer: `to` (32) + `amount` (8); put: key len (1) + key + value len (2) + value; delete: key len (1) + key; deploy: gas limit (8) + gas price (8) + code len (4) + code; call: contract (32) + value (8) + gas limit (8) + gas price (8) + entry len (1) + entry (UTF-8) + input len (2) + input |
//! | signature   | 64    | ed25519 over `SIGNING_DOMAIN ‖ all bytes above` |
//!
//! The id is blake3 of the whole encoding, signature included. Decoding is
//! strict: every length is bounded before anything is read, unknown versions
//! and tags are refused, and trailing bytes are an error — so each valid
//! transaction has exactly one encoding and one id.
//!
//! Fees are **burned**: the fee leaves the sender's balance and goes nowhere,
//! so proposers gain nothing by stuffing blocks with their own transactions,
//! and the supply invariant is `sum(balances) + burned == genesis supply`.

use ed25519_dalek::{Signer, SigningKey};

use crate::error::DecodeError;
use crate::reader::Reader;
use crate::signature::SenderKey;

/// Encoding version byte.
pub const TX_VERSION: u8 = 1;
/// Prefix of every signed message, so a transaction signature can never be
/// replayed as a signature of anything else (handshakes, blocks).
pub const SIGNING_DOMAIN: &[u8] = b"strata/tx/v1\0";
/// Longest user key a `Put`/`Delete` may name, in bytes.
pub const USER_KEY_BYTES_MAX: usize = 64;
/// Longest value a `Put` may store, in bytes.
pub const USER_VALUE_BYTES_MAX: usize = 1024;
/// Bytes before the kind body: version, chain id, sender, nonce, fee, tag.
const HEADER_BYTES: usize = 1 + 8 + 32 + 8 + 8 + 1;
/// Signature width.
/// Bytes of an ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;
/// Largest module a `Deploy` may carry, in bytes.
pub const CODE_BYTES_MAX: usize = strata_vm::limits::CODE_BYTES_MAX;
/// Longest key a contract may use in its namespace (longer than a user's).
pub const CONTRACT_KEY_BYTES_MAX: usize = strata_vm::limits::STORAGE_KEY_BYTES_MAX;
/// Longest entry point name a `Call` may name, in bytes.
pub const ENTRY_BYTES_MAX: usize = strata_vm::limits::ENTRY_BYTES_MAX;
/// Most gas a deploy or call may be given: more could never be included
/// (a block's gas limits are bounded), so it is refused at decoding.
pub const GAS_LIMIT_MAX: u64 = strata_vm::limits::GAS_LIMIT_MAX;
/// Longest argument bytes a `Call` may carry.
pub const INPUT_BYTES_MAX: usize = strata_vm::limits::INPUT_BYTES_MAX;
/// Largest encoded put: the longest key and value.
const PUT_BYTES_MAX: usize =
    HEADER_BYTES + 1 + USER_KEY_BYTES_MAX + 2 + USER_VALUE_BYTES_MAX + SIGNATURE_BYTES;
/// Largest encoded deploy: the largest module.
const DEPLOY_BYTES_MAX: usize = HEADER_BYTES + 8 + 8 + 4 + CODE_BYTES_MAX + SIGNATURE_BYTES;
/// Largest encoded call.
const CALL_BYTES_MAX: usize =
    HEADER_BYTES + 32 + 8 + 8 + 8 + 1 + ENTRY_BYTES_MAX + 2 + INPUT_BYTES_MAX + SIGNATURE_BYTES;
/// Largest encoded transaction (a deploy of the largest module).
pub const TX_BYTES_MAX: usize = DEPLOY_BYTES_MAX;
/// Smallest encoded transaction (a delete of an empty key).
pub const TX_BYTES_MIN: usize = HEADER_BYTES + 1 + SIGNATURE_BYTES;

const _: () = assert!(USER_KEY_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(USER_KEY_BYTES_MAX <= CONTRACT_KEY_BYTES_MAX);
const _: () = assert!(CONTRACT_KEY_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(USER_VALUE_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(PUT_BYTES_MAX <= TX_BYTES_MAX && CALL_BYTES_MAX <= TX_BYTES_MAX);
const _: () = assert!(ENTRY_BYTES_MAX <= u8::MAX as usize && INPUT_BYTES_MAX <= u16::MAX as usize);

/// A 32-byte transaction id (blake3 of the encoding).
pub type TxId = [u8; 32];
/// A 32-byte ed25519 public key identifying an account.
pub type PublicKey = [u8; 32];

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxKind {
    /// Moves `amount` from the sender to `to`.
    Transfer {
        /// Receiving account.
        to: PublicKey,
        /// Amount moved.
        amount: u64,
    },
    /// Stores `value` under `key` in the sender's namespace.
    Put {
        /// User key, at most [`USER_KEY_BYTES_MAX`] bytes.
        key: Vec<u8>,
        /// Value, at most [`USER_VALUE_BYTES_MAX`] bytes.
        value: Vec<u8>,
    },
    /// Deletes `key` from the sender's namespace.
    Delete {
        /// User key, at most [`USER_KEY_BYTES_MAX`] bytes.
        key: Vec<u8>,
    },
    /// Deploys a WebAssembly contract (docs/protocol.md, "Contracts"):
    /// the code is stored under its hash, and a new contract with its own
    /// id, balance and namespace runs it.
    Deploy {
        /// The binary module, at most [`CODE_BYTES_MAX`] bytes.
        code: Vec<u8>,
        /// Most gas the deploy may use.
        gas_limit: u64,
        /// Paid per unit of gas used, burned like the fee.
        gas_price: u64,
    },
    /// Calls entry point `entry` of contract `contract` with `input`,
    /// after moving `value` from the sender to the contract.
    Call {
        /// The contract's id.
        contract: [u8; 32],
        /// Moved to the contract before the call; returned if it fails.
        value: u64,
        /// Most gas the call may use.
        gas_limit: u64,
        /// Paid per unit of gas used, burned like the fee.
        gas_price: u64,
        /// Exported function to run, at most [`ENTRY_BYTES_MAX`] bytes.
        entry: String,
        /// Argument bytes, at most [`INPUT_BYTES_MAX`].
        input: Vec<u8>,
    },
}

impl TxKind {
    fn tag(&self) -> u8 {
        match self {
            TxKind::Transfer { .. } => 0,
            TxKind::Put { .. } => 1,
            TxKind::Delete { .. } => 2,
            TxKind::Deploy { .. } => 3,
            TxKind::Call { .. } => 4,
        }
    }

    /// The most gas the transaction may pay for, times its price: what the
    /// sender must hold beyond the fee and any amount. Zero for kinds
    /// without gas. Saturates (a sender cannot hold `u64::MAX`).
    pub fn gas_budget(&self) -> u64 {
        self.gas_budget_checked().unwrap_or(u64::MAX)
    }

    /// [`TxKind::gas_budget`], `None` when the product overflows (such a
    /// transaction makes its block invalid).
    pub fn gas_budget_checked(&self) -> Option<u64> {
        match self {
            TxKind::Deploy {
                gas_limit,
                gas_price,
                ..
            }
            | TxKind::Call {
                gas_limit,
                gas_price,
                ..
            } => gas_limit.checked_mul(*gas_price),
            _ => Some(0),
        }
    }

    /// The gas limit of a deploy or call; zero for other kinds.
    pub fn gas_limit(&self) -> u64 {
        match self {
            TxKind::Deploy { gas_limit, .. } | TxKind::Call { gas_limit, .. } => *gas_limit,
            _ => 0,
        }
    }
}

/// The signed fields of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxBody {
    /// Chain the transaction is valid on.
    pub chain_id: u64,
    /// Sender public key.
    pub sender: PublicKey,
    /// Sender's sequence number.
    pub nonce: u64,
    /// Fee paid (burned) by the sender.
    pub fee: u64,
    /// The operation.
    pub kind: TxKind,
}

/// A signed transaction with its canonical encoding and id computed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    body: TxBody,
    signature: [u8; SIGNATURE_BYTES],
    /// [`SIGNING_DOMAIN`] ‖ the canonical encoding, in one allocation: the
    /// encoding is its tail and the signed message its head up to the
    /// signature, so batch verification borrows the message instead of
    /// copying every transaction into a scratch buffer.
    framed: Box<[u8]>,
    id: TxId,
}

impl TxBody {
    /// Appends the signed part of the encoding (everything but the signature).
    fn encode_unsigned(&self, out: &mut Vec<u8>) {
        out.push(TX_VERSION);
        out.extend_from_slice(&self.chain_id.to_le_bytes());
        out.extend_from_slice(&self.sender);
        out.extend_from_slice(&self.nonce.to_le_bytes());
        out.extend_from_slice(&self.fee.to_le_bytes());
        out.push(self.kind.tag());
        match &self.kind {
            TxKind::Transfer { to, amount } => {
                out.extend_from_slice(to);
                out.extend_from_slice(&amount.to_le_bytes());
            }
            TxKind::Put { key, value } => {
                out.push(key.len() as u8);
                out.extend_from_slice(key);
                out.extend_from_slice(&(value.len() as u16).to_le_bytes());
                out.extend_from_slice(value);
            }
            TxKind::Delete { key } => {
                out.push(key.len() as u8);
                out.extend_from_slice(key);
            }
            TxKind::Deploy {
                code,
                gas_limit,
                gas_price,
            } => {
                out.extend_from_slice(&gas_limit.to_le_bytes());
                out.extend_from_slice(&gas_price.to_le_bytes());
                out.extend_from_slice(&(code.len() as u32).to_le_bytes());
                out.extend_from_slice(code);
            }
            TxKind::Call {
                contract,
                value,
                gas_limit,
                gas_price,
                entry,
                input,
            } => {
                out.extend_from_slice(contract);
                out.extend_from_slice(&value.to_le_bytes());
                out.extend_from_slice(&gas_limit.to_le_bytes());
                out.extend_from_slice(&gas_price.to_le_bytes());
                out.push(entry.len() as u8);
                out.extend_from_slice(entry.as_bytes());
                out.extend_from_slice(&(input.len() as u16).to_le_bytes());
                out.extend_from_slice(input);
            }
        }
    }

    fn check_limits(&self) -> Result<(), DecodeError> {
        match &self.kind {
            TxKind::Put { key, value } => {
                if key.len() > USER_KEY_BYTES_MAX {
                    return Err(DecodeError::TooLong {
                        field: "key",
                        len: key.len(),
                        max: USER_KEY_BYTES_MAX,
                    });
                }
                if value.len() > USER_VALUE_BYTES_MAX {
                    return Err(DecodeError::TooLong {
                        field: "value",
                        len: value.len(),
                        max: USER_VALUE_BYTES_MAX,
                    });
                }
            }
            TxKind::Delete { key } if key.len() > USER_KEY_BYTES_MAX => {
                return Err(DecodeError::TooLong {
                    field: "key",
                    len: key.len(),
                    max: USER_KEY_BYTES_MAX,
                });
            }
            TxKind::Deploy { gas_limit, .. } | TxKind::Call { gas_limit, .. }
                if *gas_limit > GAS_LIMIT_MAX =>
            {
                return Err(DecodeError::OverLimit {
                    field: "gas limit",
                    value: *gas_limit,
                    max: GAS_LIMIT_MAX,
                });
            }
            TxKind::Deploy { code, .. } if code.len() > CODE_BYTES_MAX => {
                return Err(DecodeError::TooLong {
                    field: "code",
                    len: code.len(),
                    max: CODE_BYTES_MAX,
                });
            }
            TxKind::Call { entry, input, .. } => {
                if entry.len() > ENTRY_BYTES_MAX {
                    return Err(DecodeError::TooLong {
                        field: "entry",
                        len: entry.len(),
                        max: ENTRY_BYTES_MAX,
                    });
                }
                if input.len() > INPUT_BYTES_MAX {
                    return Err(DecodeError::TooLong {
                        field: "input",
                        len: input.len(),
                        max: INPUT_BYTES_MAX,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Signs the body with `key`, whose public key must be `self.sender`.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] when a key or value is over its limit, and
    /// [`DecodeError::SenderMismatch`] when `key` is not the sender's.
    pub fn sign<S: TxSigner + ?Sized>(self, key: &S) -> Result<Transaction, DecodeError> {
        self.check_limits()?;
        if key.public_key() != self.sender {
            return Err(DecodeError::SenderMismatch);
        }
        let mut encoded = Vec::with_capacity(SIGNING_DOMAIN.len() + TX_BYTES_MAX);
        encoded.extend_from_slice(SIGNING_DOMAIN);
        self.encode_unsigned(&mut encoded);
        let signature = key.sign_message(&encoded);
        encoded.extend_from_slice(&signature);
        let id = *blake3::hash(&encoded[SIGNING_DOMAIN.len()..]).as_bytes();
        Ok(Transaction {
            body: self,
            signature,
            framed: encoded.into_boxed_slice(),
            id,
        })
    }
}

impl<'a> Reader<'a> {
    fn bounded(
        &mut self,
        len: usize,
        max: usize,
        field: &'static str,
    ) -> Result<Vec<u8>, DecodeError> {
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        Ok(self.take(field, len)?.to_vec())
    }
}

impl Transaction {
    /// Decodes one transaction, strictly: `bytes` must be exactly one
    /// canonical encoding. The signature is *not* checked here (that is
    /// batched: see [`crate::verify`]).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field that is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Transaction, DecodeError> {
        if bytes.len() > TX_BYTES_MAX {
            return Err(DecodeError::TooLong {
                field: "transaction",
                len: bytes.len(),
                max: TX_BYTES_MAX,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("version")?;
        if version != TX_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let chain_id = r.u64("chain_id")?;
        let sender = r.array::<32>("sender")?;
        let nonce = r.u64("nonce")?;
        let fee = r.u64("fee")?;
        let kind = match r.u8("kind")? {
            0 => TxKind::Transfer {
                to: r.array::<32>("to")?,
                amount: r.u64("amount")?,
            },
            1 => {
                let key_len = usize::from(r.u8("key length")?);
                let key = r.bounded(key_len, USER_KEY_BYTES_MAX, "key")?;
                let value_len = usize::from(r.u16("value length")?);
                let value = r.bounded(value_len, USER_VALUE_BYTES_MAX, "value")?;
                TxKind::Put { key, value }
            }
            2 => {
                let key_len = usize::from(r.u8("key length")?);
                TxKind::Delete {
                    key: r.bounded(key_len, USER_KEY_BYTES_MAX, "key")?,
                }
            }
            3 => {
                let gas_limit = r.u64("gas limit")?;
                let gas_price = r.u64("gas price")?;
                let code_len = u32::from_le_bytes(r.array::<4>("code length")?) as usize;
                TxKind::Deploy {
                    code: r.bounded(code_len, CODE_BYTES_MAX, "code")?,
                    gas_limit,
                    gas_price,
                }
            }
            4 => {
                let contract = r.array::<32>("contract")?;
                let value = r.u64("value")?;
                let gas_limit = r.u64("gas limit")?;
                let gas_price = r.u64("gas price")?;
                let entry_len = usize::from(r.u8("entry length")?);
                let entry = r.bounded(entry_len, ENTRY_BYTES_MAX, "entry")?;
                let entry = String::from_utf8(entry)
                    .map_err(|_| DecodeError::NotUtf8 { field: "entry" })?;
                let input_len = usize::from(r.u16("input length")?);
                TxKind::Call {
                    contract,
                    value,
                    gas_limit,
                    gas_price,
                    entry,
                    input: r.bounded(input_len, INPUT_BYTES_MAX, "input")?,
                }
            }
            tag => return Err(DecodeError::UnknownTag { field: "kind", tag }),
        };
        if let Some(gas) = Some(kind.gas_limit()).filter(|g| *g > GAS_LIMIT_MAX) {
            return Err(DecodeError::OverLimit {
                field: "gas limit",
                value: gas,
                max: GAS_LIMIT_MAX,
            });
        }
        let signature = r.array::<SIGNATURE_BYTES>("signature")?;
        if r.at != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                extra: bytes.len() - r.at,
            });
        }
        let id = *blake3::hash(bytes).as_bytes();
        let mut framed = Vec::with_capacity(SIGNING_DOMAIN.len() + bytes.len());
        framed.extend_from_slice(SIGNING_DOMAIN);
        framed.extend_from_slice(bytes);
        Ok(Transaction {
            body: TxBody {
                chain_id,
                sender,
                nonce,
                fee,
                kind,
            },
            signature,
            framed: framed.into_boxed_slice(),
            id,
        })
    }

    /// The signed fields.
    pub fn body(&self) -> &TxBody {
        &self.body
    }

    /// The id: blake3 of the canonical encoding.
    pub fn id(&self) -> &TxId {
        &self.id
    }

    /// The canonical encoding.
    pub fn encoded(&self) -> &[u8] {
        &self.framed[SIGNING_DOMAIN.len()..]
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8; SIGNATURE_BYTES] {
        &self.signature
    }

    /// The sender's public key.
    pub fn sender(&self) -> &PublicKey {
        &self.body.sender
    }

    /// The sender's nonce.
    pub fn nonce(&self) -> u64 {
        self.body.nonce
    }

    /// The fee.
    pub fn fee(&self) -> u64 {
        self.body.fee
    }

    /// The message the signature covers: the domain followed by the
    /// encoding without its signature. Borrowed, not built: the
    /// transaction keeps its encoding behind the domain for this.
    pub fn signing_message(&self) -> &[u8] {
        &self.framed[..self.framed.len() - SIGNATURE_BYTES]
    }

    /// [`Transaction::signing_message`] copied into `out` (cleared first),
    /// for callers that need an owned message.
    pub fn signing_message_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.signing_message());
    }

    /// Checks this one signature under the node's rule
    /// ([`crate::signature`]; the slow path, prefer batches).
    pub fn verify_signature(&self) -> bool {
        SenderKey::from_bytes(&self.body.sender).is_some_and(|key| {
            crate::signature::verify_one(&key, self.signing_message(), &self.signature)
        })
    }
}

/// A signing key from 32 bytes of seed (deterministic keys for devnets and
/// tests; real keys come from [`generate_signing_key`]).
pub fn signing_key_from_seed(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

/// What signs transactions: an ed25519 key, standard ([`SigningKey`]) or
/// derived for a synthetic genesis account
/// ([`crate::synthetic::SyntheticKey`]).
pub trait TxSigner {
    /// The public key signatures verify under.
    fn public_key(&self) -> PublicKey;
    /// The ed25519 signature of `message`.
    fn sign_message(&self, message: &[u8]) -> [u8; SIGNATURE_BYTES];
}

impl TxSigner for SigningKey {
    fn public_key(&self) -> PublicKey {
        self.verifying_key().to_bytes()
    }

    fn sign_message(&self, message: &[u8]) -> [u8; SIGNATURE_BYTES] {
        self.sign(message).to_bytes()
    }
}

/// A fresh signing key from the operating system's random source.
///
/// # Errors
/// When the OS random source fails.
pub fn generate_signing_key() -> Result<SigningKey, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        signing_key_from_seed(&[n; 32])
    }

    fn transfer(n: u8, nonce: u64) -> Transaction {
        let k = key(n);
        TxBody {
            chain_id: 7,
            sender: k.verifying_key().to_bytes(),
            nonce,
            fee: 10,
            kind: TxKind::Transfer {
                to: [9; 32],
                amount: 5,
            },
        }
        .sign(&k)
        .unwrap()
    }

    #[test]
    fn round_trip_every_kind() {
        let k = key(1);
        for kind in [
            TxKind::Transfer {
                to: [3; 32],
                amount: u64::MAX,
            },
            TxKind::Put {
                key: vec![1; USER_KEY_BYTES_MAX],
                value: vec![2; USER_VALUE_BYTES_MAX],
            },
            TxKind::Put {
                key: vec![],
                value: vec![],
            },
            TxKind::Delete { key: b"k".to_vec() },
            TxKind::Deploy {
                code: vec![7; CODE_BYTES_MAX],
                gas_limit: 1,
                gas_price: 2,
            },
            TxKind::Call {
                contract: [5; 32],
                value: 3,
                gas_limit: GAS_LIMIT_MAX,
                gas_price: 4,
                entry: "x".repeat(ENTRY_BYTES_MAX),
                input: vec![6; INPUT_BYTES_MAX],
            },
            TxKind::Call {
                contract: [5; 32],
                value: 0,
                gas_limit: 0,
                gas_price: 0,
                entry: String::new(),
                input: vec![],
            },
        ] {
            let tx = TxBody {
                chain_id: 1,
                sender: k.verifying_key().to_bytes(),
                nonce: 3,
                fee: 4,
                kind,
            }
            .sign(&k)
            .unwrap();
            let back = Transaction::decode(tx.encoded()).unwrap();
            assert_eq!(back, tx);
            assert!(back.verify_signature());
            assert!(tx.encoded().len() <= TX_BYTES_MAX && tx.encoded().len() >= TX_BYTES_MIN);
        }
    }

    #[test]
    fn strict_decoding_rejects_every_truncation_and_trailing_bytes() {
        let tx = transfer(1, 0);
        let bytes = tx.encoded();
        for cut in 0..bytes.len() {
            assert!(
                Transaction::decode(&bytes[..cut]).is_err(),
                "accepted a {cut}-byte prefix"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(matches!(
            Transaction::decode(&longer),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn over_limit_fields_are_refused() {
        let k = key(2);
        let body = TxBody {
            chain_id: 1,
            sender: k.verifying_key().to_bytes(),
            nonce: 0,
            fee: 0,
            kind: TxKind::Put {
                key: vec![0; USER_KEY_BYTES_MAX + 1],
                value: vec![],
            },
        };
        assert!(matches!(
            body.sign(&k),
            Err(DecodeError::TooLong { field: "key", .. })
        ));
        // A hand-made encoding claiming a 2000-byte value.
        let mut raw = vec![TX_VERSION];
        raw.extend_from_slice(&1u64.to_le_bytes());
        raw.extend_from_slice(&[0; 32]);
        raw.extend_from_slice(&0u64.to_le_bytes());
        raw.extend_from_slice(&0u64.to_le_bytes());
        raw.push(1);
        raw.push(0);
        raw.extend_from_slice(&2000u16.to_le_bytes());
        assert!(matches!(
            Transaction::decode(&raw),
            Err(DecodeError::TooLong { field: "value", .. })
        ));
    }

    #[test]
    fn a_gas_limit_no_block_could_hold_is_refused() {
        let k = key(2);
        let body = |gas_limit| TxBody {
            chain_id: 1,
            sender: k.verifying_key().to_bytes(),
            nonce: 0,
            fee: 0,
            kind: TxKind::Deploy {
                code: vec![0],
                gas_limit,
                gas_price: 1,
            },
        };
        assert!(matches!(
            body(GAS_LIMIT_MAX + 1).sign(&k),
            Err(DecodeError::OverLimit {
                field: "gas limit",
                ..
            })
        ));
        // The same over-limit encoding, made by hand, does not decode.
        let mut raw = body(GAS_LIMIT_MAX).sign(&k).unwrap().encoded().to_vec();
        let at = HEADER_BYTES;
        raw[at..at + 8].copy_from_slice(&(GAS_LIMIT_MAX + 1).to_le_bytes());
        assert!(matches!(
            Transaction::decode(&raw),
            Err(DecodeError::OverLimit {
                field: "gas limit",
                ..
            })
        ));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let tx = transfer(3, 1);
        let bytes = tx.encoded().to_vec();
        for byte in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[byte] ^= 0x01;
            if let Ok(decoded) = Transaction::decode(&bad) {
                assert!(
                    !decoded.verify_signature(),
                    "flipped byte {byte} still verifies"
                );
                assert_ne!(decoded.id(), tx.id());
            }
        }
    }

    #[test]
    fn signing_with_the_wrong_key_is_refused() {
        let body = TxBody {
            chain_id: 1,
            sender: key(1).verifying_key().to_bytes(),
            nonce: 0,
            fee: 0,
            kind: TxKind::Delete { key: vec![] },
        };
        assert!(matches!(
            body.sign(&key(2)),
            Err(DecodeError::SenderMismatch)
        ));
    }
}
