//! Who may lift a policy (issue 8, "Trust"): annotations only add governance, AIWorkloads are the
//! one way to narrow it and only those a policy trusts count, every exemption in force is
//! reported, and a provider hostguard does not know is refused.

use hostguard_engine::admission::{self, Webhook};
use hostguard_engine::api::{
    AIWorkload, AIWorkloadTrustSpec, Action, ClusterProvider, HostingPolicy, TrustSpec,
};
use hostguard_engine::policy::{
    Decision, Operation, PolicySet, Request, Verdict, default_policy, evaluate,
};
use hostguard_engine::snapshot::{DeclaredWorkload, Snapshot};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rstest::rstest;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const DIRECT: &str = "https://api.openai.com/v1";

/// The Deployment: an OpenAI key and the public OpenAI endpoint, pods labelled `app: chat`.
fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {"selector": {"matchLabels": {"app": "chat"}},
            "template": {"metadata": {"labels": {"app": "chat"}},
                "spec": {"containers": [{"name": "app", "image": "app:1", "env": [
                    {"name": "OPENAI_API_KEY", "value": "sk-x"},
                    {"name": "OPENAI_BASE_URL", "value": DIRECT}]}]}}}})
}

fn aiw(name: &str, class: &str, labels: Value) -> AIWorkload {
    serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": name, "namespace": "team-a", "labels": labels},
        "spec": {"selector": {"matchLabels": {"app": "chat"}}, "provider": "openai", "apiClass": class}
    }))
    .expect("AIWorkload fixture")
}

fn snapshot(cluster: ClusterProvider, declared: &[AIWorkload]) -> Snapshot {
    let mut s = Snapshot::offline(cluster);
    for a in declared {
        s.insert_declared(DeclaredWorkload::from_resource(a).expect("declaration compiles"));
    }
    s
}

fn decide(obj: &Value, policies: &PolicySet, snapshot: &Snapshot) -> Decision {
    evaluate(
        &Request {
            operation: Operation::Create,
            object: Some(obj.into()),
            old_object: None,
            namespace: Some("team-a"),
        },
        policies,
        snapshot,
    )
}

fn policy_with(edit: impl FnOnce(&mut HostingPolicy)) -> PolicySet {
    let mut p = default_policy();
    edit(&mut p);
    PolicySet::compile([&p]).expect("test policy compiles")
}

fn trusting(trust: AIWorkloadTrustSpec) -> PolicySet {
    policy_with(|p| {
        p.spec.trust = Some(TrustSpec {
            ai_workloads: Some(trust),
        })
    })
}

fn selector(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        match_expressions: None,
    }
}

// ---------------------------------------------------------------- annotations only add

#[rstest]
#[case::stateful_on_template("template", "stateful")]
#[case::stateful_on_workload("workload", "stateful")]
#[case::stateful_apis_on_template("template", "assistants,batches")]
#[case::stateful_apis_on_workload("workload", "assistants, batches")]
fn an_exempting_annotation_is_ignored_and_reported(#[case] on: &str, #[case] class: &str) {
    let mut obj = deployment();
    let ann = json!({"hostguard.dev/api-class": class});
    let path = if on == "template" {
        obj["spec"]["template"]["metadata"]["annotations"] = ann;
        "spec.template.metadata.annotations[hostguard.dev/api-class]"
    } else {
        obj["metadata"]["annotations"] = ann;
        "metadata.annotations[hostguard.dev/api-class]"
    };
    // The report: allowed even on a GCP cluster. Now: denied, endpoint and placement.
    let d = decide(
        &obj,
        &PolicySet::builtin(),
        &snapshot(ClusterProvider::Gcp, &[]),
    );
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    assert!(d.violations.iter().any(|v| v.message.contains(DIRECT)));
    assert!(
        d.violations
            .iter()
            .any(|v| v.message.contains("only on azure clusters")),
        "{:#?}",
        d.violations
    );
    let warning = d
        .warnings
        .iter()
        .map(|w| &w.message)
        .find(|w| w.starts_with(path))
        .unwrap_or_else(|| panic!("no warning at {path}: {:?}", d.warnings));
    assert!(warning.contains("ignored as an exemption"), "{warning}");
    assert!(warning.contains("AIWorkload"), "{warning}");
    assert!(d.exemptions.is_empty());
}

