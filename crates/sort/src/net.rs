//! netsort: sort the union of every server's input across `n = 2^b` servers.
//!
//! Every server reads its own input and sends each record to the server
//! whose number is the top `b` bits of the record's key, so server `i` ends
//! up with exactly the keys of the `i`-th slice of the key space; it sorts
//! them (within its memory budget, spilling runs like `triton sort`) and
//! writes its own output. Concatenating outputs `0..n` gives one sorted file.
//!
//! Wire protocol, one TCP connection per ordered pair (sender → receiver):
//!
//! * hello: 8 bytes [`MAGIC`], sender id (u32 BE), server count (u32 BE);
//! * data frames: tag `1`, length (u32 BE, a non-zero multiple of 100, at
//!   most [`MAX_FRAME_BYTES`]), then that many bytes of records;
//! * end of stream: tag `2`, the number of records sent (u64 BE).
//!
//! A connection that ends without the end-of-stream frame, or whose count
//! does not match, is an error (a dead peer), never a short output. Reads
//! and writes have a timeout, so a hung peer fails the sort instead of
//! hanging it; peers are dialled with retry until a deadline, so servers may
//! start in any order.
//!
//! Threads: the main thread reads the input, partitions and sends; one
//! thread per incoming connection receives and validates; one sorter thread
//! appends what arrives (its own records too) to a [`RunSorter`], which
//! indexes each record into a key bucket on arrival, sorts and spills full
//! runs in the background while receiving goes on, and at the end sorts the
//! small buckets of the last run (in parallel) and writes the output. Bounded channels carry
//! the frames, so memory stays within the budget and a slow disk slows the
//! senders down (TCP backpressure) rather than filling memory. Frame sizes
//! come from each server's own budget, so a receiver cuts a peer's frames
//! into pieces of its own frame size before they reach the channel. Frames
//! are allocated once and recycled ([`FramePool`]); [`plan`] counts every
//! frame that can exist, and the sorter gets the rest of the budget.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};
use crate::external::{same_file, RunSorter, SortStats, MIN_MEMORY};
use crate::output::SortOutput;
use crate::record::{key_prefix, record_count, RECORD_LEN};

/// First bytes of every connection: protocol name and version.
pub const MAGIC: [u8; 8] = *b"TNSORT01";
/// Largest data frame accepted (10,000 records).
pub const MAX_FRAME_BYTES: usize = 10_000 * RECORD_LEN;
/// Longest netsort config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Most servers in one config (keeps per-peer buffers bounded).
pub const MAX_SERVERS: usize = 1024;
pub(crate) const TAG_DATA: u8 = 1;
pub(crate) const TAG_END: u8 = 2;

/// One server of the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Its number, `0..n`.
    pub id: u32,
    /// Host name or address to listen on / dial.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A validated netsort config: servers `0..n`, `n` a power of two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Servers ordered by id; `servers[i].id == i`.
    pub servers: Vec<Server>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    servers: Vec<RawServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(rename = "serverId")]
    server_id: u32,
    host: String,
    port: RawPort,
}

/// The issue's example quotes the port (`port: "8080"`); accept both forms.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPort {
    Number(u64),
    Text(String),
}

impl Config {
    /// Parse and validate YAML of the form
    /// `servers: [{serverId: 0, host: "localhost", port: "8080"}, ...]`.
    pub fn from_yaml(text: &str) -> Result<Config> {
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| Error::Config(format!("invalid YAML: {e}")))?;
        let n = raw.servers.len();
        if n == 0 {
            return Err(Error::Config("no servers listed".into()));
        }
        if n > MAX_SERVERS {
            return Err(Error::Config(format!(
                "{n} servers listed; at most {MAX_SERVERS} supported"
            )));
        }
        if !n.is_power_of_two() {
            return Err(Error::Config(format!(
                "{n} servers listed; the count must be a power of two (1, 2, 4, 8, ...)"
            )));
        }
        let mut slots: Vec<Option<Server>> = vec![None; n];
        for s in raw.servers {
            let port = match &s.port {
                RawPort::Number(p) => u16::try_from(*p).ok(),
                RawPort::Text(t) => t.trim().parse::<u16>().ok(),
            }
            .filter(|&p| p != 0)
            .ok_or_else(|| Error::Config(format!("server {}: port must be a number in 1..65535", s.server_id)))?;
            if s.host.trim().is_empty() {
                return Err(Error::Config(format!("server {}: empty host", s.server_id)));
            }
            let slot = slots
                .get_mut(s.server_id as usize)
                .ok_or_else(|| Error::Config(format!("serverId {} out of range 0..{}", s.server_id, n - 1)))?;
            if slot.is_some() {
                return Err(Error::Config(format!("serverId {} listed twice", s.server_id)));
            }
            *slot = Some(Server {
                id: s.server_id,
                host: s.host.trim().to_string(),
                port,
            });
        }
        // n distinct ids in 0..n: every slot is filled.
        let servers: Vec<Server> = slots.into_iter().map(|s| s.expect("pigeonhole")).collect();
        Ok(Config { servers })
    }

    /// Read and validate the config file at `path` (at most
    /// [`MAX_CONFIG_BYTES`]: a config of [`MAX_SERVERS`] servers is far
    /// smaller, and a wrong path such as a device must not fill memory).
    pub fn load(path: &Path) -> Result<Config> {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
            .ctx(|| format!("reading config {}", path.display()))?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(Error::Config(format!(
                "{}: longer than {MAX_CONFIG_BYTES} bytes, too long for a netsort config",
                path.display()
            )));
        }
        Config::from_yaml(&text).map_err(|e| match e {
            Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Bits of the key that choose the server (`log2 n`).
    pub fn partition_bits(&self) -> u32 {
        self.servers.len().trailing_zeros()
    }
}

/// The server that owns a key, given its top 64 bits.
#[inline]
pub fn destination(key_prefix: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (key_prefix >> (64 - bits)) as usize
    }
}

