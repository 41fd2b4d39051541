//! `strata-consensus`: transactions, mempool, blocks, execution and Snowball
//! sampling consensus, as sans-IO state machines: no sockets, threads or
//! clocks inside — callers pass time in and run the returned work.
//!
//! What is here now: the transaction format ([`tx`]), batched signature
//! verification ([`verify`]) and the mempool ([`mempool`]). Blocks, execution,
//! the commit path and Snowball arrive with issues 7 and 8.
#![deny(missing_docs)]

pub mod error;
pub mod mempool;
pub mod tx;
pub mod verify;

pub use error::DecodeError;
