//! The file engine in a simulated swarm: links with latency and bandwidth, in-memory stores,
//! a fake clock.

use super::*;
use crate::signal::PeerId;
use crate::swarm::Time;
use proptest::prelude::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn pid(i: usize) -> PeerId {
    PeerId::new(format!("peer{i}")).unwrap()
}

/// Deterministic pseudo-random file content.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = crate::swarm::Rng::new(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn manifest_of(name: &str, data: &[u8]) -> Manifest {
    let mut b = ManifestBuilder::new(name, data.len() as u64, "application/octet-stream");
    for chunk in data.chunks(100_000) {
        b.update(chunk);
    }
    b.finish().unwrap()
}

struct Node {
    engine: Engine,
    /// Stored pieces: (file, piece) → bytes.
    store: HashMap<(FileId, u32), Vec<u8>>,
    events: Vec<TransferEvent>,
    /// Pieces it read to serve, in order (one entry per block read).
    served: Vec<u32>,
    /// Flip a byte in every block it serves.
    corrupt: bool,
    /// Where set, pieces to store wait here (for the test to store or fail them), as
    /// they do in a browser while its storage works.
    held: Option<Vec<(FileId, u32, Vec<u8>)>>,
    /// Pieces it was asked to store, in order (one entry per `Output::Store`).
    stored: Vec<u32>,
    /// Where set, its sends are not reported (`Input::Sent`) but wait here, as they do in a
    /// browser while a channel is full.
    unsent: Option<Vec<(PeerId, usize)>>,
    /// `Reject Busy` frames it sent.
    busy_sent: usize,
    up: bool,
    /// Counts its leaves: a frame sent before one is not delivered after (a closed channel's
    /// messages never arrive on the next).
    epoch: u64,
    /// Where set, its next store fails (quota, I/O) and this is cleared.
    fail_store: bool,
    /// Its next this many block reads fail (a shared file changed on disk).
    fail_reads: usize,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Time,
    seq: u64,
    from: usize,
    to: usize,
    /// The sender's and the receiver's epochs when it was sent.
    epochs: (u64, u64),
    bytes: Vec<u8>,
}

/// The largest frame a Chromium data channel carries (256 KiB messages, one byte of tag).
const CHROMIUM_FRAME: usize = 256 * 1024 - 1;

struct Sim {
    nodes: Vec<Node>,
    /// The largest frame each node accepts (its channels' maxMessageSize); a larger one
    /// fails the test.
    accepts: Vec<usize>,
    /// (from, to) → (latency, bytes per second, time the link is busy until).
    links: HashMap<(usize, usize), (Duration, f64, Time)>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    now: Time,
}

impl Sim {
    fn new(n: usize) -> Sim {
        Sim::accepting(&vec![CHROMIUM_FRAME; n])
    }

    /// A swarm of `accepts.len()` nodes, node `i` taking frames up to `accepts[i]` bytes.
    fn accepting(accepts: &[usize]) -> Sim {
        let n = accepts.len();
        let nodes = (0..n)
            .map(|i| Node {
                engine: Engine::new(Config {
                    seed: 7 + i as u64,
                    ..Config::default()
                }),
                store: HashMap::new(),
                events: Vec::new(),
                served: Vec::new(),
                corrupt: false,
                held: None,
                stored: Vec::new(),
                unsent: None,
                busy_sent: 0,
                up: true,
                epoch: 0,
                fail_store: false,
                fail_reads: 0,
            })
            .collect();
        let mut links = HashMap::new();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    // 5 ms, 20 MB/s
                    links.insert((a, b), (5 * MS, 20e6, Duration::ZERO));
                }
            }
        }
        let mut sim = Sim {
            nodes,
            accepts: accepts.to_vec(),
            links,
            queue: BinaryHeap::new(),
            seq: 0,
            now: Duration::ZERO,
        };
        for a in 0..n {
            for (b, &takes) in accepts.iter().enumerate() {
                if a != b {
                    sim.nodes[a]
                        .engine
                        .handle(Input::PeerUp(pid(b), takes), Duration::ZERO);
                }
            }
        }
        sim
    }

    fn slow_link(&mut self, from: usize, to: usize, latency: Duration, rate: f64) {
        self.links
            .insert((from, to), (latency, rate, Duration::ZERO));
    }

    fn share(&mut self, i: usize, data: &[u8], m: &Manifest) {
        let id = m.id();
        for p in 0..m.pieces() {
            let start = p as usize * m.piece_size as usize;
            let end = (start + m.piece_len(p) as usize).min(data.len());
            self.nodes[i]
                .store
                .insert((id, p), data[start..end].to_vec());
        }
        self.nodes[i]
            .engine
            .handle(Input::Share(m.clone()), self.now);
    }

    fn input(&mut self, i: usize, input: Input) {
        self.nodes[i].engine.handle(input, self.now);
    }

    /// Drains every node's outputs, acting like a browser driver with an in-memory store.
    fn drain(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].engine.poll_output() {
                    moved = true;
                    match out {
                        Output::Send(to_id, bytes) => {
                            if bytes.len() <= wire::PACK_SMALL
                                && matches!(
                                    Frame::decode(&bytes),
                                    Ok(Frame::Reject {
                                        reason: RejectReason::Busy,
                                        ..
                                    })
                                )
                            {
                                self.nodes[i].busy_sent += 1;
                            }
                            // Handed to the channel at once (the links model its rate).
                            let report = (to_id.clone(), bytes.len());
                            match &mut self.nodes[i].unsent {
                                Some(unsent) => unsent.push(report),
                                None => self.nodes[i]
                                    .engine
                                    .handle(Input::Sent(report.0, report.1), self.now),
                            }
                            let to: usize = to_id.as_str()[4..].parse().unwrap();
                            assert!(
                                bytes.len() <= self.accepts[to],
                                "node {i} sent a {}-byte frame to node {to}, which takes {}",
                                bytes.len(),
                                self.accepts[to]
                            );
                            if !self.nodes[to].up || !self.nodes[i].up {
                                continue;
                            }
                            let (lat, rate, busy) = self.links[&(i, to)];
                            let start = busy.max(self.now);
                            let done = start + Duration::from_secs_f64(bytes.len() as f64 / rate);
                            self.links.get_mut(&(i, to)).unwrap().2 = done;
                            self.seq += 1;
                            self.queue.push(Reverse(InFlight {
                                at: done + lat,
                                seq: self.seq,
                                from: i,
                                to,
                                epochs: (self.nodes[i].epoch, self.nodes[to].epoch),
                                bytes,
                            }));
                        }
                        Output::Hash(id, piece, data) => {
                            use sha2::Digest;
                            let digest = sha2::Sha256::digest(&data).into();
                            self.nodes[i]
                                .engine
                                .handle(Input::Hashed(id, piece, data, digest), self.now);
                        }
                        Output::Store(id, piece, data) => {
                            let node = &mut self.nodes[i];
                            node.stored.push(piece);
                            if std::mem::take(&mut node.fail_store) {
                                let full = "the store is full".to_string();
                                node.engine
                                    .handle(Input::StoreFailed(id, piece, full), self.now);
                                continue;
                            }
                            if let Some(held) = &mut node.held {
                                held.push((id, piece, data));
                                continue;
                            }
                            node.store.insert((id, piece), data);
                            node.engine.handle(Input::Stored(id, piece), self.now);
                        }
                        Output::Read(peer, id, block) => {
                            if self.nodes[i].fail_reads > 0 {
                                self.nodes[i].fail_reads -= 1;
                                let failed = Input::ReadFailed(peer, id, block);
                                self.nodes[i].engine.handle(failed, self.now);
                                continue;
                            }
                            self.nodes[i].served.push(block.piece);
                            let piece = &self.nodes[i].store[&(id, block.piece)];
                            let mut data = piece
                                [block.offset as usize..(block.offset + block.len) as usize]
                                .to_vec();
                            if self.nodes[i].corrupt {
                                data[0] ^= 0xff;
                            }
                            self.nodes[i]
                                .engine
                                .handle(Input::BlockRead(peer, id, block, data), self.now);
                        }
                        Output::Event(e) => self.nodes[i].events.push(e),
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Lets announcements and answers arrive.
    fn settle(&mut self) {
        self.run_until(Duration::from_millis(200), |_| false);
    }

    /// Runs until `done` or `limit` of simulated time passes.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.drain();
            if done(self) {
                return true;
            }
            let next_msg = self.queue.peek().map(|Reverse(m)| m.at);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.engine.poll_timeout())
                .min();
            let Some(t) = [next_msg, next_timer].into_iter().flatten().min() else {
                return false;
            };
            if t > end {
                self.now = end;
                return false;
            }
            self.now = self.now.max(t);
            while self.queue.peek().is_some_and(|Reverse(m)| m.at <= self.now) {
                let Reverse(m) = self.queue.pop().unwrap();
                let (to, from) = (&self.nodes[m.to], &self.nodes[m.from]);
                if to.up && from.up && (from.epoch, to.epoch) == m.epochs {
                    self.nodes[m.to]
                        .engine
                        .handle(Input::Frame(pid(m.from), m.bytes), self.now);
                }
            }
            for n in &mut self.nodes {
                if n.up {
                    n.engine.handle_timeout(self.now);
                }
            }
        }
    }

    fn complete(&self, i: usize, id: &FileId) -> bool {
        self.nodes[i].engine.have(id).is_some_and(|h| h.complete())
    }

    fn assembled(&self, i: usize, m: &Manifest) -> Vec<u8> {
        let id = m.id();
        (0..m.pieces())
            .flat_map(|p| self.nodes[i].store[&(id, p)].clone())
            .collect()
    }

    /// Node `i` leaves: everyone sees its channel close.
    fn leave(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].epoch += 1;
        for j in 0..self.nodes.len() {
            if j != i && self.nodes[j].up {
                self.nodes[j]
                    .engine
                    .handle(Input::PeerDown(pid(i)), self.now);
            }
        }
    }
}

fn announced(sim: &Sim, i: usize, id: &FileId) -> bool {
    sim.nodes[i].engine.files().iter().any(|f| f.id == *id)
}

