//! End to end: the real `hostguard serve` binary, not standalone, against a scripted mock API
//! server over plain HTTP on 127.0.0.1 (reached through a kubeconfig in `KUBECONFIG`).
//!
//! The mock serves the initial lists and keeps the watches open; it holds the Node list back
//! until the test releases it, to show that `/readyz` stays false until every initial list has
//! synced. A HostingPolicy then arrives through the open watch, and a review POSTed over HTTPS
//! is answered with it. The leader's audit writes that policy's status, and SIGTERM releases
//! the Lease.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

const LEASE_NS: &str = "hostguard-e2e";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

#[derive(Default)]
struct Api {
    seen: Mutex<Vec<Seen>>,
    /// Open watch streams by collection path.
    watches: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Bytes>>>>,
    /// Rings when a watch opens.
    watch_opened: Notify,
    /// The Node list is answered only after this is released.
    nodes_released: Mutex<bool>,
    release_nodes: Notify,
    lease: Mutex<Option<Value>>,
    lease_rv: Mutex<u64>,
    /// Objects sent through watches, by object path, for status patches to return.
    objects: Mutex<HashMap<String, Value>>,
}

impl Api {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn watching(&self, path: &str) -> bool {
        self.watches
            .lock()
            .unwrap()
            .get(path)
            .is_some_and(|w| !w.is_empty())
    }

    /// Sends one watch event to every open watch of `path`.
    fn push(&self, path: &str, event: Value) {
        if let Some(name) = event["object"]["metadata"]["name"].as_str() {
            self.objects
                .lock()
                .unwrap()
                .insert(format!("{path}/{name}"), event["object"].clone());
        }
        let mut line = serde_json::to_vec(&event).unwrap();
        line.push(b'\n');
        let bytes = Bytes::from(line);
        for tx in self.watches.lock().unwrap().get(path).into_iter().flatten() {
            let _ = tx.send(bytes.clone());
        }
    }
}

fn json_response(code: StatusCode, v: Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

fn node() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "aks-nodepool1-0", "resourceVersion": "1",
                     "labels": {"kubernetes.azure.com/cluster": "MC_rg_e2e"}},
        "spec": {"providerID": "azure:///subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachineScaleSets/v/virtualMachines/0"}
    })
}

fn namespace_meta(name: &str) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": {"name": name, "resourceVersion": "1", "labels": {"kubernetes.io/metadata.name": name}}})
}

async fn handle(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    _headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    api.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: body_json.clone(),
    });
    let lease_collection = format!("/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases");
    let lease_path = format!("{lease_collection}/hostguard-leader");

    if path == lease_path || path == lease_collection {
        let mut lease = api.lease.lock().unwrap();
        let mut rv = api.lease_rv.lock().unwrap();
        return match method {
            Method::GET => match &*lease {
                Some(l) => json_response(StatusCode::OK, l.clone()),
                None => json_response(StatusCode::NOT_FOUND, status(404, "NotFound")),
            },
            Method::POST | Method::PUT => {
                let sent = body_json["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("");
                if (method == Method::POST && lease.is_some())
                    || (method == Method::PUT && sent != rv.to_string())
                {
                    return json_response(StatusCode::CONFLICT, status(409, "Conflict"));
                }
                *rv += 1;
                let mut stored = body_json;
                stored["metadata"]["resourceVersion"] = json!(rv.to_string());
                stored["metadata"]["namespace"] = json!(LEASE_NS);
                *lease = Some(stored.clone());
                json_response(StatusCode::OK, stored)
            }
            _ => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                status(405, "MethodNotAllowed"),
            ),
        };
    }

    match method {
        Method::GET if query.split('&').any(|p| p == "watch=true") => {
            let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
            api.watches
                .lock()
                .unwrap()
                .entry(path)
                .or_default()
                .push(tx);
            api.watch_opened.notify_waiters();
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
        Method::GET => {
            let items = match path.as_str() {
                "/api/v1/nodes" => {
                    loop {
                        let released = api.release_nodes.notified();
                        if *api.nodes_released.lock().unwrap() {
                            break;
                        }
                        released.await;
                    }
                    vec![node()]
                }
                "/api/v1/namespaces" => {
                    vec![namespace_meta("team-a"), namespace_meta("kube-system")]
                }
                // The Pods of team-a, listed when a ConfigMap holding a config file changes:
                // one LiteLLM proxy that mounts `litellm-config`, and one that does not.
                "/api/v1/namespaces/team-a/pods" => vec![
                    litellm_pod("litellm-0", Some("litellm-config")),
                    litellm_pod("other-0", None),
                    // Finished: it never reads the file again.
                    {
                        let mut done = litellm_pod("done-0", Some("litellm-config"));
                        done["status"] = json!({"phase": "Succeeded"});
                        done
                    },
                ],
                // A single ConfigMap the webhook would prefetch: none exists here.
                p if p.contains("/configmaps/") => {
                    return json_response(StatusCode::NOT_FOUND, status(404, "NotFound"));
                }
                // Every other collection (CRs, ConfigMaps, the audited kinds) starts empty.
                _ => vec![],
            };
            json_response(
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        // Status patches and events are accepted, and the object returned as an API server
        // would (with its metadata).
        Method::PATCH => {
            let stored = api
                .objects
                .lock()
                .unwrap()
                .get(path.trim_end_matches("/status"))
                .cloned();
            match stored {
                Some(mut object) => {
                    object["status"] = body_json["status"].clone();
                    json_response(StatusCode::OK, object)
                }
                None => json_response(StatusCode::NOT_FOUND, status(404, "NotFound")),
            }
        }
        Method::POST => json_response(StatusCode::CREATED, body_json),
        _ => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            status(405, "MethodNotAllowed"),
        ),
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the admin port: the status code, or None when nothing listens yet.
fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = StdStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out))
}

