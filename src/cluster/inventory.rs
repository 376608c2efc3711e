//! The reflector stores that mirror the cluster, and how the engine state is built from them.
//!
//! Each store is a kube-runtime reflector store fed by one watch. Objects are trimmed before
//! they are stored (see [`trim_node`], [`trim_namespace`]) so that the caches hold only what the
//! engine reads. [`Inventory::build`] turns the stores into a [`PolicySet`] and a [`Snapshot`]:
//! pure, so that tests can feed watcher events and check the result.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store, store::Writer};

use super::identity::{self, Detection, NodeInfo};
use super::related::RelatedStores;
use crate::api::{AIWorkload, ClusterProvider, HostingPolicy};
use crate::policy::{CompiledPolicy, DEFAULT_POLICY_NAME, PolicyError, PolicySet, default_policy};
use crate::snapshot::{
    ConfigMapSource, DeclaredWorkload, DeclaredWorkloadError, NamespaceSource, Snapshot,
};

/// The stores read when building the engine state.
#[derive(Clone)]
pub struct Inventory {
    pub policies: Store<HostingPolicy>,
    pub workloads: Store<AIWorkload>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub nodes: Store<Node>,
    /// The objects adapters look up (Envoy Gateway Backends, ...), when served.
    pub related: RelatedStores,
    /// The last version of each cluster policy that compiled, by name: a policy edited into a
    /// state that does not compile keeps enforcing it, so that an edit cannot switch
    /// enforcement off. Shared by the clones of one inventory.
    last_good: Arc<Mutex<BTreeMap<String, CompiledPolicy>>>,
}

/// The writers of an [`Inventory`], one per watch.
pub struct Writers {
    pub policies: Writer<HostingPolicy>,
    pub workloads: Writer<AIWorkload>,
    pub namespaces: Writer<PartialObjectMeta<Namespace>>,
    pub nodes: Writer<Node>,
}

impl Inventory {
    pub fn new() -> (Inventory, Writers) {
        let (policies, pw) = reflector::store();
        let (workloads, ww) = reflector::store();
        let (namespaces, nw) = reflector::store();
        let (nodes, nodew) = reflector::store();
        (
            Inventory {
                policies,
                workloads,
                namespaces,
                nodes,
                related: RelatedStores::default(),
                last_good: Arc::default(),
            },
            Writers {
                policies: pw,
                workloads: ww,
                namespaces: nw,
                nodes: nodew,
            },
        )
    }

    /// Builds the engine state from the stores. `file_policies` (from `--policy`) win over a
    /// cluster policy of the same name.
    pub fn build(&self, input: &BuildInput<'_>) -> Built {
        let mut compiled: Vec<CompiledPolicy> = input.file_policies.to_vec();
        let mut invalid_policies = BTreeMap::new();
        let mut enforced_instead = BTreeMap::new();
        let mut shadowed = Vec::new();
        let mut cluster_policies = self.policies.state();
        cluster_policies.sort_by_key(|p| p.metadata.name.clone());
        let mut last_good = self
            .last_good
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A deleted policy is no longer enforced in any version.
        last_good.retain(|name, _| {
            cluster_policies
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        });
        for policy in &cluster_policies {
            let name = policy.metadata.name.clone().unwrap_or_default();
            let enforced = match CompiledPolicy::compile(policy) {
                Ok(c) => {
                    last_good.insert(name.clone(), c.clone());
                    Some(c)
                }
                Err(errors) => {
                    invalid_policies.insert(name.clone(), errors);
                    // The last version that compiled; after a restart there is none, and the
                    // built-in default stands in for the policy of its name.
                    let fallback = last_good.get(&name).cloned().or_else(|| {
                        (name == DEFAULT_POLICY_NAME)
                            .then(|| CompiledPolicy::compile(&default_policy()).ok())
                            .flatten()
                    });
                    if let Some(f) = &fallback {
                        enforced_instead.insert(
                            name.clone(),
                            match f.generation {
                                Some(g) => EnforcedInstead::Generation(g),
                                None => EnforcedInstead::BuiltinDefault,
                            },
                        );
                    }
                    fallback
                }
            };
            if let Some(c) = enforced {
                if compiled.iter().any(|f| f.name == c.name) {
                    shadowed.push(name);
                } else {
                    compiled.push(c);
                }
            }
        }
        drop(last_good);
        let policies = PolicySet::from_compiled(compiled);

        let nodes: Vec<NodeInfo> = self
            .nodes
            .state()
            .iter()
            .map(|n| NodeInfo::from_node(n))
            .collect();
        let detection = identity::detect(&nodes);

        let mut snapshot = Snapshot::offline(identity::effective(
            detection.provider,
            input.cluster_provider,
        ));
        // A synced namespace cache is authoritative for lookups, but the engine treats a
        // namespace it does not hold as unreadable all the same (the watch may lag behind a
        // namespace created with its workloads): its selectors match unless the on-demand
        // fetch found it. ConfigMaps are answered by the on-demand cache, which knows what it
        // knows.
        snapshot.set_authoritative(true, false);
        for ns in self.namespaces.state() {
            if let Some(name) = &ns.metadata.name {
                let labels = ns.metadata.labels.clone().unwrap_or_default();
                snapshot.insert_namespace_labels(name.clone(), labels);
            }
        }
        self.related.fill(&mut snapshot);
        let mut invalid_workloads = Vec::new();
        for aiw in self.workloads.state() {
            match DeclaredWorkload::from_resource(&aiw) {
                Ok(d) => snapshot.insert_declared(d),
                Err(e) => invalid_workloads.push(e),
            }
        }
        invalid_workloads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        if let Some(source) = &input.config_maps {
            snapshot.set_config_map_source(Arc::clone(source));
        }
        if let Some(source) = &input.namespaces {
            snapshot.set_namespace_source(Arc::clone(source));
        }
        snapshot.generation = input.generation;

        Built {
            policy_fingerprint: policy_fingerprint(&cluster_policies),
            policies,
            snapshot,
            invalid_policies,
            enforced_instead,
            shadowed,
            invalid_workloads,
            detection,
        }
    }
}

