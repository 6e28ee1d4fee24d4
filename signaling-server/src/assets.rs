//! The wasm package's large files (`.wasm`, `.js` in `--pkg`) served compressed from memory.
//!
//! Compressing the ~550 KB wasm on every request (what a compression layer does) took 26 ms of
//! CPU per page load with brotli in a release build (100 ms in a debug one), in front of every
//! join. Here each file is compressed once per version (its length and modification time), at
//! startup and again when it changes on disk, and every request gets the stored bytes, with an
//! `ETag` so that a revalidating browser (the package is `no-cache`) gets `304 Not Modified`.
//! Anything else, and any client that takes neither brotli nor gzip, goes to the static file
//! service.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A content coding this cache stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// Brotli (`br`).
    Br,
    /// gzip.
    Gzip,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// `data` compressed (brotli quality 9, gzip level 9: done once per file version).
    pub fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Coding::Br => {
                let mut w = brotli::CompressorWriter::new(Vec::new(), 64 * 1024, 9, 22);
                w.write_all(data)?;
                w.flush()?;
                Ok(w.into_inner())
            }
            Coding::Gzip => {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                w.write_all(data)?;
                w.finish()
            }
        }
    }
}

/// The coding to answer with, from an `Accept-Encoding` header: brotli, else gzip, else none
/// (a coding listed with `q=0` is refused).
pub fn pick(accept: Option<&HeaderValue>) -> Option<Coding> {
    let accept = accept?.to_str().ok()?;
    let accepted = |want: &str| {
        accept.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            name.eq_ignore_ascii_case(want) && q > 0.0
        })
    };
    if accepted("br") {
        Some(Coding::Br)
    } else if accepted("gzip") {
        Some(Coding::Gzip)
    } else {
        None
    }
}

/// One compressed file version.
struct Entry {
    len: u64,
    modified: SystemTime,
    body: axum::body::Bytes,
    etag: HeaderValue,
}

/// Compressed file versions by path and coding.
type Entries = HashMap<(PathBuf, Coding), Arc<Entry>>;

/// Compressed package files, by path and coding.
#[derive(Clone)]
pub struct Compressed {
    dir: PathBuf,
    entries: Arc<Mutex<Entries>>,
}

impl Compressed {
    /// A cache of the files in `dir` (nothing is read yet; see [`Compressed::warm`]).
    pub fn new(dir: &Path) -> Self {
        Compressed {
            dir: dir.to_path_buf(),
            entries: Arc::default(),
        }
    }

    /// Compresses every `.wasm` and `.js` file of the folder now, so that the first page load
    /// does not wait for it.
    pub async fn warm(&self) {
        let Ok(mut list) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(entry)) = list.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if cacheable(&name) {
                for coding in [Coding::Br, Coding::Gzip] {
                    let _ = self.get(&name, coding).await;
                }
            }
        }
    }

    /// The answer to `req` (a path inside the package) if it is a cacheable file that exists
    /// and the client takes a coding; `None` leaves the request to the static file service.
    pub async fn serve(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<Response<Body>> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let name = path.strip_prefix('/')?;
        if !cacheable(name) {
            return None;
        }
        let coding = pick(headers.get(header::ACCEPT_ENCODING))?;
        let entry = self.get(name, coding).await?;
        Some(respond(&entry, name, coding, headers, method))
    }

    /// The current compressed version of file `name`, compressing it if it changed.
    async fn get(&self, name: &str, coding: Coding) -> Option<Arc<Entry>> {
        let path = self.dir.join(name);
        let meta = tokio::fs::metadata(&path).await.ok()?;
        if !meta.is_file() {
            return None;
        }
        let (len, modified) = (meta.len(), meta.modified().ok()?);
        let key = (path.clone(), coding);
        if let Some(e) = self.lock().get(&key) {
            if e.len == len && e.modified == modified {
                return Some(Arc::clone(e));
            }
        }
        let data = tokio::fs::read(&path).await.ok()?;
        if data.len() as u64 != len {
            // Changed while read: let the static file service answer this time.
            return None;
        }
        let body = tokio::task::spawn_blocking(move || coding.compress(&data))
            .await
            .ok()?
            .map_err(|e| tracing::warn!("compressing {name}: {e}"))
            .ok()?;
        let stamp = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let etag =
            HeaderValue::from_str(&format!("\"{len:x}-{stamp:x}-{}\"", coding.name())).ok()?;
        let entry = Arc::new(Entry {
            len,
            modified,
            body: body.into(),
            etag,
        });
        self.lock().insert(key, Arc::clone(&entry));
        Some(entry)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave a half-written entry behind (entries are
        // inserted whole), so a poisoned map is still good.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A package file whose compressed form is kept: `.wasm` or `.js` at the package's top level
/// (plain names: no folders, no `..`).
fn cacheable(name: &str) -> bool {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    plain && (name.ends_with(".wasm") || name.ends_with(".js"))
}

fn respond(
    entry: &Entry,
    name: &str,
    coding: Coding,
    headers: &HeaderMap,
    method: &Method,
) -> Response<Body> {
    let content_type = if name.ends_with(".wasm") {
        "application/wasm"
    } else {
        "text/javascript"
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == "*" || t.trim().as_bytes() == entry.etag.as_bytes())
        });
    let builder = Response::builder()
        .header(header::ETAG, entry.etag.clone())
        .header(header::VARY, "accept-encoding");
    let result = if fresh {
        builder.status(StatusCode::NOT_MODIFIED).body(Body::empty())
    } else {
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(entry.body.clone())
        };
        builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_ENCODING, coding.name())
            .header(header::CONTENT_LENGTH, entry.body.len())
            .body(body)
    };
    result.unwrap_or_else(|_| {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_brotli_then_gzip_and_honours_q_zero() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(pick(Some(&h("gzip, deflate, br, zstd"))), Some(Coding::Br));
        assert_eq!(pick(Some(&h("gzip"))), Some(Coding::Gzip));
        assert_eq!(pick(Some(&h("br;q=0, gzip;q=0.5"))), Some(Coding::Gzip));
        assert_eq!(pick(Some(&h("identity"))), None);
        assert_eq!(pick(Some(&h("gzip;q=0"))), None);
        assert_eq!(pick(None), None);
    }

    #[test]
    fn only_plain_package_files_are_cached() {
        assert!(cacheable("swarmdrop_bg.wasm"));
        assert!(cacheable("swarmdrop.js"));
        assert!(!cacheable("../secret.js"));
        assert!(!cacheable("snippets/x/piece_writer.js"));
        assert!(!cacheable(".hidden.js"));
        assert!(!cacheable("swarmdrop.d.ts"));
    }
}
