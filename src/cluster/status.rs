//! Writing audit results back: `HostingPolicy.status`, `AIWorkload.status`, and a Warning Event
//! on each violating workload. Only the Lease holder writes, and it asks before every write, so
//! a replica that loses the Lease stops at once.
//!
//! Status goes to the status subresource by server-side apply with the `hostguard` field
//! manager: hostguard owns the whole status, so a field it stops sending (an emptied
//! `violatingObjects`) is removed, which a merge patch would not do.
//!
//! A status is written only when its content changed: the new status is compared with the one
//! the watch last delivered, `lastAuditTime` left out. An audit that finds what the previous one
//! found writes nothing, so that every watcher of HostingPolicies and AIWorkloads (GitOps
//! controllers, every hostguard replica) is not woken by each audit, and etcd is not rewritten
//! every interval for every policy. `lastAuditTime` is therefore the time of the audit that last
//! changed the status: since when it has read as it does. (That the audit still runs shows in
//! `hostguard_audit_runs_total`.) A status someone else edited differs, and is written back.
//!
//! Events go through
//! kube-runtime's [`Recorder`], and are deduplicated here per object and policy: one Event when
//! a violation is first seen by this leader, none while it persists, a new one if it comes back
//! after being fixed.

use std::collections::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde_json::json;

use super::audit::{DeclaredTally, PendingEvent, PolicyTally, Tally};
use super::inventory::EnforcedInstead;
use super::inventory::WorkloadRecord;
use super::lease::Leadership;
use super::projection::NamespacedName;
use super::reports::{self, ReportsState, ReportsWritten};
pub use super::write::{FIELD_MANAGER, PolicyStates, WriteError};
use crate::api::{AIWorkload, AIWorkloadStatus, HostingPolicy, HostingPolicyStatus};
use crate::policy::PolicyError;
use crate::policy_report::{self, ReportApi};

/// Event reason on violating workloads.
pub const VIOLATION_REASON: &str = "HostingPolicyViolation";
/// New Events published per audit at most; the rest follow at the next audits.
pub const MAX_NEW_EVENTS: usize = 200;
/// Event writes in flight at once.
pub const CONCURRENT_EVENTS: usize = 8;
/// The HostingPolicy condition that says whether PolicyReports are written.
pub const REPORTS_CONDITION: &str = "PolicyReports";
/// Kubernetes limits an Event's note to 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

/// What a policy's status says besides the audit counts.
#[derive(Debug, Clone, Copy)]
pub enum PolicyState<'a> {
    Enforced,
    /// The current spec does not compile; what is enforced instead, if anything.
    Invalid(&'a [PolicyError], Option<EnforcedInstead>),
    /// A `--policy` file of the same name is enforced instead.
    Shadowed,
}

/// A condition, keeping the previous transition time when the status did not change.
fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The status of one HostingPolicy after an audit.
pub fn policy_status(
    policy: &HostingPolicy,
    state: PolicyState<'_>,
    tally: Option<&PolicyTally>,
    now: &Time,
) -> HostingPolicyStatus {
    let generation = policy.metadata.generation;
    let previous = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let ready = match state {
        PolicyState::Enforced => condition(
            "Ready",
            "True",
            "Enforced",
            format!("enforced with action {}", policy.spec.action.as_str()),
            generation,
            previous,
            now,
        ),
        PolicyState::Invalid(errors, instead) => {
            let errors = errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            let enforced = match instead {
                Some(EnforcedInstead::Generation(g)) => format!(
                    "generation {g}, the last that compiled, is still enforced"
                ),
                Some(EnforcedInstead::BuiltinDefault) => "no version compiled since hostguard started; the built-in default policy of this name is enforced instead".to_string(),
                None => "no version of this policy compiled, so it is not enforced".to_string(),
            };
            condition(
                "Ready",
                "False",
                "InvalidSpec",
                format!("{errors}; {enforced}"),
                generation,
                previous,
                now,
            )
        }
        PolicyState::Shadowed => condition(
            "Ready",
            "False",
            "OverriddenByFile",
            "a policy of the same name given to hostguard with --policy is enforced instead"
                .to_string(),
            generation,
            previous,
            now,
        ),
    };
    // Audit counts describe what is enforced: the current spec, or the version standing in.
    let enforced = matches!(
        state,
        PolicyState::Enforced | PolicyState::Invalid(_, Some(_))
    );
    let enforced_generation = match state {
        PolicyState::Enforced => generation,
        PolicyState::Invalid(_, Some(EnforcedInstead::Generation(g))) => Some(g),
        _ => None,
    };
    HostingPolicyStatus {
        conditions: vec![ready],
        observed_generation: generation,
        enforced_generation,
        exemptions: if enforced {
            tally.map_or(0, |t| t.exempted)
        } else {
            0
        },
        exempted_objects: if enforced {
            tally.map(|t| t.first_exempted.clone()).unwrap_or_default()
        } else {
            Vec::new()
        },
        violations: if enforced {
            tally.map_or(0, |t| t.violating)
        } else {
            0
        },
        last_audit_time: Some(now.clone()),
        violating_objects: if enforced {
            tally.map(|t| t.first.clone()).unwrap_or_default()
        } else {
            Vec::new()
        },
    }
}

