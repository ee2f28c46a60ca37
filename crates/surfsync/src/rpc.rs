//! gRPC clients for the metadata service and the block stores.
//!
//! The metadata service is a Raft group: only the leader answers, a
//! follower refuses with FAILED_PRECONDITION and names the leader in the
//! `triton-leader` response metadata, and while no majority is up calls fail
//! with UNAVAILABLE or DEADLINE_EXCEEDED. [`MetaClient`] follows the hint,
//! tries the other nodes, and gives up with [`RpcError::NoMajority`] only
//! when no node has answered for a whole deadline.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use triton_node::tls::Dialer;
use triton_proto::surfstore::block_store_client::BlockStoreClient;
use triton_proto::surfstore::meta_store_client::MetaStoreClient;
use triton_proto::surfstore::{Block, BlockHash, BlockHashes, BlockStoreMap, FileInfoMap, FileMetaData};

/// Largest gRPC message the client sends, and accepts from block stores: a
/// block (at most 16 MiB with CDC) or a hash list, with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Largest reply accepted from the metadata service. GetFileInfoMap grows
/// with the files and their hash lists (a 1 GiB file of 4 KiB blocks alone
/// is 17 MiB) and the server does not cap its replies, so any cap below what
/// it can send stops every client once the map outgrows it. gRPC frames a
/// message with a 32-bit length: that is the bound.
pub const MAX_META_REPLY_BYTES: usize = u32::MAX as usize;
/// Slowest upload rate a `PutBlockStream` is given time for, in bytes per
/// second, on top of its timeout: see [`BlockStores::put_block_stream`].
pub const MIN_UPLOAD_RATE: u64 = 128 << 10;
/// The HTTP/2 stream window the client asks for (and block stores grant):
/// bytes a stream may have sent that the store has not read yet.
const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// The response metadata key naming the leader on a FAILED_PRECONDITION.
pub const LEADER_METADATA_KEY: &str = "triton-leader";
/// Hashes per HasBlocks/MissingBlocks/GetBlockStoreMap request, so a large
/// sync never builds one oversized message.
pub const HASHES_PER_REQUEST: usize = 20_000;

/// A failed remote call.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No metadata node answered within the deadline.
    #[error("the metadata service has no majority (no node answered for {0:?}): {1}")]
    NoMajority(Duration, String),
    /// A call failed for another reason.
    #[error("{0}")]
    Failed(String),
}

/// A channel to `addr`: a full URI as given, else `host:port` dialed by
/// `dialer` (TLS when the cluster config has `[tls]`).
fn endpoint(dialer: &Dialer, addr: &str, timeout: Duration) -> Result<Channel, RpcError> {
    let endpoint = if addr.contains("://") {
        Endpoint::from_shared(addr.to_string())
            .map_err(|e| RpcError::Failed(format!("bad address {addr:?}: {e}")))?
            .tcp_nodelay(true)
    } else {
        dialer.endpoint(addr).map_err(|e| RpcError::Failed(format!("{e:#}")))?
    };
    Ok(endpoint
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        // Blocks move in bulk: HTTP/2 windows larger than the 64 KiB
        // default keep a stream of them from waiting on window updates.
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(16 << 20))
        .connect_lazy())
}

/// Whether a FAILED_PRECONDITION is a "not the leader" answer.
fn is_not_leader(status: &Status) -> bool {
    status.metadata().get(LEADER_METADATA_KEY).is_some() || status.message().to_ascii_lowercase().contains("leader")
}

/// A client of the metadata service that follows the leader.
pub struct MetaClient {
    addrs: Vec<String>,
    channels: Mutex<HashMap<String, Channel>>,
    /// The address believed to be the leader's.
    current: Mutex<String>,
    deadline: Duration,
    /// Plaintext or TLS, as the metadata nodes serve.
    dialer: Dialer,
}

impl MetaClient {
    /// A client of the nodes at `addrs`; it gives up after `deadline` without
    /// an answer from any of them.
    pub fn new(addrs: Vec<String>, deadline: Duration) -> Result<MetaClient, RpcError> {
        MetaClient::with_dialer(addrs, deadline, Dialer::plaintext())
    }

    /// [`MetaClient::new`] connecting with `dialer` (for TLS clusters).
    pub fn with_dialer(addrs: Vec<String>, deadline: Duration, dialer: Dialer) -> Result<MetaClient, RpcError> {
        let first = addrs
            .first()
            .cloned()
            .ok_or_else(|| RpcError::Failed("the config lists no metadata node".into()))?;
        Ok(MetaClient {
            addrs,
            channels: Mutex::new(HashMap::new()),
            current: Mutex::new(first),
            deadline,
            dialer,
        })
    }

