//! One WebRTC peer connection and its data channels, with owned listeners and backpressure.

use super::error::WebError;
use super::events::first_of;
use crate::signal::{IceServer, PeerSignal};
use futures::channel::mpsc;
use gloo_events::EventListener;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit,
    RtcDataChannelState, RtcDataChannelType, RtcIceCandidateInit, RtcIceServer, RtcOfferOptions,
    RtcPeerConnection, RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcSdpType,
    RtcSessionDescriptionInit,
};

/// `send` waits while more than this many bytes are queued on a channel. Chromium throws once
/// 16 MiB are queued; a few MiB keep the channel full at the measured 10–40 MB/s ceilings.
pub const HIGH_WATER: u32 = 4 * 1024 * 1024;
/// `bufferedamountlow` fires when the queue drains to this; sending resumes then.
pub const LOW_WATER: u32 = 1024 * 1024;
/// Used when the browser does not report the remote's maximum message size.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// Something a peer connection reports.
#[derive(Debug)]
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the remote now.
    Candidate(PeerSignal),
    /// Local ICE gathering finished.
    GatheringDone,
    /// The remote opened a data channel.
    DataChannel(DataChannel),
    /// The connection state changed.
    State(RtcPeerConnectionState),
}

/// One `RTCPeerConnection`. Its listeners are owned here and removed when it is dropped, which
/// also closes the connection.
pub struct PeerConnection {
    pc: RtcPeerConnection,
    _listeners: [EventListener; 3],
}

impl PeerConnection {
    /// Creates a connection using `ice_servers` (only TURN relays if `relay_only`); events
    /// arrive on the returned receiver.
    ///
    /// The event queue is unbounded because the browser cannot be paused; what it carries is
    /// bounded by the handshake (a few candidates, a few state changes, the remote's channels).
    pub fn new(
        ice_servers: &[IceServer],
        relay_only: bool,
    ) -> Result<(Self, mpsc::UnboundedReceiver<PeerEvent>), WebError> {
        let config = RtcConfiguration::new();
        if relay_only {
            config.set_ice_transport_policy(web_sys::RtcIceTransportPolicy::Relay);
        }
        let servers = js_sys::Array::new();
        for s in ice_servers {
            let server = RtcIceServer::new();
            let urls: js_sys::Array = s.urls.iter().map(|u| JsValue::from_str(u)).collect();
            server.set_urls(&urls);
            if let Some(u) = &s.username {
                server.set_username(u);
            }
            if let Some(c) = &s.credential {
                server.set_credential(c);
            }
            servers.push(&server);
        }
        config.set_ice_servers(&servers);
        let pc = RtcPeerConnection::new_with_configuration(&config)
            .map_err(|e| WebError::browser("creating RTCPeerConnection", e))?;
        let (tx, rx) = mpsc::unbounded();

        let t = tx.clone();
        let on_candidate = EventListener::new(&pc, "icecandidate", move |ev| {
            let Some(ev) = ev.dyn_ref::<RtcPeerConnectionIceEvent>() else {
                return;
            };
            let event = match ev.candidate() {
                Some(c) if !c.candidate().is_empty() => {
                    PeerEvent::Candidate(PeerSignal::Candidate {
                        candidate: c.candidate(),
                        sdp_mid: c.sdp_mid(),
                        sdp_m_line_index: c.sdp_m_line_index(),
                    })
                }
                _ => PeerEvent::GatheringDone,
            };
            let _ = t.unbounded_send(event);
        });
        let t = tx.clone();
        let on_channel = EventListener::new(&pc, "datachannel", move |ev| {
            if let Some(ev) = ev.dyn_ref::<RtcDataChannelEvent>() {
                let _ = t.unbounded_send(PeerEvent::DataChannel(DataChannel::wrap(ev.channel())));
            }
        });
        let state_pc = pc.clone();
        let on_state = EventListener::new(&pc, "connectionstatechange", move |_| {
            let _ = tx.unbounded_send(PeerEvent::State(state_pc.connection_state()));
        });
        LIVE_PEERS.with(|n| n.set(n.get() + 1));
        Ok((
            PeerConnection {
                pc,
                _listeners: [on_candidate, on_channel, on_state],
            },
            rx,
        ))
    }

