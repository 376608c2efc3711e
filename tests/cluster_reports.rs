//! The audit's PolicyReports against the strict mock API server of `tests/common/mock_api.rs`:
//! each test scripts the requests a report write makes, in order (the Lease, discovery, listing
//! and applying hostguard's reports, status and Events), and any other request fails it. A small
//! store answers the report requests, so that a later audit lists what an earlier one applied.
//! Checked: one report per namespace and a cluster report, in the OpenReports and the
//! wgpolicyk8s format, each result's fields; nothing written when nothing changed; results of
//! deleted objects pruned and a report with none left deleted; nothing written, and status
//! saying so, when the report CRDs are not served.
//!
//! Paths, kinds and fields are those of the OpenReports API (`openreports.io/v1alpha1`, reports
//! and clusterreports) and of `wgpolicyk8s.io/v1alpha2` (policyreports and clusterpolicyreports).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::cluster::{
    audited, deployment_in, event_created, initial_list, leader, lease_acquired, now,
    policy_status, write_statuses,
};
use common::mock_api::{ApiServerVerifier, Expect, Reply, Script, Seen, scripted};
use hostguard::api::{AIWorkload, HostingPolicy};
use hostguard::cluster::audit::Tally;
use hostguard::cluster::inventory::{BuildInput, Built, Inventory, Writers};
use hostguard::cluster::reports::ReportsState;
use hostguard::cluster::status::{self, Written};
use hostguard::policy_report::ReportApi;
use serde_json::{Value, json};

/// The reports the mock API holds, by path, and whether discovery shows their API.
#[derive(Clone)]
struct Reports {
    api: ReportApi,
    served: bool,
    stored: Arc<Mutex<BTreeMap<String, Value>>>,
}

impl Reports {
    fn served(api: ReportApi) -> Reports {
        Reports {
            api,
            served: true,
            stored: Arc::default(),
        }
    }

    fn not_served(api: ReportApi) -> Reports {
        Reports {
            served: false,
            ..Reports::served(api)
        }
    }

    /// The reports held now.
    fn stored(&self) -> BTreeMap<String, Value> {
        self.stored.lock().unwrap().clone()
    }

    fn root(&self) -> String {
        format!("/apis/{}", self.api.api_version())
    }

    fn namespaced(&self, namespace: &str) -> String {
        format!(
            "{}/namespaces/{namespace}/{}/hostguard",
            self.root(),
            self.api.namespaced().1
        )
    }

    fn cluster(&self) -> String {
        format!("{}/{}/hostguard", self.root(), self.api.cluster().1)
    }

    /// The store's answer to the request the script matched.
    fn answer(&self) -> impl FnOnce(&Seen) -> Reply + Send + 'static {
        let reports = self.clone();
        move |r| reports.route(r)
    }

    fn route(&self, r: &Seen) -> Reply {
        let api = self.api;
        let root = self.root();
        let p = r.path.as_str();
        if p == root {
            if !self.served {
                // The group version is not there: discovery answers 404.
                return Reply::not_found();
            }
            return Reply::Json(
                200,
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api.api_version(), "resources": [
                    {"name": api.namespaced().1, "singularName": "", "namespaced": true, "kind": api.namespaced().0, "verbs": ["get", "list", "patch", "delete"]},
                    {"name": api.cluster().1, "singularName": "", "namespaced": false, "kind": api.cluster().0, "verbs": ["get", "list", "patch", "delete"]}
                ]}),
            );
        }
        let mut stored = self.stored.lock().unwrap();
        if p == format!("{root}/{}", api.namespaced().1) {
            let items: Vec<Value> = stored
                .iter()
                .filter(|(k, _)| k.contains("/namespaces/"))
                .map(|(_, v)| v.clone())
                .collect();
            return Reply::Json(
                200,
                json!({"apiVersion": api.api_version(), "kind": format!("{}List", api.namespaced().0), "metadata": {"resourceVersion": "9"}, "items": items}),
            );
        }
        match r.method.as_str() {
            "GET" => match stored.get(p) {
                Some(v) => Reply::Json(200, v.clone()),
                None => Reply::not_found(),
            },
            "PATCH" => {
                stored.insert(p.to_string(), r.body.clone());
                Reply::Json(200, r.body.clone())
            }
            "DELETE" => match stored.remove(p) {
                Some(_) => Reply::status(200, "Success"),
                None => Reply::not_found(),
            },
            _ => panic!("the report store does not serve {r}"),
        }
    }

    /// Discovery of the report API.
    fn discovery(&self) -> Expect {
        Expect::get(&self.root()).reply_with(self.answer())
    }

    /// The list of the namespaced reports hostguard owns.
    fn list(&self) -> Expect {
        Expect::get(&format!("{}/{}", self.root(), self.api.namespaced().1))
            .query("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dhostguard")
            .reply_with(self.answer())
    }

    /// A report applied by server-side apply with hostguard's field manager.
    fn apply(&self, path: String) -> Expect {
        Expect::patch(&path)
            .query("fieldManager=hostguard")
            .query("force=true")
            .check(|s| assert_eq!(s.content_type, "application/apply-patch+yaml"))
            .reply_with(self.answer())
    }

    fn apply_namespaced(&self, namespace: &str) -> Expect {
        self.apply(self.namespaced(namespace))
    }

    fn delete_namespaced(&self, namespace: &str) -> Expect {
        Expect::delete(&self.namespaced(namespace)).reply_with(self.answer())
    }

    fn get_cluster(&self) -> Expect {
        Expect::get(&self.cluster()).reply_with(self.answer())
    }

    fn apply_cluster(&self) -> Expect {
        self.apply(self.cluster())
    }
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

