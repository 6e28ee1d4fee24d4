//! Counters for `/metrics`, rendered in the Prometheus text format.

use crate::hub::Hub;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the relay latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0,
];

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    connections_total: AtomicU64,
    messages_relayed: AtomicU64,
    bytes_relayed: AtomicU64,
    rejects: Mutex<BTreeMap<&'static str, u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    redis_connects: AtomicU64,
    redis_errors: AtomicU64,
    redis_published: AtomicU64,
    redis_received: AtomicU64,
    redis_dropped: AtomicU64,
    redis_reaped: AtomicU64,
}

impl Metrics {
    /// A connection was accepted.
    pub fn connection(&self) {
        self.connections_total.fetch_add(1, Relaxed);
    }

    /// A `signal` frame of `bytes` bytes was relayed.
    pub fn relayed(&self, bytes: usize) {
        self.messages_relayed.fetch_add(1, Relaxed);
        self.bytes_relayed.fetch_add(bytes as u64, Relaxed);
    }

    /// Something was refused for `reason`.
    pub fn reject(&self, reason: &'static str) {
        let mut r = self.rejects.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry(reason).or_default() += 1;
    }

    /// How many rejects for `reason` so far.
    pub fn rejects(&self, reason: &str) -> u64 {
        let r = self.rejects.lock().unwrap_or_else(|p| p.into_inner());
        r.get(reason).copied().unwrap_or(0)
    }

    /// A relayed frame took `d` from being read to being written to its receiver.
    pub fn relay_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Redis was (re)connected.
    pub fn redis_connected(&self) {
        self.redis_connects.fetch_add(1, Relaxed);
    }

    /// A Redis connection attempt or command failed.
    pub fn redis_error(&self) {
        self.redis_errors.fetch_add(1, Relaxed);
    }

    /// `n` notes were published to other instances.
    pub fn redis_published(&self, n: u64) {
        self.redis_published.fetch_add(n, Relaxed);
    }

    /// `n` notes could not be published (Redis down).
    pub fn redis_dropped(&self, n: u64) {
        self.redis_dropped.fetch_add(n, Relaxed);
    }

    /// A note from another instance arrived.
    pub fn redis_received(&self) {
        self.redis_received.fetch_add(1, Relaxed);
    }

    /// A dead instance was reaped.
    pub fn redis_reaped(&self) {
        self.redis_reaped.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition; `redis_up` is None without `--redis`.
    pub fn render(&self, hub: &Hub, redis_up: Option<bool>) -> String {
        let mut s = String::new();
        let (rooms, peers) = hub.rooms_and_peers();
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "swarmdrop_connections",
            "Open WebSocket connections.",
            hub.connections() as u64,
        );
        gauge(
            "swarmdrop_rooms",
            "Rooms with at least one peer.",
            rooms as u64,
        );
        gauge("swarmdrop_peers", "Peers joined to a room.", peers as u64);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "swarmdrop_connections_total",
            "WebSocket connections accepted.",
            self.connections_total.load(Relaxed),
        );
        counter(
            "swarmdrop_messages_relayed_total",
            "Signal frames relayed.",
            self.messages_relayed.load(Relaxed),
        );
        counter(
            "swarmdrop_bytes_relayed_total",
            "Bytes of signal data relayed.",
            self.bytes_relayed.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP swarmdrop_rejects_total Frames or connections refused, by reason.\n\
             # TYPE swarmdrop_rejects_total counter"
        );
        for (reason, n) in self
            .rejects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(s, "swarmdrop_rejects_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP swarmdrop_relay_latency_seconds From reading a signal frame to writing it to its receiver.\n\
             # TYPE swarmdrop_relay_latency_seconds histogram"
        );
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(
                s,
                "swarmdrop_relay_latency_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            s,
            "swarmdrop_relay_latency_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             swarmdrop_relay_latency_seconds_sum {}\n\
             swarmdrop_relay_latency_seconds_count {count}",
            self.latency_sum_ns.load(Relaxed) as f64 / 1e9
        );
        if let Some(up) = redis_up {
            let _ = writeln!(
                s,
                "# HELP swarmdrop_redis_up Whether Redis is reachable (rooms shared with other instances).\n\
                 # TYPE swarmdrop_redis_up gauge\nswarmdrop_redis_up {}",
                u8::from(up)
            );
            for (name, help, v) in [
                (
                    "swarmdrop_redis_connects_total",
                    "Connections made to Redis.",
                    &self.redis_connects,
                ),
                (
                    "swarmdrop_redis_errors_total",
                    "Failed Redis connection attempts and commands.",
                    &self.redis_errors,
                ),
                (
                    "swarmdrop_redis_published_total",
                    "Notes published to other instances.",
                    &self.redis_published,
                ),
                (
                    "swarmdrop_redis_dropped_total",
                    "Notes not published because Redis was down.",
                    &self.redis_dropped,
                ),
                (
                    "swarmdrop_redis_received_total",
                    "Notes received from other instances.",
                    &self.redis_received,
                ),
                (
                    "swarmdrop_redis_reaped_total",
                    "Instances found dead (heartbeat expired) and removed.",
                    &self.redis_reaped,
                ),
            ] {
                let _ = writeln!(
                    s,
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                    v.load(Relaxed)
                );
            }
        }
        s
    }
}
