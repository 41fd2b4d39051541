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
use host::{Halt, HostState, HOST_FUNCS};
use limits::{
    CODE_BYTES_MAX, ENTRY_BYTES_MAX, GAS_LIMIT_MAX, INPUT_BYTES_MAX, MEMORY_PAGES_MAX, PAGE_BYTES,
    RECURSION_DEPTH_MAX,
};

/// Read access to one contract's namespace as it stands before the call
/// (the finalized state and what earlier transactions of the block wrote).
pub trait ContractStore {
    /// The value under `key` of the contract's namespace.
    ///
    /// # Errors
    /// When the node's own store fails.
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LocalFault>;
}

impl ContractStore for BTreeMap<Vec<u8>, Vec<u8>> {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LocalFault> {
        Ok(self.get(key).cloned())
    }
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
    /// The contract's balance before the call.
    pub balance: u64,
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
    /// Keys written (`Some`) or deleted (`None`) in the contract's
    /// namespace, sorted.
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Payments out of the contract's balance, in order; their sum is at
    /// most [`CallContext::balance`].
    pub transfers: Vec<([u8; 32], u64)>,
    /// Events, in order.
    pub events: Vec<Vec<u8>>,
    /// The return data it set.
    pub return_data: Vec<u8>,
}

/// A module that passed [`Vm::deploy_check`], compiled; cheap to clone.
#[derive(Clone, Debug)]
pub struct Contract {
    module: Module,
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
        Ok(Contract { module })
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
        // SAFETY: the reference is only given a longer lifetime so it can
        // sit in the interpreter's store, whose data type must be
        // 'static. That store (`wasm`) is a local of this function and is
        // dropped before it returns, on every path including unwinding;
        // nothing that holds the reference (the store, the instance, the
        // host state) is returned or kept elsewhere. So it is never used
        // after the borrow `store` ends.
        let store: &'static dyn ContractStore =
            unsafe { std::mem::transmute::<&dyn ContractStore, &'static dyn ContractStore>(store) };
        let state = HostState {
            ctx: *ctx,
            input: input.to_vec(),
            store,
            limits: StoreLimitsBuilder::new()
                .memory_size(MEMORY_PAGES_MAX as usize * PAGE_BYTES)
                .memories(1)
                .tables(1)
                .instances(1)
                .build(),
            writes: BTreeMap::new(),
            events: Vec::new(),
            transfers: Vec::new(),
            balance_left: ctx.balance,
            return_data: Vec::new(),
        };
        let mut wasm = Store::new(&self.engine, state);
        wasm.limiter(|s| &mut s.limits);
        wasm.set_fuel(gas_limit).expect("fuel is on");
        let used = |wasm: &Store<HostState>| gas_limit - wasm.get_fuel().expect("fuel is on");
        let instance = match self
            .linker
            .instantiate_and_start(&mut wasm, &contract.module)
        {
            Ok(i) => i,
            Err(e) => {
                let status = status_of(&e)?;
                return Ok(failed(status, used(&wasm)));
            }
        };
        let Ok(func) = instance.get_typed_func::<(), ()>(&wasm, entry) else {
            return Ok(failed(Status::NoSuchEntry, used(&wasm)));
        };
        match func.call(&mut wasm, ()) {
            Ok(()) => {
                let gas_used = used(&wasm);
                let s = wasm.into_data();
                Ok(Outcome {
                    status: Status::Success,
                    gas_used,
                    writes: s.writes,
                    transfers: s.transfers,
                    events: s.events,
                    return_data: s.return_data,
                })
            }
            Err(e) => {
                let status = status_of(&e)?;
                let gas_used = if status == Status::OutOfGas {
                    gas_limit
                } else {
                    used(&wasm)
                };
                Ok(failed(status, gas_used))
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
