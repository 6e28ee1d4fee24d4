// The swarmdrop page: joins the room named in the URL hash and shows peers and a chat.
import init, { version, qrSvg, Swarm, zipFiles } from "/pkg/swarmdrop.js";

const $ = (id) => document.getElementById(id);

// Everything from the network is shown as text, never as HTML.
function show(id, text, state) {
  const el = $(id);
  el.textContent = text;
  if (state) el.dataset.state = state;
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// A function that runs `run` soon: at most once every `gap` ms however often it is called,
// and at most a tenth of the time where `run` itself takes longer (a list of thousands of
// files); calls while a run waits (or, for an async `run`, goes on) are one run.
function throttled(run, gap) {
  let pending = false;
  let next = -Infinity;
  return () => {
    if (pending) return;
    pending = true;
    setTimeout(async () => {
      const start = performance.now();
      try {
        await run();
      } finally {
        next = start + Math.max(gap, 10 * (performance.now() - start));
        pending = false;
      }
    }, Math.max(0, next - performance.now()));
  };
}

// Screen readers hear what happened, not every redraw: the lists are drawn again many times a
// second and are not live regions; what happens (a download finished or stopped, files shared,
// a peer come or gone) is said in one live region (`#announce`), a second's events together:
// each kind by its own words where it happened once, else counted ("Downloaded 40 files": a
// "Download all" ends hundreds of downloads in seconds). `say` is called only when it is said.
const heard = new Map(); // kind → { say: [() => text], many: (n) => text }
const announceSoon = throttled(() => {
  const parts = [...heard.values()].map((h) => (h.say.length === 1 ? h.say[0]() : h.many(h.say.length)));
  heard.clear();
  const box = $("announce");
  const text = parts.join(". ");
  // (The last hundred, for the E2E tests.)
  const said = (window.swarmdropAnnounced ??= []);
  said.push(text);
  if (said.length > 100) said.shift();
  // The same words again are a new event: changed by a trailing space, so that they are said.
  box.textContent = box.textContent === text ? `${text}\u00a0` : text;
}, 1000);

function announce(kind, say, many) {
  const h = heard.get(kind) ?? { say: [], many };
  h.say.push(say);
  heard.set(kind, h);
  announceSoon();
}

const nameOf = (swarm, id) => swarm.files().find((f) => f.id === id)?.name ?? "a file";

function randomRoom() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function roomFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  let room = params.get("room");
  if (!room || !/^[A-Za-z0-9_-]{1,64}$/.test(room)) {
    room = randomRoom();
    params.set("room", room);
    history.replaceState(null, "", `#${params}`);
  }
  // A link may name a file to offer: #room=…&file=<64 hex digits>.
  return room;
}

const short = (id) => (id ? id.slice(0, 8) : "?");
let currentRoom = "";

