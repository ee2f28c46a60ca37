//! Temporary files and directories that must not outlive an interrupted sort.
//!
//! Runs spilled by an external sort or netsort can add up to the size of
//! the input. They live in `tempfile` directories removed on drop, but a
//! process ended by SIGINT or SIGTERM runs no destructors: the runs would
//! stay behind. So each temporary path is also listed here while it exists,
//! and the command's signal handler calls [`remove_all`] before exiting.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Paths to remove on interrupt, by registration number.
#[derive(Debug)]
struct Registry {
    live: Mutex<Vec<(u64, PathBuf)>>,
    next: AtomicU64,
    /// Set once removal has begun: errors the removal causes in the sort's
    /// own threads are its doing, not the sort's.
    removing: AtomicBool,
}

impl Registry {
    const fn new() -> Registry {
        Registry {
            live: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            removing: AtomicBool::new(false),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<(u64, PathBuf)>> {
        // A panic elsewhere while listing cannot leave the list half-changed.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn list(&'static self, path: &Path) -> Listed {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut live = self.live();
        live.push((id, path.to_path_buf()));
        debug_assert!(live.iter().filter(|(i, _)| *i == id).count() == 1);
        Listed { registry: self, id }
    }

    fn remove_all(&self) -> usize {
        self.removing.store(true, Ordering::SeqCst);
        let live = std::mem::take(&mut *self.live());
        let mut removed = 0;
        for (_, path) in live {
            let gone = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => remove_busy_dir(&path),
                Ok(_) => std::fs::remove_file(&path).is_ok(),
                Err(_) => false,
            };
            removed += usize::from(gone);
        }
        removed
    }
}

/// The process's list.
static LISTED: Registry = Registry::new();

/// Keeps `path` on the interrupt list until dropped (the owner removes the
/// path itself on the normal way out).
#[derive(Debug)]
pub struct Listed {
    registry: &'static Registry,
    id: u64,
}

/// Lists `path` (a file or a directory) for removal on interrupt.
pub fn list(path: &Path) -> Listed {
    LISTED.list(path)
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.registry.live().retain(|(i, _)| *i != self.id);
    }
}

/// True once an interrupt began removing the listed paths: the caller,
/// failing, should leave the exit to the signal handler.
pub fn interrupted() -> bool {
    LISTED.removing.load(Ordering::SeqCst)
}

/// Removes every listed path (best effort: the process is about to exit);
/// returns how many were removed.
pub fn remove_all() -> usize {
    LISTED.remove_all()
}

/// Removes a directory other threads may still be creating runs in (they
/// are not stopped): renamed first, so no new file can appear in it, since
/// files are created by path, then removed.
fn remove_busy_dir(path: &Path) -> bool {
    let mut doomed = path.as_os_str().to_owned();
    doomed.push(".removing");
    let doomed = PathBuf::from(doomed);
    if std::fs::rename(path, &doomed).is_ok() {
        return std::fs::remove_dir_all(&doomed).is_ok();
    }
    // Cannot rename: retry while new files keep the directory non-empty.
    (0..100).any(|_| std::fs::remove_dir_all(path).is_ok() || !path.exists())
}

/// A temporary directory (`tempfile`'s, removed on drop) that is also
/// listed for removal on interrupt.
#[derive(Debug)]
pub struct ScratchDir {
    dir: tempfile::TempDir,
    _listed: Listed,
}

impl ScratchDir {
    /// A new directory named `prefix...` in `parent`.
    pub fn new_in(parent: &Path, prefix: &str) -> std::io::Result<ScratchDir> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        let _listed = list(dir.path());
        Ok(ScratchDir { dir, _listed })
    }

    /// Where the directory is.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_paths_are_removed_until_their_owner_lets_go() {
        // A registry of its own: the process's may list other tests' runs.
        let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
        let dir = tempfile::tempdir().unwrap();
        let (a, b, kept) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("kept"));
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("run-000000"), b"x").unwrap();
        std::fs::write(&b, b"y").unwrap();
        std::fs::write(&kept, b"z").unwrap();
        let _a = registry.list(&a);
        let _b = registry.list(&b);
        drop(registry.list(&kept)); // its owner is done with it: no longer listed
        assert!(!registry.removing.load(Ordering::SeqCst));
        assert_eq!(registry.remove_all(), 2);
        assert!(registry.removing.load(Ordering::SeqCst));
        assert!(!a.exists() && !b.exists());
        assert!(kept.exists());
        assert_eq!(names(dir.path()), ["kept"]);
    }

    fn names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}
