//! The CEL that `hostguard vap` generates, run by a real CEL implementation (the `cel` crate),
//! against the webhook's engine on the same objects: the repository's fixtures and examples, and
//! variations of the plain cases. Wherever a generated ValidatingAdmissionPolicy denies, the
//! webhook denies too; it never denies what the webhook allows. A CEL error counts as no
//! decision (the policies are `failurePolicy: Ignore`). The variations pin down what the VAP
//! must decide (the plain cases) and what it must leave to the webhook (anything hostguard's
//! other signals could change).

use std::path::{Path, PathBuf};

use hostguard::api::{ClusterProvider, HostingPolicy};
use hostguard::manifest::parse_str;
use hostguard::policy::{self, Operation, PolicySet, Request};
use hostguard::snapshot::{DeclaredWorkload, Snapshot};
use serde_json::{Value, json};

/// The default policy, told to trust no AIWorkload exemption: its binding denies.
fn enforcing_policy() -> HostingPolicy {
    let mut p = policy::default_policy();
    p.spec.trust =
        Some(serde_json::from_value(json!({"aiWorkloads": {"allowExemptions": false}})).unwrap());
    p
}

/// The validation expressions of the generated policy.
fn validations(p: &HostingPolicy) -> Vec<cel::Program> {
    let t = hostguard::vap::translate(std::slice::from_ref(p), &[]);
    let vap = t
        .objects
        .iter()
        .find(|o| o["kind"] == "ValidatingAdmissionPolicy")
        .expect("a ValidatingAdmissionPolicy");
    vap["spec"]["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let expr = v["expression"].as_str().unwrap();
            cel::Program::compile(expr).unwrap_or_else(|e| panic!("{expr}: {e:?}"))
        })
        .collect()
}

/// Whether the VAP denies `object` (true), admits it (false); errors decide nothing.
fn vap_denies(programs: &[cel::Program], object: &Value) -> bool {
    let mut context = cel::Context::default();
    context
        .add_variable("object", cel::to_value(object).unwrap())
        .unwrap();
    programs
        .iter()
        .any(|p| matches!(p.execute(&context), Ok(cel::Value::Bool(false))))
}

fn webhook_denies(policies: &PolicySet, snapshot: &Snapshot, object: &Value) -> bool {
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    !policy::evaluate(
        &Request {
            operation: Operation::Create,
            object: Some(object.into()),
            old_object: None,
            namespace: Some(namespace),
        },
        policies,
        snapshot,
    )
    .allowed()
}

const KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(path);
        }
    }
}

/// Every workload object of the repository's fixtures and examples.
fn fixture_objects() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    files(&root.join("tests/fixtures"), &mut paths);
    files(&root.join("examples"), &mut paths);
    let mut out = Vec::new();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let name = path.strip_prefix(root).unwrap().display().to_string();
        let Ok(docs) = parse_str(&name, &text) else {
            continue;
        };
        for doc in docs {
            let mut values = vec![doc.value.clone()];
            // AdmissionReviews carry their object.
            if doc.value["kind"] == "AdmissionReview" {
                values = vec![doc.value["request"]["object"].clone()];
            }
            for v in values {
                if v["kind"].as_str().is_some_and(|k| KINDS.contains(&k)) {
                    out.push((format!("{name}#{}", doc.index), v));
                }
            }
        }
    }
    out
}

fn container(env: Value) -> Value {
    json!({"name": "app", "image": "example/app", "env": env})
}

fn deployment(containers: Value, extra_spec: Value) -> Value {
    let mut spec = json!({"containers": containers});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(e.clone());
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {"selector": {"matchLabels": {"app": "chat"}},
                 "template": {"metadata": {"labels": {"app": "chat"}}, "spec": spec}}
    })
}

fn key() -> Value {
    json!({"name": "OPENAI_API_KEY", "value": "sk-test"})
}

fn base(url: &str) -> Value {
    json!({"name": "OPENAI_BASE_URL", "value": url})
}

