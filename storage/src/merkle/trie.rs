//! The persistent trie: pages in a [`NodeStore`], batched updates, proofs
//! against the latest `roots_retained` roots.

use super::batch::Update;
use super::hash::{bit, leaf_hash, Hash32, EMPTY};
use super::limits::{
    BATCH_UPDATES_MAX, PAGE_BITS, PAGE_FANOUT, PAGE_LEVELS, PARALLEL_BATCH_MIN,
    ROOTS_RETAINED_DEFAULT, ROOTS_RETAINED_MAX, THREADS_MAX,
};
use super::page::{self, hex, masked, page_key, version_key, Item, Items};
use super::page::{KEY_LATEST, NS_ROOT, NS_STALE};
use super::proof::{Proof, Terminal};
use super::range_proof::RangeProof;
use super::store::NodeStore;
use super::Error;

/// Trie settings, by value.
#[derive(Clone, Debug)]
pub struct TrieConfig {
    roots_retained: u64,
    threads: usize,
}

impl Default for TrieConfig {
    fn default() -> Self {
        Self {
            roots_retained: ROOTS_RETAINED_DEFAULT,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(THREADS_MAX),
        }
    }
}

impl TrieConfig {
    /// Defaults: 16 retained roots, one thread per available core (at most
    /// `THREADS_MAX`).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many latest committed roots can be proven against (default 16,
    /// at least 1). Pages only older roots reference are deleted in the
    /// batch that commits the version pushing them out of the window.
    pub fn roots_retained(mut self, n: u64) -> Self {
        self.roots_retained = n;
        self
    }

    /// Threads `apply` may use for batches of at least `PARALLEL_BATCH_MIN`
    /// updates (default: available cores, at most `THREADS_MAX`).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }
}

/// What sits at a page boundary: nothing, one leaf, or a stored page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sub {
    Empty,
    Leaf { path: Hash32, value_hash: Hash32 },
    Page { hash: Hash32, version: u64 },
}

impl Sub {
    fn hash(&self) -> Hash32 {
        match self {
            Sub::Empty => EMPTY,
            Sub::Leaf { path, value_hash } => leaf_hash(path, value_hash),
            Sub::Page { hash, .. } => *hash,
        }
    }
}

/// Counters of the last `apply`, for benchmarks and capacity planning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Updates in the batch.
    pub updates: u64,
    /// Pages written (each a put of one page record).
    pub pages_written: u64,
    /// Page records deleted by pruning.
    pub pages_deleted: u64,
    /// Bytes of all keys and values put (pages, root record, stale list).
    pub bytes_written: u64,
    /// blake3 compressions (leaf and node hashes) performed.
    pub compressions: u64,
}

/// Records to put: (store key, value) pairs.
pub type Puts = Vec<(Vec<u8>, Vec<u8>)>;

/// A trie version computed by [`Trie::stage`] and not yet installed: its
/// root, and the records that make it durable.
#[must_use = "a staged version changes nothing until its writes are made and it is installed"]
pub struct Staged {
    version: u64,
    root: Hash32,
    sub: Sub,
    stats: ApplyStats,
    puts: Puts,
    deletes: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("version", &self.version)
            .field("root", &hex(&self.root))
            .field("puts", &self.puts.len())
            .field("deletes", &self.deletes.len())
            .finish()
    }
}

impl Staged {
    /// The root of the staged version.
    pub fn root(&self) -> Hash32 {
        self.root
    }

    /// The version it will install.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Counters of the stage.
    pub fn stats(&self) -> ApplyStats {
        self.stats
    }

    /// Takes the records to write (store keys of the trie's own key space):
    /// puts, then deletes. A second call returns nothing.
    pub fn take_writes(&mut self) -> (Puts, Vec<Vec<u8>>) {
        (
            std::mem::take(&mut self.puts),
            std::mem::take(&mut self.deletes),
        )
    }
}

/// Writes and counters collected while applying a batch (one per thread).
struct Ctx {
    version: u64,
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    stale: Vec<Vec<u8>>,
    compressions: u64,
}

