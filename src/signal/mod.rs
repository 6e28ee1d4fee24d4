//! Signaling wire types (protocol version 1), shared by the server and the wasm core.
//!
//! Every frame is one JSON text message with a `type` tag. The bytes on the wire are the
//! contract: the tests compare against literal JSON fixtures. `data` in a `signal` frame is
//! opaque to the server and relayed verbatim, so it is kept as raw JSON text ([`RawJson`]).
//!
//! Natively (the server, the tests) JSON is read and written with `serde_json`. In the browser
//! the JavaScript engine's own `JSON` does it (see `json.rs`), so that the wasm bundle carries
//! no JSON parser of its own; the browser tests check the same fixtures there.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

mod json;
mod peer;
pub use json::{raw_json, RawJson};
pub use peer::PeerSignal;

/// The protocol version a client sends in `join` and the server speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest room name and peer id, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Why a frame could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Not valid JSON, or a field of the wrong shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Valid JSON with a `type` this protocol does not know.
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    /// A required field is absent.
    #[error("`{ty}` message lacks the `{field}` field")]
    MissingField {
        /// The message type.
        ty: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A room name or peer id outside 1–64 characters of `[A-Za-z0-9_-]`.
    #[error("invalid {what} `{value}`: use 1-64 characters of A-Z a-z 0-9 _ -")]
    InvalidName {
        /// "room name" or "peer id".
        what: &'static str,
        /// The offending text, cut to 80 characters.
        value: String,
    },
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn invalid(what: &'static str, s: &str) -> ProtocolError {
    ProtocolError::InvalidName {
        what,
        value: s.chars().take(80).collect(),
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks the text and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, ProtocolError> {
                let s = s.into();
                if valid_name(&s) {
                    Ok(Self(s))
                } else {
                    Err(invalid($what, &s))
                }
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = Cow::<'de, str>::deserialize(d)?;
                Self::new(s.into_owned()).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A room: 1–64 characters of `[A-Za-z0-9_-]`. A room exists while someone is in it.
    RoomName,
    "room name"
);
name_type!(
    /// A peer's id, assigned by the server (random, ≥128 bits, URL-safe).
    PeerId,
    "peer id"
);

/// A STUN or TURN server handed to clients in `welcome`, in the shape of `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username (REST credentials: `expiry:peer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Why the server refused something, carried in an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The frame was not valid JSON of a known shape.
    BadMessage,
    /// A binary WebSocket frame; the protocol is text only.
    BinaryFrame,
    /// A frame larger than the server's limit.
    FrameTooLarge,
    /// A message type the server does not know.
    UnknownType,
    /// The client's protocol version is not supported.
    UnsupportedVersion,
    /// A bad room name.
    BadRoom,
    /// `signal` or `leave` before `join`.
    NotJoined,
    /// A second `join` on the same connection.
    AlreadyJoined,
    /// `signal` to a peer that is not in the sender's room.
    UnknownPeer,
    /// The room holds the maximum number of peers.
    RoomFull,
    /// The server holds the maximum number of rooms.
    TooManyRooms,
    /// The client sends faster than its rate limit.
    RateLimited,
    /// No `join` within the deadline after connecting.
    JoinTimeout,
    /// `data` is larger than the server relays.
    PayloadTooLarge,
    /// The connection is closed for being idle (no pong) or too slow to read.
    Timeout,
    /// The server holds the maximum number of connections.
    ServerFull,
    /// The client's address holds the maximum number of connections.
    TooManyConnections,
    /// The peer is connected to another server instance, which cannot be reached just now
    /// (several instances sharing rooms through Redis, and Redis is down).
    Unavailable,
}

/// A frame from a client to the server.
#[derive(Debug, Clone)]
pub enum ClientMessage {
    /// Enter a room; the first and only `join` of a connection.
    Join {
        /// The room.
        room: RoomName,
        /// Protocol version, [`PROTOCOL_VERSION`].
        v: u32,
    },
    /// Relay `data` to peer `to` in the same room.
    Signal {
        /// The receiving peer.
        to: PeerId,
        /// Opaque JSON, relayed verbatim (not `null`: a frame whose `data` is `null` has none,
        /// and the server refuses it).
        data: RawJson,
    },
    /// Leave the room; the server closes the connection.
    Leave,
}

/// A frame from the server to a client.
#[derive(Debug, Clone)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize))]
#[cfg_attr(
    not(target_arch = "wasm32"),
    serde(tag = "type", rename_all = "kebab-case")
)]
pub enum ServerMessage {
    /// The answer to `join`: the client's id, who is already in the room, and ICE servers.
    Welcome {
        /// The id the server gave this client.
        id: PeerId,
        /// The other peers in the room, oldest first.
        peers: Vec<PeerId>,
        /// STUN/TURN servers to use.
        #[cfg_attr(not(target_arch = "wasm32"), serde(rename = "iceServers"))]
        ice_servers: Vec<IceServer>,
    },
    /// Someone entered the room.
    PeerJoined {
        /// Their id.
        id: PeerId,
    },
    /// Someone left the room or disconnected.
    PeerLeft {
        /// Their id.
        id: PeerId,
    },
    /// Relayed `data` from peer `from` (stamped by the server).
    Signal {
        /// The sending peer, as the server knows it.
        from: PeerId,
        /// Opaque JSON, as the sender sent it.
        data: RawJson,
    },
    /// The server refused a frame or is closing the connection.
    Error {
        /// What went wrong, for programs.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
    },
}

