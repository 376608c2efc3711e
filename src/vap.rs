//! `hostguard vap`: the part of HostingPolicies that the API server can enforce on its own, as
//! `admissionregistration.k8s.io/v1` ValidatingAdmissionPolicies and their bindings, so that the
//! plain cases stay enforced while the webhook cannot answer.
//!
//! CEL sees only the object: no AIWorkloads, no ConfigMaps, no cluster provider, no client
//! models. So the translation is deliberately narrow, and errs towards saying nothing: a
//! generated policy denies only what the webhook certainly denies. It covers two cases, on
//! CREATE (an UPDATE is judged by what it changes, which needs the old object's verdict):
//!
//! - a container whose OpenAI key is set and whose `OPENAI_BASE_URL` is a literal URL outside the
//!   cluster that the policy does not allow: a plain `https://` URL on a lower-case DNS name (no
//!   port, userinfo, query or escapes), whose host none of the policy's `allowedHosts` matches
//!   and that is not a Service name (`*.svc`, `*.svc.cluster.local`: those the webhook judges by
//!   `endpoints.inCluster`). The webhook classifies every such URL as not allowed; what is
//!   written any other way is left to it;
//! - a container with an OpenAI key and no `OPENAI_BASE_URL` at all, which the plain OpenAI
//!   clients send to `https://api.openai.com/v1`.
//!
//! And only in containers hostguard's other signals cannot change the verdict of: every env
//! entry is `OPENAI_API_KEY` (a literal or a required Secret key) or `OPENAI_BASE_URL` (a literal
//! without `$(...)`, at most once), no `envFrom`, no `command` or `args` (which could set the
//! environment again), and no `hostAliases` in the pod (which could send the host elsewhere).
//!
//! A policy that lets AIWorkloads exempt workloads (the default: `spec.trust.aiWorkloads`
//! absent) gets a binding with `validationActions: [Warn, Audit]`: the API server cannot see
//! whether an AIWorkload lifts the policy, so it only warns. With
//! `trust.aiWorkloads.allowExemptions: false` the binding denies. Namespaces follow the policy's
//! `namespaceSelector`, minus its `excludedNamespaces`, `kube-system` and the namespaces given
//! (those the webhook never sees: hostguard's own, `webhook.excludedNamespaces`). A CEL error
//! (an object of an unexpected shape) never denies: `failurePolicy: Ignore`.

use serde_json::{Value, json};

use crate::api::{Action, ApiClass, HostingPolicy};
use crate::endpoint::{HostPattern, Hosting, IN_CLUSTER_HOSTS, classify};
use crate::policy::CompiledPolicy;

/// The URL the plain OpenAI clients call without a base URL.
pub const OPENAI_DEFAULT_URL: &str = "https://api.openai.com/v1";
/// A literal base URL the webhook reads exactly as written, as a CEL (RE2) pattern: `https://`, a
/// lower-case DNS name of two or more labels whose last one starts with a letter (never an IP
/// address), no port, userinfo, query, fragment or percent-escape, and a plain path. Whatever
/// else a value looks like, the generated policy leaves it to the webhook.
pub const PLAIN_HTTPS_URL_PATTERN: &str =
    r"^https://([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]([a-z0-9-]*[a-z0-9])?(/[A-Za-z0-9._~/-]*)?$";
/// The label every namespace carries with its own name (Kubernetes 1.22+).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Pod specs of the kinds the webhook validates, with the kinds that have them there.
const SHAPES: &[(&str, &str)] = &[
    ("object.kind == 'Pod'", "object.spec"),
    (
        "object.kind == 'CronJob'",
        "object.spec.jobTemplate.spec.template.spec",
    ),
    (
        "object.kind != 'Pod' && object.kind != 'CronJob'",
        "object.spec.template.spec",
    ),
];

/// What `translate` made of the policies.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// ValidatingAdmissionPolicies and bindings, in pairs.
    pub objects: Vec<Value>,
    /// Why a policy, or a case of one, has no CEL counterpart.
    pub notes: Vec<String>,
}