function setupInvite(room) {
  const link = `${location.origin}${location.pathname}#room=${room}`;
  $("link").value = link;
  try {
    $("qr").src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(qrSvg(link))}`;
  } catch (e) {
    $("qr").alt = `QR code unavailable: ${e.message ?? e}`;
  }
  $("copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(link);
      show("copy-status", "Link copied.");
    } catch {
      $("link").select();
      show("copy-status", "Press Ctrl+C (or ⌘C) to copy.");
    }
  });
}

// Bytes a second of a count that grows (a file's `sent`, a peer's `received`), over the last
// few seconds of the values it was seen at under `key`; one that went down (a new connection
// counts from 0) starts over.
const seenAt = new Map(); // key → [[performance.now(), count], …], oldest first

function rateOf(key, count) {
  const now = performance.now();
  let seen = seenAt.get(key);
  if (!seen || count < seen[seen.length - 1][1]) seenAt.set(key, (seen = []));
  seen.push([now, count]);
  while (seen.length > 2 && now - seen[1][0] >= 3000) seen.shift();
  const [t0, c0] = seen[0];
  return now - t0 >= 500 ? (count - c0) / ((now - t0) / 1000) : 0;
}

function forgetRate(key) {
  seenAt.delete(key);
}

// What a connected peer and this page exchanged over their connection: "received 78.6 MB
// (5.0 MB/s) · sent 27.9 MB (2.0 MB/s)", each part once there is some.
function trafficText(p) {
  const part = (what, count) => {
    const rate = rateOf(`peer ${p.id} ${what}`, count);
    return count > 0 ? `${what} ${formatBytes(count)}${rate > 0 ? ` (${formatBytes(rate)}/s)` : ""}` : null;
  };
  return [part("received", p.received), part("sent", p.sent)].filter(Boolean).join(" · ");
}

function renderPeers(swarm) {
  const list = $("peers");
  const peers = swarm.peers();
  list.replaceChildren(
    ...peers.map((p) => {
      const li = el("li", "peer");
      li.dataset.peer = p.id;
      li.append(el("span", "id", short(p.id)));
      const state = el("span", "state", p.state);
      state.dataset.state = p.state;
      li.append(state);
      const meta = el("span", "meta");
      if (p.state === "connected") {
        const route = el("span", `badge route ${p.route}`, p.route === "unknown" ? "route…" : p.route);
        route.dataset.state = p.route;
        meta.append(route);
        if (p.rttMs !== null) meta.append(el("span", "rtt", `${p.rttMs.toFixed(1)} ms`));
        if (p.safetyNumber) {
          const safety = el("span", "safety", p.safetyNumber);
          safety.title = "Safety number";
          meta.append(safety);
        }
        const traffic = trafficText(p);
        if (traffic) meta.append(el("span", "traffic", traffic));
      }
      li.append(meta);
      return li;
    }),
  );
  // (The rates of peers no longer listed are let go of.)
  const listed = new Set(peers.map((p) => p.id));
  for (const key of seenAt.keys()) {
    const [kind, id] = key.split(" ");
    if (kind === "peer" && !listed.has(id)) seenAt.delete(key);
  }
  const connected = peers.filter((p) => p.state === "connected").length;
  show("peer-count", String(connected));
  $("no-peers").hidden = peers.length > 0;
}

// The chat keeps the last CHAT_KEEP messages, each shown up to CHAT_CHARS characters: a peer
// that sends thousands (or huge ones) cannot grow the page without bound.
const CHAT_KEEP = 500;
const CHAT_CHARS = 2000;

function addChat(who, text, mine) {
  const log = $("chat-log");
  const li = el("li", mine ? "me" : "");
  const shown = text.length > CHAT_CHARS ? `${text.slice(0, CHAT_CHARS)}…` : text;
  li.append(el("span", "who", mine ? "you" : short(who)), el("span", "text", shown));
  log.append(li);
  while (log.childElementCount > CHAT_KEEP) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

// Page open → each step of joining, in ms (performance.now), for `cargo xtask bench join`.
window.swarmdropTimings = { scriptMs: performance.now(), wasmMs: null, joinedMs: null, firstConnectedMs: null };

// The signaling socket is opened now, while the wasm loads, and handed to `Swarm.join`, which
// finds it open rather than opening one then.
const signal = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const earlySocket = new WebSocket(signal);

async function main() {
  try {
    await init();
    window.swarmdropTimings.wasmMs = performance.now();
  } catch (e) {
    show("version", `failed to load: ${e}`, "error");
    earlySocket.close();
    return;
  }
  show("version", `swarmdrop ${version()}`, "ready");
  const room = roomFromHash();
  currentRoom = room;
  show("room", room);
  setupInvite(room);
  let swarm;
  try {
    swarm = await Swarm.join({ signal, room, socket: earlySocket, uploadLimit: savedUploadLimit() ?? undefined });
    window.swarmdropTimings.joinedMs = performance.now();
  } catch (e) {
    show("signal-state", `failed: ${e.message ?? e}`, "error");
    return;
  }
  window.swarmdrop = swarm; // for the console and the E2E tests
  show("signal-state", swarm.signalState, swarm.signalState);
  show("peer-id", swarm.id ?? "–");
  swarm.on("signal-state", ({ state }) => {
    show("signal-state", state, state);
    show("peer-id", swarm.id ?? "–");
  });
  for (const ev of ["peer-joined", "peer-left", "peer-state"]) swarm.on(ev, () => renderPeers(swarm));
  // Page open → first peer connected (data channel open and hello).
  const connected = () => {
    if (window.swarmdropTimings.firstConnectedMs === null) {
      window.swarmdropTimings.firstConnectedMs = performance.now();
    }
  };
  const peerConnected = () => announce("connected", () => "A peer connected", (n) => `${n} peers connected`);
  swarm.on("peer-state", ({ state }) => {
    if (state !== "connected") return;
    connected();
    peerConnected();
  });
  swarm.on("peer-left", () => announce("left", () => "A peer left", (n) => `${n} peers left`));
  // (Those that connected while `join` ran, before these listeners: said now.)
  for (const p of swarm.peers()) if (p.state === "connected") peerConnected();
  // A peer may have connected before `join` resolved (while the store opened): its time.
  const early = swarm.peers().map((p) => p.connectedAt).filter((t) => t !== null);
  if (early.length > 0) window.swarmdropTimings.firstConnectedMs = Math.min(...early);
  renderStorage(swarm);
  swarm.on("error", ({ message }) => {
    console.warn("swarmdrop:", message);
    const box = $("swarm-error");
    box.textContent = message;
    box.hidden = false;
  });
  swarm.on("message", ({ from, data }) => {
    if (typeof data === "string") addChat(from, data, false);
  });
  setInterval(() => renderPeers(swarm), 2000);
  renderPeers(swarm);

  $("chat-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    addChat(swarm.id, text, true);
    try {
      await swarm.broadcast(text);
    } catch (e) {
      addChat("!", `not sent: ${e.message ?? e}`, true);
    }
  });
  setupFiles(swarm);
  setupUploadLimit(swarm);
  addEventListener("pagehide", () => swarm.leave());
}

// ---- upload limit ----

// The upload limit picked on this page is kept in the browser (for this site) and applies
// from the next page load on too. Only the list's own values are taken back.
const UPLOAD_LIMIT_KEY = "swarmdrop.uploadLimit";

function savedUploadLimit() {
  let saved = null;
  try {
    saved = localStorage.getItem(UPLOAD_LIMIT_KEY);
  } catch {
    // (No storage for this page: no limit kept.)
  }
  const known = [...$("upload-limit").options].some((o) => o.value !== "" && o.value === saved);
  return known ? Number(saved) : null;
}

function setupUploadLimit(swarm) {
  const select = $("upload-limit");
  select.value = swarm.uploadLimit === undefined ? "" : String(swarm.uploadLimit);
  select.disabled = false;
  select.addEventListener("change", () => {
    const limit = select.value === "" ? null : Number(select.value);
    swarm.setUploadLimit(limit);
    try {
      if (limit === null) localStorage.removeItem(UPLOAD_LIMIT_KEY);
      else localStorage.setItem(UPLOAD_LIMIT_KEY, String(limit));
    } catch {
      // (Applies to this page only.)
    }
  });
}

// Files dropped anywhere on the page are shared, not only on the drop zone: elsewhere the
// browser would open the file in this tab, closing the page — leaving the swarm and whatever it
// shared. Set up before anything else, so a drop while the page joins is kept for when it has
// (`onDrop`). Drags of anything but files (text into the chat, say) are the browser's.
let onDrop = null;
const droppedEarly = [];

function dropsOnThePage() {
  const zone = $("drop");
  const carriesFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes("Files");
  for (const ev of ["dragenter", "dragover"]) {
    document.addEventListener(ev, (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  // (Leaving the window: no element it goes to.)
  document.addEventListener("dragleave", (e) => { if (e.relatedTarget === null) zone.classList.remove("over"); });
  document.addEventListener("drop", async (e) => {
    zone.classList.remove("over");
    if (!carriesFiles(e)) return;
    e.preventDefault();
    const items = await dropped(e.dataTransfer);
    if (onDrop) onDrop(items);
    else droppedEarly.push(items);
  });
}

dropsOnThePage();
main();

// A link pasted into this tab changes only the hash, which loads nothing: a link to another
// room joins that room (the page loads again, leaving this one); one that offers a file in this
// room offers it at once. While peers fetch from this page (see `guardLeaving`), the page asks
// first, itself: the browser's own question, answered "stay", would leave the other room's
// link in the address bar of a page still in this room; answered so here, the link goes back.
addEventListener("hashchange", (e) => {
  const room = new URLSearchParams(location.hash.slice(1)).get("room");
  if (room === currentRoom) {
    if (window.swarmdrop) renderFiles(window.swarmdrop);
    return;
  }
  if (guarding && !confirm("Peers are downloading files from this page: leaving this room stops them. Leave it for the other room?")) {
    history.replaceState(null, "", e.oldURL);
    return;
  }
  guardLeaving(false);
  location.reload();
});

// ---- files ----

function formatBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function formatEta(seconds) {
  if (!isFinite(seconds) || seconds <= 0) return "";
  if (seconds < 60) return `${Math.ceil(seconds)} s left`;
  return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s left`;
}

