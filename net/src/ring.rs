//! The io_uring wrapper: every submission's `unsafe` is here. (Socket
//! setup and the eventfd make plain system calls elsewhere: the event loop
//! and `control.rs`.)
//!
//! Every submission hands the kernel raw pointers (receive and send buffers,
//! socket addresses, timespecs). The rule the event loop follows, and which
//! each `// SAFETY:` below relies on: the memory behind a pointer lives in a
//! heap allocation owned by the connection (or the loop) that is not freed,
//! moved or reallocated until the operation's completion has been reaped.
//! Connections count their in-flight operations and are freed only at zero.
//!
//! Receives draw from one provided-buffer ring ([`Ring::register_recv_buffers`],
//! owned by the ring): the kernel picks a free buffer when data arrives and
//! names it in the completion; the loop reads it and hands it back with
//! [`Ring::recycle_recv_buffer`] before it handles the next completion. The
//! ring's memory is freed only after the group is unregistered (no buffer
//! can be picked after that) and the ring is closed, and is leaked like
//! the connections when receives were still in flight at shutdown. Where
//! buffer rings are missing, each connection receives into its own 64 KiB
//! buffer ([`Ring::recv`]).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::error::{Error, Result};

/// How to fix a refused io_uring setup.
pub const IO_URING_HINT: &str =
    "strata-net needs io_uring (Linux 5.19+). If it runs in a container, \
allow the io_uring_setup/io_uring_enter/io_uring_register syscalls in the seccomp profile \
(e.g. docker --security-opt seccomp=unconfined) and check that \
/proc/sys/kernel/io_uring_disabled is 0";

/// The ring.
pub struct Ring {
    // Declared first, dropped first: the kernel is done with the receive
    // buffers' memory before it is freed.
    ring: IoUring,
    /// True while the ring was created disabled and not yet
    /// [`Ring::enable`]d.
    disabled: bool,
    /// The provided-buffer ring receives draw from, once registered.
    recv_buffers: Option<RecvBuffers>,
}

/// The buffer group id of [`Ring::register_recv_buffers`] (the only one).
const RECV_BUFFER_GROUP: u16 = 0;

/// Receive buffers the kernel picks from as data arrives (a provided-buffer
/// ring, Linux 5.19+): one pool for every connection, so memory grows with
/// the data in flight, not with the number of peers, and a multishot
/// receive stays armed without a new submission per receive.
///
/// Two allocations: the ring of `count` 16-byte entries (page-aligned, as
/// the kernel requires) that hands buffers to the kernel, and the pool of
/// `count` buffers of `buffer_bytes`. A buffer belongs to the kernel from
/// the moment its entry is published until a completion names it; the loop
/// then reads it and gives it back with [`Ring::recycle_recv_buffer`].
struct RecvBuffers {
    entries: std::ptr::NonNull<types::BufRingEntry>,
    pool: std::ptr::NonNull<u8>,
    count: u16,
    buffer_bytes: u32,
    /// Our copy of the ring's tail (entries published so far, wrapping).
    tail: u16,
    /// Set when connections were leaked with receives in flight: the
    /// memory is then leaked too, as the kernel may still write into it.
    leak: bool,
}

// SAFETY: the two allocations are owned by this value alone (the kernel
// aside); the ring that owns it moves to its loop thread once, before use.
unsafe impl Send for RecvBuffers {}

