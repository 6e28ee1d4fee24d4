//! The swarm state machine.

use super::rng::{fnv1a, Rng};
use super::{
    Config, IceState, Input, Output, PeerCommand, PeerKey, PeerState, Role, SignalState,
    SwarmEvent, Time,
};
use crate::signal::{ClientMessage, PeerId, PeerSignal, ServerMessage, PROTOCOL_VERSION};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// One peer as the swarm knows it.
#[derive(Debug)]
struct Peer {
    /// Where signaling reaches it now; `None` once the server says it left (its data channel
    /// may still be open).
    signal_id: Option<PeerId>,
    state: PeerState,
    /// Who offers on this connection, fixed when it is created.
    role: Option<Role>,
    /// Whether the driver created an RTCPeerConnection.
    created: bool,
    /// Whether the remote description is set; candidates wait until it is.
    remote_set: bool,
    /// Whether we wait for the answer to our offer.
    awaiting_answer: bool,
    pending: Vec<PeerSignal>,
    /// Fail (or act) at this time.
    deadline: Option<Time>,
    /// ICE restarts tried since the last time it was connected.
    restarts: u8,
    key: Option<PeerKey>,
    /// It declined a connection (at its budget): not asked again while it is in the room.
    declined: bool,
    /// We invited it to offer.
    invited: bool,
    /// We declined its offer: the candidates that trail it are expected, and dropped.
    refused: bool,
    /// Failures since it was last connected (for the retry backoff).
    failures: u32,
    /// The hello handshake on the current connection.
    hello: HelloState,
}

/// Both sides send a hello when their data channel opens and again, with `seen` set, once they
/// have had the other's; a side is connected once it has had the peer's hello and the peer has
/// had its own. Until then, ours goes out again (see [`Config::hello_resend`]).
#[derive(Debug, Default)]
struct HelloState {
    /// We have had the peer's hello.
    got: bool,
    /// The peer has had ours.
    confirmed: bool,
    /// We have told the peer we had its hello.
    told: bool,
    /// When ours goes out again, and the wait after that.
    resend: Option<(Time, Duration)>,
}

/// Our hello on a twin connection: we have had the peer's, and ask it to say it had ours.
const TWIN_HELLO: PeerCommand = PeerCommand::SendHello {
    seen: true,
    ask: true,
};

/// A connection to a peer we turned out to be connected to already (it was met again under a
/// new signaling id, see `Swarm::on_hello`). It is no peer of the application's any more, but
/// it stays open until the peer has had our hello on it, so that the peer finds the twin too:
/// closed sooner (with our hello lost on the way), it would leave the peer holding a
/// connection attempt to a stranger it never learns is us, while we hold its new signaling id.
#[derive(Debug)]
struct Twin {
    /// The id the connection was made under.
    id: PeerId,
    /// When our hello goes out again, and the wait after that.
    resend: (Time, Duration),
    /// Closed at this time, had or not.
    deadline: Time,
}

impl Peer {
    fn new(signal_id: PeerId) -> Self {
        Peer {
            signal_id: Some(signal_id),
            state: PeerState::New,
            role: None,
            created: false,
            remote_set: false,
            awaiting_answer: false,
            pending: Vec::new(),
            deadline: None,
            restarts: 0,
            key: None,
            declined: false,
            invited: false,
            refused: false,
            failures: 0,
            hello: HelloState::default(),
        }
    }

    /// Counts against the connection budget.
    fn active(&self) -> bool {
        matches!(
            self.state,
            PeerState::Connecting | PeerState::Connected | PeerState::Reconnecting
        )
    }
}

/// The swarm: membership, connection decisions and deadlines. See the module docs.
#[derive(Debug)]
pub struct Swarm {
    config: Config,
    rng: Rng,
    key: PeerKey,
    /// Our id on the signaling server, while joined.
    my_id: Option<PeerId>,
    signal: SignalState,
    /// Reconnect attempts since the last `welcome`.
    attempt: u32,
    reconnect_at: Option<Time>,
    /// Peers by their public id: the signaling id they were first seen with (stable for the
    /// application even when their signaling id changes).
    peers: BTreeMap<PeerId, Peer>,
    /// Connections found to be duplicates of live ones, until the peer has had our hello on
    /// them (see [`Twin`]). (A few at most: a `Vec` costs the wasm less than another map.)
    twins: Vec<Twin>,
    out: VecDeque<Output>,
    left: bool,
}

