//! Benchmarks of the admission hot path: the pure engine, the full AdmissionReview round trip, and
//! endpoint classification.
//!
//! The fixture `benches/fixtures/deployment-review.json` (3,571 bytes, compact JSON as the API
//! server sends it) is a CREATE of an apps/v1 Deployment with an init container and two
//! containers, 16 environment variables (plain values, configMapKeyRef, secretKeyRef, fieldRef and
//! an `AZURE_OPENAI_ENDPOINT`), resources, probes, labels and annotations. It is governed by the
//! default policy and allowed.
//!
//! Two worlds: the built-in default policy on an empty Azure snapshot, and a busy cluster with 100
//! HostingPolicies (25 for openai) and 1,000 AIWorkloads over 50 namespaces, 20 of them in the
//! workload's namespace with selectors that do not match it.
//!
//! `cargo bench --bench engine` measures; `cargo test --all-targets` runs each benchmark once.
//! It allocates with mimalloc, as the `hostguard` binary does (see `src/main.rs`).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hostguard_engine::admission::{self, Webhook};
use hostguard_engine::api::{AIWorkload, ClusterProvider, HostingPolicy};
use hostguard_engine::endpoint::{EndpointRules, HostPattern, Hosting, classify};
use hostguard_engine::policy::{
    AZURE_OPENAI_HOSTS, DEFAULT_POLICY_NAME, Decision, Operation, PolicySet, Request, Verdict,
    default_policy, evaluate,
};
use hostguard_engine::snapshot::{DeclaredWorkload, Snapshot};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FIXTURE: &[u8] = include_bytes!("../../benches/fixtures/deployment-review.json");
const NAMESPACE: &str = "team-a";
const NAMESPACES: usize = 50;
const AIWORKLOADS_PER_NAMESPACE: usize = 20;
const POLICIES: usize = 100;

/// The policy world and cluster state one benchmark runs against.
struct World {
    policies: PolicySet,
    snapshot: Snapshot,
}

fn default_world() -> World {
    World {
        policies: PolicySet::builtin(),
        snapshot: Snapshot::offline(ClusterProvider::Azure),
    }
}

/// Policy `i` of the busy world. Every one governs openai (hostguard refuses providers it does
/// not know, so a policy for another provider cannot exist), and allows the Azure OpenAI hosts.
/// Namespace selectors match the workload's namespace, do not match it, or
/// select all.
fn policy(i: usize) -> HostingPolicy {
    if i == 0 {
        return default_policy();
    }
    let openai = i.is_multiple_of(4);
    let provider = "openai";
    let classes = match i % 3 {
        0 => json!(["stateless"]),
        1 => json!(["stateful"]),
        _ => json!(["stateless", "stateful"]),
    };
    let action = match i % 10 {
        3 | 8 => "Warn",
        6 => "Audit",
        _ => "Deny",
    };
    let selector = match i % 5 {
        0 => Value::Null,
        1 | 2 => json!({"matchLabels": {"team": "conversational-ai"}}),
        3 => json!({"matchLabels": {"team": format!("team-{i}")}}),
        _ => json!({"matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "hostguard.dev/exempt", "operator": "DoesNotExist"}
        ]}),
    };
    let mut hosts = vec![
        json!(format!("gw-{i}.contoso.com")),
        json!(format!("*.region{i}.models.example.net")),
    ];
    // Every policy allows the Azure OpenAI hosts besides its own, so that the benchmark's Azure
    // workload passes all of them; every fourth lists them first.
    if openai {
        hosts.splice(0..0, AZURE_OPENAI_HOSTS.iter().map(|h| json!(h)));
    } else {
        hosts.extend(AZURE_OPENAI_HOSTS.iter().map(|h| json!(h)));
    }
    let placement = if i.is_multiple_of(2) {
        json!({
            "clusterProviders": ["azure"],
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.azure.com/cluster", "operator": "Exists"}]}
            ]}}
        })
    } else {
        Value::Null
    };
    let mut spec = json!({
        "provider": provider,
        "apiClasses": classes,
        "action": action,
        "excludedNamespaces": ["kube-system", format!("sandbox-{i}")],
        "endpoints": {"allowedHosts": hosts, "requireHttps": true, "unresolved": "Deny", "inCluster": "Warn"},
    });
    if !selector.is_null() {
        spec["namespaceSelector"] = selector;
    }
    if !placement.is_null() {
        spec["placement"] = placement;
    }
    serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1",
        "kind": "HostingPolicy",
        "metadata": {"name": format!("policy-{i:03}")},
        "spec": spec,
    }))
    .expect("benchmark policy is a HostingPolicy")
}

fn namespace_name(n: usize) -> String {
    if n == 0 {
        NAMESPACE.to_string()
    } else {
        format!("team-{n:02}")
    }
}