/// The status of one AIWorkload after an audit.
pub fn workload_status(
    aiw: &WorkloadRecord,
    tally: Option<&DeclaredTally>,
    now: &Time,
) -> AIWorkloadStatus {
    let generation = aiw.generation;
    let previous = aiw
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let compliant = match (&aiw.declared, tally) {
        (Err(e), _) => condition(
            "Compliant",
            "Unknown",
            "InvalidSpec",
            format!("{}: {}", e.path, e.reason),
            generation,
            previous,
            now,
        ),
        (Ok(_), None) => condition(
            "Compliant",
            "True",
            "NoMatchingWorkloads",
            "no workload in this namespace has pods that spec.selector selects".to_string(),
            generation,
            previous,
            now,
        ),
        (Ok(_), Some(t)) if t.violating == 0 => condition(
            "Compliant",
            "True",
            "Compliant",
            format!("all {} matched workloads pass every policy", t.total),
            generation,
            previous,
            now,
        ),
        (Ok(_), Some(t)) => condition(
            "Compliant",
            "False",
            "PolicyViolation",
            format!(
                "{} of {} matched workloads break a policy; first: {}",
                t.violating,
                t.total,
                t.first_violation.as_deref().unwrap_or("")
            ),
            generation,
            previous,
            now,
        ),
    };
    AIWorkloadStatus {
        conditions: vec![compliant],
        observed_generation: generation,
        matched_workloads: tally.map(|t| t.matched.clone()).unwrap_or_default(),
        last_audit_time: Some(now.clone()),
    }
}

/// Whether a new HostingPolicy status says what the current one says, `lastAuditTime` aside.
pub fn same_policy_status(
    current: Option<&HostingPolicyStatus>,
    new: &HostingPolicyStatus,
) -> bool {
    current.is_some_and(|current| {
        HostingPolicyStatus {
            last_audit_time: None,
            ..current.clone()
        } == HostingPolicyStatus {
            last_audit_time: None,
            ..new.clone()
        }
    })
}

/// Whether a new AIWorkload status says what the current one says, `lastAuditTime` aside.
pub fn same_workload_status(current: Option<&AIWorkloadStatus>, new: &AIWorkloadStatus) -> bool {
    current.is_some_and(|current| {
        AIWorkloadStatus {
            last_audit_time: None,
            ..current.clone()
        } == AIWorkloadStatus {
            last_audit_time: None,
            ..new.clone()
        }
    })
}

/// The server-side apply body for a status.
pub fn apply_body<K: kube::Resource<DynamicType = ()>>(
    status: &impl serde::Serialize,
) -> serde_json::Value {
    json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

/// Writes status and events while this replica leads.
pub struct Writer {
    client: Client,
    leadership: Leadership,
    recorder: Recorder,
    /// (object, policy) pairs this leader has published an Event for, still violating.
    emitted: HashSet<(String, String)>,
    /// The PolicyReport API to write, if any.
    reports: Option<ReportApi>,
    /// What the last report write found, to log a change once.
    reports_state: Option<ReportsState>,
}

/// What one [`Writer::write`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Statuses written (their content changed).
    pub statuses: usize,
    /// Statuses left as they were (nothing but `lastAuditTime` would have changed).
    pub unchanged: usize,
    /// Events published.
    pub events: usize,
    /// What the PolicyReport write did, when reports are on.
    pub reports: Option<ReportsWritten>,
}

