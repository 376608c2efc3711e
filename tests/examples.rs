//! The examples under `examples/` do what they say, through the built binary as a user runs it
//! (`hostguard check -f FILE -o json --cluster-provider azure`): every workload example gets the
//! verdict its first line announces (`# ALLOWED`, `# WARNED`, `# DENIED`; see
//! `examples/README.md`), the policy and AIWorkload examples are accepted by the engine, the
//! policy variants do what they say (Audit reports what the default denies, the API Management
//! policy admits its gateway), and the GitOps and CI files are no workloads. scripts/chart-test
//! checks the GitOps and CI files themselves (tests/chart/gitops.py).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use pretty_assertions::assert_eq;
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

/// The folders of `examples/` and how each is checked; a file anywhere else is an error.
const FOLDERS: &[&str] = &[
    // An application chart for the CI example; its rendering (tests/fixtures/check/rendered/)
    // maps back to its templates in SARIF (tests/check_cli.rs).
    "charts",
    "workloads",
    "policies",
    "policy-tests",
    "aiworkloads",
    "helm",
    "gitops",
    "ci",
];

/// The Audit-first variant of the default policy, and the default policy itself.
const AUDIT_POLICY: &str = "examples/policies/openai-stateless-on-azure-audit.yaml";
const DEFAULT_POLICY: &str = "examples/policies/openai-stateless-on-azure.yaml";
/// The policy that also admits one API Management gateway, and the workload that uses it.
const APIM_POLICY: &str = "examples/policies/openai-stateless-via-apim.yaml";
const APIM_WORKLOAD: &str = "examples/workloads/chat-through-apim-gateway.yaml";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The YAML files of `examples/DIR`, as paths relative to the package root, sorted.
fn examples(dir: &str) -> Result<Vec<String>, Box<dyn Error>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("examples").join(dir))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let name = path.file_name().ok_or("no file name")?.to_string_lossy();
            out.push(format!("examples/{dir}/{name}"));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "examples/{dir}/ has no example");
    Ok(out)
}

/// The verdict a workload example announces on its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Expected {
    Allowed,
    Warned,
    Denied,
}

impl Expected {
    fn of(file: &str) -> Result<Self, Box<dyn Error>> {
        let text = std::fs::read_to_string(root().join(file))?;
        let first = text.lines().next().unwrap_or("");
        [
            ("# ALLOWED", Expected::Allowed),
            ("# WARNED", Expected::Warned),
            ("# DENIED", Expected::Denied),
        ]
        .into_iter()
        .find(|(marker, _)| first.starts_with(marker))
        .map(|(_, expected)| expected)
        .ok_or_else(|| {
            format!(
                "{file}: the first line must start with # ALLOWED, # WARNED or # DENIED \
                 (examples/README.md), found {first:?}"
            )
            .into()
        })
    }

    fn verdict(self) -> &'static str {
        match self {
            Expected::Allowed => "allow",
            Expected::Warned => "warn",
            Expected::Denied => "deny",
        }
    }

    fn exit_code(self) -> i32 {
        match self {
            Expected::Allowed | Expected::Warned => 0,
            Expected::Denied => 1,
        }
    }
}

/// Runs `hostguard check -o json --cluster-provider PROVIDER ARGS` from the package root and
/// returns its exit code and report.
fn check(provider: &str, args: &[&str]) -> Result<(i32, Value), Box<dyn Error>> {
    let out = Command::cargo_bin("hostguard")?
        .current_dir(root())
        .env_remove("HOSTGUARD_CLUSTER_PROVIDER")
        .args(["check", "-o", "json", "--cluster-provider", provider])
        .args(args)
        .output()?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.is_empty(), "hostguard check {args:?}: {stderr}");
    let report = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("hostguard check {args:?} printed no JSON report: {e}"))?;
    Ok((out.status.code().unwrap_or(-1), report))
}

