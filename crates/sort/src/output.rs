//! The output file of a sort, replaced only when the sort succeeds.
//!
//! Creating the output with `File::create` truncates it before a byte of the
//! result is written: a write that fails (disk full, file size limit) then
//! leaves an empty or partly written file, and when the output is the input
//! (`triton sort f f`) the input is gone. So the result goes to a temporary
//! file beside the output, renamed over it once complete (a rename is
//! cheap and atomic), and removed on failure. An output that exists and is
//! not a regular file (`/dev/null`, a FIFO, a terminal) can be neither
//! renamed over nor written at positions or sized, as the sort writes: the
//! result is made in a temporary file in `TMPDIR` and copied out in order on
//! success. Such an output is never removed or truncated on failure.

use std::fs::File;
use std::io::{ErrorKind, Seek};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Where a sort's spilled runs go: beside the output, or in `TMPDIR` when
/// the output is not a regular file (runs cannot go in `/dev`).
pub fn scratch_parent(output: &Path) -> PathBuf {
    if std::fs::metadata(output).is_ok_and(|m| !m.is_file()) {
        return std::env::temp_dir();
    }
    match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Where a sort writes its result; [`SortOutput::commit`] makes it the output.
pub struct SortOutput {
    file: File,
    path: PathBuf,
    /// The temporary file, removed when dropped (a sort that failed).
    temp: Option<tempfile::TempPath>,
    /// The output is not a regular file: on commit the temporary file is
    /// copied into it rather than renamed over it.
    stream: bool,
    /// Keeps the temporary file listed for removal on interrupt.
    _listed: Option<crate::scratch::Listed>,
}

impl SortOutput {
    /// Prepare to write `path`: a temporary file in its directory; one in
    /// `TMPDIR` if `path` exists and is not a regular file; or `path` itself
    /// if its directory does not let us create files while the file itself
    /// is writable.
    pub fn create(path: &Path) -> Result<SortOutput> {
        // Replace the file a symlink points to, not the symlink (as writing
        // through it would).
        let target = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(path) {
                Ok(t) => t,
                Err(_) => return Self::direct(path), // dangling: create through it
            },
            _ => path.to_path_buf(),
        };
        let existing = match std::fs::metadata(&target) {
            Ok(m) if !m.is_file() => return Self::stream(path),
            Ok(m) => Some(m.permissions()),
            Err(_) => None,
        };
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // Mode 0666 less the umask: what `File::create` gives a new file.
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o666);
        let made = crate::scratch::create(|| {
            let temp = tempfile::Builder::new()
                .prefix(".triton-sort-out-")
                .permissions(mode)
                .tempfile_in(dir)?;
            let path = temp.path().to_path_buf();
            Ok((temp, path))
        });
        let (temp, listed) = match made {
            Ok(t) => t,
            // A writable file in a directory we may not add to: as before.
            Err(e) if e.kind() == ErrorKind::PermissionDenied && existing.is_some() => return Self::direct(path),
            Err(e) => return Err(e).ctx(|| format!("creating a temporary output in {}", dir.display())),
        };
        if let Some(permissions) = existing {
            // An overwritten output keeps its mode, as with `File::create`.
            temp.as_file()
                .set_permissions(permissions)
                .ctx(|| format!("setting the mode of {}", temp.path().display()))?;
        }
        let (file, temp) = temp.into_parts();
        Ok(SortOutput {
            file,
            path: target,
            temp: Some(temp),
            stream: false,
            _listed: Some(listed),
        })
    }

    /// For an output that is not a regular file: a temporary regular file in
    /// `TMPDIR`, copied into the output on commit.
    fn stream(path: &Path) -> Result<SortOutput> {
        let dir = std::env::temp_dir();
        let (temp, listed) = crate::scratch::create(|| {
            let temp = tempfile::Builder::new().prefix(".triton-sort-out-").tempfile_in(&dir)?;
            let path = temp.path().to_path_buf();
            Ok((temp, path))
        })
        .ctx(|| format!("creating a temporary output in {}", dir.display()))?;
        let (file, temp) = temp.into_parts();
        Ok(SortOutput {
            file,
            path: path.to_path_buf(),
            temp: Some(temp),
            stream: true,
            _listed: Some(listed),
        })
    }

    fn direct(path: &Path) -> Result<SortOutput> {
        let file = File::create(path).ctx(|| format!("creating output {}", path.display()))?;
        Ok(SortOutput {
            file,
            path: path.to_path_buf(),
            temp: None,
            stream: false,
            _listed: None,
        })
    }

    /// The file to write the result into.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The output's path (where the result ends up).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The result is complete: make it the output.
    pub fn commit(self) -> Result<()> {
        let SortOutput {
            mut file,
            path,
            temp,
            stream,
            ..
        } = self;
        if stream {
            file.rewind().ctx(|| "rewinding the temporary output".to_string())?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .ctx(|| format!("opening output {}", path.display()))?;
            std::io::copy(&mut file, &mut to).ctx(|| format!("writing {}", path.display()))?;
            return Ok(()); // the temporary file goes with `temp`
        }
        drop(file);
        if let Some(temp) = temp {
            // On failure the error drops the temporary path, removing it.
            temp.persist(&path)
                .map_err(|e| e.error)
                .ctx(|| format!("renaming the sorted output to {}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{FileExt, FileTypeExt, PermissionsExt};

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_output_changes_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::write(&out, b"old").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
        // Dropped without commit (a failed sort): the old file stays, the
        // temporary file goes.
        let o = SortOutput::create(&out).unwrap();
        o.file().write_all(b"half").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        drop(o);
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["out"]);
        // Committed: replaced, keeping the old file's mode.
        let o = SortOutput::create(&out).unwrap();
        o.file().write_all(b"new").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(names(dir.path()), ["out"]);
        // A new output appears only on commit.
        let fresh = dir.path().join("fresh");
        let o = SortOutput::create(&fresh).unwrap();
        assert!(!fresh.exists());
        o.commit().unwrap();
        assert!(fresh.exists());
    }

    #[test]
    fn a_symlink_is_followed_and_a_device_written_directly() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"old").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let o = SortOutput::create(&link).unwrap();
        o.file().write_all(b"new").unwrap();
        o.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        // /dev/null cannot be renamed over, written at positions or sized:
        // the result is made in a temporary file and copied into it.
        let o = SortOutput::create(Path::new("/dev/null")).unwrap();
        assert_eq!(o.path(), Path::new("/dev/null"));
        o.file().write_all_at(b"gone", 4096).unwrap();
        o.file().set_len(8192).unwrap();
        o.commit().unwrap();
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
        // Nor is it touched by a sort that fails.
        drop(SortOutput::create(Path::new("/dev/null")).unwrap());
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    }
}
