//! In-memory SurfStore servers, for tests and local experiments.
//!
//! [`FakeBlockStore`] and [`FakeMetaStore`] implement the course's
//! semantics over maps (versions must go up by exactly one; blocks by
//! SHA-256; the consistent-hash ring for placement), and [`FakeFollower`]
//! answers every metadata call like a Raft follower, with FAILED_PRECONDITION
//! and the leader's address in `triton-leader`, so the client's redirect
//! handling can be tested without a cluster. [`serve_fakes`] starts them on
//! 127.0.0.1 ports chosen by the OS.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use triton_proto::surfstore::block_store_server::{BlockStore, BlockStoreServer};
use triton_proto::surfstore::meta_store_server::{MetaStore, MetaStoreServer};
use triton_proto::surfstore::{
    Block, BlockHash, BlockHashes, BlockStoreAddrs, BlockStoreMap, FileInfoMap, FileMetaData, Success, Version,
};

use crate::chunk::block_hash;
use crate::sync::MAX_BLOCKS_PER_STREAM;

/// The ring rule: a store's position is SHA-256 hex of `"blockstore" +
/// addr`; a block goes to the first store whose position is greater than
/// the block's hash, wrapping around to the smallest. `None` if no stores.
pub fn ring_owner<'a>(stores: &'a [String], hash: &str) -> Option<&'a String> {
    let mut ring: Vec<(String, &String)> = stores
        .iter()
        .map(|a| (block_hash(format!("blockstore{a}").as_bytes()), a))
        .collect();
    ring.sort();
    ring.iter()
        .find(|(pos, _)| pos.as_str() > hash)
        .or_else(|| ring.first())
        .map(|(_, a)| *a)
}

/// A test hook run once, inside a fake's handler.
pub type Hook = Arc<Mutex<Option<Box<dyn FnOnce() + Send>>>>;

/// An in-memory block store. `fail_gets_after`, when set, makes every
/// GetBlock after that many fail (to test interrupted downloads);
/// `course_only` makes it refuse Triton's `PutBlockStream` extension with
/// UNIMPLEMENTED, like a course block store (to test the fallback);
/// `before_missing_blocks` runs once when MissingBlocks is next called,
/// between the client's hashing and its reading of blocks to send (to
/// change a file under the client); `duplicate_missing` lists every missing
/// hash twice; `put_stream_delay_ms` makes PutBlockStream take that long
/// per block (a slow link). Like Triton's stores it refuses a stream of
/// more than [`MAX_BLOCKS_PER_STREAM`] blocks.
#[derive(Clone, Default)]
pub struct FakeBlockStore {
    /// The stored blocks by hash.
    pub blocks: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// GetBlock calls left before they start failing (negative: never fail).
    pub fail_gets_after: Arc<AtomicI64>,
    /// Answer PutBlockStream with UNIMPLEMENTED.
    pub course_only: Arc<AtomicBool>,
    /// PutBlock calls served.
    pub put_block_calls: Arc<AtomicU64>,
    /// PutBlockStream calls served.
    pub put_stream_calls: Arc<AtomicU64>,
    /// Run (once) at the start of the next MissingBlocks call.
    pub before_missing_blocks: Hook,
    /// MissingBlocks lists each missing hash twice.
    pub duplicate_missing: Arc<AtomicBool>,
    /// Milliseconds PutBlockStream waits after reading each block.
    pub put_stream_delay_ms: Arc<AtomicU64>,
}

impl FakeBlockStore {
    /// An empty store that never fails.
    pub fn new() -> FakeBlockStore {
        let store = FakeBlockStore::default();
        store.fail_gets_after.store(-1, Ordering::SeqCst);
        store
    }
}

#[tonic::async_trait]
impl BlockStore for FakeBlockStore {
    async fn get_block(&self, req: Request<BlockHash>) -> Result<Response<Block>, Status> {
        let left = self.fail_gets_after.load(Ordering::SeqCst);
        if left == 0 {
            return Err(Status::internal("injected GetBlock failure"));
        }
        if left > 0 {
            self.fail_gets_after.fetch_sub(1, Ordering::SeqCst);
        }
        let hash = req.into_inner().hash;
        let blocks = self.blocks.lock().expect("lock");
        let data = blocks
            .get(&hash)
            .ok_or_else(|| Status::not_found(format!("no block {hash}")))?;
        Ok(Response::new(Block {
            block_data: data.clone(),
            block_size: data.len() as i32,
        }))
    }

