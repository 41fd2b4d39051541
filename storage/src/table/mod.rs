//! Sorted table files: written once by [`builder::TableBuilder`], read
//! through a memory map by [`reader::Table`]. Byte layout in
//! `docs/storage-format.md` ("LSM files").

pub(crate) mod block;
pub(crate) mod bloom;
pub(crate) mod builder;
pub(crate) mod cache;
pub(crate) mod footer;
pub(crate) mod reader;

#[cfg(test)]
mod tests {
    use std::ops::Bound;
    use std::sync::Arc;

    use super::builder::TableBuilder;
    use super::reader::Table;

    #[test]
    fn write_read_get_iter() {
        let dir = tempfile::tempdir().unwrap();
        for level in [None, Some(1)] {
            let path = dir.path().join("1.sst");
            let mut b = TableBuilder::create(&path, level).unwrap();
            for i in 0..5000u32 {
                let key = format!("k{i:06}");
                b.add(key.as_bytes(), 100 + u64::from(i), Some(&[7u8; 100]))
                    .unwrap();
                if i % 10 == 0 {
                    b.add(key.as_bytes(), 5, None).unwrap();
                }
            }
            let info = b.finish().unwrap();
            assert_eq!(info.entries, 5500);
            let t = Arc::new(Table::open(&path, 1, None, None).unwrap());
            assert_eq!(
                t.get(b"k000003", u64::MAX).unwrap(),
                Some(Some(vec![7; 100]))
            );
            assert_eq!(t.get(b"k000010", 50).unwrap(), Some(None));
            assert_eq!(t.get(b"k000011", 50).unwrap(), None);
            assert_eq!(t.get(b"nope", 50).unwrap(), None);
            let n = t.iter_from(Bound::Excluded(b"k004000")).count();
            assert_eq!(n, 999 + 99);
        }
    }

    #[test]
    fn reverse_iteration_is_forward_reversed_for_every_end_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2.sst");
        let mut b = TableBuilder::create(&path, None).unwrap();
        // Small keys, then one key whose 40 versions span several blocks,
        // then small keys again.
        for i in 0..300u32 {
            let key = format!("k{:04}", i * 2);
            let versions = if i == 150 { 40 } else { 1 + i % 3 };
            for v in (0..versions).rev() {
                let value = (v % 2 == 0).then(|| vec![i as u8; 300]);
                b.add(key.as_bytes(), 10 + u64::from(v), value.as_deref())
                    .unwrap();
            }
        }
        b.finish().unwrap();
        let t = Arc::new(Table::open(&path, 2, None, None).unwrap());
        let all: Vec<_> = t.iter_from(Bound::Unbounded).map(|e| e.unwrap()).collect();
        let mut ends: Vec<Bound<Vec<u8>>> = vec![Bound::Unbounded];
        for k in [
            "", "k0000", "k0001", "k0300", "k0301", "k0598", "k0599", "z",
        ] {
            ends.push(Bound::Included(k.as_bytes().to_vec()));
            ends.push(Bound::Excluded(k.as_bytes().to_vec()));
        }
        for end in ends {
            let mut want: Vec<_> = all
                .iter()
                .filter(|e| match &end {
                    Bound::Included(k) => e.key <= *k,
                    Bound::Excluded(k) => e.key < *k,
                    Bound::Unbounded => true,
                })
                .cloned()
                .collect();
            want.reverse();
            let got: Vec<_> = t
                .iter_rev_from(end.as_ref().map(Vec::as_slice))
                .map(|e| e.unwrap())
                .collect();
            assert_eq!(got, want, "{end:?}");
        }
    }
}
