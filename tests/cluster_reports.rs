//! The audit's PolicyReports against a strict mock API server: it answers only the requests a
//! report write may make (discovery, listing and applying hostguard's reports, the Lease,
//! status and Events) from a small store, and fails the test on any other. Checked: one report
//! per namespace and a cluster report, in the OpenReports and the wgpolicyk8s format, each
//! result's fields; nothing written when nothing changed; results of deleted objects pruned and
//! a report with none left deleted; nothing written, and status saying so, when the report CRDs
//! are not served.
//!
//! Paths, kinds and fields are those of the OpenReports API (`openreports.io/v1alpha1`, reports
//! and clusterreports) and of `wgpolicyk8s.io/v1alpha2` (policyreports and clusterpolicyreports).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hostguard::api::{AIWorkload, HostingPolicy};
use hostguard::cluster::audit::{self, Tally};
use hostguard::cluster::inventory::{BuildInput, Built, Inventory, Writers};
use hostguard::cluster::lease::{Elector, Leadership, Timings};
use hostguard::cluster::reports::ReportsState;
use hostguard::cluster::status::{self, Written};
use hostguard::policy_report::ReportApi;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// What the mock API holds and answers.
#[derive(Default)]
struct Store {
    /// Whether discovery shows the report API.
    served: Option<ReportApi>,
    lease: Option<Value>,
    /// Reports by path.
    reports: BTreeMap<String, Value>,
    /// Requests that no route takes.
    unexpected: Vec<String>,
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/hostguard/leases";

impl Store {
    fn route(&mut self, r: &Seen) -> (u16, Value) {
        let m = r.method.as_str();
        let p = r.path.as_str();
        if p.starts_with(LEASES) {
            return match (m, &self.lease) {
                ("GET", Some(l)) => (200, l.clone()),
                ("GET", None) => (404, status(404, "NotFound")),
                ("POST", None) | ("PUT", Some(_)) => {
                    let mut l = r.body.clone();
                    l["metadata"]["resourceVersion"] = json!("1");
                    self.lease = Some(l.clone());
                    (200, l)
                }
                _ => self.unexpected(r),
            };
        }
        if p.starts_with("/apis/hostguard.dev/v1alpha1/") && p.ends_with("/status") && m == "PATCH"
        {
            return (200, r.body.clone());
        }
        if p.starts_with("/apis/events.k8s.io/v1/namespaces/") && m == "POST" {
            return (201, r.body.clone());
        }
        for api in [ReportApi::OpenReports, ReportApi::Wgpolicyk8s] {
            let root = format!("/apis/{}", api.api_version());
            if p == root && m == "GET" {
                return match self.served {
                    Some(served) if served == api => (
                        200,
                        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api.api_version(), "resources": [
                            {"name": api.namespaced().1, "singularName": "", "namespaced": true, "kind": api.namespaced().0, "verbs": ["get", "list", "patch", "delete"]},
                            {"name": api.cluster().1, "singularName": "", "namespaced": false, "kind": api.cluster().0, "verbs": ["get", "list", "patch", "delete"]}
                        ]}),
                    ),
                    _ => (404, status(404, "NotFound")),
                };
            }
            if Some(api) != self.served || !p.starts_with(&root) {
                continue;
            }
            let list = format!("{root}/{}", api.namespaced().1);
            if p == list && m == "GET" {
                assert!(
                    r.query
                        .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dhostguard"),
                    "{}",
                    r.query
                );
                let items: Vec<Value> = self
                    .reports
                    .iter()
                    .filter(|(k, _)| k.contains("/namespaces/"))
                    .map(|(_, v)| v.clone())
                    .collect();
                return (
                    200,
                    json!({"apiVersion": api.api_version(), "kind": format!("{}List", api.namespaced().0), "metadata": {"resourceVersion": "9"}, "items": items}),
                );
            }
            let namespaced = p.starts_with(&format!("{root}/namespaces/"))
                && p.ends_with(&format!("/{}/hostguard", api.namespaced().1));
            let cluster = p == format!("{root}/{}/hostguard", api.cluster().1);
            if !(namespaced || cluster) {
                return self.unexpected(r);
            }
            return match m {
                "GET" => match self.reports.get(p) {
                    Some(v) => (200, v.clone()),
                    None => (404, status(404, "NotFound")),
                },
                "PATCH" => {
                    assert_eq!(r.content_type, "application/apply-patch+yaml");
                    assert!(r.query.contains("fieldManager=hostguard"), "{}", r.query);
                    assert!(r.query.contains("force=true"), "{}", r.query);
                    self.reports.insert(p.to_string(), r.body.clone());
                    (200, r.body.clone())
                }
                "DELETE" => match self.reports.remove(p) {
                    Some(_) => (200, status(200, "Success")),
                    None => (404, status(404, "NotFound")),
                },
                _ => self.unexpected(r),
            };
        }
        self.unexpected(r)
    }

    fn unexpected(&mut self, r: &Seen) -> (u16, Value) {
        self.unexpected
            .push(format!("{} {}?{}", r.method, r.path, r.query));
        (500, status(500, "unexpected request"))
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn mock_api(store: Shared<Store>) -> (Client, Shared<Vec<Seen>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Shared<Vec<Seen>> = Arc::default();
    let seen = Arc::clone(&log);
    tokio::spawn(async move {
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
            let (code, v) = store.lock().unwrap().route(&s);
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&v).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), log)
}

