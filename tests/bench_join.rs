//! `cargo xtask bench join`: page open → first peer connected (data channel open), over many
//! joins, Chromium and Firefox joining a Chromium peer. Prints figures; asserts only that every
//! join connects (timings are judged by the benchmark report, never here).
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use harness::{Browser, Server, Session};
use std::time::{Duration, Instant};

fn joins() -> usize {
    std::env::var("SWARMDROP_BENCH_JOINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// The page's timings once a peer is connected: [script start, wasm ready, joined (welcome),
/// first peer connected], ms since the page opened.
async fn timings(s: &Session, host: &Session) -> [f64; 4] {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let mut reported = false;
    loop {
        let v = s
            .client
            .execute("return window.swarmdropTimings || null", vec![])
            .await
            .expect("script");
        let t = |k: &str| v.get(k).and_then(|x| x.as_f64());
        if let (Some(a), Some(b), Some(c), Some(d)) = (
            t("scriptMs"),
            t("wasmMs"),
            t("joinedMs"),
            t("firstConnectedMs"),
        ) {
            return [a, b, c, d];
        }
        // A join this slow is an outlier worth a look: what the page sees at that moment.
        if !reported && started.elapsed() > Duration::from_secs(3) {
            reported = true;
            let script = "return JSON.stringify(window.swarmdrop ? { id: window.swarmdrop.id, signal: window.swarmdrop.signalState, peers: window.swarmdrop.peers(), connections: window.swarmdrop.connections() } : null)";
            let mine = s.client.execute(script, vec![]).await.unwrap_or_default();
            let theirs = host
                .client
                .execute(script, vec![])
                .await
                .unwrap_or_default();
            eprintln!(
                "{:?}: not connected after 3 s (timings: {v}; swarm: {mine}; the host's: {theirs})",
                s.browser
            );
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: no peer connected within 30 s (timings: {v}; peers: {})",
            s.browser,
            s.client
                .execute(
                    "return JSON.stringify(window.swarmdrop ? window.swarmdrop.peers() : null)",
                    vec![]
                )
                .await
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_time() {
    let server = Server::start(&[]);
    let host = Session::start(Browser::Chromium).await;
    let link = format!("{}/#room=bench-join", server.url);
    host.client.goto(&link).await.expect("host page");
    host.wait_state("#signal-state", "open", Duration::from_secs(20))
        .await;
    let mut report = serde_json::Map::new();
    for browser in [Browser::Chromium, Browser::Firefox] {
        let joiner = Session::start(browser).await;
        let mut times = Vec::new();
        let mut steps: [Vec<f64>; 4] = Default::default();
        for _ in 0..joins() {
            joiner.client.goto(&link).await.expect("open the page");
            let t = timings(&joiner, &host).await;
            times.push(t[3]);
            // The steps: page → script, script → wasm ready, → joined, → connected.
            let mut prev = 0.0;
            for (i, at) in t.iter().enumerate() {
                steps[i].push(at - prev);
                prev = *at;
            }
            // Leave cleanly before the next join (the page leaves on pagehide).
            joiner.client.goto("about:blank").await.expect("leave");
        }
        times.sort_by(f64::total_cmp);
        for s in &mut steps {
            s.sort_by(f64::total_cmp);
        }
        let name = format!("{browser:?}").to_lowercase();
        report.insert(
            name,
            serde_json::json!({
                "joins": times.len(),
                "p50_ms": percentile(&times, 0.5),
                "p99_ms": percentile(&times, 0.99),
                "min_ms": times[0],
                "max_ms": times[times.len() - 1],
                "steps_p50_ms": {
                    "page_to_script": percentile(&steps[0], 0.5),
                    "wasm_load": percentile(&steps[1], 0.5),
                    "signaling_join": percentile(&steps[2], 0.5),
                    "to_connected": percentile(&steps[3], 0.5),
                },
            }),
        );
        joiner.close().await;
    }
    host.close().await;
    println!("BENCH-JSON {}", serde_json::Value::Object(report));
}
