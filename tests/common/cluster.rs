//! Fixtures of the in-process cluster tests (`cluster_controller`, `cluster_reports`,
//! `cluster_snapshot`), kept in one place so that the tests agree on them: a reflector's initial
//! list, the leader Lease and the expected requests of the writes every audit makes (status by
//! server-side apply, Events), for scripts of the strict mock API server in [`super::mock_api`].

use hostguard::cluster::audit::{self, Tally};
use hostguard::cluster::inventory::{Built, Inventory};
use hostguard::cluster::lease::{Elector, Leadership, Timings};
use hostguard::cluster::projection::ApplyEvent;
use hostguard::cluster::status::{self, WriteError, Written};
use kube::Client;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::mock_api::{Expect, Reply};

/// Where the Lease lives, as the chart configures it.
pub const LEASE_NAMESPACE: &str = "hostguard";
pub const LEASE_NAME: &str = "hostguard-leader";
/// The Lease collection (creates go here) and the Lease itself.
pub const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/hostguard/leases";
pub const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/hostguard/leases/hostguard-leader";

/// The collections of the built-in kinds the audit lists, in its order.
pub const AUDITED: [&str; 8] = [
    "/apis/apps/v1/deployments",
    "/apis/apps/v1/statefulsets",
    "/apis/apps/v1/daemonsets",
    "/apis/apps/v1/replicasets",
    "/api/v1/replicationcontrollers",
    "/apis/batch/v1/jobs",
    "/apis/batch/v1/cronjobs",
    "/api/v1/pods",
];

/// Feeds `items` to a reflector store as a watch's initial list does.
pub fn initial_list<K>(w: &mut impl ApplyEvent<K>, items: Vec<K>) {
    w.apply_watcher_event(&Event::Init);
    for i in items {
        w.apply_watcher_event(&Event::InitApply(i));
    }
    w.apply_watcher_event(&Event::InitDone);
}

pub fn elector(client: Client, identity: &str) -> Elector {
    Elector::new(
        client,
        LEASE_NAMESPACE,
        LEASE_NAME,
        identity,
        Timings::default(),
    )
}

/// Makes replica-a the leader; the mock must expect [`lease_acquired`] first.
pub async fn leader(client: &Client) -> Leadership {
    let mut e = elector(client.clone(), "replica-a");
    assert!(e.try_acquire_or_renew().await.unwrap());
    // The leadership outlives the elector: it stays valid until the renew deadline.
    e.leadership()
}

/// `body` as the API server returns it after a write: with its new resourceVersion.
pub fn stored(body: &Value, resource_version: u64) -> Value {
    let mut v = body.clone();
    v["metadata"]["resourceVersion"] = json!(resource_version.to_string());
    v
}

/// The requests of [`leader`] when no Lease exists yet: the GET finds none, the POST creates it.
pub fn lease_acquired() -> [Expect; 2] {
    [
        Expect::get(LEASE_PATH).reply(Reply::not_found()),
        Expect::post(LEASES).reply_with(|s| Reply::Json(201, stored(&s.body, 1))),
    ]
}

/// A status write by server-side apply with hostguard's field manager, answered with what it
/// applied (as the API server does when hostguard owns the whole status).
pub fn status_applied(path: &str) -> Expect {
    Expect::patch(path)
        .query("fieldManager=hostguard")
        .query("force=true")
        .check(|s| assert_eq!(s.content_type, "application/apply-patch+yaml"))
        .reply_with(|s| Reply::Json(200, s.body.clone()))
}

/// The status write of a HostingPolicy.
pub fn policy_status(name: &str) -> Expect {
    status_applied(&format!(
        "/apis/hostguard.dev/v1alpha1/hostingpolicies/{name}/status"
    ))
}

/// The status write of an AIWorkload.
pub fn workload_status(namespace: &str, name: &str) -> Expect {
    status_applied(&format!(
        "/apis/hostguard.dev/v1alpha1/namespaces/{namespace}/aiworkloads/{name}/status"
    ))
}

/// A new Event in `namespace`, created as sent.
pub fn event_created(namespace: &str) -> Expect {
    Expect::post(&format!(
        "/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    ))
    .reply_with(|s| Reply::Json(201, s.body.clone()))
}

/// A Deployment whose one container calls OpenAI at `base_url`; pods labelled `app: <name>`.
pub fn deployment_in(namespace: &str, name: &str, base_url: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "i", "env": [
                {"name": "OPENAI_API_KEY", "value": "sk-test"},
                {"name": "OPENAI_BASE_URL", "value": base_url}
            ]}]}
        }}
    })
}

/// `objects` evaluated into `tally` one by one, as the audit does with what it lists.
pub fn audited(mut tally: Tally, built: &Built, objects: &[Value]) -> Tally {
    for o in objects {
        audit::evaluate_into(&mut tally, o, &built.policies, &built.snapshot);
    }
    tally
}

/// One status write after an audit that found `tally` at `at`, of the policies and
/// AIWorkloads `inv` holds, in the states `built` gives them.
pub async fn write_statuses(
    writer: &mut status::Writer,
    inv: &Inventory,
    built: &Built,
    tally: &Tally,
    at: k8s_openapi::jiff::Timestamp,
) -> Result<Written, WriteError> {
    writer
        .write(
            &inv.policies.state(),
            status::PolicyStates {
                invalid: &built.invalid_policies,
                enforced_instead: &built.enforced_instead,
                shadowed: &built.shadowed,
            },
            &inv.workloads.values(),
            tally,
            at,
        )
        .await
}

pub fn now() -> k8s_openapi::jiff::Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}
