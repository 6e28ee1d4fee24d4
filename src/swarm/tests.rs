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
    /// Hellos this node sent.
    hellos_sent: usize,
    /// Reply to offers with a reversed role (breaks the glare rule).
    pending_inputs: Vec<Input>,
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
}

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
                    hellos_sent: 0,
                    pending_inputs: Vec::new(),
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
        }
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
        self.input(to, Input::Server(msg));
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

    /// Advances the clock to `t`, firing deadlines on the way.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            self.settle();
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.swarm.poll_timeout())
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
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
        self.nodes[remote]
            .conns
            .iter()
            .find(|(_, (_, c))| *c == conn)
            .map(|(id, _)| id.clone())
    }

    fn peer_command(&mut self, i: usize, id: PeerId, cmd: PeerCommand) {
        match cmd {
            PeerCommand::Create { offerer } => {
                let remote = self
                    .members
                    .iter()
                    .find(|(m, _)| m == &id)
                    .map(|(_, n)| *n)
                    .or_else(|| self.nodes.iter().position(|n| n.id.as_ref() == Some(&id)))
                    .expect("the remote is on the server");
                let conn = if offerer {
                    self.next_conn += 1;
                    self.next_conn
                } else {
                    u64::MAX // set by the offer
                };
                self.nodes[i].conns.insert(id.clone(), (remote, conn));
                if offerer {
                    self.nodes[i].created_offers += 1;
                    self.local_offer(i, &id);
                }
            }
            PeerCommand::ApplyRemote(PeerSignal::Offer { sdp }) => {
                let conn: u64 = sdp.trim_start_matches("offer-").parse().unwrap();
                if let Some(c) = self.nodes[i].conns.get_mut(&id) {
                    c.1 = conn;
                }
                self.input(i, Input::RemoteApplied(id.clone()));
                self.input(
                    i,
                    Input::LocalSignal(
                        id.clone(),
                        PeerSignal::Answer {
                            sdp: format!("answer-{conn}"),
                        },
                    ),
                );
                self.input(i, Input::LocalSignal(id, candidate()));
            }
            PeerCommand::ApplyRemote(PeerSignal::Answer { .. }) => {
                self.input(i, Input::RemoteApplied(id.clone()));
                // ICE connects: both channels open and say hello.
                let (remote, conn) = self.nodes[i].conns[&id];
                let Some(back) = self.conn_at(remote, conn) else {
                    return;
                };
                self.input(i, Input::Ice(id.clone(), IceState::Connected));
                self.input(i, Input::ChannelOpen(id));
                self.input(remote, Input::Ice(back.clone(), IceState::Connected));
                self.input(remote, Input::ChannelOpen(back));
            }
            PeerCommand::SendHello { seen } => {
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
                let key = self.nodes[i].swarm.key();
                self.input(remote, Input::Hello(back, key, seen));
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
                        self.nodes[remote].conns.remove(&back);
                        self.input(remote, Input::ChannelClosed(back));
                    }
                }
            }
        }
    }

    fn local_offer(&mut self, i: usize, id: &PeerId) {
        let conn = self.nodes[i].conns[id].1;
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
    for (key, seen) in [(0, false), (u64::MAX, true), (0x0102_0304_0506_0708, true)] {
        assert_eq!(parse_hello(&hello_body(key, seen)), Some((key, seen)));
    }
    // The first version: the key alone, from a sender that never waits for the flag.
    assert_eq!(parse_hello(&7u64.to_be_bytes()), Some((7, true)));
    let mut two = hello_body(7, true).to_vec();
    two[8] = 2;
    for bad in [&[][..], &[1, 2, 3], &two, &[0; 10]] {
        assert_eq!(parse_hello(bad), None, "{bad:?}");
    }
}
