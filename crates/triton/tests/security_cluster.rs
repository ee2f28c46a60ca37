//! Security on real `triton server` processes: TLS with mutual
//! authentication between peers and clients (certificates made here with
//! rcgen), and the admin token on the fault RPCs (the `Control` service and
//! SurfStore's `RaftSurfstore` hooks).

#[path = "support/cluster.rs"]
mod cluster;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{bin, Cluster, ClusterOptions};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};
use triton_config::{ClusterConfig, TlsConfig};
use triton_node::auth::with_token;
use triton_node::client::KvClient;
use triton_node::tls::Dialer;
use triton_proto::control::control_client::ControlClient;
use triton_proto::control::{ControlEmpty, NodeIds};
use triton_proto::surfstore::raft_surfstore_client::RaftSurfstoreClient;
use triton_proto::surfstore::UnreachableFromServers;

const TOKEN: &str = "s3cret-t0ken";

/// Test certificates in a directory: a cluster CA with a node certificate
/// (127.0.0.1 and localhost) and a client certificate, and a second,
/// unrelated CA with a certificate for the same names.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).expect("write pem");
        for (ca_name, prefix) in [("Triton test CA", ""), ("Rogue CA", "rogue-")] {
            let ca_key = rcgen::KeyPair::generate().expect("key");
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
            let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
            write(&format!("{prefix}ca.pem"), ca_cert.pem());
            let issuer = rcgen::Issuer::new(ca_params, ca_key);
            for (leaf, names) in [
                ("node", vec!["127.0.0.1".to_string(), "localhost".to_string()]),
                ("client", vec!["client.triton.test".to_string()]),
            ] {
                let key = rcgen::KeyPair::generate().expect("key");
                let mut params = rcgen::CertificateParams::new(names).expect("params");
                params.distinguished_name.push(rcgen::DnType::CommonName, leaf);
                let cert = params.signed_by(&key, &issuer).expect("sign");
                write(&format!("{prefix}{leaf}.pem"), cert.pem());
                write(&format!("{prefix}{leaf}-key.pem"), key.serialize_pem());
            }
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `[tls]` with `<leaf>.pem`/`<leaf>-key.pem` and `ca` (file names here).
    fn tls(&self, leaf: &str, ca: &str) -> TlsConfig {
        TlsConfig {
            cert: self.path(&format!("{leaf}.pem")),
            key: self.path(&format!("{leaf}-key.pem")),
            ca: Some(self.path(ca)),
        }
    }
}

/// A config file for a client of `c`: the cluster's, with `tls` instead.
fn client_config(c: &Cluster, tls: Option<TlsConfig>, name: &str) -> (ClusterConfig, PathBuf) {
    let mut config = c.cluster_config();
    config.tls = tls;
    let path = c.dir.path().join(name);
    std::fs::write(&path, config.to_toml()).expect("write client config");
    (config, path)
}

