//! The browser driver of the sans-IO [`crate::swarm::Swarm`], and the `Swarm` JavaScript API.
//!
//! It decides nothing: it turns the machine's outputs into WebSocket frames and
//! RTCPeerConnection calls, and browser events back into inputs.

use super::error::{describe, WebError};
use super::peer::{DataChannel, Message, PeerConnection, PeerEvent};
use super::signal::{SignalClient, SignalEvent};
use crate::signal::{IceServer, PeerId, PeerSignal, RoomName};
use crate::swarm::{
    self as core, hello_body, parse_hello, Config, IceState, Input, Output, PeerCommand, PeerState,
    Route, SwarmEvent,
};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use gloo_timers::callback::{Interval, Timeout};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::RtcPeerConnectionState;

/// The data channel every pair of peers opens.
const CHANNEL: &str = "swarm";
/// First byte of a data-channel message: our hello with the sender's key.
const TAG_HELLO: u8 = 0;
/// First byte of a data-channel message: application bytes.
const TAG_BYTES: u8 = 1;
/// First byte of a data-channel message: a file-sharing frame.
const TAG_FILES: u8 = 2;
/// First byte of a data-channel message: several small file-sharing frames
/// ([`crate::transfer::wire::pack`]).
const TAG_FILES_PACKED: u8 = 3;

mod files;
pub use files::Download;
/// How often route and round-trip time are read from `getStats`.
const STATS_EVERY_MS: u32 = 2000;

/// What `Swarm.join` takes (camelCase from JavaScript).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinOptions {
    /// The signaling server's WebSocket URL (`ws://host/ws`).
    signal: String,
    room: String,
    #[serde(default)]
    ice_servers: Vec<JsIceServer>,
    max_peers: Option<usize>,
    /// "all" (default) or "relay": only TURN relays, as `RTCConfiguration.iceTransportPolicy`.
    #[serde(default)]
    ice_transport_policy: Option<String>,
    /// The name of this swarm's file store in the browser (default "default"); swarms in one
    /// origin that download the same file at the same time need different names.
    #[serde(default)]
    storage: Option<String>,
    /// Most bytes a second this peer uploads to all peers together.
    #[serde(default)]
    upload_limit: Option<f64>,
    /// A WebSocket to `signal` the page opened early (while the wasm loaded), used for the
    /// first connection (set from the options object, not deserialized).
    #[serde(skip)]
    socket: Option<web_sys::WebSocket>,
}

/// An upload limit as JavaScript gives it (bytes a second; none: no limit), checked.
fn upload_limit(limit: Option<f64>) -> Result<Option<u64>, WebError> {
    match limit {
        None => Ok(None),
        Some(l) if l.is_finite() && l >= 1.0 => Ok(Some(l as u64)),
        Some(l) => Err(WebError::Signal(format!(
            "uploadLimit {l}: use a number of bytes a second, at least 1"
        ))),
    }
}

