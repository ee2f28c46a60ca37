//! The metadata face: the course's `MetaStore` and `RaftSurfstore` gRPC
//! services on every metadata node's port, backed by the Raft-replicated
//! store.
//!
//! Every metadata call needs a majority: `UpdateFile` is a Raft write
//! (`WriteOp::SurfUpdate`, version rule enforced by the state machine), the
//! reads are linearizable (ReadIndex), so a node cut off from a majority
//! blocks until the node's request deadline and then fails rather than
//! answering stale data. On a follower, writes fail with FAILED_PRECONDITION
//! naming the leader (`triton-leader` metadata); reads are served through
//! the leader's ReadIndex.
//!
//! The `RaftSurfstore` hooks let the course's tests drive the cluster:
//! `SetLeader` campaigns, `SendHeartbeat` replicates now, `Crash`/`Restore`/
//! `IsCrashed`/`MakeServerUnreachableFrom` inject faults, `GetInternalState`
//! reports this node's view even while it is crashed. All of them answer
//! only when the config enables test RPCs (and with the admin token, when
//! the config sets one).
//!
//! A file entry (name and hash list) is not held to the config's
//! `max_value_bytes` (1 MiB by default, for KV values: at 4 kB blocks that
//! would cap a file at 64 MB). It must fit one replicated command
//! (`max_message_bytes`, which the node checks before proposing) and the
//! store's own cap, so a file of several GB syncs with the defaults.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tonic::service::Routes;
use tonic::{Request, Response, Status};
use triton_config::ClusterConfig;
use triton_node::auth::check_admin;
use triton_node::driver::{ControlOp, NodeError};
use triton_node::server::Face;
use triton_node::service::NodeHandle;
use triton_proto::surfstore::meta_store_server::{MetaStore, MetaStoreServer};
use triton_proto::surfstore::raft_surfstore_server::{RaftSurfstore, RaftSurfstoreServer};
use triton_proto::surfstore::{
    BlockHashes, BlockStoreAddrs, BlockStoreMap, FileInfoMap, FileMetaData, RaftInternalState, ServerStatus, Success,
    UnreachableFromServers, UpdateOperation, Version,
};
use triton_raft::EntryKind;
use triton_store::{Command, FileMeta, WriteOp, WriteResult};

use crate::ring::Ring;

/// The longest file name accepted, in bytes: the usual file-system limit
/// (NAME_MAX), so every client can create every file the service lists.
pub const MAX_FILENAME_BYTES: usize = 255;

/// Why a file name is refused, or `None` when it is acceptable.
///
/// Names become paths in every client's base directory, so anything that
/// could leave it (`/`, `..`), break the course's index format (`,`) or not
/// fit in a directory entry is refused at the source.
pub fn filename_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the file name is empty")
    } else if name.len() > MAX_FILENAME_BYTES {
        Some("the file name is longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("the file name is . or ..")
    } else if name.contains('/') {
        Some("the file name contains '/'")
    } else if name.contains(',') {
        Some("the file name contains ','")
    } else if name.chars().any(char::is_control) {
        // Tabs and newlines would break line formats such as `triton surf
        // mapping`'s `file<TAB>...`; NUL would truncate C paths.
        Some("the file name contains a control character")
    } else {
        None
    }
}

/// The metadata face for `triton server` (see the module docs).
#[derive(Default)]
pub struct SurfstoreFace;

impl Face for SurfstoreFace {
    fn add_routes(&mut self, node: &NodeHandle, routes: Routes) -> Routes {
        let svc = MetaService { node: node.clone() };
        let limit = usize::try_from(node.config.max_message_bytes).unwrap_or(usize::MAX);
        routes
            .add_service(MetaStoreServer::new(svc.clone()).max_decoding_message_size(limit))
            .add_service(RaftSurfstoreServer::new(svc).max_decoding_message_size(limit))
    }
}

/// Both services share this implementation.
#[derive(Clone)]
pub struct MetaService {
    node: NodeHandle,
}

