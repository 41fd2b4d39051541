//! A bounded address book that prefers addresses that worked.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::rng::Rng;

/// What we know about one address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrEntry {
    /// Last time a handshake with it succeeded (0 = never).
    pub last_success_ms: u64,
    /// Last dial attempt (0 = never).
    pub last_attempt_ms: u64,
    /// Consecutive failures since the last success.
    pub failures: u32,
}

impl AddrEntry {
    /// Higher is better: worked before, few failures.
    fn quality(&self) -> i64 {
        let worked = if self.last_success_ms > 0 { 1_000 } else { 0 };
        worked - i64::from(self.failures.min(1000)) * 10
    }
}

/// Bounded address book. When full, a new address replaces the worst known
/// one only if that one never worked; addresses that worked are kept.
#[derive(Debug)]
pub struct AddrBook {
    entries: HashMap<SocketAddr, AddrEntry>,
    entries_max: usize,
}

impl AddrBook {
    /// A book holding at most `entries_max` addresses.
    pub fn new(entries_max: usize) -> Self {
        assert!(entries_max > 0);
        AddrBook {
            entries: HashMap::with_capacity(entries_max),
            entries_max,
        }
    }

    /// Number of addresses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// The entry for `addr`.
    pub fn get(&self, addr: &SocketAddr) -> Option<&AddrEntry> {
        self.entries.get(addr)
    }

    /// Learns an address; returns true when it is (now) in the book.
    pub fn add(&mut self, addr: SocketAddr) -> bool {
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return false;
        }
        if self.entries.contains_key(&addr) {
            return true;
        }
        if self.entries.len() >= self.entries_max {
            let worst = self
                .entries
                .iter()
                .filter(|(_, e)| e.last_success_ms == 0)
                .min_by_key(|(_, e)| e.quality())
                .map(|(a, _)| *a);
            match worst {
                Some(w) => {
                    self.entries.remove(&w);
                }
                None => return false,
            }
        }
        self.entries.insert(addr, AddrEntry::default());
        true
    }

    /// Records a dial attempt.
    pub fn attempted(&mut self, addr: &SocketAddr, now_ms: u64) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.last_attempt_ms = now_ms;
        }
    }
    /// Records a successful handshake.
    pub fn succeeded(&mut self, addr: SocketAddr, now_ms: u64) {
        self.add(addr);
        if let Some(e) = self.entries.get_mut(&addr) {
            e.last_success_ms = now_ms.max(1);
            e.failures = 0;
        }
    }
    /// Records a failure.
    pub fn failed(&mut self, addr: &SocketAddr) {
        if let Some(e) = self.entries.get_mut(addr) {
            e.failures = e.failures.saturating_add(1);
        }
    }

    /// Picks the best address to dial that `skip` does not exclude and that
    /// was not attempted in the last `retry_ms << failures` (reconnect
    /// backoff); ties are broken at random.
    pub fn pick(
        &self,
        now_ms: u64,
        retry_ms: u64,
        rng: &mut Rng,
        mut skip: impl FnMut(&SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        let mut best: Option<(i64, u64, SocketAddr)> = None;
        for (a, e) in &self.entries {
            // Exponential backoff per address: retry_ms doubles per failure.
            let wait_ms = retry_ms.saturating_mul(1 << e.failures.min(6));
            if e.last_attempt_ms != 0 && now_ms < e.last_attempt_ms.saturating_add(wait_ms) {
                continue;
            }
            if skip(a) {
                continue;
            }
            let key = (e.quality(), rng.next_u64(), *a);
            if best.is_none_or(|b| (key.0, key.1) > (b.0, b.1)) {
                best = Some(key);
            }
        }
        best.map(|b| b.2)
    }

    /// A random sample of up to `n` addresses, those that worked first.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Vec<SocketAddr> {
        let mut worked: Vec<SocketAddr> = Vec::new();
        let mut other: Vec<SocketAddr> = Vec::new();
        for (a, e) in &self.entries {
            if e.last_success_ms > 0 {
                worked.push(*a);
            } else {
                other.push(*a);
            }
        }
        rng.sample_in_place(&mut worked, n);
        worked.truncate(n);
        let rest = n - worked.len();
        rng.sample_in_place(&mut other, rest);
        worked.extend(other.into_iter().take(rest));
        worked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn bounded_and_keeps_what_worked() {
        let mut b = AddrBook::new(3);
        let mut rng = Rng::from_seed(1);
        assert!(b.add(a(1)) && b.add(a(2)) && b.add(a(3)));
        b.succeeded(a(1), 10);
        b.failed(&a(2));
        assert!(b.add(a(4)));
        assert_eq!(b.len(), 3);
        assert!(
            b.get(&a(2)).is_none(),
            "the failed never-worked address goes"
        );
        b.succeeded(a(3), 10);
        b.succeeded(a(4), 10);
        assert!(!b.add(a(5)), "all worked: the new one is refused");
        assert!(!b.add(a(0)));
        assert_eq!(
            b.pick(100, 50, &mut rng, |_| false)
                .map(|x| b.get(&x).unwrap().last_success_ms > 0),
            Some(true)
        );
        assert_eq!(b.sample(10, &mut rng).len(), 3);
    }

    #[test]
    fn pick_prefers_worked_and_respects_retry() {
        let mut b = AddrBook::new(10);
        let mut rng = Rng::from_seed(2);
        for p in 1..=5 {
            b.add(a(p));
        }
        b.succeeded(a(3), 1);
        assert_eq!(b.pick(10, 100, &mut rng, |_| false), Some(a(3)));
        b.attempted(&a(3), 10);
        let next = b.pick(20, 100, &mut rng, |_| false).unwrap();
        assert_ne!(next, a(3));
        assert_eq!(b.pick(200, 100, &mut rng, |x| *x != a(3)), Some(a(3)));
    }
}
