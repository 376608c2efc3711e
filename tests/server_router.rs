//! The webhook router tested in-process (`tower::ServiceExt::oneshot`) with real AdmissionReview
//! fixtures: the corpus in ../shared/corpus/admission and ours in tests/fixtures/admission.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use hostguard::api::ClusterProvider;
use hostguard::metrics::Metrics;
use hostguard::policy::PolicySet;
use hostguard::server::limits::{LimitSizes, Limits};
use hostguard::server::webhook::{MAX_BODY_BYTES, WebhookState, router};
use hostguard::snapshot::Snapshot;
use hostguard::state::SharedState;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tower::ServiceExt;

fn app_with(provider: ClusterProvider, permits: usize, loaded: bool) -> (Router, Arc<Metrics>) {
    app_with_limits(
        provider,
        LimitSizes {
            decisions: permits,
            ..LimitSizes::default()
        },
        loaded,
    )
}

fn app_with_limits(
    provider: ClusterProvider,
    sizes: LimitSizes,
    loaded: bool,
) -> (Router, Arc<Metrics>) {
    let engine = SharedState::new();
    if loaded {
        engine.publish(PolicySet::builtin(), Snapshot::offline(provider));
    }
    let metrics = Metrics::new();
    let state = WebhookState {
        engine,
        metrics: Arc::clone(&metrics),
        limits: Limits::new(sizes),
        prefetch: None,
    };
    (router(state), metrics)
}

fn app() -> Router {
    app_with(ClusterProvider::Azure, 16, true).0
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/admission");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus present")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

async fn post(app: Router, path: &str, body: impl Into<Body>) -> (StatusCode, Vec<u8>) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request");
    let response = app.oneshot(request).await.expect("infallible router");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, bytes)
}

async fn review(app: Router, path: &str, body: Vec<u8>) -> Value {
    let (status, bytes) = post(app, path, body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).expect("JSON response")
}

#[tokio::test]
async fn every_corpus_review_is_answered_on_both_routes_with_its_uid() {
    for path in corpus() {
        let body = std::fs::read(&path).expect("readable");
        let request: Value = serde_json::from_slice(&body).expect("JSON");
        for route in ["/validate", "/mutate"] {
            let out = review(app(), route, body.clone()).await;
            assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(out["kind"], "AdmissionReview");
            assert_eq!(
                out["response"]["uid"],
                request["request"]["uid"],
                "{} {route}",
                path.display()
            );
            assert!(out["response"]["allowed"].is_boolean());
        }
    }
}

