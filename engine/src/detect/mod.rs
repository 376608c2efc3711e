//! Detection: from a workload view to facts — which provider each pod template calls, which API
//! class, and every endpoint it may send that traffic to, each with the field path it came from.
//!
//! Signals, in order of trust (design.md, "Detection"):
//! 1. an `AIWorkload` in the namespace whose selector matches the template's labels;
//! 2. the `hostguard.dev/provider` and `hostguard.dev/api-class` annotations (template first, then
//!    the workload's own metadata);
//! 3. inference from every container of every kind: the variables of [`catalogue`], resolved with
//!    Kubernetes' rules ([`crate::workload::env`]), and model URLs in `command`/`args`.
//!
//! Providers are additive: a declaration can add a provider but never hides what the pod spec
//! shows. The API class comes from the most trusted source that states one; a workload that does
//! not say is stateless (fail closed). Detection never decides anything: it reports.

pub mod catalogue;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::ApiClass;
use crate::endpoint::{EndpointRules, HostPattern, mentions_model_host};
use crate::snapshot::{Labels, Snapshot, classes_of_apis};
use crate::workload::env::{EnvValue, PodFacts, PodMeta, ResolvedEnv};
use crate::workload::{ContainerView, PodTemplateView, WorkloadKind, WorkloadView};
use catalogue::{Flavour, KeyKind, Role};

/// Annotation naming the provider(s) a workload calls (comma-separated).
pub const PROVIDER_ANNOTATION: &str = "hostguard.dev/provider";
/// Annotation naming the API class: `stateless`, `stateful` or `mixed`.
pub const API_CLASS_ANNOTATION: &str = "hostguard.dev/api-class";
/// The provider the catalogue describes.
pub const OPENAI: &str = "openai";

/// Where a fact was learned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Signal {
    /// An AIWorkload declared it.
    AiWorkload { name: String },
    /// An annotation declared it.
    Annotation { path: String },
    /// A catalogue variable is set.
    Variable { name: &'static str, path: String },
    /// A model URL appears in `command` or `args`.
    CommandUrl { path: String },
}

/// An endpoint value: a URL to classify, or a value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EndpointValue {
    Url(String),
    Unresolved(String),
}

/// One place the workload may send model traffic to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub value: EndpointValue,
    /// Field path that sets it (or that implies the default).
    pub path: String,
    /// How it was found, for messages: `OPENAI_BASE_URL`, `the SDK default for OPENAI_API_KEY`,
    /// `AIWorkload "chat" spec.endpoint`, ...
    pub via: String,
    /// Where the value was read from when not inline, e.g. `ConfigMap "ai" key "URL"`.
    pub origin: Option<String>,
}

/// One provider used by one pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub provider: String,
    /// The API classes (sorted, unique) when every matching AIWorkload is believed; what a
    /// given policy governs is [`Usage::classes_trusting`] with that policy's trust.
    pub classes: Vec<ApiClass>,
    /// Where the class came from, for reports: `AIWorkload "x"`, `annotation`, `default`.
    pub class_source: String,
    pub signals: Vec<Signal>,
    pub endpoints: Vec<Endpoint>,
    /// The matching AIWorkloads of this provider, with the classes each declares.
    pub declared: Vec<DeclaredClass>,
    /// The classes the `hostguard.dev/api-class` annotations add (sorted, unique).
    pub annotated: Vec<ApiClass>,
    /// Each readable `hostguard.dev/api-class` annotation, to tell the user when one would
    /// have exempted the workload from a policy that governs it.
    pub annotation_claims: Vec<AnnotationClaim>,
}

/// One `hostguard.dev/api-class` annotation as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationClaim {
    /// Field path of the annotation.
    pub path: String,
    pub raw: String,
    /// The classes it names.
    pub classes: Vec<ApiClass>,
}

/// An AIWorkload that matched a template, with what it declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredClass {
    pub namespace: String,
    pub name: String,
    /// The AIWorkload's own labels (a policy may trust only some).
    pub labels: Labels,
    pub classes: Vec<ApiClass>,
}

