//! The file-server face: a TCP listener on the node's `file_addr` that
//! turns protocol requests into writes and linearizable reads through the
//! [`NodeHandle`].
//!
//! Choices worth knowing:
//! - Files live in the replicated store under the key `f/<filename>`
//!   ([`KEY_PREFIX`]), so they never collide with key-value keys.
//! - Versions are the store's versions: the log index of the last write,
//!   a cluster-wide counter that only grows.
//! - Writes (`write`, `cas`, `delete`) on a follower are answered with
//!   `ERR_REDIRECT <leader's file_addr>` (so, with several nodes, `file_addr`
//!   must be an address clients can dial; the config refuses `0.0.0.0`);
//!   the leader turns `exptime` into an absolute deadline with its own
//!   clock, so every replica expires the file at the same log position (the
//!   leader's `Expire` proposals).
//! - Reads are served by any node: the node's linearizable query runs a
//!   ReadIndex round through the leader, then reads its own applied state,
//!   checking expiry at `max(its own wall clock, the store's clock)` at that
//!   moment (a read never returns a file whose deadline has passed on the
//!   serving node).
//! - Clocks. The nodes' wall clocks are assumed to agree to within the
//!   precision users need for expiry: a node whose clock is off by X sees
//!   files expire X early or late, and a leader whose clock is off by X
//!   writes deadlines off by X. What a wrong clock cannot do is move the
//!   cluster's time: the store's clock (the latest stamp in the log, which
//!   never goes back) only advances as fast as real time from what other
//!   leaders stamped, however fast a leader's wall clock runs
//!   (`triton_node::driver::LogClock`), so one fast node cannot expire
//!   everyone's files early or make time stand still for reads. Not done:
//!   followers could judge expiry by the leader's time carried in the
//!   ReadIndex answer instead of their own clock; that needs a change to
//!   the Raft core.
//! - One connection's requests are processed one at a time, so pipelined
//!   requests are answered in order.
//! - At most [`MAX_CONNECTIONS`] connections are served at once, and
//!   [`MAX_CONNECTIONS_PER_PEER`] from one IP address; a client waiting for
//!   a slot gets the one of the first connection past its grace, idle or
//!   in the middle of a slow request ([`ConnectionTimeouts`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use triton_config::{ClusterConfig, NodeConfig};
use triton_node::driver::{now_ms, NodeError};
use triton_node::server::Face;
use triton_node::service::NodeHandle;
use triton_store::{Store, WriteOp, WriteResult};

use crate::protocol::{parse_request, request_len, Limits, Parsed, Reply, Request};

/// Prefix of every file's key in the replicated store (the key-value face
/// refuses keys under it).
pub const KEY_PREFIX: &[u8] = triton_store::FILE_KEY_PREFIX;

/// The default file port of a single-node cluster without `file_addr`.
pub const DEFAULT_FILE_PORT: u16 = 8080;

/// Connections served at once per node; more wait for a slot. Bounds the
/// memory (each connection buffers at most one request). When every slot is
/// taken, a connection idle between requests for
/// [`ConnectionTimeouts::idle_under_pressure`], or whose pending request
/// began arriving [`ConnectionTimeouts::pending_under_pressure`] ago, is
/// closed to make room.
pub const MAX_CONNECTIONS: usize = 1024;

/// Connections one client IP address may hold (or wait for a slot with) at
/// once; more are closed when accepted. Pressure closes connections in the
/// middle of slow requests, but a client that keeps completing requests on
/// every slot is busy, not idle: this keeps one machine from taking them
/// all.
pub const MAX_CONNECTIONS_PER_PEER: usize = MAX_CONNECTIONS / 4;

/// The file server's address for `node`: its `file_addr`, or, in a
/// single-node cluster, port 8080 on the host of its gRPC address; `None`
/// when a multi-node cluster gives the node no `file_addr`.
pub fn file_addr(config: &ClusterConfig, node: &NodeConfig) -> Option<String> {
    if let Some(a) = &node.file_addr {
        return Some(a.clone());
    }
    if config.nodes.len() != 1 {
        return None;
    }
    let host = node.addr.rsplit_once(':').map_or(node.addr.as_str(), |(h, _)| h);
    Some(format!("{host}:{DEFAULT_FILE_PORT}"))
}

/// The store key of a file.
pub fn file_key(name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEY_PREFIX.len() + name.len());
    k.extend_from_slice(KEY_PREFIX);
    k.extend_from_slice(name);
    k
}

/// The file-server [`Face`] of a node.
#[derive(Debug, Default)]
pub struct FileServerFace;

