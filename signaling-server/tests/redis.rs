//! Several instances sharing rooms through a real Redis (`redis-server` on a free loopback port,
//! one per test): membership and relaying across instances, limits, spoofing, an instance
//! killed with -9, and Redis restarting.

mod common;

use common::{connect, expect_error, http_get, join, metric, recv, send, start, TestServer, Ws};
use futures_util::StreamExt;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use swarmdrop::signal::{ErrorCode, PeerId, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_swarmdrop-signal");

/// A `redis-server` on 127.0.0.1, killed on drop.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis { port, child: None };
        r.restart();
        r
    }

    /// Starts it (again) on the same port, empty: no persistence.
    fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): `cargo xtask test` installs it \
                     (apt-get install redis-server)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An instance sharing rooms through `redis`, with quick heartbeats unless `flags` say otherwise.
async fn instance(redis: &Redis, flags: &[&str]) -> TestServer {
    let url = redis.url();
    let mut all = vec!["--redis", url.as_str()];
    all.extend_from_slice(flags);
    let server = start(&all).await;
    until("redis up", || async { redis_state(&server).await == "up" }).await;
    server
}

/// "up", "down" or "off" from /healthz.
async fn redis_state(server: &TestServer) -> String {
    let (_, body) = http_get(server.addr, "/healthz", "").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["redis"].as_str().unwrap_or("").to_string()
}

