//! The workload view: every pod template of a pod-bearing object, with its JSON field path, and
//! every container of every kind inside it.
//!
//! This is the only place that knows where each kind keeps its pod template
//! (`spec.template`, `spec.jobTemplate.spec.template`, or the Pod itself). Everything downstream
//! works on [`PodTemplateView`]s and reports findings with the paths built here, so a violation
//! names the exact field a user must change.

pub mod env;
mod env_var;
pub mod kinds;
mod text;

pub use env_var::{
    EnvVarView, FieldSelectorView, KeySelectorView, ResourceSelectorView, SecretKeySelectorView,
    ValueFromView,
};
pub use text::Text;

/// Field paths (`spec.template.spec.containers[0].env[OPENAI_BASE_URL]`), each built in one
/// allocation of its exact size. Paths are built for every entry of every container on every
/// review, and `format!` grows its string piece by piece (a few reallocations per path).
pub mod field_path {
    /// The parts, concatenated.
    pub fn join(parts: &[&str]) -> String {
        parts.concat()
    }

    /// `base.field[i]`.
    pub fn indexed(base: &str, field: &str, i: usize) -> String {
        let mut digits = itoa::Buffer::new();
        join(&[base, ".", field, "[", digits.format(i), "]"])
    }

    /// `base.field[key]`: an `env` entry is named by its variable.
    pub fn keyed(base: &str, field: &str, key: &str) -> String {
        join(&[base, ".", field, "[", key, "]"])
    }

    /// `base.field`.
    pub fn child(base: &str, field: &str) -> String {
        join(&[base, ".", field])
    }
}

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvFromSource, ExecAction, HTTPGetAction, HostAlias, Lifecycle, NodeAffinity, NodeSelectorTerm,
    PodDNSConfig, Probe,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use thiserror::Error;

/// The pod-bearing kinds hostguard evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    Job,
    CronJob,
    /// Another controller's kind with pod templates ([`kinds::KINDS`]).
    Other(&'static kinds::TemplateKind),
}

impl WorkloadKind {
    /// Recognises a kind by its API group and kind name. Any version is accepted, because older
    /// versions (`extensions/v1beta1`, `batch/v1beta1`) keep the template at the same place.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
        Self::from_group_version(group, version, kind)
    }

    /// [`WorkloadKind::from_type`] of the `apiVersion` that `group` and `version` make (an
    /// AdmissionReview's `request.kind` gives them apart), without writing it out.
    pub fn from_parts(group: &str, version: &str, kind: &str) -> Option<Self> {
        if version.contains('/') {
            // `group/version` would be split elsewhere than between these two.
            let api_version = if group.is_empty() {
                version.to_string()
            } else {
                [group, "/", version].concat()
            };
            return Self::from_type(&api_version, kind);
        }
        Self::from_group_version(group, version, kind)
    }

    fn from_group_version(group: &str, version: &str, kind: &str) -> Option<Self> {
        let k = match (group, kind) {
            ("", "Pod") => WorkloadKind::Pod,
            ("", "ReplicationController") => WorkloadKind::ReplicationController,
            ("apps" | "extensions", "Deployment") => WorkloadKind::Deployment,
            ("apps", "StatefulSet") => WorkloadKind::StatefulSet,
            ("apps" | "extensions", "DaemonSet") => WorkloadKind::DaemonSet,
            ("apps" | "extensions", "ReplicaSet") => WorkloadKind::ReplicaSet,
            ("batch", "Job") => WorkloadKind::Job,
            ("batch", "CronJob") => WorkloadKind::CronJob,
            _ => {
                let other = kinds::find(group, kind)?;
                if !other.versions.contains(&version) {
                    return None;
                }
                WorkloadKind::Other(other)
            }
        };
        Some(k)
    }

    /// Where the pod template lives, as JSON object keys from the object root. The Pod is its
    /// own template.
    fn template_keys(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Pod => &[],
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template"],
            WorkloadKind::Other(_) => &[],
            _ => &["spec", "template"],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::ReplicationController => "ReplicationController",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Other(k) => k.kind,
        }
    }
}

/// An object that is not a readable workload of its kind.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ViewError {
    #[error("the object is not a JSON object")]
    NotAnObject,
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
}

/// One pod-bearing object, read.
///
/// Its strings borrow from the JSON it was read from (see [`Text`]).
#[derive(Debug, Clone)]
pub struct WorkloadView<'a> {
    pub kind: WorkloadKind,
    pub name: Text<'a>,
    pub namespace: Option<Text<'a>>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// True when `metadata.deletionTimestamp` is set: the object is being deleted.
    pub deleting: bool,
    /// Every pod template (today one per object; a list so that future kinds with several fit).
    pub templates: Vec<PodTemplateView<'a>>,
}

/// One pod template with its field paths.
#[derive(Debug, Clone)]
pub struct PodTemplateView<'a> {
    /// Path of the template itself: `spec.template`, or empty for a Pod.
    pub path: String,
    /// Where the pod spec is when it is not `<path>.spec`: a PodSpec or a Container inlined in
    /// another controller's object (`spec.predictor` of a KServe InferenceService).
    pub spec_at: Option<String>,
    /// When the template is one Container inlined (`spec.predictor.model`): its path; the
    /// container is `spec.containers[0]`.
    pub container_at: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: PodSpecView<'a>,
}

