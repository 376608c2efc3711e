//! The decision type: what the engine returns and every front translates.

use serde::Serialize;

use crate::api::Action;
use crate::endpoint::Hosting;

/// The overall outcome for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Evaluated, nothing to report.
    Allow,
    /// At least one violation of a `Deny` policy: the request is rejected.
    Deny,
    /// Admitted with warnings.
    Warn,
    /// Not evaluated (a kind or operation hostguard does not police).
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Warn => "warn",
            Verdict::Skipped => "skipped",
        }
    }
}

/// The names of the checks a policy makes, as reports (PolicyReports, SARIF) name them.
pub mod rule {
    /// An endpoint URL that is not one of the policy's allowed hosts.
    pub const ALLOWED_ENDPOINT: &str = "allowed-endpoint";
    /// An endpoint whose value cannot be read (a Secret, a ConfigMap hostguard cannot see).
    pub const UNRESOLVED_ENDPOINT: &str = "unresolved-endpoint";
    /// Traffic redirected where hostguard cannot follow it (proxies, hostAliases).
    pub const REDIRECTED_ENDPOINT: &str = "redirected-endpoint";
    /// Real clients would disagree about where the same env sends traffic.
    pub const AMBIGUOUS_ENDPOINT: &str = "ambiguous-endpoint";
    /// An in-cluster service, whose forwarding hostguard cannot see.
    pub const IN_CLUSTER_ENDPOINT: &str = "in-cluster-endpoint";
    /// The cluster runs on a provider the policy does not allow.
    pub const CLUSTER_PROVIDER: &str = "cluster-provider";
    /// A Pod on a mixed cluster that is not pinned to the required nodes.
    pub const NODE_AFFINITY: &str = "node-affinity";
    /// The object (or the input holding it) cannot be read or judged as it is.
    pub const VALID_RESOURCE: &str = "valid-resource";
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The HostingPolicy that was broken (or `hostguard` for a malformed hostguard resource).
    pub policy: String,
    /// What the policy does about it.
    pub action: Action,
    /// Which check of the policy failed, one of [`rule`]'s names (reports group by it).
    pub rule: &'static str,
    /// Field path of the offending field.
    pub path: String,
    /// The full message, field path first, offending value quoted, how to fix it.
    pub message: String,
    /// The same as a short warning, for when the policy's action is Warn (or the update does
    /// not bring the violation in).
    #[serde(skip)]
    pub warning: Warning,
}

pub use crate::warning::{MAX_WARNING_CHARS, Warning};

/// A policy that would govern a workload, lifted by the AIWorkloads it trusts: every exemption in
/// force is reported, so that it can be reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exemption {
    /// The HostingPolicy that does not apply because of the declarations.
    pub policy: String,
    /// That policy's action.
    pub action: Action,
    /// Field path of the exempted pod template (`spec.template`; empty for a Pod).
    pub path: String,
    /// The AIWorkloads that exempted it, as `namespace/name`.
    pub exempted_by: Vec<String>,
    /// The full message, for reports.
    pub message: String,
}

/// What detection found, for reports: one endpoint of one provider in one template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub provider: String,
    /// `stateless`, `stateful` or `mixed`.
    pub api_class: String,
    /// The URL, or a description of why it cannot be read.
    pub endpoint: String,
    pub hosting: Hosting,
    pub path: String,
}

/// The engine's answer for one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Every violation of every action (Deny, Warn and Audit), in a stable order.
    pub violations: Vec<Violation>,
    /// Findings for the client: Warn violations, warn dispositions, notes.
    pub warnings: Vec<Warning>,
    pub findings: Vec<Finding>,
    /// Names of the policies that govern the object (it falls under them), sorted.
    pub governed_by: Vec<String>,
    /// Policies that would govern the object but that trusted AIWorkloads lift, in policy order.
    pub exemptions: Vec<Exemption>,
    /// JSON Patch operations for the mutating webhook (Pods on CREATE only); empty otherwise.
    pub patch: Vec<json_patch::PatchOperation>,
    /// Why the object was not evaluated, when `verdict` is `Skipped`.
    pub skipped: Option<String>,
}

impl Decision {
    /// An object the engine does not evaluate.
    pub fn skipped(reason: impl Into<String>) -> Self {
        Decision {
            verdict: Verdict::Skipped,
            violations: Vec::new(),
            warnings: Vec::new(),
            findings: Vec::new(),
            governed_by: Vec::new(),
            exemptions: Vec::new(),
            patch: Vec::new(),
            skipped: Some(reason.into()),
        }
    }

    /// Whether the request is admitted.
    pub fn allowed(&self) -> bool {
        self.verdict != Verdict::Deny
    }

    /// The violations that block admission.
    pub fn denials(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.action == Action::Deny)
    }

    /// `policy:namespace/aiw+namespace/aiw2,...`: every exemption in force, for the audit
    /// annotation. None when there is none.
    pub fn exempted_by(&self) -> Option<String> {
        if self.exemptions.is_empty() {
            return None;
        }
        let mut parts: Vec<String> = Vec::new();
        for e in &self.exemptions {
            let part = format!("{}:{}", e.policy, e.exempted_by.join("+"));
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        Some(parts.join(","))
    }

    /// Derives the verdict from the violations and warnings gathered.
    pub(crate) fn settle(&mut self) {
        self.verdict = if self.denials().next().is_some() {
            Verdict::Deny
        } else if !self.warnings.is_empty() {
            Verdict::Warn
        } else {
            Verdict::Allow
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_warning_keeps_path_and_hint_and_shortens_what_is_wrong() {
        let w = Warning::new(
            "spec.template.spec.initContainers[12].env[OPENAI_BASE_URL]",
            "in-cluster service whose upstream hostguard cannot see at all",
            "declare it with an AIWorkload",
            "full",
        );
        let short = w.short();
        assert_eq!(short.chars().count(), MAX_WARNING_CHARS, "{short}");
        assert!(
            short.starts_with(
                "spec.template.spec.initContainers[12].env[OPENAI_BASE_URL]: in-cluster"
            )
        );
        assert!(
            short.ends_with("...; declare it with an AIWorkload"),
            "{short}"
        );
    }

    #[test]
    fn a_path_and_hint_too_long_together_are_cut_at_the_end() {
        let w = Warning::new("x".repeat(100), "bad", "y".repeat(30), "full");
        let short = w.short();
        assert_eq!(short.chars().count(), MAX_WARNING_CHARS);
        assert!(short.ends_with("..."));
    }

    #[test]
    fn a_warning_that_fits_is_whole() {
        let w = Warning::new(
            "spec",
            "cluster provider unknown",
            "pass --cluster-provider",
            "",
        );
        assert_eq!(
            w.short(),
            "spec: cluster provider unknown; pass --cluster-provider"
        );
    }
}