/// The CEL condition: container `c` can only carry what the generated rules judge.
fn plain_container() -> String {
    [
        "!has(c.envFrom)",
        "!has(c.command)",
        "!has(c.args)",
        "has(c.env)",
        "c.env.all(e, e.name == 'OPENAI_API_KEY' ? ((has(e.value) && !has(e.valueFrom)) || (!has(e.value) && has(e.valueFrom) && has(e.valueFrom.secretKeyRef) && !(has(e.valueFrom.secretKeyRef.optional) && e.valueFrom.secretKeyRef.optional))) : (e.name == 'OPENAI_BASE_URL' && has(e.value) && !has(e.valueFrom) && !e.value.contains('$(')))",
        "size(c.env.filter(e, e.name == 'OPENAI_BASE_URL')) <= 1",
        "c.env.exists(e, e.name == 'OPENAI_API_KEY')",
    ]
    .join(" && ")
}

/// A CEL (RE2) pattern for the URLs on a host one of `patterns` matches, matched the way the
/// engine matches hosts (`endpoint::pattern`): `*.suffix` stands for one or more whole labels
/// before the suffix, any other pattern for exactly that host. No pattern: nothing matches.
fn url_on_hosts<'a>(patterns: impl IntoIterator<Item = &'a str>) -> String {
    let hosts: Vec<String> = patterns
        .into_iter()
        .map(|p| match p.strip_prefix("*.") {
            Some(suffix) => format!(r"([a-z0-9-]+\.)+{}", suffix.replace('.', r"\.")),
            None => p.replace('.', r"\."),
        })
        .collect();
    if hosts.is_empty() {
        return "^$".to_string();
    }
    format!("^https://({})(/.*)?$", hosts.join("|"))
}

/// The URLs on a host the policy allows.
pub fn allowed_url_pattern(allowed: &[HostPattern]) -> String {
    url_on_hosts(allowed.iter().map(HostPattern::as_str))
}

/// The URLs on a Kubernetes Service name, which the webhook judges by `endpoints.inCluster`
/// rather than as allowed or not: the engine's own table (`endpoint::IN_CLUSTER_HOSTS`).
pub fn in_cluster_url_pattern() -> String {
    url_on_hosts(IN_CLUSTER_HOSTS.iter().copied())
}

/// A string as a CEL single-quoted literal's body.
fn cel_quoted(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('\'', "\\'")
}

/// The two cases, as (rule name, condition on a plain container `c`, message).
fn cases(allowed: &[HostPattern]) -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "openai-base-url-not-allowed",
            format!(
                "c.env.exists(e, e.name == 'OPENAI_BASE_URL' && e.value.matches('{}') && !e.value.matches('{}') && !e.value.matches('{}'))",
                cel_quoted(PLAIN_HTTPS_URL_PATTERN),
                cel_quoted(&in_cluster_url_pattern()),
                cel_quoted(&allowed_url_pattern(allowed)),
            ),
            "OPENAI_BASE_URL is not an allowed endpoint; set it to your Azure endpoint's /openai/v1/",
        ),
        (
            "openai-key-without-base-url",
            "!c.env.exists(e, e.name == 'OPENAI_BASE_URL')".to_string(),
            "an OpenAI key with no OPENAI_BASE_URL: the OpenAI clients call https://api.openai.com/v1, not an allowed endpoint",
        ),
    ]
}

/// The validation expressions of the cases (each true when the object passes).
pub fn validations(allowed: &[HostPattern], policy: &str) -> Vec<Value> {
    let plain = plain_container();
    let mut out = Vec::new();
    for (rule, bad, message) in cases(allowed) {
        for (kind, spec) in SHAPES {
            let containers = format!(
                "({spec}.containers + (has({spec}.initContainers) ? {spec}.initContainers : []))"
            );
            let no_aliases = format!("(!has({spec}.hostAliases) || size({spec}.hostAliases) == 0)");
            let expression =
                format!("!({kind}) || !{no_aliases} || !{containers}.exists(c, {plain} && {bad})");
            out.push(json!({
                "expression": expression,
                "message": format!("hostguard policy {policy} ({rule}): {message}"),
                "reason": "Forbidden",
            }));
        }
    }
    out
}