    /// Opens a reliable, ordered data channel named `label`.
    pub fn create_data_channel(&self, label: &str) -> DataChannel {
        let init = RtcDataChannelInit::new();
        init.set_ordered(true);
        DataChannel::wrap(
            self.pc
                .create_data_channel_with_data_channel_dict(label, &init),
        )
    }

    /// Creates an offer, sets it as the local description and returns its SDP.
    pub async fn create_offer(&self) -> Result<String, WebError> {
        self.offer(false).await
    }

    /// Creates an ICE-restart offer (new ICE credentials), sets it and returns its SDP.
    pub async fn create_restart_offer(&self) -> Result<String, WebError> {
        self.offer(true).await
    }

    async fn offer(&self, ice_restart: bool) -> Result<String, WebError> {
        let options = RtcOfferOptions::new();
        options.set_ice_restart(ice_restart);
        let offer = JsFuture::from(self.pc.create_offer_with_rtc_offer_options(&options))
            .await
            .map_err(|e| WebError::browser("creating offer", e))?;
        let sdp = sdp_of(&offer)?;
        self.set_local(RtcSdpType::Offer, &sdp).await?;
        Ok(sdp)
    }

    /// Sets the remote offer, creates and sets the answer, and returns its SDP.
    pub async fn accept_offer(&self, sdp: &str) -> Result<String, WebError> {
        self.set_remote(RtcSdpType::Offer, sdp).await?;
        let answer = JsFuture::from(self.pc.create_answer())
            .await
            .map_err(|e| WebError::browser("creating answer", e))?;
        let sdp = sdp_of(&answer)?;
        self.set_local(RtcSdpType::Answer, &sdp).await?;
        Ok(sdp)
    }

    /// Sets the remote answer to our offer.
    pub async fn accept_answer(&self, sdp: &str) -> Result<(), WebError> {
        self.set_remote(RtcSdpType::Answer, sdp).await
    }

