//! Real namespaces, real TCP through the router. Each test skips (with a
//! message) where namespaces are refused; as root on Linux they run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use strata_netlab::{Lab, LabError, Link};

fn lab(hosts: usize) -> Option<Lab> {
    match Lab::new(hosts, 7) {
        Ok(lab) => Some(lab),
        Err(LabError::Refused(why)) => {
            eprintln!("skipped: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// An echo server on host `i`, port 7000: answers each connection's
/// bytes until it closes.
fn echo_server(lab: &Lab, i: usize) {
    let addr = lab.addr(i);
    let listener = lab.in_host(i, || TcpListener::bind((addr, 7000)).unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// Connects from host `from` to host `to`'s echo server and times one
/// round trip of `bytes` bytes after the connection is up.
fn echo_round_trip(lab: &Lab, from: usize, to: usize, bytes: usize) -> std::io::Result<Duration> {
    let addr = (lab.addr(to), 7000).into();
    let mut c = lab.in_host(from, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let msg = vec![0x5a; bytes];
    let t = Instant::now();
    // Written from another thread: a message larger than the socket
    // buffers would otherwise block both ends' writes.
    let mut w = c.try_clone()?;
    let sent = msg.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent));
    let mut back = vec![0u8; bytes];
    c.read_exact(&mut back)?;
    writer.join().expect("the writer does not panic")?;
    assert_eq!(back, msg);
    Ok(t.elapsed())
}

#[test]
fn delay_is_paid_once_per_direction() {
    let Some(lab) = lab(2) else { return };
    echo_server(&lab, 1);
    let ideal = echo_round_trip(&lab, 0, 1, 100).unwrap();
    lab.set_links(|_, _| Link::delay_ms(30));
    let rtt = echo_round_trip(&lab, 0, 1, 100).unwrap();
    // 30 ms there and 30 back; nothing makes it shorter.
    assert!(
        rtt >= Duration::from_millis(60),
        "round trip {rtt:?} under 60 ms"
    );
    assert!(
        ideal < Duration::from_millis(60),
        "an ideal link took {ideal:?}"
    );
    assert!(lab.stats(0, 1).delivered > 0 && lab.stats(1, 0).delivered > 0);
}

#[test]
fn a_partition_cuts_and_a_heal_restores() {
    let Some(lab) = lab(3) else { return };
    echo_server(&lab, 2);
    lab.partition(&[&[0], &[1, 2]]);
    assert!(echo_round_trip(&lab, 0, 2, 10).is_err(), "crossed a cut");
    echo_round_trip(&lab, 1, 2, 10).expect("within a group");
    assert!(lab.stats(0, 2).dropped_partition > 0);
    lab.heal();
    echo_round_trip(&lab, 0, 2, 10).expect("after the heal");
}

#[test]
fn loss_is_recovered_by_tcp_and_counted() {
    let Some(lab) = lab(2) else { return };
    echo_server(&lab, 1);
    lab.set_links(|_, _| Link::IDEAL.loss_percent(5.0));
    // 1 MiB through a 5 % lossy link arrives whole, by retransmission.
    echo_round_trip(&lab, 0, 1, 1 << 20).unwrap();
    let s = lab.stats(0, 1);
    assert!(s.dropped_loss > 0, "{s:?}");
    assert!(s.delivered > 500, "{s:?}");
}

#[test]
fn bandwidth_bounds_a_transfer() {
    let Some(lab) = lab(2) else { return };
    echo_server(&lab, 1);
    // 16 Mbit/s each way: 1 MiB takes at least 0.5 s to go there.
    lab.set_links(|_, _| Link::IDEAL.mbit_per_s(16));
    let t = echo_round_trip(&lab, 0, 1, 1 << 20).unwrap();
    assert!(
        t >= Duration::from_millis(500),
        "1 MiB in {t:?} at 16 Mbit/s"
    );
}

#[test]
fn the_controller_reaches_every_host_unshaped() {
    let Some(lab) = lab(2) else { return };
    echo_server(&lab, 0);
    lab.set_links(|_, _| Link::delay_ms(200));
    let addr = (lab.addr(0), 7000).into();
    let t = Instant::now();
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    c.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn commands_run_inside_a_host() {
    let Some(lab) = lab(1) else { return };
    lab.sysctl(0, "net.ipv4.tcp_slow_start_after_idle=0")
        .unwrap();
    let out = lab
        .command(0, "sysctl")
        .args(["-n", "net.ipv4.tcp_slow_start_after_idle"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    assert!(lab.sysctl(0, "net.no.such.setting=1").is_err());
    let out = lab
        .command(0, "ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&lab.addr(0).to_string()), "{text}");
}