impl Swarm {
    /// A swarm that will join `config.room`; its first output asks to open signaling.
    pub fn new(config: Config) -> Self {
        let mut rng = Rng::new(config.seed);
        let key = rng.next_u64();
        let mut s = Swarm {
            config,
            rng,
            key,
            my_id: None,
            signal: SignalState::Connecting,
            attempt: 0,
            reconnect_at: None,
            peers: BTreeMap::new(),
            twins: Vec::new(),
            out: VecDeque::new(),
            left: false,
        };
        s.out.push_back(Output::OpenSignal);
        s
    }

    /// This peer's key, sent in the data channel's hello.
    pub fn key(&self) -> PeerKey {
        self.key
    }

    /// Our signaling id, once joined.
    pub fn id(&self) -> Option<&PeerId> {
        self.my_id.as_ref()
    }

    /// The signaling connection's state.
    pub fn signal_state(&self) -> SignalState {
        self.signal
    }

    /// Every known peer and its state, by public id.
    pub fn peers(&self) -> impl Iterator<Item = (&PeerId, PeerState)> {
        self.peers.iter().map(|(id, p)| (id, p.state))
    }

    /// The state of one peer.
    pub fn peer_state(&self, id: &PeerId) -> Option<PeerState> {
        self.peers.get(id).map(|p| p.state)
    }

    /// The signaling id a peer is reached at now (tests drive a fake server with it).
    #[cfg(test)]
    pub(crate) fn signal_id_of(&self, id: &PeerId) -> Option<&PeerId> {
        self.peers.get(id)?.signal_id.as_ref()
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Swarm::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.peers
            .values()
            .flat_map(|p| [p.deadline, p.hello.resend.map(|(t, _)| t)])
            .flatten()
            .chain(self.twins.iter().map(|t| t.resend.0.min(t.deadline)))
            .chain(self.reconnect_at)
            .min()
    }

    fn event(&mut self, e: SwarmEvent) {
        self.out.push_back(Output::Event(e));
    }

    fn send(&mut self, msg: ClientMessage) {
        if self.signal == SignalState::Open {
            self.out.push_back(Output::SendSignal(msg));
        }
    }

    fn signal_to(&mut self, id: &PeerId, signal: &PeerSignal) {
        let Some(to) = self.peers.get(id).and_then(|p| p.signal_id.clone()) else {
            return;
        };
        self.send(ClientMessage::Signal {
            to,
            data: signal.to_raw(),
        });
    }

    /// The public id of the peer signaling as `signal_id`.
    fn by_signal_id(&self, signal_id: &PeerId) -> Option<PeerId> {
        if self
            .peers
            .get(signal_id)
            .is_some_and(|p| p.signal_id.as_ref() == Some(signal_id))
        {
            return Some(signal_id.clone());
        }
        self.peers
            .iter()
            .find(|(_, p)| p.signal_id.as_ref() == Some(signal_id))
            .map(|(id, _)| id.clone())
    }

