//! A short-lived cache of resolved files: small ones in memory, large ones
//! as open descriptors to `sendfile` from.
//!
//! Serving a small file from memory costs one `write` instead of
//! `canonicalize` (several syscalls) + `open` + `fstat` + `read` + `close`,
//! which is most of the per-request cost; for a large file the copy into
//! user space would dominate, so we keep the open file and let the kernel
//! send it. Entries live for a fixed time to live and are then re-resolved
//! from disk, so a changed file or symlink is seen at most `ttl` late (the
//! trade nginx's `open_file_cache` makes); `ttl = 0` turns caching off.
//! Memory is bounded by `max_total_bytes` (each entry is charged its key,
//! its in-memory body and a fixed overhead) and descriptors by
//! `max_open_files`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Bytes charged per entry on top of key and body (map slot, Arc, headers).
const ENTRY_OVERHEAD: u64 = 256;

/// Limits of the file cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an entry is served without looking at the disk; 0 disables.
    pub ttl: Duration,
    /// Files up to this size are kept in memory; larger ones as descriptors.
    pub max_file_bytes: u64,
    /// Upper bound on all cached bytes together.
    pub max_total_bytes: u64,
    /// Upper bound on descriptors held open by the cache.
    pub max_open_files: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(1),
            max_file_bytes: 64 << 10,
            max_total_bytes: 256 << 20,
            max_open_files: 1024,
        }
    }
}

/// Where the bytes of a file come from.
#[derive(Debug)]
pub enum CachedBody {
    /// Read into memory (small files).
    Memory(Bytes),
    /// An open descriptor and the length promised in `Content-Length`;
    /// sent with `sendfile` at explicit offsets, so one descriptor serves
    /// any number of connections at once.
    File { file: Arc<std::fs::File>, length: u64 },
}

impl CachedBody {
    /// The body length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            CachedBody::Memory(bytes) => bytes.len() as u64,
            CachedBody::File { length, .. } => *length,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn memory_bytes(&self) -> u64 {
        match self {
            CachedBody::Memory(bytes) => bytes.len() as u64,
            CachedBody::File { .. } => 0,
        }
    }

    fn descriptors(&self) -> usize {
        match self {
            CachedBody::Memory(_) => 0,
            CachedBody::File { .. } => 1,
        }
    }
}

/// A file ready to be served: body plus pre-rendered header values.
#[derive(Debug)]
pub struct CachedFile {
    pub body: CachedBody,
    pub content_type: String,
    pub last_modified: String,
    loaded_at: Instant,
}

impl CachedFile {
    /// A file read at `loaded_at`.
    pub fn new(body: CachedBody, content_type: String, last_modified: String, loaded_at: Instant) -> Self {
        CachedFile {
            body,
            content_type,
            last_modified,
            loaded_at,
        }
    }
}

/// Per-site maps from the path a URL names (decoded and normalised by
/// [`crate::resolve::relative_path`], query dropped) to a cached file. Keyed
/// by that path, not by the URL as sent: spellings of one file (`/a?1`,
/// `/a?2`, `/%61`) share one entry instead of each holding a descriptor.
#[derive(Debug)]
pub struct FileCache {
    config: CacheConfig,
    sites: Vec<Mutex<HashMap<Box<Path>, Arc<CachedFile>>>>,
    total_bytes: AtomicU64,
    open_files: AtomicUsize,
}

impl FileCache {
    /// An empty cache for `sites` document roots.
    pub fn new(config: CacheConfig, sites: usize) -> Self {
        FileCache {
            config,
            sites: (0..sites).map(|_| Mutex::new(HashMap::new())).collect(),
            total_bytes: AtomicU64::new(0),
            open_files: AtomicUsize::new(0),
        }
    }

    /// The limits this cache was built with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Whether a file of `len` bytes belongs in memory (else: descriptor).
    pub fn in_memory(&self, len: u64) -> bool {
        // A body larger than the whole cache could never be cached: reading
        // it into memory would cost its size on every request.
        len <= self.config.max_file_bytes.min(self.config.max_total_bytes)
    }