/// `RTCIceServer` as JavaScript writes it: `urls` a string or a list.
#[derive(Debug, Deserialize)]
struct JsIceServer {
    urls: Urls,
    username: Option<String>,
    credential: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

/// One peer's browser objects.
struct PeerHandle {
    /// Distinguishes this connection from an earlier one to the same peer.
    gen: u64,
    pc: Rc<PeerConnection>,
    channel: Option<Rc<DataChannel>>,
    route: Route,
    rtt_ms: Option<f64>,
    safety: Option<String>,
    /// When it became connected (`performance.now()`, ms).
    connected_at: Option<f64>,
}

struct Listener {
    token: u32,
    event: String,
    callback: js_sys::Function,
}

/// What a Rust subscriber of a [`Swarm`] receives.
#[derive(Debug, Clone)]
pub enum Event {
    /// A swarm event (peers joining, leaving, changing state; signaling state; errors).
    Swarm(SwarmEvent),
    /// A message from a peer.
    Message(PeerId, Message),
    /// A file-sharing event.
    Transfer(crate::transfer::TransferEvent),
}

struct Inner {
    machine: core::Swarm,
    engine: crate::transfer::Engine,
    files: files::Files,
    /// Rust subscribers ([`Swarm::events`]); unbounded because events cannot be paused, and a
    /// dropped receiver is removed at the next event.
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    epoch: f64,
    url: String,
    /// A WebSocket to `url` the page opened before joining (`socket`), for the first
    /// connection.
    early_socket: Option<web_sys::WebSocket>,
    /// ICE servers from the options; the server's `welcome` list is added to them.
    ice_servers: Vec<IceServer>,
    server_ice: Vec<IceServer>,
    relay_only: bool,
    signal: Option<SignalClient>,
    peers: HashMap<PeerId, PeerHandle>,
    next_gen: u64,
    listeners: Vec<Listener>,
    next_token: u32,
    /// The armed timer and the deadline it was armed for.
    timer: Option<(Duration, Timeout)>,
    stats: Option<Interval>,
    joined: Option<oneshot::Sender<Result<(), String>>>,
}

type Shared = Rc<RefCell<Inner>>;

#[wasm_bindgen]
extern "C" {
    /// `performance.now()`, called as one import: the clock is read for every input the
    /// machines get, and `window()`, `performance` and `now()` through web-sys were three
    /// calls out of wasm each time (~0.25 ms of the receiving page's time per MB downloaded).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

impl Inner {
    fn now(&self) -> Duration {
        Duration::from_secs_f64(((performance_now() - self.epoch) / 1000.0).max(0.0))
    }
}

/// Hands `input` to the machine and carries out what follows.
fn feed(shared: &Shared, input: Input) {
    {
        let mut inner = shared.borrow_mut();
        let now = inner.now();
        inner.machine.handle(input, now);
    }
    pump(shared);
}

/// Like [`feed`], but only while `gen` is still the peer's connection (events of a closed
/// connection that were already queued are dropped).
fn feed_peer(shared: &Shared, id: &PeerId, gen: u64, input: Input) {
    let current = shared.borrow().peers.get(id).map(|h| h.gen) == Some(gen);
    if current {
        feed(shared, input);
    }
}

fn pump(shared: &Shared) {
    loop {
        let out = shared.borrow_mut().machine.poll_output();
        if let Some(out) = out {
            act(shared, out);
            continue;
        }
        let out = shared.borrow_mut().engine.poll_output();
        match out {
            Some(out) => files::act(shared, out),
            None => break,
        }
    }
    files::flush(shared);
    schedule(shared);
}

/// Arms one timer for the machines' next deadline. A timer already armed for that deadline or
/// earlier is kept (firing early is harmless: the machines act only on what is due), so the
/// many pumps of a transfer do not each replace a browser timer.
fn schedule(shared: &Shared) {
    let mut inner = shared.borrow_mut();
    let next = [inner.machine.poll_timeout(), inner.engine.poll_timeout()]
        .into_iter()
        .flatten()
        .min();
    let Some(at) = next else {
        inner.timer = None;
        return;
    };
    if inner.timer.as_ref().is_some_and(|(armed, _)| *armed <= at) {
        return;
    }
    let delay = at
        .saturating_sub(inner.now())
        .as_millis()
        .min(u32::MAX as u128) as u32;
    let weak = Rc::downgrade(shared);
    let timeout = Timeout::new(delay, move || {
        if let Some(shared) = weak.upgrade() {
            {
                let mut inner = shared.borrow_mut();
                inner.timer = None;
                let now = inner.now();
                inner.machine.handle_timeout(now);
                inner.engine.handle_timeout(now);
            }
            pump(&shared);
        }
    });
    inner.timer = Some((at, timeout));
}

fn act(shared: &Shared, out: Output) {
    match out {
        Output::OpenSignal => spawn_local(run_signal(Rc::clone(shared))),
        Output::CloseSignal => {
            let client = shared.borrow_mut().signal.take();
            drop(client);
        }
        Output::SendSignal(msg) => {
            if let Some(client) = &shared.borrow().signal {
                if let Err(e) = client.send(&msg) {
                    tracing::warn!("{e}");
                }
            }
        }
        Output::Peer(id, cmd) => peer_command(shared, id, cmd),
        Output::Event(e) => on_event(shared, e),
    }
}

/// One signaling connection: open, feed its frames, report its end.
async fn run_signal(shared: Shared) {
    let (url, early) = {
        let mut inner = shared.borrow_mut();
        (inner.url.clone(), inner.early_socket.take())
    };
    // The page's early socket, if it opened one; if that failed, a new one at once.
    let adopted = match early {
        Some(ws) => SignalClient::adopt(ws)
            .await
            .map_err(|e| tracing::info!("signaling: the page's socket: {e}"))
            .ok(),
        None => None,
    };
    let connected = match adopted {
        Some(c) => Ok(c),
        None => SignalClient::connect(&url).await,
    };
    let mut client = match connected {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("signaling: {e}");
            return feed(&shared, Input::SignalClosed);
        }
    };
    let mut events = client.take_events();
    shared.borrow_mut().signal = Some(client);
    feed(&shared, Input::SignalOpened);
    while let Some(ev) = events.next().await {
        match ev {
            SignalEvent::Message(msg) => {
                if let crate::signal::ServerMessage::Welcome { ice_servers, .. } = &msg {
                    shared.borrow_mut().server_ice = ice_servers.clone();
                }
                feed(&shared, Input::Server(msg));
            }
            SignalEvent::Invalid(e) => emit_error(&shared, &format!("signaling: {e}")),
            SignalEvent::Closed { .. } => {
                shared.borrow_mut().signal = None;
                return feed(&shared, Input::SignalClosed);
            }
        }
    }
}

thread_local! {
    /// Test hook: hellos still to be lost on their way out of this page.
    static LOSE_HELLOS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Test hook: the next `n` hellos sent from this page are lost, as when one reaches the remote
/// end before its channel is ready.
#[doc(hidden)]
pub fn lose_hellos_for_testing(n: u32) {
    LOSE_HELLOS.with(|l| l.set(n));
}

fn peer_command(shared: &Shared, id: PeerId, cmd: PeerCommand) {
    match cmd {
        PeerCommand::Create { offerer } => create_peer(shared, id, offerer),
        PeerCommand::Close => {
            let handle = shared.borrow_mut().peers.remove(&id);
            drop(handle);
        }
        PeerCommand::SendHello { seen, ask } => {
            let (found, key) = {
                let inner = shared.borrow();
                let found = inner
                    .peers
                    .get(&id)
                    .and_then(|h| Some((h.channel.clone()?, h.gen)));
                (found, inner.machine.key())
            };
            let Some((channel, gen)) = found else { return };
            if LOSE_HELLOS.with(|l| l.replace(l.get().saturating_sub(1))) > 0 {
                return;
            }
            let mut hello = vec![TAG_HELLO];
            hello.extend_from_slice(&hello_body(key, seen, ask));
            let shared = Rc::clone(shared);
            spawn_local(async move {
                if let Err(e) = channel.send(&hello).await {
                    feed_peer(
                        &shared,
                        &id,
                        gen,
                        Input::PeerError(id.clone(), e.to_string()),
                    );
                }
            });
        }
        other => {
            let Some((pc, gen)) = shared
                .borrow()
                .peers
                .get(&id)
                .map(|h| (Rc::clone(&h.pc), h.gen))
            else {
                return;
            };
            let shared = Rc::clone(shared);
            spawn_local(async move {
                let result = match other {
                    PeerCommand::ApplyRemote(PeerSignal::Offer { sdp }) => {
                        pc.accept_offer(&sdp).await.map(|answer| {
                            feed_peer(&shared, &id, gen, Input::RemoteApplied(id.clone()));
                            let answer = PeerSignal::Answer { sdp: answer };
                            feed_peer(&shared, &id, gen, Input::LocalSignal(id.clone(), answer));
                        })
                    }
                    PeerCommand::ApplyRemote(PeerSignal::Answer { sdp }) => pc
                        .accept_answer(&sdp)
                        .await
                        .map(|()| feed_peer(&shared, &id, gen, Input::RemoteApplied(id.clone()))),
                    PeerCommand::AddCandidate(c) => {
                        // A candidate the browser cannot use is not fatal: others may work.
                        if let Err(e) = pc.add_candidate(&c).await {
                            tracing::warn!("peer {id}: {e}");
                        }
                        Ok(())
                    }
                    PeerCommand::RestartIce => pc.create_restart_offer().await.map(|sdp| {
                        let offer = PeerSignal::Offer { sdp };
                        feed_peer(&shared, &id, gen, Input::LocalSignal(id.clone(), offer));
                    }),
                    _ => Ok(()),
                };
                if let Err(e) = result {
                    feed_peer(
                        &shared,
                        &id,
                        gen,
                        Input::PeerError(id.clone(), e.to_string()),
                    );
                }
            });
        }
    }
}

fn create_peer(shared: &Shared, id: PeerId, offerer: bool) {
    let (ice, relay_only, gen) = {
        let mut inner = shared.borrow_mut();
        inner.next_gen += 1;
        let mut ice = inner.ice_servers.clone();
        ice.extend(inner.server_ice.iter().cloned());
        (ice, inner.relay_only, inner.next_gen)
    };
    let (pc, events) = match PeerConnection::new(&ice, relay_only) {
        Ok(p) => p,
        Err(e) => {
            // Not registered yet: tell the machine directly.
            return feed(shared, Input::PeerError(id, e.to_string()));
        }
    };
    let pc = Rc::new(pc);
    let channel = offerer.then(|| pc.create_data_channel(CHANNEL));
    if shared.borrow().peers.contains_key(&id) {
        tracing::warn!("peer {id}: a new connection replaces the old one");
    }
    shared.borrow_mut().peers.insert(
        id.clone(),
        PeerHandle {
            gen,
            pc: Rc::clone(&pc),
            channel: None,
            route: Route::Unknown,
            rtt_ms: None,
            safety: None,
            connected_at: None,
        },
    );
    spawn_local(peer_events(Rc::clone(shared), id.clone(), gen, events));
    if let Some(ch) = channel {
        attach_channel(shared, &id, gen, ch);
        let shared = Rc::clone(shared);
        spawn_local(async move {
            match pc.create_offer().await {
                Ok(sdp) => feed_peer(
                    &shared,
                    &id,
                    gen,
                    Input::LocalSignal(id.clone(), PeerSignal::Offer { sdp }),
                ),
                Err(e) => feed_peer(
                    &shared,
                    &id,
                    gen,
                    Input::PeerError(id.clone(), e.to_string()),
                ),
            }
        });
    }
}

async fn peer_events(
    shared: Shared,
    id: PeerId,
    gen: u64,
    mut events: mpsc::UnboundedReceiver<PeerEvent>,
) {
    while let Some(ev) = events.next().await {
        match ev {
            PeerEvent::Candidate(c) => {
                feed_peer(&shared, &id, gen, Input::LocalSignal(id.clone(), c))
            }
            PeerEvent::GatheringDone => {}
            PeerEvent::DataChannel(ch) => {
                if ch.label() == CHANNEL {
                    attach_channel(&shared, &id, gen, ch);
                }
            }
            PeerEvent::State(state) => {
                let ice = match state {
                    RtcPeerConnectionState::Connected => IceState::Connected,
                    RtcPeerConnectionState::Disconnected => IceState::Disconnected,
                    RtcPeerConnectionState::Failed => IceState::Failed,
                    RtcPeerConnectionState::Closed => IceState::Closed,
                    _ => IceState::Checking,
                };
                feed_peer(&shared, &id, gen, Input::Ice(id.clone(), ice));
            }
        }
    }
}

fn attach_channel(shared: &Shared, id: &PeerId, gen: u64, mut ch: DataChannel) {
    let Some(incoming) = ch.take_incoming() else {
        return;
    };
    let ch = Rc::new(ch);
    {
        let mut inner = shared.borrow_mut();
        match inner.peers.get_mut(id) {
            Some(h) if h.gen == gen => {
                if h.channel.is_some() {
                    tracing::warn!("peer {id}: a second data channel replaces the first");
                }
                h.channel = Some(Rc::clone(&ch))
            }
            _ => return,
        }
    }
    spawn_local(run_channel(
        Rc::clone(shared),
        id.clone(),
        gen,
        ch,
        incoming,
    ));
}

/// One data channel: hello, then application messages until it closes.
async fn run_channel(
    shared: Shared,
    id: PeerId,
    gen: u64,
    ch: Rc<DataChannel>,
    mut incoming: mpsc::UnboundedReceiver<Message>,
) {
    if ch.opened().await.is_err() {
        return feed_peer(&shared, &id, gen, Input::ChannelClosed(id.clone()));
    }
    // The machine has our hello sent now (and again until the peer says it had it).
    feed_peer(&shared, &id, gen, Input::ChannelOpen(id.clone()));
    drop(ch); // the handle owns the channel; this task must not keep it open
              // The stream ends when the channel closes or its handle drops it.
    while let Some(msg) = incoming.next().await {
        match msg {
            Message::Binary(b) if b.first() == Some(&TAG_HELLO) => match parse_hello(&b[1..]) {
                Some((key, seen, ask)) => {
                    let hello = Input::Hello(id.clone(), key, seen, ask);
                    feed_peer(&shared, &id, gen, hello);
                }
                None => {
                    let malformed = Input::PeerError(id.clone(), "malformed hello".into());
                    return feed_peer(&shared, &id, gen, malformed);
                }
            },
            Message::Binary(mut b) if b.first() == Some(&TAG_FILES) => {
                let current = shared.borrow().peers.get(&id).map(|h| h.gen) == Some(gen);
                if current {
                    b.remove(0);
                    files::feed(&shared, crate::transfer::Input::Frame(id.clone(), b));
                }
            }
            Message::Binary(b) if b.first() == Some(&TAG_FILES_PACKED) => {
                let current = shared.borrow().peers.get(&id).map(|h| h.gen) == Some(gen);
                if current {
                    files::feed_packed(&shared, &id, &b[1..]);
                }
            }
            Message::Binary(b) if b.first() == Some(&TAG_BYTES) => {
                publish(
                    &shared,
                    Event::Message(id.clone(), Message::Binary(b[1..].to_vec())),
                );
                let data = js_sys::Uint8Array::from(&b[1..]);
                emit_message(&shared, &id, data.into());
            }
            Message::Binary(_) => tracing::warn!("peer {id}: unknown message tag"),
            Message::Text(t) => {
                publish(
                    &shared,
                    Event::Message(id.clone(), Message::Text(t.clone())),
                );
                emit_message(&shared, &id, JsValue::from_str(&t));
            }
        }
    }
    feed_peer(&shared, &id, gen, Input::ChannelClosed(id.clone()));
}

pub(crate) fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        let _ = js_sys::Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

fn opt_str(s: Option<&str>) -> JsValue {
    s.map(JsValue::from_str).unwrap_or(JsValue::NULL)
}

/// Calls every listener of `event` with `payload`, with no borrow held (a listener may call
/// back into the swarm).
fn emit(shared: &Shared, event: &str, payload: JsValue) {
    let callbacks: Vec<js_sys::Function> = shared
        .borrow()
        .listeners
        .iter()
        .filter(|l| l.event == event)
        .map(|l| l.callback.clone())
        .collect();
    for f in callbacks {
        if let Err(e) = f.call1(&JsValue::NULL, &payload) {
            tracing::warn!("a `{event}` listener threw: {}", describe(&e));
        }
    }
}

fn emit_error(shared: &Shared, message: &str) {
    emit(
        shared,
        "error",
        obj(&[("message", JsValue::from_str(message))]),
    );
}

fn publish(shared: &Shared, event: Event) {
    shared
        .borrow_mut()
        .subscribers
        .retain(|s| s.unbounded_send(event.clone()).is_ok());
}

fn emit_message(shared: &Shared, from: &PeerId, data: JsValue) {
    emit(
        shared,
        "message",
        obj(&[("from", JsValue::from_str(from.as_str())), ("data", data)]),
    );
}

fn on_event(shared: &Shared, e: SwarmEvent) {
    publish(shared, Event::Swarm(e.clone()));
    match e {
        SwarmEvent::Welcome(_) => {
            if let Some(tx) = shared.borrow_mut().joined.take() {
                let _ = tx.send(Ok(()));
            }
        }
        SwarmEvent::PeerJoined(id) => {
            emit(
                shared,
                "peer-joined",
                obj(&[("id", JsValue::from_str(id.as_str()))]),
            );
        }
        SwarmEvent::PeerLeft(id, reason) => {
            files::peer_down(shared, &id);
            emit(
                shared,
                "peer-left",
                obj(&[
                    ("id", JsValue::from_str(id.as_str())),
                    ("reason", JsValue::from_str(&reason)),
                ]),
            )
        }
        SwarmEvent::PeerState(id, state, reason) => {
            match state {
                PeerState::Connected => {
                    if let Some(h) = shared.borrow_mut().peers.get_mut(&id) {
                        h.connected_at.get_or_insert_with(performance_now);
                    }
                    let channel =
                        shared.borrow().peers.get(&id).and_then(|h| {
                            h.channel.clone().map(|ch| (ch, h.pc.max_message_size()))
                        });
                    let known = shared.borrow().files.has_sender(&id);
                    if let (Some((ch, max_message)), false) = (channel, known) {
                        files::peer_up(shared, &id, ch, max_message);
                    }
                }
                PeerState::Closed | PeerState::Failed => files::peer_down(shared, &id),
                _ => {}
            }
            if state == PeerState::Connected {
                let mut inner = shared.borrow_mut();
                if let Some(h) = inner.peers.get_mut(&id) {
                    if h.safety.is_none() {
                        h.safety =
                            h.pc.descriptions()
                                .and_then(|(l, r)| core::safety_number(&l, &r));
                    }
                }
            }
            emit(
                shared,
                "peer-state",
                obj(&[
                    ("id", JsValue::from_str(id.as_str())),
                    ("state", JsValue::from_str(state.as_str())),
                    ("reason", opt_str(reason.as_deref())),
                ]),
            );
        }
        SwarmEvent::SignalState(state) => emit(
            shared,
            "signal-state",
            obj(&[("state", JsValue::from_str(state.as_str()))]),
        ),
        SwarmEvent::Error(message) => emit_error(shared, &message),
    }
}

/// Reads route and RTT of every connected peer.
fn refresh_stats(shared: &Shared) {
    let pcs: Vec<(PeerId, u64, Rc<PeerConnection>)> = {
        let inner = shared.borrow();
        inner
            .machine
            .peers()
            .filter(|(_, s)| *s == PeerState::Connected)
            .filter_map(|(id, _)| {
                inner
                    .peers
                    .get(id)
                    .map(|h| (id.clone(), h.gen, Rc::clone(&h.pc)))
            })
            .collect()
    };
    for (id, gen, pc) in pcs {
        let weak = Rc::downgrade(shared);
        spawn_local(async move {
            let Ok(stats) = pc.stats().await else {
                return;
            };
            let (route, rtt) = core::route(&stats);
            if let Some(shared) = weak.upgrade() {
                if let Some(h) = shared.borrow_mut().peers.get_mut(&id) {
                    if h.gen == gen {
                        h.route = route;
                        h.rtt_ms = rtt;
                    }
                }
            }
        });
    }
}

/// 64 random bits from the browser's CSPRNG (for the peer key and jitter).
fn random_seed() -> Result<u64, WebError> {
    let crypto = web_sys::window()
        .ok_or(WebError::Closed("window"))?
        .crypto()
        .map_err(|e| WebError::browser("window.crypto", e))?;
    let mut bytes = [0u8; 8];
    crypto
        .get_random_values_with_u8_array(&mut bytes)
        .map_err(|e| WebError::browser("crypto.getRandomValues", e))?;
    Ok(u64::from_le_bytes(bytes))
}

/// The events of [`Swarm::on`] (typed by `SwarmEvents` in `types.d.ts`).
pub const EVENTS: [&str; 9] = [
    "peer-joined",
    "peer-left",
    "peer-state",
    "message",
    "signal-state",
    "error",
    "file-announced",
    "file-removed",
    "file-complete",
];

/// A live swarm: the peers of one room, connected directly over WebRTC.
#[wasm_bindgen]
pub struct Swarm {
    shared: Shared,
}

#[wasm_bindgen]
impl Swarm {
    /// Joins a room: `await Swarm.join({ signal, room, iceServers?, maxPeers?, uploadLimit?,
    /// iceTransportPolicy?, storage?, socket? })` (each in the README). Resolves once the
    /// signaling server welcomed us; peers connect in the background (see `on`).
    pub async fn join(
        #[wasm_bindgen(unchecked_param_type = "JoinOptions")] options: JsValue,
    ) -> Result<Swarm, JsError> {
        // `socket` (a WebSocket object, not data) is taken before the rest is deserialized.
        let socket = match js_sys::Reflect::get(&options, &JsValue::from_str("socket")) {
            Ok(v) if v.is_undefined() || v.is_null() => None,
            Ok(v) => Some(v.dyn_into::<web_sys::WebSocket>().map_err(|_| {
                JsError::new("Swarm.join options: socket: use a WebSocket opened to `signal`")
            })?),
            Err(_) => None,
        };
        let mut opts: JoinOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| JsError::new(&format!("Swarm.join options: {e}")))?;
        opts.socket = socket;
        Ok(Swarm::join_with(opts).await?)
    }

    /// This peer's id on the signaling server (changes after a signaling reconnect).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> Option<String> {
        self.shared.borrow().machine.id().map(|i| i.to_string())
    }

