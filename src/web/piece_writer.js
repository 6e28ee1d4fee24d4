// The store worker of swarmdrop's OPFS store (src/web/store.rs): a dedicated module worker that
// writes and reads pieces through FileSystemSyncAccessHandles, which only workers get.
//
// A download is one file, `data` (laid out as src/transfer/stored.rs says): the file's bytes,
// one mark byte per piece after them (1: the piece is in `data`, whole and verified), then the
// manifest and a trailer, written with the first piece. Each piece is written at its offset
// through a handle kept open while the download runs, then its mark. That is one pwrite per
// piece and one per mark, straight to the disk from this thread: no file to create, lock, close
// and rename per piece, no round trip to the browser's storage service per piece (which the
// page's main thread and the browser process paid for on every MiB before), one file to open
// per download (Firefox takes ~4 ms to open one), and a finished file is the start of `data`.
// (No `flush()`: an fsync per piece would hold this thread on the disk for every MiB; a mark is
// written after its piece, so a reload or a closed tab never finds a mark without its bytes.)
// Files stored before that layout keep their marks in a file of their own, `have` (byte i for
// piece i), and their manifest in `manifest`: such a download goes on as it was stored.
//
// Where `data` is locked by another tab's worker, a piece is written as its own file `p<i>`
// instead (the page's fallback layout, see store.rs), under a temporary name then moved, so a
// piece file that exists was written whole.
//
// The page starts it as a module worker from its URL in the package (`link_to!` in store.rs:
// the page never imports it, so it costs page loads nothing). It answers requests, all with a
// `seq` echoed in the answer and a `path` (the file's folder from the origin's root):
//   { op: "write", piece, at, data, len, size, pieces, tail? }  piece `piece`, the first `len`
//        bytes of `data` (transferred), at byte `at` of the file's `data`, for a file of `size`
//        bytes in `pieces` pieces; `tail` (the manifest and trailer) lays out a new `data`,
//        first making it its full length (the check that the site may store all of it).
//        Answers { where: "data" | "piece" | "untold", data } (the buffer handed back for the
//        page to fill again; "untold": a new `data` and no `tail`, nothing written)
//   { op: "read", at, len, data }  `len` bytes at `at` of `data` into the buffer `data` (or a
//        new one if it is too small), through the open handle or else a snapshot of the file
//        (a read never opens the handles); answers { data }
//   { op: "state" }  answers { have: ArrayBuffer, size, manifest? } from the open handles (the
//        marks, the length of `data`, the manifest's bytes where `data` holds them), or
//        { closed: true } if this worker has none open on the folder (or one on a new `data`)
//   { op: "close" }  lets the folder's handles go (before the file is handed over or deleted)
//   { op: "put", name, data, len }  writes the whole file `name` (the storage probe)
// A failure answers { error } with the browser's reason (and `data`, if one was sent).
// Its first message, { ready: true }, says it listens.

// Only a worker runs it (loaded anywhere else, it does nothing).
const inWorker =
  typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope;

