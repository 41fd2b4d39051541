//! The range prover over stored pages: the outside items of `[lo, hi]` at a
//! retained version, in the verifier's walk order (see [`super::RangeProof`]).
//!
//! It follows the verifier's walk down the two bound paths only. A node of
//! the walk maps onto the stored trie as nothing, a collapsed leaf, a page
//! not yet read, or a slice of a read page's items; only pages under a
//! straddling node are read (at most two per page level), and each one is
//! rehashed and compared with the hash its parent records, so the items it
//! yields are bound to the committed root.

use super::hash::{bit, Hash32};
use super::limits::{PAGE_BITS, RANGE_PROOF_ITEMS_MAX};
use super::page::{self, hex, page_key, Item};
use super::range_proof::{relation, right_child, OutsideItem, RangeProof, Relation};
use super::store::NodeStore;
use super::trie::{load_page, Sub};
use super::Error;

/// What occupies a node of the walk in the stored trie.
#[derive(Clone, Copy)]
enum Content<'a> {
    Empty,
    Leaf {
        path: Hash32,
        value_hash: Hash32,
    },
    /// The page at `level` (node depth `4 × level`), not read yet.
    Page {
        level: usize,
        hash: Hash32,
        version: u64,
    },
    /// Items of a read page at `level` below this node: a subtree with two
    /// or more leaves (possibly one child item reached by one-sided nodes).
    Items {
        items: &'a [Item],
        level: usize,
    },
}

/// The range proof of `[lo, hi]` (`lo <= hi`) for the trie whose root is
/// `root`.
pub(crate) fn prove<S: NodeStore>(
    store: &S,
    root: Sub,
    lo: &Hash32,
    hi: &Hash32,
) -> Result<RangeProof, Error> {
    assert!(lo <= hi, "callers check the bounds");
    let content = match root {
        Sub::Empty => Content::Empty,
        Sub::Leaf { path, value_hash } => Content::Leaf { path, value_hash },
        Sub::Page { hash, version } => Content::Page {
            level: 0,
            hash,
            version,
        },
    };
    let mut prover = Prover {
        store,
        lo,
        hi,
        items: Vec::new(),
    };
    prover.node(&[0u8; 32], 0, content)?;
    assert!(prover.items.len() <= RANGE_PROOF_ITEMS_MAX);
    Ok(RangeProof {
        items: prover.items,
    })
}

struct Prover<'a, S> {
    store: &'a S,
    lo: &'a Hash32,
    hi: &'a Hash32,
    items: Vec<OutsideItem>,
}

impl<S: NodeStore> Prover<'_, S> {
    /// Emits the outside items of the node at `depth` (lowest path `min`)
    /// holding `content`. Recurses only into straddling nodes: at most 256
    /// deep, and a read page (16 items on the stack) at most every 4 levels.
    fn node(&mut self, min: &Hash32, depth: usize, content: Content<'_>) -> Result<(), Error> {
        match relation(min, depth, self.lo, self.hi) {
            Relation::Inside => return Ok(()),
            Relation::Outside => {
                let item = match content {
                    Content::Empty => OutsideItem::Empty,
                    Content::Leaf { path, value_hash } => OutsideItem::Leaf { path, value_hash },
                    Content::Page { hash, .. } => OutsideItem::Node(hash),
                    Content::Items { items, level } => {
                        let mut compressions = 0;
                        OutsideItem::Node(page::subtree_hash(
                            items,
                            depth,
                            (level + 1) * PAGE_BITS,
                            &mut compressions,
                        ))
                    }
                };
                self.items.push(item);
                return Ok(());
            }
            Relation::Straddling => {}
        }
        let right_min = right_child(min, depth);
        match content {
            Content::Empty => {
                self.node(min, depth + 1, Content::Empty)?;
                self.node(&right_min, depth + 1, Content::Empty)
            }
            Content::Leaf { path, .. } => {
                // A collapsed leaf belongs to the child its path goes to.
                let (left, right) = if bit(&path, depth) {
                    (Content::Empty, content)
                } else {
                    (content, Content::Empty)
                };
                self.node(min, depth + 1, left)?;
                self.node(&right_min, depth + 1, right)
            }
            Content::Page {
                level,
                hash,
                version,
            } => {
                debug_assert_eq!(depth, level * PAGE_BITS);
                let items = load_page(self.store, level, min, version)?;
                let mut compressions = 0;
                if page::page_hash(&items, level, &mut compressions) != hash {
                    return Err(Error::Corruption {
                        key_hex: hex(&page_key(level, min, version)),
                        offset: 0,
                        reason: "page does not hash to the hash its parent records",
                    });
                }
                self.node(
                    min,
                    depth,
                    Content::Items {
                        items: &items,
                        level,
                    },
                )
            }
            Content::Items { items, level } => {
                let split = items.partition_point(|item| !bit(item.path(), depth));
                let (left, right) = items.split_at(split);
                let bottom = (level + 1) * PAGE_BITS;
                self.node(
                    min,
                    depth + 1,
                    child_content(left, level, depth + 1, bottom),
                )?;
                self.node(
                    &right_min,
                    depth + 1,
                    child_content(right, level, depth + 1, bottom),
                )
            }
        }
    }
}

/// The content of the node at `depth` holding `items` of a page at `level`
/// whose bottom is at depth `bottom`.
fn child_content(items: &[Item], level: usize, depth: usize, bottom: usize) -> Content<'_> {
    match items {
        [] => Content::Empty,
        [Item::Leaf { path, value_hash }] => Content::Leaf {
            path: *path,
            value_hash: *value_hash,
        },
        [Item::Child { hash, version, .. }] if depth == bottom => Content::Page {
            level: level + 1,
            hash: *hash,
            version: *version,
        },
        _ => {
            // Decoding checked that positions are distinct, so at most one
            // item reaches a bottom position.
            assert!(depth < bottom, "page items share a bottom position");
            Content::Items { items, level }
        }
    }
}
