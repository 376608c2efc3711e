//! The one evaluation function: (operation, object, old object, policies, snapshot) → decision.

use std::collections::BTreeSet;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde_json::Value;

use super::config_map::{ConfigMapReaders, evaluate_config_map};
use super::decision::{Decision, Exemption, Finding, Verdict, Violation, Warning, rule};
use super::placement::{pin_pod_patch, pod_is_pinned};
use super::{CompiledPolicy, PolicySet};
use crate::api::{AIWorkload, Action, ApiClass, ClusterProvider, Disposition, HostingPolicy};
use crate::detect::{self, EndpointValue, TemplateFacts, Usage};
use crate::endpoint::{Classifier, EndpointRules, Hosting};
use crate::object::Object;
use crate::snapshot::{DeclaredWorkload, Lookup, Snapshot};
use crate::workload::{self, WorkloadKind, WorkloadView};

/// Annotation the mutating webhook sets on governed Pods: the policies that govern them.
pub const POLICY_ANNOTATION: &str = "hostguard.dev/policy";

/// Name used in violations about hostguard's own resources.
pub(super) const SELF_VALIDATION: &str = "hostguard";

/// The admission operation (the CLI evaluates as CREATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// One object to decide on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub operation: Operation,
    pub object: Option<Object<'a>>,
    pub old_object: Option<Object<'a>>,
    /// The namespace of the request; falls back to the object's, then `default`.
    pub namespace: Option<&'a str>,
}

/// Decides on one object. Pure: no I/O, and the same answer for the same input.
pub fn evaluate(request: &Request<'_>, policies: &PolicySet, snapshot: &Snapshot) -> Decision {
    evaluate_with_readers(request, ConfigMapReaders::NotLooked, policies, snapshot)
}

/// [`evaluate`], given the Pods that read the object when it is a ConfigMap holding a known
/// config file (the webhook lists them; see [`super::config_map`]).
pub fn evaluate_with_readers(
    request: &Request<'_>,
    readers: ConfigMapReaders<'_>,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Decision {
    match request.operation {
        Operation::Delete | Operation::Connect => {
            return Decision::skipped(format!("{} is not evaluated", request.operation.as_str()));
        }
        Operation::Create | Operation::Update => {}
    }
    let Some(object) = request.object else {
        return Decision::skipped("the request carries no object");
    };

    // A review's pod-bearing object read from its text is a workload of a built-in kind, which
    // is none of the kinds below; anything else is decided on its tree.
    let read_from_tree;
    let view = match object.text_view() {
        Some(view) => view,
        None => match read_tree(request, object.tree(), readers, policies, snapshot) {
            Ok(view) => {
                read_from_tree = view;
                &read_from_tree
            }
            Err(decision) => return *decision,
        },
    };
    decide_workload(request, object, view, policies, snapshot)
}

/// An object's tree: decided at once when it is hostguard's own resource, an AI tool's
/// resource, a ConfigMap with a config file, or not a workload (`Err`); else read as a workload.
fn read_tree<'v>(
    request: &Request<'_>,
    object: &'v Value,
    readers: ConfigMapReaders<'_>,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Result<WorkloadView<'v>, Box<Decision>> {
    if let Some(decision) = validate_own_resource(object) {
        return Err(Box::new(decision));
    }
    if let Some(decision) = evaluate_tool_resource(request, object, policies, snapshot) {
        return Err(Box::new(decision));
    }
    if let Some(decision) = evaluate_config_map(request, object, readers, policies, snapshot) {
        return Err(Box::new(decision));
    }
    match workload::read(object) {
        Ok(Some(view)) => Ok(view),
        Ok(None) => {
            if let Some(why) = workload::not_understood(object) {
                let mut d = Decision::skipped("");
                d.skipped = None;
                d.warnings.push(Warning::new("", why.clone(), "", why));
                d.settle();
                return Err(Box::new(d));
            }
            let kind = object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("(no kind)");
            Err(Box::new(Decision::skipped(format!(
                "kind {kind} has no pod template"
            ))))
        }
        Err(e) => Err(Box::new(malformed(&e))),
    }
}

