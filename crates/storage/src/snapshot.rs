//! Snapshot files: written whole to a temporary file, fsynced, renamed into
//! place and the directory fsynced, so a snapshot file either exists complete
//! or not at all (a `.tmp` left by a crash is deleted at the next open).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::format::{self, SnapshotHeader, SNAPSHOT_HEADER_LEN, SNAPSHOT_TRAILER_LEN};
use crate::types::SnapshotMeta;
use crate::wal::sync_dir;

/// Writes the snapshot atomically into `dir`; returns the final path.
pub fn write_snapshot_file(dir: &Path, meta: &SnapshotMeta, data: &[u8]) -> Result<PathBuf, StorageError> {
    let name = format::snapshot_file_name(meta.index, meta.term);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let membership_len = u32::try_from(meta.membership.len())
        .ok()
        .filter(|&n| n <= format::MAX_MEMBERSHIP_BYTES)
        .ok_or_else(|| membership_too_large(meta.membership.len()))?;
    let header = format::encode_snapshot_header(&SnapshotHeader {
        index: meta.index,
        term: meta.term,
        membership_len,
        data_len: data.len() as u64,
    });
    let mut crc = crc32c::crc32c(&header);
    crc = crc32c::crc32c_append(crc, &meta.membership);
    crc = crc32c::crc32c_append(crc, data);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(&header)?;
        f.write_all(&meta.membership)?;
        f.write_all(data)?;
        f.write_all(&crc.to_le_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| StorageError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(path)
}

/// The refusal of a membership blob over [`format::MAX_MEMBERSHIP_BYTES`].
pub fn membership_too_large(len: usize) -> StorageError {
    StorageError::InvalidOptions {
        reason: format!(
            "snapshot membership of {len} bytes is over the limit of {} bytes",
            format::MAX_MEMBERSHIP_BYTES
        ),
    }
}

/// Reads and checks a whole snapshot file.
pub fn read_snapshot_file(path: &Path) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let bytes = fs::read(path).map_err(|e| StorageError::io(path, e))?;
    let h = format::check_snapshot_header(&bytes, bytes.len() as u64).map_err(|r| StorageError::corrupt(path, 0, r))?;
    let body_end = bytes.len() - SNAPSHOT_TRAILER_LEN;
    let stored = u32::from_le_bytes(bytes[body_end..].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&bytes[..body_end]);
    if stored != computed {
        return Err(StorageError::corrupt(
            path,
            body_end as u64,
            format!("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    let m_end = SNAPSHOT_HEADER_LEN + h.membership_len as usize;
    let meta = SnapshotMeta {
        index: h.index,
        term: h.term,
        membership: bytes[SNAPSHOT_HEADER_LEN..m_end].to_vec(),
    };
    Ok((meta, bytes[m_end..body_end].to_vec()))
}

/// Checks a snapshot file by streaming it (without holding the data in
/// memory) and returns its metadata.
pub fn verify_snapshot_file(path: &Path) -> Result<SnapshotMeta, StorageError> {
    let io = |e| StorageError::io(path, e);
    let mut f = File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut header = [0u8; SNAPSHOT_HEADER_LEN];
    let got = read_up_to(&mut f, &mut header).map_err(io)?;
    let h = format::check_snapshot_header(&header[..got], file_len).map_err(|r| StorageError::corrupt(path, 0, r))?;
    // Bounded by the header check (`MAX_MEMBERSHIP_BYTES`), not only by the
    // file length, which a sparse file makes as large as it likes.
    let mut membership = vec![0u8; h.membership_len as usize];
    f.read_exact(&mut membership).map_err(io)?;
    let mut crc = crc32c::crc32c(&header);
    crc = crc32c::crc32c_append(crc, &membership);
    let mut left = h.data_len;
    let mut chunk = vec![0u8; 256 << 10];
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.read_exact(&mut chunk[..n]).map_err(io)?;
        crc = crc32c::crc32c_append(crc, &chunk[..n]);
        left -= n as u64;
    }
    let mut trailer = [0u8; SNAPSHOT_TRAILER_LEN];
    f.read_exact(&mut trailer).map_err(io)?;
    let stored = u32::from_le_bytes(trailer);
    if stored != crc {
        return Err(StorageError::corrupt(
            path,
            file_len - SNAPSHOT_TRAILER_LEN as u64,
            format!("snapshot checksum mismatch: stored {stored:#010x}, computed {crc:#010x}"),
        ));
    }
    Ok(SnapshotMeta {
        index: h.index,
        term: h.term,
        membership,
    })
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}
