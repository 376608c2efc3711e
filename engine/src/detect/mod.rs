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

pub mod adapters;
pub mod apps;
pub mod catalogue;
pub mod clients;
pub mod config_files;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::api::ApiClass;
use crate::endpoint::KnownHosts;
use crate::snapshot::{Labels, Snapshot, classes_of_apis};
use crate::workload::env::{EnvValue, PodFacts, PodMeta, ResolvedEnv, VariableName};
use crate::workload::{ContainerView, PodTemplateView, WorkloadKind, WorkloadView, field_path};
use catalogue::{Flavour, KeyKind, Role};

/// Annotation naming the provider(s) a workload calls (comma-separated).
pub const PROVIDER_ANNOTATION: &str = "hostguard.dev/provider";
/// Annotation naming the API class: `stateless`, `stateful` or `mixed`.
pub const API_CLASS_ANNOTATION: &str = "hostguard.dev/api-class";
/// The provider the catalogue describes.
pub use crate::api::OPENAI;

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
    /// A model URL appears in `command`, `args`, an exec hook or probe, an httpGet host, or the
    /// value of a variable the catalogue does not know.
    CommandUrl { path: String },
    /// An AI tool's own resource configures it (see [`adapters`]).
    Resource { path: String },
}

/// An endpoint value: a URL to classify, or a value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EndpointValue {
    Url(String),
    Unresolved(String),
    /// Where some clients send the traffic while others use another visible endpoint (see
    /// [`clients`]): the URL they send it to, and which clients do and why.
    Ambiguous {
        url: String,
        why: String,
    },
    /// A setting that can send the traffic elsewhere than the endpoints name (a proxy, a custom
    /// CA bundle); the text says what.
    Redirected(String),
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
    pub notes: Vec<crate::warning::Warning>,
    /// Config files of the template that do not fit their application's format (the engine
    /// denies: an unreadable model list is never allowed).
    pub malformed: Vec<adapters::Malformed>,
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
    known_hosts: &KnownHosts,
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
    known_hosts: &KnownHosts,
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
    // The template's own annotations (true), then the workload's. A layer's path is written
    // only for an annotation that is there: most objects have neither, and the path is only
    // ever part of a signal or a note.
    let layers: [(&Labels, bool); 2] = [(&template.annotations, true), (&view.annotations, false)];
    let mut annotated: Vec<ApiClass> = Vec::new();
    let mut claims: Vec<AnnotationClaim> = Vec::new();
    for &(annotations, own) in &layers {
        let base = || match own {
            true => format!("{}.annotations", template.metadata_path()),
            false => "metadata.annotations".to_string(),
        };
        if let Some(raw) = annotations.get(PROVIDER_ANNOTATION) {
            let path = format!("{}[{PROVIDER_ANNOTATION}]", base());
            for provider in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                usages
                    .entry(provider.to_ascii_lowercase())
                    .or_default()
                    .signals
                    .push(Signal::Annotation { path: path.clone() });
            }
        }
        if let Some(raw) = annotations.get(API_CLASS_ANNOTATION) {
            let path = format!("{}[{API_CLASS_ANNOTATION}]", base());
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
                None => {
                    let message = format!(
                        "{path}: {raw:?} is not an API class (expected stateless, stateful, mixed or a comma-separated list of API names); ignored, the workload counts as stateless"
                    );
                    facts.notes.push(crate::warning::Warning::new(
                        &path,
                        format!("{raw:?} is not an API class"),
                        "use stateless, stateful or mixed",
                        message,
                    ));
                }
            }
        }
    }

    // 3. Inference from every container.
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
        // An application that reads its model list from a config file: the file decides.
        // Both the config-file applications and the others are recognised by it.
        let repository = apps::repository(container.image);
        if let Some(config) =
            config_files::read(&container, &repository, template, &env, namespace, snapshot)
        {
            facts.malformed.extend(config.malformed);
            if !config.endpoints.is_empty() {
                let draft = usages.entry(OPENAI.to_string()).or_default();
                draft.signals.extend(config.signals);
                draft.endpoints.extend(config.endpoints);
            }
            continue;
        }
        let inferred = infer_container(&container, &repository, &env, known_hosts);
        for s in env.opaque_sources() {
            opaque_paths.push((s.path, s.why));
        }
        if let Some(inferred) = inferred {
            let draft = usages.entry(OPENAI.to_string()).or_default();
            draft.signals.extend(inferred.signals);
            draft.endpoints.extend(inferred.endpoints);
        }
    }

    // Redirection around the endpoints: `/etc/hosts` entries and custom resolvers decide where
    // an allowed host name really goes.
    if let Some(draft) = usages.get_mut(OPENAI) {
        let spec_path = template.field("spec");
        for (i, alias) in template.spec.host_aliases.iter().flatten().enumerate() {
            for (j, name) in alias.hostnames.iter().flatten().enumerate() {
                if known_hosts.mentioned_in(name) {
                    draft.endpoints.push(Endpoint {
                        value: EndpointValue::Unresolved(format!(
                            "hostAliases maps {name:?} to {}, so traffic for that host goes to an address hostguard cannot check",
                            alias.ip
                        )),
                        path: format!("{spec_path}.hostAliases[{i}].hostnames[{j}]"),
                        via: "hostAliases".into(),
                        origin: None,
                    });
                }
            }
        }
        if let Some(servers) = template
            .spec
            .dns_config
            .as_ref()
            .and_then(|d| d.nameservers.as_ref())
            .filter(|n| !n.is_empty())
        {
            let path = format!("{spec_path}.dnsConfig.nameservers");
            let message = format!(
                "{path}: this Pod resolves names through {}, which can answer anything for an allowed model host; hostguard cannot check where its OpenAI traffic goes",
                servers.join(", ")
            );
            facts.notes.push(crate::warning::Warning::new(
                &path,
                "custom DNS can redirect OpenAI traffic",
                "use the cluster DNS",
                message,
            ));
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
        | Signal::CommandUrl { path }
        | Signal::Resource { path } => path.clone(),
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

#[derive(Default)]
struct Inferred {
    signals: Vec<Signal>,
    endpoints: Vec<Endpoint>,
}

/// What the catalogue's variables say beyond signals and endpoints: the client flavour an
/// `*_API_TYPE` selects, and the API key that is set (its kind, path and variable).
#[derive(Default)]
struct Configured {
    flavour: Option<Flavour>,
    key: Option<(KeyKind, String, &'static str)>,
}

/// What one container's environment and arguments say about OpenAI usage. None: nothing.
///
/// In order: the catalogue's variables; model URLs in whatever else the container runs or is
/// given; `httpGet` hooks and probes with a host; where the clients go on their own (see
/// `clients`); with usage but no endpoint, the endpoint that usage implies; last, proxies and
/// CA bundles that redirect what was found.
fn infer_container(
    container: &ContainerView<'_>,
    repository: &str,
    env: &ResolvedEnv,
    hosts: &KnownHosts,
) -> Option<Inferred> {
    let mut found = Inferred::default();
    let names = env.names();
    // Where each name is in the catalogue, looked up once for both walks over the names.
    let places: Vec<Option<usize>> = names
        .iter()
        .map(|n| catalogue::position_any_case(n))
        .collect();
    let configured = catalogue_variables(env, &names, &places, &mut found);
    urls_in_commands(container, env, hosts, &mut found);
    urls_in_other_variables(env, &names, &places, hosts, &mut found);
    http_get_hosts(container, hosts, &mut found);

    // The official image of an application with its own client: its rules, not the SDKs'. An
    // image that only bears its name: both.
    let image = apps::app_of(repository);
    if let Some(apps::Image::Official(app) | apps::Image::LookAlike(app)) = image {
        let routes = apps::routes(app, env);
        found.signals.extend(routes.signals);
        found.endpoints.extend(routes.endpoints);
    }
    if !matches!(image, Some(apps::Image::Official(_))) {
        let routes = clients::routes(env, &names, &found.endpoints);
        found.signals.extend(routes.signals);
        found.endpoints.extend(routes.endpoints);
    }

    if configured.flavour == Some(Flavour::NotThisProvider) && found.endpoints.is_empty() {
        return None;
    }
    if found.signals.is_empty() {
        return None;
    }
    if found.endpoints.is_empty() {
        let implied = implied_endpoint(container, env, &configured, &found.signals);
        found.endpoints.push(implied);
    }
    // Only now, so that a proxy or CA bundle never stands in for the endpoint itself.
    redirections(env, &mut found.endpoints);
    Some(found)
}

/// The catalogue's variables that are set: a signal for each (flavour switches aside), their
/// endpoints, and the key and flavour they configure. `places` are the names' places in the
/// catalogue ([`catalogue::position_any_case`]).
fn catalogue_variables(
    env: &ResolvedEnv,
    names: &[VariableName<'_>],
    places: &[Option<usize>],
    found: &mut Inferred,
) -> Configured {
    let mut configured = Configured::default();
    // Only the catalogue's variables that the container has, in some letter case, can give
    // anything; visited in catalogue order, as the key and flavour rules below rely on.
    let mut present: Vec<usize> = places.iter().flatten().copied().collect();
    present.sort_unstable();
    present.dedup();
    for variable in present.into_iter().map(|i| &catalogue::CATALOGUE[i]) {
        let mut candidates = env.candidates(variable.name);
        // Other spellings of the same name count as duplicates (see `catalogue::position_any_case`).
        for other in names
            .iter()
            .filter(|n| n.as_ref() != variable.name && n.eq_ignore_ascii_case(variable.name))
        {
            candidates.extend(env.candidates_of(other));
        }
        // An empty value is the same as unset: SDKs and apps ignore it (or fail at start). A
        // whitespace-only key is not: openai-python sends it (`_client_auth.py:179`).
        let is_key = matches!(variable.role, Role::ApiKey(_));
        let set: Vec<_> = candidates
            .into_iter()
            .filter(|c| match &c.value {
                EnvValue::Literal(v) if is_key => !v.is_empty(),
                EnvValue::Literal(v) => !v.trim().is_empty(),
                EnvValue::Unreadable(_) => true,
            })
            .collect();
        if set.is_empty() {
            continue;
        }
        // A flavour switch alone (`OPENAI_API_TYPE`, `USE_AZURE_OPENAI`) selects how a client
        // would call, not that one does: with no key and no endpoint the app cannot start a
        // client, so it is not a usage signal by itself (Bedrock through the module client is,
        // see `clients`). A backend selector such as `K8SGPT_BACKEND` is: the app always calls
        // the backend it names.
        if !FLAVOUR_ONLY_SWITCHES.contains(&variable.name) {
            for c in &set {
                found.signals.push(Signal::Variable {
                    name: variable.name,
                    path: c.path(),
                });
            }
        }
        match variable.role {
            Role::ApiKey(kind) => {
                if configured.key.is_none() || kind == KeyKind::OpenAi {
                    configured.key = Some((kind, set[0].path(), variable.name));
                }
            }
            Role::ApiType => {
                for c in &set {
                    if let EnvValue::Literal(v) = &c.value
                        && let Some(f) = catalogue::api_type_flavour(variable.name, v)
                    {
                        configured.flavour = Some(f);
                    }
                }
            }
            Role::Endpoint(form) => {
                for c in &set {
                    let path = c.path();
                    match &c.value {
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
                                found.endpoints.push(Endpoint {
                                    value: EndpointValue::Url(item.to_string()),
                                    path: path.clone(),
                                    via: variable.name.to_string(),
                                    origin: c.origin.clone(),
                                });
                            }
                        }
                        EnvValue::Unreadable(why) => found.endpoints.push(Endpoint {
                            value: EndpointValue::Unresolved(why.clone()),
                            path,
                            via: variable.name.to_string(),
                            origin: c.origin.clone(),
                        }),
                    }
                }
            }
            Role::InstanceName(template) => {
                for c in &set {
                    let value = match &c.value {
                        EnvValue::Literal(name) => EndpointValue::Url(template.replace("{}", name)),
                        EnvValue::Unreadable(why) => EndpointValue::Unresolved(why.clone()),
                    };
                    found.endpoints.push(Endpoint {
                        value,
                        path: c.path(),
                        via: format!("{} (implies {template})", variable.name),
                        origin: c.origin.clone(),
                    });
                }
            }
        }
    }
    configured
}

/// Model URLs in command and args and in exec hooks and probes, after `$(VAR)` expansion with
/// the final environment, as the kubelet expands them.
fn urls_in_commands(
    container: &ContainerView<'_>,
    env: &ResolvedEnv,
    hosts: &KnownHosts,
    found: &mut Inferred,
) {
    // Where each entry is, as its finding names it: built only for an entry that has one.
    enum Place<'p> {
        List(&'static str, usize),
        Exec(&'p str, usize),
    }
    let path = |place: &Place<'_>| match *place {
        Place::List(field, i) => field_path::indexed(&container.path, field, i),
        Place::Exec(path, i) => {
            let mut digits = itoa::Buffer::new();
            field_path::join(&[path, "[", digits.format(i), "]"])
        }
    };
    let via = |place: &Place<'_>| match *place {
        Place::List(field, _) => format!("a URL in {field}"),
        Place::Exec(..) => "a URL in an exec hook or probe".to_string(),
    };
    let mut texts: Vec<(Place<'_>, &str, bool)> = Vec::new();
    let lists: [(&'static str, &[crate::workload::Text<'_>]); 2] =
        [("command", container.command), ("args", container.args)];
    for (field, entries) in lists {
        for (i, entry) in entries.iter().enumerate() {
            // `--api-base $(VAR)` or `--base-url=$(VAR)`: an argument that configures an
            // endpoint, whatever its value turns out to be.
            let configures = endpoint_flag(entry)
                || (i > 0 && endpoint_flag(&entries[i - 1]) && !entries[i - 1].contains('='));
            texts.push((Place::List(field, i), entry, configures));
        }
    }
    for exec in &container.exec {
        for (i, entry) in exec.command.iter().enumerate() {
            texts.push((Place::Exec(&exec.path, i), entry, false));
        }
    }
    for (place, entry, configures) in texts {
        // Without a `$` there is nothing to expand: the entry is its own text.
        let expanded = entry.contains('$').then(|| env.expand(entry));
        let text = match &expanded {
            None => entry,
            Some(EnvValue::Literal(text)) => text.as_str(),
            Some(EnvValue::Unreadable(why)) => {
                let names_a_model_host = hosts.mentioned_in(entry);
                if configures || names_a_model_host {
                    let path = path(&place);
                    // An endpoint flag alone does not make a container an AI workload (a
                    // database client has `--endpoint` too): it only counts where other signals
                    // say the container calls a model.
                    if names_a_model_host {
                        found
                            .signals
                            .push(Signal::CommandUrl { path: path.clone() });
                    }
                    found.endpoints.push(Endpoint {
                        value: EndpointValue::Unresolved(why.clone()),
                        path,
                        via: via(&place),
                        origin: None,
                    });
                }
                continue;
            }
        };
        scan_text(
            text,
            || path(&place),
            || via(&place),
            None,
            hosts,
            &mut found.signals,
            &mut found.endpoints,
        );
    }
}

/// Model URLs in the value of any variable the catalogue does not know (a sidecar's
/// `UPSTREAM_URL`, JSON config such as `OAI_CONFIG_LIST`). `places` are the names' places in the
/// catalogue.
fn urls_in_other_variables(
    env: &ResolvedEnv,
    names: &[VariableName<'_>],
    places: &[Option<usize>],
    hosts: &KnownHosts,
    found: &mut Inferred,
) {
    for (name, place) in names.iter().zip(places) {
        if place.is_some() || NOT_ENDPOINTS.contains(&name.as_ref()) {
            continue;
        }
        for c in env.candidates_of(name) {
            if let EnvValue::Literal(text) = &c.value {
                scan_text(
                    text,
                    || c.path(),
                    || format!("a URL in {name}"),
                    c.origin.as_deref(),
                    hosts,
                    &mut found.signals,
                    &mut found.endpoints,
                );
            }
        }
    }
}

/// An httpGet hook or probe with a host: the kubelet sends that request itself.
fn http_get_hosts(container: &ContainerView<'_>, hosts: &KnownHosts, found: &mut Inferred) {
    for get in &container.http_get {
        if let Some(host) = get.host.filter(|h| hosts.mentioned_in(h)) {
            let scheme = get.scheme.unwrap_or("HTTP").to_ascii_lowercase();
            let url = format!("{scheme}://{host}{}", get.url_path.unwrap_or("/"));
            found.signals.push(Signal::CommandUrl {
                path: get.path.clone(),
            });
            found.endpoints.push(Endpoint {
                value: EndpointValue::Url(url),
                path: format!("{}.host", get.path),
                via: "an httpGet hook or probe".into(),
                origin: None,
            });
        }
    }
}

/// Usage with no visible endpoint: an opaque envFrom source may set one; otherwise the
/// default of the client the flavour or key selects (Azure has none: unresolved).
fn implied_endpoint(
    container: &ContainerView<'_>,
    env: &ResolvedEnv,
    configured: &Configured,
    signals: &[Signal],
) -> Endpoint {
    let opaque = catalogue::CATALOGUE
        .iter()
        .filter(|v| matches!(v.role, Role::Endpoint(_) | Role::InstanceName(_)))
        .find_map(|v| env.opaque_sources_for(v.name).into_iter().next());
    if let Some(source) = opaque {
        return Endpoint {
            value: EndpointValue::Unresolved(format!(
                "no endpoint is set inline, and {} may set one",
                source.why
            )),
            path: source.path,
            via: "envFrom".into(),
            origin: None,
        };
    }
    let key = &configured.key;
    let flavour = configured
        .flavour
        .or(key.as_ref().map(|(kind, _, _)| match kind {
            KeyKind::OpenAi => Flavour::OpenAi,
            KeyKind::Azure => Flavour::Azure,
        }));
    let anchor = key
        .as_ref()
        .map(|(_, path, _)| path.clone())
        .or_else(|| signals.first().map(signal_path))
        .unwrap_or_else(|| container.path.clone());
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
                env.candidates(n).into_iter().find_map(|c| match &c.value {
                    EnvValue::Literal(v) if !v.is_empty() => Some(v.clone()),
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
            via: match key {
                Some((_, _, name)) => {
                    format!("the OpenAI SDK default for {name}; no endpoint is set")
                }
                None => "the OpenAI SDK default; no endpoint is set".into(),
            },
            origin: None,
        },
    }
}

/// A command-line flag that sets a model endpoint: `--api-base`, `--api_base`, `--base-url`,
/// `--openai-base-url`, `--endpoint`, `--azure-endpoint` and the like (with or without `=value`).
fn endpoint_flag(arg: &str) -> bool {
    let Some(flag) = arg.strip_prefix('-') else {
        return false;
    };
    let name = flag.trim_start_matches('-');
    let name = name.split('=').next().unwrap_or(name).as_bytes();
    // Letter case and `_` for `-` do not matter: `--API_BASE` is `--api-base`.
    let fold = |b: u8| {
        if b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        }
    };
    let same =
        |a: &[u8], b: &[u8]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == *y);
    ["api-base", "base-url", "api-url", "endpoint", "api-host"]
        .iter()
        .map(|suffix| suffix.as_bytes())
        .any(|suffix| {
            let n = suffix.len();
            same(name, suffix)
                || (name.len() > n
                    && fold(name[name.len() - n - 1]) == b'-'
                    && same(&name[name.len() - n..], suffix))
        })
}

