//! The AI tools' own resources in a live cluster, against the strict mock API server: discovery
//! finds which of their kinds are served (a kind that is not served is not asked for at all),
//! and the audit judges their objects with the same engine as the webhook, with the Envoy
//! Gateway objects their adapters follow listed first so that references are answered from
//! what exists. The objects are the adapters' fixtures (tests/fixtures/adapters/), whose
//! expected verdicts are written in each file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::cluster::{AUDITED, initial_list};
use common::mock_api::{Reply, Seen, routed};
use hostguard::cluster::audit;
use hostguard::cluster::discovery;
use hostguard::cluster::inventory::{BuildInput, Built, Inventory};
use serde_json::{Value, json};

/// The documents of an adapters fixture, moved into `namespace`.
fn fixture(file: &str, namespace: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/adapters")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    hostguard::manifest::parse_str(file, &text)
        .unwrap()
        .into_iter()
        .map(|d| {
            let mut v = d.value;
            v["metadata"]["namespace"] = json!(namespace);
            v
        })
        .collect()
}

/// A cluster serving K8sGPT, Envoy AI Gateway, Envoy Gateway and Gateway API (and apps, which
/// discovery must ignore), holding `objects`.
struct Cluster {
    /// Objects by collection path.
    collections: BTreeMap<String, Vec<Value>>,
    /// Collections whose list fails with 500.
    failing: Vec<String>,
}

const SERVED: &[(&str, &[&str], &[&str])] = &[
    (
        "core.k8sgpt.ai",
        &["v1alpha1"],
        &["k8sgpts", "k8sgpts/status"],
    ),
    (
        "aigateway.envoyproxy.io",
        &["v1beta1", "v1alpha1"],
        &["aiservicebackends", "aigatewayroutes"],
    ),
    (
        "gateway.envoyproxy.io",
        &["v1alpha1"],
        &["backends", "envoyproxies"],
    ),
    (
        "gateway.networking.k8s.io",
        &["v1"],
        &["backendtlspolicies", "gateways", "httproutes"],
    ),
    ("apps", &["v1"], &["deployments"]),
];

impl Cluster {
    fn new(objects: Vec<Value>) -> Cluster {
        let mut collections: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for o in objects {
            let api_version = o["apiVersion"].as_str().unwrap();
            let plural = match o["kind"].as_str().unwrap() {
                "K8sGPT" => "k8sgpts",
                "AIServiceBackend" => "aiservicebackends",
                "AIGatewayRoute" => "aigatewayroutes",
                "Backend" => "backends",
                "BackendTLSPolicy" => "backendtlspolicies",
                other => panic!("no collection for {other}"),
            };
            // The API server converts to the version asked for; these fixtures' fields are the
            // same in both AI Gateway versions, so only apiVersion changes.
            let (group, _) = api_version.split_once('/').unwrap();
            let version = SERVED.iter().find(|(g, ..)| *g == group).unwrap().1[0];
            let mut o = o.clone();
            o["apiVersion"] = json!(format!("{group}/{version}"));
            collections
                .entry(format!("/apis/{group}/{version}/{plural}"))
                .or_default()
                .push(o);
        }
        Cluster {
            collections,
            failing: Vec::new(),
        }
    }

    fn answer(&self, r: &Seen) -> Option<Reply> {
        if r.method != "GET" {
            return None;
        }
        if r.path == "/apis" {
            let groups: Vec<Value> = SERVED
                .iter()
                .map(|(g, versions, _)| {
                    let vs: Vec<Value> = versions
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
                })
                .collect();
            return Some(Reply::Json(
                200,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ));
        }
        for (g, versions, resources) in SERVED {
            for v in *versions {
                if r.path == format!("/apis/{g}/{v}") {
                    let list: Vec<Value> = resources
                        .iter()
                        .map(|name| json!({"name": name, "singularName": "", "namespaced": true, "kind": "X", "verbs": ["list"]}))
                        .collect();
                    return Some(Reply::Json(
                        200,
                        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{g}/{v}"), "resources": list}),
                    ));
                }
            }
        }
        // The related-object watches (after their initial list) hang, as a quiet watch does.
        if r.query_has("watch=true") && self.collections.contains_key(&r.path) {
            return Some(Reply::Hang);
        }
        let listed = r.query_has("limit=250") || r.query_has("limit=100");
        if AUDITED.contains(&r.path.as_str()) && listed {
            return Some(list(vec![]));
        }
        if self.failing.contains(&r.path) {
            return Some(Reply::status(500, "InternalError"));
        }
        self.collections
            .get(&r.path)
            .filter(|_| listed)
            .map(|items| list(items.clone()))
    }
}

