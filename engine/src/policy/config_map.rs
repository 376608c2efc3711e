//! Decides on a ConfigMap that holds a config file an AI application reads (LiteLLM's
//! `config.yaml`, HolmesGPT's `model_list.yaml`, LibreChat's `librechat.yaml`, RAGFlow's
//! `service_conf.yaml`).
//!
//! A workload's verdict already covers the files it mounts, read when it is admitted. But a
//! ConfigMap can change afterwards, and a container that restarts (a crash, a liveness probe, a
//! kill from inside) reads the new file without any Pod being admitted again. So a change to such
//! a ConfigMap is judged twice:
//!
//! - **On its own**: what the file fixes by itself (a literal `api_base`, RAGFlow's factory
//!   default), under every policy of the namespace, as for an AI tool's resource. What the file
//!   takes from the env of the container that reads it (`os.environ/VAR`, `{{ env.VAR }}`, an
//!   absent `api_base` that falls back to `OPENAI_BASE_URL`) is not decided here. When an
//!   AIWorkload of the namespace that a policy trusts could exempt a workload from it, that
//!   policy's findings here are warnings: the workloads that read the file are where that is
//!   known.
//! - **Through the Pods that read it**, when the caller found them ([`ConfigMapReaders`]; the
//!   webhook lists the Pods of the namespace): each Pod is decided with the ConfigMap as it is
//!   and as the change leaves it, and every violation the change brings in is the ConfigMap's.
//!   This also covers what the file takes from each Pod's env. When the Pods could not be
//!   listed, that is an unresolved endpoint, decided as the policy's `unresolved` says (never
//!   made a warning by an AIWorkload).
//!
//! `binaryData` entries that decode to text count as files (the kubelet projects them too).
//! What this does not cover, and where it is covered instead: a ConfigMap whose text has none
//! of [`crate::detect::config_files::CONFIG_FILE_TEXT_MARKERS`] and whose keys none of the key
//! markers (the webhook is not asked, see its match condition), and a plain ConfigMap a Pod
//! reads as env (`configMapKeyRef`, `envFrom`), which a restarted container also reads anew:
//! both are judged on the Pods when they are admitted and reported by the audit when they
//! drift. A Pod admitted while the change is under review may miss the listing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::PolicySet;
use super::decision::{Decision, Verdict, Violation, Warning, rule};
use super::evaluate::{
    Operation, Request, SELF_VALIDATION, check_endpoints, evaluate, findings, forgive_pre_existing,
    request_namespace,
};
use crate::api::Action;
use crate::detect::config_files::{ConfigMapFile, config_map_files};
use crate::detect::{self, Endpoint, EndpointValue, TemplateFacts};
use crate::snapshot::{ConfigMapData, Lookup, Snapshot};

/// The Pods that read a ConfigMap under review, as the caller found them.
#[derive(Debug, Clone, Copy, Default)]
pub enum ConfigMapReaders<'a> {
    /// Not looked for (offline: `check`, `review`, the VAP agreement): the ConfigMap's files are
    /// judged on their own.
    #[default]
    NotLooked,
    /// The Pods of the ConfigMap's namespace that reference it (as JSON objects).
    Listed(&'a [Value]),
    /// Looking for them failed, for this reason.
    Failed(&'a str),
}

/// The name of `object` when it is a ConfigMap holding a known config file (the webhook then
/// looks for the Pods that read it, [`ConfigMapReaders`]); None otherwise.
pub fn config_file_map_name(object: &Value) -> Option<&str> {
    config_files_of(object)?.0
}

/// A ConfigMap's name, its files as text (see [`text_data`]) and the known config files among them.
type ConfigFiles<'a> = (
    Option<&'a str>,
    serde_json::Map<String, Value>,
    Vec<ConfigMapFile>,
);

/// A v1 ConfigMap's name, its files as text and the known config files among them; None when
/// `object` is not a ConfigMap or holds no known config file.
fn config_files_of(object: &Value) -> Option<ConfigFiles<'_>> {
    if object.get("apiVersion").and_then(Value::as_str) != Some("v1")
        || object.get("kind").and_then(Value::as_str) != Some("ConfigMap")
    {
        return None;
    }
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    let data = text_data(object)?;
    let files = config_map_files(name.unwrap_or("(unnamed)"), &data);
    (!files.is_empty()).then_some((name, data, files))
}

