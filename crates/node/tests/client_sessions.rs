//! The KV client's sessions: it registers one before its first write, and
//! when the cluster has forgotten it (the store's table of sessions is
//! bounded), a write that provably did not apply is sent again in a newly
//! registered session; one whose earlier attempt may have applied is
//! reported as of unknown outcome, never sent again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use triton_node::client::{ClientError, KvClient};
use triton_proto::kv::kv_server::{Kv, KvServer};
use triton_proto::kv::{
    AppendRequest, DeleteRequest, GetRequest, GetResponse, PutRequest, RegisterSessionRequest, RegisterSessionResponse,
    StatusRequest, StatusResponse, WriteResponse,
};

/// A server that forgets every session after its first write: it answers a
/// put with seq > 1 as the store does for an unknown session (ABORTED,
/// nothing applied), and with `forget_all` it forgets sessions before their
/// first write too. The first put with seq `stall_seq` is held past the
/// client's attempt timeout. Sessions it registers are 100, 101, ...
#[derive(Clone, Default)]
struct Forgetful {
    /// (client_id, seq) of every put received, in order.
    puts: Arc<Mutex<Vec<(u64, u64)>>>,
    registrations: Arc<Mutex<u64>>,
    stall_seq: Option<u64>,
    forget_all: bool,
}

#[tonic::async_trait]
impl Kv for Forgetful {
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Err(Status::unimplemented("get"))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<WriteResponse>, Status> {
        let s = request.into_inner().session.expect("a write carries a session");
        let first_with_seq = {
            let mut puts = self.puts.lock().unwrap();
            puts.push((s.client_id, s.seq));
            puts.iter().filter(|p| p.1 == s.seq).count() == 1
        };
        if first_with_seq && self.stall_seq == Some(s.seq) {
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        let registered = s.client_id >= 100 && s.client_id < 100 + *self.registrations.lock().unwrap();
        if s.seq > 1 || self.forget_all || !registered {
            return Err(Status::aborted("unknown session"));
        }
        Ok(Response::new(WriteResponse {
            version: 7,
            ..Default::default()
        }))
    }

    async fn append(&self, _: Request<AppendRequest>) -> Result<Response<WriteResponse>, Status> {
        Err(Status::unimplemented("append"))
    }

    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<WriteResponse>, Status> {
        Err(Status::unimplemented("delete"))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Err(Status::unimplemented("status"))
    }

    async fn register_session(
        &self,
        _: Request<RegisterSessionRequest>,
    ) -> Result<Response<RegisterSessionResponse>, Status> {
        let mut n = self.registrations.lock().unwrap();
        *n += 1;
        Ok(Response::new(RegisterSessionResponse { client_id: 99 + *n }))
    }
}

async fn serve(kv: Forgetful) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KvServer::new(kv))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr.to_string()
}

/// The cluster forgot the session between two writes: the second write is
/// refused unapplied, and the client sends it again as seq 1 of a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_for_a_forgotten_session_is_sent_again_in_a_new_one() {
    let kv = Forgetful::default();
    let mut client = KvClient::new(vec![serve(kv.clone()).await]).unwrap();
    assert_eq!(client.put(b"k", b"1").await.unwrap(), 7);
    assert_eq!(client.put(b"k", b"2").await.unwrap(), 7);
    let puts = kv.puts.lock().unwrap().clone();
    assert_eq!(puts.len(), 3, "{puts:?}");
    let (old, new) = (puts[1], puts[2]);
    assert_eq!((puts[0].0, puts[0].1, old.1), (old.0, 1, 2));
    assert_ne!(new.0, old.0, "a new session has a new client id");
    assert_eq!(new.1, 1, "a new session starts at seq 1");
    assert_eq!((old.0, new.0), (100, 101), "both sessions were registered");
    assert_eq!(client.client_id(), Some(101));
}

/// A cluster that forgets even fresh sessions (its table turning over
/// faster than a client writes) gets a few, not endless, registrations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_keeps_forgetting_gets_a_few_sessions_then_an_error() {
    let kv = Forgetful {
        forget_all: true,
        ..Forgetful::default()
    };
    let mut client = KvClient::new(vec![serve(kv.clone()).await]).unwrap();
    let err = client.put(b"k", b"1").await.unwrap_err();
    assert!(matches!(err, ClientError::SessionExpired(_)), "{err}");
    let puts = kv.puts.lock().unwrap().clone();
    assert_eq!(puts, vec![(100, 1), (101, 1), (102, 1)]);
}

/// An attempt timed out (it may still apply), and the retry found the
/// session forgotten: sending the write again in a new session could apply
/// it twice, so the outcome is reported unknown and nothing more is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_may_have_applied_is_not_sent_again_in_a_new_session() {
    let kv = Forgetful {
        stall_seq: Some(2),
        ..Forgetful::default()
    };
    let mut client = KvClient::new(vec![serve(kv.clone()).await]).unwrap();
    client.attempt_timeout = Duration::from_millis(300);
    assert_eq!(client.put(b"k", b"0").await.unwrap(), 7);
    // Seq 2: the first attempt times out, the retry finds the session gone.
    let err = client.put(b"k", b"1").await.unwrap_err();
    assert!(err.outcome_unknown(), "{err}");
    let puts = kv.puts.lock().unwrap().clone();
    assert!(puts.len() >= 3, "{puts:?}");
    let id = puts[0].0;
    assert!(
        puts.iter().all(|&(c, _)| c == id),
        "sent again in a new session: {puts:?}"
    );
    // The next write starts a new session at once.
    assert_eq!(client.put(b"k", b"2").await.unwrap(), 7);
    assert!(matches!(err, ClientError::Unknown(..)));
}
