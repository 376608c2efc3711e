//! `hostguard test` end to end: a suite that holds passes (exit 0), one that does not fails
//! with what was found instead (exit 1), in text and in JUnit read back by `quick-junit`, and a
//! suite that cannot be read is refused with its file and line (exit 2).

use std::error::Error;
use std::path::Path;

use assert_cmd::Command;
use pretty_assertions::assert_eq;
use quick_junit::{NonSuccessKind, TestCaseStatus};

type TestResult = Result<(), Box<dyn Error>>;

const POLICY: &str = "apiVersion: hostguard.dev/v1alpha1
kind: HostingPolicy
metadata: {name: azure-only}
spec:
  provider: openai
  apiClasses: [stateless]
  action: Deny
  endpoints:
    allowedHosts: ['*.openai.azure.com']
";

/// Calls the OpenAI API with the SDK's default base URL (no OPENAI_BASE_URL).
const DIRECT: &str = "apiVersion: v1
kind: Pod
metadata: {name: direct, namespace: ai}
spec:
  containers:
    - name: app
      image: example/chat
      env:
        - {name: OPENAI_API_KEY, valueFrom: {secretKeyRef: {name: openai, key: key}}}
";

fn suite(results: &str) -> String {
    format!(
        "apiVersion: cli.hostguard.dev/v1alpha1
kind: PolicyTest
metadata: {{name: azure-only}}
policies: [policy.yaml]
resources: [resources/]
clusterProvider: azure
results:
{results}"
    )
}

fn setup(dir: &Path, suite_text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("resources"))?;
    std::fs::write(dir.join("policy.yaml"), POLICY)?;
    std::fs::write(dir.join("resources/direct.yaml"), DIRECT)?;
    std::fs::write(dir.join("azure-only.test.yaml"), suite_text)
}

fn run(dir: &Path, args: &[&str]) -> Result<(i32, String, String), Box<dyn Error>> {
    let out = Command::cargo_bin("hostguard")?
        .current_dir(dir)
        .arg("test")
        .args(args)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

#[test]
fn a_suite_that_holds_passes() -> TestResult {
    let dir = tempfile::tempdir()?;
    setup(
        dir.path(),
        &suite(
            "  - resource: Pod/ai/direct\n    verdict: deny\n    messages: ['\"https://api.openai.com/v1\"']\n",
        ),
    )?;
    let (code, stdout, stderr) = run(dir.path(), &["."])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "azure-only (./azure-only.test.yaml)\n  PASS Pod/ai/direct: deny\n1 test: 1 passed, 0 failed\n"
    );
    Ok(())
}

#[test]
fn mismatches_fail_with_what_was_found() -> TestResult {
    let dir = tempfile::tempdir()?;
    setup(
        dir.path(),
        &suite(
            "  - resource: Pod/ai/direct\n    verdict: allow\n  - resource: Pod/ai/direct\n    verdict: deny\n    messages: [no-such-text]\n  - resource: Pod/ai/missing\n    verdict: allow\n",
        ),
    )?;
    let (code, stdout, _) = run(dir.path(), &["azure-only.test.yaml"])?;
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[1], "  FAIL Pod/ai/direct: expected allow, got deny");
    assert!(
        lines[2].contains("\"https://api.openai.com/v1\""),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  FAIL Pod/ai/direct: expected deny, no message contains \"no-such-text\"\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  FAIL Pod/ai/missing: expected allow, no such resource among the resources of the suite\n"),
        "{stdout}"
    );
    assert_eq!(lines.last().copied(), Some("3 tests: 0 passed, 3 failed"));

    let (code, xml, _) = run(dir.path(), &["-o", "junit", "."])?;
    assert_eq!(code, 1);
    let junit = quick_junit::Report::deserialize_from_str(&xml)?;
    let suite = &junit.test_suites[0];
    assert_eq!(suite.name.as_str(), "azure-only");
    assert_eq!(suite.test_cases.len(), 3);
    for case in &suite.test_cases {
        assert!(
            matches!(
                case.status,
                TestCaseStatus::NonSuccess {
                    kind: NonSuccessKind::Failure,
                    ..
                }
            ),
            "{case:?}"
        );
    }
    Ok(())
}

#[test]
fn unreadable_suites_name_file_and_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    setup(
        dir.path(),
        &suite("  - resource: Pod/ai/direct\n    verdict: maybe\n"),
    )?;
    let (code, stdout, stderr) = run(dir.path(), &["azure-only.test.yaml"])?;
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(
        stderr.starts_with("hostguard test: azure-only.test.yaml:9: PolicyTest results[0].verdict: unknown variant `maybe`"),
        "{stderr}"
    );
    std::fs::write(
        dir.path().join("azure-only.test.yaml"),
        "kind: Deployment\n",
    )?;
    let (code, _, stderr) = run(dir.path(), &["azure-only.test.yaml"])?;
    assert_eq!(code, 2);
    assert!(stderr.contains("azure-only.test.yaml:1: expected apiVersion cli.hostguard.dev/v1alpha1 and kind PolicyTest"), "{stderr}");
    Ok(())
}
