//! `swarmdrop-signal`: run the signaling server. `--help` lists every flag.

use clap::Parser;
use swarmdrop_signal::{serve, Config};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("swarmdrop-signal: --log {}: {e}", config.log);
            return std::process::ExitCode::from(2);
        }
    };
    // tungstenite logs whole frames at trace level: drop those, so no payload reaches a log.
    let no_frames = filter_fn(|meta| {
        !(*meta.level() == tracing::Level::TRACE
            && (meta.target().starts_with("tungstenite")
                || meta.target().starts_with("tokio_tungstenite")))
    });
    // Dependencies that log through the `log` crate (tungstenite: a trace record per frame) reach
    // tracing through a bridge that `init` sets to pass every level; each record then costs a
    // formatted record and a filter check even when dropped (about 10 % of the server's CPU
    // under relay load). Let `log` itself skip what the filter drops; never trace (see above).
    let log_level = match filter.max_level_hint() {
        Some(l) if l == tracing::level_filters::LevelFilter::OFF => log::LevelFilter::Off,
        Some(l) if l == tracing::level_filters::LevelFilter::ERROR => log::LevelFilter::Error,
        Some(l) if l == tracing::level_filters::LevelFilter::WARN => log::LevelFilter::Warn,
        Some(l) if l == tracing::level_filters::LevelFilter::INFO => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_filter(filter)
                .with_filter(no_frames),
        )
        .init();
    log::set_max_level(log_level);
    if let Err(e) = config.validate() {
        eprintln!("swarmdrop-signal: {e}");
        return std::process::ExitCode::from(2);
    }
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!(
                "swarmdrop-signal: {} is already in use; stop what listens there or pick \
                 another port with --listen (or --port with cargo xtask serve)",
                config.listen
            );
            return std::process::ExitCode::from(3);
        }
        Err(e) => {
            eprintln!("swarmdrop-signal: cannot listen on {}: {e}", config.listen);
            return std::process::ExitCode::from(3);
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("swarmdrop-signal: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for (what, dir) in [("--www", &config.www), ("--pkg", &config.pkg)] {
        if !dir.is_dir() {
            tracing::warn!(
                "{what} {} is not a folder; it will serve 404s",
                dir.display()
            );
        }
    }
    // The one line scripts wait for (cargo xtask, the E2E harness): keep its shape.
    println!("swarmdrop-signal listening on http://{addr}/");
    tracing::info!(%addr, "listening");
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: closing peers with going-away");
        let _ = stop_tx.send(true);
    });
    match serve(listener, config, stop_rx).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarmdrop-signal: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
