//! Every limit of the merkle module, in one place.

/// Bits in a trie path (a blake3 output).
pub const PATH_BITS: usize = 256;

/// Trie levels stored per page. A page is the 4-level (16-way) subtree under
/// a nibble-aligned path prefix; its 16 bottom positions hold a leaf, a
/// child page or nothing. See `docs/storage-format.md` for why 4 and not 8.
pub const PAGE_BITS: usize = 4;

/// Bottom positions of one page (`2^PAGE_BITS`).
pub const PAGE_FANOUT: usize = 1 << PAGE_BITS;

/// Page levels a path can cross (`PATH_BITS / PAGE_BITS`).
pub const PAGE_LEVELS: usize = PATH_BITS / PAGE_BITS;

/// Bytes of one encoded page item: tag + path + value hash (a leaf; a child
/// is tag + index + hash + version = 42 bytes, less).
pub const PAGE_ITEM_BYTES_MAX: usize = 1 + 32 + 32;

/// Bytes of an encoded page: format + level + count + items.
pub const PAGE_BYTES_MAX: usize = 3 + PAGE_FANOUT * PAGE_ITEM_BYTES_MAX;

/// Longest proof: a sibling at every one of the 256 levels.
pub const PROOF_SIBLINGS_MAX: usize = PATH_BITS;

/// Bytes of the largest valid encoded proof: header (format, terminal kind,
/// u16 depth) + bitmap + other leaf + every sibling. Decoding rejects
/// anything longer before looking at it.
pub const PROOF_BYTES_MAX: usize = 4 + PROOF_SIBLINGS_MAX / 8 + 64 + PROOF_SIBLINGS_MAX * 32;

/// Outside items a range proof can hold. The verifier walks the path space
/// from the root and only descends into nodes that *straddle* a bound
/// (contain paths both inside and outside `[lo, hi]`). Such a node contains
/// `lo` or `hi`, so there are at most two per depth (one per bound), at
/// depths 0..=255 (a depth-256 node is one path and cannot straddle). Each
/// straddling node has at most one child entirely outside the range — the
/// other child holds the bound — and only such children are outside items:
/// at most `2 × 256` in all (511, exactly: depth 0 has one node).
pub const RANGE_PROOF_ITEMS_MAX: usize = 2 * PATH_BITS;

/// Bytes of the largest outside item: tag + path + value hash (a leaf; an
/// internal node is tag + hash, an empty subtree the tag alone).
pub const RANGE_PROOF_ITEM_BYTES_MAX: usize = 1 + 32 + 32;

/// Bytes of the largest valid encoded range proof: header (format, u16
/// item count) + every item a leaf. Decoding rejects anything longer before
/// looking at it.
pub const RANGE_PROOF_BYTES_MAX: usize = 3 + RANGE_PROOF_ITEMS_MAX * RANGE_PROOF_ITEM_BYTES_MAX;

/// Default number of latest committed roots that can still be proven against
/// (`TrieConfig::roots_retained`).
pub const ROOTS_RETAINED_DEFAULT: u64 = 16;

/// Upper bound for `TrieConfig::roots_retained`.
pub const ROOTS_RETAINED_MAX: u64 = 1 << 20;

/// Updates accepted by one `apply` call.
pub const BATCH_UPDATES_MAX: usize = 1 << 24;

/// Threads `apply` and `root_of_sorted_parallel` may use.
pub const THREADS_MAX: usize = 16;

/// Batches smaller than this are applied on the calling thread: spawning
/// costs more than it saves.
pub const PARALLEL_BATCH_MIN: usize = 2048;

const _: () = assert!(PATH_BITS % PAGE_BITS == 0);
const _: () = assert!(PAGE_BITS <= 8, "a page index must fit a byte");
const _: () = assert!(PAGE_FANOUT <= u8::MAX as usize);
const _: () = assert!(PROOF_SIBLINGS_MAX <= u16::MAX as usize);
const _: () = assert!(RANGE_PROOF_ITEMS_MAX <= u16::MAX as usize);
// One straddling node at depth 0, two at each of depths 1..=255.
const _: () = assert!(2 * PATH_BITS - 1 <= RANGE_PROOF_ITEMS_MAX);
const _: () = assert!(RANGE_PROOF_BYTES_MAX == 3 + 512 * 65);
const _: () = assert!(ROOTS_RETAINED_DEFAULT >= 1 && ROOTS_RETAINED_DEFAULT <= ROOTS_RETAINED_MAX);
