//! The swarmdrop signaling server: it introduces peers in a room and relays their WebRTC
//! handshakes, then gets out of the way. It keeps nothing but live membership.
//!
//! [`router`] builds the whole service from a [`Config`], so tests run exactly what production
//! runs; [`serve`] runs it on a listener until a shutdown signal, closing every peer with
//! "going away".
#![forbid(unsafe_code)]

pub mod assets;
mod cluster;
mod conn;
mod hub;
pub mod metrics;
mod turn;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use swarmdrop::signal::IceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

pub use cluster::Cluster;
pub use hub::Hub;

/// The Content-Security-Policy of every response: our own scripts and wasm, WebSockets back to
/// this server, nothing else.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    connect-src 'self' ws: wss:; img-src 'self' data: blob:; style-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Bytes a connection reserves for reading frames.
const READ_BUFFER: usize = 2048;
/// Frames are gathered up to this many bytes, or until the writer flushes its batch.
const WRITE_BUFFER: usize = 16 * 1024;

/// Every setting of the server; each is a flag (see `--help`).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "swarmdrop-signal", version, about)]
pub struct Config {
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080", env = "SWARMDROP_LISTEN")]
    pub listen: SocketAddr,
    /// Folder with the page (index.html, app.js, ...).
    #[arg(long, default_value = "www")]
    pub www: PathBuf,
    /// Folder with the built wasm package, served at /pkg/.
    #[arg(long, default_value = "pkg")]
    pub pkg: PathBuf,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, default_value = "info")]
    pub log: String,
    /// STUN/TURN server URL handed to peers; repeat for several.
    #[arg(long = "ice-server", value_name = "URL")]
    pub ice_servers: Vec<String>,
    /// Shared secret of a TURN server (coturn `use-auth-secret`): peers get time-limited
    /// credentials for the `turn:`/`turns:` URLs among --ice-server.
    #[arg(long, env = "SWARMDROP_TURN_SECRET")]
    pub turn_secret: Option<String>,
    /// Lifetime of minted TURN credentials, in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub turn_ttl: u64,
    /// Largest WebSocket frame accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_frame: usize,
    /// Largest `data` of a `signal` frame relayed, in bytes.
    #[arg(long, default_value_t = 32 * 1024)]
    pub max_signal: usize,
    /// Sustained messages per second a connection may send.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Messages a connection may send in a burst above the rate.
    #[arg(long, default_value_t = 200.0)]
    pub burst: f64,
    /// Most peers in one room.
    #[arg(long, default_value_t = 100)]
    pub max_room_peers: usize,
    /// Most rooms at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_rooms: usize,
    /// Most WebSocket connections at once.
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// Most WebSocket connections at once from one IP address.
    #[arg(long, default_value_t = 64)]
    pub max_connections_per_ip: usize,
    /// Seconds a new connection has to send `join`.
    #[arg(long, default_value_t = 10.0)]
    pub join_timeout: f64,
    /// Seconds between pings to each client.
    #[arg(long, default_value_t = 20.0)]
    pub ping_interval: f64,
    /// Seconds without any frame from a client (pongs count) before it is dropped.
    #[arg(long, default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Frames queued for one client before it counts as too slow and is dropped.
    #[arg(long, default_value_t = 256)]
    pub send_queue: usize,
    /// Seconds one write to a client may take before it counts as too slow and is dropped.
    #[arg(long, default_value_t = 10.0)]
    pub write_timeout: f64,
    /// Allowed `Origin` of WebSocket requests; repeat for several. None: any origin.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Seconds to wait for peers to close on shutdown.
    #[arg(long, default_value_t = 5.0)]
    pub shutdown_grace: f64,
    /// Share rooms with other instances through this Redis (`redis://host:port/db`). Without
    /// it, the instance is on its own and needs nothing else.
    #[arg(long, value_name = "URL", env = "SWARMDROP_REDIS")]
    pub redis: Option<String>,
    /// Prefix of every Redis key and channel (several deployments may share one Redis).
    #[arg(long, default_value = "swarmdrop:")]
    pub redis_prefix: String,
    /// Seconds between this instance's heartbeats (and checks for dead instances).
    #[arg(long, default_value_t = 1.0)]
    pub redis_heartbeat: f64,
    /// Seconds without a heartbeat after which an instance counts as dead and its peers leave.
    #[arg(long, default_value_t = 5.0)]
    pub redis_ttl: f64,
}