    /// The fresh entry for `target` on `site`, dropping it if expired.
    pub fn get(&self, site: usize, target: &Path, now: Instant) -> Option<Arc<CachedFile>> {
        let mut map = self.sites.get(site)?.lock().ok()?;
        let entry = map.get(target)?;
        if now.saturating_duration_since(entry.loaded_at) < self.config.ttl {
            return Some(Arc::clone(entry));
        }
        if let Some(old) = map.remove(target) {
            self.release(target, &old);
        }
        None
    }

    fn release(&self, key: &Path, file: &CachedFile) {
        self.total_bytes.fetch_sub(charge(key, file), Ordering::Relaxed);
        self.open_files.fetch_sub(file.body.descriptors(), Ordering::Relaxed);
    }

    fn fits(&self, cost: u64, descriptors: usize) -> bool {
        self.total_bytes.load(Ordering::Relaxed) + cost <= self.config.max_total_bytes
            && self.open_files.load(Ordering::Relaxed) + descriptors <= self.config.max_open_files
    }

    /// Caches `file` for `target` if it fits the budget (after dropping
    /// expired entries, of every site, if needed). Returns whether it did.
    pub fn insert(&self, site: usize, target: &Path, file: Arc<CachedFile>, now: Instant) -> bool {
        if self.config.ttl.is_zero() || file.body.memory_bytes() > self.config.max_file_bytes {
            return false;
        }
        let cost = charge(target, &file);
        let descriptors = file.body.descriptors();
        if !self.fits(cost, descriptors) {
            // One site at a time (never two locks at once).
            self.sweep(now);
        }
        let Some(slot) = self.sites.get(site) else {
            return false;
        };
        let Ok(mut map) = slot.lock() else {
            return false;
        };
        if let Some(old) = map.remove(target) {
            self.release(target, &old);
        }
        if !self.fits(cost, descriptors) {
            return false;
        }
        map.insert(target.into(), file);
        self.total_bytes.fetch_add(cost, Ordering::Relaxed);
        self.open_files.fetch_add(descriptors, Ordering::Relaxed);
        true
    }

    /// Drops every expired entry of every site, closing their descriptors.
    /// Called when an insert finds the cache full, and periodically by the
    /// server, so that entries nobody asks for again (say, of a file since
    /// deleted, whose disk space an open descriptor keeps) do not linger.
    pub fn sweep(&self, now: Instant) {
        let ttl = self.config.ttl;
        for slot in &self.sites {
            let Ok(mut map) = slot.lock() else {
                continue;
            };
            let mut expired = Vec::new();
            map.retain(|key, entry| {
                let keep = now.saturating_duration_since(entry.loaded_at) < ttl;
                if !keep {
                    expired.push((key.clone(), Arc::clone(entry)));
                }
                keep
            });
            for (key, entry) in &expired {
                self.release(key, entry);
            }
        }
    }

    /// Descriptors currently held open by the cache.
    pub fn open_files(&self) -> usize {
        self.open_files.load(Ordering::Relaxed)
    }

    /// Bytes currently charged to the cache.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }
}