/// The parts of object metadata hostguard reads. Everything else (`managedFields`, often the
/// largest part of an object the API server sends) is skipped, not parsed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaView<'a> {
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    namespace: Option<Text<'a>>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<IgnoredAny>,
}

impl<'a> MetaView<'a> {
    /// The view of an object with this metadata and these pod templates.
    fn into_view(
        self,
        kind: WorkloadKind,
        templates: Vec<PodTemplateView<'a>>,
    ) -> WorkloadView<'a> {
        WorkloadView {
            kind,
            name: self.name.unwrap_or_default(),
            namespace: self.namespace.filter(|n| !n.is_empty()),
            labels: self.labels.unwrap_or_default(),
            annotations: self.annotations.unwrap_or_default(),
            deleting: self.deletion_timestamp.is_some(),
            templates,
        }
    }
}

/// The parts of a pod spec hostguard reads: containers of every kind and node affinity, with
/// the Kubernetes types for what matters (`EnvFromSource`, `NodeAffinity`; `EnvVar` as
/// [`EnvVarView`]). Other fields are skipped, so a malformed field hostguard never reads cannot
/// fail a review.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView<'a> {
    #[serde(borrow)]
    pub containers: Option<Vec<ContainerSpec<'a>>>,
    #[serde(borrow)]
    pub init_containers: Option<Vec<ContainerSpec<'a>>>,
    #[serde(borrow)]
    pub ephemeral_containers: Option<Vec<ContainerSpec<'a>>>,
    pub affinity: Option<AffinityView>,
    /// `/etc/hosts` entries: mapping an allowed model host to an IP sends its traffic there.
    pub host_aliases: Option<Vec<HostAlias>>,
    /// Custom resolvers can answer anything for an allowed model host.
    pub dns_config: Option<PodDNSConfig>,
    /// Whether the kubelet sets the service-link variables of the namespace's Services.
    pub enable_service_links: Option<bool>,
    /// `nodeSelector`, ANDed by the scheduler with the required node affinity.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Volumes, of which ConfigMap and Secret volumes matter: an AI tool reads its config file
    /// from one (see `detect::config_files`).
    #[serde(borrow)]
    pub volumes: Option<Vec<VolumeView<'a>>>,
}

/// One volume: its name and, when it is one, the ConfigMap it projects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeView<'a> {
    #[serde(default, borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub config_map: Option<ConfigMapVolumeView<'a>>,
    pub secret: Option<IgnoredAny>,
    pub projected: Option<IgnoredAny>,
}

/// `volumes[].configMap`: the ConfigMap, and `items` when only some keys are projected (each
/// `key` to a relative `path`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapVolumeView<'a> {
    #[serde(default, borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub items: Option<Vec<KeyToPathView<'a>>>,
}

/// One `items` entry of a ConfigMap volume.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyToPathView<'a> {
    #[serde(default, borrow)]
    pub key: Text<'a>,
    #[serde(default, borrow)]
    pub path: Text<'a>,
}

/// One `volumeMounts` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMountView<'a> {
    #[serde(default, borrow)]
    pub name: Text<'a>,
    #[serde(default, borrow)]
    pub mount_path: Text<'a>,
    #[serde(borrow)]
    pub sub_path: Option<Text<'a>>,
}

impl PodSpecView<'_> {
    /// The terms of `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub fn required_node_terms(&self) -> &[NodeSelectorTerm] {
        self.affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|r| r.node_selector_terms.as_slice())
            .unwrap_or_default()
    }
}

/// `affinity`, of which only node affinity matters here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AffinityView {
    pub node_affinity: Option<NodeAffinity>,
}

/// One container (regular, init or ephemeral: the fields read are the same).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec<'a> {
    #[serde(default, borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub env: Option<Vec<EnvVarView<'a>>>,
    pub env_from: Option<Vec<EnvFromSource>>,
    #[serde(borrow)]
    pub command: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub args: Option<Vec<Text<'a>>>,
    /// Hooks and probes run commands and requests of their own, which can carry model traffic
    /// (`curl https://api.openai.com/...` in a `postStart` hook).
    ///
    /// Boxed, as rare and large (a `Probe` is some 400 bytes): a container is moved as it is
    /// read and as its list grows, and unboxed these were most of what was moved.
    pub lifecycle: Option<Box<Lifecycle>>,
    pub liveness_probe: Option<Box<Probe>>,
    pub readiness_probe: Option<Box<Probe>>,
    pub startup_probe: Option<Box<Probe>>,
    /// The image names the application, and so which config file it reads.
    #[serde(borrow)]
    pub image: Option<Text<'a>>,
    #[serde(borrow)]
    pub volume_mounts: Option<Vec<VolumeMountView<'a>>>,
}

/// A command a container runs besides its entrypoint: an `exec` hook or probe.
#[derive(Debug, Clone)]
pub struct ExecView<'a> {
    /// e.g. `spec.containers[0].lifecycle.postStart.exec.command`
    pub path: String,
    pub command: &'a [String],
}

/// An `httpGet` hook or probe that names a `host`: the kubelet sends it there. (One without a
/// host goes to the Pod's own IP, so it is not kept.)
#[derive(Debug, Clone)]
pub struct HttpGetView<'a> {
    /// e.g. `spec.containers[0].livenessProbe.httpGet`
    pub path: String,
    pub scheme: Option<&'a str>,
    pub host: Option<&'a str>,
    pub url_path: Option<&'a str>,
}

