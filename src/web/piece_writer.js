// The piece writer of swarmdrop's OPFS store (src/web/store.rs), in a dedicated module worker.
//
// A verified piece is written with a FileSystemSyncAccessHandle, which only workers get: the
// bytes go to the file from this thread, off the page's main thread (which runs the swarm),
// instead of through `createWritable()`'s stream, swap file and rename on the page. A piece is
// written under a temporary name and only then moved to its own name, so a piece file that
// exists was written whole. (No `flush()`: an fsync per piece would hold this thread on the disk
// for every MiB, and the page's writable streams, the fallback, do not sync either.)
//
// This one file is both sides: imported by the wasm package on the page it gives the URL to
// start the worker from (itself); loaded as a worker it serves requests
//   { seq, path: [folder…], name, data: ArrayBuffer, len }   (data transferred, not copied;
//   the piece is its first `len` bytes)
// answering { seq, data } when the piece is on disk, or { seq, data, error } with the browser's
// reason; `data` is the buffer handed back (transferred) for the page to fill again.
// Its first message, { ready: true }, says it listens.

export function pieceWriterUrl() {
  return import.meta.url;
}

const inWorker =
  typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope;

if (inWorker) {
  // Folder handles by path, opened once.
  const folders = new Map();
  // Writes of one file run one after another (the same piece may be written again after a
  // write that was given up); writes of different files run side by side.
  const chains = new Map();

  const folder = (path) => {
    const key = path.join("/");
    let dir = folders.get(key);
    if (!dir) {
      dir = (async () => {
        let d = await navigator.storage.getDirectory();
        for (const name of path) d = await d.getDirectoryHandle(name, { create: true });
        return d;
      })();
      // A failed open is not kept: the next write tries again.
      dir.catch(() => folders.delete(key));
      folders.set(key, dir);
    }
    return dir;
  };

  // A handle still held by a writer that is going away (the page that was just reloaded)
  // is let go within moments: wait for it a little.
  const lock = async (file) => {
    for (let tries = 0; ; tries++) {
      try {
        return await file.createSyncAccessHandle();
      } catch (e) {
        if (tries >= 40 || !(e && e.name === "NoModificationAllowedError")) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };

  // Where handles cannot move, a piece is written in place (its length still tells a whole
  // piece from a cut one).
  const canMove = typeof FileSystemHandle.prototype.move === "function";

  const write = async (path, name, data, len) => {
    const dir = await folder(path);
    const file = await dir.getFileHandle(canMove ? `${name}.part` : name, { create: true });
    const access = await lock(file);
    try {
      access.truncate(0);
      const bytes = new Uint8Array(data, 0, len);
      let at = 0;
      while (at < bytes.length) {
        const n = access.write(bytes.subarray(at), { at });
        if (!(n > 0)) throw new Error(`wrote ${at} of ${bytes.length} bytes`);
        at += n;
      }
    } finally {
      access.close();
    }
    if (canMove) {
      try {
        await file.move(name);
      } catch (e) {
        // An older copy under the final name (a write given up, then repeated), where the
        // browser does not replace it: remove it, then move.
        await dir.removeEntry(name).catch(() => {});
        await file.move(name);
      }
    }
  };

  self.onmessage = (ev) => {
    const { seq, path, name, data } = ev.data;
    const len = typeof ev.data.len === "number" ? ev.data.len : data.byteLength;
    const key = `${path.join("/")}/${name}`;
    const before = chains.get(key) || Promise.resolve();
    const done = before.then(() => write(path, name, data, len));
    const tail = done.catch(() => {});
    chains.set(key, tail);
    done.then(
      () => self.postMessage({ seq, data }, [data]),
      (e) => self.postMessage({ seq, data, error: `${(e && e.name) || "Error"}: ${(e && e.message) || e}` }, [data]),
    );
    tail.then(() => {
      if (chains.get(key) === tail) chains.delete(key);
    });
  };
  // Listening now: the page posts nothing before this.
  self.postMessage({ ready: true });
}
