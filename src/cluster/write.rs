//! What every write of the leader shares: status (`status`) and PolicyReports (`reports`)
//! alike use one field manager, stop the same way when leadership is lost, and read the same
//! account of the last build's policies. Below both, so that neither imports the other for it.

use std::collections::BTreeMap;

use super::inventory::EnforcedInstead;
use crate::policy::PolicyError;

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "hostguard";

/// What the last build said about the cluster's policies besides the compiled set.
#[derive(Debug, Clone, Copy)]
pub struct PolicyStates<'a> {
    /// Policies whose current spec does not compile, with the errors.
    pub invalid: &'a BTreeMap<String, Vec<PolicyError>>,
    /// For those still enforced, what is enforced instead.
    pub enforced_instead: &'a BTreeMap<String, EnforcedInstead>,
    /// Policies a `--policy` file of the same name overrides.
    pub shadowed: &'a [String],
}

/// Why writing stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no longer the leader")]
    NotLeader,
}
