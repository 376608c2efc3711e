//! The background audit: existing workloads evaluated by the very same [`policy::evaluate`] the
//! webhook uses (as a CREATE of the object as it is), and the results tallied for status,
//! events and metrics.
//!
//! Memory stays bounded whatever the cluster's size: workloads are listed a page at a time and
//! dropped after evaluation; the tally keeps counts plus capped lists (the first violating
//! objects per policy, the matched workloads per AIWorkload, the violations to turn into
//! Events).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{ApiResource, DynamicObject, ListParams, TypeMeta};
use kube::{Api, Client};
use serde_json::Value;

use super::config_maps::Fetcher;
use crate::api::{Action, MatchedWorkload, ViolatingObject};
use crate::policy::{self, Decision, Operation, PolicySet};
use crate::snapshot::{Labels, Snapshot};

/// Objects per list page.
pub const PAGE_SIZE: u32 = 250;
/// First violating objects kept per policy (the status lists at most this many).
pub const MAX_VIOLATING_OBJECTS: usize = 20;
/// Matched workloads kept per AIWorkload.
pub const MAX_MATCHED: usize = 50;
/// Violations kept for Events per audit (the writer publishes the new ones among them).
pub const MAX_EVENT_CANDIDATES: usize = 5000;
/// How long the audit waits for the ConfigMaps one workload references.
const CONFIG_MAP_DEADLINE: Duration = Duration::from_secs(5);

/// A kind the audit lists, and which of its objects it leaves to their owner.
#[derive(Debug, Clone)]
pub struct AuditKind {
    pub resource: ApiResource,
    /// Skip objects controlled by an owner of one of these kinds (its own audit covers them);
    /// `*` skips any controlled object.
    pub skip_controlled_by: &'static [&'static str],
}

/// Deployments, StatefulSets, DaemonSets, ReplicaSets no Deployment controls, Jobs no CronJob
/// controls, CronJobs, and bare Pods (no controller at all).
pub fn audit_kinds() -> Vec<AuditKind> {
    vec![
        kind::<Deployment>(&[]),
        kind::<StatefulSet>(&[]),
        kind::<DaemonSet>(&[]),
        kind::<ReplicaSet>(&["Deployment"]),
        kind::<Job>(&["CronJob"]),
        kind::<CronJob>(&[]),
        kind::<Pod>(&["*"]),
    ]
}

fn kind<K: kube::Resource<DynamicType = ()>>(skip: &'static [&'static str]) -> AuditKind {
    AuditKind {
        resource: ApiResource::erase::<K>(&()),
        skip_controlled_by: skip,
    }
}

/// Whether an object is left to its controller.
pub fn is_skipped(object: &DynamicObject, skip: &[&str]) -> bool {
    object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.controller == Some(true))
        .any(|o| skip.contains(&"*") || skip.contains(&o.kind.as_str()))
}

/// One violating object of one policy, to become an Event.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub reference: ObjectReference,
    pub policy: String,
    pub action: Action,
    pub message: String,
}

impl PendingEvent {
    /// Deduplication key: the object (by uid when known) and the policy.
    pub fn key(&self) -> (String, String) {
        let r = &self.reference;
        let object = match &r.uid {
            Some(uid) if !uid.is_empty() => uid.clone(),
            _ => format!(
                "{}/{}/{}",
                r.kind.as_deref().unwrap_or(""),
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or("")
            ),
        };
        (object, self.policy.clone())
    }
}

/// Per-policy results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyTally {
    /// Violating objects (each counted once, however many violations it has).
    pub violating: i64,
    pub action: Option<Action>,
    pub first: Vec<ViolatingObject>,
}

/// Per-AIWorkload results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeclaredTally {
    pub matched: Vec<MatchedWorkload>,
    pub total: usize,
    pub violating: usize,
    pub first_violation: Option<String>,
}

/// What one audit found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub objects: usize,
    pub policies: BTreeMap<String, PolicyTally>,
    /// By (namespace, AIWorkload name).
    pub declared: BTreeMap<(String, String), DeclaredTally>,
    pub events: Vec<PendingEvent>,
    pub events_dropped: usize,
}

