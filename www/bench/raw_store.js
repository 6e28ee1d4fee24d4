// The stored raw baseline's writer (bench.js, `rawReceive` with `store`): a dedicated worker
// that writes each received message at its offset into one OPFS file through a sync access
// handle, as swarmdrop's store worker writes pieces — the least a page that keeps the bytes
// it receives pays. Requests: { open: name } → { opened }; { data, at } (no answer);
// { close: true } → { closed } once flushed and closed (as swarmdrop's store closes a finished
// file); { remove: name } → { removed }. A failure answers { error }.
let dir = null;
let access = null;
self.onmessage = async (e) => {
  const m = e.data;
  try {
    if (m.open) {
      dir = await navigator.storage.getDirectory();
      const file = await dir.getFileHandle(m.open, { create: true });
      access = await file.createSyncAccessHandle();
      access.truncate(0);
      self.postMessage({ opened: true });
    } else if (m.data) {
      const bytes = new Uint8Array(m.data);
      let done = 0;
      while (done < bytes.length) {
        const n = access.write(bytes.subarray(done), { at: m.at + done });
        if (!(n > 0)) throw new Error(`wrote ${done} of ${bytes.length} bytes`);
        done += n;
      }
    } else if (m.close) {
      access.flush();
      access.close();
      access = null;
      self.postMessage({ closed: true });
    } else if (m.remove) {
      await dir.removeEntry(m.remove);
      self.postMessage({ removed: true });
    }
  } catch (err) {
    self.postMessage({ error: `${err.name}: ${err.message}` });
  }
};