/// AIWorkload `j` of namespace `n`; those in the workload's namespace never select its pods.
fn ai_workload(n: usize, j: usize) -> AIWorkload {
    let selector = match j % 3 {
        0 => json!({"matchLabels": {"app.kubernetes.io/name": format!("svc-{j}")}}),
        1 => json!({"matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": [format!("svc-{j}"), "batch"]}
        ]}),
        _ => {
            json!({"matchLabels": {"app.kubernetes.io/part-of": "assistant", "tier": format!("t{j}")}})
        }
    };
    let class = ["stateless", "stateful", "mixed"][j % 3];
    serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1",
        "kind": "AIWorkload",
        "metadata": {"name": format!("aiw-{j:02}"), "namespace": namespace_name(n)},
        "spec": {
            "selector": selector,
            "provider": "openai",
            "apiClass": class,
            "endpoint": format!("https://res-{n}-{j}.openai.azure.com/"),
        },
    }))
    .expect("benchmark AIWorkload is an AIWorkload")
}

fn busy_world() -> World {
    let policies: Vec<HostingPolicy> = (0..POLICIES).map(policy).collect();
    let policies = PolicySet::compile(&policies).expect("benchmark policies compile");
    let mut snapshot = Snapshot::offline(ClusterProvider::Azure);
    for n in 0..NAMESPACES {
        let name = namespace_name(n);
        let labels = BTreeMap::from([
            ("kubernetes.io/metadata.name".to_string(), name.clone()),
            (
                "team".to_string(),
                if n == 0 {
                    "conversational-ai".to_string()
                } else {
                    name.clone()
                },
            ),
            (
                "env".to_string(),
                if n.is_multiple_of(2) { "prod" } else { "dev" }.to_string(),
            ),
        ]);
        snapshot.insert_namespace_labels(name, labels);
        for j in 0..AIWORKLOADS_PER_NAMESPACE {
            let declared = DeclaredWorkload::from_resource(&ai_workload(n, j))
                .expect("benchmark AIWorkload compiles");
            snapshot.insert_declared(declared);
        }
    }
    let config_map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "chat-api-config", "namespace": NAMESPACE},
        "data": {"log-level": "info", "features": "streaming,tools"},
    }))
    .expect("benchmark ConfigMap");
    snapshot.insert_config_map(&config_map, NAMESPACE);
    snapshot.set_authoritative(true, true);
    World { policies, snapshot }
}

/// The Deployment inside the fixture's review.
fn fixture_object() -> Value {
    let review: Value = serde_json::from_slice(FIXTURE).expect("fixture is JSON");
    review
        .pointer("/request/object")
        .cloned()
        .expect("fixture has an object")
}

fn decide(object: &Value, world: &World) -> Decision {
    evaluate(
        &Request {
            operation: Operation::Create,
            object: Some(object.into()),
            old_object: None,
            namespace: Some(NAMESPACE),
        },
        &world.policies,
        &world.snapshot,
    )
}

/// Guards against benchmarking a shortcut: the fixture must really be evaluated and governed.
fn check_world(name: &str, object: &Value, world: &World, min_governing: usize) {
    let decision = decide(object, world);
    assert_ne!(decision.verdict, Verdict::Skipped, "{name}: {decision:?}");
    assert_ne!(decision.verdict, Verdict::Deny, "{name}: {decision:?}");
    assert!(
        decision
            .governed_by
            .iter()
            .any(|p| p == DEFAULT_POLICY_NAME),
        "{name}: {decision:?}"
    );
    assert!(
        decision.governed_by.len() >= min_governing,
        "{name}: governed by {:?}",
        decision.governed_by
    );
    let answer = admission::answer(FIXTURE, Webhook::Validate, &world.policies, &world.snapshot)
        .expect("fixture is JSON");
    assert!(answer.review.response.allowed, "{name}: {answer:?}");
}

