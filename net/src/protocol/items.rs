//! Gossip on the wire: announces answered with pulls, pushed and pulled
//! items checked and routed, pull requests answered from the item store,
//! and the periodic flush that pushes new items to a random fanout and
//! announces them to every other peer.

use std::sync::atomic::Ordering;

use super::{push_event, ConnId, Protocol};
use crate::control::Event;
use crate::gossip::{on_items, PushLimits};
use crate::limits::{IDS_PER_MESSAGE_MAX, ITEMS_PER_MESSAGE_MAX, PENDING_PUSH_MAX, PULL_RETRY_MS};
use crate::message::{write_item, Ids, ItemId, Items, Message};
use crate::peer::Misbehaviour;

impl Protocol {
    /// A ready peer announced `ids`: pull those not seen and not pulled
    /// within [`PULL_RETRY_MS`].
    pub(super) fn on_announce(&mut self, slot: usize, ids: Ids<'_>) {
        let now = self.now_ms;
        let conn = self.peers[slot].as_mut().expect("live slot");
        let mut want = Vec::new();
        let tag = ConnId {
            slot,
            gen: conn.gen,
        }
        .tag();
        let gossip = conn.gossip.as_mut().expect("ready peers have gossip state");
        for id in ids.iter() {
            gossip.mark_known(id);
            if self.seen.contains(id) {
                continue;
            }
            if let Some((at, _)) = self.requested.peek(id) {
                if now < at + PULL_RETRY_MS {
                    continue;
                }
            }
            self.requested.put(*id, (now, tag));
            want.extend_from_slice(id);
        }
        if !want.is_empty() {
            self.send_msg(slot, &Message::PullRequest(Ids::from_bytes(&want)), 0);
        }
    }

    /// A ready peer pushed `items` (or sent them in a pull response,
    /// `pulled`); returns false when the connection is closing.
    pub(super) fn on_items(&mut self, slot: usize, items: Items<'_>, pulled: bool) -> bool {
        let now = self.now_ms;
        let conn = self.peers[slot].as_mut().expect("live slot");
        if pulled {
            // A pull response may carry only ids pulled from this very
            // connection: anything else is a push that dodges the push
            // limits. (An id whose request record was already pushed out
            // of the bounded `requested` table is let through with the
            // others; a response with none pulled is not.)
            let tag = ConnId {
                slot,
                gen: conn.gen,
            }
            .tag();
            let requested = &self.requested;
            let solicited = items
                .iter()
                .any(|(id, _)| requested.peek(id).is_some_and(|(_, t)| *t == tag));
            if !solicited {
                self.misbehave(slot, Misbehaviour::UnsolicitedResponse);
                return self.is_open(slot);
            }
            for (id, _) in items.iter() {
                self.requested.remove(id);
            }
        }
        let conn = self.peers[slot].as_mut().expect("live slot");
        let from = conn.peer.expect("ready").node_key;
        // Strangers together get `stranger_items_per_s_total`: checked
        // before anything is hashed; over it, dropped without blame.
        if let Some(bucket) = self.stranger_items.as_mut() {
            let n = items.len() as u64;
            if !self.reserved.contains(&from) && !bucket.try_take(n, now) {
                self.shared
                    .stats
                    .stranger_items_dropped
                    .fetch_add(n, Ordering::Relaxed);
                return true;
            }
        }
        let conn = self.peers[slot].as_mut().expect("live slot");
        // Pull responses count against the same per-peer item and byte
        // budgets as pushes: solicited or not, a peer cannot make this
        // node take more than those.
        let limited = true;
        let gossip = conn.gossip.as_mut().expect("ready peers have gossip state");
        let store = &mut self.store;
        let pending = &mut self.pending_push;
        let shared = &self.shared;
        let relay = self.cfg.relay_received;
        let out = on_items(&mut self.seen, gossip, items, limited, now, |id, item| {
            if relay {
                store.put(*id, item.to_vec());
                if pending.len() < PENDING_PUSH_MAX {
                    pending.push(*id);
                }
            }
            push_event(
                shared,
                Event::Item {
                    id: *id,
                    item: item.to_vec(),
                    from,
                },
            );
        });
        let st = &self.shared.stats;
        st.items_new
            .fetch_add(u64::from(out.new), Ordering::Relaxed);
        st.items_duplicate
            .fetch_add(u64::from(out.duplicate), Ordering::Relaxed);
        st.items_rate_limited
            .fetch_add(u64::from(out.rate_limited), Ordering::Relaxed);
        if out.mismatched > 0 {
            self.misbehave(slot, Misbehaviour::ItemIdMismatch);
        } else if out.rate_limited > 0 {
            self.misbehave(slot, Misbehaviour::Flooding);
        }
        self.is_open(slot)
    }

