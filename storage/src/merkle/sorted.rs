//! The root of a sorted run of `(path, value_hash)` pairs in one streaming
//! pass: no tree is materialised, memory is one stack of at most 257 entries.
//!
//! Why this works: in a trie whose leaves sit as high as they can, the depth
//! of a leaf is fixed by its two neighbours in sorted order alone — it is one
//! more than the longer of its common prefixes with the previous and the next
//! key. And once the next key is seen, every subtree left of the bit where
//! the two keys diverge is complete and can be folded into a single hash. So
//! a one-key look-ahead and a stack of completed left subtrees (of strictly
//! increasing depth) suffice, and every internal node is hashed exactly once.

use super::hash::{bit, common_prefix_bits, leaf_hash, node_hash, Hash32, EMPTY};
use super::limits::PATH_BITS;
use super::Error;

/// One completed subtree waiting for its right neighbours.
#[derive(Clone, Copy)]
struct Entry {
    /// Depth of the subtree root (number of path bits fixed above it).
    depth: u32,
    hash: Hash32,
    /// Any path inside the subtree (they all share `depth` leading bits).
    path: Hash32,
}

/// Streaming builder behind [`root_of_sorted`]. Push pairs in strictly
/// increasing path order, then [`finish`](SortedRootBuilder::finish).
///
/// ```
/// use strata_storage::merkle::{SortedRootBuilder, key_path, value_hash, root_of_sorted};
/// let mut pairs: Vec<_> = (0u32..100)
///     .map(|i| (key_path(&i.to_le_bytes()), value_hash(b"v")))
///     .collect();
/// pairs.sort();
/// let mut builder = SortedRootBuilder::new();
/// for (path, vh) in &pairs {
///     builder.push(*path, *vh).unwrap();
/// }
/// assert_eq!(builder.finish(), root_of_sorted(pairs).unwrap());
/// ```
pub struct SortedRootBuilder {
    stack: Vec<Entry>,
    /// The last pushed pair, not yet placed: its depth needs the next key.
    pending: Option<(Hash32, Hash32)>,
    /// `common_prefix_bits(previous, pending) + 1`, or `base_depth` when the
    /// pending key is the first.
    pending_depth_min: u32,
    /// Depth of the subtree this builder computes (0 for a whole trie).
    base_depth: u32,
    pushed: u64,
    compressions: u64,
}

impl Default for SortedRootBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SortedRootBuilder {
    /// A builder for the root of a whole trie.
    pub fn new() -> Self {
        Self::with_base_depth(0)
    }

    /// A builder for the subtree at depth `base_depth`: every pushed path must
    /// share its first `base_depth` bits (not checked; used by the parallel
    /// root, which splits on top bits).
    pub fn with_base_depth(base_depth: u32) -> Self {
        assert!(base_depth as usize <= PATH_BITS);
        Self {
            stack: Vec::with_capacity(PATH_BITS + 2),
            pending: None,
            pending_depth_min: base_depth,
            base_depth,
            pushed: 0,
            compressions: 0,
        }
    }

    /// Adds the next pair. Errors if `path` is not strictly greater than the
    /// previous one (the trie is a set: duplicates are rejected too).
    #[inline]
    pub fn push(&mut self, path: Hash32, value_hash: Hash32) -> Result<(), Error> {
        if let Some((prev_path, prev_vh)) = self.pending {
            if path <= prev_path {
                return Err(Error::UnsortedInput { index: self.pushed });
            }
            let lcp = common_prefix_bits(&prev_path, &path) as u32;
            // Keys share at most 255 bits here (they differ), so lcp + 1 <= 256.
            let depth = self.pending_depth_min.max(lcp + 1);
            self.stack.push(Entry {
                depth,
                hash: leaf_hash(&prev_path, &prev_vh),
                path: prev_path,
            });
            self.compressions += 1;
            self.fold_to(lcp + 1);
            self.pending_depth_min = lcp + 1;
        }
        self.pending = Some((path, value_hash));
        self.pushed += 1;
        Ok(())
    }

    /// Folds every stack entry deeper than `target` into one entry at depth
    /// `target` (the completed subtree left of the next key's divergence).
    #[inline]
    fn fold_to(&mut self, target: u32) {
        loop {
            let len = self.stack.len();
            debug_assert!(len > 0);
            let top = self.stack[len - 1];
            if top.depth <= target {
                debug_assert_eq!(top.depth, target);
                return;
            }
            let d = top.depth;
            if len >= 2 && self.stack[len - 2].depth == d {
                // The entry below at the same depth is the left sibling (see
                // the module docs: a surviving left subtree at depth d shares
                // exactly d - 1 bits with every later key).
                let left = &mut self.stack[len - 2];
                left.hash = node_hash(&left.hash, &top.hash);
                left.depth = d - 1;
                left.path = top.path;
                self.stack.pop();
            } else {
                let entry = &mut self.stack[len - 1];
                entry.hash = if bit(&top.path, (d - 1) as usize) {
                    node_hash(&EMPTY, &top.hash)
                } else {
                    node_hash(&top.hash, &EMPTY)
                };
                entry.depth = d - 1;
            }
            self.compressions += 1;
        }
    }

