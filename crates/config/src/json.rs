//! The SurfStore JSON form: `{"RaftAddrs": ["host:port", ...], "BlockAddrs": [...]}`.
//!
//! Kept because existing SurfStore deployments and test harnesses write it.
//! Node `i` is `RaftAddrs[i]` with id `i`; everything else takes its default.

use serde::Deserialize;

use crate::{ClusterConfig, ConfigError, Field, Labels, NodeConfig};

/// The JSON document. Unknown keys are errors so that `"RaftAdrs"` is caught.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonForm {
    #[serde(rename = "RaftAddrs")]
    raft_addrs: Vec<String>,
    #[serde(rename = "BlockAddrs", default)]
    block_addrs: Vec<String>,
}

/// Names fields by their JSON keys.
struct JsonLabels;

impl Labels for JsonLabels {
    fn label(&self, field: Field) -> String {
        match field {
            Field::Nodes => "RaftAddrs".to_string(),
            Field::NodeId(i) | Field::NodeAddr(i) | Field::NodeFileAddr(i) | Field::NodeHttpAddr(i) => {
                format!("RaftAddrs[{i}]")
            }
            Field::BlockStore(i) => format!("BlockAddrs[{i}]"),
        }
    }
}

/// Parses and validates the JSON form. serde_json's errors carry line and
/// column; validation errors name `RaftAddrs[i]` or `BlockAddrs[i]`.
pub(crate) fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
    let form: JsonForm = serde_json::from_str(text).map_err(ConfigError::Json)?;
    let config = ClusterConfig {
        nodes: form
            .raft_addrs
            .into_iter()
            .zip(0u64..)
            .map(|(addr, id)| NodeConfig {
                id,
                addr,
                file_addr: None,
                http_addr: None,
            })
            .collect(),
        block_stores: form.block_addrs,
        ..ClusterConfig::default()
    };
    config.validate_with(&JsonLabels)?;
    Ok(config)
}
