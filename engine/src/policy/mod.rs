//! Policy: compiled HostingPolicies, the one evaluation function, placement and mutation, the
//! decision type and the built-in default.
//!
//! This module is pure: no I/O, no async runtime, no Kubernetes client. It is the only place where
//! hosting rules live; the webhook, the CLI and the audit call [`evaluate`] and translate its
//! [`Decision`].

mod config_map;
mod decision;
mod default;
mod evaluate;
mod placement;

pub use config_map::{ConfigMapReaders, config_file_map_name};
pub use decision::{
    Decision, Exemption, Finding, MAX_WARNING_CHARS, Verdict, Violation, Warning, rule,
};
pub use default::{AKS_CLUSTER_LABEL, AZURE_OPENAI_HOSTS, DEFAULT_POLICY_NAME, default_policy};
pub use evaluate::{Operation, Request, evaluate, evaluate_with_readers};
pub use placement::{pin_pod_patch, pod_is_pinned};

use std::collections::HashSet;

use k8s_openapi::api::core::v1::NodeSelector;
use kube_core::{Selector, SelectorExt};
use thiserror::Error;

use crate::api::{Action, ApiClass, ClusterProvider, Disposition, HostingPolicy};
use crate::endpoint::{EndpointRules, HostPattern, KnownHosts};

/// A HostingPolicy that cannot be enforced, with the field at fault.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("HostingPolicy {policy:?}: {path}: {message}")]
pub struct PolicyError {
    pub policy: String,
    pub path: String,
    pub message: String,
}

/// A HostingPolicy checked and prepared for evaluation: host patterns parsed, selector built.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub name: String,
    pub provider: String,
    pub api_classes: Vec<ApiClass>,
    pub action: Action,
    pub excluded_namespaces: HashSet<String>,
    /// None when the policy applies to every namespace.
    pub namespace_selector: Option<Selector>,
    pub allowed_hosts: Vec<HostPattern>,
    pub require_https: bool,
    pub unresolved: Disposition,
    pub in_cluster: Disposition,
    pub ambiguous: Disposition,
    pub redirection: Disposition,
    pub cluster_providers: Vec<ClusterProvider>,
    /// The node affinity governed Pods must carry.
    pub required_nodes: Option<NodeSelector>,
    /// Which AIWorkloads may exempt a workload from this policy.
    pub trust: AiWorkloadTrust,
    /// `metadata.generation`, for status.
    pub generation: Option<i64>,
}

/// `spec.trust.aiWorkloads`, compiled.
#[derive(Debug, Clone)]
pub struct AiWorkloadTrust {
    pub allow_exemptions: bool,
    /// None: any namespace.
    pub namespace_selector: Option<Selector>,
    /// None: any AIWorkload.
    pub selector: Option<Selector>,
}

impl Default for AiWorkloadTrust {
    fn default() -> Self {
        AiWorkloadTrust {
            allow_exemptions: true,
            namespace_selector: None,
            selector: None,
        }
    }
}

impl AiWorkloadTrust {
    /// Whether an AIWorkload with these labels, in a namespace with these labels (None: not
    /// known), may exempt. A namespace whose labels are not known matches no selector: trust is
    /// withheld, which keeps the policy in force (fail closed).
    pub fn trusts(
        &self,
        ai_workload_labels: &crate::snapshot::Labels,
        namespace_labels: Option<&crate::snapshot::Labels>,
    ) -> bool {
        if !self.allow_exemptions {
            return false;
        }
        if let Some(sel) = &self.namespace_selector {
            match namespace_labels {
                Some(labels) if sel.matches(labels) => {}
                _ => return false,
            }
        }
        self.selector
            .as_ref()
            .is_none_or(|sel| sel.matches(ai_workload_labels))
    }
}

