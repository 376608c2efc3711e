//! A mock API server of a large cluster, for `scripts/bench_cluster.py`: how much memory and
//! time `hostguard serve` (not standalone) takes to sync its caches and audit a cluster of a
//! given size.
//!
//! Not a strict mock (the tests have `tests/common/mock_api.rs` for that): it answers what a
//! controller asks of a real API server, as a real one would, for a cluster generated from its
//! index numbers, a page at a time, so that a cluster of 150,000 Pods costs the mock no memory:
//!
//! - lists (`limit` and `continue` honoured, `continue` being the next index) of Namespaces,
//!   Nodes (AKS-shaped, with the status a kubelet writes: images, conditions, capacity),
//!   HostingPolicies, AIWorkloads, ConfigMaps (two per namespace), Deployments and Pods (shaped as
//!   a web chart renders them, their OpenAI endpoint read from ConfigMap `app-config`); every
//!   other collection is empty;
//! - watches that stay open and send nothing (the cluster does not change);
//! - single GETs of a Namespace and of ConfigMap `app-config` (an Azure OpenAI endpoint); any
//!   other object is 404;
//! - the leader Lease (create, then renew by resourceVersion), status patches (the object with
//!   the patched status) and Events (echoed, 201);
//! - discovery (`/apis`): no API groups beyond the built-in ones, so no AI tools' CRDs.
//!
//! It counts the requests by method and kind and prints the counts to stderr on SIGTERM.
//! Not shipped: an example target of the root package (`cargo build --release --example
//! mock-cluster`).
//!
//! Usage: `mock-cluster --addr 127.0.0.1:18600 --namespaces 5000 --nodes 5000 --policies 1000
//! --aiworkloads 10000 --deployments 50000 --pods 150000`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The size of the generated cluster.
#[derive(Debug, Clone, Copy)]
struct Size {
    namespaces: usize,
    nodes: usize,
    policies: usize,
    aiworkloads: usize,
    deployments: usize,
    pods: usize,
    /// Whether each AIWorkload carries the status an earlier audit wrote, as in a cluster where
    /// hostguard has run before (`--aiworkload-status 1`).
    aiworkload_status: bool,
}

struct Mock {
    size: Size,
    lease: Mutex<Option<Value>>,
    lease_version: Mutex<u64>,
    requests: Mutex<BTreeMap<String, u64>>,
}

fn main() {
    let mut addr = "127.0.0.1:18600".to_string();
    let mut size = Size {
        namespaces: 5000,
        nodes: 5000,
        policies: 1000,
        aiworkloads: 10000,
        deployments: 50000,
        pods: 150000,
        aiworkload_status: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        let count = || {
            value
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("{flag}: {value:?} is not a count"))
        };
        match flag.as_str() {
            "--addr" => addr = value.clone(),
            "--namespaces" => size.namespaces = count().max(1),
            "--nodes" => size.nodes = count(),
            "--policies" => size.policies = count(),
            "--aiworkloads" => size.aiworkloads = count(),
            "--deployments" => size.deployments = count(),
            "--pods" => size.pods = count(),
            "--aiworkload-status" => size.aiworkload_status = count() != 0,
            other => panic!("unknown flag {other}"),
        }
    }
    let mock = Arc::new(Mock {
        size,
        lease: Mutex::new(None),
        lease_version: Mutex::new(0),
        requests: Mutex::new(BTreeMap::new()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
        let app = Router::new().fallback(handle).with_state(Arc::clone(&mock));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            served = axum::serve(listener, app) => served.expect("the mock serves"),
            _ = term.recv() => {}
        }
        for (what, n) in mock.requests.lock().unwrap().iter() {
            eprintln!("{n:>8} {what}");
        }
    });
}

fn reply(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

fn not_found(what: &str) -> Response {
    reply(
        StatusCode::NOT_FOUND,
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
                "code": 404, "message": format!("{what} not found")}),
    )
}

fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

