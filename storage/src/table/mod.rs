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
}
