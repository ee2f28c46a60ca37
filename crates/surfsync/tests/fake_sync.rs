//! The sync algorithm against in-process fake servers (a follower that
//! redirects, a leader, N block stores): fast, no cluster needed.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use triton_proto::surfstore::FileMetaData;
use triton_surfsync::chunk::block_hash;
use triton_surfsync::fake::{ring_owner, serve_fakes, Fakes};
use triton_surfsync::index::Index;
use triton_surfsync::rpc::{MetaClient, RpcError};
use triton_surfsync::{mapping, sync, Chunker, Chunking, ProgressMode, Summary, SyncError, SyncOptions};

fn opts(dir: &Path, fakes: &Fakes, mode: Chunking, block_size: usize) -> SyncOptions {
    SyncOptions {
        base_dir: dir.to_path_buf(),
        chunker: Chunker::new(mode, block_size).unwrap(),
        meta_addrs: fakes.meta_addrs.clone(),
        meta_dialer: triton_node::tls::Dialer::plaintext(),
        meta_deadline: Duration::from_secs(5),
        block_timeout: Duration::from_secs(5),
        progress: ProgressMode::Quiet,
        block_jobs: 8,
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        // The sync's own files: the index and its lock.
        .filter(|n| n != "index.db" && n != "index.db-lock")
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_client_gets_the_servers_version() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("f.txt"), b"from a").unwrap();
    std::fs::write(b.path().join("f.txt"), b"from b, later").unwrap();
    let s = sync(&opts(a.path(), &fakes, Chunking::Fixed, 4)).await.unwrap();
    assert_eq!(s.files_up, 1);
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 4)).await.unwrap();
    assert_eq!((s.files_up, s.files_down), (0, 1));
    assert_eq!(std::fs::read(b.path().join("f.txt")).unwrap(), b"from a");
    let index = Index::open(b.path()).unwrap().load().unwrap();
    assert_eq!(index["f.txt"].version, 1);
    assert_eq!(index["f.txt"].hashes.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_modify_delete_recreate_across_three_clients() {
    let fakes = serve_fakes(2).await.unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let o = |i: usize| opts(dirs[i].path(), &fakes, Chunking::Fixed, 1024);
    let version = || fakes.meta.files.lock().unwrap()["doc"].clone();

    std::fs::write(dirs[0].path().join("doc"), data(5000, 1)).unwrap();
    sync(&o(0)).await.unwrap();
    sync(&o(1)).await.unwrap();
    assert_eq!(std::fs::read(dirs[1].path().join("doc")).unwrap(), data(5000, 1));

    // Client 1 modifies; clients 2 and 0 see it.
    std::fs::write(dirs[1].path().join("doc"), data(3000, 2)).unwrap();
    assert_eq!(sync(&o(1)).await.unwrap().files_up, 1);
    assert_eq!(version().version, 2);
    sync(&o(2)).await.unwrap();
    sync(&o(0)).await.unwrap();
    for d in &dirs {
        assert_eq!(std::fs::read(d.path().join("doc")).unwrap(), data(3000, 2));
    }

    // Client 2 deletes: a tombstone, and the others delete their copies.
    std::fs::remove_file(dirs[2].path().join("doc")).unwrap();
    assert_eq!(sync(&o(2)).await.unwrap().files_up, 1);
    assert_eq!(version().block_hash_list, vec!["0"]);
    assert_eq!(version().version, 3);
    assert_eq!(sync(&o(0)).await.unwrap().files_deleted, 1);
    sync(&o(1)).await.unwrap();
    for d in &dirs {
        assert!(!d.path().join("doc").exists());
    }

    // Client 0 re-creates it: tombstone version + 1.
    std::fs::write(dirs[0].path().join("doc"), b"again").unwrap();
    sync(&o(0)).await.unwrap();
    assert_eq!(version().version, 4);
    sync(&o(1)).await.unwrap();
    sync(&o(2)).await.unwrap();
    for d in &dirs {
        assert_eq!(std::fs::read(d.path().join("doc")).unwrap(), b"again");
    }
    // Nothing left to do anywhere.
    for i in 0..3 {
        let s = sync(&o(i)).await.unwrap();
        assert_eq!((s.files_up, s.files_down, s.files_deleted, s.bytes_up), (0, 0, 0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_files_round_trip_as_minus_one() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("empty"), b"").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 4096)).await.unwrap();
    assert_eq!(fakes.meta.files.lock().unwrap()["empty"].block_hash_list, vec!["-1"]);
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 4096)).await.unwrap();
    assert_eq!(std::fs::read(b.path().join("empty")).unwrap(), b"");
    let index = Index::open(b.path()).unwrap().load().unwrap();
    assert_eq!(index["empty"].hashes, vec!["-1"]);
    // Emptying a file is a change too.
    std::fs::write(b.path().join("full"), b"x").unwrap();
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 4096)).await.unwrap();
    std::fs::write(b.path().join("full"), b"").unwrap();
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 4096)).await.unwrap();
    assert_eq!(fakes.meta.files.lock().unwrap()["full"].block_hash_list, vec!["-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_spans_many_blocks_and_all_stores() {
    let fakes = serve_fakes(3).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let content = data(1 << 20, 7);
    std::fs::write(a.path().join("big.bin"), &content).unwrap();
    // An identical copy: its blocks are deduplicated, not re-sent.
    std::fs::write(a.path().join("copy.bin"), &content).unwrap();
    let s = sync(&opts(a.path(), &fakes, Chunking::Fixed, 4096)).await.unwrap();
    assert_eq!(s.files_up, 2);
    assert_eq!(s.bytes_up, 1 << 20);
    assert_eq!(s.blocks_deduplicated, 256);
    // Ring positions come from the (random) ports, so how many blocks each
    // store gets varies; where each block went must follow the ring.
    let mut stores_used = 0;
    let mut total = 0;
    for (i, store) in fakes.stores.iter().enumerate() {
        let blocks = store.blocks.lock().unwrap();
        stores_used += usize::from(!blocks.is_empty());
        total += blocks.len();
        for hash in blocks.keys() {
            assert_eq!(
                ring_owner(&fakes.meta.block_stores, hash),
                Some(&fakes.meta.block_stores[i])
            );
        }
    }
    assert_eq!(total, 256);
    assert!(stores_used >= 2, "256 blocks spread over several stores");
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 4096)).await.unwrap();
    assert_eq!(s.files_down, 2);
    assert_eq!(std::fs::read(b.path().join("big.bin")).unwrap(), content);
    assert_eq!(std::fs::read(b.path().join("copy.bin")).unwrap(), content);
    assert_eq!(files_in(b.path()), vec!["big.bin", "copy.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metadata_node_answering_is_no_majority() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut o = opts(dir.path(), &fakes, Chunking::Fixed, 4096);
    o.meta_addrs = vec![dead_addr];
    o.meta_deadline = Duration::from_millis(800);
    match sync(&o).await {
        Err(SyncError::NoMajority(m)) => assert!(m.contains("no majority"), "{m}"),
        other => panic!("expected no majority, got {other:?}"),
    }
    // Nothing was recorded as synced.
    assert!(Index::open(dir.path()).unwrap().load().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_follows_the_ring_rule() {
    let fakes = serve_fakes(4).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), data(40_000, 3)).unwrap();
    std::fs::write(dir.path().join("b"), data(9_000, 4)).unwrap();
    let lines = mapping(&opts(dir.path(), &fakes, Chunking::Fixed, 1000)).await.unwrap();
    assert_eq!(lines.len(), 40 + 9);
    let content = data(40_000, 3);
    for l in &lines {
        if l.file == "a" {
            let start = l.block_index * 1000;
            assert_eq!(l.hash, block_hash(&content[start..start + 1000]));
        }
        // The ring rule, computed here from scratch.
        let mut ring: Vec<(String, &String)> = fakes
            .meta
            .block_stores
            .iter()
            .map(|s| (block_hash(format!("blockstore{s}").as_bytes()), s))
            .collect();
        ring.sort();
        let owner = ring.iter().find(|(p, _)| *p > l.hash).unwrap_or(&ring[0]).1;
        assert_eq!(&l.store, owner);
    }
    let stores: std::collections::HashSet<_> = lines.iter().map(|l| &l.store).collect();
    assert!(stores.len() >= 2, "49 blocks spread over several stores");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangerous_server_names_and_hashes_are_refused() {
    let fakes = serve_fakes(1).await.unwrap();
    let outer = tempfile::tempdir().unwrap();
    let base = outer.path().join("base");
    std::fs::create_dir(&base).unwrap();
    let good = block_hash(b"payload");
    fakes.stores[0]
        .blocks
        .lock()
        .unwrap()
        .insert(good.clone(), b"payload".to_vec());
    let bad_names = ["../escape", "sub/dir", "a,b", "..", "tab\there", "index.db"];
    {
        let mut files = fakes.meta.files.lock().unwrap();
        for name in bad_names.iter().chain(["ok"].iter()) {
            files.insert(
                name.to_string(),
                FileMetaData {
                    filename: name.to_string(),
                    version: 1,
                    block_hash_list: vec![good.clone()],
                },
            );
        }
        // A good key whose metadata names another file: the download would
        // write to the metadata's name.
        for (key, filename) in [("innocent", "../escape2"), ("plain", "other")] {
            files.insert(
                key.into(),
                FileMetaData {
                    filename: filename.into(),
                    version: 1,
                    block_hash_list: vec![good.clone()],
                },
            );
        }
        files.insert(
            "badhash".into(),
            FileMetaData {
                filename: "badhash".into(),
                version: 1,
                block_hash_list: vec!["../../etc/passwd".into()],
            },
        );
    }
    let s = sync(&opts(&base, &fakes, Chunking::Fixed, 4096)).await.unwrap();
    assert_eq!(s.files_down, 1);
    assert_eq!(s.warnings.len(), bad_names.len() + 3, "{:?}", s.warnings);
    assert_eq!(files_in(&base), vec!["ok"]);
    assert_eq!(std::fs::read(base.join("ok")).unwrap(), b"payload");
    assert!(!outer.path().join("escape").exists());
    assert!(!outer.path().join("escape2").exists());
    // index.db was not overwritten by the server's "index.db".
    assert!(Index::open(&base).unwrap().load().unwrap().contains_key("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_download_leaves_no_half_file() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let content = data(64 * 1024, 9);
    std::fs::write(a.path().join("f"), &content).unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 1024)).await.unwrap();
    // The old local version of the file in b must survive the failure intact.
    std::fs::write(b.path().join("f"), b"old local").unwrap();
    fakes.stores[0].fail_gets_after.store(10, Ordering::SeqCst);
    let err = sync(&opts(b.path(), &fakes, Chunking::Fixed, 1024)).await.unwrap_err();
    assert!(matches!(err, SyncError::Failed(_)), "{err:?}");
    assert_eq!(files_in(b.path()), vec!["f"], "no temp file left");
    assert_eq!(std::fs::read(b.path().join("f")).unwrap(), b"old local");
    // Once the store recovers, the sync completes.
    fakes.stores[0].fail_gets_after.store(-1, Ordering::SeqCst);
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 1024)).await.unwrap();
    assert_eq!(std::fs::read(b.path().join("f")).unwrap(), content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_reuploads_only_chunks_near_an_insertion() {
    let base_content = data(2 << 20, 11);
    let mut edited = base_content[..1 << 20].to_vec();
    edited.extend_from_slice(&data(100, 12));
    edited.extend_from_slice(&base_content[1 << 20..]);
    let mut bytes_up = Vec::new();
    for mode in [Chunking::Fixed, Chunking::Cdc] {
        // One service per mode: clients that share files must share a
        // chunking scheme (a file cut differently looks changed).
        let fakes = serve_fakes(2).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let name = format!("big-{}", mode.name());
        std::fs::write(dir.path().join(&name), &base_content).unwrap();
        sync(&opts(dir.path(), &fakes, mode, 8192)).await.unwrap();
        std::fs::write(dir.path().join(&name), &edited).unwrap();
        let s = sync(&opts(dir.path(), &fakes, mode, 8192)).await.unwrap();
        assert_eq!(s.files_up, 1);
        bytes_up.push(s.bytes_up);
        let other = tempfile::tempdir().unwrap();
        sync(&opts(other.path(), &fakes, mode, 8192)).await.unwrap();
        assert_eq!(std::fs::read(other.path().join(&name)).unwrap(), edited);
    }
    let (fixed, cdc) = (bytes_up[0], bytes_up[1]);
    assert!(
        fixed >= (1 << 20),
        "fixed re-sends everything after the insertion: {fixed}"
    );
    assert!(cdc <= 4 * 4 * 8192, "cdc re-sends a few chunks: {cdc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_without_changes_moves_nothing_and_sees_edits() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("f{i}")), data(3000, i)).unwrap();
    }
    let o = opts(dir.path(), &fakes, Chunking::Fixed, 1024);
    assert_eq!(sync(&o).await.unwrap().files_up, 50);
    let s = sync(&o).await.unwrap();
    assert_eq!((s.files_up, s.files_down, s.bytes_up, s.bytes_down), (0, 0, 0, 0));
    // Same size, new content: still detected.
    std::fs::write(dir.path().join("f7"), data(3000, 1000)).unwrap();
    let s = sync(&o).await.unwrap();
    assert_eq!(s.files_up, 1);
    assert_eq!(fakes.meta.files.lock().unwrap()["f7"].version, 2);
}

/// The stat cache must not be fooled by a replacement of the same size
/// whose mtime was set back (`cp -p`, `rsync -t`): the ctime still moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_size_replacement_with_the_old_mtime_is_seen() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::write(&path, data(3000, 1)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // Past the "racily clean" window, so the first sync caches the stat.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let o = opts(dir.path(), &fakes, Chunking::Fixed, 1024);
    assert_eq!(sync(&o).await.unwrap().files_up, 1);
    let s = sync(&o).await.unwrap();
    assert_eq!((s.files_up, s.bytes_up), (0, 0));
    // The copy: same size, new bytes, the old mtime.
    std::fs::write(&path, data(3000, 2)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let s = sync(&o).await.unwrap();
    assert_eq!(s.files_up, 1, "the replaced content was taken from the stat cache");
    assert_eq!(fakes.meta.files.lock().unwrap()["f"].version, 2);
}

/// Two syncs of one directory at once would delete each other's temporary
/// files; the second is refused while the first holds the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sync_of_the_same_directory_is_refused() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let o = opts(dir.path(), &fakes, Chunking::Fixed, 16);
    let running = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.path().join("index.db-lock"))
        .unwrap();
    running.try_lock().unwrap();
    let err = sync(&o).await.unwrap_err().to_string();
    assert!(err.contains("another sync"), "{err}");
    drop(running);
    assert_eq!(sync(&o).await.unwrap().files_up, 1);
}

