//! File sharing between swarms in one page, through the real signaling server: multi-source
//! download, integrity, OPFS resume.
#![cfg(target_arch = "wasm32")]

use futures::channel::mpsc;
use futures::StreamExt;
use swarmdrop::signal::PeerId;
use swarmdrop::swarm::PeerState;
use swarmdrop::transfer::{id_from_hex, FileId, TransferEvent};
use swarmdrop::web::{Event, Swarm};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const SIGNAL: Option<&str> = option_env!("SWARMDROP_SIGNAL_URL");
const MIB: usize = 1024 * 1024;

fn tag(t: &str) -> String {
    format!("{t}-{}", (js_sys::Math::random() * 1e12) as u64)
}

async fn join(room: &str, storage: &str) -> Swarm {
    let url = SIGNAL.expect("run with `cargo xtask test` (it starts the signaling server)");
    Swarm::join_with_storage(url, room, storage)
        .await
        .expect("join")
}

/// Joins `room` on a new store, uploading at most `limit` bytes/s.
async fn join_capped(room: &str, limit: f64) -> Swarm {
    let opts = js_sys::Object::new();
    for (k, v) in [
        ("signal", JsValue::from_str(SIGNAL.unwrap())),
        ("room", JsValue::from_str(room)),
        ("storage", JsValue::from_str(&tag("capped"))),
        ("uploadLimit", JsValue::from_f64(limit)),
    ] {
        js_sys::Reflect::set(&opts, &k.into(), &v).unwrap();
    }
    Swarm::join(opts.into())
        .await
        .map_err(JsValue::from)
        .unwrap()
}

/// Two swarms (each with a store of its own) in a new room named after `name`, connected.
async fn two_connected(name: &str) -> (Swarm, Swarm) {
    let room = tag(name);
    let a = join(&room, &tag("a")).await;
    let b = join(&room, &tag("b")).await;
    until("connected", 20.0, || {
        connected(&a) == 1 && connected(&b) == 1
    })
    .await;
    (a, b)
}

fn peer_id(s: &Swarm) -> PeerId {
    PeerId::new(s.id().unwrap()).unwrap()
}

async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

async fn until(what: &str, secs: f64, mut ok: impl FnMut() -> bool) {
    let start = js_sys::Date::now();
    while !ok() {
        assert!(
            js_sys::Date::now() - start < secs * 1000.0,
            "timed out after {secs} s: {what}"
        );
        sleep(20).await;
    }
}

fn connected(s: &Swarm) -> usize {
    s.peer_states()
        .iter()
        .filter(|(_, st)| *st == PeerState::Connected)
        .count()
}

/// Random bytes (crypto.getRandomValues, 64 KiB at a time).
fn random_bytes(len: usize) -> Vec<u8> {
    let crypto = web_sys::window().unwrap().crypto().unwrap();
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(65536) {
        crypto.get_random_values_with_u8_array(chunk).unwrap();
    }
    v
}

