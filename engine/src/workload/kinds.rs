//! Pod templates of other controllers' kinds (Argo Rollouts, Knative, KServe, KubeRay, JobSet,
//! LeaderWorkerSet, KAITO, kagent): where each keeps its pod templates, in one table, so that
//! they get a verdict when they are applied, not only when their Pods are created.
//!
//! The paths come from each project's API types at the commits listed in
//! `tests/fixtures/adapters/FACTS.md` ("Pod templates of other controllers' kinds"). A path is
//! a dotted list of keys; `[]` after a key means every item of that list. A template is one of
//! three shapes: a `PodTemplateSpec` (`metadata` + `spec`), a `PodSpec` inlined in the object,
//! or one `Container` inlined.

/// The shape of what a path leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// `{metadata, spec: PodSpec}`.
    Template,
    /// A PodSpec's fields inlined (`containers`, `initContainers`, `volumes`, ...).
    PodSpec,
    /// A Container's fields inlined (`env`, `envFrom`, `args`, ...).
    Container,
}

/// One kind of another controller with pod templates.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TemplateKind {
    pub group: &'static str,
    pub kind: &'static str,
    /// The resource name, for the chart's webhook rules.
    pub plural: &'static str,
    /// Served versions; another version of the kind is reported as not understood.
    pub versions: &'static [&'static str],
    pub templates: &'static [(&'static str, Shape)],
}

use Shape::{Container, PodSpec, Template};

/// The built-in table.
pub static KINDS: &[TemplateKind] = &[
    TemplateKind {
        group: "argoproj.io",
        kind: "Rollout",
        plural: "rollouts",
        versions: &["v1alpha1"],
        templates: &[("spec.template", Template)],
    },
    TemplateKind {
        group: "serving.knative.dev",
        kind: "Service",
        plural: "services",
        versions: &["v1"],
        templates: &[("spec.template", Template)],
    },
    TemplateKind {
        group: "serving.knative.dev",
        kind: "Configuration",
        plural: "configurations",
        versions: &["v1"],
        templates: &[("spec.template", Template)],
    },
    TemplateKind {
        group: "serving.knative.dev",
        kind: "Revision",
        plural: "revisions",
        versions: &["v1"],
        templates: &[("spec", PodSpec)],
    },
    TemplateKind {
        group: "serving.kserve.io",
        kind: "InferenceService",
        plural: "inferenceservices",
        versions: &["v1beta1"],
        templates: &[
            ("spec.predictor", PodSpec),
            ("spec.predictor.workerSpec", PodSpec),
            ("spec.predictor.sklearn", Container),
            ("spec.predictor.xgboost", Container),
            ("spec.predictor.tensorflow", Container),
            ("spec.predictor.pytorch", Container),
            ("spec.predictor.triton", Container),
            ("spec.predictor.onnx", Container),
            ("spec.predictor.huggingface", Container),
            ("spec.predictor.pmml", Container),
            ("spec.predictor.lightgbm", Container),
            ("spec.predictor.paddle", Container),
            ("spec.predictor.model", Container),
            ("spec.transformer", PodSpec),
            ("spec.explainer", PodSpec),
            ("spec.explainer.art", Container),
        ],
    },
    TemplateKind {
        group: "serving.kserve.io",
        kind: "LLMInferenceService",
        plural: "llminferenceservices",
        versions: &["v1alpha1", "v1alpha2"],
        templates: &[
            ("spec.template", PodSpec),
            ("spec.worker", PodSpec),
            ("spec.prefill.template", PodSpec),
            ("spec.prefill.worker", PodSpec),
            ("spec.router.scheduler.template", PodSpec),
            ("spec.router.scheduler.tokenizer.template", PodSpec),
        ],
    },
    TemplateKind {
        group: "ray.io",
        kind: "RayCluster",
        plural: "rayclusters",
        versions: &["v1", "v1alpha1"],
        templates: &[
            ("spec.headGroupSpec.template", Template),
            ("spec.workerGroupSpecs[].template", Template),
            ("spec.autoscalerOptions", Container),
        ],
    },
    TemplateKind {
        group: "ray.io",
        kind: "RayService",
        plural: "rayservices",
        versions: &["v1", "v1alpha1"],
        templates: &[
            ("spec.rayClusterConfig.headGroupSpec.template", Template),
            (
                "spec.rayClusterConfig.workerGroupSpecs[].template",
                Template,
            ),
        ],
    },
    TemplateKind {
        group: "ray.io",
        kind: "RayJob",
        plural: "rayjobs",
        versions: &["v1", "v1alpha1"],
        templates: &[
            ("spec.rayClusterSpec.headGroupSpec.template", Template),
            ("spec.rayClusterSpec.workerGroupSpecs[].template", Template),
            ("spec.submitterPodTemplate", Template),
        ],
    },
    TemplateKind {
        group: "ray.io",
        kind: "RayCronJob",
        plural: "raycronjobs",
        versions: &["v1"],
        templates: &[
            (
                "spec.jobTemplate.rayClusterSpec.headGroupSpec.template",
                Template,
            ),
            (
                "spec.jobTemplate.rayClusterSpec.workerGroupSpecs[].template",
                Template,
            ),
            ("spec.jobTemplate.submitterPodTemplate", Template),
        ],
    },
    TemplateKind {
        group: "jobset.x-k8s.io",
        kind: "JobSet",
        plural: "jobsets",
        versions: &["v1alpha2"],
        templates: &[("spec.replicatedJobs[].template.spec.template", Template)],
    },
    TemplateKind {
        group: "leaderworkerset.x-k8s.io",
        kind: "LeaderWorkerSet",
        plural: "leaderworkersets",
        versions: &["v1"],
        templates: &[
            ("spec.leaderWorkerTemplate.leaderTemplate", Template),
            ("spec.leaderWorkerTemplate.workerTemplate", Template),
        ],
    },
    TemplateKind {
        group: "kaito.sh",
        kind: "Workspace",
        plural: "workspaces",
        versions: &["v1alpha1", "v1beta1"],
        templates: &[("inference.template", Template)],
    },
    TemplateKind {
        group: "kagent.dev",
        kind: "Agent",
        plural: "agents",
        versions: &["v1alpha1", "v1alpha2", "v1alpha3"],
        templates: &[("spec.byo.deployment", Container), ("spec.byo", Container)],
    },
    TemplateKind {
        group: "kagent.dev",
        kind: "SandboxAgent",
        plural: "sandboxagents",
        versions: &["v1alpha2", "v1alpha3"],
        templates: &[("spec.byo.deployment", Container), ("spec.byo", Container)],
    },
];

/// The table entry for a group and kind, whatever the version.
pub fn find(group: &str, kind: &str) -> Option<&'static TemplateKind> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}
