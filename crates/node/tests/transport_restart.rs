//! The peer transport across a peer's restart: the first message sent to a
//! peer that came back must arrive. And peers whose `[timing]` differs do
//! not talk at all. (It used to go down with the dead
//! connection, and when that message was a vote or a vote's answer, the
//! whole cluster waited out another election timeout; `triton bench
//! failover` showed it as a 1.6 s tail.) And dropping the sender's
//! `Outbox` leaves no task behind. And each stream speaks for one known
//! member: not for this node, an unknown id, or a second sender.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tokio_stream::wrappers::TcpListenerStream;
use triton_node::codec::message_to_pb;
use triton_node::driver::Input;
use triton_node::members::AddressBook;
use triton_node::tls::Dialer;
use triton_node::transport::{Outbox, TransportService, TIMING_METADATA};
use triton_proto::raft::raft_transport_client::RaftTransportClient;
use triton_proto::raft::raft_transport_server::RaftTransportServer;
use triton_proto::raft::RaftBatch;
use triton_raft::{Body, Message};

/// Node 2's transport, on a runtime of its own: dropping it ends every
/// task and closes every connection at once, as a SIGKILL would.
struct Peer {
    runtime: Option<tokio::runtime::Runtime>,
    rx: Receiver<Input>,
}

const TIMING: &str = "tick_ms=50 election_ticks=10 heartbeat_ticks=2 lease_reads=true";

impl Peer {
    fn serve(listener: std::net::TcpListener) -> Peer {
        Peer::serve_with_timing(listener, TIMING)
    }

    /// A peer with `timing` on a free loopback port, and its address.
    fn on_free_port(timing: &'static str) -> (Peer, std::net::SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (Peer::serve_with_timing(listener, timing), addr)
    }

