//! `cargo xtask bench transfer` and `webtorrent`: 1→1 throughput of swarmdrop (stored to OPFS)
//! against a raw JavaScript RTCDataChannel (64 KiB messages, bufferedAmount flow control, nothing
//! stored) and, with `SWARMDROP_WT_TRACKER`, against WebTorrent 3 (stored to OPFS), same
//! browsers, same run, fresh browser processes per pair. Prints figures; asserts only that every
//! transfer completes with the right size.
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use harness::{bench_page, call, Browser, Server, Session};
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;

fn sizes() -> Vec<u64> {
    std::env::var("SWARMDROP_BENCH_SIZES_MIB")
        .unwrap_or_else(|_| "64,256".into())
        .split(',')
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .map(|m| m * MIB)
        .collect()
}

fn pairs() -> Vec<(Browser, Browser)> {
    use Browser::*;
    match std::env::var("SWARMDROP_BENCH_PAIRS").as_deref() {
        Ok("quick") => vec![(Chromium, Chromium)],
        _ => vec![
            (Chromium, Chromium),
            (Chromium, Firefox),
            (Firefox, Chromium),
        ],
    }
}

fn mb_per_s(v: &Value, size: u64) -> f64 {
    let bytes = v["bytes"].as_f64().unwrap();
    assert!(bytes >= size as f64, "only {bytes} of {size} bytes arrived");
    bytes / 1e6 / (v["ms"].as_f64().unwrap() / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_throughput() {
    let server = Server::start(&[]);
    // With a loopback WebTorrent tracker (`cargo xtask bench webtorrent` starts one), the same
    // bytes also go through WebTorrent.
    let tracker = std::env::var("SWARMDROP_WT_TRACKER").ok();
    let mut results = Vec::new();
    for (from, to) in pairs() {
        let (a, b) = tokio::join!(bench_page(&server, from), bench_page(&server, to));
        for size in sizes() {
            let n = results.len();
            let raw_room = format!("raw-{n}");
            let (_, recv) = tokio::join!(
                call(&a, format!("bench.rawSend('{raw_room}', {size})")),
                call(&b, format!("bench.rawReceive('{raw_room}', {size})")),
            );
            let raw = mb_per_s(&recv, size);
            let room = format!("sd-{n}");
            let (id, _) = tokio::join!(
                call(&a, format!("bench.swarmShare('{room}', {size}, 0)")),
                call(&b, format!("bench.swarmJoin('{room}')")),
            );
            let id = id.as_str().expect("file id").to_string();
            let got = call(&b, format!("bench.swarmDownload('{id}', 1)")).await;
            let ours = mb_per_s(&got, size);
            eprintln!(
                "swarmdrop: first verified piece stored {} ms after download()",
                got["firstMs"]
            );
            // Leave the swarm before WebTorrent runs (the page keeps the raw connections).
            for s in [&a, &b] {
                let _ = s.client.execute("if (window.swarm) { window.swarm.leave(); window.swarm = null; } return null", vec![]).await;
            }
            let wt = match &tracker {
                Some(t) => Some(webtorrent(&a, &b, size, t).await),
                None => None,
            };
            eprintln!(
                "{from:?}→{to:?} {} MiB: raw {raw:.1} MB/s, swarmdrop {ours:.1} MB/s{}",
                size / MIB,
                wt.map(|w| format!(", webtorrent {w:.1} MB/s"))
                    .unwrap_or_default()
            );
            results.push(json!({
                "from": format!("{from:?}"), "to": format!("{to:?}"),
                "mib": size / MIB, "raw_mbps": raw, "swarmdrop_mbps": ours,
                "webtorrent_mbps": wt,
            }));
        }
        a.close().await;
        b.close().await;
    }
    if std::env::var("SWARMDROP_BENCH_MULTI").as_deref() == Ok("1") {
        results.push(multi_source(&server, &results).await);
        results.push(one_to_three(&server, &results).await);
    }
    println!("BENCH-JSON {}", Value::Array(results));
}

/// `size` bytes seeded by WebTorrent in `a` and downloaded by WebTorrent in `b`: MB/s.
async fn webtorrent(a: &Session, b: &Session, size: u64, tracker: &str) -> f64 {
    let tracker = json!(tracker);
    let magnet = call(a, format!("bench.wtSeed({size}, {tracker})")).await;
    let got = call(b, format!("bench.wtDownload({magnet}, {tracker})")).await;
    for s in [a, b] {
        call(s, "bench.wtStop()".into()).await;
    }
    mb_per_s(&got, size)
}

/// Three Chromium seeders, each capped by `uploadLimit` at a quarter of the raw Chromium rate
/// measured above, and one Chromium downloader: how much of the caps' sum it gets.
async fn multi_source(server: &Server, one_to_one: &[Value]) -> Value {
    let raw = one_to_one
        .iter()
        .filter(|r| r["from"] == "Chromium" && r["to"] == "Chromium")
        .map(|r| r["raw_mbps"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let cap = (raw * 1e6 / 4.0) as u64;
    let size = 64 * MIB;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(bench_page(server, Browser::Chromium).await);
    }
    let room = "multi";
    let mut id = String::new();
    for s in &sessions[..3] {
        let v = call(
            s,
            format!("bench.swarmShare('{room}', {size}, {cap}, 12345)"),
        )
        .await;
        id = v.as_str().expect("file id").to_string();
    }
    let d = &sessions[3];
    call(d, format!("bench.swarmJoin('{room}')")).await;
    let got = call(d, format!("bench.swarmDownload('{id}', 3)")).await;
    let ours = mb_per_s(&got, size);
    let sum = 3.0 * cap as f64 / 1e6;
    eprintln!(
        "multi-source: 3 seeders capped at {:.1} MB/s each: {ours:.1} MB/s",
        cap as f64 / 1e6
    );
    for s in sessions {
        s.close().await;
    }
    json!({ "multi": true, "cap_mbps": cap as f64 / 1e6, "sum_mbps": sum, "swarmdrop_mbps": ours, "mib": size / MIB })
}

/// One uncapped Chromium seeder and three Chromium downloaders at once (they also trade pieces
/// among themselves): the aggregate rate, against the raw Chromium 1→1 rate measured above.
async fn one_to_three(server: &Server, one_to_one: &[Value]) -> Value {
    let raw = one_to_one
        .iter()
        .filter(|r| r["from"] == "Chromium" && r["to"] == "Chromium")
        .map(|r| r["raw_mbps"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let size = 64 * MIB;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(bench_page(server, Browser::Chromium).await);
    }
    let room = "one-to-three";
    let id = call(
        &sessions[0],
        format!("bench.swarmShare('{room}', {size}, 0)"),
    )
    .await;
    for s in &sessions[1..] {
        call(s, format!("bench.swarmJoin('{room}')")).await;
    }
    let started = std::time::Instant::now();
    let got = tokio::join!(
        call(&sessions[1], format!("bench.swarmDownload({id}, 1)")),
        call(&sessions[2], format!("bench.swarmDownload({id}, 1)")),
        call(&sessions[3], format!("bench.swarmDownload({id}, 1)")),
    );
    let secs = started.elapsed().as_secs_f64();
    for g in [got.0, got.1, got.2] {
        assert!(g["bytes"].as_u64() >= Some(size), "{g}");
    }
    let aggregate = 3.0 * size as f64 / 1e6 / secs;
    eprintln!("1→3: {aggregate:.1} MB/s in total (raw 1→1 {raw:.1} MB/s)");
    for s in sessions {
        s.close().await;
    }
    json!({ "one_to_three": true, "raw_mbps": raw, "swarmdrop_mbps": aggregate, "mib": size / MIB })
}