fn inventory() -> (Inventory, Writers) {
    let (inv, mut w) = Inventory::new();
    initial_list(&mut w.policies, vec![policy("azure-only")]);
    initial_list(&mut w.workloads, Vec::<AIWorkload>::new());
    initial_list(&mut w.namespaces, vec![]);
    initial_list(&mut w.nodes, vec![]);
    (inv, w)
}

fn tally(built: &Built, objects: &[Value]) -> Tally {
    audited(Tally::reporting(), built, objects)
}

async fn write(
    writer: &mut status::Writer,
    inv: &Inventory,
    built: &Built,
    t: &Tally,
    at: k8s_openapi::jiff::Timestamp,
) -> Written {
    write_statuses(writer, inv, built, t, at).await.unwrap()
}

fn report_requests(api: &ApiServerVerifier, root: &str) -> Vec<Seen> {
    api.seen()
        .into_iter()
        .filter(|s| s.path.starts_with(root) && s.method != "GET")
        .collect()
}

fn policy_status_patch(api: &ApiServerVerifier) -> Option<Value> {
    api.seen()
        .into_iter()
        .rfind(|s| s.path == "/apis/hostguard.dev/v1alpha1/hostingpolicies/azure-only/status")
        .map(|s| s.body)
}

fn world() -> Vec<Value> {
    vec![
        deployment_in("team-a", "chat", "https://api.openai.com/v1"),
        deployment_in(
            "team-a",
            "embed",
            "https://contoso.openai.azure.com/openai/v1",
        ),
        deployment_in("team-b", "agent", "https://api.openai.com/v1"),
    ]
}

/// What follows the reports in every write: the policy's status, then (the first time the
/// violations of [`world`] are seen) an Event for `chat` in team-a and `agent` in team-b.
fn status_and_events() -> Script {
    Script::new()
        .then(policy_status("azure-only"))
        .then(event_created("team-a"))
        .then(event_created("team-b"))
}

/// The first write of [`world`]'s reports, none there yet: discovery, the list of hostguard's
/// reports, both namespaces' reports applied (in namespace order), the cluster report looked
/// up and applied.
fn first_write(reports: &Reports) -> Script {
    Script::new()
        .then_all(lease_acquired())
        .then(reports.discovery())
        .then(reports.list())
        .then(reports.apply_namespaced("team-a"))
        .then(reports.apply_namespaced("team-b"))
        .then(reports.get_cluster())
        .then(reports.apply_cluster())
        .and(status_and_events())
}

