//! `cargo xtask bench transfer` and `webtorrent`: 1→1 throughput of swarmdrop (stored to OPFS)
//! against a raw JavaScript RTCDataChannel (64 KiB messages, bufferedAmount flow control, nothing
//! stored) and, with `SWARMDROP_WT_TRACKER`, against WebTorrent 3 (stored to OPFS), same
//! browsers, same run, fresh browser processes per pair. Prints figures; asserts only that every
//! transfer completes with the right size.
#![cfg(not(target_arch = "wasm32"))]

mod harness;

use harness::{bench_page, call, cdp, raw_round, raw_transfer, Browser, Server, Session};
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
        // A list of pairs, e.g. `cf,fc` (c: Chromium, f: Firefox; sender first).
        Ok(list) if !list.is_empty() && list.split(',').all(|p| pair(p).is_some()) => {
            list.split(',').filter_map(pair).collect()
        }
        _ => vec![
            (Chromium, Chromium),
            (Chromium, Firefox),
            (Firefox, Chromium),
        ],
    }
}

fn pair(code: &str) -> Option<(Browser, Browser)> {
    let browser = |c| match c {
        'c' => Some(Browser::Chromium),
        'f' => Some(Browser::Firefox),
        _ => None,
    };
    let mut chars = code.trim().chars();
    match (chars.next(), chars.next(), chars.next()) {
        (Some(a), Some(b), None) => Some((browser(a)?, browser(b)?)),
        _ => None,
    }
}

/// Raw/swarmdrop rounds per size and pair (`SWARMDROP_BENCH_ROUNDS`, default 3).
fn rounds() -> usize {
    std::env::var("SWARMDROP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The machine's CPU time so far, in ms (all cores: user, system and interrupts, from
/// `/proc/stat`; not idle, I/O wait or time stolen by the host), where Linux tells it.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …, in clock ticks (100 per second here).
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    Some(busy * 10.0)
}

/// CPU ticks of every thread of the machine, by (pid, tid), with a label: the process (its
/// name, and Chromium's `--type=` if any) and the thread's name.
fn thread_ticks() -> std::collections::HashMap<(u32, u32), (String, u64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // Chromium rewrites its command line into one string; its `--type=` tells the process.
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(p.path().join("cmdline")).unwrap_or_default())
                .replace('\0', " ");
        let exe = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
        let kind = match cmdline
            .split_whitespace()
            .find_map(|a| a.strip_prefix("--type="))
        {
            Some(t) => format!("{} {t} {pid}", exe.trim()),
            None => format!("{} {pid}", exe.trim()),
        };
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            // pid (comm) state … utime stime: fields 14 and 15, counted after the comm.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let f: Vec<&str> = stat[close + 2..].split(' ').collect();
            let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            out.insert((pid, tid), (format!("{kind} / {comm}"), ticks));
        }
    }
    out
}

/// UDP datagrams received and dropped for a full receive buffer so far, IPv4 and IPv6 together
/// (from `/proc/net/snmp` and `/proc/net/snmp6`).
fn udp_counts() -> (u64, u64) {
    let mut got = (0, 0);
    if let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") {
        let rows: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp: ")).collect();
        if let [names, values] = rows[..] {
            for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                let v: u64 = v.parse().unwrap_or(0);
                match n {
                    "InDatagrams" => got.0 += v,
                    "RcvbufErrors" => got.1 += v,
                    _ => {}
                }
            }
        }
    }
    if let Ok(snmp6) = std::fs::read_to_string("/proc/net/snmp6") {
        for l in snmp6.lines() {
            let mut it = l.split_whitespace();
            let (Some(n), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            match n {
                "Udp6InDatagrams" => got.0 += v,
                "Udp6RcvbufErrors" => got.1 += v,
                _ => {}
            }
        }
    }
    got
}

