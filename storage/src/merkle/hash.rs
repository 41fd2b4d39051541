//! Domain-separated blake3 hashing for the sparse merkle trie.
//!
//! Every trie hash is exactly ONE blake3 compression: leaves and internal
//! nodes both hash a 64-byte input (`path ‖ value_hash` or `left ‖ right`),
//! and a 64-byte input is a single blake3 block (flags `CHUNK_START |
//! CHUNK_END | ROOT`). The domain tag is not prepended to the input, which
//! would make it 65 bytes and cost a second compression; it is folded into
//! the blake3 *key* instead (`blake3::keyed_hash`), one key per domain:
//!
//! - leaf  = `keyed_hash(KEY_LEAF, path ‖ value_hash)`
//! - node  = `keyed_hash(KEY_NODE, left ‖ right)`
//! - empty = 32 zero bytes (a constant, never hashed)
//! - value_hash = `blake3::hash(value)` (plain, any length)
//!
//! `KEY_LEAF = blake3("strata merkle v1 leaf")` and `KEY_NODE =
//! blake3("strata merkle v1 node")` (ASCII, no terminator). They are written
//! out below as constants and checked against their definition in a test.

/// A 32-byte trie hash (leaf, node, empty constant or value hash).
pub type Hash32 = [u8; 32];

/// The hash of an empty subtree.
pub const EMPTY: Hash32 = [0u8; 32];

/// `blake3("strata merkle v1 leaf")`: the blake3 key that tags leaf hashes.
pub const KEY_LEAF: [u8; 32] = [
    75, 212, 81, 237, 183, 149, 59, 33, 7, 66, 28, 19, 122, 218, 114, 133, 180, 163, 188, 26, 10,
    114, 1, 111, 149, 207, 177, 181, 224, 45, 15, 134,
];

/// `blake3("strata merkle v1 node")`: the blake3 key that tags internal nodes.
pub const KEY_NODE: [u8; 32] = [
    113, 233, 86, 148, 37, 74, 30, 33, 227, 80, 129, 90, 49, 217, 109, 201, 31, 229, 138, 66, 103,
    65, 194, 227, 143, 83, 236, 61, 75, 197, 248, 141,
];

/// The 256-bit trie path of a user key: `blake3(key)`.
#[inline]
pub fn key_path(key: &[u8]) -> Hash32 {
    *blake3::hash(key).as_bytes()
}

/// The value hash stored in a leaf: `blake3(value)`.
#[inline]
pub fn value_hash(value: &[u8]) -> Hash32 {
    *blake3::hash(value).as_bytes()
}

/// `keyed_hash(key, a ‖ b)`: one blake3 compression.
#[inline(always)]
fn hash_pair(key: &[u8; 32], a: &Hash32, b: &Hash32) -> Hash32 {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(a);
    block[32..].copy_from_slice(b);
    *blake3::keyed_hash(key, &block).as_bytes()
}

/// The hash of a leaf holding `value_hash` at `path`. Independent of the
/// depth the leaf sits at, which is why a leaf can move up or down when its
/// neighbours change without being rehashed.
#[inline]
pub fn leaf_hash(path: &Hash32, value_hash: &Hash32) -> Hash32 {
    hash_pair(&KEY_LEAF, path, value_hash)
}

/// The hash of an internal node with children `left` (bit 0) and `right`
/// (bit 1). Either child may be [`EMPTY`] but not both, and an internal node
/// never has one leaf and one empty child (that leaf would sit higher).
#[inline]
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    hash_pair(&KEY_NODE, left, right)
}

/// Bit `index` of `path`, most significant bit of byte 0 first (bit 0 decides
/// the root's left/right child).
#[inline(always)]
pub fn bit(path: &Hash32, index: usize) -> bool {
    debug_assert!(index < 256);
    (path[index >> 3] >> (7 - (index & 7))) & 1 == 1
}

/// The number of leading bits `a` and `b` share (256 if equal).
#[inline(always)]
pub fn common_prefix_bits(a: &Hash32, b: &Hash32) -> usize {
    for word in 0..4 {
        let x = u64::from_be_bytes(a[word * 8..word * 8 + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[word * 8..word * 8 + 8].try_into().expect("8 bytes"));
        let diff = x ^ y;
        if diff != 0 {
            return word * 64 + diff.leading_zeros() as usize;
        }
    }
    256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_keys_match_their_definition() {
        assert_eq!(KEY_LEAF, *blake3::hash(b"strata merkle v1 leaf").as_bytes());
        assert_eq!(KEY_NODE, *blake3::hash(b"strata merkle v1 node").as_bytes());
    }

    #[test]
    fn bits_and_prefixes() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        assert_eq!(common_prefix_bits(&a, &b), 256);
        b[9] = 0b0010_0000;
        assert_eq!(common_prefix_bits(&a, &b), 74);
        assert!(bit(&b, 74) && !bit(&b, 73) && !bit(&b, 75));
        a[0] = 0x80;
        assert_eq!(common_prefix_bits(&a, &b), 0);
        assert!(bit(&a, 0));
    }

    #[test]
    fn leaf_and_node_domains_differ() {
        let x = [7u8; 32];
        assert_ne!(leaf_hash(&x, &x), node_hash(&x, &x));
    }
}