async fn handle(State(mock): State<Arc<Mock>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `/api/v1/...` or `/apis/<group>/<version>/...`, then `namespaces/<ns>/` or not.
    let rest = match segments.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => &[][..],
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
        rest => (None, rest),
    };
    let watch = query_value(query, "watch") == Some("true");
    let kind = rest.first().copied().unwrap_or(path);
    *mock
        .requests
        .lock()
        .unwrap()
        .entry(format!(
            "{method} {kind}{}{}",
            if rest.len() > 1 { " (one)" } else { "" },
            if watch { " (watch)" } else { "" }
        ))
        .or_default() += 1;
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);

    if kind == "leases" {
        return lease(&mock, &method, namespace.unwrap_or("default"), sent);
    }
    match method {
        Method::GET if path == "/apis" => reply(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "APIGroupList", "groups": []}),
        ),
        // Nothing changes: the watch stays open, silent, until the client ends it.
        Method::GET if watch => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(futures::stream::pending::<
                Result<Bytes, std::convert::Infallible>,
            >()))
            .expect("a response"),
        Method::GET if rest.len() == 1 => {
            let limit = query_value(query, "limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0)
                .unwrap_or(usize::MAX);
            let start = query_value(query, "continue")
                .and_then(|c| c.parse::<usize>().ok())
                .unwrap_or(0);
            list(&mock.size, kind, namespace, start, limit)
        }
        Method::GET => match (kind, rest) {
            ("namespaces", [_, name]) => match namespace_index(name, &mock.size) {
                Some(i) => reply(StatusCode::OK, &namespace_object(i)),
                None => not_found(path),
            },
            ("configmaps", [_, "app-config"]) => {
                reply(StatusCode::OK, &app_config(namespace.unwrap_or("default")))
            }
            _ => not_found(path),
        },
        Method::PATCH if rest.last() == Some(&"status") => {
            let mut object = match (kind, rest) {
                ("hostingpolicies", [_, name, _]) => name
                    .strip_prefix("policy-")
                    .and_then(|i| i.parse().ok())
                    .map(hosting_policy),
                ("aiworkloads", [_, name, _]) => name
                    .strip_prefix("aiw-")
                    .and_then(|i| i.parse().ok())
                    .map(|i| ai_workload(i, &mock.size)),
                _ => None,
            };
            match object.as_mut() {
                Some(object) => {
                    object["status"] = sent["status"].clone();
                    reply(StatusCode::OK, object)
                }
                None => not_found(path),
            }
        }
        Method::POST => {
            let mut created = sent;
            created["metadata"]["resourceVersion"] = json!("2");
            reply(StatusCode::CREATED, &created)
        }
        _ => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "reason": "MethodNotAllowed", "code": 405, "message": "not supported"}),
        ),
    }
}

/// The leader Lease: created once, then replaced only by a writer that sends its current
/// resourceVersion, as the API server's optimistic concurrency does.
fn lease(mock: &Mock, method: &Method, namespace: &str, sent: Value) -> Response {
    let mut lease = mock.lease.lock().unwrap();
    let mut version = mock.lease_version.lock().unwrap();
    match *method {
        Method::GET => match &*lease {
            Some(l) => reply(StatusCode::OK, l),
            None => not_found("lease"),
        },
        Method::POST | Method::PUT => {
            let given = sent["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if (*method == Method::POST && lease.is_some())
                || (*method == Method::PUT && given != version.to_string())
            {
                return reply(
                    StatusCode::CONFLICT,
                    &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                            "reason": "Conflict", "code": 409, "message": "conflict"}),
                );
            }
            *version += 1;
            let mut stored = sent;
            stored["metadata"]["resourceVersion"] = json!(version.to_string());
            stored["metadata"]["namespace"] = json!(namespace);
            *lease = Some(stored.clone());
            reply(StatusCode::OK, &stored)
        }
        _ => not_found("lease"),
    }
}