/// Proxy variables the clients honour for https URLs (httpx and requests read `HTTPS_PROXY` and
/// `ALL_PROXY` in either case; LangChain's `OPENAI_PROXY`), and CA bundle variables (OpenSSL's
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`, requests' `REQUESTS_CA_BUNDLE`, curl's `CURL_CA_BUNDLE`,
/// Node's `NODE_EXTRA_CA_CERTS`).
const PROXY_VARIABLES: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "OPENAI_PROXY",
];
const CA_BUNDLE_VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
];
/// JVM option variables, where `-Dhttps.proxyHost` sets a proxy.
const JAVA_OPTION_VARIABLES: &[&str] = &["JAVA_TOOL_OPTIONS", "JAVA_OPTS", "_JAVA_OPTIONS"];

/// Proxies and custom CA bundles in a container's environment (see [`EndpointValue::Redirected`]).
fn redirections(env: &ResolvedEnv, endpoints: &mut Vec<Endpoint>) {
    let mut push = |c: &crate::workload::env::Candidate, name: &str, what: String| {
        endpoints.push(Endpoint {
            value: EndpointValue::Redirected(what),
            path: c.path(),
            via: name.to_string(),
            origin: c.origin.clone(),
        });
    };
    let set = |c: &crate::workload::env::Candidate| !matches!(&c.value, EnvValue::Literal(v) if v.trim().is_empty());
    for name in PROXY_VARIABLES {
        for c in env.candidates(name).iter().filter(|c| set(c)) {
            push(
                c,
                name,
                format!("{name} sends https traffic through a proxy"),
            );
        }
    }
    for name in CA_BUNDLE_VARIABLES {
        for c in env.candidates(name).iter().filter(|c| set(c)) {
            push(
                c,
                name,
                format!(
                    "{name} trusts a custom CA bundle, so another server can answer for an allowed host"
                ),
            );
        }
    }
    for name in JAVA_OPTION_VARIABLES {
        for c in env.candidates(name) {
            if let EnvValue::Literal(v) = &c.value
                && v.contains("-Dhttps.proxyHost")
            {
                push(
                    &c,
                    name,
                    format!("{name} sets -Dhttps.proxyHost, a proxy for https traffic"),
                );
            }
        }
    }
}

/// Catalogue switches that choose a client's flavour without saying that a client is used.
const FLAVOUR_ONLY_SWITCHES: &[&str] = &["OPENAI_API_TYPE", "USE_AZURE_OPENAI"];

/// Variables whose values name hosts without being endpoints: proxy exclusion lists.
const NOT_ENDPOINTS: &[&str] = &[
    "NO_PROXY",
    "no_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "OPENAI_PROXY",
];

/// Model endpoints in one text (a command-line entry, an env value, JSON or YAML config carried
/// in a value): URLs, and `host:port` or bare hosts without a scheme (an nginx or envoy
/// upstream such as `api.openai.com:443`), read as https.
fn scan_text(
    text: &str,
    path: impl Fn() -> String,
    via: impl Fn() -> String,
    origin: Option<&str>,
    hosts: &KnownHosts,
    signals: &mut Vec<Signal>,
    endpoints: &mut Vec<Endpoint>,
) {
    if !hosts.mentioned_in(text) {
        return;
    }
    let mut found = false;
    for url in urls_in(text).chain(schemeless_hosts_in(text)) {
        if hosts.mentioned_in(&url) {
            found = true;
            endpoints.push(Endpoint {
                value: EndpointValue::Url(url),
                path: path(),
                via: via(),
                origin: origin.map(String::from),
            });
        }
    }
    if found {
        signals.push(Signal::CommandUrl { path: path() });
    }
}

/// URL-looking tokens in a text: each whitespace-separated token is cut at its scheme
/// (`--base=https://...` gives `https://...`), and ends at a quote only once the authority has
/// ended (a `/` after the host): a quote inside the authority may be part of userinfo to the
/// program that reads it (`https://x.openai.azure.com'@evil.com`), so there the whole token is
/// kept and the strict classifier refuses it. Trailing punctuation is dropped.
fn urls_in(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace().flat_map(|token| {
        let mut out = Vec::new();
        let mut rest = token;
        while let Some(sep) = rest.find("://") {
            // The scheme starts after the last character that cannot be part of one (which
            // may be any character, so the cut is past its whole UTF-8 encoding).
            let start = rest[..sep]
                .char_indices()
                .rev()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
                .map_or(0, |(i, c)| i + c.len_utf8());
            let candidate = &rest[start..];
            let after_scheme = sep - start + 3;
            let authority_end = candidate[after_scheme..]
                .find('/')
                .map(|i| i + after_scheme);
            let quote = candidate[after_scheme..]
                .find(['"', '\'', '`'])
                .map(|i| i + after_scheme);
            let end = match (authority_end, quote) {
                (Some(slash), Some(q)) if slash < q => q,
                _ => candidate.len(),
            };
            let url = candidate[..end].trim_end_matches(['"', '\'', '`', ',', ';', ')', ']', '}']);
            if start < sep {
                out.push(url.to_string());
            }
            rest = &candidate[end.max(after_scheme)..];
        }
        out
    })
}

