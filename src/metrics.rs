//! Prometheus metrics, all prefixed `hostguard_`, in one registry served on the admin port.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::admission::{Answer, Webhook};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub webhook: &'static str,
    pub kind: String,
    pub operation: String,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    pub webhook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub policy: String,
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterProviderLabels {
    /// What the Nodes say.
    pub detected: &'static str,
    /// What the engine uses (`--cluster-provider` when given, else `detected`).
    pub effective: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Why a request was refused before a decision (`admission_rejected_bodies_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The body is over the 3 MiB limit (413), or too many large bodies are buffered (429).
    TooLarge,
    /// The body could not be read (the client went away or sent a broken stream).
    Unreadable,
    /// No policy snapshot yet (500).
    NotReady,
    /// The decision panicked (500; the panic is logged).
    Panic,
    /// The body is not JSON (400).
    NotJson,
    /// Every review slot is taken (429).
    Overloaded,
    /// The API server's `?timeout=` passed while the body was read or the review decided.
    Timeout,
    /// The answer could not be encoded (500).
    Encode,
    /// JSON that is not a readable AdmissionReview v1 (200, allowed: false).
    InvalidReview,
}

impl Rejection {
    /// The label value; dashboards and alerts match on these.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::TooLarge => "too_large",
            Rejection::Unreadable => "unreadable",
            Rejection::NotReady => "not_ready",
            Rejection::Panic => "panic",
            Rejection::NotJson => "not_json",
            Rejection::Overloaded => "overloaded",
            Rejection::Timeout => "timeout",
            Rejection::Encode => "encode",
            Rejection::InvalidReview => "invalid_review",
        }
    }
}

/// How one background audit ended (`audit_runs_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditResult {
    /// Every object evaluated and every result written.
    Ok,
    /// A list failed or timed out; the next audit retries.
    Error,
    /// Stopped by losing the Lease or by shutdown, or its results not fully written.
    Interrupted,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Error => "error",
            AuditResult::Interrupted => "interrupted",
        }
    }
}

/// Every metric hostguard exposes.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<WebhookLabel, Histogram>,
    pub violations: Family<ViolationLabels, Counter>,
    /// Admitted objects an AIWorkload exempted from a policy, by policy.
    pub exemptions: Family<PolicyLabel, Counter>,
    pub rejected: Family<ReasonLabel, Counter>,
    pub in_flight: Gauge,
    pub cert_expiry: Gauge<f64, AtomicU64>,
    pub snapshot_generation: Gauge,
    pub snapshot_age: Gauge<f64, AtomicU64>,
    pub policies: Gauge,
    pub ai_workloads: Gauge,
    /// Cluster mode: the provider detected from Nodes and the one in force (value 1).
    pub cluster_provider: Family<ClusterProviderLabels, Gauge>,
    /// Cluster mode: schedulable Nodes per provider.
    pub cluster_nodes: Family<ProviderLabel, Gauge>,
    /// Cluster mode: Nodes ignored by detection because they are unschedulable (cordoned).
    pub cluster_nodes_unschedulable: Gauge,
    pub watch_errors: Family<ResourceLabel, Counter>,
    pub watch_restarts: Family<ResourceLabel, Counter>,
    pub audit_runs: Family<ResultLabel, Counter>,
    pub audit_duration: Histogram,
    /// Violating workloads at the last audit, by policy and action (Audit policies included).
    pub audit_violations: Family<ViolationLabels, Gauge>,
    pub audit_objects: Gauge,
    pub leader: Gauge,
    pub config_map_cache_entries: Gauge,
}

