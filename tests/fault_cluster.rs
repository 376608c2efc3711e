//! The release binary in cluster mode under 1,000 reviews a second (Go's own HTTP client,
//! calling as kube-apiserver does: tests/common/load.rs) while, all at once: a HostingPolicy changes ten times a
//! second through the mock API server's watch, the serving certificate is rotated every second
//! (a `..data` symlink swap, as a Secret volume is updated), and the mock API server answers
//! 500 to everything for two seconds, then hangs for two, then drops every watch after each
//! event for two. Every answer must be the right verdict or a 5xx (which the webhook's
//! failurePolicy handles), never a wrong one, and the resident memory must stay flat.
//!
//! "Right" is judged against what the server could know: policy version `n` allows
//! `*.alpha.example.com` in its even twenty-version phases and `*.beta.example.com` in the odd
//! ones, and carries the marker host `v<n>.noise.example.com`, so a denial names the version
//! that decided it. A review sent at `t` and answered at `u` may be decided by any version the
//! mock delivered to the server by `u`, and not older than the last one delivered by `t - LAG`.
//! Versions pushed while the server's watch was down count only once a list or watch delivers
//! them.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::load::{Load, UID};
use common::{Ca, SERVICE_NAME, Server, VolumeDir, deployment_review, release_bin};
use serde_json::{Value, json};

/// How long a delivered policy version may take to be in force.
const LAG: Duration = Duration::from_secs(1);
const NS: &str = "hostguard-faults";
const RATE: u32 = 1000;
const POLICIES: &str = "/apis/hostguard.dev/v1alpha1/hostingpolicies";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Error500,
    Hang,
    DropWatches,
}

struct Mock {
    mode: Mutex<Mode>,
    mode_changed: tokio::sync::Notify,
    version: Mutex<u64>,
    /// (when, version) each time a version reached the server (list or watch).
    delivered: Mutex<Vec<(Instant, u64)>>,
    watches: Mutex<Vec<(String, tokio::sync::mpsc::UnboundedSender<Bytes>)>>,
    lease: Mutex<Option<(Value, u64)>>,
    unexpected: Mutex<Vec<String>>,
}

fn phase_allows_alpha(version: u64) -> bool {
    (version / 20).is_multiple_of(2)
}

fn policy(version: u64) -> Value {
    let phase = if phase_allows_alpha(version) {
        "*.alpha.example.com"
    } else {
        "*.beta.example.com"
    };
    json!({
        "apiVersion": "hostguard.dev/v1alpha1", "kind": "HostingPolicy",
        "metadata": {"name": "churn", "resourceVersion": (1000 + version).to_string(),
                     "generation": version + 1, "uid": "p-churn"},
        "spec": {"provider": "openai", "apiClasses": ["stateless"], "action": "Deny",
                 "endpoints": {"allowedHosts": [
                     "*.openai.azure.com", phase, format!("v{version}.noise.example.com")]}}
    })
}