/// The `exec` and `httpGet` actions of one hook or probe at `at()`. The path is written only
/// for an action that is kept: most probes are an `httpGet` of the Pod itself.
fn push_actions<'a>(
    at: impl Fn() -> String,
    exec_action: Option<&'a ExecAction>,
    http_get_action: Option<&'a HTTPGetAction>,
    exec: &mut Vec<ExecView<'a>>,
    http_get: &mut Vec<HttpGetView<'a>>,
) {
    if let Some(cmd) = exec_action.and_then(|e| e.command.as_deref()) {
        exec.push(ExecView {
            path: field_path::join(&[&at(), ".exec.command"]),
            command: cmd,
        });
    }
    if let Some(g) = http_get_action.filter(|g| g.host.is_some()) {
        http_get.push(HttpGetView {
            path: field_path::child(&at(), "httpGet"),
            scheme: g.scheme.as_deref(),
            host: g.host.as_deref(),
            url_path: g.path.as_deref(),
        });
    }
}

impl ContainerSpec<'_> {
    fn view(&self, path: String) -> ContainerView<'_> {
        let mut exec = Vec::new();
        let mut http_get = Vec::new();
        // Hooks and probes carry the same two actions the kubelet runs itself.
        let mut actions =
            |at: &dyn Fn() -> String, e, g| push_actions(at, e, g, &mut exec, &mut http_get);
        if let Some(l) = &self.lifecycle {
            for (name, hook) in [("postStart", &l.post_start), ("preStop", &l.pre_stop)] {
                if let Some(h) = hook {
                    let at = || field_path::join(&[&path, ".lifecycle.", name]);
                    actions(&at, h.exec.as_ref(), h.http_get.as_ref());
                }
            }
        }
        let probes = [
            ("livenessProbe", &self.liveness_probe),
            ("readinessProbe", &self.readiness_probe),
            ("startupProbe", &self.startup_probe),
        ];
        for (name, probe) in probes {
            if let Some(p) = probe {
                actions(
                    &|| field_path::child(&path, name),
                    p.exec.as_ref(),
                    p.http_get.as_ref(),
                );
            }
        }
        ContainerView {
            path,
            name: &self.name,
            env: self.env.as_deref().unwrap_or_default(),
            env_from: self.env_from.as_deref().unwrap_or_default(),
            command: self.command.as_deref().unwrap_or_default(),
            args: self.args.as_deref().unwrap_or_default(),
            image: self.image.as_deref().unwrap_or_default(),
            volume_mounts: self.volume_mounts.as_deref().unwrap_or_default(),
            exec,
            http_get,
        }
    }
}

impl PodTemplateView<'_> {
    /// Path of a field under the template, e.g. `spec.template.spec` + `spec`.
    pub fn field(&self, rel: &str) -> String {
        if let Some(spec) = &self.spec_at {
            if rel == "spec" {
                return spec.clone();
            }
            if let Some(rest) = rel.strip_prefix("spec.") {
                return field_path::child(spec, rest);
            }
        }
        if self.path.is_empty() {
            rel.to_string()
        } else {
            field_path::child(&self.path, rel)
        }
    }

    /// Path of the template's metadata.
    pub fn metadata_path(&self) -> String {
        self.field("metadata")
    }

    /// Every container of every kind, in a stable order: init containers first (they run
    /// first), then containers, then ephemeral containers.
    pub fn containers(&self) -> Vec<ContainerView<'_>> {
        if let Some(at) = &self.container_at {
            return self
                .spec
                .containers
                .iter()
                .flatten()
                .take(1)
                .map(|c| c.view(at.clone()))
                .collect();
        }
        let spec_path = self.field("spec");
        let kinds = [
            ("initContainers", &self.spec.init_containers),
            ("containers", &self.spec.containers),
            ("ephemeralContainers", &self.spec.ephemeral_containers),
        ];
        let mut out = Vec::new();
        for (field, list) in kinds {
            for (i, c) in list.iter().flatten().enumerate() {
                out.push(c.view(field_path::indexed(&spec_path, field, i)));
            }
        }
        out
    }
}

/// The parts of one container that detection reads; the same shape for all three kinds.
#[derive(Debug, Clone)]
pub struct ContainerView<'a> {
    /// e.g. `spec.template.spec.containers[0]`
    pub path: String,
    pub name: &'a str,
    pub env: &'a [EnvVarView<'a>],
    pub env_from: &'a [EnvFromSource],
    pub command: &'a [Text<'a>],
    pub args: &'a [Text<'a>],
    pub image: &'a str,
    pub volume_mounts: &'a [VolumeMountView<'a>],
    /// `exec` hooks and probes.
    pub exec: Vec<ExecView<'a>>,
    /// `httpGet` hooks and probes that name a host.
    pub http_get: Vec<HttpGetView<'a>>,
}

/// Reads an object. `Ok(None)` when its type is not a pod-bearing kind.
pub fn read(object: &Value) -> Result<Option<WorkloadView<'_>>, ViewError> {
    let Some(map) = object.as_object() else {
        return Err(ViewError::NotAnObject);
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind_name = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(kind) = WorkloadKind::from_type(api_version, kind_name) else {
        return Ok(None);
    };
    read_as(kind, object).map(Some)
}

