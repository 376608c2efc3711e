//! A container's environment, resolved with Kubernetes' own rules.
//!
//! This follows the kubelet's `makeEnvironmentVariables` (pkg/kubelet/kubelet_pods.go) step by
//! step:
//!
//! - every `envFrom` source in turn, a later one overriding an earlier one, `prefix` prepended to
//!   each key; an optional source that does not exist is skipped (`continue`);
//! - then every `env` entry in turn, overriding `envFrom`: a non-empty `value` is expanded with
//!   `expansion.Expand` and `expansion.MappingFuncFor(tmpEnv, serviceEnv)` (what is defined so
//!   far, then the service links); otherwise `valueFrom` is resolved. An optional
//!   `configMapKeyRef`/`secretKeyRef` whose object or key is missing is *skipped* (`continue`),
//!   so an `envFrom` value of the same name survives; an entry with neither sets "";
//! - the Downward API (`podFieldSelectorRuntimeValue`, `fieldpath.ExtractFieldPathAsString`):
//!   `metadata.namespace` always, and for a Pod its `metadata.name` and subscripted
//!   `metadata.labels['k']` / `metadata.annotations['k']`; everything else (node, IPs, service
//!   account, resources) is known only on the node and stays unreadable;
//! - service links (`getServiceEnvVarMap`, `envvars.FromServices`): `<SVC>_SERVICE_HOST`,
//!   `<SVC>_SERVICE_PORT[_<NAME>]`, `<SVC>_PORT` and `<SVC>_PORT_<n>_<PROTO>[_ADDR|_PORT|_PROTO]`
//!   of the Services in the Pod's namespace when `enableServiceLinks` is not false, and of the
//!   `kubernetes` Service in `default` always. A Service's ClusterIP and port are not known at
//!   admission, so a reference to one resolves to the Service's cluster DNS name
//!   (`<svc>.<namespace>.svc`, which names the same ClusterIP) and a placeholder port: what
//!   matters for the verdict is that such traffic stays in the cluster;
//! - `command` and `args` are expanded with the final environment.
//!
//! Two twists make the result safe to police:
//!
//! - Values we cannot read (a Secret, a ConfigMap the snapshot does not have, node-side Downward
//!   API fields) are kept as [`EnvValue::Unreadable`] with the reason, never guessed and never
//!   dropped. An entry that may or may not be skipped (an optional reference to something we
//!   cannot see) keeps both possibilities: its own unreadable value and whatever `envFrom` gives.
//! - When a name appears more than once in `env`, every one of its values is a candidate: merge
//!   tools disagree on which duplicate survives, so each one could be the value in effect.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use super::{ContainerView, EnvVarView, field_path};
use crate::snapshot::{ConfigMapData, Lookup, Snapshot};

/// One value a variable can have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// The value, after `$(VAR)` expansion.
    Literal(String),
    /// A value exists (or may exist) but cannot be read here; the text says why.
    Unreadable(String),
}

/// A value with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'e> {
    pub value: EnvValue,
    /// The entry that sets it, whose field path is written only when asked for: every entry of
    /// every container is a candidate, and few become an endpoint or a signal.
    set_by: SetBy<'e>,
    /// Where the value was read from when it is not inline, e.g. `ConfigMap "ai" key "URL"`.
    pub origin: Option<String>,
}

/// Which entry sets a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetBy<'e> {
    /// The `env` entry named `name` of the container at `container`.
    Env { container: &'e str, name: &'e str },
    /// An `envFrom` source, by its field path.
    Source(&'e str),
}

impl Candidate<'_> {
    /// Field path of the entry that sets it, e.g. `spec.containers[0].env[OPENAI_BASE_URL]`
    /// or `spec.containers[0].envFrom[1]`.
    pub fn path(&self) -> String {
        match self.set_by {
            SetBy::Env { container, name } => field_path::keyed(container, "env", name),
            SetBy::Source(path) => path.to_string(),
        }
    }
}

/// An `envFrom` source, read or not.
#[derive(Debug, Clone)]
enum FromSource {
    Known {
        path: String,
        prefix: String,
        data: ConfigMapData,
        /// The ConfigMap's name, for a value's origin (`ConfigMap "ai" key "URL"`).
        config_map: String,
    },
    Unknown {
        path: String,
        prefix: String,
        why: String,
    },
}

/// An `envFrom` source whose keys cannot be read, so it may set any variable with its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueSource {
    pub path: String,
    pub prefix: String,
    pub why: String,
}

/// What the kubelet knows about the Pod when it builds the environment, as far as admission can
/// see it.
#[derive(Debug, Clone, Copy)]
pub struct PodFacts<'a> {
    /// The namespace the Pod runs in (where ConfigMaps and service links come from).
    pub namespace: &'a str,
    /// For a Pod (not a controller's template): its name (empty when generated) and metadata.
    pub pod: Option<PodMeta<'a>>,
    /// `spec.enableServiceLinks`; absent means true (the API server's default).
    pub enable_service_links: bool,
}

