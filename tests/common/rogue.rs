//! Scripted hostile peers for the adversary tests: a raw TCP connection
//! that speaks the wire protocol by hand (so it can say anything, in any
//! order, as fast as it likes), authenticated with any key — the devnet's
//! validator seeds are public, so a test can act as a Byzantine validator —
//! and probes that measure honest finality while an attack runs.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use strata_consensus::engine::Message as EngineMessage;
use strata_consensus::wire::Payload;
use strata_net::frame::FrameDecoder;
use strata_net::handshake::{random_bytes, Handshake, Identity, Role};
use strata_net::message::{Message, MsgType};

use super::{submit, transfer, Devnet};

/// One frame read from the node.
pub struct Frame {
    pub msg_type: u8,
    pub request_id: u64,
    pub payload: Vec<u8>,
}

/// A peer speaking the protocol by hand.
pub struct Rogue {
    pub stream: TcpStream,
    pub key: [u8; 32],
    dec: FrameDecoder,
    buf: Vec<u8>,
    frames: std::collections::VecDeque<Frame>,
    /// Bytes this peer has written: the attacker's cost.
    pub bytes_sent: u64,
    /// Frames it has written.
    pub frames_sent: u64,
}

impl Rogue {
    /// Connects to `addr` and completes the handshake as the holder of
    /// `seed` on `chain_id`. `None` when the node refuses or closes.
    pub fn connect(addr: SocketAddr, seed: [u8; 32], chain_id: [u8; 32]) -> Option<Rogue> {
        let identity = Identity::from_seed(seed);
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_nodelay(true).ok()?;
        let mut r = Rogue {
            stream,
            key: identity.public(),
            dec: FrameDecoder::new(64 << 20),
            buf: vec![0; 1 << 16],
            frames: Default::default(),
            bytes_sent: 0,
            frames_sent: 0,
        };
        let mut hs = Handshake::new(
            &identity,
            chain_id,
            Role::Initiator,
            0,
            random_bytes().ok()?,
            0,
            10_000,
        );
        r.send(&Message::Hello(hs.hello()), 0).ok()?;
        let hello = r.wait_for(MsgType::Hello as u8, Duration::from_secs(5))?;
        let Ok(Message::Hello(theirs)) = Message::decode(hello.msg_type, &hello.payload) else {
            return None;
        };
        let sig = hs.on_hello(&identity, theirs).ok()?;
        r.send(&Message::Auth(sig), 0).ok()?;
        let auth = r.wait_for(MsgType::Auth as u8, Duration::from_secs(5))?;
        let Ok(Message::Auth(s)) = Message::decode(auth.msg_type, &auth.payload) else {
            return None;
        };
        hs.on_auth(&s).ok()?;
        Some(r)
    }

    /// Writes one message.
    pub fn send(&mut self, m: &Message<'_>, request_id: u64) -> std::io::Result<()> {
        let mut w = Vec::new();
        m.encode_frame(request_id, &mut w);
        self.send_raw(&w)
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.bytes_sent += bytes.len() as u64;
        self.frames_sent += 1;
        Ok(())
    }

    /// Sends a consensus message (a one-way request frame, as nodes do).
    pub fn send_engine(&mut self, msg: EngineMessage) -> std::io::Result<()> {
        let payload = Payload::Engine(msg).encode();
        self.send(&Message::Request(&payload), 0)
    }

    /// Reads what has arrived within `timeout`; answers pings. Err when
    /// the node closed the connection.
    pub fn poll(&mut self, timeout: Duration) -> Result<(), ()> {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|_| ())?;
        match self.stream.read(&mut self.buf) {
            Ok(0) => return Err(()),
            Ok(n) => {
                let mut input = &self.buf[..n];
                while let Ok(Some(f)) = self.dec.next(&mut input) {
                    self.frames.push_back(Frame {
                        msg_type: f.header.msg_type,
                        request_id: f.header.request_id,
                        payload: f.payload.to_vec(),
                    });
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Err(()),
        }
        let pings: Vec<u64> = self
            .frames
            .iter()
            .filter(|f| f.msg_type == MsgType::Ping as u8)
            .filter_map(|f| match Message::decode(f.msg_type, &f.payload) {
                Ok(Message::Ping(n)) => Some(n),
                _ => None,
            })
            .collect();
        self.frames.retain(|f| f.msg_type != MsgType::Ping as u8);
        for n in pings {
            let _ = self.send(&Message::Pong(n), 0);
        }
        Ok(())
    }

    /// The next frame read, if any (after [`Rogue::poll`]).
    pub fn take(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Consensus messages read so far (one-way request frames carrying
    /// engine payloads).
    pub fn take_engine(&mut self) -> Vec<EngineMessage> {
        let mut out = Vec::new();
        let mut rest = std::collections::VecDeque::new();
        while let Some(f) = self.frames.pop_front() {
            if f.msg_type == MsgType::Request as u8 && f.request_id == 0 {
                if let Ok(Payload::Engine(m)) = Payload::decode(&f.payload) {
                    out.push(m);
                    continue;
                }
            }
            rest.push_back(f);
        }
        self.frames = rest;
        out
    }

    fn wait_for(&mut self, msg_type: u8, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.frames.iter().position(|f| f.msg_type == msg_type) {
                return self.frames.remove(i);
            }
            if Instant::now() > deadline {
                return None;
            }
            self.poll(Duration::from_millis(50)).ok()?;
        }
    }

    /// True when the node closed the connection within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.poll(Duration::from_millis(50)).is_err() {
                return true;
            }
            self.frames.clear();
        }
        false
    }
}