impl Ctx {
    fn new(version: u64) -> Self {
        Self {
            version,
            puts: Vec::new(),
            stale: Vec::new(),
            compressions: 0,
        }
    }

    fn absorb(&mut self, other: Ctx) {
        self.puts.extend(other.puts);
        self.stale.extend(other.stale);
        self.compressions += other.compressions;
    }
}

/// A sparse merkle trie persisted in a [`NodeStore`].
///
/// ```
/// use strata_storage::merkle::{verify, Batch, MemStore, Trie, TrieConfig};
/// let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
/// let mut batch = Batch::new();
/// batch.put(b"alice", b"10").put(b"bob", b"20");
/// let root = trie.apply(&batch.into_sorted()).unwrap();
/// let proof = trie.prove_key(b"alice").unwrap();
/// assert!(verify(&root, b"alice", Some(b"10"), &proof));
/// let proof = trie.prove_key(b"carol").unwrap();
/// assert!(verify(&root, b"carol", None, &proof));
/// ```
pub struct Trie<S: NodeStore> {
    store: S,
    config: TrieConfig,
    version: u64,
    root: Hash32,
    root_sub: Sub,
    poisoned: bool,
    last_stats: ApplyStats,
}

impl<S: NodeStore> Trie<S> {
    /// Opens the trie in `store` at its latest committed version (an empty
    /// store is an empty trie at version 0).
    pub fn open(store: S, config: TrieConfig) -> Result<Self, Error> {
        if config.roots_retained == 0 || config.roots_retained > ROOTS_RETAINED_MAX {
            return Err(Error::Config(
                "roots_retained must be in 1..=ROOTS_RETAINED_MAX",
            ));
        }
        if config.threads == 0 {
            return Err(Error::Config("threads must be at least 1"));
        }
        let mut trie = Self {
            store,
            config,
            version: 0,
            root: EMPTY,
            root_sub: Sub::Empty,
            poisoned: false,
            last_stats: ApplyStats::default(),
        };
        if let Some(bytes) = get(&trie.store, KEY_LATEST)? {
            let version =
                u64::from_le_bytes(bytes.as_slice().try_into().map_err(|_| Error::Corruption {
                    key_hex: hex(KEY_LATEST),
                    offset: 0,
                    reason: "latest-version record is not 8 bytes",
                })?);
            let (root, sub) = trie.read_root_record(version)?;
            if let Sub::Page {
                hash,
                version: page_version,
            } = sub
            {
                // Check the root page is there and matches before trusting it.
                let prefix = [0u8; 32];
                let items = load_page(&trie.store, 0, &prefix, page_version)?;
                let mut compressions = 0;
                if page::page_hash(&items, 0, &mut compressions) != hash {
                    return Err(Error::Corruption {
                        key_hex: hex(&page_key(0, &prefix, page_version)),
                        offset: 0,
                        reason: "root page does not hash to the committed root",
                    });
                }
            }
            trie.version = version;
            trie.root = root;
            trie.root_sub = sub;
        }
        Ok(trie)
    }

    /// The latest committed version (0 for a new trie).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The latest committed root.
    pub fn root(&self) -> Hash32 {
        self.root
    }

    /// The oldest version still provable.
    pub fn oldest_version(&self) -> u64 {
        (self.version + 1).saturating_sub(self.config.roots_retained)
    }

    /// Counters of the last successful `apply`.
    pub fn last_stats(&self) -> ApplyStats {
        self.last_stats
    }

    /// The store (e.g. to reopen the trie over it after `into_store`).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The root committed at `version`, if retained.
    pub fn root_at(&self, version: u64) -> Result<Hash32, Error> {
        Ok(self.sub_at(version)?.0)
    }

    fn sub_at(&self, version: u64) -> Result<(Hash32, Sub), Error> {
        if version > self.version || version < self.oldest_version() {
            return Err(Error::VersionNotRetained {
                version,
                oldest: self.oldest_version(),
                latest: self.version,
            });
        }
        if version == self.version {
            return Ok((self.root, self.root_sub));
        }
        if version == 0 {
            return Ok((EMPTY, Sub::Empty));
        }
        self.read_root_record(version)
    }