/// Decides on a workload: what its containers call, under every policy of its namespace.
fn decide_workload(
    request: &Request<'_>,
    object: Object<'_>,
    view: &WorkloadView,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Decision {
    if request.operation == Operation::Update && view.deleting {
        return Decision::skipped(
            "the object is being deleted; finalizer updates are never blocked",
        );
    }
    let namespace = request
        .namespace
        .filter(|n| !n.is_empty())
        .or(view.namespace.as_deref())
        .unwrap_or("default")
        .to_string();

    let facts = detect::detect(view, &namespace, snapshot, policies.known_hosts());
    let mut notes: Vec<Warning> = Vec::new();
    if let WorkloadKind::Other(k) = view.kind
        && k.kind == "Rollout"
        && view.templates.is_empty()
        && let Some(reference) = object.tree().pointer("/spec/workloadRef")
    {
        let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
        let kind = reference
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("Deployment");
        notes.push(Warning::new(
            "spec.workloadRef",
            format!("judged on {kind} {name:?}, not here"),
            "",
            format!(
                "spec.workloadRef: this Rollout runs the pod template of {kind} {name:?}, which hostguard judges on that object, not here"
            ),
        ));
    }
    // Each endpoint value is parsed once for the findings and every policy (see Classifier).
    let classifier = Classifier::default();
    let mut decision = Decision {
        verdict: Verdict::Allow,
        violations: Vec::new(),
        warnings: Vec::new(),
        findings: findings(&facts, policies, &classifier),
        governed_by: Vec::new(),
        exemptions: Vec::new(),
        patch: Vec::new(),
        skipped: None,
    };
    decision.warnings.extend(notes);
    for f in &facts {
        decision.warnings.extend(f.notes.iter().cloned());
        for m in &f.malformed {
            let message =
                format!("{m}; the model list cannot be read, so its endpoints cannot be checked");
            decision.violations.push(Violation {
                policy: SELF_VALIDATION.into(),
                action: Action::Deny,
                rule: rule::VALID_RESOURCE,
                warning: Warning::new(
                    m.path.clone(),
                    "model list cannot be read",
                    "fix the config file",
                    message.clone(),
                ),
                path: m.path.clone(),
                message,
            });
        }
    }

    // A namespace whose labels cannot be read (not in the cache and not fetched in time, or
    // not known to exist) matches every selector: a namespace-scoped policy still applies,
    // and a trust that depends on namespace labels is withheld. Nothing fails open.
    let resolved = snapshot.namespace_labels_resolved(&namespace);
    let ns_labels = match &resolved {
        Lookup::Found(labels) => Some(labels),
        Lookup::Absent | Lookup::Unknown => None,
    };
    let mut governing: BTreeSet<&str> = BTreeSet::new();
    let mut pin_with: Vec<&CompiledPolicy> = Vec::new();
    for policy in policies.policies() {
        if !policy.applies_in(&namespace, ns_labels) {
            continue;
        }
        for (template, template_facts) in view.templates.iter().zip(&facts) {
            let Some(usage) = template_facts.usage(&policy.provider) else {
                continue;
            };
            let trusted = usage.classes_trusting(|d| policy.trust.trusts(&d.labels, ns_labels));
            if !trusted
                .classes
                .iter()
                .any(|c| policy.api_classes.contains(c))
            {
                exemption(policy, template, usage, &trusted, &mut decision);
                continue;
            }
            untrusted_declarations(policy, template, usage, ns_labels, &mut decision);
            ignored_annotations(policy, usage, &mut decision);
            governing.insert(&policy.name);
            check_endpoints(policy, usage, &classifier, &mut decision);
            check_placement(
                policy,
                view,
                template,
                &snapshot.cluster_provider,
                &mut decision,
            );
            if policy.action == Action::Deny
                && policy.required_nodes.is_some()
                && !pin_with.iter().any(|p| p.name == policy.name)
            {
                pin_with.push(policy);
            }
        }
    }
    decision.governed_by = governing.iter().map(|s| s.to_string()).collect();

    if request.operation == Operation::Update {
        forgive_pre_existing(request, policies, snapshot, &mut decision);
    }
    if request.operation == Operation::Create && view.kind == WorkloadKind::Pod {
        decision.patch = mutation(object, view, &decision.governed_by, policies, &pin_with);
    }
    decision.settle();
    decision
}

/// The namespace an object is decided in: the request's, else its own, else `default`.
pub(super) fn request_namespace<'a>(request: &Request<'a>, object: &'a Value) -> &'a str {
    request
        .namespace
        .filter(|n| !n.is_empty())
        .or_else(|| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
        })
        .unwrap_or("default")
}

