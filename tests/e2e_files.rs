//! E2E: Chromium shares a 64 MiB random file through the page's file input; Firefox downloads it
//! through the page, is reloaded mid-transfer, resumes without re-fetching stored pieces, and ends
//! with the same SHA-256. Built only with `--features e2e`.
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use fantoccini::Locator;
use harness::{Browser, Server, Session, TempDir};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const SIZE: usize = 64 * 1024 * 1024;

async fn js(s: &Session, script: &str) -> Value {
    s.client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{:?}: {script}: {e}", s.browser))
}

/// The swarm's view of file `id` in the page: `files()` entry as JSON.
async fn file_info(s: &Session, id: &str) -> Value {
    js(
        s,
        &format!("return window.swarmdrop ? (window.swarmdrop.files().find(f => f.id === '{id}') ?? null) : null"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_file_from_chromium_to_firefox_with_a_reload_in_between() {
    let dir = TempDir::new("upload");
    let path = dir.path().join("random-64MiB.bin");
    let mut data = vec![0u8; SIZE];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&path, &data).unwrap();
    let want: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    drop(data);

    let server = Server::start(&[]);
    let (chromium, firefox) = tokio::join!(
        Session::start(Browser::Chromium),
        Session::start(Browser::Firefox)
    );
    let link = format!("{}/#room=e2e-files", server.url);
    for s in [&chromium, &firefox] {
        s.client.goto(&link).await.expect("open the page");
        s.wait_state("#signal-state", "open", Duration::from_secs(20))
            .await;
        // The store's worker starts from the package under the server's CSP (else the page
        // writes pieces itself, slower).
        let storage = js(s, "return window.swarmdrop.storage").await;
        assert_eq!(storage, "worker", "{:?}", s.browser);
    }
    // Share through the file input (made visible for WebDriver).
    js(
        &chromium,
        "document.getElementById('file-input').classList.remove('visually-hidden'); return null",
    )
    .await;
    let input = chromium
        .client
        .find(Locator::Css("#file-input"))
        .await
        .expect("file input");
    input
        .send_keys(path.to_str().unwrap())
        .await
        .expect("choose the file");

    // Firefox sees it and downloads it through the page.
    let row = "#files li[data-file]";
    let deadline = Instant::now() + Duration::from_secs(40);
    let id = loop {
        if let Ok(el) = firefox.client.find(Locator::Css(row)).await {
            if let Ok(Some(id)) = el.attr("data-file").await {
                break id;
            }
        }
        if Instant::now() > deadline {
            let probe = "return window.swarmdrop ? JSON.stringify([window.swarmdrop.files(), window.swarmdrop.peers()]) : 'no swarm'";
            let c = js(&chromium, probe).await;
            let f = js(&firefox, probe).await;
            panic!("the file never appeared in Firefox\nchromium: {c}\nfirefox: {f}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let name = firefox.text(&format!("li[data-file='{id}'] .name")).await;
    assert_eq!(name, "random-64MiB.bin");
    firefox
        .client
        .find(Locator::Css(&format!(
            "li[data-file='{id}'] button.download"
        )))
        .await
        .expect("download button")
        .click()
        .await
        .expect("click download");

    // Reload once a quarter is stored.
    let deadline = Instant::now() + Duration::from_secs(120);
    let have_before = loop {
        let have = file_info(&firefox, &id).await["have"]
            .as_f64()
            .unwrap_or(0.0);
        if have >= SIZE as f64 / 4.0 {
            break have;
        }
        assert!(Instant::now() < deadline, "the download did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    firefox.client.refresh().await.expect("reload");
    firefox
        .wait_state("#signal-state", "open", Duration::from_secs(20))
        .await;

    // It resumes by itself and completes.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let info = file_info(&firefox, &id).await;
        if info["complete"] == Value::Bool(true) {
            break;
        }
        if Instant::now() > deadline {
            let peers = js(&firefox, "return JSON.stringify(window.swarmdrop.peers())").await;
            panic!("the resumed download did not complete: {info}\npeers: {peers}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    firefox
        .wait_state(
            &format!("li[data-file='{id}'] .fstate"),
            "complete",
            Duration::from_secs(10),
        )
        .await;
    let info = file_info(&firefox, &id).await;
    let received = info["received"].as_f64().unwrap();
    assert!(
        received <= SIZE as f64 - have_before,
        "after the reload {received} bytes were fetched, but {have_before} were already stored"
    );
    // Same bytes on both ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    while js(
        &firefox,
        &format!("return !!(window.swarmdropDownloads.get('{id}')?.file)"),
    )
    .await
        != Value::Bool(true)
    {
        assert!(Instant::now() < deadline, "no File handed over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = firefox
        .client
        .execute_async(
            &format!(
                "const done = arguments[arguments.length - 1];
                 const f = window.swarmdropDownloads.get('{id}').file;
                 f.arrayBuffer().then(b => crypto.subtle.digest('SHA-256', b)).then(h =>
                   done([...new Uint8Array(h)].map(x => x.toString(16).padStart(2, '0')).join('')));"
            ),
            vec![],
        )
        .await
        .expect("hash in Firefox");
    assert_eq!(got.as_str(), Some(want.as_str()), "SHA-256 of the download");
    let save = firefox
        .client
        .find(Locator::Css(&format!("li[data-file='{id}'] a.save")))
        .await
        .expect("a Save link");
    assert_eq!(
        save.attr("download").await.unwrap().as_deref(),
        Some("random-64MiB.bin")
    );
    chromium.close().await;
    firefox.close().await;
}
