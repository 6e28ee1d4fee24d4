//! Pieces on disk: the Origin Private File System, one folder per file. A dedicated worker
//! (`piece_writer.js`) writes each verified piece at its offset into the folder's one file,
//! `data`, through a `FileSystemSyncAccessHandle` it keeps open while the download runs, then
//! marks it (a byte per piece after the file's bytes, with the manifest after them: the layout
//! of [`stored`]): one write per piece straight to the disk, off the page's main thread, with no
//! file to create, lock and rename per piece, and one file to open per download. A reload finds
//! exactly the pieces that were marked (a mark is written after its piece). The worker also
//! reads pieces back to serve them, and a finished file is handed over as a `File` of the start
//! of `data`, which the browser reads from disk when it is saved. Files stored before that
//! layout (marks in a file `have`, the manifest in `manifest`) are read and finished as they are.
//!
//! Where the worker cannot run, the page writes each piece as its own file `p<i>` through
//! `createWritable()` (a stream on one big file would copy the whole file per write), beside a
//! `manifest` file; the worker does the same for a file whose `data` another tab holds. Reading, listing and assembling take
//! pieces from either, so each can resume the other's download.

use super::error::WebError;
use super::swarm::obj;
use crate::transfer::{id_from_hex, id_hex, stored, Bitfield, FileId, Manifest};
use futures::channel::oneshot;
use futures::FutureExt;
use gloo_events::EventListener;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemRemoveOptions, FileSystemWritableFileStream,
};

const ROOT: &str = "swarmdrop";
/// A file written and removed at opening (see [`PieceStore::open`]); never a file id.
const PROBE: &str = "probe";
/// A file's manifest, beside piece files (or with [`HAVE`]: stored before [`stored`]).
const MANIFEST: &str = "manifest";
/// A file's bytes at their offsets, then its marks and manifest (see [`stored`]), written by
/// the worker.
const DATA: &str = "data";
/// Stored before [`stored`]'s layout: one byte per piece, 1 where the piece is in [`DATA`],
/// whole and verified.
const HAVE: &str = "have";
/// Made and dropped by the page's room check (see [`PieceStore::check_room`]); never a piece.
const ROOM: &str = "room";
/// Piece files opened at once when a finished file is assembled.
const ASSEMBLE_IN_FLIGHT: u32 = 32;
/// The worker's first write (the probe) must be done by then, or the page writes pieces itself.
const WRITER_START_MS: u32 = 5_000;

thread_local! {
    /// Test hook: stores opened while set write pieces from the page (the fallback).
    static PAGE_WRITES: Cell<bool> = const { Cell::new(false) };
}

/// Test hook: stores opened from now on write pieces from the page, as where no worker can run
/// (`true`), or through the worker (`false`, the default).
#[doc(hidden)]
pub fn page_writes_for_testing(on: bool) {
    PAGE_WRITES.with(|p| p.set(on));
}

/// The piece store of this origin.
pub struct PieceStore {
    root: FileSystemDirectoryHandle,
    /// The store's folder path from the origin's root, as the worker opens it.
    path: [String; 2],
    /// The worker that writes pieces, or why it could not start.
    writer: Result<PieceWriter, String>,
    /// Pieces known to be in each file's `data` (the rest, stored, are piece files).
    in_data: RefCell<HashMap<FileId, HashSet<u32>>>,
    /// For each file handed over as a `File` that holds piece files: a shared lock on the
    /// file's name, which keeps other tabs from removing those files (see `list`).
    pinned: RefCell<HashMap<FileId, Held>>,
    /// Files whose writes need not give their manifest: their `data` holds it (or is stored as
    /// before, with `have`), or, where the page writes, their `manifest` file was written.
    told: RefCell<HashSet<FileId>>,
    /// Page writes: each file's room check, run once by its first write (shared by the writes
    /// that start meanwhile); dropped when it fails, so that the next download checks again.
    room: RefCell<HashMap<FileId, RoomCheck>>,
}

type RoomCheck =
    futures::future::Shared<futures::future::LocalBoxFuture<'static, Result<(), WebError>>>;

/// Answers awaited from the worker, by request number: the answer, or the browser's reason.
type Pending = Rc<RefCell<HashMap<u32, oneshot::Sender<Result<JsValue, String>>>>>;

/// Buffers the worker handed back, reused for the next pieces: a fresh 1 MiB `ArrayBuffer` per
/// piece (allocated, zeroed, faulted in, then freed by the worker) cost more on the page's main
/// thread than copying the piece into it.
type Pool = Rc<RefCell<Vec<js_sys::ArrayBuffer>>>;

/// Buffers kept in the pool (pieces in flight to and from the worker rarely exceed a few).
const POOL_MAX: usize = 8;

/// What the store needs of a file to write one of its pieces, and its manifest only while
/// [`PieceStore::needs_manifest`]: a copy of the manifest (32 bytes a piece) for every piece
/// written would cost a download time quadratic in its pieces.
pub struct Shape {
    /// The file's size.
    pub size: u64,
    /// Its number of pieces.
    pub pieces: u32,
    /// Its piece size.
    pub piece_size: u32,
    /// Its manifest, for the first writes.
    pub manifest: Option<Manifest>,
}

impl Shape {
    /// `m`'s shape, with a copy of `m` if `with_manifest`.
    pub fn of(m: &Manifest, with_manifest: bool) -> Shape {
        Shape {
            size: m.size,
            pieces: m.pieces(),
            piece_size: m.piece_size,
            manifest: with_manifest.then(|| m.clone()),
        }
    }
}

/// What a file's `data` holds (see [`PieceStore::data_state`]): a mark per piece (1: in `data`),
/// the length of `data`, and the manifest's bytes where `data` holds them.
#[derive(Default)]
struct DataState {
    marks: Vec<u8>,
    len: u64,
    manifest: Option<Vec<u8>>,
}