fn file_of(bytes: &[u8], name: &str) -> web_sys::File {
    let parts = js_sys::Array::new();
    parts.push(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::FilePropertyBag::new();
    opts.set_type("application/octet-stream");
    web_sys::File::new_with_u8_array_sequence_and_options(&parts, name, &opts).unwrap()
}

async fn share(s: &Swarm, file: &web_sys::File) -> FileId {
    id_of(&s.share(file.clone(), None).await.unwrap())
}

/// The file id in what `share` resolved with.
fn id_of(shared: &JsValue) -> FileId {
    let hex = js_sys::Reflect::get(shared, &"id".into())
        .unwrap()
        .as_string()
        .unwrap();
    id_from_hex(&hex).unwrap()
}

/// Options of a long task (`share`, `zipFiles`) whose `onProgress` records each call (see
/// [`progress_seen`]) and aborts its signal at call `abort_at` (0: never).
fn task_options(abort_at: u32) -> JsValue {
    js_sys::Function::new_with_args(
        "abortAt",
        "const c = new AbortController(); const seen = [];
         return { signal: c.signal, seen,
                  onProgress(done, total) { seen.push([done, total]); if (seen.length === abortAt) c.abort(); } };",
    )
    .call1(&JsValue::NULL, &abort_at.into())
    .unwrap()
}

/// The `(done, total)` of each `onProgress` call of [`task_options`].
fn progress_seen(options: &JsValue) -> Vec<(f64, f64)> {
    js_sys::Array::from(&js_sys::Reflect::get(options, &"seen".into()).unwrap())
        .iter()
        .map(|p| {
            let p = js_sys::Array::from(&p);
            (p.get(0).as_f64().unwrap(), p.get(1).as_f64().unwrap())
        })
        .collect()
}

fn hex(id: &FileId) -> String {
    swarmdrop::transfer::id_hex(id)
}

async fn file_bytes(v: JsValue) -> Vec<u8> {
    let file: web_sys::File = v.dyn_into().expect("a File");
    let buf = JsFuture::from(file.array_buffer()).await.unwrap();
    js_sys::Uint8Array::new(&buf).to_vec()
}

/// The finished download's `File`; fails the test, saying `when`, if it is not done within
/// `ms`.
async fn done_within(dl: &swarmdrop::web::Download, ms: u32, when: &str) -> JsValue {
    let done = JsFuture::from(dl.done());
    let timeout = sleep(ms);
    futures::pin_mut!(done, timeout);
    match futures::future::select(done, timeout).await {
        futures::future::Either::Left((got, _)) => got.expect("the download"),
        futures::future::Either::Right(_) => panic!("not finished {when}"),
    }
}

/// A number of file `id`'s entry in `s.files()`.
fn field(s: &Swarm, id: &FileId, name: &str) -> f64 {
    let f = s
        .files()
        .iter()
        .find(|f| js_sys::Reflect::get(f, &"id".into()).unwrap().as_string() == Some(hex(id)))
        .expect("listed");
    let v = js_sys::Reflect::get(&f, &name.into()).unwrap();
    v.as_f64().unwrap_or_else(|| panic!("{name}: {v:?}"))
}

fn knows(s: &Swarm, id: &FileId) -> bool {
    s.files()
        .iter()
        .any(|f| js_sys::Reflect::get(&f, &"id".into()).unwrap().as_string() == Some(hex(id)))
}

async fn wait_event(
    events: &mut mpsc::UnboundedReceiver<Event>,
    secs: f64,
    mut want: impl FnMut(&Event) -> bool,
) -> Event {
    let start = js_sys::Date::now();
    loop {
        assert!(
            js_sys::Date::now() - start < secs * 1000.0,
            "event not seen in {secs} s"
        );
        let next = events.next();
        let timeout = sleep(200);
        futures::pin_mut!(next, timeout);
        if let futures::future::Either::Left((Some(e), _)) =
            futures::future::select(next, timeout).await
        {
            if want(&e) {
                return e;
            }
        }
    }
}

/// Ranges of a file as sharing reads them: across the reader's 1 MiB buffers, unaligned, empty,
/// whole, and more at once than buffers are kept; each exactly the file's bytes. The browser
/// must give blobs a byte stream (the reads are BYOB, into reused buffers; without it each
/// read allocates a buffer the garbage collector frees late).
#[wasm_bindgen_test]
async fn ranges_of_a_file_read_back_exactly_through_a_byob_reader() {
    let bytes = random_bytes(3 * 1024 * 1024 + 12345);
    let file = file_of(&bytes, "ranges.bin");
    let options = web_sys::ReadableStreamGetReaderOptions::new();
    options.set_mode(web_sys::ReadableStreamReaderMode::Byob);
    let reader = file.stream().get_reader_with_options(&options);
    assert!(
        reader.is_instance_of::<web_sys::ReadableStreamByobReader>(),
        "a blob's stream has no BYOB reader here"
    );
    let n = bytes.len();
    let ranges = [
        (0, n),
        (0, 0),
        (5, 5),
        (1, 1 << 20),
        ((1 << 20) - 7, (1 << 20) + 9),
        (12345, 2 * (1 << 20) + 3),
        (n - 1, n),
        (n - 100_000, n),
    ];
    let file = &file;
    let reads = ranges.iter().map(|&(start, end)| async move {
        let got = swarmdrop::web::store::read_blob(file, start as f64, end as f64)
            .await
            .unwrap_or_else(|e| panic!("reading {start}..{end}: {e}"));
        (start, end, got)
    });
    // All at once: more reads than buffers kept, each with a buffer of its own.
    for (start, end, got) in futures::future::join_all(reads).await {
        assert!(got == bytes[start..end], "bytes {start}..{end} differ");
    }
    // Again one at a time, on the kept buffers.
    for &(start, end) in &ranges {
        let got = swarmdrop::web::store::read_blob(file, start as f64, end as f64)
            .await
            .unwrap();
        assert!(
            got == bytes[start..end],
            "bytes {start}..{end} differ (again)"
        );
    }
}

#[wasm_bindgen_test]
async fn eight_mib_from_a_to_b_and_c_with_c_also_fetching_from_b() {
    let room = tag("files");
    let a = join(&room, &tag("a")).await;
    let b = join(&room, &tag("b")).await;
    let c = join(&room, &tag("c")).await;
    until("mesh", 20.0, || {
        [&a, &b, &c].iter().all(|s| connected(s) == 2)
    })
    .await;
    let data = random_bytes(8 * MIB);
    let id = share(&a, &file_of(&data, "random.bin")).await;
    until("announced", 10.0, || knows(&b, &id) && knows(&c, &id)).await;

    let dl_b = b.download(hex(&id)).unwrap();
    let got_b = JsFuture::from(dl_b.done()).await.expect("b's download");
    assert_eq!(file_bytes(got_b).await, data, "b's bytes");
    // Its pieces were written by the worker (through sync access handles), not the fallback.
    if let Err(why) = b.pieces_written_in_worker_for_testing() {
        panic!("b's pieces were written by the page, not the worker: {why}");
    }
    // B now seeds: C fetches from A and B.
    let dl_c = c.download(hex(&id)).unwrap();
    let got_c = JsFuture::from(dl_c.done()).await.expect("c's download");
    let file_c: web_sys::File = got_c.clone().dyn_into().unwrap();
    assert_eq!(file_c.name(), "random.bin");
    assert_eq!(file_bytes(got_c).await, data, "c's bytes");
    let from = c.received_from(&id);
    let from_b = from.get(&peer_id(&b)).copied().unwrap_or(0);
    let from_a = from.get(&peer_id(&a)).copied().unwrap_or(0);
    assert!(from_b > 0, "c fetched nothing from b: {from:?}");
    assert!(from_a > 0, "c fetched nothing from a: {from:?}");
    // What each source says it served: a all of b's copy and its part of c's, b its part of
    // c's (a block sent to both in the endgame counts where it was sent); no one fetches now.
    let (sent_a, sent_b) = (field(&a, &id, "sent"), field(&b, &id, "sent"));
    assert!(
        sent_a >= (8 * MIB) as f64 + from_a as f64 && sent_b >= from_b as f64,
        "sent: a {sent_a}, b {sent_b}; c got {from_a} from a, {from_b} from b"
    );
    assert_eq!(field(&c, &id, "sent"), 0.0, "c served no one");
    // (Endgame duplicates c cancelled may still be on their way to a or b for a moment.)
    until("no one fetches after the downloads", 5.0, || {
        [&a, &b, &c]
            .iter()
            .all(|s| field(s, &id, "uploading") == 0.0)
    })
    .await;
    for s in [&b, &c] {
        s.delete_stored(hex(&id)).await.unwrap();
    }
    for s in [a, b, c] {
        s.leave();
    }
}

#[wasm_bindgen_test]
async fn a_file_of_no_bytes_is_shared_and_downloaded() {
    let (a, b) = two_connected("empty").await;
    let id = share(&a, &file_of(&[], "empty.txt")).await;
    until("announced", 10.0, || knows(&b, &id)).await;
    let dl = b.download(hex(&id)).unwrap();
    let got = JsFuture::from(dl.done()).await.expect("the download");
    let file: web_sys::File = got.clone().dyn_into().unwrap();
    assert_eq!((file.name(), file.size()), ("empty.txt".to_string(), 0.0));
    assert!(file_bytes(got).await.is_empty());
    let info = b
        .files()
        .iter()
        .find(|f| js_sys::Reflect::get(f, &"id".into()).unwrap().as_string() == Some(hex(&id)))
        .expect("listed");
    let complete = js_sys::Reflect::get(&info, &"complete".into()).unwrap();
    assert_eq!(complete.as_bool(), Some(true), "listed as complete");
    for s in [a, b] {
        s.leave();
    }
}

/// `share(file, options)`: the name given is the one announced (a path in a shared folder),
/// progress comes piece by piece up to the size, and a signal aborted midway stops the hashing:
/// `share` rejects with its reason and nothing is shared.
#[wasm_bindgen_test]
async fn share_announces_the_name_given_reports_progress_and_stops_when_aborted() {
    let (a, b) = two_connected("share-options").await;
    let size = 5 * MIB + 123;
    let opts = task_options(0);
    js_sys::Reflect::set(&opts, &"name".into(), &"album/sub/f.bin".into()).unwrap();
    let file = file_of(&random_bytes(size), "f.bin");
    let info = a
        .share(file, Some(opts.clone().unchecked_into()))
        .await
        .unwrap();
    let name = js_sys::Reflect::get(&info, &"name".into()).unwrap();
    assert_eq!(name.as_string().as_deref(), Some("album/sub/f.bin"));
    let want: Vec<(f64, f64)> = (1..=6)
        .map(|i| ((i * MIB).min(size) as f64, size as f64))
        .collect();
    assert_eq!(progress_seen(&opts), want, "progress: one call a piece");
    let id = id_of(&info);
    until("announced", 10.0, || knows(&b, &id)).await;
    let listed = b.files().iter().find_map(|f| {
        js_sys::Reflect::get(&f, &"name".into())
            .unwrap()
            .as_string()
    });
    assert_eq!(
        listed.as_deref(),
        Some("album/sub/f.bin"),
        "the name the peer sees"
    );

    let opts = task_options(2);
    let err = a
        .share(
            file_of(&random_bytes(size), "g.bin"),
            Some(opts.clone().unchecked_into()),
        )
        .await
        .expect_err("aborted");
    let why = js_sys::Reflect::get(&err, &"name".into()).unwrap();
    assert_eq!(why.as_string().as_deref(), Some("AbortError"), "{err:?}");
    assert_eq!(progress_seen(&opts).len(), 2, "no progress after the abort");
    assert_eq!(a.files().length(), 1, "nothing more shared");
    sleep(500).await;
    assert_eq!(b.files().length(), 1, "nothing more announced");
    for s in [a, b] {
        s.leave();
    }
}

/// `zipFiles`: the archive is the files as they are between their headers (its size says so:
/// stored, not compressed), named as asked (a second of one name gets a number); progress
/// reaches the total; an aborted signal rejects with its reason. (Its bytes are read back
/// natively and in the page E2E test.)
#[wasm_bindgen_test]
async fn zip_files_packs_files_as_they_are_reports_progress_and_stops_when_aborted() {
    let a = random_bytes(3 * MIB + 5);
    let b = random_bytes(1000);
    let entries = js_sys::Array::new();
    for (data, name) in [(&a, "dir/a.bin"), (&b, "dir/a.bin")] {
        let e = js_sys::Object::new();
        js_sys::Reflect::set(&e, &"file".into(), &file_of(data, "x")).unwrap();
        js_sys::Reflect::set(&e, &"name".into(), &name.into()).unwrap();
        entries.push(&e);
    }
    let opts = task_options(0);
    let zip = swarmdrop::web::zip_files(
        entries.clone(),
        "dir.zip".into(),
        Some(opts.clone().unchecked_into()),
    )
    .await
    .unwrap();
    let zip: web_sys::File = zip.dyn_into().unwrap();
    assert_eq!(zip.name(), "dir.zip");
    assert_eq!(zip.type_(), "application/zip");
    // Each entry: a 30-byte header with its name, and a 46-byte central one; 22 bytes at the end.
    let names = "dir/a.bin".len() + "dir/a (2).bin".len();
    let want = a.len() + b.len() + 2 * (30 + 46) + 2 * names + 22;
    assert_eq!(zip.size() as usize, want);
    let bytes = file_bytes(zip.into()).await;
    assert_eq!(&bytes[..4], b"PK\x03\x04");
    assert_eq!(
        &bytes[30 + 9..30 + 9 + a.len()],
        &a[..],
        "the first file as it is"
    );
    let total = (a.len() + b.len()) as f64;
    assert_eq!(progress_seen(&opts).last(), Some(&(total, total)));

    let opts = task_options(1);
    let err = swarmdrop::web::zip_files(entries, "dir.zip".into(), Some(opts.unchecked_into()))
        .await
        .expect_err("aborted");
    let why = js_sys::Reflect::get(&err, &"name".into()).unwrap();
    assert_eq!(why.as_string().as_deref(), Some("AbortError"), "{err:?}");
}

#[wasm_bindgen_test]
async fn a_peer_serving_corrupt_pieces_is_detected_and_dropped() {
    let room = tag("corrupt");
    let a = join(&room, &tag("a")).await;
    let x = join(&room, &tag("x")).await;
    let c = join(&room, &tag("c")).await;
    until("mesh", 20.0, || {
        [&a, &x, &c].iter().all(|s| connected(s) == 2)
    })
    .await;
    let data = random_bytes(4 * MIB);
    let file = file_of(&data, "f.bin");
    // X alone offers the file at first, so every piece C fetches comes from X alone and fails:
    // X is banned for it (deterministically; with two sources a mixed piece only gives strikes).
    x.corrupt_uploads_for_testing(true);
    let id = share(&x, &file).await;
    until("announced", 10.0, || knows(&c, &id)).await;
    let mut events = c.events();
    let dl = c.download(hex(&id)).unwrap();
    let xid = peer_id(&x);
    let reason = match wait_event(
        &mut events,
        20.0,
        |e| matches!(e, Event::Transfer(TransferEvent::PeerBanned(p, _)) if *p == xid),
    )
    .await
    {
        Event::Transfer(TransferEvent::PeerBanned(_, reason)) => reason,
        _ => unreachable!(),
    };
    assert!(reason.contains("SHA-256"), "{reason}");
    // Then an honest peer offers it and the download completes from it.
    assert_eq!(share(&a, &file).await, id);
    let got = JsFuture::from(dl.done())
        .await
        .expect("download despite a bad peer");
    assert_eq!(file_bytes(got).await, data);
    let from = c.received_from(&id);
    assert!(
        from.get(&peer_id(&a)).copied().unwrap_or(0) >= data.len() as u64,
        "{from:?}"
    );
    c.delete_stored(hex(&id)).await.unwrap();
    for s in [a, x, c] {
        s.leave();
    }
}

#[wasm_bindgen_test]
async fn a_download_resumes_from_opfs_after_the_swarm_is_recreated() {
    let room = tag("resume");
    let store = tag("b");
    let a = join(&room, &tag("a")).await;
    // The first swarm writes its pieces from the page (the fallback where no worker runs), the
    // second through the worker: either finds and finishes the other's pieces.
    swarmdrop::web::store::page_writes_for_testing(true);
    let b = join(&room, &store).await;
    swarmdrop::web::store::page_writes_for_testing(false);
    assert!(b.pieces_written_in_worker_for_testing().is_err());
    until("connected", 20.0, || {
        connected(&a) == 1 && connected(&b) == 1
    })
    .await;
    let data = random_bytes(24 * MIB);
    let shared = file_of(&data, "resume.bin");
    let id = share(&a, &shared).await;
    until("announced", 10.0, || knows(&b, &id)).await;
    let mut events = b.events();
    let _dl = b.download(hex(&id)).unwrap();
    // Stop once a quarter is stored.
    let have_before = match wait_event(&mut events, 20.0, |e| {
        matches!(e, Event::Transfer(TransferEvent::Progress(f, have, _)) if *f == id && *have >= 2 * MIB as u64)
    })
    .await
    {
        Event::Transfer(TransferEvent::Progress(_, have, _)) => have,
        _ => unreachable!(),
    };
    b.leave();
    drop(b);
    // Writes already under way finish; then look at the disk from a swarm in another room (so
    // nothing more is fetched while we count).
    sleep(1000).await;
    let probe = join(&tag("elsewhere"), &store).await;
    let stored = probe.stored_files().await.unwrap();
    probe.leave();
    drop(probe);
    assert_eq!(stored.length(), 1);
    let have_on_disk = js_sys::Reflect::get(&stored.get(0), &"have".into())
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(
        have_on_disk as u64 >= have_before,
        "{have_on_disk} < {have_before}"
    );
    assert!(
        (have_on_disk as usize) < data.len(),
        "the first swarm finished before it left"
    );
    // A new swarm on the same store in the room finds the pieces and fetches only the rest.
    let b2 = join(&room, &store).await;
    assert_eq!(b2.pieces_written_in_worker_for_testing(), Ok(()));
    until("reconnected", 20.0, || connected(&b2) == 1).await;
    let dl = b2.download(hex(&id)).unwrap();
    let got = JsFuture::from(dl.done()).await.expect("resumed download");
    assert_eq!(file_bytes(got).await, data);
    let fetched = b2.received_from(&id).values().sum::<u64>();
    assert!(
        fetched <= data.len() as u64 - have_on_disk as u64,
        "fetched {fetched} again although {have_on_disk} were stored"
    );
    // Asked for again, a file the swarm has is handed over at once: the finished download,
    // and on the sharer's side the very `File` it shares.
    let again = JsFuture::from(b2.download(hex(&id)).unwrap().done())
        .await
        .expect("a finished download, asked for again");
    assert_eq!(file_bytes(again).await, data);
    let own = JsFuture::from(a.download(hex(&id)).unwrap().done())
        .await
        .expect("the sharer's own file");
    assert!(js_sys::Object::is(&own, &shared), "not the shared File");
    b2.delete_stored(hex(&id)).await.unwrap();
    a.leave();
    b2.leave();
}

#[wasm_bindgen_test]
async fn a_download_goes_on_after_its_data_channel_closes_and_opens_again() {
    // Mid-download the data channel between the two tabs closes (both stay in the room): the
    // swarm connects them again a few seconds later and the download finishes, whole, without
    // fetching again what it had stored.
    let room = tag("channel-drop");
    let a = join_capped(&room, 4e6).await;
    let b = join(&room, &tag("b")).await;
    until("connected", 20.0, || {
        connected(&a) == 1 && connected(&b) == 1
    })
    .await;
    let data = random_bytes(16 * MIB);
    let id = share(&a, &file_of(&data, "drop.bin")).await;
    until("announced", 10.0, || knows(&b, &id)).await;
    let mut events = b.events();
    let dl = b.download(hex(&id)).unwrap();
    wait_event(&mut events, 20.0, |e| {
        matches!(e, Event::Transfer(TransferEvent::Progress(f, have, _)) if *f == id && *have >= 2 * MIB as u64)
    })
    .await;
    let a_at_b = b.peer_states()[0].0.clone();
    b.close_channel_for_testing(&a_at_b);
    until("the channel gone", 5.0, || connected(&b) == 0).await;
    assert!(b.received_from(&id).values().sum::<u64>() < data.len() as u64);
    let got = done_within(&dl, 30_000, "30 s after the channel closed").await;
    assert_eq!(file_bytes(got).await, data);
    // What was in flight when the channel closed is fetched again, nothing stored.
    let fetched = b.received_from(&id).values().sum::<u64>();
    assert!(
        fetched <= (data.len() + 8 * MIB) as u64,
        "fetched {fetched} for a file of {}",
        data.len()
    );
    b.delete_stored(hex(&id)).await.unwrap();
    a.leave();
    b.leave();
}

/// `setUploadLimit` during a download: the source counts the peer fetching from it, the limit
/// lifted lets the download finish; a limit that is not a number of bytes a second is an error
/// that changes nothing.
#[wasm_bindgen_test]
async fn an_upload_limit_changed_while_a_peer_fetches_applies_at_once() {
    let (a, b) = two_connected("limit-changed").await;
    assert_eq!(a.upload_limit(), None);
    a.set_upload_limit(Some(500_000.0))
        .map_err(JsValue::from)
        .unwrap();
    assert_eq!(a.upload_limit(), Some(500_000.0));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = JsValue::from(a.set_upload_limit(Some(bad)).expect_err("a bad limit"));
        let message = js_sys::Reflect::get(&e, &"message".into()).unwrap();
        assert!(
            message.as_string().unwrap().contains("uploadLimit"),
            "{message:?}"
        );
        assert_eq!(a.upload_limit(), Some(500_000.0), "after {bad}");
    }
    let data = random_bytes(8 * MIB);
    let id = share(&a, &file_of(&data, "limited.bin")).await;
    until("announced", 10.0, || knows(&b, &id)).await;
    let dl = b.download(hex(&id)).unwrap();
    until("b fetching from a", 10.0, || {
        field(&a, &id, "uploading") == 1.0 && field(&a, &id, "sent") > 0.0
    })
    .await;
    sleep(1000).await;
    // (At 500 kB/s, 8 MiB takes 17 s.)
    assert!(field(&b, &id, "have") < (4 * MIB) as f64);
    a.set_upload_limit(None).map_err(JsValue::from).unwrap();
    assert_eq!(a.upload_limit(), None);
    let got = done_within(&dl, 8_000, "8 s after the limit was lifted").await;
    assert_eq!(file_bytes(got).await, data);
    b.delete_stored(hex(&id)).await.unwrap();
    a.leave();
    b.leave();
}

