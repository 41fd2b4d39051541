//! The host API: the functions a contract imports from module `strata`.
//! Each charges its gas before it does any work, and checks every length
//! a contract passes before it allocates for it.
//!
//! | import | signature | does |
//! |---|---|---|
//! | `input_len` | `() -> i32` | length of the call's argument bytes |
//! | `input_read` | `(ptr i32)` | copies the arguments to `ptr` |
//! | `storage_read` | `(key i32, key_len i32, out i32, out_cap i32) -> i32` | value length, or -1 when absent; copies at most `out_cap` bytes |
//! | `storage_write` | `(key i32, key_len i32, val i32, val_len i32)` | stores a value in the contract's namespace |
//! | `storage_delete` | `(key i32, key_len i32)` | deletes a key of the namespace |
//! | `caller` | `(out i32)` | the 32-byte account that called |
//! | `contract` | `(out i32)` | this contract's 32-byte id |
//! | `block_height` | `() -> i64` | height of the block being executed |
//! | `block_time_ms` | `() -> i64` | its timestamp, ms since the Unix epoch |
//! | `balance` | `() -> i64` | the contract's balance (a u64's bits) |
//! | `value` | `() -> i64` | what the caller paid with this call (already in the balance) |
//! | `transfer` | `(to i32, amount i64) -> i32` | pays `amount` (a u64's bits) to account `to` from the contract's balance: 0, or 1 when the balance is short |
//! | `emit` | `(ptr i32, len i32)` | records an event |
//! | `set_return` | `(ptr i32, len i32)` | sets the call's return data |
//! | `revert` | `(ptr i32, len i32)` | ends the call as failed, with a message; its writes are dropped |
//! | `call` | `(contract i32, entry i32, entry_len i32, input i32, input_len i32, value i64, gas i64) -> i32` | calls another contract (below): 0 on success, else a [`crate::CallCode`] |
//! | `return_data_len` | `() -> i32` | length of the last `call`'s return data (or revert message) |
//! | `return_data_read` | `(ptr i32)` | copies it to `ptr` |
//!
//! **Calling another contract.** `call` runs `entry` of `contract` with
//! `input`, at most `gas` of the caller's remaining gas (what it uses is
//! the caller's), after paying it `value` from the caller's balance. Its
//! writes, payments and events join the caller's if it succeeds and are
//! dropped if it fails; the caller goes on either way and reads the
//! outcome from the code. Calls nest at most [`crate::limits::CALL_DEPTH_MAX`]
//! deep. **No reentrancy:** a contract already on the call stack cannot be
//! called again (code `Reentrancy`), so no contract ever sees its own
//! storage change under it mid-call. Every bound of [`crate::limits`]
//! (writes, events, transfers) counts over the whole transaction.

use std::collections::BTreeMap;
use std::fmt;

use wasmi::{Caller, Extern, Linker, StoreLimits, ValType};

use crate::limits::{
    CALL_DEPTH_MAX, CODE_LOAD_BYTE_GAS, COPY_BYTE_GAS, ENTRY_BYTES_MAX, EVENTS_MAX,
    EVENT_BYTES_MAX, EVENT_GAS, HOST_CALL_GAS, INPUT_BYTES_MAX, NESTED_CALL_GAS, RETURN_BYTES_MAX,
    STORAGE_BYTE_GAS, STORAGE_KEY_BYTES_MAX, STORAGE_READ_GAS, STORAGE_VALUE_BYTES_MAX,
    STORAGE_WRITE_GAS, TRANSFERS_MAX, TRANSFER_GAS, WRITES_MAX,
};
use crate::{CallCode, CallContext, ContractStore, Status, Vm, Writes};

/// The import module of every host function.
pub const HOST_MODULE: &str = "strata";

