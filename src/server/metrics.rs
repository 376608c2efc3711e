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
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Every metric hostguard exposes.
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<WebhookLabel, Histogram>,
    pub violations: Family<ViolationLabels, Counter>,
    pub rejected: Family<ReasonLabel, Counter>,
    pub in_flight: Gauge,
    pub cert_expiry: Gauge<f64, AtomicU64>,
    pub snapshot_generation: Gauge,
    pub snapshot_age: Gauge<f64, AtomicU64>,
    pub policies: Gauge,
    pub ai_workloads: Gauge,
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
        let rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "admission_rejected_bodies",
            "Requests refused before a decision, by reason",
            rejected.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "admission_in_flight",
            "Reviews being decided now",
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
        Arc::new(Metrics {
            registry,
            requests,
            duration,
            violations,
            rejected,
            in_flight,
            cert_expiry,
            snapshot_generation,
            snapshot_age,
            policies,
            ai_workloads,
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