fn to_pb(filename: String, meta: FileMeta) -> FileMetaData {
    FileMetaData {
        filename,
        version: meta.version,
        block_hash_list: meta.block_hashes,
    }
}

fn info_map(map: std::collections::BTreeMap<String, FileMeta>) -> FileInfoMap {
    FileInfoMap {
        file_info_map: map.into_iter().map(|(k, v)| (k.clone(), to_pb(k, v))).collect(),
    }
}

impl MetaService {
    /// A metadata service over `node` (for embedding without the face).
    pub fn new(node: NodeHandle) -> MetaService {
        MetaService { node }
    }

    fn err(&self, e: NodeError) -> Status {
        self.node.grpc_status(e)
    }

    fn check_test_rpcs(&self) -> Result<(), Status> {
        if self.node.config.enable_test_rpcs {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "test RPCs are disabled; start the node with enable_test_rpcs = true in its config",
            ))
        }
    }

    /// Waits for a linearizable read point: proves a majority is reachable
    /// (or fails after the node's deadline) before answering from config.
    async fn majority(&self) -> Result<(), Status> {
        self.node.query(false, |_| ()).await.map_err(|e| self.err(e))
    }

    async fn get_file_info_map(&self) -> Result<FileInfoMap, Status> {
        let map = self
            .node
            .query(false, |s| s.file_info_map())
            .await
            .map_err(|e| self.err(e))?;
        Ok(info_map(map))
    }

    async fn update_file(&self, meta: FileMetaData) -> Result<Version, Status> {
        if let Some(why) = filename_problem(&meta.filename) {
            return Err(Status::invalid_argument(format!("{why}: {:?}", meta.filename)));
        }
        if let Some(why) = crate::hash::hash_list_problem(&meta.block_hash_list) {
            return Err(Status::invalid_argument(format!("{:?}: {why}", meta.filename)));
        }
        let op = WriteOp::SurfUpdate {
            filename: meta.filename,
            version: meta.version,
            block_hashes: meta.block_hash_list,
        };
        match self.node.write(None, op).await.map_err(|e| self.err(e))? {
            WriteResult::SurfUpdate { version } => Ok(Version { version }),
            WriteResult::TooLarge => Err(Status::invalid_argument(format!(
                "file metadata (name and hash list) exceeds the replicated store's limit of {} bytes",
                triton_store::StoreOptions::default().max_value_bytes
            ))),
            other => Err(Status::internal(format!("unexpected write result {other:?}"))),
        }
    }

    fn ring(&self) -> Result<Ring, Status> {
        Ring::try_new(&self.node.config.block_stores)
            .ok_or_else(|| Status::failed_precondition("no block stores are configured (block_stores / BlockAddrs)"))
    }

    async fn get_block_store_map(&self, hashes: BlockHashes) -> Result<BlockStoreMap, Status> {
        let ring = self.ring()?;
        self.majority().await?;
        Ok(BlockStoreMap {
            block_store_map: ring
                .group(&hashes.hashes)
                .into_iter()
                .map(|(addr, hashes)| (addr, BlockHashes { hashes }))
                .collect(),
        })
    }

    async fn get_block_store_addrs(&self) -> Result<BlockStoreAddrs, Status> {
        self.majority().await?;
        Ok(BlockStoreAddrs {
            block_store_addrs: self.node.config.block_stores.clone(),
        })
    }

    /// This node's view for `GetInternalState`.
    async fn internal_state(&self) -> Result<RaftInternalState, Status> {
        let (status, term, commit, map) = self
            .node
            .inspect(|store, st| {
                let status = if st.crashed {
                    ServerStatus::Crashed
                } else if st.role == "leader" {
                    ServerStatus::Leader
                } else {
                    ServerStatus::Follower
                };
                (status, st.term, st.commit_index, store.file_info_map())
            })
            .await
            .map_err(|e| self.err(e))?;
        let log = self.node.log().await.map_err(|e| self.err(e))?;
        let log = log
            .into_iter()
            .filter(|e| e.kind == EntryKind::Command)
            .filter_map(|e| match Command::decode(&e.data).ok()?.op {
                WriteOp::SurfUpdate {
                    filename,
                    version,
                    block_hashes,
                } => Some(UpdateOperation {
                    term: i64::try_from(e.term).unwrap_or(i64::MAX),
                    file_meta_data: Some(FileMetaData {
                        filename,
                        version,
                        block_hash_list: block_hashes,
                    }),
                }),
                _ => None,
            })
            .collect();
        Ok(RaftInternalState {
            status: status as i32,
            term: i64::try_from(term).unwrap_or(i64::MAX),
            commit_index: i64::try_from(commit).unwrap_or(i64::MAX),
            log,
            meta_map: Some(info_map(map)),
        })
    }

    async fn set_leader(&self) -> Result<Success, Status> {
        let st = self.node.status().await.map_err(|e| self.err(e))?;
        if st.crashed {
            return Err(Status::unavailable("this node is crashed"));
        }
        if st.role != "leader" {
            if self.node.config.timing.lease_reads {
                // A forced election's votes override followers' lease
                // promises, so a cut-off old leader could keep answering
                // reads on its lease after this node wins.
                return Err(Status::failed_precondition(
                    "SetLeader forces an election, which would break leader leases; set lease_reads = false under [timing] in the cluster config to use it",
                ));
            }
            self.node.campaign().map_err(|e| self.err(e))?;
        }
        let deadline = Instant::now() + self.node.request_timeout;
        loop {
            let st = self.node.status().await.map_err(|e| self.err(e))?;
            if st.role == "leader" {
                return Ok(Success { flag: true });
            }
            if Instant::now() >= deadline || st.crashed {
                return Ok(Success { flag: false });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Replicates now; `flag` says whether a majority answered the round.
    async fn send_heartbeat(&self) -> Result<Success, Status> {
        let st = self.node.status().await.map_err(|e| self.err(e))?;
        if st.crashed {
            return Err(Status::unavailable("this node is crashed"));
        }
        if st.role != "leader" {
            return Err(self.err(NodeError::NotLeader { leader: st.leader }));
        }
        self.node.heartbeat().map_err(|e| self.err(e))?;
        // A ReadIndex round is a heartbeat round acknowledged by a majority:
        // once it completes, a majority has seen the leader's commit index.
        let round = tokio::time::timeout(Duration::from_secs(1), self.node.query(false, |_| ())).await;
        Ok(Success {
            flag: matches!(round, Ok(Ok(()))),
        })
    }

    async fn control(&self, op: ControlOp) -> Result<Success, Status> {
        self.check_test_rpcs()?;
        self.node.control(op).map_err(|e| self.err(e))?;
        Ok(Success { flag: true })
    }

    async fn is_crashed(&self) -> Result<Success, Status> {
        self.check_test_rpcs()?;
        let crashed = self.node.inspect(|_, st| st.crashed).await.map_err(|e| self.err(e))?;
        Ok(Success { flag: crashed })
    }

    async fn unreachable_from(&self, ids: UnreachableFromServers) -> Result<Success, Status> {
        self.check_test_rpcs()?;
        let known: HashSet<u64> = self.node.config.nodes.iter().map(|n| n.id).collect();
        let mut raft_ids = HashSet::new();
        for id in ids.server_ids {
            let id = u64::try_from(id)
                .ok()
                .filter(|id| known.contains(id))
                .ok_or_else(|| Status::invalid_argument(format!("no server with id {id} in the config")))?;
            raft_ids.insert(ClusterConfig::raft_id(id));
        }
        self.control(ControlOp::Unreachable(raft_ids)).await
    }
}

#[tonic::async_trait]
impl MetaStore for MetaService {
    async fn get_file_info_map(&self, _: Request<()>) -> Result<Response<FileInfoMap>, Status> {
        MetaService::get_file_info_map(self).await.map(Response::new)
    }

    async fn update_file(&self, request: Request<FileMetaData>) -> Result<Response<Version>, Status> {
        MetaService::update_file(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_block_store_map(&self, request: Request<BlockHashes>) -> Result<Response<BlockStoreMap>, Status> {
        MetaService::get_block_store_map(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_block_store_addrs(&self, _: Request<()>) -> Result<Response<BlockStoreAddrs>, Status> {
        MetaService::get_block_store_addrs(self).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl RaftSurfstore for MetaService {
    async fn get_file_info_map(&self, _: Request<()>) -> Result<Response<FileInfoMap>, Status> {
        MetaService::get_file_info_map(self).await.map(Response::new)
    }

    async fn update_file(&self, request: Request<FileMetaData>) -> Result<Response<Version>, Status> {
        MetaService::update_file(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_block_store_map(&self, request: Request<BlockHashes>) -> Result<Response<BlockStoreMap>, Status> {
        MetaService::get_block_store_map(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_block_store_addrs(&self, _: Request<()>) -> Result<Response<BlockStoreAddrs>, Status> {
        MetaService::get_block_store_addrs(self).await.map(Response::new)
    }

    // The hooks that steer or break the cluster need the admin token (when
    // the config sets one) and enable_test_rpcs. SetLeader forces an
    // election and SendHeartbeat a replication round: test hooks of the
    // SurfStore protocol (operators move leadership with `triton admin`).
    async fn set_leader(&self, request: Request<()>) -> Result<Response<Success>, Status> {
        check_admin(&self.node.config, &request)?;
        self.check_test_rpcs()?;
        MetaService::set_leader(self).await.map(Response::new)
    }

    async fn send_heartbeat(&self, request: Request<()>) -> Result<Response<Success>, Status> {
        check_admin(&self.node.config, &request)?;
        self.check_test_rpcs()?;
        MetaService::send_heartbeat(self).await.map(Response::new)
    }

    async fn crash(&self, request: Request<()>) -> Result<Response<Success>, Status> {
        check_admin(&self.node.config, &request)?;
        self.control(ControlOp::Crash).await.map(Response::new)
    }

    async fn restore(&self, request: Request<()>) -> Result<Response<Success>, Status> {
        check_admin(&self.node.config, &request)?;
        self.control(ControlOp::Restore).await.map(Response::new)
    }

    async fn is_crashed(&self, request: Request<()>) -> Result<Response<Success>, Status> {
        check_admin(&self.node.config, &request)?;
        MetaService::is_crashed(self).await.map(Response::new)
    }

    // An inspection hook of the protocol, gated like the others: it decodes
    // the whole log into one reply, which anyone could otherwise ask for.
    async fn get_internal_state(&self, request: Request<()>) -> Result<Response<RaftInternalState>, Status> {
        check_admin(&self.node.config, &request)?;
        self.check_test_rpcs()?;
        self.internal_state().await.map(Response::new)
    }

    async fn make_server_unreachable_from(
        &self,
        request: Request<UnreachableFromServers>,
    ) -> Result<Response<Success>, Status> {
        check_admin(&self.node.config, &request)?;
        self.unreachable_from(request.into_inner()).await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        for ok in ["a.txt", "with space", "ünïcode", ".hidden", "..."] {
            assert_eq!(filename_problem(ok), None, "{ok:?}");
        }
        assert_eq!(filename_problem(&"x".repeat(MAX_FILENAME_BYTES)), None);
        assert!(filename_problem(&"x".repeat(MAX_FILENAME_BYTES + 1)).is_some());
        // Bytes, not characters: 128 two-byte characters are 256 bytes.
        assert!(filename_problem(&"é".repeat(128)).is_some());
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/etc/passwd",
            "a,b",
            "nul\0",
            "new\nline",
            "tab\t",
            "cr\r",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            assert!(filename_problem(bad).is_some(), "{bad:?} accepted");
        }
    }
}
