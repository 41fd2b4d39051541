//! The one bounds-checked cursor every decoder of untrusted bytes in this
//! crate reads with (transactions, node payloads, state-sync messages):
//! each read checks the length left before it slices, so a short input is
//! a [`DecodeError::Truncated`] naming the field, never a panic. Decoders
//! add their own compound reads in `impl Reader` blocks next to them.

use crate::error::DecodeError;

/// A cursor over `bytes`; `at` is the next byte to read.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// The next `len` bytes.
    pub(crate) fn take(
        &mut self,
        field: &'static str,
        len: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(DecodeError::Truncated {
                field,
                offset: self.at,
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Every byte was read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.at != self.bytes.len() {
            return Err(DecodeError::TrailingBytes {
                extra: self.bytes.len() - self.at,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_the_bytes_and_names_the_short_field() {
        let mut r = Reader::new(&[1, 2, 0, 3, 0, 0, 0]);
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16("b").unwrap(), 2);
        assert!(r.finish().is_err());
        assert_eq!(
            r.u64("c").err(),
            Some(DecodeError::Truncated {
                field: "c",
                offset: 3
            })
        );
        assert_eq!(r.u32("d").unwrap(), 3);
        assert!(r.finish().is_ok());
        assert!(r.take("e", usize::MAX).is_err(), "no overflow");
    }
}