/// A Pod's own metadata, which the Downward API can expose.
#[derive(Debug, Clone, Copy)]
pub struct PodMeta<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
}

impl<'a> PodFacts<'a> {
    /// A controller's template in `namespace` (no Pod name or metadata known yet).
    pub fn template(namespace: &'a str) -> Self {
        PodFacts {
            namespace,
            pod: None,
            enable_service_links: true,
        }
    }
}

/// One `env` entry's value, with whether the kubelet may skip it.
#[derive(Debug, Clone)]
struct Explicit<'e> {
    candidate: Candidate<'e>,
    /// True when the entry is skipped if an object or key we cannot see is missing (an
    /// optional reference to a Secret, or to a ConfigMap the snapshot does not have).
    may_be_skipped: bool,
}

/// The longest value `$(VAR)` expansion produces; a longer one is [`EnvValue::Unreadable`].
///
/// Expansion can grow a value exponentially (`B=$(A)$(A)…`, `C=$(B)$(B)…`), so a 3 MiB review
/// could otherwise ask for gigabytes. No endpoint is this long, and an unreadable value is judged
/// as the policy's `unresolved` disposition says (Deny by default), as a Secret is.
pub const MAX_EXPANDED_BYTES: usize = 64 * 1024;
/// What expansion may add, in all, to one container's values (`env`, `command`, `args`) beyond
/// their written length; past it, every further expansion that grows is unreadable.
pub const MAX_EXPANSION_GROWTH_PER_CONTAINER: usize = 1024 * 1024;

/// The resolved environment of one container.
#[derive(Debug, Clone)]
pub struct ResolvedEnv<'e> {
    /// Values set by `env`, every duplicate kept, in order. An entry the kubelet skips for
    /// certain is not here. Hashed (each variable of the catalogue and every other one is asked
    /// for), with a seed of this process's so that names cannot be chosen to collide.
    explicit: HashMap<&'e str, Entries<'e>, foldhash::fast::RandomState>,
    /// `envFrom` sources in order.
    sources: Vec<FromSource>,
    /// The Pod's namespace, and whether that namespace's service links are set.
    namespace: String,
    service_links: bool,
    /// What expansion may still add (see [`MAX_EXPANSION_GROWTH_PER_CONTAINER`]).
    growth_left: std::cell::Cell<usize>,
}

impl<'e> ResolvedEnv<'e> {
    /// Resolves a container's environment as the kubelet will (see the module documentation).
    pub fn resolve(
        container: &'e ContainerView<'_>,
        pod: &PodFacts<'_>,
        snapshot: &Snapshot,
    ) -> Self {
        let namespace = pod.namespace;
        let mut env = ResolvedEnv {
            // Sized for every entry at once: growing it entry by entry rehashed it a few times
            // per container.
            explicit: HashMap::with_capacity_and_hasher(container.env.len(), Default::default()),
            sources: Vec::new(),
            namespace: namespace.to_string(),
            service_links: pod.enable_service_links,
            growth_left: std::cell::Cell::new(MAX_EXPANSION_GROWTH_PER_CONTAINER),
        };
        for (i, from) in container.env_from.iter().enumerate() {
            let path = field_path::indexed(&container.path, "envFrom", i);
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(cm) = &from.config_map_ref {
                let name = cm.name.as_str();
                match snapshot.config_map(namespace, name) {
                    Lookup::Found(data) => env.sources.push(FromSource::Known {
                        path,
                        prefix,
                        data,
                        config_map: name.to_string(),
                    }),
                    // An absent ConfigMap sets nothing: optional ones are skipped and required
                    // ones keep the container from starting.
                    Lookup::Absent => {}
                    Lookup::Unknown => env.sources.push(FromSource::Unknown {
                        path,
                        prefix,
                        why: match snapshot.config_map_unknown_reason(namespace, name) {
                            Some(reason) => format!("ConfigMap {name:?}, which {reason},"),
                            None => format!("ConfigMap {name:?} is not available to hostguard"),
                        },
                    }),
                }
            } else if let Some(secret) = &from.secret_ref {
                env.sources.push(FromSource::Unknown {
                    path,
                    prefix,
                    why: format!("Secret {:?} (hostguard never reads Secrets)", secret.name),
                });
            }
        }

        // The kubelet's `tmpEnv`: what is defined so far, used for `$(VAR)` expansion. Only an
        // env `value` is expanded, so without a `$(` in any of them nothing reads it.
        let expands = container
            .env
            .iter()
            .any(|v| v.value.as_deref().is_some_and(opens_a_reference));
        let mut defined: BTreeMap<String, EnvValue> = BTreeMap::new();
        for from in env.sources.iter().filter(|_| expands) {
            if let FromSource::Known { prefix, data, .. } = from {
                for (key, value) in data.iter() {
                    defined.insert(
                        format!("{prefix}{key}"),
                        EnvValue::Literal(value.to_string()),
                    );
                }
            }
        }

        for var in container.env {
            let Some((value, origin, may_be_skipped)) = value_of(
                var,
                pod,
                snapshot,
                &defined,
                env.service_links,
                &env.growth_left,
            ) else {
                // Skipped, as the kubelet's `continue`: whatever envFrom set survives.
                continue;
            };
            if expands {
                defined.insert(var.name.to_string(), value.clone());
            }
            let entry = Explicit {
                candidate: Candidate {
                    value,
                    set_by: SetBy::Env {
                        container: &container.path,
                        name: &var.name,
                    },
                    origin,
                },
                may_be_skipped,
            };
            match env.explicit.entry(var.name.as_str()) {
                Entry::Occupied(mut entries) => entries.get_mut().later.push(entry),
                Entry::Vacant(slot) => {
                    slot.insert(Entries {
                        first: entry,
                        later: Vec::new(),
                    });
                }
            }
        }
        env
    }

