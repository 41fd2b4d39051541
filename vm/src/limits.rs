//! Every bound a contract runs under, and the gas schedule.
//!
//! These numbers are consensus: two nodes that disagree on one of them, or
//! on the interpreter's fuel per instruction (wasmi, pinned to one version
//! in Cargo.toml for this reason), compute different outcomes for the same
//! call. Changing any is a change of the protocol.

/// Largest deployed module, bytes. Ethereum's EIP-170 bound (24 KiB): a
/// module is stored on every node and compiled on first use, so its size
/// bounds both.
pub const CODE_BYTES_MAX: usize = 24 * 1024;
/// Largest linear memory a contract may have, in 64 KiB pages (1 MiB). A
/// `memory.grow` past it returns -1, as the Wasm spec lets a host refuse.
pub const MEMORY_PAGES_MAX: u32 = 16;
/// Bytes of one Wasm page.
pub const PAGE_BYTES: usize = 64 * 1024;
/// Deepest chain of Wasm calls within one contract call; deeper traps.
pub const RECURSION_DEPTH_MAX: usize = 256;
/// Longest entry point name, bytes.
pub const ENTRY_BYTES_MAX: usize = 32;
/// Longest argument bytes given to a call.
pub const INPUT_BYTES_MAX: usize = 1024;
/// Longest return data a call may set.
pub const RETURN_BYTES_MAX: usize = 1024;
/// Longest key a contract may use in its namespace: room for a tag and two
/// 32-byte keys (an allowance of owner to spender), twice a user `Put`.
pub const STORAGE_KEY_BYTES_MAX: usize = 128;
/// Longest value a contract may store (as a user `Put`).
pub const STORAGE_VALUE_BYTES_MAX: usize = 1024;
/// Distinct keys one call may write or delete.
pub const WRITES_MAX: usize = 256;
/// Events one call may emit.
pub const EVENTS_MAX: usize = 32;
/// Longest event, bytes.
pub const EVENT_BYTES_MAX: usize = 256;
/// Transfers out of contracts' balances (nested calls' values included)
/// in one transaction.
pub const TRANSFERS_MAX: usize = 16;
/// Deepest nesting of contract calls: the transaction's call at depth 0
/// may call one that calls one … up to this depth.
pub const CALL_DEPTH_MAX: usize = 4;
/// Gas of a nested call before the callee runs: finding and loading it.
pub const NESTED_CALL_GAS: u64 = 10_000;
/// Gas per byte of the called contract's code, on every call (the
/// transaction's and nested ones). A node compiles a module on a cache
/// miss, about 23 ns a byte here (the 1.1 KB token in 25 µs), some 30 gas
/// at 0.8 ns a gas. Whether a node's cache holds the module must not
/// change the gas, so every call pays as if it missed: otherwise calls
/// rotating over more contracts than the cache holds would make every
/// node compile a 24 KiB module (about 0.6 ms) for 10,000 gas (8 µs).
pub const CODE_LOAD_BYTE_GAS: u64 = 30;
/// Most gas one call may be given: about 10 ms of interpretation on the
/// reference machine, so one call cannot hold a block.
pub const GAS_LIMIT_MAX: u64 = 50_000_000;

/// Gas of every host call, before its bytes.
pub const HOST_CALL_GAS: u64 = 100;
/// Gas per byte copied between the contract's memory and the host (input,
/// return data, keys and values read, events).
pub const COPY_BYTE_GAS: u64 = 1;
/// Gas of reading one key of storage: a lookup in the state, which may
/// miss every cache.
pub const STORAGE_READ_GAS: u64 = 2_000;
/// Gas of writing or deleting one key: a state entry and a trie update on
/// every node.
pub const STORAGE_WRITE_GAS: u64 = 5_000;
/// Gas per byte written to storage (key and value): state every node keeps.
pub const STORAGE_BYTE_GAS: u64 = 100;
/// Gas of one event, before its bytes.
pub const EVENT_GAS: u64 = 500;
/// Gas of one transfer out of the contract's balance.
pub const TRANSFER_GAS: u64 = 2_000;

const _: () = assert!(RETURN_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(MEMORY_PAGES_MAX as usize * PAGE_BYTES <= i32::MAX as usize);
