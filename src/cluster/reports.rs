//! Writing the audit's PolicyReports: one report named `hostguard` per namespace with results,
//! and one cluster report with a result per HostingPolicy, in the API the chart chose
//! ([`ReportApi`]).
//!
//! The report CRDs belong to their own projects (OpenReports, the policy working group), so
//! hostguard never installs them: before each write it asks discovery whether the group version
//! serves both kinds, and when it does not, writes nothing and says so (the log, and the
//! `PolicyReports` condition of every HostingPolicy).
//!
//! Every write is a server-side apply with the `hostguard` field manager, and only of a report
//! whose content changed: the reports hostguard owns (label `app.kubernetes.io/managed-by:
//! hostguard`) are listed first and compared, timestamps of unchanged findings carried over.
//! Results of deleted objects disappear with the next audit, since each audit writes the full
//! set; a report of a namespace with no results left is deleted.

use std::collections::BTreeSet;

use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use super::write::{FIELD_MANAGER, PolicyStates, WriteError};
use crate::api::HostingPolicy;
use crate::policy_report::{
    self, Collected, MANAGED_BY, Outcome, REPORT_NAME, ReportApi, ReportContent, ReportResult,
    Resource, Timestamp,
};

/// The rule of the cluster report's per-policy results.
pub const RULE_VALID_SPEC: &str = "valid-spec";

/// What the last report write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportsState {
    /// Reports were written (or were already up to date).
    Written,
    /// The cluster does not serve the report kinds.
    NotServed,
    /// Discovery or listing failed; the next audit retries.
    Failed,
}

/// What one report write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportsWritten {
    pub state: ReportsState,
    /// Reports applied (their content changed).
    pub applied: usize,
    /// Reports left as they were.
    pub unchanged: usize,
    /// Reports deleted (their namespace has no results any more).
    pub deleted: usize,
    /// Results counted in summaries but left out of a report over a cap.
    pub dropped: usize,
}

impl ReportsWritten {
    fn state(state: ReportsState) -> Self {
        ReportsWritten {
            state,
            applied: 0,
            unchanged: 0,
            deleted: 0,
            dropped: 0,
        }
    }
}

fn resource(api: ReportApi, cluster: bool) -> ApiResource {
    let (kind, plural) = if cluster {
        api.cluster()
    } else {
        api.namespaced()
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(api.group(), api.version(), kind),
        plural,
    )
}

