//! The node's file-descriptor budget.
//!
//! Every socket, WAL, table being written and manifest is a descriptor,
//! and running out is a local fault that stops a node cold: before this
//! budget, 1,100 idle HTTP connections under `ulimit -n 1024` made the next
//! WAL creation fail and consensus halt. So at start
//! the node raises its soft open-file limit to the hard limit, keeps
//! [`STORAGE_FDS_RESERVE`] for storage and [`PROCESS_FDS_BASE`] for its
//! own fixed descriptors, and sizes the listeners to what is left: the API
//! stops accepting at its connection limit, and the P2P layer refuses
//! connections beyond its peer and handshake limits, so neither can take
//! the storage reserve. When the limit is too low for the configured
//! connection counts, the API's and then the handshake limits are lowered
//! (with a warning); when it is too low even for the minimums, start fails
//! saying what `ulimit -n` to set.

use tracing::warn;

use crate::config::NodeConfig;

/// Descriptors kept for storage: the WALs (the live one and up to the
/// frozen memtables waiting for their flush), the manifest, tables being
/// written by flushes and compactions, directory syncs. Sorted tables
/// are read through memory maps and hold no descriptor.
pub const STORAGE_FDS_RESERVE: u64 = 256;
/// Descriptors the process holds whatever its load: standard streams,
/// io_uring rings, eventfds, the listeners, the tokio runtime's epoll and
/// wake pipes, signal handling, log files.
pub const PROCESS_FDS_BASE: u64 = 64;
/// The least the API is lowered to before start fails.
const HTTP_CONNECTIONS_MIN: usize = 16;
/// The least the handshake limit is lowered to.
const HANDSHAKES_MIN: usize = 16;

/// Connection limits that fit the descriptor budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdPlan {
    /// The open-file limit in force.
    pub limit: u64,
    /// API connections at once.
    pub http_connections_max: usize,
    /// P2P connections in their handshake at once.
    pub handshakes_max: usize,
}

/// Raises the soft open-file limit to the hard limit; returns the limit
/// now in force. A refusal leaves the current limit (and is logged).
pub fn raise() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the struct it is given, which is valid.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        warn!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        );
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `setrlimit` only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return want.rlim_cur;
        }
        warn!(
            "cannot raise the open-file limit from {} to {}: {}",
            lim.rlim_cur,
            lim.rlim_max,
            std::io::Error::last_os_error()
        );
    }
    lim.rlim_cur
}

/// Fits the connection limits of `config` (with `validators` reserved
/// peer slots) into `limit` descriptors.
///
/// # Errors
/// When even the minimum limits do not fit, naming the `ulimit -n` needed.
pub fn plan(limit: u64, config: &NodeConfig, validators: usize) -> Result<FdPlan, String> {
    let n = &config.net;
    let fixed = STORAGE_FDS_RESERVE
        + PROCESS_FDS_BASE
        + (n.inbound_peers_max + n.outbound_peers_max + validators) as u64;
    let mut http = config.http.connections_max;
    let mut handshakes = n.handshakes_max;
    let need = |http: usize, handshakes: usize| fixed + (http + handshakes) as u64;
    if need(http, handshakes) > limit {
        let room = limit.saturating_sub(need(0, handshakes)) as usize;
        http = http.min(room).max(HTTP_CONNECTIONS_MIN);
    }
    if need(http, handshakes) > limit {
        let room = limit.saturating_sub(need(http, 0)) as usize;
        handshakes = handshakes.min(room).max(HANDSHAKES_MIN);
    }
    if need(http, handshakes) > limit {
        return Err(format!(
            "the open-file limit ({limit}) is too low for this node: it needs at least {} \
             (storage reserve {STORAGE_FDS_RESERVE}, peers, handshakes, API connections); \
             raise it with `ulimit -n`, or lower net.inbound_peers_max",
            need(http, handshakes)
        ));
    }
    if (http, handshakes) != (config.http.connections_max, n.handshakes_max) {
        warn!(
            limit,
            http_connections_max = http,
            handshakes_max = handshakes,
            "open-file limit too low for the configured connection limits: lowered them"
        );
    }
    Ok(FdPlan {
        limit,
        http_connections_max: http,
        handshakes_max: handshakes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_lowered_to_fit_and_too_little_is_refused() {
        let config = NodeConfig::default();
        let roomy = plan(1 << 20, &config, 4).unwrap();
        assert_eq!(roomy.http_connections_max, config.http.connections_max);
        assert_eq!(roomy.handshakes_max, config.net.handshakes_max);
        // 1,024: the API gives way first.
        let tight = plan(1024, &config, 4).unwrap();
        let used = STORAGE_FDS_RESERVE
            + PROCESS_FDS_BASE
            + (config.net.inbound_peers_max + config.net.outbound_peers_max + 4) as u64
            + (tight.http_connections_max + tight.handshakes_max) as u64;
        assert!(used <= 1024, "{tight:?} uses {used}");
        let tighter = plan(600, &config, 4).unwrap();
        assert!(tighter.http_connections_max < config.http.connections_max);
        assert!(tighter.http_connections_max >= HTTP_CONNECTIONS_MIN);
        let err = plan(300, &config, 4).unwrap_err();
        assert!(err.contains("ulimit -n"), "{err}");
    }

    #[test]
    fn raise_reaches_the_hard_limit() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise`.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(raise(), lim.rlim_max);
    }
}
