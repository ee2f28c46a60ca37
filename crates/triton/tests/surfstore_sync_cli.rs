//! `triton sync` and `triton surf mapping` as processes, against in-process
//! fake SurfStore servers (a redirecting follower, a leader, block stores):
//! exit codes, output, and the index a real run leaves behind.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use triton_surfsync::chunk::block_hash;
use triton_surfsync::fake::{serve_fakes, Fakes};

/// Runs the binary with `args`; the child is killed if the test ends first.
async fn triton(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_triton"))
        .args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("triton finished within 60 s")
        .expect("triton ran")
}

fn write_config(dir: &Path, fakes: &Fakes) -> String {
    let path = dir.join("config.json");
    std::fs::write(&path, fakes.config_json()).unwrap();
    path.to_str().unwrap().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_two_clients_through_the_binary() {
    let fakes = serve_fakes(2).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &fakes);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::write(a.join("hello.txt"), b"hello, surfstore\n").unwrap();
    std::fs::write(a.join("empty"), b"").unwrap();

    let out = triton(&["sync", "--config", &config, a.to_str().unwrap(), "4"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("sync: 2 up, 0 down, 0 deleted"),
        "{}",
        text(&out.stdout)
    );
    // Not a terminal: plain progress lines, no bar escape codes.
    assert!(text(&out.stderr).contains("upload:"), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains('\u{1b}'));

    let out = triton(&["sync", "--config", &config, b.to_str().unwrap(), "4"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0 up, 2 down"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(b.join("hello.txt")).unwrap(), b"hello, surfstore\n");
    assert_eq!(std::fs::read(b.join("empty")).unwrap(), b"");

    // The index is the course's table: one row per block, "-1" for empty.
    let rows = index_rows(&b.join("index.db"));
    assert!(rows.contains(&("empty".to_string(), 1, 0, "-1".to_string())));
    assert_eq!(rows.iter().filter(|r| r.0 == "hello.txt").count(), 5);
}

/// The rows of `indexes` (fileName, version, hashIndex, hashValue), read
/// back through the library's reader (plain SQL on the documented table).
fn index_rows(path: &Path) -> Vec<(String, i64, i64, String)> {
    let index = triton_surfsync::index::Index::open(path.parent().unwrap()).unwrap();
    let mut rows = Vec::new();
    for (name, entry) in index.load().unwrap() {
        for (i, h) in entry.hashes.iter().enumerate() {
            rows.push((name.clone(), entry.version as i64, i as i64, h.clone()));
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_64() {
    let fakes = serve_fakes(1).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &fakes);
    let dir = tmp.path().to_str().unwrap();
    let missing = tmp.path().join("missing");
    let cases: Vec<Vec<&str>> = vec![
        vec!["sync", "--config", &config, dir, "0"],
        vec!["sync", "--config", &config, dir, "lots"],
        vec!["sync", "--config", &config, dir, "99999999999"],
        vec!["sync", "--config", &config, missing.to_str().unwrap(), "4096"],
        vec!["sync", "--config", &config, "--chunking", "zigzag", dir, "4096"],
        vec!["sync", "--config", &config, "--chunking", "cdc", dir, "64"],
        vec!["sync", "--config", "/nonexistent/config.json", dir, "4096"],
        vec!["surf", "mapping", "--config", &config, dir, "-5"],
    ];
    for args in cases {
        let out = triton(&args).await;
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("usage error"), "{args:?}");
    }
    // clap's own syntax errors keep clap's exit code 2.
    let out = triton(&["sync", "--config", &config]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metadata_node_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dead: Vec<String> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            "{{\"RaftAddrs\": [\"{}\", \"{}\", \"{}\"], \"BlockAddrs\": []}}",
            dead[0], dead[1], dead[2]
        ),
    )
    .unwrap();
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    std::fs::write(base.join("f"), b"data").unwrap();
    let out = triton(&[
        "sync",
        "--config",
        config.to_str().unwrap(),
        "--deadline",
        "1",
        base.to_str().unwrap(),
        "4096",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no majority"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surf_mapping_prints_the_ring_placement() {
    let fakes = serve_fakes(3).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &fakes);
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    let content: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(base.join("data.bin"), &content).unwrap();
    let out = triton(&["surf", "mapping", "--config", &config, base.to_str().unwrap(), "1000"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 20);
    let mut ring: Vec<(String, String)> = fakes
        .meta
        .block_stores
        .iter()
        .map(|s| (block_hash(format!("blockstore{s}").as_bytes()), s.clone()))
        .collect();
    ring.sort();
    for (i, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[0], "data.bin");
        assert_eq!(fields[1], i.to_string());
        let hash = block_hash(&content[i * 1000..(i + 1) * 1000]);
        assert_eq!(fields[2], hash);
        let owner = &ring.iter().find(|(p, _)| *p > hash).unwrap_or(&ring[0]).1;
        assert_eq!(fields[3], owner, "block {i}");
    }
}
