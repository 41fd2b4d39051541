//! Key ranges for [`crate::Db::scan`], [`crate::Db::scan_rev`] and
//! [`crate::Db::compact_range`]: [`KeyBounds`], and [`prefix_range`] for
//! "every key starting with".

use std::ops::{Bound, Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

/// A range of byte-string keys: what [`crate::Db::scan`] and its siblings
/// take.
///
/// Implemented for every standard range form (`a..b`, `a..`, `..b`,
/// `a..=b`, `..=b`, `..`) and for `(Bound<K>, Bound<K>)`, over any key
/// type `K: AsRef<[u8]>` (`&[u8]`, `Vec<u8>`, `&Vec<u8>`, `[u8; N]`,
/// `&[u8; N]`, `&str`, `String`, ...), and for references to any of them.
/// Both ends of one range have the same key type: `b"a"..b"bb"` does not
/// compile (`&[u8; 1]` and `&[u8; 2]`), `b"a".as_slice()..b"bb"` does.
///
/// A range whose start is after its end is empty (it does not panic).
///
/// ```
/// use std::ops::Bound;
/// use strata_storage::KeyBounds;
///
/// assert_eq!((b"a".as_slice()..).start_key(), Bound::Included(&b"a"[..]));
/// assert_eq!((..b"c".to_vec()).end_key(), Bound::Excluded(&b"c"[..]));
/// assert_eq!((..).start_key(), Bound::Unbounded);
/// let r = (Bound::Excluded("k1"), Bound::Included("k9"));
/// assert_eq!(r.start_key(), Bound::Excluded(&b"k1"[..]));
/// ```
pub trait KeyBounds {
    /// The start bound.
    fn start_key(&self) -> Bound<&[u8]>;
    /// The end bound.
    fn end_key(&self) -> Bound<&[u8]>;
}

impl KeyBounds for RangeFull {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
}

impl<K: AsRef<[u8]>> KeyBounds for Range<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Included(self.start.as_ref())
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Excluded(self.end.as_ref())
    }
}

impl<K: AsRef<[u8]>> KeyBounds for RangeFrom<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Included(self.start.as_ref())
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
}

impl<K: AsRef<[u8]>> KeyBounds for RangeTo<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Excluded(self.end.as_ref())
    }
}

impl<K: AsRef<[u8]>> KeyBounds for RangeInclusive<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Included(RangeInclusive::start(self).as_ref())
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Included(RangeInclusive::end(self).as_ref())
    }
}

impl<K: AsRef<[u8]>> KeyBounds for RangeToInclusive<K> {
    fn start_key(&self) -> Bound<&[u8]> {
        Bound::Unbounded
    }
    fn end_key(&self) -> Bound<&[u8]> {
        Bound::Included(self.end.as_ref())
    }
}

impl<K: AsRef<[u8]>> KeyBounds for (Bound<K>, Bound<K>) {
    fn start_key(&self) -> Bound<&[u8]> {
        as_slice(&self.0)
    }
    fn end_key(&self) -> Bound<&[u8]> {
        as_slice(&self.1)
    }
}

impl<T: KeyBounds + ?Sized> KeyBounds for &T {
    fn start_key(&self) -> Bound<&[u8]> {
        (**self).start_key()
    }
    fn end_key(&self) -> Bound<&[u8]> {
        (**self).end_key()
    }
}

