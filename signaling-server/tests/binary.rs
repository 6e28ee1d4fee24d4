//! The `swarmdrop-signal` binary itself: flags, the listening line, SIGTERM → going away, and
//! logs that never carry signal payloads.

mod common;

use common::{expect_close, join, recv, send, WAIT};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use swarmdrop::signal::ServerMessage;

const BIN: &str = env!("CARGO_BIN_EXE_swarmdrop-signal");

#[test]
fn help_documents_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--www",
        "--pkg",
        "--log",
        "--ice-server",
        "--turn-secret",
        "--turn-ttl",
        "--max-frame",
        "--max-signal",
        "--rate",
        "--burst",
        "--max-room-peers",
        "--max-rooms",
        "--max-connections",
        "--max-connections-per-ip",
        "--join-timeout",
        "--ping-interval",
        "--idle-timeout",
        "--send-queue",
        "--write-timeout",
        "--allow-origin",
        "--shutdown-grace",
        "--redis",
        "--redis-prefix",
        "--redis-heartbeat",
        "--redis-ttl",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn bad_flags_and_taken_ports_are_clear_errors() {
    let out = Command::new(BIN).args(["--rate=0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));
}

#[tokio::test]
async fn sigterm_closes_peers_with_going_away_and_logs_no_payloads() {
    let (config, dir) = common::config(&[]);
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--log", "trace", "--www"])
        .arg(&config.www)
        .arg("--pkg")
        .arg(&config.pkg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("swarmdrop-signal listening on http://")
        .expect("listening line")
        .trim_end_matches('/')
        .to_string();
    let ws_url = format!("ws://{url}/ws");
    let (mut a, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let (a_id, _) = join(&mut a, "secret-room").await;
    join(&mut b, "secret-room").await;
    const SECRET: &str = "v=0 o=- 4611731400430051336 SECRET-SDP-PAYLOAD";
    send(
        &mut b,
        &format!(r#"{{"type":"signal","to":"{a_id}","data":"{SECRET}"}}"#),
    )
    .await;
    loop {
        if let ServerMessage::Signal { data, .. } = recv(&mut a).await {
            assert!(data.get().contains("SECRET-SDP-PAYLOAD"));
            break;
        }
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    expect_close(&mut a, 1001).await;
    expect_close(&mut b, 1001).await;
    let deadline = std::time::Instant::now() + WAIT;
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "server did not exit");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    stdout.read_to_string(&mut logs).unwrap();
    assert!(logs.contains("shutting down"), "logs: {logs}");
    assert!(
        !logs.contains("SECRET-SDP-PAYLOAD"),
        "a payload reached the logs:\n{logs}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
