//! The environment a container gets, as the kubelet builds it: each case names the rule of
//! `makeEnvironmentVariables` (pkg/kubelet/kubelet_pods.go), `getServiceEnvVarMap` /
//! `envvars.FromServices`, `podFieldSelectorRuntimeValue` / `fieldpath.ExtractFieldPathAsString`
//! or `expansion.Expand` (third_party/forked/golang/expansion) it follows. Expected values come
//! from that code, not from running hostguard.

use hostguard_engine::api::ClusterProvider;
use hostguard_engine::policy::{Decision, Operation, PolicySet, Request, Verdict, evaluate};
use hostguard_engine::snapshot::Snapshot;
use hostguard_engine::workload::env::{EnvValue, SERVICE_LINK_PORT, expand, service_link};
use k8s_openapi::api::core::v1::ConfigMap;
use rstest::rstest;
use serde_json::{Value, json};

const DIRECT: &str = "https://api.openai.com/v1";
const AZURE: &str = "https://contoso.openai.azure.com/openai/v1";

/// A snapshot that holds the ConfigMaps given and knows that no other exists (a synced cache).
fn cluster(maps: &[(&str, Value)]) -> Snapshot {
    let mut s = Snapshot::offline(ClusterProvider::Azure);
    s.set_authoritative(true, true);
    for (name, data) in maps {
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "team-a"}, "data": data
        }))
        .unwrap();
        s.insert_config_map(&cm, "team-a");
    }
    s
}

fn pod(container: Value, extra_spec: Value, meta: Value) -> Value {
    let mut spec = json!({"containers": [container]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    let mut metadata = json!({"name": "chat", "namespace": "team-a"});
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), meta.as_object()) {
        m.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

fn decide(obj: &Value, snapshot: &Snapshot) -> Decision {
    evaluate(
        &Request {
            operation: Operation::Create,
            object: Some(obj.into()),
            old_object: None,
            namespace: Some("team-a"),
        },
        &PolicySet::builtin(),
        snapshot,
    )
}

fn endpoints(d: &Decision) -> Vec<String> {
    d.findings.iter().map(|f| f.endpoint.clone()).collect()
}

fn key() -> Value {
    json!({"name": "OPENAI_API_KEY", "value": "sk-x"})
}

// ---------------------------------------------------------------- optional references

/// The case and its relatives: an optional `configMapKeyRef`/`secretKeyRef` whose
/// object or key is missing is skipped (`continue`), so the envFrom value of the same name is
/// what the container gets.
#[rstest]
#[case::optional_key_missing(
    json!({"configMapKeyRef": {"name": "ai", "key": "nope", "optional": true}}), Verdict::Deny, &[DIRECT])]
#[case::optional_config_map_missing(
    json!({"configMapKeyRef": {"name": "absent", "key": "URL", "optional": true}}), Verdict::Deny, &[DIRECT])]
#[case::optional_key_present(
    json!({"configMapKeyRef": {"name": "ai", "key": "AZURE_URL", "optional": true}}), Verdict::Allow, &[AZURE])]
#[case::required_key_missing_cannot_start_and_is_unresolved(
    json!({"configMapKeyRef": {"name": "ai", "key": "nope"}}), Verdict::Deny, &["(unresolved"])]
#[case::optional_secret_may_be_skipped_so_both_count(
    json!({"secretKeyRef": {"name": "s", "key": "url", "optional": true}}), Verdict::Deny, &["(unresolved", DIRECT])]
#[case::required_secret_hides_env_from(
    json!({"secretKeyRef": {"name": "s", "key": "url"}}), Verdict::Deny, &["(unresolved"])]
fn an_optional_reference_that_misses_is_skipped_and_env_from_survives(
    #[case] value_from: Value,
    #[case] verdict: Verdict,
    #[case] expected: &[&str],
) {
    let snapshot = cluster(&[
        ("bases", json!({"OPENAI_BASE_URL": DIRECT})),
        ("ai", json!({"AZURE_URL": AZURE})),
    ]);
    let container = json!({"name": "app", "envFrom": [{"configMapRef": {"name": "bases"}}],
        "env": [key(), {"name": "OPENAI_BASE_URL", "valueFrom": value_from}]});
    let d = decide(&pod(container, json!({}), json!({})), &snapshot);
    assert_eq!(d.verdict, verdict, "{d:#?}");
    let found = endpoints(&d);
    assert_eq!(found.len(), expected.len(), "{found:?}");
    for (got, want) in found.iter().zip(expected) {
        assert!(got.starts_with(want), "{got} does not start with {want}");
    }
}

