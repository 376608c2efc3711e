//! The differential test of the hot-path rewrite (issue 17): every AdmissionReview below is
//! answered by today's `admission::answer` and compared byte for byte (length and SHA-256) with
//! the answer the code gave before the rewrite began, recorded in
//! `tests/fixtures/answers/before-rewrite.jsonl`.
//!
//! The inputs: the admission fixtures and the corpus's AdmissionReviews as they are; every
//! document of the example workloads, the adapter fixtures and the corpus's real-world
//! manifests wrapped into CREATE reviews; a generated set (the benchmark's Deployment with
//! pairs of endpoint variables, Pods for the mutating webhook, UPDATEs); each through both
//! webhooks, against the built-in default policy and against a busy world of policies and
//! AIWorkloads.
//!
//! The recording is made by the code before a change, never after: `HOSTGUARD_RECORD_ANSWERS=1
//! cargo test --test answers_unchanged` writes it, and the rewrite's commits must leave it
//! untouched. A difference names the input, the webhook and the world, and shows both answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hostguard::admission::{self, Webhook};
use hostguard::api::{AIWorkload, ClusterProvider, HostingPolicy};
use hostguard::manifest;
use hostguard::policy::PolicySet;
use hostguard::snapshot::{DeclaredWorkload, Snapshot};
use serde_json::{Value, json};

const RECORDING: &str = "tests/fixtures/answers/before-rewrite.jsonl";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            panic!("{} is not readable", d.display());
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A CREATE review of `object` as the API server sends it (`request.kind` from the object).
fn create_review(uid: &str, object: &Value) -> Value {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": object["kind"]},
            "resource": {"group": group, "version": version, "resource": "things"},
            "name": object.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "namespace": object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("team-a"),
            "operation": "CREATE",
            "userInfo": {"username": "differential"},
            "object": object,
            "dryRun": false,
        }
    })
}

/// Every input, by a stable name, as the body the webhook receives.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for dir in ["tests/fixtures/admission", "../shared/corpus/admission"] {
        for path in files_in(&root().join(dir), &["json"]) {
            let body = std::fs::read(&path).expect("fixture readable");
            out.push((relative(&path), body));
        }
    }
    for dir in [
        "examples/workloads",
        "tests/fixtures/adapters",
        "../shared/corpus/real-world",
    ] {
        for path in files_in(&root().join(dir), &["yaml", "yml"]) {
            let text = std::fs::read_to_string(&path).expect("manifest readable");
            let Ok(docs) = manifest::parse_str(&relative(&path), &text) else {
                continue;
            };
            for (i, doc) in docs.iter().enumerate() {
                if !doc.value.is_object() || doc.value.get("kind").is_none() {
                    continue;
                }
                let name = format!("{}#{i}", relative(&path));
                let review = create_review(&name, &doc.value);
                out.push((name, serde_json::to_vec(&review).expect("review encodes")));
            }
        }
    }
    out.extend(generated());
    out
}

/// Endpoint-related variables, paired two at a time on the benchmark's Deployment.
const VARIABLES: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-test"),
    ("OPENAI_BASE_URL", "https://api.openai.com/v1"),
    (
        "OPENAI_BASE_URL",
        "https://contoso.openai.azure.com/openai/v1",
    ),
    ("OPENAI_API_BASE", "https://evil.example.com/v1"),
    ("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com/"),
    ("AZURE_OPENAI_API_KEY", "k"),
    ("OPENAI_API_TYPE", "azure"),
    ("LANGSMITH_GATEWAY", "https://gw.example.com"),
    ("USE_LITELLM_PROXY", "true"),
    ("HTTPS_PROXY", "http://proxy:3128"),
    ("UPSTREAM_URL", "https://api.openai.com:443"),
    ("K8SGPT_BACKEND", "localai"),
    (
        "OPENAI_BASE_URL",
        "http://gateway.ai.svc.cluster.local:4000",
    ),
    ("openai_api_key", "sk-lower"),
    ("OPENAI_BASE_URL", "$(MISSING)/v1"),
];

fn generated() -> Vec<(String, Vec<u8>)> {
    let base: Value = serde_json::from_slice(
        &std::fs::read(root().join("benches/fixtures/deployment-review.json"))
            .expect("benchmark fixture"),
    )
    .expect("benchmark fixture is JSON");
    let mut out = Vec::new();
    for (i, a) in VARIABLES.iter().enumerate() {
        for (j, b) in VARIABLES.iter().enumerate().skip(i) {
            let mut review = base.clone();
            let uid = format!("generated-{i}-{j}");
            review["request"]["uid"] = json!(uid);
            let env = review
                .pointer_mut("/request/object/spec/template/spec/containers/0/env")
                .and_then(Value::as_array_mut)
                .expect("the fixture's first container has env");
            env.push(json!({"name": a.0, "value": a.1}));
            env.push(json!({"name": b.0, "value": b.1}));
            out.push((uid.clone(), serde_json::to_vec(&review).expect("encodes")));

            // The same containers as a Pod (the mutating webhook pins governed Pods).
            let template = review["request"]["object"]["spec"]["template"].clone();
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "team-a", "labels": template["metadata"]["labels"]},
                "spec": template["spec"],
            });
            let pod_uid = format!("{uid}-pod");
            out.push((
                pod_uid.clone(),
                serde_json::to_vec(&create_review(&pod_uid, &pod)).expect("encodes"),
            ));

            // An UPDATE from the fixture's Deployment to this one.
            let mut update = review.clone();
            update["request"]["uid"] = json!(format!("{uid}-update"));
            update["request"]["operation"] = json!("UPDATE");
            update["request"]["oldObject"] = base["request"]["object"].clone();
            out.push((
                format!("{uid}-update"),
                serde_json::to_vec(&update).expect("encodes"),
            ));
        }
    }
    out
}