    /// Every variable name the container visibly gets: its `env` entries and the keys of the
    /// `envFrom` sources that could be read (with their prefixes), sorted, each once. A name
    /// carries its `env` entries, so that [`ResolvedEnv::candidates_of`] need not look it up.
    pub fn names(&self) -> Vec<VariableName<'_>> {
        let mut names: Vec<VariableName<'_>> = self
            .explicit
            .iter()
            .map(|(k, entries)| VariableName {
                name: Cow::Borrowed(*k),
                explicit: Some(entries),
            })
            .collect();
        for source in &self.sources {
            if let FromSource::Known { prefix, data, .. } = source {
                names.extend(data.keys().map(|k| VariableName {
                    name: match prefix.as_str() {
                        "" => Cow::Borrowed(k),
                        prefix => Cow::Owned([prefix, k].concat()),
                    },
                    explicit: None,
                }));
            }
        }
        // Of a name that both `env` and `envFrom` give, the one with the entries sorts first,
        // and is the one kept.
        names.sort_unstable_by(|a, b| {
            (&a.name, a.explicit.is_none()).cmp(&(&b.name, b.explicit.is_none()))
        });
        names.dedup_by(|later, kept| later.name == kept.name);
        names
    }

    /// Whether `env` sets `name` for certain (some entry of that name is never skipped).
    fn set_for_certain(&self, name: &str) -> bool {
        self.explicit
            .get(name)
            .is_some_and(Entries::set_for_certain)
    }

    /// The value `envFrom` gives `name`, from the last readable source that has it.
    fn env_from_value(&self, name: &str) -> Option<Candidate<'_>> {
        for source in self.sources.iter().rev() {
            if let FromSource::Known {
                path,
                prefix,
                data,
                config_map,
            } = source
                && let Some(key) = name.strip_prefix(prefix.as_str())
                && let Some(value) = data.get(key)
            {
                return Some(Candidate {
                    value: EnvValue::Literal(value.to_string()),
                    set_by: SetBy::Source(path),
                    origin: Some(key_reference("ConfigMap", config_map, key)),
                });
            }
        }
        None
    }

    /// An environment nothing is known about: any variable may be set, by a source named
    /// `path` that cannot be read (`why`). For a config file judged on its own, before the
    /// workloads that read it are known: what the file takes from the env is then unresolved,
    /// and only what it fixes itself is decided.
    pub fn unknown(path: impl Into<String>, why: impl Into<String>) -> ResolvedEnv<'static> {
        ResolvedEnv {
            explicit: HashMap::default(),
            sources: vec![FromSource::Unknown {
                path: path.into(),
                prefix: String::new(),
                why: why.into(),
            }],
            namespace: String::new(),
            service_links: false,
            growth_left: std::cell::Cell::new(0),
        }
    }

    /// Every value `name` can have, excluding what opaque `envFrom` sources might set (see
    /// [`ResolvedEnv::opaque_sources`]). Empty when the variable is not visibly set.
    ///
    /// Borrowed where `env` sets them (every variable of a container is asked for, most to be
    /// scanned and dropped); an `envFrom` value is built when asked for.
    pub fn candidates(&self, name: &str) -> Vec<Cow<'_, Candidate<'_>>> {
        self.candidates_with(name, self.explicit.get(name))
    }

    /// [`ResolvedEnv::candidates`] of a name [`ResolvedEnv::names`] gave.
    pub fn candidates_of<'s>(&'s self, name: &VariableName<'s>) -> Vec<Cow<'s, Candidate<'s>>> {
        self.candidates_with(&name.name, name.explicit)
    }

    fn candidates_with<'s>(
        &'s self,
        name: &str,
        entries: Option<&'s Entries<'_>>,
    ) -> Vec<Cow<'s, Candidate<'s>>> {
        let mut out: Vec<Cow<'_, Candidate<'_>>> = entries
            .into_iter()
            .flat_map(Entries::iter)
            .map(|e| Cow::Borrowed(&e.candidate))
            .collect();
        // What `env` may not set, `envFrom` does.
        if !entries.is_some_and(Entries::set_for_certain)
            && let Some(c) = self.env_from_value(name)
        {
            out.push(Cow::Owned(c));
        }
        out
    }

    /// `envFrom` sources that cannot be read and could set `name` (`env` does not set it for
    /// certain, and no readable source after them sets it).
    pub fn opaque_sources_for(&self, name: &str) -> Vec<OpaqueSource> {
        if self.set_for_certain(name) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for source in self.sources.iter().rev() {
            match source {
                FromSource::Known { prefix, data, .. } => {
                    if name
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|k| data.contains_key(k))
                    {
                        break;
                    }
                }
                FromSource::Unknown { path, prefix, why } => {
                    if name.starts_with(prefix.as_str()) {
                        out.push(OpaqueSource {
                            path: path.clone(),
                            prefix: prefix.clone(),
                            why: why.clone(),
                        });
                    }
                }
            }
        }
        out.reverse();
        out
    }

    /// Every opaque `envFrom` source of the container.
    pub fn opaque_sources(&self) -> Vec<OpaqueSource> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                FromSource::Unknown { path, prefix, why } => Some(OpaqueSource {
                    path: path.clone(),
                    prefix: prefix.clone(),
                    why: why.clone(),
                }),
                FromSource::Known { .. } => None,
            })
            .collect()
    }

    /// The value in effect at the end (the last `env` entry, else the last source, else a
    /// service link), for expanding `command` and `args`.
    fn effective(&self, name: &str) -> Option<EnvValue> {
        if let Some(last) = self.explicit.get(name).map(Entries::last) {
            return Some(last.candidate.value.clone());
        }
        if let Some(c) = self.env_from_value(name) {
            return Some(c.value);
        }
        service_link(name, &self.namespace, self.service_links)
    }

    /// Expands `$(VAR)` in a `command` or `args` entry with the final environment.
    pub fn expand(&self, input: &str) -> EnvValue {
        expand_within(input, |name| self.effective(name), &self.growth_left)
    }
}

