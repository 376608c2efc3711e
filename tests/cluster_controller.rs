//! The cluster controller against a mock API (kube's `tower_test` service): the Lease acquired,
//! renewed, taken over after expiry and released; status bodies for compliant and violating
//! workloads; Events once per violation; nothing written by a non-leader; a watch error followed
//! by recovery; the audit's paginated lists.
//!
//! Time is paused in every test: lease expiry and watch backoff advance the clock instead of
//! sleeping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostguard::api::{AIWorkload, HostingPolicy};
use hostguard::cluster::audit::{self, Tally};
use hostguard::cluster::config_maps::{self, ConfigMapCache, Fetcher};
use hostguard::cluster::inventory::{BuildInput, Built, Inventory, Writers};
use hostguard::cluster::lease::{Elector, Leadership, Timings};
use hostguard::cluster::status::{self, WriteError};
use hostguard::cluster::watch::{self as reflect, Shared};
use hostguard::metrics::{Metrics, ResourceLabel};
use hostguard::snapshot::{ConfigMapSource, Lookup};
use http::{Request, Response};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::client::Body;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

// ---------------------------------------------------------------- the mock API

/// One request the mock API received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

impl Seen {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
    fn query_has(&self, pair: &str) -> bool {
        self.query.split('&').any(|p| p == pair)
    }
}

enum Reply {
    Json(u16, Value),
    /// A watch response: JSON lines, then the end of the stream.
    Lines(Vec<Value>),
    /// Never answered (a watch that stays open).
    Hang,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves the mock API with `route` until the client is dropped; every request is logged.
fn mock_api(mut route: impl FnMut(&Seen) -> Reply + Send + 'static) -> (Client, Log) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let s = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            seen.lock().unwrap().push(s.clone());
            match route(&s) {
                Reply::Json(code, v) => send.send_response(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&v).unwrap()))
                        .unwrap(),
                ),
                Reply::Lines(lines) => {
                    let mut out = Vec::new();
                    for l in lines {
                        out.extend(serde_json::to_vec(&l).unwrap());
                        out.push(b'\n');
                    }
                    send.send_response(
                        Response::builder()
                            .status(200)
                            .body(Body::from(out))
                            .unwrap(),
                    )
                }
                Reply::Hang => open.push(send),
            }
        }
    });
    (Client::new(service, "default"), log)
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

fn not_found() -> Reply {
    Reply::Json(404, status(404, "NotFound"))
}

const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/hostguard/leases/hostguard-leader";

/// A Lease store with resourceVersion checks, as the API server keeps one.
#[derive(Default)]
struct LeaseStore {
    lease: Option<Value>,
    rv: u64,
}

impl LeaseStore {
    fn held_by(holder: &str) -> Self {
        let mut s = LeaseStore::default();
        s.put(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "hostguard-leader", "namespace": "hostguard"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3}
        }));
        s
    }

    fn put(&mut self, mut v: Value) -> Value {
        self.rv += 1;
        v["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.lease = Some(v.clone());
        v
    }

    fn route(&mut self, r: &Seen) -> Option<Reply> {
        let collection = LEASE_PATH.rsplit_once('/').unwrap().0;
        Some(match (r.method.as_str(), r.path.as_str()) {
            ("GET", LEASE_PATH) => match &self.lease {
                Some(l) => Reply::Json(200, l.clone()),
                None => not_found(),
            },
            ("POST", p) if p == collection => {
                if self.lease.is_some() {
                    Reply::Json(409, status(409, "AlreadyExists"))
                } else {
                    Reply::Json(201, self.put(r.body.clone()))
                }
            }
            ("PUT", LEASE_PATH) => {
                let sent = r.body["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if sent != self.rv.to_string() {
                    Reply::Json(409, status(409, "Conflict"))
                } else {
                    Reply::Json(200, self.put(r.body.clone()))
                }
            }
            _ => return None,
        })
    }
}

fn elector(client: Client, identity: &str) -> Elector {
    Elector::new(
        client,
        "hostguard",
        "hostguard-leader",
        identity,
        Timings::default(),
    )
}

fn lease_writes(log: &Log) -> Vec<Seen> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.starts_with("/apis/coordination.k8s.io") && s.method != "GET")
        .cloned()
        .collect()
}

// ---------------------------------------------------------------- lease

#[tokio::test(start_paused = true)]
async fn the_lease_is_acquired_renewed_and_released() {
    let mut store = LeaseStore::default();
    let (client, log) = mock_api(move |r| store.route(r).unwrap_or_else(not_found));
    let mut a = elector(client, "replica-a");
    let leadership = a.leadership();
    assert!(!leadership.is_leader());

    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(leadership.is_leader());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(a.try_acquire_or_renew().await.unwrap());
    a.release().await;
    assert!(!leadership.is_leader());

    let writes = lease_writes(&log);
    assert_eq!(
        writes.iter().map(|w| w.method.as_str()).collect::<Vec<_>>(),
        ["POST", "PUT", "PUT"]
    );
    let created = &writes[0].body["spec"];
    assert_eq!(created["holderIdentity"], "replica-a");
    assert_eq!(created["leaseDurationSeconds"], 15);
    assert_eq!(created["leaseTransitions"], 0);
    let renewed = &writes[1].body;
    assert_eq!(renewed["spec"]["holderIdentity"], "replica-a");
    assert_eq!(renewed["metadata"]["resourceVersion"], "1");
    assert_eq!(renewed["spec"]["acquireTime"], created["acquireTime"]);
    assert_eq!(renewed["spec"]["leaseTransitions"], 0);
    let released = &writes[2].body;
    assert!(
        released["spec"].get("holderIdentity").is_none(),
        "{released}"
    );
    assert_eq!(released["metadata"]["resourceVersion"], "2");
}