const downloads = new Map(); // id → { dl, progress, url, file, error }
const copiedAt = new Map(); // file id → when its link was copied (performance.now())
window.swarmdropDownloads = downloads; // for the console and the E2E tests

function wantedFile() {
  return new URLSearchParams(location.hash.slice(1)).get("file");
}

// Starts (or resumes) the download of `id`; returns why it cannot, else null. Its progress
// and its end redraw the list through the same throttle as everything else: "Download all"
// of thousands of small files ends thousands of downloads in a few seconds.
function startDownload(swarm, id, render = true) {
  // A download that stopped on an error (storage full, say) starts again: it resumes.
  if (downloads.has(id) && !downloads.get(id).error) return null;
  let dl;
  try {
    dl = swarm.download(id);
  } catch (e) {
    return e.message ?? String(e);
  }
  const state = { dl, progress: null, url: null, error: null };
  downloads.set(id, state);
  dl.on("progress", (p) => { state.progress = p; renderFilesSoon(); });
  dl.done.then(
    (file) => { state.url = URL.createObjectURL(file); state.file = file; renderFilesSoon(); },
    (e) => {
      state.error = e.message ?? String(e);
      const why = state.error;
      if (downloads.get(id) === state) {
        announce("stopped", () => `Download stopped: ${nameOf(swarm, id)}: ${why}`, (n) => `${n} downloads stopped`);
      }
      renderFilesSoon();
    },
  );
  if (render) renderFiles(swarm);
  return null;
}

// A download the user asked for: why it cannot start, if it cannot, in an alert.
function userDownload(swarm, id) {
  keepStorage(swarm);
  const why = startDownload(swarm, id);
  if (why) alert(`Cannot download: ${why}`);
}

// ---- all files at once ----

// "Download all" fetches every file this page has not got; "Save all as one zip" packs every
// file it has whole into one archive, named by their paths (a shared folder comes back as a
// folder), without copying them: the zip is a `File` made of the stored files themselves.
const zip = { abort: null, read: 0, total: 0, file: null, url: null, name: "", error: null };
const renderZipSoon = throttled(() => renderZip(), 100);
window.swarmdropZip = zip; // for the console and the E2E tests

function renderAll(swarm, files) {
  const wanted = files.filter((f) => !f.complete && !f.downloading);
  const whole = files.filter((f) => f.complete);
  const dl = $("download-all");
  const label = `Download all (${wanted.length} file${wanted.length === 1 ? "" : "s"}, ${formatBytes(wanted.reduce((n, f) => n + f.size, 0))})`;
  if (dl.textContent !== label) dl.textContent = label;
  dl.hidden = wanted.length < 2;
  $("zip-all").hidden = whole.length < 2 || zip.abort !== null;
  $("all").hidden = dl.hidden && $("zip-all").hidden && !zip.abort && !zip.url && !zip.error;
  keepZipFocus();
}

function downloadAll(swarm) {
  keepStorage(swarm);
  const failed = [];
  for (const f of swarm.files()) {
    if (f.complete || f.downloading) continue;
    const why = startDownload(swarm, f.id, false);
    if (why) failed.push(why);
  }
  renderFiles(swarm);
  if (failed.length > 0) alert(`Cannot download ${failed.length} of the files: ${failed[0]}`);
}

// The archive's name: the folder all its files are in, if they are all in one.
function zipName(names) {
  const top = names[0].split("/")[0];
  const one = names.every((n) => n.startsWith(`${top}/`));
  return one ? `${top}.zip` : "swarmdrop-files.zip";
}

function renderZip() {
  const working = zip.abort !== null;
  const line = $("zipping");
  line.hidden = !working && !zip.error;
  if (working) {
    const percent = zip.total > 0 ? Math.floor((zip.read / zip.total) * 100) : 0;
    line.textContent = `Packing the zip: ${formatBytes(zip.read)} of ${formatBytes(zip.total)} read (${percent}%)`;
  } else if (zip.error) {
    line.textContent = `Could not make the zip: ${zip.error}`;
  }
  $("zip-cancel").hidden = !working;
  const save = $("zip-save");
  save.hidden = working || !zip.url;
  if (zip.url) {
    save.href = zip.url;
    save.download = zip.name;
    save.textContent = `Save ${zip.name} (${formatBytes(zip.file.size)})`;
  }
  keepZipFocus();
}

// The zip's control the keyboard was on may have just been hidden (Save all as one zip →
// Cancel → Save): its place goes to the one shown now.
function keepZipFocus() {
  const controls = ["zip-all", "zip-cancel", "zip-save"].map($);
  const focused = controls.find((c) => c === document.activeElement);
  if (focused?.hidden) controls.find((c) => !c.hidden)?.focus();
}

