//! # strata-netlab: a network of hosts on one Linux machine
//!
//! A [`Lab`] makes `n` hosts, each a Linux network namespace with one
//! interface and its own address (`10.77.S.1` … `10.77.S.n`, `S` a
//! subnet the lab picks), and joins them through a **user-space router**
//! that passes every packet through the link from its source to its
//! destination: one-way delay, jitter, random loss, bandwidth with a
//! bounded queue, and cuts (partitions), each per direction and
//! changeable while the network runs. Programs run inside a host with
//! [`Lab::command`] (a process) or [`Lab::in_host`] (a closure on a
//! thread moved into the host's namespace). The process that owns the
//! lab is the **controller**, reached from every host at `10.77.S.254`
//! over links that are never shaped: it stands for the operator and the
//! test, not for a peer.
//!
//! **Why a user-space router.** The kernel's netem qdisc would do the
//! shaping, but `sch_netem` is not available on the machines this runs
//! on; a bridge of veth pairs forwards inside the kernel with nowhere to
//! delay a packet. Each host's interface is therefore a TUN device whose
//! other end is a file descriptor held by the router thread: the kernel
//! of each namespace runs real TCP over it, so loss costs what it costs
//! on a wire (retransmission timeouts, congestion windows), not what a
//! model of it would say.
//!
//! **Determinism.** Each link draws its losses and jitter from its own
//! sequence seeded from the lab's seed and the link's ends, so the same
//! traffic meets the same fate; the timing of real processes is not
//! deterministic, so a run is repeatable in distribution, not packet by
//! packet.
//!
//! **Needs** root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN`), `/dev/net/tun`
//! and iproute2's `ip`. Where any is refused, [`Lab::new`] returns
//! [`LabError::Refused`] and says which, so tests can skip.
//!
//! ```no_run
//! use strata_netlab::{Lab, Link};
//! let lab = Lab::new(3, 7).unwrap();
//! lab.set_links(|_, _| Link::delay_ms(25)); // 50 ms round trips
//! let server = lab.addr(1);
//! let listener = lab.in_host(1, || std::net::TcpListener::bind((server, 9000)).unwrap());
//! let client = lab.in_host(0, || std::net::TcpStream::connect((server, 9000)).unwrap());
//! lab.partition(&[&[0], &[1, 2]]); // host 0 alone
//! lab.heal();
//! # drop((listener, client));
//! ```

mod cpu;
mod link;
mod router;
mod tun;

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

pub use cpu::CpuLimit;
use link::LinkState;
pub use link::{Link, LinkStats};
use router::Table;

/// Most hosts in one lab (addresses `.1` to `.253`).
pub const HOSTS_MAX: usize = 253;
/// Interface MTU of every host, bytes.
pub const MTU_BYTES: usize = 1_500;
/// Second octet of every lab's addresses: `10.77.S.0/24`.
const NET_OCTET: u8 = 77;

/// Why a lab could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The machine does not let this process make namespaces or TUN
    /// devices (no root, a container that forbids it, no `ip`).
    #[error("network namespaces are refused here: {0}")]
    Refused(String),
    /// Every subnet `10.77.0.0/24` … `10.77.250.0/24` is in use.
    #[error("no free lab subnet in 10.77.0.0/16")]
    NoSubnet,
    /// A setup step failed after the checks passed.
    #[error("{step}: {error}")]
    Setup {
        /// What was being done.
        step: String,
        /// What went wrong.
        error: String,
    },
}

/// A network of hosts. Dropping it stops the router and removes every
/// namespace (processes still running inside lose their network).
pub struct Lab {
    subnet: [u8; 3],
    /// Namespace names, one per host.
    names: Vec<String>,
    table: Arc<Mutex<Table>>,
    stop: Arc<AtomicBool>,
    router: Option<JoinHandle<()>>,
}

/// Serialises subnet picking among the labs of one process.
static SETUP: Mutex<()> = Mutex::new(());