/// The conflicted copies in `dir`: name and content.
fn conflicted_copies(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = files_in(dir)
        .into_iter()
        .filter(|n| n.contains(" (conflicted copy "))
        .map(|n| {
            let content = std::fs::read(dir.join(&n)).unwrap();
            (n, content)
        })
        .collect();
    out.sort();
    out
}

/// The server's version takes the name, but a local edit it replaces is
/// kept as a conflicted copy (with a warning naming both), which the next
/// sync uploads like any new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_wins_over_a_local_edit() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("f"), b"v1").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    // Both edit; a syncs first, so b's edit loses the name.
    std::fs::write(a.path().join("f"), b"a's edit").unwrap();
    std::fs::write(b.path().join("f"), b"b's edit").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!((s.files_up, s.files_down), (0, 1));
    assert_eq!(std::fs::read(b.path().join("f")).unwrap(), b"a's edit");
    let copies = conflicted_copies(b.path());
    assert_eq!(copies.len(), 1, "{copies:?}");
    let (copy, content) = &copies[0];
    assert!(copy.starts_with("f (conflicted copy "), "{copy}");
    assert_eq!(content, b"b's edit");
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(
        s.warnings[0].contains("\"f\"") && s.warnings[0].contains(copy.as_str()),
        "{:?}",
        s.warnings
    );
    // The next sync uploads the copy; the other client gets it.
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!((s.files_up, s.files_down), (1, 0));
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!(conflicted_copies(a.path()), copies);
}

