//! Contracts in the chain state: where code, contracts and receipts live,
//! and how a `Deploy` or a `Call` transaction is executed
//! ([`strata_vm`] runs the code).
//!
//! State entries (domain-separated blake3 like the others in
//! [`crate::state`]):
//! - code: `blake3("strata/code\0" ‖ code hash)` → the module, stored once
//!   however many contracts run it;
//! - contract: `blake3("strata/contract\0" ‖ contract id)` → its code hash;
//! - a contract's key `k`: [`crate::state::user_key`]`(contract id, k)`,
//!   the namespace a user's `Put` writes under its own key. No one holds
//!   a signing key for a contract id (a hash), so only the contract
//!   writes there, and the existing state proofs cover it;
//! - a contract's balance: [`crate::state::account_key`]`(contract id)`;
//!   anyone can pay a contract with a plain transfer;
//!
//! Receipts ([`Receipt`]: status, gas used, events, return data) are
//! history, not state: [`crate::state::StateDiff::receipts`] carries them
//! to the commit, which stores them beside the block's transactions and
//! prunes them with the block. Kept in the state they would grow it by
//! one entry per call forever, and cost a third more trie updates per
//! token transfer (measured: a block of 1,000 token transfers wrote 3,000
//! entries instead of 2,000). The state root commits to every effect of a
//! call (writes, balances, the gas paid); it does not commit to events or
//! return data.
//!
//! A contract's id is `blake3("strata/contract-id\0" ‖ deployer ‖ deploy
//! nonce)`: two deploys of the same code are two contracts with separate
//! state.
//!
//! Money. The sender pays its fee and reserves `gas_limit × gas_price`
//! (and a call's `value`) before anything runs; a transaction that cannot
//! pay that makes the block invalid, like an overdraft. After the run,
//! `gas_used × gas_price` is burned with the fee and the rest of the
//! reserve returned. A failed call (out of gas, reverted, trapped, a limit
//! passed, no such contract or entry) is still executed: its fee and gas
//! are paid, its `value` goes back to the sender, its writes, transfers
//! and events are dropped, and its receipt says why.

use std::sync::{Mutex, OnceLock};

use strata_storage::lru::{IdentityState, LruCache};

use strata_vm::limits::CODE_LOAD_BYTE_GAS;
use strata_vm::{CallContext, Contract, ContractStore, LocalFault, Outcome, Status, Vm};

use crate::error::DecodeError;
use crate::reader::Reader;
use crate::state::{user_key, ExecError, Overlay, StateKey, StateReader};
use crate::tx::{PublicKey, Transaction, TxKind};

/// Gas of a deploy before its bytes.
pub const DEPLOY_GAS: u64 = 20_000;
/// Gas per byte of deployed code: it is stored on every node, like a
/// contract's own storage bytes.
pub const DEPLOY_BYTE_GAS: u64 = strata_vm::limits::STORAGE_BYTE_GAS;
/// Gas of a call before the contract runs: finding and loading it.
pub const CALL_GAS: u64 = 10_000;
/// Longest message a receipt keeps (a revert's text, a trap's name).
pub const RECEIPT_MESSAGE_BYTES_MAX: usize = 256;
/// Compiled modules kept by code hash. Compiling is eager, so whether a
/// module was cached changes no gas figure, only time.
pub const MODULE_CACHE_ENTRIES: usize = 64;

/// Receipt encoding version.
const RECEIPT_VERSION: u8 = 1;

/// The state key of the code whose blake3 hash is `code_hash`.
pub fn code_key(code_hash: &[u8; 32]) -> StateKey {
    hashed(b"strata/code\0", &[code_hash])
}

/// The state key of contract `id`'s record (its code hash).
pub fn contract_key(id: &[u8; 32]) -> StateKey {
    hashed(b"strata/contract\0", &[id])
}

/// The id of the contract `deployer` creates with its transaction of
/// nonce `nonce`.
pub fn contract_id(deployer: &PublicKey, nonce: u64) -> [u8; 32] {
    hashed(b"strata/contract-id\0", &[deployer, &nonce.to_le_bytes()])
}

