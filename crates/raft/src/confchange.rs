//! Membership changes: which configuration a change leads to, and how a
//! configuration travels in a log entry.
//!
//! # The rule (joint consensus, §6 of the paper)
//!
//! Triton changes voters with **joint consensus**, never by single-server
//! steps, so one mechanism covers adding, removing and replacing voters and
//! no special-case proof is needed. A change that alters the voters goes
//! through two log entries:
//!
//! 1. `C_old,new`: `voters = new`, `voters_outgoing = old`. While it is in
//!    force every decision (commit, election, check-quorum, ReadIndex)
//!    needs a majority of *both* halves.
//! 2. `C_new`: `voters = new`, `voters_outgoing = {}`. The leader appends it
//!    by itself as soon as `C_old,new` is committed (auto-leave).
//!
//! As in the paper, a configuration is in force on a node as soon as its
//! entry is **in the node's log**, committed or not; a truncation that
//! removes the entry reverts to the previous one. (Taking effect at apply
//! time, as etcd-io/raft does, was tried first: the simulator found a
//! removed leader whose log was longer than its successor's, while the
//! successor, not yet knowing the final configuration was committed, still
//! needed the removed node's vote. A deadlock.) A leader appends a new
//! change only when the latest configuration entry is committed, so at
//! most one is ever uncommitted.
//!
//! Learners receive the log but never vote and never count toward a quorum,
//! so adding or removing a learner is a single entry with no joint phase.
//! A learner is promoted only when its replication has caught up with the
//! commit index (see [`crate::Raft::propose_conf_change`]), so a promotion
//! never adds a voter that would stall commits while it downloads the log.
//!
//! A node that `C_new` removes may still campaign while it does not know
//! `C_new` committed (a leader that stepped down on check-quorum, or
//! restarted, may hold the only complete log while the others, still in
//! the joint phase, need its vote): it then leads a cluster it is not part
//! of just long enough to commit `C_new`. A learner never campaigns.
//!
//! A leader that is not a voter of `C_new` keeps managing the cluster
//! (without counting itself) until `C_new` is committed, then hands over to
//! a caught-up voter (`TimeoutNow`, after bringing one up to date if needed)
//! and steps down, so nobody waits for an election timeout and the removed
//! node does not keep heartbeating a cluster it left.

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{Membership, NodeId};

/// One requested change. Voter changes go through a joint configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChange {
    /// Start replicating to `id` as a non-voting learner.
    AddLearner(NodeId),
    /// Make learner `id` a voter.
    Promote(NodeId),
    /// Take `id` (voter or learner) out of the cluster.
    Remove(NodeId),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("another membership change (entry {index}) is not applied yet; retry when it is")]
    Pending { index: u64 },
    #[error("leadership transfer in progress; retry when it ends")]
    TransferInProgress,
    #[error("node {id} is not caught up yet (has {matched} of {last}); retry when it is")]
    NotCaughtUp { id: NodeId, matched: u64, last: u64 },
    #[error("node {id} {why}")]
    Refused { id: NodeId, why: Refusal },
    #[error("{0}")]
    Invalid(String),
}

/// Why a change naming node `id` cannot be made as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("is already a voter")]
    AlreadyVoter,
    #[error("is already a learner")]
    AlreadyLearner,
    #[error("is not a learner; add it as a learner first")]
    NotLearner,
    #[error("is the last voter; a cluster cannot remove all its voters")]
    LastVoter,
    #[error("is not a member")]
    NotMember,
}

impl ConfChangeError {
    /// The message with node ids written by `name` (the core numbers nodes
    /// from 1; a front end may show its users another numbering).
    pub fn describe(&self, name: impl Fn(NodeId) -> String) -> String {
        match self {
            ConfChangeError::NotCaughtUp { id, matched, last } => format!(
                "node {} is not caught up yet (has {matched} of {last}); retry when it is",
                name(*id)
            ),
            ConfChangeError::Refused { id, why } => format!("node {} {why}", name(*id)),
            ConfChangeError::NotLeader { leader: Some(l) } => format!("not the leader (leader: node {})", name(*l)),
            other => other.to_string(),
        }
    }
}

