//! Cluster identity from Node fixtures shaped like AKS (VMSS and VMAS), EKS, GKE, kind and bare
//! metal: per node, and for whole clusters (uniform, mixed, cordoned nodes, no nodes).

use hostguard::api::ClusterProvider;
use hostguard::cluster::identity::{self, NodeInfo};
use k8s_openapi::api::core::v1::Node;
use rstest::rstest;

fn node(fixture: &str) -> Node {
    let path = format!(
        "{}/tests/fixtures/cluster/nodes/{fixture}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn info(fixture: &str) -> NodeInfo {
    NodeInfo::from_node(&node(fixture))
}

fn cordoned(fixture: &str) -> NodeInfo {
    let mut n = node(fixture);
    n.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
    NodeInfo::from_node(&n)
}

#[rstest]
#[case::aks_vmss_provider_id("aks-vmss", ClusterProvider::Azure)]
#[case::aks_vmas_provider_id("aks-vmas", ClusterProvider::Azure)]
#[case::aks_reserved_label_without_provider_id("aks-labels-only", ClusterProvider::Azure)]
#[case::eks_provider_id_and_nodegroup("eks", ClusterProvider::Aws)]
#[case::eks_fargate_compute_type_label("eks-fargate", ClusterProvider::Aws)]
#[case::gke_provider_id_and_nodepool("gke", ClusterProvider::Gcp)]
#[case::kind_provider_id_is_other("kind", ClusterProvider::Other)]
#[case::bare_metal_without_anything_is_other("bare-metal", ClusterProvider::Other)]
#[case::provider_id_beats_self_applied_aks_label("spoofed-labels", ClusterProvider::Aws)]
fn each_node_fixture_is_classified(#[case] fixture: &str, #[case] expected: ClusterProvider) {
    assert_eq!(info(fixture).provider, expected, "{fixture}");
}

#[rstest]
#[case(
    "azure:///subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/virtualMachineScaleSets/s/virtualMachines/3",
    ClusterProvider::Azure
)]
#[case("AZURE:///subscriptions/x", ClusterProvider::Azure)]
#[case("aws:///us-east-1a/i-0123456789abcdef0", ClusterProvider::Aws)]
#[case("gce://project/zone/name", ClusterProvider::Gcp)]
#[case("vsphere://4207d1e2-6d33-11ee", ClusterProvider::Other)]
#[case("not a provider id", ClusterProvider::Other)]
fn provider_id_schemes(#[case] id: &str, #[case] expected: ClusterProvider) {
    assert_eq!(identity::node_provider(Some(id), None), expected);
}

#[test]
fn the_aks_managed_by_label_counts_only_with_value_aks() {
    let labels = [(
        identity::AKS_MANAGED_BY_LABEL.to_string(),
        "someone-else".to_string(),
    )]
    .into_iter()
    .collect();
    assert_eq!(
        identity::node_provider(None, Some(&labels)),
        ClusterProvider::Other
    );
}

#[test]
fn an_all_aks_cluster_is_azure() {
    let nodes = [info("aks-vmss"), info("aks-vmas"), info("aks-labels-only")];
    let d = identity::detect(&nodes);
    assert_eq!(d.provider, ClusterProvider::Azure);
    assert_eq!(d.nodes.get("azure"), Some(&3));
    assert_eq!(d.unschedulable, 0);
}

#[rstest]
#[case::eks(&["eks", "eks-fargate"], ClusterProvider::Aws)]
#[case::gke(&["gke"], ClusterProvider::Gcp)]
#[case::kind(&["kind"], ClusterProvider::Other)]
#[case::bare_metal_and_kind_are_both_other(&["bare-metal", "kind"], ClusterProvider::Other)]
#[case::aks_plus_eks_is_mixed(&["aks-vmss", "eks"], ClusterProvider::Mixed)]
#[case::aks_plus_bare_metal_is_mixed(&["aks-vmss", "bare-metal"], ClusterProvider::Mixed)]
fn uniform_and_mixed_clusters(#[case] fixtures: &[&str], #[case] expected: ClusterProvider) {
    let nodes: Vec<NodeInfo> = fixtures.iter().map(|f| info(f)).collect();
    assert_eq!(identity::detect(&nodes).provider, expected);
}

#[test]
fn mixed_cluster_counts_nodes_per_provider() {
    let nodes = [info("aks-vmss"), info("aks-vmas"), info("eks"), info("gke")];
    let d = identity::detect(&nodes);
    assert_eq!(d.provider, ClusterProvider::Mixed);
    assert_eq!(d.nodes.get("azure"), Some(&2));
    assert_eq!(d.nodes.get("aws"), Some(&1));
    assert_eq!(d.nodes.get("gcp"), Some(&1));
}

#[test]
fn unschedulable_nodes_are_ignored() {
    // A cordoned on-prem node does not make an AKS cluster mixed.
    let nodes = [info("aks-vmss"), cordoned("bare-metal"), cordoned("eks")];
    let d = identity::detect(&nodes);
    assert_eq!(d.provider, ClusterProvider::Azure);
    assert_eq!(d.unschedulable, 2);
    assert_eq!(d.nodes.get("other"), None);
}

#[test]
fn no_schedulable_node_means_unknown() {
    assert_eq!(
        identity::detect(&[] as &[NodeInfo]).provider,
        ClusterProvider::Unknown
    );
    assert_eq!(
        identity::detect(&[cordoned("aks-vmss")]).provider,
        ClusterProvider::Unknown
    );
}

#[test]
fn the_flag_overrides_detection() {
    assert_eq!(
        identity::effective(ClusterProvider::Other, Some(ClusterProvider::Azure)),
        ClusterProvider::Azure
    );
    assert_eq!(
        identity::effective(ClusterProvider::Mixed, None),
        ClusterProvider::Mixed
    );
}
