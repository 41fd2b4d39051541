//! The directory lock: an exclusive `flock(2)` on the `LOCK` file of a
//! database directory, held for as long as the `Db` is open, so a second
//! open — from this process or another — fails with [`Error::Locked`]
//! instead of two engines writing one directory.
//!
//! `flock` rather than `fcntl` record locks because `flock` locks belong to
//! the open file description: a second `open` in the same process
//! conflicts too, and closing an unrelated descriptor of the same file does
//! not drop the lock. The kernel releases it when the process dies, so a
//! crash never leaves a stale lock. (`std::fs::File::try_lock` does the
//! same but needs Rust 1.89; the workspace supports 1.85.) On non-Unix
//! targets there is no lock.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the lock file in a database directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// A held directory lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct DirLock {
    // Closing the file releases the lock.
    _file: File,
}

impl DirLock {
    /// Takes the lock of database directory `dir`, without waiting.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        try_lock_exclusive(&file, path)?;
        Ok(DirLock { _file: file })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Unlock explicitly before the descriptor closes: a child forked
        // by another thread of this process (between its fork and exec)
        // shares the open file description, and closing our descriptor
        // alone would leave the lock held until that child execs — a
        // reopen right after close then failed with `Locked` now and
        // then. `LOCK_UN` releases the description's lock at once.
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: `flock` only reads its two integer arguments; the
            // descriptor stays open until `_file` drops after this.
            unsafe {
                libc::flock(self._file.as_raw_fd(), libc::LOCK_UN);
            }
        }
    }
}

#[cfg(unix)]
fn try_lock_exclusive(file: &File, path: PathBuf) -> Result<()> {
    use std::os::unix::io::AsRawFd;

    loop {
        // SAFETY: `flock` only reads its two integer arguments; the
        // descriptor is open for the whole call because `file` is borrowed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => return Err(Error::Locked { path }),
            _ => return Err(Error::io(path, err)),
        }
    }
}

#[cfg(not(unix))]
fn try_lock_exclusive(_file: &File, _path: PathBuf) -> Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