#[tokio::test(start_paused = true)]
async fn one_openreports_report_per_namespace_and_a_cluster_report() {
    let reports = Reports::served(ReportApi::OpenReports);
    let (client, api) = scripted(first_write(&reports));
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

    let s = reports.stored();
    let a = &s["/apis/openreports.io/v1alpha1/namespaces/team-a/reports/hostguard"];
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

    let b = &s["/apis/openreports.io/v1alpha1/namespaces/team-b/reports/hostguard"];
    assert_eq!(b["summary"]["fail"], 1);
    assert_eq!(b["results"][0]["resources"][0]["name"], "agent");

    let c = &s["/apis/openreports.io/v1alpha1/clusterreports/hostguard"];
    assert_eq!(c["kind"], "ClusterReport");
    assert!(c["metadata"].get("namespace").is_none());
    assert_eq!(c["results"][0]["policy"], "azure-only");
    assert_eq!(c["results"][0]["result"], "pass");
    assert_eq!(c["results"][0]["resources"][0]["kind"], "HostingPolicy");

    let status = policy_status_patch(&api).expect("policy status written");
    let condition = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PolicyReports")
        .cloned()
        .expect("PolicyReports condition");
    assert_eq!(condition["status"], "True");
    assert_eq!(condition["reason"], "Written");
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn wgpolicyk8s_reports_use_its_kinds_and_paths() {
    let reports = Reports::served(ReportApi::Wgpolicyk8s);
    let (client, api) = scripted(first_write(&reports));
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let t = tally(&built, &world());
    let mut writer =
        status::Writer::new(client, leadership, "replica-a").with_reports(ReportApi::Wgpolicyk8s);
    write(&mut writer, &inv, &built, &t, now()).await;
    let s = reports.stored();
    let a = &s["/apis/wgpolicyk8s.io/v1alpha2/namespaces/team-a/policyreports/hostguard"];
    assert_eq!(a["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(a["kind"], "PolicyReport");
    let c = &s["/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/hostguard"];
    assert_eq!(c["kind"], "ClusterPolicyReport");
    assert_eq!(s.len(), 3);
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn unchanged_reports_are_not_rewritten_and_deleted_objects_are_pruned() {
    let reports = Reports::served(ReportApi::OpenReports);
    let (client, api) = scripted(
        first_write(&reports)
            // The same findings: the reports are listed and compared, none written; the
            // violations had their Events already.
            .then(reports.discovery())
            .then(reports.list())
            .then(reports.get_cluster())
            .then(policy_status("azure-only"))
            // Pruned: team-a's report applied again, team-b's deleted, the cluster report as
            // it was.
            .then(reports.discovery())
            .then(reports.list())
            .then(reports.apply_namespaced("team-a"))
            .then(reports.delete_namespaced("team-b"))
            .then(reports.get_cluster())
            .then(policy_status("azure-only")),
    );
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let mut writer =
        status::Writer::new(client, leadership, "replica-a").with_reports(ReportApi::OpenReports);
    let root = "/apis/openreports.io/v1alpha1";
    write(&mut writer, &inv, &built, &tally(&built, &world()), now()).await;
    assert_eq!(report_requests(&api, root).len(), 3);

    // The same findings an hour later: nothing is written, timestamps stay.
    let later = now() + std::time::Duration::from_secs(3600);
    let again = write(&mut writer, &inv, &built, &tally(&built, &world()), later).await;
    let r = again.reports.unwrap();
    assert_eq!((r.applied, r.unchanged, r.deleted), (0, 3, 0));
    assert_eq!(report_requests(&api, root).len(), 3);

    // `chat` and all of team-b are deleted; `embed` stays.
    let remaining = vec![world()[1].clone()];
    let pruned = write(&mut writer, &inv, &built, &tally(&built, &remaining), later).await;
    let r = pruned.reports.unwrap();
    assert_eq!((r.applied, r.unchanged, r.deleted), (1, 1, 1));
    let s = reports.stored();
    assert!(!s.contains_key(&format!("{root}/namespaces/team-b/reports/hostguard")));
    let a = &s[&format!("{root}/namespaces/team-a/reports/hostguard")];
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
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn without_the_report_crds_nothing_is_written_and_status_says_so() {
    let reports = Reports::not_served(ReportApi::OpenReports);
    let (client, api) = scripted(
        Script::new()
            .then_all(lease_acquired())
            // Discovery answers 404: the group version is not served, nothing more is asked.
            .then(reports.discovery())
            .and(status_and_events()),
    );
    let leadership = leader(&client).await;
    let (inv, _w) = inventory();
    let built = inv.build(&BuildInput::default());
    let mut writer =
        status::Writer::new(client, leadership, "replica-a").with_reports(ReportApi::OpenReports);
    let written = write(&mut writer, &inv, &built, &tally(&built, &world()), now()).await;
    assert_eq!(written.reports.unwrap().state, ReportsState::NotServed);
    assert!(reports.stored().is_empty());
    let report_calls: Vec<String> = api
        .seen()
        .iter()
        .filter(|r| r.path.starts_with("/apis/openreports.io"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(report_calls, vec!["GET /apis/openreports.io/v1alpha1"]);
    let status = policy_status_patch(&api).expect("policy status written");
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
    api.done().await;
}
