//! The kill -9 step shared by the crash tests of `strata-storage`
//! (`tests/lsm_crash.rs`) and `strata-consensus`
//! (`tests/db_chain_crash.rs`, which includes this file by path): run one
//! test of the current test binary as a child process, kill it with
//! SIGKILL after a delay, and read what it acknowledged before it died.
//!
//! The child acknowledges progress by printing lines `ACK <n>` on stdout,
//! each only after what `n` stands for was made durable; the parent then
//! checks that everything up to the last acknowledged `n` survived.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs test `test_name` of this test binary (`--exact`, ignored tests
/// included) in a child process with the environment variables `envs`,
/// sends it SIGKILL after `delay`, and returns the last `n` of the lines
/// `ACK <n>` it printed (`None` when it printed none).
pub fn run_and_kill(test_name: &str, envs: &[(&str, String)], delay: Duration) -> Option<u64> {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test_name, "--exact", "--include-ignored", "--nocapture"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut proc = command.spawn().unwrap();
    let stdout = proc.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut last = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ACK ") {
                last = Some(n.parse::<u64>().unwrap());
            }
        }
        last
    });
    std::thread::sleep(delay);
    proc.kill().unwrap(); // SIGKILL
    proc.wait().unwrap();
    reader.join().unwrap()
}
