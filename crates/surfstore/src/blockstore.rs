//! The block store: content-addressed, durable block files behind the
//! course's `BlockStore` gRPC service.
//!
//! A block lives at `DIR/<first two hex chars>/<hash>` (the fan-out keeps
//! directories small). Because a block is named by the SHA-256 of its bytes,
//! `PutBlock` has nothing to trust from the client: the server hashes the
//! data itself. A put is acknowledged only once durable: written to a temp
//! file, fsynced, renamed into place, and the directory fsynced. Hashes that
//! come from the network are checked ([`is_block_hash`]) before they get
//! near a path, so no request can name a file outside `DIR`.
//!
//! The set of stored hashes is also kept in memory (rebuilt by scanning
//! `DIR` at start), so `HasBlocks`/`MissingBlocks` for thousands of hashes
//! answer without touching the disk.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use tonic::{Request, Response, Status};
use triton_proto::surfstore::block_store_server::{BlockStore, BlockStoreServer};
use triton_proto::surfstore::{Block, BlockHash, BlockHashes, Success};

use crate::hash::{block_hash, is_block_hash};

/// Default largest block accepted by `PutBlock` (16 MiB).
pub const DEFAULT_MAX_BLOCK_BYTES: usize = 16 << 20;

/// Most hashes accepted in one `HasBlocks`/`MissingBlocks` call: bounds the
/// work and the reply of one request (a 16 MiB request holds ~250k hashes).
pub const MAX_HASHES_PER_CALL: usize = 1 << 20;

/// Where temp files are written before the rename (same file system).
const TMP_DIR: &str = "tmp";

/// A content-addressed block directory with the set of hashes it holds.
pub struct BlockDir {
    root: PathBuf,
    max_block_bytes: usize,
    /// Hashes known to be durably stored, as raw 32-byte digests.
    present: RwLock<HashSet<[u8; 32]>>,
    /// Distinguishes concurrent temp files of the same block.
    tmp_counter: AtomicU64,
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

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BlockDir {
    /// Opens (creating if needed) the block directory at `root`: removes
    /// leftover temp files of interrupted puts and indexes the stored blocks.
    /// Files that are not named like a block are ignored.
    pub fn open(root: &Path, max_block_bytes: usize) -> anyhow::Result<BlockDir> {
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let tmp = root.join(TMP_DIR);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).with_context(|| format!("clearing {}", tmp.display()))?;
        }
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut present = HashSet::new();
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
                        present.insert(d);
                    }
                }
            }
        }
        Ok(BlockDir {
            root: root.to_path_buf(),
            max_block_bytes,
            present: RwLock::new(present),
            tmp_counter: AtomicU64::new(0),
        })
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
        digest_of(hash).is_some_and(|d| self.present.read().expect("lock").contains(&d))
    }

    /// Stores `data` durably under its own hash and returns the hash.
    /// Storing a block that is already there is a no-op.
    pub fn put(&self, data: &[u8]) -> Result<String, BlockError> {
        if data.len() > self.max_block_bytes {
            return Err(BlockError::TooLarge {
                len: data.len(),
                max: self.max_block_bytes,
            });
        }
        let hash = block_hash(data);
        if self.contains(&hash) {
            return Ok(hash);
        }
        let dir = self.root.join(&hash[..2]);
        let created_dir = !dir.exists();
        if created_dir {
            fs::create_dir_all(&dir)?;
        }
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join(TMP_DIR).join(format!("{hash}.{n}"));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, self.path_of(&hash))?;
            fsync_dir(&dir)?;
            if created_dir {
                fsync_dir(&self.root)?;
            }
            Ok::<(), io::Error>(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        let d = digest_of(&hash).expect("block_hash yields a hash");
        self.present.write().expect("lock").insert(d);
        Ok(hash)
    }

    /// The block with hash `hash`.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, BlockError> {
        if !is_block_hash(hash) {
            return Err(BlockError::BadHash(hash.chars().take(80).collect()));
        }
        if !self.contains(hash) {
            return Err(BlockError::NotFound(hash.to_string()));
        }
        let data = fs::read(self.path_of(hash))?;
        // Bit rot or tampering on disk must not be served as the block.
        if block_hash(&data) != hash {
            return Err(BlockError::Corrupt(hash.to_string()));
        }
        Ok(data)
    }

    /// Every stored hash, sorted.
    pub fn hashes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.present.read().expect("lock").iter().map(hex::encode).collect();
        v.sort_unstable();
        v
    }

    /// Splits `hashes` into (stored, not stored), keeping input order.
    /// Strings that are not hashes are never stored, so they are "missing".
    pub fn partition(&self, hashes: Vec<String>) -> (Vec<String>, Vec<String>) {
        let present = self.present.read().expect("lock");
        hashes
            .into_iter()
            .partition(|h| digest_of(h).is_some_and(|d| present.contains(&d)))
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

    /// The tonic server, with message limits sized for the largest block.
    pub fn into_server(self) -> BlockStoreServer<BlockStoreService> {
        // A block plus its protobuf framing.
        let limit = self.dir.max_block_bytes.saturating_add(1 << 10);
        BlockStoreServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
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
        // blockSize is advisory in the course's protocol; when set it must agree.
        if block.block_size != 0 && usize::try_from(block.block_size).ok() != Some(block.block_data.len()) {
            return Err(Status::invalid_argument(format!(
                "blockSize {} but {} bytes of data",
                block.block_size,
                block.block_data.len()
            )));
        }
        let dir = self.dir.clone();
        blocking(move || dir.put(&block.block_data)).await??;
        Ok(Response::new(Success { flag: true }))
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

/// Serves a block store on `listener` until `shutdown` resolves.
pub async fn serve_block_store(
    listener: tokio::net::TcpListener,
    dir: Arc<BlockDir>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
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

    #[test]
    fn put_get_and_reopen() {
        let t = tempfile::tempdir().unwrap();
        let d = BlockDir::open(t.path(), 1024).unwrap();
        assert!(d.is_empty());
        let h = d.put(b"hello").unwrap();
        assert_eq!(h, block_hash(b"hello"));
        assert_eq!(d.put(b"hello").unwrap(), h, "idempotent");
        assert_eq!(d.get(&h).unwrap(), b"hello");
        assert!(t.path().join(&h[..2]).join(&h).exists());
        let h2 = d.put(b"").unwrap();
        drop(d);
        // A leftover temp file of an interrupted put, and a stray file.
        fs::write(t.path().join(TMP_DIR).join("junk.0"), b"x").unwrap();
        fs::write(t.path().join("README"), b"x").unwrap();
        let d = BlockDir::open(t.path(), 1024).unwrap();
        assert_eq!(d.len(), 2);
        let mut want = vec![h.clone(), h2];
        want.sort();
        assert_eq!(d.hashes(), want);
        assert!(!t.path().join(TMP_DIR).join("junk.0").exists());
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
        fs::write(t.path().join(&h[..2]).join(&h), b"evil").unwrap();
        assert!(matches!(d.get(&h), Err(BlockError::Corrupt(_))));
    }
}
