//! The version: which table files make up the database, per level, plus the
//! counters recovery needs. Changed only by applying [`VersionEdit`]s,
//! which the manifest logs.
//!
//! Edit encoding (little-endian): `count: u32`, then `count` operations,
//! each a tag byte and its fields: 1 = add table without key range
//! (`level: u8`, `number: u64`, `size_bytes: u64`, `max_seq: u64`; written
//! before compaction existed, still read), 2 = remove table (`level: u8`,
//! `number: u64`), 3 = last sequence (`u64`), 4 = log number (`u64`: WALs
//! numbered below it are already in tables), 5 = next file number
//! (`u64`), 6 = add table with key range (the fields of 1, then
//! `smallest_len: u16`, smallest key, `largest_len: u16`, largest key),
//! 7 = add table with key range and deletes (the fields of 6, then
//! `deletions: u64`, the table's tombstones). New edits always use 7:
//! open places tables in their levels from the manifest without reading
//! a data block, and compaction weighs a table's tombstones by what they
//! can free (see `compaction::pick`); tables recorded by 1 or 6 count
//! none.

use std::path::Path;

use crate::batch::Reader;
use crate::error::{Error, Result};
use crate::limits::{KEY_BYTES_MAX, LEVELS};

/// One table of a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableMeta {
    pub(crate) number: u64,
    pub(crate) size_bytes: u64,
    pub(crate) max_seq: u64,
    /// Smallest and largest user key; `None` only for tables recorded by
    /// a tag-1 edit (the reader then takes them from the table).
    pub(crate) keys: Option<(Vec<u8>, Vec<u8>)>,
    /// Tombstones in the table (0 when recorded by a tag-1 or tag-6 edit,
    /// which did not count them).
    pub(crate) deletions: u64,
}

/// One change to a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EditOp {
    AddTable { level: u8, table: TableMeta },
    RemoveTable { level: u8, number: u64 },
    LastSeq(u64),
    LogNumber(u64),
    NextFileNumber(u64),
}

/// Changes applied together (one manifest record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    pub(crate) ops: Vec<EditOp>,
}