/// The host functions: name, parameter types, result types.
pub(crate) const HOST_FUNCS: &[(&str, &[ValType], &[ValType])] = &[
    ("input_len", &[], &[ValType::I32]),
    ("input_read", &[ValType::I32], &[]),
    (
        "storage_read",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        &[ValType::I32],
    ),
    (
        "storage_write",
        &[ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        &[],
    ),
    ("storage_delete", &[ValType::I32, ValType::I32], &[]),
    ("caller", &[ValType::I32], &[]),
    ("contract", &[ValType::I32], &[]),
    ("block_height", &[], &[ValType::I64]),
    ("block_time_ms", &[], &[ValType::I64]),
    ("balance", &[], &[ValType::I64]),
    ("value", &[], &[ValType::I64]),
    ("transfer", &[ValType::I32, ValType::I64], &[ValType::I32]),
    ("emit", &[ValType::I32, ValType::I32], &[]),
    ("set_return", &[ValType::I32, ValType::I32], &[]),
    ("revert", &[ValType::I32, ValType::I32], &[]),
    (
        "call",
        &[
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I32,
            ValType::I64,
            ValType::I64,
        ],
        &[ValType::I32],
    ),
    ("return_data_len", &[], &[ValType::I32]),
    ("return_data_read", &[ValType::I32], &[]),
];

/// The WAT import of every host function, one per line (tests and the
/// fuzzing harness build modules that import them all).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn imports_wat() -> String {
    let ty = |t: &ValType| match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        other => unreachable!("host type {other:?}"),
    };
    let mut wat = String::new();
    for (name, params, results) in HOST_FUNCS {
        let p: Vec<_> = params.iter().map(ty).collect();
        let r: Vec<_> = results.iter().map(ty).collect();
        wat.push_str(&format!(
            "(import \"strata\" \"{name}\" (func (param {}) (result {})))\n",
            p.join(" "),
            r.join(" ")
        ));
    }
    wat
}

/// Why a host function stopped the call.
#[derive(Debug)]
pub(crate) enum Halt {
    /// The gas ran out in a host function.
    OutOfGas,
    /// The contract called `revert`.
    Revert(String),
    /// The contract passed a bound of [`crate::limits`].
    Limit(&'static str),
    /// A pointer and length outside the contract's memory.
    BadAccess,
    /// Reading the state failed: the node's fault.
    Local(String),
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::OutOfGas => write!(f, "out of gas"),
            Halt::Revert(m) => write!(f, "reverted: {m}"),
            Halt::Limit(what) => write!(f, "limit: {what}"),
            Halt::BadAccess => write!(f, "memory access out of bounds"),
            Halt::Local(m) => write!(f, "local fault: {m}"),
        }
    }
}

impl std::error::Error for Halt {}
impl wasmi::errors::HostError for Halt {}

/// What a transaction's calls have done so far, across nested calls: kept
/// only if the call that made it succeeds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Journal {
    /// (contract, key) → value written, or `None` for deleted.
    pub writes: Writes,
    /// Current balance of every account the calls have read or moved.
    pub balances: BTreeMap<[u8; 32], u64>,
    /// (from, to, amount), in order.
    pub transfers: Vec<([u8; 32], [u8; 32], u64)>,
    /// (emitting contract, bytes), in order.
    pub events: Vec<([u8; 32], Vec<u8>)>,
    /// The contracts on the call stack, outermost first.
    pub stack: Vec<[u8; 32]>,
}

/// One frame of a call: its contract's view of the transaction.
pub(crate) struct HostState {
    pub ctx: CallContext,
    pub input: Vec<u8>,
    /// Borrowed for the call only: see the SAFETY note in [`crate::Vm::call`].
    pub store: &'static dyn ContractStore,
    /// The runtime, for nested calls; borrowed like `store`.
    pub vm: &'static Vm,
    pub limits: StoreLimits,
    pub journal: Journal,
    pub return_data: Vec<u8>,
    /// The last nested call's return data (or revert message).
    pub last_return: Vec<u8>,
    /// Nested calls above this frame (0 for the transaction's call).
    pub depth: usize,
}

