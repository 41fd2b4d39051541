//! The directory lock: while a `Db` is open, a second `Db::open` of the
//! same directory fails with `Error::Locked`, from this process or from
//! another one (this test binary re-executed with `CHILD_DIR_ENV` set);
//! `close` or drop releases it.

use std::process::Command;

use strata_storage::{Db, Error, Options};

const CHILD_DIR_ENV: &str = "STRATA_LSM_LOCK_DIR";

/// Opens the directory in a child process; returns what the child saw.
fn open_in_child(dir: &std::path::Path) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["second_process_cannot_open_a_locked_dir", "--exact"])
        .args(["--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR_ENV, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for result in ["CHILD LOCKED", "CHILD OPENED"] {
        if stdout.contains(result) {
            return result.to_string();
        }
    }
    panic!(
        "child reported nothing: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn second_open_in_the_same_process_is_refused_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    db.put(b"k", b"v").unwrap();
    let err = Db::open(dir.path(), Options::new()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("LOCK"), "{err}");
    // The refused open changed nothing: the first Db still works.
    db.put(b"k2", b"v2").unwrap();
    db.close().unwrap();
    // Closed but not dropped: the lock is already released.
    let db2 = Db::open(dir.path(), Options::new()).unwrap();
    assert_eq!(db2.get(b"k2").unwrap(), Some(b"v2".to_vec()));
    drop(db);
    assert!(matches!(
        Db::open(dir.path(), Options::new()),
        Err(Error::Locked { .. })
    ));
    drop(db2);
    Db::open(dir.path(), Options::new()).unwrap();
}

#[test]
fn second_process_cannot_open_a_locked_dir() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        match Db::open(&dir, Options::new()) {
            Err(Error::Locked { .. }) => println!("CHILD LOCKED"),
            Ok(_) => println!("CHILD OPENED"),
            Err(e) => println!("CHILD ERROR {e}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::new()).unwrap();
    assert_eq!(open_in_child(dir.path()), "CHILD LOCKED");
    drop(db);
    assert_eq!(open_in_child(dir.path()), "CHILD OPENED");
}
