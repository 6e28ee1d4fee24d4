//! The swarm core in a simulated world: a fake signaling server, fake WebRTC, a fake clock.

use super::*;
use crate::signal::{RoomName, ServerMessage};
use std::collections::BTreeMap;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// One simulated browser tab.
struct Node {
    swarm: Swarm,
    /// Our id on the fake server, while connected.
    id: Option<PeerId>,
    /// Connections by the public id this node uses for the remote: (remote node, connection).
    conns: BTreeMap<PeerId, (usize, u64)>,
    events: Vec<SwarmEvent>,
    created_offers: usize,
    restarts: usize,
    /// Drop every signal this node would send (a peer that never answers).
    mute: bool,
    /// Hellos this node sends that are lost on the way (as when they reach the remote end
    /// before its channel is ready).
    lose_hellos: usize,
    /// Hellos saying it had the other's that this node sends and are lost.
    lose_seen_hellos: usize,
    /// Hellos this node sent.
    hellos_sent: usize,
    /// Inputs waiting to be handled.
    pending_inputs: Vec<Input>,
    /// Per connection, the number of the answering end's RTCPeerConnection (its certificate),
    /// as the offering end first had it in an answer: one from another is refused.
    answerers: BTreeMap<PeerId, u64>,
    /// Per connection, its own number (see `answerers`).
    own: BTreeMap<PeerId, u64>,
    /// Its signaling sessions so far: what the server sent in an older one is lost with its
    /// socket.
    session: u64,
}

/// Something on its way from one node to another (see [`World::latency`]).
enum Flight {
    /// From the server, in the receiver's signaling session `session`.
    Server {
        to: usize,
        session: u64,
        msg: ServerMessage,
    },
    /// On connection `conn`, which the receiver holds as `back` with its RTCPeerConnection
    /// `pc` (see `Node::own`): lost if it no longer does (a new RTCPeerConnection there, even
    /// answering the same offerer, is another connection). A close ends the receiver's end.
    Channel {
        to: usize,
        back: PeerId,
        conn: u64,
        pc: Option<u64>,
        input: Input,
    },
}

struct World {
    nodes: Vec<Node>,
    server_up: bool,
    /// Members of the one room: (server id, node index).
    members: Vec<(PeerId, usize)>,
    next_id: u32,
    now: Time,
    /// Ids handed out in this order, so tests control who offers.
    id_prefix: char,
    next_conn: u64,
    /// Every node's connection budget.
    max_peers: usize,
    /// Where set, what the server sends a node and what a node sends another on a connection
    /// arrive up to this long later (drawn from `rng`), in order on each path.
    latency: Option<Duration>,
    rng: crate::swarm::Rng,
    /// In flight, by arrival time and order.
    in_flight: BTreeMap<(Time, u64), Flight>,
    /// When each path (from, to, through the server) last delivers: order is kept on it.
    paths: BTreeMap<(usize, usize, bool), Time>,
    flights: u64,
}

/// The server, as the sender on a path.
const SERVER: usize = usize::MAX;

fn room() -> RoomName {
    RoomName::new("test-room").unwrap()
}

impl World {
    fn new(n: usize, max_peers: usize) -> World {
        let nodes = (0..n)
            .map(|i| {
                let mut cfg = Config::new(room(), 1000 + i as u64);
                cfg.max_peers = max_peers;
                Node {
                    swarm: Swarm::new(cfg),
                    id: None,
                    conns: BTreeMap::new(),
                    events: Vec::new(),
                    created_offers: 0,
                    restarts: 0,
                    mute: false,
                    lose_hellos: 0,
                    lose_seen_hellos: 0,
                    hellos_sent: 0,
                    pending_inputs: Vec::new(),
                    answerers: BTreeMap::new(),
                    own: BTreeMap::new(),
                    session: 0,
                }
            })
            .collect();
        World {
            nodes,
            server_up: true,
            members: Vec::new(),
            next_id: 0,
            now: Duration::ZERO,
            id_prefix: 'a',
            next_conn: 0,
            max_peers,
            latency: None,
            rng: crate::swarm::Rng::new(1),
            in_flight: BTreeMap::new(),
            paths: BTreeMap::new(),
            flights: 0,
        }
    }

    /// Sends `flight` from node `from` (or [`SERVER`]): at once, or after the world's latency.
    fn send(&mut self, from: usize, flight: Flight) {
        let Some(max) = self.latency else {
            return self.land(flight);
        };
        let (to, via_server) = match &flight {
            Flight::Server { to, .. } => (*to, true),
            Flight::Channel { to, .. } => (*to, false),
        };
        let path = self.paths.entry((from, to, via_server)).or_default();
        let at = (self.now + max.mul_f64(self.rng.unit())).max(*path);
        *path = at;
        self.flights += 1;
        self.in_flight.insert((at, self.flights), flight);
    }

    /// `flight` arrives, unless what it was sent on is gone.
    fn land(&mut self, flight: Flight) {
        match flight {
            Flight::Server { to, session, msg } => {
                if self.nodes[to].session == session {
                    self.input(to, Input::Server(msg));
                }
            }
            Flight::Channel {
                to,
                back,
                conn,
                pc,
                input,
            } => {
                if self.nodes[to].conns.get(&back).map(|c| c.1) != Some(conn)
                    || self.nodes[to].own.get(&back).copied() != pc
                {
                    return;
                }
                if matches!(input, Input::ChannelClosed(_)) {
                    self.nodes[to].conns.remove(&back);
                }
                self.input(to, input);
            }
        }
    }

    /// Node `i`'s signaling session ends: what the server sent it and it has not had is lost.
    fn end_session(&mut self, i: usize) {
        self.nodes[i].session += 1;
    }

    fn input(&mut self, i: usize, input: Input) {
        self.nodes[i].pending_inputs.push(input);
    }

    fn node_of(&self, server_id: &PeerId) -> Option<usize> {
        self.members
            .iter()
            .find(|(id, _)| id == server_id)
            .map(|(_, n)| *n)
    }

    fn server_send(&mut self, to: usize, msg: ServerMessage) {
        let session = self.nodes[to].session;
        self.send(SERVER, Flight::Server { to, session, msg });
    }

    /// Runs until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                let inputs = std::mem::take(&mut self.nodes[i].pending_inputs);
                for input in inputs {
                    moved = true;
                    self.nodes[i].swarm.handle(input, self.now);
                }
                while let Some(out) = self.nodes[i].swarm.poll_output() {
                    moved = true;
                    self.act(i, out);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the world does not settle");
    }

