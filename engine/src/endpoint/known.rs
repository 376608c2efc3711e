//! The hosts of the built-in hosting families, as data, each with the source it comes from.
//!
//! Syntax, read by the same label-by-label matcher as policy patterns: a leftmost `*` label stands
//! for one or more whole labels; `{region}` stands for a non-empty part of exactly one label.

/// Hosts served by OpenAI itself (not Azure). Classification also treats every other host under
/// `openai.com` as OpenAI-direct (see [`OPENAI_DOMAIN`]).
pub const OPENAI_DIRECT_HOSTS: &[&str] = &[
    // OpenAI API reference, "Introduction": base URL https://api.openai.com/v1.
    "api.openai.com",
    // OpenAI "Data residency" guide: regional API hosts such as eu.api.openai.com and
    // us.api.openai.com.
    "*.api.openai.com",
];

/// Every host under this domain belongs to OpenAI, whatever the label in front: for example
/// `example-resource.azure.openai.com`, a documentation typo for `.openai.azure.com` that looks
/// like Azure but is resolved and served under openai.com.
pub const OPENAI_DOMAIN: &str = "openai.com";

/// Model endpoints of clouds other than Azure.
pub const OTHER_CLOUD_HOSTS: &[&str] = &[
    // AWS General Reference, "Amazon Bedrock endpoints and quotas": control plane, runtime and
    // agent runtime service endpoints, with their FIPS variants.
    "bedrock.{region}.amazonaws.com",
    "bedrock-fips.{region}.amazonaws.com",
    "bedrock-runtime.{region}.amazonaws.com",
    "bedrock-runtime-fips.{region}.amazonaws.com",
    "bedrock-agent-runtime.{region}.amazonaws.com",
    "bedrock-agent-runtime-fips.{region}.amazonaws.com",
    // Same reference, China regions (cn-north-1, cn-northwest-1) use the amazonaws.com.cn domain.
    "bedrock.{region}.amazonaws.com.cn",
    "bedrock-runtime.{region}.amazonaws.com.cn",
    "bedrock-agent-runtime.{region}.amazonaws.com.cn",
    // AWS PrivateLink, "Access an AWS service using an interface VPC endpoint": endpoint-specific
    // names such as vpce-0a1b-c2d3.bedrock-runtime.us-east-1.vpce.amazonaws.com.
    "*.bedrock-runtime.{region}.vpce.amazonaws.com",
    "*.bedrock-agent-runtime.{region}.vpce.amazonaws.com",
    // Google Cloud, "Vertex AI locations" and "About accessing the Vertex AI API": regional
    // endpoints REGION-aiplatform.googleapis.com and the global endpoint aiplatform.googleapis.com.
    "{region}-aiplatform.googleapis.com",
    "aiplatform.googleapis.com",
];

/// In-cluster service names, besides any single-label host (`vllm`, `litellm`, `localhost`),
/// which the pod's DNS search path resolves inside the cluster.
pub const IN_CLUSTER_HOSTS: &[&str] = &[
    // Kubernetes "DNS for Services and Pods": <service>.<namespace>.svc.<cluster-domain>; the
    // default cluster domain is cluster.local.
    "*.svc.cluster.local",
    // The same name relative to the cluster domain, completed by the pod's search path.
    "*.svc",
];