#[test]
fn multi_source_download_from_three_seeders() {
    let data = content(6 * 1024 * 1024 + 12345, 1);
    let m = manifest_of("movie.bin", &data);
    let id = m.id();
    let mut sim = Sim::new(4);
    for s in 0..3 {
        sim.share(s, &data, &m);
    }
    sim.settle();
    assert!(announced(&sim, 3, &id));
    let info = &sim.nodes[3].engine.files()[0];
    assert_eq!(
        (info.name.as_str(), info.size, info.sources),
        ("movie.bin", data.len() as u64, 3)
    );
    sim.input(3, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(3, &id)));
    assert_eq!(sim.assembled(3, &m), data, "all bytes equal");
    let from = sim.nodes[3].engine.received_from(&id);
    for s in 0..3 {
        assert!(
            from.get(&pid(s)).copied().unwrap_or(0) > 0,
            "seeder {s} contributed: {from:?}"
        );
    }
    assert!(sim.nodes[3].events.contains(&TransferEvent::Complete(id)));
    // Progress reports end at the full size.
    assert!(sim.nodes[3].events.contains(&TransferEvent::Progress(
        id,
        data.len() as u64,
        data.len() as u64
    )));
}

/// The pieces `node` served, each once, in the order it first read them.
fn first_reads(sim: &Sim, node: usize) -> Vec<u32> {
    let mut seen = HashSet::new();
    sim.nodes[node]
        .served
        .iter()
        .copied()
        .filter(|p| seen.insert(*p))
        .collect()
}

/// How many of `order`'s pieces directly follow the one before them.
fn runs(order: &[u32]) -> usize {
    order.windows(2).filter(|w| w[1] == w[0] + 1).count()
}

/// Two nodes, node 0 sharing `len` bytes of content `seed` (announced to node 1).
fn shared_by_node_0(len: usize, seed: u64) -> (Vec<u8>, Manifest, Sim) {
    shared_by_node_0_of(2, len, seed)
}

/// The same with `n` nodes.
fn shared_by_node_0_of(n: usize, len: usize, seed: u64) -> (Vec<u8>, Manifest, Sim) {
    let data = content(len, seed);
    let m = manifest_of("f", &data);
    let mut sim = Sim::new(n);
    sim.share(0, &data, &m);
    sim.settle();
    (data, m, sim)
}

/// `seeders` peers share `data`, one more downloads it whole: the finished simulation.
fn seeded_download(seeders: usize, data: &[u8], m: &Manifest) -> Sim {
    let id = m.id();
    let mut sim = Sim::new(seeders + 1);
    for s in 0..seeders {
        sim.share(s, data, m);
    }
    sim.settle();
    sim.input(seeders, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(seeders, &id)));
    assert_eq!(sim.assembled(seeders, m), data);
    sim
}

#[test]
fn each_seeder_is_asked_for_pieces_in_runs() {
    // After the random first pieces, a peer is asked for the piece after the last one it was
    // asked for while that one is among the rarest: one seeder is read almost in order …
    let data = content(48 * 1024 * 1024, 9);
    let m = manifest_of("runs.bin", &data);
    let order = first_reads(&seeded_download(1, &data, &m), 0);
    assert_eq!(order.len(), 48);
    // Each of the random first pieces splits the rest into one more run, at most.
    let random_first = Config::default().random_first as usize;
    let breaks = order.len() - 1 - runs(&order);
    assert!(
        breaks <= 2 * (random_first + 1),
        "one seeder's reads, {breaks} breaks: {order:?}"
    );
    // … and with three seeders, each still sees runs (not every third piece), while the
    // download takes pieces from all of them.
    let sim = seeded_download(3, &data, &m);
    for s in 0..3 {
        let order = first_reads(&sim, s);
        assert!(
            order.len() >= 4 && runs(&order) * 2 >= order.len(),
            "seeder {s}'s reads: {order:?}"
        );
    }
}

#[test]
fn the_only_full_seeder_leaves_and_partial_peers_finish() {
    let data = content(8 * 1024 * 1024, 2);
    let m = manifest_of("big.bin", &data);
    let id = m.id();
    let mut sim = Sim::new(4);
    sim.share(0, &data, &m);
    sim.settle();
    for d in 1..4 {
        sim.input(d, Input::Download(id));
    }
    // The seeder leaves as soon as the downloaders together hold every piece, none complete.
    let covered = sim.run_until(Duration::from_secs(30), |s| {
        (0..m.pieces())
            .all(|p| (1..4).any(|d| s.nodes[d].engine.have(&id).is_some_and(|h| h.get(p))))
    });
    assert!(covered);
    assert!(
        (1..4).all(|d| !sim.complete(d, &id)),
        "someone finished before the seeder left"
    );
    sim.leave(0);
    assert!(sim.run_until(Duration::from_secs(60), |s| (1..4)
        .all(|d| s.complete(d, &id))));
    for d in 1..4 {
        assert_eq!(sim.assembled(d, &m), data);
        let from = sim.nodes[d].engine.received_from(&id);
        let from_partial: u64 = (1..4)
            .filter(|&p| p != d)
            .map(|p| from.get(&pid(p)).copied().unwrap_or(0))
            .sum();
        assert!(from_partial > 0, "peer {d} fetched from other downloaders");
    }
}

#[test]
fn blocks_fit_each_channels_message_limit() {
    // Node 1 takes messages of 64 KiB at most (the spec's default when the SDP names none),
    // node 2 only 20 KiB: seeders send them each block in parts that fit, and the manifest too.
    let data = content(3 * 1024 * 1024 + 777, 11);
    let m = manifest_of("small-messages.bin", &data);
    let id = m.id();
    let mut sim = Sim::accepting(&[CHROMIUM_FRAME, 64 * 1024 - 1, 20 * 1024, CHROMIUM_FRAME]);
    sim.share(0, &data, &m);
    sim.share(3, &data, &m);
    sim.settle();
    sim.input(1, Input::Download(id));
    sim.input(2, Input::Download(id));
    assert!(
        sim.run_until(Duration::from_secs(60), |s| s.complete(1, &id)
            && s.complete(2, &id))
    );
    assert_eq!(sim.assembled(1, &m), data);
    assert_eq!(sim.assembled(2, &m), data);
    // Node 1 serves node 2 in parts too (every frame was checked against its receiver's limit).
    assert!(sim.nodes[2]
        .events
        .iter()
        .all(|e| !matches!(e, TransferEvent::PeerBanned(..))));
}

#[test]
fn a_peer_whose_parts_do_not_add_up_is_banned() {
    // A peer that sends a block's first part twice (claiming the whole block) leaves a hole:
    // the piece fails its hash and that peer is banned; the download completes elsewhere.
    let data = content(2 * 1024 * 1024, 12);
    let m = manifest_of("f", &data);
    let id = m.id();
    let mut sim = Sim::accepting(&[CHROMIUM_FRAME, CHROMIUM_FRAME, 40 * 1024]);
    sim.share(0, &data, &m);
    sim.settle();
    sim.input(2, Input::Download(id));
    // Run until node 0 has sent some blocks; then replay the first part of a block as if it
    // were the second.
    let mut forged = None;
    for _ in 0..200 {
        sim.drain();
        if let Some(Reverse(f)) = sim
            .queue
            .iter()
            .find(|Reverse(f)| f.from == 0 && f.to == 2 && f.bytes.get(1) == Some(&9))
        {
            forged = Some(f.bytes.clone());
            break;
        }
        sim.run_until(Duration::from_millis(1), |_| false);
    }
    let first = forged.expect("node 0 sent a block part");
    let Frame::Block {
        piece,
        offset,
        data: part,
        ..
    } = Frame::decode(&first).unwrap()
    else {
        panic!("a block frame");
    };
    let second = Frame::Block {
        id,
        piece,
        offset: offset + part.len() as u32,
        data: part.clone(),
    };
    // Sent by node 0's id, so node 0 is to blame, as its parts were.
    sim.input(2, Input::Frame(pid(0), second.encode()));
    sim.share(1, &data, &m);
    sim.nodes[2]
        .engine
        .handle(Input::PeerUp(pid(1), CHROMIUM_FRAME), sim.now);
    sim.nodes[1]
        .engine
        .handle(Input::PeerUp(pid(2), 40 * 1024), sim.now);
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(2, &id)));
    assert_eq!(sim.assembled(2, &m), data);
    assert!(sim.nodes[2].events.iter().any(|e| matches!(e,
        TransferEvent::PeerBanned(p, r) if *p == pid(0) && r.contains("SHA-256"))));
}

#[test]
fn a_corrupting_peer_is_banned_and_the_download_completes() {
    let data = content(4 * 1024 * 1024, 3);
    let m = manifest_of("f", &data);
    let id = m.id();
    let mut sim = Sim::new(3);
    sim.share(0, &data, &m);
    sim.share(1, &data, &m);
    sim.nodes[1].corrupt = true;
    sim.settle();
    sim.input(2, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(2, &id)));
    assert_eq!(sim.assembled(2, &m), data);
    assert!(sim.nodes[2].events.iter().any(|e| matches!(e,
        TransferEvent::PeerBanned(p, r) if *p == pid(1) && r.contains("SHA-256"))));
}

#[test]
fn a_slow_peer_does_not_hold_the_download_back() {
    let data = content(4 * 1024 * 1024, 4);
    let m = manifest_of("f", &data);
    let id = m.id();
    let mut sim = Sim::new(3);
    sim.share(0, &data, &m);
    sim.share(1, &data, &m);
    // Peer 1 answers after 30 s: longer than the request timeout.
    sim.slow_link(1, 2, Duration::from_secs(30), 20e6);
    sim.settle();
    sim.input(2, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(25), |s| s.complete(2, &id)));
    assert_eq!(sim.assembled(2, &m), data);
}

#[test]
fn endgame_finishes_with_duplicates_cancelled() {
    // Two seeders, one a little slower: the last blocks are asked of both.
    let data = content(3 * 1024 * 1024, 5);
    let m = manifest_of("f", &data);
    let id = m.id();
    let mut sim = Sim::new(3);
    sim.share(0, &data, &m);
    sim.share(1, &data, &m);
    sim.slow_link(1, 2, 40 * MS, 5e6);
    sim.settle();
    sim.input(2, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(2, &id)));
    assert_eq!(sim.assembled(2, &m), data);
    // Nothing left in flight once complete.
    sim.run_until(Duration::from_secs(1), |_| false);
    assert_eq!(sim.nodes[2].engine.poll_timeout(), None);
}

