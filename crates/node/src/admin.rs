//! Operator RPCs: membership changes and leadership transfer (the `Admin`
//! service of `admin.proto`), and the client `triton admin` and
//! `triton server --join` use to call them.
//!
//! Changes need the config's admin token and are refused when the config
//! sets none (so a cluster without a token cannot be reconfigured by
//! whoever reaches its port); `Members` answers anyone. Ids on the wire are
//! the config's user-facing ids; the Raft core numbers from 1
//! ([`ClusterConfig::raft_id`]).

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use triton_config::ClusterConfig;
use triton_proto::admin::admin_client::AdminClient as PbClient;
use triton_proto::admin::admin_server::Admin;
use triton_proto::admin::{AddLearnerRequest, AdminEmpty, NodeRef};
pub use triton_proto::admin::{Member, MembersReply};
use triton_raft::{ConfChange, NodeId};

use crate::auth::{check_admin, with_token};
use crate::driver::{user_id, AdminError, Input, NodeError, NodeStatus};
use crate::members::valid_addr;
use crate::service::{NodeHandle, LEADER_METADATA};
use crate::tls::Dialer;

/// How long a membership change may take to be applied before the caller
/// hears "unknown" (it may still complete; `members` tells).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AdminService {
    pub node: NodeHandle,
}

impl AdminService {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.node.config.admin_token.is_none() {
            return Err(Status::permission_denied(
                "admin RPCs are disabled: set admin_token in the cluster config to enable them",
            ));
        }
        check_admin(&self.node.config, request)
    }

    fn admin_status(&self, e: AdminError) -> Status {
        match e {
            AdminError::Node(e) => self.node.grpc_status(e),
            AdminError::Refused(why) => Status::failed_precondition(why),
        }
    }

    async fn members_reply(&self) -> Result<MembersReply, Status> {
        let status = self.node.status().await.map_err(|e| self.node.grpc_status(e))?;
        Ok(members_reply(&status, &self.node))
    }

    async fn change(&self, change: ConfChange, addr: Option<String>) -> Result<Response<MembersReply>, Status> {
        let (tx, rx) = oneshot::channel();
        self.node
            .driver
            .try_send(Input::ConfChange {
                change,
                addr,
                reply: tx,
            })
            .map_err(|_| Status::unavailable("node overloaded or shutting down"))?;
        match tokio::time::timeout(CHANGE_TIMEOUT, rx).await {
            Ok(Ok(Ok(_))) => Ok(Response::new(self.members_reply().await?)),
            Ok(Ok(Err(e))) => Err(self.admin_status(e)),
            Ok(Err(_)) | Err(_) => Err(Status::deadline_exceeded(
                "the change was proposed but not applied in time; check `triton admin members`",
            )),
        }
    }
}

/// The membership as `status` shows it, with addresses and progress.
pub fn members_reply(status: &NodeStatus, node: &NodeHandle) -> MembersReply {
    let m = &status.membership;
    let book = node.addresses.read().expect("address book lock");
    let matched = |id: NodeId| {
        if id == status.raft_id {
            status.last_index
        } else {
            status
                .metrics
                .peers
                .iter()
                .find(|p| p.id == id)
                .map_or(0, |p| p.matched)
        }
    };
    let members = m
        .all_nodes()
        .into_iter()
        .map(|id| Member {
            id: user_id(id),
            addr: book.get(id).unwrap_or_default().to_string(),
            role: m.role_of(id).into(),
            matched: matched(id),
        })
        .collect();
    MembersReply {
        members,
        leader: status.leader.map(user_id),
        term: status.term,
        commit_index: status.commit_index,
        joint: !m.voters_outgoing.is_empty(),
        answered_by: user_id(status.raft_id),
    }
}

