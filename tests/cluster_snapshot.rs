//! The cluster caches → engine state: sequences of watcher events (initial list, applies,
//! deletes, re-lists) produce the expected policies and snapshot, and a policy update changes
//! the next decision.

mod common;

use std::sync::Arc;

use common::cluster::initial_list;
use hostguard::api::{AIWorkload, ClusterProvider, HostingPolicy};
use hostguard::cluster::config_maps::ConfigMapCache;
use hostguard::cluster::inventory::{BuildInput, Built, Inventory, Writers, policy_fingerprint};
use hostguard::cluster::projection::ApplyEvent;
use hostguard::policy::{self, Operation, Verdict};
use hostguard::snapshot::{ConfigMapSource, Lookup};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

fn policy(name: &str, allowed: &[&str]) -> HostingPolicy {
    serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1",
        "kind": "HostingPolicy",
        "metadata": {"name": name, "generation": 1},
        "spec": {
            "provider": "openai",
            "apiClasses": ["stateless"],
            "action": "Deny",
            "excludedNamespaces": ["kube-system"],
            "endpoints": {"allowedHosts": allowed},
        }
    }))
    .unwrap()
}

fn aiw(ns: &str, name: &str, app: &str) -> AIWorkload {
    serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1",
        "kind": "AIWorkload",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": app}}, "provider": "openai"}
    }))
    .unwrap()
}

fn ns(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
    let mut m: PartialObjectMeta<Namespace> = serde_json::from_value(json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": {"name": name}
    }))
    .unwrap();
    m.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    m
}

fn node(name: &str, provider_id: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name},
        "spec": {"providerID": provider_id}
    }))
    .unwrap()
}

fn synced() -> (Inventory, Writers) {
    let (inv, mut w) = Inventory::new();
    initial_list(
        &mut w.policies,
        vec![policy("azure-only", &["*.openai.azure.com"])],
    );
    initial_list(&mut w.workloads, vec![aiw("team-a", "chat", "chat")]);
    initial_list(
        &mut w.namespaces,
        vec![ns("team-a", &[("env", "prod")]), ns("kube-system", &[])],
    );
    initial_list(
        &mut w.nodes,
        vec![
            node(
                "n1",
                "azure:///subscriptions/s/virtualMachineScaleSets/x/virtualMachines/0",
            ),
            node("n2", "azure:///subscriptions/s/virtualMachines/y"),
        ],
    );
    (inv, w)
}

fn build(inv: &Inventory) -> Built {
    inv.build(&BuildInput::default())
}

fn deployment(base_url: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {
            "selector": {"matchLabels": {"app": "chat"}},
            "template": {
                "metadata": {"labels": {"app": "chat"}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "chat:1",
                    "env": [
                        {"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "k"}}},
                        {"name": "OPENAI_BASE_URL", "value": base_url}
                    ]
                }]}
            }
        }
    })
}

fn decide(built: &Built, object: &Value) -> policy::Decision {
    policy::evaluate(
        &policy::Request {
            operation: Operation::Create,
            object: Some(object.into()),
            old_object: None,
            namespace: Some("team-a"),
        },
        &built.policies,
        &built.snapshot,
    )
}

#[test]
fn initial_lists_build_the_expected_snapshot() {
    let (inv, _w) = synced();
    let built = build(&inv);
    let names: Vec<&str> = built
        .policies
        .policies()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["azure-only"]);
    let s = &built.snapshot;
    assert_eq!(s.cluster_provider, ClusterProvider::Azure);
    assert_eq!(
        s.namespace_labels("team-a").map(|l| l.to_labels()),
        Lookup::Found([("env".to_string(), "prod".to_string())].into())
    );
    // A synced namespace cache is authoritative.
    assert_eq!(s.namespace_labels("does-not-exist"), Lookup::Absent);
    assert_eq!(s.declared_count(), 1);
    let labels = [("app".to_string(), "chat".to_string())].into();
    let declared: Vec<&str> = s
        .declarations_for("team-a", &labels)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(declared, ["chat"]);
    // Without a ConfigMap source, a ConfigMap is not known (never claimed absent).
    assert_eq!(s.config_map("team-a", "cm"), Lookup::Unknown);
    assert_eq!(built.detection.nodes.get("azure"), Some(&2));
}