/// Tunables of a netsort run.
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// Memory budget in bytes for this server.
    pub memory: u64,
    /// How long to keep dialling peers (and waiting for them to dial us).
    pub connect_timeout: Duration,
    /// How long a connection may stay silent (or refuse data) before the
    /// peer is declared hung.
    pub io_timeout: Duration,
}

/// The slowest disk a spill is assumed to write to, for [`default_io_timeout`].
const SLOW_SPILL_BYTES_PER_S: u64 = 25 << 20;

/// The default `io_timeout` for a server with `memory` bytes of budget: at
/// least 30 s, and long enough to spill a run of half the budget at
/// 25 MB/s. A server that is spilling stops reading its connections (its
/// sorter is busy), and a server blocked sending to such a server stops
/// sending to the others: neither is hung, and a fixed 30 s would call a
/// large server's spill of a few gigabytes a hung peer. A dead peer is still
/// noticed at once (its connections are reset).
pub fn default_io_timeout(memory: u64) -> Duration {
    Duration::from_secs(30).max(Duration::from_secs(memory / 2 / SLOW_SPILL_BYTES_PER_S))
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            memory: 1 << 30,
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(30),
        }
    }
}

/// What one server did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Records read from this server's input.
    pub input_records: u64,
    /// Records received from peers (not counting our own).
    pub received_records: u64,
    /// Records in this server's output, and runs spilled.
    pub output: SortStats,
}

/// News from the receiving threads to the main thread.
enum Event {
    Hello(u32),
    PeerDone { peer: u32, records: u64 },
    Failed(Error),
}

/// Sizes derived from the budget: frames, channel depth, sorter memory.
struct Plan {
    frame_bytes: usize,
    channel_frames: usize,
    /// Most frames that exist at once (the read buffer not counted).
    frames: usize,
    sorter_memory: u64,
}

/// The input is read in buffers of this many frames.
const READ_FRAMES: usize = 4;

fn plan(memory: u64, servers: usize) -> Result<Plan> {
    let channel_frames = 8;
    // Frames that exist at once: a partition buffer per server plus the
    // local one being handed to the sorter, one per receiving thread (n-1),
    // the channel, and the one the sorter is copying in.
    let frames = (servers + 1) + (servers - 1) + channel_frames + 1;
    let frames_in_flight = (frames + READ_FRAMES) as u64;
    let frame_bytes = (memory / 4 / frames_in_flight).clamp(RECORD_LEN as u64, MAX_FRAME_BYTES as u64) as usize
        / RECORD_LEN
        * RECORD_LEN;
    let sorter_memory = memory.saturating_sub(frames_in_flight * frame_bytes as u64);
    if sorter_memory < MIN_MEMORY {
        return Err(Error::BadSize {
            input: memory.to_string(),
            reason: "memory budget too small for netsort (needs 64 KiB plus network buffers)",
        });
    }
    assert!(sorter_memory + frames_in_flight * frame_bytes as u64 <= memory);
    Ok(Plan {
        frame_bytes,
        channel_frames,
        frames,
        sorter_memory,
    })
}

/// Frames of one size, recycled: the sorter gives back each frame once it
/// has copied it in, and the receivers and the partitioner take frames from
/// here before allocating. So no more frames exist than [`plan`] counts,
/// and none is freed on one thread and allocated again on another (an
/// allocator may keep such memory resident a while: mimalloc did, adding
/// about half the budget to the peak).
#[derive(Clone)]
struct FramePool {
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
    frame_bytes: usize,
    allocated: Arc<AtomicUsize>,
    /// Most frames [`plan`] expects to exist at once.
    limit: usize,
}

impl FramePool {
    fn new(plan: &Plan) -> Self {
        FramePool::sized(plan.frame_bytes, plan.frames)
    }

    fn sized(frame_bytes: usize, limit: usize) -> Self {
        FramePool {
            spare: Arc::default(),
            frame_bytes,
            allocated: Arc::default(),
            limit,
        }
    }

    /// An empty frame with room for `frame_bytes`.
    fn take(&self) -> Vec<u8> {
        if let Some(frame) = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return frame;
        }
        let made = self.allocated.fetch_add(1, Ordering::Relaxed) + 1;
        // Debug only: a broken count must not kill a receiving thread.
        debug_assert!(made <= self.limit, "{made} frames; the plan counts {}", self.limit);
        Vec::with_capacity(self.frame_bytes)
    }

    /// Return a frame whose records have been copied out.
    fn give(&self, mut frame: Vec<u8>) {
        if frame.capacity() >= self.frame_bytes {
            frame.clear();
            self.spare.lock().unwrap_or_else(|e| e.into_inner()).push(frame);
        }
    }
}