impl Face for FileServerFace {
    fn spawn(
        &mut self,
        node: NodeHandle,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
        let Some(me) = node.node_config(node.raft_id) else {
            tracing::error!("this node is not in its own config; no file server");
            return Ok(Vec::new());
        };
        let Some(addr) = file_addr(&node.config, me) else {
            tracing::info!(
                "node {} has no file_addr in a {}-node cluster: no file server on this node",
                me.id,
                node.config.nodes.len()
            );
            return Ok(Vec::new());
        };
        // Bound here, so a taken port stops the node at startup.
        let listener = std::net::TcpListener::bind(&addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .with_context(|| format!("binding the file server to {addr}"))?;
        tracing::info!("file server listening on {addr}");
        Ok(vec![tokio::spawn(async move {
            let r = serve_files(node, listener, shutdown).await;
            if let Err(e) = &r {
                tracing::error!("file server stopped: {e:#}");
            }
            r
        })])
    }
}

/// Serves the file protocol on `listener` until `shutdown` becomes true.
pub async fn serve_files(
    node: NodeHandle,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let limits = Limits {
        max_content_bytes: usize::try_from(node.config.max_value_bytes).unwrap_or(usize::MAX),
        ..Limits::default()
    };
    let stop = shutdown.clone();
    let caps = ConnectionCaps {
        total: MAX_CONNECTIONS,
        per_peer: MAX_CONNECTIONS_PER_PEER,
    };
    accept_loop(listener, caps, shutdown, move |stream, pressure| {
        let (node, stop) = (node.clone(), stop.clone());
        async move { serve_connection(&node, stream, limits, stop, &pressure).await }
    })
    .await
}

/// How many connections [`accept_loop`] serves at once, in all and per
/// client IP address.
#[derive(Debug, Clone, Copy)]
struct ConnectionCaps {
    total: usize,
    per_peer: usize,
}

/// Counts a peer's connections; the count goes down when this is dropped.
struct PeerCount {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PeerCount {
    /// Counts one more connection from `ip`, or `None` if it has `cap`.
    fn take(counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, cap: usize) -> Option<PeerCount> {
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(PeerCount {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PeerCount {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            debug_assert!(*n > 0, "peer connection count underflow");
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections and runs `serve` on each, at most `caps.total` at
/// once and `caps.per_peer` from one IP address, until `shutdown`. A
/// connection is accepted before it gets a slot, so that slots are only
/// reclaimed for a client that is really waiting: then `pressure` is
/// notified once, which closes the first connection to go past its grace,
/// idle or in the middle of a slow request (see [`serve_stream`]), and the
/// client is served when a slot frees. A connection over its peer's cap is
/// closed at once.
async fn accept_loop<H, Fut>(
    listener: TcpListener,
    caps: ConnectionCaps,
    mut shutdown: watch::Receiver<bool>,
    serve: H,
) -> anyhow::Result<()>
where
    H: Fn(TcpStream, Arc<Notify>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(caps.total));
    let pressure = Arc::new(Notify::new());
    let per_peer = Arc::new(std::sync::Mutex::new(HashMap::new()));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // E.g. out of file descriptors: wait instead of spinning.
                tracing::warn!("accepting a file connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(peer_count) = PeerCount::take(&per_peer, peer.ip(), caps.per_peer) else {
            tracing::debug!(
                "closing a file connection from {peer}: it has {} already",
                caps.per_peer
            );
            drop(stream);
            continue;
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // FIFO: the connection that went past its grace first goes.
                // With none past it yet, the wake-up is kept for the first
                // that gets there.
                pressure.notify_one();
                let p = tokio::select! {
                    p = slots.clone().acquire_owned() => p.context("connection semaphore closed")?,
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                };
                // A slot freed otherwise: take back a wake-up nobody took,
                // or it would close an idle connection for no one later.
                let unused = pressure.notified();
                tokio::pin!(unused);
                unused.as_mut().enable();
                p
            }
        };
        let conn = serve(stream, pressure.clone());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("file connection from {peer}: {e:#}");
            }
            drop(permit);
            drop(peer_count);
        });
    }
}

/// How long one connection may keep its slot (one of [`MAX_CONNECTIONS`])
/// without making progress. Without these, 1024 clients that connect and
/// send nothing, or never read their replies, would lock everyone else out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTimeouts {
    /// Longest time without a complete request: since the connection
    /// opened or the last request was answered. Covers an idle client and
    /// one that sends a request a byte at a time. The connection is closed.
    pub idle: Duration,
    /// Longest time a request's first line (the whole of a `read` or
    /// `delete`, a `write`'s or `cas`'s header) may take to arrive once its
    /// first byte is in. Under 500 bytes: a client that takes longer is
    /// holding its slot, not uploading.
    pub first_line: Duration,
    /// Longest time a request may take to arrive once its first byte is in
    /// (plus [`UPLOAD_BYTES_PER_S`] for its contents), within `idle`.
    pub request: Duration,
    /// How long a connection idle between requests keeps its slot when a
    /// new client is waiting for one (see [`MAX_CONNECTIONS`]).
    pub idle_under_pressure: Duration,
    /// How long a connection whose next request is still arriving keeps its
    /// slot when a new client is waiting for one, counted from that
    /// request's first byte: the slow request is lost (the client sees the
    /// connection close before an answer, so nothing was applied). Without
    /// it, clients that always keep a request half sent, finishing one now
    /// and then, would hold every slot for good.
    pub pending_under_pressure: Duration,
    /// Longest time a reply may wait for the client to read it. The
    /// connection is closed.
    pub write_stall: Duration,
    /// Longest time spent reading and discarding what the client still
    /// sends after an error that closes the connection (see [`linger`]).
    pub linger: Duration,
}

impl Default for ConnectionTimeouts {
    fn default() -> Self {
        ConnectionTimeouts {
            idle: Duration::from_secs(300),
            first_line: Duration::from_secs(5),
            request: Duration::from_secs(30),
            idle_under_pressure: Duration::from_secs(3),
            pending_under_pressure: Duration::from_secs(5),
            write_stall: Duration::from_secs(30),
            linger: Duration::from_secs(5),
        }
    }
}

