//! The sync algorithm: reconcile BASEDIR, its index and the remote file map.
//!
//! For every file name the three views are: the local file (its hash list
//! now), the index (what this client last synced: base version and hashes)
//! and the remote entry. A remote version above the base is downloaded;
//! otherwise a local change (new, modified, deleted) is uploaded as the
//! remote version plus one, blocks first (only those `MissingBlocks`
//! reports), then `UpdateFile`; a refusal (-1) means another client got
//! there first, so the file is downloaded. No download replaces or deletes
//! content this client never synced (a local edit, a file the index does not
//! record): such a file is first renamed to a conflicted copy,
//! `NAME (conflicted copy UNIXSECS)`, with a warning, and the next sync
//! uploads the copy like any new file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use rayon::prelude::*;
use triton_proto::surfstore::FileMetaData;
pub use triton_proto::surfstore::MAX_BLOCKS_PER_STREAM;

use crate::chunk::{self, BlockRef, Chunker, TOMBSTONE_HASH};
use crate::index::{FileStat, Index, IndexEntry, INDEX_FILE};
use crate::progress::{human_bytes, Phase, ProgressMode};
use crate::rpc::{BlockStores, MetaClient, RpcError};

/// Prefix of the temporary files downloads are written to before the
/// rename; the sync never uploads such files and removes stale ones.
pub const TEMP_PREFIX: &str = ".triton-sync-tmp-";
/// Default number of blocks in flight at once (GetBlock, and PutBlock for
/// stores without `PutBlockStream`): each call waits for the store's disk,
/// so throughput comes from overlapping them. Uploads to Triton's stores
/// use at most [`STREAMS_IN_FLIGHT`] streams instead.
pub const DEFAULT_BLOCK_JOBS: usize = 32;
/// Upper bound of the bytes of blocks sent on one `PutBlockStream`: each
/// stream ends with one durable sync on the store, so larger groups mean
/// fewer syncs, smaller ones more overlap between streams.
pub const STREAM_GROUP_BYTES: u64 = 8 << 20;
/// `PutBlockStream`s in flight at once (fewer when `--jobs` is smaller).
pub const STREAMS_IN_FLIGHT: usize = 4;
/// Blocks read ahead of the network on each stream.
const STREAM_READ_AHEAD: usize = 16;
/// UpdateFile calls in flight at once: the Raft leader commits all that
/// are waiting with one log fsync, so more in flight means fewer rounds
/// (2,000 new files: ~8 rounds instead of ~60 at 32).
pub const UPDATE_CONCURRENCY: usize = 256;
/// A file whose modification time is this close to the start of the sync
/// may still be changing within the clock's granularity, so its stat is not
/// cached (git's "racily clean" rule).
const RACY_WINDOW_NS: i64 = 2_000_000_000;
/// The longest file name accepted, in bytes (NAME_MAX on common file
/// systems; the metadata service refuses longer ones too).
pub const MAX_NAME_BYTES: usize = 255;

/// Everything a sync needs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The directory to sync.
    pub base_dir: PathBuf,
    /// How files are cut into blocks.
    pub chunker: Chunker,
    /// The metadata nodes' gRPC addresses.
    pub meta_addrs: Vec<String>,
    /// How to reach them: plaintext, or TLS as the cluster config says.
    pub meta_dialer: triton_node::tls::Dialer,
    /// How long to wait for any metadata node before reporting no majority.
    pub meta_deadline: Duration,
    /// Timeout of one block store call.
    pub block_timeout: Duration,
    /// Progress output.
    pub progress: ProgressMode,
    /// Blocks in flight at once (at least 1).
    pub block_jobs: usize,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files (including deletions) whose new version this client uploaded.
    pub files_up: u64,
    /// Files written locally from the server's version.
    pub files_down: u64,
    /// Local files deleted because the server has a tombstone.
    pub files_deleted: u64,
    /// Block bytes sent to block stores.
    pub bytes_up: u64,
    /// Block bytes received from block stores.
    pub bytes_down: u64,
    /// Blocks not sent or fetched because the other side (or this
    /// directory) already had them.
    pub blocks_deduplicated: u64,
    /// Names or entries skipped with a warning.
    pub warnings: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sync: {} up, {} down, {} deleted; {} uploaded, {} downloaded; {} blocks deduplicated",
            self.files_up,
            self.files_down,
            self.files_deleted,
            human_bytes(self.bytes_up),
            human_bytes(self.bytes_down),
            self.blocks_deduplicated
        )?;
        if !self.warnings.is_empty() {
            write!(f, "; {} warnings", self.warnings.len())?;
        }
        Ok(())
    }
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No metadata node answered within the deadline (exit code 1).
    #[error("{0}")]
    NoMajority(String),
    /// The arguments are wrong (exit code 64).
    #[error("{0}")]
    Usage(String),
    /// Anything else: I/O, a block store, the index.
    #[error("{0}")]
    Failed(String),
}

impl From<RpcError> for SyncError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::NoMajority(..) => SyncError::NoMajority(e.to_string()),
            RpcError::Failed(m) => SyncError::Failed(m),
        }
    }
}

impl From<rusqlite::Error> for SyncError {
    fn from(e: rusqlite::Error) -> Self {
        SyncError::Failed(format!("index.db: {e}"))
    }
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> SyncError {
    move |e| SyncError::Failed(format!("{what}: {e}"))
}

/// Why a file name (from the server or the directory) is refused, if it is.
/// Names are flat (no directories), must not escape BASEDIR, must fit in a
/// directory entry and must not collide with the index or the sync's
/// temporary files.
pub fn refuse_name(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." {
        Some("empty name")
    } else if name.len() > MAX_NAME_BYTES {
        Some("it is longer than 255 bytes")
    } else if name.contains('/') || name.contains('\\') {
        Some("it contains a path separator")
    } else if name.contains(',') {
        Some("it contains ','")
    } else if name == ".." {
        // With no separators the name is one path component, so this and
        // "." (above) are all the ways left to leave BASEDIR; "a..b" is fine.
        Some("it is '..'")
    } else if name.contains('\0') {
        Some("it contains a NUL byte")
    } else if name.chars().any(char::is_control) {
        // As the metadata service: line-based output and C paths break.
        Some("it contains a control character")
    } else if name == INDEX_FILE || name.starts_with("index.db-") {
        Some("it is the sync index")
    } else if name.starts_with(TEMP_PREFIX) {
        Some("it is a sync temporary file")
    } else {
        None
    }
}

/// Why a remote hash list is unusable, if it is.
fn refuse_hashes(hashes: &[String]) -> Option<String> {
    if hashes.is_empty() {
        return Some("empty hash list".into());
    }
    if chunk::is_tombstone(hashes) || chunk::is_empty_file(hashes) {
        return None;
    }
    hashes
        .iter()
        .find(|h| !chunk::is_block_hash(h))
        .map(|h| format!("bad block hash {h:?}"))
}

/// Why a remote file's entry is unusable, if it is. The map's key and the
/// metadata's own `filename` are two strings from the server; the download
/// writes to the latter, so both must name the same, acceptable file.
fn refuse_remote(name: &str, meta: &FileMetaData) -> Option<String> {
    if let Some(why) = refuse_name(name) {
        return Some(why.to_string());
    }
    if meta.filename != name {
        return Some(format!("its metadata names another file, {:?}", meta.filename));
    }
    refuse_hashes(&meta.block_hash_list)
}

/// A file found in BASEDIR.
#[derive(Debug, Clone)]
struct LocalFile {
    path: PathBuf,
    stat: FileStat,
    hashes: Vec<String>,
    /// Block positions, when the file was hashed in this run (not taken
    /// from the stat cache).
    blocks: Option<Vec<BlockRef>>,
}

