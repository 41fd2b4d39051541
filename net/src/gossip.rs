//! Push/pull gossip of opaque items with 32-byte ids, sans-IO.
//!
//! - A node-wide [`SeenCache`] (a set-associative table of ids, see
//!   [`crate::seen`]) drops duplicates before anything else is done with
//!   them: most pushed items are duplicates, so the duplicate path is the
//!   hot one and it touches one bucket.
//! - Each peer has a [`PeerGossip`]: an LRU of ids already sent to or
//!   received from it (so an id never crosses a link twice while remembered)
//!   and two [`TokenBucket`]s limiting pushed items and bytes from it.
//! - Push is the limited path (it is where spam comes in); pull of announced
//!   ids is the default path.

use strata_storage::lru::{IdentityState, LruCache};

use crate::message::{ItemId, Items};
pub use crate::seen::SeenCache;

/// A token bucket: `capacity` tokens, refilled at `refill_per_s`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: u64,
    capacity: u64,
    refill_per_s: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(capacity: u64, refill_per_s: u64, now_ms: u64) -> Self {
        TokenBucket {
            tokens: capacity,
            capacity,
            refill_per_s,
            last_ms: now_ms,
        }
    }
    /// Takes `n` tokens if available.
    #[inline]
    pub fn try_take(&mut self, n: u64, now_ms: u64) -> bool {
        let elapsed_ms = now_ms.saturating_sub(self.last_ms);
        let added = elapsed_ms.saturating_mul(self.refill_per_s) / 1000;
        if added > 0 {
            self.tokens = self.tokens.saturating_add(added).min(self.capacity);
            self.last_ms = now_ms;
        }
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
    /// Returns `n` tokens taken by a [`TokenBucket::try_take`] whose work
    /// did not happen after all (up to the capacity).
    pub fn refund(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_add(n).min(self.capacity);
    }
    /// Tokens available now (without refilling).
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

/// Limits applied to pushes from one peer.
#[derive(Debug, Clone, Copy)]
pub struct PushLimits {
    /// Items per second (and burst).
    pub items_per_s: u64,
    /// Bytes per second (and burst).
    pub bytes_per_s: u64,
}

/// Gossip state of one peer.
pub struct PeerGossip {
    known: LruCache<ItemId, (), IdentityState>,
    items: TokenBucket,
    bytes: TokenBucket,
}

impl std::fmt::Debug for PeerGossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerGossip({} known ids)", self.known.len())
    }
}

impl PeerGossip {
    /// State for a new peer.
    pub fn new(known_ids_max: usize, limits: PushLimits, now_ms: u64) -> Self {
        PeerGossip {
            known: LruCache::with_hasher(known_ids_max, IdentityState),
            items: TokenBucket::new(limits.items_per_s, limits.items_per_s, now_ms),
            bytes: TokenBucket::new(limits.bytes_per_s, limits.bytes_per_s, now_ms),
        }
    }
    /// Marks `id` as known to the peer; true when it was not (so send it).
    #[inline]
    pub fn mark_known(&mut self, id: &ItemId) -> bool {
        if self.known.contains(id) {
            return false;
        }
        self.known.put(*id, ());
        true
    }
    /// True when the peer is known to have `id`.
    pub fn knows(&self, id: &ItemId) -> bool {
        self.known.contains(id)
    }
}

/// Outcome of handling one push (or pull response) from a peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Items new to this node, handed to `route`.
    pub new: u32,
    /// Items already seen.
    pub duplicate: u32,
    /// Items dropped by the rate limit (the peer is scored for flooding).
    pub rate_limited: u32,
    /// New items whose id is not the blake3 hash of their bytes: dropped
    /// (the peer is scored for it; honest nodes never send one).
    pub mismatched: u32,
}