fn hashed(domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(domain);
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// How a deploy or call ended, as its receipt records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// It ran and its effects were applied.
    Success,
    /// The gas limit ran out.
    OutOfGas,
    /// The contract reverted (message in the receipt).
    Reverted,
    /// A Wasm trap (its name in the message).
    Trapped,
    /// A limit of the runtime was passed (named in the message).
    LimitExceeded,
    /// No exported `() -> ()` function of that name.
    NoSuchEntry,
    /// No contract with that id.
    NoSuchContract,
    /// The deployed module was refused (the reason in the message).
    Refused,
}

impl ReceiptStatus {
    fn tag(&self) -> u8 {
        match self {
            ReceiptStatus::Success => 0,
            ReceiptStatus::OutOfGas => 1,
            ReceiptStatus::Reverted => 2,
            ReceiptStatus::Trapped => 3,
            ReceiptStatus::LimitExceeded => 4,
            ReceiptStatus::NoSuchEntry => 5,
            ReceiptStatus::NoSuchContract => 6,
            ReceiptStatus::Refused => 7,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, DecodeError> {
        Ok(match tag {
            0 => ReceiptStatus::Success,
            1 => ReceiptStatus::OutOfGas,
            2 => ReceiptStatus::Reverted,
            3 => ReceiptStatus::Trapped,
            4 => ReceiptStatus::LimitExceeded,
            5 => ReceiptStatus::NoSuchEntry,
            6 => ReceiptStatus::NoSuchContract,
            7 => ReceiptStatus::Refused,
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "receipt status",
                    tag,
                })
            }
        })
    }

    /// A short stable name, for the API.
    pub fn name(&self) -> &'static str {
        match self {
            ReceiptStatus::Success => "success",
            ReceiptStatus::OutOfGas => "out_of_gas",
            ReceiptStatus::Reverted => "reverted",
            ReceiptStatus::Trapped => "trapped",
            ReceiptStatus::LimitExceeded => "limit_exceeded",
            ReceiptStatus::NoSuchEntry => "no_such_entry",
            ReceiptStatus::NoSuchContract => "no_such_contract",
            ReceiptStatus::Refused => "refused",
        }
    }
}

/// What a deploy or call did.
///
/// Encoding: version (1) ‖ status (1) ‖ gas used (8) ‖ contract (32) ‖
/// message len (2) + message ‖ return len (2) + return data ‖ event count
/// (1) + each event's contract (32) ‖ len (2) ‖ bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// How it ended.
    pub status: ReceiptStatus,
    /// Gas charged (at `gas_price` each).
    pub gas_used: u64,
    /// The contract deployed, or called.
    pub contract: [u8; 32],
    /// Why it failed, at most [`RECEIPT_MESSAGE_BYTES_MAX`] bytes; empty on
    /// success.
    pub message: String,
    /// The call's return data.
    pub return_data: Vec<u8>,
    /// The call's events (emitting contract, bytes), in order: the called
    /// contract's and those of the contracts it called.
    pub events: Vec<([u8; 32], Vec<u8>)>,
}

impl Receipt {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.message.len() + self.return_data.len());
        out.push(RECEIPT_VERSION);
        out.push(self.status.tag());
        out.extend_from_slice(&self.gas_used.to_le_bytes());
        out.extend_from_slice(&self.contract);
        out.extend_from_slice(&(self.message.len() as u16).to_le_bytes());
        out.extend_from_slice(self.message.as_bytes());
        out.extend_from_slice(&(self.return_data.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.return_data);
        out.push(self.events.len() as u8);
        for (contract, e) in &self.events {
            out.extend_from_slice(contract);
            out.extend_from_slice(&(e.len() as u16).to_le_bytes());
            out.extend_from_slice(e);
        }
        out
    }

    /// Strict decode of [`Receipt::encode`]'s output.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field that is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Receipt, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("receipt version")?;
        if version != RECEIPT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let status = ReceiptStatus::from_tag(r.u8("receipt status")?)?;
        let gas_used = r.u64("gas used")?;
        let contract = r.array::<32>("contract")?;
        let len = usize::from(r.u16("message length")?);
        let message = String::from_utf8(r.take("message", len)?.to_vec())
            .map_err(|_| DecodeError::NotUtf8 { field: "message" })?;
        let len = usize::from(r.u16("return length")?);
        let return_data = r.take("return data", len)?.to_vec();
        let count = usize::from(r.u8("event count")?);
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            let contract = r.array::<32>("event contract")?;
            let len = usize::from(r.u16("event length")?);
            events.push((contract, r.take("event", len)?.to_vec()));
        }
        if r.at != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                extra: bytes.len() - r.at,
            });
        }
        Ok(Receipt {
            status,
            gas_used,
            contract,
            message,
            return_data,
            events,
        })
    }
}