impl DeclaredClass {
    /// `namespace/name`.
    pub fn qualified(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The classes a usage is governed as under one policy's trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassView<'a> {
    /// Sorted, unique.
    pub classes: Vec<ApiClass>,
    pub source: String,
    /// The believed AIWorkloads that set the classes (empty: the stateless default applies).
    pub declared_by: Vec<&'a DeclaredClass>,
}

impl Usage {
    /// The classes this usage is governed as when only the AIWorkloads `trusted` accepts are
    /// believed: the union of theirs (several declarations: fail closed), else `stateless`;
    /// plus whatever the annotations add. An annotation never removes a class.
    pub fn classes_trusting(&self, trusted: impl Fn(&DeclaredClass) -> bool) -> ClassView<'_> {
        let declared_by: Vec<&DeclaredClass> =
            self.declared.iter().filter(|d| trusted(d)).collect();
        let mut classes: Vec<ApiClass> = Vec::new();
        let mut sources: Vec<String> = Vec::new();
        if declared_by.is_empty() {
            classes.push(ApiClass::Stateless);
            sources.push("default (undeclared counts as stateless)".into());
        } else {
            for d in &declared_by {
                classes.extend(d.classes.iter().copied());
                sources.push(format!("AIWorkload {:?}", d.name));
            }
        }
        if self.annotated.iter().any(|c| !classes.contains(c)) {
            sources.push("annotation".into());
        }
        classes.extend(self.annotated.iter().copied());
        classes.sort();
        classes.dedup();
        ClassView {
            classes,
            source: sources.join(", "),
            declared_by,
        }
    }
}

/// What detection learned about one pod template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateFacts {
    /// Path of the template (`spec.template`; empty for a Pod).
    pub path: String,
    pub usages: Vec<Usage>,
    /// Things the user should know that are not violations (e.g. an unreadable annotation).
    pub notes: Vec<String>,
}

impl TemplateFacts {
    pub fn usage(&self, provider: &str) -> Option<&Usage> {
        self.usages.iter().find(|u| u.provider == provider)
    }
}

/// Detects the facts of every template of a workload. `known_hosts` are host patterns that count
/// as model hosts when they appear in `command`/`args` (the allowed hosts of every policy).
pub fn detect(
    view: &WorkloadView,
    namespace: &str,
    snapshot: &Snapshot,
    known_hosts: &[HostPattern],
) -> Vec<TemplateFacts> {
    view.templates
        .iter()
        .map(|t| detect_template(view, t, namespace, snapshot, known_hosts))
        .collect()
}

