//! A ConfigMap that holds an AI application's config file, judged when it is created or changed
//! (issue 10, "Enforced where the tools are"): a container that restarts reads the new file
//! without any Pod being admitted again, so the change itself is where a new endpoint is caught.
//!
//! Expected values come from the applications' documented behaviour (shared/reference/FACTS.md):
//! LiteLLM sends a model to its `litellm_params.api_base`, `os.environ/VAR` is read from the
//! proxy's env when the config loads, and a model with no `api_base` falls back to the env
//! (`OPENAI_BASE_URL`/`OPENAI_API_BASE`, else `https://api.openai.com/v1`).

use hostguard_engine::api::{AIWorkload, Action, ClusterProvider};
use hostguard_engine::policy::{
    ConfigMapReaders, Decision, Operation, PolicySet, Request, Verdict, default_policy,
    evaluate_with_readers,
};
use hostguard_engine::snapshot::{DeclaredWorkload, Snapshot};
use serde_json::{Value, json};

const NS: &str = "llm";
const DIRECT: &str = "https://api.openai.com/v1";
const AZURE: &str = "https://contoso.openai.azure.com/";

fn litellm_config(models: &[(&str, Option<&str>)]) -> String {
    let mut text = String::from("model_list:\n");
    for (model, api_base) in models {
        text.push_str(&format!(
            "  - model_name: m\n    litellm_params:\n      model: {model}\n"
        ));
        if let Some(base) = api_base {
            text.push_str(&format!("      api_base: {base}\n"));
        }
    }
    text
}

fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS}, "data": data})
}

/// A LiteLLM proxy Pod that reads `config.yaml` of ConfigMap `litellm-config` (`--config` and a
/// `subPath` mount, as the LiteLLM chart does), with `env`.
fn litellm_pod(name: &str, env: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "litellm"}},
        "spec": {"containers": [{"name": "litellm",
            "image": "ghcr.io/berriai/litellm:main-v1.55.0",
            "args": ["--config", "/etc/litellm/config.yaml"],
            "env": env,
            "volumeMounts": [{"name": "config", "mountPath": "/etc/litellm/config.yaml",
                "subPath": "config.yaml"}]}],
            "volumes": [{"name": "config", "configMap": {"name": "litellm-config"}}]}})
}

fn policies() -> PolicySet {
    PolicySet::compile([&default_policy()]).expect("the default policy compiles")
}

fn decide(
    operation: Operation,
    object: &Value,
    old: Option<&Value>,
    readers: ConfigMapReaders<'_>,
    snapshot: &Snapshot,
) -> Decision {
    evaluate_with_readers(
        &Request {
            operation,
            object: Some(object.into()),
            old_object: old.map(Into::into),
            namespace: Some(NS),
        },
        readers,
        &policies(),
        snapshot,
    )
}

fn azure() -> Snapshot {
    Snapshot::offline(ClusterProvider::Azure)
}

fn messages(d: &Decision) -> Vec<&str> {
    d.violations.iter().map(|v| v.message.as_str()).collect()
}

#[test]
fn a_literal_openai_api_base_is_denied_on_its_own_naming_the_key_and_field() {
    let cm = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", Some(DIRECT)), ("azure/gpt-4o", Some(AZURE))])}),
    );
    let d = decide(
        Operation::Create,
        &cm,
        None,
        ConfigMapReaders::NotLooked,
        &azure(),
    );
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", messages(&d));
    assert_eq!(
        d.violations.len(),
        1,
        "only the OpenAI model: {:?}",
        messages(&d)
    );
    assert!(
        d.violations[0].path.contains(
            "ConfigMap/litellm-config key config.yaml model_list[0].litellm_params.api_base"
        ),
        "{}",
        d.violations[0].path
    );
    assert!(
        d.governed_by
            .iter()
            .any(|p| p == "openai-stateless-on-azure")
    );
}

