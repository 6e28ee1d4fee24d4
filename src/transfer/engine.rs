//! The file-sharing state machine: announcements, manifests, piece selection, integrity.

use super::manifest::{Bitfield, Manifest};
use super::wire::{BlockRef, Frame, RejectReason};
use super::FileId;
use crate::signal::PeerId;
use crate::swarm::{Rng, Time};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bytes per requested block: 128 KiB measured faster than 64 KiB, and a block frame stays
    /// within Chromium's 256 KiB message limit.
    pub block: u32,
    /// Requests in flight per peer: enough to keep a channel full.
    pub pipeline: usize,
    /// A peer is asked for more only once this many of its requests are answered, and then
    /// for that many at once: the requests go out together (one data channel message, see
    /// [`super::wire::pack`]) instead of one small message per block received.
    pub request_batch: usize,
    /// A request unanswered this long is given to another peer.
    pub request_timeout: Duration,
    /// Bytes of pieces held at once by all downloads together — being assembled, hashed or
    /// waiting for the storage — which bounds their memory: where the storage is slower than
    /// the network, no new piece is started until stored ones make room (each download may
    /// always hold one piece, so the bound is exceeded by at most one piece per download).
    pub max_held: u64,
    /// The first pieces are picked at random (so new peers have something to trade), then
    /// rarest first.
    pub random_first: u32,
    /// Seeds piece choices.
    pub seed: u64,
    /// Most bytes a second served to all peers together; `None`: no limit.
    pub upload_limit: Option<u64>,
    /// Requests a peer may have waiting with us (accepted, not yet read); more are answered
    /// [`RejectReason::Busy`]. Ours keep `pipeline` in flight.
    pub max_asked: usize,
    /// A peer that answered [`RejectReason::Busy`] is asked for nothing new this long (what it
    /// already took is still awaited); the rejected block goes to someone else meanwhile.
    pub busy_backoff: Duration,
    /// Bytes served to one peer that may be on their way out at once: being read, or handed
    /// to the driver and not yet reported sent ([`Input::Sent`]). Reads for a peer whose
    /// channel does not keep up wait, so a peer that asks faster than its channel takes
    /// costs no memory.
    pub send_window: u64,
    /// The same for all peers together: what a source holds to serve however many peers ask.
    /// It is shared by the `n` peers being served: each may have `send_budget / n` out (and
    /// at most its `send_window`). So peers that ask much and do not read (slow links, or on
    /// purpose) cannot hold it all while others wait: a peer that comes later gets its share
    /// at once, and what the others hold beyond their new shares drains as their channels
    /// take it. (The total is the budget plus a block per peer once shares settle; peers
    /// arriving one by one while all the others' channels stay full add a share each: with
    /// 20 peers, about 83 MiB at most, against 160 MiB of windows without the budget.)
    pub send_budget: u64,
    /// Files one peer may announce (be a source of) at once; more announcements from it are
    /// ignored until it withdraws some. Every known file costs memory and a line on the page.
    pub max_files_per_peer: usize,
    /// Downloads that fetch their manifests (and so start) at once, in the order they were
    /// asked for: the rest wait their turn, so that many at once ("Download all" of a folder)
    /// finish one after another, each soon, rather than all late together. A download none
    /// of whose sources is connected does not hold a place.
    pub max_active_downloads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            block: 128 * 1024,
            pipeline: 32,
            request_batch: 8,
            request_timeout: Duration::from_secs(10),
            max_held: 32 * 1024 * 1024,
            random_first: 4,
            seed: 1,
            upload_limit: None,
            max_asked: 256,
            busy_backoff: Duration::from_millis(500),
            send_window: 8 * 1024 * 1024,
            send_budget: 32 * 1024 * 1024,
            max_files_per_peer: 10_000,
            max_active_downloads: 16,
        }
    }
}

/// Something the driver tells the engine.
#[derive(Debug)]
pub enum Input {
    /// A data channel to `peer` opened that carries frames of at most this many bytes (the
    /// channel's `maxMessageSize` less the driver's own framing). Blocks served to it are sent
    /// in frames that fit.
    PeerUp(PeerId, usize),
    /// The data channel to `peer` closed.
    PeerDown(PeerId),
    /// A frame arrived from `peer`.
    Frame(PeerId, Vec<u8>),
    /// A message from `peer` that is not even a sequence of frames (e.g. a packed message
    /// whose lengths do not add up): treated as a malformed frame.
    Malformed(PeerId, super::WireError),
    /// We share a complete local file.
    Share(Manifest),
    /// We hold part (or all) of a file from an earlier session.
    Resume(Manifest, Bitfield),
    /// Download a file announced by peers.
    Download(FileId),
    /// Stop downloading (pieces already stored stay stored and served).
    Cancel(FileId),
    /// Stop sharing and forget a file.
    Unshare(FileId),
    /// The SHA-256 of a completed piece (after [`Output::Hash`]), with the piece back.
    Hashed(FileId, u32, Vec<u8>, [u8; 32]),
    /// A verified piece is stored.
    Stored(FileId, u32),
    /// Storing a piece failed (quota, I/O): the download pauses with the error.
    StoreFailed(FileId, u32, String),
    /// A piece could not be stored in time (storage busy): it is fetched again.
    StoreDropped(FileId, u32),
    /// A block read for `peer` (after [`Output::Read`]).
    BlockRead(PeerId, FileId, BlockRef, Vec<u8>),
    /// Reading a block failed.
    ReadFailed(PeerId, FileId, BlockRef),
    /// Frames of [`Output::Send`] to `peer` totalling this many bytes left the driver's queue
    /// for the channel (see [`Config::send_window`]).
    Sent(PeerId, usize),
}

/// Something the engine asks of the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send these frame bytes to `peer`.
    Send(PeerId, Vec<u8>),
    /// Hash a completed piece with SHA-256 (off the engine, e.g. with WebCrypto, since it is the
    /// costliest step per byte); answer with [`Input::Hashed`].
    Hash(FileId, u32, Vec<u8>),
    /// Store verified piece `piece` of a file; answer with [`Input::Stored`].
    Store(FileId, u32, Vec<u8>),
    /// Read a block for `peer`; answer with [`Input::BlockRead`].
    Read(PeerId, FileId, BlockRef),
    /// Tell the application.
    Event(TransferEvent),
}

/// Something that happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// A file is available in the swarm (first announcement).
    FileAnnounced {
        /// The file.
        id: FileId,
        /// Its name (from a peer: show as text).
        name: String,
        /// Its size.
        size: u64,
        /// Its MIME type.
        mime: String,
    },
    /// No peer (and not we) has the file any more.
    FileRemoved(FileId),
    /// A download made progress: bytes verified and stored of the total.
    Progress(FileId, u64, u64),
    /// A download finished; we now seed it.
    Complete(FileId),
    /// A peer sent bad data and is not asked again.
    PeerBanned(PeerId, String),
    /// A file's download stopped on an error.
    Error(FileId, String),
}

/// What the application sees of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The file.
    pub id: FileId,
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its MIME type.
    pub mime: String,
    /// Peers that announced it.
    pub sources: usize,
    /// Bytes we have verified and stored.
    pub have: u64,
    /// Whether we download it.
    pub downloading: bool,
    /// Whether we have all of it.
    pub complete: bool,
    /// Bytes received from peers since this engine started (re-fetches included).
    pub received: u64,
    /// Bytes of it served to peers since this engine started (read and handed to their
    /// channels).
    pub sent: u64,
    /// Peers fetching it from us now: those with requests of it we accepted and have not
    /// answered yet (a downloader keeps a pipeline of them while it fetches from us).
    pub uploading: usize,
    /// Why its last download stopped, if storing failed (cleared by a new download).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// Known from announcements only.
    Known,
    Downloading,
    /// We have pieces (maybe all) and serve them, but do not fetch more.
    Serving,
}

