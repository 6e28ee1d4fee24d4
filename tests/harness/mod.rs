//! The E2E harness: the real signaling server, chromedriver and geckodriver on free loopback
//! ports, and headless browsers in separate processes with fresh profiles. Every process is
//! started in its own process group and killed with it on drop, so a failing test leaves
//! nothing behind.
#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process (and its process group) killed on drop.
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The whole group: a driver's browser dies with it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("harness: stopped {}", self.name);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The signaling server, serving `www/` and `pkg/`.
pub struct Server {
    pub url: String,
    _proc: Proc,
}

impl Server {
    /// Starts the server binary (`SWARMDROP_SERVER_BIN`, set by `cargo xtask test`) on a free
    /// loopback port, with `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        let bin = std::env::var_os("SWARMDROP_SERVER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target/debug/swarmdrop-signal"));
        assert!(
            bin.exists(),
            "no server binary at {}; run the E2E suite with `cargo xtask test --only e2e`",
            bin.display()
        );
        let pkg = root().join("pkg");
        assert!(
            pkg.join("swarmdrop.js").exists(),
            "no wasm package in pkg/; run the E2E suite with `cargo xtask test --only e2e`"
        );
        let mut cmd = Command::new(&bin);
        cmd.args(["--listen", "127.0.0.1:0", "--log", "warn", "--www"])
            .arg(root().join("www"))
            .arg("--pkg")
            .arg(&pkg)
            .args(extra)
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn("signaling server", &mut cmd);
        let stdout = proc.child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .expect("server stdout");
            if let Some(url) = line.strip_prefix("swarmdrop-signal listening on ") {
                break url.trim_end_matches('/').to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { url, _proc: proc }
    }
}

/// A `redis-server` on a free loopback port, without persistence.
pub struct Redis {
    pub url: String,
    _proc: Proc,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let proc = Proc::spawn(
            "redis-server",
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null()),
        );
        wait_for_port(port, "redis-server");
        Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            _proc: proc,
        }
    }
}

/// Which browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Browser {
    Chromium,
    Firefox,
}

/// A WebDriver session in its own browser process, with its driver.
pub struct Session {
    pub client: Client,
    pub browser: Browser,
    _profile: TempDir,
    _driver: Proc,
}

/// A temporary folder removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "swarmdrop-e2e-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The browser settings from webdriver.json, so E2E and wasm-pack tests run browsers alike.
fn webdriver_json() -> Value {
    let text = std::fs::read_to_string(root().join("webdriver.json")).expect("webdriver.json");
    serde_json::from_str(&text).expect("webdriver.json is JSON")
}

impl Session {
    /// Starts the driver on a free port and opens a headless browser with a fresh profile.
    pub async fn start(browser: Browser) -> Session {
        Session::start_with_prefs(browser, &[]).await
    }

    /// Like [`Session::start`], with more Firefox preferences (`prefs`; Chromium ignores them).
    pub async fn start_with_prefs(browser: Browser, extra: &[(&str, Value)]) -> Session {
        let port = free_port();
        let profile = TempDir::new(match browser {
            Browser::Chromium => "chromium",
            Browser::Firefox => "firefox",
        });
        let shared = webdriver_json();
        let mut caps = Map::new();
        let driver = match browser {
            Browser::Chromium => {
                let mut args: Vec<Value> = shared["goog:chromeOptions"]["args"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                args.extend([
                    json!("--headless=new"),
                    json!("--no-sandbox"),
                    json!("--disable-dev-shm-usage"),
                    json!(format!("--user-data-dir={}", profile.path().display())),
                ]);
                caps.insert(
                    "goog:chromeOptions".into(),
                    json!({ "args": args, "binary": "/usr/bin/chromium" }),
                );
                Proc::spawn(
                    "chromedriver",
                    Command::new("chromedriver")
                        .arg(format!("--port={port}"))
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                )
            }
            Browser::Firefox => {
                let mut prefs = shared["moz:firefoxOptions"]["prefs"].clone();
                for (k, v) in extra {
                    prefs[*k] = v.clone();
                }
                let mut opts = json!({
                    "args": ["-headless", "-profile", profile.path().to_str().expect("utf-8 path")],
                    "prefs": prefs,
                });
                if Path::new("/usr/bin/firefox-esr").exists() {
                    opts["binary"] = json!("/usr/bin/firefox-esr");
                }
                caps.insert("moz:firefoxOptions".into(), opts);
                Proc::spawn(
                    "geckodriver",
                    Command::new("geckodriver")
                        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                )
            }
        };
        wait_for_port(port, "the WebDriver server");
        let client = ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("starting {browser:?}: {e}"));
        Session {
            client,
            browser,
            _profile: profile,
            _driver: driver,
        }
    }