/// Runs JS `body` (the statements of an async function of `args`) with `values`; its result.
async fn run_js(args: &str, body: &str, values: &[JsValue]) -> JsValue {
    let f = js_sys::Function::new_with_args(args, &format!("return (async () => {{ {body} }})();"));
    let promise = f
        .apply(&JsValue::NULL, &values.iter().collect::<js_sys::Array>())
        .unwrap();
    JsFuture::from(js_sys::Promise::from(promise))
        .await
        .expect("the script")
}

/// The names in folder `id` of store `store` (see `src/web/store.rs`).
async fn stored_names(store: &str, id: &FileId) -> Vec<String> {
    let names = run_js(
        "store, hex",
        "let d = await navigator.storage.getDirectory();
         for (const n of ['swarmdrop', store, hex]) d = await d.getDirectoryHandle(n);
         const names = [];
         for await (const n of d.keys()) names.push(n);
         return names.sort();",
        &[store.into(), hex(id).into()],
    )
    .await;
    js_sys::Array::from(&names)
        .iter()
        .map(|n| n.as_string().unwrap())
        .collect()
}

#[wasm_bindgen_test]
async fn a_download_is_one_stored_file_and_one_stored_as_before_is_resumed() {
    use swarmdrop::transfer::ManifestBuilder;
    let room = tag("layout");
    let store = tag("b");
    let a = join(&room, &tag("a")).await;
    // A download stored the way it was before stored.rs (manifest, data and marks in three
    // files), two of its five pieces there: the first and the third.
    let data = random_bytes(4 * MIB + 100);
    let mut builder =
        ManifestBuilder::new("before.bin", data.len() as u64, "application/octet-stream");
    builder.update(&data);
    let m = builder.finish().unwrap();
    assert_eq!(m.pieces(), 5);
    let mut on_disk = vec![0u8; 3 * MIB];
    on_disk[..MIB].copy_from_slice(&data[..MIB]);
    on_disk[2 * MIB..].copy_from_slice(&data[2 * MIB..3 * MIB]);
    run_js(
        "store, hex, manifest, data, have",
        "let d = await navigator.storage.getDirectory();
         for (const n of ['swarmdrop', store, hex]) d = await d.getDirectoryHandle(n, { create: true });
         for (const [name, bytes] of [['manifest', manifest], ['data', data], ['have', have]]) {
           const w = await (await d.getFileHandle(name, { create: true })).createWritable();
           await w.write(bytes);
           await w.close();
         }",
        &[
            store.as_str().into(),
            hex(&m.id()).into(),
            js_sys::Uint8Array::from(&m.encode()[..]).into(),
            js_sys::Uint8Array::from(&on_disk[..]).into(),
            js_sys::Uint8Array::from(&[1u8, 0, 1, 0, 0][..]).into(),
        ],
    )
    .await;
    let b = join(&room, &store).await;
    assert_eq!(b.pieces_written_in_worker_for_testing(), Ok(()));
    let stored = b.stored_files().await.unwrap();
    assert_eq!(stored.length(), 1, "the file stored as before is listed");
    let have = js_sys::Reflect::get(&stored.get(0), &"have".into()).unwrap();
    assert_eq!(have.as_f64(), Some((2 * MIB) as f64));
    until("connected", 20.0, || {
        connected(&a) == 1 && connected(&b) == 1
    })
    .await;
    let id = share(&a, &file_of(&data, "before.bin")).await;
    assert_eq!(id, m.id());
    until("announced", 10.0, || knows(&b, &id)).await;
    let got = JsFuture::from(b.download(hex(&id)).unwrap().done())
        .await
        .expect("the resumed download");
    assert_eq!(file_bytes(got).await, data);
    let fetched = b.received_from(&id).values().sum::<u64>();
    assert_eq!(
        fetched,
        (data.len() - 2 * MIB) as u64,
        "only the pieces not stored"
    );
    // A new download is one file: its bytes, marks and manifest all in `data`; listed whole
    // from it by a swarm that opens the store afresh.
    let fresh = random_bytes(3 * MIB);
    let id2 = share(&a, &file_of(&fresh, "fresh.bin")).await;
    until("announced", 10.0, || knows(&b, &id2)).await;
    let got = JsFuture::from(b.download(hex(&id2)).unwrap().done())
        .await
        .expect("a new download");
    assert_eq!(file_bytes(got).await, fresh);
    assert_eq!(stored_names(&store, &id2).await, ["data"]);
    b.delete_stored(hex(&id)).await.unwrap();
    b.leave();
    drop(b);
    stored_once_complete_then_delete(&store, &id2).await;
    a.leave();
}