if (inWorker) {
  // Folder handles by path, opened once.
  const folders = new Map();
  // Open handles by folder: { data, have } (sync access handles).
  const open = new Map();
  // Folders whose `data` another worker holds, with when to try it again.
  const busy = new Map();
  // Requests on one folder run one after another; folders run side by side.
  const chains = new Map();
  const BUSY_RETRY_MS = 5000;

  const folder = (path) => {
    const key = path.join("/");
    let dir = folders.get(key);
    if (!dir) {
      dir = (async () => {
        let d = await navigator.storage.getDirectory();
        for (const name of path) d = await d.getDirectoryHandle(name, { create: true });
        return d;
      })();
      // A failed open is not kept: the next request tries again.
      dir.catch(() => folders.delete(key));
      folders.set(key, dir);
    }
    return dir;
  };

  // `f(dir)` on the folder at `path`; if that fails, once more on the folder opened anew: one
  // kept from before may have been removed since (its file deleted, by this tab or another;
  // browsers then fail with NotFoundError, Firefox with UnknownError).
  const inFolder = async (path, f) => {
    try {
      return await f(await folder(path));
    } catch {
      folders.delete(path.join("/"));
      return await f(await folder(path));
    }
  };

  const locked = (e) => e && e.name === "NoModificationAllowedError";

  // A handle still held by a worker that is going away (the page that was just reloaded) is
  // let go within moments: wait for it a little.
  const lock = async (file, tries) => {
    for (let i = 0; ; i++) {
      try {
        return await file.createSyncAccessHandle();
      } catch (e) {
        if (i + 1 >= tries || !locked(e)) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };

  const MAGIC = "sdstore2";
  const TRAILER = 24;

  // { size, pieces, manifestLen } from the trailer `data` ends with, or null if it ends
  // otherwise (src/transfer/stored.rs: a trailer accounts for the file's whole length).
  const trailer = (data) => {
    const n = data.getSize();
    if (n < TRAILER) return null;
    const t = new Uint8Array(TRAILER);
    if (data.read(t, { at: n - TRAILER }) !== TRAILER) return null;
    for (let i = 0; i < MAGIC.length; i++) if (t[16 + i] !== MAGIC.charCodeAt(i)) return null;
    const v = new DataView(t.buffer);
    const manifestLen = v.getUint32(0, true);
    const size = Number(v.getBigUint64(4, true));
    const pieces = v.getUint32(12, true);
    return size + pieces + manifestLen + TRAILER === n ? { size, pieces, manifestLen } : null;
  };

  // The folder's file `name` if it exists, else null.
  const existing = async (dir, name) => {
    try {
      return await dir.getFileHandle(name);
    } catch (e) {
      if (e && e.name === "NotFoundError") return null;
      throw e;
    }
  };

  // The folder's open handles, opened (and `data` created) if needed: { data, laid } where
  // `data` ends with its trailer (`laid`: its size and piece count), { data, have } for a file
  // stored in the layout before, { data } for a new one (laid out by its first write). Throws a
  // NoModificationAllowedError at once while another worker was seen to hold them.
  const handles = async (path) => {
    const key = path.join("/");
    let h = open.get(key);
    if (h) return h;
    const until = busy.get(key);
    if (until !== undefined && Date.now() < until) {
      throw new DOMException(`${key}/data is open in another tab`, "NoModificationAllowedError");
    }
    // Once another tab was seen to hold it, one try (no wait) every few seconds.
    const tries = until === undefined ? 40 : 1;
    const [dir, file] = await inFolder(path, async (d) => [d, await d.getFileHandle("data", { create: true })]);
    try {
      const data = await lock(file, tries);
      try {
        // A folder with `have` is stored as before, whatever `data` ends with (a file's own
        // bytes may end like a trailer).
        const old = await existing(dir, "have");
        const laid = old ? null : trailer(data);
        h = { data, laid, have: old && (await lock(old, tries)) };
      } catch (e) {
        data.close();
        throw e;
      }
    } catch (e) {
      if (locked(e)) busy.set(key, Date.now() + BUSY_RETRY_MS);
      throw e;
    }
    busy.delete(key);
    open.set(key, h);
    return h;
  };

  // The folder's handles, or null while another tab holds them.
  const handlesUnlessHeld = async (path) => {
    try {
      return await handles(path);
    } catch (e) {
      if (!locked(e)) throw e;
      return null;
    }
  };

  const close = (key) => {
    const h = open.get(key);
    if (!h) return;
    open.delete(key);
    for (const a of h.have ? [h.data, h.have] : [h.data]) {
      try {
        a.flush();
      } catch {}
      try {
        a.close();
      } catch {}
    }
  };

  const writeAll = (access, bytes, at) => {
    let done = 0;
    while (done < bytes.length) {
      const n = access.write(bytes.subarray(done), { at: at + done });
      // Firefox writes what fits in the site's quota and returns the count, where Chromium
      // throws a QuotaExceededError: a write that stores nothing is a full quota.
      if (!(n > 0)) {
        throw new DOMException(
          `the browser stored ${done} of ${bytes.length} bytes: no room left for this site`,
          "QuotaExceededError",
        );
      }
      done += n;
    }
  };

  const readAll = (access, bytes, at) => {
    let done = 0;
    while (done < bytes.length) {
      const n = access.read(bytes.subarray(done), { at: at + done });
      if (!(n > 0)) throw new Error(`read ${done} of ${bytes.length} bytes at ${at}: the file ends`);
      done += n;
    }
  };

  const canMove = typeof FileSystemHandle.prototype.move === "function";

  // A whole file `name`, written under a temporary name then moved (see the top).
  const put = async (path, name, bytes) => {
    const [dir, file] = await inFolder(path, async (d) => [
      d,
      await d.getFileHandle(canMove ? `${name}.part` : name, { create: true }),
    ]);
    const access = await lock(file, 40);
    try {
      access.truncate(0);
      writeAll(access, bytes, 0);
    } finally {
      access.close();
    }
    if (canMove) {
      try {
        await file.move(name);
      } catch (e) {
        // An older copy under the final name, where the browser does not replace it.
        await dir.removeEntry(name).catch(() => {});
        await file.move(name);
      }
    }
  };

  const ONE = new Uint8Array([1]);

  // A failure for want of room: over the site's quota, or the disk itself full.
  const full = (e) =>
    !!e && (e.name === "QuotaExceededError" || /NO_DEVICE_SPACE|quota/i.test(`${e.name} ${e.message}`));

  const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;

  // Makes `data` `len` bytes long where it is shorter: a file that does not fit fails at
  // once, saying how much it needs, not when the storage runs out halfway (the quota counts a
  // file's length; the extension is sparse).
  const extend = async (data, len) => {
    const need = len - data.getSize();
    if (need > 0) {
      try {
        data.truncate(len);
      } catch (e) {
        // (Firefox throws its own NS_ERROR_FILE_NO_DEVICE_SPACE here.)
        if (!full(e)) throw e;
        // What is left, where the browser tells (Chromium's estimate reports usage + 10 GiB
        // whatever the quota, so it is said only where it explains the failure).
        let left = "";
        try {
          const { quota, usage } = await navigator.storage.estimate();
          if (quota - usage < need) {
            left = `, and the browser lets this site store ${mib(Math.max(0, quota - usage))} more`;
          }
        } catch {}
        throw new DOMException(`this file needs ${mib(need)} more${left}`, "QuotaExceededError");
      }
    }
  };

  // A file stored in the layout before: whether the browser lets this site store all of it,
  // asked at its first write here (`data` extended to the file's size and back).
  const checkRoom = async (h, size) => {
    if (h.checked) return;
    const before = h.data.getSize();
    await extend(h.data, size);
    if (h.data.getSize() !== before) h.data.truncate(before);
    h.checked = true;
  };

  // Lays out a new `data` (src/transfer/stored.rs): its full length, then `tail` (the manifest
  // and the trailer) after the bytes and the marks. What a first write cut short left in it
  // (no trailer yet, so no piece was marked) goes first.
  const layOut = async (h, size, pieces, tail) => {
    if (h.data.getSize() > 0) h.data.truncate(0);
    await extend(h.data, size + pieces + tail.length);
    writeAll(h.data, tail, size + pieces);
    h.laid = trailer(h.data);
    if (!h.laid) throw new Error("the stored file's trailer did not read back");
  };

  const buffer = (data, len) =>
    data instanceof ArrayBuffer && data.byteLength >= len ? data : new ArrayBuffer(len);

  const run = async (req) => {
    const key = req.path.join("/");
    switch (req.op) {
      case "write": {
        const bytes = new Uint8Array(req.data, 0, req.len);
        const tail = req.tail ? new Uint8Array(req.tail) : null;
        const h = await handlesUnlessHeld(req.path);
        if (h) {
          if (h.have) {
            await checkRoom(h, req.size);
          } else if (!h.laid) {
            if (!tail) return { where: "untold", data: req.data };
            await layOut(h, req.size, req.pieces, tail);
          }
          // Where the piece's mark is: its own file's byte, or after the file's bytes.
          const [marks, at] = h.have ? [h.have, req.piece] : [h.data, h.laid.size + req.piece];
          // A piece already there (written by another tab) is left as it is: rewriting the
          // same bytes would still make the browser refuse to read a `File` of `data` handed
          // over before.
          const mark = new Uint8Array(1);
          if (marks.read(mark, { at }) !== 1 || mark[0] !== 1) {
            writeAll(h.data, bytes, req.at);
            writeAll(marks, ONE, at);
          }
          return { where: "data", data: req.data };
        }
        // Another tab holds `data`: the piece as its own file, and the manifest beside it (what
        // lists the piece should that tab never lay `data` out).
        await put(req.path, `p${req.piece}`, bytes);
        const dir = await folder(req.path);
        if (tail && !(await existing(dir, "manifest"))) {
          await put(req.path, "manifest", tail.subarray(0, tail.length - TRAILER));
        }
        return { where: "piece", data: req.data };
      }
      case "read": {
        const out = buffer(req.data, req.len);
        const into = new Uint8Array(out, 0, req.len);
        // Reading takes no lock: a download that was stopped lets go of its file (for another
        // tab to write into), and serving its pieces must not take the file back.
        const h = open.get(key);
        if (h) {
          readAll(h.data, into, req.at);
        } else {
          // Not open here (or held by another tab): read through a snapshot of the file.
          const file = await inFolder(req.path, async (d) => (await d.getFileHandle("data")).getFile());
          const got = await file.slice(req.at, req.at + req.len).arrayBuffer();
          if (got.byteLength !== req.len) throw new Error(`read ${got.byteLength} of ${req.len} bytes`);
          into.set(new Uint8Array(got));
        }
        return { data: out };
      }
      case "state": {
        const h = open.get(key);
        if (!h) return { closed: true };
        const size = h.data.getSize();
        if (h.have) {
          const have = new ArrayBuffer(h.have.getSize());
          readAll(h.have, new Uint8Array(have), 0);
          return { have, size };
        }
        // (A new `data`, not laid out yet, holds nothing.)
        if (!h.laid) return { closed: true };
        const { size: bytes, pieces, manifestLen } = h.laid;
        const have = new ArrayBuffer(pieces);
        readAll(h.data, new Uint8Array(have), bytes);
        const manifest = new ArrayBuffer(manifestLen);
        readAll(h.data, new Uint8Array(manifest), bytes + pieces);
        return { have, size, manifest };
      }
      case "close":
        close(key);
        return {};
      case "put":
        await put(req.path, req.name, new Uint8Array(req.data, 0, req.len));
        return { data: req.data };
      default:
        throw new Error(`unknown request ${req.op}`);
    }
  };

  self.onmessage = (ev) => {
    const req = ev.data;
    const key = req.path.join("/");
    const before = chains.get(key) || Promise.resolve();
    const done = before.then(() => run(req));
    const answer = (reply) => {
      const moved = reply.data instanceof ArrayBuffer ? [reply.data] : [];
      self.postMessage({ seq: req.seq, ...reply }, moved);
    };
    done.then(answer, (e) => {
      const reply = { error: `${(e && e.name) || "Error"}: ${(e && e.message) || e}` };
      if (req.data instanceof ArrayBuffer && req.data.byteLength > 0) reply.data = req.data;
      answer(reply);
    });
    const tail = done.catch(() => {});
    chains.set(key, tail);
    tail.then(() => {
      if (chains.get(key) === tail) chains.delete(key);
    });
  };
  // Listening now: the page posts nothing before this.
  self.postMessage({ ready: true });
}
