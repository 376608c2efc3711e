//! What a developer first sees of hostguard under `kubectl apply`: every warning at most 120
//! characters (k8s.io/api admission/v1 `AdmissionResponse.Warnings`: "Limit warnings to 120
//! characters if possible. Warnings over 256 characters and large numbers of warnings may be
//! truncated"), naming a field path and a fix, with the full detail kept in
//! `status.details.causes` and the audit annotations; denials that say how to fix each
//! violation.
//!
//! Asserted over every AdmissionReview fixture (ours in `tests/fixtures/admission` and the
//! third-party ones in `../shared/corpus/admission`) and over the example and corpus workloads
//! wrapped as reviews, under the built-in policy and a Warn copy of it (so that every violation
//! is also a warning), on an Azure cluster and on one whose provider is unknown.

use std::path::{Path, PathBuf};

use hostguard::admission::{self, Webhook};
use hostguard::api::{Action, ClusterProvider, Disposition, HostingPolicy};
use hostguard::manifest;
use hostguard::policy::{MAX_WARNING_CHARS, PolicySet, default_policy};
use hostguard::snapshot::Snapshot;
use serde_json::{Value, json};

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    out.sort();
    out
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    out.sort();
    out
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A CREATE review of `object`, as the API server sends it.
fn review_of(object: &Value) -> Vec<u8> {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": group, "version": version, "kind": object["kind"]},
            "resource": {"group": group, "version": version, "resource": "x"},
            "namespace": object.pointer("/metadata/namespace").cloned().unwrap_or(json!("default")),
            "name": object.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            "operation": "CREATE",
            "userInfo": {"username": "dev"},
            "object": object,
        }
    });
    serde_json::to_vec(&body).expect("serialisable")
}

/// Every review body the test judges, with a name for messages.
fn bodies() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in [
        root().join("tests/fixtures/admission"),
        root().join("../shared/corpus/admission"),
    ] {
        for path in json_files(&dir) {
            out.push((
                path.display().to_string(),
                std::fs::read(&path).expect("readable"),
            ));
        }
    }
    for dir in [
        root().join("examples/workloads"),
        root().join("../shared/corpus/real-world"),
    ] {
        for path in yaml_files(&dir) {
            let text = std::fs::read_to_string(&path).expect("readable");
            let Ok(docs) = manifest::parse_str(&path.display().to_string(), &text) else {
                continue;
            };
            for d in docs.iter().filter(|d| d.value.get("kind").is_some()) {
                out.push((
                    format!("{}#{}", path.display(), d.index),
                    review_of(&d.value),
                ));
            }
        }
    }
    out
}

/// The built-in policy with every Deny turned into Warn: each violation is then a warning.
fn warn_policies() -> PolicySet {
    let mut policy: HostingPolicy = default_policy();
    policy.spec.action = Action::Warn;
    policy.spec.endpoints.unresolved = Disposition::Warn;
    policy.spec.endpoints.ambiguous = Disposition::Warn;
    policy.spec.endpoints.in_cluster = Disposition::Warn;
    PolicySet::compile_or_default(&[policy]).expect("the default policy compiles")
}

#[test]
fn every_warning_fits_in_120_characters_and_its_detail_is_kept() {
    let bodies = bodies();
    assert!(bodies.len() > 20, "only {} reviews", bodies.len());
    let mut warned = 0;
    for policies in [PolicySet::builtin(), warn_policies()] {
        for provider in [ClusterProvider::Azure, ClusterProvider::Unknown] {
            let snapshot = Snapshot::offline(provider);
            for (name, body) in &bodies {
                let answer = admission::answer(body, Webhook::Validate, &policies, &snapshot)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let out = serde_json::to_value(&answer.review).expect("serialisable");
                let response = &out["response"];
                let warnings: Vec<&str> = response["warnings"]
                    .as_array()
                    .map(|w| w.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for w in &warnings {
                    assert!(
                        w.chars().count() <= MAX_WARNING_CHARS,
                        "{name}: {} characters: {w}",
                        w.chars().count()
                    );
                    // The API server sends warnings as HTTP Warning headers (RFC 7234 5.5):
                    // printable ASCII travels everywhere.
                    assert!(
                        w.chars().all(|c| c.is_ascii() && !c.is_ascii_control()),
                        "{name}: {w}"
                    );
                }
                let Some(decision) = &answer.decision else {
                    continue;
                };
                if decision.warnings.is_empty() {
                    continue;
                }
                warned += 1;
                for w in &decision.warnings {
                    // Field path first, and a hint after the `; `.
                    let short = w.short();
                    if !w.path.is_empty() {
                        assert!(short.starts_with(&w.path), "{name}: {short}");
                    }
                    assert!(!w.hint.is_empty(), "{name}: no hint in {short}");
                }
                // The full detail of each warning is in the causes and the audit annotation.
                let causes: Vec<&str> = response["status"]["details"]["causes"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .filter(|c| c["reason"] == "Warning")
                            .filter_map(|c| c["message"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                let audit = response["auditAnnotations"]["warnings"]
                    .as_str()
                    .unwrap_or_default();
                for w in decision.warnings.iter().take(admission::MAX_CAUSES / 2) {
                    assert!(
                        causes.contains(&w.message.as_str()),
                        "{name}: {:?} not in causes {causes:?}",
                        w.message
                    );
                    assert!(audit.contains(&w.message), "{name}: {audit}");
                }
            }
        }
    }
    assert!(warned > 10, "only {warned} reviews had warnings");
}

#[test]
fn a_denial_names_path_value_and_fix() {
    let body = std::fs::read(root().join("tests/fixtures/admission/deployment-denied.json"))
        .expect("fixture");
    let answer = admission::answer(
        &body,
        Webhook::Validate,
        &PolicySet::builtin(),
        &Snapshot::offline(ClusterProvider::Azure),
    )
    .expect("JSON");
    let out = serde_json::to_value(&answer.review).expect("serialisable");
    assert_eq!(out["response"]["allowed"], false);
    let causes = out["response"]["status"]["details"]["causes"]
        .as_array()
        .expect("causes");
    assert!(!causes.is_empty());
    for c in causes
        .iter()
        .filter(|c| c["reason"] == "FieldValueForbidden")
    {
        let field = c["field"].as_str().expect("field");
        let message = c["message"].as_str().expect("message");
        assert!(message.starts_with(field), "{message}");
        assert!(message.contains("\"https://"), "no value quoted: {message}");
        // The fix names the variable to set and what to set it to: the v1 API path for the
        // OpenAI clients' base URL, the resource URL for the Azure clients' endpoint.
        assert!(
            message.contains("; set OPENAI_BASE_URL to your Azure endpoint's /openai/v1")
                || message.contains("; set AZURE_OPENAI_ENDPOINT to your Azure endpoint, https://<resource>.openai.azure.com"),
            "no fix: {message}"
        );
        // Bounded whatever the allowed-hosts list: the family in one phrase.
        assert!(
            message.ends_with("(allowed: *.openai.azure.com and 4 more Azure hosts)"),
            "{message}"
        );
    }
}
