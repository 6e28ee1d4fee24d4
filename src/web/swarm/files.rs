//! The browser driver of the file engine: frames over the peers' data channels, pieces to and
//! from OPFS, slices of the user's shared `File`s, and the `Download` JavaScript API.

use super::{emit, obj, publish, Event, Shared, Swarm, TAG_FILES, TAG_FILES_PACKED};
use crate::signal::PeerId;
use crate::transfer::{
    id_from_hex, id_hex, BlockRef, FileId, Input as TIn, ManifestBuilder, Output as TOut,
    TransferEvent,
};
use crate::web::error::WebError;
use crate::web::peer::DataChannel;
use crate::web::store::{get, read_blob, read_chunks, PieceStore, Shape};
use crate::web::task::Task;
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

/// A piece write that has not finished after this long is given up (and the piece re-fetched).
const STORE_TIMEOUT_MS: u32 = 15_000;

/// Pieces read and hashed at once when sharing a file.
const SHARE_READS_IN_FLIGHT: usize = 4;

/// Bytes of whole pieces kept for serving (see [`PieceCache`]).
const PIECE_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Bytes read from a shared `File` at once when its pieces are asked for in order. Each read
/// of a `File` is a slice registered with the browser and a pipe of its own from the browser
/// process: measured in headless Chromium, reading 1 MiB at a time cost ~4 ms of CPU per MB
/// (browser IO thread and page), 8 MiB at a time ~2.3 ms.
const READ_AHEAD_BYTES: u64 = 8 * 1024 * 1024;

/// One read for serving (a piece, or several in order), shared by every block request for them.
type Read =
    futures::future::Shared<futures::future::LocalBoxFuture<'static, Result<Rc<Vec<u8>>, String>>>;

/// A piece being read (or read) for serving: its read and where the piece starts in it.
type PieceRead = (Read, usize);

/// Pieces read whole for serving: peers ask for a piece's blocks together, so one browser read
/// (a `File` slice or an OPFS piece file) serves all of them instead of one read per block;
/// where a `File`'s pieces are asked for in order, one read serves the next several pieces.
/// Bounded by the bytes of the pieces it holds (a read's bytes stay while any of its pieces
/// does); the oldest piece goes first.
#[derive(Default)]
struct PieceCache {
    entries: std::collections::VecDeque<((FileId, u32), u64, PieceRead)>,
    bytes: u64,
}

impl PieceCache {
    fn get(&self, key: &(FileId, u32)) -> Option<PieceRead> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, r)| r.clone())
    }

    fn insert(&mut self, key: (FileId, u32), len: u64, read: PieceRead) {
        while self.bytes + len > PIECE_CACHE_BYTES && !self.entries.is_empty() {
            if let Some((_, n, _)) = self.entries.pop_front() {
                self.bytes -= n;
            }
        }
        self.bytes += len;
        self.entries.push_back((key, len, read));
    }

    /// Forgets `key` (its read failed: the next request tries again) or a whole file.
    fn remove(&mut self, gone: impl Fn(&(FileId, u32)) -> bool) {
        let bytes = &mut self.bytes;
        self.entries.retain(|(k, n, _)| {
            let keep = !gone(k);
            if !keep {
                *bytes -= n;
            }
            keep
        });
    }
}

/// A message for a peer's channel, with the bytes of engine frames it carries (for
/// `Input::Sent`).
type Outgoing = (Vec<u8>, usize);

/// File-sharing state of a swarm.
#[derive(Default)]
pub(super) struct Files {
    /// The OPFS store, once opened (downloads need it).
    pub store: Option<Rc<PieceStore>>,
    /// Files the user shares, read in slices on demand.
    local: HashMap<FileId, web_sys::File>,
    /// Per-peer ordered send queues (a task per peer drains each into its channel, waiting on
    /// backpressure, and tells the engine what left), with the largest frame the peer's channel
    /// carries. Unbounded because the engine bounds what it sends: requests by its pipeline,
    /// blocks by its send window per peer (`Config::send_window`, counted down by
    /// `Input::Sent` from this queue's task).
    senders: HashMap<PeerId, (mpsc::UnboundedSender<Outgoing>, usize)>,
    /// Frames the engine gave out in this pump, per peer, sent (small ones packed together) at
    /// its end by [`flush`].
    outbox: HashMap<PeerId, Vec<Vec<u8>>>,
    downloads: HashMap<FileId, DownloadState>,
    reads: PieceCache,
    /// Test hook: flip a byte in every served block.
    pub corrupt_uploads: bool,
}

