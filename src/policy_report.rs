//! hostguard's findings as PolicyReports, the format that Kyverno, Kubewarden, Policy Reporter
//! and the policy working group's tools read: the OpenReports API (`openreports.io/v1alpha1`
//! `Report` and `ClusterReport`) or the older `wgpolicyk8s.io/v1alpha2` `PolicyReport` and
//! `ClusterPolicyReport`. Both carry the same fields (summary, results with source, policy,
//! rule, result, severity, resources, message, properties); only the group and kinds differ.
//!
//! This module is pure: it turns engine decisions into results, gathers them per namespace with
//! caps, and renders report objects. The audit writes them to the cluster
//! ([`crate::cluster::reports`]), `hostguard check -o policyreport` prints them.
//!
//! Results map a decision as follows: each violation is `fail` (action Deny or Audit) or `warn`
//! (action Warn), with the check that failed as its rule and the field path both at the start of
//! the message and in `properties.fieldPath`; a violation of hostguard's own reading of the
//! object is `error` (the policies could not be evaluated); a policy that AIWorkloads lifted is
//! `skip`; a governing policy the object satisfies is `pass`.

use std::collections::BTreeMap;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::Action;
use crate::policy::Decision;

/// The `source` of every result: the engine that produced it.
pub const SOURCE: &str = "hostguard";
/// The name of hostguard's report in each namespace, and of its cluster report.
pub const REPORT_NAME: &str = "hostguard";
/// The label that marks reports hostguard owns (and may prune).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "hostguard");
/// `category` of every result (Policy Reporter groups by it).
pub const CATEGORY: &str = "AI endpoint hosting";
/// The rule of a `pass` result: every check of the policy passed.
pub const RULE_ALL_CHECKS: &str = "all-checks";
/// Results kept per report. A report is one object in etcd, whose requests are limited to
/// 1.5 MiB by default; a result is well under 1 kB, so this keeps every report writable. The
/// summary still counts every result.
pub const MAX_RESULTS_PER_REPORT: usize = 1000;
/// Results kept over all namespaces, so that the audit's memory stays bounded in a cluster with
/// thousands of namespaces.
pub const MAX_RESULTS_TOTAL: usize = 50_000;

/// Which PolicyReport API to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum ReportApi {
    /// `openreports.io/v1alpha1` Report and ClusterReport (the OpenReports project).
    #[default]
    #[value(name = "openreports")]
    OpenReports,
    /// `wgpolicyk8s.io/v1alpha2` PolicyReport and ClusterPolicyReport (the policy working
    /// group's original API).
    #[value(name = "wgpolicyk8s")]
    Wgpolicyk8s,
}

impl ReportApi {
    pub fn group(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "openreports.io",
            ReportApi::Wgpolicyk8s => "wgpolicyk8s.io",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "v1alpha1",
            ReportApi::Wgpolicyk8s => "v1alpha2",
        }
    }

    /// `group/version`.
    pub fn api_version(self) -> String {
        format!("{}/{}", self.group(), self.version())
    }

    /// The namespaced kind and its resource (plural) name.
    pub fn namespaced(self) -> (&'static str, &'static str) {
        match self {
            ReportApi::OpenReports => ("Report", "reports"),
            ReportApi::Wgpolicyk8s => ("PolicyReport", "policyreports"),
        }
    }

    /// The cluster-scoped kind and its resource (plural) name.
    pub fn cluster(self) -> (&'static str, &'static str) {
        match self {
            ReportApi::OpenReports => ("ClusterReport", "clusterreports"),
            ReportApi::Wgpolicyk8s => ("ClusterPolicyReport", "clusterpolicyreports"),
        }
    }

    /// The chart value and flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "openreports",
            ReportApi::Wgpolicyk8s => "wgpolicyk8s",
        }
    }
}

/// The outcome of one policy rule on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Warn,
    Error,
    Skip,
}

/// How bad a finding is, from the policy's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    /// Deny blocks admission (high); Warn tells the user (medium); Audit only records (low).
    pub fn of(action: Action) -> Severity {
        match action {
            Action::Deny => Severity::High,
            Action::Warn => Severity::Medium,
            Action::Audit => Severity::Low,
        }
    }
}

/// The resource a result is about (a core/v1 ObjectReference's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl Resource {
    /// The reference of a Kubernetes object (JSON).
    pub fn of(object: &Value) -> Resource {
        let s = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let non_empty = |v: String| Some(v).filter(|v| !v.is_empty());
        Resource {
            api_version: s("/apiVersion"),
            kind: s("/kind"),
            namespace: non_empty(s("/metadata/namespace")),
            name: s("/metadata/name"),
            uid: non_empty(s("/metadata/uid")),
        }
    }
}

