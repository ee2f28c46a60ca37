//! Round trip of one Raft message through the peer transport: a thread
//! standing in for node 1's driver sends a heartbeat through its `Outbox`,
//! node 2's `TransportService` hands it to a thread standing in for node 2's
//! driver, which answers the same way. A put pays this path once (the
//! append and its acknowledgement), so it is the floor of its latency
//! besides the fsync. Two runtimes in one process, no Raft, no disk.
//!
//! `cargo run --release -p triton-node --example transport_rtt`
//! (env `W` = worker threads per runtime, default 2; `GAP` = microseconds
//! idle between round trips, default 200, as between one client's puts).
use std::time::{Duration, Instant};
use tokio_stream::wrappers::TcpListenerStream;
use triton_node::driver::Input;
use triton_node::tls::Dialer;
use triton_node::transport::{Outbox, TransportService};
use triton_proto::raft::raft_transport_server::RaftTransportServer;
use triton_raft::{Body, Message};

const TIMING: &str = "t";

fn node(
    me: u64,
    listener: std::net::TcpListener,
    peer: u64,
    peer_addr: String,
) -> (tokio::runtime::Runtime, Outbox, crossbeam_channel::Receiver<Input>) {
    let workers = std::env::var("W").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    runtime.spawn(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let _ = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(RaftTransportServer::new(TransportService::new(tx, me, TIMING)))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    let outbox = Outbox::start(
        runtime.handle(),
        [(peer, peer_addr)].into_iter().collect(),
        1 << 20,
        Dialer::plaintext(),
        TIMING,
    );
    (runtime, outbox, rx)
}

fn hb(from: u64, to: u64, read_seq: u64) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: Body::Heartbeat { commit: 0, read_seq },
    }
}

fn main() {
    let la = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lb = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (aa, ab) = (
        la.local_addr().unwrap().to_string(),
        lb.local_addr().unwrap().to_string(),
    );
    let (_ra, oa, rxa) = node(1, la, 2, ab);
    let (_rb, ob, rxb) = node(2, lb, 1, aa);
    std::thread::spawn(move || {
        while let Ok(Input::Peer(m)) = rxb.recv() {
            if let Body::Heartbeat { read_seq, .. } = m.body {
                ob.send(hb(2, 1, read_seq));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let gap: u64 = std::env::var("GAP").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut lat = vec![];
    for i in 0..4000u64 {
        std::thread::sleep(Duration::from_micros(gap));
        let t = Instant::now();
        oa.send(hb(1, 2, i));
        loop {
            match rxa.recv_timeout(Duration::from_secs(2)) {
                Ok(Input::Peer(m)) if m.body == (Body::Heartbeat { commit: 0, read_seq: i }) => break,
                Ok(_) => continue,
                Err(_) => {
                    println!("lost {i}");
                    break;
                }
            }
        }
        if i >= 1000 {
            lat.push(t.elapsed().as_micros() as u64);
        }
    }
    lat.sort();
    println!(
        "transport rtt p10 {} p50 {} p90 {} p99 {} us",
        lat[lat.len() / 10],
        lat[lat.len() / 2],
        lat[lat.len() * 9 / 10],
        lat[lat.len() * 99 / 100]
    );
}
