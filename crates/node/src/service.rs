//! The client-facing gRPC services: the key-value face and the test/fault
//! control service (refused unless enabled in the config).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use triton_config::{ClusterConfig, NodeConfig};
use triton_proto::control::control_server::Control;
use triton_proto::control::{ControlEmpty, CrashState, DropReplies, NodeIds};
use triton_proto::kv::kv_server::Kv;
use triton_proto::kv::{
    AppendRequest, DeleteRequest, GetRequest, GetResponse, PutRequest, RegisterSessionRequest, RegisterSessionResponse,
    Session as PbSession, StatusRequest, StatusResponse, WriteResponse,
};
use triton_raft::NodeId;
use triton_store::Store;
use triton_store::{Command, Session, WriteOp, WriteResult};

use crate::driver::{now_ms, ControlOp, Input, NodeError, NodeStatus, Query};
use crate::members::AddressBook;

/// The metadata key naming the leader's address on a redirect.
pub const LEADER_METADATA: &str = "triton-leader";

/// Room a command leaves in `max_message_bytes` for the WAL record around
/// it (17 bytes) and the append message, batch and gRPC frame that carry it
/// to the followers (under 100 bytes of varints and tags for one entry).
pub const COMMAND_HEADROOM_BYTES: u64 = 256;

/// The largest encoded command a node proposes. A bigger one could not be
/// written to the WAL (whose records are at most `max_message_bytes`: the
/// leader would stop on a storage error) nor sent to a follower, so it is
/// refused before it is proposed. Every face's own limits (keys, values,
/// hash lists) are below this in a default config; this is the last line.
pub fn command_limit(max_message_bytes: u64) -> usize {
    usize::try_from(max_message_bytes.saturating_sub(COMMAND_HEADROOM_BYTES)).unwrap_or(usize::MAX)
}

/// The way into a running node for every face it serves (the KV service,
/// the file server, SurfStore's metadata service): submit writes, run
/// linearizable or serializable queries against the store, ask for status,
/// and find the leader.
#[derive(Clone)]
pub struct NodeHandle {
    pub driver: Sender<Input>,
    /// The cluster's configuration (addresses of every face of every node).
    pub config: Arc<ClusterConfig>,
    /// This node's Raft id.
    pub raft_id: NodeId,
    /// Members' gRPC addresses, including nodes that joined after the
    /// config was written (see [`crate::members`]).
    pub addresses: Arc<RwLock<AddressBook>>,
    pub request_timeout: Duration,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Largest encoded command a write may propose ([`command_limit`]).
    pub max_command_bytes: usize,
    /// The leader this node last knew of (0: none), kept by the driver at
    /// every role change: a hint for clients, possibly stale.
    pub leader: Arc<AtomicU64>,
}