    async fn put_block(&self, req: Request<Block>) -> Result<Response<Success>, Status> {
        let block = req.into_inner();
        let hash = block_hash(&block.block_data);
        self.blocks.lock().expect("lock").insert(hash, block.block_data);
        self.put_block_calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(Success { flag: true }))
    }

    async fn put_block_stream(&self, req: Request<tonic::Streaming<Block>>) -> Result<Response<BlockHashes>, Status> {
        if self.course_only.load(Ordering::SeqCst) {
            return Err(Status::unimplemented("a course block store"));
        }
        let mut stream = req.into_inner();
        let mut hashes = Vec::new();
        while let Some(block) = stream.message().await? {
            if hashes.len() >= MAX_BLOCKS_PER_STREAM {
                return Err(Status::invalid_argument(format!(
                    "more than {MAX_BLOCKS_PER_STREAM} blocks on one PutBlockStream"
                )));
            }
            let delay = self.put_stream_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            let hash = block_hash(&block.block_data);
            self.blocks.lock().expect("lock").insert(hash.clone(), block.block_data);
            hashes.push(hash);
        }
        self.put_stream_calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(BlockHashes { hashes }))
    }

    async fn has_blocks(&self, req: Request<BlockHashes>) -> Result<Response<BlockHashes>, Status> {
        let blocks = self.blocks.lock().expect("lock");
        let hashes = req
            .into_inner()
            .hashes
            .into_iter()
            .filter(|h| blocks.contains_key(h))
            .collect();
        Ok(Response::new(BlockHashes { hashes }))
    }

    async fn missing_blocks(&self, req: Request<BlockHashes>) -> Result<Response<BlockHashes>, Status> {
        let hook = self.before_missing_blocks.lock().expect("lock").take();
        if let Some(hook) = hook {
            hook();
        }
        let blocks = self.blocks.lock().expect("lock");
        let twice = self.duplicate_missing.load(Ordering::SeqCst);
        let hashes = req
            .into_inner()
            .hashes
            .into_iter()
            .filter(|h| !blocks.contains_key(h))
            .flat_map(|h| if twice { vec![h.clone(), h] } else { vec![h] })
            .collect();
        Ok(Response::new(BlockHashes { hashes }))
    }

    async fn get_block_hashes(&self, _: Request<()>) -> Result<Response<BlockHashes>, Status> {
        let hashes = self.blocks.lock().expect("lock").keys().cloned().collect();
        Ok(Response::new(BlockHashes { hashes }))
    }
}

/// An in-memory metadata service (a single "leader").
#[derive(Clone, Default)]
pub struct FakeMetaStore {
    /// The file map.
    pub files: Arc<Mutex<BTreeMap<String, FileMetaData>>>,
    /// The block store addresses, in ring order of the config.
    pub block_stores: Vec<String>,
    /// Updates applied just before the next UpdateFile is handled, as if
    /// another client's landed between this client's GetFileInfoMap and its
    /// UpdateFile (to test losing that race).
    pub sneak_in: Arc<Mutex<Vec<FileMetaData>>>,
    /// UpdateFile for these names fails with INVALID_ARGUMENT, as a server
    /// refusing a name does (to test a failure among accepted updates).
    pub fail_updates: Arc<Mutex<HashSet<String>>>,
    /// Run (once) at the start of the next GetFileInfoMap call: after the
    /// client's scan, before it applies anything (to change a file under it).
    pub before_file_info_map: Hook,
}

#[tonic::async_trait]
impl MetaStore for FakeMetaStore {
    async fn get_file_info_map(&self, _: Request<()>) -> Result<Response<FileInfoMap>, Status> {
        let hook = self.before_file_info_map.lock().expect("lock").take();
        if let Some(hook) = hook {
            hook();
        }
        let files = self.files.lock().expect("lock");
        Ok(Response::new(FileInfoMap {
            file_info_map: files.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }))
    }

    async fn update_file(&self, req: Request<FileMetaData>) -> Result<Response<Version>, Status> {
        let meta = req.into_inner();
        if self.fail_updates.lock().expect("lock").contains(&meta.filename) {
            return Err(Status::invalid_argument(format!(
                "injected failure for {:?}",
                meta.filename
            )));
        }
        let mut files = self.files.lock().expect("lock");
        for other in self.sneak_in.lock().expect("lock").drain(..) {
            files.insert(other.filename.clone(), other);
        }
        let current = files.get(&meta.filename).map_or(0, |m| m.version);
        if meta.version != current + 1 {
            return Ok(Response::new(Version { version: -1 }));
        }
        let version = meta.version;
        files.insert(meta.filename.clone(), meta);
        Ok(Response::new(Version { version }))
    }

