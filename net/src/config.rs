//! Node configuration: a by-value builder whose fields document defaults.

use std::net::SocketAddr;

use crate::error::{Error, Result};
use crate::limits::*;

/// Configuration of a network node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:0`.
    pub listen_addr: SocketAddr,
    /// Seed addresses dialed at start. Default none.
    pub seeds: Vec<SocketAddr>,
    /// Chain id; peers on another chain are refused. Default all zero.
    pub chain_id: [u8; 32],
    /// Largest frame payload. Default 4 MiB, at most 64 MiB.
    pub frame_payload_bytes_max: u32,
    /// Inbound peers (authenticated, not reserved) at once. When full, a
    /// newcomer takes the place of the worst-scored such peer if that one
    /// misbehaved (score below 0); otherwise the newcomer is refused.
    /// Default 32.
    pub inbound_peers_max: usize,
    /// Node keys always admitted, inbound or outbound, beyond
    /// `inbound_peers_max`, even from an address banned for unauthenticated
    /// misbehaviour (their key is proven first): the validators, so that
    /// strangers filling the inbound slots, or sharing a validator's IP
    /// address, cannot cut it off. Default none.
    pub reserved_peers: Vec<[u8; 32]>,
    /// Reserved peers this node keeps a connection with, by node key and
    /// address: whenever one is not connected it is dialed (again at most
    /// every [`crate::limits::RESERVED_REDIAL_MS`]), beyond
    /// `outbound_peers_max`. A validator lists the other validators, so
    /// validators form a full mesh however many there are, rather than
    /// the random graph that `outbound_peers_max` random dials give. Both
    /// ends may dial at once; the two sides keep the same one connection.
    /// Default none.
    pub reserved_dials: Vec<([u8; 32], SocketAddr)>,
    /// Connections in their handshake at once. Default
    /// [`HANDSHAKES_MAX_DEFAULT`] (128).
    pub handshakes_max: usize,
    /// Inbound connections in their handshake from one IP address. Default
    /// [`HANDSHAKES_PER_IP_MAX_DEFAULT`] (32).
    pub handshakes_per_ip_max: usize,
    /// Outbound connection target and limit. Default 8.
    pub outbound_peers_max: usize,
    /// Per-connection send queue limit. Default 8 MiB.
    pub send_queue_bytes_max: usize,
    /// Handshake timeout. Default 5 s.
    pub handshake_timeout_ms: u64,
    /// Ping interval. Default 5 s.
    pub ping_interval_ms: u64,
    /// Pong timeout. Default 15 s.
    pub pong_timeout_ms: u64,
    /// Gossip fanout (peers pushed to per batch). Default 4.
    pub gossip_fanout: usize,
    /// Push batch flush interval. Default 20 ms.
    pub gossip_flush_interval_ms: u64,
    /// Ask every peer to send this node no gossip ([`Message::Quiet`]
    /// after the handshake): for a client that only makes requests, such
    /// as the bench, which would otherwise be pushed every transaction it
    /// submitted back from every node. Default false.
    ///
    /// [`Message::Quiet`]: crate::message::Message::Quiet
    pub gossip_quiet: bool,
    /// Push items received from peers on to other peers as soon as they
    /// arrive, before the application has looked at them. Default true.
    /// A node that validates items (transactions: signatures) sets false
    /// and passes on only those it accepted, with [`Handle::relay`]: then
    /// a forged item stops at the first node, and the peer that sent it is
    /// the one to blame.
    ///
    /// [`Handle::relay`]: crate::Handle::relay
    pub relay_received: bool,
    /// Pushed items accepted per peer per second. Default 5000.
    pub push_items_per_s: u64,
    /// Gossip items (pushed or pulled) accepted per second from all peers
    /// that are not reserved, together; beyond it a frame's items are
    /// dropped before they are hashed, and nobody is blamed (no stranger
    /// need be at fault). 0, the library's default, means no such limit.
    /// Why a node sets one: anyone can make keys, so each stranger within
    /// its own `push_items_per_s` does not bound what strangers together
    /// cost; reserved peers (the validators) are not held to it, so a
    /// flood of strangers cannot crowd out their gossip.
    pub stranger_items_per_s_total: u64,
    /// Inbound connections accepted per second from one IP address (burst
    /// `handshakes_per_ip_max`); beyond it they are closed at accept,
    /// counted in `Stats::accepts_refused`. 0, the library's default,
    /// means no such limit. Why a node sets one: a peer banned by its
    /// proven key can come back at once with a new key, and every
    /// handshake costs the node a signature and a check; this bounds how
    /// often one host may try.
    pub accepts_per_s_per_ip: u64,
    /// Pushed bytes accepted per peer per second. Default 8 MiB.
    pub push_bytes_per_s: u64,
    /// Node-wide seen cache size. Default 262144 ids.
    pub seen_ids_max: usize,
    /// Per-peer known-ids cache size. Default 4096 ids.
    pub sent_ids_per_peer_max: usize,
    /// Address book size. Default 4096.
    pub addr_book_entries_max: usize,
    /// Ban duration. Default 10 min.
    pub ban_duration_ms: u64,
    /// Event queue capacity; events beyond it are dropped and counted.
    /// Default 65536.
    pub events_max: usize,
    /// Outbound connect timeout. Default 3 s.
    pub connect_timeout_ms: u64,
    /// Timer tick of the event loop. Default 10 ms.
    pub tick_ms: u64,
    /// Most time a partial frame may take to arrive once started (slowloris
    /// guard). Default 10 s.
    pub partial_frame_timeout_ms: u64,
    /// Peer exchange interval (ask a random peer for addresses). Default 1 s.
    pub addr_exchange_interval_ms: u64,
    /// How long a request made with [`crate::Handle::request`] waits for its
    /// response before [`crate::Event::RequestFailed`] reports it timed out.
    /// Checked on the timer tick, so the report comes between this and this
    /// plus `tick_ms` late. Default 10 s; at least `tick_ms`, at most 10 min
    /// ([`REQUEST_TIMEOUT_MS_MAX`]).
    pub request_timeout_ms: u64,
    /// Receive through one provided-buffer ring shared by every connection
    /// (multishot receives, Linux 5.19+; `recv_buffers` buffers of
    /// [`crate::limits::RECV_BUFFER_BYTES`]). False, or a kernel that
    /// refuses the ring: one 64 KiB buffer per connection, one receive
    /// submitted per arrival. Default true.
    pub recv_buffer_ring: bool,
    /// Buffers in the receive ring: a power of two from 1 to 32 768.
    /// Default [`crate::limits::RECV_BUFFERS_DEFAULT`] (128, 4 MiB). Fewer
    /// than the receives completing at once only costs re-arming the
    /// receives that found none free.
    pub recv_buffers: u16,
    /// Test knob: make io_uring setup fail as on a kernel without it, to
    /// exercise the start-up error path. Default false.
    pub io_uring_force_unavailable: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            seeds: Vec::new(),
            chain_id: [0; 32],
            frame_payload_bytes_max: FRAME_PAYLOAD_BYTES_MAX_DEFAULT,
            inbound_peers_max: 32,
            reserved_peers: Vec::new(),
            reserved_dials: Vec::new(),
            handshakes_max: HANDSHAKES_MAX_DEFAULT,
            handshakes_per_ip_max: HANDSHAKES_PER_IP_MAX_DEFAULT,
            outbound_peers_max: 8,
            send_queue_bytes_max: SEND_QUEUE_BYTES_MAX_DEFAULT,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS_DEFAULT,
            ping_interval_ms: 5_000,
            pong_timeout_ms: 15_000,
            gossip_fanout: 4,
            gossip_flush_interval_ms: 20,
            gossip_quiet: false,
            relay_received: true,
            push_items_per_s: 5_000,
            stranger_items_per_s_total: 0,
            accepts_per_s_per_ip: 0,
            push_bytes_per_s: 8 * 1024 * 1024,
            seen_ids_max: SEEN_IDS_MAX_DEFAULT,
            sent_ids_per_peer_max: SENT_IDS_PER_PEER_MAX_DEFAULT,
            addr_book_entries_max: ADDR_BOOK_ENTRIES_MAX_DEFAULT,
            ban_duration_ms: BAN_DURATION_MS_DEFAULT,
            events_max: 65_536,
            connect_timeout_ms: 3_000,
            tick_ms: 10,
            partial_frame_timeout_ms: 10_000,
            addr_exchange_interval_ms: 1_000,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            recv_buffer_ring: true,
            recv_buffers: crate::limits::RECV_BUFFERS_DEFAULT,
            io_uring_force_unavailable: false,
        }
    }
}

