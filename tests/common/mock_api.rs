//! The strict mock Kubernetes API server of the in-process cluster tests: a kube [`Client`] whose
//! requests come here through `tower_test::mock::pair` instead of a network, in the style of
//! kube-rs controller-rs's `ApiServerVerifier`.
//!
//! A mock that answers whatever it does not know with a 404 lets a controller send requests
//! nobody meant it to send (a stray GET, a write a non-leader should not make) and pass, since
//! most callers treat "not found" as an answer. Here a request the test did not declare fails
//! the test. There are two modes:
//!
//! - [`scripted`]: the requests expected, in order, each with its reply. A request that is not
//!   the next expected one fails, naming both; an expected one that never comes fails too. A
//!   [`Script::any_order`] group takes requests whose relative order the code does not fix (the
//!   iteration order of a reflector store, concurrent GETs of one `join_all`) while still
//!   requiring each of them exactly once before the script goes on.
//! - [`routed`]: for clients whose requests interleave nondeterministically (a watch and its
//!   refetch workers), the test's routes answer; a request that no route claims fails.
//!
//! Failures cannot be panics in the task that serves the mock: tokio keeps such a panic in the
//! task's `JoinHandle`, the test goes on, and the client only sees a closed connection. So that
//! task never panics. Every failure (an unexpected request, a check that did not hold, a reply
//! that could not be made) is recorded, answered with a 500 Status whose message names it (so an
//! error the code under test surfaces says what went wrong), and [`ApiServerVerifier::done`]
//! panics with all of them at the end of the test. A verifier dropped without `done` panics as
//! well, so a test cannot skip the check by forgetting it.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

/// How long [`ApiServerVerifier::done`] waits for the scripted requests still to come (tokio
/// time: with a paused clock it passes as soon as nothing else can run).
pub const SCRIPT_WAIT: Duration = Duration::from_secs(10);

/// One request the mock API received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The raw query string (kube starts it with `&`).
    pub query: String,
    pub content_type: String,
    /// The body as JSON, `Null` when empty or not JSON.
    pub body: Value,
}

impl Seen {
    pub fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }

    /// Whether the query holds `pair` (`key=value`, URL-encoded as sent) as one of its parts.
    pub fn query_has(&self, pair: &str) -> bool {
        self.query.split('&').any(|p| p == pair)
    }

    /// Whether the query sets `key` at all.
    pub fn query_sets(&self, key: &str) -> bool {
        self.query
            .split('&')
            .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == key)
    }

    async fn read(request: Request<Body>) -> Seen {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

impl fmt::Display for Seen {
    /// `GET /path?a=1&b=2`, as a failure message names a request.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        let query = self.query.trim_start_matches('&');
        if !query.is_empty() {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

/// What the mock answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Json(u16, Value),
    /// A watch response: JSON lines, then the end of the stream.
    Lines(Vec<Value>),
    /// Never answered (a watch that stays open, a GET that hangs).
    Hang,
}

impl Reply {
    /// 404 with the Status the API server sends for an object that does not exist.
    pub fn not_found() -> Reply {
        Reply::Json(404, status(404, "NotFound"))
    }

    /// A failure Status with `code` and `reason`.
    pub fn status(code: u16, reason: &str) -> Reply {
        Reply::Json(code, status(code, reason))
    }

    fn into_response(self) -> Option<Response<Body>> {
        let response = match self {
            Reply::Json(code, v) => Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&v).unwrap())),
            Reply::Lines(lines) => {
                let mut out = Vec::new();
                for l in lines {
                    out.extend(serde_json::to_vec(&l).unwrap());
                    out.push(b'\n');
                }
                Response::builder().status(200).body(Body::from(out))
            }
            Reply::Hang => return None,
        };
        Some(response.unwrap())
    }
}

/// A `meta/v1` Status body of a failure.
pub fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

/// How an expectation matches a request's path.
enum PathMatch {
    Exact(String),
    /// For names the client makes up (an Event's name ends with a timestamp).
    Prefix(String),
}

type Check = Box<dyn FnOnce(&Seen) + Send>;
type Respond = Box<dyn FnOnce(&Seen) -> Reply + Send>;

/// One expected request of a [`Script`] and its reply.
pub struct Expect {
    method: &'static str,
    path: PathMatch,
    /// `key=value` parts the query must hold.
    query_has: Vec<String>,
    /// Keys the query must not set.
    query_lacks: Vec<String>,
    /// Asserts on the matched request; a panic in one fails the test.
    checks: Vec<Check>,
    reply: Option<Respond>,
}

impl Expect {
    pub fn new(method: &'static str, path: &str) -> Expect {
        Expect {
            method,
            path: PathMatch::Exact(path.to_string()),
            query_has: Vec::new(),
            query_lacks: Vec::new(),
            checks: Vec::new(),
            reply: None,
        }
    }

    pub fn get(path: &str) -> Expect {
        Expect::new("GET", path)
    }

    pub fn post(path: &str) -> Expect {
        Expect::new("POST", path)
    }

