//! `cargo xtask bench files`: a peer shares thousands of small files through the page (dropped
//! at once: the page's queue and progress, its list and the other page's list) against the same
//! files shared by a script on the same page through `swarm.share` alone (both pages still list
//! them), each round in fresh browsers; the other page downloading them all ("Download all"
//! against a script calling `swarm.download` for each); and how long each page takes to rebuild
//! its list of them when nothing changed. Prints figures; asserts only that every file is listed.
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use harness::{connected_pair, js, wait_js, Server, Session};
use std::time::{Duration, Instant};

fn files() -> usize {
    std::env::var("SWARMDROP_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

/// Files of the download rounds (each a download of its own in the browser's storage).
fn downloads() -> usize {
    std::env::var("SWARMDROP_BENCH_DOWNLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

fn rounds() -> usize {
    std::env::var("SWARMDROP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

const COUNT: &str = "return document.querySelectorAll('#files li[data-file]').length";

/// Waits until the page lists `n` files; panics after 10 minutes.
async fn listed(s: &Session, n: usize) {
    wait_js(s, COUNT, n.into(), Duration::from_secs(600), "files listed").await;
}

/// One round: Chromium shares `n` files, through its page's drop zone or a script, and (if
/// `download`) Firefox downloads them all, through its page's "Download all" or a script;
/// seconds until Firefox's page lists them all, seconds until it has them all (0 unless
/// `download`), and each page's rebuild of its unchanged list (ms).
async fn round(
    server: &Server,
    n: usize,
    page: bool,
    download: bool,
    tag: usize,
) -> (f64, f64, [f64; 2]) {
    let (chromium, firefox) = connected_pair(server, &format!("bench-files-{tag}")).await;
    let make = format!(
        "const files = [];
         for (let i = 0; i < {n}; i++) files.push(new File([`file number ${{i}}`], `f${{i}}.txt`));"
    );
    let start = Instant::now();
    if page {
        js(
            &chromium,
            &format!(
                "{make}
                 const dt = new DataTransfer();
                 for (const f of files) dt.items.add(f);
                 document.getElementById('drop').dispatchEvent(
                   new DragEvent('drop', {{ dataTransfer: dt, bubbles: true, cancelable: true }}));
                 return null"
            ),
        )
        .await;
    } else {
        js(
            &chromium,
            &format!(
                "{make}
                 (async () => {{ for (const f of files) await window.swarmdrop.share(f); }})();
                 return null"
            ),
        )
        .await;
    }
    listed(&firefox, n).await;
    let secs = start.elapsed().as_secs_f64();
    listed(&chromium, n).await;
    // Firefox downloads them all: its page's button, or a script.
    let fetched = if download {
        let start = Instant::now();
        let script = if page {
            "document.getElementById('download-all').click(); return null"
        } else {
            "for (const f of window.swarmdrop.files()) window.swarmdrop.download(f.id); return null"
        };
        js(&firefox, script).await;
        let complete = "return window.swarmdrop.files().filter((f) => f.complete).length";
        let within = Duration::from_secs(900);
        wait_js(&firefox, complete, n.into(), within, "files whole").await;
        start.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let mut rebuild = [0.0; 2];
    for (i, s) in [&chromium, &firefox].into_iter().enumerate() {
        let ms = js(
            s,
            "const t0 = performance.now();
             for (let i = 0; i < 10; i++) dispatchEvent(new HashChangeEvent('hashchange'));
             return (performance.now() - t0) / 10",
        )
        .await;
        rebuild[i] = ms.as_f64().unwrap_or(f64::NAN);
    }
    eprintln!(
        "bench files: {n} files through the {} listed in {secs:.2} s, downloaded in {fetched:.2} s; rebuild {:.1} / {:.1} ms",
        if page { "page" } else { "API" },
        rebuild[0],
        rebuild[1]
    );
    chromium.close().await;
    firefox.close().await;
    (secs, fetched, rebuild)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_files() {
    let n = files();
    let server = Server::start(&[]);
    let (mut api, mut page, mut chromium, mut firefox) = (vec![], vec![], vec![], vec![]);
    let (mut api_get, mut page_get) = (vec![], vec![]);
    // Alternating, so that both see the machine alike.
    let k = downloads();
    for r in 0..rounds() {
        api.push(round(&server, n, false, false, 4 * r).await.0);
        let (secs, _, rebuild) = round(&server, n, true, false, 4 * r + 1).await;
        page.push(secs);
        chromium.push(rebuild[0]);
        firefox.push(rebuild[1]);
        api_get.push(round(&server, k, false, true, 4 * r + 2).await.1);
        page_get.push(round(&server, k, true, true, 4 * r + 3).await.1);
    }
    println!(
        "BENCH-JSON {}",
        serde_json::json!({
            "files": n,
            "downloads": k,
            "rounds": api.len(),
            "api_s": median(api),
            "page_s": median(page),
            "api_download_s": median(api_get),
            "page_download_s": median(page_get),
            "rebuild_chromium_ms": median(chromium),
            "rebuild_firefox_ms": median(firefox),
        })
    );
}
