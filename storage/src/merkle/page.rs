//! Pages: the unit the trie is stored in.
//!
//! A page at level `L` is the 4-level binary subtree below the path prefix of
//! `L` nibbles (depth `4L` to `4L + 4`). It stores only its *frontier*, at
//! most one item per bottom position (nibble `L` of the path):
//! - a leaf `(path, value_hash)` — the only leaf under that position, sitting
//!   somewhere in the page's 4 levels (its exact depth follows from its
//!   neighbours, so it is not stored);
//! - a child `(hash, version)` — a subtree with two or more leaves, stored as
//!   the page at level `L + 1` under that prefix, written at `version`.
//!
//! The up to 15 internal hashes are recomputed from the items when needed
//! (at most 15 compressions), which halves the bytes per page compared with
//! storing them. Byte layouts are in `docs/storage-format.md`.

use super::hash::{bit, common_prefix_bits, leaf_hash, node_hash, Hash32, EMPTY};
use super::limits::{PAGE_BITS, PAGE_BYTES_MAX, PAGE_FANOUT, PAGE_LEVELS};
use super::Error;

/// Namespace byte of page records.
pub(crate) const NS_PAGE: u8 = b'p';
/// Namespace byte of per-version root records.
pub(crate) const NS_ROOT: u8 = b'r';
/// Namespace byte of per-version stale-page lists.
pub(crate) const NS_STALE: u8 = b's';
/// Key of the latest-version record.
pub(crate) const KEY_LATEST: &[u8] = b"l";

/// Format byte of page records.
const PAGE_FORMAT: u8 = 1;
const TAG_LEAF: u8 = 1;
const TAG_CHILD: u8 = 2;

/// One bottom position of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// The only leaf under this position.
    Leaf { path: Hash32, value_hash: Hash32 },
    /// A child page; `path` is its prefix (bits past it zero).
    Child {
        path: Hash32,
        hash: Hash32,
        version: u64,
    },
}

impl Item {
    /// A path under the item's position (the leaf path or child prefix).
    #[inline]
    pub(crate) fn path(&self) -> &Hash32 {
        match self {
            Item::Leaf { path, .. } | Item::Child { path, .. } => path,
        }
    }
}

/// Up to `PAGE_FANOUT` items inline (no heap allocation per page: apply
/// decodes and rebuilds thousands of pages per batch).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Items {
    buf: [Item; PAGE_FANOUT],
    len: usize,
}

const ITEM_UNUSED: Item = Item::Leaf {
    path: [0u8; 32],
    value_hash: [0u8; 32],
};

impl Items {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [ITEM_UNUSED; PAGE_FANOUT],
            len: 0,
        }
    }

    /// Appends an item; a page has one item per bottom position at most.
    #[inline]
    pub(crate) fn push(&mut self, item: Item) {
        assert!(self.len < PAGE_FANOUT, "more items than page positions");
        self.buf[self.len] = item;
        self.len += 1;
    }
}

impl std::ops::Deref for Items {
    type Target = [Item];

    #[inline]
    fn deref(&self) -> &[Item] {
        &self.buf[..self.len]
    }
}

