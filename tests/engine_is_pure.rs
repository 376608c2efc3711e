//! The engine crate stays pure: its dependency tree (normal and build dependencies) holds no
//! async runtime, no HTTP stack, no TLS and no Kubernetes client or runtime. The compiler then
//! guarantees what design.md promises: nothing in the engine can do network I/O or block on it.

use std::process::Command;

/// Crates whose presence in the engine's tree would let it do I/O or wait on a runtime.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "tokio-util",
    "tokio-rustls",
    "mio",
    "async-std",
    "smol",
    "hyper",
    "hyper-util",
    "h2",
    "axum",
    "axum-core",
    "tower",
    "tower-http",
    "reqwest",
    "rustls",
    "kube",
    "kube-client",
    "kube-runtime",
];

#[test]
fn engine_dependency_tree_has_no_io_runtime() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--manifest-path",
            manifest,
            "--package",
            "hostguard-engine",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--locked",
            "--offline",
        ])
        .output()
        .expect("cargo tree runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo tree failed: {stderr}");
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"hostguard-engine") && crates.contains(&"k8s-openapi"),
        "unexpected cargo tree output:\n{tree}"
    );
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|f| crates.contains(f)).collect();
    assert!(
        found.is_empty(),
        "the engine's dependency tree gained {found:?}; the engine must stay free of I/O runtimes:\n{tree}"
    );
}