/// Run server `my_id` of `config`: send `input` to its owners, receive our
/// share from every peer, and write it sorted to `output`.
pub fn netsort(my_id: u32, input: &Path, output: &Path, config: &Config, options: &NetOptions) -> Result<NetStats> {
    let n = config.servers.len();
    let me = my_id as usize;
    let my_entry = config
        .servers
        .get(me)
        .ok_or_else(|| Error::Config(format!("server id {my_id} is not in the config (servers 0..{})", n - 1)))?;
    if options.io_timeout.is_zero() {
        // Sockets take no zero timeout; "never time out" is a large one.
        return Err(Error::Config("the I/O timeout must be more than 0".into()));
    }
    let plan = plan(options.memory, n)?;
    disable_huge_pages();
    let mut input_file = File::open(input).ctx(|| format!("opening input {}", input.display()))?;
    let size = input_file
        .metadata()
        .ctx(|| format!("reading the size of {}", input.display()))?
        .len();
    record_count(input, size)?;
    if same_file(input, output) {
        return Err(Error::Config(format!(
            "output {} is the input: netsort writes its output while reading the input",
            output.display()
        )));
    }
    // The result goes to a temporary file that becomes the output only on
    // success: a failed run leaves no output that looks like a result, and
    // an old output (or `/dev/null`) as it was.
    let out = SortOutput::create(output)?;
    let out_file = out
        .file()
        .try_clone()
        .ctx(|| format!("opening output {}", output.display()))?;
    let parent = crate::output::scratch_parent(output);
    let start = Instant::now();
    // Checked: a timeout of centuries means "no deadline", not a panic.
    let far = |t: Instant, d: Duration| t.checked_add(d).unwrap_or(t + Duration::from_secs(100 * 365 * 86_400));
    let connect_deadline = far(start, options.connect_timeout);

    let listener = if n > 1 { Some(bind(my_entry)?) } else { None };

    // The sorter thread: everything this server keeps goes through here.
    let (frames_tx, frames_rx) = mpsc::sync_channel::<Vec<u8>>(plan.channel_frames);
    let pool = FramePool::new(&plan);
    let sorter_pool = pool.clone();
    // Every record we keep starts with our id in its top bits: bucket the
    // index by the bits after them, as the records arrive.
    // Spilled runs go in a directory this thread owns: if the run fails, the
    // sorter thread may still be waiting for frames (the acceptor can sit in
    // `accept` for good), and the directory must go when we return anyway.
    let scratch = crate::scratch::ScratchDir::new_in(&parent, ".triton-netsort-")
        .ctx(|| format!("creating a scratch directory in {}", parent.display()))?;
    let mut sorter = RunSorter::new(plan.sorter_memory, scratch.path())?.with_known_key_bits(config.partition_bits());
    let mut sorter_thread = Some(
        std::thread::Builder::new()
            .name("netsort-sorter".into())
            .spawn(move || -> Result<Option<SortStats>> {
                // An empty frame is the main thread's word that every stream
                // ended cleanly; without it (a failure elsewhere) nothing is
                // written, so a failed run never leaves a plausible output.
                for frame in frames_rx {
                    if frame.is_empty() {
                        return sorter.finish(out_file).map(Some);
                    }
                    sorter.push(&frame)?;
                    sorter_pool.give(frame);
                }
                Ok(None)
            })
            .ctx(|| "starting the sorter thread".to_string())?,
    );

    let (events_tx, events) = mpsc::channel::<Event>();
    let open_streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    if let Some(listener) = listener {
        spawn_acceptor(
            listener,
            Inbound {
                my_id,
                n,
                timeout: options.io_timeout,
                connect_timeout: options.connect_timeout,
                chunk_bytes: plan.frame_bytes,
            },
            frames_tx.clone(),
            pool.clone(),
            events_tx.clone(),
            open_streams.clone(),
        )?;
    }
    drop(events_tx);

    let mut session = Session {
        me,
        n,
        events,
        seen_hello: BTreeSet::new(),
        done: BTreeSet::new(),
        received: 0,
        open_streams,
    };
    let result = (|| -> Result<NetStats> {
        let mut peers = dial_all(config, me, connect_deadline, options.io_timeout, &mut session)?;
        let input_records = send_all(
            &mut input_file,
            input,
            config,
            me,
            &plan,
            &frames_tx,
            &pool,
            &mut peers,
            &mut session,
            options.io_timeout,
        )?;
        drop(std::mem::take(&mut peers));
        session.wait_for_peers(far(connect_deadline, options.io_timeout), &config.servers)?;
        // All data is in the channel ahead of this: let the sorter finish.
        if frames_tx.send(Vec::new()).is_err() {
            return Err(Error::Net("the local sorter stopped".into()));
        }
        drop(frames_tx);
        let output = join_sorter(sorter_thread.take().expect("joined once"))?
            .ok_or_else(|| Error::Net("the local sorter stopped".into()))?;
        out.commit()?;
        Ok(NetStats {
            input_records,
            received_records: session.received,
            output,
        })
    })();
    let result = match (result, sorter_thread) {
        // The sorter failed first (e.g. disk full): its error says why,
        // rather than "the local sorter stopped" from a receiver.
        (Err(e), Some(handle)) if handle.is_finished() => match join_sorter(handle) {
            Err(sorter_error) => Err(sorter_error),
            Ok(_) => Err(e),
        },
        (result, _) => result,
    };
    if result.is_err() {
        session.shut_down_all();
    }
    result
}