/// A buffer (from the pool) and how many of its first bytes hold the data to hand to the worker.
struct Filled(js_sys::ArrayBuffer, u32);

/// The store's dedicated worker (see the module docs); terminated when dropped.
struct PieceWriter {
    worker: web_sys::Worker,
    pending: Pending,
    pool: Pool,
    next: Cell<u32>,
    /// Set, with the reason, once the worker failed as a whole (its script, or an uncaught
    /// error).
    broken: Rc<RefCell<Option<String>>>,
    _listeners: [EventListener; 2],
}

/// `o[k]`, unless that throws or is `undefined`.
pub(crate) fn get(o: &JsValue, k: &str) -> Option<JsValue> {
    js_sys::Reflect::get(o, &JsValue::from_str(k))
        .ok()
        .filter(|v| !v.is_undefined())
}

impl PieceWriter {
    /// Starts the worker; the receiver fires on its first message, once its script runs.
    /// Nothing may be posted before (a message posted to a module worker still loading was
    /// seen to be lost).
    fn start() -> Result<(PieceWriter, oneshot::Receiver<()>), WebError> {
        let opts = web_sys::WorkerOptions::new();
        opts.set_type(web_sys::WorkerType::Module);
        opts.set_name("swarmdrop store");
        // Its own file in the package (see `split-linked-modules` in Cargo.toml).
        let url = wasm_bindgen::link_to!(module = "/src/web/piece_writer.js");
        let worker = web_sys::Worker::new_with_options(&url, &opts)
            .map_err(|e| WebError::browser("starting the store worker", e))?;
        let pending: Pending = Rc::default();
        let broken: Rc<RefCell<Option<String>>> = Rc::default();
        let answers = Rc::clone(&pending);
        let pool: Pool = Rc::default();
        let returned = Rc::clone(&pool);
        let (ready_tx, ready) = oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let on_message = EventListener::new(&worker, "message", move |ev| {
            let Some(data) = ev.dyn_ref::<web_sys::MessageEvent>().map(|e| e.data()) else {
                return;
            };
            if get(&data, "ready").is_some_and(|v| v.is_truthy()) {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
                return;
            }
            let Some(seq) = get(&data, "seq").and_then(|v| v.as_f64()) else {
                return;
            };
            let result = match get(&data, "error").and_then(|v| v.as_string()) {
                Some(e) => {
                    // A failed request's buffer goes straight back to the pool.
                    if let Some(buf) = get(&data, "data").and_then(|v| v.dyn_into().ok()) {
                        give_back(&returned, buf);
                    }
                    Err(e)
                }
                None => Ok(data),
            };
            if let Some(tx) = answers.borrow_mut().remove(&(seq as u32)) {
                let _ = tx.send(result);
            }
        });
        let (failed, answers) = (Rc::clone(&broken), Rc::clone(&pending));
        let on_error = EventListener::new(&worker, "error", move |ev| {
            let message = ev
                .dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| e.message())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "the store worker failed".into());
            tracing::warn!("store worker: {message}; pieces are written by the page");
            *failed.borrow_mut() = Some(message.clone());
            for (_, tx) in answers.borrow_mut().drain() {
                let _ = tx.send(Err(message.clone()));
            }
        });
        let writer = PieceWriter {
            worker,
            pending,
            pool,
            next: Cell::new(0),
            broken,
            _listeners: [on_message, on_error],
        };
        Ok((writer, ready))
    }

    /// A buffer of at least `len` bytes, from the pool if it has one.
    fn buffer(&self, len: u32) -> js_sys::ArrayBuffer {
        match self.pool.borrow_mut().pop() {
            Some(b) if b.byte_length() >= len => b,
            _ => js_sys::ArrayBuffer::new(len),
        }
    }

    /// Sends request `op` on the folder at `path` with `fields` (and `buf`, transferred) and
    /// waits for the answer.
    async fn request(
        &self,
        context: &'static str,
        op: &str,
        path: &[&str],
        fields: &[(&str, JsValue)],
        buf: Option<&js_sys::ArrayBuffer>,
    ) -> Result<JsValue, WebError> {
        if let Some(why) = &*self.broken.borrow() {
            return Err(WebError::Storage(why.clone()));
        }
        let seq = self.next.get().wrapping_add(1);
        self.next.set(seq);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(seq, tx);
        let path: js_sys::Array = path.iter().map(|p| JsValue::from_str(p)).collect();
        let mut pairs = vec![
            ("seq", JsValue::from_f64(f64::from(seq))),
            ("op", JsValue::from_str(op)),
            ("path", path.into()),
        ];
        pairs.extend(fields.iter().cloned());
        let transfer = js_sys::Array::new();
        if let Some(b) = buf {
            pairs.push(("data", b.clone().into()));
            transfer.push(b);
        }
        let msg = crate::web::swarm::obj(&pairs);
        if let Err(e) = self.worker.post_message_with_transfer(&msg, &transfer) {
            self.pending.borrow_mut().remove(&seq);
            return Err(WebError::browser(context, e));
        }
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(message)) => Err(storage_error(context, message)),
            Err(_) => Err(WebError::Closed("store worker")),
        }
    }

    /// A buffer holding a copy of `data`, to hand over with [`send_bytes`](Self::send_bytes).
    fn filled(&self, data: &[u8]) -> Filled {
        let len = data.len() as u32;
        let buf = self.buffer(len);
        js_sys::Uint8Array::new_with_byte_offset_and_length(&buf, 0, len).copy_from(data);
        Filled(buf, len)
    }

    /// Hands bytes over in their buffer for request `op` (its answer hands the buffer back).
    async fn send_bytes(
        &self,
        context: &'static str,
        op: &str,
        path: &[&str],
        fields: &[(&str, JsValue)],
        Filled(buf, len): Filled,
    ) -> Result<JsValue, WebError> {
        let mut fields = fields.to_vec();
        fields.push(("len", JsValue::from_f64(f64::from(len))));
        let reply = self.request(context, op, path, &fields, Some(&buf)).await?;
        if let Some(b) = get(&reply, "data").and_then(|v| v.dyn_into().ok()) {
            give_back(&self.pool, b);
        }
        Ok(reply)
    }

    /// Asks for `len` bytes (request `op`), answered in a buffer, copied out here.
    async fn fetch_bytes(
        &self,
        context: &'static str,
        op: &str,
        path: &[&str],
        fields: &[(&str, JsValue)],
        len: u32,
    ) -> Result<Vec<u8>, WebError> {
        let buf = self.buffer(len);
        let mut fields = fields.to_vec();
        fields.push(("len", JsValue::from_f64(f64::from(len))));
        let reply = self.request(context, op, path, &fields, Some(&buf)).await?;
        let buf: js_sys::ArrayBuffer = get(&reply, "data")
            .and_then(|v| v.dyn_into().ok())
            .ok_or_else(|| WebError::Storage(format!("{context}: no bytes in the answer")))?;
        if buf.byte_length() < len {
            return Err(WebError::Storage(format!("{context}: a short answer")));
        }
        let bytes = js_sys::Uint8Array::new_with_byte_offset_and_length(&buf, 0, len).to_vec();
        give_back(&self.pool, buf);
        Ok(bytes)
    }

    fn usable(&self) -> bool {
        self.broken.borrow().is_none()
    }
}

