//! The sans-IO file engine: manifests, pieces, the scheduler and the data-channel wire format.
//!
//! Like [`crate::swarm`], it does no I/O; the browser layer moves frames and storage results in
//! and out. Block sizes are bounded by what a data channel carries in one message.

/// The largest message Chromium's data channels accept (256 KiB); pieces travel in blocks no
/// larger than the remote's advertised maximum, and never larger than this.
pub const MAX_BLOCK: usize = 256 * 1024;