/// The configuration that `change` leads to from the plain (non-joint)
/// configuration `current`. A voter change yields a joint configuration.
pub fn target(current: &Membership, change: ConfChange) -> Result<Membership, ConfChangeError> {
    if !current.voters_outgoing.is_empty() {
        return Err(ConfChangeError::Invalid(
            "the cluster is between configurations (joint); retry shortly".into(),
        ));
    }
    let mut next = current.clone();
    match change {
        ConfChange::AddLearner(id) => {
            if id == 0 {
                return Err(ConfChangeError::Invalid("node id 0 is reserved".into()));
            }
            if current.voters.contains(&id) {
                return Err(ConfChangeError::Refused {
                    id,
                    why: Refusal::AlreadyVoter,
                });
            }
            if !next.learners.insert(id) {
                return Err(ConfChangeError::Refused {
                    id,
                    why: Refusal::AlreadyLearner,
                });
            }
        }
        ConfChange::Promote(id) => {
            if current.voters.contains(&id) {
                return Err(ConfChangeError::Refused {
                    id,
                    why: Refusal::AlreadyVoter,
                });
            }
            if !next.learners.remove(&id) {
                return Err(ConfChangeError::Refused {
                    id,
                    why: Refusal::NotLearner,
                });
            }
            next.voters.insert(id);
            next.voters_outgoing = current.voters.clone();
        }
        ConfChange::Remove(id) => {
            if next.learners.remove(&id) {
                // A learner leaves without a joint phase.
            } else if next.voters.remove(&id) {
                if next.voters.is_empty() {
                    return Err(ConfChangeError::Refused {
                        id,
                        why: Refusal::LastVoter,
                    });
                }
                next.voters_outgoing = current.voters.clone();
            } else {
                return Err(ConfChangeError::Refused {
                    id,
                    why: Refusal::NotMember,
                });
            }
        }
    }
    debug_assert!(next.voters.is_disjoint(&next.learners));
    debug_assert!(!next.voters.is_empty());
    Ok(next)
}

/// The configuration that ends a joint phase: the incoming half alone.
pub fn leave_joint(current: &Membership) -> Membership {
    debug_assert!(!current.voters_outgoing.is_empty(), "leaving a non-joint configuration");
    Membership {
        voters: current.voters.clone(),
        voters_outgoing: Default::default(),
        learners: current.learners.clone(),
    }
}

/// Format version of a membership entry's payload.
const ENTRY_FORMAT: u8 = 1;