async function zipAll(swarm) {
  if (zip.abort) return;
  const abort = new AbortController();
  zip.abort = abort;
  zip.error = null;
  zip.read = 0;
  zip.total = 0;
  if (zip.url) URL.revokeObjectURL(zip.url);
  zip.url = null;
  zip.file = null;
  renderZip();
  renderFiles(swarm);
  try {
    const whole = swarm.files().filter((f) => f.complete);
    const entries = [];
    for (const f of whole) {
      // The page's own download of it, if it has one (asking again would replace its promise).
      const file = downloads.get(f.id)?.file ?? await (downloads.get(f.id)?.dl ?? swarm.download(f.id)).done;
      entries.push({ file, name: f.name });
    }
    const name = zipName(whole.map((f) => f.name));
    const file = await zipFiles(entries, name, {
      signal: abort.signal,
      onProgress: (read, total) => {
        zip.read = read;
        zip.total = total;
        renderZipSoon();
      },
    });
    zip.file = file;
    zip.url = URL.createObjectURL(file);
    zip.name = name;
    announce("zip", () => `The zip is ready to save: ${name}`);
  } catch (e) {
    if (!abort.signal.aborted) {
      zip.error = e.message ?? String(e);
      announce("zip", () => `The zip failed: ${zip.error}`);
    }
  }
  zip.abort = null;
  renderZip();
  renderFiles(swarm);
}

// Who has the file: `sources` counts the other peers; a file this page has whole counts too
// (and if no one else has it, it is gone when this page closes).
function sourcesText(f) {
  const n = f.sources;
  const others = `${n} source${n === 1 ? "" : "s"}`;
  if (!f.complete) return others;
  return n === 0 ? "only you have it" : `you and ${n} other source${n === 1 ? "" : "s"}`;
}

// What each file's row says of uploads: who fetches it from this page now, how fast, and
// what it sent in this session (the rate over the last few seconds of `sent`, seen each time
// the list is drawn: at least once a second).
function uploadText(f) {
  if (f.uploading === 0) {
    if (seenAt.size > 0) forgetRate(`file ${f.id}`);
    return f.sent > 0 ? `Sent ${formatBytes(f.sent)} to peers` : "";
  }
  const rate = rateOf(`file ${f.id}`, f.sent);
  return `Sending to ${f.uploading} peer${f.uploading === 1 ? "" : "s"}` +
    (rate > 0 ? ` · ${formatBytes(rate)}/s` : "") + ` · ${formatBytes(f.sent)} sent`;
}

// Each file's row is kept with what it shows (`key`) and built again only when that changes:
// a page listing thousands of files (a shared folder, say) touches the DOM once a second only
// for the rows that changed, not for every row.
const rows = new Map(); // file id → { key, li }

function fileRow(swarm, f) {
  const d = downloads.get(f.id);
  // Why its download stopped: from the swarm (also a download resumed after a reload),
  // else from the page's own call.
  const error = f.downloading ? null : (f.error ?? d?.error);
  let stateText = "available";
  if (f.complete) stateText = "seeding";
  else if (error) stateText = "error";
  else if (f.downloading) stateText = "downloading";
  const loading = f.downloading && !f.complete;
  const p = loading ? d?.progress : null;
  // (The clock is read only for a row whose link was copied, not for each of thousands.)
  const copied = copiedAt.has(f.id) && performance.now() - copiedAt.get(f.id) < 2000;
  const up = uploadText(f);
  // (Joined, not `JSON.stringify`, which took Firefox ~5 ms for 5000 rows, against ~2.5;
  // with the clock read above, an unchanged list of 5000 files was rebuilt in 10.9–13.4 ms
  // instead of 14.5–15.9 in Firefox, 8.3–10.9 instead of 9.4–14.9 in Chromium. The parts are
  // separated by a character none has but perhaps the name, the row's own, which never
  // changes.)
  const key = `${f.name}\u0001${f.size}\u0001${sourcesText(f)}\u0001${stateText}\u0001${loading}\u0001${loading ? f.have : f.have > 0}` +
    `\u0001${p ? `${p.bytesPerSec} ${p.peers}` : ""}\u0001${error ?? ""}\u0001${f.complete && d?.url ? d.url : ""}\u0001${loading && !!d}\u0001${copied}\u0001${up}`;
  const row = rows.get(f.id);
  if (row?.key === key) return row.li;
  const li = el("li", "file");
  li.dataset.file = f.id;
  const top = el("div", "top");
  top.append(el("span", "name", f.name));
  top.append(el("span", "meta", `${formatBytes(f.size)} · ${sourcesText(f)}`));
  const st = el("span", "fstate", stateText);
  st.dataset.state = f.complete ? "complete" : stateText;
  top.append(st);
  li.append(top);
  if (loading) {
    const bar = el("progress", "progress");
    bar.setAttribute("aria-label", `${f.name}, downloaded`);
    bar.max = f.size;
    bar.value = f.have;
    li.append(bar);
    const speed = p ? p.bytesPerSec : 0;
    const eta = speed > 0 ? formatEta((f.size - f.have) / speed) : "";
    li.append(el("span", "meta", `${formatBytes(f.have)} of ${formatBytes(f.size)}` +
      (speed ? ` · ${formatBytes(speed)}/s · ${eta}` : "") + (p ? ` · from ${p.peers} peer${p.peers === 1 ? "" : "s"}` : "")));
  }
  if (up) li.append(el("span", "meta upload", up));
  if (error) li.append(el("span", "meta error", `Error: ${error}`));
  const actions = el("div", "actions");
  if (!f.complete && !f.downloading) {
    // Pieces already stored are kept: a download started again fetches only the rest.
    const b = el("button", "download", f.have > 0 ? "Resume" : "Download");
    b.type = "button";
    b.addEventListener("click", () => userDownload(swarm, f.id));
    actions.append(b);
  }
  if (f.complete && d?.url) {
    const a = el("a", "button save", "Save");
    a.href = d.url;
    // Saved under its own name: a file from a shared folder is named by its path there.
    a.download = f.name.split("/").pop() || f.name;
    actions.append(a);
  }
  if (loading && d) {
    const b = el("button", "secondary cancel", "Stop");
    b.type = "button";
    b.addEventListener("click", () => {
      downloads.get(f.id)?.dl.cancel();
      downloads.delete(f.id);
      renderFiles(swarm);
    });
    actions.append(b);
  }
  if (f.complete || (!f.downloading && f.have > 0)) {
    const b = el("button", "secondary unshare", "Stop sharing");
    b.type = "button";
    b.addEventListener("click", () => { swarm.unshare(f.id); forgetShared([f.id]); renderFiles(swarm); });
    actions.append(b);
  }
  const link = el("button", "secondary link", copied ? "Link copied" : "Copy link");
  link.type = "button";
  link.addEventListener("click", async () => {
    const url = `${location.origin}${location.pathname}#room=${currentRoom}&file=${f.id}`;
    try {
      await navigator.clipboard.writeText(url);
      copiedAt.set(f.id, performance.now());
      renderFiles(swarm);
      setTimeout(() => renderFiles(swarm), 2000);
    } catch {
      // No clipboard (a page not served over HTTPS or from localhost, say): show it.
      prompt("Copy this link to the file:", url);
    }
  });
  actions.append(link);
  // Every row has the same buttons: each says whose it is to a screen reader.
  for (const c of actions.children) c.setAttribute("aria-label", `${c.textContent}: ${f.name}`);
  li.append(actions);
  if (row?.li.isConnected) row.li.replaceWith(li);
  rows.set(f.id, { key, li });
  return li;
}