impl RecvBuffers {
    fn entries_layout(count: u16) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .expect("entries layout")
    }

    fn pool_layout(count: u16, buffer_bytes: u32) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(usize::from(count) * buffer_bytes as usize, 64)
            .expect("pool layout")
    }

    /// Publishes buffer `bid` to the kernel (without the tail update).
    fn stage(&mut self, bid: u16) {
        debug_assert!(bid < self.count);
        let mask = self.count - 1;
        // SAFETY: `tail & mask` < `count`, inside the entries allocation;
        // the kernel reads an entry only once the tail moves past it, which
        // `publish` does after this write.
        unsafe {
            let e = &mut *self.entries.as_ptr().add(usize::from(self.tail & mask));
            e.set_addr(self.buffer_ptr(bid) as u64);
            e.set_len(self.buffer_bytes);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the staged entries visible to the kernel.
    fn publish(&mut self) {
        // SAFETY: the tail field lives in the first entry's reserved bytes,
        // inside the allocation; the kernel only reads it. The release store
        // orders the entry writes before it.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn buffer_ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: `bid < count`, so the offset stays inside the pool.
        unsafe {
            self.pool
                .as_ptr()
                .add(usize::from(bid) * self.buffer_bytes as usize)
        }
    }
}

impl Drop for RecvBuffers {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: allocated in `register_recv_buffers` with these layouts;
        // the ring (and with it the kernel's use) is gone: `Ring` drops its
        // `IoUring` first, after unregistering the group.
        unsafe {
            std::alloc::dealloc(
                self.entries.as_ptr().cast(),
                Self::entries_layout(self.count),
            );
            std::alloc::dealloc(
                self.pool.as_ptr(),
                Self::pool_layout(self.count, self.buffer_bytes),
            );
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.recv_buffers.is_some() {
            // No buffer is picked after this returns: receives still armed
            // fail instead of writing into memory about to be freed.
            let _ = self.ring.submitter().unregister_buf_ring(RECV_BUFFER_GROUP);
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ring")
    }
}

/// One completion.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// The submission's user data.
    pub user_data: u64,
    /// The result (negative errno on failure).
    pub result: i32,
    /// True when a multishot operation stays armed.
    pub more: bool,
    /// The provided buffer the data went into ([`Ring::recv_multi`]).
    pub buffer: Option<u16>,
}

impl Ring {
    /// Sets up a ring of `entries` submissions. `force_unavailable` makes it
    /// fail as a kernel without io_uring would (to test that path).
    pub fn new(entries: u32, force_unavailable: bool) -> Result<Ring> {
        let r = if force_unavailable {
            Err(io::Error::from_raw_os_error(libc::ENOSYS))
        } else {
            // One thread submits and reaps, so the kernel may defer the
            // completion work to that thread's next wait instead of
            // interrupting it (DEFER_TASKRUN, Linux 6.1+; it requires
            // SINGLE_ISSUER). Created disabled: the issuer is the thread that
            // calls `enable`, which may not be the one creating the ring.
            // Kernels without these flags get a plain ring.
            IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .setup_r_disabled()
                .build(entries)
                .map(|ring| (ring, true))
                .or_else(|_| IoUring::new(entries).map(|ring| (ring, false)))
        };
        match r {
            Ok((ring, disabled)) => Ok(Ring {
                ring,
                disabled,
                recv_buffers: None,
            }),
            Err(source) => Err(Error::IoUringUnavailable {
                source,
                hint: IO_URING_HINT,
            }),
        }
    }

    /// Makes the calling thread the only one that may submit to and wait
    /// on the ring from now on. Call it once, on the thread that runs the
    /// loop, before the first submission.
    pub fn enable(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.disabled) {
            self.ring.submitter().register_enable_rings()?;
        }
        Ok(())
    }

    /// Registers `count` receive buffers of `buffer_bytes` each (`count` a
    /// power of two, at most 32 768) for [`Ring::recv_multi`]. Fails on
    /// kernels without provided-buffer rings (before 5.19); the caller then
    /// receives into buffers of its own with [`Ring::recv`].
    pub fn register_recv_buffers(&mut self, count: u16, buffer_bytes: u32) -> io::Result<()> {
        assert!(
            count.is_power_of_two() && count <= 32_768,
            "{count} buffers"
        );
        assert!(buffer_bytes > 0 && self.recv_buffers.is_none());
        let entries_layout = RecvBuffers::entries_layout(count);
        let pool_layout = RecvBuffers::pool_layout(count, buffer_bytes);
        // SAFETY: both layouts have a non-zero size; null is checked.
        let (entries, pool) = unsafe {
            (
                std::alloc::alloc_zeroed(entries_layout),
                std::alloc::alloc(pool_layout),
            )
        };
        let (Some(entries), Some(pool)) = (
            std::ptr::NonNull::new(entries.cast::<types::BufRingEntry>()),
            std::ptr::NonNull::new(pool),
        ) else {
            std::alloc::handle_alloc_error(pool_layout);
        };
        let mut bufs = RecvBuffers {
            entries,
            pool,
            count,
            buffer_bytes,
            tail: 0,
            leak: false,
        };
        // SAFETY: `entries` is page-aligned, zeroed and holds `count`
        // entries; it outlives the registration (`Ring::drop` unregisters
        // before `RecvBuffers::drop` frees it).
        unsafe {
            self.ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                RECV_BUFFER_GROUP,
                0,
            )?;
        }
        for bid in 0..count {
            bufs.stage(bid);
        }
        bufs.publish();
        self.recv_buffers = Some(bufs);
        Ok(())
    }

    /// True when [`Ring::register_recv_buffers`] succeeded.
    pub fn has_recv_buffers(&self) -> bool {
        self.recv_buffers.is_some()
    }

    /// The first `len` bytes of receive buffer `bid`, as named by a
    /// completion of [`Ring::recv_multi`].
    ///
    /// # Safety
    /// `bid` must come from a completion not yet recycled, and `len` from
    /// the same completion; the slice must not be used after
    /// [`Ring::recycle_recv_buffer`] of `bid`.
    pub unsafe fn recv_buffer(&self, bid: u16, len: usize) -> &'static [u8] {
        let b = self.recv_buffers.as_ref().expect("registered");
        assert!(bid < b.count && len <= b.buffer_bytes as usize);
        std::slice::from_raw_parts(b.buffer_ptr(bid), len)
    }

    /// Gives receive buffer `bid` back to the kernel.
    pub fn recycle_recv_buffer(&mut self, bid: u16) {
        let b = self.recv_buffers.as_mut().expect("registered");
        b.stage(bid);
        b.publish();
    }

    /// Leaks the receive buffers' memory on drop: for when connections are
    /// leaked with receives in flight.
    pub fn leak_recv_buffers(&mut self) {
        if let Some(b) = self.recv_buffers.as_mut() {
            b.leak = true;
        }
    }

    fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller of each public method below guarantees that
            // the pointers in `e` stay valid until its completion (see the
            // module docs); pushing itself only copies the entry.
            let pushed = unsafe { self.ring.submission().push(&e) }.is_ok();
            if pushed {
                return Ok(());
            }
            // Submission queue full: hand what is queued to the kernel.
            self.ring.submit()?;
        }
    }

    /// Hands queued submissions to the kernel without waiting; no syscall
    /// when none are queued.
    pub fn submit(&mut self) -> io::Result<()> {
        if self.ring.submission().is_empty() {
            return Ok(());
        }
        match self.ring.submit() {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submits and waits for at least one completion, then drains up to
    /// `out.capacity()` completions into `out`.
    pub fn submit_and_wait(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        self.submit_and_wait_for(out, 1)
    }

    /// Submits and waits for at least `want` completions (0: does not
    /// block), then drains up to `out.capacity()` completions into `out`.
    pub fn submit_and_wait_for(
        &mut self,
        out: &mut Vec<Completion>,
        want: usize,
    ) -> io::Result<()> {
        self.submit_and_wait_timeout(out, want, None)
    }

    /// As [`Ring::submit_and_wait_for`], blocking for at most `timeout`
    /// (`None`: no limit) when `want` is more than 0. The timeout goes to
    /// the kernel with the wait itself (`IORING_ENTER_EXT_ARG`, Linux
    /// 5.11+), so a bounded wait costs no timer submission.
    pub fn submit_and_wait_timeout(
        &mut self,
        out: &mut Vec<Completion>,
        want: usize,
        timeout: Option<std::time::Duration>,
    ) -> io::Result<()> {
        out.clear();
        let r = match timeout {
            Some(t) if want > 0 => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            _ => self.ring.submit_and_wait(want),
        };
        match r {
            Ok(_) => {}
            // ETIME: the timeout passed first; what completed is drained.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::ETIME)
                ) => {}
            Err(e) => return Err(e),
        }
        let cap = out.capacity().max(1);
        for c in self.ring.completion().take(cap) {
            out.push(Completion {
                user_data: c.user_data(),
                result: c.result(),
                more: cqueue::more(c.flags()),
                buffer: cqueue::buffer_select(c.flags()),
            });
        }
        Ok(())
    }

    /// Multishot accept on a listening socket.
    pub fn accept_multi(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        self.push(
            opcode::AcceptMulti::new(types::Fd(fd))
                .build()
                .user_data(user_data),
        )
    }

    /// Receive into `buf`.
    ///
    /// # Safety
    /// `buf` must stay valid and unaliased until the completion is reaped.
    pub unsafe fn recv(
        &mut self,
        fd: RawFd,
        buf: *mut u8,
        len: u32,
        user_data: u64,
    ) -> io::Result<()> {
        self.push(
            opcode::Recv::new(types::Fd(fd), buf, len)
                .build()
                .user_data(user_data),
        )
    }

    /// Multishot receive from the registered buffers: one completion per
    /// arrival of data, each naming its buffer
    /// ([`Completion::buffer`]), until one comes without
    /// [`Completion::more`] (error, end of stream, or no free buffer:
    /// `-ENOBUFS`).
    pub fn recv_multi(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        debug_assert!(self.recv_buffers.is_some());
        self.push(
            opcode::RecvMulti::new(types::Fd(fd), RECV_BUFFER_GROUP)
                .build()
                .user_data(user_data),
        )
    }

    /// Send from `buf`.
    ///
    /// # Safety
    /// `buf..buf+len` must stay valid and unmodified until the completion is reaped.
    pub unsafe fn send(
        &mut self,
        fd: RawFd,
        buf: *const u8,
        len: u32,
        user_data: u64,
    ) -> io::Result<()> {
        self.push(
            opcode::Send::new(types::Fd(fd), buf, len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(user_data),
        )
    }

    /// Connect, linked to a timeout: the connect completes with `-ECANCELED`
    /// if it has not finished by then. Two completions arrive (connect and
    /// timeout), with `user_data` and `timeout_user_data`.
    ///
    /// # Safety
    /// `addr` and `ts` must stay valid until both completions are reaped.
    pub unsafe fn connect_with_timeout(
        &mut self,
        fd: RawFd,
        addr: *const libc::sockaddr,
        addr_len: libc::socklen_t,
        ts: *const types::Timespec,
        user_data: u64,
        timeout_user_data: u64,
    ) -> io::Result<()> {
        // Both entries must land in the same submission batch for the link.
        let free = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if free < 2 {
            self.ring.submit()?;
        }
        self.push(
            opcode::Connect::new(types::Fd(fd), addr, addr_len)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(user_data),
        )?;
        self.push(
            opcode::LinkTimeout::new(ts)
                .build()
                .user_data(timeout_user_data),
        )
    }

    /// A one-shot timer.
    ///
    /// # Safety
    /// `ts` must stay valid until the completion is reaped.
    pub unsafe fn timeout(&mut self, ts: *const types::Timespec, user_data: u64) -> io::Result<()> {
        self.push(opcode::Timeout::new(ts).build().user_data(user_data))
    }

    /// Read 8 bytes from an eventfd.
    ///
    /// # Safety
    /// `buf` must stay valid until the completion is reaped.
    pub unsafe fn read_eventfd(
        &mut self,
        fd: RawFd,
        buf: *mut u8,
        user_data: u64,
    ) -> io::Result<()> {
        self.push(
            opcode::Read::new(types::Fd(fd), buf, 8)
                .build()
                .user_data(user_data),
        )
    }
}

/// Builds a timespec.
pub fn timespec_ms(ms: u64) -> types::Timespec {
    types::Timespec::new()
        .sec(ms / 1000)
        .nsec(((ms % 1000) * 1_000_000) as u32)
}