    /// The number of pairs pushed so far.
    pub fn len(&self) -> u64 {
        self.pushed
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// blake3 compressions performed so far (one per leaf and per node).
    pub fn compressions(&self) -> u64 {
        self.compressions
    }

    /// The root of everything pushed ([`EMPTY`] if nothing was).
    pub fn finish(mut self) -> Hash32 {
        self.finish_counted().0
    }

    /// Like [`finish`](Self::finish), also returning the blake3 compressions
    /// performed in total.
    pub fn finish_counted(&mut self) -> (Hash32, u64) {
        let Some((path, vh)) = self.pending.take() else {
            return (EMPTY, self.compressions);
        };
        self.stack.push(Entry {
            depth: self.pending_depth_min,
            hash: leaf_hash(&path, &vh),
            path,
        });
        self.compressions += 1;
        self.fold_to(self.base_depth);
        assert_eq!(self.stack.len(), 1, "fold leaves exactly the root");
        let root = self.stack.pop().expect("len checked above").hash;
        (root, self.compressions)
    }
}

/// The root of the trie holding exactly the given `(path, value_hash)` pairs,
/// which must come in strictly increasing path order (else
/// [`Error::UnsortedInput`]). One pass, O(1) memory, one blake3 compression
/// per leaf and per internal node.
pub fn root_of_sorted<I>(pairs: I) -> Result<Hash32, Error>
where
    I: IntoIterator<Item = (Hash32, Hash32)>,
{
    let mut builder = SortedRootBuilder::new();
    for (path, vh) in pairs {
        builder.push(path, vh)?;
    }
    Ok(builder.finish())
}

/// [`root_of_sorted`] over a slice, hashing the `2^split_bits` subtrees under
/// the top `split_bits` bits on up to `threads` scoped threads. Returns the
/// root and the blake3 compressions performed. Same result as the serial
/// version; worth it from roughly 100 k pairs.
pub fn root_of_sorted_parallel(
    pairs: &[(Hash32, Hash32)],
    threads: usize,
) -> Result<(Hash32, u64), Error> {
    if let Some(index) = pairs.windows(2).position(|w| w[0].0 >= w[1].0) {
        return Err(Error::UnsortedInput {
            index: index as u64 + 1,
        });
    }
    let threads = threads.clamp(1, super::limits::THREADS_MAX);
    if threads == 1 || pairs.len() < 4096 {
        let mut builder = SortedRootBuilder::new();
        for (path, vh) in pairs {
            builder.push(*path, *vh)?;
        }
        return Ok(builder.finish_counted());
    }
    // Four subtrees per thread evens out the uneven split of random keys.
    let split_bits = (threads * 4).next_power_of_two().trailing_zeros();
    let parts = 1usize << split_bits;
    let mut bounds = Vec::with_capacity(parts + 1);
    bounds.push(0);
    for part in 1..parts {
        let start = pairs.partition_point(|(p, _)| {
            (u64::from_be_bytes(p[..8].try_into().expect("8 bytes")) >> (64 - split_bits))
                < part as u64
        });
        bounds.push(start);
    }
    bounds.push(pairs.len());
    // (hash, leaf count capped at 2) per part: a part with one leaf must be
    // able to move that leaf up when its sibling is empty.
    let mut results = vec![(EMPTY, 0u8, 0u64); parts];
    let per_thread = parts.div_ceil(threads);
    std::thread::scope(|scope| {
        for (chunk_index, chunk) in results.chunks_mut(per_thread).enumerate() {
            let bounds = &bounds;
            scope.spawn(move || {
                for (i, slot) in chunk.iter_mut().enumerate() {
                    let part = chunk_index * per_thread + i;
                    let run = &pairs[bounds[part]..bounds[part + 1]];
                    let mut builder = SortedRootBuilder::with_base_depth(split_bits);
                    for (path, vh) in run {
                        builder
                            .push(*path, *vh)
                            .expect("whole slice checked sorted above");
                    }
                    let (hash, compressions) = builder.finish_counted();
                    *slot = (hash, run.len().min(2) as u8, compressions);
                }
            });
        }
    });
    let mut compressions: u64 = results.iter().map(|r| r.2).sum();
    let mut level: Vec<(Hash32, u8)> = results.iter().map(|r| (r.0, r.1)).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let (l, r) = (pair[0], pair[1]);
                if l.1 + r.1 <= 1 {
                    // Zero or one leaf below: the subtree is that leaf (or empty).
                    (if l.1 == 1 { l.0 } else { r.0 }, l.1 + r.1)
                } else {
                    compressions += 1;
                    (node_hash(&l.0, &r.0), 2)
                }
            })
            .collect();
    }
    Ok((level[0].0, compressions))
}