fn give_back(pool: &Pool, buf: js_sys::ArrayBuffer) {
    let mut pool = pool.borrow_mut();
    if pool.len() < POOL_MAX && buf.byte_length() > 0 {
        pool.push(buf);
    }
}

impl Drop for PieceWriter {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

async fn wait(what: &'static str, p: js_sys::Promise) -> Result<JsValue, WebError> {
    JsFuture::from(p)
        .await
        .map_err(|e| storage_error(what, super::error::describe(&e)))
}

/// Whether a browser's error message says the storage is full.
fn is_full(message: &str) -> bool {
    // (Firefox names a full quota NS_ERROR_FILE_NO_DEVICE_SPACE in places.)
    ["quota", "Quota", "NO_DEVICE_SPACE"]
        .iter()
        .any(|f| message.contains(f))
}

/// Bytes as MiB with one decimal, as the storage messages give them.
fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1_048_576.0)
}

/// A storage failure, with the usual one (a full quota) made readable.
fn storage_error(context: &'static str, message: String) -> WebError {
    let message = if is_full(&message) {
        format!(
            "the browser's storage for this site is full ({message}); make room (delete stored \
             files) and try again"
        )
    } else {
        message
    };
    WebError::Browser { context, message }
}

fn piece_name(piece: u32) -> String {
    format!("p{piece}")
}

/// The piece a file named by [`piece_name`] holds; `None` for any other name.
fn piece_number(name: &str) -> Option<u32> {
    name.strip_prefix('p')?.parse().ok()
}

impl PieceStore {
    /// Opens (creating) the store named `name` in the Origin Private File System.
    pub async fn open(name: &str) -> Result<PieceStore, WebError> {
        let storage = web_sys::window()
            .ok_or(WebError::Closed("window"))?
            .navigator()
            .storage();
        let top: FileSystemDirectoryHandle =
            wait("opening the origin's storage", storage.get_directory())
                .await?
                .unchecked_into();
        let opts = FileSystemGetDirectoryOptions::new();
        opts.set_create(true);
        let app: FileSystemDirectoryHandle = wait(
            "opening the swarmdrop folder",
            top.get_directory_handle_with_options(ROOT, &opts),
        )
        .await?
        .unchecked_into();
        let root: FileSystemDirectoryHandle = wait(
            "opening the store",
            app.get_directory_handle_with_options(name, &opts),
        )
        .await?
        .unchecked_into();
        let path = [ROOT.to_string(), name.to_string()];
        // One small write and its removal now: it checks that storage is writable while the
        // user can still be told (before any download), and it takes the first-use setup of the
        // origin's storage (up to a second in a fresh profile) and the worker's start off the
        // first download. The probe goes through the worker; if that fails, the page writes.
        let started = if PAGE_WRITES.with(Cell::get) {
            Err(WebError::Storage("page writes chosen for testing".into()))
        } else {
            Self::start_writer(&path).await
        };
        let writer = match started {
            Ok(w) => Ok(w),
            Err(e) => {
                tracing::warn!("pieces are written by the page: {e}");
                Self::write(&root, PROBE, &js_sys::Uint8Array::from(&b"swarmdrop"[..])).await?;
                Err(e.to_string())
            }
        };
        wait("removing the storage probe", root.remove_entry(PROBE)).await?;
        Ok(PieceStore {
            root,
            path,
            writer,
            in_data: RefCell::default(),
            told: RefCell::default(),
            room: RefCell::default(),
            pinned: RefCell::default(),
        })
    }

    /// Starts the worker and has it write the probe.
    async fn start_writer(path: &[String; 2]) -> Result<PieceWriter, WebError> {
        let (w, ready) = PieceWriter::start()?;
        let answered = {
            let folder = [path[0].as_str(), path[1].as_str()];
            let probe = async {
                ready.await.map_err(|_| WebError::Closed("store worker"))?;
                let name = ("name", JsValue::from_str(PROBE));
                w.send_bytes(
                    "writing the storage probe",
                    "put",
                    &folder,
                    &[name],
                    w.filled(b"swarmdrop"),
                )
                .await
            };
            super::within(WRITER_START_MS, probe)
                .await
                .unwrap_or_else(|| {
                    Err(WebError::Storage(format!(
                        "the store worker did not answer in {WRITER_START_MS} ms"
                    )))
                })
        };
        answered.map(|_| w)
    }

