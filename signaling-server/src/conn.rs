//! One client connection: admission, the join deadline, rate limits, keepalive, and relaying.

use crate::hub::{new_peer_id, outbox, Admission, Delivery, Inbox, Member, Out, Outbox};
use crate::{AppState, Config};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use swarmdrop::signal::{
    ClientMessage, ErrorCode, PeerId, ProtocolError, RoomName, ServerMessage, PROTOCOL_VERSION,
};
use tokio::time::{sleep_until, timeout};

/// How long a closing connection waits for the client's close frame after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Most frames written before one flush.
const MAX_BATCH: usize = 64;

/// WebSocket close codes used by the server.
mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_LATER: u16 = 1013;
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            rate,
            burst,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn error_frame(code: ErrorCode, message: impl Into<String>) -> Out {
    Out::Text(ServerMessage::error(code, message).to_json().into(), None)
}

/// Serves one upgraded WebSocket until it closes.
pub(crate) async fn run(state: Arc<AppState>, socket: WebSocket, ip: IpAddr) {
    let cfg = &state.config;
    let (sink, stream) = socket.split();
    let (outbox, inbox) = outbox(cfg.send_queue);
    let admission = state
        .hub
        .admit(ip, cfg.max_connections, cfg.max_connections_per_ip);
    let writer = tokio::spawn(write_loop(
        sink,
        inbox,
        Config::secs(cfg.ping_interval),
        Config::secs(cfg.write_timeout),
        Arc::clone(&state),
    ));
    match admission {
        Ok(admission) => {
            state.metrics.connection();
            let mut conn = Conn {
                state: &state,
                outbox,
                joined: None,
                _admission: admission,
            };
            conn.read_loop(stream, writer).await;
        }
        Err((code, reason)) => {
            state.metrics.reject(reason);
            let msg = match code {
                ErrorCode::ServerFull => "the server is at its connection limit; try later",
                _ => "too many connections from your address",
            };
            outbox.offer(error_frame(code, msg));
            outbox.push(Out::Close(close::TRY_LATER, "connection limit"));
            drop(outbox);
            let _ = timeout(Duration::from_secs(2), writer).await;
        }
    }
}

struct Conn<'a> {
    state: &'a AppState,
    outbox: Outbox,
    joined: Option<(RoomName, PeerId)>,
    _admission: Admission<'a>,
}

/// What the read loop does after a frame.
enum Next {
    Continue,
    /// Close with this code and reason, after the frames already queued.
    Close(u16, &'static str),
}

impl Conn<'_> {
    /// Queues a frame for this client; if even its own queue is full, it is not reading.
    fn send(&self, out: Out) {
        self.outbox.offer(out);
    }

    fn error(&self, code: ErrorCode, reason: &'static str, message: impl Into<String>) {
        self.state.metrics.reject(reason);
        self.send(error_frame(code, message));
    }