/// A ConfigMap's files as text: `data`, and the `binaryData` entries that decode to UTF-8 (the
/// kubelet projects both as files, so a config file moved to `binaryData` is still read). None
/// when it has neither.
fn text_data(object: &Value) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine as _;
    let data = object.get("data").and_then(Value::as_object);
    let binary = object.get("binaryData").and_then(Value::as_object);
    if data.is_none() && binary.is_none() {
        return None;
    }
    let mut out = data.cloned().unwrap_or_default();
    for (key, encoded) in binary.into_iter().flatten() {
        let text = encoded
            .as_str()
            .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if let Some(text) = text {
            out.insert(key.clone(), Value::String(text));
        }
    }
    Some(out)
}

/// Pods named in one message about the Pods a change would affect, at most.
const PODS_NAMED: usize = 3;

/// The decision on `object` when it is a ConfigMap holding a known config file; None otherwise.
pub(super) fn evaluate_config_map(
    request: &Request<'_>,
    object: &Value,
    readers: ConfigMapReaders<'_>,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Option<Decision> {
    let (name, data, files) = config_files_of(object)?;
    let (name, data) = (name.unwrap_or("(unnamed)"), &data);
    let namespace = request_namespace(request, object);

    let mut decision = Decision {
        verdict: Verdict::Allow,
        skipped: None,
        ..Decision::skipped("")
    };
    for m in files.iter().flat_map(|f| &f.malformed) {
        let message = format!(
            "{}: {}; the applications that read it cannot, and hostguard cannot check its endpoints",
            m.path, m.message
        );
        decision.violations.push(Violation {
            policy: SELF_VALIDATION.into(),
            action: Action::Deny,
            rule: rule::VALID_RESOURCE,
            warning: Warning::new(
                m.path.clone(),
                "config file cannot be read",
                "fix the file",
                message.clone(),
            ),
            path: m.path.clone(),
            message,
        });
    }

    let endpoints: Vec<Endpoint> = files.iter().flat_map(|f| f.endpoints.clone()).collect();
    let facts = |endpoints: Vec<Endpoint>| TemplateFacts {
        path: String::new(),
        usages: if endpoints.is_empty() {
            Vec::new()
        } else {
            vec![detect::adapters::usage(
                detect::OPENAI,
                signal_path(&files),
                endpoints,
            )]
        },
        notes: Vec::new(),
        malformed: Vec::new(),
    };
    let template = facts(endpoints);
    // Readers that could not be listed: what the change does to them is unknown. Its own
    // facts, so that no AIWorkload's exemption (below) can turn it into a warning.
    let unlisted = match readers {
        ConfigMapReaders::Failed(why) => Some(facts(vec![Endpoint {
            value: EndpointValue::Unresolved(format!(
                "the Pods that read ConfigMap {namespace}/{name} could not be listed ({why}), so what this change does to them cannot be checked"
            )),
            path: "data".into(),
            via: "the Pods that mount it".into(),
            origin: None,
        }])),
        _ => None,
    };
    // Each endpoint value is parsed once for the findings and every policy (see Classifier).
    let classifier = crate::endpoint::Classifier::default();
    decision.findings = findings(std::slice::from_ref(&template), policies, &classifier);
    let ns_labels = match snapshot.namespace_labels_resolved(namespace) {
        Lookup::Found(labels) => Some(labels),
        Lookup::Absent | Lookup::Unknown => None,
    };
    let mut governing: Vec<String> = Vec::new();
    for policy in policies.policies() {
        if !policy.applies_in(namespace, ns_labels.as_ref()) {
            continue;
        }
        let Some(usage) = template.usage(&policy.provider) else {
            continue;
        };
        if !usage
            .classes_trusting(|_| false)
            .classes
            .iter()
            .any(|c| policy.api_classes.contains(c))
        {
            continue;
        }
        governing.push(policy.name.clone());
        let mut own = Decision::skipped("");
        check_endpoints(policy, usage, &classifier, &mut own);
        decision.warnings.extend(own.warnings);
        // A trusted AIWorkload of the namespace may exempt the workload that reads this file.
        // With the readers listed, only one that selects one of them counts (they are judged
        // themselves below, each with its own exemptions); without them, any of the namespace.
        let exempting = snapshot.declared_in(namespace).find(|d| {
            d.provider == policy.provider
                && policy.trust.trusts(&d.labels, ns_labels.as_ref())
                && !d.classes.iter().any(|c| policy.api_classes.contains(c))
                && match readers {
                    ConfigMapReaders::Listed(pods) if !pods.is_empty() => {
                        pods.iter().any(|p| d.selects(&pod_labels(p)))
                    }
                    _ => true,
                }
        });
        for mut v in own.violations {
            if let Some(d) = exempting
                && v.action == Action::Deny
            {
                v.action = Action::Warn;
                v.message = format!(
                    "{} (a warning here: AIWorkload {} may exempt the workload that reads this file, which is decided when it is admitted)",
                    v.message, d.name
                );
                v.warning.message = v.message.clone();
                decision.warnings.push(v.warning.clone());
            }
            decision.violations.push(v);
        }
    }

    if let Some(unlisted) = &unlisted {
        for policy in policies.policies() {
            if !policy.applies_in(namespace, ns_labels.as_ref()) {
                continue;
            }
            if let Some(usage) = unlisted.usage(&policy.provider)
                && usage
                    .classes_trusting(|_| false)
                    .classes
                    .iter()
                    .any(|c| policy.api_classes.contains(c))
            {
                governing.push(policy.name.clone());
                check_endpoints(policy, usage, &classifier, &mut decision);
            }
        }
    }

    if let ConfigMapReaders::Listed(pods) = readers
        && !pods.is_empty()
    {
        let before = snapshot.with_config_map(namespace, name, old_data(request, name));
        let after = snapshot.with_config_map(namespace, name, Some(data_of(data)));
        changed_for_readers(pods, namespace, policies, &before, &after, &mut decision);
        for p in &decision.violations {
            if p.policy != SELF_VALIDATION && !governing.contains(&p.policy) {
                governing.push(p.policy.clone());
            }
        }
    }
    governing.sort();
    governing.dedup();
    decision.governed_by = governing;
    if request.operation == Operation::Update {
        forgive_pre_existing(request, policies, snapshot, &mut decision);
    }
    decision.settle();
    Some(decision)
}