/// Reads an object whose kind is already known (an AdmissionReview names it in `request.kind`).
pub fn read_as(kind: WorkloadKind, object: &Value) -> Result<WorkloadView<'_>, ViewError> {
    if !object.is_object() {
        return Err(ViewError::NotAnObject);
    }
    let meta: MetaView = parse_at(object, &["metadata"])?.unwrap_or_default();
    if let WorkloadKind::Other(other) = kind {
        return Ok(meta.into_view(kind, other_templates(other, object)?));
    }

    let keys = kind.template_keys();
    let template_path = keys.join(".");
    let (t_labels, t_annotations, spec) = if keys.is_empty() {
        let spec: PodSpecView = parse_at(object, &["spec"])?.unwrap_or_default();
        (
            meta.labels.clone().unwrap_or_default(),
            meta.annotations.clone().unwrap_or_default(),
            spec,
        )
    } else {
        let mut meta_keys = keys.to_vec();
        meta_keys.push("metadata");
        let t_meta: MetaView = parse_at(object, &meta_keys)?.unwrap_or_default();
        let mut spec_keys = keys.to_vec();
        spec_keys.push("spec");
        let spec: PodSpecView = parse_at(object, &spec_keys)?.unwrap_or_default();
        (
            t_meta.labels.unwrap_or_default(),
            t_meta.annotations.unwrap_or_default(),
            spec,
        )
    };

    let template = PodTemplateView {
        path: template_path,
        spec_at: None,
        container_at: None,
        labels: t_labels,
        annotations: t_annotations,
        spec,
    };
    Ok(meta.into_view(kind, vec![template]))
}

/// The `apiVersion` and `kind` an object's text carries (absent when it leaves them out), for
/// the caller to compare with the type the review names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeFields {
    pub api_version: Option<Value>,
    pub kind: Option<Value>,
}

/// One built-in pod-bearing object as its JSON text has it, with `S` the shape of its `spec`:
/// the fields [`read_as`] reads, and nothing else.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectText<'a, S> {
    api_version: Option<Value>,
    kind: Option<Value>,
    #[serde(borrow)]
    metadata: Option<MetaView<'a>>,
    spec: Option<S>,
}

/// `spec` of a Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController or Job.
#[derive(Deserialize)]
struct ControllerSpecText<'a> {
    #[serde(borrow)]
    template: Option<TemplateText<'a>>,
}

/// `spec` of a CronJob: the Job's spec is one level further down.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CronJobSpecText<'a> {
    #[serde(borrow)]
    job_template: Option<JobTemplateText<'a>>,
}

#[derive(Deserialize)]
struct JobTemplateText<'a> {
    #[serde(borrow)]
    spec: Option<ControllerSpecText<'a>>,
}

/// A pod template: `spec.template` (or `spec.jobTemplate.spec.template`).
#[derive(Deserialize)]
struct TemplateText<'a> {
    #[serde(borrow)]
    metadata: Option<MetaView<'a>>,
    #[serde(borrow)]
    spec: Option<PodSpecView<'a>>,
}

/// Reads a built-in pod-bearing object (not another controller's kind) straight from its JSON
/// text, with no `Value` tree in between: the webhook's common case, where building the tree
/// and dropping it again cost more than the decision.
///
/// When this succeeds its view is the one [`read_as`] gives for the parsed tree: the same types
/// read the same fields, and a `null` stands for an absent field in both. None when the text is
/// not of that shape, whatever the reason (a field of the wrong type, a duplicate key, which
/// the typed reading refuses and the tree resolves to its last value): the caller then reads
/// the tree, which gives the answer it always gave, naming the field at fault.
pub fn read_text(kind: WorkloadKind, text: &str) -> Option<(TypeFields, WorkloadView<'_>)> {
    let mut de = serde_json::Deserializer::from_str(text);
    let read = read_from(kind, &mut de).ok()?;
    de.end().ok()?;
    Some(read)
}

/// [`read_text`] from a deserializer positioned at the object: the review's own parse reads a
/// built-in pod-bearing object this way when `request.kind` comes before it, so that its text is
/// read once. An error whenever [`read_text`] would give None (the caller then reads the text).
pub fn read_from<'de, D: serde::Deserializer<'de>>(
    kind: WorkloadKind,
    d: D,
) -> Result<(TypeFields, WorkloadView<'de>), D::Error> {
    let from_template = |t: Option<TemplateText<'de>>| {
        t.map_or_else(Default::default, |t| {
            let meta = t.metadata.unwrap_or_default();
            (
                meta.labels.unwrap_or_default(),
                meta.annotations.unwrap_or_default(),
                t.spec.unwrap_or_default(),
            )
        })
    };
    let (types, meta, (labels, annotations, spec)) = match kind {
        WorkloadKind::Other(_) => {
            return Err(serde::de::Error::custom(
                "another controller's kind is read from its tree",
            ));
        }
        WorkloadKind::Pod => {
            let (types, meta, spec) = parse_object::<_, PodSpecView>(d)?;
            // A Pod is its own template: its labels and annotations are the template's.
            let template = (
                meta.labels.clone().unwrap_or_default(),
                meta.annotations.clone().unwrap_or_default(),
                spec.unwrap_or_default(),
            );
            (types, meta, template)
        }
        WorkloadKind::CronJob => {
            let (types, meta, spec) = parse_object::<_, CronJobSpecText>(d)?;
            let template = spec
                .and_then(|s| s.job_template)
                .and_then(|j| j.spec)
                .and_then(|s| s.template);
            (types, meta, from_template(template))
        }
        _ => {
            let (types, meta, spec) = parse_object::<_, ControllerSpecText>(d)?;
            (types, meta, from_template(spec.and_then(|s| s.template)))
        }
    };
    let template = PodTemplateView {
        path: kind.template_keys().join("."),
        spec_at: None,
        container_at: None,
        labels,
        annotations,
        spec,
    };
    Ok((types, meta.into_view(kind, vec![template])))
}

