//! The browser layer (wasm32 only): WebRTC, WebSocket and the JavaScript API.
//!
//! It only moves events between the browser and the sans-IO machines; it decides nothing.

mod error;
mod events;
mod log;
pub mod peer;
pub mod signal;
pub mod store;
mod swarm;
mod task;
mod types;
mod zip;

pub use error::WebError;
pub use peer::{DataChannel, Message, PeerConnection, PeerEvent};
pub use signal::{SignalClient, SignalEvent};
pub use swarm::{live_objects, lose_hellos_for_testing, Download, Event, Swarm, EVENTS};
pub use zip::zip_files;

/// Re-exported for the page: `PeerState` and friends in words.
pub use crate::swarm::{PeerState, SignalState};

use wasm_bindgen::prelude::*;

/// Runs once when the module is instantiated: `tracing` goes to the console.
#[wasm_bindgen(start)]
pub fn start() {
    log::init();
}

/// `fut`'s output, or `None` if it is not done within `ms` milliseconds (it is then dropped).
pub(crate) async fn within<T>(ms: u32, fut: impl std::future::Future<Output = T>) -> Option<T> {
    let timer = gloo_timers::future::TimeoutFuture::new(ms);
    futures::pin_mut!(fut);
    match futures::future::select(fut, timer).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// An SVG QR code of `text` (for the page's join link), as an SVG document string.
#[wasm_bindgen(js_name = qrSvg)]
pub fn qr_svg(text: &str) -> Result<String, JsError> {
    let code =
        qrcode::QrCode::new(text.as_bytes()).map_err(|e| JsError::new(&format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(160, 160)
        .quiet_zone(true)
        .build())
}