/// Decides on an AI tool's own resource (a K8sGPT, a kagent ModelConfig, an AIServiceBackend):
/// its adapter turns it into the same facts a pod template gives, and the endpoint rules of every
/// policy that governs them apply. Placement is not checked here: the resource is not a pod, and
/// the pods its controller creates are judged when they are admitted. None for any other kind.
fn evaluate_tool_resource(
    request: &Request<'_>,
    object: &Value,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Option<Decision> {
    let namespace = request_namespace(request, object);
    let facts = match detect::adapters::read(object, namespace, snapshot)? {
        Ok(facts) => facts,
        Err(e) => {
            let kind = object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("resource");
            let mut d = Decision::skipped("");
            d.skipped = None;
            let message = format!(
                "{}: {}; the {kind} cannot be read, so its model endpoints cannot be checked",
                e.path, e.message
            );
            d.violations.push(Violation {
                policy: SELF_VALIDATION.into(),
                action: Action::Deny,
                rule: rule::VALID_RESOURCE,
                warning: Warning::new(e.path.clone(), e.message.clone(), "", message.clone()),
                path: e.path.clone(),
                message,
            });
            d.settle();
            return Some(d);
        }
    };
    if request.operation == Operation::Update
        && object.pointer("/metadata/deletionTimestamp").is_some()
    {
        return Some(Decision::skipped(
            "the object is being deleted; finalizer updates are never blocked",
        ));
    }
    let template = TemplateFacts {
        path: String::new(),
        usages: facts.usages,
        notes: facts
            .notes
            .into_iter()
            .map(|n| Warning::new("", n.clone(), "", n))
            .collect(),
        malformed: Vec::new(),
    };
    let all = std::slice::from_ref(&template);
    // Each endpoint value is parsed once for the findings and every policy (see Classifier).
    let classifier = Classifier::default();
    let mut decision = Decision {
        verdict: Verdict::Allow,
        violations: Vec::new(),
        warnings: template.notes.clone(),
        findings: findings(all, policies, &classifier),
        governed_by: Vec::new(),
        exemptions: Vec::new(),
        patch: Vec::new(),
        skipped: None,
    };
    let ns_labels = match snapshot.namespace_labels_resolved(namespace) {
        Lookup::Found(labels) => Some(labels),
        Lookup::Absent | Lookup::Unknown => None,
    };
    let mut governing: BTreeSet<&str> = BTreeSet::new();
    for policy in policies.policies() {
        if !policy.applies_in(namespace, ns_labels.as_ref()) {
            continue;
        }
        let Some(usage) = template.usage(&policy.provider) else {
            continue;
        };
        let trusted = usage.classes_trusting(|_| false);
        if !trusted
            .classes
            .iter()
            .any(|c| policy.api_classes.contains(c))
        {
            continue;
        }
        governing.insert(&policy.name);
        check_endpoints(policy, usage, &classifier, &mut decision);
    }
    decision.governed_by = governing.iter().map(|s| s.to_string()).collect();
    if request.operation == Operation::Update {
        forgive_pre_existing(request, policies, snapshot, &mut decision);
    }
    decision.settle();
    Some(decision)
}

/// Records that trusted AIWorkloads lift `policy` from a template it would otherwise govern (the
/// stateless default plus what annotations add would fall under it). Nothing is recorded when
/// the policy would not govern the template anyway.
fn exemption(
    policy: &CompiledPolicy,
    template: &workload::PodTemplateView,
    usage: &Usage,
    trusted: &detect::ClassView<'_>,
    decision: &mut Decision,
) {
    let undeclared = usage.classes_trusting(|_| false);
    if !undeclared
        .classes
        .iter()
        .any(|c| policy.api_classes.contains(c))
        || trusted.declared_by.is_empty()
    {
        return;
    }
    let by: Vec<String> = trusted.declared_by.iter().map(|d| d.qualified()).collect();
    let declared: Vec<&str> = trusted.classes.iter().map(|c| c.as_str()).collect();
    let at = if template.path.is_empty() {
        "the Pod".to_string()
    } else {
        template.path.clone()
    };
    let message = format!(
        "{at}: exempted from policy {} ({}) by AIWorkload {}, which declares it {}",
        policy.name,
        traffic(policy),
        by.join(", AIWorkload "),
        declared.join("/")
    );
    if policy.action == Action::Warn {
        decision.warnings.push(Warning::new(
            &template.path,
            format!(
                "exempted from {} by AIWorkload {}",
                policy.name,
                by.join(", ")
            ),
            "check that the AIWorkload is right",
            message.clone(),
        ));
    }
    decision.exemptions.push(Exemption {
        policy: policy.name.clone(),
        action: policy.action,
        path: template.path.clone(),
        exempted_by: by,
        message,
    });
}

/// Tells the user about matching AIWorkloads that would lift `policy` but that it does not
/// trust, so that a declaration that has no effect is not mistaken for one that does.
fn untrusted_declarations(
    policy: &CompiledPolicy,
    template: &workload::PodTemplateView,
    usage: &Usage,
    ns_labels: Option<&crate::snapshot::Labels>,
    decision: &mut Decision,
) {
    let lifting: Vec<String> = usage
        .declared
        .iter()
        .filter(|d| {
            !d.classes.iter().any(|c| policy.api_classes.contains(c))
                && !policy.trust.trusts(&d.labels, ns_labels)
        })
        .map(|d| d.qualified())
        .collect();
    if lifting.is_empty() || policy.action == Action::Audit {
        return;
    }
    let at = if template.path.is_empty() {
        "metadata".to_string()
    } else {
        template.metadata_path()
    };
    let message = format!(
        "{at}: AIWorkload {} would exempt this workload from policy {}, but the policy does not trust it (spec.trust.aiWorkloads), so it is governed",
        lifting.join(", AIWorkload "),
        policy.name
    );
    if !decision.warnings.iter().any(|w| w.message == message) {
        decision.warnings.push(Warning::new(
            at,
            format!(
                "AIWorkload {} is not trusted by {}",
                lifting.join(", "),
                policy.name
            ),
            "ask your platform team to trust it (spec.trust.aiWorkloads)",
            message,
        ));
    }
}

/// Tells the user about `hostguard.dev/api-class` annotations that would take the workload out
/// of `policy`, which governs it: annotations only add governance, so they were ignored.
fn ignored_annotations(policy: &CompiledPolicy, usage: &Usage, decision: &mut Decision) {
    if policy.action == Action::Audit {
        return;
    }
    for claim in &usage.annotation_claims {
        if claim.classes.iter().any(|c| policy.api_classes.contains(c)) {
            continue;
        }
        let named: Vec<&str> = claim.classes.iter().map(|c| c.as_str()).collect();
        let message = format!(
            "{}: {:?} is ignored as an exemption from policy {}: an annotation can only add governance, so this workload is governed as {}; to declare it {} only, create an AIWorkload whose selector matches its pods (spec.apiClass: {}), which your platform team controls",
            claim.path,
            claim.raw,
            policy.name,
            traffic(policy),
            named.join("/"),
            named.join("/"),
        );
        if !decision.warnings.iter().any(|w| w.message == message) {
            decision.warnings.push(Warning::new(
                &claim.path,
                format!("an annotation cannot exempt from {}", policy.name),
                "declare the API class with an AIWorkload",
                message,
            ));
        }
    }
}

/// A violation or warning according to the policy's action.
fn report(decision: &mut Decision, policy: &CompiledPolicy, rule: &'static str, warning: Warning) {
    if policy.action == Action::Warn {
        decision.warnings.push(warning.clone());
    }
    decision.violations.push(Violation {
        policy: policy.name.clone(),
        action: policy.action,
        rule,
        path: warning.path.clone(),
        message: warning.message.clone(),
        warning,
    });
}

/// Applies a Deny/Warn/Allow disposition.
fn dispose(
    decision: &mut Decision,
    policy: &CompiledPolicy,
    disposition: Disposition,
    rule: &'static str,
    warning: Warning,
) {
    match disposition {
        Disposition::Deny => report(decision, policy, rule, warning),
        Disposition::Warn => {
            if policy.action != Action::Audit {
                decision.warnings.push(warning);
            }
        }
        Disposition::Allow => {}
    }
}

/// The host of `url` for short messages, or the value itself when it has none.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| format!("{url:?}"))
}