#[derive(Default)]
struct DownloadState {
    listeners: Vec<(u32, js_sys::Function)>,
    next_token: u32,
    resolve: Option<js_sys::Function>,
    reject: Option<js_sys::Function>,
    /// (time ms, bytes) of the first and latest progress, for the speed.
    first: Option<(f64, u64)>,
}

impl Files {
    /// Whether a send queue to `peer` is open (the engine knows it is up).
    pub fn has_sender(&self, peer: &PeerId) -> bool {
        self.senders.contains_key(peer)
    }
}

/// Hands `input` to the file engine and carries out what follows.
pub(super) fn feed(shared: &Shared, input: TIn) {
    {
        let mut inner = shared.borrow_mut();
        let now = inner.now();
        inner.engine.handle(input, now);
    }
    super::pump(shared);
}

/// Opens a send queue to a newly connected peer whose channel carries messages of up to
/// `max_message` bytes, and tells the engine.
pub(super) fn peer_up(shared: &Shared, id: &PeerId, channel: Rc<DataChannel>, max_message: usize) {
    // Unbounded: the engine bounds what it gives a peer to send (its send window, counted down
    // as `TIn::Sent` reports each frame handed to the channel), so this queue holds at most that.
    let (tx, mut rx) = mpsc::unbounded::<Outgoing>();
    // Less the tag byte in front of every file frame.
    let max_frame = max_message.saturating_sub(1);
    shared
        .borrow_mut()
        .files
        .senders
        .insert(id.clone(), (tx, max_frame));
    let weak_ch = Rc::downgrade(&channel);
    drop(channel);
    let weak = Rc::downgrade(shared);
    let peer = id.clone();
    spawn_local(async move {
        while let Some((frame, carried)) = rx.next().await {
            let Some(ch) = weak_ch.upgrade() else { break };
            if ch.send(&frame).await.is_err() {
                break;
            }
            drop(ch);
            let Some(shared) = weak.upgrade() else { break };
            feed(&shared, TIn::Sent(peer.clone(), carried));
        }
    });
    feed(shared, TIn::PeerUp(id.clone(), max_frame));
}

/// Hands the frames of a packed message to the engine, in order; a message that does not
/// unpack is a malformed frame.
pub(super) fn feed_packed(shared: &Shared, id: &PeerId, msg: &[u8]) {
    match crate::transfer::wire::unpack(msg) {
        Ok(frames) => {
            for f in frames {
                feed(shared, TIn::Frame(id.clone(), f.to_vec()));
            }
        }
        Err(e) => feed(shared, TIn::Malformed(id.clone(), e)),
    }
}

/// Sends what the engine gave out in this pump: each peer's frames in order, runs of small ones
/// (requests, haves, cancels) packed into one message.
pub(super) fn flush(shared: &Shared) {
    let mut inner = shared.borrow_mut();
    let files = &mut inner.files;
    if files.outbox.is_empty() {
        return;
    }
    for (peer, frames) in files.outbox.drain() {
        let Some((tx, max_frame)) = files.senders.get(&peer) else {
            continue;
        };
        for m in crate::transfer::wire::pack(frames, *max_frame) {
            let mut frame = Vec::with_capacity(m.bytes.len() + 1);
            frame.push(if m.packed {
                TAG_FILES_PACKED
            } else {
                TAG_FILES
            });
            frame.extend_from_slice(&m.bytes);
            let _ = tx.unbounded_send((frame, m.carried));
        }
    }
}

/// Closes a peer's send queue and tells the engine.
pub(super) fn peer_down(shared: &Shared, id: &PeerId) {
    let had = shared.borrow_mut().files.senders.remove(id).is_some();
    if had {
        feed(shared, TIn::PeerDown(id.clone()));
    }
}

