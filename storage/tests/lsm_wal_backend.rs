//! Choosing the WAL backend at open: `Auto` picks io_uring where it works
//! and falls back to `std::fs` where it does not, a forced but unavailable
//! io_uring fails the open with a hint, WALs written by one backend replay
//! on the other, and a real kernel error on an io_uring write (not an
//! injected one) reaches the caller as `Error::Io` naming the WAL.

use std::process::Command;

use strata_storage::{Db, Error, Options, WalBackend, WriteBatch, WriteOptions};

const CHILD_DIR_ENV: &str = "STRATA_WAL_BACKEND_FSIZE_DIR";
/// The child's file-size limit (`RLIMIT_FSIZE`); not a multiple of the
/// record size, so the write that reaches it is short.
const FSIZE_LIMIT_BYTES: u64 = 256 << 10;

fn synced_put(db: &Db, k: &[u8], v: &[u8]) -> Result<(), Error> {
    let mut b = WriteBatch::new();
    b.put(k, v);
    db.write(b, WriteOptions { sync: true })
}

#[test]
fn auto_uses_io_uring_where_it_works_and_falls_back_where_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    // The default is std::fs (measured faster, see wal.rs).
    let db = Db::open(dir.path(), Options::new()).unwrap();
    assert_eq!(db.wal_backend(), WalBackend::Std);
    drop(db);
    let auto = Options::new().wal_backend(WalBackend::Auto);
    let db = Db::open(dir.path(), auto.clone()).unwrap();
    // The tests need io_uring (see lsm_faults.rs), so Auto must find it.
    assert_eq!(db.wal_backend(), WalBackend::IoUring);
    synced_put(&db, b"a", b"1").unwrap();
    drop(db);
    let blocked = auto.io_uring_unavailable_for_tests(true);
    let db = Db::open(dir.path(), blocked.clone()).unwrap();
    assert_eq!(db.wal_backend(), WalBackend::Std);
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
    synced_put(&db, b"b", b"2").unwrap();
    drop(db);
    let db = Db::open(dir.path(), blocked.wal_backend(WalBackend::Std)).unwrap();
    assert_eq!(db.wal_backend(), WalBackend::Std);
    assert_eq!(db.get(b"b").unwrap(), Some(b"2".to_vec()));
}

#[test]
fn forced_io_uring_where_unavailable_fails_the_open_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    synced_put(&db, b"kept", b"v").unwrap();
    drop(db);
    let forced = Options::new()
        .wal_backend(WalBackend::IoUring)
        .io_uring_unavailable_for_tests(true);
    let err = Db::open(dir.path(), forced).unwrap_err();
    assert!(matches!(err, Error::IoUringUnavailable { .. }), "{err}");
    let msg = err.to_string();
    for needle in ["seccomp", "io_uring_disabled", "WalBackend::Std"] {
        assert!(msg.contains(needle), "no {needle:?} in: {msg}");
    }
    // The failed open released the lock and changed nothing.
    let db = Db::open(dir.path(), Options::new()).unwrap();
    assert_eq!(db.get(b"kept").unwrap(), Some(b"v".to_vec()));
}

/// Both backends write the same bytes: a WAL left unflushed by one is
/// recovered by the other, across several switches and WAL rotations.
#[test]
fn wals_written_by_one_backend_replay_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = 0u32;
    for round in 0..6 {
        let backend = if round % 2 == 0 {
            WalBackend::IoUring
        } else {
            WalBackend::Std
        };
        let opts = Options::new().wal_backend(backend).memtable_bytes(2 << 10);
        let db = Db::open(dir.path(), opts).unwrap();
        assert_eq!(db.wal_backend(), backend);
        for n in 0..written {
            let k = format!("k{n:05}");
            assert_eq!(db.get(k.as_bytes()).unwrap(), Some(vec![n as u8; 50]));
        }
        for _ in 0..100 {
            let k = format!("k{written:05}");
            synced_put(&db, k.as_bytes(), &[written as u8; 50]).unwrap();
            written += 1;
        }
        // Dropped, not flushed: the last memtable lives only in its WAL.
        drop(db);
    }
}

/// The child: a file-size limit makes the kernel fail an io_uring WAL
/// write with EFBIG (after a short write at the limit, which the backend
/// resubmits). The error must reach the writer as `Error::Io` on the WAL.
fn fsize_child(dir: &str) {
    // SAFETY: plain libc calls with valid arguments; ignoring SIGXFSZ
    // makes an over-limit write fail with EFBIG instead of killing us.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: FSIZE_LIMIT_BYTES,
            rlim_max: FSIZE_LIMIT_BYTES,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    // A memtable bigger than the limit: the WAL reaches it first.
    let opts = Options::new()
        .wal_backend(WalBackend::IoUring)
        .memtable_bytes(64 << 20);
    let db = Db::open(dir, opts).unwrap();
    let value = vec![7u8; 1000];
    let mut acked = 0u64;
    let err = loop {
        match synced_put(&db, &acked.to_le_bytes(), &value) {
            Ok(()) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 10_000, "the file-size limit never failed a write");
    };
    let Error::Io { path, source } = &err else {
        panic!("expected an I/O error, got {err}");
    };
    assert!(path.to_string_lossy().ends_with(".wal"), "{err}");
    assert_eq!(source.raw_os_error(), Some(libc::EFBIG), "{err}");
    assert!(matches!(
        synced_put(&db, b"after", b"v"),
        Err(Error::Poisoned)
    ));
    println!("ACKED {acked}");
}

#[test]
fn a_kernel_error_on_an_io_uring_write_names_the_wal() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        return fsize_child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_kernel_error_on_an_io_uring_write_names_the_wal",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ACKED "))
        .expect("child reports its acknowledged writes")
        .trim()
        .parse()
        .unwrap();
    assert!(acked > 100, "only {acked} writes before the limit");
    // The write at the limit was short: the kernel wrote up to the limit
    // and refused the rest, and the backend reported that refusal.
    let wal_bytes_max = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .max()
        .unwrap();
    assert_eq!(wal_bytes_max, FSIZE_LIMIT_BYTES);
    // Without the limit, every acknowledged write is recovered and the
    // torn record at the limit is cut away.
    let db = Db::open(dir.path(), Options::new()).unwrap();
    for n in 0..acked {
        assert_eq!(db.get(&n.to_le_bytes()).unwrap(), Some(vec![7u8; 1000]));
    }
    assert_eq!(db.scan(..).unwrap().count() as u64, acked);
}
