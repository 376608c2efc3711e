//! Answers the benchmark's review a given number of times, for instruction counts that do not
//! depend on what else the machine is doing:
//!
//! `valgrind --tool=callgrind target/release/examples/hot_path 2000` (built with
//! `cargo build --release -p hostguard-engine --example hot_path`); divide the total by the count.
//! The first answer is checked, so that a shortcut cannot be measured. It allocates with
//! mimalloc, as the `hostguard` binary does.

use hostguard_engine::admission::{self, Webhook};
use hostguard_engine::api::ClusterProvider;
use hostguard_engine::policy::PolicySet;
use hostguard_engine::snapshot::Snapshot;

const FIXTURE: &[u8] = include_bytes!("../../benches/fixtures/deployment-review.json");

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let policies = PolicySet::builtin();
    let snapshot = Snapshot::offline(ClusterProvider::Azure);
    let first = admission::answer(FIXTURE, Webhook::Validate, &policies, &snapshot)
        .expect("the fixture is JSON");
    assert!(first.review.response.allowed, "{first:?}");
    assert!(
        first
            .decision
            .as_ref()
            .is_some_and(|d| !d.governed_by.is_empty()),
        "the fixture must be governed: {first:?}"
    );
    for _ in 1..count {
        let answer = admission::answer(
            std::hint::black_box(FIXTURE),
            Webhook::Validate,
            &policies,
            &snapshot,
        );
        std::hint::black_box(answer).ok();
    }
}
