//! Table-driven tests of the engine: every kind, every container kind, each detection source,
//! each variable-resolution rule, each action, placement and mutation.

use hostguard_engine::api::{Action, ClusterProvider, Disposition, HostingPolicy};
use hostguard_engine::endpoint::Hosting;
use hostguard_engine::policy::{
    Decision, Operation, PolicySet, Request, Verdict, default_policy, evaluate,
};
use hostguard_engine::snapshot::{DeclaredWorkload, Snapshot};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use rstest::rstest;
use serde_json::{Value, json};

const AZURE: &str = "https://contoso.openai.azure.com/";
const DIRECT: &str = "https://api.openai.com/v1";

fn container(env: Value) -> Value {
    json!({"name": "app", "image": "app:1", "env": env})
}

fn pod_spec(env: Value) -> Value {
    json!({"containers": [container(env)]})
}

/// Wraps a pod spec in an object of the given kind, with pod labels `app: chat`.
fn object(kind: &str, spec: Value) -> Value {
    let template = json!({"metadata": {"labels": {"app": "chat"}}, "spec": spec});
    let meta = json!({"name": "chat", "namespace": "team-a"});
    match kind {
        "Pod" => json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "chat", "namespace": "team-a", "labels": {"app": "chat"}}, "spec": spec}),
        "ReplicationController" => {
            json!({"apiVersion": "v1", "kind": kind, "metadata": meta, "spec": {"template": template}})
        }
        "Job" => {
            json!({"apiVersion": "batch/v1", "kind": kind, "metadata": meta, "spec": {"template": template}})
        }
        "CronJob" => json!({"apiVersion": "batch/v1", "kind": kind, "metadata": meta,
                            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
        _ => json!({"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
                    "spec": {"selector": {"matchLabels": {"app": "chat"}}, "template": template}}),
    }
}

fn deployment(env: Value) -> Value {
    object("Deployment", pod_spec(env))
}

fn decide_with(obj: &Value, policies: &PolicySet, snapshot: &Snapshot) -> Decision {
    evaluate(
        &Request {
            operation: Operation::Create,
            object: Some(obj.into()),
            old_object: None,
            namespace: None,
        },
        policies,
        snapshot,
    )
}

fn azure_snapshot() -> Snapshot {
    Snapshot::offline(ClusterProvider::Azure)
}

fn decide(obj: &Value) -> Decision {
    decide_with(obj, &PolicySet::builtin(), &azure_snapshot())
}

fn paths(d: &Decision) -> Vec<&str> {
    d.violations.iter().map(|v| v.path.as_str()).collect()
}

fn policy_with(edit: impl FnOnce(&mut HostingPolicy)) -> PolicySet {
    let mut p = default_policy();
    edit(&mut p);
    PolicySet::compile([&p]).expect("test policy compiles")
}

// ---------------------------------------------------------------- kinds and containers

#[rstest]
#[case::pod("Pod", "spec.containers[0].env[OPENAI_API_KEY]")]
#[case::deployment("Deployment", "spec.template.spec.containers[0].env[OPENAI_API_KEY]")]
#[case::statefulset("StatefulSet", "spec.template.spec.containers[0].env[OPENAI_API_KEY]")]
#[case::daemonset("DaemonSet", "spec.template.spec.containers[0].env[OPENAI_API_KEY]")]
#[case::replicaset("ReplicaSet", "spec.template.spec.containers[0].env[OPENAI_API_KEY]")]
#[case::replicationcontroller(
    "ReplicationController",
    "spec.template.spec.containers[0].env[OPENAI_API_KEY]"
)]
#[case::job("Job", "spec.template.spec.containers[0].env[OPENAI_API_KEY]")]
#[case::cronjob(
    "CronJob",
    "spec.jobTemplate.spec.template.spec.containers[0].env[OPENAI_API_KEY]"
)]
fn a_key_without_endpoint_is_denied_in_every_kind(#[case] kind: &str, #[case] path: &str) {
    let obj = object(
        kind,
        pod_spec(json!([{"name": "OPENAI_API_KEY", "value": "sk-x"}])),
    );
    let d = decide(&obj);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    assert_eq!(paths(&d), vec![path]);
    let message = &d.violations[0].message;
    assert!(message.starts_with(path), "{message}");
    assert!(message.contains(&format!("{DIRECT:?}")), "{message}");
    assert!(message.contains("*.openai.azure.com"), "{message}");
}

