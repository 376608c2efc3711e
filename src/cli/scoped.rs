//! The offline context of each document of `check` and `test`: the HostingPolicies,
//! AIWorkloads, Namespaces and ConfigMaps of the input that are in its scope
//! ([`crate::manifest::scope`]), turned into the policy set and the snapshot the engine is given.
//!
//! Only what a reference can name is retained (those four kinds, from their documents), so
//! memory follows the referenced objects, not the input. Nothing here decides: a reference that
//! is ambiguous becomes an unknown ConfigMap (the engine treats it as it treats any unreadable
//! endpoint, with the reason naming both files), unknown Namespace labels (policies with a
//! namespace selector then apply, failing closed), or, for an AIWorkload or a HostingPolicy whose
//! two candidates could govern the document differently, a denial naming both files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use serde::Deserialize;
use serde_json::Value;

use crate::api::{AIWorkload, Action, ClusterProvider, GROUP, HostingPolicy};
use crate::manifest::Document;
use crate::manifest::scope::{Index, Origin, Place, Places, Resolved};
use crate::policy::{
    CompiledPolicy, Decision, Operation, PolicySet, Request, Verdict, Violation, Warning, evaluate,
};
use crate::policy_files::{PolicyFiles, compile_or_default};
use crate::snapshot::{
    CompactMap, ConfigMapData, ConfigMapSource, DeclaredWorkload, Labels, Lookup, Snapshot,
};

/// The kinds a reference can name. A document of another kind is never retained.
pub const REFERENCED_KINDS: [&str; 4] = ["ConfigMap", "Namespace", "AIWorkload", "HostingPolicy"];

/// Whether a piece of YAML or JSON text can hold a document of a [`REFERENCED_KINDS`] kind,
/// without parsing it. A kind is a scalar: its name is in the text as written, unless it is
/// written with escapes (`"Config\u004dap"`), which need a backslash; a List's items take their
/// kind from the List's (`ConfigMapList`), which holds the name too. Sound, not exact: a
/// Deployment mentioning a ConfigMap in a comment passes, and is parsed once more.
pub fn may_be_referenced(text: &str) -> bool {
    text.contains('\\')
        || REFERENCED_KINDS.iter().any(|k| text.contains(k))
        || crate::detect::adapters::related_kinds().any(|(_, k)| text.contains(k))
}

/// `group/kind/namespace/name` of an object an AI tool's resource may refer to (an Envoy Gateway
/// `Backend`, a `BackendTLSPolicy`, an `AIServiceBackend`), if the document is one.
fn related_key(doc: &Document) -> Option<String> {
    let kind = doc.kind()?;
    let group = doc.api_version()?.rsplit_once('/').map_or("", |(g, _)| g);
    crate::detect::adapters::related_kinds().find(|&(g, k)| g == group && k == kind)?;
    let name = doc.name()?;
    Some(format!(
        "{group}/{kind}/{}/{name}",
        doc.namespace().unwrap_or("default")
    ))
}

/// Whether a document is of a kind a reference names (and so is judged without a scope).
pub fn is_referenced_kind(doc: &Document) -> bool {
    doc.kind().is_some_and(|k| REFERENCED_KINDS.contains(&k))
}

fn is_hostguard(doc: &Document, kind: &str) -> bool {
    doc.kind() == Some(kind)
        && doc
            .api_version()
            .is_some_and(|v| v.split('/').next() == Some(GROUP))
}

fn is_core(doc: &Document, kind: &str) -> bool {
    doc.kind() == Some(kind) && doc.api_version() == Some("v1")
}

/// An AIWorkload of the input: two are the same candidate when their specs are.
#[derive(Debug)]
struct Declared {
    spec: Value,
    workload: DeclaredWorkload,
}

