//! The metadata face on a real single-node cluster in the test's process:
//! entry and request size limits, and the gate on `GetInternalState`.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Code;
use triton_config::{ClusterConfig, NodeConfig};
use triton_node::auth::with_token;
use triton_node::server::{serve, Face, ServerOptions};
use triton_proto::surfstore::raft_surfstore_client::RaftSurfstoreClient;
use triton_proto::surfstore::FileMetaData;
use triton_surfstore::hash::block_hash;
use triton_surfstore::meta::SurfstoreFace;

const TOKEN: &str = "test-token-5d1e";

/// A loopback port free when asked.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One metadata node in the test's runtime, with its data directory.
struct Node {
    config: ClusterConfig,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: tempfile::TempDir,
}

impl Node {
    /// Stops the node and waits for its driver before the directory goes
    /// (a driver whose WAL vanished would end the test process).
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("serve panicked").expect("serve failed");
        drop(self.dir);
    }

    /// `()` with the admin token.
    fn token(&self) -> tonic::Request<()> {
        with_token((), &self.config)
    }
}

fn config(test_rpcs: bool) -> ClusterConfig {
    let config = ClusterConfig {
        nodes: vec![NodeConfig {
            id: 0,
            addr: format!("127.0.0.1:{}", free_port()),
            file_addr: None,
            http_addr: None,
        }],
        block_stores: vec![format!("127.0.0.1:{}", free_port())],
        enable_test_rpcs: test_rpcs,
        admin_token: Some(TOKEN.into()),
        ..ClusterConfig::default()
    };
    config.validate().expect("a valid config");
    config
}

async fn start(config: ClusterConfig) -> (Node, RaftSurfstoreClient<Channel>) {
    let dir = tempfile::tempdir().unwrap();
    let addr = config.nodes[0].addr.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = ServerOptions {
        config: config.clone(),
        id: 0,
        data_dir: dir.path().join("node-0"),
        join: None,
        new_cluster: true,
    };
    let faces: Vec<Box<dyn Face>> = vec![Box::new(SurfstoreFace)];
    let task = tokio::spawn(serve(opts, faces, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let mut client = RaftSurfstoreClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    // Up once a metadata read passes (it needs a leader).
    let start = Instant::now();
    while let Err(e) = client.get_file_info_map(()).await {
        assert!(start.elapsed() < Duration::from_secs(20), "node not serving: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let node = Node {
        config,
        stop,
        task,
        dir,
    };
    (node, client)
}

/// `name` with `n` block hashes: `name.len() + 64 * n` bytes in the store.
fn entry(name: &str, version: i32, n: usize) -> FileMetaData {
    FileMetaData {
        filename: name.into(),
        version,
        block_hash_list: vec![block_hash(b"block"); n],
    }
}

/// A file entry is held to what one replicated command can carry
/// (`max_message_bytes`, here 4 MiB), not to `max_value_bytes` (1 MiB, for
/// KV values, which would cap a file at 64 MB with 4 kB blocks): an entry
/// of 2 MiB of hashes (a 128 MB file) is stored; one over the command
/// limit is refused before it reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_entries_are_limited_by_the_command_size_not_the_kv_value_size() {
    let mut config = config(true);
    config.max_message_bytes = 4 << 20;
    assert!(config.max_value_bytes < 2 << 20);
    let (node, mut client) = start(config).await;
    let big = entry("big", 1, (2 << 20) / 64);
    let v = client.update_file(big).await.expect("a 128 MB file's entry is stored");
    assert_eq!(v.into_inner().version, 1);
    let e = client.update_file(entry("huge", 1, (5 << 20) / 64)).await.unwrap_err();
    assert!(
        matches!(
            e.code(),
            Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange
        ),
        "{e:?}"
    );
    let map = client.get_file_info_map(()).await.unwrap().into_inner().file_info_map;
    assert!(!map.contains_key("huge"), "the refused entry was stored");
    let state = client.get_internal_state(node.token()).await.unwrap().into_inner();
    assert_eq!(state.log.len(), 1, "only the stored entry is in the log");
    node.stop().await;
}

/// GetInternalState is a test hook like the others: refused unless test
/// RPCs are enabled and the admin token (when set) is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_internal_state_needs_test_rpcs_and_the_token() {
    let (node, mut client) = start(config(false)).await;
    let e = client.get_internal_state(()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = client.get_internal_state(node.token()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("enable_test_rpcs"), "{}", e.message());
    node.stop().await;

    let (node, mut client) = start(config(true)).await;
    let e = client.get_internal_state(()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    client
        .get_internal_state(node.token())
        .await
        .expect("with test RPCs and the token");
    node.stop().await;
}

/// Control characters would break line formats (`triton surf mapping`
/// prints `file<TAB>...`), so such names are refused like other bad ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_control_characters_are_refused() {
    let (node, mut client) = start(config(false)).await;
    for name in ["new\nline", "tab\tbed", "del\u{7f}"] {
        let e = client.update_file(entry(name, 1, 1)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?}: {e:?}");
    }
    let map = client.get_file_info_map(()).await.unwrap().into_inner().file_info_map;
    assert!(map.is_empty(), "{map:?}");
    node.stop().await;
}