#[rstest]
#[case::init(
    "initContainers",
    "spec.template.spec.initContainers[0].env[OPENAI_BASE_URL]"
)]
#[case::regular("containers", "spec.template.spec.containers[1].env[OPENAI_BASE_URL]")]
#[case::ephemeral(
    "ephemeralContainers",
    "spec.template.spec.ephemeralContainers[0].env[OPENAI_BASE_URL]"
)]
fn every_container_kind_is_inspected(#[case] field: &str, #[case] path: &str) {
    let bad = container(json!([{"name": "OPENAI_BASE_URL", "value": DIRECT}]));
    let clean = container(json!([]));
    let mut spec = json!({"containers": [clean]});
    if field == "containers" {
        spec["containers"].as_array_mut().unwrap().push(bad);
    } else {
        spec[field] = json!([bad]);
    }
    let d = decide(&object("Deployment", spec));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(paths(&d), vec![path]);
}

#[test]
fn azure_endpoint_is_allowed() {
    let d = decide(&deployment(json!([
        {"name": "AZURE_OPENAI_ENDPOINT", "value": AZURE},
        {"name": "AZURE_OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "key"}}}
    ])));
    assert_eq!(d.verdict, Verdict::Allow, "{d:#?}");
    assert_eq!(d.governed_by, vec!["openai-stateless-on-azure"]);
    assert_eq!(d.findings.len(), 1);
    assert_eq!(d.findings[0].hosting, Hosting::Azure);
}

#[test]
fn a_workload_without_ai_signals_is_not_governed() {
    let d = decide(&deployment(
        json!([{"name": "DATABASE_URL", "value": "postgres://db"}]),
    ));
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.governed_by.is_empty());
    assert!(d.findings.is_empty());
}

#[test]
fn empty_values_are_unset() {
    let d = decide(&deployment(json!([
        {"name": "OPENAI_API_KEY", "value": ""},
        {"name": "AZURE_OPENAI_ENDPOINT", "value": ""}
    ])));
    assert!(d.governed_by.is_empty(), "{d:#?}");
}

#[rstest]
#[case::service("v1", "Service")]
#[case::configmap("v1", "ConfigMap")]
#[case::unknown_cr("k8sgpt.ai/v1alpha1", "K8sGPT")]
fn kinds_without_pod_templates_are_skipped(#[case] api_version: &str, #[case] kind: &str) {
    let d = decide(&json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}));
    assert_eq!(d.verdict, Verdict::Skipped);
    assert!(d.skipped.as_deref().unwrap_or("").contains(kind));
}

// ---------------------------------------------------------------- operations

fn review(op: Operation, new: &Value, old: Option<&Value>) -> Decision {
    evaluate(
        &Request {
            operation: op,
            object: Some(new.into()),
            old_object: old.map(Into::into),
            namespace: Some("team-a"),
        },
        &PolicySet::builtin(),
        &azure_snapshot(),
    )
}

#[test]
fn delete_and_connect_are_not_evaluated() {
    let bad = deployment(json!([{"name": "OPENAI_API_KEY", "value": "k"}]));
    assert_eq!(
        review(Operation::Delete, &bad, None).verdict,
        Verdict::Skipped
    );
    assert_eq!(
        review(Operation::Connect, &bad, None).verdict,
        Verdict::Skipped
    );
}

#[test]
fn update_that_changes_the_template_is_denied() {
    let old = deployment(json!([{"name": "AZURE_OPENAI_ENDPOINT", "value": AZURE}]));
    let new = deployment(json!([{"name": "OPENAI_BASE_URL", "value": DIRECT}]));
    assert_eq!(
        review(Operation::Update, &new, Some(&old)).verdict,
        Verdict::Deny
    );
}

#[test]
fn update_that_leaves_a_violating_template_unchanged_is_warned_not_denied() {
    let old = deployment(json!([{"name": "OPENAI_BASE_URL", "value": DIRECT}]));
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(5);
    let d = review(Operation::Update, &new, Some(&old));
    assert_eq!(d.verdict, Verdict::Warn, "{d:#?}");
    assert!(
        d.warnings
            .iter()
            .map(|w| &w.message)
            .any(|w| w.contains("pre-existing"))
    );
}

