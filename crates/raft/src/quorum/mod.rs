//! Quorum arithmetic, kept apart from everything else so it can be proved
//! by property tests: majority decisions for one configuration, and the
//! joint rule (a majority of both halves) used during membership changes.

mod joint;
mod majority;

pub use joint::JointConfig;
pub use majority::MajorityConfig;

/// The outcome of an election as far as the votes received tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Not decided yet: enough voters have not answered.
    Pending,
    Lost,
    Won,
}
