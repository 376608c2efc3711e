//! `hostguard check` end to end: the built binary on the fixtures under `tests/fixtures/check/`,
//! its exit codes, and every output format read back by an independent parser.

use std::error::Error;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use pretty_assertions::assert_eq;
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/check")
        .join(rel)
}

/// Fixture paths as the tests pass them: relative to the package root, as a user would.
fn rel(rel: &str) -> String {
    format!("tests/fixtures/check/{rel}")
}

fn hostguard() -> Result<Command, Box<dyn Error>> {
    let mut cmd = Command::cargo_bin("hostguard")?;
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HOSTGUARD_CLUSTER_PROVIDER");
    Ok(cmd)
}

/// Runs `hostguard check ARGS`, returning (exit code, stdout, stderr).
fn check(args: &[&str]) -> Result<(i32, String, String), Box<dyn Error>> {
    let out = hostguard()?.arg("check").args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

fn json(args: &[&str]) -> Result<(i32, Value), Box<dyn Error>> {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = check(&all)?;
    assert!(stderr.is_empty(), "{stderr}");
    Ok((code, serde_json::from_str(&stdout)?))
}

/// 1-based line of the first line of a fixture containing `needle`.
fn line_in(rel: &str, needle: &str) -> Result<usize, Box<dyn Error>> {
    let text = std::fs::read_to_string(fixture(rel))?;
    let index = text
        .lines()
        .position(|l| l.contains(needle))
        .ok_or(format!("{needle:?} not in {rel}"))?;
    Ok(index + 1)
}

fn sorted_keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

#[test]
fn a_deployment_calling_openai_directly_is_denied_with_exit_1() -> TestResult {
    let file = rel("manifests/denied.yaml");
    let (code, stdout, stderr) = check(&["-f", &file])?;
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("{file}#0 Deployment team-a/chat: DENY"));
    assert!(
        lines[1].starts_with(
            "  spec.template.spec.containers[0].env[OPENAI_API_KEY]: \"https://api.openai.com/v1\""
        ),
        "{stdout}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("1 document: 0 allowed, 1 denied, 0 warned, 0 skipped")
    );
    Ok(())
}

#[test]
fn a_deployment_on_azure_openai_is_allowed_with_exit_0() -> TestResult {
    let (code, report) = json(&[
        "-f",
        &rel("manifests/allowed.yaml"),
        "--cluster-provider",
        "azure",
    ])?;
    assert_eq!(code, 0);
    let result = &report["results"][0];
    assert_eq!(result["verdict"], "allow");
    assert_eq!(result["findings"][0]["hosting"], "azure");
    assert_eq!(
        result["findings"][0]["endpoint"],
        "https://contoso.openai.azure.com/"
    );

    // Without a cluster provider, placement cannot be checked: a warning, still exit 0.
    let (code, report) = json(&["-f", &rel("manifests/allowed.yaml")])?;
    assert_eq!(code, 0);
    assert_eq!(report["results"][0]["verdict"], "warn");
    Ok(())
}

#[test]
fn an_endpoint_in_a_config_map_of_the_input_is_resolved() -> TestResult {
    let (code, report) = json(&[
        "-f",
        &rel("manifests/configmap.yaml"),
        "--cluster-provider",
        "azure",
    ])?;
    assert_eq!(code, 0);
    let results = report["results"].as_array().ok_or("results")?;
    assert_eq!(results[0]["kind"], "ConfigMap");
    assert_eq!(results[0]["verdict"], "skipped");
    assert_eq!(results[1]["verdict"], "allow");
    assert_eq!(results[1]["findings"][0]["hosting"], "azure");

    // The same Deployment without its ConfigMap: the endpoint cannot be verified.
    let text = std::fs::read_to_string(fixture("manifests/configmap.yaml"))?;
    let deployment = text.split("\n---\n").nth(1).ok_or("no second document")?;
    let out = hostguard()?
        .args([
            "check",
            "-o",
            "json",
            "-f",
            "-",
            "--cluster-provider",
            "azure",
        ])
        .write_stdin(deployment)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["results"][0]["findings"][0]["hosting"], "unresolved");
    Ok(())
}

