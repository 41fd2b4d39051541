//! `strata-net`: the Strata peer-to-peer layer (io_uring event loop, framing,
//! authenticated peers, discovery, push/pull gossip).
//!
//! Not built yet: see issue 6. It will know frames and peers, never blocks.
#![deny(missing_docs)]
