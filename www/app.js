// The swarmdrop page. Loads the wasm core and joins the room named in the URL hash.
import init, { version, connectSignal } from "/pkg/swarmdrop.js";

const $ = (id) => document.getElementById(id);

function show(id, text, state) {
  const el = $(id);
  el.textContent = text; // always text, never HTML
  if (state) el.dataset.state = state;
}

function randomRoom() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function roomFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  let room = params.get("room");
  if (!room) {
    room = randomRoom();
    params.set("room", room);
    history.replaceState(null, "", `#${params}`);
  }
  return room;
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
  const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  try {
    const session = await connectSignal(wsUrl, room);
    show("signal-state", "open", "open");
    show("peer-id", session.id);
    session.onClose((code, reason) => show("signal-state", `closed (${code}${reason ? ": " + reason : ""})`, "closed"));
    window.swarmdropSession = session;
  } catch (e) {
    show("signal-state", `failed: ${e.message ?? e}`, "error");
  }
}

main();
