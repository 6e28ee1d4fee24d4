//! What swarmdrop peers put in the opaque `data` of a `signal` frame: the WebRTC handshake.

use serde::{Deserialize, Serialize};

/// One step of the WebRTC handshake between two peers, relayed by the server unread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PeerSignal {
    /// An SDP offer.
    Offer {
        /// The session description.
        sdp: String,
    },
    /// An SDP answer.
    Answer {
        /// The session description.
        sdp: String,
    },
    /// A trickled ICE candidate, in the shape of `RTCIceCandidateInit`.
    Candidate {
        /// The `candidate:` line.
        candidate: String,
        /// The media stream id.
        #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// The m-line index.
        #[serde(
            rename = "sdpMLineIndex",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        sdp_m_line_index: Option<u16>,
    },
    /// The sender would like a connection and asks the receiver, who offers by the glare rule,
    /// to offer (used when the sender is below its connection budget).
    Invite,
    /// The sender will not connect (at its connection budget, or already connected to us).
    Bye {
        /// Why, for people.
        reason: String,
    },
}

impl PeerSignal {
    /// Parses the `data` of a relayed `signal` frame.
    pub fn parse(json: &str) -> Result<Self, super::ProtocolError> {
        super::json::parse(json)
    }

    /// The JSON text to put in `data`.
    pub fn to_json(&self) -> String {
        super::json::to_string(self)
    }

    /// This signal as the `data` of a `signal` frame.
    pub fn to_raw(&self) -> super::RawJson {
        super::json::trusted(self.to_json())
    }
}