/// The type fields, metadata and `spec` (of shape `S`) of an object; an error when it does not
/// have that shape.
fn parse_object<'de, D: serde::Deserializer<'de>, S: Deserialize<'de>>(
    d: D,
) -> Result<(TypeFields, MetaView<'de>, Option<S>), D::Error> {
    let o = ObjectText::<'de, S>::deserialize(d)?;
    let types = TypeFields {
        api_version: o.api_version,
        kind: o.kind,
    };
    Ok((types, o.metadata.unwrap_or_default(), o.spec))
}

/// Why an object of a kind in [`kinds::KINDS`] is not read, when its version is not one the
/// table knows: reported as not understood (a warning), never allowed silently.
pub fn not_understood(object: &Value) -> Option<String> {
    let api_version = object.get("apiVersion").and_then(Value::as_str)?;
    let kind = object.get("kind").and_then(Value::as_str)?;
    let (group, _) = api_version.rsplit_once('/')?;
    let known = kinds::find(group, kind)?;
    Some(format!(
        "apiVersion: {api_version} {kind} is not understood: hostguard reads the pod templates of {kind} of {group} versions {}; they were not checked",
        known.versions.join(", ")
    ))
}

/// Every pod template of another controller's object, following the table's paths.
fn other_templates<'v>(
    kind: &kinds::TemplateKind,
    object: &'v Value,
) -> Result<Vec<PodTemplateView<'v>>, ViewError> {
    let mut out = Vec::new();
    for (path, shape) in kind.templates {
        for (at, value) in walk(object, path)? {
            if !value.is_object() {
                return Err(ViewError::Malformed {
                    path: at,
                    message: format!("must be an object ({shape:?} of a {})", kind.kind),
                });
            }
            let named = |e: ViewError| match e {
                ViewError::Malformed { path, message } => ViewError::Malformed {
                    path: format!("{at}.{}", path.trim_start_matches('.'))
                        .trim_end_matches('.')
                        .to_string(),
                    message,
                },
                other => other,
            };
            let template = match shape {
                kinds::Shape::Template => {
                    let meta: MetaView = parse_at(value, &["metadata"])
                        .map_err(named)?
                        .unwrap_or_default();
                    let spec: PodSpecView = parse_at(value, &["spec"])
                        .map_err(named)?
                        .unwrap_or_default();
                    PodTemplateView {
                        path: at,
                        spec_at: None,
                        container_at: None,
                        labels: meta.labels.unwrap_or_default(),
                        annotations: meta.annotations.unwrap_or_default(),
                        spec,
                    }
                }
                kinds::Shape::PodSpec => {
                    let spec: PodSpecView = parse_value(value).map_err(named)?.unwrap_or_default();
                    PodTemplateView {
                        path: at.clone(),
                        spec_at: Some(at),
                        container_at: None,
                        labels: BTreeMap::new(),
                        annotations: BTreeMap::new(),
                        spec,
                    }
                }
                kinds::Shape::Container => {
                    let container: ContainerSpec =
                        parse_value(value).map_err(named)?.unwrap_or_default();
                    let spec = PodSpecView {
                        containers: Some(vec![container]),
                        volumes: value
                            .get("volumes")
                            .and_then(|v| Deserialize::deserialize(v).ok()),
                        ..Default::default()
                    };
                    PodTemplateView {
                        path: at.clone(),
                        spec_at: Some(at.clone()),
                        container_at: Some(at),
                        labels: BTreeMap::new(),
                        annotations: BTreeMap::new(),
                        spec,
                    }
                }
            };
            out.push(template);
        }
    }
    Ok(out)
}

fn parse_value<'v, T: Deserialize<'v>>(value: &'v Value) -> Result<Option<T>, ViewError> {
    parse_at(value, &[])
}

