//! Rooms shared by several server instances through Redis (`--redis URL`).
//!
//! Redis holds who is where; pub/sub carries what instances tell each other:
//! - `{prefix}room:{room}`: hash peer id → instance id, for every peer in the room on any instance.
//!   Joins go through a Lua script that checks `--max-room-peers` and `--max-rooms` across all
//!   instances and returns the room's members in the same step.
//! - `{prefix}rooms`: set of rooms; `{prefix}iroom:{instance}`: rooms where an instance has peers.
//! - `{prefix}inst:{instance}`: an instance's heartbeat, a key that expires after `--redis-ttl`;
//!   `{prefix}instances`: the set of instances.
//! - channel `{prefix}to:{instance}`: one channel per instance, carrying joined / left / roster
//!   notes and relayed signals (one publisher connection, so they arrive in the order sent).
//!
//! Each instance mirrors the remote members of its own rooms, so relaying to a peer on another
//! instance is one PUBLISH. A signal is stamped by the instance that received it from the
//! sender's WebSocket, and the receiving instance delivers it only if the sender is in its mirror
//! of that room on the instance the message came from.
//!
//! An instance whose heartbeat expired is reaped by the others: its peers are removed from Redis
//! and reported `peer-left`. While Redis is down an instance keeps serving its own rooms (joins
//! and relays between its own peers), reconnects with backoff, and on reconnecting registers its
//! peers again and sends every instance sharing a room the full roster of its peers there.

use crate::hub::Member;
use crate::AppState;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swarmdrop::signal::{ErrorCode, PeerId, RoomName};
use tokio::sync::{mpsc, Notify};

/// Messages waiting to be published; beyond this, a relay gets `unavailable`.
const PUBLISH_QUEUE: usize = 8192;
/// Most messages in one pipelined round trip.
const PUBLISH_BATCH: usize = 256;
/// Reconnect backoff, doubling between these.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long one Redis command may take before the connection counts as lost.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Joins a room if the limits allow. KEYS: room hash, rooms set, this instance's rooms set.
/// ARGV: room, peer, instance, max peers, max rooms. Returns {"full"}, {"rooms"} or
/// {"ok", peer1, instance1, ...} (the room after the join).
const JOIN: &str = r#"
local n = redis.call('HLEN', KEYS[1])
if n >= tonumber(ARGV[4]) then return {'full'} end
if n == 0 and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0
   and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[5]) then return {'rooms'} end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
table.insert(all, 1, 'ok')
return all
"#;

/// Sets this instance's peers in a room to exactly ARGV[3..] (removing stale ones).
/// KEYS as JOIN; ARGV: room, instance, peers... Returns the room after it: peer1, instance1, ...
const SYNC: &str = r#"
local all = redis.call('HGETALL', KEYS[1])
local want = {}
for i = 3, #ARGV do want[ARGV[i]] = true end
for i = 1, #all, 2 do
  if all[i + 1] == ARGV[2] and not want[all[i]] then redis.call('HDEL', KEYS[1], all[i]) end
end
for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], ARGV[2]) end
if #ARGV >= 3 then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[1])
else
  redis.call('SREM', KEYS[3], ARGV[1])
end
local now = redis.call('HGETALL', KEYS[1])
if #now == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
end
return now
"#;

/// Removes every trace of a dead instance. KEYS: its rooms set, the instances set, its
/// heartbeat. ARGV: key prefix, instance. Returns how many rooms it was in.
const REAP: &str = r#"
local rooms = redis.call('SMEMBERS', KEYS[1])
for _, r in ipairs(rooms) do
  local key = ARGV[1] .. 'room:' .. r
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if all[i + 1] == ARGV[2] then redis.call('HDEL', key, all[i]) end
  end
  if redis.call('HLEN', key) == 0 then
    redis.call('DEL', key)
    redis.call('SREM', ARGV[1] .. 'rooms', r)
  end
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[2])
return #rooms
"#;

/// A note text queued for publishing on an instance's channel.
type Outgoing = (Arc<str>, String);

/// What kind of note travels between instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    /// `peers[0]` joined the room.
    Joined,
    /// `peers[0]` left the room.
    Left,
    /// The sending instance has exactly `peers` in the room.
    Roster,
    /// `peers[0]` sends `data` to `to`.
    Signal,
}