/// A `metav1.Timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    #[serde(default)]
    pub nanos: i32,
}

impl Timestamp {
    pub fn of(t: k8s_openapi::jiff::Timestamp) -> Timestamp {
        Timestamp {
            seconds: t.as_second(),
            nanos: t.subsec_nanosecond(),
        }
    }
}

/// One result of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResult {
    #[serde(default)]
    pub source: String,
    pub policy: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// When the result was first found (kept while it stays the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    pub result: Outcome,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

impl ReportResult {
    fn new(policy: &str, rule: &str, result: Outcome, resource: &Resource) -> Self {
        ReportResult {
            source: SOURCE.to_string(),
            policy: policy.to_string(),
            rule: rule.to_string(),
            category: CATEGORY.to_string(),
            severity: None,
            timestamp: None,
            result,
            resources: vec![resource.clone()],
            message: String::new(),
            properties: BTreeMap::new(),
        }
    }

    /// The result without its timestamp, to tell whether it is the same finding.
    fn timeless(&self) -> ReportResult {
        ReportResult {
            timestamp: None,
            ..self.clone()
        }
    }
}

/// The policy name of violations about hostguard's own reading of the input.
const SELF_VALIDATION: &str = "hostguard";

/// A violation as reports need it (from a [`Decision`] or a `check` report entry).
#[derive(Debug, Clone, Copy)]
pub struct Broken<'a> {
    pub policy: &'a str,
    pub action: Action,
    pub rule: &'a str,
    pub path: &'a str,
    pub message: &'a str,
}

/// An exemption as reports need it.
#[derive(Debug, Clone, Copy)]
pub struct Lifted<'a> {
    pub policy: &'a str,
    pub path: &'a str,
    pub exempted_by: &'a [String],
    pub message: &'a str,
}

/// The results of one decision on one resource: a `fail`/`warn`/`error` per violation, a
/// `skip` per exemption, a `pass` per governing policy without violations.
pub fn results(resource: &Resource, decision: &Decision) -> Vec<ReportResult> {
    results_of(
        resource,
        decision.violations.iter().map(|v| Broken {
            policy: &v.policy,
            action: v.action,
            rule: v.rule,
            path: &v.path,
            message: &v.message,
        }),
        decision.exemptions.iter().map(|e| Lifted {
            policy: &e.policy,
            path: &e.path,
            exempted_by: &e.exempted_by,
            message: &e.message,
        }),
        &decision.governed_by,
    )
}

/// [`results`] from the parts of a decision.
pub fn results_of<'a>(
    resource: &Resource,
    violations: impl IntoIterator<Item = Broken<'a>>,
    exemptions: impl IntoIterator<Item = Lifted<'a>>,
    governed_by: &[String],
) -> Vec<ReportResult> {
    let mut out = Vec::new();
    let mut not_passed: Vec<&str> = Vec::new();
    for v in violations {
        let outcome = if v.policy == SELF_VALIDATION {
            Outcome::Error
        } else if v.action == Action::Warn {
            Outcome::Warn
        } else {
            Outcome::Fail
        };
        let mut r = ReportResult::new(v.policy, v.rule, outcome, resource);
        r.severity = Some(Severity::of(v.action));
        r.message = v.message.to_string();
        if !v.path.is_empty() {
            r.properties.insert("fieldPath".into(), v.path.to_string());
        }
        r.properties
            .insert("action".into(), v.action.as_str().into());
        out.push(r);
        not_passed.push(v.policy);
    }
    for e in exemptions {
        let mut r = ReportResult::new(e.policy, RULE_ALL_CHECKS, Outcome::Skip, resource);
        r.message = e.message.to_string();
        if !e.path.is_empty() {
            r.properties.insert("fieldPath".into(), e.path.to_string());
        }
        r.properties
            .insert("exemptedBy".into(), e.exempted_by.join(", "));
        out.push(r);
        not_passed.push(e.policy);
    }
    for policy in governed_by {
        if not_passed.contains(&policy.as_str()) {
            continue;
        }
        let mut r = ReportResult::new(policy, RULE_ALL_CHECKS, Outcome::Pass, resource);
        r.message = format!("governed by policy {policy}, and every check passed");
        out.push(r);
    }
    out
}

/// The counts of a report's results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub pass: usize,
    #[serde(default)]
    pub fail: usize,
    #[serde(default)]
    pub warn: usize,
    #[serde(default)]
    pub error: usize,
    #[serde(default)]
    pub skip: usize,
}

