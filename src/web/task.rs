//! What a long task started from JavaScript (hashing a file to share it, packing files into a
//! zip) takes besides its input: `onProgress(done, total)` and `signal`, an `AbortSignal`.

use crate::web::store::get;
use wasm_bindgen::prelude::*;

pub(crate) struct Task {
    on_progress: Option<js_sys::Function>,
    signal: Option<JsValue>,
}

impl Task {
    /// From an options object (`undefined`: neither).
    pub(crate) fn new(options: Option<&js_sys::Object>) -> Task {
        let opt = |k| options.and_then(|o| get(o, k));
        Task {
            on_progress: opt("onProgress").and_then(|f| f.dyn_into().ok()),
            signal: opt("signal"),
        }
    }

    /// `Err(the signal's reason)` once it is aborted (an `AbortError` unless the caller gave
    /// one), else `Ok`.
    pub(crate) fn go_on(&self) -> Result<(), JsValue> {
        let Some(s) = &self.signal else { return Ok(()) };
        if get(s, "aborted").is_some_and(|a| a.is_truthy()) {
            return Err(get(s, "reason").unwrap_or_else(|| JsError::new("aborted").into()));
        }
        Ok(())
    }

    /// Calls `onProgress(done, total)`; one that throws changes nothing here.
    pub(crate) fn progress(&self, done: f64, total: f64) {
        if let Some(f) = &self.on_progress {
            let _ = f.call2(&JsValue::NULL, &done.into(), &total.into());
        }
    }
}