impl VersionEdit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 26 * self.ops.len());
        out.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        for op in &self.ops {
            match *op {
                EditOp::AddTable { level, ref table } => {
                    out.push(if table.keys.is_some() { 7 } else { 1 });
                    out.push(level);
                    out.extend_from_slice(&table.number.to_le_bytes());
                    out.extend_from_slice(&table.size_bytes.to_le_bytes());
                    out.extend_from_slice(&table.max_seq.to_le_bytes());
                    if let Some((lo, hi)) = &table.keys {
                        for k in [lo, hi] {
                            assert!(k.len() <= KEY_BYTES_MAX, "keys are validated on write");
                            out.extend_from_slice(&(k.len() as u16).to_le_bytes());
                            out.extend_from_slice(k);
                        }
                        out.extend_from_slice(&table.deletions.to_le_bytes());
                    }
                }
                EditOp::RemoveTable { level, number } => {
                    out.push(2);
                    out.push(level);
                    out.extend_from_slice(&number.to_le_bytes());
                }
                EditOp::LastSeq(n) => {
                    out.push(3);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                EditOp::LogNumber(n) => {
                    out.push(4);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                EditOp::NextFileNumber(n) => {
                    out.push(5);
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
        out
    }

    pub(crate) fn decode(file: &Path, offset: u64, data: &[u8]) -> Result<VersionEdit> {
        let bad = |reason: &str| Error::corruption(file, offset, format!("version edit: {reason}"));
        let mut r = Reader { data, pos: 0 };
        let count = r.u32().ok_or_else(|| bad("short"))? as usize;
        // Every op takes at least 9 bytes: bound the allocation by the input.
        if count > data.len() / 9 {
            return Err(bad("operation count exceeds record length"));
        }
        let mut ops = Vec::with_capacity(count);
        for _ in 0..count {
            let short = || bad("short operation");
            let op = match r.u8().ok_or_else(short)? {
                tag @ (1 | 6 | 7) => {
                    let level = r.u8().ok_or_else(short)?;
                    let number = r.u64().ok_or_else(short)?;
                    let size_bytes = r.u64().ok_or_else(short)?;
                    let max_seq = r.u64().ok_or_else(short)?;
                    let keys = if tag != 1 {
                        let mut key = || -> Result<Vec<u8>> {
                            let len = r.u16().ok_or_else(short)? as usize;
                            if len > KEY_BYTES_MAX {
                                return Err(bad("key longer than the key limit"));
                            }
                            Ok(r.bytes(len).ok_or_else(short)?.to_vec())
                        };
                        let lo = key()?;
                        let hi = key()?;
                        if lo > hi {
                            return Err(bad("smallest key after largest key"));
                        }
                        Some((lo, hi))
                    } else {
                        None
                    };
                    let deletions = if tag == 7 {
                        r.u64().ok_or_else(short)?
                    } else {
                        0
                    };
                    EditOp::AddTable {
                        level,
                        table: TableMeta {
                            number,
                            size_bytes,
                            max_seq,
                            keys,
                            deletions,
                        },
                    }
                }
                2 => {
                    let level = r.u8().ok_or_else(short)?;
                    let number = r.u64().ok_or_else(short)?;
                    EditOp::RemoveTable { level, number }
                }
                3 => EditOp::LastSeq(r.u64().ok_or_else(short)?),
                4 => EditOp::LogNumber(r.u64().ok_or_else(short)?),
                5 => EditOp::NextFileNumber(r.u64().ok_or_else(short)?),
                _ => return Err(bad("unknown operation tag")),
            };
            ops.push(op);
        }
        if r.pos != data.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(VersionEdit { ops })
    }
}

/// The set of live tables and the recovery counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    /// Tables per level; L0 newest first (highest number first).
    pub(crate) levels: Vec<Vec<TableMeta>>,
    pub(crate) last_seq: u64,
    pub(crate) log_number: u64,
    pub(crate) next_file_number: u64,
}

impl Default for Version {
    fn default() -> Self {
        Version {
            levels: vec![Vec::new(); LEVELS],
            last_seq: 0,
            log_number: 0,
            next_file_number: 1,
        }
    }
}

impl Version {
    /// Applies `edit`, read from `file` at `offset` (for error messages).
    pub(crate) fn apply(&mut self, file: &Path, offset: u64, edit: &VersionEdit) -> Result<()> {
        let bad = |reason: String| Error::corruption(file, offset, reason);
        for op in &edit.ops {
            match *op {
                EditOp::AddTable { level, ref table } => {
                    let l = self
                        .levels
                        .get_mut(level as usize)
                        .ok_or_else(|| bad(format!("level {level} out of range")))?;
                    if l.iter().any(|t| t.number == table.number) {
                        return Err(bad(format!("table {} added twice", table.number)));
                    }
                    l.push(table.clone());
                    l.sort_by_key(|t| std::cmp::Reverse(t.number));
                }
                EditOp::RemoveTable { level, number } => {
                    let l = self
                        .levels
                        .get_mut(level as usize)
                        .ok_or_else(|| bad(format!("level {level} out of range")))?;
                    let before = l.len();
                    l.retain(|t| t.number != number);
                    if l.len() == before {
                        return Err(bad(format!("removed table {number} is not live")));
                    }
                }
                EditOp::LastSeq(n) => self.last_seq = self.last_seq.max(n),
                EditOp::LogNumber(n) => self.log_number = n,
                EditOp::NextFileNumber(n) => self.next_file_number = n,
            }
        }
        Ok(())
    }

    /// One edit that rebuilds this whole version from empty.
    pub(crate) fn snapshot_edit(&self) -> VersionEdit {
        let mut ops = Vec::new();
        for (level, tables) in self.levels.iter().enumerate() {
            for table in tables.iter().rev() {
                ops.push(EditOp::AddTable {
                    level: level as u8,
                    table: table.clone(),
                });
            }
        }
        ops.push(EditOp::LastSeq(self.last_seq));
        ops.push(EditOp::LogNumber(self.log_number));
        ops.push(EditOp::NextFileNumber(self.next_file_number));
        VersionEdit { ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_edit_round_trips() {
        let mut v = Version::default();
        let t = |number: u64| TableMeta {
            number,
            size_bytes: 10,
            max_seq: number,
            // Both encodings: with and without a key range (and deletes).
            keys: (number % 2 == 0).then(|| (b"a".to_vec(), format!("z{number}").into_bytes())),
            deletions: if number % 2 == 0 { number * 7 } else { 0 },
        };
        let edit = VersionEdit {
            ops: vec![
                EditOp::AddTable {
                    level: 0,
                    table: t(3),
                },
                EditOp::AddTable {
                    level: 0,
                    table: t(4),
                },
                EditOp::RemoveTable {
                    level: 0,
                    number: 3,
                },
                EditOp::LastSeq(99),
                EditOp::LogNumber(5),
                EditOp::NextFileNumber(6),
            ],
        };
        let p = Path::new("m");
        v.apply(p, 0, &VersionEdit::decode(p, 0, &edit.encode()).unwrap())
            .unwrap();
        let mut w = Version::default();
        w.apply(p, 0, &v.snapshot_edit()).unwrap();
        assert_eq!(v, w);
        assert_eq!(w.levels[0], vec![t(4)]);
    }
}