/// Every field any message may carry; parsing goes through this so that `data` can stay raw
/// (serde's internally tagged enums cannot hold a `RawValue`) and names are checked with a
/// precise error.
#[derive(Deserialize, Default)]
struct Flat {
    #[serde(rename = "type")]
    ty: Option<String>,
    room: Option<String>,
    v: Option<u32>,
    to: Option<String>,
    from: Option<String>,
    id: Option<String>,
    peers: Option<Vec<PeerId>>,
    #[serde(rename = "iceServers")]
    ice_servers: Option<Vec<IceServer>>,
    code: Option<ErrorCode>,
    message: Option<String>,
    /// (In the browser, taken from the parsed object by `json::flat`.)
    #[cfg_attr(target_arch = "wasm32", serde(skip))]
    data: Option<RawJson>,
}

fn flat(text: &str) -> Result<(String, Flat), ProtocolError> {
    let mut f = json::flat(text)?;
    let ty = need(f.ty.take(), "message", "type")?;
    Ok((ty, f))
}

fn need<T>(v: Option<T>, ty: &'static str, field: &'static str) -> Result<T, ProtocolError> {
    v.ok_or(ProtocolError::MissingField { ty, field })
}

fn need_room(v: Option<String>, ty: &'static str) -> Result<RoomName, ProtocolError> {
    RoomName::new(need(v, ty, "room")?)
}

fn need_peer(
    v: Option<String>,
    ty: &'static str,
    field: &'static str,
) -> Result<PeerId, ProtocolError> {
    PeerId::new(need(v, ty, field)?)
}

/// Equal when their JSON is (raw `data` has no structural equality).
impl PartialEq for ClientMessage {
    fn eq(&self, other: &Self) -> bool {
        self.to_json() == other.to_json()
    }
}

impl ClientMessage {
    /// Parses one text frame from a client.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let (ty, f) = flat(text)?;
        match ty.as_str() {
            "join" => Ok(Self::Join {
                room: need_room(f.room, "join")?,
                v: need(f.v, "join", "v")?,
            }),
            "signal" => Ok(Self::Signal {
                to: need_peer(f.to, "signal", "to")?,
                data: need(f.data, "signal", "data")?,
            }),
            "leave" => Ok(Self::Leave),
            _ => Err(ProtocolError::UnknownType(ty.chars().take(40).collect())),
        }
    }

    /// The JSON text of this frame. (Written out here: room names and peer ids need no
    /// escaping, and `data` is JSON already.)
    pub fn to_json(&self) -> String {
        match self {
            Self::Join { room, v } => format!(r#"{{"type":"join","room":"{room}","v":{v}}}"#),
            Self::Signal { to, data } => {
                format!(r#"{{"type":"signal","to":"{to}","data":{}}}"#, data.get())
            }
            Self::Leave => r#"{"type":"leave"}"#.into(),
        }
    }
}

impl ServerMessage {
    /// Parses one text frame from the server.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let (ty, f) = flat(text)?;
        match ty.as_str() {
            "welcome" => Ok(Self::Welcome {
                id: need_peer(f.id, "welcome", "id")?,
                peers: need(f.peers, "welcome", "peers")?,
                ice_servers: f.ice_servers.unwrap_or_default(),
            }),
            "peer-joined" => Ok(Self::PeerJoined {
                id: need_peer(f.id, "peer-joined", "id")?,
            }),
            "peer-left" => Ok(Self::PeerLeft {
                id: need_peer(f.id, "peer-left", "id")?,
            }),
            "signal" => Ok(Self::Signal {
                from: need_peer(f.from, "signal", "from")?,
                data: need(f.data, "signal", "data")?,
            }),
            "error" => Ok(Self::Error {
                code: need(f.code, "error", "code")?,
                message: need(f.message, "error", "message")?,
            }),
            _ => Err(ProtocolError::UnknownType(ty.chars().take(40).collect())),
        }
    }

    /// The JSON text of this frame.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }

    /// An `error` frame.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }
}

/// Maps a parse error to the error code the server answers with.
impl From<&ProtocolError> for ErrorCode {
    fn from(e: &ProtocolError) -> Self {
        match e {
            ProtocolError::UnknownType(_) => ErrorCode::UnknownType,
            ProtocolError::InvalidName { what, .. } if *what == "room name" => ErrorCode::BadRoom,
            _ => ErrorCode::BadMessage,
        }
    }
}

// Natively, and in the browser (`wasm-pack test`), where JSON goes through the browser's own.
#[cfg(test)]
mod tests;