impl Tally {
    /// Records one evaluated object.
    pub fn record(&mut self, object: &Value, decision: &Decision, snapshot: &Snapshot) {
        self.objects += 1;
        let reference = object_reference(object);
        let kind = reference.kind.clone().unwrap_or_default();
        let name = reference.name.clone().unwrap_or_default();
        let namespace = reference.namespace.clone().unwrap_or_default();

        // Violations grouped by policy, in the engine's order.
        let mut by_policy: BTreeMap<&str, Vec<&policy::Violation>> = BTreeMap::new();
        for v in &decision.violations {
            by_policy.entry(v.policy.as_str()).or_default().push(v);
        }
        for (policy, violations) in &by_policy {
            let first = violations[0];
            let t = self.policies.entry(policy.to_string()).or_default();
            t.violating += 1;
            t.action = Some(first.action);
            if t.first.len() < MAX_VIOLATING_OBJECTS {
                t.first.push(ViolatingObject {
                    kind: kind.clone(),
                    namespace: Some(namespace.clone()).filter(|n| !n.is_empty()),
                    name: name.clone(),
                    message: first.message.clone(),
                });
            }
            if self.events.len() < MAX_EVENT_CANDIDATES {
                let more = violations.len() - 1;
                let message = if more == 0 {
                    first.message.clone()
                } else {
                    format!("{} (and {more} more)", first.message)
                };
                self.events.push(PendingEvent {
                    reference: reference.clone(),
                    policy: policy.to_string(),
                    action: first.action,
                    message,
                });
            } else {
                self.events_dropped += 1;
            }
        }

        let compliant = decision.violations.is_empty();
        let mut declared: BTreeSet<String> = BTreeSet::new();
        if let Some(labels) = template_labels(object) {
            for d in snapshot.declarations_for(&namespace, &labels) {
                declared.insert(d.name.clone());
            }
        }
        for d in declared {
            let t = self.declared.entry((namespace.clone(), d)).or_default();
            t.total += 1;
            if !compliant {
                t.violating += 1;
                if t.first_violation.is_none() {
                    t.first_violation = decision.violations.first().map(|v| v.message.clone());
                }
            }
            if t.matched.len() < MAX_MATCHED {
                t.matched.push(MatchedWorkload {
                    kind: kind.clone(),
                    name: name.clone(),
                    compliant,
                });
            }
        }
    }
}

/// The pod template labels of a workload object (a Pod's own labels).
pub fn template_labels(object: &Value) -> Option<Labels> {
    let pointer = match object.get("kind").and_then(Value::as_str)? {
        "Pod" => "/metadata/labels",
        "CronJob" => "/spec/jobTemplate/spec/template/metadata/labels",
        _ => "/spec/template/metadata/labels",
    };
    Some(
        object
            .pointer(pointer)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default(),
    )
}

fn object_reference(object: &Value) -> ObjectReference {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).map(String::from);
    ObjectReference {
        api_version: s("/apiVersion"),
        kind: s("/kind"),
        name: s("/metadata/name"),
        namespace: s("/metadata/namespace"),
        uid: s("/metadata/uid"),
        ..Default::default()
    }
}

/// Evaluates one listed object and records it.
pub fn evaluate_into(
    tally: &mut Tally,
    object: &Value,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Decision {
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let decision = policy::evaluate(
        &policy::Request {
            operation: Operation::Create,
            object: Some(object),
            old_object: None,
            namespace,
        },
        policies,
        snapshot,
    );
    tally.record(object, &decision, snapshot);
    decision
}

/// Lists every audited kind a page at a time and evaluates each object. `keep_going` is asked
/// between pages: the audit stops early (with an error) when it turns false, e.g. on lost
/// leadership or shutdown.
pub async fn run(
    client: &Client,
    fetcher: Option<&Fetcher>,
    policies: &PolicySet,
    snapshot: &Snapshot,
    keep_going: &(dyn Fn() -> bool + Sync),
) -> Result<Tally, AuditError> {
    let mut tally = Tally::default();
    for kind in audit_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource);
        let mut params = ListParams::default().limit(PAGE_SIZE);
        loop {
            if !keep_going() {
                return Err(AuditError::Interrupted);
            }
            let page = api.list(&params).await.map_err(|error| AuditError::List {
                kind: kind.resource.kind.clone(),
                error,
            })?;
            for mut object in page.items {
                if is_skipped(&object, kind.skip_controlled_by) {
                    continue;
                }
                object.types = Some(TypeMeta {
                    api_version: kind.resource.api_version.clone(),
                    kind: kind.resource.kind.clone(),
                });
                object.metadata.managed_fields = None;
                let Ok(value) = serde_json::to_value(&object) else {
                    continue;
                };
                if let Some(fetcher) = fetcher {
                    let mut names = BTreeSet::new();
                    crate::workload::config_map_refs(&value, &mut names);
                    if !names.is_empty() {
                        let namespace = object.metadata.namespace.clone().unwrap_or_default();
                        let names: Vec<String> = names.into_iter().collect();
                        let deadline = tokio::time::Instant::now() + CONFIG_MAP_DEADLINE;
                        fetcher.fetch_missing(&namespace, &names, deadline).await;
                    }
                }
                evaluate_into(&mut tally, &value, policies, snapshot);
            }
            match page.metadata.continue_.as_deref() {
                Some(token) if !token.is_empty() => {
                    params = ListParams::default().limit(PAGE_SIZE).continue_token(token);
                }
                _ => break,
            }
        }
    }
    Ok(tally)
}

/// Why an audit did not finish.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("listing {kind}: {error}")]
    List { kind: String, error: kube::Error },
    #[error("interrupted (leadership lost or shutting down)")]
    Interrupted,
}
