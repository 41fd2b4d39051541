//! Fuzzes the state sync message decoders (requests and responses from
//! peers, chunks with range proofs): never a panic, and accepted input
//! re-encodes byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_consensus::sync::{SyncRequest, SyncResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = SyncRequest::decode(data) {
        assert_eq!(request.encode(), data);
    }
    if let Ok(response) = SyncResponse::decode(data) {
        assert_eq!(response.encode(), data);
    }
});