#[test]
fn an_entry_with_neither_value_nor_value_from_sets_the_empty_string() {
    // `tmpEnv[envVar.Name] = runtimeVal` with runtimeVal "": it hides envFrom, and an empty
    // base URL is unset to the SDK, which then calls its default.
    let snapshot = cluster(&[("bases", json!({"OPENAI_BASE_URL": AZURE}))]);
    let container = json!({"name": "app", "envFrom": [{"configMapRef": {"name": "bases"}}],
        "env": [key(), {"name": "OPENAI_BASE_URL"}]});
    let d = decide(&pod(container, json!({}), json!({})), &snapshot);
    assert_eq!(endpoints(&d), vec![DIRECT.to_string()], "{d:#?}");
}

// ---------------------------------------------------------------- Downward API

/// `podFieldSelectorRuntimeValue`: `metadata.namespace` for any object; the Pod's name and a
/// label or annotation by key for a Pod; a missing key gives "".
#[rstest]
#[case::namespace(
    "metadata.namespace",
    "https://team-a.openai.azure.com/",
    Verdict::Allow
)]
#[case::name("metadata.name", "https://chat.openai.azure.com/", Verdict::Allow)]
#[case::label(
    "metadata.labels['resource']",
    "https://contoso.openai.azure.com/",
    Verdict::Allow
)]
#[case::annotation(
    "metadata.annotations['ai/resource']",
    "https://fabrikam.openai.azure.com/",
    Verdict::Allow
)]
#[case::missing_label_is_empty(
    "metadata.labels['nope']",
    "https://.openai.azure.com/",
    Verdict::Deny
)]
fn downward_api_fields_known_at_admission_are_resolved_for_pods(
    #[case] field: &str,
    #[case] url: &str,
    #[case] verdict: Verdict,
) {
    let container = json!({"name": "app", "env": [key(),
        {"name": "RESOURCE", "valueFrom": {"fieldRef": {"fieldPath": field}}},
        {"name": "OPENAI_BASE_URL", "value": "https://$(RESOURCE).openai.azure.com/"}]});
    let meta =
        json!({"labels": {"resource": "contoso"}, "annotations": {"ai/resource": "fabrikam"}});
    let d = decide(&pod(container, json!({}), meta), &cluster(&[]));
    assert_eq!(endpoints(&d), vec![url.to_string()], "{d:#?}");
    assert_eq!(d.verdict, verdict, "{d:#?}");
}

#[rstest]
#[case::node("spec.nodeName")]
#[case::pod_ip("status.podIP")]
#[case::service_account("spec.serviceAccountName")]
#[case::whole_label_map("metadata.labels")]
fn other_downward_api_fields_stay_unresolved(#[case] field: &str) {
    let container = json!({"name": "app", "env": [key(),
        {"name": "OPENAI_BASE_URL", "valueFrom": {"fieldRef": {"fieldPath": field}}}]});
    let d = decide(&pod(container, json!({}), json!({})), &cluster(&[]));
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(endpoints(&d)[0].starts_with("(unresolved"), "{d:#?}");
}

#[test]
fn a_controller_template_knows_its_namespace_but_not_its_pods_names_or_labels() {
    let dep = |field: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": "team-a"},
            "spec": {"template": {"metadata": {"labels": {"resource": "contoso"}},
                "spec": {"containers": [{"name": "app", "env": [key(),
                    {"name": "R", "valueFrom": {"fieldRef": {"fieldPath": field}}},
                    {"name": "OPENAI_BASE_URL", "value": "https://$(R).openai.azure.com/"}]}]}}}})
    };
    let ns = decide(&dep("metadata.namespace"), &cluster(&[]));
    assert_eq!(ns.verdict, Verdict::Allow, "{ns:#?}");
    for field in ["metadata.name", "metadata.labels['resource']"] {
        let d = decide(&dep(field), &cluster(&[]));
        assert_eq!(d.verdict, Verdict::Deny, "{field}: {d:#?}");
        assert!(endpoints(&d)[0].starts_with("(unresolved"), "{d:#?}");
    }
}

