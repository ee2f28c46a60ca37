//! `triton admin`: membership changes and leadership transfer on a running
//! cluster (the Admin RPCs; changes need the config's admin token).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use triton_node::admin::{AdminCall, AdminClient, MembersReply};

#[derive(clap::Args)]
pub struct AdminArgs {
    /// Nodes to try, comma-separated host:port (any member; changes are
    /// redirected to the leader). Default: every node of --config.
    #[arg(long, value_delimiter = ',', required_unless_present = "config")]
    pub endpoints: Vec<String>,
    /// Cluster config: supplies the admin token and TLS settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The admin token (overrides the config's admin_token).
    #[arg(long, env = "TRITON_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub op: AdminOp,
}

#[derive(clap::Subcommand)]
pub enum AdminOp {
    /// List the members: id, address, role, replication progress.
    Members,
    /// Add node ID (listening on ADDR, host:port) as a non-voting learner.
    AddLearner { id: u64, addr: String },
    /// Make learner ID a voter (waits until it has caught up).
    Promote { id: u64 },
    /// Remove node ID (voter or learner) from the cluster.
    Remove { id: u64 },
    /// Hand leadership to voter ID.
    TransferLeader { id: u64 },
    /// Leader, term, commit index and members, as one line per member.
    Status,
}

pub fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => triton_config::load(path)?,
        None => triton_config::ClusterConfig::default(),
    };
    if let Some(token) = args.token {
        config.admin_token = Some(token);
    }
    let mut endpoints = args.endpoints.clone();
    if endpoints.is_empty() {
        endpoints = config.nodes.iter().map(|n| n.addr.clone()).collect();
    }
    let status_only = matches!(args.op, AdminOp::Status);
    let call = match args.op {
        AdminOp::Members | AdminOp::Status => AdminCall::Members,
        AdminOp::AddLearner { id, addr } => AdminCall::AddLearner { id, addr },
        AdminOp::Promote { id } => AdminCall::Promote(id),
        AdminOp::Remove { id } => AdminCall::Remove(id),
        AdminOp::TransferLeader { id } => AdminCall::TransferLeader(id),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let reply = rt.block_on(async move {
        let client = AdminClient::new(endpoints, config)?;
        client.call(call).await
    });
    match reply {
        Ok(reply) => {
            print_members(&reply, status_only);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("triton admin: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_members(reply: &MembersReply, status_only: bool) {
    let leader = reply.leader.map_or("none".to_string(), |l| l.to_string());
    println!(
        "leader {leader}, term {}, commit index {}{} (answered by node {})",
        reply.term,
        reply.commit_index,
        if reply.joint { ", joint configuration" } else { "" },
        reply.answered_by
    );
    if status_only {
        return;
    }
    println!("{:>4}  {:<22} {:<9} {:>10}", "ID", "ADDRESS", "ROLE", "MATCHED");
    for m in &reply.members {
        let mark = if Some(m.id) == reply.leader { "*" } else { "" };
        println!(
            "{:>4}  {:<22} {:<9} {:>10}",
            format!("{mark}{}", m.id),
            m.addr,
            m.role,
            m.matched
        );
    }
}
