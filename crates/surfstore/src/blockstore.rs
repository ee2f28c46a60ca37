//! The block store: content-addressed, durable blocks behind the course's
//! `BlockStore` gRPC service.
//!
//! New blocks are appended to pack files (`DIR/packs/`, see [`crate::pack`])
//! and a put is acknowledged only once durable: concurrent puts share one
//! `fdatasync` (group commit) instead of paying a file fsync and a directory
//! fsync each. Blocks written by earlier versions, one file per block at
//! `DIR/<first two hex chars>/<hash>`, are still found and served. Because a
//! block is named by the SHA-256 of its bytes, `PutBlock` has nothing to
//! trust from the client: the server hashes the data itself, and every read
//! is checked against the hash again. Hashes that come from the network are
//! checked ([`is_block_hash`]) before they get near a path, so no request
//! can name a file outside `DIR`.
//!
//! One process at a time: opening takes an exclusive `flock` on `DIR/LOCK`
//! (as the storage crate does for its WAL directory), so a second block
//! store on the same directory fails to start instead of cutting or
//! overwriting the running one's packs.
//!
//! The index of stored hashes is kept in memory (rebuilt at start by
//! verifying the packs and listing the legacy files), so
//! `HasBlocks`/`MissingBlocks` for thousands of hashes answer without
//! touching the disk.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};
use triton_proto::surfstore::block_store_server::{BlockStore, BlockStoreServer};
use triton_proto::surfstore::{Block, BlockHash, BlockHashes, Success};

use crate::hash::{block_hash, is_block_hash, HASH_HEX_LEN};
use crate::pack::{Location, PackLog, Recovery, DEFAULT_PACK_LIMIT, MAX_RECORD_LEN};

/// Default largest block accepted by `PutBlock` (16 MiB).
pub const DEFAULT_MAX_BLOCK_BYTES: usize = 16 << 20;

/// The largest `max_block_bytes` a store accepts: what the pack format can
/// hold (so any block ever acknowledged is recovered, whatever the limit at
/// the next start).
pub const MAX_BLOCK_BYTES_LIMIT: usize = MAX_RECORD_LEN;

/// The lock file in the block directory.
pub const LOCK_FILE: &str = "LOCK";

/// Most hashes accepted in one `HasBlocks`/`MissingBlocks` call: bounds the
/// work, the reply and the message size of one request (131,072 hashes are
/// about 8.6 MiB encoded; surfsync sends 20,000 per call).
pub const MAX_HASHES_PER_CALL: usize = 1 << 17;
/// The encoded size of [`MAX_HASHES_PER_CALL`] hashes: 64 hex characters
/// and 2 bytes of protobuf framing each.
const HASH_LIST_BYTES: usize = MAX_HASHES_PER_CALL * (HASH_HEX_LEN + 2);

/// Most blocks accepted on one `PutBlockStream` (part of the contract with
/// clients, so it lives with the generated interface).
pub use triton_proto::surfstore::MAX_BLOCKS_PER_STREAM;

/// A `PutBlockStream` hashes and appends received blocks in batches of
/// about this many bytes (off the async threads), so memory per stream
/// stays near this plus one block.
const STREAM_BATCH_BYTES: usize = 4 << 20;

/// HTTP/2 flow-control windows of the block store server.
const STREAM_WINDOW_BYTES: u32 = 4 << 20;
const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

/// Where earlier versions wrote temp files before the rename; cleared at open.
const TMP_DIR: &str = "tmp";
/// The pack files, under the block directory.
pub const PACK_DIR: &str = "packs";

/// A content-addressed block directory with the index of what it holds.
pub struct BlockDir {
    root: PathBuf,
    max_block_bytes: usize,
    /// Durably stored blocks by raw 32-byte digest: where in the packs, or
    /// `None` for a legacy one-file-per-block block.
    present: RwLock<HashMap<[u8; 32], Option<Location>>>,
    packs: PackLog,
    recovery: Recovery,
    /// Holds the exclusive `flock` on `LOCK` for as long as the store lives.
    _lock: File,
}

/// Takes an exclusive, non-blocking `flock` on `root/LOCK` (released when
/// the file is closed, including when the process dies).
fn lock_dir(root: &Path) -> anyhow::Result<File> {
    let path = root.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "block directory {} is in use by another block store ({} is locked)",
            root.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

fn digest_of(hash: &str) -> Option<[u8; 32]> {
    if !is_block_hash(hash) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hash, &mut out).ok()?;
    Some(out)
}

