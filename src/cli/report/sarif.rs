//! SARIF 2.1.0 for code-scanning tools, GitHub code scanning first: one run, a rule per policy
//! (with the descriptions, help, `security` tag and `security-severity` GitHub reads), a result
//! per violation, exemption and warning, each with a stable fingerprint and pointing at the line
//! of its field, in a file named relative to the repository root (`%SRCROOT%`). A document
//! rendered by `helm template` points at the template its `# Source:` comment names, when that
//! template is found under the root, with the rendered line as a related location. Input that
//! cannot be read is a run whose invocation failed, with the reason as a tool execution
//! notification: never an empty file.
//!
//! Built from small serde structs rather than a SARIF crate: the subset written here is small and
//! stable, and the tests read it back with `serde-sarif` and validate it against the SARIF 2.1.0
//! JSON schema (`scripts/consumer-formats-test`).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

use super::{Entry, PolicyRule, Report};
use crate::api::Action;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
/// The chart's `home` (charts/hostguard/Chart.yaml; a test keeps the two equal).
pub const INFORMATION_URI: &str = "https://github.com/your-org/hostguard";
/// Rule of the warnings that are not a policy's violation (unknown cluster provider, in-cluster
/// endpoints, notes from detection).
pub const WARNING_RULE: &str = "hostguard-warning";
/// Rule of exemptions: a policy lifted from a workload by the AIWorkloads it trusts. A note, so
/// that a reviewer sees every exemption a change brings in.
pub const EXEMPTION_RULE: &str = "hostguard-exemption";
/// Rule of violations about hostguard's own resources (the engine names them `hostguard`).
const SELF_RULE: &str = "hostguard";
/// The base every relative `artifactLocation.uri` is resolved against.
const SRCROOT: &str = "%SRCROOT%";
/// GitHub rejects a rule whose `shortDescription` is longer than 1,024 characters.
const MAX_SHORT_DESCRIPTION: usize = 1000;
/// Name of hostguard's partial fingerprint; versioned, as SARIF 3.27.17 recommends.
const FINGERPRINT: &str = "hostguardFinding/v1";

#[derive(Serialize)]
struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<Run<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run<'a> {
    tool: Tool,
    invocations: Vec<Invocation>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    original_uri_base_ids: BTreeMap<&'static str, BaseUri>,
    results: Vec<SarifResult<'a>>,
}

#[derive(Serialize)]
struct BaseUri {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invocation {
    execution_successful: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_execution_notifications: Vec<Notification>,
}

#[derive(Serialize)]
struct Notification {
    level: &'static str,
    message: Text,
}

#[derive(Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    information_uri: &'static str,
    version: &'static str,
    rules: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    short_description: Text,
    full_description: Text,
    help: Help,
    default_configuration: Configuration,
    properties: RuleProperties,
}

#[derive(Serialize)]
struct Help {
    text: String,
    markdown: String,
}

#[derive(Serialize)]
struct RuleProperties {
    tags: Vec<String>,
    precision: &'static str,
    #[serde(rename = "security-severity")]
    security_severity: &'static str,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'a> {
    rule_id: &'a str,
    rule_index: usize,
    level: &'static str,
    message: Text,
    locations: Vec<Location>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_locations: Vec<Location>,
    partial_fingerprints: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<usize>,
    physical_location: PhysicalLocation,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logical_locations: Vec<LogicalLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Text>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    region: Region,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct ArtifactLocation {
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_base_id: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogicalLocation {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    fully_qualified_name: String,
    kind: &'static str,
}

fn level(action: Action) -> &'static str {
    match action {
        Action::Deny => "error",
        Action::Warn => "warning",
        Action::Audit => "note",
    }
}

/// GitHub's `security-severity` (a number from 0.0 to 10.0 as a string; over 7.0 is high, 4.0 to
/// 6.9 medium, under 4.0 low): a Deny policy's violation blocks a deployment and sends model
/// traffic where the organisation forbids it, high; a Warn one is medium; Audit, low.
fn security_severity(action: Action) -> &'static str {
    match action {
        Action::Deny => "8.0",
        Action::Warn => "5.0",
        Action::Audit => "2.0",
    }
}

fn bounded(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max - 3).collect();
    format!("{cut}...")
}

