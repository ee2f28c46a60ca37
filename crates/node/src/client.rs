//! A key-value client that finds the leader by itself: it follows redirects,
//! moves on from unreachable nodes, and retries writes with the same session
//! sequence number so each write is applied exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Status};
use triton_proto::kv::kv_client::KvClient as PbClient;
use triton_proto::kv::{
    AppendRequest, DeleteRequest, GetRequest, PutRequest, RegisterSessionRequest, Session, StatusRequest,
    StatusResponse,
};

use crate::service::LEADER_METADATA;
use crate::tls::Dialer;

/// Longest pause between attempts while no leader answers. Polling a few
/// times per election timeout finds the new leader within about this long
/// of its election (the tail of `triton bench failover`), at the cost of a
/// few cheap refused calls per client while the election runs.
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Sessions one write may go through: the cluster can forget a session
/// between its registration and its first write only under heavy churn.
const SESSION_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node answered in time: a write may or may not have happened.
    #[error("no answer within {0:?}; the outcome is unknown ({1})")]
    Unknown(Duration, String),
    /// The cluster refused the request for good (bad input, stale session).
    #[error("request refused: {0}")]
    Refused(String),
    /// The cluster forgot this client's session (ABORTED). The write
    /// methods handle it themselves and never return it.
    #[error("session expired ({0})")]
    SessionExpired(String),
    #[error("no endpoints given")]
    NoEndpoints,
    /// The config's TLS files could not be used.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

impl ClientError {
    /// True when a write may have been applied despite the error.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ClientError::Unknown(..))
    }
}

/// The result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub value: Vec<u8>,
    pub version: u64,
}

pub struct KvClient {
    endpoints: Vec<String>,
    /// Plaintext or TLS, as the cluster serves.
    dialer: Dialer,
    channels: HashMap<String, PbClient<Channel>>,
    /// Where we think the leader is (an index into `endpoints`, or an
    /// address learned from a redirect).
    leader: Option<String>,
    next: usize,
    /// The registered session's id; registered before the first write, and
    /// again after the cluster forgot it.
    client_id: Option<u64>,
    seq: u64,
    /// Per attempt.
    pub attempt_timeout: Duration,
    /// Over all attempts of one request.
    pub deadline: Duration,
}

impl KvClient {
    /// A plaintext client (for clusters without `[tls]`).
    pub fn new(endpoints: Vec<String>) -> Result<Self, ClientError> {
        KvClient::with_dialer(endpoints, Dialer::plaintext())
    }

    /// A client that connects as `config` says: TLS with its CA and its
    /// certificate as the client identity when it has `[tls]`.
    pub fn with_config(endpoints: Vec<String>, config: &triton_config::ClusterConfig) -> Result<Self, ClientError> {
        let dialer = Dialer::from_config(config).map_err(|e| ClientError::Tls(format!("{e:#}")))?;
        KvClient::with_dialer(endpoints, dialer)
    }