    /// Waits until the element `css` has `data-state` equal to `state`; returns its text.
    pub async fn wait_state(&self, css: &str, state: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                let now = el.attr("data-state").await.ok().flatten();
                if now.as_deref() == Some(state) {
                    return el.text().await.unwrap_or_default();
                }
                if Instant::now() > deadline {
                    let text = el.text().await.unwrap_or_default();
                    panic!(
                        "{:?}: {css} is {now:?} ({text:?}), not {state:?} after {within:?}",
                        self.browser
                    );
                }
            } else if Instant::now() > deadline {
                panic!("{:?}: no element {css}", self.browser);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element `css` exists with non-empty text; returns it.
    pub async fn wait_text(&self, css: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                let text = el.text().await.unwrap_or_default();
                if !text.trim().is_empty() {
                    return text;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{:?}: no text in {css} after {within:?}",
                self.browser
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the text of `css` contains `needle`.
    pub async fn wait_text_containing(&self, css: &str, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?}: {css} never contained {needle:?}; it reads {text:?}",
                self.browser
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page lists peer `id` as connected; returns the CSS selector of its row.
    pub async fn wait_connected_to(&self, id: &str) -> String {
        let row = format!("li[data-peer=\"{id}\"]");
        self.wait_state(
            &format!("{row} .state"),
            "connected",
            Duration::from_secs(20),
        )
        .await;
        row
    }

    /// Types `text` into the chat box and sends it.
    pub async fn chat(&self, text: &str) {
        let input = self
            .client
            .find(Locator::Css("#chat-input"))
            .await
            .expect("chat input");
        input.send_keys(text).await.expect("type");
        self.client
            .find(Locator::Css("#chat-form button"))
            .await
            .expect("send button")
            .click()
            .await
            .expect("click send");
    }

    /// The text of the element `css`.
    pub async fn text(&self, css: &str) -> String {
        // Found and read in one script: a page that draws a list again on every change may
        // replace the element between a WebDriver find and its read.
        let found = self
            .client
            .execute(
                "return document.querySelector(arguments[0])?.innerText ?? null",
                vec![json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("{:?}: {css}: {e}", self.browser));
        match found {
            Value::String(text) => text,
            _ => panic!("{:?}: no element {css}", self.browser),
        }
    }

    /// The browser's profile folder (it appears in the browser processes' command lines).
    pub fn profile(&self) -> &Path {
        self._profile.path()
    }

    /// Ends the browser session (the process group is killed on drop in any case).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// Opens the page at `url` in `s` and waits until it has joined its room.
pub async fn open(s: &Session, url: &str) {
    s.client.goto(url).await.expect("open the page");
    s.wait_state("#signal-state", "open", Duration::from_secs(20))
        .await;
}

/// Runs `script` (a function body) in the page; its result as JSON. Panics if it throws.
pub async fn js(s: &Session, script: &str) -> Value {
    s.client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{:?}: {script}: {e}", s.browser))
}

/// Runs `script` in the page every 100 ms until it returns `want`; panics after `within`,
/// saying `what` was awaited and what the script last returned.
pub async fn wait_js(s: &Session, script: &str, want: Value, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let got = js(s, script).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: {what}: still {got} after {within:?}",
            s.browser
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Chromium page and a Firefox page of the app in `room`, each connected to the other.
pub async fn connected_pair(server: &Server, room: &str) -> (Session, Session) {
    let (chromium, firefox) = tokio::join!(
        Session::start(Browser::Chromium),
        Session::start(Browser::Firefox)
    );
    let link = format!("{}/#room={room}", server.url);
    open(&firefox, &link).await;
    open(&chromium, &link).await;
    let id = chromium
        .wait_text("#peer-id", Duration::from_secs(10))
        .await;
    firefox.wait_connected_to(&id).await;
    (chromium, firefox)
}

/// Runs `expr` (an expression giving a promise, e.g. a `bench.*` call in the benchmark page)
/// in the page; its result as JSON. Panics with the page's error if it rejects.
pub async fn call(s: &Session, expr: String) -> Value {
    try_call(s, expr).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`call`], with the page's error (or WebDriver's) as an `Err`.
pub async fn try_call(s: &Session, expr: String) -> Result<Value, String> {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         ({expr}).then(done, e => done({{ error: String(e && e.message || e) }}));"
    );
    let v = s
        .client
        .execute_async(&script, vec![])
        .await
        .map_err(|e| format!("{:?}: {expr}: {e}", s.browser))?;
    match v.get("error") {
        Some(_) => Err(format!("{:?}: {expr}: {v}", s.browser)),
        None => Ok(v),
    }
}

/// One raw transfer (the bench page's `rawSend`/`rawReceive`, e.g. [`raw_transfer`]) in a room
/// named after `room`, run by `run(room)`, which gives something of its own (CPU time, say) and
/// both sides' results: its own and the receiver's result. A raw connection that does not come up, or whose first
/// message is lost (each seen about once in a few hundred rounds; the page then says "not
/// connected" and closes both sides), is tried again in a new room, twice at most, so one such
/// round does not end the run; any other failure panics with both sides' errors.
pub async fn raw_round<T, F, Fut>(room: &str, mut run: F) -> (T, Value)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = (T, Result<Value, String>, Result<Value, String>)>,
{
    let mut attempt = 0;
    loop {
        let (extra, sent, recv) = run(format!("{room}-{attempt}")).await;
        match (sent, recv) {
            (Ok(_), Ok(recv)) => return (extra, recv),
            (sent, recv) => {
                let errors: Vec<String> = [sent.err(), recv.err()].into_iter().flatten().collect();
                let not_connected = errors.iter().all(|e| e.contains("not connected"));
                assert!(
                    not_connected && attempt < 2,
                    "raw transfer failed: {}",
                    errors.join("; ")
                );
                eprintln!("raw connection failed, trying again: {}", errors.join("; "));
                attempt += 1;
            }
        }
    }
}

/// The bench page's raw transfer of `size` bytes from `a` to `b` in `room` (with `store`, the
/// receiver also writes each message to OPFS): the sender's and the receiver's results.
pub async fn raw_transfer(
    a: &Session,
    b: &Session,
    room: &str,
    size: u64,
    store: bool,
) -> (Result<Value, String>, Result<Value, String>) {
    tokio::join!(
        try_call(a, format!("bench.rawSend('{room}', {size})")),
        try_call(b, format!("bench.rawReceive('{room}', {size}, {store})")),
    )
}

/// A fresh browser on the benchmark page (`www/bench/`), allowed long-running scripts (large
/// transfers): 900 s, or `SWARMDROP_BENCH_SCRIPT_SECS` (quick runs fail fast if anything hangs).
pub async fn bench_page(server: &Server, browser: Browser) -> Session {
    let s = Session::start(browser).await;
    let secs = std::env::var("SWARMDROP_BENCH_SCRIPT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(900);
    s.client
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(secs)),
            Some(Duration::from_secs(60)),
            Some(Duration::from_secs(0)),
        ))
        .await
        .expect("timeouts");
    s.client
        .goto(&format!("{}/bench/#room=bench", server.url))
        .await
        .expect("bench page");
    s
}

/// A Chrome DevTools Protocol command, through ChromeDriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.0, "params": self.1 });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Runs Chrome DevTools Protocol command `cmd` in a Chromium session; its result.
pub async fn cdp(s: &Session, cmd: &'static str, params: Value) -> Value {
    s.client
        .clone()
        .issue_cmd(Cdp(cmd, params))
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}
