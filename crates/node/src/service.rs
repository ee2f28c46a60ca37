//! The client-facing gRPC services: the key-value face and the test/fault
//! control service (refused unless enabled in the config).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use triton_proto::control::control_server::Control;
use triton_proto::control::{ControlEmpty, CrashState, DropReplies, NodeIds};
use triton_proto::kv::kv_server::Kv;
use triton_proto::kv::{
    AppendRequest, DeleteRequest, GetRequest, GetResponse, PutRequest, Session as PbSession, StatusRequest,
    StatusResponse, WriteResponse,
};
use triton_raft::NodeId;
use triton_store::{Command, Session, WriteOp, WriteResult};

use crate::driver::{now_ms, ControlOp, Input, NodeError, NodeStatus};

/// The metadata key naming the leader's address on a redirect.
pub const LEADER_METADATA: &str = "triton-leader";

/// What every service needs: the way to the driver and the cluster's
/// addresses (to name the leader on a redirect).
#[derive(Clone)]
pub struct NodeHandle {
    pub driver: Sender<Input>,
    /// Raft id -> client-facing gRPC address.
    pub addrs: HashMap<NodeId, String>,
    pub request_timeout: Duration,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

impl NodeHandle {
    fn submit(&self, input: Input) -> Result<(), Status> {
        match self.driver.try_send(input) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Status::resource_exhausted("node overloaded; retry later")),
            Err(TrySendError::Disconnected(_)) => Err(Status::unavailable("node shutting down")),
        }
    }

    async fn wait<T>(&self, rx: oneshot::Receiver<Result<T, NodeError>>) -> Result<T, Status> {
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(self.status_of(e)),
            // The driver dropped the reply (e.g. a test dropping replies).
            Ok(Err(_)) => Err(Status::deadline_exceeded("no reply")),
            Err(_) => Err(Status::deadline_exceeded("request timed out; the outcome is unknown")),
        }
    }

    fn status_of(&self, e: NodeError) -> Status {
        match e {
            NodeError::NotLeader { leader } => {
                let addr = leader.and_then(|l| self.addrs.get(&l)).cloned().unwrap_or_default();
                let mut s = Status::failed_precondition(format!("not the leader; leader is {addr:?}"));
                if let Ok(v) = MetadataValue::try_from(addr.as_str()) {
                    s.metadata_mut().insert(LEADER_METADATA, v);
                }
                s
            }
            NodeError::Unavailable(why) => Status::unavailable(why),
            NodeError::Timeout => Status::deadline_exceeded("timed out; the outcome is unknown"),
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
        Ok(())
    }

    async fn write(&self, session: Option<PbSession>, op: WriteOp) -> Result<WriteResult, Status> {
        let s = session.ok_or_else(|| Status::invalid_argument("writes need a session (client_id, seq)"))?;
        if s.client_id == 0 || s.seq == 0 {
            return Err(Status::invalid_argument("session client_id and seq must be non-zero"));
        }
        let cmd = Command {
            session: Some(Session {
                client_id: s.client_id,
                seq: s.seq,
            }),
            now_ms: now_ms(),
            op,
        };
        let (tx, rx) = oneshot::channel();
        self.submit(Input::Write {
            data: cmd.encode(),
            reply: tx,
        })?;
        match self.wait(rx).await? {
            WriteResult::StaleSession => Err(Status::failed_precondition(
                "stale session sequence number: the original result is no longer known",
            )),
            WriteResult::Malformed => Err(Status::internal("the command could not be decoded")),
            r => Ok(r),
        }
    }

    pub async fn status(&self) -> Result<NodeStatus, Status> {
        let (tx, rx) = oneshot::channel();
        self.submit(Input::Status(tx))?;
        tokio::time::timeout(self.request_timeout, rx)
            .await
            .map_err(|_| Status::deadline_exceeded("status timed out"))?
            .map_err(|_| Status::unavailable("node shutting down"))
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
        let (tx, rx) = oneshot::channel();
        self.node.submit(Input::Read {
            key: req.key,
            serializable: req.serializable,
            reply: tx,
        })?;
        let found = self.node.wait(rx).await?;
        Ok(Response::new(match found {
            Some((value, version)) => GetResponse {
                found: true,
                value,
                version,
            },
            None => GetResponse::default(),
        }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = request.into_inner();
        self.node.check_key(&req.key)?;
        if req.value.len() > self.node.max_value_bytes {
            return Err(Status::invalid_argument(format!(
                "value larger than {} bytes",
                self.node.max_value_bytes
            )));
        }
        let op = WriteOp::Put {
            key: req.key,
            value: req.value,
            expires_at_ms: 0,
        };
        let r = self.node.write(req.session, op).await?;
        Ok(Response::new(write_response(r)))
    }

    async fn append(&self, request: Request<AppendRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = request.into_inner();
        self.node.check_key(&req.key)?;
        if req.value.len() > self.node.max_value_bytes {
            return Err(Status::invalid_argument(format!(
                "value larger than {} bytes",
                self.node.max_value_bytes
            )));
        }
        let op = WriteOp::Append {
            key: req.key,
            value: req.value,
        };
        let r = self.node.write(req.session, op).await?;
        Ok(Response::new(write_response(r)))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<WriteResponse>, Status> {
        let req = request.into_inner();
        self.node.check_key(&req.key)?;
        let r = self.node.write(req.session, WriteOp::Delete { key: req.key }).await?;
        Ok(Response::new(write_response(r)))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let s = self.node.status().await?;
        let leader_addr = s
            .leader
            .and_then(|l| self.node.addrs.get(&l))
            .cloned()
            .unwrap_or_default();
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
        self.node.submit(Input::Control(op))?;
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
        self.node.submit(Input::Control(ControlOp::IsCrashed(tx)))?;
        let crashed = rx.await.map_err(|_| Status::unavailable("node shutting down"))?;
        Ok(Response::new(CrashState { crashed }))
    }

    async fn make_unreachable_from(&self, request: Request<NodeIds>) -> Result<Response<ControlEmpty>, Status> {
        // User-facing ids start at 0; Raft ids at 1.
        let ids: HashSet<NodeId> = request.into_inner().ids.into_iter().map(|id| id + 1).collect();
        self.op(ControlOp::Unreachable(ids))
    }

    async fn drop_next_replies(&self, request: Request<DropReplies>) -> Result<Response<ControlEmpty>, Status> {
        self.op(ControlOp::DropReplies(request.into_inner().count))
    }
}