pub(super) fn act(shared: &Shared, out: TOut) {
    match out {
        TOut::Send(peer, bytes) => {
            let mut inner = shared.borrow_mut();
            if inner.files.senders.contains_key(&peer) {
                inner.files.outbox.entry(peer).or_default().push(bytes);
            }
        }
        TOut::Hash(id, piece, data) => {
            let shared = Rc::clone(shared);
            spawn_local(async move {
                let digest = sha256(&data).await;
                feed(&shared, TIn::Hashed(id, piece, data, digest));
            });
        }
        TOut::Store(id, piece, data) => {
            let shared = Rc::clone(shared);
            spawn_local(async move {
                // A write the browser never finishes (its storage busy or locked) must not stall
                // the download: after a while the piece is given up and fetched again.
                let write = store_piece(&shared, &id, piece, data);
                match crate::web::within(STORE_TIMEOUT_MS, write).await {
                    Some(Ok(())) => {
                        feed(&shared, TIn::Stored(id, piece));
                        // A piece verified just before its download was stopped: stored, and
                        // the file let go of again.
                        if !shared.borrow().files.downloads.contains_key(&id) {
                            let_go(&shared, id);
                        }
                    }
                    Some(Err(e)) => feed(&shared, TIn::StoreFailed(id, piece, e.to_string())),
                    None => {
                        tracing::warn!("storing piece {piece} took over {STORE_TIMEOUT_MS} ms; fetching it again");
                        feed(&shared, TIn::StoreDropped(id, piece));
                    }
                }
            });
        }
        TOut::Read(peer, id, block) => {
            let shared = Rc::clone(shared);
            spawn_local(async move {
                match serve_block(&shared, &id, block).await {
                    Ok(mut data) => {
                        if shared.borrow().files.corrupt_uploads {
                            if let Some(b) = data.first_mut() {
                                *b ^= 0xff;
                            }
                        }
                        feed(&shared, TIn::BlockRead(peer, id, block, data));
                    }
                    Err(e) => {
                        tracing::warn!("reading a block to serve: {e}");
                        feed(&shared, TIn::ReadFailed(peer, id, block));
                    }
                }
            });
        }
        TOut::Event(e) => on_event(shared, e),
    }
}

/// SHA-256 of `data`: with WebCrypto (native code, several times cheaper than hashing in wasm,
/// and hashing is the costliest step per received byte; Chromium runs it on the calling
/// thread), or in wasm where WebCrypto is missing (an insecure context).
async fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let subtle = js_sys::global()
        .dyn_into::<web_sys::Window>()
        .ok()
        .and_then(|w| w.crypto().ok())
        .map(|c| c.subtle());
    if let Some(subtle) = subtle {
        // `digest` copies the bytes before it returns, so the view into wasm memory is safe.
        if let Ok(promise) = subtle.digest_with_str_and_u8_array("SHA-256", data) {
            if let Ok(buf) = wasm_bindgen_futures::JsFuture::from(promise).await {
                let bytes = js_sys::Uint8Array::new(&buf);
                let mut out = [0u8; 32];
                if bytes.length() == 32 {
                    bytes.copy_to(&mut out);
                    return out;
                }
            }
        }
    }
    sha2::Sha256::digest(data).into()
}

async fn store_piece(
    shared: &Shared,
    id: &FileId,
    piece: u32,
    data: Vec<u8>,
) -> Result<(), WebError> {
    let (store, file, stored) = {
        let inner = shared.borrow();
        let store = inner
            .files
            .store
            .clone()
            .ok_or(WebError::Closed("storage"))?;
        let m = inner.engine.manifest(id).ok_or(WebError::Closed("file"))?;
        // (Counted only where the store will use it: it walks the file's pieces.)
        let stored = if store.wants_stored(id) {
            inner.engine.have_bytes(id)
        } else {
            0
        };
        let file = Shape::of(m, store.needs_manifest(id));
        (store, file, stored)
    };
    store.write_piece(id, file, stored, piece, data).await
}

/// Has the store let go of a file this swarm no longer downloads, so that another tab of the
/// app can write into it; its stored pieces are still served (reads take no hold of it).
fn let_go(shared: &Shared, id: FileId) {
    let store = shared.borrow().files.store.clone();
    if let Some(store) = store {
        spawn_local(async move {
            if let Err(e) = store.release(&id).await {
                tracing::warn!("letting go of a stored file: {e}");
            }
        });
    }
}

/// Reads a block to serve. A shared `File` that can no longer be read (changed, moved or
/// deleted on disk: browsers refuse to read a picked file that changed since) is dropped:
/// the block is read from the store if it holds the file, else the file is no longer shared,
/// and the user is told why — its peers must not keep asking a source that cannot answer.
async fn serve_block(shared: &Shared, id: &FileId, block: BlockRef) -> Result<Vec<u8>, WebError> {
    let e = match read_block(shared, id, block).await {
        Ok(data) => return Ok(data),
        Err(e) => e,
    };
    let lost = {
        let mut inner = shared.borrow_mut();
        let lost = inner.files.local.remove(id).is_some();
        if lost {
            inner.files.reads.remove(|k| k.0 == *id);
        }
        lost
    };
    if !lost {
        return Err(e);
    }
    tracing::warn!("a shared file can no longer be read ({e}); trying the store");
    let again = read_block(shared, id, block).await;
    if again.is_err() {
        let name = shared
            .borrow()
            .engine
            .manifest(id)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        feed(shared, TIn::Unshare(*id));
        super::emit_error(
            shared,
            &format!(
                "\"{name}\" can no longer be read ({e}): was it changed, moved or deleted? It is \
                 no longer shared; share it again to offer it"
            ),
        );
    }
    again
}