fn policy(name: &str) -> HostingPolicy {
    serde_json::from_value(json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "HostingPolicy",
        "metadata": {"name": name, "generation": 3, "uid": "policy-uid"},
        "spec": {
            "provider": "openai", "apiClasses": ["stateless"], "action": "Deny",
            "endpoints": {"allowedHosts": ["*.openai.azure.com"]}
        }
    }))
    .unwrap()
}

fn deployment(namespace: &str, name: &str, base_url: &str) -> Value {
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
    list(&mut w.workloads, Vec::<AIWorkload>::new());
    list(&mut w.namespaces, vec![]);
    list(&mut w.nodes, vec![]);
    (inv, w)
}

fn tally(built: &Built, objects: &[Value]) -> Tally {
    let mut t = Tally::reporting();
    for o in objects {
        audit::evaluate_into(&mut t, o, &built.policies, &built.snapshot);
    }
    t
}

async fn leader(client: &Client) -> Leadership {
    let mut e = Elector::new(
        client.clone(),
        "hostguard",
        "hostguard-leader",
        "replica-a",
        Timings::default(),
    );
    assert!(e.try_acquire_or_renew().await.unwrap());
    e.leadership()
}

fn now() -> k8s_openapi::jiff::Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

async fn write(
    writer: &mut status::Writer,
    inv: &Inventory,
    built: &Built,
    t: &Tally,
    at: k8s_openapi::jiff::Timestamp,
) -> Written {
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
            at,
        )
        .await
        .unwrap()
}

fn report_requests(log: &Shared<Vec<Seen>>, root: &str) -> Vec<Seen> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.starts_with(root) && s.method != "GET")
        .cloned()
        .collect()
}

fn policy_status_patch(log: &Shared<Vec<Seen>>) -> Option<Value> {
    log.lock()
        .unwrap()
        .iter()
        .rfind(|s| s.path == "/apis/hostguard.dev/v1alpha1/hostingpolicies/azure-only/status")
        .map(|s| s.body.clone())
}

fn world() -> Vec<Value> {
    vec![
        deployment("team-a", "chat", "https://api.openai.com/v1"),
        deployment(
            "team-a",
            "embed",
            "https://contoso.openai.azure.com/openai/v1",
        ),
        deployment("team-b", "agent", "https://api.openai.com/v1"),
    ]
}

#[tokio::test(start_paused = true)]
async fn one_openreports_report_per_namespace_and_a_cluster_report() {
    let store: Shared<Store> = Arc::new(Mutex::new(Store {
        served: Some(ReportApi::OpenReports),
        ..Default::default()
    }));
    let (client, log) = mock_api(store.clone());
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(&built, &world());
    let mut writer =
        status::Writer::new(client, leadership, "replica-a").with_reports(ReportApi::OpenReports);
    let written = write(&mut writer, &inv, &built, &t, now()).await;
    let r = written.reports.expect("reports on");
    assert_eq!(r.state, ReportsState::Written);
    assert_eq!((r.applied, r.unchanged, r.deleted), (3, 0, 0));

    let s = store.lock().unwrap();
    assert!(s.unexpected.is_empty(), "{:#?}", s.unexpected);
    let a = &s.reports["/apis/openreports.io/v1alpha1/namespaces/team-a/reports/hostguard"];
    assert_eq!(a["apiVersion"], "openreports.io/v1alpha1");
    assert_eq!(a["kind"], "Report");
    assert_eq!(a["metadata"]["name"], "hostguard");
    assert_eq!(a["metadata"]["namespace"], "team-a");
    assert_eq!(
        a["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "hostguard"
    );
    assert_eq!(a["source"], "hostguard");
    assert_eq!(
        a["summary"],
        json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    let results = a["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{results:#?}");
    let fail = results.iter().find(|r| r["result"] == "fail").unwrap();
    assert_eq!(fail["policy"], "azure-only");
    assert_eq!(fail["rule"], "allowed-endpoint");
    assert_eq!(fail["severity"], "high");
    assert_eq!(fail["source"], "hostguard");
    assert_eq!(
        fail["resources"],
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "team-a", "name": "chat", "uid": "uid-chat"}])
    );
    let path = "spec.template.spec.containers[0].env[OPENAI_BASE_URL]";
    assert_eq!(fail["properties"]["fieldPath"], path);
    let message = fail["message"].as_str().unwrap();
    assert!(message.starts_with(path), "{message}");
    assert!(
        message.contains("\"https://api.openai.com/v1\""),
        "{message}"
    );
    assert_eq!(
        fail["timestamp"],
        json!({"seconds": now().as_second(), "nanos": 0})
    );
    let pass = results.iter().find(|r| r["result"] == "pass").unwrap();
    assert_eq!(pass["resources"][0]["name"], "embed");
    assert_eq!(pass["policy"], "azure-only");

    let b = &s.reports["/apis/openreports.io/v1alpha1/namespaces/team-b/reports/hostguard"];
    assert_eq!(b["summary"]["fail"], 1);
    assert_eq!(b["results"][0]["resources"][0]["name"], "agent");

    let c = &s.reports["/apis/openreports.io/v1alpha1/clusterreports/hostguard"];
    assert_eq!(c["kind"], "ClusterReport");
    assert!(c["metadata"].get("namespace").is_none());
    assert_eq!(c["results"][0]["policy"], "azure-only");
    assert_eq!(c["results"][0]["result"], "pass");
    assert_eq!(c["results"][0]["resources"][0]["kind"], "HostingPolicy");
    drop(s);

    let status = policy_status_patch(&log).expect("policy status written");
    let condition = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PolicyReports")
        .cloned()
        .expect("PolicyReports condition");
    assert_eq!(condition["status"], "True");
    assert_eq!(condition["reason"], "Written");
}