#[rstest]
#[case::stateless("stateless", &["stateless"])]
#[case::mixed("mixed", &["stateful", "stateless"])]
fn an_annotation_that_adds_governance_is_believed(#[case] class: &str, #[case] governed: &[&str]) {
    let mut obj = deployment();
    obj["spec"]["template"]["metadata"]["annotations"] = json!({"hostguard.dev/api-class": class});
    // A stateful policy besides the default: `mixed` brings the workload under it too.
    let mut stateful = default_policy();
    stateful.metadata.name = Some("openai-stateful".into());
    stateful.spec.api_classes = vec![hostguard_engine::api::ApiClass::Stateful];
    let policies = PolicySet::compile([&default_policy(), &stateful]).unwrap();
    let d = decide(&obj, &policies, &snapshot(ClusterProvider::Azure, &[]));
    assert_eq!(d.verdict, Verdict::Deny);
    let expected: Vec<String> = governed
        .iter()
        .map(|c| match *c {
            "stateful" => "openai-stateful".to_string(),
            _ => "openai-stateless-on-azure".to_string(),
        })
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(d.governed_by, expected);
    assert!(
        d.warnings
            .iter()
            .map(|w| &w.message)
            .all(|w| !w.contains("ignored")),
        "{:?}",
        d.warnings
    );
}

// ---------------------------------------------------------------- AIWorkloads narrow, visibly

#[test]
fn a_trusted_aiworkload_exempts_and_the_exemption_is_reported() {
    let s = snapshot(
        ClusterProvider::Azure,
        &[aiw("assistants", "stateful", json!({}))],
    );
    let d = decide(&deployment(), &PolicySet::builtin(), &s);
    assert_eq!(d.verdict, Verdict::Allow, "{d:#?}");
    assert!(d.governed_by.is_empty());
    assert_eq!(d.exemptions.len(), 1, "{:#?}", d.exemptions);
    let e = &d.exemptions[0];
    assert_eq!(e.policy, "openai-stateless-on-azure");
    assert_eq!(e.exempted_by, vec!["team-a/assistants".to_string()]);
    assert_eq!(e.path, "spec.template");
    assert!(
        e.message
            .starts_with("spec.template: exempted from policy openai-stateless-on-azure"),
        "{}",
        e.message
    );
    assert!(e.message.contains("AIWorkload team-a/assistants"));
    assert_eq!(
        d.exempted_by().as_deref(),
        Some("openai-stateless-on-azure:team-a/assistants")
    );
}

#[test]
fn the_admission_response_carries_the_exemption_as_an_audit_annotation() {
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": "team-a", "operation": "CREATE", "object": deployment()}});
    let s = snapshot(
        ClusterProvider::Azure,
        &[aiw("assistants", "stateful", json!({}))],
    );
    let body = serde_json::to_vec(&review).unwrap();
    let answer = admission::answer(&body, Webhook::Validate, &PolicySet::builtin(), &s).unwrap();
    let response = serde_json::to_value(&answer.review.response).unwrap();
    assert_eq!(response["allowed"], json!(true));
    assert_eq!(
        response["auditAnnotations"]["exempted-by"],
        json!("openai-stateless-on-azure:team-a/assistants")
    );
}

#[test]
fn an_exemption_from_a_warn_policy_is_a_warning() {
    let policies = policy_with(|p| p.spec.action = Action::Warn);
    let s = snapshot(
        ClusterProvider::Azure,
        &[aiw("assistants", "stateful", json!({}))],
    );
    let d = decide(&deployment(), &policies, &s);
    assert_eq!(d.verdict, Verdict::Warn, "{d:#?}");
    assert!(
        d.warnings
            .iter()
            .map(|w| &w.message)
            .any(|w| w.contains("exempted from policy") && w.contains("team-a/assistants")),
        "{:?}",
        d.warnings
    );
}