/// A piece being assembled.
#[derive(Debug)]
struct Partial {
    buf: Vec<u8>,
    got: Vec<bool>,
    missing: usize,
    contributors: BTreeSet<PeerId>,
}

#[derive(Debug)]
struct File {
    name: String,
    size: u64,
    mime: String,
    local: Local,
    manifest: Option<Manifest>,
    have: Option<Bitfield>,
    sources: BTreeSet<PeerId>,
    peer_have: HashMap<PeerId, Bitfield>,
    /// The piece last started from each peer: the next one is asked of it where it is among
    /// the rarest, so a peer reads its file in runs (one large read serves several pieces).
    last_pick: HashMap<PeerId, u32>,
    subscribers: BTreeSet<PeerId>,
    /// Peers owed our pieces (a [`Frame::Have`]) and our subscription, answers that wait
    /// while their channels take nothing (see [`Engine::reply`]).
    owed_have: BTreeSet<PeerId>,
    owed_subscribe: BTreeSet<PeerId>,
    /// Manifest being fetched: from whom, bytes so far.
    manifest_fetch: Option<(PeerId, Vec<u8>)>,
    /// When the manifest was asked for or its last part came: one that does not come within
    /// [`Config::request_timeout`] is asked of another source.
    manifest_at: Time,
    partial: BTreeMap<u32, Partial>,
    /// Verified, waiting for the driver to store them.
    storing: BTreeSet<u32>,
    /// Pieces being hashed, with who sent their blocks (also in `storing`, so never fetched
    /// twice meanwhile).
    hashing: HashMap<u32, BTreeSet<PeerId>>,
    /// Bytes received per peer (for the application and the tests).
    received: HashMap<PeerId, u64>,
    /// Bytes served to peers.
    sent: u64,
    error: Option<String>,
}

impl File {
    fn new(name: String, size: u64, mime: String) -> Self {
        File {
            name,
            size,
            mime,
            local: Local::Known,
            manifest: None,
            have: None,
            sources: BTreeSet::new(),
            peer_have: HashMap::new(),
            last_pick: HashMap::new(),
            subscribers: BTreeSet::new(),
            owed_have: BTreeSet::new(),
            owed_subscribe: BTreeSet::new(),
            manifest_fetch: None,
            manifest_at: Duration::ZERO,
            partial: BTreeMap::new(),
            storing: BTreeSet::new(),
            hashing: HashMap::new(),
            received: HashMap::new(),
            sent: 0,
            error: None,
        }
    }

    fn have_bytes(&self) -> u64 {
        match (&self.manifest, &self.have) {
            (Some(m), Some(h)) => (0..m.pieces())
                .filter(|&i| h.get(i))
                .map(|i| u64::from(m.piece_len(i)))
                .sum(),
            _ => 0,
        }
    }

    /// Bytes of its pieces held in memory: being assembled, hashed or stored.
    fn held(&self) -> u64 {
        let piece = self
            .manifest
            .as_ref()
            .map_or(0, |m| u64::from(m.piece_size));
        (self.partial.len() + self.storing.len()) as u64 * piece
    }

    /// Whether it has something to serve: a piece, or all of it (a file of no bytes has no
    /// pieces).
    fn has_any(&self) -> bool {
        self.have
            .as_ref()
            .is_some_and(|h| h.count() > 0 || h.complete())
    }
}

#[derive(Debug)]
struct PeerState {
    /// The largest frame its channel carries.
    max_frame: usize,
    inflight: usize,
    /// Sent bad data: never asked again.
    banned: bool,
    /// Failed pieces it contributed to (two strikes: banned).
    strikes: u32,
    /// Its requests we accepted and have not read yet (see [`Config::max_asked`]).
    asked: usize,
    /// Bytes being read to serve it.
    reading: u64,
    /// Bytes of frames handed out for it and not yet reported sent.
    unsent: u64,
    /// It answered [`RejectReason::Busy`]: asked for nothing new until then.
    busy_until: Option<Time>,
    /// Files it announced (see [`Config::max_files_per_peer`]).
    announced: usize,
    /// How many answers are owed to it while its channel has its send window out (see
    /// [`Engine::reply`]; each is sent once, however often it was asked for meanwhile): those
    /// of files forgotten since count until the next [`Engine::pay`] recounts.
    owed: usize,
    /// Bytes of blocks taken from it, and served to it, over this connection.
    received: u64,
    sent: u64,
}

/// An answer to a peer's frame that waits while the peer's channel takes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// Our pieces of the file (sent as they are when it goes out).
    Have,
    /// Our subscription to the file.
    Subscribe,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Time,
    /// Bytes of the block that arrived so far (a peer whose channel carries smaller messages
    /// sends a block in several frames).
    got: u32,
}

/// The file engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    rng: Rng,
    files: BTreeMap<FileId, File>,
    peers: BTreeMap<PeerId, PeerState>,
    /// Requests in flight: (file, block) → who was asked, when.
    requests: BTreeMap<(FileId, BlockRef), BTreeMap<PeerId, Sent>>,
    /// Requests we accepted, until their block is read; a cancel removes the entry so the
    /// read is dropped.
    serving: BTreeSet<(PeerId, FileId, BlockRef)>,
    /// Accepted requests not read yet (waiting for upload budget or for room in their peer's
    /// send window), oldest first.
    upload_queue: VecDeque<(PeerId, FileId, BlockRef)>,
    /// Upload budget in bytes (negative: in debt for a block larger than the budget).
    upload_tokens: f64,
    upload_at: Time,
    out: VecDeque<Output>,
    /// Files being downloaded, in the order their downloads started: pieces are asked for in
    /// that order, so downloads finish one after another rather than all late together.
    queue: Vec<FileId>,
}

impl Engine {
    /// A new engine.
    pub fn new(config: Config) -> Self {
        Engine {
            rng: Rng::new(config.seed),
            config,
            files: BTreeMap::new(),
            peers: BTreeMap::new(),
            requests: BTreeMap::new(),
            serving: BTreeSet::new(),
            upload_queue: VecDeque::new(),
            upload_tokens: 0.0,
            upload_at: Duration::ZERO,
            out: VecDeque::new(),
            queue: Vec::new(),
        }
    }

    /// Changes the upload limit (bytes a second; `None`: none).
    pub fn set_upload_limit(&mut self, limit: Option<u64>, now: Time) {
        self.config.upload_limit = limit;
        self.pump_uploads(now);
    }

