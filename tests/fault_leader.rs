//! Two real `hostguard serve` processes (cluster mode) against one mock API server's Lease:
//! exactly one leads; `kill -9` of the leader hands the Lease to the other within the lease
//! duration; and no status, Event or audit list ever comes from a replica that does not hold
//! the Lease at that moment.
//!
//! The mock is strict: it knows each request hostguard may make (lists and watches of what it
//! caches, the Lease, the audit's lists, status patches, Events) and records anything else,
//! which fails the test. Each replica presents its own bearer token, so the mock knows who asks.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{Server, admin_get, eventually};
use serde_json::{Value, json};

const NS: &str = "hostguard-ha";
const LEASE_DURATION: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    who: String,
    method: String,
    path: String,
    /// Who held an unexpired Lease when the call arrived.
    holder: Option<String>,
}

#[derive(Default)]
struct Mock {
    calls: Mutex<Vec<Call>>,
    unexpected: Mutex<Vec<String>>,
    lease: Mutex<Option<(Value, u64, Instant)>>,
    /// (when, new holder) for every change of holder.
    transitions: Mutex<Vec<(Instant, String)>>,
    watches: Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Bytes>>>,
}

impl Mock {
    /// The holder of the Lease, if it was renewed within its duration.
    fn holder(&self) -> Option<String> {
        let lease = self.lease.lock().unwrap();
        let (value, _, renewed) = lease.as_ref()?;
        let holder = value["spec"]["holderIdentity"].as_str()?.to_string();
        let secs = value["spec"]["leaseDurationSeconds"].as_u64().unwrap_or(0);
        (renewed.elapsed() < Duration::from_secs(secs)).then_some(holder)
    }
}