/// `host`, `host:port` or `host:port/path` tokens without a scheme that name a model host, as
/// `https://` URLs. Only plain DNS-name tokens (letters, digits, `-`, `.`, then an optional port
/// and path) count, so lists such as `NO_PROXY` values are not read as endpoints.
fn schemeless_hosts_in(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '`' | ',' | ';' | '=' | '(' | ')' | '[' | ']' | '{' | '}'
            )
    })
    .filter(|t| !t.contains("://") && !t.is_empty())
    .filter_map(|token| {
        let host_end = token.find([':', '/']).unwrap_or(token.len());
        let host = &token[..host_end];
        let plain = host.contains('.')
            && !host.starts_with('.')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let tail = &token[host_end..];
        let tail_ok = match tail.strip_prefix(':') {
            Some(port_and_path) => {
                let port_end = port_and_path.find('/').unwrap_or(port_and_path.len());
                port_end > 0
                    && port_and_path[..port_end]
                        .bytes()
                        .all(|b| b.is_ascii_digit())
            }
            None => tail.is_empty() || tail.starts_with('/'),
        };
        (plain && tail_ok).then(|| format!("https://{token}"))
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
    fn a_url_right_after_a_multibyte_character_is_cut_at_a_character_boundary() {
        // Found by the admission_review fuzz target (fuzz/corpus/admission_review/108-...):
        // `ɗ` is two bytes, and the cut used to land inside it.
        let found: Vec<_> =
            urls_in("--endpointɗhttps://x.openai.azure.com/v1 ünïcode://é").collect();
        assert_eq!(found, vec!["https://x.openai.azure.com/v1", "code://é"]);
        // The scheme is the ASCII run before `://`; the strict classifier then refuses `ttps`.
        let found: Vec<_> = urls_in("ɗttps://x.openai.azure.com\\@evil.com/v1").collect();
        assert_eq!(found, vec!["ttps://x.openai.azure.com\\@evil.com/v1"]);
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