    async fn read_loop(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        mut writer: tokio::task::JoinHandle<()>,
    ) {
        let cfg = &self.state.config;
        let mut shutdown = self.state.shutdown.clone();
        let start = Instant::now();
        let join_deadline = tokio::time::Instant::from_std(start + Config::secs(cfg.join_timeout));
        let idle = Config::secs(cfg.idle_timeout);
        let mut last_seen = start;
        let mut bucket = Bucket::new(cfg.rate, cfg.burst, start);
        let mut last_rate_error: Option<Instant> = None;
        let kick = Arc::clone(&self.outbox.kick);
        // Created once and polled by reference: no timer or waiter registration per frame.
        let kicked = kick.notified();
        let stopping = shutdown.wait_for(|stop| *stop);
        let join_timer = sleep_until(join_deadline);
        let idle_timer = sleep_until(tokio::time::Instant::from_std(start + idle));
        tokio::pin!(kicked, stopping, join_timer, idle_timer);

        let mut peer_closed = false;
        let ending = loop {
            let frame = tokio::select! {
                _ = &mut kicked => {
                    self.state.metrics.reject("slow-reader");
                    break None;
                }
                _ = &mut writer => break None,
                res = &mut stopping => {
                    if res.is_ok() {
                        break Some((close::GOING_AWAY, "server shutting down"));
                    }
                    // The server dropped the sender: it is gone, stop as well.
                    break Some((close::GOING_AWAY, "server gone"));
                }
                _ = &mut join_timer, if self.joined.is_none() => {
                    self.error(ErrorCode::JoinTimeout, "join-timeout",
                        "no join within the deadline after connecting");
                    break Some((close::POLICY, "join timeout"));
                }
                _ = &mut idle_timer => {
                    // The timer runs from the last frame; move it on if frames came since.
                    let due = last_seen + idle;
                    if due > Instant::now() {
                        idle_timer.as_mut().reset(tokio::time::Instant::from_std(due));
                        continue;
                    }
                    self.error(ErrorCode::Timeout, "idle", "no frames or pongs within the idle timeout");
                    break Some((close::POLICY, "idle timeout"));
                }
                frame = stream.next() => frame,
            };
            let now = Instant::now();
            let next = match frame {
                None => break None,
                // Answer the client's close (tungstenite queued the reply; the writer flushes
                // it): a client whose close goes unanswered counts the connection as failed,
                // and Firefox then delays its next connection to this server.
                Some(Ok(Message::Close(_))) => {
                    peer_closed = true;
                    break Some((close::NORMAL, ""));
                }
                Some(Err(e)) => {
                    // tungstenite reports an over-long frame as a capacity error.
                    if e.to_string().contains("too long") || e.to_string().contains("Space limit") {
                        self.error(
                            ErrorCode::FrameTooLarge,
                            "frame-too-large",
                            format!("frames are limited to {} bytes", cfg.max_frame),
                        );
                        break Some((close::TOO_BIG, "frame too large"));
                    }
                    tracing::debug!("websocket read error: {e}");
                    break None;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    last_seen = now;
                    Next::Continue
                }
                Some(Ok(Message::Binary(_))) => {
                    last_seen = now;
                    if bucket.take(now) {
                        self.error(
                            ErrorCode::BinaryFrame,
                            "binary",
                            "binary frames are not part of the protocol; send JSON text",
                        );
                    }
                    Next::Continue
                }
                Some(Ok(Message::Text(text))) => {
                    last_seen = now;
                    if bucket.take(now) {
                        self.handle_text(text, now).await
                    } else {
                        // One error a second at most, so a flood cannot make us flood back.
                        if last_rate_error
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                        {
                            last_rate_error = Some(now);
                            self.error(
                                ErrorCode::RateLimited,
                                "rate-limited",
                                format!(
                                    "slow down: at most {} messages a second (burst {})",
                                    cfg.rate, cfg.burst
                                ),
                            );
                        } else {
                            self.state.metrics.reject("rate-limited");
                        }
                        Next::Continue
                    }
                }
            };
            if let Next::Close(code, reason) = next {
                break Some((code, reason));
            }
        };

        if let Some((room, id)) = self.joined.take() {
            match &self.state.cluster {
                Some(cluster) => cluster.leave(self.state, &room, &id).await,
                None => {
                    self.state.hub.leave(&room, &id);
                }
            }
        }
        match ending {
            Some((code, reason)) => {
                // Let the writer flush what is queued and the close frame (or the reply to the
                // client's), within its timeout.
                self.outbox.push(if peer_closed {
                    Out::Closed
                } else {
                    Out::Close(code, reason)
                });
                let flush = Config::secs(cfg.write_timeout).min(Duration::from_secs(2));
                if timeout(flush, &mut writer).await.is_err() {
                    writer.abort();
                } else if !peer_closed {
                    // Our close is out: read until the client's (briefly), so the connection
                    // ends with the closing handshake done and nothing unread (closing a socket
                    // with unread data resets it, which the client sees as a failure).
                    let _ = timeout(CLOSE_WAIT, async {
                        while let Some(Ok(m)) = stream.next().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                }
            }
            None => writer.abort(),
        }
    }

    async fn handle_text(&mut self, text: Utf8Bytes, now: Instant) -> Next {
        let cfg = &self.state.config;
        let msg = match ClientMessage::parse(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                let reason = match &e {
                    ProtocolError::UnknownType(_) => "unknown-type",
                    ProtocolError::InvalidName { .. } => "bad-name",
                    _ => "malformed",
                };
                self.error(ErrorCode::from(&e), reason, e.to_string());
                return Next::Continue;
            }
        };
        match msg {
            ClientMessage::Join { room, v } => {
                if self.joined.is_some() {
                    self.error(
                        ErrorCode::AlreadyJoined,
                        "second-join",
                        "this connection has joined already; open another to join another room",
                    );
                    return Next::Continue;
                }
                if v != PROTOCOL_VERSION {
                    self.error(ErrorCode::UnsupportedVersion, "version", format!(
                        "protocol version {v} is not supported; this server speaks {PROTOCOL_VERSION}"));
                    return Next::Close(close::POLICY, "unsupported version");
                }
                let id = new_peer_id();
                let member = Member::local(id.clone(), self.outbox.clone());
                let joined = match &self.state.cluster {
                    Some(cluster) => cluster.join(self.state, &room, member).await,
                    None => self
                        .state
                        .hub
                        .join(&room, member, cfg.max_room_peers, cfg.max_rooms),
                };
                match joined {
                    Ok(peers) => {
                        let unix = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        let welcome = ServerMessage::Welcome {
                            ice_servers: cfg.ice_servers_for(id.as_str(), unix),
                            id: id.clone(),
                            peers,
                        };
                        tracing::debug!(room = %room, peer = %id, "joined");
                        self.send(Out::Text(welcome.to_json().into(), None));
                        self.joined = Some((room, id));
                    }
                    Err(ErrorCode::RoomFull) => self.error(
                        ErrorCode::RoomFull,
                        "room-full",
                        format!("room {room} is full ({} peers)", cfg.max_room_peers),
                    ),
                    Err(code) => self.error(
                        code,
                        "too-many-rooms",
                        "the server is at its room limit; try later",
                    ),
                }
                Next::Continue
            }
            ClientMessage::Signal { to, data } => {
                let Some((room, from)) = &self.joined else {
                    self.error(
                        ErrorCode::NotJoined,
                        "not-joined",
                        "join a room before signaling",
                    );
                    return Next::Continue;
                };
                let len = data.get().len();
                if len > cfg.max_signal {
                    self.error(
                        ErrorCode::PayloadTooLarge,
                        "payload-too-large",
                        format!(
                            "signal data of {len} bytes exceeds the limit of {} bytes",
                            cfg.max_signal
                        ),
                    );
                    return Next::Continue;
                }
                let sent = match self.state.hub.relay(room, from, &to, data, now) {
                    Ok(Delivery::Queued) => Ok(()),
                    Ok(Delivery::Remote(inst, data)) => match &self.state.cluster {
                        Some(c) => c.relay(&inst, room, from, &to, data),
                        None => Err(ErrorCode::UnknownPeer),
                    },
                    Err(code) => Err(code),
                };
                match sent {
                    Ok(()) => self.state.metrics.relayed(len),
                    Err(ErrorCode::Unavailable) => self.error(
                        ErrorCode::Unavailable,
                        "unavailable",
                        format!(
                            "peer {to} is on another server instance, which cannot be reached \
                             just now; try again shortly"
                        ),
                    ),
                    Err(code) => {
                        self.error(code, "unknown-peer", format!("no peer {to} in this room"))
                    }
                }
                Next::Continue
            }
            ClientMessage::Leave => {
                if self.joined.is_none() {
                    self.error(ErrorCode::NotJoined, "not-joined", "leave before join");
                    return Next::Continue;
                }
                Next::Close(close::NORMAL, "left")
            }
        }
    }
}

/// Writes queued frames and pings; stops on a close, an error, or a write slower than
/// `write_timeout` (a client too slow to read).
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut inbox: Inbox,
    ping_every: Duration,
    write_timeout: Duration,
    state: Arc<AppState>,
) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut relayed = Vec::new();
    loop {
        let first = tokio::select! {
            out = inbox.recv() => match out {
                Some(out) => out,
                None => return,
            },
            _ = ping.tick() => Out::Ping,
        };
        // Write what is queued in one go: feed frames, flush once (one syscall under load).
        let mut pending = Some(first);
        let mut batch = 0;
        let mut closing = false;
        let write = async {
            while let Some(out) = pending.take() {
                let msg = match out {
                    Out::Ping => Some(Message::Ping(Default::default())),
                    Out::Text(t, read_at) => {
                        relayed.extend(read_at);
                        Some(Message::Text(t))
                    }
                    Out::Close(code, reason) => {
                        closing = true;
                        Some(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                    }
                    // A second close frame would be refused; the flush below sends the reply.
                    Out::Closed => {
                        closing = true;
                        None
                    }
                };
                let Some(msg) = msg else {
                    break;
                };
                sink.feed(msg).await?;
                batch += 1;
                if !closing && batch < MAX_BATCH {
                    pending = inbox.try_recv();
                }
            }
            sink.flush().await
        };
        match timeout(write_timeout, write).await {
            Ok(Ok(())) => {
                for read_at in relayed.drain(..) {
                    state.metrics.relay_latency(read_at.elapsed());
                }
                if closing {
                    return;
                }
            }
            Ok(Err(_)) => return,
            Err(_) => {
                state.metrics.reject("slow-reader");
                return;
            }
        }
    }
}