/// The values a table path leads to, with their paths (`spec.workerGroupSpecs[1].template`).
/// An intermediate value of the wrong shape is an error naming it.
fn walk<'a>(object: &'a Value, path: &str) -> Result<Vec<(String, &'a Value)>, ViewError> {
    let mut current: Vec<(String, &'a Value)> = vec![(String::new(), object)];
    for segment in path.split('.') {
        let (key, each) = match segment.strip_suffix("[]") {
            Some(k) => (k, true),
            None => (segment, false),
        };
        let mut next = Vec::new();
        for (at, v) in current {
            if !v.is_object() {
                return Err(ViewError::Malformed {
                    path: at,
                    message: "must be an object".into(),
                });
            }
            let here = if at.is_empty() {
                key.to_string()
            } else {
                format!("{at}.{key}")
            };
            let Some(child) = v.get(key).filter(|c| !c.is_null()) else {
                continue;
            };
            if each {
                let Some(items) = child.as_array() else {
                    return Err(ViewError::Malformed {
                        path: here,
                        message: "must be a list".into(),
                    });
                };
                for (i, item) in items.iter().enumerate() {
                    next.push((format!("{here}[{i}]"), item));
                }
            } else {
                next.push((here, child));
            }
        }
        current = next;
    }
    Ok(current)
}

/// The raw JSON of the pod template (for comparing an UPDATE's old and new templates).
pub fn template_value(kind: WorkloadKind, object: &Value) -> Option<&Value> {
    let keys = kind.template_keys();
    if keys.is_empty() {
        // A Pod: its template is the spec plus the labels and annotations.
        return object.get("spec");
    }
    keys.iter().try_fold(object, |v, k| v.get(k))
}

/// Names of the ConfigMaps an object's containers read (`configMapKeyRef`, `configMapRef`, and
/// the `configMap` of a volume or a projected volume's source, where config files come from), so
/// that the fronts can make them available before the engine decides (the engine does no I/O).
pub fn config_map_refs(object: &Value, out: &mut std::collections::BTreeSet<String>) {
    match object {
        Value::Object(map) => {
            for (key, child) in map {
                if (key == "configMapKeyRef" || key == "configMapRef" || key == "configMap")
                    && let Some(name) = child.get("name").and_then(Value::as_str)
                {
                    out.insert(name.to_string());
                } else {
                    config_map_refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| config_map_refs(v, out)),
        _ => {}
    }
}

/// [`config_map_refs`] over an object's JSON text, without building its tree: the same names
/// for any JSON object without duplicate keys (the API server writes none). A text that names
/// no ConfigMap field, not even through an escape, is not walked at all.
pub fn config_map_refs_text(
    text: &str,
    out: &mut std::collections::BTreeSet<String>,
) -> Result<(), serde_json::Error> {
    if memchr::memmem::find(text.as_bytes(), b"configMap").is_none()
        && memchr::memchr(b'\\', text.as_bytes()).is_none()
    {
        return Ok(());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde::de::DeserializeSeed::deserialize(refs_text::Walk(out), &mut de)?;
    de.end()
}

/// The streaming walk of [`config_map_refs_text`].
mod refs_text {
    use std::collections::BTreeSet;

    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    /// A key: one naming a ConfigMap reference, `name`, or another.
    enum Key {
        Reference,
        Name,
        Other,
    }

    impl<'de> serde::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct KeyVisitor;
            impl Visitor<'_> for KeyVisitor {
                type Value = Key;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object key")
                }
                fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                    Ok(match key {
                        "configMapKeyRef" | "configMapRef" | "configMap" => Key::Reference,
                        "name" => Key::Name,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_str(KeyVisitor)
        }
    }

    /// Any value: every reference inside it goes to the set.
    pub(super) struct Walk<'o>(pub(super) &'o mut BTreeSet<String>);

    /// The value of a reference key: its `name` when that is a string (and then nothing inside
    /// it), else every reference inside it, as [`super::config_map_refs`] has it.
    struct Reference<'o>(&'o mut BTreeSet<String>);

    /// The value of `name` inside a reference: the name when it is a string, else walked.
    struct NameValue<'o>(&'o mut BTreeSet<String>);

    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> DeserializeSeed<'de> for Reference<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> DeserializeSeed<'de> for NameValue<'_> {
        type Value = Option<String>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
            d.deserialize_any(self)
        }
    }

    /// The entries of an object, references among them to `out`.
    fn entries<'de, A: MapAccess<'de>>(
        map: &mut A,
        out: &mut BTreeSet<String>,
        mut on_name: impl FnMut(&mut A, &mut BTreeSet<String>) -> Result<(), A::Error>,
    ) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Reference => map.next_value_seed(Reference(&mut *out))?,
                Key::Name => on_name(map, out)?,
                Key::Other => map.next_value_seed(Walk(&mut *out))?,
            }
        }
        Ok(())
    }

    /// The scalars of every visitor here: nothing to collect.
    macro_rules! scalars {
        ($value:expr) => {
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok($value)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok($value)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok($value)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok($value)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok($value)
            }
        };
    }

    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        scalars!(());
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Walk(&mut *self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            entries(&mut map, self.0, |map, out| map.next_value_seed(Walk(out)))
        }
    }

    impl<'de> Visitor<'de> for Reference<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        scalars!(());
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
            Walk(self.0).visit_seq(seq)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            // What is inside counts only when the reference has no string name.
            let mut inside = BTreeSet::new();
            let mut name = None;
            entries(&mut map, &mut inside, |map, inside| {
                name = map.next_value_seed(NameValue(inside))?;
                Ok(())
            })?;
            match name {
                Some(name) => {
                    self.0.insert(name);
                }
                None => self.0.append(&mut inside),
            }
            Ok(())
        }
    }

    impl<'de> Visitor<'de> for NameValue<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        scalars!(None);
        fn visit_str<E>(self, name: &str) -> Result<Option<String>, E> {
            Ok(Some(name.to_string()))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<String>, A::Error> {
            Walk(self.0).visit_seq(seq).map(|()| None)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<String>, A::Error> {
            Walk(self.0).visit_map(map).map(|()| None)
        }
    }
}