/// The server process; its log is printed when the test fails.
struct Server(Child, std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.1).unwrap_or_default();
            eprintln!("---- hostguard serve log ----\n{log}");
        }
    }
}

/// A LiteLLM proxy Pod whose `MY_BASE` is an endpoint the e2e policy does not allow, reading
/// its `--config` from ConfigMap `config_map` when given.
fn litellm_pod(name: &str, config_map: Option<&str>) -> Value {
    let (mounts, volumes) = match config_map {
        Some(cm) => (
            json!([{"name": "config", "mountPath": "/etc/litellm/config.yaml", "subPath": "config.yaml"}]),
            json!([{"name": "config", "configMap": {"name": cm}}]),
        ),
        None => (json!([]), json!([])),
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a", "resourceVersion": "1"},
        "spec": {"containers": [{"name": "litellm", "image": "ghcr.io/berriai/litellm:main-v1.55.0",
            "args": ["--config", "/etc/litellm/config.yaml"],
            "env": [{"name": "MY_BASE", "value": "https://gw.contoso.com/v1"}],
            "volumeMounts": mounts}],
            "volumes": volumes}})
}

/// An UPDATE of ConfigMap `litellm-config` whose model's `api_base` goes from `old` to `new`.
fn config_map_review(old: &str, new: &str) -> Value {
    let cm = |base: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "litellm-config", "namespace": "team-a"},
            "data": {"config.yaml": format!(
                "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: {base}\n")}})
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-cm",
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "namespace": "team-a",
            "operation": "UPDATE",
            "userInfo": {"username": "e2e"},
            "object": cm(new),
            "oldObject": cm(old)
        }
    })
}

fn review(base_url: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "e2e"},
            "object": {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "chat", "namespace": "team-a"},
                "spec": {"selector": {"matchLabels": {"app": "chat"}}, "template": {
                    "metadata": {"labels": {"app": "chat"}},
                    "spec": {"containers": [{"name": "app", "image": "chat:1", "env": [
                        {"name": "OPENAI_API_KEY", "value": "sk-test"},
                        {"name": "OPENAI_BASE_URL", "value": base_url}
                    ]}]}
                }}
            }
        }
    })
}