#[test]
fn an_azure_api_base_is_allowed() {
    let cm = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("azure/gpt-4o", Some(AZURE))])}),
    );
    let d = decide(
        Operation::Create,
        &cm,
        None,
        ConfigMapReaders::NotLooked,
        &azure(),
    );
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", messages(&d));
}

#[test]
fn what_the_file_takes_from_its_readers_env_is_left_to_them_when_no_reader_is_listed() {
    for models in [
        vec![("openai/gpt-4o", Some("os.environ/MY_BASE"))],
        vec![("openai/gpt-4o", None)],
        vec![("gpt-4o-mini", None)],
    ] {
        let cm = config_map(
            "litellm-config",
            json!({"config.yaml": litellm_config(&models)}),
        );
        let d = decide(
            Operation::Create,
            &cm,
            None,
            ConfigMapReaders::NotLooked,
            &azure(),
        );
        assert_eq!(d.verdict, Verdict::Allow, "{models:?}: {:?}", messages(&d));
    }
}

#[test]
fn a_change_that_sends_a_running_readers_traffic_to_openai_is_denied_naming_the_pod() {
    let old = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", Some(AZURE))])}),
    );
    // The new file takes the endpoint from MY_BASE, which the running Pod sets to OpenAI.
    let new = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", Some("os.environ/MY_BASE"))])}),
    );
    let pods = [litellm_pod(
        "litellm-0",
        json!([{"name": "MY_BASE", "value": DIRECT}, {"name": "OPENAI_API_KEY", "value": "sk-x"}]),
    )];
    let alone = decide(
        Operation::Update,
        &new,
        Some(&old),
        ConfigMapReaders::NotLooked,
        &azure(),
    );
    assert_eq!(alone.verdict, Verdict::Allow, "{:?}", messages(&alone));

    let d = decide(
        Operation::Update,
        &new,
        Some(&old),
        ConfigMapReaders::Listed(&pods),
        &azure(),
    );
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", messages(&d));
    let v = d
        .violations
        .iter()
        .find(|v| v.action == Action::Deny)
        .expect("a denying violation");
    assert!(v.path.starts_with("Pod litellm-0: "), "{}", v.path);
    assert!(v.message.contains(DIRECT), "{}", v.message);
}

#[test]
fn a_change_is_allowed_when_every_reader_resolves_it_to_azure() {
    let old = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("azure/gpt-4o", Some(AZURE))])}),
    );
    let new = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("azure/gpt-4o", Some("os.environ/MY_BASE"))])}),
    );
    let pods = [
        litellm_pod("a", json!([{"name": "MY_BASE", "value": AZURE}])),
        litellm_pod("b", json!([{"name": "MY_BASE", "value": AZURE}])),
    ];
    let d = decide(
        Operation::Update,
        &new,
        Some(&old),
        ConfigMapReaders::Listed(&pods),
        &azure(),
    );
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", messages(&d));
}

#[test]
fn a_readers_violation_that_the_change_does_not_bring_in_is_not_the_config_maps() {
    // The Pod already calls OpenAI (its file falls back to OPENAI_BASE_URL, set to OpenAI): the
    // change adds an Azure model, which makes nothing worse.
    let old = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", None)])}),
    );
    let new = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", None), ("azure/gpt-4o", Some(AZURE))])}),
    );
    let pods = [litellm_pod(
        "legacy",
        json!([{"name": "OPENAI_BASE_URL", "value": DIRECT}]),
    )];
    let d = decide(
        Operation::Update,
        &new,
        Some(&old),
        ConfigMapReaders::Listed(&pods),
        &azure(),
    );
    assert_ne!(d.verdict, Verdict::Deny, "{:?}", messages(&d));
}

