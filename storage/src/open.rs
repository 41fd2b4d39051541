//! Opening a database: load the manifest, replay the WALs it does not
//! cover into an L0 table, start a fresh WAL and manifest, delete files no
//! longer referenced, start the flush and compaction workers.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::compaction;
use crate::db::Db;
use crate::dir_lock::DirLock;
use crate::error::{Error, Result};
use crate::flush;
use crate::inner::{table_name, wal_name, wrapper, Inner, Levels, State, VersionSet, Writer};
use crate::manifest::{self, Manifest};
use crate::memtable::Memtable;
use crate::options::{Options, WalRecovery};
use crate::table::cache::BlockCache;
use crate::table::reader::Table;
use crate::version::{EditOp, Version, VersionEdit};
use crate::wal::{self, TornTail, Wal};

impl Db {
    /// Opens (or creates) the database in directory `path`, replaying its
    /// WALs in number order: a torn final record of the newest WAL is
    /// dropped (it was never acknowledged as synced); a torn final record
    /// of an older WAL, and any other damage, is [`Error::Corruption`]
    /// naming the file and offset, unless [`WalRecovery::BestEffort`].
    /// Fails with [`Error::Locked`] while another `Db` has the directory
    /// open.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        let dir = path.as_ref().to_path_buf();
        options.validate()?;
        if options.create_if_missing {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        // Before reading anything: another open `Db` may be changing it.
        let dir_lock = DirLock::acquire(&dir)?;
        // Before any WAL, table or manifest is written: a forced but
        // unavailable backend fails the open and leaves the files alone.
        let wal_backend =
            wal::resolve_backend(options.wal_backend, options.io_uring_unavailable_for_tests)?;
        let (mut version, old_manifest) = match manifest::load(&dir)? {
            Some((v, n)) => (v, Some(n)),
            None => (Version::default(), None),
        };
        let block_cache = BlockCache::new(options.block_cache_bytes);
        let mut tables = open_levels(&dir, &version, &block_cache)?;
        let mut wals: Vec<u64> = Vec::new();
        let mut ssts: Vec<u64> = Vec::new();
        let mut manifests: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let name = entry.map_err(|e| Error::io(&dir, e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".wal").and_then(|n| n.parse().ok()) {
                wals.push(n);
            } else if let Some(n) = name.strip_suffix(".sst").and_then(|n| n.parse().ok()) {
                ssts.push(n);
            } else if let Some(n) = name.strip_prefix("MANIFEST-").and_then(|n| n.parse().ok()) {
                manifests.push(n);
            }
        }
        wals.sort_unstable();
        // File numbers are handed out before the manifest records the
        // counter (a WAL at freeze, a table at flush), so a crash can leave
        // files numbered past it: never reuse their numbers.
        if let Some(&max) = wals.iter().chain(&ssts).chain(&manifests).max() {
            version.next_file_number = version.next_file_number.max(max.saturating_add(1));
        }
        let best_effort = options.wal_recovery == WalRecovery::BestEffort;
        let mut mem = Memtable::new();
        let mut last_seq = version.last_seq;
        // Several WALs when the process stopped with frozen memtables not
        // yet flushed; they are numbered in write order. Only the newest
        // was being appended to: each older one was fsynced whole before
        // the next was created (`Inner::freeze`), so a torn tail there
        // means bytes the disk lost after an fsync, and writes after them
        // (in newer WALs) survived. Cutting it off would make recovery
        // silently skip writes from the middle of the history.
        let live: Vec<u64> = wals
            .iter()
            .copied()
            .filter(|&n| n >= version.log_number)
            .collect();
        for (i, &n) in live.iter().enumerate() {
            let newest = i + 1 == live.len();
            let torn = if newest || best_effort {
                TornTail::Truncate
            } else {
                TornTail::Reject
            };
            for (first_seq, batch) in wal::replay(&dir.join(wal_name(n)), best_effort, torn)? {
                for (i, (key, value)) in batch.ops.into_iter().enumerate() {
                    let seq = first_seq + i as u64;
                    mem.insert(key, seq, value);
                    last_seq = last_seq.max(seq);
                }
            }
        }
        // Recovered writes go straight to an L0 table, so the engine always
        // starts with an empty memtable and a fresh WAL.
        if !mem.is_empty() {
            let number = version.next_file_number;
            version.next_file_number += 1;
            // No reader exists yet: only each key's newest version is read.
            let (t, meta, _dropped) =
                flush::write_table(&dir, number, &mem, &options, block_cache.clone(), u64::MAX)?;
            let op = EditOp::AddTable {
                level: 0,
                table: meta,
            };
            version.apply(&dir, 0, &VersionEdit { ops: vec![op] })?;
            tables[0].insert(0, t);
        }
        version.last_seq = last_seq;
        let wal_number = version.next_file_number;
        let manifest_number = wal_number + 1;
        version.next_file_number += 2;
        version.log_number = wal_number;
        let wal = Wal::create(
            &dir.join(wal_name(wal_number)),
            wal_backend,
            &wrapper(&options),
        )?;
        let manifest = Manifest::create(&dir, manifest_number, &version, &options)?;
        // Files no longer referenced: replayed WALs, the old manifest and
        // any left by an open that failed before switching `CURRENT`,
        // tables left by a flush that crashed before its manifest edit.
        for n in wals.into_iter().filter(|&n| n < wal_number) {
            let _ = std::fs::remove_file(dir.join(wal_name(n)));
        }
        for n in manifests.into_iter().chain(old_manifest) {
            if n != manifest_number {
                let _ = std::fs::remove_file(dir.join(manifest::manifest_name(n)));
            }
        }
        for n in ssts {
            if !version.levels.iter().flatten().any(|t| t.number == n) {
                let _ = std::fs::remove_file(dir.join(table_name(n)));
            }
        }
        let inner = Arc::new(Inner::new(
            dir,
            options,
            wal_backend,
            Writer {
                slowdown_debt_ns: 0,
                wal: Arc::new(wal),
                next_seq: last_seq + 1,
            },
            VersionSet { manifest, version },
            State {
                mem: Memtable::new(),
                imm: Vec::new(),
                tables: Arc::new(tables),
            },
            block_cache,
        ));
        let worker = flush::spawn(Arc::clone(&inner))?;
        let compactor = match compaction::spawn(Arc::clone(&inner)) {
            Ok(c) => c,
            Err(e) => {
                flush::stop(&inner, Some(worker));
                return Err(e);
            }
        };
        Ok(Db {
            inner,
            worker: Mutex::new(Some(worker)),
            compactor: Mutex::new(Some(compactor)),
            manual: Mutex::new(()),
            dir_lock: Mutex::new(Some(dir_lock)),
        })
    }
}

