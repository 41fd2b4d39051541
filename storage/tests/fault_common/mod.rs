//! A `LogFile` that fails on command, shared by the fault-injection tests
//! (lsm_faults.rs, lsm_compaction.rs).
#![allow(dead_code)]

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use strata_storage::wal::LogFile;

/// Writes pass through.
pub const OK: u8 = 0;
/// The next appends write half their bytes, then fail with ENOSPC.
pub const FAIL_APPEND: u8 = 1;
/// Syncs fail with EIO (the bytes are written and would read back: the
/// record's fate is unknown).
pub const FAIL_SYNC: u8 = 2;

/// Wraps a real file; `mode` (one of the constants) says what fails now.
#[derive(Debug)]
pub struct Faulty {
    pub inner: Box<dyn LogFile>,
    pub mode: Arc<AtomicU8>,
}

impl LogFile for Faulty {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        if self.mode.load(Ordering::SeqCst) == FAIL_APPEND {
            // A partial write, then no space: a torn tail that must not
            // survive as data.
            self.inner.append(&buf[..buf.len() / 2])?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.append(buf)
    }
    fn sync(&self) -> io::Result<()> {
        if self.mode.load(Ordering::SeqCst) == FAIL_SYNC {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync()
    }
}