    pub fn put(path: &str) -> Expect {
        Expect::new("PUT", path)
    }

    pub fn patch(path: &str) -> Expect {
        Expect::new("PATCH", path)
    }

    pub fn delete(path: &str) -> Expect {
        Expect::new("DELETE", path)
    }

    /// A request to any path that starts with `prefix`.
    pub fn under(method: &'static str, prefix: &str) -> Expect {
        Expect {
            path: PathMatch::Prefix(prefix.to_string()),
            ..Expect::new(method, "")
        }
    }

    /// The query must hold `pair` (`key=value`, URL-encoded as sent).
    pub fn query(mut self, pair: &str) -> Expect {
        self.query_has.push(pair.to_string());
        self
    }

    /// The query must not set `key`.
    pub fn no_query(mut self, key: &str) -> Expect {
        self.query_lacks.push(key.to_string());
        self
    }

    /// Asserts on the matched request (its body, content type, full query).
    pub fn check(mut self, check: impl FnOnce(&Seen) + Send + 'static) -> Expect {
        self.checks.push(Box::new(check));
        self
    }

    /// Asserts on the matched request's JSON body.
    pub fn body(self, check: impl FnOnce(&Value) + Send + 'static) -> Expect {
        self.check(move |s| check(&s.body))
    }

    pub fn reply(self, reply: Reply) -> Expect {
        self.reply_with(move |_| reply)
    }

    /// A reply made from the request (an echoed body, a fake store's answer).
    pub fn reply_with(mut self, reply: impl FnOnce(&Seen) -> Reply + Send + 'static) -> Expect {
        self.reply = Some(Box::new(reply));
        self
    }

    fn matches(&self, s: &Seen) -> bool {
        let path = match &self.path {
            PathMatch::Exact(p) => s.path == *p,
            PathMatch::Prefix(p) => s.path.starts_with(p.as_str()),
        };
        s.method == self.method
            && path
            && self.query_has.iter().all(|pair| s.query_has(pair))
            && !self.query_lacks.iter().any(|key| s.query_sets(key))
    }

    /// Runs the checks and makes the reply; the failures are returned, never raised.
    fn answer(self, s: &Seen) -> (Reply, Vec<String>) {
        let mut failures = Vec::new();
        for check in self.checks {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(s))) {
                failures.push(format!(
                    "{s} was expected, but a check on it failed: {}",
                    panic_message(panic)
                ));
            }
        }
        let respond = self
            .reply
            .expect("Script::then refuses an Expect without a reply");
        match catch_unwind(AssertUnwindSafe(|| respond(s))) {
            Ok(reply) => (reply, failures),
            Err(panic) => {
                let failure = format!("the reply to {s} failed: {}", panic_message(panic));
                let reply = failed_reply(&failure);
                failures.push(failure);
                (reply, failures)
            }
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            PathMatch::Exact(p) => write!(f, "{} {p}", self.method)?,
            PathMatch::Prefix(p) => write!(f, "{} {p}…", self.method)?,
        }
        let mut query: Vec<String> = self.query_has.clone();
        query.extend(self.query_lacks.iter().map(|k| format!("no {k}")));
        if !query.is_empty() {
            write!(f, " (query: {})", query.join(", "))?;
        }
        Ok(())
    }
}

/// The requests a scripted mock expects, in order.
#[derive(Default)]
pub struct Script {
    /// Each step is a set of expectations taken in any order; most hold one.
    steps: VecDeque<Vec<Expect>>,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// The next request.
    pub fn then(mut self, expect: Expect) -> Script {
        self.steps.push_back(vec![Self::replied(expect)]);
        self
    }

    /// Several requests in sequence.
    pub fn then_all(self, expects: impl IntoIterator<Item = Expect>) -> Script {
        expects.into_iter().fold(self, Script::then)
    }

    /// The next requests, each exactly once, in any order among themselves.
    pub fn any_order(mut self, expects: impl IntoIterator<Item = Expect>) -> Script {
        let group: Vec<Expect> = expects.into_iter().map(Self::replied).collect();
        if !group.is_empty() {
            self.steps.push_back(group);
        }
        self
    }

    /// The requests of `more`, after these.
    pub fn and(mut self, more: Script) -> Script {
        self.steps.extend(more.steps);
        self
    }

    fn replied(expect: Expect) -> Expect {
        assert!(expect.reply.is_some(), "{expect} has no reply scripted");
        expect
    }
}

