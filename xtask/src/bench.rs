//! `cargo xtask bench [NAME] [--quick]`: each figure beside its baseline or goal, as a ratio,
//! appended to bench/results.md with the date, the machine and the commit.

use crate::{build_pkg, cmd, root, run as run_cmd, tools};
use std::io::Write;
use std::process::{Child, Command, Stdio};

const NAMES: [&str; 7] = [
    "size",
    "signal",
    "join",
    "files",
    "transfer",
    "webtorrent",
    "memory",
];

/// One row of a benchmark table.
struct Row {
    figure: String,
    ours: f64,
    baseline: f64,
    unit: &'static str,
    goal: String,
}

pub fn run(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let instances = match args.iter().position(|a| a == "--instances") {
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("1") => 1,
            Some("2") => 2,
            other => {
                return Err(format!(
                    "--instances takes 1 or 2, not {}",
                    other.unwrap_or("nothing")
                ))
            }
        },
        None => 1,
    };
    let name = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--instances"))
        .map(|(_, a)| a.as_str());
    if let Some(n) = name {
        if !NAMES.contains(&n) {
            return Err(format!(
                "unknown benchmark `{n}`; one of {}",
                NAMES.join(", ")
            ));
        }
    }
    tools::ensure(tools::Need::Build)?;
    let mut tables = Vec::new();
    if name.is_none_or(|n| n == "size") {
        tables.push(("size", size()?));
    }
    if name.is_none_or(|n| n == "signal") {
        if instances == 2 {
            tables.push(("signal --instances 2", signal_instances(quick)?));
        } else {
            tables.push(("signal", signal(quick)?));
            if quick {
                // So the scale-out run never rots either.
                tables.push(("signal --instances 2", signal_instances(quick)?));
            }
        }
    }
    if name.is_none_or(|n| n == "join") {
        tables.push(("join", join(quick)?));
    }
    if name.is_none_or(|n| n == "files") {
        tables.push(("files", many_files(quick)?));
    }
    if name.is_none_or(|n| n == "transfer") {
        tables.push(("transfer", transfer(quick)?));
    }
    if name.is_none_or(|n| n == "webtorrent") {
        tables.push(("webtorrent", webtorrent(quick)?));
    }
    if name.is_none_or(|n| n == "memory") {
        tables.push(("memory", memory(quick)?));
    }
    let machine = machine();
    let commit = crate::tools_output("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let date = crate::tools_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let mut md = String::new();
    for (name, rows) in &tables {
        md.push_str(&format!(
            "\n### {name} — {} — {} — commit {}{}\n\n| figure | swarmdrop | baseline | ratio | goal |\n|---|---|---|---|---|\n",
            date.trim(),
            machine,
            commit.trim(),
            if quick { " (quick)" } else { "" }
        ));
        for r in rows {
            md.push_str(&format!(
                "| {} | {} {} | {} {} | {:.2}× | {} |\n",
                r.figure,
                figure(r.ours),
                r.unit,
                figure(r.baseline),
                r.unit,
                r.ours / r.baseline,
                r.goal
            ));
        }
    }
    print!("{md}");
    for (name, _) in &tables {
        println!("bench ok: {name}");
    }
    if !quick {
        let dir = root().join("bench");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("results.md"))
            .map_err(|e| format!("bench/results.md: {e}"))?;
        f.write_all(md.as_bytes()).map_err(|e| e.to_string())?;
        println!("\nappended to bench/results.md");
    }
    Ok(())
}

