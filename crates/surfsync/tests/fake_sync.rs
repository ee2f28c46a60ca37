//! The sync algorithm against in-process fake servers (a follower that
//! redirects, a leader, N block stores): fast, no cluster needed.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use triton_proto::surfstore::FileMetaData;
use triton_surfsync::chunk::block_hash;
use triton_surfsync::fake::{ring_owner, serve_fakes, Fakes};
use triton_surfsync::index::Index;
use triton_surfsync::{mapping, sync, Chunker, Chunking, ProgressMode, SyncError, SyncOptions};

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
        .filter(|n| n != "index.db")
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
    let bad_names = ["../escape", "sub/dir", "a,b", "..", "x..y", "index.db"];
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_wins_over_a_local_edit() {
    let fakes = serve_fakes(1).await.unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("f"), b"v1").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    // Both edit; a syncs first, so b's edit loses.
    std::fs::write(a.path().join("f"), b"a's edit").unwrap();
    std::fs::write(b.path().join("f"), b"b's edit").unwrap();
    sync(&opts(a.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    let s = sync(&opts(b.path(), &fakes, Chunking::Fixed, 16)).await.unwrap();
    assert_eq!((s.files_up, s.files_down), (0, 1));
    assert_eq!(std::fs::read(b.path().join("f")).unwrap(), b"a's edit");
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
