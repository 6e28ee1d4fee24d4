//! `cargo xtask bench memory`: a large file shared from disk by one Chromium and downloaded by
//! another into OPFS, while the receiving tab's memory is sampled: the RSS of its renderer
//! processes (from /proc), and the page's wasm memory and JS heap; and the sharing tab's
//! renderer RSS. The baseline, first, in two fresh browsers: the same bytes over a raw data
//! channel to a receiver that writes each message to OPFS. Prints figures; asserts only that
//! the transfers complete with the right size.
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use harness::{bench_page, call, raw_round, raw_transfer, Browser, Server, TempDir};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// `size` pseudo-random bytes (xorshift; incompressible enough) in a file.
fn make_file(path: &Path, size: u64) {
    let mut f = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 4 << 20];
    let mut left = size;
    while left > 0 {
        for w in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// The resident memory of a process, in bytes: in all, and its anonymous, file-backed and
/// shared-memory parts (`/proc/PID/status`).
#[derive(Clone, Copy, Default)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
    shmem: u64,
}

/// RSS of the renderer process hosting the page in the browser using `profile`: of its
/// renderers (others are spare or blank), the one that used the most CPU.
fn renderer_rss(profile: &Path) -> Rss {
    let needle = format!("--user-data-dir={}", profile.display());
    let mut busiest = (0u64, Rss::default()); // (cpu ticks, rss)
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(cmd) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.contains("--type=renderer") || !cmd.contains(&needle) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
            .sum::<u64>();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let bytes = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        if ticks >= busiest.0 {
            let rss = Rss {
                total: bytes("VmRSS:"),
                anon: bytes("RssAnon:"),
                file: bytes("RssFile:"),
                shmem: bytes("RssShmem:"),
            };
            busiest = (ticks, rss);
        }
    }
    busiest.1
}

/// The baseline: `size` bytes over a raw `RTCDataChannel` between two fresh Chromiums, the
/// receiver writing each message to OPFS as it arrives (the bench page's raw, stored receiver:
/// a worker, a sync access handle). Its renderer's RSS before and at the peak, and the seconds.
async fn raw_stored_peak(server: &Server, size: u64) -> (Rss, Rss, f64) {
    let (a, b) = tokio::join!(
        bench_page(server, Browser::Chromium),
        bench_page(server, Browser::Chromium)
    );
    let base = renderer_rss(b.profile());
    let done = std::sync::atomic::AtomicBool::new(false);
    let sample = async {
        let mut peak = base;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let rss = renderer_rss(b.profile());
            if rss.total > peak.total {
                peak = rss;
            }
        }
        peak
    };
    let transfer = async {
        let (a, b) = (&a, &b);
        let ((), got) = raw_round("memory-raw", |room| async move {
            let (sent, got) = raw_transfer(a, b, &room, size, true).await;
            ((), sent, got)
        })
        .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        got
    };
    let (peak, got) = tokio::join!(sample, transfer);
    assert!(got["bytes"].as_u64() >= Some(size), "raw: {got}");
    a.close().await;
    b.close().await;
    (base, peak, got["ms"].as_f64().unwrap_or(f64::NAN) / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_of_a_large_download() {
    let mib: u64 = std::env::var("SWARMDROP_BENCH_MEMORY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let size = mib * MIB;
    let dir = TempDir::new("memory");
    let path = dir.path().join("large.bin");
    make_file(&path, size);
    let server = Server::start(&[]);
    let (raw_base, raw_peak, raw_secs) = raw_stored_peak(&server, size).await;
    eprintln!(
        "raw, stored: {mib} MiB in {raw_secs:.1} s: renderer RSS peak {:.0} MiB (before {:.0}; \
         anonymous at the peak {:.0}, file-backed {:.0})",
        raw_peak.total as f64 / MIB as f64,
        raw_base.total as f64 / MIB as f64,
        raw_peak.anon as f64 / MIB as f64,
        raw_peak.file as f64 / MIB as f64,
    );
    let (a, b) = tokio::join!(
        bench_page(&server, Browser::Chromium),
        bench_page(&server, Browser::Chromium)
    );
    let room = "memory";
    for s in [&a, &b] {
        call(s, format!("bench.swarmJoin('{room}')")).await;
    }
    a.client
        .find(fantoccini::Locator::Css("#pick"))
        .await
        .expect("file input")
        .send_keys(path.to_str().unwrap())
        .await
        .expect("pick the file");
    let started = Instant::now();
    let id = call(&a, "bench.sharePicked()".into()).await;
    eprintln!(
        "shared {mib} MiB in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let base_rss = renderer_rss(b.profile());
    let sender_base = renderer_rss(a.profile());
    let mut sender_peak = sender_base;
    call(&b, format!("bench.startDownload({id}, 1)")).await;
    let (mut peak_rss, mut peak_wasm, mut peak_js) = (base_rss, 0.0f64, 0.0f64);
    let deadline = Instant::now() + Duration::from_secs(3600);
    let state = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let rss = renderer_rss(b.profile());
        if rss.total > peak_rss.total {
            peak_rss = rss;
        }
        let rss = renderer_rss(a.profile());
        if rss.total > sender_peak.total {
            sender_peak = rss;
        }
        let m = call(&b, "bench.memory()".into()).await;
        peak_wasm = peak_wasm.max(m["wasm"].as_f64().unwrap_or(0.0));
        peak_js = peak_js.max(m["jsHeap"].as_f64().unwrap_or(0.0));
        assert!(m["failed"].is_null(), "download failed: {m}");
        if !m["ms"].is_null() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "download not done within an hour: {m}"
        );
    };
    assert_eq!(state["bytes"].as_u64(), Some(size), "{state}");
    let secs = state["ms"].as_f64().unwrap() / 1000.0;
    let mb = |v: f64| v / MIB as f64;
    eprintln!(
        "{mib} MiB in {secs:.1} s: renderer RSS peak {:.0} MiB (before {:.0}; at the peak: \
         anonymous {:.0}, file-backed {:.0}, shared memory {:.0}; before: {:.0}, {:.0}, {:.0}), \
         wasm {:.0} MiB, JS heap {:.0} MiB; the sharing tab's renderer RSS peak {:.0} MiB \
         (before {:.0}; anonymous at the peak {:.0})",
        mb(peak_rss.total as f64),
        mb(base_rss.total as f64),
        mb(peak_rss.anon as f64),
        mb(peak_rss.file as f64),
        mb(peak_rss.shmem as f64),
        mb(base_rss.anon as f64),
        mb(base_rss.file as f64),
        mb(base_rss.shmem as f64),
        mb(peak_wasm),
        mb(peak_js),
        mb(sender_peak.total as f64),
        mb(sender_base.total as f64),
        mb(sender_peak.anon as f64),
    );
    println!(
        "BENCH-JSON {}",
        json!({
            "mib": mib,
            "seconds": secs,
            "peak_rss_mib": mb(peak_rss.total as f64),
            "base_rss_mib": mb(base_rss.total as f64),
            "peak_rss_anon_mib": mb(peak_rss.anon as f64),
            "peak_rss_shmem_mib": mb(peak_rss.shmem as f64),
            "peak_wasm_mib": mb(peak_wasm),
            "peak_js_mib": mb(peak_js),
            "sender_peak_rss_mib": mb(sender_peak.total as f64),
            "sender_base_rss_mib": mb(sender_base.total as f64),
            "raw_peak_rss_mib": mb(raw_peak.total as f64),
            "raw_base_rss_mib": mb(raw_base.total as f64),
            "raw_seconds": raw_secs,
        })
    );
    a.close().await;
    b.close().await;
}