#[test]
fn a_helm_values_file_is_skipped_not_an_error() -> TestResult {
    let file = rel("manifests/values.yaml");
    let (code, stdout, _) = check(&["-f", &file])?;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!(
            "{file}#0: SKIPPED: not a Kubernetes object (no apiVersion/kind)\n"
        )),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn a_missing_file_exits_2_naming_it() -> TestResult {
    let (code, stdout, stderr) = check(&["-f", "tests/fixtures/check/nope.yaml"])?;
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("tests/fixtures/check/nope.yaml: no such file or directory"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn malformed_yaml_exits_2_naming_file_and_line() -> TestResult {
    let file = rel("bad/malformed.yaml");
    let (code, stdout, stderr) = check(&["-f", &rel("manifests/denied.yaml"), "-f", &file])?;
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    let line = line_in("bad/malformed.yaml", "labels: app: broken")?;
    assert!(
        stderr.contains(&format!("{file}:{line}:14: mapping values are not allowed")),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn json_output_has_exactly_the_contract_keys() -> TestResult {
    let (code, report) = json(&["-f", &rel("manifests")])?;
    assert_eq!(code, 1);
    assert_eq!(sorted_keys(&report), vec!["results", "summary"]);
    assert_eq!(
        report["summary"],
        serde_json::json!({"documents": 5, "allowed": 0, "denied": 1, "warned": 2, "skipped": 2})
    );
    let results = report["results"].as_array().ok_or("results")?;
    let sources: Vec<&str> = results
        .iter()
        .filter_map(|r| r["source"].as_str())
        .collect();
    assert_eq!(
        sources,
        vec![
            "tests/fixtures/check/manifests/allowed.yaml",
            "tests/fixtures/check/manifests/configmap.yaml",
            "tests/fixtures/check/manifests/configmap.yaml",
            "tests/fixtures/check/manifests/denied.yaml",
            "tests/fixtures/check/manifests/values.yaml",
        ]
    );
    for result in results {
        for key in [
            "source",
            "document",
            "apiVersion",
            "kind",
            "namespace",
            "name",
            "verdict",
            "findings",
            "violations",
            "warnings",
        ] {
            assert!(result.get(key).is_some(), "{key} missing in {result}");
        }
    }
    let denied = &results[3];
    assert_eq!(
        (
            &denied["apiVersion"],
            &denied["kind"],
            &denied["namespace"],
            &denied["name"]
        ),
        (
            &"apps/v1".into(),
            &"Deployment".into(),
            &"team-a".into(),
            &"chat".into()
        )
    );
    assert_eq!(denied["document"], 0);
    assert_eq!(denied["verdict"], "deny");
    assert_eq!(
        sorted_keys(&denied["findings"][0]),
        vec!["apiClass", "endpoint", "hosting", "path", "provider"]
    );
    assert_eq!(denied["findings"][0]["provider"], "openai");
    assert_eq!(denied["findings"][0]["apiClass"], "stateless");
    assert_eq!(denied["findings"][0]["hosting"], "openai-direct");
    let violation = &denied["violations"][0];
    for key in ["policy", "path", "message"] {
        assert!(violation.get(key).is_some(), "{key} missing in {violation}");
    }
    assert_eq!(violation["policy"], "openai-stateless-on-azure");
    assert_eq!(
        violation["path"],
        "spec.template.spec.containers[0].env[OPENAI_API_KEY]"
    );
    assert!(denied["warnings"].is_array());
    let values = &results[4];
    assert_eq!(values["verdict"], "skipped");
    assert_eq!(
        (&values["apiVersion"], &values["namespace"]),
        (&Value::Null, &Value::Null)
    );
    Ok(())
}

#[test]
fn sarif_output_is_sarif_2_1_0_pointing_at_the_offending_line() -> TestResult {
    let file = rel("manifests/denied.yaml");
    let (code, stdout, _) = check(&[
        "-o",
        "sarif",
        "-f",
        &file,
        "-f",
        &rel("manifests/allowed.yaml"),
    ])?;
    assert_eq!(code, 1);
    let sarif: serde_sarif::sarif::Sarif = serde_json::from_str(&stdout)?;
    let value = serde_json::to_value(&sarif)?;
    assert_eq!(value["version"], "2.1.0");
    assert_eq!(
        value["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    let driver = &value["runs"][0]["tool"]["driver"];
    assert_eq!(driver["name"], "hostguard");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let rules: Vec<&str> = driver["rules"]
        .as_array()
        .ok_or("rules")?
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(rules.contains(&"openai-stateless-on-azure"), "{rules:?}");

    let results = value["runs"][0]["results"].as_array().ok_or("results")?;
    let errors: Vec<&Value> = results.iter().filter(|r| r["level"] == "error").collect();
    assert_eq!(errors.len(), 1, "{results:?}");
    let location = &errors[0]["locations"][0];
    assert_eq!(
        location["physicalLocation"]["artifactLocation"]["uri"],
        file.as_str()
    );
    assert_eq!(
        location["physicalLocation"]["region"]["startLine"],
        line_in("manifests/denied.yaml", "- name: OPENAI_API_KEY")?
    );
    assert_eq!(
        location["logicalLocations"][0]["fullyQualifiedName"],
        "Deployment/team-a/chat"
    );
    assert_eq!(errors[0]["ruleId"], "openai-stateless-on-azure");

    // Unknown cluster provider: each governed workload gets a placement warning on its spec.
    let warnings: Vec<&Value> = results.iter().filter(|r| r["level"] == "warning").collect();
    assert_eq!(warnings.len(), 2);
    for w in warnings {
        assert_eq!(w["ruleId"], "hostguard-warning");
        let line = &w["locations"][0]["physicalLocation"]["region"]["startLine"];
        assert!(line.as_u64().is_some_and(|l| l > 0), "{w}");
    }
    Ok(())
}

#[test]
fn junit_output_is_well_formed_xml_with_a_suite_per_file() -> TestResult {
    let (code, stdout, _) = check(&["-o", "junit", "-f", &rel("manifests")])?;
    assert_eq!(code, 1);
    let junit = quick_junit::Report::deserialize_from_str(&stdout)?;
    let suites: Vec<(&str, usize)> = junit
        .test_suites
        .iter()
        .map(|s| (s.name.as_str(), s.test_cases.len()))
        .collect();
    assert_eq!(
        suites,
        vec![
            ("tests/fixtures/check/manifests/allowed.yaml", 1),
            ("tests/fixtures/check/manifests/configmap.yaml", 2),
            ("tests/fixtures/check/manifests/denied.yaml", 1),
            ("tests/fixtures/check/manifests/values.yaml", 1),
        ]
    );
    let denied = &junit.test_suites[2].test_cases[0];
    assert_eq!(denied.name.as_str(), "Deployment/team-a/chat");
    match &denied.status {
        quick_junit::TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, quick_junit::NonSuccessKind::Failure);
            let message = message.as_ref().map(|m| m.as_str()).unwrap_or_default();
            assert!(
                message.starts_with("spec.template.spec.containers[0].env[OPENAI_API_KEY]: "),
                "{message}"
            );
        }
        other => return Err(format!("expected a failure, got {other:?}").into()),
    }
    assert!(matches!(
        junit.test_suites[3].test_cases[0].status,
        quick_junit::TestCaseStatus::Skipped { .. }
    ));
    Ok(())
}

#[test]
fn stdin_is_read_with_dash() -> TestResult {
    let text = std::fs::read_to_string(fixture("manifests/denied.yaml"))?;
    let out = hostguard()?
        .args(["check", "-f", "-"])
        .write_stdin(text)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout)?;
    assert!(
        stdout.starts_with("<stdin>#0 Deployment team-a/chat: DENY\n"),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn a_custom_policy_replaces_the_default() -> TestResult {
    let (code, report) = json(&[
        "-f",
        &rel("manifests/denied.yaml"),
        "--policy",
        &rel("policies/gateway.yaml"),
    ])?;
    // The custom policy only warns.
    assert_eq!(code, 0);
    let result = &report["results"][0];
    assert_eq!(result["verdict"], "warn");
    let policies: Vec<&str> = result["violations"]
        .as_array()
        .ok_or("violations")?
        .iter()
        .filter_map(|v| v["policy"].as_str())
        .collect();
    assert_eq!(policies, vec!["openai-via-gateway"]);
    assert_eq!(result["violations"][0]["action"], "Warn");
    assert!(
        result["violations"][0]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("(allowed: gateway.contoso.com)")),
        "{result}"
    );
    Ok(())
}

#[test]
fn an_invalid_policy_file_exits_2_with_the_field_path() -> TestResult {
    let file = rel("policies/invalid.yaml");
    let (code, stdout, stderr) = check(&["-f", &rel("manifests/denied.yaml"), "--policy", &file])?;
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    let line = line_in("policies/invalid.yaml", "action: Block")?;
    assert!(stderr.contains(&format!("{file}:{line}: ")), "{stderr}");
    assert!(stderr.contains("spec.action"), "{stderr}");
    Ok(())
}

#[test]
fn a_policy_in_the_input_that_cannot_compile_exits_2_with_the_field_path() -> TestResult {
    let policy = "apiVersion: hostguard.dev/v1alpha1\nkind: HostingPolicy\nmetadata: {name: p}\nspec:\n  provider: openai\n  apiClasses: [stateless]\n  endpoints:\n    allowedHosts: [\"https://gateway.contoso.com\"]\n";
    let out = hostguard()?
        .args(["check", "-f", "-"])
        .write_stdin(policy)
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("<stdin>:8: HostingPolicy \"p\": spec.endpoints.allowedHosts[0]: "),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn filename_is_required() -> TestResult {
    let (code, _, stderr) = check(&[])?;
    assert_eq!(code, 2);
    assert!(stderr.contains("--filename"), "{stderr}");
    Ok(())
}

/// The example Job that an AIWorkload declares stateful, checked in every format: each names the
/// policy lifted and the AIWorkload that lifted it.
#[test]
fn every_format_names_the_aiworkload_that_exempted_a_workload() -> TestResult {
    const FILE: &str = "examples/workloads/job-assistants-stateful.yaml";
    const WHO: &str = "team-b/batch-import";
    const POLICY: &str = "openai-stateless-on-azure";
    let base = ["-f", FILE, "--cluster-provider", "azure"];

    let (code, report) = json(&base)?;
    assert_eq!(code, 0);
    let job = report["results"]
        .as_array()
        .and_then(|r| r.iter().find(|e| e["kind"] == "Job"))
        .ok_or("no Job in the report")?;
    assert_eq!(job["verdict"], "allow");
    let e = &job["exemptions"][0];
    assert_eq!(e["policy"], POLICY);
    assert_eq!(e["exemptedBy"], serde_json::json!([WHO]));
    assert_eq!(e["path"], "spec.template");
    let template_line = std::fs::read_to_string(FILE)?
        .lines()
        .position(|l| l.trim() == "template:")
        .ok_or("no template line")?
        + 1;
    assert_eq!(e["line"], template_line);

    let mut args = vec!["-o", "text"];
    args.extend_from_slice(&base);
    let (_, text, _) = check(&args)?;
    assert!(
        text.lines().any(
            |l| l.starts_with("  exempted: spec.template: exempted from policy") && l.contains(WHO)
        ),
        "{text}"
    );

    let mut args = vec!["-o", "sarif"];
    args.extend_from_slice(&base);
    let (_, sarif, _) = check(&args)?;
    let _: serde_sarif::sarif::Sarif = serde_json::from_str(&sarif)?;
    let sarif: Value = serde_json::from_str(&sarif)?;
    let result = sarif["runs"][0]["results"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["ruleId"] == "hostguard-exemption"))
        .ok_or("no exemption result in SARIF")?;
    assert_eq!(result["level"], "note");
    let text = result["message"]["text"].as_str().unwrap_or_default();
    assert!(text.contains(POLICY) && text.contains(WHO), "{text}");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        template_line
    );

    let mut args = vec!["-o", "junit"];
    args.extend_from_slice(&base);
    let (_, xml, _) = check(&args)?;
    let junit = quick_junit::Report::deserialize_from_str(&xml)?;
    let case = junit.test_suites[0]
        .test_cases
        .iter()
        .find(|c| c.name.as_str().starts_with("Job/"))
        .ok_or("no Job case")?;
    let out = case
        .system_out
        .as_ref()
        .map(|o| o.to_string())
        .unwrap_or_default();
    assert!(out.contains("exempted: ") && out.contains(WHO), "{out}");
    Ok(())
}

/// What GitHub code scanning documents for SARIF it takes as security alerts ("SARIF support for
/// code scanning"): rules with `fullDescription`, `help` (text and markdown), a `security` tag
/// and a `security-severity`; `shortDescription` under 1,024 characters; results with
/// `partialFingerprints`; URIs relative to the repository root. (The SARIF 2.1.0 schema itself
/// is checked by scripts/consumer-formats-test.)
#[test]
fn sarif_carries_what_github_code_scanning_reads() -> TestResult {
    let (code, sarif, _) = check(&[
        "-o",
        "sarif",
        "-f",
        &rel("manifests/denied.yaml"),
        "--cluster-provider",
        "azure",
    ])?;
    assert_eq!(code, 1);
    let _: serde_sarif::sarif::Sarif = serde_json::from_str(&sarif)?;
    let sarif: Value = serde_json::from_str(&sarif)?;
    let run = &sarif["runs"][0];
    let chart = std::fs::read_to_string("charts/hostguard/Chart.yaml")?;
    let home = chart
        .lines()
        .find_map(|l| l.strip_prefix("home: "))
        .ok_or("Chart.yaml has no home")?;
    assert_eq!(run["tool"]["driver"]["informationUri"], home);
    for rule in run["tool"]["driver"]["rules"].as_array().ok_or("rules")? {
        let short = rule["shortDescription"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(!short.is_empty() && short.chars().count() < 1024, "{rule}");
        assert!(
            !short.contains("*.cognitiveservices"),
            "host list in {short}"
        );
        assert!(rule["fullDescription"]["text"].is_string(), "{rule}");
        assert!(rule["help"]["text"].is_string(), "{rule}");
        assert!(rule["help"]["markdown"].is_string(), "{rule}");
        let tags = rule["properties"]["tags"].as_array().ok_or("tags")?;
        assert!(tags.iter().any(|t| t == "security"), "{rule}");
        let severity: f64 = rule["properties"]["security-severity"]
            .as_str()
            .ok_or("security-severity")?
            .parse()?;
        assert!((0.0..=10.0).contains(&severity));
    }
    let results = run["results"].as_array().ok_or("results")?;
    assert!(!results.is_empty());
    for r in results {
        assert!(
            r["partialFingerprints"]
                .as_object()
                .is_some_and(|f| !f.is_empty())
        );
        let artifact = &r["locations"][0]["physicalLocation"]["artifactLocation"];
        assert_eq!(artifact["uriBaseId"], "%SRCROOT%");
        assert_eq!(
            artifact["uri"],
            "tests/fixtures/check/manifests/denied.yaml"
        );
    }
    let base = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
        .as_str()
        .unwrap_or_default();
    assert!(
        base.starts_with("file:///") && base.ends_with('/'),
        "{base}"
    );
    Ok(())
}

/// A document `helm template` rendered points at the template its `# Source:` comment names,
/// on the line of the field, with the rendered file as a related location.
#[test]
fn sarif_maps_helm_rendered_documents_to_their_templates() -> TestResult {
    let (code, sarif, _) = check(&[
        "-o",
        "sarif",
        "-f",
        &rel("rendered/chat-direct.yaml"),
        "--cluster-provider",
        "azure",
    ])?;
    assert_eq!(code, 1);
    let sarif: Value = serde_json::from_str(&sarif)?;
    let result = &sarif["runs"][0]["results"][0];
    let primary = &result["locations"][0]["physicalLocation"];
    assert_eq!(
        primary["artifactLocation"]["uri"],
        "examples/charts/chat/templates/deployment.yaml"
    );
    let template = std::fs::read_to_string("examples/charts/chat/templates/deployment.yaml")?;
    let line = template
        .lines()
        .position(|l| l.contains("name: OPENAI_BASE_URL"))
        .ok_or("no OPENAI_BASE_URL in the template")?
        + 1;
    assert_eq!(primary["region"]["startLine"], line);
    assert_eq!(
        result["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "tests/fixtures/check/rendered/chat-direct.yaml"
    );
    Ok(())
}

/// Bad input is a JUnit report whose one case is in error, naming the file and line, and exit 2:
/// a CI report step shows the reason instead of failing on an empty file.
#[test]
fn junit_of_bad_input_is_an_errored_case_naming_the_file() -> TestResult {
    let file = rel("bad/malformed.yaml");
    let (code, xml, _) = check(&[
        "-o",
        "junit",
        "-f",
        &rel("manifests/denied.yaml"),
        "-f",
        &file,
    ])?;
    assert_eq!(code, 2);
    let junit = quick_junit::Report::deserialize_from_str(&xml)?;
    assert_eq!(junit.test_suites.len(), 1, "{xml}");
    let cases = &junit.test_suites[0].test_cases;
    assert_eq!(cases.len(), 1, "{xml}");
    let line = line_in("bad/malformed.yaml", "labels: app: broken")?;
    match &cases[0].status {
        quick_junit::TestCaseStatus::NonSuccess { kind, message, .. } => {
            assert_eq!(*kind, quick_junit::NonSuccessKind::Error);
            let message = message.as_ref().map(|m| m.to_string()).unwrap_or_default();
            assert!(message.contains(&format!("{file}:{line}:14:")), "{message}");
        }
        other => panic!("want an error case, got {other:?}"),
    }
    Ok(())
}

/// Bad input is a SARIF run whose invocation failed, naming the file, and exit 2: an upload step
/// reports the reason instead of failing on an empty file.
#[test]
fn sarif_of_bad_input_is_a_failed_invocation() -> TestResult {
    let (code, sarif, _) = check(&["-o", "sarif", "-f", &rel("bad/malformed.yaml")])?;
    assert_eq!(code, 2);
    let _: serde_sarif::sarif::Sarif = serde_json::from_str(&sarif)?;
    let sarif: Value = serde_json::from_str(&sarif)?;
    let invocation = &sarif["runs"][0]["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], false);
    let note = &invocation["toolExecutionNotifications"][0];
    assert_eq!(note["level"], "error");
    assert!(
        note["message"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("malformed.yaml:")),
        "{note}"
    );
    assert_eq!(sarif["runs"][0]["results"], serde_json::json!([]));
    Ok(())
}