impl Summary {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Warn => self.warn += 1,
            Outcome::Error => self.error += 1,
            Outcome::Skip => self.skip += 1,
        }
    }

    fn add(&mut self, other: &Summary) {
        self.pass += other.pass;
        self.fail += other.fail;
        self.warn += other.warn;
        self.error += other.error;
        self.skip += other.skip;
    }
}

/// The results of one report, capped, with counts of all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportContent {
    pub results: Vec<ReportResult>,
    pub summary: Summary,
    /// Results counted in the summary but not kept (over a cap).
    pub dropped: usize,
}

/// Results gathered per namespace (`""`: objects without one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    pub namespaces: BTreeMap<String, ReportContent>,
    kept: usize,
}

impl Collected {
    /// Adds results to a namespace's report, within the caps.
    pub fn add(&mut self, namespace: &str, results: Vec<ReportResult>) {
        if results.is_empty() {
            return;
        }
        for r in &results {
            self.content(namespace).summary.count(r.result);
        }
        self.keep(namespace, results);
    }

    /// Adds what `other` gathered after what this holds, keeping the caps.
    pub fn absorb(&mut self, other: Collected) {
        for (namespace, content) in other.namespaces {
            let mine = self.content(&namespace);
            mine.summary.add(&content.summary);
            mine.dropped += content.dropped;
            self.keep(&namespace, content.results);
        }
    }

    fn content(&mut self, namespace: &str) -> &mut ReportContent {
        self.namespaces.entry(namespace.to_string()).or_default()
    }

    /// Keeps results already counted in the summary, those over a cap counted as dropped.
    fn keep(&mut self, namespace: &str, results: Vec<ReportResult>) {
        let mut kept = self.kept;
        let content = self.namespaces.entry(namespace.to_string()).or_default();
        for r in results {
            if content.results.len() < MAX_RESULTS_PER_REPORT && kept < MAX_RESULTS_TOTAL {
                content.results.push(r);
                kept += 1;
            } else {
                content.dropped += 1;
            }
        }
        self.kept = kept;
    }

    /// Every result dropped over a cap.
    pub fn dropped(&self) -> usize {
        self.namespaces.values().map(|c| c.dropped).sum()
    }
}

/// Gives each result the timestamp of the same finding in `previous` (the report as it is), or
/// `now` when it is new: a timestamp says when the finding was first seen.
pub fn stamp(results: &mut [ReportResult], previous: &[ReportResult], now: Timestamp) {
    let known: Vec<(ReportResult, Option<Timestamp>)> = previous
        .iter()
        .map(|r| (r.timeless(), r.timestamp))
        .collect();
    for r in results {
        let timeless = r.timeless();
        r.timestamp = known
            .iter()
            .find(|(k, _)| *k == timeless)
            .and_then(|(_, t)| *t)
            .or(Some(now));
    }
}

/// A namespaced report (`namespace` None: one without `metadata.namespace`, for `kubectl apply
/// -n`) or, with `cluster`, the cluster-scoped one.
pub fn render(
    api: ReportApi,
    namespace: Option<&str>,
    cluster: bool,
    content: &ReportContent,
) -> Value {
    let (kind, _) = if cluster {
        api.cluster()
    } else {
        api.namespaced()
    };
    let mut metadata = json!({
        "name": REPORT_NAME,
        "labels": {MANAGED_BY.0: MANAGED_BY.1},
    });
    if let (Some(ns), false) = (namespace.filter(|n| !n.is_empty()), cluster) {
        metadata["namespace"] = json!(ns);
    }
    if content.dropped > 0 {
        metadata["annotations"] = json!({
            "hostguard.dev/results-dropped": content.dropped.to_string(),
        });
    }
    json!({
        "apiVersion": api.api_version(),
        "kind": kind,
        "metadata": metadata,
        "source": SOURCE,
        "summary": content.summary,
        "results": content.results,
    })
}