impl Writer {
    pub fn new(client: Client, leadership: Leadership, identity: &str) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "hostguard".into(),
                instance: Some(identity.to_string()),
            },
        );
        Writer {
            client,
            leadership,
            recorder,
            emitted: HashSet::new(),
            reports: None,
            reports_state: None,
        }
    }

    /// Also writes PolicyReports in `api` (from a tally made with [`Tally::reporting`]).
    pub fn with_reports(mut self, api: ReportApi) -> Self {
        self.reports = Some(api);
        self
    }

    /// Whether this writer writes PolicyReports (so the audit must gather their results).
    pub fn reports(&self) -> Option<ReportApi> {
        self.reports
    }

    fn check(&self) -> Result<(), WriteError> {
        if self.leadership.is_leader() {
            Ok(())
        } else {
            Err(WriteError::NotLeader)
        }
    }

    /// Forgets which Events were published (a new leadership term starts afresh).
    pub fn reset(&mut self) {
        self.emitted.clear();
    }

    /// Writes every HostingPolicy's and AIWorkload's status whose content changed, then the new
    /// Events. Individual write failures are logged and skipped (the next audit writes again);
    /// losing leadership stops everything at once.
    pub async fn write(
        &mut self,
        policies: &[std::sync::Arc<HostingPolicy>],
        states: PolicyStates<'_>,
        workloads: &[std::sync::Arc<WorkloadRecord>],
        tally: &Tally,
        now: Timestamp,
    ) -> Result<Written, WriteError> {
        let mut written = Written::default();
        let reports_condition = match (self.reports, &tally.reports) {
            (Some(api), Some(collected)) => {
                let cluster = reports::policy_results(policies, states);
                let leadership = self.leadership.clone();
                let is_leader = move || leadership.is_leader();
                let done =
                    reports::write(&self.client, api, &is_leader, collected, &cluster, now).await?;
                if self.reports_state != Some(done.state) {
                    match done.state {
                        ReportsState::NotServed => tracing::warn!(
                            api = %api.api_version(),
                            "PolicyReports are not written: the cluster does not serve {} {} and {}; install their CRDs to get them",
                            api.api_version(),
                            api.namespaced().0,
                            api.cluster().0
                        ),
                        ReportsState::Written => {
                            tracing::info!(api = %api.api_version(), "PolicyReports are written")
                        }
                        ReportsState::Failed => {}
                    }
                    self.reports_state = Some(done.state);
                }
                written.reports = Some(done);
                Some((api, done.state))
            }
            _ => None,
        };
        let now = Time(now);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let policy_api: Api<HostingPolicy> = Api::all(self.client.clone());
        for policy in policies {
            let Some(name) = policy.metadata.name.as_deref() else {
                continue;
            };
            let state = match states.invalid.get(name) {
                Some(errors) => {
                    PolicyState::Invalid(errors, states.enforced_instead.get(name).copied())
                }
                None if states.shadowed.iter().any(|s| s == name) => PolicyState::Shadowed,
                None => PolicyState::Enforced,
            };
            let mut status = policy_status(policy, state, tally.policies.get(name), &now);
            if let Some((api, reported)) = reports_condition {
                status
                    .conditions
                    .push(reports_condition_of(policy, api, reported, &now));
            }
            if same_policy_status(policy.status.as_ref(), &status) {
                written.unchanged += 1;
                continue;
            }
            self.check()?;
            written.statuses += 1;
            let body = apply_body::<HostingPolicy>(&status);
            if let Err(e) = policy_api
                .patch_status(name, &params, &Patch::Apply(&body))
                .await
            {
                tracing::warn!(policy = name, error = %e, "cannot write HostingPolicy status");
            }
        }
        // In the order of their keys, as the API server lists them: the store holds them in
        // no order, and the log and the tests read the writes in sequence.
        let mut workloads: Vec<&WorkloadRecord> = workloads.iter().map(AsRef::as_ref).collect();
        workloads.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        for aiw in workloads {
            let NamespacedName {
                namespace: ns,
                name,
            } = &aiw.key;
            if ns.is_empty() || name.is_empty() {
                continue;
            }
            let status = workload_status(
                aiw,
                tally.declared.get(&(ns.to_string(), name.to_string())),
                &now,
            );
            if same_workload_status(aiw.status.as_deref(), &status) {
                written.unchanged += 1;
                continue;
            }
            self.check()?;
            written.statuses += 1;
            let api: Api<AIWorkload> = Api::namespaced(self.client.clone(), ns);
            let body = apply_body::<AIWorkload>(&status);
            if let Err(e) = api.patch_status(name, &params, &Patch::Apply(&body)).await {
                tracing::warn!(namespace = ns, name, error = %e, "cannot write AIWorkload status");
            }
        }
        written.events = self.publish_events(tally).await?;
        Ok(written)
    }

    /// Publishes one Warning Event per (object, policy) not published before, at most
    /// [`MAX_NEW_EVENTS`] per call, [`CONCURRENT_EVENTS`] at a time.
    pub async fn publish_events(&mut self, tally: &Tally) -> Result<usize, WriteError> {
        use futures::StreamExt as _;
        let current: HashSet<(String, String)> = tally.events.iter().map(|e| e.key()).collect();
        // A violation that went away may come back later and deserves a new Event then.
        self.emitted.retain(|k| current.contains(k));
        let mut seen = HashSet::new();
        let due: Vec<&PendingEvent> = tally
            .events
            .iter()
            .filter(|p| !self.emitted.contains(&p.key()) && seen.insert(p.key()))
            .take(MAX_NEW_EVENTS)
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        self.check()?;
        let recorder = &self.recorder;
        // Collected first, so that no lazy closure ends up in the stream's type (which would
        // keep the spawned audit from being `Send`).
        let sends: Vec<_> = due
            .iter()
            .map(|pending| async move {
                let event = violation_event(pending);
                (*pending, recorder.publish(&event, &pending.reference).await)
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(sends)
            .buffer_unordered(CONCURRENT_EVENTS)
            .collect()
            .await;
        let mut published = 0;
        for (pending, result) in results {
            match result {
                Ok(()) => {
                    self.emitted.insert(pending.key());
                    published += 1;
                }
                Err(e) => tracing::warn!(
                    policy = %pending.policy,
                    kind = pending.reference.kind.as_deref().unwrap_or(""),
                    namespace = pending.reference.namespace.as_deref().unwrap_or(""),
                    name = pending.reference.name.as_deref().unwrap_or(""),
                    error = %e,
                    "cannot publish a violation Event"
                ),
            }
        }
        Ok(published)
    }
}

/// The Warning Event of one violation: the policy is its related object. Besides telling
/// readers which HostingPolicy it is about, that keeps the Recorder (whose series key is the
/// object, reason, action and related object) from folding one object's Events for two policies
/// into one series with the first policy's note.
fn violation_event(pending: &PendingEvent) -> Event {
    Event {
        type_: EventType::Warning,
        reason: VIOLATION_REASON.into(),
        note: Some(truncate(
            &format!(
                "policy {} ({}): {}",
                pending.policy,
                pending.action.as_str(),
                pending.message
            ),
            MAX_NOTE_BYTES,
        )),
        action: "Audit".into(),
        secondary: Some(k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("hostguard.dev/v1alpha1".into()),
            kind: Some("HostingPolicy".into()),
            name: Some(pending.policy.clone()),
            ..Default::default()
        }),
    }
}

