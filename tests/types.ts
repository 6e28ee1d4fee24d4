// The JS API's types (`pkg/swarmdrop.d.ts`, from `src/web/types.rs` and the methods' attributes),
// used as a TypeScript program would: `cargo xtask test` checks this file with `tsc` (it is never
// run). Each `@ts-expect-error` marks a misuse the types must reject; one that compiles anyway
// (types decayed to `any`, say) leaves its directive unused, which fails the check.
import init, {
  Swarm,
  Download,
  liveObjects,
  zipFiles,
  type ConnectionInfo,
  type FileInfo,
  type JoinOptions,
  type PeerInfo,
  type Progress,
  type SharedFile,
  type ShareOptions,
  type StoredFile,
  type ZipEntry,
} from "../pkg/swarmdrop.js";

export async function usesTheApi(file: File, socket: WebSocket): Promise<File> {
  await init();
  const options: JoinOptions = {
    signal: "ws://127.0.0.1:8080/ws",
    room: "my-room",
    iceServers: [{ urls: "stun:127.0.0.1:3478" }],
    maxPeers: 20,
    uploadLimit: 2_000_000,
    iceTransportPolicy: "relay",
    storage: "default",
    socket,
  };
  const swarm: Swarm = await Swarm.join(options);
  // @ts-expect-error: `room` is required
  await Swarm.join({ signal: "ws://127.0.0.1:8080/ws" });
  // @ts-expect-error: not an ICE transport policy
  await Swarm.join({ signal: "ws://127.0.0.1:8080/ws", room: "r", iceTransportPolicy: "often" });

  const id: string | undefined = swarm.id;
  const open: boolean = swarm.signalState === "open";
  const cap: number | undefined = swarm.uploadLimit;
  swarm.setUploadLimit(1_000_000);
  swarm.setUploadLimit(null);
  // @ts-expect-error: a number of bytes a second, not a string
  swarm.setUploadLimit("1 MB/s");
  console.log(cap);
  const peers: PeerInfo[] = swarm.peers();
  const direct: boolean = peers[0].route === "direct" && peers[0].state === "connected";
  const rtt: number | null = peers[0].rttMs;
  // @ts-expect-error: not a peer state
  const never: boolean = peers[0].state === "happy";
  const connections: ConnectionInfo[] = swarm.connections();
  const channel: RTCDataChannelState | null = connections[0].channel;

  const off: () => void = swarm.on("message", ({ from, data }) => {
    const text: string = typeof data === "string" ? data : new TextDecoder().decode(data);
    console.log(from, text);
  });
  off();
  swarm.on("peer-left", ({ id, reason }) => console.log(id, reason.length));
  swarm.on("peer-state", ({ state, reason }) => console.log(state === "failed", reason ?? ""));
  swarm.on("signal-state", ({ state }) => console.log(state === "reconnecting"));
  swarm.on("error", ({ message }) => console.log(message.length));
  swarm.on("file-announced", ({ id, name, size, type }) => console.log(id, name, size + 1, type));
  // @ts-expect-error: no such event
  swarm.on("file-announce", () => {});
  // @ts-expect-error: a "file-complete" detail has only `id`
  swarm.on("file-complete", ({ bytes }) => console.log(bytes));

  await swarm.send("peer-id", "hello");
  await swarm.broadcast(new Uint8Array([1, 2, 3]));
  // @ts-expect-error: a number is not a message
  await swarm.send("peer-id", 42);

  const shared: SharedFile = await swarm.share(file);
  const abort = new AbortController();
  const shareOptions: ShareOptions = {
    name: "album/a.jpg",
    signal: abort.signal,
    onProgress: (hashed: number, total: number) => console.log(hashed / total),
  };
  await swarm.share(file, shareOptions);
  // @ts-expect-error: progress gives numbers
  await swarm.share(file, { onProgress: (hashed: string) => console.log(hashed) });
  const entries: ZipEntry[] = [{ file, name: "album/a.jpg" }, { file: new Blob(["x"]) }];
  const zipped: File = await zipFiles(entries, "album.zip", { signal: abort.signal, onProgress: (read, total) => console.log(read / total) });
  // @ts-expect-error: an entry is { file, name? }, not a File
  await zipFiles([file], "x.zip");
  console.log(zipped.size);
  const files: FileInfo[] = swarm.files();
  const f = files.find((f) => f.id === shared.id);
  const left: number = f ? f.size - f.have : 0;
  const why: string | null = f?.error ?? null;
  const served: number = f ? f.sent : 0;
  const fetching: boolean = (f?.uploading ?? 0) > 0;
  console.log(served, fetching);
  // @ts-expect-error: `error` may be null
  const sure: string = files[0].error;
  // @ts-expect-error: no such field
  console.log(files[0].seeders);

  const dl: Download = swarm.download(shared.id);
  const stop: () => void = dl.on("progress", ({ have, total, bytesPerSec, peers }: Progress) =>
    console.log(have / total, bytesPerSec, peers),
  );
  stop();
  // @ts-expect-error: downloads have only "progress"
  dl.on("done", () => {});
  const stored: StoredFile[] = await swarm.storedFiles();
  const complete: boolean = stored.every((s) => s.complete && s.have === s.size);
  await swarm.deleteStored(stored[0].id);
  swarm.unshare(shared.id);
  const live: number = liveObjects().peers + liveObjects().channels;
  const where: string = swarm.storage;
  console.log(id, open, direct, rtt, never, channel, left, why, sure, complete, live, where);
  swarm.leave();
  return dl.done;
}