/// What is enforced for a HostingPolicy whose current spec does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnforcedInstead {
    /// The last version that compiled, by `metadata.generation`.
    Generation(i64),
    /// No version compiled since hostguard started, and the policy has the built-in default's
    /// name: the built-in default is enforced in its place.
    BuiltinDefault,
}

/// What the build needs besides the stores.
#[derive(Clone, Default)]
pub struct BuildInput<'a> {
    pub file_policies: &'a [CompiledPolicy],
    pub cluster_provider: Option<ClusterProvider>,
    pub config_maps: Option<Arc<dyn ConfigMapSource>>,
    /// Namespaces fetched on demand, for those the watch has not delivered.
    pub namespaces: Option<Arc<dyn NamespaceSource>>,
    pub generation: u64,
}

/// The engine state and what was left out of it.
#[derive(Debug)]
pub struct Built {
    pub policies: PolicySet,
    pub snapshot: Snapshot,
    /// Cluster HostingPolicies whose current spec does not compile, by name.
    pub invalid_policies: BTreeMap<String, Vec<PolicyError>>,
    /// For each of those that is still enforced, what is enforced instead of the current spec.
    pub enforced_instead: BTreeMap<String, EnforcedInstead>,
    /// Cluster HostingPolicies hidden by a `--policy` file of the same name.
    pub shadowed: Vec<String>,
    /// AIWorkloads that cannot be used.
    pub invalid_workloads: Vec<DeclaredWorkloadError>,
    pub detection: Detection,
    /// Changes when a cluster policy's name or spec changes (not when only its status does).
    pub policy_fingerprint: u64,
}

/// A hash of every policy's name and spec: a status write by the audit does not change it, so
/// it does not trigger another audit.
pub fn policy_fingerprint(policies: &[Arc<HostingPolicy>]) -> u64 {
    let mut items: BTreeSet<(String, String)> = BTreeSet::new();
    for p in policies {
        let spec = serde_json::to_string(&p.spec).unwrap_or_default();
        items.insert((p.metadata.name.clone().unwrap_or_default(), spec));
    }
    let mut h = DefaultHasher::new();
    items.hash(&mut h);
    h.finish()
}

/// Node labels that detection reads; every other label is dropped before caching.
const NODE_LABELS: &[&str] = &[
    identity::AKS_CLUSTER_LABEL,
    identity::AKS_MANAGED_BY_LABEL,
    identity::EKS_NODEGROUP_LABEL,
    identity::EKS_COMPUTE_TYPE_LABEL,
    identity::GKE_NODEPOOL_LABEL,
];

/// Keeps only what detection reads: name, the provider labels, `spec.providerID` and
/// `spec.unschedulable`. Node status (images, conditions) is the bulk of a Node and is dropped.
pub fn trim_node(node: &mut Node) {
    let meta = &mut node.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    if let Some(labels) = &mut meta.labels {
        labels.retain(|k, _| NODE_LABELS.contains(&k.as_str()));
    }
    let spec = node.spec.take().unwrap_or_default();
    node.spec = Some(NodeSpec {
        provider_id: spec.provider_id,
        unschedulable: spec.unschedulable,
        ..Default::default()
    });
    node.status = None;
}

/// Keeps a namespace's name and labels.
pub fn trim_namespace(ns: &mut PartialObjectMeta<Namespace>) {
    ns.metadata.managed_fields = None;
    ns.metadata.annotations = None;
    ns.metadata.owner_references = None;
    ns.metadata.finalizers = None;
}

/// Drops what the engine never reads from a cached CR.
pub fn trim_meta<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = &mut meta.annotations {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// What a watch event changes for the engine, per kind: events whose fingerprint is unchanged
/// (status writes, node heartbeats) do not rebuild the snapshot.
pub fn node_fingerprint(node: &Node) -> u64 {
    let info = NodeInfo::from_node(node);
    let mut h = DefaultHasher::new();
    (info.provider.as_str(), info.schedulable).hash(&mut h);
    h.finish()
}

pub fn namespace_fingerprint(ns: &PartialObjectMeta<Namespace>) -> u64 {
    let mut h = DefaultHasher::new();
    ns.metadata.labels.hash(&mut h);
    h.finish()
}

pub fn spec_fingerprint<T: serde::Serialize>(spec: &T) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(spec).unwrap_or_default().hash(&mut h);
    h.finish()
}
