//! `strata inspect`: what a stopped node's data directory holds — files on
//! disk by kind, and the logical bytes of each record namespace, per
//! finalized transaction (chain growth). Scans the whole store from one
//! snapshot, so it is an offline tool: the node must be stopped (the data
//! directory is locked while it runs).

use std::path::Path;
use std::sync::Arc;

use strata_consensus::db_chain::ChainReader;
use strata_storage::{Db, Options};

/// Bytes and count of the files in `dir` whose names end in `suffix`.
fn files(dir: &Path, suffix: &str) -> (u64, usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(bytes, n), m| (bytes + m.len(), n + 1))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Prints the report for the node data directory `data_dir`; with
/// `compact`, also compacts the whole store (every level into the deepest,
/// dropping what no snapshot reads) and reports the table bytes before and
/// after: what the store holds that compaction had not yet reclaimed.
///
/// # Errors
/// When the store cannot be opened (a running node holds its lock) or read.
pub fn run(data_dir: &Path, compact: bool) -> Result<String, String> {
    let dir = data_dir.join("db");
    if !dir.is_dir() {
        return Err(format!(
            "{} holds no database (expected {}): give the node's --data-dir",
            data_dir.display(),
            dir.display()
        ));
    }
    let (sst, sst_n) = files(&dir, ".sst");
    let (wal, wal_n) = files(&dir, ".wal");
    let db = Db::open(&dir, Options::new()).map_err(|e| {
        format!(
            "cannot open {} (is the node still running?): {e}",
            dir.display()
        )
    })?;
    let db = Arc::new(db);
    let levels = |db: &Db| -> String {
        db.stats()
            .levels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.files > 0)
            .map(|(i, l)| format!("L{i} {} ({})", mib(l.bytes), l.files))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let levels_before = levels(&db);
    let tables_before = tables_by_namespace(&db);
    let compacted = if compact {
        let before = db.stats().levels.iter().map(|l| l.bytes).sum::<u64>();
        db.compact_all()
            .map_err(|e| format!("cannot compact the store: {e}"))?;
        let after = db.stats().levels.iter().map(|l| l.bytes).sum::<u64>();
        Some((before, after))
    } else {
        None
    };
    let usage = ChainReader::new(Arc::clone(&db))
        .usage()
        .map_err(|e| format!("cannot read the store: {e}"))?;
    let txs = usage
        .iter()
        .find(|u| u.namespace == 'n')
        .map_or(0, |u| u.entries);
    let blocks = usage
        .iter()
        .find(|u| u.namespace == 'b')
        .map_or(0, |u| u.entries);
    let mut out = format!(
        "{}: {blocks} blocks, {txs} transactions indexed\n\
         files: tables {} ({sst_n}), WAL {} ({wal_n})\n\
         {:<3} {:<24} {:>12} {:>14} {:>10}\n",
        data_dir.display(),
        mib(sst),
        mib(wal),
        "ns",
        "holds",
        "entries",
        "key+value",
        "per tx",
    );
    let mut total = 0;
    for u in usage.iter().filter(|u| u.entries > 0) {
        let bytes = u.key_bytes + u.value_bytes;
        total += bytes;
        let per_tx = if txs == 0 {
            "-".to_string()
        } else {
            format!("{:.0} B", bytes as f64 / txs as f64)
        };
        out.push_str(&format!(
            "{:<3} {:<24} {:>12} {:>14} {:>10}\n",
            u.namespace,
            u.what,
            u.entries,
            mib(bytes),
            per_tx
        ));
    }
    out.push_str(&format!(
        "logical total {} (live records, uncompressed); on disk {}\nlevels: {levels_before}",
        mib(total),
        mib(sst + wal)
    ));
    out.push_str(&tables_before);
    if let Some((before, after)) = compacted {
        out.push_str(&format!(
            "\ncompacted: tables {} -> {} (levels now: {})",
            mib(before),
            mib(after),
            levels(&db)
        ));
    }
    Ok(out)
}

/// Tables grouped by level and by the namespaces of their first and last
/// keys (`n` for a table of `n` records only, `n-s` for one spanning
/// from `n` to `s`): which records hold each level's bytes and
/// tombstones, from the manifest alone (no table is read).
fn tables_by_namespace(db: &Db) -> String {
    let mut groups: std::collections::BTreeMap<(usize, String), (usize, u64, u64, u64)> =
        std::collections::BTreeMap::new();
    for t in db.tables() {
        let ns = |k: &[u8]| k.first().map_or('?', |&b| b as char);
        let (a, b) = (ns(&t.smallest), ns(&t.largest));
        let name = if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        };
        let g = groups.entry((t.level, name)).or_default();
        g.0 += 1;
        g.1 += t.bytes;
        g.2 += t.entries;
        g.3 += t.deletions;
    }
    let mut out = format!(
        "\ntables by level and namespace:\n{:<3} {:<5} {:>6} {:>12} {:>10} {:>10}",
        "lvl", "ns", "tables", "bytes", "entries", "tombstones"
    );
    for ((level, ns), (n, bytes, entries, deletions)) in groups {
        out.push_str(&format!(
            "\nL{level:<2} {ns:<5} {n:>6} {:>12} {entries:>10} {deletions:>10}",
            mib(bytes)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_consensus::db_chain::DbChain;
    use strata_consensus::genesis::Genesis;

    #[test]
    fn reports_namespaces_levels_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Arc::new(Db::open(dir.path().join("db"), Options::new()).unwrap());
            DbChain::open(Arc::clone(&db), &Genesis::devnet(2)).unwrap();
            // An overwritten key: a version compaction drops.
            db.put(b"zz", b"old").unwrap();
            db.put(b"zz", b"new").unwrap();
            db.flush().unwrap();
            db.close().unwrap();
        }
        let out = run(dir.path(), false).unwrap();
        assert!(out.contains("state entries"), "{out}");
        assert!(out.contains("levels: "), "{out}");
        assert!(!out.contains("compacted"), "{out}");
        // The flushed table (one 'z' record) and the ingested genesis
        // (from the 'g' genesis hash to the 't' trie pages).
        assert!(out.lines().any(|l| l.starts_with("L0  z ")), "{out}");
        assert!(out.lines().any(|l| l.starts_with("L6  g-t ")), "{out}");
        let out = run(dir.path(), true).unwrap();
        assert!(out.contains("compacted: tables "), "{out}");
        // Opened while the store is open elsewhere: a clear error.
        let _held = Db::open(dir.path().join("db"), Options::new()).unwrap();
        let err = run(dir.path(), false).unwrap_err();
        assert!(err.contains("is the node still running?"), "{err}");
        assert!(run(&dir.path().join("nowhere"), false)
            .unwrap_err()
            .contains("holds no database"));
    }
}