    async fn get_block_store_map(&self, req: Request<BlockHashes>) -> Result<Response<BlockStoreMap>, Status> {
        let mut map: HashMap<String, BlockHashes> = HashMap::new();
        for hash in req.into_inner().hashes {
            let owner =
                ring_owner(&self.block_stores, &hash).ok_or_else(|| Status::failed_precondition("no block stores"))?;
            map.entry(owner.clone()).or_default().hashes.push(hash);
        }
        Ok(Response::new(BlockStoreMap { block_store_map: map }))
    }

    async fn get_block_store_addrs(&self, _: Request<()>) -> Result<Response<BlockStoreAddrs>, Status> {
        Ok(Response::new(BlockStoreAddrs {
            block_store_addrs: self.block_stores.clone(),
        }))
    }
}

/// A metadata node that is not the leader: every call fails with
/// FAILED_PRECONDITION naming `leader` in the `triton-leader` metadata.
#[derive(Clone)]
pub struct FakeFollower {
    /// The address it redirects to (empty: leader unknown).
    pub leader: String,
}

impl FakeFollower {
    fn refuse<T>(&self) -> Result<Response<T>, Status> {
        let mut status = Status::failed_precondition("not the leader");
        if let Ok(value) = self.leader.parse() {
            status.metadata_mut().insert(crate::rpc::LEADER_METADATA_KEY, value);
        }
        Err(status)
    }
}

#[tonic::async_trait]
impl MetaStore for FakeFollower {
    async fn get_file_info_map(&self, _: Request<()>) -> Result<Response<FileInfoMap>, Status> {
        self.refuse()
    }
    async fn update_file(&self, _: Request<FileMetaData>) -> Result<Response<Version>, Status> {
        self.refuse()
    }
    async fn get_block_store_map(&self, _: Request<BlockHashes>) -> Result<Response<BlockStoreMap>, Status> {
        self.refuse()
    }
    async fn get_block_store_addrs(&self, _: Request<()>) -> Result<Response<BlockStoreAddrs>, Status> {
        self.refuse()
    }
}

/// A running set of fakes: one follower, one leader, `n` block stores.
pub struct Fakes {
    /// The metadata addresses, follower first (so clients must follow the
    /// redirect).
    pub meta_addrs: Vec<String>,
    /// The leader's state.
    pub meta: FakeMetaStore,
    /// The block stores, in the order of `meta.block_stores`.
    pub stores: Vec<FakeBlockStore>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fakes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Fakes {
    /// A JSON config (the course's format) naming these servers.
    pub fn config_json(&self) -> String {
        let quote = |v: &[String]| v.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
        format!(
            "{{\"RaftAddrs\": [{}], \"BlockAddrs\": [{}]}}\n",
            quote(&self.meta_addrs),
            quote(&self.meta.block_stores)
        )
    }
}

async fn listen() -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

fn spawn_server(listener: TcpListener, router: tonic::transport::server::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let incoming = tokio_stream_incoming(listener);
        // Errors end the fake; the test then fails on its calls.
        let _ = router.serve_with_incoming(incoming).await;
    })
}

fn tokio_stream_incoming(listener: TcpListener) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let conn = listener.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((conn, listener))
    })
}

/// Starts a follower, a leader and `block_stores` block stores.
pub async fn serve_fakes(block_stores: usize) -> std::io::Result<Fakes> {
    let mut tasks = Vec::new();
    let mut stores = Vec::new();
    let mut store_addrs = Vec::new();
    for _ in 0..block_stores {
        let (listener, addr) = listen().await?;
        let store = FakeBlockStore::new();
        let router = tonic::transport::Server::builder().add_service(
            BlockStoreServer::new(store.clone())
                .max_decoding_message_size(crate::rpc::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(crate::rpc::MAX_MESSAGE_BYTES),
        );
        tasks.push(spawn_server(listener, router));
        stores.push(store);
        store_addrs.push(addr.to_string());
    }
    let meta = FakeMetaStore {
        files: Arc::default(),
        block_stores: store_addrs,
        sneak_in: Arc::default(),
        fail_updates: Arc::default(),
        before_file_info_map: Arc::default(),
    };
    let (leader_listener, leader_addr) = listen().await?;
    // Replies uncapped, like Triton's metadata service.
    let router = tonic::transport::Server::builder()
        .add_service(MetaStoreServer::new(meta.clone()).max_decoding_message_size(crate::rpc::MAX_MESSAGE_BYTES));
    tasks.push(spawn_server(leader_listener, router));
    let (follower_listener, follower_addr) = listen().await?;
    let router = tonic::transport::Server::builder().add_service(MetaStoreServer::new(FakeFollower {
        leader: leader_addr.to_string(),
    }));
    tasks.push(spawn_server(follower_listener, router));
    Ok(Fakes {
        meta_addrs: vec![follower_addr.to_string(), leader_addr.to_string()],
        meta,
        stores,
        tasks,
    })
}