/// A Pod's labels (`metadata.labels`), for the AIWorkload selectors.
fn pod_labels(pod: &Value) -> crate::snapshot::Labels {
    pod.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Where the file's model entries are, for the usage's signal.
fn signal_path(files: &[ConfigMapFile]) -> String {
    files
        .iter()
        .map(|f| format!("data[{}] ({})", f.key, f.format))
        .collect::<Vec<_>>()
        .join(", ")
}

fn data_of(data: &serde_json::Map<String, Value>) -> ConfigMapData {
    Arc::new(
        data.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
    )
}

/// The ConfigMap before the change: the review's old object on UPDATE, none on CREATE.
fn old_data(request: &Request<'_>, name: &str) -> Option<ConfigMapData> {
    let old = request.old_object?.tree();
    if old.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
        return None;
    }
    Some(data_of(&text_data(old)?))
}

/// Adds to `decision` every violation that a Pod which reads the ConfigMap has with the change
/// (`after`) and not without it (`before`), naming the Pods, one violation per distinct finding.
fn changed_for_readers(
    pods: &[Value],
    namespace: &str,
    policies: &PolicySet,
    before: &Snapshot,
    after: &Snapshot,
    decision: &mut Decision,
) {
    // (policy, rule, path, message) -> the violation and the Pods that have it.
    type Finding = (String, &'static str, String, String);
    let mut brought: BTreeMap<Finding, (Violation, Vec<String>)> = BTreeMap::new();
    for pod in pods {
        let request = Request {
            operation: Operation::Create,
            object: Some(pod.into()),
            old_object: None,
            namespace: Some(namespace),
        };
        let was = evaluate(&request, policies, before);
        let is = evaluate(&request, policies, after);
        let pod_name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)")
            .to_string();
        for v in is.violations {
            let existed = was.violations.iter().any(|o| {
                o.policy == v.policy
                    && o.rule == v.rule
                    && o.path == v.path
                    && o.message == v.message
            });
            if existed {
                continue;
            }
            let key = (v.policy.clone(), v.rule, v.path.clone(), v.message.clone());
            brought
                .entry(key)
                .or_insert_with(|| (v, Vec::new()))
                .1
                .push(pod_name.clone());
        }
    }
    for (_, (mut v, pods)) in brought {
        let named = if pods.len() > PODS_NAMED {
            format!(
                "Pods {} and {} more",
                pods[..PODS_NAMED].join(", "),
                pods.len() - PODS_NAMED
            )
        } else if pods.len() == 1 {
            format!("Pod {}", pods[0])
        } else {
            format!("Pods {}", pods.join(", "))
        };
        v.path = format!("{named}: {}", v.path);
        v.message = format!(
            "after this change, {named} (which read this ConfigMap) would break it: {}",
            v.message
        );
        v.warning.message = v.message.clone();
        v.warning.path = format!("{named}: {}", v.warning.path);
        if v.action == Action::Warn {
            decision.warnings.push(v.warning.clone());
        }
        decision.violations.push(v);
    }
}