/// A fresh client (or one that lost index.db) holding a file the server
/// has another version of: the download must not erase the only copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_synced_local_file_meeting_a_remote_version_is_kept() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("notes"), b"the cloud's notes").unwrap();
    std::fs::write(a.path().join("other"), b"CCCCdddd").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 4)).await.unwrap();
    // b's "notes" holds a block of "other" that the store lost: downloading
    // "other" (after "notes" was renamed) must read it from the copy.
    std::fs::write(b.path().join("notes"), b"BBBBCCCC").unwrap();
    fakes.stores[0].blocks.lock().unwrap().remove(&block_hash(b"CCCC"));
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 4)).await.unwrap();
    assert_eq!((s.files_up, s.files_down, s.blocks_deduplicated), (0, 2, 1));
    assert_eq!(std::fs::read(b.path().join("notes")).unwrap(), b"the cloud's notes");
    assert_eq!(std::fs::read(b.path().join("other")).unwrap(), b"CCCCdddd");
    let copies = conflicted_copies(b.path());
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].0.starts_with("notes (conflicted copy "), "{copies:?}");
    assert_eq!(copies[0].1, b"BBBBCCCC");
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    // Identical content is no conflict: a third client with the same file
    // just records it.
    fakes.stores[0]
        .blocks
        .lock()
        .unwrap()
        .insert(block_hash(b"CCCC"), b"CCCC".to_vec());
    let c = tempfile::tempdir().unwrap();
    std::fs::write(c.path().join("notes"), b"the cloud's notes").unwrap();
    let s = sync(&opts(c.path(), &fakes, Chunking::Fixed, 4)).await.unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert!(conflicted_copies(c.path()).is_empty());
}