fn json_response(code: StatusCode, v: Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

fn failure(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

fn list(items: Vec<Value>) -> Response {
    json_response(
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

fn policy() -> Value {
    json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "HostingPolicy",
        "metadata": {"name": "ha-policy", "resourceVersion": "1", "generation": 1, "uid": "p-1"},
        "spec": {"provider": "openai", "apiClasses": ["stateless"], "action": "Deny",
                 "endpoints": {"allowedHosts": ["*.openai.azure.com"]}}
    })
}

/// The paths of what hostguard lists (and watches) to build its caches.
const CACHED: &[&str] = &[
    "/apis/hostguard.dev/v1alpha1/hostingpolicies",
    "/apis/hostguard.dev/v1alpha1/aiworkloads",
    "/api/v1/namespaces",
    "/api/v1/nodes",
    "/api/v1/configmaps",
];

/// The paths the audit lists.
const AUDITED: &[&str] = &[
    "/apis/apps/v1/deployments",
    "/apis/apps/v1/statefulsets",
    "/apis/apps/v1/daemonsets",
    "/apis/apps/v1/replicasets",
    "/api/v1/replicationcontrollers",
    "/apis/batch/v1/jobs",
    "/apis/batch/v1/cronjobs",
    "/api/v1/pods",
];

async fn handle(
    State(mock): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let who = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("anonymous")
        .to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    mock.calls.lock().unwrap().push(Call {
        at: Instant::now(),
        who: who.clone(),
        method: method.to_string(),
        path: path.clone(),
        holder: mock.holder(),
    });
    let lease_collection = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    let lease_path = format!("{lease_collection}/hostguard-leader");
    let watch = query.split('&').any(|p| p == "watch=true");

    if path == lease_path || path == lease_collection {
        let mut lease = mock.lease.lock().unwrap();
        return match method {
            Method::GET if path == lease_path => match &*lease {
                Some((l, _, _)) => json_response(StatusCode::OK, l.clone()),
                None => json_response(StatusCode::NOT_FOUND, failure(404, "NotFound")),
            },
            Method::POST | Method::PUT => {
                let rv = lease.as_ref().map_or(0, |(_, rv, _)| *rv);
                let sent = body["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if (method == Method::POST && lease.is_some())
                    || (method == Method::PUT && sent != rv.to_string())
                {
                    return json_response(StatusCode::CONFLICT, failure(409, "Conflict"));
                }
                let holder = body["spec"]["holderIdentity"].as_str().map(String::from);
                if let Some(h) = &holder
                    && h != &who
                {
                    mock.unexpected
                        .lock()
                        .unwrap()
                        .push(format!("{who} wrote the Lease for {h}"));
                }
                let before = lease
                    .as_ref()
                    .and_then(|(l, _, _)| l["spec"]["holderIdentity"].as_str().map(String::from));
                if holder != before
                    && let Some(h) = &holder
                {
                    mock.transitions
                        .lock()
                        .unwrap()
                        .push((Instant::now(), h.clone()));
                }
                let mut stored = body;
                stored["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
                stored["metadata"]["namespace"] = json!(NS);
                *lease = Some((stored.clone(), rv + 1, Instant::now()));
                json_response(StatusCode::OK, stored)
            }
            _ => unexpected(&mock, &method, &path),
        };
    }
    match method {
        Method::GET if watch && CACHED.contains(&path.as_str()) => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
            mock.watches.lock().unwrap().push(tx);
            let stream = futures::stream::poll_fn(move |cx| {
                rx.poll_recv(cx).map(|o| o.map(Ok::<_, Infallible>))
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        // Discovery: a cluster with none of the AI tools' CRDs.
        Method::GET if path == "/apis" => json_response(
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "APIGroupList", "groups": []}),
        ),
        Method::GET if path == CACHED[0] => list(vec![policy()]),
        Method::GET if CACHED.contains(&path.as_str()) || AUDITED.contains(&path.as_str()) => {
            list(vec![])
        }
        Method::PATCH if path == format!("{}/ha-policy/status", CACHED[0]) => {
            let mut object = policy();
            object["status"] = body["status"].clone();
            json_response(StatusCode::OK, object)
        }
        _ => unexpected(&mock, &method, &path),
    }
}

fn unexpected(mock: &Mock, method: &Method, path: &str) -> Response {
    mock.unexpected
        .lock()
        .unwrap()
        .push(format!("{method} {path}"));
    json_response(StatusCode::NOT_FOUND, failure(404, "NotFound"))
}

fn replica(name: &str, api: SocketAddr, dir: &std::path::Path, cert: &(String, String)) -> Server {
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://{api}\nusers:\n- name: {name}\n  user:\n    token: {name}\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: {name}\ncurrent-context: mock\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("tls.crt"), &cert.0).unwrap();
    std::fs::write(dir.join("tls.key"), &cert.1).unwrap();
    let crt = dir.join("tls.crt");
    let key = dir.join("tls.key");
    Server::start(
        &[
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--lease-duration",
            "3s",
            "--lease-renew-deadline",
            "2s",
            "--lease-renew-interval",
            "500ms",
            "--lease-retry-interval",
            "300ms",
            "--audit-interval",
            "1s",
        ],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAME", name),
            ("HOSTGUARD_LEASE_NAMESPACE", NS),
        ],
        dir.join(format!("{name}.log")),
    )
}

fn leader_gauge(server: &Server) -> Option<i64> {
    let (code, metrics) = admin_get(server.admin, "/metrics")?;
    if code != 200 {
        return None;
    }
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("hostguard_leader "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_after_kill_9_the_other_takes_over_within_the_lease_duration() {
    let mock = Arc::new(Mock::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(Arc::clone(&mock));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let cert = {
        let c = rcgen::generate_simple_self_signed(vec![common::SERVICE_NAME.into()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    };
    let mut servers: HashMap<String, Server> = HashMap::new();
    for name in ["replica-a", "replica-b"] {
        servers.insert(name.into(), replica(name, api, dir.path(), &cert));
    }

    // Exactly one leads, and both know it.
    let first = tokio::task::block_in_place(|| {
        eventually("a leader", Duration::from_secs(30), || mock.holder())
    });
    let other = if first == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };
    tokio::task::block_in_place(|| {
        eventually("the leader gauges", Duration::from_secs(30), || {
            (leader_gauge(&servers[&first]) == Some(1) && leader_gauge(&servers[other]) == Some(0))
                .then_some(())
        })
    });
    // The leader audits and writes the policy's status.
    let status_path = format!("{}/ha-policy/status", CACHED[0]);
    tokio::task::block_in_place(|| {
        eventually("the leader's status write", Duration::from_secs(30), || {
            mock.calls
                .lock()
                .unwrap()
                .iter()
                .any(|c| c.method == "PATCH" && c.path == status_path && c.who == first)
                .then_some(())
        })
    });
    // Both keep campaigning for a while: still one leader.
    tokio::time::sleep(LEASE_DURATION).await;
    assert_eq!(mock.holder().as_deref(), Some(first.as_str()));

    // kill -9: no release; the other must wait for the Lease to expire, and no longer.
    let killed = Instant::now();
    let last_renewal = mock.lease.lock().unwrap().as_ref().unwrap().2;
    servers.get_mut(&first).unwrap().child.kill().unwrap();
    let took_over = tokio::task::block_in_place(|| {
        eventually("the takeover", Duration::from_secs(30), || {
            mock.transitions
                .lock()
                .unwrap()
                .iter()
                .find(|(at, who)| *at > killed && who == other)
                .map(|(at, _)| *at)
        })
    });
    let after_renewal = took_over.duration_since(last_renewal);
    assert!(
        after_renewal >= LEASE_DURATION,
        "taken over {after_renewal:?} after the last renewal: before the Lease expired"
    );
    // Within the lease duration, give or take one retry of the other replica (and a second
    // for a loaded machine).
    assert!(
        after_renewal <= LEASE_DURATION + RETRY + Duration::from_secs(1),
        "taken over only {after_renewal:?} after the last renewal"
    );
    tokio::task::block_in_place(|| {
        eventually("the new leader's gauge", Duration::from_secs(30), || {
            (leader_gauge(&servers[other]) == Some(1)).then_some(())
        })
    });
    tokio::task::block_in_place(|| {
        eventually(
            "the new leader's status write",
            Duration::from_secs(30),
            || {
                mock.calls
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|c| {
                        c.method == "PATCH"
                            && c.path == status_path
                            && c.who == other
                            && c.at > took_over
                    })
                    .then_some(())
            },
        )
    });

    // Nobody wrote status, Events or listed for the audit without holding the Lease.
    let calls = mock.calls.lock().unwrap().clone();
    let leader_only: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            c.method == "PATCH"
                || (c.method == "POST" && c.path.contains("/events"))
                || AUDITED.contains(&c.path.as_str())
        })
        .collect();
    assert!(!leader_only.is_empty());
    for c in &leader_only {
        assert_eq!(
            c.holder.as_deref(),
            Some(c.who.as_str()),
            "{c:?} came from a replica that did not hold the Lease"
        );
    }
    let unexpected = mock.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "unexpected requests: {unexpected:#?}"
    );
    assert!(calls.iter().all(|c| !c.path.contains("/secrets")));
}
