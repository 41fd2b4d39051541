//! A TUN device: a network interface whose packets a process reads and
//! writes through a file descriptor. The device lives as long as the
//! descriptor (it is not made persistent), so a lab that exits or
//! panics leaves no device behind.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
/// No packet-information header: a read returns the IP packet alone.
const IFF_NO_PI: libc::c_short = 0x1000;
/// Longest interface name, terminator included.
const IFNAMSIZ: usize = 16;

#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates the TUN device `name` in the calling thread's network
/// namespace and returns its descriptor, non-blocking.
pub(crate) fn open(name: &str) -> io::Result<OwnedFd> {
    assert!(name.len() < IFNAMSIZ, "interface name {name} is too long");
    let file = File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req`
    // is laid out as (name, then the flags union member, padded to 40
    // bytes); the descriptor is open and owned by `file`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    set_nonblocking(&file)?;
    Ok(file.into())
}

fn set_nonblocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one packet into `buf`: its length, or `None` when none waits.
pub(crate) fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(n as usize))
}

/// Writes one packet.
pub(crate) fn write(fd: &OwnedFd, packet: &[u8]) -> io::Result<()> {
    // SAFETY: `packet` is valid for `packet.len()` bytes of reads.
    let n = unsafe { libc::write(fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A descriptor of the network namespace file at `path`, for `setns`.
pub(crate) fn namespace_fd(path: &str) -> io::Result<OwnedFd> {
    Ok(File::open(path)?.into())
}

/// Moves the calling thread into the network namespace `ns`.
pub(crate) fn enter(ns: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns on a namespace descriptor we own; it changes only the
    // calling thread's network namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