/// One note from instance `src`, published on the channel of the instance it is for.
#[derive(Debug, Serialize, Deserialize)]
struct Note {
    k: Kind,
    src: String,
    room: RoomName,
    #[serde(default)]
    peers: Vec<PeerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<PeerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Box<RawValue>>,
}

/// The Redis side of one instance.
pub struct Cluster {
    /// This instance's id (random, new at every start).
    pub id: Arc<str>,
    prefix: String,
    client: redis::Client,
    heartbeat: Duration,
    ttl: Duration,
    /// The command connection while Redis is reachable.
    conn: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    /// When the current connection was made (dead-instance checks wait a TTL after it).
    since: Mutex<Option<Instant>>,
    /// Notified when a command failed: the supervisor reconnects.
    lost: Notify,
    /// Membership changes (local joins and leaves, notes from other instances) one at a time,
    /// so that a note about a room never overtakes the local join it depends on.
    membership: tokio::sync::Mutex<()>,
    publish: mpsc::Sender<Outgoing>,
    publish_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    join: Script,
    sync: Script,
    reap: Script,
}

/// Why `--redis` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--redis {url}: {source}")]
pub struct RedisUrlError {
    url: String,
    source: redis::RedisError,
}

impl Cluster {
    /// A cluster member for Redis at `url`; nothing connects until [`Cluster::run`].
    pub fn new(
        url: &str,
        prefix: &str,
        heartbeat: Duration,
        ttl: Duration,
    ) -> Result<Arc<Self>, RedisUrlError> {
        let client = redis::Client::open(url).map_err(|source| RedisUrlError {
            url: url.to_string(),
            source,
        })?;
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        Ok(Arc::new(Cluster {
            id: crate::hub::new_peer_id().as_str().into(),
            prefix: prefix.to_string(),
            client,
            heartbeat,
            ttl,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            since: Mutex::new(None),
            lost: Notify::new(),
            membership: tokio::sync::Mutex::new(()),
            publish: tx,
            publish_rx: Mutex::new(Some(rx)),
            join: Script::new(JOIN),
            sync: Script::new(SYNC),
            reap: Script::new(REAP),
        }))
    }

