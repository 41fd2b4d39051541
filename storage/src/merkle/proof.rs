//! Inclusion and exclusion proofs, their byte format and the stand-alone
//! verifier.
//!
//! A proof walks from the root down the key's path to the *terminal*: the
//! subtree occupying the path, which is the key's own leaf (inclusion), an
//! empty subtree, or another key's leaf (both exclusion). It carries the
//! sibling hash at every level above the terminal; empty siblings are not
//! sent, a bitmap says which are present. Byte layout in
//! `docs/storage-format.md`.

use super::hash::{bit, common_prefix_bits, key_path, leaf_hash, node_hash, value_hash};
use super::hash::{Hash32, EMPTY};
use super::limits::{PROOF_BYTES_MAX, PROOF_SIBLINGS_MAX};
use super::ProofError;

/// Format byte of encoded proofs.
const PROOF_FORMAT: u8 = 1;
const KIND_INCLUDED: u8 = 0;
const KIND_EMPTY: u8 = 1;
const KIND_OTHER_LEAF: u8 = 2;

/// What occupies the key's path at the bottom of a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// The key's own leaf: the proof shows inclusion.
    Included,
    /// An empty subtree: the key is absent.
    Empty,
    /// Another key's leaf, alone in the subtree holding the key's path: the
    /// key is absent.
    OtherLeaf {
        /// That leaf's path.
        path: Hash32,
        /// That leaf's value hash.
        value_hash: Hash32,
    },
}

/// A merkle proof for one path; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// What sits at the bottom of the path.
    pub terminal: Terminal,
    /// `siblings[i]` is the hash of the sibling subtree at depth `i + 1`
    /// (the other side of the split on path bit `i`), [`EMPTY`] if empty.
    /// Its length is the terminal's depth (at most 256).
    pub siblings: Vec<Hash32>,
}

impl Proof {
    /// Whether this proof claims the key is present.
    pub fn is_inclusion(&self) -> bool {
        self.terminal == Terminal::Included
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        let present = self.siblings.iter().filter(|s| **s != EMPTY).count();
        let other = if matches!(self.terminal, Terminal::OtherLeaf { .. }) {
            64
        } else {
            0
        };
        4 + self.siblings.len().div_ceil(8) + other + present * 32
    }