impl CompiledPolicy {
    /// Checks and compiles a policy; every problem is reported, each with its field path.
    pub fn compile(policy: &HostingPolicy) -> Result<Self, Vec<PolicyError>> {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let spec = &policy.spec;
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| {
            errors.push(PolicyError {
                policy: name.clone(),
                path,
                message,
            })
        };
        if name.is_empty() {
            err("metadata.name".into(), "is required".into());
        }
        if spec.provider.trim().is_empty() {
            err("spec.provider".into(), "is required".into());
        } else if !crate::api::is_known_provider(&spec.provider) {
            err(
                "spec.provider".into(),
                format!(
                    "{:?} is not a provider hostguard knows (known: {}); a policy for it would govern nothing",
                    spec.provider,
                    crate::api::KNOWN_PROVIDERS.join(", ")
                ),
            );
        }
        if spec.api_classes.is_empty() {
            err(
                "spec.apiClasses".into(),
                "must list at least one API class".into(),
            );
        }
        let mut allowed_hosts = Vec::new();
        if spec.endpoints.allowed_hosts.is_empty() {
            err(
                "spec.endpoints.allowedHosts".into(),
                "must list at least one host pattern".into(),
            );
        }
        for (i, raw) in spec.endpoints.allowed_hosts.iter().enumerate() {
            match HostPattern::parse(raw) {
                Ok(p) => allowed_hosts.push(p),
                Err(e) => err(
                    format!("spec.endpoints.allowedHosts[{i}]"),
                    format!("{raw:?}: {e}"),
                ),
            }
        }
        let namespace_selector = match &spec.namespace_selector {
            None => None,
            Some(sel) => match Selector::try_from(sel.clone()) {
                Ok(s) if s.selects_all() => None,
                Ok(s) => Some(s),
                Err(e) => {
                    err(
                        "spec.namespaceSelector".into(),
                        format!(
                            "{} is not a valid label selector: {e}",
                            serde_json::to_string(sel).unwrap_or_default()
                        ),
                    );
                    None
                }
            },
        };
        let mut trust = AiWorkloadTrust::default();
        if let Some(t) = spec.trust.as_ref().and_then(|t| t.ai_workloads.as_ref()) {
            trust.allow_exemptions = t.allow_exemptions;
            for (field, given, slot) in [
                (
                    "namespaceSelector",
                    &t.namespace_selector,
                    &mut trust.namespace_selector,
                ),
                ("selector", &t.selector, &mut trust.selector),
            ] {
                if let Some(sel) = given {
                    match Selector::try_from(sel.clone()) {
                        Ok(s) if s.selects_all() => {}
                        Ok(s) => *slot = Some(s),
                        Err(e) => err(
                            format!("spec.trust.aiWorkloads.{field}"),
                            format!(
                                "{} is not a valid label selector: {e}",
                                serde_json::to_string(sel).unwrap_or_default()
                            ),
                        ),
                    }
                }
            }
        }
        let mut cluster_providers = Vec::new();
        let mut required_nodes = None;
        if let Some(placement) = &spec.placement {
            for (i, p) in placement.cluster_providers.iter().enumerate() {
                if matches!(p, ClusterProvider::Mixed | ClusterProvider::Unknown) {
                    err(
                        format!("spec.placement.clusterProviders[{i}]"),
                        format!(
                            "{:?} is a detected state, not a requirement (use azure, aws, gcp or other)",
                            p.as_str()
                        ),
                    );
                } else {
                    cluster_providers.push(*p);
                }
            }
            if let Some(affinity) = &placement.node_affinity {
                if affinity
                    .preferred_during_scheduling_ignored_during_execution
                    .is_some()
                {
                    err(
                        "spec.placement.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution".into(),
                        "is not supported: a preference cannot keep pods off other nodes".into(),
                    );
                }
                if let Some(required) =
                    &affinity.required_during_scheduling_ignored_during_execution
                {
                    if required.node_selector_terms.is_empty() {
                        err(
                            "spec.placement.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms".into(),
                            "must list at least one term".into(),
                        );
                    }
                    for (i, term) in required.node_selector_terms.iter().enumerate() {
                        let empty = term.match_expressions.as_ref().is_none_or(Vec::is_empty)
                            && term.match_fields.as_ref().is_none_or(Vec::is_empty);
                        if empty {
                            err(
                                format!(
                                    "spec.placement.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"
                                ),
                                "is empty; an empty term matches no node".into(),
                            );
                        }
                    }
                    required_nodes = Some(required.clone());
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CompiledPolicy {
            name,
            provider: spec.provider.trim().to_ascii_lowercase(),
            api_classes: spec.api_classes.clone(),
            action: spec.action,
            excluded_namespaces: spec.excluded_namespaces.iter().cloned().collect(),
            namespace_selector,
            allowed_hosts,
            require_https: spec.endpoints.require_https,
            unresolved: spec.endpoints.unresolved,
            in_cluster: spec.endpoints.in_cluster,
            ambiguous: spec.endpoints.ambiguous,
            redirection: spec.endpoints.redirection,
            cluster_providers,
            required_nodes,
            trust,
            generation: policy.metadata.generation,
        })
    }

    pub fn endpoint_rules(&self) -> EndpointRules<'_> {
        EndpointRules {
            allowed_hosts: &self.allowed_hosts,
            require_https: self.require_https,
        }
    }

    /// Whether the policy applies in a namespace with these labels (None: labels unknown, in
    /// which case a selector matches, failing closed).
    pub fn applies_in(&self, namespace: &str, labels: Option<&crate::snapshot::Labels>) -> bool {
        if self.excluded_namespaces.contains(namespace) {
            return false;
        }
        match (&self.namespace_selector, labels) {
            (None, _) => true,
            (Some(_), None) => true,
            (Some(sel), Some(labels)) => sel.matches(labels),
        }
    }

    /// What is allowed, bounded: the built-in Azure OpenAI family in one phrase when the policy
    /// has all of it, and up to three other patterns by name (`*.openai.azure.com and 4 more
    /// Azure hosts, gateway.contoso.com`), so that messages do not grow with the list but still
    /// name a policy's own hosts.
    pub fn allowed_brief(&self) -> String {
        let names: Vec<&str> = self.allowed_hosts.iter().map(HostPattern::as_str).collect();
        let azure = default::AZURE_OPENAI_HOSTS
            .iter()
            .all(|h| names.contains(h));
        let own: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !(azure && default::AZURE_OPENAI_HOSTS.contains(n)))
            .collect();
        let mut parts: Vec<String> = Vec::new();
        if azure {
            parts.push(format!(
                "{} and {} more Azure hosts",
                default::AZURE_OPENAI_HOSTS[0],
                default::AZURE_OPENAI_HOSTS.len() - 1
            ));
        }
        parts.extend(own.iter().take(3).map(|s| s.to_string()));
        if own.len() > 3 {
            parts.push(format!("+{} more", own.len() - 3));
        }
        if parts.is_empty() {
            return "none".into();
        }
        parts.join(", ")
    }