/// A placeholder for a service link's port: the real one is the Service's, unknown at
/// admission. Not a scheme's default port, so that a URL built with it stays in canonical form.
pub const SERVICE_LINK_PORT: &str = "65535";

/// What a service-link variable holds.
enum LinkValue<'a> {
    Host,
    /// A port; None when only the Service knows it.
    Port(Option<&'a str>),
    /// `<proto>://<host>:<port>`.
    Url(String, Option<&'a str>),
    Proto(String),
}

/// The value a service-link variable (`envvars.FromServices`) stands for, when `name` is one:
/// the Service's cluster DNS name for its ClusterIP, [`SERVICE_LINK_PORT`] for a port only the
/// Service knows. Links of the Pod's own namespace exist only with `enableServiceLinks`; those
/// of the `kubernetes` Service in `default` always (`getServiceEnvVarMap`'s master services).
pub fn service_link(name: &str, namespace: &str, enabled: bool) -> Option<EnvValue> {
    let (prefix, value) = service_link_parts(name)?;
    let service = service_name(prefix)?;
    let namespace = if service == "kubernetes" {
        "default"
    } else if enabled {
        namespace
    } else {
        return None;
    };
    let host = format!("{service}.{namespace}.svc");
    let value = match value {
        LinkValue::Host => host,
        LinkValue::Port(port) => port.unwrap_or(SERVICE_LINK_PORT).to_string(),
        LinkValue::Url(proto, port) => {
            format!("{proto}://{host}:{}", port.unwrap_or(SERVICE_LINK_PORT))
        }
        LinkValue::Proto(proto) => proto,
    };
    Some(EnvValue::Literal(value))
}

/// Splits a service-link variable name into the Service's prefix and what it holds.
fn service_link_parts(name: &str) -> Option<(&str, LinkValue<'_>)> {
    if let Some(prefix) = name.strip_suffix("_SERVICE_HOST") {
        return Some((prefix, LinkValue::Host));
    }
    if let Some(prefix) = name.strip_suffix("_SERVICE_PORT") {
        return Some((prefix, LinkValue::Port(None)));
    }
    if let Some((prefix, _port_name)) = name.split_once("_SERVICE_PORT_") {
        return Some((prefix, LinkValue::Port(None)));
    }
    // `<P>_PORT_<n>_<PROTO>` and its `_ADDR`, `_PORT`, `_PROTO` companions.
    let mut search = name;
    while let Some((prefix, rest)) = search.rsplit_once("_PORT_") {
        let mut parts = rest.splitn(3, '_');
        let port = parts.next().unwrap_or_default();
        let proto = parts.next().unwrap_or_default();
        if !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && matches!(proto, "TCP" | "UDP" | "SCTP")
        {
            let proto = proto.to_ascii_lowercase();
            let value = match parts.next() {
                None => LinkValue::Url(proto, Some(port)),
                Some("ADDR") => LinkValue::Host,
                Some("PORT") => LinkValue::Port(Some(port)),
                Some("PROTO") => LinkValue::Proto(proto),
                Some(_) => return None,
            };
            return Some((prefix, value));
        }
        search = prefix;
    }
    if let Some(prefix) = name.strip_suffix("_PORT") {
        return Some((prefix, LinkValue::Url("tcp".into(), None)));
    }
    None
}

/// The Service name a link prefix comes from: `makeEnvVariableName` upper-cases the name, turns
/// `-` into `_` and puts `_` before a leading digit; Service names are DNS labels, so this is
/// reversed exactly.
fn service_name(prefix: &str) -> Option<String> {
    let prefix = match prefix.strip_prefix('_') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => prefix,
    };
    let ok = !prefix.is_empty()
        && prefix.len() <= 63
        && prefix
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !prefix.starts_with('_')
        && !prefix.ends_with('_');
    ok.then(|| prefix.to_ascii_lowercase().replace('_', "-"))
}