/// (name, object, whether the VAP must decide it: deny).
fn variations() -> Vec<(&'static str, Value, bool)> {
    let secret_key = json!({"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "openai", "key": "key"}}});
    let optional_key = json!({"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "openai", "key": "key", "optional": true}}});
    let direct = "https://api.openai.com/v1";
    let azure = "https://contoso.openai.azure.com/openai/v1";
    let mut with_init = deployment(json!([container(json!([key()]))]), json!({}));
    with_init["spec"]["template"]["spec"]["initContainers"] =
        json!([container(json!([key(), base(direct)]))]);
    with_init["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "web", "image": "nginx"}]);
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "team-a"},
        "spec": {"containers": [container(json!([key()]))]}});
    let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "c", "namespace": "team-a"},
        "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [container(json!([secret_key.clone(), base(direct)]))]}}}}}});
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "j", "namespace": "team-a"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [container(json!([key()]))]}}}});
    let mut with_command = container(json!([key(), base(direct)]));
    with_command["command"] = json!(["python", "app.py"]);
    let mut with_env_from = container(json!([key()]));
    with_env_from["envFrom"] = json!([{"configMapRef": {"name": "cfg"}}]);
    vec![
        (
            "a key and api.openai.com",
            deployment(json!([container(json!([key(), base(direct)]))]), json!({})),
            true,
        ),
        (
            "a key and api.openai.com without /v1",
            deployment(
                json!([container(json!([key(), base("https://api.openai.com")]))]),
                json!({}),
            ),
            true,
        ),
        (
            "a key and no base URL",
            deployment(json!([container(json!([key()]))]), json!({})),
            true,
        ),
        (
            "a Secret key and no base URL",
            deployment(json!([container(json!([secret_key.clone()]))]), json!({})),
            true,
        ),
        ("an init container calling api.openai.com", with_init, true),
        ("a bare Pod with a key only", pod, true),
        ("a CronJob on api.openai.com", cronjob, true),
        ("a Job with a key only", job, true),
        (
            "Azure OpenAI",
            deployment(json!([container(json!([key(), base(azure)]))]), json!({})),
            false,
        ),
        (
            "an optional Secret key",
            deployment(json!([container(json!([optional_key]))]), json!({})),
            false,
        ),
        (
            "a base URL built with $(VAR)",
            deployment(
                json!([container(json!([key(), base("$(HOST)/v1")]))]),
                json!({}),
            ),
            false,
        ),
        (
            "two base URLs",
            deployment(
                json!([container(json!([key(), base(direct), base(azure)]))]),
                json!({}),
            ),
            false,
        ),
        (
            "another variable beside them",
            deployment(
                json!([container(
                    json!([key(), base(direct), {"name": "HTTPS_PROXY", "value": "http://proxy:3128"}])
                )]),
                json!({}),
            ),
            false,
        ),
        (
            "an Azure key beside the OpenAI key",
            deployment(
                json!([container(
                    json!([key(), {"name": "AZURE_OPENAI_API_KEY", "value": "k"}])
                )]),
                json!({}),
            ),
            false,
        ),
        (
            "a command",
            deployment(json!([with_command]), json!({})),
            false,
        ),
        (
            "envFrom",
            deployment(json!([with_env_from]), json!({})),
            false,
        ),
        (
            "hostAliases",
            deployment(
                json!([container(json!([key(), base(direct)]))]),
                json!({"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["api.openai.com"]}]}),
            ),
            false,
        ),
        // A literal base URL on any public host the policy does not allow is decided, however
        // far it is from api.openai.com; anything the webhook might read otherwise is not.
        (
            "a gateway outside the allowed hosts",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://llm-proxy.example.com/v1")
                ]))]),
                json!({}),
            ),
            true,
        ),
        (
            "another cloud's OpenAI-compatible API",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://generativelanguage.googleapis.com/v1beta/openai/")
                ]))]),
                json!({}),
            ),
            true,
        ),
        (
            "a look-alike of an allowed suffix",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://contoso.openai.azure.com.evil.io/openai/v1")
                ]))]),
                json!({}),
            ),
            true,
        ),
        (
            "the allowed suffix itself, without a resource name",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://openai.azure.com/openai/v1")
                ]))]),
                json!({}),
            ),
            true,
        ),
        (
            "a deeper name under an allowed suffix",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://eu.contoso.openai.azure.com/openai/v1")
                ]))]),
                json!({}),
            ),
            false,
        ),
        (
            "a Service name (judged by endpoints.inCluster)",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://gateway.ai.svc.cluster.local/v1")
                ]))]),
                json!({}),
            ),
            false,
        ),
        (
            "a Service name relative to the cluster domain",
            deployment(
                json!([container(json!([key(), base("https://gateway.ai.svc/v1")]))]),
                json!({}),
            ),
            false,
        ),
        (
            "a single-label host",
            deployment(
                json!([container(json!([key(), base("https://gateway/v1")]))]),
                json!({}),
            ),
            false,
        ),
        (
            "an upper-case host (left to the webhook)",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://LLM-Proxy.example.com/v1")
                ]))]),
                json!({}),
            ),
            false,
        ),
        (
            "an explicit port (left to the webhook)",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://llm-proxy.example.com:8443/v1")
                ]))]),
                json!({}),
            ),
            false,
        ),
        (
            "userinfo (left to the webhook)",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://contoso.openai.azure.com@evil.io/v1")
                ]))]),
                json!({}),
            ),
            false,
        ),
        (
            "an IP address (left to the webhook)",
            deployment(
                json!([container(json!([key(), base("https://10.0.0.12/v1")]))]),
                json!({}),
            ),
            false,
        ),
        (
            "plain http (left to the webhook)",
            deployment(
                json!([container(json!([
                    key(),
                    base("http://llm-proxy.example.com/v1")
                ]))]),
                json!({}),
            ),
            false,
        ),
        (
            "a trailing dot (left to the webhook)",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://llm-proxy.example.com./v1")
                ]))]),
                json!({}),
            ),
            false,
        ),
        (
            "a query string (left to the webhook)",
            deployment(
                json!([container(json!([
                    key(),
                    base("https://contoso.openai.azure.com/openai/v1?x=1")
                ]))]),
                json!({}),
            ),
            false,
        ),
        (
            "no OpenAI key",
            deployment(json!([container(json!([base(direct)]))]), json!({})),
            false,
        ),
        (
            "no env",
            deployment(json!([{"name": "web", "image": "nginx"}]), json!({})),
            false,
        ),
    ]
}