/// What the download `done` of `id` in `s` settles with, or, if it has not within `secs`,
/// an error saying how `s` sees the file.
async fn finished(
    s: &Swarm,
    id: &FileId,
    done: js_sys::Promise,
    secs: f64,
) -> Result<JsValue, String> {
    let result = std::rc::Rc::new(std::cell::RefCell::new(None));
    let slot = result.clone();
    wasm_bindgen_futures::spawn_local(async move {
        *slot.borrow_mut() = Some(JsFuture::from(done).await);
    });
    let start = js_sys::Date::now();
    loop {
        if let Some(r) = result.borrow_mut().take() {
            return r.map_err(|e| format!("{e:?}"));
        }
        if js_sys::Date::now() - start > secs * 1000.0 {
            let entry = s
                .files()
                .iter()
                .find(|f| {
                    js_sys::Reflect::get(f, &"id".into()).unwrap().as_string() == Some(hex(id))
                })
                .and_then(|f| js_sys::JSON::stringify(&f).ok())
                .and_then(|j| j.as_string());
            return Err(format!("not done in {secs} s: {entry:?}"));
        }
        sleep(50).await;
    }
}

#[wasm_bindgen_test]
async fn a_file_deleted_from_the_store_is_downloaded_again_whole() {
    let (a, b) = two_connected("again").await;
    let data = random_bytes(2 * MIB + 5);
    let id = share(&a, &file_of(&data, "again.bin")).await;
    until("announced", 10.0, || knows(&b, &id)).await;
    for round in 0..2 {
        let got = finished(&b, &id, b.download(hex(&id)).unwrap().done(), 15.0)
            .await
            .unwrap_or_else(|e| panic!("download {round}: {e}"));
        assert_eq!(file_bytes(got).await, data, "download {round}");
        b.delete_stored(hex(&id)).await.unwrap();
        assert_eq!(b.stored_files().await.unwrap().length(), 0);
    }
    a.leave();
    b.leave();
}