/// The value of one `env` entry as the kubelet resolves it: None when the entry is skipped for
/// certain; else the value, where it was read from, and whether it may be skipped.
fn value_of(
    var: &EnvVarView,
    pod: &PodFacts<'_>,
    snapshot: &Snapshot,
    defined: &BTreeMap<String, EnvValue>,
    service_links: bool,
    growth_left: &std::cell::Cell<usize>,
) -> Option<(EnvValue, Option<String>, bool)> {
    let raw = var.value.as_deref().unwrap_or("");
    // `if runtimeVal != ""`: a non-empty value is expanded and valueFrom is not read; an entry
    // with neither sets the variable to "".
    let from = match &var.value_from {
        Some(from) if raw.is_empty() => from,
        _ => {
            let value = expand_within(
                raw,
                |n| {
                    defined
                        .get(n)
                        .cloned()
                        .or_else(|| service_link(n, pod.namespace, service_links))
                },
                growth_left,
            );
            return Some((value, None, false));
        }
    };
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        let origin = key_reference("ConfigMap", &r.name, &r.key);
        let cannot_start = |what: &str| {
            Some((
                EnvValue::Unreadable(format!(
                    "{origin}: {what}, so the container cannot start until it does, with a value hostguard cannot see now"
                )),
                Some(origin.clone()),
                false,
            ))
        };
        return match snapshot.config_map(pod.namespace, &r.name) {
            // Values from a ConfigMap are not expanded: the kubelet expands only `value`.
            Lookup::Found(data) => match data.get(r.key.as_str()) {
                Some(v) => Some((EnvValue::Literal(v.to_string()), Some(origin), false)),
                None if optional => None,
                None => cannot_start("the ConfigMap has no such key"),
            },
            Lookup::Absent if optional => None,
            Lookup::Absent => cannot_start("the ConfigMap does not exist"),
            Lookup::Unknown => Some((
                EnvValue::Unreadable(
                    match snapshot.config_map_unknown_reason(pod.namespace, &r.name) {
                        Some(reason) => [&origin, ", which ", reason.as_ref()].concat(),
                        None => [&origin, ", which is not available to hostguard"].concat(),
                    },
                ),
                Some(origin),
                optional,
            )),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let origin = key_reference("Secret", &r.name, &r.key);
        return Some((
            EnvValue::Unreadable([&origin, " (hostguard never reads Secrets)"].concat()),
            Some(origin),
            r.optional == Some(true),
        ));
    }
    if let Some(r) = &from.field_ref {
        let origin = ["field ", &r.field_path].concat();
        let value = match downward(&r.field_path, pod) {
            Some(v) => EnvValue::Literal(v),
            None => EnvValue::Unreadable(
                [&origin, " (Downward API, known only when the Pod runs)"].concat(),
            ),
        };
        return Some((value, Some(origin), false));
    }
    if let Some(r) = &from.resource_field_ref {
        let origin = format!("resource {}", r.resource);
        return Some((
            EnvValue::Unreadable(format!("{origin} (Downward API)")),
            Some(origin),
            false,
        ));
    }
    Some((
        EnvValue::Unreadable("a valueFrom source hostguard does not know".into()),
        None,
        false,
    ))
}

/// A variable name of one container ([`ResolvedEnv::names`]): a name as a `str`, with its `env`
/// entries when it has any.
#[derive(Debug, Clone)]
pub struct VariableName<'e> {
    name: Cow<'e, str>,
    explicit: Option<&'e Entries<'e>>,
}

impl std::ops::Deref for VariableName<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for VariableName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for VariableName<'_> {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl PartialEq<&str> for VariableName<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

