//! Envoy AI Gateway (`aigateway.envoyproxy.io` v1alpha1 and v1beta1): an `AIServiceBackend`
//! (`spec.schema.name` is the API it speaks) is followed through `spec.backendRef` to the Envoy
//! Gateway `Backend` whose `spec.endpoints[]` are where the gateway connects; an `AIGatewayRoute`
//! gets the facts of every backend it routes to.
//!
//! Without TLS settings on the Backend (`spec.tls`) or a `BackendTLSPolicy` targeting it, Envoy
//! Gateway uses no upstream TLS, so the endpoint is plain `http://` even on port 443. A
//! BackendTLSPolicy's `hostname` only sets SNI and the certificate check; it does not change where
//! connections go.

use serde_json::Value;

use super::value::{Field, Malformed};
use super::{Resource, usage};
use crate::detect::{Endpoint, EndpointValue, OPENAI, Usage};
use crate::snapshot::Lookup;

const GATEWAY_GROUP: &str = "gateway.envoyproxy.io";
const AI_GROUP: &str = "aigateway.envoyproxy.io";
const TLS_GROUP: &str = "gateway.networking.k8s.io";

/// Kinds the Envoy adapters look up in the snapshot.
pub(super) const RELATED: &[(&str, &str)] = &[
    (GATEWAY_GROUP, "Backend"),
    (TLS_GROUP, "BackendTLSPolicy"),
    (AI_GROUP, "AIServiceBackend"),
];

/// The related kinds [`references`] names, which a front may fetch by name (a
/// `BackendTLSPolicy` is found by what it targets, so only a list or watch finds it).
pub(super) const FETCHED_BY_NAME: &[(&str, &str)] =
    &[(GATEWAY_GROUP, "Backend"), (AI_GROUP, "AIServiceBackend")];

/// The related kinds no adapter judges, as served: Envoy Gateway's `Backend` (v1alpha1, the one
/// version it serves) and Gateway API's `BackendTLSPolicy` (v1 since Gateway API 1.4; v1alpha3
/// and v1alpha2 before). The `AIServiceBackend` is an adapter kind of its own.
pub(super) const RELATED_RESOURCES: &[super::KindRef] = &[
    super::KindRef {
        group: GATEWAY_GROUP,
        kind: "Backend",
        plural: "backends",
        versions: &["v1alpha1"],
    },
    super::KindRef {
        group: TLS_GROUP,
        kind: "BackendTLSPolicy",
        plural: "backendtlspolicies",
        versions: &["v1", "v1alpha3", "v1alpha2"],
    },
];

/// The objects `object` names by reference that the Envoy adapters look up, as (group, kind,
/// namespace, name): an `AIServiceBackend`'s Backend, an `AIGatewayRoute`'s AIServiceBackends.
/// The webhook GETs those its watches have not delivered (an object applied a moment before
/// the one that names it), so that the decision need not wait for the watch. Read leniently: a
/// malformed reference names nothing here, and the adapter reports it.
pub(super) fn references(
    object: &Value,
    default_namespace: &str,
) -> Vec<(String, String, String, String)> {
    let group = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.split_once('/'))
        .map(|(g, _)| g);
    if group != Some(AI_GROUP) {
        return Vec::new();
    }
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace);
    fn str_at<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
        o.get(k).and_then(Value::as_str)
    }
    let key = |g: &str, k: &str, r: &Value| {
        let name = str_at(r, "name")?;
        let ns = str_at(r, "namespace").unwrap_or(namespace);
        Some((
            g.to_string(),
            k.to_string(),
            ns.to_string(),
            name.to_string(),
        ))
    };
    match object.get("kind").and_then(Value::as_str) {
        Some("AIServiceBackend") => object
            .pointer("/spec/backendRef")
            .filter(|r| str_at(r, "group") == Some(GATEWAY_GROUP))
            .filter(|r| str_at(r, "kind").is_none_or(|k| k == "Backend"))
            .and_then(|r| key(GATEWAY_GROUP, "Backend", r))
            .into_iter()
            .collect(),
        Some("AIGatewayRoute") => object
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|rule| rule.get("backendRefs").and_then(Value::as_array))
            .flatten()
            .filter(|r| str_at(r, "kind").is_none_or(|k| k == "AIServiceBackend"))
            .filter_map(|r| key(AI_GROUP, "AIServiceBackend", r))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn read_service_backend(r: &Resource<'_>) -> Result<Vec<Usage>, Malformed> {
    let root = Field::root(r.object);
    let Some(spec) = root.object("spec")? else {
        return Ok(Vec::new());
    };
    let schema = spec
        .object("schema")?
        .map(|s| s.string("name"))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    let schema_path = r.at(&spec.path_of("schema.name"));
    let reference = spec.object("backendRef")?;
    if !matches!(schema, "OpenAI" | "AzureOpenAI") {
        return Ok(vec![usage(
            &schema.to_ascii_lowercase(),
            schema_path,
            Vec::new(),
        )]);
    }
    let endpoints = match reference {
        None => {
            let path = spec.path_of("backendRef");
            vec![r.endpoint(
                EndpointValue::Unresolved(format!("{path} is not set")),
                &path,
                path.clone(),
            )]
        }
        Some(reference) => backend_endpoints(r, &reference)?,
    };
    Ok(vec![usage(OPENAI, schema_path, endpoints)])
}

