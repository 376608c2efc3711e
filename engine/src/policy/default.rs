//! The built-in default policy: the rule from the Microsoft–OpenAI statement of 27 February 2026,
//! "stateless OpenAI API calls are hosted on Azure", as a HostingPolicy.
//!
//! It is used when no policy is given (offline `check`, `serve --standalone`), ships with the chart,
//! and is kept as `examples/policies/openai-stateless-on-azure.yaml`; a test checks that the file
//! and this value are the same.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{
    Action, ApiClass, ClusterProvider, Disposition, EndpointRulesSpec, HostingPolicy,
    HostingPolicySpec, PlacementSpec,
};

/// Name of the default policy.
pub const DEFAULT_POLICY_NAME: &str = "openai-stateless-on-azure";

/// Azure-hosted OpenAI endpoints, commercial and US Government clouds.
pub const AZURE_OPENAI_HOSTS: &[&str] = &[
    "*.openai.azure.com",
    "*.cognitiveservices.azure.com",
    "*.services.ai.azure.com",
    "*.openai.azure.us",
    "*.cognitiveservices.azure.us",
];

/// The node label AKS sets on every node it manages.
pub const AKS_CLUSTER_LABEL: &str = "kubernetes.azure.com/cluster";

/// The default policy as a resource.
pub fn default_policy() -> HostingPolicy {
    HostingPolicy {
        metadata: ObjectMeta {
            name: Some(DEFAULT_POLICY_NAME.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/part-of".to_string(),
                "hostguard".to_string(),
            )])),
            ..Default::default()
        },
        spec: HostingPolicySpec {
            provider: "openai".into(),
            api_classes: vec![ApiClass::Stateless],
            action: Action::Deny,
            namespace_selector: None,
            excluded_namespaces: vec!["kube-system".into()],
            endpoints: EndpointRulesSpec {
                allowed_hosts: AZURE_OPENAI_HOSTS.iter().map(|h| h.to_string()).collect(),
                require_https: true,
                unresolved: Disposition::Deny,
                in_cluster: Disposition::Warn,
                ambiguous: Disposition::Deny,
                redirection: Disposition::Warn,
            },
            placement: Some(PlacementSpec {
                cluster_providers: vec![ClusterProvider::Azure],
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: AKS_CLUSTER_LABEL.into(),
                                operator: "Exists".into(),
                                values: None,
                            }]),
                            match_fields: None,
                        }],
                    }),
                    preferred_during_scheduling_ignored_during_execution: None,
                }),
            }),
            trust: None,
        },
        status: None,
    }
}