#[test]
fn many_readers_with_one_finding_are_one_violation_naming_a_few() {
    let new = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", Some("os.environ/MY_BASE"))])}),
    );
    let pods: Vec<Value> = (0..5)
        .map(|i| {
            litellm_pod(
                &format!("p{i}"),
                json!([{"name": "MY_BASE", "value": DIRECT}]),
            )
        })
        .collect();
    let d = decide(
        Operation::Create,
        &new,
        None,
        ConfigMapReaders::Listed(&pods),
        &azure(),
    );
    assert_eq!(d.verdict, Verdict::Deny);
    let about_pods: Vec<_> = d
        .violations
        .iter()
        .filter(|v| v.path.starts_with("Pods "))
        .collect();
    assert_eq!(about_pods.len(), 1, "{:?}", messages(&d));
    assert!(
        about_pods[0]
            .path
            .starts_with("Pods p0, p1, p2 and 2 more: "),
        "{}",
        about_pods[0].path
    );
}

#[test]
fn readers_that_could_not_be_listed_leave_the_change_unresolved_and_denied() {
    let cm = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("azure/gpt-4o", Some(AZURE))])}),
    );
    let d = decide(
        Operation::Create,
        &cm,
        None,
        ConfigMapReaders::Failed("connection refused"),
        &azure(),
    );
    // The default policy's `unresolved` is Deny.
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", messages(&d));
    assert!(
        messages(&d)
            .iter()
            .any(|m| m.contains("could not be listed (connection refused)")),
        "{:?}",
        messages(&d)
    );
}

#[test]
fn an_update_that_keeps_a_pre_existing_violation_is_a_warning() {
    let text = litellm_config(&[("openai/gpt-4o", Some(DIRECT))]);
    let old = config_map("litellm-config", json!({"config.yaml": text}));
    let new = config_map(
        "litellm-config",
        json!({"config.yaml": text, "note": "unrelated"}),
    );
    let d = decide(
        Operation::Update,
        &new,
        Some(&old),
        ConfigMapReaders::NotLooked,
        &azure(),
    );
    assert_eq!(d.verdict, Verdict::Warn, "{:?}", messages(&d));
    // ... and one that changes the endpoint to another non-Azure host is denied.
    let worse = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", Some("https://eu.api.openai.com/v1"))])}),
    );
    let d = decide(
        Operation::Update,
        &worse,
        Some(&old),
        ConfigMapReaders::NotLooked,
        &azure(),
    );
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", messages(&d));
}

#[test]
fn a_trusted_aiworkload_that_could_exempt_the_reader_makes_the_files_own_finding_a_warning() {
    let aiw: AIWorkload = serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": "assistants", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "litellm"}}, "provider": "openai",
            "apiClass": "stateful"}
    }))
    .expect("AIWorkload fixture");
    let mut snapshot = azure();
    snapshot.insert_declared(DeclaredWorkload::from_resource(&aiw).expect("compiles"));
    let cm = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", Some(DIRECT))])}),
    );
    let d = decide(
        Operation::Create,
        &cm,
        None,
        ConfigMapReaders::NotLooked,
        &snapshot,
    );
    assert_eq!(d.verdict, Verdict::Warn, "{:?}", messages(&d));
    assert!(
        messages(&d)
            .iter()
            .any(|m| m.contains("AIWorkload assistants"))
    );
}