    /// The signaling connection's state: "connecting", "open", "reconnecting" or "closed".
    #[wasm_bindgen(getter, js_name = signalState)]
    pub fn signal_state(&self) -> String {
        self.shared.borrow().machine.signal_state().as_str().into()
    }

    /// The browser's view of each peer connection, for diagnosing one that does not connect:
    /// `[{ id, signaling, ice, gathering, connection, localDescription, remoteDescription,
    /// channel }]` (the `RTCPeerConnection` states, whether each description is set, and the
    /// data channel's `readyState` or `null` before it exists).
    #[wasm_bindgen(unchecked_return_type = "ConnectionInfo[]")]
    pub fn connections(&self) -> js_sys::Array {
        let inner = self.shared.borrow();
        inner
            .peers
            .iter()
            .map(|(id, h)| {
                let mut fields = vec![("id", JsValue::from_str(id.as_str()))];
                fields.extend(h.pc.diagnostics());
                fields.push((
                    "channel",
                    h.channel
                        .as_ref()
                        .map_or(JsValue::NULL, |c| JsValue::from_str(c.ready_state_name())),
                ));
                obj(&fields)
            })
            .collect()
    }

    /// Every known peer: `[{ id, state, route, rttMs, safetyNumber, connectedAt, received,
    /// sent }]` (`received`, `sent`: bytes of files from and to it over its current connection).
    #[wasm_bindgen(unchecked_return_type = "PeerInfo[]")]
    pub fn peers(&self) -> js_sys::Array {
        let inner = self.shared.borrow();
        inner
            .machine
            .peers()
            .map(|(id, state)| {
                let h = inner.peers.get(id);
                let traffic = inner.engine.traffic(id).unwrap_or((0, 0));
                obj(&[
                    ("id", JsValue::from_str(id.as_str())),
                    ("state", JsValue::from_str(state.as_str())),
                    (
                        "route",
                        JsValue::from_str(h.map_or(Route::Unknown, |h| h.route).as_str()),
                    ),
                    (
                        "rttMs",
                        h.and_then(|h| h.rtt_ms)
                            .map_or(JsValue::NULL, JsValue::from),
                    ),
                    ("safetyNumber", opt_str(h.and_then(|h| h.safety.as_deref()))),
                    (
                        "connectedAt",
                        h.and_then(|h| h.connected_at)
                            .filter(|_| state == PeerState::Connected)
                            .map_or(JsValue::NULL, JsValue::from),
                    ),
                    ("received", JsValue::from_f64(traffic.0 as f64)),
                    ("sent", JsValue::from_f64(traffic.1 as f64)),
                ])
            })
            .collect()
    }