    fn read_root_record(&self, version: u64) -> Result<(Hash32, Sub), Error> {
        let key = version_key(NS_ROOT, version);
        let bytes = get(&self.store, &key)?.ok_or_else(|| Error::Corruption {
            key_hex: hex(&key),
            offset: 0,
            reason: "root record of a retained version is missing",
        })?;
        decode_root_record(&key, &bytes, version)
    }

    /// Applies `updates` (strictly sorted by path; see [`super::Batch`]) as
    /// version `version() + 1` and returns its root. Only pages on changed
    /// paths are read and rewritten, and everything (pages, root record,
    /// pruning of versions leaving the retained window) goes to the store
    /// in ONE `write_batch`. If that fails the trie keeps its previous root
    /// and refuses further writes ([`Error::Poisoned`]) until reopened.
    ///
    /// [`Trie::stage`] and [`Trie::install`] do the same in two steps, for
    /// a caller that writes the trie's records in a batch of its own.
    pub fn apply(&mut self, updates: &[Update]) -> Result<Hash32, Error> {
        let mut staged = self.stage(updates)?;
        let (puts, deletes) = staged.take_writes();
        if let Err(e) = self.store.write_batch(puts, deletes) {
            self.poisoned = true;
            return Err(Error::Store(Box::new(e)));
        }
        self.install(staged)
    }

    /// Computes version `version() + 1` for `updates` (strictly sorted by
    /// path) without writing anything or moving the trie: the result holds
    /// the new root and every record to put and delete (pages, root
    /// record, latest-version pointer, pruning of versions leaving the
    /// retained window). The caller writes those records to the store —
    /// typically in the same atomic batch as its own data — and then calls
    /// [`Trie::install`]; until then the trie stays at its current version
    /// and reads and proofs see it. A stage that is never installed (the
    /// caller's write failed) leaves the trie as it was.
    ///
    /// ```
    /// use strata_storage::merkle::{Batch, MemStore, NodeStore, Trie, TrieConfig};
    /// let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    /// let mut batch = Batch::new();
    /// batch.put(b"alice", b"10");
    /// let mut staged = trie.stage(&batch.into_sorted()).unwrap();
    /// let root = staged.root();
    /// assert_ne!(trie.root(), root, "nothing moves before install");
    /// let (puts, deletes) = staged.take_writes();
    /// trie.store().write_batch(puts, deletes).unwrap(); // the caller's write
    /// assert_eq!(trie.install(staged).unwrap(), root);
    /// assert_eq!(trie.root(), root);
    /// ```
    ///
    /// # Errors
    /// Unsorted or oversized input, store reads, or a poisoned trie.
    pub fn stage(&self, updates: &[Update]) -> Result<Staged, Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if updates.len() > BATCH_UPDATES_MAX {
            return Err(Error::BatchTooLarge {
                len: updates.len(),
                max: BATCH_UPDATES_MAX,
            });
        }
        if let Some(i) = updates.windows(2).position(|w| w[0].0 >= w[1].0) {
            return Err(Error::UnsortedInput {
                index: i as u64 + 1,
            });
        }
        let version = self.version + 1;
        let mut ctx = Ctx::new(version);
        // About 3 pages change per update in small batches, fewer in large
        // ones (shared top pages); sizing up front avoids regrowing vectors
        // of thousands of entries.
        let pages_estimate = updates.len().saturating_mul(3).min(1 << 22) + 64;
        ctx.puts.reserve(pages_estimate);
        ctx.stale.reserve(pages_estimate);
        let threads = self.config.threads;
        let sub = update_sub(&self.store, 0, self.root_sub, updates, &mut ctx, threads)?;
        let root = sub.hash();
        if matches!(sub, Sub::Leaf { .. }) {
            ctx.compressions += 1;
        }
        let pages_written = ctx.puts.len() as u64;
        let mut puts = std::mem::take(&mut ctx.puts);
        puts.push((
            version_key(NS_ROOT, version),
            encode_root_record(version, &root, &sub),
        ));
        puts.push((KEY_LATEST.to_vec(), version.to_le_bytes().to_vec()));

