//! Cluster identity: what each Node runs on, and from that what the cluster runs on. Pure.
//!
//! Evidence, strongest first: `spec.providerID` (`azure://`, `aws://`, `gce://`, written by the
//! cloud's node controller or kubelet), then the managed services' reserved node labels (AKS
//! `kubernetes.azure.com/cluster` and `kubernetes.azure.com/managedby=aks`, EKS
//! `eks.amazonaws.com/nodegroup`/`compute-type`, GKE `cloud.google.com/gke-nodepool`). Outside
//! those managed services a node's labels (and, with `--provider-id`, its provider ID) can be
//! self-applied by whoever runs the kubelet, so detection says what the nodes *claim*; the
//! `--cluster-provider` flag is the way to pin the identity of a cluster whose nodes do not say,
//! or whose nodes cannot be trusted to.
//!
//! The cluster is one provider only when every schedulable Node is backed by it; Nodes of
//! several providers make it `mixed`, where governed pods are admitted only when pinned to the
//! required nodes. Cordoned (unschedulable) Nodes are left out: nothing new lands on them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use crate::api::ClusterProvider;

/// AKS reserved node label naming the cluster's node resource group.
pub const AKS_CLUSTER_LABEL: &str = "kubernetes.azure.com/cluster";
/// AKS reserved node label saying the node is AKS-managed.
pub const AKS_MANAGED_BY_LABEL: &str = "kubernetes.azure.com/managedby";
pub const EKS_NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";
pub const EKS_COMPUTE_TYPE_LABEL: &str = "eks.amazonaws.com/compute-type";
pub const GKE_NODEPOOL_LABEL: &str = "cloud.google.com/gke-nodepool";

/// What detection keeps of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub provider: ClusterProvider,
    pub schedulable: bool,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            provider: node_provider(
                spec.and_then(|s| s.provider_id.as_deref()),
                node.metadata.labels.as_ref(),
            ),
            schedulable: !spec.and_then(|s| s.unschedulable).unwrap_or(false),
        }
    }
}

/// What one Node runs on, from its provider ID and labels.
pub fn node_provider(
    provider_id: Option<&str>,
    labels: Option<&BTreeMap<String, String>>,
) -> ClusterProvider {
    if let Some(id) = provider_id.map(str::trim).filter(|id| !id.is_empty()) {
        let scheme = id.split_once("://").map_or("", |(scheme, _)| scheme);
        return match scheme.to_ascii_lowercase().as_str() {
            "azure" => ClusterProvider::Azure,
            "aws" => ClusterProvider::Aws,
            "gce" => ClusterProvider::Gcp,
            // kind://, k3s://, vsphere://, openstack://, equinixmetal://, ...
            _ => ClusterProvider::Other,
        };
    }
    let Some(labels) = labels else {
        return ClusterProvider::Other;
    };
    let has = |key: &str| labels.get(key).is_some_and(|v| !v.is_empty());
    if has(AKS_CLUSTER_LABEL) || labels.get(AKS_MANAGED_BY_LABEL).is_some_and(|v| v == "aks") {
        ClusterProvider::Azure
    } else if has(EKS_NODEGROUP_LABEL) || has(EKS_COMPUTE_TYPE_LABEL) {
        ClusterProvider::Aws
    } else if has(GKE_NODEPOOL_LABEL) {
        ClusterProvider::Gcp
    } else {
        ClusterProvider::Other
    }
}

/// What the Nodes say about the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Detection {
    pub provider: ClusterProvider,
    /// Schedulable Nodes per provider.
    pub nodes: BTreeMap<&'static str, usize>,
    /// Cordoned Nodes, left out.
    pub unschedulable: usize,
}

/// Derives the cluster provider: one provider when every schedulable Node is backed by it,
/// `mixed` when they differ, `unknown` when there is no schedulable Node.
pub fn detect<'a>(nodes: impl IntoIterator<Item = &'a NodeInfo>) -> Detection {
    let mut out = Detection::default();
    let mut seen: Option<ClusterProvider> = None;
    let mut mixed = false;
    for node in nodes {
        if !node.schedulable {
            out.unschedulable += 1;
            continue;
        }
        *out.nodes.entry(node.provider.as_str()).or_default() += 1;
        match seen {
            None => seen = Some(node.provider),
            Some(p) if p != node.provider => mixed = true,
            Some(_) => {}
        }
    }
    out.provider = match (seen, mixed) {
        (None, _) => ClusterProvider::Unknown,
        (Some(_), true) => ClusterProvider::Mixed,
        (Some(p), false) => p,
    };
    out
}

/// The provider in force: the `--cluster-provider` override when given, else the detected one.
pub fn effective(detected: ClusterProvider, flag: Option<ClusterProvider>) -> ClusterProvider {
    flag.unwrap_or(detected)
}