async fn read_block(shared: &Shared, id: &FileId, block: BlockRef) -> Result<Vec<u8>, WebError> {
    let key = (*id, block.piece);
    let read = {
        let mut inner = shared.borrow_mut();
        match inner.files.reads.get(&key) {
            Some(r) => r,
            None => start_read(&mut inner, *id, block.piece)?,
        }
    };
    let (read, at) = read;
    let bytes = match read.await {
        Ok(r) => r,
        Err(e) => {
            shared.borrow_mut().files.reads.remove(|k| *k == key);
            return Err(WebError::Storage(e));
        }
    };
    let (start, end) = (
        at + block.offset as usize,
        at + (block.offset + block.len) as usize,
    );
    bytes
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| WebError::Storage(format!("block {start}..{end} is outside its read")))
}

/// Starts reading `piece` of file `id` for serving and caches the read: from the shared
/// `File`, with the pieces after it where the one before it was read (asked for in order),
/// else from the store.
fn start_read(inner: &mut super::Inner, id: FileId, piece: u32) -> Result<PieceRead, WebError> {
    let m = inner.engine.manifest(&id).ok_or(WebError::Closed("file"))?;
    let (piece_size, pieces) = (u64::from(m.piece_size), m.pieces());
    let local = inner.files.local.get(&id).cloned();
    let in_order = piece > 0 && inner.files.reads.get(&(id, piece - 1)).is_some();
    let count = if local.is_some() && in_order {
        // Up to the next piece already cached.
        let most =
            ((READ_AHEAD_BYTES / piece_size).max(1) as u32).min(pieces.saturating_sub(piece));
        (1..most)
            .find(|k| inner.files.reads.get(&(id, piece + k)).is_some())
            .unwrap_or(most)
            .max(1)
    } else {
        1
    };
    let lens: Vec<u64> = (piece..piece + count)
        .map(|p| u64::from(m.piece_len(p)))
        .collect();
    let start = u64::from(piece) * piece_size;
    let len: u64 = lens.iter().sum();
    let store = inner.files.store.clone();
    let read = async move {
        let bytes = match (local, store) {
            (Some(file), _) => read_blob(&file, start as f64, (start + len) as f64).await,
            (None, Some(store)) => store.read(&id, piece, start, len as u32).await,
            (None, None) => Err(WebError::Closed("storage")),
        };
        bytes.map(Rc::new).map_err(|e| e.to_string())
    }
    .boxed_local()
    .shared();
    for (k, n) in (0u32..).zip(lens) {
        let at = (u64::from(k) * piece_size) as usize;
        inner
            .files
            .reads
            .insert((id, piece + k), n, (read.clone(), at));
    }
    Ok((read, 0))
}

fn on_event(shared: &Shared, e: TransferEvent) {
    publish(shared, Event::Transfer(e.clone()));
    match e {
        TransferEvent::FileAnnounced {
            id,
            name,
            size,
            mime,
        } => emit(
            shared,
            "file-announced",
            obj(&[
                ("id", JsValue::from_str(&id_hex(&id))),
                ("name", JsValue::from_str(&name)),
                ("size", JsValue::from_f64(size as f64)),
                ("type", JsValue::from_str(&mime)),
            ]),
        ),
        TransferEvent::FileRemoved(id) => emit(
            shared,
            "file-removed",
            obj(&[("id", JsValue::from_str(&id_hex(&id)))]),
        ),
        TransferEvent::Progress(id, have, total) => progress(shared, &id, have, total),
        TransferEvent::Complete(id) => complete(shared, id),
        TransferEvent::PeerBanned(peer, reason) => super::emit_error(
            shared,
            &format!("peer {peer} is no longer asked for data: it {reason}"),
        ),
        TransferEvent::Error(id, message) => {
            // The download stopped (its stored pieces stay, and are served): it ends as after
            // `cancel`; `download(id)` again resumes it.
            end_download(shared, id, &message);
            super::emit_error(shared, &message);
        }
    }
}

