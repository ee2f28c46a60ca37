//! Message limits on a real node: lowering `max_message_bytes` leaves the
//! log it wrote readable, and the KV service reads no request larger than a
//! key and a value at their limits.

mod support;

use support::{Cluster, Scratch};
use tonic::Code;
use triton_node::server::{KV_REQUEST_MARGIN_BYTES, MAX_KEY_BYTES};
use triton_proto::kv::{GetRequest, PutRequest, Session};

/// Writing a value under one `max_message_bytes` and restarting with a
/// lower one: the node starts and the value reads back. The WAL's record
/// limit was `max_message_bytes`, so the log was refused as corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_a_lower_message_limit_reads_its_log() {
    const MIB: u64 = 1 << 20;
    let scratch = Scratch::new("lower-limit");
    let mut config = support::config(1);
    config.max_message_bytes = 2 * MIB;
    config.max_value_bytes = 2 * MIB - 1024;
    let mut c = Cluster::start(config.clone(), &scratch.0);
    c.wait_leader().await;
    // Its log record (the value, the key, the command's framing) is over
    // 1 MiB; a read answers it in under 1 MiB.
    let value = vec![b'v'; (MIB - 32) as usize];
    let mut kv = c.kv(0).await;
    let client_id = support::register(&mut kv).await;
    kv.put(PutRequest {
        session: Some(Session { client_id, seq: 1 }),
        key: b"big".to_vec(),
        value: value.clone(),
    })
    .await
    .expect("put under the larger limit");
    c.stop_node(0).await.expect("stops cleanly");

    let lower = triton_config::ClusterConfig {
        max_message_bytes: MIB,
        max_value_bytes: MIB,
        ..config
    };
    c.start_node_with(0, lower);
    if let Some(ended) = c.ended(0, std::time::Duration::from_millis(500)).await {
        panic!("the node did not start with the lower limit: {ended:?}");
    }
    c.wait_leader().await;
    let got = c
        .kv(0)
        .await
        .get(GetRequest {
            key: b"big".to_vec(),
            serializable: false,
        })
        .await
        .expect("get")
        .into_inner();
    assert!(got.found && got.value == value, "the value did not read back");
    c.stop_node(0).await.expect("stops cleanly");
}

/// A put just over the value limit is read and refused (INVALID_ARGUMENT);
/// one over a key and a value at their limits plus a small margin is not
/// even read (OUT_OF_RANGE, gRPC's own refusal of an oversized message).
/// The service used to read requests up to `max_message_bytes` (64 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_over_the_limits_is_refused_before_it_is_read() {
    let scratch = Scratch::new("kv-limit");
    let config = support::config(1);
    let max_value = config.max_value_bytes as usize;
    let mut c = Cluster::start(config, &scratch.0);
    c.wait_leader().await;
    let mut kv = c.kv(0).await;
    let client_id = support::register(&mut kv).await;
    let put = |seq: u64, len: usize| PutRequest {
        session: Some(Session { client_id, seq }),
        key: b"k".to_vec(),
        value: vec![b'v'; len],
    };
    kv.put(put(1, max_value)).await.expect("a value at the limit");
    let over_value = kv.put(put(2, max_value + 1)).await.unwrap_err();
    assert_eq!(over_value.code(), Code::InvalidArgument, "{over_value:?}");
    let over_request = max_value + MAX_KEY_BYTES + KV_REQUEST_MARGIN_BYTES as usize + 1;
    let not_read = kv.put(put(3, over_request)).await.unwrap_err();
    assert_eq!(not_read.code(), Code::OutOfRange, "{not_read:?}");
    assert!(not_read.message().contains("too large"), "{not_read:?}");
    // The node serves on.
    kv.put(put(4, 10)).await.expect("a small put");
    c.stop_node(0).await.expect("stops cleanly");
}