/// Whether a report as it is (from the API server) says what `new` says: the same summary,
/// results (timestamps included: they were carried over by [`stamp`]) and dropped count.
pub fn same_content(current: &Value, new: &Value) -> bool {
    let results = |v: &Value| -> Option<Vec<ReportResult>> {
        serde_json::from_value(v.get("results").cloned().unwrap_or(json!([]))).ok()
    };
    let summary = |v: &Value| -> Option<Summary> {
        serde_json::from_value(v.get("summary").cloned().unwrap_or(json!({}))).ok()
    };
    let dropped = |v: &Value| {
        v.pointer("/metadata/annotations/hostguard.dev~1results-dropped")
            .cloned()
    };
    let labelled = current
        .pointer(&format!(
            "/metadata/labels/{}",
            MANAGED_BY.0.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        == Some(MANAGED_BY.1);
    labelled
        && results(current).is_some()
        && results(current) == results(new)
        && summary(current) == summary(new)
        && dropped(current) == dropped(new)
}

/// The results of a report as it is (none when unreadable).
pub fn current_results(report: &Value) -> Vec<ReportResult> {
    report
        .get("results")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Operation, PolicySet, Request, evaluate};
    use crate::snapshot::Snapshot;

    fn deployment(base_url: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": "team-a", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "chat"}}, "template": {
                "metadata": {"labels": {"app": "chat"}},
                "spec": {"containers": [{"name": "app", "image": "i", "env": [
                    {"name": "OPENAI_API_KEY", "value": "sk-test"},
                    {"name": "OPENAI_BASE_URL", "value": base_url}
                ]}]}
            }}
        })
    }

    fn decide(object: &Value) -> Decision {
        evaluate(
            &Request {
                operation: Operation::Create,
                object: Some(object.into()),
                old_object: None,
                namespace: Some("team-a"),
            },
            &PolicySet::builtin(),
            &Snapshot::offline(Default::default()),
        )
    }

    #[test]
    fn a_denied_endpoint_is_a_high_severity_fail_with_its_field_path() {
        let object = deployment("https://api.openai.com/v1");
        let r = results(&Resource::of(&object), &decide(&object));
        assert_eq!(r.len(), 1, "{r:#?}");
        let r = &r[0];
        assert_eq!(r.result, Outcome::Fail);
        assert_eq!(r.severity, Some(Severity::High));
        assert_eq!(r.rule, crate::policy::rule::ALLOWED_ENDPOINT);
        assert_eq!(r.policy, crate::policy::DEFAULT_POLICY_NAME);
        let path = &r.properties["fieldPath"];
        assert!(r.message.starts_with(path.as_str()), "{}", r.message);
        assert!(path.contains("OPENAI_BASE_URL"), "{path}");
        assert_eq!(r.resources[0].uid.as_deref(), Some("u1"));
    }

    #[test]
    fn a_compliant_governed_workload_passes() {
        let object = deployment("https://contoso.openai.azure.com/openai/v1");
        let r = results(&Resource::of(&object), &decide(&object));
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(r[0].result, Outcome::Pass);
        assert_eq!(r[0].rule, RULE_ALL_CHECKS);
    }

    #[test]
    fn caps_drop_results_but_the_summary_counts_them() {
        let object = deployment("https://api.openai.com/v1");
        let one = results(&Resource::of(&object), &decide(&object));
        let mut a = Collected::default();
        let mut b = Collected::default();
        for _ in 0..MAX_RESULTS_PER_REPORT {
            a.add("team-a", one.clone());
        }
        for _ in 0..5 {
            b.add("team-a", one.clone());
        }
        a.absorb(b);
        let c = &a.namespaces["team-a"];
        assert_eq!(c.results.len(), MAX_RESULTS_PER_REPORT);
        assert_eq!(c.summary.fail, MAX_RESULTS_PER_REPORT + 5);
        assert_eq!(c.dropped, 5);
    }

    #[test]
    fn an_unchanged_finding_keeps_its_first_timestamp() {
        let object = deployment("https://api.openai.com/v1");
        let mut old = results(&Resource::of(&object), &decide(&object));
        stamp(
            &mut old,
            &[],
            Timestamp {
                seconds: 100,
                nanos: 0,
            },
        );
        let mut new = results(&Resource::of(&object), &decide(&object));
        stamp(
            &mut new,
            &old,
            Timestamp {
                seconds: 200,
                nanos: 0,
            },
        );
        assert_eq!(
            new[0].timestamp,
            Some(Timestamp {
                seconds: 100,
                nanos: 0
            })
        );
        let content = ReportContent {
            summary: Summary {
                fail: 1,
                ..Default::default()
            },
            results: new,
            dropped: 0,
        };
        let rendered = render(ReportApi::OpenReports, Some("team-a"), false, &content);
        let old_report = render(
            ReportApi::OpenReports,
            Some("team-a"),
            false,
            &ReportContent {
                results: old,
                ..content.clone()
            },
        );
        assert!(same_content(&old_report, &rendered));
    }

    #[test]
    fn both_apis_name_their_kinds() {
        let c = ReportContent::default();
        let r = render(ReportApi::Wgpolicyk8s, Some("a"), false, &c);
        assert_eq!(r["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(r["kind"], "PolicyReport");
        assert_eq!(r["metadata"]["namespace"], "a");
        let r = render(ReportApi::OpenReports, None, true, &c);
        assert_eq!(r["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(r["kind"], "ClusterReport");
        assert!(r["metadata"].get("namespace").is_none());
    }
}
