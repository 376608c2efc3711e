//! A rollout under load: two replicas of the release binary behind a Service, 1,000 reviews a
//! second from Go's own HTTP client calling as kube-apiserver does (tests/load-client), and
//! SIGTERM to one replica. As in a cluster, the endpoint of the terminating replica leaves the
//! Service a second after the signal (EndpointSlice propagation), and connections already open
//! stay with it. Not one review may fail: with `failurePolicy: Fail`, each would be a rejected
//! Pod creation.

mod common;

use std::time::{Duration, Instant};

use common::load::{Load, UID};
use common::{Ca, deployment_review, release_bin, standalone_bin};
use serde_json::Value;

const RATE: u32 = 1000;
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

    // The kept-alive HTTP/2 connection goes to the replica that will be terminated: it is the
    // only endpoint when the load starts; the second replica joins a second later (a rollout's
    // surge Pod), and new connections spread over both from then on.
    let mut load = Load::start(&ca.pem, &[old_addr], &payloads, RATE);
    std::thread::sleep(Duration::from_secs(1));
    load.endpoints(&[old_addr, new_addr]);
    std::thread::sleep(Duration::from_secs(1));

    old.server.signal("TERM");
    let signalled_ms = load.now_ms();
    let signalled = Instant::now();
    std::thread::sleep(PROPAGATION);
    load.endpoints(&[new_addr]);
    let status = old.server.wait(Duration::from_secs(30));
    let old_gone = signalled.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (outcomes, elapsed) = load.finish();

    assert_eq!(
        status.code(),
        Some(0),
        "the terminated replica exits cleanly"
    );
    assert!(
        old_gone >= DRAIN_DELAY,
        "the terminated replica must answer through the whole drain delay, exited after {old_gone:?}"
    );
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.answered()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} reviews failed; first: {:#?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    for o in &outcomes {
        let want = expected[(o.index as usize) % expected.len()].1;
        assert_eq!(
            o.allowed,
            Some(want),
            "review {} got the wrong verdict: {o:?}",
            o.index
        );
    }
    // The terminating replica really answered during its drain, over both protocols.
    let old_endpoint = old_addr.to_string();
    for proto in ["h2", "h1"] {
        let drained = outcomes
            .iter()
            .filter(|o| {
                o.proto == proto
                    && o.endpoint.as_deref() == Some(old_endpoint.as_str())
                    && o.sent_ms > signalled_ms
            })
            .count();
        assert!(
            drained > 0,
            "no {proto} review reached the terminating replica after SIGTERM"
        );
    }
    let achieved = outcomes.len() as f64 / elapsed.as_secs_f64();
    assert!(
        achieved > 0.9 * f64::from(RATE),
        "the load reached only {achieved:.0} reviews/s"
    );
    let retried = outcomes.iter().filter(|o| o.retries > 0).count();
    let after: Vec<_> = outcomes
        .iter()
        .filter(|o| o.sent_ms > signalled_ms)
        .collect();
    let to_old = after
        .iter()
        .filter(|o| o.endpoint.as_deref() == Some(old_endpoint.as_str()))
        .count();
    eprintln!(
        "{} reviews in {:.1}s ({achieved:.0}/s), {} after SIGTERM ({to_old} answered by the terminating replica), {retried} retried by Go's transport",
        outcomes.len(),
        elapsed.as_secs_f64(),
        after.len()
    );
}
