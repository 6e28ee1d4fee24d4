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
  /** Bytes of files received from it over its current connection (0 without one). */
  received: number;
  /** Bytes of files served to it over its current connection (0 without one). */
  sent: number;
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
  /** Bytes of it served to peers in this session. */
  sent: number;
  /** Peers fetching it from this page now (with requests of theirs being answered). */
  uploading: number;
  /** Why its last download stopped, if storing failed. */
  error: string | null;
}

/** What a long task (`swarm.share`, `zipFiles`) takes (all optional). */
export interface TaskOptions {
  /** Called as it goes: bytes done so far (hashed, or read), of `total`. */
  onProgress?: (done: number, total: number) => void;
  /** Stops it: the promise rejects with the signal's reason, and nothing is shared or made. */
  signal?: AbortSignal;
}

/** What `swarm.share(file, options)` takes (all optional). */
export interface ShareOptions extends TaskOptions {
  /** Shown to peers instead of the file's own name (its path in a shared folder, say). */
  name?: string;
}

/** One file of `zipFiles(entries, name)`. */
export interface ZipEntry {
  file: Blob;
  /** Its path in the archive (default: the file's own name). */
  name?: string;
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
