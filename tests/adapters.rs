//! The AI tools' own resources (issue 10), table-driven against
//! `tests/fixtures/adapters/expected.tsv`, whose verdicts come from the tools' sources
//! (`tests/fixtures/adapters/FACTS.md`), not from running hostguard. Each file is evaluated as
//! `hostguard check` does on an Azure cluster, with the ConfigMaps and the referenced objects
//! (Envoy Gateway Backends, BackendTLSPolicies, AIServiceBackends) of the same file resolved.
//!
//! `error` rows must be a denial by hostguard itself whose message names the field path the
//! reason names; `deny` rows must be denied by a policy, not for malformed input.

use std::path::{Path, PathBuf};

use hostguard::api::ClusterProvider;
use hostguard::manifest;
use hostguard::policy::{Decision, Operation, PolicySet, Request, Verdict, evaluate};
use hostguard::snapshot::Snapshot;
use serde_json::Value;

/// The fixture folders of the tools read.
const TOOLS: &[&str] = &[
    "/k8sgpt/",
    "/kagent/",
    "/ark/",
    "/kaito/",
    "/envoy-ai-gateway/",
    "/litellm/",
    "/holmesgpt/",
    "/pod-templates/",
    "/librechat/",
    "/ragflow/",
];

/// Kinds not read yet.
const NOT_YET: &[&str] = &[];

/// Rows where hostguard knowingly answers otherwise, with why (for the lead to confirm): a
/// Rollout with `spec.workloadRef` runs the template of a Deployment that is admitted, and
/// judged, on its own; the webhook has no cache of Deployments to follow the reference with, so
/// the Rollout gets a warning that says so (the "skipped with a warning" the missing-Deployment
/// row offers as the alternative), with or without the Deployment in the input.
const DIVERGES: &[(&str, &str)] = &[
    ("pod-templates/own-rollout-workloadref.yaml", "warn"),
    ("pod-templates/own-rollout-workloadref-missing.yaml", "warn"),
];

/// The kinds whose adapters exist, for the rows of the shared corpus.
const ADAPTED: &[&str] = &[
    "K8sGPT",
    "ModelConfig",
    "ModelProviderConfig",
    "Model",
    "RAGEngine",
    "AIServiceBackend",
    "AIGatewayRoute",
    "RayService",
    "Workspace",
    "SandboxAgent",
];

struct Row {
    file: String,
    document: usize,
    kind: String,
    verdict: String,
    reason: String,
}

fn rows() -> Vec<Row> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/fixtures/adapters/expected.tsv"))
        .expect("expected.tsv readable");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.splitn(5, '\t').collect();
            assert_eq!(c.len(), 5, "expected.tsv row has 5 columns: {l}");
            Row {
                file: c[0].to_string(),
                document: c[1].parse().expect("document index"),
                kind: c[2].to_string(),
                verdict: c[3].to_string(),
                reason: c[4].to_string(),
            }
        })
        .collect()
}

fn evaluate_file(path: &Path) -> Vec<(manifest::Document, Decision)> {
    let text = std::fs::read_to_string(path).expect("readable");
    let docs = manifest::parse_str(&path.display().to_string(), &text)
        .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
    let mut snapshot = Snapshot::offline(ClusterProvider::Azure);
    for d in &docs {
        if d.value.get("kind").and_then(Value::as_str) == Some("ConfigMap")
            && let Ok(cm) = serde_json::from_value(d.value.clone())
        {
            snapshot.insert_config_map(&cm, "default");
        }
        // As `check` does: only the kinds the adapters look up.
        let api_version = d
            .value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind = d.value.get("kind").and_then(Value::as_str).unwrap_or("");
        if hostguard::detect::adapters::related_kinds().any(|(g, k)| g == group && k == kind) {
            snapshot.insert_related(&d.value, "default");
        }
    }
    let policies = PolicySet::builtin();
    docs.into_iter()
        .filter(|d| !d.value.is_null())
        .map(|d| {
            let namespace = d
                .value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(String::from);
            let decision = evaluate(
                &Request {
                    operation: Operation::Create,
                    object: Some((&d.value).into()),
                    old_object: None,
                    namespace: namespace.as_deref(),
                },
                &policies,
                &snapshot,
            );
            (d, decision)
        })
        .collect()
}

/// The field path an `error` row's reason names ("the error names spec.ai").
fn named_path(reason: &str) -> Option<&str> {
    let rest = reason.split("the error names ").nth(1)?;
    Some(rest.split_whitespace().next()?.trim_end_matches(['.', ',']))
}