fn results(report: &Value) -> &[Value] {
    report["results"].as_array().map_or(&[], Vec::as_slice)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn is_hostguard_resource(result: &Value) -> bool {
    str_of(result, "apiVersion").starts_with("hostguard.dev/")
}

/// The results a workload example is about: documents with a pod template. hostguard's own
/// resources and skipped documents (ConfigMaps) only support them.
fn judged(report: &Value) -> Vec<&Value> {
    results(report)
        .iter()
        .filter(|r| !is_hostguard_resource(r) && str_of(r, "verdict") != "skipped")
        .collect()
}

fn describe(result: &Value) -> String {
    format!(
        "{}#{} {} {}",
        str_of(result, "source"),
        result["document"],
        str_of(result, "kind"),
        str_of(result, "name")
    )
}

#[test]
fn every_example_is_in_a_checked_folder() -> TestResult {
    for entry in std::fs::read_dir(root().join("examples"))? {
        let path = entry?.path();
        let name = path.file_name().ok_or("no file name")?.to_string_lossy();
        if path.is_dir() {
            assert!(
                FOLDERS.contains(&name.as_ref()),
                "examples/{name}/ is checked by no test; see examples/README.md"
            );
        } else {
            assert_eq!(name, "README.md", "examples/{name} belongs in a folder");
        }
    }
    Ok(())
}

#[test]
fn every_workload_example_declares_its_verdict_and_there_is_one_of_each() -> TestResult {
    let mut seen = Vec::new();
    for file in examples("workloads")? {
        seen.push(Expected::of(&file)?);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        vec![Expected::Allowed, Expected::Warned, Expected::Denied]
    );
    Ok(())
}

#[test]
fn every_workload_example_is_listed_in_the_examples_readme() -> TestResult {
    let readme = std::fs::read_to_string(root().join("examples/README.md"))?;
    for file in examples("workloads")? {
        let rel = file.trim_start_matches("examples/");
        assert!(
            readme.contains(&format!("`{rel}`")),
            "examples/README.md does not list {rel}"
        );
    }
    Ok(())
}

#[test]
fn workload_examples_get_the_verdict_they_declare() -> TestResult {
    for file in examples("workloads")? {
        let expected = Expected::of(&file)?;
        let (code, report) = check("azure", &["-f", &file])?;
        assert_eq!(code, expected.exit_code(), "{file}: exit code\n{report:#}");
        let workloads = judged(&report);
        assert!(!workloads.is_empty(), "{file} holds no workload");
        for w in workloads {
            let what = describe(w);
            assert_eq!(str_of(w, "verdict"), expected.verdict(), "{what}\n{w:#}");
            let violations = w["violations"].as_array().map_or(0, Vec::len);
            let warnings = w["warnings"].as_array().map_or(0, Vec::len);
            match expected {
                Expected::Denied => assert!(violations > 0, "{what}: denied without a violation"),
                Expected::Warned => {
                    assert!(
                        warnings > 0 && violations == 0,
                        "{what}: want warnings only"
                    )
                }
                Expected::Allowed => assert_eq!(violations, 0, "{what}"),
            }
            for v in w["violations"].as_array().into_iter().flatten() {
                // The message a user reads starts with the field path it is about.
                let path = str_of(v, "path");
                assert!(
                    !path.is_empty() && str_of(v, "message").starts_with(path),
                    "{what}: violation without its field path first: {v}"
                );
            }
        }
        // Supporting documents: hostguard's own resources are valid, the rest is not judged.
        for r in results(&report).iter().filter(|r| is_hostguard_resource(r)) {
            assert_eq!(str_of(r, "verdict"), "allow", "{}", describe(r));
        }
    }
    Ok(())
}

#[test]
fn the_workload_folder_at_once_gives_every_document_the_verdict_it_gets_alone() -> TestResult {
    let mut alone = BTreeMap::new();
    for file in examples("workloads")? {
        let (_, report) = check("azure", &["-f", &file])?;
        for r in results(&report) {
            alone.insert(describe(r), str_of(r, "verdict").to_string());
        }
    }
    // As in the README's first command: the examples must not leak into each other (a ConfigMap
    // or an AIWorkload of one example matching another's workload).
    let (code, report) = check("azure", &["-f", "examples/workloads/"])?;
    assert_eq!(code, 1, "something in examples/workloads/ is denied");
    let together: BTreeMap<String, String> = results(&report)
        .iter()
        .map(|r| (describe(r), str_of(r, "verdict").to_string()))
        .collect();
    assert_eq!(together, alone);
    Ok(())
}

#[test]
fn allowed_azure_examples_are_denied_on_a_cluster_that_is_not_azure() -> TestResult {
    let mut governed = 0;
    for file in examples("workloads")? {
        if Expected::of(&file)? != Expected::Allowed {
            continue;
        }
        let (_, on_azure) = check("azure", &["-f", &file])?;
        let (_, on_aws) = check("aws", &["-f", &file])?;
        for (a, b) in results(&on_azure).iter().zip(results(&on_aws)) {
            let stateless_to_azure =
                a["findings"].as_array().into_iter().flatten().any(|f| {
                    str_of(f, "apiClass") == "stateless" && str_of(f, "hosting") == "azure"
                });
            let want = if stateless_to_azure { "deny" } else { "allow" };
            if !is_hostguard_resource(a) && str_of(a, "verdict") != "skipped" {
                assert_eq!(str_of(b, "verdict"), want, "{} on aws\n{b:#}", describe(b));
                governed += usize::from(stateless_to_azure);
            }
        }
    }
    assert!(
        governed > 0,
        "no allowed example sends stateless traffic to Azure"
    );
    Ok(())
}

/// Checks that every file of `examples/DIR` holds only documents of `kind`, which the engine
/// accepts.
fn accepted(dir: &str, kind: &str) -> TestResult {
    for file in examples(dir)? {
        let (code, report) = check("azure", &["-f", &file])?;
        assert_eq!(code, 0, "{file}\n{report:#}");
        assert!(!results(&report).is_empty(), "{file} is empty");
        for r in results(&report) {
            assert_eq!(str_of(r, "kind"), kind, "{}", describe(r));
            assert_eq!(str_of(r, "verdict"), "allow", "{}\n{r:#}", describe(r));
        }
    }
    Ok(())
}

#[test]
fn policy_examples_are_accepted() -> TestResult {
    accepted("policies", "HostingPolicy")
}

#[test]
fn aiworkload_examples_are_accepted() -> TestResult {
    accepted("aiworkloads", "AIWorkload")
}

#[test]
fn policy_examples_load_as_policy_files() -> TestResult {
    // Each policy file loads and compiles as a `--policy` file (a bad one would exit 2).
    let mut files: Vec<_> = std::fs::read_dir(root().join("examples/policies"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    for file in files {
        let file = file.to_string_lossy().to_string();
        let (code, report) = check(
            "azure",
            &[
                "--policy",
                &file,
                "-f",
                "examples/workloads/chat-azure-openai.yaml",
            ],
        )?;
        assert!(code == 0 || code == 1, "{file}: exit {code}\n{report:#}");
        assert!(!judged(&report).is_empty(), "{file}");
    }
    // The folder as a whole holds the default and its Audit variant under one name: that is
    // ambiguous, and refused rather than one silently shadowing the other.
    let out = Command::cargo_bin("hostguard")?
        .current_dir(root())
        .args([
            "check",
            "--policy",
            "examples/policies/",
            "-f",
            "examples/workloads/chat-azure-openai.yaml",
        ])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("openai-stateless-on-azure") && stderr.contains("unique"),
        "{stderr}"
    );
    Ok(())
}

fn yaml(rel: &str) -> Result<Value, Box<dyn Error>> {
    Ok(serde_saphyr::from_str(&std::fs::read_to_string(
        root().join(rel),
    )?)?)
}

#[test]
fn the_audit_variant_is_the_default_policy_with_action_audit() -> TestResult {
    let mut audit = yaml(AUDIT_POLICY)?;
    let default = yaml(DEFAULT_POLICY)?;
    assert_eq!(audit["spec"]["action"], "Audit");
    assert_eq!(default["spec"]["action"], "Deny");
    // The same object: applying the default file later switches it to Deny in place.
    audit["spec"]["action"] = "Deny".into();
    assert_eq!(audit, default);
    Ok(())
}

#[test]
fn under_the_audit_variant_nothing_is_denied_and_every_denial_is_reported() -> TestResult {
    for file in examples("workloads")? {
        let expected = Expected::of(&file)?;
        let (code, report) = check("azure", &["--policy", AUDIT_POLICY, "-f", &file])?;
        assert_eq!(code, 0, "{file}: Audit blocks nothing\n{report:#}");
        for w in judged(&report) {
            let what = describe(w);
            assert_eq!(str_of(w, "verdict"), "allow", "{what}\n{w:#}");
            let violations = w["violations"].as_array().map_or(&[][..], Vec::as_slice);
            match expected {
                Expected::Denied => {
                    assert!(!violations.is_empty(), "{what}: the denial is not reported");
                    for v in violations {
                        assert_eq!(str_of(v, "action"), "Audit", "{what}: {v}");
                    }
                }
                Expected::Allowed => assert!(violations.is_empty(), "{what}: {w:#}"),
                // An in-cluster endpoint is a warning under Deny; an Audit policy never speaks
                // to the user, so nothing is asserted about it here.
                Expected::Warned => {}
            }
        }
    }
    Ok(())
}

#[test]
fn the_apim_policy_admits_its_gateway_which_the_default_policy_denies() -> TestResult {
    assert_eq!(Expected::of(APIM_WORKLOAD)?, Expected::Denied);
    let (code, report) = check("azure", &["--policy", APIM_POLICY, "-f", APIM_WORKLOAD])?;
    assert_eq!(code, 0, "{report:#}");
    for w in judged(&report) {
        assert_eq!(str_of(w, "verdict"), "allow", "{}\n{w:#}", describe(w));
        let azure = w["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| str_of(f, "hosting") == "azure");
        assert!(azure, "the gateway counts as an allowed host: {w:#}");
    }
    // Only the named gateway: another API Management instance is still denied.
    let other = std::fs::read_to_string(root().join(APIM_WORKLOAD))?.replace(
        "contoso-ai-gateway.azure-api.net",
        "someone-else.azure-api.net",
    );
    let out = Command::cargo_bin("hostguard")?
        .current_dir(root())
        .args(["check", "-o", "json", "--cluster-provider", "azure"])
        .args(["--policy", APIM_POLICY, "-f", "-"])
        .write_stdin(other)
        .output()?;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // On a cluster that is not Azure-backed the placement rule still applies.
    let (code, _) = check("aws", &["--policy", APIM_POLICY, "-f", APIM_WORKLOAD])?;
    assert_eq!(code, 1);
    Ok(())
}

#[test]
fn aiworkload_examples_cover_a_stateless_chat_and_a_stateful_assistants_service() -> TestResult {
    let mut classes = Vec::new();
    for file in examples("aiworkloads")? {
        let aiw = yaml(&file)?;
        classes.push((
            str_of(&aiw["spec"], "apiClass").to_string(),
            aiw["spec"]["apis"].clone(),
        ));
    }
    let has = |class: &str, api: &str| {
        classes.iter().any(|(c, apis)| {
            c == class && apis.as_array().is_some_and(|a| a.iter().any(|x| x == api))
        })
    };
    assert!(has("stateless", "chat.completions"), "{classes:?}");
    assert!(has("stateful", "assistants"), "{classes:?}");
    Ok(())
}

/// Every policy example has a suite (`policy-tests/NAME.test.yaml`) that loads it, and
/// `hostguard test` passes them all, as CI runs it.
#[test]
fn every_policy_example_has_a_passing_test_suite() -> TestResult {
    for policy in examples("policies")? {
        let name = Path::new(&policy)
            .file_stem()
            .ok_or("no file name")?
            .to_string_lossy()
            .to_string();
        let suite = format!("examples/policy-tests/{name}.test.yaml");
        let text = std::fs::read_to_string(root().join(&suite))
            .map_err(|e| format!("{policy} has no suite {suite}: {e}"))?;
        assert!(
            text.contains(&format!("../policies/{name}.yaml")),
            "{suite} does not load {policy}"
        );
    }
    let out = Command::cargo_bin("hostguard")?
        .current_dir(root())
        .args(["test", "examples/policy-tests/"])
        .output()?;
    let stdout = String::from_utf8(out.stdout)?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed\n"), "{stdout}");
    Ok(())
}

#[test]
fn gitops_and_ci_examples_are_not_workloads() -> TestResult {
    // A pipeline that runs `hostguard check -f examples/` (or a GitOps repository holding these
    // files) gets them listed as skipped, never as errors or denials. The sample objects of the
    // Argo CD health checks (resource_customizations/.../testdata/) are hostguard's own
    // resources, which hostguard validates: they are accepted.
    let (code, report) = check("azure", &["-f", "examples/gitops/", "-f", "examples/ci/"])?;
    assert_eq!(code, 0, "{report:#}");
    let kinds: Vec<&str> = results(&report).iter().map(|r| str_of(r, "kind")).collect();
    for kind in ["Application", "ConfigMap", "GitRepository", "HelmRelease"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    for r in results(&report) {
        let want = if is_hostguard_resource(r) {
            "allow"
        } else {
            "skipped"
        };
        assert_eq!(str_of(r, "verdict"), want, "{}", describe(r));
    }
    Ok(())
}

#[test]
fn helm_examples_are_values_files_not_manifests() -> TestResult {
    // They are rendered by scripts/chart-test; `check` lists them as skipped, never as errors.
    for file in examples("helm")? {
        let (code, report) = check("azure", &["-f", &file])?;
        assert_eq!(code, 0, "{file}");
        for r in results(&report) {
            assert_eq!(str_of(r, "verdict"), "skipped", "{}", describe(r));
        }
    }
    Ok(())
}

#[test]
fn examples_readme_names_only_files_that_exist() -> TestResult {
    let readme = std::fs::read_to_string(root().join("examples/README.md"))?;
    let named: Vec<PathBuf> = readme
        .split('`')
        .filter(|s| s.ends_with(".yaml") && s.contains('/') && !s.contains(' '))
        .map(|s| root().join("examples").join(s))
        .collect();
    assert!(!named.is_empty());
    for path in named {
        assert!(path.exists(), "examples/README.md names {}", path.display());
    }
    Ok(())
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn readme_links_point_at_files_and_headings_that_exist() -> TestResult {
    let readme = std::fs::read_to_string(root().join("README.md"))?;
    let anchors: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let mut checked = 0;
    for (_, rest) in readme
        .match_indices("](")
        .map(|(i, _)| readme.split_at(i + 2))
    {
        let target = rest.split(')').next().unwrap_or("");
        if target.starts_with("http") || target.contains(' ') {
            continue;
        }
        match target.strip_prefix('#') {
            Some(a) => assert!(anchors.iter().any(|h| h == a), "README.md links to #{a}"),
            None => assert!(
                root().join(target).exists(),
                "README.md links to {target}, which does not exist"
            ),
        }
        checked += 1;
    }
    assert!(checked > 10, "only {checked} links found");
    Ok(())
}
