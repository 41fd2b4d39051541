//! Error types of the consensus crate.

use thiserror::Error;

/// Why bytes did not decode (or a body could not be encoded) as a
/// transaction or block. Input from peers and clients is untrusted: every
/// variant names what was wrong, and decoding never panics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside `field`.
    #[error("truncated input: {field} at offset {offset}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset where it starts.
        offset: usize,
    },
    /// `field` is longer than its limit.
    #[error("{field} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes remain after a complete encoding.
    #[error("{extra} trailing bytes after a complete encoding")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// Unknown encoding version.
    #[error("unknown encoding version {0}")]
    UnknownVersion(u8),
    /// Unknown enum tag.
    #[error("unknown {field} tag {tag}")]
    UnknownTag {
        /// The field.
        field: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A list that must be strictly ascending is not.
    #[error("{field} is not strictly ascending")]
    NotSorted {
        /// The field.
        field: &'static str,
    },
    /// A commitment inside the encoding does not match what it commits to.
    #[error("{field} does not match the encoded content")]
    Mismatch {
        /// The field.
        field: &'static str,
    },
    /// A number is over its limit.
    #[error("{field} is {value}, over the limit of {max}")]
    OverLimit {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// `field` is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// The signing key is not the transaction's sender.
    #[error("the signing key does not match the sender")]
    SenderMismatch,
}
