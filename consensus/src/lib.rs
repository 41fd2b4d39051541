//! `strata-consensus`: transactions, mempool, blocks, execution and Snowball
//! sampling consensus, as sans-IO state machines: no sockets, threads or
//! clocks inside — callers pass time in and run the returned work.
//!
//! What is here: the transaction format ([`tx`]), the signature rule
//! ([`signature`]), batched verification ([`verify`]), the mempool ([`mempool`]), blocks ([`block`]),
//! state keys and deterministic execution ([`state`]), the genesis
//! ([`genesis`]), the durable commit path ([`db_chain`]), pruning of old
//! history ([`history`]), Snowball
//! ([`snowball`]) with pluggable poll weights — uniform, stake, proof of
//! work ([`sampler`]) — driven by the sans-IO [`engine`] (which measures
//! round trips to its peers, [`rtt`]), and the
//! deterministic simulator that runs many engines under faults, Byzantine
//! nodes and each weight kind (`sim`, with the in-memory chain `mem_chain`,
//! behind the `sim` feature; measurements in docs/consensus.md).
//!
//! The engine's inputs are messages, ticks and completed jobs; its
//! outputs are messages to send and jobs to run: a block's execution
//! (`Output::Execute`, answered with `Engine::on_executed`) and a final
//! block's durable commit (`Output::Commit`, answered with
//! `Engine::on_committed`). The node runs them on its threads;
//! `engine::run_jobs_inline` runs them at once on the caller's (the
//! simulator, tests).
#![deny(missing_docs)]

pub mod block;
pub mod contract;
pub mod db_chain;
pub mod engine;
pub mod error;
pub mod genesis;
pub mod history;
#[cfg(any(test, feature = "sim"))]
pub mod mem_chain;
pub mod mempool;
mod reader;
mod rng;
pub mod rtt;
pub mod sampler;
pub mod signature;
#[cfg(feature = "sim")]
pub mod sim;
pub mod snowball;
pub mod state;
pub mod sync;
pub mod synthetic;
pub mod tx;
pub mod verify;
pub mod wire;

pub use error::DecodeError;