#[test]
fn resume_fetches_only_missing_pieces() {
    let data = content(8 * 1024 * 1024, 6);
    let m = manifest_of("f", &data);
    let id = m.id();
    let mut sim = Sim::new(2);
    sim.share(0, &data, &m);
    // Node 1 already holds pieces 0..4 from an earlier session.
    let mut have = Bitfield::new(m.pieces());
    for p in 0..4 {
        have.set(p);
        let start = p as usize * m.piece_size as usize;
        sim.nodes[1]
            .store
            .insert((id, p), data[start..start + m.piece_size as usize].to_vec());
    }
    sim.settle();
    sim.input(1, Input::Resume(m.clone(), have));
    assert!(sim.run_until(Duration::from_secs(10), |s| s.complete(1, &id)));
    assert_eq!(sim.assembled(1, &m), data);
    let fetched = sim.nodes[1].engine.received_from(&id)[&pid(0)];
    assert_eq!(fetched, (m.pieces() as u64 - 4) * u64::from(m.piece_size));
}

#[test]
fn storage_slower_than_the_network_holds_requests_back_not_memory() {
    let (data, m, mut sim) = shared_by_node_0(48 * 1024 * 1024, 17);
    let id = m.id();
    // Node 1's storage takes nothing (yet): verified pieces wait for it in memory.
    sim.nodes[1].held = Some(Vec::new());
    sim.input(1, Input::Download(id));
    sim.run_until(Duration::from_secs(30), |_| false);
    let bound = Config::default().max_held;
    let fetched = sim.nodes[1].engine.received_from(&id)[&pid(0)];
    let waiting = sim.nodes[1].held.as_ref().unwrap().len() as u64;
    assert_eq!(
        fetched, bound,
        "fetched up to the bound and no further while the storage lags"
    );
    assert_eq!(waiting * u64::from(m.piece_size), bound, "all verified");
    assert!(!sim.nodes[1].engine.files()[0].complete);
    // The storage catches up, piece by piece: the download goes on and completes.
    let mut rounds = 0;
    while !sim.complete(1, &id) {
        rounds += 1;
        assert!(rounds < 100, "the download did not go on");
        let held = std::mem::take(sim.nodes[1].held.as_mut().unwrap());
        for (id, piece, bytes) in held {
            sim.nodes[1].store.insert((id, piece), bytes);
            sim.input(1, Input::Stored(id, piece));
        }
        sim.run_until(Duration::from_millis(500), |_| false);
        let received = sim.nodes[1].engine.received_from(&id)[&pid(0)];
        let stored = sim.nodes[1].store.len() as u64 * u64::from(m.piece_size);
        assert!(received <= stored + bound, "held more than the bound");
    }
    assert_eq!(sim.assembled(1, &m), data);
}

#[test]
fn downloads_at_once_share_one_memory_bound() {
    // Three files downloaded at once while node 1's storage takes nothing: together they hold
    // the bound (each at least one piece), not the bound each.
    let mut sim = Sim::new(2);
    let files: Vec<(Vec<u8>, Manifest)> = (0..3)
        .map(|i| {
            let data = content(24 * 1024 * 1024, 30 + i);
            let m = manifest_of(&format!("f{i}"), &data);
            sim.share(0, &data, &m);
            (data, m)
        })
        .collect();
    sim.settle();
    sim.nodes[1].held = Some(Vec::new());
    for (_, m) in &files {
        sim.input(1, Input::Download(m.id()));
    }
    sim.run_until(Duration::from_secs(30), |_| false);
    let bound = Config::default().max_held;
    let piece = u64::from(files[0].1.piece_size);
    let fetched: Vec<u64> = files
        .iter()
        .map(|(_, m)| {
            let from = sim.nodes[1].engine.received_from(&m.id());
            from.get(&pid(0)).copied().unwrap_or(0)
        })
        .collect();
    let total: u64 = fetched.iter().sum();
    assert!(
        total <= bound + 2 * piece,
        "fetched {fetched:?} ({total} bytes) while the storage took nothing: more than the bound ({bound})"
    );
    assert!(
        fetched.iter().all(|&f| f >= piece),
        "each download got a piece: {fetched:?}"
    );
    // The storage catches up: all three complete.
    let mut rounds = 0;
    while !files.iter().all(|(_, m)| sim.complete(1, &m.id())) {
        rounds += 1;
        assert!(rounds < 200, "the downloads did not go on");
        let held = std::mem::take(sim.nodes[1].held.as_mut().unwrap());
        for (id, piece, bytes) in held {
            sim.nodes[1].store.insert((id, piece), bytes);
            sim.input(1, Input::Stored(id, piece));
        }
        sim.run_until(Duration::from_millis(500), |_| false);
    }
    for (data, m) in &files {
        assert_eq!(&sim.assembled(1, m), data);
    }
}

#[test]
fn downloads_finish_in_the_order_they_were_asked_for() {
    // Three files from one seeder whose link is the bottleneck, asked for in an order that is
    // not their ids' (the engine's own order): they complete in the order asked, each well
    // before the next, instead of all at the end.
    let mut sim = Sim::new(2);
    let mut files: Vec<Manifest> = (0..3)
        .map(|i| {
            let data = content(6 * 1024 * 1024, 40 + i);
            let m = manifest_of(&format!("q{i}"), &data);
            sim.share(0, &data, &m);
            m
        })
        .collect();
    sim.slow_link(0, 1, 5 * MS, 10e6);
    sim.settle();
    files.sort_by_key(|m| std::cmp::Reverse(m.id()));
    for m in &files {
        sim.input(1, Input::Download(m.id()));
    }
    let mut done_at = Vec::new();
    for m in &files {
        let id = m.id();
        assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(1, &id)));
        done_at.push(sim.now);
    }
    assert!(
        files.iter().all(|m| sim.complete(1, &m.id())),
        "the later ones finished too"
    );
    // 6 MiB at 10 MB/s: ~0.63 s each. The first is done in well under two files' time.
    assert!(
        done_at[0] < Duration::from_millis(1000) + Duration::from_millis(200),
        "the first asked for finished at {:?}",
        done_at[0]
    );
    assert!(
        done_at[0] < done_at[1] && done_at[1] < done_at[2],
        "{done_at:?}"
    );
}

#[test]
fn a_peer_that_asks_for_everything_at_once_costs_its_source_bounded_memory() {
    let (_, m, mut sim) = shared_by_node_0(48 * 1024 * 1024, 18);
    let id = m.id();
    // Node 0's channel to node 1 takes nothing for now; node 1 asks for every block at once.
    sim.nodes[0].unsent = Some(Vec::new());
    let config = Config::default();
    let blocks: Vec<BlockRef> = (0..m.pieces())
        .flat_map(|piece| {
            let (m, blocks) = (&m, m.piece_len(piece).div_ceil(config.block));
            (0..blocks).map(move |b| super::engine::block_ref(m, piece, b, config.block))
        })
        .collect();
    assert!(blocks.len() > config.max_asked);
    let ask = |sim: &mut Sim, blocks: &[BlockRef]| {
        for &block in blocks {
            let request = Frame::Request { id, block }.encode();
            sim.input(0, Input::Frame(pid(1), request));
        }
        sim.drain();
    };
    ask(&mut sim, &blocks);
    // Read: as much as the send window holds; the rest of what it accepted waits.
    let window_blocks = (config.send_window / u64::from(config.block)) as usize;
    assert_eq!(sim.nodes[0].served.len(), window_blocks);
    // Beyond what a peer may have waiting with us: turned away (`Busy`, a small frame each).
    let small = |sim: &Sim| {
        let unsent = sim.nodes[0].unsent.as_ref().unwrap();
        unsent.iter().filter(|(_, len)| *len < 1024).count()
    };
    assert_eq!(small(&sim), blocks.len() - config.max_asked);
    // Asked again for blocks it has waiting: the one answer will do.
    let sends = sim.nodes[0].unsent.as_ref().unwrap().len();
    ask(&mut sim, &blocks[window_blocks..config.max_asked]);
    assert_eq!(sim.nodes[0].unsent.as_ref().unwrap().len(), sends);
    assert_eq!(sim.nodes[0].served.len(), window_blocks);
    // The channel takes what it was given: the accepted requests are all answered, once each.
    for (peer, len) in sim.nodes[0].unsent.take().unwrap() {
        sim.input(0, Input::Sent(peer, len));
    }
    sim.drain();
    let served = &sim.nodes[0].served;
    assert_eq!(served.len(), config.max_asked);
    let per_piece = (m.piece_size / config.block) as usize;
    for piece in 0..(config.max_asked / per_piece) as u32 {
        let reads = served.iter().filter(|&&p| p == piece).count();
        assert_eq!(reads, per_piece, "piece {piece} read {reads} times");
    }
}

#[test]
fn a_peer_that_answers_busy_is_left_alone_for_a_while_and_the_download_completes() {
    let data = content(8 * 1024 * 1024, 21);
    let m = manifest_of("busy", &data);
    let id = m.id();
    let mut sim = Sim::new(3);
    // Node 0 takes 4 waiting requests at most and serves 1 MB/s: the downloader's 32-deep
    // pipeline is more than it takes, so it answers `Busy`. Node 2 seeds without limits.
    let config = Config {
        max_asked: 4,
        seed: 7,
        ..Config::default()
    };
    let backoff = config.busy_backoff;
    sim.nodes[0].engine = Engine::new(config);
    for b in 1..3 {
        sim.input(0, Input::PeerUp(pid(b), CHROMIUM_FRAME));
    }
    sim.nodes[0]
        .engine
        .set_upload_limit(Some(1_000_000), Duration::ZERO);
    sim.share(0, &data, &m);
    sim.share(2, &data, &m);
    sim.slow_link(2, 1, 5 * MS, 4e6);
    sim.settle();
    let start = sim.now;
    sim.input(1, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(1, &id)));
    assert_eq!(sim.assembled(1, &m), data);
    let secs = (sim.now - start).as_secs_f64();
    let busy = sim.nodes[0].busy_sent;
    assert!(
        busy > 0,
        "node 0 never answered Busy: the test does not test it"
    );
    // One pipeline's worth of rejects per back-off at most, not one per round trip.
    let bound = (Config::default().pipeline as f64 * (secs / backoff.as_secs_f64() + 1.0)) as usize;
    assert!(
        busy <= bound,
        "node 0 answered Busy {busy} times in {secs:.2} s (at most {bound} expected)"
    );
    // Node 0 still served its share.
    let from = sim.nodes[1].engine.received_from(&id);
    assert!(from.get(&pid(0)).copied().unwrap_or(0) > 0);
}

