//! The corners of AdmissionReview reading that used to fail open: a CREATE or UPDATE without its
//! object, an object whose type disagrees with `request.kind`, a field spelled with other letter
//! case, an absurd uid. Each is refused (`allowed: false`, with a message that names the field),
//! on both webhooks; an object with no type fields is read as `request.kind` says.
//!
//! Expected behaviour comes from how the API server writes reviews (k8s.io/apiserver
//! `CreateV1AdmissionReview`: `kind` is the versioned kind, `object` the object in that version,
//! null only for DELETE and CONNECT) and decodes JSON (sigs.k8s.io/json: keys matched
//! case-sensitively, unlike `encoding/json`).

use hostguard_engine::admission::{self, Answer, MAX_UID_BYTES, Webhook};
use hostguard_engine::api::ClusterProvider;
use hostguard_engine::policy::PolicySet;
use hostguard_engine::snapshot::Snapshot;
use rstest::rstest;
use serde_json::{Value, json};

/// A Deployment calling api.openai.com: the default policy denies it on any cluster.
fn openai_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "team"},
        "spec": {"selector": {"matchLabels": {"app": "chat"}}, "template": {
            "metadata": {"labels": {"app": "chat"}},
            "spec": {"containers": [{"name": "app", "image": "chat:1", "env": [
                {"name": "OPENAI_API_KEY", "value": "sk-test"},
                {"name": "OPENAI_BASE_URL", "value": "https://api.openai.com/v1"}
            ]}]}
        }}
    })
}

fn review(operation: &str, kind: Value, object: Option<Value>) -> Value {
    let mut request = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": kind,
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "namespace": "team",
        "operation": operation,
        "userInfo": {"username": "alice"},
    });
    if let Some(object) = object {
        request["object"] = object;
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

fn deployment_kind() -> Value {
    json!({"group": "apps", "version": "v1", "kind": "Deployment"})
}

fn answer(body: &Value, webhook: Webhook) -> Answer {
    admission::answer(
        &serde_json::to_vec(body).expect("JSON"),
        webhook,
        &PolicySet::builtin(),
        &Snapshot::offline(ClusterProvider::Azure),
    )
    .expect("a JSON body is answered")
}

/// Refused on both webhooks, with a message containing `needle`.
fn assert_refused(body: &Value, needle: &str) {
    for webhook in Webhook::ALL {
        let a = answer(body, webhook);
        let r = &a.review.response;
        assert!(!r.allowed, "{}: must be refused: {r:?}", webhook.as_str());
        assert!(r.patch.is_none());
        let message = &r.status.as_ref().expect("a status").message;
        assert!(
            message.contains(needle),
            "{}: {message:?} should name {needle:?}",
            webhook.as_str()
        );
        assert_eq!(a.outcome().as_str(), "invalid");
    }
}

#[rstest]
#[case::create_missing("CREATE", None)]
#[case::create_null("CREATE", Some(Value::Null))]
#[case::update_missing("UPDATE", None)]
#[case::update_null("UPDATE", Some(Value::Null))]
fn create_or_update_without_an_object_is_refused(
    #[case] operation: &str,
    #[case] object: Option<Value>,
) {
    assert_refused(
        &review(operation, deployment_kind(), object),
        "request.object",
    );
}

#[test]
fn delete_without_an_object_is_still_not_evaluated() {
    let a = answer(
        &review("DELETE", deployment_kind(), Some(Value::Null)),
        Webhook::Validate,
    );
    assert!(a.review.response.allowed);
    assert_eq!(a.outcome().as_str(), "skipped");
}

#[rstest]
// A Deployment dressed as a ConfigMap would be skipped as "no pod template".
#[case::deployment_said_to_be_a_configmap(
    json!({"group": "", "version": "v1", "kind": "ConfigMap"}), "Deployment", "apps/v1")]
// And the reverse: request.kind Pod, object says Deployment.
#[case::pod_said_to_be_a_deployment(
    json!({"group": "", "version": "v1", "kind": "Pod"}), "Deployment", "apps/v1")]
#[case::same_kind_other_group(
    json!({"group": "extensions", "version": "v1beta1", "kind": "Deployment"}), "Deployment", "apps/v1")]
#[case::same_kind_other_version(
    json!({"group": "apps", "version": "v1beta2", "kind": "Deployment"}), "Deployment", "apps/v1")]