// The control of a list (`#files`, rows `li[data-file]`; `#stored`, rows `li[data-stored]`)
// that has the keyboard's focus, as its row's id and the control's tag and classes: a row is
// drawn anew when what it shows changes (a download's row as it progresses, the stored list
// every second during a download) and moved when the list's order changes, and either drops the
// focus to the page; `refocus` gives it to the same control of the row drawn in its place (or,
// where that control is gone, to the row's first), so that a keyboard user can reach Stop or
// Delete and press it during a download.
function focusedIn(list, key) {
  const f = document.activeElement;
  const li = f?.closest?.(`#${list} li[data-${key}]`);
  if (!li || f === li) return null;
  // (And the rows beside it: where its row is gone — a stored file deleted — the focus goes to
  // the same control of the next row, else of the one before.)
  const next = li.nextElementSibling?.dataset[key];
  const prev = li.previousElementSibling?.dataset[key];
  return { list, key, id: li.dataset[key], next, prev, tag: f.tagName, className: f.className };
}

function refocus(was) {
  if (!was || document.activeElement?.closest?.(`#${was.list} li`)) return;
  const row = (id) => id !== undefined && $(was.list).querySelector(`li[data-${was.key}="${CSS.escape(id)}"]`);
  const li = row(was.id) || row(was.next) || row(was.prev);
  if (!li) return;
  // Else (or with no control named) the row's first control (after Stop, say, its Resume).
  const same = was.tag && [...li.querySelectorAll(was.tag)].find((e) => e.className === was.className);
  (same || li.querySelector("button, a"))?.focus();
}

function renderFiles(swarm, files = swarm.files()) {
  window.swarmdropRenders = (window.swarmdropRenders ?? 0) + 1; // (counted for the E2E tests)
  const focused = focusedIn("files", "file");
  const list = $("files");
  // Past a couple of hundred rows, rows out of view are not laid out (CSS `.long`): every
  // change of the page cost a layout of thousands of rows. Short lists are drawn whole.
  list.classList.toggle("long", files.length > 200);
  const lis = files.map((f) => fileRow(swarm, f));
  const shown = new Set(files.map((f) => f.id));
  for (const [id, { li }] of rows) {
    if (!shown.has(id)) {
      li.remove();
      rows.delete(id);
    }
  }
  // The rows in the swarm's order, each moved only if it is not already where it belongs.
  let at = list.firstChild;
  for (const li of lis) {
    if (li === at) at = at.nextSibling;
    else list.insertBefore(li, at);
  }
  refocus(focused);
  $("no-files").hidden = files.length > 0;
  renderAll(swarm, files);
  guardLeaving(files.some((f) => f.uploading > 0));
  showProgressInTitle(files);
  const want = wantedFile();
  const wanted = files.find((f) => f.id === want);
  const box = $("wanted");
  const hadFocus = box.contains(document.activeElement);
  box.hidden = !wanted || wanted.complete || downloads.has(want);
  // Its Download pressed from the keyboard: the focus goes on to the file's row (its first
  // control: Stop while it downloads).
  if (hadFocus && box.hidden) refocus({ list: "files", key: "file", id: want });
  const key = box.hidden ? "" : JSON.stringify([wanted.id, wanted.name, wanted.size]);
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    box.replaceChildren();
  }
  if (!box.hidden && !box.firstChild) {
    box.replaceChildren(el("span", "", "Someone shared a file with you: "), el("strong", "", wanted.name), el("span", "", " "));
    const b = el("button", "", `Download (${formatBytes(wanted.size)})`);
    b.type = "button";
    b.addEventListener("click", () => userDownload(swarm, wanted.id));
    box.append(b);
  }
}

// While peers fetch files from this page, closing it (or going to another room) cuts their
// downloads off, and where no one else has the whole file they cannot finish: the browser asks
// first. The listener is there only then (a page with one may be kept out of the browser's
// back/forward cache).
let guarding = false;

function holdLeaving(e) {
  e.preventDefault();
  e.returnValue = ""; // (What older browsers look for.)
}

function guardLeaving(on) {
  if (on === guarding) return;
  guarding = on;
  if (on) addEventListener("beforeunload", holdLeaving);
  else removeEventListener("beforeunload", holdLeaving);
}

// The tab's title shows how far the downloads are (for a tab in the background): "42% ·
// swarmdrop", the bytes stored of all files being downloaded together.
const TITLE = document.title;

function showProgressInTitle(files) {
  let have = 0;
  let total = 0;
  for (const f of files) {
    if (f.downloading && !f.complete) {
      have += f.have;
      total += f.size;
    }
  }
  const title = total > 0 ? `${Math.floor((100 * have) / total)}% · ${TITLE}` : TITLE;
  if (document.title !== title) document.title = title;
}

// ---- storage ----

