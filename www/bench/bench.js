// The transfer benchmark's contestants, in one page driven by WebDriver:
//  - raw: a plain RTCDataChannel, 64 KiB messages, bufferedAmount flow control (the baseline);
//  - swarmdrop: the same bytes shared and downloaded through the swarmdrop API;
//  - webtorrent (when `cargo xtask bench webtorrent` has put WebTorrent 3's browser bundle in
//    ./vendor/): the same bytes seeded and downloaded through WebTorrent with its default browser
//    store (OPFS), a loopback tracker, and no ICE servers.
// The page sits in room #room=…; `window.bench` exposes the calls the harness makes.
import init, { Swarm } from "/pkg/swarmdrop.js";

const params = new URLSearchParams(location.hash.slice(1));
const room = params.get("room");
const signalUrl = `ws://${location.host}/ws`;
const log = (m) => { document.getElementById("log").textContent += `${m}\n`; };

// ---- raw baseline: its own minimal signaling over the same server ----
const CHUNK = 64 * 1024;
const HIGH = 4 * 1024 * 1024;
const LOW = 1024 * 1024;

// Connects in `roomName`; fails after 30 s, saying how far it got and closing what it opened
// (a stuck raw round ends with a reason instead of holding the run forever; the harness then
// tries the round again in a new room).
function rawConnect(roomName) {
  const at = { ws: null, pc: null, peer: null, sent: 0, received: 0 };
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const pc = at.pc;
      const how = pc
        ? `peer ${at.peer}, connection ${pc.connectionState}, ICE ${pc.iceConnectionState}, signaling ${pc.signalingState}, candidates sent ${at.sent} / received ${at.received}`
        : `no peer in the room (signaling ${at.ws && at.ws.readyState})`;
      if (pc) pc.close();
      if (at.ws) at.ws.close();
      reject(new Error(`raw: not connected in 30 s (room ${roomName}: ${how})`));
    }, 30000);
  });
  return Promise.race([rawConnectOnce(roomName, at), deadline]).finally(() => clearTimeout(timer));
}

// `at` records the attempt's progress (for the error above).
function rawConnectOnce(roomName, at) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(signalUrl);
    at.ws = ws;
    let pc = null;
    let me = null;
    let other = null;
    const send = (to, data) => ws.send(JSON.stringify({ type: "signal", to, data }));
    const setup = (peer, offerer) => {
      other = peer;
      at.peer = peer;
      pc = new RTCPeerConnection({ iceServers: [] });
      at.pc = pc;
      pc.onicecandidate = (e) => {
        if (e.candidate && e.candidate.candidate) {
          at.sent += 1;
          send(peer, { kind: "candidate", candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex });
        }
      };
      const ready = (ch) => {
        ch.binaryType = "arraybuffer";
        ch.bufferedAmountLowThreshold = LOW;
        if (ch.readyState === "open") resolve({ ws, pc, ch });
        else ch.onopen = () => resolve({ ws, pc, ch });
      };
      if (offerer) {
        ready(pc.createDataChannel("raw", { ordered: true }));
        pc.createOffer().then((o) => pc.setLocalDescription(o)).then(() => send(peer, { kind: "offer", sdp: pc.localDescription.sdp }));
      } else {
        pc.ondatachannel = (e) => ready(e.channel);
      }
    };
    ws.onopen = () => ws.send(JSON.stringify({ type: "join", room: roomName, v: 1 }));
    ws.onerror = () => reject(new Error("raw signaling failed"));
    // One message at a time: a candidate handled while the offer or answer is still being set
    // would be refused and lost, and ICE could then fail with nobody retrying.
    let queue = Promise.resolve();
    const early = [];
    const flushCandidates = async () => {
      while (early.length > 0) await pc.addIceCandidate(early.shift());
    };
    ws.onmessage = (ev) => { queue = queue.then(() => handle(ev)).catch((e) => log(`raw: ${e}`)); };
    const handle = async (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "welcome") {
        me = m.id;
        if (m.peers.length > 0) setup(m.peers[0], me < m.peers[0]);
      } else if (m.type === "peer-joined" && !pc) {
        setup(m.id, me < m.id);
      } else if (m.type === "signal") {
        const d = m.data;
        if (d.kind === "offer") {
          await pc.setRemoteDescription({ type: "offer", sdp: d.sdp });
          const a = await pc.createAnswer();
          await pc.setLocalDescription(a);
          send(m.from, { kind: "answer", sdp: a.sdp });
          await flushCandidates();
        } else if (d.kind === "answer") {
          await pc.setRemoteDescription({ type: "answer", sdp: d.sdp });
          await flushCandidates();
        } else if (d.kind === "candidate") {
          at.received += 1;
          // Held until the remote description is set (before it, the browser refuses them).
          early.push({ candidate: d.candidate, sdpMid: d.sdpMid, sdpMLineIndex: d.sdpMLineIndex });
          if (pc && pc.remoteDescription) await flushCandidates();
        }
      }
    };
  });
}