fn an_object_whose_type_disagrees_with_request_kind_is_refused(
    #[case] kind: Value,
    #[case] object_kind: &str,
    #[case] object_api_version: &str,
) {
    let mut object = openai_deployment();
    object["kind"] = json!(object_kind);
    object["apiVersion"] = json!(object_api_version);
    assert_refused(
        &review("CREATE", kind, Some(object)),
        "disagrees with request.kind",
    );
}

#[test]
fn an_old_object_of_another_type_is_refused() {
    let mut body = review("UPDATE", deployment_kind(), Some(openai_deployment()));
    body["request"]["oldObject"] = json!({"apiVersion": "v1", "kind": "ConfigMap"});
    assert_refused(&body, "request.oldObject.apiVersion");
}

#[test]
fn a_non_object_object_is_refused() {
    assert_refused(
        &review(
            "CREATE",
            deployment_kind(),
            Some(json!(["not", "an", "object"])),
        ),
        "request.object: is not a JSON object",
    );
}

#[test]
fn a_request_kind_without_kind_or_version_is_refused() {
    assert_refused(
        &review(
            "CREATE",
            json!({"group": "apps", "version": "", "kind": ""}),
            Some(openai_deployment()),
        ),
        "request.kind",
    );
}

#[rstest]
#[case::both_missing(&["apiVersion", "kind"])]
#[case::kind_missing(&["kind"])]
#[case::api_version_missing(&["apiVersion"])]
fn an_object_without_type_fields_is_judged_as_request_kind_says(#[case] remove: &[&str]) {
    let mut object = openai_deployment();
    for key in remove {
        object.as_object_mut().unwrap().remove(*key);
    }
    let a = answer(
        &review("CREATE", deployment_kind(), Some(object)),
        Webhook::Validate,
    );
    assert_eq!(a.outcome().as_str(), "deny", "{:?}", a.review.response);
    let message = &a.review.response.status.as_ref().unwrap().message;
    assert!(message.contains("api.openai.com"), "{message}");
}

#[test]
fn empty_type_fields_are_read_as_request_kind_says() {
    let mut object = openai_deployment();
    object["apiVersion"] = json!("");
    object["kind"] = Value::Null;
    let a = answer(
        &review("CREATE", deployment_kind(), Some(object)),
        Webhook::Validate,
    );
    assert_eq!(a.outcome().as_str(), "deny");
}

#[rstest]
#[case::capital_object("request", "Object", "request.\"Object\"")]
#[case::upper_old_object("request", "OLDOBJECT", "request.\"OLDOBJECT\"")]
#[case::capital_operation("request", "Operation", "request.\"Operation\"")]
#[case::capital_request("", "Request", "\"Request\"")]
// Go's EqualFold folds the Kelvin sign to k: encoding/json would read this as `kind`.
#[case::kelvin_sign_kind("request", "\u{212A}ind", "request.\"\u{212A}ind\"")]
// And the long s to s: `ſubResource` would be `subResource`.
#[case::long_s_sub_resource("request", "\u{017F}ubResource", "request.\"\u{017F}ubResource\"")]
fn a_field_spelled_with_other_case_is_refused(
    #[case] level: &str,
    #[case] key: &str,
    #[case] named: &str,
) {
    let mut body = review("CREATE", deployment_kind(), Some(openai_deployment()));
    let value = json!({"apiVersion": "v1", "kind": "ConfigMap"});
    match level {
        "" => body[key] = value,
        _ => body[level][key] = value,
    }
    assert_refused(&body, named);
}

#[test]
fn a_capital_object_alone_is_refused_not_allowed() {
    // The issue's case: `Object` instead of `object`. sigs.k8s.io/json (the API server's
    // decoder) would not read it either; what matters is that the review is not admitted.
    let mut body = review("CREATE", deployment_kind(), None);
    body["request"]["Object"] = openai_deployment();
    assert_refused(&body, "request.\"Object\"");
}

/// The same checks on body text written by hand: the refusal must not depend on how the key's
/// bytes are written (a JSON escape decodes to the same key) or on what strings come before it.
fn assert_text_refused(text: &str, needle: &str) {
    for webhook in Webhook::ALL {
        let a = admission::answer(
            text.as_bytes(),
            webhook,
            &PolicySet::builtin(),
            &Snapshot::offline(ClusterProvider::Azure),
        )
        .expect("a JSON body is answered");
        let r = &a.review.response;
        assert!(!r.allowed, "{}: must be refused: {r:?}", webhook.as_str());
        let message = &r.status.as_ref().expect("a status").message;
        assert!(
            message.contains(needle),
            "{message:?} should name {needle:?}"
        );
    }
}