/// Where the block named `hash` lives under `root`, or `None` when `hash`
/// is not a block hash. The only way this module turns network input into
/// a path: the result is always `root/<2 hex>/<64 hex>`.
pub fn block_path(root: &Path, hash: &str) -> Option<PathBuf> {
    is_block_hash(hash).then(|| root.join(&hash[..2]).join(hash))
}

impl BlockDir {
    /// Opens (creating if needed) the block directory at `root`: verifies
    /// the packs (cutting a torn tail, see [`BlockDir::recovery`]), removes
    /// leftover temp files of older versions' interrupted puts and indexes
    /// the stored blocks. Files that are not named like a block are ignored.
    pub fn open(root: &Path, max_block_bytes: usize) -> anyhow::Result<BlockDir> {
        BlockDir::open_with_pack_limit(root, max_block_bytes, DEFAULT_PACK_LIMIT)
    }

    /// [`BlockDir::open`] with packs rotated past `pack_limit` bytes (small
    /// limits let tests cover rotation).
    pub fn open_with_pack_limit(root: &Path, max_block_bytes: usize, pack_limit: u64) -> anyhow::Result<BlockDir> {
        anyhow::ensure!(
            max_block_bytes <= MAX_BLOCK_BYTES_LIMIT,
            "the largest block ({max_block_bytes} bytes) exceeds what the pack format holds ({MAX_BLOCK_BYTES_LIMIT})"
        );
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        // Before touching anything: another store may be running on `root`.
        let lock = lock_dir(root)?;
        let tmp = root.join(TMP_DIR);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).with_context(|| format!("clearing {}", tmp.display()))?;
        }
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut present = HashMap::new();
        let pack_dir = root.join(PACK_DIR);
        let (packs, recovery) = PackLog::open(&pack_dir, pack_limit, |digest, loc| {
            present.entry(digest).or_insert(Some(loc));
        })
        .with_context(|| format!("opening the packs in {}", pack_dir.display()))?;
        for sub in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
            let sub = sub?;
            let name = sub.file_name();
            let Some(prefix) = name.to_str() else { continue };
            if prefix.len() != 2 || !sub.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(sub.path())? {
                let f = f?;
                if let Some(d) = f.file_name().to_str().and_then(digest_of) {
                    if f.file_name().to_str().is_some_and(|n| n.starts_with(prefix)) {
                        present.entry(d).or_insert(None);
                    }
                }
            }
        }
        Ok(BlockDir {
            root: root.to_path_buf(),
            max_block_bytes,
            present: RwLock::new(present),
            packs,
            recovery,
            _lock: lock,
        })
    }

    /// What opening found: records verified, a torn tail cut, damage.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The pack file with id `id` (for tests and tools).
    pub fn pack_path(&self, id: u32) -> PathBuf {
        self.packs.path_of(id)
    }

    fn path_of(&self, hash: &str) -> PathBuf {
        block_path(&self.root, hash).expect("callers validate hashes first")
    }

    /// Number of blocks stored.
    pub fn len(&self) -> usize {
        self.present.read().expect("lock").len()
    }

    /// Whether no block is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the block with hash `hash` is stored (false for non-hashes).
    pub fn contains(&self, hash: &str) -> bool {
        digest_of(hash).is_some_and(|d| self.present.read().expect("lock").contains_key(&d))
    }

    /// Stores `data` durably under its own hash and returns the hash.
    /// Storing a block that is already there is a no-op.
    pub fn put(&self, data: &[u8]) -> Result<String, BlockError> {
        let staged = self.stage(data)?;
        self.commit(std::slice::from_ref(&staged))?;
        Ok(staged.hash())
    }

    /// Appends `data` to the pack without waiting for durability (unless it
    /// is already stored). The block is neither acknowledged nor listed
    /// until [`BlockDir::commit`] returns: this is how one request makes
    /// many blocks durable with one sync.
    pub fn stage(&self, data: &[u8]) -> Result<Staged, BlockError> {
        if data.len() > self.max_block_bytes {
            return Err(BlockError::TooLarge {
                len: data.len(),
                max: self.max_block_bytes,
            });
        }
        let digest: [u8; 32] = Sha256::digest(data).into();
        if self.present.read().expect("lock").contains_key(&digest) {
            return Ok(Staged { digest, appended: None });
        }
        let appended = self.packs.append(&digest, data)?;
        Ok(Staged {
            digest,
            appended: Some(appended),
        })
    }

    /// Waits until every block in `staged` is durable (one group-committed
    /// sync), then lists them as stored.
    pub fn commit(&self, staged: &[Staged]) -> Result<(), BlockError> {
        let Some(ticket) = staged.iter().filter_map(|s| s.appended.map(|(_, t)| t)).max() else {
            return Ok(());
        };
        self.packs.wait_durable(ticket)?;
        let mut present = self.present.write().expect("lock");
        for s in staged {
            if let Some((loc, _)) = s.appended {
                present.entry(s.digest).or_insert(Some(loc));
            }
        }
        Ok(())
    }

    /// The block with hash `hash`.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, BlockError> {
        if !is_block_hash(hash) {
            return Err(BlockError::BadHash(hash.chars().take(80).collect()));
        }
        let digest = digest_of(hash).expect("checked above");
        let location = match self.present.read().expect("lock").get(&digest) {
            None => return Err(BlockError::NotFound(hash.to_string())),
            Some(l) => *l,
        };
        let data = match location {
            Some(loc) => self.packs.read(loc)?,
            None => fs::read(self.path_of(hash))?,
        };
        // Bit rot or tampering on disk must not be served as the block.
        if block_hash(&data) != hash {
            return Err(BlockError::Corrupt(hash.to_string()));
        }
        Ok(data)
    }

    /// Every stored hash, sorted.
    pub fn hashes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.present.read().expect("lock").keys().map(hex::encode).collect();
        v.sort_unstable();
        v
    }

    /// Splits `hashes` into (stored, not stored), keeping input order.
    /// Strings that are not hashes are never stored, so they are "missing".
    pub fn partition(&self, hashes: Vec<String>) -> (Vec<String>, Vec<String>) {
        let present = self.present.read().expect("lock");
        hashes
            .into_iter()
            .partition(|h| digest_of(h).is_some_and(|d| present.contains_key(&d)))
    }
}