    /// A ready peer asked for `ids`: answer with those in the store.
    pub(super) fn on_pull_request(&mut self, slot: usize, ids: Ids<'_>) {
        let limit = self.cfg.frame_payload_bytes_max as usize;
        let half_queue = self.cfg.send_queue_bytes_max / 2;
        let conn = self.peers[slot].as_mut().expect("live slot");
        let queued = conn.queued_bytes();
        let gossip = conn.gossip.as_mut().expect("ready peers have gossip state");
        let mut buf = Vec::new();
        let mut count = 0;
        for id in ids.iter() {
            if let Some(item) = self.store.peek(id) {
                // Answer only what fits in one frame and keeps the queue
                // under half its cap; the peer asks again.
                if 2 + buf.len() + 36 + item.len() > limit || queued + buf.len() > half_queue {
                    break;
                }
                gossip.mark_known(id);
                write_item(&mut buf, id, item);
                count += 1;
            }
        }
        if count > 0 {
            self.send_msg(
                slot,
                &Message::PullResponse(Items::from_encoded(count, &buf)),
                0,
            );
        }
    }

    /// Pushes the items queued since the last flush to up to
    /// `gossip_fanout` random peers that are not quiet and whose queues
    /// are not backing up, and announces them to the others.
    pub(super) fn flush_gossip(&mut self) {
        if self.pending_push.is_empty() {
            return;
        }
        let ready = self.ready_slots();
        if ready.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.pending_push);
        // Quiet peers get nothing, and take no place in the fanout.
        let mut order: Vec<usize> = ready
            .iter()
            .copied()
            .filter(|&s| self.peers[s].as_ref().is_some_and(|c| !c.quiet))
            .collect();
        self.rng.sample_in_place(&mut order, self.cfg.gossip_fanout);
        let fanout = self.cfg.gossip_fanout.min(order.len());
        let limit = self.cfg.frame_payload_bytes_max as usize;
        let half_queue = self.cfg.send_queue_bytes_max / 2;
        let ids_max = IDS_PER_MESSAGE_MAX as usize;
        let items_max = ITEMS_PER_MESSAGE_MAX as usize;
        for (rank, &slot) in order.iter().enumerate() {
            // Push only to the sampled peers whose queue is not backing up;
            // everyone else gets the ids and pulls what it misses.
            let Some(queued) = self.peers[slot].as_ref().map(|c| c.queued_bytes()) else {
                continue;
            };
            let push = rank < fanout && queued < half_queue;
            let mut items = Vec::new();
            let mut items_count = 0usize;
            let mut announces: Vec<Vec<u8>> = vec![Vec::new()];
            {
                let Some(g) = self.peers[slot].as_mut().and_then(|c| c.gossip.as_mut()) else {
                    continue;
                };
                for id in &ids {
                    if g.knows(id) {
                        continue;
                    }
                    g.mark_known(id);
                    if push && items_count < items_max {
                        if let Some(item) = self.store.peek(id) {
                            if 2 + items.len() + 36 + item.len() <= limit {
                                write_item(&mut items, id, item);
                                items_count += 1;
                                continue;
                            }
                        }
                    }
                    let last = announces.last_mut().expect("never empty");
                    if last.len() / 32 >= ids_max {
                        announces.push(Vec::new());
                    }
                    announces
                        .last_mut()
                        .expect("never empty")
                        .extend_from_slice(id);
                }
            }
            if items_count > 0 {
                self.send_msg(
                    slot,
                    &Message::Push(Items::from_encoded(items_count, &items)),
                    0,
                );
            }
            for a in announces.iter().filter(|a| !a.is_empty()) {
                if !self.send_msg(slot, &Message::Announce(Ids::from_bytes(a)), 0) {
                    break;
                }
            }
        }
    }

    /// The push limits of each new peer's [`crate::gossip::PeerGossip`].
    pub(super) fn push_limits(&self) -> PushLimits {
        PushLimits {
            items_per_s: self.cfg.push_items_per_s,
            bytes_per_s: self.cfg.push_bytes_per_s,
        }
    }

    /// [`crate::Handle::broadcast`] of `item`, whose id (blake3 of it) the
    /// caller computed: gossiped unless the id was seen.
    pub(crate) fn broadcast(&mut self, id: ItemId, item: Vec<u8>) {
        if self.seen.insert(&id) {
            self.queue_push(id, item);
        }
    }

    /// As [`Protocol::broadcast`], but also when the id was seen (it
    /// arrived from a peer and the application has validated it). Peers
    /// known to have it are skipped when pushing.
    pub(crate) fn relay(&mut self, id: ItemId, item: Vec<u8>) {
        self.seen.insert(&id);
        self.queue_push(id, item);
    }

    /// Keeps `item` for pulls and queues it for the next push.
    fn queue_push(&mut self, id: ItemId, item: Vec<u8>) {
        self.store.put(id, item);
        if self.pending_push.len() < PENDING_PUSH_MAX {
            self.pending_push.push(id);
        }
    }
}