fn policy_rule(p: &PolicyRule) -> Rule {
    let hosts: Vec<String> = p.allowed_hosts.iter().map(|h| format!("`{h}`")).collect();
    let text = format!(
        "{}\n\nAllowed hosts: {}.\n\nTo fix a workload that breaks it: {}; or, when the workload does not make the calls the policy governs, declare its API class with an AIWorkload (your platform team controls which it trusts).",
        p.full_description,
        p.allowed_hosts.join(", "),
        p.fix,
    );
    let markdown = format!(
        "{}\n\n**Allowed hosts:** {}\n\n**To fix:** {}; or, when the workload does not make the calls the policy governs, declare its API class with an `AIWorkload` (your platform team controls which it trusts).",
        p.full_description,
        hosts.join(", "),
        p.fix,
    );
    Rule {
        id: p.name.clone(),
        short_description: Text {
            text: bounded(p.description.clone(), MAX_SHORT_DESCRIPTION),
        },
        full_description: Text {
            text: bounded(p.full_description.clone(), MAX_SHORT_DESCRIPTION),
        },
        help: Help { text, markdown },
        default_configuration: Configuration {
            level: level(p.action),
        },
        properties: RuleProperties {
            tags: vec![
                "security".into(),
                "kubernetes".into(),
                "ai".into(),
                p.provider.clone(),
            ],
            precision: "high",
            security_severity: security_severity(p.action),
        },
    }
}

fn fixed_rule(id: &str, short: &str, full: &str, help: &str, action: Action) -> Rule {
    Rule {
        id: id.to_string(),
        short_description: Text { text: short.into() },
        full_description: Text { text: full.into() },
        help: Help {
            text: help.into(),
            markdown: help.into(),
        },
        default_configuration: Configuration {
            level: level(action),
        },
        properties: RuleProperties {
            tags: vec!["security".into(), "kubernetes".into(), "ai".into()],
            precision: "high",
            security_severity: security_severity(action),
        },
    }
}

fn rules(report: &Report) -> Vec<Rule> {
    let mut rules: Vec<Rule> = report.policies.iter().map(policy_rule).collect();
    let mut extra = |rule: Rule| {
        if !rules.iter().any(|r| r.id == rule.id) {
            rules.push(rule);
        }
    };
    extra(fixed_rule(
        SELF_RULE,
        "hostguard's own resources (HostingPolicy, AIWorkload) must be valid, and workloads readable",
        "A HostingPolicy or AIWorkload that does not validate, or a workload hostguard cannot read, is refused at admission: a rule that cannot be read is never silently ignored.",
        "Fix the field the message names; `kubectl explain hostingpolicy.spec` and `kubectl explain aiworkload.spec` describe every field.",
        Action::Deny,
    ));
    extra(fixed_rule(
        WARNING_RULE,
        "A finding hostguard reports without blocking (for example an unchecked placement)",
        "Something hostguard could not check or that a policy only warns about: an in-cluster endpoint whose upstream is unknown, an unknown cluster provider, an annotation that cannot exempt.",
        "The message says what to set; an endpoint hostguard cannot see can be declared with an `AIWorkload` (`spec.endpoint`).",
        Action::Warn,
    ));
    extra(fixed_rule(
        EXEMPTION_RULE,
        "A workload that an AIWorkload exempts from a HostingPolicy; the message names both",
        "Every exemption in force is reported, so that a change that brings one in is reviewed: the AIWorkload named declares the workload outside the policy (for example stateful).",
        "Check that the AIWorkload describes the workload truthfully; remove it to put the workload back under the policy.",
        Action::Audit,
    ));
    // Violations may name a policy that is not in force (none today); give it a rule too.
    for entry in &report.results {
        for v in &entry.violations {
            extra(fixed_rule(
                &v.policy,
                &format!("HostingPolicy {}", v.policy),
                &format!("HostingPolicy {}", v.policy),
                "The message says how to fix it.",
                v.action,
            ));
        }
    }
    rules
}

pub(super) fn render(report: &Report) -> String {
    let locator = Locator::here();
    let rules = rules(report);
    let rule_index = |id: &str| rules.iter().position(|r| r.id == id).unwrap_or(0);

    let mut results = Vec::new();
    for entry in &report.results {
        for v in &entry.violations {
            results.push(result(
                &locator,
                entry,
                &v.policy,
                rule_index(&v.policy),
                level(v.action),
                &v.message,
                v.line,
                &v.path,
            ));
        }
        for e in &entry.exemptions {
            results.push(result(
                &locator,
                entry,
                EXEMPTION_RULE,
                rule_index(EXEMPTION_RULE),
                "note",
                &e.message,
                e.line,
                &e.path,
            ));
        }
        for (warning, line, path) in entry.extra_warnings_at() {
            results.push(result(
                &locator,
                entry,
                WARNING_RULE,
                rule_index(WARNING_RULE),
                "warning",
                warning,
                line,
                path,
            ));
        }
    }
    write(Run {
        tool: tool(rules),
        invocations: vec![Invocation {
            execution_successful: true,
            tool_execution_notifications: Vec::new(),
        }],
        original_uri_base_ids: locator.base_ids(),
        results,
    })
}