    fn client(&self, addr: &str) -> Result<MetaStoreClient<Channel>, RpcError> {
        let mut channels = self.channels.lock().expect("channel map lock");
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = endpoint(&self.dialer, addr, self.deadline)?;
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(MetaStoreClient::new(channel)
            .max_decoding_message_size(MAX_META_REPLY_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    fn next_after(&self, addr: &str) -> String {
        let pos = self.addrs.iter().position(|a| a == addr);
        let next = pos.map_or(0, |p| (p + 1) % self.addrs.len());
        self.addrs[next].clone()
    }

    /// Runs `call` against the leader, following redirects and retrying on
    /// other nodes until `deadline` passes with no answer.
    pub async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, RpcError>
    where
        F: FnMut(MetaStoreClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut last_error = String::from("no attempt");
        let mut attempts = 0u32;
        loop {
            let addr = self.current.lock().expect("leader lock").clone();
            let remaining = self.deadline.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(RpcError::NoMajority(self.deadline, last_error));
            }
            let client = self.client(&addr)?;
            let result = tokio::time::timeout(remaining, call(client)).await;
            attempts += 1;
            let status = match result {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded("client deadline"),
            };
            last_error = format!("{what} at {addr}: {}: {}", status.code(), status.message());
            match status.code() {
                // Triton's nodes mark a not-leader answer with the leader
                // key (empty while no leader is known); other servers' say
                // "leader". Any other precondition (no block stores
                // configured) is the answer: retrying cannot change it.
                Code::FailedPrecondition if !is_not_leader(&status) => return Err(RpcError::Failed(last_error)),
                Code::FailedPrecondition => {
                    let hint = status
                        .metadata()
                        .get(LEADER_METADATA_KEY)
                        .and_then(|v| v.to_str().ok())
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string);
                    let next = match hint {
                        Some(leader) if leader != addr => leader,
                        _ => {
                            // No leader known yet (an election is running):
                            // give it a moment, then ask another node.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            self.next_after(&addr)
                        }
                    };
                    *self.current.lock().expect("leader lock") = next;
                }
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
                    let next = self.next_after(&addr);
                    *self.current.lock().expect("leader lock") = next;
                    if (attempts as usize).is_multiple_of(self.addrs.len()) {
                        // Every node failed once in this round: back off a little.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                _ => return Err(RpcError::Failed(last_error)),
            }
        }
    }

    /// The remote file map.
    pub async fn file_info_map(&self) -> Result<HashMap<String, FileMetaData>, RpcError> {
        let map: FileInfoMap = self
            .call("GetFileInfoMap", |mut c| async move { c.get_file_info_map(()).await })
            .await?;
        Ok(map.file_info_map)
    }

    /// Proposes `meta`; returns the new version, or -1 when `meta.version`
    /// is not the current version plus one.
    pub async fn update_file(&self, meta: FileMetaData) -> Result<i32, RpcError> {
        let version = self
            .call("UpdateFile", |mut c| {
                let meta = meta.clone();
                async move { c.update_file(meta).await }
            })
            .await?;
        Ok(version.version)
    }

    /// The block store addresses.
    pub async fn block_store_addrs(&self) -> Result<Vec<String>, RpcError> {
        let addrs = self
            .call("GetBlockStoreAddrs", |mut c| async move {
                c.get_block_store_addrs(()).await
            })
            .await?;
        Ok(addrs.block_store_addrs)
    }

    /// Which block store holds each of `hashes`: hash -> store address.
    pub async fn block_store_map(&self, hashes: &[String]) -> Result<HashMap<String, String>, RpcError> {
        let mut out = HashMap::with_capacity(hashes.len());
        for batch in hashes.chunks(HASHES_PER_REQUEST) {
            let map: BlockStoreMap = self
                .call("GetBlockStoreMap", |mut c| {
                    let req = BlockHashes { hashes: batch.to_vec() };
                    async move { c.get_block_store_map(req).await }
                })
                .await?;
            for (server, hashes) in map.block_store_map {
                for hash in hashes.hashes {
                    out.insert(hash, server.clone());
                }
            }
        }
        if let Some(missing) = hashes.iter().find(|h| !out.contains_key(*h)) {
            return Err(RpcError::Failed(format!(
                "GetBlockStoreMap placed no block store for block {missing}"
            )));
        }
        Ok(out)
    }
}

/// Clients of the block stores, one channel per address.
pub struct BlockStores {
    channels: Mutex<HashMap<String, Channel>>,
    timeout: Duration,
}

impl BlockStores {
    /// Block store clients whose calls time out after `timeout`.
    pub fn new(timeout: Duration) -> BlockStores {
        BlockStores {
            channels: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    fn client(&self, addr: &str) -> Result<BlockStoreClient<Channel>, RpcError> {
        let mut channels = self.channels.lock().expect("channel map lock");
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                // Block stores serve plaintext only.
                let c = endpoint(&Dialer::plaintext(), addr, self.timeout)?;
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(BlockStoreClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    async fn timed<T>(
        &self,
        what: String,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, RpcError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(RpcError::Failed(format!("{what}: {}: {}", s.code(), s.message()))),
            Err(_) => Err(RpcError::Failed(format!("{what}: no answer in {:?}", self.timeout))),
        }
    }

    /// The block `hash` from the store at `addr`, checked against its hash.
    pub async fn get_block(&self, addr: &str, hash: &str) -> Result<Vec<u8>, RpcError> {
        let mut client = self.client(addr)?;
        let block: Block = self
            .timed(
                format!("GetBlock {hash} from {addr}"),
                client.get_block(BlockHash { hash: hash.to_string() }),
            )
            .await?;
        let actual = crate::chunk::block_hash(&block.block_data);
        if actual != hash {
            return Err(RpcError::Failed(format!(
                "block store {addr} returned a block hashing to {actual} for {hash}"
            )));
        }
        Ok(block.block_data)
    }

    /// Stores `data` at `addr`.
    pub async fn put_block(&self, addr: &str, data: Vec<u8>) -> Result<(), RpcError> {
        let mut client = self.client(addr)?;
        let size = i32::try_from(data.len()).map_err(|_| RpcError::Failed("block larger than 2 GiB".into()))?;
        let ok = self
            .timed(
                format!("PutBlock to {addr}"),
                client.put_block(Block {
                    block_data: data,
                    block_size: size,
                }),
            )
            .await?;
        if !ok.flag {
            return Err(RpcError::Failed(format!("block store {addr} refused a block")));
        }
        Ok(())
    }

    /// Stores every block `blocks` yields at `addr` on one `PutBlockStream`
    /// (Triton's extension: one durable sync for all of them). Returns the
    /// hash the store computed for each block, in order, or `None` when the
    /// store does not implement the extension (a course block store): then
    /// use [`BlockStores::put_block`].
    ///
    /// A stream carries megabytes, which a slow link takes longer than the
    /// timeout to send, and the store keeps nothing of a stream cut short:
    /// so the timeout runs from the last progress (a block taken for
    /// sending), plus the time the bytes possibly still unread by the store
    /// (a window and a block) take at [`MIN_UPLOAD_RATE`].
    pub async fn put_block_stream(
        &self,
        addr: &str,
        blocks: impl futures::Stream<Item = Block> + Send + 'static,
    ) -> Result<Option<Vec<String>>, RpcError> {
        use futures::StreamExt;
        let mut client = self.client(addr)?;
        let started = Instant::now();
        // Milliseconds since `started` of the last block taken, and the
        // bytes not known to be read by the store then.
        let progress = std::sync::Arc::new(Mutex::new((Duration::ZERO, 0u64)));
        let watched = {
            let progress = progress.clone();
            blocks.map(move |block| {
                let len = block.block_data.len() as u64;
                let unread = len.saturating_add(u64::from(STREAM_WINDOW_BYTES));
                *progress.lock().expect("progress lock") = (started.elapsed(), unread);
                block
            })
        };
        let deadline = || {
            let (at, unread) = *progress.lock().expect("progress lock");
            let slack = Duration::from_secs_f64(unread as f64 / MIN_UPLOAD_RATE as f64);
            started + at + self.timeout + slack
        };
        let call = client.put_block_stream(watched);
        tokio::pin!(call);
        let result = loop {
            let until = deadline();
            tokio::select! {
                r = &mut call => break Some(r),
                () = tokio::time::sleep_until(until.into()) => {
                    // Unless a block was taken meanwhile.
                    if Instant::now() >= deadline() {
                        break None;
                    }
                }
            }
        };
        match result {
            Some(Ok(r)) => Ok(Some(r.into_inner().hashes)),
            Some(Err(s)) if s.code() == Code::Unimplemented => Ok(None),
            Some(Err(s)) => Err(RpcError::Failed(format!(
                "PutBlockStream to {addr}: {}: {}",
                s.code(),
                s.message()
            ))),
            None => Err(RpcError::Failed(format!(
                "PutBlockStream to {addr}: no progress in {:?}",
                self.timeout
            ))),
        }
    }

    /// Those of `hashes` that the store at `addr` does not hold.
    pub async fn missing_blocks(&self, addr: &str, hashes: &[String]) -> Result<Vec<String>, RpcError> {
        let mut out = Vec::new();
        for batch in hashes.chunks(HASHES_PER_REQUEST) {
            let mut client = self.client(addr)?;
            let missing = self
                .timed(
                    format!("MissingBlocks at {addr}"),
                    client.missing_blocks(BlockHashes { hashes: batch.to_vec() }),
                )
                .await?;
            out.extend(missing.hashes);
        }
        Ok(out)
    }
}