/// Handles the items of a push from `peer`: rate limit, dedup against the
/// node-wide seen cache, remember the ids as known to the sender, and route
/// each new item. Allocates nothing.
///
/// An item's id is the blake3 hash of its bytes, and a new item's is
/// checked before the seen cache records it: otherwise a peer could send
/// junk under the id of a transaction it saw elsewhere, and every node it
/// reached would then drop the real one as a duplicate (and relay the junk
/// under that id). Duplicates are dropped without hashing: whatever their
/// bytes, nothing is recorded or routed for them.
#[inline]
pub fn on_items(
    seen: &mut SeenCache,
    peer: &mut PeerGossip,
    items: Items<'_>,
    rate_limited: bool,
    now_ms: u64,
    mut route: impl FnMut(&ItemId, &[u8]),
) -> PushOutcome {
    let mut out = PushOutcome::default();
    for (id, item) in items.iter() {
        if rate_limited
            && !(peer.items.try_take(1, now_ms) && peer.bytes.try_take(item.len() as u64, now_ms))
        {
            out.rate_limited += 1;
            continue;
        }
        // Start the (likely cold) seen-cache load now so that it overlaps
        // with the hash (or the per-peer LRU update) instead of following it.
        seen.prefetch(id);
        if seen.contains(id) {
            peer.mark_known(id);
            out.duplicate += 1;
            continue;
        }
        if blake3::hash(item).as_bytes() != id {
            out.mismatched += 1;
            continue;
        }
        peer.mark_known(id);
        let fresh = seen.insert(id);
        debug_assert!(fresh, "checked absent just above");
        out.new += 1;
        route(id, item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::write_item;

    #[test]
    fn bucket_refills() {
        let mut b = TokenBucket::new(10, 10, 0);
        assert!(b.try_take(10, 0));
        assert!(!b.try_take(1, 50));
        assert!(b.try_take(1, 100));
        assert!(!b.try_take(1, 100));
        assert!(b.try_take(10, 10_000));
    }

    #[test]
    fn an_item_under_another_items_id_is_dropped_and_does_not_poison_the_cache() {
        let mut seen = SeenCache::new(1024);
        let limits = PushLimits {
            items_per_s: 100,
            bytes_per_s: 1 << 20,
        };
        let mut liar = PeerGossip::new(64, limits, 0);
        let mut honest = PeerGossip::new(64, limits, 0);
        let real = b"the real transaction".as_slice();
        let real_id = *blake3::hash(real).as_bytes();
        let mut buf = Vec::new();
        write_item(&mut buf, &real_id, b"junk under the real id");
        let mut routed = Vec::new();
        let o = on_items(
            &mut seen,
            &mut liar,
            Items::from_encoded(1, &buf),
            true,
            0,
            |id, _| routed.push(*id),
        );
        assert_eq!((o.new, o.mismatched, o.duplicate), (0, 1, 0));
        assert!(routed.is_empty() && !seen.contains(&real_id));
        // The real item still gets through afterwards.
        let mut buf = Vec::new();
        write_item(&mut buf, &real_id, real);
        let o = on_items(
            &mut seen,
            &mut honest,
            Items::from_encoded(1, &buf),
            true,
            0,
            |id, item| {
                assert_eq!(item, real);
                routed.push(*id)
            },
        );
        assert_eq!((o.new, o.mismatched), (1, 0));
        assert_eq!(routed, [real_id]);
    }

    #[test]
    fn dedup_and_rate_limit() {
        let mut seen = SeenCache::new(1024);
        let limits = PushLimits {
            items_per_s: 3,
            bytes_per_s: 1 << 20,
        };
        let mut p = PeerGossip::new(64, limits, 0);
        let mut buf = Vec::new();
        let ids: Vec<ItemId> = (0..5u8)
            .map(|i| *blake3::hash(&[i; 10]).as_bytes())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            write_item(&mut buf, id, &[i as u8; 10]);
        }
        let items = Items::from_encoded(5, &buf);
        let mut routed = 0;
        let o = on_items(&mut seen, &mut p, items, true, 0, |_, _| routed += 1);
        assert_eq!(
            o,
            PushOutcome {
                new: 3,
                duplicate: 0,
                rate_limited: 2,
                mismatched: 0,
            }
        );
        assert_eq!(routed, 3);
        let o = on_items(&mut seen, &mut p, items, false, 0, |_, _| {});
        assert_eq!(
            o,
            PushOutcome {
                new: 2,
                duplicate: 3,
                rate_limited: 0,
                mismatched: 0,
            }
        );
        assert!(p.knows(&ids[4]));
        assert!(!p.mark_known(&ids[4]));
        assert!(p.mark_known(&[9; 32]));
    }
}