fn engine(c: &mut Criterion) {
    let object = fixture_object();
    let worlds = [
        ("default_policy", default_world(), 1),
        ("100_policies_1000_aiworkloads", busy_world(), 10),
    ];
    for (name, world, min_governing) in &worlds {
        check_world(name, &object, world, *min_governing);
    }

    let mut group = c.benchmark_group("evaluate");
    for (name, world, _) in &worlds {
        group.bench_function(*name, |b| {
            b.iter(|| decide(black_box(&object), black_box(world)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("answer_validate");
    for (name, world, _) in &worlds {
        group.bench_function(*name, |b| {
            b.iter(|| {
                admission::answer(
                    black_box(FIXTURE),
                    Webhook::Validate,
                    &world.policies,
                    &world.snapshot,
                )
            })
        });
    }
    group.finish();
}

fn endpoints(c: &mut Criterion) {
    let patterns: Vec<HostPattern> = AZURE_OPENAI_HOSTS
        .iter()
        .map(|p| HostPattern::parse(p).expect("default pattern"))
        .collect();
    let rules = EndpointRules {
        allowed_hosts: &patterns,
        require_https: true,
    };
    let cases = [
        (
            "clean_azure",
            "https://contoso-chat.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
            Hosting::Azure,
        ),
        // Refused at the character scan: WHATWG reads host x.openai.azure.com, httpx evil.com.
        (
            "trap_backslash_userinfo",
            "https://x.openai.azure.com\\@evil.com/openai/v1",
            Hosting::External,
        ),
        // Parses cleanly and goes through every host check before being refused.
        (
            "trap_suffix_lookalike",
            "https://x.openai.azure.com.evil.com/openai/v1",
            Hosting::External,
        ),
    ];
    let mut group = c.benchmark_group("classify");
    for (name, url, expected) in cases {
        assert_eq!(classify(url, &rules).hosting, expected, "{url}");
        group.bench_function(name, |b| b.iter(|| classify(black_box(url), &rules)));
    }
    group.finish();
}

/// A world of `policies` policies (as the busy world's, the default among them) and
/// `aiworkloads` AIWorkloads of other applications in the workload's own namespace.
fn scaled_world(policies: usize, aiworkloads: usize) -> World {
    let list: Vec<HostingPolicy> = (0..policies).map(policy).collect();
    let policies = PolicySet::compile(&list).expect("benchmark policies compile");
    let mut snapshot = Snapshot::offline(ClusterProvider::Azure);
    snapshot.insert_namespace_labels(
        NAMESPACE,
        BTreeMap::from([("team".to_string(), "conversational-ai".to_string())]),
    );
    for j in 0..aiworkloads {
        snapshot.insert_declared(other_app(j));
    }
    snapshot.set_authoritative(true, true);
    World { policies, snapshot }
}

/// AIWorkload `j` of the workload's namespace, for another application: selected by its app
/// name (in `matchLabels`, or in an `In` expression), the usual shape of a selector.
fn other_app(j: usize) -> DeclaredWorkload {
    let app = format!("svc-{j}");
    let selector = if j.is_multiple_of(2) {
        json!({"matchLabels": {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "assistant"}})
    } else {
        json!({"matchExpressions": [
            {"key": "app.kubernetes.io/name", "operator": "In", "values": [app, format!("{app}-canary")]}
        ]})
    };
    let aiw: AIWorkload = serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1",
        "kind": "AIWorkload",
        "metadata": {"name": format!("aiw-{j:05}"), "namespace": NAMESPACE},
        "spec": {"selector": selector, "provider": "openai", "apiClass": "stateful"},
    }))
    .expect("benchmark AIWorkload is an AIWorkload");
    DeclaredWorkload::from_resource(&aiw).expect("benchmark AIWorkload compiles")
}

/// The fixture's Deployment with `extra` more plain variables in its first container.
fn object_with_env(extra: usize) -> Value {
    let mut object = fixture_object();
    let env = object
        .pointer_mut("/spec/template/spec/containers/0/env")
        .and_then(Value::as_array_mut)
        .expect("the fixture's first container has env");
    for i in 0..extra {
        env.push(json!({"name": format!("APP_SETTING_{i}"), "value": format!("value-{i}")}));
    }
    object
}

/// How the decision grows: with the number of policies (linear at most), of AIWorkloads in the
/// namespace (constant: they are indexed by label), and of env entries (linear at most).
fn scaling(c: &mut Criterion) {
    let object = fixture_object();
    let mut group = c.benchmark_group("evaluate_by_policies");
    for n in [1, 10, 100, 1_000] {
        let world = scaled_world(n, 0);
        check_world("policies", &object, &world, 1);
        group.bench_function(n.to_string(), |b| {
            b.iter(|| decide(black_box(&object), black_box(&world)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("evaluate_by_aiworkloads");
    for n in [10, 100, 1_000, 10_000] {
        let world = scaled_world(1, n);
        check_world("aiworkloads", &object, &world, 1);
        group.bench_function(n.to_string(), |b| {
            b.iter(|| decide(black_box(&object), black_box(&world)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("evaluate_by_env_entries");
    let world = default_world();
    for n in [10, 100, 1_000, 8_000] {
        let object = object_with_env(n);
        check_world("env", &object, &world, 1);
        group.bench_function(n.to_string(), |b| {
            b.iter(|| decide(black_box(&object), black_box(&world)))
        });
    }
    group.finish();
}

/// Reading the review: hostguard's own envelope (`admission::parse`: the fields it reads, the
/// object as a JSON value, miscased keys collected in the same pass) against kube-core's
/// `AdmissionReview<DynamicObject>` turned into an `AdmissionRequest`, the types the module
/// documentation of `admission` compares with.
fn parsing(c: &mut Criterion) {
    use kube_core::DynamicObject;
    use kube_core::admission::{AdmissionRequest, AdmissionReview};
    let mut group = c.benchmark_group("parse_review");
    group.bench_function("hostguard", |b| {
        b.iter(|| admission::parse(black_box(FIXTURE)).expect("the fixture is JSON"))
    });
    group.bench_function("kube_core", |b| {
        b.iter(|| {
            let review: AdmissionReview<DynamicObject> =
                serde_json::from_slice(black_box(FIXTURE)).expect("the fixture is a review");
            let request: AdmissionRequest<DynamicObject> =
                review.try_into().expect("the fixture has a request");
            request
        })
    });
    group.finish();
}

criterion_group!(benches, engine, endpoints, scaling, parsing);
criterion_main!(benches);
