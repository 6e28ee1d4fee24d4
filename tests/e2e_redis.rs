//! E2E: two signaling server instances sharing rooms through Redis. Chromium opens the room on
//! instance 1, Firefox on instance 2; they meet, connect directly and chat.
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use harness::{Browser, Redis, Server, Session};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_on_one_instance_and_firefox_on_another_connect_directly() {
    let redis = Redis::start();
    let one = Server::start(&["--redis", &redis.url]);
    let two = Server::start(&["--redis", &redis.url]);
    let (chromium, firefox) = tokio::join!(
        Session::start(Browser::Chromium),
        Session::start(Browser::Firefox)
    );
    chromium
        .client
        .goto(&format!("{}/#room=e2e-redis", one.url))
        .await
        .expect("open the page on instance 1");
    firefox
        .client
        .goto(&format!("{}/#room=e2e-redis", two.url))
        .await
        .expect("open the page on instance 2");
    let mut ids = Vec::new();
    for s in [&chromium, &firefox] {
        s.wait_state("#signal-state", "open", Duration::from_secs(20))
            .await;
        ids.push(s.text("#peer-id").await);
    }
    for (s, other) in [(&chromium, &ids[1]), (&firefox, &ids[0])] {
        let row = s.wait_connected_to(other).await;
        // Loopback host candidates: a direct route, not through any server.
        s.wait_state(&format!("{row} .route"), "direct", Duration::from_secs(10))
            .await;
    }
    chromium.chat("across instances").await;
    firefox
        .wait_text_containing("#chat-log", "across instances", Duration::from_secs(10))
        .await;
    firefox.chat("and back").await;
    chromium
        .wait_text_containing("#chat-log", "and back", Duration::from_secs(10))
        .await;
    chromium.close().await;
    firefox.close().await;
}
