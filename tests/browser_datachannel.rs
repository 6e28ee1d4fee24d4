//! Two peer connections made by `swarmdrop::web` open a data channel and move 1 MiB, checked.
#![cfg(target_arch = "wasm32")]

use futures::StreamExt;
use swarmdrop::web::{Message, PeerConnection, PeerEvent};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const TOTAL: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn byte_at(i: usize) -> u8 {
    // Not periodic in the chunk size, so a dropped, repeated or reordered chunk is caught.
    (i.wrapping_mul(31) ^ (i >> 11)) as u8
}

#[wasm_bindgen_test]
async fn one_mib_over_a_data_channel() {
    let (a, mut a_events) = PeerConnection::new(&[], false).expect("peer a");
    let (b, mut b_events) = PeerConnection::new(&[], false).expect("peer b");
    let sender = a.create_data_channel("data");

    let offer = a.create_offer().await.expect("offer");
    let answer = b.accept_offer(&offer).await.expect("answer");
    a.accept_answer(&answer).await.expect("accept answer");

    // Trickle candidates both ways while waiting for b's side of the channel to appear.
    let mut receiver = None;
    let mut a_done = false;
    while receiver.is_none() {
        futures::select! {
            ev = a_events.next() => match ev.expect("a events") {
                PeerEvent::Candidate(c) => b.add_candidate(&c).await.expect("b adds candidate"),
                PeerEvent::GatheringDone => a_done = true,
                _ => {}
            },
            ev = b_events.next() => match ev.expect("b events") {
                PeerEvent::Candidate(c) => a.add_candidate(&c).await.expect("a adds candidate"),
                PeerEvent::DataChannel(ch) => receiver = Some(ch),
                _ => {}
            },
        }
    }
    let _ = a_done;
    let mut receiver = receiver.unwrap();
    assert_eq!(receiver.label(), "data");
    sender.opened().await.expect("sender open");
    assert!(
        a.max_message_size() >= CHUNK,
        "max message {}",
        a.max_message_size()
    );

    let data: Vec<u8> = (0..TOTAL).map(byte_at).collect();
    let send = async {
        for chunk in data.chunks(CHUNK) {
            sender.send(chunk).await.expect("send");
        }
    };
    let recv = async {
        let mut got = Vec::with_capacity(TOTAL);
        while got.len() < TOTAL {
            match receiver.recv().await.expect("channel closed early") {
                Message::Binary(b) => got.extend_from_slice(&b),
                Message::Text(t) => panic!("unexpected text {t:?}"),
            }
        }
        got
    };
    let ((), got) = futures::join!(send, recv);
    assert_eq!(got.len(), TOTAL);
    let first_bad = got.iter().zip(&data).position(|(x, y)| x != y);
    assert_eq!(first_bad, None, "content differs");
}