    /// Encodes the proof: `format ‖ kind ‖ depth (u16 LE) ‖ bitmap ‖ [other
    /// leaf path ‖ value hash] ‖ present siblings, top first`.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.siblings.len() <= PROOF_SIBLINGS_MAX);
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(PROOF_FORMAT);
        out.push(match self.terminal {
            Terminal::Included => KIND_INCLUDED,
            Terminal::Empty => KIND_EMPTY,
            Terminal::OtherLeaf { .. } => KIND_OTHER_LEAF,
        });
        out.extend_from_slice(&(self.siblings.len() as u16).to_le_bytes());
        let mut bitmap = vec![0u8; self.siblings.len().div_ceil(8)];
        for (i, sibling) in self.siblings.iter().enumerate() {
            if *sibling != EMPTY {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        out.extend_from_slice(&bitmap);
        if let Terminal::OtherLeaf { path, value_hash } = &self.terminal {
            out.extend_from_slice(path);
            out.extend_from_slice(value_hash);
        }
        for sibling in self.siblings.iter().filter(|s| **s != EMPTY) {
            out.extend_from_slice(sibling);
        }
        assert_eq!(out.len(), self.encoded_len());
        out
    }

    /// Decodes untrusted proof bytes. The length is checked against
    /// [`PROOF_BYTES_MAX`] before anything else, every later length before it
    /// is used, and only the canonical encoding is accepted (no padding bits,
    /// no present-but-empty sibling, no trailing bytes). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Proof, ProofError> {
        let len = bytes.len();
        if len > PROOF_BYTES_MAX {
            return Err(ProofError::Oversized {
                len,
                max: PROOF_BYTES_MAX,
            });
        }
        if len < 4 {
            return Err(ProofError::Truncated { needed: 4, len });
        }
        if bytes[0] != PROOF_FORMAT {
            return Err(ProofError::UnknownFormat(bytes[0]));
        }
        let kind = bytes[1];
        if kind > KIND_OTHER_LEAF {
            return Err(ProofError::UnknownTerminal(kind));
        }
        let depth_u16 = u16::from_le_bytes([bytes[2], bytes[3]]);
        let depth = depth_u16 as usize;
        if depth > PROOF_SIBLINGS_MAX {
            return Err(ProofError::DepthTooLarge { depth: depth_u16 });
        }
        let bitmap_end = 4 + depth.div_ceil(8);
        let bitmap = bytes.get(4..bitmap_end).ok_or(ProofError::Truncated {
            needed: bitmap_end,
            len,
        })?;
        if depth % 8 != 0 && bitmap[depth / 8] >> (depth % 8) != 0 {
            return Err(ProofError::NonZeroPadding);
        }
        let present: usize = bitmap.iter().map(|b| b.count_ones() as usize).sum();
        let other_bytes = if kind == KIND_OTHER_LEAF { 64 } else { 0 };
        let expected = bitmap_end + other_bytes + present * 32;
        if len < expected {
            return Err(ProofError::Truncated {
                needed: expected,
                len,
            });
        }
        if len > expected {
            return Err(ProofError::TrailingBytes { len, expected });
        }
        let mut cursor = bitmap_end;
        let mut take32 = || {
            let out: Hash32 = bytes[cursor..cursor + 32]
                .try_into()
                .expect("length checked against `expected` above");
            cursor += 32;
            out
        };
        let terminal = match kind {
            KIND_INCLUDED => Terminal::Included,
            KIND_EMPTY => Terminal::Empty,
            _ => Terminal::OtherLeaf {
                path: take32(),
                value_hash: take32(),
            },
        };
        let mut siblings = Vec::with_capacity(depth);
        for i in 0..depth {
            if bitmap[i / 8] >> (i % 8) & 1 == 1 {
                let sibling = take32();
                if sibling == EMPTY {
                    return Err(ProofError::EmptySiblingPresent { index: i });
                }
                siblings.push(sibling);
            } else {
                siblings.push(EMPTY);
            }
        }
        Ok(Proof { terminal, siblings })
    }
}

/// Verifies `proof` for a user `key`: that `key` maps to `value` (`Some`) or
/// is absent (`None`) in the trie with `root`. Needs nothing but its
/// arguments.
pub fn verify(root: &Hash32, key: &[u8], value: Option<&[u8]>, proof: &Proof) -> bool {
    let value_hash = value.map(value_hash);
    verify_path(root, &key_path(key), value_hash.as_ref(), proof)
}

/// [`verify`] for an already-hashed path and value hash.
pub fn verify_path(
    root: &Hash32,
    path: &Hash32,
    value_hash: Option<&Hash32>,
    proof: &Proof,
) -> bool {
    let depth = proof.siblings.len();
    if depth > PROOF_SIBLINGS_MAX {
        return false;
    }
    let mut hash = match (&proof.terminal, value_hash) {
        (Terminal::Included, Some(vh)) => leaf_hash(path, vh),
        (Terminal::Empty, None) => EMPTY,
        (
            Terminal::OtherLeaf {
                path: other,
                value_hash: other_vh,
            },
            None,
        ) => {
            // The other leaf must be alone in a subtree that contains `path`.
            if other == path || common_prefix_bits(other, path) < depth {
                return false;
            }
            leaf_hash(other, other_vh)
        }
        _ => return false,
    };
    // In a well-formed trie the terminal's sibling is never empty: a leaf
    // with an empty sibling would sit one level higher, and an empty
    // subtree's parent holds two or more leaves, all in the sibling.
    if depth > 0 && proof.siblings[depth - 1] == EMPTY {
        return false;
    }
    for i in (0..depth).rev() {
        let sibling = &proof.siblings[i];
        hash = if bit(path, i) {
            node_hash(sibling, &hash)
        } else {
            node_hash(&hash, sibling)
        };
    }
    hash == *root
}