#[test]
fn a_generated_pod_name_is_not_known_at_admission() {
    let container = json!({"name": "app", "env": [key(),
        {"name": "OPENAI_BASE_URL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]});
    let mut obj = pod(container, json!({}), json!({}));
    obj["metadata"] = json!({"generateName": "chat-", "namespace": "team-a"});
    let d = decide(&obj, &cluster(&[]));
    assert!(endpoints(&d)[0].starts_with("(unresolved"), "{d:#?}");
}

// ---------------------------------------------------------------- service links

/// `envvars.FromServices`: `<SVC>_SERVICE_HOST` is the ClusterIP of Service `svc` in the Pod's
/// namespace, with `enableServiceLinks` (default true); `kubernetes` in `default` always.
#[rstest]
#[case::host("CHAT_GW_SERVICE_HOST", true, Some("chat-gw.team-a.svc"))]
#[case::port("CHAT_GW_SERVICE_PORT", true, Some(SERVICE_LINK_PORT))]
#[case::named_port("CHAT_GW_SERVICE_PORT_HTTPS", true, Some(SERVICE_LINK_PORT))]
#[case::docker_port("CHAT_GW_PORT", true, Some("tcp://chat-gw.team-a.svc:65535"))]
#[case::docker_port_n("CHAT_GW_PORT_8080_TCP", true, Some("tcp://chat-gw.team-a.svc:8080"))]
#[case::docker_addr("CHAT_GW_PORT_8080_TCP_ADDR", true, Some("chat-gw.team-a.svc"))]
#[case::docker_port_port("CHAT_GW_PORT_8080_TCP_PORT", true, Some("8080"))]
#[case::docker_proto("CHAT_GW_PORT_53_UDP_PROTO", true, Some("udp"))]
#[case::leading_digit("_3SCALE_SERVICE_HOST", true, Some("3scale.team-a.svc"))]
#[case::disabled("CHAT_GW_SERVICE_HOST", false, None)]
#[case::master_always("KUBERNETES_SERVICE_HOST", false, Some("kubernetes.default.svc"))]
#[case::not_a_link("OPENAI_BASE_URL", true, None)]
fn service_link_variables_name_in_cluster_services(
    #[case] name: &str,
    #[case] enabled: bool,
    #[case] value: Option<&str>,
) {
    assert_eq!(
        service_link(name, "team-a", enabled),
        value.map(|v| EnvValue::Literal(v.to_string()))
    );
}

#[rstest]
#[case::links_on(json!({}), Verdict::Warn)]
#[case::links_off(json!({"enableServiceLinks": false}), Verdict::Deny)]
fn a_base_url_built_from_service_links_is_in_cluster(
    #[case] spec: Value,
    #[case] verdict: Verdict,
) {
    let container = json!({"name": "app", "env": [key(), {"name": "OPENAI_BASE_URL",
        "value": "http://$(CHAT_GW_SERVICE_HOST):$(CHAT_GW_SERVICE_PORT)/v1"}]});
    let d = decide(&pod(container, spec, json!({})), &cluster(&[]));
    assert_eq!(d.verdict, verdict, "{d:#?}");
    if verdict == Verdict::Warn {
        assert_eq!(
            d.findings[0].hosting,
            hostguard_engine::endpoint::Hosting::InCluster
        );
    }
}

#[test]
fn env_and_env_from_win_over_service_links() {
    // `MappingFuncFor(tmpEnv, serviceEnv)`: the container's own variables are looked up first.
    let container = json!({"name": "app", "env": [key(),
        {"name": "CHAT_GW_SERVICE_HOST", "value": "api.openai.com"},
        {"name": "OPENAI_BASE_URL", "value": "https://$(CHAT_GW_SERVICE_HOST)/v1"}]});
    let d = decide(&pod(container, json!({}), json!({})), &cluster(&[]));
    // OPENAI_BASE_URL expands with the container's own value, not the service link's; the
    // variable holding a model host is itself reported too (issue 9: any variable's value).
    let found = endpoints(&d);
    assert!(found.contains(&DIRECT.to_string()), "{found:?}");
    assert!(
        d.findings
            .iter()
            .all(|f| f.hosting != hostguard_engine::endpoint::Hosting::InCluster),
        "{found:?}"
    );
}

#[test]
fn command_and_args_see_service_links_too() {
    let container = json!({"name": "app", "env": [key()],
        "args": ["--base-url=http://$(CHAT_GW_SERVICE_HOST):8080/v1"]});
    let d = decide(&pod(container, json!({}), json!({})), &cluster(&[]));
    // A service-link host is not a model host by itself: the key's SDK default remains.
    assert!(endpoints(&d).contains(&DIRECT.to_string()), "{d:#?}");
}

// ---------------------------------------------------------------- `$` and non-ASCII

/// `tryReadVariableName` decodes the rune after `$` (`utf8.DecodeRuneInString`) and copies the
/// operator and that rune whole (kubernetes/kubernetes#136325, which fixed the byte-wise read
/// that split multi-byte characters). So `$` before a multi-byte character leaves the input byte
/// for byte as it was, and what follows is expanded as usual.
#[rstest]
#[case::two_bytes("$é", "$é")]
#[case::three_bytes("a$€b", "a$€b")]
#[case::four_bytes("$😀$(HOST)", "$😀x.openai.azure.com")]
#[case::before_reference("$ü$(HOST)/v1", "$üx.openai.azure.com/v1")]
#[case::escaped_then_non_ascii("$$é", "$é")]
#[case::inside_a_name_is_no_reference("$(HÖST)", "$(HÖST)")]
fn a_dollar_before_a_non_ascii_character_is_copied_byte_for_byte(
    #[case] input: &str,
    #[case] expected: &str,
) {
    let lookup =
        |name: &str| (name == "HOST").then(|| EnvValue::Literal("x.openai.azure.com".into()));
    assert_eq!(expand(input, lookup), EnvValue::Literal(expected.into()));
}

/// The cases of `expand_test.go`'s `doExpansionTest`, with its context.
#[rstest]
#[case("$(VAR_A)", "A")]
#[case("$(VAR_A)-$(VAR_A)", "A-A")]
#[case("___$(VAR_B)___", "___B___")]
#[case("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A")]
#[case("f000-$$VAR_A", "f000-$VAR_A")]
#[case("foo\\$(VAR_C)bar", "foo\\Cbar")]
#[case("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))")]
#[case("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)")]
#[case("$(VAR_REF)", "$(VAR_A)")]
#[case("foo$(VAR_EMPTY)bar", "foobar")]
#[case("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!")]
#[case("$?_boo_$!", "$?_boo_$!")]
#[case("$VAR_A", "$VAR_A")]
#[case("$(VAR_DNE)", "$(VAR_DNE)")]
#[case("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)")]
#[case("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)")]
#[case("$$$$$$$(VAR_A)", "$$$A")]
#[case("${VAR_A}", "${VAR_A}")]
#[case("$(VAR_B)_______$(A", "B_______$(A")]
#[case("$(VAR_C)_______$(", "C_______$(")]
#[case("$(VAR_A)foobarzab$", "Afoobarzab$")]
#[case("--$($($($($--", "--$($($($($--")]
#[case("$(foo$$var)", "$(foo$$var)")]
fn expansion_matches_the_go_test_table(#[case] input: &str, #[case] expected: &str) {
    let lookup = |name: &str| {
        let v = match name {
            "VAR_A" => "A",
            "VAR_B" => "B",
            "VAR_C" => "C",
            "VAR_REF" => "$(VAR_A)",
            "VAR_EMPTY" => "",
            _ => return None,
        };
        Some(EnvValue::Literal(v.into()))
    };
    assert_eq!(expand(input, lookup), EnvValue::Literal(expected.into()));
}
