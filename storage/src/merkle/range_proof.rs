//! Range proofs: a sorted run of leaves is *exactly* the set of leaves whose
//! paths lie in an inclusive path range `[lo, hi]` under a root — none left
//! out, none added, every value hash right. State sync verifies each chunk
//! it fetches with one.
//!
//! The proof is the list of *outside items*: what occupies each node of the
//! path space that lies entirely outside `[lo, hi]` and hangs off a node
//! straddling a bound. The verifier walks the path space from the root:
//!
//! - a node entirely outside the range takes the next outside item
//!   (`Empty`, `Leaf` or `Node(hash)`);
//! - a node entirely inside is built from the run's leaves in its range;
//! - a straddling node combines its two children, moving a lone leaf beside
//!   an empty sibling up, as the trie's shape rule does.
//!
//! The computed root must equal the root and every item must be used.
//!
//! **Why an outside leaf must lie under its node.** A leaf hash does not
//! encode the depth the leaf sits at. Without the check, a prover could take
//! an in-range leaf that sits collapsed at a node straddling `lo`, present
//! it as the outside item of that node's outside child, and leave it out of
//! the run: the combine step moves it back up to the same place and the root
//! still matches. Requiring the leaf's path to start with its node's prefix
//! puts it where it claims to be — outside the range.
//!
//! Byte layout and rules: `docs/storage-format.md`, "Range proofs".

use super::hash::{bit, common_prefix_bits, leaf_hash, node_hash, Hash32, EMPTY};
use super::limits::{
    PATH_BITS, RANGE_PROOF_BYTES_MAX, RANGE_PROOF_ITEMS_MAX, RANGE_PROOF_ITEM_BYTES_MAX,
};
use super::sorted::SortedRootBuilder;
use super::RangeProofError;

/// Format byte of encoded range proofs.
const RANGE_PROOF_FORMAT: u8 = 1;
const TAG_EMPTY: u8 = 0;
const TAG_LEAF: u8 = 1;
const TAG_NODE: u8 = 2;

/// What occupies a node of the path space that lies entirely outside the
/// proven range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutsideItem {
    /// An empty subtree.
    Empty,
    /// The only leaf under the node (its path starts with the node's prefix).
    Leaf {
        /// The leaf's path.
        path: Hash32,
        /// The leaf's value hash.
        value_hash: Hash32,
    },
    /// A subtree of two or more leaves, by its hash (never [`EMPTY`]).
    Node(Hash32),
}

/// A proof that a run of leaves is exactly the content of a path range.
///
/// ```
/// use strata_storage::merkle::{root_of_sorted, verify_range, RangeProof};
/// let leaves: Vec<([u8; 32], [u8; 32])> = (0u8..10).map(|i| ([i * 20; 32], [i; 32])).collect();
/// let root = root_of_sorted(leaves.iter().copied()).unwrap();
/// let (lo, hi) = ([50u8; 32], [130u8; 32]);
/// let proof = RangeProof::from_sorted(&leaves, &lo, &hi).unwrap();
/// let proof = RangeProof::decode(&proof.encode()).unwrap();
/// // Paths 60, 80, 100, 120 (every byte) lie in [50…, 130…].
/// let run = &leaves[3..7];
/// assert!(verify_range(&root, &lo, &hi, run, &proof).is_ok());
/// assert!(verify_range(&root, &lo, &hi, &run[1..], &proof).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeProof {
    /// The outside items, in the order the verifier's walk meets them (left
    /// to right).
    pub items: Vec<OutsideItem>,
}

/// Where a node of the path space lies relative to `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Relation {
    Outside,
    Inside,
    Straddling,
}

/// The lowest path under the node at `depth` whose lowest path is `min`,
/// with bit `depth` set: the right child's lowest path.
pub(crate) fn right_child(min: &Hash32, depth: usize) -> Hash32 {
    debug_assert!(depth < PATH_BITS);
    let mut out = *min;
    out[depth / 8] |= 0x80 >> (depth % 8);
    out
}