fn check(row: &Row, got: &Decision) -> Result<(), String> {
    let diverging = DIVERGES
        .iter()
        .find(|(f, _)| row.file.ends_with(f) && row.kind == "Rollout")
        .map(|(_, v)| *v);
    let expected = diverging.unwrap_or(row.verdict.as_str());
    let by_hostguard = got.violations.iter().any(|v| v.policy == "hostguard");
    let ok = match expected {
        "error" => {
            let named = named_path(&row.reason).unwrap_or("");
            got.verdict == Verdict::Deny
                && got.violations.iter().any(|v| {
                    v.policy == "hostguard"
                        && if named == "ConfigMap" {
                            // "the error names ConfigMap NAME key KEY ...": a config file.
                            let words: Vec<&str> = row
                                .reason
                                .split("the error names ConfigMap ")
                                .nth(1)
                                .unwrap_or("")
                                .split_whitespace()
                                .collect();
                            words.len() >= 3
                                && v.message
                                    .contains(&format!("ConfigMap/{} key {}", words[0], words[2]))
                        } else {
                            v.path == named && v.message.contains(named)
                        }
                })
        }
        "deny" => got.verdict == Verdict::Deny && !by_hostguard,
        "warn" => got.verdict == Verdict::Warn,
        "allow" => got.verdict == Verdict::Allow,
        "skipped" => got.verdict == Verdict::Skipped,
        other => return Err(format!("unknown expected verdict {other}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{}#{} {}: expected {} ({}), got {} — violations {:?}, warnings {:?}",
            row.file,
            row.document,
            row.kind,
            row.verdict,
            row.reason,
            got.verdict.as_str(),
            got.violations
                .iter()
                .map(|v| &v.message)
                .collect::<Vec<_>>(),
            got.warnings
        ))
    }
}

#[test]
fn ai_tool_resources_get_the_verdicts_their_sources_imply() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let all = rows();
    let adapted: Vec<&Row> = all
        .iter()
        .filter(|r| {
            !NOT_YET.contains(&r.kind.as_str())
                && (TOOLS.iter().any(|t| r.file.contains(t))
                    || ADAPTED.contains(&r.kind.as_str())
                    || r.file.contains("-litellm-"))
        })
        .collect();
    assert!(adapted.len() >= 140, "only {} rows selected", adapted.len());
    let mut failures = Vec::new();
    let mut files: Vec<&str> = adapted.iter().map(|r| r.file.as_str()).collect();
    files.dedup();
    for file in files {
        let path: PathBuf = root.join(file);
        let results = evaluate_file(&path);
        for row in adapted.iter().filter(|r| r.file == file) {
            let Some((doc, got)) = results.iter().find(|(d, _)| d.index == row.document) else {
                failures.push(format!("{file}#{}: no such document", row.document));
                continue;
            };
            assert_eq!(
                doc.value.get("kind").and_then(Value::as_str),
                Some(row.kind.as_str()),
                "{file}#{}",
                row.document
            );
            if let Err(e) = check(row, got) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        adapted.len(),
        failures.join("\n")
    );
}

#[test]
fn endpoints_name_the_resource_and_field() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let results =
        evaluate_file(&root.join("tests/fixtures/adapters/k8sgpt/own-openai-no-baseurl.yaml"));
    let (doc, d) = &results[0];
    let name = doc
        .value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap();
    let expected = format!("K8sGPT/{name} spec.ai.baseUrl");
    assert!(
        d.violations
            .iter()
            .any(|v| v.path == expected && v.message.contains("https://api.openai.com/v1")),
        "{:#?}",
        d.violations
    );
}

/// The webhook judges an AI tool's resource as `check` does: an AdmissionReview for a K8sGPT
/// with the openai backend and no baseUrl is refused, naming the field.
#[test]
fn the_webhook_refuses_a_k8sgpt_that_calls_openai_directly() {
    use hostguard::admission::{self, Webhook};
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "core.k8sgpt.ai", "version": "v1alpha1", "kind": "K8sGPT"},
            "resource": {"group": "core.k8sgpt.ai", "version": "v1alpha1", "resource": "k8sgpts"},
            "namespace": "k8sgpt",
            "operation": "CREATE",
            "userInfo": {"username": "dev"},
            "object": {
                "apiVersion": "core.k8sgpt.ai/v1alpha1",
                "kind": "K8sGPT",
                "metadata": {"name": "sample", "namespace": "k8sgpt"},
                "spec": {"ai": {"backend": "openai", "model": "gpt-4o-mini",
                                "secret": {"name": "k8sgpt-secret", "key": "openai-api-key"}}}
            }
        }
    });
    let body = serde_json::to_vec(&review).unwrap();
    let answer = admission::answer(
        &body,
        Webhook::Validate,
        &PolicySet::builtin(),
        &Snapshot::offline(ClusterProvider::Azure),
    )
    .expect("a JSON body");
    let out = serde_json::to_value(&answer.review).unwrap();
    assert_eq!(out["response"]["uid"], "u-1");
    assert_eq!(out["response"]["allowed"], false, "{out:#}");
    let message = out["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("K8sGPT/sample spec.ai.baseUrl")
            && message.contains("https://api.openai.com/v1"),
        "{message}"
    );
}