impl HostState {
    /// The current balance of `account`, read once from the store.
    fn balance_of(&mut self, account: &[u8; 32]) -> Result<u64, wasmi::Error> {
        if let Some(b) = self.journal.balances.get(account) {
            return Ok(*b);
        }
        let b = self
            .store
            .balance(account)
            .map_err(|e| halt(Halt::Local(e.0)))?;
        self.journal.balances.insert(*account, b);
        Ok(b)
    }

    /// Moves `amount` from `from` to `to`, or `false` when `from` is short.
    fn pay(&mut self, from: [u8; 32], to: [u8; 32], amount: u64) -> Result<bool, wasmi::Error> {
        if self.journal.transfers.len() >= TRANSFERS_MAX {
            return Err(halt(Halt::Limit("transfers per call")));
        }
        let have = self.balance_of(&from)?;
        let Some(left) = have.checked_sub(amount) else {
            return Ok(false);
        };
        self.journal.balances.insert(from, left);
        let to_have = self.balance_of(&to)?;
        // Balances sum to at most the supply, a u64: a credit cannot
        // overflow; saturate rather than trust that here.
        self.journal
            .balances
            .insert(to, to_have.saturating_add(amount));
        self.journal.transfers.push((from, to, amount));
        Ok(true)
    }
}

type Ctx<'c> = Caller<'c, HostState>;

fn halt(h: Halt) -> wasmi::Error {
    wasmi::Error::host(h)
}

/// Takes `gas` from the call's fuel, or ends it out of gas (with nothing
/// left, so the whole limit is charged).
fn charge(caller: &mut Ctx<'_>, gas: u64) -> Result<(), wasmi::Error> {
    let fuel = caller.get_fuel()?;
    match fuel.checked_sub(gas) {
        Some(left) => caller.set_fuel(left),
        None => {
            caller.set_fuel(0)?;
            Err(halt(Halt::OutOfGas))
        }
    }
}

/// A length the contract passed, checked against `max` before anything is
/// allocated for it.
fn length(len: i32, max: usize, what: &'static str) -> Result<usize, wasmi::Error> {
    let len = usize::try_from(len).map_err(|_| halt(Halt::BadAccess))?;
    if len > max {
        return Err(halt(Halt::Limit(what)));
    }
    Ok(len)
}

fn memory(caller: &Ctx<'_>) -> Result<wasmi::Memory, wasmi::Error> {
    // Deploy checks that `memory` is exported; the lookup cannot fail for
    // a deployed module.
    caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| halt(Halt::BadAccess))
}

fn read_mem(caller: &Ctx<'_>, ptr: i32, len: usize) -> Result<Vec<u8>, wasmi::Error> {
    let offset = usize::try_from(ptr).map_err(|_| halt(Halt::BadAccess))?;
    let mut buf = vec![0; len];
    memory(caller)?
        .read(caller, offset, &mut buf)
        .map_err(|_| halt(Halt::BadAccess))?;
    Ok(buf)
}

