//! `signal-load`: a load generator for signaling servers (swarmdrop's, or matchbox_server for a
//! baseline), run as its own process against a loopback address. Bounded in count and time.
//!
//! Three phases, printed as one JSON line:
//! 1. memory: `--conns` joined connections held open; the server's RSS growth per connection
//!    (read from /proc/`--server-pid`/status);
//! 2. throughput: `--pairs` pairs ping-ponging ~200-byte signals with `--window` in flight per pair,
//!    for `--seconds`;
//! 3. latency: one-way relay latency at a fixed total `--rate` messages a second.
//!
//! With `--url2` (a second instance sharing rooms through Redis), the second peer of every pair
//! and every other held connection use it, so every relayed message crosses instances.

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Flavor {
    /// swarmdrop-signal: `/ws`, join/welcome/signal.
    Swarmdrop,
    /// matchbox_server 0.15: `/<room>`, IdAssigned/NewPeer/Signal.
    Matchbox,
}

#[derive(Parser, Debug)]
#[command(about = "Load generator for signaling servers (loopback only)")]
struct Args {
    /// Base URL, e.g. ws://127.0.0.1:8080 (loopback only).
    #[arg(long)]
    url: String,
    /// A second instance's base URL (rooms shared through Redis): pairs span both instances.
    #[arg(long)]
    url2: Option<String>,
    #[arg(long, value_enum, default_value = "swarmdrop")]
    flavor: Flavor,
    /// The server's process id, for its RSS.
    #[arg(long)]
    server_pid: u32,
    /// Connections held open for the memory phase.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Peers per room in the memory phase.
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Pairs in the throughput phase.
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Messages in flight per pair.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Messages a second, in total, in the latency phase.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One protocol's framing.
struct Proto(Flavor);

impl Proto {
    fn url(&self, base: &str, room: &str) -> String {
        match self.0 {
            Flavor::Swarmdrop => format!("{base}/ws"),
            Flavor::Matchbox => format!("{base}/{room}"),
        }
    }

    /// Connects and joins; returns the socket and our id.
    async fn join(&self, base: &str, room: &str) -> Result<(Ws, String), String> {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(self.url(base, room), None, true)
                .await
                .map_err(|e| format!("connect: {e}"))?;
        if self.0 == Flavor::Swarmdrop {
            let join = format!(r#"{{"type":"join","room":"{room}","v":1}}"#);
            ws.send(Message::Text(join.into()))
                .await
                .map_err(|e| e.to_string())?;
        }
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .map_err(|_| "no welcome within 30 s".to_string())?;
            let Some(Ok(Message::Text(t))) = msg else {
                if matches!(msg, Some(Ok(_))) {
                    continue;
                }
                return Err(format!("closed before welcome: {msg:?}"));
            };
            let v: serde_json::Value =
                serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
            let id = match self.0 {
                Flavor::Swarmdrop if v["type"] == "welcome" => v["id"].as_str().map(String::from),
                Flavor::Swarmdrop if v["type"] == "error" => return Err(t.to_string()),
                Flavor::Matchbox => v["IdAssigned"].as_str().map(String::from),
                _ => None,
            };
            if let Some(id) = id {
                return Ok((ws, id));
            }
        }
    }

