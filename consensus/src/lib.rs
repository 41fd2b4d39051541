//! `strata-consensus`: transactions, mempool, blocks, execution and Snowball
//! sampling consensus, as sans-IO state machines: no sockets, threads or
//! clocks inside — callers pass time in and run the returned work.
//!
//! What is here now: the transaction format ([`tx`]), batched signature
//! verification ([`verify`]), the mempool ([`mempool`]), blocks ([`block`]),
//! state keys and deterministic execution ([`state`]) and the genesis
//! ([`genesis`]). The durable commit path and Snowball arrive with the rest
//! of issues 7 and 8.
#![deny(missing_docs)]

pub mod block;
pub mod db_chain;
pub mod engine;
pub mod error;
pub mod genesis;
pub mod mem_chain;
pub mod mempool;
pub mod rng;
pub mod sampler;
pub mod sim;
pub mod snowball;
pub mod state;
pub mod tx;
pub mod verify;
pub mod wire;

pub use error::DecodeError;