/// The admission policy and its binding for each HostingPolicy that has a CEL part.
pub fn translate(policies: &[HostingPolicy], exclude_namespaces: &[String]) -> Translation {
    let mut t = Translation::default();
    for policy in policies {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let compiled = match CompiledPolicy::compile(policy) {
            Ok(c) => c,
            Err(errors) => {
                let errors: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect();
                t.notes.push(format!(
                    "{name}: skipped, it does not compile ({})",
                    errors.join("; ")
                ));
                continue;
            }
        };
        if compiled.provider != "openai" {
            t.notes.push(format!(
                "{name}: skipped, only the openai provider's plain cases are translated"
            ));
            continue;
        }
        if !compiled.api_classes.contains(&ApiClass::Stateless) {
            t.notes.push(format!(
                "{name}: skipped, a workload that declares nothing is stateless, and this policy does not govern stateless traffic"
            ));
            continue;
        }
        if compiled.action != Action::Deny {
            t.notes.push(format!(
                "{name}: skipped, its action is {} and only Deny policies are enforced by the API server",
                compiled.action.as_str()
            ));
            continue;
        }
        // The same classification the engine makes, with this policy's rules.
        let rules = compiled.endpoint_rules();
        let direct_denied = classify(OPENAI_DEFAULT_URL, &rules).hosting != Hosting::Azure;
        if !direct_denied {
            t.notes
                .push(format!("{name}: skipped, it allows {OPENAI_DEFAULT_URL}"));
            continue;
        }
        let exemptions = policy
            .spec
            .trust
            .as_ref()
            .and_then(|t| t.ai_workloads.as_ref())
            .is_none_or(|a| a.allow_exemptions);
        let actions: Vec<&str> = if exemptions {
            t.notes.push(format!(
                "{name}: AIWorkloads may exempt workloads from it (spec.trust.aiWorkloads), which the API server cannot see, so its binding only warns; set spec.trust.aiWorkloads.allowExemptions: false to deny"
            ));
            vec!["Warn", "Audit"]
        } else {
            vec!["Deny"]
        };
        let vap_name = format!("hostguard-{name}");
        t.objects.push(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {
                "name": vap_name,
                "labels": {"app.kubernetes.io/managed-by": "hostguard"},
                "annotations": {"hostguard.dev/hosting-policy": name},
            },
            "spec": {
                "failurePolicy": "Ignore",
                "matchConstraints": {"resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                     "resources": ["pods", "replicationcontrollers"]},
                    {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"],
                     "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"]},
                    {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"],
                     "resources": ["jobs", "cronjobs"]},
                ]},
                "validations": validations(rules.allowed_hosts, &name),
            },
        }));
        t.objects.push(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {
                "name": vap_name,
                "labels": {"app.kubernetes.io/managed-by": "hostguard"},
            },
            "spec": {
                "policyName": vap_name,
                "validationActions": actions,
                "matchResources": {"namespaceSelector": namespace_selector(policy, exclude_namespaces)},
            },
        }));
    }
    t
}

/// The objects as multi-document YAML, each after a `---` line: what `hostguard vap` prints, and
/// what the chart's copy for the default policy (`charts/hostguard/files/vap/`) holds.
pub fn to_yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        // Serialising a JSON value cannot fail.
        out.push_str(&serde_saphyr::to_string(object).unwrap_or_default());
    }
    out
}

/// The policy's namespaceSelector with its excluded namespaces, `kube-system` and the extra
/// ones taken out by name.
fn namespace_selector(policy: &HostingPolicy, exclude: &[String]) -> Value {
    let mut selector = policy
        .spec
        .namespace_selector
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({}));
    let mut names: Vec<String> = vec!["kube-system".to_string()];
    for n in policy.spec.excluded_namespaces.iter().chain(exclude) {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let expression = json!({"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": names});
    match selector
        .get_mut("matchExpressions")
        .and_then(Value::as_array_mut)
    {
        Some(list) => list.push(expression),
        None => selector["matchExpressions"] = json!([expression]),
    }
    selector
}
