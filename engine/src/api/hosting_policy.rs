//! `HostingPolicy`: a cluster-scoped rule saying where one provider's API class may be hosted and
//! where its workloads may run.

use k8s_openapi::api::core::v1::NodeAffinity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Action, ApiClass, ClusterProvider, Disposition};

/// A hosting rule: workloads that call `provider`'s APIs of the listed classes may only send that
/// traffic to the allowed endpoints, and may only run where the placement says.
// clippy mistakes the repeated `printcolumn(...)` arguments for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    crates(kube_core = "::kube_core"),
    group = "hostguard.dev",
    version = "v1alpha1",
    kind = "HostingPolicy",
    plural = "hostingpolicies",
    shortname = "hpol",
    category = "hostguard",
    status = "HostingPolicyStatus",
    derive = "PartialEq",
    doc = "A hosting rule for AI workloads: which endpoints a provider's API class may use and where its pods may run.",
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(
        name = "Violations",
        type_ = "integer",
        json_path = ".status.violations"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct HostingPolicySpec {
    /// The model API provider this policy governs, one hostguard knows (today: `openai`); the API
    /// server refuses any other value, so a typo cannot make a policy that governs nothing.
    /// Workloads are matched to a provider from AIWorkload resources, from the
    /// `hostguard.dev/provider` annotation, or from the SDK environment variables they set.
    #[schemars(extend("enum" = crate::api::KNOWN_PROVIDERS))]
    pub provider: String,

    /// The API classes this policy governs: `stateless` (chat completions, embeddings, ...) and/or
    /// `stateful` (assistants, files, batches, ...). A workload that does not declare its class
    /// counts as stateless.
    #[serde(default = "default_api_classes")]
    #[schemars(length(min = 1), extend("x-kubernetes-list-type" = "set"))]
    pub api_classes: Vec<ApiClass>,

    /// What happens to a governed workload that breaks the policy: `Deny` rejects it at admission,
    /// `Warn` admits it with warnings, `Audit` only reports it in status and metrics.
    #[serde(default)]
    pub action: Action,

    /// Restricts the policy to namespaces whose labels match. Empty or absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Namespaces the policy never applies to, whatever their labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub excluded_namespaces: Vec<String>,

    /// Which endpoints governed workloads may send this traffic to.
    pub endpoints: EndpointRulesSpec,

    /// Where governed workloads may run. Absent: anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSpec>,

    /// Which declarations this policy believes when they would lift it. Annotations never can;
    /// AIWorkloads can (declaring a workload `stateful` takes it out of a `stateless` policy),
    /// and this narrows which ones. Absent: every AIWorkload, so who may exempt is whoever
    /// Kubernetes RBAC lets write AIWorkloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustSpec>,
}

/// Which declarations a HostingPolicy believes when they would lift it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustSpec {
    /// Which AIWorkloads may exempt a workload from this policy. Absent: every AIWorkload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_workloads: Option<AIWorkloadTrustSpec>,
}

/// Which AIWorkloads a HostingPolicy believes when they would lift it. An AIWorkload it does not
/// trust still adds governance (a provider, an endpoint to check); it only cannot exempt. Every
/// condition given must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIWorkloadTrustSpec {
    /// Whether any AIWorkload may exempt a workload from this policy. `false`: none may, and
    /// every workload that uses the provider is governed whatever its declarations say.
    /// Default true.
    #[serde(default = "default_true")]
    pub allow_exemptions: bool,

    /// Only AIWorkloads in namespaces whose labels match may exempt (for example namespaces the
    /// platform team labels `hostguard.dev/exemptions=allowed`, a label tenants cannot set).
    /// Absent: any namespace. A namespace whose labels hostguard cannot read is not matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Only AIWorkloads whose own labels match may exempt (for example
    /// `approved-by: platform`, set by the GitOps pipeline that holds the write permission).
    /// Absent: any AIWorkload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

impl Default for AIWorkloadTrustSpec {
    fn default() -> Self {
        AIWorkloadTrustSpec {
            allow_exemptions: true,
            namespace_selector: None,
            selector: None,
        }
    }
}

fn default_api_classes() -> Vec<ApiClass> {
    vec![ApiClass::Stateless]
}