/// The stored-file summary of `id` in a fresh swarm on `store` (`complete`), then deletes it.
async fn stored_once_complete_then_delete(store: &str, id: &FileId) {
    let probe = join(&tag("elsewhere"), store).await;
    listed_once_complete_then_delete(&probe, id).await;
    probe.leave();
}

/// `probe`'s store lists one file, `id`, complete; then deletes it.
async fn listed_once_complete_then_delete(probe: &Swarm, id: &FileId) {
    let stored = probe.stored_files().await.unwrap();
    assert_eq!(stored.length(), 1);
    let complete = js_sys::Reflect::get(&stored.get(0), &"complete".into()).unwrap();
    assert_eq!(complete.as_bool(), Some(true), "the file is whole");
    probe.delete_stored(hex(id)).await.unwrap();
}

/// Two swarms `b1`, `b2` on one new store (two tabs of the app) joining `a` in `room`, all
/// connected, and an 8 MiB random file shared by `a` that both know: (b1, b2, store, bytes, id).
async fn two_tabs_and_a_file(a: &Swarm, room: &str) -> (Swarm, Swarm, String, Vec<u8>, FileId) {
    let store = tag("shared");
    let b1 = join(room, &store).await;
    let b2 = join(room, &store).await;
    until("connected", 20.0, || {
        connected(a) == 2 && connected(&b1) == 2 && connected(&b2) == 2
    })
    .await;
    let data = random_bytes(8 * MIB);
    let id = share(a, &file_of(&data, "two-tabs.bin")).await;
    until("announced", 10.0, || knows(&b1, &id) && knows(&b2, &id)).await;
    (b1, b2, store, data, id)
}