fn list(items: Vec<Value>) -> Reply {
    Reply::Json(
        200,
        json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": items}),
    )
}

/// `related::run` (the webhook's watches of the related kinds) against a mock API server.
struct Related {
    stores: hostguard::cluster::related::RelatedStores,
    notify: std::sync::Arc<tokio::sync::Notify>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Related {
    /// Started, and waited for until its lookups are authoritative (discovery answered and
    /// every watch listed once); they are not before.
    async fn start(client: kube::Client) -> Related {
        use hostguard::cluster::related::{self, RelatedStores};
        let stores = RelatedStores::default();
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let shared = hostguard::cluster::watch::Shared {
            notify: std::sync::Arc::clone(&notify),
            metrics: hostguard::metrics::Metrics::new(),
            stop: stop_rx,
        };
        assert!(
            !stores.ready(),
            "nothing is authoritative before discovery answers"
        );
        let task = tokio::spawn(related::run(client, stores.clone(), shared));
        while !stores.ready() {
            notify.notified().await;
        }
        Related {
            stores,
            notify,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

/// The engine state of the default policy with the related objects of `stores`.
fn built_with(stores: &hostguard::cluster::related::RelatedStores) -> Built {
    let (mut inventory, mut writers) = Inventory::new();
    initial_list(
        &mut writers.policies,
        vec![hostguard::policy::default_policy()],
    );
    inventory.related = stores.clone();
    inventory.build(&BuildInput::default())
}

/// The engine state of a cluster whose one HostingPolicy is the default policy.
fn enforced() -> Built {
    let (inventory, mut writers) = Inventory::new();
    initial_list(
        &mut writers.policies,
        vec![hostguard::policy::default_policy()],
    );
    inventory.build(&BuildInput::default())
}

fn objects() -> Vec<Value> {
    let mut objects = fixture("k8sgpt/own-openai-no-baseurl.yaml", "k8sgpt");
    objects.extend(fixture("envoy-ai-gateway/own-openai-backend.yaml", "ai"));
    objects.extend(fixture(
        "envoy-ai-gateway/own-azure-backend.yaml",
        "ai-azure",
    ));
    objects
}

/// One whole audit of the built-in kinds and `served`, as the leader runs it (no reports).
async fn audit_with(
    client: &kube::Client,
    built: &Built,
    served: &discovery::Served,
) -> audit::Tally {
    audit::run_served(
        client,
        None,
        &built.policies,
        &built.snapshot,
        &|| true,
        false,
        served,
    )
    .await
    .unwrap()
}

/// (kind, namespace/name) of each object the default policy found violating.
fn violating(t: &audit::Tally) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = t
        .policies
        .values()
        .flat_map(|p| &p.first)
        .map(|v| {
            (
                v.kind.clone(),
                format!("{}/{}", v.namespace.as_deref().unwrap_or(""), v.name),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn discovery_finds_the_served_kinds_at_a_version_hostguard_reads() {
    let cluster = Cluster::new(vec![]);
    let (client, api) = routed(move |r| cluster.answer(r));
    let served = discovery::discover(&client).await.unwrap();
    let judged: Vec<&str> = served
        .judged
        .iter()
        .map(|r| r.api_version.as_str())
        .collect();
    let kinds: Vec<&str> = served.judged.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["K8sGPT", "AIServiceBackend", "AIGatewayRoute"]);
    assert_eq!(
        judged,
        [
            "core.k8sgpt.ai/v1alpha1",
            "aigateway.envoyproxy.io/v1beta1",
            "aigateway.envoyproxy.io/v1beta1"
        ]
    );
    let related: Vec<(&str, &str)> = served
        .related
        .iter()
        .map(|r| (r.api_version.as_str(), r.plural.as_str()))
        .collect();
    assert_eq!(
        related,
        [
            ("gateway.envoyproxy.io/v1alpha1", "backends"),
            ("gateway.networking.k8s.io/v1", "backendtlspolicies")
        ]
    );
    // Groups hostguard has no kind of (apps here, ray.io and the rest not being served) are not
    // asked for: one group list, then one request per served group version of interest.
    let paths: Vec<String> = api.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/apis",
            "/apis/aigateway.envoyproxy.io/v1alpha1",
            "/apis/aigateway.envoyproxy.io/v1beta1",
            "/apis/core.k8sgpt.ai/v1alpha1",
            "/apis/gateway.envoyproxy.io/v1alpha1",
            "/apis/gateway.networking.k8s.io/v1",
        ]
    );
    api.done().await;
}

#[tokio::test]
async fn the_audit_judges_the_ai_tools_resources_with_their_backends_looked_up() {
    let cluster = Cluster::new(objects());
    let (client, api) = routed(move |r| cluster.answer(r));
    let served = discovery::discover(&client).await.unwrap();
    let built = enforced();
    let t = audit_with(&client, &built, &served).await;
    // The K8sGPT, and the route and backend of each gateway fixture.
    assert_eq!(t.objects, 5);
    // As the fixtures expect: the K8sGPT without baseUrl and the OpenAI gateway are denied; the
    // Azure gateway, whose Backend and BackendTLSPolicy were listed, is allowed.
    assert_eq!(
        violating(&t),
        [
            ("AIGatewayRoute".to_string(), "ai/chat".to_string()),
            ("AIServiceBackend".to_string(), "ai/openai".to_string()),
            ("K8sGPT".to_string(), "k8sgpt/k8sgpt-openai".to_string()),
        ]
    );
    let message = &t.policies["openai-stateless-on-azure"]
        .first
        .iter()
        .find(|v| v.kind == "AIServiceBackend")
        .unwrap()
        .message;
    assert!(message.contains("api.openai.com"), "{message}");
    api.done().await;
}

#[tokio::test]
async fn a_backend_list_that_fails_leaves_references_unresolved_not_allowed() {
    let mut cluster = Cluster::new(objects());
    cluster
        .failing
        .push("/apis/gateway.envoyproxy.io/v1alpha1/backends".into());
    let (client, api) = routed(move |r| cluster.answer(r));
    let served = discovery::discover(&client).await.unwrap();
    let built = enforced();
    let t = audit_with(&client, &built, &served).await;
    // Without the Backends, the Azure gateway cannot be shown to be on Azure: fail closed.
    let names: Vec<String> = violating(&t).into_iter().map(|(_, n)| n).collect();
    assert!(names.contains(&"ai-azure/chat".to_string()), "{names:?}");
    api.done().await;
}

#[tokio::test]
async fn a_cluster_without_the_crds_is_audited_as_before() {
    // Discovery lists no group of interest: only the built-in kinds are listed.
    let (client, api) = routed(|r| {
        if r.path == "/apis" {
            return Some(Reply::Json(
                200,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                    {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}]}
                ]}),
            ));
        }
        (AUDITED.contains(&r.path.as_str()) && r.query_has("limit=250")).then(|| list(vec![]))
    });
    let served = discovery::discover(&client).await.unwrap();
    assert_eq!(served, discovery::Served::default());
    let built = enforced();
    let t = audit_with(&client, &built, &served).await;
    assert_eq!(t.objects, 0);
    let paths: Vec<String> = api.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths[0], "/apis");
    assert_eq!(&paths[1..], AUDITED);
    api.done().await;
}

