//! `cargo xtask bench memory`: a large file shared from disk by one Chromium and downloaded into
//! OPFS by another Chromium, then by a Firefox, while the receiving tab's memory is sampled: the
//! RSS and CPU time of its renderer process (from /proc), and the page's wasm memory and JS
//! heap; and the sharing tab's renderer RSS. The baseline, first, in two fresh browsers: the
//! same bytes over a raw data channel to a receiver that writes each message to OPFS. Prints
//! figures; asserts only that the transfers complete with the right size.
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use harness::{bench_page, call, raw_round, raw_transfer, Browser, Server, Session, TempDir};
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
    /// CPU time the process has used so far (user and system), in clock ticks.
    ticks: u64,
}

/// RSS of the process rendering `s`'s page: of its browser's renderers (Chromium: processes
/// with `--type=renderer` and the session's profile; Firefox: the content processes of tabs
/// whose parent is the process started with the session's profile — others are spare or
/// blank), the one that used the most CPU.
fn renderer_rss(s: &Session) -> Rss {
    let procs: Vec<(String, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?.to_string();
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
        })
        .collect();
    let profile = s.profile().display().to_string();
    let parent = procs
        .iter()
        .find(|(_, cmd)| cmd.contains(&format!("-profile {profile}")))
        .map(|(pid, _)| pid);
    let mut busiest = (0u64, Rss::default()); // (cpu ticks, rss)
    for (pid, cmd) in &procs {
        let renders = match s.browser {
            Browser::Chromium => {
                cmd.contains("--type=renderer")
                    && cmd.contains(&format!("--user-data-dir={profile}"))
            }
            Browser::Firefox => {
                cmd.contains("-contentproc -isForBrowser")
                    && parent.is_some_and(|p| cmd.contains(&format!("-parentPid {p} ")))
            }
        };
        if !renders {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command's name: state, ppid, … (see proc(5)).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
            .sum::<u64>();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
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
                ticks,
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
    let base = renderer_rss(&b);
    let done = std::sync::atomic::AtomicBool::new(false);
    let sample = async {
        let mut peak = base;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let rss = renderer_rss(&b);
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

/// What a download's receiving tab (and the sharing tab) used.
struct Sampled {
    /// The receiving renderer before the download and at its peak.
    base: Rss,
    peak: Rss,
    /// The receiving page's wasm memory and JS heap (`performance.memory`, Chromium's only: 0
    /// in Firefox), peaks, in bytes.
    wasm: f64,
    js: f64,
    /// The receiving renderer's CPU time per MB over the download.
    cpu_ms_per_mb: f64,
    seconds: f64,
    /// The sharing renderer before the download and at its peak.
    sender_base: Rss,
    sender_peak: Rss,
}

/// `receiver` (a fresh browser) joins `room` and downloads `id` (`size` bytes) from `sharer`,
/// sampled every 250 ms.
async fn sampled_download(
    server: &Server,
    sharer: &Session,
    receiver: Browser,
    room: &str,
    id: &serde_json::Value,
    size: u64,
) -> Sampled {
    let b = bench_page(server, receiver).await;
    call(&b, format!("bench.swarmJoin('{room}')")).await;
    let base = renderer_rss(&b);
    let sender_base = renderer_rss(sharer);
    let mut sender_peak = sender_base;
    call(&b, format!("bench.startDownload({id}, 1)")).await;
    let (mut peak, mut wasm, mut js) = (base, 0.0f64, 0.0f64);
    let deadline = Instant::now() + Duration::from_secs(3600);
    let state = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let rss = renderer_rss(&b);
        if rss.total > peak.total {
            peak = rss;
        }
        let rss = renderer_rss(sharer);
        if rss.total > sender_peak.total {
            sender_peak = rss;
        }
        let m = call(&b, "bench.memory()".into()).await;
        wasm = wasm.max(m["wasm"].as_f64().unwrap_or(0.0));
        js = js.max(m["jsHeap"].as_f64().unwrap_or(0.0));
        assert!(m["failed"].is_null(), "{receiver:?}: download failed: {m}");
        if !m["ms"].is_null() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "{receiver:?}: download not done within an hour: {m}"
        );
    };
    assert_eq!(state["bytes"].as_u64(), Some(size), "{receiver:?}: {state}");
    // Clock ticks of 10 ms (the kernel's USER_HZ on Linux).
    let ticks = renderer_rss(&b).ticks.saturating_sub(base.ticks);
    b.close().await;
    Sampled {
        base,
        peak,
        wasm,
        js,
        cpu_ms_per_mb: ticks as f64 * 10.0 / (size as f64 / 1e6),
        seconds: state["ms"].as_f64().unwrap_or(f64::NAN) / 1000.0,
        sender_base,
        sender_peak,
    }
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
    let mb = |v: u64| v as f64 / MIB as f64;
    eprintln!(
        "raw, stored: {mib} MiB in {raw_secs:.1} s: renderer RSS peak {:.0} MiB (before {:.0}; \
         anonymous at the peak {:.0}, file-backed {:.0})",
        mb(raw_peak.total),
        mb(raw_base.total),
        mb(raw_peak.anon),
        mb(raw_peak.file),
    );
    let a = bench_page(&server, Browser::Chromium).await;
    let room = "memory";
    call(&a, format!("bench.swarmJoin('{room}')")).await;
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
    let mut json = json!({
        "mib": mib,
        "raw_peak_rss_mib": mb(raw_peak.total),
        "raw_base_rss_mib": mb(raw_base.total),
        "raw_seconds": raw_secs,
    });
    for (receiver, key) in [(Browser::Chromium, ""), (Browser::Firefox, "firefox_")] {
        let s = sampled_download(&server, &a, receiver, room, &id, size).await;
        eprintln!(
            "{receiver:?}: {mib} MiB in {:.1} s: renderer RSS peak {:.0} MiB (before {:.0}; at \
             the peak: anonymous {:.0}, file-backed {:.0}, shared memory {:.0}; before: {:.0}, \
             {:.0}, {:.0}), wasm {:.0} MiB, JS heap {:.0} MiB, CPU {:.1} ms/MB; the sharing \
             tab's renderer RSS peak {:.0} MiB (before {:.0}; anonymous at the peak {:.0})",
            s.seconds,
            mb(s.peak.total),
            mb(s.base.total),
            mb(s.peak.anon),
            mb(s.peak.file),
            mb(s.peak.shmem),
            mb(s.base.anon),
            mb(s.base.file),
            mb(s.base.shmem),
            s.wasm / MIB as f64,
            s.js / MIB as f64,
            s.cpu_ms_per_mb,
            mb(s.sender_peak.total),
            mb(s.sender_base.total),
            mb(s.sender_peak.anon),
        );
        let figures = [
            ("seconds", s.seconds),
            ("peak_rss_mib", mb(s.peak.total)),
            ("base_rss_mib", mb(s.base.total)),
            ("peak_rss_anon_mib", mb(s.peak.anon)),
            ("peak_rss_shmem_mib", mb(s.peak.shmem)),
            ("peak_wasm_mib", s.wasm / MIB as f64),
            ("peak_js_mib", s.js / MIB as f64),
            ("cpu_ms_per_mb", s.cpu_ms_per_mb),
            ("sender_peak_rss_mib", mb(s.sender_peak.total)),
            ("sender_base_rss_mib", mb(s.sender_base.total)),
        ];
        for (name, v) in figures {
            json[format!("{key}{name}")] = json!(v);
        }
    }
    println!("BENCH-JSON {json}");
    a.close().await;
}
