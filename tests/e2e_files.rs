//! E2E: Chromium shares a 64 MiB random file through the page's file input; Firefox downloads it
//! through the page, is reloaded mid-transfer, resumes without re-fetching stored pieces, and ends
//! with the same SHA-256. Also: a download that does not fit in the browser's storage (each
//! browser), the page's file list (picked and dropped files, names as text, a copied file link,
//! Save, Delete, Stop sharing), a shared file changed on disk, a sharer that reloads (asked for
//! its files again; downloads of them go on), and a sharer's uploads (what the page says of
//! them, the upload limit, the question before leaving). Built only with
//! `--features e2e`.
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use fantoccini::Locator;
use harness::{call, connected_pair, js, open, wait_js, Browser, Server, Session, TempDir};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const SIZE: usize = 64 * 1024 * 1024;

/// The swarm's view of file `id` in the page: `files()` entry as JSON.
async fn file_info(s: &Session, id: &str) -> Value {
    js(
        s,
        &format!("return window.swarmdrop ? (window.swarmdrop.files().find(f => f.id === '{id}') ?? null) : null"),
    )
    .await
}

/// The swarm's view of file `id` in page `s` once `done` holds for it (asked every 100 ms);
/// panics with `what` and the last view after `within`.
async fn file_info_when(
    s: &Session,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let info = file_info(s, id).await;
        if done(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "{what}: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Shares `paths` (files on disk) through the page's file input, made visible for WebDriver.
async fn pick(s: &Session, paths: &[&str]) {
    pick_with(s, "file-input", &paths.join("\n")).await;
}

/// Picks `what` (files, one path a line, or a folder) in the page's input `id`.
async fn pick_with(s: &Session, id: &str, what: &str) {
    js(
        s,
        &format!(
            "document.getElementById('{id}').classList.remove('visually-hidden'); return null"
        ),
    )
    .await;
    s.client
        .find(Locator::Css(&format!("#{id}")))
        .await
        .expect("file input")
        .send_keys(what)
        .await
        .expect("choose the files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_file_from_chromium_to_firefox_with_a_reload_in_between() {
    let dir = TempDir::new("upload");
    let path = dir.path().join("random-64MiB.bin");
    let data = random_bytes(SIZE, 0x9E37_79B9_7F4A_7C15);
    std::fs::write(&path, &data).unwrap();
    let want: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    drop(data);

    let server = Server::start(&[]);
    // Firefox answers the page's request to keep its storage (`persist()`) with yes, as a
    // user would, instead of asking.
    let allow = [
        ("dom.storageManager.prompt.testing", serde_json::json!(true)),
        (
            "dom.storageManager.prompt.testing.allow",
            serde_json::json!(true),
        ),
    ];
    let (chromium, firefox) = tokio::join!(
        Session::start(Browser::Chromium),
        Session::start_with_prefs(Browser::Firefox, &allow)
    );
    let link = format!("{}/#room=e2e-files", server.url);
    for s in [&chromium, &firefox] {
        open(s, &link).await;
        // The store's worker starts from the package under the server's CSP (else the page
        // writes pieces itself, slower).
        let storage = js(s, "return window.swarmdrop.storage").await;
        assert_eq!(storage, "worker", "{:?}", s.browser);
    }
    pick(&chromium, &[path.to_str().unwrap()]).await;

    // Firefox sees it and downloads it through the page.
    let id = wait_file_id(&firefox, &[&chromium]).await;
    let name = firefox.text(&format!("li[data-file='{id}'] .name")).await;
    assert_eq!(name, "random-64MiB.bin");
    // Not kept for sure until the first download asks the browser to.
    let before = js(&firefox, KEPT).await;
    assert_eq!(before[0], "false", "{before}");
    assert!(
        before[1]
            .as_str()
            .unwrap()
            .contains("may clear it when the disk runs low"),
        "{before}"
    );
    click(
        &firefox,
        &format!("li[data-file='{id}'] button.download"),
        "Download",
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let after = js(&firefox, KEPT).await;
        if after[0] == "true" || Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after[0], "true", "{after}");
    assert!(
        after[1]
            .as_str()
            .unwrap()
            .contains("kept until you delete it"),
        "{after}"
    );

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
    let got = downloaded_sha256(&firefox, &id).await;
    assert_eq!(got, want, "SHA-256 of the download");
    // (Read in one script: the list may be drawn again between finding and reading; and it is
    // drawn again within a tenth of a second of the download's end.)
    wait_js(
        &firefox,
        &format!("return document.querySelector(\"li[data-file='{id}'] a.save\")?.getAttribute('download') ?? null"),
        "random-64MiB.bin".into(),
        Duration::from_secs(5),
        "the Save link, with the file's name",
    )
    .await;

    // Reloaded once more, the page offers the stored file for saving again, by itself.
    firefox.client.refresh().await.expect("reload");
    firefox
        .wait_state("#signal-state", "open", Duration::from_secs(20))
        .await;
    let got = downloaded_sha256(&firefox, &id).await;
    assert_eq!(got, want, "SHA-256 of the stored file after a reload");
    let save_link = format!(
        "const a = document.querySelector(\"li[data-file='{id}'] a.save\");
         return a ? [a.getAttribute('download'), a.href.startsWith('blob:')] : null"
    );
    wait_js(
        &firefox,
        &save_link,
        serde_json::json!(["random-64MiB.bin", true]),
        Duration::from_secs(10),
        "the Save link after a reload",
    )
    .await;
    // Still kept: the browser's promise holds for the site, not the page.
    let kept = js(&firefox, KEPT).await;
    assert_eq!(kept[0], "true", "after a reload: {kept}");
    chromium.close().await;
    firefox.close().await;
}

/// Whether the page says the browser keeps its storage: `[data-persisted, text]` of `#storage`.
const KEPT: &str =
    "const s = document.getElementById('storage'); return [s.dataset.persisted, s.textContent]";

/// Clicks the button `css` (labelled `label`) once the page shows it: found and clicked in
/// one script, since the file list is drawn again on every change (an element found first
/// and clicked next may be gone by then).
async fn click(s: &Session, css: &str, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    let script = format!(
        "const b = document.querySelector(\"{css}\");
         if (!b) return null;
         b.click();
         return b.textContent;"
    );
    loop {
        if let Some(text) = js(s, &script).await.as_str() {
            assert_eq!(text, label, "{:?}: {css}", s.browser);
            return;
        }
        assert!(Instant::now() < deadline, "{:?}: no {css}", s.browser);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The SHA-256 (hex) of the `File` the page was handed for download `id`, once it has it.
async fn downloaded_sha256(s: &Session, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while js(
        s,
        &format!("return !!(window.swarmdropDownloads.get('{id}')?.file)"),
    )
    .await
        != Value::Bool(true)
    {
        assert!(
            Instant::now() < deadline,
            "{:?}: no File handed over",
            s.browser
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = call(
        s,
        format!(
            "window.swarmdropDownloads.get('{id}').file.arrayBuffer()
               .then(b => crypto.subtle.digest('SHA-256', b))
               .then(h => [...new Uint8Array(h)].map(x => x.toString(16).padStart(2, '0')).join(''))"
        ),
    )
    .await;
    got.as_str().expect("a hex digest").to_string()
}

const MIB: f64 = 1024.0 * 1024.0;
/// The file of the storage test, and the space its downloader has left at first.
const QUOTA_FILE: usize = 24 * 1024 * 1024;
const ROOM_LEFT: f64 = 8.0 * MIB;
const CHROMIUM_QUOTA: u64 = 64 * 1024 * 1024;

/// A download larger than the browser's storage has left for the site stops at once with a
/// message that says so (and how much it needs), fetching next to nothing; once room is made,
/// the page's button downloads it whole. The storage is the browser's own, with a quota made
/// small: Chromium's through DevTools, Firefox's through its preferences (the origin's group
/// limit follows the global one). Most of it is then taken by a file the page writes.
/// `page_writes`: the downloader's page can start no worker, so it writes pieces itself (the
/// fallback), and checks for room itself (Chromium only: the page is changed through DevTools).
async fn a_download_that_does_not_fit_says_so_then_completes_once_room_is_made(
    downloader: Browser,
    page_writes: bool,
) {
    let server = Server::start(&[]);
    // Firefox: a 256 MiB global limit (in KiB), of which the origin may use a fifth.
    let limit = [(
        "dom.quotaManager.temporaryStorage.fixedLimit",
        serde_json::json!(256 * 1024),
    )];
    let (sender, receiver) = tokio::join!(
        Session::start(Browser::Chromium),
        Session::start_with_prefs(downloader, &limit)
    );
    if page_writes {
        assert_eq!(downloader, Browser::Chromium, "DevTools changes the page");
        harness::cdp(
            &receiver,
            "Page.addScriptToEvaluateOnNewDocument",
            serde_json::json!({
                "source": "window.Worker = function () { throw new Error('no workers here (test)'); };"
            }),
        )
        .await;
    }
    let link = format!(
        "{}/#room=e2e-quota-{downloader:?}-{page_writes}",
        server.url
    );
    for s in [&sender, &receiver] {
        open(s, &link).await;
    }
    let storage = js(&receiver, "return window.swarmdrop.storage").await;
    assert_eq!(
        storage,
        if page_writes { "page" } else { "worker" },
        "how the downloader stores"
    );
    if downloader == Browser::Chromium {
        harness::cdp(
            &receiver,
            "Storage.overrideQuotaForOrigin",
            serde_json::json!({ "origin": server.url, "quotaSize": CHROMIUM_QUOTA }),
        )
        .await;
    }
    // Chromium's `estimate()` reports no real quota (usage + 10 GiB, against fingerprinting).
    let quota = match downloader {
        Browser::Chromium => CHROMIUM_QUOTA.to_string(),
        Browser::Firefox => "reported".into(),
    };
    // Most of what is left is taken.
    let space = call(
        &receiver,
        format!(
            "(async () => {{
               const {{ quota: reported, usage }} = await navigator.storage.estimate();
               const quota = {quota};
               const ballast = Math.floor(quota - usage - {ROOM_LEFT});
               if (ballast > 1024 * {MIB}) throw new Error(`the quota is not small: ${{quota}}`);
               if (ballast > 0) {{
                 // A file of that length (the quota counts lengths; no need to write it).
                 const root = await navigator.storage.getDirectory();
                 const w = await (await root.getFileHandle('ballast', {{ create: true }})).createWritable();
                 await w.truncate(ballast);
                 await w.close();
               }}
               const after = await navigator.storage.estimate();
               return {{ quota, reported, usage, ballast, left: quota - after.usage }};
             }})()"
        ),
    )
    .await;
    eprintln!("{downloader:?}'s storage: {space}");
    let left = space["left"].as_f64().unwrap();
    assert!(
        left < QUOTA_FILE as f64 / 2.0,
        "the storage left ({left}) should be well short of the file"
    );

    // The sender shares a random file; its SHA-256 for later.
    let shared = call(
        &sender,
        format!(
            "(async () => {{
               const bytes = new Uint8Array({QUOTA_FILE});
               for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
               const h = await crypto.subtle.digest('SHA-256', bytes);
               const {{ id }} = await window.swarmdrop.share(new File([bytes], 'big.bin'));
               return {{ id, sha: [...new Uint8Array(h)].map(x => x.toString(16).padStart(2, '0')).join('') }};
             }})()"
        ),
    )
    .await;
    let id = shared["id"].as_str().unwrap().to_string();
    let button = format!("li[data-file='{id}'] button.download");
    let state = format!("li[data-file='{id}'] .fstate");
    click(&receiver, &button, "Download").await;
    receiver
        .wait_state(&state, "error", Duration::from_secs(30))
        .await;
    // The first download asked the browser to keep the site's storage: Chromium (a fresh
    // profile, a site never used before) said no; Firefox asks its user, who has not answered
    // (headless: the question stays open) — it is not kept either way, and the page says so.
    let kept = js(&receiver, KEPT).await;
    assert_eq!(kept[0], "false", "{kept}");
    let text = kept[1].as_str().unwrap();
    assert!(
        text.contains("the browser did not promise to keep it")
            || (downloader == Browser::Firefox && text.contains("asked the browser to keep it")),
        "{kept}"
    );
    let message = receiver
        .text(&format!("li[data-file='{id}'] .meta.error"))
        .await;
    eprintln!("{downloader:?} says: {message}");
    assert!(
        message.contains("storage for this site is full") && message.contains("needs 24.0 MiB"),
        "{message}"
    );
    // Said to screen readers too.
    announced(
        &receiver,
        &[
            "Download stopped: big.bin: ",
            "storage for this site is full",
        ],
    )
    .await;
    let info = file_info(&receiver, &id).await;
    assert_eq!(info["downloading"], Value::Bool(false), "{info}");
    assert!(
        info["received"].as_f64().unwrap() < QUOTA_FILE as f64 / 2.0,
        "it stopped early: {info}"
    );

    // Room is made (the other file deleted); the same button gets it all.
    call(
        &receiver,
        "navigator.storage.getDirectory().then(r => r.removeEntry('ballast')).then(() => null)"
            .into(),
    )
    .await;
    click(&receiver, &button, "Download").await;
    receiver
        .wait_state(&state, "complete", Duration::from_secs(120))
        .await;
    announced(&receiver, &["Downloaded: big.bin"]).await;
    let got = downloaded_sha256(&receiver, &id).await;
    assert_eq!(shared["sha"], got.as_str(), "SHA-256 of the download");
    sender.close().await;
    receiver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_does_not_fit_in_chromium_says_so_then_completes_once_room_is_made() {
    a_download_that_does_not_fit_says_so_then_completes_once_room_is_made(Browser::Chromium, false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_does_not_fit_where_the_page_writes_says_so_then_completes_once_room_is_made(
) {
    a_download_that_does_not_fit_says_so_then_completes_once_room_is_made(Browser::Chromium, true)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_does_not_fit_in_firefox_says_so_then_completes_once_room_is_made() {
    a_download_that_does_not_fit_says_so_then_completes_once_room_is_made(Browser::Firefox, false)
        .await;
}

/// The page's file list, end to end: files picked several at once (Chromium's file input) and
/// dropped (Firefox's drop zone) reach the other page, names shown as text (one is HTML); a
/// file's copied link, opened in Firefox, offers that file, whose download is verified, saved
/// under its name, listed as stored and deleted from there; "Stop sharing" removes a file from
/// the other page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shares_picked_and_dropped_files_and_a_copied_link_offers_one() {
    let dir = TempDir::new("picked");
    let names = [
        "notes.txt",
        "<img src=x onerror=window.pwned=1>.txt",
        "photo & more.bin",
    ];
    let mut paths = Vec::new();
    let mut sums = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let bytes: Vec<u8> = (0..300_000 + i * 1000)
            .map(|k| (k * 31 + i * 7) as u8)
            .collect();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        paths.push(path.to_str().unwrap().to_string());
        sums.push(
            Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
    }
    let server = Server::start(&[]);
    let (chromium, firefox) = tokio::join!(
        Session::start(Browser::Chromium),
        Session::start(Browser::Firefox)
    );
    let room = "e2e-page-files";
    for s in [&chromium, &firefox] {
        open(s, &format!("{}/#room={room}", server.url)).await;
    }
    // Chromium picks all three at once.
    pick(
        &chromium,
        &paths.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    // Firefox drops one on the page's title, outside the drop zone: taken all the same (the
    // browser would otherwise open the file in the tab, closing the page). A drag of text is
    // left to the browser.
    let drop = js(
        &firefox,
        "const dt = new DataTransfer();
         dt.items.add(new File([new Uint8Array(200000).fill(7)], 'dropped.bin'));
         const at = document.querySelector('h1');
         const over = at.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
         const dropped = at.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
         const text = new DataTransfer();
         text.setData('text/plain', 'hello');
         const input = document.getElementById('chat-input');
         const textOver = input.dispatchEvent(new DragEvent('dragover', { dataTransfer: text, bubbles: true, cancelable: true }));
         return [over, dropped, textOver]",
    )
    .await;
    // (`dispatchEvent` is false where a listener took the event from the browser.)
    assert_eq!(
        drop,
        serde_json::json!([false, false, true]),
        "files taken, text left"
    );

    // Both pages list all four, each from one source, names as text.
    let mut want: Vec<&str> = names.to_vec();
    want.push("dropped.bin");
    want.sort_unstable();
    let listed = "return [...document.querySelectorAll('#files li[data-file]')].map(li =>
        [li.querySelector('.name').textContent, li.querySelector('.meta').textContent, li.dataset.file])";
    let mut ids = std::collections::HashMap::new();
    for s in [&chromium, &firefox] {
        let deadline = Instant::now() + Duration::from_secs(40);
        let rows = loop {
            let rows = js(s, listed).await;
            if rows.as_array().is_some_and(|r| r.len() == want.len()) {
                break rows;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} lists {rows}, not the four files",
                s.browser
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let rows = rows.as_array().unwrap();
        let mut got: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, want, "{:?}: the names as shown", s.browser);
        for r in rows {
            // Its own files the page has whole, and no one else yet.
            let own = (s.browser == Browser::Firefox) == (r[0] == "dropped.bin");
            let sources = if own { "only you have it" } else { "1 source" };
            assert!(
                r[1].as_str().unwrap().ends_with(&format!("· {sources}")),
                "{:?}: {r}",
                s.browser
            );
            ids.insert(
                r[0].as_str().unwrap().to_string(),
                r[2].as_str().unwrap().to_string(),
            );
        }
        let html = js(
            s,
            "return [document.querySelectorAll('#files img').length, window.pwned ?? null]",
        )
        .await;
        assert_eq!(
            html,
            serde_json::json!([0, null]),
            "{:?}: a name became HTML",
            s.browser
        );
    }

    // Each page said to screen readers what happened (in its live region; the lists, drawn
    // again many times a second, are not live regions).
    for (s, shared) in [
        (&chromium, "Shared 3 files"),
        (&firefox, "Shared: dropped.bin"),
    ] {
        announced(s, &["A peer connected", shared]).await;
        let live = js(
            s,
            "return ['files', 'peers', 'stored', 'announce'].map(id => document.getElementById(id).getAttribute('aria-live'))",
        )
        .await;
        assert_eq!(
            live,
            serde_json::json!([null, null, null, "polite"]),
            "{:?}",
            s.browser
        );
    }

    // Chromium copies the link of notes.txt (a real click: the clipboard wants a user's).
    let id = ids["notes.txt"].clone();
    let wanted_link = format!("{}/#room={room}&file={id}", server.url);
    // (Granted at once: the command denies what it does not name.)
    harness::cdp(
        &chromium,
        "Browser.grantPermissions",
        serde_json::json!({
            "origin": server.url,
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
        }),
    )
    .await;
    chromium
        .client
        .find(Locator::Css(&format!("li[data-file='{id}'] button.link")))
        .await
        .expect("Copy link")
        .click()
        .await
        .expect("click Copy link");
    chromium
        .wait_text_containing(
            &format!("li[data-file='{id}'] button.link"),
            "Link copied",
            Duration::from_secs(5),
        )
        .await;
    let copied = call(&chromium, "navigator.clipboard.readText()".into()).await;
    assert_eq!(copied, wanted_link.as_str(), "the copied link");

    // Opened in Firefox (a new load of the page), the link offers that file.
    firefox.client.goto("about:blank").await.expect("leave");
    open(&firefox, &wanted_link).await;
    firefox
        .wait_text_containing(
            "#wanted",
            "Someone shared a file with you: notes.txt",
            Duration::from_secs(40),
        )
        .await;
    // Pressed from the keyboard; the focus then goes on to the file's row.
    wait_js(
        &firefox,
        "const b = document.querySelector('#wanted button'); if (!b) return null; b.focus(); return b.textContent",
        "Download (300.0 KB)".into(),
        Duration::from_secs(10),
        "the offered file's Download, focused",
    )
    .await;
    press_enter(&firefox).await;
    wait_js(
        &firefox,
        &format!("return !!document.activeElement.closest(\"li[data-file='{id}']\")"),
        Value::Bool(true),
        Duration::from_secs(10),
        "the focus on the file's row",
    )
    .await;
    firefox
        .wait_state(
            &format!("li[data-file='{id}'] .fstate"),
            "complete",
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(downloaded_sha256(&firefox, &id).await, sums[0]);
    announced(&firefox, &["Downloaded: notes.txt"]).await;
    // (The row is drawn again within a tenth of a second of the download's end.)
    wait_js(
        &firefox,
        &format!("return document.querySelector(\"li[data-file='{id}'] a.save\")?.getAttribute('download') ?? null"),
        "notes.txt".into(),
        Duration::from_secs(5),
        "the Save link, with the file's name",
    )
    .await;
    // Stored in Firefox now, and deleted from the stored list.
    let stored = format!("#stored li[data-stored='{id}'] button.delete");
    click(&firefox, &stored, "Delete").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = call(
            &firefox,
            format!("window.swarmdrop.storedFiles().then(f => f.some(x => x.id === '{id}') || !!document.querySelector(\"{stored}\"))"),
        )
        .await;
        if left == Value::Bool(false) {
            break;
        }
        assert!(Instant::now() < deadline, "still stored after Delete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Chromium stops sharing the photo: gone from Firefox's list (it had no other source).
    let photo = ids["photo & more.bin"].clone();
    click(
        &chromium,
        &format!("li[data-file='{photo}'] button.unshare"),
        "Stop sharing",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while js(
        &firefox,
        &format!("return !!document.querySelector(\"li[data-file='{photo}']\")"),
    )
    .await
        == Value::Bool(true)
    {
        assert!(
            Instant::now() < deadline,
            "the unshared file is still listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    chromium.close().await;
    firefox.close().await;
}

/// Presses Enter on whatever has the keyboard's focus when the key goes down, as a keyboard user
/// would: through the keyboard input source, not an element reference (a row drawn anew between
/// finding the focused element and sending it the key made that reference stale).
async fn press_enter(s: &Session) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let enter = '\u{E007}';
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: enter })
        .then(KeyAction::Up { value: enter });
    s.client.perform_actions(keys).await.expect("Enter");
}

/// Waits until the page has said each of `what` to screen readers (among its announcements).
async fn announced(s: &Session, what: &[&str]) {
    // (True once all are said; until then what was said, for the message.)
    let list = serde_json::to_string(what).unwrap();
    wait_js(
        s,
        &format!("const said = (window.swarmdropAnnounced ?? []).join('. '); return {list}.every(w => said.includes(w)) || said"),
        Value::Bool(true),
        Duration::from_secs(10),
        &format!("announced {what:?}"),
    )
    .await;
}

/// A shared file that changes on disk can no longer be read (browsers refuse to read a picked
/// file that changed since): the sharing page stops offering it and says why, and the
/// downloader sees it has no source left, instead of waiting on one that cannot answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_file_changed_on_disk_stops_being_offered_and_the_sharer_is_told() {
    let dir = TempDir::new("changed");
    let path = dir.path().join("draft.bin");
    std::fs::write(&path, vec![7u8; 4 * 1024 * 1024]).unwrap();
    let server = Server::start(&[]);
    let (chromium, firefox) = tokio::join!(
        Session::start(Browser::Chromium),
        Session::start(Browser::Firefox)
    );
    let link = format!("{}/#room=e2e-changed", server.url);
    for s in [&chromium, &firefox] {
        open(s, &link).await;
    }
    pick(&chromium, &[path.to_str().unwrap()]).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let id = loop {
        let id = js(
            &firefox,
            "return window.swarmdrop.files().find(f => f.name === 'draft.bin')?.id ?? null",
        )
        .await;
        if let Some(id) = id.as_str() {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "the file never reached Firefox");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The file is edited after it was shared (a later modification time, other bytes).
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&path, vec![9u8; 4 * 1024 * 1024]).unwrap();
    click(
        &firefox,
        &format!("li[data-file='{id}'] button.download"),
        "Download",
    )
    .await;
    chromium
        .wait_text_containing(
            "#swarm-error",
            "\"draft.bin\" can no longer be read",
            Duration::from_secs(20),
        )
        .await;
    let info = file_info_when(
        &firefox,
        &id,
        Duration::from_secs(20),
        "Firefox still counts the sharer as a source",
        |info| info["sources"] == 0,
    )
    .await;
    assert_eq!(
        info["have"], 0,
        "nothing of the changed file is taken: {info}"
    );
    // The sharer no longer lists it (no one has it).
    let listed = js(
        &chromium,
        &format!("return !!document.querySelector(\"li[data-file='{id}']\")"),
    )
    .await;
    assert_eq!(listed, false, "the sharer still lists the file");
    chromium.close().await;
    firefox.close().await;
}

/// A page that reloads can no longer read the files it shared from disk (a browser lets a page
/// read a file only once it is picked): it lists them and asks for them again. Picked again —
/// a file of a shared folder on its own too — each is shared under the name it had, so it keeps
/// its id, and a download of it that the reload stopped goes on to the same bytes. "Stop
/// sharing" forgets a file, "Forget them" the list. `sharer` shares and reloads, the other
/// browser downloads.
async fn a_sharer_that_reloads_asks_for_its_files_again(sharer: Browser) {
    const BIG: usize = 16 * 1024 * 1024;
    let dir = TempDir::new("reshare");
    let folder = dir.path().join("album");
    std::fs::create_dir(&folder).unwrap();
    let small = folder.join("a.bin");
    std::fs::write(&small, vec![5u8; 300_000]).unwrap();
    let big = dir.path().join("b.bin");
    let data = random_bytes(BIG, 0x2545_F491_4F6C_DD1D);
    std::fs::write(&big, &data).unwrap();
    let want = hex(&Sha256::digest(&data));
    drop(data);
    let (small, big) = (small.to_str().unwrap(), big.to_str().unwrap());

    let server = Server::start(&[]);
    let other = match sharer {
        Browser::Chromium => Browser::Firefox,
        Browser::Firefox => Browser::Chromium,
    };
    let (sharer, getter) = tokio::join!(Session::start(sharer), Session::start(other));
    let link = format!("{}/#room=e2e-reshare", server.url);
    for s in [&sharer, &getter] {
        open(s, &link).await;
    }
    nothing_hidden_shows(&sharer).await;
    // A folder where the browser's driver can pick one (not geckodriver): its file is named by
    // its path there, and picked again on its own after the reload.
    let in_folder = sharer.browser == Browser::Chromium;
    let a_name = if in_folder { "album/a.bin" } else { "a.bin" };
    if in_folder {
        pick_with(&sharer, "folder-input", folder.to_str().unwrap()).await;
    } else {
        pick(&sharer, &[small]).await;
    }
    listed(&getter, 1).await;
    pick(&sharer, &[big]).await;
    listed(&getter, 2).await;
    // Another tab of the same room in the same browser is not asked for them (each tab keeps
    // its own list).
    let first = sharer.client.window().await.expect("this tab");
    let tab = sharer.client.new_window(true).await.expect("a new tab");
    sharer
        .client
        .switch_to_window(tab.handle)
        .await
        .expect("to it");
    open(&sharer, &link).await;
    let other_tab = js(&sharer, "return document.getElementById('before').hidden").await;
    sharer.client.close_window().await.expect("close it");
    sharer.client.switch_to_window(first).await.expect("back");
    assert_eq!(other_tab, true, "another tab of the room is asked for them");
    let ids = js(
        &getter,
        "return Object.fromEntries(window.swarmdrop.files().map(f => [f.name, f.id]))",
    )
    .await;
    let (a_id, b_id) = (
        ids[a_name].as_str().expect("a.bin listed"),
        ids["b.bin"].as_str().expect("b.bin listed"),
    );
    // The sharer sends slowly, so that the download is under way when it reloads.
    js(
        &sharer,
        "window.swarmdrop.setUploadLimit(1000000); return null",
    )
    .await;
    click(
        &getter,
        &format!("li[data-file='{b_id}'] button.download"),
        "Download",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while file_info(&getter, b_id).await["have"]
        .as_f64()
        .unwrap_or(0.0)
        == 0.0
    {
        assert!(Instant::now() < deadline, "the download did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let asked = reload_and_asked(&sharer, "This page shared 2 files before it was reloaded").await;
    assert_eq!(
        asked,
        serde_json::json!([
            [format!("{a_name} (300.0 KB)"), "b.bin (16.8 MB)"],
            !in_folder,
            "Pick them again"
        ]),
        "what the page asks for again"
    );
    // "Pick them again" opens the page's file picker (here held back, as no one would answer it).
    js(
        &sharer,
        "document.getElementById('file-input').addEventListener('click',
           (e) => { e.preventDefault(); window.pickerOpened = true; }, { once: true });
         return null",
    )
    .await;
    sharer
        .client
        .find(Locator::Css("#before-pick"))
        .await
        .expect("Pick them again")
        .click()
        .await
        .expect("click it");
    let opened = "return window.pickerOpened === true";
    wait_js(
        &sharer,
        opened,
        true.into(),
        Duration::from_secs(5),
        "the picker opened",
    )
    .await;
    // The download waits for a source.
    let info = file_info_when(
        &getter,
        b_id,
        Duration::from_secs(20),
        "the sharer is still a source",
        |info| info["sources"] == 0,
    )
    .await;
    assert_eq!(info["complete"], false, "{info}");

    // Both picked again, each on its own.
    pick(&sharer, &[small, big]).await;
    wait_js(
        &sharer,
        "return document.getElementById('before').hidden",
        true.into(),
        Duration::from_secs(30),
        "the question gone once both are shared again",
    )
    .await;
    file_info_when(
        &getter,
        b_id,
        Duration::from_secs(120),
        "the download did not go on",
        |info| info["complete"] == true,
    )
    .await;
    assert_eq!(downloaded_sha256(&getter, b_id).await, want);
    let a = file_info(&getter, a_id).await;
    assert_eq!(
        (a["name"].as_str(), a["sources"].as_u64()),
        (Some(a_name), Some(1)),
        "the first file, picked again on its own, is offered under its name again: {a}"
    );

    // A file changed on disk since (same name and size, other bytes) and picked again is a new
    // file under that name: the page no longer asks for the old one.
    std::fs::write(small, vec![6u8; 300_000]).unwrap();
    let asked = reload_and_asked(&sharer, "This page shared 2 files before it was reloaded").await;
    assert_eq!(asked[2], "Pick them again", "{asked}");
    pick(&sharer, &[small]).await;
    sharer
        .wait_text_containing(
            "#before-what",
            "This page shared a file before it was reloaded",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        asked_again(&sharer).await,
        serde_json::json!([["b.bin (16.8 MB)"], true, "Pick it again"]),
        "asked for after the change"
    );
    let new_a =
        format!("window.swarmdrop.files().find(f => f.name === '{a_name}' && f.id !== '{a_id}')");
    wait_js(
        &sharer,
        &format!("return {new_a} !== undefined"),
        true.into(),
        Duration::from_secs(20),
        "the changed file shared under its name",
    )
    .await;
    let a_id = js(&sharer, &format!("return {new_a}.id")).await;
    let a_id = a_id.as_str().expect("its id");

    // A file the sharer stops sharing is not asked for after the next reload; the other is,
    // until "Forget them".
    click(
        &sharer,
        &format!("li[data-file='{a_id}'] button.unshare"),
        "Stop sharing",
    )
    .await;
    let asked = reload_and_asked(&sharer, "This page shared a file before it was reloaded").await;
    assert_eq!(
        asked,
        serde_json::json!([["b.bin (16.8 MB)"], true, "Pick it again"]),
        "what the page asks for after Stop sharing"
    );
    click(&sharer, "#before-forget", "Forget them").await;
    let gone = "return document.getElementById('before').hidden";
    wait_js(
        &sharer,
        gone,
        true.into(),
        Duration::from_secs(5),
        "forgotten",
    )
    .await;
    sharer.client.refresh().await.expect("reload");
    sharer
        .wait_state("#signal-state", "open", Duration::from_secs(20))
        .await;
    assert_eq!(js(&sharer, gone).await, true, "asked again after Forget");
    nothing_hidden_shows(&sharer).await;
    sharer.close().await;
    getter.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharer_that_reloads_in_chromium_asks_for_its_files_again_and_downloads_of_them_go_on() {
    a_sharer_that_reloads_asks_for_its_files_again(Browser::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharer_that_reloads_in_firefox_asks_for_its_files_again_and_downloads_of_them_go_on() {
    a_sharer_that_reloads_asks_for_its_files_again(Browser::Firefox).await;
}

/// Reloads page `s` and waits until it says `says` of the files it shared before; what it
/// asks for (see [`asked_again`]).
async fn reload_and_asked(s: &Session, says: &str) -> Value {
    s.client.refresh().await.expect("reload");
    s.wait_state("#signal-state", "open", Duration::from_secs(20))
        .await;
    s.wait_text_containing("#before-what", says, Duration::from_secs(10))
        .await;
    asked_again(s).await
}

/// What page `s` asks for of the files it shared before a reload: `[names and sizes listed,
/// "Pick the folder again" hidden, the pick button's label]`.
async fn asked_again(s: &Session) -> Value {
    js(
        s,
        "return [[...document.querySelectorAll('#before-list li')].map(li => li.textContent),
                 document.getElementById('before-folder').hidden,
                 document.getElementById('before-pick').textContent]",
    )
    .await
}

/// Waits until `s`'s page lists `n` files.
async fn listed(s: &Session, n: usize) {
    let count = "return document.querySelectorAll('#files li[data-file]').length";
    wait_js(s, count, n.into(), Duration::from_secs(60), "files listed").await;
}

/// A peer that shares hundreds of files announces each to the pages in its room: a page
/// lists them all, rebuilding its list at most every 100 ms rather than once per file (which
/// froze the page for seconds at a few hundred files). Once listed, the list is not touched
/// while nothing changes, and a file withdrawn takes only its own row with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_files_announced_one_by_one_are_listed_in_few_rebuilds() {
    const FILES: usize = 400;
    let server = Server::start(&[]);
    let (chromium, firefox) = connected_pair(&server, "e2e-many-files").await;
    let before = js(&firefox, "return window.swarmdropRenders").await;
    // Chromium drops them all on its drop zone at once; it shares them one after another.
    js(
        &chromium,
        &format!(
            "const dt = new DataTransfer();
             for (let i = 0; i < {FILES}; i++) dt.items.add(new File([`file number ${{i}}`], `f${{i}}.txt`));
             document.getElementById('drop').dispatchEvent(
               new DragEvent('drop', {{ dataTransfer: dt, bubbles: true, cancelable: true }}));
             return null"
        ),
    )
    .await;
    let start = Instant::now();
    listed(&firefox, FILES).await;
    let secs = start.elapsed().as_secs_f64();
    let after = js(&firefox, "return window.swarmdropRenders").await;
    let renders = after.as_u64().unwrap_or(u64::MAX) - before.as_u64().unwrap_or(0);
    eprintln!(
        "Firefox rebuilt its file list {renders} times for {FILES} announcements in {secs:.1} s"
    );
    // (At most ten a second for the events, and the page's own once a second.)
    assert!(
        renders < FILES as u64 / 4,
        "{renders} rebuilds of the file list for {FILES} announcements in {secs:.1} s"
    );
    listed(&chromium, FILES).await;
    // Once listed, the page's own rebuild each second changes nothing in the list, and a file
    // withdrawn takes its row alone with it: rows are built again only when what they show
    // changes (the list was made anew each second, every row of it).
    let watch = "window.watching?.disconnect();
         window.mutations = [];
         window.watching = new MutationObserver((m) => window.mutations.push(...m.map((r) =>
           [r.type, r.target.className, r.addedNodes.length, r.removedNodes.length])));
         window.watching.observe(document.getElementById('files'),
           { childList: true, subtree: true, attributes: true, characterData: true });
         window.renders = window.swarmdropRenders;
         return null";
    let seen = "return [window.mutations.length, window.swarmdropRenders - window.renders, window.mutations]";
    js(&firefox, watch).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let quiet = js(&firefox, seen).await;
    assert!(
        quiet[1].as_u64() >= Some(2),
        "{quiet}: the page rebuilt nothing"
    );
    assert_eq!(
        quiet[0], 0,
        "{quiet}: mutations of an unchanged list, rebuilds"
    );
    let ms = js(
        &firefox,
        "const t0 = performance.now();
         for (let i = 0; i < 10; i++) dispatchEvent(new HashChangeEvent('hashchange'));
         return (performance.now() - t0) / 10",
    )
    .await;
    eprintln!("Firefox: {ms} ms a rebuild of the unchanged list of {FILES} files");
    js(&firefox, watch).await;
    let gone = js(
        &chromium,
        "const f = window.swarmdrop.files()[7]; window.swarmdrop.unshare(f.id); return f.id",
    )
    .await;
    let gone = gone.as_str().unwrap();
    listed(&firefox, FILES - 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let changed = js(&firefox, seen).await;
    assert_eq!(
        changed[0], 1,
        "{changed}: one row removed, nothing else ({gone})"
    );
    let left = js(
        &firefox,
        &format!("return !!document.querySelector('#files li[data-file=\"{gone}\"]')"),
    )
    .await;
    assert_eq!(left, Value::Bool(false));
    chromium.close().await;
    firefox.close().await;
}

/// The names listed on the page, sorted, once there are `n`.
async fn names_listed(s: &Session, n: usize) -> Vec<String> {
    listed(s, n).await;
    let names = js(
        s,
        "return [...document.querySelectorAll('#files li[data-file] .name')].map(e => e.textContent)",
    )
    .await;
    let mut names: Vec<String> = serde_json::from_value(names).expect("names");
    names.sort_unstable();
    names
}

/// Folders: one picked through the page's folder input and one dropped (read through the
/// entries API) share every file in them and their subfolders, each named by its path from the
/// folder, which is what the other page lists, downloads all at once and saves as one zip
/// holding the folder; an empty folder dropped is
/// reported. A large file is shown while it is prepared (hashed), and Cancel stops it and
/// drops the files queued after it. (Chromium picks and drops: chromedriver picks a folder
/// given its path, geckodriver takes only files; a folder is dropped by handing the page's
/// drop handler entries of a real folder of the browser's own file system, since a synthetic
/// drop cannot carry one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_picked_or_dropped_are_shared_whole_and_a_file_being_prepared_can_be_cancelled() {
    let dir = TempDir::new("folder");
    let album = dir.path().join("album");
    std::fs::create_dir_all(album.join("2024/summer")).unwrap();
    std::fs::create_dir_all(album.join("nothing here")).unwrap();
    let files = [
        ("a.txt", 3000),
        ("2024/b.bin", 70_000),
        ("2024/summer/c.bin", 1_500_000),
    ];
    let mut sums = std::collections::HashMap::new();
    for (i, (path, len)) in files.iter().enumerate() {
        let bytes: Vec<u8> = (0..*len).map(|k| (k * 13 + i * 5) as u8).collect();
        std::fs::write(album.join(path), &bytes).unwrap();
        sums.insert(format!("album/{path}"), hex(&Sha256::digest(&bytes)));
    }
    let server = Server::start(&[]);
    let (chromium, firefox) = tokio::join!(
        Session::start(Browser::Chromium),
        Session::start(Browser::Firefox)
    );
    let room = "e2e-folders";
    for s in [&chromium, &firefox] {
        open(s, &format!("{}/#room={room}", server.url)).await;
    }

    // Picked: the three files, by their paths.
    pick_with(&chromium, "folder-input", album.to_str().unwrap()).await;
    let mut want: Vec<String> = sums.keys().cloned().collect();
    want.sort_unstable();
    assert_eq!(
        names_listed(&firefox, 3).await,
        want,
        "Firefox lists the folder's files"
    );
    // Firefox downloads them all at once and saves them as one zip, which holds the folder.
    js(
        &firefox,
        "document.getElementById('download-all').click(); return null",
    )
    .await;
    wait_js(
        &firefox,
        "return window.swarmdrop.files().filter(f => f.complete).length",
        3.into(),
        Duration::from_secs(60),
        "all three downloaded",
    )
    .await;
    // From the keyboard: Enter on the focused button; the focus then follows to Save.
    // (Shown once the list is drawn again after the downloads: until then it takes no focus.)
    wait_js(
        &firefox,
        "const b = document.getElementById('zip-all'); b.focus(); return document.activeElement === b",
        Value::Bool(true),
        Duration::from_secs(10),
        "Save all as one zip, focused",
    )
    .await;
    // (The zip's Save link, hidden until there is a zip, showed as an empty button beside it;
    // the preparing box stayed with its last file.)
    nothing_hidden_shows(&firefox).await;
    press_enter(&firefox).await;
    firefox
        .wait_text_containing("#zip-save", "Save album.zip", Duration::from_secs(30))
        .await;
    assert_eq!(
        js(&firefox, "return document.activeElement.id").await,
        "zip-save",
        "the focus after the zip is made"
    );
    announced(&firefox, &["The zip is ready to save: album.zip"]).await;
    let zipped = call(
        &firefox,
        "window.swarmdropZip.file.arrayBuffer()
           .then(b => Array.from(new Uint8Array(b), x => x.toString(16).padStart(2, '0')).join(''))"
            .to_string(),
    )
    .await;
    let zipped = zipped.as_str().expect("hex");
    let bytes: Vec<u8> = (0..zipped.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&zipped[i..i + 2], 16).unwrap())
        .collect();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut got = std::collections::HashMap::new();
    for i in 0..archive.len() {
        let mut e = archive.by_index(i).unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).expect("its bytes, CRC checked");
        got.insert(e.name().to_string(), hex(&Sha256::digest(&data)));
    }
    assert_eq!(got, sums, "the zip holds the folder, byte for byte");

    // Delete pressed from the keyboard in the stored list: the row goes, and the focus to the
    // next file's Delete (not to the page).
    wait_js(
        &firefox,
        "document.getElementById('stored-box').open = true;
         return document.querySelectorAll('#stored li[data-stored] button.delete').length",
        3.into(),
        Duration::from_secs(10),
        "three stored files listed",
    )
    .await;
    let second = js(
        &firefox,
        "const rows = document.querySelectorAll('#stored li[data-stored]');
         rows[0].querySelector('button.delete').focus();
         return rows[1].dataset.stored",
    )
    .await;
    press_enter(&firefox).await;
    wait_js(
        &firefox,
        "const a = document.activeElement;
         return [document.querySelectorAll('#stored li[data-stored]').length,
                 a.closest('#stored li')?.dataset.stored ?? a.tagName, a.className]",
        serde_json::json!([2, second, "secondary delete"]),
        Duration::from_secs(10),
        "the focus on the next file's Delete",
    )
    .await;

    // Dropped: a folder of the browser's own file system (with a subfolder, a file beside it
    // and an empty folder), a plain file, and an empty folder on its own.
    call(
        &chromium,
        r#"new Promise((ok, fail) => webkitRequestFileSystem(TEMPORARY, 1 << 20, async (fs) => {
          const cb = (f, ...a) => new Promise((res, rej) => f(...a, res, rej));
          try {
            const top = await cb(fs.root.getDirectory.bind(fs.root), 'dropped', { create: true });
            const sub = await cb(top.getDirectory.bind(top), 'inner', { create: true });
            await cb(top.getDirectory.bind(top), 'void', { create: true });
            const empty = await cb(fs.root.getDirectory.bind(fs.root), 'empty', { create: true });
            for (const [d, name, len] of [[top, 'x.bin', 5000], [sub, 'y.bin', 6000]]) {
              const f = await cb(d.getFile.bind(d), name, { create: true });
              const w = await cb(f.createWriter.bind(f));
              await new Promise((res, rej) => { w.onwriteend = res; w.onerror = rej; w.write(new Blob([new Uint8Array(len).fill(len % 251)])); });
            }
            const plain = new File([new Uint8Array(4000).fill(4)], 'plain.bin');
            const entries = [top, null, empty];
            const dropped = [new File([], 'dropped'), plain, new File([], 'empty')];
            const ev = new DragEvent('drop', { bubbles: true, cancelable: true });
            Object.defineProperty(ev, 'dataTransfer', { value: {
              types: ['Files'],
              files: dropped,
              items: dropped.map((_, i) => ({ kind: 'file', webkitGetAsEntry: () => entries[i] })),
            } });
            document.getElementById('drop').dispatchEvent(ev);
            ok(null);
          } catch (e) { fail(e); }
        }, fail))"#
            .to_string(),
    )
    .await;
    let mut want_all = want.clone();
    want_all.extend(["dropped/inner/y.bin", "dropped/x.bin", "plain.bin"].map(String::from));
    want_all.sort_unstable();
    assert_eq!(
        names_listed(&firefox, 6).await,
        want_all,
        "Firefox lists the dropped files"
    );
    chromium
        .wait_text_containing(
            "#share-failed",
            "empty: a folder with no files in it",
            Duration::from_secs(20),
        )
        .await;
    js(
        &chromium,
        "document.getElementById('share-failed-dismiss').click(); return null",
    )
    .await;
    assert_eq!(
        js(
            &chromium,
            "return document.getElementById('sharing').hidden"
        )
        .await,
        Value::Bool(true),
        "dismissed"
    );

    // Prepared: a 2 GiB file (sparse on disk) and a small one after it; Cancel drops both.
    let big = dir.path().join("big.iso");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let small = dir.path().join("after.txt");
    std::fs::write(&small, b"queued behind the big one").unwrap();
    pick(&chromium, &[big.to_str().unwrap(), small.to_str().unwrap()]).await;
    chromium
        .wait_text_containing("#preparing", "Preparing big.iso", Duration::from_secs(20))
        .await;
    chromium
        .wait_text_containing("#preparing-meta", "file 1 of 2", Duration::from_secs(20))
        .await;
    let shown = js(
        &chromium,
        "return [document.getElementById('preparing-bar').value, document.getElementById('preparing-bar').max]",
    )
    .await;
    assert_eq!(shown[1].as_f64(), Some(2.0 * 1024.0 * MIB), "{shown}");
    js(
        &chromium,
        "document.getElementById('preparing-cancel').click(); return null",
    )
    .await;
    wait_js(
        &chromium,
        "return document.getElementById('sharing').hidden",
        Value::Bool(true),
        Duration::from_secs(20),
        "preparing stops after Cancel",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        names_listed(&chromium, 6).await,
        want_all,
        "nothing more shared"
    );
}

/// `len` pseudo-random bytes (xorshift from `seed`), the same for the same seed.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x = seed;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// During a download its row is drawn anew as it progresses (and the list of stored files as it
/// stores pieces), which drops the keyboard's focus unless the page gives it back: focused,
/// Stop (and the stored file's Delete) keeps the focus while the row is drawn again, and Enter
/// stops the download (the focus then on the row's Resume). The
/// source is a script's swarm in another browser, sending at 2 MB/s so that the download
/// lasts.
async fn the_keyboard_keeps_its_place_in_a_row_drawn_anew(downloader: Browser) {
    let server = Server::start(&[]);
    let (source, page) = tokio::join!(
        harness::bench_page(&server, Browser::Chromium),
        Session::start(downloader)
    );
    open(&page, &format!("{}/#room=e2e-focus", server.url)).await;
    let id = call(
        &source,
        "bench.swarmShare('e2e-focus', 32 * 1048576, 2000000)".into(),
    )
    .await;
    let id = id.as_str().expect("file id").to_string();
    let stop = format!("li[data-file='{id}'] button.cancel");
    click(
        &page,
        &format!("li[data-file='{id}'] button.download"),
        "Download",
    )
    .await;
    // While the row is drawn again and again (its progress line changes), the focus stays on
    // its Stop; the same for the list of stored files, drawn again as pieces are stored, and
    // its Delete.
    keeps_focus(
        &page,
        "",
        &stop,
        "Stop: bench.bin",
        &format!("li[data-file='{id}'] > .meta"),
    )
    .await;
    keeps_focus(
        &page,
        "document.getElementById('stored-box').open = true;",
        &format!("#stored li[data-stored='{id}'] button.delete"),
        "Delete: bench.bin",
        &format!("#stored li[data-stored='{id}'] .meta"),
    )
    .await;
    // Enter on the focused Stop stops the download; the focus goes to the row's Resume.
    js(
        &page,
        &format!("document.querySelector(\"{stop}\").focus(); return null"),
    )
    .await;
    press_enter(&page).await;
    wait_js(
        &page,
        &format!(
            "const f = window.swarmdrop.files().find(f => f.id === '{id}');
             const a = document.activeElement;
             return [f.downloading, a.matches(\"li[data-file='{id}'] button.download\") ? a.textContent : a.tagName]"
        ),
        serde_json::json!([false, "Resume"]),
        Duration::from_secs(10),
        "the download stopped, the focus on Resume",
    )
    .await;
    source.close().await;
    page.close().await;
}

/// Focuses `control` once the page shows it (after running `prelude`), then watches what is
/// drawn again with it (the text of `shown`) change three times, the focus on `control` (named
/// `label` to a screen reader) all the while.
async fn keeps_focus(page: &Session, prelude: &str, control: &str, label: &str, shown: &str) {
    wait_js(
        page,
        &format!("{prelude} const b = document.querySelector(\"{control}\"); if (!b) return false; b.focus(); return document.activeElement === b"),
        Value::Bool(true),
        Duration::from_secs(20),
        &format!("{control}, focused"),
    )
    .await;
    let state = format!(
        "return [document.querySelector(\"{shown}\")?.textContent ?? null,
                 document.activeElement.matches(\"{control}\"), document.activeElement.getAttribute('aria-label')]"
    );
    let mut seen = vec![js(page, &state).await[0].clone()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 4 {
        let now = js(page, &state).await;
        let browser = page.browser;
        assert_eq!(
            now[1],
            Value::Bool(true),
            "{browser:?}: the focus left {control}: {now}"
        );
        assert_eq!(now[2], label, "{browser:?}");
        if Some(&now[0]) != seen.last() {
            seen.push(now[0].clone());
        }
        assert!(
            Instant::now() < deadline,
            "{browser:?}: {shown} was not drawn again: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_keeps_its_place_in_a_row_drawn_anew_in_chromium() {
    the_keyboard_keeps_its_place_in_a_row_drawn_anew(Browser::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_keeps_its_place_in_a_row_drawn_anew_in_firefox() {
    the_keyboard_keeps_its_place_in_a_row_drawn_anew(Browser::Firefox).await;
}

/// The sharer's page says who fetches its file and how fast, its upload limit (picked on the
/// page) holds, can be lifted during the download and is kept for the next visit; while a peer
/// fetches from it the page asks before it is closed or leaves for another room; the
/// downloader's tab title shows the download's progress; each page's peer row says what went
/// between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharer_sees_its_uploads_and_sets_their_limit_on_the_page() {
    let dir = TempDir::new("uploads");
    let path = dir.path().join("eight.bin");
    let size = 8 * 1024 * 1024;
    std::fs::write(
        &path,
        (0..size).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>(),
    )
    .unwrap();
    let server = Server::start(&[]);
    let (chromium, firefox) = connected_pair(&server, "e2e-uploads").await;
    // The limit picked in the page is the swarm's.
    let limit = |value: &str| {
        format!(
            "const s = document.getElementById('upload-limit');
             s.value = '{value}';
             s.dispatchEvent(new Event('change'));
             return [s.value, window.swarmdrop.uploadLimit ?? null]"
        )
    };
    let set = js(&chromium, &limit("1000000")).await;
    assert_eq!(set, serde_json::json!(["1000000", 1000000]));
    // Named and described to a screen reader.
    let named = js(
        &chromium,
        "const s = document.getElementById('upload-limit');
         return [s.labels[0].textContent, document.getElementById(s.getAttribute('aria-describedby'))?.textContent ?? null]",
    )
    .await;
    assert_eq!(
        named,
        serde_json::json!(["Upload", "at most, to all peers together"])
    );
    pick(&chromium, &[path.to_str().unwrap()]).await;
    let id = wait_file_id(&chromium, &[&firefox]).await;
    click(
        &firefox,
        &format!("li[data-file='{id}'] button.download"),
        "Download",
    )
    .await;
    // The sharer's row: one peer fetching, at the limit's rate (the page's rate is over the
    // last three seconds; a tenth of a second of budget may be saved up on top).
    let upload = format!("li[data-file='{id}'] .upload");
    let deadline = Instant::now() + Duration::from_secs(20);
    let rate = loop {
        let text = js(
            &chromium,
            &format!("return document.querySelector(\"{upload}\")?.textContent ?? ''"),
        )
        .await;
        let text = text.as_str().unwrap_or_default().to_string();
        // "Sending to 1 peer · 1.0 MB/s · 3.1 MB sent" (or "998.0 KB/s"): MB/s.
        let rate = text
            .strip_prefix("Sending to 1 peer · ")
            .filter(|_| text.ends_with(" sent"))
            .and_then(|r| r.split(" · ").next())
            .and_then(|r| match r.split_once(' ')? {
                (n, "MB/s") => n.parse::<f64>().ok(),
                (n, "KB/s") => n.parse::<f64>().ok().map(|k| k / 1e3),
                _ => None,
            });
        let sent = file_info(&chromium, &id).await["sent"]
            .as_f64()
            .unwrap_or(0.0);
        // (Once three seconds were seen.)
        if let Some(r) = rate.filter(|_| sent >= 3e6) {
            break r;
        }
        assert!(Instant::now() < deadline, "the sharer's row: {text:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!((0.5..=1.2).contains(&rate), "{rate} MB/s at a 1 MB/s limit");
    // Leaving now would cut the peer off: the page asks first.
    let leave = "const e = new Event('beforeunload', { cancelable: true });
                 dispatchEvent(e);
                 return e.defaultPrevented";
    assert_eq!(
        js(&chromium, leave).await,
        Value::Bool(true),
        "asked before leaving"
    );
    // A link to another room pasted into the tab: the page asks; answered "stay", it stays in
    // this room with this room's link.
    js(&chromium, "location.hash = '#room=elsewhere'; return null").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let question = loop {
        match chromium.client.get_alert_text().await {
            Ok(text) => break text,
            Err(e) => assert!(Instant::now() < deadline, "no question: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        question.starts_with("Peers are downloading files from this page"),
        "{question}"
    );
    chromium.client.dismiss_alert().await.expect("stay");
    wait_js(
        &chromium,
        "return [location.hash, document.getElementById('room').textContent, !!window.swarmdrop]",
        serde_json::json!(["#room=e2e-uploads", "e2e-uploads", true]),
        Duration::from_secs(5),
        "still in the room, with its link",
    )
    .await;
    // The downloader's tab says how far it is.
    let title = js(&firefox, "return document.title").await;
    let title = title.as_str().unwrap();
    assert!(
        title.ends_with("% · swarmdrop")
            && title
                .split('%')
                .next()
                .unwrap()
                .parse::<u8>()
                .is_ok_and(|p| p < 100),
        "{title}"
    );
    // Lifted: the download finishes at once.
    assert_eq!(
        js(&chromium, &limit("")).await,
        serde_json::json!(["", null])
    );
    wait_js(
        &firefox,
        &format!("return window.swarmdrop.files().find(f => f.id === '{id}')?.complete ?? false"),
        Value::Bool(true),
        Duration::from_secs(15),
        "the download, with the limit lifted",
    )
    .await;
    wait_js(
        &chromium,
        &format!(
            "return [document.querySelector(\"{upload}\")?.textContent ?? null, (() => {{ {leave} }})()]"
        ),
        serde_json::json!(["Sent 8.4 MB to peers", false]),
        Duration::from_secs(10),
        "the sharer's row once the peer has it all, and no question on leaving",
    )
    .await;
    wait_js(
        &firefox,
        "return document.title",
        "swarmdrop".into(),
        Duration::from_secs(5),
        "the title once nothing downloads",
    )
    .await;
    nothing_hidden_shows(&chromium).await;
    // Each page's peer says what went between them (the file, and nothing back).
    let traffic = "const t = document.querySelector('#peers li .traffic')?.textContent ?? '';
                   return t.replace(/ \\(.*?\\)/g, '')";
    for (s, want) in [(&chromium, "sent 8.4 MB"), (&firefox, "received 8.4 MB")] {
        wait_js(
            s,
            traffic,
            want.into(),
            Duration::from_secs(10),
            "the peer's traffic",
        )
        .await;
    }
    // The limit picked is kept for the next visit.
    js(&chromium, &limit("2000000")).await;
    chromium.client.refresh().await.expect("reload");
    chromium
        .wait_state("#signal-state", "open", Duration::from_secs(20))
        .await;
    wait_js(
        &chromium,
        "const s = document.getElementById('upload-limit'); return [s.value, s.disabled, window.swarmdrop.uploadLimit ?? null]",
        serde_json::json!(["2000000", false, 2000000]),
        Duration::from_secs(5),
        "the limit after a reload",
    )
    .await;
    chromium.close().await;
    firefox.close().await;
}

/// What the page hides takes no room: a class's `display` must not beat `hidden`.
async fn nothing_hidden_shows(s: &Session) {
    let shown = js(
        s,
        "return [...document.querySelectorAll('[hidden]')]
           .filter(e => e.getClientRects().length > 0).map(e => e.id || e.className)",
    )
    .await;
    assert_eq!(
        shown,
        serde_json::json!([]),
        "{:?}: hidden, yet shown",
        s.browser
    );
}

/// The id of the first file listed in page `s`, once one is; if none is within 40 s, fails
/// with the swarm's files and peers as `s` and `others` see them.
async fn wait_file_id(s: &Session, others: &[&Session]) -> String {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let id = js(
            s,
            "return document.querySelector('#files li[data-file]')?.dataset.file ?? null",
        )
        .await;
        if let Some(id) = id.as_str() {
            return id.to_string();
        }
        if Instant::now() > deadline {
            let probe = "return window.swarmdrop ? JSON.stringify([window.swarmdrop.files(), window.swarmdrop.peers()]) : 'no swarm'";
            let mut seen = String::new();
            for p in std::iter::once(s).chain(others.iter().copied()) {
                seen += &format!("\n{:?}: {}", p.browser, js(p, probe).await);
            }
            panic!("{:?}: no file listed{seen}", s.browser);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
