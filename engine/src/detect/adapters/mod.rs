//! Adapters for the AI tools' own resources: each reads one tool's custom resource into the same
//! facts pod-spec detection produces (provider, endpoints with the field path that sets or implies
//! them), so that the one policy evaluation decides on them as on a Deployment.
//!
//! The facts behind every rule (which field, which default when a field is absent, which versions
//! are served) were read in each tool's own source and are listed with file and line in
//! `tests/fixtures/adapters/FACTS.md`. Adapters are pure: a reference to another object (a
//! ConfigMap, an Envoy Gateway `Backend`) is looked up in the [`Snapshot`], and an object that is
//! not there is unresolved, never assumed. A resource of a known kind whose version no adapter
//! knows is reported as not understood (a warning), never allowed silently; one whose fields have
//! the wrong shape is an error naming the field path.

mod ark;
mod envoy;
mod k8sgpt;
mod kagent;
mod kaito;
pub mod value;

use serde_json::Value;

use super::{Endpoint, EndpointValue, Signal, Usage};
use crate::snapshot::{Lookup, Snapshot};
pub use value::Malformed;

/// What an adapter read from one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFacts {
    /// Every provider the resource configures, with its endpoints.
    pub usages: Vec<Usage>,
    /// Things the user should know (an unknown version: not understood).
    pub notes: Vec<String>,
}

/// One resource under an adapter: its kind, name, namespace and version, for paths and lookups.
pub(crate) struct Resource<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub version: &'a str,
    pub object: &'a Value,
    pub snapshot: &'a Snapshot,
}

impl Resource<'_> {
    /// `K8sGPT/k8sgpt-sample spec.ai.baseUrl`: where a fact comes from, named so that a message
    /// about another object (the Deployment an adapter's facts end up on) still points here.
    pub fn at(&self, path: &str) -> String {
        format!("{}/{} {path}", self.kind, self.name)
    }

    /// An endpoint at `path` of this resource.
    pub fn endpoint(&self, value: EndpointValue, path: &str, via: impl Into<String>) -> Endpoint {
        Endpoint {
            value,
            path: self.at(path),
            via: via.into(),
            origin: None,
        }
    }

    /// The value of `key` in ConfigMap `name` of this resource's namespace, or why it cannot be
    /// read (unresolved, so fail closed).
    pub fn config_map_key(&self, name: &str, key: &str) -> Result<String, String> {
        match self.snapshot.config_map(self.namespace, name) {
            Lookup::Found(data) => data
                .get(key)
                .map(str::to_string)
                .ok_or_else(|| format!("ConfigMap {}/{name} has no key {key:?}", self.namespace)),
            Lookup::Absent => Err(format!(
                "ConfigMap {}/{name} does not exist",
                self.namespace
            )),
            Lookup::Unknown => Err(self
                .snapshot
                .config_map_unknown_reason(self.namespace, name)
                .unwrap_or_else(|| {
                    format!(
                        "ConfigMap {}/{name} is not in the input or the cache",
                        self.namespace
                    )
                })),
        }
    }
}

/// One adapter: the API group and kind it reads, the versions the tool serves, and the reader.
struct Adapter {
    group: &'static str,
    kind: &'static str,
    /// The resource name, for the webhook rules and RBAC.
    plural: &'static str,
    versions: &'static [&'static str],
    read: fn(&Resource<'_>) -> Result<Vec<Usage>, Malformed>,
}

/// Every adapter, in one place. A kind here is validated by the webhook (the chart's rules list
/// the same groups) and read by `check`.
const ADAPTERS: &[Adapter] = &[
    Adapter {
        group: "core.k8sgpt.ai",
        kind: "K8sGPT",
        plural: "k8sgpts",
        versions: &["v1alpha1"],
        read: k8sgpt::read,
    },
    Adapter {
        group: "kagent.dev",
        kind: "ModelConfig",
        plural: "modelconfigs",
        versions: &["v1alpha1", "v1alpha2", "v1alpha3"],
        read: kagent::read_model_config,
    },
    Adapter {
        group: "kagent.dev",
        kind: "ModelProviderConfig",
        plural: "modelproviderconfigs",
        versions: &["v1alpha2", "v1alpha3"],
        read: kagent::read_model_provider_config,
    },
    Adapter {
        group: "ark.mckinsey.com",
        kind: "Model",
        plural: "models",
        versions: &["v1alpha1"],
        read: ark::read,
    },
    Adapter {
        group: "kaito.sh",
        kind: "RAGEngine",
        plural: "ragengines",
        versions: &["v1alpha1", "v1beta1"],
        read: kaito::read_rag_engine,
    },
    Adapter {
        group: "aigateway.envoyproxy.io",
        kind: "AIServiceBackend",
        plural: "aiservicebackends",
        versions: &["v1alpha1", "v1beta1"],
        read: envoy::read_service_backend,
    },
    Adapter {
        group: "aigateway.envoyproxy.io",
        kind: "AIGatewayRoute",
        plural: "aigatewayroutes",
        versions: &["v1alpha1", "v1beta1"],
        read: envoy::read_route,
    },
];