#[wasm_bindgen_test]
async fn two_swarms_on_one_store_download_a_file_at_once() {
    // Two tabs of the app share the browser's storage. The first one's worker keeps the file's
    // `data` open while its download runs, so the second one, downloading at the same time,
    // writes its pieces as piece files. Both finish with the right bytes, and the store then
    // lists the whole file once. The seeder is capped (1 MB/s) so that the first download
    // still runs when the second one's first write finds `data` held (after a 2 s wait).
    let room = tag("two-tabs");
    let a = join_capped(&room, 1e6).await;
    let (b1, b2, store, data, id) = two_tabs_and_a_file(&a, &room).await;
    let mut events = b1.events();
    let d1 = b1.download(hex(&id)).unwrap();
    wait_event(&mut events, 20.0, |e| {
        matches!(e, Event::Transfer(TransferEvent::Progress(f, have, _)) if *f == id && *have >= MIB as u64)
    })
    .await;
    let d2 = b2.download(hex(&id)).unwrap();
    let (got1, got2) = futures::join!(JsFuture::from(d1.done()), JsFuture::from(d2.done()));
    assert_eq!(file_bytes(got1.expect("first tab's download")).await, data);
    assert_eq!(file_bytes(got2.expect("second tab's download")).await, data);
    let piece_files = b2.stored_piece_files_for_testing(&id).await.unwrap();
    assert!(
        piece_files > 0,
        "the second tab wrote into the first one's open file"
    );
    b1.leave();
    b2.leave();
    drop((b1, b2));
    stored_once_complete_then_delete(&store, &id).await;
    a.leave();
}

#[wasm_bindgen_test]
async fn a_stopped_download_lets_another_swarm_on_its_store_write_into_its_file() {
    // The first tab stops its download halfway; its worker lets go of the file's `data` (and
    // serving the pieces it has does not take it back), so the second tab writes into `data`
    // too: no piece files. Then the first tab finishes from what both wrote.
    let room = tag("stopped");
    let a = join(&room, &tag("a")).await;
    let (b1, b2, store, data, id) = two_tabs_and_a_file(&a, &room).await;
    let mut events = b1.events();
    let d1 = b1.download(hex(&id)).unwrap();
    wait_event(&mut events, 20.0, |e| {
        matches!(e, Event::Transfer(TransferEvent::Progress(f, have, _)) if *f == id && *have >= 2 * MIB as u64)
    })
    .await;
    d1.cancel();
    let d2 = b2.download(hex(&id)).unwrap();
    let got = JsFuture::from(d2.done())
        .await
        .expect("second tab's download");
    assert_eq!(file_bytes(got).await, data);
    assert_eq!(
        b2.stored_piece_files_for_testing(&id).await.unwrap(),
        0,
        "the stopped download kept its file, so the second tab wrote piece files"
    );
    let d1 = b1.download(hex(&id)).unwrap();
    let got = JsFuture::from(d1.done())
        .await
        .expect("first tab's download");
    assert_eq!(file_bytes(got).await, data);
    b1.leave();
    b2.leave();
    drop((b1, b2));
    stored_once_complete_then_delete(&store, &id).await;
    a.leave();
}

