//! Pod templates of other controllers' kinds (Argo Rollouts, Knative, KServe, KubeRay, JobSet,
//! LeaderWorkerSet, KAITO, kagent): where each keeps its pod templates, in one table, so that
//! they get a verdict when they are applied, not only when their Pods are created.
//!
//! The paths come from each project's API types at the commits listed in
//! `tests/fixtures/adapters/FACTS.md` ("Pod templates of other controllers' kinds"). A path is
//! a dotted list of keys; `[]` after a key means every item of that list. A template is one of
//! three shapes: a `PodTemplateSpec` (`metadata` + `spec`), a `PodSpec` inlined in the object,
//! or one `Container` inlined.
//!
//! The platform team adds kinds of its own controllers in the same form (chart value
//! `podTemplateKinds`, flag `--pod-template-kinds`): [`parse_extra`] checks them and [`extend`]
//! adds them once, at start-up, for the rest of the process, so that every decision reads one
//! table that does not change under it.

use std::sync::OnceLock;

use serde::Deserialize;

/// The shape of what a path leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
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

/// The table entry for a group and kind, whatever the version: a built-in one, or one the
/// platform team added ([`extend`]).
pub fn find(group: &str, kind: &str) -> Option<&'static TemplateKind> {
    all().find(|k| k.group == group && k.kind == kind)
}

/// Every kind of the table: the built-in ones, then those the platform team added.
pub fn all() -> impl Iterator<Item = &'static TemplateKind> {
    KINDS
        .iter()
        .chain(EXTRA.get().into_iter().flatten().copied())
}

/// The kinds the platform team added, set once at start-up.
static EXTRA: OnceLock<Vec<&'static TemplateKind>> = OnceLock::new();

/// One kind the platform team adds to the table, as written in its file (the chart value
/// `podTemplateKinds`, the flag `--pod-template-kinds`): the same fields as the built-in table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateKindSpec {
    pub group: String,
    pub kind: String,
    pub plural: String,
    pub versions: Vec<String>,
    pub templates: Vec<TemplateSpec>,
}

/// Where one pod template of an added kind is, and its shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Dotted keys from the object root; `[]` after a key means every item of that list.
    pub path: String,
    pub shape: Shape,
}

/// Reads and checks the added kinds (a YAML or JSON list of [`TemplateKindSpec`]). An error
/// names the entry and field (`[1].templates[0].path: ...`).
pub fn parse_extra(text: &str) -> Result<Vec<TemplateKindSpec>, String> {
    let specs: Vec<TemplateKindSpec> = serde_saphyr::from_str(text)
        .map_err(|e| format!("not a list of pod-template kinds: {e}"))?;
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (i, k) in specs.iter().enumerate() {
        let at = |field: &str, message: String| format!("[{i}].{field}: {message}");
        if !is_dns_subdomain(&k.group) || !k.group.contains('.') {
            return Err(at(
                "group",
                format!(
                    "{:?} is not an API group of a custom resource (a DNS name such as example.com)",
                    k.group
                ),
            ));
        }
        if k.kind.is_empty()
            || !k.kind.starts_with(|c: char| c.is_ascii_uppercase())
            || !k.kind.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(at(
                "kind",
                format!("{:?} is not a kind name (UpperCamelCase)", k.kind),
            ));
        }
        if !is_dns_label(&k.plural) {
            return Err(at(
                "plural",
                format!(
                    "{:?} is not a resource name (lower-case DNS label)",
                    k.plural
                ),
            ));
        }
        if k.versions.is_empty() {
            return Err(at("versions", "must name at least one version".into()));
        }
        for (j, v) in k.versions.iter().enumerate() {
            if !is_dns_label(v) || !v.starts_with('v') {
                return Err(at(
                    &format!("versions[{j}]"),
                    format!("{v:?} is not an API version (v1, v1beta2, ...)"),
                ));
            }
        }
        if k.templates.is_empty() {
            return Err(at(
                "templates",
                "must name at least one pod template".into(),
            ));
        }
        for (j, t) in k.templates.iter().enumerate() {
            let valid = !t.path.is_empty()
                && t.path.split('.').all(|segment| {
                    let key = segment.strip_suffix("[]").unwrap_or(segment);
                    !key.is_empty() && !key.contains(['[', ']'])
                });
            if !valid {
                return Err(at(
                    &format!("templates[{j}].path"),
                    format!(
                        "{:?} is not a dotted path of keys (each optionally followed by [] for every item of a list)",
                        t.path
                    ),
                ));
            }
        }
        if KINDS.iter().any(|b| b.group == k.group && b.kind == k.kind) {
            return Err(at(
                "kind",
                format!("{}/{} is built in already", k.group, k.kind),
            ));
        }
        if seen.contains(&(k.group.as_str(), k.kind.as_str())) {
            return Err(at(
                "kind",
                format!("{}/{} is listed twice", k.group, k.kind),
            ));
        }
        seen.push((&k.group, &k.kind));
    }
    Ok(specs)
}

