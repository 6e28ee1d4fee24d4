//! E2E: Chromium and Firefox, each in its own process, open the same room link through the
//! served page, connect directly, show the same safety number and chat. Built only with
//! `--features e2e` (`cargo xtask test` does that).
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use harness::{js, open, Browser, Server, Session};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_firefox_meet_through_the_page_and_chat() {
    let server = Server::start(&[]);
    let (chromium, firefox) = tokio::join!(
        Session::start(Browser::Chromium),
        Session::start(Browser::Firefox)
    );
    let link = format!("{}/#room=e2e-page", server.url);
    for s in [&chromium, &firefox] {
        s.client.goto(&link).await.expect("open the page");
    }
    let mut ids = Vec::new();
    for s in [&chromium, &firefox] {
        let version = s
            .wait_state("#version", "ready", Duration::from_secs(20))
            .await;
        assert_eq!(version, format!("swarmdrop {}", env!("CARGO_PKG_VERSION")));
        s.wait_state("#signal-state", "open", Duration::from_secs(20))
            .await;
        assert_eq!(s.text("#room").await, "e2e-page");
        let storage = s
            .wait_state("#storage", "ready", Duration::from_secs(5))
            .await;
        // Where downloads go, how much is stored, and that nothing promised to keep it yet.
        let parts: Vec<&str> = storage.split(" · ").collect();
        assert_eq!(parts.len(), 3, "{:?}: {storage}", s.browser);
        assert_eq!(parts[0], "this browser (OPFS)", "{:?}", s.browser);
        assert!(parts[1].ends_with(" used"), "{:?}: {storage}", s.browser);
        assert_eq!(
            parts[2], "the browser may clear it when the disk runs low",
            "{:?}",
            s.browser
        );
        let id = s.text("#peer-id").await;
        assert_eq!(id.len(), 22, "{:?}: server-assigned id {id:?}", s.browser);
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    // The server sees both in the room.
    let metrics = get_metrics(&server.url).await;
    assert!(metrics.contains("swarmdrop_peers 2"), "{metrics}");

    // Each lists the other as connected, with the same safety number.
    let mut safety = Vec::new();
    for (s, other) in [(&chromium, &ids[1]), (&firefox, &ids[0])] {
        let row = s.wait_connected_to(other).await;
        let number = s
            .wait_text(&format!("{row} .safety"), Duration::from_secs(10))
            .await;
        assert_eq!(
            number.len(),
            14,
            "{:?}: safety number {number:?}",
            s.browser
        );
        safety.push(number);
    }
    assert_eq!(
        safety[0], safety[1],
        "both ends show the same safety number"
    );

    // Chat both ways, shown as text.
    chromium.chat("hello from <b>chromium</b>").await;
    firefox
        .wait_text_containing(
            "#chat-log",
            "hello from <b>chromium</b>",
            Duration::from_secs(10),
        )
        .await;
    firefox.chat("and hello from firefox").await;
    chromium
        .wait_text_containing(
            "#chat-log",
            "and hello from firefox",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        firefox
            .client
            .find(fantoccini::Locator::Css("#chat-log b"))
            .await
            .is_err(),
        "a chat message was rendered as HTML"
    );

    // A flood of messages, and a huge one: the chat keeps the last 500, each cut to 2000
    // characters.
    let sent = js(
        &chromium,
        "return (async () => {
           for (let i = 0; i < 600; i++) await window.swarmdrop.broadcast(`flood ${i}`);
           await window.swarmdrop.broadcast('x'.repeat(100000));
           return 601;
         })()",
    )
    .await;
    assert_eq!(sent, 601);
    firefox
        .wait_text_containing("#chat-log", "flood 599", Duration::from_secs(20))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = js(
            &firefox,
            "const items = [...document.querySelectorAll('#chat-log li .text')];
             return [items.length, items[0].textContent, items[items.length - 1].textContent.length]",
        )
        .await;
        if shown[2] == 2001 || std::time::Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        shown,
        serde_json::json!([500, "flood 101", 2001]),
        "the chat's length, its first message, the huge one's shown length"
    );
    chromium.close().await;
    firefox.close().await;
}

/// A link to another room pasted into a tab that shows the page changes only its hash: the page
/// joins that room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_another_room_pasted_into_the_tab_joins_that_room() {
    let server = Server::start(&[]);
    let chromium = Session::start(Browser::Chromium).await;
    open(&chromium, &format!("{}/#room=e2e-hash-a", server.url)).await;
    assert_eq!(chromium.text("#room").await, "e2e-hash-a");
    js(&chromium, "location.hash = '#room=e2e-hash-b'; return null").await;
    chromium
        .wait_text_containing("#room", "e2e-hash-b", Duration::from_secs(20))
        .await;
    chromium
        .wait_state("#signal-state", "open", Duration::from_secs(20))
        .await;
    // The server has it in the new room only.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get_metrics(&server.url).await;
        if metrics.contains("swarmdrop_rooms 1") && metrics.contains("swarmdrop_peers 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    chromium.close().await;
}

/// GET /metrics over a plain TCP socket (no HTTP client dependency needed for one request).
async fn get_metrics(base: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}