impl PartialEq for Declared {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

/// A HostingPolicy of the input: two are the same candidate when their specs are.
#[derive(Debug)]
struct InputPolicy {
    spec: Value,
    policy: HostingPolicy,
}

impl PartialEq for InputPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

/// Collects the referenced objects of the input, document by document.
#[derive(Debug)]
pub struct ScopeBuilder {
    scope: Scope,
    errors: Vec<String>,
}

/// Everything a document of the input may refer to, with where each was read.
#[derive(Debug)]
pub struct Scope {
    places: Places,
    config_maps: Index<ConfigMapData>,
    /// Objects AI tools' resources refer to, by `group/kind/namespace/name`.
    related: Index<Arc<Value>>,
    namespaces: Index<Labels>,
    workloads: Index<Declared>,
    /// The keys (`namespace/name`) of the AIWorkloads of each namespace.
    workload_keys: HashMap<String, Vec<String>>,
    policies: Index<InputPolicy>,
    files: PolicyFiles,
    /// The AIWorkloads of `--policy` files: in every scope, as a cluster's would be.
    file_workloads: Vec<DeclaredWorkload>,
    cluster_provider: ClusterProvider,
    /// The policy set and the ambiguities of policies, per file.
    per_file: Mutex<HashMap<u32, PoliciesInForce>>,
    /// Compiled policy sets, by the candidates they hold, so that every file with the same
    /// policies in scope shares one.
    compiled: Mutex<HashMap<Vec<usize>, Arc<PolicySet>>>,
}

#[derive(Debug, Clone)]
struct PoliciesInForce {
    set: Arc<PolicySet>,
    ambiguous: Vec<Violation>,
}

impl ScopeBuilder {
    pub fn new(places: Places, files: PolicyFiles, cluster_provider: ClusterProvider) -> Self {
        ScopeBuilder {
            scope: Scope {
                places,
                config_maps: Index::default(),
                related: Index::default(),
                namespaces: Index::default(),
                workloads: Index::default(),
                workload_keys: HashMap::new(),
                policies: Index::default(),
                files,
                file_workloads: Vec::new(),
                cluster_provider,
                per_file: Mutex::new(HashMap::new()),
                compiled: Mutex::new(HashMap::new()),
            },
            errors: Vec::new(),
        }
    }

    /// Retains what a reference may name from one document. A malformed AIWorkload, ConfigMap
    /// or Namespace is left out (the engine reports a malformed AIWorkload on its own
    /// document); a HostingPolicy that does not compile is an error of the whole check, naming
    /// its file, line and field.
    pub fn add(&mut self, doc: &Document, place: Place) {
        let origin = || Origin {
            source: doc.source.clone(),
            line: doc.line,
        };
        let s = &mut self.scope;
        if let Some(key) = related_key(doc) {
            s.related
                .insert(key, place, origin(), Arc::new(doc.value.clone()));
        }
        if is_hostguard(doc, "AIWorkload") {
            if let Ok(mut aiw) = AIWorkload::deserialize(&doc.value) {
                aiw.metadata
                    .namespace
                    .get_or_insert_with(|| "default".into());
                if let Ok(workload) = DeclaredWorkload::from_resource(&aiw) {
                    let key = format!("{}/{}", workload.namespace, workload.name);
                    let keys = s
                        .workload_keys
                        .entry(workload.namespace.clone())
                        .or_default();
                    if !keys.contains(&key) {
                        keys.push(key.clone());
                    }
                    let spec = doc.value.get("spec").cloned().unwrap_or(Value::Null);
                    s.workloads
                        .insert(key, place, origin(), Declared { spec, workload });
                }
            }
        } else if is_hostguard(doc, "HostingPolicy") {
            let name = doc.name().unwrap_or("");
            match serde_path_to_error::deserialize::<_, HostingPolicy>(&doc.value) {
                Err(e) => {
                    let path = e.path().to_string();
                    self.errors.push(format!(
                        "{}:{}: HostingPolicy {name:?}: {path}: {}",
                        doc.source,
                        doc.line_of(&path),
                        e.inner()
                    ));
                }
                Ok(policy) => {
                    if let Err(problems) = CompiledPolicy::compile(&policy) {
                        for p in problems {
                            self.errors.push(format!(
                                "{}:{}: {p}",
                                doc.source,
                                doc.line_of(&p.path)
                            ));
                        }
                    }
                    let spec = doc.value.get("spec").cloned().unwrap_or(Value::Null);
                    s.policies.insert(
                        name.to_string(),
                        place,
                        origin(),
                        InputPolicy { spec, policy },
                    );
                }
            }
        } else if is_core(doc, "ConfigMap") {
            if let Ok(cm) = ConfigMap::deserialize(&doc.value)
                && let Some(name) = &cm.metadata.name
            {
                let ns = cm.metadata.namespace.as_deref().unwrap_or("default");
                let data = CompactMap::from(cm.data.as_ref());
                s.config_maps
                    .insert(format!("{ns}/{name}"), place, origin(), Arc::new(data));
            }
        } else if is_core(doc, "Namespace")
            && let Ok(ns) = Namespace::deserialize(&doc.value)
            && let Some(name) = ns.metadata.name
        {
            s.namespaces.insert(
                name,
                place,
                origin(),
                ns.metadata.labels.unwrap_or_default(),
            );
        }
    }

