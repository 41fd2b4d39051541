//! A CPU-starved host: a process held to a share of one CPU by a cgroup's
//! CFS quota, as a busy or undersized machine would hold it.
//!
//! SIGSTOP bursts stall a process outright; a quota is the other kind of
//! lag, the steady one: the process runs, but only `percent` of every
//! 100 ms period, and its threads wait for the next period when the
//! budget is spent.
//!
//! Works with the cgroup v2 `cpu` controller (`cpu.max`) where it is
//! enabled, else with the v1 `cpu` hierarchy (`cpu.cfs_quota_us`). Where
//! neither is writable, [`CpuLimit::new`] returns [`LabError::Refused`].

use std::path::{Path, PathBuf};

use crate::LabError;

/// The CFS period every quota is a share of, microseconds.
const PERIOD_US: u64 = 100_000;

/// A process held to a share of one CPU until dropped; dropping moves it
/// back to the root cgroup and removes the cgroup made for it.
pub struct CpuLimit {
    dir: PathBuf,
    root: PathBuf,
    pid: u32,
    v2: bool,
}

impl CpuLimit {
    /// Holds process `pid` (all its threads) to `percent` of one CPU, 1 to
    /// 100.
    pub fn new(pid: u32, percent: u32) -> Result<CpuLimit, LabError> {
        assert!((1..=100).contains(&percent), "percent is 1 to 100");
        let quota_us = PERIOD_US * u64::from(percent) / 100;
        let v2_root = Path::new("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(v2_root.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"));
        let root = if v2 {
            v2_root.to_path_buf()
        } else {
            v2_root.join("cpu")
        };
        if !root.join("cgroup.procs").exists() {
            return Err(LabError::Refused(
                "no cgroup cpu controller (neither v2 cpu.max nor v1 cpu)".into(),
            ));
        }
        let dir = root.join(format!("strata-netlab-{}-{pid}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| LabError::Refused(format!("mkdir {}: {e}", dir.display())))?;
        let limit = CpuLimit { dir, root, pid, v2 };
        if v2 {
            limit.write("cpu.max", &format!("{quota_us} {PERIOD_US}"))?;
        } else {
            limit.write("cpu.cfs_period_us", &PERIOD_US.to_string())?;
            limit.write("cpu.cfs_quota_us", &quota_us.to_string())?;
        }
        limit.write("cgroup.procs", &pid.to_string())?;
        Ok(limit)
    }

    /// Periods in which the process used its whole budget and waited: how
    /// often the limit actually bit.
    pub fn throttled_periods(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("cpu.stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("nr_throttled "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), LabError> {
        std::fs::write(self.dir.join(file), value).map_err(|e| LabError::Setup {
            step: format!("write {value:?} to {}/{file}", self.dir.display()),
            error: e.to_string(),
        })
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // The process may be gone already; either way the cgroup must be
        // empty before it can be removed.
        let _ = std::fs::write(self.root.join("cgroup.procs"), self.pid.to_string());
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!(
                "strata-netlab: cgroup {} not removed (v2 {}): {e}",
                self.dir.display(),
                self.v2
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy child held to 10 % of a CPU gets throttled, and the cgroup
    /// is gone after the drop.
    #[test]
    fn a_busy_process_is_throttled_to_its_share() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn sh");
        let limit = match CpuLimit::new(child.id(), 10) {
            Ok(l) => l,
            Err(LabError::Refused(why)) => {
                eprintln!("skipped: {why}");
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let dir = limit.dir.clone();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while limit.throttled_periods() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "a spinning process under a 10 % quota was never throttled"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        drop(limit);
        assert!(!dir.exists(), "{} left behind", dir.display());
        let _ = child.kill();
        let _ = child.wait();
    }
}
