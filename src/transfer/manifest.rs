//! Manifests (what a file is: name, size, type, piece size, SHA-256 of every piece) and piece
//! bitfields. A file's id is the SHA-256 of its manifest's canonical encoding.

use super::FileId;
use sha2::{Digest, Sha256};

/// Why a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Ended early.
    #[error("manifest truncated")]
    Truncated,
    /// A field out of range.
    #[error("invalid manifest: {0}")]
    Invalid(&'static str),
    /// Its hash is not the file id it was fetched for.
    #[error("manifest does not match the file id")]
    WrongId,
}

/// Smallest piece: pieces are verified and stored whole, one OPFS file each (1 MiB measured
/// faster than 256 KiB: fewer files to open and commit).
pub const MIN_PIECE: u32 = 1024 * 1024;
/// Largest piece.
pub const MAX_PIECE: u32 = 16 * 1024 * 1024;
/// Pieces are made large enough that a file has at most this many.
pub const TARGET_PIECES: u64 = 8192;

/// The piece size for a file of `size` bytes: a power of two from 1 MiB up to 16 MiB, so that a
/// manifest has at most 8192 hashes (256 KiB).
pub fn piece_size_for(size: u64) -> u32 {
    let mut p = MIN_PIECE;
    while p < MAX_PIECE && size.div_ceil(u64::from(p)) > TARGET_PIECES {
        p *= 2;
    }
    p
}

/// What a shared file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// File name as the sharer gave it (shown as text, never as HTML).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type.
    pub mime: String,
    /// Bytes per piece (the last may be shorter).
    pub piece_size: u32,
    /// SHA-256 of each piece.
    pub hashes: Vec<[u8; 32]>,
}

const MANIFEST_VERSION: u8 = 1;

impl Manifest {
    /// Number of pieces.
    pub fn pieces(&self) -> u32 {
        self.hashes.len() as u32
    }

    /// Length of piece `i`.
    pub fn piece_len(&self, i: u32) -> u32 {
        let start = u64::from(i) * u64::from(self.piece_size);
        (self.size.saturating_sub(start)).min(u64::from(self.piece_size)) as u32
    }

    /// The canonical encoding: version, name, mime, size, piece size, hashes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 * self.hashes.len() + 64 + self.name.len());
        b.push(MANIFEST_VERSION);
        for s in [&self.name, &self.mime] {
            let s = super::wire::fit_name(s).as_bytes();
            b.extend_from_slice(&(s.len() as u16).to_be_bytes());
            b.extend_from_slice(s);
        }
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.piece_size.to_be_bytes());
        b.extend_from_slice(&(self.hashes.len() as u32).to_be_bytes());
        for h in &self.hashes {
            b.extend_from_slice(h);
        }
        b
    }

    /// The file id: SHA-256 of the canonical encoding.
    pub fn id(&self) -> FileId {
        Sha256::digest(self.encode()).into()
    }

    /// Reads a canonical encoding fetched for `id`, checking everything, the hash included.
    pub fn decode(bytes: &[u8], id: &FileId) -> Result<Manifest, ManifestError> {
        let got: FileId = Sha256::digest(bytes).into();
        if &got != id {
            return Err(ManifestError::WrongId);
        }
        let mut r = bytes;
        let mut take = |n: usize| -> Result<&[u8], ManifestError> {
            if r.len() < n {
                return Err(ManifestError::Truncated);
            }
            let (a, b) = r.split_at(n);
            r = b;
            Ok(a)
        };
        if take(1)?[0] != MANIFEST_VERSION {
            return Err(ManifestError::Invalid("version"));
        }
        let mut strings = Vec::new();
        for what in ["name", "mime type"] {
            let n = take(2)?;
            let n = u16::from_be_bytes([n[0], n[1]]) as usize;
            let s =
                String::from_utf8(take(n)?.to_vec()).map_err(|_| ManifestError::Invalid(what))?;
            strings.push(s);
        }
        let size = u64::from_be_bytes(take(8)?.try_into().map_err(|_| ManifestError::Truncated)?);
        let piece_size =
            u32::from_be_bytes(take(4)?.try_into().map_err(|_| ManifestError::Truncated)?);
        let n = u32::from_be_bytes(take(4)?.try_into().map_err(|_| ManifestError::Truncated)?);
        if !(MIN_PIECE..=MAX_PIECE).contains(&piece_size) {
            return Err(ManifestError::Invalid("piece size"));
        }
        if u64::from(n) != size.div_ceil(u64::from(piece_size)) {
            return Err(ManifestError::Invalid("piece count"));
        }
        let mut hashes = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let mut h = [0u8; 32];
            h.copy_from_slice(take(32)?);
            hashes.push(h);
        }
        if !r.is_empty() {
            return Err(ManifestError::Invalid("trailing bytes"));
        }
        let mime = strings.pop().unwrap_or_default();
        let name = strings.pop().unwrap_or_default();
        Ok(Manifest {
            name,
            size,
            mime,
            piece_size,
            hashes,
        })
    }

    /// Whether `data` is piece `i`, by length and hash.
    pub fn verify(&self, i: u32, data: &[u8]) -> bool {
        self.matches(i, data.len(), &Sha256::digest(data).into())
    }

    /// Whether a piece `i` of `len` bytes with SHA-256 `digest` is the right one.
    pub fn matches(&self, i: u32, len: usize, digest: &[u8; 32]) -> bool {
        self.hashes
            .get(i as usize)
            .is_some_and(|h| len == self.piece_len(i) as usize && h == digest)
    }
}