#[tokio::test]
async fn a_denial_lists_every_violation_with_its_field_path() {
    let out = review(app(), "/validate", fixture("deployment-denied.json")).await;
    let response = &out["response"];
    assert_eq!(response["uid"], "0b3f2a30-0001-4d6e-9a55-6c1f1c5e0001");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    let causes = response["status"]["details"]["causes"]
        .as_array()
        .expect("causes");
    let fields: Vec<&str> = causes
        .iter()
        .map(|c| c["field"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        fields,
        vec![
            "spec.template.spec.containers[0].env[OPENAI_BASE_URL]",
            "spec.template.spec.containers[1].env[AZURE_OPENAI_ENDPOINT]",
        ]
    );
    let message = response["status"]["message"].as_str().unwrap_or("");
    for cause in causes {
        assert!(
            message.contains(cause["message"].as_str().unwrap_or("?")),
            "{message}"
        );
        assert_eq!(cause["reason"], "FieldValueForbidden");
    }
    assert!(
        message.contains("\"https://api.openai.com/v1\""),
        "{message}"
    );
}

#[tokio::test]
async fn an_in_cluster_endpoint_is_admitted_with_a_warning() {
    let out = review(
        app(),
        "/validate",
        fixture("deployment-in-cluster-warn.json"),
    )
    .await;
    assert_eq!(out["response"]["allowed"], true);
    let warnings = out["response"]["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].as_str().unwrap_or("").contains("in-cluster"));
}

#[tokio::test]
async fn hostguard_rejects_a_policy_with_a_malformed_host_pattern() {
    let out = review(
        app(),
        "/validate",
        fixture("hostingpolicy-bad-pattern.json"),
    )
    .await;
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(
        out["response"]["status"]["details"]["causes"][0]["field"],
        "spec.endpoints.allowedHosts[0]"
    );
}

#[tokio::test]
async fn ephemeral_containers_are_validated_on_the_subresource_update() {
    let out = review(app(), "/validate", fixture("pod-ephemeral-update.json")).await;
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(
        out["response"]["status"]["details"]["causes"][0]["field"],
        "spec.ephemeralContainers[0].env[OPENAI_API_KEY]"
    );
}

fn patch_of(out: &Value) -> Option<json_patch::Patch> {
    let encoded = out["response"]["patch"].as_str()?;
    assert_eq!(out["response"]["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    Some(serde_json::from_slice(&bytes).expect("a JSON Patch"))
}

#[tokio::test]
async fn mutation_pins_the_pod_and_reinvocation_adds_nothing() {
    let body = fixture("pod-governed-create.json");
    let out = review(app(), "/mutate", body.clone()).await;
    assert_eq!(out["response"]["allowed"], true);
    let patch = patch_of(&out).expect("a patch for a governed pod");

    let mut request: Value = serde_json::from_slice(&body).expect("JSON");
    let mut pod = request["request"]["object"].take();
    json_patch::patch(&mut pod, &patch).expect("the patch applies");
    let typed: Pod = serde_json::from_value(pod.clone()).expect("still a Pod");
    let terms = typed
        .spec
        .and_then(|s| s.affinity)
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .map(|r| r.node_selector_terms)
        .expect("required node affinity");
    assert_eq!(terms.len(), 1);
    let keys: Vec<String> = terms[0]
        .match_expressions
        .iter()
        .flatten()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(
        keys,
        vec![
            "topology.kubernetes.io/zone",
            "kubernetes.azure.com/cluster"
        ]
    );

    // The API server reinvokes with the patched object: nothing more to do.
    request["request"]["object"] = pod;
    let again = review(
        app(),
        "/mutate",
        serde_json::to_vec(&request).expect("JSON"),
    )
    .await;
    assert!(
        patch_of(&again).is_none(),
        "reinvocation patched again: {again}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_gets_400() {
    let (status, body) = post(app(), "/validate", "this is not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("not an AdmissionReview"));
}

#[tokio::test]
async fn json_that_is_not_a_review_gets_a_refusal_naming_the_problem() {
    let out = review(app(), "/validate", br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE"}}"#.to_vec()).await;
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(out["response"]["uid"], "u-1");
    assert!(
        out["response"]["status"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("v1beta1")
    );
}

#[tokio::test]
async fn an_oversized_body_gets_413_by_declared_length_or_while_streaming() {
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, _) = post(app(), "/validate", big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // No content-length: a stream that keeps going is cut at the limit.
    let (status, _) = post(app(), "/validate", Body::new(chunked::Chunks::new(big))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A body sent in 64 KiB frames with no declared length, as a streaming client sends it.
mod chunked {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::body::Bytes;
    use http_body::{Body, Frame};

    pub struct Chunks {
        bytes: Vec<u8>,
        sent: usize,
    }

    impl Chunks {
        pub fn new(bytes: Vec<u8>) -> Self {
            Chunks { bytes, sent: 0 }
        }
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let start = self.sent;
            if start >= self.bytes.len() {
                return Poll::Ready(None);
            }
            let end = (start + 64 * 1024).min(self.bytes.len());
            self.sent = end;
            let frame = Frame::data(Bytes::copy_from_slice(&self.bytes[start..end]));
            Poll::Ready(Some(Ok(frame)))
        }
    }
}

#[tokio::test]
async fn without_a_policy_snapshot_the_server_answers_500() {
    let (app, _) = app_with(ClusterProvider::Azure, 16, false);
    let (status, _) = post(app, "/validate", fixture("deployment-denied.json")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn excess_load_is_shed_with_429_at_once() {
    let (app, metrics) = app_with(ClusterProvider::Azure, 0, true);
    let (status, _) = post(app, "/validate", fixture("deployment-denied.json")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        metrics
            .encode()
            .contains("hostguard_admission_rejected_bodies_total{reason=\"overloaded\"} 1")
    );
}

#[tokio::test]
async fn a_passed_deadline_gives_500_never_a_late_answer() {
    let request = Request::post("/validate?timeout=0s")
        .body(Body::from(fixture("deployment-denied.json")))
        .expect("request");
    let response = app().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn decisions_are_counted_by_webhook_kind_operation_and_decision() {
    let (app, metrics) = app_with(ClusterProvider::Azure, 16, true);
    let _ = post(app, "/validate", fixture("deployment-denied.json")).await;
    let text = metrics.encode();
    assert!(
        text.contains(r#"hostguard_admission_requests_total{webhook="validate",kind="Deployment",operation="CREATE",decision="deny"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"hostguard_policy_violations_total{policy="openai-stateless-on-azure",action="Deny"} 2"#), "{text}");
}

#[tokio::test]
async fn invalid_utf8_anywhere_in_the_body_is_not_json() {
    // Even inside a field hostguard never reads: a review with such bytes is not a review.
    let mut body = fixture("deployment-denied.json");
    let at = String::from_utf8_lossy(&body)
        .find("alice")
        .expect("a username in the fixture");
    body[at] = 0x89;
    body[at + 1] = 0x9c;
    let (status, _) = post(app(), "/validate", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// A body fed by the test: chunks sent on the returned sender; the body ends when it is dropped.
fn fed_body() -> (tokio::sync::mpsc::Sender<Vec<u8>>, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(axum::body::Bytes::from(
                chunk,
            ))),
            rx,
        ))
    });
    (tx, Body::new(http_body_util::StreamBody::new(stream)))
}

/// Starts a review whose body stays open, and returns once the handler has read its first
/// chunk (so it holds whatever reading a body holds), with the sender that finishes it.
async fn trickling_review(
    app: Router,
    first: Vec<u8>,
) -> (
    tokio::sync::mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<(StatusCode, Vec<u8>)>,
) {
    let (tx, body) = fed_body();
    let answer = tokio::spawn(post(app, "/validate?timeout=30s", body));
    tx.send(first).await.expect("the handler reads");
    // The channel holds one chunk: this returns once the handler has taken the first.
    let permit = tx.reserve().await.expect("the handler reads");
    drop(permit);
    (tx, answer)
}

#[tokio::test]
async fn a_body_being_read_holds_no_decision_slot() {
    let sizes = LimitSizes {
        decisions: 1,
        ..LimitSizes::default()
    };
    let (app, _) = app_with_limits(ClusterProvider::Azure, sizes, true);
    let body = fixture("deployment-denied.json");
    let (half, rest) = body.split_at(body.len() / 2);
    let (tx, slow) = trickling_review(app.clone(), half.to_vec()).await;
    // The only decision slot is free while the first body trickles in.
    let out = review(app.clone(), "/validate", fixture("deployment-denied.json")).await;
    assert_eq!(out["response"]["allowed"], false);
    tx.send(rest.to_vec()).await.expect("send");
    drop(tx);
    let (status, _) = slow.await.expect("joined");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn body_reads_beyond_the_bound_are_refused_with_429_at_once() {
    let sizes = LimitSizes {
        body_reads: 1,
        ..LimitSizes::default()
    };
    let (app, metrics) = app_with_limits(ClusterProvider::Azure, sizes, true);
    let (tx, slow) = trickling_review(app.clone(), b"{".to_vec()).await;
    let (status, text) = post(app.clone(), "/validate", fixture("deployment-denied.json")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        String::from_utf8_lossy(&text),
        "too many request bodies are being read; retry"
    );
    assert!(
        metrics
            .encode()
            .contains("hostguard_admission_rejected_bodies_total{reason=\"overloaded\"} 1")
    );
    drop(tx);
    let (status, _) = slow.await.expect("joined");
    // "{" alone is not JSON.
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The slot is back.
    let out = review(app, "/validate", fixture("deployment-denied.json")).await;
    assert_eq!(out["response"]["allowed"], false);
}

#[tokio::test]
async fn large_bodies_share_a_buffer_budget_that_ordinary_reviews_never_wait_on() {
    let sizes = LimitSizes {
        body_bytes: 1024 * 1024,
        ..LimitSizes::default()
    };
    let (app, metrics) = app_with_limits(ClusterProvider::Azure, sizes, true);
    // 700 KiB buffered: 636 KiB charged beyond the free 64 KiB.
    let (tx, slow) = trickling_review(app.clone(), vec![b' '; 700 * 1024]).await;
    // A second body of the same size needs another 636 KiB: over the 1 MiB budget.
    let (status, text) = post(app.clone(), "/validate", vec![b' '; 700 * 1024]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        String::from_utf8_lossy(&text),
        "too many large request bodies are buffered at once; retry"
    );
    assert!(metrics.encode().contains("reason=\"overloaded\"} 1"));
    // An ordinary review fits in its free bytes.
    let out = review(app.clone(), "/validate", fixture("deployment-denied.json")).await;
    assert_eq!(out["response"]["allowed"], false);
    drop(tx);
    let _ = slow.await.expect("joined");
    // Once the first is answered its bytes are back.
    let (status, _) = post(app, "/validate", vec![b' '; 700 * 1024]).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "blank is not JSON, but it was read"
    );
}
