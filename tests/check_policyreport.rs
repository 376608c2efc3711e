//! `hostguard check -o policyreport`: the built binary writes one PolicyReport per namespace in
//! a YAML `v1` List, in the OpenReports format (`openreports.io/v1alpha1` Report) by default or
//! the `wgpolicyk8s.io/v1alpha2` PolicyReport, with the fields of those APIs: summary counts,
//! and per result the policy, rule, result, severity, resource and message with its field path.

use std::error::Error;

use assert_cmd::Command;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn Error>>;

const INPUT: &str = "tests/fixtures/check/policyreport/two-namespaces.yaml";

fn reports(extra: &[&str]) -> Result<(i32, Value), Box<dyn Error>> {
    let out = Command::cargo_bin("hostguard")?
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HOSTGUARD_CLUSTER_PROVIDER")
        .args(["check", "-f", INPUT, "-o", "policyreport"])
        .args(extra)
        .output()?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.is_empty(), "{stderr}");
    let list: Value = serde_saphyr::from_str(&String::from_utf8(out.stdout)?)?;
    Ok((out.status.code().unwrap_or(-1), list))
}

fn by_namespace<'a>(list: &'a Value, namespace: Option<&str>) -> &'a Value {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["metadata"]["namespace"].as_str() == namespace)
        .unwrap_or(&Value::Null)
}

#[test]
fn one_openreports_report_per_namespace_in_a_list() -> TestResult {
    let (code, list) = reports(&[])?;
    assert_eq!(code, 1, "a denial exits 1 as with every format");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().ok_or("items")?;
    assert_eq!(items.len(), 3, "team-a, team-b and no namespace: {list:#}");
    for r in items {
        assert_eq!(r["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(r["kind"], "Report");
        assert_eq!(r["metadata"]["name"], "hostguard");
        assert_eq!(r["source"], "hostguard");
    }

    let a = by_namespace(&list, Some("team-a"));
    assert_eq!(
        a["summary"],
        json!({"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    let fail = &a["results"][0];
    assert_eq!(fail["result"], "fail");
    assert_eq!(fail["policy"], "openai-stateless-on-azure");
    assert_eq!(fail["rule"], "allowed-endpoint");
    assert_eq!(fail["severity"], "high");
    assert_eq!(
        fail["resources"],
        json!([{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "team-a", "name": "chat"}])
    );
    let path = "spec.template.spec.containers[0].env[OPENAI_BASE_URL]";
    assert_eq!(fail["properties"]["fieldPath"], path);
    assert!(
        fail["message"]
            .as_str()
            .ok_or("message")?
            .starts_with(&format!("{path}: \"https://api.openai.com/v1\"")),
        "{fail:#}"
    );
    assert!(fail.get("timestamp").is_none(), "offline output is stable");

    // A key with no base URL: the plain OpenAI clients call https://api.openai.com/v1.
    let b = by_namespace(&list, Some("team-b"));
    assert_eq!(b["summary"]["fail"], 1);
    assert_eq!(b["results"].as_array().map(Vec::len), Some(1), "{b:#}");
    assert_eq!(b["results"][0]["resources"][0]["name"], "agent");

    let none = by_namespace(&list, None);
    assert_eq!(
        none["summary"],
        json!({"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0})
    );
    assert_eq!(none["results"][0]["result"], "pass");
    assert_eq!(none["results"][0]["resources"][0]["name"], "ok");
    Ok(())
}

#[test]
fn the_wgpolicyk8s_api_names_its_own_kind() -> TestResult {
    let (_, list) = reports(&["--policy-report-api", "wgpolicyk8s"])?;
    let items = list["items"].as_array().ok_or("items")?;
    assert_eq!(items.len(), 3);
    for r in items {
        assert_eq!(r["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(r["kind"], "PolicyReport");
    }
    Ok(())
}