#[test]
fn many_peers_asking_at_once_share_their_sources_budget_and_none_is_starved() {
    // Four peers each ask node 0 for a send window's worth of blocks while its channels take
    // nothing: it reads the budget for all of them together, not a window each. Then two
    // more ask: they are served at once (a share each), not after the first four's channels
    // drain.
    let (_, m, mut sim) = shared_by_node_0_of(7, 64 * 1024 * 1024, 19);
    let id = m.id();
    sim.nodes[0].unsent = Some(Vec::new());
    let config = Config::default();
    let block = u64::from(config.block);
    let per_peer = (config.send_window / block) as u32;
    let blocks_per_piece = m.piece_size / config.block;
    // Peer p asks for pieces of its own, so the reads say whom they served.
    let pieces_per_peer = per_peer / blocks_per_piece;
    let ask = |sim: &mut Sim, peer: u32| {
        for k in 0..per_peer {
            let n = (peer - 1) * per_peer + k;
            let block = super::engine::block_ref(
                &m,
                n / blocks_per_piece,
                n % blocks_per_piece,
                config.block,
            );
            let request = Frame::Request { id, block }.encode();
            sim.input(0, Input::Frame(pid(peer as usize), request));
        }
        sim.drain();
    };
    let reads_for = |sim: &Sim, peer: u32| {
        let pieces = (peer - 1) * pieces_per_peer..peer * pieces_per_peer;
        sim.nodes[0]
            .served
            .iter()
            .filter(|p| pieces.contains(p))
            .count() as u64
    };
    for peer in 1..=4 {
        ask(&mut sim, peer);
    }
    let budget_blocks = config.send_budget / block;
    let read: u64 = (1..=4).map(|p| reads_for(&sim, p)).sum();
    // (A block's frame is a few bytes more than the block: the last one may not fit.)
    assert!(
        (budget_blocks - 4..=budget_blocks).contains(&read),
        "four peers: a window each is the budget, {read} blocks read"
    );
    for peer in 5..=6 {
        ask(&mut sim, peer);
    }
    // Six peers share it: each of the late ones gets its share (at least) at once.
    let share = config.send_budget / 6;
    for peer in 5..=6 {
        let reads = reads_for(&sim, peer);
        assert!(
            reads * block >= share,
            "peer {peer} had {reads} blocks read while others' channels were full"
        );
    }
    // Within the bound the budget's docs give: the first four's windows (the budget), then a
    // share of five and a share of six for the two that came while those stayed full.
    let total = sim.nodes[0].served.len() as u64 * block;
    let bound = config.send_budget + config.send_budget / 5 + config.send_budget / 6 + 2 * block;
    assert!(
        total <= bound,
        "read {total} bytes for six peers (bound {bound})"
    );
    // The channels take what they were given: every request is answered, once.
    for _ in 0..20 {
        let Some(unsent) = sim.nodes[0].unsent.replace(Vec::new()) else {
            break;
        };
        for (peer, len) in unsent {
            sim.input(0, Input::Sent(peer, len));
        }
        sim.drain();
    }
    assert_eq!(sim.nodes[0].served.len(), 6 * per_peer as usize);
}

#[test]
fn a_peer_announcing_more_files_than_the_cap_is_ignored_past_it() {
    let mut sim = Sim::new(2);
    let config = Config {
        max_files_per_peer: 50,
        seed: 8,
        ..Config::default()
    };
    sim.nodes[1].engine = Engine::new(config);
    sim.input(1, Input::PeerUp(pid(0), CHROMIUM_FRAME));
    let announce = |sim: &mut Sim, n: u8| {
        let frame = Frame::Announce {
            id: [n; 32],
            name: format!("file {n}"),
            size: 1,
            mime: String::new(),
        };
        sim.input(1, Input::Frame(pid(0), frame.encode()));
    };
    for n in 0..60 {
        announce(&mut sim, n);
    }
    // Announced again: no second count.
    announce(&mut sim, 3);
    let known = |sim: &Sim| sim.nodes[1].engine.files().len();
    assert_eq!(known(&sim), 50, "known files from one peer");
    assert!(sim.nodes[1].engine.files().iter().all(|f| f.id[0] < 50));
    // It withdraws one: there is room for another.
    sim.input(
        1,
        Input::Frame(pid(0), Frame::Unannounce { id: [7; 32] }.encode()),
    );
    announce(&mut sim, 55);
    announce(&mut sim, 56);
    assert_eq!(known(&sim), 50);
    assert!(sim.nodes[1].engine.files().iter().any(|f| f.id[0] == 55));
    assert!(!sim.nodes[1].engine.files().iter().any(|f| f.id[0] == 56));
    // The announcements were not an offence: it is not banned.
    sim.drain();
    assert!(!sim.nodes[1]
        .events
        .iter()
        .any(|e| matches!(e, TransferEvent::PeerBanned(..))));
}