fn traffic(policy: &CompiledPolicy) -> String {
    let classes: Vec<&str> = policy.api_classes.iter().map(|c| c.as_str()).collect();
    format!("{} {} traffic", policy.provider, classes.join("/"))
}

pub(super) fn check_endpoints(
    policy: &CompiledPolicy,
    usage: &Usage,
    classifier: &Classifier,
    decision: &mut Decision,
) {
    let rules = policy.endpoint_rules();
    // What the messages quote is written only for an endpoint that gets one: most are allowed.
    let allowed_hosts = std::cell::LazyCell::new(|| policy.allowed_brief());
    for endpoint in &usage.endpoints {
        let classification = match &endpoint.value {
            EndpointValue::Ambiguous { url, .. } | EndpointValue::Url(url) => {
                Some(classifier.classify(url, &rules))
            }
            EndpointValue::Unresolved(_) | EndpointValue::Redirected(_) => None,
        };
        if classification
            .as_ref()
            .is_some_and(|c| c.hosting == Hosting::Azure)
        {
            continue;
        }
        let allowed = allowed_hosts.as_str();
        let from = match (&endpoint.origin, endpoint.via.as_str()) {
            (Some(origin), _) => format!(" (from {origin})"),
            (None, via) if via.starts_with("the ") => format!(" ({via})"),
            _ => String::new(),
        };
        let path = &endpoint.path;
        let (short_hint, hint) =
            policy.endpoint_hint(path, detect::apps::variable_to_set(&endpoint.via));
        match &endpoint.value {
            EndpointValue::Unresolved(why) => {
                let message = format!(
                    "{path}: the {} endpoint cannot be verified: {why}; set it inline or in a ConfigMap, or declare it with an AIWorkload (spec.endpoint), per policy {} (allowed: {allowed})",
                    usage.provider, policy.name,
                );
                dispose(
                    decision,
                    policy,
                    policy.unresolved,
                    rule::UNRESOLVED_ENDPOINT,
                    Warning::new(
                        path,
                        "endpoint cannot be verified",
                        "declare it with an AIWorkload",
                        message,
                    ),
                );
            }
            EndpointValue::Redirected(what) => {
                let message = format!(
                    "{path}: {what}; hostguard cannot check where this container's {} goes; declare the real endpoint with an AIWorkload (spec.endpoint), per policy {} (allowed: {allowed})",
                    traffic(policy),
                    policy.name,
                );
                dispose(
                    decision,
                    policy,
                    policy.redirection,
                    rule::REDIRECTED_ENDPOINT,
                    Warning::new(
                        path,
                        "redirected, endpoint unchecked",
                        "declare it with an AIWorkload",
                        message,
                    ),
                );
            }
            EndpointValue::Ambiguous { why, .. } => {
                let message = format!(
                    "{path}: the OpenAI clients disagree about where this container's {} goes: {why}; for Azure, name the key AZURE_OPENAI_API_KEY; otherwise {hint}, per policy {} (allowed: {allowed})",
                    traffic(policy),
                    policy.name,
                );
                dispose(
                    decision,
                    policy,
                    policy.ambiguous,
                    rule::AMBIGUOUS_ENDPOINT,
                    Warning::new(path, "clients disagree", short_hint, message),
                );
            }
            EndpointValue::Url(url) => {
                // Classified above (never None for a URL).
                let c = classification.unwrap_or_else(|| classifier.classify(url, &rules));
                let (what, short) = match c.hosting {
                    Hosting::Azure => continue,
                    Hosting::InCluster => {
                        let message = format!(
                            "{path}: {url:?}{from} is an in-cluster service; hostguard cannot see where it forwards {}; declare its upstream with an AIWorkload (spec.endpoint), per policy {} (allowed: {allowed})",
                            traffic(policy),
                            policy.name,
                        );
                        dispose(
                            decision,
                            policy,
                            policy.in_cluster,
                            rule::IN_CLUSTER_ENDPOINT,
                            Warning::new(
                                path,
                                "in-cluster, upstream unchecked",
                                "declare it with an AIWorkload",
                                message,
                            ),
                        );
                        continue;
                    }
                    Hosting::OpenaiDirect => {
                        ("OpenAI's own API (openai-direct)", "openai-direct".into())
                    }
                    Hosting::OtherCloud => (
                        "another cloud's model service (other-cloud)",
                        "other-cloud".into(),
                    ),
                    Hosting::External | Hosting::Unresolved | Hosting::Ambiguous => (
                        "an external host (external)",
                        format!("{} not allowed", host_of(url)),
                    ),
                };
                let problem = c
                    .problem
                    .map(|p| format!(", and it {p}"))
                    .unwrap_or_default();
                let message = format!(
                    "{path}: {url:?}{from} is not an allowed endpoint: it is {what}{problem}; {hint}, per policy {} (allowed: {allowed})",
                    policy.name,
                );
                report(
                    decision,
                    policy,
                    rule::ALLOWED_ENDPOINT,
                    Warning::new(path, short, short_hint, message),
                );
            }
        }
    }
}