    /// The scope, or every problem of every HostingPolicy of the input, one per line.
    pub fn finish(mut self) -> Result<Scope, String> {
        if !self.errors.is_empty() {
            return Err(self.errors.join("\n"));
        }
        let mut declared = Vec::new();
        for aiw in &self.scope.files.workloads {
            let mut aiw = aiw.clone();
            aiw.metadata
                .namespace
                .get_or_insert_with(|| "default".into());
            declared.push(DeclaredWorkload::from_resource(&aiw).map_err(|e| e.to_string())?);
        }
        self.scope.file_workloads = declared;
        Ok(self.scope)
    }
}

/// The ConfigMaps in the scope of one document, for the engine.
#[derive(Debug)]
struct ScopedConfigMaps {
    scope: Arc<Scope>,
    place: Place,
}

impl ScopedConfigMaps {
    fn resolve(&self, namespace: &str, name: &str) -> Resolved<'_, ConfigMapData> {
        self.scope.config_maps.resolve(
            &self.scope.places,
            self.place,
            &format!("{namespace}/{name}"),
        )
    }
}

impl ConfigMapSource for ScopedConfigMaps {
    fn get(&self, namespace: &str, name: &str) -> Lookup<ConfigMapData> {
        match self.resolve(namespace, name) {
            Resolved::Found(data) => Lookup::Found(Arc::clone(data)),
            // The input is not the cluster: a ConfigMap it does not hold may still exist.
            Resolved::Ambiguous(..) | Resolved::Missing => Lookup::Unknown,
        }
    }

    fn unknown_reason(&self, namespace: &str, name: &str) -> Option<String> {
        self.resolve(namespace, name).ambiguity()
    }
}

/// A denial about the input itself: two candidates that would govern the document differently.
fn ambiguous(what: &str, reason: String) -> Violation {
    let message = format!("{what} {reason}");
    Violation {
        policy: "hostguard".into(),
        action: Action::Deny,
        rule: crate::policy::rule::VALID_RESOURCE,
        path: String::new(),
        warning: Warning::new("", what, "keep one of them", &message),
        message,
    }
}

impl Scope {
    /// The policy set that a document of `place` is judged by: the `--policy` files and the
    /// input's HostingPolicies in its scope (the nearest of each name), or the built-in default
    /// when there are none; and a denial for each name with two different nearest candidates.
    fn policies_for(&self, place: Place) -> Result<PoliciesInForce, String> {
        if let Some(p) = self
            .per_file
            .lock()
            .ok()
            .and_then(|m| m.get(&place.file).cloned())
        {
            return Ok(p);
        }
        let mut ids = Vec::new();
        let mut found = Vec::new();
        let mut problems = Vec::new();
        let mut names: Vec<&str> = self.policies.keys().collect();
        names.sort_unstable();
        for name in names {
            match self.policies.resolve_at(&self.places, place, name) {
                (Resolved::Found(p), id) => {
                    ids.push(id);
                    found.push(p.policy.clone());
                }
                (r @ Resolved::Ambiguous(..), _) => {
                    let reason = r.ambiguity().unwrap_or_default();
                    problems.push(ambiguous(&format!("HostingPolicy {name:?}"), reason));
                }
                (Resolved::Missing, _) => {}
            }
        }
        let cached = self.compiled.lock().ok().and_then(|m| m.get(&ids).cloned());
        let set = match cached {
            Some(set) => set,
            None => {
                let mut all = self.files.policies.clone();
                all.extend(found);
                let set = Arc::new(compile_or_default(&all)?);
                if let Ok(mut m) = self.compiled.lock() {
                    m.insert(ids, Arc::clone(&set));
                }
                set
            }
        };
        let in_force = PoliciesInForce {
            set,
            ambiguous: problems,
        };
        if let Ok(mut m) = self.per_file.lock() {
            m.insert(place.file, in_force.clone());
        }
        Ok(in_force)
    }