/// Builds a manifest from a file read in order, chunk by chunk: only the current piece's hash
/// state is held, never the file.
#[derive(Debug)]
pub struct ManifestBuilder {
    name: String,
    size: u64,
    mime: String,
    piece_size: u32,
    hashes: Vec<[u8; 32]>,
    current: Sha256,
    in_piece: u32,
    seen: u64,
}

impl ManifestBuilder {
    /// Starts a manifest for a file of `size` bytes. A name or type longer than the wire
    /// carries ([`super::wire::MAX_NAME`] bytes) is cut, at a character boundary.
    pub fn new(name: &str, size: u64, mime: &str) -> Self {
        ManifestBuilder {
            name: super::wire::fit_name(name).to_string(),
            size,
            mime: super::wire::fit_name(mime).to_string(),
            piece_size: piece_size_for(size),
            hashes: Vec::new(),
            current: Sha256::new(),
            in_piece: 0,
            seen: 0,
        }
    }

    /// The piece size chosen for the file.
    pub fn piece_size(&self) -> u32 {
        self.piece_size
    }

    /// Adds the next whole piece, `len` bytes hashed elsewhere (e.g. with WebCrypto); only
    /// between pieces, and only the last piece may be shorter.
    pub fn push_piece(&mut self, len: u32, digest: [u8; 32]) -> Result<(), ManifestError> {
        let last = self.seen + u64::from(len) == self.size;
        if self.in_piece != 0
            || len == 0
            || len > self.piece_size
            || (len < self.piece_size && !last)
        {
            return Err(ManifestError::Invalid("a piece of the wrong length"));
        }
        self.hashes.push(digest);
        self.seen += u64::from(len);
        Ok(())
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.piece_size - self.in_piece) as usize;
            let n = room.min(data.len());
            self.current.update(&data[..n]);
            self.in_piece += n as u32;
            self.seen += n as u64;
            data = &data[n..];
            if self.in_piece == self.piece_size {
                let h = std::mem::take(&mut self.current).finalize();
                self.hashes.push(h.into());
                self.in_piece = 0;
            }
        }
    }

    /// The manifest; an error if the bytes fed are not `size`.
    pub fn finish(mut self) -> Result<Manifest, ManifestError> {
        if self.seen != self.size {
            return Err(ManifestError::Invalid("file size changed while reading"));
        }
        if self.in_piece > 0 {
            self.hashes.push(self.current.finalize().into());
        }
        Ok(Manifest {
            name: self.name,
            size: self.size,
            mime: self.mime,
            piece_size: self.piece_size,
            hashes: self.hashes,
        })
    }
}

/// Which pieces a peer has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
    count: u32,
}

impl Bitfield {
    /// `len` pieces, none had.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bits: vec![0; (len as usize).div_ceil(8)],
            len,
            count: 0,
        }
    }

    /// `len` pieces, all had.
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// From wire bytes for `len` pieces; `None` if the length is wrong or spare bits are set.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Self> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let spare = (8 - len % 8) % 8;
        if spare > 0 && bytes.last().is_some_and(|b| b & ((1u8 << spare) - 1) != 0) {
            return None;
        }
        let count = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield {
            bits: bytes.to_vec(),
            len,
            count,
        })
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Whether piece `i` is had.
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Marks piece `i` had; false if it already was or is out of range.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bits[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.count += 1;
        true
    }

    /// Pieces had.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Pieces in all.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether there are no pieces at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every piece is had.
    pub fn complete(&self) -> bool {
        self.count == self.len
    }
}
