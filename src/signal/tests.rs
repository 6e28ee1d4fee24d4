//! The protocol's fixtures and errors; natively, and in the browser (`wasm-pack test`) where
//! JSON goes through the browser's own (see `json.rs`).

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

#[test]
fn client_fixtures_round_trip() {
    let fixtures = [
        r#"{"type":"join","room":"my-room_1","v":1}"#,
        r#"{"type":"signal","to":"abc","data":{"kind":"offer","sdp":"v=0"}}"#,
        r#"{"type":"leave"}"#,
    ];
    for f in fixtures {
        let m = ClientMessage::parse(f).unwrap();
        assert_eq!(m.to_json(), f, "{f}");
    }
}

#[test]
fn server_fixtures_round_trip() {
    let fixtures = [
        r#"{"type":"welcome","id":"p1","peers":["p0"],"iceServers":[{"urls":["stun:127.0.0.1:3478"]},{"urls":["turn:127.0.0.1:3478"],"username":"1700000000:p1","credential":"x"}]}"#,
        r#"{"type":"peer-joined","id":"p2"}"#,
        r#"{"type":"peer-left","id":"p2"}"#,
        r#"{"type":"signal","from":"p0","data":[1,{"a":"b"}]}"#,
        r#"{"type":"error","code":"room-full","message":"room is full"}"#,
    ];
    for f in fixtures {
        let m = ServerMessage::parse(f).unwrap();
        #[cfg(not(target_arch = "wasm32"))]
        assert_eq!(m.to_json(), f, "{f}");
        match m {
            ServerMessage::Welcome {
                id,
                peers,
                ice_servers,
            } => {
                assert_eq!((id, peers), (peer("p1"), vec![peer("p0")]));
                assert_eq!(ice_servers.len(), 2);
                assert_eq!(ice_servers[1].urls, ["turn:127.0.0.1:3478"]);
                assert_eq!(ice_servers[1].username.as_deref(), Some("1700000000:p1"));
                assert_eq!(ice_servers[1].credential.as_deref(), Some("x"));
                assert_eq!(ice_servers[0].username, None);
            }
            ServerMessage::PeerJoined { id } | ServerMessage::PeerLeft { id } => {
                assert_eq!(id, peer("p2"))
            }
            ServerMessage::Signal { from, data } => {
                assert_eq!(from, peer("p0"));
                assert_eq!(data.get(), r#"[1,{"a":"b"}]"#);
            }
            ServerMessage::Error { code, message } => {
                assert_eq!(
                    (code, message.as_str()),
                    (ErrorCode::RoomFull, "room is full")
                );
            }
        }
    }
}

#[test]
fn signal_data_reads_as_the_peer_signal_it_carries() {
    let text = r#"{"type":"signal","from":"p0","data":{"kind":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#;
    let ServerMessage::Signal { data, .. } = ServerMessage::parse(text).unwrap() else {
        panic!("not a signal");
    };
    assert_eq!(
        PeerSignal::parse(data.get()).unwrap(),
        PeerSignal::Candidate {
            candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        }
    );
    let signal = PeerSignal::Offer {
        sdp: "v=0\r\n\"quoted\" é".into(),
    };
    let out = ClientMessage::Signal {
        to: peer("p1"),
        data: signal.to_raw(),
    };
    let ClientMessage::Signal { data, .. } = ClientMessage::parse(&out.to_json()).unwrap() else {
        panic!("not a signal");
    };
    assert_eq!(PeerSignal::parse(data.get()).unwrap(), signal);
    assert!(raw_json("{".into()).is_err());
    assert!(raw_json("[1, 2]".into()).is_ok());
}

/// (Natively only: in the browser `data` is parsed and written out again, compact.)
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn data_is_relayed_verbatim() {
    let text = r#"{"type":"signal","to":"abc","data":{ "z" : 1,"a":[ 2 ] }}"#;
    let ClientMessage::Signal { to, data } = ClientMessage::parse(text).unwrap() else {
        panic!("not a signal");
    };
    assert_eq!(to, peer("abc"));
    assert_eq!(data.get(), r#"{ "z" : 1,"a":[ 2 ] }"#);
    let out = ServerMessage::Signal {
        from: peer("me"),
        data,
    };
    assert_eq!(
        out.to_json(),
        r#"{"type":"signal","from":"me","data":{ "z" : 1,"a":[ 2 ] }}"#
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    use ProtocolError::*;
    type Check = fn(&ProtocolError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, Malformed(_))),
        ("{", |e| matches!(e, Malformed(_))),
        ("[]", |e| matches!(e, Malformed(_))),
        ("{}", |e| matches!(e, MissingField { field: "type", .. })),
        (
            r#"{"type":"dance"}"#,
            |e| matches!(e, UnknownType(t) if t == "dance"),
        ),
        (r#"{"type":5}"#, |e| matches!(e, Malformed(_))),
        (r#"{"type":"join","v":1}"#, |e| {
            matches!(e, MissingField { field: "room", .. })
        }),
        (r#"{"type":"join","room":"a b","v":1}"#, |e| {
            matches!(
                e,
                InvalidName {
                    what: "room name",
                    ..
                }
            )
        }),
        (r#"{"type":"join","room":"","v":1}"#, |e| {
            matches!(e, InvalidName { .. })
        }),
        (r#"{"type":"join","room":"r"}"#, |e| {
            matches!(e, MissingField { field: "v", .. })
        }),
        (r#"{"type":"join","room":"r","v":-1}"#, |e| {
            matches!(e, Malformed(_))
        }),
        (r#"{"type":"signal","to":"x"}"#, |e| {
            matches!(e, MissingField { field: "data", .. })
        }),
        (r#"{"type":"signal","to":"../x","data":1}"#, |e| {
            matches!(
                e,
                InvalidName {
                    what: "peer id",
                    ..
                }
            )
        }),
        (r#"{"type":"signal","to":"x","data":null}"#, |e| {
            matches!(e, MissingField { field: "data", .. })
        }),
        (r#"{"type":"signal","to":"x","data":{"#, |e| {
            matches!(e, Malformed(_))
        }),
        ("null", |e| matches!(e, Malformed(_))),
        ("\"join\"", |e| matches!(e, Malformed(_))),
        (r#"{"type":"welcome","id":"p1","peers":"p0"}"#, |e| {
            matches!(e, Malformed(_))
        }),
        // (In the browser, `JSON.parse` keeps the last of two equal keys.)
        #[cfg(not(target_arch = "wasm32"))]
        (r#"{"type":"join","type":"join","room":"r","v":1}"#, |e| {
            matches!(e, Malformed(_))
        }),
    ];
    for (text, ok) in cases {
        let e = ClientMessage::parse(text).unwrap_err();
        assert!(ok(&e), "{text:?} gave {e:?}");
        assert!(!e.to_string().is_empty());
    }
    let long = "a".repeat(65);
    assert!(RoomName::new(long).is_err());
    assert!(RoomName::new("a".repeat(64)).is_ok());
}