/// The block a transaction is executed in, as contracts see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEnv {
    /// The block's height.
    pub height: u64,
    /// The block's timestamp, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

impl BlockEnv {
    /// The environment of `block`.
    pub fn of(block: &crate::block::Block) -> BlockEnv {
        BlockEnv {
            height: block.height(),
            timestamp_ms: block.header().timestamp_ms,
        }
    }
}

/// The runtime, made once per process.
fn vm() -> &'static Vm {
    static VM: OnceLock<Vm> = OnceLock::new();
    VM.get_or_init(Vm::new)
}

/// Compiled modules by code hash, the [`MODULE_CACHE_ENTRIES`] most
/// recently used. A code hash names one module whatever the state, so an
/// entry is never stale; whether a contract exists is still read from the
/// state on every call. What a miss costs is charged on every call
/// (`CODE_LOAD_BYTE_GAS`), so the cache changes time, never gas.
fn module_cache() -> &'static Mutex<LruCache<[u8; 32], Contract, IdentityState>> {
    static CACHE: OnceLock<Mutex<LruCache<[u8; 32], Contract, IdentityState>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(LruCache::with_hasher(MODULE_CACHE_ENTRIES, IdentityState)))
}

/// The compiled module of `code_hash`, if cached.
fn cached(code_hash: &[u8; 32]) -> Option<Contract> {
    module_cache()
        .lock()
        .expect("module cache lock")
        .get(code_hash)
        .cloned()
}

/// Checks and compiles `code` (whose hash is `code_hash`) and caches it.
fn compiled(code_hash: &[u8; 32], code: &[u8]) -> Result<Contract, strata_vm::DeployError> {
    if let Some(c) = cached(code_hash) {
        return Ok(c);
    }
    let c = vm().deploy_check(code)?;
    module_cache()
        .lock()
        .expect("module cache lock")
        .put(*code_hash, c.clone());
    Ok(c)
}

/// Checks a module as a deploy would, for admission: the error a client
/// gets for a module every node would refuse.
///
/// # Errors
/// Why the module cannot be deployed.
pub fn check_code(code: &[u8]) -> Result<(), strata_vm::DeployError> {
    // Through the cache: the block that includes the deploy then finds
    // the module compiled.
    compiled(blake3::hash(code).as_bytes(), code).map(|_| ())
}

/// The state as a call sees it: the block's overlay (the finalized state
/// and the block's earlier transactions).
struct View<'o, 'b, R: StateReader> {
    overlay: &'o Overlay<'b, R>,
}

impl<R: StateReader> ContractStore for View<'_, '_, R> {
    fn read(&self, contract: &[u8; 32], key: &[u8]) -> Result<Option<Vec<u8>>, LocalFault> {
        self.overlay
            .get(&user_key(contract, key))
            .map_err(|e| LocalFault(e.to_string()))
    }

    fn balance(&self, account: &[u8; 32]) -> Result<u64, LocalFault> {
        self.overlay
            .account(account)
            .map(|a| a.balance)
            .map_err(|e| LocalFault(e.to_string()))
    }

    fn contract(&self, id: &[u8; 32]) -> Result<Option<Contract>, LocalFault> {
        load(self.overlay, id).map_err(|e| LocalFault(e.to_string()))
    }
}

/// The compiled module of contract `id`, `None` when there is none. The
/// code is read only when its module is not compiled yet; stored code
/// passed the same check when it was deployed.
fn load(
    state: &Overlay<'_, impl StateReader>,
    id: &[u8; 32],
) -> Result<Option<Contract>, ExecError> {
    let ck = contract_key(id);
    let Some(hash) = state.get(&ck)? else {
        return Ok(None);
    };
    let hash: [u8; 32] = hash
        .as_slice()
        .try_into()
        .map_err(|_| ExecError::CorruptState(ck))?;
    if let Some(m) = cached(&hash) {
        return Ok(Some(m));
    }
    let code_at = code_key(&hash);
    let code = state
        .get(&code_at)?
        .ok_or(ExecError::CorruptState(code_at))?;
    compiled(&hash, &code)
        .map(Some)
        .map_err(|_| ExecError::CorruptState(code_at))
}

