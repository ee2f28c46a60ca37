//! `AdminClient` against a fake Admin service: a change whose answer was
//! lost and whose retry is refused because the first attempt was applied is
//! reported as done, not as the refusal.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use triton_config::ClusterConfig;
use triton_node::admin::{AdminCall, AdminClient, Member, MembersReply};
use triton_proto::admin::admin_server::{Admin, AdminServer};
use triton_proto::admin::{AddLearnerRequest, AdminEmpty, NodeRef};

/// Node 0 leads {0, 1, 2}; node 3 is a learner until promoted. With
/// `lose_first`, the first promotion is applied but answered with
/// DeadlineExceeded (its answer lost); every later one is refused because
/// node 3 is a voter by then.
struct FakeAdmin {
    promoted: AtomicBool,
    lose_first: bool,
}

impl FakeAdmin {
    fn members(&self) -> MembersReply {
        let member = |id: u64, role: &str| Member {
            id,
            addr: format!("127.0.0.1:{}", 7000 + id),
            role: role.into(),
            matched: 0,
        };
        let learner_or_voter = if self.promoted.load(Ordering::SeqCst) {
            "voter"
        } else {
            "learner"
        };
        MembersReply {
            members: vec![
                member(0, "voter"),
                member(1, "voter"),
                member(2, "voter"),
                member(3, learner_or_voter),
            ],
            leader: Some(0),
            term: 2,
            commit_index: 10,
            joint: false,
            answered_by: 0,
        }
    }
}

#[tonic::async_trait]
impl Admin for FakeAdmin {
    async fn members(&self, _: Request<AdminEmpty>) -> Result<Response<MembersReply>, Status> {
        Ok(Response::new(self.members()))
    }
    async fn add_learner(&self, _: Request<AddLearnerRequest>) -> Result<Response<MembersReply>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
    async fn promote(&self, r: Request<NodeRef>) -> Result<Response<MembersReply>, Status> {
        assert_eq!(r.get_ref().id, 3);
        if self.promoted.swap(true, Ordering::SeqCst) {
            return Err(Status::invalid_argument("node 3 is already a voter"));
        }
        if self.lose_first {
            return Err(Status::deadline_exceeded("the change was not answered in time"));
        }
        Ok(Response::new(self.members()))
    }
    async fn remove(&self, _: Request<NodeRef>) -> Result<Response<MembersReply>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
    async fn transfer_leader(&self, _: Request<NodeRef>) -> Result<Response<MembersReply>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// Serves `fake` on a free local port; returns its address.
async fn serve(fake: FakeAdmin) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdminServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

async fn promote_3(fake: FakeAdmin) -> anyhow::Result<MembersReply> {
    let addr = serve(fake).await;
    AdminClient::new(vec![addr], ClusterConfig::default())?
        .call(AdminCall::Promote(3))
        .await
}

#[tokio::test]
async fn a_change_whose_answer_was_lost_and_that_was_applied_is_reported_done() {
    let fake = FakeAdmin {
        promoted: AtomicBool::new(false),
        lose_first: true,
    };
    let reply = promote_3(fake).await.expect("the promotion happened");
    let role = reply.members.iter().find(|m| m.id == 3).map(|m| m.role.as_str());
    assert_eq!(role, Some("voter"));
}

#[tokio::test]
async fn a_refusal_with_no_lost_attempt_before_it_is_reported() {
    // Node 3 is a voter already before the first attempt: nothing was lost,
    // so the refusal stands.
    let fake = FakeAdmin {
        promoted: AtomicBool::new(true),
        lose_first: false,
    };
    let err = promote_3(fake).await.expect_err("a refused change is an error");
    assert!(format!("{err:#}").contains("already a voter"), "{err:#}");
}