async fn until<F, Fut>(what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn signal(ws: &mut Ws, to: &PeerId, data: &str) {
    send(
        ws,
        &format!(r#"{{"type":"signal","to":"{to}","data":"{data}"}}"#),
    )
    .await;
}

/// The next signal `ws` gets (skipping membership news): (from, data).
async fn next_signal(ws: &mut Ws) -> (PeerId, String) {
    loop {
        match recv(ws).await {
            ServerMessage::Signal { from, data } => return (from, data.get().to_string()),
            ServerMessage::PeerJoined { .. } | ServerMessage::PeerLeft { .. } => continue,
            other => panic!("expected a signal, got {other:?}"),
        }
    }
}

async fn expect_joined(ws: &mut Ws, who: &PeerId) {
    match recv(ws).await {
        ServerMessage::PeerJoined { id } => assert_eq!(&id, who),
        other => panic!("expected peer-joined {who}, got {other:?}"),
    }
}

async fn expect_left(ws: &mut Ws, who: &PeerId) {
    match recv(ws).await {
        ServerMessage::PeerLeft { id } => assert_eq!(&id, who),
        other => panic!("expected peer-left {who}, got {other:?}"),
    }
}

#[tokio::test]
async fn peers_on_two_instances_meet_and_relay_both_ways() {
    let redis = Redis::start();
    let s1 = instance(&redis, &[]).await;
    let s2 = instance(&redis, &[]).await;
    let mut a = connect(&s1).await;
    let (a_id, peers) = join(&mut a, "shared").await;
    assert!(peers.is_empty());
    let mut b = connect(&s2).await;
    let (b_id, peers) = join(&mut b, "shared").await;
    assert_eq!(
        peers,
        vec![a_id.clone()],
        "b on instance 2 sees a on instance 1"
    );
    expect_joined(&mut a, &b_id).await;

    signal(&mut b, &a_id, "offer-from-b").await;
    assert_eq!(
        next_signal(&mut a).await,
        (b_id.clone(), "\"offer-from-b\"".into())
    );
    signal(&mut a, &b_id, "answer-from-a").await;
    assert_eq!(
        next_signal(&mut b).await,
        (a_id.clone(), "\"answer-from-a\"".into())
    );

    // A third peer, back on instance 1, sees both.
    let mut c = connect(&s1).await;
    let (c_id, peers) = join(&mut c, "shared").await;
    assert_eq!(peers.len(), 2);
    assert!(peers.contains(&a_id) && peers.contains(&b_id));
    expect_joined(&mut a, &c_id).await;
    expect_joined(&mut b, &c_id).await;

    // Leaving is seen across instances.
    send(&mut b, r#"{"type":"leave"}"#).await;
    expect_left(&mut a, &b_id).await;
    expect_left(&mut c, &b_id).await;

    assert_eq!(metric(s1.addr, "swarmdrop_redis_up").await, 1.0);
    assert!(metric(s2.addr, "swarmdrop_redis_published_total").await >= 2.0);
    assert!(metric(s1.addr, "swarmdrop_redis_received_total").await >= 2.0);
    assert!(metric(s2.addr, "swarmdrop_messages_relayed_total").await >= 1.0);
}

#[tokio::test]
async fn rooms_stay_isolated_and_from_cannot_be_spoofed_across_instances() {
    let redis = Redis::start();
    let s1 = instance(&redis, &[]).await;
    let s2 = instance(&redis, &[]).await;
    let mut a = connect(&s1).await;
    let (a_id, _) = join(&mut a, "one").await;
    let mut b = connect(&s2).await;
    let (b_id, peers) = join(&mut b, "two").await;
    assert!(peers.is_empty(), "another room's peers are not listed");
    signal(&mut b, &a_id, "x").await;
    expect_error(&mut b, ErrorCode::UnknownPeer).await;

    // c on instance 2 in room one claims to be b: `from` is what c's instance knows.
    let mut c = connect(&s2).await;
    let (c_id, _) = join(&mut c, "one").await;
    expect_joined(&mut a, &c_id).await;
    send(
        &mut c,
        &format!(r#"{{"type":"signal","to":"{a_id}","from":"{b_id}","data":"hi"}}"#),
    )
    .await;
    assert_eq!(next_signal(&mut a).await.0, c_id);
    // Nothing reached b in the other room.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), recv(&mut b))
            .await
            .is_err(),
        "b got something from another room"
    );
}

#[tokio::test]
async fn room_and_room_count_limits_hold_across_instances() {
    let redis = Redis::start();
    let flags = ["--max-room-peers", "2", "--max-rooms", "2"];
    let s1 = instance(&redis, &flags).await;
    let s2 = instance(&redis, &flags).await;
    let mut a = connect(&s1).await;
    join(&mut a, "r1").await;
    let mut b = connect(&s2).await;
    join(&mut b, "r1").await;
    let mut c = connect(&s1).await;
    send(&mut c, r#"{"type":"join","room":"r1","v":1}"#).await;
    expect_error(&mut c, ErrorCode::RoomFull).await;

    let mut d = connect(&s2).await;
    join(&mut d, "r2").await;
    let mut e = connect(&s1).await;
    send(&mut e, r#"{"type":"join","room":"r3","v":1}"#).await;
    expect_error(&mut e, ErrorCode::TooManyRooms).await;
    // Once a room empties, its place is free again, whichever instance frees it.
    drop(d);
    until("r2 gone", || async {
        let mut f = connect(&s1).await;
        send(&mut f, r#"{"type":"join","room":"r3","v":1}"#).await;
        matches!(recv(&mut f).await, ServerMessage::Welcome { .. })
    })
    .await;
}

/// A `swarmdrop-signal` process with `--redis` (default heartbeat and TTL), and its address.
fn spawn_instance(redis: &Redis) -> (Child, String) {
    let (config, _dir) = common::config(&[]);
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--redis", &redis.url(), "--www"])
        .arg(&config.www)
        .arg("--pkg")
        .arg(&config.pkg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("swarmdrop-signal listening on http://")
        .expect("listening line")
        .trim_end_matches('/')
        .to_string();
    (child, addr)
}

#[tokio::test]
async fn an_instance_killed_with_sigkill_leaves_no_ghosts() {
    let redis = Redis::start();
    let s1 = instance(&redis, &[]).await;
    let (mut child, addr) = spawn_instance(&redis);
    let (mut b, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    // The process may still be connecting to Redis; join once it is up.
    until("instance 2 up", || async {
        let (_, body) = http_get(addr.parse().unwrap(), "/healthz", "").await;
        String::from_utf8_lossy(&body).contains("\"redis\":\"up\"")
    })
    .await;
    let mut a = connect(&s1).await;
    let (a_id, _) = join(&mut a, "ghosts").await;
    let (b_id, peers) = join(&mut b, "ghosts").await;
    assert_eq!(peers, vec![a_id]);
    expect_joined(&mut a, &b_id).await;

    let killed = Instant::now();
    child.kill().unwrap(); // SIGKILL: no goodbye of any kind
    child.wait().unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(11), a.next())
            .await
            .expect("peer-left within 10 s of the kill");
        let Some(Ok(Message::Text(t))) = frame else {
            panic!("a's connection ended: {frame:?}");
        };
        if let ServerMessage::PeerLeft { id } = ServerMessage::parse(t.as_str()).unwrap() {
            assert_eq!(id, b_id);
            break;
        }
    }
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(10), "peer-left after {took:?}");
    // A newcomer does not see the ghost either.
    let mut c = connect(&s1).await;
    let (_, peers) = join(&mut c, "ghosts").await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(metric(s1.addr, "swarmdrop_redis_reaped_total").await, 1.0);
}

#[tokio::test]
async fn service_resumes_after_redis_restarts() {
    let mut redis = Redis::start();
    let quick = ["--redis-heartbeat", "0.2", "--redis-ttl", "1"];
    let s1 = instance(&redis, &quick).await;
    let s2 = instance(&redis, &quick).await;
    let mut a = connect(&s1).await;
    let (a_id, _) = join(&mut a, "room").await;
    let mut b = connect(&s2).await;
    let (b_id, _) = join(&mut b, "room").await;
    expect_joined(&mut a, &b_id).await;

    redis.kill();
    until("instance 1 sees redis down", || async {
        redis_state(&s1).await == "down"
    })
    .await;
    let (_, health) = http_get(s1.addr, "/healthz", "").await;
    assert!(String::from_utf8_lossy(&health).contains("\"status\":\"degraded\""));
    assert_eq!(metric(s1.addr, "swarmdrop_redis_up").await, 0.0);

    // Meanwhile instance 1 serves its own rooms: a newcomer joins and talks to a.
    let mut c = connect(&s1).await;
    let (c_id, _) = join(&mut c, "room").await;
    expect_joined(&mut a, &c_id).await;
    signal(&mut c, &a_id, "local").await;
    assert_eq!(next_signal(&mut a).await.0, c_id);
    // A peer on the other instance cannot be reached just now: a clear error.
    signal(&mut a, &b_id, "far").await;
    let msg = expect_error(&mut a, ErrorCode::Unavailable).await;
    assert!(msg.contains("another server instance"), "{msg}");

    redis.restart(); // empty: everything is registered again
    until("both up again", || async {
        redis_state(&s1).await == "up" && redis_state(&s2).await == "up"
    })
    .await;
    // b learns of c, who joined during the outage, and relaying works both ways again.
    expect_joined(&mut b, &c_id).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "a never reached b again");
        signal(&mut a, &b_id, "again").await;
        if let Ok(ServerMessage::Signal { from, .. }) =
            tokio::time::timeout(Duration::from_millis(500), recv(&mut b)).await
        {
            assert_eq!(from, a_id);
            break;
        }
    }
    signal(&mut b, &c_id, "hello-c").await;
    assert_eq!(next_signal(&mut c).await.0, b_id);
    // A newcomer on instance 2 sees everyone, and nobody saw b or a leave.
    let mut d = connect(&s2).await;
    let (_, peers) = join(&mut d, "room").await;
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert!(metric(s1.addr, "swarmdrop_redis_connects_total").await >= 2.0);
}
