//! Round trip of one Raft message through the peer transport: something
//! standing in for node 1's driver sends a heartbeat through its `Outbox`,
//! node 2's transport hands it to node 2's stand-in driver, which answers the
//! same way. A put pays this path once (the append and its acknowledgement),
//! so it is the floor of its latency besides the fsync. Two nodes in one
//! process, no Raft, no disk.
//!
//! `cargo run --release -p triton-node --example transport_rtt`
//!
//! Environment:
//! - `DRIVER=thread` (default): each stand-in driver is a thread of its own
//!   fed by `TransportService`, as the node runs today; `DRIVER=task`: it is a
//!   task on the transport's runtime, so no other thread is woken on the way.
//! - `W`: with `thread`, worker threads per runtime (default 2); with `task`,
//!   unset means a current-thread runtime, `W=n` a multi-thread runtime of n
//!   workers (with 2, the idle worker steals the woken tasks and the wake-ups
//!   are back).
//! - `GAP`: microseconds idle between round trips (default 200, as between
//!   one client's puts).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};
use triton_node::codec::message_from_pb;
use triton_node::driver::Input;
use triton_node::tls::Dialer;
use triton_node::transport::{Outbox, TransportService};
use triton_proto::raft::raft_transport_server::{RaftTransport, RaftTransportServer};
use triton_proto::raft::{RaftBatch, RaftMessage, TransportAck};
use triton_raft::{Body, Message};

const TIMING: &str = "t";
const ROUND_TRIPS: u64 = 4000;
/// Round trips before measuring starts (connections up, caches warm).
const WARM_UP: u64 = 1000;

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn heartbeat(from: u64, to: u64, read_seq: u64) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: Body::Heartbeat { commit: 0, read_seq },
    }
}

fn read_seq(m: &Message) -> Option<u64> {
    match m.body {
        Body::Heartbeat { read_seq, .. } => Some(read_seq),
        _ => None,
    }
}

/// Serves node `me`'s transport on `listener` (on the current runtime) and
/// dials `peer` at `peer_addr`.
fn transport<S: RaftTransport>(service: S, listener: std::net::TcpListener, peer: u64, peer_addr: String) -> Outbox {
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(RaftTransportServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let peers = [(peer, peer_addr)].into_iter().collect();
    Outbox::start(
        &tokio::runtime::Handle::current(),
        peers,
        1 << 20,
        Dialer::plaintext(),
        TIMING,
        Default::default(),
    )
}

/// Measures `ROUND_TRIPS` round trips; `round_trip(i)` sends heartbeat `i`
/// and returns once its answer is back.
fn measure(mut round_trip: impl FnMut(u64)) -> Vec<u64> {
    let gap = Duration::from_micros(env("GAP").unwrap_or(200));
    let mut lat = Vec::new();
    for i in 0..ROUND_TRIPS {
        std::thread::sleep(gap);
        let t = Instant::now();
        round_trip(i);
        if i >= WARM_UP {
            lat.push(t.elapsed().as_micros() as u64);
        }
    }
    lat.sort_unstable();
    lat
}

/// The drivers as threads, fed by the real `TransportService`.
fn drivers_on_threads(la: std::net::TcpListener, lb: std::net::TcpListener) -> Vec<u64> {
    let (aa, ab) = (
        la.local_addr().unwrap().to_string(),
        lb.local_addr().unwrap().to_string(),
    );
    let workers = env("W").unwrap_or(2);
    let node = |me: u64, listener, peer: u64, peer_addr: String| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut book = triton_node::members::AddressBook::default();
        book.insert(peer, &peer_addr).expect("a valid peer address");
        let members = std::sync::Arc::new(std::sync::RwLock::new(book));
        let outbox = rt.block_on(async {
            transport(
                TransportService::new(tx, me, TIMING, members),
                listener,
                peer,
                peer_addr,
            )
        });
        (rt, outbox, rx)
    };
    let (_ra, oa, rxa) = node(1, la, 2, ab);
    let (_rb, ob, rxb) = node(2, lb, 1, aa);
    std::thread::spawn(move || {
        while let Ok(Input::Peer(m)) = rxb.recv() {
            if let Some(seq) = read_seq(&m) {
                ob.send(heartbeat(2, 1, seq));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    measure(|i| {
        oa.send(heartbeat(1, 2, i));
        loop {
            match rxa.recv_timeout(Duration::from_secs(2)) {
                Ok(Input::Peer(m)) if read_seq(&m) == Some(i) => break,
                Ok(_) => continue,
                Err(_) => panic!("round trip {i} lost"),
            }
        }
    })
}

/// A transport service that hands messages to a task, not to a thread.
struct ToTask(mpsc::UnboundedSender<RaftMessage>);

#[tonic::async_trait]
impl RaftTransport for ToTask {
    async fn send(&self, request: Request<Streaming<RaftBatch>>) -> Result<Response<TransportAck>, Status> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            for m in batch.messages {
                let _ = self.0.send(m);
            }
        }
        Ok(Response::new(TransportAck {}))
    }
}

fn task_runtime() -> tokio::runtime::Runtime {
    let mut builder = match env::<usize>("W") {
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build().unwrap()
}

/// The drivers as tasks on their transport's runtime (node 2 on a thread of
/// its own, as another process would be). The tasks are spawned, so that with
/// `W` they run on a worker.
fn drivers_as_tasks(la: std::net::TcpListener, lb: std::net::TcpListener) -> Vec<u64> {
    let (aa, ab) = (
        la.local_addr().unwrap().to_string(),
        lb.local_addr().unwrap().to_string(),
    );
    std::thread::spawn(move || {
        task_runtime().block_on(async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let ob = transport(ToTask(tx), lb, 1, aa);
            let echo = async move {
                while let Some(m) = rx.recv().await {
                    if let Some(seq) = message_from_pb(m).ok().as_ref().and_then(read_seq) {
                        ob.send(heartbeat(2, 1, seq));
                    }
                }
            };
            tokio::spawn(echo).await.unwrap();
        })
    });
    task_runtime().block_on(async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let oa = transport(ToTask(tx), la, 2, ab);
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Blocking sleeps between round trips, as `measure` does, hold the
        // runtime only while nothing is in flight.
        let run = async move {
            let (done_tx, mut done_rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    if let Some(seq) = message_from_pb(m).ok().as_ref().and_then(read_seq) {
                        let _ = done_tx.send(seq);
                    }
                }
            });
            let mut lat = Vec::new();
            for i in 0..ROUND_TRIPS {
                std::thread::sleep(Duration::from_micros(env("GAP").unwrap_or(200)));
                let t = Instant::now();
                oa.send(heartbeat(1, 2, i));
                while done_rx.recv().await.expect("transport stopped") != i {}
                if i >= WARM_UP {
                    lat.push(t.elapsed().as_micros() as u64);
                }
            }
            lat.sort_unstable();
            lat
        };
        tokio::spawn(run).await.unwrap()
    })
}

fn main() {
    let la = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lb = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mode = std::env::var("DRIVER").unwrap_or_else(|_| "thread".into());
    let lat = match mode.as_str() {
        "thread" => drivers_on_threads(la, lb),
        "task" => drivers_as_tasks(la, lb),
        other => panic!("DRIVER={other}: use thread or task"),
    };
    let at = |q: usize| lat[(lat.len() * q / 100).min(lat.len() - 1)];
    println!(
        "driver as a {mode}{}: transport round trip p10 {} p50 {} p90 {} p99 {} us",
        env::<usize>("W").map_or(String::new(), |w| format!(", {w} worker(s)")),
        at(10),
        at(50),
        at(90),
        at(99)
    );
}
