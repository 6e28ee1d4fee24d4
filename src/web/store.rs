//! Pieces on disk: the Origin Private File System, one folder per file and one OPFS file per
//! verified piece. A piece is written once (no copy of the whole file per write, as a single
//! growing file would need), is on disk when its write closes, and a reload finds exactly the
//! pieces that were verified and stored. A finished file is handed over as a `File` made of the
//! piece files, which the browser reads from disk when it is saved.
//!
//! Pieces are written by a dedicated worker (`piece_writer.js`) through
//! `FileSystemSyncAccessHandle`s, off the main thread that runs the swarm, instead of through
//! `createWritable()` streams on the page. Where the worker cannot run, the page writes them
//! itself (the same files, so either can resume the other's download).

use super::error::WebError;
use crate::transfer::{id_from_hex, id_hex, Bitfield, FileId, Manifest};
use futures::channel::oneshot;
use gloo_events::EventListener;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
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
const MANIFEST: &str = "manifest";
/// Piece files opened at once when a finished file is assembled.
const ASSEMBLE_IN_FLIGHT: u32 = 32;
/// The worker's first write (the probe) must be done by then, or the page writes pieces itself.
const WRITER_START_MS: u32 = 5_000;

#[wasm_bindgen(module = "/src/web/piece_writer.js")]
extern "C" {
    /// The URL of the piece writer's module (it starts the worker from itself).
    #[wasm_bindgen(js_name = pieceWriterUrl)]
    fn piece_writer_url() -> String;
}

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
}

/// Answers awaited from the writer, by request number.
type Pending = Rc<RefCell<HashMap<u32, oneshot::Sender<Result<(), String>>>>>;

/// Buffers the worker handed back after writing, reused for the next pieces: a fresh 1 MiB
/// `ArrayBuffer` per piece (allocated, zeroed, faulted in, then freed by the worker) cost more
/// on the page's main thread than copying the piece into it.
type Pool = Rc<RefCell<Vec<js_sys::ArrayBuffer>>>;

/// Buffers kept in the pool (pieces in flight to the writer rarely exceed a few).
const POOL_MAX: usize = 8;

/// The dedicated worker that writes pieces (see the module docs); terminated when dropped.
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