/// A block appended by [`BlockDir::stage`], not yet acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Staged {
    digest: [u8; 32],
    /// Where it was appended and the durability ticket; `None` when the
    /// block was already stored.
    appended: Option<(Location, u64)>,
}

impl Staged {
    /// The block's hash (SHA-256, lowercase hex).
    pub fn hash(&self) -> String {
        hex::encode(self.digest)
    }
}

/// Why a block operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The block exceeds the configured limit.
    #[error("block of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The block's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not 64 lowercase hex characters.
    #[error("not a block hash (64 lowercase hex characters): {0:?}")]
    BadHash(String),
    /// No block with that hash is stored.
    #[error("no block with hash {0}")]
    NotFound(String),
    /// The stored file does not hash to its name.
    #[error("stored block {0} is corrupt (its contents do not match its hash)")]
    Corrupt(String),
    /// The disk failed.
    #[error("block store I/O: {0}")]
    Io(#[from] io::Error),
}

impl From<BlockError> for Status {
    fn from(e: BlockError) -> Status {
        match &e {
            BlockError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
            BlockError::BadHash(_) => Status::invalid_argument(e.to_string()),
            BlockError::NotFound(_) => Status::not_found(e.to_string()),
            BlockError::Corrupt(_) => Status::data_loss(e.to_string()),
            BlockError::Io(_) => Status::internal(e.to_string()),
        }
    }
}

/// The `BlockStore` gRPC service over a [`BlockDir`].
#[derive(Clone)]
pub struct BlockStoreService {
    dir: Arc<BlockDir>,
}

impl BlockStoreService {
    /// Serves `dir`.
    pub fn new(dir: Arc<BlockDir>) -> BlockStoreService {
        BlockStoreService { dir }
    }

    /// The tonic server, accepting the largest block and the largest hash
    /// list a call may carry, whichever is bigger: with small blocks a
    /// block-sized limit refused MissingBlocks batches of a hundred hashes.
    /// Replies are not capped here: GetBlockHashes lists the whole store,
    /// and the caller's own limit decides what it accepts.
    pub fn into_server(self) -> BlockStoreServer<BlockStoreService> {
        let limit = self.dir.max_block_bytes.max(HASH_LIST_BYTES).saturating_add(1 << 10);
        BlockStoreServer::new(self).max_decoding_message_size(limit)
    }
}

