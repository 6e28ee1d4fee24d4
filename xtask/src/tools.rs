//! Installs what the commands need, from the package registries only, each step idempotent.

use crate::{root, run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a command needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Rust only (fmt, clippy, native tests): the wasm32 target for clippy.
    Rust,
    /// Building the wasm package: wasm-pack, wasm-bindgen CLI, wasm-opt.
    Build,
    /// Everything, browsers and drivers included.
    All,
}

/// The npm binaryen release whose wasm-opt emits wasm that loads (Debian's 108 does not).
const BINARYEN: &str = "132.0.0";
/// The geckodriver release verified here.
const GECKODRIVER: &str = "0.37.1";
/// The WebTorrent release (and its tracker) of the `webtorrent` benchmark.
const WEBTORRENT: &str = "3.0.21";
const BITTORRENT_TRACKER: &str = "11.2.3";
/// The TypeScript release that checks `tests/types.ts` against the package's `swarmdrop.d.ts`.
const TYPESCRIPT: &str = "5.9.3";

/// Where downloaded tools live between runs and clones: `$SWARMDROP_TOOLS` or
/// `~/.cache/swarmdrop`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWARMDROP_TOOLS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    home.join(".cache").join("swarmdrop")
}

fn binaryen_bin() -> PathBuf {
    cache_dir()
        .join("binaryen")
        .join("node_modules")
        .join(".bin")
}

fn cargo_bin() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(h) => PathBuf::from(h).join("bin"),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".cargo")
            .join("bin"),
    }
}

/// PATH for child processes: npm's wasm-opt first, then cargo's binaries, then the rest.
pub fn path() -> std::ffi::OsString {
    let mut dirs = vec![binaryen_bin(), cargo_bin()];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// The stdout of `program args`, if it runs and succeeds.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .env("PATH", path())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program --version` runs.
pub fn have(program: &str) -> bool {
    runs(program, "--version")
}

/// Whether `program arg` runs and succeeds.
pub fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .env("PATH", path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The wasm-bindgen version in Cargo.lock, which the CLI must match exactly.
fn locked_wasm_bindgen() -> Result<String, String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(v.trim_end_matches('"').to_string());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen entry (run `cargo generate-lockfile`)".into())
}

fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|s| s.trim() == "0")
}

fn step(what: &str) {
    println!("xtask: installing {what}");
}