/// A variable's `env` entries, in order: the first kept in place, as a name almost always has
/// one (a list for every name was an allocation for every entry of every container).
#[derive(Debug, Clone)]
struct Entries<'e> {
    first: Explicit<'e>,
    later: Vec<Explicit<'e>>,
}

impl<'e> Entries<'e> {
    fn iter(&self) -> impl Iterator<Item = &Explicit<'e>> {
        std::iter::once(&self.first).chain(&self.later)
    }

    fn last(&self) -> &Explicit<'e> {
        self.later.last().unwrap_or(&self.first)
    }

    /// Whether some entry is never skipped, so that `env` sets the variable for certain.
    fn set_for_certain(&self) -> bool {
        self.iter().any(|e| !e.may_be_skipped)
    }
}

/// Whether `value` holds `$(`, where a `$(VAR)` reference could start. Most values hold no `$`
/// at all, which one `memchr` finds; `str::contains` with a two-byte needle sets up a searcher
/// for every value of every container.
fn opens_a_reference(value: &str) -> bool {
    let bytes = value.as_bytes();
    memchr::memchr_iter(b'$', bytes).any(|i| bytes.get(i + 1) == Some(&b'('))
}

/// `s` as `format!("{s:?}")` writes it. Names and keys are printable ASCII with no quote or
/// backslash, which `Debug` leaves as they are; they are quoted without the formatting machinery
/// (an origin is written for every `valueFrom` entry of every container).
fn push_quoted(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        use std::fmt::Write;
        let _ = write!(out, "{s:?}");
    }
}

/// `{object} "{name}" key "{key}"`, as `format!("{object} {name:?} key {key:?}")` writes it, in
/// one allocation for names and keys that need no escape.
fn key_reference(object: &str, name: &str, key: &str) -> String {
    let mut out = String::with_capacity(object.len() + name.len() + key.len() + 10);
    out.push_str(object);
    out.push(' ');
    push_quoted(&mut out, name);
    out.push_str(" key ");
    push_quoted(&mut out, key);
    out
}

/// A Downward API field known at admission: `metadata.namespace` always; for a Pod its name
/// (unless it is still to be generated) and one label or annotation by key
/// (`metadata.labels['k']`: a missing key gives "", as `ExtractFieldPathAsString` does).
fn downward(field_path: &str, pod: &PodFacts<'_>) -> Option<String> {
    if field_path == "metadata.namespace" {
        return Some(pod.namespace.to_string());
    }
    let meta = pod.pod?;
    if field_path == "metadata.name" {
        return (!meta.name.is_empty()).then(|| meta.name.to_string());
    }
    let (path, key) = field_path
        .strip_suffix("']")
        .and_then(|p| p.split_once("['"))?;
    match path {
        "metadata.labels" => Some(meta.labels.get(key).cloned().unwrap_or_default()),
        "metadata.annotations" => Some(meta.annotations.get(key).cloned().unwrap_or_default()),
        _ => None,
    }
}

/// [`expand`], charging what the result adds beyond `input`'s length to `growth_left`: a
/// result that would need more, or is longer than [`MAX_EXPANDED_BYTES`], is unreadable.
fn expand_within(
    input: &str,
    lookup: impl Fn(&str) -> Option<EnvValue>,
    growth_left: &std::cell::Cell<usize>,
) -> EnvValue {
    let limit = MAX_EXPANDED_BYTES.min(input.len().saturating_add(growth_left.get()));
    let value = expand_bounded(input, lookup, limit);
    if let EnvValue::Literal(out) = &value {
        growth_left.set(
            growth_left
                .get()
                .saturating_sub(out.len().saturating_sub(input.len())),
        );
    }
    value
}

/// Kubernetes' `$(VAR)` expansion (`third_party/forked/golang/expansion`): `$$` is `$`,
/// `$(NAME)` is NAME's value or stays literal when NAME is undefined, an unclosed `$(` stays
/// literal. A reference to an unreadable value makes the whole result unreadable, and so does a
/// result longer than [`MAX_EXPANDED_BYTES`].
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<EnvValue>) -> EnvValue {
    expand_bounded(input, lookup, MAX_EXPANDED_BYTES)
}

fn too_long(limit: usize) -> EnvValue {
    EnvValue::Unreadable(format!(
        "its $(VAR) expansion is longer than {limit} bytes, more than hostguard reads"
    ))
}