/// Raft's id for a node id in a request; out of range is the caller's error.
fn request_raft_id(id: u64) -> Result<u64, Status> {
    ClusterConfig::checked_raft_id(id).ok_or_else(|| Status::invalid_argument(format!("node id {id} is out of range")))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn members(&self, _request: Request<AdminEmpty>) -> Result<Response<MembersReply>, Status> {
        Ok(Response::new(self.members_reply().await?))
    }

    async fn add_learner(&self, request: Request<AddLearnerRequest>) -> Result<Response<MembersReply>, Status> {
        self.authorize(&request)?;
        let r = request.into_inner();
        if let Err(why) = triton_config::check_host_port(&r.addr).and_then(|()| {
            valid_addr(&r.addr)
                .then_some(())
                .ok_or_else(|| format!("address {:?} cannot be stored", r.addr))
        }) {
            return Err(Status::invalid_argument(format!(
                "address {:?} is not host:port: {why}",
                r.addr
            )));
        }
        let id = request_raft_id(r.id)?;
        self.change(ConfChange::AddLearner(id), Some(r.addr)).await
    }

    async fn promote(&self, request: Request<NodeRef>) -> Result<Response<MembersReply>, Status> {
        self.authorize(&request)?;
        let id = request_raft_id(request.into_inner().id)?;
        self.change(ConfChange::Promote(id), None).await
    }

    async fn remove(&self, request: Request<NodeRef>) -> Result<Response<MembersReply>, Status> {
        self.authorize(&request)?;
        let id = request_raft_id(request.into_inner().id)?;
        self.change(ConfChange::Remove(id), None).await
    }

    async fn transfer_leader(&self, request: Request<NodeRef>) -> Result<Response<MembersReply>, Status> {
        self.authorize(&request)?;
        let to = request_raft_id(request.into_inner().id)?;
        let (tx, rx) = oneshot::channel();
        self.node
            .driver
            .try_send(Input::TransferLeader { to, reply: tx })
            .map_err(|_| Status::unavailable("node overloaded or shutting down"))?;
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.admin_status(e)),
            Err(_) => {
                return Err(self
                    .node
                    .grpc_status(NodeError::Unavailable("node shutting down".into())))
            }
        }
        // Wait (briefly) until the target leads, so the caller sees it done.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            let status = self.node.status().await.map_err(|e| self.node.grpc_status(e))?;
            if status.leader == Some(to) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Response::new(self.members_reply().await?))
    }
}

/// An admin call to make, for [`AdminClient::call`].
#[derive(Clone, Debug)]
pub enum AdminCall {
    Members,
    AddLearner { id: u64, addr: String },
    Promote(u64),
    Remove(u64),
    TransferLeader(u64),
}

/// Calls the Admin service of a cluster: tries the endpoints in turn and
/// follows redirects to the leader for changes.
pub struct AdminClient {
    endpoints: Vec<String>,
    config: ClusterConfig,
    dialer: Dialer,
    pub deadline: Duration,
}