/// Stop transparent huge pages for this process, so the budget holds.
/// mimalloc (the binary's allocator) advises huge pages on its arena, and
/// every thread's heap touches a few 64 KiB slices of it: each then costs a
/// 2 MiB page. Measured with 2 servers x 200 MB: peak RSS at a 64 MiB budget
/// 102 MB with huge pages, 85 MB (baseline + budget) without, same wall
/// time. Only advice: an error is ignored.
fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Main-thread view of the receivers.
struct Session {
    me: usize,
    n: usize,
    events: Receiver<Event>,
    seen_hello: BTreeSet<u32>,
    done: BTreeSet<u32>,
    received: u64,
    open_streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Session {
    fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Hello(peer) => {
                if !self.seen_hello.insert(peer) {
                    return Err(Error::Net(format!("two connections claim to be server {peer}")));
                }
            }
            Event::PeerDone { peer, records } => {
                self.done.insert(peer);
                self.received += records;
            }
            Event::Failed(e) => return Err(e),
        }
        Ok(())
    }

    /// Handle whatever has arrived without blocking.
    fn poll(&mut self) -> Result<()> {
        loop {
            match self.events.try_recv() {
                Ok(e) => self.handle(e)?,
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Wait until every peer has sent its end-of-stream. Peers that have not
    /// even connected by `accept_deadline` are reported by id.
    fn wait_for_peers(&mut self, accept_deadline: Instant, servers: &[Server]) -> Result<()> {
        while self.done.len() < self.n - 1 {
            match self.events.recv_timeout(Duration::from_millis(100)) {
                Ok(e) => self.handle(e)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Net("receiving threads stopped unexpectedly".into()));
                }
            }
            if self.seen_hello.len() < self.n - 1 && Instant::now() > accept_deadline {
                let missing: Vec<String> = servers
                    .iter()
                    .filter(|s| s.id as usize != self.me && !self.seen_hello.contains(&s.id))
                    .map(|s| format!("{} ({}:{})", s.id, s.host, s.port))
                    .collect();
                return Err(Error::Net(format!(
                    "server(s) {} never connected to us",
                    missing.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Unblock every thread stuck on a socket after a failure.
    fn shut_down_all(&self) {
        if let Ok(streams) = self.open_streams.lock() {
            for s in streams.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn join_sorter(handle: JoinHandle<Result<Option<SortStats>>>) -> Result<Option<SortStats>> {
    match handle.join() {
        Ok(r) => r,
        Err(_) => Err(Error::Net("sorter thread panicked".into())),
    }
}

fn resolve(server: &Server) -> std::io::Result<Vec<SocketAddr>> {
    Ok((server.host.as_str(), server.port).to_socket_addrs()?.collect())
}

fn bind(server: &Server) -> Result<TcpListener> {
    let addrs = resolve(server).ctx(|| format!("resolving our address {}:{}", server.host, server.port))?;
    let mut last = None;
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no addresses")))
        .ctx(|| format!("listening on {}:{}", server.host, server.port))
}

/// What a receiving thread checks and how it reads: this server's id, the
/// server count, the read timeout, the peers' connect timeout, and the
/// largest piece it hands the sorter (our frame size).
#[derive(Clone, Copy, Debug)]
struct Inbound {
    my_id: u32,
    n: usize,
    timeout: Duration,
    connect_timeout: Duration,
    chunk_bytes: usize,
}

fn spawn_acceptor(
    listener: TcpListener,
    inbound: Inbound,
    frames: SyncSender<Vec<u8>>,
    pool: FramePool,
    events: Sender<Event>,
    open_streams: Arc<Mutex<Vec<TcpStream>>>,
) -> Result<()> {
    let Inbound {
        my_id,
        n,
        timeout: io_timeout,
        ..
    } = inbound;
    std::thread::Builder::new()
        .name("netsort-accept".into())
        .spawn(move || {
            // Peers that said hello, and connections still to say it. The
            // hello is read on each connection's own thread, so a silent
            // connection (a port scan) holds up no one; one that is not a
            // netsort peer is dropped and takes no peer's place.
            let peers = Arc::new(AtomicUsize::new(0));
            let pending = Arc::new(AtomicUsize::new(0));
            while peers.load(Ordering::SeqCst) < n - 1 {
                let (mut stream, addr) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = events.send(Event::Failed(Error::Net(format!("accepting a connection: {e}"))));
                        return;
                    }
                };
                if pending.load(Ordering::SeqCst) >= MAX_PENDING_HELLOS {
                    eprintln!("netsort: ignoring a connection from {addr}: too many connections without a hello");
                    continue;
                }
                pending.fetch_add(1, Ordering::SeqCst);
                let (peers, pending) = (peers.clone(), pending.clone());
                let (peer_frames, peer_events, streams) = (frames.clone(), events.clone(), open_streams.clone());
                let pool = pool.clone();
                let spawned = std::thread::Builder::new().name("netsort-recv".into()).spawn(move || {
                    let hello = read_hello(&mut stream, addr, my_id, n, io_timeout.min(HELLO_TIMEOUT));
                    pending.fetch_sub(1, Ordering::SeqCst);
                    let peer = match hello {
                        Ok(peer) => peer,
                        Err(Hello::NotAPeer(why)) => {
                            eprintln!("netsort: ignoring a connection from {addr}: {why}");
                            return;
                        }
                        Err(Hello::Refused(e)) => {
                            let _ = peer_events.send(Event::Failed(e));
                            return;
                        }
                    };
                    peers.fetch_add(1, Ordering::SeqCst);
                    let _ = peer_events.send(Event::Hello(peer));
                    if let (Ok(clone), Ok(mut list)) = (stream.try_clone(), streams.lock()) {
                        list.push(clone);
                    }
                    let event = match receive(stream, addr, peer, inbound, &peer_frames, &pool) {
                        Ok((peer, records)) => Event::PeerDone { peer, records },
                        Err(e) => Event::Failed(e),
                    };
                    let _ = peer_events.send(event);
                });
                if let Err(e) = spawned {
                    let _ = events.send(Event::Failed(Error::Net(format!("starting a receiver thread: {e}"))));
                    return;
                }
            }
        })
        .ctx(|| "starting the accept thread".to_string())?;
    Ok(())
}

/// Describe a failed read from `who` for a person.
pub(crate) fn read_error(who: &str, e: std::io::Error, timeout: Duration) -> Error {
    match e.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => Error::Net(format!(
            "{who} closed the connection before end-of-stream (did it die?): {e}"
        )),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            Error::Net(format!("{who} sent nothing for {}s (hung?)", timeout.as_secs_f64()))
        }
        _ => Error::Net(format!("receiving from {who}: {e}")),
    }
}

/// How long a new connection has to say hello: peers send it at once.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections waiting to say hello at once; more are dropped unread.
const MAX_PENDING_HELLOS: usize = 64;

/// Why a connection's hello was not taken.
#[derive(Debug)]
pub(crate) enum Hello {
    /// Not a netsort peer at all (silent, closed, or wrong magic): ignored.
    NotAPeer(String),
    /// A netsort peer whose config disagrees with ours: the run fails.
    Refused(Error),
}

/// Reads a connection's hello; returns the peer's server id.
fn read_hello(
    stream: &mut TcpStream,
    addr: SocketAddr,
    my_id: u32,
    n: usize,
    timeout: Duration,
) -> std::result::Result<u32, Hello> {
    let mut hello = [0u8; 16];
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.read_exact(&mut hello))
        .map_err(|e| Hello::NotAPeer(format!("no hello within {timeout:?}: {e}")))?;
    parse_hello(&hello, &format!("connection from {addr}"), my_id, n)
}

/// Checks the hello of connection `who` against our config (server `my_id`
/// of `n`); returns the peer's server id.
pub(crate) fn parse_hello(hello: &[u8; 16], who: &str, my_id: u32, n: usize) -> std::result::Result<u32, Hello> {
    if hello[..8] != MAGIC {
        return Err(Hello::NotAPeer("it is not a netsort peer (bad hello)".into()));
    }
    let peer = u32::from_be_bytes(hello[8..12].try_into().expect("4 bytes"));
    let count = u32::from_be_bytes(hello[12..16].try_into().expect("4 bytes"));
    if count as usize != n {
        return Err(Hello::Refused(Error::Net(format!(
            "{who} has a config with {count} servers, we have {n}"
        ))));
    }
    if peer as usize >= n || peer == my_id {
        return Err(Hello::Refused(Error::Net(format!(
            "{who} claims to be server {peer}, which is not a peer of server {my_id}"
        ))));
    }
    Ok(peer)
}

/// Receive one peer's stream after its hello; returns (peer id, records
/// received).
fn receive(
    mut stream: TcpStream,
    addr: SocketAddr,
    peer: u32,
    inbound: Inbound,
    frames: &SyncSender<Vec<u8>>,
    pool: &FramePool,
) -> Result<(u32, u64)> {
    let Inbound {
        my_id,
        n,
        timeout,
        connect_timeout,
        chunk_bytes,
    } = inbound;
    assert!(chunk_bytes <= pool.frame_bytes, "pieces fit a pooled frame");
    let who = format!("server {peer} ({addr})");
    // A peer sends its hello, then nothing until it has dialled every other
    // peer, which may take until its connect deadline (peers that start
    // late): its first frame may take that long, later ones `timeout`.
    let first_wait = connect_timeout.saturating_add(timeout);
    stream
        .set_read_timeout(Some(first_wait))
        .ctx(|| format!("configuring {who}"))?;
    // Wait for the first frame without consuming it, so the decoder reads
    // the whole stream with one timeout. End of stream (`Ok(0)`) is left
    // for the decoder to report.
    loop {
        match stream.peek(&mut [0u8; 1]) {
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(&who, e, first_wait)),
        }
    }
    stream
        .set_read_timeout(Some(timeout))
        .ctx(|| format!("configuring {who}"))?;
    let decoder = StreamDecoder {
        who: &who,
        my_id,
        n,
        chunk_bytes,
    };
    let received = decoder.decode(
        &mut stream,
        || pool.take(),
        |piece| {
            frames
                .send(piece)
                .map_err(|_| Error::Net("the local sorter stopped".into()))
        },
        |e| read_error(&who, e, timeout),
    )?;
    Ok((peer, received))
}

/// The frame loop of one peer's stream after its hello, over any reader: no
/// sockets, timeouts or channels, so the fuzz target runs the very code a
/// receiver does.
pub(crate) struct StreamDecoder<'a> {
    /// Names the peer in errors.
    pub(crate) who: &'a str,
    /// This server's id: every record must belong to it.
    pub(crate) my_id: u32,
    /// The server count (a power of two).
    pub(crate) n: usize,
    /// The largest piece handed on (our frame size), a multiple of
    /// [`RECORD_LEN`].
    pub(crate) chunk_bytes: usize,
}

impl StreamDecoder<'_> {
    /// Reads frames from `input` up to a valid end-of-stream and returns the
    /// records received. Records go to `deliver` in pieces of at most
    /// `chunk_bytes`, each read into a buffer from `take` (which should have
    /// room for `chunk_bytes`: no piece is bigger, whatever the peer's frame
    /// size). A failed read becomes `read_err(e)`; a stream that breaks the
    /// protocol, an [`Error::Net`] naming `who`.
    pub(crate) fn decode<R: Read>(
        &self,
        input: &mut R,
        mut take: impl FnMut() -> Vec<u8>,
        mut deliver: impl FnMut(Vec<u8>) -> Result<()>,
        read_err: impl Fn(std::io::Error) -> Error,
    ) -> Result<u64> {
        let StreamDecoder {
            who,
            my_id,
            n,
            chunk_bytes,
        } = *self;
        assert!(chunk_bytes >= RECORD_LEN && chunk_bytes.is_multiple_of(RECORD_LEN));
        let bits = n.trailing_zeros();
        let mut received: u64 = 0;
        loop {
            let mut tag = [0u8; 1];
            input.read_exact(&mut tag).map_err(&read_err)?;
            match tag[0] {
                TAG_DATA => {
                    let mut len = [0u8; 4];
                    input.read_exact(&mut len).map_err(&read_err)?;
                    let len = u32::from_be_bytes(len) as usize;
                    if len == 0 || !len.is_multiple_of(RECORD_LEN) || len > MAX_FRAME_BYTES {
                        return Err(Error::Net(format!("{who} sent a data frame of {len} bytes")));
                    }
                    // The peer sized its frames from its own budget: hand the
                    // sorter pieces of at most our frame size, so what a
                    // receiver holds is bounded by our `--memory`, not by the
                    // peer's.
                    let mut left = len;
                    while left > 0 {
                        let piece = left.min(chunk_bytes);
                        let mut data = take();
                        data.resize(piece, 0);
                        input.read_exact(&mut data).map_err(&read_err)?;
                        if let Some(r) = data
                            .chunks_exact(RECORD_LEN)
                            .position(|r| destination(key_prefix(r), bits) != my_id as usize)
                        {
                            return Err(Error::Net(format!(
                                "{who} sent record {} that belongs to another server",
                                received + r as u64
                            )));
                        }
                        received += (piece / RECORD_LEN) as u64;
                        left -= piece;
                        deliver(data)?;
                    }
                }
                TAG_END => {
                    let mut total = [0u8; 8];
                    input.read_exact(&mut total).map_err(&read_err)?;
                    let total = u64::from_be_bytes(total);
                    if total != received {
                        return Err(Error::Net(format!(
                            "{who} says it sent {total} records but {received} arrived"
                        )));
                    }
                    return Ok(received);
                }
                other => return Err(Error::Net(format!("{who} sent an unknown frame tag {other}"))),
            }
        }
    }
}

/// An outgoing connection to one peer.
struct Peer {
    id: usize,
    who: String,
    stream: TcpStream,
    sent: u64,
    timeout: Duration,
}

impl Peer {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Net(format!(
                "{} accepted no data for {}s (hung?)",
                self.who,
                self.timeout.as_secs_f64()
            )),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                Error::Net(format!("{} closed the connection (did it die?): {e}", self.who))
            }
            _ => Error::Net(format!("sending to {}: {e}", self.who)),
        })
    }

    fn send_frame(&mut self, records: &[u8]) -> Result<()> {
        debug_assert!(!records.is_empty() && records.len().is_multiple_of(RECORD_LEN));
        let mut header = [TAG_DATA, 0, 0, 0, 0];
        header[1..].copy_from_slice(&(records.len() as u32).to_be_bytes());
        self.write(&header)?;
        self.write(records)?;
        self.sent += (records.len() / RECORD_LEN) as u64;
        Ok(())
    }

    fn send_end(&mut self) -> Result<()> {
        let mut end = [0u8; 9];
        end[0] = TAG_END;
        end[1..].copy_from_slice(&self.sent.to_be_bytes());
        self.write(&end)?;
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|e| Error::Net(format!("closing the stream to {}: {e}", self.who)))
    }
}

