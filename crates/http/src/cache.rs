//! A short-lived in-memory cache of served files.
//!
//! Serving a small file from memory costs one `write` instead of
//! `canonicalize` (several syscalls) + `open` + `fstat` + `read` + `close`,
//! which is most of the per-request cost. Entries live for a fixed time to
//! live and are then re-resolved from disk, so a changed file or symlink is
//! seen at most `ttl` late (the same trade nginx's `open_file_cache` makes);
//! `ttl = 0` turns caching off. Memory is bounded by `max_total_bytes`,
//! charging each entry its key, its body and a fixed overhead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Files larger than this are never cached (they are sent with sendfile).
    pub max_file_bytes: u64,
    /// Upper bound on all cached bytes together.
    pub max_total_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(1),
            max_file_bytes: 2 << 20,
            max_total_bytes: 256 << 20,
        }
    }
}

/// A file ready to be served: body plus pre-rendered header values.
#[derive(Debug)]
pub struct CachedFile {
    pub body: Bytes,
    pub content_type: String,
    pub last_modified: String,
    loaded_at: Instant,
}

impl CachedFile {
    /// A file read at `loaded_at`.
    pub fn new(body: Bytes, content_type: String, last_modified: String, loaded_at: Instant) -> Self {
        CachedFile {
            body,
            content_type,
            last_modified,
            loaded_at,
        }
    }
}

/// Per-site maps from the URL as sent to a cached file.
#[derive(Debug)]
pub struct FileCache {
    config: CacheConfig,
    sites: Vec<Mutex<HashMap<Box<str>, Arc<CachedFile>>>>,
    total_bytes: AtomicU64,
}

impl FileCache {
    /// An empty cache for `sites` document roots.
    pub fn new(config: CacheConfig, sites: usize) -> Self {
        FileCache {
            config,
            sites: (0..sites).map(|_| Mutex::new(HashMap::new())).collect(),
            total_bytes: AtomicU64::new(0),
        }
    }

    /// The limits this cache was built with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Whether a file of `len` bytes is worth caching at all.
    pub fn admits(&self, len: u64) -> bool {
        !self.config.ttl.is_zero() && len <= self.config.max_file_bytes
    }

    /// The fresh entry for `target` on `site`, dropping it if expired.
    pub fn get(&self, site: usize, target: &str, now: Instant) -> Option<Arc<CachedFile>> {
        let mut map = self.sites.get(site)?.lock().ok()?;
        let entry = map.get(target)?;
        if now.saturating_duration_since(entry.loaded_at) < self.config.ttl {
            return Some(Arc::clone(entry));
        }
        if let Some(old) = map.remove(target) {
            self.total_bytes.fetch_sub(charge(target, &old), Ordering::Relaxed);
        }
        None
    }

    /// Caches `file` for `target` if it fits the budget (after dropping
    /// expired entries of this site if needed). Returns whether it did.
    pub fn insert(&self, site: usize, target: &str, file: Arc<CachedFile>, now: Instant) -> bool {
        if !self.admits(file.body.len() as u64) {
            return false;
        }
        let Some(slot) = self.sites.get(site) else {
            return false;
        };
        let Ok(mut map) = slot.lock() else {
            return false;
        };
        let cost = charge(target, &file);
        if self.total_bytes.load(Ordering::Relaxed) + cost > self.config.max_total_bytes {
            let ttl = self.config.ttl;
            let mut freed = 0;
            map.retain(|key, entry| {
                let keep = now.saturating_duration_since(entry.loaded_at) < ttl;
                if !keep {
                    freed += charge(key, entry);
                }
                keep
            });
            self.total_bytes.fetch_sub(freed, Ordering::Relaxed);
            if self.total_bytes.load(Ordering::Relaxed) + cost > self.config.max_total_bytes {
                return false;
            }
        }
        if let Some(old) = map.insert(target.into(), file) {
            self.total_bytes.fetch_sub(charge(target, &old), Ordering::Relaxed);
        }
        self.total_bytes.fetch_add(cost, Ordering::Relaxed);
        true
    }

    /// Bytes currently charged to the cache.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }
}

fn charge(key: &str, file: &CachedFile) -> u64 {
    key.len() as u64 + file.body.len() as u64 + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(len: usize, at: Instant) -> Arc<CachedFile> {
        Arc::new(CachedFile::new(
            Bytes::from(vec![b'x'; len]),
            "t".into(),
            "d".into(),
            at,
        ))
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let config = CacheConfig {
            ttl: Duration::from_secs(1),
            ..CacheConfig::default()
        };
        let cache = FileCache::new(config, 2);
        let t0 = Instant::now();
        assert!(cache.insert(0, "/a", file(10, t0), t0));
        assert!(cache.get(0, "/a", t0 + Duration::from_millis(999)).is_some());
        assert!(cache.get(1, "/a", t0).is_none(), "sites are separate");
        assert!(cache.get(0, "/a", t0 + Duration::from_secs(1)).is_none());
        assert_eq!(cache.total_bytes(), 0);
        assert!(cache.get(7, "/a", t0).is_none(), "unknown site is a miss");
    }

    #[test]
    fn budget_and_size_limits_hold() {
        let config = CacheConfig {
            ttl: Duration::from_secs(1),
            max_file_bytes: 1000,
            max_total_bytes: 2000,
        };
        let cache = FileCache::new(config, 1);
        let t0 = Instant::now();
        assert!(!cache.insert(0, "/big", file(1001, t0), t0));
        assert!(cache.insert(0, "/a", file(1000, t0), t0));
        assert!(!cache.insert(0, "/b", file(1000, t0), t0), "over budget");
        assert!(cache.total_bytes() <= 2000);
        // Once /a has expired, its room is reclaimed.
        let later = t0 + Duration::from_secs(2);
        assert!(cache.insert(0, "/b", file(1000, later), later));
        assert_eq!(cache.total_bytes(), 1000 + 2 + ENTRY_OVERHEAD);
    }

    #[test]
    fn zero_ttl_disables_caching() {
        let config = CacheConfig {
            ttl: Duration::ZERO,
            ..CacheConfig::default()
        };
        let cache = FileCache::new(config, 1);
        let t0 = Instant::now();
        assert!(!cache.insert(0, "/a", file(1, t0), t0));
        assert!(cache.get(0, "/a", t0).is_none());
    }
}