/// The chart's ValidatingWebhookConfiguration template, as written.
fn webhook_template() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(
        root.join("charts/hostguard/templates/validatingwebhookconfiguration.yaml"),
    )
    .unwrap()
}

/// The chart's `aitools.validate.hostguard.dev` webhook lists exactly the kinds adapters read
/// and the other controllers' kinds with pod templates
/// (Envoy AI Gateway's behind `webhook.aiTools.envoyAIGateway`).
#[test]
fn the_chart_webhook_rules_list_every_adapted_kind() {
    let text = webhook_template();
    let section = text
        .split("aitools.validate.hostguard.dev")
        .nth(1)
        .expect("the AI tools webhook")
        .split("configfiles.validate.hostguard.dev")
        .next()
        .unwrap_or_default();
    let list = |line: &str| -> Vec<String> {
        line.split_once('[')
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(inner, _)| {
                inner
                    .split(',')
                    .map(|s| s.trim().trim_matches('"').to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut in_chart = std::collections::BTreeSet::new();
    let mut group = String::new();
    for line in section.lines() {
        let line = line.trim().trim_start_matches("- ");
        // The rules written from the values (podTemplateKinds) are the platform team's kinds,
        // checked by scripts/chart-test against what it renders.
        if line.contains("{{") {
            continue;
        }
        if line.starts_with("apiGroups:") {
            group = list(line).join(",");
        } else if line.starts_with("resources:") {
            for r in list(line) {
                in_chart.insert((group.clone(), r));
            }
        }
    }
    let in_engine: std::collections::BTreeSet<(String, String)> =
        hostguard::detect::adapters::kinds()
            .map(|(g, _, r)| (g.to_string(), r.to_string()))
            .chain(
                hostguard::workload::kinds::KINDS
                    .iter()
                    .map(|k| (k.group.to_string(), k.plural.to_string())),
            )
            .collect();
    assert_eq!(in_chart, in_engine);
}

/// The chart's `configfiles.validate.hostguard.dev` webhook sends the ConfigMaps the engine
/// judges: its match condition is the engine's, character for character, and its rule is
/// ConfigMaps on CREATE and UPDATE.
#[test]
fn the_chart_config_file_webhook_carries_the_engines_match_condition() {
    let text = webhook_template();
    let section = text
        .split("configfiles.validate.hostguard.dev")
        .nth(1)
        .expect("the config files webhook");
    let expression = section
        .lines()
        .find_map(|l| l.trim().strip_prefix("expression: "))
        .expect("a match condition");
    let expected = hostguard::detect::config_files::config_file_match_condition();
    assert_eq!(expression, format!("{expected:?}"));
    assert!(
        section.contains(r#"resources: ["configmaps"]"#),
        "{section}"
    );
    assert!(
        section.contains(r#"operations: ["CREATE", "UPDATE"]"#),
        "{section}"
    );
}

/// The match condition, run by a real CEL implementation (the `cel` crate), is true for every
/// ConfigMap the engine judges, so none it would deny is kept from the webhook: the ConfigMaps
/// of the fixtures and the corpus, and variations of each marker in a key or in the text.
#[test]
fn the_match_condition_lets_through_every_config_map_the_engine_judges() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let program =
        cel::Program::compile(&hostguard::detect::config_files::config_file_match_condition())
            .expect("the match condition compiles");
    let mut config_maps: Vec<Value> = Vec::new();
    for dir in ["tests/fixtures", "../shared/corpus"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let Ok(docs) =
                        hostguard::manifest::parse_str(&path.display().to_string(), &text)
                    else {
                        continue;
                    };
                    config_maps.extend(
                        docs.into_iter()
                            .map(|d| d.value)
                            .filter(|v| v["kind"] == "ConfigMap" && v["apiVersion"] == "v1"),
                    );
                }
            }
        }
    }
    let file = "model_list:\n  - model_name: m\n    litellm_params: {model: openai/gpt-4o, api_base: https://api.openai.com/v1}\n";
    for (key, text) in [
        ("config.yaml", file.to_string()),
        ("model_list.yaml", "a: [b\n".to_string()),
        ("librechat.yaml", "endpoints:\n  custom:\n    - baseURL: https://api.openai.com/v1\n".to_string()),
        ("local.service_conf.yaml", "user_default_llm:\n  factory: OpenAI\n".to_string()),
        ("x.yaml", "user_default_llm:\n  factory: OpenAI\n".to_string()),
        ("y.yaml", "endpoints:\n  azureOpenAI:\n    groups: [{group: g, instanceName: evil, baseURL: https://api.openai.com/v1}]\n".to_string()),
    ] {
        config_maps.push(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "generated", "namespace": "ns"},
            "data": {"unrelated": "x", key: text}}));
    }
    // A key spelled with a YAML escape holds no marker but a backslash; a file in binaryData
    // is base64. Both must reach the webhook, and both are judged (denied: api.openai.com).
    let escaped = "\"model\\x5flist\":\n  - model_name: m\n    litellm_params: {model: openai/gpt-4o, api_base: https://api.openai.com/v1}\n";
    config_maps.push(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "escaped", "namespace": "ns"}, "data": {"config.yaml": escaped}}));
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(file)
    };
    config_maps.push(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "binary", "namespace": "ns"}, "binaryData": {"config.yaml": encoded}}));
    let policies =
        hostguard::policy::PolicySet::compile([&hostguard::policy::default_policy()]).unwrap();
    let snapshot = hostguard::snapshot::Snapshot::offline(hostguard::api::ClusterProvider::Azure);
    for name in ["escaped", "binary"] {
        let cm = config_maps
            .iter()
            .find(|c| c["metadata"]["name"] == name)
            .unwrap();
        let d = hostguard::policy::evaluate(
            &hostguard::policy::Request {
                operation: hostguard::policy::Operation::Create,
                object: Some(cm.into()),
                old_object: None,
                namespace: Some("ns"),
            },
            &policies,
            &snapshot,
        );
        assert_eq!(
            d.verdict,
            hostguard::policy::Verdict::Deny,
            "{name}: {:?}",
            d.violations
        );
    }
    let mut judged = 0;
    for cm in &config_maps {
        let decision = hostguard::policy::evaluate(
            &hostguard::policy::Request {
                operation: hostguard::policy::Operation::Create,
                object: Some(cm.into()),
                old_object: None,
                namespace: Some("ns"),
            },
            &policies,
            &snapshot,
        );
        let mut context = cel::Context::default();
        context
            .add_variable("object", cel::to_value(cm).unwrap())
            .unwrap();
        let matched = program.execute(&context);
        if decision.verdict != hostguard::policy::Verdict::Skipped {
            judged += 1;
            assert!(
                matches!(matched, Ok(cel::Value::Bool(true))),
                "{}: judged {:?} but the match condition gives {matched:?}",
                cm["metadata"]["name"],
                decision.verdict
            );
        }
    }
    assert!(judged >= 40, "only {judged} ConfigMaps judged");
    // And one with no config file is not sent at all.
    let mut context = cel::Context::default();
    context
        .add_variable(
            "object",
            cel::to_value(
                serde_json::json!({"data": {"OPENAI_BASE_URL": "https://api.openai.com/v1"}}),
            )
            .unwrap(),
        )
        .unwrap();
    assert!(matches!(
        program.execute(&context),
        Ok(cel::Value::Bool(false))
    ));
}