#[test]
fn update_of_an_object_being_deleted_is_never_blocked() {
    let mut obj = deployment(json!([{"name": "OPENAI_BASE_URL", "value": DIRECT}]));
    obj["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(
        review(Operation::Update, &obj, None).verdict,
        Verdict::Skipped
    );
}

// ---------------------------------------------------------------- detection sources

#[test]
fn aiworkload_declaring_stateful_exempts_from_the_stateless_policy() {
    let mut snapshot = azure_snapshot();
    let aiw: hostguard_engine::api::AIWorkload = serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": "assistants", "namespace": "team-a"},
        "spec": {"selector": {"matchLabels": {"app": "chat"}}, "provider": "openai", "apiClass": "stateful"}
    })).unwrap();
    snapshot.insert_declared(DeclaredWorkload::from_resource(&aiw).unwrap());
    let obj = deployment(json!([{"name": "OPENAI_API_KEY", "value": "k"}]));
    let d = decide_with(&obj, &PolicySet::builtin(), &snapshot);
    assert_eq!(d.verdict, Verdict::Allow, "{d:#?}");
    assert_eq!(d.findings[0].api_class, "stateful");
}

#[test]
fn aiworkload_declared_endpoint_is_checked_and_selector_must_match() {
    let mut snapshot = azure_snapshot();
    let aiw: hostguard_engine::api::AIWorkload = serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {"selector": {"matchLabels": {"app": "chat"}}, "provider": "openai",
                 "apiClass": "mixed", "endpoint": "https://api.openai.com/v1"}
    }))
    .unwrap();
    snapshot.insert_declared(DeclaredWorkload::from_resource(&aiw).unwrap());
    // No variables at all: only the declaration makes it an AI workload.
    let d = decide_with(&deployment(json!([])), &PolicySet::builtin(), &snapshot);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    assert!(d.violations[0].path.contains("AIWorkload team-a/chat"));
    // Other labels: not selected.
    let mut other = deployment(json!([]));
    other["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    assert!(
        decide_with(&other, &PolicySet::builtin(), &snapshot)
            .governed_by
            .is_empty()
    );
}

#[test]
fn provider_annotation_alone_means_the_sdk_default() {
    let mut obj = deployment(json!([]));
    obj["spec"]["template"]["metadata"]["annotations"] =
        json!({"hostguard.dev/provider": "openai"});
    let d = decide(&obj);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    assert!(d.violations[0].message.contains(DIRECT));
}

#[rstest]
// An annotation only adds governance: one that would exempt is ignored (see tests/trust.rs).
#[case::stateful_on_template("spec", "stateful", Verdict::Deny)]
#[case::stateful_on_workload("meta", "stateful", Verdict::Deny)]
#[case::stateful_apis("spec", "assistants,batches", Verdict::Deny)]
#[case::mixed("spec", "mixed", Verdict::Deny)]
#[case::stateless("spec", "stateless", Verdict::Deny)]
fn api_class_annotation_decides_governance(
    #[case] on: &str,
    #[case] class: &str,
    #[case] verdict: Verdict,
) {
    let mut obj = deployment(json!([{"name": "OPENAI_API_KEY", "value": "k"}]));
    let ann = json!({"hostguard.dev/api-class": class});
    if on == "spec" {
        obj["spec"]["template"]["metadata"]["annotations"] = ann;
    } else {
        obj["metadata"]["annotations"] = ann;
    }
    assert_eq!(decide(&obj).verdict, verdict);
}

#[test]
fn unreadable_api_class_annotation_counts_as_stateless_with_a_warning() {
    let mut obj = deployment(json!([{"name": "OPENAI_API_KEY", "value": "k"}]));
    obj["spec"]["template"]["metadata"]["annotations"] =
        json!({"hostguard.dev/api-class": "state less!"});
    let d = decide(&obj);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.warnings
            .iter()
            .map(|w| &w.message)
            .any(|w| w.contains("not an API class")),
        "{:?}",
        d.warnings
    );
}

// ---------------------------------------------------------------- variables and resolution