    /// Calls `callback(detail)` on `event` ("peer-joined", "peer-left", "peer-state",
    /// "message", "signal-state", "error", "file-announced", "file-removed", "file-complete");
    /// returns a function that unsubscribes. (Typed in `types.d.ts`, by event.)
    #[wasm_bindgen(skip_typescript)]
    pub fn on(
        &self,
        event: String,
        callback: js_sys::Function,
    ) -> Result<js_sys::Function, JsError> {
        if !EVENTS.contains(&event.as_str()) {
            return Err(JsError::new(&format!(
                "unknown event `{event}`; one of {}",
                EVENTS.join(", ")
            )));
        }
        let token = {
            let mut inner = self.shared.borrow_mut();
            inner.next_token += 1;
            let token = inner.next_token;
            inner.listeners.push(Listener {
                token,
                event,
                callback,
            });
            token
        };
        let weak: Weak<RefCell<Inner>> = Rc::downgrade(&self.shared);
        // Owned by the JS function it becomes (freed by the JS garbage collector).
        let off = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.borrow_mut().listeners.retain(|l| l.token != token);
            }
        });
        Ok(off.into_js_value().unchecked_into())
    }

    /// Sends a `Uint8Array` or a string to one peer, waiting while its channel is full.
    pub async fn send(
        &self,
        peer: String,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] data: JsValue,
    ) -> Result<(), JsError> {
        let id = PeerId::new(peer).map_err(|e| JsError::new(&e.to_string()))?;
        Ok(send_to(&self.shared, &id, &data).await?)
    }

    /// Sends to every connected peer; resolves when all sends are queued.
    pub async fn broadcast(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array")] data: JsValue,
    ) -> Result<(), JsError> {
        let ids: Vec<PeerId> = self
            .shared
            .borrow()
            .machine
            .peers()
            .filter(|(_, s)| *s == PeerState::Connected)
            .map(|(id, _)| id.clone())
            .collect();
        let sends = ids.iter().map(|id| send_to(&self.shared, id, &data));
        for r in futures::future::join_all(sends).await {
            r?;
        }
        Ok(())
    }

    /// Most bytes a second this peer uploads to all peers together; `undefined`: no limit.
    #[wasm_bindgen(getter, js_name = uploadLimit)]
    pub fn upload_limit(&self) -> Option<f64> {
        self.shared
            .borrow()
            .engine
            .config()
            .upload_limit
            .map(|l| l as f64)
    }

    /// Changes the upload limit (bytes a second, at least 1; `null` or `undefined`: none). It
    /// takes effect at once, also for requests already waiting.
    #[wasm_bindgen(js_name = setUploadLimit)]
    pub fn set_upload_limit(&self, limit: Option<f64>) -> Result<(), JsError> {
        let limit = upload_limit(limit)?;
        {
            let mut inner = self.shared.borrow_mut();
            let now = inner.now();
            inner.engine.set_upload_limit(limit, now);
        }
        pump(&self.shared);
        Ok(())
    }

    /// Leaves the room: closes every connection and the signaling connection.
    pub fn leave(&self) {
        leave(&self.shared);
    }
}