    /// Every policy set in force somewhere so far (for the SARIF rules).
    pub fn policy_sets(&self) -> Vec<Arc<PolicySet>> {
        let mut sets: Vec<(Vec<usize>, Arc<PolicySet>)> = self
            .compiled
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect())
            .unwrap_or_default();
        sets.sort_by(|a, b| a.0.cmp(&b.0));
        sets.into_iter().map(|(_, s)| s).collect()
    }

    /// Judges one document read at `place`, as a CREATE, with what its scope holds. Fails only
    /// when the policies in its scope cannot be compiled together (two of one name, one from a
    /// `--policy` file).
    pub fn judge(self: &Arc<Self>, doc: &Document, place: Place) -> Result<Decision, String> {
        if let Some(reason) = not_an_object(doc) {
            return Ok(Decision::skipped(reason));
        }
        let in_force = self.policies_for(place)?;
        // The namespace the engine judges in: the object's, else `default`.
        let namespace = doc.namespace().unwrap_or("default");
        let mut snapshot = Snapshot::offline(self.cluster_provider);
        let mut warnings = Vec::new();
        let mut denials = in_force.ambiguous.clone();
        match self.namespaces.resolve(&self.places, place, namespace) {
            Resolved::Found(labels) => snapshot.insert_namespace_labels(namespace, labels.clone()),
            r @ Resolved::Ambiguous(..) => {
                let message = format!(
                    "Namespace {namespace:?} {}; its labels are unknown",
                    r.ambiguity().unwrap_or_default()
                );
                warnings.push(Warning::new(
                    "",
                    format!("Namespace {namespace:?} is ambiguous"),
                    "keep one definition of it",
                    message,
                ));
            }
            Resolved::Missing => {}
        }
        for key in self.workload_keys.get(namespace).into_iter().flatten() {
            match self.workloads.resolve(&self.places, place, key) {
                Resolved::Found(d) => snapshot.insert_declared(d.workload.clone()),
                r @ Resolved::Ambiguous(..) => denials.push(ambiguous(
                    &format!("AIWorkload {key}"),
                    r.ambiguity().unwrap_or_default(),
                )),
                Resolved::Missing => {}
            }
        }
        for d in self
            .file_workloads
            .iter()
            .filter(|d| d.namespace == namespace)
        {
            snapshot.insert_declared(d.clone());
        }
        for key in self.related.keys() {
            if let Resolved::Found(object) = self.related.resolve(&self.places, place, key) {
                snapshot.insert_related(object, "default");
            }
        }
        if !self.config_maps.is_empty() {
            snapshot.set_config_map_source(Arc::new(ScopedConfigMaps {
                scope: Arc::clone(self),
                place,
            }));
        }
        let mut decision = evaluate(
            &Request {
                operation: Operation::Create,
                object: Some((&doc.value).into()),
                old_object: None,
                namespace: doc.namespace(),
            },
            &in_force.set,
            &snapshot,
        );
        if decision.verdict != Verdict::Skipped && !is_referenced_kind(doc) {
            if !denials.is_empty() {
                decision.verdict = Verdict::Deny;
                decision.violations.extend(denials);
            }
            decision.warnings.extend(warnings);
        }
        Ok(decision)
    }
}

/// Why a document is not a Kubernetes object (a Helm values file, a bare list), if it is not.
pub fn not_an_object(doc: &Document) -> Option<String> {
    let what = match &doc.value {
        Value::Object(_) => match (doc.api_version(), doc.kind()) {
            (Some(_), Some(_)) => return None,
            (None, None) => "no apiVersion/kind",
            (None, Some(_)) => "no apiVersion",
            (Some(_), None) => "no kind",
        },
        Value::Array(_) => "the document is a list",
        Value::String(_) => "the document is a string",
        Value::Number(_) => "the document is a number",
        Value::Bool(_) => "the document is a boolean",
        Value::Null => "the document is empty",
    };
    Some(format!("not a Kubernetes object ({what})"))
}