/// Opens every table of `version`, per level: L0 as listed (newest
/// first), deeper levels sorted by smallest key and checked to be disjoint
/// (reads rely on it), else [`Error::Corruption`] of the manifest.
fn open_levels(dir: &Path, version: &Version, cache: &Option<Arc<BlockCache>>) -> Result<Levels> {
    let mut levels: Levels = Vec::with_capacity(version.levels.len());
    // One file in two levels would be deleted by a compaction of one
    // while the other still names it.
    let mut numbers: Vec<u64> = version.levels.iter().flatten().map(|m| m.number).collect();
    numbers.sort_unstable();
    if let Some(w) = numbers.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::corruption(
            dir.join(crate::manifest::CURRENT),
            0,
            format!("table {} is live in two levels", w[0]),
        ));
    }
    for (level, metas) in version.levels.iter().enumerate() {
        let mut tables = Vec::with_capacity(metas.len());
        for meta in metas {
            let mut table = Table::open(
                &dir.join(table_name(meta.number)),
                meta.number,
                meta.keys.as_ref(),
                cache.clone(),
            )?;
            table.set_deletions(meta.deletions);
            tables.push(Arc::new(table));
        }
        if level > 0 {
            tables.sort_by(|a: &Arc<Table>, b| a.smallest().cmp(b.smallest()));
            if let Some(w) = tables
                .windows(2)
                .find(|w| w[0].largest() >= w[1].smallest())
            {
                return Err(Error::corruption(
                    dir.join(crate::manifest::CURRENT),
                    0,
                    format!(
                        "level {level}: tables {} and {} overlap",
                        w[0].number(),
                        w[1].number()
                    ),
                ));
            }
        }
        levels.push(tables);
    }
    Ok(levels)
}
