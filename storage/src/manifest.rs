//! The manifest: an append-only log of checksummed [`VersionEdit`] records
//! (framed as in [`crate::record`]) whose first record is a full snapshot
//! of the version. `CURRENT` names the live manifest file.
//!
//! A new manifest is started at every open: written with the snapshot,
//! fsynced, then `CURRENT` is replaced atomically (write `CURRENT.tmp`,
//! fsync, rename over `CURRENT`, fsync the directory). A torn final record
//! (crash mid-append) is ignored: its edit was never acknowledged.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fault::FileKind;
use crate::limits::MANIFEST_RECORD_BYTES_MAX;
use crate::options::Options;
use crate::record;
use crate::version::{Version, VersionEdit};
use crate::wal::LogFile;

/// Name of the pointer file.
pub(crate) const CURRENT: &str = "CURRENT";

/// File name of manifest `number`.
pub(crate) fn manifest_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// Fsyncs a directory so renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Reads `CURRENT` and replays the manifest it names. `Ok(None)` for a
/// directory without `CURRENT` (a new database).
pub(crate) fn load(dir: &Path) -> Result<Option<(Version, u64)>> {
    let current = dir.join(CURRENT);
    let name = match std::fs::read(&current) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&current, e)),
    };
    let number = std::str::from_utf8(&name)
        .ok()
        .and_then(|s| s.trim_end().strip_prefix("MANIFEST-"))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| Error::corruption(&current, 0, "CURRENT does not name a manifest"))?;
    let path = dir.join(manifest_name(number));
    let data = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let (records, _tail) = record::split(&path, &data, MANIFEST_RECORD_BYTES_MAX, false)?;
    if records.is_empty() {
        return Err(Error::corruption(
            &path,
            0,
            "manifest has no snapshot record",
        ));
    }
    let mut version = Version::default();
    for (offset, payload) in records {
        let edit = VersionEdit::decode(&path, offset, payload)?;
        version.apply(&path, offset, &edit)?;
    }
    Ok(Some((version, number)))
}

/// The live manifest, open for appending edits.
#[derive(Debug)]
pub(crate) struct Manifest {
    path: PathBuf,
    /// Wrapped by `Options::file_wrapper` (the fault seam).
    file: Box<dyn LogFile>,
    /// An append or fsync failed: the file's tail is unknown, so no edit
    /// may follow it (until a reopen writes a new manifest).
    failed: bool,
}

/// Creates (truncating) `path` for writing, wrapped as a file of `kind`.
fn create_wrapped(path: &Path, kind: FileKind, options: &Options) -> Result<Box<dyn LogFile>> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    Ok(options.wrap_file(kind, Box::new(file)))
}

impl Manifest {
    /// Writes manifest `number` holding a snapshot of `version` and points
    /// `CURRENT` at it. Every file write goes through the file wrapper of
    /// `options`.
    pub(crate) fn create(
        dir: &Path,
        number: u64,
        version: &Version,
        options: &Options,
    ) -> Result<Manifest> {
        let path = dir.join(manifest_name(number));
        let file = create_wrapped(&path, FileKind::Manifest, options)?;
        let mut buf = Vec::new();
        record::encode(&version.snapshot_edit().encode(), &mut buf);
        file.append(&buf)
            .and_then(|()| file.sync())
            .map_err(|e| Error::io(&path, e))?;
        let tmp = dir.join("CURRENT.tmp");
        let f = create_wrapped(&tmp, FileKind::Current, options)?;
        f.append(format!("{}\n", manifest_name(number)).as_bytes())
            .and_then(|()| f.sync())
            .map_err(|e| Error::io(&tmp, e))?;
        let current = dir.join(CURRENT);
        std::fs::rename(&tmp, &current).map_err(|e| Error::io(&current, e))?;
        sync_dir(dir)?;
        Ok(Manifest {
            path,
            file,
            failed: false,
        })
    }

    /// Appends `edit` durably. After a failure every later call fails:
    /// both background workers append, and the second must not write
    /// after a record whose fate is unknown.
    pub(crate) fn append(&mut self, edit: &VersionEdit) -> Result<()> {
        if self.failed {
            return Err(Error::io(
                &self.path,
                std::io::Error::other("an earlier manifest append or fsync failed; reopen"),
            ));
        }
        let mut buf = Vec::new();
        record::encode(&edit.encode(), &mut buf);
        let r = self
            .file
            .append(&buf)
            .and_then(|()| self.file.sync())
            .map_err(|e| Error::io(&self.path, e));
        self.failed = r.is_err();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::EditOp;

    #[test]
    fn create_append_load() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let mut v = Version::default();
        let mut m = Manifest::create(dir.path(), 2, &v, &Options::new()).unwrap();
        let edit = VersionEdit {
            ops: vec![EditOp::LastSeq(42), EditOp::NextFileNumber(9)],
        };
        m.append(&edit).unwrap();
        v.apply(Path::new("m"), 0, &edit).unwrap();
        let (loaded, number) = load(dir.path()).unwrap().unwrap();
        assert_eq!((loaded, number), (v, 2));
    }
}