/// Adds kinds to the table for the rest of the process (called once, at start-up, before any
/// object is read). The entries live as long as the process, as the built-in ones do. A second
/// call is refused: the table every decision reads must not change under it.
pub fn extend(specs: Vec<TemplateKindSpec>) -> Result<(), String> {
    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }
    let kinds: Vec<&'static TemplateKind> = specs
        .into_iter()
        .map(|k| {
            let versions: Vec<&'static str> = k.versions.into_iter().map(leak).collect();
            let templates: Vec<(&'static str, Shape)> = k
                .templates
                .into_iter()
                .map(|t| (leak(t.path), t.shape))
                .collect();
            &*Box::leak(Box::new(TemplateKind {
                group: leak(k.group),
                kind: leak(k.kind),
                plural: leak(k.plural),
                versions: Box::leak(versions.into_boxed_slice()),
                templates: Box::leak(templates.into_boxed_slice()),
            }))
        })
        .collect();
    EXTRA
        .set(kinds)
        .map_err(|_| "the pod-template kinds were set already".to_string())
}

fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "
- group: batch.example.com
  kind: InferenceJob
  plural: inferencejobs
  versions: [v1, v1beta1]
  templates:
    - path: spec.workers[].template
      shape: Template
    - path: spec.launcher
      shape: Container
";

    #[test]
    fn a_kind_is_read_with_its_templates() {
        let specs = parse_extra(ONE).unwrap();
        assert_eq!(specs[0].kind, "InferenceJob");
        assert_eq!(specs[0].versions, ["v1", "v1beta1"]);
        assert_eq!(specs[0].templates[1].shape, Shape::Container);
        assert_eq!(specs[0].templates[0].path, "spec.workers[].template");
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (ONE.replace("batch.example.com", "apps"), "[0].group:"),
            (ONE.replace("InferenceJob", "inference-job"), "[0].kind:"),
            (ONE.replace("inferencejobs", "InferenceJobs"), "[0].plural:"),
            (ONE.replace("[v1, v1beta1]", "[]"), "[0].versions:"),
            (
                ONE.replace("[v1, v1beta1]", "[v1, beta]"),
                "[0].versions[1]:",
            ),
            (
                ONE.replace("spec.launcher", "spec..launcher"),
                "[0].templates[1].path:",
            ),
            (
                ONE.replace("spec.workers[].template", "spec.workers[0].template"),
                "[0].templates[0].path:",
            ),
            (
                ONE.replace("shape: Template", "shape: Pod"),
                "unknown variant",
            ),
            (ONE.replace("  plural:", "  plurals:"), "unknown field"),
            (
                ONE.replace("batch.example.com", "argoproj.io")
                    .replace("InferenceJob", "Rollout"),
                "[0].kind: argoproj.io/Rollout is built in already",
            ),
            (
                format!("{ONE}{}", ONE.trim_start_matches('\n')),
                "[1].kind: batch.example.com/InferenceJob is listed twice",
            ),
        ];
        for (text, want) in cases {
            let err = parse_extra(&text).unwrap_err();
            assert!(err.contains(want), "{want:?} not in {err:?} for\n{text}");
        }
    }
}
