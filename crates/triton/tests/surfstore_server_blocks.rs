//! SurfStore's block stores and metadata rules on real processes: the
//! `BlockStore` RPCs and their input checks, durability across kill -9,
//! `UpdateFile`'s version rules, leader redirects, ring placement reported
//! by `GetBlockStoreMap`, and refusing to answer without a majority.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{Cluster, ClusterOptions};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use triton_proto::surfstore::block_store_client::BlockStoreClient;
use triton_proto::surfstore::meta_store_client::MetaStoreClient;
use triton_proto::surfstore::raft_surfstore_client::RaftSurfstoreClient;
use triton_proto::surfstore::{Block, BlockHash, BlockHashes, FileMetaData, UnreachableFromServers};
use triton_surfstore::hash::block_hash;

fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .timeout(Duration::from_secs(20))
        .connect_lazy()
}

/// A block store client once the process answers.
async fn block_client(addr: &str) -> BlockStoreClient<Channel> {
    let mut c = BlockStoreClient::new(channel(addr)).max_decoding_message_size(64 << 20);
    let start = Instant::now();
    while c.get_block_hashes(()).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "block store {addr} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c
}

fn meta(name: &str, version: i32, hashes: &[&str]) -> FileMetaData {
    FileMetaData {
        filename: name.into(),
        version,
        block_hash_list: hashes.iter().map(|h| h.to_string()).collect(),
    }
}