/// Locks BASEDIR's index for the whole sync (released when the file is
/// dropped): two syncs of one directory at once would delete each other's
/// temporary files and interleave their index updates. The lock is an
/// `flock` on `index.db-lock` (a name the scan skips, like SQLite's
/// `index.db-journal`), apart from the database, whose own locks are fcntl
/// locks that an flock would meet on NFS.
fn lock_index(base: &Path) -> Result<File, SyncError> {
    let path = base.join(format!("{INDEX_FILE}-lock"));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(SyncError::Failed(format!(
            "another sync of {} is running ({} is locked)",
            base.display(),
            path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(io_err(format!("locking {}", path.display()))(e)),
    }
}

fn stat_of(meta: &fs::Metadata) -> FileStat {
    FileStat {
        size: meta.len(),
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        ctime_ns: meta
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.ctime_nsec()),
        inode: meta.ino(),
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// How the scan reads BASEDIR's files: the file system itself, except in
/// tests, which make chosen files fail in ways that permissions cannot
/// when the tests run as root.
trait ReadFiles: Send + Sync {
    fn stat(&self, path: &Path) -> io::Result<fs::Metadata> {
        fs::symlink_metadata(path)
    }
    fn blocks(&self, chunker: &Chunker, path: &Path) -> io::Result<Vec<BlockRef>> {
        chunker.blocks_of_file(path)
    }
}

/// BASEDIR as it is.
struct RealFiles;

impl ReadFiles for RealFiles {}

/// What a scan of BASEDIR found.
#[derive(Debug, Default)]
struct Scanned {
    /// The regular files, by name.
    files: BTreeMap<String, LocalFile>,
    /// Files that exist but could not be read, with why. Their content is
    /// unknown, so they are left out of the sync altogether: taken for
    /// deleted they would put tombstones on the server, taken for absent
    /// they could be overwritten by downloads.
    unreadable: BTreeMap<String, String>,
}

/// Lists and hashes BASEDIR's regular files, reusing the index's hashes for
/// files whose size, times and inode match the cached stat. With
/// `remove_temps`, also deletes temporary files of interrupted syncs: only
/// the holder of the index lock may, or it would delete those of a sync
/// that is running.
///
/// A file that vanishes while it is scanned (NotFound) is absent, exactly as
/// if it had been deleted just before the scan listed the directory: a
/// synced one is then a local deletion like any other. Telling the two apart
/// would not be safer, only later: the next sync would upload the same
/// tombstone. Any other error makes the file unreadable (see [`Scanned`]).
#[allow(clippy::too_many_arguments)]
fn scan(
    base: &Path,
    chunker: &Chunker,
    index: &BTreeMap<String, IndexEntry>,
    stats: &BTreeMap<String, FileStat>,
    progress: ProgressMode,
    remove_temps: bool,
    reader: &dyn ReadFiles,
    warnings: &mut Vec<String>,
) -> Result<Scanned, SyncError> {
    let mut found = Vec::new();
    let mut unreadable = BTreeMap::new();
    for entry in fs::read_dir(base).map_err(io_err(format!("reading {}", base.display())))? {
        let entry = entry.map_err(io_err(format!("reading {}", base.display())))?;
        let name = match entry.file_name().into_string() {
            Ok(n) => n,
            Err(raw) => {
                warnings.push(format!("skipping non-UTF-8 local name {raw:?}"));
                continue;
            }
        };
        if name.starts_with(TEMP_PREFIX) {
            if is_temp_name(&name) {
                // A leftover of an interrupted sync: never a real file.
                if remove_temps {
                    let _ = fs::remove_file(entry.path());
                }
            } else {
                // Only names TempFile makes are ours to delete; this one may
                // be the user's, so it is left alone (refuse_name keeps the
                // whole prefix out of the sync).
                warnings.push(format!(
                    "skipping local {name:?}: names starting with {TEMP_PREFIX:?} are kept for the sync's \
                     temporary files (it is not synced, and not deleted)"
                ));
            }
            continue;
        }
        if name == INDEX_FILE || name.starts_with("index.db-") {
            continue;
        }
        let meta = match reader.stat(&entry.path()) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                match refuse_name(&name) {
                    Some(why) => warnings.push(format!("skipping local {name:?}: {why}")),
                    None => {
                        let why = format!("reading {}: {e}", entry.path().display());
                        unreadable.insert(name, why);
                    }
                }
                continue;
            }
        };
        if !meta.is_file() {
            if !meta.is_dir() {
                warnings.push(format!("skipping local {name}: not a regular file"));
            }
            continue;
        }
        if let Some(why) = refuse_name(&name) {
            warnings.push(format!("skipping local {name:?}: {why}"));
            continue;
        }
        found.push((name, entry.path(), stat_of(&meta)));
    }

    let mut out = BTreeMap::new();
    let mut to_hash = Vec::new();
    for (name, path, stat) in found {
        let cached = stats.get(&name) == Some(&stat);
        match index.get(&name) {
            Some(entry) if cached && !chunk::is_tombstone(&entry.hashes) => {
                let hashes = entry.hashes.clone();
                out.insert(
                    name,
                    LocalFile {
                        path,
                        stat,
                        hashes,
                        blocks: None,
                    },
                );
            }
            _ => to_hash.push((name, path, stat)),
        }
    }
    let total: u64 = to_hash.iter().map(|(_, _, s)| s.size).sum();
    let phase = Phase::start(progress, "hashing", total);
    let hashed: Vec<(String, PathBuf, FileStat, io::Result<Vec<BlockRef>>)> = to_hash
        .into_par_iter()
        .map(|(name, path, stat)| {
            let blocks = reader.blocks(chunker, &path);
            phase.inc(stat.size);
            (name, path, stat, blocks)
        })
        .collect();
    phase.finish("files");
    for (name, path, stat, blocks) in hashed {
        let blocks = match blocks {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                unreadable.insert(name, format!("hashing {}: {e}", path.display()));
                continue;
            }
        };
        let hashes = chunk::hash_list(&blocks);
        let file = LocalFile {
            path,
            stat,
            hashes,
            blocks: Some(blocks),
        };
        out.insert(name, file);
    }
    Ok(Scanned { files: out, unreadable })
}

/// What to do with one file.
#[derive(Debug, Clone)]
enum Action {
    /// Take the server's version.
    Download(FileMetaData),
    /// Propose the local content (or a tombstone) as this version.
    Upload { version: i32, hashes: Vec<String> },
    /// Drop from the index (deleted locally, never on the server).
    Forget,
}

/// Whether a local file exists that the index does not record as synced
/// (no entry, or a tombstone): its content is in no other place this client
/// knows of, so no remote tombstone may delete it.
fn unsynced_local(local: Option<&LocalFile>, base: Option<&IndexEntry>) -> bool {
    local.is_some() && base.is_none_or(|b| chunk::is_tombstone(&b.hashes))
}

fn decide(local: Option<&LocalFile>, base: Option<&IndexEntry>, remote: Option<&FileMetaData>) -> Option<Action> {
    let base_version = base.map_or(0, |b| b.version);
    let local_changed = match (local, base) {
        (Some(l), Some(b)) => l.hashes != b.hashes,
        (Some(_), None) => true,
        (None, Some(b)) => !chunk::is_tombstone(&b.hashes),
        (None, None) => false,
    };
    let remote_version = remote.map_or(0, |r| r.version);
    let remote_tombstone = remote.is_some_and(|r| chunk::is_tombstone(&r.block_hash_list));
    // A newer tombstone over an unsynced local file is not a deletion of
    // that file: it is a re-creation, uploaded as tombstone + 1 below.
    if remote_version > base_version && !(remote_tombstone && unsynced_local(local, base)) {
        return remote.cloned().map(Action::Download);
    }
    if !local_changed {
        return None;
    }
    match local {
        Some(l) => Some(Action::Upload {
            version: remote_version.saturating_add(1),
            hashes: l.hashes.clone(),
        }),
        None if remote.is_some_and(|r| !chunk::is_tombstone(&r.block_hash_list)) => Some(Action::Upload {
            version: remote_version.saturating_add(1),
            hashes: vec![TOMBSTONE_HASH.to_string()],
        }),
        None => Some(Action::Forget),
    }
}

/// Where a block's bytes can be read locally.
#[derive(Debug, Clone)]
struct Source {
    path: PathBuf,
    offset: u64,
    len: u32,
}

fn read_source(src: &Source) -> io::Result<Vec<u8>> {
    let file = File::open(&src.path)?;
    let mut buf = vec![0u8; src.len as usize];
    file.read_exact_at(&mut buf, src.offset)?;
    Ok(buf)
}

fn sources_of(local: &BTreeMap<String, LocalFile>) -> HashMap<String, Source> {
    let mut out = HashMap::new();
    for file in local.values() {
        for b in file.blocks.iter().flatten() {
            out.entry(b.hash.clone()).or_insert_with(|| Source {
                path: file.path.clone(),
                offset: b.offset,
                len: b.len,
            });
        }
    }
    out
}

/// The name of the `n`th temporary file of process `pid`.
fn temp_name(pid: u32, n: u64) -> String {
    format!("{TEMP_PREFIX}{pid}-{n}")
}

/// Whether `name` is exactly one [`temp_name`] makes (so a stale one may
/// be deleted), not merely a name sharing its prefix.
fn is_temp_name(name: &str) -> bool {
    let Some((pid, n)) = name.strip_prefix(TEMP_PREFIX).and_then(|rest| rest.split_once('-')) else {
        return false;
    };
    // Parsing alone would accept "+1" or "01"; the round trip does not.
    match (pid.parse::<u32>(), n.parse::<u64>()) {
        (Ok(pid), Ok(n)) => temp_name(pid, n) == name,
        _ => false,
    }
}