    /// Adds a remote ICE candidate (the remote description must be set).
    pub async fn add_candidate(&self, signal: &PeerSignal) -> Result<(), WebError> {
        let PeerSignal::Candidate {
            candidate,
            sdp_mid,
            sdp_m_line_index,
        } = signal
        else {
            return Err(WebError::Signal("not a candidate".into()));
        };
        let init = RtcIceCandidateInit::new(candidate);
        init.set_sdp_mid(sdp_mid.as_deref());
        init.set_sdp_m_line_index(*sdp_m_line_index);
        JsFuture::from(
            self.pc
                .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init)),
        )
        .await
        .map_err(|e| WebError::browser("adding ICE candidate", e))?;
        Ok(())
    }

    /// The largest message the remote accepts, once the SCTP transport exists.
    pub fn max_message_size(&self) -> usize {
        // `RTCPeerConnection.sctp` is not in web-sys; read it by name.
        let size = js_sys::Reflect::get(&self.pc, &JsValue::from_str("sctp"))
            .ok()
            .filter(|s| s.is_object())
            .and_then(|s| js_sys::Reflect::get(&s, &JsValue::from_str("maxMessageSize")).ok())
            .and_then(|m| m.as_f64());
        match size {
            Some(m) if m >= 1.0 && m.is_finite() => (m as usize).min(crate::transfer::MAX_BLOCK),
            // 0 or Infinity means "no limit" to the spec; stay at what Chromium accepts.
            Some(_) => crate::transfer::MAX_BLOCK,
            None => DEFAULT_MAX_MESSAGE,
        }
    }

    /// The browser's own view of the connection, for diagnostics: `signalingState`,
    /// `iceConnectionState`, `iceGatheringState`, `connectionState`, and whether the local and
    /// remote descriptions are set.
    pub fn diagnostics(&self) -> Vec<(&'static str, JsValue)> {
        let get = |k: &str| js_sys::Reflect::get(&self.pc, &JsValue::from_str(k)).ok();
        let mut out: Vec<(&'static str, JsValue)> = [
            ("signaling", "signalingState"),
            ("ice", "iceConnectionState"),
            ("gathering", "iceGatheringState"),
            ("connection", "connectionState"),
        ]
        .into_iter()
        .map(|(name, prop)| (name, get(prop).unwrap_or(JsValue::NULL)))
        .collect();
        out.push((
            "localDescription",
            JsValue::from_bool(self.pc.local_description().is_some()),
        ));
        out.push((
            "remoteDescription",
            JsValue::from_bool(self.pc.remote_description().is_some()),
        ));
        out
    }

    /// The connection state now.
    pub fn state(&self) -> RtcPeerConnectionState {
        self.pc.connection_state()
    }

    /// The SDP of the local and the remote description, once both are set.
    pub fn descriptions(&self) -> Option<(String, String)> {
        let local = self.pc.local_description()?.sdp();
        let remote = self.pc.remote_description()?.sdp();
        Some((local, remote))
    }

    /// The entries of `getStats()` that give the route and round-trip time.
    pub async fn stats(&self) -> Result<Vec<crate::swarm::StatsEntry>, WebError> {
        let report = JsFuture::from(self.pc.get_stats())
            .await
            .map_err(|e| WebError::browser("reading stats", e))?;
        let get = |o: &JsValue, k: &str| js_sys::Reflect::get(o, &JsValue::from_str(k)).ok();
        let text = |o: &JsValue, k: &str| get(o, k).and_then(|v| v.as_string());
        let mut out = Vec::new();
        let values = js_sys::Reflect::get(&report, &JsValue::from_str("values"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
            .and_then(|f| f.call0(&report).ok());
        let Some(iter) = values.and_then(|v| js_sys::try_iter(&v).ok().flatten()) else {
            return Ok(out);
        };
        for entry in iter.flatten() {
            out.push(crate::swarm::StatsEntry {
                id: text(&entry, "id").unwrap_or_default(),
                kind: text(&entry, "type").unwrap_or_default(),
                selected_pair: text(&entry, "selectedCandidatePairId"),
                local_candidate: text(&entry, "localCandidateId"),
                remote_candidate: text(&entry, "remoteCandidateId"),
                nominated: get(&entry, "nominated")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                selected: get(&entry, "selected")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                state: text(&entry, "state"),
                rtt: get(&entry, "currentRoundTripTime").and_then(|v| v.as_f64()),
                candidate_type: text(&entry, "candidateType"),
            });
        }
        Ok(out)
    }

    async fn set_local(&self, ty: RtcSdpType, sdp: &str) -> Result<(), WebError> {
        let desc = RtcSessionDescriptionInit::new(ty);
        desc.set_sdp(sdp);
        JsFuture::from(self.pc.set_local_description(&desc))
            .await
            .map_err(|e| WebError::browser("setting local description", e))?;
        Ok(())
    }

    async fn set_remote(&self, ty: RtcSdpType, sdp: &str) -> Result<(), WebError> {
        let desc = RtcSessionDescriptionInit::new(ty);
        desc.set_sdp(sdp);
        JsFuture::from(self.pc.set_remote_description(&desc))
            .await
            .map_err(|e| WebError::browser("setting remote description", e))?;
        Ok(())
    }
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        self.pc.close();
        LIVE_PEERS.with(|n| n.set(n.get() - 1));
    }
}

thread_local! {
    static LIVE_PEERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static LIVE_CHANNELS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Live `PeerConnection`s and `DataChannel`s in this page (with their listeners), for leak tests.
pub fn live_objects() -> (usize, usize) {
    (
        LIVE_PEERS.with(|n| n.get()),
        LIVE_CHANNELS.with(|n| n.get()),
    )
}

fn sdp_of(desc: &JsValue) -> Result<String, WebError> {
    js_sys::Reflect::get(desc, &JsValue::from_str("sdp"))
        .ok()
        .and_then(|v| v.as_string())
        .ok_or_else(|| WebError::Signal("session description without SDP".into()))
}

/// A message received on a data channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message.
    Text(String),
}

