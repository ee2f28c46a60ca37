//! `triton kv`: a small key-value client that finds the leader itself.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use triton_node::client::KvClient;

#[derive(clap::Args)]
pub struct KvArgs {
    /// Nodes to try, comma-separated host:port (any node; redirects are
    /// followed). Default: every node of --config.
    #[arg(long, value_delimiter = ',', required_unless_present = "config")]
    pub endpoints: Vec<String>,
    /// Cluster config to connect with: with [tls], TLS verified by its `ca`,
    /// presenting its `cert`/`key` as this client's certificate. Default:
    /// plaintext.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Allow a possibly stale read served by whichever node answers.
    #[arg(long)]
    pub serializable: bool,
    #[command(subcommand)]
    pub op: KvOp,
}

#[derive(clap::Subcommand)]
pub enum KvOp {
    /// Print the value of KEY (exit 1 if missing).
    Get { key: String },
    /// Set KEY to VALUE; prints the new version.
    Put { key: String, value: String },
    /// Append VALUE to KEY; prints the new version.
    Append { key: String, value: String },
    /// Delete KEY (exit 1 if it did not exist).
    Del { key: String },
    /// Show each endpoint's role, term and indexes.
    Status,
}

pub fn run(args: KvArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut endpoints = args.endpoints.clone();
    let config = match &args.config {
        Some(path) => triton_config::load(path)?,
        None => triton_config::ClusterConfig::default(),
    };
    if endpoints.is_empty() {
        endpoints = config.nodes.iter().map(|n| n.addr.clone()).collect();
    }
    rt.block_on(async move {
        let mut client = KvClient::with_config(endpoints.clone(), &config)?;
        match args.op {
            KvOp::Get { key } => match client.get_with(key.as_bytes(), args.serializable).await? {
                Some(v) => {
                    println!("{}", String::from_utf8_lossy(&v.value));
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("{key}: not found");
                    Ok(ExitCode::from(1))
                }
            },
            KvOp::Put { key, value } => {
                let version = client.put(key.as_bytes(), value.as_bytes()).await?;
                println!("OK {version}");
                Ok(ExitCode::SUCCESS)
            }
            KvOp::Append { key, value } => {
                let version = client.append(key.as_bytes(), value.as_bytes()).await?;
                println!("OK {version}");
                Ok(ExitCode::SUCCESS)
            }
            KvOp::Del { key } => {
                if client.delete(key.as_bytes()).await? {
                    println!("OK");
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("{key}: not found");
                    Ok(ExitCode::from(1))
                }
            }
            KvOp::Status => {
                for addr in &endpoints {
                    match client.status_of(addr).await {
                        Ok(s) => println!(
                            "{addr}: id {} {} term {} leader {} commit {} applied {} last {} snapshot {}",
                            s.id,
                            s.role,
                            s.term,
                            s.leader.map_or("?".to_string(), |l| l.to_string()),
                            s.commit_index,
                            s.applied_index,
                            s.last_index,
                            s.snapshot_index
                        ),
                        Err(e) => println!("{addr}: {e}"),
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