        // Pruning: keep roots version - n + 1 ..= version. Pages replaced
        // when version s = version - n + 1 was written are needed only by
        // versions below s, which leave the window now.
        let n = self.config.roots_retained;
        let mut deletes = Vec::new();
        if version > n {
            deletes.push(version_key(NS_ROOT, version - n));
        }
        if version + 1 > n {
            let s = version + 1 - n;
            if s == version {
                deletes.append(&mut ctx.stale);
            } else {
                let key = version_key(NS_STALE, s);
                if let Some(bytes) = get(&self.store, &key)? {
                    deletes.extend(decode_stale(&key, &bytes)?);
                    deletes.push(key);
                }
            }
        }
        if !ctx.stale.is_empty() {
            puts.push((version_key(NS_STALE, version), encode_stale(&ctx.stale)));
        }
        let stats = ApplyStats {
            updates: updates.len() as u64,
            pages_written,
            pages_deleted: deletes
                .iter()
                .filter(|k| k.first() == Some(&page::NS_PAGE))
                .count() as u64,
            bytes_written: puts.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum(),
            compressions: ctx.compressions,
        };
        Ok(Staged {
            version,
            root,
            sub,
            stats,
            puts,
            deletes,
        })
    }

    /// Moves the trie to the version `staged` holds, once the caller has
    /// made its records durable (see [`Trie::stage`]); returns its root.
    ///
    /// # Errors
    /// [`Error::StaleStage`] when the trie is no longer at the version the
    /// stage was computed from; [`Error::Poisoned`] on a poisoned trie.
    pub fn install(&mut self, staged: Staged) -> Result<Hash32, Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if staged.version != self.version + 1 {
            return Err(Error::StaleStage {
                staged: staged.version,
                current: self.version,
            });
        }
        self.version = staged.version;
        self.root = staged.root;
        self.root_sub = staged.sub;
        self.last_stats = staged.stats;
        Ok(self.root)
    }

    /// The value hash stored at `path` in the latest version.
    pub fn get(&self, path: &Hash32) -> Result<Option<Hash32>, Error> {
        let mut sub = self.root_sub;
        let mut level = 0;
        loop {
            match sub {
                Sub::Empty => return Ok(None),
                Sub::Leaf {
                    path: p,
                    value_hash,
                } => return Ok((p == *path).then_some(value_hash)),
                Sub::Page { version, .. } => {
                    let items = load_page(
                        &self.store,
                        level,
                        &masked(path, level * PAGE_BITS),
                        version,
                    )?;
                    let index = page::index_at(path, level);
                    let found = items
                        .iter()
                        .find(|item| page::index_at(item.path(), level) == index);
                    sub = match found {
                        None => Sub::Empty,
                        Some(Item::Leaf { path, value_hash }) => Sub::Leaf {
                            path: *path,
                            value_hash: *value_hash,
                        },
                        Some(Item::Child { hash, version, .. }) => Sub::Page {
                            hash: *hash,
                            version: *version,
                        },
                    };
                    level += 1;
                }
            }
        }
    }

    /// A proof for `path` against the latest root.
    pub fn prove(&self, path: &Hash32) -> Result<Proof, Error> {
        self.prove_inner(self.version, path)
    }

    /// A proof for user `key` (its path is `blake3(key)`) against the latest root.
    pub fn prove_key(&self, key: &[u8]) -> Result<Proof, Error> {
        self.prove(&super::hash::key_path(key))
    }

    /// A proof for `path` against the root of a retained `version`.
    pub fn prove_at(&self, version: u64, path: &Hash32) -> Result<Proof, Error> {
        self.prove_inner(version, path)
    }

    /// A range proof for `[lo, hi]` (inclusive) against the latest root; see
    /// [`Trie::prove_range_at`].
    pub fn prove_range(&self, lo: &Hash32, hi: &Hash32) -> Result<RangeProof, Error> {
        self.prove_range_at(self.version, lo, hi)
    }

    /// A range proof for `[lo, hi]` (inclusive) against the root of a
    /// retained `version`: with the leaves whose paths lie in the range
    /// (which the caller reads from its state, not from the trie) it
    /// passes [`super::verify_range`]. Reads only the pages on the two
    /// bound paths (each checked against its parent's hash); at most
    /// `RANGE_PROOF_ITEMS_MAX` items.
    ///
    /// ```
    /// use strata_storage::merkle::{verify_range, Batch, MemStore, Trie, TrieConfig};
    /// let mut trie = Trie::open(MemStore::new(), TrieConfig::new()).unwrap();
    /// let mut batch = Batch::new();
    /// for i in 0u32..100 {
    ///     batch.put(&i.to_le_bytes(), b"v");
    /// }
    /// let all = batch.into_sorted();
    /// let root = trie.apply(&all).unwrap();
    /// let (lo, hi) = ([0x40u8; 32], [0x7Fu8; 32]);
    /// let proof = trie.prove_range_at(trie.version(), &lo, &hi).unwrap();
    /// let run: Vec<_> = all
    ///     .iter()
    ///     .filter(|(p, _)| lo <= *p && *p <= hi)
    ///     .map(|(p, v)| (*p, v.unwrap()))
    ///     .collect();
    /// assert!(verify_range(&root, &lo, &hi, &run, &proof).is_ok());
    /// ```
    ///
    /// # Errors
    /// [`Error::RangeInverted`] if `lo > hi`, [`Error::VersionNotRetained`],
    /// store reads, or `Corruption` for pages that do not hash to the root.
    pub fn prove_range_at(
        &self,
        version: u64,
        lo: &Hash32,
        hi: &Hash32,
    ) -> Result<RangeProof, Error> {
        if lo > hi {
            return Err(Error::RangeInverted {
                lo_hex: hex(lo),
                hi_hex: hex(hi),
            });
        }
        let (_, sub) = self.sub_at(version)?;
        super::range_prover::prove(&self.store, sub, lo, hi)
    }

    fn prove_inner(&self, version: u64, path: &Hash32) -> Result<Proof, Error> {
        let (root, mut sub) = self.sub_at(version)?;
        let mut proof_siblings = Vec::new();
        let mut level = 0;
        let mut compressions = 0;
        let mut found = None;
        let terminal = 'walk: loop {
            match sub {
                Sub::Empty => break Terminal::Empty,
                Sub::Leaf {
                    path: p,
                    value_hash,
                } => {
                    break if p == *path {
                        found = Some(value_hash);
                        Terminal::Included
                    } else {
                        Terminal::OtherLeaf {
                            path: p,
                            value_hash,
                        }
                    }
                }
                Sub::Page { version, .. } => {
                    let prefix = masked(path, level * PAGE_BITS);
                    let items = load_page(&self.store, level, &prefix, version)?;
                    let bottom = (level + 1) * PAGE_BITS;
                    let mut range = &items[..];
                    let mut depth = level * PAGE_BITS;
                    loop {
                        match range {
                            [] => break 'walk Terminal::Empty,
                            [Item::Leaf {
                                path: p,
                                value_hash,
                            }] => {
                                break 'walk if p == path {
                                    found = Some(*value_hash);
                                    Terminal::Included
                                } else {
                                    Terminal::OtherLeaf {
                                        path: *p,
                                        value_hash: *value_hash,
                                    }
                                }
                            }
                            [Item::Child { hash, version, .. }] if depth == bottom => {
                                sub = Sub::Page {
                                    hash: *hash,
                                    version: *version,
                                };
                                level += 1;
                                break;
                            }
                            _ => {}
                        }
                        assert!(depth < bottom, "page items share a bottom position");
                        let split = range.partition_point(|item| !bit(item.path(), depth));
                        let (left, right) = range.split_at(split);
                        let (same, other) = if bit(path, depth) {
                            (right, left)
                        } else {
                            (left, right)
                        };
                        proof_siblings.push(page::subtree_hash(
                            other,
                            depth + 1,
                            bottom,
                            &mut compressions,
                        ));
                        range = same;
                        depth += 1;
                    }
                }
            }
        };
        let proof = Proof {
            terminal,
            siblings: proof_siblings,
        };
        // Stored pages are untrusted: check the proof end to end against the
        // committed root (one compression per level) rather than rehashing
        // every page read (up to 15 each). A mismatch means some page on the
        // path is corrupt.
        if !super::proof::verify_path(&root, path, found.as_ref(), &proof) {
            return Err(Error::Corruption {
                key_hex: hex(&page_key(0, &[0u8; 32], version)),
                offset: 0,
                reason: "pages on this path do not hash to the committed root",
            });
        }
        Ok(proof)
    }
}