/// (trust, namespace labels known to the snapshot, AIWorkload labels) → exempt?
#[rstest]
#[case::no_trust_field_trusts_all(None, None, json!({}), true)]
#[case::exemptions_refused(
    Some(AIWorkloadTrustSpec { allow_exemptions: false, ..Default::default() }),
    None, json!({}), false)]
#[case::namespace_selector_matches(
    Some(AIWorkloadTrustSpec { namespace_selector: Some(selector(&[("exemptions", "allowed")])), ..Default::default() }),
    Some(&[("exemptions", "allowed")][..]), json!({}), true)]
#[case::namespace_selector_does_not_match(
    Some(AIWorkloadTrustSpec { namespace_selector: Some(selector(&[("exemptions", "allowed")])), ..Default::default() }),
    Some(&[("team", "a")][..]), json!({}), false)]
#[case::namespace_labels_unknown_is_not_trusted(
    Some(AIWorkloadTrustSpec { namespace_selector: Some(selector(&[("exemptions", "allowed")])), ..Default::default() }),
    None, json!({}), false)]
#[case::aiworkload_selector_matches(
    Some(AIWorkloadTrustSpec { selector: Some(selector(&[("approved-by", "platform")])), ..Default::default() }),
    None, json!({"approved-by": "platform"}), true)]
#[case::aiworkload_selector_does_not_match(
    Some(AIWorkloadTrustSpec { selector: Some(selector(&[("approved-by", "platform")])), ..Default::default() }),
    None, json!({"approved-by": "me"}), false)]
fn a_policy_believes_only_the_aiworkloads_it_trusts(
    #[case] trust: Option<AIWorkloadTrustSpec>,
    #[case] namespace: Option<&[(&str, &str)]>,
    #[case] aiw_labels: Value,
    #[case] exempt: bool,
) {
    let policies = match trust {
        Some(t) => trusting(t),
        None => PolicySet::builtin(),
    };
    let mut s = snapshot(
        ClusterProvider::Azure,
        &[aiw("assistants", "stateful", aiw_labels)],
    );
    if let Some(labels) = namespace {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.insert_namespace_labels("team-a", labels);
    }
    let d = decide(&deployment(), &policies, &s);
    if exempt {
        assert_eq!(d.verdict, Verdict::Allow, "{d:#?}");
        assert_eq!(d.exemptions.len(), 1);
    } else {
        assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
        assert!(d.exemptions.is_empty());
        assert!(
            d.warnings
                .iter()
                .map(|w| &w.message)
                .any(|w| w.contains("does not trust it") && w.contains("team-a/assistants")),
            "{:?}",
            d.warnings
        );
    }
}

#[test]
fn an_untrusted_aiworkload_still_adds_governance() {
    // Declares an endpoint the pod spec cannot show: checked even when the policy trusts no
    // AIWorkload to exempt.
    let policies = trusting(AIWorkloadTrustSpec {
        allow_exemptions: false,
        ..Default::default()
    });
    let mut a = aiw("chat", "stateless", json!({}));
    a.spec.endpoint = Some(DIRECT.into());
    let s = snapshot(ClusterProvider::Azure, &[a]);
    let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {"template": {"metadata": {"labels": {"app": "chat"}}, "spec": {"containers": [{"name": "a"}]}}}});
    let d = decide(&obj, &policies, &s);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    assert!(d.violations[0].path.contains("AIWorkload team-a/chat"));
}

#[test]
fn a_stateless_declaration_does_not_exempt_and_nothing_is_reported() {
    let s = snapshot(
        ClusterProvider::Azure,
        &[aiw("chat", "stateless", json!({}))],
    );
    let d = decide(&deployment(), &PolicySet::builtin(), &s);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.exemptions.is_empty());
}

#[test]
fn several_declarations_govern_as_their_union() {
    let s = snapshot(
        ClusterProvider::Azure,
        &[
            aiw("a-stateful", "stateful", json!({})),
            aiw("b-chat", "stateless", json!({})),
        ],
    );
    let d = decide(&deployment(), &PolicySet::builtin(), &s);
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    assert!(d.exemptions.is_empty());
}