#[tokio::test(start_paused = true)]
async fn a_held_lease_is_taken_over_only_after_it_expires() {
    let mut store = LeaseStore::held_by("replica-b");
    let (client, log) = mock_api(move |r| store.route(r).unwrap_or_else(not_found));
    let mut a = elector(client, "replica-a");

    assert!(!a.try_acquire_or_renew().await.unwrap());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(!a.try_acquire_or_renew().await.unwrap(), "not expired yet");
    assert!(
        lease_writes(&log).is_empty(),
        "a non-holder never writes a live lease"
    );

    // replica-b has not renewed for 15 s as seen from here.
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(a.try_acquire_or_renew().await.unwrap());
    let writes = lease_writes(&log);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, "PUT");
    assert_eq!(writes[0].body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(writes[0].body["spec"]["leaseTransitions"], 4);
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let mut store = LeaseStore::held_by("");
    let (client, _log) = mock_api(move |r| store.route(r).unwrap_or_else(not_found));
    let mut a = elector(client, "replica-a");
    assert!(a.try_acquire_or_renew().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_update_loses_the_race() {
    let mut store = LeaseStore::held_by("");
    let (client, _log) = mock_api(move |r| {
        if r.method == "PUT" {
            // Someone else wrote the Lease between our GET and PUT.
            store.rv += 1;
        }
        store.route(r).unwrap_or_else(not_found)
    });
    let mut a = elector(client, "replica-a");
    assert!(!a.try_acquire_or_renew().await.unwrap());
    assert!(!a.leadership().is_leader());
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_writing_at_the_renew_deadline() {
    let mut store = LeaseStore::default();
    let broken = Arc::new(AtomicBool::new(false));
    let fail = Arc::clone(&broken);
    let (client, _log) = mock_api(move |r| {
        if fail.load(Ordering::SeqCst) {
            return Reply::Json(500, status(500, "InternalError"));
        }
        store.route(r).unwrap_or_else(not_found)
    });
    let mut a = elector(client, "replica-a");
    assert!(a.try_acquire_or_renew().await.unwrap());
    broken.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(a.try_acquire_or_renew().await.is_err());
    assert!(
        a.leadership().is_leader(),
        "still within the renew deadline"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(!a.leadership().is_leader(), "10 s after the last renewal");
}

#[tokio::test(start_paused = true)]
async fn the_election_loop_renews_and_releases_on_stop() {
    let mut store = LeaseStore::default();
    let (client, log) = mock_api(move |r| store.route(r).unwrap_or_else(not_found));
    let a = elector(client, "replica-a");
    let leadership = a.leadership();
    let mut changes = leadership.subscribe();
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Metrics::new();
    let task = tokio::spawn(a.run(Arc::clone(&metrics), stop_rx));
    changes.wait_for(|l| *l).await.unwrap();
    assert!(leadership.is_leader());
    assert_eq!(metrics.leader.get(), 1);
    // Three renewal periods.
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(leadership.is_leader());
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    assert!(!leadership.is_leader());
    assert_eq!(metrics.leader.get(), 0);
    let writes = lease_writes(&log);
    assert_eq!(writes[0].method, "POST");
    let renewals = writes[1..writes.len() - 1].len();
    assert_eq!(renewals, 3, "renewed every 5 s: {writes:?}");
    let last = writes.last().unwrap();
    assert!(last.body["spec"].get("holderIdentity").is_none());
}

// ---------------------------------------------------------------- status and events

fn policy(name: &str) -> HostingPolicy {
    serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "HostingPolicy",
        "metadata": {"name": name, "generation": 3},
        "spec": {
            "provider": "openai", "apiClasses": ["stateless"], "action": "Deny",
            "endpoints": {"allowedHosts": ["*.openai.azure.com"]}
        }
    }))
    .unwrap()
}

fn aiw(name: &str, app: &str) -> AIWorkload {
    serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": {"name": name, "namespace": "team-a", "generation": 2},
        "spec": {"selector": {"matchLabels": {"app": app}}, "provider": "openai"}
    }))
    .unwrap()
}

fn deployment(name: &str, base_url: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}")},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "i", "env": [
                {"name": "OPENAI_API_KEY", "value": "sk-test"},
                {"name": "OPENAI_BASE_URL", "value": base_url}
            ]}]}
        }}
    })
}

fn inventory() -> (Inventory, Writers) {
    let (inv, mut w) = Inventory::new();
    fn list<K: kube::Resource + Clone>(
        w: &mut kube::runtime::reflector::store::Writer<K>,
        items: Vec<K>,
    ) where
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        w.apply_watcher_event(&Event::Init);
        for i in items {
            w.apply_watcher_event(&Event::InitApply(i));
        }
        w.apply_watcher_event(&Event::InitDone);
    }
    list(&mut w.policies, vec![policy("azure-only")]);
    list(
        &mut w.workloads,
        vec![aiw("chat", "chat"), aiw("embed", "embed")],
    );
    list(&mut w.namespaces, vec![]);
    list(&mut w.nodes, vec![]);
    (inv, w)
}

fn tally(built: &Built, objects: &[Value]) -> Tally {
    let mut t = Tally::default();
    for o in objects {
        audit::evaluate_into(&mut t, o, &built.policies, &built.snapshot);
    }
    t
}

/// A mock API with a free Lease and accepting status patches and events.
fn writable_api() -> (Client, Log) {
    let mut store = LeaseStore::default();
    mock_api(move |r| {
        if let Some(reply) = store.route(r) {
            return reply;
        }
        match r.method.as_str() {
            "PATCH" => Reply::Json(200, r.body.clone()),
            "POST" => Reply::Json(201, r.body.clone()),
            _ => not_found(),
        }
    })
}

async fn leader(client: &Client) -> Leadership {
    let mut e = elector(client.clone(), "replica-a");
    assert!(e.try_acquire_or_renew().await.unwrap());
    // The leadership outlives the elector: it stays valid until the renew deadline.
    e.leadership()
}

fn now() -> k8s_openapi::jiff::Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn writes(log: &Log) -> Vec<Seen> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| !s.path.starts_with("/apis/coordination.k8s.io"))
        .cloned()
        .collect()
}

/// Writes statuses and events; returns the number of Events published.
async fn write(
    writer: &mut status::Writer,
    inv: &Inventory,
    built: &Built,
    t: &Tally,
) -> Result<usize, WriteError> {
    writer
        .write(
            &inv.policies.state(),
            status::PolicyStates {
                invalid: &built.invalid_policies,
                enforced_instead: &built.enforced_instead,
                shadowed: &built.shadowed,
            },
            &inv.workloads.state(),
            t,
            now(),
        )
        .await
        .map(|w| w.events)
}