fn check_placement(
    policy: &CompiledPolicy,
    view: &WorkloadView,
    template: &workload::PodTemplateView,
    cluster: &ClusterProvider,
    decision: &mut Decision,
) {
    if policy.cluster_providers.is_empty() {
        return;
    }
    let required: Vec<&str> = policy
        .cluster_providers
        .iter()
        .map(|p| p.as_str())
        .collect();
    let required = required.join(", ");
    let path = template.field("spec");
    match cluster {
        ClusterProvider::Unknown => {
            if policy.action != Action::Audit {
                let message = format!(
                    "{path}: the cluster provider is unknown, so placement was not checked; policy {} requires the cluster to run on {required} (pass --cluster-provider to check it)",
                    policy.name
                );
                decision.warnings.push(Warning::new(
                    &path,
                    "cluster provider unknown, placement unchecked",
                    "pass --cluster-provider",
                    message,
                ));
            }
        }
        ClusterProvider::Mixed => {
            // Governed pods may run only if pinned to the required nodes. Controllers are
            // admitted: the mutating webhook pins the pods they create, and a Pod that is still
            // not pinned when it reaches validation is denied here.
            if view.kind != WorkloadKind::Pod {
                return;
            }
            let pinned = policy
                .required_nodes
                .as_ref()
                .is_some_and(|r| pod_is_pinned(&template.spec, r));
            if !pinned {
                let at = format!("{path}.affinity.nodeAffinity");
                let message = format!(
                    "{at}: the cluster has nodes of several providers and this Pod is not pinned to {required} nodes; add policy {}'s node affinity (the mutating webhook adds it to Pods it sees)",
                    policy.name
                );
                let what = format!("not pinned to {required} nodes");
                let hint = format!("add policy {}'s node affinity", policy.name);
                report(
                    decision,
                    policy,
                    rule::NODE_AFFINITY,
                    Warning::new(at, what, hint, message),
                );
            }
        }
        actual => {
            if !policy.cluster_providers.contains(actual) {
                let message = format!(
                    "{path}: governed workloads may run only on {required} clusters, and this cluster runs on {actual}; deploy it to a {required} cluster, per policy {}",
                    policy.name
                );
                let what = format!("this cluster runs on {actual}, not {required}");
                let hint = format!("deploy it to a {required} cluster");
                report(
                    decision,
                    policy,
                    rule::CLUSTER_PROVIDER,
                    Warning::new(&path, what, hint, message),
                );
            }
        }
    }
}