/// The `PolicyReports` condition of a HostingPolicy: whether its findings reach PolicyReports.
fn reports_condition_of(
    policy: &HostingPolicy,
    api: ReportApi,
    state: ReportsState,
    now: &Time,
) -> Condition {
    let previous = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let (kind, cluster_kind) = (api.namespaced().0, api.cluster().0);
    let (status, reason, message) = match state {
        ReportsState::Written => (
            "True",
            "Written",
            format!(
                "audit results are in the {} {kind} named {} in each namespace and the {cluster_kind} of that name",
                api.api_version(),
                policy_report::REPORT_NAME
            ),
        ),
        ReportsState::NotServed => (
            "False",
            "CRDNotServed",
            format!(
                "the cluster does not serve {} {kind} and {cluster_kind}; install their CRDs to get PolicyReports",
                api.api_version()
            ),
        ),
        ReportsState::Failed => (
            "Unknown",
            "DiscoveryFailed",
            format!(
                "could not ask the API server whether {} reports are served; the next audit retries",
                api.api_version()
            ),
        ),
    };
    condition(
        REPORTS_CONDITION,
        status,
        reason,
        message,
        policy.metadata.generation,
        previous,
        now,
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_at_a_char_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, 1024);
        assert!(t.len() <= 1024);
        assert!(t.ends_with("..."));
        assert_eq!(truncate("short", 1024), "short");
    }
}