#[rstest]
#[case::openai_base_url("OPENAI_BASE_URL", DIRECT, Verdict::Deny)]
#[case::openai_api_base("OPENAI_API_BASE", "https://eu.api.openai.com/v1", Verdict::Deny)]
#[case::openwebui_base("OPENAI_API_BASE_URL", AZURE, Verdict::Allow)]
#[case::azure_base_url(
    "AZURE_OPENAI_BASE_URL",
    "https://x.cognitiveservices.azure.com/",
    Verdict::Allow
)]
#[case::litellm("AZURE_API_BASE", "https://gw.example.com/", Verdict::Deny)]
#[case::spring_underscore("SPRING_AI_OPENAI_BASE_URL", DIRECT, Verdict::Deny)]
#[case::spring_relaxed("SPRING_AI_OPENAI_BASEURL", AZURE, Verdict::Allow)]
#[case::spring_azure(
    "SPRING_AI_AZURE_OPENAI_ENDPOINT",
    "https://x.openai.azure.us/",
    Verdict::Allow
)]
#[case::trap_backslash(
    "AZURE_OPENAI_ENDPOINT",
    "https://x.openai.azure.com\\@evil.com/",
    Verdict::Deny
)]
#[case::http_azure("AZURE_OPENAI_ENDPOINT", "http://x.openai.azure.com/", Verdict::Deny)]
fn endpoint_variables_are_classified(
    #[case] name: &str,
    #[case] value: &str,
    #[case] verdict: Verdict,
) {
    let d = decide(&deployment(json!([{"name": name, "value": value}])));
    assert_eq!(d.verdict, verdict, "{d:#?}");
}

#[test]
fn instance_name_implies_an_azure_endpoint() {
    let d = decide(&deployment(
        json!([{"name": "AZURE_OPENAI_API_INSTANCE_NAME", "value": "contoso"}]),
    ));
    assert_eq!(d.verdict, Verdict::Allow, "{d:#?}");
    assert_eq!(d.findings[0].endpoint, "https://contoso.openai.azure.com");
}

#[test]
fn openwebui_url_lists_are_split_and_each_checked() {
    let d = decide(&deployment(json!([
        {"name": "OPENAI_API_BASE_URLS", "value": format!("{AZURE};{DIRECT}")}
    ])));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.findings.len(), 2);
}

#[test]
fn both_node_sdk_variables_must_be_compliant() {
    // openai-node's AzureOpenAI reads OPENAI_BASE_URL before AZURE_OPENAI_ENDPOINT.
    let d = decide(&deployment(json!([
        {"name": "AZURE_OPENAI_ENDPOINT", "value": AZURE},
        {"name": "OPENAI_BASE_URL", "value": DIRECT}
    ])));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(
        paths(&d),
        vec!["spec.template.spec.containers[0].env[OPENAI_BASE_URL]"]
    );
}

#[test]
fn bedrock_through_the_openai_sdk_is_other_cloud() {
    let d = decide(&deployment(json!([
        {"name": "OPENAI_API_TYPE", "value": "amazon-bedrock"},
        {"name": "AWS_BEDROCK_BASE_URL", "value": "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1"}
    ])));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.findings[0].hosting, Hosting::OtherCloud);
    assert!(d.violations[0].message.contains("other-cloud"));
}

#[test]
fn variable_expansion_uses_earlier_variables() {
    let d = decide(&deployment(json!([
        {"name": "RESOURCE", "value": "contoso"},
        {"name": "AZURE_OPENAI_ENDPOINT", "value": "https://$(RESOURCE).openai.azure.com/"}
    ])));
    assert_eq!(d.verdict, Verdict::Allow, "{d:#?}");
    assert_eq!(d.findings[0].endpoint, "https://contoso.openai.azure.com/");
}

#[test]
fn expansion_of_an_undefined_or_later_variable_stays_literal_and_is_denied() {
    // RESOURCE is defined after the reference: Kubernetes leaves $(RESOURCE) as written.
    let d = decide(&deployment(json!([
        {"name": "AZURE_OPENAI_ENDPOINT", "value": "https://$(RESOURCE).openai.azure.com/"},
        {"name": "RESOURCE", "value": "contoso"}
    ])));
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.findings[0].endpoint.contains("$(RESOURCE)"));
}