/// The slowest upload rate a large request is given time for, on top of
/// [`ConnectionTimeouts::request`]: 1 MiB adds 16 s.
pub const UPLOAD_BYTES_PER_S: usize = 64 * 1024;

/// Most bytes discarded by [`linger`]: a 64 MiB file sent to a 1 MiB limit
/// still gets its `ERR_CMD_ERR`; beyond that the close may reset.
const LINGER_BYTES: usize = 64 << 20;

/// Reads requests from one connection and answers them in order until the
/// peer closes, a fatal protocol error, a timeout, or shutdown.
async fn serve_connection(
    node: &NodeHandle,
    stream: TcpStream,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
    pressure: &Notify,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    serve_stream(
        stream,
        limits,
        ConnectionTimeouts::default(),
        shutdown,
        pressure,
        |req| execute(node, req),
    )
    .await
}

/// The connection loop, over any byte stream and any way of executing a
/// request (tests drive it with an in-memory pipe and a fake executor).
/// Between requests, idle for [`ConnectionTimeouts::idle_under_pressure`],
/// or with a request arriving for
/// [`ConnectionTimeouts::pending_under_pressure`], it waits on `pressure`
/// and closes when notified.
async fn serve_stream<S, F, Fut>(
    mut stream: S,
    limits: Limits,
    timeouts: ConnectionTimeouts,
    mut shutdown: watch::Receiver<bool>,
    pressure: &Notify,
    mut execute: F,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = Reply>,
{
    const FLUSH_BYTES: usize = 64 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::new();
    let mut idle_since = Instant::now();
    // When the first bytes of the request at the front of `buf` came.
    let mut request_since: Option<Instant> = None;
    loop {
        // Answer every complete request in the buffer, in order.
        let mut start = 0;
        let mut close = false;
        loop {
            match parse_request(&buf[start..], &limits) {
                Parsed::Incomplete => break,
                Parsed::Request(req, consumed) => {
                    debug_assert!(consumed > 0 && consumed <= buf.len() - start);
                    start += consumed;
                    execute(req).await.encode(&mut out);
                    // Bounded output: a client pipelining many reads of big
                    // files gets them as they come, and TCP backpressure
                    // stops us if it does not read.
                    if out.len() >= FLUSH_BYTES {
                        write_within(&mut stream, &out, timeouts.write_stall).await?;
                        out.clear();
                    }
                }
                Parsed::Error {
                    reply,
                    close: c,
                    consumed,
                } => {
                    reply.encode(&mut out);
                    if c {
                        close = true;
                        break;
                    }
                    debug_assert!(consumed > 0 && consumed <= buf.len() - start);
                    start += consumed;
                }
            }
        }
        buf.drain(..start);
        if !out.is_empty() {
            write_within(&mut stream, &out, timeouts.write_stall).await?;
            out.clear();
        }
        // One big reply must not leave its memory with every idle
        // connection (up to the file size limit each, times 1,024).
        release_spare(&mut out);
        let now = Instant::now();
        if start > 0 {
            // Idle counts from the last answer, however long it took to send.
            idle_since = now;
            request_since = None;
        }
        if buf.is_empty() {
            request_since = None;
        } else if request_since.is_none() {
            request_since = Some(now);
        }
        if close {
            linger(&mut stream, timeouts.linger, &mut shutdown).await;
            return Ok(());
        }
        let known_len = request_len(&buf, &limits);
        size_read_buffer(&mut buf, known_len);
        let idle_deadline = idle_since + timeouts.idle;
        let (deadline, evictable_at) = match request_since {
            None => (idle_deadline, idle_since + timeouts.idle_under_pressure),
            Some(t) => {
                // Every complete first line was answered, except a write's
                // or cas's header, which tells the request's length.
                let arriving = match known_len {
                    None => t + timeouts.first_line,
                    Some(len) => t + timeouts.request + Duration::from_secs((len / UPLOAD_BYTES_PER_S) as u64),
                };
                (idle_deadline.min(arriving), t + timeouts.pending_under_pressure)
            }
        };
        // A waiting client takes the slot of the first connection past its
        // grace (FIFO on `pressure`), idle or in the middle of a request.
        let evict = async {
            tokio::time::sleep_until(evictable_at).await;
            pressure.notified().await;
        };
        enum Woke {
            Read(usize),
            Deadline,
            Evicted,
        }
        let woke = tokio::select! {
            // A request that is already here wins over closing.
            biased;
            n = stream.read_buf(&mut buf) => Woke::Read(n?),
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            _ = tokio::time::sleep_until(deadline) => Woke::Deadline,
            () = evict => Woke::Evicted,
        };
        let why = match woke {
            Woke::Read(0) => return Ok(()),
            Woke::Read(_) => continue,
            Woke::Evicted if buf.is_empty() => {
                "idle while every connection slot is taken and a client waits".to_string()
            }
            Woke::Evicted => "a request still arriving while every connection slot is taken and a client waits".into(),
            Woke::Deadline if deadline < idle_deadline => "a request did not finish arriving in time".to_string(),
            Woke::Deadline => format!("no complete request in {:?}", timeouts.idle),
        };
        let _ = stream.shutdown().await;
        anyhow::bail!("{why}: closing the connection");
    }
}

/// What a connection reads into when the length of the next request is
/// not known yet (a first line is under 500 bytes; pipelined small
/// requests come many per read). Also what its buffer keeps between
/// requests.
const READ_CHUNK: usize = 16 * 1024;

/// Sizes the read buffer for the next read: exactly the request's
/// `known_len` when its first line told it (doubling would hold up to twice
/// a large request), else [`READ_CHUNK`]; memory beyond that, left by a
/// large request already served, is given back, so an idle connection
/// holds little.
fn size_read_buffer(buf: &mut Vec<u8>, known_len: Option<usize>) {
    let target = match known_len {
        Some(total) if total > buf.len() => total,
        _ => READ_CHUNK.max(buf.len() + READ_CHUNK / 4),
    };
    if buf.capacity() < target {
        buf.reserve_exact(target - buf.len());
    } else if buf.capacity() > target.max(READ_CHUNK) {
        buf.shrink_to(target.max(READ_CHUNK));
    }
}

/// What a connection's reply buffer keeps between requests: as little as
/// its read buffer, so that an idle connection holds little.
const KEPT_CAPACITY: usize = READ_CHUNK;

/// Gives back a buffer's memory beyond [`KEPT_CAPACITY`] (or beyond what it
/// holds, if more): after a large reply has gone through.
fn release_spare(buf: &mut Vec<u8>) {
    if buf.capacity() > KEPT_CAPACITY && buf.len() <= KEPT_CAPACITY / 2 {
        buf.shrink_to(KEPT_CAPACITY);
    }
}

/// Closes a connection whose client may still be sending (an oversized
/// write's contents follow its `ERR_CMD_ERR`). Closing a socket with unread
/// input makes the kernel send a reset, which can destroy the reply before
/// the client reads it; so only the write side is shut down (the reply and
/// a FIN go out), and input is read and discarded until the client closes,
/// for at most `limit` and [`LINGER_BYTES`], or until shutdown.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    limit: Duration,
    shutdown: &mut watch::Receiver<bool>,
) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut scratch = vec![0u8; 64 * 1024];
    let drain = async {
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(limit, drain) => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}