#[test]
fn a_miscased_field_written_with_a_json_escape_is_refused() {
    // `\u004fbject` is `Object` to every JSON decoder, though its bytes do not spell it.
    let body = review("CREATE", deployment_kind(), None);
    let text = serde_json::to_string(&body).expect("JSON");
    let text = text.replacen(
        r#""request":{"#,
        r#""request":{"\u004fbject":{"apiVersion":"v1","kind":"ConfigMap"},"#,
        1,
    );
    assert_text_refused(&text, "request.\"Object\"");
}

#[test]
fn a_miscased_field_after_strings_with_escaped_quotes_is_refused() {
    // Escaped quotes in earlier values shift where strings seem to start to a byte scan.
    let mut body = review("CREATE", deployment_kind(), Some(openai_deployment()));
    body["request"]["userInfo"]["username"] = json!("a\"b\"c\"");
    body["request"]["userInfo"]["extra"] = json!({"k": ["\"", "\"\"", "x\\\""]});
    let text = serde_json::to_string(&body).expect("JSON");
    let text = text.replacen(r#""operation":"#, r#""Operation":"UPDATE","operation":"#, 1);
    assert_text_refused(&text, "request.\"Operation\"");
}

#[test]
fn unknown_fields_that_are_no_known_field_in_other_case_are_ignored() {
    // The API server adds fields over time; only case variants of the known ones are refused.
    let mut body = review("CREATE", deployment_kind(), Some(openai_deployment()));
    body["request"]["somethingNew"] = json!({"object": 1});
    body["alsoNew"] = json!(true);
    let a = answer(&body, Webhook::Validate);
    assert_eq!(a.outcome().as_str(), "deny");
}

#[test]
fn an_absurdly_long_uid_is_refused() {
    let mut body = review("CREATE", deployment_kind(), Some(openai_deployment()));
    body["request"]["uid"] = json!("u".repeat(MAX_UID_BYTES + 1));
    assert_refused(&body, "request.uid");
    // A uid of the longest size read is decided.
    body["request"]["uid"] = json!("u".repeat(MAX_UID_BYTES));
    assert_eq!(answer(&body, Webhook::Validate).outcome().as_str(), "deny");
}

/// A Deployment whose pod spec has `containers` containers, each with `env` entries, every one
/// of them calling api.openai.com (so each is a violation of the default policy).
fn big_deployment(containers: usize, env: usize) -> Value {
    let env: Vec<Value> = (0..env)
        .map(|i| {
            if i % 2 == 0 {
                json!({"name": format!("OPENAI_API_KEY_{i}"), "value": "sk"})
            } else {
                json!({"name": "OPENAI_BASE_URL", "value": format!("https://api.openai.com/v{i}")})
            }
        })
        .collect();
    let containers: Vec<Value> = (0..containers)
        .map(|i| {
            let mut c = json!({"name": format!("c{i}"), "image": "x", "env": env.clone()});
            c["env"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "OPENAI_API_KEY", "value": "sk"}));
            c
        })
        .collect();
    let mut d = openai_deployment();
    d["spec"]["template"]["spec"]["containers"] = json!(containers);
    d
}

#[rstest]
#[case::containers(admission::MAX_CONTAINERS + 1, 0, "containers")]
#[case::env_entries(2, admission::MAX_ENV_ENTRIES / 2 + 1, "env and envFrom entries")]
fn an_object_over_a_cap_is_refused_as_too_large_to_judge(
    #[case] containers: usize,
    #[case] env: usize,
    #[case] what: &str,
) {
    let body = review(
        "CREATE",
        deployment_kind(),
        Some(big_deployment(containers, env)),
    );
    assert_refused(&body, "too large to judge");
    assert_refused(&body, what);
    let a = answer(&body, Webhook::Validate);
    assert_eq!(a.review.response.status.as_ref().unwrap().code, 413);
}

#[test]
fn an_object_at_the_container_cap_is_judged() {
    let body = review(
        "CREATE",
        deployment_kind(),
        Some(big_deployment(admission::MAX_CONTAINERS, 0)),
    );
    assert_eq!(answer(&body, Webhook::Validate).outcome().as_str(), "deny");
}