fn detect_template(
    view: &WorkloadView,
    template: &PodTemplateView,
    namespace: &str,
    snapshot: &Snapshot,
    known_hosts: &[HostPattern],
) -> TemplateFacts {
    let mut facts = TemplateFacts {
        path: template.path.clone(),
        ..Default::default()
    };
    let mut usages: BTreeMap<String, Draft> = BTreeMap::new();

    // 1. AIWorkloads. Each one that states a class is kept apart: which of them a policy
    // believes is the policy's decision (`spec.trust.aiWorkloads`), made in evaluation.
    for d in snapshot.declarations_for(namespace, &template.labels) {
        let draft = usages.entry(d.provider.clone()).or_default();
        draft.signals.push(Signal::AiWorkload {
            name: d.name.clone(),
        });
        if let Some(endpoint) = &d.endpoint {
            draft.endpoints.push(Endpoint {
                value: EndpointValue::Url(endpoint.clone()),
                path: format!("AIWorkload {}/{} spec.endpoint", d.namespace, d.name),
                via: format!("AIWorkload {:?} spec.endpoint", d.name),
                origin: None,
            });
        }
        draft.declared.push(DeclaredClass {
            namespace: d.namespace.clone(),
            name: d.name.clone(),
            labels: d.labels.clone(),
            classes: d.classes.clone(),
        });
    }

    // 2. Annotations, the template's own and the workload's. They may only add governance: the
    // classes they name are added to what the workload is governed as, never put in place of
    // `stateless`. One that would exempt (`stateful`, `assistants,batches`) is reported.
    let meta_path = template.metadata_path();
    let layers: [(&Labels, String); 2] = [
        (&template.annotations, format!("{meta_path}.annotations")),
        (&view.annotations, "metadata.annotations".to_string()),
    ];
    let mut annotated: Vec<ApiClass> = Vec::new();
    let mut claims: Vec<AnnotationClaim> = Vec::new();
    for (annotations, base) in &layers {
        if let Some(raw) = annotations.get(PROVIDER_ANNOTATION) {
            let path = format!("{base}[{PROVIDER_ANNOTATION}]");
            for provider in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                usages
                    .entry(provider.to_ascii_lowercase())
                    .or_default()
                    .signals
                    .push(Signal::Annotation { path: path.clone() });
            }
        }
        if let Some(raw) = annotations.get(API_CLASS_ANNOTATION) {
            let path = format!("{base}[{API_CLASS_ANNOTATION}]");
            match parse_api_class(raw) {
                Some(classes) => {
                    for c in &classes {
                        if !annotated.contains(c) {
                            annotated.push(*c);
                        }
                    }
                    claims.push(AnnotationClaim {
                        path,
                        raw: raw.clone(),
                        classes,
                    });
                }
                None => facts.notes.push(format!(
                    "{path}: {raw:?} is not an API class (expected stateless, stateful, mixed or a comma-separated list of API names); ignored, the workload counts as stateless"
                )),
            }
        }
    }

    // 3. Inference from every container.
    let rules = EndpointRules {
        allowed_hosts: known_hosts,
        require_https: true,
    };
    let mut opaque_paths: Vec<(String, String)> = Vec::new();
    let pod = PodFacts {
        namespace,
        pod: (view.kind == WorkloadKind::Pod).then_some(PodMeta {
            name: &view.name,
            labels: &template.labels,
            annotations: &template.annotations,
        }),
        enable_service_links: template.spec.enable_service_links.unwrap_or(true),
    };
    for container in template.containers() {
        let env = ResolvedEnv::resolve(&container, &pod, snapshot);
        let inferred = infer_container(&container, &env, &rules);
        for s in env.opaque_sources() {
            opaque_paths.push((s.path, s.why));
        }
        if let Some(inferred) = inferred {
            let draft = usages.entry(OPENAI.to_string()).or_default();
            draft.signals.extend(inferred.signals);
            draft.endpoints.extend(inferred.endpoints);
        }
    }

    // A provider declared with no endpoint anywhere: where would the SDK go?
    if let Some(draft) = usages.get_mut(OPENAI)
        && draft.endpoints.is_empty()
    {
        let path = draft.signals.first().map(signal_path).unwrap_or_default();
        draft.endpoints.push(match opaque_paths.first() {
            Some((opaque_path, why)) => Endpoint {
                value: EndpointValue::Unresolved(format!(
                    "no endpoint is set in the pod spec, and {why} may set one"
                )),
                path: opaque_path.clone(),
                via: "envFrom".into(),
                origin: None,
            },
            None => Endpoint {
                value: EndpointValue::Url(catalogue::OPENAI_SDK_DEFAULT_BASE_URL.into()),
                path,
                via: "the OpenAI SDK default; no endpoint is set".into(),
                origin: None,
            },
        });
    }

    annotated.sort();
    facts.usages = usages
        .into_iter()
        .map(|(provider, d)| {
            let mut usage = Usage {
                provider,
                classes: Vec::new(),
                class_source: String::new(),
                signals: d.signals,
                endpoints: dedup(d.endpoints),
                declared: d.declared,
                annotated: annotated.clone(),
                annotation_claims: claims.clone(),
            };
            let (classes, source) = {
                let view = usage.classes_trusting(|_| true);
                (view.classes, view.source)
            };
            usage.classes = classes;
            usage.class_source = source;
            usage
        })
        .collect();
    facts
}

#[derive(Default)]
struct Draft {
    signals: Vec<Signal>,
    endpoints: Vec<Endpoint>,
    declared: Vec<DeclaredClass>,
}

fn dedup(mut endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
    let mut seen = std::collections::HashSet::new();
    endpoints.retain(|e| seen.insert((e.path.clone(), e.value.clone())));
    endpoints
}

fn signal_path(s: &Signal) -> String {
    match s {
        Signal::AiWorkload { name } => format!("AIWorkload {name}"),
        Signal::Annotation { path }
        | Signal::Variable { path, .. }
        | Signal::CommandUrl { path } => path.clone(),
    }
}

