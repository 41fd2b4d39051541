//! The io_uring WAL backend: a [`LogFile`] whose appends and fsyncs are
//! submitted to a small io_uring owned by the WAL file. The only `unsafe`
//! of the WAL lives here.
//!
//! Two rings per file, each behind its own mutex: one for appends, one for
//! fsyncs. Group commit lets writers append while a leader's fsync runs
//! (see [`crate::wal`]); one ring under one mutex would serialize them.
//!
//! Each call submits one operation and waits for its completion before it
//! returns: the WAL cannot acknowledge a write before it knows the result,
//! so there is nothing to overlap within one call, and a caller never
//! returns with an operation in flight.
//!
//! Memory-safety rule, which each `// SAFETY:` below relies on: a write
//! entry points into `AppendRing::buf`, a buffer owned by the ring state
//! (the caller's slice is copied into it, one `memcpy` per append), which
//! is not touched, moved or freed until the write's completion has been
//! reaped. If waiting fails in a way that may leave the write in flight
//! (`io_uring_enter` failing with something other than the retried
//! `EINTR`, `EAGAIN` and `EBUSY`, or more than
//! [`WAIT_ATTEMPTS_MAX`] wake-ups without a completion), the ring is
//! marked broken: it refuses every later operation and its buffer is
//! leaked at drop instead of freed. The caller gets an error and poisons
//! the database, as for any failed WAL write.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

use io_uring::register::Probe;
use io_uring::{opcode, types, IoUring};

use crate::limits::{WAL_RING_BUFFER_BYTES_KEPT, WAL_RING_ENTRIES, WAL_WRITE_BYTES_MAX};
use crate::wal::LogFile;

/// Wake-ups without our completion before a wait gives up and the ring
/// is marked broken. A blocking wait returns early only on a signal or a
/// transient kernel shortage, so reaching this means something is wrong.
const WAIT_ATTEMPTS_MAX: u32 = 1000;

const WRITE_USER_DATA: u64 = 1;
const FSYNC_USER_DATA: u64 = 2;

/// Sets up a ring and checks that the kernel supports the two operations
/// the WAL submits (`IORING_OP_WRITE` needs Linux 5.6). An error here is
/// what makes [`crate::WalBackend::Auto`] fall back to `std::fs`.
pub(crate) fn probe() -> io::Result<()> {
    let ring = IoUring::new(WAL_RING_ENTRIES)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::Write::CODE, "IORING_OP_WRITE"),
        (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the kernel's io_uring does not support {name}"),
            ));
        }
    }
    Ok(())
}

/// The append side: the ring, the buffer its write entries point into,
/// and the file offset of the next append.
struct AppendRing {
    ring: IoUring,
    buf: Vec<u8>,
    offset_bytes: u64,
    /// A write may still be in flight: refuse everything, leak `buf`.
    broken: bool,
}

impl Drop for AppendRing {
    fn drop(&mut self) {
        if self.broken {
            // The kernel may still read from `buf` (module docs).
            std::mem::forget(std::mem::take(&mut self.buf));
        }
    }
}

/// The fsync side. Fsync entries carry no pointers, so a broken sync ring
/// has nothing to leak; it only refuses later fsyncs.
struct SyncRing {
    ring: IoUring,
    broken: bool,
}

/// A WAL file written through io_uring.
pub(crate) struct UringFile {
    file: File,
    append: Mutex<AppendRing>,
    sync: Mutex<SyncRing>,
}

impl fmt::Debug for UringFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringFile")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> io::Result<MutexGuard<'_, T>> {
    // A panic while holding the lock may have left an operation in
    // flight; treat the ring as unusable rather than panicking again.
    m.lock()
        .map_err(|_| io::Error::other("io_uring WAL ring poisoned by an earlier panic"))
}

fn broken() -> io::Error {
    io::Error::other("io_uring WAL ring unusable after an earlier failed wait")
}

/// Submits what is queued and waits for the completion tagged
/// `user_data`, returning its result. An `Err` means the operation may
/// still be in flight: the caller must mark its ring broken.
fn submit_and_reap(ring: &mut IoUring, user_data: u64) -> io::Result<i32> {
    for _ in 0..WAIT_ATTEMPTS_MAX {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            // Interrupted, or the kernel was briefly short of resources:
            // the entry is still queued or in flight, so wait again.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        if let Some(cqe) = ring.completion().next() {
            if cqe.user_data() != user_data {
                return Err(io::Error::other(format!(
                    "io_uring completion for operation {} while waiting for {user_data}",
                    cqe.user_data()
                )));
            }
            return Ok(cqe.result());
        }
    }
    Err(io::Error::other(format!(
        "no io_uring completion after {WAIT_ATTEMPTS_MAX} waits"
    )))
}

/// Maps the result of a write completion to bytes written. Zero bytes is
/// an error (as `write_all` treats it), so the append loop always ends.
fn write_result(result: i32, offset_bytes: u64) -> io::Result<usize> {
    match usize::try_from(result) {
        Err(_) => Err(io::Error::from_raw_os_error(-result)),
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("io_uring write at byte {offset_bytes} wrote nothing"),
        )),
        Ok(n) => Ok(n),
    }
}

/// Maps the result of an fsync completion.
fn sync_result(result: i32) -> io::Result<()> {
    if result < 0 {
        return Err(io::Error::from_raw_os_error(-result));
    }
    Ok(())
}