// Whether the browser keeps what is stored here when its disk runs low, and how much there is:
// the status line says so, next to where downloads go. `keep`: whether the page asked the
// browser to keep it (`persist()`): null (not yet), "asking" (no answer yet), or its answer.
let keep = null;

async function renderStorage(swarm) {
  // Where downloads go: this browser's storage through the store's worker, the slower
  // fallback, or nowhere (a private window, say) — then nothing downloaded can be kept.
  const [where, state] = {
    worker: ["this browser (OPFS)", "ready"],
    page: ["this browser (OPFS, slower: no worker)", "warn"],
    none: ["none: downloads cannot be kept here", "error"],
  }[swarm.storage] ?? [swarm.storage, "error"];
  const parts = [where];
  let persisted = null;
  if (swarm.storage !== "none" && navigator.storage) {
    // What the site uses, as the browser counts it (a file counts with its length), and not its
    // quota: Chromium reports usage + 10 GiB whatever the real one.
    try {
      const { usage } = await navigator.storage.estimate();
      parts.push(`${formatBytes(usage)} used`);
    } catch { /* no estimate: the line says less */ }
    try { persisted = await navigator.storage.persisted(); } catch { /* unknown */ }
    if (persisted === true) parts.push("kept until you delete it");
    else if (keep === "asking") parts.push("asked the browser to keep it");
    else if (keep === false) parts.push("the browser did not promise to keep it: it may clear it when the disk runs low");
    else if (persisted === false) parts.push("the browser may clear it when the disk runs low");
  }
  show("storage", parts.join(" · "), state);
  $("storage").dataset.persisted = String(persisted);
}

// Asks the browser to keep this site's storage (Firefox asks the user; Chromium decides by
// itself), once, when the user first downloads: a download kept for resuming should not vanish
// when the disk runs low. Never waited on: Firefox's question may stay unanswered.
function keepStorage(swarm) {
  if (keep !== null || swarm.storage === "none" || !navigator.storage?.persist) return;
  keep = "asking";
  const answered = (granted) => { keep = granted; renderStorage(swarm); };
  navigator.storage.persist().then((granted) => answered(granted === true), () => answered(false));
  renderStorage(swarm);
}

async function renderStored(swarm) {
  let stored = [];
  try { stored = await swarm.storedFiles(); } catch { return; }
  // Drawn again only when what it shows changed, keeping the keyboard's place (see `refocus`).
  const list = $("stored");
  const key = JSON.stringify(stored.map((f) => [f.id, f.name, f.size, f.have, f.complete]));
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  const focused = focusedIn("stored", "stored");
  list.replaceChildren(
    ...stored.map((f) => {
      const li = el("li", "file");
      li.dataset.stored = f.id;
      const top = el("div", "top");
      top.append(el("span", "name", f.name), el("span", "meta", `${formatBytes(f.have)} of ${formatBytes(f.size)}${f.complete ? "" : " (partial)"}`));
      li.append(top);
      const b = el("button", "secondary delete", "Delete");
      b.type = "button";
      b.addEventListener("click", async () => {
        await swarm.deleteStored(f.id);
        downloads.delete(f.id);
        renderStored(swarm);
        renderStorage(swarm);
        renderFiles(swarm);
      });
      b.setAttribute("aria-label", `Delete: ${f.name}`);
      li.append(b);
      return li;
    }),
  );
  refocus(focused);
  $("stored-box").hidden = stored.length === 0;
}

// ---- sharing ----

// Files to share wait in one queue and are prepared (hashed) one at a time: the box above the
// list shows which one, how far, and how many are left, with Cancel (which drops the rest
// too); what could not be shared is listed there, not in one alert per file.
const SHOW_FAILED = 20;
const sharing = { queue: [], current: null, done: 0, shared: 0, last: "", failed: [], failedMore: 0 };
let renderFilesSoon = () => {};

function shareAll(swarm, items) {
  sharing.queue.push(...items);
  renderSharing();
  if (!sharing.current) shareNext(swarm);
}

function shareFailed(name, why) {
  if (sharing.failed.length < SHOW_FAILED) sharing.failed.push(`${name}: ${why}`);
  else sharing.failedMore++;
}

// Small files come and go far faster than anyone reads, and each change of the page costs it
// a frame (style, layout, paint, and a pass over every row whose drawing waits till it comes
// into view): while files are prepared, the box shows them at most four times a second and the
// list takes them in once a second (5,000 small files took 1.8× as long through the page as
// through `swarm.share` when both followed every file; at 10 and 4 updates a second, 1.5–1.7×
// with a profiler attached, and at 4 and 1, 1.1–1.3×; see the files bench).
const renderSharingSoon = throttled(() => renderSharing(), 250);

async function shareNext(swarm) {
  let listed = performance.now();
  while (sharing.queue.length > 0) {
    const item = sharing.queue.shift();
    const { file } = item;
    // A file picked again after a reload is shared under the name it had then (its path in a
    // shared folder, where it is picked on its own), so that it keeps its id (see `before`).
    const name = item.name === file.name ? (sharedBefore(file)?.name ?? item.name) : item.name;
    const abort = new AbortController();
    const current = { name, size: file.size, hashed: 0, abort };
    sharing.current = current;
    if (sharing.done === 0) renderSharing();
    else renderSharingSoon();
    try {
      const shared = await swarm.share(file, {
        name,
        signal: abort.signal,
        onProgress: (hashed) => { current.hashed = hashed; renderSharingSoon(); },
      });
      remember(shared);
      sharing.shared++;
      sharing.last = name;
    } catch (e) {
      if (!abort.signal.aborted) shareFailed(name, e.message ?? String(e));
    }
    sharing.done++;
    if (sharing.queue.length === 0 || performance.now() - listed > 1000) {
      listed = performance.now();
      renderFilesSoon();
    }
  }
  const { shared, last } = sharing;
  // (Each batch its own kind: it says how many files it had.)
  if (shared > 0) announce(`shared ${performance.now()}`, () => (shared === 1 ? `Shared: ${last}` : `Shared ${shared} files`));
  sharing.shared = 0;
  sharing.current = null;
  sharing.done = 0;
  renderSharing();
}