/// A file edited here and deleted elsewhere: the tombstone takes the name,
/// the edit is kept as a conflicted copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_edit_meeting_a_remote_tombstone_is_kept() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("f"), b"v1").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    std::fs::remove_file(a.path().join("f")).unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    std::fs::write(b.path().join("f"), b"b's edit").unwrap();
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!((s.files_up, s.files_deleted), (0, 0));
    assert!(!b.path().join("f").exists());
    let copies = conflicted_copies(b.path());
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].1, b"b's edit");
    assert_eq!(Index::open(b.path()).unwrap().load().unwrap()["f"].hashes, vec!["0"]);
    assert_eq!(
        sync(&opts(b.path(), &fakes, Chunking::Fixed, 16))
            .await
            .unwrap()
            .files_up,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_update_falls_back_to_download() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Another client's version 1 lands between b's GetFileInfoMap and its
    // UpdateFile, so b's "version 1" is refused with -1.
    std::fs::write(a.path().join("f"), b"theirs").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    let theirs = fakes.meta.files.lock().unwrap().remove("f").unwrap();
    fakes.meta.sneak_in.lock().unwrap().push(theirs);
    std::fs::write(b.path().join("f"), b"mine").unwrap();
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!((s.files_up, s.files_down), (0, 1));
    assert_eq!(std::fs::read(b.path().join("f")).unwrap(), b"theirs");
    assert_eq!(Index::open(b.path()).unwrap().load().unwrap()["f"].version, 1);
    // b's own version is kept beside it.
    let copies = conflicted_copies(b.path());
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].1, b"mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_applied_by_an_attempt_whose_answer_was_lost_counts_as_ours() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"mine").unwrap();
    // The server already holds exactly the update this client is about to
    // send (a first attempt applied it, its answer was lost): the retry is
    // answered -1, and the client must not take it for another's win.
    fakes.meta.sneak_in.lock().unwrap().push(FileMetaData {
        filename: "f".into(),
        version: 1,
        block_hash_list: vec![block_hash(b"mine")],
    });
    let s = sync(&opts(dir.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!((s.files_up, s.files_down), (1, 0));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(Index::open(dir.path()).unwrap().load().unwrap()["f"].version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_basedir_is_a_usage_error() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir.path().join("nope"), &fakes, Chunking::Fixed, 16);
    assert!(matches!(sync(&o).await, Err(SyncError::Usage(_))));
}

/// Blocks go to Triton's block stores on `PutBlockStream` (one durable sync
/// per group) and to a course block store, which answers UNIMPLEMENTED, on
/// one `PutBlock` each; either way the other client gets the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_blocks_and_falls_back_to_put_block_for_course_stores() {
    for course_only in [false, true] {
        let fakes = serve_fakes(2).await.unwrap();
        for s in &fakes.stores {
            s.course_only.store(course_only, Ordering::SeqCst);
        }
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let content = data(1 << 20, 11);
        std::fs::write(a.path().join("big.bin"), &content).unwrap();
        let s = sync(&opts(a.path(), &fakes, Chunking::Fixed, 4096)).await.unwrap();
        assert_eq!((s.files_up, s.bytes_up), (1, 1 << 20));
        let puts: u64 = fakes
            .stores
            .iter()
            .map(|s| s.put_block_calls.load(Ordering::SeqCst))
            .sum();
        let streams: u64 = fakes
            .stores
            .iter()
            .map(|s| s.put_stream_calls.load(Ordering::SeqCst))
            .sum();
        if course_only {
            assert_eq!((puts, streams), (256, 0));
        } else {
            assert_eq!(puts, 0);
            assert!(streams >= 1);
        }
        let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 4096)).await.unwrap();
        assert_eq!(s.files_down, 1);
        assert_eq!(std::fs::read(b.path().join("big.bin")).unwrap(), content);
    }
}

