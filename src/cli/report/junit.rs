//! JUnit XML for CI dashboards: a test suite per source file, a test case per document; a denied
//! document fails, a skipped one is skipped, warnings go to the case's system-out.
//!
//! The XML is valid against the Jenkins xUnit plugin's JUnit schema (jenkinsci/xunit-plugin
//! `src/main/resources/org/jenkinsci/plugins/xunit/types/model/xsd/junit-10.xsd`), the strictest
//! of the common consumers: there `<testsuites>` takes only `name`, `time`, `tests`, `failures`,
//! `disabled` and `errors`, so the `skipped` count quick-junit writes on it is removed (each
//! `<testsuite>` keeps its own, which the schema allows).

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
    to_xml(&junit)
}

/// The report as XML the Jenkins xUnit schema accepts ([`jenkins_compatible`]); should
/// serialising fail, an empty `<testsuites/>` with the reason in a comment.
pub(crate) fn to_xml(junit: &JunitReport) -> String {
    junit.to_string().map(jenkins_compatible).unwrap_or_else(|e| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- the report could not be serialised: {} -->\n<testsuites/>\n",
            e.to_string().replace("--", "- -")
        )
    })
}

/// The JUnit of a check that stopped on input it cannot read: one suite, `input`, whose one case
/// is in error with `reason` (which names the file and line), so that a CI's report step shows
/// why instead of finding an empty file. The exit code (2) says it too.
pub(super) fn render_failure(reason: &str) -> String {
    let mut junit = JunitReport::new("hostguard");
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status
        .set_message(reason)
        .set_type("unreadable input")
        .set_description(reason);
    let mut suite = TestSuite::new("input");
    suite.add_test_case(TestCase::new("the input can be read", status));
    junit.add_test_suite(suite);
    to_xml(&junit)
}

/// `xml` without the `skipped` attribute of its `<testsuites>` element, which the Jenkins xUnit
/// schema does not allow (see the module documentation). Only that start tag is touched: it is
/// the first element quick-junit writes, after the XML declaration.
fn jenkins_compatible(xml: String) -> String {
    let Some(start) = xml.find("<testsuites") else {
        return xml;
    };
    let Some(len) = xml[start..].find('>') else {
        return xml;
    };
    let tag = &xml[start..start + len];
    let Some(at) = tag.find(" skipped=\"") else {
        return xml;
    };
    let value_start = at + " skipped=\"".len();
    let Some(value_len) = tag[value_start..].find('"') else {
        return xml;
    };
    let cut_from = start + at;
    let cut_to = start + value_start + value_len + 1;
    let mut out = String::with_capacity(xml.len());
    out.push_str(&xml[..cut_from]);
    out.push_str(&xml[cut_to..]);
    out
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

    /// The attributes and children junit-10.xsd (jenkinsci/xunit-plugin) allows on each element.
    fn allowed(element: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
        Some(match element {
            "testsuites" => (
                &["name", "time", "tests", "failures", "disabled", "errors"],
                &["testsuite"],
            ),
            "testsuite" => (
                &[
                    "name",
                    "tests",
                    "failures",
                    "errors",
                    "time",
                    "disabled",
                    "skipped",
                    "skips",
                    "timestamp",
                    "hostname",
                    "id",
                    "package",
                    "assertions",
                    "file",
                    "skip",
                    "log",
                    "url",
                ],
                &[
                    "testsuite",
                    "properties",
                    "testcase",
                    "system-out",
                    "system-err",
                ],
            ),
            "testcase" => (
                &[
                    "name",
                    "assertions",
                    "time",
                    "timestamp",
                    "classname",
                    "status",
                    "class",
                    "file",
                    "line",
                    "log",
                    "group",
                    "url",
                ],
                &[
                    "skipped",
                    "error",
                    "failure",
                    "rerunFailure",
                    "rerunError",
                    "system-out",
                    "system-err",
                ],
            ),
            "failure" | "error" | "skipped" => (&["type", "message"], &[]),
            "system-out" | "system-err" => (&[], &[]),
            _ => return None,
        })
    }

    /// Checks `xml` against the structure of junit-10.xsd: known elements only, each with the
    /// attributes and children the schema allows, and its required attributes (`tests` on a
    /// suite, `name` on a case).
    fn assert_jenkins_valid(xml: &str) {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<String> = Vec::new();
        loop {
            let event = reader.read_event();
            let (e, empty) = match event {
                Ok(Event::Start(e)) => (e, false),
                Ok(Event::Empty(e)) => (e, true),
                Ok(Event::End(_)) => {
                    stack.pop();
                    continue;
                }
                Ok(Event::Eof) => break,
                Ok(_) => continue,
                Err(e) => panic!("not XML: {e}"),
            };
            let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
            let Some((attrs, _)) = allowed(&name) else {
                panic!("<{name}> is not in junit-10.xsd");
            };
            match stack.last() {
                None => assert_eq!(name, "testsuites", "root element"),
                Some(parent) => {
                    let (_, children) = allowed(parent).unwrap_or((&[], &[]));
                    assert!(children.contains(&name.as_str()), "<{name}> in <{parent}>");
                }
            }
            let mut seen = Vec::new();
            for a in e.attributes() {
                let a = a.unwrap_or_else(|err| panic!("attribute of <{name}>: {err}"));
                let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                assert!(
                    attrs.contains(&key.as_str()),
                    "<{name} {key}=...> is not allowed"
                );
                seen.push(key);
            }
            let required: &[&str] = match name.as_str() {
                "testsuite" => &["tests"],
                "testcase" => &["name"],
                _ => &[],
            };
            for r in required {
                assert!(seen.iter().any(|s| s == r), "<{name}> without {r}");
            }
            if !empty {
                stack.push(name);
            }
        }
    }

    #[test]
    fn junit_is_valid_against_the_jenkins_xunit_schema() {
        let xml = render(&sample());
        assert!(xml.contains("<testsuites"), "{xml}");
        assert_jenkins_valid(&xml);
        // The skipped document is still counted where the schema allows it, on its suite.
        assert!(
            xml.contains("<testsuite name=\"deploy/chat.yaml\" tests=\"3\" skipped=\"2\""),
            "{xml}"
        );
    }

    #[test]
    fn only_the_testsuites_skipped_count_is_removed() {
        let xml = "<?xml version=\"1.0\"?>\n<testsuites name=\"h\" tests=\"2\" skipped=\"1\" failures=\"0\">\n<testsuite name=\"a\" tests=\"2\" skipped=\"1\"/></testsuites>";
        assert_eq!(
            jenkins_compatible(xml.to_string()),
            "<?xml version=\"1.0\"?>\n<testsuites name=\"h\" tests=\"2\" failures=\"0\">\n<testsuite name=\"a\" tests=\"2\" skipped=\"1\"/></testsuites>"
        );
    }

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