#[test]
fn applies_and_deletes_are_reflected() {
    let (inv, mut w) = synced();
    w.namespaces
        .apply_watcher_event(&Event::Apply(ns("team-b", &[("env", "dev")])));
    w.namespaces
        .apply_watcher_event(&Event::Delete(ns("kube-system", &[])));
    w.workloads
        .apply_watcher_event(&Event::Apply(aiw("team-b", "embed", "embed")));
    w.workloads
        .apply_watcher_event(&Event::Delete(aiw("team-a", "chat", "chat")));
    w.nodes.apply_watcher_event(&Event::Apply(node(
        "n3",
        "aws:///us-east-1a/i-0123456789abcdef0",
    )));
    w.policies.apply_watcher_event(&Event::Apply(policy(
        "second",
        &["*.cognitiveservices.azure.com"],
    )));
    let built = build(&inv);
    let s = &built.snapshot;
    assert!(
        matches!(s.namespace_labels("team-b"), Lookup::Found(l) if l.get("env") == Some("dev"))
    );
    assert_eq!(s.namespace_labels("kube-system"), Lookup::Absent);
    assert_eq!(s.declared_count(), 1);
    let embed = [("app".to_string(), "embed".to_string())].into();
    assert_eq!(s.declarations_for("team-b", &embed).count(), 1);
    let chat = [("app".to_string(), "chat".to_string())].into();
    assert_eq!(s.declarations_for("team-a", &chat).count(), 0);
    // An AWS node joined an Azure cluster: mixed.
    assert_eq!(s.cluster_provider, ClusterProvider::Mixed);
    assert_eq!(built.policies.len(), 2);

    // The AWS node leaves again.
    w.nodes.apply_watcher_event(&Event::Delete(node(
        "n3",
        "aws:///us-east-1a/i-0123456789abcdef0",
    )));
    w.policies
        .apply_watcher_event(&Event::Delete(policy("second", &[])));
    let built = build(&inv);
    assert_eq!(built.snapshot.cluster_provider, ClusterProvider::Azure);
    assert_eq!(built.policies.len(), 1);
}

#[test]
fn a_relist_drops_objects_deleted_while_the_watch_was_down() {
    let (inv, mut w) = synced();
    // Re-list after a watch restart: only team-a is still there.
    initial_list(&mut w.namespaces, vec![ns("team-a", &[("env", "prod")])]);
    let built = build(&inv);
    assert_eq!(
        built.snapshot.namespace_labels("kube-system"),
        Lookup::Absent
    );
    assert!(matches!(
        built.snapshot.namespace_labels("team-a"),
        Lookup::Found(_)
    ));
}

#[test]
fn an_invalid_policy_is_left_out_and_reported() {
    let (inv, mut w) = synced();
    w.policies
        .apply_watcher_event(&Event::Apply(policy("broken", &["https://*.evil"])));
    let built = build(&inv);
    let names: Vec<&str> = built
        .policies
        .policies()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["azure-only"]);
    let errors = &built.invalid_policies["broken"];
    assert!(
        errors[0].path.starts_with("spec.endpoints.allowedHosts[0]"),
        "{errors:?}"
    );
}

#[test]
fn the_override_wins_over_detection_and_file_policies_win_over_cluster_ones() {
    let (inv, _w) = synced();
    let file =
        hostguard::policy::CompiledPolicy::compile(&policy("azure-only", &["gw.contoso.com"]))
            .unwrap();
    let built = inv.build(&BuildInput {
        file_policies: std::slice::from_ref(&file),
        cluster_provider: Some(ClusterProvider::Other),
        ..Default::default()
    });
    assert_eq!(built.snapshot.cluster_provider, ClusterProvider::Other);
    assert_eq!(built.detection.provider, ClusterProvider::Azure);
    assert_eq!(built.shadowed, ["azure-only"]);
    assert_eq!(
        built.policies.policies()[0].allowed_list(),
        "gw.contoso.com"
    );
}

#[test]
fn a_policy_update_changes_the_next_decision() {
    let (inv, mut w) = synced();
    let object = deployment("https://gw.contoso.com/v1");
    let before = decide(&build(&inv), &object);
    assert_eq!(before.verdict, Verdict::Deny, "{:?}", before.violations);
    assert!(before.violations[0].message.contains("gw.contoso.com"));

    w.policies.apply_watcher_event(&Event::Apply(policy(
        "azure-only",
        &["*.openai.azure.com", "gw.contoso.com"],
    )));
    let after = decide(&build(&inv), &object);
    assert_eq!(after.verdict, Verdict::Allow, "{:?}", after.violations);
}

#[test]
fn a_namespace_label_change_changes_which_policies_apply() {
    let (inv, mut w) = synced();
    let mut p = policy("prod-only", &["*.openai.azure.com"]);
    p.spec.namespace_selector =
        Some(serde_json::from_value(json!({"matchLabels": {"env": "prod"}})).unwrap());
    w.policies
        .apply_watcher_event(&Event::Delete(policy("azure-only", &[])));
    w.policies.apply_watcher_event(&Event::Apply(p));
    let object = deployment("https://api.openai.com/v1");
    assert_eq!(decide(&build(&inv), &object).verdict, Verdict::Deny);
    w.namespaces
        .apply_watcher_event(&Event::Apply(ns("team-a", &[("env", "dev")])));
    assert_eq!(decide(&build(&inv), &object).verdict, Verdict::Allow);
}

