//! The cluster controller against the strict mock API server of `tests/common/mock_api.rs`
//! (kube's `tower_test` service): the Lease acquired, renewed, taken over after expiry and
//! released; status bodies for compliant and violating workloads; Events once per violation;
//! nothing written by a non-leader; a watch error followed by recovery; the audit's paginated
//! lists; ConfigMaps and namespaces fetched on demand.
//!
//! Each test scripts the requests it expects, in order, and any other request fails it; only
//! the ConfigMap watch test, where a watch restart and refetches interleave as they will, uses
//! routes instead (and still fails on a request no route takes).
//!
//! Time is paused in every test: lease expiry and watch backoff advance the clock instead of
//! sleeping.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{
    AUDITED, LEASE_PATH, LEASES, audited, deployment_in, elector, event_created, initial_list,
    leader, lease_acquired, now, policy_status, workload_status, write_statuses,
};
use common::mock_api::{Expect, Reply, Script, Seen, routed, scripted, status};
use hostguard::api::{AIWorkload, HostingPolicy};
use hostguard::cluster::audit::{self, Tally};
use hostguard::cluster::config_maps::{self, ConfigMapCache, Fetcher};
use hostguard::cluster::inventory::{BuildInput, Built, Inventory, Writers};
use hostguard::cluster::lease::Leadership;
use hostguard::cluster::projection::ApplyEvent;
use hostguard::cluster::status::{self, WriteError};
use hostguard::cluster::watch::{self as reflect, Shared};
use hostguard::metrics::{Metrics, ResourceLabel};
use hostguard::snapshot::{ConfigMapSource, Lookup};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

// ---------------------------------------------------------------- lease

/// A Lease store with resourceVersion checks, as the API server keeps one: the scripts say which
/// Lease requests come in which order, the store answers them as the API server would.
#[derive(Clone, Default)]
struct LeaseStore(Arc<Mutex<StoredLease>>);

#[derive(Default)]
struct StoredLease {
    lease: Option<Value>,
    rv: u64,
}

impl StoredLease {
    fn put(&mut self, v: &Value) -> Value {
        self.rv += 1;
        let v = common::cluster::stored(v, self.rv);
        self.lease = Some(v.clone());
        v
    }

    fn route(&mut self, r: &Seen) -> Reply {
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", LEASE_PATH) => match &self.lease {
                Some(l) => Reply::Json(200, l.clone()),
                None => Reply::not_found(),
            },
            ("POST", LEASES) => {
                if self.lease.is_some() {
                    Reply::status(409, "AlreadyExists")
                } else {
                    Reply::Json(201, self.put(&r.body))
                }
            }
            ("PUT", LEASE_PATH) => {
                let sent = r.body["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if sent != self.rv.to_string() {
                    Reply::status(409, "Conflict")
                } else {
                    Reply::Json(200, self.put(&r.body))
                }
            }
            _ => panic!("the Lease store does not serve {r}"),
        }
    }
}

impl LeaseStore {
    fn held_by(holder: &str) -> Self {
        let store = LeaseStore::default();
        store.0.lock().unwrap().put(&json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "hostguard-leader", "namespace": "hostguard"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3}
        }));
        store
    }

    fn answer(&self) -> impl FnOnce(&Seen) -> Reply + Send + 'static {
        let store = self.clone();
        move |r| store.0.lock().unwrap().route(r)
    }

    /// The elector reads the Lease.
    fn get(&self) -> Expect {
        Expect::get(LEASE_PATH).reply_with(self.answer())
    }

    /// The elector creates the Lease.
    fn create(&self) -> Expect {
        Expect::post(LEASES).reply_with(self.answer())
    }

    /// The elector writes the Lease it read (to take, renew or release it).
    fn update(&self) -> Expect {
        Expect::put(LEASE_PATH).reply_with(self.answer())
    }
}