/// Deserialises the value at `keys`, naming the exact field on failure.
fn parse_at<'v, T: Deserialize<'v>>(
    object: &'v Value,
    keys: &[&str],
) -> Result<Option<T>, ViewError> {
    let Some(value) = keys.iter().try_fold(object, |v, k| v.get(k)) else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    // The fast path parses without tracking the path; only a failure pays for a second pass
    // that names the field.
    if let Ok(parsed) = T::deserialize(value) {
        return Ok(Some(parsed));
    }
    serde_path_to_error::deserialize(value)
        .map(Some)
        .map_err(|e| {
            let inner = e.path().to_string();
            let mut path = keys.join(".");
            if inner != "." && !inner.is_empty() {
                path.push('.');
                path.push_str(&inner);
            }
            ViewError::Malformed {
                path,
                message: e.into_inner().to_string(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::{
        EnvVarView, FieldSelectorView, KeySelectorView, ResourceSelectorView,
        SecretKeySelectorView, ValueFromView,
    };
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource};

    /// k8s-openapi's `EnvVarSource` as the view's fields.
    fn source_as_view(s: EnvVarSource) -> ValueFromView<'static> {
        ValueFromView {
            config_map_key_ref: s.config_map_key_ref.map(|r| KeySelectorView {
                key: r.key.into(),
                name: r.name.into(),
                optional: r.optional,
            }),
            field_ref: s.field_ref.map(|r| FieldSelectorView {
                api_version: r.api_version.map(Into::into),
                field_path: r.field_path.into(),
            }),
            resource_field_ref: s.resource_field_ref.map(|r| ResourceSelectorView {
                container_name: r.container_name.map(Into::into),
                divisor: r.divisor,
                resource: r.resource.into(),
            }),
            secret_key_ref: s.secret_key_ref.map(|r| SecretKeySelectorView {
                key: r.key.into(),
                name: r.name.into(),
                optional: r.optional,
            }),
        }
    }

    /// What k8s-openapi's `EnvVar` reads from `text`, as the view's fields, or its error.
    fn as_k8s_openapi_reads(text: &str) -> Result<EnvVarView<'static>, String> {
        serde_json::from_str::<EnvVar>(text)
            .map(|v| EnvVarView {
                name: v.name.into(),
                value: v.value.map(Into::into),
                value_from: v.value_from.map(|s| Box::new(source_as_view(s))),
            })
            .map_err(|e| e.to_string())
    }

    /// The kubelet sends an `httpGet` without a host to the Pod's own IP, so only the hooks and
    /// probes that name a host are kept, each with its path; `exec` actions are all kept.
    #[test]
    fn only_http_gets_that_name_a_host_are_kept_with_their_paths() {
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "a",
                "lifecycle": {
                    "postStart": {"httpGet": {"host": "hooks.example", "port": 80}},
                    "preStop": {"exec": {"command": ["stop"]}}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                "readinessProbe": {"httpGet": {"host": "ready.example", "port": 443,
                    "scheme": "HTTPS", "path": "/r"}},
                "startupProbe": {"exec": {"command": ["check"]},
                    "httpGet": {"port": 8080}}}]}
        });
        let view = super::read(&pod).expect("a Pod").expect("pod-bearing");
        let containers = view.templates[0].containers();
        let gets: Vec<_> = containers[0]
            .http_get
            .iter()
            .map(|g| (g.path.as_str(), g.host, g.scheme, g.url_path))
            .collect();
        assert_eq!(
            gets,
            [
                (
                    "spec.containers[0].lifecycle.postStart.httpGet",
                    Some("hooks.example"),
                    None,
                    None
                ),
                (
                    "spec.containers[0].readinessProbe.httpGet",
                    Some("ready.example"),
                    Some("HTTPS"),
                    Some("/r")
                ),
            ]
        );
        let execs: Vec<_> = containers[0]
            .exec
            .iter()
            .map(|e| (e.path.as_str(), e.command))
            .collect();
        assert_eq!(
            execs,
            [
                (
                    "spec.containers[0].lifecycle.preStop.exec.command",
                    &["stop".to_string()][..]
                ),
                (
                    "spec.containers[0].startupProbe.exec.command",
                    &["check".to_string()][..]
                ),
            ]
        );
    }

    #[test]
    fn a_kind_from_its_parts_is_the_kind_of_the_api_version_they_make() {
        use super::WorkloadKind;
        let groups = [
            "",
            "apps",
            "batch",
            "extensions",
            "a/b",
            "apps/",
            "/",
            "ray.io",
            "kubeflow.org",
        ];
        let versions = ["", "v1", "v1beta1", "v1/x", "/v1", "v1/", "/", "apps/v1"];
        let kinds = [
            "Pod",
            "Deployment",
            "CronJob",
            "RayCluster",
            "PyTorchJob",
            "",
            "pod",
        ];
        for group in groups {
            for version in versions {
                for kind in kinds {
                    let api_version = if group.is_empty() {
                        version.to_string()
                    } else {
                        format!("{group}/{version}")
                    };
                    assert_eq!(
                        WorkloadKind::from_parts(group, version, kind),
                        WorkloadKind::from_type(&api_version, kind),
                        "{group:?} {version:?} {kind:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_env_entry_is_read_as_k8s_openapi_reads_an_env_var() {
        let texts = [
            r#"{"name":"A","value":"x"}"#,
            r#"{"value":"x"}"#,
            r#"{"name":null,"value":null}"#,
            r#"{"name":"A","name":"B"}"#,
            r#"{"name":"A","name":null}"#,
            r#"{"value":"x","value":null}"#,
            r#"{"name":"A","valueFrom":{"configMapKeyRef":{"name":"m","key":"k","optional":true}}}"#,
            r#"{"name":"A","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}},"valueFrom":null}"#,
            r#"{"name":"A","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}},"value":"v"}"#,
            r#"{"name":"A","valueFrom":{"resourceFieldRef":{"resource":"limits.cpu","divisor":"1m"}}}"#,
            r#"{"name":"A","valueFrom":{"fileKeyRef":{"volumeName":"v","path":"p","key":"k"}}}"#,
            r#"{"name":"A","Name":"B","VALUE":"c","extra":{"deep":[1,2,{"x":null}]}}"#,
            // valueFrom: every source, required fields missing or null, repeated keys, unknown
            // keys, escapes, numbers for a divisor.
            r#"{"name":"A","valueFrom":{"configMapKeyRef":{}}}"#,
            r#"{"name":"A","valueFrom":{"configMapKeyRef":{"name":null,"key":null,"optional":null}}}"#,
            r#"{"name":"A","valueFrom":{"configMapKeyRef":{"name":"a","name":"b","key":"k","key":null}}}"#,
            r#"{"name":"A","valueFrom":{"configMapKeyRef":{"name":"m\u0041\"","key":"k\\","x":[{}]}}}"#,
            r#"{"name":"A","valueFrom":{"configMapKeyRef":{"name":"m","key":"k"},"configMapKeyRef":null}}"#,
            r#"{"name":"A","valueFrom":{"secretKeyRef":{"name":"s","key":"k","optional":false},"configMapKeyRef":{"name":"m","key":"k"}}}"#,
            r#"{"name":"A","valueFrom":{"secretKeyRef":{"key":"k","optional":true,"name":"s","name":"t"}}}"#,
            r#"{"name":"A","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.labels['a']"}}}"#,
            r#"{"name":"A","valueFrom":{"fieldRef":{"apiVersion":null}}}"#,
            r#"{"name":"A","valueFrom":{"resourceFieldRef":{"containerName":"c","resource":"requests.memory","divisor":1}}}"#,
            r#"{"name":"A","valueFrom":{"resourceFieldRef":{"divisor":0.5}}}"#,
            r#"{"name":"A","valueFrom":{"resourceFieldRef":{"divisor":-3,"divisor":"2Mi"}}}"#,
            r#"{"name":"A","valueFrom":{"resourceFieldRef":null,"fieldRef":null}}"#,
            r#"{"name":"A","valueFrom":{}}"#,
            r#"{"name":"A","valueFrom":{"ConfigMapKeyRef":{"name":"m","key":"k"}}}"#,
            // Refused by k8s-openapi, so refused with its words.
            r#"{"name":"A","valueFrom":[{"name":"m","key":"k"}]}"#,
            r#"{"name":"A","valueFrom":{"configMapKeyRef":["m","k"]}}"#,
            r#"{"name":"A","valueFrom":{"configMapKeyRef":"m"}}"#,
            r#"{"name":"A","valueFrom":{"secretKeyRef":{"name":1}}}"#,
            r#"{"name":"A","valueFrom":{"secretKeyRef":{"optional":"true"}}}"#,
            r#"{"name":"A","valueFrom":{"fieldRef":{"fieldPath":["a"]}}}"#,
            r#"{"name":"A","valueFrom":{"fieldRef":true}}"#,
            r#"{"name":"A","valueFrom":{"resourceFieldRef":{"divisor":true}}}"#,
            r#"{"name":"A","valueFrom":{"resourceFieldRef":{"divisor":{"a":1}}}}"#,
            r#"{"name":"A","valueFrom":{"resourceFieldRef":{"containerName":2}}}"#,
            r#"{"name":"A","valueFrom":7}"#,
            r#"{"name":"A\u0000\"\\","value":"\ud83d\ude00"}"#,
            r#"{}"#,
            // Refused, with the same message.
            r#"{"name":1}"#,
            r#"{"name":"A","value":["x"]}"#,
            r#"{"name":"A","valueFrom":"x"}"#,
            r#"{"name":"A","valueFrom":{"configMapKeyRef":{"optional":"yes"}}}"#,
            r#"["A","x"]"#,
            r#""A""#,
            r#"null"#,
            r#"{"name":"A""#,
        ];
        for text in texts {
            let view = serde_json::from_str::<EnvVarView>(text).map_err(|e| e.to_string());
            assert_eq!(view, as_k8s_openapi_reads(text), "{text}");
            // The same from a parsed tree (the fallback readings).
            if let Ok(tree) = serde_json::from_str::<serde_json::Value>(text) {
                let view = <EnvVarView as serde::Deserialize>::deserialize(&tree)
                    .map_err(|e| e.to_string());
                let reference = serde_json::from_value::<EnvVar>(tree.clone())
                    .map(|v| (v.name, v.value, v.value_from.map(source_as_view)))
                    .map_err(|e| e.to_string());
                assert_eq!(
                    view.map(|v| (
                        v.name.into_owned(),
                        v.value.map(super::Text::into_owned),
                        v.value_from.map(|b| *b)
                    )),
                    reference,
                    "{text} (from a tree)"
                );
            }
        }
    }
}
