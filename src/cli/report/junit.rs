//! JUnit XML for CI dashboards: a test suite per source file, a test case per document; a denied
//! document fails, a skipped one is skipped, warnings go to the case's system-out.

use quick_junit::{NonSuccessKind, Report as JunitReport, TestCase, TestCaseStatus, TestSuite};

use super::{Entry, Report};
use crate::api::Action;
use crate::policy::Verdict;

pub(super) fn render(report: &Report) -> String {
    let mut junit = JunitReport::new("hostguard");
    let mut suites: Vec<TestSuite> = Vec::new();
    for entry in &report.results {
        let case = test_case(entry);
        match suites.iter_mut().find(|s| s.name.as_str() == entry.source) {
            Some(suite) => {
                suite.add_test_case(case);
            }
            None => {
                let mut suite = TestSuite::new(entry.source.as_str());
                suite.add_test_case(case);
                suites.push(suite);
            }
        }
    }
    junit.add_test_suites(suites);
    junit.to_string().unwrap_or_else(|e| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- the report could not be serialised: {} -->\n<testsuites/>\n",
            e.to_string().replace("--", "- -")
        )
    })
}

fn test_case(entry: &Entry) -> TestCase {
    let status = match entry.verdict {
        Verdict::Deny => {
            let denials: Vec<&str> = entry
                .violations
                .iter()
                .filter(|v| v.action == Action::Deny)
                .map(|v| v.message.as_str())
                .collect();
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(denials.join("; "))
                .set_type("policy violation")
                .set_description(denials.join("\n"));
            status
        }
        Verdict::Skipped => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(entry.skipped_reason.as_deref().unwrap_or("not evaluated"));
            status
        }
        Verdict::Allow | Verdict::Warn => TestCaseStatus::success(),
    };
    let name = entry.qualified_name().unwrap_or_else(|| entry.location());
    let mut case = TestCase::new(name, status);
    case.set_classname(entry.location());
    let mut out: Vec<String> = entry
        .warnings
        .iter()
        .map(|w| format!("warning: {w}"))
        .collect();
    out.extend(
        entry
            .violations
            .iter()
            .filter(|v| v.action == Action::Audit)
            .map(|v| format!("audit: {}", v.message)),
    );
    out.extend(
        entry
            .exemptions
            .iter()
            .filter(|e| !entry.warnings.contains(&e.message))
            .map(|e| format!("exempted: {}", e.message)),
    );
    if !out.is_empty() {
        case.set_system_out(out.join("\n"));
    }
    case
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn junit_reads_back() -> Result<(), quick_junit::DeserializeError> {
        let xml = render(&sample());
        let parsed = JunitReport::deserialize_from_str(&xml)?;
        assert_eq!(parsed.test_suites.len(), 1);
        let suite = &parsed.test_suites[0];
        assert_eq!(suite.name.as_str(), "deploy/chat.yaml");
        assert_eq!(suite.test_cases.len(), 3);
        assert_eq!(suite.test_cases[0].name.as_str(), "Deployment/team-a/chat");
        assert!(matches!(
            suite.test_cases[0].status,
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Failure,
                ..
            }
        ));
        assert!(matches!(
            suite.test_cases[1].status,
            TestCaseStatus::Skipped { .. }
        ));
        Ok(())
    }
}