/// The busy world: policies for openai with selectors and placement, AIWorkloads over several
/// namespaces, some of which select the generated workloads.
fn busy_world() -> (PolicySet, Snapshot) {
    let policies: Vec<HostingPolicy> = (0..20)
        .map(|i| {
            let classes = [
                json!(["stateless"]),
                json!(["stateful"]),
                json!(["stateless", "stateful"]),
            ];
            let action = ["Deny", "Warn", "Audit"][i % 3];
            let unresolved = ["Deny", "Warn"][i % 2];
            let in_cluster = ["Warn", "Deny", "Allow"][i % 3];
            let mut spec = json!({
                "provider": "openai",
                "apiClasses": classes[i % 3],
                "action": action,
                "excludedNamespaces": [format!("sandbox-{i}")],
                "endpoints": {
                    "allowedHosts": ["*.openai.azure.com", format!("gw-{i}.contoso.com")],
                    "unresolved": unresolved,
                    "inCluster": in_cluster,
                },
                "trust": {"aiWorkloads": {"allowExemptions": i % 2 == 0}},
            });
            if i % 4 == 1 {
                spec["namespaceSelector"] = json!({"matchLabels": {"team": "conversational-ai"}});
            }
            if i % 2 == 0 {
                spec["placement"] = json!({
                    "clusterProviders": ["azure"],
                    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.azure.com/cluster", "operator": "Exists"}]}
                    ]}}
                });
            }
            serde_json::from_value(json!({
                "apiVersion": "hostguard.dev/v1alpha1", "kind": "HostingPolicy",
                "metadata": {"name": format!("policy-{i:02}")},
                "spec": spec,
            }))
            .expect("busy-world policy")
        })
        .collect();
    let policies = PolicySet::compile(&policies).expect("busy-world policies compile");
    let mut snapshot = Snapshot::offline(ClusterProvider::Azure);
    for n in 0..5 {
        let ns = if n == 0 {
            "team-a".to_string()
        } else {
            format!("team-{n}")
        };
        snapshot.insert_namespace_labels(
            ns.clone(),
            BTreeMap::from([
                ("kubernetes.io/metadata.name".to_string(), ns.clone()),
                ("team".to_string(), "conversational-ai".to_string()),
            ]),
        );
        for j in 0..10 {
            let selected = if j % 2 == 0 {
                "chat-api".to_string()
            } else {
                format!("svc-{j}")
            };
            let class = ["stateless", "stateful", "mixed"][j % 3];
            let aiw: AIWorkload = serde_json::from_value(json!({
                "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
                "metadata": {"name": format!("aiw-{j}"), "namespace": ns},
                "spec": {
                    "selector": {"matchLabels": {"app.kubernetes.io/name": selected}},
                    "provider": "openai",
                    "apiClass": class,
                },
            }))
            .expect("busy-world AIWorkload");
            snapshot.insert_declared(DeclaredWorkload::from_resource(&aiw).expect("compiles"));
        }
    }
    snapshot.set_authoritative(true, true);
    (policies, snapshot)
}

/// One line of the recording: the input, the webhook and world, whether it was allowed, and the
/// length and SHA-256 (first 128 bits) of the exact response bytes: the responses themselves
/// would make a recording of megabytes.
fn record_line(input: &str, world: &str, webhook: Webhook, response: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, response.as_bytes());
    let sha256: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let allowed = serde_json::from_str::<Value>(response)
        .ok()
        .and_then(|r| r.pointer("/response/allowed").cloned());
    serde_json::to_string(&json!({
        "input": input, "world": world, "webhook": webhook.as_str(),
        "allowed": allowed, "bytes": response.len(), "sha256": sha256,
    }))
    .expect("line encodes")
}

fn answers() -> Vec<String> {
    let worlds = [
        (
            "default",
            PolicySet::builtin(),
            Snapshot::offline(ClusterProvider::Azure),
        ),
        ("busy", busy_world().0, busy_world().1),
    ];
    let mut lines = Vec::new();
    for (name, body) in inputs() {
        for (world, policies, snapshot) in &worlds {
            for webhook in Webhook::ALL {
                let response = match admission::answer(&body, webhook, policies, snapshot) {
                    Ok(answer) => {
                        String::from_utf8(serde_json::to_vec(&answer.review).expect("encodes"))
                            .expect("JSON is UTF-8")
                    }
                    Err(not_json) => format!("not JSON: {not_json}"),
                };
                lines.push(record_line(&name, world, webhook, &response));
            }
        }
    }
    lines
}

#[test]
fn every_answer_is_byte_for_byte_the_one_before_the_rewrite() {
    let now = answers();
    let path = root().join(RECORDING);
    if std::env::var_os("HOSTGUARD_RECORD_ANSWERS").is_some() {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&path, now.join("\n") + "\n").expect("recording written");
        return;
    }
    let recorded = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing ({e})", path.display()));
    let recorded: Vec<&str> = recorded.lines().collect();
    assert!(
        now.len() >= 2_000,
        "the differential set shrank to {} answers",
        now.len()
    );
    assert_eq!(
        recorded.len(),
        now.len(),
        "the set of inputs changed: {} recorded, {} now",
        recorded.len(),
        now.len()
    );
    let differing: Vec<(&str, &String)> = recorded
        .iter()
        .zip(&now)
        .filter(|(before, after)| *before != *after)
        .map(|(b, a)| (*b, a))
        .collect();
    if let Some((before, after)) = differing.first() {
        panic!(
            "{} of {} answers differ; the first:\nbefore: {before}\nafter:  {after}",
            differing.len(),
            now.len()
        );
    }
}