fn progress(shared: &Shared, id: &FileId, have: u64, total: u64) {
    let now = js_sys::Date::now();
    let (listeners, speed, peers) = {
        let mut inner = shared.borrow_mut();
        let peers = inner
            .engine
            .received_from(id)
            .values()
            .filter(|&&b| b > 0)
            .count();
        let Some(d) = inner.files.downloads.get_mut(id) else {
            return;
        };
        let (t0, b0) = *d.first.get_or_insert((now, have));
        let speed = if now > t0 {
            (have - b0) as f64 / ((now - t0) / 1000.0)
        } else {
            0.0
        };
        (
            d.listeners
                .iter()
                .map(|(_, f)| f.clone())
                .collect::<Vec<_>>(),
            speed,
            peers,
        )
    };
    let detail = obj(&[
        ("have", JsValue::from_f64(have as f64)),
        ("total", JsValue::from_f64(total as f64)),
        ("bytesPerSec", JsValue::from_f64(speed)),
        ("peers", JsValue::from_f64(peers as f64)),
    ]);
    for f in listeners {
        let _ = f.call1(&JsValue::NULL, &detail);
    }
}

/// Resolves a finished download with its `File`, assembled from OPFS.
fn complete(shared: &Shared, id: FileId) {
    let shared = Rc::clone(shared);
    spawn_local(async move {
        let (store, manifest, resolve, reject) = {
            let mut inner = shared.borrow_mut();
            let store = inner.files.store.clone();
            let manifest = inner.engine.manifest(&id).cloned();
            let d = inner.files.downloads.get_mut(&id);
            let (resolve, reject) = match d {
                Some(d) => (d.resolve.take(), d.reject.take()),
                None => (None, None),
            };
            (store, manifest, resolve, reject)
        };
        let result = match (store, manifest) {
            // A file of no bytes has no pieces and nothing stored: a new empty `File`.
            (_, Some(m)) if m.size == 0 => {
                let opts = web_sys::FilePropertyBag::new();
                opts.set_type(&m.mime);
                web_sys::File::new_with_str_sequence_and_options(
                    &js_sys::Array::new(),
                    &m.name,
                    &opts,
                )
                .map_err(|e| WebError::browser("making an empty file", e))
            }
            (Some(store), Some(m)) => store.assemble(&m).await,
            _ => Err(WebError::Closed("storage")),
        };
        if let Ok(file) = &result {
            // Served from now on through this `File`, as a shared one, not through the store's
            // worker (which has let go of the file for the `File` to be readable).
            shared.borrow_mut().files.local.insert(id, file.clone());
        }
        match (result, resolve, reject) {
            (Ok(file), Some(resolve), _) => {
                let _ = resolve.call1(&JsValue::NULL, &file);
            }
            (Err(e), _, Some(reject)) => {
                let _ = reject.call1(&JsValue::NULL, &js_sys::Error::new(&e.to_string()));
            }
            _ => {}
        }
        emit(
            &shared,
            "file-complete",
            obj(&[("id", JsValue::from_str(&id_hex(&id)))]),
        );
    });
}

/// Opens OPFS and resumes every stored file (continuing unfinished downloads).
pub(super) async fn open_store(shared: &Shared, name: &str) {
    let store = match PieceStore::open(name).await {
        Ok(s) => Rc::new(s),
        Err(e) => {
            tracing::warn!("no file storage: {e}");
            return super::emit_error(shared, &format!("file storage unavailable: {e}"));
        }
    };
    shared.borrow_mut().files.store = Some(Rc::clone(&store));
    let stored = match store.list().await {
        Ok(l) => l,
        Err(e) => return super::emit_error(shared, &format!("reading stored files: {e}")),
    };
    for (m, have) in stored {
        let id = m.id();
        if !have.complete() {
            shared.borrow_mut().files.downloads.entry(id).or_default();
        }
        feed(shared, TIn::Resume(m, have));
    }
}

fn parse_id(id: &str) -> Result<FileId, JsError> {
    id_from_hex(id).ok_or_else(|| JsError::new(&format!("`{id}` is not a file id (64 hex digits)")))
}