// Random bytes, or — with a seed — the same pseudo-random bytes in every page (so several
// seeders share one file id).
function payload(size, seed) {
  const buf = new Uint8Array(size);
  if (!seed) {
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(buf.subarray(i, Math.min(size, i + 65536)));
    return buf;
  }
  const words = new Uint32Array(buf.buffer, 0, Math.floor(size / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    words[i] = x;
  }
  return buf;
}

// What a swarm looks like, for an error message.
const state = (swarm) => JSON.stringify({ signal: swarm.signalState, peers: swarm.peers(), files: swarm.files() });

// Waits until `sources` peers announce `id`; fails after 30 s saying what the swarm sees.
async function announced(swarm, id, sources) {
  const deadline = performance.now() + 30000;
  while (!swarm.files().some((f) => f.id === id && f.sources >= sources)) {
    if (performance.now() > deadline) throw new Error(`file not announced by ${sources} peers in 30 s: ${state(swarm)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// `done`, unless the download makes no progress for 30 s: then an error saying what the swarm sees.
async function stalled(swarm, id, done) {
  let last = -1;
  let since = performance.now();
  let timer;
  const watchdog = new Promise((_, reject) => {
    timer = setInterval(() => {
      const f = swarm.files().find((x) => x.id === id);
      const now = f ? f.received : 0;
      if (now !== last) { last = now; since = performance.now(); }
      else if (performance.now() - since > 30000) reject(new Error(`download stalled for 30 s: ${state(swarm)}`));
    }, 500);
  });
  try { return await Promise.race([done, watchdog]); } finally { clearInterval(timer); }
}

// The stored raw baseline's worker, with its file open: `ask(msg)` resolves on the next answer;
// `failed` rejects on any error the worker reports.
async function rawWriter() {
  const worker = new Worker(new URL("./raw_store.js", import.meta.url), { type: "module" });
  const name = `raw-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  let next = null;
  let fail;
  const failed = new Promise((_, reject) => { fail = reject; });
  failed.catch(() => {});
  worker.onmessage = (e) => {
    if (e.data.error) fail(new Error(`raw store: ${e.data.error}`));
    else if (next) { const n = next; next = null; n(e.data); }
  };
  const ask = (msg) => {
    const answer = new Promise((res) => { next = res; });
    worker.postMessage(msg);
    return Promise.race([answer, failed]);
  };
  await ask({ open: name });
  return { worker, name, ask, failed };
}

// The longest time a transfer waited for its next bytes (a message for raw, a stored piece for
// swarmdrop), from the request on. On loopback here, one transfer in three to five, raw or
// swarmdrop, waits 0.4–1.2 s once: a lost packet waiting for the SCTP retransmission timer
// (README, benchmarks); the harness also reports the medians of the transfers without one.
function pauses() {
  let last = null;
  return {
    longest: 0,
    from(t) {
      last = t;
    },
    tick() {
      const now = performance.now();
      if (last !== null) this.longest = Math.max(this.longest, now - last);
      last = now;
    },
  };
}

const bench = {
  // Raw: connect in room `r`; once the receiver asks ("go"), the sender sends `size` bytes; the
  // receiver times from its request to the last byte (as swarmdrop's download is timed from
  // download() to the finished file). Both close the connection at the end, or on a failure
  // (so the other side ends too). Once in a few hundred connections the first message on a new
  // channel was lost here (Chromium → Chromium, both sides' channels open): the receiver gives
  // up 5 s after asking without data, with "not connected" in its reason, and the harness runs
  // the round again in a new room (asking again would put the wait into the raw time).
  async rawSend(r, size) {
    const { ws, pc, ch } = await rawConnect(r);
    try {
      await new Promise((res, rej) => {
        ch.onmessage = (e) => { if (e.data === "go") res(); };
        ch.onclose = () => rej(new Error("raw: not connected: the receiver closed the channel before asking"));
      });
      const finished = new Promise((res) => {
        ch.onmessage = (e) => { if (e.data === "done") res(); };
        ch.onclose = res;
      });
      const data = payload(CHUNK);
      for (let sent = 0; sent < size; sent += CHUNK) {
        if (ch.bufferedAmount > HIGH) await new Promise((res) => { ch.onbufferedamountlow = res; });
        if (ch.readyState !== "open") throw new Error(`raw: the channel closed after ${sent} of ${size} bytes`);
        ch.send(data.subarray(0, Math.min(CHUNK, size - sent)));
      }
      await finished;
      return true;
    } finally {
      pc.close();
      ws.close();
    }
  },
  // With `store`, each message is also written to OPFS as it arrives (raw_store.js) and the
  // time runs until the file is flushed and closed.
  async rawReceive(r, size, store) {
    const writer = store ? await rawWriter() : null;
    const { ws, pc, ch } = await rawConnect(r);
    try {
      let watchdog;
      const result = await new Promise((resolve, reject) => {
        let got = 0;
        let last = 0;
        // When a quarter and three quarters of the bytes had come: the rate over the middle half
        // is the steady rate, without the start and the end (`midMbps`).
        let q1 = null, q3 = null;
        let since = performance.now();
        // The longest wait for a message, from the request on (see `pauses`).
        const pause = pauses();
        ch.onmessage = (e) => {
          if (typeof e.data === "string") return;
          const n = e.data.byteLength;
          if (writer) writer.worker.postMessage({ data: e.data, at: got }, [e.data]);
          got += n;
          pause.tick();
          if (q1 === null && got >= size / 4) q1 = performance.now();
          if (q3 === null && got >= size * 3 / 4) q3 = performance.now();
          if (got >= size) {
            const done = () => resolve({ bytes: got, ms: performance.now() - t0, pauseMs: pause.longest, midMbps: size / 2 / 1e3 / (q3 - q1) });
            if (!writer) done();
            else writer.ask({ close: true }).then(done, reject);
          }
        };
        if (writer) writer.failed.catch(reject);
        watchdog = setInterval(() => {
          const now = performance.now();
          if (got === 0 && now - t0 > 5000) reject(new Error(`raw: not connected: no data 5 s after asking (channel ${ch.readyState})`));
          if (got !== last) { last = got; since = now; }
          else if (now - since > 30000) reject(new Error(`raw: stalled for 30 s at ${got} of ${size} bytes (channel ${ch.readyState})`));
        }, 500);
        const t0 = performance.now();
        pause.from(t0);
        ch.send("go");
      }).finally(() => clearInterval(watchdog));
      ch.send("done");
      // The sender closes on "done"; close here too after a moment if it does not.
      await new Promise((res) => { ch.onclose = res; setTimeout(res, 2000); });
      if (writer) await writer.ask({ remove: writer.name });
      return result;
    } finally {
      if (writer) writer.worker.terminate();
      pc.close();
      ws.close();
    }
  },
  // swarmdrop: join, share a generated file of `size` bytes; returns its id.
  async swarmShare(r, size, uploadLimit, seed) {
    await init();
    const swarm = await Swarm.join({ signal: signalUrl, room: r, storage: `bench-${Date.now()}`, uploadLimit: uploadLimit || undefined });
    window.swarm = swarm;
    const file = new File([payload(size, seed)], "bench.bin", { type: "application/octet-stream" });
    const { id } = await swarm.share(file);
    return id;
  },
  async swarmJoin(r) {
    await init();
    window.swarm = await Swarm.join({ signal: signalUrl, room: r, storage: `bench-${Date.now()}` });
    return true;
  },
  // Download `id` once announced by `sources` peers; MB/s from the first progress to done.
  async swarmDownload(id, sources) {
    const swarm = window.swarm;
    await announced(swarm, id, sources);
    const t0 = performance.now();
    const dl = swarm.download(id);
    // When the first verified bytes arrived (the start-up part of the time).
    let firstMs = null;
    let lastMs = null;
    const pause = pauses();
    pause.from(t0);
    // As in `rawReceive`: the rate over the middle half of the stored bytes.
    let q1 = null, q3 = null;
    dl.on("progress", (p) => {
      pause.tick();
      if (q1 === null && p.have >= p.total / 4) q1 = performance.now();
      if (q3 === null && p.have >= p.total * 3 / 4) q3 = performance.now();
      const t = performance.now() - t0;
      if (firstMs === null && p.have > 0) firstMs = t;
      if (p.have >= p.total) lastMs = t;
    });
    const file = await stalled(swarm, id, dl.done);
    const ms = performance.now() - t0;
    const bytes = file.size;
    await swarm.deleteStored(id);
    return { bytes, ms, firstMs, lastMs, pauseMs: pause.longest, midMbps: bytes / 2 / 1e3 / (q3 - q1) };
  },
};
// WebTorrent with nothing outside loopback: no ICE servers, no DHT/LSD/PEX, only `tracker`.
async function webtorrent() {
  const { default: WebTorrent } = await import("./vendor/webtorrent.min.js");
  return new WebTorrent({ dht: false, lsd: false, utPex: false, natUpnp: false, natPmp: false, tracker: { rtcConfig: { iceServers: [] } } });
}

// Seeds `size` bytes; returns the magnet link.
bench.wtSeed = async (size, tracker) => {
  const client = await webtorrent();
  window.wt = client;
  const file = new File([payload(size)], "bench.bin", { type: "application/octet-stream" });
  return new Promise((resolve, reject) => {
    client.on("error", (e) => reject(new Error(`webtorrent: ${e.message || e}`)));
    client.seed(file, { announce: [tracker], name: "bench.bin" }, (t) => resolve(t.magnetURI));
  });
};

// Downloads `magnet`; MB/s from the first connected peer to done (its metadata exchange and
// connection excluded, as swarmdrop's are).
bench.wtDownload = async (magnet, tracker) => {
  const client = await webtorrent();
  window.wt = client;
  return new Promise((resolve, reject) => {
    client.on("error", (e) => reject(new Error(`webtorrent: ${e.message || e}`)));
    let t0 = 0;
    client.add(magnet, { announce: [tracker] }, (torrent) => {
      if (torrent.wires.length > 0) t0 = performance.now();
      torrent.on("wire", () => { if (t0 === 0) t0 = performance.now(); });
      torrent.on("done", () => {
        const ms = performance.now() - t0;
        resolve({ bytes: torrent.length, ms });
      });
    });
  });
};

// Ends WebTorrent in this page and deletes what it stored.
bench.wtStop = async () => {
  const client = window.wt;
  window.wt = null;
  if (!client) return true;
  await Promise.all(client.torrents.map((t) => new Promise((r) => t.destroy({ destroyStore: true }, r))));
  await new Promise((r) => client.destroy(r));
  return true;
};

// ---- memory: a file picked from disk (WebDriver types its path into #pick), downloaded while
// the harness samples the receiving renderer ----
let wasmMemory = null;
async function initWasm() {
  const exports = await init();
  wasmMemory = exports.memory;
}

// Shares the file in #pick (disk-backed: the sender holds none of it in memory); its id.
bench.sharePicked = async () => {
  const file = document.getElementById("pick").files[0];
  if (!file) throw new Error("no file picked");
  const { id } = await window.swarm.share(file);
  return id;
};

// Starts downloading `id` once `sources` peers offer it; returns at once (see bench.memory).
bench.startDownload = async (id, sources) => {
  await initWasm();
  const swarm = window.swarm;
  while (!swarm.files().some((f) => f.id === id && f.sources >= sources)) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const state = { t0: performance.now(), have: 0, ms: null, error: null };
  window.memDownload = state;
  const dl = swarm.download(id);
  dl.on("progress", (p) => { state.have = p.have; });
  dl.done.then((file) => { state.ms = performance.now() - state.t0; state.bytes = file.size; },
               (e) => { state.error = String(e); });
  return true;
};

// The page's own view of its memory, and the download's state.
bench.memory = async () => {
  await initWasm();
  const s = window.memDownload || {};
  return {
    wasm: wasmMemory ? wasmMemory.buffer.byteLength : null,
    jsHeap: performance.memory ? performance.memory.usedJSHeapSize : null,
    have: s.have || 0, ms: s.ms ?? null, bytes: s.bytes ?? null, failed: s.error ?? null,
  };
};

window.bench = bench;
log(`ready in room ${room}`);