impl PieceWriter {
    /// Starts the worker; the receiver fires on its first message, once its script runs.
    /// Nothing may be posted before (a message posted to a module worker still loading was
    /// seen to be lost).
    fn start() -> Result<(PieceWriter, oneshot::Receiver<()>), WebError> {
        let opts = web_sys::WorkerOptions::new();
        opts.set_type(web_sys::WorkerType::Module);
        opts.set_name("swarmdrop piece writer");
        let worker = web_sys::Worker::new_with_options(&piece_writer_url(), &opts)
            .map_err(|e| WebError::browser("starting the piece writer", e))?;
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
            let get = |k: &str| js_sys::Reflect::get(&data, &JsValue::from_str(k)).ok();
            if get("ready").is_some_and(|v| v.is_truthy()) {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
                return;
            }
            let Some(seq) = get("seq").and_then(|v| v.as_f64()) else {
                return;
            };
            if let Some(buf) = get("data").and_then(|v| v.dyn_into::<js_sys::ArrayBuffer>().ok()) {
                let mut pool = returned.borrow_mut();
                if pool.len() < POOL_MAX {
                    pool.push(buf);
                }
            }
            let result = match get("error").and_then(|v| v.as_string()) {
                Some(e) => Err(e),
                None => Ok(()),
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
                .unwrap_or_else(|| "the piece writer failed".into());
            tracing::warn!("piece writer: {message}; pieces are written by the page");
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

    /// Writes `data` as file `name` in the folder at `path` (created as needed).
    async fn write(&self, path: &[&str], name: &str, data: &[u8]) -> Result<(), WebError> {
        let seq = self.next.get().wrapping_add(1);
        self.next.set(seq);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(seq, tx);
        let len = data.len() as u32;
        let buf = match self.pool.borrow_mut().pop() {
            Some(b) if b.byte_length() >= len => b,
            _ => js_sys::ArrayBuffer::new(len),
        };
        let bytes = js_sys::Uint8Array::new_with_byte_offset_and_length(&buf, 0, len);
        bytes.copy_from(data);
        let msg = crate::web::swarm::obj(&[
            ("seq", JsValue::from_f64(f64::from(seq))),
            (
                "path",
                path.iter()
                    .map(|p| JsValue::from_str(p))
                    .collect::<js_sys::Array>()
                    .into(),
            ),
            ("name", JsValue::from_str(name)),
            ("data", buf.clone().into()),
            ("len", JsValue::from_f64(f64::from(len))),
        ]);
        let transfer = js_sys::Array::of1(&buf);
        if let Err(e) = self.worker.post_message_with_transfer(&msg, &transfer) {
            self.pending.borrow_mut().remove(&seq);
            return Err(WebError::browser("handing a piece to the piece writer", e));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(storage_error("writing a piece", message)),
            Err(_) => Err(WebError::Closed("piece writer")),
        }
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

/// A storage failure, with the usual one (a full quota) made readable.
fn storage_error(context: &'static str, message: String) -> WebError {
    let message = if message.contains("quota") || message.contains("Quota") {
        format!("the browser's storage for this site is full ({message})")
    } else {
        message
    };
    WebError::Browser { context, message }
}

fn piece_name(piece: u32) -> String {
    format!("p{piece}")
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
                Self::write(&root, PROBE, b"swarmdrop").await?;
                Err(e.to_string())
            }
        };
        wait("removing the storage probe", root.remove_entry(PROBE)).await?;
        Ok(PieceStore { root, path, writer })
    }

    /// Starts the piece writer and has it write the probe.
    async fn start_writer(path: &[String; 2]) -> Result<PieceWriter, WebError> {
        let (w, ready) = PieceWriter::start()?;
        let answered = {
            let folder = [path[0].as_str(), path[1].as_str()];
            let probe = async {
                ready.await.map_err(|_| WebError::Closed("piece writer"))?;
                w.write(&folder, PROBE, b"swarmdrop").await
            };
            super::within(WRITER_START_MS, probe)
                .await
                .unwrap_or_else(|| {
                    Err(WebError::Storage(format!(
                        "the piece writer did not answer in {WRITER_START_MS} ms"
                    )))
                })
        };
        answered.map(|()| w)
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

    async fn write(
        dir: &FileSystemDirectoryHandle,
        name: &str,
        data: &[u8],
    ) -> Result<(), WebError> {
        let opts = FileSystemGetFileOptions::new();
        opts.set_create(true);
        let handle: FileSystemFileHandle = wait(
            "creating a piece file",
            dir.get_file_handle_with_options(name, &opts),
        )
        .await?
        .unchecked_into();
        let stream: FileSystemWritableFileStream =
            wait("opening a piece file", handle.create_writable())
                .await?
                .unchecked_into();
        let array = js_sys::Uint8Array::from(data);
        wait(
            "writing a piece",
            stream
                .write_with_buffer_source(&array)
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

    /// Records a file's manifest (before its first piece).
    pub async fn save_manifest(&self, m: &Manifest) -> Result<(), WebError> {
        let dir = self.dir(&m.id(), true).await?;
        Self::write(&dir, MANIFEST, &m.encode()).await
    }

    /// Stores a verified piece.
    pub async fn write_piece(&self, id: &FileId, piece: u32, data: &[u8]) -> Result<(), WebError> {
        match &self.writer {
            Ok(w) if w.broken.borrow().is_none() => {
                let folder = id_hex(id);
                w.write(
                    &[&self.path[0], &self.path[1], &folder],
                    &piece_name(piece),
                    data,
                )
                .await
            }
            _ => {
                let dir = self.dir(id, true).await?;
                Self::write(&dir, &piece_name(piece), data).await
            }
        }
    }

    /// Reads `len` bytes at `offset` of a stored piece.
    pub async fn read(
        &self,
        id: &FileId,
        piece: u32,
        offset: u32,
        len: u32,
    ) -> Result<Vec<u8>, WebError> {
        let dir = self.dir(id, false).await?;
        let file = Self::file(&dir, &piece_name(piece)).await?;
        read_blob(&file, f64::from(offset), f64::from(offset) + f64::from(len)).await
    }

    /// Every stored file: its manifest and which pieces are on disk.
    pub async fn list(&self) -> Result<Vec<(Manifest, Bitfield)>, WebError> {
        let mut out = Vec::new();
        for name in keys(&self.root).await? {
            let Some(id) = id_from_hex(&name) else {
                continue;
            };
            let dir = self.dir(&id, false).await?;
            let Ok(file) = Self::file(&dir, MANIFEST).await else {
                continue; // a folder without a manifest holds nothing usable
            };
            let bytes = read_blob(&file, 0.0, file.size()).await?;
            let Ok(m) = Manifest::decode(&bytes, &id) else {
                continue;
            };
            let mut have = Bitfield::new(m.pieces());
            for entry in keys(&dir).await? {
                if let Some(p) = entry.strip_prefix('p').and_then(|n| n.parse::<u32>().ok()) {
                    // Only pieces of the right length count (a piece is written whole or not).
                    if let Ok(f) = Self::file(&dir, &entry).await {
                        if f.size() as u32 == m.piece_len(p) {
                            have.set(p);
                        }
                    }
                }
            }
            out.push((m, have));
        }
        Ok(out)
    }

    /// The finished file as one `File`, made of the piece files (read from disk when used).
    pub async fn assemble(&self, m: &Manifest) -> Result<web_sys::File, WebError> {
        let dir = self.dir(&m.id(), false).await?;
        // Many pieces asked at once (in order): one at a time, the round trips to the browser
        // for each piece's file added up to a noticeable wait at the end of every download.
        let parts = js_sys::Array::new();
        let mut next = 0;
        while next < m.pieces() {
            let end = next.saturating_add(ASSEMBLE_IN_FLIGHT).min(m.pieces());
            let handles: js_sys::Array = (next..end)
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
            next = end;
        }
        let opts = web_sys::FilePropertyBag::new();
        opts.set_type(&m.mime);
        web_sys::File::new_with_blob_sequence_and_options(&parts, &m.name, &opts)
            .map_err(|e| WebError::browser("assembling the file", e))
    }

    /// Deletes a file's pieces and manifest.
    pub async fn delete(&self, id: &FileId) -> Result<(), WebError> {
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

/// Bytes `start..end` of a blob (only that range is read).
pub async fn read_blob(blob: &web_sys::Blob, start: f64, end: f64) -> Result<Vec<u8>, WebError> {
    let part = blob
        .slice_with_f64_and_f64(start, end)
        .map_err(|e| WebError::browser("slicing a file", e))?;
    let buf = wait("reading a file", part.array_buffer()).await?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}