fn as_slice<K: AsRef<[u8]>>(b: &Bound<K>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The range of every key that starts with `prefix`: from `prefix`
/// (included) to the smallest key greater than all of them (excluded),
/// which is `prefix` with its trailing `0xFF` bytes dropped and its last
/// remaining byte incremented. A prefix of only `0xFF` bytes (or the empty
/// prefix) has no such key: the range is then unbounded above.
///
/// ```
/// use std::ops::Bound;
/// use strata_storage::prefix_range;
///
/// assert_eq!(
///     prefix_range(b"ab"),
///     (Bound::Included(b"ab".to_vec()), Bound::Excluded(b"ac".to_vec()))
/// );
/// assert_eq!(
///     prefix_range([0x01, 0xFF]),
///     (Bound::Included(vec![0x01, 0xFF]), Bound::Excluded(vec![0x02]))
/// );
/// assert_eq!(
///     prefix_range([0xFF, 0xFF]),
///     (Bound::Included(vec![0xFF, 0xFF]), Bound::Unbounded)
/// );
/// assert_eq!(prefix_range(b""), (Bound::Included(vec![]), Bound::Unbounded));
/// ```
pub fn prefix_range(prefix: impl AsRef<[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let prefix = prefix.as_ref();
    let end = match prefix.iter().rposition(|&b| b != 0xFF) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            Bound::Excluded(end)
        }
        None => Bound::Unbounded,
    };
    (Bound::Included(prefix.to_vec()), end)
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::{prefix_range, KeyBounds};

    fn bounds(r: impl KeyBounds) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        (
            r.start_key().map(<[u8]>::to_vec),
            r.end_key().map(<[u8]>::to_vec),
        )
    }

    #[test]
    fn every_range_form_gives_its_bounds() {
        use Bound::{Excluded as X, Included as I, Unbounded as U};
        let v = |s: &str| s.as_bytes().to_vec();
        assert_eq!(bounds(..), (U, U));
        assert_eq!(bounds(b"a".as_slice()..), (I(v("a")), U));
        assert_eq!(bounds(b"a".to_vec()..b"c".to_vec()), (I(v("a")), X(v("c"))));
        assert_eq!(bounds(b"a"..b"c"), (I(v("a")), X(v("c"))));
        assert_eq!(bounds(..=b"c".as_slice()), (U, I(v("c"))));
        assert_eq!(bounds(.."c"), (U, X(v("c"))));
        assert_eq!(
            bounds("a".to_string()..="c".to_string()),
            (I(v("a")), I(v("c")))
        );
        assert_eq!(bounds((X(b"a".as_slice()), U)), (X(v("a")), U));
        let owned = b"a".to_vec()..;
        assert_eq!(bounds(&owned), (I(v("a")), U));
        assert_eq!(bounds(prefix_range("a")), (I(v("a")), X(v("b"))));
    }

    #[test]
    fn prefix_range_end_is_the_next_prefix() {
        assert_eq!(prefix_range([0u8]).1, Bound::Excluded(vec![1]));
        assert_eq!(prefix_range([0xFE]).1, Bound::Excluded(vec![0xFF]));
        assert_eq!(prefix_range([0xFE, 0xFF]).1, Bound::Excluded(vec![0xFF]));
        assert_eq!(prefix_range([7, 0xFF, 0xFF]).1, Bound::Excluded(vec![8]));
        assert_eq!(prefix_range([0xFF]).1, Bound::Unbounded);
        assert_eq!(prefix_range([0xFF; 3]).1, Bound::Unbounded);
        assert_eq!(prefix_range([0u8; 0]).1, Bound::Unbounded);
        // Brute force over two-byte prefixes and three-byte keys: the range
        // holds exactly the keys that start with the prefix.
        for p in [
            [0u8, 0],
            [0, 0xFF],
            [0xFF, 0],
            [0xFF, 0xFF],
            [0x12, 0xFF],
            [0x12, 0x34],
        ] {
            let r = prefix_range(p);
            for a in [0u8, 0x11, 0x12, 0x13, 0xFE, 0xFF] {
                for b in [0u8, 0x34, 0xFF] {
                    for c in [0u8, 0xFF] {
                        let k = [a, b, c];
                        let inside = std::ops::RangeBounds::contains(
                            &(r.0.as_ref(), r.1.as_ref()),
                            &k.to_vec(),
                        );
                        assert_eq!(inside, k.starts_with(&p), "{p:?} {k:?}");
                    }
                }
            }
        }
    }
}