fn expand_bounded(
    input: &str,
    lookup: impl Fn(&str) -> Option<EnvValue>,
    limit: usize,
) -> EnvValue {
    if !input.contains('$') {
        return EnvValue::Literal(input.to_string());
    }
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut unreadable: Option<String> = None;
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest[1..].find(')') {
                    Some(close) => {
                        let name = &rest[1..1 + close];
                        match lookup(name) {
                            Some(EnvValue::Literal(v)) => {
                                if out.len() + v.len() > limit {
                                    return too_long(limit);
                                }
                                out.push_str(&v)
                            }
                            Some(EnvValue::Unreadable(why)) => {
                                unreadable
                                    .get_or_insert(format!("refers to $({name}), from {why}"));
                            }
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 2
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // `$x`: the operator and the next character stay as they are.
                    let ch = rest.chars().next().unwrap_or('$');
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    match unreadable {
        Some(why) => EnvValue::Unreadable(why),
        None if out.len() > limit => too_long(limit),
        None => EnvValue::Literal(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container of a pod template with `env` and nothing else.
    fn container_with_env<'a>(env: &'a [EnvVarView<'a>]) -> ContainerView<'a> {
        ContainerView {
            path: "spec.containers[0]".into(),
            name: "app",
            env,
            env_from: &[],
            command: &[],
            args: &[],
            image: "",
            volume_mounts: &[],
            exec: Vec::new(),
            http_get: Vec::new(),
        }
    }

    /// An `env` entry with a literal value.
    fn entry(name: &'static str, value: &'static str) -> EnvVarView<'static> {
        EnvVarView {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Each candidate's value, or why it cannot be read.
    fn values(candidates: Vec<Cow<'_, Candidate<'_>>>) -> Vec<String> {
        candidates
            .iter()
            .map(|c| match &c.value {
                EnvValue::Literal(v) => v.clone(),
                EnvValue::Unreadable(why) => why.clone(),
            })
            .collect()
    }

    /// A `$(` is found where `str::contains` finds it, with `$` and `(` in every arrangement.
    #[test]
    fn a_reference_opens_where_contains_finds_dollar_paren() {
        let values = [
            "",
            "$",
            "(",
            "$(",
            "$$(",
            "a$(b",
            "$ (",
            "($",
            "$$",
            "x$",
            "$)(",
            "$(A)$(B)",
            "\u{e9}$(\u{e9})",
            "$\u{e9}(",
            "abc",
            "$$$$(",
        ];
        for value in values {
            assert_eq!(opens_a_reference(value), value.contains("$("), "{value:?}");
        }
    }

    /// Quoting is `Debug`'s, for names that need no escape and for every kind that does, as
    /// the name and as the key of a reference.
    #[test]
    fn quoting_is_debug_quoting() {
        for s in [
            "",
            "ai-config",
            "OPENAI_BASE_URL",
            "with space",
            "quote\"inside",
            "back\\slash",
            "tab\there",
            "new\nline",
            "del\u{7f}",
            "caf\u{e9}",
            "zero\u{200b}width",
            "~!@#$%^&*()_+`-={}|[]:;'<>?,./",
        ] {
            let mut quoted = String::new();
            push_quoted(&mut quoted, s);
            assert_eq!(quoted, format!("{s:?}"), "{s:?}");
            assert_eq!(
                key_reference("Secret", s, "key"),
                format!("Secret {s:?} key \"key\"")
            );
            assert_eq!(
                key_reference("ConfigMap", "ai", s),
                format!("ConfigMap \"ai\" key {s:?}")
            );
        }
    }
    use rstest::rstest;

    fn lookup(name: &str) -> Option<EnvValue> {
        match name {
            "HOST" => Some(EnvValue::Literal("x.openai.azure.com".into())),
            "EMPTY" => Some(EnvValue::Literal(String::new())),
            "SECRET" => Some(EnvValue::Unreadable("Secret \"s\" key \"k\"".into())),
            _ => None,
        }
    }

    #[rstest]
    #[case::plain("https://a/b", "https://a/b")]
    #[case::reference("https://$(HOST)/v1", "https://x.openai.azure.com/v1")]
    #[case::undefined_stays_literal("https://$(NOPE)/v1", "https://$(NOPE)/v1")]
    #[case::escaped_dollar("$$(HOST)", "$(HOST)")]
    #[case::double_escape("$$$$", "$$")]
    #[case::unclosed("$(HOST", "$(HOST")]
    #[case::lone_dollar_at_end("cost$", "cost$")]
    #[case::dollar_other("$x$(HOST)", "$xx.openai.azure.com")]
    #[case::empty_value("a$(EMPTY)b", "ab")]
    #[case::non_ascii_after_dollar("$é", "$é")]
    fn expansion_follows_kubernetes_rules(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(expand(input, lookup), EnvValue::Literal(expected.into()));
    }

    #[test]
    fn an_expansion_longer_than_the_cap_is_unreadable() {
        let big = "x".repeat(MAX_EXPANDED_BYTES / 2 + 1);
        let lookup = |name: &str| (name == "BIG").then(|| EnvValue::Literal(big.clone()));
        assert_eq!(
            expand("$(BIG)", lookup),
            EnvValue::Literal(big.clone()),
            "under the cap"
        );
        match expand("$(BIG)$(BIG)", lookup) {
            EnvValue::Unreadable(why) => assert!(why.contains("longer than"), "{why}"),
            other => panic!(
                "expected unreadable, got {} bytes",
                format!("{other:?}").len()
            ),
        }
    }

    /// A name set three times keeps every value as a candidate, in order; `command` expands it
    /// to the last, as the kubelet's map holds the last write (`MakeEnvironmentVariables`).
    #[test]
    fn every_entry_of_a_repeated_name_is_a_candidate_and_the_last_is_in_effect() {
        let env = vec![
            entry("X", "one"),
            entry("Y", "other"),
            entry("X", "two"),
            entry("X", "three"),
        ];
        let container = container_with_env(&env);
        let resolved = ResolvedEnv::resolve(
            &container,
            &PodFacts::template("default"),
            &Snapshot::default(),
        );
        assert_eq!(values(resolved.candidates("X")), ["one", "two", "three"]);
        assert!(matches!(resolved.expand("$(X)"), EnvValue::Literal(v) if v == "three"));
        assert!(matches!(resolved.expand("$(Y)"), EnvValue::Literal(v) if v == "other"));
        assert_eq!(resolved.names(), ["X", "Y"]);
    }

    /// Every name, from `env`, from `envFrom` (with its prefix) or from both, is listed once,
    /// sorted, and its candidates through the list are those asked for by name: the `env`
    /// entries of a name that `envFrom` also sets are not lost in the merge.
    #[test]
    fn each_listed_name_has_the_candidates_of_its_name() {
        use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapEnvSource, EnvFromSource};
        let mut snapshot = Snapshot::default();
        let mut data = BTreeMap::new();
        for key in ["B", "C", "URL"] {
            data.insert(key.to_string(), format!("from the map: {key}"));
        }
        snapshot.insert_config_map(
            &ConfigMap {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some("cm".into()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            },
            "default",
        );
        let from = |prefix: Option<&str>| EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: "cm".into(),
                optional: None,
            }),
            prefix: prefix.map(String::from),
            ..Default::default()
        };
        let env_from = [from(None), from(Some("P_"))];
        // `B` is set by both `env` (twice) and the map; `P_URL` by both the prefixed map and
        // `env`; `A` by `env` alone; `C` and `URL` by the map alone.
        let env = vec![
            entry("B", "env one"),
            entry("A", "env"),
            entry("P_URL", "env url"),
            entry("B", "env two"),
        ];
        let container = ContainerView {
            env_from: &env_from,
            ..container_with_env(&env)
        };
        let resolved = ResolvedEnv::resolve(&container, &PodFacts::template("default"), &snapshot);
        let names = resolved.names();
        assert_eq!(
            names,
            ["A", "B", "C", "P_B", "P_C", "P_URL", "URL"],
            "each name once, sorted"
        );
        for name in &names {
            assert_eq!(
                values(resolved.candidates_of(name)),
                values(resolved.candidates(name)),
                "{name}"
            );
        }
        let b = names.iter().find(|n| **n == "B").unwrap();
        assert_eq!(values(resolved.candidates_of(b)), ["env one", "env two"]);
        let url = names.iter().find(|n| **n == "P_URL").unwrap();
        assert_eq!(values(resolved.candidates_of(url)), ["env url"]);
    }

    #[test]
    fn exponential_expansion_stops_at_the_container_budget() {
        // A=1 KiB, B=16×A, C=16×B, D=16×C...: each step 16 times longer; without a bound the
        // fifth is 1 GiB.
        let mut env = vec![EnvVarView {
            name: "V0".into(),
            value: Some("x".repeat(1024).into()),
            ..Default::default()
        }];
        for i in 1..8 {
            env.push(EnvVarView {
                name: format!("V{i}").into(),
                value: Some(format!("$(V{})", i - 1).repeat(16).into()),
                ..Default::default()
            });
        }
        let container = container_with_env(&env);
        let resolved = ResolvedEnv::resolve(
            &container,
            &PodFacts::template("default"),
            &Snapshot::default(),
        );
        let len = |name: &str| match &resolved.candidates(name)[0].value {
            EnvValue::Literal(v) => Some(v.len()),
            EnvValue::Unreadable(_) => None,
        };
        assert_eq!(len("V1"), Some(16 * 1024));
        // 256 KiB is over the per-value cap; and everything built on it cannot be read.
        for i in 2..8 {
            assert_eq!(len(&format!("V{i}")), None, "V{i}");
        }
        // `command` entries share the container's budget and cap.
        assert!(matches!(
            resolved.expand("$(V1)$(V1)$(V1)$(V1)$(V1)"),
            EnvValue::Unreadable(_)
        ));
    }

    #[test]
    fn reference_to_secret_makes_value_unreadable() {
        match expand("https://$(SECRET)/v1", lookup) {
            EnvValue::Unreadable(why) => assert!(why.contains("$(SECRET)"), "{why}"),
            other => panic!("expected unreadable, got {other:?}"),
        }
    }
}