/// Forty downloads asked for at once start a few at a time, in the order asked: the first
/// finishes while most have not even fetched their manifests, and the order of finishing
/// follows the order of asking; downloads whose only source left hold no place.
#[test]
fn many_downloads_at_once_start_a_few_at_a_time_in_the_order_asked() {
    let mut sim = Sim::new(3);
    sim.nodes[1].engine = Engine::new(Config {
        max_active_downloads: 4,
        ..Config::default()
    });
    for p in [0, 2] {
        sim.input(1, Input::PeerUp(pid(p), CHROMIUM_FRAME)); // (its engine is new)
    }
    // Node 2 offers four files and leaves; node 0 offers forty.
    let orphans: Vec<Manifest> = (0..4u64)
        .map(|i| {
            let data = content(50_000, 100 + i);
            let m = manifest_of(&format!("gone{i}"), &data);
            sim.share(2, &data, &m);
            m
        })
        .collect();
    let ms: Vec<Manifest> = (0..40u64)
        .map(|i| {
            let data = content(300_000, i);
            let m = manifest_of(&format!("f{i}"), &data);
            sim.share(0, &data, &m);
            m
        })
        .collect();
    sim.settle();
    // Asked for first; their source leaves before it answers (they stay, waiting for one).
    for m in &orphans {
        sim.input(1, Input::Download(m.id()));
    }
    sim.leave(2);
    assert!(orphans.iter().all(|m| sim.nodes[1]
        .engine
        .file(&m.id())
        .is_some_and(|f| f.downloading)));
    for m in &ms {
        sim.input(1, Input::Download(m.id()));
    }
    let known = |sim: &Sim| {
        ms.iter()
            .filter(|m| sim.nodes[1].engine.manifest(&m.id()).is_some())
            .count()
    };
    let done = |sim: &Sim| -> Vec<usize> {
        (0..ms.len())
            .filter(|&i| sim.complete(1, &ms[i].id()))
            .collect()
    };
    assert!(sim.run_until(Duration::from_secs(60), |s| !done(s).is_empty()));
    assert!(
        known(&sim) <= 5,
        "{} manifests fetched at the first finish",
        known(&sim)
    );
    let mut order = Vec::new();
    sim.run_until(Duration::from_secs(120), |s| {
        for i in done(s) {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        order.len() == ms.len()
    });
    assert_eq!(order.len(), ms.len(), "all finish");
    // Within the four at a time, in the order asked.
    for (k, &i) in order.iter().enumerate() {
        assert!(
            i.abs_diff(k) < 4,
            "the {k}th to finish was asked for {i}th: {order:?}"
        );
    }
    for (i, m) in ms.iter().enumerate() {
        assert_eq!(sim.assembled(1, m), content(300_000, i as u64));
    }
}

/// A peer that offers as many files as its peers take from one is told before it shares more
/// (they would ignore the announcement), and may again once it stops sharing one.
#[test]
fn a_peer_may_share_only_as_many_files_as_its_peers_take_from_one() {
    let mut sim = Sim::new(2);
    sim.nodes[0].engine = Engine::new(Config {
        max_files_per_peer: 3,
        ..Config::default()
    });
    let ms: Vec<(Vec<u8>, Manifest)> = (0..3)
        .map(|i| {
            let data = content(1000 + i, i as u64);
            let m = manifest_of(&format!("f{i}"), &data);
            (data, m)
        })
        .collect();
    for (data, m) in &ms[..2] {
        sim.share(0, data, m);
    }
    assert!(sim.nodes[0].engine.may_share());
    sim.share(0, &ms[2].0, &ms[2].1);
    assert_eq!(sim.nodes[0].engine.offered(), 3);
    assert!(!sim.nodes[0].engine.may_share(), "at the cap");
    // A file it only knows of (announced by the other) does not count.
    sim.share(
        1,
        &content(500, 9),
        &manifest_of("theirs", &content(500, 9)),
    );
    sim.input(0, Input::PeerUp(pid(1), CHROMIUM_FRAME)); // (its engine is new)
    sim.settle();
    assert_eq!(sim.nodes[0].engine.files().len(), 4);
    assert_eq!(sim.nodes[0].engine.offered(), 3);
    sim.input(0, Input::Unshare(ms[0].1.id()));
    assert!(sim.nodes[0].engine.may_share(), "room again");
}

#[test]
fn a_source_that_never_sends_the_manifest_is_passed_over() {
    // Nodes 1 and 2 share a file; node 1 then stops answering anything (its channel stays
    // open). Node 0 asks node 1 first (the first source) for the manifest: no answer within
    // the request timeout, so it asks node 2, and the download completes from node 2.
    let data = content(4 * 1024 * 1024, 22);
    let m = manifest_of("silent", &data);
    let id = m.id();
    let mut sim = Sim::new(3);
    sim.share(1, &data, &m);
    sim.share(2, &data, &m);
    sim.settle();
    sim.nodes[1].up = false;
    let start = sim.now;
    sim.input(0, Input::Download(id));
    assert!(
        sim.run_until(Duration::from_secs(60), |s| s.complete(0, &id)),
        "the download never got past the silent source"
    );
    assert_eq!(sim.assembled(0, &m), data);
    let took = sim.now - start;
    let timeout = Config::default().request_timeout;
    assert!(
        took >= timeout,
        "done in {took:?}: the silent source was not asked first"
    );
    assert!(took < timeout * 2, "done in {took:?}");
}

/// A manifest of 8192 pieces of 1 MiB (256 KiB encoded; a 1 KiB bitfield), of no real bytes.
fn big_manifest() -> Manifest {
    let pieces = 8192u32;
    Manifest {
        name: "big".into(),
        size: u64::from(pieces) * 1024 * 1024,
        mime: String::new(),
        piece_size: 1024 * 1024,
        hashes: vec![[7; 32]; pieces as usize],
    }
}

#[test]
fn a_peer_asking_for_a_manifest_over_and_over_gets_a_window_of_it() {
    // A manifest of 8192 pieces is 256 KiB; a peer whose channel takes nothing asks for it a
    // hundred times: it is sent a send window's worth, not 25 MiB.
    let m = big_manifest();
    let id = m.id();
    let mut sim = Sim::new(2);
    sim.input(0, Input::Share(m.clone()));
    sim.settle();
    sim.nodes[0].unsent = Some(Vec::new());
    for _ in 0..100 {
        sim.input(
            0,
            Input::Frame(pid(1), Frame::ManifestRequest { id }.encode()),
        );
    }
    sim.drain();
    let sent: usize = sim.nodes[0]
        .unsent
        .as_ref()
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    let manifest = m.encode().len();
    let window = Config::default().send_window as usize;
    assert!(
        sent <= window + manifest + 64 * 1024,
        "sent {sent} bytes of manifest parts to a peer that took nothing"
    );
    assert!(sent >= manifest, "not even one manifest: {sent} bytes");
}

/// The frames `e` sends to `to` until it has nothing more to say (none reported sent).
fn frames_to(e: &mut Engine, to: &PeerId) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::Send(p, bytes) = o {
            if &p == to {
                out.push(Frame::decode(&bytes).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_peer_that_reads_nothing_is_owed_one_answer_however_often_it_asks() {
    // A file of 8192 pieces (a 1 KiB bitfield). Its peer fills its channel with manifests it
    // asks for, then, reading nothing, subscribes and asks for pieces of a file we do not have
    // ten thousand times each: the answers (10 MiB of bitfields, rejects) would pile up in the
    // channel's queue; it is owed one bitfield, sent once it reads again.
    let m = big_manifest();
    let id = m.id();
    let peer = pid(1);
    let t = Duration::ZERO;
    let mut e = Engine::new(Config::default());
    e.handle(Input::PeerUp(peer.clone(), CHROMIUM_FRAME), t);
    e.handle(Input::Share(m), t);
    let bytes = |frames: &[Frame]| frames.iter().map(|f| f.encode().len()).sum::<usize>();
    let mut sent = bytes(&frames_to(&mut e, &peer));
    for _ in 0..100 {
        e.handle(
            Input::Frame(peer.clone(), Frame::ManifestRequest { id }.encode()),
            t,
        );
    }
    sent += bytes(&frames_to(&mut e, &peer));
    let window = Config::default().send_window as usize;
    assert!(sent >= window, "the window is not out: {sent} bytes");
    let elsewhere = BlockRef {
        piece: 0,
        offset: 0,
        len: 1024,
    };
    for _ in 0..10_000 {
        e.handle(
            Input::Frame(peer.clone(), Frame::Subscribe { id }.encode()),
            t,
        );
        let ask = Frame::Request {
            id: [9; 32],
            block: elsewhere,
        };
        e.handle(Input::Frame(peer.clone(), ask.encode()), t);
    }
    let meanwhile = frames_to(&mut e, &peer);
    assert!(
        meanwhile.is_empty(),
        "{} answers to a peer whose channel takes nothing",
        meanwhile.len()
    );
    // It reads what it was sent: the bitfield, once.
    e.handle(Input::Sent(peer.clone(), sent), t);
    let after = frames_to(&mut e, &peer);
    let haves = after
        .iter()
        .filter(|f| matches!(f, Frame::Have { id: i, bits } if *i == id && bits.len() == 1024))
        .count();
    assert_eq!((haves, after.len()), (1, 1), "{} frames", after.len());
    // And, reading, it is answered at once.
    e.handle(
        Input::Frame(peer.clone(), Frame::Subscribe { id }.encode()),
        t,
    );
    assert_eq!(frames_to(&mut e, &peer).len(), 1);
}

#[test]
fn a_file_downloaded_then_let_go_of_is_downloaded_again() {
    // Deleting a stored download unshares it: the file stays known (its source has it) with
    // its manifest, and a new download of it must start over, not wait forever.
    let (data, m, mut sim) = shared_by_node_0(3 * 1024 * 1024 + 7, 21);
    let id = m.id();
    for round in 0..2 {
        sim.input(1, Input::Download(id));
        assert!(
            sim.run_until(Duration::from_secs(30), |s| s.complete(1, &id)),
            "download {round} did not finish"
        );
        assert_eq!(sim.assembled(1, &m), data, "download {round}");
        sim.input(1, Input::Unshare(id));
        sim.nodes[1].store.clear();
        sim.settle();
        assert!(announced(&sim, 1, &id), "the source's file is forgotten");
    }
}

#[test]
fn a_store_that_fills_up_stops_the_download_once_and_a_retry_fetches_only_what_is_missing() {
    let (data, m, mut sim) = shared_by_node_0(8 * 1024 * 1024, 16);
    let id = m.id();
    sim.nodes[1].held = Some(Vec::new());
    sim.input(1, Input::Download(id));
    let waiting = |s: &Sim| s.nodes[1].held.as_ref().is_some_and(|h| h.len() >= 6);
    assert!(sim.run_until(Duration::from_secs(10), waiting));
    // Three are stored, then the storage is full: every write after fails.
    let held = sim.nodes[1].held.take().unwrap();
    for (n, (id, piece, data)) in held.into_iter().enumerate() {
        if n < 3 {
            sim.nodes[1].store.insert((id, piece), data);
            sim.input(1, Input::Stored(id, piece));
        } else {
            sim.input(1, Input::StoreFailed(id, piece, "the disk is full".into()));
        }
    }
    sim.drain();
    assert!(!sim.nodes[1].engine.files()[0].downloading, "stopped");
    // The user is told once, not once per piece that was on its way to the store.
    let errors: Vec<&TransferEvent> = sim.nodes[1]
        .events
        .iter()
        .filter(|e| matches!(e, TransferEvent::Error(..)))
        .collect();
    assert_eq!(
        errors,
        [&TransferEvent::Error(
            id,
            "storing failed: the disk is full".into()
        )]
    );
    let info = sim.nodes[1].engine.files()[0].clone();
    assert_eq!(
        info.error.as_deref(),
        Some("storing failed: the disk is full")
    );
    assert_eq!(
        info.have,
        3 * u64::from(m.piece_size),
        "the stored pieces stay"
    );
    assert!(!info.complete);
    // Stopped: nothing is asked for any more.
    let asked = sim.nodes[0].served.len();
    sim.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(sim.nodes[0].served.len(), asked);

    // Room is made; downloading again fetches the rest, not a stored piece again.
    let kept: HashSet<u32> = sim.nodes[1].store.keys().map(|&(_, p)| p).collect();
    let before = sim.nodes[1].stored.len();
    sim.input(1, Input::Download(id));
    assert_eq!(sim.nodes[1].engine.files()[0].error, None, "cleared");
    assert!(sim.run_until(Duration::from_secs(10), |s| s.complete(1, &id)));
    assert_eq!(sim.assembled(1, &m), data);
    let again: Vec<u32> = sim.nodes[1].stored[before..]
        .iter()
        .copied()
        .filter(|p| kept.contains(p))
        .collect();
    assert_eq!(again, [] as [u32; 0], "stored pieces fetched again");
}

#[test]
fn a_long_name_in_another_script_is_cut_whole_and_the_file_shared() {
    // 400 characters of three bytes each: cut to the wire's 1024 bytes, it must end on a
    // character, or every peer would take the sharer's announcement and manifest for
    // malformed frames and ban it.
    let name = "写真".repeat(200);
    let data = content(2 * 1024 * 1024, 23);
    let m = manifest_of(&name, &data);
    assert!(m.name.len() <= wire::MAX_NAME && name.starts_with(&m.name));
    assert_eq!(m.name.chars().count(), wire::MAX_NAME / 3);
    assert_eq!(Manifest::decode(&m.encode(), &m.id()).unwrap(), m);
    let announce = Frame::Announce {
        id: m.id(),
        name: name.clone(),
        size: m.size,
        mime: "é".repeat(1000),
    };
    assert!(Frame::decode(&announce.encode()).is_ok());
    let mut sim = Sim::new(2);
    sim.share(0, &data, &m);
    sim.settle();
    sim.input(1, Input::Download(m.id()));
    assert!(sim.run_until(Duration::from_secs(10), |s| s.complete(1, &m.id())));
    assert_eq!(sim.assembled(1, &m), data);
    assert!(!sim.nodes[1]
        .events
        .iter()
        .any(|e| matches!(e, TransferEvent::PeerBanned(..))));
}

#[test]
fn manifests_round_trip_and_reject_tampering() {
    let data = content(2_500_000, 7);
    let m = manifest_of("a name ✓", &data);
    assert_eq!(m.piece_size, 1024 * 1024);
    assert_eq!(m.pieces(), 3);
    assert_eq!(m.piece_len(2), 2_500_000 - 2 * 1024 * 1024);
    let bytes = m.encode();
    assert_eq!(Manifest::decode(&bytes, &m.id()).unwrap(), m);
    let mut bad = bytes.clone();
    bad[5] ^= 1;
    assert_eq!(Manifest::decode(&bad, &m.id()), Err(ManifestError::WrongId));
    assert!(m.verify(0, &data[..1024 * 1024]));
    assert!(!m.verify(0, &data[1..1024 * 1024 + 1]));
    assert_eq!(piece_size_for(4 << 30), 1024 * 1024);
    assert_eq!(piece_size_for(16 << 30), 2 * 1024 * 1024);
    assert_eq!(piece_size_for(1 << 20), 1024 * 1024);
    assert_eq!(id_from_hex(&id_hex(&m.id())), Some(m.id()));
    assert_eq!(id_from_hex("zz"), None);
    let mut id = [0u8; 32];
    id[0] = 0x0f;
    id[1] = 0xa5;
    id[31] = 0xff;
    assert_eq!(
        id_hex(&id),
        format!("0fa5{}ff", "0".repeat(58)),
        "lowercase hex, high nibble first"
    );
}

#[test]
fn pieces_hashed_elsewhere_build_the_same_manifest() {
    use sha2::Digest;
    let data = content(3 * 1024 * 1024 + 12345, 9);
    let streamed = manifest_of("f", &data);
    let mut b = ManifestBuilder::new("f", data.len() as u64, "application/octet-stream");
    let ps = b.piece_size() as usize;
    // A short piece that is not the last is refused.
    assert!(b.push_piece(10, [0; 32]).is_err());
    for piece in data.chunks(ps) {
        b.push_piece(piece.len() as u32, sha2::Sha256::digest(piece).into())
            .unwrap();
    }
    assert_eq!(b.finish().unwrap(), streamed);
    // Too few bytes: refused at the end.
    let mut b = ManifestBuilder::new("f", data.len() as u64, "application/octet-stream");
    b.push_piece(ps as u32, [0; 32]).unwrap();
    assert!(b.finish().is_err());
}

#[test]
fn bitfields_check_their_wire_form() {
    let mut b = Bitfield::new(10);
    assert!(b.set(0) && b.set(9) && !b.set(9) && !b.set(10));
    assert_eq!(b.as_bytes(), &[0x80, 0x40]);
    assert_eq!(Bitfield::from_bytes(&[0x80, 0x40], 10), Some(b));
    assert_eq!(
        Bitfield::from_bytes(&[0x80, 0x41], 10),
        None,
        "spare bit set"
    );
    assert_eq!(Bitfield::from_bytes(&[0x80], 10), None, "wrong length");
}

#[test]
fn wire_fixtures() {
    let id = [0xab; 32];
    let f = Frame::Request {
        id,
        block: BlockRef {
            piece: 1,
            offset: 65536,
            len: 65536,
        },
    };
    let mut want = vec![1, 8];
    want.extend_from_slice(&[0xab; 32]);
    want.extend_from_slice(&[0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0]);
    assert_eq!(f.encode(), want);
    assert_eq!(Frame::decode(&want).unwrap(), f);
    assert_eq!(Frame::decode(&[2, 8]), Err(WireError::Version(2)));
    assert_eq!(Frame::decode(&[1, 99]), Err(WireError::UnknownType(99)));
    assert!(matches!(
        Frame::decode(&want[..20]),
        Err(WireError::Truncated(_))
    ));
    let mut long = want.clone();
    long.push(0);
    assert_eq!(Frame::decode(&long), Err(WireError::Trailing(1)));
}

#[test]
fn malformed_frames_ban_the_sender_only() {
    let data = content(1024 * 1024, 8);
    let m = manifest_of("f", &data);
    let id = m.id();
    let mut sim = Sim::new(3);
    sim.share(0, &data, &m);
    sim.settle();
    sim.input(2, Input::Frame(pid(1), vec![1, 200, 3]));
    sim.settle();
    assert!(sim.nodes[2]
        .events
        .iter()
        .any(|e| matches!(e, TransferEvent::PeerBanned(p, _) if *p == pid(1))));
    sim.input(2, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(10), |s| s.complete(2, &id)));
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let id = any::<[u8; 32]>();
    let block = (any::<u32>(), any::<u32>(), any::<u32>())
        .prop_map(|(piece, offset, len)| BlockRef { piece, offset, len });
    prop_oneof![
        (id, ".{0,40}", any::<u64>(), "[a-z/]{0,20}").prop_map(|(id, name, size, mime)| {
            Frame::Announce {
                id,
                name,
                size,
                mime,
            }
        }),
        id.prop_map(|id| Frame::Unannounce { id }),
        id.prop_map(|id| Frame::Subscribe { id }),
        id.prop_map(|id| Frame::ManifestRequest { id }),
        (
            id,
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(id, offset, total, bytes)| Frame::ManifestPart {
                id,
                offset,
                total,
                bytes
            }),
        (id, prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(id, bits)| Frame::Have { id, bits }),
        (id, any::<u32>()).prop_map(|(id, piece)| Frame::HaveOne { id, piece }),
        (id, block.clone()).prop_map(|(id, block)| Frame::Request { id, block }),
        (
            id,
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..256)
        )
            .prop_map(|(id, piece, offset, data)| Frame::Block {
                id,
                piece,
                offset,
                data
            }),
        (id, block.clone()).prop_map(|(id, block)| Frame::Cancel { id, block }),
        (id, block, 0u8..3).prop_map(|(id, block, r)| Frame::Reject {
            id,
            block,
            reason: [
                RejectReason::NotHere,
                RejectReason::Busy,
                RejectReason::Invalid
            ][r as usize]
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn frames_round_trip(f in arb_frame()) {
        prop_assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Frame::decode(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(f in arb_frame(), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let mut b = f.encode();
        let i = pos % b.len();
        b[i] = byte;
        let _ = Frame::decode(&b);
        let _ = Frame::decode(&b[..cut % (b.len() + 1)]);
    }

    #[test]
    fn packed_frames_arrive_whole_and_in_order(
        fs in prop::collection::vec(arb_frame(), 1..40),
        max in 64usize..4096,
    ) {
        let encoded: Vec<Vec<u8>> = fs.iter().map(Frame::encode).collect();
        let mut back = Vec::new();
        let mut carried = 0;
        for m in wire::pack(encoded.clone(), max) {
            carried += m.carried;
            if m.packed {
                prop_assert!(m.bytes.len() <= max);
                let frames = wire::unpack(&m.bytes).unwrap();
                prop_assert!(frames.len() > 1);
                // Its count is the frames' bytes, without the packing's lengths.
                prop_assert_eq!(m.carried, frames.iter().map(|f| f.len()).sum::<usize>());
                back.extend(frames.into_iter().map(<[u8]>::to_vec));
            } else {
                prop_assert_eq!(m.carried, m.bytes.len());
                back.push(m.bytes);
            }
        }
        // What the driver reports sent is what the engine counted out.
        prop_assert_eq!(carried, encoded.iter().map(Vec::len).sum::<usize>());
        prop_assert_eq!(back, encoded);
    }

    #[test]
    fn arbitrary_packed_messages_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(frames) = wire::unpack(&bytes) {
            let total: usize = frames.iter().map(|f| f.len() + 4).sum();
            prop_assert_eq!(total, bytes.len());
            for f in frames {
                let _ = Frame::decode(f);
            }
        }
    }

    #[test]
    fn arbitrary_manifests_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        use sha2::Digest;
        let id: FileId = sha2::Sha256::digest(&bytes).into();
        let _ = Manifest::decode(&bytes, &id);
    }
}

#[test]
fn upload_limits_cap_each_seeder_and_a_download_uses_them_all() {
    let data = content(6 * 1024 * 1024, 9);
    let m = manifest_of("capped", &data);
    let id = m.id();
    let mut sim = Sim::new(4);
    let cap = 1_000_000u64;
    for s in 0..3 {
        sim.share(s, &data, &m);
        sim.nodes[s]
            .engine
            .set_upload_limit(Some(cap), Duration::ZERO);
    }
    sim.settle();
    let start = sim.now;
    sim.input(3, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(3, &id)));
    assert_eq!(sim.assembled(3, &m), data);
    let secs = (sim.now - start).as_secs_f64();
    let from = sim.nodes[3].engine.received_from(&id);
    for s in 0..3 {
        let sent = from.get(&pid(s)).copied().unwrap_or(0) as f64;
        // Each seeder stays within its cap (plus one block of budget debt and the saved burst).
        assert!(
            sent <= cap as f64 * secs + 64.0 * 1024.0 + cap as f64 / 10.0,
            "seeder {s} sent {sent} bytes in {secs:.2} s over a cap of {cap}/s"
        );
        assert!(sent > 0.0, "seeder {s} was not used");
    }
}

#[test]
fn a_source_tells_who_fetches_from_it_and_how_much_it_served() {
    // One downloader: the source served the file once, and no one fetches from it after.
    let (data, m, mut sim) = shared_by_node_0(3 * 1024 * 1024 + 5, 21);
    let id = m.id();
    let info = |sim: &Sim, i: usize| sim.nodes[i].engine.file(&id).unwrap();
    assert_eq!((info(&sim, 0).uploading, info(&sim, 0).sent), (0, 0));
    sim.input(1, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(1, &id)));
    sim.settle();
    assert_eq!(info(&sim, 0).sent, data.len() as u64);
    assert_eq!(info(&sim, 0).uploading, 0);
    assert_eq!((info(&sim, 1).sent, info(&sim, 1).uploading), (0, 0));

    // Two downloaders at once from a capped source: it counts each peer once, however many
    // of its requests wait, in `files()` as in `file()`.
    let (data, m, mut sim) = shared_by_node_0_of(3, 4 * 1024 * 1024, 22);
    let id = m.id();
    let info = |sim: &Sim, i: usize| sim.nodes[i].engine.file(&id).unwrap();
    sim.nodes[0]
        .engine
        .set_upload_limit(Some(1_000_000), sim.now);
    for d in 1..3 {
        sim.input(d, Input::Download(id));
    }
    sim.run_until(Duration::from_secs(1), |_| false);
    let mid = info(&sim, 0);
    assert_eq!(mid.uploading, 2, "{mid:?}");
    assert!(mid.sent > 0 && mid.sent < 2 * data.len() as u64, "{mid:?}");
    let listed = sim.nodes[0].engine.files();
    assert_eq!(listed.iter().find(|f| f.id == id), Some(&mid));
    assert!(sim.run_until(Duration::from_secs(60), |s| (1..3)
        .all(|d| s.complete(d, &id))));
    sim.settle();
    // Each peer's traffic: what one took from another is what the other served it, less
    // endgame duplicates dropped on arrival.
    for i in 0..3 {
        for j in 0..3 {
            if i == j {
                continue;
            }
            let (got, _) = sim.nodes[i].engine.traffic(&pid(j)).unwrap();
            let (_, gave) = sim.nodes[j].engine.traffic(&pid(i)).unwrap();
            let from = sim.nodes[i].engine.received_from(&id);
            assert_eq!(got, from.get(&pid(j)).copied().unwrap_or(0), "{i} from {j}");
            assert!(gave >= got, "{j} gave {i} {gave}, {i} got {got}");
        }
    }
    assert_eq!(sim.nodes[0].engine.traffic(&pid(0)), None);
    let sent: u64 = (0..3).map(|i| info(&sim, i).sent).sum();
    let received: u64 = (1..3).map(|d| info(&sim, d).received).sum();
    assert!(
        sent >= received && received >= 2 * data.len() as u64,
        "sent {sent}, received {received}"
    );
    for i in 0..3 {
        assert_eq!(info(&sim, i).uploading, 0, "node {i} after the downloads");
    }
}

#[test]
fn an_upload_limit_changed_during_a_download_holds_from_then_on() {
    let (data, m, mut sim) = shared_by_node_0(12 * 1024 * 1024, 23);
    let id = m.id();
    let sent = |sim: &Sim| sim.nodes[0].engine.file(&id).unwrap().sent as f64;
    let cap = 1_000_000.0;
    let now = sim.now;
    sim.nodes[0].engine.set_upload_limit(Some(cap as u64), now);
    sim.input(1, Input::Download(id));
    sim.run_until(Duration::from_secs(2), |_| false);
    // Within the cap (plus a block of debt and the tenth of a second saved up), and using it.
    let capped = sent(&sim);
    assert!(
        capped <= 2.0 * cap + 128.0 * 1024.0 + cap / 10.0 && capped >= 1.5 * cap,
        "{capped} bytes in 2 s at {cap}/s"
    );
    // Lifted: the rest comes at the link's speed (20 MB/s), not the cap's (9 s more).
    let now = sim.now;
    sim.nodes[0].engine.set_upload_limit(None, now);
    let start = sim.now;
    assert!(sim.run_until(Duration::from_secs(3), |s| s.complete(1, &id)));
    assert!(
        sim.now - start < Duration::from_secs(2),
        "{:?}",
        sim.now - start
    );
    assert_eq!(sim.assembled(1, &m), data);
    // Set again, lower, for the next downloader.
    let now = sim.now;
    sim.nodes[0].engine.set_upload_limit(Some(300_000), now);
    sim.nodes[1].engine.handle(Input::Unshare(id), now);
    let before = sent(&sim);
    sim.input(1, Input::Download(id));
    sim.run_until(Duration::from_secs(2), |_| false);
    let more = sent(&sim) - before;
    assert!(
        more <= 2.0 * 300_000.0 + 128.0 * 1024.0 + 30_000.0 && more > 0.0,
        "{more} bytes in 2 s at 300000/s"
    );
}

#[test]
fn malformed_packed_messages_are_errors() {
    assert_eq!(
        wire::unpack(&[]),
        Err(WireError::Invalid("empty packed message"))
    );
    assert_eq!(
        wire::unpack(&[0, 0, 0]),
        Err(WireError::Truncated("packed frame length"))
    );
    assert_eq!(
        wire::unpack(&[0, 0, 0, 0]),
        Err(WireError::Truncated("packed frame"))
    );
    assert_eq!(
        wire::unpack(&[0, 0, 0, 5, 1, 2]),
        Err(WireError::Truncated("packed frame"))
    );
    assert_eq!(wire::unpack(&[0, 0, 0, 1, 7]), Ok(vec![&[7u8][..]]));
}

/// Requests go out in batches (one data-channel message each, once packed): after the first
/// fill of the pipeline, a peer is asked again only when `request_batch` of its requests are
/// answered, and then for that many.
#[test]
fn requests_are_sent_in_batches() {
    let data = content(8 * 1024 * 1024, 4);
    let m = manifest_of("batched", &data);
    let id = m.id();
    let seeder = pid(1);
    let now = Time::ZERO;
    let config = Config::default();
    let (pipeline, batch) = (config.pipeline, config.request_batch);
    assert!(batch > 1 && batch < pipeline);
    let mut e = Engine::new(config);
    e.handle(Input::PeerUp(seeder.clone(), CHROMIUM_FRAME), now);
    let announce = Frame::Announce {
        id,
        name: m.name.clone(),
        size: m.size,
        mime: m.mime.clone(),
    };
    e.handle(Input::Frame(seeder.clone(), announce.encode()), now);
    e.handle(Input::Download(id), now);
    let manifest = m.encode();
    let manifest_part = Frame::ManifestPart {
        id,
        offset: 0,
        total: manifest.len() as u32,
        bytes: manifest,
    };
    e.handle(Input::Frame(seeder.clone(), manifest_part.encode()), now);
    let have = Frame::Have {
        id,
        bits: Bitfield::full(m.pieces()).as_bytes().to_vec(),
    };
    e.handle(Input::Frame(seeder.clone(), have.encode()), now);
    let requests = |e: &mut Engine| -> Vec<BlockRef> {
        std::iter::from_fn(|| e.poll_output())
            .filter_map(|o| match o {
                Output::Send(_, f) => match Frame::decode(&f).unwrap() {
                    Frame::Request { block, .. } => Some(block),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    };
    let mut asked = requests(&mut e);
    assert_eq!(asked.len(), pipeline, "the first fill");
    for round in 0..3 {
        for i in 0..batch {
            let b = asked.remove(0);
            let start = b.piece as usize * m.piece_size as usize + b.offset as usize;
            let block = Frame::Block {
                id,
                piece: b.piece,
                offset: b.offset,
                data: data[start..start + b.len as usize].to_vec(),
            };
            e.handle(Input::Frame(seeder.clone(), block.encode()), now);
            let more = requests(&mut e);
            if i + 1 < batch {
                assert!(
                    more.is_empty(),
                    "round {round}: asked again after {} answers",
                    i + 1
                );
            } else {
                assert_eq!(more.len(), batch, "round {round}: a whole batch at once");
            }
            asked.extend(more);
        }
    }
}

#[test]
fn a_file_of_no_bytes_downloads_at_once_and_is_served_on() {
    let data = Vec::new();
    let m = manifest_of("empty.txt", &data);
    assert_eq!(m.pieces(), 0);
    let id = m.id();
    let mut sim = Sim::new(3);
    sim.share(0, &data, &m);
    sim.settle();
    sim.input(1, Input::Download(id));
    assert!(sim.run_until(Duration::from_secs(5), |s| s.nodes[1]
        .events
        .contains(&TransferEvent::Complete(id))));
    assert!(sim.nodes[1]
        .events
        .contains(&TransferEvent::Progress(id, 0, 0)));
    let info = |sim: &Sim, node: usize| {
        let files = sim.nodes[node].engine.files();
        files.into_iter().find(|f| f.id == id)
    };
    let got = info(&sim, 1).expect("known");
    assert!(got.complete && !got.downloading, "{got:?}");
    // Node 1 now serves it too; a peer that connects later is told of it.
    sim.settle();
    assert_eq!(info(&sim, 2).map(|f| f.sources), Some(2));
    for other in [0, 1] {
        sim.input(2, Input::PeerDown(pid(other)));
        sim.input(other, Input::PeerDown(pid(2)));
    }
    assert!(info(&sim, 2).is_none(), "forgotten with its sources");
    sim.input(0, Input::PeerUp(pid(2), CHROMIUM_FRAME));
    sim.input(2, Input::PeerUp(pid(0), CHROMIUM_FRAME));
    sim.settle();
    assert_eq!(info(&sim, 2).map(|f| f.size), Some(0), "announced again");
}

#[test]
fn downloading_a_file_we_have_whole_changes_nothing() {
    let (_, m, mut sim) = shared_by_node_0(3 * 1024 * 1024, 24);
    sim.input(0, Input::Download(m.id()));
    sim.settle();
    let files = sim.nodes[0].engine.files();
    assert!(files[0].complete && !files[0].downloading, "{files:?}");
    assert!(sim.nodes[0].served.is_empty());
}

/// One thing that happens to a swarm in [`a_swarm_under_churn_delivers_every_file_whole`].
#[derive(Debug, Clone)]
enum Step {
    /// A node's channels close (its tab is hidden, its network drops).
    Leave(usize),
    /// A node that left connects again, with the state it had.
    Back(usize),
    /// A node's page reloads: a new engine resumes what its store holds.
    Reload(usize),
    Download(usize, usize),
    Cancel(usize, usize),
    /// A node lets go of a file: one it downloaded is deleted from its store; node 0 (whose
    /// files are the user's own) shares it again at the end.
    Unshare(usize, usize),
    /// A node serves corrupt blocks from now on.
    Corrupt(usize),
    /// The link from one node to another becomes slow: latency (ms) and bytes a second.
    Slow(usize, usize, u64, f64),
    /// A node's next store fails (its quota is full).
    StoreFails(usize),
    /// A node's next block reads fail.
    ReadsFail(usize, usize),
    /// Time passes (ms).
    Wait(u64),
}

/// Nodes in the churn test; node 0 shares every file and never turns bad.
const CHURN_NODES: usize = 5;

fn arb_step(files: usize) -> impl Strategy<Value = Step> {
    let n = CHURN_NODES;
    prop_oneof![
        3 => (0..n).prop_map(Step::Leave),
        3 => (0..n).prop_map(Step::Back),
        2 => (1..n).prop_map(Step::Reload),
        6 => (1..n, 0..files).prop_map(|(i, f)| Step::Download(i, f)),
        2 => (1..n, 0..files).prop_map(|(i, f)| Step::Cancel(i, f)),
        1 => (0..n, 0..files).prop_map(|(i, f)| Step::Unshare(i, f)),
        1 => (1..n).prop_map(Step::Corrupt),
        1 => (0..n, 0..n, 0u64..3000, 2e5..2e7)
            .prop_filter("a link joins two nodes", |(a, b, _, _)| a != b)
            .prop_map(|(a, b, ms, rate)| Step::Slow(a, b, ms, rate)),
        1 => (1..n).prop_map(Step::StoreFails),
        1 => (0..n, 1usize..20).prop_map(|(i, k)| Step::ReadsFail(i, k)),
        6 => (0u64..1500).prop_map(Step::Wait),
    ]
}

impl Sim {
    /// Node `i`, which left, connects to every node that is up again: its channels to them
    /// closed when it left and open anew.
    fn back(&mut self, i: usize) {
        if self.nodes[i].up {
            return;
        }
        self.nodes[i].up = true;
        for j in 0..self.nodes.len() {
            if j == i {
                continue;
            }
            self.nodes[i]
                .engine
                .handle(Input::PeerDown(pid(j)), self.now);
            if self.nodes[j].up {
                let (to_i, to_j) = (self.accepts[i], self.accepts[j]);
                self.nodes[i]
                    .engine
                    .handle(Input::PeerUp(pid(j), to_j), self.now);
                self.nodes[j]
                    .engine
                    .handle(Input::PeerUp(pid(i), to_i), self.now);
            }
        }
    }

    /// Node `i`'s page reloads: a new engine, which resumes every file its store holds part
    /// of. Returns those files.
    fn reload(&mut self, i: usize, manifests: &[Manifest]) -> Vec<bool> {
        let was_up = self.nodes[i].up;
        if was_up {
            self.leave(i);
        }
        let seed = 1000 + self.now.as_millis() as u64;
        self.nodes[i].engine = Engine::new(Config {
            seed,
            ..Config::default()
        });
        self.nodes[i].fail_store = false;
        if was_up {
            // (`back` closes its channels first, which a new engine never had: no matter.)
            self.back(i);
        }
        manifests
            .iter()
            .map(|m| {
                let id = m.id();
                let mut have = Bitfield::new(m.pieces());
                for p in 0..m.pieces() {
                    if self.nodes[i].store.contains_key(&(id, p)) {
                        have.set(p);
                    }
                }
                let any = have.count() > 0;
                if any {
                    self.input(i, Input::Resume(m.clone(), have));
                }
                any
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Peers leave, come back, reload, turn bad, cancel, delete, fill their storage, fail to
    /// read what they share, while links slow down: nothing panics, no node ever stores a
    /// piece that is not the file's, and once everyone is back, every download asked for
    /// (again, where storage had failed) finishes whole.
    #[test]
    fn a_swarm_under_churn_delivers_every_file_whole(
        sizes in prop::collection::vec(prop_oneof![
            Just(0usize),
            1usize..5000,
            (1usize << 20) - 8..(1usize << 20) + 8,
            (1usize << 20)..(7usize << 19),
        ], 1..=3),
        steps in prop::collection::vec(arb_step(3), 0..40),
    ) {
        let files: Vec<(Vec<u8>, Manifest)> = sizes
            .iter()
            .enumerate()
            .map(|(f, &len)| {
                let data = content(len, 100 + f as u64);
                let m = manifest_of(&format!("f{f}"), &data);
                (data, m)
            })
            .collect();
        let manifests: Vec<Manifest> = files.iter().map(|(_, m)| m.clone()).collect();
        let mut sim = Sim::new(CHURN_NODES);
        for (data, m) in &files {
            sim.share(0, data, m);
        }
        sim.settle();
        // Which downloads the nodes' users want (and expect whole in the end).
        let mut wanted = [[false; 3]; CHURN_NODES];
        for step in &steps {
            match *step {
                Step::Leave(i) => {
                    if sim.nodes[i].up {
                        sim.leave(i);
                    }
                }
                Step::Back(i) => sim.back(i),
                Step::Reload(i) => {
                    let resumed = sim.reload(i, &manifests);
                    for (f, any) in resumed.into_iter().enumerate() {
                        wanted[i][f] = any;
                    }
                }
                Step::Download(_, f) | Step::Cancel(_, f) | Step::Unshare(_, f)
                    if f >= files.len() => {}
                Step::Download(i, f) => {
                    // The page offers only files announced to it (`download` of another is
                    // an error).
                    let id = files[f].1.id();
                    if sim.nodes[i].engine.files().iter().any(|x| x.id == id) {
                        wanted[i][f] = true;
                        sim.input(i, Input::Download(id));
                    }
                }
                Step::Cancel(i, f) => {
                    wanted[i][f] = false;
                    sim.input(i, Input::Cancel(files[f].1.id()));
                }
                Step::Unshare(i, f) => {
                    wanted[i][f] = false;
                    let id = files[f].1.id();
                    sim.input(i, Input::Unshare(id));
                    if i != 0 {
                        sim.nodes[i].store.retain(|(of, _), _| *of != id);
                    }
                }
                Step::Corrupt(i) => sim.nodes[i].corrupt = true,
                Step::Slow(a, b, ms, rate) => sim.slow_link(a, b, Duration::from_millis(ms), rate),
                Step::StoreFails(i) => sim.nodes[i].fail_store = true,
                Step::ReadsFail(i, k) => sim.nodes[i].fail_reads = k,
                Step::Wait(ms) => {
                    sim.run_until(Duration::from_millis(ms), |_| false);
                }
            }
            sim.drain();
            // Nothing but the file's own pieces is ever stored.
            for (i, node) in sim.nodes.iter().enumerate() {
                for ((id, p), bytes) in &node.store {
                    let (data, m) = files.iter().find(|(_, m)| m.id() == *id).unwrap();
                    let start = *p as usize * m.piece_size as usize;
                    prop_assert!(
                        bytes[..] == data[start..start + m.piece_len(*p) as usize],
                        "node {} stored a bad piece {} of {:?}", i, p, m.name
                    );
                }
            }
        }
        // Everyone comes back; downloads that stopped on a storage error are asked for again
        // (the page's retry), the others go on by themselves.
        for i in 0..CHURN_NODES {
            sim.back(i);
            sim.nodes[i].fail_store = false;
            sim.nodes[i].fail_reads = 0;
        }
        for (data, m) in &files {
            sim.share(0, data, m);
        }
        sim.settle();
        for (i, want) in wanted.iter().enumerate() {
            for (f, (_, m)) in files.iter().enumerate() {
                // (The page said why; the file may have been forgotten since, with its error,
                // when all its sources left.)
                let stopped = sim.nodes[i]
                    .events
                    .iter()
                    .any(|e| matches!(e, TransferEvent::Error(id, _) if *id == m.id()));
                if want[f] && stopped {
                    sim.input(i, Input::Download(m.id()));
                }
            }
        }
        let whole = |s: &Sim| {
            wanted.iter().enumerate().all(|(i, want)| {
                files
                    .iter()
                    .enumerate()
                    .all(|(f, (_, m))| !want[f] || s.complete(i, &m.id()))
            })
        };
        let done = sim.run_until(Duration::from_secs(600), whole);
        for (i, want) in wanted.iter().enumerate() {
            for (f, (data, m)) in files.iter().enumerate() {
                if !want[f] {
                    continue;
                }
                prop_assert!(
                    done && sim.complete(i, &m.id()),
                    "node {} never finished file {} ({} bytes): {:?}; its events: {:?}",
                    i, f, m.size,
                    sim.nodes[i].engine.files().into_iter().find(|x| x.id == m.id()),
                    sim.nodes[i].events.iter().rev().take(8).collect::<Vec<_>>()
                );
                prop_assert!(sim.assembled(i, m) == *data, "node {} assembled file {} wrong", i, f);
            }
        }
    }
}

/// `f` about file `id` instead (where `real`), and with pieces, offsets and lengths brought
/// near the file's own (so that they meet real state; not where `wild`).
fn aimed(f: Frame, id: FileId, real: bool, wild: bool) -> Frame {
    let to = |old: FileId| if real { id } else { old };
    let cut = |x: u32, m: u32| if wild { x } else { x % m };
    let near = |b: BlockRef| BlockRef {
        piece: cut(b.piece, 5),
        offset: cut(b.offset, 2 << 20),
        len: cut(b.len, 300 << 10),
    };
    match f {
        Frame::Announce {
            id: i,
            name,
            size,
            mime,
        } => Frame::Announce {
            id: to(i),
            name,
            size: if wild { size } else { size % (8 << 20) },
            mime,
        },
        Frame::Unannounce { id: i } => Frame::Unannounce { id: to(i) },
        Frame::Subscribe { id: i } => Frame::Subscribe { id: to(i) },
        Frame::ManifestRequest { id: i } => Frame::ManifestRequest { id: to(i) },
        Frame::ManifestPart {
            id: i,
            offset,
            total,
            bytes,
        } => Frame::ManifestPart {
            id: to(i),
            offset: cut(offset, 512),
            total: cut(total, 1024),
            bytes,
        },
        Frame::Have { id: i, bits } => Frame::Have { id: to(i), bits },
        Frame::HaveOne { id: i, piece } => Frame::HaveOne {
            id: to(i),
            piece: cut(piece, 6),
        },
        Frame::Request { id: i, block } => Frame::Request {
            id: to(i),
            block: near(block),
        },
        Frame::Block {
            id: i,
            piece,
            offset,
            data,
        } => Frame::Block {
            id: to(i),
            piece: cut(piece, 5),
            offset: cut(offset, 2 << 20),
            data,
        },
        Frame::Cancel { id: i, block } => Frame::Cancel {
            id: to(i),
            block: near(block),
        },
        Frame::Reject {
            id: i,
            block,
            reason,
        } => Frame::Reject {
            id: to(i),
            block: near(block),
            reason,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// A peer that sends anything well-formed — announcements of files it lacks, blocks never
    /// asked for, rejects, cancels and manifest parts of real files, at any time — to a seeder
    /// and a downloader: neither panics, nothing wrong is stored, and the download from the
    /// honest seeder finishes whole.
    #[test]
    fn a_peer_sending_anything_well_formed_costs_the_others_nothing(
        attacks in prop::collection::vec(
            (arb_frame(), any::<bool>(), any::<bool>(), any::<bool>(), 0u64..400),
            0..80,
        ),
        len in (1usize << 20)..(9usize << 19),
    ) {
        let data = content(len, 77);
        let m = manifest_of("target", &data);
        let id = m.id();
        let mut sim = Sim::new(3);
        sim.share(0, &data, &m);
        sim.settle();
        // Node 2 is the attacker: its own engine says nothing; what it "sends" is injected.
        sim.nodes[2].up = false;
        sim.input(1, Input::Download(id));
        for (frame, real, wild, to_seeder, wait) in attacks {
            let to = if to_seeder { 0 } else { 1 };
            sim.input(to, Input::Frame(pid(2), aimed(frame, id, real, wild).encode()));
            sim.run_until(Duration::from_millis(wait), |_| false);
        }
        let done = sim.run_until(Duration::from_secs(120), |s| s.complete(1, &id));
        prop_assert!(
            done,
            "the download did not finish: {:?}; node 1's events: {:?}",
            sim.nodes[1].engine.files(),
            sim.nodes[1].events.iter().rev().take(6).collect::<Vec<_>>()
        );
        prop_assert!(sim.assembled(1, &m) == data, "assembled wrong");
    }
}
