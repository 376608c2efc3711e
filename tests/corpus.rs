//! The third-party corpus in `../shared/corpus/`: manifests and AdmissionReviews nobody on this
//! project wrote. Every file must be processed without error or panic; ordinary workloads are
//! never denied; Helm values files are skipped; every AdmissionReview gets a valid response with
//! its uid echoed.

use std::path::{Path, PathBuf};

use hostguard::admission::{self, Webhook};
use hostguard::api::ClusterProvider;
use hostguard::manifest;
use hostguard::policy::{Decision, Operation, PolicySet, Request, Verdict, evaluate};
use hostguard::snapshot::Snapshot;
use serde_json::Value;

fn corpus_dir(sub: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(sub);
    assert!(dir.is_dir(), "corpus folder {} is missing", dir.display());
    dir
}

fn files(sub: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(corpus_dir(sub))
        .expect("corpus readable")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    out.sort();
    out
}

/// Evaluates every document of a file as `hostguard check` does, on an Azure cluster, with the
/// ConfigMaps of the same file resolved.
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

#[test]
fn every_real_world_file_is_processed() {
    let all = files("real-world");
    assert_eq!(all.len(), 60, "the corpus has 60 files");
    for path in &all {
        let results = evaluate_file(path);
        assert!(
            !results.is_empty(),
            "{} produced no documents",
            path.display()
        );
    }
}

#[test]
fn ordinary_workloads_are_never_denied() {
    for name in [
        "037-localai-kubernetes-install.yaml",
        "041-k8s-examples-vllm-gemma.yaml",
        "042-k8s-examples-redis-master.yaml",
        "043-k8s-examples-guestbook-frontend.yaml",
        "044-k8s-examples-guestbook-all-in-one.yaml",
        "045-k8s-examples-cassandra-statefulset.yaml",
        "046-k8s-examples-mysql-pod.yaml",
        "047-k8s-examples-tf-serving.yaml",
        "048-k8s-examples-nginx-https.yaml",
        "050-k8s-examples-cockroachdb.yaml",
        "051-k8s-website-cronjob-hello.yaml",
        "052-k8s-website-job-pi.yaml",
        "055-gke-anthropic-dispatcher.yaml",
    ] {
        let path = corpus_dir("real-world").join(name);
        let results = evaluate_file(&path);
        assert!(
            results.iter().any(|(_, d)| d.verdict != Verdict::Skipped),
            "{name}: nothing was evaluated"
        );
        for (doc, d) in results {
            assert_ne!(
                d.verdict,
                Verdict::Deny,
                "{name}#{}: denied: {:?}",
                doc.index,
                d.violations
            );
            assert!(
                d.governed_by.is_empty(),
                "{name}#{}: governed: {:?}",
                doc.index,
                d.findings
            );
        }
    }
}

#[test]
fn helm_values_files_are_skipped() {
    let values: Vec<PathBuf> = files("real-world")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("helm-values"))
        })
        .collect();
    assert!(
        values.len() >= 8,
        "expected the Helm values files, found {}",
        values.len()
    );
    for path in values {
        for (doc, d) in evaluate_file(&path) {
            assert_eq!(
                d.verdict,
                Verdict::Skipped,
                "{}#{}",
                path.display(),
                doc.index
            );
        }
    }
}

