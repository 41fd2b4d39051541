//! Immutable memtables and the background flush worker.
//!
//! When the memtable reaches `memtable_bytes`, the next write freezes it:
//! its WAL is fsynced whole (so that no later write, in the next WAL, can
//! survive a power loss that an earlier one does not), then it moves (with
//! that WAL file) to the front of the immutable list, and writers continue
//! into a fresh memtable and a fresh WAL. One worker thread writes the
//! oldest immutable to an L0 table, records it in the manifest (with the
//! WAL number the next memtable writes to as the new log number), then in
//! one step under the state lock installs the table and drops the
//! immutable, so a reader always finds each write in exactly one place.
//! Only then is the frozen WAL deleted.
//!
//! At most `immutables_max` memtables wait for the worker; a write that
//! needs to freeze one more waits (backpressure, counted as a stall)
//! rather than letting memory grow. A failed flush is sticky: the worker
//! stops, and every later write or flush returns [`Error::Background`].

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::fault::FileKind;
use crate::inner::{table_name, wal_name, wrapper, Immutable, Inner, Writer};
use crate::limits::SLOWDOWN_SLEEP_US_MIN;
use crate::manifest;
use crate::memtable::Memtable;
use crate::options::Options;
use crate::table::builder::TableBuilder;
use crate::table::cache::BlockCache;
use crate::table::reader::Table;
use crate::version::{EditOp, TableMeta, VersionEdit};
use crate::wal::Wal;

/// Writes `mem` to table file `number` in `dir` (through the file
/// wrapper of `options`), fsyncs it and its directory entry, and opens it
/// for reading. Returns the table and how many versions were left out.
///
/// Versions no reader can see are left out, by the rule compaction uses:
/// of a key's versions at or below `oldest_read_seq` (the oldest live
/// snapshot, else the visible sequence number, taken before the call) only
/// the newest is written — it may be a tombstone, which must still shadow
/// older tables. A reader that starts later reads at or above that
/// sequence number; one that started earlier holds the memtable itself,
/// which keeps every version until the table is installed. A key
/// rewritten every commit (the node's trie pages and busy accounts) is
/// then written once per flush instead of once per commit.
pub(crate) fn write_table(
    dir: &Path,
    number: u64,
    mem: &Memtable,
    options: &Options,
    cache: Option<Arc<BlockCache>>,
    oldest_read_seq: u64,
) -> Result<(Arc<Table>, TableMeta, u64)> {
    let path = dir.join(table_name(number));
    let wrap = |f| options.wrap_file(FileKind::Table, f);
    let mut b =
        TableBuilder::create_wrapped(&path, options.zstd_level, options.block_bytes, &wrap)?;
    let mut dropped = 0u64;
    // The key whose versions (newest first) are being written, and
    // whether its newest version at or below `oldest_read_seq` is out.
    let mut current: Option<&[u8]> = None;
    let mut visible_written = false;
    for (key, seq, value) in mem.iter() {
        if current != Some(key) {
            current = Some(key);
            visible_written = false;
        }
        if seq <= oldest_read_seq {
            if visible_written {
                dropped += 1;
                continue;
            }
            visible_written = true;
        }
        b.add(key, seq, value)?;
    }
    let info = b.finish()?;
    manifest::sync_dir(dir)?;
    let mut table = Table::open(&path, number, None, cache)?;
    table.set_deletions(info.deletions);
    let meta = table.meta();
    assert_eq!(
        meta.size_bytes, info.size_bytes,
        "the table read back is the one written"
    );
    assert_eq!(
        meta.max_seq, info.max_seq,
        "the table read back is the one written"
    );
    Ok((Arc::new(table), meta, dropped))
}

impl Inner {
    /// Tables in L0 now.
    fn l0_files(&self) -> usize {
        self.read_state().tables[0].len()
    }

