//! One direction of an emulated link: what it does to a packet, decided
//! when the packet arrives (pure arithmetic over time in nanoseconds, so
//! it is tested without a network).

/// The properties of one direction of a link between two hosts.
///
/// ```
/// use strata_netlab::Link;
/// let wan = Link::delay_ms(50).jitter_ms(5).loss_percent(1.0);
/// assert_eq!(wan.delay_us, 50_000);
/// assert_eq!(wan.loss_ppm, 10_000);
/// assert!(wan.up);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// One-way delay added to every packet, µs.
    pub delay_us: u64,
    /// Each packet's delay varies uniformly within ± this, µs. Packets on
    /// one link are never reordered (a later packet never leaves before
    /// an earlier one): the jitter is of the latency, not of the order.
    pub jitter_us: u64,
    /// Packets dropped, parts per million.
    pub loss_ppm: u32,
    /// Bandwidth in bytes per second (0: unlimited). A packet leaves the
    /// link's queue after the ones before it have been serialised.
    pub bytes_per_s: u64,
    /// Bytes a link queues for serialisation before it drops (tail drop);
    /// only bounds anything with a bandwidth set.
    pub queue_bytes_max: u64,
    /// `false`: the link is cut (a partition); every packet is dropped.
    pub up: bool,
}

impl Link {
    /// No delay, no loss, unlimited bandwidth: loopback through the router.
    pub const IDEAL: Link = Link {
        delay_us: 0,
        jitter_us: 0,
        loss_ppm: 0,
        bytes_per_s: 0,
        queue_bytes_max: 4 << 20,
        up: true,
    };

    /// A link with `ms` of one-way delay and nothing else.
    pub fn delay_ms(ms: u64) -> Link {
        Link {
            delay_us: ms * 1_000,
            ..Link::IDEAL
        }
    }

    /// This link with a jitter of ± `ms`.
    pub fn jitter_ms(self, ms: u64) -> Link {
        Link {
            jitter_us: ms * 1_000,
            ..self
        }
    }

    /// This link losing `percent` % of its packets.
    pub fn loss_percent(self, percent: f64) -> Link {
        assert!((0.0..=100.0).contains(&percent), "a loss of {percent} %");
        Link {
            loss_ppm: (percent * 10_000.0).round() as u32,
            ..self
        }
    }

    /// This link limited to `mbit_per_s` megabits per second.
    pub fn mbit_per_s(self, mbit_per_s: u64) -> Link {
        Link {
            bytes_per_s: mbit_per_s * 1_000_000 / 8,
            ..self
        }
    }
}

/// Why a link dropped a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// The link is cut.
    Partition,
    /// Random loss.
    Loss,
    /// The serialisation queue was full.
    Queue,
}

/// What one direction of a link has done since the lab started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets delivered.
    pub delivered: u64,
    /// Bytes delivered.
    pub delivered_bytes: u64,
    /// Packets dropped because the link was cut.
    pub dropped_partition: u64,
    /// Packets dropped by random loss.
    pub dropped_loss: u64,
    /// Packets dropped because the queue was full.
    pub dropped_queue: u64,
}

/// splitmix64: each link draws its loss and jitter from its own seeded
/// sequence, so one link's traffic never shifts another's draws.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One direction of a link while the lab runs: its settings, its random
/// sequence, and the state of its queue.
#[derive(Clone, Debug)]
pub(crate) struct LinkState {
    pub(crate) link: Link,
    rng: Rng,
    /// When the serialiser is free again, ns since the lab started.
    free_at_ns: u64,
    /// When the last admitted packet leaves, ns: none leaves before it.
    last_out_ns: u64,
    /// Bytes admitted and not yet delivered.
    queued_bytes: u64,
    pub(crate) stats: LinkStats,
}

impl LinkState {
    pub(crate) fn new(link: Link, seed: u64) -> LinkState {
        LinkState {
            link,
            rng: Rng::new(seed),
            free_at_ns: 0,
            last_out_ns: 0,
            queued_bytes: 0,
            stats: LinkStats::default(),
        }
    }