/// The highest path under the node at `depth` whose lowest path is `min`.
fn node_max(min: &Hash32, depth: usize) -> Hash32 {
    let mut out = *min;
    let full = depth / 8;
    if full < 32 {
        out[full] |= 0xFF >> (depth % 8);
        for byte in &mut out[full + 1..] {
            *byte = 0xFF;
        }
    }
    out
}

/// How the node at `depth` with lowest path `min` relates to `[lo, hi]`.
pub(crate) fn relation(min: &Hash32, depth: usize, lo: &Hash32, hi: &Hash32) -> Relation {
    let max = node_max(min, depth);
    if max < *lo || min > hi {
        Relation::Outside
    } else if lo <= min && max <= *hi {
        Relation::Inside
    } else {
        Relation::Straddling
    }
}

/// A node's value during verification: like [`OutsideItem`], the leaf kept
/// apart so a lone leaf beside an empty sibling can move up.
#[derive(Clone, Copy)]
enum Part {
    Empty,
    Leaf(Hash32),
    Node(Hash32),
}

impl Part {
    fn hash(&self) -> Hash32 {
        match self {
            Part::Empty => EMPTY,
            Part::Leaf(hash) | Part::Node(hash) => *hash,
        }
    }

    /// The parent of `left` and `right` under the shape rule: a lone leaf
    /// (or nothing) stands for the whole subtree.
    fn combine(left: Part, right: Part) -> Part {
        match (left, right) {
            (Part::Empty, Part::Empty) => Part::Empty,
            (Part::Leaf(h), Part::Empty) | (Part::Empty, Part::Leaf(h)) => Part::Leaf(h),
            (l, r) => Part::Node(node_hash(&l.hash(), &r.hash())),
        }
    }
}

/// The subtree at `depth` holding `leaves` (sorted, all under one node), as
/// a [`Part`].
fn part_of(leaves: &[(Hash32, Hash32)], depth: usize) -> Part {
    match leaves {
        [] => Part::Empty,
        [(path, value_hash)] => Part::Leaf(leaf_hash(path, value_hash)),
        _ => {
            let mut builder = SortedRootBuilder::with_base_depth(depth as u32);
            for (path, value_hash) in leaves {
                builder
                    .push(*path, *value_hash)
                    .expect("callers pass leaves checked strictly sorted");
            }
            Part::Node(builder.finish())
        }
    }
}

/// The first index `i` at which `leaves[i].0 >= leaves[i + 1].0`, plus one.
fn unsorted_at(leaves: &[(Hash32, Hash32)]) -> Option<usize> {
    leaves
        .windows(2)
        .position(|w| w[0].0 >= w[1].0)
        .map(|i| i + 1)
}

impl RangeProof {
    /// Builds the proof for `[lo, hi]` from the *whole* leaf set of a trie
    /// (`all_leaves`, strictly sorted by path), in memory. Gives the same
    /// proof as `Trie::prove_range_at` over the stored pages of that set.
    ///
    /// # Errors
    /// [`RangeProofError::RangeInverted`] if `lo > hi`,
    /// [`RangeProofError::Unsorted`] if `all_leaves` is not strictly sorted.
    pub fn from_sorted(
        all_leaves: &[(Hash32, Hash32)],
        lo: &Hash32,
        hi: &Hash32,
    ) -> Result<RangeProof, RangeProofError> {
        if lo > hi {
            return Err(RangeProofError::RangeInverted);
        }
        if let Some(index) = unsorted_at(all_leaves) {
            return Err(RangeProofError::Unsorted { index });
        }
        let mut items = Vec::new();
        collect_outside(all_leaves, &[0u8; 32], 0, lo, hi, &mut items);
        assert!(
            items.len() <= RANGE_PROOF_ITEMS_MAX,
            "see RANGE_PROOF_ITEMS_MAX"
        );
        Ok(RangeProof { items })
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        3 + self
            .items
            .iter()
            .map(|item| match item {
                OutsideItem::Empty => 1,
                OutsideItem::Leaf { .. } => 1 + 64,
                OutsideItem::Node(_) => 1 + 32,
            })
            .sum::<usize>()
    }