fn hashes(v: &[&str]) -> BlockHashes {
    BlockHashes {
        hashes: v.iter().map(|h| h.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_store_rpcs_validation_and_durability() {
    let mut c = Cluster::start(ClusterOptions {
        nodes: 1,
        block_stores: 1,
        ..Default::default()
    });
    let addr = c.block_addrs[0].clone();
    let mut bs = block_client(&addr).await;
    assert!(bs.get_block_hashes(()).await.unwrap().into_inner().hashes.is_empty());

    let data = b"hello, surfstore".to_vec();
    let h = block_hash(&data);
    let ok = bs
        .put_block(Block {
            block_data: data.clone(),
            block_size: data.len() as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.flag);
    let empty = block_hash(b"");
    assert!(
        bs.put_block(Block {
            block_data: vec![],
            block_size: 0
        })
        .await
        .unwrap()
        .into_inner()
        .flag
    );
    let got = bs.get_block(BlockHash { hash: h.clone() }).await.unwrap().into_inner();
    assert_eq!(got.block_data, data);
    assert_eq!(got.block_size, data.len() as i32);

    let absent = block_hash(b"never stored");
    let has = bs
        .has_blocks(hashes(&[&absent, &h, &empty]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(has.hashes, vec![h.clone(), empty.clone()]);
    let missing = bs
        .missing_blocks(hashes(&[&absent, &h, &empty]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(missing.hashes, vec![absent.clone()]);
    let mut all = vec![h.clone(), empty.clone()];
    all.sort();
    assert_eq!(bs.get_block_hashes(()).await.unwrap().into_inner().hashes, all);

    // Missing block: NOT_FOUND. Not a hash: INVALID_ARGUMENT, never a path.
    let e = bs.get_block(BlockHash { hash: absent.clone() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    for bad in ["../../etc/passwd", "", "0", &h.to_uppercase(), &h[..63]] {
        let e = bs.get_block(BlockHash { hash: bad.to_string() }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "GetBlock {bad:?}");
        let e = bs.has_blocks(hashes(&[&h, bad])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "HasBlocks {bad:?}");
        let e = bs.missing_blocks(hashes(&[bad])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "MissingBlocks {bad:?}");
    }
    // A declared size that disagrees with the data.
    let e = bs
        .put_block(Block {
            block_data: b"abc".to_vec(),
            block_size: 4,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Over the 16 MiB default limit.
    let big = vec![7u8; (16 << 20) + 1];
    let e = bs
        .put_block(Block {
            block_data: big,
            block_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");

    // Acknowledged blocks survive kill -9.
    c.kill9_block_store(0);
    c.spawn_block_store(0);
    let mut bs = block_client(&addr).await;
    assert_eq!(bs.get_block_hashes(()).await.unwrap().into_inner().hashes, all);
    let got = bs.get_block(BlockHash { hash: h.clone() }).await.unwrap().into_inner();
    assert_eq!(got.block_data, data);
    assert!(
        c.block_dir(0).join("packs").join("00000000.pack").is_file(),
        "blocks are appended to pack files"
    );
}

/// The ring rule, written out: first position greater than the hash, wrapping.
fn reference_server(addrs: &[String], hash: &str) -> String {
    let mut positions: Vec<(String, &String)> = addrs
        .iter()
        .map(|a| (block_hash(format!("blockstore{a}").as_bytes()), a))
        .collect();
    positions.sort();
    positions
        .iter()
        .find(|(p, _)| p.as_str() > hash)
        .unwrap_or(&positions[0])
        .1
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_version_rules_redirects_ring_and_majority() {
    let mut c = Cluster::start(ClusterOptions {
        nodes: 3,
        block_stores: 3,
        ..Default::default()
    });
    let leader = c.wait_leader().await;
    let mut m = MetaStoreClient::new(channel(&c.addrs[leader]));
    let h1 = block_hash(b"one");
    let h2 = block_hash(b"two");

    // Version rules: new file is 1, then exactly current + 1; else -1.
    let v =
        |r: Result<tonic::Response<triton_proto::surfstore::Version>, tonic::Status>| r.unwrap().into_inner().version;
    assert_eq!(
        v(m.update_file(meta("doc.txt", 2, &[&h1])).await),
        -1,
        "new file must be version 1"
    );
    assert_eq!(v(m.update_file(meta("doc.txt", 1, &[&h1])).await), 1);
    assert_eq!(v(m.update_file(meta("doc.txt", 1, &[&h2])).await), -1, "stale version");
    assert_eq!(
        v(m.update_file(meta("doc.txt", 3, &[&h2])).await),
        -1,
        "skipped version"
    );
    assert_eq!(v(m.update_file(meta("doc.txt", 2, &[&h1, &h2])).await), 2);
    // Delete = tombstone ["0"], version bumped; re-create = tombstone + 1.
    assert_eq!(v(m.update_file(meta("doc.txt", 3, &["0"])).await), 3);
    assert_eq!(v(m.update_file(meta("doc.txt", 1, &[&h1])).await), -1);
    assert_eq!(v(m.update_file(meta("doc.txt", 4, &[&h2])).await), 4);
    // Empty file.
    assert_eq!(v(m.update_file(meta("empty", 1, &["-1"])).await), 1);
    let map = m.get_file_info_map(()).await.unwrap().into_inner().file_info_map;
    assert_eq!(map.len(), 2);
    assert_eq!(map["doc.txt"], meta("doc.txt", 4, &[&h2]));
    assert_eq!(map["empty"], meta("empty", 1, &["-1"]));

    // Names that could escape a client's base directory are refused.
    for bad in ["", ".", "..", "a/b", "../x", "a,b"] {
        let e = m.update_file(meta(bad, 1, &["-1"])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}");
    }

    // A follower redirects writes to the leader by address.
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let mut f = MetaStoreClient::new(channel(&c.addrs[follower]));
    let e = f.update_file(meta("x", 1, &["-1"])).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let named = e
        .metadata()
        .get("triton-leader")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    // The follower may not know the leader yet right after an election.
    if let Some(named) = named.filter(|n| !n.is_empty()) {
        assert_eq!(named, c.addrs[leader]);
    }
    // Followers still answer linearizable reads.
    assert_eq!(
        f.get_file_info_map(()).await.unwrap().into_inner().file_info_map.len(),
        2
    );

    // Block stores and ring placement.
    let addrs = m
        .get_block_store_addrs(())
        .await
        .unwrap()
        .into_inner()
        .block_store_addrs;
    assert_eq!(addrs, c.block_addrs);
    let many: Vec<String> = (0..300u32).map(|i| block_hash(&i.to_le_bytes())).collect();
    let placed = m
        .get_block_store_map(BlockHashes { hashes: many.clone() })
        .await
        .unwrap()
        .into_inner()
        .block_store_map;
    let mut seen = 0;
    for (server, hs) in &placed {
        for h in &hs.hashes {
            assert_eq!(*server, reference_server(&c.block_addrs, h), "block {h}");
            seen += 1;
        }
    }
    assert_eq!(seen, many.len());
    assert!(placed.len() > 1, "300 blocks spread over several stores");
    // Wrap-around: a hash above every position goes to the lowest position.
    let top = "f".repeat(64);
    let placed = m
        .get_block_store_map(hashes(&[&top]))
        .await
        .unwrap()
        .into_inner()
        .block_store_map;
    assert_eq!(placed.keys().next().unwrap(), &reference_server(&c.block_addrs, &top));

    // Test hooks are refused unless the config enables them.
    let mut r = RaftSurfstoreClient::new(channel(&c.addrs[leader]));
    assert_eq!(r.crash(()).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(r.is_crashed(()).await.unwrap_err().code(), Code::PermissionDenied);
    let e = r
        .make_server_unreachable_from(UnreachableFromServers { server_ids: vec![1] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        r.get_internal_state(()).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Without a majority, metadata calls fail instead of answering stale data
    // (once the leader's lease is over: until then no other leader can
    // exist, so answering is still linearizable; 8 ticks of 20 ms here).
    for i in (0..3).filter(|&i| i != leader) {
        c.kill9(i);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = m.get_file_info_map(()).await;
    assert!(r.is_err(), "answered without a majority: {r:?}");
    let r = m.update_file(meta("late", 1, &["-1"])).await;
    assert!(r.is_err(), "updated without a majority: {r:?}");
    let r = m.get_block_store_addrs(()).await;
    assert!(r.is_err(), "answered without a majority: {r:?}");
}

/// A block of `len` bytes that no other (task, i) produces.
fn unique_block(task: u32, i: u32, len: usize) -> Vec<u8> {
    let mut x = (u64::from(task) << 32 | u64::from(i)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// kill -9 while PutBlocks and PutBlockStreams are in flight (group commit
/// batches of both): every block acknowledged before the kill is served
/// after a restart, hashing to its name; a torn record left at the end of
/// the pack is cut at restart and new puts continue after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_batch_keeps_every_acknowledged_block() {
    use std::sync::{Arc, Mutex};
    /// (hash, contents) of every block whose put was acknowledged.
    type Acked = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let mut c = Cluster::start(ClusterOptions {
        nodes: 1,
        block_stores: 1,
        ..Default::default()
    });
    let addr = c.block_addrs[0].clone();
    let client = block_client(&addr).await;
    let acked: Acked = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let (mut bs, acked) = (client.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let data = unique_block(task, i, 8192);
                let put = Block {
                    block_data: data.clone(),
                    block_size: 0,
                };
                if bs.put_block(put).await.is_err() {
                    return;
                }
                acked.lock().unwrap().push((block_hash(&data), data));
            }
        }));
    }
    for task in 100..102u32 {
        let (mut bs, acked) = (client.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0.. {
                let blocks: Vec<Vec<u8>> = (0..16).map(|i| unique_block(task, round * 16 + i, 20_000)).collect();
                let stream = tonic::codegen::tokio_stream::iter(blocks.clone().into_iter().map(|b| Block {
                    block_data: b,
                    block_size: 0,
                }));
                let Ok(reply) = bs.put_block_stream(stream).await else {
                    return;
                };
                let hashes = reply.into_inner().hashes;
                let want: Vec<String> = blocks.iter().map(|b| block_hash(b)).collect();
                assert_eq!(hashes, want, "the reply lists each block's hash in order");
                acked.lock().unwrap().extend(want.into_iter().zip(blocks));
            }
        }));
    }
    let start = Instant::now();
    while acked.lock().unwrap().len() < 300 {
        assert!(start.elapsed() < Duration::from_secs(60), "puts did not progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.kill9_block_store(0);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    // The tail a kill during write(2) could leave: half a record.
    let pack = c.block_dir(0).join("packs").join("00000000.pack");
    let mut f = std::fs::OpenOptions::new().append(true).open(&pack).unwrap();
    std::io::Write::write_all(&mut f, &triton_surfstore::pack::encode_header(&[9; 32], 5000)[..40]).unwrap();
    std::io::Write::write_all(&mut f, &[1; 700]).unwrap();
    drop(f);

    c.spawn_block_store(0);
    let mut bs = block_client(&addr).await;
    for (hash, data) in &acked {
        let got = bs
            .get_block(BlockHash { hash: hash.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(block_hash(&got.block_data), *hash);
        assert_eq!(&got.block_data, data);
    }
    let log = std::fs::read_to_string(c.block_dir(0).with_file_name("blocks-0.log")).unwrap();
    assert!(log.contains("torn record"), "the repair is logged: {log}");
    let after = unique_block(7, 7, 100);
    bs.put_block(Block {
        block_data: after.clone(),
        block_size: 0,
    })
    .await
    .unwrap();
    c.kill9_block_store(0);
    c.spawn_block_store(0);
    let mut bs = block_client(&addr).await;
    let got = bs
        .get_block(BlockHash {
            hash: block_hash(&after),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.block_data, after, "appends after the repair survive too");
}