/// On UPDATE, an update is judged by what it changes: a violation the old object already had
/// (the same policy, field and message, under the policies in force now) is not blocked, since
/// blocking it would stop unrelated edits (labels, annotations, scaling, finalizers, a
/// `kubectl debug` ephemeral container that calls nothing) of a workload admitted before the
/// policy. It is reported as a warning instead, and the audit keeps reporting it. A violation
/// the update brings in (a changed endpoint, an ephemeral container that calls OpenAI) is denied.
pub(super) fn forgive_pre_existing(
    request: &Request<'_>,
    policies: &PolicySet,
    snapshot: &Snapshot,
    decision: &mut Decision,
) {
    let Some(old) = request.old_object else {
        return;
    };
    if !decision.violations.iter().any(|v| v.action == Action::Deny) {
        return;
    }
    let before = evaluate(
        &Request {
            operation: Operation::Create,
            object: Some(old),
            old_object: None,
            namespace: request.namespace,
        },
        policies,
        snapshot,
    );
    for v in decision
        .violations
        .iter_mut()
        .filter(|v| v.action == Action::Deny)
    {
        let existed = before
            .violations
            .iter()
            .any(|o| o.policy == v.policy && o.path == v.path && o.message == v.message);
        if !existed {
            continue;
        }
        v.action = Action::Warn;
        let message = format!(
            "{} (pre-existing: the object broke this before the update, which does not bring it in, so it is not blocked)",
            v.message
        );
        v.message = message.clone();
        v.warning.what = format!("pre-existing: {}", v.warning.what);
        v.warning.message = message;
        decision.warnings.push(v.warning.clone());
    }
}