/// Finality latencies of honest transfers, one at a time: each is
/// submitted to `node` and polled until final.
pub struct Probe {
    /// The next sender (a devnet account) and its nonce.
    sender: usize,
    nonce: u64,
    /// The slowest probe since [`Probe::take_slowest`]: its start and end
    /// as UTC time of day (`HH:MM:SS.mmm`, the form of the nodes' log
    /// timestamps), its duration and its transaction id.
    slowest: Option<(String, String, Duration, String)>,
}

/// `t` as UTC time of day, `HH:MM:SS.mmm`.
pub fn time_of_day(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

impl Probe {
    /// Probes from devnet accounts `first_sender..`, each used once.
    pub fn new(first_sender: usize) -> Probe {
        Probe {
            sender: first_sender,
            nonce: 0,
            slowest: None,
        }
    }

    /// Submits `count` transfers to `node` one after the other and returns
    /// the time each took to be final (a transaction not final within
    /// `limit` counts as `limit`).
    /// The slowest probe since the last call, and forgets it.
    pub fn take_slowest(&mut self) -> Option<(String, String, Duration, String)> {
        self.slowest.take()
    }

    pub fn run(
        &mut self,
        net: &Devnet,
        node: usize,
        count: usize,
        limit: Duration,
    ) -> Vec<Duration> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let tx = transfer(&net.genesis, self.sender, self.sender + 1, self.nonce);
            self.sender += 1;
            let start = Instant::now();
            let wall = std::time::SystemTime::now();
            let ids = submit(net, node, &[tx]);
            let Some(id) = ids.first() else {
                out.push(limit);
                continue;
            };
            loop {
                let (code, v) = net.get(node, &format!("/v1/txs/{id}"));
                if code == 200 && v["status"] == "finalized" {
                    let took = start.elapsed();
                    if self.slowest.as_ref().is_none_or(|s| s.2 < took) {
                        self.slowest = Some((
                            time_of_day(wall),
                            time_of_day(wall + took),
                            took,
                            format!("{id} (height {})", v["height"]),
                        ));
                    }
                    out.push(took);
                    break;
                }
                if start.elapsed() >= limit {
                    out.push(limit);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        out
    }
}

/// `p`-th percentile (0..=100) of `xs`, in ms.
pub fn percentile_ms(xs: &[Duration], p: f64) -> u64 {
    let mut v: Vec<u128> = xs.iter().map(|d| d.as_millis()).collect();
    v.sort_unstable();
    if v.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)] as u64
}

/// CPU time (user + system) process `pid` has used, in ms.
pub fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field overall, stime the 15th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|x| x.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // SAFETY: sysconf only reads its argument.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1000 / hz
}

/// Resident memory of process `pid` now (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Measures the disk while a test measures finality: a thread appends 4 KiB
/// to a file in `dir` and fsyncs it every 20 ms, keeping the slowest
/// fsync. A node's block is final only once its commit is synced, so a
/// disk that stalls (another process's heavy writes on a shared machine)
/// delays finality by as much, whatever the network does; tests that bound
/// finality add this to their bound rather than blame the node for it.
pub struct DiskProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl DiskProbe {
    /// Starts probing with a file in `dir`.
    pub fn start(dir: &std::path::Path) -> DiskProbe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = std::sync::Arc::clone(&stop);
        let path = dir.join("disk-probe");
        let thread = std::thread::spawn(move || {
            let mut f = std::fs::File::create(&path).expect("the disk probe's file");
            let mut worst = Duration::ZERO;
            while !s.load(std::sync::atomic::Ordering::Acquire) {
                f.write_all(&[0u8; 4096]).expect("the disk probe writes");
                let t = Instant::now();
                f.sync_data().expect("the disk probe syncs");
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_file(&path);
            worst
        });
        DiskProbe { stop, thread }
    }

    /// Stops probing; the slowest fsync seen.
    pub fn stop(self) -> Duration {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.join().expect("the disk probe thread")
    }
}