/// Three significant digits or one decimal, whichever says more.
fn figure(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

/// The wasm bundle, raw and gzipped, against the 250 KB gzipped goal.
fn size() -> Result<Vec<Row>, String> {
    build_pkg()?;
    let wasm = root().join("pkg").join("swarmdrop_bg.wasm");
    let bytes = std::fs::read(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes).map_err(|e| e.to_string())?;
    let gz = gz.finish().map_err(|e| e.to_string())?;
    let goal = 250.0;
    Ok(vec![
        Row {
            figure: "wasm, raw".into(),
            ours: bytes.len() as f64 / 1000.0,
            baseline: goal,
            unit: "KB",
            goal: "(for reference)".into(),
        },
        Row {
            figure: "wasm, gzip -9".into(),
            ours: gz.len() as f64 / 1000.0,
            baseline: goal,
            unit: "KB",
            goal: "≤ 1.00× of 250 KB".into(),
        },
    ])
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut out = format!("{cores} cores, {cpu}");
    // The browsers the browser benchmarks ran in.
    for browser in ["chromium", "firefox-esr"] {
        if let Some(v) = crate::tools_output(browser, &["--version"]) {
            out.push_str(", ");
            out.push_str(v.trim());
        }
    }
    out
}

/// A server process for a benchmark, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Runs `program args` with a raised open-files limit (10,000 sockets need more than 1,024).
fn with_nofile(program: &std::path::Path, args: &[String]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec \"$@\"")
        .arg("sh")
        .arg(program)
        .args(args)
        .env("PATH", tools::path());
    c
}