/// A fresh client (or one that lost index.db) holding a file the cluster
/// once deleted: the old tombstone must not erase the only copy; the file is
/// a re-creation, uploaded as tombstone version + 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_tombstone_does_not_delete_an_unsynced_local_file() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let o = |d: &Path| opts(d, &fakes, Chunking::Fixed, 16);
    std::fs::write(a.path().join("report.txt"), b"old draft").unwrap();
    sync(&o(a.path())).await.unwrap();
    std::fs::remove_file(a.path().join("report.txt")).unwrap();
    sync(&o(a.path())).await.unwrap();
    assert_eq!(fakes.meta.files.lock().unwrap()["report.txt"].version, 2);

    std::fs::write(b.path().join("report.txt"), b"the only copy").unwrap();
    let s = sync(&o(b.path())).await.unwrap();
    assert_eq!((s.files_up, s.files_down, s.files_deleted), (1, 0, 0));
    assert_eq!(std::fs::read(b.path().join("report.txt")).unwrap(), b"the only copy");
    let meta = fakes.meta.files.lock().unwrap()["report.txt"].clone();
    assert_eq!(meta.version, 3);
    assert_eq!(meta.block_hash_list, vec![block_hash(b"the only copy")]);
    assert_eq!(Index::open(b.path()).unwrap().load().unwrap()["report.txt"].version, 3);

    // The re-creation reaches the client that deleted it and a new one.
    for d in [a.path(), c.path()] {
        sync(&o(d)).await.unwrap();
        assert_eq!(std::fs::read(d.join("report.txt")).unwrap(), b"the only copy");
    }
}

/// The same file, when the re-creation loses a race to another tombstone:
/// the refused update falls back to the server's version, which must not
/// delete the file either; the next sync uploads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_recreation_keeps_the_local_file() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tombstone = |version| FileMetaData {
        filename: "f".into(),
        version,
        block_hash_list: vec!["0".into()],
    };
    fakes.meta.files.lock().unwrap().insert("f".into(), tombstone(1));
    fakes.meta.sneak_in.lock().unwrap().push(tombstone(2));
    std::fs::write(dir.path().join("f"), b"mine").unwrap();
    let o = opts(dir.path(), &fakes, Chunking::Fixed, 16);
    let s = sync(&o).await.unwrap();
    assert_eq!((s.files_up, s.files_deleted), (0, 0));
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"mine");
    let s = sync(&o).await.unwrap();
    assert_eq!(s.files_up, 1);
    assert_eq!(fakes.meta.files.lock().unwrap()["f"].version, 3);
}

/// Two files share a block; the file it is read from changes after hashing,
/// so the store gets other bytes. Neither file's UpdateFile may name the
/// block (no store holds it); both are synced by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_update_names_a_block_that_was_not_stored() {
    for course_only in [false, true] {
        let fakes = serve_fakes(1).await.unwrap();
        fakes.stores[0].course_only.store(course_only, Ordering::SeqCst);
        let dir = tempfile::tempdir().unwrap();
        let shared = [b'x'; 16];
        // "a" sorts first, so its copy of the block is the one read.
        std::fs::write(dir.path().join("a"), shared).unwrap();
        std::fs::write(dir.path().join("b"), shared).unwrap();
        let a = dir.path().join("a");
        *fakes.stores[0].before_missing_blocks.lock().unwrap() = Some(Box::new(move || {
            std::fs::write(a, [b'y'; 16]).unwrap();
        }));
        let all_stored = |fakes: &Fakes| {
            let blocks = fakes.stores[0].blocks.lock().unwrap();
            let files = fakes.meta.files.lock().unwrap();
            for meta in files.values() {
                for h in &meta.block_hash_list {
                    assert!(blocks.contains_key(h), "{} names unstored block {h}", meta.filename);
                }
            }
            files.len()
        };
        let o = opts(dir.path(), &fakes, Chunking::Fixed, 16);
        let s = sync(&o).await.unwrap();
        assert_eq!(all_stored(&fakes), 0, "course_only={course_only}");
        assert_eq!(s.files_up, 0);
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(Index::open(dir.path()).unwrap().load().unwrap().is_empty());
        let s = sync(&o).await.unwrap();
        assert_eq!(s.files_up, 2);
        assert_eq!(all_stored(&fakes), 2);
    }
}