/// The JSON Patch for a Pod on CREATE: pin it to the nodes of every governing Deny policy and
/// record the governing policies in an annotation.
fn mutation(
    object: Object<'_>,
    view: &WorkloadView,
    governed_by: &[String],
    policies: &PolicySet,
    pin_with: &[&CompiledPolicy],
) -> Vec<PatchOperation> {
    let enforcing: Vec<&str> = governed_by
        .iter()
        .filter(|name| {
            policies
                .policies()
                .iter()
                .any(|p| &p.name == *name && p.action != Action::Audit)
        })
        .map(String::as_str)
        .collect();
    if enforcing.is_empty() {
        return Vec::new();
    }
    let Some(template) = view.templates.first() else {
        return Vec::new();
    };
    // The patch names fields as the object has them, so it is made from the tree.
    let object = object.tree();
    let selectors: Vec<_> = pin_with
        .iter()
        .filter_map(|p| p.required_nodes.as_ref())
        .collect();
    let mut ops = pin_pod_patch(object, &template.spec, &selectors);

    let value = enforcing.join(",");
    let current = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(POLICY_ANNOTATION))
        .and_then(Value::as_str);
    if current != Some(value.as_str()) {
        let has_annotations = object
            .pointer("/metadata/annotations")
            .is_some_and(Value::is_object);
        let op = if has_annotations {
            AddOperation {
                path: PointerBuf::from_tokens(["metadata", "annotations", POLICY_ANNOTATION]),
                value: Value::String(value),
            }
        } else if object.get("metadata").is_some_and(Value::is_object) {
            AddOperation {
                path: PointerBuf::from_tokens(["metadata", "annotations"]),
                value: serde_json::json!({ POLICY_ANNOTATION: value }),
            }
        } else {
            AddOperation {
                path: PointerBuf::from_tokens(["metadata"]),
                value: serde_json::json!({ "annotations": { POLICY_ANNOTATION: value } }),
            }
        };
        ops.push(PatchOperation::Add(op));
    }
    ops
}

