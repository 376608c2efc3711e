//! Updates judged by what they change, and pinning judged by meaning (issue 8, items 4 and 5).

use hostguard_engine::api::ClusterProvider;
use hostguard_engine::policy::{
    AKS_CLUSTER_LABEL, Decision, Operation, PolicySet, Request, Verdict, evaluate,
};
use hostguard_engine::snapshot::Snapshot;
use rstest::rstest;
use serde_json::{Value, json};

const DIRECT: &str = "https://api.openai.com/v1";

fn decide(op: Operation, new: &Value, old: Option<&Value>, cluster: ClusterProvider) -> Decision {
    evaluate(
        &Request {
            operation: op,
            object: Some(new.into()),
            old_object: old.map(Into::into),
            namespace: Some("team-a"),
        },
        &PolicySet::builtin(),
        &Snapshot::offline(cluster),
    )
}

/// A running Pod admitted before the policy: it calls api.openai.com.
fn violating_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "chat", "namespace": "team-a", "labels": {"app": "chat"}},
        "spec": {"containers": [{"name": "app", "image": "app:1", "env": [
            {"name": "OPENAI_API_KEY", "value": "sk-x"},
            {"name": "OPENAI_BASE_URL", "value": DIRECT}]}]}})
}

fn with_debug_container(pod: &Value, env: Value) -> Value {
    let mut p = pod.clone();
    p["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox", "targetContainerName": "app", "env": env}]);
    p
}

// ---------------------------------------------------------------- updates

#[rstest]
#[case::labels(json!({"labels": {"app": "chat", "debug": "true"}}))]
#[case::annotations(json!({"annotations": {"note": "on call"}}))]
#[case::both(json!({"labels": {"app": "chat", "x": "y"}, "annotations": {"a": "b"}}))]
fn a_pod_update_of_labels_or_annotations_is_warned_not_denied(#[case] meta: Value) {
    let old = violating_pod();
    let mut new = old.clone();
    for (k, v) in meta.as_object().unwrap() {
        new["metadata"][k] = v.clone();
    }
    let d = decide(Operation::Update, &new, Some(&old), ClusterProvider::Azure);
    assert_eq!(d.verdict, Verdict::Warn, "{d:#?}");
    assert!(d.denials().next().is_none());
    assert!(
        d.warnings
            .iter()
            .map(|w| &w.message)
            .any(|w| w.contains(DIRECT) && w.contains("pre-existing")),
        "{:?}",
        d.warnings
    );
}

#[rstest]
#[case::no_env(json!(null))]
#[case::unrelated_env(json!([{"name": "DEBUG", "value": "1"}]))]
fn an_ephemeral_container_that_adds_no_ai_usage_is_warned_not_denied(#[case] env: Value) {
    let old = violating_pod();
    let new = with_debug_container(&old, env);
    let d = decide(Operation::Update, &new, Some(&old), ClusterProvider::Azure);
    assert_eq!(d.verdict, Verdict::Warn, "{d:#?}");
}

#[test]
fn an_ephemeral_container_that_adds_a_violating_usage_is_denied() {
    let old = violating_pod();
    let new = with_debug_container(
        &old,
        json!([{"name": "OPENAI_BASE_URL", "value": "https://eu.api.openai.com/v1"}]),
    );
    let d = decide(Operation::Update, &new, Some(&old), ClusterProvider::Azure);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    let denied: Vec<&str> = d.denials().map(|v| v.path.as_str()).collect();
    assert_eq!(
        denied,
        vec!["spec.ephemeralContainers[0].env[OPENAI_BASE_URL]"],
        "only what the update brings in is denied"
    );
    // The pre-existing violation is still reported, as a warning.
    assert!(
        d.warnings
            .iter()
            .map(|w| &w.message)
            .any(|w| w.contains("pre-existing"))
    );
}

