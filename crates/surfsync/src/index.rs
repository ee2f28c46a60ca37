//! The local index, `BASEDIR/index.db`: what this client last synced.
//!
//! The table `indexes(fileName TEXT, version INT, hashIndex INT, hashValue
//! TEXT)` is the course's format, one row per block (`hashIndex` from 0), so
//! other clients and graders can read it. An empty file is one row `"-1"`, a
//! deleted file one row `"0"`. A second table, `triton_stat`, remembers each
//! file's size and modification time when it was hashed, so that a re-sync
//! can skip re-hashing files that did not change (like rsync's quick check);
//! it is only a cache and is ignored when the chunking or block size differ.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection};

/// The index file's name in BASEDIR (never synced itself).
pub const INDEX_FILE: &str = "index.db";

/// What the index says about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The version last synced.
    pub version: i32,
    /// Its hash list (`["-1"]` empty, `["0"]` deleted).
    pub hashes: Vec<String>,
}

/// A file's identity on disk when it was last hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the epoch: set by every write
    /// and rename, and unlike mtime not settable by `cp -p` or `rsync -t`.
    pub ctime_ns: i64,
    /// Inode number: a file replaced by another (a rename over it) differs.
    pub inode: u64,
}

impl FileStat {
    /// The later of the two times: a file is "racily clean" if either is recent.
    pub fn changed_ns(&self) -> i64 {
        self.mtime_ns.max(self.ctime_ns)
    }
}

/// An open index.
pub struct Index {
    conn: Connection,
}

/// Any failure reading or writing the index.
pub type IndexResult<T> = Result<T, rusqlite::Error>;