fn json_response(code: StatusCode, v: Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

fn failure(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

fn list(items: Vec<Value>, rv: u64) -> Response {
    json_response(
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
    )
}

fn meta(kind_path: &str, name: &str) -> Value {
    let mut v = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": {"name": name, "resourceVersion": "1", "uid": format!("uid-{name}")}});
    if kind_path.ends_with("namespaces") {
        v["metadata"]["labels"] = json!({"kubernetes.io/metadata.name": name});
    }
    v
}

const WATCHED: &[&str] = &[
    POLICIES,
    "/apis/hostguard.dev/v1alpha1/aiworkloads",
    "/api/v1/namespaces",
    "/api/v1/nodes",
    "/api/v1/configmaps",
];
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

impl Mock {
    fn line(event: Value) -> Bytes {
        let mut line = serde_json::to_vec(&event).unwrap();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// Records that `version` was handed to the server at `at`: taken before the bytes are
    /// sent, since the server may apply a version (and answer with it) before this thread runs
    /// again on a loaded machine.
    fn delivered(&self, at: Instant, version: u64) {
        self.delivered.lock().unwrap().push((at, version));
    }

    /// The next policy version, to every open policy watch.
    fn push_next(&self) {
        let version = {
            let mut v = self.version.lock().unwrap();
            *v += 1;
            *v
        };
        let bytes = Mock::line(json!({"type": "MODIFIED", "object": policy(version)}));
        let mut watches = self.watches.lock().unwrap();
        let at = Instant::now();
        let mut sent = false;
        for (path, tx) in watches.iter() {
            if path == POLICIES && tx.send(bytes.clone()).is_ok() {
                sent = true;
            }
        }
        if sent {
            self.delivered(at, version);
        }
        if *self.mode.lock().unwrap() == Mode::DropWatches {
            watches.clear();
        }
    }
}

async fn handle(
    State(mock): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    loop {
        let mode = *mock.mode.lock().unwrap();
        match mode {
            Mode::Error500 => {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    failure(500, "InternalError"),
                );
            }
            Mode::Hang => mock.mode_changed.notified().await,
            Mode::Normal | Mode::DropWatches => break,
        }
    }
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let watch = query.split('&').any(|p| p == "watch=true");
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let lease_collection = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    let lease_path = format!("{lease_collection}/hostguard-leader");
    if path == lease_path || path == lease_collection {
        let mut lease = mock.lease.lock().unwrap();
        return match method {
            Method::GET => match &*lease {
                Some((l, _)) => json_response(StatusCode::OK, l.clone()),
                None => json_response(StatusCode::NOT_FOUND, failure(404, "NotFound")),
            },
            Method::POST | Method::PUT => {
                let rv = lease.as_ref().map_or(0, |(_, rv)| *rv);
                let sent = body["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if (method == Method::POST && lease.is_some())
                    || (method == Method::PUT && sent != rv.to_string())
                {
                    return json_response(StatusCode::CONFLICT, failure(409, "Conflict"));
                }
                let mut stored = body;
                stored["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
                *lease = Some((stored.clone(), rv + 1));
                json_response(StatusCode::OK, stored)
            }
            _ => unexpected(&mock, &method, &path),
        };
    }
    match method {
        Method::GET if watch && WATCHED.contains(&path.as_str()) => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
            if path == POLICIES {
                // Resumed from an older version: send the current one at once.
                let version = *mock.version.lock().unwrap();
                let from: u64 = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("resourceVersion="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if 1000 + version > from {
                    let at = Instant::now();
                    let _ = tx.send(Mock::line(
                        json!({"type": "MODIFIED", "object": policy(version)}),
                    ));
                    mock.delivered(at, version);
                }
            }
            mock.watches.lock().unwrap().push((path, tx));
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
        Method::GET if path == POLICIES => {
            let version = *mock.version.lock().unwrap();
            mock.delivered(Instant::now(), version);
            list(vec![policy(version)], 1000 + version)
        }
        Method::GET if path == "/api/v1/namespaces" => {
            list(vec![meta(&path, "team-a"), meta(&path, "kube-system")], 1)
        }
        Method::GET if path == "/api/v1/nodes" => list(
            vec![json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "aks-0", "resourceVersion": "1",
                             "labels": {"kubernetes.azure.com/cluster": "MC_rg_faults"}},
                "spec": {"providerID": "azure:///subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/0"}})],
            1,
        ),
        Method::GET if WATCHED.contains(&path.as_str()) || AUDITED.contains(&path.as_str()) => {
            list(vec![], 1)
        }
        Method::PATCH if path == format!("{POLICIES}/churn/status") => {
            let version = *mock.version.lock().unwrap();
            let mut object = policy(version);
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

/// The i-th review: which endpoint it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    OpenAi,
    Azure,
    NoAi,
    Alpha,
    Beta,
}

fn target(i: u64) -> Target {
    [
        Target::OpenAi,
        Target::Azure,
        Target::NoAi,
        Target::Alpha,
        Target::Beta,
    ][(i % 5) as usize]
}

/// The bodies the load cycles through, in the order of [`target`].
fn bodies() -> Vec<Value> {
    (0..5)
        .map(|i| {
            let url = match target(i) {
                Target::OpenAi => Some("https://api.openai.com/v1"),
                Target::Azure => Some("https://contoso.openai.azure.com/openai/v1"),
                Target::NoAi => None,
                Target::Alpha => Some("https://gw.alpha.example.com/v1"),
                Target::Beta => Some("https://gw.beta.example.com/v1"),
            };
            deployment_review(UID, "team-a", url)
        })
        .collect()
}

/// The versions that may decide a review sent at `sent` and answered at `done` (milliseconds
/// since the load started; `delivered` on the same clock).
fn window(delivered: &[(i64, u64)], sent: i64, done: i64) -> (u64, u64) {
    let floor = sent - LAG.as_millis() as i64;
    let lo = delivered
        .iter()
        .filter(|(at, _)| *at <= floor)
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(0);
    let hi = delivered
        .iter()
        .filter(|(at, _)| *at <= done)
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(0);
    (lo, hi)
}

fn marker_version(message: &str) -> Option<u64> {
    let at = message.find(".noise.example.com")?;
    let head = &message[..at];
    let digits = head.rsplit_once('v')?.1;
    digits.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_churn_certificate_rotation_and_api_faults_never_give_a_wrong_verdict() {
    let bin = release_bin();
    let mock = Arc::new(Mock {
        mode: Mutex::new(Mode::Normal),
        mode_changed: tokio::sync::Notify::new(),
        version: Mutex::new(0),
        delivered: Mutex::new(Vec::new()),
        watches: Mutex::new(Vec::new()),
        lease: Mutex::new(None),
        unexpected: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api: SocketAddr = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(Arc::clone(&mock));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://{api}\nusers:\n- name: r\n  user:\n    token: replica\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: r\ncurrent-context: mock\n"
        ),
    )
    .unwrap();
    let ca = Ca::new("hostguard test CA");
    let (cert, key) = ca.leaf(&[SERVICE_NAME], "v1");
    let certs = VolumeDir::new(
        dir.path(),
        "certs",
        &[("tls.crt", &cert), ("tls.key", &key)],
    );
    let (crt, key_path) = (certs.file("tls.crt"), certs.file("tls.key"));
    let server = Server::start_bin(
        &bin,
        &[
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--tls-reload-interval",
            "100ms",
            "--cluster-provider",
            "azure",
            "--audit-interval",
            "2s",
            "--lease-duration",
            "3s",
            "--lease-renew-deadline",
            "2s",
            "--lease-renew-interval",
            "500ms",
            "--lease-retry-interval",
            "300ms",
        ],
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("POD_NAME", "replica"),
            ("HOSTGUARD_LEASE_NAMESPACE", NS),
        ],
        dir.path().join("serve.log"),
    );
    tokio::task::block_in_place(|| {
        common::eventually("readiness", Duration::from_secs(60), || {
            common::admin_get(server.admin, "/readyz")
                .filter(|(c, _)| *c == 200)
                .map(|_| ())
        })
    });

    let mut load = Load::start(&ca.pem, &[server.webhook], &bodies(), RATE);
    let started = load.started;
    let mut rss = Vec::new();
    let mut rotations = 0u32;
    let mut reconnects = 0u32;
    let mut next_reconnect: Option<Instant> = None;
    let mut next_push = Instant::now();
    let mut next_rotation = Instant::now() + Duration::from_secs(1);
    let schedule = [
        (Duration::from_secs(2), Mode::Error500),
        (Duration::from_secs(4), Mode::Normal),
        (Duration::from_secs(5), Mode::Hang),
        (Duration::from_secs(7), Mode::Normal),
        (Duration::from_secs(8), Mode::DropWatches),
        (Duration::from_secs(10), Mode::Normal),
    ];
    let end = Duration::from_secs(15);
    let mut step = 0;
    while started.elapsed() < end {
        let now = Instant::now();
        if step < schedule.len() && started.elapsed() >= schedule[step].0 {
            let mode = schedule[step].1;
            *mock.mode.lock().unwrap() = mode;
            mock.mode_changed.notify_waiters();
            if matches!(mode, Mode::Error500 | Mode::Hang) {
                // The API server goes away: its open watches end with it.
                mock.watches.lock().unwrap().clear();
            }
            step += 1;
        }
        let mode = *mock.mode.lock().unwrap();
        // Nobody can change a policy while the API server is down.
        if now >= next_push && matches!(mode, Mode::Normal | Mode::DropWatches) {
            mock.push_next();
            next_push = now + Duration::from_millis(100);
        }
        if now >= next_rotation {
            let (cert, key) = ca.leaf(&[SERVICE_NAME], &format!("rotated-{rotations}"));
            certs.update(&[("tls.crt", &cert), ("tls.key", &key)]);
            rotations += 1;
            next_rotation = now + Duration::from_secs(1);
            // Every third rotation, half a second later, the API server reconnects (a restart):
            // its new handshakes must get the rotated certificate.
            if rotations.is_multiple_of(3) {
                next_reconnect = Some(now + Duration::from_millis(500));
            }
        }
        if next_reconnect.is_some_and(|at| now >= at) {
            load.reconnect();
            reconnects += 1;
            next_reconnect = None;
        }
        rss.push((started.elapsed(), server.rss_kib()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (outcomes, elapsed) = tokio::task::block_in_place(|| load.finish());
    let delivered: Vec<(i64, u64)> = mock
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|(at, v)| {
            let ms = if *at >= started {
                at.duration_since(started).as_millis() as i64
            } else {
                -(started.duration_since(*at).as_millis() as i64)
            };
            (ms, *v)
        })
        .collect();

    let mut wrong = Vec::new();
    let mut server_errors = 0;
    let mut denials_by_marker = 0;
    for o in &outcomes {
        if let Some(e) = &o.error {
            wrong.push(format!("review {} failed: {e}", o.index));
            continue;
        }
        let status = o.status.unwrap_or(0);
        if (500..600).contains(&status) {
            server_errors += 1;
            continue;
        }
        if !o.answered() {
            wrong.push(format!(
                "review {}: HTTP {status}, uid {:?}",
                o.index, o.uid
            ));
            continue;
        }
        let allowed = o.allowed == Some(true);
        let message = o.message.as_deref().unwrap_or("");
        let (lo, hi) = window(&delivered, o.sent_ms, o.done_ms);
        let ok = match target(o.index) {
            Target::OpenAi => !allowed,
            Target::Azure | Target::NoAi => allowed,
            Target::Alpha | Target::Beta => {
                let alpha = target(o.index) == Target::Alpha;
                if allowed {
                    (lo..=hi).any(|v| phase_allows_alpha(v) == alpha)
                } else {
                    denials_by_marker += 1;
                    marker_version(message)
                        .is_some_and(|v| (lo..=hi).contains(&v) && phase_allows_alpha(v) != alpha)
                }
            }
        };
        if !ok {
            wrong.push(format!(
                "review {} ({:?}) sent {} ms in, allowed={allowed}, versions {lo}..={hi}: {message}",
                o.index,
                target(o.index),
                o.sent_ms
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers of {}; first: {:#?}",
        wrong.len(),
        outcomes.len(),
        &wrong[..wrong.len().min(10)]
    );
    let unexpected = mock.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "unexpected requests: {unexpected:#?}"
    );
    let achieved = outcomes.len() as f64 / elapsed.as_secs_f64();
    assert!(
        achieved > 0.9 * f64::from(RATE),
        "the load reached only {achieved:.0} reviews/s"
    );
    let version = *mock.version.lock().unwrap();
    assert!(version >= 80, "only {version} policy versions were pushed");
    assert!(
        denials_by_marker > 100,
        "too few version-marked denials to judge"
    );
    // Memory: the highest RSS of the last five seconds against that of seconds 2 to 7.
    let max_in = |from: u64, to: u64| {
        rss.iter()
            .filter(|(t, _)| *t >= Duration::from_secs(from) && *t < Duration::from_secs(to))
            .map(|(_, kib)| *kib)
            .max()
            .unwrap_or(0)
    };
    let (early, late) = (max_in(2, 7), max_in(10, 15));
    assert!(
        late <= early + 8 * 1024,
        "resident memory grew from {early} KiB to {late} KiB"
    );
    // Connections opened after a rotation were served with the new certificate; kept-alive
    // ones keep the certificate of their handshake, as with a real Secret rotation. Each
    // reconnect of the client opens connections under a later certificate.
    let served_by: std::collections::BTreeSet<&str> =
        outcomes.iter().filter_map(|o| o.cert.as_deref()).collect();
    let rotated = served_by
        .iter()
        .filter(|cn| cn.starts_with("rotated-"))
        .count();
    assert!(
        rotated as u32 >= reconnects,
        "{reconnects} reconnects, but reviews were answered under only {rotated} rotated certificates: {served_by:?}"
    );
    eprintln!(
        "{} reviews in {:.1}s ({achieved:.0}/s), {server_errors} answered 5xx, {version} policy versions, {rotations} certificate rotations ({} certificates seen by the client), RSS {early} KiB then {late} KiB",
        outcomes.len(),
        elapsed.as_secs_f64(),
        served_by.len()
    );
}