#[test]
fn every_generated_expression_compiles_and_the_plain_cases_are_decided() {
    let p = enforcing_policy();
    let programs = validations(&p);
    assert_eq!(programs.len(), 6, "two cases for three pod-spec shapes");
    let policies = PolicySet::compile_or_default(std::slice::from_ref(&p)).unwrap();
    let snapshot = Snapshot::offline(ClusterProvider::Azure);
    for (name, object, denies) in variations() {
        let vap = vap_denies(&programs, &object);
        assert_eq!(
            vap, denies,
            "{name}: the VAP decides {vap}, expected {denies}"
        );
        if vap {
            assert!(
                webhook_denies(&policies, &snapshot, &object),
                "{name}: the VAP denies what the webhook allows"
            );
        }
    }
}

#[test]
fn the_vap_never_denies_a_fixture_the_webhook_allows() {
    let p = enforcing_policy();
    let programs = validations(&p);
    let policies = PolicySet::compile_or_default(std::slice::from_ref(&p)).unwrap();
    let objects = fixture_objects();
    assert!(objects.len() > 20, "{} fixture workloads", objects.len());
    let mut decided = 0;
    for provider in [ClusterProvider::Azure, ClusterProvider::Unknown] {
        let snapshot = Snapshot::offline(provider);
        for (name, object) in &objects {
            if vap_denies(&programs, object) {
                decided += 1;
                assert!(
                    webhook_denies(&policies, &snapshot, object),
                    "{name}: the VAP denies what the webhook allows ({provider:?})"
                );
            }
        }
    }
    assert!(decided > 0, "the VAP decides none of the fixtures");
}

#[test]
fn an_untrusted_aiworkload_does_not_lift_what_the_vap_denies() {
    // The binding denies only for policies that trust no exemption: an AIWorkload declaring the
    // pods stateful still leaves the webhook denying them.
    let p = enforcing_policy();
    let policies = PolicySet::compile_or_default(std::slice::from_ref(&p)).unwrap();
    let mut snapshot = Snapshot::offline(ClusterProvider::Azure);
    let aiw = serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {"selector": {"matchLabels": {"app": "chat"}}, "provider": "openai", "apiClass": "stateful"}
    }))
    .unwrap();
    snapshot.insert_declared(DeclaredWorkload::from_resource(&aiw).unwrap());
    let object = deployment(json!([container(json!([key()]))]), json!({}));
    assert!(vap_denies(&validations(&p), &object));
    assert!(webhook_denies(&policies, &snapshot, &object));

    // With the default trust the same AIWorkload lifts the policy: that binding only warns.
    let default = policy::default_policy();
    let lenient = PolicySet::compile_or_default(std::slice::from_ref(&default)).unwrap();
    assert!(!webhook_denies(&lenient, &snapshot, &object));
    let t = hostguard::vap::translate(&[default], &[]);
    let binding = t
        .objects
        .iter()
        .find(|o| o["kind"] == "ValidatingAdmissionPolicyBinding")
        .unwrap();
    assert_eq!(
        binding["spec"]["validationActions"],
        json!(["Warn", "Audit"])
    );
}

#[test]
fn the_binding_leaves_out_the_namespaces_the_webhook_does_not_judge() {
    let mut p = enforcing_policy();
    p.spec.excluded_namespaces = vec!["legacy".into()];
    p.spec.namespace_selector =
        Some(serde_json::from_value(json!({"matchLabels": {"env": "prod"}})).unwrap());
    let t = hostguard::vap::translate(&[p], &["hostguard-system".to_string()]);
    let binding = t
        .objects
        .iter()
        .find(|o| o["kind"] == "ValidatingAdmissionPolicyBinding")
        .unwrap();
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(
        binding["spec"]["matchResources"]["namespaceSelector"],
        json!({
            "matchLabels": {"env": "prod"},
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                  "values": ["kube-system", "legacy", "hostguard-system"]}]
        })
    );
}