/// Detaches a received message's buffer once it is copied into wasm, with
/// `ArrayBuffer.prototype.transfer(0)` where the browser has it, and reports its bytes to the
/// garbage collector ([`GcPressure`]). Detaching alone does not free the bytes in Chromium: its
/// memory-infra shows them in the array-buffer partition until the next major collection (the
/// `MessageEvent` still holds them), and V8 no longer counts them (the page's JS heap peak went
/// 91 → 6 MiB at 26 MB/s; the renderer's RSS peak was a little lower in back-to-back 1 GiB
/// downloads, 255–260 MiB against 260–261). In Firefox the bytes are the buffer's own and go
/// with it. `len` is the buffer's length, which the caller knows from its copy (one call into
/// JavaScript fewer per message).
fn release(buf: &js_sys::ArrayBuffer, len: u32) {
    thread_local! {
        static TRANSFER: Option<js_sys::Function> =
            js_sys::Reflect::get(&js_sys::ArrayBuffer::new(0), &JsValue::from_str("transfer"))
                .ok()
                .and_then(|f| f.dyn_into().ok());
        static PRESSURE: GcPressure = const { GcPressure::new() };
    }
    TRANSFER.with(|transfer| {
        if let Some(f) = transfer {
            let _ = f.call1(buf, &JsValue::from(0));
        }
    });
    PRESSURE.with(|p| p.received(len));
}

/// Makes the garbage collector run after some 8 MiB of received messages instead of 64–100:
/// Chromium keeps each message's bytes until the `MessageEvent` that brought them is collected,
/// and V8 starts a major collection only once some 64 MiB of new external memory (array
/// buffers among it) has been allocated since the last, counting none of the messages' bytes
/// once they are detached. So for every [`GcPressure::STEP`] bytes received this allocates an
/// `ArrayBuffer` [`GcPressure::FACTOR`] times as large and drops it at once: V8 counts it as
/// external memory, but it is a fresh zeroed mapping no page of which is ever touched, so it
/// takes address space, not memory (the renderer's anonymous memory went down, not up), and it
/// is unmapped by the collection it brings on. Measured (1 GiB from disk, Chromium → Chromium,
/// the receiving renderer's RSS peak): 243–248 MiB without, 183–188 MiB with it, 154–155 MiB of
/// it held before the download; Firefox's tab, which frees a detached buffer's bytes at once,
/// peaked at 139–143 MiB either way. The collections it brings on cost the receiving renderer
/// little: 21.8–22.4 CPU ms per MB against 19.9–21.1 without (Firefox: 16.9–17.2 against
/// 17.6–18.4), within the spread between runs.
struct GcPressure {
    /// Bytes received since the last allocation.
    owed: std::cell::Cell<u32>,
}

impl GcPressure {
    const STEP: u32 = 4 << 20;
    const FACTOR: u32 = 8;

    const fn new() -> Self {
        GcPressure {
            owed: std::cell::Cell::new(0),
        }
    }

    fn received(&self, len: u32) {
        let owed = self.owed.get().saturating_add(len);
        if owed < Self::STEP {
            self.owed.set(owed);
            return;
        }
        self.owed.set(owed - Self::STEP);
        thread_local! {
            static CTOR: js_sys::Function = js_sys::ArrayBuffer::new(0).constructor();
        }
        // Through `Reflect.construct`, which hands back the RangeError of an allocation the
        // browser refuses (no address space left) instead of throwing it through wasm: then
        // nothing is reported, and nothing else changes.
        CTOR.with(|ctor| {
            let args = js_sys::Array::of1(&JsValue::from(Self::STEP * Self::FACTOR));
            let _ = js_sys::Reflect::construct(ctor, &args);
        });
    }
}

/// One `RTCDataChannel`: `send` waits for the queue to drain below [`HIGH_WATER`]; received
/// messages are read with [`DataChannel::recv`]. Closed when dropped.
#[derive(Debug)]
pub struct DataChannel {
    ch: RtcDataChannel,
    incoming: Option<mpsc::UnboundedReceiver<Message>>,
    _listeners: [EventListener; 2],
}