/// What the webhook may fetch by name for an Envoy AI Gateway object: the AIServiceBackends a
/// route names and the Backend an AIServiceBackend names (Envoy AI Gateway's
/// `AIGatewayRouteRuleBackendRef`, `AIServiceBackendSpec.backendRef`), in the object's namespace
/// unless the reference gives one; never a kind outside those fetched by name.
#[test]
fn related_references_name_the_objects_the_adapters_follow() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(
        root.join("tests/fixtures/adapters/envoy-ai-gateway/own-azure-backend.yaml"),
    )
    .unwrap();
    let docs = hostguard::manifest::parse_str("own-azure-backend.yaml", &text).unwrap();
    let refs = |kind: &str| {
        let d = docs.iter().find(|d| d.value["kind"] == kind).unwrap();
        hostguard::detect::adapters::related_references(&d.value, "elsewhere")
    };
    let key = |g: &str, k: &str, n: &str, name: &str| {
        (
            g.to_string(),
            k.to_string(),
            n.to_string(),
            name.to_string(),
        )
    };
    assert_eq!(
        refs("AIGatewayRoute"),
        [key(
            "aigateway.envoyproxy.io",
            "AIServiceBackend",
            "ai",
            "azure"
        )]
    );
    assert_eq!(
        refs("AIServiceBackend"),
        [key("gateway.envoyproxy.io", "Backend", "ai", "azure")]
    );
    assert!(refs("Backend").is_empty());
    let fetched: Vec<(&str, &str)> =
        hostguard::detect::adapters::related_kinds_fetched_by_name().collect();
    let dir = root.join("tests/fixtures/adapters/envoy-ai-gateway");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(docs) = hostguard::manifest::parse_str(&path.display().to_string(), &text) else {
            continue;
        };
        for d in docs {
            for (g, k, _, _) in hostguard::detect::adapters::related_references(&d.value, "ns") {
                assert!(
                    fetched.contains(&(g.as_str(), k.as_str())),
                    "{}: {g}/{k}",
                    path.display()
                );
            }
        }
    }
}