/// Endpoint rules of a HostingPolicy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRulesSpec {
    /// Host patterns an endpoint may use: an exact host (`gw.contoso.com`) or `*.` followed by a
    /// suffix of at least two labels (`*.openai.azure.com`), where `*` stands for one or more whole
    /// labels. Lower-case ASCII, no scheme, port, path or trailing dot.
    #[schemars(
        length(min = 1),
        inner(regex(pattern = crate::endpoint::HOST_PATTERN_REGEX), length(max = 253)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub allowed_hosts: Vec<String>,

    /// Whether an endpoint must use `https`. Default true.
    #[serde(default = "default_true")]
    pub require_https: bool,

    /// What to do when an endpoint cannot be read: its value comes from a Secret, from a
    /// ConfigMap that cannot be found, or from an `envFrom` source that may set it. Default Deny.
    #[serde(default = "default_unresolved")]
    pub unresolved: Disposition,

    /// What to do with an endpoint that is a Service inside the cluster (`*.svc`,
    /// `*.svc.cluster.local`, a single-label name), typically a gateway or a self-hosted model
    /// server. Default Warn.
    #[serde(default = "default_in_cluster")]
    pub in_cluster: Disposition,

    /// What to do when the real OpenAI clients disagree about where a container's traffic goes:
    /// an OpenAI key (`OPENAI_API_KEY`) with no usable `OPENAI_BASE_URL`, beside an endpoint that
    /// only some clients read (`AZURE_OPENAI_ENDPOINT`, `OPENAI_API_BASE`, `AZURE_API_BASE`, ...).
    /// `OpenAI()` in Python and Node, LangChain's `ChatOpenAI` and LiteLLM then call
    /// `https://api.openai.com/v1`, while the Azure clients use the endpoint. Default Deny. To make
    /// such a workload unambiguous, name the key `AZURE_OPENAI_API_KEY`, or set `OPENAI_BASE_URL`
    /// to the Azure v1 endpoint (`https://<resource>.openai.azure.com/openai/v1`).
    #[serde(default = "default_ambiguous")]
    pub ambiguous: Disposition,

    /// What to do with settings that can send a governed container's traffic somewhere other
    /// than the host its endpoint names: an HTTPS proxy (`HTTPS_PROXY`, `ALL_PROXY`,
    /// `OPENAI_PROXY`, `-Dhttps.proxyHost` in `JAVA_TOOL_OPTIONS`) and a custom CA bundle
    /// (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `NODE_EXTRA_CA_CERTS`, ...), which together let a
    /// proxy answer for an allowed host. Default Warn, since corporate proxies with their own CA
    /// are common; a strict policy denies.
    #[serde(default = "default_redirection")]
    pub redirection: Disposition,
}

fn default_true() -> bool {
    true
}
fn default_unresolved() -> Disposition {
    Disposition::Deny
}
fn default_in_cluster() -> Disposition {
    Disposition::Warn
}
fn default_ambiguous() -> Disposition {
    Disposition::Deny
}
fn default_redirection() -> Disposition {
    Disposition::Warn
}

/// Placement rules of a HostingPolicy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// The infrastructure the cluster must run on for governed workloads to be admitted:
    /// `azure`, `aws`, `gcp` or `other`. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "set",
        "x-kubernetes-validations" = [{
            "rule": "self.all(p, p != 'mixed' && p != 'unknown')",
            "message": "clusterProviders may list azure, aws, gcp or other; mixed and unknown are detected states, not requirements"
        }]
    ))]
    pub cluster_providers: Vec<ClusterProvider>,

    /// Node affinity that the mutating webhook adds to governed Pods, ANDed into every node
    /// selector term the Pod already has, so that they schedule only onto matching nodes. Only
    /// `requiredDuringSchedulingIgnoredDuringExecution` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
}

/// Observed state of a HostingPolicy, written by the elected hostguard replica after each audit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostingPolicyStatus {
    /// `Ready`: the current spec compiled and is enforced. `Ready=False` with reason
    /// `InvalidSpec`: it does not compile; `enforcedGeneration` then says which earlier version
    /// is still enforced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The `metadata.generation` of the spec hostguard enforces: the current one when it
    /// compiles, else the last one that did (an edit that breaks a policy does not switch it
    /// off). Absent: no version of this policy is enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced_generation: Option<i64>,

    /// How many existing workloads broke this policy at the last audit.
    #[serde(default)]
    pub violations: i64,

    /// How many existing workloads an AIWorkload exempted from this policy at the last audit.
    #[serde(default)]
    pub exemptions: i64,

    /// The first exempted workloads found at the last audit (at most 20), with the
    /// AIWorkloads that exempted them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempted_objects: Vec<ExemptedObject>,

    /// When an audit last changed this status (an audit that finds the same results writes
    /// nothing): since when the status has read as it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_audit_time: Option<Time>,

    /// The first violating workloads found at the last audit (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violating_objects: Vec<ViolatingObject>,
}

/// A workload that an AIWorkload exempted from a policy at the last audit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExemptedObject {
    /// Kind of the workload, e.g. `Deployment`.
    pub kind: String,
    /// Namespace of the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the workload.
    pub name: String,
    /// The AIWorkloads that exempted it, as `namespace/name`.
    pub exempted_by: Vec<String>,
}

/// A workload that broke a policy at the last audit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ViolatingObject {
    /// Kind of the workload, e.g. `Deployment`.
    pub kind: String,
    /// Namespace of the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the workload.
    pub name: String,
    /// The first violation, field path first.
    pub message: String,
}