#[test]
fn status_writes_do_not_change_the_policy_fingerprint() {
    let a = Arc::new(policy("p", &["*.openai.azure.com"]));
    let mut with_status = (*a).clone();
    with_status.status = Some(Default::default());
    with_status.metadata.resource_version = Some("99".into());
    assert_eq!(
        policy_fingerprint(&[Arc::clone(&a)]),
        policy_fingerprint(&[Arc::new(with_status)])
    );
    let changed = Arc::new(policy("p", &["*.openai.azure.com", "x.example.com"]));
    assert_ne!(policy_fingerprint(&[a]), policy_fingerprint(&[changed]));
}

#[test]
fn config_maps_come_from_the_on_demand_cache() {
    let (inv, _w) = synced();
    let cache = ConfigMapCache::new(16);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("endpoints".into());
    cm.metadata.namespace = Some("team-a".into());
    cm.metadata.resource_version = Some("1".into());
    cm.data = Some(
        [(
            "OPENAI_BASE_URL".to_string(),
            "https://api.openai.com/v1".to_string(),
        )]
        .into(),
    );
    cache.insert("team-a", "endpoints", Some(&cm));
    cache.insert("team-a", "missing", None);
    let built = inv.build(&BuildInput {
        config_maps: Some(Arc::clone(&cache) as Arc<dyn ConfigMapSource>),
        ..Default::default()
    });
    assert!(matches!(
        built.snapshot.config_map("team-a", "endpoints"),
        Lookup::Found(_)
    ));
    assert_eq!(
        built.snapshot.config_map("team-a", "missing"),
        Lookup::Absent
    );
    assert_eq!(
        built.snapshot.config_map("team-a", "other"),
        Lookup::Unknown
    );

    // The value from the cached ConfigMap decides.
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {"selector": {}, "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{
            "name": "app", "image": "i",
            "env": [
                {"name": "OPENAI_API_KEY", "value": "sk-test"},
                {"name": "OPENAI_BASE_URL", "valueFrom": {"configMapKeyRef": {"name": "endpoints", "key": "OPENAI_BASE_URL"}}}
            ]
        }]}}}
    });
    let d = decide(&built, &object);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.violations[0].message.contains("api.openai.com"),
        "{:?}",
        d.violations
    );
}

/// What the AIWorkload watch treats as a change for the engine (and so as a reason to rebuild
/// the snapshot): what the declaration is compiled from, the labels and the spec; not the
/// status the audit writes. A HostingPolicy may trust AIWorkloads by label, so a label change
/// alone must reach the snapshot.
#[test]
fn an_aiworkload_changes_the_snapshot_by_its_labels_or_spec_not_by_its_status() {
    use hostguard::cluster::watch::Sink;
    let (inv, mut w) = synced();
    let stored = aiw("team-a", "chat", "chat");
    assert!(!w.workloads.changes(&stored), "the same object again");

    let mut with_status = stored.clone();
    with_status.status = Some(
        serde_json::from_value(json!({
            "observedGeneration": 1,
            "conditions": [{"type": "Compliant", "status": "True", "reason": "Compliant",
                "message": "all 1 matched workloads pass every policy",
                "lastTransitionTime": "2026-03-01T12:00:00Z"}]
        }))
        .unwrap(),
    );
    assert!(!w.workloads.changes(&with_status), "a status write");

    let mut relabelled = stored.clone();
    relabelled.metadata.labels = Some([("trusted".to_string(), "yes".to_string())].into());
    assert!(w.workloads.changes(&relabelled), "a label change");
    // Applied, the new labels are what the next snapshot declares.
    w.workloads
        .apply_watcher_event(&Event::Apply(relabelled.clone()));
    assert!(!w.workloads.changes(&relabelled));
    let s = build(&inv).snapshot;
    let chat = [("app".to_string(), "chat".to_string())].into();
    let declared: Vec<_> = s
        .declarations_for("team-a", &chat)
        .map(|d| d.labels.clone())
        .collect();
    assert_eq!(
        declared,
        [[("trusted".to_string(), "yes".to_string())].into()]
    );

    assert!(
        w.workloads.changes(&aiw("team-a", "chat", "other")),
        "a selector change"
    );
    assert!(
        w.workloads.changes(&aiw("team-b", "chat", "chat")),
        "the same name in another namespace is another AIWorkload"
    );
}

/// AIWorkloads are namespaced: two of one name in two namespaces are two declarations, and
/// deleting one leaves the other.
#[test]
fn aiworkloads_of_one_name_in_two_namespaces_are_both_kept() {
    let (inv, mut w) = synced();
    w.workloads
        .apply_watcher_event(&Event::Apply(aiw("team-b", "chat", "chat")));
    let chat = [("app".to_string(), "chat".to_string())].into();
    let s = build(&inv).snapshot;
    assert_eq!(s.declared_count(), 2);
    assert_eq!(s.declarations_for("team-a", &chat).count(), 1);
    assert_eq!(s.declarations_for("team-b", &chat).count(), 1);

    w.workloads
        .apply_watcher_event(&Event::Delete(aiw("team-a", "chat", "chat")));
    let s = build(&inv).snapshot;
    assert_eq!(s.declarations_for("team-a", &chat).count(), 0);
    assert_eq!(s.declarations_for("team-b", &chat).count(), 1);
}