fn lease_writes(seen: &[Seen]) -> Vec<Seen> {
    seen.iter()
        .filter(|s| s.path.starts_with("/apis/coordination.k8s.io") && s.method != "GET")
        .cloned()
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_lease_is_acquired_renewed_and_released() {
    let store = LeaseStore::default();
    let (client, api) = scripted(
        Script::new()
            .then(store.get())
            .then(store.create())
            .then(store.get())
            .then(store.update())
            .then(store.update()),
    );
    let mut a = elector(client, "replica-a");
    let leadership = a.leadership();
    assert!(!leadership.is_leader());

    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(leadership.is_leader());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(a.try_acquire_or_renew().await.unwrap());
    a.release().await;
    assert!(!leadership.is_leader());

    let writes = lease_writes(&api.seen());
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
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_held_lease_is_taken_over_only_after_it_expires() {
    let store = LeaseStore::held_by("replica-b");
    let (client, api) = scripted(
        Script::new()
            .then(store.get())
            .then(store.get())
            .then(store.get())
            .then(store.update()),
    );
    let mut a = elector(client, "replica-a");

    assert!(!a.try_acquire_or_renew().await.unwrap());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(!a.try_acquire_or_renew().await.unwrap(), "not expired yet");
    assert!(
        lease_writes(&api.seen()).is_empty(),
        "a non-holder never writes a live lease"
    );

    // replica-b has not renewed for 15 s as seen from here.
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(a.try_acquire_or_renew().await.unwrap());
    let writes = lease_writes(&api.seen());
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, "PUT");
    assert_eq!(writes[0].body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(writes[0].body["spec"]["leaseTransitions"], 4);
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let store = LeaseStore::held_by("");
    let (client, api) = scripted(Script::new().then(store.get()).then(store.update()));
    let mut a = elector(client, "replica-a");
    assert!(a.try_acquire_or_renew().await.unwrap());
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_conflicting_update_loses_the_race() {
    let store = LeaseStore::held_by("");
    let (client, api) = scripted(
        Script::new()
            .then(store.get())
            // Someone else wrote the Lease between our GET and PUT: the resourceVersion the
            // PUT carries is no longer the Lease's.
            .then(Expect::put(LEASE_PATH).reply_with({
                let store = store.clone();
                move |r| {
                    let mut lease = store.0.lock().unwrap();
                    lease.rv += 1;
                    lease.route(r)
                }
            })),
    );
    let mut a = elector(client, "replica-a");
    assert!(!a.try_acquire_or_renew().await.unwrap());
    assert!(!a.leadership().is_leader());
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_writing_at_the_renew_deadline() {
    let store = LeaseStore::default();
    let (client, api) = scripted(
        Script::new()
            .then(store.get())
            .then(store.create())
            // The renewal's read fails: the API server is broken from here on.
            .then(Expect::get(LEASE_PATH).reply(Reply::status(500, "InternalError"))),
    );
    let mut a = elector(client, "replica-a");
    assert!(a.try_acquire_or_renew().await.unwrap());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(a.try_acquire_or_renew().await.is_err());
    assert!(
        a.leadership().is_leader(),
        "still within the renew deadline"
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(!a.leadership().is_leader(), "10 s after the last renewal");
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn the_election_loop_renews_and_releases_on_stop() {
    let store = LeaseStore::default();
    let (client, api) = scripted(
        Script::new()
            .then(store.get())
            .then(store.create())
            // Renewals at 5, 10 and 15 s.
            .then_all((0..3).flat_map(|_| [store.get(), store.update()]))
            // The release on stop.
            .then(store.update()),
    );
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
    let writes = lease_writes(&api.seen());
    assert_eq!(writes[0].method, "POST");
    let renewals = writes[1..writes.len() - 1].len();
    assert_eq!(renewals, 3, "renewed every 5 s: {writes:?}");
    let last = writes.last().unwrap();
    assert!(last.body["spec"].get("holderIdentity").is_none());
    api.done().await;
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
    deployment_in("team-a", name, base_url)
}

fn inventory() -> (Inventory, Writers) {
    let (inv, mut w) = Inventory::new();
    initial_list(&mut w.policies, vec![policy("azure-only")]);
    initial_list(
        &mut w.workloads,
        vec![aiw("chat", "chat"), aiw("embed", "embed")],
    );
    initial_list(&mut w.namespaces, vec![]);
    initial_list(&mut w.nodes, vec![]);
    (inv, w)
}

fn tally(built: &Built, objects: &[Value]) -> Tally {
    audited(Tally::default(), built, objects)
}

/// The status writes of one audit of [`inventory`]: the policy's, then both AIWorkloads' in the
/// order of their namespace and name.
fn statuses_written() -> Script {
    Script::new()
        .then(policy_status("azure-only"))
        .then(workload_status("team-a", "chat"))
        .then(workload_status("team-a", "embed"))
}

/// A Warning Event published about the Deployment `name`.
fn violation_event(name: &'static str) -> Expect {
    event_created("team-a").body(move |b| assert_eq!(b["regarding"]["name"], name))
}

fn writes(seen: &[Seen]) -> Vec<Seen> {
    seen.iter()
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
    write_statuses(writer, inv, built, t, now())
        .await
        .map(|w| w.events)
}

#[tokio::test(start_paused = true)]
async fn status_bodies_for_a_compliant_and_a_violating_workload() {
    let (client, api) = scripted(
        Script::new()
            .then_all(lease_acquired())
            .and(statuses_written())
            .then(violation_event("chat")),
    );
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

    let w = writes(&api.seen());
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
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn an_invalid_policy_gets_ready_false_with_its_errors() {
    let (client, api) = scripted(
        Script::new()
            .then_all(lease_acquired())
            // Both policies, in the store's order; no Event, since nothing was audited.
            .any_order([policy_status("azure-only"), policy_status("broken")])
            .any_order([
                workload_status("team-a", "chat"),
                workload_status("team-a", "embed"),
            ]),
    );
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
    let w = writes(&api.seen());
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
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn an_invalid_policy_edit_keeps_the_previous_version_enforcing() {
    let (client, api) = scripted(
        Script::new()
            .then_all(lease_acquired())
            .and(statuses_written())
            .then(violation_event("chat")),
    );
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
    let p = writes(&api.seen())
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
    api.done().await;
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
async fn an_object_that_breaks_two_policies_gets_an_event_for_each() {
    // The Recorder keys a series by object, reason, action and related object: with the policy
    // as the related object, the second policy's Event is a new Event with its own note, not
    // a series update of the first policy's.
    let policy_event = |policy: &'static str| {
        event_created("team-a").body(move |b| {
            assert_eq!(b["regarding"]["name"], "chat", "{b}");
            assert_eq!(b["related"]["kind"], "HostingPolicy", "{b}");
            assert_eq!(b["related"]["name"], policy, "{b}");
            let note = b["note"].as_str().unwrap_or_default();
            assert!(
                note.starts_with(&format!("policy {policy} (Deny): ")),
                "{b}"
            );
        })
    };
    let (client, api) = scripted(
        Script::new()
            .then_all(lease_acquired())
            .any_order([policy_status("azure-only"), policy_status("second")])
            .any_order([
                workload_status("team-a", "chat"),
                workload_status("team-a", "embed"),
            ])
            .any_order([policy_event("azure-only"), policy_event("second")]),
    );
    let leadership = leader(&client).await;
    let (inv, mut w) = inventory();
    initial_list(
        &mut w.policies,
        vec![policy("azure-only"), policy("second")],
    );
    let built = inv.build(&BuildInput::default());
    let violating = tally(&built, &[deployment("chat", "https://api.openai.com/v1")]);
    let mut writer = status::Writer::new(client, leadership, "replica-a");
    assert_eq!(
        write(&mut writer, &inv, &built, &violating).await.unwrap(),
        2
    );
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn events_are_emitted_once_per_violation() {
    // kube-runtime's Recorder remembers the Events it published for six minutes, keyed by the
    // object, reason and action (not the note), and publishes a repeat as a `series` update
    // of that Event (a merge PATCH) instead of creating another: so the violation that comes
    // back after being fixed is, on the wire, the first Event of `chat` counted a second time.
    let (client, api) = scripted(
        Script::new()
            .then_all(lease_acquired())
            // The first audit: both violations get an Event.
            .and(statuses_written())
            .then(violation_event("chat"))
            .then(violation_event("other"))
            // The same violations again, then fixed: statuses only (the inventory does not
            // hold what was written, so they differ from it each time).
            .and(statuses_written())
            .and(statuses_written())
            // Broken again: the statuses, and the Event once more.
            .and(statuses_written())
            .then(
                Expect::under(
                    "PATCH",
                    "/apis/events.k8s.io/v1/namespaces/team-a/events/chat.",
                )
                .body(|b| assert_eq!(b["series"]["count"], 2, "{b}"))
                .reply_with(|s| Reply::Json(200, s.body.clone())),
            ),
    );
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

    let events: Vec<Seen> = writes(&api.seen())
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
    let again = api.seen().pop().unwrap();
    assert_eq!(
        again.path,
        format!(
            "/apis/events.k8s.io/v1/namespaces/team-a/events/{}",
            events[0].body["metadata"]["name"].as_str().unwrap()
        ),
        "the Event of the first violation of chat is counted again"
    );
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_non_leader_writes_nothing() {
    // Not even the Lease is asked: any request fails the test.
    let (client, api) = scripted(Script::new());
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(&built, &[deployment("chat", "https://api.openai.com/v1")]);
    let mut writer = status::Writer::new(client, Leadership::default(), "replica-b");
    assert!(matches!(
        write(&mut writer, &inv, &built, &t).await,
        Err(WriteError::NotLeader)
    ));
    assert!(api.seen().is_empty(), "{:#?}", api.seen());
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_past_its_renew_deadline_stops_writing() {
    let (client, api) = scripted(Script::new().then_all(lease_acquired()));
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(&built, &[deployment("chat", "https://api.openai.com/v1")]);
    let before = api.seen().len();
    tokio::time::advance(Duration::from_secs(11)).await;
    let mut writer = status::Writer::new(client, leadership, "replica-a");
    assert!(matches!(
        write(&mut writer, &inv, &built, &t).await,
        Err(WriteError::NotLeader)
    ));
    assert_eq!(api.seen().len(), before);
    api.done().await;
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

const POLICIES: &str = "/apis/hostguard.dev/v1alpha1/hostingpolicies";

/// The watcher's initial (or renewed) list of HostingPolicies.
fn list_policies() -> Expect {
    Expect::get(POLICIES).no_query("watch")
}

/// The watcher's watch of HostingPolicies from `rv`.
fn watch_policies(rv: &str) -> Expect {
    Expect::get(POLICIES)
        .query("watch=true")
        .query(&format!("resourceVersion={rv}"))
}

#[tokio::test(start_paused = true)]
async fn a_watch_error_is_followed_by_a_relist_and_recovery() {
    let (client, api) = scripted(
        Script::new()
            .then(list_policies().reply(Reply::Json(200, policy_list("10", &["first"]))))
            // The watch breaks: the resource version is too old (410 Gone).
            .then(watch_policies("10").reply(Reply::Lines(vec![
                json!({"type": "ERROR", "object": status(410, "Expired")}),
            ])))
            .then(list_policies().reply(Reply::Json(200, policy_list("20", &["first", "second"]))))
            .then(watch_policies("20").reply(Reply::Hang)),
    );

    let (inv, w) = Inventory::new();
    let metrics = Metrics::new();
    let notify = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let synced = Arc::new(AtomicBool::new(false));
    let stream = watcher::watcher(
        kube::Api::<HostingPolicy>::all(client),
        reflect::list_config(),
    )
    .default_backoff();
    let task = tokio::spawn(reflect::reflect(
        "hostingpolicies",
        stream,
        reflect::Whole::new(w.policies, |p: &HostingPolicy| {
            hostguard::cluster::inventory::spec_fingerprint(&p.spec)
        }),
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
    let seen = api.seen();
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
    let page = format!("limit={}", hostguard::cluster::watch::LIST_PAGE_SIZE);
    assert!(seen[0].query_has(&page), "{}", seen[0].query);
    assert!(seen[1].query_has("resourceVersion=10"), "{}", seen[1].query);
    assert!(
        seen[1].query_has("allowWatchBookmarks=true"),
        "{}",
        seen[1].query
    );
    assert!(seen[3].query_has("resourceVersion=20"), "{}", seen[3].query);
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_watch_start_is_retried_and_events_then_arrive() {
    let mut late = serde_json::to_value(policy("late")).unwrap();
    late["metadata"]["resourceVersion"] = json!("11");
    let (client, api) = scripted(
        Script::new()
            .then(list_policies().reply(Reply::Json(200, policy_list("10", &[]))))
            .then(watch_policies("10").reply(Reply::status(500, "InternalError")))
            // Retried from the same resource version, without a new list.
            .then(
                watch_policies("10")
                    .reply(Reply::Lines(vec![json!({"type": "ADDED", "object": late})])),
            )
            // The stream ended; the watch goes on from the last event.
            .then(watch_policies("11").reply(Reply::Hang)),
    );
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
        reflect::Whole::new(w.policies, |p: &HostingPolicy| {
            hostguard::cluster::inventory::spec_fingerprint(&p.spec)
        }),
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
    api.done().await;
}

// ---------------------------------------------------------------- audit lists

/// One page of the audit's list of `path`, the first (`continue_from` None) or a later one.
fn audit_page(path: &str, continue_from: Option<&str>, list: Value) -> Expect {
    let page = Expect::get(path).query("limit=250");
    let page = match continue_from {
        Some(token) => page.query(&format!("continue={token}")),
        None => page.no_query("continue"),
    };
    page.reply(Reply::Json(200, list))
}

/// The single, empty page of each of `paths`.
fn empty_pages<'a>(paths: &'a [&'a str]) -> impl Iterator<Item = Expect> + 'a {
    paths.iter().map(|path| {
        audit_page(
            path,
            None,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}),
        )
    })
}

/// One audit (no ConfigMap fetcher, never interrupted) of the policies and AIWorkloads of
/// [`inventory`], against whatever `client` answers.
async fn audit_of_inventory(client: &kube::Client) -> Result<audit::Tally, audit::AuditError> {
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    audit::run(client, None, &built.policies, &built.snapshot, &|| true).await
}

/// A listed Deployment (list items carry no apiVersion and kind).
fn deployment_item(name: &str) -> Value {
    let mut d = deployment(name, "https://api.openai.com/v1");
    d.as_object_mut().unwrap().remove("apiVersion");
    d.as_object_mut().unwrap().remove("kind");
    d
}

#[tokio::test(start_paused = true)]
async fn the_audit_lists_in_pages_and_leaves_owned_objects_to_their_owner() {
    let item = |name: &str, owner: Option<&str>| {
        let mut d = deployment_item(name);
        if let Some(kind) = owner {
            d["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": kind, "name": "x", "uid": "u", "controller": true
            }]);
        }
        d
    };
    let (client, api) = scripted(
        Script::new()
            .then(audit_page(
                AUDITED[0],
                None,
                json!({
                    "kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {"continue": "page2"},
                    "items": [item("d1", None)]
                }),
            ))
            .then(audit_page(
                AUDITED[0],
                Some("page2"),
                json!({
                    "kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {},
                    "items": [item("d2", None)]
                }),
            ))
            .then_all(empty_pages(&AUDITED[1..3]))
            .then(audit_page(
                AUDITED[3],
                None,
                json!({
                    "kind": "ReplicaSetList", "apiVersion": "apps/v1", "metadata": {},
                    "items": [item("rs-owned", Some("Deployment")), item("rs-bare", None)]
                }),
            ))
            .then_all(empty_pages(&AUDITED[4..])),
    );
    let t = audit_of_inventory(&client).await.unwrap();
    assert_eq!(t.objects, 3, "d1, d2 and the ReplicaSet no Deployment owns");
    let violating: Vec<&str> = t.policies["azure-only"]
        .first
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(violating, ["d1", "d2", "rs-bare"]);
    let seen = api.seen();
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
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn the_audit_fetches_the_config_maps_of_a_page_together() {
    // Three Deployments in three namespaces, each reading a ConfigMap of its own that the API
    // server never answers. Fetched together, the page waits for one deadline (5 s), not one
    // after another (15 s); the three GETs come in any order.
    let item = |namespace: &str| {
        let mut d = deployment_item(&format!("app-{namespace}"));
        d["metadata"]["namespace"] = json!(namespace);
        d["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
            json!([{"configMapRef": {"name": format!("cfg-{namespace}")}}]);
        d
    };
    let hanging = |namespace: &str| {
        Expect::get(&format!(
            "/api/v1/namespaces/{namespace}/configmaps/cfg-{namespace}"
        ))
        .reply(Reply::Hang)
    };
    let (client, api) = scripted(
        Script::new()
            .then(audit_page(
                AUDITED[0],
                None,
                json!({
                    "kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {},
                    "items": [item("ns-a"), item("ns-b"), item("ns-c")]
                }),
            ))
            .any_order([hanging("ns-a"), hanging("ns-b"), hanging("ns-c")])
            .then_all(empty_pages(&AUDITED[1..])),
    );
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let fetcher = Fetcher {
        client: client.clone(),
        cache: ConfigMapCache::new(16),
        metrics: Metrics::new(),
    };
    let started = tokio::time::Instant::now();
    let t = audit::run(
        &client,
        Some(&fetcher),
        &built.policies,
        &built.snapshot,
        &|| true,
    )
    .await
    .unwrap();
    let waited = started.elapsed();
    assert_eq!(t.objects, 3);
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(10),
        "the page waited {waited:?}"
    );
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_audit_stops_listing() {
    // Asked before the first page: nothing is listed.
    let (client, api) = scripted(Script::new());
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let r = audit::run(&client, None, &built.policies, &built.snapshot, &|| false).await;
    assert!(matches!(r, Err(audit::AuditError::Interrupted)));
    assert!(api.seen().is_empty());
    api.done().await;
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
        Lookup::Found(d) => d.get("OPENAI_BASE_URL").map(str::to_string),
        _ => None,
    }
}

/// The GET of the ConfigMap `name` in team-a.
fn get_config_map(name: &str) -> Expect {
    Expect::get(&format!("/api/v1/namespaces/team-a/configmaps/{name}"))
}

#[tokio::test(start_paused = true)]
async fn prefetch_caches_found_and_absent_config_maps_and_a_timeout_leaves_them_unknown() {
    // The three GETs run at once (one `join_all`), so in any order.
    let (client, api) = scripted(Script::new().any_order([
        get_config_map("endpoints").reply(Reply::Json(
            200,
            config_map("endpoints", "1", "https://api.openai.com/v1"),
        )),
        // This one does not exist.
        get_config_map("missing").reply(Reply::not_found()),
        get_config_map("slow").reply(Reply::Hang),
    ]));
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
    let before = api.seen().len();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    fetcher.fetch_missing("team-a", &names[..2], deadline).await;
    assert_eq!(api.seen().len(), before);
    assert!(api.seen().iter().all(|s| s.method == "GET"));
    api.done().await;
}

fn cm_meta(name: &str, rv: &str) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": {"name": name, "namespace": "team-a", "resourceVersion": rv}})
}

#[tokio::test(start_paused = true)]
async fn the_config_map_watch_refreshes_changed_and_forgets_deleted_entries() {
    // Routed, not scripted: once the first watch has delivered its events, the watcher's next
    // watch and the refetch workers' GET race, and the test may stop before the watch comes.
    let mut watches = 0;
    let (client, api) = routed(move |r| match r.path.as_str() {
        "/api/v1/configmaps" if r.query_has("watch=true") => {
            watches += 1;
            Some(if watches == 1 {
                Reply::Lines(vec![
                    json!({"type": "MODIFIED", "object": cm_meta("endpoints", "2")}),
                    json!({"type": "MODIFIED", "object": cm_meta("unrelated", "9")}),
                    json!({"type": "DELETED", "object": cm_meta("doomed", "3")}),
                ])
            } else {
                Reply::Hang
            })
        }
        "/api/v1/configmaps" => Some(Reply::Json(
            200,
            json!({"apiVersion": "v1", "kind": "PartialObjectMetadataList",
                   "metadata": {"resourceVersion": "1"},
                   "items": [cm_meta("endpoints", "1"), cm_meta("doomed", "1"), cm_meta("unrelated", "1")]}),
        )),
        "/api/v1/namespaces/team-a/configmaps/endpoints" => Some(Reply::Json(
            200,
            config_map(
                "endpoints",
                "2",
                "https://contoso.openai.azure.com/openai/v1",
            ),
        )),
        _ => None,
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
    let gets: Vec<String> = api
        .seen()
        .iter()
        .filter(|s| s.path.starts_with("/api/v1/namespaces/"))
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(gets, ["/api/v1/namespaces/team-a/configmaps/endpoints"]);
    api.done().await;
}

// ---------------------------------------------------------------- issue 14: availability

#[tokio::test(start_paused = true)]
async fn a_refetch_that_hangs_does_not_hold_up_the_config_map_watch() {
    // The watch reports a change to "endpoints" (its GET never answers), then deletes
    // "doomed": the deletion must land while the refetch still hangs. The events come from
    // the test, not from a watch: the refetch is the only request.
    let (client, api) =
        scripted(Script::new().then(get_config_map("endpoints").reply(Reply::Hang)));
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
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_relist_that_no_longer_shows_a_cached_config_map_asks_before_forgetting_it() {
    // The list comes back without "endpoints", but the GET (newer than the list) still finds
    // it: it stays cached, with the GET's data.
    let (client, api) = scripted(Script::new().then(get_config_map("endpoints").reply(
        Reply::Json(
            200,
            config_map(
                "endpoints",
                "5",
                "https://contoso.openai.azure.com/openai/v1",
            ),
        ),
    )));
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
        api.seen()
            .iter()
            .any(|s| s.is("GET", "/api/v1/namespaces/team-a/configmaps/endpoints"))
    );
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_status_is_not_written_again() {
    let (client, api) = scripted(
        Script::new()
            .then_all(lease_acquired())
            .and(statuses_written())
            .then(violation_event("chat"))
            // The second audit writes nothing; the third, the policy and chat, whose results
            // changed (and no Event: nothing violates any more).
            .then(policy_status("azure-only"))
            .then(workload_status("team-a", "chat")),
    );
    let leadership = leader(&client).await;
    let (inv, mut w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(&built, &[deployment("chat", "https://api.openai.com/v1")]);
    let mut writer = status::Writer::new(client, leadership, "replica-a");
    let first = write_statuses(&mut writer, &inv, &built, &t, now())
        .await
        .unwrap();
    assert_eq!((first.statuses, first.unchanged), (3, 0));
    // The watch delivers what was written (the mock answers a patch with its body).
    let patches: Vec<Seen> = writes(&api.seen())
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
            // The store keeps no whole AIWorkload: the same one again, now with its status.
            let mut aiw = aiw(name, name);
            aiw.status = Some(serde_json::from_value(p.body["status"].clone()).unwrap());
            w.workloads.apply_watcher_event(&Event::Apply(aiw));
        }
    }
    // An hour later, the same results: nothing is written, lastAuditTime stays.
    let later: k8s_openapi::jiff::Timestamp = "2026-03-01T13:00:00Z".parse().unwrap();
    let again = write_statuses(&mut writer, &inv, &built, &t, later)
        .await
        .unwrap();
    assert_eq!((again.statuses, again.unchanged), (0, 3));
    let patch_count = |seen: &[Seen]| {
        writes(seen)
            .into_iter()
            .filter(|s| s.method == "PATCH")
            .count()
    };
    assert_eq!(patch_count(&api.seen()), 3);
    // A changed result is written, with the new time.
    let fixed = tally(
        &built,
        &[deployment(
            "chat",
            "https://contoso.openai.azure.com/openai/v1",
        )],
    );
    let changed = write_statuses(&mut writer, &inv, &built, &fixed, later)
        .await
        .unwrap();
    assert_eq!(changed.statuses, 2, "the policy and the chat AIWorkload");
    let last = writes(&api.seen())
        .into_iter()
        .rfind(|s| s.path.ends_with("/hostingpolicies/azure-only/status"))
        .unwrap();
    assert_eq!(last.body["status"]["violations"], 0);
    assert_eq!(last.body["status"]["lastAuditTime"], "2026-03-01T13:00:00Z");
    api.done().await;
}

/// An empty list may come with `"items": null` and no metadata (kube-core's `ObjectList` reads
/// that as empty): the audit counts nothing for it and goes on to the next kind.
#[tokio::test(start_paused = true)]
async fn a_list_with_null_items_is_an_empty_list() {
    let (client, api) = scripted(
        Script::new()
            .then(audit_page(
                AUDITED[0],
                None,
                json!({"kind": "DeploymentList", "apiVersion": "apps/v1", "items": null}),
            ))
            .then(audit_page(
                AUDITED[1],
                None,
                json!({"kind": "StatefulSetList", "apiVersion": "apps/v1", "metadata": {},
                    "items": [deployment_item("s1")]}),
            ))
            .then_all(empty_pages(&AUDITED[2..])),
    );
    let t = audit_of_inventory(&client)
        .await
        .expect("an empty list is not an error");
    assert_eq!(t.objects, 1, "only the StatefulSet page has an object");
    api.done().await;
}

/// A page the audit cannot read in full (an item that is not an object, items that are not a
/// sequence, a body that is not a list at all) ends the audit with an error naming the kind:
/// the audit never passes over objects it could not judge and reports the rest as the whole.
#[tokio::test(start_paused = true)]
async fn a_page_with_an_unreadable_item_fails_the_audit_and_names_the_kind() {
    let page = |items: Value| json!({"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {}, "items": items});
    for (body, expected) in [
        (
            page(json!([deployment_item("d1"), "not an object"])),
            "is not an object",
        ),
        (page(json!({"d1": deployment_item("d1")})), "invalid type"),
        // A 200 that is no list (a proxy's or an aggregated API's answer): not "no objects".
        (
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            "missing field `items`",
        ),
    ] {
        let (client, api) = scripted(Script::new().then(audit_page(AUDITED[0], None, body)));
        let error = audit_of_inventory(&client)
            .await
            .expect_err("an unreadable page fails the audit");
        let message = error.to_string();
        assert!(
            message.starts_with("listing Deployment: ") && message.contains(expected),
            "{message}"
        );
        api.done().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_continue_token_relists_the_kind_without_counting_twice() {
    let first_page = || {
        audit_page(
            AUDITED[0],
            None,
            json!({"kind": "DeploymentList", "apiVersion": "apps/v1",
            "metadata": {"continue": "page2"}, "items": [deployment_item("d1")]}),
        )
    };
    let (client, api) = scripted(
        Script::new()
            // First pass: page 1, then the token has expired.
            .then(first_page())
            .then(
                Expect::get(AUDITED[0])
                    .query("limit=250")
                    .query("continue=page2")
                    .reply(Reply::status(410, "Expired")),
            )
            // From the start again: both pages.
            .then(first_page())
            .then(audit_page(
                AUDITED[0],
                Some("page2"),
                json!({"kind": "DeploymentList", "apiVersion": "apps/v1",
                "metadata": {}, "items": [deployment_item("d2")]}),
            ))
            .then_all(empty_pages(&AUDITED[1..])),
    );
    let t = audit_of_inventory(&client)
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
    let lists = api
        .seen()
        .iter()
        .filter(|s| s.path == "/apis/apps/v1/deployments")
        .count();
    assert_eq!(lists, 4);
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn pods_of_controllers_the_audit_does_not_list_are_audited() {
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
    let pods = vec![
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
    ];
    let (client, api) = scripted(Script::new().then_all(empty_pages(&AUDITED[..7])).then(
        audit_page(
            AUDITED[7],
            None,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": pods}),
        ),
    ));
    let t = audit_of_inventory(&client).await.unwrap();
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
    api.done().await;
}

// ---------------------------------------------------------------- namespaces fetched on demand

#[tokio::test(start_paused = true)]
async fn a_namespace_the_watch_has_not_delivered_is_fetched_within_the_deadline() {
    use hostguard::cluster::namespaces::{NamespaceCache, NamespaceFetcher};
    use hostguard::snapshot::NamespaceSource;
    // One after the other, in the order asked; "watched" is never fetched.
    let (client, api) = scripted(
        Script::new()
            .then(Expect::get("/api/v1/namespaces/fresh").reply(Reply::Json(
                200,
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                       "metadata": {"name": "fresh", "labels": {"tier": "prod"}}}),
            )))
            // This one does not exist.
            .then(Expect::get("/api/v1/namespaces/gone").reply(Reply::not_found()))
            .then(Expect::get("/api/v1/namespaces/slow").reply(Reply::Hang)),
    );
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
    let paths: Vec<String> = api.seen().iter().map(|s| s.path.clone()).collect();
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
    assert_eq!(api.seen().len(), 3);

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
            object: Some((&d).into()),
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
    api.done().await;
}
