//! Live membership: rooms, their peers, and each peer's bounded outgoing queue.

use axum::extract::ws::Utf8Bytes;
use base64::Engine;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use swarmdrop::signal::{ErrorCode, PeerId, RoomName, ServerMessage};
use tokio::sync::{mpsc, Notify};

/// A frame waiting to be written to one client.
#[derive(Debug)]
pub(crate) enum Out {
    /// A text frame; `relayed` is when a relayed signal was read, for the latency histogram.
    Text(Utf8Bytes, Option<Instant>),
    /// A keepalive ping.
    Ping,
    /// A close frame, after which the writer stops.
    Close(u16, &'static str),
    /// The client closed first: send what is queued, with the reply to its close that the
    /// WebSocket queued itself, then stop.
    Closed,
}

/// The sending side of one client's outgoing queue, bounded by a count: a client whose queue
/// is full reads too slowly and is kicked (never buffered without bound).
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Out>,
    queued: Arc<AtomicUsize>,
    cap: usize,
    /// Notified when the client must be dropped.
    pub kick: Arc<Notify>,
}

/// The receiving side of a client's queue, read by its writer task.
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<Out>,
    queued: Arc<AtomicUsize>,
}

/// A queue of at most `cap` frames. (An unbounded channel with an atomic count: tokio's bounded
/// channel takes a lock per received frame, which showed in the relay profile.)
pub(crate) fn outbox(cap: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: Arc::clone(&queued),
            cap,
            kick: Arc::new(Notify::new()),
        },
        Inbox { rx, queued },
    )
}

impl Outbox {
    /// Queues `out` without waiting; a full queue kicks the client. False if not queued.
    pub fn offer(&self, out: Out) -> bool {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.kick.notify_one();
            return false;
        }
        self.push(out)
    }

    /// Queues `out` past the bound: the last frame of a connection (its close).
    pub fn push(&self, out: Out) -> bool {
        self.tx.send(out).is_ok()
    }
}