// `files()` made in one call: its strings as one (each file's id, name, type and error, if
// any, one after another) and its numbers as one array, eleven a file (the lengths of name,
// type and error — -1 for none — in UTF-16 units, then size, sources, have, downloading,
// complete, received, sent, uploading). For 5,000 files: 1-2 ms; an object a call, 4-6 ms; an
// object a field at a time (and `id_hex` formatting each byte on its own), 30 ms.
#[wasm_bindgen(inline_js = "export function fileInfos(text, nums) {
  const out = [];
  let at = 0;
  const take = (n) => text.slice(at, (at += n));
  for (let i = 0; i < nums.length; i += 11) {
    const id = take(64);
    const name = take(nums[i]);
    const type = take(nums[i + 1]);
    const error = nums[i + 2] < 0 ? null : take(nums[i + 2]);
    out.push({ id, name, size: nums[i + 3], type, sources: nums[i + 4], have: nums[i + 5],
      downloading: nums[i + 6] === 1, complete: nums[i + 7] === 1, received: nums[i + 8],
      sent: nums[i + 9], uploading: nums[i + 10], error });
  }
  return out;
}")]
extern "C" {
    #[wasm_bindgen(js_name = fileInfos)]
    fn file_infos(text: &str, nums: &[f64]) -> js_sys::Array;
}

fn file_objs(files: &[crate::transfer::FileInfo]) -> js_sys::Array {
    let units = |s: &str| s.encode_utf16().count() as f64;
    let mut text = String::new();
    let mut nums = Vec::with_capacity(files.len() * 11);
    for f in files {
        text.push_str(&id_hex(&f.id));
        text.push_str(&f.name);
        text.push_str(&f.mime);
        text.push_str(f.error.as_deref().unwrap_or(""));
        nums.extend([
            units(&f.name),
            units(&f.mime),
            f.error.as_deref().map_or(-1.0, units),
            f.size as f64,
            f.sources as f64,
            f.have as f64,
            f64::from(u8::from(f.downloading)),
            f64::from(u8::from(f.complete)),
            f.received as f64,
            f.sent as f64,
            f.uploading as f64,
        ]);
    }
    file_infos(&text, &nums)
}

/// A download started with `swarm.download(id)`.
#[wasm_bindgen]
pub struct Download {
    shared: Weak<std::cell::RefCell<super::Inner>>,
    id: FileId,
    done: js_sys::Promise,
}

#[wasm_bindgen]
impl Download {
    /// The file id.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        id_hex(&self.id)
    }

    /// Resolves with the finished `File` (backed by the browser's storage), or rejects.
    #[wasm_bindgen(getter, unchecked_return_type = "Promise<File>")]
    pub fn done(&self) -> js_sys::Promise {
        self.done.clone()
    }

    /// Calls `callback({ have, total, bytesPerSec, peers })` on "progress"; returns an
    /// unsubscribe function. (Typed in `types.d.ts`.)
    #[wasm_bindgen(skip_typescript)]
    pub fn on(
        &self,
        event: String,
        callback: js_sys::Function,
    ) -> Result<js_sys::Function, JsError> {
        if event != "progress" {
            return Err(JsError::new(&format!(
                "unknown download event `{event}`; use \"progress\""
            )));
        }
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| JsError::new("the swarm is gone"))?;
        let mut inner = shared.borrow_mut();
        let d = inner.files.downloads.entry(self.id).or_default();
        d.next_token += 1;
        let token = d.next_token;
        d.listeners.push((token, callback));
        let (weak, id) = (self.shared.clone(), self.id);
        let off = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                if let Some(d) = shared.borrow_mut().files.downloads.get_mut(&id) {
                    d.listeners.retain(|(t, _)| *t != token);
                }
            }
        });
        Ok(off.into_js_value().unchecked_into())
    }

    /// Stops the download; pieces already stored stay (and are served), and the stored file is
    /// let go of (another tab of the app may then download it into the same file).
    pub fn cancel(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        end_download(&shared, self.id, "download cancelled");
        feed(&shared, TIn::Cancel(self.id));
    }
}

/// Ends this page's download of `id` (stopped, by `cancel` or a storage failure): its `done`
/// rejects with `why`, and the store lets go of the file (another tab of the app may then
/// download it into the same file; its stored pieces are still served).
fn end_download(shared: &Shared, id: FileId, why: &str) {
    let reject = shared
        .borrow_mut()
        .files
        .downloads
        .remove(&id)
        .and_then(|d| d.reject);
    let_go(shared, id);
    if let Some(f) = reject {
        let _ = f.call1(&JsValue::NULL, &js_sys::Error::new(why));
    }
}