// ---------------------------------------------------------------- bad declarations are refused

#[test]
fn the_trust_field_is_validated_with_its_path() {
    let mut p = default_policy();
    p.spec.trust = Some(TrustSpec {
        ai_workloads: Some(AIWorkloadTrustSpec {
            selector: Some(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                        key: "approved-by".into(),
                        operator: "Equals".into(),
                        values: None,
                    },
                ]),
            }),
            ..Default::default()
        }),
    });
    let errors = PolicySet::compile([&p]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.trust.aiWorkloads.selector");
    assert!(
        errors[0].message.contains("Equals"),
        "{}",
        errors[0].message
    );
}

#[rstest]
#[case::typo("opneai")]
#[case::upper("OpenAI")]
#[case::other("anthropic")]
fn an_unknown_provider_is_refused_listing_the_known_ones(#[case] provider: &str) {
    let mut p = default_policy();
    p.spec.provider = provider.into();
    let errors = PolicySet::compile([&p]).unwrap_err();
    assert_eq!(errors[0].path, "spec.provider");
    assert!(
        errors[0].message.contains(&format!("{provider:?}")),
        "{}",
        errors[0].message
    );
    assert!(
        errors[0].message.contains("known: openai"),
        "{}",
        errors[0].message
    );

    // The validating webhook refuses the HostingPolicy and the AIWorkload alike.
    let mut policy = serde_json::to_value(&p).unwrap();
    policy["apiVersion"] = json!("hostguard.dev/v1alpha1");
    policy["kind"] = json!("HostingPolicy");
    let mut workload = serde_json::to_value(aiw("x", "stateless", json!({}))).unwrap();
    workload["spec"]["provider"] = json!(provider);
    for object in [policy, workload] {
        let d = decide(
            &object,
            &PolicySet::builtin(),
            &Snapshot::offline(ClusterProvider::Azure),
        );
        assert_eq!(d.verdict, Verdict::Deny, "{object}");
        let v = &d.violations[0];
        assert_eq!(v.path, "spec.provider", "{v:?}");
        assert!(v.message.contains("known: openai"), "{}", v.message);
    }
}

#[test]
fn the_crd_schema_lists_the_known_providers() {
    for crd in hostguard_engine::api::crds() {
        let schema = serde_json::to_value(
            &crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema,
        )
        .unwrap();
        assert_eq!(
            schema["properties"]["spec"]["properties"]["provider"]["enum"],
            json!(["openai"]),
            "{}",
            crd.metadata.name.unwrap_or_default()
        );
    }
}

/// A malformed AIWorkload is refused at admission with the field path and the value at fault,
/// never read as "no declaration".
#[rstest]
#[case::unknown_api_class(json!({"apiClass": "statefull"}), "spec.apiClass", "statefull")]
#[case::bad_selector_operator(
    json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["chat"]}]}}),
    "spec.selector", "Equals")]
#[case::unknown_provider(json!({"provider": "opneai"}), "spec.provider", "opneai")]
fn a_malformed_declaration_is_refused_with_its_path(
    #[case] spec: Value,
    #[case] path: &str,
    #[case] value: &str,
) {
    let mut object = json!({"apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": "x", "namespace": "team-a"},
        "spec": {"selector": {"matchLabels": {"app": "chat"}}, "provider": "openai"}});
    for (k, v) in spec.as_object().unwrap() {
        object["spec"][k] = v.clone();
    }
    let d = decide(
        &object,
        &PolicySet::builtin(),
        &Snapshot::offline(ClusterProvider::Azure),
    );
    assert_eq!(d.verdict, Verdict::Deny, "{d:#?}");
    let v = &d.violations[0];
    assert_eq!(v.path, path, "{v:?}");
    assert!(v.message.starts_with(path), "{}", v.message);
    assert!(v.message.contains(value), "{}", v.message);
}
