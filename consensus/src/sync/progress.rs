//! Where a state sync stands, as the joining node persists it so that a
//! restart (a crash, `kill -9`) resumes the fetch instead of starting it
//! again: the head being fetched, one [`RangeCursor`] per sub-range and
//! the entries written so far.
//!
//! **What the record promises.** A node writes it (synced) *after* the
//! entries it covers are in the store, so after a crash it may lag the
//! store, never lead it: the entries between the recorded cursor and what
//! was really written are fetched again, and since they are the same
//! snapshot's values, writing them twice changes nothing. Entries are
//! counted the same way (those fetched again are counted once, with the
//! cursor that covers them).
//!
//! ```text
//! version u8 (1) ‖ height u64 ‖ block_id [32] ‖ state_root [32] ‖ entries u64
//!   ‖ entries_done u64 ‖ ranges u16 (1..=SYNC_RANGES_MAX)
//!   ‖ ranges × (0 ‖ next key [32] | 1)         0: from this key on, 1: done
//! ```
//!
//! Integers little-endian. The bytes come from the node's own disk, which
//! the engine checksums; the decoder still checks every length and tag.

use crate::error::DecodeError;
use crate::reader::Reader;

use super::client::RangeCursor;
use super::limits::SYNC_RANGES_MAX;
use super::message::SnapshotHead;

/// The store key of the record: the `j` namespace, outside the state
/// (`s`) and every chain record.
pub const PROGRESS_KEY: &[u8] = b"j";

const VERSION: u8 = 1;
const CURSOR_NEXT: u8 = 0;
const CURSOR_DONE: u8 = 1;

/// A persisted state-sync position ([module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncProgress {
    /// The snapshot being fetched.
    pub head: SnapshotHead,
    /// One cursor per sub-range, as `StateSync::resume` takes them.
    pub cursors: Vec<RangeCursor>,
    /// Entries written under those cursors.
    pub entries: u64,
}

impl SyncProgress {
    /// The encoding.
    ///
    /// # Panics
    /// With no cursor or more than [`SYNC_RANGES_MAX`]: a `StateSync`
    /// never has that many.
    pub fn encode(&self) -> Vec<u8> {
        assert!((1..=SYNC_RANGES_MAX).contains(&self.cursors.len()));
        let mut out = Vec::with_capacity(1 + 8 + 64 + 8 + 8 + 2 + 33 * self.cursors.len());
        out.push(VERSION);
        out.extend_from_slice(&self.head.height.to_le_bytes());
        out.extend_from_slice(&self.head.block_id);
        out.extend_from_slice(&self.head.state_root);
        out.extend_from_slice(&self.head.entries.to_le_bytes());
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&(self.cursors.len() as u16).to_le_bytes());
        for cursor in &self.cursors {
            match cursor {
                RangeCursor::Next(key) => {
                    out.push(CURSOR_NEXT);
                    out.extend_from_slice(key);
                }
                RangeCursor::Done => out.push(CURSOR_DONE),
            }
        }
        out
    }

    /// Decodes strictly.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the field at fault. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<SyncProgress, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("sync progress version")?;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let head = SnapshotHead {
            height: r.u64("sync progress height")?,
            block_id: r.array("sync progress block id")?,
            state_root: r.array("sync progress state root")?,
            entries: r.u64("sync progress head entries")?,
        };
        let entries = r.u64("sync progress entries")?;
        let ranges = r.u16("sync progress ranges")? as usize;
        if !(1..=SYNC_RANGES_MAX).contains(&ranges) {
            return Err(DecodeError::TooLong {
                field: "sync progress ranges",
                len: ranges,
                max: SYNC_RANGES_MAX,
            });
        }
        let mut cursors = Vec::with_capacity(ranges);
        for _ in 0..ranges {
            cursors.push(match r.u8("sync progress cursor")? {
                CURSOR_NEXT => RangeCursor::Next(r.array("sync progress cursor key")?),
                CURSOR_DONE => RangeCursor::Done,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        field: "sync progress cursor",
                        tag,
                    })
                }
            });
        }
        r.finish()?;
        Ok(SyncProgress {
            head,
            cursors,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SyncProgress {
        SyncProgress {
            head: SnapshotHead {
                height: 7,
                block_id: [1; 32],
                state_root: [2; 32],
                entries: 1000,
            },
            cursors: vec![
                RangeCursor::Done,
                RangeCursor::Next([3; 32]),
                RangeCursor::Next([0xff; 32]),
            ],
            entries: 400,
        }
    }

    #[test]
    fn round_trips() {
        let p = sample();
        assert_eq!(SyncProgress::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_an_error() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(SyncProgress::decode(&bytes[..len]).is_err(), "{len}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            SyncProgress::decode(&long),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn bad_version_tag_and_range_count_are_errors() {
        let bytes = sample().encode();
        let mut v = bytes.clone();
        v[0] = 9;
        assert_eq!(
            SyncProgress::decode(&v),
            Err(DecodeError::UnknownVersion(9))
        );
        let ranges_at = 1 + 8 + 64 + 8 + 8;
        let mut zero = bytes.clone();
        zero[ranges_at..ranges_at + 2].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(
            SyncProgress::decode(&zero),
            Err(DecodeError::TooLong { .. })
        ));
        let mut many = bytes.clone();
        many[ranges_at..ranges_at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(
            SyncProgress::decode(&many),
            Err(DecodeError::TooLong { .. })
        ));
        let mut tag = bytes;
        tag[ranges_at + 2] = 7;
        assert!(matches!(
            SyncProgress::decode(&tag),
            Err(DecodeError::UnknownTag { tag: 7, .. })
        ));
    }
}
