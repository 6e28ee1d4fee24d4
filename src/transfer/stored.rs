//! How a downloaded file lies in its one stored file (`data` in the web store), so that a
//! download costs the browser's storage one file, not three (Firefox takes several
//! milliseconds to open each; for a small file those opens were most of its download):
//!
//! ```text
//! [ the file's bytes: size ][ marks: one byte per piece ][ manifest encoding ][ trailer: 24 ]
//! ```
//!
//! A piece's mark (byte `size + i`) is set to 1 after piece `i` is written whole and verified,
//! so a reload finds exactly the pieces whose marks it reads. The manifest and the trailer are
//! written once, before the first piece, with the file made its full length (the check that
//! the browser lets the site store all of it); the trailer (`manifest length: u32`,
//! `size: u64`, `pieces: u32`, all little-endian, then [`MAGIC`]) lets a reader find the rest
//! from the file's end alone. A file handed over is the first `size` bytes.

use super::Manifest;
use std::ops::Range;

/// The trailer's last bytes: a stored file that ends otherwise has no trailer.
pub const MAGIC: [u8; 8] = *b"sdstore2";

/// The trailer's length.
pub const TRAILER_LEN: u64 = 24;

/// What follows the marks of `m`'s stored file: the manifest's encoding and the trailer.
pub fn tail(m: &Manifest) -> Vec<u8> {
    let manifest = m.encode();
    let mut b = Vec::with_capacity(manifest.len() + TRAILER_LEN as usize);
    b.extend_from_slice(&manifest);
    b.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    b.extend_from_slice(&m.size.to_le_bytes());
    b.extend_from_slice(&m.pieces().to_le_bytes());
    b.extend_from_slice(&MAGIC);
    b
}

/// The full length of `m`'s stored file.
pub fn stored_len(m: &Manifest) -> u64 {
    m.size + u64::from(m.pieces()) + m.encode().len() as u64 + TRAILER_LEN
}

/// Where the parts of a stored file lie, read from its trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The file's size (where its marks start).
    pub size: u64,
    /// Its number of pieces (of marks).
    pub pieces: u32,
    /// The length of its manifest's encoding.
    pub manifest_len: u32,
}

impl Layout {
    /// The layout of a stored file `len` bytes long whose last [`TRAILER_LEN`] bytes are
    /// `trailer`; `None` unless they are a trailer that accounts for exactly `len` bytes.
    pub fn parse(trailer: &[u8], len: u64) -> Option<Layout> {
        let t: &[u8; TRAILER_LEN as usize] = trailer.try_into().ok()?;
        if t[16..] != MAGIC {
            return None;
        }
        let manifest_len = u32::from_le_bytes(t[0..4].try_into().ok()?);
        let size = u64::from_le_bytes(t[4..12].try_into().ok()?);
        let pieces = u32::from_le_bytes(t[12..16].try_into().ok()?);
        let whole = size
            .checked_add(u64::from(pieces))?
            .checked_add(u64::from(manifest_len))?
            .checked_add(TRAILER_LEN)?;
        (whole == len).then_some(Layout {
            size,
            pieces,
            manifest_len,
        })
    }

    /// Where the marks lie.
    pub fn marks(&self) -> Range<u64> {
        self.size..self.size + u64::from(self.pieces)
    }

    /// Where the manifest's encoding lies.
    pub fn manifest(&self) -> Range<u64> {
        let start = self.marks().end;
        start..start + u64::from(self.manifest_len)
    }

    /// Where marks, manifest and trailer lie: everything after the file's bytes.
    pub fn after_bytes(&self) -> Range<u64> {
        self.size..self.manifest().end + TRAILER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::ManifestBuilder;

    fn manifest(size: u64) -> Manifest {
        let mut b = ManifestBuilder::new("a.bin", size, "application/octet-stream");
        let mut left = size;
        let step = vec![7u8; 1 << 16];
        while left > 0 {
            let n = left.min(step.len() as u64) as usize;
            b.update(&step[..n]);
            left -= n as u64;
        }
        b.finish().unwrap()
    }

    /// A stored file of `m` with `content` and `marks`, as the store writes it.
    fn stored(m: &Manifest, marks: &[u8]) -> Vec<u8> {
        let mut f = vec![7u8; m.size as usize];
        f.extend_from_slice(marks);
        f.extend_from_slice(&tail(m));
        f
    }

    #[test]
    fn a_stored_file_is_found_again_from_its_end() {
        for size in [1, 1000, 3 * 1024 * 1024 + 5] {
            let m = manifest(size);
            let mut marks = vec![0u8; m.pieces() as usize];
            marks[0] = 1;
            let f = stored(&m, &marks);
            assert_eq!(f.len() as u64, stored_len(&m));
            let len = f.len() as u64;
            let l = Layout::parse(&f[f.len() - TRAILER_LEN as usize..], len).unwrap();
            assert_eq!((l.size, l.pieces), (m.size, m.pieces()));
            let at = |r: Range<u64>| &f[r.start as usize..r.end as usize];
            assert_eq!(at(l.marks()), &marks[..]);
            let back = Manifest::decode(at(l.manifest()), &m.id()).unwrap();
            assert_eq!(back, m);
            assert_eq!(l.after_bytes(), m.size..len);
        }
    }

    #[test]
    fn anything_else_at_a_file_end_is_no_trailer() {
        let m = manifest(5000);
        let f = stored(&m, &[1]);
        let len = f.len() as u64;
        let trailer = &f[f.len() - TRAILER_LEN as usize..];
        // A file of other length (cut, or grown), a short read, a wrong magic.
        assert_eq!(Layout::parse(trailer, len - 1), None);
        assert_eq!(Layout::parse(trailer, len + 1), None);
        assert_eq!(Layout::parse(&trailer[1..], len), None);
        let mut bad = trailer.to_vec();
        bad[23] ^= 1;
        assert_eq!(Layout::parse(&bad, len), None);
        // Lengths that overflow are refused, not wrapped.
        let mut huge = trailer.to_vec();
        huge[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Layout::parse(&huge, len), None);
        assert_eq!(Layout::parse(&huge, u64::MAX), None);
        // The bytes of a file that merely ends like a trailer are not a manifest of its id.
        let mut other = f.clone();
        let l = Layout::parse(trailer, len).unwrap();
        other[l.manifest().start as usize + 3] ^= 1;
        assert!(Manifest::decode(
            &other[l.manifest().start as usize..l.manifest().end as usize],
            &m.id()
        )
        .is_err());
    }
}