#[test]
fn too_many_args_are_refused_as_too_large_to_judge() {
    let mut d = openai_deployment();
    d["spec"]["template"]["spec"]["containers"][0]["args"] =
        json!(vec!["--x"; admission::MAX_ARGS + 1]);
    assert_refused(
        &review("CREATE", deployment_kind(), Some(d)),
        "command and args entries",
    );
}

#[test]
fn a_denial_lists_the_first_causes_and_counts_the_rest_within_bounds() {
    // 100 containers, each with its own api.openai.com endpoint: 100 violations.
    let body = review("CREATE", deployment_kind(), Some(big_deployment(100, 2)));
    let a = answer(&body, Webhook::Validate);
    assert_eq!(a.outcome().as_str(), "deny");
    let violations = a.decision.as_ref().unwrap().denials().count();
    assert!(violations > admission::MAX_CAUSES, "{violations}");
    let status = a.review.response.status.as_ref().unwrap();
    let causes = &status.details.as_ref().unwrap().causes;
    assert_eq!(causes.len(), admission::MAX_CAUSES + 1);
    let rest = violations - admission::MAX_CAUSES;
    assert_eq!(
        causes.last().unwrap().message,
        format!("and {rest} more violations")
    );
    assert!(status.message.len() <= admission::MAX_STATUS_MESSAGE_BYTES);
    assert!(
        status
            .message
            .ends_with(&format!("and {rest} more violations"))
            || status.message.ends_with("..."),
        "{}",
        status.message
    );
    // The first cause names the first container's field.
    assert_eq!(
        causes[0].field,
        "spec.template.spec.containers[0].env[OPENAI_BASE_URL]"
    );
}

#[test]
fn a_huge_quoted_value_is_cut_in_the_cause_with_its_path_first() {
    let mut d = openai_deployment();
    let long = format!("https://api.openai.com/{}", "a".repeat(200_000));
    d["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = json!(long);
    let a = answer(
        &review("CREATE", deployment_kind(), Some(d)),
        Webhook::Validate,
    );
    assert_eq!(a.outcome().as_str(), "deny");
    let status = a.review.response.status.as_ref().unwrap();
    let cause = &status.details.as_ref().unwrap().causes[0];
    assert!(cause.message.len() <= admission::MAX_CAUSE_BYTES);
    assert!(
        cause
            .message
            .starts_with("spec.template.spec.containers[0].env[OPENAI_BASE_URL]"),
        "{}",
        cause.message
    );
    assert!(status.message.len() <= admission::MAX_STATUS_MESSAGE_BYTES);
}

#[test]
fn a_refusal_quoting_a_huge_kind_is_bounded() {
    let mut d = openai_deployment();
    d["kind"] = json!("K".repeat(1_000_000));
    let a = answer(
        &review("CREATE", deployment_kind(), Some(d)),
        Webhook::Validate,
    );
    let message = &a.review.response.status.as_ref().unwrap().message;
    assert!(!a.review.response.allowed);
    assert!(
        message.len() <= admission::MAX_STATUS_MESSAGE_BYTES,
        "{}",
        message.len()
    );
}

#[test]
fn more_findings_than_the_cap_are_refused_as_too_large_to_judge() {
    // 200 containers, each with 8 values of OPENAI_BASE_URL (every duplicate is a candidate):
    // 1,600 endpoints, within the container and env caps.
    let body = review("CREATE", deployment_kind(), Some(big_deployment(200, 16)));
    assert_refused(&body, "AI client endpoints");
}

#[test]
fn a_review_with_more_json_values_than_the_cap_is_refused_before_it_is_built() {
    let mut body = review("CREATE", deployment_kind(), Some(openai_deployment()));
    body["request"]["object"]["metadata"]["managedFields"] =
        json!([{"fieldsV1": vec![0u8; admission::MAX_JSON_VALUES]}]);
    assert_refused(&body, "JSON values");
    // The uid is still echoed, so that the API server reads the refusal as this review's.
    let a = answer(&body, Webhook::Validate);
    assert_eq!(
        a.review.response.uid,
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    // Below the cap the same object is judged.
    body["request"]["object"]["metadata"]["managedFields"] =
        json!([{"fieldsV1": vec![0u8; admission::MAX_JSON_VALUES / 2]}]);
    assert_eq!(answer(&body, Webhook::Validate).outcome().as_str(), "deny");
}