    /// Encodes the proof: `format ‖ count (u16 LE) ‖ (tag ‖ payload)*`.
    ///
    /// # Panics
    /// If the proof holds more than [`RANGE_PROOF_ITEMS_MAX`] items (no
    /// range needs more; the provers of this module never make such a proof).
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.items.len() <= RANGE_PROOF_ITEMS_MAX);
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(RANGE_PROOF_FORMAT);
        out.extend_from_slice(&(self.items.len() as u16).to_le_bytes());
        for item in &self.items {
            match item {
                OutsideItem::Empty => out.push(TAG_EMPTY),
                OutsideItem::Leaf { path, value_hash } => {
                    out.push(TAG_LEAF);
                    out.extend_from_slice(path);
                    out.extend_from_slice(value_hash);
                }
                OutsideItem::Node(hash) => {
                    out.push(TAG_NODE);
                    out.extend_from_slice(hash);
                }
            }
        }
        assert_eq!(out.len(), self.encoded_len());
        out
    }

    /// Decodes untrusted range proof bytes. The length is checked against
    /// [`RANGE_PROOF_BYTES_MAX`] before anything else and every field before
    /// it is read; only the canonical encoding is accepted (known format and
    /// tags, no node item with the empty hash, no trailing bytes). Never
    /// panics.
    pub fn decode(bytes: &[u8]) -> Result<RangeProof, RangeProofError> {
        let len = bytes.len();
        if len > RANGE_PROOF_BYTES_MAX {
            return Err(RangeProofError::Oversized {
                len,
                max: RANGE_PROOF_BYTES_MAX,
            });
        }
        let header = bytes
            .get(..3)
            .ok_or(RangeProofError::Truncated { needed: 3, len })?;
        if header[0] != RANGE_PROOF_FORMAT {
            return Err(RangeProofError::UnknownFormat(header[0]));
        }
        let count = u16::from_le_bytes([header[1], header[2]]) as usize;
        if count > RANGE_PROOF_ITEMS_MAX {
            return Err(RangeProofError::TooManyItems {
                count,
                max: RANGE_PROOF_ITEMS_MAX,
            });
        }
        let take32 = |offset: usize| -> Result<Hash32, RangeProofError> {
            let needed = offset + 32;
            let slice = bytes
                .get(offset..needed)
                .ok_or(RangeProofError::Truncated { needed, len })?;
            Ok(slice.try_into().expect("slice of 32 bytes"))
        };
        let mut items = Vec::with_capacity(count);
        let mut offset = 3;
        for index in 0..count {
            let tag = *bytes.get(offset).ok_or(RangeProofError::Truncated {
                needed: offset + 1,
                len,
            })?;
            let item = match tag {
                TAG_EMPTY => OutsideItem::Empty,
                TAG_LEAF => OutsideItem::Leaf {
                    path: take32(offset + 1)?,
                    value_hash: take32(offset + 33)?,
                },
                TAG_NODE => {
                    let hash = take32(offset + 1)?;
                    if hash == EMPTY {
                        return Err(RangeProofError::EmptyNodeItem { index });
                    }
                    OutsideItem::Node(hash)
                }
                _ => return Err(RangeProofError::UnknownTag { tag, offset }),
            };
            offset += match item {
                OutsideItem::Empty => 1,
                OutsideItem::Leaf { .. } => RANGE_PROOF_ITEM_BYTES_MAX,
                OutsideItem::Node(_) => 33,
            };
            items.push(item);
        }
        if offset != len {
            return Err(RangeProofError::TrailingBytes {
                len,
                expected: offset,
            });
        }
        Ok(RangeProof { items })
    }
}

/// Appends the outside items of the node at `depth` (lowest path `min`)
/// holding `leaves`, in walk order.
fn collect_outside(
    leaves: &[(Hash32, Hash32)],
    min: &Hash32,
    depth: usize,
    lo: &Hash32,
    hi: &Hash32,
    items: &mut Vec<OutsideItem>,
) {
    match relation(min, depth, lo, hi) {
        Relation::Inside => {}
        Relation::Outside => items.push(match leaves {
            [] => OutsideItem::Empty,
            [(path, value_hash)] => OutsideItem::Leaf {
                path: *path,
                value_hash: *value_hash,
            },
            _ => OutsideItem::Node(part_of(leaves, depth).hash()),
        }),
        Relation::Straddling => {
            // A straddling node spans more than one path, so depth < 256.
            let split = leaves.partition_point(|(path, _)| !bit(path, depth));
            let (left, right) = leaves.split_at(split);
            collect_outside(left, min, depth + 1, lo, hi, items);
            collect_outside(right, &right_child(min, depth), depth + 1, lo, hi, items);
        }
    }
}