fn get<S: NodeStore>(store: &S, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    store.get(key).map_err(|e| Error::Store(Box::new(e)))
}

pub(super) fn load_page<S: NodeStore>(
    store: &S,
    level: usize,
    prefix: &Hash32,
    version: u64,
) -> Result<Items, Error> {
    let key = page_key(level, prefix, version);
    let bytes = get(store, &key)?.ok_or_else(|| Error::Corruption {
        key_hex: hex(&key),
        offset: 0,
        reason: "page referenced by its parent is missing",
    })?;
    page::decode(&key, &bytes, level, prefix)
}

/// If `leaf` plus `updates` leave at most one leaf, that result.
fn small_result(leaf: Option<(Hash32, Hash32)>, updates: &[Update]) -> Option<Sub> {
    let mut survivor = None;
    let mut count = 0;
    let mut leaf_touched = false;
    for (path, op) in updates {
        if leaf.is_some_and(|(p, _)| p == *path) {
            leaf_touched = true;
        }
        if let Some(vh) = op {
            count += 1;
            survivor = Some((*path, *vh));
            if count > 1 {
                return None;
            }
        }
    }
    if let (Some(l), false) = (leaf, leaf_touched) {
        count += 1;
        survivor = Some(l);
        if count > 1 {
            return None;
        }
    }
    Some(match survivor {
        None => Sub::Empty,
        Some((path, value_hash)) => Sub::Leaf { path, value_hash },
    })
}