    /// Whether the allowed hosts are Azure OpenAI's own (the default policy's family), so that
    /// the way to fix a bad endpoint is "use your Azure endpoint".
    pub fn allows_azure_openai(&self) -> bool {
        self.allowed_hosts
            .iter()
            .any(|h| h.as_str().ends_with(".openai.azure.com"))
    }

    /// One way to fix an endpoint at `path` that this policy does not allow, in a short form
    /// for warnings (which fit in 120 characters with their field path) and a long form for
    /// messages. For the OpenAI clients, `OPENAI_BASE_URL` takes precedence over every other
    /// source (openai-python `_client.py`, openai-node `client.ts`;
    /// shared/reference/sdk-env-vars.md), and Azure OpenAI's v1 API is served at
    /// `https://<resource>.openai.azure.com/openai/v1/`. A path that names the variable holding
    /// the URL gets "set it"; one that names a key (the SDK default applies) gets the variable.
    pub fn endpoint_hint(&self, path: &str, variable: Option<&str>) -> (String, String) {
        // `K8sGPT/x spec.ai.baseUrl`, `ConfigMap/x key config.yaml model_list[0]...api_base`: a
        // field of an AI tool's resource or config file, which the env does not override. The
        // field follows the `Kind/name` (and a ConfigMap's `key K`, which has no space); it may
        // hold spaces itself (a model named `my model`), and a variable's name may too.
        let resource_field = path
            .split_once(' ')
            .filter(|(resource, _)| {
                resource.split_once('/').is_some_and(|(kind, _)| {
                    !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric())
                })
            })
            .map(|(resource, rest)| {
                let field = rest
                    .strip_prefix("key ")
                    .and_then(|k| k.split_once(' '))
                    .map_or(rest, |(_, field)| field);
                (resource, field)
            });
        if let Some((resource, field)) = resource_field {
            let target = if self.allows_azure_openai() {
                "your Azure OpenAI endpoint (https://<resource>.openai.azure.com)".to_string()
            } else {
                format!("an allowed host ({})", self.allowed_brief())
            };
            // `spec.ai.baseUrl`, `spec.config.azure.baseUrl.value`: a field to set; a path that
            // names no URL field (`spec.ai.backend`: the tool's default applies) gets the tool.
            let field_lower = field.to_ascii_lowercase();
            let names_url = ["url", "base", "endpoint", "host", "instancename"]
                .iter()
                .any(|w| field_lower.contains(w));
            return if names_url {
                (
                    format!("set it to {target}"),
                    format!("set {field} to {target}"),
                )
            } else {
                (
                    format!("point it at {target}"),
                    format!("configure {resource} for {target}"),
                )
            };
        }
        let var = variable.or_else(|| {
            path.rsplit_once(".env[")
                .and_then(|(_, v)| v.strip_suffix(']'))
                .filter(|v| !v.contains("KEY"))
        });
        if !self.allows_azure_openai() {
            let allowed = self.allowed_brief();
            return match var {
                Some(v) => (
                    format!("set it to an allowed host ({allowed})"),
                    format!("set {v} to an allowed host"),
                ),
                None => (
                    format!("use an allowed host ({allowed})"),
                    "use an allowed host".into(),
                ),
            };
        }
        match var {
            Some(v @ "AZURE_OPENAI_ENDPOINT") => (
                "set it to https://<resource>.openai.azure.com".into(),
                format!("set {v} to your Azure endpoint, https://<resource>.openai.azure.com"),
            ),
            Some(v) => (
                "set it to <azure-endpoint>/openai/v1".into(),
                format!(
                    "set {v} to your Azure endpoint's /openai/v1 (https://<resource>.openai.azure.com/openai/v1)"
                ),
            ),
            None => (
                "set OPENAI_BASE_URL=<azure-endpoint>/openai/v1".into(),
                "set OPENAI_BASE_URL to your Azure endpoint's /openai/v1 (https://<resource>.openai.azure.com/openai/v1)".into(),
            ),
        }
    }

    /// The allowed host patterns as one comma-separated string, for messages.
    pub fn allowed_list(&self) -> String {
        self.allowed_hosts
            .iter()
            .map(HostPattern::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The policies in force, compiled, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
    /// Union of every policy's allowed hosts: the hosts that count as model hosts in
    /// `command`/`args`, and the reference for classifying findings.
    known_hosts: KnownHosts,
}

impl PolicySet {
    /// Compiles every policy. Fails with every problem of every policy.
    pub fn compile<'a>(
        policies: impl IntoIterator<Item = &'a HostingPolicy>,
    ) -> Result<Self, Vec<PolicyError>> {
        let mut compiled: Vec<CompiledPolicy> = Vec::new();
        let mut errors = Vec::new();
        for p in policies {
            match CompiledPolicy::compile(p) {
                // Two policies of one name would silently shadow each other; in a cluster the
                // API server prevents it, in files it is a mistake to stop for.
                Ok(c) if compiled.iter().any(|other| other.name == c.name) => {
                    errors.push(PolicyError {
                        policy: c.name.clone(),
                        path: "metadata.name".into(),
                        message: "is used by another policy given; policy names must be unique"
                            .into(),
                    })
                }
                Ok(c) => compiled.push(c),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self::from_compiled(compiled))
    }

    /// Builds a set from policies already compiled (the cluster cache keeps them compiled and
    /// reports those that fail separately).
    pub fn from_compiled(mut policies: Vec<CompiledPolicy>) -> Self {
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        policies.dedup_by(|a, b| a.name == b.name);
        let known_hosts = KnownHosts::new(
            policies
                .iter()
                .flat_map(|p| p.allowed_hosts.iter().cloned())
                .collect(),
        );
        PolicySet {
            policies,
            known_hosts,
        }
    }

    /// The policies given, or the built-in default when none is given (the offline commands and
    /// `serve --standalone`). Fails with every problem of every policy.
    pub fn compile_or_default(policies: &[HostingPolicy]) -> Result<Self, Vec<PolicyError>> {
        if policies.is_empty() {
            return Self::default_set();
        }
        Self::compile(policies)
    }

    /// The built-in default policy alone, checked: it must compile to exactly one policy that
    /// governs something (a provider hostguard knows, at least one class and allowed host).
    /// Every front calls this at startup, so that a broken default is a startup failure, never
    /// a silent allow-everything.
    pub fn default_set() -> Result<Self, Vec<PolicyError>> {
        Self::check_default(Self::compile([&default_policy()])?)
    }

    fn check_default(set: Self) -> Result<Self, Vec<PolicyError>> {
        let governs = set.policies.len() == 1
            && set.policies.iter().all(|p| {
                crate::api::is_known_provider(&p.provider)
                    && !p.api_classes.is_empty()
                    && !p.allowed_hosts.is_empty()
            });
        if !governs {
            return Err(vec![PolicyError {
                policy: DEFAULT_POLICY_NAME.into(),
                path: "spec".into(),
                message: "the built-in default policy compiles to nothing it could enforce".into(),
            }]);
        }
        Ok(set)
    }

    /// The built-in default policy alone, for tests and benchmarks.
    ///
    /// # Panics
    /// When the built-in default does not compile, which the engine's own tests rule out; the
    /// fronts use [`PolicySet::default_set`] and fail at startup instead.
    pub fn builtin() -> Self {
        match Self::default_set() {
            Ok(set) => set,
            Err(errors) => panic!("the built-in default policy does not compile: {errors:?}"),
        }
    }

    pub fn policies(&self) -> &[CompiledPolicy] {
        &self.policies
    }

    pub fn known_hosts(&self) -> &KnownHosts {
        &self.known_hosts
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_compiles_to_one_enforceable_policy() {
        let set = PolicySet::default_set().expect("the built-in default compiles");
        assert_eq!(set.len(), 1);
        assert_eq!(set.policies()[0].name, DEFAULT_POLICY_NAME);
    }

    #[test]
    fn a_default_that_compiles_to_nothing_is_an_error_not_an_empty_set() {
        let errors = PolicySet::check_default(PolicySet::default()).unwrap_err();
        assert!(
            errors[0].message.contains("nothing it could enforce"),
            "{errors:?}"
        );
        // An unknown provider already fails to compile, with the known ones listed.
        let mut p = default_policy();
        p.spec.provider = "opneai".into();
        assert!(PolicySet::compile([&p]).is_err());
    }

    /// The fix a message gives names what to change: a tool's field (after `Kind/name`, and a
    /// ConfigMap's `key K`, spaces in the field kept), the tool when no URL field is named, the
    /// variable that holds the URL, or OPENAI_BASE_URL for a key whose SDK default applies.
    #[test]
    fn the_hint_names_the_field_the_tool_or_the_variable_to_set() {
        let set = PolicySet::default_set().expect("the built-in default compiles");
        let policy = &set.policies()[0];
        for (path, fix) in [
            (
                "K8sGPT/x spec.ai.baseUrl",
                "set spec.ai.baseUrl to your Azure OpenAI endpoint",
            ),
            (
                "ConfigMap/c key model_list.yaml my model.api_base",
                "set my model.api_base to your Azure OpenAI endpoint",
            ),
            (
                "K8sGPT/x spec.ai.backend",
                "configure K8sGPT/x for your Azure OpenAI endpoint",
            ),
            (
                "spec.containers[0].env[MY BASE]",
                "set MY BASE to your Azure endpoint's /openai/v1",
            ),
            (
                "spec.containers[0].env[OPENAI_API_KEY]",
                "set OPENAI_BASE_URL to your Azure endpoint's /openai/v1",
            ),
        ] {
            let (_, hint) = policy.endpoint_hint(path, None);
            assert!(hint.starts_with(fix), "{path}: {hint}");
        }
    }
}