impl Config {
    /// Checks relations between fields.
    pub fn validate(&self) -> Result<()> {
        if self.frame_payload_bytes_max > FRAME_PAYLOAD_BYTES_MAX_CEILING {
            return Err(Error::Config(format!(
                "frame_payload_bytes_max {} above the ceiling {}",
                self.frame_payload_bytes_max, FRAME_PAYLOAD_BYTES_MAX_CEILING
            )));
        }
        if self.send_queue_bytes_max < self.frame_payload_bytes_max as usize {
            return Err(Error::Config(
                "send_queue_bytes_max must hold at least one largest frame".into(),
            ));
        }
        if self.seen_ids_max == 0
            || self.sent_ids_per_peer_max == 0
            || self.addr_book_entries_max == 0
        {
            return Err(Error::Config("cache sizes must be positive".into()));
        }
        if self.pong_timeout_ms <= self.ping_interval_ms {
            return Err(Error::Config(
                "pong_timeout_ms must exceed ping_interval_ms".into(),
            ));
        }
        if self.handshakes_max == 0 || self.handshakes_per_ip_max == 0 {
            return Err(Error::Config(
                "handshakes_max and handshakes_per_ip_max must be positive".into(),
            ));
        }
        if self.events_max == 0 || self.tick_ms == 0 || self.gossip_fanout == 0 {
            return Err(Error::Config(
                "events_max, tick_ms and gossip_fanout must be positive".into(),
            ));
        }
        if !self.recv_buffers.is_power_of_two() || self.recv_buffers > 32_768 {
            return Err(Error::Config(format!(
                "recv_buffers {} must be a power of two from 1 to 32768",
                self.recv_buffers
            )));
        }
        // Deadlines are checked on the tick, so a timeout shorter than one
        // tick could not be honoured.
        if self.request_timeout_ms < self.tick_ms
            || self.request_timeout_ms > REQUEST_TIMEOUT_MS_MAX
        {
            return Err(Error::Config(format!(
                "request_timeout_ms {} must be between tick_ms ({}) and {}",
                self.request_timeout_ms, self.tick_ms, REQUEST_TIMEOUT_MS_MAX
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_is_refused() {
        Config::default().validate().unwrap();
        let c = Config {
            frame_payload_bytes_max: u32::MAX,
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(Error::Config(_))));
        for request_timeout_ms in [0, REQUEST_TIMEOUT_MS_MAX + 1] {
            let c = Config {
                request_timeout_ms,
                ..Config::default()
            };
            assert!(matches!(c.validate(), Err(Error::Config(_))));
        }
    }
}