/// A temporary file in BASEDIR that is removed unless renamed into place.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn create(dir: &Path) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(temp_name(std::process::id(), n));
        let file = fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok(TempFile { path, file: Some(file) })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.as_mut().expect("open until persisted").write_all(data)
    }

    /// fsyncs and puts the file at `target`, provided `target` still is what
    /// the scan saw there (`seen`: the scanned file's stat, or `None` for no
    /// file): the sync decided on that, and a file written or created since
    /// may hold the only copy of the user's bytes. Otherwise `target` is left
    /// alone and the file dropped.
    fn persist(mut self, target: &Path, seen: Option<&FileStat>) -> io::Result<Applied> {
        let file = self.file.take().expect("persisted once");
        file.sync_all()?;
        drop(file);
        // Checked after the (slow) fsync, right before the rename.
        let now = current_stat(target)?;
        if now.is_some_and(|(_, is_file)| !is_file) {
            // Nothing the scan takes for a file (a subdirectory, say): a
            // failure to report, as the rename over it would be.
            return Err(io::Error::other("something that is not a regular file is in the way"));
        }
        match now.map(|(stat, _)| stat) {
            // Nothing there (or no longer: the server's version is what a
            // scan now would download). Unlike a rename, a link fails if a
            // file appears meanwhile, so that one is never replaced.
            None => match fs::hard_link(&self.path, target) {
                Ok(()) => {
                    // In place; a failure here leaves a stale temp the next
                    // sync removes.
                    let _ = fs::remove_file(&self.path);
                    self.path = PathBuf::new();
                    Ok(Applied::Done)
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Applied::Changed("was created")),
                // A file system without hard links (FAT, some network and
                // FUSE ones) says EPERM or EOPNOTSUPP: renamed instead, which
                // replaces a file created since the check just above.
                Err(e) if matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported) => {
                    self.rename_to(target)
                }
                Err(e) => Err(e),
            },
            Some(now) if Some(&now) == seen => {
                // Still the scanned file. What remains: a write landing
                // between the check and this rename (microseconds), or one
                // through a descriptor kept open past it, goes to the
                // replaced inode and is lost; so is an edit that keeps size,
                // inode and (coarse) times, which no stat can see.
                self.rename_to(target)
            }
            Some(_) if seen.is_none() => Ok(Applied::Changed("was created")),
            Some(_) => Ok(Applied::Changed("was changed")),
        }
    }

    /// Renames the file over `target`; it is then no longer ours to remove.
    fn rename_to(&mut self, target: &Path) -> io::Result<Applied> {
        fs::rename(&self.path, target)?;
        self.path = PathBuf::new();
        Ok(Applied::Done)
    }
}

/// Whether a change to a local file took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Done,
    /// Not made: the file is not what the scan saw (it "was created" or
    /// "was changed" during the sync), so it is left as it is.
    Changed(&'static str),
}

