//! The signaling server over real sockets: protocol, limits, bad input, shutdown, HTTP.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use swarmdrop::signal::{ErrorCode, ServerMessage};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn join_welcome_relay_both_ways() {
    let server = start(&[]).await;
    let mut a = connect(&server).await;
    let (a_id, peers) = join(&mut a, "room-1").await;
    assert!(peers.is_empty());
    assert_eq!(a_id.as_str().len(), 22);
    let mut b = connect(&server).await;
    let (b_id, peers) = join(&mut b, "room-1").await;
    assert_eq!(peers, vec![a_id.clone()]);
    assert_ne!(a_id, b_id);
    match recv(&mut a).await {
        ServerMessage::PeerJoined { id } => assert_eq!(id, b_id),
        other => panic!("{other:?}"),
    }

    send(
        &mut a,
        &format!(r#"{{"type":"signal","to":"{b_id}","data":{{"kind":"offer","sdp":"x"}}}}"#),
    )
    .await;
    match recv(&mut b).await {
        ServerMessage::Signal { from, data } => {
            assert_eq!(from, a_id);
            assert_eq!(data.get(), r#"{"kind":"offer","sdp":"x"}"#);
        }
        other => panic!("{other:?}"),
    }
    send(
        &mut b,
        &format!(r#"{{"type":"signal","to":"{a_id}","data":[1,2,3]}}"#),
    )
    .await;
    match recv(&mut a).await {
        ServerMessage::Signal { from, data } => {
            assert_eq!(from, b_id);
            assert_eq!(data.get(), "[1,2,3]");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        metric(server.addr, "swarmdrop_messages_relayed_total").await,
        2.0
    );
    assert_eq!(metric(server.addr, "swarmdrop_peers").await, 2.0);
    assert_eq!(metric(server.addr, "swarmdrop_rooms").await, 1.0);
    assert!(metric(server.addr, "swarmdrop_relay_latency_seconds_count").await >= 2.0);
}

#[tokio::test]
async fn welcome_carries_ice_servers_with_turn_credentials() {
    let server = start(&[
        "--ice-server",
        "stun:127.0.0.1:3478",
        "--ice-server",
        "turn:127.0.0.1:3478",
        "--turn-secret",
        "s3cret",
        "--turn-ttl",
        "600",
    ])
    .await;
    let mut a = connect(&server).await;
    send(&mut a, r#"{"type":"join","room":"ice","v":1}"#).await;
    let ServerMessage::Welcome {
        id, ice_servers, ..
    } = recv(&mut a).await
    else {
        panic!("no welcome");
    };
    assert_eq!(ice_servers.len(), 2);
    assert_eq!(ice_servers[0].urls, vec!["stun:127.0.0.1:3478"]);
    let user = ice_servers[1].username.as_deref().unwrap();
    let (expiry, peer) = user.split_once(':').unwrap();
    assert_eq!(peer, id.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry > now + 590 && expiry <= now + 601,
        "{expiry} vs {now}"
    );
    assert_eq!(ice_servers[1].credential.as_deref().unwrap().len(), 28);
}

#[tokio::test]
async fn peer_left_on_leave_and_on_abrupt_disconnect() {
    let server = start(&[]).await;
    let mut a = connect(&server).await;
    let (_a_id, _) = join(&mut a, "r").await;
    let mut b = connect(&server).await;
    let (b_id, _) = join(&mut b, "r").await;
    let mut c = connect(&server).await;
    let (c_id, _) = join(&mut c, "r").await;
    assert!(matches!(
        recv(&mut a).await,
        ServerMessage::PeerJoined { .. }
    ));
    assert!(matches!(
        recv(&mut a).await,
        ServerMessage::PeerJoined { .. }
    ));

    send(&mut b, r#"{"type":"leave"}"#).await;
    expect_close(&mut b, 1000).await;
    match recv(&mut a).await {
        ServerMessage::PeerLeft { id } => assert_eq!(id, b_id),
        other => panic!("{other:?}"),
    }
    // Abrupt: drop the TCP connection without a close frame.
    drop(c);
    match recv(&mut a).await {
        ServerMessage::PeerLeft { id } => assert_eq!(id, c_id),
        other => panic!("{other:?}"),
    }
    drop(a);
    // The room goes when it is empty.
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(server.addr, "swarmdrop_rooms").await != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "room not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rooms_are_isolated_and_from_cannot_be_spoofed() {
    let server = start(&[]).await;
    let mut a = connect(&server).await;
    let (a_id, _) = join(&mut a, "one").await;
    let mut b = connect(&server).await;
    let (b_id, peers) = join(&mut b, "two").await;
    assert!(peers.is_empty(), "other room's peers are not listed");
    // Signal across rooms: refused as unknown.
    send(
        &mut b,
        &format!(r#"{{"type":"signal","to":"{a_id}","data":1}}"#),
    )
    .await;
    let msg = expect_error(&mut b, ErrorCode::UnknownPeer).await;
    assert!(msg.contains(a_id.as_str()));
    // A made-up id: same.
    send(&mut b, r#"{"type":"signal","to":"nobody","data":1}"#).await;
    expect_error(&mut b, ErrorCode::UnknownPeer).await;

    // A third peer in room one claims to be b: `from` is stamped by the server.
    let mut c = connect(&server).await;
    let (c_id, _) = join(&mut c, "one").await;
    assert!(matches!(
        recv(&mut a).await,
        ServerMessage::PeerJoined { .. }
    ));
    send(
        &mut c,
        &format!(r#"{{"type":"signal","to":"{a_id}","from":"{b_id}","data":"hi"}}"#),
    )
    .await;
    match recv(&mut a).await {
        ServerMessage::Signal { from, .. } => assert_eq!(from, c_id),
        other => panic!("{other:?}"),
    }
    // Nothing leaked to b.
    assert!(tokio::time::timeout(Duration::from_millis(200), b.next())
        .await
        .is_err());
}

#[tokio::test]
async fn malformed_input_gets_clear_errors_and_the_connection_lives() {
    let server = start(&[]).await;
    let mut a = connect(&server).await;
    let cases: &[(&str, ErrorCode)] = &[
        ("not json", ErrorCode::BadMessage),
        ("{}", ErrorCode::BadMessage),
        (r#"{"type":"dance"}"#, ErrorCode::UnknownType),
        (
            r#"{"type":"signal","to":"x","data":1}"#,
            ErrorCode::NotJoined,
        ),
        (r#"{"type":"leave"}"#, ErrorCode::NotJoined),
        (
            r#"{"type":"join","room":"no spaces","v":1}"#,
            ErrorCode::BadRoom,
        ),
        (r#"{"type":"join","room":""}"#, ErrorCode::BadRoom),
        (r#"{"type":"join","room":"r"}"#, ErrorCode::BadMessage),
    ];
    for (text, code) in cases {
        send(&mut a, text).await;
        let msg = expect_error(&mut a, *code).await;
        assert!(!msg.is_empty(), "{text}: empty message");
    }
    a.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    expect_error(&mut a, ErrorCode::BinaryFrame).await;
    // Still usable: join works, a second join does not.
    join(&mut a, "fine").await;
    send(&mut a, r#"{"type":"join","room":"other","v":1}"#).await;
    expect_error(&mut a, ErrorCode::AlreadyJoined).await;
    assert!(metric(server.addr, "swarmdrop_rejects_total{reason=\"malformed\"}").await >= 2.0);

    // An unsupported version closes with a policy violation.
    let mut b = connect(&server).await;
    send(&mut b, r#"{"type":"join","room":"r","v":2}"#).await;
    let msg = expect_error(&mut b, ErrorCode::UnsupportedVersion).await;
    assert!(msg.contains("version 2"));
    expect_close(&mut b, 1008).await;
}

#[tokio::test]
async fn frame_and_payload_limits() {
    let server = start(&["--max-frame", "4096", "--max-signal", "1000"]).await;
    let mut a = connect(&server).await;
    let (a_id, _) = join(&mut a, "r").await;
    let big = "x".repeat(1500);
    send(
        &mut a,
        &format!(r#"{{"type":"signal","to":"{a_id}","data":"{big}"}}"#),
    )
    .await;
    let msg = expect_error(&mut a, ErrorCode::PayloadTooLarge).await;
    assert!(msg.contains("1000"));
    let huge = "x".repeat(10_000);
    send(
        &mut a,
        &format!(r#"{{"type":"signal","to":"{a_id}","data":"{huge}"}}"#),
    )
    .await;
    expect_error(&mut a, ErrorCode::FrameTooLarge).await;
    expect_close(&mut a, 1009).await;
    assert_eq!(
        metric(
            server.addr,
            "swarmdrop_rejects_total{reason=\"frame-too-large\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn rate_limit_is_a_token_bucket() {
    let server = start(&["--rate", "1", "--burst", "5"]).await;
    let mut a = connect(&server).await;
    let (a_id, _) = join(&mut a, "r").await; // 1 token
    for _ in 0..4 {
        send(
            &mut a,
            &format!(r#"{{"type":"signal","to":"{a_id}","data":0}}"#),
        )
        .await;
        assert!(matches!(recv(&mut a).await, ServerMessage::Signal { .. }));
    }
    for _ in 0..10 {
        send(
            &mut a,
            &format!(r#"{{"type":"signal","to":"{a_id}","data":0}}"#),
        )
        .await;
    }
    let msg = expect_error(&mut a, ErrorCode::RateLimited).await;
    assert!(msg.contains("1 messages a second"));
    // Only one error for the whole flood.
    assert!(tokio::time::timeout(Duration::from_millis(300), a.next())
        .await
        .is_err());
    assert_eq!(
        metric(
            server.addr,
            "swarmdrop_rejects_total{reason=\"rate-limited\"}"
        )
        .await,
        10.0
    );
    // After a second, one more token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send(
        &mut a,
        &format!(r#"{{"type":"signal","to":"{a_id}","data":0}}"#),
    )
    .await;
    assert!(matches!(recv(&mut a).await, ServerMessage::Signal { .. }));
}

#[tokio::test]
async fn room_and_server_capacity() {
    let server = start(&["--max-room-peers", "2", "--max-rooms", "1"]).await;
    let mut a = connect(&server).await;
    join(&mut a, "r").await;
    let mut b = connect(&server).await;
    join(&mut b, "r").await;
    let mut c = connect(&server).await;
    send(&mut c, r#"{"type":"join","room":"r","v":1}"#).await;
    expect_error(&mut c, ErrorCode::RoomFull).await;
    send(&mut c, r#"{"type":"join","room":"s","v":1}"#).await;
    expect_error(&mut c, ErrorCode::TooManyRooms).await;
}

#[tokio::test]
async fn connection_limits_total_and_per_ip() {
    let server = start(&["--max-connections-per-ip", "2"]).await;
    let _a = connect(&server).await;
    let _b = connect(&server).await;
    let mut c = connect(&server).await;
    expect_error(&mut c, ErrorCode::TooManyConnections).await;
    expect_close(&mut c, 1013).await;
    drop(_a);
    // The place is freed: a new connection is admitted.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut d = connect(&server).await;
        send(&mut d, r#"{"type":"join","room":"r","v":1}"#).await;
        match next(&mut d).await {
            Seen::Msg(ServerMessage::Welcome { .. }) => break,
            _ => assert!(tokio::time::Instant::now() < deadline, "place not freed"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let server = start(&["--max-connections", "1"]).await;
    let _a = connect(&server).await;
    let mut b = connect(&server).await;
    expect_error(&mut b, ErrorCode::ServerFull).await;
    expect_close(&mut b, 1013).await;
    assert_eq!(
        metric(
            server.addr,
            "swarmdrop_rejects_total{reason=\"server-full\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn join_deadline_and_idle_timeout() {
    let server = start(&[
        "--join-timeout",
        "0.3",
        "--idle-timeout",
        "0.6",
        "--ping-interval",
        "100",
    ])
    .await;
    let mut a = connect(&server).await;
    expect_error(&mut a, ErrorCode::JoinTimeout).await;
    expect_close(&mut a, 1008).await;

    let mut b = connect(&server).await;
    join(&mut b, "r").await;
    // Silent past the idle timeout (pings are 100 s apart, so no pongs either).
    expect_error(&mut b, ErrorCode::Timeout).await;
    expect_close(&mut b, 1008).await;
}

#[tokio::test]
async fn keepalive_pongs_keep_a_quiet_client() {
    let server = start(&["--idle-timeout", "0.8", "--ping-interval", "0.2"]).await;
    let mut a = connect(&server).await;
    join(&mut a, "r").await;
    // Reading lets tungstenite answer the pings; for 2 s only pings arrive, no close.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut pings = 0;
    while let Ok(frame) = tokio::time::timeout_at(until, a.next()).await {
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("unexpected frame: {other:?}"),
        }
    }
    assert!(pings >= 5, "{pings} pings in 2 s at a 0.2 s interval");
}

#[tokio::test]
async fn origins_are_checked() {
    let server = start(&["--allow-origin", "http://good.example"]).await;
    let mut req = server.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403)
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let mut req = server.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "http://good.example".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    join(&mut ws, "r").await;
    assert_eq!(
        metric(server.addr, "swarmdrop_rejects_total{reason=\"origin\"}").await,
        1.0
    );
}

#[tokio::test]
async fn slow_reader_is_dropped_not_buffered() {
    let server = start(&[
        "--send-queue",
        "4",
        "--write-timeout",
        "0.5",
        "--rate",
        "100000",
        "--burst",
        "100000",
        "--max-signal",
        "60000",
    ])
    .await;
    let mut slow = connect(&server).await;
    let (slow_id, _) = join(&mut slow, "r").await;
    let mut fast = connect(&server).await;
    join(&mut fast, "r").await;
    // `slow` never reads again. `fast` sends until the server reports `slow` gone.
    let payload = "y".repeat(50_000);
    let frame = format!(r#"{{"type":"signal","to":"{slow_id}","data":"{payload}"}}"#);
    let mut left = false;
    for _ in 0..2_000 {
        fast.send(Message::Text(frame.clone().into()))
            .await
            .unwrap();
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(1), fast.next()).await
        {
            if let Ok(ServerMessage::PeerLeft { id }) = ServerMessage::parse(t.as_str()) {
                assert_eq!(id, slow_id);
                left = true;
                break;
            }
        }
    }
    if !left {
        match recv(&mut fast).await {
            ServerMessage::PeerLeft { id } => assert_eq!(id, slow_id),
            ServerMessage::Error {
                code: ErrorCode::UnknownPeer,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        metric(
            server.addr,
            "swarmdrop_rejects_total{reason=\"slow-reader\"}"
        )
        .await
            >= 1.0
    );
    drop(slow);
}

#[tokio::test]
async fn shutdown_says_going_away() {
    let server = start(&[]).await;
    let mut a = connect(&server).await;
    join(&mut a, "r").await;
    let mut b = connect(&server).await;
    let stop = server.stop.clone();
    let _ = stop.send(true);
    expect_close(&mut a, 1001).await;
    expect_close(&mut b, 1001).await;
    server.shutdown().await;
}

#[tokio::test]
async fn serves_page_package_health_and_metrics() {
    let server = start(&[]).await;
    let (head, body) = http_get(server.addr, "/", "").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(
        "content-security-policy: default-src 'self'; script-src 'self' 'wasm-unsafe-eval'"
    ));
    assert!(String::from_utf8_lossy(&body).contains("<title>t</title>"));

    let (head, body) = get_wasm(server.addr, "").await;
    assert!(head.contains("content-type: application/wasm"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(body.starts_with(b"\0asm"));
    let (head, _) = get_wasm(server.addr, "Accept-Encoding: gzip\r\n").await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let (head, _) = get_wasm(server.addr, "Accept-Encoding: br\r\n").await;
    assert!(head.contains("content-encoding: br"), "{head}");

    let (head, body) = http_get(server.addr, "/healthz", "").await;
    assert!(head.starts_with("http/1.1 200"));
    assert!(String::from_utf8_lossy(&body).contains(r#""status":"ok""#));
    let (_, body) = http_get(server.addr, "/metrics", "").await;
    let text = String::from_utf8(body).unwrap();
    for name in [
        "swarmdrop_connections ",
        "swarmdrop_rooms ",
        "swarmdrop_peers ",
        "swarmdrop_messages_relayed_total ",
        "swarmdrop_bytes_relayed_total ",
        "# TYPE swarmdrop_rejects_total counter",
        "swarmdrop_relay_latency_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    let (head, _) = http_get(server.addr, "/nope", "").await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
}

/// Nothing outside the page's and the package's folders is served, however the path is
/// written: `..`, encoded, doubled, with backslashes, through the package's own route.
#[tokio::test]
async fn nothing_outside_the_served_folders_is_served() {
    let server = start(&[]).await;
    let secret = "not-for-the-web-7f3a";
    std::fs::write(server.dir.join("secret.txt"), secret).unwrap();
    std::fs::write(server.dir.join("secret.js"), secret).unwrap();
    for path in [
        "/../secret.txt",
        "/pkg/../secret.txt",
        "/pkg/../secret.js",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/pkg/%2e%2e/secret.txt",
        "/pkg/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/pkg/..%2fsecret.txt",
        "/pkg/..%2f..%2fsecret.js",
        "/pkg/..%5c..%5csecret.js",
        "/pkg/..\\secret.js",
        "//secret.txt",
        "/pkg//../secret.js",
        "/.%2e/secret.txt",
        "/pkg/%252e%252e/secret.js",
    ] {
        for extra in ["", "Accept-Encoding: gzip, br\r\n"] {
            let (head, body) = http_get(server.addr, path, extra).await;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            assert!((400..500).contains(&status), "{path} ({extra:?}): {head}");
            assert!(
                !String::from_utf8_lossy(&body).contains(secret),
                "{path} served the file outside"
            );
        }
    }
}

#[tokio::test]
async fn invalid_settings_are_refused() {
    for flags in [
        &["--rate", "0"][..],
        &["--max-room-peers", "0"],
        &["--ice-server", "http://x"],
        &["--idle-timeout", "nan"],
        &["--redis", "http://not-redis"],
        &["--redis-ttl", "1.5"],
    ] {
        let (config, dir) = config(flags);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(flags[0]), "{flags:?}: {err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn package_files_are_compressed_once_per_version_and_revalidated() {
    use std::io::Read;
    let server = start(&[]).await;
    let file = server.dir.join("pkg").join("swarmdrop_bg.wasm");
    let original = std::fs::read(&file).unwrap();
    let br = |body: &[u8]| {
        let mut out = Vec::new();
        brotli::Decompressor::new(body, 4096)
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let (head, body) = get_wasm(server.addr, "Accept-Encoding: gzip, deflate, br, zstd\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: br"), "{head}");
    assert!(head.contains("content-type: application/wasm"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    assert_eq!(br(&body), original);
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an etag")
        .to_string();

    let (head, body) = get_wasm(server.addr, "Accept-Encoding: gzip\r\n").await;
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, original);

    // A browser revalidating its copy (the package is no-cache) gets 304 and no body.
    let (head, body) = get_wasm(
        server.addr,
        &format!("Accept-Encoding: br\r\nIf-None-Match: {etag}\r\n"),
    )
    .await;
    assert!(head.starts_with("http/1.1 304"), "{head}");
    assert!(body.is_empty());

    // A rebuilt package is compressed again: the new bytes, under a new tag.
    let rebuilt = b"\0asm\x01\0\0\0rebuilt".repeat(300);
    std::fs::write(&file, &rebuilt).unwrap();
    let (head, body) = get_wasm(
        server.addr,
        &format!("Accept-Encoding: br\r\nIf-None-Match: {etag}\r\n"),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains(&etag), "{head}");
    assert_eq!(br(&body), rebuilt);

    // Without an accepted coding, the plain file.
    let (head, body) = get_wasm(server.addr, "").await;
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(body, rebuilt);
    server.shutdown().await;
}

/// A client's close is answered (an unanswered close is a failed connection to the browser,
/// and Firefox then delays its next connection to this server), and a client that leaves and
/// closes at once — a page going away — ends with the closing handshake, not a reset.
#[tokio::test]
async fn closes_are_answered_and_end_cleanly() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = start(&[]).await;
    async fn ends_cleanly(ws: &mut Ws) {
        let mut answered = false;
        while let Some(m) = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        {
            match m {
                Ok(Message::Close(_)) => answered = true,
                Ok(_) => {}
                Err(e) => panic!("the connection did not end cleanly: {e}"),
            }
        }
        assert!(answered, "no close frame from the server");
    }
    let mut a = connect(&server).await;
    join(&mut a, "r").await;
    a.close(None).await.unwrap();
    ends_cleanly(&mut a).await;

    let mut b = connect(&server).await;
    join(&mut b, "r").await;
    send(&mut b, r#"{"type":"leave"}"#).await;
    b.close(None).await.unwrap();
    ends_cleanly(&mut b).await;
    server.shutdown().await;
}

/// GET of the test package's wasm with `extra` request headers.
async fn get_wasm(addr: std::net::SocketAddr, extra: &str) -> (String, Vec<u8>) {
    http_get(addr, "/pkg/swarmdrop_bg.wasm", extra).await
}
