//! The browser layer (wasm32 only): WebRTC, WebSocket and the JavaScript API.
//!
//! It only moves events between the browser and the sans-IO machines; it decides nothing.

mod error;
mod events;
pub mod peer;
pub mod signal;
mod swarm;

pub use error::WebError;
pub use peer::{DataChannel, Message, PeerConnection, PeerEvent};
pub use signal::{SignalClient, SignalEvent};
pub use swarm::{live_objects, Event, Swarm};

use wasm_bindgen::prelude::*;

/// Runs once when the module is instantiated: panics and `tracing` go to the console.
#[wasm_bindgen(start)]
pub fn start() {
    tracing_wasm::set_as_global_default_with_config(
        tracing_wasm::WASMLayerConfigBuilder::new()
            .set_max_level(tracing::Level::INFO)
            .build(),
    );
}

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_string()
}

/// A live connection to the signaling server, joined to a room (the page's first slice).
#[wasm_bindgen]
pub struct SignalSession {
    client: SignalClient,
    id: String,
    peers: Vec<String>,
}

#[wasm_bindgen]
impl SignalSession {
    /// This peer's id, assigned by the server.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// The peers that were in the room when this one joined.
    #[wasm_bindgen(getter)]
    pub fn peers(&self) -> Vec<String> {
        self.peers.clone()
    }

    /// `"connecting"`, `"open"`, `"closing"` or `"closed"`: the WebSocket's state now.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.client.state().to_string()
    }

    /// Calls `callback(code, reason)` once when the connection closes.
    #[wasm_bindgen(js_name = onClose)]
    pub fn on_close(&self, callback: js_sys::Function) {
        self.client.on_close(callback);
    }

    /// Leaves the room and closes the connection.
    pub fn close(&self) {
        self.client.leave();
    }
}

/// Connects to the signaling server at `url` (`ws://…/ws`) and joins `room`.
#[wasm_bindgen(js_name = connectSignal)]
pub async fn connect_signal(url: String, room: String) -> Result<SignalSession, JsError> {
    let (client, id, peers) = SignalClient::join(&url, &room).await?;
    Ok(SignalSession {
        client,
        id: id.to_string(),
        peers: peers.iter().map(ToString::to_string).collect(),
    })
}