/// Remote entries that cannot be downloaded (a block no store holds, a name
/// taken by a local subdirectory, a name too long for the file system) are
/// skipped with a warning; every other file is still synced and recorded,
/// the sync reports the skipped ones, and a later sync picks them up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_remote_entry_does_not_stop_the_sync() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = block_hash(b"payload");
    let absent = block_hash(b"not stored yet");
    fakes.stores[0]
        .blocks
        .lock()
        .unwrap()
        .insert(good.clone(), b"payload".to_vec());
    let long = "x".repeat(300);
    {
        let mut files = fakes.meta.files.lock().unwrap();
        for (name, hash) in [("aaa-missing", &absent), ("sub", &good), ("zzz", &good), (&long, &good)] {
            files.insert(
                name.to_string(),
                FileMetaData {
                    filename: name.to_string(),
                    version: 1,
                    block_hash_list: vec![hash.clone()],
                },
            );
        }
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("mine"), b"local").unwrap();
    let o = opts(dir.path(), &fakes, Chunking::Fixed, 4096);
    let err = sync(&o).await.unwrap_err();
    let SyncError::Failed(m) = &err else { panic!("{err:?}") };
    assert!(
        m.contains("2 file(s)") && m.contains("aaa-missing") && m.contains("\"sub\""),
        "{m}"
    );
    assert_eq!(std::fs::read(dir.path().join("zzz")).unwrap(), b"payload");
    assert!(dir.path().join("sub").is_dir());
    assert!(!dir.path().join(&long).exists());
    let index = Index::open(dir.path()).unwrap().load().unwrap();
    let mut recorded: Vec<&String> = index.keys().collect();
    recorded.sort();
    assert_eq!(recorded, ["mine", "zzz"], "skipped files are not recorded as synced");
    assert_eq!(fakes.meta.files.lock().unwrap()["mine"].version, 1);

    // Once the block is stored and the directory is gone, they arrive.
    fakes.stores[0]
        .blocks
        .lock()
        .unwrap()
        .insert(absent, b"not stored yet".to_vec());
    std::fs::remove_dir(dir.path().join("sub")).unwrap();
    let s = sync(&o).await.unwrap();
    assert_eq!(s.files_down, 2);
    assert_eq!(
        std::fs::read(dir.path().join("aaa-missing")).unwrap(),
        b"not stored yet"
    );
    assert_eq!(std::fs::read(dir.path().join("sub")).unwrap(), b"payload");
}

/// An UpdateFile that fails after others succeeded: the accepted ones are
/// on the server and must be in the index, or the next sync would take them
/// for local edits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_updates_are_recorded_when_another_fails() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"first").unwrap();
    std::fs::write(dir.path().join("b"), b"second").unwrap();
    fakes.meta.fail_updates.lock().unwrap().insert("b".into());
    let o = opts(dir.path(), &fakes, Chunking::Fixed, 16);
    assert!(matches!(sync(&o).await, Err(SyncError::Failed(_))));
    let index = Index::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index["a"].version, 1);
    fakes.meta.fail_updates.lock().unwrap().clear();
    let s = sync(&o).await.unwrap();
    assert_eq!(s.files_up, 1, "only b is left to upload");
    assert_eq!(fakes.meta.files.lock().unwrap()["b"].version, 1);
}