#[test]
fn error_codes_for_parse_errors() {
    let bad_room = ClientMessage::parse(r#"{"type":"join","room":"a/b","v":1}"#).unwrap_err();
    assert_eq!(ErrorCode::from(&bad_room), ErrorCode::BadRoom);
    let unknown = ClientMessage::parse(r#"{"type":"x"}"#).unwrap_err();
    assert_eq!(ErrorCode::from(&unknown), ErrorCode::UnknownType);
    let junk = ClientMessage::parse("nope").unwrap_err();
    assert_eq!(ErrorCode::from(&junk), ErrorCode::BadMessage);
    #[cfg(not(target_arch = "wasm32"))]
    assert_eq!(
        serde_json::to_string(&ErrorCode::PayloadTooLarge).unwrap(),
        r#""payload-too-large""#
    );
}

#[test]
fn peer_signal_fixtures() {
    let fixtures = [
        r#"{"kind":"offer","sdp":"v=0\r\n"}"#,
        r#"{"kind":"answer","sdp":"v=0\r\n"}"#,
        r#"{"kind":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}"#,
        r#"{"kind":"candidate","candidate":""}"#,
        r#"{"kind":"bye","reason":"busy"}"#,
        r#"{"kind":"invite"}"#,
    ];
    for f in fixtures {
        assert_eq!(PeerSignal::parse(f).unwrap().to_json(), f);
    }
    assert!(PeerSignal::parse(r#"{"kind":"nope"}"#).is_err());
    assert!(PeerSignal::parse(r#"{"sdp":"x"}"#).is_err());
}