/// Why a membership entry's bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed membership entry: {0}")]
pub struct DecodeError(pub &'static str);

/// Encodes a configuration plus the host's opaque `context` (the node puts
/// the new member's address there) as a membership entry's payload:
/// `[format u8][3 x (count u32 LE, count x id u64 LE)][context...]`, the
/// lists being voters, outgoing voters, learners. The core owns this format
/// because the core must read it on every node, whatever the host.
pub fn encode_entry(membership: &Membership, context: &[u8]) -> Bytes {
    let ids = membership.voters.len() + membership.voters_outgoing.len() + membership.learners.len();
    let mut buf = BytesMut::with_capacity(1 + 12 + ids * 8 + context.len());
    buf.put_u8(ENTRY_FORMAT);
    for set in [&membership.voters, &membership.voters_outgoing, &membership.learners] {
        buf.put_u32_le(set.len() as u32);
        for &id in set {
            buf.put_u64_le(id);
        }
    }
    buf.put_slice(context);
    buf.freeze()
}

/// Reads a payload written by [`encode_entry`]. Never panics and never
/// allocates more than the input's size, whatever the bytes.
pub fn decode_entry(data: &Bytes) -> Result<(Membership, Bytes), DecodeError> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], DecodeError> {
        let end = at.checked_add(n).ok_or(DecodeError("length overflow"))?;
        let s = data.get(*at..end).ok_or(DecodeError("truncated"))?;
        *at = end;
        Ok(s)
    };
    if take(&mut at, 1)?[0] != ENTRY_FORMAT {
        return Err(DecodeError("unknown format version"));
    }
    let mut sets: [std::collections::BTreeSet<NodeId>; 3] = Default::default();
    for set in sets.iter_mut() {
        let count = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes")) as usize;
        if count > (data.len() - at) / 8 {
            return Err(DecodeError("id count exceeds the payload"));
        }
        for _ in 0..count {
            let id = u64::from_le_bytes(take(&mut at, 8)?.try_into().expect("8 bytes"));
            if id == 0 {
                return Err(DecodeError("node id 0"));
            }
            set.insert(id);
        }
    }
    let [voters, voters_outgoing, learners] = sets;
    let membership = Membership {
        voters,
        voters_outgoing,
        learners,
    };
    membership.check().map_err(DecodeError)?;
    Ok((membership, data.slice(at..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(voters: &[u64], outgoing: &[u64], learners: &[u64]) -> Membership {
        Membership {
            voters: voters.iter().copied().collect(),
            voters_outgoing: outgoing.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
        }
    }

    #[test]
    fn voter_changes_go_through_a_joint_configuration() {
        let c = m(&[1, 2, 3], &[], &[4]);
        assert_eq!(
            target(&c, ConfChange::Promote(4)).unwrap(),
            m(&[1, 2, 3, 4], &[1, 2, 3], &[])
        );
        assert_eq!(target(&c, ConfChange::Remove(2)).unwrap(), m(&[1, 3], &[1, 2, 3], &[4]));
        assert_eq!(target(&c, ConfChange::Remove(4)).unwrap(), m(&[1, 2, 3], &[], &[]));
        assert_eq!(
            target(&c, ConfChange::AddLearner(5)).unwrap(),
            m(&[1, 2, 3], &[], &[4, 5])
        );
        assert_eq!(leave_joint(&m(&[1, 3], &[1, 2, 3], &[4])), m(&[1, 3], &[], &[4]));
        let joint = m(&[1, 3], &[1, 2, 3], &[4]);
        let roles: Vec<&str> = (1..=5).map(|id| joint.role_of(id)).collect();
        assert_eq!(roles, ["voter", "outgoing", "voter", "learner", "none"]);
    }

    #[test]
    fn impossible_changes_are_refused() {
        let c = m(&[1], &[], &[2]);
        for bad in [
            ConfChange::Remove(1),
            ConfChange::Promote(1),
            ConfChange::Promote(3),
            ConfChange::AddLearner(1),
            ConfChange::AddLearner(2),
            ConfChange::AddLearner(0),
            ConfChange::Remove(9),
        ] {
            assert!(target(&c, bad).is_err(), "{bad:?} was accepted");
        }
        let joint = m(&[1, 2], &[1], &[]);
        assert!(target(&joint, ConfChange::AddLearner(3)).is_err());
    }

    #[test]
    fn entries_round_trip_and_garbage_is_refused() {
        let c = m(&[1, 2, 7], &[1, 2], &[9]);
        let data = encode_entry(&c, b"addr");
        let (back, ctx) = decode_entry(&data).unwrap();
        assert_eq!(back, c);
        assert_eq!(&ctx[..], b"addr");
        for cut in 0..data.len() - 4 {
            assert!(decode_entry(&data.slice(..cut)).is_err(), "cut at {cut} accepted");
        }
        let mut huge = vec![1u8];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_entry(&Bytes::from(huge)).is_err());
        assert!(decode_entry(&encode_entry(&m(&[], &[], &[]), b"")).is_err());
        assert!(decode_entry(&encode_entry(&m(&[1], &[], &[1]), b"")).is_err());
    }
}
