//! URL -> file, with the guarantee that the file lies inside the docroot.
//!
//! Three layers, each of which alone would stop the common attacks:
//! percent-decoding happens first (so `%2e%2e` and `..%2f` are seen for what
//! they are), any `..` segment is refused outright, and the joined path is
//! canonicalized and must still start with the canonical docroot, which is
//! what stops symlinks that point outside. Everything refused is a 404, so a
//! client cannot tell "forbidden" from "absent".

use std::ffi::{CString, OsStr};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file served for a URL that names a directory (ends in `/`).
pub const INDEX_FILE: &str = "index.html";

/// Why a URL has no file (all answered with 404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    #[error("URL does not start with '/'")]
    NotAbsolute,
    #[error("URL contains a NUL byte once decoded")]
    Nul,
    #[error("URL has a '..' segment")]
    DotDot,
    #[error("no such file: {0}")]
    Missing(String),
    #[error("path leaves the document root")]
    Escapes,
    #[error("not a regular file")]
    NotAFile,
}

/// A file that may be served: canonical path, the open file and its
/// metadata (taken from the open file, so they describe what is sent).
#[derive(Debug)]
pub struct Resolved {
    pub path: PathBuf,
    pub file: File,
    pub metadata: Metadata,
}

/// The path, relative to the docroot, that `target` names, before any
/// filesystem access. The query string (`?...`) and fragment are ignored.
pub fn relative_path(target: &str) -> Result<PathBuf, NotFound> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(NotFound::NotAbsolute);
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
    if decoded.contains(&0) {
        return Err(NotFound::Nul);
    }
    let mut relative = PathBuf::new();
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return Err(NotFound::DotDot),
            name => relative.push(OsStr::from_bytes(name)),
        }
    }
    if decoded.ends_with(b"/") {
        relative.push(INDEX_FILE);
    }
    Ok(relative)
}

/// Resolves `target` against the canonical `docroot` (blocking filesystem
/// calls: run it off the async reactor).
pub fn resolve(docroot: &Path, target: &str) -> Result<Resolved, NotFound> {
    resolve_relative(docroot, &relative_path(target)?)
}

/// Resolves a path from [`relative_path`] against the canonical `docroot`
/// and opens it.
pub fn resolve_relative(docroot: &Path, relative: &Path) -> Result<Resolved, NotFound> {
    debug_assert!(docroot.is_absolute(), "docroot must be canonical");
    debug_assert!(relative.is_relative(), "the URL's path is relative to the docroot");
    let joined = docroot.join(relative);
    let path = std::fs::canonicalize(&joined).map_err(|err| NotFound::Missing(err.to_string()))?;
    if !path.starts_with(docroot) {
        return Err(NotFound::Escapes);
    }
    let file = open_without_symlinks(&path).map_err(|err| NotFound::Missing(err.to_string()))?;
    let metadata = file.metadata().map_err(|err| NotFound::Missing(err.to_string()))?;
    if !metadata.is_file() {
        return Err(NotFound::NotAFile);
    }
    Ok(Resolved { path, file, metadata })
}

/// Opens the canonical `path` for reading, refusing every symlink on the
/// way. `canonicalize` proved the path free of symlinks and inside the
/// docroot a moment ago; a directory swapped for a symlink since then would
/// otherwise lead the open outside it. `O_NONBLOCK`: a FIFO swapped in for
/// the file cannot hold the open (it is then refused as not a file).
fn open_without_symlinks(path: &Path) -> io::Result<File> {
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOFOLLOW;
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `open_how` is a plain C struct for which all zeroes is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: `c_path` is a live NUL-terminated string and `how` a live
    // `open_how` whose size we pass; the kernel only reads them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        return Ok(unsafe { File::from_raw_fd(fd as i32) });
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // No openat2 (Linux before 5.6, or a seccomp filter): refuse at
        // least a symlink in the last component.
        Some(libc::ENOSYS) | Some(libc::EPERM) => std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(path),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn relative_paths() {
        assert_eq!(relative_path("/").unwrap(), Path::new("index.html"));
        assert_eq!(relative_path("/a/b.html").unwrap(), Path::new("a/b.html"));
        assert_eq!(relative_path("/a//./b/").unwrap(), Path::new("a/b/index.html"));
        assert_eq!(relative_path("/sp%20ace.txt?x=1#f").unwrap(), Path::new("sp ace.txt"));
        assert_eq!(relative_path("/a%2fb").unwrap(), Path::new("a/b"));
    }

    #[test]
    fn escapes_are_refused_before_touching_the_disk() {
        for url in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc/passwd",
            "/..%2fetc/passwd",
            "/a/..",
        ] {
            assert_eq!(relative_path(url), Err(NotFound::DotDot), "{url}");
        }
        assert_eq!(relative_path("/a%00b"), Err(NotFound::Nul));
        assert_eq!(relative_path("a"), Err(NotFound::NotAbsolute));
    }

    #[test]
    fn symlinks_out_of_the_docroot_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), b"secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        let docroot = fs::canonicalize(root.path()).unwrap();
        fs::write(docroot.join("index.html"), b"hi").unwrap();
        fs::create_dir(docroot.join("sub")).unwrap();
        fs::write(docroot.join("sub/in.txt"), b"in").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), docroot.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), docroot.join("linkdir")).unwrap();
        std::os::unix::fs::symlink(docroot.join("sub/in.txt"), docroot.join("inside.txt")).unwrap();

        assert_eq!(resolve(&docroot, "/").unwrap().path, docroot.join("index.html"));
        assert_eq!(
            resolve(&docroot, "/inside.txt").unwrap().path,
            docroot.join("sub/in.txt")
        );
        assert_eq!(resolve(&docroot, "/link.txt").unwrap_err(), NotFound::Escapes);
        assert_eq!(resolve(&docroot, "/linkdir/secret.txt").unwrap_err(), NotFound::Escapes);
        assert_eq!(resolve(&docroot, "/sub").unwrap_err(), NotFound::NotAFile);
        assert!(matches!(resolve(&docroot, "/sub/").unwrap_err(), NotFound::Missing(_)));
        assert!(matches!(resolve(&docroot, "/nope").unwrap_err(), NotFound::Missing(_)));
    }

    /// What closes the race between the check and the open: a directory
    /// that became a symlink after `canonicalize` looked is refused.
    #[test]
    fn the_open_refuses_a_symlink_anywhere_on_the_path() {
        let root = tempfile::tempdir().unwrap();
        let docroot = fs::canonicalize(root.path()).unwrap();
        fs::create_dir(docroot.join("sub")).unwrap();
        fs::write(docroot.join("sub/in.txt"), b"in").unwrap();
        std::os::unix::fs::symlink(docroot.join("sub"), docroot.join("swapped")).unwrap();
        assert!(open_without_symlinks(&docroot.join("sub/in.txt")).is_ok());
        assert!(open_without_symlinks(&docroot.join("swapped/in.txt")).is_err());
        // The file served is the one opened: its metadata comes from it.
        let resolved = resolve(&docroot, "/sub/in.txt").unwrap();
        assert_eq!(resolved.metadata.len(), 2);
        assert_eq!(
            resolved.file.metadata().unwrap().ino(),
            fs::metadata(docroot.join("sub/in.txt")).unwrap().ino()
        );
    }
}