/// The stat of BASEDIR's `path` now and whether it is a regular file,
/// `None` if there is nothing.
fn current_stat(path: &Path) -> io::Result<Option<(FileStat, bool)>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some((stat_of(&meta), meta.is_file()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes `target` for a remote tombstone, provided it still is the file
/// the scan saw (`seen`) and found synced; a file changed since is left
/// alone. The window left is [`TempFile::persist`]'s.
fn remove_scanned(target: &Path, seen: &FileStat) -> io::Result<Applied> {
    match current_stat(target)?.map(|(stat, _)| stat) {
        Some(now) if now == *seen => match fs::remove_file(target) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(Applied::Done),
        },
        // Already gone: what the tombstone asks for.
        None => Ok(Applied::Done),
        Some(_) => Ok(Applied::Changed("was changed")),
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

struct Context<'a> {
    opts: &'a SyncOptions,
    meta: MetaClient,
    stores: BlockStores,
    /// Every block store, asked for once, when a block is not where the
    /// ring puts it (see [`fetch_block`]).
    all_stores: tokio::sync::OnceCell<Vec<String>>,
}

/// What a sync has done so far. Kept outside the fallible part so that
/// whatever already took effect (an UpdateFile the server applied, a file
/// written into place) is recorded in the index even when a later step
/// fails: otherwise the next sync would take those files for local edits.
#[derive(Default)]
struct Done {
    /// New index entries (`None`: remove).
    index_changes: BTreeMap<String, Option<IndexEntry>>,
    /// The server's versions this sync set out to download.
    downloads: Vec<FileMetaData>,
    /// Files whose download or upload failed: warned about, left out of
    /// the index, retried by the next sync.
    skipped: Vec<String>,
}

/// Syncs `opts.base_dir` with the cloud once.
///
/// A file that cannot be uploaded (an unreadable source, a block store or
/// UpdateFile refusing it) or downloaded (a missing block, a name the local
/// file system refuses, a subdirectory in the way) does not stop the others:
/// it is skipped with a warning, and once everything else is done and
/// recorded the sync fails naming the skipped files. So is a local file that
/// cannot be read (neither uploaded, nor deleted on the server, nor
/// overwritten). Only a metadata service without a majority stops the sync
/// at once.
pub async fn sync(opts: &SyncOptions) -> Result<Summary, SyncError> {
    sync_with(opts, Arc::new(RealFiles)).await
}

/// [`sync`], reading BASEDIR's files through `reader`.
async fn sync_with(opts: &SyncOptions, reader: Arc<dyn ReadFiles>) -> Result<Summary, SyncError> {
    let base = &opts.base_dir;
    if !base.is_dir() {
        return Err(SyncError::Usage(format!(
            "BASEDIR {} is not a directory",
            base.display()
        )));
    }
    let started_ns = now_ns();
    let mut summary = Summary::default();
    let _lock = lock_index(base)?;
    let mut index = Index::open(base)?;
    let indexed = index.load()?;
    let chunking = opts.chunker.mode().name();
    let stats = index.load_stats(chunking, opts.chunker.block_size())?;

    let (scanned, warnings) = {
        let base = base.clone();
        let chunker = opts.chunker;
        let indexed = indexed.clone();
        let progress = opts.progress;
        tokio::task::spawn_blocking(move || {
            let mut warnings = Vec::new();
            let scanned = scan(
                &base,
                &chunker,
                &indexed,
                &stats,
                progress,
                true,
                &*reader,
                &mut warnings,
            );
            scanned.map(|s| (s, warnings))
        })
        .await
        .map_err(|e| SyncError::Failed(format!("hashing task: {e}")))??
    };
    let Scanned {
        files: local,
        unreadable,
    } = scanned;
    for w in &warnings {
        warn(opts.progress, w);
    }
    summary.warnings.extend(warnings);

    let mut done = Done::default();
    for (name, why) in &unreadable {
        skip("syncing", name, why, &mut summary, &mut done.skipped, |w| {
            warn(opts.progress, w)
        });
    }
    let result = reconcile(opts, &local, &unreadable, &indexed, &mut done, &mut summary).await;

    // Cache the stats of files whose content matches their new index entry.
    let mut stat_changes: BTreeMap<String, Option<FileStat>> = BTreeMap::new();
    let downloads: HashSet<&String> = done.downloads.iter().map(|d| &d.filename).collect();
    for (name, file) in &local {
        let entry = done
            .index_changes
            .get(name)
            .cloned()
            .unwrap_or_else(|| indexed.get(name).cloned());
        let matches = entry.as_ref().is_some_and(|e| e.hashes == file.hashes);
        let racy = file.stat.changed_ns() > started_ns.saturating_sub(RACY_WINDOW_NS);
        if matches && !racy && !downloads.contains(name) {
            if file.blocks.is_some() {
                stat_changes.insert(name.clone(), Some(file.stat));
            }
        } else {
            stat_changes.insert(name.clone(), None);
        }
    }
    for name in downloads {
        stat_changes.insert(name.clone(), None);
    }
    let applied = index.apply(&done.index_changes, &stat_changes, chunking, opts.chunker.block_size());
    result?;
    applied?;
    if !done.skipped.is_empty() {
        const NAMED: usize = 10;
        let mut names = done
            .skipped
            .iter()
            .take(NAMED)
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        if done.skipped.len() > NAMED {
            names.push_str(&format!(" and {} more", done.skipped.len() - NAMED));
        }
        return Err(SyncError::Failed(format!(
            "{} file(s) could not be synced and will be retried by the next sync: {names}; {summary}",
            done.skipped.len()
        )));
    }
    Ok(summary)
}

/// The network part of [`sync`]: fetch the remote map, decide, upload,
/// download, recording progress in `done` as it goes.
async fn reconcile(
    opts: &SyncOptions,
    local: &BTreeMap<String, LocalFile>,
    unreadable: &BTreeMap<String, String>,
    indexed: &BTreeMap<String, IndexEntry>,
    done: &mut Done,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    let ctx = Context {
        opts,
        meta: MetaClient::with_dialer(opts.meta_addrs.clone(), opts.meta_deadline, opts.meta_dialer.clone())?,
        stores: BlockStores::new(opts.block_timeout),
        all_stores: tokio::sync::OnceCell::new(),
    };
    let mut remote = ctx.meta.file_info_map().await?;
    remote.retain(|name, meta| {
        if let Some(why) = refuse_remote(name, meta) {
            let w = format!("refusing remote file {name:?}: {why}");
            warn(opts.progress, &w);
            summary.warnings.push(w);
            false
        } else {
            true
        }
    });

    let names: BTreeSet<&String> = local
        .keys()
        .chain(indexed.keys())
        .chain(remote.keys())
        .filter(|name| !unreadable.contains_key(*name))
        .collect();
    let mut uploads = Vec::new();
    for name in names {
        match decide(local.get(name), indexed.get(name), remote.get(name)) {
            None => {}
            Some(Action::Download(meta)) => done.downloads.push(meta),
            Some(Action::Upload { version, hashes }) => uploads.push(FileMetaData {
                filename: name.clone(),
                version,
                block_hash_list: hashes,
            }),
            Some(Action::Forget) => {
                done.index_changes.insert(name.clone(), None);
            }
        }
    }

    // Upload: blocks first, then the metadata.
    upload(&ctx, local, &mut uploads, done, summary).await?;
    let refused = update_files(&ctx, uploads, done, summary).await?;
    if !refused.is_empty() {
        // Another client won: take the server's version of these files.
        let fresh = ctx.meta.file_info_map().await?;
        for ours in refused {
            let name = ours.filename.clone();
            match fresh.get(&name) {
                // Unless the server holds exactly our update: an attempt
                // whose answer was lost applied it, and the retry found the
                // version taken (UpdateFile carries no session).
                Some(meta) if meta.version == ours.version && meta.block_hash_list == ours.block_hash_list => {
                    uploaded(ours, summary, &mut done.index_changes);
                }
                // A tombstone must not delete a file that was never synced;
                // the next sync uploads it over the tombstone.
                Some(meta)
                    if chunk::is_tombstone(&meta.block_hash_list)
                        && unsynced_local(local.get(&name), indexed.get(&name)) =>
                {
                    let w = format!("{name}: the server refused the update; it will be synced next time");
                    warn(opts.progress, &w);
                    summary.warnings.push(w);
                }
                Some(meta) if refuse_remote(&name, meta).is_none() => done.downloads.push(meta.clone()),
                _ => {
                    let w = format!("{name}: the server refused the update and has no usable version");
                    warn(opts.progress, &w);
                    summary.warnings.push(w);
                }
            }
        }
    }

    download(&ctx, local, indexed, done, summary).await
}

/// Records an update the server accepted.
fn uploaded(meta: FileMetaData, summary: &mut Summary, index_changes: &mut BTreeMap<String, Option<IndexEntry>>) {
    summary.files_up += 1;
    index_changes.insert(
        meta.filename,
        Some(IndexEntry {
            version: meta.version,
            hashes: meta.block_hash_list,
        }),
    );
}

/// Sends `uploads` as UpdateFile calls, many in flight, recording each
/// accepted one in `done` as it is answered. Returns the refused ones (-1).
/// A call the server fails (a name or hash list it refuses) skips that file.
/// Without a majority no new calls start, but those in flight are waited
/// for, so every update the server applied is recorded before the error is
/// returned.
async fn update_files(
    ctx: &Context<'_>,
    uploads: Vec<FileMetaData>,
    done: &mut Done,
    summary: &mut Summary,
) -> Result<Vec<FileMetaData>, SyncError> {
    let failed = AtomicBool::new(false);
    let mut results = futures::stream::iter(uploads.into_iter().map(|meta| {
        let meta_client = &ctx.meta;
        let failed = &failed;
        async move {
            if failed.load(Ordering::Relaxed) {
                return (meta, None);
            }
            let got = meta_client.update_file(meta.clone()).await;
            (meta, Some(got))
        }
    }))
    .buffer_unordered(UPDATE_CONCURRENCY);
    let mut refused = Vec::new();
    let mut error = None;
    while let Some((meta, got)) = results.next().await {
        match got {
            Some(Ok(version)) if version == meta.version => uploaded(meta, summary, &mut done.index_changes),
            Some(Ok(_)) => refused.push(meta),
            Some(Err(RpcError::Failed(why))) => {
                let print = |w: &str| warn(ctx.opts.progress, w);
                skip("uploading", &meta.filename, &why, summary, &mut done.skipped, print);
            }
            Some(Err(e)) => {
                failed.store(true, Ordering::Relaxed);
                error.get_or_insert(e);
            }
            None => {}
        }
    }
    match error {
        Some(e) => Err(e.into()),
        None => Ok(refused),
    }
}

fn warn(mode: ProgressMode, message: &str) {
    if mode != ProgressMode::Quiet {
        eprintln!("triton sync: warning: {message}");
    }
}

/// Sends the blocks `uploads` need that the block stores lack. A file with
/// any block not confirmed stored is taken out of `uploads`, so no
/// `UpdateFile` names a block no store holds: with a warning when its
/// source (maybe another file sharing the block) changed since hashing (the
/// next sync sees the new content), and skipped (see [`Done::skipped`]) when
/// a block could not be read or a block store failed.
async fn upload(
    ctx: &Context<'_>,
    local: &BTreeMap<String, LocalFile>,
    uploads: &mut Vec<FileMetaData>,
    done: &mut Done,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    let mut sources: HashMap<String, Source> = HashMap::new();
    let mut total_refs = 0u64;
    for meta in uploads.iter() {
        if chunk::is_tombstone(&meta.block_hash_list) || chunk::is_empty_file(&meta.block_hash_list) {
            continue;
        }
        let file = &local[&meta.filename];
        let blocks = file
            .blocks
            .as_ref()
            .expect("changed files are hashed in this run, never taken from the cache");
        for b in blocks {
            total_refs += 1;
            sources.entry(b.hash.clone()).or_insert_with(|| Source {
                path: file.path.clone(),
                offset: b.offset,
                len: b.len,
            });
        }
    }
    if sources.is_empty() {
        return Ok(());
    }
    // Blocks not stored for a reason other than a change of their source,
    // with the reason: the files naming them are skipped.
    let mut failed: HashMap<String, Arc<str>> = HashMap::new();
    let hashes: Vec<String> = sources.keys().cloned().collect();
    let placement = match ctx.meta.block_store_map(&hashes).await {
        Ok(p) => p,
        Err(RpcError::Failed(why)) => {
            let why: Arc<str> = why.into();
            failed.extend(hashes.iter().map(|h| (h.clone(), why.clone())));
            HashMap::new()
        }
        Err(e) => return Err(e.into()),
    };
    let mut by_store: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (hash, store) in placement {
        by_store.entry(store).or_default().push(hash);
    }
    // Per store: the hashes asked, and those missing or why none are known.
    let answers: Vec<(String, Vec<String>, _)> =
        futures::stream::iter(by_store.into_iter().map(|(store, hashes)| async move {
            let missing = match ctx.stores.missing_blocks(&store, &hashes).await {
                Ok(m) => m,
                Err(e) => return (store, hashes, Err(e.to_string())),
            };
            let asked: HashSet<&String> = hashes.iter().collect();
            if let Some(bad) = missing.iter().find(|h| !asked.contains(h)) {
                let why = format!("block store {store} reported unknown block {bad} missing");
                return (store, hashes, Err(why));
            }
            // A hash listed twice is sent (and counted) once.
            let mut seen = HashSet::new();
            let missing: Vec<String> = missing.into_iter().filter(|h| seen.insert(h.clone())).collect();
            (store, hashes, Ok::<_, String>(missing))
        }))
        .buffer_unordered(ctx.opts.block_jobs.max(1))
        .collect()
        .await;
    let mut to_send: Vec<(String, String)> = Vec::new();
    for (store, hashes, answer) in answers {
        match answer {
            Ok(missing) => to_send.extend(missing.into_iter().map(|h| (store.clone(), h))),
            Err(why) => {
                let why: Arc<str> = why.into();
                failed.extend(hashes.into_iter().map(|h| (h, why.clone())));
            }
        }
    }
    // Blocks known to be on their store: those not missing, plus those sent
    // whose bytes still hashed as scanned.
    let mut stored: HashSet<String> = sources.keys().filter(|h| !failed.contains_key(*h)).cloned().collect();
    for (_, h) in &to_send {
        stored.remove(h);
    }
    let not_deduplicated = to_send.len().saturating_add(failed.len()) as u64;
    summary.blocks_deduplicated += total_refs.saturating_sub(not_deduplicated);
    let total_bytes: u64 = to_send.iter().map(|(_, h)| u64::from(sources[h].len)).sum();
    let phase = Phase::start(ctx.opts.progress, "upload", total_bytes);
    let groups = stream_groups(to_send, &sources);
    let sent: Vec<(Vec<String>, Result<Sent, SyncError>)> =
        futures::stream::iter(groups.into_iter().map(|(store, hashes)| {
            let sources = &sources;
            let phase = &phase;
            async move {
                let result = upload_group(ctx, &store, hashes.clone(), sources, phase).await;
                (hashes, result)
            }
        }))
        .buffer_unordered(ctx.opts.block_jobs.clamp(1, STREAMS_IN_FLIGHT))
        .collect()
        .await;
    let mut bytes_sent = 0u64;
    for (hashes, result) in sent {
        match result {
            Ok(group) => {
                bytes_sent += group.bytes;
                stored.extend(group.stored);
                for (h, why) in group.failed {
                    failed.insert(h, why.into());
                }
            }
            Err(e) => {
                let why: Arc<str> = e.to_string().into();
                failed.extend(hashes.into_iter().map(|h| (h, why.clone())));
            }
        }
    }
    phase.finish("blocks");
    summary.bytes_up += bytes_sent;
    uploads.retain(|m| {
        let hashes = &m.block_hash_list;
        if chunk::is_tombstone(hashes) || chunk::is_empty_file(hashes) {
            return true;
        }
        if let Some(why) = hashes.iter().find_map(|h| failed.get(h)) {
            skip("uploading", &m.filename, why, summary, &mut done.skipped, |w| {
                phase.warn(w)
            });
            return false;
        }
        if hashes.iter().all(|h| stored.contains(h)) {
            return true;
        }
        let w = format!(
            "{} changed while it was being synced (or shares a block with a file that did); \
             it will be synced next time",
            m.filename
        );
        phase.warn(&w);
        summary.warnings.push(w);
        false
    });
    Ok(())
}

/// Cuts the blocks to send into groups of at most [`STREAM_GROUP_BYTES`]
/// and [`MAX_BLOCKS_PER_STREAM`] blocks (a store fails a longer stream),
/// each for one store, in file order so each group reads files sequentially.
fn stream_groups(to_send: Vec<(String, String)>, sources: &HashMap<String, Source>) -> Vec<(String, Vec<String>)> {
    let mut by_store: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (store, hash) in to_send {
        by_store.entry(store).or_default().push(hash);
    }
    let mut groups = Vec::new();
    for (store, mut hashes) in by_store {
        hashes.sort_by(|a, b| {
            let (sa, sb) = (&sources[a], &sources[b]);
            (&sa.path, sa.offset).cmp(&(&sb.path, sb.offset))
        });
        let mut group = Vec::new();
        let mut bytes = 0u64;
        for h in hashes {
            let len = u64::from(sources[&h].len);
            if !group.is_empty() && (bytes + len > STREAM_GROUP_BYTES || group.len() >= MAX_BLOCKS_PER_STREAM) {
                groups.push((store.clone(), std::mem::take(&mut group)));
                bytes = 0;
            }
            bytes += len;
            group.push(h);
        }
        if !group.is_empty() {
            groups.push((store, group));
        }
    }
    // Interleave the stores so every store has work from the start.
    groups.sort_by_key(|(store, _)| store.clone());
    let mut per_store: BTreeMap<String, std::collections::VecDeque<Vec<String>>> = BTreeMap::new();
    for (store, g) in groups {
        per_store.entry(store).or_default().push_back(g);
    }
    let mut out = Vec::new();
    while per_store.values().any(|q| !q.is_empty()) {
        for (store, q) in per_store.iter_mut() {
            if let Some(g) = q.pop_front() {
                out.push((store.clone(), g));
            }
        }
    }
    out
}

/// What one group's upload did.
#[derive(Default)]
struct Sent {
    /// Blocks stored as scanned.
    stored: Vec<String>,
    /// Blocks not stored, with why (their source could not be read, or the
    /// store refused them): their files are skipped.
    failed: Vec<(String, String)>,
    /// Bytes sent.
    bytes: u64,
}

/// Sends one group of blocks to `store` on one `PutBlockStream` (one
/// durable sync on the store for the whole group), reading them from disk
/// on a blocking thread while they are sent. A block whose source no longer
/// hashes as it did (changed during the sync) is in neither list of the
/// result: the store reports the hash it computed for every block, so the
/// client does not hash twice. A block that cannot be read is not sent.
/// Falls back to one `PutBlock` per block when the store lacks the
/// extension. An error fails the whole group.
async fn upload_group(
    ctx: &Context<'_>,
    store: &str,
    hashes: Vec<String>,
    sources: &HashMap<String, Source>,
    phase: &Phase,
) -> Result<Sent, SyncError> {
    let srcs: Vec<(String, Source)> = hashes.iter().map(|h| (h.clone(), sources[h].clone())).collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<triton_proto::surfstore::Block>(STREAM_READ_AHEAD);
    let reader = tokio::task::spawn_blocking(move || {
        // The hashes sent, in order, and those that could not be read.
        let mut sent = Vec::with_capacity(srcs.len());
        let mut unreadable = Vec::new();
        for (hash, src) in srcs {
            let data = match read_source(&src) {
                Ok(d) => d,
                Err(e) => {
                    unreadable.push((hash, format!("reading {}: {e}", src.path.display())));
                    continue;
                }
            };
            let block_size = i32::try_from(data.len()).expect("blocks are at most 16 MiB");
            let block = triton_proto::surfstore::Block {
                block_data: data,
                block_size,
            };
            if tx.blocking_send(block).is_err() {
                break; // the call ended early; its error is reported
            }
            sent.push(hash);
        }
        (sent, unreadable)
    });
    let blocks = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let reply = ctx.stores.put_block_stream(store, blocks).await;
    let (sent, unreadable) = reader
        .await
        .map_err(|e| SyncError::Failed(format!("reading blocks: {e}")))?;
    let Some(stored) = reply? else {
        return Ok(upload_one_by_one(ctx, store, &hashes, sources, phase).await);
    };
    if stored.len() != sent.len() {
        return Err(SyncError::Failed(format!(
            "block store {store} acknowledged {} blocks of {} sent",
            stored.len(),
            sent.len()
        )));
    }
    let mut out = Sent {
        failed: unreadable,
        ..Sent::default()
    };
    for (sent, got) in sent.into_iter().zip(&stored) {
        let len = u64::from(sources[&sent].len);
        out.bytes += len;
        phase.inc(len);
        if sent == *got {
            out.stored.push(sent);
        }
    }
    Ok(out)
}

/// The course's protocol: one `PutBlock` per block, `--jobs` in flight.
async fn upload_one_by_one(
    ctx: &Context<'_>,
    store: &str,
    hashes: &[String],
    sources: &HashMap<String, Source>,
    phase: &Phase,
) -> Sent {
    let results: Vec<(String, Result<Option<u64>, String>)> = futures::stream::iter(hashes.iter().map(|hash| {
        let src = &sources[hash];
        async move {
            let data = match read_source(src) {
                Ok(d) => d,
                Err(e) => return (hash.clone(), Err(format!("reading {}: {e}", src.path.display()))),
            };
            if chunk::block_hash(&data) != *hash {
                return (hash.clone(), Ok(None)); // changed since hashing: not sent
            }
            let len = data.len() as u64;
            if let Err(e) = ctx.stores.put_block(store, data).await {
                return (hash.clone(), Err(e.to_string()));
            }
            phase.inc(len);
            (hash.clone(), Ok(Some(len)))
        }
    }))
    .buffer_unordered(ctx.opts.block_jobs.max(1))
    .collect()
    .await;
    let mut out = Sent::default();
    for (hash, result) in results {
        match result {
            Ok(Some(len)) => {
                out.bytes += len;
                out.stored.push(hash);
            }
            Ok(None) => {}
            Err(why) => out.failed.push((hash, why)),
        }
    }
    out
}

/// Writes the server's version of each file in `done.downloads` into
/// BASEDIR (atomically), deletes tombstoned files, and records the new index
/// entries. A file that fails is skipped (see [`Done::skipped`]); only a
/// metadata service without a majority stops the rest. A local file that is
/// no longer what the scan saw is neither replaced nor deleted (see
/// [`TempFile::persist`]): the decision was made on the scan.
async fn download(
    ctx: &Context<'_>,
    local: &BTreeMap<String, LocalFile>,
    indexed: &BTreeMap<String, IndexEntry>,
    done: &mut Done,
    summary: &mut Summary,
) -> Result<(), SyncError> {
    let base = &ctx.opts.base_dir;
    let progress = ctx.opts.progress;
    let mut sources = sources_of(local);
    // Names a conflicted copy must not take: a file this sync sees or is
    // about to write would be overwritten by it, or overwrite it. Collected
    // at the first conflict only: most syncs have none.
    let in_use = |downloads: &[FileMetaData]| -> HashSet<String> {
        local
            .keys()
            .chain(indexed.keys())
            .chain(downloads.iter().map(|m| &m.filename))
            .cloned()
            .collect()
    };
    let mut taken: Option<HashSet<String>> = None;
    // Blocks that must come from the block stores.
    let mut needed: BTreeSet<String> = BTreeSet::new();
    let mut writes = Vec::new();
    for meta in &done.downloads {
        let name = &meta.filename;
        let hashes = &meta.block_hash_list;
        let entry = IndexEntry {
            version: meta.version,
            hashes: hashes.clone(),
        };
        let target = base.join(name);
        // Content only this directory has: kept as a conflicted copy just
        // before the server's version replaces or deletes it.
        let conflict = local
            .get(name)
            .filter(|l| unsynced_content(l, indexed.get(name), hashes));
        if chunk::is_tombstone(hashes) {
            if let Some(file) = conflict {
                let taken = taken.get_or_insert_with(|| in_use(&done.downloads));
                let kept = keep_conflicted_copy(base, meta, file, taken, &mut sources, summary, |w| warn(progress, w));
                if let Err(why) = kept {
                    skip("downloading", name, &why, summary, &mut done.skipped, |w| {
                        warn(progress, w)
                    });
                    continue;
                }
            } else if let Some(file) = local.get(name) {
                match remove_scanned(&target, &file.stat) {
                    Ok(Applied::Done) => summary.files_deleted += 1,
                    Ok(Applied::Changed(how)) => {
                        let not_applied = "the server's deletion was not applied";
                        changed_meanwhile(name, how, not_applied, summary, |w| warn(progress, w));
                        continue;
                    }
                    Err(e) => {
                        let why = format!("deleting {}: {e}", target.display());
                        skip("downloading", name, &why, summary, &mut done.skipped, |w| {
                            warn(progress, w)
                        });
                        continue;
                    }
                }
            }
            done.index_changes.insert(name.clone(), Some(entry));
            continue;
        }
        if local.get(name).is_some_and(|l| &l.hashes == hashes) {
            done.index_changes.insert(name.clone(), Some(entry));
            continue;
        }
        if !chunk::is_empty_file(hashes) {
            for h in hashes {
                if sources.contains_key(h) {
                    summary.blocks_deduplicated += 1;
                } else {
                    needed.insert(h.clone());
                }
            }
        }
        writes.push((meta, entry, conflict));
    }
    if writes.is_empty() {
        return Ok(());
    }
    let needed: Vec<String> = needed.into_iter().collect();
    let placement = if needed.is_empty() {
        HashMap::new()
    } else {
        ctx.meta.block_store_map(&needed).await?
    };
    let total_bytes: u64 = writes
        .iter()
        .map(|(m, _, _)| m.block_hash_list.len() as u64 * ctx.opts.chunker.block_size() as u64)
        .sum();
    let phase = Phase::start(progress, "download", total_bytes);
    let bytes_down = AtomicU64::new(0);
    for (meta, entry, conflict) in writes {
        let mut written = download_file(ctx, meta, &placement, &sources, &bytes_down, &phase).await;
        if let (Ok(_), Some(file)) = (&written, conflict) {
            let print = |w: &str| phase.warn(w);
            let taken = taken.get_or_insert_with(|| in_use(&done.downloads));
            if let Err(why) = keep_conflicted_copy(base, meta, file, taken, &mut sources, summary, print) {
                written = Err(SyncError::Failed(why));
            }
        }
        let target = base.join(&meta.filename);
        // A conflicting file was just renamed away: the name must be free.
        let seen = match conflict {
            Some(_) => None,
            None => local.get(&meta.filename).map(|l| &l.stat),
        };
        let persisted = written.and_then(|temp| {
            temp.persist(&target, seen)
                .map_err(io_err(format!("writing {}", target.display())))
        });
        match persisted {
            Ok(Applied::Done) => {
                summary.files_down += 1;
                done.index_changes.insert(meta.filename.clone(), Some(entry));
            }
            Ok(Applied::Changed(how)) => {
                let not_applied = "the server's version was not written";
                changed_meanwhile(&meta.filename, how, not_applied, summary, |w| phase.warn(w));
            }
            Err(SyncError::Failed(why)) => {
                skip("downloading", &meta.filename, &why, summary, &mut done.skipped, |w| {
                    phase.warn(w)
                });
            }
            Err(e) => return Err(e),
        }
    }
    File::open(base)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {}", base.display())))?;
    phase.finish("blocks");
    summary.bytes_down += bytes_down.load(Ordering::Relaxed);
    Ok(())
}

/// Leaves `name` out of this sync (not in the index, so the next sync tries
/// again), with a warning; `doing` is "downloading", "uploading" or
/// "syncing".
fn skip(doing: &str, name: &str, why: &str, summary: &mut Summary, skipped: &mut Vec<String>, print: impl Fn(&str)) {
    let w = format!("not {doing} {name:?}: {why}; it will be retried by the next sync");
    print(&w);
    summary.warnings.push(w);
    skipped.push(name.to_string());
}

/// Warns that the server's change to `name` (`not_applied` says which) was
/// not applied because the local file `how` ("was changed", "was created")
/// after the scan. Not a failure: like an upload whose file changed, it is
/// left out of the index, so the next sync compares the file again and keeps
/// it as a conflicted copy if it differs.
fn changed_meanwhile(name: &str, how: &str, not_applied: &str, summary: &mut Summary, print: impl Fn(&str)) {
    let w = format!("{name:?} {how} here while it was being synced; {not_applied}, the next sync compares them again");
    print(&w);
    summary.warnings.push(w);
}

/// Whether `local` holds content this client never synced (no index entry,
/// a tombstone, or an edit since the entry) that differs from `remote`:
/// replacing or deleting it would lose the only copy.
fn unsynced_content(local: &LocalFile, base: Option<&IndexEntry>, remote: &[String]) -> bool {
    local.hashes != remote && base.is_none_or(|b| b.hashes != local.hashes)
}

/// The name of the `n`th conflicted copy of `name` made at `secs`: the
/// suffix always fits, `name` is cut (at a char boundary) to make room. It
/// adds no ',', separator or control character and never makes "." or "..",
/// so it passes [`refuse_name`] as `name` does.
fn conflict_name(name: &str, secs: u64, n: u32) -> String {
    let suffix = if n == 0 {
        format!(" (conflicted copy {secs})")
    } else {
        format!(" (conflicted copy {secs} {n})")
    };
    let mut keep = MAX_NAME_BYTES.saturating_sub(suffix.len()).min(name.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &name[..keep])
}

/// Renames `file` (BASEDIR's `meta.filename`) to a free conflicted-copy
/// name, points the block sources read from it at the new name (so later
/// downloads still find its blocks), and warns naming both.
#[allow(clippy::too_many_arguments)]
fn keep_conflicted_copy(
    base: &Path,
    meta: &FileMetaData,
    file: &LocalFile,
    taken: &mut HashSet<String>,
    sources: &mut HashMap<String, Source>,
    summary: &mut Summary,
    print: impl Fn(&str),
) -> Result<(), String> {
    let name = &meta.filename;
    let copy = rename_to_conflicted_copy(base, name, taken)
        .map_err(|e| format!("keeping the local version as a conflicted copy: {e}"))?;
    let moved = base.join(&copy);
    for src in sources.values_mut().filter(|s| s.path == file.path) {
        src.path = moved.clone();
    }
    let w = if chunk::is_tombstone(&meta.block_hash_list) {
        format!("{name:?} was changed here and deleted on the server; the local version is kept as {copy:?}")
    } else {
        format!(
            "{name:?} was changed here and on the server; {name:?} is now the server's version, \
             the local one is kept as {copy:?}"
        )
    };
    print(&w);
    summary.warnings.push(w);
    taken.insert(copy);
    Ok(())
}

/// Renames BASEDIR's `name` to a free conflicted-copy name (none in `taken`
/// or on disk) and returns that name.
fn rename_to_conflicted_copy(base: &Path, name: &str, taken: &HashSet<String>) -> io::Result<String> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for n in 0..1000 {
        let copy = conflict_name(name, secs, n);
        if let Some(why) = refuse_name(&copy) {
            return Err(io::Error::other(format!("no usable name ({copy:?}: {why})")));
        }
        if taken.contains(&copy) {
            continue;
        }
        let path = base.join(&copy);
        match fs::symlink_metadata(&path) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(base.join(name), &path)?;
                return Ok(copy);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free conflicted-copy name"))
}

/// Writes the server's version of one file into a temporary file in
/// BASEDIR, to be renamed over the real name (a failure leaves the old file
/// intact).
async fn download_file(
    ctx: &Context<'_>,
    meta: &FileMetaData,
    placement: &HashMap<String, String>,
    sources: &HashMap<String, Source>,
    bytes_down: &AtomicU64,
    phase: &Phase,
) -> Result<TempFile, SyncError> {
    let base = &ctx.opts.base_dir;
    let target = base.join(&meta.filename);
    let mut temp = TempFile::create(base).map_err(io_err(format!("creating a file in {}", base.display())))?;
    if !chunk::is_empty_file(&meta.block_hash_list) {
        let mut blocks = futures::stream::iter(meta.block_hash_list.iter().map(|hash| async move {
            if let Some(src) = sources.get(hash) {
                // A local copy, unless the file changed meanwhile.
                if let Ok(data) = read_source(src) {
                    if &chunk::block_hash(&data) == hash {
                        return Ok::<_, SyncError>(data);
                    }
                }
            }
            let store = match placement.get(hash) {
                Some(s) => s.clone(),
                None => ctx.meta.block_store_map(std::slice::from_ref(hash)).await?[hash].clone(),
            };
            let data = fetch_block(ctx, &store, hash).await?;
            bytes_down.fetch_add(data.len() as u64, Ordering::Relaxed);
            Ok(data)
        }))
        .buffered(ctx.opts.block_jobs.max(1));
        while let Some(data) = blocks.next().await {
            let data = data?;
            temp.write(&data)
                .map_err(io_err(format!("writing {}", target.display())))?;
            phase.inc(data.len() as u64);
        }
    }
    Ok(temp)
}

/// Block `hash` from `store`, where the ring puts it, else from any other
/// block store that has it. Nothing moves blocks when a store joins the
/// ring: the blocks of its arc stay on their old owner, which only this
/// search finds. (Every block is checked against its hash.)
async fn fetch_block(ctx: &Context<'_>, store: &str, hash: &str) -> Result<Vec<u8>, SyncError> {
    let first = match ctx.stores.get_block(store, hash).await {
        Ok(data) => return Ok(data),
        Err(e) => e,
    };
    let all = ctx.all_stores.get_or_try_init(|| ctx.meta.block_store_addrs()).await?;
    for other in all.iter().filter(|a| *a != store) {
        if let Ok(data) = ctx.stores.get_block(other, hash).await {
            return Ok(data);
        }
    }
    Err(first.into())
}

/// One line of `triton surf mapping`: where one block of one file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingLine {
    /// The file's name in BASEDIR.
    pub file: String,
    /// The block's position in the file's hash list.
    pub block_index: usize,
    /// The block's hash.
    pub hash: String,
    /// The block store that holds it, per the metadata service.
    pub store: String,
}

/// Hashes the files in BASEDIR and asks the metadata service which block
/// store holds each block.
pub async fn mapping(opts: &SyncOptions) -> Result<Vec<MappingLine>, SyncError> {
    let base = opts.base_dir.clone();
    if !base.is_dir() {
        return Err(SyncError::Usage(format!(
            "BASEDIR {} is not a directory",
            base.display()
        )));
    }
    let chunker = opts.chunker;
    let progress = opts.progress;
    let scanned = tokio::task::spawn_blocking(move || {
        let mut warnings = Vec::new();
        scan(
            &base,
            &chunker,
            &BTreeMap::new(),
            &BTreeMap::new(),
            progress,
            // Mapping takes no index lock (it may run beside a sync).
            false,
            &RealFiles,
            &mut warnings,
        )
    })
    .await
    .map_err(|e| SyncError::Failed(format!("hashing task: {e}")))??;
    // A mapping that silently left a file out would mislead: no partial answer.
    if let Some(why) = scanned.unreadable.values().next() {
        return Err(SyncError::Failed(why.clone()));
    }
    let local = scanned.files;
    let mut hashes: Vec<String> = local
        .values()
        .flat_map(|f| f.blocks.iter().flatten().map(|b| b.hash.clone()))
        .collect();
    hashes.sort();
    hashes.dedup();
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let meta = MetaClient::with_dialer(opts.meta_addrs.clone(), opts.meta_deadline, opts.meta_dialer.clone())?;
    let placement = meta.block_store_map(&hashes).await?;
    let mut out = Vec::new();
    for (name, file) in &local {
        for (i, b) in file.blocks.iter().flatten().enumerate() {
            out.push(MappingLine {
                file: name.clone(),
                block_index: i,
                hash: b.hash.clone(),
                store: placement[&b.hash].clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Groups end at the store's block count as well as at the byte bound:
    /// tiny blocks would otherwise put more on one stream than a store
    /// takes, and every sync would fail. (A unit test: 65,536 messages
    /// through a fake store on a loaded machine made a slow, flaky test.)
    #[test]
    fn no_stream_group_holds_more_blocks_than_a_store_takes() {
        let n = MAX_BLOCKS_PER_STREAM * 2 + 10;
        let mut sources = HashMap::new();
        let to_send: Vec<(String, String)> = (0..n)
            .map(|i| {
                let hash = format!("{i:064x}");
                let offset = 4 * i as u64;
                let path = PathBuf::from("f");
                sources.insert(hash.clone(), Source { path, offset, len: 4 });
                ("store".to_string(), hash)
            })
            .collect();
        let groups = stream_groups(to_send, &sources);
        let sizes: Vec<usize> = groups.iter().map(|(_, g)| g.len()).collect();
        assert_eq!(sizes, [MAX_BLOCKS_PER_STREAM, MAX_BLOCKS_PER_STREAM, 10]);
    }

    fn local(hashes: &[&str]) -> LocalFile {
        LocalFile {
            path: PathBuf::from("x"),
            stat: FileStat {
                size: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 0,
            },
            hashes: hashes.iter().map(|s| s.to_string()).collect(),
            blocks: None,
        }
    }
    fn base(version: i32, hashes: &[&str]) -> IndexEntry {
        IndexEntry {
            version,
            hashes: hashes.iter().map(|s| s.to_string()).collect(),
        }
    }
    fn remote(version: i32, hashes: &[&str]) -> FileMetaData {
        FileMetaData {
            filename: "f".into(),
            version,
            block_hash_list: hashes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn names_that_escape_or_collide_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a,b",
            "a\nb",
            "tab\t",
            "cr\r",
            "del\u{7f}",
            "c1\u{85}",
            "index.db",
            "index.db-journal",
            ".triton-sync-tmp-1-2",
            "a\\b",
            "x".repeat(MAX_NAME_BYTES + 1).as_str(),
            "é".repeat(128).as_str(),
        ] {
            assert!(refuse_name(bad).is_some(), "{bad:?} accepted");
        }
        assert_eq!(refuse_name(&"x".repeat(MAX_NAME_BYTES)), None);
        // ".." inside a name is no path component.
        for good in [
            "a.txt",
            ".hidden",
            "x.y.z",
            "naïve",
            "report..v2.txt",
            "x..y",
            "...",
            "..a",
            "a..",
        ] {
            assert_eq!(refuse_name(good), None, "{good:?} refused");
        }
    }

    #[test]
    fn only_names_the_sync_makes_count_as_its_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempFile::create(dir.path()).unwrap();
        let made = temp.path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(is_temp_name(&made), "{made:?}");
        assert!(is_temp_name(&temp_name(u32::MAX, u64::MAX)));
        for user in [
            "",
            "-1-2",
            "notes.txt",
            "1-2x",
            "1-2-3",
            "01-2",
            "+1-2",
            "1-",
            "-2",
            "1",
            "1 2",
            "99999999999-1",
        ] {
            let name = format!("{TEMP_PREFIX}{user}");
            assert!(!is_temp_name(&name), "{name:?}");
        }
        assert!(!is_temp_name("1-2"));
    }

    /// A download must not replace a file that appeared, or changed, at its
    /// name after the scan, nor may a tombstone delete a changed one.
    #[test]
    fn downloads_and_deletions_leave_files_changed_since_the_scan_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        let temp_with = |bytes: &[u8]| {
            let mut t = TempFile::create(dir.path()).unwrap();
            t.write(bytes).unwrap();
            t
        };
        // Nothing scanned, nothing there: written.
        assert_eq!(temp_with(b"server").persist(&target, None).unwrap(), Applied::Done);
        assert_eq!(fs::read(&target).unwrap(), b"server");
        // Nothing scanned, but a file appeared: kept.
        fs::write(&target, b"mine").unwrap();
        assert_eq!(
            temp_with(b"server v2").persist(&target, None).unwrap(),
            Applied::Changed("was created")
        );
        assert_eq!(fs::read(&target).unwrap(), b"mine");
        // Scanned and unchanged: replaced.
        let scanned = current_stat(&target).unwrap().unwrap().0;
        assert_eq!(
            temp_with(b"server v3").persist(&target, Some(&scanned)).unwrap(),
            Applied::Done
        );
        assert_eq!(fs::read(&target).unwrap(), b"server v3");
        // Scanned, then edited: kept.
        let scanned = current_stat(&target).unwrap().unwrap().0;
        fs::write(&target, b"edited meanwhile").unwrap();
        assert_eq!(
            temp_with(b"server v4").persist(&target, Some(&scanned)).unwrap(),
            Applied::Changed("was changed")
        );
        assert_eq!(fs::read(&target).unwrap(), b"edited meanwhile");
        // Scanned, then deleted: the server's version takes the free name.
        fs::remove_file(&target).unwrap();
        assert_eq!(
            temp_with(b"server v5").persist(&target, Some(&scanned)).unwrap(),
            Applied::Done
        );
        // A tombstone: not over an edit, yes over the scanned file.
        let scanned = current_stat(&target).unwrap().unwrap().0;
        fs::write(&target, b"edited again").unwrap();
        assert_eq!(
            remove_scanned(&target, &scanned).unwrap(),
            Applied::Changed("was changed")
        );
        assert_eq!(fs::read(&target).unwrap(), b"edited again");
        let scanned = current_stat(&target).unwrap().unwrap().0;
        assert_eq!(remove_scanned(&target, &scanned).unwrap(), Applied::Done);
        assert!(!target.exists());
        assert_eq!(remove_scanned(&target, &scanned).unwrap(), Applied::Done);
        // No temporary file is left behind by any of it.
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// How a test's file fails under [`FailingFile`].
    #[derive(Clone, Copy, Debug)]
    enum Failure {
        /// Its stat fails (EIO, say).
        Stat,
        /// Opening or reading it fails (a mode-000 file for a non-root user).
        Read,
        /// It is deleted just as it is about to be hashed.
        Vanish,
    }

    /// BASEDIR, but the file `name` fails as `how` says.
    struct FailingFile {
        name: &'static str,
        how: Failure,
    }

    impl ReadFiles for FailingFile {
        fn stat(&self, path: &Path) -> io::Result<fs::Metadata> {
            match self.how {
                Failure::Stat if path.ends_with(self.name) => Err(io::Error::from_raw_os_error(5)),
                _ => fs::symlink_metadata(path),
            }
        }
        fn blocks(&self, chunker: &Chunker, path: &Path) -> io::Result<Vec<BlockRef>> {
            if path.ends_with(self.name) {
                match self.how {
                    Failure::Read => return Err(io::Error::from(io::ErrorKind::PermissionDenied)),
                    Failure::Vanish => fs::remove_file(path)?,
                    Failure::Stat => {}
                }
            }
            chunker.blocks_of_file(path)
        }
    }

    fn fake_opts(dir: &Path, fakes: &crate::fake::Fakes) -> SyncOptions {
        SyncOptions {
            base_dir: dir.to_path_buf(),
            chunker: Chunker::new(chunk::Chunking::Fixed, 16).unwrap(),
            meta_addrs: fakes.meta_addrs.clone(),
            meta_dialer: triton_node::tls::Dialer::plaintext(),
            meta_deadline: Duration::from_secs(5),
            block_timeout: Duration::from_secs(5),
            progress: ProgressMode::Quiet,
            block_jobs: 4,
        }
    }

    /// A file that exists but cannot be read is skipped (the sync fails
    /// naming it): the other files still sync both ways, and it is neither
    /// deleted on the server nor overwritten here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_file_is_skipped_not_deleted() {
        for how in [Failure::Stat, Failure::Read] {
            let fakes = crate::fake::serve_fakes(1).await.unwrap();
            let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            fs::write(dir.path().join("noread"), b"synced before").unwrap();
            fs::write(dir.path().join("shared"), b"v1").unwrap();
            sync(&fake_opts(dir.path(), &fakes)).await.unwrap();
            sync(&fake_opts(other.path(), &fakes)).await.unwrap();
            fs::write(other.path().join("shared"), b"v2 from elsewhere").unwrap();
            sync(&fake_opts(other.path(), &fakes)).await.unwrap();
            fs::write(dir.path().join("ok.txt"), b"new here").unwrap();
            // Rewritten just now, so the stat cache (which skips files
            // changed within 2 s of a sync) cannot spare it the failing read.
            fs::write(dir.path().join("noread"), b"synced before").unwrap();

            let reader = Arc::new(FailingFile { name: "noread", how });
            let err = sync_with(&fake_opts(dir.path(), &fakes), reader).await.unwrap_err();
            let SyncError::Failed(m) = &err else {
                panic!("{how:?}: {err:?}")
            };
            assert!(m.contains("1 file(s)") && m.contains("\"noread\""), "{how:?}: {m}");
            let files = fakes.meta.files.lock().unwrap().clone();
            assert_eq!(files["noread"].version, 1, "{how:?}");
            assert!(!chunk::is_tombstone(&files["noread"].block_hash_list), "{how:?}");
            assert_eq!(files["ok.txt"].version, 1, "{how:?}");
            assert_eq!(fs::read(dir.path().join("shared")).unwrap(), b"v2 from elsewhere");
            assert_eq!(fs::read(dir.path().join("noread")).unwrap(), b"synced before");
            assert_eq!(Index::open(dir.path()).unwrap().load().unwrap()["noread"].version, 1);
            // Readable again: nothing left to do.
            let s = sync(&fake_opts(dir.path(), &fakes)).await.unwrap();
            assert_eq!((s.files_up, s.files_down, s.files_deleted), (0, 0, 0), "{how:?}");
        }
    }

    /// A synced file deleted while the scan reads it is a local deletion
    /// like one made before the scan: a tombstone, not a failed sync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_vanishing_during_the_scan_is_a_deletion() {
        let fakes = crate::fake::serve_fakes(1).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("gone"), b"soon deleted").unwrap();
        fs::write(dir.path().join("kept"), b"stays").unwrap();
        sync(&fake_opts(dir.path(), &fakes)).await.unwrap();
        fs::write(dir.path().join("gone"), b"soon deleted").unwrap();
        fs::write(dir.path().join("new"), b"new").unwrap();
        let reader = Arc::new(FailingFile {
            name: "gone",
            how: Failure::Vanish,
        });
        let s = sync_with(&fake_opts(dir.path(), &fakes), reader).await.unwrap();
        assert_eq!(s.files_up, 2, "{s:?}");
        let files = fakes.meta.files.lock().unwrap().clone();
        assert_eq!(files["gone"].version, 2);
        assert!(chunk::is_tombstone(&files["gone"].block_hash_list));
        assert_eq!(files["kept"].version, 1);
        assert_eq!(files["new"].version, 1);
    }

    #[test]
    fn bad_remote_hash_lists_are_refused() {
        assert!(refuse_hashes(&[]).is_some());
        assert!(refuse_hashes(&["../etc".into()]).is_some());
        assert!(refuse_hashes(&["0".into(), "0".into()]).is_some());
        assert!(refuse_hashes(&["0".into()]).is_none());
        assert!(refuse_hashes(&["-1".into()]).is_none());
        assert!(refuse_hashes(&[chunk::block_hash(b"x")]).is_none());
    }

    #[test]
    fn remote_entries_whose_metadata_names_another_file_are_refused() {
        let good = chunk::block_hash(b"x");
        let meta = |filename: &str| FileMetaData {
            filename: filename.into(),
            version: 1,
            block_hash_list: vec![good.clone()],
        };
        assert_eq!(refuse_remote("a", &meta("a")), None);
        assert!(refuse_remote("a", &meta("../a")).is_some());
        assert!(refuse_remote("a", &meta("/etc/passwd")).is_some());
        assert!(refuse_remote("a", &meta("b")).is_some());
        assert!(refuse_remote("../a", &meta("../a")).is_some());
    }

    #[test]
    fn conflicted_copy_names_fit_and_pass_refuse_name() {
        assert_eq!(conflict_name("a.txt", 17, 0), "a.txt (conflicted copy 17)");
        assert_eq!(conflict_name("a.txt", 17, 2), "a.txt (conflicted copy 17 2)");
        for name in [
            "x".repeat(MAX_NAME_BYTES),
            "é".repeat(127),
            format!("a{}", "é".repeat(127)),
            "x.".into(),
        ] {
            let copy = conflict_name(&name, u64::MAX, u32::MAX);
            assert_eq!(refuse_name(&copy), None, "{copy:?}");
            assert!(copy.ends_with(&format!(" (conflicted copy {} {})", u64::MAX, u32::MAX)));
        }
    }

    #[test]
    fn decisions() {
        // New local file: upload as version 1.
        assert!(matches!(
            decide(Some(&local(&["a"])), None, None),
            Some(Action::Upload { version: 1, .. })
        ));
        // Unchanged everywhere: nothing.
        assert!(decide(Some(&local(&["a"])), Some(&base(3, &["a"])), Some(&remote(3, &["a"]))).is_none());
        // Local edit on the current version: upload as version + 1.
        assert!(matches!(
            decide(Some(&local(&["b"])), Some(&base(3, &["a"])), Some(&remote(3, &["a"]))),
            Some(Action::Upload { version: 4, .. })
        ));
        // The server is newer: downloaded, even over a local edit (which
        // the download first keeps as a conflicted copy).
        assert!(matches!(
            decide(Some(&local(&["b"])), Some(&base(3, &["a"])), Some(&remote(4, &["c"]))),
            Some(Action::Download(_))
        ));
        // Deleted locally: a tombstone.
        match decide(None, Some(&base(3, &["a"])), Some(&remote(3, &["a"]))) {
            Some(Action::Upload { version: 4, hashes }) => assert_eq!(hashes, vec!["0"]),
            other => panic!("{other:?}"),
        }
        // Deleted locally, never on the server: forget.
        assert!(matches!(
            decide(None, Some(&base(1, &["a"])), None),
            Some(Action::Forget)
        ));
        // Re-created after a tombstone: tombstone version + 1.
        assert!(matches!(
            decide(Some(&local(&["a"])), Some(&base(5, &["0"])), Some(&remote(5, &["0"]))),
            Some(Action::Upload { version: 6, .. })
        ));
        // Tombstone known on both sides and no local file: nothing.
        assert!(decide(None, Some(&base(5, &["0"])), Some(&remote(5, &["0"]))).is_none());
        // A local file not in the index (fresh client, lost index.db) meets
        // an old tombstone: a re-creation, never a deletion.
        assert!(matches!(
            decide(Some(&local(&["a"])), None, Some(&remote(5, &["0"]))),
            Some(Action::Upload { version: 6, .. })
        ));
        // The same when the index knows only an older tombstone.
        assert!(matches!(
            decide(Some(&local(&["a"])), Some(&base(3, &["0"])), Some(&remote(5, &["0"]))),
            Some(Action::Upload { version: 6, .. })
        ));
        // A synced file deleted elsewhere is still deleted here.
        assert!(matches!(
            decide(Some(&local(&["a"])), Some(&base(3, &["a"])), Some(&remote(4, &["0"]))),
            Some(Action::Download(_))
        ));
    }
}