/// One page of a collection, `start..start + limit`, cluster-wide or in `namespace`.
fn list(size: &Size, kind: &str, namespace: Option<&str>, start: usize, limit: usize) -> Response {
    // Namespaced kinds are spread over the namespaces by index: object i lives in ns-(i % N).
    let (total, make): (usize, fn(usize, &Size) -> Value) = match kind {
        "namespaces" => (size.namespaces, |i, _| namespace_object(i)),
        "nodes" => (size.nodes, |i, _| node(i)),
        "hostingpolicies" => (size.policies, |i, _| hosting_policy(i)),
        "aiworkloads" => (size.aiworkloads, ai_workload),
        "configmaps" => (size.namespaces * 2, config_map_meta),
        "deployments" => (size.deployments, deployment),
        "pods" => (size.pods, pod),
        _ => (0, |_, _| Value::Null),
    };
    // The namespace of object i (see the generators); None for cluster-scoped kinds.
    let namespace_of = |i: usize| match kind {
        "aiworkloads" => Some(in_block(i, size.aiworkloads, size)),
        "configmaps" => Some(i / 2),
        "deployments" => Some(in_block(i, size.deployments, size)),
        "pods" => Some(in_block(i / 3, size.deployments, size)),
        _ => None,
    };
    let wanted = namespace.map(|ns| namespace_index(ns, size));
    let in_namespace = |i: usize| match wanted {
        None => true,
        Some(wanted) => wanted.is_some() && namespace_of(i) == wanted,
    };
    let mut items = Vec::new();
    let mut i = start;
    while i < total && items.len() < limit {
        if in_namespace(i) {
            items.push(make(i, size));
        }
        i += 1;
    }
    let mut metadata = json!({"resourceVersion": "1"});
    if i < total {
        metadata["continue"] = json!(i.to_string());
        metadata["remainingItemCount"] = json!(total - i);
    }
    reply(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": items}),
    )
}

/// The namespace of object i of `total`: in contiguous blocks, as the API server lists a
/// collection (by namespace, then name), so that a cache sees the namespaces one after another.
fn in_block(i: usize, total: usize, size: &Size) -> usize {
    let per_namespace = total.div_ceil(size.namespaces).max(1);
    (i / per_namespace).min(size.namespaces - 1)
}

fn namespace_index(name: &str, size: &Size) -> Option<usize> {
    name.strip_prefix("ns-")
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|i| *i < size.namespaces)
}