    fn set_state(&mut self, id: &PeerId, state: PeerState, reason: Option<String>) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        if p.state != state {
            p.state = state;
            self.event(SwarmEvent::PeerState(id.clone(), state, reason));
        }
    }

    /// Removes a peer for good: closes its connection and tells the application.
    fn drop_peer(&mut self, id: &PeerId, state: PeerState, reason: &str) {
        let Some(p) = self.peers.get(id) else {
            return;
        };
        let created = p.created;
        self.set_state(id, state, Some(reason.to_string()));
        if created {
            self.out
                .push_back(Output::Peer(id.clone(), PeerCommand::Close));
        }
        self.peers.remove(id);
        self.event(SwarmEvent::PeerLeft(id.clone(), reason.to_string()));
    }

    /// Marks a peer failed (bad input, timeout): its connection is closed, it stays listed as
    /// failed while it is in the room, and the rest of the swarm carries on.
    fn fail(&mut self, id: &PeerId, reason: String, now: Time) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        // Not reachable through signaling (it left the room, or our signaling went down since
        // it connected): there is nothing to try again with, and a peer still in the room is
        // listed afresh by the next welcome.
        if p.signal_id.is_none() {
            self.drop_peer(id, PeerState::Failed, &reason);
            self.rebalance_at(now);
            return;
        }
        let created = p.created;
        p.created = false;
        p.pending.clear();
        p.awaiting_answer = false;
        p.remote_set = false;
        // While it is in the room, try again later (a failure may be passing).
        p.failures = p.failures.saturating_add(1);
        let backoff = self
            .config
            .retry_base
            .saturating_mul(1u32 << (p.failures - 1).min(16))
            .min(self.config.retry_max);
        p.deadline = Some(now + backoff);
        if created {
            self.out
                .push_back(Output::Peer(id.clone(), PeerCommand::Close));
        }
        self.set_state(id, PeerState::Failed, Some(reason));
        self.rebalance_at(now);
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, input: Input, now: Time) {
        if self.left {
            return;
        }
        match input {
            Input::SignalOpened => {
                self.reconnect_at = None;
                // `send` waits for Open; the join is the one frame sent before it.
                self.out.push_back(Output::SendSignal(ClientMessage::Join {
                    room: self.config.room.clone(),
                    v: PROTOCOL_VERSION,
                }));
            }
            Input::SignalClosed => self.on_signal_closed(now),
            Input::Server(msg) => self.on_server(msg, now),
            Input::LocalSignal(id, signal) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    if matches!(signal, PeerSignal::Offer { .. }) {
                        p.awaiting_answer = true;
                    }
                    self.signal_to(&id, &signal);
                }
            }
            Input::RemoteApplied(id) => {
                let Some(p) = self.peers.get_mut(&id) else {
                    return;
                };
                p.remote_set = true;
                for c in std::mem::take(&mut p.pending) {
                    self.out
                        .push_back(Output::Peer(id.clone(), PeerCommand::AddCandidate(c)));
                }
            }
            Input::Ice(id, ice) => self.on_ice(&id, ice, now),
            Input::ChannelOpen(id) => {
                // Connected once hellos went both ways (so a duplicate is caught first).
                if let Some(p) = self.peers.get_mut(&id) {
                    p.deadline = Some(now + self.config.connect_timeout);
                    p.hello.resend = (p.state == PeerState::Connecting)
                        .then_some((now, self.config.hello_resend));
                    self.send_hello(&id, true, now);
                }
            }
            Input::Hello(id, key, seen, ask) => self.on_hello(&id, key, seen, ask, now),
            Input::ChannelClosed(id) => {
                if self.close_twin(&id) {
                    return;
                }
                let Some(p) = self.peers.get(&id) else {
                    return;
                };
                // Still in the room (the server has not said it left): the connection failed,
                // at either end, and is tried again later — forgotten, the two of us would
                // stay unconnected, since the server lists a member only once. Gone from the
                // room: gone.
                if p.signal_id.is_some() {
                    self.fail(&id, "connection closed".into(), now);
                } else {
                    self.drop_peer(&id, PeerState::Closed, "connection closed");
                    self.rebalance_at(now);
                }
            }
            Input::PeerError(id, reason) => {
                if !self.close_twin(&id) {
                    self.fail(&id, reason, now);
                }
            }
            Input::Leave => {
                self.send(ClientMessage::Leave);
                self.out.push_back(Output::CloseSignal);
                let ids: Vec<PeerId> = self.peers.keys().cloned().collect();
                for id in ids {
                    self.drop_peer(&id, PeerState::Closed, "we left");
                }
                for t in std::mem::take(&mut self.twins) {
                    self.out.push_back(Output::Peer(t.id, PeerCommand::Close));
                }
                self.signal = SignalState::Closed;
                self.event(SwarmEvent::SignalState(SignalState::Closed));
                self.reconnect_at = None;
                self.left = true;
            }
        }
    }

    fn on_signal_closed(&mut self, now: Time) {
        if self.signal == SignalState::Closed {
            return;
        }
        self.my_id = None;
        self.attempt = self.attempt.saturating_add(1);
        // Full jitter over an exponentially growing window.
        let window = self
            .config
            .backoff_base
            .saturating_mul(1u32 << self.attempt.min(16).saturating_sub(1))
            .min(self.config.backoff_max);
        let delay = window.mul_f64(0.5 + 0.5 * self.rng.unit());
        self.reconnect_at = Some(now + delay);
        if self.signal != SignalState::Reconnecting {
            self.signal = SignalState::Reconnecting;
            self.event(SwarmEvent::SignalState(SignalState::Reconnecting));
        }
        // Peers we never connected to are only reachable through signaling: forget them; the
        // next welcome lists whoever is still there. Open connections carry on.
        let unconnected: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == PeerState::New || p.state == PeerState::Failed)
            .map(|(id, _)| id.clone())
            .collect();
        for id in unconnected {
            self.drop_peer(&id, PeerState::Closed, "signaling lost");
        }
        for p in self.peers.values_mut() {
            p.signal_id = None;
        }
    }

    fn on_server(&mut self, msg: ServerMessage, now: Time) {
        match msg {
            ServerMessage::Welcome { id, peers, .. } => {
                self.my_id = Some(id.clone());
                self.attempt = 0;
                self.signal = SignalState::Open;
                self.event(SwarmEvent::SignalState(SignalState::Open));
                self.event(SwarmEvent::Welcome(id));
                for p in peers {
                    self.on_member(p);
                }
                self.rebalance_at(now);
            }
            ServerMessage::PeerJoined { id } => {
                self.on_member(id);
                self.rebalance_at(now);
            }
            ServerMessage::PeerLeft { id: signal_id } => {
                let Some(id) = self.by_signal_id(&signal_id) else {
                    return;
                };
                let p = &self.peers[&id];
                if matches!(p.state, PeerState::Connected | PeerState::Reconnecting) {
                    // Its data channel may outlive its signaling connection.
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.signal_id = None;
                    }
                } else {
                    self.drop_peer(&id, PeerState::Closed, "left the room");
                    self.rebalance_at(now);
                }
            }
            ServerMessage::Signal { from, data } => self.on_remote_signal(from, data.get(), now),
            ServerMessage::Error { code, message } => {
                self.event(SwarmEvent::Error(format!(
                    "signaling server: {message} ({code:?})"
                )));
            }
        }
    }

    /// A peer is in the room under `signal_id`.
    fn on_member(&mut self, signal_id: PeerId) {
        if Some(&signal_id) == self.my_id.as_ref() || self.by_signal_id(&signal_id).is_some() {
            return;
        }
        // (A connection under this id that was a twin is done with: the driver keeps one
        // connection per id.)
        self.close_twin(&signal_id);
        self.peers
            .insert(signal_id.clone(), Peer::new(signal_id.clone()));
        self.event(SwarmEvent::PeerJoined(signal_id));
    }

    /// The symmetric pair score: both peers of a pair compute the same number.
    fn pair_score(a: &PeerId, b: &PeerId) -> u64 {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        fnv1a(&[lo.as_str().as_bytes(), hi.as_str().as_bytes()])
    }

    /// The peers this one wants connections with: the best `max_peers` by pair score among
    /// those reachable now.
    fn wanted(&self) -> Vec<PeerId> {
        let Some(me) = &self.my_id else {
            return Vec::new();
        };
        let mut live: Vec<(u64, &PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state != PeerState::Failed && !p.declined)
            .filter_map(|(id, p)| {
                // Connected peers keep their place whatever their score.
                let score = if p.active() {
                    0
                } else {
                    Self::pair_score(me, p.signal_id.as_ref()?)
                };
                Some((score, id))
            })
            .collect();
        live.sort();
        live.into_iter()
            .take(self.config.max_peers)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Starts connections to wanted peers within the budget: offers where we offer, invitations
    /// where the other side offers.
    fn rebalance_at(&mut self, now: Time) {
        let Some(me) = self.my_id.clone() else {
            return;
        };
        let mut active = self.peers.values().filter(|p| p.active()).count();
        let mut invite = Vec::new();
        for id in self.wanted() {
            if active >= self.config.max_peers {
                break;
            }
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            let Some(sid) = p.signal_id.clone() else {
                continue;
            };
            if p.state != PeerState::New {
                continue;
            }
            if Role::between(&me, &sid) == Role::Answerer {
                if !p.invited {
                    p.invited = true;
                    // An invitation lost on the way, or one the peer ignored (it had not seen
                    // our old connection close yet), fails at the deadline like an offer.
                    p.deadline = Some(now + self.config.connect_timeout);
                    invite.push(id);
                }
                continue;
            }
            active += 1;
            self.start_offer(&id, now);
        }
        for id in invite {
            self.signal_to(&id, &PeerSignal::Invite);
        }
    }

    fn start_offer(&mut self, id: &PeerId, now: Time) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        p.role = Some(Role::Offerer);
        p.created = true;
        p.hello = HelloState::default();
        p.deadline = Some(now + self.config.connect_timeout);
        self.out.push_back(Output::Peer(
            id.clone(),
            PeerCommand::Create { offerer: true },
        ));
        self.set_state(id, PeerState::Connecting, None);
    }

    fn decline(&mut self, id: &PeerId) {
        if let Some(p) = self.peers.get_mut(id) {
            p.refused = true;
            // Nor do we wait for an offer we invited (see `rebalance_at`); once we have room
            // again, we invite it anew (it may have taken our `bye` as final).
            if p.state == PeerState::New {
                p.deadline = None;
                p.invited = false;
            }
        }
        self.signal_to(
            id,
            &PeerSignal::Bye {
                reason: "at its connection limit".into(),
            },
        );
    }

    fn on_remote_signal(&mut self, from: PeerId, data: &str, now: Time) {
        let id = match self.by_signal_id(&from) {
            Some(id) => id,
            None => {
                // The server only relays within the room; a peer we have not heard join is new.
                self.on_member(from.clone());
                from.clone()
            }
        };
        let signal = match PeerSignal::parse(data) {
            Ok(s) => s,
            Err(e) => return self.fail(&id, format!("bad signal: {e}"), now),
        };
        let me = match &self.my_id {
            Some(me) => me.clone(),
            None => return,
        };
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        // A peer that offers or invites has room for us again, whatever it said before.
        if matches!(signal, PeerSignal::Offer { .. } | PeerSignal::Invite) {
            p.declined = false;
        }
        match signal {
            PeerSignal::Offer { .. } => {
                let role = p
                    .role
                    .unwrap_or_else(|| Role::between(&me, p.signal_id.as_ref().unwrap_or(&from)));
                if role == Role::Offerer {
                    return self.fail(&id, "sent an offer, but we offer to it".into(), now);
                }
                if !p.created {
                    let active = self.peers.values().filter(|p| p.active()).count();
                    if active >= self.config.max_peers {
                        return self.decline(&id);
                    }
                    let p = self.peers.get_mut(&id).expect("present");
                    p.refused = false;
                    p.role = Some(Role::Answerer);
                    p.created = true;
                    p.hello = HelloState::default();
                    p.deadline = Some(now + self.config.connect_timeout);
                    self.out.push_back(Output::Peer(
                        id.clone(),
                        PeerCommand::Create { offerer: false },
                    ));
                    self.set_state(&id, PeerState::Connecting, None);
                }
                let p = self.peers.get_mut(&id).expect("present");
                p.remote_set = false;
                self.out
                    .push_back(Output::Peer(id, PeerCommand::ApplyRemote(signal)));
            }
            PeerSignal::Answer { .. } => {
                if !p.awaiting_answer || p.role != Some(Role::Offerer) {
                    return self.fail(&id, "sent an answer to no offer".into(), now);
                }
                p.awaiting_answer = false;
                p.remote_set = false;
                self.out
                    .push_back(Output::Peer(id, PeerCommand::ApplyRemote(signal)));
            }
            PeerSignal::Candidate { .. } => {
                if !p.created && p.refused {
                    return;
                }
                if !p.created {
                    return self.fail(&id, "sent a candidate before any offer".into(), now);
                }
                if p.remote_set {
                    self.out
                        .push_back(Output::Peer(id, PeerCommand::AddCandidate(signal)));
                } else if p.pending.len() >= self.config.max_pending_candidates {
                    self.fail(&id, "sent too many candidates".into(), now);
                } else {
                    p.pending.push(signal);
                }
            }
            PeerSignal::Invite => {
                if p.state != PeerState::New {
                    return;
                }
                let offerer = Role::between(&me, p.signal_id.as_ref().unwrap_or(&from));
                let active = self.peers.values().filter(|p| p.active()).count();
                if offerer == Role::Offerer && active < self.config.max_peers {
                    self.start_offer(&id, now);
                } else {
                    self.decline(&id);
                }
            }
            PeerSignal::Bye { reason } => {
                if !matches!(p.state, PeerState::Connected | PeerState::Reconnecting) {
                    let reason: String = reason.chars().take(100).collect();
                    let created = p.created;
                    p.created = false;
                    p.deadline = None;
                    if created {
                        self.out
                            .push_back(Output::Peer(id.clone(), PeerCommand::Close));
                    }
                    self.set_state(&id, PeerState::New, Some(format!("declined: {reason}")));
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.declined = true;
                    }
                    self.rebalance_at(now);
                }
            }
        }
    }

    fn on_ice(&mut self, id: &PeerId, ice: IceState, now: Time) {
        let grace = self.config.disconnect_grace;
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        match ice {
            IceState::Connected => {
                if p.state == PeerState::Reconnecting {
                    p.restarts = 0;
                    p.deadline = None;
                    self.set_state(id, PeerState::Connected, None);
                }
            }
            IceState::Disconnected => {
                if p.state == PeerState::Connected {
                    p.deadline = Some(now + grace);
                    self.set_state(id, PeerState::Reconnecting, Some("ICE disconnected".into()));
                }
            }
            IceState::Failed => {
                if matches!(p.state, PeerState::Connected | PeerState::Reconnecting) {
                    p.deadline = Some(now);
                    if p.state == PeerState::Connected {
                        self.set_state(id, PeerState::Reconnecting, Some("ICE failed".into()));
                    }
                    self.handle_timeout(now);
                } else if p.state == PeerState::Connecting {
                    self.fail(id, "ICE failed: no route to the peer".into(), now);
                }
            }
            IceState::Closed => {
                if p.state != PeerState::Failed {
                    self.drop_peer(id, PeerState::Closed, "connection closed");
                    self.rebalance_at(now);
                }
            }
            IceState::Checking => {}
        }
    }

    /// Closes the twin connection `id`, if it is one.
    fn close_twin(&mut self, id: &PeerId) -> bool {
        let Some(i) = self.twins.iter().position(|t| t.id == *id) else {
            return false;
        };
        self.twins.swap_remove(i);
        self.out
            .push_back(Output::Peer(id.clone(), PeerCommand::Close));
        true
    }

    /// Sends our hello; `again`: as the one due now, so the next goes out after the next wait
    /// (while the peer has not had it).
    fn send_hello(&mut self, id: &PeerId, again: bool, now: Time) {
        let Some(p) = self.peers.get_mut(id) else {
            return;
        };
        let seen = p.hello.got;
        // A hello sent again (we wait for the peer's word that it had ours) asks for its.
        let ask = again && seen && !p.hello.confirmed;
        p.hello.told |= seen;
        if again {
            p.hello.resend = match p.hello.resend {
                Some((_, wait)) if !p.hello.confirmed => {
                    Some((now + wait, (wait * 2).min(Duration::from_secs(2))))
                }
                _ => None,
            };
        }
        self.out.push_back(Output::Peer(
            id.clone(),
            PeerCommand::SendHello { seen, ask },
        ));
    }

    fn on_hello(&mut self, id: &PeerId, key: PeerKey, seen: bool, ask: bool, now: Time) {
        if self.twins.iter().any(|t| t.id == *id) {
            // It has had ours (and so found the twin too): done. Else it asks for ours.
            if seen {
                self.close_twin(id);
            } else {
                self.out.push_back(Output::Peer(id.clone(), TWIN_HELLO));
            }
            return;
        }
        // (A hello comes on a connection we made; one for a peer without one is ignored.)
        let Some(p) = self.peers.get_mut(id).filter(|p| p.created) else {
            return;
        };
        p.key = Some(key);
        // The same peer under an older id, still connected: it reconnected to signaling and we
        // met it again. Keep the older connection (both sides agree on which is older), move the
        // new signaling id onto it, and close this one quietly.
        let signal_id = p.signal_id.clone();
        let twin = self
            .peers
            .iter()
            .find(|(other, q)| {
                *other != id
                    && q.key == Some(key)
                    && matches!(q.state, PeerState::Connected | PeerState::Reconnecting)
            })
            .map(|(other, _)| other.clone());
        if let Some(twin) = twin {
            if let Some(t) = self.peers.get_mut(&twin) {
                if signal_id.is_some() {
                    t.signal_id = signal_id;
                }
            }
            let dup = self.peers.remove(id).expect("present");
            if dup.hello.confirmed || seen {
                self.out
                    .push_back(Output::Peer(id.clone(), PeerCommand::Close));
            } else {
                let wait = self.config.hello_resend;
                self.twins.push(Twin {
                    id: id.clone(),
                    resend: (now + wait, wait * 2),
                    deadline: now + self.config.connect_timeout,
                });
                self.out.push_back(Output::Peer(id.clone(), TWIN_HELLO));
            }
            self.event(SwarmEvent::PeerLeft(
                id.clone(),
                "duplicate of a live connection".into(),
            ));
            // It counted against the budget: there may be room for another now.
            self.rebalance_at(now);
            return;
        }
        let p = self.peers.get_mut(id).expect("present");
        p.hello.got = true;
        p.hello.confirmed |= seen;
        if p.hello.confirmed {
            p.hello.resend = None;
        }
        // Once we have had its hello, it hears so; and again when it asks (ours that said so
        // was lost: it has sent its hello again).
        if !p.hello.told || ask {
            self.send_hello(id, false, now);
        }
        let p = self.peers.get_mut(id).expect("present");
        if !p.hello.confirmed || p.state == PeerState::Connected {
            return;
        }
        p.deadline = None;
        p.restarts = 0;
        p.failures = 0;
        self.set_state(id, PeerState::Connected, None);
    }

    /// Acts on every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.left {
            return;
        }
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect_at = None;
            self.signal = SignalState::Connecting;
            self.event(SwarmEvent::SignalState(SignalState::Connecting));
            self.out.push_back(Output::OpenSignal);
        }
        let mut closed = Vec::new();
        for t in &mut self.twins {
            if t.deadline <= now {
                closed.push(t.id.clone());
            } else if t.resend.0 <= now {
                t.resend = (
                    now + t.resend.1,
                    (t.resend.1 * 2).min(Duration::from_secs(2)),
                );
                self.out.push_back(Output::Peer(t.id.clone(), TWIN_HELLO));
            }
        }
        for id in closed {
            self.close_twin(&id);
        }
        let resend: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.hello.resend.is_some_and(|(t, _)| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in resend {
            // Only while it connects: a failed peer's connection is gone.
            match self.peers.get_mut(&id) {
                Some(p) if p.state != PeerState::Connecting => p.hello.resend = None,
                _ => self.send_hello(&id, true, now),
            }
        }
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            p.deadline = None;
            match p.state {
                PeerState::Connecting => {
                    let secs = self.config.connect_timeout.as_secs_f64();
                    self.fail(&id, format!("no connection within {secs:.0} s"), now);
                }
                PeerState::New if p.invited => {
                    let secs = self.config.connect_timeout.as_secs_f64();
                    self.fail(&id, format!("invited, no offer within {secs:.0} s"), now);
                }
                PeerState::Reconnecting if p.restarts == 0 => {
                    p.restarts = 1;
                    p.deadline = Some(now + self.config.restart_timeout);
                    // The offerer restarts ICE; the answerer waits for its new offer.
                    if p.role == Some(Role::Offerer) && p.signal_id.is_some() {
                        self.out
                            .push_back(Output::Peer(id.clone(), PeerCommand::RestartIce));
                    }
                }
                PeerState::Reconnecting => {
                    // Still in the room: failed like any other connection, so it is tried
                    // again later with a fresh one. Gone from the room: gone.
                    p.restarts = 0;
                    self.fail(&id, "connection lost (ICE restart failed)".into(), now);
                }
                PeerState::Failed => {
                    // Its retry time: start over as a peer in the room.
                    p.role = None;
                    p.invited = false;
                    p.refused = false;
                    p.declined = false;
                    self.set_state(&id, PeerState::New, Some("trying again".into()));
                    self.rebalance_at(now);
                }
                _ => {}
            }
        }
    }
}
