//! # strata-vm: metered, deterministic WebAssembly contracts
//!
//! A contract is a binary WebAssembly module. [`Vm::deploy_check`] refuses,
//! with a reason, any module a node could not run the same way as every
//! other node or could not bound; [`Vm::call`] runs one exported entry
//! point of an accepted module against the contract's key-value namespace
//! and returns what the call did ([`Outcome`]): its status, the gas it
//! used, and, only when it succeeded, its writes, transfers, events and
//! return data. The crate knows nothing of blocks or the trie: the chain
//! applies an outcome's writes to its state (`strata-consensus`).
//!
//! **Why wasmi.** An interpreter, not a compiler: every node runs the same
//! Rust code for every instruction, so there is no code generator to
//! differ between machines and no compile step an attacker can make slow
//! (a JIT's compile time grows with the module and is paid before any fuel
//! is counted). Its fuel metering is built in and exact. Floats are turned
//! off at validation, so no NaN bit pattern can differ between machines;
//! SIMD, threads, several memories and reference types are off too.
//! Modules are translated eagerly at deploy ([`wasmi::CompilationMode::Eager`]):
//! lazy translation charges fuel on a function's first use, which would
//! make gas depend on what a node's cache has seen.
//!
//! **Gas** is the interpreter's fuel (one unit per basic instruction, as
//! wasmi counts it) plus the host schedule of [`limits`] for host calls,
//! bytes copied, storage and events. A call that runs out is charged its
//! whole limit and does nothing else.
//!
//! ```
//! use strata_vm::{CallContext, Status, Vm};
//! use std::collections::BTreeMap;
//!
//! // (module (memory (export "memory") 1)
//! //   (func (export "noop")))
//! let wasm = [
//!     0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 17, 2, 6,
//!     109, 101, 109, 111, 114, 121, 2, 0, 4, 110, 111, 111, 112, 0, 0, 10, 4, 1, 2, 0, 11,
//! ];
//! let vm = Vm::new();
//! let contract = vm.deploy_check(&wasm).unwrap();
//! let store: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
//! let out = vm.call(&contract, &CallContext::default(), "noop", &[], 1_000, &store).unwrap();
//! assert_eq!(out.status, Status::Success);
//! ```

#![warn(missing_docs)]

mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod host;
pub mod limits;

use std::collections::BTreeMap;

use wasmi::{
    CompilationMode, Config, Engine, ExternType, Linker, Module, Store, StoreLimitsBuilder,
    TrapCode,
};

pub use error::{DeployError, LocalFault};
pub use host::HOST_MODULE;
use host::{Halt, HostState, Journal, HOST_FUNCS};
use limits::{
    CODE_BYTES_MAX, ENTRY_BYTES_MAX, GAS_LIMIT_MAX, INPUT_BYTES_MAX, MEMORY_PAGES_MAX, PAGE_BYTES,
    RECURSION_DEPTH_MAX,
};

/// Read access to one contract's namespace as it stands before the call
/// (the finalized state and what earlier transactions of the block wrote).
pub trait ContractStore {
    /// The value under `key` of `contract`'s namespace.
    ///
    /// # Errors
    /// When the node's own store fails.
    fn read(&self, contract: &[u8; 32], key: &[u8]) -> Result<Option<Vec<u8>>, LocalFault>;

    /// The balance of `account` (a contract or not) before the call.
    /// Default: 0 (a store of one contract, whose balance is in the
    /// [`CallContext`]).
    ///
    /// # Errors
    /// When the node's own store fails.
    fn balance(&self, account: &[u8; 32]) -> Result<u64, LocalFault> {
        let _ = account;
        Ok(0)
    }

    /// The compiled module of contract `id`, `None` when there is no such
    /// contract: what a nested call runs. Default: none (a store of one
    /// contract).
    ///
    /// # Errors
    /// When the node's own store fails.
    fn contract(&self, id: &[u8; 32]) -> Result<Option<Contract>, LocalFault> {
        let _ = id;
        Ok(None)
    }
}

/// One contract's namespace as a map (tests, tools): reads ignore which
/// contract asks.
impl ContractStore for BTreeMap<Vec<u8>, Vec<u8>> {
    fn read(&self, _: &[u8; 32], key: &[u8]) -> Result<Option<Vec<u8>>, LocalFault> {
        Ok(self.get(key).cloned())
    }
}

/// Keys written (`Some`) or deleted (`None`), by (contract, key).
pub type Writes = BTreeMap<([u8; 32], Vec<u8>), Option<Vec<u8>>>;