/// The endpoints of the Backend a `backendRef` names.
fn backend_endpoints(r: &Resource<'_>, reference: &Field<'_>) -> Result<Vec<Endpoint>, Malformed> {
    let name = reference.string("name")?.unwrap_or_default();
    let namespace = reference.string("namespace")?.unwrap_or(r.namespace);
    let group = reference.string("group")?.unwrap_or_default();
    let kind = reference.string("kind")?.unwrap_or("Backend");
    let path = reference.path.clone();
    if group != GATEWAY_GROUP || kind != "Backend" {
        return Ok(vec![r.endpoint(
            EndpointValue::Unresolved(format!(
                "{path} names {kind} {name:?} of group {group:?}; Envoy AI Gateway accepts only gateway.envoyproxy.io Backends here"
            )),
            &path,
            path.clone(),
        )]);
    }
    let backend = match r
        .snapshot
        .related(GATEWAY_GROUP, "Backend", namespace, name)
    {
        Lookup::Found(b) => b,
        Lookup::Absent => {
            return Ok(vec![r.endpoint(
                EndpointValue::Unresolved(format!("Backend {namespace}/{name} does not exist")),
                &path,
                path.clone(),
            )]);
        }
        Lookup::Unknown => {
            return Ok(vec![r.endpoint(
                EndpointValue::Unresolved(format!(
                    "Backend {namespace}/{name} is not in the input or the cache"
                )),
                &path,
                path.clone(),
            )]);
        }
    };
    let at = |p: &str| format!("Backend/{name} {p}");
    let b = Field::root(backend.as_ref());
    let spec = match b.object("spec") {
        Ok(Some(s)) => s,
        _ => {
            return Ok(vec![Endpoint {
                value: EndpointValue::Unresolved(format!(
                    "Backend {namespace}/{name} has no readable spec"
                )),
                path: at("spec"),
                via: "Backend".into(),
                origin: None,
            }]);
        }
    };
    let unreadable = |p: String, why: String| Endpoint {
        value: EndpointValue::Unresolved(why),
        path: at(&p),
        via: "Backend".into(),
        origin: None,
    };
    if spec.string("type").ok().flatten() == Some("DynamicResolver") {
        return Ok(vec![unreadable(
            spec.path_of("type"),
            format!(
                "Backend {namespace}/{name} is a DynamicResolver: the destination comes from each request"
            ),
        )]);
    }
    let tls = spec.value.get("tls").is_some_and(|t| !t.is_null())
        || tls_policy_targets(r, namespace, name);
    let scheme = if tls { "https" } else { "http" };
    let mut out = Vec::new();
    let endpoints = match spec.list("endpoints") {
        Ok(e) => e,
        Err(e) => return Ok(vec![unreadable(e.path.clone(), e.to_string())]),
    };
    for e in endpoints {
        let (host, port, p) = if let Some(fqdn) = e.value.get("fqdn") {
            (
                fqdn.get("hostname")
                    .and_then(Value::as_str)
                    .map(String::from),
                fqdn.get("port").and_then(Value::as_u64),
                format!("{}.fqdn", e.path),
            )
        } else if let Some(ip) = e.value.get("ip") {
            let address = ip.get("address").and_then(Value::as_str).map(|a| {
                if a.contains(':') {
                    format!("[{a}]")
                } else {
                    a.to_string()
                }
            });
            (
                address,
                ip.get("port").and_then(Value::as_u64),
                format!("{}.ip", e.path),
            )
        } else {
            out.push(unreadable(
                e.path.clone(),
                format!("{}: a unix socket or an unknown endpoint type, whose destination hostguard cannot check", e.path),
            ));
            continue;
        };
        let Some(host) = host else {
            out.push(unreadable(p.clone(), format!("{p} has no host")));
            continue;
        };
        let default_port = if tls { 443 } else { 80 };
        let url = match port {
            Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
            _ => format!("{scheme}://{host}"),
        };
        out.push(Endpoint {
            value: EndpointValue::Url(url),
            path: at(&p),
            via: if tls {
                "Backend endpoint with upstream TLS".into()
            } else {
                "Backend endpoint without TLS settings (no BackendTLSPolicy, no spec.tls: plain http)".into()
            },
            origin: Some(format!("Backend {namespace:?}/{name:?}")).map(|o| o.replace('"', "")),
        });
    }
    if out.is_empty() {
        out.push(unreadable(
            spec.path_of("endpoints"),
            format!("Backend {namespace}/{name} has no endpoints"),
        ));
    }
    Ok(out)
}