impl DataChannel {
    fn wrap(ch: RtcDataChannel) -> Self {
        ch.set_binary_type(RtcDataChannelType::Arraybuffer);
        ch.set_buffered_amount_low_threshold(LOW_WATER);
        // Unbounded: a data channel has no receive-side flow control in the browser API; the
        // consumer must keep up, and the remote's own backpressure bounds what is in flight.
        let (tx, incoming) = mpsc::unbounded();
        let closer = tx.clone();
        // Ends the incoming stream when the channel closes.
        let on_close = EventListener::new(&ch, "close", move |_| closer.close_channel());
        let on_message = EventListener::new(&ch, "message", move |ev| {
            let Some(ev) = ev.dyn_ref::<MessageEvent>() else {
                return;
            };
            let data = ev.data();
            let msg = if let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                let bytes = js_sys::Uint8Array::new(buf).to_vec();
                release(buf, bytes.len() as u32);
                Message::Binary(bytes)
            } else if let Some(text) = data.as_string() {
                Message::Text(text)
            } else {
                return;
            };
            let _ = tx.unbounded_send(msg);
        });
        LIVE_CHANNELS.with(|n| n.set(n.get() + 1));
        DataChannel {
            ch,
            incoming: Some(incoming),
            _listeners: [on_message, on_close],
        }
    }

    /// The channel's label.
    pub fn label(&self) -> String {
        self.ch.label()
    }

    /// Waits until the channel is open.
    pub async fn opened(&self) -> Result<(), WebError> {
        loop {
            match self.ch.ready_state() {
                RtcDataChannelState::Open => return Ok(()),
                RtcDataChannelState::Connecting => {
                    first_of(&self.ch, &["open", "close", "error"]).await;
                }
                _ => return Err(WebError::Closed("data channel")),
            }
        }
    }

    /// The channel's `readyState` ("connecting", "open", "closing", "closed").
    pub fn ready_state_name(&self) -> &'static str {
        match self.ch.ready_state() {
            RtcDataChannelState::Connecting => "connecting",
            RtcDataChannelState::Open => "open",
            RtcDataChannelState::Closing => "closing",
            _ => "closed",
        }
    }

    /// Closes the channel (its connection stays): both ends see it close.
    pub fn close(&self) {
        self.ch.close();
    }

    /// Bytes queued and not yet sent.
    pub fn buffered_amount(&self) -> u32 {
        self.ch.buffered_amount()
    }

    /// Sends one binary message, first waiting while the send queue is above [`HIGH_WATER`].
    pub async fn send(&self, data: &[u8]) -> Result<(), WebError> {
        self.wait_writable().await?;
        self.ch
            .send_with_u8_array(data)
            .map_err(|e| WebError::browser("sending on data channel", e))
    }

    /// Sends one text message, with the same backpressure as [`DataChannel::send`].
    pub async fn send_text(&self, text: &str) -> Result<(), WebError> {
        self.wait_writable().await?;
        self.ch
            .send_with_str(text)
            .map_err(|e| WebError::browser("sending on data channel", e))
    }

    async fn wait_writable(&self) -> Result<(), WebError> {
        loop {
            if self.ch.ready_state() != RtcDataChannelState::Open {
                return Err(WebError::Closed("data channel"));
            }
            if self.ch.buffered_amount() <= HIGH_WATER {
                return Ok(());
            }
            first_of(&self.ch, &["bufferedamountlow", "close", "error"]).await;
        }
    }

    /// Takes the stream of received messages, for a reader that shares the channel for sending;
    /// it ends when the channel closes or is dropped. [`DataChannel::recv`] returns `None`
    /// afterwards.
    pub fn take_incoming(&mut self) -> Option<mpsc::UnboundedReceiver<Message>> {
        self.incoming.take()
    }

    /// The next received message, or `None` once the channel is closed and drained (or the
    /// stream was taken).
    pub async fn recv(&mut self) -> Option<Message> {
        use futures::StreamExt;
        self.incoming.as_mut()?.next().await
    }
}

impl Drop for DataChannel {
    fn drop(&mut self) {
        self.ch.close();
        LIVE_CHANNELS.with(|n| n.set(n.get() - 1));
    }
}