/// `stateless`, `stateful`, `mixed`, or a list of API names.
fn parse_api_class(raw: &str) -> Option<Vec<ApiClass>> {
    match raw.trim() {
        "stateless" => Some(vec![ApiClass::Stateless]),
        "stateful" => Some(vec![ApiClass::Stateful]),
        "mixed" => Some(vec![ApiClass::Stateless, ApiClass::Stateful]),
        other => {
            let apis: Vec<String> = other
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect();
            let well_formed = !apis.is_empty()
                && apis.iter().all(|a| {
                    a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                });
            well_formed.then(|| classes_of_apis(&apis))
        }
    }
}

struct Inferred {
    signals: Vec<Signal>,
    endpoints: Vec<Endpoint>,
}

/// What one container's environment and arguments say about OpenAI usage. None: nothing.
fn infer_container(
    container: &ContainerView<'_>,
    env: &ResolvedEnv,
    rules: &EndpointRules<'_>,
) -> Option<Inferred> {
    let mut signals = Vec::new();
    let mut endpoints = Vec::new();
    let mut flavour: Option<Flavour> = None;
    let mut key: Option<(KeyKind, String, &'static str)> = None;
    let mut endpoint_vars_possible: Vec<&'static str> = Vec::new();

    for variable in catalogue::CATALOGUE {
        if matches!(variable.role, Role::Endpoint(_) | Role::InstanceName(_)) {
            endpoint_vars_possible.push(variable.name);
        }
        let candidates = env.candidates(variable.name);
        // An empty value is the same as unset: SDKs and apps ignore it (or fail at start).
        let set: Vec<_> = candidates
            .into_iter()
            .filter(|c| !matches!(&c.value, EnvValue::Literal(v) if v.trim().is_empty()))
            .collect();
        if set.is_empty() {
            continue;
        }
        for c in &set {
            signals.push(Signal::Variable {
                name: variable.name,
                path: c.path.clone(),
            });
        }
        match variable.role {
            Role::ApiKey(kind) => {
                if key.is_none() || kind == KeyKind::OpenAi {
                    key = Some((kind, set[0].path.clone(), variable.name));
                }
            }
            Role::ApiType => {
                for c in &set {
                    if let EnvValue::Literal(v) = &c.value
                        && let Some(f) = catalogue::api_type_flavour(variable.name, v)
                    {
                        flavour = Some(f);
                    }
                }
            }
            Role::Endpoint(form) => {
                for c in set {
                    match c.value {
                        EnvValue::Literal(v) => {
                            let items: Vec<&str> = match form {
                                catalogue::EndpointForm::Url => vec![v.as_str()],
                                catalogue::EndpointForm::List(sep) => v
                                    .split(sep)
                                    .map(str::trim)
                                    .filter(|s| !s.is_empty())
                                    .collect(),
                            };
                            for item in items {
                                endpoints.push(Endpoint {
                                    value: EndpointValue::Url(item.to_string()),
                                    path: c.path.clone(),
                                    via: variable.name.to_string(),
                                    origin: c.origin.clone(),
                                });
                            }
                        }
                        EnvValue::Unreadable(why) => endpoints.push(Endpoint {
                            value: EndpointValue::Unresolved(why),
                            path: c.path.clone(),
                            via: variable.name.to_string(),
                            origin: c.origin.clone(),
                        }),
                    }
                }
            }
            Role::InstanceName(template) => {
                for c in set {
                    let value = match c.value {
                        EnvValue::Literal(name) => {
                            EndpointValue::Url(template.replace("{}", &name))
                        }
                        EnvValue::Unreadable(why) => EndpointValue::Unresolved(why),
                    };
                    endpoints.push(Endpoint {
                        value,
                        path: c.path.clone(),
                        via: format!("{} (implies {template})", variable.name),
                        origin: c.origin.clone(),
                    });
                }
            }
        }
    }

    // Model URLs in command and args, after expansion with the final environment.
    let lists: [(&str, &[String]); 2] = [("command", container.command), ("args", container.args)];
    for (field, entries) in lists {
        for (i, entry) in entries.iter().enumerate() {
            let path = format!("{}.{field}[{i}]", container.path);
            match env.expand(entry) {
                EnvValue::Literal(text) => {
                    for url in urls_in(&text) {
                        if mentions_model_host(url, rules) {
                            signals.push(Signal::CommandUrl { path: path.clone() });
                            endpoints.push(Endpoint {
                                value: EndpointValue::Url(url.to_string()),
                                path: path.clone(),
                                via: format!("a URL in {field}"),
                                origin: None,
                            });
                        }
                    }
                }
                EnvValue::Unreadable(why) => {
                    if mentions_model_host(entry, rules) {
                        signals.push(Signal::CommandUrl { path: path.clone() });
                        endpoints.push(Endpoint {
                            value: EndpointValue::Unresolved(why),
                            path,
                            via: format!("a URL in {field}"),
                            origin: None,
                        });
                    }
                }
            }
        }
    }

    if flavour == Some(Flavour::NotThisProvider) && endpoints.is_empty() {
        return None;
    }
    if signals.is_empty() {
        return None;
    }

    if endpoints.is_empty() {
        // Usage with no visible endpoint: an opaque envFrom source may set one; otherwise the
        // SDK's own default applies, where it has one.
        let opaque: Vec<_> = endpoint_vars_possible
            .iter()
            .flat_map(|name| env.opaque_sources_for(name))
            .collect();
        let flavour = flavour.or(key.as_ref().map(|(kind, _, _)| match kind {
            KeyKind::OpenAi => Flavour::OpenAi,
            KeyKind::Azure => Flavour::Azure,
        }));
        let anchor = key
            .as_ref()
            .map(|(_, path, _)| path.clone())
            .or_else(|| signals.first().map(signal_path))
            .unwrap_or_else(|| container.path.clone());
        let endpoint = if let Some(source) = opaque.first() {
            Endpoint {
                value: EndpointValue::Unresolved(format!(
                    "no endpoint is set inline, and {} may set one",
                    source.why
                )),
                path: source.path.clone(),
                via: "envFrom".into(),
                origin: None,
            }
        } else {
            match flavour {
                Some(Flavour::Azure) => Endpoint {
                    value: EndpointValue::Unresolved(
                        "Azure OpenAI is configured but no endpoint is set".into(),
                    ),
                    path: anchor,
                    via: "no endpoint variable".into(),
                    origin: None,
                },
                Some(Flavour::Bedrock) => {
                    let region = ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|n| {
                        env.candidates(n).into_iter().find_map(|c| match c.value {
                            EnvValue::Literal(v) if !v.is_empty() => Some(v),
                            _ => None,
                        })
                    });
                    Endpoint {
                        value: match region {
                            Some(r) => EndpointValue::Url(catalogue::BEDROCK_DEFAULT_BASE_URL.replace("{}", &r)),
                            None => EndpointValue::Unresolved(
                                "Amazon Bedrock is selected but neither AWS_BEDROCK_BASE_URL nor AWS_REGION is set".into(),
                            ),
                        },
                        path: anchor,
                        via: "the Amazon Bedrock default endpoint".into(),
                        origin: None,
                    }
                }
                _ => Endpoint {
                    value: EndpointValue::Url(catalogue::OPENAI_SDK_DEFAULT_BASE_URL.into()),
                    path: anchor,
                    via: match &key {
                        Some((_, _, name)) => {
                            format!("the OpenAI SDK default for {name}; no endpoint is set")
                        }
                        None => "the OpenAI SDK default; no endpoint is set".into(),
                    },
                    origin: None,
                },
            }
        };
        endpoints.push(endpoint);
    }

    Some(Inferred { signals, endpoints })
}

/// URL-looking tokens in a command-line string: each whitespace-separated token is cut at its
/// scheme (`--base=https://...` gives `https://...`) and stripped of surrounding quotes.
fn urls_in(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace().filter_map(|token| {
        let sep = token.find("://")?;
        let start = token[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let url = token[start..].trim_end_matches(['"', '\'', ',', ';', ')']);
        (start < sep).then_some(url)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_cut_out_of_flags() {
        let found: Vec<_> =
            urls_in("--api-base=https://x.openai.azure.com/v1 'http://a.svc:80' plain").collect();
        assert_eq!(
            found,
            vec!["https://x.openai.azure.com/v1", "http://a.svc:80"]
        );
    }

    #[test]
    fn api_class_annotation_accepts_lists_of_apis() {
        assert_eq!(
            parse_api_class("assistants,batches"),
            Some(vec![ApiClass::Stateful])
        );
        assert_eq!(
            parse_api_class("chat.completions, assistants"),
            Some(vec![ApiClass::Stateless, ApiClass::Stateful])
        );
        assert_eq!(parse_api_class("state less!"), None);
    }
}
