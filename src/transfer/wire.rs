//! The file-sharing wire format on the data channels (version 1).
//!
//! A frame is `[version u8][type u8][fields…]`, integers big-endian, strings and byte runs
//! length-prefixed (u16 for names, u32 for data). The decoder checks every length against what
//! is left and rejects anything malformed with an error, never a panic. A data-channel message
//! carries one frame, or several small ones packed by [`pack`] (each `[u32 length][frame]`).

use super::FileId;

/// The wire version this engine speaks.
pub const WIRE_VERSION: u8 = 1;

/// Longest file name and MIME type carried, in bytes.
pub const MAX_NAME: usize = 1024;

/// `s` cut to at most [`MAX_NAME`] bytes, at a character boundary (a name cut inside a
/// character would not decode).
pub fn fit_name(s: &str) -> &str {
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame ended in the middle of a field.
    #[error("frame truncated reading {0}")]
    Truncated(&'static str),
    /// A version this engine does not speak.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// An unknown frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// Bytes left over after the last field.
    #[error("{0} bytes of trailing garbage")]
    Trailing(usize),
    /// A field out of its allowed range.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// We do not have that piece (or file).
    NotHere,
    /// We hold as many of the asker's requests as we take at once; ask someone else.
    Busy,
    /// The request was malformed (range outside the piece).
    Invalid,
}

impl RejectReason {
    fn code(self) -> u8 {
        match self {
            RejectReason::NotHere => 0,
            RejectReason::Busy => 1,
            RejectReason::Invalid => 2,
        }
    }

    fn from_code(c: u8) -> Result<Self, WireError> {
        Ok(match c {
            0 => RejectReason::NotHere,
            1 => RejectReason::Busy,
            2 => RejectReason::Invalid,
            _ => return Err(WireError::Invalid("reject reason")),
        })
    }
}

/// A part of a file: `len` bytes at `offset` of piece `piece`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// The piece index.
    pub piece: u32,
    /// Offset within the piece.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

/// One frame of the file-sharing protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// "I have (some of) this file": shown to users as an available file.
    Announce {
        /// The file.
        id: FileId,
        /// Its name.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// Its MIME type.
        mime: String,
    },
    /// "I no longer share this file."
    Unannounce {
        /// The file.
        id: FileId,
    },
    /// "Tell me which pieces you have, and every new one."
    Subscribe {
        /// The file.
        id: FileId,
    },
    /// Send me the manifest.
    ManifestRequest {
        /// The file.
        id: FileId,
    },
    /// Part of the canonical manifest encoding.
    ManifestPart {
        /// The file.
        id: FileId,
        /// Offset of `bytes` in the encoding.
        offset: u32,
        /// Length of the whole encoding.
        total: u32,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The pieces the sender has (bit i of byte i/8, most significant first).
    Have {
        /// The file.
        id: FileId,
        /// The bitfield.
        bits: Vec<u8>,
    },
    /// The sender now has one more piece.
    HaveOne {
        /// The file.
        id: FileId,
        /// The piece.
        piece: u32,
    },
    /// Send me this block.
    Request {
        /// The file.
        id: FileId,
        /// The block.
        block: BlockRef,
    },
    /// A block of a piece.
    Block {
        /// The file.
        id: FileId,
        /// Piece index.
        piece: u32,
        /// Offset within the piece.
        offset: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Never mind that request.
    Cancel {
        /// The file.
        id: FileId,
        /// The block.
        block: BlockRef,
    },
    /// That request will not be served.
    Reject {
        /// The file.
        id: FileId,
        /// The block.
        block: BlockRef,
        /// Why.
        reason: RejectReason,
    },
}

mod ty {
    pub const ANNOUNCE: u8 = 1;
    pub const UNANNOUNCE: u8 = 2;
    pub const SUBSCRIBE: u8 = 3;
    pub const MANIFEST_REQUEST: u8 = 4;
    pub const MANIFEST_PART: u8 = 5;
    pub const HAVE: u8 = 6;
    pub const HAVE_ONE: u8 = 7;
    pub const REQUEST: u8 = 8;
    pub const BLOCK: u8 = 9;
    pub const CANCEL: u8 = 10;
    pub const REJECT: u8 = 11;
}

/// Bytes of a `Block` frame besides its data (at most).
pub const BLOCK_OVERHEAD: usize = 2 + 32 + 4 + 4 + 4;

/// Bytes of a `ManifestPart` frame besides its bytes.
pub const MANIFEST_PART_OVERHEAD: usize = 2 + 32 + 4 + 4 + 4;

struct Writer(Vec<u8>);

impl Writer {
    fn new(t: u8) -> Self {
        Writer(vec![WIRE_VERSION, t])
    }
    fn id(mut self, id: &FileId) -> Self {
        self.0.extend_from_slice(id);
        self
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str16(mut self, s: &str) -> Self {
        let b = fit_name(s).as_bytes();
        self.0.extend_from_slice(&(b.len() as u16).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn bytes32(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn block(self, b: &BlockRef) -> Self {
        self.u32(b.piece).u32(b.offset).u32(b.len)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn id(&mut self) -> Result<FileId, WireError> {
        let b = self.take(32, "file id")?;
        let mut id = [0u8; 32];
        id.copy_from_slice(b);
        Ok(id)
    }
    fn str16(&mut self, what: &'static str) -> Result<String, WireError> {
        let n = self.u16(what)? as usize;
        if n > MAX_NAME {
            return Err(WireError::Invalid(what));
        }
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::Invalid(what))
    }
    fn bytes32(&mut self, what: &'static str) -> Result<Vec<u8>, WireError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    fn block(&mut self) -> Result<BlockRef, WireError> {
        Ok(BlockRef {
            piece: self.u32("piece")?,
            offset: self.u32("offset")?,
            len: self.u32("length")?,
        })
    }
}

impl Frame {
    /// The bytes of this frame.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Announce {
                id,
                name,
                size,
                mime,
            } => Writer::new(ty::ANNOUNCE)
                .id(id)
                .str16(name)
                .u64(*size)
                .str16(mime),
            Frame::Unannounce { id } => Writer::new(ty::UNANNOUNCE).id(id),
            Frame::Subscribe { id } => Writer::new(ty::SUBSCRIBE).id(id),
            Frame::ManifestRequest { id } => Writer::new(ty::MANIFEST_REQUEST).id(id),
            Frame::ManifestPart {
                id,
                offset,
                total,
                bytes,
            } => Writer::new(ty::MANIFEST_PART)
                .id(id)
                .u32(*offset)
                .u32(*total)
                .bytes32(bytes),
            Frame::Have { id, bits } => Writer::new(ty::HAVE).id(id).bytes32(bits),
            Frame::HaveOne { id, piece } => Writer::new(ty::HAVE_ONE).id(id).u32(*piece),
            Frame::Request { id, block } => Writer::new(ty::REQUEST).id(id).block(block),
            Frame::Block {
                id,
                piece,
                offset,
                data,
            } => {
                // Data runs to the end of the frame: no length prefix to check against.
                let mut w = Writer::new(ty::BLOCK).id(id).u32(*piece).u32(*offset);
                w.0.extend_from_slice(data);
                w
            }
            Frame::Cancel { id, block } => Writer::new(ty::CANCEL).id(id).block(block),
            Frame::Reject { id, block, reason } => Writer::new(ty::REJECT)
                .id(id)
                .block(block)
                .u8(reason.code()),
        }
        .0
    }

    /// Decodes one frame; any malformed input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Frame, WireError> {
        let mut r = Reader(bytes);
        let v = r.u8("version")?;
        if v != WIRE_VERSION {
            return Err(WireError::Version(v));
        }
        let t = r.u8("type")?;
        let frame = match t {
            ty::ANNOUNCE => Frame::Announce {
                id: r.id()?,
                name: r.str16("name")?,
                size: r.u64("size")?,
                mime: r.str16("mime type")?,
            },
            ty::UNANNOUNCE => Frame::Unannounce { id: r.id()? },
            ty::SUBSCRIBE => Frame::Subscribe { id: r.id()? },
            ty::MANIFEST_REQUEST => Frame::ManifestRequest { id: r.id()? },
            ty::MANIFEST_PART => Frame::ManifestPart {
                id: r.id()?,
                offset: r.u32("offset")?,
                total: r.u32("total")?,
                bytes: r.bytes32("manifest bytes")?,
            },
            ty::HAVE => Frame::Have {
                id: r.id()?,
                bits: r.bytes32("bitfield")?,
            },
            ty::HAVE_ONE => Frame::HaveOne {
                id: r.id()?,
                piece: r.u32("piece")?,
            },
            ty::REQUEST => Frame::Request {
                id: r.id()?,
                block: r.block()?,
            },
            ty::BLOCK => {
                let id = r.id()?;
                let piece = r.u32("piece")?;
                let offset = r.u32("offset")?;
                let data = std::mem::take(&mut r.0).to_vec();
                Frame::Block {
                    id,
                    piece,
                    offset,
                    data,
                }
            }
            ty::CANCEL => Frame::Cancel {
                id: r.id()?,
                block: r.block()?,
            },
            ty::REJECT => Frame::Reject {
                id: r.id()?,
                block: r.block()?,
                reason: RejectReason::from_code(r.u8("reason")?)?,
            },
            other => return Err(WireError::UnknownType(other)),
        };
        if !r.0.is_empty() {
            return Err(WireError::Trailing(r.0.len()));
        }
        Ok(frame)
    }
}

/// Frames up to this size are packed together into one data-channel message by [`pack`];
/// larger ones (blocks) go alone.
pub const PACK_SMALL: usize = 1024;

/// One data-channel message made by [`pack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Whether it holds several frames (`[u32 length][frame]…`, see [`unpack`]) rather than
    /// one frame as it is.
    pub packed: bool,
    /// The message.
    pub bytes: Vec<u8>,
    /// The bytes of frames it carries, without the packing's lengths: what the engine counts
    /// as sent to the peer ([`super::Input::Sent`]).
    pub carried: usize,
}

/// Packs `frames` (encoded, in order) into messages of at most `max` bytes each: runs of small
/// frames become one packed message (`[u32 length][frame]…`, see [`unpack`]); a message that
/// would hold a single frame carries it as it is. Fewer, larger messages cost the browsers less
/// than one small message per request.
pub fn pack(frames: Vec<Vec<u8>>, max: usize) -> Vec<Packed> {
    let single = |f: Vec<u8>| Packed {
        packed: false,
        carried: f.len(),
        bytes: f,
    };
    let mut out = Vec::new();
    let mut run: Vec<Vec<u8>> = Vec::new();
    let mut run_len = 0;
    let flush = |run: &mut Vec<Vec<u8>>, out: &mut Vec<Packed>| match run.len() {
        0 => {}
        1 => out.push(single(run.pop().unwrap_or_default())),
        _ => {
            let carried = run.iter().map(Vec::len).sum::<usize>();
            let mut m = Vec::with_capacity(carried + 4 * run.len());
            for f in run.drain(..) {
                m.extend_from_slice(&(f.len() as u32).to_be_bytes());
                m.extend_from_slice(&f);
            }
            out.push(Packed {
                packed: true,
                bytes: m,
                carried,
            });
        }
    };
    for f in frames {
        if f.len() > PACK_SMALL || run_len + 4 + f.len() > max {
            flush(&mut run, &mut out);
            run_len = 0;
        }
        if f.len() > PACK_SMALL {
            out.push(single(f));
        } else {
            run_len += 4 + f.len();
            run.push(f);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The frames of a packed message (see [`pack`]); a length running past the end is an error.
pub fn unpack(mut msg: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    let mut frames = Vec::new();
    while !msg.is_empty() {
        let Some((len, rest)) = msg.split_first_chunk::<4>() else {
            return Err(WireError::Truncated("packed frame length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > rest.len() {
            return Err(WireError::Truncated("packed frame"));
        }
        let (frame, rest) = rest.split_at(len);
        frames.push(frame);
        msg = rest;
    }
    if frames.is_empty() {
        return Err(WireError::Invalid("empty packed message"));
    }
    Ok(frames)
}
