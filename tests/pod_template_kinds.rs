//! Pod-template kinds the platform team adds (`--pod-template-kinds`, the chart's
//! `podTemplateKinds`): with the file, the real binary judges an object of such a kind like a
//! Deployment, in `check` and in `review` (the webhook's translation), naming the template's
//! field path; without it the kind is not a workload. A file with a bad entry stops every
//! command with exit 2 and the entry's field named.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hostguard");

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pod-template-kinds")
        .join(name)
        .display()
        .to_string()
}

fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    run_with_list(args, stdin, None)
}

/// The binary with `args`, `stdin`, and `list` (when given) in HOSTGUARD_POD_TEMPLATE_KINDS_JSON;
/// neither variable is inherited from the test's environment.
fn run_with_list(args: &[&str], stdin: Option<&str>, list: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("HOSTGUARD_POD_TEMPLATE_KINDS")
        .env_remove("HOSTGUARD_POD_TEMPLATE_KINDS_JSON");
    if let Some(list) = list {
        command.env("HOSTGUARD_POD_TEMPLATE_KINDS_JSON", list);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_judges_an_added_kind_at_its_template_paths() {
    let kinds = fixture("kinds.yaml");
    let object = fixture("inferencejob.yaml");
    let (code, out, err) = run(
        &[
            "--pod-template-kinds",
            &kinds,
            "check",
            "-o",
            "json",
            "-f",
            &object,
            "--cluster-provider",
            "azure",
        ],
        None,
    );
    assert_eq!(code, 1, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let result = &report["results"][0];
    assert_eq!(result["kind"], "InferenceJob");
    assert_eq!(result["verdict"], "deny");
    let fields: Vec<&str> = result["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["path"].as_str())
        .collect();
    // The second worker group's container; the launcher (Azure) and the first group (no key)
    // are not in violation.
    assert!(
        fields
            .iter()
            .all(|f| f.starts_with("spec.workerGroups[1].template.spec.containers[0]")),
        "{fields:?}"
    );
    assert!(!fields.is_empty(), "{out}");
}

#[test]
fn without_the_file_the_kind_is_not_a_workload() {
    let object = fixture("inferencejob.yaml");
    let (code, out, err) = run(
        &[
            "check",
            "-o",
            "json",
            "-f",
            &object,
            "--cluster-provider",
            "azure",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["results"][0]["verdict"], "skipped");
}

#[test]
fn review_denies_an_added_kind_as_the_webhook_would() {
    let kinds = fixture("kinds.yaml");
    let text = std::fs::read_to_string(fixture("inferencejob.yaml")).unwrap();
    let object: Value = serde_saphyr::from_str(&text).unwrap();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7d0c0f4e-0000-4000-8000-000000000001",
            "kind": {"group": "batch.example.com", "version": "v1", "kind": "InferenceJob"},
            "resource": {"group": "batch.example.com", "version": "v1", "resource": "inferencejobs"},
            "name": "nightly-scoring",
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "dev"},
            "object": object,
            "dryRun": false
        }
    });
    let (code, out, err) = run(
        &[
            "--pod-template-kinds",
            &kinds,
            "review",
            "--cluster-provider",
            "azure",
        ],
        Some(&review.to_string()),
    );
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{out}");
    let causes = answer["response"]["status"]["details"]["causes"]
        .as_array()
        .unwrap();
    assert!(
        causes.iter().any(|c| c["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("spec.workerGroups[1].template"))),
        "{out}"
    );
}

#[test]
fn a_bad_entry_stops_every_command_naming_the_field() {
    let kinds = fixture("bad-kinds.yaml");
    let object = fixture("inferencejob.yaml");
    for args in [
        vec![
            "--pod-template-kinds",
            kinds.as_str(),
            "check",
            "-f",
            object.as_str(),
        ],
        vec!["review", "--pod-template-kinds", kinds.as_str()],
    ] {
        let (code, out, err) = run(&args, Some("{}"));
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("bad-kinds.yaml") && err.contains("[0].templates[0].path"),
            "{args:?}: {err}"
        );
    }
}

/// How the chart passes the list: JSON in the environment, read as the file would be.
#[test]
fn the_list_given_as_json_in_the_environment_is_read_like_the_file() {
    let text = std::fs::read_to_string(fixture("kinds.yaml")).unwrap();
    let list: Value = serde_saphyr::from_str(&text).unwrap();
    let object = fixture("inferencejob.yaml");
    let (code, out, err) = run_with_list(
        &[
            "check",
            "-o",
            "json",
            "-f",
            &object,
            "--cluster-provider",
            "azure",
        ],
        None,
        Some(&list.to_string()),
    );
    assert_eq!(code, 1, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["results"][0]["verdict"], "deny");
    // A bad list in the environment stops the command, naming the variable and the field.
    let (code, _, err) = run_with_list(
        &["check", "-f", &object],
        None,
        Some(
            r#"[{"group": "x.io", "kind": "X", "plural": "xs", "versions": [], "templates": []}]"#,
        ),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("HOSTGUARD_POD_TEMPLATE_KINDS_JSON") && err.contains("[0].versions"),
        "{err}"
    );
}

/// A kind one of hostguard's adapters reads cannot be added as a pod-template kind.
#[test]
fn an_adapter_kind_cannot_be_added() {
    let list = r#"[{"group": "kagent.dev", "kind": "ModelConfig", "plural": "modelconfigs", "versions": ["v1alpha2"], "templates": [{"path": "spec", "shape": "PodSpec"}]}]"#;
    let (code, _, err) = run_with_list(
        &["check", "-f", &fixture("inferencejob.yaml")],
        None,
        Some(list),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("[0].kind: kagent.dev/ModelConfig is read by hostguard's own adapter"),
        "{err}"
    );
}