impl Swarm {
    /// Joins with parsed options (the Rust entry point).
    pub async fn join_with_options(
        signal: &str,
        room: &str,
        ice_servers: Vec<IceServer>,
        max_peers: Option<usize>,
    ) -> Result<Swarm, WebError> {
        Self::join_relayed(signal, room, ice_servers, max_peers, false).await
    }

    /// Like [`Swarm::join_with_options`]; with `relay_only`, connections use TURN relays only.
    pub async fn join_relayed(
        signal: &str,
        room: &str,
        ice_servers: Vec<IceServer>,
        max_peers: Option<usize>,
        relay_only: bool,
    ) -> Result<Swarm, WebError> {
        let servers = ice_servers
            .into_iter()
            .map(|s| JsIceServer {
                urls: Urls::Many(s.urls),
                username: s.username,
                credential: s.credential,
            })
            .collect();
        Swarm::join_with(JoinOptions {
            signal: signal.into(),
            room: room.into(),
            ice_servers: servers,
            max_peers,
            ice_transport_policy: relay_only.then(|| "relay".to_string()),
            storage: None,
            upload_limit: None,
            socket: None,
        })
        .await
    }

    /// Joins with every option (the Rust entry point of `Swarm.join`'s object).
    pub async fn join_with_storage(
        signal: &str,
        room: &str,
        storage: &str,
    ) -> Result<Swarm, WebError> {
        Swarm::join_with(JoinOptions {
            signal: signal.into(),
            room: room.into(),
            ice_servers: Vec::new(),
            max_peers: None,
            ice_transport_policy: None,
            storage: Some(storage.into()),
            upload_limit: None,
            socket: None,
        })
        .await
    }

