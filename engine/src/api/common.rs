//! Small enums shared by both resources and by the engine.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a policy does with a governed workload that breaks it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Action {
    /// Reject the request at admission; pods are also pinned to the required nodes.
    #[default]
    Deny,
    /// Admit the request and return each violation to the client as a warning.
    Warn,
    /// Admit silently; violations appear only in audit results, status and metrics.
    Audit,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deny => "Deny",
            Action::Warn => "Warn",
            Action::Audit => "Audit",
        }
    }
}

/// How to treat an endpoint of a particular kind (unresolved, in-cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Disposition {
    /// Treat it as a violation, handled by the policy's action.
    Deny,
    /// Admit, and tell the client with a warning.
    Warn,
    /// Admit without comment.
    Allow,
}

/// A class of model API calls.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ApiClass {
    /// Calls that keep no state at the provider: chat completions, completions, embeddings,
    /// moderations, images, audio, and responses with `store: false`.
    Stateless,
    /// Calls that create state at the provider: assistants, threads, files, vector stores,
    /// batches, fine-tuning, stored responses and conversations.
    Stateful,
}

impl ApiClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiClass::Stateless => "stateless",
            ApiClass::Stateful => "stateful",
        }
    }
}

/// What a cluster (or a node) runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClusterProvider {
    /// Microsoft Azure (AKS, or nodes whose provider ID is `azure://`).
    Azure,
    /// Amazon Web Services.
    Aws,
    /// Google Cloud.
    Gcp,
    /// Any other infrastructure (bare metal, kind, another cloud).
    Other,
    /// Nodes of more than one provider; only valid as a detected value, never in a policy.
    Mixed,
    /// Not known (no cluster connection and no flag).
    #[default]
    Unknown,
}

impl ClusterProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterProvider::Azure => "azure",
            ClusterProvider::Aws => "aws",
            ClusterProvider::Gcp => "gcp",
            ClusterProvider::Other => "other",
            ClusterProvider::Mixed => "mixed",
            ClusterProvider::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ClusterProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ClusterProvider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "azure" => Ok(ClusterProvider::Azure),
            "aws" => Ok(ClusterProvider::Aws),
            "gcp" => Ok(ClusterProvider::Gcp),
            "other" => Ok(ClusterProvider::Other),
            "mixed" => Ok(ClusterProvider::Mixed),
            "unknown" => Ok(ClusterProvider::Unknown),
            other => Err(format!(
                "unknown cluster provider {other:?} (expected azure, aws, gcp, other, mixed or unknown)"
            )),
        }
    }
}