#[test]
fn warn_and_audit_policies_and_other_providers_get_no_vap() {
    let mut warn = enforcing_policy();
    warn.spec.action = hostguard::api::Action::Warn;
    let t = hostguard::vap::translate(&[warn], &[]);
    assert!(t.objects.is_empty());
    assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
}

#[test]
fn the_command_prints_the_policy_and_its_binding_as_yaml() {
    let out = assert_cmd::Command::cargo_bin("hostguard")
        .unwrap()
        .args(["vap", "--exclude-namespace", "hostguard-system"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    // The built-in default lets AIWorkloads exempt: said on stderr, and the binding warns.
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("allowExemptions: false"), "{stderr}");
    assert_eq!(
        docs[1]["spec"]["validationActions"],
        json!(["Warn", "Audit"])
    );
}

/// Base URLs around the hosts a policy allows: each allowed host (a wildcard filled with one and
/// with two labels), the bare suffix, look-alikes that put the allowed name in front of or inside
/// another domain, and hosts that have nothing to do with it.
fn urls_around(allowed: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = vec![
        "api.openai.com".into(),
        "llm.example.com".into(),
        "bedrock-runtime.us-east-1.amazonaws.com".into(),
        "gateway.ai.svc".into(),
        "gateway.ai.svc.cluster.local".into(),
        "gateway".into(),
        "x1.example.io".into(),
    ];
    for pattern in allowed {
        let suffix = pattern.strip_prefix("*.").unwrap_or(pattern);
        hosts.push(suffix.to_string());
        hosts.push(format!("contoso.{suffix}"));
        hosts.push(format!("eu.contoso.{suffix}"));
        hosts.push(format!("contoso-{suffix}"));
        hosts.push(format!("contoso.{suffix}.evil.io"));
        hosts.push(format!("{suffix}.evil.io"));
    }
    let mut urls = Vec::new();
    for host in hosts {
        for path in ["", "/", "/v1", "/openai/v1/"] {
            urls.push(format!("https://{host}{path}"));
        }
        urls.push(format!("http://{host}/v1"));
        urls.push(format!("https://{host}:8443/v1"));
    }
    urls
}

/// For every example policy with an API-server counterpart (told to trust no exemption), over
/// the base URLs around its allowed hosts: the VAP never denies what the webhook admits, and it
/// does decide every plain `https://` URL the webhook classifies as outside the cluster and not
/// allowed (it leaves ports, plain http and Service names to the webhook).
#[test]
fn over_each_example_policy_the_vap_decides_the_plain_urls_the_webhook_denies() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let snapshot = Snapshot::offline(ClusterProvider::Azure);
    let mut translated = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut p: HostingPolicy = serde_saphyr::from_str(&text).unwrap();
        p.spec.trust = Some(
            serde_json::from_value(json!({"aiWorkloads": {"allowExemptions": false}})).unwrap(),
        );
        let t = hostguard::vap::translate(std::slice::from_ref(&p), &[]);
        if t.objects.is_empty() {
            continue;
        }
        translated += 1;
        let programs = validations(&p);
        let policies = PolicySet::compile_or_default(std::slice::from_ref(&p)).unwrap();
        let compiled = hostguard::policy::CompiledPolicy::compile(&p).unwrap();
        let allowed: Vec<String> = p.spec.endpoints.allowed_hosts.clone();
        let mut decided = 0;
        for url in urls_around(&allowed) {
            let object = deployment(json!([container(json!([key(), base(&url)]))]), json!({}));
            let vap = vap_denies(&programs, &object);
            let webhook = webhook_denies(&policies, &snapshot, &object);
            let name = path.file_name().unwrap().to_string_lossy();
            assert!(
                !vap || webhook,
                "{name}: {url}: the VAP denies what the webhook allows"
            );
            let class = hostguard::endpoint::classify(&url, &compiled.endpoint_rules());
            let plain = url.starts_with("https://") && !url[8..].contains(':');
            let in_cluster = class.hosting == hostguard::endpoint::Hosting::InCluster;
            if plain && !in_cluster && class.hosting != hostguard::endpoint::Hosting::Azure {
                assert!(
                    vap,
                    "{name}: {url}: a plain URL the webhook denies is left undecided"
                );
                decided += 1;
            }
        }
        assert!(decided > 10, "{}: decided only {decided}", path.display());
    }
    assert!(
        translated >= 2,
        "only {translated} example policies have a VAP"
    );
}