/// Whether the cluster serves both report kinds of `api` (discovery). A group version that is
/// not there answers 404.
pub async fn served(client: &Client, api: ReportApi) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(&api.api_version()).await {
        Ok(list) => {
            let names: BTreeSet<&str> = list.resources.iter().map(|r| r.name.as_str()).collect();
            Ok(names.contains(api.namespaced().1) && names.contains(api.cluster().1))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The cluster report's results: one per HostingPolicy, `pass` when enforced, `error` when its
/// spec does not compile, `skip` when a `--policy` file of its name is enforced instead.
pub fn policy_results(
    policies: &[std::sync::Arc<HostingPolicy>],
    states: PolicyStates<'_>,
) -> ReportContent {
    let mut collected = Collected::default();
    for p in policies {
        let Some(name) = p.metadata.name.as_deref() else {
            continue;
        };
        let reference = Resource {
            api_version: format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
            kind: "HostingPolicy".into(),
            namespace: None,
            name: name.to_string(),
            uid: p.metadata.uid.clone(),
        };
        let (result, message) = match states.invalid.get(name) {
            Some(errors) => (
                Outcome::Error,
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            None if states.shadowed.iter().any(|s| s == name) => (
                Outcome::Skip,
                "a policy of the same name given to hostguard with --policy is enforced instead"
                    .to_string(),
            ),
            None => (
                Outcome::Pass,
                format!("enforced with action {}", p.spec.action.as_str()),
            ),
        };
        collected.add(
            "",
            vec![ReportResult {
                source: policy_report::SOURCE.into(),
                policy: name.to_string(),
                rule: RULE_VALID_SPEC.into(),
                category: policy_report::CATEGORY.into(),
                severity: None,
                timestamp: None,
                result,
                resources: vec![reference],
                message,
                properties: Default::default(),
            }],
        );
    }
    collected.namespaces.remove("").unwrap_or_default()
}

/// Writes the reports of one audit. `is_leader` is asked before every write.
pub async fn write(
    client: &Client,
    api: ReportApi,
    is_leader: &(dyn Fn() -> bool + Sync),
    collected: &Collected,
    cluster: &ReportContent,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<ReportsWritten, WriteError> {
    match served(client, api).await {
        Ok(true) => {}
        Ok(false) => return Ok(ReportsWritten::state(ReportsState::NotServed)),
        Err(e) => {
            tracing::warn!(api = %api.api_version(), error = %e, "cannot ask discovery whether PolicyReports are served");
            return Ok(ReportsWritten::state(ReportsState::Failed));
        }
    }
    let now = Timestamp::of(now);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let namespaced = resource(api, false);
    let owned = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let existing = match Api::<DynamicObject>::all_with(client.clone(), &namespaced)
        .list(&owned)
        .await
    {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|r| r.metadata.name.as_deref() == Some(REPORT_NAME))
            .filter_map(|r| {
                let ns = r.metadata.namespace.clone()?;
                Some((ns, serde_json::to_value(r).ok()?))
            })
            .collect::<std::collections::BTreeMap<String, Value>>(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list hostguard's PolicyReports");
            return Ok(ReportsWritten::state(ReportsState::Failed));
        }
    };
    let mut done = ReportsWritten::state(ReportsState::Written);
    done.dropped = collected.dropped();
    for (namespace, content) in &collected.namespaces {
        // Objects without a namespace are cluster-scoped: none of the audited kinds is.
        if namespace.is_empty() {
            continue;
        }
        let current = existing.get(namespace);
        let body = stamped(api, Some(namespace), false, content, current, now);
        if current.is_some_and(|c| policy_report::same_content(c, &body)) {
            done.unchanged += 1;
            continue;
        }
        check(is_leader)?;
        done.applied += 1;
        let reports = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &namespaced);
        if let Err(e) = reports
            .patch(REPORT_NAME, &params, &Patch::Apply(&body))
            .await
        {
            tracing::warn!(namespace = %namespace, error = %e, "cannot write a PolicyReport");
        }
    }
    for namespace in existing.keys() {
        if collected
            .namespaces
            .get(namespace)
            .is_some_and(|c| !c.results.is_empty() || c.dropped > 0)
        {
            continue;
        }
        check(is_leader)?;
        done.deleted += 1;
        let reports = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &namespaced);
        match reports.delete(REPORT_NAME, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(namespace = %namespace, error = %e, "cannot delete a PolicyReport")
            }
        }
    }
    let clusters = Api::<DynamicObject>::all_with(client.clone(), &resource(api, true));
    let current = match clusters.get_opt(REPORT_NAME).await {
        Ok(c) => c.and_then(|c| serde_json::to_value(c).ok()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read hostguard's cluster PolicyReport");
            return Ok(done);
        }
    };
    let body = stamped(api, None, true, cluster, current.as_ref(), now);
    if current
        .as_ref()
        .is_some_and(|c| policy_report::same_content(c, &body))
    {
        done.unchanged += 1;
    } else {
        check(is_leader)?;
        done.applied += 1;
        if let Err(e) = clusters
            .patch(REPORT_NAME, &params, &Patch::Apply(&body))
            .await
        {
            tracing::warn!(error = %e, "cannot write the cluster PolicyReport");
        }
    }
    Ok(done)
}

fn check(is_leader: &(dyn Fn() -> bool + Sync)) -> Result<(), WriteError> {
    if is_leader() {
        Ok(())
    } else {
        Err(WriteError::NotLeader)
    }
}

/// The report body, each result stamped with its first-seen time from the current report.
fn stamped(
    api: ReportApi,
    namespace: Option<&str>,
    cluster: bool,
    content: &ReportContent,
    current: Option<&Value>,
    now: Timestamp,
) -> Value {
    let mut content = content.clone();
    let previous = current
        .map(policy_report::current_results)
        .unwrap_or_default();
    policy_report::stamp(&mut content.results, &previous, now);
    policy_report::render(api, namespace, cluster, &content)
}