    /// Whether Redis is reachable now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push_str(p);
        }
        k
    }

    fn room_keys(&self, room: &RoomName) -> [String; 3] {
        [
            self.key(&["room:", room.as_str()]),
            self.key(&["rooms"]),
            self.key(&["iroom:", &self.id]),
        ]
    }

    /// `script` with a room's keys (as JOIN and SYNC take them) and the room as first argument.
    fn for_room<'a>(&self, script: &'a Script, room: &RoomName) -> redis::ScriptInvocation<'a> {
        let [k1, k2, k3] = self.room_keys(room);
        let mut inv = script.key(k1);
        inv.key(k2).key(k3).arg(room.as_str());
        inv
    }

    fn conn(&self) -> Option<MultiplexedConnection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A command failed: serve locally until the supervisor has reconnected.
    fn failed(&self, state: &AppState, what: &str, e: &redis::RedisError) {
        state.metrics.redis_error();
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "redis: {what} failed: {e}; serving this instance's rooms only until it is back"
            );
        }
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Wakes the supervisor if it waits; if not, its next heartbeat finds no connection.
        // (No stored permit: it would end the next, healthy connection at once.)
        self.lost.notify_waiters();
    }

    /// Queues `note` (encoded once) for each instance in `to`; false if it could not be queued
    /// for all (the queue is full).
    fn send<'a>(&self, to: impl IntoIterator<Item = &'a Arc<str>>, note: &Note) -> bool {
        let Ok(text) = serde_json::to_string(note) else {
            return false;
        };
        // Every instance gets its copy, even after one did not fit.
        let mut all = true;
        for inst in to {
            all &= self
                .publish
                .try_send((Arc::clone(inst), text.clone()))
                .is_ok();
        }
        all
    }

    fn note(&self, k: Kind, room: &RoomName, peers: Vec<PeerId>) -> Note {
        Note {
            k,
            src: self.id.to_string(),
            room: room.clone(),
            peers,
            to: None,
            data: None,
        }
    }

    /// Joins local `member` to `room`: through Redis (limits across all instances), or on this
    /// instance alone while Redis is down. Returns who was there.
    pub(crate) async fn join(
        &self,
        state: &AppState,
        room: &RoomName,
        member: Member,
    ) -> Result<Vec<PeerId>, ErrorCode> {
        let cfg = &state.config;
        let _one = self.membership.lock().await;
        if let Some(mut conn) = self.conn() {
            let res: Result<Vec<String>, _> = self
                .for_room(&self.join, room)
                .arg(member.id.as_str())
                .arg(&*self.id)
                .arg(cfg.max_room_peers)
                .arg(cfg.max_rooms)
                .invoke_async(&mut conn)
                .await;
            match res {
                Ok(v) => match v.first().map(String::as_str) {
                    Some("ok") => {
                        let remotes = self.remotes(&v[1..]);
                        let id = member.id.clone();
                        let present = state.hub.join_shared(room, member, &remotes);
                        let note = self.note(Kind::Joined, room, vec![id]);
                        self.send(&state.hub.instances(Some(room)), &note);
                        return Ok(present);
                    }
                    Some("full") => return Err(ErrorCode::RoomFull),
                    _ => return Err(ErrorCode::TooManyRooms),
                },
                Err(e) => self.failed(state, "join", &e),
            }
        }
        state
            .hub
            .join(room, member, cfg.max_room_peers, cfg.max_rooms)
    }

    /// (peer, instance) pairs of other instances from a flat HGETALL reply.
    fn remotes(&self, flat: &[String]) -> Vec<(PeerId, Arc<str>)> {
        flat.chunks_exact(2)
            .filter(|kv| *kv[1] != *self.id)
            .filter_map(|kv| Some((PeerId::new(kv[0].as_str()).ok()?, Arc::from(kv[1].as_str()))))
            .collect()
    }

    /// Local peer `id` left `room`.
    pub(crate) async fn leave(&self, state: &AppState, room: &RoomName, id: &PeerId) {
        let _one = self.membership.lock().await;
        let mut others = state.hub.leave(room, id);
        if let Some(mut conn) = self.conn() {
            let mine: Vec<String> = state
                .hub
                .local_members(room)
                .iter()
                .map(|p| p.as_str().to_string())
                .collect();
            let res: Result<Vec<String>, _> = self
                .for_room(&self.sync, room)
                .arg(&*self.id)
                .arg(mine)
                .invoke_async(&mut conn)
                .await;
            match res {
                Ok(v) => {
                    for (_, inst) in self.remotes(&v) {
                        if !others.contains(&inst) {
                            others.push(inst);
                        }
                    }
                }
                Err(e) => self.failed(state, "leave", &e),
            }
        }
        self.send(&others, &self.note(Kind::Left, room, vec![id.clone()]));
    }

    /// Relays `data` from local `from` to `to` on instance `inst`.
    pub(crate) fn relay(
        &self,
        inst: &Arc<str>,
        room: &RoomName,
        from: &PeerId,
        to: &PeerId,
        data: Box<RawValue>,
    ) -> Result<(), ErrorCode> {
        if !self.is_up() {
            return Err(ErrorCode::Unavailable);
        }
        let mut note = self.note(Kind::Signal, room, vec![from.clone()]);
        note.to = Some(to.clone());
        note.data = Some(data);
        if self.send([inst], &note) {
            Ok(())
        } else {
            Err(ErrorCode::Unavailable)
        }
    }

    /// Connects, reconnects with backoff, and serves notes and heartbeats until shutdown.
    pub async fn run(self: Arc<Self>, state: Arc<AppState>) {
        if let Some(rx) = self
            .publish_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            tokio::spawn(Arc::clone(&self).publisher(rx, Arc::clone(&state)));
        }
        let mut shutdown = state.shutdown.clone();
        let mut backoff = BACKOFF_MIN;
        let mut logged_down = false;
        loop {
            let session = async {
                match self.connect(&state).await {
                    Ok(pubsub) => {
                        backoff = BACKOFF_MIN;
                        logged_down = false;
                        let why = self.serve(&state, pubsub).await;
                        self.failed(&state, "the connection", &why);
                    }
                    Err(e) => {
                        state.metrics.redis_error();
                        if !logged_down {
                            tracing::warn!(
                                "redis: cannot connect: {e}; serving this instance's rooms only, \
                                 retrying"
                            );
                            logged_down = true;
                        }
                    }
                }
            };
            tokio::select! {
                _ = session => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            let wait = jitter(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    }

    /// Opens both connections, heartbeats, and registers this instance's peers again.
    async fn connect(&self, state: &AppState) -> redis::RedisResult<redis::aio::PubSub> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(self.key(&["to:", &self.id])).await?;
        self.heartbeat(&mut conn).await?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.up.store(true, Ordering::Relaxed);
        state.metrics.redis_connected();
        tracing::info!(instance = %self.id, "redis: connected");
        self.resync(state, &mut conn).await?;
        Ok(pubsub)
    }

    /// Refreshes this instance's heartbeat; true if the others had reaped it meanwhile.
    async fn heartbeat(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<bool> {
        let ttl = self.ttl.as_millis().max(1) as u64;
        let (_, added): ((), u32) = redis::pipe()
            .cmd("SET")
            .arg(self.key(&["inst:", &self.id]))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .cmd("SADD")
            .arg(self.key(&["instances"]))
            .arg(&*self.id)
            .query_async(conn)
            .await?;
        Ok(added == 1)
    }

    /// Registers exactly this instance's peers in every room it has (or had) peers in, learns
    /// the rooms' other members, and sends each other instance there its roster.
    async fn resync(
        &self,
        state: &AppState,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let _one = self.membership.lock().await;
        let mut rooms = state.hub.local_rooms();
        let had: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key(&["iroom:", &self.id]))
            .query_async(conn)
            .await?;
        for r in had {
            if let Ok(room) = RoomName::new(r) {
                if !rooms.iter().any(|(x, _)| *x == room) {
                    rooms.push((room, Vec::new()));
                }
            }
        }
        for (room, ids) in rooms {
            let v: Vec<String> = self
                .for_room(&self.sync, &room)
                .arg(&*self.id)
                .arg(ids.iter().map(PeerId::as_str).collect::<Vec<_>>())
                .invoke_async(conn)
                .await?;
            // Instances in the room per Redis have registered since it came back: their peers
            // are exactly these. Others may not have yet; they send a roster when they do.
            let remotes = self.remotes(&v);
            let mut insts: Vec<Arc<str>> = state.hub.instances(Some(&room));
            for (_, inst) in &remotes {
                if !insts.contains(inst) {
                    insts.push(Arc::clone(inst));
                }
            }
            for inst in &insts {
                let theirs: Vec<PeerId> = remotes
                    .iter()
                    .filter(|(_, i)| i == inst)
                    .map(|(p, _)| p.clone())
                    .collect();
                if !theirs.is_empty() {
                    state.hub.remote_roster(&room, inst, &theirs);
                }
            }
            self.send(&insts, &self.note(Kind::Roster, &room, ids));
        }
        Ok(())
    }

    /// Reads notes and keeps the heartbeat until the connection fails.
    async fn serve(&self, state: &AppState, pubsub: redis::aio::PubSub) -> redis::RedisError {
        use futures_util::StreamExt;
        let mut messages = pubsub.into_on_message();
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = messages.next() => match msg {
                    Some(msg) => self.on_note(state, msg.get_payload_bytes()).await,
                    None => return closed("the subscription"),
                },
                _ = tick.tick() => {
                    let Some(mut conn) = self.conn() else { return closed("the command connection") };
                    if let Err(e) = self.housekeeping(state, &mut conn).await {
                        return e;
                    }
                }
                _ = self.lost.notified() => return closed("a command"),
            }
        }
    }

    /// A note from another instance.
    async fn on_note(&self, state: &AppState, payload: &[u8]) {
        state.metrics.redis_received();
        let note: Note = match serde_json::from_slice(payload) {
            Ok(n) => n,
            Err(e) => {
                state.metrics.reject("redis-bad-note");
                // Not the error text: it may quote a piece of the note, i.e. of a payload.
                tracing::warn!(
                    "redis: ignored a malformed note ({:?} error at column {})",
                    e.classify(),
                    e.column()
                );
                return;
            }
        };
        if *note.src == *self.id {
            return;
        }
        let src: Arc<str> = note.src.as_str().into();
        match note.k {
            Kind::Signal => {
                let (Some(from), Some(to), Some(data)) = (note.peers.first(), &note.to, note.data)
                else {
                    state.metrics.reject("redis-bad-note");
                    return;
                };
                if !state
                    .hub
                    .relay_from_remote(&note.room, from, &src, to, data)
                {
                    state.metrics.reject("redis-undeliverable");
                }
            }
            Kind::Joined | Kind::Left | Kind::Roster => {
                let _one = self.membership.lock().await;
                match note.k {
                    Kind::Joined => {
                        for p in &note.peers {
                            state.hub.remote_joined(&note.room, p, &src);
                        }
                    }
                    Kind::Left => {
                        for p in &note.peers {
                            state.hub.remote_left(&note.room, p, &src);
                        }
                    }
                    _ => state.hub.remote_roster(&note.room, &src, &note.peers),
                }
            }
        }
    }

    /// Heartbeat, then reap instances whose heartbeat expired.
    async fn housekeeping(
        &self,
        state: &AppState,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        if self.heartbeat(conn).await? {
            tracing::warn!("redis: this instance had been reaped as dead; registering again");
            self.resync(state, conn).await?;
        }
        // Right after (re)connecting, others may not have refreshed a heartbeat Redis lost.
        let settled = self
            .since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() >= self.ttl);
        if !settled {
            return Ok(());
        }
        let listed: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key(&["instances"]))
            .query_async(conn)
            .await?;
        let mut candidates: HashSet<Arc<str>> =
            listed.iter().map(|s| Arc::from(s.as_str())).collect();
        candidates.extend(state.hub.instances(None));
        candidates.remove(&self.id);
        if candidates.is_empty() {
            return Ok(());
        }
        let candidates: Vec<Arc<str>> = candidates.into_iter().collect();
        let mut pipe = redis::pipe();
        for c in &candidates {
            pipe.cmd("EXISTS").arg(self.key(&["inst:", c]));
        }
        let alive: Vec<bool> = pipe.query_async(conn).await?;
        for (inst, alive) in candidates.iter().zip(alive) {
            if alive {
                continue;
            }
            let rooms: i64 = self
                .reap
                .key(self.key(&["iroom:", inst]))
                .key(self.key(&["instances"]))
                .key(self.key(&["inst:", inst]))
                .arg(&self.prefix)
                .arg(&**inst)
                .invoke_async(conn)
                .await?;
            let _one = self.membership.lock().await;
            state.hub.drop_instance(inst);
            state.metrics.redis_reaped();
            tracing::info!(instance = %inst, rooms, "redis: instance stopped heartbeating; its peers left");
        }
        Ok(())
    }

    /// Publishes queued notes, pipelined in batches.
    async fn publisher(self: Arc<Self>, mut rx: mpsc::Receiver<Outgoing>, state: Arc<AppState>) {
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
            let n = batch.len() as u64;
            let Some(mut conn) = self.conn() else {
                state.metrics.redis_dropped(n);
                batch.clear();
                continue;
            };
            let mut pipe = redis::pipe();
            for (inst, text) in batch.drain(..) {
                pipe.cmd("PUBLISH")
                    .arg(self.key(&["to:", &inst]))
                    .arg(text)
                    .ignore();
            }
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => state.metrics.redis_published(n),
                Err(e) => {
                    state.metrics.redis_dropped(n);
                    self.failed(&state, "publish", &e);
                }
            }
        }
    }

    /// Takes this instance out of Redis at shutdown, so the others reap it at once.
    pub async fn withdraw(&self) {
        if let Some(mut conn) = self.conn() {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(self.key(&["inst:", &self.id]))
                .query_async(&mut conn)
                .await;
        }
    }
}

fn closed(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        format!("{what} was closed"),
    ))
}

/// A random wait in [d/2, d] (so instances do not reconnect in lockstep).
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b) as f64 / u16::MAX as f64
    } else {
        1.0
    };
    d.mul_f64(0.5 + 0.5 * r)
}