function cancelSharing() {
  sharing.queue.length = 0;
  sharing.current?.abort.abort();
  renderSharing();
}

function renderPreparing() {
  const c = sharing.current;
  if (!c) return;
  const of = sharing.done + 1 + sharing.queue.length;
  $("preparing-what").textContent = `Preparing ${c.name}`;
  const bar = $("preparing-bar");
  bar.max = Math.max(c.size, 1);
  bar.value = c.hashed;
  const percent = c.size > 0 ? Math.floor((c.hashed / c.size) * 100) : 0;
  $("preparing-meta").textContent = `${formatBytes(c.hashed)} of ${formatBytes(c.size)} (${percent}%)` +
    (of > 1 ? ` · file ${sharing.done + 1} of ${of}` : "");
}

function renderSharing() {
  $("preparing").hidden = !sharing.current;
  renderPreparing();
  const failed = sharing.failed.length > 0;
  $("share-failed").hidden = !failed;
  if (failed) {
    const items = sharing.failed.map((line) => el("li", "", line));
    if (sharing.failedMore > 0) items.push(el("li", "", `and ${sharing.failedMore} more`));
    $("share-failed-list").replaceChildren(el("li", "", "Could not share:"), ...items);
  }
  $("sharing").hidden = !sharing.current && !failed;
}

const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

// ---- shared before a reload ----

// A page may read a file from disk only once the user picks or drops it, and a reload takes
// that away: what the page shared leaves the swarm (unless others have it whole) and peers'
// downloads of it stop. So the page keeps, per room, what it shared — id, name and size, in
// the tab's own storage (`sessionStorage`, `swarmdrop.shared.<room>`: it lasts as long as the
// tab, reloads included, and another tab of the same room has its own, so a tab is never asked
// for what another shared) — and after a reload lists what it no longer offers, asking for it
// again. A file picked or dropped on its own whose name and size match one of them is shared
// under the name it had (its path in a folder): the same bytes give the same id, so peers'
// downloads of it go on where they were. A file shared under the name of one listed but with
// other bytes (changed since) takes its place: the page no longer asks for the old one.
// "Stop sharing" forgets a file, "Forget them" the files listed.
const SHOW_BEFORE = 20;
const before = {
  key: "",
  // id → { id, name, size }: what this page shared in this room, oldest first.
  all: new Map(),
  // The same for what it shared before this page loaded and does not offer now.
  missing: new Map(),
  // `missing` by the last part of the name and the size (entries since offered again stay in
  // it, skipped): a drop of thousands of files looks each up at once.
  byName: new Map(),
  // `missing` by the whole name (its path in a folder), kept alike.
  byPath: new Map(),
};
const nameAndSize = (name, size) => `${name.split("/").pop()}\u0000${size}`;

function loadShared(room, files) {
  before.key = `swarmdrop.shared.${room}`;
  let list = [];
  try {
    list = JSON.parse(sessionStorage.getItem(before.key) ?? "[]");
  } catch (e) {
    console.warn("swarmdrop: the files shared before could not be read:", e);
  }
  for (const e of Array.isArray(list) ? list : []) {
    if (typeof e?.id === "string" && typeof e.name === "string" && Number.isFinite(e.size)) {
      before.all.set(e.id, { id: e.id, name: e.name, size: e.size });
    }
  }
  // (Files stored whole in this browser are offered from there.)
  const offered = new Set(files.filter((f) => f.complete).map((f) => f.id));
  for (const e of before.all.values()) {
    if (offered.has(e.id)) continue;
    before.missing.set(e.id, e);
    for (const [index, key] of [[before.byName, nameAndSize(e.name, e.size)], [before.byPath, e.name]]) {
      const same = index.get(key);
      if (same) same.push(e);
      else index.set(key, [e]);
    }
  }
  // Written when the page goes (a reload) or is hidden (where a hidden page may be discarded
  // without going), not on every change: a drop of thousands of files would write the list
  // thousands of times.
  addEventListener("pagehide", saveShared);
  document.addEventListener("visibilitychange", () => { if (document.hidden) saveShared(); });
}

// A tab's storage holds some 5 MB per site: the newest files shared are kept within this many
// characters (some 10,000 files with paths of 100 characters), rather than none of them where
// all do not fit.
const SAVE_SHARED_CHARS = 2000000;

function saveShared() {
  if (!before.key) return;
  try {
    let list = [...before.all.values()];
    let json = JSON.stringify(list);
    while (json.length > SAVE_SHARED_CHARS && list.length > 1) {
      list = list.slice(Math.ceil(list.length / 4));
      json = JSON.stringify(list);
    }
    if (list.length === 0) sessionStorage.removeItem(before.key);
    else sessionStorage.setItem(before.key, json);
  } catch (e) {
    console.warn("swarmdrop: the files shared could not be kept for a reload:", e);
  }
}

// The file shared before the reload that `file`, picked on its own, is taken for: the first
// not offered now with its size and the last part of its name.
function sharedBefore(file) {
  const same = before.byName.get(nameAndSize(file.name, file.size)) ?? [];
  return same.find((e) => before.missing.has(e.id)) ?? null;
}

function remember({ id, name, size }) {
  // (At most as many as a page may share: the oldest go first.)
  before.all.delete(id);
  before.all.set(id, { id, name, size });
  if (before.all.size > 10000) before.all.delete(before.all.keys().next().value);
  const had = before.missing.delete(id);
  // What was shared under this name before the reload and is not this file: its bytes changed
  // since (or it was another file of that name), so it is not asked for any more.
  const replaced = (before.byPath.get(name) ?? [])
    .filter((e) => e.id !== id && before.missing.has(e.id))
    .map((e) => e.id);
  if (replaced.length > 0) forgetShared(replaced);
  else if (had) renderBefore();
}

function forgetShared(ids) {
  for (const id of ids) {
    before.all.delete(id);
    before.missing.delete(id);
  }
  renderBefore();
}

