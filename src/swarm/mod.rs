//! The sans-IO swarm core: membership, who offers, timeouts and budgets.
//!
//! Nothing here does I/O or reads a clock. The browser layer feeds [`Input`]s with `now` (a
//! [`Time`] since the swarm started) to [`Swarm::handle`], calls [`Swarm::handle_timeout`] at
//! [`Swarm::poll_timeout`], and drains [`Output`]s with [`Swarm::poll_output`]. So every rule —
//! who offers, the connection budget, deadlines, ICE restarts, signaling backoff — is tested
//! natively and deterministically with a fake clock.

mod core;
mod rng;
mod safety;
#[cfg(test)]
mod tests;

pub use self::core::Swarm;
pub use rng::Rng;
pub use safety::{fingerprints, route, safety_number, Route, StatsEntry};

use crate::signal::{ClientMessage, PeerId, PeerSignal, ServerMessage};
use std::time::Duration;

/// Time since the swarm started, supplied by the driver.
pub type Time = Duration;

/// A peer's long-lived identity, random per swarm instance, exchanged in the data channel's
/// hello. It recognises a peer whose signaling id changed (after a signaling reconnect).
pub type PeerKey = u64;

/// The body of a hello on the data channel (after its tag): our key, big-endian, then 0 if we
/// have not had the peer's hello, 1 if we have, 2 if we have but have not had the peer's word
/// that it had ours (`ask`: answer with yours).
pub fn hello_body(key: PeerKey, seen: bool, ask: bool) -> [u8; 9] {
    let mut b = [0; 9];
    b[..8].copy_from_slice(&key.to_be_bytes());
    b[8] = match (seen, ask) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 2,
    };
    b
}

/// A hello's key and its `seen` and `ask` flags (see [`hello_body`]); `None` if the body is
/// malformed. A body of the key alone (the first version, whose senders never wait for the
/// flag) counts as seen. (Flag 2 is newer than 0 and 1: a page older than it fails such a
/// hello, sent only after a hello was lost, as malformed.)
pub fn parse_hello(body: &[u8]) -> Option<(PeerKey, bool, bool)> {
    let key = PeerKey::from_be_bytes(body.get(..8)?.try_into().ok()?);
    match body.get(8..)? {
        [] => Some((key, true, false)),
        [0] => Some((key, false, false)),
        [1] => Some((key, true, false)),
        [2] => Some((key, true, true)),
        _ => None,
    }
}

/// Which side of a pair of peers sends the WebRTC offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This peer creates the offer (and any ICE-restart offer).
    Offerer,
    /// This peer waits for the remote's offer and answers it.
    Answerer,
}

impl Role {
    /// The glare-free rule: of two peers, the one with the smaller id offers. Both sides compute
    /// the same answer from the same two ids, so two offers never cross.
    pub fn between(me: &PeerId, them: &PeerId) -> Role {
        if me < them {
            Role::Offerer
        } else {
            Role::Answerer
        }
    }
}

/// The settings of a swarm.
#[derive(Debug, Clone)]
pub struct Config {
    /// The room to join.
    pub room: crate::signal::RoomName,
    /// Most peer connections at once; in a larger room each peer picks which to connect.
    pub max_peers: usize,
    /// A connection that is not open this long after it started fails ("never answered").
    pub connect_timeout: Duration,
    /// ICE `disconnected` this long before we try one ICE restart.
    pub disconnect_grace: Duration,
    /// An ICE restart that does not reconnect within this fails the peer.
    pub restart_timeout: Duration,
    /// Our hello is sent again after this while the peer has not said it had it, doubling up
    /// to 2 s: a message sent on a channel that has just opened can be lost (the browser
    /// drops what reaches the remote end before its channel is ready), which left a peer in
    /// `connecting` until the connection deadline.
    pub hello_resend: Duration,
    /// First signaling reconnect delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest signaling reconnect delay.
    pub backoff_max: Duration,
    /// A failed peer still in the room is tried again after this, doubling per failure.
    pub retry_base: Duration,
    /// Longest wait before trying a failed peer again.
    pub retry_max: Duration,
    /// Remote candidates held while the remote description is being applied.
    pub max_pending_candidates: usize,
    /// Seeds the jitter and this peer's [`PeerKey`].
    pub seed: u64,
}