/// A failed UpdateFile skips only its file: the downloads still run, and
/// the sync reports the skipped file at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_update_does_not_stop_the_downloads() {
    let fakes = serve_fakes(1).await.unwrap();
    let (other, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(other.path().join("remote"), b"from elsewhere").unwrap();
    sync(&opts(other.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    std::fs::write(dir.path().join("a"), b"first").unwrap();
    std::fs::write(dir.path().join("b"), b"second").unwrap();
    fakes.meta.fail_updates.lock().unwrap().insert("b".into());
    let o = opts(dir.path(), &fakes, Chunking::Fixed, 16);
    let err = sync(&o).await.unwrap_err();
    let SyncError::Failed(m) = &err else { panic!("{err:?}") };
    assert!(m.contains("1 file(s)") && m.contains("\"b\""), "{m}");
    assert_eq!(std::fs::read(dir.path().join("remote")).unwrap(), b"from elsewhere");
    let index = Index::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(index.keys().collect::<Vec<_>>(), ["a", "remote"]);
}

/// A file deleted between the scan and the upload of its blocks is skipped;
/// the other files are still uploaded and downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_source_skips_only_its_file() {
    for course_only in [false, true] {
        let fakes = serve_fakes(1).await.unwrap();
        fakes.stores[0].course_only.store(course_only, Ordering::SeqCst);
        let (other, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(other.path().join("remote"), b"from elsewhere").unwrap();
        sync(&opts(other.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
        std::fs::write(dir.path().join("gone"), data(100, 1)).unwrap();
        std::fs::write(dir.path().join("kept"), data(100, 2)).unwrap();
        let gone = dir.path().join("gone");
        *fakes.stores[0].before_missing_blocks.lock().unwrap() = Some(Box::new(move || {
            std::fs::remove_file(gone).unwrap();
        }));
        let o = opts(dir.path(), &fakes, Chunking::Fixed, 16);
        let err = sync(&o).await.unwrap_err();
        let SyncError::Failed(m) = &err else { panic!("{err:?}") };
        assert!(
            m.contains("1 file(s)") && m.contains("\"gone\""),
            "course_only={course_only}: {m}"
        );
        assert_eq!(std::fs::read(dir.path().join("remote")).unwrap(), b"from elsewhere");
        let files = fakes.meta.files.lock().unwrap().clone();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["kept", "remote"]);
    }
}

/// A MissingBlocks answer naming a block twice: sent once, no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_reported_missing_twice_is_sent_once() {
    let fakes = serve_fakes(1).await.unwrap();
    fakes.stores[0].duplicate_missing.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), data(48, 3)).unwrap();
    let s = sync(&opts(dir.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!((s.files_up, s.bytes_up, s.blocks_deduplicated), (1, 48, 0));
    assert_eq!(fakes.stores[0].blocks.lock().unwrap().len(), 3);
}

/// The file map is not held to the 64 MiB cap of block messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_map_over_64_mib_is_read() {
    let fakes = serve_fakes(1).await.unwrap();
    let hashes = vec![block_hash(b"x"); triton_surfsync::rpc::MAX_MESSAGE_BYTES / 64 + 1000];
    fakes.meta.files.lock().unwrap().insert(
        "huge".into(),
        FileMetaData {
            filename: "huge".into(),
            version: 1,
            block_hash_list: hashes,
        },
    );
    let client = MetaClient::new(fakes.meta_addrs.clone(), Duration::from_secs(20)).unwrap();
    let map = client.file_info_map().await.unwrap();
    assert_eq!(
        map["huge"].block_hash_list.len(),
        triton_surfsync::rpc::MAX_MESSAGE_BYTES / 64 + 1000
    );
}

/// A store that keeps reading, slowly, is not cut off by the block timeout
/// however long the whole stream takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_moving_block_stream_is_not_cut_off() {
    let fakes = serve_fakes(1).await.unwrap();
    fakes.stores[0].put_stream_delay_ms.store(250, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    // Eight 1 MiB blocks: one stream of 2 s, twice the timeout.
    std::fs::write(dir.path().join("f"), data(8 << 20, 4)).unwrap();
    let mut o = opts(dir.path(), &fakes, Chunking::Fixed, 1 << 20);
    o.block_timeout = Duration::from_secs(1);
    let s = sync(&o).await.unwrap();
    assert_eq!(s.files_up, 1);
    assert_eq!(fakes.stores[0].put_stream_calls.load(Ordering::SeqCst), 1);
}

/// FAILED_PRECONDITION that is not a not-leader answer ("no block stores")
/// is the server's answer, not a missing majority: reported at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precondition_without_a_leader_hint_fails_at_once() {
    let fakes = serve_fakes(0).await.unwrap();
    let client = MetaClient::new(fakes.meta_addrs.clone(), Duration::from_secs(5)).unwrap();
    let started = std::time::Instant::now();
    match client.block_store_map(&[block_hash(b"x")]).await {
        Err(RpcError::Failed(m)) => assert!(m.contains("no block stores"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

/// `triton surf mapping` takes no index lock, so it must leave the
/// temporary files of a sync that may be running alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_leaves_temporary_files_alone() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    let temp = dir.path().join(format!("{}1-2", triton_surfsync::sync::TEMP_PREFIX));
    std::fs::write(&temp, b"being downloaded").unwrap();
    let o = opts(dir.path(), &fakes, Chunking::Fixed, 16);
    assert_eq!(mapping(&o).await.unwrap().len(), 1);
    assert!(temp.exists());
    // A sync (holding the lock) does clean up.
    sync(&o).await.unwrap();
    assert!(!temp.exists());
}

/// Blocks that are not where the ring puts them (a store joined the ring
/// after they were uploaded; nothing moves them) are found on the other
/// stores instead of failing the download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_away_from_their_ring_owner_are_found_on_another_store() {
    let fakes = serve_fakes(2).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let content = data(64 * 1024, 9);
    std::fs::write(a.path().join("f"), &content).unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 1024)).await.unwrap();
    // Each store now holds the other's blocks.
    {
        let mut first = fakes.stores[0].blocks.lock().unwrap();
        let mut second = fakes.stores[1].blocks.lock().unwrap();
        assert!(
            !first.is_empty() && !second.is_empty(),
            "both stores should hold blocks"
        );
        std::mem::swap(&mut *first, &mut *second);
    }
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 1024)).await.unwrap();
    assert_eq!(s.files_down, 1);
    assert_eq!(std::fs::read(b.path().join("f")).unwrap(), content);
}