function renderBefore() {
  const n = before.missing.size;
  $("before").hidden = n === 0;
  if (n === 0) return;
  $("before-what").textContent = n === 1
    ? "This page shared a file before it was reloaded. A browser lets a page read a file only once it is picked: pick it again to go on sharing it."
    : `This page shared ${n} files before it was reloaded. A browser lets a page read a file only once it is picked: pick them again to go on sharing them.`;
  const shown = [...before.missing.values()].slice(0, SHOW_BEFORE);
  const items = shown.map((e) => el("li", "", `${e.name} (${formatBytes(e.size)})`));
  if (n > shown.length) items.push(el("li", "", `and ${n - shown.length} more`));
  $("before-list").replaceChildren(...items);
  $("before-pick").textContent = n === 1 ? "Pick it again" : "Pick them again";
  $("before-folder").hidden = ![...before.missing.values()].some((e) => e.name.includes("/"));
}

// A dropped folder is read through the entries API: every file in it and its subfolders, each
// named by its path from the folder dropped ("album/2024/a.jpg"). `entry.file()` and
// `readEntries` take callbacks; `readEntries` gives a batch at a time until it gives none.
async function filesInFolder(folder) {
  const out = [];
  const folders = [folder];
  while (folders.length > 0) {
    const reader = folders.shift().createReader();
    for (;;) {
      const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
      if (batch.length === 0) break;
      for (const entry of batch) {
        if (entry.isDirectory) folders.push(entry);
        else out.push({ entry, name: entry.fullPath.replace(/^\/+/, "") });
      }
    }
  }
  out.sort(byName);
  const files = [];
  for (const { entry, name } of out) {
    try {
      files.push({ file: await new Promise((ok, fail) => entry.file(ok, fail)), name });
    } catch (e) {
      shareFailed(name, e.message ?? String(e));
    }
  }
  return files;
}

// What a drop carries: files as they are, folders read whole. Its entries must be taken while
// the event lasts (the list is emptied after); folders are read after that.
async function dropped(dataTransfer) {
  const files = [...dataTransfer.files];
  const items = [...(dataTransfer.items ?? [])].filter((i) => i.kind === "file");
  const entries = items.length === files.length ? items.map((i) => i.webkitGetAsEntry?.() ?? null) : [];
  const out = [];
  for (const [i, file] of files.entries()) {
    const entry = entries[i];
    if (!entry?.isDirectory) {
      out.push({ file, name: file.name });
      continue;
    }
    try {
      const inside = await filesInFolder(entry);
      if (inside.length === 0) shareFailed(entry.name, "a folder with no files in it");
      out.push(...inside);
    } catch (e) {
      shareFailed(entry.name, `the folder could not be read (${e.message ?? e})`);
    }
  }
  return out;
}

function setupFiles(swarm) {
  const input = $("file-input");
  input.addEventListener("change", () => {
    shareAll(swarm, [...input.files].map((file) => ({ file, name: file.name })));
    input.value = "";
  });
  // A folder picked: its files, each named by its path from that folder.
  const folder = $("folder-input");
  folder.addEventListener("change", () => {
    const files = [...folder.files].map((file) => ({ file, name: file.webkitRelativePath || file.name }));
    shareAll(swarm, files.sort(byName));
    folder.value = "";
  });
  $("preparing-cancel").addEventListener("click", cancelSharing);
  $("download-all").addEventListener("click", () => downloadAll(swarm));
  $("zip-all").addEventListener("click", () => zipAll(swarm));
  $("zip-cancel").addEventListener("click", () => zip.abort?.abort());
  // (The swarm's files as it joined: stored ones resumed; read once for both uses below.)
  const joined = swarm.files();
  loadShared(currentRoom, joined);
  // (Buttons that open the pickers, not labels of them: a label is not reached with Tab.)
  $("before-pick").addEventListener("click", () => $("file-input").click());
  $("before-folder").addEventListener("click", () => $("folder-input").click());
  $("before-forget").addEventListener("click", () => forgetShared([...before.missing.keys()]));
  renderBefore();
  $("share-failed-dismiss").addEventListener("click", () => {
    sharing.failed = [];
    sharing.failedMore = 0;
    renderSharing();
  });
  // Files dropped anywhere on the page (see `dropsOnThePage`), also before this, are shared.
  onDrop = (items) => shareAll(swarm, items);
  for (const items of droppedEarly.splice(0)) onDrop(items);
  // The lists are rebuilt at most every 100 ms however many events come (a peer that shares
  // hundreds of files announces each; one rebuild per event froze the page for seconds), and
  // at most a tenth of the time where a rebuild takes longer (thousands of files). The stored
  // list reads every stored file's record from the browser's storage, so it is read again at
  // most once a second (with a thousand files stored, reading it on every change of the file
  // list halved the speed of "Download all").
  const renderStoredSoon = throttled(() => renderStored(swarm), 1000);
  let announcedSince = false;
  const filesSoon = throttled(() => {
    const files = swarm.files();
    if (announcedSince) {
      for (const f of files) if (f.downloading && !f.complete) startDownload(swarm, f.id, false);
    }
    announcedSince = false;
    renderFiles(swarm, files);
    renderStoredSoon();
  }, 100);
  const soon = (announced) => {
    announcedSince ||= announced;
    filesSoon();
  };
  renderFilesSoon = () => soon(false);
  swarm.on("file-announced", () => soon(true));
  for (const ev of ["file-removed", "file-complete"]) swarm.on(ev, () => soon(false));
  swarm.on("file-complete", ({ id }) => {
    renderStorage(swarm);
    // Stored whole here, it is offered from there.
    if (before.missing.delete(id)) renderBefore();
    announce("downloaded", () => `Downloaded: ${nameOf(swarm, id)}`, (n) => `Downloaded ${n} files`);
  });
  // Files stored before this page opened (`join` resumed them): unfinished downloads continue
  // on their own, and finished ones are handed over at once — both tracked, so that every
  // download, finished or not, has its progress and its Save link after a reload too.
  for (const f of joined) if (f.downloading || f.complete) startDownload(swarm, f.id, false);
  setInterval(() => renderFiles(swarm), 1000);
  setInterval(() => renderStorage(swarm), 10000);
  renderFiles(swarm);
  renderStored(swarm);
}