/// POSTs a review over HTTPS, trusting `ca_pem`.
async fn post_review(addr: SocketAddr, ca_pem: &str, body: &Value) -> Value {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::post("/validate?timeout=10s")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

async fn eventually<T>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_syncs_from_the_api_then_enforces_a_policy_from_the_watch() {
    // The scripted API server.
    let api = Arc::new(Api::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(handle).with_state(Arc::clone(&api));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: http://{api_addr}\nusers:\n- name: e2e\n  user:\n    token: e2e-token\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n    user: e2e\n    namespace: default\ncurrent-context: mock\n"
        ),
    )
    .unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("tls.crt"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem()).unwrap();

    let webhook: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.path().join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_hostguard"))
        .arg("serve")
        .arg("--addr")
        .arg(webhook.to_string())
        .arg("--admin-addr")
        .arg(admin.to_string())
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .arg("--shutdown-grace")
        .arg("2s")
        .arg("--drain-delay")
        .arg("1s")
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("HOSTGUARD_STANDALONE")
        .env("POD_NAME", "hostguard-e2e-0")
        .env("HOSTGUARD_LEASE_NAMESPACE", LEASE_NS)
        .env("HOSTGUARD_LOG", "info,hostguard=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("hostguard serve starts");
    let mut server = Server(child, log);

    // Everything but the Nodes has listed and is being watched; /readyz stays false.
    let policies_path = "/apis/hostguard.dev/v1alpha1/hostingpolicies";
    for path in [
        policies_path,
        "/apis/hostguard.dev/v1alpha1/aiworkloads",
        "/api/v1/namespaces",
    ] {
        eventually(
            &format!("a watch of {path}"),
            Duration::from_secs(30),
            async || api.watching(path).then_some(()),
        )
        .await;
    }
    let (code, body) = eventually("the admin port", Duration::from_secs(30), async || {
        admin_get(admin, "/readyz")
    })
    .await;
    assert_eq!(code, 503, "not ready before the Node list: {body}");
    assert!(body.contains("policy snapshot not loaded"), "{body}");
    // The webhook cannot decide yet either: 5xx lets failurePolicy apply.
    assert!(!api.watching("/api/v1/nodes"));

    // Release the Node list: the last initial list syncs and the server turns ready.
    *api.nodes_released.lock().unwrap() = true;
    api.release_nodes.notify_waiters();
    eventually(
        "/readyz to turn true",
        Duration::from_secs(30),
        async || {
            admin_get(admin, "/readyz")
                .filter(|(c, _)| *c == 200)
                .map(|_| ())
        },
    )
    .await;

    // No policy in the cluster and none from files: the workload is admitted.
    let before = post_review(webhook, &cert_pem, &review("https://gw.contoso.com/v1")).await;
    assert_eq!(before["response"]["allowed"], true, "{before}");

    // A HostingPolicy arrives through the open watch.
    api.push(
        policies_path,
        json!({"type": "ADDED", "object": {
            "apiVersion": "hostguard.dev/v1alpha1", "kind": "HostingPolicy",
            "metadata": {"name": "e2e-azure-only", "resourceVersion": "2", "generation": 1, "uid": "p-1"},
            "spec": {
                "provider": "openai", "apiClasses": ["stateless"], "action": "Deny",
                "endpoints": {"allowedHosts": ["*.e2e-openai.example.com"]}
            }
        }}),
    );
    let denied = eventually(
        "a denial by the new policy",
        Duration::from_secs(30),
        async || {
            let r = post_review(webhook, &cert_pem, &review("https://gw.contoso.com/v1")).await;
            (r["response"]["allowed"] == false).then_some(r)
        },
    )
    .await;
    let response = &denied["response"];
    assert_eq!(response["uid"], "e2e-1");
    assert_eq!(response["status"]["code"], 403);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("gw.contoso.com"), "{message}");
    assert!(message.contains("*.e2e-openai.example.com"), "{message}");
    assert_eq!(
        response["auditAnnotations"]["governed-by"],
        "e2e-azure-only"
    );

    // An allowed endpoint under that policy passes.
    let ok = post_review(
        webhook,
        &cert_pem,
        &review("https://contoso.e2e-openai.example.com/openai/v1"),
    )
    .await;
    assert_eq!(ok["response"]["allowed"], true, "{ok}");

    // A change to a ConfigMap that a running LiteLLM Pod reads: from an allowed api_base to
    // os.environ/MY_BASE, which that Pod sets to a host the policy does not allow. The webhook
    // lists the namespace's Pods and denies, naming the Pod that reads the file (and not the
    // one that does not).
    let allowed_base = "https://contoso.e2e-openai.example.com/openai/v1";
    let cm = post_review(
        webhook,
        &cert_pem,
        &config_map_review(allowed_base, "os.environ/MY_BASE"),
    )
    .await;
    assert_eq!(cm["response"]["allowed"], false, "{cm}");
    let message = cm["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("Pod litellm-0"), "{message}");
    assert!(message.contains("gw.contoso.com"), "{message}");
    assert!(!message.contains("other-0"), "{message}");
    assert!(!message.contains("done-0"), "{message}");
    let listed = api
        .seen()
        .into_iter()
        .find(|s| s.method == "GET" && s.path == "/api/v1/namespaces/team-a/pods")
        .expect("the Pods of the namespace were listed");
    assert!(listed.query.contains("limit=500"), "{}", listed.query);
    // The same change with the Pod's endpoint left alone (a literal allowed api_base) passes.
    let ok = post_review(
        webhook,
        &cert_pem,
        &config_map_review(allowed_base, "https://eu.e2e-openai.example.com/openai/v1"),
    )
    .await;
    assert_eq!(ok["response"]["allowed"], true, "{ok}");

    // The replica won the Lease, audited after the policy change and wrote its status.
    let status_path = format!("{policies_path}/e2e-azure-only/status");
    let patch = eventually("the policy's status", Duration::from_secs(30), async || {
        api.seen()
            .into_iter()
            .find(|s| s.method == "PATCH" && s.path == status_path)
    })
    .await;
    assert!(
        patch.query.contains("fieldManager=hostguard"),
        "{}",
        patch.query
    );
    assert_eq!(patch.body["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(patch.body["status"]["conditions"][0]["status"], "True");
    assert_eq!(patch.body["status"]["violations"], 0);

    let (code, metrics) = admin_get(admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains(r#"hostguard_cluster_provider{detected="azure",effective="azure"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hostguard_cluster_nodes{provider="azure"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("hostguard_leader 1"), "{metrics}");

    // SIGTERM: the server drains and releases the Lease.
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exited = eventually("the server to exit", Duration::from_secs(30), async || {
        server.0.try_wait().unwrap()
    })
    .await;
    assert!(exited.success(), "{exited:?}");
    let lease = api
        .lease
        .lock()
        .unwrap()
        .clone()
        .expect("a Lease was created");
    assert!(
        lease["spec"].get("holderIdentity").is_none(),
        "released on shutdown: {lease}"
    );

    // Never a Secret; and the status write succeeded.
    assert!(api.seen().iter().all(|s| !s.path.contains("/secrets")));
    let log = std::fs::read_to_string(&server.1).unwrap();
    assert!(!log.contains("cannot write"), "{log}");
    assert!(log.contains("cluster provider"), "{log}");
}