#[test]
fn a_config_file_that_does_not_parse_is_denied_naming_the_key() {
    for (key, text) in [
        ("model_list.yaml", "a: [b\n"),
        ("config.yaml", "model_list: [\n  {model_name: x\n"),
        ("config.yaml", "model_list: not-a-list\n"),
        ("service_conf.yaml", "user_default_llm: [\n"),
    ] {
        let cm = config_map("files", json!({key: text}));
        let d = decide(
            Operation::Create,
            &cm,
            None,
            ConfigMapReaders::NotLooked,
            &azure(),
        );
        assert_eq!(d.verdict, Verdict::Deny, "{key}: {:?}", messages(&d));
        assert!(
            d.violations
                .iter()
                .any(|v| v.policy == "hostguard" && v.path == format!("data[{key}]")),
            "{key}: {:?}",
            d.violations.iter().map(|v| &v.path).collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_config_map_with_no_known_config_file_is_not_judged() {
    for data in [
        json!({"OPENAI_BASE_URL": DIRECT}),
        json!({"config.yaml": "server:\n  port: 8080\n"}),
        json!({"endpoints": "a,b"}),
    ] {
        let cm = config_map("plain", data.clone());
        let d = decide(
            Operation::Create,
            &cm,
            None,
            ConfigMapReaders::NotLooked,
            &azure(),
        );
        assert_eq!(d.verdict, Verdict::Skipped, "{data}: {:?}", messages(&d));
    }
}

#[test]
fn ragflows_factory_default_is_the_files_own_endpoint() {
    // RAGFlow's OpenAI factory with no base_url uses the OpenAI client's default host.
    let cm = config_map(
        "ragflow",
        json!({"service_conf.yaml": "user_default_llm:\n  factory: OpenAI\n  api_key: x\n"}),
    );
    let d = decide(
        Operation::Create,
        &cm,
        None,
        ConfigMapReaders::NotLooked,
        &azure(),
    );
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", messages(&d));
}

#[test]
fn the_config_maps_a_pod_mounts_are_among_those_fetched_before_a_decision() {
    // A volume's ConfigMap and a projected volume's ConfigMap source are where config files come
    // from (Kubernetes' VolumeSource.configMap and VolumeProjection.configMap), besides env refs.
    let mut pod = litellm_pod(
        "p",
        json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "x"}}}]),
    );
    pod["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "proj", "projected": {"sources": [{"configMap": {"name": "projected-cm"}}]}}));
    let mut refs = std::collections::BTreeSet::new();
    hostguard_engine::workload::config_map_refs(&pod, &mut refs);
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    assert_eq!(refs, ["env-cm", "litellm-config", "projected-cm"]);
}

fn stateful_aiw(name: &str, selector: Value) -> DeclaredWorkload {
    let aiw: AIWorkload = serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"matchLabels": selector}, "provider": "openai", "apiClass": "stateful"}
    }))
    .expect("AIWorkload fixture");
    DeclaredWorkload::from_resource(&aiw).expect("compiles")
}

#[test]
fn readers_not_listed_stay_denied_whatever_aiworkload_exists() {
    let mut snapshot = azure();
    snapshot.insert_declared(stateful_aiw(
        "unrelated-batch",
        json!({"app": "some-other-thing"}),
    ));
    snapshot.insert_declared(stateful_aiw("litellm", json!({"app": "litellm"})));
    let cm = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", Some(DIRECT))])}),
    );
    let d = decide(
        Operation::Create,
        &cm,
        None,
        ConfigMapReaders::Failed("no answer in time"),
        &snapshot,
    );
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", messages(&d));
    assert!(
        d.violations
            .iter()
            .any(|v| v.action == Action::Deny && v.message.contains("could not be listed")),
        "{:?}",
        messages(&d)
    );
}

#[test]
fn with_readers_listed_only_an_aiworkload_that_selects_one_makes_the_files_finding_a_warning() {
    let cm = config_map(
        "litellm-config",
        json!({"config.yaml": litellm_config(&[("openai/gpt-4o", Some(DIRECT))])}),
    );
    let pods = [litellm_pod("litellm-0", json!([]))];
    let mut unrelated = azure();
    unrelated.insert_declared(stateful_aiw(
        "unrelated-batch",
        json!({"app": "some-other-thing"}),
    ));
    let d = decide(
        Operation::Create,
        &cm,
        None,
        ConfigMapReaders::Listed(&pods),
        &unrelated,
    );
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", messages(&d));

    let mut selecting = azure();
    selecting.insert_declared(stateful_aiw("assistants", json!({"app": "litellm"})));
    let d = decide(
        Operation::Create,
        &cm,
        None,
        ConfigMapReaders::Listed(&pods),
        &selecting,
    );
    assert_eq!(d.verdict, Verdict::Warn, "{:?}", messages(&d));
}