    fn serve_with_timing(listener: std::net::TcpListener, timing: &'static str) -> Peer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        // Node 2 knows nodes 1 and 3 (its own entry aside).
        let mut book = AddressBook::default();
        for (id, addr) in [(1, "127.0.0.1:1"), (2, "127.0.0.1:2"), (3, "127.0.0.1:3")] {
            book.insert(id, addr).unwrap();
        }
        let members = Arc::new(RwLock::new(book));
        runtime.spawn(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = tonic::transport::Server::builder()
                .add_service(RaftTransportServer::new(TransportService::new(tx, 2, timing, members)))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Peer {
            runtime: Some(runtime),
            rx,
        }
    }

    fn kill(mut self) {
        self.runtime.take().expect("running").shutdown_background();
    }
}

fn heartbeat(read_seq: u64) -> Message {
    heartbeat_from(1, read_seq)
}

fn heartbeat_from(from: u64, read_seq: u64) -> Message {
    Message {
        from,
        to: 2,
        term: 1,
        body: Body::Heartbeat { commit: 0, read_seq },
    }
}

/// One stream to the peer at `addr` carrying `messages` in one batch, as
/// anyone holding the token could open; the stream's outcome.
async fn send_stream(addr: std::net::SocketAddr, messages: &[Message]) -> Result<(), tonic::Status> {
    let mut client = RaftTransportClient::connect(format!("http://{addr}")).await.unwrap();
    let batch = RaftBatch {
        messages: messages.iter().map(message_to_pb).collect(),
    };
    let mut request = tonic::Request::new(tokio_stream::iter(vec![batch]));
    request.metadata_mut().insert(TIMING_METADATA, TIMING.parse().unwrap());
    client.send(request).await.map(|_| ())
}

/// Node 1's sender to node 2 at `addr`, with the test's timing.
fn outbox_to(addr: std::net::SocketAddr) -> Outbox {
    Outbox::start(
        &tokio::runtime::Handle::current(),
        [(2, addr.to_string())].into_iter().collect(),
        1 << 20,
        Dialer::plaintext(),
        TIMING,
        Default::default(),
    )
}

/// Waits for the heartbeat numbered `read_seq`; false after `within`.
async fn received(rx: &Receiver<Input>, read_seq: u64, within: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        while let Ok(input) = rx.try_recv() {
            if let Input::Peer(m) = input {
                if m.body == (Body::Heartbeat { commit: 0, read_seq }) {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A peer with the test's timing on a free port, and node 1's sender to it,
/// shown working: heartbeat `read_seq` got through.
async fn connected_peer(read_seq: u64) -> (Peer, Outbox, std::net::SocketAddr) {
    let (peer, addr) = Peer::on_free_port(TIMING);
    let outbox = outbox_to(addr);
    outbox.send(heartbeat(read_seq));
    assert!(
        received(&peer.rx, read_seq, Duration::from_secs(10)).await,
        "no delivery at all"
    );
    (peer, outbox, addr)
}

/// Whether the kernel has an established connection accepted on `port`
/// (its local side) on 127.0.0.1.
fn accepted_on(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && fields[3] == "01" && fields[1].ends_with(&port)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_message_to_a_restarted_peer_arrives() {
    let (peer, outbox, addr) = connected_peer(1).await;

    // The peer dies and comes back on the same address.
    peer.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The old runtime closes its listener on its own schedule: retry a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e) => assert!(Instant::now() < deadline, "cannot bind {addr} again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let peer = Peer::serve(listener);
    // Time for the sender to notice and redial, then proof it did (a slow
    // machine may need more than the pause).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while !accepted_on(addr.port()) {
        assert!(Instant::now() < deadline, "the sender never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // One message, sent once (the core would not resend a vote answer).
    outbox.send(heartbeat(2));
    assert!(
        received(&peer.rx, 2, Duration::from_secs(5)).await,
        "the first message after the peer's restart was lost"
    );
    peer.kill();
}

/// A leader's lease is counted in its ticks and honoured in its followers':
/// a peer with other timing must get nothing through, not even a vote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_different_timing_is_refused() {
    let (peer, addr) = Peer::on_free_port("tick_ms=20 election_ticks=10 heartbeat_ticks=2 lease_reads=true");
    let outbox = outbox_to(addr);
    for seq in 1..=5 {
        outbox.send(heartbeat(seq));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for seq in 1..=5 {
        assert!(
            !received(&peer.rx, seq, Duration::from_millis(200)).await,
            "a message crossed between nodes with different timing"
        );
    }
    peer.kill();

    // Control: a sender with the same timing as its peer gets through.
    let (peer, _outbox, _) = connected_peer(6).await;
    peer.kill();
}

/// Dropping the `Outbox` (the node shutting down) ends every sender task and
/// its connection: no task is left behind holding a stream open to a peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_outbox_ends_its_senders() {
    // The peer runs on a runtime of its own: only the sender's tasks count here.
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let (peer, outbox, _) = connected_peer(1).await;
    assert!(metrics.num_alive_tasks() > before, "no sender task was running");
    drop(outbox);
    let start = std::time::Instant::now();
    while metrics.num_alive_tasks() > before {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} tasks still alive 10 s after the outbox was dropped ({before} before it started)",
            metrics.num_alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peer.kill();
}

/// A stream speaks for the sender of its first message: a message in it
/// that claims another sender (even another member) does not reach the
/// core. (A forged acknowledgement "from" a follower made a leader count a
/// majority that did not exist.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_speaks_for_one_sender() {
    let (peer, addr) = Peer::on_free_port(TIMING);
    let sent = send_stream(
        addr,
        &[heartbeat_from(1, 1), heartbeat_from(3, 2), heartbeat_from(1, 3)],
    )
    .await;
    assert!(sent.is_ok(), "{sent:?}");
    // In order, up to the last one: (sender, read_seq) of each.
    let mut got = Vec::new();
    let start = Instant::now();
    while !got.contains(&(1, 3)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the sender's own messages arrive: {got:?}"
        );
        while let Ok(input) = peer.rx.try_recv() {
            if let Input::Peer(Message {
                from,
                body: Body::Heartbeat { read_seq, .. },
                ..
            }) = input
            {
                got.push((from, read_seq));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got, [(1, 1), (1, 3)], "a message claiming node 3 got through");
    // Node 3 itself, on a stream of its own, gets through.
    assert!(send_stream(addr, &[heartbeat_from(3, 4)]).await.is_ok());
    assert!(received(&peer.rx, 4, Duration::from_secs(5)).await);
    peer.kill();
}

/// A stream from this node's own id, or from an id that is not a member it
/// knows (once, an absurd term from "node 98" reached the core), is
/// refused whole, and none of it reaches the core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_from_an_unknown_or_own_id_is_refused() {
    let (peer, addr) = Peer::on_free_port(TIMING);
    for (from, seq) in [(99, 1), (2, 2)] {
        let refused = send_stream(addr, &[heartbeat_from(from, seq), heartbeat_from(1, seq + 10)])
            .await
            .expect_err("a stream from a stranger is refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(
            !received(&peer.rx, seq, Duration::from_millis(300)).await
                && !received(&peer.rx, seq + 10, Duration::from_millis(100)).await,
            "a message of a stream from node id {from} reached the core"
        );
    }
    peer.kill();
}

/// A peer's address now served by a gRPC server without the Raft transport
/// (a stale address another service took) answers every stream at once:
/// the sender backs off instead of redialling 20 times a second forever
/// (a connection alone used to reset its back-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_fails_at_once_is_redialled_with_back_off() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio_stream::StreamExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let incoming = TcpListenerStream::new(listener).map(move |conn| {
        counter.fetch_add(1, Ordering::SeqCst);
        conn
    });
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(incoming),
    );
    let outbox = outbox_to(addr);
    for seq in 1..=30 {
        outbox.send(heartbeat(seq));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 3 s: about 6 attempts with the back-off (50 ms doubling to 1 s), 50
    // or more without it.
    let attempts = accepted.load(Ordering::SeqCst);
    assert!(
        (2..=12).contains(&attempts),
        "{attempts} connections in 3 s to a server answering every stream at once"
    );
    drop(outbox);
    server.abort();
}