    /// Hands queued requests to the driver as the upload budget allows.
    fn pump_uploads(&mut self, now: Time) {
        let rate = self
            .config
            .upload_limit
            .filter(|r| *r > 0)
            .map(|r| r as f64);
        if let Some(rate) = rate {
            // A tenth of a second of budget may be saved up: smooth, but no long bursts.
            let burst = rate / 10.0;
            let dt = now.saturating_sub(self.upload_at).as_secs_f64();
            self.upload_at = now;
            self.upload_tokens = (self.upload_tokens + dt * rate).min(burst);
        }
        // The send budget is shared by the peers being served (something of theirs being read,
        // on its way out or waiting): each may have its share of it out at once, and at most
        // its send window, so peers whose channels are slow cannot hold all of it while others
        // wait.
        let served = self
            .peers
            .values()
            .filter(|p| p.asked > 0 || p.reading + p.unsent > 0)
            .count()
            .max(1) as u64;
        let limit = self
            .config
            .send_window
            .min(self.config.send_budget / served);
        let mut i = 0;
        while i < self.upload_queue.len() {
            if rate.is_some() && self.upload_tokens <= 0.0 {
                break;
            }
            let (peer, id, block) = &self.upload_queue[i];
            let Some(ps) = self.peers.get_mut(peer) else {
                self.upload_queue.remove(i);
                continue;
            };
            // This peer has its share out and its channel has not taken it yet: its requests
            // wait (others' go ahead of them).
            if ps.reading + ps.unsent >= limit {
                i += 1;
                continue;
            }
            if !self.serving.contains(&(peer.clone(), *id, *block)) {
                self.upload_queue.remove(i);
                continue;
            }
            ps.reading += u64::from(block.len);
            if rate.is_some() {
                self.upload_tokens -= f64::from(block.len);
            }
            let (peer, id, block) = self.upload_queue.remove(i).expect("in range");
            self.out.push_back(Output::Read(peer, id, block));
        }
    }

    /// Drops an accepted request of `peer` (answered, failed or cancelled); whether it was one.
    fn unserve(&mut self, peer: &PeerId, id: FileId, block: BlockRef) -> bool {
        let was = self.serving.remove(&(peer.clone(), id, block));
        if was {
            if let Some(ps) = self.peers.get_mut(peer) {
                ps.asked = ps.asked.saturating_sub(1);
            }
        }
        was
    }

