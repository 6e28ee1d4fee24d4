//! Pieces on disk: the Origin Private File System, one folder per file and one OPFS file per
//! verified piece. A piece is written once (no copy of the whole file per write, as a single
//! growing file would need), is on disk when its write closes, and a reload finds exactly the
//! pieces that were verified and stored. A finished file is handed over as a `File` made of the
//! piece files, which the browser reads from disk when it is saved.

use super::error::WebError;
use crate::transfer::{id_from_hex, id_hex, Bitfield, FileId, Manifest};
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

/// The piece store of this origin.
pub struct PieceStore {
    root: FileSystemDirectoryHandle,
}

async fn wait(what: &'static str, p: js_sys::Promise) -> Result<JsValue, WebError> {
    JsFuture::from(p).await.map_err(|e| {
        let err = WebError::browser(what, e);
        // Make the usual failure readable.
        match &err {
            WebError::Browser { message, .. }
                if message.contains("quota") || message.contains("Quota") =>
            {
                WebError::Browser {
                    context: what,
                    message: format!("the browser's storage for this site is full ({message})"),
                }
            }
            _ => err,
        }
    })
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
        let root = wait(
            "opening the store",
            app.get_directory_handle_with_options(name, &opts),
        )
        .await?
        .unchecked_into();
        // One small write and its removal now: it checks that storage is writable while the
        // user can still be told (before any download), and it takes the first-use setup of the
        // origin's storage (up to a second in a fresh profile) off the first download.
        Self::write(&root, PROBE, b"swarmdrop").await?;
        wait("removing the storage probe", root.remove_entry(PROBE)).await?;
        Ok(PieceStore { root })
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
        let dir = self.dir(id, true).await?;
        Self::write(&dir, &piece_name(piece), data).await
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
        let parts = js_sys::Array::new();
        for p in 0..m.pieces() {
            let piece: JsValue = Self::file(&dir, &piece_name(p)).await?.into();
            parts.push(&piece);
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