    /// `Ok` if pieces are written by the worker; else why the page writes them.
    pub fn writes_in_worker(&self) -> Result<(), String> {
        match &self.writer {
            Ok(w) => match &*w.broken.borrow() {
                Some(why) => Err(why.clone()),
                None => Ok(()),
            },
            Err(why) => Err(why.clone()),
        }
    }

    /// The worker, while it works.
    fn worker(&self) -> Option<&PieceWriter> {
        self.writer.as_ref().ok().filter(|w| w.usable())
    }

    /// A file's folder path from the origin's root, as the worker opens it.
    fn folder<'a>(&'a self, hex: &'a str) -> [&'a str; 3] {
        [&self.path[0], &self.path[1], hex]
    }

    async fn dir(&self, id: &FileId, create: bool) -> Result<FileSystemDirectoryHandle, WebError> {
        let opts = FileSystemGetDirectoryOptions::new();
        opts.set_create(create);
        Ok(wait(
            "opening a file's folder",
            self.root
                .get_directory_handle_with_options(&id_hex(id), &opts),
        )
        .await?
        .unchecked_into())
    }

    /// A writable stream on file `name` of `dir` (created if missing); what it writes replaces
    /// the file only when it is closed.
    async fn writable(
        dir: &FileSystemDirectoryHandle,
        name: &str,
        context: &'static str,
    ) -> Result<FileSystemWritableFileStream, WebError> {
        let opts = FileSystemGetFileOptions::new();
        opts.set_create(true);
        let handle: FileSystemFileHandle =
            wait(context, dir.get_file_handle_with_options(name, &opts))
                .await?
                .unchecked_into();
        Ok(wait(context, handle.create_writable())
            .await?
            .unchecked_into())
    }

    async fn write(
        dir: &FileSystemDirectoryHandle,
        name: &str,
        data: &js_sys::Uint8Array,
    ) -> Result<(), WebError> {
        let stream = Self::writable(dir, name, "opening a piece file").await?;
        wait(
            "writing a piece",
            stream
                .write_with_buffer_source(data)
                .map_err(|e| WebError::browser("writing a piece", e))?,
        )
        .await?;
        // The data replaces the file only now, all at once.
        wait("closing a piece file", stream.close()).await?;
        Ok(())
    }

    async fn file(dir: &FileSystemDirectoryHandle, name: &str) -> Result<web_sys::File, WebError> {
        let handle: FileSystemFileHandle = wait("opening a stored file", dir.get_file_handle(name))
            .await?
            .unchecked_into();
        Ok(wait("reading a stored file", handle.get_file())
            .await?
            .unchecked_into())
    }

    /// Whether [`write_piece`](Self::write_piece) will use its `stored` for file `id`: where
    /// the page writes pieces and the file's room check has not started (else 0 will do).
    pub fn wants_stored(&self, id: &FileId) -> bool {
        self.worker().is_none() && !self.room.borrow().contains_key(id)
    }

    /// Whether a write of file `id` must give its manifest (see [`Shape`]): until its `data`
    /// holds it (or, where the page writes, its `manifest` file was written).
    pub fn needs_manifest(&self, id: &FileId) -> bool {
        !self.told.borrow().contains(id)
    }

    /// Stores verified piece `piece` of `file` (`stored` of its bytes stored already). The
    /// file's first write records its manifest with it; its first write into its `data` (or,
    /// where the page writes, its first piece file) checks that the browser lets the site store
    /// all of it, so that a file that does not fit fails at once, saying how much it needs,
    /// rather than when the storage runs out halfway.
    ///
    /// `data` is copied out of wasm memory at once and let go before anything is awaited, so
    /// that pieces waiting on the storage do not hold wasm memory (which never shrinks).
    pub async fn write_piece(
        &self,
        id: &FileId,
        file: Shape,
        stored: u64,
        piece: u32,
        data: Vec<u8>,
    ) -> Result<(), WebError> {
        let at = u64::from(piece) * u64::from(file.piece_size);
        // (Given while the store needs it; one given after it no longer does is not written.)
        let manifest = file.manifest.filter(|_| self.needs_manifest(id));
        if let Some(w) = self.worker() {
            let filled = w.filled(&data);
            drop(data);
            let hex = id_hex(id);
            let mut fields = vec![
                ("piece", JsValue::from_f64(f64::from(piece))),
                ("at", JsValue::from_f64(at as f64)),
                ("size", JsValue::from_f64(file.size as f64)),
                ("pieces", JsValue::from_f64(f64::from(file.pieces))),
            ];
            // With the manifest (the stored file's tail) until its `data` holds it.
            if let Some(m) = &manifest {
                let tail = js_sys::Uint8Array::from(&stored::tail(m)[..]);
                fields.push(("tail", tail.buffer().into()));
            }
            let reply = w
                .send_bytes(
                    "writing a piece",
                    "write",
                    &self.folder(&hex),
                    &fields,
                    filled,
                )
                .await?;
            let place = get(&reply, "where").and_then(|v| v.as_string());
            return match place.as_deref() {
                Some("data") => {
                    self.in_data
                        .borrow_mut()
                        .entry(*id)
                        .or_default()
                        .insert(piece);
                    self.told.borrow_mut().insert(*id);
                    Ok(())
                }
                Some("piece") => Ok(()),
                // Its `data` was laid out, and is new again: removed from outside.
                Some("untold") => {
                    self.told.borrow_mut().remove(id);
                    Err(WebError::Storage(
                        "the stored file was removed while it downloaded; download it again".into(),
                    ))
                }
                _ => Err(WebError::Storage(format!(
                    "writing a piece: the store worker answered {place:?}"
                ))),
            };
        }
        let array = js_sys::Uint8Array::from(&data[..]);
        drop(data);
        let dir = self.dir(id, true).await?;
        if let Some(m) = &manifest {
            Self::write(&dir, MANIFEST, &js_sys::Uint8Array::from(&m.encode()[..])).await?;
            self.told.borrow_mut().insert(*id);
        }
        let check = self.room.borrow().get(id).cloned();
        let check = check.unwrap_or_else(|| {
            let need = file.size.saturating_sub(stored);
            let check = Self::check_room(dir.clone(), need).boxed_local().shared();
            self.room.borrow_mut().insert(*id, check.clone());
            check
        });
        if let Err(e) = check.await {
            self.room.borrow_mut().remove(id);
            return Err(e);
        }
        Self::write(&dir, &piece_name(piece), &array).await
    }

    /// Whether the browser lets the site store `need` more bytes, asked before a file's first
    /// piece file is written (as the worker asks at its first write into `data`): a file is
    /// made that long and dropped at once (the quota counts lengths; nothing is written), so a
    /// download that does not fit stops at once, saying how much it needs, instead of when the
    /// storage runs out halfway.
    async fn check_room(dir: FileSystemDirectoryHandle, need: u64) -> Result<(), WebError> {
        if need == 0 {
            return Ok(());
        }
        let stream = Self::writable(&dir, ROOM, "checking for room").await?;
        let extended = match stream.truncate_with_f64(need as f64) {
            Ok(p) => JsFuture::from(p).await,
            Err(e) => Err(e),
        };
        // Nothing is kept: the stream is dropped unwritten and the empty file removed.
        let _ = JsFuture::from(stream.abort()).await;
        let _ = JsFuture::from(dir.remove_entry(ROOM)).await;
        let Err(e) = extended else { return Ok(()) };
        let message = super::error::describe(&e);
        if !is_full(&message) {
            return Err(storage_error("checking for room", message));
        }
        // What is left, where the browser tells (Chromium's estimate reports usage + 10 GiB
        // whatever the quota, so it is said only where it explains the failure).
        let mut left = String::new();
        if let Some(storage) = web_sys::window().map(|w| w.navigator().storage()) {
            if let Ok(est) = storage.estimate() {
                if let Ok(est) = JsFuture::from(est).await {
                    let num = |k: &str| {
                        js_sys::Reflect::get(&est, &k.into())
                            .ok()
                            .and_then(|v| v.as_f64())
                    };
                    if let (Some(quota), Some(usage)) = (num("quota"), num("usage")) {
                        if quota - usage < need as f64 {
                            left = format!(
                                ", and the browser lets this site store {} more",
                                mib((quota - usage).max(0.0))
                            );
                        }
                    }
                }
            }
        }
        Err(storage_error(
            "writing a piece",
            format!(
                "QuotaExceededError: this file needs {} more{left}",
                mib(need as f64)
            ),
        ))
    }

    /// Reads `len` bytes of stored piece `piece`, which starts at byte `at` of its file.
    pub async fn read(
        &self,
        id: &FileId,
        piece: u32,
        at: u64,
        len: u32,
    ) -> Result<Vec<u8>, WebError> {
        if !self.is_in_data(id, piece) {
            match self.read_piece_file(id, piece, len).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => {
                    // Another tab may have removed the piece file, having found the piece in
                    // `data` (see `list`).
                    let dir = self.dir(id, false).await?;
                    let state = self.data_state(id, &dir).await.unwrap_or_default();
                    if state.marks.get(piece as usize) != Some(&1)
                        || at + u64::from(len) > state.len
                    {
                        return Err(e);
                    }
                    self.in_data
                        .borrow_mut()
                        .entry(*id)
                        .or_default()
                        .insert(piece);
                }
            }
        }
        let hex = id_hex(id);
        match self.worker() {
            Some(w) => {
                let at = ("at", JsValue::from_f64(at as f64));
                w.fetch_bytes("reading a piece", "read", &self.folder(&hex), &[at], len)
                    .await
            }
            None => {
                let file = Self::file(&self.dir(id, false).await?, DATA).await?;
                read_blob(&file, at as f64, (at + u64::from(len)) as f64).await
            }
        }
    }

    /// The Web Lock that guards file `id`'s piece files in this store (across tabs).
    fn lock_name(&self, id: &FileId) -> String {
        format!("swarmdrop/{}/{}", self.path[1], id_hex(id))
    }

    /// The pieces of file `id` known to be in its `data`.
    fn known_in_data(&self, id: &FileId) -> HashSet<u32> {
        self.in_data.borrow().get(id).cloned().unwrap_or_default()
    }

    /// Is `piece` of file `id` known to be in its `data`?
    fn is_in_data(&self, id: &FileId, piece: u32) -> bool {
        self.in_data
            .borrow()
            .get(id)
            .is_some_and(|p| p.contains(&piece))
    }

    /// The first `len` bytes of a piece's own file.
    async fn read_piece_file(
        &self,
        id: &FileId,
        piece: u32,
        len: u32,
    ) -> Result<Vec<u8>, WebError> {
        let file = Self::file(&self.dir(id, false).await?, &piece_name(piece)).await?;
        read_blob(&file, 0.0, f64::from(len)).await
    }

    /// What a file's `data` holds, laid out (see [`stored`]) or as stored before (marks in
    /// `have`): from the worker where it has the file open, else as it is on disk. `None` where
    /// the file has no `data` that was laid out.
    async fn data_state(&self, id: &FileId, dir: &FileSystemDirectoryHandle) -> Option<DataState> {
        let hex = id_hex(id);
        if let Some(w) = self.worker() {
            let reply = w
                .request(
                    "listing a file's pieces",
                    "state",
                    &self.folder(&hex),
                    &[],
                    None,
                )
                .await
                .ok()
                .filter(|r| get(r, "closed").is_none());
            if let Some(r) = reply {
                let bytes = |k: &str| {
                    get(&r, k)
                        .and_then(|v| v.dyn_into::<js_sys::ArrayBuffer>().ok())
                        .map(|b| js_sys::Uint8Array::new(&b).to_vec())
                };
                return Some(DataState {
                    marks: bytes("have")?,
                    len: get(&r, "size")?.as_f64()? as u64,
                    manifest: bytes("manifest"),
                });
            }
        }
        // Not open in this worker: read the file as it is on disk. A folder with `have` is
        // stored as before (whatever its `data` ends with: a file's own bytes may end like a
        // trailer).
        let data = Self::file(dir, DATA).await.ok()?;
        let len = data.size() as u64;
        if let Ok(have) = Self::file(dir, HAVE).await {
            let marks = read_blob(&have, 0.0, have.size()).await.ok()?;
            return Some(DataState {
                marks,
                len,
                manifest: None,
            });
        }
        let trailer = stored::TRAILER_LEN;
        if len < trailer {
            return None;
        }
        let end = read_blob(&data, (len - trailer) as f64, len as f64)
            .await
            .ok()?;
        let l = stored::Layout::parse(&end, len)?;
        let (marks, manifest) = (l.marks(), l.manifest());
        let both = read_blob(&data, marks.start as f64, manifest.end as f64)
            .await
            .ok()?;
        let split = (marks.end - marks.start) as usize;
        Some(DataState {
            marks: both[..split].to_vec(),
            len,
            manifest: Some(both[split..].to_vec()),
        })
    }

    /// The pieces of `m` in its `data` (per its marks; only whole pieces count), added to what
    /// is known of it.
    async fn data_pieces(&self, m: &Manifest, dir: &FileSystemDirectoryHandle) -> Vec<u32> {
        match self.data_state(&m.id(), dir).await {
            Some(state) => self.pieces_in(m, &state),
            None => Vec::new(),
        }
    }

    /// The pieces of `m` that `state` of its `data` holds (see [`data_pieces`](Self::data_pieces)).
    fn pieces_in(&self, m: &Manifest, state: &DataState) -> Vec<u32> {
        let (have, size) = (&state.marks, state.len);
        let pieces: Vec<u32> = (0..m.pieces())
            .filter(|&p| {
                have.get(p as usize) == Some(&1)
                    && u64::from(p) * u64::from(m.piece_size) + u64::from(m.piece_len(p)) <= size
            })
            .collect();
        // Pieces never leave `data` (but with the whole file): what was seen there stays.
        self.in_data
            .borrow_mut()
            .entry(m.id())
            .or_default()
            .extend(pieces.iter().copied());
        pieces
    }

    /// Every stored file: its manifest and which pieces are on disk. A folder that cannot be
    /// read is left out (one being deleted meanwhile, by this tab or another, is gone before
    /// it can be opened: the listing of the others must not fail with it).
    pub async fn list(&self) -> Result<Vec<(Manifest, Bitfield)>, WebError> {
        let mut out = Vec::new();
        for name in keys(&self.root).await? {
            let Some(id) = id_from_hex(&name) else {
                continue;
            };
            match self.listed(&id).await {
                Ok(Some(file)) => out.push(file),
                Ok(None) => {}
                Err(e) => tracing::debug!("stored file {name} left out of the list: {e}"),
            }
        }
        Ok(out)
    }

    /// One stored file's manifest and pieces on disk (see [`list`](Self::list)); `None` for a
    /// folder that holds nothing usable.
    async fn listed(&self, id: &FileId) -> Result<Option<(Manifest, Bitfield)>, WebError> {
        let dir = self.dir(id, false).await?;
        let mut state = self.data_state(id, &dir).await;
        // The manifest: in `data` (laid out), else in its own file (stored before that, or
        // beside piece files).
        let bytes = match state.as_mut().and_then(|s| s.manifest.take()) {
            Some(bytes) => bytes,
            None => {
                let Ok(file) = Self::file(&dir, MANIFEST).await else {
                    return Ok(None); // a folder without a manifest holds nothing usable
                };
                read_blob(&file, 0.0, file.size()).await?
            }
        };
        let Ok(m) = Manifest::decode(&bytes, id) else {
            return Ok(None);
        };
        let mut have = Bitfield::new(m.pieces());
        let in_data: HashSet<u32> = match &state {
            Some(state) => {
                // Its `data` is laid out: writes need not give the manifest again.
                self.told.borrow_mut().insert(*id);
                self.pieces_in(&m, state).into_iter().collect()
            }
            None => HashSet::new(),
        };
        for &p in &in_data {
            have.set(p);
        }
        let mut spare = Vec::new();
        for entry in keys(&dir).await? {
            if let Some(p) = piece_number(&entry) {
                if in_data.contains(&p) {
                    spare.push(entry);
                    continue;
                }
                // Only pieces of the right length count (a piece is written whole or not).
                if p < m.pieces() && !have.get(p) {
                    if let Ok(f) = Self::file(&dir, &entry).await {
                        if f.size() as u32 == m.piece_len(p) {
                            have.set(p);
                        }
                    }
                }
            }
        }
        // Piece files of pieces `data` has now too (written by a tab while another one
        // held `data`) only take room: they go, unless a tab has handed over a `File` that
        // holds them (a tab still serving from one finds the piece in `data`, see `read`).
        if !spare.is_empty() {
            if let Some(_nobody_else) = web_lock(&self.lock_name(id), true, true).await {
                for entry in spare {
                    let removed = wait("removing a piece file", dir.remove_entry(&entry));
                    if let Err(e) = removed.await {
                        tracing::debug!("keeping {entry} of {}: {e}", m.name);
                    }
                }
            }
        }
        Ok(Some((m, have)))
    }

    /// How many of a file's pieces are stored as piece files (rather than in its `data`).
    #[doc(hidden)]
    pub async fn piece_files(&self, id: &FileId) -> Result<usize, WebError> {
        let dir = self.dir(id, false).await?;
        Ok(keys(&dir)
            .await?
            .iter()
            .filter(|k| piece_number(k).is_some())
            .count())
    }

    /// Has the worker let go of a file's `data` (so it can be handed over or deleted, or
    /// written by another tab once its download here stopped); reads do not take it back.
    pub async fn release(&self, id: &FileId) -> Result<(), WebError> {
        if let Some(w) = self.worker() {
            let hex = id_hex(id);
            w.request(
                "closing a stored file",
                "close",
                &self.folder(&hex),
                &[],
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// The finished file as one `File`: its `data` (read from disk when used), with any
    /// pieces stored as their own files (written by the page, or while another tab held
    /// `data`) spliced in.
    pub async fn assemble(&self, m: &Manifest) -> Result<web_sys::File, WebError> {
        let id = m.id();
        // Taken before the pieces are looked at: no tab removes a piece file this `File` might
        // take from now on.
        let pin = web_lock(&self.lock_name(&id), false, false).await;
        self.release(&id).await?;
        let dir = self.dir(&id, false).await?;
        let mut in_data = self.known_in_data(&id);
        // Pieces this tab knows only as piece files are taken from those, even where another
        // tab has written them into `data` since: that tab may still be writing `data`, and
        // the browser refuses to read a `File` of it that was taken before a write.
        let parts = match self.parts(m, &dir, &in_data).await {
            Ok(parts) => parts,
            Err(e) => {
                // A piece file another tab removed, having found its piece in `data` (see
                // `list`), before this tab pinned them.
                self.data_pieces(m, &dir).await;
                let now = self.known_in_data(&id);
                if now == in_data {
                    return Err(e);
                }
                in_data = now;
                self.parts(m, &dir, &in_data).await?
            }
        };
        if in_data.len() as u32 != m.pieces() {
            if let Some(pin) = pin {
                self.pinned.borrow_mut().insert(id, pin);
            }
        }
        let opts = web_sys::FilePropertyBag::new();
        opts.set_type(&m.mime);
        web_sys::File::new_with_blob_sequence_and_options(&parts, &m.name, &opts)
            .map_err(|e| WebError::browser("assembling the file", e))
    }

    /// The parts of a finished file: runs of pieces `in_data` as slices of `data`, the other
    /// pieces as their own files.
    async fn parts(
        &self,
        m: &Manifest,
        dir: &FileSystemDirectoryHandle,
        in_data: &HashSet<u32>,
    ) -> Result<js_sys::Array, WebError> {
        let parts = js_sys::Array::new();
        if in_data.len() as u32 == m.pieces() {
            let whole = Self::file(dir, DATA)
                .await?
                .slice_with_f64_and_f64(0.0, m.size as f64)
                .map_err(|e| WebError::browser("slicing a file", e))?;
            parts.push(&whole);
        } else {
            let data = if in_data.is_empty() {
                None
            } else {
                Some(Self::file(dir, DATA).await?)
            };
            let mut next = 0;
            while next < m.pieces() {
                if let (true, Some(data)) = (in_data.contains(&next), &data) {
                    // A run of pieces in `data`: one slice.
                    let start = next;
                    while next < m.pieces() && in_data.contains(&next) {
                        next += 1;
                    }
                    let from = u64::from(start) * u64::from(m.piece_size);
                    let to = (u64::from(next) * u64::from(m.piece_size)).min(m.size);
                    let part = data
                        .slice_with_f64_and_f64(from as f64, to as f64)
                        .map_err(|e| WebError::browser("slicing a file", e))?;
                    parts.push(&part);
                    continue;
                }
                // A run of piece files, opened many at once: one at a time, the round trips
                // to the browser for each piece's file added up to a noticeable wait.
                let start = next;
                while next < m.pieces()
                    && next - start < ASSEMBLE_IN_FLIGHT
                    && !(data.is_some() && in_data.contains(&next))
                {
                    next += 1;
                }
                let handles: js_sys::Array = (start..next)
                    .map(|p| JsValue::from(dir.get_file_handle(&piece_name(p))))
                    .collect();
                let handles = wait("opening a stored file", js_sys::Promise::all(&handles)).await?;
                let files: js_sys::Array = js_sys::Array::from(&handles)
                    .iter()
                    .map(|h| JsValue::from(h.unchecked_into::<FileSystemFileHandle>().get_file()))
                    .collect();
                let files = wait("reading a stored file", js_sys::Promise::all(&files)).await?;
                for f in js_sys::Array::from(&files).iter() {
                    parts.push(&f);
                }
            }
        }
        Ok(parts)
    }

    /// Deletes a file's pieces and manifest.
    pub async fn delete(&self, id: &FileId) -> Result<(), WebError> {
        self.release(id).await?;
        self.in_data.borrow_mut().remove(id);
        self.told.borrow_mut().remove(id);
        self.pinned.borrow_mut().remove(id);
        let opts = FileSystemRemoveOptions::new();
        opts.set_recursive(true);
        wait(
            "deleting a stored file",
            self.root.remove_entry_with_options(&id_hex(id), &opts),
        )
        .await?;
        Ok(())
    }
}

/// The names in a folder.
async fn keys(dir: &FileSystemDirectoryHandle) -> Result<Vec<String>, WebError> {
    let iter = dir.keys();
    let mut names = Vec::new();
    loop {
        let next = wait(
            "listing a folder",
            iter.next().map_err(|e| WebError::browser("listing", e))?,
        )
        .await?;
        let done = js_sys::Reflect::get(&next, &"done".into())
            .ok()
            .and_then(|d| d.as_bool());
        if done != Some(false) {
            break;
        }
        if let Some(name) = js_sys::Reflect::get(&next, &"value".into())
            .ok()
            .and_then(|v| v.as_string())
        {
            names.push(name);
        }
    }
    Ok(names)
}

/// Reads of a whole blob `chunk` bytes at a time, in order (the last one shorter), to be run a
/// few at once (`futures::stream::iter(..).buffered(n)`): never the whole blob in memory.
pub fn read_chunks(
    blob: &web_sys::Blob,
    chunk: f64,
) -> impl Iterator<Item = impl std::future::Future<Output = Result<Vec<u8>, WebError>>> {
    let size = blob.size();
    let blob = blob.clone();
    (0..(size / chunk).ceil() as u64).map(move |i| {
        let blob = blob.clone();
        let start = i as f64 * chunk;
        async move { read_blob(&blob, start, (start + chunk).min(size)).await }
    })
}

/// Bytes `start..end` of a blob (only that range is read), through a BYOB reader of the
/// slice's stream into buffers reused from read to read ([`READ_BUFFERS`]); where the browser
/// has no byte stream for blobs, through `arrayBuffer()`. That allocated a new buffer for each
/// read, which stayed until the garbage collector found it: a tab sharing a file from disk at
/// the channel's full rate held 100–260 MiB of them (measured with Chromium's memory-infra).
pub async fn read_blob(blob: &web_sys::Blob, start: f64, end: f64) -> Result<Vec<u8>, WebError> {
    let part = blob
        .slice_with_f64_and_f64(start, end)
        .map_err(|e| WebError::browser("slicing a file", e))?;
    let want = part.size() as usize;
    let options = web_sys::ReadableStreamGetReaderOptions::new();
    options.set_mode(web_sys::ReadableStreamReaderMode::Byob);
    let byob = part
        .stream()
        .get_reader_with_options(&options)
        .dyn_into::<web_sys::ReadableStreamByobReader>();
    let Ok(reader) = byob else {
        let buf = wait("reading a file", part.array_buffer()).await?;
        return Ok(js_sys::Uint8Array::new(&buf).to_vec());
    };
    // Zeroed at once (`memory.fill`), then filled chunk by chunk: growing it chunk by chunk
    // with `resize` zeroed it a byte at a time (as the size-optimized build compiles that
    // loop), ~0.5 ms of the page's time per MiB read (a sampled profile).
    let mut out = vec![0u8; want];
    let mut filled = 0;
    let mut buf = READ_BUFFERS
        .with(|b| b.borrow_mut().pop())
        .unwrap_or_else(|| js_sys::ArrayBuffer::new(READ_BUFFER_BYTES));
    loop {
        // Never more than is left, so a blob whose size changed under us ends here.
        let room = buf.byte_length().min((want - filled).max(1) as u32);
        let view = js_sys::Uint8Array::new_with_byte_offset_and_length(&buf, 0, room);
        // The read moves the buffer into the stream (and back in its result): a failed read
        // keeps it, and the next read allocates another.
        let result = wait("reading a file", reader.read_with_array_buffer_view(&view)).await?;
        let done = js_sys::Reflect::get(&result, &"done".into())
            .map(|d| d.is_truthy())
            .unwrap_or(true);
        let Some(chunk) = js_sys::Reflect::get(&result, &"value".into())
            .ok()
            .and_then(|v| v.dyn_into::<js_sys::Uint8Array>().ok())
        else {
            break;
        };
        let n = chunk.length() as usize;
        if filled + n > want {
            let _ = reader.cancel();
            return Err(WebError::Storage(format!(
                "reading a file: more than the {want} bytes asked for"
            )));
        }
        chunk.copy_to(&mut out[filled..filled + n]);
        filled += n;
        buf = chunk.buffer();
        if done {
            break;
        }
    }
    READ_BUFFERS.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < READ_BUFFERS_KEPT && buf.byte_length() == READ_BUFFER_BYTES {
            b.push(buf);
        }
    });
    if filled != want {
        return Err(WebError::Storage(format!(
            "reading a file: {filled} of {want} bytes (did it change?)"
        )));
    }
    Ok(out)
}

