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

/// Any message round-trips through its JSON; any text, and any valid frame cut or with a byte
/// changed, parses or is a clear error — never a panic (the server parses what any client
/// sends, and the page what the server sends).
#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,64}"
    }

    /// Any JSON value but `null`, a few levels deep (a `signal` frame's opaque `data`: a frame
    /// whose `data` is `null` has none, and is refused as such).
    fn json() -> impl Strategy<Value = serde_json::Value> {
        any_json().prop_filter("data is not null", |v| !v.is_null())
    }

    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn client() -> impl Strategy<Value = ClientMessage> {
        prop_oneof![
            (name(), any::<u32>()).prop_map(|(r, v)| ClientMessage::Join {
                room: RoomName::new(r).unwrap(),
                v
            }),
            (name(), json()).prop_map(|(to, d)| ClientMessage::Signal {
                to: peer(&to),
                data: json::raw_json(d.to_string()).unwrap(),
            }),
            Just(ClientMessage::Leave),
        ]
    }

    fn code() -> impl Strategy<Value = ErrorCode> {
        use ErrorCode::*;
        proptest::sample::select(vec![
            BadMessage,
            BinaryFrame,
            FrameTooLarge,
            UnknownType,
            UnsupportedVersion,
            BadRoom,
            NotJoined,
            AlreadyJoined,
            UnknownPeer,
            RoomFull,
            TooManyRooms,
            RateLimited,
            JoinTimeout,
            PayloadTooLarge,
            Timeout,
            ServerFull,
            TooManyConnections,
            Unavailable,
        ])
    }

    fn server() -> impl Strategy<Value = ServerMessage> {
        let ice = (
            proptest::collection::vec(any::<String>(), 0..3),
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<String>()),
        )
            .prop_map(|(urls, username, credential)| IceServer {
                urls,
                username,
                credential,
            });
        prop_oneof![
            (
                name(),
                proptest::collection::vec(name(), 0..4),
                proptest::collection::vec(ice, 0..3)
            )
                .prop_map(|(id, peers, ice_servers)| ServerMessage::Welcome {
                    id: peer(&id),
                    peers: peers.iter().map(|p| peer(p)).collect(),
                    ice_servers,
                }),
            name().prop_map(|id| ServerMessage::PeerJoined { id: peer(&id) }),
            name().prop_map(|id| ServerMessage::PeerLeft { id: peer(&id) }),
            (name(), json()).prop_map(|(from, d)| ServerMessage::Signal {
                from: peer(&from),
                data: json::raw_json(d.to_string()).unwrap(),
            }),
            (code(), any::<String>())
                .prop_map(|(code, message)| ServerMessage::Error { code, message }),
        ]
    }

    /// What peers put in `data` (the page parses what any peer sends).
    fn peer_signal() -> impl Strategy<Value = PeerSignal> {
        prop_oneof![
            any::<String>().prop_map(|sdp| PeerSignal::Offer { sdp }),
            any::<String>().prop_map(|sdp| PeerSignal::Answer { sdp }),
            (
                any::<String>(),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<u16>())
            )
                .prop_map(|(candidate, sdp_mid, sdp_m_line_index)| {
                    PeerSignal::Candidate {
                        candidate,
                        sdp_mid,
                        sdp_m_line_index,
                    }
                }),
            Just(PeerSignal::Invite),
            any::<String>().prop_map(|reason| PeerSignal::Bye { reason }),
        ]
    }

    /// Parsing `text` as either side's frame, or as a peer's signal: a message, or an error
    /// that says something.
    fn parses_or_says_why(text: &str) -> Result<(), TestCaseError> {
        if let Err(e) = PeerSignal::parse(text) {
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = ClientMessage::parse(text) {
            prop_assert!(!e.to_string().is_empty());
            let _ = ErrorCode::from(&e);
        }
        if let Err(e) = ServerMessage::parse(text) {
            prop_assert!(!e.to_string().is_empty());
        }
        Ok(())
    }

    /// `text` cut at `at`, or with its byte at `at` replaced by `byte` (as text: lossy).
    fn damaged(text: &str, at: usize, byte: u8, cut: bool) -> String {
        let mut b = text.as_bytes().to_vec();
        let at = at % b.len().max(1);
        if cut {
            b.truncate(at);
        } else if let Some(x) = b.get_mut(at) {
            *x = byte;
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn any_client_message_round_trips(m in client()) {
            let text = m.to_json();
            let back = ClientMessage::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(back.to_json(), text);
        }

        #[test]
        fn any_server_message_round_trips(m in server()) {
            let text = m.to_json();
            let back = ServerMessage::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(back.to_json(), text);
        }

        #[test]
        fn any_peer_signal_round_trips(m in peer_signal()) {
            let text = m.to_json();
            prop_assert_eq!(PeerSignal::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?, m);
        }

        #[test]
        fn any_text_parses_or_is_a_clear_error(text in any::<String>()) {
            parses_or_says_why(&text)?;
        }

        #[test]
        fn any_damaged_frame_parses_or_is_a_clear_error(
            c in client(),
            s in server(),
            p in peer_signal(),
            at in any::<usize>(),
            byte in any::<u8>(),
            cut in any::<bool>(),
        ) {
            parses_or_says_why(&damaged(&c.to_json(), at, byte, cut))?;
            parses_or_says_why(&damaged(&s.to_json(), at, byte, cut))?;
            parses_or_says_why(&damaged(&p.to_json(), at, byte, cut))?;
        }
    }
}
