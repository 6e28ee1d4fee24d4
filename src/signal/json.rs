//! Reading and writing the protocol's JSON: with `serde_json` natively, and with the browser's
//! own `JSON` in wasm (through `serde-wasm-bindgen`, which the JavaScript API uses anyway), so
//! that the bundle carries no JSON parser of its own (`serde_json` and what it brought cost
//! some 30 KB of the gzipped wasm).

use super::{Flat, ProtocolError};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;

    /// Opaque JSON text, kept as it came (a `signal` frame's `data`).
    pub type RawJson = Box<serde_json::value::RawValue>;

    /// Checks that `text` is JSON and keeps it as it is.
    pub fn raw_json(text: String) -> Result<RawJson, ProtocolError> {
        serde_json::value::RawValue::from_string(text)
            .map_err(|e| ProtocolError::Malformed(e.to_string()))
    }

    pub(in crate::signal) fn flat(text: &str) -> Result<Flat, ProtocolError> {
        parse(text)
    }

    pub(in crate::signal) fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ProtocolError> {
        serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))
    }

    pub(in crate::signal) fn to_string<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("protocol types always serialize")
    }

    /// JSON text this crate wrote itself.
    pub(in crate::signal) fn trusted(text: String) -> RawJson {
        raw_json(text).expect("protocol types serialize to JSON")
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use wasm_bindgen::{JsCast, JsValue};

    /// Opaque JSON text, kept as it came (a `signal` frame's `data`).
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct RawJson(String);

    impl RawJson {
        /// The JSON text.
        pub fn get(&self) -> &str {
            &self.0
        }
    }

    fn malformed(e: JsValue) -> ProtocolError {
        let why = e
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .unwrap_or_else(|| "not JSON".into());
        ProtocolError::Malformed(why)
    }

    fn js(text: &str) -> Result<JsValue, ProtocolError> {
        js_sys::JSON::parse(text).map_err(malformed)
    }

    /// Checks that `text` is JSON and keeps it as it is.
    pub fn raw_json(text: String) -> Result<RawJson, ProtocolError> {
        js(&text)?;
        Ok(RawJson(text))
    }

    pub(in crate::signal) fn flat(text: &str) -> Result<Flat, ProtocolError> {
        let value = js(text)?;
        if !value.is_object() || js_sys::Array::is_array(&value) {
            return Err(ProtocolError::Malformed("not a JSON object".into()));
        }
        let mut f: Flat = serde_wasm_bindgen::from_value(value.clone())
            .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        // `data` stays JSON text: the parsed value, written out again.
        let data = js_sys::Reflect::get(&value, &JsValue::from_str("data")).map_err(malformed)?;
        if !data.is_undefined() && !data.is_null() {
            let text = js_sys::JSON::stringify(&data).map_err(malformed)?;
            f.data = Some(RawJson(text.into()));
        }
        Ok(f)
    }

    pub(in crate::signal) fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ProtocolError> {
        serde_wasm_bindgen::from_value(js(text)?)
            .map_err(|e| ProtocolError::Malformed(e.to_string()))
    }

    pub(in crate::signal) fn to_string<T: Serialize>(value: &T) -> String {
        serde_wasm_bindgen::to_value(value)
            .ok()
            .and_then(|v| js_sys::JSON::stringify(&v).ok())
            .map(String::from)
            .expect("protocol types always serialize")
    }

    /// JSON text this crate wrote itself.
    pub(in crate::signal) fn trusted(text: String) -> RawJson {
        RawJson(text)
    }
}

pub(super) use imp::{flat, parse, to_string, trusted};
pub use imp::{raw_json, RawJson};