    /// Delays a write of `bytes` while L0 is at `l0_slowdown_writes`: the
    /// write owes `bytes / slowdown_bytes_per_s` seconds, and the writer
    /// sleeps off what is owed once it reaches `SLOWDOWN_SLEEP_US_MIN`.
    /// Sleeping with the writer lock held is the point: every writer is
    /// slowed, so the engine as a whole writes at about the set rate.
    pub(crate) fn slow_down(&self, w: &mut Writer, bytes: usize) {
        let owed_ns = (bytes as u128 * 1_000_000_000
            / u128::from(self.options.slowdown_bytes_per_s))
        .min(u128::from(u64::MAX)) as u64;
        w.slowdown_debt_ns = w.slowdown_debt_ns.saturating_add(owed_ns);
        self.counters.slowdowns.fetch_add(1, Ordering::Relaxed);
        if w.slowdown_debt_ns >= SLOWDOWN_SLEEP_US_MIN * 1000 {
            let start = std::time::Instant::now();
            std::thread::sleep(std::time::Duration::from_nanos(w.slowdown_debt_ns));
            let slept = start.elapsed();
            w.slowdown_debt_ns = 0;
            self.counters
                .slowdown_us
                .fetch_add(slept.as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// Freezes the memtable (which must not be empty) and starts a new WAL,
    /// first waiting while `immutables_max` are pending or L0 has
    /// `l0_stop_writes` tables (compaction debt stays bounded), then
    /// fsyncing the old WAL whole (a failure poisons the engine). Returns the
    /// frozen memtable's id. Called with the writer lock held, so no other
    /// write can slip in between the wait and the freeze. Both workers
    /// notify `done` under `bg` after installing, so no wakeup is missed.
    pub(crate) fn freeze(&self, w: &mut Writer) -> Result<u64> {
        let mut bg = self.lock_bg();
        let mut stalled = false;
        while bg.pending >= self.options.immutables_max
            || self.l0_files() >= self.options.l0_stop_writes
        {
            if let Some(e) = &bg.error {
                return Err(Error::Background(Arc::clone(e)));
            }
            if !stalled {
                stalled = true;
                self.stalls.fetch_add(1, Ordering::Relaxed);
            }
            bg = bg.wait(&self.done);
        }
        drop(bg);
        // The old WAL is fsynced whole before the new one exists, so no
        // byte can reach the new WAL while one of the old is not durable:
        // otherwise a power loss could keep a later (even synced) write in
        // the new WAL and lose an earlier one in the old, and recovery
        // would not be a prefix of the writes. It also lets recovery treat
        // a torn tail in any WAL but the newest as corruption. The writer
        // lock is held, so nothing is appended meanwhile and `sync_all`
        // covers every byte of the old WAL. A failure poisons the engine
        // before any new WAL is created: the old WAL stays the newest.
        self.poison(w.wal.sync_all())?;
        assert!(
            w.wal.is_synced_whole(),
            "nothing is appended to a WAL while its writer holds the lock"
        );
        let wal_number = self.lock_versions().new_file_number();
        let path = self.dir.join(wal_name(wal_number));
        let new_wal = self.poison(Wal::create(
            &path,
            self.wal_backend,
            &wrapper(&self.options),
        ))?;
        // The new WAL's directory entry must be durable before any synced
        // write in it is acknowledged.
        self.poison(manifest::sync_dir(&self.dir))?;
        let old_wal = std::mem::replace(&mut w.wal, Arc::new(new_wal));
        let mut bg = self.lock_bg();
        {
            let mut st = self.write_state();
            let mem = std::mem::take(&mut st.mem);
            assert!(!mem.is_empty(), "only a non-empty memtable is frozen");
            st.imm.insert(
                0,
                Arc::new(Immutable {
                    mem,
                    wal: old_wal,
                    next_log_number: wal_number,
                    last_seq: w.next_seq - 1,
                }),
            );
            assert_eq!(st.imm.len(), bg.pending + 1, "imm list mirrors pending");
        }
        bg.pending += 1;
        bg.frozen += 1;
        self.work.notify_one();
        Ok(bg.frozen)
    }

    /// Waits until memtable `id` and all frozen before it are in tables.
    pub(crate) fn wait_flushed(&self, id: u64) -> Result<()> {
        let mut bg = self.lock_bg();
        loop {
            if bg.flushed >= id {
                return Ok(());
            }
            if let Some(e) = &bg.error {
                return Err(Error::Background(Arc::clone(e)));
            }
            bg = bg.wait(&self.done);
        }
    }

    /// Writes `imm` to a table and records it in the manifest. Holds no
    /// lock while writing the table, so reads and writes continue.
    fn flush_one(&self, imm: &Immutable) -> Result<Arc<Table>> {
        let number = self.lock_versions().new_file_number();
        let (table, meta, dropped) = write_table(
            &self.dir,
            number,
            &imm.mem,
            &self.options,
            self.block_cache.clone(),
            self.oldest_read_seq(),
        )?;
        self.counters
            .flush_bytes
            .fetch_add(meta.size_bytes, Ordering::Relaxed);
        self.counters
            .flush_versions_dropped
            .fetch_add(dropped, Ordering::Relaxed);
        let mut vs = self.lock_versions();
        let edit = VersionEdit {
            ops: vec![
                EditOp::AddTable {
                    level: 0,
                    table: meta,
                },
                EditOp::LastSeq(imm.last_seq),
                EditOp::LogNumber(imm.next_log_number),
                EditOp::NextFileNumber(vs.version.next_file_number),
            ],
        };
        vs.manifest.append(&edit)?;
        vs.version.apply(&self.dir, 0, &edit)?;
        Ok(table)
    }

    /// The worker's loop: flush the oldest immutable, install, repeat;
    /// exits when stopped with nothing pending, or after a failure.
    fn run_worker(&self) {
        loop {
            let imm = {
                let mut bg = self.lock_bg();
                loop {
                    if bg.error.is_some() {
                        return;
                    }
                    if bg.pending > 0 {
                        break;
                    }
                    if bg.stop {
                        return;
                    }
                    bg = bg.wait(&self.work);
                }
                let st = self.read_state();
                match st.imm.last() {
                    Some(imm) => Arc::clone(imm),
                    None => unreachable!("pending > 0 mirrors a non-empty imm list"),
                }
            };
            let result = self.flush_one(&imm);
            if result.is_ok() {
                // Its writes are in a table the manifest names. Deleted
                // before `flush()` callers are woken, so they find it gone;
                // a failed delete only leaves a file the next open deletes.
                let _ = std::fs::remove_file(imm.wal.path());
            }
            let mut bg = self.lock_bg();
            match result {
                Ok(table) => {
                    {
                        let mut st = self.write_state();
                        let oldest = st.imm.pop();
                        assert!(
                            oldest.is_some_and(|o| Arc::ptr_eq(&o, &imm)),
                            "only the worker removes immutables, oldest first"
                        );
                        let mut levels = (*st.tables).clone();
                        levels[0].insert(0, table);
                        st.tables = Arc::new(levels);
                    }
                    bg.pending -= 1;
                    bg.flushed += 1;
                    self.done.notify_all();
                    drop(bg);
                    self.notify_compaction();
                }
                Err(e) => {
                    bg.error = Some(Arc::new(e));
                    self.done.notify_all();
                    return;
                }
            }
        }
    }
}

/// Records a panic of the worker as its sticky error and wakes every
/// waiter, so a panic cannot leave writers waiting forever.
struct PanicGuard<'a>(&'a Inner);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut bg = self.0.lock_bg_after_panic();
            bg.error
                .get_or_insert_with(|| Arc::new(Error::WorkerPanicked));
            self.0.done.notify_all();
        }
    }
}

/// Starts the flush worker of `inner`.
pub(crate) fn spawn(inner: Arc<Inner>) -> Result<JoinHandle<()>> {
    let dir = inner.dir.clone();
    std::thread::Builder::new()
        .name("strata-flush".into())
        .spawn(move || {
            let _guard = PanicGuard(&inner);
            inner.run_worker();
        })
        .map_err(|e| Error::io(dir, e))
}

/// Stops the worker after it drains the pending immutables, and waits for
/// it. A panicked worker becomes the sticky error.
pub(crate) fn stop(inner: &Inner, worker: Option<JoinHandle<()>>) {
    inner.lock_bg().stop = true;
    inner.work.notify_all();
    if let Some(handle) = worker {
        if handle.join().is_err() {
            let mut bg = inner.lock_bg();
            bg.error
                .get_or_insert_with(|| Arc::new(Error::WorkerPanicked));
        }
    }
}