fn write_mem(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> Result<(), wasmi::Error> {
    let offset = usize::try_from(ptr).map_err(|_| halt(Halt::BadAccess))?;
    let mem = memory(caller)?;
    mem.write(caller, offset, bytes)
        .map_err(|_| halt(Halt::BadAccess))
}

/// Charges the base cost and `len` bytes of copying, then reads them.
fn copy_in(
    caller: &mut Ctx<'_>,
    ptr: i32,
    len: i32,
    max: usize,
    what: &'static str,
    base: u64,
) -> Result<Vec<u8>, wasmi::Error> {
    let len = length(len, max, what)?;
    charge(caller, base + len as u64 * COPY_BYTE_GAS)?;
    read_mem(caller, ptr, len)
}

fn storage_get(caller: &Ctx<'_>, key: Vec<u8>) -> Result<Option<Vec<u8>>, wasmi::Error> {
    let state = caller.data();
    let me = state.ctx.contract;
    let slot = (me, key);
    match state.journal.writes.get(&slot) {
        Some(v) => Ok(v.clone()),
        None => state
            .store
            .read(&me, &slot.1)
            .map_err(|e| halt(Halt::Local(e.0))),
    }
}

fn record_write(
    caller: &mut Ctx<'_>,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
) -> Result<(), wasmi::Error> {
    let state = caller.data_mut();
    let slot = (state.ctx.contract, key);
    let writes = &mut state.journal.writes;
    if writes.len() >= WRITES_MAX && !writes.contains_key(&slot) {
        return Err(halt(Halt::Limit("writes per call")));
    }
    writes.insert(slot, value);
    Ok(())
}

/// Defines every function of [`HOST_FUNCS`] in `linker`.
pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<(), wasmi::errors::LinkerError> {
    let m = HOST_MODULE;
    linker.func_wrap(
        m,
        "input_len",
        |mut c: Ctx<'_>| -> Result<i32, wasmi::Error> {
            charge(&mut c, HOST_CALL_GAS)?;
            Ok(c.data().input.len() as i32)
        },
    )?;
    linker.func_wrap(
        m,
        "input_read",
        |mut c: Ctx<'_>, ptr: i32| -> Result<(), wasmi::Error> {
            let input = std::mem::take(&mut c.data_mut().input);
            let charged = charge(&mut c, HOST_CALL_GAS + input.len() as u64 * COPY_BYTE_GAS);
            let written = charged.and_then(|()| write_mem(&mut c, ptr, &input));
            c.data_mut().input = input;
            written
        },
    )?;
    linker.func_wrap(
        m,
        "storage_read",
        |mut c: Ctx<'_>, k: i32, k_len: i32, out: i32, cap: i32| -> Result<i32, wasmi::Error> {
            let key = copy_in(
                &mut c,
                k,
                k_len,
                STORAGE_KEY_BYTES_MAX,
                "storage key",
                STORAGE_READ_GAS,
            )?;
            let cap = usize::try_from(cap).map_err(|_| halt(Halt::BadAccess))?;
            match storage_get(&c, key)? {
                None => Ok(-1),
                Some(v) => {
                    let n = v.len().min(cap);
                    charge(&mut c, n as u64 * COPY_BYTE_GAS)?;
                    write_mem(&mut c, out, &v[..n])?;
                    // A stored value is at most STORAGE_VALUE_BYTES_MAX.
                    Ok(v.len() as i32)
                }
            }
        },
    )?;
    linker.func_wrap(
        m,
        "storage_write",
        |mut c: Ctx<'_>, k: i32, k_len: i32, v: i32, v_len: i32| -> Result<(), wasmi::Error> {
            let k_n = length(k_len, STORAGE_KEY_BYTES_MAX, "storage key")?;
            let v_n = length(v_len, STORAGE_VALUE_BYTES_MAX, "storage value")?;
            charge(
                &mut c,
                HOST_CALL_GAS + STORAGE_WRITE_GAS + (k_n + v_n) as u64 * STORAGE_BYTE_GAS,
            )?;
            let key = read_mem(&c, k, k_n)?;
            let value = read_mem(&c, v, v_n)?;
            record_write(&mut c, key, Some(value))
        },
    )?;
    linker.func_wrap(
        m,
        "storage_delete",
        |mut c: Ctx<'_>, k: i32, k_len: i32| -> Result<(), wasmi::Error> {
            let key = copy_in(
                &mut c,
                k,
                k_len,
                STORAGE_KEY_BYTES_MAX,
                "storage key",
                HOST_CALL_GAS + STORAGE_WRITE_GAS,
            )?;
            record_write(&mut c, key, None)
        },
    )?;
    linker.func_wrap(
        m,
        "caller",
        |mut c: Ctx<'_>, out: i32| -> Result<(), wasmi::Error> {
            charge(&mut c, HOST_CALL_GAS + 32 * COPY_BYTE_GAS)?;
            let who = c.data().ctx.caller;
            write_mem(&mut c, out, &who)
        },
    )?;
    linker.func_wrap(
        m,
        "contract",
        |mut c: Ctx<'_>, out: i32| -> Result<(), wasmi::Error> {
            charge(&mut c, HOST_CALL_GAS + 32 * COPY_BYTE_GAS)?;
            let id = c.data().ctx.contract;
            write_mem(&mut c, out, &id)
        },
    )?;
    linker.func_wrap(
        m,
        "block_height",
        |mut c: Ctx<'_>| -> Result<i64, wasmi::Error> {
            charge(&mut c, HOST_CALL_GAS)?;
            Ok(c.data().ctx.height as i64)
        },
    )?;
    linker.func_wrap(
        m,
        "block_time_ms",
        |mut c: Ctx<'_>| -> Result<i64, wasmi::Error> {
            charge(&mut c, HOST_CALL_GAS)?;
            Ok(c.data().ctx.time_ms as i64)
        },
    )?;
    linker.func_wrap(
        m,
        "balance",
        |mut c: Ctx<'_>| -> Result<i64, wasmi::Error> {
            charge(&mut c, HOST_CALL_GAS)?;
            let me = c.data().ctx.contract;
            Ok(c.data_mut().balance_of(&me)? as i64)
        },
    )?;
    linker.func_wrap(m, "value", |mut c: Ctx<'_>| -> Result<i64, wasmi::Error> {
        charge(&mut c, HOST_CALL_GAS)?;
        Ok(c.data().ctx.value as i64)
    })?;
    linker.func_wrap(
        m,
        "transfer",
        |mut c: Ctx<'_>, to: i32, amount: i64| -> Result<i32, wasmi::Error> {
            charge(&mut c, HOST_CALL_GAS + TRANSFER_GAS + 32 * COPY_BYTE_GAS)?;
            let to: [u8; 32] = read_mem(&c, to, 32)?
                .try_into()
                .expect("32 bytes were read");
            let me = c.data().ctx.contract;
            Ok(if c.data_mut().pay(me, to, amount as u64)? {
                0
            } else {
                1
            })
        },
    )?;
    linker.func_wrap(
        m,
        "emit",
        |mut c: Ctx<'_>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            if c.data().journal.events.len() >= EVENTS_MAX {
                return Err(halt(Halt::Limit("events per call")));
            }
            let event = copy_in(
                &mut c,
                ptr,
                len,
                EVENT_BYTES_MAX,
                "event bytes",
                HOST_CALL_GAS + EVENT_GAS,
            )?;
            let me = c.data().ctx.contract;
            c.data_mut().journal.events.push((me, event));
            Ok(())
        },
    )?;
    linker.func_wrap(
        m,
        "set_return",
        |mut c: Ctx<'_>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            let data = copy_in(
                &mut c,
                ptr,
                len,
                RETURN_BYTES_MAX,
                "return bytes",
                HOST_CALL_GAS,
            )?;
            c.data_mut().return_data = data;
            Ok(())
        },
    )?;
    linker.func_wrap(
        m,
        "revert",
        |mut c: Ctx<'_>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            let msg = copy_in(
                &mut c,
                ptr,
                len,
                RETURN_BYTES_MAX,
                "revert message",
                HOST_CALL_GAS,
            )?;
            Err(halt(Halt::Revert(
                String::from_utf8_lossy(&msg).into_owned(),
            )))
        },
    )?;
    linker.func_wrap(
        m,
        "call",
        |mut c: Ctx<'_>,
         id: i32,
         entry: i32,
         entry_len: i32,
         input: i32,
         input_len: i32,
         value: i64,
         gas: i64|
         -> Result<i32, wasmi::Error> {
            let entry_n = length(entry_len, ENTRY_BYTES_MAX, "entry name")?;
            let input_n = length(input_len, INPUT_BYTES_MAX, "input bytes")?;
            charge(
                &mut c,
                HOST_CALL_GAS + NESTED_CALL_GAS + (32 + entry_n + input_n) as u64 * COPY_BYTE_GAS,
            )?;
            let id: [u8; 32] = read_mem(&c, id, 32)?
                .try_into()
                .expect("32 bytes were read");
            let entry = read_mem(&c, entry, entry_n)?;
            let input = read_mem(&c, input, input_n)?;
            Ok(nested_call(&mut c, id, &entry, input, value as u64, gas as u64)? as i32)
        },
    )?;
    linker.func_wrap(
        m,
        "return_data_len",
        |mut c: Ctx<'_>| -> Result<i32, wasmi::Error> {
            charge(&mut c, HOST_CALL_GAS)?;
            Ok(c.data().last_return.len() as i32)
        },
    )?;
    linker.func_wrap(
        m,
        "return_data_read",
        |mut c: Ctx<'_>, ptr: i32| -> Result<(), wasmi::Error> {
            let data = std::mem::take(&mut c.data_mut().last_return);
            let charged = charge(&mut c, HOST_CALL_GAS + data.len() as u64 * COPY_BYTE_GAS);
            let written = charged.and_then(|()| write_mem(&mut c, ptr, &data));
            c.data_mut().last_return = data;
            written
        },
    )?;
    Ok(())
}

