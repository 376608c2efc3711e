//! A rollout under load: two replicas of the release binary behind a Service, 1,000 reviews a
//! second from a client that calls like kube-apiserver (tests/common/load.rs), and SIGTERM to
//! one replica. As in a cluster, the endpoint of the terminating replica leaves the Service a
//! second after the signal (EndpointSlice propagation), and connections already open stay with
//! it. Not one review may fail: with `failurePolicy: Fail`, each would be a rejected Pod.

mod common;

use std::time::{Duration, Instant};

use common::load::{Load, Proto, Service, rate};
use common::{Ca, deployment_review, release_bin, standalone_bin};

const DRAIN_DELAY: Duration = Duration::from_secs(3);
/// How long after the signal the endpoint is gone for new connections.
const PROPAGATION: Duration = Duration::from_secs(1);

/// The i-th review and the verdict the default policy gives it on an Azure cluster.
fn review(i: u64) -> (Vec<u8>, bool) {
    let uid = format!("load-{i}");
    let (url, allowed) = match i % 3 {
        0 => (Some("https://api.openai.com/v1"), false),
        1 => (Some("https://contoso.openai.azure.com/openai/v1"), true),
        _ => (None, true),
    };
    (
        deployment_review(&uid, "team-a", url)
            .to_string()
            .into_bytes(),
        allowed,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_terminated_under_load_fails_no_review() {
    let bin = release_bin();
    let ca = Ca::new("hostguard test CA");
    let drain = format!("{}s", DRAIN_DELAY.as_secs());
    let args = ["--drain-delay", drain.as_str(), "--shutdown-grace", "5s"];
    let mut old = standalone_bin(&bin, &ca, "old", &args);
    let new = standalone_bin(&bin, &ca, "new", &args);
    let (old_addr, new_addr) = (old.server.webhook, new.server.webhook);
    let service = Service::new(&ca.pem, vec![old_addr, new_addr]);
    let started = Instant::now();
    let load = Load::start(std::sync::Arc::clone(&service), rate(), |i| review(i).0);

    tokio::time::sleep(Duration::from_secs(2)).await;
    old.server.signal("TERM");
    let signalled = Instant::now();
    tokio::time::sleep(PROPAGATION).await;
    service.set_endpoints(vec![new_addr]);
    let exited = tokio::task::spawn_blocking(move || {
        let status = old.server.wait(Duration::from_secs(30));
        (status, Instant::now(), old)
    });
    let (status, old_gone, _old) = exited.await.expect("wait");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = load.finish().await;
    let elapsed = started.elapsed();

    assert_eq!(
        status.code(),
        Some(0),
        "the terminated replica exits cleanly"
    );
    assert!(
        old_gone.duration_since(signalled) >= DRAIN_DELAY,
        "the terminated replica must answer through the whole drain delay"
    );
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o.result, Ok((200, _))))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} reviews failed; first: {:#?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    for o in &outcomes {
        let answer = o.json().expect("an AdmissionReview");
        assert_eq!(answer["response"]["uid"], format!("load-{}", o.index));
        assert_eq!(
            answer["response"]["allowed"],
            review(o.index).1,
            "review {} got the wrong verdict: {answer}",
            o.index
        );
    }
    // The terminating replica really answered during its drain, over both protocols.
    for proto in [Proto::H2, Proto::H1] {
        let drained = outcomes
            .iter()
            .filter(|o| o.proto == proto && o.endpoint == Some(old_addr) && o.sent > signalled)
            .count();
        assert!(
            drained > 0,
            "no {proto:?} review reached the terminating replica after SIGTERM"
        );
    }
    let achieved = outcomes.len() as f64 / elapsed.as_secs_f64();
    assert!(
        achieved > 0.9 * f64::from(rate()),
        "the load reached only {achieved:.0} reviews/s"
    );
    let retried = outcomes.iter().filter(|o| o.retries > 0).count();
    let after: Vec<_> = outcomes.iter().filter(|o| o.sent > signalled).collect();
    let to_old = after
        .iter()
        .filter(|o| o.endpoint == Some(old_addr))
        .count();
    eprintln!(
        "{} reviews in {:.1}s ({achieved:.0}/s), {} after SIGTERM ({to_old} answered by the terminating replica), {retried} retried as Go's transport would",
        outcomes.len(),
        elapsed.as_secs_f64(),
        after.len()
    );
}
