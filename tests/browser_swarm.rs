//! Swarms in one page through the real signaling server (started by `cargo xtask test`, which
//! passes its URL and a restart endpoint at build time).
#![cfg(target_arch = "wasm32")]

use futures::channel::mpsc;
use futures::StreamExt;
use swarmdrop::signal::PeerId;
use swarmdrop::swarm::{PeerState, SwarmEvent};
use swarmdrop::web::{live_objects, Event, Message, Swarm};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const SIGNAL: Option<&str> = option_env!("SWARMDROP_SIGNAL_URL");
const CONTROL: Option<&str> = option_env!("SWARMDROP_CONTROL_URL");
const TURN_SIGNAL: Option<&str> = option_env!("SWARMDROP_TURN_SIGNAL_URL");

fn signal_url() -> &'static str {
    SIGNAL.expect("run with `cargo xtask test` (it starts the signaling server)")
}

fn room(tag: &str) -> String {
    format!("{tag}-{}", (js_sys::Math::random() * 1e12) as u64)
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

async fn until(what: &str, secs: f64, mut ok: impl FnMut() -> bool) {
    let start = now_ms();
    while !ok() {
        assert!(
            now_ms() - start < secs * 1000.0,
            "timed out after {secs} s: {what}"
        );
        sleep(20).await;
    }
}

fn connected(s: &Swarm) -> Vec<PeerId> {
    s.peer_states()
        .into_iter()
        .filter(|(_, st)| *st == PeerState::Connected)
        .map(|(id, _)| id)
        .collect()
}

async fn join(room: &str) -> Swarm {
    Swarm::join_with_options(signal_url(), room, vec![], None)
        .await
        .expect("join")
}

fn id(s: &Swarm) -> PeerId {
    PeerId::new(s.id().expect("joined")).unwrap()
}

/// The next message on `events`, within `secs`.
async fn next_message(events: &mut mpsc::UnboundedReceiver<Event>, secs: u32) -> (PeerId, Message) {
    let deadline = gloo_timers::future::TimeoutFuture::new(secs * 1000);
    futures::pin_mut!(deadline);
    loop {
        let next = events.next();
        futures::pin_mut!(next);
        match futures::future::select(next, &mut deadline).await {
            futures::future::Either::Left((Some(Event::Message(from, m)), _)) => return (from, m),
            futures::future::Either::Left((Some(_), _)) => continue,
            futures::future::Either::Left((None, _)) => panic!("event stream ended"),
            futures::future::Either::Right(_) => panic!("no message within {secs} s"),
        }
    }
}

#[wasm_bindgen_test]
async fn three_swarms_form_a_full_mesh_and_talk() {
    let r = room("mesh");
    let a = join(&r).await;
    let b = join(&r).await;
    let c = join(&r).await;
    until("full mesh", 20.0, || {
        [&a, &b, &c].iter().all(|s| connected(s).len() == 2)
    })
    .await;
    let (ia, ib, ic) = (id(&a), id(&b), id(&c));

    let mut eb = b.events();
    let mut ea = a.events();
    a.send_text(&ib, "hello b").await.unwrap();
    assert_eq!(
        next_message(&mut eb, 5).await,
        (ia.clone(), Message::Text("hello b".into()))
    );
    let bytes: Vec<u8> = (0..=255).collect();
    b.send_bytes(&ia, &bytes).await.unwrap();
    assert_eq!(
        next_message(&mut ea, 5).await,
        (ib.clone(), Message::Binary(bytes))
    );

    // Both ends show the same safety number, different for different pairs.
    let ab = a.safety_number(&ib).expect("safety number a-b");
    assert_eq!(Some(ab.clone()), b.safety_number(&ia));
    assert_ne!(Some(ab), a.safety_number(&ic));

    // Direct route and an RTT from getStats within a few seconds.
    until("route", 6.0, || {
        matches!(
            a.route(&ib),
            Some((swarmdrop::swarm::Route::Direct, Some(_)))
        )
    })
    .await;

    // A leaver is seen as peer-left by the others within a few seconds.
    c.leave();
    let start = now_ms();
    until("peer-left for c", 5.0, || {
        [&a, &b]
            .iter()
            .all(|s| !s.peer_states().iter().any(|(p, _)| *p == ic))
    })
    .await;
    let mut saw_left = false;
    while let Ok(ev) = ea.try_recv() {
        if matches!(ev, Event::Swarm(SwarmEvent::PeerLeft(ref p, _)) if *p == ic) {
            saw_left = true;
        }
    }
    assert!(saw_left, "no peer-left event");
    web_sys::console::log_1(&format!("peer-left seen after {:.0} ms", now_ms() - start).into());
    a.leave();
    b.leave();
}

#[wasm_bindgen_test]
async fn bad_options_are_clear_errors() {
    let e = Swarm::join_with_options(signal_url(), "no spaces allowed", vec![], None)
        .await
        .err()
        .expect("bad room");
    assert!(e.to_string().contains("room name"), "{e}");
    let e = Swarm::join_with_options("ws://127.0.0.1:9/ws", "r", vec![], None)
        .await
        .err()
        .expect("unreachable server");
    assert!(e.to_string().contains("signaling"), "{e}");
}

/// `Swarm.join`'s options with `socket`.
fn options_with_socket(room: &str, socket: JsValue) -> JsValue {
    let opts = js_sys::Object::new();
    for (k, v) in [
        ("signal", JsValue::from_str(signal_url())),
        ("room", JsValue::from_str(room)),
        ("socket", socket),
    ] {
        js_sys::Reflect::set(&opts, &k.into(), &v).unwrap();
    }
    opts.into()
}

/// A WebSocket the page opened early (`socket`) is the one `Swarm.join` uses; one that could
/// not connect is replaced by a new one; anything else is a clear error.
#[wasm_bindgen_test]
async fn a_socket_the_page_opened_early_carries_the_join() {
    use web_sys::WebSocket;
    let r = room("early");
    // Still connecting when handed over.
    let ws = WebSocket::new(signal_url()).unwrap();
    let a = Swarm::join(options_with_socket(&r, ws.clone().into()))
        .await
        .map_err(JsValue::from)
        .expect("join on the page's socket");
    assert_eq!(ws.ready_state(), WebSocket::OPEN);
    let b = join(&r).await;
    until("connected", 20.0, || {
        connected(&a).len() == 1 && connected(&b).len() == 1
    })
    .await;
    // It was the swarm's: leaving closes it.
    a.leave();
    until("the page's socket closed", 5.0, || {
        ws.ready_state() >= WebSocket::CLOSING
    })
    .await;

    // One that could not connect: the join opens its own.
    let dead = WebSocket::new("ws://127.0.0.1:9/ws").unwrap();
    until("the dead socket failed", 5.0, || {
        dead.ready_state() == WebSocket::CLOSED
    })
    .await;
    let c = Swarm::join(options_with_socket(&r, dead.into()))
        .await
        .map_err(JsValue::from)
        .expect("join on a new socket");
    until("connected again", 20.0, || connected(&c).len() == 1).await;

    let e = Swarm::join(options_with_socket(&r, JsValue::from_str("ws://nope")))
        .await
        .err()
        .map(JsValue::from)
        .expect("not a socket");
    let message = js_sys::Error::from(e).message();
    assert!(String::from(&message).contains("socket"), "{message}");
    b.leave();
    c.leave();
}

#[wasm_bindgen_test]
async fn server_restart_reconnects_while_channels_keep_working() {
    server_restart_keeps_one_connection(0).await;
}

#[wasm_bindgen_test]
async fn a_hello_lost_after_a_server_restart_still_leaves_one_connection_each() {
    // After the restart each swarm meets the other again under its new id and connects once
    // more, which the hellos show to be a duplicate of the live connection; the first of
    // those hellos is lost here. The side that had the other's keeps the duplicate open until
    // its own has arrived, so both find it and close it.
    server_restart_keeps_one_connection(1).await;
}

/// Two swarms connected, the server restarted (with the first `lost_hellos` hellos after it
/// lost): still exactly one live connection each, under the same public id, and talking.
async fn server_restart_keeps_one_connection(lost_hellos: u32) {
    let Some(control) = CONTROL else {
        panic!("run with `cargo xtask test` (it provides the restart endpoint)");
    };
    let r = room("restart");
    let a = join(&r).await;
    let b = join(&r).await;
    until("connected", 20.0, || {
        connected(&a).len() == 1 && connected(&b).len() == 1
    })
    .await;
    let (ia, ib) = (id(&a), id(&b));
    let b_at_a = connected(&a)[0].clone();
    let mut eb = b.events();

    // Restart the server (the endpoint answers once it listens again).
    let window = web_sys::window().unwrap();
    let restart = JsFuture::from(window.fetch_with_str(&format!("{control}/restart")));
    until("signaling lost", 10.0, || {
        a.signal_state() == "reconnecting"
    })
    .await;
    // While signaling is down, the data channel still carries messages.
    a.send_text(&b_at_a, "during outage").await.unwrap();
    assert_eq!(
        next_message(&mut eb, 5).await.1,
        Message::Text("during outage".into())
    );
    swarmdrop::web::lose_hellos_for_testing(lost_hellos);
    let resp = restart.await.expect("restart endpoint");
    let resp: web_sys::Response = resp.dyn_into().unwrap();
    assert!(resp.ok());

    until("signaling back", 20.0, || {
        a.signal_state() == "open" && b.signal_state() == "open"
    })
    .await;
    assert_ne!(id(&a), ia, "new id after the server restart");
    assert_ne!(id(&b), ib);
    // Still exactly one live connection each, under the same public id.
    sleep(1500).await;
    until("one connection each", 10.0, || {
        connected(&a) == vec![b_at_a.clone()]
            && a.peer_states().len() == 1
            && b.peer_states().len() == 1
    })
    .await;
    swarmdrop::web::lose_hellos_for_testing(0);
    a.send_text(&b_at_a, "after restart").await.unwrap();
    assert_eq!(
        next_message(&mut eb, 5).await.1,
        Message::Text("after restart".into())
    );
    a.leave();
    b.leave();
}

#[wasm_bindgen_test]
async fn a_hundred_join_leave_cycles_leave_nothing_behind() {
    let r = room("cycles");
    let a = join(&r).await;
    let memory = || {
        wasm_bindgen::memory()
            .dyn_into::<js_sys::WebAssembly::Memory>()
            .unwrap()
            .buffer()
            .dyn_into::<js_sys::ArrayBuffer>()
            .unwrap()
            .byte_length()
    };
    let mut baseline = 0;
    for cycle in 0..100 {
        let mut a_events = a.events();
        let b = join(&r).await;
        let mut b_events = b.events();
        let what = format!("cycle {cycle}: b connects");
        let start = now_ms();
        while !(connected(&a).len() == 1 && connected(&b).len() == 1) {
            if now_ms() - start > 20_000.0 {
                let mut log = Vec::new();
                while let Ok(e) = a_events.try_recv() {
                    log.push(format!("a: {e:?}"));
                }
                while let Ok(e) = b_events.try_recv() {
                    log.push(format!("b: {e:?}"));
                }
                panic!(
                    "{what}: a {:?} b {:?}\n{}",
                    a.peer_states(),
                    b.peer_states(),
                    log.join("\n")
                );
            }
            sleep(20).await;
        }
        b.leave();
        drop(b);
        until("a sees b leave", 10.0, || a.peer_states().is_empty()).await;
        if cycle == 9 {
            baseline = memory();
        }
    }
    // Connections closed on both sides are freed: nothing of the 100 peers is left.
    until("objects freed", 5.0, || {
        let live = live_objects();
        let get = |k: &str| {
            js_sys::Reflect::get(&live, &k.into())
                .unwrap()
                .as_f64()
                .unwrap()
        };
        get("peers") == 0.0 && get("channels") == 0.0
    })
    .await;
    let grown = memory().saturating_sub(baseline);
    assert!(
        grown <= 512 * 1024,
        "wasm memory grew by {grown} bytes over 90 cycles"
    );
    a.leave();
}

#[wasm_bindgen_test]
async fn relay_only_connects_through_turn_and_reports_relayed() {
    let Some(url) = TURN_SIGNAL else {
        panic!("run with `cargo xtask test` (it starts coturn and a server using it)");
    };
    let r = room("turn");
    // The server's welcome carries the TURN URL with fresh REST credentials.
    let a = Swarm::join_relayed(url, &r, vec![], None, true)
        .await
        .expect("join a");
    let b = Swarm::join_relayed(url, &r, vec![], None, true)
        .await
        .expect("join b");
    until("relayed connection", 20.0, || {
        connected(&a).len() == 1 && connected(&b).len() == 1
    })
    .await;
    let ib = id(&b);
    until("route relayed", 8.0, || {
        matches!(a.route(&ib), Some((swarmdrop::swarm::Route::Relayed, _)))
    })
    .await;
    let mut eb = b.events();
    a.send_text(&ib, "via TURN").await.unwrap();
    assert_eq!(
        next_message(&mut eb, 5).await.1,
        Message::Text("via TURN".into())
    );
    a.leave();
    b.leave();
}

#[wasm_bindgen_test]
async fn garbage_sdp_fails_that_peer_with_a_reason_and_others_carry_on() {
    use swarmdrop::signal::{ClientMessage, ServerMessage};
    use swarmdrop::web::{SignalClient, SignalEvent};
    let r = room("garbage");
    let a = join(&r).await;
    let b = join(&r).await;
    until("a and b connected", 20.0, || connected(&a).len() == 1).await;
    let mut events = a.events();
    // A raw signaling client in the same room answers or offers with nonsense SDP.
    let (mut raw, raw_id, _) = SignalClient::join(signal_url(), &r)
        .await
        .expect("raw join");
    let a_id = id(&a);
    let garbage = |kind: &str| {
        swarmdrop::signal::raw_json(format!(r#"{{"kind":"{kind}","sdp":"this is not SDP"}}"#))
            .unwrap()
    };
    if a_id < raw_id {
        // `a` offers to us: wait for its offer, answer with garbage.
        loop {
            match raw.next().await.expect("raw events") {
                SignalEvent::Message(ServerMessage::Signal { from, data })
                    if from == a_id && data.get().contains("\"offer\"") =>
                {
                    break
                }
                _ => {}
            }
        }
        raw.send(&ClientMessage::Signal {
            to: a_id.clone(),
            data: garbage("answer"),
        })
        .unwrap();
    } else {
        raw.send(&ClientMessage::Signal {
            to: a_id.clone(),
            data: garbage("offer"),
        })
        .unwrap();
    }
    let raw_peer = PeerId::new(raw_id.to_string()).unwrap();
    let start = now_ms();
    let reason = loop {
        assert!(now_ms() - start < 10_000.0, "the bad peer was not failed");
        match events.next().await {
            Some(Event::Swarm(SwarmEvent::PeerState(p, PeerState::Failed, r))) if p == raw_peer => {
                break r.unwrap_or_default()
            }
            Some(_) => {}
            None => panic!("events ended"),
        }
    };
    assert!(reason.contains("description"), "reason: {reason}");
    // The good connection carries on.
    assert_eq!(connected(&a), vec![id(&b)]);
    let mut eb = b.events();
    a.send_text(&id(&b), "still here").await.unwrap();
    assert_eq!(
        next_message(&mut eb, 5).await.1,
        Message::Text("still here".into())
    );
    a.leave();
    b.leave();
}

#[wasm_bindgen_test]
fn tracing_events_reach_the_console_with_their_level_and_fields() {
    swarmdrop::web::start();
    let console = js_sys::Reflect::get(&js_sys::global(), &"console".into()).unwrap();
    let lines = js_sys::Array::new();
    let collect = js_sys::Function::new_with_args("line", "this.push(String(line))").bind0(&lines);
    let mut original = Vec::new();
    for name in ["warn", "log"] {
        original.push(js_sys::Reflect::get(&console, &name.into()).unwrap());
        js_sys::Reflect::set(&console, &name.into(), &collect).unwrap();
    }
    tracing::warn!(peer = "p1", bytes = 3, "storage is {}", "full");
    tracing::debug!("not shown below INFO");
    for (name, f) in ["warn", "log"].into_iter().zip(original) {
        js_sys::Reflect::set(&console, &name.into(), &f).unwrap();
    }
    let lines: Vec<String> = lines.iter().filter_map(|l| l.as_string()).collect();
    assert_eq!(
        lines,
        ["WARN browser_swarm: storage is full peer=p1 bytes=3"],
        "console lines"
    );
}

#[wasm_bindgen_test]
async fn a_data_channel_that_closes_while_both_stay_is_opened_again() {
    // The data channel between two tabs closes (the browser gave up on it) while both stay in
    // the room: each fails the connection and tries again (3 s later), so they are connected
    // again in a few seconds under the same ids, and talk. (Forgotten, they would never meet
    // again: the server lists a member only once.)
    let r = room("channel-closed");
    let a = join(&r).await;
    let b = join(&r).await;
    until("connected", 10.0, || {
        connected(&a).len() == 1 && connected(&b).len() == 1
    })
    .await;
    let (ib, ia) = (connected(&a)[0].clone(), connected(&b)[0].clone());
    a.close_channel_for_testing(&ib);
    until("both see it gone", 5.0, || {
        connected(&a).is_empty() && connected(&b).is_empty()
    })
    .await;
    let start = now_ms();
    until("connected again", 15.0, || {
        connected(&a) == [ib.clone()] && connected(&b) == [ia.clone()]
    })
    .await;
    web_sys::console::log_1(&format!("connected again after {:.0} ms", now_ms() - start).into());
    let mut eb = b.events();
    a.send_text(&ib, "after the channel closed").await.unwrap();
    assert_eq!(
        next_message(&mut eb, 5).await,
        (ia, Message::Text("after the channel closed".into()))
    );
    a.leave();
    b.leave();
}

#[wasm_bindgen_test]
async fn lost_hellos_are_sent_again_so_peers_connect_in_a_moment() {
    // A message sent on a channel that has just opened can be lost (it reaches the remote
    // end before that end's channel is ready): the first hellos of both swarms here are.
    // Each sends its own again after a moment, so both connect well before the 15 s
    // connection deadline (and a retry) would have.
    let r = room("lost-hellos");
    let a = join(&r).await;
    swarmdrop::web::lose_hellos_for_testing(2);
    let b = join(&r).await;
    let start = now_ms();
    until("connected after lost hellos", 5.0, || {
        connected(&a).len() == 1 && connected(&b).len() == 1
    })
    .await;
    swarmdrop::web::lose_hellos_for_testing(0);
    web_sys::console::log_1(&format!("connected {:.0} ms after join", now_ms() - start).into());
    // And they talk.
    let mut eb = b.events();
    a.send_text(&id(&b), "after the lost hellos").await.unwrap();
    assert_eq!(
        next_message(&mut eb, 5).await,
        (id(&a), Message::Text("after the lost hellos".into()))
    );
    a.leave();
    b.leave();
}