/// Connect to `server`, retrying until `deadline` (it may start later).
fn dial(server: &Server, deadline: Instant, session: &mut Session) -> Result<TcpStream> {
    loop {
        session.poll()?;
        let mut last_error = String::from("no address found");
        match resolve(server) {
            Ok(addrs) => {
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                        Ok(stream) => return Ok(stream),
                        Err(e) => last_error = e.to_string(),
                    }
                }
            }
            Err(e) => last_error = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(Error::Net(format!(
                "could not connect to server {} at {}:{} before the deadline: {last_error}",
                server.id, server.host, server.port
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Dial every peer and send our hello; index `i` holds the connection to
/// server `i` (`None` for ourselves).
fn dial_all(
    config: &Config,
    me: usize,
    deadline: Instant,
    io_timeout: Duration,
    session: &mut Session,
) -> Result<Vec<Option<Peer>>> {
    let n = config.servers.len();
    let mut peers: Vec<Option<Peer>> = (0..n).map(|_| None).collect();
    for server in &config.servers {
        let id = server.id as usize;
        if id == me {
            continue;
        }
        let stream = dial(server, deadline, session)?;
        let who = format!("server {} ({}:{})", server.id, server.host, server.port);
        stream
            .set_write_timeout(Some(io_timeout))
            .map_err(|e| Error::Net(format!("configuring the connection to {who}: {e}")))?;
        if let (Ok(clone), Ok(mut list)) = (stream.try_clone(), session.open_streams.lock()) {
            list.push(clone);
        }
        let mut peer = Peer {
            id,
            who,
            stream,
            sent: 0,
            timeout: io_timeout,
        };
        let mut hello = [0u8; 16];
        hello[..8].copy_from_slice(&MAGIC);
        hello[8..12].copy_from_slice(&(me as u32).to_be_bytes());
        hello[12..16].copy_from_slice(&(n as u32).to_be_bytes());
        peer.write(&hello)?;
        peers[id] = Some(peer);
    }
    Ok(peers)
}

/// Read whole records into `buf` until it is full or the input ends;
/// returns the bytes read.
fn read_records<R: Read>(input: &mut R, buf: &mut [u8], path: &Path, total: u64) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        }
    }
    if filled % RECORD_LEN != 0 {
        return Err(Error::NotWholeRecords {
            path: path.to_path_buf(),
            size: total + filled as u64,
        });
    }
    Ok(filled)
}

/// Read the input, send every record to its owner (ourselves included),
/// then send end-of-stream to every peer. Returns the records read.
#[allow(clippy::too_many_arguments)]
fn send_all<R: Read>(
    input: &mut R,
    path: &Path,
    config: &Config,
    me: usize,
    plan: &Plan,
    local: &SyncSender<Vec<u8>>,
    pool: &FramePool,
    peers: &mut [Option<Peer>],
    session: &mut Session,
    io_timeout: Duration,
) -> Result<u64> {
    let n = config.servers.len();
    let bits = config.partition_bits();
    let frame = plan.frame_bytes;
    let mut read_buf = vec![0u8; READ_FRAMES * frame];
    let mut parts: Vec<Vec<u8>> = (0..n).map(|_| pool.take()).collect();
    let mut total_bytes: u64 = 0;
    let _ = io_timeout;
    let flush = |dest: usize, parts: &mut Vec<Vec<u8>>, peers: &mut [Option<Peer>]| -> Result<()> {
        if parts[dest].is_empty() {
            return Ok(());
        }
        if dest == me {
            let full = std::mem::replace(&mut parts[dest], pool.take());
            local
                .send(full)
                .map_err(|_| Error::Net("the local sorter stopped".into()))
        } else {
            let peer = peers[dest].as_mut().expect("connected to every peer");
            debug_assert_eq!(peer.id, dest);
            peer.send_frame(&parts[dest])?;
            parts[dest].clear();
            Ok(())
        }
    };
    loop {
        let got = read_records(input, &mut read_buf, path, total_bytes)?;
        if got == 0 {
            break;
        }
        total_bytes += got as u64;
        for record in read_buf[..got].chunks_exact(RECORD_LEN) {
            let dest = destination(key_prefix(record), bits);
            parts[dest].extend_from_slice(record);
            if parts[dest].len() >= frame {
                flush(dest, &mut parts, peers)?;
            }
        }
        session.poll()?;
    }
    for dest in 0..n {
        flush(dest, &mut parts, peers)?;
    }
    for peer in peers.iter_mut().flatten() {
        peer.send_end()?;
    }
    Ok(total_bytes / RECORD_LEN as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOUR: &str = r#"
servers:
  - {serverId: 0, host: "localhost", port: "8080"}
  - {serverId: 1, host: "localhost", port: 8081}
  - {serverId: 3, host: "127.0.0.1", port: "8083"}
  - {serverId: 2, host: "localhost", port: "8082"}
"#;

    #[test]
    fn the_default_io_timeout_covers_a_slow_spill_of_half_the_budget() {
        assert_eq!(default_io_timeout(0), Duration::from_secs(30));
        assert_eq!(default_io_timeout(1 << 30), Duration::from_secs(30));
        // 8 GiB: a 4 GiB run at 25 MiB/s takes 164 s.
        assert_eq!(default_io_timeout(8 << 30), Duration::from_secs(163));
    }

    #[test]
    fn parses_the_issue_format() {
        let c = Config::from_yaml(FOUR).unwrap();
        assert_eq!(c.servers.len(), 4);
        assert_eq!(c.servers[3].host, "127.0.0.1");
        assert_eq!(c.servers[1].port, 8081);
        assert_eq!(c.partition_bits(), 2);
    }

    #[test]
    fn rejects_bad_configs() {
        let cases = [
            ("servers: [", "invalid YAML"),
            ("servers: []", "no servers"),
            ("nodes: []", "invalid YAML"),
            (
                "servers: [{serverId: 0, host: a, port: 1}, {serverId: 1, host: a, port: 2}, {serverId: 2, host: a, port: 3}]",
                "power of two",
            ),
            ("servers: [{serverId: 1, host: a, port: 1}]", "out of range"),
            ("servers: [{serverId: 0, host: a, port: 1}, {serverId: 0, host: a, port: 2}]", "twice"),
            ("servers: [{serverId: 0, host: a, port: \"http\"}]", "port"),
            ("servers: [{serverId: 0, host: a, port: 70000}]", "port"),
            ("servers: [{serverId: 0, host: \"\", port: 1}]", "empty host"),
        ];
        for (yaml, expected) in cases {
            let err = Config::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(expected), "{yaml}: {err}");
        }
    }

    #[test]
    fn destination_uses_top_bits() {
        assert_eq!(destination(u64::MAX, 0), 0);
        assert_eq!(destination(0x7fff_ffff_ffff_ffff, 1), 0);
        assert_eq!(destination(0x8000_0000_0000_0000, 1), 1);
        assert_eq!(destination(0xc000_0000_0000_0000, 2), 3);
        assert_eq!(destination(0x2000_0000_0000_0000, 3), 1);
        // Order-preserving: a larger prefix never goes to a smaller server.
        let mut last = 0;
        for p in (0..=255u64).map(|b| b << 56) {
            let d = destination(p, 3);
            assert!(d >= last);
            last = d;
        }
    }

    /// A peer with a larger budget sends frames of up to `MAX_FRAME_BYTES`;
    /// the receiver must still hand the sorter pieces of its own frame size.
    #[test]
    fn a_peers_large_frames_reach_the_sorter_in_pieces_of_our_frame_size() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let records = MAX_FRAME_BYTES / RECORD_LEN;
        let sender = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            // Records for server 0 of 2: the key's top bit is clear.
            let data: Vec<u8> = (0..MAX_FRAME_BYTES).map(|i| (i % 100) as u8 & 0x7f).collect();
            s.write_all(&[TAG_DATA]).unwrap();
            s.write_all(&(MAX_FRAME_BYTES as u32).to_be_bytes()).unwrap();
            s.write_all(&data).unwrap();
            s.write_all(&[TAG_END]).unwrap();
            s.write_all(&(records as u64).to_be_bytes()).unwrap();
            data
        });
        let (stream, from) = listener.accept().unwrap();
        let (tx, rx) = mpsc::sync_channel(records);
        let chunk = 30 * RECORD_LEN;
        let (peer, got) = receive(
            stream,
            from,
            1,
            Inbound {
                my_id: 0,
                n: 2,
                timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(10),
                chunk_bytes: chunk,
            },
            &tx,
            &FramePool::sized(chunk, usize::MAX),
        )
        .unwrap();
        assert_eq!((peer, got), (1, records as u64));
        drop(tx);
        let pieces: Vec<Vec<u8>> = rx.iter().collect();
        assert!(
            pieces.iter().all(|p| !p.is_empty() && p.len() <= chunk),
            "a piece exceeds {chunk} bytes"
        );
        assert_eq!(pieces.concat(), sender.join().unwrap());
    }

    /// The decoder's answers to broken streams, as a receiver reports them.
    #[test]
    fn the_stream_decoder_refuses_broken_streams() {
        let data = |len: u32, key: u8| {
            let mut f = vec![TAG_DATA];
            f.extend_from_slice(&len.to_be_bytes());
            f.extend((0..len).map(|i| if i % 100 == 0 { key } else { 0 }));
            f
        };
        let end = |total: u64| [&[TAG_END][..], &total.to_be_bytes()].concat();
        let cases = [
            ([data(200, 0x40), end(2)].concat(), Ok(2)),
            ([data(200, 0x40), data(100, 0x7f), end(3)].concat(), Ok(3)),
            (end(0), Ok(0)),
            (
                [data(200, 0x40), end(3)].concat(),
                Err("says it sent 3 records but 2 arrived"),
            ),
            (
                [data(100, 0x40), data(100, 0x80)].concat(),
                Err("sent record 1 that belongs to another server"),
            ),
            (data(150, 0), Err("sent a data frame of 150 bytes")),
            (data(0, 0), Err("sent a data frame of 0 bytes")),
            (
                vec![TAG_DATA, 0, 0x0f, 0x42, 0x68],
                Err("sent a data frame of 1000040 bytes"),
            ),
            (vec![7], Err("sent an unknown frame tag 7")),
            (
                data(200, 0)[..150].to_vec(),
                Err("peer closed the connection before end-of-stream"),
            ),
            (vec![], Err("peer closed the connection before end-of-stream")),
        ];
        for (stream, expected) in cases {
            let decoder = StreamDecoder {
                who: "peer",
                my_id: 0,
                n: 2,
                chunk_bytes: 100,
            };
            let mut pieces = 0;
            let got = decoder.decode(
                &mut &stream[..],
                Vec::new,
                |piece| {
                    assert_eq!(piece.len(), 100, "pieces of our frame size");
                    pieces += 1;
                    Ok(())
                },
                |e| read_error("peer", e, Duration::from_secs(1)),
            );
            match (got, expected) {
                (Ok(total), Ok(want)) => assert_eq!((total, pieces), (want, want)),
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{want:?}: {e}"),
                (got, want) => panic!("{stream:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_config_file_past_the_limit_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        let mut text = FOUR.to_string();
        text.push_str(&"#".repeat(MAX_CONFIG_BYTES as usize));
        std::fs::write(&path, text).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("too long for a netsort config"), "{err}");
        std::fs::write(&path, FOUR).unwrap();
        assert_eq!(Config::load(&path).unwrap(), Config::from_yaml(FOUR).unwrap());
    }

    #[test]
    fn unknown_server_id_is_an_error() {
        let c = Config::from_yaml(FOUR).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::write(&input, []).unwrap();
        let err = netsort(9, &input, &dir.path().join("out"), &c, &NetOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("server id 9 is not in the config"), "{err}");
    }
}