/// What the `call` import returns: how a nested call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum CallCode {
    /// It returned; its effects joined the caller's.
    Success = 0,
    /// Its gas ran out.
    OutOfGas = 1,
    /// It reverted (`return_data_read` gives the message).
    Reverted = 2,
    /// A Wasm trap.
    Trapped = 3,
    /// A limit was passed.
    LimitExceeded = 4,
    /// No exported `() -> ()` function of that name.
    NoSuchEntry = 5,
    /// No contract with that id.
    NoSuchContract = 6,
    /// The contract is already on the call stack.
    Reentrancy = 7,
    /// Deeper than [`limits::CALL_DEPTH_MAX`].
    TooDeep = 8,
    /// The caller's balance is short of the value.
    Insufficient = 9,
}

impl CallCode {
    /// The code of a frame that ended with `status`.
    pub fn of(status: &Status) -> CallCode {
        match status {
            Status::Success => CallCode::Success,
            Status::OutOfGas => CallCode::OutOfGas,
            Status::Reverted(_) => CallCode::Reverted,
            Status::Trapped(_) => CallCode::Trapped,
            Status::LimitExceeded(_) => CallCode::LimitExceeded,
            Status::NoSuchEntry => CallCode::NoSuchEntry,
        }
    }
}

/// How a frame (the transaction's call, or a nested one) ended, with the
/// transaction's journal handed back.
pub(crate) struct Frame {
    pub status: Status,
    pub gas_used: u64,
    pub return_data: Vec<u8>,
    pub journal: Journal,
}

/// Who calls what, where: the facts the host API exposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallContext {
    /// The account that sent the call.
    pub caller: [u8; 32],
    /// The contract's id.
    pub contract: [u8; 32],
    /// Height of the block the call is executed in.
    pub height: u64,
    /// That block's timestamp, ms since the Unix epoch.
    pub time_ms: u64,
    /// The contract's balance before the call (the value included).
    pub balance: u64,
    /// What the caller paid with the call (already in `balance`).
    pub value: u64,
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// It returned: its effects are to be applied.
    Success,
    /// The gas limit ran out; the whole limit is charged.
    OutOfGas,
    /// The contract called `revert` with this message.
    Reverted(String),
    /// A Wasm trap (unreachable, division by zero, out-of-bounds access,
    /// stack exhausted, …), by name.
    Trapped(String),
    /// The call passed one of [`limits`] (too many writes, a key too
    /// long, …), named.
    LimitExceeded(&'static str),
    /// No exported `() -> ()` function of that name.
    NoSuchEntry,
}

impl Status {
    /// A short stable name, for receipts and the API.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::OutOfGas => "out_of_gas",
            Status::Reverted(_) => "reverted",
            Status::Trapped(_) => "trapped",
            Status::LimitExceeded(_) => "limit_exceeded",
            Status::NoSuchEntry => "no_such_entry",
        }
    }
}

/// What a call did. Everything but `status` and `gas_used` is empty unless
/// the call succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// Gas charged, at most the limit.
    pub gas_used: u64,
    /// Keys written (`Some`) or deleted (`None`), by contract and key,
    /// sorted: the called contract's and those of the contracts it called.
    pub writes: Writes,
    /// Payments (from, to, amount) in order: out of contracts' balances,
    /// and the values of nested calls. None overdraws its payer.
    pub transfers: Vec<([u8; 32], [u8; 32], u64)>,
    /// Events (emitting contract, bytes), in order.
    pub events: Vec<([u8; 32], Vec<u8>)>,
    /// The return data it set.
    pub return_data: Vec<u8>,
}

/// A module that passed [`Vm::deploy_check`], compiled; cheap to clone.
#[derive(Clone, Debug)]
pub struct Contract {
    module: Module,
    code_len: usize,
}

impl Contract {
    /// Bytes of the module's code: what loading it is charged for
    /// ([`limits::CODE_LOAD_BYTE_GAS`]).
    pub fn code_len(&self) -> usize {
        self.code_len
    }
}

/// The runtime: an interpreter configured for determinism, and the host
/// API linked once.
pub struct Vm {
    engine: Engine,
    linker: Linker<HostState>,
}

impl Default for Vm {
    fn default() -> Self {
        Vm::new()
    }
}