/// The API groups of the tools hostguard understands (for the webhook rules and RBAC).
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = ADAPTERS.iter().map(|a| a.group).collect();
    out.dedup();
    out
}

/// `(group, kind, resource)` of every resource an adapter reads.
pub fn kinds() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    ADAPTERS.iter().map(|a| (a.group, a.kind, a.plural))
}

/// A kind as the API server serves it: group, kind, resource name and the versions hostguard
/// reads. What a controller in a cluster discovers, lists and watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindRef {
    pub group: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub versions: &'static [&'static str],
}

/// Every resource an adapter reads, with its versions.
pub fn resources() -> impl Iterator<Item = KindRef> {
    ADAPTERS.iter().map(|a| KindRef {
        group: a.group,
        kind: a.kind,
        plural: a.plural,
        versions: a.versions,
    })
}

/// The objects adapters look up by reference that are not themselves judged (an Envoy Gateway
/// `Backend`, a `BackendTLSPolicy`), with their versions: a cluster controller lists them so
/// that the lookups are answered.
pub fn related_resources() -> impl Iterator<Item = KindRef> {
    envoy::RELATED_RESOURCES.iter().copied()
}

/// Reads `object` when an adapter knows its kind: None for any other kind. `namespace` is the
/// request's namespace (or the object's, or `default`).
pub fn read(
    object: &Value,
    namespace: &str,
    snapshot: &Snapshot,
) -> Option<Result<ResourceFacts, Malformed>> {
    let api_version = object.get("apiVersion").and_then(Value::as_str)?;
    let kind = object.get("kind").and_then(Value::as_str)?;
    let (group, version) = api_version.rsplit_once('/')?;
    let mut known = ADAPTERS
        .iter()
        .filter(|a| a.group == group && a.kind == kind)
        .peekable();
    known.peek()?;
    let Some(adapter) = known.find(|a| a.versions.contains(&version)) else {
        let served = ADAPTERS
            .iter()
            .find(|a| a.group == group && a.kind == kind)
            .map(|a| a.versions.join(", "))
            .unwrap_or_default();
        return Some(Ok(ResourceFacts {
            usages: Vec::new(),
            notes: vec![format!(
                "apiVersion: {api_version} {kind} is not understood: hostguard reads {kind} of {group} versions {served}; its model endpoints were not checked"
            )],
        }));
    };
    if !object
        .get("spec")
        .is_none_or(|s| s.is_object() || s.is_null())
    {
        return Some(Err(Malformed::new("spec", "must be an object")));
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let resource = Resource {
        kind,
        name,
        namespace,
        version,
        object,
        snapshot,
    };
    Some((adapter.read)(&resource).map(|usages| ResourceFacts {
        usages: merge(usages),
        notes: Vec::new(),
    }))
}

/// A usage of `provider` reached through `path` with these endpoints; undeclared API class, so
/// stateless (none of these tools declares one).
pub(crate) fn usage(provider: &str, path: String, endpoints: Vec<Endpoint>) -> Usage {
    let mut usage = Usage {
        provider: provider.to_string(),
        classes: Vec::new(),
        class_source: String::new(),
        signals: vec![Signal::Resource { path }],
        endpoints,
        declared: Vec::new(),
        annotated: Vec::new(),
        annotation_claims: Vec::new(),
    };
    let (classes, source) = {
        let view = usage.classes_trusting(|_| true);
        (view.classes, view.source)
    };
    usage.classes = classes;
    usage.class_source = source;
    usage
}

/// One usage per provider (an AIGatewayRoute reaches several backends of one provider).
fn merge(usages: Vec<Usage>) -> Vec<Usage> {
    let mut out: Vec<Usage> = Vec::new();
    for u in usages {
        match out.iter_mut().find(|o| o.provider == u.provider) {
            Some(o) => {
                o.signals.extend(u.signals);
                for e in u.endpoints {
                    if !o.endpoints.contains(&e) {
                        o.endpoints.push(e);
                    }
                }
            }
            None => out.push(u),
        }
    }
    out
}

/// `https://api.openai.com/v1`: go-openai's `DefaultConfig`, openai-python's and openai-go's
/// default, kagent's `DefaultModelProviderEndpoint(OpenAI)`.
pub(crate) const OPENAI_DEFAULT: &str = super::catalogue::OPENAI_SDK_DEFAULT_BASE_URL;

/// `(group, kind)` of the objects adapters look up by reference, which the snapshot keeps.
/// The related objects `object` names (group, kind, namespace, name), for a front that fetches
/// those its cache lacks before the engine decides (see `envoy::references`).
pub fn related_references(
    object: &Value,
    default_namespace: &str,
) -> Vec<crate::snapshot::RelatedKey> {
    envoy::references(object, default_namespace)
}

/// The related kinds [`related_references`] can name: fetched by name, so `get` is granted.
pub fn related_kinds_fetched_by_name() -> impl Iterator<Item = (&'static str, &'static str)> {
    envoy::FETCHED_BY_NAME.iter().copied()
}

pub fn related_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    envoy::RELATED.iter().copied()
}
