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

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The HostingPolicy that was broken (or `hostguard` for a malformed hostguard resource).
    pub policy: String,
    /// What the policy does about it.
    pub action: Action,
    /// Field path of the offending field.
    pub path: String,
    /// The full message, field path first, offending value quoted, what is allowed instead.
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
    /// Messages for the client: Warn violations, warn dispositions, notes.
    pub warnings: Vec<String>,
    pub findings: Vec<Finding>,
    /// Names of the policies that govern the object (it falls under them), sorted.
    pub governed_by: Vec<String>,
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
