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
//! | `transfer` | `(to i32, amount i64) -> i32` | pays `amount` (a u64's bits) to account `to` from the contract's balance: 0, or 1 when the balance is short |
//! | `emit` | `(ptr i32, len i32)` | records an event |
//! | `set_return` | `(ptr i32, len i32)` | sets the call's return data |
//! | `revert` | `(ptr i32, len i32)` | ends the call as failed, with a message; its writes are dropped |

use std::collections::BTreeMap;
use std::fmt;

use wasmi::{Caller, Extern, Linker, StoreLimits, ValType};

use crate::limits::{
    COPY_BYTE_GAS, EVENTS_MAX, EVENT_BYTES_MAX, EVENT_GAS, HOST_CALL_GAS, RETURN_BYTES_MAX,
    STORAGE_BYTE_GAS, STORAGE_KEY_BYTES_MAX, STORAGE_READ_GAS, STORAGE_VALUE_BYTES_MAX,
    STORAGE_WRITE_GAS, TRANSFERS_MAX, TRANSFER_GAS, WRITES_MAX,
};
use crate::{CallContext, ContractStore};

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
    ("transfer", &[ValType::I32, ValType::I64], &[ValType::I32]),
    ("emit", &[ValType::I32, ValType::I32], &[]),
    ("set_return", &[ValType::I32, ValType::I32], &[]),
    ("revert", &[ValType::I32, ValType::I32], &[]),
];

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

/// What a call has done so far; kept only if it succeeds.
pub(crate) struct HostState {
    pub ctx: CallContext,
    pub input: Vec<u8>,
    /// Borrowed for the call only: see the SAFETY note in [`crate::Vm::call`].
    pub store: &'static dyn ContractStore,
    pub limits: StoreLimits,
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub events: Vec<Vec<u8>>,
    pub transfers: Vec<([u8; 32], u64)>,
    /// What is left of `ctx.balance` after the transfers.
    pub balance_left: u64,
    pub return_data: Vec<u8>,
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

fn storage_get(caller: &Ctx<'_>, key: &[u8]) -> Result<Option<Vec<u8>>, wasmi::Error> {
    let state = caller.data();
    match state.writes.get(key) {
        Some(v) => Ok(v.clone()),
        None => state.store.read(key).map_err(|e| halt(Halt::Local(e.0))),
    }
}

fn record_write(
    caller: &mut Ctx<'_>,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
) -> Result<(), wasmi::Error> {
    let writes = &mut caller.data_mut().writes;
    if writes.len() >= WRITES_MAX && !writes.contains_key(&key) {
        return Err(halt(Halt::Limit("writes per call")));
    }
    writes.insert(key, value);
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
            match storage_get(&c, &key)? {
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
            Ok(c.data().balance_left as i64)
        },
    )?;
    linker.func_wrap(
        m,
        "transfer",
        |mut c: Ctx<'_>, to: i32, amount: i64| -> Result<i32, wasmi::Error> {
            charge(&mut c, HOST_CALL_GAS + TRANSFER_GAS + 32 * COPY_BYTE_GAS)?;
            let to: [u8; 32] = read_mem(&c, to, 32)?
                .try_into()
                .expect("32 bytes were read");
            let amount = amount as u64;
            let state = c.data_mut();
            if state.transfers.len() >= TRANSFERS_MAX {
                return Err(halt(Halt::Limit("transfers per call")));
            }
            let Some(left) = state.balance_left.checked_sub(amount) else {
                return Ok(1);
            };
            state.balance_left = left;
            state.transfers.push((to, amount));
            Ok(0)
        },
    )?;
    linker.func_wrap(
        m,
        "emit",
        |mut c: Ctx<'_>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            if c.data().events.len() >= EVENTS_MAX {
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
            c.data_mut().events.push(event);
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
    Ok(())
}