impl AppendRing {
    /// Writes all of `self.buf` at `self.offset_bytes`, resubmitting the
    /// rest after a short write (as `write_all` does for `std::fs`).
    fn write_buf(&mut self, fd: types::Fd) -> io::Result<()> {
        let mut done = 0usize;
        while done < self.buf.len() {
            let len = (self.buf.len() - done).min(WAL_WRITE_BYTES_MAX);
            let len = u32::try_from(len).expect("WAL_WRITE_BYTES_MAX fits a u32");
            let entry = opcode::Write::new(fd, self.buf[done..].as_ptr(), len)
                .offset(self.offset_bytes)
                .build()
                .user_data(WRITE_USER_DATA);
            // SAFETY: the entry points at `self.buf[done..done + len]`,
            // which `self` owns. `self.buf` is not touched until
            // `submit_and_reap` below has reaped this write's completion;
            // if it fails instead, `self.broken` is set and `Drop` leaks
            // the buffer, so the kernel never reads freed memory. The fd
            // is the `UringFile`'s, open for its whole life (and the
            // kernel holds its own reference while the write runs).
            let pushed = unsafe { self.ring.submission().push(&entry) };
            // At most one entry is ever queued, so the queue has room; if
            // not, nothing was queued and nothing is in flight.
            pushed.map_err(|_| io::Error::other("io_uring submission queue full"))?;
            let result = match submit_and_reap(&mut self.ring, WRITE_USER_DATA) {
                Ok(r) => r,
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            };
            let n = write_result(result, self.offset_bytes)?;
            done += n;
            self.offset_bytes += n as u64;
        }
        Ok(())
    }
}

impl UringFile {
    /// Wraps `file`, whose next append goes at its current length, with
    /// its own append and fsync rings.
    pub(crate) fn new(file: File) -> io::Result<UringFile> {
        let offset_bytes = file.metadata()?.len();
        Ok(UringFile {
            append: Mutex::new(AppendRing {
                ring: IoUring::new(WAL_RING_ENTRIES)?,
                buf: Vec::new(),
                offset_bytes,
                broken: false,
            }),
            sync: Mutex::new(SyncRing {
                ring: IoUring::new(WAL_RING_ENTRIES)?,
                broken: false,
            }),
            file,
        })
    }
}

impl LogFile for UringFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let mut st = lock(&self.append)?;
        if st.broken {
            return Err(broken());
        }
        st.buf.clear();
        st.buf.extend_from_slice(buf);
        let result = st.write_buf(types::Fd(self.file.as_raw_fd()));
        // A big batch must not pin its buffer for the life of the WAL; a
        // broken ring keeps it (the kernel may still read it).
        if !st.broken && st.buf.capacity() > WAL_RING_BUFFER_BYTES_KEPT {
            st.buf = Vec::new();
        }
        result
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = lock(&self.sync)?;
        if st.broken {
            return Err(broken());
        }
        let entry = opcode::Fsync::new(types::Fd(self.file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(FSYNC_USER_DATA);
        // SAFETY: an fsync entry holds no pointers into our memory, only
        // the fd, which stays open for the life of `self` (and the kernel
        // holds its own reference while the fsync runs).
        let pushed = unsafe { st.ring.submission().push(&entry) };
        pushed.map_err(|_| io::Error::other("io_uring submission queue full"))?;
        match submit_and_reap(&mut st.ring, FSYNC_USER_DATA) {
            Ok(result) => sync_result(result),
            Err(e) => {
                st.broken = true;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::sync::Arc;

    #[test]
    fn appends_land_at_the_end_and_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.wal");
        std::fs::write(&path, b"old").unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let f = UringFile::new(file).unwrap();
        f.append(b"-one").unwrap();
        f.sync().unwrap();
        // Bigger than the kept buffer: freed after the append.
        let big = vec![7u8; WAL_RING_BUFFER_BYTES_KEPT + 1];
        f.append(&big).unwrap();
        f.append(b"-two").unwrap();
        f.sync().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(&got[..7], b"old-one");
        assert_eq!(&got[7..7 + big.len()], &big[..]);
        assert_eq!(&got[7 + big.len()..], b"-two");
    }

    #[test]
    fn concurrent_appends_and_syncs_do_not_interleave_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.wal");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .unwrap();
        let f = Arc::new(UringFile::new(file).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let f = Arc::clone(&f);
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        f.append(&[t; 100]).unwrap();
                        f.sync().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 4 * 50 * 100);
        for chunk in got.chunks(100) {
            assert!(chunk.iter().all(|&b| b == chunk[0]), "torn append");
        }
    }

    /// A negative completion result is the kernel's errno, as `std::fs`
    /// would report it: here ENOSPC from `/dev/full`.
    #[test]
    fn a_failed_write_is_the_kernels_errno() {
        let file = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let f = UringFile::new(file).unwrap();
        let err = f.append(b"no room").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        // The ring is not broken by a failed write: it reported a result.
        assert_eq!(
            f.append(b"x").unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
    }

    /// A write on a read-only fd fails with EBADF through the ring too.
    #[test]
    fn a_write_on_a_read_only_file_is_ebadf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, b"").unwrap();
        let f = UringFile::new(File::open(&path).unwrap()).unwrap();
        let err = f.append(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    }

    #[test]
    fn completion_results_map_to_errors() {
        assert_eq!(write_result(5, 0).unwrap(), 5);
        let zero = write_result(0, 42).unwrap_err();
        assert_eq!(zero.kind(), io::ErrorKind::WriteZero);
        assert!(zero.to_string().contains("42"), "{zero}");
        let eio = write_result(-libc::EIO, 0).unwrap_err();
        assert_eq!(eio.raw_os_error(), Some(libc::EIO));
        assert!(sync_result(0).is_ok());
        let eio = sync_result(-libc::EIO).unwrap_err();
        assert_eq!(eio.raw_os_error(), Some(libc::EIO));
    }

    #[test]
    fn probe_succeeds_where_tests_run() {
        probe().unwrap();
    }
}