/// Known outcomes on the AI manifests, so that a change in detection shows up here.
#[test]
fn ai_manifests_get_the_expected_verdicts() {
    let expect = |name: &str, kind: &str, verdict: Verdict| {
        let results = evaluate_file(&corpus_dir("real-world").join(name));
        let (_, d) = results
            .iter()
            .find(|(doc, _)| doc.value.get("kind").and_then(Value::as_str) == Some(kind))
            .unwrap_or_else(|| panic!("{name} has no {kind}"));
        assert_eq!(d.verdict, verdict, "{name} {kind}: {d:#?}");
    };
    // LiteLLM configured for Azure OpenAI in env, but its model list is read from
    // `--config /app/proxy_config.yaml`, a ConfigMap this file does not hold: what config.yaml
    // routes where is unresolved offline (issue 10; tests/fixtures/adapters/expected.tsv).
    expect(
        "013-litellm-kub-deployment-azure.yaml",
        "Deployment",
        Verdict::Deny,
    );
    // Open WebUI's official image pointed at an in-cluster vLLM service through its own
    // OPENAI_API_BASE_URLS, with an OPENAI_API_KEY: Open WebUI's own HTTP client sends chat
    // traffic to its connections (config.py:347-353), and its code does not use an OpenAI SDK
    // that would take the key to api.openai.com (detect/apps.rs). An in-cluster service whose
    // upstream is not visible: a warning. (The same env in an image of another name is
    // ambiguous and denied, engine/tests/open_webui.rs.)
    expect(
        "026-ai-on-eks-openwebui-vllm.yaml",
        "Deployment",
        Verdict::Warn,
    );
    // k8sgpt serve with the openai backend and no base URL goes to api.openai.com.
    expect(
        "059-k8sgpt-serve-deployment.yaml",
        "Deployment",
        Verdict::Deny,
    );
    // The AKS sample leaves every AI variable empty: nothing configured, nothing governed.
    expect(
        "001-aks-store-ai-service.yaml",
        "Deployment",
        Verdict::Allow,
    );
}

#[test]
fn configmaps_in_the_same_file_resolve_references() {
    // 015 reads AZURE_OPENAI_BASE from a ConfigMap that lives in 016: alone it is unresolved.
    let alone =
        evaluate_file(&corpus_dir("real-world").join("015-aks-openai-magic8ball-deployment.yaml"));
    let (_, d) = alone
        .iter()
        .find(|(doc, _)| doc.value["kind"] == "Deployment")
        .expect("deployment");
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.findings
            .iter()
            .any(|f| f.hosting == hostguard::endpoint::Hosting::Unresolved)
    );

    let mut text = std::fs::read_to_string(
        corpus_dir("real-world").join("015-aks-openai-magic8ball-deployment.yaml"),
    )
    .unwrap();
    text.push_str("\n---\n");
    text.push_str(
        &std::fs::read_to_string(
            corpus_dir("real-world").join("016-aks-openai-magic8ball-configmap.yaml"),
        )
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let joined = dir.path().join("joined.yaml");
    std::fs::write(&joined, text).unwrap();
    let results = evaluate_file(&joined);
    let (_, d) = results
        .iter()
        .find(|(doc, _)| doc.value["kind"] == "Deployment")
        .expect("deployment");
    assert_ne!(d.verdict, Verdict::Deny, "{d:#?}");
    assert!(
        d.findings
            .iter()
            .any(|f| f.endpoint == "https://myopenai.openai.azure.com/")
    );
}

#[test]
fn every_admission_review_gets_a_valid_response_with_its_uid() {
    let all = files("admission");
    assert_eq!(all.len(), 8);
    for path in all {
        let body = std::fs::read(&path).unwrap();
        let request: Value = serde_json::from_slice(&body).unwrap();
        let uid = request
            .pointer("/request/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        for webhook in [Webhook::Validate, Webhook::Mutate] {
            let answer = admission::answer(
                &body,
                webhook,
                &PolicySet::builtin(),
                &Snapshot::offline(ClusterProvider::Azure),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let out = serde_json::to_value(&answer.review).unwrap();
            assert_eq!(
                out["apiVersion"],
                "admission.k8s.io/v1",
                "{}",
                path.display()
            );
            assert_eq!(out["kind"], "AdmissionReview");
            assert_eq!(out["response"]["uid"], uid, "{}", path.display());
            assert!(out["response"]["allowed"].is_boolean());
            if out["response"]["allowed"] == false {
                let message = out["response"]["status"]["message"].as_str().unwrap_or("");
                assert!(
                    !message.is_empty(),
                    "{}: refusal without a message",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn non_ai_admission_reviews_are_allowed() {
    for name in [
        "001-kubewarden-deployment-create.json",
        "002-kubewarden-pod-privileged-create.json",
        "006-kubewarden-image-cve-deployment.json",
    ] {
        let body = std::fs::read(corpus_dir("admission").join(name)).unwrap();
        let answer = admission::answer(
            &body,
            Webhook::Validate,
            &PolicySet::builtin(),
            &Snapshot::offline(ClusterProvider::Azure),
        )
        .unwrap();
        assert!(
            answer.review.response.allowed,
            "{name}: {:?}",
            answer.review.response.status
        );
    }
}
