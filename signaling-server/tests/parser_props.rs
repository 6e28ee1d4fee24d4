//! Property tests of the message parser: any input gives a message or an error, never a panic,
//! and every valid message survives a round trip unchanged.

use proptest::prelude::*;
use swarmdrop::signal::{ClientMessage, PeerSignal, ServerMessage};

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

/// JSON-ish text built from protocol fragments, to reach deep into the parser.
fn jsonish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("\"type\"".to_string()),
        Just("\"join\"".to_string()),
        Just("\"signal\"".to_string()),
        Just("\"leave\"".to_string()),
        Just("\"room\"".to_string()),
        Just("\"to\"".to_string()),
        Just("\"data\"".to_string()),
        Just("\"v\"".to_string()),
        Just("1".to_string()),
        Just("-1".to_string()),
        Just("1e999".to_string()),
        Just("null".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just(":".to_string()),
        Just(",".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        "\"[a-z]{0,5}\"",
    ];
    prop::collection::vec(atom, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = ClientMessage::parse(&s);
        let _ = ServerMessage::parse(&s);
        let _ = PeerSignal::parse(&s);
    }

    #[test]
    fn protocol_fragments_never_panic(s in jsonish()) {
        if let Ok(m) = ClientMessage::parse(&s) {
            // Whatever parses re-serializes to something that parses the same way.
            let again = ClientMessage::parse(&m.to_json()).unwrap();
            prop_assert_eq!(again.to_json(), m.to_json());
        }
        let _ = ServerMessage::parse(&s);
    }

    #[test]
    fn valid_messages_round_trip(room in name(), to in name(), v in any::<u32>(), n in any::<i64>(), text in ".{0,40}") {
        let data = serde_json::json!({"n": n, "text": text}).to_string();
        for json in [
            format!(r#"{{"type":"join","room":"{room}","v":{v}}}"#),
            format!(r#"{{"type":"signal","to":"{to}","data":{data}}}"#),
            r#"{"type":"leave"}"#.to_string(),
        ] {
            let m = ClientMessage::parse(&json).unwrap();
            prop_assert_eq!(m.to_json(), json);
        }
    }
}
