//! Any bytes as an AdmissionReview body, answered by both webhooks with the built-in default
//! policy on an Azure cluster (the production configuration of `serve --standalone`).
//!
//! Checked, besides "never panics" (design.md, Failure semantics):
//! - `Err` only for a body that is not JSON at all;
//! - the response always serialises, and is always `admission.k8s.io/v1` `AdmissionReview`;
//! - a readable review echoes the request's uid (when the input has a string `request.uid`);
//! - an unreadable review is refused (`allowed: false`) and carries no decision;
//! - `/validate` admits exactly what the decision allows; `/mutate` never denies, and its patch
//!   decodes to a JSON Patch that applies to the object it was computed for;
//! - the review (as its JSON tree has it) is answered the same with the request's keys in their
//!   sorted order (`kind` before `object`: the object is read in the review's own parse) and with
//!   `object` and `oldObject` first (kept as text and read after the request).

#![no_main]

use base64::Engine as _;
use hostguard_engine::admission::{self, ADMISSION_API_VERSION, Answer, Webhook};
use hostguard_engine::api::ClusterProvider;
use hostguard_engine::policy::PolicySet;
use hostguard_engine::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::LazyLock;

static POLICIES: LazyLock<PolicySet> = LazyLock::new(PolicySet::builtin);
static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(|| Snapshot::offline(ClusterProvider::Azure));

fuzz_target!(|data: &[u8]| {
    let parsed: Option<Value> = serde_json::from_slice(data).ok();
    for webhook in [Webhook::Validate, Webhook::Mutate] {
        match admission::answer(data, webhook, &POLICIES, &SNAPSHOT) {
            Ok(answer) => check(&answer, webhook, parsed.as_ref()),
            Err(_) => assert!(parsed.is_none(), "valid JSON rejected as not JSON"),
        }
        if let Some((in_order, objects_first)) = parsed.as_ref().and_then(reordered) {
            let answer = |body: &str| {
                admission::answer(body.as_bytes(), webhook, &POLICIES, &SNAPSHOT)
                    .map(|a| serde_json::to_string(&a.review).expect("the response serialises"))
                    .map_err(|e| e.to_string())
            };
            assert_eq!(
                answer(&in_order),
                answer(&objects_first),
                "the order of the request's keys changed the answer"
            );
        }
    }
});

/// The review as text twice, from its tree: the request's keys sorted, and with `object` and
/// `oldObject` moved first. None when it has no request.
fn reordered(review: &Value) -> Option<(String, String)> {
    let request = review.get("request")?.as_object()?;
    let entry = |(k, v): (&String, &Value)| format!("{}:{v}", Value::from(k.as_str()));
    let is_object = |k: &str| k == "object" || k == "oldObject";
    let mut keys: Vec<(&String, &Value)> = request.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let sorted: Vec<String> = keys.iter().copied().map(entry).collect();
    keys.sort_by_key(|(k, _)| !is_object(k));
    let first: Vec<String> = keys.into_iter().map(entry).collect();
    let around = |request: Vec<String>| {
        let mut top: Vec<String> = review
            .as_object()?
            .iter()
            .filter(|(k, _)| k.as_str() != "request")
            .map(entry)
            .collect();
        top.push(format!("\"request\":{{{}}}", request.join(",")));
        Some(format!("{{{}}}", top.join(",")))
    };
    Some((around(sorted)?, around(first)?))
}

fn check(answer: &Answer, webhook: Webhook, input: Option<&Value>) {
    let response = &answer.review.response;
    let bytes = serde_json::to_vec(&answer.review).expect("the response serialises");
    let echoed: Value = serde_json::from_slice(&bytes).expect("the response is JSON");
    assert_eq!(echoed["apiVersion"], ADMISSION_API_VERSION);
    assert_eq!(echoed["kind"], "AdmissionReview");
    assert_eq!(echoed["response"]["uid"], response.uid.as_str());

    let input = input.expect("an answer implies the body was JSON");
    let request_uid = input.pointer("/request/uid").and_then(Value::as_str);

    if answer.unreadable.is_some() {
        assert!(answer.decision.is_none(), "unreadable but decided");
        assert!(!response.allowed, "an unreadable review must be refused");
        assert!(
            response.patch.is_none(),
            "an unreadable review must not be patched"
        );
        return;
    }
    let decision = answer
        .decision
        .as_ref()
        .expect("a readable review has a decision");
    if let Some(uid) = request_uid {
        assert_eq!(response.uid, uid, "the request's uid is not echoed");
    }
    match webhook {
        Webhook::Validate => {
            assert_eq!(response.allowed, decision.allowed());
            assert!(response.patch.is_none());
            if !response.allowed {
                let status = response.status.as_ref().expect("a denial has a status");
                assert!(!status.message.is_empty());
            }
        }
        Webhook::Mutate => {
            assert!(response.allowed, "the mutating webhook never denies");
            if let Some(patch) = &response.patch {
                assert_eq!(response.patch_type.as_deref(), Some("JSONPatch"));
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(patch)
                    .expect("the patch is base64");
                let ops: json_patch::Patch =
                    serde_json::from_slice(&raw).expect("the patch is a JSON Patch");
                let mut object = input
                    .pointer("/request/object")
                    .cloned()
                    .expect("a patch implies an object");
                if let Err(e) = json_patch::patch(&mut object, &ops) {
                    panic!("the patch does not apply to the object: {e}");
                }
            }
        }
    }
}
