//! `zipFiles`: files packed into one zip archive without copying them (see
//! [`crate::transfer::zip`]): the archive is a `File` made of the headers and each file as it
//! is, so a download stored on disk stays there; each file is read once for its CRC-32.

use crate::transfer::zip::{Crc32, DosTime, ZipWriter};
use crate::web::store::{get, read_chunks};
use crate::web::task::Task;
use futures::StreamExt;
use wasm_bindgen::prelude::*;

/// Bytes read at once for the CRC-32, and reads in flight: what they hold is wasm memory,
/// which never shrinks, so a few MiB (reads from disk take ~0.5 ms a MiB either way).
const CHUNK: f64 = 2.0 * 1024.0 * 1024.0;
const READS_IN_FLIGHT: usize = 2;

/// Packs `entries` (`[{ file, name? }]`; `name`: its path in the archive, else the file's own
/// name) into a zip archive named `name`: resolves with the archive as a `File` (stored entries,
/// no compression; Zip64 past 4 GiB). Names are made safe to unpack (no `..`, no leading `/`)
/// and unique (a number before the extension). `options`: `onProgress(read, total)` as the
/// files are read for their checksums, `signal` (an `AbortSignal`: rejects with its reason).
#[wasm_bindgen(js_name = zipFiles, unchecked_return_type = "File")]
pub async fn zip_files(
    #[wasm_bindgen(unchecked_param_type = "ZipEntry[]")] entries: js_sys::Array,
    name: String,
    #[wasm_bindgen(unchecked_optional_param_type = "TaskOptions")] options: Option<js_sys::Object>,
) -> Result<JsValue, JsValue> {
    let task = Task::new(options.as_ref());
    let mut files = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let file: web_sys::Blob = get(&e, "file")
            .and_then(|f| f.dyn_into().ok())
            .ok_or_else(|| JsError::new(&format!("entry {i}: no file (a File or Blob)")))?;
        let named = get(&e, "name")
            .and_then(|n| n.as_string())
            .or_else(|| {
                file.clone()
                    .dyn_into::<web_sys::File>()
                    .ok()
                    .map(|f| f.name())
            })
            .unwrap_or_default();
        files.push((file, named));
    }
    let total: f64 = files.iter().map(|(f, _)| f.size()).sum();
    let now = js_sys::Date::new_0();
    let mut w = ZipWriter::new(DosTime::new(
        now.get_full_year(),
        now.get_month() + 1,
        now.get_date(),
        now.get_hours(),
        now.get_minutes(),
        now.get_seconds(),
    ));
    let parts = js_sys::Array::new();
    let mut read = 0.0;
    task.progress(0.0, total);
    for (file, named) in &files {
        let mut crc = Crc32::new();
        let mut chunks = futures::stream::iter(read_chunks(file, CHUNK)).buffered(READS_IN_FLIGHT);
        while let Some(bytes) = chunks.next().await {
            task.go_on()?;
            let bytes = bytes.map_err(|e| JsError::new(&format!("reading {named}: {e}")))?;
            crc.update(&bytes);
            read += bytes.len() as f64;
            task.progress(read, total);
        }
        let (head, _) = w.entry(named, file.size() as u64, crc.finish());
        parts.push(&js_sys::Uint8Array::from(&head[..]));
        parts.push(file);
    }
    task.go_on()?;
    parts.push(&js_sys::Uint8Array::from(&w.finish()[..]));
    let opts = web_sys::FilePropertyBag::new();
    opts.set_type("application/zip");
    let zip = web_sys::File::new_with_u8_array_sequence_and_options(&parts, &name, &opts)?;
    Ok(zip.into())
}