impl AdminClient {
    /// `config` supplies the token and TLS settings (its node list is not
    /// used: `endpoints` say where to go).
    pub fn new(endpoints: Vec<String>, config: ClusterConfig) -> anyhow::Result<AdminClient> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints given");
        let dialer = Dialer::from_config(&config)?;
        Ok(AdminClient {
            endpoints,
            config,
            dialer,
            deadline: Duration::from_secs(15),
        })
    }

    async fn connect(&self, addr: &str) -> anyhow::Result<PbClient<Channel>> {
        let channel = self
            .dialer
            .endpoint(addr)?
            .connect_timeout(Duration::from_secs(1))
            .timeout(CHANGE_TIMEOUT + Duration::from_secs(2))
            .connect()
            .await?;
        Ok(PbClient::new(channel))
    }

    async fn call_once(&self, addr: &str, call: &AdminCall) -> Result<MembersReply, CallError> {
        let mut client = self
            .connect(addr)
            .await
            .map_err(|e| CallError::Unreachable(format!("{e:#}")))?;
        let config = &self.config;
        let result = match call.clone() {
            AdminCall::Members => client.members(with_token(AdminEmpty {}, config)).await,
            AdminCall::AddLearner { id, addr } => {
                client
                    .add_learner(with_token(AddLearnerRequest { id, addr }, config))
                    .await
            }
            AdminCall::Promote(id) => client.promote(with_token(NodeRef { id }, config)).await,
            AdminCall::Remove(id) => client.remove(with_token(NodeRef { id }, config)).await,
            AdminCall::TransferLeader(id) => client.transfer_leader(with_token(NodeRef { id }, config)).await,
        };
        result.map(Response::into_inner).map_err(CallError::Status)
    }

    /// Makes `call`, at the leader for changes. Retries unreachable nodes,
    /// redirects and "no leader yet" until the deadline; a refusal (bad
    /// token, impossible change) is returned at once.
    pub async fn call(&self, call: AdminCall) -> anyhow::Result<MembersReply> {
        let start = Instant::now();
        let mut next = 0usize;
        let mut target: Option<String> = None;
        let mut last_error = String::from("no endpoint answered");
        // A view of the members from a node that knows no leader: perhaps
        // one cut off or removed, whose view may be stale for good (a removed
        // node never hears of the changes after its removal). Used only if
        // no endpoint knows a leader.
        let mut leaderless: Option<MembersReply> = None;
        // An attempt whose outcome is unknown (no answer in time) may have
        // been applied: a refusal of the retry ("already a member") may then
        // mean the change is done.
        let mut maybe_applied = false;
        while start.elapsed() < self.deadline {
            if leaderless.is_some() && target.is_none() && next >= self.endpoints.len() {
                break; // every endpoint tried once, none knows a leader
            }
            let addr = target.take().unwrap_or_else(|| {
                next += 1;
                self.endpoints[(next - 1) % self.endpoints.len()].clone()
            });
            match self.call_once(&addr, &call).await {
                Ok(reply) if reply.leader.is_none() && matches!(call, AdminCall::Members) => {
                    leaderless.get_or_insert(reply);
                }
                Ok(reply) => return Ok(self.as_seen_by_leader(reply, &call).await),
                Err(CallError::Unreachable(e)) => last_error = format!("{addr}: {e}"),
                Err(CallError::Status(s)) => {
                    let leader = s
                        .metadata()
                        .get(LEADER_METADATA)
                        .and_then(|v| v.to_str().ok())
                        .filter(|a| !a.is_empty())
                        .map(str::to_string);
                    match s.code() {
                        Code::FailedPrecondition if s.message().starts_with("not the leader") => {
                            last_error = format!("{addr}: {}", s.message());
                            target = leader;
                            if target.is_none() {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                        Code::Unavailable | Code::DeadlineExceeded => {
                            last_error = format!("{addr}: {}", s.message());
                            maybe_applied = true;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        // Another change still in flight: wait for it.
                        Code::FailedPrecondition if s.message().contains("retry") => {
                            last_error = format!("{addr}: {}", s.message());
                            target = Some(addr);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        _ => {
                            if maybe_applied {
                                if let Some(done) = self.already_done(&call).await {
                                    return Ok(done);
                                }
                            }
                            anyhow::bail!("{addr}: {} ({:?})", s.message(), s.code())
                        }
                    }
                }
            }
        }
        if let Some(reply) = leaderless {
            return Ok(reply);
        }
        anyhow::bail!("gave up after {:?}: {last_error}", self.deadline)
    }
}

impl AdminClient {
    /// Members as the leader sees them (only it knows each member's
    /// replication progress): asks the leader again if someone else answered.
    /// The members as the leader sees them, if they show `call` (a change)
    /// already in effect outside a joint configuration: an earlier attempt
    /// whose answer was lost was applied.
    async fn already_done(&self, call: &AdminCall) -> Option<MembersReply> {
        let role =
            |members: &MembersReply, id: u64| members.members.iter().find(|m| m.id == id).map(|m| m.role.clone());
        if matches!(call, AdminCall::Members | AdminCall::TransferLeader(_)) {
            return None;
        }
        let members = Box::pin(self.call(AdminCall::Members)).await.ok()?;
        let done = !members.joint
            && match call {
                AdminCall::AddLearner { id, .. } => role(&members, *id).is_some(),
                AdminCall::Promote(id) => role(&members, *id).as_deref() == Some("voter"),
                AdminCall::Remove(id) => role(&members, *id).is_none(),
                AdminCall::Members | AdminCall::TransferLeader(_) => false,
            };
        done.then_some(members)
    }

    async fn as_seen_by_leader(&self, reply: MembersReply, call: &AdminCall) -> MembersReply {
        let Some(leader) = reply.leader.filter(|&l| l != reply.answered_by) else {
            return reply;
        };
        if !matches!(call, AdminCall::Members) {
            return reply;
        }
        let Some(addr) = reply.members.iter().find(|m| m.id == leader).map(|m| m.addr.clone()) else {
            return reply;
        };
        match self.call_once(&addr, call).await {
            Ok(better) => better,
            Err(_) => reply,
        }
    }
}

enum CallError {
    Unreachable(String),
    Status(Status),
}