fn ip(args: &[&str]) -> Result<(), LabError> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        LabError::Refused(format!(
            "iproute2's `ip` cannot run ({e}); install iproute2"
        ))
    })?;
    if !out.status.success() {
        return Err(LabError::Setup {
            step: format!("ip {}", args.join(" ")),
            error: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The subnets in use on this machine: any `10.77.S.x` address in the
/// root namespace (other labs' controllers).
fn subnets_in_use() -> Result<Vec<u8>, LabError> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map_err(|e| LabError::Refused(format!("iproute2's `ip` cannot run ({e})")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("10.{NET_OCTET}.");
    Ok(text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect())
}

/// Removes the namespaces of labs whose process is gone (one killed
/// before its `Drop` ran): their names carry the owner's pid.
fn remove_orphans() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("snl-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

impl Lab {
    /// Makes `hosts` hosts joined by ideal links ([`Link::IDEAL`]);
    /// `seed` seeds every link's losses and jitter.
    ///
    /// # Errors
    /// [`LabError::Refused`] where namespaces or TUN devices are not
    /// allowed; [`LabError::NoSubnet`]; [`LabError::Setup`].
    pub fn new(hosts: usize, seed: u64) -> Result<Lab, LabError> {
        assert!((1..=HOSTS_MAX).contains(&hosts), "1..={HOSTS_MAX} hosts");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(LabError::Refused("not running as root".into()));
        }
        let _setup = SETUP.lock().unwrap_or_else(|p| p.into_inner());
        remove_orphans();
        let used = subnets_in_use()?;
        let pid = std::process::id();
        let start = (pid % 250) as u8;
        let s = (0..250u8)
            .map(|k| ((u16::from(start) + u16::from(k)) % 250) as u8)
            .find(|s| !used.contains(s))
            .ok_or(LabError::NoSubnet)?;
        let subnet = [10, NET_OCTET, s];
        let mut lab = Lab {
            subnet,
            names: (0..hosts).map(|i| format!("snl-{pid}-{s}-{i}")).collect(),
            table: Arc::new(Mutex::new(Table {
                hosts: hosts + 1,
                links: Vec::new(),
            })),
            stop: Arc::new(AtomicBool::new(false)),
            router: None,
        };
        // From here `lab`'s Drop removes whatever was made.
        let mut fds: Vec<OwnedFd> = Vec::with_capacity(hosts + 1);
        for i in 0..hosts {
            let name = lab.names[i].clone();
            ip(&["netns", "add", &name]).map_err(|e| match e {
                LabError::Setup { error, .. } => {
                    LabError::Refused(format!("`ip netns add` failed: {error}"))
                }
                e => e,
            })?;
            let dev = format!("snl{s}h{i}");
            let fd = tun::open(&dev)
                .map_err(|e| LabError::Refused(format!("cannot create a TUN device ({e})")))?;
            let addr = format!("{}/24", lab.addr(i));
            ip(&["link", "set", &dev, "netns", &name])?;
            ip(&[
                "-n",
                &name,
                "link",
                "set",
                "dev",
                &dev,
                "mtu",
                &MTU_BYTES.to_string(),
            ])?;
            ip(&["-n", &name, "addr", "add", &addr, "dev", &dev])?;
            ip(&["-n", &name, "link", "set", &dev, "up"])?;
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            fds.push(fd);
        }
        let dev = format!("snl{s}c");
        let fd = tun::open(&dev)
            .map_err(|e| LabError::Refused(format!("cannot create a TUN device ({e})")))?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lab.controller_addr()),
            "dev",
            &dev,
        ])?;
        ip(&["link", "set", &dev, "up"])?;
        fds.push(fd);
        {
            let mut t = lab.table.lock().expect("not poisoned");
            let n = hosts + 1;
            t.links = (0..n * n)
                .map(|k| {
                    let link_seed = seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    LinkState::new(Link::IDEAL, link_seed)
                })
                .collect();
        }
        let (table, stop) = (Arc::clone(&lab.table), Arc::clone(&lab.stop));
        let started = Instant::now();
        lab.router = Some(
            std::thread::Builder::new()
                .name(format!("netlab-router-{s}"))
                .spawn(move || router::run(fds, subnet, table, started, stop))
                .map_err(|e| LabError::Setup {
                    step: "start the router thread".into(),
                    error: e.to_string(),
                })?,
        );
        Ok(lab)
    }

    /// Hosts in the lab (the controller not counted).
    pub fn hosts(&self) -> usize {
        self.names.len()
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        assert!(i < HOSTS_MAX);
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, i as u8 + 1)
    }

    /// The controller's address, as the hosts see it.
    pub fn controller_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 254)
    }

    /// Host `i`'s namespace name (for `ip netns exec`).
    pub fn namespace(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// A command that runs `program` inside host `i` (through `ip netns
    /// exec`, which execs it: the child's pid is the program's, so
    /// signals reach it).
    pub fn command(&self, i: usize, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]]).arg(program);
        c
    }

    /// Sets a kernel setting of host `i`'s namespace (`name=value`, as
    /// `sysctl -w` takes it), such as
    /// `net.ipv4.tcp_slow_start_after_idle=0`.
    ///
    /// # Errors
    /// [`LabError::Setup`] if `sysctl` fails or is missing.
    pub fn sysctl(&self, i: usize, setting: &str) -> Result<(), LabError> {
        let failed = |error: String| LabError::Setup {
            step: format!("sysctl -w {setting} on host {i}"),
            error,
        };
        let out = self
            .command(i, "sysctl")
            .args(["-q", "-w", setting])
            .output()
            .map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }

    /// Runs `f` on a thread inside host `i`'s namespace and returns its
    /// result. Sockets it creates stay in that namespace: a listener made
    /// here accepts on host `i`'s address.
    pub fn in_host<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        let ns = tun::namespace_fd(&format!("/run/netns/{}", self.names[i]))
            .expect("the namespace of a live lab exists");
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    tun::enter(&ns).expect("setns into a lab namespace");
                    f()
                })
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Sets the link from host `from` to host `to` (one direction).
    pub fn set_link(&self, from: usize, to: usize, link: Link) {
        assert!(from < self.hosts() && to < self.hosts());
        self.table
            .lock()
            .expect("not poisoned")
            .get_mut(from, to)
            .link = link;
    }

    /// Sets every link between two hosts to `f(from, to)`.
    pub fn set_links(&self, f: impl Fn(usize, usize) -> Link) {
        let mut t = self.table.lock().expect("not poisoned");
        for from in 0..self.hosts() {
            for to in 0..self.hosts() {
                t.get_mut(from, to).link = f(from, to);
            }
        }
    }

    /// Cuts every link between hosts of different `groups` (both
    /// directions), leaving links within a group and each link's other
    /// settings as they are. Hosts in no group are cut from every group.
    pub fn partition(&self, groups: &[&[usize]]) {
        let group_of = |h: usize| groups.iter().position(|g| g.contains(&h));
        let mut t = self.table.lock().expect("not poisoned");
        for from in 0..self.hosts() {
            for to in 0..self.hosts() {
                let same =
                    from == to || (group_of(from).is_some() && group_of(from) == group_of(to));
                t.get_mut(from, to).link.up = same;
            }
        }
    }

    /// Restores every cut link between hosts.
    pub fn heal(&self) {
        let mut t = self.table.lock().expect("not poisoned");
        for l in t.links.iter_mut() {
            l.link.up = true;
        }
    }

    /// What the link from `from` to `to` has done so far (`hosts()` is
    /// the controller).
    pub fn stats(&self, from: usize, to: usize) -> LinkStats {
        assert!(from <= self.hosts() && to <= self.hosts());
        self.table
            .lock()
            .expect("not poisoned")
            .get_mut(from, to)
            .stats
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.router.take() {
            let _ = r.join();
        }
        // The TUN devices went with the router's descriptors; the
        // namespaces remain until deleted.
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
