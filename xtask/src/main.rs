//! `cargo xtask serve | test | bench`: the project's two README commands and its benchmarks.
//!
//! Every tool is installed from the package registries only (crates.io, Debian, npm), each step
//! idempotent: a tool that is present at the right version is left alone.

mod bench;
mod harness;
mod tools;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  serve [--host H] [--port P]   build the wasm package (release) and run the server (default 127.0.0.1:8080)
  test [--only SUITE]           every check and test suite, both browsers; SUITE is one of
                                fmt, clippy, native, chrome, firefox, e2e, types, bench
  bench [NAME] [--quick]        benchmarks; NAME is one of: size, signal, join, files,
                                transfer, webtorrent, memory
  install                       only install the tools the other commands need
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("install") => tools::ensure(tools::Need::All)
            .and_then(|_| tools::typescript())
            .and_then(|_| tools::webtorrent().map(|_| ())),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// A command run from the workspace root with the tool PATH.
pub fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(root()).env("PATH", tools::path());
    c
}

/// A folder for one suite's temporary files (its `TMPDIR`), removed when dropped. Browsers ended
/// by their drivers at the end of a run leave their profiles there — chromedriver's
/// `org.chromium.Chromium.scoped_dir.*`, some 40 MB each, several a run — and a machine that
/// runs the suites often would fill its disk with them. Not nested: a run inside one (the quick
/// benches under `test`) keeps it, since Chromium puts its singleton socket under `TMPDIR` and
/// fails to start where that path passes the 107 bytes a socket's path may have.
pub struct Scratch(Option<PathBuf>);

/// Set for what runs inside a [`Scratch`].
const SCRATCH_ENV: &str = "SWARMDROP_XTASK_SCRATCH";