/// Runs a nested call for the frame of `c` (the `call` import).
fn nested_call(
    c: &mut Ctx<'_>,
    id: [u8; 32],
    entry: &[u8],
    input: Vec<u8>,
    value: u64,
    gas: u64,
) -> Result<CallCode, wasmi::Error> {
    c.data_mut().last_return.clear();
    let state = c.data();
    if state.depth + 1 > CALL_DEPTH_MAX {
        return Ok(CallCode::TooDeep);
    }
    if state.journal.stack.contains(&id) {
        return Ok(CallCode::Reentrancy);
    }
    let Ok(entry) = std::str::from_utf8(entry) else {
        return Ok(CallCode::NoSuchEntry);
    };
    let Some(module) = state
        .store
        .contract(&id)
        .map_err(|e| halt(Halt::Local(e.0)))?
    else {
        return Ok(CallCode::NoSuchContract);
    };
    let (vm, store, depth) = (state.vm, state.store, state.depth);
    let me = state.ctx.contract;
    // Restored as it was if the callee fails: its writes, payments and
    // events, and the value, are undone. Bounded: at most WRITES_MAX
    // writes, EVENTS_MAX events and TRANSFERS_MAX transfers.
    let snapshot = state.journal.clone();
    // Loading the code is paid whether or not it was cached.
    charge(c, module.code_len() as u64 * CODE_LOAD_BYTE_GAS)?;
    if value > 0 && !c.data_mut().pay(me, id, value)? {
        return Ok(CallCode::Insufficient);
    }
    let balance = c.data_mut().balance_of(&id)?;
    let mut journal = std::mem::take(&mut c.data_mut().journal);
    journal.stack.push(id);
    let fuel = c.get_fuel()?;
    let budget = gas.min(fuel);
    let ctx = CallContext {
        caller: me,
        contract: id,
        balance,
        value,
        ..c.data().ctx
    };
    let frame = vm
        .run_frame(
            &module,
            ctx,
            entry,
            input,
            budget,
            store,
            journal,
            depth + 1,
        )
        .map_err(|e| halt(Halt::Local(e.0)))?;
    c.set_fuel(fuel - frame.gas_used.min(budget))?;
    let mut journal = frame.journal;
    journal.stack.pop();
    let state = c.data_mut();
    let code = CallCode::of(&frame.status);
    if frame.status == Status::Success {
        state.journal = journal;
        state.last_return = frame.return_data;
    } else {
        state.journal = snapshot;
        if let Status::Reverted(m) = frame.status {
            state.last_return = m.into_bytes();
        }
    }
    Ok(code)
}