#[tokio::test(start_paused = true)]
async fn status_bodies_for_a_compliant_and_a_violating_workload() {
    let (client, log) = writable_api();
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(
        &built,
        &[
            deployment("chat", "https://api.openai.com/v1"),
            deployment("embed", "https://contoso.openai.azure.com/openai/v1"),
        ],
    );
    let mut writer = status::Writer::new(client, leadership, "replica-a");
    write(&mut writer, &inv, &built, &t).await.unwrap();

    let w = writes(&log);
    let patches: Vec<&Seen> = w.iter().filter(|s| s.method == "PATCH").collect();
    assert_eq!(patches.len(), 3, "{patches:#?}");
    for p in &patches {
        assert_eq!(p.content_type, "application/apply-patch+yaml");
        assert!(p.query_has("fieldManager=hostguard"), "{}", p.query);
        assert!(p.query_has("force=true"), "{}", p.query);
    }

    let hp = patches
        .iter()
        .find(|p| p.path == "/apis/hostguard.dev/v1alpha1/hostingpolicies/azure-only/status")
        .expect("HostingPolicy status");
    assert_eq!(hp.body["apiVersion"], "hostguard.dev/v1alpha1");
    assert_eq!(hp.body["kind"], "HostingPolicy");
    let s = &hp.body["status"];
    assert_eq!(s["observedGeneration"], 3);
    assert_eq!(s["violations"], 1);
    assert_eq!(s["lastAuditTime"], "2026-03-01T12:00:00Z");
    assert_eq!(s["conditions"][0]["type"], "Ready");
    assert_eq!(s["conditions"][0]["status"], "True");
    assert_eq!(s["conditions"][0]["reason"], "Enforced");
    assert_eq!(s["violatingObjects"].as_array().unwrap().len(), 1);
    let v = &s["violatingObjects"][0];
    assert_eq!(v["kind"], "Deployment");
    assert_eq!(v["namespace"], "team-a");
    assert_eq!(v["name"], "chat");
    assert!(
        v["message"].as_str().unwrap().contains("api.openai.com"),
        "{v}"
    );

    let chat = patches
        .iter()
        .find(|p| {
            p.path == "/apis/hostguard.dev/v1alpha1/namespaces/team-a/aiworkloads/chat/status"
        })
        .expect("violating AIWorkload status");
    let c = &chat.body["status"]["conditions"][0];
    assert_eq!(chat.body["kind"], "AIWorkload");
    assert_eq!(c["type"], "Compliant");
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "PolicyViolation");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("1 of 1 matched workloads break a policy")
    );
    assert_eq!(chat.body["status"]["observedGeneration"], 2);
    assert_eq!(
        chat.body["status"]["matchedWorkloads"],
        json!([{"kind": "Deployment", "name": "chat", "compliant": false}])
    );

    let embed = patches
        .iter()
        .find(|p| {
            p.path == "/apis/hostguard.dev/v1alpha1/namespaces/team-a/aiworkloads/embed/status"
        })
        .expect("compliant AIWorkload status");
    let c = &embed.body["status"]["conditions"][0];
    assert_eq!(c["status"], "True");
    assert_eq!(c["reason"], "Compliant");
    assert_eq!(
        embed.body["status"]["matchedWorkloads"],
        json!([{"kind": "Deployment", "name": "embed", "compliant": true}])
    );
}

#[tokio::test(start_paused = true)]
async fn an_invalid_policy_gets_ready_false_with_its_errors() {
    let (client, log) = writable_api();
    let leadership = leader(&client).await;
    let (inv, mut w) = inventory();
    let mut broken = policy("broken");
    broken.spec.endpoints.allowed_hosts = vec!["https://bad".into()];
    w.policies.apply_watcher_event(&Event::Apply(broken));
    let built = inv.build(&BuildInput::default());
    assert!(built.invalid_policies.contains_key("broken"));
    let mut writer = status::Writer::new(client, leadership, "replica-a");
    write(&mut writer, &inv, &built, &Tally::default())
        .await
        .unwrap();
    let w = writes(&log);
    let p = w
        .iter()
        .find(|s| s.path.ends_with("/hostingpolicies/broken/status"))
        .unwrap();
    let c = &p.body["status"]["conditions"][0];
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "InvalidSpec");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.endpoints.allowedHosts[0]"),
        "{c}"
    );
    assert_eq!(p.body["status"]["violations"], 0);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_policy_edit_keeps_the_previous_version_enforcing() {
    let (client, log) = writable_api();
    let leadership = leader(&client).await;
    let (inv, mut w) = inventory();
    // Generation 3 of `azure-only` compiled at the initial list. The edit to generation 4 is
    // schema-valid (the API server accepted it) but does not compile.
    let first = inv.build(&BuildInput::default());
    assert!(first.invalid_policies.is_empty());
    let mut edited = policy("azure-only");
    edited.metadata.generation = Some(4);
    edited.spec.endpoints.allowed_hosts = vec!["https://bad".into()];
    edited.spec.action = hostguard::api::Action::Warn;
    w.policies.apply_watcher_event(&Event::Apply(edited));
    let built = inv.build(&BuildInput::default());
    assert!(built.invalid_policies.contains_key("azure-only"));
    assert_eq!(
        built.enforced_instead.get("azure-only"),
        Some(&hostguard::cluster::inventory::EnforcedInstead::Generation(
            3
        ))
    );

    // Still enforced, as generation 3 says: Deny, not the Warn of the broken edit.
    let enforced = built
        .policies
        .policies()
        .iter()
        .find(|p| p.name == "azure-only")
        .expect("the last good version is enforced");
    assert_eq!(enforced.generation, Some(3));
    assert_eq!(enforced.action, hostguard::api::Action::Deny);
    let t = tally(&built, &[deployment("chat", "https://api.openai.com/v1")]);
    assert_eq!(t.policies["azure-only"].violating, 1);

    let mut writer = status::Writer::new(client, leadership, "replica-a");
    write(&mut writer, &inv, &built, &t).await.unwrap();
    let p = writes(&log)
        .into_iter()
        .find(|s| {
            s.is(
                "PATCH",
                "/apis/hostguard.dev/v1alpha1/hostingpolicies/azure-only/status",
            )
        })
        .expect("the policy's status is written");
    let status = &p.body["status"];
    assert_eq!(status["observedGeneration"], 4);
    assert_eq!(status["enforcedGeneration"], 3);
    assert_eq!(status["violations"], 1);
    let c = &status["conditions"][0];
    assert_eq!(c["type"], "Ready");
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "InvalidSpec");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.starts_with("spec.endpoints.allowedHosts[0]"),
        "{message}"
    );
    assert!(
        message.contains("generation 3, the last that compiled, is still enforced"),
        "{message}"
    );

    // Fixed again: the new generation is enforced and Ready.
    let mut fixed = policy("azure-only");
    fixed.metadata.generation = Some(5);
    w.policies.apply_watcher_event(&Event::Apply(fixed));
    let built = inv.build(&BuildInput::default());
    assert!(built.invalid_policies.is_empty());
    assert_eq!(built.policies.policies()[0].generation, Some(5));

    // Deleted, then created broken: no version compiled since, nothing is enforced for it.
    w.policies
        .apply_watcher_event(&Event::Delete(policy("azure-only")));
    assert!(inv.build(&BuildInput::default()).policies.is_empty());
    let mut broken = policy("azure-only");
    broken.spec.endpoints.allowed_hosts = vec!["https://bad".into()];
    w.policies.apply_watcher_event(&Event::Apply(broken));
    let built = inv.build(&BuildInput::default());
    assert!(built.policies.is_empty());
    assert!(built.enforced_instead.is_empty());
}