    /// Advances the clock to `t`, firing deadlines and landing flights on the way.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            self.settle();
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.swarm.poll_timeout())
                .chain(self.in_flight.keys().next().map(|(t, _)| *t))
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let flight = entry.remove();
                self.land(flight);
            }
            for n in &mut self.nodes {
                n.swarm.handle_timeout(self.now);
            }
        }
        self.now = end;
        self.settle();
    }

    fn act(&mut self, i: usize, out: Output) {
        match out {
            Output::OpenSignal => {
                if self.server_up {
                    self.input(i, Input::SignalOpened);
                } else {
                    self.input(i, Input::SignalClosed);
                }
            }
            Output::CloseSignal => self.disconnect(i),
            Output::SendSignal(msg) => self.server_receive(i, msg),
            Output::Peer(id, cmd) => self.peer_command(i, id, cmd),
            Output::Event(e) => self.nodes[i].events.push(e),
        }
    }

    fn disconnect(&mut self, i: usize) {
        self.end_session(i);
        if let Some(id) = self.nodes[i].id.take() {
            self.members.retain(|(m, _)| m != &id);
            for (_, n) in self.members.clone() {
                self.server_send(n, ServerMessage::PeerLeft { id: id.clone() });
            }
        }
    }

    fn server_receive(&mut self, i: usize, msg: ClientMessage) {
        match msg {
            ClientMessage::Join { .. } => {
                self.next_id += 1;
                let id = PeerId::new(format!("{}{:04}", self.id_prefix, self.next_id)).unwrap();
                let peers = self.members.iter().map(|(m, _)| m.clone()).collect();
                for (_, n) in self.members.clone() {
                    self.server_send(n, ServerMessage::PeerJoined { id: id.clone() });
                }
                self.members.push((id.clone(), i));
                self.nodes[i].id = Some(id.clone());
                self.server_send(
                    i,
                    ServerMessage::Welcome {
                        id,
                        peers,
                        ice_servers: vec![],
                    },
                );
            }
            ClientMessage::Signal { to, data } => {
                if self.nodes[i].mute {
                    return;
                }
                let from = self.nodes[i].id.clone().expect("joined");
                if let Some(n) = self.node_of(&to) {
                    self.server_send(n, ServerMessage::Signal { from, data });
                }
            }
            ClientMessage::Leave => self.disconnect(i),
        }
    }

    /// The public id under which node `remote` holds connection `conn`.
    fn conn_at(&self, remote: usize, conn: u64) -> Option<PeerId> {
        if conn == u64::MAX {
            return None; // an answerer's, before the offer came: not a connection yet
        }
        self.nodes[remote]
            .conns
            .iter()
            .find(|(_, (_, c))| *c == conn)
            .map(|(id, _)| id.clone())
    }

    fn peer_command(&mut self, i: usize, id: PeerId, cmd: PeerCommand) {
        match cmd {
            PeerCommand::Create { offerer } => {
                // (A remote that left the server in the meantime is not reached: the
                // connection fails at its deadline.)
                // (The public id is the signaling id the peer was first seen with; it is
                // reached at the one it has now.)
                let at = self.nodes[i].swarm.signal_id_of(&id).unwrap_or(&id).clone();
                let Some(remote) = self
                    .members
                    .iter()
                    .find(|(m, _)| *m == at)
                    .map(|(_, n)| *n)
                    .or_else(|| self.nodes.iter().position(|n| n.id.as_ref() == Some(&at)))
                else {
                    return;
                };
                let conn = if offerer {
                    self.next_conn += 1;
                    self.next_conn
                } else {
                    u64::MAX // set by the offer
                };
                self.nodes[i].conns.insert(id.clone(), (remote, conn));
                self.nodes[i].answerers.remove(&id);
                self.next_conn += 1;
                self.nodes[i].own.insert(id.clone(), self.next_conn);
                if offerer {
                    self.nodes[i].created_offers += 1;
                    self.local_offer(i, &id);
                }
            }
            PeerCommand::ApplyRemote(PeerSignal::Offer { sdp }) => {
                let conn: u64 = sdp.trim_start_matches("offer-").parse().unwrap();
                if let Some(c) = self.nodes[i].conns.get_mut(&id) {
                    // An offer from another connection than the one this one is bound to (its
                    // certificate differs): the browser refuses it.
                    if c.1 != u64::MAX && c.1 != conn {
                        let refused = "the offer's fingerprint changed".to_string();
                        return self.input(i, Input::PeerError(id, refused));
                    }
                    c.1 = conn;
                }
                // The answering connection's own number (its certificate).
                let pc = self.nodes[i].own.get(&id).copied().unwrap_or(0);
                self.input(i, Input::RemoteApplied(id.clone()));
                self.input(
                    i,
                    Input::LocalSignal(
                        id.clone(),
                        PeerSignal::Answer {
                            sdp: format!("answer-{conn}-{pc}"),
                        },
                    ),
                );
                self.input(i, Input::LocalSignal(id, candidate()));
            }
            PeerCommand::ApplyRemote(PeerSignal::Answer { sdp }) => {
                let answerer: u64 = sdp.rsplit('-').next().unwrap().parse().unwrap();
                // An answer from another connection than the one that answered before (an ICE
                // restart's offer answered by a new connection): the browser refuses it.
                if *self.nodes[i]
                    .answerers
                    .entry(id.clone())
                    .or_insert(answerer)
                    != answerer
                {
                    let refused = "the answer's fingerprint changed".to_string();
                    return self.input(i, Input::PeerError(id, refused));
                }
                self.input(i, Input::RemoteApplied(id.clone()));
                // ICE connects: both channels open and say hello.
                let Some(&(remote, conn)) = self.nodes[i].conns.get(&id) else {
                    return;
                };
                let Some(back) = self.conn_at(remote, conn) else {
                    return;
                };
                self.input(i, Input::Ice(id.clone(), IceState::Connected));
                self.input(i, Input::ChannelOpen(id));
                for input in [
                    Input::Ice(back.clone(), IceState::Connected),
                    Input::ChannelOpen(back.clone()),
                ] {
                    self.on_channel(i, remote, back.clone(), conn, input);
                }
            }
            PeerCommand::SendHello { seen, ask } => {
                self.nodes[i].hellos_sent += 1;
                let Some(&(remote, conn)) = self.nodes[i].conns.get(&id) else {
                    return;
                };
                let Some(back) = self.conn_at(remote, conn) else {
                    return;
                };
                if self.nodes[i].lose_hellos > 0 {
                    self.nodes[i].lose_hellos -= 1;
                    return;
                }
                if seen && self.nodes[i].lose_seen_hellos > 0 {
                    self.nodes[i].lose_seen_hellos -= 1;
                    return;
                }
                let key = self.nodes[i].swarm.key();
                let hello = Input::Hello(back.clone(), key, seen, ask);
                self.on_channel(i, remote, back, conn, hello);
            }
            PeerCommand::ApplyRemote(other) => panic!("apply {other:?}"),
            PeerCommand::AddCandidate(_) => {}
            PeerCommand::RestartIce => {
                self.nodes[i].restarts += 1;
                self.local_offer(i, &id);
            }
            PeerCommand::Close => {
                if let Some((remote, conn)) = self.nodes[i].conns.remove(&id) {
                    if let Some(back) = self.conn_at(remote, conn) {
                        self.on_channel(i, remote, back.clone(), conn, Input::ChannelClosed(back));
                    }
                }
            }
        }
    }

    /// Node `i` sends `input` on connection `conn` to node `remote`, which holds it as `back`.
    fn on_channel(&mut self, i: usize, remote: usize, back: PeerId, conn: u64, input: Input) {
        let pc = self.nodes[remote].own.get(&back).copied();
        self.send(
            i,
            Flight::Channel {
                to: remote,
                back,
                conn,
                pc,
                input,
            },
        );
    }

    fn local_offer(&mut self, i: usize, id: &PeerId) {
        let Some(&(_, conn)) = self.nodes[i].conns.get(id) else {
            return;
        };
        self.input(
            i,
            Input::LocalSignal(
                id.clone(),
                PeerSignal::Offer {
                    sdp: format!("offer-{conn}"),
                },
            ),
        );
        self.input(i, Input::LocalSignal(id.clone(), candidate()));
    }

    fn connected(&self, i: usize) -> Vec<PeerId> {
        self.nodes[i]
            .swarm
            .peers()
            .filter(|(_, s)| *s == PeerState::Connected)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Both nodes of a two-node world are connected to each other.
    fn assert_pair_connected(&self, what: &str) {
        for i in 0..2 {
            assert_eq!(
                self.connected(i).len(),
                1,
                "{what}, node {i}: {:?}",
                self.nodes[i].events
            );
        }
    }

    fn join_all(&mut self) {
        self.settle();
    }
}