/// Applies `updates` (sorted, sharing the `level`-nibble prefix) to the
/// subtree `sub` at page `level`, returning what replaces it. New pages go
/// to `ctx.puts`, replaced ones to `ctx.stale`.
fn update_sub<S: NodeStore>(
    store: &S,
    level: usize,
    sub: Sub,
    updates: &[Update],
    ctx: &mut Ctx,
    threads: usize,
) -> Result<Sub, Error> {
    if updates.is_empty() {
        return Ok(sub);
    }
    let prefix = masked(&updates[0].0, level * PAGE_BITS);
    let (items, old_key) = match sub {
        Sub::Page { version, .. } => (
            load_page(store, level, &prefix, version)?,
            Some(page_key(level, &prefix, version)),
        ),
        Sub::Leaf { path, value_hash } => {
            if let Some(result) = small_result(Some((path, value_hash)), updates) {
                return Ok(result);
            }
            let mut items = Items::new();
            items.push(Item::Leaf { path, value_hash });
            (items, None)
        }
        Sub::Empty => {
            if let Some(result) = small_result(None, updates) {
                return Ok(result);
            }
            (Items::new(), None)
        }
    };
    // Two or more leaves share `prefix`, so they differ below it: this level
    // is a real page.
    assert!(level < PAGE_LEVELS);

    // One task per bottom position that has an item or updates.
    let mut task_buf: [(Option<Item>, &[Update]); PAGE_FANOUT] = [(None, &[]); PAGE_FANOUT];
    let mut task_count = 0;
    let mut item_iter = items.iter().peekable();
    let mut rest = updates;
    for index in 0..PAGE_FANOUT {
        let item = item_iter
            .next_if(|item| page::index_at(item.path(), level) == index)
            .copied();
        let group_len = rest.partition_point(|(p, _)| page::index_at(p, level) == index);
        let (group, tail) = rest.split_at(group_len);
        rest = tail;
        if item.is_some() || !group.is_empty() {
            task_buf[task_count] = (item, group);
            task_count += 1;
        }
    }
    debug_assert!(rest.is_empty() && item_iter.next().is_none());

    let tasks = &task_buf[..task_count];
    let new_items: Items = if level == 0 && threads > 1 && updates.len() >= PARALLEL_BATCH_MIN {
        update_tasks_parallel(store, level, tasks, ctx, threads)?
    } else {
        let mut out = Items::new();
        for (item, group) in tasks {
            if let Some(item) = update_task(store, level, *item, group, ctx)? {
                out.push(item);
            }
        }
        out
    };

    if sub_is_page(&sub) && new_items == items {
        return Ok(sub);
    }
    if let Some(key) = old_key {
        ctx.stale.push(key);
    }
    match &*new_items {
        [] => Ok(Sub::Empty),
        [Item::Leaf { path, value_hash }] => Ok(Sub::Leaf {
            path: *path,
            value_hash: *value_hash,
        }),
        _ => {
            let hash = page::page_hash(&new_items, level, &mut ctx.compressions);
            let key = page_key(level, &prefix, ctx.version);
            let bytes = page::encode(level, &new_items);
            debug_assert!(
                page::decode(&key, &bytes, level, &prefix).is_ok_and(|back| back == new_items),
                "page encode/decode round trip"
            );
            ctx.puts.push((key, bytes));
            Ok(Sub::Page {
                hash,
                version: ctx.version,
            })
        }
    }
}

