//! Tables being written by one job — a compaction's outputs, a bulk
//! ingestion's run — before a manifest edit names them: the table being
//! filled, those finished, and how to give them all up.

use std::sync::Arc;

use crate::error::Result;
use crate::fault::FileKind;
use crate::inner::{table_name, Inner};
use crate::manifest;
use crate::table::builder::TableBuilder;
use crate::table::reader::Table;
use crate::version::TableMeta;

/// The outputs of a job so far; [`Outputs::abandon`] deletes them.
#[derive(Default)]
pub(crate) struct Outputs {
    /// Finished, fsynced and opened, in the order written.
    pub(crate) done: Vec<(Arc<Table>, TableMeta)>,
    open: Option<(u64, TableBuilder)>,
}

impl Outputs {
    /// The table being filled, opening a new file first if none is.
    pub(crate) fn builder(&mut self, inner: &Inner) -> Result<&mut TableBuilder> {
        if self.open.is_none() {
            let number = inner.lock_versions().new_file_number();
            let path = inner.dir.join(table_name(number));
            let wrap = |f| inner.options.wrap_file(FileKind::Table, f);
            let b = TableBuilder::create_wrapped(
                &path,
                inner.options.zstd_level,
                inner.options.block_bytes,
                &wrap,
            )?;
            self.open = Some((number, b));
        }
        Ok(&mut self.open.as_mut().expect("opened above").1)
    }

    /// Whether the table being filled reached `table_bytes`.
    pub(crate) fn open_is_full(&self, inner: &Inner) -> bool {
        self.open
            .as_ref()
            .is_some_and(|(_, b)| b.estimated_bytes() >= inner.options.table_bytes)
    }

    /// Finishes the table being filled (fsyncs it and its directory entry)
    /// and opens it for reading; a failure deletes its file.
    pub(crate) fn finish_open(&mut self, inner: &Inner) -> Result<()> {
        let Some((number, b)) = self.open.take() else {
            return Ok(());
        };
        let path = b.path().to_path_buf();
        let r = b.finish().and_then(|info| {
            manifest::sync_dir(&inner.dir)?;
            let mut table = Table::open(&path, number, None, inner.block_cache.clone())?;
            table.set_deletions(info.deletions);
            let meta = table.meta();
            assert_eq!(
                meta.size_bytes, info.size_bytes,
                "read back what was written"
            );
            Ok((Arc::new(table), meta))
        });
        match r {
            Ok(out) => {
                self.done.push(out);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Deletes every output: none is named by the manifest.
    pub(crate) fn abandon(mut self) {
        if let Some((_, b)) = self.open.take() {
            let _ = std::fs::remove_file(b.path());
        }
        for (t, _) in &self.done {
            t.mark_obsolete();
        }
    }
}
