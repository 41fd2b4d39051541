//! The router: one thread that reads every host's packets from its TUN
//! device, passes each through the link from its source to its
//! destination ([`LinkState::admit`]), and writes it to the
//! destination's device when the link lets it out.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::link::LinkState;
use crate::tun;

/// Longest wait in `ppoll` when no packet is due, ns: how soon a stop
/// is noticed.
const POLL_IDLE_NS: u64 = 20_000_000;
/// Largest packet read (the devices' MTU is 1,500).
const PACKET_BYTES_MAX: usize = 65_536;
/// Packets read from one device per turn, so a busy host cannot starve
/// the others or the deliveries.
const READS_PER_TURN_MAX: usize = 64;

/// Every directed link, `links[from * hosts + to]`, over `hosts` hosts
/// (the last is the controller, outside the emulated network).
pub(crate) struct Table {
    pub(crate) hosts: usize,
    pub(crate) links: Vec<LinkState>,
}

impl Table {
    pub(crate) fn get_mut(&mut self, from: usize, to: usize) -> &mut LinkState {
        &mut self.links[from * self.hosts + to]
    }
}

/// A packet on its way.
struct InFlight {
    out_ns: u64,
    /// Admission order: packets due at the same time leave in order.
    seq: u64,
    from: usize,
    to: usize,
    packet: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.out_ns, self.seq) == (o.out_ns, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.out_ns, self.seq).cmp(&(o.out_ns, o.seq))
    }
}

/// The host a destination address belongs to: `.1 ..= .hosts-1` are the
/// emulated hosts, `.254` the controller; anything else is not routed.
pub(crate) fn host_of(packet: &[u8], subnet: [u8; 3], hosts: usize) -> Option<usize> {
    // IPv4 only: version nibble 4, a whole header.
    if packet.len() < 20 || packet[0] >> 4 != 4 || packet[16..19] != subnet {
        return None;
    }
    match packet[19] {
        254 => Some(hosts - 1),
        d if d >= 1 && usize::from(d) < hosts => Some(usize::from(d) - 1),
        _ => None,
    }
}

/// Runs until `stop`: `fds[i]` is host `i`'s device.
pub(crate) fn run(
    fds: Vec<OwnedFd>,
    subnet: [u8; 3],
    table: Arc<Mutex<Table>>,
    started: Instant,
    stop: Arc<AtomicBool>,
) {
    let hosts = fds.len();
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut heap: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; PACKET_BYTES_MAX];
    let now_ns = || started.elapsed().as_nanos() as u64;
    while !stop.load(Ordering::Relaxed) {
        let wait_ns = heap
            .peek()
            .map_or(POLL_IDLE_NS, |Reverse(p)| p.out_ns.saturating_sub(now_ns()))
            .min(POLL_IDLE_NS);
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: wait_ns as libc::c_long,
        };
        // SAFETY: `pollfds` is a valid array of `pollfd` of its length,
        // `timeout` a valid timespec; no signal mask is passed.
        let rc = unsafe {
            libc::ppoll(
                pollfds.as_mut_ptr(),
                pollfds.len() as libc::nfds_t,
                &timeout,
                std::ptr::null(),
            )
        };
        if rc > 0 {
            let mut table = table.lock().expect("the link table's lock is not poisoned");
            for (from, pfd) in pollfds.iter().enumerate() {
                if pfd.revents & libc::POLLIN == 0 {
                    continue;
                }
                for _ in 0..READS_PER_TURN_MAX {
                    let Ok(Some(n)) = tun::read(&fds[from], &mut buf) else {
                        break;
                    };
                    let packet = &buf[..n];
                    let Some(to) = host_of(packet, subnet, hosts) else {
                        continue;
                    };
                    if let Ok(out_ns) = table.get_mut(from, to).admit(now_ns(), n) {
                        seq += 1;
                        heap.push(Reverse(InFlight {
                            out_ns,
                            seq,
                            from,
                            to,
                            packet: packet.to_vec(),
                        }));
                    }
                }
            }
        }
        let now = now_ns();
        if heap.peek().is_some_and(|Reverse(p)| p.out_ns <= now) {
            let mut table = table.lock().expect("the link table's lock is not poisoned");
            while heap.peek().is_some_and(|Reverse(p)| p.out_ns <= now) {
                let Reverse(p) = heap.pop().expect("peeked");
                table.get_mut(p.from, p.to).delivered(p.packet.len());
                // A write fails only if the device is gone (its host is
                // being torn down): the packet is lost, as on a wire.
                let _ = tun::write(&fds[p.to], &p.packet);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_to(d: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[16..20].copy_from_slice(&d);
        p
    }

    #[test]
    fn packets_route_by_the_last_octet_of_the_lab_subnet() {
        let s = [10, 77, 3];
        // 4 hosts + the controller.
        assert_eq!(host_of(&ipv4_to([10, 77, 3, 1]), s, 5), Some(0));
        assert_eq!(host_of(&ipv4_to([10, 77, 3, 4]), s, 5), Some(3));
        assert_eq!(host_of(&ipv4_to([10, 77, 3, 254]), s, 5), Some(4));
        assert_eq!(host_of(&ipv4_to([10, 77, 3, 5]), s, 5), None);
        assert_eq!(host_of(&ipv4_to([10, 77, 3, 0]), s, 5), None);
        assert_eq!(host_of(&ipv4_to([10, 77, 4, 1]), s, 5), None);
        let mut v6 = ipv4_to([10, 77, 3, 1]);
        v6[0] = 0x60;
        assert_eq!(host_of(&v6, s, 5), None);
        assert_eq!(host_of(&[0x45; 10], s, 5), None);
    }
}
