//! A real server on 127.0.0.1:0 and real WebSocket clients, for the integration tests.
#![allow(dead_code)]

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use swarmdrop::signal::{ErrorCode, PeerId, ServerMessage};
use swarmdrop_signal::{serve, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
    pub dir: PathBuf,
}

impl TestServer {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops in time")
            .expect("server task");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A config parsed from flags, as the binary would, with `www`/`pkg` in a fresh folder.
pub fn config(flags: &[&str]) -> (Config, PathBuf) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "swarmdrop-signal-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let www = dir.join("www");
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        www.join("index.html"),
        "<!doctype html><title>t</title>".repeat(20),
    )
    .unwrap();
    std::fs::write(
        pkg.join("swarmdrop_bg.wasm"),
        b"\0asm\x01\0\0\0".repeat(200),
    )
    .unwrap();
    let mut args = vec![
        "swarmdrop-signal".to_string(),
        "--www".into(),
        www.display().to_string(),
        "--pkg".into(),
        pkg.display().to_string(),
    ];
    args.extend(flags.iter().map(|s| s.to_string()));
    (Config::parse_from(args), dir)
}

pub async fn start(flags: &[&str]) -> TestServer {
    let (config, dir) = config(flags);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        serve(listener, config, rx).await.expect("server runs");
    });
    TestServer {
        addr,
        stop,
        task,
        dir,
    }
}

pub async fn connect(server: &TestServer) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("websocket connects");
    ws
}

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

/// What a client saw next: a server message, or the close frame.
#[derive(Debug)]
pub enum Seen {
    Msg(ServerMessage),
    Closed(Option<(CloseCode, String)>),
}

pub async fn next(ws: &mut Ws) -> Seen {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within the wait");
        match frame {
            Some(Ok(Message::Text(t))) => {
                return Seen::Msg(ServerMessage::parse(t.as_str()).expect("valid server frame"))
            }
            Some(Ok(Message::Close(c))) => {
                return Seen::Closed(c.map(|c| (c.code, c.reason.to_string())))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Seen::Closed(None),
        }
    }
}

pub async fn recv(ws: &mut Ws) -> ServerMessage {
    match next(ws).await {
        Seen::Msg(m) => m,
        Seen::Closed(c) => panic!("closed ({c:?}) while a message was expected"),
    }
}

/// Expects an `error` frame with `code`; returns its message.
pub async fn expect_error(ws: &mut Ws, code: ErrorCode) -> String {
    match recv(ws).await {
        ServerMessage::Error { code: c, message } if c == code => message,
        other => panic!("expected error {code:?}, got {other:?}"),
    }
}

/// Expects the close frame with `code`.
pub async fn expect_close(ws: &mut Ws, code: u16) {
    loop {
        match next(ws).await {
            Seen::Closed(Some((c, _))) => {
                assert_eq!(u16::from(c), code);
                return;
            }
            Seen::Closed(None) => panic!("closed without a close frame, expected {code}"),
            Seen::Msg(_) => continue,
        }
    }
}

/// Joins `room`; returns our id and the peers present.
pub async fn join(ws: &mut Ws, room: &str) -> (PeerId, Vec<PeerId>) {
    send(ws, &format!(r#"{{"type":"join","room":"{room}","v":1}}"#)).await;
    match recv(ws).await {
        ServerMessage::Welcome { id, peers, .. } => (id, peers),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// A plain HTTP/1.1 GET; returns (status line + headers lowercased, body bytes).
pub async fn http_get(addr: SocketAddr, path: &str, extra: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&buf[..split]).to_lowercase();
    (head, buf[split + 4..].to_vec())
}

/// One line of /metrics, e.g. `swarmdrop_rejects_total{reason="rate-limited"}`; 0 if absent.
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics", "").await;
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}