impl Index {
    /// Opens (creating if needed) `dir/index.db`.
    pub fn open(dir: &Path) -> IndexResult<Index> {
        let conn = Connection::open(dir.join(INDEX_FILE))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS indexes (
                 fileName TEXT, version INT, hashIndex INT, hashValue TEXT);
             DROP TABLE IF EXISTS triton_stat;
             CREATE TABLE IF NOT EXISTS triton_stat_v2 (
                 fileName TEXT PRIMARY KEY, size INT, mtimeNs INT, ctimeNs INT, inode INT,
                 chunking TEXT, blockSize INT);",
        )?;
        Ok(Index { conn })
    }

    /// Every file in the index, hash lists in `hashIndex` order.
    pub fn load(&self) -> IndexResult<BTreeMap<String, IndexEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT fileName, version, hashIndex, hashValue FROM indexes
             ORDER BY fileName, hashIndex",
        )?;
        let mut rows = stmt.query([])?;
        let mut out: BTreeMap<String, IndexEntry> = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            let version: i64 = row.get(1)?;
            let hash: String = row.get(3)?;
            let entry = out.entry(name).or_insert_with(|| IndexEntry {
                version: version.clamp(0, i32::MAX as i64) as i32,
                hashes: Vec::new(),
            });
            entry.hashes.push(hash);
        }
        Ok(out)
    }

    /// The cached stats of files hashed with `chunking`/`block_size`.
    pub fn load_stats(&self, chunking: &str, block_size: usize) -> IndexResult<BTreeMap<String, FileStat>> {
        let mut stmt = self.conn.prepare(
            "SELECT fileName, size, mtimeNs, ctimeNs, inode FROM triton_stat_v2
             WHERE chunking = ?1 AND blockSize = ?2",
        )?;
        let rows = stmt.query_map(params![chunking, block_size as i64], |row| {
            let size: i64 = row.get(1)?;
            Ok((
                row.get::<_, String>(0)?,
                FileStat {
                    size: size.max(0) as u64,
                    mtime_ns: row.get(2)?,
                    ctime_ns: row.get(3)?,
                    // Stored as SQLite's signed integer, bit for bit.
                    inode: row.get::<_, i64>(4)? as u64,
                },
            ))
        })?;
        rows.collect()
    }

    /// Applies a batch of changes in one transaction: `entries` replace (or,
    /// when `None`, remove) files' rows; `stats` replace (or remove) cached
    /// stats. A crash leaves the old or the new index, never a mix.
    pub fn apply(
        &mut self,
        entries: &BTreeMap<String, Option<IndexEntry>>,
        stats: &BTreeMap<String, Option<FileStat>>,
        chunking: &str,
        block_size: usize,
    ) -> IndexResult<()> {
        if entries.is_empty() && stats.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut delete = tx.prepare("DELETE FROM indexes WHERE fileName = ?1")?;
            let mut insert = tx.prepare(
                "INSERT INTO indexes (fileName, version, hashIndex, hashValue)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (name, entry) in entries {
                delete.execute([name])?;
                if let Some(entry) = entry {
                    for (i, hash) in entry.hashes.iter().enumerate() {
                        insert.execute(params![name, entry.version, i as i64, hash])?;
                    }
                }
            }
            let mut delete_stat = tx.prepare("DELETE FROM triton_stat_v2 WHERE fileName = ?1")?;
            let mut insert_stat = tx.prepare(
                "INSERT INTO triton_stat_v2 (fileName, size, mtimeNs, ctimeNs, inode, chunking, blockSize)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (name, stat) in stats {
                delete_stat.execute([name])?;
                if let Some(stat) = stat {
                    insert_stat.execute(params![
                        name,
                        stat.size.min(i64::MAX as u64) as i64,
                        stat.mtime_ns,
                        stat.ctime_ns,
                        stat.inode as i64,
                        chunking,
                        block_size as i64
                    ])?;
                }
            }
        }
        tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: i32, hashes: &[&str]) -> Option<IndexEntry> {
        Some(IndexEntry {
            version,
            hashes: hashes.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn round_trip_and_course_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::open(dir.path()).unwrap();
        let mut changes = BTreeMap::new();
        changes.insert("a.txt".to_string(), entry(2, &["h0", "h1", "h2"]));
        changes.insert("empty".to_string(), entry(1, &["-1"]));
        changes.insert("gone".to_string(), entry(3, &["0"]));
        index.apply(&changes, &BTreeMap::new(), "fixed", 4096).unwrap();
        let loaded = index.load().unwrap();
        assert_eq!(loaded["a.txt"], entry(2, &["h0", "h1", "h2"]).unwrap());
        assert_eq!(loaded["empty"].hashes, vec!["-1"]);
        assert_eq!(loaded.len(), 3);

        // The course's reader: plain SQL on the documented table.
        let conn = Connection::open(dir.path().join(INDEX_FILE)).unwrap();
        let rows: Vec<(String, i64, i64, String)> = conn
            .prepare(
                "SELECT fileName, version, hashIndex, hashValue FROM indexes WHERE fileName='a.txt' ORDER BY hashIndex",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows[2], ("a.txt".to_string(), 2, 2, "h2".to_string()));

        // Replace and remove.
        let mut changes = BTreeMap::new();
        changes.insert("a.txt".to_string(), entry(3, &["x"]));
        changes.insert("gone".to_string(), None);
        index.apply(&changes, &BTreeMap::new(), "fixed", 4096).unwrap();
        let loaded = index.load().unwrap();
        assert_eq!(loaded["a.txt"].hashes, vec!["x"]);
        assert!(!loaded.contains_key("gone"));
    }

    #[test]
    fn stats_are_keyed_by_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::open(dir.path()).unwrap();
        let mut stats = BTreeMap::new();
        let stat = FileStat {
            size: 10,
            mtime_ns: 5,
            ctime_ns: 6,
            inode: u64::MAX,
        };
        stats.insert("f".to_string(), Some(stat));
        index.apply(&BTreeMap::new(), &stats, "fixed", 4096).unwrap();
        assert_eq!(index.load_stats("fixed", 4096).unwrap()["f"], stat);
        assert!(index.load_stats("fixed", 1024).unwrap().is_empty());
        assert!(index.load_stats("cdc", 4096).unwrap().is_empty());
    }

    #[test]
    fn garbage_index_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(INDEX_FILE), b"not a database at all, sorry").unwrap();
        assert!(Index::open(dir.path()).and_then(|i| i.load()).is_err());
    }
}