#[test]
fn an_ephemeral_container_on_a_compliant_pod_that_calls_openai_is_denied() {
    let mut old = violating_pod();
    old["spec"]["containers"][0]["env"] =
        json!([{"name": "AZURE_OPENAI_ENDPOINT", "value": "https://contoso.openai.azure.com/"}]);
    let new = with_debug_container(&old, json!([{"name": "OPENAI_API_KEY", "value": "sk-x"}]));
    let d = decide(Operation::Update, &new, Some(&old), ClusterProvider::Azure);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
}

#[test]
fn an_update_that_changes_the_endpoint_is_denied() {
    let mut old = violating_pod();
    old["spec"]["containers"][0]["env"][1]["value"] = json!("https://contoso.openai.azure.com/");
    let new = violating_pod();
    let d = decide(Operation::Update, &new, Some(&old), ClusterProvider::Azure);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
}

// ---------------------------------------------------------------- pinning by meaning

fn azure_pod(spec_extra: Value) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {"containers": [{"name": "app", "env": [
            {"name": "AZURE_OPENAI_ENDPOINT", "value": "https://contoso.openai.azure.com/"}]}]}});
    for (k, v) in spec_extra.as_object().unwrap() {
        pod["spec"][k] = v.clone();
    }
    pod
}

fn affinity(terms: Value) -> Value {
    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}}})
}

/// On a cluster with nodes of several providers a governed Pod must be pinned to AKS nodes
/// (the default policy: `kubernetes.azure.com/cluster Exists`).
#[rstest]
#[case::exists(affinity(json!([{"matchExpressions": [{"key": AKS_CLUSTER_LABEL, "operator": "Exists"}]}])), true)]
#[case::in_one_value(affinity(json!([{"matchExpressions": [{"key": AKS_CLUSTER_LABEL, "operator": "In", "values": ["MC_rg_aks_westeurope"]}]}])), true)]
#[case::node_selector(json!({"nodeSelector": {AKS_CLUSTER_LABEL: "MC_rg_aks_westeurope"}}), true)]
#[case::node_selector_and_other_term(
    json!({"nodeSelector": {AKS_CLUSTER_LABEL: "MC_x"},
           "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
               {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}),
    true)]
#[case::every_or_term_pinned(affinity(json!([
    {"matchExpressions": [{"key": AKS_CLUSTER_LABEL, "operator": "In", "values": ["a"]}]},
    {"matchExpressions": [{"key": AKS_CLUSTER_LABEL, "operator": "Exists"}, {"key": "gpu", "operator": "Exists"}]}])), true)]
#[case::one_or_term_unpinned(affinity(json!([
    {"matchExpressions": [{"key": AKS_CLUSTER_LABEL, "operator": "Exists"}]},
    {"matchExpressions": [{"key": "eks.amazonaws.com/nodegroup", "operator": "Exists"}]}])), false)]
#[case::not_in_does_not_pin(affinity(json!([{"matchExpressions": [{"key": AKS_CLUSTER_LABEL, "operator": "NotIn", "values": ["x"]}]}])), false)]
#[case::empty_in_does_not_pin(affinity(json!([{"matchExpressions": [{"key": AKS_CLUSTER_LABEL, "operator": "In", "values": []}]}])), false)]
#[case::other_label(json!({"nodeSelector": {"kubernetes.io/os": "linux"}}), false)]
#[case::nothing(json!({}), false)]
fn a_pod_is_pinned_when_every_term_implies_the_requirement(
    #[case] spec: Value,
    #[case] pinned: bool,
) {
    let pod = azure_pod(spec);
    let d = decide(Operation::Create, &pod, None, ClusterProvider::Mixed);
    let verdict = if pinned {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    assert_eq!(d.verdict, verdict, "{d:#?}");
    // The mutation adds nothing to a Pod that is already pinned.
    if pinned {
        let affinity_ops = d
            .patch
            .iter()
            .filter(|op| format!("{op:?}").contains("affinity"))
            .count();
        assert_eq!(affinity_ops, 0, "{:?}", d.patch);
    }
}