impl Vm {
    /// The runtime with the chain's configuration.
    pub fn new() -> Vm {
        let mut config = Config::default();
        config
            .consume_fuel(true)
            .floats(false)
            .wasm_multi_memory(false)
            .wasm_reference_types(false)
            .wasm_tail_call(false)
            .allow_start_fn(false)
            .ignore_custom_sections(true)
            .set_max_recursion_depth(RECURSION_DEPTH_MAX)
            .compilation_mode(CompilationMode::Eager);
        let engine = Engine::new(&config);
        let mut linker = Linker::new(&engine);
        host::link(&mut linker).expect("each host function is defined once");
        Vm { engine, linker }
    }

    /// Checks `code` for deployment and compiles it.
    ///
    /// # Errors
    /// [`DeployError`] saying what is wrong: too large, not binary Wasm,
    /// invalid or using a feature the chain turns off, an import outside
    /// the host API, no `memory` export or one too large, no entry point.
    pub fn deploy_check(&self, code: &[u8]) -> Result<Contract, DeployError> {
        if code.len() > CODE_BYTES_MAX {
            return Err(DeployError::TooLarge {
                len: code.len(),
                max: CODE_BYTES_MAX,
            });
        }
        if !code.starts_with(b"\0asm") {
            return Err(DeployError::NotWasm);
        }
        let module =
            Module::new(&self.engine, code).map_err(|e| DeployError::Invalid(e.to_string()))?;
        for import in module.imports() {
            let (module_name, name) = (import.module(), import.name());
            let refuse = |why: String| DeployError::Import {
                module: module_name.to_string(),
                name: name.to_string(),
                why,
            };
            if module_name != HOST_MODULE {
                return Err(refuse(format!(
                    "only module \"{HOST_MODULE}\" may be imported"
                )));
            }
            let ExternType::Func(ty) = import.ty() else {
                return Err(refuse("only functions may be imported".into()));
            };
            let Some((_, params, results)) = HOST_FUNCS.iter().find(|f| f.0 == name) else {
                return Err(refuse("no such host function".into()));
            };
            if ty.params() != *params || ty.results() != *results {
                return Err(refuse(format!(
                    "signature {:?} -> {:?}, the host's is {params:?} -> {results:?}",
                    ty.params(),
                    ty.results()
                )));
            }
        }
        let mut memory = false;
        let mut entry = false;
        for export in module.exports() {
            match export.ty() {
                ExternType::Memory(m) if export.name() == "memory" => {
                    if m.minimum() > u64::from(MEMORY_PAGES_MAX) {
                        return Err(DeployError::Memory(format!(
                            "starts at {} pages, more than the {MEMORY_PAGES_MAX} allowed",
                            m.minimum()
                        )));
                    }
                    memory = true;
                }
                ExternType::Func(f) if f.params().is_empty() && f.results().is_empty() => {
                    entry = true;
                }
                _ => {}
            }
        }
        if !memory {
            return Err(DeployError::Memory(
                "export a memory named \"memory\"".into(),
            ));
        }
        if !entry {
            return Err(DeployError::NoEntry);
        }
        Ok(Contract {
            module,
            code_len: code.len(),
        })
    }

    /// Runs `entry` of `contract` with `input` as its arguments and at
    /// most `gas_limit` gas (capped at [`GAS_LIMIT_MAX`]), reading the
    /// contract's namespace through `store`.
    ///
    /// # Errors
    /// Only a [`LocalFault`]: `store` failed, so the outcome is unknown.
    /// Every failure of the contract is an [`Outcome`] with its status.
    pub fn call(
        &self,
        contract: &Contract,
        ctx: &CallContext,
        entry: &str,
        input: &[u8],
        gas_limit: u64,
        store: &dyn ContractStore,
    ) -> Result<Outcome, LocalFault> {
        let gas_limit = gas_limit.min(GAS_LIMIT_MAX);
        let failed = |status: Status, gas_used: u64| Outcome {
            status,
            gas_used,
            writes: BTreeMap::new(),
            transfers: Vec::new(),
            events: Vec::new(),
            return_data: Vec::new(),
        };
        if entry.len() > ENTRY_BYTES_MAX {
            return Ok(failed(Status::LimitExceeded("entry name"), 0));
        }
        if input.len() > INPUT_BYTES_MAX {
            return Ok(failed(Status::LimitExceeded("input bytes"), 0));
        }
        // SAFETY: the references are only given a longer lifetime so they
        // can sit in the interpreter's stores, whose data type must be
        // 'static. Every store that holds them (this call's, and those of
        // the nested calls it makes, in `run_frame`) is a local of a
        // function that runs within this one and is dropped before it
        // returns, on every path including unwinding; nothing that holds
        // them (a store, an instance, a host state, the journal) is
        // returned or kept elsewhere. So they are never used after the
        // borrows `store` and `self` end.
        let store: &'static dyn ContractStore =
            unsafe { std::mem::transmute::<&dyn ContractStore, &'static dyn ContractStore>(store) };
        // SAFETY: as above.
        let vm: &'static Vm = unsafe { std::mem::transmute::<&Vm, &'static Vm>(self) };
        let mut journal = Journal::default();
        journal.balances.insert(ctx.contract, ctx.balance);
        journal.stack.push(ctx.contract);
        let frame = vm.run_frame(
            contract,
            *ctx,
            entry,
            input.to_vec(),
            gas_limit,
            store,
            journal,
            0,
        )?;
        if frame.status != Status::Success {
            return Ok(failed(frame.status, frame.gas_used));
        }
        let j = frame.journal;
        Ok(Outcome {
            status: Status::Success,
            gas_used: frame.gas_used,
            writes: j.writes,
            transfers: j.transfers,
            events: j.events,
            return_data: frame.return_data,
        })
    }

