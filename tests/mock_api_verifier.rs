//! The strict mock API server of `tests/common/mock_api.rs` itself: a scenario passes only when
//! the requests are the ones declared, in the declared order. An unexpected request, a request
//! after the script ended, an expected request that never comes, a failing check on a request,
//! a request no route claims: each fails the scenario, naming what was expected and what came.
//! Without these, a cluster test could pass against a mock that accepts anything.
//!
//! The requests are sent raw through the kube client, so that nothing but the mock is tested.

mod common;

use common::mock_api::{Expect, Reply, SCRIPT_WAIT, Script, routed, scripted};
use kube::Client;
use serde_json::json;

async fn get(client: &Client, uri: &str) -> Result<String, kube::Error> {
    client
        .request_text(http::Request::get(uri).body(Vec::new()).unwrap())
        .await
}

async fn post(client: &Client, uri: &str, body: serde_json::Value) -> Result<String, kube::Error> {
    client
        .request_text(
            http::Request::post(uri)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap(),
        )
        .await
}

fn ok(text: &str) -> Reply {
    Reply::Json(200, json!({ "said": text }))
}

#[tokio::test(start_paused = true)]
async fn a_scenario_whose_requests_come_as_scripted_passes() {
    let (client, api) = scripted(
        Script::new()
            .then(Expect::get("/a").query("limit=5").reply(ok("a")))
            .then(
                Expect::post("/b")
                    .body(|b| assert_eq!(b["name"], "x"))
                    .reply_with(|s| Reply::Json(201, s.body.clone())),
            ),
    );
    assert_eq!(get(&client, "/a?limit=5").await.unwrap(), r#"{"said":"a"}"#);
    assert_eq!(
        post(&client, "/b", json!({"name": "x"})).await.unwrap(),
        r#"{"name":"x"}"#
    );
    assert_eq!(api.seen().len(), 2);
    api.finish()
        .await
        .expect("every request was the expected one");
}

#[tokio::test(start_paused = true)]
async fn an_unexpected_request_fails_the_scenario_and_names_both_requests() {
    let (client, api) = scripted(Script::new().then(Expect::get("/a").reply(ok("a"))));
    let answer = get(&client, "/b?x=1").await;
    // The client is told too, so an error the code under test surfaces says what went wrong.
    let error = answer.expect_err("an unexpected request is not answered as if expected");
    assert!(
        error.to_string().contains("request 1 was GET /b?x=1"),
        "{error}"
    );
    let verdict = api.finish().await.expect_err("the scenario fails");
    assert!(
        verdict.contains("request 1 was GET /b?x=1, but the script expected GET /a"),
        "{verdict}"
    );
    // The expected request never came either.
    assert!(verdict.contains("never received"), "{verdict}");
}

#[tokio::test(start_paused = true)]
async fn a_request_that_does_not_match_leaves_the_expected_one_to_come() {
    let (client, api) = scripted(Script::new().then(Expect::get("/a").reply(ok("a"))));
    assert!(get(&client, "/b").await.is_err());
    assert_eq!(get(&client, "/a").await.unwrap(), r#"{"said":"a"}"#);
    let verdict = api
        .finish()
        .await
        .expect_err("the stray request still fails it");
    assert!(verdict.contains("request 1 was GET /b"), "{verdict}");
    assert!(!verdict.contains("never received"), "{verdict}");
}

#[tokio::test(start_paused = true)]
async fn an_expected_request_that_never_comes_fails_the_scenario() {
    let (client, api) = scripted(
        Script::new()
            .then(Expect::get("/a").reply(ok("a")))
            .then(Expect::delete("/c").reply(ok("c"))),
    );
    get(&client, "/a").await.unwrap();
    let started = tokio::time::Instant::now();
    let verdict = api.finish().await.expect_err("the scenario fails");
    assert_eq!(
        started.elapsed(),
        SCRIPT_WAIT,
        "it waited for the request, bounded"
    );
    assert!(
        verdict.contains("expected but never received (waited 10s): DELETE /c"),
        "{verdict}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_that_comes_while_the_verifier_waits_completes_the_scenario() {
    let (client, api) = scripted(Script::new().then(Expect::get("/late").reply(ok("late"))));
    let late = tokio::spawn(async move {
        tokio::time::sleep(SCRIPT_WAIT / 2).await;
        get(&client, "/late").await
    });
    api.finish()
        .await
        .expect("the late request came within the wait");
    late.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_request_after_the_script_ended_fails_the_scenario() {
    let (client, api) = scripted(Script::new().then(Expect::get("/a").reply(ok("a"))));
    get(&client, "/a").await.unwrap();
    assert!(get(&client, "/a").await.is_err());
    let verdict = api.finish().await.expect_err("the scenario fails");
    assert!(
        verdict.contains("request 2, GET /a, came after the script had ended"),
        "{verdict}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_script_fails_on_any_request() {
    let (client, api) = scripted(Script::new());
    assert!(get(&client, "/anything").await.is_err());
    let verdict = api.finish().await.expect_err("the scenario fails");
    assert!(verdict.contains("GET /anything"), "{verdict}");
}

#[tokio::test(start_paused = true)]
async fn an_any_order_group_takes_its_requests_in_either_order() {
    let (client, api) = scripted(
        Script::new()
            .any_order([
                Expect::get("/x").reply(ok("x")),
                Expect::get("/y").reply(ok("y")),
            ])
            .then(Expect::get("/z").reply(ok("z"))),
    );
    for path in ["/y", "/x", "/z"] {
        get(&client, path).await.unwrap();
    }
    api.finish().await.expect("both orders are fine");
}

#[tokio::test(start_paused = true)]
async fn an_any_order_group_takes_each_request_once_and_all_before_the_next_step() {
    let (client, api) = scripted(
        Script::new()
            .any_order([
                Expect::get("/x").reply(ok("x")),
                Expect::get("/y").reply(ok("y")),
            ])
            .then(Expect::get("/z").reply(ok("z"))),
    );
    get(&client, "/x").await.unwrap();
    assert!(get(&client, "/x").await.is_err(), "/x only once");
    assert!(get(&client, "/z").await.is_err(), "/z only after /y");
    let verdict = api.finish().await.expect_err("the scenario fails");
    assert!(
        verdict.contains("request 2 was GET /x, but the script expected GET /y"),
        "{verdict}"
    );
    assert!(
        verdict.contains("request 3 was GET /z, but the script expected GET /y"),
        "{verdict}"
    );
}

#[tokio::test(start_paused = true)]
async fn query_predicates_decide_whether_a_request_is_the_expected_one() {
    let (client, api) = scripted(
        Script::new().then(
            Expect::get("/list")
                .query("limit=5")
                .no_query("continue")
                .reply(ok("page")),
        ),
    );
    assert!(get(&client, "/list?limit=5&continue=t").await.is_err());
    assert!(get(&client, "/list?limit=6").await.is_err());
    assert!(get(&client, "/list?limit=5").await.is_ok());
    let verdict = api.finish().await.expect_err("the scenario fails");
    assert!(
        verdict.contains(
            "request 1 was GET /list?limit=5&continue=t, but the script expected GET /list (query: limit=5, no continue)"
        ),
        "{verdict}"
    );
    assert!(
        verdict.contains("request 2 was GET /list?limit=6"),
        "{verdict}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_check_on_an_expected_request_fails_the_scenario() {
    let (client, api) = scripted(
        Script::new().then(
            Expect::post("/b")
                .body(|b| assert_eq!(b["name"], "x", "the name sent"))
                .reply(ok("b")),
        ),
    );
    // The scripted reply still goes out: the test fails at `done`, on the check's message.
    post(&client, "/b", json!({"name": "y"})).await.unwrap();
    let verdict = api.finish().await.expect_err("the scenario fails");
    assert!(
        verdict.contains("request 1: POST /b was expected, but a check on it failed"),
        "{verdict}"
    );
    assert!(verdict.contains("the name sent"), "{verdict}");
}

#[tokio::test(start_paused = true)]
async fn a_request_no_route_claims_fails_a_routed_scenario() {
    let (client, api) = routed(|r| (r.path == "/known").then(|| ok("known")));
    get(&client, "/known").await.unwrap();
    get(&client, "/known").await.unwrap();
    assert!(get(&client, "/unknown?watch=true").await.is_err());
    let verdict = api.finish().await.expect_err("the scenario fails");
    assert_eq!(
        verdict,
        "the mock API server failed the test:\n  - request 3, GET /unknown?watch=true, is not one this test declares"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_route_fails_the_scenario_instead_of_vanishing_with_the_task() {
    let (client, api) = routed(|r| {
        assert!(r.query_has("limit=5"), "the list asks for pages");
        Some(ok("page"))
    });
    assert!(get(&client, "/list").await.is_err());
    // The mock still serves after the panic.
    assert!(get(&client, "/list?limit=5").await.is_ok());
    let verdict = api.finish().await.expect_err("the scenario fails");
    assert!(
        verdict.contains("request 1, GET /list: the route's check failed: the list asks for pages"),
        "{verdict}"
    );
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "request 1 was GET /b, but the script expected GET /a")]
async fn done_panics_with_what_went_wrong() {
    let (client, api) = scripted(Script::new().then(Expect::get("/a").reply(ok("a"))));
    let _ = get(&client, "/b").await;
    api.done().await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "dropped without done()")]
async fn a_verifier_dropped_without_done_fails_the_test() {
    let (client, api) = scripted(Script::new().then(Expect::get("/a").reply(ok("a"))));
    get(&client, "/a").await.unwrap();
    drop(api);
}