/// The webhook's side: the related kinds the cluster serves are watched into the inventory,
/// and once each has listed, a build's snapshot answers an AIServiceBackend's reference from
/// them (an Azure Backend allows it; a Backend that does not exist is absent, not unknown).
#[tokio::test]
async fn the_webhook_snapshot_holds_the_watched_backends_once_they_have_listed() {
    use hostguard::policy::{Operation, Request};

    let cluster = Cluster::new(objects());
    let (client, api) = routed(move |r| cluster.answer(r));
    let related = Related::start(client).await;
    let stores = related.stores.clone();
    let built = built_with(&stores);
    let judge = |object: &Value| {
        hostguard::policy::evaluate(
            &Request {
                operation: Operation::Create,
                object: Some(object.into()),
                old_object: None,
                namespace: object["metadata"]["namespace"].as_str(),
            },
            &built.policies,
            &built.snapshot,
        )
    };
    let azure = fixture("envoy-ai-gateway/own-azure-backend.yaml", "ai-azure");
    let backend = azure
        .iter()
        .find(|o| o["kind"] == "AIServiceBackend")
        .unwrap();
    let decision = judge(backend);
    assert!(decision.allowed(), "{:?}", decision.violations);
    // The same AIServiceBackend naming a Backend nobody created: the watch is authoritative.
    let mut orphan = backend.clone();
    orphan["spec"]["backendRef"]["name"] = json!("not-there");
    let decision = judge(&orphan);
    assert!(!decision.allowed());
    let message = &decision.violations[0].message;
    assert!(message.contains("not-there"), "{message}");
    assert!(
        !message.contains("not in the input"),
        "looked up, not unknown: {message}"
    );

    related.stop().await;
    // Watched: Backends, BackendTLSPolicies and AIServiceBackends; not the routes or K8sGPTs.
    let watched: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.query_has("watch=true"))
        .map(|s| s.path.clone())
        .collect();
    let mut watched = watched;
    watched.sort();
    assert_eq!(
        watched,
        [
            "/apis/aigateway.envoyproxy.io/v1beta1/aiservicebackends",
            "/apis/gateway.envoyproxy.io/v1alpha1/backends",
            "/apis/gateway.networking.k8s.io/v1/backendtlspolicies",
        ]
    );
    api.done().await;
}