    /// A client that connects with `dialer`.
    pub fn with_dialer(endpoints: Vec<String>, dialer: Dialer) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(KvClient {
            endpoints,
            dialer,
            channels: HashMap::new(),
            leader: None,
            next: 0,
            client_id: None,
            seq: 0,
            attempt_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(30),
        })
    }

    /// The node the next request goes to first, if the client has learnt
    /// where the leader is.
    pub fn leader_hint(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The session's id, once the first write has registered it.
    pub fn client_id(&self) -> Option<u64> {
        self.client_id
    }

    fn channel(&mut self, addr: &str) -> Result<PbClient<Channel>, Status> {
        if let Some(c) = self.channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = self
            .dialer
            .endpoint(addr)
            .map_err(|e| Status::invalid_argument(format!("{e:#}")))?
            .connect_timeout(Duration::from_millis(500));
        let client = PbClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        self.channels.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    fn target(&mut self) -> String {
        if let Some(l) = &self.leader {
            return l.clone();
        }
        let addr = self.endpoints[self.next % self.endpoints.len()].clone();
        self.next += 1;
        addr
    }

    /// Runs `call` against the leader, following redirects and retrying
    /// until it succeeds, is refused, or the deadline passes.
    async fn with_retries<T, F, Fut>(&mut self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(PbClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let start = Instant::now();
        let mut last = String::from("no attempt");
        let mut pause = Duration::from_millis(10);
        // Whether an attempt ended without an answer (it may still apply).
        let mut maybe_applied = false;
        while start.elapsed() < self.deadline {
            let addr = self.target();
            let client = match self.channel(&addr) {
                Ok(c) => c,
                Err(s) => return Err(ClientError::Refused(s.message().to_string())),
            };
            match tokio::time::timeout(self.attempt_timeout, call(client)).await {
                Ok(Ok(v)) => {
                    self.leader = Some(addr);
                    return Ok(v);
                }
                Ok(Err(status)) => {
                    last = format!("{addr}: {}", status.message());
                    match status.code() {
                        Code::FailedPrecondition if status.metadata().contains_key(LEADER_METADATA) => {
                            let hint = status
                                .metadata()
                                .get(LEADER_METADATA)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            self.leader = (!hint.is_empty() && hint != addr).then_some(hint);
                            if self.leader.is_none() {
                                tokio::time::sleep(pause).await; // an election is under way
                                pause = (pause * 2).min(MAX_RETRY_PAUSE);
                            }
                        }
                        // The session was forgotten: if an earlier attempt of
                        // this request may have landed, its outcome is unknown.
                        Code::Aborted if maybe_applied => {
                            self.renew_session();
                            return Err(ClientError::Unknown(self.deadline, last));
                        }
                        Code::Aborted => return Err(ClientError::SessionExpired(last)),
                        // OutOfRange: a request over the message limit (tonic's
                        // code for it); it would be refused again.
                        Code::InvalidArgument
                        | Code::FailedPrecondition
                        | Code::PermissionDenied
                        | Code::OutOfRange => {
                            return Err(ClientError::Refused(status.message().to_string()));
                        }
                        _ => {
                            maybe_applied = true;
                            self.leader = None;
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(MAX_RETRY_PAUSE);
                        }
                    }
                }
                Err(_) => {
                    maybe_applied = true;
                    last = format!("{addr}: attempt timed out");
                    self.leader = None;
                }
            }
        }
        Err(ClientError::Unknown(self.deadline, last))
    }

    /// Forgets our session after the cluster forgot it: the next write
    /// registers a new one.
    fn renew_session(&mut self) {
        self.client_id = None;
        self.seq = 0;
    }

    /// The session for our next write: registers one first if we have none
    /// (a registration that is retried only opens a session nobody uses).
    async fn next_session(&mut self) -> Result<Session, ClientError> {
        let client_id = match self.client_id {
            Some(id) => id,
            None => {
                let r = self
                    .with_retries(|mut c| async move {
                        c.register_session(RegisterSessionRequest {})
                            .await
                            .map(|r| r.into_inner())
                    })
                    .await?;
                if r.client_id == 0 {
                    return Err(ClientError::Refused("the cluster registered session 0".into()));
                }
                self.client_id = Some(r.client_id);
                self.seq = 0;
                r.client_id
            }
        };
        self.seq += 1;
        Ok(Session {
            client_id,
            seq: self.seq,
        })
    }

    /// A linearizable read (or a possibly stale one with `serializable`).
    pub async fn get_with(&mut self, key: &[u8], serializable: bool) -> Result<Option<Value>, ClientError> {
        let req = GetRequest {
            key: key.to_vec(),
            serializable,
        };
        let (r, leader) = self
            .with_retries(|mut c| {
                let req = req.clone();
                async move {
                    c.get(req).await.map(|r| {
                        let leader = r.metadata().get(LEADER_METADATA).and_then(|v| v.to_str().ok());
                        let leader = leader.filter(|a| !a.is_empty()).map(str::to_string);
                        (r.into_inner(), leader)
                    })
                }
            })
            .await?;
        if leader.is_some() {
            // A follower answered and named the leader: later linearizable
            // reads go there (the leader answers on its lease, a follower
            // has to ask it first).
            self.leader = leader;
        }
        Ok(r.found.then_some(Value {
            value: r.value,
            version: r.version,
        }))
    }

    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Value>, ClientError> {
        self.get_with(key, false).await
    }

    /// Sets `key`; returns the new version.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<u64, ClientError> {
        let build = |session| PutRequest {
            session: Some(session),
            key: key.to_vec(),
            value: value.to_vec(),
        };
        let r = self
            .write(
                build,
                |mut c, req| async move { c.put(req).await.map(|r| r.into_inner()) },
            )
            .await?;
        Ok(r.version)
    }

    /// Appends to `key`; returns the new version.
    pub async fn append(&mut self, key: &[u8], value: &[u8]) -> Result<u64, ClientError> {
        let build = |session| AppendRequest {
            session: Some(session),
            key: key.to_vec(),
            value: value.to_vec(),
        };
        let r = self
            .write(build, |mut c, req| async move {
                c.append(req).await.map(|r| r.into_inner())
            })
            .await?;
        Ok(r.version)
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&mut self, key: &[u8]) -> Result<bool, ClientError> {
        let build = |session| DeleteRequest {
            session: Some(session),
            key: key.to_vec(),
        };
        let r = self
            .write(build, |mut c, req| async move {
                c.delete(req).await.map(|r| r.into_inner())
            })
            .await?;
        Ok(r.existed)
    }

    /// One write: the request `build` makes for the next seq of our
    /// session, sent by `send` with retries, and sent again in a new session
    /// if the cluster forgot ours and applied nothing.
    async fn write<R, T, B, S, Fut>(&mut self, build: B, send: S) -> Result<T, ClientError>
    where
        R: Clone,
        B: Fn(Session) -> R,
        S: Fn(PbClient<Channel>, R) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        // A fresh session is forgotten again only if the cluster's session
        // table turned over between its registration and its first write.
        for _ in 0..SESSION_ATTEMPTS - 1 {
            let req = build(self.next_session().await?);
            let r = self.with_retries(|c| send(c, req.clone())).await;
            if let Some(v) = self.in_live_session(r)? {
                return Ok(v);
            }
        }
        let req = build(self.next_session().await?);
        self.with_retries(|c| send(c, req.clone())).await
    }

    /// A write's result, or `None` to send it again in a new session: the
    /// cluster forgot ours (or never had it) and applied nothing.
    fn in_live_session<T>(&mut self, r: Result<T, ClientError>) -> Result<Option<T>, ClientError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::SessionExpired(_)) => {
                self.renew_session();
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The status of one node (no redirects).
    pub async fn status_of(&mut self, addr: &str) -> Result<StatusResponse, ClientError> {
        let mut c = self
            .channel(addr)
            .map_err(|s| ClientError::Refused(s.message().to_string()))?;
        match tokio::time::timeout(self.attempt_timeout, c.status(StatusRequest {})).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(ClientError::Unknown(self.attempt_timeout, s.message().to_string())),
            Err(_) => Err(ClientError::Unknown(
                self.attempt_timeout,
                format!("{addr} did not answer"),
            )),
        }
    }
}