fn meta(name: &str, namespace: Option<&str>, i: usize) -> Value {
    let mut m = json!({
        "name": name, "uid": format!("00000000-0000-4000-8000-{i:012}"),
        "resourceVersion": "1", "generation": 1,
        "creationTimestamp": "2026-11-30T08:00:00Z",
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn namespace_object(i: usize) -> Value {
    let name = format!("ns-{i}");
    let mut m = meta(&name, None, i);
    m["labels"] = json!({"kubernetes.io/metadata.name": name, "team": format!("t{}", i % 10)});
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": m,
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

/// An AKS node as its kubelet reports it (what makes a Node large is its status).
fn node(i: usize) -> Value {
    let name = format!(
        "aks-pool{}-{:08}-vmss{:06}",
        i % 10,
        31_415_926 + i / 1000,
        i
    );
    let mut m = meta(&name, None, i);
    m["labels"] = json!({
        "agentpool": format!("pool{}", i % 10), "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": "Standard_D4s_v5", "beta.kubernetes.io/os": "linux",
        "failure-domain.beta.kubernetes.io/region": "westeurope",
        "failure-domain.beta.kubernetes.io/zone": format!("westeurope-{}", i % 3 + 1),
        "kubernetes.azure.com/agentpool": format!("pool{}", i % 10),
        "kubernetes.azure.com/cluster": "MC_rg-prod_aks-prod_westeurope",
        "kubernetes.azure.com/kubelet-identity-client-id": "3f1c2a9e-5b7d-4e0f-9a61-2d8c4b7e1f03",
        "kubernetes.azure.com/mode": "user", "kubernetes.azure.com/node-image-version":
            "AKSUbuntu-2204gen2containerd-202611.10.0",
        "kubernetes.azure.com/os-sku": "Ubuntu", "kubernetes.azure.com/role": "agent",
        "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "Standard_D4s_v5",
        "topology.disk.csi.azure.com/zone": format!("westeurope-{}", i % 3 + 1),
        "topology.kubernetes.io/region": "westeurope",
        "topology.kubernetes.io/zone": format!("westeurope-{}", i % 3 + 1),
    });
    m["annotations"] = json!({
        "csi.volume.kubernetes.io/nodeid": format!("{{\"disk.csi.azure.com\":\"{name}\",\"file.csi.azure.com\":\"{name}\"}}"),
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    });
    let images: Vec<Value> = (0..40)
        .map(|k| json!({
            "names": [format!("mcr.microsoft.com/oss/kubernetes/component-{k}@sha256:{:064x}", k * 7919 + 1),
                      format!("mcr.microsoft.com/oss/kubernetes/component-{k}:v1.{k}.3")],
            "sizeBytes": 20_000_000 + k * 1_000_003,
        }))
        .collect();
    let conditions: Vec<Value> = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
        ("KernelDeadlock", "False", "KernelHasNoDeadlock"),
        ("FilesystemCorruptionProblem", "False", "FilesystemIsOK"),
    ]
    .iter()
    .map(|(t, s, r)| {
        json!({"type": t, "status": s, "reason": r, "message": format!("{r} on {name}"),
        "lastHeartbeatTime": "2026-12-01T10:00:00Z", "lastTransitionTime": "2026-11-30T08:00:00Z"})
    })
    .collect();
    json!({"apiVersion": "v1", "kind": "Node", "metadata": m,
    "spec": {"providerID": format!("azure:///subscriptions/8e5b1f6c-0000-4000-8000-000000000001/resourceGroups/mc_rg-prod_aks-prod_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool{}-31415926-vmss/virtualMachines/{i}", i % 10),
             "podCIDR": format!("10.{}.{}.0/24", 100 + i / 256 % 100, i % 256)},
    "status": {
        "addresses": [{"type": "InternalIP", "address": format!("10.224.{}.{}", i / 256 % 256, i % 256)},
                      {"type": "Hostname", "address": name}],
        "allocatable": {"cpu": "3860m", "ephemeral-storage": "119703055367", "memory": "12881392Ki", "pods": "110"},
        "capacity": {"cpu": "4", "ephemeral-storage": "129886128Ki", "memory": "16375792Ki", "pods": "110"},
        "conditions": conditions, "images": images,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"architecture": "amd64", "bootID": format!("b{i:031}"),
            "containerRuntimeVersion": "containerd://1.7.27-1", "kernelVersion": "5.15.0-1089-azure",
            "kubeProxyVersion": "v1.33.2", "kubeletVersion": "v1.33.2", "machineID": format!("{i:032}"),
            "operatingSystem": "linux", "osImage": "Ubuntu 22.04.5 LTS", "systemUUID": format!("{i:032}")},
    }})
}

/// The policies of `scripts/bench_webhook.py`'s big bundle: each selects a tenth of the
/// namespaces by `team`, so every namespace is governed by a tenth of them.
fn hosting_policy(i: usize) -> Value {
    json!({"apiVersion": "hostguard.dev/v1alpha1", "kind": "HostingPolicy",
    "metadata": meta(&format!("policy-{i:04}"), None, i),
    "spec": {
        "provider": "openai",
        "apiClasses": [if i.is_multiple_of(2) { "stateless" } else { "stateful" }],
        "action": (["Deny", "Warn", "Audit"][i % 3]),
        "namespaceSelector": {"matchLabels": {"team": format!("t{}", i % 10)}},
        "excludedNamespaces": ["kube-system", format!("ns-{i}")],
        "endpoints": {"allowedHosts": ["*.openai.azure.com", format!("gw-{i}.example.com"), "*.services.ai.azure.com"]},
    }})
}

fn ai_workload(i: usize, size: &Size) -> Value {
    let n = in_block(i, size.aiworkloads, size);
    let ns = format!("ns-{n}");
    // It selects one of its namespace's Deployments.
    let app = n * size.deployments.div_ceil(size.namespaces)
        + i % size.aiworkloads.div_ceil(size.namespaces);
    let mut aiw = json!({"apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
        "metadata": meta(&format!("aiw-{i:05}"), Some(&ns), i),
        "spec": {"selector": {"matchLabels": {"app": format!("app-{app}")}}, "provider": "openai",
                 "apiClass": (["stateless", "stateful", "mixed"][i % 3])}});
    if size.aiworkload_status {
        // What the status writer (src/cluster/status.rs) writes for one matched Deployment.
        aiw["status"] = json!({
            "conditions": [{"type": "Compliant", "status": "True", "reason": "Compliant",
                "message": "all 1 matched workloads pass every policy",
                "lastTransitionTime": "2026-12-01T08:00:00Z", "observedGeneration": 1}],
            "observedGeneration": 1,
            "matchedWorkloads": [{"kind": "Deployment", "name": format!("app-{app}"), "compliant": true}],
            "lastAuditTime": "2026-12-01T08:00:00Z",
        });
    }
    aiw
}

/// Metadata of the two ConfigMaps of each namespace: the root CA every namespace gets, and the
/// app's configuration.
fn config_map_meta(i: usize, _: &Size) -> Value {
    let ns = format!("ns-{}", i / 2);
    let name = if i.is_multiple_of(2) {
        "app-config"
    } else {
        "kube-root-ca.crt"
    };
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, Some(&ns), i)})
}