impl Default for Config {
    fn default() -> Self {
        <Config as clap::Parser>::parse_from(["swarmdrop-signal"])
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A flag's value is unusable.
    #[error("invalid setting: {0}")]
    Config(String),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Config {
    /// Checks the values that clap cannot.
    pub fn validate(&self) -> Result<(), ServerError> {
        let positive = [
            ("--rate", self.rate),
            ("--burst", self.burst),
            ("--join-timeout", self.join_timeout),
            ("--ping-interval", self.ping_interval),
            ("--idle-timeout", self.idle_timeout),
            ("--write-timeout", self.write_timeout),
            ("--redis-heartbeat", self.redis_heartbeat),
            ("--redis-ttl", self.redis_ttl),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(ServerError::Config(format!(
                    "{name} must be a positive number"
                )));
            }
        }
        if !(self.shutdown_grace.is_finite() && self.shutdown_grace >= 0.0) {
            return Err(ServerError::Config("--shutdown-grace must be >= 0".into()));
        }
        for (name, v) in [
            ("--max-frame", self.max_frame),
            ("--max-signal", self.max_signal),
            ("--max-room-peers", self.max_room_peers),
            ("--max-rooms", self.max_rooms),
            ("--max-connections", self.max_connections),
            ("--max-connections-per-ip", self.max_connections_per_ip),
            ("--send-queue", self.send_queue),
        ] {
            if v == 0 {
                return Err(ServerError::Config(format!("{name} must be at least 1")));
            }
        }
        for url in &self.ice_servers {
            if !["stun:", "turn:", "turns:"]
                .iter()
                .any(|p| url.starts_with(p))
            {
                return Err(ServerError::Config(format!(
                    "--ice-server {url}: must start with stun:, turn: or turns:"
                )));
            }
        }
        if let Some(url) = &self.redis {
            redis::Client::open(url.as_str())
                .map_err(|e| ServerError::Config(format!("--redis {url}: {e}")))?;
        }
        if self.redis_ttl < 2.0 * self.redis_heartbeat {
            return Err(ServerError::Config(
                "--redis-ttl must be at least twice --redis-heartbeat".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn secs(v: f64) -> Duration {
        Duration::from_secs_f64(v)
    }

    /// The ICE servers for one peer, with fresh TURN credentials when a secret is set.
    pub(crate) fn ice_servers_for(&self, peer: &str, now_unix: u64) -> Vec<IceServer> {
        turn::ice_servers(
            &self.ice_servers,
            self.turn_secret.as_deref(),
            self.turn_ttl,
            peer,
            now_unix,
        )
    }
}

/// Shared state of a running server.
pub struct AppState {
    /// The settings.
    pub config: Config,
    /// Rooms and connections.
    pub hub: Hub,
    /// Counters for /metrics.
    pub metrics: metrics::Metrics,
    /// The Redis side, with `--redis`.
    pub cluster: Option<Arc<Cluster>>,
    /// The package's `.wasm` and `.js`, compressed once per version.
    assets: assets::Compressed,
    shutdown: watch::Receiver<bool>,
}

/// Builds the whole HTTP service from `config`; `shutdown` turning `true` closes every peer.
/// With `--redis`, the Redis side is created but not started (see [`Cluster::run`]).
pub fn router(
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(Router, Arc<AppState>), ServerError> {
    let cluster = match &config.redis {
        Some(url) => Some(
            Cluster::new(
                url,
                &config.redis_prefix,
                Config::secs(config.redis_heartbeat),
                Config::secs(config.redis_ttl),
            )
            .map_err(|e| ServerError::Config(e.to_string()))?,
        ),
        None => None,
    };
    let state = Arc::new(AppState {
        hub: Hub::new(),
        metrics: metrics::Metrics::default(),
        config: config.clone(),
        cluster,
        assets: assets::Compressed::new(&config.pkg),
        shutdown,
    });
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let assets = state.assets.clone();
        runtime.spawn(async move { assets.warm().await });
    }
    let pkg = Router::new()
        .fallback(pkg_file)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ));
    let www = ServeDir::new(&config.www).append_index_html_on_directories(true);
    let app = Router::new()
        .route("/ws", get(ws_handler))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_handler))
        .nest("/pkg", pkg)
        .fallback_service(www)
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(Arc::clone(&state));
    Ok((app, state))
}

/// A file of the wasm package: compressed from memory where it can be, else from disk.
async fn pkg_file(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if let Some(res) = state.assets.serve(&method, &path, req.headers()).await {
        return res;
    }
    match ServeDir::new(&state.config.pkg).oneshot(req).await {
        Ok(res) => res.into_response(),
        Err(never) => match never {},
    }
}

/// `{"status":"ok"|"degraded","redis":"off"|"up"|"down","connections":N,"rooms":N}`: degraded
/// while Redis is unreachable (this instance serves its own rooms only); still 200, since the
/// instance does serve.
async fn healthz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let (status, redis) = match &state.cluster {
        None => ("ok", "off"),
        Some(c) if c.is_up() => ("ok", "up"),
        Some(_) => ("degraded", "down"),
    };
    let body = format!(
        "{{\"status\":\"{status}\",\"redis\":\"{redis}\",\"connections\":{},\"rooms\":{}}}\n",
        state.hub.connections(),
        state.hub.rooms()
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state
            .metrics
            .render(&state.hub, state.cluster.as_ref().map(|c| c.is_up())),
    )
}

async fn ws_handler(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !state.config.allowed_origins.is_empty() {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or("");
        if !state.config.allowed_origins.iter().any(|o| o == origin) {
            state.metrics.reject("origin");
            return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
        }
    }
    if *state.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let max = state.config.max_frame;
    // tungstenite reserves 128 KiB per connection for reading by default; signaling frames are
    // small, so a small read buffer (it grows for a larger frame, up to --max-frame) keeps an
    // idle connection a few KB. Writes are gathered per batch (see conn::write_loop).
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| conn::run(state, socket, addr.ip()))
}

/// Serves on `listener` until `shutdown` turns `true`, then closes every peer with 1001 "going
/// away" and waits up to the grace period for them.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    config.validate()?;
    let grace = Config::secs(config.shutdown_grace);
    let (app, state) = router(config, shutdown.clone())?;
    if let Some(cluster) = &state.cluster {
        tokio::spawn(Arc::clone(cluster).run(Arc::clone(&state)));
    }
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    // Signaling frames are small and latency-bound: no Nagle delay.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await?;
    // WebSocket tasks are detached from HTTP; wait for them to say goodbye.
    let deadline = tokio::time::Instant::now() + grace;
    while state.hub.connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(cluster) = &state.cluster {
        cluster.withdraw().await;
    }
    Ok(())
}