#[wasm_bindgen]
impl Swarm {
    /// Shares a `File`: hashes it (a slice at a time) and announces it to the swarm; resolves
    /// with `{ id, name, size }`. The file is read on demand while shared. `options` (each
    /// optional): `name`, shown to peers instead of the file's own (its path in a shared folder,
    /// say); `onProgress(hashed, total)`, called as the file is hashed (bytes); `signal`, an
    /// `AbortSignal` that stops the hashing: `share` then rejects with the signal's reason and
    /// nothing is shared. Rejects at once where this page offers 10,000 files already (the most
    /// a peer takes from another).
    #[wasm_bindgen(unchecked_return_type = "SharedFile")]
    pub async fn share(
        &self,
        file: web_sys::File,
        #[wasm_bindgen(unchecked_optional_param_type = "ShareOptions")] options: Option<
            js_sys::Object,
        >,
    ) -> Result<JsValue, JsValue> {
        let name = options
            .as_ref()
            .and_then(|o| get(o, "name"))
            .and_then(|v| v.as_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| file.name());
        let task = Task::new(options.as_ref());
        task.go_on()?;
        {
            let engine = &self.shared.borrow().engine;
            if !engine.may_share() {
                let most = engine.config().max_files_per_peer;
                return Err(JsError::new(&format!(
                    "this page already offers {most} files, the most a peer takes from another: \
                     stop sharing some first"
                ))
                .into());
            }
        }
        let size = file.size();
        let mut b = ManifestBuilder::new(&name, size as u64, &file.type_());
        // One piece at a time from the file, hashed with WebCrypto, a few in flight (reading and
        // hashing both happen off the main thread); never the whole file in memory.
        let mut hashed = futures::stream::iter(read_chunks(&file, f64::from(b.piece_size())))
            .map(|read| async move {
                let bytes = read.await?;
                Ok::<_, WebError>((bytes.len() as u32, sha256(&bytes).await))
            })
            .buffered(SHARE_READS_IN_FLIGHT);
        let mut done = 0.0;
        while let Some(next) = hashed.next().await {
            task.go_on()?;
            let (len, digest) = next.map_err(JsError::from)?;
            b.push_piece(len, digest)
                .map_err(|e| JsError::new(&format!("reading {name}: {e}")))?;
            done += f64::from(len);
            task.progress(done, size);
        }
        let m = b.finish().map_err(|e| JsError::new(&e.to_string()))?;
        let id = m.id();
        self.shared
            .borrow_mut()
            .files
            .local
            .insert(id, file.clone());
        feed(&self.shared, TIn::Share(m.clone()));
        Ok(obj(&[
            ("id", JsValue::from_str(&id_hex(&id))),
            ("name", JsValue::from_str(&m.name)),
            ("size", JsValue::from_f64(m.size as f64)),
        ]))
    }

    /// Every file in the swarm: `[{ id, name, size, type, sources, have, downloading, complete,
    /// received, sent, uploading, error }]` (`received`: bytes fetched from peers in this
    /// session; `sent`: bytes of it served to peers in this session; `uploading`: peers fetching
    /// it from this page now; `error`: why its last download stopped, if storing failed, else
    /// `null`).
    #[wasm_bindgen(unchecked_return_type = "FileInfo[]")]
    pub fn files(&self) -> js_sys::Array {
        let inner = self.shared.borrow();
        file_objs(&inner.engine.files())
    }

    /// Downloads a file announced in the swarm (see `files()`), storing it in the browser as it
    /// arrives; `await dl.done` gives the `File`.
    pub fn download(&self, id: String) -> Result<Download, JsError> {
        let id = parse_id(&id)?;
        let (known, complete, has_store) = {
            let inner = self.shared.borrow();
            let info = inner.engine.file(&id);
            (
                info.is_some(),
                info.is_some_and(|f| f.complete),
                inner.files.store.is_some(),
            )
        };
        if !known {
            return Err(JsError::new(
                "no peer in the swarm announces this file (yet)",
            ));
        }
        // A file this page already has as a `File` (shared from it, or downloaded and handed
        // over before) is that `File`, storage or not.
        let here = if complete {
            self.shared.borrow().files.local.get(&id).cloned()
        } else {
            None
        };
        if let Some(file) = here {
            return Ok(Download {
                shared: Rc::downgrade(&self.shared),
                id,
                done: js_sys::Promise::resolve(&JsValue::from(file)),
            });
        }
        if !has_store {
            return Err(JsError::new(
                "this browser gives no file storage (Origin Private File System) to this page",
            ));
        }
        let mut resolve = None;
        let mut reject = None;
        let done = js_sys::Promise::new(&mut |res, rej| {
            resolve = Some(res);
            reject = Some(rej);
        });
        {
            let mut inner = self.shared.borrow_mut();
            let d = inner.files.downloads.entry(id).or_default();
            d.resolve = resolve;
            d.reject = reject;
        }
        if complete {
            // Already here (resumed complete): hand the stored file over at once.
            self::complete(&self.shared, id);
        } else {
            feed(&self.shared, TIn::Download(id));
        }
        Ok(Download {
            shared: Rc::downgrade(&self.shared),
            id,
            done,
        })
    }