impl PartialEq for Items {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// The page index (nibble) of `path` at page `level`.
#[inline(always)]
pub(crate) fn index_at(path: &Hash32, level: usize) -> usize {
    debug_assert!(level < PAGE_LEVELS);
    let bit_pos = level * PAGE_BITS;
    let shift = 8 - PAGE_BITS - (bit_pos & 7);
    ((path[bit_pos >> 3] >> shift) as usize) & (PAGE_FANOUT - 1)
}

/// `path` with every bit from `bits` on cleared.
pub(crate) fn masked(path: &Hash32, bits: usize) -> Hash32 {
    let mut out = [0u8; 32];
    let full = bits / 8;
    out[..full].copy_from_slice(&path[..full]);
    if bits % 8 != 0 {
        out[full] = path[full] & (0xFFu8 << (8 - bits % 8));
    }
    out
}

/// Store key of the page at `level` under `prefix`, written at `version`:
/// `'p' ‖ level ‖ prefix bytes ‖ version (u64 BE)`. Pages of one level sort
/// together, by prefix, then by version.
pub(crate) fn page_key(level: usize, prefix: &Hash32, version: u64) -> Vec<u8> {
    let prefix_bytes = (level * PAGE_BITS).div_ceil(8);
    let mut key = Vec::with_capacity(2 + prefix_bytes + 8);
    key.push(NS_PAGE);
    key.push(level as u8);
    key.extend_from_slice(&prefix[..prefix_bytes]);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// `ns ‖ version (u64 BE)`: keys of root records and stale lists.
pub(crate) fn version_key(ns: u8, version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(ns);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes a page (items sorted by index, at least two leaves below).
pub(crate) fn encode(level: usize, items: &[Item]) -> Vec<u8> {
    assert!(!items.is_empty() && items.len() <= PAGE_FANOUT);
    let mut out = Vec::with_capacity(3 + items.len() * 65);
    out.push(PAGE_FORMAT);
    out.push(level as u8);
    out.push(items.len() as u8);
    for item in items {
        match item {
            Item::Leaf { path, value_hash } => {
                out.push(TAG_LEAF);
                out.extend_from_slice(path);
                out.extend_from_slice(value_hash);
            }
            Item::Child {
                path,
                hash,
                version,
            } => {
                out.push(TAG_CHILD);
                out.push(index_at(path, level) as u8);
                out.extend_from_slice(hash);
                out.extend_from_slice(&version.to_le_bytes());
            }
        }
    }
    debug_assert!(out.len() <= PAGE_BYTES_MAX);
    out
}

/// Decodes and validates the page stored under `key`, expected at `level`
/// under `prefix`. Stored bytes are untrusted: every length, index and
/// order is checked, and any violation is a `Corruption` error naming the
/// key and offset.
pub(crate) fn decode(
    key: &[u8],
    bytes: &[u8],
    level: usize,
    prefix: &Hash32,
) -> Result<Items, Error> {
    let corrupt = |offset: usize, reason: &'static str| Error::Corruption {
        key_hex: hex(key),
        offset,
        reason,
    };
    if bytes.len() > PAGE_BYTES_MAX {
        return Err(corrupt(0, "page longer than PAGE_BYTES_MAX"));
    }
    if bytes.len() < 3 {
        return Err(corrupt(bytes.len(), "page header truncated"));
    }
    if bytes[0] != PAGE_FORMAT {
        return Err(corrupt(0, "unknown page format"));
    }
    if bytes[1] as usize != level {
        return Err(corrupt(1, "page level does not match its key"));
    }
    let count = bytes[2] as usize;
    if count == 0 || count > PAGE_FANOUT {
        return Err(corrupt(2, "page item count out of range"));
    }
    let prefix_bits = level * PAGE_BITS;
    let mut items = Items::new();
    let mut offset = 3;
    let mut last_index: Option<usize> = None;
    for _ in 0..count {
        let tag = *bytes
            .get(offset)
            .ok_or_else(|| corrupt(offset, "page truncated"))?;
        let item = match tag {
            TAG_LEAF => {
                let body = bytes
                    .get(offset + 1..offset + 65)
                    .ok_or_else(|| corrupt(offset, "page leaf truncated"))?;
                let path: Hash32 = body[..32].try_into().expect("32 bytes");
                let value_hash: Hash32 = body[32..].try_into().expect("32 bytes");
                if common_prefix_bits(&path, prefix) < prefix_bits {
                    return Err(corrupt(offset + 1, "leaf path outside its page"));
                }
                Item::Leaf { path, value_hash }
            }
            TAG_CHILD => {
                let body = bytes
                    .get(offset + 1..offset + 42)
                    .ok_or_else(|| corrupt(offset, "page child truncated"))?;
                let index = body[0] as usize;
                if index >= PAGE_FANOUT {
                    return Err(corrupt(offset + 1, "child index out of range"));
                }
                if level + 1 >= PAGE_LEVELS {
                    return Err(corrupt(offset, "child page below the last level"));
                }
                let mut path = masked(prefix, prefix_bits);
                let bit_pos = prefix_bits;
                path[bit_pos >> 3] |= (index as u8) << (8 - PAGE_BITS - (bit_pos & 7));
                Item::Child {
                    path,
                    hash: body[1..33].try_into().expect("32 bytes"),
                    version: u64::from_le_bytes(body[33..41].try_into().expect("8 bytes")),
                }
            }
            _ => return Err(corrupt(offset, "unknown page item tag")),
        };
        let index = index_at(item.path(), level);
        if last_index.is_some_and(|last| index <= last) {
            return Err(corrupt(offset, "page items not in increasing index order"));
        }
        last_index = Some(index);
        offset += if tag == TAG_LEAF { 65 } else { 42 };
        items.push(item);
    }
    if offset != bytes.len() {
        return Err(corrupt(offset, "trailing bytes after page items"));
    }
    if count == 1 && matches!(items[0], Item::Leaf { .. }) {
        return Err(corrupt(2, "page holds a single leaf"));
    }
    Ok(items)
}

/// The hash of the subtree at `depth` holding `items` (all sharing `depth`
/// leading bits, sorted), where child items sit at depth `bottom`.
/// Adds the compressions performed to `compressions`.
pub(crate) fn subtree_hash(
    items: &[Item],
    depth: usize,
    bottom: usize,
    compressions: &mut u64,
) -> Hash32 {
    match items {
        [] => EMPTY,
        [Item::Leaf { path, value_hash }] => {
            *compressions += 1;
            leaf_hash(path, value_hash)
        }
        [Item::Child { hash, .. }] if depth == bottom => *hash,
        _ => {
            assert!(depth < bottom, "two items share a page bottom position");
            let split = items.partition_point(|item| !bit(item.path(), depth));
            let left = subtree_hash(&items[..split], depth + 1, bottom, compressions);
            let right = subtree_hash(&items[split..], depth + 1, bottom, compressions);
            *compressions += 1;
            node_hash(&left, &right)
        }
    }
}

/// The hash of a whole page at `level`.
pub(crate) fn page_hash(items: &[Item], level: usize, compressions: &mut u64) -> Hash32 {
    subtree_hash(
        items,
        level * PAGE_BITS,
        (level + 1) * PAGE_BITS,
        compressions,
    )
}