fn candidate() -> PeerSignal {
    PeerSignal::Candidate {
        candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

fn raw(s: &str) -> crate::signal::RawJson {
    crate::signal::raw_json(s.to_string()).unwrap()
}

#[test]
fn exactly_one_side_offers() {
    let a = PeerId::new("AAAA").unwrap();
    let b = PeerId::new("bbbb").unwrap();
    assert_eq!(Role::between(&a, &b), Role::Offerer);
    assert_eq!(Role::between(&b, &a), Role::Answerer);
}

#[test]
fn three_peers_form_a_full_mesh_with_one_offer_per_pair() {
    let mut w = World::new(3, 20);
    w.join_all();
    for i in 0..3 {
        assert_eq!(w.connected(i).len(), 2, "node {i}: {:?}", w.nodes[i].events);
        assert_eq!(w.nodes[i].swarm.signal_state(), SignalState::Open);
    }
    let offers: usize = w.nodes.iter().map(|n| n.created_offers).sum();
    assert_eq!(offers, 3, "one offer per pair, no glare");
    // The lowest id offered to both others.
    assert_eq!(w.nodes[0].created_offers, 2);
    assert!(w.nodes[0]
        .events
        .contains(&SwarmEvent::SignalState(SignalState::Open)));
}

#[test]
fn a_leaver_is_peer_left_for_the_others() {
    let mut w = World::new(3, 20);
    w.join_all();
    let leaver = w.nodes[1].id.clone().unwrap();
    w.input(1, Input::Leave);
    w.settle();
    for i in [0, 2] {
        assert_eq!(w.connected(i).len(), 1);
        assert!(
            w.nodes[i]
                .events
                .iter()
                .any(|e| matches!(e, SwarmEvent::PeerLeft(id, _) if *id == leaver)),
            "{:?}",
            w.nodes[i].events
        );
    }
    assert_eq!(w.nodes[1].swarm.signal_state(), SignalState::Closed);
    assert_eq!(w.nodes[1].swarm.peers().count(), 0);
}

#[test]
fn a_peer_that_never_answers_fails_at_the_deadline_and_others_carry_on() {
    let mut w = World::new(3, 20);
    w.nodes[2].mute = true;
    w.join_all();
    assert_eq!(w.connected(0).len(), 1);
    let silent = w.nodes[2].id.clone().unwrap();
    assert_eq!(
        w.nodes[0].swarm.peer_state(&silent),
        Some(PeerState::Connecting)
    );
    w.advance(14 * S);
    assert_eq!(
        w.nodes[0].swarm.peer_state(&silent),
        Some(PeerState::Connecting)
    );
    w.advance(2 * S);
    assert_eq!(
        w.nodes[0].swarm.peer_state(&silent),
        Some(PeerState::Failed)
    );
    assert!(w.nodes[0].events.iter().any(|e| matches!(e,
        SwarmEvent::PeerState(id, PeerState::Failed, Some(r)) if *id == silent && r.contains("no connection within 15 s"))));
    assert_eq!(w.connected(0).len(), 1, "the good peer stays");
}

fn joined_pair() -> (Swarm, PeerId, Swarm) {
    let mut cfg = Config::new(room(), 1);
    cfg.max_peers = 20;
    let mut s = Swarm::new(cfg);
    let now = Duration::ZERO;
    s.handle(Input::SignalOpened, now);
    s.handle(
        Input::Server(ServerMessage::Welcome {
            id: PeerId::new("m").unwrap(),
            peers: vec![],
            ice_servers: vec![],
        }),
        now,
    );
    let other = Swarm::new(Config::new(room(), 2));
    while s.poll_output().is_some() {}
    (s, PeerId::new("z").unwrap(), other)
}

fn signal(s: &mut Swarm, from: &PeerId, json: &str) {
    s.handle(
        Input::Server(ServerMessage::Signal {
            from: from.clone(),
            data: raw(json),
        }),
        Duration::ZERO,
    );
}

fn failed_reason(s: &mut Swarm, id: &PeerId) -> Option<String> {
    let mut reason = None;
    while let Some(out) = s.poll_output() {
        if let Output::Event(SwarmEvent::PeerState(p, PeerState::Failed, r)) = out {
            if p == *id {
                reason = r;
            }
        }
    }
    reason
}

#[test]
fn bad_signals_fail_only_that_peer_with_a_reason() {
    // "m" is us; "a" offers to us, we offer to "z".
    let cases = [
        (r#"{"kind":"nonsense"}"#, "z", "bad signal"),
        (r#""just a string""#, "z", "bad signal"),
        (
            r#"{"kind":"candidate","candidate":"c"}"#,
            "a",
            "candidate before any offer",
        ),
        (r#"{"kind":"answer","sdp":"x"}"#, "z", "answer to no offer"),
        (r#"{"kind":"answer","sdp":"x"}"#, "a", "answer to no offer"),
    ];
    for (json, from, want) in cases {
        let (mut s, _, _) = joined_pair();
        let bad = PeerId::new(from).unwrap();
        s.handle(
            Input::Server(ServerMessage::PeerJoined { id: bad.clone() }),
            Duration::ZERO,
        );
        let good = PeerId::new("y").unwrap();
        s.handle(
            Input::Server(ServerMessage::PeerJoined { id: good.clone() }),
            Duration::ZERO,
        );
        signal(&mut s, &bad, json);
        let reason = failed_reason(&mut s, &bad).unwrap_or_default();
        assert!(reason.contains(want), "{json}: {reason:?}");
        assert_eq!(s.peer_state(&bad), Some(PeerState::Failed));
        assert_eq!(
            s.peer_state(&good),
            Some(PeerState::Connecting),
            "others carry on"
        );
    }
    // An offer from a peer we offer to breaks the glare rule.
    let (mut s, _, _) = joined_pair();
    let a = PeerId::new("a").unwrap(); // "a" < "m": a offers to us; fine.
    signal(&mut s, &a, r#"{"kind":"offer","sdp":"x"}"#);
    assert_eq!(s.peer_state(&a), Some(PeerState::Connecting));
    let z = PeerId::new("z").unwrap(); // "m" < "z": we offer to z; its offer is bad input.
    s.handle(
        Input::Server(ServerMessage::PeerJoined { id: z.clone() }),
        Duration::ZERO,
    );
    signal(&mut s, &z, r#"{"kind":"offer","sdp":"x"}"#);
    assert!(failed_reason(&mut s, &z)
        .unwrap()
        .contains("we offer to it"));
}

#[test]
fn candidates_wait_for_the_remote_description() {
    let (mut s, _, _) = joined_pair();
    let a = PeerId::new("a").unwrap();
    signal(&mut s, &a, r#"{"kind":"offer","sdp":"x"}"#);
    signal(&mut s, &a, r#"{"kind":"candidate","candidate":"c1"}"#);
    signal(&mut s, &a, r#"{"kind":"candidate","candidate":"c2"}"#);
    let mut cmds = Vec::new();
    while let Some(o) = s.poll_output() {
        if let Output::Peer(_, c) = o {
            cmds.push(c);
        }
    }
    assert!(matches!(cmds[0], PeerCommand::Create { offerer: false }));
    assert!(matches!(
        cmds[1],
        PeerCommand::ApplyRemote(PeerSignal::Offer { .. })
    ));
    assert_eq!(cmds.len(), 2, "candidates held: {cmds:?}");
    s.handle(Input::RemoteApplied(a.clone()), Duration::ZERO);
    let added = std::iter::from_fn(|| s.poll_output())
        .filter(|o| matches!(o, Output::Peer(_, PeerCommand::AddCandidate(_))))
        .count();
    assert_eq!(added, 2);
    signal(&mut s, &a, r#"{"kind":"candidate","candidate":"c3"}"#);
    assert!(matches!(
        s.poll_output(),
        Some(Output::Peer(_, PeerCommand::AddCandidate(_)))
    ));
}

#[test]
fn budget_caps_connections_in_a_large_room() {
    let mut w = World::new(12, 3);
    w.join_all();
    w.advance(20 * S);
    let mut total = 0;
    for i in 0..12 {
        let active = w.nodes[i]
            .swarm
            .peers()
            .filter(|(_, s)| matches!(s, PeerState::Connecting | PeerState::Connected))
            .count();
        assert!(active <= 3, "node {i} has {active} connections");
        let c = w.connected(i).len();
        assert!(c >= 1, "node {i} is connected to nobody");
        total += c;
    }
    assert!(total >= 12, "too few connections: {total}");
    // Nobody is left failed by the budget: declines are polite.
    for n in &w.nodes {
        let failed: Vec<_> = n
            .events
            .iter()
            .filter(|e| matches!(e, SwarmEvent::PeerState(_, PeerState::Failed, _)))
            .collect();
        assert!(failed.is_empty(), "{failed:?}");
    }
}

#[test]
fn ice_disconnect_grace_then_one_restart() {
    let mut w = World::new(2, 20);
    w.join_all();
    let b = w.connected(0)[0].clone();
    let a = w.connected(1)[0].clone();
    // A blip shorter than the grace period: nothing happens.
    w.input(0, Input::Ice(b.clone(), IceState::Disconnected));
    w.advance(2 * S);
    assert_eq!(
        w.nodes[0].swarm.peer_state(&b),
        Some(PeerState::Reconnecting)
    );
    w.input(0, Input::Ice(b.clone(), IceState::Connected));
    w.advance(10 * S);
    assert_eq!(w.nodes[0].swarm.peer_state(&b), Some(PeerState::Connected));
    assert_eq!(w.nodes[0].restarts, 0);

    // Longer: the offerer restarts ICE once.
    w.input(0, Input::Ice(b.clone(), IceState::Disconnected));
    w.input(1, Input::Ice(a.clone(), IceState::Disconnected));
    w.advance(5 * S);
    assert_eq!(w.nodes[0].restarts, 1);
    assert_eq!(w.nodes[1].restarts, 0, "the answerer waits for the offer");
    // The restart's answer reconnects ICE (the fake network reports Connected).
    assert_eq!(w.nodes[0].swarm.peer_state(&b), Some(PeerState::Connected));

    // ICE never comes back: one restart, then the connection has failed.
    w.nodes[1].mute = true;
    w.input(0, Input::Ice(b.clone(), IceState::Disconnected));
    w.advance(5 * S);
    assert_eq!(w.nodes[0].restarts, 2);
    w.advance(11 * S);
    assert_eq!(w.nodes[0].swarm.peer_state(&b), Some(PeerState::Failed));
    assert!(w.nodes[0].events.iter().any(|e| matches!(e,
        SwarmEvent::PeerState(id, PeerState::Failed, Some(r)) if *id == b && r.contains("ICE restart failed"))));
    assert!(
        !w.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, SwarmEvent::PeerLeft(id, _) if *id == b)),
        "it is still in the room"
    );
    // It is still in the room, so once the network is back it is tried again, from scratch.
    w.nodes[1].mute = false;
    w.advance(60 * S);
    assert_eq!(w.nodes[0].swarm.peer_state(&b), Some(PeerState::Connected));
    assert_eq!(w.nodes[1].swarm.peer_state(&a), Some(PeerState::Connected));
}

#[test]
fn ice_restart_failed_peer_that_left_is_dropped() {
    let mut w = World::new(2, 20);
    w.join_all();
    let b = w.connected(0)[0].clone();
    w.nodes[1].mute = true;
    w.input(0, Input::Ice(b.clone(), IceState::Disconnected));
    w.advance(5 * S);
    // It leaves the room (the server says so) while the restart is pending.
    w.input(
        0,
        Input::Server(crate::signal::ServerMessage::PeerLeft { id: b.clone() }),
    );
    w.advance(20 * S);
    assert_eq!(w.nodes[0].swarm.peer_state(&b), None);
}

#[test]
fn signaling_reconnects_with_backoff_and_jitter() {
    let mut w = World::new(1, 20);
    w.join_all();
    w.server_up = false;
    w.disconnect(0);
    w.input(0, Input::SignalClosed);
    let mut delays = Vec::new();
    let mut last = w.now;
    for _ in 0..9 {
        w.settle();
        let t = w.nodes[0]
            .swarm
            .poll_timeout()
            .expect("a reconnect is scheduled");
        delays.push(t - last);
        w.now = t;
        w.nodes[0].swarm.handle_timeout(t);
        last = t;
    }
    // Each delay lies in [window/2, window], the window doubling from 250 ms up to 30 s.
    for (n, d) in delays.iter().enumerate() {
        let window = (Duration::from_millis(250) * (1 << n)).min(30 * S);
        assert!(
            *d >= window / 2 && *d <= window,
            "attempt {n}: {d:?} for window {window:?}"
        );
    }
    assert!(delays[8] >= 15 * S);
    // Jitter: two swarms with other seeds do not retry in lockstep.
    assert_ne!(delays[3], Duration::from_millis(2000));
    // The last attempt's OpenSignal is pending: now the server answers.
    w.server_up = true;
    w.settle();
    assert_eq!(w.nodes[0].swarm.signal_state(), SignalState::Open);
    // After a welcome the backoff starts over.
    w.disconnect(0);
    w.input(0, Input::SignalClosed);
    w.settle();
    let d = w.nodes[0].swarm.poll_timeout().unwrap() - w.now;
    assert!(d <= Duration::from_millis(250));
}

#[test]
fn server_restart_keeps_open_connections_and_merges_new_ids() {
    let mut w = World::new(2, 20);
    w.join_all();
    let b_public = w.connected(0)[0].clone();
    // The server goes away: both lose signaling; the data channels stay open.
    w.server_up = false;
    w.members.clear();
    for i in 0..2 {
        w.nodes[i].id = None;
        w.input(i, Input::SignalClosed);
    }
    w.settle();
    assert_eq!(w.connected(0), vec![b_public.clone()]);
    assert_eq!(w.nodes[0].swarm.signal_state(), SignalState::Reconnecting);
    // It comes back with fresh ids (a later prefix sorts after the old ones).
    w.server_up = true;
    w.id_prefix = 'n';
    w.advance(5 * S);
    for i in 0..2 {
        assert_eq!(w.nodes[i].swarm.signal_state(), SignalState::Open);
        assert_eq!(
            w.connected(i).len(),
            1,
            "node {i}: {:?}",
            w.nodes[i].swarm.peers().collect::<Vec<_>>()
        );
        assert_eq!(w.nodes[i].swarm.peers().count(), 1, "the duplicate is gone");
    }
    assert_eq!(w.connected(0), vec![b_public], "the public id is stable");
    // Signaling reaches the peer at its new id: an ICE restart goes through.
    let b = w.connected(0)[0].clone();
    w.input(0, Input::Ice(b.clone(), IceState::Disconnected));
    w.input(
        1,
        Input::Ice(w.connected(1)[0].clone(), IceState::Disconnected),
    );
    w.advance(5 * S);
    assert_eq!(w.nodes[0].swarm.peer_state(&b), Some(PeerState::Connected));
}

#[test]
fn peers_before_connecting_leave_with_the_room() {
    let (mut s, _, _) = joined_pair();
    let z = PeerId::new("z").unwrap();
    s.handle(
        Input::Server(ServerMessage::PeerJoined { id: z.clone() }),
        Duration::ZERO,
    );
    assert_eq!(s.peer_state(&z), Some(PeerState::Connecting));
    s.handle(
        Input::Server(ServerMessage::PeerLeft { id: z.clone() }),
        Duration::ZERO,
    );
    assert_eq!(s.peer_state(&z), None);
    let outs: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
    assert!(outs.contains(&Output::Peer(z.clone(), PeerCommand::Close)));
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Event(SwarmEvent::PeerLeft(id, _)) if *id == z)));
}

#[test]
fn a_failed_peer_is_tried_again_with_backoff() {
    let mut w = World::new(2, 20);
    w.nodes[1].mute = true;
    w.join_all();
    let b = w.nodes[1].id.clone().unwrap();
    w.advance(16 * S);
    assert_eq!(w.nodes[0].swarm.peer_state(&b), Some(PeerState::Failed));
    // Still silent at the first retry (3 s later): fails again, next retry 6 s after that.
    w.advance(3 * S);
    assert_eq!(w.nodes[0].swarm.peer_state(&b), Some(PeerState::Connecting));
    w.advance(16 * S);
    assert_eq!(w.nodes[0].swarm.peer_state(&b), Some(PeerState::Failed));
    // It recovers; the next retry connects.
    w.nodes[1].mute = false;
    w.advance(7 * S);
    assert_eq!(w.connected(0), vec![b.clone()]);
    assert!(w.nodes[0].events.iter().any(|e| matches!(e,
        SwarmEvent::PeerState(id, PeerState::New, Some(r)) if *id == b && r == "trying again")));
}

#[test]
fn hellos_go_both_ways_twice_then_stop() {
    let mut w = World::new(2, 20);
    w.join_all();
    assert_eq!(w.connected(0).len(), 1);
    assert_eq!(w.connected(1).len(), 1);
    w.advance(30 * S);
    // Ours at open, then ours again saying we had theirs; no resends once both had them.
    assert_eq!((w.nodes[0].hellos_sent, w.nodes[1].hellos_sent), (2, 2));
    assert_eq!(w.connected(0).len(), 1);
}

#[test]
fn lost_hellos_are_made_up_for() {
    for loser in [0, 1] {
        // Its first hello is lost (it reached the other end before that end's channel was
        // ready): its second one, saying it had the other's, carries its key too.
        let mut w = World::new(2, 20);
        w.nodes[loser].lose_hellos = 1;
        w.join_all();
        w.assert_pair_connected(&format!("loser {loser}"));

        // Both of its hellos are lost: the other end never had one, so neither side is
        // connected until the loser sends its hello again (it was never confirmed).
        let mut w = World::new(2, 20);
        w.nodes[loser].lose_hellos = 2;
        w.join_all();
        assert_eq!(w.connected(0).len() + w.connected(1).len(), 0);
        w.advance(Duration::from_millis(250));
        w.assert_pair_connected(&format!("loser {loser}"));
        w.advance(30 * S);
        assert_eq!(w.nodes[loser].hellos_sent, 3, "no resends once confirmed");
    }
}

#[test]
fn a_lost_hello_saying_the_other_was_had_is_asked_for_again() {
    for loser in [0, 1] {
        // Its first hello arrives; the one saying it had the other's is lost. It is connected
        // (it had the other's hello, which said it had its own), the other waits for word
        // that its hello arrived: its next one asks, and the loser answers.
        let mut w = World::new(2, 20);
        w.nodes[loser].lose_seen_hellos = 1;
        w.join_all();
        assert_eq!(w.connected(loser).len(), 1);
        assert_eq!(w.connected(1 - loser).len(), 0);
        w.advance(Duration::from_millis(250));
        w.assert_pair_connected(&format!("loser {loser}"));
        w.advance(30 * S);
        assert_eq!(w.nodes[loser].hellos_sent, 3);
        assert_eq!(w.nodes[1 - loser].hellos_sent, 3);
    }
}

/// The invitations `s` sent (to any peer) among its outputs so far.
fn invitations(s: &mut Swarm) -> usize {
    std::iter::from_fn(|| s.poll_output())
        .filter(|o| {
            matches!(o, Output::SendSignal(ClientMessage::Signal { data, .. })
                if PeerSignal::parse(data.get()) == Ok(PeerSignal::Invite))
        })
        .count()
}

#[test]
fn an_invitation_that_brings_no_offer_is_sent_again() {
    // "a" offers to us ("m") by the glare rule; we invite it, and nothing comes back (lost on
    // the way, or "a" not offering for its own reasons): we do not wait for ever.
    let (mut s, _, _) = joined_pair();
    let a = PeerId::new("a").unwrap();
    s.handle(
        Input::Server(ServerMessage::PeerJoined { id: a.clone() }),
        Duration::ZERO,
    );
    assert_eq!(invitations(&mut s), 1);
    let mut now = Duration::ZERO;
    while s.peer_state(&a) != Some(PeerState::Failed) {
        now = s.poll_timeout().expect("a deadline");
        assert!(now <= 15 * S, "still waiting at {now:?}");
        s.handle_timeout(now);
    }
    assert_eq!(now, 15 * S);
    assert_eq!(invitations(&mut s), 0);
    // Tried again later, like any failed connection: a new invitation.
    now = s.poll_timeout().expect("a retry");
    s.handle_timeout(now);
    assert_eq!(s.peer_state(&a), Some(PeerState::New));
    assert_eq!(invitations(&mut s), 1);
}

#[test]
fn hellos_that_never_arrive_are_resent_with_backoff_until_the_deadline() {
    let mut w = World::new(2, 20);
    w.nodes[1].lose_hellos = usize::MAX;
    w.join_all();
    let one = w.nodes[1].id.clone().unwrap();
    w.advance(16 * S);
    assert_eq!(w.nodes[0].swarm.peer_state(&one), Some(PeerState::Failed));
    // 250 ms, doubling up to 2 s, within the 15 s deadline: about ten, not sixty.
    let sent = w.nodes[1].hellos_sent;
    assert!((8..=12).contains(&sent), "{sent} hellos");
}

#[test]
fn a_failed_peer_is_sent_no_more_hellos() {
    let mut w = World::new(2, 20);
    w.nodes[1].lose_hellos = usize::MAX;
    w.join_all();
    let zero = w.nodes[0].id.clone().unwrap();
    w.advance(Duration::from_millis(300));
    // Node 1 fails node 0 while its hello is still unconfirmed; node 0 stays silent (no new
    // connection comes of node 1's retries).
    w.nodes[0].mute = true;
    w.input(1, Input::PeerError(zero.clone(), "browser refused".into()));
    w.settle();
    assert_eq!(w.nodes[1].swarm.peer_state(&zero), Some(PeerState::Failed));
    let sent = w.nodes[1].hellos_sent;
    w.advance(60 * S);
    assert_eq!(w.nodes[1].hellos_sent, sent);
}

#[test]
fn hello_bodies_round_trip_and_malformed_ones_are_refused() {
    let cases = [
        (0, false, false),
        (u64::MAX, true, false),
        (0x0102_0304_0506_0708, true, true),
    ];
    for (key, seen, ask) in cases {
        assert_eq!(
            parse_hello(&hello_body(key, seen, ask)),
            Some((key, seen, ask))
        );
    }
    // A hello that says it has not had ours asks for it whatever its flag.
    assert_eq!(hello_body(7, false, true), hello_body(7, false, false));
    // The first version: the key alone, from a sender that never waits for the flag.
    assert_eq!(parse_hello(&7u64.to_be_bytes()), Some((7, true, false)));
    let mut three = hello_body(7, true, true).to_vec();
    three[8] = 3;
    for bad in [&[][..], &[1, 2, 3], &three, &[0; 10]] {
        assert_eq!(parse_hello(bad), None, "{bad:?}");
    }
}

/// One thing that happens in [`a_room_under_churn_ends_as_a_full_mesh`].
#[derive(Debug, Clone)]
enum Step {
    /// A node's user leaves the room.
    Leave(usize),
    /// A node's tab reloads (or one that left joins again): a new swarm, its old connections
    /// closed.
    Reload(usize),
    /// The signaling server goes away: every socket closes, rooms are forgotten.
    ServerDown,
    /// It comes back, handing out ids starting with this letter.
    ServerUp(char),
    /// A node's signals are lost, or not.
    Mute(usize, bool),
    /// A node's next hellos are lost.
    LoseHellos(usize, usize),
    /// ICE between two nodes changes (both ends see it): lost, back, or given up.
    Ice(usize, usize, IceState),
    /// The data channel between two nodes closes (both ends see it).
    CloseChannel(usize, usize),
    /// The browser rejects something of a node's connection to another.
    PeerError(usize, usize),
    /// Time passes (ms).
    Wait(u64),
}

/// Nodes in the churn test.
const CHURN_NODES: usize = 4;

/// No latency (half the runs), or up to 1–300 ms with a seed.
#[cfg(not(target_arch = "wasm32"))]
fn arb_latency() -> impl proptest::strategy::Strategy<Value = Option<(Duration, u64)>> {
    use proptest::prelude::*;
    prop_oneof![
        Just(None),
        (1u64..300, any::<u64>()).prop_map(|(ms, seed)| Some((Duration::from_millis(ms), seed))),
    ]
}

// (proptest is a native dev-dependency only.)
#[cfg(not(target_arch = "wasm32"))]
fn arb_step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let n = CHURN_NODES;
    prop_oneof![
        1 => (0..n).prop_map(Step::Leave),
        3 => (0..n).prop_map(Step::Reload),
        1 => Just(Step::ServerDown),
        2 => proptest::char::range('a', 'z').prop_map(Step::ServerUp),
        2 => (0..n, any::<bool>()).prop_map(|(i, m)| Step::Mute(i, m)),
        1 => (0..n, 1usize..4).prop_map(|(i, k)| Step::LoseHellos(i, k)),
        3 => (0..n, 0..n, prop_oneof![
            Just(IceState::Disconnected),
            Just(IceState::Connected),
            Just(IceState::Failed),
        ]).prop_map(|(i, j, state)| Step::Ice(i, j, state)),
        1 => (0..n, 0..n).prop_map(|(i, j)| Step::CloseChannel(i, j)),
        1 => (0..n, 0..n).prop_map(|(i, j)| Step::PeerError(i, j)),
        6 => (0u64..20_000).prop_map(Step::Wait),
    ]
}

impl World {
    /// The public id under which node `i` holds its connection to node `j`, if it has one.
    fn link(&self, i: usize, j: usize) -> Option<PeerId> {
        self.nodes[i]
            .conns
            .iter()
            .find(|(_, (remote, _))| *remote == j)
            .map(|(id, _)| id.clone())
    }

    /// Node `i`'s tab is gone: the server sees its socket close, its peers their channels; a
    /// new tab (a new swarm) joins in its place.
    fn reload(&mut self, i: usize, seed: u64) {
        self.disconnect(i);
        for (_, (remote, conn)) in std::mem::take(&mut self.nodes[i].conns) {
            if let Some(back) = self.conn_at(remote, conn) {
                self.on_channel(i, remote, back.clone(), conn, Input::ChannelClosed(back));
            }
        }
        let mut cfg = Config::new(room(), seed);
        cfg.max_peers = self.max_peers;
        let node = &mut self.nodes[i];
        node.swarm = Swarm::new(cfg);
        node.pending_inputs.clear();
        node.mute = false;
        node.lose_hellos = 0;
    }
}

/// Runs `steps` in a room of [`CHURN_NODES`], then lets it all stop (the server up, nothing
/// lost) for 300 s: the world, and who is in the room.
fn churn(steps: &[Step]) -> (World, [bool; CHURN_NODES]) {
    churn_within(steps, 20, None)
}

/// The same with a connection budget of `max_peers` for every node and, where given, messages
/// between nodes taking up to that long (drawn with that seed; see [`World::latency`]).
fn churn_within(
    steps: &[Step],
    max_peers: usize,
    latency: Option<(Duration, u64)>,
) -> (World, [bool; CHURN_NODES]) {
    let mut w = World::new(CHURN_NODES, max_peers);
    w.join_all();
    if let Some((max, seed)) = latency {
        w.latency = Some(max);
        w.rng = crate::swarm::Rng::new(seed);
    }
    let mut in_room = [true; CHURN_NODES];
    for (k, step) in steps.iter().enumerate() {
        match *step {
            Step::Leave(i) => {
                in_room[i] = false;
                w.input(i, Input::Leave);
            }
            Step::Reload(i) => {
                in_room[i] = true;
                w.reload(i, 5000 + k as u64);
            }
            Step::ServerDown => {
                w.server_up = false;
                w.members.clear();
                for i in 0..CHURN_NODES {
                    w.end_session(i);
                    if w.nodes[i].id.take().is_some() {
                        w.input(i, Input::SignalClosed);
                    }
                }
            }
            Step::ServerUp(prefix) => {
                w.server_up = true;
                w.id_prefix = prefix;
            }
            Step::Mute(i, m) => w.nodes[i].mute = m,
            Step::LoseHellos(i, k) => w.nodes[i].lose_hellos = k,
            Step::Ice(i, j, state) => {
                for (a, b) in [(i, j), (j, i)] {
                    if let Some(id) = w.link(a, b) {
                        w.input(a, Input::Ice(id, state));
                    }
                }
            }
            Step::CloseChannel(i, j) => {
                for (a, b) in [(i, j), (j, i)] {
                    if let Some(id) = w.link(a, b) {
                        w.input(a, Input::ChannelClosed(id));
                    }
                }
            }
            Step::PeerError(i, j) => {
                if let Some(id) = w.link(i, j) {
                    w.input(i, Input::PeerError(id, "the browser refused it".into()));
                }
            }
            Step::Wait(ms) => w.advance(Duration::from_millis(ms)),
        }
        w.settle();
    }
    w.server_up = true;
    for n in &mut w.nodes {
        n.mute = false;
        n.lose_hellos = 0;
    }
    w.advance(300 * S);
    (w, in_room)
}

/// Every node in the room holds exactly one connected peer for each other node in the room,
/// and nothing else; a node that left holds none.
fn full_mesh(w: &World, in_room: &[bool; CHURN_NODES]) -> Result<(), String> {
    let members = in_room.iter().filter(|r| **r).count();
    for i in 0..CHURN_NODES {
        let peers: Vec<(PeerId, PeerState)> = w.nodes[i]
            .swarm
            .peers()
            .map(|(id, s)| (id.clone(), s))
            .collect();
        if !in_room[i] {
            if !peers.is_empty() {
                return Err(format!("node {i} left but holds {peers:?}"));
            }
            continue;
        }
        let mut remotes: Vec<usize> = w
            .connected(i)
            .iter()
            .filter_map(|id| w.nodes[i].conns.get(id).map(|(r, _)| *r))
            .collect();
        remotes.sort_unstable();
        let others: Vec<usize> = (0..CHURN_NODES)
            .filter(|j| *j != i && in_room[*j])
            .collect();
        if remotes != others || peers.len() != members - 1 {
            return Err(format!(
                "node {i} is connected to {remotes:?}, not {others:?}; its peers: {peers:?}"
            ));
        }
        if w.nodes[i].swarm.signal_state() != SignalState::Open {
            return Err(format!("node {i}'s signaling is not open"));
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

    /// Tabs reload and leave, the server restarts with new ids, signals and hellos are lost,
    /// ICE drops and browsers reject things: nothing panics, and once it all stops, every
    /// node in the room holds exactly one connected peer for each other node in the room,
    /// and nothing else.
    #[test]
    fn a_room_under_churn_ends_as_a_full_mesh(
        steps in proptest::collection::vec(arb_step(), 0..30),
        latency in arb_latency(),
    ) {
        let (w, in_room) = churn_within(&steps, 20, latency);
        if let Err(e) = full_mesh(&w, &in_room) {
            return Err(proptest::test_runner::TestCaseError::fail(e));
        }
    }
}

/// Within the budget: no tab holds more active connections than its budget, every connection
/// is known to both ends, and no two tabs in the room that both have room are left apart.
fn within_budget(w: &World, in_room: &[bool; CHURN_NODES]) -> Result<(), String> {
    let mut links = vec![Vec::new(); CHURN_NODES];
    for i in (0..CHURN_NODES).filter(|i| in_room[*i]) {
        let active = w.nodes[i]
            .swarm
            .peers()
            .filter(|(_, s)| {
                matches!(
                    s,
                    PeerState::Connecting | PeerState::Connected | PeerState::Reconnecting
                )
            })
            .count();
        if active > w.max_peers {
            return Err(format!("node {i} has {active} connections"));
        }
        links[i] = w
            .connected(i)
            .iter()
            .filter_map(|id| w.nodes[i].conns.get(id).map(|(r, _)| *r))
            .collect();
    }
    for i in 0..CHURN_NODES {
        for &j in &links[i] {
            if !links[j].contains(&i) {
                return Err(format!(
                    "node {i} is connected to {j}, not {j} to {i}: {links:?}"
                ));
            }
        }
    }
    let room = |i: usize| in_room[i] && links[i].len() < w.max_peers;
    for i in 0..CHURN_NODES {
        for j in i + 1..CHURN_NODES {
            if room(i) && room(j) && !links[i].contains(&j) {
                let peers: Vec<_> = w.nodes[i].swarm.peers().collect();
                return Err(format!(
                    "nodes {i} and {j} both have room and are apart: {links:?}; {i}'s peers: {peers:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

    /// The same churn in a room where each tab connects to at most one or two others.
    #[test]
    fn a_room_under_churn_within_a_budget_leaves_no_two_tabs_with_room_apart(
        steps in proptest::collection::vec(arb_step(), 0..30),
        max_peers in 1usize..=2,
        latency in arb_latency(),
    ) {
        let (w, in_room) = churn_within(&steps, max_peers, latency);
        if let Err(e) = within_budget(&w, &in_room) {
            return Err(proptest::test_runner::TestCaseError::fail(e));
        }
    }
}

/// The cases the property test above found, each of which left two nodes in the room
/// unconnected for good (or one holding a peer that was gone), kept as they were found.
#[test]
fn churn_cases_once_found_end_as_a_full_mesh() {
    use Step::*;
    let cases: [(&str, &[Step]); 9] = [
        (
            "a connection failed while signaling was down was kept, failed, forever",
            &[ServerDown, PeerError(0, 1), Leave(1)],
        ),
        (
            "an invitation to offer that was lost was never sent again",
            &[PeerError(2, 0), Mute(2, true), Wait(3000)],
        ),
        (
            "a data channel that closed with both in the room was never opened again",
            &[CloseChannel(0, 1)],
        ),
        (
            "after a server restart, a duplicate closed at once left the peer whose hello \
             was lost with a stranger it kept trying",
            &[ServerDown, LoseHellos(1, 1), ServerUp('a'), Wait(173)],
        ),
        (
            "the same, while ICE was down: neither could reach the other again",
            &[
                ServerDown,
                Ice(2, 0, IceState::Disconnected),
                LoseHellos(2, 3),
                ServerUp('a'),
                Wait(227),
            ],
        ),
        (
            "a peer whose connection had failed was taken for a live one when met again (a \
             connection of its found to be a duplicate, closed)",
            &[
                Reload(0),
                Mute(0, true),
                PeerError(1, 0),
                Wait(3000),
                ServerDown,
            ],
        ),
        (
            "a lost hello saying ours was had left that side connecting until it failed",
            &[
                LoseHellos(1, 2),
                PeerError(0, 2),
                ServerUp('a'),
                PeerError(0, 2),
                ServerUp('a'),
                Wait(0),
                LoseHellos(0, 1),
                Reload(0),
                LoseHellos(0, 2),
                ServerDown,
                Wait(250),
            ],
        ),
        (
            "a connection met again under new ids was taken for a live one while it was \
             still connecting (it had been connected once)",
            &[LoseHellos(1, 2), Reload(2), ServerDown],
        ),
        (
            "ICE lost while signaling was down: the restart could not be sent",
            &[ServerDown, Wait(10835), Ice(1, 0, IceState::Disconnected)],
        ),
    ];
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|(what, steps)| {
            let (w, in_room) = churn(steps);
            full_mesh(&w, &in_room)
                .err()
                .map(|e| format!("{what}: {e}"))
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// The cases the budget's property test found, kept as they were found.
#[test]
fn churn_cases_once_found_within_a_budget_leave_no_two_tabs_with_room_apart() {
    use Step::*;
    let ms = Duration::from_millis;
    let cases: [(&str, &[Step], usize, _); 4] = [
        (
            "each had declined the other while full, and neither asked again once it had room",
            &[Reload(0), Reload(1), Leave(1)],
            2,
            None,
        ),
        (
            "a duplicate found and closed freed room that was not used",
            &[ServerDown, ServerUp('a'), Leave(0), Wait(178), Reload(1)],
            2,
            None,
        ),
        (
            "an ICE restart's offer reached a tab that had just closed its end, which answered \
             it with a new connection (the world had taken that for the old one)",
            &[
                Ice(0, 2, IceState::Failed),
                PeerError(3, 1),
                PeerError(2, 0),
                Wait(100),
                Reload(3),
                PeerError(0, 0),
            ],
            2,
            Some((ms(72), 3060749219591874321)),
        ),
        (
            "the same with budget 1: messages of the old connection reached the new one that \
             answered the restart (the world had bound them by the offerer's connection alone)",
            &[
                Reload(0),
                ServerUp('y'),
                Reload(3),
                Wait(1021),
                ServerUp('t'),
                Reload(2),
                Wait(632),
                Ice(2, 3, IceState::Failed),
                ServerUp('a'),
                Reload(0),
            ],
            1,
            Some((ms(201), 224973938853103057)),
        ),
    ];
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|(what, steps, budget, latency)| {
            let (w, in_room) = churn_within(steps, *budget, *latency);
            within_budget(&w, &in_room)
                .err()
                .map(|e| format!("{what}: {e}"))
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Anything a driver, a server or peers may hand one swarm (see [`Spec::input`]).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone)]
enum Spec {
    SignalOpened,
    SignalClosed,
    Welcome(usize, Vec<usize>),
    Joined(usize),
    Left(usize),
    Signal(usize, String),
    Local(usize, bool),
    Applied(usize),
    Ice(usize, usize),
    Open(usize),
    Hello(usize, u64, bool, bool),
    Closed(usize),
    Error(usize),
    Leave,
}

#[cfg(not(target_arch = "wasm32"))]
impl Spec {
    fn input(&self) -> Input {
        let p = |i: &usize| PeerId::new(["a", "b", "m", "n", "y", "z"][*i]).unwrap();
        match self {
            Spec::SignalOpened => Input::SignalOpened,
            Spec::SignalClosed => Input::SignalClosed,
            Spec::Welcome(id, peers) => Input::Server(ServerMessage::Welcome {
                id: p(id),
                peers: peers.iter().map(p).collect(),
                ice_servers: vec![],
            }),
            Spec::Joined(i) => Input::Server(ServerMessage::PeerJoined { id: p(i) }),
            Spec::Left(i) => Input::Server(ServerMessage::PeerLeft { id: p(i) }),
            Spec::Signal(i, data) => Input::Server(ServerMessage::Signal {
                from: p(i),
                data: crate::signal::raw_json(data.clone()).unwrap_or_else(|_| raw("0")),
            }),
            Spec::Local(i, offer) => Input::LocalSignal(
                p(i),
                if *offer {
                    PeerSignal::Offer { sdp: "o".into() }
                } else {
                    candidate()
                },
            ),
            Spec::Applied(i) => Input::RemoteApplied(p(i)),
            Spec::Ice(i, s) => Input::Ice(
                p(i),
                [
                    IceState::Checking,
                    IceState::Connected,
                    IceState::Disconnected,
                    IceState::Failed,
                    IceState::Closed,
                ][*s],
            ),
            Spec::Open(i) => Input::ChannelOpen(p(i)),
            Spec::Hello(i, key, seen, ask) => Input::Hello(p(i), *key, *seen, *ask),
            Spec::Closed(i) => Input::ChannelClosed(p(i)),
            Spec::Error(i) => Input::PeerError(p(i), "refused".into()),
            Spec::Leave => Input::Leave,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn arb_spec() -> impl proptest::strategy::Strategy<Value = Spec> {
    use proptest::prelude::*;
    let peer = 0..6usize;
    let signal = prop_oneof![
        Just(r#"{"kind":"offer","sdp":"o"}"#.to_string()),
        Just(r#"{"kind":"answer","sdp":"a"}"#.to_string()),
        Just(r#"{"kind":"candidate","candidate":"c","sdpMid":"0"}"#.to_string()),
        Just(r#"{"kind":"invite"}"#.to_string()),
        Just(r#"{"kind":"bye","reason":"full"}"#.to_string()),
        "[ -~]{0,12}",
    ];
    prop_oneof![
        Just(Spec::SignalOpened),
        Just(Spec::SignalClosed),
        (peer.clone(), proptest::collection::vec(peer.clone(), 0..4))
            .prop_map(|(i, ps)| Spec::Welcome(i, ps)),
        peer.clone().prop_map(Spec::Joined),
        peer.clone().prop_map(Spec::Left),
        (peer.clone(), signal).prop_map(|(i, d)| Spec::Signal(i, d)),
        (peer.clone(), any::<bool>()).prop_map(|(i, o)| Spec::Local(i, o)),
        peer.clone().prop_map(Spec::Applied),
        (peer.clone(), 0..5usize).prop_map(|(i, s)| Spec::Ice(i, s)),
        peer.clone().prop_map(Spec::Open),
        (peer.clone(), 0u64..3, any::<bool>(), any::<bool>())
            .prop_map(|(i, k, seen, ask)| Spec::Hello(i, k, seen, ask)),
        peer.clone().prop_map(Spec::Closed),
        peer.prop_map(Spec::Error),
        Just(Spec::Leave),
    ]
}

#[cfg(not(target_arch = "wasm32"))]
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

    /// One swarm handed anything, in any order, with time passing: it never panics, never
    /// holds more connections than its budget, and its next deadline is never in the past.
    #[test]
    fn a_swarm_handed_anything_in_any_order_keeps_its_rules(
        inputs in proptest::collection::vec((arb_spec(), 0u64..20_000), 0..60),
        max_peers in 1usize..4,
    ) {
        let mut cfg = Config::new(room(), 9);
        cfg.max_peers = max_peers;
        let mut s = Swarm::new(cfg);
        let mut now = Duration::ZERO;
        for (spec, wait) in inputs {
            s.handle(spec.input(), now);
            while s.poll_output().is_some() {}
            let target = now + Duration::from_millis(wait);
            while let Some(t) = s.poll_timeout().filter(|t| *t <= target) {
                proptest::prop_assert!(t >= now, "a deadline in the past: {:?} < {:?}", t, now);
                now = t;
                s.handle_timeout(now);
                while s.poll_output().is_some() {}
            }
            now = target;
            let active = s
                .peers()
                .filter(|(_, st)| {
                    matches!(st, PeerState::Connecting | PeerState::Connected | PeerState::Reconnecting)
                })
                .count();
            proptest::prop_assert!(active <= max_peers, "{} active, budget {}", active, max_peers);
        }
    }
}
