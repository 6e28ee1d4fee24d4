// The swarmdrop page: joins the room named in the URL hash and shows peers and a chat.
import init, { version, qrSvg, Swarm } from "/pkg/swarmdrop.js";

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
  return room;
}

const short = (id) => (id ? id.slice(0, 8) : "?");

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
        const route = el("span", `badge ${p.route}`, p.route === "unknown" ? "route…" : p.route);
        meta.append(route);
        if (p.rttMs !== null) meta.append(el("span", "rtt", `${p.rttMs.toFixed(1)} ms`));
        if (p.safetyNumber) {
          const safety = el("span", "safety", p.safetyNumber);
          safety.title = "Safety number";
          meta.append(safety);
        }
      }
      li.append(meta);
      return li;
    }),
  );
  const connected = peers.filter((p) => p.state === "connected").length;
  show("peer-count", String(connected));
  $("no-peers").hidden = peers.length > 0;
}

function addChat(who, text, mine) {
  const log = $("chat-log");
  const li = el("li", mine ? "me" : "");
  li.append(el("span", "who", mine ? "you" : short(who)), el("span", "text", text));
  log.append(li);
  log.scrollTop = log.scrollHeight;
}

async function main() {
  try {
    await init();
  } catch (e) {
    show("version", `failed to load: ${e}`, "error");
    return;
  }
  show("version", `swarmdrop ${version()}`, "ready");
  const room = roomFromHash();
  show("room", room);
  setupInvite(room);
  const signal = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  let swarm;
  try {
    swarm = await Swarm.join({ signal, room });
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
  // Page open → first peer connected (data channel open and hello), for `cargo xtask bench join`.
  window.swarmdropTimings = { firstConnectedMs: null };
  swarm.on("peer-state", ({ state }) => {
    if (state === "connected" && window.swarmdropTimings.firstConnectedMs === null) {
      window.swarmdropTimings.firstConnectedMs = performance.now();
    }
  });
  swarm.on("error", ({ message }) => console.warn("swarmdrop:", message));
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
  addEventListener("pagehide", () => swarm.leave());
}

main();