/// What was found, classified against every policy's allowed hosts.
pub(super) fn findings(
    facts: &[TemplateFacts],
    policies: &PolicySet,
    classifier: &Classifier,
) -> Vec<Finding> {
    let rules = EndpointRules {
        allowed_hosts: policies.known_hosts().patterns(),
        require_https: true,
    };
    let mut out = Vec::new();
    for f in facts {
        for usage in &f.usages {
            let class = class_label(&usage.classes);
            for e in &usage.endpoints {
                let (endpoint, hosting) = match &e.value {
                    EndpointValue::Url(url) => {
                        (url.clone(), classifier.classify(url, &rules).hosting)
                    }
                    EndpointValue::Unresolved(why) => {
                        (format!("(unresolved: {why})"), Hosting::Unresolved)
                    }
                    EndpointValue::Redirected(what) => {
                        (format!("(redirected: {what})"), Hosting::Unresolved)
                    }
                    EndpointValue::Ambiguous { url, .. } => {
                        let hosting = match classifier.classify(url, &rules).hosting {
                            Hosting::Azure => Hosting::Azure,
                            _ => Hosting::Ambiguous,
                        };
                        (url.clone(), hosting)
                    }
                };
                out.push(Finding {
                    provider: usage.provider.clone(),
                    api_class: class.to_string(),
                    endpoint,
                    hosting,
                    path: e.path.clone(),
                });
            }
        }
    }
    out
}

fn class_label(classes: &[ApiClass]) -> &'static str {
    match classes {
        [ApiClass::Stateless] => "stateless",
        [ApiClass::Stateful] => "stateful",
        _ => "mixed",
    }
}

fn malformed(error: &workload::ViewError) -> Decision {
    let mut d = Decision::skipped("");
    d.skipped = None;
    let path = match error {
        workload::ViewError::Malformed { path, .. } => path.clone(),
        workload::ViewError::NotAnObject => String::new(),
    };
    let message = format!("the object cannot be read as a workload: {error}");
    d.violations.push(Violation {
        policy: SELF_VALIDATION.into(),
        action: Action::Deny,
        rule: rule::VALID_RESOURCE,
        warning: Warning::new(&path, "cannot be read as a workload", "", &message),
        path,
        message,
    });
    d.settle();
    d
}

/// Validates HostingPolicy and AIWorkload objects, so that a malformed rule is rejected at apply
/// time rather than silently ignored. None for any other kind.
fn validate_own_resource(object: &Value) -> Option<Decision> {
    let api_version = object.get("apiVersion").and_then(Value::as_str)?;
    if api_version.split('/').next() != Some(crate::api::GROUP) {
        return None;
    }
    let kind = object.get("kind").and_then(Value::as_str)?;
    let mut d = Decision::skipped("");
    d.skipped = None;
    let mut fail = |path: String, message: String| {
        d.violations.push(Violation {
            policy: SELF_VALIDATION.into(),
            action: Action::Deny,
            rule: rule::VALID_RESOURCE,
            warning: Warning::new(&path, &message, "", format!("{path}: {message}")),
            message: format!("{path}: {message}"),
            path,
        });
    };
    match kind {
        "HostingPolicy" => match serde_path_to_error::deserialize::<_, HostingPolicy>(object) {
            Err(e) => fail(e.path().to_string(), e.into_inner().to_string()),
            Ok(policy) => {
                if let Err(errors) = CompiledPolicy::compile(&policy) {
                    for e in errors {
                        fail(e.path, e.message);
                    }
                }
            }
        },
        "AIWorkload" => match serde_path_to_error::deserialize::<_, AIWorkload>(object) {
            Err(e) => fail(e.path().to_string(), e.into_inner().to_string()),
            Ok(mut aiw) => {
                // The namespace comes from the request when the object does not carry one.
                aiw.metadata
                    .namespace
                    .get_or_insert_with(|| "default".into());
                if let Err(e) = DeclaredWorkload::from_resource(&aiw) {
                    fail(e.path, e.reason);
                }
                if let Some(endpoint) = aiw.spec.endpoint.as_deref()
                    && !endpoint.is_empty()
                    && url::Url::parse(endpoint).is_err()
                {
                    fail("spec.endpoint".into(), format!("{endpoint:?} is not a URL"));
                }
            }
        },
        _ => {
            return Some(Decision::skipped(format!(
                "kind {kind} has no pod template"
            )));
        }
    }
    d.settle();
    Some(d)
}