/// Runs `change` once, when `fakes` is next asked for the file map: after
/// the client's scan, before it writes or deletes anything.
fn after_the_scan(fakes: &Fakes, change: impl FnOnce() + Send + 'static) {
    *fakes.meta.before_file_info_map.lock().unwrap() = Some(Box::new(change));
}

/// Writes `bytes` to `dir`/f after the client's next scan ([`after_the_scan`]).
fn write_f_after_the_scan(fakes: &Fakes, dir: &Path, bytes: &'static [u8]) {
    let target = dir.join("f");
    after_the_scan(fakes, move || std::fs::write(target, bytes).unwrap());
}

/// The sync left `dir`/f as the user made it during the sync (`local`) and
/// said why: the file "`became`" meanwhile.
fn assert_f_left_alone(s: &Summary, dir: &Path, became: &str, local: &[u8]) {
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), local);
    let why = format!("\"f\" {became}");
    assert!(s.warnings.iter().any(|w| w.contains(&why)), "{:?}", s.warnings);
}

/// `dir` holds exactly one conflicted copy, with `local` in it.
fn assert_one_conflicted_copy(dir: &Path, local: &[u8]) {
    let copies = conflicted_copies(dir);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].1, local);
}

/// The reviewer's case: a file created under a name while the sync
/// downloads the server's file of that name is not replaced; the next sync
/// keeps it as a conflicted copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_created_during_the_sync_is_not_replaced_by_a_download() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("f"), data(4000, 1)).unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 1024)).await.unwrap();
    write_f_after_the_scan(&fakes, b.path(), b"written here meanwhile");
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 1024)).await.unwrap();
    assert_f_left_alone(&s, b.path(), "was created", b"written here meanwhile");
    assert_eq!(s.files_down, 0);
    assert_eq!(files_in(b.path()), ["f"], "no temporary file left");
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 1024)).await.unwrap();
    assert_eq!(s.files_down, 1);
    assert_eq!(std::fs::read(b.path().join("f")).unwrap(), data(4000, 1));
    assert_one_conflicted_copy(b.path(), b"written here meanwhile");
}

/// A synced file edited while the sync downloads a newer server version
/// keeps the edit; the next sync keeps it as a conflicted copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_edited_during_the_sync_is_not_replaced_by_a_download() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("f"), b"v1").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    std::fs::write(a.path().join("f"), b"v2 from a").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    write_f_after_the_scan(&fakes, b.path(), b"b's edit during the sync");
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_f_left_alone(&s, b.path(), "was changed", b"b's edit during the sync");
    assert_eq!(s.files_down, 0);
    assert_eq!(Index::open(b.path()).unwrap().load().unwrap()["f"].version, 1);
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!((s.files_up, s.files_down), (0, 1));
    assert_eq!(std::fs::read(b.path().join("f")).unwrap(), b"v2 from a");
    assert_one_conflicted_copy(b.path(), b"b's edit during the sync");
}

/// A synced file edited while the sync applies a remote deletion is not
/// deleted; the next sync keeps the edit as a conflicted copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_edited_during_the_sync_is_not_deleted_by_a_tombstone() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("f"), b"v1").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    std::fs::remove_file(a.path().join("f")).unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    write_f_after_the_scan(&fakes, b.path(), b"b's edit during the sync");
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!(s.files_deleted, 0);
    assert_f_left_alone(&s, b.path(), "was changed", b"b's edit during the sync");
    let index = Index::open(b.path()).unwrap().load().unwrap();
    assert_eq!((index["f"].hashes.len(), index["f"].version), (1, 1));
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert!(!b.path().join("f").exists());
    assert_one_conflicted_copy(b.path(), b"b's edit during the sync");
}

/// Only names the sync itself gives its temporary files are cleaned up: a
/// user's file that merely shares the prefix is warned about, not deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_files_sharing_the_temp_prefix_are_not_deleted() {
    let fakes = serve_fakes(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = triton_surfsync::sync::TEMP_PREFIX;
    let stale = dir.path().join(format!("{prefix}12-3"));
    std::fs::write(&stale, b"half a download").unwrap();
    let users = [format!("{prefix}notes.txt"), format!("{prefix}12-3.bak")];
    for name in &users {
        std::fs::write(dir.path().join(name), b"the user's").unwrap();
    }
    let s = sync(&opts(dir.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert!(!stale.exists());
    for name in &users {
        assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), b"the user's", "{name}");
        assert!(
            s.warnings.iter().any(|w| w.contains(name.as_str())),
            "{name}: {:?}",
            s.warnings
        );
    }
    assert!(
        fakes.meta.files.lock().unwrap().is_empty(),
        "nothing with the prefix is uploaded"
    );
}

/// ".." inside a name is no path component: such files sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_double_dots_inside_sync() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for name in ["report..v2.txt", "...", "a.."] {
        std::fs::write(a.path().join(name), name.as_bytes()).unwrap();
    }
    let s = sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!(s.files_up, 3, "{:?}", s.warnings);
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    for name in ["report..v2.txt", "...", "a.."] {
        assert_eq!(std::fs::read(b.path().join(name)).unwrap(), name.as_bytes());
    }
}