fn triton_kv(config: Option<&Path>, endpoints: &[String], op: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("kv");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    if !endpoints.is_empty() {
        cmd.arg("--endpoints").arg(endpoints.join(","));
    }
    let out = cmd.args(op).output().expect("run triton kv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client that gives up quickly: refusals show up as errors within seconds.
fn impatient(mut client: KvClient) -> KvClient {
    client.attempt_timeout = Duration::from_millis(500);
    client.deadline = Duration::from_secs(2);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_cluster_serves_its_clients_and_refuses_strangers() {
    let pki = Pki::new();
    let c = Cluster::start(ClusterOptions {
        tls: Some(pki.tls("node", "ca.pem")),
        ..Default::default()
    });
    // The peers reached each other over mutual TLS: a leader is elected and
    // a write commits on a majority.
    c.wait_leader().await;
    let mut client = c.client();
    client.put(b"k", b"over tls").await.expect("put over TLS");
    assert_eq!(client.get(b"k").await.unwrap().unwrap().value, b"over tls");

    // The CLI, as a client with its own certificate from the cluster's CA.
    let (client_cfg, client_path) = client_config(&c, Some(pki.tls("client", "ca.pem")), "client.toml");
    let (ok, out, err) = triton_kv(Some(&client_path), &[], &["put", "cli", "hello"]);
    assert!(ok, "triton kv put over TLS failed: {err}");
    assert!(out.starts_with("OK"), "{out}");
    let (ok, out, err) = triton_kv(Some(&client_path), &c.addrs, &["get", "cli"]);
    assert!(ok, "triton kv get over TLS failed: {err}");
    assert_eq!(out.trim(), "hello");
    let mut with_client_cert = KvClient::with_config(c.endpoints(), &client_cfg).unwrap();
    assert_eq!(with_client_cert.get(b"k").await.unwrap().unwrap().value, b"over tls");

    // Plaintext clients get nothing: the port speaks only TLS.
    let mut plain = impatient(KvClient::new(c.endpoints()).unwrap());
    let e = plain.get(b"k").await.expect_err("a plaintext client was served");
    assert!(e.outcome_unknown(), "{e}");
    // (`status` asks each node once, where `get` would retry for 30 s.)
    let (_, out, _) = triton_kv(None, &c.addrs[..1], &["status"]);
    assert!(!out.contains(" term "), "the plaintext CLI was served: {out}");
    let (_, out, _) = triton_kv(Some(&client_path), &c.addrs[..1], &["status"]);
    assert!(
        out.contains(" term "),
        "the CLI with the client certificate was not: {out}"
    );

    // A client whose certificate comes from another CA is refused, though it
    // trusts the cluster's certificate.
    let (rogue_cfg, rogue_path) = client_config(&c, Some(pki.tls("rogue-client", "ca.pem")), "rogue.toml");
    let mut rogue = impatient(KvClient::with_config(c.endpoints(), &rogue_cfg).unwrap());
    rogue
        .get(b"k")
        .await
        .expect_err("a client with a foreign certificate was served");
    let (_, out, _) = triton_kv(Some(&rogue_path), &c.addrs[..1], &["status"]);
    assert!(
        !out.contains(" term "),
        "the CLI with a foreign certificate was served: {out}"
    );

    // A TLS client with no certificate at all is refused too (tonic's client
    // directly, since the Dialer always presents the config's certificate).
    let ca = std::fs::read(pki.path("ca.pem")).unwrap();
    let anonymous = Endpoint::from_shared(format!("https://{}", c.addrs[0]))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca)))
        .unwrap()
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2));
    let r = match anonymous.connect().await {
        Ok(ch) => triton_proto::kv::kv_client::KvClient::new(ch)
            .status(triton_proto::kv::StatusRequest {})
            .await
            .map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(r.is_err(), "a TLS client without a certificate was served");

    // And a client that trusts only another CA refuses the cluster.
    let (rogue_ca_cfg, _) = client_config(&c, Some(pki.tls("client", "rogue-ca.pem")), "rogue-ca.toml");
    let mut distrustful = impatient(KvClient::with_config(c.endpoints(), &rogue_ca_cfg).unwrap());
    distrustful
        .get(b"k")
        .await
        .expect_err("a client accepted a server certificate from a CA it does not trust");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_certificate_from_another_ca_is_shut_out() {
    let pki = Pki::new();
    let mut c = Cluster::start(ClusterOptions {
        tls: Some(pki.tls("node", "ca.pem")),
        ..Default::default()
    });
    // Node 2 restarts with a certificate from the rogue CA (it still trusts
    // the cluster's CA, so only its own certificate is at fault).
    c.kill9(2);
    c.set_node_tls(2, &pki.tls("rogue-node", "ca.pem"));
    c.spawn(2);
    let mut client = c.client();
    for i in 0..5 {
        client
            .put(format!("k{i}").as_bytes(), b"v")
            .await
            .expect("nodes 0 and 1 are a majority");
    }
    let leader_commit = {
        let mut best = 0;
        for a in &c.addrs[..2] {
            best = best.max(client.status_of(a).await.unwrap().commit_index);
        }
        best
    };
    // Node 2's own view: a client that trusts the rogue CA (node 2's server
    // certificate) and presents the cluster's client certificate (which
    // node 2 accepts). Over two seconds it learns no leader and none of the
    // writes: the others refuse its certificate and it cannot verify theirs.
    let probe_cfg = ClusterConfig {
        tls: Some(pki.tls("client", "rogue-ca.pem")),
        ..c.cluster_config()
    };
    let mut probe = KvClient::with_dialer(vec![c.addrs[2].clone()], Dialer::from_config(&probe_cfg).unwrap()).unwrap();
    // Watched for two seconds from its first answer (a loaded machine may
    // take a while to start it; 20 s at most).
    let start = Instant::now();
    let mut answered = None;
    while answered.is_none_or(|first: Instant| first.elapsed() < Duration::from_secs(2))
        && start.elapsed() < Duration::from_secs(20)
    {
        if let Ok(s) = probe.status_of(&c.addrs[2]).await {
            answered.get_or_insert_with(Instant::now);
            assert!(
                s.commit_index < leader_commit && s.role != "leader",
                "the rogue node joined: {s:?} (cluster commit {leader_commit})"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answered.is_some(),
        "node 2 never answered its own probe; logs in {}",
        c.dir.path().display()
    );

    // With the cluster's certificate it catches up: the refusal was the
    // certificate's doing.
    c.kill9(2);
    c.set_node_tls(2, &pki.tls("node", "ca.pem"));
    c.spawn(2);
    c.wait_applied(leader_commit).await;
}

#[test]
fn a_node_with_a_missing_certificate_refuses_to_start() {
    let pki = Pki::new();
    let mut c = Cluster::start(ClusterOptions {
        nodes: 1,
        tls: Some(TlsConfig {
            cert: pki.path("no-such-cert.pem"),
            key: pki.path("node-key.pem"),
            ca: None,
        }),
        ..Default::default()
    });
    let status = c.wait_exit(0, Duration::from_secs(10)).expect("the node exits");
    assert!(!status.success());
    let log = c.log(0);
    assert!(log.contains("tls.cert") && log.contains("no-such-cert.pem"), "{log}");
}

fn bearer(token: &str) -> MetadataValue<tonic::metadata::Ascii> {
    MetadataValue::try_from(format!("Bearer {token}")).unwrap()
}

/// A request without a token, and one with a wrong one.
fn unauthorized<T: Clone>(msg: T) -> [(Request<T>, Code); 3] {
    let mut wrong = Request::new(msg.clone());
    wrong.metadata_mut().insert("authorization", bearer("not-the-token"));
    let mut malformed = Request::new(msg.clone());
    malformed
        .metadata_mut()
        .insert("authorization", MetadataValue::from_static(TOKEN));
    [
        (Request::new(msg), Code::Unauthenticated),
        (wrong, Code::PermissionDenied),
        (malformed, Code::Unauthenticated),
    ]
}

async fn channel(addr: &str) -> Channel {
    let start = Instant::now();
    loop {
        match Dialer::plaintext().endpoint(addr).unwrap().connect().await {
            Ok(ch) => return ch,
            Err(e) if start.elapsed() > Duration::from_secs(10) => panic!("connect {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_rpcs_need_the_admin_token() {
    let c = Cluster::start(ClusterOptions {
        test_rpcs: true,
        admin_token: Some(TOKEN.into()),
        ..Default::default()
    });
    let leader = c.wait_leader().await;
    let follower = (leader + 1) % 3;
    let config = c.cluster_config();
    let mut ctl = ControlClient::new(channel(&c.addrs[follower]).await);
    for (req, code) in unauthorized(ControlEmpty {}) {
        assert_eq!(ctl.crash(req).await.unwrap_err().code(), code);
    }
    for (req, code) in unauthorized(NodeIds { ids: vec![0, 1, 2] }) {
        assert_eq!(ctl.make_unreachable_from(req).await.unwrap_err().code(), code);
    }
    // Nothing happened: the follower is not crashed.
    let mut authorized = c.control(follower).await;
    assert!(
        !authorized
            .is_crashed(ControlEmpty {})
            .await
            .unwrap()
            .into_inner()
            .crashed
    );
    // With the token the same RPCs work (the harness's client and the helper).
    authorized.crash(ControlEmpty {}).await.expect("crash with the token");
    assert!(
        authorized
            .is_crashed(ControlEmpty {})
            .await
            .unwrap()
            .into_inner()
            .crashed
    );
    ctl.restore(with_token(ControlEmpty {}, &config))
        .await
        .expect("restore with the token");
    assert!(
        !ctl.is_crashed(with_token(ControlEmpty {}, &config))
            .await
            .unwrap()
            .into_inner()
            .crashed
    );

    // SurfStore's hooks on the same port: the same rule.
    let mut surf = RaftSurfstoreClient::new(channel(&c.addrs[follower]).await);
    for (req, code) in unauthorized(()) {
        assert_eq!(surf.crash(req).await.unwrap_err().code(), code);
    }
    for (req, code) in unauthorized(()) {
        assert_eq!(surf.set_leader(req).await.unwrap_err().code(), code);
    }
    for (req, code) in unauthorized(()) {
        assert_eq!(surf.send_heartbeat(req).await.unwrap_err().code(), code);
    }
    for (req, code) in unauthorized(()) {
        assert_eq!(surf.restore(req).await.unwrap_err().code(), code);
    }
    for (req, code) in unauthorized(UnreachableFromServers { server_ids: vec![0] }) {
        assert_eq!(surf.make_server_unreachable_from(req).await.unwrap_err().code(), code);
    }
    for (req, code) in unauthorized(()) {
        assert_eq!(surf.get_internal_state(req).await.unwrap_err().code(), code);
    }
    assert!(
        !surf
            .is_crashed(with_token((), &config))
            .await
            .unwrap()
            .into_inner()
            .flag
    );
    surf.make_server_unreachable_from(with_token(UnreachableFromServers { server_ids: vec![] }, &config))
        .await
        .expect("unreachable-from with the token");
    surf.get_internal_state(with_token((), &config))
        .await
        .expect("GetInternalState with the token");
    // The data path needs no token.
    let mut client = c.client();
    client.put(b"k", b"v").await.expect("KV needs no token");
}

/// Raft's own streams need the token too: anyone reaching the port could
/// otherwise send a fake leader's append and rewrite or crash a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_streams_need_the_admin_token() {
    use triton_proto::raft::raft_transport_client::RaftTransportClient;
    use triton_proto::raft::RaftBatch;
    let c = Cluster::start(ClusterOptions {
        admin_token: Some(TOKEN.into()),
        ..Default::default()
    });
    // The nodes' own streams carry it: they elect a leader and commit.
    c.wait_leader().await;
    let mut client = c.client();
    client.put(b"k", b"v").await.expect("the cluster works with a token");
    let mut peer = RaftTransportClient::new(channel(&c.addrs[0]).await);
    let batches = || tokio_stream::iter(vec![RaftBatch::default()]);
    for (req, code) in unauthorized(()) {
        let mut stream = Request::new(batches());
        *stream.metadata_mut() = req.metadata().clone();
        assert_eq!(peer.send(stream).await.unwrap_err().code(), code);
    }
    // With the token the stream gets past the check, to the next one (the
    // `[timing]` signature this test did not send).
    let mut stream = Request::new(batches());
    stream.metadata_mut().insert("authorization", bearer(TOKEN));
    assert_eq!(peer.send(stream).await.unwrap_err().code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_rpcs_stay_off_without_enable_test_rpcs_even_with_the_token() {
    let c = Cluster::start(ClusterOptions {
        test_rpcs: false,
        admin_token: Some(TOKEN.into()),
        ..Default::default()
    });
    let leader = c.wait_leader().await;
    let config = c.cluster_config();
    let mut ctl = c.control(leader).await;
    let e = ctl.crash(ControlEmpty {}).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("enable_test_rpcs"), "{}", e.message());
    // Refused before its ids are looked at (an id past any config's range
    // once panicked the handler, switch or not).
    let e = ctl
        .make_unreachable_from(NodeIds { ids: vec![u64::MAX] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut surf = RaftSurfstoreClient::new(channel(&c.addrs[leader]).await);
    let e = surf.crash(with_token((), &config)).await.unwrap_err();
    assert!(e.message().contains("enable_test_rpcs"), "{}", e.message());
    // Forcing an election or a replication round is a test hook too.
    let e = surf.set_leader(with_token((), &config)).await.unwrap_err();
    assert!(e.message().contains("enable_test_rpcs"), "{}", e.message());
    let e = surf.send_heartbeat(with_token((), &config)).await.unwrap_err();
    assert!(e.message().contains("enable_test_rpcs"), "{}", e.message());
    // Without the token the answer is still about the token.
    let mut plain = ControlClient::new(channel(&c.addrs[leader]).await);
    assert_eq!(
        plain.crash(ControlEmpty {}).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // The leader is still serving.
    c.client().put(b"k", b"v").await.expect("the cluster is unharmed");
}

#[test]
fn verify_uses_the_token_and_stops_at_once_without_it() {
    let c = Cluster::start(ClusterOptions {
        test_rpcs: true,
        admin_token: Some(TOKEN.into()),
        ..Default::default()
    });
    let verify = |config: Option<&Path>, duration: &str, out: &str| {
        let mut cmd = Command::new(bin());
        cmd.args(["verify", "--endpoints", &c.addrs.join(","), "--duration", duration])
            .args(["--faults", "partition", "--clients", "1", "--out"])
            .arg(c.dir.path().join(out));
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.output().expect("run triton verify")
    };
    // Without the token its partitions would silently never happen: it
    // refuses to run instead.
    let out = verify(None, "1s", "verify-no-token");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "verify ran without the token: {err}");
    assert!(
        err.contains("refused the partition RPC") && err.contains("admin_token"),
        "{err}"
    );
    // With the cluster's config it sends the token and partitions the
    // cluster (the first fault comes within 2.5 s; 6 s leave it time to
    // start on a loaded machine).
    let out = verify(Some(&c.config), "6s", "verify-token");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "verify with the token failed: {text}");
    assert!(text.contains("faults injected: partition"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surfstore_sync_reaches_a_mutual_tls_cluster() {
    let pki = Pki::new();
    let c = Cluster::start(ClusterOptions {
        tls: Some(pki.tls("node", "ca.pem")),
        block_stores: 1,
        ..Default::default()
    });
    c.wait_leader().await;
    let (_, client_path) = client_config(&c, Some(pki.tls("client", "ca.pem")), "client.toml");
    let (up, down) = (c.dir.path().join("up"), c.dir.path().join("down"));
    std::fs::create_dir_all(&up).unwrap();
    std::fs::create_dir_all(&down).unwrap();
    std::fs::write(up.join("hello.txt"), b"over mutual TLS").unwrap();
    let sync = |config: &Path, dir: &Path| {
        Command::new(bin())
            .arg("sync")
            .arg("--config")
            .arg(config)
            .arg(dir)
            .arg("4096")
            .output()
            .expect("run triton sync")
    };
    for dir in [&up, &down] {
        let out = sync(&client_path, dir);
        assert!(
            out.status.success(),
            "sync of {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(std::fs::read(down.join("hello.txt")).unwrap(), b"over mutual TLS");
    // The same sync in plaintext finds no metadata node (exit 1: no majority).
    let (_, plain_path) = client_config(&c, None, "plain.toml");
    let out = Command::new(bin())
        .args(["sync", "--deadline", "2", "--config"])
        .arg(&plain_path)
        .arg(&down)
        .arg("4096")
        .output()
        .expect("run triton sync");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}
