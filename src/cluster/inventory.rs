//! The reflector stores that mirror the cluster, and how the engine state is built from them.
//!
//! Each store is fed by one watch. HostingPolicies are kept whole (their status is compared
//! before it is written), in a kube-runtime reflector store, trimmed of what nobody reads
//! ([`trim_meta`]); Nodes, Namespaces and AIWorkloads are kept only as what the engine and the
//! status writer read of them (a [`NodeInfo`], the labels, a [`WorkloadRecord`]), in
//! [projected stores](super::projection). A few hundred HostingPolicies at most are not worth
//! a projection; ten thousand AIWorkloads are.
//! [`Inventory::build`] turns the stores into a [`PolicySet`] and a [`Snapshot`]: pure, so that
//! tests can feed watcher events and check the result.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store, store::Writer};

use super::identity::{self, Detection, NodeInfo};
use super::projection::{NamespacedName, ProjectedStore, ProjectedWriter};
use super::related::RelatedStores;
use crate::api::{AIWorkload, AIWorkloadStatus, ClusterProvider, HostingPolicy};
use crate::policy::{CompiledPolicy, DEFAULT_POLICY_NAME, PolicyError, PolicySet, default_policy};
use crate::snapshot::{
    ConfigMapSource, DeclaredWorkload, DeclaredWorkloadError, NamespaceSource, Snapshot,
    StoredLabels,
};

/// The stores read when building the engine state.
#[derive(Clone)]
pub struct Inventory {
    pub policies: Store<HostingPolicy>,
    /// Each AIWorkload's compiled declaration and status, by namespace and name.
    pub workloads: ProjectedStore<WorkloadRecord, NamespacedName>,
    /// Each Namespace's labels, by name.
    pub namespaces: ProjectedStore<StoredLabels>,
    /// What identity reads of each Node, by name.
    pub nodes: ProjectedStore<NodeInfo>,
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
    pub workloads: ProjectedWriter<AIWorkload, WorkloadRecord, NamespacedName>,
    pub namespaces: ProjectedWriter<PartialObjectMeta<Namespace>, StoredLabels>,
    pub nodes: ProjectedWriter<Node, NodeInfo>,
}

impl Inventory {
    pub fn new() -> (Inventory, Writers) {
        let (policies, pw) = reflector::store();
        let ww = ProjectedWriter::comparing(WorkloadRecord::of, WorkloadRecord::same_for_engine);
        let nw = ProjectedWriter::new(namespace_labels);
        let nodew = ProjectedWriter::new(NodeInfo::from_node);
        let (workloads, namespaces, nodes) = (ww.as_reader(), nw.as_reader(), nodew.as_reader());
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
            .values()
            .into_iter()
            .map(|n| (*n).clone())
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
        for (name, labels) in self.namespaces.state() {
            snapshot.insert_shared_namespace_labels(name, labels);
        }
        self.related.fill(&mut snapshot);
        let mut invalid_workloads = Vec::new();
        let mut records = self.workloads.values();
        // In namespace and name order: each namespace's declarations are then appended, not
        // inserted in the middle (a namespace may hold thousands).
        records.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        for record in records {
            match &record.declared {
                Ok(d) => snapshot.insert_declared(Arc::clone(d)),
                Err(e) => invalid_workloads.push(DeclaredWorkloadError::clone(e)),
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

/// Drops what the engine never reads from a cached CR.
pub fn trim_meta<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = &mut meta.annotations {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// What the engine reads of a Namespace: its labels, kept compact (see [`StoredLabels`]).
pub fn namespace_labels(ns: &PartialObjectMeta<Namespace>) -> StoredLabels {
    StoredLabels::from(ns.metadata.labels.as_ref())
}

/// What hostguard keeps of an AIWorkload: its declaration, compiled once as it arrives and
/// shared by every snapshot built while it stands, and what the status writer compares and
/// carries over (the generation, the status as the cluster has it).
///
/// The status and the error are boxed: inline, they made each record about 270 bytes, which
/// 10,000 AIWorkloads kept whether they had a status or not (2.7 MB, heaptrack,
/// `scripts/bench_cluster.py`); an error is rare, and a status is only as large as it is.
#[derive(Debug)]
pub struct WorkloadRecord {
    pub key: NamespacedName,
    pub generation: Option<i64>,
    pub status: Option<Box<AIWorkloadStatus>>,
    /// The compiled declaration, or why the AIWorkload cannot be used.
    pub declared: Result<Arc<DeclaredWorkload>, Box<DeclaredWorkloadError>>,
    /// A hash of what the declaration is compiled from (the labels and the spec): a status
    /// write leaves it unchanged, and so does not rebuild the snapshot.
    compiled_from: u64,
}

impl WorkloadRecord {
    pub fn of(aiw: &AIWorkload) -> Self {
        WorkloadRecord {
            key: NamespacedName {
                namespace: aiw.metadata.namespace.clone().unwrap_or_default(),
                name: aiw.metadata.name.clone().unwrap_or_default(),
            },
            generation: aiw.metadata.generation,
            status: aiw.status.clone().map(Box::new),
            declared: DeclaredWorkload::from_resource(aiw)
                .map(Arc::new)
                .map_err(Box::new),
            compiled_from: spec_fingerprint(&(&aiw.metadata.labels, &aiw.spec)),
        }
    }

    /// Whether the two compile to the same declaration (their status may differ).
    pub fn same_for_engine(a: &WorkloadRecord, b: &WorkloadRecord) -> bool {
        a.key == b.key && a.compiled_from == b.compiled_from
    }
}

/// A hash of what the engine reads of a watched object: of a HostingPolicy, its spec; of an
/// AIWorkload, its labels and spec ([`WorkloadRecord`]). An event that leaves it unchanged (a
/// status write) does not rebuild the snapshot.
pub fn spec_fingerprint<T: serde::Serialize>(spec: &T) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(spec).unwrap_or_default().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_its_status_and_its_error_out_of_line() {
        // The key, the generation and the fingerprint inline; the status one pointer, the
        // declaration or its error one pointer and a tag.
        let inline = size_of::<NamespacedName>()
            + size_of::<Option<i64>>()
            + size_of::<u64>()
            + size_of::<usize>()
            + 2 * size_of::<usize>();
        assert!(
            size_of::<WorkloadRecord>() <= inline,
            "WorkloadRecord is {} bytes, more than {inline}",
            size_of::<WorkloadRecord>()
        );
    }
}
