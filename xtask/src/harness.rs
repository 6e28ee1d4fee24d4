//! A signaling server for the browser suites, with a restart endpoint the tests call
//! (`GET /restart` on the control port: stop the server, wait, start it again on the same port).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The running server and its control endpoint; both stop on drop.
pub struct TestSignal {
    /// `ws://127.0.0.1:PORT/ws`
    pub url: String,
    /// `http://127.0.0.1:PORT` of the control endpoint.
    pub control: String,
    child: Arc<Mutex<Option<Child>>>,
}

fn spawn(bin: &Path, port: u16, extra: &[String]) -> Result<Child, String> {
    let child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log", "warn"])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "the test signaling server did not listen on {port}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl TestSignal {
    /// Starts `bin` with `extra` flags on a free loopback port and the control endpoint on
    /// another.
    pub fn start(bin: PathBuf, extra: Vec<String>) -> Result<TestSignal, String> {
        let port = free_port()?;
        let child = Arc::new(Mutex::new(Some(spawn(&bin, port, &extra)?)));
        let control = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let control_addr = control.local_addr().map_err(|e| e.to_string())?;
        let c = Arc::clone(&child);
        std::thread::spawn(move || {
            for stream in control.incoming().flatten() {
                if Self::serve_control(stream, &c, &bin, port, &extra).is_err() {
                    break;
                }
            }
        });
        Ok(TestSignal {
            url: format!("ws://127.0.0.1:{port}/ws"),
            control: format!("http://{control_addr}"),
            child,
        })
    }

    fn serve_control(
        mut stream: TcpStream,
        child: &Mutex<Option<Child>>,
        bin: &Path,
        port: u16,
        extra: &[String],
    ) -> Result<(), String> {
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let (status, body) = if line.starts_with("GET /restart ") {
            let mut guard = child.lock().map_err(|_| "poisoned")?;
            if let Some(mut c) = guard.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            // Long enough for every client to notice and start backing off.
            std::thread::sleep(Duration::from_millis(1500));
            match spawn(bin, port, extra) {
                Ok(c) => {
                    *guard = Some(c);
                    ("200 OK", "restarted\n".to_string())
                }
                Err(e) => ("500 Internal Server Error", format!("{e}\n")),
            }
        } else {
            ("404 Not Found", "GET /restart\n".to_string())
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(resp.as_bytes());
        Ok(())
    }
}

impl Drop for TestSignal {
    fn drop(&mut self) {
        if let Ok(mut g) = self.child.lock() {
            if let Some(mut c) = g.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A coturn TURN server on loopback with a REST-API secret (`use-auth-secret`); stops on drop.
pub struct Turn {
    /// `turn:127.0.0.1:PORT`
    pub url: String,
    /// The shared secret the signaling server mints credentials with.
    pub secret: String,
    child: Child,
}

impl Turn {
    /// Starts `turnserver` on a free loopback port, relaying on loopback.
    pub fn start() -> Result<Turn, String> {
        let port = free_port()?;
        let secret = format!("swarmdrop-test-{}", std::process::id());
        let relay_lo = 49152 + (port % 1000) * 10;
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--listening-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--relay-ip=127.0.0.1",
                &format!("--min-port={relay_lo}"),
                &format!("--max-port={}", relay_lo + 9),
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                "--realm=swarmdrop.test",
                "--allow-loopback-peers",
                "--fingerprint",
                "--log-file=stdout",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting turnserver: {e}"))?;
        // turnserver listens on UDP and TCP; TCP tells when it is up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
            if Instant::now() > deadline {
                return Err(format!("turnserver did not listen on {port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Turn {
            url: format!("turn:127.0.0.1:{port}"),
            secret,
            child,
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
