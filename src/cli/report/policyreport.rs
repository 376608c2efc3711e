//! `hostguard check -o policyreport`: the check's results as the PolicyReports the audit writes
//! in a cluster (see [`crate::policy_report`]), one per namespace, in a YAML `v1` `List` that
//! `kubectl apply -f` and Policy Reporter read. Documents without a namespace go to a report
//! without `metadata.namespace` (applied into the namespace `kubectl` is given), since that is
//! where they would be created. Results carry no timestamps, so that the output of the same
//! input is the same.

use serde_json::{Value, json};

use super::{Entry, Report};
use crate::policy_report::{self, Broken, Collected, Lifted, ReportApi, Resource};

/// Adds one entry's results.
pub fn add(collected: &mut Collected, entry: &Entry) {
    let Some(kind) = entry.kind.as_deref() else {
        return;
    };
    let resource = Resource {
        api_version: entry.api_version.clone().unwrap_or_default(),
        kind: kind.to_string(),
        namespace: entry.namespace.clone(),
        name: entry.name.clone().unwrap_or_default(),
        uid: None,
    };
    let results = policy_report::results_of(
        &resource,
        entry.violations.iter().map(|v| Broken {
            policy: &v.policy,
            action: v.action,
            rule: v.rule,
            path: &v.path,
            message: &v.message,
        }),
        entry.exemptions.iter().map(|e| Lifted {
            policy: &e.policy,
            path: &e.path,
            exempted_by: &e.exempted_by,
            message: &e.message,
        }),
        &entry.governed_by,
    );
    collected.add(entry.namespace.as_deref().unwrap_or(""), results);
}

/// The reports of what was collected, as YAML.
pub fn render_collected(collected: &Collected, api: ReportApi) -> String {
    let items: Vec<Value> = collected
        .namespaces
        .iter()
        .map(|(namespace, content)| {
            policy_report::render(api, Some(namespace.as_str()), false, content)
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    // Serialising a JSON value cannot fail; an empty string would be noticed at once.
    serde_saphyr::to_string(&list).unwrap_or_default()
}

/// A whole report's results.
pub fn render(report: &Report, api: ReportApi) -> String {
    let mut collected = Collected::default();
    for entry in &report.results {
        add(&mut collected, entry);
    }
    render_collected(&collected, api)
}
