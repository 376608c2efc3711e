//! The read-only view of cluster state that the engine receives.
//!
//! The webhook builds it from reflector caches and swaps it atomically; the CLI builds it from the
//! documents in its input. Every lookup says whether an absent answer means "does not exist"
//! (the snapshot is authoritative, as a synced cache is) or "not known" (offline input, where a
//! ConfigMap or Namespace may simply not be part of the files given). The engine fails closed on
//! "not known".

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube_core::{Selector, SelectorExt};
use thiserror::Error;

use crate::api::{AIWorkload, ApiClass, ClusterProvider, WorkloadApiClass};

/// Label map as Kubernetes stores it.
pub type Labels = BTreeMap<String, String>;

/// A map of strings as the snapshot keeps many of them (a namespace's labels, a ConfigMap's
/// data): its pairs in key order, in one allocation of the exact size, each key and value boxed
/// to its length. Read with [`get`](CompactMap::get) and [`iter`](CompactMap::iter).
///
/// A `BTreeMap<String, String>` of two or three pairs costs a B-tree leaf sized for eleven
/// (about 540 bytes) besides its strings: with 5,000 namespaces that was 2.6 MB of a large
/// cluster's 21 MB heap once ready, and the ConfigMap cache the audit fills (one per namespace)
/// as much again (heaptrack, `scripts/bench_cluster.py`), most of it empty slots. The engine
/// matches selectors against a [`Labels`] (`kube_core::Selector` takes one), so the one
/// namespace a review is in is turned back into one ([`CompactMap::to_labels`]) when it is
/// decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactMap(Box<[(Box<str>, Box<str>)]>);

/// A namespace's labels as the snapshot and the namespace store keep them.
pub type StoredLabels = CompactMap;

impl CompactMap {
    /// The value of `key`, if the map has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// The keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The map as the engine matches labels.
    pub fn to_labels(&self) -> Labels {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl From<BTreeMap<String, String>> for CompactMap {
    /// A `BTreeMap` iterates in key order, so the pairs need no sorting.
    fn from(map: BTreeMap<String, String>) -> Self {
        CompactMap(
            map.into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        )
    }
}

impl From<&BTreeMap<String, String>> for CompactMap {
    fn from(map: &BTreeMap<String, String>) -> Self {
        CompactMap(
            map.iter()
                .map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_str())))
                .collect(),
        )
    }
}

impl From<Option<&BTreeMap<String, String>>> for CompactMap {
    /// An object's optional map (`metadata.labels`, a ConfigMap's `data`); none is empty.
    fn from(map: Option<&BTreeMap<String, String>>) -> Self {
        map.map(CompactMap::from).unwrap_or_default()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for CompactMap {
    /// Pairs in any order; of two with the same key the later one stays, as in a `BTreeMap`.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect::<BTreeMap<String, String>>()
            .into()
    }
}

/// Result of looking something up in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// The snapshot is authoritative and the object does not exist.
    Absent,
    /// The snapshot does not know (offline input without that object, or a cache miss).
    Unknown,
}

impl<T> Lookup<T> {
    /// The found value turned by `f`; absent and unknown stay as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Found(t) => Lookup::Found(f(t)),
            Lookup::Absent => Lookup::Absent,
            Lookup::Unknown => Lookup::Unknown,
        }
    }
}

/// An AIWorkload with its selector parsed once, when it enters the snapshot.
#[derive(Debug, Clone)]
pub struct DeclaredWorkload {
    pub name: String,
    pub namespace: String,
    pub selector: Selector,
    pub provider: String,
    /// The AIWorkload's own labels (a HostingPolicy may trust only some AIWorkloads).
    pub labels: Labels,
    /// The classes the declaration covers (from `apiClass`, else from `apis`, else stateless).
    pub classes: Vec<ApiClass>,
    /// The declared class as written, for reports.
    pub declared_class: Option<WorkloadApiClass>,
    pub endpoint: Option<String>,
    /// A label key and the values of it one of which every pod the selector matches must have,
    /// by which the snapshot finds the declaration: the first `matchLabels` pair, else the first
    /// `In` expression. None when the selector requires no such label.
    pub index_label: Option<(String, Vec<String>)>,
}