fn sub_is_page(sub: &Sub) -> bool {
    matches!(sub, Sub::Page { .. })
}

/// Applies one bottom position's updates; returns its new item, if any.
fn update_task<S: NodeStore>(
    store: &S,
    level: usize,
    item: Option<Item>,
    group: &[Update],
    ctx: &mut Ctx,
) -> Result<Option<Item>, Error> {
    if group.is_empty() {
        return Ok(item);
    }
    let child = match item {
        None => Sub::Empty,
        Some(Item::Leaf { path, value_hash }) => Sub::Leaf { path, value_hash },
        Some(Item::Child { hash, version, .. }) => Sub::Page { hash, version },
    };
    Ok(match update_sub(store, level + 1, child, group, ctx, 1)? {
        Sub::Empty => None,
        Sub::Leaf { path, value_hash } => Some(Item::Leaf { path, value_hash }),
        Sub::Page { hash, version } => Some(Item::Child {
            path: masked(&group[0].0, (level + 1) * PAGE_BITS),
            hash,
            version,
        }),
    })
}

/// [`update_task`] over all tasks on up to `threads` scoped threads, split
/// into contiguous runs of about equal update counts.
fn update_tasks_parallel<S: NodeStore>(
    store: &S,
    level: usize,
    tasks: &[(Option<Item>, &[Update])],
    ctx: &mut Ctx,
    threads: usize,
) -> Result<Items, Error> {
    let total: usize = tasks.iter().map(|(_, g)| g.len()).sum();
    let mut runs: Vec<&[(Option<Item>, &[Update])]> = Vec::with_capacity(threads);
    let mut start = 0;
    let mut acc = 0;
    for (i, (_, group)) in tasks.iter().enumerate() {
        acc += group.len();
        if acc * threads >= total * (runs.len() + 1) && runs.len() + 1 < threads {
            runs.push(&tasks[start..=i]);
            start = i + 1;
        }
    }
    runs.push(&tasks[start..]);
    let version = ctx.version;
    let results: Vec<Result<(Vec<Item>, Ctx), Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|run| {
                scope.spawn(move || {
                    let mut local = Ctx::new(version);
                    let mut out = Vec::with_capacity(run.len());
                    for (item, group) in run.iter() {
                        if let Some(item) = update_task(store, level, *item, group, &mut local)? {
                            out.push(item);
                        }
                    }
                    Ok((out, local))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("apply worker panicked"))
            .collect()
    });
    let mut new_items = Items::new();
    for result in results {
        let (items, local) = result?;
        for item in items {
            new_items.push(item);
        }
        ctx.absorb(local);
    }
    Ok(new_items)
}

