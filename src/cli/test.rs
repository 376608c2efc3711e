//! `hostguard test`: policy test suites, for the people who write policies (as `kyverno test` and
//! `gator verify` serve theirs).
//!
//! A suite file (`kind: PolicyTest`) names HostingPolicy files, resource files and, per
//! resource, the verdict it must get and optionally fragments its messages must contain. The
//! resources are judged exactly as `hostguard check --bundle --policy ...` judges them (same
//! scopes, same engine), so a suite proves what CI will say. Output is text or JUnit; exit 0
//! when every expectation holds, 1 on any mismatch, 2 when a suite cannot be read.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use quick_junit::{NonSuccessKind, Report as JunitReport, TestCase, TestCaseStatus, TestSuite};
use serde::Deserialize;

use super::check::{Failure, check_inputs};
use super::progress::Progress;
use super::report::{Entry, Report, ReportWriter};
use super::{EXIT_BAD_INPUT, EXIT_CLEAN, EXIT_DENIED};
use crate::api::ClusterProvider;
use crate::manifest::{self, Document};
use crate::policy::Verdict;
use crate::policy_files::load_policy_files;

/// The `apiVersion` and `kind` of a suite.
pub const SUITE_API_VERSION: &str = "cli.hostguard.dev/v1alpha1";
pub const SUITE_KIND: &str = "PolicyTest";

/// Arguments of `hostguard test`.
#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// A suite file, or a directory holding suites (read recursively: *.test.yaml, *.test.yml).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = TestFormat::Text)]
    pub output: TestFormat,
}

/// Output formats of `hostguard test`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    /// One line per expectation, failures with what was found instead.
    #[default]
    Text,
    /// JUnit XML: a test suite per suite file, a test case per expectation.
    Junit,
}

/// A suite file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Suite {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    /// HostingPolicy (and AIWorkload) files, relative to the suite file. Without any, the
    /// built-in default policy applies, as for `check`.
    #[serde(default)]
    policies: Vec<String>,
    /// Manifest files or directories, relative to the suite file; judged as one bundle.
    resources: Vec<String>,
    /// azure, aws, gcp, other or unknown (the default).
    #[serde(default)]
    cluster_provider: Option<String>,
    results: Vec<Expectation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
}

/// What one resource must get.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    /// `Kind/namespace/name`, or `Kind/name` for an object without a namespace.
    resource: String,
    verdict: ExpectedVerdict,
    /// Fragments each of which some violation, warning or skip reason must contain.
    #[serde(default)]
    messages: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExpectedVerdict {
    Allow,
    Deny,
    Warn,
    Skipped,
}

impl ExpectedVerdict {
    fn matches(self, verdict: Verdict) -> bool {
        matches!(
            (self, verdict),
            (ExpectedVerdict::Allow, Verdict::Allow)
                | (ExpectedVerdict::Deny, Verdict::Deny)
                | (ExpectedVerdict::Warn, Verdict::Warn)
                | (ExpectedVerdict::Skipped, Verdict::Skipped)
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            ExpectedVerdict::Allow => "allow",
            ExpectedVerdict::Deny => "deny",
            ExpectedVerdict::Warn => "warn",
            ExpectedVerdict::Skipped => "skipped",
        }
    }
}

/// The outcome of one expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub resource: String,
    pub expected: &'static str,
    /// None when it holds; else what was found instead.
    pub failure: Option<String>,
}

/// The outcome of one suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteResult {
    pub file: String,
    pub name: String,
    pub cases: Vec<CaseResult>,
}

/// Runs `hostguard test` and returns its exit code.
pub fn run(args: TestArgs) -> u8 {
    let results = match run_suites(&args.paths) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("hostguard test: {message}");
            return EXIT_BAD_INPUT;
        }
    };
    let out = match args.output {
        TestFormat::Text => render_text(&results),
        TestFormat::Junit => render_junit(&results),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("hostguard test: cannot write the results: {e}");
        return EXIT_BAD_INPUT;
    }
    if results
        .iter()
        .flat_map(|s| &s.cases)
        .any(|c| c.failure.is_some())
    {
        EXIT_DENIED
    } else {
        EXIT_CLEAN
    }
}

/// The suite files of the paths: files given explicitly, and `*.test.yaml`/`*.test.yml` under
/// directories, in name order.
fn suite_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let inputs = manifest::list_inputs(std::slice::from_ref(path), false)
                .map_err(|e| e.to_string())?;
            let before = out.len();
            out.extend(inputs.files.into_iter().filter_map(|f| f.path).filter(|p| {
                let name = p.to_string_lossy().to_ascii_lowercase();
                name.ends_with(".test.yaml") || name.ends_with(".test.yml")
            }));
            if out.len() == before {
                return Err(format!(
                    "{}: the directory holds no *.test.yaml suite",
                    path.display()
                ));
            }
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Runs every suite of the paths.
pub fn run_suites(paths: &[PathBuf]) -> Result<Vec<SuiteResult>, String> {
    let mut results = Vec::new();
    for file in suite_files(paths)? {
        let loaded =
            manifest::load_paths(std::slice::from_ref(&file)).map_err(|e| e.to_string())?;
        let mut suites = 0;
        for doc in loaded.documents.iter().filter(|d| !d.is_empty()) {
            suites += 1;
            let suite = read_suite(doc)?;
            results.push(run_suite(&file, doc, suite)?);
        }
        if suites == 0 {
            return Err(format!("{}: holds no {SUITE_KIND}", file.display()));
        }
    }
    Ok(results)
}