/// Verifies that `leaves` (`(path, value_hash)`, strictly sorted) are
/// exactly the leaves with paths in `[lo, hi]` (inclusive) of the trie with
/// `root`. Needs nothing but its arguments; never panics.
///
/// # Errors
/// Which rule failed: inverted bounds, an unsorted run or a run leaf outside
/// the range (checked first), an outside leaf not under its node, too few or
/// unused outside items, or a root mismatch.
pub fn verify_range(
    root: &Hash32,
    lo: &Hash32,
    hi: &Hash32,
    leaves: &[(Hash32, Hash32)],
    proof: &RangeProof,
) -> Result<(), RangeProofError> {
    if lo > hi {
        return Err(RangeProofError::RangeInverted);
    }
    if let Some(index) = unsorted_at(leaves) {
        return Err(RangeProofError::Unsorted { index });
    }
    if let Some(index) = leaves.iter().position(|(path, _)| path < lo || path > hi) {
        return Err(RangeProofError::LeafOutsideRange { index });
    }
    let mut walk = Verifier {
        lo,
        hi,
        leaves,
        next_leaf: 0,
        items: &proof.items,
        next_item: 0,
    };
    let computed = walk.node(&[0u8; 32], 0)?;
    // The inside nodes tile [lo, hi] left to right and every run leaf lies
    // in [lo, hi] (checked above), so each was placed in exactly one.
    assert_eq!(walk.next_leaf, leaves.len(), "inside nodes tile the range");
    if walk.next_item != proof.items.len() {
        return Err(RangeProofError::UnusedItems {
            used: walk.next_item,
            len: proof.items.len(),
        });
    }
    if computed.hash() != *root {
        return Err(RangeProofError::RootMismatch);
    }
    Ok(())
}

/// The verifier's walk: cursors into the run and the outside items.
struct Verifier<'a> {
    lo: &'a Hash32,
    hi: &'a Hash32,
    leaves: &'a [(Hash32, Hash32)],
    next_leaf: usize,
    items: &'a [OutsideItem],
    next_item: usize,
}