/// The SARIF of a check that stopped on input it cannot read: a run whose invocation failed,
/// the reason as an error notification, and no results.
pub(super) fn render_failure(report: &Report, reason: &str) -> String {
    write(Run {
        tool: tool(rules(report)),
        invocations: vec![Invocation {
            execution_successful: false,
            tool_execution_notifications: vec![Notification {
                level: "error",
                message: Text {
                    text: reason.to_string(),
                },
            }],
        }],
        original_uri_base_ids: BTreeMap::new(),
        results: Vec::new(),
    })
}

fn tool(rules: Vec<Rule>) -> Tool {
    Tool {
        driver: Driver {
            name: "hostguard",
            information_uri: INFORMATION_URI,
            version: env!("CARGO_PKG_VERSION"),
            rules,
        },
    }
}

fn write(run: Run<'_>) -> String {
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: vec![run],
    };
    let mut out = serde_json::to_string_pretty(&log).unwrap_or_else(|e| {
        serde_json::json!({"error": format!("the report could not be serialised: {e}")}).to_string()
    });
    out.push('\n');
    out
}

#[allow(clippy::too_many_arguments)]
fn result<'a>(
    locator: &Locator,
    entry: &Entry,
    rule_id: &'a str,
    rule_index: usize,
    level: &'static str,
    message: &str,
    line: usize,
    path: &str,
) -> SarifResult<'a> {
    let rendered = location(entry, locator.artifact(&entry.source), line);
    let template = entry
        .rendered_from
        .as_deref()
        .and_then(|source| locator.template(source));
    let (primary, related) = match template {
        Some((artifact, file)) => {
            let mut related = rendered;
            related.id = Some(0);
            related.message = Some(Text {
                text: format!("rendered by helm template: {}", entry.source),
            });
            (
                location(entry, artifact, template_line(&file, path)),
                vec![related],
            )
        }
        None => (rendered, Vec::new()),
    };
    // Stable across line moves and reorderings: the rule, the file, the object and the field.
    let key = format!(
        "{rule_id}\u{0}{}\u{0}{}\u{0}{path}",
        primary.physical_location.artifact_location.uri,
        entry.qualified_name().unwrap_or_default()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    SarifResult {
        rule_id,
        rule_index,
        level,
        message: Text {
            text: message.to_string(),
        },
        locations: vec![primary],
        related_locations: related,
        partial_fingerprints: BTreeMap::from([(FINGERPRINT, hex)]),
    }
}

fn location(entry: &Entry, artifact: ArtifactLocation, line: usize) -> Location {
    Location {
        id: None,
        physical_location: PhysicalLocation {
            artifact_location: artifact,
            region: Region {
                start_line: line.max(1),
            },
        },
        logical_locations: entry
            .qualified_name()
            .map(|fqn| LogicalLocation {
                name: entry.name.clone(),
                fully_qualified_name: fqn,
                kind: "resource",
            })
            .into_iter()
            .collect(),
        message: None,
    }
}