/// The size of each buffer [`read_blob`] reads into.
const READ_BUFFER_BYTES: u32 = 1 << 20;
/// Buffers kept for reads: as many as reads usually run at once.
const READ_BUFFERS_KEPT: usize = 4;

thread_local! {
    /// Buffers [`read_blob`] reads into, kept for the next reads.
    static READ_BUFFERS: RefCell<Vec<js_sys::ArrayBuffer>> = const { RefCell::new(Vec::new()) };
}

/// A Web Lock, held until this is dropped.
struct Held(js_sys::Function);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.call0(&JsValue::NULL);
    }
}

/// Takes the Web Lock `name`, shared or exclusive; `None` where the browser has no Web Locks
/// or, `if_available`, where another holds it now.
async fn web_lock(name: &str, exclusive: bool, if_available: bool) -> Option<Held> {
    let locks = js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| js_sys::Reflect::get(&n, &"locks".into()))
        .ok()?;
    let request: js_sys::Function = js_sys::Reflect::get(&locks, &"request".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let (tx, rx) = oneshot::channel();
    // Called once, with the lock (or `null`); the lock is held until the promise it returns
    // settles, which is when the `Held` resolving it is dropped.
    let granted = Closure::once_into_js(move |lock: JsValue| -> JsValue {
        if lock.is_null() {
            return JsValue::UNDEFINED;
        }
        let mut tx = Some(tx);
        js_sys::Promise::new(&mut |resolve, _| {
            if let Some(tx) = tx.take() {
                let _ = tx.send(Held(resolve));
            }
        })
        .into()
    });
    let mode = if exclusive { "exclusive" } else { "shared" };
    let opts = obj(&[("mode", mode.into()), ("ifAvailable", if_available.into())]);
    let asked: js_sys::Promise = request
        .call3(&locks, &name.into(), &opts, &granted)
        .ok()?
        .dyn_into()
        .ok()?;
    // The request settles without a grant where it fails or (`if_available`) the lock is taken;
    // once granted, it settles only after the release.
    let settled = JsFuture::from(asked);
    futures::pin_mut!(settled);
    match futures::future::select(rx, settled).await {
        futures::future::Either::Left((held, _)) => held.ok(),
        futures::future::Either::Right(_) => None,
    }
}
