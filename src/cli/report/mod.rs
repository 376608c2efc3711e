//! The report of `hostguard check`: one [`Report`] built from the engine's decisions on the input
//! documents, rendered as text, JSON, SARIF or JUnit.
//!
//! The model carries everything the formats need (field lines included), so each renderer is a
//! pure function of it. Its JSON form is a contract that scripts rely on: fields may be added,
//! never removed or renamed.

mod json;
mod junit;
mod policyreport;
mod sarif;
mod stream;
mod text;

pub(crate) use junit::to_xml as junit_xml;
pub use stream::ReportWriter;

use clap::ValueEnum;
use serde::Serialize;

use crate::api::Action;
use crate::manifest::Document;
use crate::policy::{Decision, Finding, PolicySet, Verdict};
use crate::policy_report::ReportApi;

/// Output formats of `hostguard check`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable, grouped per file and document.
    #[default]
    Text,
    /// The report as JSON (a stable contract for scripts).
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
    /// JUnit XML, for CI test dashboards.
    Junit,
    /// PolicyReports (YAML, a v1 List of one report per namespace), as the audit writes them;
    /// the API is chosen with --policy-report-api.
    Policyreport,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// One entry per non-empty document, in input order.
    pub results: Vec<Entry>,
    pub summary: Summary,
    /// The policies in force, for the SARIF rules.
    #[serde(skip)]
    pub policies: Vec<PolicyRule>,
}

/// A policy in force, as a SARIF rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub name: String,
    /// One line, bounded whatever the policy (no host list).
    pub description: String,
    /// What the policy requires, in a paragraph.
    pub full_description: String,
    /// Every allowed host pattern.
    pub allowed_hosts: Vec<String>,
    /// How to fix a workload that breaks it.
    pub fix: String,
    pub provider: String,
    pub action: Action,
}

/// Counts per verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub documents: usize,
    pub allowed: usize,
    pub denied: usize,
    pub warned: usize,
    pub skipped: usize,
}

impl Summary {
    /// Counts one document's verdict.
    pub fn count(&mut self, verdict: Verdict) {
        self.documents += 1;
        match verdict {
            Verdict::Allow => self.allowed += 1,
            Verdict::Deny => self.denied += 1,
            Verdict::Warn => self.warned += 1,
            Verdict::Skipped => self.skipped += 1,
        }
    }
}

/// The decision on one document.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub source: String,
    /// Position of the document in its file (List items share their List's).
    pub document: usize,
    /// Line where the document starts.
    pub line: usize,
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub verdict: Verdict,
    /// Why the document was not evaluated, when `verdict` is `skipped`.
    pub skipped_reason: Option<String>,
    pub findings: Vec<Finding>,
    /// Every violation, whatever its action (Deny, Warn, Audit).
    pub violations: Vec<ReportViolation>,
    pub warnings: Vec<String>,
    /// Line of each warning's field, same order.
    #[serde(skip)]
    pub warning_lines: Vec<usize>,
    /// Field path of each warning, same order.
    #[serde(skip)]
    pub warning_paths: Vec<String>,
    /// Policies that AIWorkloads lifted from this document, each naming them: every exemption
    /// in force is visible in review.
    pub exemptions: Vec<ReportExemption>,
    /// The policies that govern the document (PolicyReport `pass` results).
    #[serde(skip)]
    pub governed_by: Vec<String>,
    /// The chart template the document was rendered from (`helm template`'s `# Source:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered_from: Option<String>,
}

/// An exemption with the line of its pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportExemption {
    pub policy: String,
    pub action: Action,
    /// Path of the exempted pod template (`spec.template`; empty for a Pod).
    pub path: String,
    /// The AIWorkloads that exempted it, as `namespace/name`.
    pub exempted_by: Vec<String>,
    pub message: String,
    pub line: usize,
}

/// A violation with the line of its field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportViolation {
    pub policy: String,
    pub action: Action,
    /// The check that failed (PolicyReport `rule`).
    #[serde(skip)]
    pub rule: &'static str,
    pub path: String,
    pub message: String,
    pub line: usize,
}