fn read_suite(doc: &Document) -> Result<Suite, String> {
    if doc.api_version() != Some(SUITE_API_VERSION) || doc.kind() != Some(SUITE_KIND) {
        return Err(format!(
            "{}:{}: expected apiVersion {SUITE_API_VERSION} and kind {SUITE_KIND}",
            doc.source, doc.line
        ));
    }
    serde_path_to_error::deserialize::<_, Suite>(&doc.value).map_err(|e| {
        let path = e.path().to_string();
        format!(
            "{}:{}: {SUITE_KIND} {path}: {}",
            doc.source,
            doc.line_of(&path),
            e.inner()
        )
    })
}

fn run_suite(file: &Path, doc: &Document, suite: Suite) -> Result<SuiteResult, String> {
    let base = file.parent().unwrap_or(Path::new(""));
    let at = |what: &str, e: String| format!("{}:{}: {what}: {e}", doc.source, doc.line);
    let rel = |p: &String| base.join(p);
    let provider: ClusterProvider = match &suite.cluster_provider {
        Some(p) => p
            .parse()
            .map_err(|e: String| format!("{}: clusterProvider: {e}", doc.source))?,
        None => ClusterProvider::Unknown,
    };
    if suite.resources.is_empty() {
        return Err(format!(
            "{}:{}: resources: none given",
            doc.source, doc.line
        ));
    }
    let policies: Vec<PathBuf> = suite.policies.iter().map(rel).collect();
    let files = load_policy_files(&policies).map_err(|e| at("policies", e))?;
    let resources: Vec<PathBuf> = suite.resources.iter().map(rel).collect();
    let inputs =
        manifest::list_inputs(&resources, true).map_err(|e| at("resources", e.to_string()))?;
    let mut writer = ReportWriter::holding(std::io::sink());
    let sets = check_inputs(
        &inputs,
        files,
        provider,
        &mut writer,
        &mut Progress::new(false),
    )
    .map_err(|e| match e {
        Failure::Input(e) => at("resources", e),
        Failure::Output(e) => at("resources", e.to_string()),
    })?;
    let report = writer.into_report(sets.iter().map(|s| s.as_ref()));
    let mut cases = Vec::new();
    for expectation in &suite.results {
        cases.push(judge_case(&report, expectation));
    }
    Ok(SuiteResult {
        file: file.display().to_string(),
        name: suite
            .metadata
            .name
            .unwrap_or_else(|| file.display().to_string()),
        cases,
    })
}

fn judge_case(report: &Report, expectation: &Expectation) -> CaseResult {
    let matching: Vec<&Entry> = report
        .results
        .iter()
        .filter(|e| e.qualified_name().as_deref() == Some(expectation.resource.as_str()))
        .collect();
    let failure = match matching.as_slice() {
        [] => Some("no such resource among the resources of the suite".to_string()),
        [entry] => mismatch(entry, expectation),
        many => Some(format!(
            "{} documents are {}: {}",
            many.len(),
            expectation.resource,
            many.iter()
                .map(|e| e.location())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    CaseResult {
        resource: expectation.resource.clone(),
        expected: expectation.verdict.as_str(),
        failure,
    }
}

/// What differs between an entry and what it must be, if anything.
fn mismatch(entry: &Entry, expectation: &Expectation) -> Option<String> {
    let messages: Vec<&str> = entry
        .violations
        .iter()
        .map(|v| v.message.as_str())
        .chain(entry.warnings.iter().map(String::as_str))
        .chain(entry.skipped_reason.as_deref())
        .collect();
    let mut problems = Vec::new();
    if !expectation.verdict.matches(entry.verdict) {
        problems.push(format!("got {}", entry.verdict.as_str()));
    }
    for fragment in &expectation.messages {
        if !messages.iter().any(|m| m.contains(fragment.as_str())) {
            problems.push(format!("no message contains {fragment:?}"));
        }
    }
    if problems.is_empty() {
        return None;
    }
    let mut out = problems.join("; ");
    for m in messages {
        out.push_str("\n  ");
        out.push_str(m);
    }
    Some(out)
}

fn render_text(results: &[SuiteResult]) -> String {
    let mut out = String::new();
    let (mut passed, mut failed) = (0, 0);
    for suite in results {
        out.push_str(&format!("{} ({})\n", suite.name, suite.file));
        for case in &suite.cases {
            match &case.failure {
                None => {
                    passed += 1;
                    out.push_str(&format!("  PASS {}: {}\n", case.resource, case.expected));
                }
                Some(why) => {
                    failed += 1;
                    out.push_str(&format!(
                        "  FAIL {}: expected {}, {}\n",
                        case.resource,
                        case.expected,
                        why.replace('\n', "\n    ")
                    ));
                }
            }
        }
    }
    out.push_str(&format!(
        "{} test{}: {passed} passed, {failed} failed\n",
        passed + failed,
        if passed + failed == 1 { "" } else { "s" }
    ));
    out
}

fn render_junit(results: &[SuiteResult]) -> String {
    let mut junit = JunitReport::new("hostguard test");
    for suite in results {
        let mut ts = TestSuite::new(suite.name.as_str());
        for case in &suite.cases {
            let status = match &case.failure {
                None => TestCaseStatus::success(),
                Some(why) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(format!("expected {}, {}", case.expected, why))
                        .set_type("verdict mismatch");
                    s
                }
            };
            let mut tc = TestCase::new(case.resource.as_str(), status);
            tc.set_classname(suite.file.as_str());
            ts.add_test_case(tc);
        }
        junit.add_test_suite(ts);
    }
    super::report::junit_xml(&junit)
}