fn message(s: String) -> String {
    if s.len() <= RECEIPT_MESSAGE_BYTES_MAX {
        return s;
    }
    let mut end = RECEIPT_MESSAGE_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Executes the deploy or call `tx`, whose sender has already paid its
/// fee, `gas_limit × gas_price` and any `value` (all taken from its
/// balance): runs it, refunds the unused gas (and the value of a failed
/// call), writes its effects and receipt. Returns the gas used.
///
/// # Errors
/// A local fault (the state could not be read), or an overflow.
pub(crate) fn execute(
    state: &mut Overlay<'_, impl StateReader>,
    env: BlockEnv,
    tx: &Transaction,
) -> Result<u64, ExecError> {
    let sender = *tx.sender();
    let (receipt, gas_price, gas_limit) = match &tx.body().kind {
        TxKind::Deploy {
            code,
            gas_limit,
            gas_price,
        } => (deploy(state, tx, code, *gas_limit)?, *gas_price, *gas_limit),
        TxKind::Call {
            contract,
            value,
            gas_limit,
            gas_price,
            entry,
            input,
        } => {
            let ctx = CallContext {
                caller: sender,
                contract: *contract,
                height: env.height,
                time_ms: env.timestamp_ms,
                balance: 0,
                value: *value,
            };
            let r = call(state, ctx, *value, entry, input, *gas_limit)?;
            (r, *gas_price, *gas_limit)
        }
        _ => unreachable!("only deploys and calls are executed here"),
    };
    debug_assert!(receipt.gas_used <= gas_limit);
    let refund = (gas_limit - receipt.gas_used).saturating_mul(gas_price);
    state.credit(&sender, refund)?;
    let used = receipt.gas_used;
    state.receipts.push((*tx.id(), receipt));
    Ok(used)
}

fn deploy(
    state: &mut Overlay<'_, impl StateReader>,
    tx: &Transaction,
    code: &[u8],
    gas_limit: u64,
) -> Result<Receipt, ExecError> {
    let id = contract_id(tx.sender(), tx.nonce());
    let gas = DEPLOY_GAS + code.len() as u64 * DEPLOY_BYTE_GAS;
    let mut receipt = Receipt {
        status: ReceiptStatus::Success,
        gas_used: gas,
        contract: id,
        message: String::new(),
        return_data: Vec::new(),
        events: Vec::new(),
    };
    if gas > gas_limit {
        receipt.status = ReceiptStatus::OutOfGas;
        receipt.gas_used = gas_limit;
        return Ok(receipt);
    }
    let hash = *blake3::hash(code).as_bytes();
    if let Err(e) = compiled(&hash, code) {
        receipt.status = ReceiptStatus::Refused;
        receipt.message = message(e.to_string());
        return Ok(receipt);
    }
    state.changes.insert(code_key(&hash), Some(code.to_vec()));
    state.changes.insert(contract_key(&id), Some(hash.to_vec()));
    Ok(receipt)
}

fn call(
    state: &mut Overlay<'_, impl StateReader>,
    mut ctx: CallContext,
    value: u64,
    entry: &str,
    input: &[u8],
    gas_limit: u64,
) -> Result<Receipt, ExecError> {
    let mut receipt = Receipt {
        status: ReceiptStatus::Success,
        gas_used: CALL_GAS.min(gas_limit),
        contract: ctx.contract,
        message: String::new(),
        return_data: Vec::new(),
        events: Vec::new(),
    };
    // The value goes back to the caller unless the call succeeds.
    if CALL_GAS > gas_limit {
        receipt.status = ReceiptStatus::OutOfGas;
        state.credit(&ctx.caller, value)?;
        return Ok(receipt);
    }
    let Some(module) = load(state, &ctx.contract)? else {
        receipt.status = ReceiptStatus::NoSuchContract;
        state.credit(&ctx.caller, value)?;
        return Ok(receipt);
    };
    // Every call pays for loading the code, cached or not (see
    // CODE_LOAD_BYTE_GAS): gas must not depend on a node's cache.
    let load_gas = CALL_GAS + module.code_len() as u64 * CODE_LOAD_BYTE_GAS;
    if load_gas > gas_limit {
        receipt.status = ReceiptStatus::OutOfGas;
        receipt.gas_used = gas_limit;
        state.credit(&ctx.caller, value)?;
        return Ok(receipt);
    }
    state.credit(&ctx.contract, value)?;
    state.touched.push(ctx.contract);
    ctx.balance = state.account(&ctx.contract)?.balance;
    let out: Outcome = vm()
        .call(
            &module,
            &ctx,
            entry,
            input,
            gas_limit - load_gas,
            &View { overlay: state },
        )
        .map_err(|e| ExecError::Read(e.0))?;
    receipt.gas_used = load_gas + out.gas_used;
    let (status, why) = match out.status {
        Status::Success => (ReceiptStatus::Success, String::new()),
        Status::OutOfGas => (ReceiptStatus::OutOfGas, String::new()),
        Status::Reverted(m) => (ReceiptStatus::Reverted, m),
        Status::Trapped(t) => (ReceiptStatus::Trapped, t),
        Status::LimitExceeded(what) => (ReceiptStatus::LimitExceeded, what.to_string()),
        Status::NoSuchEntry => (ReceiptStatus::NoSuchEntry, entry.to_string()),
    };
    receipt.status = status;
    receipt.message = message(why);
    if receipt.status != ReceiptStatus::Success {
        state.debit(&ctx.contract, value)?;
        state.credit(&ctx.caller, value)?;
        return Ok(receipt);
    }
    for ((contract, k), v) in out.writes {
        state.changes.insert(user_key(&contract, &k), v);
    }
    for (from, to, amount) in &out.transfers {
        state.debit(from, *amount)?;
        state.credit(to, *amount)?;
        state.touched.push(*from);
        state.touched.push(*to);
    }
    receipt.return_data = out.return_data;
    receipt.events = out.events;
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    use super::*;
    use crate::mem_chain::state_commitment;
    use crate::state::{
        account_key, burned_key, execute, read_account, Account, StateDiff, BLOCK_GAS_MAX,
    };
    use crate::tx::{signing_key_from_seed, TxBody, TxId};

    /// A counter: key "n" (8 bytes LE) + 1, returned and emitted; `fail`
    /// writes and then traps; `spin` never ends; `pay` sends 5 to the
    /// caller.
    const COUNTER: &str = r#"(module
      (import "strata" "storage_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "strata" "storage_write" (func $write (param i32 i32 i32 i32)))
      (import "strata" "emit" (func $emit (param i32 i32)))
      (import "strata" "set_return" (func $ret (param i32 i32)))
      (import "strata" "caller" (func $caller (param i32)))
      (import "strata" "transfer" (func $transfer (param i32 i64) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "n")
      (func (export "bump")
        (if (i32.eq (call $read (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 8)) (i32.const -1))
          (then (i64.store (i32.const 16) (i64.const 0))))
        (i64.store (i32.const 16) (i64.add (i64.load (i32.const 16)) (i64.const 1)))
        (call $write (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 8))
        (call $emit (i32.const 16) (i32.const 8))
        (call $ret (i32.const 16) (i32.const 8)))
      (func (export "fail")
        (call $write (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 8))
        unreachable)
      (func (export "spin") (loop $l (br $l)))
      (func (export "pay")
        (call $caller (i32.const 64))
        (drop (call $transfer (i32.const 64) (i64.const 5)))))"#;

    fn key(n: u8) -> ed25519_dalek::SigningKey {
        signing_key_from_seed(&[n; 32])
    }

    fn pk(n: u8) -> PublicKey {
        key(n).verifying_key().to_bytes()
    }

    fn tx(n: u8, nonce: u64, kind: TxKind) -> Arc<Transaction> {
        Arc::new(
            TxBody {
                chain_id: 1,
                sender: pk(n),
                nonce,
                fee: 1,
                kind,
            }
            .sign(&key(n))
            .unwrap(),
        )
    }

    fn deploy_tx(n: u8, nonce: u64, code: Vec<u8>) -> Arc<Transaction> {
        tx(
            n,
            nonce,
            TxKind::Deploy {
                code,
                gas_limit: 5_000_000,
                gas_price: 2,
            },
        )
    }

    fn call_tx(
        n: u8,
        nonce: u64,
        contract: [u8; 32],
        entry: &str,
        value: u64,
        gas_limit: u64,
    ) -> Arc<Transaction> {
        tx(
            n,
            nonce,
            TxKind::Call {
                contract,
                value,
                gas_limit,
                gas_price: 2,
                entry: entry.into(),
                input: vec![],
            },
        )
    }

    /// State entries, and the receipts of the blocks run on them.
    #[derive(Default)]
    struct State {
        map: BTreeMap<StateKey, Vec<u8>>,
        receipts: HashMap<TxId, Receipt>,
    }

    impl StateReader for State {
        fn read(&self, key: &StateKey) -> Result<Option<Vec<u8>>, ExecError> {
            Ok(self.map.get(key).cloned())
        }
    }

    fn funded() -> State {
        let map = [1u8, 2]
            .iter()
            .map(|n| {
                (
                    account_key(&pk(*n)),
                    Account {
                        balance: 1_000_000_000,
                        nonce: 0,
                    }
                    .encode(),
                )
            })
            .collect();
        State {
            map,
            receipts: HashMap::new(),
        }
    }

    fn apply(state: &mut State, diff: StateDiff) {
        for (k, v) in diff.changes {
            match v {
                Some(v) => state.map.insert(k, v),
                None => state.map.remove(&k),
            };
        }
        state.receipts.extend(diff.receipts);
    }

    fn run(state: &mut State, height: u64, txs: &[Arc<Transaction>]) {
        let env = BlockEnv {
            height,
            timestamp_ms: 1_000 * height,
        };
        let diff = execute(state, env, txs).expect("the block applies");
        apply(state, diff);
    }

    fn receipt(state: &State, tx: &Transaction) -> Receipt {
        let r = state.receipts[tx.id()].clone();
        assert_eq!(Receipt::decode(&r.encode()).unwrap(), r);
        r
    }

    fn balance(state: &State, who: &PublicKey) -> u64 {
        read_account(state, who).unwrap().balance
    }

    fn supply(state: &State, holders: &[PublicKey]) -> u64 {
        let burned = state
            .map
            .get(&burned_key())
            .map_or(0, |b| u64::from_le_bytes(b.as_slice().try_into().unwrap()));
        holders.iter().map(|h| balance(state, h)).sum::<u64>() + burned
    }

    fn counter_code() -> Vec<u8> {
        wat::parse_str(COUNTER).unwrap()
    }

    #[test]
    fn a_deployed_counter_counts_and_pays_gas() {
        let mut state = funded();
        let d = deploy_tx(1, 0, counter_code());
        run(&mut state, 1, std::slice::from_ref(&d));
        let r = receipt(&state, &d);
        assert_eq!(r.status, ReceiptStatus::Success, "{}", r.message);
        let id = contract_id(&pk(1), 0);
        assert_eq!(r.contract, id);
        let deploy_gas = DEPLOY_GAS + counter_code().len() as u64 * DEPLOY_BYTE_GAS;
        assert_eq!(r.gas_used, deploy_gas);
        assert_eq!(balance(&state, &pk(1)), 1_000_000_000 - 1 - 2 * deploy_gas);

        let calls: Vec<_> = (0..3)
            .map(|i| call_tx(2, i, id, "bump", 0, 1_000_000))
            .collect();
        run(&mut state, 2, &calls);
        for (i, c) in calls.iter().enumerate() {
            let r = receipt(&state, c);
            assert_eq!(r.status, ReceiptStatus::Success);
            assert_eq!(r.return_data, (i as u64 + 1).to_le_bytes());
            assert_eq!(r.events, vec![(id, (i as u64 + 1).to_le_bytes().to_vec())]);
        }
        assert_eq!(
            state.map[&user_key(&id, b"n")],
            3u64.to_le_bytes().to_vec(),
            "the contract's key is an entry of its namespace"
        );
        // Loading the code is charged on every call, cached or not.
        let load = CALL_GAS + counter_code().len() as u64 * CODE_LOAD_BYTE_GAS;
        assert!(calls.iter().all(|c| receipt(&state, c).gas_used > load));
        let used: u64 = calls.iter().map(|c| receipt(&state, c).gas_used).sum();
        assert_eq!(balance(&state, &pk(2)), 1_000_000_000 - 3 - 2 * used);
        assert_eq!(supply(&state, &[pk(1), pk(2), id]), 2_000_000_000);
    }

    #[test]
    fn failed_calls_are_charged_but_change_nothing_else() {
        let mut state = funded();
        let id = contract_id(&pk(1), 0);
        run(&mut state, 1, &[deploy_tx(1, 0, counter_code())]);
        let before = balance(&state, &pk(2));
        let trap = call_tx(2, 0, id, "fail", 100, 1_000_000);
        let spin = call_tx(2, 1, id, "spin", 100, 300_000);
        let nope = call_tx(2, 2, id, "nope", 100, 1_000_000);
        let gone = call_tx(2, 3, [9; 32], "bump", 100, 1_000_000);
        run(
            &mut state,
            2,
            &[trap.clone(), spin.clone(), nope.clone(), gone.clone()],
        );
        assert_eq!(receipt(&state, &trap).status, ReceiptStatus::Trapped);
        assert_eq!(receipt(&state, &spin).status, ReceiptStatus::OutOfGas);
        assert_eq!(receipt(&state, &spin).gas_used, 300_000);
        assert_eq!(receipt(&state, &nope).status, ReceiptStatus::NoSuchEntry);
        assert_eq!(receipt(&state, &gone).status, ReceiptStatus::NoSuchContract);
        assert!(
            !state.map.contains_key(&user_key(&id, b"n")),
            "the trap's write was dropped"
        );
        assert_eq!(balance(&state, &id), 0, "every value went back");
        let used: u64 = [&trap, &spin, &nope, &gone]
            .iter()
            .map(|t| receipt(&state, t).gas_used)
            .sum();
        assert_eq!(balance(&state, &pk(2)), before - 4 - 2 * used);
        assert_eq!(supply(&state, &[pk(1), pk(2), id]), 2_000_000_000);
    }

    #[test]
    fn a_contract_pays_from_its_balance_and_the_payee_is_touched() {
        let mut state = funded();
        let id = contract_id(&pk(1), 0);
        run(&mut state, 1, &[deploy_tx(1, 0, counter_code())]);
        // 20 in with the call, 5 straight back.
        let pay = call_tx(2, 0, id, "pay", 20, 1_000_000);
        let env = BlockEnv::default();
        let diff = execute(&state, env, std::slice::from_ref(&pay)).unwrap();
        assert_eq!(diff.touched, {
            let mut t = vec![id, pk(2)];
            t.sort();
            t
        });
        apply(&mut state, diff);
        assert_eq!(balance(&state, &id), 15);
        assert_eq!(supply(&state, &[pk(1), pk(2), id]), 2_000_000_000);
    }

    /// `relay` calls entry `bump` of the contract whose id is its input,
    /// passing on 7 of the value it got.
    const RELAY: &str = r#"(module
      (import "strata" "input_read" (func $input_read (param i32)))
      (import "strata" "call" (func $call (param i32 i32 i32 i32 i32 i64 i64) (result i32)))
      (import "strata" "revert" (func $revert (param i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "bump")
      (func (export "relay")
        (call $input_read (i32.const 0))
        (if (i32.ne (call $call (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 0)
                                (i32.const 0) (i64.const 7) (i64.const 200000))
                    (i32.const 0))
          (then (call $revert (i32.const 100) (i32.const 4))))))"#;

    #[test]
    fn a_contract_calls_another_and_both_effects_land() {
        let mut state = funded();
        let counter = contract_id(&pk(1), 0);
        let relay = contract_id(&pk(1), 1);
        run(
            &mut state,
            1,
            &[
                deploy_tx(1, 0, counter_code()),
                deploy_tx(1, 1, wat::parse_str(RELAY).unwrap()),
            ],
        );
        let t = tx(
            2,
            0,
            TxKind::Call {
                contract: relay,
                value: 10,
                gas_limit: 1_000_000,
                gas_price: 2,
                entry: "relay".into(),
                input: counter.to_vec(),
            },
        );
        let diff = execute(&state, BlockEnv::default(), std::slice::from_ref(&t)).unwrap();
        assert!(diff.touched.contains(&counter) && diff.touched.contains(&relay));
        apply(&mut state, diff);
        let r = receipt(&state, &t);
        assert_eq!(r.status, ReceiptStatus::Success, "{}", r.message);
        assert_eq!(r.events, vec![(counter, 1u64.to_le_bytes().to_vec())]);
        assert_eq!(state.map[&user_key(&counter, b"n")], 1u64.to_le_bytes());
        assert_eq!(balance(&state, &counter), 7);
        assert_eq!(balance(&state, &relay), 3);
        assert_eq!(
            supply(&state, &[pk(1), pk(2), counter, relay]),
            2_000_000_000
        );
        // The counter cannot take the call (no entry): the relay reverts,
        // and the whole value goes back to the sender.
        let before = balance(&state, &pk(2));
        let t = tx(
            2,
            1,
            TxKind::Call {
                contract: relay,
                value: 10,
                gas_limit: 1_000_000,
                gas_price: 2,
                entry: "relay".into(),
                input: relay.to_vec(),
            },
        );
        run(&mut state, 2, std::slice::from_ref(&t));
        let r = receipt(&state, &t);
        assert_eq!(r.status, ReceiptStatus::Reverted);
        assert_eq!(balance(&state, &pk(2)), before - 1 - 2 * r.gas_used);
        assert_eq!(balance(&state, &relay), 3);
        assert_eq!(
            supply(&state, &[pk(1), pk(2), counter, relay]),
            2_000_000_000
        );
    }

    #[test]
    fn a_refused_module_is_recorded_and_charged() {
        let mut state = funded();
        let bad = wat::parse_str(r#"(module (func (export "f")))"#).unwrap();
        let d = deploy_tx(1, 0, bad);
        run(&mut state, 1, std::slice::from_ref(&d));
        let r = receipt(&state, &d);
        assert_eq!(r.status, ReceiptStatus::Refused);
        assert!(r.message.contains("memory"), "{}", r.message);
        assert!(!state
            .map
            .contains_key(&contract_key(&contract_id(&pk(1), 0))));
        assert_eq!(supply(&state, &[pk(1), pk(2)]), 2_000_000_000);
    }

    #[test]
    fn a_block_past_the_gas_bound_is_invalid() {
        let state = funded();
        let id = contract_id(&pk(1), 0);
        let per = strata_vm::limits::GAS_LIMIT_MAX;
        let n = BLOCK_GAS_MAX / per + 1;
        let txs: Vec<_> = (0..n).map(|i| call_tx(2, i, id, "bump", 0, per)).collect();
        assert!(matches!(
            execute(&state, BlockEnv::default(), &txs),
            Err(ExecError::BlockTooLarge {
                what: "gas limits",
                ..
            })
        ));
        let within = &txs[..txs.len() - 1];
        assert!(execute(&state, BlockEnv::default(), within).is_ok());
    }

    #[test]
    fn a_gas_budget_that_overflows_invalidates_the_block() {
        let state = funded();
        let t = tx(
            2,
            0,
            TxKind::Call {
                contract: [0; 32],
                value: 0,
                gas_limit: crate::tx::GAS_LIMIT_MAX,
                gas_price: u64::MAX / 1_000,
                entry: "f".into(),
                input: vec![],
            },
        );
        assert!(execute(&state, BlockEnv::default(), &[t]).is_err());
    }

    /// Two fresh states given the same blocks of deploys and calls end
    /// with the same roots, receipts included.
    #[test]
    fn the_same_blocks_give_the_same_roots() {
        let blocks = |_: ()| {
            let id = contract_id(&pk(1), 0);
            vec![
                vec![deploy_tx(1, 0, counter_code())],
                (0..5)
                    .map(|i| call_tx(2, i, id, "bump", 3, 200_000))
                    .collect(),
                vec![
                    call_tx(2, 5, id, "spin", 0, 50_000),
                    call_tx(1, 1, id, "pay", 0, 100_000),
                ],
            ]
        };
        let roots = |_: ()| {
            let mut state = funded();
            blocks(())
                .iter()
                .enumerate()
                .map(|(h, txs)| {
                    run(&mut state, h as u64 + 1, txs);
                    state_commitment(&state.map)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(roots(()), roots(()));
    }

    #[test]
    fn receipts_decode_strictly() {
        let r = Receipt {
            status: ReceiptStatus::Reverted,
            gas_used: 7,
            contract: [3; 32],
            message: "no".into(),
            return_data: vec![1, 2],
            events: vec![([1; 32], vec![4]), ([2; 32], vec![])],
        };
        let bytes = r.encode();
        assert_eq!(Receipt::decode(&bytes).unwrap(), r);
        for cut in 0..bytes.len() {
            assert!(Receipt::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Receipt::decode(&longer).is_err());
    }
}