/// Lists `probe`'s store (which removes spare piece files) until file `id` has none left.
async fn spare_piece_files_removed(probe: &Swarm, id: &FileId) {
    let start = js_sys::Date::now();
    loop {
        probe.stored_files().await.unwrap();
        let left = probe.stored_piece_files_for_testing(id).await.unwrap();
        if left == 0 {
            return;
        }
        assert!(
            js_sys::Date::now() - start < 10_000.0,
            "{left} spare piece files still there"
        );
        sleep(100).await;
    }
}

#[wasm_bindgen_test]
async fn piece_files_that_data_also_holds_go_once_no_tab_has_a_file_of_them() {
    // `b2` writes its pieces as piece files (the page's fallback) and finishes first: its
    // `File` is made of them. `b1`, on the same store, then writes the whole file into `data`.
    // The piece files are spare from then on, but another tab opening the store leaves them
    // while `b2`'s `File` holds them; once `b2` is gone, listing the store removes them.
    let room = tag("spare");
    let store = tag("spare-store");
    let a = join(&room, &tag("a")).await;
    swarmdrop::web::store::page_writes_for_testing(true);
    let b2 = join(&room, &store).await;
    swarmdrop::web::store::page_writes_for_testing(false);
    let b1 = join(&room, &store).await;
    until("connected", 20.0, || {
        connected(&a) == 2 && connected(&b1) == 2 && connected(&b2) == 2
    })
    .await;
    let data = random_bytes(4 * MIB);
    let id = share(&a, &file_of(&data, "spare.bin")).await;
    until("announced", 10.0, || knows(&b1, &id) && knows(&b2, &id)).await;
    let got2 = JsFuture::from(b2.download(hex(&id)).unwrap().done())
        .await
        .expect("page-written download");
    let piece_files = b2.stored_piece_files_for_testing(&id).await.unwrap();
    assert!(piece_files > 0, "the page wrote no piece files");
    let got1 = JsFuture::from(b1.download(hex(&id)).unwrap().done())
        .await
        .expect("worker-written download");
    assert_eq!(file_bytes(got1).await, data);

    let probe = join(&tag("elsewhere"), &store).await;
    probe.stored_files().await.unwrap();
    assert_eq!(
        probe.stored_piece_files_for_testing(&id).await.unwrap(),
        piece_files,
        "piece files a tab's File holds were removed"
    );
    assert_eq!(file_bytes(got2).await, data);

    b2.leave();
    drop(b2);
    spare_piece_files_removed(&probe, &id).await;
    listed_once_complete_then_delete(&probe, &id).await;
    for s in [a, b1, probe] {
        s.leave();
    }
}

#[wasm_bindgen_test]
async fn a_tab_serves_pieces_from_data_once_their_piece_files_were_removed() {
    // `b1` writes the whole file into `data`; then `b2`, on the same store, stops its download
    // halfway with its pieces in piece files (the page's fallback), and a listing of the store
    // removes them as spare. `b2` still has those pieces (and has served none yet, so none is
    // cached): it serves them from `data`.
    let room = tag("moved");
    let store = tag("moved-store");
    let a = join_capped(&room, 2e6).await;
    let b1 = join(&room, &store).await;
    swarmdrop::web::store::page_writes_for_testing(true);
    let b2 = join(&room, &store).await;
    swarmdrop::web::store::page_writes_for_testing(false);
    until("connected", 20.0, || {
        connected(&a) == 2 && connected(&b1) == 2 && connected(&b2) == 2
    })
    .await;
    let data = random_bytes(4 * MIB);
    let id = share(&a, &file_of(&data, "moved.bin")).await;
    until("announced", 10.0, || knows(&b1, &id) && knows(&b2, &id)).await;
    let got1 = JsFuture::from(b1.download(hex(&id)).unwrap().done())
        .await
        .expect("worker-written download");
    assert_eq!(file_bytes(got1).await, data);
    // Gone before `b2` downloads: `b2` then fetches from `a` alone, at 2 MB/s, and is stopped
    // halfway (with `b1` serving too, it could finish first, and its finished `File` of piece
    // files would rightly keep them).
    b1.leave();
    drop(b1);
    let mut events = b2.events();
    let d2 = b2.download(hex(&id)).unwrap();
    wait_event(&mut events, 20.0, |e| {
        matches!(e, Event::Transfer(TransferEvent::Progress(f, have, _)) if *f == id && *have >= MIB as u64)
    })
    .await;
    d2.cancel();
    assert!(b2.stored_piece_files_for_testing(&id).await.unwrap() > 0);
    let complete = |f: &JsValue| js_sys::Reflect::get(f, &"complete".into()).unwrap();
    assert!(
        !b2.files().iter().any(|f| complete(&f).is_truthy()),
        "b2 finished before it was stopped"
    );
    let probe = join(&tag("elsewhere"), &store).await;
    spare_piece_files_removed(&probe, &id).await;
    probe.leave();
    drop(probe);

    let c = join(&room, &tag("c")).await;
    until("c connected", 20.0, || connected(&c) == 2).await;
    until("announced to c", 10.0, || knows(&c, &id)).await;
    let got = JsFuture::from(c.download(hex(&id)).unwrap().done())
        .await
        .expect("c's download");
    assert_eq!(file_bytes(got).await, data);
    let from_b2 = c
        .received_from(&id)
        .get(&peer_id(&b2))
        .copied()
        .unwrap_or(0);
    assert!(from_b2 > 0, "b2 served nothing");
    b2.delete_stored(hex(&id)).await.unwrap();
    for s in [a, b2, c] {
        s.leave();
    }
}