/// CPU ms spent by the whole machine while `fut` ran, per MB of `size`, and its output. With
/// `SWARMDROP_BENCH_THREADS=1` it prints the threads that spent it, labelled `what`.
async fn cpu_per_mb<T>(
    what: &str,
    size: u64,
    fut: impl std::future::Future<Output = T>,
) -> (f64, T) {
    let threads = std::env::var("SWARMDROP_BENCH_THREADS").as_deref() == Ok("1");
    let ticks = threads.then(thread_ticks);
    let udp = udp_counts();
    let before = cpu_ms();
    let out = fut.await;
    let mb = size as f64 / 1e6;
    let per_mb = match (before, cpu_ms()) {
        (Some(b), Some(a)) => (a - b) / mb,
        _ => f64::NAN,
    };
    if let Some(ticks) = ticks {
        let mut by_label: std::collections::HashMap<String, u64> = Default::default();
        for (key, (label, now)) in thread_ticks() {
            let was = ticks.get(&key).map_or(0, |t| t.1);
            *by_label.entry(label).or_default() += now.saturating_sub(was);
        }
        let mut top: Vec<_> = by_label.into_iter().filter(|(_, t)| *t > 0).collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        let (received, dropped) = udp_counts();
        eprintln!(
            "{what}: {per_mb:.0} CPU ms/MB, {:.0} UDP datagrams received per MB, {:.0} dropped (receive buffer full); by thread (ms/MB):",
            (received - udp.0) as f64 / mb,
            (dropped - udp.1) as f64 / mb
        );
        for (label, t) in top.iter().take(25) {
            eprintln!("  {:7.1}  {label}", *t as f64 * 10.0 / mb);
        }
    }
    (per_mb, out)
}

/// One raw transfer from `a` to `b` in `room` (with `store`, the receiver also writes every
/// message to OPFS): CPU ms per MB and the receiver's result (tried again as [`raw_round`] says).
async fn raw_cpu_round(
    a: &Session,
    b: &Session,
    room: &str,
    size: u64,
    store: bool,
) -> (f64, Value) {
    let label = if store { "raw, stored" } else { "raw" };
    raw_round(room, |room| async move {
        let (cpu, (sent, recv)) =
            cpu_per_mb(label, size, raw_transfer(a, b, &room, size, store)).await;
        (cpu, sent, recv)
    })
    .await
}

/// The three transfers of a round.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Leg {
    /// The raw channel, nothing stored.
    Raw,
    /// The raw channel, the receiver storing to OPFS.
    Stored,
    /// swarmdrop: shared by `a`, downloaded by `b`.
    Swarmdrop,
}

/// `SWARMDROP_BENCH_ORDER=fixed`: every round runs raw, stored, swarmdrop in that order (as
/// before 2026-12-07), for comparing with the turns the legs take now.
fn fixed_order() -> bool {
    std::env::var("SWARMDROP_BENCH_ORDER").as_deref() == Ok("fixed")
}

/// One swarmdrop transfer in `room`: `a` shares a generated file of `size` bytes, `b` downloads
/// it; CPU ms per MB and the downloader's result. Both leave the swarm after it.
async fn swarmdrop_leg(a: &Session, b: &Session, room: &str, size: u64) -> (f64, Value) {
    let (id, _) = tokio::join!(
        call(a, format!("bench.swarmShare('{room}', {size}, 0)")),
        call(b, format!("bench.swarmJoin('{room}')")),
    );
    let id = id.as_str().expect("file id").to_string();
    // `SWARMDROP_BENCH_PROFILE=1`: the main threads of Chromium pages, sampled.
    let profile = std::env::var("SWARMDROP_BENCH_PROFILE").as_deref() == Ok("1");
    let profiled: Vec<(&str, &Session)> = [("sender", a), ("receiver", b)]
        .into_iter()
        .filter(|(_, s)| profile && s.browser == Browser::Chromium)
        .collect();
    for (_, s) in &profiled {
        cdp(s, "Profiler.enable", json!({})).await;
        cdp(s, "Profiler.setSamplingInterval", json!({"interval": 200})).await;
        cdp(s, "Profiler.start", json!({})).await;
    }
    let out = cpu_per_mb(
        "swarmdrop",
        size,
        call(b, format!("bench.swarmDownload('{id}', 1)")),
    )
    .await;
    for (who, s) in &profiled {
        print_profile(&cdp(s, "Profiler.stop", json!({})).await, who);
    }
    // Leave the swarm (before WebTorrent or the next leg runs).
    for s in [a, b] {
        let _ = s
            .client
            .execute(
                "if (window.swarm) { window.swarm.leave(); window.swarm = null; } return null",
                vec![],
            )
            .await;
    }
    out
}

