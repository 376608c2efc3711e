//! The default, human-readable format: one block per document, grouped per file in input order.
//!
//! Violation messages are printed verbatim (they start with the field path), so the CLI shows
//! the very strings the webhook returns.

use std::fmt::Write;

use super::{Entry, Report};
use crate::api::Action;
use crate::policy::Verdict;

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    for entry in &report.results {
        entry_block(&mut out, entry);
    }
    summary_line(&mut out, &report.summary);
    out
}

/// The last line: counts per verdict.
pub(super) fn summary_line(out: &mut String, s: &super::Summary) {
    let _ = writeln!(
        out,
        "{} document{}: {} allowed, {} denied, {} warned, {} skipped",
        s.documents,
        if s.documents == 1 { "" } else { "s" },
        s.allowed,
        s.denied,
        s.warned,
        s.skipped
    );
}

pub(super) fn entry_block(out: &mut String, entry: &Entry) {
    let mut head = entry.location();
    if let Some(kind) = &entry.kind {
        head.push(' ');
        head.push_str(kind);
    }
    if let Some(name) = entry.object_name() {
        head.push(' ');
        head.push_str(&name);
    }
    if entry.verdict == Verdict::Skipped {
        let reason = entry.skipped_reason.as_deref().unwrap_or("not evaluated");
        let _ = writeln!(out, "{head}: SKIPPED: {reason}");
        return;
    }
    let _ = writeln!(
        out,
        "{head}: {}",
        entry.verdict.as_str().to_ascii_uppercase()
    );
    for v in entry.violations.iter().filter(|v| v.action == Action::Deny) {
        let _ = writeln!(out, "  {}", v.message);
    }
    for (warning, _) in entry.extra_warnings() {
        let _ = writeln!(out, "  warning: {warning}");
    }
    for v in entry.violations.iter().filter(|v| v.action == Action::Warn) {
        let _ = writeln!(out, "  warning: {}", v.message);
    }
    for v in entry
        .violations
        .iter()
        .filter(|v| v.action == Action::Audit)
    {
        let _ = writeln!(out, "  audit: {}", v.message);
    }
    for e in &entry.exemptions {
        let _ = writeln!(out, "  exempted: {}", e.message);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    #[test]
    fn text_groups_documents_and_prints_messages_verbatim() {
        let report = sample();
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "deploy/chat.yaml#0 Deployment team-a/chat: DENY");
        let first = &report.results[0].violations[0].message;
        assert_eq!(lines[1], format!("  {first}"));
        assert!(text.contains(
            "deploy/chat.yaml#1: SKIPPED: not a Kubernetes object (no apiVersion/kind)\n"
        ));
        assert!(text.contains("deploy/chat.yaml#2 Service chat: SKIPPED: "));
        assert_eq!(
            lines.last().copied(),
            Some("3 documents: 0 allowed, 1 denied, 0 warned, 2 skipped")
        );
    }
}
