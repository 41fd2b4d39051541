//! The one error type of the LSM engine.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

/// An error from the LSM engine ([`crate::Db`] and its files).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed on `path`.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk failed validation (checksum, length, magic, order).
    #[error("corruption in {} at byte {offset}: {reason}", file.display())]
    Corruption {
        /// The file holding the bad bytes.
        file: PathBuf,
        /// Byte offset in that file where validation failed.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The caller passed something outside the documented limits.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another open `Db`, in this process or another, holds the lock file
    /// `path` of the directory.
    #[error("database directory is in use: {} is locked by another open Db", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// [`crate::WalBackend::IoUring`] was requested, but io_uring cannot
    /// be used here; `hint` says how to allow it.
    #[error(
        "the io_uring WAL backend was requested (Options::wal_backend(WalBackend::IoUring)) \
         but is unavailable: {source}. {hint}"
    )]
    IoUringUnavailable {
        /// Why setting up or probing the ring failed.
        #[source]
        source: std::io::Error,
        /// How to fix it, or how to do without it.
        hint: &'static str,
    },
    /// The database was closed.
    #[error("database is closed")]
    Closed,
    /// An earlier write or fsync failed; the database refuses writes until
    /// it is reopened, because it can no longer tell what reached the disk.
    #[error("database is poisoned by an earlier failed write; reopen it")]
    Poisoned,
    /// A background flush or compaction failed (the inner error says
    /// where); the database refuses writes and flushes until it is
    /// reopened. Every acknowledged write is still in a WAL or a table the
    /// manifest names, and is there at reopen.
    #[error("background flush or compaction failed, reopen the database: {0}")]
    Background(#[source] Arc<Error>),
    /// A background worker (flush or compaction) panicked.
    #[error("a background worker (flush or compaction) panicked")]
    WorkerPanicked,
}

/// Result alias of the LSM engine.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption error in `file` at `offset`.
    pub(crate) fn corruption(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
