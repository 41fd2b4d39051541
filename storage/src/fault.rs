//! Fault-injection seams: wrappers the engine applies to each file it
//! creates, so tests can make a write, a sync or a rename fail (or stall)
//! at a chosen moment. Set them with [`crate::Options::wal_wrapper`] and
//! [`crate::Options::file_wrapper`]; a production store sets neither.

use std::sync::Arc;

pub use crate::wal::LogFile;

/// Wraps each WAL file as it is created.
pub type LogFileWrapper = Arc<dyn Fn(Box<dyn LogFile>) -> Box<dyn LogFile> + Send + Sync>;

/// Which engine file a [`FileWrapper`] is wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A sorted table (`NNNNNN.sst`), written once by a flush or at open.
    Table,
    /// A manifest (`MANIFEST-NNNNNN`): its snapshot record and edits.
    Manifest,
    /// `CURRENT.tmp`, renamed over `CURRENT` to switch manifests.
    Current,
}

/// Wraps each table and manifest file as it is created; the WAL has
/// [`LogFileWrapper`].
pub type FileWrapper = Arc<dyn Fn(FileKind, Box<dyn LogFile>) -> Box<dyn LogFile> + Send + Sync>;
