//! The plain system calls of the network layer (sockets, socket
//! addresses, the eventfd), each behind a safe function with its
//! `// SAFETY:` argument. The io_uring submissions, whose safety depends on
//! buffers outliving operations, are in `ring.rs`; what remains `unsafe`
//! in the event loop is only calls into it.
//!
//! The functions that take a raw fd expect the caller to own it: the
//! event loop owns every connection's socket, `Shared` its eventfd.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// A new TCP socket (close-on-exec) for `addr`'s family, not connected.
pub(crate) fn tcp_socket_for(addr: &SocketAddr) -> io::Result<RawFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Closes `fd`, which the caller owns and uses no more.
pub(crate) fn close(fd: RawFd) {
    // SAFETY: closing an fd the caller owns; no memory is involved.
    unsafe { libc::close(fd) };
}

/// Shuts both directions of socket `fd` down; in-flight receives and sends
/// on it complete promptly afterwards.
pub(crate) fn shutdown(fd: RawFd) {
    // SAFETY: plain syscall on an fd the caller owns.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// An all-zero socket address, filled by [`write_sockaddr`].
pub(crate) fn zeroed_sockaddr() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
    unsafe { std::mem::zeroed() }
}

/// A new eventfd (counter 0, close-on-exec).
pub(crate) fn eventfd() -> io::Result<RawFd> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Adds one to eventfd `fd`, waking its reader. A failed write (counter
/// overflow) only means the reader is already due to wake.
pub(crate) fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an eventfd the caller
    // owns.
    unsafe {
        libc::write(fd, (&one as *const u64).cast(), 8);
    }
}

/// Turns Nagle's algorithm off. The loop already coalesces every frame
/// queued for a peer into one send, so Nagle adds nothing but delay: with
/// it on, a small request or response behind an unacknowledged one waits
/// for the peer's delayed ACK (up to 40 ms on Linux). Best effort: a socket
/// without it still works, only slower, so a failure is not an error.
pub(crate) fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is a TCP socket this loop owns; the option value is a
    // valid c_int whose size is passed along.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Writes `addr` into `out` as the kernel's socket address; returns its
/// length.
pub(crate) fn write_sockaddr(
    addr: &SocketAddr,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The remote address of connected socket `fd`.
pub(crate) fn peer_name(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getpeername(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return None;
    }
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}