impl Config {
    /// Defaults for `room`, seeded with `seed`.
    pub fn new(room: crate::signal::RoomName, seed: u64) -> Self {
        Config {
            room,
            max_peers: 20,
            connect_timeout: Duration::from_secs(15),
            disconnect_grace: Duration::from_secs(4),
            restart_timeout: Duration::from_secs(10),
            hello_resend: Duration::from_millis(250),
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            retry_base: Duration::from_secs(3),
            retry_max: Duration::from_secs(60),
            max_pending_candidates: 100,
            seed,
        }
    }
}

/// Where a peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// In the room, not (yet) connected.
    New,
    /// Handshake or ICE under way.
    Connecting,
    /// The data channel is open, the peer said hello and it has had ours.
    Connected,
    /// ICE dropped; waiting out the grace period or an ICE restart.
    Reconnecting,
    /// Gone: left, or its connection closed.
    Closed,
    /// Gone with an error (see the reason).
    Failed,
}

impl PeerState {
    /// The state in the JavaScript API's words.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::New => "new",
            PeerState::Connecting => "connecting",
            PeerState::Connected => "connected",
            PeerState::Reconnecting => "reconnecting",
            PeerState::Closed => "closed",
            PeerState::Failed => "failed",
        }
    }
}

/// The signaling connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalState {
    /// Opening the WebSocket or waiting for `welcome`.
    Connecting,
    /// Joined.
    Open,
    /// Dropped; a reconnect is scheduled.
    Reconnecting,
    /// Left for good.
    Closed,
}

impl SignalState {
    /// The state in the JavaScript API's words.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalState::Connecting => "connecting",
            SignalState::Open => "open",
            SignalState::Reconnecting => "reconnecting",
            SignalState::Closed => "closed",
        }
    }
}

/// `RTCPeerConnection.iceConnectionState`, as far as the swarm cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// Checking or new.
    Checking,
    /// Connected or completed.
    Connected,
    /// Lost connectivity, may come back.
    Disconnected,
    /// Gave up.
    Failed,
    /// Closed.
    Closed,
}

/// Something the driver tells the swarm.
#[derive(Debug)]
pub enum Input {
    /// The WebSocket to the signaling server opened.
    SignalOpened,
    /// The WebSocket closed or failed to open.
    SignalClosed,
    /// A frame from the signaling server.
    Server(ServerMessage),
    /// The browser produced a handshake step for `peer` (offer, answer, candidate).
    LocalSignal(PeerId, PeerSignal),
    /// The remote description of `peer` is set; held candidates may be added.
    RemoteApplied(PeerId),
    /// `peer`'s ICE state changed.
    Ice(PeerId, IceState),
    /// `peer`'s data channel opened.
    ChannelOpen(PeerId),
    /// `peer` said hello on the data channel: its key, whether it has had our hello, and
    /// whether it asks for ours (see [`hello_body`]).
    Hello(PeerId, PeerKey, bool, bool),
    /// `peer`'s data channel closed.
    ChannelClosed(PeerId),
    /// The browser rejected something of `peer`'s (bad SDP, a candidate it cannot add).
    PeerError(PeerId, String),
    /// The user leaves the swarm.
    Leave,
}

/// What the driver must do to a peer's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCommand {
    /// Create the RTCPeerConnection; as offerer, open the data channel and send an offer.
    Create {
        /// Whether we offer.
        offerer: bool,
    },
    /// Set the remote offer (then answer it) or answer.
    ApplyRemote(PeerSignal),
    /// Add a remote ICE candidate.
    AddCandidate(PeerSignal),
    /// Create an ICE-restart offer.
    RestartIce,
    /// Send our hello (our key) on the data channel (see [`hello_body`]).
    SendHello {
        /// Whether we have had the peer's hello.
        seen: bool,
        /// Whether we ask for the peer's: we have not had its word that it had ours.
        ask: bool,
    },
    /// Close and forget the connection.
    Close,
}

/// Something that happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmEvent {
    /// The server gave us this id (again, after a reconnect).
    Welcome(PeerId),
    /// A peer entered the room.
    PeerJoined(PeerId),
    /// A peer is gone, with the reason.
    PeerLeft(PeerId, String),
    /// A peer's state changed; the reason for closed/failed.
    PeerState(PeerId, PeerState, Option<String>),
    /// The signaling connection's state changed.
    SignalState(SignalState),
    /// Something went wrong that the application may show.
    Error(String),
}

/// Something the swarm asks of the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open the WebSocket to the signaling server (first time or reconnect).
    OpenSignal,
    /// Close the WebSocket.
    CloseSignal,
    /// Send a frame to the signaling server.
    SendSignal(ClientMessage),
    /// Act on a peer's connection.
    Peer(PeerId, PeerCommand),
    /// Tell the application.
    Event(SwarmEvent),
}