#[tokio::test(start_paused = true)]
async fn wgpolicyk8s_reports_use_its_kinds_and_paths() {
    let store: Shared<Store> = Arc::new(Mutex::new(Store {
        served: Some(ReportApi::Wgpolicyk8s),
        ..Default::default()
    }));
    let (client, _log) = mock_api(store.clone());
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(&built, &world());
    let mut writer =
        status::Writer::new(client, leadership, "replica-a").with_reports(ReportApi::Wgpolicyk8s);
    write(&mut writer, &inv, &built, &t, now()).await;
    let s = store.lock().unwrap();
    assert!(s.unexpected.is_empty(), "{:#?}", s.unexpected);
    let a = &s.reports["/apis/wgpolicyk8s.io/v1alpha2/namespaces/team-a/policyreports/hostguard"];
    assert_eq!(a["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(a["kind"], "PolicyReport");
    let c = &s.reports["/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/hostguard"];
    assert_eq!(c["kind"], "ClusterPolicyReport");
    assert_eq!(s.reports.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn unchanged_reports_are_not_rewritten_and_deleted_objects_are_pruned() {
    let store: Shared<Store> = Arc::new(Mutex::new(Store {
        served: Some(ReportApi::OpenReports),
        ..Default::default()
    }));
    let (client, log) = mock_api(store.clone());
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let mut writer =
        status::Writer::new(client, leadership, "replica-a").with_reports(ReportApi::OpenReports);
    let root = "/apis/openreports.io/v1alpha1";
    write(&mut writer, &inv, &built, &tally(&built, &world()), now()).await;
    assert_eq!(report_requests(&log, root).len(), 3);

    // The same findings an hour later: nothing is written, timestamps stay.
    let later = now() + std::time::Duration::from_secs(3600);
    let again = write(&mut writer, &inv, &built, &tally(&built, &world()), later).await;
    let r = again.reports.unwrap();
    assert_eq!((r.applied, r.unchanged, r.deleted), (0, 3, 0));
    assert_eq!(report_requests(&log, root).len(), 3);

    // `chat` and all of team-b are deleted; `embed` stays.
    let remaining = vec![world()[1].clone()];
    let pruned = write(&mut writer, &inv, &built, &tally(&built, &remaining), later).await;
    let r = pruned.reports.unwrap();
    assert_eq!((r.applied, r.unchanged, r.deleted), (1, 1, 1));
    let s = store.lock().unwrap();
    assert!(s.unexpected.is_empty(), "{:#?}", s.unexpected);
    assert!(
        !s.reports
            .contains_key(&format!("{root}/namespaces/team-b/reports/hostguard"))
    );
    let a = &s.reports[&format!("{root}/namespaces/team-a/reports/hostguard")];
    let results = a["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0]["resources"][0]["name"], "embed");
    assert_eq!(results[0]["result"], "pass");
    // Still the time it was first found.
    assert_eq!(results[0]["timestamp"]["seconds"], now().as_second());
    assert_eq!(
        a["summary"],
        json!({"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0})
    );
}

#[tokio::test(start_paused = true)]
async fn without_the_report_crds_nothing_is_written_and_status_says_so() {
    let store: Shared<Store> = Arc::new(Mutex::new(Store::default()));
    let (client, log) = mock_api(store.clone());
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let mut writer =
        status::Writer::new(client, leadership, "replica-a").with_reports(ReportApi::OpenReports);
    let written = write(&mut writer, &inv, &built, &tally(&built, &world()), now()).await;
    assert_eq!(written.reports.unwrap().state, ReportsState::NotServed);
    let s = store.lock().unwrap();
    assert!(s.unexpected.is_empty(), "{:#?}", s.unexpected);
    assert!(s.reports.is_empty());
    drop(s);
    let report_calls: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.starts_with("/apis/openreports.io"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(report_calls, vec!["GET /apis/openreports.io/v1alpha1"]);
    let status = policy_status_patch(&log).expect("policy status written");
    let condition = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PolicyReports")
        .cloned()
        .expect("PolicyReports condition");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "CRDNotServed");
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .contains("openreports.io/v1alpha1"),
        "{condition}"
    );
}
