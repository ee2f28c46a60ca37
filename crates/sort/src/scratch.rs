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

    /// Creates a path with `make` and lists it, both under the list's lock,
    /// so an interrupt either waits for the new path and removes it or comes
    /// first and the path is never made (a path made and then listed could
    /// slip between the interrupt's look at the list and the exit).
    fn create<T>(&'static self, make: impl FnOnce() -> std::io::Result<(T, PathBuf)>) -> std::io::Result<(T, Listed)> {
        let mut live = self.live();
        if self.removing.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the sort is being stopped",
            ));
        }
        let (made, path) = make()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        live.push((id, path));
        debug_assert!(live.iter().filter(|(i, _)| *i == id).count() == 1);
        Ok((made, Listed { registry: self, id }))
    }

    fn remove_all(&self) -> usize {
        let live = {
            let mut live = self.live();
            // Set under the lock: no path is made after the list is taken.
            self.removing.store(true, Ordering::SeqCst);
            std::mem::take(&mut *live)
        };
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

/// Makes a file or directory with `make` (which returns it and its path)
/// and lists the path for removal on interrupt. Fails with `Interrupted`,
/// making nothing, once an interrupt has begun removing.
pub fn create<T>(make: impl FnOnce() -> std::io::Result<(T, PathBuf)>) -> std::io::Result<(T, Listed)> {
    LISTED.create(make)
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
        let (dir, _listed) = create(|| {
            let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
            let path = dir.path().to_path_buf();
            Ok((dir, path))
        })?;
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
        let list = |p: &Path| registry.create(|| Ok(((), p.to_path_buf()))).unwrap().1;
        let _a = list(&a);
        let _b = list(&b);
        drop(list(&kept)); // its owner is done with it: no longer listed
        assert!(!registry.removing.load(Ordering::SeqCst));
        assert_eq!(registry.remove_all(), 2);
        assert!(registry.removing.load(Ordering::SeqCst));
        assert!(!a.exists() && !b.exists());
        assert!(kept.exists());
        assert_eq!(names(dir.path()), ["kept"]);
        // Nothing is made once removal began: it would outlive the exit.
        let late = dir.path().join("late");
        let made = registry.create(|| std::fs::write(&late, b"w").map(|()| ((), late.clone())));
        assert_eq!(made.unwrap_err().kind(), std::io::ErrorKind::Interrupted);
        assert!(!late.exists());
    }

    #[test]
    fn an_interrupt_during_a_creation_waits_for_it_and_removes_what_it_made() {
        let registry: &'static Registry = Box::leak(Box::new(Registry::new()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let (made_tx, made_rx) = std::sync::mpsc::channel();
        let maker = {
            let path = path.clone();
            std::thread::spawn(move || {
                registry.create(|| {
                    std::fs::write(&path, b"x")?;
                    made_tx.send(()).unwrap();
                    // The interrupt comes now, between the making and the listing.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    Ok(((), path.clone()))
                })
            })
        };
        made_rx.recv().unwrap();
        assert!(path.exists());
        assert_eq!(registry.remove_all(), 1, "the path being made was missed");
        assert!(!path.exists());
        maker.join().unwrap().unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}