    /// A packet of `bytes` arrives at `now_ns`: when it leaves the link,
    /// or why it is dropped.
    pub(crate) fn admit(&mut self, now_ns: u64, bytes: usize) -> Result<u64, Dropped> {
        let l = self.link;
        let dropped = if !l.up {
            Some(Dropped::Partition)
        } else if l.loss_ppm > 0 && self.rng.next_u64() % 1_000_000 < u64::from(l.loss_ppm) {
            Some(Dropped::Loss)
        } else if l.bytes_per_s > 0 && self.queued_bytes + bytes as u64 > l.queue_bytes_max {
            Some(Dropped::Queue)
        } else {
            None
        };
        if let Some(why) = dropped {
            match why {
                Dropped::Partition => self.stats.dropped_partition += 1,
                Dropped::Loss => self.stats.dropped_loss += 1,
                Dropped::Queue => self.stats.dropped_queue += 1,
            }
            return Err(why);
        }
        // Serialisation: the packet starts when the ones before it are
        // out, and takes bytes / rate.
        let sent_ns = match (bytes as u64 * 1_000_000_000).checked_div(l.bytes_per_s) {
            Some(serialise_ns) => {
                self.free_at_ns = self.free_at_ns.max(now_ns) + serialise_ns;
                self.free_at_ns
            }
            None => now_ns, // unlimited
        };
        let jitter_ns = if l.jitter_us > 0 {
            let span = 2 * l.jitter_us * 1_000 + 1;
            (self.rng.next_u64() % span) as i64 - (l.jitter_us * 1_000) as i64
        } else {
            0
        };
        let out = (sent_ns + l.delay_us * 1_000).saturating_add_signed(jitter_ns);
        // FIFO: never before the packet admitted before it.
        let out = out.max(self.last_out_ns).max(now_ns);
        self.last_out_ns = out;
        self.queued_bytes += bytes as u64;
        Ok(out)
    }

    /// A packet of `bytes` admitted earlier has left.
    pub(crate) fn delivered(&mut self, bytes: usize) {
        self.queued_bytes -= bytes as u64;
        self.stats.delivered += 1;
        self.stats.delivered_bytes += bytes as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn delay_is_added_and_order_is_kept_under_jitter() {
        let mut s = LinkState::new(Link::delay_ms(50).jitter_ms(10), 1);
        let mut last = 0;
        for i in 0..10_000u64 {
            let now = i * 100_000; // a packet every 0.1 ms
            let out = s.admit(now, 100).unwrap();
            assert!((now + 40 * MS..=now + 60 * MS).contains(&out));
            assert!(out >= last, "reordered");
            last = out;
            s.delivered(100);
        }
        assert_eq!(s.stats.delivered, 10_000);
    }

    #[test]
    fn loss_is_near_its_rate_and_repeats_with_the_seed() {
        let run = |seed| {
            let mut s = LinkState::new(Link::IDEAL.loss_percent(1.0), seed);
            (0..200_000)
                .map(|i| s.admit(i, 60).is_err())
                .collect::<Vec<_>>()
        };
        let a = run(9);
        let lost = a.iter().filter(|&&d| d).count();
        assert!(
            (1_600..2_400).contains(&lost),
            "{lost} of 200000 lost at 1 %"
        );
        assert_eq!(a, run(9), "the same seed draws the same losses");
        assert_ne!(a, run(10));
    }

    #[test]
    fn bandwidth_serialises_and_a_full_queue_drops() {
        // 8 Mbit/s = 1 MB/s: a 1,000-byte packet takes 1 ms.
        let mut s = LinkState::new(
            Link {
                queue_bytes_max: 10_000,
                ..Link::IDEAL.mbit_per_s(8)
            },
            1,
        );
        let outs: Vec<_> = (0..10).map(|_| s.admit(0, 1_000).unwrap()).collect();
        assert_eq!(outs, (1..=10).map(|i| i * MS).collect::<Vec<_>>());
        assert_eq!(s.admit(0, 1_000), Err(Dropped::Queue));
        s.delivered(1_000);
        assert_eq!(s.admit(0, 1_000), Ok(11 * MS));
    }

    #[test]
    fn a_cut_link_drops_everything() {
        let mut s = LinkState::new(
            Link {
                up: false,
                ..Link::IDEAL
            },
            1,
        );
        assert_eq!(s.admit(0, 1), Err(Dropped::Partition));
        assert_eq!(s.stats.dropped_partition, 1);
    }
}
