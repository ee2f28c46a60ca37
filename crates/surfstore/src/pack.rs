//! Append-only pack files with group commit: how the block store makes
//! many blocks durable with one `fdatasync`.
//!
//! One file per block cost a file fsync plus a directory fsync per
//! `PutBlock` (two journal commits, ~2 ms each on a virtual disk), which put
//! an initial sync of 4,000 blocks at several seconds. Here every block is a
//! record appended to the active pack `packs/<id>.pack`; a put waits until a
//! `fdatasync` that started after its append has returned. Concurrent puts
//! share that sync (group commit): one thread syncs, the others wait on a
//! condition variable, and all are acknowledged together. "Acknowledged
//! implies durable" is unchanged.
//!
//! Record layout (little-endian):
//!
//! ```text
//! magic "TBK1" (4) | data length u32 (4) | SHA-256 of data (32) | CRC-32C of the 40 bytes before (4) | data
//! ```
//!
//! Recovery ([`PackLog::open`]) reads every record and checks the header
//! CRC, the format's length bound ([`MAX_RECORD_LEN`]) and the data's
//! SHA-256. After a bad record it searches forward for the next record whose
//! header and data both check, and goes on from there: damage in the middle
//! of a pack loses only the damaged records. A kill -9 can leave a torn
//! record at the end of the newest pack; bad bytes with no good record after
//! them there are that torn tail, and are cut (nothing after the last good
//! record was acknowledged, since records are appended in order and
//! acknowledged only after a sync covering them). Any other bad range is
//! damage on disk, not a torn write: it is reported and left in the file
//! for inspection.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use sha2::{Digest, Sha256};

/// Bytes in a record header.
pub const HEADER_LEN: usize = 44;
const MAGIC: &[u8; 4] = b"TBK1";
/// A pack is closed and a new one started once it exceeds this size.
pub const DEFAULT_PACK_LIMIT: u64 = 1 << 30;
/// The largest record data the pack format allows, and so the largest block
/// a store can ever be configured to accept. Recovery is bounded by this,
/// not by the store's current limit: lowering that limit at a restart must
/// not turn acknowledged records into "damage".
pub const MAX_RECORD_LEN: usize = 1 << 30;
const PACK_SUFFIX: &str = ".pack";

/// Where a block's bytes are: pack id, offset of the data, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Which pack file.
    pub pack: u32,
    /// Offset of the block's data (after its header) in the pack.
    pub offset: u64,
    /// The block's length in bytes.
    pub len: u32,
}

/// What [`PackLog::open`] found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records read.
    pub records: u64,
    /// Bytes cut from the end of the newest pack (a torn tail).
    pub truncated_bytes: u64,
    /// Damaged ranges, not torn tails: (pack id, offset, bytes ignored).
    pub damaged: Vec<(u32, u64, u64)>,
}

/// Encodes a record header for `data` whose SHA-256 is `digest`.
pub fn encode_header(digest: &[u8; 32], len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..40].copy_from_slice(digest);
    let crc = crc32c::crc32c(&h[..40]);
    h[40..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a header: (digest, data length), or `None` when the magic, the
/// CRC or the length bound `max_len` does not hold.
pub fn decode_header(h: &[u8; HEADER_LEN], max_len: usize) -> Option<([u8; 32], u32)> {
    if &h[..4] != MAGIC || crc32c::crc32c(&h[..40]).to_le_bytes() != h[40..] {
        return None;
    }
    let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    if len as usize > max_len {
        return None;
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&h[8..40]);
    Some((digest, len))
}

/// The append side, guarded by one mutex.
struct Writer {
    active: Arc<File>,
    active_id: u32,
    active_len: u64,
    /// Bytes appended since open, over all packs: the group-commit clock.
    written: u64,
    /// `written` as of the start of the last completed sync.
    durable: u64,
    /// A thread is in `fdatasync` now.
    syncing: bool,
    /// A write or sync failed: after a failed fsync the kernel may have
    /// dropped the dirty pages, so nothing more is acknowledged.
    failed: Option<String>,
}

/// The pack files of one block store.
pub struct PackLog {
    dir: PathBuf,
    limit: u64,
    writer: Mutex<Writer>,
    synced: Condvar,
    /// Open pack files by id, for reads.
    files: RwLock<HashMap<u32, Arc<File>>>,
}

fn pack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}{PACK_SUFFIX}"))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn failed(msg: &str) -> io::Error {
    io::Error::other(format!(
        "block store disk failed earlier ({msg}); restart it to recover"
    ))
}

