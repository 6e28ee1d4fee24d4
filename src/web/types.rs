//! The TypeScript types of the JS API's plain objects — `Swarm.join`'s options, what the
//! methods return, each event's detail — added to the generated `swarmdrop.d.ts`, where the
//! methods name them (`unchecked_return_type` / `unchecked_param_type`: wasm-bindgen writes the
//! name as given and checks nothing, so these must follow the objects that `swarm.rs` and
//! `files.rs` build: the browser test `the_api_objects_have_the_fields_their_typescript_types_name`
//! holds the real objects to [`fields_of`] these). `tests/types.ts` uses them, and its misuses
//! must fail to compile: `cargo xtask test` checks it with `tsc`.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS: &str = TYPES;

const TYPES: &str = r#"
/** What `Swarm.join` takes. */
export interface JoinOptions {
  /** The signaling server's WebSocket URL (`ws://host/ws`). */
  signal: string;
  /** The room: 1-64 of A-Z a-z 0-9 _ - */
  room: string;
  /** More ICE servers (the server's own list is added). */
  iceServers?: RTCIceServer[];
  /** Connection budget (default 20). */
  maxPeers?: number;
  /** Bytes a second this peer uploads to all peers together (default: no limit). */
  uploadLimit?: number;
  /** "relay": TURN relays only. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** The name of this swarm's file store in the browser (default "default"). */
  storage?: string;
  /** A WebSocket to `signal` opened before (and sent nothing on): the join uses it. */
  socket?: WebSocket;
}

export type SignalState = "connecting" | "open" | "reconnecting" | "closed";
export type PeerState = "new" | "connecting" | "connected" | "reconnecting" | "closed" | "failed";
export type Route = "direct" | "relayed" | "unknown";

/** One entry of `swarm.peers()`. */
export interface PeerInfo {
  id: string;
  state: PeerState;
  route: Route;
  /** Round-trip time of the selected ICE pair, once measured. */
  rttMs: number | null;
  /** "1234 5678 9012", once connected. */
  safetyNumber: string | null;
  /** `performance.now()` when it connected; null unless connected. */
  connectedAt: number | null;
}

/** One entry of `swarm.connections()`: the browser's own view, for diagnostics. */
export interface ConnectionInfo {
  id: string;
  signaling: RTCSignalingState | null;
  ice: RTCIceConnectionState | null;
  gathering: RTCIceGatheringState | null;
  connection: RTCPeerConnectionState | null;
  localDescription: boolean;
  remoteDescription: boolean;
  channel: RTCDataChannelState | null;
}

/** One entry of `swarm.files()`. */
export interface FileInfo {
  /** SHA-256 of the manifest, hex. */
  id: string;
  name: string;
  size: number;
  /** MIME type, as the sharer's browser gave it. */
  type: string;
  /** Other peers that announce it. */
  sources: number;
  /** Bytes this page has, verified and stored. */
  have: number;
  downloading: boolean;
  complete: boolean;
  /** Bytes fetched from peers in this session. */
  received: number;
  /** Why its last download stopped, if storing failed. */
  error: string | null;
}

/** What `swarm.share(file)` resolves with. */
export interface SharedFile {
  id: string;
  name: string;
  size: number;
}

/** One entry of `swarm.storedFiles()`. */
export interface StoredFile {
  id: string;
  name: string;
  size: number;
  have: number;
  complete: boolean;
}

/** A download's "progress" detail. */
export interface Progress {
  have: number;
  total: number;
  bytesPerSec: number;
  /** Peers that have sent bytes of it in this session. */
  peers: number;
}

/** Each event of `swarm.on` and its detail. */
export interface SwarmEvents {
  "peer-joined": { id: string };
  "peer-left": { id: string; reason: string };
  "peer-state": { id: string; state: PeerState; reason: string | null };
  "message": { from: string; data: string | Uint8Array };
  "signal-state": { state: SignalState };
  "error": { message: string };
  "file-announced": { id: string; name: string; size: number; type: string };
  "file-removed": { id: string };
  "file-complete": { id: string };
}

export interface Swarm {
  /** Calls `callback(detail)` on `event`; returns a function that unsubscribes. */
  on<K extends keyof SwarmEvents>(event: K, callback: (detail: SwarmEvents[K]) => void): () => void;
}

export interface Download {
  /** Calls `callback(progress)` as the download goes on; returns a function that unsubscribes. */
  on(event: "progress", callback: (progress: Progress) => void): () => void;
}
"#;

/// The field names of interface `name` in the types above (one field per line), or of one of
/// its properties' object types (`name` = `"SwarmEvents.peer-left"`): the browser tests hold
/// the API's real objects to them.
#[doc(hidden)]
pub fn fields_of(name: &str) -> Vec<String> {
    let (interface, member) = name.split_once('.').unwrap_or((name, ""));
    let Some(start) = TYPES.find(&format!("export interface {interface} {{")) else {
        return Vec::new();
    };
    let body = &TYPES[start..];
    let body = &body[body.find('{').map_or(0, |i| i + 1)..body.find("\n}").unwrap_or(0)];
    let field = |line: &str| {
        let name = line.split(':').next()?.trim().trim_end_matches('?');
        Some(name.trim_matches('"').to_string())
    };
    let lines = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("/**") && !l.starts_with('*'));
    if member.is_empty() {
        return lines.filter_map(field).collect();
    }
    // `"member": { a: string; b: number };`
    lines
        .filter(|l| field(l).as_deref() == Some(member))
        .filter_map(|l| {
            let inner = &l[l.find('{')? + 1..l.rfind('}')?];
            Some(
                inner
                    .split(';')
                    .filter_map(field)
                    .filter(|f| !f.is_empty())
                    .collect(),
            )
        })
        .next()
        .unwrap_or_default()
}
