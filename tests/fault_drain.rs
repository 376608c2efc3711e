//! A rollout under load: two replicas of the release binary behind a Service, 1,000 reviews a
//! second from Go's own HTTP client calling as kube-apiserver does (tests/load-client), and
//! SIGTERM to one replica. As in a cluster, the endpoint of the terminating replica leaves the
//! Service a second after the signal (EndpointSlice propagation), and connections already open
//! stay with it. Not one review may fail: with `failurePolicy: Fail`, each would be a rejected
//! Pod creation.
//!
//! Two API server instances call, each through its own node's view of the Service (kube-proxy
//! on each node learns endpoint changes on its own schedule): instance B has seen the surge
//! replica join, instance A has not yet, so A's new connections during the drain still reach the
//! terminating replica — over HTTP/2 too, after the GOAWAY that asks A to move. That makes the
//! drain's "a connection accepted while draining is served" path part of every run instead of a
//! coin toss of B's random endpoint choice.

mod common;

use std::time::{Duration, Instant};

use common::load::{Load, UID};
use common::{Ca, deployment_review, release_bin, standalone_bin};
use serde_json::Value;

/// Reviews a second from each of the two API server instances.
const RATE: u32 = 500;
const DRAIN_DELAY: Duration = Duration::from_secs(3);
/// How long after the signal the endpoint is gone for new connections.
const PROPAGATION: Duration = Duration::from_secs(1);

/// The bodies the load cycles through, and the verdict the default policy gives each on an
/// Azure cluster (design.md: stateless OpenAI traffic only to Azure-hosted endpoints).
fn bodies() -> Vec<(Value, bool)> {
    vec![
        (
            deployment_review(UID, "team-a", Some("https://api.openai.com/v1")),
            false,
        ),
        (
            deployment_review(
                UID,
                "team-a",
                Some("https://contoso.openai.azure.com/openai/v1"),
            ),
            true,
        ),
        (deployment_review(UID, "team-a", None), true),
    ]
}

#[test]
fn a_replica_terminated_under_load_fails_no_review() {
    let bin = release_bin();
    let ca = Ca::new("hostguard test CA");
    let drain = format!("{}s", DRAIN_DELAY.as_secs());
    let args = ["--drain-delay", drain.as_str(), "--shutdown-grace", "5s"];
    let mut old = standalone_bin(&bin, &ca, "old", &args);
    let new = standalone_bin(&bin, &ca, "new", &args);
    let (old_addr, new_addr) = (old.server.webhook, new.server.webhook);
    let expected = bodies();
    let payloads: Vec<Value> = expected.iter().map(|(b, _)| b.clone()).collect();

    // Both instances' kept-alive connections start on the replica that will be terminated: it
    // is the only endpoint when the load starts. A second later the surge replica joins B's
    // view; A's view still lags when the signal comes.
    let mut a = Load::start(&ca.pem, &[old_addr], &payloads, RATE);
    let mut b = Load::start(&ca.pem, &[old_addr], &payloads, RATE);
    std::thread::sleep(Duration::from_secs(1));
    b.endpoints(&[old_addr, new_addr]);
    std::thread::sleep(Duration::from_secs(1));

    old.server.signal("TERM");
    let signalled_ms = [a.now_ms(), b.now_ms()];
    let signalled = Instant::now();
    std::thread::sleep(PROPAGATION);
    a.endpoints(&[new_addr]);
    b.endpoints(&[new_addr]);
    let status = old.server.wait(Duration::from_secs(30));
    let old_gone = signalled.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (outcomes_a, elapsed) = a.finish();
    let (outcomes_b, _) = b.finish();

    assert_eq!(
        status.code(),
        Some(0),
        "the terminated replica exits cleanly"
    );
    assert!(
        old_gone >= DRAIN_DELAY,
        "the terminated replica must answer through the whole drain delay, exited after {old_gone:?}"
    );
    let old_endpoint = old_addr.to_string();
    let mut report = Vec::new();
    for (name, outcomes, signalled_ms) in [
        ("A", &outcomes_a, signalled_ms[0]),
        ("B", &outcomes_b, signalled_ms[1]),
    ] {
        let failed: Vec<_> = outcomes.iter().filter(|o| !o.answered()).collect();
        assert!(
            failed.is_empty(),
            "instance {name}: {} of {} reviews failed; first: {:#?}",
            failed.len(),
            outcomes.len(),
            &failed[..failed.len().min(5)]
        );
        for o in outcomes.iter() {
            let want = expected[(o.index as usize) % expected.len()].1;
            assert_eq!(
                o.allowed,
                Some(want),
                "instance {name}: review {} got the wrong verdict: {o:?}",
                o.index
            );
        }
        let achieved = outcomes.len() as f64 / elapsed.as_secs_f64();
        assert!(
            achieved > 0.9 * f64::from(RATE),
            "instance {name}: the load reached only {achieved:.0} reviews/s"
        );
        let after: Vec<_> = outcomes
            .iter()
            .filter(|o| o.sent_ms > signalled_ms)
            .collect();
        let to_old = |proto: &str| {
            after
                .iter()
                .filter(|o| {
                    o.proto == proto && o.endpoint.as_deref() == Some(old_endpoint.as_str())
                })
                .count()
        };
        let retried = outcomes.iter().filter(|o| o.retries > 0).count();
        report.push(format!(
            "instance {name}: {} reviews ({achieved:.0}/s), {} after SIGTERM, of which the terminating replica answered {} over HTTP/2 and {} over HTTP/1.1; {retried} retried by Go's transport",
            outcomes.len(),
            after.len(),
            to_old("h2"),
            to_old("h1")
        ));
        if name == "A" {
            // The terminating replica really answered during its drain, over both protocols.
            for proto in ["h2", "h1"] {
                assert!(
                    to_old(proto) > 0,
                    "instance A: no {proto} review reached the terminating replica after SIGTERM"
                );
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}
