//! The WebSocket connection to the signaling server.

use super::error::WebError;
use super::events::first_of;
use crate::signal::{ClientMessage, PeerId, RoomName, ServerMessage, PROTOCOL_VERSION};
use futures::channel::mpsc;
use futures::StreamExt;
use gloo_events::EventListener;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// Something the signaling connection reports.
#[derive(Debug)]
pub enum SignalEvent {
    /// A frame from the server.
    Message(ServerMessage),
    /// A frame we could not parse (the server never sends one; reported, not fatal).
    Invalid(String),
    /// The connection closed.
    Closed {
        /// The WebSocket close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// A WebSocket to the signaling server. Listeners are owned and removed on drop, which also
/// closes the socket.
pub struct SignalClient {
    ws: WebSocket,
    events: mpsc::UnboundedReceiver<SignalEvent>,
    _listeners: [EventListener; 2],
}

impl SignalClient {
    /// Opens a WebSocket to `url` and waits until it is open.
    pub async fn connect(url: &str) -> Result<Self, WebError> {
        let ws = WebSocket::new(url).map_err(|e| WebError::browser("opening WebSocket", e))?;
        Self::adopt(ws).await
    }

    /// Takes over `ws`, a WebSocket to the signaling server that the page opened (and sent
    /// nothing on), and waits until it is open (at once if it is).
    pub async fn adopt(ws: WebSocket) -> Result<Self, WebError> {
        let url = ws.url();
        // Unbounded: the server's frames cannot be paused; the server's own rate limits and the
        // consumer bound what queues here.
        let (tx, events) = mpsc::unbounded();
        let t = tx.clone();
        let on_message = EventListener::new(&ws, "message", move |ev| {
            let Some(text) = ev
                .dyn_ref::<MessageEvent>()
                .and_then(|m| m.data().as_string())
            else {
                return;
            };
            let event = match ServerMessage::parse(&text) {
                Ok(m) => SignalEvent::Message(m),
                Err(e) => SignalEvent::Invalid(e.to_string()),
            };
            let _ = t.unbounded_send(event);
        });
        let on_close = EventListener::new(&ws, "close", move |ev| {
            let (code, reason) = ev
                .dyn_ref::<CloseEvent>()
                .map(|c| (c.code(), c.reason()))
                .unwrap_or((1006, String::new()));
            let _ = tx.unbounded_send(SignalEvent::Closed { code, reason });
        });
        let client = SignalClient {
            ws,
            events,
            _listeners: [on_message, on_close],
        };
        let open = match client.ws.ready_state() {
            WebSocket::OPEN => true,
            WebSocket::CONNECTING => first_of(&client.ws, &["open", "close"]).await == "open",
            _ => false,
        };
        if open {
            Ok(client)
        } else {
            Err(WebError::Signal(format!("could not connect to {url}")))
        }
    }

    /// Connects to `url` and joins `room`; returns the client, our id and the peers present.
    pub async fn join(url: &str, room: &str) -> Result<(Self, PeerId, Vec<PeerId>), WebError> {
        let room = RoomName::new(room).map_err(|e| WebError::Signal(e.to_string()))?;
        let mut client = Self::connect(url).await?;
        client.send(&ClientMessage::Join {
            room,
            v: PROTOCOL_VERSION,
        })?;
        loop {
            match client.next().await {
                Some(SignalEvent::Message(ServerMessage::Welcome { id, peers, .. })) => {
                    return Ok((client, id, peers))
                }
                Some(SignalEvent::Message(ServerMessage::Error { code, message })) => {
                    return Err(WebError::Signal(format!("{message} ({code:?})")))
                }
                Some(SignalEvent::Closed { code, reason }) => {
                    return Err(WebError::Signal(format!(
                        "closed before welcome: {code} {reason}"
                    )))
                }
                Some(_) => {}
                None => return Err(WebError::Closed("signaling connection")),
            }
        }
    }

    /// Sends one frame.
    pub fn send(&self, msg: &ClientMessage) -> Result<(), WebError> {
        self.ws
            .send_with_str(&msg.to_json())
            .map_err(|e| WebError::browser("sending to signaling server", e))
    }

    /// The next event, or `None` after the connection closed and its events were read (or the
    /// events were taken).
    pub async fn next(&mut self) -> Option<SignalEvent> {
        self.events.next().await
    }

    /// Takes the event stream, for a reader task while this client stays with its owner for
    /// sending; it ends when the client is dropped.
    pub fn take_events(&mut self) -> mpsc::UnboundedReceiver<SignalEvent> {
        let (_, empty) = mpsc::unbounded();
        std::mem::replace(&mut self.events, empty)
    }
}

impl Drop for SignalClient {
    fn drop(&mut self) {
        let _ = self.ws.close();
    }
}