fn wait_listening(port: u16) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    while std::net::TcpStream::connect(addr).is_err() {
        if std::time::Instant::now() > deadline {
            return Err(format!("nothing listens on {port}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// Starts the release `swarmdrop-signal` on a free port with the limits raised for load runs
/// and `extra` flags.
fn start_signal(extra: &[&str]) -> Result<(Running, u16), String> {
    let bin = root()
        .join("target")
        .join("release")
        .join("swarmdrop-signal");
    let port = free_port()?;
    let mut args: Vec<String> = [
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--log",
        "warn",
        // Limits raised for the load run only.
        "--rate",
        "1e9",
        "--burst",
        "1e9",
        "--max-connections",
        "100000",
        "--max-connections-per-ip",
        "100000",
        "--max-rooms",
        "100000",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let server = Running(
        with_nofile(&bin, &args)
            .spawn()
            .map_err(|e| format!("starting swarmdrop-signal: {e}"))?,
    );
    wait_listening(port)?;
    Ok((server, port))
}

/// One load run: the generator's JSON figures. With `port2`, pairs span two instances; without
/// `memory`, the held-connections phase is skipped.
fn load(
    loadgen: &std::path::Path,
    flavor: &str,
    server: &Running,
    (port, port2): (u16, Option<u16>),
    memory: bool,
    quick: bool,
) -> Result<serde_json::Value, String> {
    let mut args: Vec<String> = [
        "--flavor",
        flavor,
        "--url",
        &format!("ws://127.0.0.1:{port}"),
        "--server-pid",
        &server.0.id().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if quick {
        args.extend(["--pairs", "10", "--seconds", "1"].map(String::from));
    }
    let conns = match (memory, quick) {
        (false, _) => "0",
        (true, true) => "200",
        (true, false) => "10000",
    };
    args.extend(["--conns".into(), conns.into()]);
    if let Some(p2) = port2 {
        args.extend(["--url2".into(), format!("ws://127.0.0.1:{p2}")]);
    }
    println!(
        "xtask: load on {flavor}{} ({} connections held, {} s phases)",
        if port2.is_some() { ", 2 instances" } else { "" },
        conns,
        if quick { 1 } else { 5 }
    );
    let out = with_nofile(loadgen, &args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("signal-load: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "signal-load against {flavor} failed ({})",
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).map_err(|e| format!("signal-load output {text:?}: {e}"))
}

/// Builds the release server and the load generator.
fn build_load() -> Result<(), String> {
    run_cmd(
        "building the server and load generator",
        &mut cmd(
            "cargo",
            &[
                "build",
                "--release",
                "--package",
                "swarmdrop-signal",
                "--features",
                "load",
            ],
        ),
    )
}

/// The signaling server under load, against matchbox_server 0.15 in the same run.
fn signal(quick: bool) -> Result<Vec<Row>, String> {
    build_load()?;
    let bin = root().join("target").join("release");
    let (ours, port) = start_signal(&[])?;
    let a = load(
        &bin.join("signal-load"),
        "swarmdrop",
        &ours,
        (port, None),
        true,
        quick,
    )?;
    drop(ours);
    let b = if quick {
        None
    } else {
        if !tools::runs("matchbox_server", "--help") {
            println!("xtask: installing matchbox_server 0.15.0 (the baseline; a few minutes)");
            run_cmd(
                "cargo install matchbox_server",
                Command::new("cargo").args(["install", "matchbox_server", "--version", "0.15.0"]),
            )?;
        }
        let port = free_port()?;
        let mb = Running(
            with_nofile(
                std::path::Path::new("matchbox_server"),
                &[format!("127.0.0.1:{port}")],
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting matchbox_server: {e}"))?,
        );
        wait_listening(port)?;
        Some(load(
            &bin.join("signal-load"),
            "matchbox",
            &mb,
            (port, None),
            true,
            quick,
        )?)
    };
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let base = |k: &str, fallback: f64| b.as_ref().map_or(fallback, |b| f(b, k));
    let conns = a["conns"].as_u64().unwrap_or(0);
    Ok(vec![
        Row {
            figure: format!("server memory per connection ({conns} joined)"),
            ours: f(&a, "per_conn_bytes") / 1000.0,
            baseline: base("per_conn_bytes", 10_000.0) / 1000.0,
            unit: "KB",
            goal: "< 10 KB".into(),
        },
        Row {
            figure: format!("relayed msgs/s ({} pairs, 16 in flight each)", a["pairs"]),
            ours: f(&a, "msgs_per_sec") / 1000.0,
            baseline: base("msgs_per_sec", 350_000.0) / 1000.0,
            unit: "k/s",
            goal: "≥ 350 k/s".into(),
        },
        Row {
            figure: "one-way relay latency p50 at 1,000 msgs/s".into(),
            ours: f(&a, "p50_us") / 1000.0,
            baseline: base("p50_us", 500.0) / 1000.0,
            unit: "ms",
            goal: "".into(),
        },
        Row {
            figure: "one-way relay latency p99 at 1,000 msgs/s".into(),
            ours: f(&a, "p99_us") / 1000.0,
            baseline: base("p99_us", 500.0) / 1000.0,
            unit: "ms",
            goal: "< 0.5 ms".into(),
        },
    ])
}

/// Relaying across two instances sharing rooms through Redis, against one instance, same run.
fn signal_instances(quick: bool) -> Result<Vec<Row>, String> {
    build_load()?;
    tools::ensure(tools::Need::All)?; // redis-server
    let loadgen = root().join("target").join("release").join("signal-load");
    let (single, port) = start_signal(&[])?;
    let one = load(&loadgen, "swarmdrop", &single, (port, None), false, quick)?;
    drop(single);

    let redis_port = free_port()?;
    let _redis = Running(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server: {e}"))?,
    );
    wait_listening(redis_port)?;
    let url = format!("redis://127.0.0.1:{redis_port}/");
    let (first, port1) = start_signal(&["--redis", &url])?;
    let (_second, port2) = start_signal(&["--redis", &url])?;
    // Both must have joined the cluster before peers arrive (or they would be served alone).
    for port in [port1, port2] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !http_get(port, "/healthz").contains("\"redis\":\"up\"") {
            if std::time::Instant::now() > deadline {
                return Err(format!("the instance on {port} never reached Redis"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let two = load(
        &loadgen,
        "swarmdrop",
        &first,
        (port1, Some(port2)),
        false,
        quick,
    )?;
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(vec![
        Row {
            figure: format!(
                "relayed msgs/s across 2 instances via Redis ({} pairs) vs 1 instance",
                two["pairs"]
            ),
            ours: f(&two, "msgs_per_sec") / 1000.0,
            baseline: f(&one, "msgs_per_sec") / 1000.0,
            unit: "k/s",
            goal: "".into(),
        },
        Row {
            figure: "one-way relay latency p50 at 1,000 msgs/s, 2 instances vs 1".into(),
            ours: f(&two, "p50_us") / 1000.0,
            baseline: f(&one, "p50_us") / 1000.0,
            unit: "ms",
            goal: "".into(),
        },
        Row {
            figure: "one-way relay latency p99 at 1,000 msgs/s, 2 instances vs 1".into(),
            ours: f(&two, "p99_us") / 1000.0,
            baseline: f(&one, "p99_us") / 1000.0,
            unit: "ms",
            goal: "".into(),
        },
    ])
}

/// A plain HTTP GET on loopback; the whole response, or "" on any error.
fn http_get(port: u16, path: &str) -> String {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    if s.write_all(req.as_bytes()).is_err() || s.read_to_string(&mut out).is_err() {
        return String::new();
    }
    out
}

/// Runs one browser benchmark test (tests/bench_*.rs) and returns the JSON it printed.
fn browser_bench(
    test: &str,
    env: &[(&str, String)],
    quick: bool,
) -> Result<serde_json::Value, String> {
    tools::ensure(tools::Need::All)?;
    build_pkg()?;
    // The server as `cargo xtask serve` runs it (release); quick runs take the debug build the
    // tests already have.
    let server = crate::build_server(!quick)?;
    let mut c = cmd(
        "cargo",
        &[
            "test",
            "--quiet",
            "--package",
            "swarmdrop",
            "--features",
            "e2e",
            "--test",
            test,
            "--",
            "--nocapture",
        ],
    );
    c.env("SWARMDROP_SERVER_BIN", &server);
    if quick {
        // Small transfers: a script still running after this long is stuck.
        c.env("SWARMDROP_BENCH_SCRIPT_SECS", "180");
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let scratch = crate::Scratch::new(test)?;
    scratch.hold(&mut c);
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{test}: {e}"))?;
    drop(scratch);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{test} failed ({}):\n{text}", out.status));
    }
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("BENCH-JSON "))
        .ok_or_else(|| format!("{test} printed no figures:\n{text}"))?;
    serde_json::from_str(json).map_err(|e| e.to_string())
}

/// Page open → first peer connected, Chromium and Firefox joining a Chromium peer.
fn join(quick: bool) -> Result<Vec<Row>, String> {
    let joins = if quick { 3 } else { 50 };
    println!("xtask: {joins} joins per browser");
    let v = browser_bench(
        "bench_join",
        &[("SWARMDROP_BENCH_JOINS", joins.to_string())],
        quick,
    )?;
    let mut rows = Vec::new();
    for browser in ["chromium", "firefox"] {
        let b = &v[browser];
        let st = &b["steps_p50_ms"];
        let step = |k: &str| st[k].as_f64().unwrap_or(f64::NAN);
        for (p, goal) in [("p50_ms", 300.0), ("p99_ms", 1000.0)] {
            rows.push(Row {
                figure: format!(
                    "{browser} joins a Chromium peer: page open → connected, {} ({} joins){}",
                    &p[..3],
                    b["joins"],
                    if p == "p50_ms" {
                        format!(
                            " — steps p50: page→script {:.0}, wasm {:.0}, join {:.0}, connect {:.0} ms",
                            step("page_to_script"),
                            step("wasm_load"),
                            step("signaling_join"),
                            step("to_connected")
                        )
                    } else {
                        String::new()
                    }
                ),
                ours: b[p].as_f64().unwrap_or(f64::NAN),
                baseline: goal,
                unit: "ms",
                goal: format!("< {goal:.0} ms"),
            });
        }
    }
    Ok(rows)
}

/// Thousands of files dropped on the page against the same shared through the API alone, and
/// the page's rebuild of their unchanged list against one frame.
fn many_files(quick: bool) -> Result<Vec<Row>, String> {
    let (files, downloads, rounds) = if quick { (200, 20, 1) } else { (5000, 500, 2) };
    println!("xtask: {files} files listed, {downloads} downloaded, {rounds} rounds each way");
    let v = browser_bench(
        "bench_files",
        &[
            ("SWARMDROP_BENCH_FILES", files.to_string()),
            ("SWARMDROP_BENCH_DOWNLOADS", downloads.to_string()),
            ("SWARMDROP_BENCH_ROUNDS", rounds.to_string()),
        ],
        quick,
    )?;
    let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let frame = 1000.0 / 60.0;
    let mut rows = vec![
        Row {
            figure: format!(
                "{files} small files dropped on Chromium's page → all listed on Firefox's page \
             (baseline: the same shared by a script through `swarm.share`; medians of {rounds})"
            ),
            ours: num("page_s"),
            baseline: num("api_s"),
            unit: "s",
            goal: "≤ 1.5×".into(),
        },
        Row {
            figure: format!(
                "{downloads} small files: Firefox's page downloads them all (\"Download all\") → \
             all whole (baseline: a script calling `swarm.download` for each; medians of {rounds})"
            ),
            ours: num("page_download_s"),
            baseline: num("api_download_s"),
            unit: "s",
            goal: "≤ 1.5×".into(),
        },
    ];
    for browser in ["chromium", "firefox"] {
        rows.push(Row {
            figure: format!("{browser}: the page rebuilds its unchanged list of {files} files"),
            ours: num(&format!("rebuild_{browser}_ms")),
            baseline: frame,
            unit: "ms",
            goal: "< one frame (16.7 ms)".into(),
        });
    }
    Ok(rows)
}

/// Alternating raw/swarmdrop rounds per pair and size (the figures are their medians).
fn rounds(quick: bool) -> String {
    // Five: one transfer's rate varies by ±20 % here from round to round.
    if quick { "1" } else { "5" }.to_string()
}

/// 1→1 throughput against a raw RTCDataChannel in the same browsers and run, and (full mode)
/// three capped seeders → one downloader against the sum of the caps.
fn transfer(quick: bool) -> Result<Vec<Row>, String> {
    // Quick mode skips the multi-source run (four browsers) to keep the tests short.
    let (sizes, pairs, multi) = if quick {
        ("8", "quick", "0")
    } else {
        ("64,256", "all", "1")
    };
    let v = browser_bench(
        "bench_transfer",
        &[
            ("SWARMDROP_BENCH_SIZES_MIB", sizes.to_string()),
            ("SWARMDROP_BENCH_PAIRS", pairs.to_string()),
            ("SWARMDROP_BENCH_MULTI", multi.to_string()),
            ("SWARMDROP_BENCH_ROUNDS", rounds(quick)),
        ],
        quick,
    )?;
    let num = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    Ok(v.as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .flat_map(|r| {
            if r["one_to_three"] == true {
                vec![Row {
                    figure: format!(
                        "1→3: one Chromium seeder, three Chromium downloaders at once, {} MiB each, aggregate (baseline: raw 1→1)",
                        r["mib"]
                    ),
                    ours: num(r, "swarmdrop_mbps"),
                    baseline: num(r, "raw_mbps"),
                    unit: "MB/s",
                    goal: "".into(),
                }]
            } else if r["multi"] == true {
                vec![Row {
                    figure: format!(
                        "multi-source: 3 Chromium seeders capped at {:.1} MB/s each (raw/4) → 1, {} MiB",
                        num(r, "cap_mbps"),
                        r["mib"]
                    ),
                    ours: num(r, "swarmdrop_mbps"),
                    baseline: num(r, "sum_mbps"),
                    unit: "MB/s",
                    goal: "≥ 0.90× of the caps' sum".into(),
                }]
            } else {
                let pair = format!(
                    "{} → {}, {} MiB",
                    r["from"].as_str().unwrap_or("?"),
                    r["to"].as_str().unwrap_or("?"),
                    r["mib"]
                );
                // The transfers that did not pause (see PAUSE_MS in tests/bench_transfer.rs).
                let count = |k: &str| r[k]["n"].as_u64().unwrap_or(0);
                let (ours_n, raw_n) = (count("unpaused_swarmdrop"), count("unpaused_raw"));
                let unpaused = (ours_n > 0 && raw_n > 0).then(|| Row {
                    figure: format!(
                        "{pair}, medians of the transfers that never waited 0.3 s or more for their next bytes (swarmdrop {ours_n}, raw {raw_n} of {}; such a wait is the SCTP retransmission timer after a lost packet, in both alike: see the README)",
                        r["rounds"]
                    ),
                    ours: r["unpaused_swarmdrop"]["mbps"].as_f64().unwrap_or(f64::NAN),
                    baseline: r["unpaused_raw"]["mbps"].as_f64().unwrap_or(f64::NAN),
                    unit: "MB/s",
                    goal: "(for reference)".into(),
                });
                let rows = vec![Row {
                    figure: format!(
                        "{pair}, 1→1, median of {} rounds (swarmdrop stores to OPFS; baseline: raw RTCDataChannel, both timed from the receiver's request)",
                        r["rounds"]
                    ),
                    ours: num(r, "swarmdrop_mbps"),
                    baseline: num(r, "raw_mbps"),
                    unit: "MB/s",
                    goal: "≥ 0.90× of raw".into(),
                }, Row {
                    figure: format!(
                        "{pair}, CPU time of the whole machine per MB moved, median (transfers here are CPU-bound: the rate follows it)"
                    ),
                    ours: num(r, "swarmdrop_cpu_ms_per_mb"),
                    baseline: num(r, "raw_cpu_ms_per_mb"),
                    unit: "ms/MB",
                    goal: "(for reference)".into(),
                }, Row {
                    figure: format!(
                        "{pair}, against the raw channel whose receiver writes each message to OPFS as it arrives (a worker, a sync access handle; {:.0} CPU ms/MB; raw stored / raw: {:.2}×)",
                        num(r, "raw_stored_cpu_ms_per_mb"),
                        num(r, "raw_stored_mbps") / num(r, "raw_mbps")
                    ),
                    ours: num(r, "swarmdrop_mbps"),
                    baseline: num(r, "raw_stored_mbps"),
                    unit: "MB/s",
                    goal: "(for reference)".into(),
                }];
                rows.into_iter().chain(unpaused).collect()
            }
        })
        .collect())
}

/// The loopback tracker of the `webtorrent` benchmark: bittorrent-tracker's server alone (its
/// index also loads the native client), WebSocket only.
const TRACKER_JS: &str = r#"import Server from 'bittorrent-tracker/server'
const server = new Server({ udp: false, http: false, ws: true, stats: false })
server.on('error', (e) => { console.error('tracker error', e.message); process.exit(1) })
server.listen(0, '127.0.0.1', () => console.log(`ws://127.0.0.1:${server.ws.address().port}`))
"#;

/// The same bytes through WebTorrent 3 and through swarmdrop (both storing to OPFS), with the
/// raw channel of the same browsers for scale.
fn webtorrent(quick: bool) -> Result<Vec<Row>, String> {
    let dir = tools::webtorrent()?;
    let vendor = root().join("www").join("bench").join("vendor");
    std::fs::create_dir_all(&vendor).map_err(|e| format!("{}: {e}", vendor.display()))?;
    let bundle = dir.join("node_modules/webtorrent/dist/webtorrent.min.js");
    std::fs::copy(&bundle, vendor.join("webtorrent.min.js"))
        .map_err(|e| format!("copying {}: {e}", bundle.display()))?;
    let script = dir.join("tracker.mjs");
    std::fs::write(&script, TRACKER_JS).map_err(|e| format!("{}: {e}", script.display()))?;
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the tracker (node): {e}"))?;
    let mut line = String::new();
    {
        use std::io::BufRead;
        let out = child.stdout.take().ok_or("tracker stdout")?;
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| format!("tracker: {e}"))?;
    }
    let tracker = Running(child);
    let url = line.trim().to_string();
    if !url.starts_with("ws://127.0.0.1:") {
        return Err(format!("the tracker did not start: {line:?}"));
    }
    println!("xtask: WebTorrent tracker on {url}");
    let (sizes, pairs) = if quick {
        ("8", "quick")
    } else {
        ("64,256", "all")
    };
    let v = browser_bench(
        "bench_transfer",
        &[
            ("SWARMDROP_BENCH_SIZES_MIB", sizes.to_string()),
            ("SWARMDROP_BENCH_PAIRS", pairs.to_string()),
            ("SWARMDROP_BENCH_MULTI", "0".to_string()),
            ("SWARMDROP_WT_TRACKER", url),
            ("SWARMDROP_BENCH_ROUNDS", rounds(quick)),
        ],
        quick,
    )?;
    drop(tracker);
    let num = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    Ok(v.as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let raw = num(r, "raw_mbps");
            Row {
                figure: format!(
                    "{} → {}, {} MiB, 1→1, both storing to OPFS (raw channel {:.1} MB/s: swarmdrop {:.2}×, WebTorrent {:.2}× of it)",
                    r["from"].as_str().unwrap_or("?"),
                    r["to"].as_str().unwrap_or("?"),
                    r["mib"],
                    raw,
                    num(r, "swarmdrop_mbps") / raw,
                    num(r, "webtorrent_mbps") / raw,
                ),
                ours: num(r, "swarmdrop_mbps"),
                baseline: num(r, "webtorrent_mbps"),
                unit: "MB/s",
                goal: "swarmdrop ≥ 0.90× raw".into(),
            }
        })
        .collect())
}

/// A 4 GiB download (64 MiB in quick mode) shared from disk by Chromium, downloaded by a
/// Chromium, then by a Firefox, with the receiving tab's memory sampled, against the 256 MiB
/// goal.
fn memory(quick: bool) -> Result<Vec<Row>, String> {
    let mib = if quick { 64 } else { 4096 };
    println!(
        "xtask: {mib} MiB from disk, Chromium → Chromium, then Chromium → Firefox, receiver's memory sampled"
    );
    let v = browser_bench(
        "bench_memory",
        &[("SWARMDROP_BENCH_MEMORY_MIB", mib.to_string())],
        quick,
    )?;
    let num = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(vec![
        Row {
            figure: format!(
                "receiving tab's renderer RSS, peak during a {mib} MiB download ({:.0} MiB before it; {:.1} MB/s)",
                num("base_rss_mib"),
                mib as f64 * 1.048_576 / num("seconds")
            ),
            ours: num("peak_rss_mib"),
            baseline: 256.0,
            unit: "MiB",
            goal: "< 256 MiB".into(),
        },
        Row {
            figure: format!(
                "the same, against a raw RTCDataChannel receiver writing each message to OPFS \
                 (fresh browsers, same bytes; {:.0} MiB before it; {:.1} MB/s)",
                num("raw_base_rss_mib"),
                mib as f64 * 1.048_576 / num("raw_seconds")
            ),
            ours: num("peak_rss_mib"),
            baseline: num("raw_peak_rss_mib"),
            unit: "MiB",
            goal: "(for reference)".into(),
        },
        Row {
            figure: format!(
                "the same in Firefox: its tab's content process RSS, peak ({:.0} MiB before it; {:.1} MB/s)",
                num("firefox_base_rss_mib"),
                mib as f64 * 1.048_576 / num("firefox_seconds")
            ),
            ours: num("firefox_peak_rss_mib"),
            baseline: 256.0,
            unit: "MiB",
            goal: "< 256 MiB".into(),
        },
        Row {
            figure: "Chromium's wasm memory, peak".into(),
            ours: num("peak_wasm_mib"),
            baseline: 256.0,
            unit: "MiB",
            goal: "".into(),
        },
        Row {
            figure: "Chromium's JS heap (performance.memory: counts the untouched buffers that \
                     make the collector run sooner — address space, not memory), peak"
                .into(),
            ours: num("peak_js_mib"),
            baseline: 256.0,
            unit: "MiB",
            goal: "".into(),
        },
        Row {
            figure: format!(
                "sharing tab's renderer RSS, peak while it serves that download ({:.0} MiB before it)",
                num("sender_base_rss_mib"),
            ),
            ours: num("sender_peak_rss_mib"),
            baseline: 256.0,
            unit: "MiB",
            goal: "< 256 MiB".into(),
        },
    ])
}
