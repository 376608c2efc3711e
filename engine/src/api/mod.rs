//! The custom resources, group `hostguard.dev`, version `v1alpha1`.
//!
//! These Rust types are the source of truth: the CRD YAML under `crds/` and in the chart is
//! generated from them by `hostguard crds` (see [`crd_yaml`]) and a test fails when the committed
//! files drift. Field docs are written for readers of `kubectl explain`.

mod ai_workload;
mod common;
mod hosting_policy;

pub use ai_workload::{
    AIWorkload, AIWorkloadSpec, AIWorkloadStatus, MatchedWorkload, WorkloadApiClass,
};
pub use common::{Action, ApiClass, ClusterProvider, Disposition};
pub use hosting_policy::{
    AIWorkloadTrustSpec, EndpointRulesSpec, ExemptedObject, HostingPolicy, HostingPolicySpec,
    HostingPolicyStatus, PlacementSpec, TrustSpec, ViolatingObject,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_core::CustomResourceExt;

/// API group of hostguard's resources.
pub const GROUP: &str = "hostguard.dev";
/// The one served version.
pub const VERSION: &str = "v1alpha1";

/// The provider name of OpenAI's API, as policies and AIWorkloads write it.
pub const OPENAI: &str = "openai";

/// The providers hostguard knows: the only values `spec.provider` may take. The CRD schema
/// lists them as an enum and the webhook refuses anything else, so that a typo (`opneai`) is
/// refused at apply time instead of making a policy that governs nothing.
pub const KNOWN_PROVIDERS: &[&str] = &[OPENAI];

/// Whether `provider` is one hostguard knows.
pub fn is_known_provider(provider: &str) -> bool {
    KNOWN_PROVIDERS.contains(&provider)
}

/// Every CRD hostguard owns, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![AIWorkload::crd(), HostingPolicy::crd()]
}

/// Each CRD as `(file name, YAML document)`: the files committed under `crds/` (and the chart's
/// `crds/`), named `<plural>.<group>.yaml` so that they sort in the order of [`crds`].
pub fn crd_documents() -> Vec<(String, String)> {
    crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            // Serialising a CRD cannot fail: it is plain data with string keys.
            let mut doc = String::from("---\n");
            doc.push_str(&serde_saphyr::to_string(&crd).expect("CRD serialises to YAML"));
            if !doc.ends_with('\n') {
                doc.push('\n');
            }
            (file, doc)
        })
        .collect()
}

/// The CRDs as one multi-document YAML stream, exactly what `hostguard crds` prints.
pub fn crd_yaml() -> String {
    crd_documents().into_iter().map(|(_, doc)| doc).collect()
}