/// What [`scan_pack`] found in one pack besides its good records.
struct Scan {
    /// Where the last good record ends (0 if none).
    end: u64,
    /// Bad ranges followed by a good record: (offset, length).
    damaged: Vec<(u64, u64)>,
}

/// Reads the records of `file`, calling `found` for each good one. After a
/// bad record it resumes at the next offset holding a record whose header
/// and data both check ([`next_good_record`]).
fn scan_pack(file: &File, mut found: impl FnMut([u8; 32], u64, u32)) -> io::Result<Scan> {
    let size = file.metadata()?.len();
    let mut scan = Scan {
        end: 0,
        damaged: Vec::new(),
    };
    let mut pos = 0u64;
    let mut data = Vec::new();
    while size - pos >= HEADER_LEN as u64 {
        match read_record(file, pos, size, &mut data)? {
            Some((digest, len)) => {
                found(digest, pos + HEADER_LEN as u64, len);
                pos += HEADER_LEN as u64 + u64::from(len);
                scan.end = pos;
            }
            None => match next_good_record(file, pos + 1, size, &mut data)? {
                Some(next) => {
                    scan.damaged.push((pos, next - pos));
                    pos = next;
                }
                None => break,
            },
        }
    }
    debug_assert!(scan.end <= size);
    Ok(scan)
}

/// The record at `pos` if its header and data check: (digest, data length).
fn read_record(file: &File, pos: u64, size: u64, data: &mut Vec<u8>) -> io::Result<Option<([u8; 32], u32)>> {
    let mut h = [0u8; HEADER_LEN];
    if size - pos < HEADER_LEN as u64 {
        return Ok(None);
    }
    file.read_exact_at(&mut h, pos)?;
    let Some((digest, len)) = decode_header(&h, MAX_RECORD_LEN) else {
        return Ok(None);
    };
    let data_at = pos + HEADER_LEN as u64;
    if size - data_at < u64::from(len) {
        return Ok(None);
    }
    data.resize(len as usize, 0);
    file.read_exact_at(data, data_at)?;
    Ok((Sha256::digest(&data[..]).as_slice() == digest).then_some((digest, len)))
}

/// The first offset at or after `from` holding a good record, if any.
/// Reads in 1 MiB windows looking for the magic; only runs after damage.
fn next_good_record(file: &File, from: u64, size: u64, data: &mut Vec<u8>) -> io::Result<Option<u64>> {
    const WINDOW: usize = 1 << 20;
    let mut window = vec![0u8; WINDOW];
    let mut at = from;
    while size.saturating_sub(at) >= HEADER_LEN as u64 {
        let n = (size - at).min(WINDOW as u64) as usize;
        file.read_exact_at(&mut window[..n], at)?;
        for i in 0..n.saturating_sub(MAGIC.len() - 1) {
            if &window[i..i + MAGIC.len()] == MAGIC && read_record(file, at + i as u64, size, data)?.is_some() {
                return Ok(Some(at + i as u64));
            }
        }
        // Overlap by the magic's length, so one split across windows is seen.
        at += (n - (MAGIC.len() - 1)) as u64;
    }
    Ok(None)
}