impl Scratch {
    pub fn new(name: &str) -> Result<Scratch, String> {
        if std::env::var_os(SCRATCH_ENV).is_some() {
            return Ok(Scratch(None));
        }
        let dir =
            std::env::temp_dir().join(format!("swarmdrop-xtask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(Some(dir)))
    }

    /// Runs `c` with its temporary files here.
    pub fn hold(&self, c: &mut Command) {
        if let Some(dir) = &self.0 {
            c.env("TMPDIR", dir).env(SCRATCH_ENV, "1");
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The trimmed stdout of a tool run from the root, if it succeeds.
pub fn tools_output(program: &str, args: &[&str]) -> Option<String> {
    let out = cmd(program, args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `c`, failing with `what` if it does not succeed.
pub fn run(what: &str, c: &mut Command) -> Result<(), String> {
    let status = c
        .status()
        .map_err(|e| format!("{what}: could not start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn flag_value(args: &[String], name: &str) -> Result<Option<String>, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("{name} needs a value")),
        None => Ok(None),
    }
}

/// Builds the wasm package for the browser (`pkg/`, `--target web`, release, wasm-opt).
pub fn build_pkg() -> Result<(), String> {
    run(
        "wasm-pack build",
        cmd(
            "wasm-pack",
            &["build", "--target", "web", "--release", "--out-dir", "pkg"],
        )
        .env("WASM_PACK_CACHE", tools::cache_dir().join("wasm-pack")),
    )
}

/// Builds the signaling server and returns its binary.
pub fn build_server(release: bool) -> Result<PathBuf, String> {
    let mut args = vec!["build", "--package", "swarmdrop-signal"];
    if release {
        args.push("--release");
    }
    run("building the signaling server", &mut cmd("cargo", &args))?;
    let profile = if release { "release" } else { "debug" };
    Ok(root().join("target").join(profile).join("swarmdrop-signal"))
}

fn serve(args: &[String]) -> Result<(), String> {
    let host = flag_value(args, "--host")?.unwrap_or_else(|| "127.0.0.1".into());
    let port = flag_value(args, "--port")?.unwrap_or_else(|| "8080".into());
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--port {port}: not a port number"))?;
    let listen = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    tools::ensure(tools::Need::Build)?;
    build_pkg()?;
    let server = build_server(true)?;
    let root = root();
    let mut child = Command::new(&server)
        .args(["--listen", &listen, "--www"])
        .arg(root.join("www"))
        .arg("--pkg")
        .arg(root.join("pkg"))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", server.display()))?;
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(url) = line.strip_prefix("swarmdrop-signal listening on ") {
            println!("\nswarmdrop is running: open {url}\n(Ctrl-C stops it)\n");
        } else {
            println!("{line}");
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the server stopped ({status})"))
    }
}

/// Passed and failed counts of one suite, from the test runners' `test result:` lines.
#[derive(Default, Clone, Copy)]
struct Tally {
    passed: u64,
    failed: u64,
}

fn parse_result_line(line: &str, t: &mut Tally) {
    // A benchmark that ran to the end (`cargo xtask bench --quick` inside the tests).
    if line.starts_with("bench ok: ") {
        t.passed += 1;
        return;
    }
    // "test result: ok. 7 passed; 0 failed; 0 ignored; ..."
    let Some(rest) = line.trim().strip_prefix("test result: ") else {
        return;
    };
    for part in rest.split(';') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let n = words
            .iter()
            .rev()
            .nth(1)
            .and_then(|w| w.parse::<u64>().ok());
        match (n, words.last()) {
            (Some(n), Some(&"passed")) => t.passed += n,
            (Some(n), Some(&"failed")) => t.failed += n,
            _ => {}
        }
    }
}

/// Runs `c`, echoing its output, and counts the tests it reports.
fn run_suite(c: &mut Command) -> Result<(bool, Tally), String> {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut t = Tally::default();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            parse_result_line(&line, &mut t);
        }
        t
    });
    let mut tally = Tally::default();
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        println!("{line}");
        parse_result_line(&line, &mut tally);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let e = err_thread.join().unwrap_or_default();
    tally.passed += e.passed;
    tally.failed += e.failed;
    let _ = std::io::stdout().flush();
    Ok((status.success(), tally))
}

struct Suite {
    name: &'static str,
    what: &'static str,
    command: Command,
}

fn suites(tsc: Option<&Path>) -> Vec<Suite> {
    let wasm_cache = tools::cache_dir().join("wasm-pack");
    let browser = |name: &'static str, flag: &str| {
        let mut c = cmd("wasm-pack", &["test", "--headless", flag]);
        c.env("WASM_PACK_CACHE", &wasm_cache)
            .env("WASM_BINDGEN_TEST_TIMEOUT", "180");
        Suite {
            name,
            what: if name == "chrome" {
                "wasm-pack test --headless --chrome"
            } else {
                "wasm-pack test --headless --firefox"
            },
            command: c,
        }
    };
    vec![
        Suite {
            name: "fmt",
            what: "cargo fmt --check",
            command: cmd("cargo", &["fmt", "--all", "--check"]),
        },
        Suite {
            name: "clippy",
            what: "cargo clippy (native)",
            command: cmd(
                "cargo",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        },
        Suite {
            name: "clippy",
            what: "cargo clippy (wasm32)",
            command: cmd(
                "cargo",
                &[
                    "clippy",
                    "--package",
                    "swarmdrop",
                    "--target",
                    "wasm32-unknown-unknown",
                    "--lib",
                    "--tests",
                    "--",
                    "-D",
                    "warnings",
                ],
            ),
        },
        Suite {
            name: "native",
            what: "cargo test --workspace",
            command: {
                // The property tests draw the same cases in every run of the suite (unless a
                // seed is given), so a red run means a change, not a newly drawn case; plain
                // `cargo test` draws new ones each time (where new cases are found).
                let mut c = cmd("cargo", &["test", "--workspace"]);
                let seed = std::env::var("PROPTEST_RNG_SEED").unwrap_or_else(|_| "20261206".into());
                c.env("PROPTEST_RNG_SEED", seed);
                c
            },
        },
        browser("chrome", "--chrome"),
        browser("firefox", "--firefox"),
        Suite {
            name: "e2e",
            what: "E2E (Chromium and Firefox, separate processes)",
            command: cmd(
                "cargo",
                &[
                    "test",
                    "--package",
                    "swarmdrop",
                    "--features",
                    "e2e",
                    "--test",
                    "e2e_page",
                    "--test",
                    "e2e_files",
                    "--test",
                    "e2e_redis",
                ],
            ),
        },
        Suite {
            name: "types",
            what: "tsc: tests/types.ts against pkg/swarmdrop.d.ts",
            command: {
                // (Only run where `tsc` was installed: `test` asks for it with this suite.)
                let mut c = cmd("node", &[]);
                c.arg(tsc.unwrap_or(Path::new("tsc")))
                    .args(["--project", "tests/tsconfig.json"]);
                c
            },
        },
        Suite {
            name: "bench",
            what: "cargo xtask bench --quick (they run; figures not judged)",
            command: {
                let exe = std::env::current_exe().unwrap_or_else(|_| "xtask".into());
                let mut c = std::process::Command::new(exe);
                c.args(["bench", "--quick"])
                    .current_dir(root())
                    .env("PATH", tools::path());
                c
            },
        },
    ]
}

fn test(args: &[String]) -> Result<(), String> {
    let only = flag_value(args, "--only")?;
    let names = [
        "fmt", "clippy", "native", "chrome", "firefox", "e2e", "types", "bench",
    ];
    if let Some(o) = &only {
        if !names.contains(&o.as_str()) {
            return Err(format!("--only {o}: one of {}", names.join(", ")));
        }
    }
    let wanted = |n: &str| only.as_deref().is_none_or(|o| o == n);
    let need = if wanted("chrome") || wanted("firefox") || wanted("e2e") {
        tools::Need::All
    } else if wanted("bench") || wanted("types") {
        tools::Need::Build
    } else {
        tools::Need::Rust
    };
    tools::ensure(need)?;
    let tsc = if wanted("types") {
        Some(tools::typescript()?)
    } else {
        None
    };
    let started = Instant::now();
    if wanted("e2e") || wanted("types") {
        build_pkg()?;
    }
    let browsers = wanted("chrome") || wanted("firefox") || wanted("e2e");
    let server = if browsers {
        Some(build_server(false)?)
    } else {
        None
    };
    // The browser suites talk to a real server, which their tests may restart.
    let signal = match &server {
        Some(bin) if wanted("chrome") || wanted("firefox") => {
            Some(harness::TestSignal::start(bin.clone(), Vec::new())?)
        }
        _ => None,
    };
    // And a second server handing out credentials for a local coturn, for the relay test.
    let turn = match signal {
        Some(_) => Some(harness::Turn::start()?),
        None => None,
    };
    let turn_signal = match (&server, &turn) {
        (Some(bin), Some(turn)) => Some(harness::TestSignal::start(
            bin.clone(),
            vec![
                "--ice-server".into(),
                turn.url.clone(),
                "--turn-secret".into(),
                turn.secret.clone(),
            ],
        )?),
        _ => None,
    };
    let mut total = Tally::default();
    let mut report = Vec::new();
    for mut suite in suites(tsc.as_deref()) {
        if !wanted(suite.name) {
            continue;
        }
        if let Some(server) = &server {
            suite.command.env("SWARMDROP_SERVER_BIN", server);
        }
        if let Some(signal) = &signal {
            suite
                .command
                .env("SWARMDROP_SIGNAL_URL", &signal.url)
                .env("SWARMDROP_CONTROL_URL", &signal.control);
        }
        if let Some(turn_signal) = &turn_signal {
            suite
                .command
                .env("SWARMDROP_TURN_SIGNAL_URL", &turn_signal.url);
        }
        println!("\n==> {}", suite.what);
        let t0 = Instant::now();
        let scratch = Scratch::new(suite.name)?;
        scratch.hold(&mut suite.command);
        let (ok, tally) =
            run_suite(&mut suite.command).map_err(|e| format!("{}: {e}", suite.what))?;
        drop(scratch);
        total.passed += tally.passed;
        total.failed += tally.failed;
        report.push(format!(
            "  {:<48} {:>4} passed, {:>3} failed  {:>6.1}s  {}",
            suite.what,
            tally.passed,
            tally.failed,
            t0.elapsed().as_secs_f64(),
            if ok { "ok" } else { "FAILED" }
        ));
        if !ok {
            // A failed check (fmt, clippy) or a runner that died counts as one failure.
            if tally.failed == 0 {
                total.failed += 1;
            }
            print_summary(&report, total, started);
            return Err(format!("{} failed; stopping here", suite.what));
        }
    }
    print_summary(&report, total, started);
    Ok(())
}

fn print_summary(report: &[String], total: Tally, started: Instant) {
    println!("\n==> summary ({:.0}s)", started.elapsed().as_secs_f64());
    for line in report {
        println!("{line}");
    }
    println!("{} passed, {} failed", total.passed, total.failed);
}
