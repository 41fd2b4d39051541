//! The engine's lock order, checked rather than only written down.
//!
//! Every lock of the engine's shared state (`inner::Inner`) has a [`Rank`], and a thread may
//! take a lock only while every engine lock it holds has a smaller rank.
//! A total order on locks taken in increasing rank rules out deadlock
//! between the writer, readers and the two workers.
//!
//! The locks are private to `inner`; its accessors return [`Ranked`]
//! guards, which in debug builds (every test run) record the ranks a
//! thread holds in a thread-local bit set and panic *before blocking* when
//! a lock would be taken out of order, naming both locks. Release builds
//! compile the check away: the guard is the lock's own guard plus a
//! zero-sized token.
//!
//! Condition variables release and retake their lock while the thread is
//! blocked in them, so [`Ranked::wait`] keeps the rank held throughout.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

#[cfg(debug_assertions)]
use std::cell::Cell;

/// Why taking an engine lock may fail: only a panic while it was held.
pub(crate) const POISONED: &str = "Db locks are poisoned only by a panic while held";

/// The engine's locks, in the only order a thread may take them.
///
/// `Writer` → `Versions` → `State` is a write that freezes its memtable;
/// `Writer` → `Bg` → `State` the same write waiting for room;
/// `Compact` → `State` the compaction worker picking a job; `Snapshots`
/// is a leaf taken with nothing else held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    /// `Inner::writer`: the WAL and sequence numbers of the one writer.
    Writer = 0,
    /// `Inner::compact`: coordination with the compaction worker.
    Compact = 1,
    /// `Inner::versions`: the manifest and the version it describes.
    Versions = 2,
    /// `Inner::bg`: coordination with the flush worker.
    Bg = 3,
    /// `Inner::state`: the memtables and table lists readers see.
    State = 4,
    /// `Inner::snapshots`: live snapshots' sequence numbers.
    Snapshots = 5,
}

#[cfg(debug_assertions)]
thread_local! {
    /// Bit `r` set while this thread holds the lock of rank `r`.
    static HELD: Cell<u8> = const { Cell::new(0) };
}

/// Proof that the current thread holds the lock of one rank; clears it
/// when dropped. Zero-sized in release builds.
#[derive(Debug)]
pub(crate) struct RankToken {
    #[cfg(debug_assertions)]
    rank: Rank,
}

impl RankToken {
    /// Checks that `rank` may be taken now. Call before blocking on the
    /// lock, so an order violation panics instead of deadlocking.
    ///
    /// # Panics
    /// In debug builds, when this thread holds a lock of equal or greater
    /// rank (unless it is already panicking: a second panic would abort).
    #[inline]
    pub(crate) fn check(rank: Rank) {
        #[cfg(debug_assertions)]
        HELD.with(|held| {
            let above = held.get() & !((1u8 << rank as u8) - 1);
            if above != 0 && !std::thread::panicking() {
                panic!(
                    "lock order violated: taking {rank:?} while holding {:?}",
                    ranks(above)
                );
            }
        });
        #[cfg(not(debug_assertions))]
        let _ = rank;
    }

    /// Records that the lock of `rank` is now held (after [`Self::check`]).
    #[inline]
    pub(crate) fn held(rank: Rank) -> Self {
        #[cfg(debug_assertions)]
        {
            HELD.with(|held| held.set(held.get() | 1 << rank as u8));
            RankToken { rank }
        }
        #[cfg(not(debug_assertions))]
        {
            let _ = rank;
            RankToken {}
        }
    }
}

#[cfg(debug_assertions)]
impl Drop for RankToken {
    fn drop(&mut self) {
        HELD.with(|held| held.set(held.get() & !(1 << self.rank as u8)));
    }
}

#[cfg(debug_assertions)]
fn ranks(bits: u8) -> Vec<Rank> {
    [
        Rank::Writer,
        Rank::Compact,
        Rank::Versions,
        Rank::Bg,
        Rank::State,
        Rank::Snapshots,
    ]
    .into_iter()
    .filter(|r| bits & (1 << *r as u8) != 0)
    .collect()
}

