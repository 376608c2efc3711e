//! The chart's Grafana dashboard and PrometheusRule alerts name only metrics hostguard really
//! exposes: the names are read from the real registry's exposition (`Metrics::encode`, what
//! `/metrics` serves), with the suffixes Prometheus gives each type (`_total` for counters,
//! `_bucket`, `_sum` and `_count` for histograms). The dashboard must parse as JSON, every panel
//! query must name a metric, and so must every alert expression and the README's PromQL.

use std::collections::BTreeSet;
use std::error::Error;
use std::path::Path;

use hostguard::metrics::{
    AuditResult, ClusterProviderLabels, Metrics, PolicyLabel, ProviderLabel, Rejection,
    RequestLabels, ResourceLabel, ViolationLabels, WebhookLabel,
};
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

fn read(rel: &str) -> Result<String, Box<dyn Error>> {
    Ok(std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
    )?)
}

/// Every series name the registry can produce. A labelled family shows in the exposition only
/// once it has a series, so each gets one.
fn exposed() -> BTreeSet<String> {
    let m = Metrics::new();
    m.requests
        .get_or_create(&RequestLabels {
            webhook: "validate",
            kind: "Pod".into(),
            operation: "CREATE".into(),
            decision: "allow",
        })
        .inc();
    m.duration
        .get_or_create(&WebhookLabel {
            webhook: "validate",
        })
        .observe(0.001);
    let violation = ViolationLabels {
        policy: "p".into(),
        action: "Deny",
    };
    m.violations.get_or_create(&violation).inc();
    m.audit_violations.get_or_create(&violation).set(1);
    m.exemptions
        .get_or_create(&PolicyLabel { policy: "p".into() })
        .inc();
    m.reject(Rejection::Timeout);
    m.cluster_provider
        .get_or_create(&ClusterProviderLabels {
            detected: "azure",
            effective: "azure",
        })
        .set(1);
    m.cluster_nodes
        .get_or_create(&ProviderLabel { provider: "azure" })
        .set(1);
    let resource = ResourceLabel { resource: "nodes" };
    m.watch_errors.get_or_create(&resource).inc();
    m.watch_restarts.get_or_create(&resource).inc();
    m.audit_ended(AuditResult::Ok);
    let text = m.encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

/// The `hostguard_*` identifiers in a PromQL text.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("hostguard_") {
        let start = i + at;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        // Part of a longer identifier or a label value (`job="hostguard_x"`) is not a metric.
        if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'"') {
            out.push(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

fn exprs(panel: &Value, out: &mut Vec<(String, String)>) {
    let title = panel["title"].as_str().unwrap_or("").to_string();
    for t in panel["targets"].as_array().into_iter().flatten() {
        out.push((title.clone(), t["expr"].as_str().unwrap_or("").to_string()));
    }
    for p in panel["panels"].as_array().into_iter().flatten() {
        exprs(p, out);
    }
}

#[test]
fn the_registry_exposes_the_names_the_tests_expect() {
    // The suffix rules above, checked on names the README documents.
    let names = exposed();
    for n in [
        "hostguard_admission_requests_total",
        "hostguard_admission_duration_seconds_bucket",
        "hostguard_tls_certificate_expiry_timestamp_seconds",
        "hostguard_policy_snapshot_age_seconds",
        "hostguard_leader",
    ] {
        assert!(names.contains(n), "{n} not in {names:#?}");
    }
}

#[test]
fn every_dashboard_query_names_an_exposed_metric() -> TestResult {
    let dashboard: Value =
        serde_json::from_str(&read("charts/hostguard/dashboards/hostguard.json")?)?;
    let names = exposed();
    let mut all = Vec::new();
    for p in dashboard["panels"].as_array().ok_or("no panels")? {
        exprs(p, &mut all);
    }
    assert!(all.len() >= 15, "{all:#?}");
    let mut ids = BTreeSet::new();
    for p in dashboard["panels"].as_array().ok_or("no panels")? {
        assert!(
            ids.insert(p["id"].as_i64()),
            "duplicate panel id {}",
            p["id"]
        );
        assert!(!p["title"].as_str().unwrap_or("").is_empty(), "{p}");
    }
    for (title, expr) in &all {
        let used = metric_names(expr);
        assert!(
            !used.is_empty(),
            "{title}: {expr} names no hostguard metric"
        );
        for m in used {
            assert!(names.contains(&m), "{title}: {m} is not exposed ({expr})");
        }
    }
    // What the issue asks the dashboard to show.
    let text: String = all.iter().map(|(_, e)| e.as_str()).collect();
    for m in [
        "hostguard_admission_requests_total",
        "hostguard_policy_violations_total",
        "hostguard_admission_duration_seconds_bucket",
        "hostguard_admission_rejected_bodies_total",
        "hostguard_tls_certificate_expiry_timestamp_seconds",
        "hostguard_policy_snapshot_age_seconds",
        "hostguard_audit_violating_workloads",
        "hostguard_policy_exemptions_total",
    ] {
        assert!(text.contains(m), "the dashboard does not show {m}");
    }
    // Queries use the data source variable the dashboard defines.
    let vars = dashboard["templating"]["list"]
        .as_array()
        .ok_or("no variables")?;
    assert!(
        vars.iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource")
    );
    Ok(())
}

#[test]
fn every_alert_expression_names_an_exposed_metric() -> TestResult {
    let template = read("charts/hostguard/templates/prometheusrule.yaml")?;
    let names = exposed();
    let alerts: Vec<&str> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(
        alerts,
        [
            "HostguardWebhookErrors",
            "HostguardWebhookLatencyHigh",
            "HostguardCertificateExpiringSoon",
            "HostguardPolicySnapshotStale",
            "HostguardLeaderMissing"
        ]
    );
    let exprs: Vec<&str> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .collect();
    assert_eq!(exprs.len(), alerts.len());
    for expr in exprs {
        let used = metric_names(expr);
        assert!(!used.is_empty(), "{expr}");
        for m in used {
            assert!(names.contains(&m), "{m} is not exposed ({expr})");
        }
    }
    Ok(())
}

#[test]
fn the_readmes_promql_names_exposed_metrics() -> TestResult {
    let readme = read("README.md")?;
    let names = exposed();
    let mut in_promql = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_promql = line == "```promql";
            continue;
        }
        if in_promql {
            for m in metric_names(line) {
                assert!(names.contains(&m), "README: {m} is not exposed ({line})");
            }
        }
    }
    Ok(())
}