fn describe(step: &[Expect]) -> String {
    match step {
        [one] => one.to_string(),
        many => format!(
            "one of (any order): {}",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

type Route = Box<dyn FnMut(&Seen) -> Option<Reply> + Send>;

enum Responder {
    Script(Script),
    Routes(Route),
}

struct State {
    responder: Responder,
    /// Requests received so far.
    received: usize,
    failures: Vec<String>,
}

impl State {
    /// The reply to one request; a failure is recorded and answered, never raised.
    fn answer(&mut self, s: &Seen) -> Reply {
        self.received += 1;
        let n = self.received;
        let (reply, failures) = match &mut self.responder {
            Responder::Routes(route) => match catch_unwind(AssertUnwindSafe(|| route(s))) {
                Ok(Some(reply)) => (reply, Vec::new()),
                Ok(None) => {
                    let failure = format!("request {n}, {s}, is not one this test declares");
                    (failed_reply(&failure), vec![failure])
                }
                Err(panic) => {
                    let failure = format!(
                        "request {n}, {s}: the route's check failed: {}",
                        panic_message(panic)
                    );
                    (failed_reply(&failure), vec![failure])
                }
            },
            Responder::Script(script) => match script.steps.front_mut() {
                None => {
                    let failure = format!("request {n}, {s}, came after the script had ended");
                    (failed_reply(&failure), vec![failure])
                }
                Some(step) => match step.iter().position(|e| e.matches(s)) {
                    // Not consumed: the request the script waits for may still come.
                    None => {
                        let failure = format!(
                            "request {n} was {s}, but the script expected {}",
                            describe(step)
                        );
                        (failed_reply(&failure), vec![failure])
                    }
                    Some(i) => {
                        let expect = step.remove(i);
                        if step.is_empty() {
                            script.steps.pop_front();
                        }
                        let (reply, failures) = expect.answer(s);
                        let failures = failures
                            .into_iter()
                            .map(|f| format!("request {n}: {f}"))
                            .collect();
                        (reply, failures)
                    }
                },
            },
        };
        for f in &failures {
            // Shown at once too, in case the test fails on the 500 before `done`.
            eprintln!("mock API server: {f}");
        }
        self.failures.extend(failures);
        reply
    }

    fn pending(&self) -> Vec<String> {
        match &self.responder {
            Responder::Script(script) => script.steps.iter().map(|s| describe(s)).collect(),
            Responder::Routes(_) => Vec::new(),
        }
    }
}

fn failed_reply(failure: &str) -> Reply {
    let mut body = status(500, "InternalError");
    body["message"] = json!(format!("mock API server: {failure}"));
    Reply::Json(500, body)
}

fn panic_message(panic: Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// The test's side of the mock: what it saw, and the verdict.
pub struct ApiServerVerifier {
    state: Arc<Mutex<State>>,
    log: Arc<Mutex<Vec<Seen>>>,
    /// Requests answered so far, to wait for the rest of a script without polling.
    answered: watch::Receiver<usize>,
    finished: bool,
}

/// A mock API server that expects `script`.
pub fn scripted(script: Script) -> (Client, ApiServerVerifier) {
    serve(Responder::Script(script))
}

/// A mock API server that answers with `route`; a request it returns `None` for fails the test.
pub fn routed(
    route: impl FnMut(&Seen) -> Option<Reply> + Send + 'static,
) -> (Client, ApiServerVerifier) {
    serve(Responder::Routes(Box::new(route)))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A check that panicked was caught before it could leave the state half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(responder: Responder) -> (Client, ApiServerVerifier) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(State {
        responder,
        received: 0,
        failures: Vec::new(),
    }));
    let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (answered_tx, answered) = watch::channel(0);
    let (serving, seen) = (Arc::clone(&state), Arc::clone(&log));
    tokio::spawn(async move {
        // Unanswered requests stay open until the client goes away.
        let mut open = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let s = Seen::read(request).await;
            lock(&seen).push(s.clone());
            let reply = lock(&serving).answer(&s);
            match reply.into_response() {
                Some(response) => send.send_response(response),
                None => open.push(send),
            }
            answered_tx.send_modify(|n| *n += 1);
        }
    });
    let verifier = ApiServerVerifier {
        state,
        log,
        answered,
        finished: false,
    };
    (Client::new(service, "default"), verifier)
}

impl ApiServerVerifier {
    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.log).clone()
    }

    /// Panics unless every request was expected and (scripted) every expected one came.
    pub async fn done(self) {
        if let Err(e) = self.finish().await {
            panic!("{e}");
        }
    }

    /// The verdict of [`done`](Self::done) as a value: waits up to [`SCRIPT_WAIT`] for the
    /// scripted requests still to come, then lists every failure.
    pub async fn finish(mut self) -> Result<(), String> {
        self.finished = true;
        let deadline = tokio::time::Instant::now() + SCRIPT_WAIT;
        while !lock(&self.state).pending().is_empty() {
            match tokio::time::timeout_at(deadline, self.answered.changed()).await {
                Ok(Ok(())) => {}
                // The deadline passed, or the client is gone and nothing more can come.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let state = lock(&self.state);
        let mut problems = state.failures.clone();
        let pending = state.pending();
        if !pending.is_empty() {
            problems.push(format!(
                "expected but never received (waited {SCRIPT_WAIT:?}): {}",
                pending.join("; then ")
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the mock API server failed the test:\n  - {}",
                problems.join("\n  - ")
            ))
        }
    }
}

impl Drop for ApiServerVerifier {
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            panic!(
                "an ApiServerVerifier was dropped without done(): the requests it saw were never checked"
            );
        }
    }
}