/// A wait for the next bytes this long or longer is a pause: on loopback here the SCTP
/// retransmission timer after a lost packet, 0.4–1.2 s, in raw and swarmdrop transfers alike;
/// a transfer's longest wait is otherwise at most ~0.25 s (swarmdrop's first piece included).
const PAUSE_MS: f64 = 300.0;

fn pause_ms(v: &Value) -> f64 {
    v["pauseMs"].as_f64().unwrap_or(0.0)
}

/// The rate over the middle half of a transfer (`midMbps` in bench.js).
fn mid_mbps(v: &Value) -> f64 {
    v["midMbps"].as_f64().unwrap_or(f64::NAN)
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
            // Rounds alternate raw and swarmdrop in the same two browsers; the figures are the
            // medians (one transfer's rate varies by ±20 % on a shared VM).
            let (mut raws, mut ours, mut wts) = (Vec::new(), Vec::new(), Vec::new());
            // CPU ms per MB, the whole machine, while the raw transfer and swarmdrop's ran.
            let (mut raw_cpu, mut our_cpu) = (Vec::new(), Vec::new());
            // The raw channel with the receiver storing to OPFS as it receives (not in the
            // WebTorrent run, to keep it short).
            let (mut stored, mut stored_cpu) = (Vec::new(), Vec::new());
            // Each transfer's longest wait for its next bytes (`pauses` in bench.js), per round:
            // raw, raw stored (where it runs), swarmdrop.
            let mut waits: Vec<Vec<f64>> = Vec::new();
            // What each swarmdrop download's page said (its timings), per round.
            let mut said: Vec<Value> = Vec::new();
            for round in 0..rounds() {
                // The three legs take turns going first (raw, stored, swarmdrop; then stored,
                // swarmdrop, raw; …), so that whatever one leg leaves behind in the two browsers
                // and the machine (garbage, page cache, the shared file's bytes) does not always
                // fall on the same next leg.
                let mut legs = vec![Leg::Raw, Leg::Stored, Leg::Swarmdrop];
                if tracker.is_some() {
                    legs.retain(|l| *l != Leg::Stored);
                }
                if !fixed_order() {
                    let k = round % legs.len();
                    legs.rotate_left(k);
                }
                let (mut raw_wait, mut stored_wait, mut our_wait) = (0.0, None, 0.0);
                let order = format!("{legs:?}");
                // Each transfer's rate over its middle half (from a quarter of the bytes to three
                // quarters): the steady rate, without the start and the end.
                let mut mids = Vec::new();
                for leg in legs {
                    match leg {
                        Leg::Raw => {
                            let (cpu, recv) =
                                raw_cpu_round(&a, &b, &format!("raw-{n}-{round}"), size, false)
                                    .await;
                            raw_cpu.push(cpu);
                            raws.push(mb_per_s(&recv, size));
                            raw_wait = pause_ms(&recv);
                            mids.push(format!("raw {:.1}", mid_mbps(&recv)));
                        }
                        Leg::Stored => {
                            let (cpu, recv) =
                                raw_cpu_round(&a, &b, &format!("rawst-{n}-{round}"), size, true)
                                    .await;
                            stored_cpu.push(cpu);
                            stored.push(mb_per_s(&recv, size));
                            stored_wait = Some(pause_ms(&recv));
                            mids.push(format!("stored {:.1}", mid_mbps(&recv)));
                        }
                        Leg::Swarmdrop => {
                            let got = swarmdrop_leg(&a, &b, &format!("sd-{n}-{round}"), size).await;
                            our_cpu.push(got.0);
                            ours.push(mb_per_s(&got.1, size));
                            our_wait = pause_ms(&got.1);
                            mids.push(format!("swarmdrop {:.1}", mid_mbps(&got.1)));
                            said.push(got.1);
                            if let Some(t) = &tracker {
                                wts.push(webtorrent(&a, &b, size, t).await);
                            }
                        }
                    }
                }
                let got = &said[round];
                waits.push(
                    [Some(raw_wait), stored_wait, Some(our_wait)]
                        .into_iter()
                        .flatten()
                        .collect(),
                );
                eprintln!(
                    "{from:?}→{to:?} {} MiB, round {} {order}: raw {:.1} MB/s ({:.0} CPU ms/MB){}, swarmdrop {:.1} MB/s ({:.0} CPU ms/MB) (first piece stored {:.0} ms after download(), the last {:.0} ms, done {:.0} ms){}; longest waits {} ms; middle half {} MB/s",
                    size / MIB,
                    round + 1,
                    raws[round],
                    raw_cpu[round],
                    stored
                        .get(round)
                        .map(|s| format!(", raw stored {s:.1} MB/s ({:.0} CPU ms/MB)", stored_cpu[round]))
                        .unwrap_or_default(),
                    ours[round],
                    our_cpu[round],
                    got["firstMs"].as_f64().unwrap_or(f64::NAN),
                    got["lastMs"].as_f64().unwrap_or(f64::NAN),
                    got["ms"].as_f64().unwrap_or(f64::NAN),
                    wts.get(round)
                        .map(|w| format!(", webtorrent {w:.1} MB/s"))
                        .unwrap_or_default(),
                    waits[round]
                        .iter()
                        .map(|w| format!("{w:.0}"))
                        .collect::<Vec<_>>()
                        .join(" / "),
                    mids.join(", ")
                );
            }
            // The rates of the transfers (the `k`th of each round) that did not pause: their
            // median and how many.
            let unpaused = |v: &[f64], k: usize| {
                let kept: Vec<f64> = v
                    .iter()
                    .zip(&waits)
                    .filter(|(_, w)| w.get(k).is_some_and(|&w| w < PAUSE_MS))
                    .map(|(&x, _)| x)
                    .collect();
                json!({ "n": kept.len(), "mbps": (!kept.is_empty()).then(|| median(&kept)) })
            };
            let last = if stored.is_empty() { 1 } else { 2 };
            results.push(json!({
                "from": format!("{from:?}"), "to": format!("{to:?}"),
                "unpaused_raw": unpaused(&raws, 0),
                "unpaused_raw_stored": unpaused(&stored, 1),
                "unpaused_swarmdrop": unpaused(&ours, last),
                "mib": size / MIB, "rounds": raws.len(),
                "raw_mbps": median(&raws), "swarmdrop_mbps": median(&ours),
                "webtorrent_mbps": (!wts.is_empty()).then(|| median(&wts)),
                "raw_runs": raws, "swarmdrop_runs": ours, "webtorrent_runs": wts,
                "raw_cpu_ms_per_mb": median(&raw_cpu), "swarmdrop_cpu_ms_per_mb": median(&our_cpu),
                "raw_stored_mbps": (!stored.is_empty()).then(|| median(&stored)),
                "raw_stored_runs": stored,
                "raw_stored_cpu_ms_per_mb": (!stored_cpu.is_empty()).then(|| median(&stored_cpu)),
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

/// Prints the functions that took the most of a page's main thread (self time) in a CPU profile
/// from `Profiler.stop`. Function names of the wasm show with a `--profiling` build of `pkg/`.
fn print_profile(profile: &Value, who: &str) {
    let p = &profile["profile"];
    let empty = Vec::new();
    let mut name_of = std::collections::HashMap::new();
    for n in p["nodes"].as_array().unwrap_or(&empty) {
        let f = &n["callFrame"];
        let file = f["url"]
            .as_str()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("");
        let name = format!(
            "{} {file}:{}",
            f["functionName"].as_str().unwrap_or(""),
            f["lineNumber"]
        );
        name_of.insert(n["id"].as_i64().unwrap_or(-1), name);
    }
    let mut self_us: std::collections::HashMap<&str, f64> = Default::default();
    let samples = p["samples"].as_array().unwrap_or(&empty);
    let deltas = p["timeDeltas"].as_array().unwrap_or(&empty);
    for (s, d) in samples.iter().zip(deltas) {
        if let Some(name) = s.as_i64().and_then(|id| name_of.get(&id)) {
            *self_us.entry(name).or_default() += d.as_f64().unwrap_or(0.0);
        }
    }
    let total: f64 = self_us.values().sum();
    let mut top: Vec<_> = self_us.into_iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!(
        "profile of the {who}'s main thread: {:.0} ms sampled",
        total / 1000.0
    );
    for (name, us) in top.iter().take(30) {
        eprintln!("  {:8.1} ms  {name}", us / 1000.0);
    }
}
