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
//!   `ERR_REDIRECT <leader's file_addr>`; the leader turns `exptime` into an
//!   absolute deadline with its own clock, so every replica expires the file
//!   at the same log position (the leader's `Expire` proposals).
//! - Reads are served by any node: the node's linearizable query runs a
//!   ReadIndex round through the leader, then reads its own applied state,
//!   checking expiry against its own clock at that moment (clocks of the
//!   nodes are assumed close; a read never returns a file whose deadline
//!   has passed on the serving node).
//! - One connection's requests are processed one at a time, so pipelined
//!   requests are answered in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use triton_config::{ClusterConfig, NodeConfig};
use triton_node::driver::{now_ms, NodeError};
use triton_node::server::Face;
use triton_node::service::NodeHandle;
use triton_store::{WriteOp, WriteResult};

use crate::protocol::{parse_request, Limits, Parsed, Reply, Request};

/// Prefix of every file's key in the replicated store.
pub const KEY_PREFIX: &[u8] = b"f/";

/// The default file port of a single-node cluster without `file_addr`.
pub const DEFAULT_FILE_PORT: u16 = 8080;

/// Connections served at once per node; more wait to be accepted. Bounds the
/// memory (each connection buffers at most one request).
pub const MAX_CONNECTIONS: usize = 1024;

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
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let limits = Limits {
        max_content_bytes: usize::try_from(node.config.max_value_bytes).unwrap_or(usize::MAX),
        ..Limits::default()
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.context("connection semaphore closed")?,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        match accepted {
            Ok((stream, peer)) => {
                let (node, stop) = (node.clone(), shutdown.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(&node, stream, limits, stop).await {
                        tracing::debug!("file connection from {peer}: {e:#}");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // E.g. out of file descriptors: wait instead of spinning.
                tracing::warn!("accepting a file connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
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
            write_stall: Duration::from_secs(30),
            linger: Duration::from_secs(5),
        }
    }
}

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
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    serve_stream(stream, limits, ConnectionTimeouts::default(), shutdown, |req| {
        execute(node, req)
    })
    .await
}

/// The connection loop, over any byte stream and any way of executing a
/// request (tests drive it with an in-memory pipe and a fake executor).
async fn serve_stream<S, F, Fut>(
    mut stream: S,
    limits: Limits,
    timeouts: ConnectionTimeouts,
    mut shutdown: watch::Receiver<bool>,
    mut execute: F,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = Reply>,
{
    const READ_CHUNK: usize = 64 * 1024;
    const FLUSH_BYTES: usize = 64 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::new();
    let mut idle_deadline = Instant::now() + timeouts.idle;
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
        // One big request or reply must not leave its memory with every
        // idle connection (up to the file size limit each, times 1,024).
        release_spare(&mut buf);
        release_spare(&mut out);
        if start > 0 {
            // Idle counts from the last answer, however long it took to send.
            idle_deadline = Instant::now() + timeouts.idle;
        }
        if close {
            linger(&mut stream, timeouts.linger, &mut shutdown).await;
            return Ok(());
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            n = stream.read_buf(&mut buf) => Some(n?),
            _ = tokio::time::sleep_until(idle_deadline) => None,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        match read {
            Some(0) => return Ok(()),
            Some(_) => {}
            None => {
                let _ = stream.shutdown().await;
                anyhow::bail!("no complete request in {:?}: closing the connection", timeouts.idle);
            }
        }
    }
}

/// What a connection's buffer keeps between requests: enough for the usual
/// pipelined small requests without reallocating.
const KEPT_CAPACITY: usize = 128 * 1024;

/// Gives back a buffer's memory beyond [`KEPT_CAPACITY`] (or beyond what it
/// holds, if more): after a large request or reply has gone through.
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
    match e {
        NodeError::NotLeader { leader } => Reply::Redirect(
            leader
                .and_then(|l| node.node_config(l))
                .and_then(|n| file_addr(&node.config, n)),
        ),
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

/// Runs one request against the cluster.
pub async fn execute(node: &NodeHandle, req: Request) -> Reply {
    match req {
        Request::Read { name } => {
            let key = file_key(&name);
            let got = node
                .query(false, move |store| {
                    let now = now_ms();
                    store
                        .get(&key, now)
                        .map(|e| (e.version, remaining_s(e.expires_at_ms, now), e.value.to_vec()))
                })
                .await;
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
        let (client, server) = tokio::io::duplex(1024);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(serve_stream(
            server,
            Limits::default(),
            TIMEOUTS,
            stop,
            move |_req| async move {
                Reply::Contents {
                    version: 1,
                    exptime_s: 0,
                    content: vec![b'x'; reply_bytes],
                }
            },
        ));
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
                    serve_stream(stream, limits, ConnectionTimeouts::default(), stop, |_req| async {
                        Reply::Ok { version: 1 }
                    })
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