fn app_config(namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": meta("app-config", Some(namespace), 0),
        "data": {"OPENAI_BASE_URL": "https://contoso-prod.openai.azure.com/openai/v1/",
                 "LOG_LEVEL": "info", "FEATURE_FLAGS": "search,summaries"}})
}

/// The pod spec a web chart renders for an OpenAI client whose endpoint is in ConfigMap
/// `app-config` and whose key is in a Secret: an app container and a metrics sidecar.
fn pod_spec(app: &str) -> Value {
    json!({
        "serviceAccountName": app,
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "app", "image": format!("contoso.azurecr.io/{app}:1.4.2"),
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "env": [
                {"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": format!("{app}-openai"), "key": "api-key"}}},
                {"name": "OPENAI_BASE_URL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "OPENAI_BASE_URL"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "PORT", "value": "8080"},
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability.svc:4317"},
            ],
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }, {
            "name": "metrics", "image": "quay.io/prometheus/statsd-exporter:v0.28.0",
            "args": ["--statsd.listen-udp=:9125", "--web.listen-address=:9102"],
            "ports": [{"name": "metrics", "containerPort": 9102}],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        }],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    })
}

fn deployment(i: usize, size: &Size) -> Value {
    let ns = format!("ns-{}", in_block(i, size.deployments, size));
    let app = format!("app-{i}");
    let labels =
        json!({"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "app": app});
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"labels": labels, "annotations": {"deployment.kubernetes.io/revision": "3"},
                     "name": app, "namespace": ns, "uid": format!("d0000000-0000-4000-8000-{i:012}"),
                     "resourceVersion": "1", "generation": 3},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": app}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec(&app)}},
        "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "updatedReplicas": 3,
                   "observedGeneration": 3}})
}

/// Pod i belongs to Deployment i / 3 (three replicas each).
fn pod(i: usize, size: &Size) -> Value {
    let d = i / 3;
    let ns = format!("ns-{}", in_block(d, size.deployments, size));
    let app = format!("app-{d}");
    let name = format!("{app}-7d9f8c6b5-{:05}", i % 100_000);
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("p0000000-0000-4000-8000-{i:012}"),
            "resourceVersion": "1", "generateName": format!("{app}-7d9f8c6b5-"),
            "labels": {"app": app, "app.kubernetes.io/name": app, "pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-7d9f8c6b5"),
                "uid": format!("r0000000-0000-4000-8000-{d:012}"), "controller": true, "blockOwnerDeletion": true}]},
        "spec": pod_spec(&app),
        "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", i / 256 % 256, i % 256),
            "hostIP": "10.224.0.4", "qosClass": "Burstable", "startTime": "2026-11-30T08:00:00Z",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"},
                           {"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "image": format!("contoso.azurecr.io/{app}:1.4.2"),
                 "imageID": format!("contoso.azurecr.io/{app}@sha256:{:064x}", d), "containerID": format!("containerd://{i:064x}"),
                 "state": {"running": {"startedAt": "2026-11-30T08:00:05Z"}}},
                {"name": "metrics", "ready": true, "restartCount": 0, "image": "quay.io/prometheus/statsd-exporter:v0.28.0",
                 "imageID": "quay.io/prometheus/statsd-exporter@sha256:0000", "containerID": format!("containerd://{:064x}", i + 1),
                 "state": {"running": {"startedAt": "2026-11-30T08:00:05Z"}}}]}})
}