    /// Stops sharing a file (and downloading it).
    pub fn unshare(&self, id: String) -> Result<(), JsError> {
        let id = parse_id(&id)?;
        self.shared.borrow_mut().files.local.remove(&id);
        self.shared.borrow_mut().files.downloads.remove(&id);
        self.shared.borrow_mut().files.reads.remove(|k| k.0 == id);
        feed(&self.shared, TIn::Unshare(id));
        let_go(&self.shared, id);
        Ok(())
    }

    /// How downloads are stored: `"worker"` (OPFS, written by the store's worker), `"page"`
    /// (OPFS, a file per piece written by the page, where no worker could start: slower), or
    /// `"none"` (no storage: downloads cannot be kept).
    #[wasm_bindgen(getter)]
    pub fn storage(&self) -> String {
        let store = self.shared.borrow().files.store.clone();
        match store.map(|s| s.writes_in_worker()) {
            Some(Ok(())) => "worker",
            Some(Err(_)) => "page",
            None => "none",
        }
        .into()
    }

    /// Files stored in this browser: `[{ id, name, size, have, complete }]`.
    #[wasm_bindgen(js_name = storedFiles, unchecked_return_type = "StoredFile[]")]
    pub async fn stored_files(&self) -> Result<js_sys::Array, JsError> {
        let store = self.shared.borrow().files.store.clone();
        let Some(store) = store else {
            return Ok(js_sys::Array::new());
        };
        let list = store.list().await?;
        Ok(list
            .iter()
            .map(|(m, have)| {
                let have_bytes: u64 = (0..m.pieces())
                    .filter(|&p| have.get(p))
                    .map(|p| u64::from(m.piece_len(p)))
                    .sum();
                obj(&[
                    ("id", JsValue::from_str(&id_hex(&m.id()))),
                    ("name", JsValue::from_str(&m.name)),
                    ("size", JsValue::from_f64(m.size as f64)),
                    ("have", JsValue::from_f64(have_bytes as f64)),
                    ("complete", JsValue::from_bool(have.complete())),
                ])
            })
            .collect())
    }

    /// Deletes a stored file from this browser (and stops sharing it).
    #[wasm_bindgen(js_name = deleteStored)]
    pub async fn delete_stored(&self, id: String) -> Result<(), JsError> {
        let fid = parse_id(&id)?;
        self.unshare(id)?;
        let store = self.shared.borrow().files.store.clone();
        if let Some(store) = store {
            store.delete(&fid).await?;
        }
        Ok(())
    }
}

impl Swarm {
    /// Test hook: corrupt every block this peer serves (to check that others detect it).
    #[doc(hidden)]
    pub fn corrupt_uploads_for_testing(&self, on: bool) {
        self.shared.borrow_mut().files.corrupt_uploads = on;
    }

    /// Test hook: whether pieces are written by the piece-writer worker (rather than by the
    /// page, the fallback).
    #[doc(hidden)]
    pub fn pieces_written_in_worker_for_testing(&self) -> Result<(), String> {
        let store = self.shared.borrow().files.store.clone();
        store
            .ok_or_else(|| "no store".to_string())?
            .writes_in_worker()
    }

    /// Test hook: how many of a file's pieces this swarm's store holds as piece files (the
    /// layout used where the store's worker cannot hold the file's `data`).
    #[doc(hidden)]
    pub async fn stored_piece_files_for_testing(&self, id: &FileId) -> Result<usize, String> {
        let store = self.shared.borrow().files.store.clone();
        let store = store.ok_or_else(|| "no store".to_string())?;
        store.piece_files(id).await.map_err(|e| e.to_string())
    }

    /// Bytes of a file received from each peer (public ids).
    pub fn received_from(&self, id: &FileId) -> HashMap<PeerId, u64> {
        self.shared.borrow().engine.received_from(id)
    }
}