    async fn join_with(opts: JoinOptions) -> Result<Swarm, WebError> {
        let room = RoomName::new(opts.room).map_err(|e| WebError::Signal(e.to_string()))?;
        let storage = opts.storage.unwrap_or_else(|| "default".into());
        let upload_limit = upload_limit(opts.upload_limit)?;
        if RoomName::new(storage.clone()).is_err() {
            return Err(WebError::Signal(
                "storage: use 1-64 characters of A-Z a-z 0-9 _ -".into(),
            ));
        }
        let relay_only = match opts.ice_transport_policy.as_deref() {
            None | Some("all") => false,
            Some("relay") => true,
            Some(other) => {
                return Err(WebError::Signal(format!(
                    "iceTransportPolicy `{other}`: use \"all\" or \"relay\""
                )))
            }
        };
        let mut config = Config::new(room, random_seed()?);
        if let Some(m) = opts.max_peers {
            if m == 0 {
                return Err(WebError::Signal("maxPeers must be at least 1".into()));
            }
            config.max_peers = m;
        }
        let ice_servers = opts
            .ice_servers
            .into_iter()
            .map(|s| IceServer {
                urls: match s.urls {
                    Urls::One(u) => vec![u],
                    Urls::Many(v) => v,
                },
                username: s.username,
                credential: s.credential,
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        let engine_seed = random_seed()?;
        let shared: Shared = Rc::new(RefCell::new(Inner {
            machine: core::Swarm::new(config),
            engine: crate::transfer::Engine::new(crate::transfer::Config {
                seed: engine_seed,
                upload_limit,
                ..Default::default()
            }),
            files: files::Files::default(),
            subscribers: Vec::new(),
            epoch: performance_now(),
            url: opts.signal,
            early_socket: opts.socket,
            ice_servers,
            server_ice: Vec::new(),
            relay_only,
            signal: None,
            peers: HashMap::new(),
            next_gen: 0,
            listeners: Vec::new(),
            next_token: 0,
            timer: None,
            stats: None,
            joined: Some(tx),
        }));
        let weak = Rc::downgrade(&shared);
        shared.borrow_mut().stats = Some(Interval::new(STATS_EVERY_MS, move || {
            if let Some(shared) = weak.upgrade() {
                refresh_stats(&shared);
            }
        }));
        // The first signaling failure fails the join (later ones are retried in the background).
        let first_error = Rc::new(RefCell::new(None::<String>));
        pump(&shared);
        let welcome = async {
            rx.await
                .unwrap_or_else(|_| Err("the swarm was dropped".into()))
        };
        let failed = {
            let shared = Rc::clone(&shared);
            let first_error = Rc::clone(&first_error);
            async move {
                loop {
                    gloo_timers::future::TimeoutFuture::new(50).await;
                    let state = shared.borrow().machine.signal_state();
                    if state == core::SignalState::Reconnecting {
                        *first_error.borrow_mut() =
                            Some("could not reach the signaling server".into());
                        return;
                    }
                }
            }
        };
        futures::pin_mut!(welcome, failed);
        // The store opens (and stored files resume, served from the start) while signaling
        // connects, so neither waits for the other.
        let (joined, ()) = futures::join!(
            futures::future::select(welcome, failed),
            files::open_store(&shared, &storage)
        );
        match joined {
            futures::future::Either::Left((Ok(()), _)) => Ok(Swarm { shared }),
            futures::future::Either::Left((Err(e), _)) => {
                leave(&shared);
                Err(WebError::Signal(e))
            }
            futures::future::Either::Right(_) => {
                leave(&shared);
                let e = first_error.borrow_mut().take().unwrap_or_default();
                Err(WebError::Signal(e))
            }
        }
    }

    /// Sends bytes to one peer, waiting while its channel is full.
    pub async fn send_bytes(&self, id: &PeerId, data: &[u8]) -> Result<(), WebError> {
        send_to(&self.shared, id, &js_sys::Uint8Array::from(data).into()).await
    }

    /// Sends text to one peer.
    pub async fn send_text(&self, id: &PeerId, text: &str) -> Result<(), WebError> {
        send_to(&self.shared, id, &JsValue::from_str(text)).await
    }

    /// Every known peer and its state.
    pub fn peer_states(&self) -> Vec<(PeerId, PeerState)> {
        let inner = self.shared.borrow();
        inner
            .machine
            .peers()
            .map(|(id, s)| (id.clone(), s))
            .collect()
    }

    /// Test hook: closes the data channel to `id` (its connection stays), as a browser does that
    /// gives up on it.
    #[doc(hidden)]
    pub fn close_channel_for_testing(&self, id: &PeerId) {
        if let Some(ch) = self
            .shared
            .borrow()
            .peers
            .get(id)
            .and_then(|h| h.channel.clone())
        {
            ch.close();
        }
    }

    /// The safety number of a connected peer.
    pub fn safety_number(&self, id: &PeerId) -> Option<String> {
        self.shared.borrow().peers.get(id)?.safety.clone()
    }

    /// The route and round-trip time (ms) of a peer, as last read from `getStats`.
    pub fn route(&self, id: &PeerId) -> Option<(Route, Option<f64>)> {
        let inner = self.shared.borrow();
        inner.peers.get(id).map(|h| (h.route, h.rtt_ms))
    }

    /// A stream of everything that happens from now on. Unbounded (events are small and the
    /// swarm must not wait on a listener); a stream dropped stops its queue, so take events as
    /// they come or drop the stream.
    pub fn events(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded();
        self.shared.borrow_mut().subscribers.push(tx);
        rx
    }
}

async fn send_to(shared: &Shared, id: &PeerId, data: &JsValue) -> Result<(), WebError> {
    let (ch, max) = {
        let inner = shared.borrow();
        if inner.machine.peer_state(id) != Some(PeerState::Connected) {
            return Err(WebError::Signal(format!("peer {id} is not connected")));
        }
        let h = inner.peers.get(id).ok_or(WebError::Closed("peer"))?;
        let ch = h.channel.clone().ok_or(WebError::Closed("data channel"))?;
        (ch, h.pc.max_message_size())
    };
    if let Some(text) = data.as_string() {
        if text.len() > max {
            return Err(WebError::TooLarge {
                len: text.len(),
                max,
            });
        }
        return ch.send_text(&text).await;
    }
    let bytes = data
        .dyn_ref::<js_sys::Uint8Array>()
        .ok_or_else(|| WebError::Signal("send takes a Uint8Array or a string".into()))?;
    let len = bytes.length() as usize;
    if len + 1 > max {
        return Err(WebError::TooLarge { len: len + 1, max });
    }
    let mut frame = vec![0u8; len + 1];
    frame[0] = TAG_BYTES;
    bytes.copy_to(&mut frame[1..]);
    ch.send(&frame).await
}

fn leave(shared: &Shared) {
    feed(shared, Input::Leave);
    let mut inner = shared.borrow_mut();
    // Break every cycle through timers and tasks: the swarm can now be freed.
    inner.timer = None;
    inner.stats = None;
    inner.peers.clear();
    inner.signal = None;
    inner.files = files::Files::default();
}

impl Drop for Swarm {
    fn drop(&mut self) {
        leave(&self.shared);
    }
}

/// Live browser objects of this page, for leak checks: `{ peers, channels }`.
#[wasm_bindgen(js_name = liveObjects, unchecked_return_type = "{ peers: number, channels: number }")]
pub fn live_objects() -> JsValue {
    let (peers, channels) = super::peer::live_objects();
    obj(&[
        ("peers", JsValue::from(peers as u32)),
        ("channels", JsValue::from(channels as u32)),
    ])
}