/// Registers `metric` under `name` and hands back the handle the code updates (metric handles
/// are shared: the registry keeps a clone).
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// [`register`] with a unit (`_seconds` in the exposition).
fn register_in<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Unit,
    metric: M,
) -> M {
    registry.register_with_unit(name, help, unit, metric.clone());
    metric
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("hostguard");
        let r = &mut registry;
        // Admission: what the webhooks answered, how fast, and what they refused unread.
        let requests = register(
            r,
            "admission_requests",
            "AdmissionReviews answered, by webhook, kind, operation and decision",
            Family::default(),
        );
        // 25 µs to ~3.3 s: fine enough for sub-millisecond answers, wide enough for timeouts.
        let duration: Family<WebhookLabel, Histogram> = register_in(
            r,
            "admission_duration",
            "Time from a complete request body to the encoded response",
            Unit::Seconds,
            Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_025, 2.0, 18))
            }),
        );
        let violations = register(
            r,
            "policy_violations",
            "Violations found at admission, by policy and action",
            Family::default(),
        );
        let exemptions = register(
            r,
            "policy_exemptions",
            "Objects an AIWorkload exempted from a policy at admission (validate webhook), by policy",
            Family::default(),
        );
        let rejected = register(
            r,
            "admission_rejected_bodies",
            "Requests refused before a decision, by reason",
            Family::default(),
        );
        let in_flight = register(
            r,
            "admission_in_flight",
            "Review requests being read or decided now",
            Gauge::default(),
        );
        let cert_expiry = register_in(
            r,
            "tls_certificate_expiry_timestamp",
            "notAfter of the serving certificate in use, as a Unix time",
            Unit::Seconds,
            Gauge::default(),
        );
        // The engine state in use.
        let snapshot_generation = register(
            r,
            "policy_snapshot_generation",
            "Generation of the policy snapshot in use",
            Gauge::default(),
        );
        let snapshot_age = register_in(
            r,
            "policy_snapshot_age",
            "Time since the policy snapshot in use was published",
            Unit::Seconds,
            Gauge::default(),
        );
        let policies = register(r, "policies", "HostingPolicies in force", Gauge::default());
        let ai_workloads = register(
            r,
            "aiworkloads",
            "AIWorkloads in the snapshot",
            Gauge::default(),
        );
        // The cluster: identity, watches, audit, leadership, caches.
        let cluster_provider = register(
            r,
            "cluster_provider",
            "What the cluster runs on: detected from Nodes, and in force (1 for the current pair)",
            Family::default(),
        );
        let cluster_nodes = register(
            r,
            "cluster_nodes",
            "Schedulable Nodes by the provider they run on",
            Family::default(),
        );
        let cluster_nodes_unschedulable = register(
            r,
            "cluster_nodes_unschedulable",
            "Nodes left out of provider detection because they are cordoned",
            Gauge::default(),
        );
        let watch_errors = register(
            r,
            "watch_errors",
            "Errors of the cluster watches, by resource (each is retried with backoff)",
            Family::default(),
        );
        let watch_restarts = register(
            r,
            "watch_restarts",
            "Re-lists of the cluster watches after the first sync, by resource",
            Family::default(),
        );
        let audit_runs = register(
            r,
            "audit_runs",
            "Background audits of existing workloads, by result",
            Family::default(),
        );
        let audit_duration = register_in(
            r,
            "audit_duration",
            "Time one background audit took",
            Unit::Seconds,
            Histogram::new(exponential_buckets(0.01, 2.0, 16)),
        );
        let audit_violations = register(
            r,
            "audit_violating_workloads",
            "Existing workloads that broke a policy at the last audit, by policy and action",
            Family::default(),
        );
        let audit_objects = register(
            r,
            "audit_objects",
            "Workloads evaluated by the last audit",
            Gauge::default(),
        );
        let leader = register(
            r,
            "leader",
            "1 while this replica holds the Lease and writes status and events",
            Gauge::default(),
        );
        let config_map_cache_entries = register(
            r,
            "configmap_cache_entries",
            "ConfigMaps (present or known absent) in the on-demand cache",
            Gauge::default(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            duration,
            violations,
            exemptions,
            rejected,
            in_flight,
            cert_expiry,
            snapshot_generation,
            snapshot_age,
            policies,
            ai_workloads,
            cluster_provider,
            cluster_nodes,
            cluster_nodes_unschedulable,
            watch_errors,
            watch_restarts,
            audit_runs,
            audit_duration,
            audit_violations,
            audit_objects,
            leader,
            config_map_cache_entries,
        })
    }

    /// Records one answered review.
    pub fn record(&self, webhook: Webhook, answer: &Answer, seconds: f64) {
        let webhook_name = webhook.as_str();
        self.requests
            .get_or_create(&RequestLabels {
                webhook: webhook_name,
                kind: answer.info.kind.clone(),
                operation: answer.info.operation.clone(),
                decision: answer.outcome().as_str(),
            })
            .inc();
        self.duration
            .get_or_create(&WebhookLabel {
                webhook: webhook_name,
            })
            .observe(seconds);
        if let Some(decision) = &answer.decision
            && webhook == Webhook::Validate
        {
            for v in &decision.violations {
                self.violations
                    .get_or_create(&ViolationLabels {
                        policy: v.policy.clone(),
                        action: v.action.as_str(),
                    })
                    .inc();
            }
            // One object exempted from one policy counts once, however many templates it has.
            let mut counted: Vec<&str> = Vec::new();
            for e in &decision.exemptions {
                if !counted.contains(&e.policy.as_str()) {
                    counted.push(&e.policy);
                    self.exemptions
                        .get_or_create(&PolicyLabel {
                            policy: e.policy.clone(),
                        })
                        .inc();
                }
            }
        }
    }

    /// Counts one request refused before a decision.
    pub fn reject(&self, reason: Rejection) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts one background audit by how it ended.
    pub fn audit_ended(&self, result: AuditResult) {
        self.audit_runs
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
    }

    /// Text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{self, Webhook};
    use crate::api::{AIWorkload, ClusterProvider};
    use crate::policy::PolicySet;
    use crate::snapshot::{DeclaredWorkload, Snapshot};
    use serde_json::json;

    #[test]
    fn an_exemption_at_admission_is_counted_by_policy() {
        let aiw: AIWorkload = serde_json::from_value(json!({
            "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
            "metadata": {"name": "assistants", "namespace": "team-a"},
            "spec": {"selector": {"matchLabels": {"app": "chat"}}, "provider": "openai", "apiClass": "stateful"}
        }))
        .unwrap();
        let mut snapshot = Snapshot::offline(ClusterProvider::Azure);
        snapshot.insert_declared(DeclaredWorkload::from_resource(&aiw).unwrap());
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": "team-a", "operation": "CREATE",
                "object": {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "namespace": "team-a", "labels": {"app": "chat"}},
                    "spec": {"containers": [{"name": "a", "env": [{"name": "OPENAI_API_KEY", "value": "k"}]}]}}}});
        let body = serde_json::to_vec(&review).unwrap();
        let metrics = Metrics::new();
        for webhook in Webhook::ALL {
            let answer =
                admission::answer(&body, webhook, &PolicySet::builtin(), &snapshot).unwrap();
            metrics.record(webhook, &answer, 0.0);
        }
        let text = metrics.encode();
        // Counted once: by the validate webhook, not again by mutate.
        assert!(
            text.contains(
                r#"hostguard_policy_exemptions_total{policy="openai-stateless-on-azure"} 1"#
            ),
            "{text}"
        );
    }
}
