//! The sans-IO file engine: manifests, pieces, the scheduler and the data-channel wire format.
//!
//! Like [`crate::swarm`], it does no I/O and reads no clock: the browser layer feeds it frames,
//! storage results and `now`, and carries out its outputs (frames to send, pieces to store,
//! blocks to read). Pieces are verified (SHA-256) before they are stored or served.

mod engine;
mod manifest;
// Native only: the simulation uses proptest, a native dev-dependency.
pub mod stored;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
pub mod wire;
pub mod zip;

pub use engine::{Config, Engine, FileInfo, Input, Output, TransferEvent};
pub use manifest::{piece_size_for, Bitfield, Manifest, ManifestBuilder, ManifestError};
pub use wire::{BlockRef, Frame, RejectReason, WireError};

/// A file's id: the SHA-256 of its manifest's canonical encoding.
pub type FileId = [u8; 32];

/// The largest message Chromium's data channels accept (256 KiB); blocks are never larger.
pub const MAX_BLOCK: usize = 256 * 1024;

/// A file id as lowercase hex (for links and storage names).
pub fn id_hex(id: &FileId) -> String {
    // (Not `format!` a byte: 32 of those were most of what listing thousands of files cost.)
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in id {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Parses 64 hex digits into a file id.
pub fn id_from_hex(s: &str) -> Option<FileId> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}