#[test]
fn duplicate_names_check_every_value() {
    let d = decide(&deployment(json!([
        {"name": "OPENAI_BASE_URL", "value": DIRECT},
        {"name": "OPENAI_BASE_URL", "value": AZURE}
    ])));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.findings.len(), 2);
}

fn snapshot_with_config_maps(maps: &[(&str, Value)]) -> Snapshot {
    let mut s = azure_snapshot();
    for (name, data) in maps {
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "team-a"}, "data": data
        }))
        .unwrap();
        s.insert_config_map(&cm, "default");
    }
    s
}

fn with_env_from(env_from: Value, env: Value) -> Value {
    object(
        "Deployment",
        json!({"containers": [{"name": "app", "image": "a", "envFrom": env_from, "env": env}]}),
    )
}

#[test]
fn config_map_key_refs_are_resolved() {
    let snapshot = snapshot_with_config_maps(&[("ai", json!({"endpoint": DIRECT}))]);
    let obj = deployment(json!([{"name": "OPENAI_BASE_URL",
        "valueFrom": {"configMapKeyRef": {"name": "ai", "key": "endpoint"}}}]));
    let d = decide_with(&obj, &PolicySet::builtin(), &snapshot);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.violations[0]
            .message
            .contains("ConfigMap \"ai\" key \"endpoint\""),
        "{}",
        d.violations[0].message
    );
}

/// A value from an `envFrom` source names the ConfigMap and the key it came from, quoted as
/// for a `configMapKeyRef` (the prefix is not part of the key).
#[test]
fn an_env_from_value_names_its_config_map_and_key() {
    let snapshot = snapshot_with_config_maps(&[("ai", json!({"BASE_URL": DIRECT}))]);
    let obj = with_env_from(
        json!([{"configMapRef": {"name": "ai"}, "prefix": "OPENAI_"}]),
        json!([]),
    );
    let d = decide_with(&obj, &PolicySet::builtin(), &snapshot);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    assert!(
        d.violations[0]
            .message
            .contains("ConfigMap \"ai\" key \"BASE_URL\""),
        "{}",
        d.violations[0].message
    );
}

#[test]
fn later_env_from_sources_override_earlier_ones() {
    let snapshot = snapshot_with_config_maps(&[
        ("first", json!({"OPENAI_BASE_URL": DIRECT})),
        ("second", json!({"OPENAI_BASE_URL": AZURE})),
    ]);
    let obj = with_env_from(
        json!([{"configMapRef": {"name": "first"}}, {"configMapRef": {"name": "second"}}]),
        json!([]),
    );
    let d = decide_with(&obj, &PolicySet::builtin(), &snapshot);
    assert_eq!(d.verdict, Verdict::Allow, "{d:#?}");
    assert_eq!(
        d.findings[0].path,
        "spec.template.spec.containers[0].envFrom[1]"
    );
}

#[test]
fn env_from_prefix_is_prepended() {
    let snapshot = snapshot_with_config_maps(&[("ai", json!({"BASE_URL": DIRECT}))]);
    let prefixed = with_env_from(
        json!([{"configMapRef": {"name": "ai"}, "prefix": "OPENAI_"}]),
        json!([]),
    );
    assert_eq!(
        decide_with(&prefixed, &PolicySet::builtin(), &snapshot).verdict,
        Verdict::Deny
    );
    // Without the prefix the key is BASE_URL, which no client reads as its endpoint; its value
    // still names api.openai.com, which is a model endpoint whatever the variable (issue 9).
    let unprefixed = with_env_from(json!([{"configMapRef": {"name": "ai"}}]), json!([]));
    let d = decide_with(&unprefixed, &PolicySet::builtin(), &snapshot);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    // (The fix the message suggests may name OPENAI_BASE_URL; what it reports may not.)
    assert!(
        d.violations.iter().all(|v| !v
            .message
            .split("; ")
            .next()
            .unwrap_or_default()
            .contains("OPENAI_BASE_URL")),
        "{d:#?}"
    );
}