#[test]
fn a_broken_default_policy_with_no_good_version_is_replaced_by_the_builtin_default() {
    let (inv, mut w) = Inventory::new();
    let mut broken = hostguard::policy::default_policy();
    broken.metadata.generation = Some(7);
    broken.spec.endpoints.allowed_hosts = vec!["https://bad".into()];
    broken.spec.action = hostguard::api::Action::Audit;
    w.policies.apply_watcher_event(&Event::Apply(broken));
    let built = inv.build(&BuildInput::default());
    assert_eq!(
        built
            .enforced_instead
            .get(hostguard::policy::DEFAULT_POLICY_NAME),
        Some(&hostguard::cluster::inventory::EnforcedInstead::BuiltinDefault)
    );
    let enforced = &built.policies.policies()[0];
    assert_eq!(enforced.name, hostguard::policy::DEFAULT_POLICY_NAME);
    assert_eq!(enforced.action, hostguard::api::Action::Deny);
}

#[tokio::test(start_paused = true)]
async fn events_are_emitted_once_per_violation() {
    let (client, log) = writable_api();
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let violating = tally(
        &built,
        &[
            deployment("chat", "https://api.openai.com/v1"),
            deployment("other", "https://bedrock-runtime.us-east-1.amazonaws.com"),
            deployment("embed", "https://contoso.openai.azure.com/openai/v1"),
        ],
    );
    let mut writer = status::Writer::new(client, leadership, "replica-a");
    assert_eq!(
        write(&mut writer, &inv, &built, &violating).await.unwrap(),
        2
    );
    // The same violations at the next audit: no new Event.
    assert_eq!(
        write(&mut writer, &inv, &built, &violating).await.unwrap(),
        0
    );

    let events: Vec<Seen> = writes(&log)
        .into_iter()
        .filter(|s| s.path.contains("/events"))
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    for e in &events {
        assert!(e.is("POST", "/apis/events.k8s.io/v1/namespaces/team-a/events"));
        assert_eq!(e.body["type"], "Warning");
        assert_eq!(e.body["reason"], status::VIOLATION_REASON);
        assert_eq!(e.body["reportingController"], "hostguard");
        assert_eq!(e.body["reportingInstance"], "replica-a");
        assert_eq!(e.body["regarding"]["kind"], "Deployment");
        assert!(
            e.body["note"]
                .as_str()
                .unwrap()
                .starts_with("policy azure-only (Deny): ")
        );
    }
    let names: Vec<&str> = events
        .iter()
        .map(|e| e.body["regarding"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["chat", "other"]);

    // Fixed, then broken again: a new Event.
    let fixed = tally(
        &built,
        &[deployment(
            "chat",
            "https://contoso.openai.azure.com/openai/v1",
        )],
    );
    assert_eq!(write(&mut writer, &inv, &built, &fixed).await.unwrap(), 0);
    let broken_again = tally(&built, &[deployment("chat", "https://api.openai.com/v1")]);
    assert_eq!(
        write(&mut writer, &inv, &built, &broken_again)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_non_leader_writes_nothing() {
    let (client, log) = writable_api();
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(&built, &[deployment("chat", "https://api.openai.com/v1")]);
    let mut writer = status::Writer::new(client, Leadership::default(), "replica-b");
    assert!(matches!(
        write(&mut writer, &inv, &built, &t).await,
        Err(WriteError::NotLeader)
    ));
    assert!(log.lock().unwrap().is_empty(), "{:#?}", log.lock().unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_leader_past_its_renew_deadline_stops_writing() {
    let (client, log) = writable_api();
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(&built, &[deployment("chat", "https://api.openai.com/v1")]);
    let before = log.lock().unwrap().len();
    tokio::time::advance(Duration::from_secs(11)).await;
    let mut writer = status::Writer::new(client, leadership, "replica-a");
    assert!(matches!(
        write(&mut writer, &inv, &built, &t).await,
        Err(WriteError::NotLeader)
    ));
    assert_eq!(log.lock().unwrap().len(), before);
}

// ---------------------------------------------------------------- watches

fn policy_list(rv: &str, names: &[&str]) -> Value {
    json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "HostingPolicyList",
        "metadata": {"resourceVersion": rv},
        "items": names.iter().map(|n| {
            let mut p = serde_json::to_value(policy(n)).unwrap();
            p["metadata"]["resourceVersion"] = json!(rv);
            p
        }).collect::<Vec<_>>()
    })
}

#[tokio::test(start_paused = true)]
async fn a_watch_error_is_followed_by_a_relist_and_recovery() {
    let lists = Arc::new(Mutex::new(0));
    let n = Arc::clone(&lists);
    let (client, log) = mock_api(move |r| {
        assert_eq!(r.path, "/apis/hostguard.dev/v1alpha1/hostingpolicies");
        if r.query_has("watch=true") {
            let listed = *n.lock().unwrap();
            return if listed == 1 {
                // The watch breaks: the resource version is too old (410 Gone).
                Reply::Lines(vec![
                    json!({"type": "ERROR", "object": status(410, "Expired")}),
                ])
            } else {
                Reply::Hang
            };
        }
        let mut listed = n.lock().unwrap();
        *listed += 1;
        if *listed == 1 {
            Reply::Json(200, policy_list("10", &["first"]))
        } else {
            Reply::Json(200, policy_list("20", &["first", "second"]))
        }
    });

    let (inv, w) = Inventory::new();
    let metrics = Metrics::new();
    let notify = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let synced = Arc::new(AtomicBool::new(false));
    let stream = watcher::watcher(
        kube::Api::<HostingPolicy>::all(client),
        watcher::Config::default(),
    )
    .default_backoff();
    let task = tokio::spawn(reflect::reflect(
        "hostingpolicies",
        stream,
        w.policies,
        |p: &HostingPolicy| hostguard::cluster::inventory::spec_fingerprint(&p.spec),
        Arc::clone(&synced),
        Shared {
            notify: Arc::clone(&notify),
            metrics: Arc::clone(&metrics),
            stop: stop_rx,
        },
    ));

    notify.notified().await;
    assert!(synced.load(Ordering::SeqCst));
    assert_eq!(inv.policies.len(), 1);

    // After the error the watcher backs off, lists again and the store recovers.
    tokio::time::timeout(Duration::from_secs(120), async {
        while inv.policies.len() < 2 {
            notify.notified().await;
        }
    })
    .await
    .expect("the store recovers after the watch error");
    let label = ResourceLabel {
        resource: "hostingpolicies",
    };
    assert_eq!(metrics.watch_errors.get_or_create(&label).get(), 1);
    assert_eq!(metrics.watch_restarts.get_or_create(&label).get(), 1);
    let built = inv.build(&BuildInput::default());
    assert_eq!(built.policies.len(), 2);

    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let seen = log.lock().unwrap().clone();
    let kinds: Vec<&str> = seen
        .iter()
        .map(|s| {
            if s.query_has("watch=true") {
                "watch"
            } else {
                "list"
            }
        })
        .collect();
    assert_eq!(&kinds[..4], ["list", "watch", "list", "watch"], "{seen:#?}");
    assert!(seen[0].query_has("limit=500"), "{}", seen[0].query);
    assert!(seen[1].query_has("resourceVersion=10"), "{}", seen[1].query);
    assert!(
        seen[1].query_has("allowWatchBookmarks=true"),
        "{}",
        seen[1].query
    );
    assert!(seen[3].query_has("resourceVersion=20"), "{}", seen[3].query);
}

#[tokio::test(start_paused = true)]
async fn a_failed_watch_start_is_retried_and_events_then_arrive() {
    let watches = Arc::new(Mutex::new(0));
    let n = Arc::clone(&watches);
    let (client, _log) = mock_api(move |r| {
        if !r.query_has("watch=true") {
            return Reply::Json(200, policy_list("10", &[]));
        }
        let mut w = n.lock().unwrap();
        *w += 1;
        match *w {
            1 => Reply::Json(500, status(500, "InternalError")),
            2 => {
                let mut p = serde_json::to_value(policy("late")).unwrap();
                p["metadata"]["resourceVersion"] = json!("11");
                Reply::Lines(vec![json!({"type": "ADDED", "object": p})])
            }
            _ => Reply::Hang,
        }
    });
    let (inv, w) = Inventory::new();
    let metrics = Metrics::new();
    let notify = Arc::new(Notify::new());
    let (_stop_tx, stop_rx) = watch::channel(false);
    let stream = watcher::watcher(
        kube::Api::<HostingPolicy>::all(client),
        watcher::Config::default(),
    )
    .default_backoff();
    tokio::spawn(reflect::reflect(
        "hostingpolicies",
        stream,
        w.policies,
        |p: &HostingPolicy| hostguard::cluster::inventory::spec_fingerprint(&p.spec),
        Arc::new(AtomicBool::new(false)),
        Shared {
            notify: Arc::clone(&notify),
            metrics: Arc::clone(&metrics),
            stop: stop_rx,
        },
    ));
    tokio::time::timeout(Duration::from_secs(120), async {
        while inv.policies.is_empty() {
            notify.notified().await;
        }
    })
    .await
    .expect("the policy arrives after the retried watch");
    let label = ResourceLabel {
        resource: "hostingpolicies",
    };
    assert_eq!(metrics.watch_errors.get_or_create(&label).get(), 1);
    assert_eq!(metrics.watch_restarts.get_or_create(&label).get(), 0);
}

// ---------------------------------------------------------------- audit lists

#[tokio::test(start_paused = true)]
async fn the_audit_lists_in_pages_and_leaves_owned_objects_to_their_owner() {
    let (client, log) = mock_api(|r| {
        let empty =
            |kind: &str| json!({"kind": kind, "apiVersion": "v1", "metadata": {}, "items": []});
        let item = |name: &str, owner: Option<&str>| {
            let mut d = deployment(name, "https://api.openai.com/v1");
            d.as_object_mut().unwrap().remove("apiVersion");
            d.as_object_mut().unwrap().remove("kind");
            if let Some(kind) = owner {
                d["metadata"]["ownerReferences"] = json!([{
                    "apiVersion": "apps/v1", "kind": kind, "name": "x", "uid": "u", "controller": true
                }]);
            }
            d
        };
        let reply = match r.path.as_str() {
            "/apis/apps/v1/deployments" if r.query_has("continue=page2") => json!({
                "kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {},
                "items": [item("d2", None)]
            }),
            "/apis/apps/v1/deployments" => json!({
                "kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {"continue": "page2"},
                "items": [item("d1", None)]
            }),
            "/apis/apps/v1/replicasets" => json!({
                "kind": "ReplicaSetList", "apiVersion": "apps/v1", "metadata": {},
                "items": [item("rs-owned", Some("Deployment")), item("rs-bare", None)]
            }),
            other => empty(other),
        };
        Reply::Json(200, reply)
    });
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = audit::run(&client, None, &built.policies, &built.snapshot, &|| true)
        .await
        .unwrap();
    assert_eq!(t.objects, 3, "d1, d2 and the ReplicaSet no Deployment owns");
    let violating: Vec<&str> = t.policies["azure-only"]
        .first
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(violating, ["d1", "d2", "rs-bare"]);
    let seen = log.lock().unwrap().clone();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/apis/apps/v1/deployments",
            "/apis/apps/v1/deployments",
            "/apis/apps/v1/statefulsets",
            "/apis/apps/v1/daemonsets",
            "/apis/apps/v1/replicasets",
            "/api/v1/replicationcontrollers",
            "/apis/batch/v1/jobs",
            "/apis/batch/v1/cronjobs",
            "/api/v1/pods",
        ]
    );
    assert!(
        seen.iter()
            .all(|s| s.method == "GET" && s.query_has("limit=250"))
    );
    assert!(seen[1].query_has("continue=page2"));
    // No Secret is ever read.
    assert!(seen.iter().all(|s| !s.path.contains("secrets")));
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_audit_stops_listing() {
    let (client, log) = mock_api(|_| Reply::Json(200, json!({"metadata": {}, "items": []})));
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let r = audit::run(&client, None, &built.policies, &built.snapshot, &|| false).await;
    assert!(matches!(r, Err(audit::AuditError::Interrupted)));
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn tally_caps_keep_memory_bounded() {
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let mut t = Tally::default();
    for i in 0..(audit::MAX_VIOLATING_OBJECTS + 5) {
        audit::evaluate_into(
            &mut t,
            &deployment(&format!("d{i}"), "https://api.openai.com/v1"),
            &built.policies,
            &built.snapshot,
        );
    }
    let p = &t.policies["azure-only"];
    assert_eq!(p.violating, (audit::MAX_VIOLATING_OBJECTS + 5) as i64);
    assert_eq!(p.first.len(), audit::MAX_VIOLATING_OBJECTS);
}

// ---------------------------------------------------------------- ConfigMaps

fn config_map(name: &str, rv: &str, url: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "team-a", "resourceVersion": rv},
        "data": {"OPENAI_BASE_URL": url}
    })
}

