//! Generated files stay generated: the committed CRDs are exactly what the Rust types produce,
//! the example default policy is exactly the built-in one, and the chart's ValidatingAdmission-
//! Policy for it is exactly what `hostguard vap` makes of it.

use std::path::Path;

use hostguard::api::{HostingPolicy, crd_documents};
use hostguard::policy::default_policy;

/// Every directory that holds a copy of the generated CRDs.
const CRD_DIRS: &[&str] = &["crds", "charts/hostguard/crds"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_crds_match_the_rust_types() {
    for (file, generated) in crd_documents() {
        for dir in CRD_DIRS {
            let path = root().join(dir).join(&file);
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{} is missing ({e}); run `cargo run -- crds --out {dir}`",
                    path.display()
                )
            });
            assert!(
                committed == generated,
                "{} drifted from the Rust types; run `cargo run -- crds --out {dir}` and commit",
                path.display()
            );
        }
    }
}

#[test]
fn crds_carry_validation_printer_columns_and_short_names() {
    let all: String = crd_documents().into_iter().map(|(_, d)| d).collect();
    for needle in [
        "shortNames:\n    - hpol",
        "shortNames:\n    - aiw",
        "x-kubernetes-validations",
        "pattern: ^(\\*\\.)?",
        "name: Violations",
        "name: Compliant",
        "scope: Cluster",
        "scope: Namespaced",
        "status: {}",
        "- Deny\n",
    ] {
        assert!(all.contains(needle), "generated CRDs lack {needle:?}");
    }
}

#[test]
fn example_default_policy_equals_the_builtin_one() {
    let path = root().join("examples/policies/openai-stateless-on-azure.yaml");
    let text = std::fs::read_to_string(&path).expect("example policy exists");
    let from_file: HostingPolicy = serde_saphyr::from_str(&text).expect("example policy parses");
    assert_eq!(from_file, default_policy());
}

/// The chart installs this file (templates/validatingadmissionpolicy.yaml adds only labels and
/// the namespaces the webhook never sees), so it must be the translation of the built-in policy.
#[test]
fn the_charts_admission_policy_is_hostguard_vap_of_the_default_policy() {
    const FILE: &str = "charts/hostguard/files/vap/openai-stateless-on-azure.yaml";
    let translation = hostguard::vap::translate(&[default_policy()], &[]);
    assert_eq!(translation.objects.len(), 2, "{:?}", translation.notes);
    let generated = hostguard::vap::to_yaml(&translation.objects);
    let committed = std::fs::read_to_string(root().join(FILE)).expect("the chart's VAP file");
    assert!(
        committed == generated,
        "{FILE} drifted from `hostguard vap`; run `cargo run -- vap > {FILE}` and commit"
    );
}