fn check_hashes(h: &[String]) -> Result<(), Status> {
    if h.len() > MAX_HASHES_PER_CALL {
        return Err(Status::invalid_argument(format!(
            "{} hashes in one call; at most {MAX_HASHES_PER_CALL}",
            h.len()
        )));
    }
    if let Some(bad) = h.iter().find(|h| !is_block_hash(h)) {
        return Err(BlockError::BadHash(bad.chars().take(80).collect()).into());
    }
    Ok(())
}

/// blockSize is advisory in the course's protocol; when set it must agree.
fn check_block(block: &Block) -> Result<(), Status> {
    if block.block_size != 0 && usize::try_from(block.block_size).ok() != Some(block.block_data.len()) {
        return Err(Status::invalid_argument(format!(
            "blockSize {} but {} bytes of data",
            block.block_size,
            block.block_data.len()
        )));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("block store task failed: {e}")))
}

#[tonic::async_trait]
impl BlockStore for BlockStoreService {
    async fn get_block(&self, request: Request<BlockHash>) -> Result<Response<Block>, Status> {
        let hash = request.into_inner().hash;
        let dir = self.dir.clone();
        let data = blocking(move || dir.get(&hash)).await??;
        let block_size = i32::try_from(data.len()).map_err(|_| Status::internal("block larger than 2 GiB"))?;
        Ok(Response::new(Block {
            block_data: data,
            block_size,
        }))
    }

    async fn put_block(&self, request: Request<Block>) -> Result<Response<Success>, Status> {
        let block = request.into_inner();
        check_block(&block)?;
        let dir = self.dir.clone();
        blocking(move || dir.put(&block.block_data)).await??;
        Ok(Response::new(Success { flag: true }))
    }

    async fn put_block_stream(
        &self,
        request: Request<tonic::Streaming<Block>>,
    ) -> Result<Response<BlockHashes>, Status> {
        let mut blocks = request.into_inner();
        let mut staged: Vec<Staged> = Vec::new();
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut batch_bytes = 0usize;
        loop {
            let next = blocks.message().await?;
            let done = next.is_none();
            if let Some(block) = next {
                check_block(&block)?;
                if staged.len() + batch.len() >= MAX_BLOCKS_PER_STREAM {
                    return Err(Status::invalid_argument(format!(
                        "more than {MAX_BLOCKS_PER_STREAM} blocks on one PutBlockStream"
                    )));
                }
                batch_bytes += block.block_data.len();
                batch.push(block.block_data);
            }
            if !batch.is_empty() && (done || batch_bytes >= STREAM_BATCH_BYTES) {
                let dir = self.dir.clone();
                let work = std::mem::take(&mut batch);
                batch_bytes = 0;
                let mut more =
                    blocking(move || work.iter().map(|d| dir.stage(d)).collect::<Result<Vec<_>, _>>()).await??;
                staged.append(&mut more);
            }
            if done {
                break;
            }
        }
        let dir = self.dir.clone();
        let staged = blocking(move || dir.commit(&staged).map(|()| staged)).await??;
        Ok(Response::new(BlockHashes {
            hashes: staged.iter().map(Staged::hash).collect(),
        }))
    }

    async fn has_blocks(&self, request: Request<BlockHashes>) -> Result<Response<BlockHashes>, Status> {
        let hashes = request.into_inner().hashes;
        check_hashes(&hashes)?;
        let (has, _) = self.dir.partition(hashes);
        Ok(Response::new(BlockHashes { hashes: has }))
    }

    async fn missing_blocks(&self, request: Request<BlockHashes>) -> Result<Response<BlockHashes>, Status> {
        let hashes = request.into_inner().hashes;
        check_hashes(&hashes)?;
        let (_, missing) = self.dir.partition(hashes);
        Ok(Response::new(BlockHashes { hashes: missing }))
    }

    async fn get_block_hashes(&self, _: Request<()>) -> Result<Response<BlockHashes>, Status> {
        Ok(Response::new(BlockHashes {
            hashes: self.dir.hashes(),
        }))
    }
}

