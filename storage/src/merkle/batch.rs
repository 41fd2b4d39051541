//! Building sorted update batches for `Trie::apply`.

use super::hash::{key_path, value_hash, Hash32};

/// One update: a path and `Some(value_hash)` to put or `None` to delete.
pub type Update = (Hash32, Option<Hash32>);

/// Collects puts and deletes in any order; [`Batch::into_sorted`] yields
/// the strictly sorted, deduplicated form `Trie::apply` takes (the last
/// update of a path wins).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    updates: Vec<Update>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n` updates.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            updates: Vec::with_capacity(n),
        }
    }

    /// Sets user `key` to `value` (path and value are hashed here).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.put_hashed(key_path(key), value_hash(value))
    }

    /// Sets an already-hashed path to a value hash.
    pub fn put_hashed(&mut self, path: Hash32, value_hash: Hash32) -> &mut Self {
        self.updates.push((path, Some(value_hash)));
        self
    }

    /// Removes user `key` (a no-op if absent).
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.delete_hashed(key_path(key))
    }

    /// Removes an already-hashed path.
    pub fn delete_hashed(&mut self, path: Hash32) -> &mut Self {
        self.updates.push((path, None));
        self
    }

    /// Number of updates collected (before deduplication).
    pub fn len(&self) -> usize {
        self.updates.len()
    }

    /// Whether no update was collected.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// The updates sorted by path, one per path (the last one pushed).
    pub fn into_sorted(self) -> Vec<Update> {
        let mut updates = self.updates;
        // Stable sort keeps pushes of one path in order; keep the last.
        updates.sort_by_key(|u| u.0);
        let mut out: Vec<Update> = Vec::with_capacity(updates.len());
        for update in updates {
            match out.last_mut() {
                Some(last) if last.0 == update.0 => *last = update,
                _ => out.push(update),
            }
        }
        out
    }
}