/// Installs whatever `need` asks for and is missing.
pub fn ensure(need: Need) -> Result<(), String> {
    let targets = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !targets
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        step("the wasm32-unknown-unknown target");
        run(
            "rustup target add",
            Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]),
        )?;
    }
    let has_clippy = output("cargo", &["clippy", "--version"]).is_some();
    let has_fmt = output("cargo", &["fmt", "--version"]).is_some();
    if !has_clippy || !has_fmt {
        step("clippy and rustfmt");
        run(
            "rustup component add",
            Command::new("rustup").args(["component", "add", "clippy", "rustfmt"]),
        )?;
    }
    if need == Need::Rust {
        return Ok(());
    }

    if !have("wasm-pack") {
        step("wasm-pack (cargo install, a few minutes)");
        run(
            "cargo install wasm-pack",
            Command::new("cargo").args(["install", "wasm-pack"]),
        )?;
    }
    let wb = locked_wasm_bindgen()?;
    let current = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if current.split_whitespace().nth(1) != Some(wb.as_str()) {
        step(&format!(
            "wasm-bindgen-cli {wb} (must equal Cargo.lock; a few minutes)"
        ));
        // Not --locked: its lock file wants a crate version the registry does not serve.
        run(
            "cargo install wasm-bindgen-cli",
            Command::new("cargo").args([
                "install",
                "wasm-bindgen-cli",
                "--version",
                &format!("={wb}"),
                "--force",
            ]),
        )?;
    }
    let opt = binaryen_bin().join("wasm-opt");
    let opt_version =
        output(opt.to_str().unwrap_or("wasm-opt"), &["--version"]).unwrap_or_default();
    if !opt_version.contains(&format!(
        "version {}",
        BINARYEN.split('.').next().unwrap_or("")
    )) {
        step(&format!("wasm-opt (npm binaryen@{BINARYEN})"));
        npm_install(
            &cache_dir().join("binaryen"),
            &[&format!("binaryen@{BINARYEN}")],
            &[],
        )?;
    }
    std::fs::create_dir_all(cache_dir().join("wasm-pack")).map_err(|e| e.to_string())?;
    if need == Need::Build {
        return Ok(());
    }

    let missing: Vec<&str> = [
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
        ("firefox-esr", "firefox-esr"),
        ("turnserver", "coturn"),
        ("redis-server", "redis-server"),
    ]
    .iter()
    .filter(|(bin, _)| output("which", &[bin]).is_none())
    .map(|(_, pkg)| *pkg)
    .collect();
    if !missing.is_empty() {
        let install = format!("apt-get update && apt-get install -y {}", missing.join(" "));
        if !is_root() {
            return Err(format!(
                "browsers or test servers are missing; run as root:\n    {install}\nthen run this command again"
            ));
        }
        step(&missing.join(", "));
        run(
            "apt-get install",
            Command::new("sh").args(["-c", &format!("DEBIAN_FRONTEND=noninteractive {install}")]),
        )?;
    }
    if !have("geckodriver") {
        step("geckodriver (cargo install, a few minutes)");
        run(
            "cargo install geckodriver",
            Command::new("cargo").args(["install", "geckodriver", "--version", GECKODRIVER]),
        )?;
    }
    Ok(())
}

/// `npm install` of `packages` (name@version) into `dir`'s `node_modules`, with `flags`.
fn npm_install(dir: &Path, packages: &[&str], flags: &[&str]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    run(
        &format!("npm install {}", packages.join(" ")),
        Command::new("npm")
            .arg("install")
            .args(flags)
            .args(["--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .args(packages),
    )
}

/// The TypeScript compiler (npm `typescript`), for the `types` suite: installs it if missing
/// and returns its `tsc` script (run with node).
pub fn typescript() -> Result<PathBuf, String> {
    let dir = cache_dir().join("typescript");
    let module = dir.join("node_modules").join("typescript");
    let installed = std::fs::read_to_string(module.join("package.json"))
        .is_ok_and(|t| t.contains(&format!("\"version\": \"{TYPESCRIPT}\"")));
    if !installed {
        step(&format!("typescript@{TYPESCRIPT} (npm)"));
        npm_install(&dir, &[&format!("typescript@{TYPESCRIPT}")], &[])?;
    }
    Ok(module.join("bin").join("tsc"))
}

/// WebTorrent's browser bundle and bittorrent-tracker, from npm, for the `webtorrent` benchmark
/// (`--ignore-scripts`: a preinstall script and a native addon download fail offline, and the
/// browser bundle needs neither). Returns the folder holding `node_modules`.
pub fn webtorrent() -> Result<PathBuf, String> {
    let dir = cache_dir().join("webtorrent");
    let installed = |pkg: &str, version: &str| {
        std::fs::read_to_string(dir.join("node_modules").join(pkg).join("package.json"))
            .is_ok_and(|t| t.contains(&format!("\"version\": \"{version}\"")))
    };
    if !installed("webtorrent", WEBTORRENT) || !installed("bittorrent-tracker", BITTORRENT_TRACKER)
    {
        step(&format!(
            "webtorrent@{WEBTORRENT}, bittorrent-tracker@{BITTORRENT_TRACKER} (npm)"
        ));
        npm_install(
            &dir,
            &[
                &format!("webtorrent@{WEBTORRENT}"),
                &format!("bittorrent-tracker@{BITTORRENT_TRACKER}"),
            ],
            &["--ignore-scripts"],
        )?;
    }
    Ok(dir)
}