/// See [`DeclaredWorkload::index_label`].
fn index_label(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Option<(String, Vec<String>)> {
    if let Some((k, v)) = selector.match_labels.as_ref().and_then(|l| l.iter().next()) {
        return Some((k.clone(), vec![v.clone()]));
    }
    selector
        .match_expressions
        .iter()
        .flatten()
        .find(|e| e.operator == "In" && e.values.as_ref().is_some_and(|v| !v.is_empty()))
        .map(|e| (e.key.clone(), e.values.clone().unwrap_or_default()))
}

/// An AIWorkload that cannot be used, with the reason.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("AIWorkload {namespace}/{name}: {path}: {reason}")]
pub struct DeclaredWorkloadError {
    pub namespace: String,
    pub name: String,
    /// Field path at fault, e.g. `spec.selector`.
    pub path: String,
    pub reason: String,
}

impl DeclaredWorkload {
    /// Compiles an AIWorkload. Fails when it has no namespace or its selector is malformed.
    pub fn from_resource(aiw: &AIWorkload) -> Result<Self, DeclaredWorkloadError> {
        let name = aiw.metadata.name.clone().unwrap_or_default();
        let namespace = aiw.metadata.namespace.clone().unwrap_or_default();
        let err = |path: &str, reason: String| DeclaredWorkloadError {
            namespace: namespace.clone(),
            name: name.clone(),
            path: path.to_string(),
            reason,
        };
        if namespace.is_empty() {
            return Err(err(
                "metadata.namespace",
                "is required (AIWorkload is namespaced)".into(),
            ));
        }
        if !crate::api::is_known_provider(&aiw.spec.provider) {
            return Err(err(
                "spec.provider",
                format!(
                    "{:?} is not a provider hostguard knows (known: {})",
                    aiw.spec.provider,
                    crate::api::KNOWN_PROVIDERS.join(", ")
                ),
            ));
        }
        let selector = Selector::try_from(aiw.spec.selector.clone()).map_err(|e| {
            err(
                "spec.selector",
                format!(
                    "{} is not a valid label selector: {e}",
                    serde_json::to_string(&aiw.spec.selector).unwrap_or_default()
                ),
            )
        })?;
        let classes = match aiw.spec.api_class {
            Some(class) => class.classes().to_vec(),
            None => classes_of_apis(&aiw.spec.apis),
        };
        Ok(DeclaredWorkload {
            name: name.clone(),
            namespace: namespace.clone(),
            selector,
            provider: aiw.spec.provider.clone(),
            labels: aiw.metadata.labels.clone().unwrap_or_default(),
            classes,
            declared_class: aiw.spec.api_class,
            endpoint: aiw.spec.endpoint.clone().filter(|e| !e.is_empty()),
            index_label: index_label(&aiw.spec.selector),
        })
    }

    pub fn selects(&self, pod_labels: &Labels) -> bool {
        self.selector.matches(pod_labels)
    }
}

/// The stateful OpenAI API families; any other named API counts as stateless. Responses and
/// conversations are stateful only when stored, which a declaration cannot show, so they are
/// counted as stateless (fail closed).
const STATEFUL_APIS: &[&str] = &[
    "assistants",
    "threads",
    "files",
    "uploads",
    "vector_stores",
    "vector-stores",
    "vectorStores",
    "batches",
    "fine_tuning",
    "fine-tuning",
    "fineTuning",
    "evals",
    "containers",
];

/// Derives the API classes from a list of API names (`chat.completions`, `assistants`, ...).
pub fn classes_of_apis(apis: &[String]) -> Vec<ApiClass> {
    if apis.is_empty() {
        return vec![ApiClass::Stateless];
    }
    let mut classes = Vec::new();
    for api in apis {
        let family = api.split('.').next().unwrap_or(api);
        let class = if STATEFUL_APIS.contains(&family) {
            ApiClass::Stateful
        } else {
            ApiClass::Stateless
        };
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    classes.sort();
    classes
}

/// Data of a ConfigMap (`data` only: `binaryData` is never an endpoint), kept compact: the
/// audit caches one for each namespace it visits (see [`CompactMap`]).
pub type ConfigMapData = Arc<CompactMap>;

/// ConfigMaps that live outside the snapshot: in the cluster, a bounded cache that the webhook
/// fills on demand before it evaluates (see `cluster::config_maps`). A lookup never does I/O.
pub trait ConfigMapSource: std::fmt::Debug + Send + Sync {
    fn get(&self, namespace: &str, name: &str) -> Lookup<ConfigMapData>;

    /// Why a ConfigMap that [`get`](Self::get) answers `Unknown` for cannot be known, when there
    /// is more to say than that it is not available: offline, two different ConfigMaps of that
    /// name at the same distance from the document (`is ambiguous: a.yaml:3 and b.yaml:1 ...`).
    /// The text follows `ConfigMap "NAME" ` in messages.
    fn unknown_reason(&self, _namespace: &str, _name: &str) -> Option<String> {
        None
    }
}

/// Namespaces that live outside the snapshot: in the cluster, the ones the webhook fetched on
/// demand because the namespace watch had not delivered them yet (created in the same GitOps
/// sync as their workloads, or watch lag). A lookup never does I/O.
pub trait NamespaceSource: std::fmt::Debug + Send + Sync {
    fn labels(&self, name: &str) -> Lookup<Labels>;
}

/// Namespaces with at most this many AIWorkloads are not indexed: their declarations are
/// scanned. A cluster's namespaces mostly have one or two, and an index of hash maps cost each
/// about 1 KiB (5 MB in a cluster of 5,000 namespaces, `scripts/bench_cluster.py`), to spare a
/// scan of a few selectors' first requirement.
const INDEX_FROM: usize = 8;

/// The AIWorkloads of one namespace, by name; above [`INDEX_FROM`] of them, also indexed by a
/// label value their selectors require, so that finding those that may select a pod costs the
/// pod's labels and the candidates (those that require a label value the pod has), not every
/// AIWorkload of the namespace.
#[derive(Debug, Clone, Default)]
struct Declarations {
    /// Sorted by name. Behind an `Arc`: the webhook's AIWorkload store keeps the same compiled
    /// declarations, which every snapshot built from it shares rather than copies.
    by_name: Vec<Arc<DeclaredWorkload>>,
    /// Built when the namespace grows past [`INDEX_FROM`], and kept from then on.
    index: Option<Box<LabelIndex>>,
}

/// Names of AIWorkloads by the label value their selectors require.
#[derive(Debug, Clone, Default)]
struct LabelIndex {
    /// Names by [`DeclaredWorkload::index_label`]: label key, then value.
    by_label: HashMap<String, HashMap<String, Vec<String>>>,
    /// Names of those whose selector requires no label value (`NotIn`, `Exists`,
    /// `DoesNotExist` only, or empty).
    unindexed: Vec<String>,
}

impl LabelIndex {
    fn add(&mut self, declared: &DeclaredWorkload) {
        let name = &declared.name;
        match &declared.index_label {
            Some((k, values)) => {
                let by_value = self.by_label.entry(k.clone()).or_default();
                for v in values {
                    let names = by_value.entry(v.clone()).or_default();
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
            }
            None => self.unindexed.push(name.clone()),
        }
    }

    fn remove(&mut self, old: &DeclaredWorkload) {
        let name = &old.name;
        match &old.index_label {
            Some((k, values)) => {
                if let Some(by_value) = self.by_label.get_mut(k) {
                    for v in values {
                        if let Some(names) = by_value.get_mut(v) {
                            names.retain(|n| n != name);
                            if names.is_empty() {
                                by_value.remove(v);
                            }
                        }
                    }
                    if by_value.is_empty() {
                        self.by_label.remove(k);
                    }
                }
            }
            None => self.unindexed.retain(|n| n != name),
        }
    }
}

impl Declarations {
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.by_name.binary_search_by(|d| d.name.as_str().cmp(name))
    }

    fn get(&self, name: &str) -> Option<&DeclaredWorkload> {
        self.position(name).ok().map(|i| self.by_name[i].as_ref())
    }

    fn insert(&mut self, declared: Arc<DeclaredWorkload>) {
        // Declarations inserted in name order (as the webhook builds its snapshots) each go at
        // the end, without a search.
        let at = match self.by_name.last() {
            Some(last) if last.name < declared.name => Err(self.by_name.len()),
            _ => self.position(&declared.name),
        };
        match at {
            Ok(i) => {
                if let Some(index) = &mut self.index {
                    index.remove(&self.by_name[i]);
                    index.add(&declared);
                }
                self.by_name[i] = declared;
            }
            Err(i) => {
                if let Some(index) = &mut self.index {
                    index.add(&declared);
                }
                self.by_name.insert(i, declared);
            }
        }
        if self.index.is_none() && self.by_name.len() > INDEX_FROM {
            let mut index = LabelIndex::default();
            for d in &self.by_name {
                index.add(d);
            }
            self.index = Some(Box::new(index));
        }
    }

    fn remove(&mut self, name: &str) {
        if let Ok(i) = self.position(name) {
            let old = self.by_name.remove(i);
            if let Some(index) = &mut self.index {
                index.remove(&old);
            }
        }
    }

    /// Those whose selector may match `pod_labels` (each has the pod's value of its index
    /// label, or has none), in name order; the caller still checks the selector.
    fn candidates<'a>(&'a self, pod_labels: &Labels) -> Vec<&'a DeclaredWorkload> {
        let Some(index) = &self.index else {
            return self
                .by_name
                .iter()
                .map(Arc::as_ref)
                .filter(|d| may_select(d, pod_labels))
                .collect();
        };
        let mut names: Vec<&str> = index.unindexed.iter().map(String::as_str).collect();
        if !index.by_label.is_empty() {
            for (k, v) in pod_labels {
                if let Some(found) = index.by_label.get(k).and_then(|values| values.get(v)) {
                    names.extend(found.iter().map(String::as_str));
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        names.into_iter().filter_map(|n| self.get(n)).collect()
    }
}

/// Whether `declared`'s selector may match `pod_labels` by its index label: the pod has one of
/// its values, or it has none. What the index answers, for a namespace without one.
fn may_select(declared: &DeclaredWorkload, pod_labels: &Labels) -> bool {
    match &declared.index_label {
        None => true,
        Some((k, values)) => pod_labels.get(k).is_some_and(|v| values.contains(v)),
    }
}

/// A ConfigMap as a change under review would leave it (see [`Snapshot::with_config_map`]).
#[derive(Debug)]
struct ProposedConfigMap {
    namespace: String,
    name: String,
    data: Option<ConfigMapData>,
}

/// A related object's key: (group, kind, namespace, name).
pub type RelatedKey = (String, String, String, String);

/// Read-only cluster state for one evaluation.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// What the cluster runs on.
    pub cluster_provider: ClusterProvider,
    // The maps are shared between clones (copied on the first write to a clone), so that a
    // snapshot with one ConfigMap changed ([`Snapshot::with_config_map`]) costs no copy of them.
    /// Each namespace's labels, shared with the store they were built from (the webhook's
    /// namespace watch keeps the same `Arc`s).
    namespaces: Arc<HashMap<String, Arc<StoredLabels>>>,
    namespaces_authoritative: bool,
    config_maps: Arc<HashMap<(String, String), ConfigMapData>>,
    config_maps_authoritative: bool,
    config_map_source: Option<Arc<dyn ConfigMapSource>>,
    namespace_source: Option<Arc<dyn NamespaceSource>>,
    /// AIWorkloads by namespace, indexed by label (see [`Declarations`]).
    declared: Arc<HashMap<String, Declarations>>,
    /// Objects an AI tool's resource refers to (an Envoy Gateway `Backend`, a
    /// `BackendTLSPolicy`, an `AIServiceBackend`), by (group, kind, namespace, name).
    related: Arc<BTreeMap<RelatedKey, Arc<serde_json::Value>>>,
    related_authoritative: bool,
    /// One ConfigMap as a change under review would leave it (None: deleted or not created),
    /// which every lookup of it answers instead of the maps and the source.
    proposed: Option<Arc<ProposedConfigMap>>,
    /// Increases with every change, for metrics and logs.
    pub generation: u64,
}

impl Snapshot {
    /// An empty, non-authoritative snapshot (the offline default).
    pub fn offline(cluster_provider: ClusterProvider) -> Self {
        Snapshot {
            cluster_provider,
            ..Default::default()
        }
    }

    /// Marks namespace and ConfigMap lookups as authoritative: absence then means the object
    /// does not exist. Only a synced cluster cache may claim this.
    pub fn set_authoritative(&mut self, namespaces: bool, config_maps: bool) {
        self.namespaces_authoritative = namespaces;
        self.config_maps_authoritative = config_maps;
    }

    pub fn insert_namespace(&mut self, ns: &Namespace) {
        if let Some(name) = &ns.metadata.name {
            let labels = StoredLabels::from(ns.metadata.labels.as_ref());
            Arc::make_mut(&mut self.namespaces).insert(name.clone(), Arc::new(labels));
        }
    }

    pub fn insert_namespace_labels(&mut self, name: impl Into<String>, labels: Labels) {
        self.insert_shared_namespace_labels(name, Arc::new(labels.into()));
    }

    /// [`insert_namespace_labels`](Self::insert_namespace_labels) with labels the caller keeps
    /// too (the webhook's namespace store): shared, not copied.
    pub fn insert_shared_namespace_labels(
        &mut self,
        name: impl Into<String>,
        labels: Arc<StoredLabels>,
    ) {
        Arc::make_mut(&mut self.namespaces).insert(name.into(), labels);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        Arc::make_mut(&mut self.namespaces).remove(name);
    }

    /// Adds a ConfigMap. Only `data` is kept: `binaryData` is never an endpoint.
    pub fn insert_config_map(&mut self, cm: &ConfigMap, default_namespace: &str) {
        let Some(name) = cm.metadata.name.clone() else {
            return;
        };
        let ns = cm
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_string());
        Arc::make_mut(&mut self.config_maps)
            .insert((ns, name), Arc::new(CompactMap::from(cm.data.as_ref())));
    }

    pub fn remove_config_map(&mut self, namespace: &str, name: &str) {
        Arc::make_mut(&mut self.config_maps).remove(&(namespace.to_string(), name.to_string()));
    }

    /// Adds an AIWorkload's declaration (an `Arc` of it is shared, not copied).
    pub fn insert_declared(&mut self, declared: impl Into<Arc<DeclaredWorkload>>) {
        let declared = declared.into();
        Arc::make_mut(&mut self.declared)
            .entry(declared.namespace.clone())
            .or_default()
            .insert(declared);
    }

    pub fn remove_declared(&mut self, namespace: &str, name: &str) {
        if let Some(declarations) = Arc::make_mut(&mut self.declared).get_mut(namespace) {
            declarations.remove(name);
        }
    }

    /// Labels of a namespace, as the snapshot holds them.
    pub fn namespace_labels(&self, name: &str) -> Lookup<&StoredLabels> {
        match self.namespaces.get(name) {
            Some(labels) => Lookup::Found(labels),
            None if self.namespaces_authoritative => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }

    /// Consults `source` for namespaces the snapshot does not hold itself.
    pub fn set_namespace_source(&mut self, source: Arc<dyn NamespaceSource>) {
        self.namespace_source = Some(source);
    }

    /// Labels of a namespace as the engine decides with them: from the snapshot, else from its
    /// source (fetched on demand), else absent or unknown as [`Snapshot::namespace_labels`]
    /// says. The engine treats both absent and unknown as "selectors match" (fail closed).
    pub fn namespace_labels_resolved(&self, name: &str) -> Lookup<Labels> {
        if let Some(labels) = self.namespaces.get(name) {
            return Lookup::Found(labels.to_labels());
        }
        if let Some(source) = &self.namespace_source {
            match source.labels(name) {
                Lookup::Found(labels) => return Lookup::Found(labels),
                Lookup::Absent => return Lookup::Absent,
                Lookup::Unknown => {}
            }
        }
        if self.namespaces_authoritative {
            Lookup::Absent
        } else {
            Lookup::Unknown
        }
    }

    /// Consults `source` for ConfigMaps the snapshot does not hold itself.
    pub fn set_config_map_source(&mut self, source: Arc<dyn ConfigMapSource>) {
        self.config_map_source = Some(source);
    }

    /// Data of a ConfigMap: from the snapshot, else from its source, else unknown (or absent
    /// when the snapshot is authoritative).
    pub fn config_map(&self, namespace: &str, name: &str) -> Lookup<ConfigMapData> {
        if let Some(p) = &self.proposed
            && p.namespace == namespace
            && p.name == name
        {
            return match &p.data {
                Some(data) => Lookup::Found(Arc::clone(data)),
                None => Lookup::Absent,
            };
        }
        if let Some(data) = self
            .config_maps
            .get(&(namespace.to_string(), name.to_string()))
        {
            return Lookup::Found(Arc::clone(data));
        }
        if let Some(source) = &self.config_map_source {
            return source.get(namespace, name);
        }
        if self.config_maps_authoritative {
            Lookup::Absent
        } else {
            Lookup::Unknown
        }
    }

    /// This snapshot with ConfigMap `namespace/name` as a change under review would leave it
    /// (`None`: it does not exist). Cheap: the maps are shared, not copied.
    pub fn with_config_map(
        &self,
        namespace: &str,
        name: &str,
        data: Option<ConfigMapData>,
    ) -> Snapshot {
        Snapshot {
            proposed: Some(Arc::new(ProposedConfigMap {
                namespace: namespace.to_string(),
                name: name.to_string(),
                data,
            })),
            ..self.clone()
        }
    }

    /// The AIWorkloads of a namespace, whatever they select.
    pub fn declared_in<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a DeclaredWorkload> {
        self.declared
            .get(namespace)
            .into_iter()
            .flat_map(|d| d.by_name.iter().map(Arc::as_ref))
    }

    /// Why [`config_map`](Self::config_map) answers `Unknown` for a ConfigMap, when its source
    /// says more than that it is not available (see [`ConfigMapSource::unknown_reason`]).
    pub fn config_map_unknown_reason(&self, namespace: &str, name: &str) -> Option<String> {
        self.config_map_source
            .as_ref()
            .and_then(|s| s.unknown_reason(namespace, name))
    }

    /// The AIWorkloads of a namespace whose selectors match the given pod labels, by name.
    pub fn declarations_for<'a>(
        &'a self,
        namespace: &str,
        pod_labels: &'a Labels,
    ) -> impl Iterator<Item = &'a DeclaredWorkload> + 'a {
        self.declared
            .get(namespace)
            .into_iter()
            .flat_map(move |d| d.candidates(pod_labels))
            .filter(move |d| d.selects(pod_labels))
    }

    /// Adds an object an adapter may look up, by group, kind, namespace and name. The callers
    /// give only the kinds the adapters look up (`detect::adapters::related_kinds`): the
    /// snapshot stands below detection and does not know them itself.
    pub fn insert_related(&mut self, object: &serde_json::Value, default_namespace: &str) {
        let Some(key) = related_key(object, default_namespace) else {
            return;
        };
        Arc::make_mut(&mut self.related).insert(key, Arc::new(object.clone()));
    }

    pub fn remove_related(&mut self, object: &serde_json::Value, default_namespace: &str) {
        if let Some(key) = related_key(object, default_namespace) {
            Arc::make_mut(&mut self.related).remove(&key);
        }
    }

    /// Marks related-object lookups as authoritative (a synced cache of every related kind).
    pub fn set_related_authoritative(&mut self, authoritative: bool) {
        self.related_authoritative = authoritative;
    }

    /// One related object by group, kind, namespace and name.
    pub fn related(
        &self,
        group: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Lookup<Arc<serde_json::Value>> {
        let key = (group.into(), kind.into(), namespace.into(), name.into());
        match self.related.get(&key) {
            Some(v) => Lookup::Found(Arc::clone(v)),
            None if self.related_authoritative => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }

    /// Every related object of a group and kind in a namespace, by name.
    pub fn related_in<'a>(
        &'a self,
        group: &'a str,
        kind: &'a str,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
        self.related
            .iter()
            .filter(move |((g, k, n, _), _)| g == group && k == kind && n == namespace)
            .map(|(_, v)| v.as_ref())
    }

    /// Number of AIWorkloads held, for metrics.
    pub fn declared_count(&self) -> usize {
        self.declared.values().map(|d| d.by_name.len()).sum()
    }
}

/// The key of a related object, when its kind is one adapters look up.
/// The key a related object is stored under (its namespace `default_namespace` when it names
/// none).
pub fn related_key(object: &serde_json::Value, default_namespace: &str) -> Option<RelatedKey> {
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let name = object.pointer("/metadata/name")?.as_str()?;
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(serde_json::Value::as_str)
        .unwrap_or(default_namespace);
    Some((group.into(), kind.into(), namespace.into(), name.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn aiw(name: &str, selector: serde_json::Value) -> DeclaredWorkload {
        let aiw: AIWorkload = serde_json::from_value(json!({
            "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"selector": selector, "provider": "openai", "apiClass": "stateful"},
        }))
        .expect("AIWorkload");
        DeclaredWorkload::from_resource(&aiw).expect("compiles")
    }

    #[test]
    fn stored_labels_find_every_key_and_give_back_the_same_map() {
        // Keys that sort differently by bytes than by letters ("Z" < "a", "a-b" < "a.b" < "a/b"),
        // a key that is a prefix of another, and an empty value.
        let labels: Labels = [
            ("a/b", "1"),
            ("a.b", "2"),
            ("a-b", "3"),
            ("Z", "4"),
            ("team", ""),
            ("kubernetes.io/metadata.name", "ns-1"),
            ("kubernetes.io/metadata", "prefix"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let stored = StoredLabels::from(&labels);
        assert_eq!(stored.len(), labels.len());
        for (k, v) in &labels {
            assert_eq!(stored.get(k), Some(v.as_str()), "{k}");
        }
        for missing in ["", "a", "kubernetes.io", "zz", "A/B"] {
            assert_eq!(stored.get(missing), None, "{missing}");
        }
        assert_eq!(stored.to_labels(), labels);
        assert_eq!(StoredLabels::from(labels.clone()), stored);
        assert!(StoredLabels::from(Labels::new()).is_empty());
        assert_eq!(
            stored.keys().collect::<Vec<_>>(),
            labels.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_compact_map_collected_from_pairs_keeps_the_later_of_two_with_one_key() {
        // As a `BTreeMap` collects, and so as a ConfigMap's data read from a document did.
        let map: CompactMap = [("b", "1"), ("a", "2"), ("b", "3")].into_iter().collect();
        assert_eq!(map.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")]);
        assert!(map.contains_key("a") && !map.contains_key("c"));
    }

    #[test]
    fn a_namespace_is_decided_with_the_labels_it_was_stored_with() {
        let mut snapshot = Snapshot::offline(ClusterProvider::Azure);
        let labels: Labels = [("team".to_string(), "a".to_string())].into();
        snapshot.insert_namespace_labels("ns-a", labels.clone());
        assert_eq!(
            snapshot.namespace_labels_resolved("ns-a"),
            Lookup::Found(labels)
        );
        assert_eq!(snapshot.namespace_labels_resolved("ns-b"), Lookup::Unknown);
        snapshot.set_authoritative(true, false);
        assert_eq!(snapshot.namespace_labels_resolved("ns-b"), Lookup::Absent);
    }

    /// The selectors of AIWorkload `i`: matchLabels of one or two pairs, expressions only, both,
    /// and the empty selector (matches every pod).
    fn selector(i: usize) -> serde_json::Value {
        let app = format!("app-{}", i % 4);
        match i % 5 {
            0 => json!({"matchLabels": {"app": app}}),
            1 => json!({"matchLabels": {"app": app, "tier": "web"}}),
            2 => {
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": [app, "app-9"]}]})
            }
            3 => {
                json!({"matchLabels": {"tier": "web"}, "matchExpressions": [{"key": "app", "operator": "NotIn", "values": [app]}]})
            }
            4 if i.is_multiple_of(2) => json!({}),
            _ => {
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]})
            }
        }
    }

    #[test]
    fn the_label_index_finds_exactly_the_aiworkloads_whose_selectors_match() {
        finds_exactly_those_whose_selectors_match(40);
    }

    /// A namespace of a few AIWorkloads is scanned, not indexed: the same answers; and one that
    /// grows past the size an index is built from, then shrinks below it, keeps answering the
    /// same.
    #[test]
    fn small_namespaces_find_exactly_the_aiworkloads_whose_selectors_match() {
        finds_exactly_those_whose_selectors_match(INDEX_FROM);
        finds_exactly_those_whose_selectors_match(INDEX_FROM + 1);
    }

    /// `count` AIWorkloads inserted out of name order (the even ones ascending, then the odd
    /// ones descending), three replaced with another selector (the old index entry must go),
    /// and three removed.
    fn finds_exactly_those_whose_selectors_match(count: usize) {
        let mut snapshot = Snapshot::offline(ClusterProvider::Azure);
        let mut all: BTreeMap<String, DeclaredWorkload> = BTreeMap::new();
        let order = (0..count)
            .filter(|i| i % 2 == 0)
            .chain((0..count).filter(|i| i % 2 == 1).rev());
        for i in order {
            let d = aiw(&format!("aiw-{i:02}"), selector(i));
            all.insert(d.name.clone(), d.clone());
            snapshot.insert_declared(d);
        }
        for i in [0, 2, 4] {
            let d = aiw(&format!("aiw-{i:02}"), selector(i + 2));
            all.insert(d.name.clone(), d.clone());
            snapshot.insert_declared(d);
        }
        for i in [1, 3, count - 1] {
            all.remove(&format!("aiw-{i:02}"));
            snapshot.remove_declared("team", &format!("aiw-{i:02}"));
        }
        assert_eq!(all.len(), count - 3);
        assert_eq!(
            snapshot.declared["team"].index.is_some(),
            count > INDEX_FROM,
            "indexed once the namespace had more than INDEX_FROM"
        );
        let mut pods = 0;
        for app in ["app-0", "app-1", "app-2", "app-3", "app-9", "other"] {
            for tier in [None, Some("web"), Some("db")] {
                let mut labels: Labels = BTreeMap::from([("app".to_string(), app.to_string())]);
                if let Some(t) = tier {
                    labels.insert("tier".to_string(), t.to_string());
                }
                let found: Vec<&str> = snapshot
                    .declarations_for("team", &labels)
                    .map(|d| d.name.as_str())
                    .collect();
                let expected: Vec<&str> = all
                    .values()
                    .filter(|d| d.selects(&labels))
                    .map(|d| d.name.as_str())
                    .collect();
                assert_eq!(found, expected, "pod labels {labels:?}");
                pods += 1;
            }
        }
        assert_eq!(pods, 18);
        assert_eq!(snapshot.declared_count(), all.len());
        assert_eq!(
            snapshot
                .declarations_for("elsewhere", &Labels::new())
                .count(),
            0
        );
    }
}