/// Whether a BackendTLSPolicy in `namespace` targets Backend `name` (`spec.targetRefs[]`, or the
/// older `spec.targetRef`).
fn tls_policy_targets(r: &Resource<'_>, namespace: &str, name: &str) -> bool {
    let names = |t: &Value| {
        t.get("kind").and_then(Value::as_str) == Some("Backend")
            && t.get("name").and_then(Value::as_str) == Some(name)
    };
    r.snapshot
        .related_in(TLS_GROUP, "BackendTLSPolicy", namespace)
        .any(|p| {
            let spec = p.get("spec");
            spec.and_then(|s| s.get("targetRefs"))
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(names))
                || spec.and_then(|s| s.get("targetRef")).is_some_and(names)
        })
}

pub(super) fn read_route(r: &Resource<'_>) -> Result<Vec<Usage>, Malformed> {
    let root = Field::root(r.object);
    let Some(spec) = root.object("spec")? else {
        return Ok(Vec::new());
    };
    let mut usages = Vec::new();
    for rule in spec.list("rules")? {
        let rule = rule.expect_object()?;
        for reference in rule.list("backendRefs")? {
            let reference = reference.expect_object()?;
            let name = reference.string("name")?.unwrap_or_default();
            let namespace = reference.string("namespace")?.unwrap_or(r.namespace);
            if reference
                .string("kind")?
                .is_some_and(|k| k != "AIServiceBackend")
            {
                // An InferencePool: served by model servers in the cluster.
                let path = reference.path.clone();
                usages.push(usage(
                    OPENAI,
                    r.at(&path),
                    vec![r.endpoint(
                        EndpointValue::Url(format!("http://{name}.{namespace}.svc.cluster.local")),
                        &path,
                        "an InferencePool in the cluster",
                    )],
                ));
                continue;
            }
            match r
                .snapshot
                .related(AI_GROUP, "AIServiceBackend", namespace, name)
            {
                Lookup::Found(backend) => {
                    let version = backend
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .and_then(|v| v.rsplit_once('/'))
                        .map_or("", |(_, v)| v);
                    let inner = Resource {
                        kind: "AIServiceBackend",
                        name,
                        namespace,
                        version,
                        object: backend.as_ref(),
                        snapshot: r.snapshot,
                    };
                    match read_service_backend(&inner) {
                        Ok(u) => usages.extend(u),
                        Err(e) => usages.push(usage(
                            OPENAI,
                            r.at(&reference.path),
                            vec![inner.endpoint(
                                EndpointValue::Unresolved(e.to_string()),
                                &e.path,
                                "AIServiceBackend",
                            )],
                        )),
                    }
                }
                Lookup::Absent | Lookup::Unknown => {
                    let path = reference.path.clone();
                    usages.push(usage(
                        OPENAI,
                        r.at(&path),
                        vec![r.endpoint(
                            EndpointValue::Unresolved(format!(
                                "AIServiceBackend {namespace}/{name} is not in the input or the cache"
                            )),
                            &path,
                            path.clone(),
                        )],
                    ));
                }
            }
        }
    }
    Ok(usages)
}
