//! Safety numbers and connection routes: pure functions over what the browser reports.

use sha2::{Digest, Sha256};

/// The DTLS certificate fingerprints (`a=fingerprint:` lines) of an SDP, normalised.
pub fn fingerprints(sdp: &str) -> Vec<String> {
    let mut v: Vec<String> = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=fingerprint:"))
        .map(|f| f.trim().to_ascii_uppercase())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A short number both ends of a connection compute alike from the two DTLS fingerprints
/// (order-independent), so two people can compare it to know no one sits between them.
/// Twelve digits in three groups; `None` if either SDP lacks a fingerprint.
pub fn safety_number(local_sdp: &str, remote_sdp: &str) -> Option<String> {
    let local = fingerprints(local_sdp);
    let remote = fingerprints(remote_sdp);
    if local.is_empty() || remote.is_empty() {
        return None;
    }
    let (a, b) = (local.join(","), remote.join(","));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h = Sha256::new();
    h.update(b"swarmdrop safety number v1\n");
    h.update(lo.as_bytes());
    h.update(b"\n");
    h.update(hi.as_bytes());
    let d = h.finalize();
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) % 1_000_000_000_000;
    let s = format!("{n:012}");
    Some(format!("{} {} {}", &s[..4], &s[4..8], &s[8..]))
}

/// How a connection travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Host or server-reflexive candidates: straight between the browsers.
    Direct,
    /// Through a TURN relay.
    Relayed,
    /// Not known yet.
    Unknown,
}

impl Route {
    /// The route in the JavaScript API's words.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Relayed => "relayed",
            Route::Unknown => "unknown",
        }
    }
}

/// The few fields of one `RTCStats` entry that route and RTT come from.
#[derive(Debug, Clone, Default)]
pub struct StatsEntry {
    /// `id`.
    pub id: String,
    /// `type`: "transport", "candidate-pair", "local-candidate", ...
    pub kind: String,
    /// transport: `selectedCandidatePairId`.
    pub selected_pair: Option<String>,
    /// candidate-pair: `localCandidateId`.
    pub local_candidate: Option<String>,
    /// candidate-pair: `remoteCandidateId`.
    pub remote_candidate: Option<String>,
    /// candidate-pair: `nominated`; Firefox also sets `selected`.
    pub nominated: bool,
    /// candidate-pair: `selected` (Firefox).
    pub selected: bool,
    /// candidate-pair: `state`.
    pub state: Option<String>,
    /// candidate-pair: `currentRoundTripTime`, seconds.
    pub rtt: Option<f64>,
    /// local/remote-candidate: `candidateType` ("host", "srflx", "prflx", "relay").
    pub candidate_type: Option<String>,
}

/// The route and round-trip time of the selected candidate pair.
pub fn route(stats: &[StatsEntry]) -> (Route, Option<f64>) {
    let by_id = |id: &str| stats.iter().find(|e| e.id == id);
    let pair = stats
        .iter()
        .filter(|e| e.kind == "transport")
        .find_map(|t| t.selected_pair.as_deref().and_then(by_id))
        .or_else(|| {
            stats
                .iter()
                .find(|e| e.kind == "candidate-pair" && e.selected)
        })
        .or_else(|| {
            stats.iter().find(|e| {
                e.kind == "candidate-pair" && e.nominated && e.state.as_deref() == Some("succeeded")
            })
        });
    let Some(pair) = pair else {
        return (Route::Unknown, None);
    };
    let relayed = [&pair.local_candidate, &pair.remote_candidate]
        .iter()
        .filter_map(|c| c.as_deref().and_then(by_id))
        .any(|c| c.candidate_type.as_deref() == Some("relay"));
    let rtt_ms = pair.rtt.map(|s| s * 1000.0);
    (
        if relayed {
            Route::Relayed
        } else {
            Route::Direct
        },
        rtt_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "v=0\r\na=fingerprint:sha-256 AA:BB:CC\r\nm=application 9\r\n";
    const B: &str = "v=0\r\na=fingerprint:sha-256 11:22:33\r\n";

    #[test]
    fn safety_number_is_equal_on_both_ends_and_depends_on_both() {
        let ab = safety_number(A, B).unwrap();
        assert_eq!(ab, safety_number(B, A).unwrap());
        assert_eq!(ab.len(), 14);
        assert!(ab.chars().all(|c| c.is_ascii_digit() || c == ' '));
        let other = "a=fingerprint:sha-256 11:22:34\r\n";
        assert_ne!(ab, safety_number(A, other).unwrap());
        assert_eq!(safety_number(A, "v=0\r\n"), None);
        // Case and repeated lines do not matter.
        let lower = "a=fingerprint:sha-256 aa:bb:cc\na=fingerprint:sha-256 aa:bb:cc\n";
        assert_eq!(safety_number(lower, B).unwrap(), ab);
    }

    fn entry(id: &str, kind: &str) -> StatsEntry {
        StatsEntry {
            id: id.into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    #[test]
    fn route_from_the_selected_pair() {
        let mut transport = entry("T", "transport");
        transport.selected_pair = Some("P1".into());
        let mut p1 = entry("P1", "candidate-pair");
        p1.local_candidate = Some("L1".into());
        p1.remote_candidate = Some("R1".into());
        p1.rtt = Some(0.012);
        let mut l1 = entry("L1", "local-candidate");
        l1.candidate_type = Some("host".into());
        let mut r1 = entry("R1", "remote-candidate");
        r1.candidate_type = Some("srflx".into());
        let stats = vec![transport.clone(), p1.clone(), l1.clone(), r1.clone()];
        let (route, rtt) = route(&stats);
        assert_eq!(route, Route::Direct);
        assert!((rtt.unwrap() - 12.0).abs() < 1e-9);

        let mut relay = l1.clone();
        relay.candidate_type = Some("relay".into());
        assert_eq!(
            super::route(&[transport, p1.clone(), relay, r1.clone()]).0,
            Route::Relayed
        );

        // Firefox: no transport entry, a `selected` pair.
        let mut ff = p1.clone();
        ff.selected = true;
        assert_eq!(super::route(&[ff, l1.clone(), r1.clone()]).0, Route::Direct);
        // Nothing selected yet.
        assert_eq!(super::route(&[p1, l1, r1]).0, Route::Unknown);
    }
}