    /// Runs one frame: `entry` of `contract` in context `ctx`, with
    /// `journal` (the transaction's effects so far), at most `gas_limit`
    /// gas, `depth` nested calls deep. The journal comes back as the frame
    /// left it; the caller keeps it or not by the status.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_frame(
        &'static self,
        contract: &Contract,
        ctx: CallContext,
        entry: &str,
        input: Vec<u8>,
        gas_limit: u64,
        store: &'static dyn ContractStore,
        journal: Journal,
        depth: usize,
    ) -> Result<Frame, LocalFault> {
        let state = HostState {
            ctx,
            input,
            store,
            vm: self,
            limits: StoreLimitsBuilder::new()
                .memory_size(MEMORY_PAGES_MAX as usize * PAGE_BYTES)
                .memories(1)
                .tables(1)
                .instances(1)
                .build(),
            journal,
            return_data: Vec::new(),
            last_return: Vec::new(),
            depth,
        };
        let mut wasm = Store::new(&self.engine, state);
        wasm.limiter(|s| &mut s.limits);
        wasm.set_fuel(gas_limit).expect("fuel is on");
        let used = |wasm: &Store<HostState>| gas_limit - wasm.get_fuel().expect("fuel is on");
        let end = |wasm: Store<HostState>, status: Status, gas_used: u64| {
            let s = wasm.into_data();
            Frame {
                status,
                gas_used,
                return_data: s.return_data,
                journal: s.journal,
            }
        };
        let instance = match self
            .linker
            .instantiate_and_start(&mut wasm, &contract.module)
        {
            Ok(i) => i,
            Err(e) => {
                let status = status_of(&e)?;
                let gas = used(&wasm);
                return Ok(end(wasm, status, gas));
            }
        };
        let Ok(func) = instance.get_typed_func::<(), ()>(&wasm, entry) else {
            let gas = used(&wasm);
            return Ok(end(wasm, Status::NoSuchEntry, gas));
        };
        match func.call(&mut wasm, ()) {
            Ok(()) => {
                let gas = used(&wasm);
                Ok(end(wasm, Status::Success, gas))
            }
            Err(e) => {
                let status = status_of(&e)?;
                let gas = if status == Status::OutOfGas {
                    gas_limit
                } else {
                    used(&wasm)
                };
                Ok(end(wasm, status, gas))
            }
        }
    }
}

/// The status a failed call ends with, or the node's own fault.
fn status_of(e: &wasmi::Error) -> Result<Status, LocalFault> {
    if let Some(h) = e.downcast_ref::<Halt>() {
        return match h {
            Halt::OutOfGas => Ok(Status::OutOfGas),
            Halt::Revert(m) => Ok(Status::Reverted(m.clone())),
            Halt::Limit(what) => Ok(Status::LimitExceeded(what)),
            Halt::BadAccess => Ok(Status::Trapped("memory access out of bounds".into())),
            Halt::Local(m) => Err(LocalFault(m.clone())),
        };
    }
    match e.as_trap_code() {
        Some(TrapCode::OutOfFuel) => Ok(Status::OutOfGas),
        Some(code) => Ok(Status::Trapped(format!("{code:?}"))),
        // Anything else the interpreter reports (a limit on resources it
        // checks itself) is the call's failure; its text is wasmi's.
        None => Ok(Status::Trapped(e.to_string())),
    }
}

#[cfg(test)]
mod tests;