impl Report {
    /// An empty report for the given policies.
    pub fn new(policies: &PolicySet) -> Self {
        let policies = policies
            .policies()
            .iter()
            .map(|p| {
                let classes: Vec<&str> = p.api_classes.iter().map(|c| c.as_str()).collect();
                let traffic = format!("{} {} traffic", p.provider, classes.join("/"));
                let placement: Vec<&str> = p.cluster_providers.iter().map(|c| c.as_str()).collect();
                let placement = if placement.is_empty() {
                    String::new()
                } else {
                    format!(
                        " Governed workloads may run only on {} clusters.",
                        placement.join(", ")
                    )
                };
                PolicyRule {
                    name: p.name.clone(),
                    description: format!(
                        "HostingPolicy {}: {traffic} must go to an allowed endpoint ({})",
                        p.name,
                        p.action.as_str()
                    ),
                    full_description: format!(
                        "HostingPolicy {} governs {traffic}: every endpoint a governed workload's clients would use must be an allowed host ({}), over HTTPS, and readable from the manifest.{placement} Action: {}.",
                        p.name,
                        p.allowed_brief(),
                        p.action.as_str()
                    ),
                    allowed_hosts: p
                        .allowed_hosts
                        .iter()
                        .map(|h| h.as_str().to_string())
                        .collect(),
                    fix: p.endpoint_hint("", None).1,
                    provider: p.provider.clone(),
                    action: p.action,
                }
            })
            .collect();
        Report {
            policies,
            ..Default::default()
        }
    }

    /// Adds the policies of a set as rules, those not already listed by name.
    pub fn add_rules(&mut self, policies: &PolicySet) {
        for rule in Report::new(policies).policies {
            if !self.policies.iter().any(|r| r.name == rule.name) {
                self.policies.push(rule);
            }
        }
    }

    /// Adds the decision on one document.
    pub fn push(&mut self, document: &Document, decision: Decision) {
        self.push_entry(Entry::new(document, decision));
    }

    /// Adds an entry made with [`Entry::new`].
    pub fn push_entry(&mut self, entry: Entry) {
        self.summary.count(entry.verdict);
        self.results.push(entry);
    }

    /// Whether any document is denied.
    pub fn denied(&self) -> bool {
        self.summary.denied > 0
    }

    /// Renders the report in a format.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => text::render(self),
            Format::Json => json::render(self),
            Format::Sarif => sarif::render(self),
            Format::Junit => junit::render(self),
            Format::Policyreport => policyreport::render(self, ReportApi::default()),
        }
    }
}

impl Entry {
    /// The entry of one document's decision, with the line of every violation and warning.
    pub fn new(document: &Document, decision: Decision) -> Self {
        let own = |s: Option<&str>| s.map(str::to_string);
        let violations = decision
            .violations
            .into_iter()
            .map(|v| ReportViolation {
                line: document.line_of(&v.path),
                policy: v.policy,
                action: v.action,
                rule: v.rule,
                path: v.path,
                message: v.message,
            })
            .collect();
        let warning_lines = decision
            .warnings
            .iter()
            .map(|w| {
                if w.path.is_empty() {
                    document.line
                } else {
                    document.line_of(&w.path)
                }
            })
            .collect();
        let exemptions = decision
            .exemptions
            .into_iter()
            .map(|e| ReportExemption {
                line: if e.path.is_empty() {
                    document.line
                } else {
                    document.line_of(&e.path)
                },
                policy: e.policy,
                action: e.action,
                path: e.path,
                exempted_by: e.exempted_by,
                message: e.message,
            })
            .collect();
        Entry {
            source: document.source.clone(),
            document: document.index,
            line: document.line,
            api_version: own(document.api_version()),
            kind: own(document.kind()),
            namespace: own(document.namespace()),
            name: own(document.name()),
            verdict: decision.verdict,
            skipped_reason: decision.skipped,
            findings: decision.findings,
            violations,
            warning_paths: decision.warnings.iter().map(|w| w.path.clone()).collect(),
            warnings: decision.warnings.into_iter().map(|w| w.message).collect(),
            warning_lines,
            exemptions,
            governed_by: decision.governed_by,
            rendered_from: document.rendered_from.clone(),
        }
    }