    /// A read for `peer` finished (or failed).
    fn read_done(&mut self, peer: &PeerId, block: BlockRef) {
        if let Some(ps) = self.peers.get_mut(peer) {
            ps.reading = ps.reading.saturating_sub(u64::from(block.len));
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Engine::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Time> {
        // (With budget left, what waits in the queue waits for send windows: no timer.)
        let upload = match (self.config.upload_limit, self.upload_queue.is_empty()) {
            (Some(rate), false) if rate > 0 && self.upload_tokens <= 0.0 => {
                let wait = (-self.upload_tokens).max(0.0) / rate as f64;
                Some(self.upload_at + Duration::from_secs_f64(wait.max(0.001)))
            }
            _ => None,
        };
        let busy = self.peers.values().filter_map(|p| p.busy_until);
        let manifests = self
            .files
            .values()
            .filter(|f| f.manifest_fetch.is_some())
            .map(|f| f.manifest_at + self.config.request_timeout);
        self.requests
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.at + self.config.request_timeout)
            .chain(upload)
            .chain(busy)
            .chain(manifests)
            .min()
    }

    /// Every file known in the swarm.
    pub fn files(&self) -> Vec<FileInfo> {
        let fetching = self.fetching(None);
        let count = |id: &FileId| {
            fetching
                .iter()
                .find(|(f, _)| *f == id)
                .map_or(0, |(_, n)| *n)
        };
        self.files
            .iter()
            .map(|(id, f)| Self::info(id, f, count(id)))
            .collect()
    }

    /// File `id`, if known.
    pub fn file(&self, id: &FileId) -> Option<FileInfo> {
        let fetching = self.fetching(Some(id));
        let n = fetching.first().map_or(0, |(_, n)| *n);
        self.files.get(id).map(|f| Self::info(id, f, n))
    }

    /// How many peers fetch each file (of those we serve; only `only`, if given): the peers
    /// with requests of it we accepted and have not answered. (`serving` is in peer order, then
    /// file: each (peer, file) pair is one run of it. A list, not a map: few files are served at
    /// once, and it keeps the wasm smaller.)
    fn fetching(&self, only: Option<&FileId>) -> Vec<(&FileId, usize)> {
        let mut counts: Vec<(&FileId, usize)> = Vec::new();
        let mut last: Option<(&PeerId, &FileId)> = None;
        for (peer, id, _) in &self.serving {
            if only.is_some_and(|o| o != id) || last == Some((peer, id)) {
                continue;
            }
            last = Some((peer, id));
            match counts.iter_mut().find(|(f, _)| *f == id) {
                Some((_, n)) => *n += 1,
                None => counts.push((id, 1)),
            }
        }
        counts
    }

    fn info(id: &FileId, f: &File, uploading: usize) -> FileInfo {
        FileInfo {
            id: *id,
            name: f.name.clone(),
            size: f.size,
            mime: f.mime.clone(),
            sources: f.sources.len(),
            have: f.have_bytes(),
            downloading: f.local == Local::Downloading,
            complete: f.have.as_ref().is_some_and(Bitfield::complete),
            received: f.received.values().sum(),
            sent: f.sent,
            uploading,
            error: f.error.clone(),
        }
    }

    /// Files this peer offers (has some of). Its peers take at most
    /// [`Config::max_files_per_peer`] of them from it.
    pub fn offered(&self) -> usize {
        self.files.values().filter(|f| f.has_any()).count()
    }

    /// Whether a file shared now would reach the peers: false once this peer offers as many as
    /// a peer takes from one (see [`Config::max_files_per_peer`]).
    pub fn may_share(&self) -> bool {
        self.offered() < self.config.max_files_per_peer
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The manifest of a file, once known.
    pub fn manifest(&self, id: &FileId) -> Option<&Manifest> {
        self.files.get(id)?.manifest.as_ref()
    }

    /// Bytes of file `id` this peer has (stored and verified); 0 for a file it does not know.
    pub fn have_bytes(&self, id: &FileId) -> u64 {
        self.files.get(id).map_or(0, |f| f.have_bytes())
    }

    /// Which pieces of a file we have.
    pub fn have(&self, id: &FileId) -> Option<&Bitfield> {
        self.files.get(id)?.have.as_ref()
    }

    /// Bytes of files received from a connected peer, and served to it, over its current
    /// connection: `(received, sent)`; `None` for a peer not connected.
    pub fn traffic(&self, peer: &PeerId) -> Option<(u64, u64)> {
        self.peers.get(peer).map(|p| (p.received, p.sent))
    }

    /// Bytes of a file received from each peer.
    pub fn received_from(&self, id: &FileId) -> HashMap<PeerId, u64> {
        self.files
            .get(id)
            .map(|f| f.received.clone())
            .unwrap_or_default()
    }

    fn send(&mut self, peer: &PeerId, frame: Frame) {
        let bytes = frame.encode();
        if let Some(ps) = self.peers.get_mut(peer) {
            ps.unsent += bytes.len() as u64;
        }
        self.out.push_back(Output::Send(peer.clone(), bytes));
    }

    /// Answers `peer` about file `id` now, or, while its channel has its send window out (it
    /// takes nothing of what it was sent), once it has taken some: a peer that asks over and
    /// over and reads nothing is owed one answer per file, not sent one per question (an
    /// unbounded queue).
    fn reply(&mut self, peer: &PeerId, id: FileId, owed: Owed) {
        let (Some(ps), Some(f)) = (self.peers.get_mut(peer), self.files.get_mut(&id)) else {
            return;
        };
        if ps.unsent < self.config.send_window {
            return self.answer(peer, id, owed);
        }
        let set = match owed {
            Owed::Have => &mut f.owed_have,
            Owed::Subscribe => &mut f.owed_subscribe,
        };
        if set.insert(peer.clone()) {
            ps.owed += 1;
        }
    }

    /// Sends what [`reply`](Self::reply) owed `peer`, as things stand now.
    fn answer(&mut self, peer: &PeerId, id: FileId, owed: Owed) {
        let Some(f) = self.files.get(&id) else { return };
        match owed {
            Owed::Have => {
                if let Some(have) = &f.have {
                    let bits = have.as_bytes().to_vec();
                    self.send(peer, Frame::Have { id, bits });
                }
            }
            Owed::Subscribe => {
                if f.local == Local::Downloading && f.sources.contains(peer) {
                    self.send(peer, Frame::Subscribe { id });
                }
            }
        }
    }

    /// Sends what is owed to `peer` while its channel has room.
    fn pay(&mut self, peer: &PeerId) {
        if self.peers.get(peer).is_none_or(|p| p.owed == 0) {
            return;
        }
        let mut owed = Vec::new();
        for (id, f) in &self.files {
            for (set, kind) in [
                (&f.owed_have, Owed::Have),
                (&f.owed_subscribe, Owed::Subscribe),
            ] {
                if set.contains(peer) {
                    owed.push((*id, kind));
                }
            }
        }
        let mut left = owed.len();
        for (id, kind) in owed {
            if self
                .peers
                .get(peer)
                .is_none_or(|p| p.unsent >= self.config.send_window)
            {
                break;
            }
            if let Some(f) = self.files.get_mut(&id) {
                match kind {
                    Owed::Have => f.owed_have.remove(peer),
                    Owed::Subscribe => f.owed_subscribe.remove(peer),
                };
            }
            left -= 1;
            self.answer(peer, id, kind);
        }
        if let Some(ps) = self.peers.get_mut(peer) {
            ps.owed = left;
        }
    }

    fn event(&mut self, e: TransferEvent) {
        self.out.push_back(Output::Event(e));
    }

    fn announce_frame(id: &FileId, f: &File) -> Frame {
        Frame::Announce {
            id: *id,
            name: f.name.clone(),
            size: f.size,
            mime: f.mime.clone(),
        }
    }

    /// Tells every peer we have (some of) `id`.
    fn announce(&mut self, id: &FileId) {
        let Some(f) = self.files.get(id) else { return };
        let frame = Self::announce_frame(id, f);
        let peers: Vec<PeerId> = self.peers.keys().cloned().collect();
        for p in peers {
            self.send(&p, frame.clone());
        }
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, input: Input, now: Time) {
        match input {
            Input::PeerUp(peer, max_frame) => {
                let ps = self.peers.entry(peer.clone()).or_insert(PeerState {
                    max_frame,
                    inflight: 0,
                    banned: false,
                    strikes: 0,
                    asked: 0,
                    reading: 0,
                    unsent: 0,
                    owed: 0,
                    busy_until: None,
                    announced: 0,
                    received: 0,
                    sent: 0,
                });
                ps.max_frame = max_frame;
                let frames: Vec<Frame> = self
                    .files
                    .iter()
                    .filter(|(_, f)| f.has_any())
                    .map(|(id, f)| Self::announce_frame(id, f))
                    .collect();
                for f in frames {
                    self.send(&peer, f);
                }
            }
            Input::PeerDown(peer) => self.peer_down(&peer, now),
            Input::Frame(peer, bytes) => match Frame::decode(&bytes) {
                Ok(frame) => self.on_frame(&peer, frame, now),
                Err(e) => self.ban(&peer, format!("sent a malformed frame: {e}"), now),
            },
            Input::Malformed(peer, e) => {
                self.ban(&peer, format!("sent a malformed frame: {e}"), now)
            }
            Input::Share(manifest) => {
                let id = manifest.id();
                let have = Bitfield::full(manifest.pieces());
                self.adopt(id, manifest, have, Local::Serving);
                self.announce(&id);
            }
            Input::Resume(manifest, have) => {
                let id = manifest.id();
                let local = if have.complete() {
                    Local::Serving
                } else {
                    Local::Downloading
                };
                let any = have.count() > 0;
                self.adopt(id, manifest, have, local);
                if any {
                    self.announce(&id);
                }
                self.start_download(&id, now);
            }
            Input::Download(id) => {
                if let Some(f) = self.files.get_mut(&id) {
                    if f.have.as_ref().is_some_and(|h| h.complete()) {
                        return; // we have it whole
                    }
                    if f.local == Local::Known || f.local == Local::Serving {
                        f.local = Local::Downloading;
                    }
                    f.error = None;
                }
                self.start_download(&id, now);
            }
            Input::Cancel(id) => self.stop_download(&id),
            Input::Unshare(id) => {
                self.stop_download(&id);
                if let Some(f) = self.files.get_mut(&id) {
                    let had = f.has_any();
                    f.local = Local::Known;
                    f.have = None;
                    f.error = None;
                    f.subscribers.clear();
                    if had {
                        let peers: Vec<PeerId> = self.peers.keys().cloned().collect();
                        for p in peers {
                            self.send(&p, Frame::Unannounce { id });
                        }
                    }
                    if self.files[&id].sources.is_empty() {
                        self.files.remove(&id);
                        self.event(TransferEvent::FileRemoved(id));
                    }
                }
            }
            Input::Hashed(id, piece, data, digest) => self.on_hashed(id, piece, data, digest, now),
            Input::Stored(id, piece) => self.on_stored(&id, piece, now),
            Input::StoreFailed(id, piece, error) => {
                let Some(f) = self.files.get_mut(&id) else {
                    return;
                };
                f.storing.remove(&piece);
                // The other pieces in flight when storage failed fail too: the download stopped
                // at the first (and said why once); a cancelled one says nothing.
                if f.local != Local::Downloading {
                    return;
                }
                let message = format!("storing failed: {error}");
                f.error = Some(message.clone());
                self.stop_download(&id);
                self.event(TransferEvent::Error(id, message));
            }
            Input::StoreDropped(id, piece) => {
                if let Some(f) = self.files.get_mut(&id) {
                    f.storing.remove(&piece);
                }
                self.schedule(now);
            }
            Input::BlockRead(peer, id, block, data) => {
                self.read_done(&peer, block);
                let Some(max_frame) = self.peers.get(&peer).map(|p| p.max_frame) else {
                    return;
                };
                if self.unserve(&peer, id, block) {
                    if let Some(f) = self.files.get_mut(&id) {
                        f.sent += data.len() as u64;
                    }
                    if let Some(ps) = self.peers.get_mut(&peer) {
                        ps.sent += data.len() as u64;
                    }
                    // In frames that fit the peer's channel (one, in every current browser).
                    let room = max_frame
                        .saturating_sub(super::wire::BLOCK_OVERHEAD)
                        .max(1024);
                    if data.len() <= room {
                        return self.send(
                            &peer,
                            Frame::Block {
                                id,
                                piece: block.piece,
                                offset: block.offset,
                                data,
                            },
                        );
                    }
                    for (i, part) in data.chunks(room).enumerate() {
                        self.send(
                            &peer,
                            Frame::Block {
                                id,
                                piece: block.piece,
                                offset: block.offset + (i * room) as u32,
                                data: part.to_vec(),
                            },
                        );
                    }
                } else {
                    // Cancelled while it was read: its room in the window is free again.
                    self.pump_uploads(now);
                }
            }
            Input::ReadFailed(peer, id, block) => {
                self.read_done(&peer, block);
                if self.unserve(&peer, id, block) {
                    self.send(
                        &peer,
                        Frame::Reject {
                            id,
                            block,
                            reason: RejectReason::NotHere,
                        },
                    );
                }
                self.pump_uploads(now);
            }
            Input::Sent(peer, bytes) => {
                if let Some(ps) = self.peers.get_mut(&peer) {
                    ps.unsent = ps.unsent.saturating_sub(bytes as u64);
                }
                self.pay(&peer);
                self.pump_uploads(now);
            }
        }
        // Whatever changed (a download done, a source come or gone), the next in line start.
        for id in self.active_downloads() {
            self.fetch_manifest(&id, None, now);
        }
    }

    /// The downloads that may fetch their manifests now: the first
    /// [`Config::max_active_downloads`] in the order asked, of those with a connected source.
    fn active_downloads(&self) -> Vec<FileId> {
        self.queue
            .iter()
            .filter(|id| {
                self.files.get(*id).is_some_and(|f| {
                    f.sources
                        .iter()
                        .any(|p| self.peers.get(p).is_some_and(|s| !s.banned))
                })
            })
            .take(self.config.max_active_downloads)
            .copied()
            .collect()
    }

    fn adopt(&mut self, id: FileId, manifest: Manifest, have: Bitfield, local: Local) {
        let f = self.files.entry(id).or_insert_with(|| {
            File::new(manifest.name.clone(), manifest.size, manifest.mime.clone())
        });
        f.name = manifest.name.clone();
        f.size = manifest.size;
        f.mime = manifest.mime.clone();
        f.manifest = Some(manifest);
        f.have = Some(have);
        f.local = local;
    }

    fn start_download(&mut self, id: &FileId, now: Time) {
        if self
            .files
            .get(id)
            .is_none_or(|f| f.local != Local::Downloading)
        {
            return;
        }
        if !self.queue.contains(id) {
            self.queue.push(*id);
        }
        // A file we had and let go of (unshared, deleted) keeps its manifest: it starts again
        // with no pieces (there is no manifest to fetch to set that up).
        if let Some(f) = self.files.get_mut(id) {
            if let (Some(m), None) = (&f.manifest, &f.have) {
                f.have = Some(Bitfield::new(m.pieces()));
            }
        }
        if self.complete_if_empty(id) {
            return;
        }
        let sources: Vec<PeerId> = self.files[id].sources.iter().cloned().collect();
        for p in &sources {
            self.send(p, Frame::Subscribe { id: *id });
        }
        self.fetch_manifest(id, None, now);
        self.schedule(now);
    }

    /// Asks a source for the manifest of `id` if it is needed and not being fetched: the
    /// first usable source after `after` (the one that just failed to answer), so that each
    /// is tried in turn.
    fn fetch_manifest(&mut self, id: &FileId, after: Option<&PeerId>, now: Time) {
        let Some(f) = self.files.get(id) else { return };
        if f.local != Local::Downloading || f.manifest.is_some() || f.manifest_fetch.is_some() {
            return;
        }
        // Not yet its turn (see `Config::max_active_downloads`).
        if !self.active_downloads().contains(id) {
            return;
        }
        let usable: Vec<&PeerId> = f
            .sources
            .iter()
            .filter(|p| self.peers.get(*p).is_some_and(|s| !s.banned))
            .collect();
        let from = after
            .and_then(|a| usable.iter().find(|p| **p > a))
            .or(usable.first())
            .map(|p| (*p).clone());
        if let Some(from) = from {
            let f = self.files.get_mut(id).expect("present");
            f.manifest_fetch = Some((from.clone(), Vec::new()));
            f.manifest_at = now;
            self.send(&from, Frame::ManifestRequest { id: *id });
        }
    }

    fn stop_download(&mut self, id: &FileId) {
        let Some(f) = self.files.get_mut(id) else {
            return;
        };
        if f.local == Local::Downloading {
            f.local = if f.has_any() {
                Local::Serving
            } else {
                Local::Known
            };
        }
        f.partial.clear();
        f.manifest_fetch = None;
        self.queue.retain(|q| q != id);
        let cancels: Vec<((FileId, BlockRef), BTreeMap<PeerId, Sent>)> = self
            .requests
            .iter()
            .filter(|((fid, _), _)| fid == id)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for ((fid, block), asked) in cancels {
            self.requests.remove(&(fid, block));
            for p in asked.keys() {
                if let Some(ps) = self.peers.get_mut(p) {
                    ps.inflight = ps.inflight.saturating_sub(1);
                }
                self.send(p, Frame::Cancel { id: fid, block });
            }
        }
    }

    fn peer_down(&mut self, peer: &PeerId, now: Time) {
        self.peers.remove(peer);
        self.serving.retain(|(p, _, _)| p != peer);
        self.upload_queue.retain(|(p, _, _)| p != peer);
        self.drop_requests_to(peer);
        let mut gone = Vec::new();
        let mut refetch = Vec::new();
        for (id, f) in self.files.iter_mut() {
            f.sources.remove(peer);
            f.peer_have.remove(peer);
            f.last_pick.remove(peer);
            f.subscribers.remove(peer);
            f.owed_have.remove(peer);
            f.owed_subscribe.remove(peer);
            if f.manifest_fetch.as_ref().is_some_and(|(p, _)| p == peer) {
                f.manifest_fetch = None;
                refetch.push(*id);
            }
            if f.sources.is_empty() && f.local == Local::Known {
                gone.push(*id);
            }
        }
        for id in gone {
            self.files.remove(&id);
            self.event(TransferEvent::FileRemoved(id));
        }
        for id in refetch {
            self.fetch_manifest(&id, None, now);
        }
        self.schedule(now);
    }

    fn drop_requests_to(&mut self, peer: &PeerId) {
        for asked in self.requests.values_mut() {
            asked.remove(peer);
        }
        self.requests.retain(|_, asked| !asked.is_empty());
    }

    fn ban(&mut self, peer: &PeerId, reason: String, now: Time) {
        let Some(ps) = self.peers.get_mut(peer) else {
            return;
        };
        if ps.banned {
            return;
        }
        ps.banned = true;
        ps.inflight = 0;
        self.drop_requests_to(peer);
        for f in self.files.values_mut() {
            f.peer_have.remove(peer);
            f.last_pick.remove(peer);
            if f.manifest_fetch.as_ref().is_some_and(|(p, _)| p == peer) {
                f.manifest_fetch = None;
            }
        }
        self.event(TransferEvent::PeerBanned(peer.clone(), reason));
        let ids: Vec<FileId> = self.files.keys().cloned().collect();
        for id in ids {
            self.fetch_manifest(&id, None, now);
        }
        self.schedule(now);
    }

    fn on_frame(&mut self, peer: &PeerId, frame: Frame, now: Time) {
        if self.peers.get(peer).is_none_or(|p| p.banned) {
            return;
        }
        match frame {
            Frame::Announce {
                id,
                name,
                size,
                mime,
            } => {
                let new = !self.files.contains_key(&id);
                let Some(ps) = self.peers.get_mut(peer) else {
                    return;
                };
                let known = self
                    .files
                    .get(&id)
                    .is_some_and(|f| f.sources.contains(peer));
                if !known {
                    // Each file a peer announces costs every peer memory (and a line on the
                    // page): past the cap, its announcements are ignored.
                    if ps.announced >= self.config.max_files_per_peer {
                        return;
                    }
                    ps.announced += 1;
                }
                let f = self
                    .files
                    .entry(id)
                    .or_insert_with(|| File::new(name.clone(), size, mime.clone()));
                f.sources.insert(peer.clone());
                if new {
                    self.event(TransferEvent::FileAnnounced {
                        id,
                        name,
                        size,
                        mime,
                    });
                }
                if self.files[&id].local == Local::Downloading {
                    self.reply(peer, id, Owed::Subscribe);
                    self.fetch_manifest(&id, None, now);
                }
            }
            Frame::Unannounce { id } => {
                if let Some(f) = self.files.get_mut(&id) {
                    if f.sources.remove(peer) {
                        if let Some(ps) = self.peers.get_mut(peer) {
                            ps.announced = ps.announced.saturating_sub(1);
                        }
                    }
                    f.peer_have.remove(peer);
                    f.last_pick.remove(peer);
                    if f.sources.is_empty() && f.local == Local::Known {
                        self.files.remove(&id);
                        self.event(TransferEvent::FileRemoved(id));
                    }
                }
            }
            Frame::Subscribe { id } => {
                let Some(f) = self.files.get_mut(&id) else {
                    return;
                };
                f.subscribers.insert(peer.clone());
                if f.have.is_some() {
                    self.reply(peer, id, Owed::Have);
                }
            }
            Frame::ManifestRequest { id } => {
                let Some(m) = self.files.get(&id).and_then(|f| f.manifest.as_ref()) else {
                    return;
                };
                // A peer whose channel has not taken what it was sent yet is not sent a
                // manifest more (it costs up to 256 KiB a request): it asks again, of us or of
                // another source, when its request times out.
                if self
                    .peers
                    .get(peer)
                    .is_some_and(|p| p.unsent >= self.config.send_window)
                {
                    return;
                }
                let bytes = m.encode();
                let total = bytes.len() as u32;
                let room = self.peers.get(peer).map_or(0, |p| p.max_frame);
                let part = room
                    .saturating_sub(super::wire::MANIFEST_PART_OVERHEAD)
                    .clamp(1024, self.config.block as usize);
                for (i, chunk) in bytes.chunks(part).enumerate() {
                    self.send(
                        peer,
                        Frame::ManifestPart {
                            id,
                            offset: (i * part) as u32,
                            total,
                            bytes: chunk.to_vec(),
                        },
                    );
                }
            }
            Frame::ManifestPart {
                id,
                offset,
                total,
                bytes,
            } => self.on_manifest_part(peer, id, offset, total, bytes, now),
            Frame::Have { id, bits } => {
                let Some(f) = self.files.get_mut(&id) else {
                    return;
                };
                let Some(m) = &f.manifest else {
                    return; // asked again once the manifest is here
                };
                match Bitfield::from_bytes(&bits, m.pieces()) {
                    Some(b) => {
                        f.peer_have.insert(peer.clone(), b);
                        self.schedule(now);
                    }
                    None => self.ban(peer, "sent a bitfield of the wrong size".into(), now),
                }
            }
            Frame::HaveOne { id, piece } => {
                let Some(f) = self.files.get_mut(&id) else {
                    return;
                };
                let Some(m) = &f.manifest else { return };
                if piece >= m.pieces() {
                    return self.ban(peer, "announced a piece that does not exist".into(), now);
                }
                let n = m.pieces();
                f.peer_have
                    .entry(peer.clone())
                    .or_insert_with(|| Bitfield::new(n))
                    .set(piece);
                self.schedule(now);
            }
            Frame::Request { id, block } => self.on_request(peer, id, block, now),
            Frame::Block {
                id,
                piece,
                offset,
                data,
            } => self.on_block(peer, id, piece, offset, data, now),
            Frame::Cancel { id, block } => {
                self.unserve(peer, id, block);
                self.upload_queue
                    .retain(|(p, f, b)| !(p == peer && *f == id && *b == block));
            }
            Frame::Reject { id, block, reason } => {
                if let Some(asked) = self.requests.get_mut(&(id, block)) {
                    if asked.remove(peer).is_some() {
                        if let Some(ps) = self.peers.get_mut(peer) {
                            ps.inflight = ps.inflight.saturating_sub(1);
                        }
                    }
                    if asked.is_empty() {
                        self.requests.remove(&(id, block));
                    }
                }
                if reason == RejectReason::Busy {
                    // It holds as many of our requests as it takes: let it work through them
                    // instead of asking again at once (a reject per round trip, for nothing).
                    if let Some(ps) = self.peers.get_mut(peer) {
                        ps.busy_until = Some(now + self.config.busy_backoff);
                    }
                }
                if reason == RejectReason::NotHere {
                    // Its bitfield was wrong or it dropped the file: stop asking it for that piece.
                    if let Some(b) = self
                        .files
                        .get_mut(&id)
                        .and_then(|f| f.peer_have.get_mut(peer))
                    {
                        let n = b.len();
                        let mut fresh = Bitfield::new(n);
                        for i in (0..n).filter(|&i| i != block.piece && b.get(i)) {
                            fresh.set(i);
                        }
                        *b = fresh;
                    }
                }
                self.schedule(now);
            }
        }
    }

    fn on_manifest_part(
        &mut self,
        peer: &PeerId,
        id: FileId,
        offset: u32,
        total: u32,
        bytes: Vec<u8>,
        now: Time,
    ) {
        let Some(f) = self.files.get_mut(&id) else {
            return;
        };
        let Some((from, buf)) = &mut f.manifest_fetch else {
            return;
        };
        if from != peer {
            return;
        }
        // Parts come in order on an ordered channel; anything else is bad data.
        if offset as usize != buf.len()
            || total > 16 * 1024 * 1024
            || buf.len() + bytes.len() > total as usize
        {
            return self.ban(peer, "sent a malformed manifest".into(), now);
        }
        buf.extend_from_slice(&bytes);
        if buf.len() < total as usize {
            f.manifest_at = now;
            return;
        }
        let bytes = std::mem::take(buf);
        f.manifest_fetch = None;
        match Manifest::decode(&bytes, &id) {
            Ok(m) => {
                f.have = Some(Bitfield::new(m.pieces()));
                f.manifest = Some(m);
                if self.complete_if_empty(&id) {
                    return;
                }
                let Some(f) = self.files.get_mut(&id) else {
                    return;
                };
                // Ask every source again for its pieces, now that they can be read.
                let sources: Vec<PeerId> = f.sources.iter().cloned().collect();
                for p in sources {
                    self.send(&p, Frame::Subscribe { id });
                }
                self.schedule(now);
            }
            Err(e) => self.ban(peer, format!("sent a bad manifest: {e}"), now),
        }
    }

    fn on_request(&mut self, peer: &PeerId, id: FileId, block: BlockRef, now: Time) {
        let ok = self.files.get(&id).and_then(|f| {
            let m = f.manifest.as_ref()?;
            let have = f.have.as_ref()?.get(block.piece);
            Some((have, m.piece_len(block.piece)))
        });
        let reason = match ok {
            None | Some((false, _)) => Some(RejectReason::NotHere),
            Some((true, len)) => {
                let end = u64::from(block.offset) + u64::from(block.len);
                if block.len == 0 || block.len as usize > super::MAX_BLOCK || end > u64::from(len) {
                    Some(RejectReason::Invalid)
                } else {
                    None
                }
            }
        };
        let Some(ps) = self.peers.get_mut(peer) else {
            return;
        };
        let reason = match reason {
            // Asked again while we have it: the one answer will do.
            None if self.serving.contains(&(peer.clone(), id, block)) => return,
            // More than it can have in flight: it is flooding us, not keeping a channel full.
            None if ps.asked >= self.config.max_asked => Some(RejectReason::Busy),
            r => r,
        };
        match reason {
            // Not while its channel takes nothing (it may be asking and not reading): the
            // request times out there, as a lost answer would.
            Some(_) if ps.unsent >= self.config.send_window => {}
            Some(reason) => self.send(peer, Frame::Reject { id, block, reason }),
            None => {
                ps.asked += 1;
                self.serving.insert((peer.clone(), id, block));
                self.upload_queue.push_back((peer.clone(), id, block));
                self.pump_uploads(now);
            }
        }
    }

    fn on_block(
        &mut self,
        peer: &PeerId,
        id: FileId,
        piece: u32,
        offset: u32,
        data: Vec<u8>,
        now: Time,
    ) {
        let block_size = self.config.block;
        // The block of ours this data belongs to: the whole block, or a part of it from a peer
        // whose channel carries smaller messages.
        let block = {
            let Some(m) = self.files.get(&id).and_then(|f| f.manifest.as_ref()) else {
                return;
            };
            if piece >= m.pieces() {
                return;
            }
            let b = block_ref(m, piece, offset / block_size, block_size);
            let end = u64::from(offset) + data.len() as u64;
            if data.is_empty()
                || b.offset >= m.piece_len(piece)
                || end > u64::from(b.offset + b.len)
            {
                return;
            }
            b
        };
        // Only blocks we asked this peer for are taken.
        let Some(asked) = self.requests.get_mut(&(id, block)) else {
            return;
        };
        let Some(sent) = asked.get_mut(peer) else {
            return;
        };
        sent.got = sent.got.saturating_add(data.len() as u32);
        let whole = sent.got >= block.len;
        if whole {
            asked.remove(peer);
            let others: Vec<PeerId> = std::mem::take(asked).into_keys().collect();
            self.requests.remove(&(id, block));
            for p in [peer].into_iter().chain(others.iter()) {
                if let Some(ps) = self.peers.get_mut(p) {
                    ps.inflight = ps.inflight.saturating_sub(1);
                }
            }
            // Endgame duplicates still in flight elsewhere: cancel them.
            for p in &others {
                self.send(p, Frame::Cancel { id, block });
            }
        }
        if let Some(ps) = self.peers.get_mut(peer) {
            ps.received += data.len() as u64;
        }
        let Some(f) = self.files.get_mut(&id) else {
            return;
        };
        *f.received.entry(peer.clone()).or_default() += data.len() as u64;
        let Some(p) = f.partial.get_mut(&piece) else {
            return self.schedule(now);
        };
        let b = (offset / block_size) as usize;
        if b < p.got.len() && !p.got[b] {
            // Every peer whose bytes went into the piece answers for it if its hash fails (a
            // peer that sends parts that do not add up to the block is caught there too).
            p.buf[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
            p.contributors.insert(peer.clone());
            if whole {
                p.got[b] = true;
                p.missing -= 1;
            }
        }
        if !whole {
            return;
        }
        if p.missing == 0 {
            let p = f.partial.remove(&piece).expect("present");
            f.storing.insert(piece);
            f.hashing.insert(piece, p.contributors);
            self.out.push_back(Output::Hash(id, piece, p.buf));
        }
        self.schedule(now);
    }

    /// A completed piece's hash: stored if it matches the manifest, else fetched again and its
    /// senders blamed.
    fn on_hashed(&mut self, id: FileId, piece: u32, data: Vec<u8>, digest: [u8; 32], now: Time) {
        let Some(f) = self.files.get_mut(&id) else {
            return;
        };
        let Some(contributors) = f.hashing.remove(&piece) else {
            return;
        };
        let ok = f
            .manifest
            .as_ref()
            .is_some_and(|m| m.matches(piece, data.len(), &digest));
        if ok {
            self.out.push_back(Output::Store(id, piece, data));
            return;
        }
        f.storing.remove(&piece);
        if !ok {
            self.bad_piece(contributors, now);
        }
        self.schedule(now);
    }

    /// A piece failed its hash: its only contributor is banned; with several, each gets a strike
    /// (the piece is then fetched again, and a second failure bans).
    fn bad_piece(&mut self, contributors: BTreeSet<PeerId>, now: Time) {
        let sole = contributors.len() == 1;
        for c in contributors {
            let strikes = self.peers.get_mut(&c).map(|ps| {
                ps.strikes += 1;
                ps.strikes
            });
            if sole || strikes.unwrap_or(0) >= 2 {
                self.ban(&c, "sent a piece that failed its SHA-256 check".into(), now);
            }
        }
    }

    /// A download with nothing to fetch — a file of no bytes, once its manifest is known — is
    /// complete at once; whether it was.
    fn complete_if_empty(&mut self, id: &FileId) -> bool {
        let Some(f) = self.files.get_mut(id) else {
            return false;
        };
        let empty = f.have.as_ref().is_some_and(|h| h.is_empty());
        if f.local != Local::Downloading || !empty {
            return false;
        }
        let size = f.size;
        self.announce(id);
        self.event(TransferEvent::Progress(*id, 0, size));
        self.download_complete(id);
        true
    }

    /// A download has every piece: it seeds from now on, and the application is told.
    fn download_complete(&mut self, id: &FileId) {
        if let Some(f) = self.files.get_mut(id) {
            f.local = Local::Serving;
        }
        self.queue.retain(|q| q != id);
        self.event(TransferEvent::Complete(*id));
    }

    fn on_stored(&mut self, id: &FileId, piece: u32, now: Time) {
        let Some(f) = self.files.get_mut(id) else {
            return;
        };
        f.storing.remove(&piece);
        let first = !f.has_any();
        let Some(have) = f.have.as_mut() else { return };
        if !have.set(piece) {
            return;
        }
        let complete = have.complete();
        let subscribers: Vec<PeerId> = f.subscribers.iter().cloned().collect();
        let (have_bytes, size) = (f.have_bytes(), f.size);
        for p in subscribers {
            self.send(&p, Frame::HaveOne { id: *id, piece });
        }
        if first {
            self.announce(id);
        }
        self.event(TransferEvent::Progress(*id, have_bytes, size));
        if complete {
            self.download_complete(id);
        }
        self.schedule(now);
    }

    /// Acts on requests that timed out at `now`, and on upload budget that came back.
    pub fn handle_timeout(&mut self, now: Time) {
        self.pump_uploads(now);
        for ps in self.peers.values_mut() {
            if ps.busy_until.is_some_and(|t| t <= now) {
                ps.busy_until = None;
            }
        }
        let timeout = self.config.request_timeout;
        // Manifests not answered in time: asked of the next source.
        let late: Vec<(FileId, PeerId)> = self
            .files
            .iter_mut()
            .filter(|(_, f)| f.manifest_fetch.is_some() && f.manifest_at + timeout <= now)
            .filter_map(|(id, f)| f.manifest_fetch.take().map(|(p, _)| (*id, p)))
            .collect();
        for (id, peer) in late {
            self.fetch_manifest(&id, Some(&peer), now);
        }
        let mut expired = Vec::new();
        for (key, asked) in self.requests.iter_mut() {
            let late: Vec<PeerId> = asked
                .iter()
                .filter(|(_, s)| s.at + timeout <= now)
                .map(|(p, _)| p.clone())
                .collect();
            for p in late {
                asked.remove(&p);
                expired.push((*key, p));
            }
        }
        self.requests.retain(|_, a| !a.is_empty());
        for ((id, block), p) in expired {
            if let Some(ps) = self.peers.get_mut(&p) {
                ps.inflight = ps.inflight.saturating_sub(1);
            }
            self.send(&p, Frame::Cancel { id, block });
        }
        self.schedule(now);
    }

    /// Hands out requests: blocks of started pieces first, then new pieces (random for the
    /// first few, then rarest first), then — when nothing is left unrequested — endgame
    /// duplicates.
    fn schedule(&mut self, now: Time) {
        let ids: Vec<FileId> = self
            .queue
            .iter()
            .filter(|id| {
                self.files
                    .get(*id)
                    .is_some_and(|f| f.local == Local::Downloading && f.manifest.is_some())
            })
            .copied()
            .collect();
        for id in ids {
            self.schedule_file(&id, now);
        }
    }

    fn schedule_file(&mut self, id: &FileId, now: Time) {
        let block = self.config.block;
        // Refill a peer's pipeline only when a batch of it is free.
        let refill_below = self
            .config
            .pipeline
            .saturating_sub(self.config.request_batch.max(1))
            .saturating_add(1);
        let peers: Vec<PeerId> = {
            let f = &self.files[id];
            let mut v: Vec<PeerId> = f
                .peer_have
                .keys()
                .filter(|p| {
                    self.peers.get(*p).is_some_and(|s| {
                        !s.banned
                            && s.busy_until.is_none_or(|t| t <= now)
                            && s.inflight < refill_below
                    })
                })
                .cloned()
                .collect();
            // Fair start: rotate who gets the first pick.
            if !v.is_empty() {
                let k = (self.rng.next_u64() % v.len() as u64) as usize;
                v.rotate_left(k);
            }
            v
        };
        for peer in peers {
            loop {
                if self.peers[&peer].inflight >= self.config.pipeline {
                    break;
                }
                let Some(b) = self.next_block(id, &peer, block) else {
                    break;
                };
                self.requests
                    .entry((*id, b))
                    .or_default()
                    .insert(peer.clone(), Sent { at: now, got: 0 });
                self.peers.get_mut(&peer).expect("present").inflight += 1;
                self.send(&peer, Frame::Request { id: *id, block: b });
            }
        }
    }

    /// The next block to ask `peer` for, if any.
    fn next_block(&mut self, id: &FileId, peer: &PeerId, block: u32) -> Option<BlockRef> {
        let f = self.files.get(id)?;
        let m = f.manifest.as_ref()?;
        let their = f.peer_have.get(peer)?;
        let unrequested = |piece: u32, p: &Partial| -> Option<BlockRef> {
            (0..p.got.len()).find_map(|b| {
                let br = block_ref(m, piece, b as u32, block);
                (!p.got[b] && !self.requests.contains_key(&(*id, br))).then_some(br)
            })
        };
        // 1. Blocks of pieces already started.
        for (&piece, p) in &f.partial {
            if their.get(piece) {
                if let Some(b) = unrequested(piece, p) {
                    return Some(b);
                }
            }
        }
        // 2. A new piece, within the memory bound (all downloads together; each may always
        // have one piece, so that none waits on the others' storage for ever).
        let have = f.have.as_ref()?;
        let all_held: u64 = self.files.values().map(File::held).sum();
        if f.held() == 0 || all_held + u64::from(m.piece_size) <= self.config.max_held {
            let candidates: Vec<u32> = (0..m.pieces())
                .filter(|&i| {
                    their.get(i)
                        && !have.get(i)
                        && !f.partial.contains_key(&i)
                        && !f.storing.contains(&i)
                })
                .collect();
            if !candidates.is_empty() {
                let pick = if have.count() + (f.partial.len() as u32) < self.config.random_first {
                    candidates[(self.rng.next_u64() % candidates.len() as u64) as usize]
                } else {
                    let rarity = |i: u32| f.peer_have.values().filter(|b| b.get(i)).count();
                    let min = candidates.iter().map(|&i| rarity(i)).min().unwrap_or(0);
                    let rarest: Vec<u32> = candidates
                        .into_iter()
                        .filter(|&i| rarity(i) == min)
                        .collect();
                    // The piece after the last one started from this peer, if it is among
                    // the rarest (a peer then reads its file in long runs); else the start of
                    // the longest run of them, or its middle where another peer's run goes on
                    // into it (so that peers do not take each other's next pieces).
                    let next = f.last_pick.get(peer).and_then(|p| p.checked_add(1));
                    match next.filter(|n| rarest.binary_search(n).is_ok()) {
                        Some(n) => n,
                        None => start_of_longest_run(&rarest, |before| {
                            f.last_pick.iter().any(|(p, &l)| p != peer && l == before)
                        }),
                    }
                };
                let len = m.piece_len(pick);
                let blocks = len.div_ceil(block) as usize;
                let f = self.files.get_mut(id).expect("present");
                f.last_pick.insert(peer.clone(), pick);
                f.partial.insert(
                    pick,
                    Partial {
                        buf: vec![0; len as usize],
                        got: vec![false; blocks],
                        missing: blocks,
                        contributors: BTreeSet::new(),
                    },
                );
                return Some(block_ref(m_of(f), pick, 0, block));
            }
        }
        // 3. Endgame: every missing block is requested; ask this peer too for one it was not asked.
        let f = self.files.get(id)?;
        let m = f.manifest.as_ref()?;
        let all_requested = f
            .partial
            .iter()
            .all(|(&piece, p)| unrequested(piece, p).is_none());
        let nothing_new = (0..m.pieces()).all(|i| {
            have.get(i) || f.partial.contains_key(&i) || f.storing.contains(&i) || !their.get(i)
        });
        if all_requested && nothing_new {
            for (&piece, p) in &f.partial {
                if !their.get(piece) {
                    continue;
                }
                for b in 0..p.got.len() {
                    let br = block_ref(m, piece, b as u32, block);
                    if !p.got[b]
                        && self
                            .requests
                            .get(&(*id, br))
                            .is_some_and(|a| !a.contains_key(peer) && a.len() < 2)
                    {
                        return Some(br);
                    }
                }
            }
        }
        None
    }
}

fn m_of(f: &File) -> &Manifest {
    f.manifest
        .as_ref()
        .expect("scheduled files have a manifest")
}

/// Where to start in the longest run of consecutive numbers in `sorted` (ascending, not
/// empty): its first, or its middle if `ongoing(first - 1)` (another run leads into it).
fn start_of_longest_run(sorted: &[u32], ongoing: impl Fn(u32) -> bool) -> u32 {
    let (mut best, mut best_len) = (0, 0);
    let mut start = 0;
    for i in 1..=sorted.len() {
        if i == sorted.len() || sorted[i] != sorted[i - 1] + 1 {
            if i - start > best_len {
                (best, best_len) = (start, i - start);
            }
            start = i;
        }
    }
    let first = sorted[best];
    if first.checked_sub(1).is_some_and(ongoing) {
        sorted[best + best_len / 2]
    } else {
        first
    }
}

/// Block `b` of `piece`.
pub(super) fn block_ref(m: &Manifest, piece: u32, b: u32, block: u32) -> BlockRef {
    let len = m.piece_len(piece);
    let offset = b * block;
    BlockRef {
        piece,
        offset,
        // (Saturating: a peer's block may claim an offset past the piece's end; such a block
        // is refused by the caller, not a panic here.)
        len: len.saturating_sub(offset).min(block),
    }
}