/// Writes all of `bytes`, or fails if the client takes none of them for
/// `limit` (a slow reader that keeps taking bytes is not cut off).
async fn write_within<S: AsyncWrite + Unpin>(stream: &mut S, mut bytes: &[u8], limit: Duration) -> anyhow::Result<()> {
    while !bytes.is_empty() {
        match tokio::time::timeout(limit, stream.write(bytes)).await {
            Ok(Ok(0)) => anyhow::bail!("the connection closed while writing a reply"),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => anyhow::bail!("the client did not read its replies for {limit:?}: closing the connection"),
        }
    }
    stream.flush().await?;
    Ok(())
}

/// Absolute deadline for `exptime_s` seconds from now (0 = never).
fn deadline_ms(exptime_s: u64, now_ms: u64) -> u64 {
    if exptime_s == 0 {
        0
    } else {
        now_ms.saturating_add(exptime_s.saturating_mul(1000))
    }
}

/// Whole seconds left until `expires_at_ms`, rounded up (0 = never).
pub fn remaining_s(expires_at_ms: u64, now_ms: u64) -> u64 {
    if expires_at_ms == 0 {
        0
    } else {
        expires_at_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
    }
}

/// The reply for a node error: a redirect to the leader's file port, or
/// `ERR_INTERNAL` when the outcome is unknown or the node cannot serve.
///
/// A write's `Timeout` cannot become anything more definite here: the
/// handle's wait is bounded, and the driver does not always answer (an
/// isolated old leader keeps its proposals pending; a crash fails them
/// though they may commit elsewhere). Without sessions in the protocol,
/// `ERR_INTERNAL` after a write means "outcome unknown", and clients must
/// not resend it (see [`crate::client`]).
fn node_error(node: &NodeHandle, e: NodeError) -> Reply {
    reply_for(e, |leader| {
        node.node_config(leader).and_then(|n| file_addr(&node.config, n))
    })
}

/// [`node_error`], given how to find a node's file address.
fn reply_for(e: NodeError, file_addr_of: impl FnOnce(u64) -> Option<String>) -> Reply {
    match e {
        NodeError::NotLeader { leader } => Reply::Redirect(leader.and_then(file_addr_of)),
        // Nothing was proposed: "not applied, send again" is the
        // redirect's meaning to clients (no leader named: try any node).
        NodeError::Rejected(why) => {
            tracing::debug!("file request not proposed: {why}");
            Reply::Redirect(None)
        }
        NodeError::Timeout | NodeError::Unavailable(_) => {
            tracing::debug!("file request failed: {e}");
            Reply::Internal
        }
        // Contents within the file limit but not within the cluster's
        // message limit (a config with both near each other): malformed.
        NodeError::TooLarge { .. } => {
            tracing::debug!("file request refused: {e}");
            Reply::CmdErr
        }
    }
}

fn unexpected(r: WriteResult) -> Reply {
    tracing::warn!("unexpected store result for a file request: {r:?}");
    Reply::Internal
}

/// A file's version, whole seconds left and contents, read at `now_ms` or,
/// if the local clock is behind, at the store's clock: once for liveness
/// and for the seconds left, or a reply could show more than were asked for.
fn read_file(store: &Store, key: &[u8], now_ms: u64) -> Option<(u64, u64, Vec<u8>)> {
    let now = now_ms.max(store.clock_ms());
    store
        .get(key, now)
        .map(|e| (e.version, remaining_s(e.expires_at_ms, now), e.value.to_vec()))
}

