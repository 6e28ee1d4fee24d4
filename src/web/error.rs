use wasm_bindgen::{JsCast, JsValue};

/// What went wrong in the browser layer, with a readable message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebError {
    /// A browser API threw.
    #[error("{context}: {message}")]
    Browser {
        /// What we were doing.
        context: &'static str,
        /// What the browser said.
        message: String,
    },
    /// The object was closed before or while the operation ran.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// The signaling server refused us or sent something we cannot use.
    #[error("signaling: {0}")]
    Signal(String),
    /// Reading or writing stored data failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A message larger than the remote peer accepts.
    #[error("message of {len} bytes exceeds the peer's limit of {max} bytes")]
    TooLarge {
        /// The message size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl WebError {
    /// Wraps an exception thrown by a browser API.
    pub(crate) fn browser(context: &'static str, err: JsValue) -> Self {
        WebError::Browser {
            context,
            message: describe(&err),
        }
    }
}

/// The readable text of a thrown JS value.
pub(crate) fn describe(err: &JsValue) -> String {
    if let Some(e) = err.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    err.as_string().unwrap_or_else(|| format!("{err:?}"))
}