/// The line of a template where the field at `path` is most likely written: the first line
/// naming its last key (for `env[OPENAI_BASE_URL]`, `OPENAI_BASE_URL`), else 1. A template is
/// not YAML until rendered, so this is a search, not a parse.
fn template_line(file: &Path, path: &str) -> usize {
    let Ok(text) = std::fs::read_to_string(file) else {
        return 1;
    };
    let last = path.rsplit(['.', '[']).find_map(|s| {
        let s = s.trim_end_matches(']');
        (!s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
    });
    let Some(needle) = last else {
        return 1;
    };
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}

/// Names files for SARIF: relative to the repository root (the nearest directory above the
/// working directory holding `.git`, else the working directory), which is what GitHub maps to
/// repository files.
struct Locator {
    cwd: PathBuf,
    root: PathBuf,
    charts: OnceLock<Vec<(String, PathBuf)>>,
}

impl Locator {
    fn here() -> Self {
        let cwd = std::env::current_dir().unwrap_or_default();
        let cwd = cwd.canonicalize().unwrap_or(cwd);
        let root = cwd
            .ancestors()
            .find(|d| d.join(".git").exists())
            .unwrap_or(&cwd)
            .to_path_buf();
        Locator {
            cwd,
            root,
            charts: OnceLock::new(),
        }
    }

    fn base_ids(&self) -> BTreeMap<&'static str, BaseUri> {
        match url::Url::from_directory_path(&self.root) {
            Ok(uri) => BTreeMap::from([(SRCROOT, BaseUri { uri: uri.into() })]),
            Err(()) => BTreeMap::new(),
        }
    }

    /// `source` (a path as given, or `<stdin>`) as an artifact location.
    fn artifact(&self, source: &str) -> ArtifactLocation {
        if source == "<stdin>" {
            return ArtifactLocation {
                uri: to_uri(source),
                uri_base_id: None,
            };
        }
        let path = normalise(&self.cwd.join(source));
        let path = path.canonicalize().unwrap_or(path);
        self.relative(&path).unwrap_or_else(|| ArtifactLocation {
            uri: url::Url::from_file_path(&path)
                .map(String::from)
                .unwrap_or_else(|()| to_uri(source)),
            uri_base_id: None,
        })
    }

    fn relative(&self, path: &Path) -> Option<ArtifactLocation> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        Some(ArtifactLocation {
            uri: to_uri(&rel.join("/")),
            uri_base_id: Some(SRCROOT),
        })
    }

    /// The template file a `# Source: <chart>/<path>` comment names, when a chart of that name
    /// (a `Chart.yaml` with `name: <chart>`) is under the root and holds the file.
    fn template(&self, source: &str) -> Option<(ArtifactLocation, PathBuf)> {
        let (chart, rest) = source.split_once('/')?;
        if rest.split('/').any(|c| c == ".." || c.is_empty()) {
            return None;
        }
        let charts = self.charts.get_or_init(|| find_charts(&self.root));
        charts
            .iter()
            .filter(|(name, _)| name == chart)
            .map(|(_, dir)| dir.join(rest))
            .find(|file| file.is_file())
            .and_then(|file| Some((self.relative(&file)?, file)))
    }
}

/// Every `Chart.yaml` under `root` (a few levels down, not in hidden, build or dependency
/// directories) with the chart's name.
fn find_charts(root: &Path) -> Vec<(String, PathBuf)> {
    const DEPTH: usize = 6;
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(dir.join("Chart.yaml"))
            && let Some(name) = text.lines().find_map(|l| {
                l.strip_prefix("name:")
                    .map(|n| n.trim().trim_matches(['"', '\'']).to_string())
            })
        {
            out.push((name, dir.clone()));
        }
        if depth == DEPTH {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut subdirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
                !name.starts_with('.') && !matches!(name, "target" | "node_modules")
            })
            .collect();
        subdirs.sort();
        stack.extend(subdirs.into_iter().rev().map(|d| (d, depth + 1)));
    }
    out
}

/// `a/./b/../c` as `a/c`, without touching the file system (for paths that do not exist).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A relative path as a URI reference: `/` separators, and every byte outside the characters a
/// URI path may hold percent-encoded (`my dir/a.yaml` → `my%20dir/a.yaml`).
fn to_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.replace('\\', "/").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn sarif_reads_back_as_sarif_2_1_0() -> serde_json::Result<()> {
        let sarif: serde_sarif::sarif::Sarif = serde_json::from_str(&render(&sample()))?;
        let value = serde_json::to_value(&sarif)?;
        assert_eq!(value["version"], "2.1.0");
        let run = &value["runs"][0];
        assert_eq!(run["tool"]["driver"]["name"], "hostguard");
        let result = &run["results"][0];
        assert_eq!(result["level"], "error");
        assert_eq!(result["ruleId"], "openai-stateless-on-azure");
        let location = &result["locations"][0];
        assert_eq!(
            location["physicalLocation"]["artifactLocation"]["uri"],
            "deploy/chat.yaml"
        );
        assert_eq!(location["physicalLocation"]["region"]["startLine"], 15);
        assert_eq!(
            location["logicalLocations"][0]["fullyQualifiedName"],
            "Deployment/team-a/chat"
        );
        Ok(())
    }

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(to_uri("deploy/chat.yaml"), "deploy/chat.yaml");
        assert_eq!(to_uri("my dir\\a#1.yaml"), "my%20dir/a%231.yaml");
        assert_eq!(to_uri("<stdin>"), "%3Cstdin%3E");
        assert_eq!(to_uri("déjà.yaml"), "d%C3%A9j%C3%A0.yaml");
    }
}
