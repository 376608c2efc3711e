//! `AIWorkload`: a namespaced declaration that the pods matching a selector call a model
//! provider's APIs, of which class, and through which endpoint. It is the most trusted
//! detection signal.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ApiClass;

/// Declares the AI usage of the pods selected in this namespace. It is the one way to narrow
/// governance (declare pods `stateful`, out of a `stateless` policy), so who may write it is a
/// platform decision made with Kubernetes RBAC; a HostingPolicy's `spec.trust.aiWorkloads`
/// narrows further which AIWorkloads it believes.
// clippy mistakes the repeated `printcolumn(...)` arguments for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "hostguard.dev",
    version = "v1alpha1",
    kind = "AIWorkload",
    plural = "aiworkloads",
    shortname = "aiw",
    category = "hostguard",
    namespaced,
    status = "AIWorkloadStatus",
    derive = "PartialEq",
    doc = "Declares which model provider and API class the selected pods use, so hostguard can govern them.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "API-Class", type_ = "string", json_path = ".spec.apiClass"),
    printcolumn(
        name = "Compliant",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Compliant\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AIWorkloadSpec {
    /// Selects pods in this namespace by their labels (a pod template's labels for Deployments,
    /// Jobs and the other controllers). An empty selector selects every pod in the namespace.
    pub selector: LabelSelector,

    /// The model API provider the pods call, one hostguard knows (today: `openai`).
    #[schemars(extend("enum" = crate::api::KNOWN_PROVIDERS))]
    pub provider: String,

    /// Which class of API calls the pods make: `stateless`, `stateful` or `mixed` (both). Absent:
    /// derived from `apis` when given, otherwise `stateless`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_class: Option<WorkloadApiClass>,

    /// The APIs the pods call, e.g. `chat.completions`, `embeddings`, `assistants`, `batches`.
    /// Informational, and used to derive `apiClass` when that is absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub apis: Vec<String>,

    /// The base URL the pods' SDK talks to, e.g. `https://contoso.openai.azure.com/openai/v1`.
    /// Checked against policies like any endpoint found in the pod spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub endpoint: Option<String>,
}

/// Which class of API calls the selected pods make: `stateless`, `stateful`, or `mixed` (both,
/// governed by the policies of either class). Absent: derived from `apis` when given, otherwise
/// `stateless`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WorkloadApiClass {
    /// Only stateless calls.
    Stateless,
    /// Only stateful calls.
    Stateful,
    /// Both stateless and stateful calls; governed by the policies of either class.
    Mixed,
}

impl WorkloadApiClass {
    /// The classes this declaration covers.
    pub fn classes(self) -> &'static [ApiClass] {
        match self {
            WorkloadApiClass::Stateless => &[ApiClass::Stateless],
            WorkloadApiClass::Stateful => &[ApiClass::Stateful],
            WorkloadApiClass::Mixed => &[ApiClass::Stateless, ApiClass::Stateful],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadApiClass::Stateless => "stateless",
            WorkloadApiClass::Stateful => "stateful",
            WorkloadApiClass::Mixed => "mixed",
        }
    }
}

/// Observed state of an AIWorkload, written by the elected hostguard replica after each audit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIWorkloadStatus {
    /// `Compliant`: whether every matched workload passed every policy at the last audit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The workloads whose pods this AIWorkload selected at the last audit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matched_workloads: Vec<MatchedWorkload>,

    /// When an audit last changed this status (an audit that finds the same results writes
    /// nothing): since when the status has read as it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_audit_time: Option<Time>,
}

/// A workload an AIWorkload selected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchedWorkload {
    /// Kind of the workload, e.g. `Deployment`.
    pub kind: String,
    /// Name of the workload.
    pub name: String,
    /// Whether it passed every policy.
    pub compliant: bool,
}