    /// `file.yaml#0`.
    pub fn location(&self) -> String {
        format!("{}#{}", self.source, self.document)
    }

    /// `namespace/name`, `name`, or None when the object has no name.
    pub fn object_name(&self) -> Option<String> {
        let name = self.name.as_deref()?;
        Some(match &self.namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        })
    }

    /// `Kind/namespace/name` (or fewer parts), or None for a document that is not an object.
    pub fn qualified_name(&self) -> Option<String> {
        let kind = self.kind.as_deref()?;
        Some(match self.object_name() {
            Some(name) => format!("{kind}/{name}"),
            None => kind.to_string(),
        })
    }

    /// The warnings that are not already the message of a Warn violation or of an exemption,
    /// with their lines.
    pub fn extra_warnings(&self) -> impl Iterator<Item = (&str, usize)> {
        self.extra_warnings_at().map(|(w, l, _)| (w, l))
    }

    /// [`Entry::extra_warnings`] with the field path of each.
    pub fn extra_warnings_at(&self) -> impl Iterator<Item = (&str, usize, &str)> {
        self.warnings
            .iter()
            .zip(&self.warning_lines)
            .zip(&self.warning_paths)
            .filter(|((w, _), _)| {
                !self
                    .violations
                    .iter()
                    .any(|v| v.action == Action::Warn && &v.message == *w)
                    && !self.exemptions.iter().any(|e| &e.message == *w)
            })
            .map(|((w, l), p)| (w.as_str(), *l, p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_str;
    use crate::policy::{Operation, Request, evaluate};
    use crate::snapshot::Snapshot;
    use pretty_assertions::assert_eq;

    const INPUT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: chat
  namespace: team-a
spec:
  selector: {matchLabels: {app: chat}}
  template:
    metadata: {labels: {app: chat}}
    spec:
      containers:
        - name: app
          image: example/chat
          env:
            - name: OPENAI_API_KEY
              valueFrom: {secretKeyRef: {name: openai, key: key}}
---
replicaCount: 2
---
apiVersion: v1
kind: Service
metadata: {name: chat}
";

    /// A report over `INPUT`, evaluated as `check` does (default policy, unknown cluster).
    pub(crate) fn sample() -> Report {
        let policies = PolicySet::builtin();
        let snapshot = Snapshot::offline(Default::default());
        let mut report = Report::new(&policies);
        let docs = match parse_str("deploy/chat.yaml", INPUT) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        for doc in &docs {
            let decision = if doc.kind().is_none() {
                Decision::skipped("not a Kubernetes object (no apiVersion/kind)")
            } else {
                let request = Request {
                    operation: Operation::Create,
                    object: Some((&doc.value).into()),
                    old_object: None,
                    namespace: doc.namespace(),
                };
                evaluate(&request, &policies, &snapshot)
            };
            report.push(doc, decision);
        }
        report
    }

    #[test]
    fn summary_counts_every_verdict() {
        let report = sample();
        assert_eq!(
            report.summary,
            Summary {
                documents: 3,
                allowed: 0,
                denied: 1,
                warned: 0,
                skipped: 2
            }
        );
        assert!(report.denied());
    }

    #[test]
    fn violations_carry_the_line_of_their_field() {
        let report = sample();
        let deny = &report.results[0];
        assert_eq!(
            deny.qualified_name().as_deref(),
            Some("Deployment/team-a/chat")
        );
        assert!(!deny.violations.is_empty());
        for v in &deny.violations {
            assert!(v.message.starts_with(&v.path), "{}", v.message);
        }
        assert_eq!(deny.violations[0].line, 15, "{:?}", deny.violations[0]);
    }

    #[test]
    fn every_format_renders() {
        let report = sample();
        for format in [
            Format::Text,
            Format::Json,
            Format::Sarif,
            Format::Junit,
            Format::Policyreport,
        ] {
            assert!(!report.render(format).is_empty(), "{format:?}");
        }
    }
}