/// The TypeScript types of the API's objects, as `swarmdrop.d.ts` gets them.
const TYPES: &str = include_str!("../src/web/types.d.ts");

/// The field names of interface `name` in [`TYPES`] (one field per line), or of one of its
/// properties' object types (`name` = `"SwarmEvents.peer-left"`).
fn fields_of(name: &str) -> Vec<String> {
    let (interface, member) = name.split_once('.').unwrap_or((name, ""));
    let Some(start) = TYPES.find(&format!("export interface {interface} {{")) else {
        return Vec::new();
    };
    let body = &TYPES[start..];
    let body = &body[body.find('{').map_or(0, |i| i + 1)..body.find("\n}").unwrap_or(0)];
    let field = |line: &str| {
        let name = line.split(':').next()?.trim().trim_end_matches('?');
        Some(name.trim_matches('"').to_string())
    };
    let lines = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("/**") && !l.starts_with('*'));
    if member.is_empty() {
        return lines.filter_map(field).collect();
    }
    // `"member": { a: string; b: number };`
    lines
        .filter(|l| field(l).as_deref() == Some(member))
        .filter_map(|l| {
            let inner = &l[l.find('{')? + 1..l.rfind('}')?];
            Some(
                inner
                    .split(';')
                    .filter_map(field)
                    .filter(|f| !f.is_empty())
                    .collect(),
            )
        })
        .next()
        .unwrap_or_default()
}

/// Holds one of the API's objects to its TypeScript type (`swarmdrop.d.ts`): the same fields.
fn assert_fields(ty: &str, obj: &JsValue) {
    let mut got: Vec<String> = js_sys::Object::keys(obj.unchecked_ref::<js_sys::Object>())
        .iter()
        .filter_map(|k| k.as_string())
        .collect();
    let mut want = fields_of(ty);
    assert!(!want.is_empty(), "no TypeScript type {ty}");
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "{ty}: the object's fields against its TypeScript type"
    );
}

#[wasm_bindgen_test]
async fn the_api_objects_have_the_fields_their_typescript_types_name() {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    use wasm_bindgen::closure::Closure;

    let room = tag("types");
    let a = join(&room, &tag("ta")).await;
    // Every event's first detail, on either swarm.
    let seen: Rc<RefCell<HashMap<String, JsValue>>> = Rc::default();
    let mut listeners = Vec::new();
    // Every event `on` takes, and every one the types name.
    let events = swarmdrop::web::EVENTS;
    let mut typed = fields_of("SwarmEvents");
    let mut known: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    typed.sort();
    known.sort();
    assert_eq!(typed, known, "the events against SwarmEvents");
    let listen = |s: &Swarm, listeners: &mut Vec<Closure<dyn FnMut(JsValue)>>| {
        for ev in events {
            let seen = Rc::clone(&seen);
            let f = Closure::<dyn FnMut(JsValue)>::new(move |detail: JsValue| {
                seen.borrow_mut().entry(ev.to_string()).or_insert(detail);
            });
            s.on(
                ev.into(),
                f.as_ref().unchecked_ref::<js_sys::Function>().clone(),
            )
            .map_err(JsValue::from)
            .unwrap();
            listeners.push(f);
        }
    };
    listen(&a, &mut listeners);
    let b = Swarm::join_with_storage(SIGNAL.unwrap(), &room, &tag("tb"))
        .await
        .unwrap();
    listen(&b, &mut listeners);
    until("connected", 20.0, || {
        connected(&a) == 1 && connected(&b) == 1
    })
    .await;
    b.send(a.id().unwrap(), JsValue::from_str("hi"))
        .await
        .map_err(JsValue::from)
        .unwrap();

    let data = random_bytes(2 * MIB);
    let shared = a.share(file_of(&data, "typed.bin"), None).await.unwrap();
    assert_fields("SharedFile", &shared);
    let id = id_of(&shared);
    until("announced", 10.0, || knows(&b, &id)).await;
    let dl = b.download(hex(&id)).unwrap();
    let progress: Rc<RefCell<Option<JsValue>>> = Rc::default();
    let on_progress = {
        let progress = Rc::clone(&progress);
        Closure::<dyn FnMut(JsValue)>::new(move |p: JsValue| {
            progress.borrow_mut().get_or_insert(p);
        })
    };
    dl.on(
        "progress".into(),
        on_progress
            .as_ref()
            .unchecked_ref::<js_sys::Function>()
            .clone(),
    )
    .map_err(JsValue::from)
    .unwrap();
    JsFuture::from(dl.done()).await.expect("the download");
    assert_fields(
        "Progress",
        progress.borrow().as_ref().expect("a progress event"),
    );
    assert_fields("FileInfo", &b.files().get(0));
    let stored = b.stored_files().await.map_err(JsValue::from).unwrap();
    assert_fields("StoredFile", &stored.get(0));
    assert_fields("PeerInfo", &b.peers().get(0));
    assert_fields("ConnectionInfo", &b.connections().get(0));

    // A peer sending corrupt pieces is an "error"; a file no one has any more, "file-removed".
    a.corrupt_uploads_for_testing(true);
    let bad = share(&a, &file_of(&random_bytes(MIB), "bad.bin")).await;
    until("announced", 10.0, || knows(&b, &bad)).await;
    let _bad = b.download(hex(&bad)).unwrap();
    until("an error event", 20.0, || {
        seen.borrow().contains_key("error")
    })
    .await;
    a.unshare(hex(&bad)).unwrap();
    until("file-removed", 10.0, || {
        seen.borrow().contains_key("file-removed")
    })
    .await;
    b.delete_stored(hex(&id)).await.unwrap();
    a.leave();
    until("peer-left", 10.0, || {
        seen.borrow().contains_key("peer-left")
    })
    .await;
    for ev in events {
        let detail = seen.borrow().get(ev).cloned();
        let detail = detail.unwrap_or_else(|| panic!("no {ev} event"));
        assert_fields(&format!("SwarmEvents.{ev}"), &detail);
    }
    b.leave();
}