/// Envoy Gateway installed after hostguard started: until the next discovery its Backends are
/// not watched (an AIServiceBackend's reference is then not found: denied, never assumed), and
/// from it on they are, without a restart; uninstalled again, its kind and objects are forgotten.
#[tokio::test(start_paused = true)]
async fn a_kind_installed_after_start_up_is_watched_from_the_next_discovery() {
    use hostguard::cluster::related::{REDISCOVERY_INTERVAL, RelatedStores};
    use hostguard::policy::{Operation, Request};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const GROUP: &str = "gateway.envoyproxy.io";
    let installed = Arc::new(AtomicBool::new(false));
    let cluster = Cluster::new(objects());
    let (client, api) = routed({
        let installed = Arc::clone(&installed);
        move |r| {
            let answer = cluster.answer(r)?;
            if installed.load(Ordering::SeqCst) {
                return Some(answer);
            }
            // Not installed: not in the group list, and nothing under /apis/GROUP.
            if r.path.starts_with(&format!("/apis/{GROUP}/")) {
                return Some(Reply::not_found());
            }
            match answer {
                Reply::Json(code, mut body) if r.path == "/apis" => {
                    body["groups"]
                        .as_array_mut()
                        .unwrap()
                        .retain(|g| g["name"] != GROUP);
                    Some(Reply::Json(code, body))
                }
                other => Some(other),
            }
        }
    });
    let related = Related::start(client).await;
    let (stores, notify) = (related.stores.clone(), Arc::clone(&related.notify));

    let azure = fixture("envoy-ai-gateway/own-azure-backend.yaml", "ai-azure");
    let backend = azure
        .iter()
        .find(|o| o["kind"] == "AIServiceBackend")
        .unwrap()
        .clone();
    let judge = |stores: &RelatedStores| {
        let built = built_with(stores);
        hostguard::policy::evaluate(
            &Request {
                operation: Operation::Create,
                object: Some((&backend).into()),
                old_object: None,
                namespace: backend["metadata"]["namespace"].as_str(),
            },
            &built.policies,
            &built.snapshot,
        )
    };
    let backends_watched = || {
        api.seen().iter().any(|s| {
            s.query_has("watch=true") && s.path == format!("/apis/{GROUP}/v1alpha1/backends")
        })
    };
    assert!(!backends_watched());
    let before = judge(&stores);
    assert!(!before.allowed(), "the Backend kind is not served yet");
    assert!(
        before
            .violations
            .iter()
            .any(|v| v.message.contains("Backend")),
        "{:?}",
        before.violations
    );

    installed.store(true, Ordering::SeqCst);
    tokio::time::sleep(REDISCOVERY_INTERVAL).await;
    tokio::time::timeout(REDISCOVERY_INTERVAL, async {
        while !(backends_watched() && stores.ready()) {
            notify.notified().await;
        }
    })
    .await
    .expect("the Backends are watched after the next discovery");
    let after = judge(&stores);
    assert!(after.allowed(), "{:?}", after.violations);

    // Uninstalled: the next discovery forgets the kind and its objects.
    installed.store(false, Ordering::SeqCst);
    tokio::time::sleep(REDISCOVERY_INTERVAL).await;
    tokio::time::timeout(REDISCOVERY_INTERVAL, async {
        while judge(&stores).allowed() {
            notify.notified().await;
        }
    })
    .await
    .expect("the Backends are forgotten after the next discovery");
    related.stop().await;
    api.done().await;
}

/// The webhook's prefetch, as the cluster wires it, reduced to the related objects: GETs
/// through `related::fetch` against the mock API server.
struct RelatedOnly {
    client: kube::Client,
    stores: hostguard::cluster::related::RelatedStores,
}

impl hostguard::state::ConfigMapPrefetch for RelatedOnly {
    fn prefetch(
        &self,
        _namespace: String,
        _names: Vec<String>,
        _deadline: tokio::time::Instant,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        Box::pin(async {})
    }