const ROOT_FORMAT: u8 = 1;
const ROOT_KIND_EMPTY: u8 = 0;
const ROOT_KIND_LEAF: u8 = 1;
const ROOT_KIND_PAGE: u8 = 2;

/// `format ‖ version (u64 LE) ‖ root ‖ kind ‖ [leaf path ‖ value hash |
/// page version (u64 LE)]`.
fn encode_root_record(version: u64, root: &Hash32, sub: &Sub) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 32 + 1 + 64);
    out.push(ROOT_FORMAT);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(root);
    match sub {
        Sub::Empty => out.push(ROOT_KIND_EMPTY),
        Sub::Leaf { path, value_hash } => {
            out.push(ROOT_KIND_LEAF);
            out.extend_from_slice(path);
            out.extend_from_slice(value_hash);
        }
        Sub::Page { version, .. } => {
            out.push(ROOT_KIND_PAGE);
            out.extend_from_slice(&version.to_le_bytes());
        }
    }
    out
}

fn decode_root_record(key: &[u8], bytes: &[u8], version: u64) -> Result<(Hash32, Sub), Error> {
    let corrupt = |offset, reason| Error::Corruption {
        key_hex: hex(key),
        offset,
        reason,
    };
    if bytes.len() < 42 {
        return Err(corrupt(bytes.len(), "root record truncated"));
    }
    if bytes[0] != ROOT_FORMAT {
        return Err(corrupt(0, "unknown root record format"));
    }
    if u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes")) != version {
        return Err(corrupt(1, "root record version does not match its key"));
    }
    let root: Hash32 = bytes[9..41].try_into().expect("32 bytes");
    let body = &bytes[42..];
    let sub = match (bytes[41], body.len()) {
        (ROOT_KIND_EMPTY, 0) => Sub::Empty,
        (ROOT_KIND_LEAF, 64) => Sub::Leaf {
            path: body[..32].try_into().expect("32 bytes"),
            value_hash: body[32..].try_into().expect("32 bytes"),
        },
        (ROOT_KIND_PAGE, 8) => Sub::Page {
            hash: root,
            version: u64::from_le_bytes(body.try_into().expect("8 bytes")),
        },
        _ => return Err(corrupt(41, "bad root record kind or length")),
    };
    if !matches!(sub, Sub::Page { .. }) && sub.hash() != root {
        return Err(corrupt(9, "root record hash does not match its leaf"));
    }
    Ok((root, sub))
}

/// `count (u32 LE) ‖ (key length u8 ‖ key)*`.
fn encode_stale(keys: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + keys.len() * 24);
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for key in keys {
        assert!(key.len() <= u8::MAX as usize);
        out.push(key.len() as u8);
        out.extend_from_slice(key);
    }
    out
}

fn decode_stale(key: &[u8], bytes: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let corrupt = |offset, reason| Error::Corruption {
        key_hex: hex(key),
        offset,
        reason,
    };
    let count_bytes = bytes
        .get(..4)
        .ok_or_else(|| corrupt(0, "stale list truncated"))?;
    let count = u32::from_le_bytes(count_bytes.try_into().expect("4 bytes")) as usize;
    // Each entry takes at least 2 bytes: bound the allocation by the input.
    if count > bytes.len() / 2 {
        return Err(corrupt(0, "stale list count exceeds its length"));
    }
    let mut keys = Vec::with_capacity(count);
    let mut offset = 4;
    for _ in 0..count {
        let len = *bytes
            .get(offset)
            .ok_or_else(|| corrupt(offset, "stale list truncated"))? as usize;
        let k = bytes
            .get(offset + 1..offset + 1 + len)
            .ok_or_else(|| corrupt(offset, "stale list truncated"))?;
        if k.first() != Some(&page::NS_PAGE) {
            return Err(corrupt(offset, "stale list entry is not a page key"));
        }
        keys.push(k.to_vec());
        offset += 1 + len;
    }
    if offset != bytes.len() {
        return Err(corrupt(offset, "trailing bytes after stale list"));
    }
    Ok(keys)
}