impl NodeHandle {
    fn submit(&self, input: Input) -> Result<(), NodeError> {
        match self.driver.try_send(input) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(NodeError::Rejected("node overloaded; retry later".into())),
            Err(TrySendError::Disconnected(_)) => Err(NodeError::Rejected("node shutting down".into())),
        }
    }

    async fn wait<T>(&self, rx: oneshot::Receiver<Result<T, NodeError>>) -> Result<T, NodeError> {
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            // The driver dropped the reply (e.g. a test dropping replies).
            Ok(Err(_)) => Err(NodeError::Timeout),
            Err(_) => Err(NodeError::Timeout),
        }
    }

    /// Proposes a write and waits until it is committed and applied. The
    /// command is stamped with this node's wall clock here; the driver
    /// lowers the stamp if the clock runs ahead of the cluster's
    /// (`driver::LogClock`).
    pub async fn write(&self, session: Option<Session>, op: WriteOp) -> Result<WriteResult, NodeError> {
        let stamped_ms = now_ms();
        let cmd = Command {
            session,
            now_ms: stamped_ms,
            op,
        };
        let data = cmd.encode();
        if data.len() > self.max_command_bytes {
            return Err(NodeError::TooLarge {
                bytes: data.len(),
                limit: self.max_command_bytes,
            });
        }
        let (tx, rx) = oneshot::channel();
        self.submit(Input::Write {
            data,
            stamped_ms,
            reply: tx,
        })?;
        self.wait(rx).await
    }

    /// Runs `f` on the store once a read is safe: after a ReadIndex round
    /// (linearizable) or at once on this node's state (`serializable`).
    pub async fn query<T, F>(&self, serializable: bool, f: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let query: Query = Box::new(move |store: Result<&Store, NodeError>| {
            let _ = tx.send(store.map(f));
        });
        self.submit(Input::Query { serializable, query })?;
        self.wait(rx).await
    }

    pub async fn status(&self) -> Result<NodeStatus, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Input::Status(tx))?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(s)) => Ok(s),
            _ => Err(NodeError::Unavailable("no status from the driver".into())),
        }
    }

    /// Runs `f` on this node's store and status at once, even while the
    /// node is crashed (for inspection hooks; may be stale).
    pub async fn inspect<T, F>(&self, f: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&Store, &NodeStatus) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(Input::Inspect(Box::new(move |store: &Store, status: &NodeStatus| {
            let _ = tx.send(f(store, status));
        })))?;
        rx.await
            .map_err(|_| NodeError::Unavailable("node shutting down".into()))
    }

    /// The log entries this node holds (after its snapshot).
    pub async fn log(&self) -> Result<Vec<triton_raft::Entry>, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Input::Log(tx))?;
        rx.await
            .map_err(|_| NodeError::Unavailable("node shutting down".into()))
    }

    /// Campaign now (operator "set leader"). The election overrides the
    /// voters' leader lease, so only for clusters with
    /// `timing.lease_reads = false` (or whose old leader is known dead):
    /// otherwise a cut-off old leader may answer reads on its lease after
    /// this node wins.
    pub fn campaign(&self) -> Result<(), NodeError> {
        self.submit(Input::Campaign)
    }

    /// Leader only: replicate now instead of at the next heartbeat.
    pub fn heartbeat(&self) -> Result<(), NodeError> {
        self.submit(Input::Heartbeat)
    }

    pub fn control(&self, op: ControlOp) -> Result<(), NodeError> {
        self.submit(Input::Control(op))
    }

    /// The config entry of a node by Raft id.
    pub fn node_config(&self, raft_id: NodeId) -> Option<&NodeConfig> {
        self.config
            .nodes
            .iter()
            .find(|n| ClusterConfig::raft_id(n.id) == raft_id)
    }

    /// The gRPC address of member `raft_id` ("" if unknown).
    pub fn member_addr(&self, raft_id: NodeId) -> String {
        let book = self.addresses.read().expect("address book lock");
        match book.get(raft_id) {
            Some(a) => a.to_string(),
            None => self.node_config(raft_id).map(|n| n.addr.clone()).unwrap_or_default(),
        }
    }

    /// gRPC status for a node error (leader address in metadata on a redirect).
    pub fn grpc_status(&self, e: NodeError) -> Status {
        match e {
            NodeError::NotLeader { leader } => {
                let addr = leader.map(|l| self.member_addr(l)).unwrap_or_default();
                let mut s = Status::failed_precondition(format!("not the leader; leader is {addr:?}"));
                if let Ok(v) = MetadataValue::try_from(addr.as_str()) {
                    s.metadata_mut().insert(LEADER_METADATA, v);
                }
                s
            }
            NodeError::Unavailable(why) | NodeError::Rejected(why) => Status::unavailable(why),
            NodeError::Timeout => Status::deadline_exceeded("timed out; the outcome is unknown"),
            e @ NodeError::TooLarge { .. } => Status::invalid_argument(e.to_string()),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), Status> {
        if key.is_empty() || key.len() > self.max_key_bytes {
            return Err(Status::invalid_argument(format!(
                "key must be 1 to {} bytes, got {}",
                self.max_key_bytes,
                key.len()
            )));
        }
        if key.starts_with(triton_store::FILE_KEY_PREFIX) {
            return Err(Status::invalid_argument(format!(
                "keys starting with {:?} belong to the file server",
                String::from_utf8_lossy(triton_store::FILE_KEY_PREFIX)
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), Status> {
        if value.len() > self.max_value_bytes {
            return Err(Status::invalid_argument(format!(
                "value larger than {} bytes",
                self.max_value_bytes
            )));
        }
        Ok(())
    }

    async fn kv_write(&self, session: Option<PbSession>, op: WriteOp) -> Result<WriteResult, Status> {
        let s = session.ok_or_else(|| Status::invalid_argument("writes need a session (client_id, seq)"))?;
        if s.client_id == 0 || s.seq == 0 {
            return Err(Status::invalid_argument("session client_id and seq must be non-zero"));
        }
        let session = Session {
            client_id: s.client_id,
            seq: s.seq,
        };
        match self.write(Some(session), op).await.map_err(|e| self.grpc_status(e))? {
            WriteResult::StaleSession => Err(Status::failed_precondition(
                "stale session sequence number: the original result is no longer known",
            )),
            // ABORTED, which the client tells apart: nothing was applied, and
            // it starts a new session.
            WriteResult::SessionExpired => Err(Status::aborted(
                "unknown session: never registered, or forgotten by the cluster; register a new one",
            )),
            WriteResult::Malformed => Err(Status::internal("the command could not be decoded")),
            WriteResult::TooLarge => Err(Status::invalid_argument("key or value exceeds the store's limits")),
            r => Ok(r),
        }
    }
}

pub struct KvService {
    pub node: NodeHandle,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let req = request.into_inner();
        self.node.check_key(&req.key)?;
        let key = req.key;
        let found = self
            .node
            .query(req.serializable, move |store| {
                store.get(&key, now_ms()).map(|e| (e.value.to_vec(), e.version))
            })
            .await
            .map_err(|e| self.node.grpc_status(e))?;
        let mut response = Response::new(match found {
            Some((value, version)) => GetResponse {
                found: true,
                value,
                version,
            },
            None => GetResponse::default(),
        });
        // A follower served this linearizable read by asking the leader;
        // the leader answers on its lease without that round trip, so tell
        // the client where it is.
        let leader = self.node.leader.load(Ordering::Relaxed);
        if !req.serializable && leader != 0 && leader != self.node.raft_id {
            if let Ok(v) = MetadataValue::try_from(self.node.member_addr(leader).as_str()) {
                response.metadata_mut().insert(LEADER_METADATA, v);
            }
        }
        Ok(response)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = request.into_inner();
        self.node.check_key(&req.key)?;
        self.node.check_value(&req.value)?;
        let op = WriteOp::Put {
            key: req.key,
            value: req.value,
            expires_at_ms: 0,
        };
        let r = self.node.kv_write(req.session, op).await?;
        Ok(Response::new(write_response(r)))
    }

    async fn append(&self, request: Request<AppendRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = request.into_inner();
        self.node.check_key(&req.key)?;
        self.node.check_value(&req.value)?;
        let op = WriteOp::Append {
            key: req.key,
            value: req.value,
        };
        let r = self.node.kv_write(req.session, op).await?;
        Ok(Response::new(write_response(r)))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = request.into_inner();
        self.node.check_key(&req.key)?;
        let r = self
            .node
            .kv_write(req.session, WriteOp::Delete { key: req.key })
            .await?;
        Ok(Response::new(write_response(r)))
    }

    async fn register_session(
        &self,
        _: Request<RegisterSessionRequest>,
    ) -> Result<Response<RegisterSessionResponse>, Status> {
        let r = self
            .node
            .write(None, WriteOp::RegisterSession)
            .await
            .map_err(|e| self.node.grpc_status(e))?;
        match r {
            WriteResult::Registered { client_id } => Ok(Response::new(RegisterSessionResponse { client_id })),
            other => Err(Status::internal(format!("registration answered {other:?}"))),
        }
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let s = self.node.status().await.map_err(|e| self.node.grpc_status(e))?;
        let leader_addr = s.leader.map(|l| self.node.member_addr(l)).unwrap_or_default();
        Ok(Response::new(StatusResponse {
            id: s.raft_id - 1,
            role: s.role,
            term: s.term,
            leader: s.leader.map(|l| l - 1),
            leader_addr,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            last_index: s.last_index,
            snapshot_index: s.snapshot_index,
        }))
    }
}

fn write_response(r: WriteResult) -> WriteResponse {
    match r {
        WriteResult::Put { version } | WriteResult::Append { version } => WriteResponse { version, existed: true },
        WriteResult::Delete { existed } => WriteResponse { version: 0, existed },
        other => {
            tracing::error!("unexpected result for a KV write: {other:?}");
            WriteResponse::default()
        }
    }
}

/// Test and fault hooks, refused unless the config enables them.
pub struct ControlService {
    pub node: NodeHandle,
    pub enabled: bool,
}

impl ControlService {
    fn check(&self) -> Result<(), Status> {
        if self.enabled {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "test RPCs are disabled; start the node with enable_test_rpcs = true in its config",
            ))
        }
    }

    fn op(&self, op: ControlOp) -> Result<Response<ControlEmpty>, Status> {
        self.check()?;
        self.node.control(op).map_err(|e| self.node.grpc_status(e))?;
        Ok(Response::new(ControlEmpty {}))
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn crash(&self, _: Request<ControlEmpty>) -> Result<Response<ControlEmpty>, Status> {
        self.op(ControlOp::Crash)
    }

    async fn restore(&self, _: Request<ControlEmpty>) -> Result<Response<ControlEmpty>, Status> {
        self.op(ControlOp::Restore)
    }

    async fn is_crashed(&self, _: Request<ControlEmpty>) -> Result<Response<CrashState>, Status> {
        self.check()?;
        let (tx, rx) = oneshot::channel();
        self.node
            .control(ControlOp::IsCrashed(tx))
            .map_err(|e| self.node.grpc_status(e))?;
        let crashed = rx.await.map_err(|_| Status::unavailable("node shutting down"))?;
        Ok(Response::new(CrashState { crashed }))
    }

    async fn make_unreachable_from(&self, request: Request<NodeIds>) -> Result<Response<ControlEmpty>, Status> {
        self.check()?;
        // User-facing ids start at 0; Raft ids at 1.
        let ids = request
            .into_inner()
            .ids
            .into_iter()
            .map(|id| {
                ClusterConfig::checked_raft_id(id)
                    .ok_or_else(|| Status::invalid_argument(format!("node id {id} is out of range")))
            })
            .collect::<Result<HashSet<NodeId>, Status>>()?;
        self.op(ControlOp::Unreachable(ids))
    }

    async fn drop_next_replies(&self, request: Request<DropReplies>) -> Result<Response<ControlEmpty>, Status> {
        self.op(ControlOp::DropReplies(request.into_inner().count))
    }
}