impl PackLog {
    /// Opens (creating if needed) the packs under `dir`, verifying every
    /// record and repairing a torn tail; `found` is called for each block.
    /// Records longer than [`MAX_RECORD_LEN`] are treated as damage.
    pub fn open(dir: &Path, limit: u64, mut found: impl FnMut([u8; 32], Location)) -> io::Result<(PackLog, Recovery)> {
        assert!(limit > 0, "pack limit must be positive");
        let parent_needs_sync = !dir.exists();
        fs::create_dir_all(dir)?;
        if parent_needs_sync {
            if let Some(parent) = dir.parent() {
                fsync_dir(parent)?;
            }
        }
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(PACK_SUFFIX) else {
                continue;
            };
            if stem.len() == 8 && stem.bytes().all(|b| b.is_ascii_digit()) {
                ids.push(stem.parse::<u32>().expect("8 digits fit u32"));
            }
        }
        ids.sort_unstable();
        let mut recovery = Recovery::default();
        let mut files = HashMap::new();
        let mut last: Option<(u32, Arc<File>, u64)> = None;
        for (i, &id) in ids.iter().enumerate() {
            let newest = i + 1 == ids.len();
            let file = OpenOptions::new().read(true).write(newest).open(pack_path(dir, id))?;
            let size = file.metadata()?.len();
            let scan = scan_pack(&file, |digest, offset, len| {
                recovery.records += 1;
                found(digest, Location { pack: id, offset, len });
            })?;
            recovery
                .damaged
                .extend(scan.damaged.iter().map(|&(at, len)| (id, at, len)));
            let end = scan.end;
            if end < size {
                if newest {
                    file.set_len(end)?;
                    file.sync_all()?;
                    recovery.truncated_bytes = size - end;
                } else {
                    recovery.damaged.push((id, end, size - end));
                }
            }
            let file = Arc::new(file);
            files.insert(id, file.clone());
            if newest {
                last = Some((id, file, end));
            }
        }
        let (active_id, active, active_len) = match last {
            Some(l) => l,
            None => {
                let file = Arc::new(Self::create_pack(dir, 0)?);
                files.insert(0, file.clone());
                (0, file, 0)
            }
        };
        let log = PackLog {
            dir: dir.to_path_buf(),
            limit,
            writer: Mutex::new(Writer {
                active,
                active_id,
                active_len,
                written: 0,
                durable: 0,
                syncing: false,
                failed: None,
            }),
            synced: Condvar::new(),
            files: RwLock::new(files),
        };
        Ok((log, recovery))
    }

    fn create_pack(dir: &Path, id: u32) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(pack_path(dir, id))?;
        fsync_dir(dir)?;
        Ok(file)
    }

    /// Appends a record for `data` (whose SHA-256 is `digest`) and returns
    /// once it is durable, with where it lives. Concurrent callers share
    /// one `fdatasync`.
    pub fn append_durable(&self, digest: &[u8; 32], data: &[u8]) -> io::Result<Location> {
        let (loc, ticket) = self.append(digest, data)?;
        self.wait_durable(ticket)?;
        Ok(loc)
    }

    /// Appends a record without waiting for it to be durable: returns where
    /// it lives and the ticket to pass to [`PackLog::wait_durable`] before
    /// acknowledging it. Lets one request append many blocks, then sync once.
    pub fn append(&self, digest: &[u8; 32], data: &[u8]) -> io::Result<(Location, u64)> {
        // Recovery would take a longer record for damage and cut it.
        if data.len() > MAX_RECORD_LEN {
            return Err(io::Error::other(format!(
                "block of {} bytes exceeds the pack format's limit of {MAX_RECORD_LEN}",
                data.len()
            )));
        }
        let len = u32::try_from(data.len()).expect("MAX_RECORD_LEN fits u32");
        let header = encode_header(digest, len);
        let mut w = self.writer.lock().expect("pack writer lock");
        if let Some(msg) = &w.failed {
            return Err(failed(msg));
        }
        if w.active_len > 0 && w.active_len + (HEADER_LEN + data.len()) as u64 > self.limit {
            if let Err(e) = self.rotate(&mut w) {
                w.failed = Some(e.to_string());
                return Err(e);
            }
        }
        let at = w.active_len;
        let mut record = Vec::with_capacity(HEADER_LEN + data.len());
        record.extend_from_slice(&header);
        record.extend_from_slice(data);
        if let Err(e) = w.active.write_all_at(&record, at) {
            // The file may now hold part of a record: appending after it
            // would put good records behind a bad one.
            w.failed = Some(e.to_string());
            return Err(e);
        }
        w.active_len += record.len() as u64;
        w.written += record.len() as u64;
        let loc = Location {
            pack: w.active_id,
            offset: at + HEADER_LEN as u64,
            len,
        };
        Ok((loc, w.written))
    }

    /// Returns once everything appended up to `ticket` is durable. Group
    /// commit: if a sync is running, wait for it (and maybe run the next
    /// one); one `fdatasync` covers every record appended before it started.
    pub fn wait_durable(&self, ticket: u64) -> io::Result<()> {
        let mut w = self.writer.lock().expect("pack writer lock");
        loop {
            if let Some(msg) = &w.failed {
                return Err(failed(msg));
            }
            if w.durable >= ticket {
                return Ok(());
            }
            if w.syncing {
                w = self.synced.wait(w).expect("pack writer lock");
                continue;
            }
            w.syncing = true;
            let target = w.written;
            let file = w.active.clone();
            drop(w);
            let result = file.sync_data();
            w = self.writer.lock().expect("pack writer lock");
            w.syncing = false;
            match result {
                Ok(()) => w.durable = w.durable.max(target),
                Err(e) => w.failed = Some(e.to_string()),
            }
            self.synced.notify_all();
        }
    }

    /// Closes the active pack (synced in full) and starts the next one.
    fn rotate(&self, w: &mut Writer) -> io::Result<()> {
        w.active.sync_data()?;
        // Everything appended so far is in the synced pack.
        w.durable = w.written;
        let id = w
            .active_id
            .checked_add(1)
            .ok_or_else(|| io::Error::other("pack ids exhausted"))?;
        let file = Arc::new(Self::create_pack(&self.dir, id)?);
        self.files.write().expect("pack files lock").insert(id, file.clone());
        w.active = file;
        w.active_id = id;
        w.active_len = 0;
        self.synced.notify_all();
        Ok(())
    }

    /// The bytes at `loc` (not checked against the hash: callers do).
    pub fn read(&self, loc: Location) -> io::Result<Vec<u8>> {
        let file = self
            .files
            .read()
            .expect("pack files lock")
            .get(&loc.pack)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("no pack {}", loc.pack)))?;
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)?;
        Ok(buf)
    }

    /// The pack file with id `id` (for tests and tools).
    pub fn path_of(&self, id: u32) -> PathBuf {
        pack_path(&self.dir, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn open(dir: &Path, limit: u64) -> (PackLog, Recovery, Vec<([u8; 32], Location)>) {
        let mut found = Vec::new();
        let (log, rec) = PackLog::open(dir, limit, |d, l| found.push((d, l))).unwrap();
        (log, rec, found)
    }

    #[test]
    fn header_round_trip_and_rejections() {
        let d = digest(b"x");
        let h = encode_header(&d, 1);
        assert_eq!(decode_header(&h, 10), Some((d, 1)));
        assert_eq!(decode_header(&h, 0), None, "over the length bound");
        for i in 0..HEADER_LEN {
            let mut bad = h;
            bad[i] ^= 0x40;
            assert_eq!(decode_header(&bad, 10), None, "flipped byte {i} accepted");
        }
    }

    #[test]
    fn append_reopen_and_rotate() {
        let t = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
        let mut locs = Vec::new();
        {
            let (log, rec, found) = open(t.path(), 500);
            assert_eq!(rec, Recovery::default());
            assert!(found.is_empty());
            for b in &blocks {
                let loc = log.append_durable(&digest(b), b).unwrap();
                assert_eq!(log.read(loc).unwrap(), *b);
                locs.push(loc);
            }
            assert!(locs.last().unwrap().pack > 0, "rotated at the limit");
        }
        let (log, rec, found) = open(t.path(), 500);
        assert_eq!(rec.records, 20);
        assert_eq!(rec.truncated_bytes, 0);
        assert!(rec.damaged.is_empty());
        let want: Vec<([u8; 32], Location)> = blocks.iter().map(|b| digest(b)).zip(locs.iter().copied()).collect();
        assert_eq!(found, want);
        for (b, l) in blocks.iter().zip(&locs) {
            assert_eq!(log.read(*l).unwrap(), *b);
        }
    }

    #[test]
    fn concurrent_appends_all_durable() {
        let t = tempfile::tempdir().unwrap();
        let (log, _, _) = open(t.path(), DEFAULT_PACK_LIMIT);
        let log = Arc::new(log);
        let handles: Vec<_> = (0..8u32)
            .map(|th| {
                let log = log.clone();
                std::thread::spawn(move || {
                    (0..50u32)
                        .map(|i| {
                            let b = format!("thread {th} block {i}").into_bytes();
                            (b.clone(), log.append_durable(&digest(&b), &b).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        drop(log);
        let (log, rec, found) = open(t.path(), DEFAULT_PACK_LIMIT);
        assert_eq!(rec.records, 400);
        assert_eq!(found.len(), 400);
        for (b, l) in all {
            assert_eq!(log.read(l).unwrap(), b);
        }
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (b"first block".to_vec(), b"second block".to_vec());
        {
            let (log, _, _) = open(t.path(), DEFAULT_PACK_LIMIT);
            log.append_durable(&digest(&a), &a).unwrap();
            log.append_durable(&digest(&b), &b).unwrap();
        }
        let path = pack_path(t.path(), 0);
        let full = fs::read(&path).unwrap();
        let first_end = (HEADER_LEN + a.len()) as u64;
        // Every cut inside the second record, and a header followed by garbage.
        for cut in first_end + 1..full.len() as u64 {
            let mut torn = full[..cut as usize].to_vec();
            if cut == full.len() as u64 - 1 {
                torn.push(0xff); // full length, wrong last byte: the hash catches it
            }
            fs::write(&path, &torn).unwrap();
            let (log, rec, found) = open(t.path(), DEFAULT_PACK_LIMIT);
            assert_eq!(rec.records, 1, "cut at {cut}");
            assert_eq!(rec.truncated_bytes, torn.len() as u64 - first_end, "cut at {cut}");
            assert_eq!(found.len(), 1);
            assert_eq!(fs::metadata(&path).unwrap().len(), first_end, "repaired");
            // The next append lands right after the good prefix.
            let loc = log.append_durable(&digest(&b), &b).unwrap();
            assert_eq!(loc.offset, first_end + HEADER_LEN as u64);
            drop(log);
            let (_, rec, _) = open(t.path(), DEFAULT_PACK_LIMIT);
            assert_eq!((rec.records, rec.truncated_bytes), (2, 0));
        }
    }

    /// Bit rot in the middle of the newest pack is not a torn tail: the
    /// good records after it are acknowledged blocks and must survive.
    #[test]
    fn damage_in_the_middle_of_a_pack_loses_only_the_damaged_record() {
        let t = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 300 + i as usize]).collect();
        {
            let (log, _, _) = open(t.path(), DEFAULT_PACK_LIMIT);
            for b in &blocks {
                log.append_durable(&digest(b), b).unwrap();
            }
        }
        let path = pack_path(t.path(), 0);
        let mut bytes = fs::read(&path).unwrap();
        let size = bytes.len() as u64;
        let second = (HEADER_LEN + blocks[0].len()) as u64;
        bytes[second as usize + HEADER_LEN + 7] ^= 1; // the second record's data
        fs::write(&path, &bytes).unwrap();
        let (log, rec, found) = open(t.path(), DEFAULT_PACK_LIMIT);
        let record_2 = (HEADER_LEN + blocks[1].len()) as u64;
        assert_eq!(rec.damaged, vec![(0, second, record_2)]);
        assert_eq!((rec.records, rec.truncated_bytes), (4, 0));
        assert_eq!(fs::metadata(&path).unwrap().len(), size, "nothing cut");
        let got: Vec<[u8; 32]> = found.iter().map(|f| f.0).collect();
        let want: Vec<[u8; 32]> = [0, 2, 3, 4].iter().map(|&i| digest(&blocks[i])).collect();
        assert_eq!(got, want);
        for (d, l) in &found {
            assert_eq!(digest(&log.read(*l).unwrap()), *d);
        }
        // Appends go after the last good record.
        let loc = log.append_durable(&digest(b"new"), b"new").unwrap();
        assert_eq!(loc.offset, size + HEADER_LEN as u64);
    }

    #[test]
    fn damage_in_an_older_pack_is_reported_not_cut() {
        let t = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 200]).collect();
        {
            let (log, _, _) = open(t.path(), 500);
            for b in &blocks {
                log.append_durable(&digest(b), b).unwrap();
            }
        }
        let p0 = pack_path(t.path(), 0);
        let mut bytes = fs::read(&p0).unwrap();
        let len0 = bytes.len();
        bytes[HEADER_LEN + 5] ^= 1; // data of the first record
        fs::write(&p0, &bytes).unwrap();
        let (_, rec, found) = open(t.path(), 500);
        // Only the damaged record is lost; the pack's later records are read.
        assert_eq!(rec.damaged, vec![(0, 0, (HEADER_LEN + 200) as u64)]);
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(fs::metadata(&p0).unwrap().len(), len0 as u64, "left for inspection");
        assert_eq!(found.len(), 5);
    }
}
