//! Writes a table file: data blocks, then the index block, the bloom
//! block, and the footer. Written once, fsynced, never modified.
//!
//! Index block entry: `key_len: u16`, the last key of the data block,
//! `last_seq: u64` (its sequence number), `offset: u64`, `len: u32` (framed
//! length of the data block).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::block::{self, BlockBuilder};
use super::bloom::BloomBuilder;
use super::footer::Footer;
use crate::error::{Error, Result};
use crate::wal::LogFile;

/// `io::Write` over a [`LogFile`], so a `BufWriter` batches the appends
/// and every byte of a table still passes through the fault seam.
#[derive(Debug)]
struct Appender(Box<dyn LogFile>);

impl Write for Appender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a finished table holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TableInfo {
    pub(crate) size_bytes: u64,
    #[cfg_attr(not(test), allow(dead_code))] // Checked by tests.
    pub(crate) entries: u64,
    /// Tombstones among the entries.
    pub(crate) deletions: u64,
    pub(crate) max_seq: u64,
}

/// Streams sorted entries into a new table file.
#[derive(Debug)]
pub(crate) struct TableBuilder {
    path: PathBuf,
    out: BufWriter<Appender>,
    offset: u64,
    block: BlockBuilder,
    last_seq: u64,
    index: Vec<u8>,
    bloom: BloomBuilder,
    last_key: Option<Vec<u8>>,
    entries: u64,
    deletions: u64,
    max_seq: u64,
    zstd_level: Option<i32>,
    /// A data block is cut once it holds this many bytes.
    block_bytes: usize,
    framed: Vec<u8>,
}

impl TableBuilder {
    /// Creates the table file at `path`, written directly (tests).
    #[cfg(test)]
    pub(crate) fn create(path: &Path, zstd_level: Option<i32>) -> Result<TableBuilder> {
        let block_bytes = crate::limits::BLOCK_BYTES_TARGET;
        Self::create_wrapped(path, zstd_level, block_bytes, &|f| f)
    }

    /// Creates the table file at `path` (truncating), with every write
    /// and the fsync going through `wrap` of it.
    pub(crate) fn create_wrapped(
        path: &Path,
        zstd_level: Option<i32>,
        block_bytes: usize,
        wrap: &dyn Fn(Box<dyn LogFile>) -> Box<dyn LogFile>,
    ) -> Result<TableBuilder> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(TableBuilder {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, Appender(wrap(Box::new(file)))),
            offset: 0,
            block: BlockBuilder::default(),
            last_seq: 0,
            index: Vec::new(),
            bloom: BloomBuilder::default(),
            last_key: None,
            entries: 0,
            deletions: 0,
            max_seq: 0,
            zstd_level,
            block_bytes,
            framed: Vec::new(),
        })
    }

    /// Adds an entry; calls must come in internal-key order.
    pub(crate) fn add(&mut self, key: &[u8], seq: u64, value: Option<&[u8]>) -> Result<()> {
        if self.last_key.as_deref() != Some(key) {
            self.bloom.add(key);
            self.last_key = Some(key.to_vec());
        }
        self.block.add(key, seq, value);
        self.last_seq = seq;
        self.entries += 1;
        self.deletions += u64::from(value.is_none());
        self.max_seq = self.max_seq.max(seq);
        if self.block.size_bytes() >= self.block_bytes {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Bytes written so far plus the open block: where to cut outputs.
    pub(crate) fn estimated_bytes(&self) -> u64 {
        self.offset + self.block.size_bytes() as u64
    }

    /// The file being written (to delete it if the table is abandoned).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, raw: &[u8]) -> Result<(u64, u32)> {
        self.framed.clear();
        block::frame(raw, self.zstd_level, &mut self.framed);
        let at = self.offset;
        self.out
            .write_all(&self.framed)
            .map_err(|e| Error::io(&self.path, e))?;
        self.offset += self.framed.len() as u64;
        Ok((at, self.framed.len() as u32))
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let last_key = self.block.last_key().to_vec();
        let raw = self.block.finish();
        let (offset, len) = self.write(&raw)?;
        self.index
            .extend_from_slice(&(last_key.len() as u16).to_le_bytes());
        self.index.extend_from_slice(&last_key);
        self.index.extend_from_slice(&self.last_seq.to_le_bytes());
        self.index.extend_from_slice(&offset.to_le_bytes());
        self.index.extend_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// Writes index, bloom and footer, and fsyncs the file.
    pub(crate) fn finish(mut self) -> Result<TableInfo> {
        self.flush_block()?;
        let level = self.zstd_level.take();
        let index = std::mem::take(&mut self.index);
        let (index_offset, index_len) = self.write(&index)?;
        let bloom = self.bloom.finish();
        let (bloom_offset, bloom_len) = self.write(&bloom)?;
        self.zstd_level = level;
        let footer = Footer {
            index_offset,
            index_len,
            bloom_offset,
            bloom_len,
            entries: self.entries,
            max_seq: self.max_seq,
        };
        self.out
            .write_all(&footer.encode())
            .map_err(|e| Error::io(&self.path, e))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.0.sync().map_err(|e| Error::io(&self.path, e))?;
        Ok(TableInfo {
            size_bytes: self.offset + super::footer::FOOTER_BYTES as u64,
            entries: self.entries,
            deletions: self.deletions,
            max_seq: self.max_seq,
        })
    }
}