impl Verifier<'_> {
    /// The value of the node at `depth` with lowest path `min`. Recursion
    /// only descends into straddling nodes, so it is at most 256 deep.
    fn node(&mut self, min: &Hash32, depth: usize) -> Result<Part, RangeProofError> {
        match relation(min, depth, self.lo, self.hi) {
            Relation::Outside => {
                let index = self.next_item;
                let item = self.items.get(index).ok_or(RangeProofError::TooFewItems {
                    len: self.items.len(),
                })?;
                self.next_item += 1;
                Ok(match item {
                    OutsideItem::Empty => Part::Empty,
                    OutsideItem::Leaf { path, value_hash } => {
                        // See the module docs: a collapsed in-range leaf must
                        // not pass as this node's leaf.
                        if common_prefix_bits(path, min) < depth {
                            return Err(RangeProofError::OutsideLeafNotUnderNode { index, depth });
                        }
                        Part::Leaf(leaf_hash(path, value_hash))
                    }
                    OutsideItem::Node(hash) => {
                        if *hash == EMPTY {
                            return Err(RangeProofError::EmptyNodeItem { index });
                        }
                        Part::Node(*hash)
                    }
                })
            }
            Relation::Inside => {
                let max = node_max(min, depth);
                let rest = &self.leaves[self.next_leaf..];
                let count = rest.partition_point(|(path, _)| *path <= max);
                let (mine, _) = rest.split_at(count);
                assert!(
                    mine.first().is_none_or(|(path, _)| path >= min),
                    "inside nodes are met in path order"
                );
                self.next_leaf += count;
                Ok(part_of(mine, depth))
            }
            Relation::Straddling => {
                let left = self.node(min, depth + 1)?;
                let right = self.node(&right_child(min, depth), depth + 1)?;
                Ok(Part::combine(left, right))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(first: u8) -> Hash32 {
        let mut p = [0u8; 32];
        p[0] = first;
        p
    }

    #[test]
    fn node_bounds() {
        let min = path(0b0100_0000);
        assert_eq!(node_max(&min, 2)[0], 0b0111_1111);
        assert_eq!(node_max(&min, 2)[31], 0xFF);
        assert_eq!(node_max(&[7u8; 32], 256), [7u8; 32]);
        assert_eq!(right_child(&[0u8; 32], 9)[1], 0b0100_0000);
        assert_eq!(
            relation(&[0u8; 32], 0, &[0u8; 32], &[0xFF; 32]),
            Relation::Inside
        );
        assert_eq!(
            relation(&[0u8; 32], 0, &path(1), &path(2)),
            Relation::Straddling
        );
        assert_eq!(
            relation(&path(0x80), 1, &path(1), &path(2)),
            Relation::Outside
        );
    }

    #[test]
    fn single_path_range_of_an_empty_trie() {
        let p = [0x5Au8; 32];
        let proof = RangeProof::from_sorted(&[], &p, &p).unwrap();
        // One outside item per depth: the sibling of p's path.
        assert_eq!(proof.items.len(), PATH_BITS);
        assert!(proof.items.iter().all(|i| *i == OutsideItem::Empty));
        assert_eq!(verify_range(&EMPTY, &p, &p, &[], &proof), Ok(()));
    }

    #[test]
    fn worst_case_item_count_fits_the_limit() {
        // lo = 01…1 and hi = 10…0 split at the root; below it, lo always
        // goes right (its left sibling lies below lo) and hi always left
        // (its right sibling lies above hi): one outside item per side on
        // each of the 255 levels. No pair of bounds needs more.
        let mut lo = [0xFFu8; 32];
        lo[0] = 0x7F;
        let mut hi = [0u8; 32];
        hi[0] = 0x80;
        let proof = RangeProof::from_sorted(&[], &lo, &hi).unwrap();
        assert_eq!(proof.items.len(), 2 * (PATH_BITS - 1));
        assert!(proof.items.len() <= RANGE_PROOF_ITEMS_MAX);
    }

    #[test]
    fn decode_rejects_non_canonical_bytes() {
        let proof = RangeProof {
            items: vec![
                OutsideItem::Empty,
                OutsideItem::Node([1; 32]),
                OutsideItem::Leaf {
                    path: [2; 32],
                    value_hash: [3; 32],
                },
            ],
        };
        let bytes = proof.encode();
        assert_eq!(RangeProof::decode(&bytes), Ok(proof));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            RangeProof::decode(&trailing),
            Err(RangeProofError::TrailingBytes { .. })
        ));
        assert!(matches!(
            RangeProof::decode(&bytes[..bytes.len() - 1]),
            Err(RangeProofError::Truncated { .. })
        ));
        let mut bad_tag = bytes.clone();
        bad_tag[3] = 9;
        assert_eq!(
            RangeProof::decode(&bad_tag),
            Err(RangeProofError::UnknownTag { tag: 9, offset: 3 })
        );
        let empty_node = RangeProof {
            items: vec![OutsideItem::Node(EMPTY)],
        };
        assert_eq!(
            RangeProof::decode(&empty_node.encode()),
            Err(RangeProofError::EmptyNodeItem { index: 0 })
        );
        let mut too_many = vec![RANGE_PROOF_FORMAT];
        too_many.extend_from_slice(&(RANGE_PROOF_ITEMS_MAX as u16 + 1).to_le_bytes());
        assert!(matches!(
            RangeProof::decode(&too_many),
            Err(RangeProofError::TooManyItems { .. })
        ));
        assert!(matches!(
            RangeProof::decode(&vec![0u8; RANGE_PROOF_BYTES_MAX + 1]),
            Err(RangeProofError::Oversized { .. })
        ));
        assert_eq!(
            RangeProof::decode(&[2, 0, 0]),
            Err(RangeProofError::UnknownFormat(2))
        );
    }
}