    fn config_map_readers(
        &self,
        _namespace: String,
        _name: String,
        _deadline: tokio::time::Instant,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<Value>, String>> + Send + 'static>,
    > {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn related_objects(
        &self,
        keys: Vec<hostguard::snapshot::RelatedKey>,
        deadline: tokio::time::Instant,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Value>> + Send + 'static>> {
        let client = self.client.clone();
        let stores = self.stores.clone();
        Box::pin(async move {
            hostguard::cluster::related::fetch(&client, &stores, &keys, deadline).await
        })
    }
}

/// An AIGatewayRoute applied right after its AIServiceBackend and Backend (one `kubectl apply`
/// of the three): the watches have not delivered those yet, so the webhook GETs them (the
/// AIServiceBackend the route names, then the Backend that one names) and decides with them;
/// without them the reference would be not found and denied.
#[tokio::test]
async fn the_webhook_fetches_references_its_watches_have_not_delivered_yet() {
    use axum::body::Body;
    use std::sync::Arc;
    use tower::ServiceExt;

    let docs = fixture("envoy-ai-gateway/own-azure-backend.yaml", "ai-azure");
    let route = docs
        .iter()
        .find(|o| o["kind"] == "AIGatewayRoute")
        .unwrap()
        .clone();
    let just_created: Vec<Value> = docs
        .iter()
        .filter(|o| o["kind"] == "AIServiceBackend" || o["kind"] == "Backend")
        .cloned()
        .collect();
    // The watches list only the BackendTLSPolicy; the other two answer a GET.
    let mut cluster = Cluster::new(
        docs.iter()
            .filter(|o| o["kind"] == "BackendTLSPolicy")
            .cloned()
            .collect(),
    );
    for collection in [
        "/apis/aigateway.envoyproxy.io/v1beta1/aiservicebackends",
        "/apis/gateway.envoyproxy.io/v1alpha1/backends",
    ] {
        cluster.collections.entry(collection.into()).or_default();
    }
    let gets = [
        (
            "/apis/aigateway.envoyproxy.io/v1beta1/namespaces/ai-azure/aiservicebackends/azure",
            "AIServiceBackend",
        ),
        (
            "/apis/gateway.envoyproxy.io/v1alpha1/namespaces/ai-azure/backends/azure",
            "Backend",
        ),
    ];
    let (client, api) = routed(move |r| {
        if let Some((_, kind)) = gets.iter().find(|(p, _)| r.method == "GET" && r.path == *p) {
            let object = just_created.iter().find(|o| o["kind"] == *kind)?;
            return Some(Reply::Json(200, object.clone()));
        }
        cluster.answer(r)
    });
    let related = Related::start(client.clone()).await;
    let stores = related.stores.clone();
    let built = built_with(&stores);

    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "route-1",
            "kind": {"group": "aigateway.envoyproxy.io", "version": "v1beta1", "kind": "AIGatewayRoute"},
            "resource": {"group": "aigateway.envoyproxy.io", "version": "v1beta1", "resource": "aigatewayroutes"},
            "namespace": "ai-azure", "operation": "CREATE", "userInfo": {"username": "gitops"},
            "object": route
        }
    });
    let answer = |prefetch: Option<Arc<dyn hostguard::state::ConfigMapPrefetch>>| {
        let engine = hostguard::state::SharedState::new();
        engine.publish(built.policies.clone(), built.snapshot.clone());
        let state = hostguard::server::webhook::WebhookState {
            engine,
            metrics: hostguard::metrics::Metrics::new(),
            limits: hostguard::server::limits::Limits::new(Default::default()),
            prefetch,
        };
        let request = axum::http::Request::post("/validate?timeout=10s")
            .header("content-type", "application/json")
            .body(Body::from(review.to_string()))
            .unwrap();
        async move {
            let response = hostguard::server::webhook::router(state)
                .oneshot(request)
                .await
                .unwrap();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    // Without the fetch (offline, or a prefetch that finds nothing): not found, denied.
    let without = answer(None).await;
    assert_eq!(without["response"]["allowed"], false, "{without}");
    let with = answer(Some(Arc::new(RelatedOnly {
        client,
        stores: stores.clone(),
    })))
    .await;
    assert_eq!(with["response"]["allowed"], true, "{with}");

    related.stop().await;
    let fetched: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.path.contains("/namespaces/"))
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        fetched,
        [
            "/apis/aigateway.envoyproxy.io/v1beta1/namespaces/ai-azure/aiservicebackends/azure",
            "/apis/gateway.envoyproxy.io/v1alpha1/namespaces/ai-azure/backends/azure",
        ]
    );
    api.done().await;
}
