//! URL -> file, with the guarantee that the file lies inside the docroot.
//!
//! Three layers, each of which alone would stop the common attacks:
//! percent-decoding happens first (so `%2e%2e` and `..%2f` are seen for what
//! they are), any `..` segment is refused outright, and the joined path is
//! canonicalized and must still start with the canonical docroot, which is
//! what stops symlinks that point outside. Everything refused is a 404, so a
//! client cannot tell "forbidden" from "absent".

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
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

/// A file that may be served: canonical path plus its metadata.
#[derive(Debug)]
pub struct Resolved {
    pub path: PathBuf,
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
    debug_assert!(docroot.is_absolute(), "docroot must be canonical");
    let relative = relative_path(target)?;
    let joined = docroot.join(&relative);
    let path = std::fs::canonicalize(&joined).map_err(|err| NotFound::Missing(err.to_string()))?;
    if !path.starts_with(docroot) {
        return Err(NotFound::Escapes);
    }
    let metadata = std::fs::metadata(&path).map_err(|err| NotFound::Missing(err.to_string()))?;
    if !metadata.is_file() {
        return Err(NotFound::NotAFile);
    }
    Ok(Resolved { path, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
}
