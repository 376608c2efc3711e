//! SARIF 2.1.0 for code-scanning tools: one run, a rule per policy, a result per violation and
//! per warning, each pointing at the line of its field.
//!
//! Built from small serde structs rather than a SARIF crate: the subset written here is small and
//! stable, and the tests read it back with `serde-sarif` to prove it conforms.

use serde::Serialize;

use super::{Entry, Report};
use crate::api::Action;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFORMATION_URI: &str = "https://hostguard.dev/";
/// Rule of the warnings that are not a policy's violation (unknown cluster provider, in-cluster
/// endpoints, notes from detection).
pub const WARNING_RULE: &str = "hostguard-warning";
/// Rule of exemptions: a policy lifted from a workload by the AIWorkloads it trusts. A note, so
/// that a reviewer sees every exemption a change brings in.
pub const EXEMPTION_RULE: &str = "hostguard-exemption";
/// Rule of violations about hostguard's own resources (the engine names them `hostguard`).
const SELF_RULE: &str = "hostguard";

#[derive(Serialize)]
struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<Run<'a>>,
}

#[derive(Serialize)]
struct Run<'a> {
    tool: Tool,
    results: Vec<SarifResult<'a>>,
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
    default_configuration: Configuration,
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
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: PhysicalLocation,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logical_locations: Vec<LogicalLocation>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    region: Region,
}

#[derive(Serialize)]
struct ArtifactLocation {
    uri: String,
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

pub(super) fn render(report: &Report) -> String {
    let mut rules: Vec<Rule> = report
        .policies
        .iter()
        .map(|p| Rule {
            id: p.name.clone(),
            short_description: Text {
                text: p.description.clone(),
            },
            default_configuration: Configuration {
                level: level(p.action),
            },
        })
        .collect();
    let mut extra = |id: &str, text: &str, level: &'static str| {
        if !rules.iter().any(|r| r.id == id) {
            rules.push(Rule {
                id: id.to_string(),
                short_description: Text { text: text.into() },
                default_configuration: Configuration { level },
            });
        }
    };
    extra(
        SELF_RULE,
        "hostguard's own resources (HostingPolicy, AIWorkload) must be valid, and workloads readable",
        "error",
    );
    extra(
        WARNING_RULE,
        "A finding hostguard reports without blocking (for example an unchecked placement)",
        "warning",
    );
    extra(
        EXEMPTION_RULE,
        "A workload that an AIWorkload exempts from a HostingPolicy; the message names both",
        "note",
    );
    // Violations may name a policy that is not in force (none today); give it a rule too.
    for entry in &report.results {
        for v in &entry.violations {
            extra(
                &v.policy,
                &format!("HostingPolicy {}", v.policy),
                level(v.action),
            );
        }
    }
    let rule_index = |id: &str| rules.iter().position(|r| r.id == id).unwrap_or(0);

    let mut results = Vec::new();
    for entry in &report.results {
        for v in &entry.violations {
            results.push(SarifResult {
                rule_id: &v.policy,
                rule_index: rule_index(&v.policy),
                level: level(v.action),
                message: Text {
                    text: v.message.clone(),
                },
                locations: vec![location(entry, v.line)],
            });
        }
        for e in &entry.exemptions {
            results.push(SarifResult {
                rule_id: EXEMPTION_RULE,
                rule_index: rule_index(EXEMPTION_RULE),
                level: "note",
                message: Text {
                    text: e.message.clone(),
                },
                locations: vec![location(entry, e.line)],
            });
        }
        for (warning, line) in entry.extra_warnings() {
            results.push(SarifResult {
                rule_id: WARNING_RULE,
                rule_index: rule_index(WARNING_RULE),
                level: "warning",
                message: Text {
                    text: warning.to_string(),
                },
                locations: vec![location(entry, line)],
            });
        }
    }

    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: vec![Run {
            tool: Tool {
                driver: Driver {
                    name: "hostguard",
                    information_uri: INFORMATION_URI,
                    version: env!("CARGO_PKG_VERSION"),
                    rules,
                },
            },
            results,
        }],
    };
    let mut out = serde_json::to_string_pretty(&log).unwrap_or_else(|e| {
        serde_json::json!({"error": format!("the report could not be serialised: {e}")}).to_string()
    });
    out.push('\n');
    out
}

fn location(entry: &Entry, line: usize) -> Location {
    Location {
        physical_location: PhysicalLocation {
            artifact_location: ArtifactLocation {
                uri: to_uri(&entry.source),
            },
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
    }
}

/// The path as given, as a relative URI reference: `/` separators, and every byte outside the
/// characters a URI path may hold percent-encoded (`my dir/a.yaml` → `my%20dir/a.yaml`).
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
