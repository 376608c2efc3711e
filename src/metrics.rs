//! Prometheus metrics, all prefixed `hostguard_`, in one registry served on the admin port.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::admission::Answer;

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

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("hostguard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "AdmissionReviews answered, by webhook, kind, operation and decision",
            requests.clone(),
        );
        // 25 µs to ~3.3 s: fine enough for sub-millisecond answers, wide enough for timeouts.
        let duration = Family::<WebhookLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_025, 2.0, 18))
        });
        registry.register_with_unit(
            "admission_duration",
            "Time from a complete request body to the encoded response",
            Unit::Seconds,
            duration.clone(),
        );
        let violations = Family::<ViolationLabels, Counter>::default();
        registry.register(
            "policy_violations",
            "Violations found at admission, by policy and action",
            violations.clone(),
        );
        let exemptions = Family::<PolicyLabel, Counter>::default();
        registry.register(
            "policy_exemptions",
            "Objects an AIWorkload exempted from a policy at admission (validate webhook), by policy",
            exemptions.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "admission_rejected_bodies",
            "Requests refused before a decision, by reason",
            rejected.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "admission_in_flight",
            "Review requests being read or decided now",
            in_flight.clone(),
        );
        let cert_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "tls_certificate_expiry_timestamp",
            "notAfter of the serving certificate in use, as a Unix time",
            Unit::Seconds,
            cert_expiry.clone(),
        );
        let snapshot_generation = Gauge::default();
        registry.register(
            "policy_snapshot_generation",
            "Generation of the policy snapshot in use",
            snapshot_generation.clone(),
        );
        let snapshot_age = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "policy_snapshot_age",
            "Time since the policy snapshot in use was published",
            Unit::Seconds,
            snapshot_age.clone(),
        );
        let policies = Gauge::default();
        registry.register("policies", "HostingPolicies in force", policies.clone());
        let ai_workloads = Gauge::default();
        registry.register(
            "aiworkloads",
            "AIWorkloads in the snapshot",
            ai_workloads.clone(),
        );
        let cluster_provider = Family::<ClusterProviderLabels, Gauge>::default();
        registry.register(
            "cluster_provider",
            "What the cluster runs on: detected from Nodes, and in force (1 for the current pair)",
            cluster_provider.clone(),
        );
        let cluster_nodes = Family::<ProviderLabel, Gauge>::default();
        registry.register(
            "cluster_nodes",
            "Schedulable Nodes by the provider they run on",
            cluster_nodes.clone(),
        );
        let cluster_nodes_unschedulable = Gauge::default();
        registry.register(
            "cluster_nodes_unschedulable",
            "Nodes left out of provider detection because they are cordoned",
            cluster_nodes_unschedulable.clone(),
        );
        let watch_errors = Family::<ResourceLabel, Counter>::default();
        registry.register(
            "watch_errors",
            "Errors of the cluster watches, by resource (each is retried with backoff)",
            watch_errors.clone(),
        );
        let watch_restarts = Family::<ResourceLabel, Counter>::default();
        registry.register(
            "watch_restarts",
            "Re-lists of the cluster watches after the first sync, by resource",
            watch_restarts.clone(),
        );
        let audit_runs = Family::<ResultLabel, Counter>::default();
        registry.register(
            "audit_runs",
            "Background audits of existing workloads, by result",
            audit_runs.clone(),
        );
        let audit_duration = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register_with_unit(
            "audit_duration",
            "Time one background audit took",
            Unit::Seconds,
            audit_duration.clone(),
        );
        let audit_violations = Family::<ViolationLabels, Gauge>::default();
        registry.register(
            "audit_violating_workloads",
            "Existing workloads that broke a policy at the last audit, by policy and action",
            audit_violations.clone(),
        );
        let audit_objects = Gauge::default();
        registry.register(
            "audit_objects",
            "Workloads evaluated by the last audit",
            audit_objects.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and writes status and events",
            leader.clone(),
        );
        let config_map_cache_entries = Gauge::default();
        registry.register(
            "configmap_cache_entries",
            "ConfigMaps (present or known absent) in the on-demand cache",
            config_map_cache_entries.clone(),
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
    pub fn record(&self, webhook: &'static str, answer: &Answer, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                webhook,
                kind: answer.info.kind.clone(),
                operation: answer.info.operation.clone(),
                decision: answer.outcome(),
            })
            .inc();
        self.duration
            .get_or_create(&WebhookLabel { webhook })
            .observe(seconds);
        if let Some(decision) = &answer.decision
            && webhook == "validate"
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

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
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
            metrics.record(webhook.as_str(), &answer, 0.0);
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
