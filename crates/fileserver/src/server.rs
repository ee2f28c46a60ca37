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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
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
    fn spawn(&mut self, node: NodeHandle, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<anyhow::Result<()>>> {
        let Some(me) = node.node_config(node.raft_id) else {
            tracing::error!("this node is not in its own config; no file server");
            return Vec::new();
        };
        let Some(addr) = file_addr(&node.config, me) else {
            tracing::info!(
                "node {} has no file_addr in a {}-node cluster: no file server on this node",
                me.id,
                node.config.nodes.len()
            );
            return Vec::new();
        };
        vec![tokio::spawn(async move {
            let r = serve_files(node, addr, shutdown).await;
            if let Err(e) = &r {
                tracing::error!("file server stopped: {e:#}");
            }
            r
        })]
    }
}

/// Serves the file protocol on `addr` until `shutdown` becomes true.
pub async fn serve_files(node: NodeHandle, addr: String, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding the file server to {addr}"))?;
    tracing::info!("file server listening on {addr}");
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

/// Reads requests from one connection and answers them in order until the
/// peer closes, a fatal protocol error, or shutdown.
async fn serve_connection(
    node: &NodeHandle,
    mut stream: TcpStream,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    const READ_CHUNK: usize = 64 * 1024;
    const FLUSH_BYTES: usize = 64 * 1024;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::new();
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
                    execute(node, req).await.encode(&mut out);
                    // Bounded output: a client pipelining many reads of big
                    // files gets them as they come, and TCP backpressure
                    // stops us if it does not read.
                    if out.len() >= FLUSH_BYTES {
                        stream.write_all(&out).await?;
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
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            n = stream.read_buf(&mut buf) => n?,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
    }
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
    fn remaining_seconds_round_up() {
        assert_eq!(remaining_s(0, 5_000), 0);
        assert_eq!(remaining_s(6_000, 5_000), 1);
        assert_eq!(remaining_s(6_001, 5_000), 2);
        assert_eq!(remaining_s(5_001, 5_000), 1);
        assert_eq!(deadline_ms(0, 5_000), 0);
        assert_eq!(deadline_ms(2, 5_000), 7_000);
        assert_eq!(deadline_ms(u64::MAX, 5_000), u64::MAX);
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