fn data_of(cache: &ConfigMapCache, name: &str) -> Option<String> {
    match cache.get("team-a", name) {
        Lookup::Found(d) => d.get("OPENAI_BASE_URL").cloned(),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn prefetch_caches_found_and_absent_config_maps_and_a_timeout_leaves_them_unknown() {
    let (client, log) = mock_api(|r| match r.path.as_str() {
        "/api/v1/namespaces/team-a/configmaps/endpoints" => Reply::Json(
            200,
            config_map("endpoints", "1", "https://api.openai.com/v1"),
        ),
        "/api/v1/namespaces/team-a/configmaps/slow" => Reply::Hang,
        _ => not_found(),
    });
    let cache = ConfigMapCache::new(16);
    let fetcher = Fetcher {
        client,
        cache: Arc::clone(&cache),
        metrics: Metrics::new(),
    };
    let names = ["endpoints", "missing", "slow"].map(String::from);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    fetcher.fetch_missing("team-a", &names, deadline).await;
    assert_eq!(
        tokio::time::Instant::now(),
        deadline,
        "gave up at the deadline"
    );
    assert_eq!(
        data_of(&cache, "endpoints").as_deref(),
        Some("https://api.openai.com/v1")
    );
    assert_eq!(cache.get("team-a", "missing"), Lookup::Absent);
    assert_eq!(
        cache.get("team-a", "slow"),
        Lookup::Unknown,
        "a timeout caches nothing"
    );

    // Cached names are not fetched again.
    let before = log.lock().unwrap().len();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    fetcher.fetch_missing("team-a", &names[..2], deadline).await;
    assert_eq!(log.lock().unwrap().len(), before);
    assert!(log.lock().unwrap().iter().all(|s| s.method == "GET"));
}

fn cm_meta(name: &str, rv: &str) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": {"name": name, "namespace": "team-a", "resourceVersion": rv}})
}

#[tokio::test(start_paused = true)]
async fn the_config_map_watch_refreshes_changed_and_forgets_deleted_entries() {
    let watches = Arc::new(Mutex::new(0));
    let n = Arc::clone(&watches);
    let (client, log) = mock_api(move |r| match r.path.as_str() {
        "/api/v1/configmaps" if r.query_has("watch=true") => {
            let mut w = n.lock().unwrap();
            *w += 1;
            if *w == 1 {
                Reply::Lines(vec![
                    json!({"type": "MODIFIED", "object": cm_meta("endpoints", "2")}),
                    json!({"type": "MODIFIED", "object": cm_meta("unrelated", "9")}),
                    json!({"type": "DELETED", "object": cm_meta("doomed", "3")}),
                ])
            } else {
                Reply::Hang
            }
        }
        "/api/v1/configmaps" => Reply::Json(
            200,
            json!({"apiVersion": "v1", "kind": "PartialObjectMetadataList",
                   "metadata": {"resourceVersion": "1"},
                   "items": [cm_meta("endpoints", "1"), cm_meta("doomed", "1"), cm_meta("unrelated", "1")]}),
        ),
        "/api/v1/namespaces/team-a/configmaps/endpoints" => Reply::Json(
            200,
            config_map(
                "endpoints",
                "2",
                "https://contoso.openai.azure.com/openai/v1",
            ),
        ),
        _ => not_found(),
    });
    let cache = ConfigMapCache::new(16);
    let old: ConfigMap =
        serde_json::from_value(config_map("endpoints", "1", "https://api.openai.com/v1")).unwrap();
    cache.insert("team-a", "endpoints", Some(&old));
    let doomed: ConfigMap =
        serde_json::from_value(config_map("doomed", "1", "https://x.example.com")).unwrap();
    cache.insert("team-a", "doomed", Some(&doomed));
    let fetcher = Fetcher {
        client,
        cache: Arc::clone(&cache),
        metrics: Metrics::new(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(config_maps::keep_fresh(fetcher, stop_rx));
    tokio::time::timeout(Duration::from_secs(30), async {
        while cache.get("team-a", "doomed") != Lookup::Absent
            || data_of(&cache, "endpoints").as_deref()
                != Some("https://contoso.openai.azure.com/openai/v1")
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the deletion and the refetch reach the cache");
    assert_eq!(
        data_of(&cache, "endpoints").as_deref(),
        Some("https://contoso.openai.azure.com/openai/v1")
    );
    // Uncached ConfigMaps are neither fetched nor kept.
    assert_eq!(cache.get("team-a", "unrelated"), Lookup::Unknown);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    let gets: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.starts_with("/api/v1/namespaces/"))
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(gets, ["/api/v1/namespaces/team-a/configmaps/endpoints"]);
}

// ---------------------------------------------------------------- issue 14: availability

#[tokio::test(start_paused = true)]
async fn a_refetch_that_hangs_does_not_hold_up_the_config_map_watch() {
    // The watch reports a change to "endpoints" (its GET never answers), then deletes
    // "doomed": the deletion must land while the refetch still hangs.
    let (client, _log) = mock_api(move |r| match r.path.as_str() {
        "/api/v1/configmaps" if r.query_has("watch=true") => Reply::Hang,
        "/api/v1/namespaces/team-a/configmaps/endpoints" => Reply::Hang,
        _ => not_found(),
    });
    let cache = ConfigMapCache::new(16);
    for (name, uid) in [("endpoints", "u-e"), ("doomed", "u-d")] {
        let mut cm: ConfigMap =
            serde_json::from_value(config_map(name, "1", "https://x.example.com")).unwrap();
        cm.metadata.uid = Some(uid.into());
        cache.insert("team-a", name, Some(&cm));
    }
    let fetcher = Fetcher {
        client,
        cache: Arc::clone(&cache),
        metrics: Metrics::new(),
    };
    let meta = |name: &str, rv: &str, uid: &str| -> kube::core::PartialObjectMeta<ConfigMap> {
        let mut v = cm_meta(name, rv);
        v["metadata"]["uid"] = json!(uid);
        serde_json::from_value(v).unwrap()
    };
    let events = futures::StreamExt::chain(
        futures::stream::iter(vec![
            Ok::<_, watcher::Error>(Event::Apply(meta("endpoints", "2", "u-e"))),
            Ok(Event::Delete(meta("doomed", "3", "u-d"))),
        ]),
        futures::stream::pending(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(config_maps::apply_events(fetcher, events, stop_rx));
    tokio::time::timeout(Duration::from_secs(5), async {
        while cache.get("team-a", "doomed") != Lookup::Absent {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the delete is applied while the refetch hangs");
    // The stale entry is still served while its refetch is out (it is at most as old as the
    // watch's knowledge); once the refetch gives up, it is dropped, never kept stale.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(cache.get("team-a", "endpoints"), Lookup::Unknown);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_relist_that_no_longer_shows_a_cached_config_map_asks_before_forgetting_it() {
    // The list comes back without "endpoints", but the GET (newer than the list) still finds
    // it: it stays cached, with the GET's data.
    let (client, log) = mock_api(move |r| match r.path.as_str() {
        "/api/v1/namespaces/team-a/configmaps/endpoints" => Reply::Json(
            200,
            config_map(
                "endpoints",
                "5",
                "https://contoso.openai.azure.com/openai/v1",
            ),
        ),
        _ => not_found(),
    });
    let cache = ConfigMapCache::new(16);
    let old: ConfigMap =
        serde_json::from_value(config_map("endpoints", "1", "https://api.openai.com/v1")).unwrap();
    cache.insert("team-a", "endpoints", Some(&old));
    let fetcher = Fetcher {
        client,
        cache: Arc::clone(&cache),
        metrics: Metrics::new(),
    };
    let events = futures::StreamExt::chain(
        futures::stream::iter(vec![
            Ok::<Event<kube::core::PartialObjectMeta<ConfigMap>>, watcher::Error>(Event::Init),
            Ok(Event::InitDone),
        ]),
        futures::stream::pending(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(config_maps::apply_events(fetcher, events, stop_rx));
    tokio::time::timeout(Duration::from_secs(5), async {
        while data_of(&cache, "endpoints").as_deref()
            != Some("https://contoso.openai.azure.com/openai/v1")
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the entry is fetched again, not marked absent");
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|s| s.is("GET", "/api/v1/namespaces/team-a/configmaps/endpoints"))
    );
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_status_is_not_written_again() {
    let (client, log) = writable_api();
    let leadership = leader(&client).await;
    let (inv, mut w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(&built, &[deployment("chat", "https://api.openai.com/v1")]);
    let mut writer = status::Writer::new(client, leadership, "replica-a");
    let first = writer
        .write(
            &inv.policies.state(),
            status::PolicyStates {
                invalid: &built.invalid_policies,
                enforced_instead: &built.enforced_instead,
                shadowed: &built.shadowed,
            },
            &inv.workloads.state(),
            &t,
            now(),
        )
        .await
        .unwrap();
    assert_eq!((first.statuses, first.unchanged), (3, 0));
    // The watch delivers what was written (the mock answers a patch with its body).
    let patches: Vec<Seen> = writes(&log)
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .collect();
    for p in &patches {
        if p.path.contains("/hostingpolicies/") {
            let mut policy = inv.policies.state()[0].as_ref().clone();
            policy.status = Some(serde_json::from_value(p.body["status"].clone()).unwrap());
            w.policies.apply_watcher_event(&Event::Apply(policy));
        } else {
            let name = p.path.split('/').rev().nth(1).unwrap();
            let mut aiw = inv
                .workloads
                .state()
                .into_iter()
                .find(|a| a.metadata.name.as_deref() == Some(name))
                .unwrap()
                .as_ref()
                .clone();
            aiw.status = Some(serde_json::from_value(p.body["status"].clone()).unwrap());
            w.workloads.apply_watcher_event(&Event::Apply(aiw));
        }
    }
    // An hour later, the same results: nothing is written, lastAuditTime stays.
    let later: k8s_openapi::jiff::Timestamp = "2026-03-01T13:00:00Z".parse().unwrap();
    let again = writer
        .write(
            &inv.policies.state(),
            status::PolicyStates {
                invalid: &built.invalid_policies,
                enforced_instead: &built.enforced_instead,
                shadowed: &built.shadowed,
            },
            &inv.workloads.state(),
            &t,
            later,
        )
        .await
        .unwrap();
    assert_eq!((again.statuses, again.unchanged), (0, 3));
    let patch_count = |log: &Log| {
        writes(log)
            .into_iter()
            .filter(|s| s.method == "PATCH")
            .count()
    };
    assert_eq!(patch_count(&log), 3);
    // A changed result is written, with the new time.
    let fixed = tally(
        &built,
        &[deployment(
            "chat",
            "https://contoso.openai.azure.com/openai/v1",
        )],
    );
    let changed = writer
        .write(
            &inv.policies.state(),
            status::PolicyStates {
                invalid: &built.invalid_policies,
                enforced_instead: &built.enforced_instead,
                shadowed: &built.shadowed,
            },
            &inv.workloads.state(),
            &fixed,
            later,
        )
        .await
        .unwrap();
    assert_eq!(changed.statuses, 2, "the policy and the chat AIWorkload");
    let last = writes(&log)
        .into_iter()
        .rfind(|s| s.path.ends_with("/hostingpolicies/azure-only/status"))
        .unwrap();
    assert_eq!(last.body["status"]["violations"], 0);
    assert_eq!(last.body["status"]["lastAuditTime"], "2026-03-01T13:00:00Z");
}

#[tokio::test(start_paused = true)]
async fn an_expired_continue_token_relists_the_kind_without_counting_twice() {
    let deployments = Arc::new(Mutex::new(0));
    let n = Arc::clone(&deployments);
    let (client, log) = mock_api(move |r| {
        let empty = json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []});
        let item = |name: &str| {
            let mut d = deployment(name, "https://api.openai.com/v1");
            d.as_object_mut().unwrap().remove("apiVersion");
            d.as_object_mut().unwrap().remove("kind");
            d
        };
        if r.path != "/apis/apps/v1/deployments" {
            return Reply::Json(200, empty);
        }
        let mut calls = n.lock().unwrap();
        *calls += 1;
        match (*calls, r.query_has("continue=page2")) {
            // First pass: page 1, then the token has expired.
            (1, false) => Reply::Json(
                200,
                json!({"kind": "DeploymentList", "apiVersion": "apps/v1",
                "metadata": {"continue": "page2"}, "items": [item("d1")]}),
            ),
            (2, true) => Reply::Json(410, status(410, "Expired")),
            // From the start again: both pages.
            (3, false) => Reply::Json(
                200,
                json!({"kind": "DeploymentList", "apiVersion": "apps/v1",
                "metadata": {"continue": "page2"}, "items": [item("d1")]}),
            ),
            (4, true) => Reply::Json(
                200,
                json!({"kind": "DeploymentList", "apiVersion": "apps/v1",
                "metadata": {}, "items": [item("d2")]}),
            ),
            other => panic!("unexpected deployments list {other:?}"),
        }
    });
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = audit::run(&client, None, &built.policies, &built.snapshot, &|| true)
        .await
        .expect("the audit finishes despite the expired token");
    assert_eq!(t.objects, 2, "d1 once, d2 once");
    let names: Vec<&str> = t.policies["azure-only"]
        .first
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, ["d1", "d2"]);
    assert_eq!(t.policies["azure-only"].violating, 2);
    let lists = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/apis/apps/v1/deployments")
        .count();
    assert_eq!(lists, 4);
}

#[tokio::test(start_paused = true)]
async fn pods_of_controllers_the_audit_does_not_list_are_audited() {
    let (client, _log) = mock_api(|r| {
        let pod = |name: &str, owner: Option<(&str, &str)>, ephemeral: bool| {
            let mut p = json!({
                "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}")},
                "spec": {"containers": [{"name": "app", "image": "i", "env": [
                    {"name": "OPENAI_API_KEY", "value": "sk-test"}
                ]}]}
            });
            if let Some((api_version, kind)) = owner {
                p["metadata"]["ownerReferences"] = json!([{
                    "apiVersion": api_version, "kind": kind, "name": "owner", "uid": "o", "controller": true
                }]);
            }
            if ephemeral {
                p["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
            }
            p
        };
        let items = match r.path.as_str() {
            "/api/v1/pods" => vec![
                pod("bare", None, false),
                pod("of-replicaset", Some(("apps/v1", "ReplicaSet")), false),
                pod("of-rc", Some(("v1", "ReplicationController")), false),
                pod("of-job", Some(("batch/v1", "Job")), false),
                pod("of-raycluster", Some(("ray.io/v1", "RayCluster")), false),
                pod(
                    "of-spark",
                    Some(("sparkoperator.k8s.io/v1beta2", "SparkApplication")),
                    false,
                ),
                pod(
                    "of-pytorchjob",
                    Some(("kubeflow.org/v1", "PyTorchJob")),
                    false,
                ),
                // OpenKruise's Advanced StatefulSet: same kind name, another API group.
                pod(
                    "of-kruise",
                    Some(("apps.kruise.io/v1beta1", "StatefulSet")),
                    false,
                ),
                // Debugged with `kubectl debug`: differs from its ReplicaSet's template.
                pod("debugged", Some(("apps/v1", "ReplicaSet")), true),
            ],
            _ => vec![],
        };
        Reply::Json(
            200,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}),
        )
    });
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = audit::run(&client, None, &built.policies, &built.snapshot, &|| true)
        .await
        .unwrap();
    let mut audited: Vec<&str> = t.policies["azure-only"]
        .first
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    audited.sort_unstable();
    assert_eq!(
        audited,
        [
            "bare",
            "debugged",
            "of-kruise",
            "of-pytorchjob",
            "of-raycluster",
            "of-spark"
        ]
    );
    assert_eq!(t.objects, 6);
}

// ---------------------------------------------------------------- namespaces fetched on demand

#[tokio::test(start_paused = true)]
async fn a_namespace_the_watch_has_not_delivered_is_fetched_within_the_deadline() {
    use hostguard::cluster::namespaces::{NamespaceCache, NamespaceFetcher};
    use hostguard::snapshot::NamespaceSource;
    let (client, log) = mock_api(|r| match r.path.as_str() {
        "/api/v1/namespaces/fresh" => Reply::Json(
            200,
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                   "metadata": {"name": "fresh", "labels": {"tier": "prod"}}}),
        ),
        "/api/v1/namespaces/slow" => Reply::Hang,
        _ => not_found(),
    });
    let (inv, mut w) = inventory();
    let mut known =
        kube::core::PartialObjectMeta::<k8s_openapi::api::core::v1::Namespace>::default();
    known.metadata.name = Some("watched".into());
    w.namespaces.apply_watcher_event(&Event::Apply(known));
    let cache = NamespaceCache::new();
    let fetcher = NamespaceFetcher {
        client,
        store: inv.namespaces.clone(),
        cache: Arc::clone(&cache),
    };
    let deadline = || tokio::time::Instant::now() + Duration::from_millis(500);
    for name in ["fresh", "gone", "slow", "watched"] {
        fetcher.fetch_missing(name, deadline()).await;
    }
    assert_eq!(
        cache.labels("fresh"),
        Lookup::Found([("tier".to_string(), "prod".to_string())].into())
    );
    assert_eq!(cache.labels("gone"), Lookup::Absent);
    assert_eq!(
        cache.labels("slow"),
        Lookup::Unknown,
        "a timeout caches nothing"
    );
    let paths: Vec<String> = log.lock().unwrap().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            "/api/v1/namespaces/fresh",
            "/api/v1/namespaces/gone",
            "/api/v1/namespaces/slow"
        ],
        "a namespace the watch holds is not fetched"
    );
    // Fetched once: the next review reads the cache.
    fetcher.fetch_missing("fresh", deadline()).await;
    assert_eq!(log.lock().unwrap().len(), 3);

    // The engine sees the fetched labels: a policy scoped to tier=prod applies there.
    let mut scoped = policy("prod-only");
    scoped.spec.namespace_selector =
        Some(serde_json::from_value(json!({"matchLabels": {"tier": "prod"}})).unwrap());
    w.policies.apply_watcher_event(&Event::Apply(scoped));
    let built = inv.build(&BuildInput {
        namespaces: Some(Arc::clone(&cache) as _),
        ..Default::default()
    });
    let mut d = deployment("chat", "https://api.openai.com/v1");
    d["metadata"]["namespace"] = json!("fresh");
    let decision = hostguard::policy::evaluate(
        &hostguard::policy::Request {
            operation: hostguard::policy::Operation::Create,
            object: Some(&d),
            old_object: None,
            namespace: Some("fresh"),
        },
        &built.policies,
        &built.snapshot,
    );
    assert!(
        decision.governed_by.contains(&"prod-only".to_string()),
        "{decision:#?}"
    );
}
