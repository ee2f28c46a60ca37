//! The same round trip as `transport_rtt`, but each node's transport and its
//! stand-in driver share one thread (a current-thread runtime; the driver is
//! a task): no wake-up of another thread on the way. A measurement of what a
//! one-thread node would save, not how the node runs today (its driver has a
//! thread of its own, because it blocks in fsync).
//!
//! `cargo run --release -p triton-node --example transport_rtt_one_thread`
//! (env `W=n`: a multi-thread runtime of n workers instead, the stand-in
//! driver still a task: with 1 worker it is as fast as one thread, with 2 the
//! idle worker steals tasks and the wake-ups are back).
use std::time::{Duration, Instant};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};
use triton_node::tls::Dialer;
use triton_node::transport::{Outbox, TIMING_METADATA};
use triton_proto::raft::raft_transport_server::{RaftTransport, RaftTransportServer};
use triton_proto::raft::{RaftBatch, TransportAck};
use triton_raft::{Body, Message};

/// A transport service that hands messages to a task instead of the driver thread.
struct Svc(tokio::sync::mpsc::UnboundedSender<triton_proto::raft::RaftMessage>);
#[tonic::async_trait]
impl RaftTransport for Svc {
    async fn send(&self, request: Request<Streaming<RaftBatch>>) -> Result<Response<TransportAck>, Status> {
        let _ = request.metadata().get(TIMING_METADATA);
        let mut s = request.into_inner();
        while let Some(b) = s.message().await? {
            for m in b.messages {
                let _ = self.0.send(m);
            }
        }
        Ok(Response::new(TransportAck {}))
    }
}
fn hb(from: u64, to: u64, read_seq: u64) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: Body::Heartbeat { commit: 0, read_seq },
    }
}

/// One thread, or with `W=n`, a multi-thread runtime of n workers.
fn runtime() -> tokio::runtime::Builder {
    match std::env::var("W").ok().and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_current_thread(),
    }
}

fn main() {
    let la = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let lb = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (aa, ab) = (
        la.local_addr().unwrap().to_string(),
        lb.local_addr().unwrap().to_string(),
    );
    // node B: echo, on its own thread with a current-thread runtime.
    std::thread::spawn(move || {
        let rt = runtime().enable_all().build().unwrap();
        rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            lb.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(lb).unwrap();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .add_service(RaftTransportServer::new(Svc(tx)))
                    .serve_with_incoming(TcpListenerStream::new(l)),
            );
            let ob = Outbox::start(
                &tokio::runtime::Handle::current(),
                [(1, aa)].into_iter().collect(),
                1 << 20,
                Dialer::plaintext(),
                "t",
            );
            // The stand-in driver is a task of the runtime (on a worker).
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    let m = triton_node::codec::message_from_pb(m).unwrap();
                    if let Body::Heartbeat { read_seq, .. } = m.body {
                        ob.send(hb(2, 1, read_seq));
                    }
                }
            })
            .await
            .unwrap();
        });
    });
    let rt = runtime().enable_all().build().unwrap();
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        la.set_nonblocking(true).unwrap();
        let l = tokio::net::TcpListener::from_std(la).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(RaftTransportServer::new(Svc(tx)))
                .serve_with_incoming(TcpListenerStream::new(l)),
        );
        let oa = Outbox::start(
            &tokio::runtime::Handle::current(),
            [(2, ab)].into_iter().collect(),
            1 << 20,
            Dialer::plaintext(),
            "t",
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::spawn(async move {
            let mut lat = vec![];
            for i in 0..4000u64 {
                std::thread::sleep(Duration::from_micros(200));
                let t = Instant::now();
                oa.send(hb(1, 2, i));
                loop {
                    let m = rx.recv().await.unwrap();
                    let m = triton_node::codec::message_from_pb(m).unwrap();
                    if m.body == (Body::Heartbeat { commit: 0, read_seq: i }) {
                        break;
                    }
                }
                if i >= 1000 {
                    lat.push(t.elapsed().as_micros() as u64);
                }
            }
            lat.sort();
            println!(
                "driver as a task, {}: transport rtt p10 {} p50 {} p90 {} p99 {} us",
                std::env::var("W").map_or("one thread".to_string(), |w| format!("{w} worker(s)")),
                lat[lat.len() / 10],
                lat[lat.len() / 2],
                lat[lat.len() * 9 / 10],
                lat[lat.len() * 99 / 100]
            );
        })
        .await
        .unwrap();
    });
}