/// The connections accepted on `listener`, with `TCP_NODELAY` set (the
/// builder's `tcp_nodelay` does not apply to an incoming stream of ours).
/// Without it a small reply, sent as a data write then a trailers write,
/// waited for the client's delayed ACK: 40 ms per 4 KiB GetBlock.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Serves a block store on `listener` until `shutdown` resolves.
pub async fn serve_block_store(
    listener: tokio::net::TcpListener,
    dir: Arc<BlockDir>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let incoming = incoming(listener);
    tonic::transport::Server::builder()
        // Blocks arrive in bulk: larger HTTP/2 windows than the 64 KiB
        // default keep a stream of them from stalling on window updates.
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .add_service(BlockStoreService::new(dir).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("serving the block store")
}

/// Binds `addr` (host:port) for [`serve_block_store`].
pub async fn bind(addr: &str) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With small blocks the message limit still admits the hash lists a
    /// client sends (surfsync sends 20,000 hashes per MissingBlocks).
    #[tokio::test]
    async fn a_small_block_limit_still_takes_a_full_batch_of_hashes() {
        use triton_proto::surfstore::block_store_client::BlockStoreClient;
        let t = tempfile::tempdir().unwrap();
        let dir = Arc::new(BlockDir::open(t.path(), 4096).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_block_store(listener, dir, async move {
            let _ = stopped.await;
        }));
        let mut client = BlockStoreClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
            .max_encoding_message_size(usize::MAX);
        let hashes: Vec<String> = (0..20_000u32).map(|i| block_hash(&i.to_le_bytes())).collect();
        let missing = client
            .missing_blocks(BlockHashes { hashes: hashes.clone() })
            .await
            .expect("a batch of 20,000 hashes is accepted")
            .into_inner();
        assert_eq!(missing.hashes.len(), hashes.len());
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    /// Accepted connections have Nagle off, so small replies are not held
    /// back until the client's delayed ACK.
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        use tokio_stream::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_side = accepted.next().await.expect("a connection").expect("accepted");
        assert!(
            server_side.nodelay().unwrap(),
            "TCP_NODELAY is off on an accepted connection"
        );
    }

    #[test]
    fn put_get_and_reopen() {
        let t = tempfile::tempdir().unwrap();
        let d = BlockDir::open(t.path(), 1024).unwrap();
        assert!(d.is_empty());
        let h = d.put(b"hello").unwrap();
        assert_eq!(h, block_hash(b"hello"));
        assert_eq!(d.put(b"hello").unwrap(), h, "idempotent");
        assert_eq!(d.get(&h).unwrap(), b"hello");
        assert!(d.pack_path(0).is_file());
        let h2 = d.put(b"").unwrap();
        drop(d);
        // A leftover temp file of an older version's interrupted put, a
        // stray file, and a block in the older one-file-per-block layout.
        fs::write(t.path().join(TMP_DIR).join("junk.0"), b"x").unwrap();
        fs::write(t.path().join("README"), b"x").unwrap();
        let legacy = block_hash(b"legacy");
        fs::create_dir_all(t.path().join(&legacy[..2])).unwrap();
        fs::write(block_path(t.path(), &legacy).unwrap(), b"legacy").unwrap();
        let d = BlockDir::open(t.path(), 1024).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.recovery().records, 2);
        let mut want = vec![h.clone(), h2, legacy.clone()];
        want.sort();
        assert_eq!(d.hashes(), want);
        assert_eq!(d.get(&legacy).unwrap(), b"legacy");
        assert_eq!(d.put(b"legacy").unwrap(), legacy, "already stored");
        assert_eq!(d.recovery().records, 2);
        assert!(!t.path().join(TMP_DIR).join("junk.0").exists());
    }

    #[test]
    fn torn_pack_tail_is_repaired_at_open() {
        let t = tempfile::tempdir().unwrap();
        let d = BlockDir::open(t.path(), 1024).unwrap();
        let kept = d.put(b"acknowledged").unwrap();
        let pack = d.pack_path(0);
        drop(d);
        let good = fs::metadata(&pack).unwrap().len();
        // Half a record, as a kill -9 in the middle of a write leaves it.
        let mut f = fs::OpenOptions::new().append(true).open(&pack).unwrap();
        std::io::Write::write_all(&mut f, &crate::pack::encode_header(&[7; 32], 100)[..30]).unwrap();
        drop(f);
        let d = BlockDir::open(t.path(), 1024).unwrap();
        assert_eq!(d.recovery().truncated_bytes, 30);
        assert_eq!(fs::metadata(&pack).unwrap().len(), good);
        assert_eq!(d.get(&kept).unwrap(), b"acknowledged");
        let next = d.put(b"after repair").unwrap();
        drop(d);
        let d = BlockDir::open(t.path(), 1024).unwrap();
        assert_eq!(d.get(&next).unwrap(), b"after repair");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn refuses_bad_input() {
        let t = tempfile::tempdir().unwrap();
        let d = BlockDir::open(t.path(), 4).unwrap();
        assert!(matches!(d.put(b"12345"), Err(BlockError::TooLarge { len: 5, max: 4 })));
        assert!(matches!(d.get("../../etc/passwd"), Err(BlockError::BadHash(_))));
        assert!(matches!(d.get(&"A".repeat(64)), Err(BlockError::BadHash(_))));
        assert!(matches!(d.get(&block_hash(b"no")), Err(BlockError::NotFound(_))));
        let (has, missing) = d.partition(vec!["zz".into(), block_hash(b"no")]);
        assert!(has.is_empty());
        assert_eq!(missing.len(), 2);
        assert!(check_hashes(&["zz".to_string()]).is_err());
        assert!(check_hashes(&[block_hash(b"x")]).is_ok());
    }

    #[test]
    fn corrupt_file_is_not_served() {
        let t = tempfile::tempdir().unwrap();
        let d = BlockDir::open(t.path(), 1024).unwrap();
        let h = d.put(b"good").unwrap();
        // Rot in the pack after it was verified at open.
        let pack = d.pack_path(0);
        let mut bytes = fs::read(&pack).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        fs::write(&pack, &bytes).unwrap();
        assert!(matches!(d.get(&h), Err(BlockError::Corrupt(_))));
        // And a legacy block file whose contents do not match its name.
        let legacy = block_hash(b"legacy");
        fs::create_dir_all(t.path().join(&legacy[..2])).unwrap();
        fs::write(block_path(t.path(), &legacy).unwrap(), b"legacy").unwrap();
        drop(d);
        let d = BlockDir::open(t.path(), 1024).unwrap();
        fs::write(block_path(t.path(), &legacy).unwrap(), b"evil").unwrap();
        assert!(matches!(d.get(&legacy), Err(BlockError::Corrupt(_))));
        assert!(d.get(&h).is_err(), "the rotten record is not indexed after reopen");
    }

    #[test]
    fn a_smaller_limit_at_restart_keeps_every_stored_block() {
        let t = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = vec![vec![1; 100], vec![2; 5000], vec![3; 100_000], vec![4; 10]];
        let d = BlockDir::open(t.path(), 1 << 20).unwrap();
        let hashes: Vec<String> = blocks.iter().map(|b| d.put(b).unwrap()).collect();
        drop(d);
        // Restarted with --max-block-bytes below some stored blocks' sizes.
        let d = BlockDir::open(t.path(), 1024).unwrap();
        let rec = d.recovery();
        assert_eq!((rec.records, rec.truncated_bytes, rec.damaged.len()), (4, 0, 0));
        for (b, h) in blocks.iter().zip(&hashes) {
            assert_eq!(&d.get(h).unwrap(), b);
        }
        // The new limit applies to new puts only.
        assert!(matches!(d.put(&[5; 2000]), Err(BlockError::TooLarge { .. })));
        drop(d);
        let d = BlockDir::open(t.path(), 1024).unwrap();
        assert_eq!(d.len(), 4);
        assert!(BlockDir::open(t.path(), MAX_BLOCK_BYTES_LIMIT + 1).is_err());
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = BlockDir::open(t.path(), 1024).unwrap();
        let h = d.put(b"kept").unwrap();
        let pack_len = fs::metadata(d.pack_path(0)).unwrap().len();
        let err = BlockDir::open(t.path(), 1024).err().expect("second open refused");
        assert!(format!("{err:#}").contains("in use by another block store"), "{err:#}");
        // The refused open touched nothing.
        assert_eq!(fs::metadata(d.pack_path(0)).unwrap().len(), pack_len);
        assert_eq!(d.get(&h).unwrap(), b"kept");
        drop(d);
        let d = BlockDir::open(t.path(), 1024).unwrap();
        assert_eq!(d.get(&h).unwrap(), b"kept");
    }
}
