//! Why a module is refused at deploy, and the node's own faults.

use thiserror::Error;

/// Why a module cannot be deployed. The message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeployError {
    /// Larger than [`crate::limits::CODE_BYTES_MAX`].
    #[error("module is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Bytes given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not binary WebAssembly (text, or anything else).
    #[error("not a binary WebAssembly module (no \\0asm header); compile WAT first")]
    NotWasm,
    /// The interpreter refused it: malformed, or it uses a feature the
    /// chain turns off (floats, SIMD, threads, several memories,
    /// reference types, a start function).
    #[error("invalid module: {0}")]
    Invalid(String),
    /// An import that is not a host function of the API, or with another
    /// signature.
    #[error("import {module}.{name}: {why}")]
    Import {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// No memory exported as `memory`, or one larger than
    /// [`crate::limits::MEMORY_PAGES_MAX`] from the start.
    #[error("memory: {0}")]
    Memory(String),
    /// No exported function a call can enter (`() -> ()`).
    #[error("no entry point: export at least one function taking and returning nothing")]
    NoEntry,
}

/// A fault of this node, not of the contract or the transaction: reading
/// its own state failed. The call's outcome is unknown, so nothing may be
/// recorded for it, and no peer is to blame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("state read failed: {0}")]
pub struct LocalFault(pub String);