fn charge(key: &Path, file: &CachedFile) -> u64 {
    key.as_os_str().len() as u64 + file.body.memory_bytes() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(len: usize, at: Instant) -> Arc<CachedFile> {
        let body = CachedBody::Memory(Bytes::from(vec![b'x'; len]));
        Arc::new(CachedFile::new(body, "t".into(), "d".into(), at))
    }

    fn descriptor(at: Instant) -> Arc<CachedFile> {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let body = CachedBody::File { file, length: 1 << 20 };
        Arc::new(CachedFile::new(body, "t".into(), "d".into(), at))
    }

    #[test]
    fn no_body_larger_than_the_whole_cache_is_read_into_memory() {
        let config = CacheConfig {
            max_file_bytes: u64::MAX,
            max_total_bytes: 1000,
            ..CacheConfig::default()
        };
        let cache = FileCache::new(config, 1);
        assert!(cache.in_memory(1000));
        assert!(!cache.in_memory(1001), "read whole on every request, never cached");
    }

    #[test]
    fn descriptors_are_bounded_and_released() {
        let config = CacheConfig {
            max_open_files: 2,
            ..CacheConfig::default()
        };
        let cache = FileCache::new(config, 1);
        let t0 = Instant::now();
        assert!(cache.insert(0, Path::new("/a"), descriptor(t0), t0));
        assert!(cache.insert(0, Path::new("/b"), descriptor(t0), t0));
        assert!(
            !cache.insert(0, Path::new("/c"), descriptor(t0), t0),
            "over the descriptor cap"
        );
        assert_eq!(cache.open_files(), 2);
        // Replacing an entry does not leak its count.
        assert!(cache.insert(0, Path::new("/b"), descriptor(t0), t0));
        assert_eq!(cache.open_files(), 2);
        // A descriptor costs no body bytes.
        assert_eq!(cache.total_bytes(), 4 + 2 * ENTRY_OVERHEAD);
        let later = t0 + Duration::from_secs(2);
        assert!(cache.insert(0, Path::new("/c"), descriptor(later), later));
        assert_eq!(cache.open_files(), 1);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let config = CacheConfig {
            ttl: Duration::from_secs(1),
            ..CacheConfig::default()
        };
        let cache = FileCache::new(config, 2);
        let t0 = Instant::now();
        assert!(cache.insert(0, Path::new("/a"), file(10, t0), t0));
        assert!(cache.get(0, Path::new("/a"), t0 + Duration::from_millis(999)).is_some());
        assert!(cache.get(1, Path::new("/a"), t0).is_none(), "sites are separate");
        assert!(cache.get(0, Path::new("/a"), t0 + Duration::from_secs(1)).is_none());
        assert_eq!(cache.total_bytes(), 0);
        assert!(cache.get(7, Path::new("/a"), t0).is_none(), "unknown site is a miss");
    }

    #[test]
    fn budget_and_size_limits_hold() {
        let config = CacheConfig {
            ttl: Duration::from_secs(1),
            max_file_bytes: 1000,
            max_total_bytes: 2000,
            max_open_files: 10,
        };
        let cache = FileCache::new(config, 1);
        let t0 = Instant::now();
        assert!(!cache.insert(0, Path::new("/big"), file(1001, t0), t0));
        assert!(cache.insert(0, Path::new("/a"), file(1000, t0), t0));
        assert!(!cache.insert(0, Path::new("/b"), file(1000, t0), t0), "over budget");
        assert!(cache.total_bytes() <= 2000);
        // Once /a has expired, its room is reclaimed.
        let later = t0 + Duration::from_secs(2);
        assert!(cache.insert(0, Path::new("/b"), file(1000, later), later));
        assert_eq!(cache.total_bytes(), 1000 + 2 + ENTRY_OVERHEAD);
    }

    /// Expired entries of other sites make room too, and a sweep closes
    /// every expired descriptor even if nobody asks for its file again.
    #[test]
    fn expired_descriptors_of_every_site_are_closed() {
        let config = CacheConfig {
            max_open_files: 2,
            ..CacheConfig::default()
        };
        let cache = FileCache::new(config, 2);
        let t0 = Instant::now();
        assert!(cache.insert(0, Path::new("a"), descriptor(t0), t0));
        assert!(cache.insert(0, Path::new("b"), descriptor(t0), t0));
        let later = t0 + Duration::from_secs(2);
        assert!(
            cache.insert(1, Path::new("c"), descriptor(later), later),
            "site 0's expired entries make room"
        );
        assert_eq!(cache.open_files(), 1);
        cache.sweep(later + Duration::from_secs(2));
        assert_eq!((cache.open_files(), cache.total_bytes()), (0, 0));
    }

    #[test]
    fn zero_ttl_disables_caching() {
        let config = CacheConfig {
            ttl: Duration::ZERO,
            ..CacheConfig::default()
        };
        let cache = FileCache::new(config, 1);
        let t0 = Instant::now();
        assert!(!cache.insert(0, Path::new("/a"), file(1, t0), t0));
        assert!(cache.get(0, Path::new("/a"), t0).is_none());
    }
}