    fn signal(&self, to: &str, data: &str) -> String {
        match self.0 {
            Flavor::Swarmdrop => format!(r#"{{"type":"signal","to":"{to}","data":{data}}}"#),
            Flavor::Matchbox => format!(r#"{{"Signal":{{"receiver":"{to}","data":{data}}}}}"#),
        }
    }

    /// A relayed signal's sender and data, or a new peer's id.
    fn parse(&self, text: &str) -> Incoming {
        // Fast path for relayed signals, so the generator spends its CPU on sockets, not JSON.
        let sender_key = match self.0 {
            Flavor::Swarmdrop => "\"from\":\"",
            Flavor::Matchbox => "\"sender\":\"",
        };
        if let (Some(i), Some(j)) = (text.find(sender_key), text.find("\"t\":")) {
            let rest = &text[i + sender_key.len()..];
            let sender = &rest[..rest.find('"').unwrap_or(0)];
            let digits: &str = &text[j + 4..];
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            if let Ok(t) = digits[..end].parse() {
                return Incoming::Signal(sender.to_string(), t);
            }
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return Incoming::Other;
        };
        let (sender, data, joined) = match self.0 {
            Flavor::Swarmdrop => match v["type"].as_str() {
                Some("signal") => (v["from"].as_str(), v.get("data"), None),
                Some("peer-joined") => (None, None, v["id"].as_str()),
                _ => (None, None, None),
            },
            Flavor::Matchbox => {
                if let Some(s) = v.get("Signal") {
                    (s["sender"].as_str(), s.get("data"), None)
                } else {
                    (None, None, v["NewPeer"].as_str())
                }
            }
        };
        match (sender, data, joined) {
            (Some(s), Some(d), _) => Incoming::Signal(s.to_string(), d["t"].as_u64().unwrap_or(0)),
            (_, _, Some(j)) => Incoming::Joined(j.to_string()),
            _ => Incoming::Other,
        }
    }
}

enum Incoming {
    Signal(String, u64),
    Joined(String),
    Other,
}

/// ~200 bytes of signal data carrying a send time in nanoseconds since `base`.
fn payload(base: Instant) -> String {
    let t = base.elapsed().as_nanos() as u64;
    format!(
        r#"{{"kind":"candidate","t":{t},"candidate":"candidate:842163049 1 udp 1677729535 127.0.0.1 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag abcd network-cost 999"}}"#
    )
}

/// Joins a pair into a fresh room: (first, second, second id). The first learns the
/// second's id from its join notice.
async fn pair(
    proto: &Proto,
    base: &str,
    base2: &str,
    room: &str,
) -> Result<(Ws, Ws, String), String> {
    let (mut a, _a_id) = proto.join(base, room).await?;
    let (b, _b_id) = proto.join(base2, room).await?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), a.next())
            .await
            .map_err(|_| "no join notice".to_string())?;
        if let Some(Ok(Message::Text(t))) = msg {
            if let Incoming::Joined(id) = proto.parse(t.as_str()) {
                return Ok((a, b, id));
            }
        } else if !matches!(msg, Some(Ok(_))) {
            return Err("closed while pairing".into());
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    for url in std::iter::once(&args.url).chain(&args.url2) {
        let host = url
            .trim_start_matches("ws://")
            .split(['/', ':'])
            .next()
            .unwrap_or("");
        if !["127.0.0.1", "localhost", "[", ""].contains(&host) && !host.starts_with("127.") {
            return Err(format!("refusing to load {host}: loopback only"));
        }
    }
    let proto = Arc::new(Proto(args.flavor));
    let base = Arc::new(args.url.trim_end_matches('/').to_string());
    let base2 = Arc::new(
        args.url2
            .as_deref()
            .unwrap_or(&args.url)
            .trim_end_matches('/')
            .to_string(),
    );

    // 1. Memory.
    let rss_before = rss_kb(args.server_pid);
    let mut held = Vec::with_capacity(args.conns);
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..args.conns {
        let base = if i % 2 == 0 { &base } else { &base2 };
        let (proto, base, sem) = (Arc::clone(&proto), Arc::clone(base), Arc::clone(&sem));
        let room = format!("mem-{}", i / args.room_size.max(1));
        joins.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            proto.join(&base, &room).await
        });
    }
    while let Some(r) = joins.join_next().await {
        held.push(r.map_err(|e| e.to_string())??.0);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_loaded = rss_kb(args.server_pid);
    let per_conn_bytes =
        (rss_loaded.saturating_sub(rss_before) * 1024) as f64 / args.conns.max(1) as f64;
    drop(held);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 2. Throughput: each pair keeps `window` messages in flight by answering every one.
    let base_t = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..args.pairs {
        let (a, b, b_id) = pair(&proto, &base, &base2, &format!("tp-{p}")).await?;
        for (mut ws, first) in [(a, Some(b_id)), (b, None)] {
            let (proto, received, stop) =
                (Arc::clone(&proto), Arc::clone(&received), Arc::clone(&stop));
            let window = args.window;
            tasks.spawn(async move {
                if let Some(to) = first {
                    for _ in 0..window {
                        let _ = ws
                            .feed(Message::Text(proto.signal(&to, &payload(base_t)).into()))
                            .await;
                    }
                    let _ = ws.flush().await;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    if stop.load(Relaxed) {
                        break;
                    }
                    if let Message::Text(t) = msg {
                        if let Incoming::Signal(from, _) = proto.parse(t.as_str()) {
                            received.fetch_add(1, Relaxed);
                            if ws
                                .send(Message::Text(proto.signal(&from, &payload(base_t)).into()))
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
            });
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    let r0 = received.load(Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let msgs_per_sec = (received.load(Relaxed) - r0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    // 3. Latency at a fixed rate, spread over 10 pairs.
    let lat_pairs = 10usize;
    let interval = Duration::from_secs_f64(lat_pairs as f64 / args.rate);
    let samples = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..lat_pairs {
        let (a, mut b, b_id) = pair(&proto, &base, &base2, &format!("lat-{p}")).await?;
        let (proto_s, proto_r, samples) =
            (Arc::clone(&proto), Arc::clone(&proto), Arc::clone(&samples));
        tasks.spawn(async move {
            let mut a = a;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < until {
                tick.tick().await;
                if a.send(Message::Text(
                    proto_s.signal(&b_id, &payload(base_t)).into(),
                ))
                .await
                .is_err()
                {
                    break;
                }
            }
            // Keep the sender open until the receiver is done.
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(a);
        });
        tasks.spawn(async move {
            let end = tokio::time::Instant::from_std(until + Duration::from_millis(400));
            let mut local = Vec::new();
            while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(end, b.next()).await {
                if let Message::Text(t) = msg {
                    if let Incoming::Signal(_, sent) = proto_r.parse(t.as_str()) {
                        let now = base_t.elapsed().as_nanos() as u64;
                        local.push(now.saturating_sub(sent));
                    }
                }
            }
            samples.lock().expect("samples").extend(local);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut s = samples.lock().expect("samples").clone();
    s.sort_unstable();
    let pct = |p: f64| -> f64 {
        if s.is_empty() {
            return f64::NAN;
        }
        s[((s.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    };
    println!(
        "{}",
        serde_json::json!({
            "flavor": format!("{:?}", args.flavor).to_lowercase(),
            "conns": args.conns,
            "rss_before_kb": rss_before,
            "rss_loaded_kb": rss_loaded,
            "per_conn_bytes": per_conn_bytes,
            "pairs": args.pairs,
            "window": args.window,
            "msgs_per_sec": msgs_per_sec,
            "latency_samples": s.len(),
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
        })
    );
    Ok(())
}