#[test]
fn env_overrides_env_from() {
    let snapshot = snapshot_with_config_maps(&[("ai", json!({"OPENAI_BASE_URL": DIRECT}))]);
    let obj = with_env_from(
        json!([{"configMapRef": {"name": "ai"}}]),
        json!([{"name": "OPENAI_BASE_URL", "value": AZURE}]),
    );
    assert_eq!(
        decide_with(&obj, &PolicySet::builtin(), &snapshot).verdict,
        Verdict::Allow
    );
}

#[test]
fn secret_sourced_endpoint_is_unresolved_and_denied() {
    let d = decide(&deployment(json!([{"name": "AZURE_OPENAI_ENDPOINT",
        "valueFrom": {"secretKeyRef": {"name": "ai", "key": "endpoint"}}}])));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.findings[0].hosting, Hosting::Unresolved);
    assert!(d.violations[0].message.contains("never reads Secrets"));
}

#[test]
fn key_with_env_from_secret_makes_the_endpoint_unresolved() {
    let obj = with_env_from(
        json!([{"secretRef": {"name": "openai"}}]),
        json!([{"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "openai", "key": "key"}}}]),
    );
    let d = decide(&obj);
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.findings[0].hosting, Hosting::Unresolved);
    assert_eq!(
        d.findings[0].path,
        "spec.template.spec.containers[0].envFrom[0]"
    );
}

#[test]
fn missing_config_map_offline_is_unresolved() {
    let d = decide(&deployment(json!([{"name": "OPENAI_BASE_URL",
        "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "url"}}}])));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.findings[0].hosting, Hosting::Unresolved);
}

#[rstest]
#[case::direct_in_args(json!(["--base-url=https://api.openai.com/v1"]), Verdict::Deny)]
#[case::azure_in_args(json!(["--endpoint", AZURE]), Verdict::Allow)]
#[case::expanded_in_args(json!(["--endpoint", "$(EP)"]), Verdict::Deny)]
#[case::expanded_azure_in_args(json!(["--endpoint", "$(AZ)"]), Verdict::Allow)]
#[case::unrelated_url(json!(["--db", "postgres://db:5432"]), Verdict::Allow)]
fn model_urls_in_args_count(#[case] args: Value, #[case] verdict: Verdict) {
    // EP is used only through $(EP); AZ holds the Azure endpoint.
    let env = match args[1].as_str() {
        Some("$(EP)") => json!([{"name": "EP", "value": DIRECT}]),
        _ => json!([{"name": "AZ", "value": AZURE}]),
    };
    let obj = object(
        "Deployment",
        json!({"containers": [{"name": "a", "image": "a", "args": args, "env": env}]}),
    );
    assert_eq!(decide(&obj).verdict, verdict);
}

// ---------------------------------------------------------------- actions and dispositions

fn bad() -> Value {
    deployment(json!([{"name": "OPENAI_BASE_URL", "value": DIRECT}]))
}

#[test]
fn warn_action_admits_with_warnings() {
    let d = decide_with(
        &bad(),
        &policy_with(|p| p.spec.action = Action::Warn),
        &azure_snapshot(),
    );
    assert_eq!(d.verdict, Verdict::Warn);
    assert!(d.allowed());
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(d.violations[0].action, Action::Warn);
}

#[test]
fn audit_action_admits_silently_but_records() {
    let d = decide_with(
        &bad(),
        &policy_with(|p| p.spec.action = Action::Audit),
        &azure_snapshot(),
    );
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.warnings.is_empty());
    assert_eq!(d.violations.len(), 1);
    assert_eq!(d.violations[0].action, Action::Audit);
}

#[test]
fn in_cluster_endpoints_are_warned_by_default_and_follow_the_disposition() {
    let obj = deployment(
        json!([{"name": "OPENAI_API_BASE_URL", "value": "http://litellm.ai.svc.cluster.local:4000"}]),
    );
    let d = decide(&obj);
    assert_eq!(d.verdict, Verdict::Warn);
    assert_eq!(d.findings[0].hosting, Hosting::InCluster);
    let deny = policy_with(|p| p.spec.endpoints.in_cluster = Disposition::Deny);
    assert_eq!(
        decide_with(&obj, &deny, &azure_snapshot()).verdict,
        Verdict::Deny
    );
    let allow = policy_with(|p| p.spec.endpoints.in_cluster = Disposition::Allow);
    assert_eq!(
        decide_with(&obj, &allow, &azure_snapshot()).verdict,
        Verdict::Allow
    );
}

#[test]
fn unresolved_disposition_allow_admits_secret_endpoints() {
    let obj = deployment(json!([{"name": "AZURE_OPENAI_ENDPOINT",
        "valueFrom": {"secretKeyRef": {"name": "ai", "key": "endpoint"}}}]));
    let allow = policy_with(|p| p.spec.endpoints.unresolved = Disposition::Allow);
    assert_eq!(
        decide_with(&obj, &allow, &azure_snapshot()).verdict,
        Verdict::Allow
    );
}

#[test]
fn excluded_namespaces_are_not_governed() {
    let mut obj = bad();
    obj["metadata"]["namespace"] = json!("kube-system");
    assert!(decide(&obj).governed_by.is_empty());
}

#[test]
fn namespace_selector_uses_snapshot_labels_and_fails_closed_offline() {
    let policies = policy_with(|p| {
        p.spec.namespace_selector =
            Some(serde_json::from_value(json!({"matchLabels": {"ai": "governed"}})).unwrap());
    });
    // Offline, labels unknown: the selector matches.
    assert_eq!(
        decide_with(&bad(), &policies, &azure_snapshot()).verdict,
        Verdict::Deny
    );
    let mut s = azure_snapshot();
    s.insert_namespace_labels("team-a", [("ai".to_string(), "free".to_string())].into());
    assert!(decide_with(&bad(), &policies, &s).governed_by.is_empty());
    s.insert_namespace_labels(
        "team-a",
        [("ai".to_string(), "governed".to_string())].into(),
    );
    assert_eq!(decide_with(&bad(), &policies, &s).verdict, Verdict::Deny);
}

#[test]
fn a_namespace_missing_from_an_authoritative_cache_still_matches_selectors() {
    // The namespace watch has not delivered team-a yet (created in the same sync as its
    // workloads): a missing namespace is no reason to skip a namespace-scoped policy.
    let policies = policy_with(|p| {
        p.spec.namespace_selector =
            Some(serde_json::from_value(json!({"matchLabels": {"ai": "governed"}})).unwrap());
    });
    let mut s = azure_snapshot();
    s.set_authoritative(true, false);
    s.insert_namespace_labels("other", [("ai".to_string(), "free".to_string())].into());
    let d = decide_with(&bad(), &policies, &s);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
}

// ---------------------------------------------------------------- placement

fn good() -> Value {
    deployment(json!([{"name": "AZURE_OPENAI_ENDPOINT", "value": AZURE}]))
}

#[rstest]
#[case::azure(ClusterProvider::Azure, Verdict::Allow)]
#[case::aws(ClusterProvider::Aws, Verdict::Deny)]
#[case::gcp(ClusterProvider::Gcp, Verdict::Deny)]
#[case::other(ClusterProvider::Other, Verdict::Deny)]
#[case::unknown(ClusterProvider::Unknown, Verdict::Warn)]
#[case::mixed_controller(ClusterProvider::Mixed, Verdict::Allow)]
fn placement_follows_the_cluster_provider(
    #[case] provider: ClusterProvider,
    #[case] verdict: Verdict,
) {
    let d = decide_with(&good(), &PolicySet::builtin(), &Snapshot::offline(provider));
    assert_eq!(d.verdict, verdict, "{d:#?}");
    if verdict == Verdict::Deny {
        assert!(d.violations[0].message.contains(provider.as_str()));
        assert_eq!(d.violations[0].path, "spec.template.spec");
    }
}

#[test]
fn on_a_mixed_cluster_a_pod_must_be_pinned() {
    let mut pod = object(
        "Pod",
        pod_spec(json!([{"name": "AZURE_OPENAI_ENDPOINT", "value": AZURE}])),
    );
    let mixed = Snapshot::offline(ClusterProvider::Mixed);
    assert_eq!(
        decide_with(&pod, &PolicySet::builtin(), &mixed).verdict,
        Verdict::Deny
    );
    pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.azure.com/cluster", "operator": "Exists"}]}]}}});
    assert_eq!(
        decide_with(&pod, &PolicySet::builtin(), &mixed).verdict,
        Verdict::Allow
    );
}

// ---------------------------------------------------------------- mutation

fn apply(obj: &Value, d: &Decision) -> Value {
    let mut out = obj.clone();
    json_patch::patch(&mut out, &d.patch).expect("patch applies");
    out
}

fn governed_pod(spec_extra: Value) -> Value {
    let mut spec = pod_spec(json!([{"name": "AZURE_OPENAI_ENDPOINT", "value": AZURE}]));
    if let Value::Object(extra) = spec_extra {
        spec.as_object_mut().unwrap().extend(extra);
    }
    object("Pod", spec)
}

#[rstest]
#[case::no_affinity(json!({}))]
#[case::empty_affinity(json!({"affinity": {}}))]
#[case::pod_anti_affinity_only(json!({"affinity": {"podAntiAffinity": {}}}))]
#[case::one_existing_term(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}))]
#[case::two_terms_one_with_fields_only(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                          {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}))]
fn pods_are_pinned_idempotently(#[case] extra: Value) {
    let pod = governed_pod(extra);
    let d = decide(&pod);
    assert!(!d.patch.is_empty(), "expected a patch");
    let patched = apply(&pod, &d);
    let typed: Pod = serde_json::from_value(patched.clone()).expect("patched pod deserialises");
    let terms = typed
        .spec
        .unwrap()
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()
        .node_selector_terms;
    assert!(!terms.is_empty());
    for t in &terms {
        let exprs = t.match_expressions.clone().unwrap_or_default();
        assert!(
            exprs
                .iter()
                .any(|e| e.key == "kubernetes.azure.com/cluster" && e.operator == "Exists"),
            "{t:?}"
        );
    }
    assert_eq!(
        typed
            .metadata
            .annotations
            .unwrap()
            .get("hostguard.dev/policy")
            .map(String::as_str),
        Some("openai-stateless-on-azure")
    );
    // Reinvocation adds nothing.
    let again = decide(&patched);
    assert!(
        again.patch.is_empty(),
        "second pass patched: {:?}",
        again.patch
    );
}

#[test]
fn existing_terms_keep_their_own_requirements() {
    let pod = governed_pod(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}),
    );
    let patched = apply(&pod, &decide(&pod));
    let exprs = &patched["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"];
    assert_eq!(exprs.as_array().unwrap().len(), 2);
    assert_eq!(exprs[0]["key"], "zone");
}

#[test]
fn no_mutation_for_ungoverned_pods_controllers_audit_policies_or_updates() {
    let plain = object("Pod", pod_spec(json!([])));
    assert!(decide(&plain).patch.is_empty());
    assert!(
        decide(&good()).patch.is_empty(),
        "controllers are not mutated"
    );
    let audit = policy_with(|p| p.spec.action = Action::Audit);
    assert!(
        decide_with(&governed_pod(json!({})), &audit, &azure_snapshot())
            .patch
            .is_empty()
    );
    let pod = governed_pod(json!({}));
    assert!(review(Operation::Update, &pod, Some(&pod)).patch.is_empty());
}

#[test]
fn unknown_fields_survive_mutation() {
    let pod = governed_pod(json!({"futureField": {"x": 1}}));
    let patched = apply(&pod, &decide(&pod));
    assert_eq!(patched["spec"]["futureField"], json!({"x": 1}));
}

// ---------------------------------------------------------------- own resources

#[test]
fn a_policy_with_a_malformed_host_pattern_is_rejected() {
    let mut p = serde_json::to_value(default_policy()).unwrap();
    p["spec"]["endpoints"]["allowedHosts"] =
        json!(["*.openai.azure.com", "*.com", "https://x.example.com"]);
    let d = decide(&p);
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(
        paths(&d),
        vec![
            "spec.endpoints.allowedHosts[1]",
            "spec.endpoints.allowedHosts[2]"
        ]
    );
}

#[test]
fn the_default_policy_passes_its_own_validation() {
    let p = serde_json::to_value(default_policy()).unwrap();
    assert_eq!(decide(&p).verdict, Verdict::Allow);
}

#[test]
fn a_malformed_workload_is_denied_with_the_field_path() {
    let obj = deployment(json!([{"name": "X", "value": 5}]));
    let d = decide(&obj);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.violations[0]
            .message
            .contains("spec.template.spec.containers[0].env[0].value"),
        "{}",
        d.violations[0].message
    );
}
