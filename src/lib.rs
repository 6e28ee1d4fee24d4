//! swarmdrop: browser-to-browser file swarms over WebRTC.
//!
//! - [`signal`]: the signaling protocol, shared with the server (always built).
//! - [`swarm`]: the sans-IO swarm core (feature `engine`).
//! - [`transfer`]: the sans-IO file engine (feature `engine`).
//! - `web`: the browser layer and the JavaScript API (feature `engine`, wasm32 only).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod signal;

#[cfg(feature = "engine")]
pub mod swarm;

#[cfg(feature = "engine")]
pub mod transfer;

#[cfg(all(feature = "engine", target_arch = "wasm32"))]
pub mod web;

/// The crate version, as shown on the page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