/// Runs one request against the cluster.
pub async fn execute(node: &NodeHandle, req: Request) -> Reply {
    match req {
        Request::Read { name } => {
            let key = file_key(&name);
            let got = node.query(false, move |store| read_file(store, &key, now_ms())).await;
            match got {
                Ok(Some((version, exptime_s, content))) => Reply::Contents {
                    version,
                    exptime_s,
                    content,
                },
                Ok(None) => Reply::FileNotFound,
                Err(e) => node_error(node, e),
            }
        }
        Request::Write {
            name,
            content,
            exptime_s,
        } => {
            let op = WriteOp::Put {
                key: file_key(&name),
                value: content,
                expires_at_ms: deadline_ms(exptime_s, now_ms()),
            };
            match node.write(None, op).await {
                Ok(WriteResult::Put { version }) => Reply::Ok { version },
                Ok(r) => unexpected(r),
                Err(e) => node_error(node, e),
            }
        }
        Request::Cas {
            name,
            version,
            content,
            exptime_s,
        } => {
            let op = WriteOp::Cas {
                key: file_key(&name),
                expected_version: version,
                value: content,
                expires_at_ms: deadline_ms(exptime_s, now_ms()),
            };
            match node.write(None, op).await {
                Ok(WriteResult::Cas { ok: true, version, .. }) => Reply::Ok { version },
                Ok(WriteResult::Cas {
                    ok: false,
                    found: true,
                    version,
                }) => Reply::ErrVersion { current: version },
                Ok(WriteResult::Cas { found: false, .. }) => Reply::FileNotFound,
                Ok(r) => unexpected(r),
                Err(e) => node_error(node, e),
            }
        }
        Request::Delete { name } => match node.write(None, WriteOp::Delete { key: file_key(&name) }).await {
            Ok(WriteResult::Delete { existed: true }) => Reply::Deleted,
            Ok(WriteResult::Delete { existed: false }) => Reply::FileNotFound,
            Ok(r) => unexpected(r),
            Err(e) => node_error(node, e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_gives_back_what_a_big_request_grew_it_to() {
        let mut buf = vec![0u8; 2 << 20];
        buf.truncate(10);
        release_spare(&mut buf);
        assert!(buf.capacity() <= KEPT_CAPACITY, "{}", buf.capacity());
        assert_eq!(buf, vec![0u8; 10]);
        // Still holding most of a big request: kept.
        let mut big = vec![1u8; 1 << 20];
        release_spare(&mut big);
        assert_eq!(big.len(), 1 << 20);
        // A small buffer is left alone.
        let mut small = Vec::with_capacity(4096);
        small.push(1u8);
        release_spare(&mut small);
        assert!(small.capacity() >= 4096);
    }

    /// Only an error that proves the write was not proposed may tell the
    /// client to send it again (a redirect); a timeout or a crash is
    /// "outcome unknown".
    #[test]
    fn node_errors_map_to_replies_that_say_whether_a_resend_is_safe() {
        let addr = |id: u64| (id == 2).then(|| "10.0.0.2:8080".to_string());
        let cases = [
            (
                NodeError::NotLeader { leader: Some(2) },
                Reply::Redirect(Some("10.0.0.2:8080".into())),
            ),
            (NodeError::NotLeader { leader: None }, Reply::Redirect(None)),
            (
                NodeError::Rejected("leadership transfer in progress".into()),
                Reply::Redirect(None),
            ),
            (
                NodeError::Rejected("node overloaded; retry later".into()),
                Reply::Redirect(None),
            ),
            (NodeError::Unavailable("crashed".into()), Reply::Internal),
            (NodeError::Timeout, Reply::Internal),
            (NodeError::TooLarge { bytes: 10, limit: 5 }, Reply::CmdErr),
        ];
        for (e, want) in cases {
            assert_eq!(reply_for(e.clone(), addr), want, "{e:?}");
        }
    }

    /// A 1 MiB write arriving in pieces is read into a buffer of its own
    /// size (growing by doubling held up to twice that), and the memory is
    /// given back once it has been served.
    #[test]
    fn a_large_write_is_buffered_at_its_size_and_given_back() {
        let limits = Limits::default();
        let mut wire = format!("write big {}\r\n", 1 << 20).into_bytes();
        wire.resize(wire.len() + (1 << 20), b'x');
        wire.extend_from_slice(b"\r\n");
        let write_len = wire.len();
        wire.extend_from_slice(b"read a\r\n");
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let (mut sent, mut served) = (0, 0);
        while sent < wire.len() {
            // As the connection loop does: size, read what fits, serve.
            let known = request_len(&buf, &limits);
            size_read_buffer(&mut buf, known);
            let n = (buf.capacity() - buf.len()).min(7000).min(wire.len() - sent);
            buf.extend_from_slice(&wire[sent..sent + n]);
            sent += n;
            assert!(
                buf.capacity() <= write_len.max(READ_CHUNK),
                "{} after {sent}",
                buf.capacity()
            );
            while let Parsed::Request(_, used) = parse_request(&buf, &limits) {
                buf.drain(..used);
                served += 1;
            }
        }
        assert_eq!(served, 2);
        let known = request_len(&buf, &limits);
        size_read_buffer(&mut buf, known);
        assert!(
            buf.capacity() <= READ_CHUNK,
            "an idle connection holds {}",
            buf.capacity()
        );
        // A request already partly in keeps its bytes.
        buf.extend_from_slice(b"write a 5\r\nab");
        let known = request_len(&buf, &limits);
        size_read_buffer(&mut buf, known);
        assert_eq!(buf, b"write a 5\r\nab");
    }

    /// The local clock 50 s behind the store's (the leader's when it wrote):
    /// a file written with 10 s to live shows 10 s left, not 60.
    #[test]
    fn a_read_counts_seconds_left_from_the_store_clock_when_the_local_one_is_behind() {
        let mut store = Store::default();
        let put = WriteOp::Put {
            key: file_key(b"a"),
            value: b"x".to_vec(),
            expires_at_ms: 110_000,
        };
        store.apply_command(
            1,
            triton_store::Command {
                session: None,
                now_ms: 100_000,
                op: put,
            },
        );
        assert_eq!(read_file(&store, &file_key(b"a"), 50_000), Some((1, 10, b"x".to_vec())));
        // A local clock ahead counts from itself.
        assert_eq!(read_file(&store, &file_key(b"a"), 104_500), Some((1, 6, b"x".to_vec())));
        assert_eq!(read_file(&store, &file_key(b"a"), 110_000), None);
    }

    #[test]
    fn remaining_seconds_round_up() {
        assert_eq!(remaining_s(0, 5_000), 0);
        assert_eq!(remaining_s(6_000, 5_000), 1);
        assert_eq!(remaining_s(6_001, 5_000), 2);
        assert_eq!(remaining_s(5_001, 5_000), 1);
        assert_eq!(deadline_ms(0, 5_000), 0);
        assert_eq!(deadline_ms(2, 5_000), 7_000);
        assert_eq!(deadline_ms(u64::MAX, 5_000), u64::MAX);
    }

    const TIMEOUTS: ConnectionTimeouts = ConnectionTimeouts {
        idle: Duration::from_secs(10),
        first_line: Duration::from_secs(5),
        request: Duration::from_secs(30),
        idle_under_pressure: Duration::from_secs(1),
        pending_under_pressure: Duration::from_secs(1),
        write_stall: Duration::from_secs(3),
        linger: Duration::from_secs(2),
    };

    /// Serves one end of an in-memory pipe with a fake executor that answers
    /// every request with `reply_bytes` of contents; returns the client's end
    /// and the server's outcome.
    fn serve_pipe(
        reply_bytes: usize,
    ) -> (
        tokio::io::DuplexStream,
        JoinHandle<anyhow::Result<()>>,
        watch::Sender<bool>,
    ) {
        serve_pipe_with(reply_bytes, TIMEOUTS)
    }

    /// [`serve_pipe`] with other timeouts.
    fn serve_pipe_with(
        reply_bytes: usize,
        timeouts: ConnectionTimeouts,
    ) -> (
        tokio::io::DuplexStream,
        JoinHandle<anyhow::Result<()>>,
        watch::Sender<bool>,
    ) {
        let (client, server) = tokio::io::duplex(1024);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(async move {
            serve_stream(
                server,
                Limits::default(),
                timeouts,
                stop,
                &Notify::new(),
                move |_req| async move {
                    Reply::Contents {
                        version: 1,
                        exptime_s: 0,
                        content: vec![b'x'; reply_bytes],
                    }
                },
            )
            .await
        });
        (client, task, stop_tx)
    }

    /// Reads until the server closes its end; returns what it sent.
    async fn read_to_close(client: &mut tokio::io::DuplexStream) -> Vec<u8> {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        got
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_closed_after_the_idle_timeout() {
        let (mut client, task, _stop) = serve_pipe(1);
        let opened = Instant::now();
        assert!(read_to_close(&mut client).await.is_empty());
        assert_eq!(opened.elapsed(), TIMEOUTS.idle);
        let err = task.await.unwrap().unwrap_err();
        assert!(format!("{err:#}").contains("no complete request"), "{err:#}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_sent_a_byte_at_a_time_does_not_hold_the_slot() {
        let (mut client, task, _stop) = serve_pipe(1);
        let opened = Instant::now();
        // One byte of a never-finished request every 4 s: each read makes
        // progress, but no request completes.
        let trickle = async {
            for b in b"read aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if client.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), trickle).await.unwrap();
        assert!(task.await.unwrap().is_err());
        assert!(opened.elapsed() < Duration::from_secs(60));
    }

    /// A request trickled in has a deadline of its own, well before the idle
    /// one: 5 s for its first line (the whole of a `read`; a `write`'s
    /// header), and 30 s for the whole request plus time for its contents
    /// at [`UPLOAD_BYTES_PER_S`] once the header gave their size.
    #[tokio::test(start_paused = true)]
    async fn a_trickled_request_is_closed_at_its_own_deadline() {
        let timeouts = ConnectionTimeouts {
            idle: Duration::from_secs(300),
            ..TIMEOUTS
        };
        for (at_once, trickled, allowed) in [
            (&b""[..], &b"read aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..], 5),
            (b"", b"write a 1048576\r\n", 5),
            (
                b"write a 1048576\r\n",
                b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                46,
            ),
        ] {
            let (client, task, _stop) = serve_pipe_with(1, timeouts);
            let (mut rd, mut wr) = tokio::io::split(client);
            // One byte a second, then the rest never comes.
            let trickle = tokio::spawn(async move {
                if wr.write_all(at_once).await.is_err() {
                    return;
                }
                for b in trickled {
                    if wr.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                std::future::pending::<()>().await;
            });
            let opened = Instant::now();
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await.unwrap();
            assert!(got.is_empty());
            assert_eq!(opened.elapsed().as_secs(), allowed);
            let err = task.await.unwrap().unwrap_err();
            assert!(format!("{err:#}").contains("did not finish arriving"), "{err:#}");
            trickle.abort();
        }
    }

    /// [`accept_loop`] on a loopback port with `caps`, serving every
    /// connection with `timeouts` and a fake executor that answers `OK 1`.
    async fn serve_slots(caps: ConnectionCaps, timeouts: ConnectionTimeouts) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (keep, stop) = watch::channel(false);
        let per_conn = stop.clone();
        tokio::spawn(async move {
            let _keep = keep;
            accept_loop(listener, caps, stop, move |stream, pressure| {
                let stop = per_conn.clone();
                async move {
                    serve_stream(stream, Limits::default(), timeouts, stop, &pressure, |_req| async {
                        Reply::Ok { version: 1 }
                    })
                    .await
                }
            })
            .await
        });
        addr
    }

    /// Sends `read a` and returns the reply (empty if the server closed).
    async fn ask(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        c.write_all(b"read a\r\n").await?;
        let mut reply = vec![0u8; 6];
        let n = c.read(&mut reply).await?;
        reply.truncate(n);
        Ok(reply)
    }

    /// Slow loris: every slot is held by a client that always keeps a
    /// request half sent, finishing it (and starting the next) every 2 s,
    /// well within every deadline. A newcomer still gets a slot within
    /// seconds: the connection whose pending request is oldest past its
    /// grace makes room.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_that_keep_a_request_half_sent_make_room_for_a_waiting_client() {
        const SLOTS: usize = 4;
        let timeouts = ConnectionTimeouts {
            idle_under_pressure: Duration::from_millis(500),
            pending_under_pressure: Duration::from_millis(500),
            ..ConnectionTimeouts::default()
        };
        let caps = ConnectionCaps {
            total: SLOTS,
            per_peer: SLOTS + 1,
        };
        let addr = serve_slots(caps, timeouts).await;
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut lorises = Vec::new();
        for _ in 0..SLOTS {
            let mut c = TcpStream::connect(addr).await.unwrap();
            assert_eq!(ask(&mut c).await.unwrap(), b"OK 1\r\n");
            c.write_all(b"read a").await.unwrap();
            let closed = closed.clone();
            lorises.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let mut reply = [0u8; 6];
                    let served = c.write_all(b"\r\nread a").await.is_ok() && c.read_exact(&mut reply).await.is_ok();
                    if !served {
                        closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
            }));
        }
        let started = Instant::now();
        let mut newcomer = TcpStream::connect(addr).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ask(&mut newcomer))
            .await
            .expect("a waiting client is served within seconds");
        assert_eq!(got.unwrap(), b"OK 1\r\n");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        // One half-sent request made room (its client learns at its next send).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(closed.load(std::sync::atomic::Ordering::Relaxed), 1);
        for l in lorises {
            l.abort();
        }
    }

    /// One IP address may not hold more than its share of the slots: its
    /// next connection is closed at once, while another address is served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_address_cannot_take_every_slot() {
        let caps = ConnectionCaps { total: 8, per_peer: 2 };
        let addr = serve_slots(caps, ConnectionTimeouts::default()).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut first).await.unwrap(), b"OK 1\r\n");
        assert_eq!(ask(&mut second).await.unwrap(), b"OK 1\r\n");
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut got))
            .await
            .expect("closed at once");
        assert!(got.is_empty());
        // Another address (all of 127/8 is loopback on Linux) is served.
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = other.connect(addr).await.unwrap();
        assert_eq!(ask(&mut other).await.unwrap(), b"OK 1\r\n");
        // A connection that ends gives its address's count back.
        drop(first);
        let mut again = Vec::new();
        for _ in 0..50 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            if let Ok(r) = ask(&mut c).await {
                if r == b"OK 1\r\n" {
                    again.push(c);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(again.len(), 1, "a freed connection was not given back");
    }

    /// Every slot is held by connections that send nothing, or sent one
    /// request and went quiet: a new client is still served within seconds,
    /// by closing one idle connection (not the one whose request has only
    /// begun to arrive, within its grace).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_make_room_for_a_waiting_client() {
        const SLOTS: usize = 4;
        let timeouts = ConnectionTimeouts {
            idle_under_pressure: Duration::from_millis(500),
            ..ConnectionTimeouts::default()
        };
        let caps = ConnectionCaps {
            total: SLOTS,
            per_peer: SLOTS + 1,
        };
        let addr = serve_slots(caps, timeouts).await;
        // Accepted in order: once the later ones are answered, the silent
        // one holds a slot too.
        let silent = TcpStream::connect(addr).await.unwrap();
        let mut quiet = Vec::new();
        for _ in 0..SLOTS - 2 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            assert_eq!(ask(&mut c).await.unwrap(), b"OK 1\r\n");
            quiet.push(c);
        }
        let mut midway = TcpStream::connect(addr).await.unwrap();
        assert_eq!(ask(&mut midway).await.unwrap(), b"OK 1\r\n");
        midway.write_all(b"read a").await.unwrap();

        let mut newcomer = TcpStream::connect(addr).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ask(&mut newcomer))
            .await
            .expect("a waiting client is served within seconds");
        assert_eq!(got.unwrap(), b"OK 1\r\n");

        // The request under way was kept and is answered.
        midway.write_all(b"\r\n").await.unwrap();
        let mut reply = [0u8; 6];
        midway.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"OK 1\r\n");
        // Exactly one idle connection made room (the silent one, idle the
        // longest, goes first; which one is not the point).
        let mut closed = 0;
        for mut c in quiet.into_iter().chain([silent]) {
            match tokio::time::timeout(Duration::from_secs(5), ask(&mut c)).await.unwrap() {
                Ok(r) if r == b"OK 1\r\n" => {}
                _ => closed += 1,
            }
        }
        assert_eq!(closed, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_keeps_asking_stays_connected() {
        let (mut client, task, stop) = serve_pipe(1);
        let mut reply = [0u8; 64];
        for _ in 0..5 {
            tokio::time::sleep(TIMEOUTS.idle / 2).await;
            client.write_all(b"read a\r\n").await.unwrap();
            let n = client.read(&mut reply).await.unwrap();
            assert_eq!(&reply[..n], b"CONTENTS 1 1 0\r\nx\r\n");
        }
        assert!(!task.is_finished(), "closed after {:?}", TIMEOUTS.idle * 5 / 2);
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_gets_its_whole_reply() {
        let (mut client, task, stop) = serve_pipe(100_000);
        client.write_all(b"read a\r\n").await.unwrap();
        // 1 kB per second: the reply takes far longer than the stall limit,
        // but bytes keep moving.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let whole = b"CONTENTS 1 100000 0\r\n".len() + 100_000 + 2;
        while got.len() < whole {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {} bytes: {:?}", got.len(), task.is_finished());
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"CONTENTS 1 100000 0\r\n"));
        assert!(!task.is_finished(), "the server closed the connection");
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_its_replies_is_closed() {
        let (mut client, task, _stop) = serve_pipe(100_000);
        client.write_all(b"read a\r\n").await.unwrap();
        // The 100 kB reply does not fit the 1 kB pipe and nobody reads it.
        let err = task.await.unwrap().unwrap_err();
        assert!(format!("{err:#}").contains("did not read its replies"), "{err:#}");
    }

    /// Serves the file protocol on a loopback port with `limits` and a fake
    /// executor that answers `OK 1` to everything.
    async fn serve_loopback(limits: Limits) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (_keep, stop) = watch::channel(false);
                    let pressure = Notify::new();
                    serve_stream(
                        stream,
                        limits,
                        ConnectionTimeouts::default(),
                        stop,
                        &pressure,
                        |_req| async { Reply::Ok { version: 1 } },
                    )
                    .await
                });
            }
        });
        addr
    }

    /// The server refuses the write after its first line, while megabytes of
    /// contents are still on their way: the client must still get the
    /// answer, not a reset that destroys it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_oversized_write_gets_its_error_although_its_contents_follow() {
        let limits = Limits {
            max_content_bytes: 1024,
            ..Limits::default()
        };
        let addr = serve_loopback(limits).await;
        let content = vec![b'x'; 8 << 20];

        let mut raw = TcpStream::connect(&addr).await.unwrap();
        let mut wire = format!("write big {}\r\n", content.len()).into_bytes();
        wire.extend_from_slice(&content);
        wire.extend_from_slice(b"\r\n");
        raw.write_all(&wire).await.expect("the server reads what it refused");
        let mut got = Vec::new();
        raw.read_to_end(&mut got).await.expect("an answer, not a reset");
        // The answer, then the close (EOF): the request's end is unknown.
        assert_eq!(got, b"ERR_CMD_ERR\r\n");
        drop(raw);

        let mut client = crate::FileClient::new(vec![addr]).unwrap();
        let started = Instant::now();
        let reply = client
            .call(&Request::Write {
                name: b"big".to_vec(),
                content,
                exptime_s: 0,
            })
            .await
            .unwrap();
        assert_eq!(reply, Reply::CmdErr);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn file_addr_defaults_only_for_one_node() {
        let node = |id: u64, file: Option<&str>| NodeConfig {
            id,
            addr: format!("127.0.0.1:{}", 5000 + id),
            file_addr: file.map(str::to_string),
            http_addr: None,
        };
        let one = ClusterConfig {
            nodes: vec![node(0, None)],
            ..ClusterConfig::default()
        };
        assert_eq!(file_addr(&one, &one.nodes[0]).as_deref(), Some("127.0.0.1:8080"));
        let three = ClusterConfig {
            nodes: vec![node(0, None), node(1, Some("127.0.0.1:9001")), node(2, None)],
            ..ClusterConfig::default()
        };
        assert_eq!(file_addr(&three, &three.nodes[0]), None);
        assert_eq!(file_addr(&three, &three.nodes[1]).as_deref(), Some("127.0.0.1:9001"));
        assert_eq!(file_key(b"x"), b"f/x");
    }
}
