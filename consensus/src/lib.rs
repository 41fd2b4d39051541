//! `strata-consensus`: transactions, mempool, blocks, execution and Snowball
//! sampling consensus, as a sans-IO state machine.
//!
//! Not built yet: see issues 7 and 8.
#![deny(missing_docs)]