/// A lock guard that holds its lock's rank for as long as it lives.
#[derive(Debug)]
pub(crate) struct Ranked<G> {
    guard: G,
    // Dropped after `guard` (fields drop in declaration order), so the
    // rank is released only once the lock is.
    _token: RankToken,
}

impl<G> Ranked<G> {
    /// Wraps a guard just taken (after [`RankToken::check`]).
    #[inline]
    pub(crate) fn new(guard: G, rank: Rank) -> Self {
        Ranked {
            guard,
            _token: RankToken::held(rank),
        }
    }
}

impl<G: Deref> Deref for Ranked<G> {
    type Target = G::Target;
    #[inline]
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: DerefMut> DerefMut for Ranked<G> {
    #[inline]
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

/// Takes `m`, of rank `rank`, checking the order first.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>, rank: Rank) -> Ranked<MutexGuard<'_, T>> {
    RankToken::check(rank);
    Ranked::new(m.lock().expect(POISONED), rank)
}

/// As [`lock`], also after a panic poisoned it: for recording a worker's
/// panic, or in a destructor that must not panic again.
#[inline]
pub(crate) fn lock_after_panic<T>(m: &Mutex<T>, rank: Rank) -> Ranked<MutexGuard<'_, T>> {
    RankToken::check(rank);
    Ranked::new(m.lock().unwrap_or_else(PoisonError::into_inner), rank)
}

impl<'a, T> Ranked<MutexGuard<'a, T>> {
    /// Blocks on `cv`, releasing the lock meanwhile; the rank stays held,
    /// since the thread takes no other lock while it waits.
    pub(crate) fn wait(self, cv: &Condvar) -> Self {
        let Ranked { guard, _token } = self;
        let guard = cv.wait(guard).expect(POISONED);
        Ranked { guard, _token }
    }

    /// As [`Self::wait`], for at most `timeout`.
    pub(crate) fn wait_timeout(self, cv: &Condvar, timeout: Duration) -> Self {
        let Ranked { guard, _token } = self;
        let (guard, _) = cv.wait_timeout(guard, timeout).expect(POISONED);
        Ranked { guard, _token }
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    fn take<T>(m: &Mutex<T>, rank: Rank) -> Ranked<MutexGuard<'_, T>> {
        lock(m, rank)
    }

    #[test]
    fn increasing_ranks_may_nest_and_are_released() {
        let (a, b, c) = (Mutex::new(0), Mutex::new(0), Mutex::new(0));
        {
            let _w = take(&a, Rank::Writer);
            let _v = take(&b, Rank::Versions);
            let _s = take(&c, Rank::State);
        }
        // All released: the lowest rank may be taken again.
        let _w = take(&a, Rank::Writer);
    }

    #[test]
    #[should_panic(expected = "lock order violated: taking Compact while holding [Bg]")]
    fn a_lower_rank_under_a_higher_one_panics() {
        let (a, b) = (Mutex::new(0), Mutex::new(0));
        let _bg = take(&a, Rank::Bg);
        let _cs = take(&b, Rank::Compact);
    }

    #[test]
    #[should_panic(expected = "taking State while holding [State]")]
    fn the_same_rank_twice_panics() {
        let (a, b) = (Mutex::new(0), Mutex::new(0));
        let _one = take(&a, Rank::State);
        let _two = take(&b, Rank::State);
    }

    #[test]
    fn a_condvar_wait_keeps_the_rank() {
        let (m, cv) = (Mutex::new(0), Condvar::new());
        let g = take(&m, Rank::Bg).wait_timeout(&cv, Duration::from_millis(1));
        let r = std::panic::catch_unwind(|| RankToken::check(Rank::Writer));
        assert!(r.is_err(), "Bg is still held after the wait");
        drop(g);
        RankToken::check(Rank::Writer);
    }
}