impl Inbox {
    /// The next frame, waiting for one.
    pub async fn recv(&mut self) -> Option<Out> {
        let out = self.rx.recv().await;
        self.took(&out);
        out
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Out> {
        let out = self.rx.try_recv().ok();
        self.took(&out);
        out
    }

    fn took(&self, out: &Option<Out>) {
        if out.is_some() {
            // `push` frames were never counted; never go below zero for them.
            let _ = self
                .queued
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

/// Where a room member is connected.
#[derive(Clone)]
pub(crate) enum Route {
    /// To this instance: its outgoing queue.
    Local(Outbox),
    /// To another instance (rooms shared through Redis): that instance's id.
    Remote(Arc<str>),
}

/// How the rest of the server reaches one joined peer.
#[derive(Clone)]
pub(crate) struct Member {
    pub id: PeerId,
    pub route: Route,
}

impl Member {
    /// A peer connected to this instance.
    pub fn local(id: PeerId, outbox: Outbox) -> Self {
        Member {
            id,
            route: Route::Local(outbox),
        }
    }

    fn outbox(&self) -> Option<&Outbox> {
        match &self.route {
            Route::Local(o) => Some(o),
            Route::Remote(_) => None,
        }
    }

    fn instance(&self) -> Option<&Arc<str>> {
        match &self.route {
            Route::Local(_) => None,
            Route::Remote(i) => Some(i),
        }
    }
}

/// Where a relayed signal went.
pub(crate) enum Delivery {
    /// Queued for a peer on this instance.
    Queued,
    /// The peer is on this other instance: the data must go through Redis.
    Remote(Arc<str>, Box<RawValue>),
}

#[derive(Default)]
struct Inner {
    /// Rooms with at least one local member; remote members are mirrored for relaying.
    rooms: HashMap<RoomName, Vec<Member>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The frame relaying `data` from `from`, stamped here.
fn signal_frame(from: &PeerId, data: Box<RawValue>) -> Utf8Bytes {
    ServerMessage::Signal {
        from: from.clone(),
        data,
    }
    .to_json()
    .into()
}

/// Tells the local members of `peers` one frame.
fn tell_locals(peers: &[Member], msg: ServerMessage) {
    let note: Utf8Bytes = msg.to_json().into();
    for m in peers {
        if let Some(o) = m.outbox() {
            o.offer(Out::Text(note.clone(), None));
        }
    }
}

/// Distinct instances among the remote members of `peers`.
fn instances_of<'a>(peers: impl IntoIterator<Item = &'a Member>) -> Vec<Arc<str>> {
    let mut out: Vec<Arc<str>> = Vec::new();
    for i in peers.into_iter().filter_map(Member::instance) {
        if !out.contains(i) {
            out.push(Arc::clone(i));
        }
    }
    out
}

/// Every room and connection of this server instance.
pub struct Hub {
    inner: Mutex<Inner>,
    connections: AtomicUsize,
}

/// Holds one admitted connection's place; dropping it frees the place.
pub(crate) struct Admission<'a> {
    hub: &'a Hub,
    ip: IpAddr,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.hub.connections.fetch_sub(1, Ordering::Relaxed);
        let mut inner = self.hub.lock();
        if let Some(n) = inner.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Hub {
            inner: Mutex::new(Inner::default()),
            connections: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the whole server down with a poisoned lock.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Rooms with at least one peer on this instance.
    pub fn rooms(&self) -> usize {
        self.lock().rooms.len()
    }

    /// Rooms, and peers in all rooms, on this instance.
    pub fn rooms_and_peers(&self) -> (usize, usize) {
        let inner = self.lock();
        let peers = inner
            .rooms
            .values()
            .flatten()
            .filter(|m| m.outbox().is_some())
            .count();
        (inner.rooms.len(), peers)
    }

    /// Takes a connection place for `ip` within the limits.
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<Admission<'_>, (ErrorCode, &'static str)> {
        let mut inner = self.lock();
        if self.connections.load(Ordering::Relaxed) >= max_total {
            return Err((ErrorCode::ServerFull, "server-full"));
        }
        let n = inner.per_ip.entry(ip).or_default();
        if *n >= max_per_ip {
            return Err((ErrorCode::TooManyConnections, "per-ip"));
        }
        *n += 1;
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(Admission { hub: self, ip })
    }

    /// Adds local `member` to `room` within this instance's limits and tells the others;
    /// returns who was there, oldest first.
    pub(crate) fn join(
        &self,
        room: &RoomName,
        member: Member,
        max_peers: usize,
        max_rooms: usize,
    ) -> Result<Vec<PeerId>, ErrorCode> {
        let mut inner = self.lock();
        let rooms_now = inner.rooms.len();
        let peers = match inner.rooms.get_mut(room) {
            Some(p) => p,
            None if rooms_now >= max_rooms => return Err(ErrorCode::TooManyRooms),
            None => inner.rooms.entry(room.clone()).or_default(),
        };
        if peers.len() >= max_peers {
            return Err(ErrorCode::RoomFull);
        }
        Ok(enter(peers, member))
    }

    /// Adds local `member` to `room` after Redis admitted it (limits were checked there), with
    /// `remotes` (peer, instance) as Redis knows the room; returns who was there.
    pub(crate) fn join_shared(
        &self,
        room: &RoomName,
        member: Member,
        remotes: &[(PeerId, Arc<str>)],
    ) -> Vec<PeerId> {
        let mut inner = self.lock();
        let peers = inner.rooms.entry(room.clone()).or_default();
        for (id, inst) in remotes {
            add_remote(peers, id, inst);
        }
        enter(peers, member)
    }

    /// Removes local `id` from `room` and tells the others; the room goes when no local member
    /// is left. Returns the other instances with members in the room.
    pub(crate) fn leave(&self, room: &RoomName, id: &PeerId) -> Vec<Arc<str>> {
        let mut inner = self.lock();
        let Some(peers) = inner.rooms.get_mut(room) else {
            return Vec::new();
        };
        let before = peers.len();
        peers.retain(|m| &m.id != id);
        if peers.len() == before {
            return Vec::new();
        }
        tell_locals(peers, ServerMessage::PeerLeft { id: id.clone() });
        let others = instances_of(peers.iter());
        if peers.iter().all(|m| m.outbox().is_none()) {
            inner.rooms.remove(room);
        }
        others
    }

    /// Queues `data` from `from` for peer `to` in `room`, or hands it back with the instance
    /// the peer is on; `UnknownPeer` if no such peer is in that room.
    pub(crate) fn relay(
        &self,
        room: &RoomName,
        from: &PeerId,
        to: &PeerId,
        data: Box<RawValue>,
        read_at: Instant,
    ) -> Result<Delivery, ErrorCode> {
        let inner = self.lock();
        let target = inner
            .rooms
            .get(room)
            .and_then(|peers| peers.iter().find(|m| &m.id == to));
        match target.map(|m| &m.route) {
            Some(Route::Local(o)) => {
                // Queueing never waits, so it is done under the lock (no clone of the member).
                o.offer(Out::Text(signal_frame(from, data), Some(read_at)));
                Ok(Delivery::Queued)
            }
            Some(Route::Remote(i)) => Ok(Delivery::Remote(Arc::clone(i), data)),
            None => Err(ErrorCode::UnknownPeer),
        }
    }

    /// A signal from `from` on instance `src` for local peer `to`: delivered only if `from` is
    /// known to be in `room` on `src` and `to` is here (nobody speaks for another peer).
    pub(crate) fn relay_from_remote(
        &self,
        room: &RoomName,
        from: &PeerId,
        src: &str,
        to: &PeerId,
        data: Box<RawValue>,
    ) -> bool {
        let inner = self.lock();
        let Some(peers) = inner.rooms.get(room) else {
            return false;
        };
        let sender_ok = peers
            .iter()
            .any(|m| &m.id == from && m.instance().is_some_and(|i| &**i == src));
        match peers.iter().find(|m| &m.id == to).and_then(Member::outbox) {
            Some(o) if sender_ok => o.offer(Out::Text(signal_frame(from, data), None)),
            _ => false,
        }
    }

    /// Peer `id` on instance `src` joined `room`: mirrored if the room has local members.
    pub(crate) fn remote_joined(&self, room: &RoomName, id: &PeerId, src: &Arc<str>) {
        let mut inner = self.lock();
        if let Some(peers) = inner.rooms.get_mut(room) {
            add_remote(peers, id, src);
        }
    }

    /// Peer `id` on instance `src` left `room`.
    pub(crate) fn remote_left(&self, room: &RoomName, id: &PeerId, src: &str) {
        let mut inner = self.lock();
        if let Some(peers) = inner.rooms.get_mut(room) {
            remove_remote(peers, |m| {
                &m.id == id && m.instance().is_some_and(|i| &**i == src)
            });
        }
    }

    /// Instance `src` has exactly `ids` in `room`: its members are made to match.
    pub(crate) fn remote_roster(&self, room: &RoomName, src: &Arc<str>, ids: &[PeerId]) {
        let mut inner = self.lock();
        if let Some(peers) = inner.rooms.get_mut(room) {
            remove_remote(peers, |m| {
                m.instance().is_some_and(|i| i == src) && !ids.contains(&m.id)
            });
            for id in ids {
                add_remote(peers, id, src);
            }
        }
    }

    /// Instance `src` is gone: its peers leave every room.
    pub(crate) fn drop_instance(&self, src: &str) {
        let mut inner = self.lock();
        for peers in inner.rooms.values_mut() {
            remove_remote(peers, |m| m.instance().is_some_and(|i| &**i == src));
        }
    }

    /// Every room with its local members (for re-registering with Redis).
    pub(crate) fn local_rooms(&self) -> Vec<(RoomName, Vec<PeerId>)> {
        let inner = self.lock();
        inner
            .rooms
            .iter()
            .map(|(room, peers)| {
                let ids = peers
                    .iter()
                    .filter(|m| m.outbox().is_some())
                    .map(|m| m.id.clone())
                    .collect();
                (room.clone(), ids)
            })
            .collect()
    }

    /// The local members of `room`.
    pub(crate) fn local_members(&self, room: &RoomName) -> Vec<PeerId> {
        let inner = self.lock();
        inner
            .rooms
            .get(room)
            .map(|peers| {
                peers
                    .iter()
                    .filter(|m| m.outbox().is_some())
                    .map(|m| m.id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Other instances with members in `room`, or in any room.
    pub(crate) fn instances(&self, room: Option<&RoomName>) -> Vec<Arc<str>> {
        let inner = self.lock();
        match room {
            Some(r) => inner.rooms.get(r).map(instances_of).unwrap_or_default(),
            None => instances_of(inner.rooms.values().flatten()),
        }
    }
}

/// Tells the room's local members that `member` joined and adds it; returns who was there.
fn enter(peers: &mut Vec<Member>, member: Member) -> Vec<PeerId> {
    tell_locals(
        peers,
        ServerMessage::PeerJoined {
            id: member.id.clone(),
        },
    );
    let present = peers.iter().map(|m| m.id.clone()).collect();
    peers.push(member);
    present
}

/// Mirrors remote peer `id` of instance `inst` in a room and tells the local members, unless
/// it is known already.
fn add_remote(peers: &mut Vec<Member>, id: &PeerId, inst: &Arc<str>) {
    if peers.iter().any(|m| &m.id == id) {
        return;
    }
    tell_locals(peers, ServerMessage::PeerJoined { id: id.clone() });
    peers.push(Member {
        id: id.clone(),
        route: Route::Remote(Arc::clone(inst)),
    });
}

/// Removes the remote members that match and tells the local members.
fn remove_remote(peers: &mut Vec<Member>, gone: impl Fn(&Member) -> bool) {
    let mut left = Vec::new();
    peers.retain(|m| {
        let g = m.instance().is_some() && gone(m);
        if g {
            left.push(m.id.clone());
        }
        !g
    });
    for id in left {
        tell_locals(peers, ServerMessage::PeerLeft { id });
    }
}

/// A new random peer id: 128 bits, URL-safe base64 (22 characters).
pub(crate) fn new_peer_id() -> PeerId {
    let mut bytes = [0u8; 16];
    // The OS RNG failing is not recoverable in any sensible way for a server handing out ids.
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    PeerId::new(text).expect("base64url text is a valid peer id")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> (Member, Inbox) {
        let (outbox, inbox) = outbox(2);
        (Member::local(PeerId::new(id).unwrap(), outbox), inbox)
    }

    #[test]
    fn ids_are_unique_and_url_safe() {
        let a = new_peer_id();
        let b = new_peer_id();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
    }

    #[test]
    fn room_lifecycle_and_limits() {
        let hub = Hub::new();
        let room = RoomName::new("r").unwrap();
        let (a, mut ra) = member("a");
        let (b, _rb) = member("b");
        assert!(hub.join(&room, a, 2, 1).unwrap().is_empty());
        assert_eq!(hub.join(&room, b, 2, 1).unwrap().len(), 1);
        assert!(
            matches!(ra.try_recv(), Some(Out::Text(t, None)) if t.as_str().contains("peer-joined"))
        );
        let (c, _rc) = member("c");
        assert_eq!(hub.join(&room, c.clone(), 2, 1), Err(ErrorCode::RoomFull));
        let other = RoomName::new("s").unwrap();
        assert_eq!(hub.join(&other, c, 2, 1), Err(ErrorCode::TooManyRooms));
        hub.leave(&room, &PeerId::new("b").unwrap());
        assert!(
            matches!(ra.try_recv(), Some(Out::Text(t, None)) if t.as_str().contains("peer-left"))
        );
        hub.leave(&room, &PeerId::new("a").unwrap());
        assert_eq!(hub.rooms(), 0);
    }

    #[test]
    fn full_queue_kicks_the_slow_reader() {
        let hub = Hub::new();
        let room = RoomName::new("r").unwrap();
        let (a, _ra) = member("a");
        let kick = Arc::clone(&a.outbox().unwrap().kick);
        hub.join(&room, a, 10, 10).unwrap();
        let to = PeerId::new("a").unwrap();
        for _ in 0..3 {
            let data = RawValue::from_string("1".into()).unwrap();
            hub.relay(&room, &to, &to, data, Instant::now()).unwrap();
        }
        // The permit stored by notify_one makes this resolve at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), kick.notified())
                .await
                .expect("kicked")
        });
    }

    fn texts(inbox: &mut Inbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Out::Text(t, _)) = inbox.try_recv() {
            out.push(t.as_str().to_string());
        }
        out
    }

    #[test]
    fn remote_members_are_mirrored_checked_and_dropped_with_their_instance() {
        let hub = Hub::new();
        let room = RoomName::new("r").unwrap();
        let (outbox, mut ra) = outbox(16);
        let a = PeerId::new("a").unwrap();
        let j: Arc<str> = "inst-j".into();
        let b = PeerId::new("b").unwrap();
        let present = hub.join_shared(
            &room,
            Member::local(a.clone(), outbox),
            &[(b.clone(), Arc::clone(&j))],
        );
        assert_eq!(present, vec![b.clone()]);
        assert_eq!(hub.instances(Some(&room)), vec![Arc::clone(&j)]);
        // A signal from b, said to come from instance j: delivered, stamped with b.
        let data = || RawValue::from_string("\"x\"".into()).unwrap();
        assert!(hub.relay_from_remote(&room, &b, "inst-j", &a, data()));
        // The same from another instance, or from a peer j never announced: dropped.
        assert!(!hub.relay_from_remote(&room, &b, "inst-k", &a, data()));
        let c = PeerId::new("c").unwrap();
        assert!(!hub.relay_from_remote(&room, &c, "inst-j", &a, data()));
        assert!(matches!(
            hub.relay(&room, &a, &b, data(), Instant::now()),
            Ok(Delivery::Remote(i, _)) if i == j
        ));
        let seen = texts(&mut ra);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].contains("\"from\":\"b\""), "{seen:?}");
        // A roster from j: c joins, b leaves.
        hub.remote_roster(&room, &j, std::slice::from_ref(&c));
        let seen = texts(&mut ra);
        assert!(
            seen[0].contains("peer-left") && seen[0].contains("\"b\""),
            "{seen:?}"
        );
        assert!(
            seen[1].contains("peer-joined") && seen[1].contains("\"c\""),
            "{seen:?}"
        );
        // j dies: c leaves; a, local, stays.
        hub.drop_instance("inst-j");
        let seen = texts(&mut ra);
        assert!(seen.len() == 1 && seen[0].contains("peer-left"), "{seen:?}");
        assert!(hub.instances(None).is_empty());
        assert_eq!(hub.rooms_and_peers(), (1, 1));
        // The last local member leaving drops the room, remote members or not.
        hub.remote_joined(&room, &b, &j);
        hub.leave(&room, &a);
        assert_eq!(hub.rooms(), 0);
    }

    /// One thing that happens to a hub in [`every_member_sees_the_room_as_it_is`].
    #[derive(Debug, Clone)]
    enum Op {
        /// Local peer `l<k>` joins room `r` (if in no room).
        Join(usize, usize),
        /// Local peer `l<k>` leaves its room.
        Leave(usize),
        /// Remote peer `x<k>` (on instance `k % 2`) joined room `r` there.
        RemoteJoined(usize, usize),
        /// It left.
        RemoteLeft(usize, usize),
        /// Instance `i` has exactly these remote peers (of its own) in room `r`.
        Roster(usize, usize, Vec<usize>),
        /// Instance `i` is gone.
        DropInstance(usize),
    }

    fn arb_op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..6usize, 0..2usize).prop_map(|(k, r)| Op::Join(k, r)),
            3 => (0..6usize).prop_map(Op::Leave),
            3 => (0..6usize, 0..2usize).prop_map(|(k, r)| Op::RemoteJoined(k, r)),
            2 => (0..6usize, 0..2usize).prop_map(|(k, r)| Op::RemoteLeft(k, r)),
            2 => (0..2usize, 0..2usize, proptest::collection::vec(0..3usize, 0..3))
                .prop_map(|(i, r, ks)| Op::Roster(i, r, ks)),
            1 => (0..2usize).prop_map(Op::DropInstance),
        ]
    }

    /// A local member: its room and inbox, and the room as it has been told (the others).
    struct Seen {
        room: RoomName,
        inbox: Inbox,
        view: Vec<PeerId>,
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// Local peers join and leave, remote instances report joins, leaves and rosters and
        /// die: every local member's view of its room (who was there when it joined, then
        /// every peer-joined and peer-left) is the room as it is — the same for all of its
        /// local members, never told of a peer twice or of one that was not there — and every
        /// peer in it can be signaled, no other.
        #[test]
        fn every_member_sees_the_room_as_it_is(ops in proptest::collection::vec(arb_op(), 0..60)) {
            let hub = Hub::new();
            let rooms = [RoomName::new("r0").unwrap(), RoomName::new("r1").unwrap()];
            let insts: [Arc<str>; 2] = ["inst-0".into(), "inst-1".into()];
            let local = |k: usize| PeerId::new(format!("l{k}")).unwrap();
            let remote = |k: usize| PeerId::new(format!("x{k}")).unwrap();
            let mut seen: HashMap<usize, Seen> = HashMap::new();
            for op in ops {
                match op {
                    Op::Join(k, r) if !seen.contains_key(&k) => {
                        let (o, inbox) = outbox(1000);
                        let view = hub.join(&rooms[r], Member::local(local(k), o), 100, 100).unwrap();
                        seen.insert(k, Seen { room: rooms[r].clone(), inbox, view });
                    }
                    Op::Join(..) => {}
                    Op::Leave(k) => {
                        if let Some(s) = seen.remove(&k) {
                            hub.leave(&s.room, &local(k));
                        }
                    }
                    Op::RemoteJoined(k, r) => hub.remote_joined(&rooms[r], &remote(k), &insts[k % 2]),
                    Op::RemoteLeft(k, r) => hub.remote_left(&rooms[r], &remote(k), &insts[k % 2]),
                    Op::Roster(i, r, ks) => {
                        let ids: Vec<PeerId> = ks.iter().map(|j| remote(2 * j + i)).collect();
                        hub.remote_roster(&rooms[r], &insts[i], &ids);
                    }
                    Op::DropInstance(i) => hub.drop_instance(&insts[i]),
                }
                // Each member takes in what it was told.
                for (k, s) in seen.iter_mut() {
                    while let Some(out) = s.inbox.try_recv() {
                        let Out::Text(t, _) = out else { continue };
                        match ServerMessage::parse(t.as_str()).unwrap() {
                            ServerMessage::PeerJoined { id } => {
                                proptest::prop_assert!(!s.view.contains(&id), "l{} told {} joined twice", k, id);
                                s.view.push(id);
                            }
                            ServerMessage::PeerLeft { id } => {
                                proptest::prop_assert!(s.view.contains(&id), "l{} told {} left, not there", k, id);
                                s.view.retain(|v| *v != id);
                            }
                            other => proptest::prop_assert!(false, "l{} told {:?}", k, other),
                        }
                    }
                }
                // The members of a room see it alike, themselves included.
                for room in &rooms {
                    let mut views = seen.iter().filter(|(_, s)| s.room == *room).map(|(k, s)| {
                        let mut v = s.view.clone();
                        v.push(local(*k));
                        v.sort();
                        v
                    });
                    if let Some(first) = views.next() {
                        for v in views {
                            proptest::prop_assert_eq!(&v, &first);
                        }
                        let mut locals = hub.local_members(room);
                        locals.sort();
                        let listed: Vec<PeerId> = first.iter().filter(|id| id.as_str().starts_with('l')).cloned().collect();
                        proptest::prop_assert_eq!(listed, locals);
                    } else {
                        proptest::prop_assert!(hub.local_members(room).is_empty());
                    }
                }
                // Whoever a member sees can be signaled; no one else.
                for (k, s) in &seen {
                    for to in (0..6).map(local).chain((0..6).map(remote)) {
                        let data = RawValue::from_string("1".into()).unwrap();
                        let sent = hub.relay(&s.room, &local(*k), &to, data, Instant::now());
                        let member = s.view.contains(&to) || to == local(*k);
                        proptest::prop_assert_eq!(sent.is_ok(), member, "l{} to {}", k, to);
                    }
                    // (Signals to itself, queued just now, are not part of its view.)
                }
                for s in seen.values_mut() {
                    while s.inbox.try_recv().is_some() {}
                }
            }
        }
    }

    #[test]
    fn admission_counts_per_ip() {
        let hub = Hub::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = hub.admit(ip, 10, 1).unwrap();
        assert!(hub.admit(ip, 10, 1).is_err());
        drop(a);
        assert_eq!(hub.connections(), 0);
        assert!(hub.admit(ip, 10, 1).is_ok());
    }
}
