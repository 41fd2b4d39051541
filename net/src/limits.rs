//! Every limit of the network layer, in one place. Config fields default to
//! these; relations between them are checked at compile time.

/// Default largest frame payload: 4 MiB.
pub const FRAME_PAYLOAD_BYTES_MAX_DEFAULT: u32 = 4 * 1024 * 1024;
/// Hard ceiling on the configurable frame payload size (64 MiB): a config can
/// never make the decoder allocate more than this per connection.
pub const FRAME_PAYLOAD_BYTES_MAX_CEILING: u32 = 64 * 1024 * 1024;
/// Most ids in one announce or pull request message.
pub const IDS_PER_MESSAGE_MAX: u32 = 4096;
/// Most items in one push or pull response message.
pub const ITEMS_PER_MESSAGE_MAX: u32 = 4096;
/// Most addresses in one addrs message.
pub const ADDRS_PER_MESSAGE_MAX: u32 = 256;
/// Largest single gossip item (1 MiB).
pub const ITEM_BYTES_MAX: u32 = 1024 * 1024;
/// Default address book capacity.
pub const ADDR_BOOK_ENTRIES_MAX_DEFAULT: usize = 4096;
/// Default node-wide seen cache capacity (ids).
pub const SEEN_IDS_MAX_DEFAULT: usize = 1 << 18;
/// Default per-peer "already sent" cache capacity (ids).
pub const SENT_IDS_PER_PEER_MAX_DEFAULT: usize = 4096;
/// Default per-connection send queue limit (8 MiB): above it, sends are
/// refused with backpressure and a peer that stays above it is dropped.
pub const SEND_QUEUE_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;
/// Largest frame payload accepted before the peer is authenticated: a
/// hello (100 bytes) or an auth signature (64) fits with room to spare.
/// Until the handshake is done a connection can make this node buffer no
/// more than this, whatever `frame_payload_bytes_max` says.
pub const HANDSHAKE_FRAME_PAYLOAD_BYTES_MAX: u32 = 256;
/// Default limit on connections still in their handshake (inbound and
/// outbound together). Each costs a socket, a receive slot and at most
/// [`HANDSHAKE_FRAME_PAYLOAD_BYTES_MAX`] of buffer, for at most the
/// handshake timeout.
pub const HANDSHAKES_MAX_DEFAULT: usize = 128;
/// Default limit on inbound connections in their handshake from one IP
/// address, so one host cannot take every handshake slot.
pub const HANDSHAKES_PER_IP_MAX_DEFAULT: usize = 32;
/// Default handshake timeout.
pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Score at or below which a peer is disconnected and banned.
pub const SCORE_BAN_THRESHOLD: i32 = -100;
/// Default ban duration.
pub const BAN_DURATION_MS_DEFAULT: u64 = 10 * 60 * 1000;
/// Default time a request made with `Handle::request` waits for its
/// response before the caller is told it timed out (10 s).
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Longest configurable request timeout (10 min). Every pending request
/// holds a deadline entry until it expires, so an unbounded timeout would let
/// answered-but-not-yet-expired entries pile up for that long.
pub const REQUEST_TIMEOUT_MS_MAX: u64 = 10 * 60 * 1000;
/// Requests awaiting a response per peer; one more is refused with
/// `RequestFailure::TooManyPending`.
pub const PENDING_REQUESTS_PER_PEER_MAX: usize = 1024;

/// Default buffers in a node's provided-buffer receive ring
/// (`Config::recv_buffers`): with [`RECV_BUFFER_BYTES`], 4 MiB per node
/// whatever its number of peers. A buffer is held only while the loop
/// handles the completion that filled it.
pub const RECV_BUFFERS_DEFAULT: u16 = 128;
/// Bytes of each receive buffer of the ring.
pub const RECV_BUFFER_BYTES: u32 = 32 * 1024;

const _: () = assert!(RECV_BUFFERS_DEFAULT.is_power_of_two());
// A hello (100 bytes) and an auth (64 bytes) fit before authentication.
const _: () = assert!(HANDSHAKE_FRAME_PAYLOAD_BYTES_MAX >= 100);
const _: () = assert!(HANDSHAKES_PER_IP_MAX_DEFAULT <= HANDSHAKES_MAX_DEFAULT);
const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX_DEFAULT <= FRAME_PAYLOAD_BYTES_MAX_CEILING);
const _: () = assert!(ITEM_BYTES_MAX < FRAME_PAYLOAD_BYTES_MAX_DEFAULT);
// An announce of the most ids fits in a default frame.
const _: () = assert!(2 + IDS_PER_MESSAGE_MAX * 32 <= FRAME_PAYLOAD_BYTES_MAX_DEFAULT);
const _: () = assert!(REQUEST_TIMEOUT_MS_DEFAULT <= REQUEST_TIMEOUT_MS_MAX);
const _: () = assert!(SEND_QUEUE_BYTES_MAX_DEFAULT >= FRAME_PAYLOAD_BYTES_MAX_DEFAULT as usize);

/// Receive buffer per connection where provided-buffer rings are missing
/// (64 KiB).
pub const RECV_BUF_BYTES: usize = 64 * 1024;
/// Submission queue entries of the event loop's io_uring.
pub const RING_ENTRIES: u32 = 1024;
/// Completions reaped per wait (the batch the loop handles at once).
pub const COMPLETIONS_PER_WAIT: usize = 512;
/// Commands handled between two clock reads.
pub const COMMANDS_PER_CLOCK_READ: usize = 64;
/// Gossip items kept to answer pulls (an LRU of the most recent).
pub const ITEM_STORE_MAX: usize = 16_384;
/// Items waiting for the next gossip flush; more are dropped.
pub const PENDING_PUSH_MAX: usize = 65_536;
/// Ids this node pulled and has not received yet (an LRU): a response
/// item whose id is not among them is unsolicited.
pub const REQUESTED_IDS_MAX: usize = 65_536;
/// IP addresses whose accept bucket (`Config::accepts_per_s_per_ip`) is
/// remembered at once; one forgotten starts again with a full bucket.
pub const ACCEPT_IPS_REMEMBERED_MAX: usize = 4_096;
/// Wait before an id still not received is pulled again when another peer
/// announces it.
pub const PULL_RETRY_MS: u64 = 2_000;
/// Bans remembered at once (past it, the soonest to expire is forgotten).
pub const BANS_MAX: usize = 4096;
/// Wait before an address that failed is dialed again.
pub const DIAL_RETRY_MS: u64 = 500;
/// Wait before a reserved peer (`Config::reserved_dials`) not connected is
/// dialed again. A validator that is down costs one dial a second.
pub const RESERVED_REDIAL_MS: u64 = 1_000;
/// How often the tick looks for outbound connections to open (at most 4
/// dials each time, up to `Config::outbound_peers_max`).
pub const OUTBOUND_DIAL_INTERVAL_MS: u64 = 100;
/// How often a peer with a negative score gets one point back.
pub const SCORE_RECOVERY_INTERVAL_MS: u64 = 1_000;
/// Addresses sent in one answer to a peer's address request.
pub const ADDRS_ANSWER_MAX: usize = 64;
/// Smallest length at which the request deadline queue is compacted, so
/// small queues are not rescanned on every few requests.
pub const DEADLINES_COMPACT_MIN: usize = 1024;
