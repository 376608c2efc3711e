//! The webhook routes, `POST /validate` and `POST /mutate`: read the body within limits, ask the
//! engine through [`crate::admission::answer`] (the same translation `hostguard review` uses),
//! and send its response.
//!
//! Failure semantics (design.md): a body over 3 MiB gets 413 without being read whole (what the
//! client still sends is read and dropped, bounded, so that HTTP/2 clients see the 413 and not
//! a reset stream: see [`discard_rest`]); a body that is not JSON gets 400; an unreadable review gets 200 with `allowed: false`; when the server
//! cannot decide (no policy snapshot, deadline passed) it answers 500 so that the webhook's
//! `failurePolicy` applies; excess load is shed at once with 429 instead of queueing past the
//! API server's deadline. The body is read before a decision slot is taken, each stage with its
//! own bounds (see `limits`), and a large review is parsed and decided on the blocking pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::limits::{ByteBudget, Charge, ConnectionReads, FREE_BODY_BYTES, Limits};
use crate::admission::{self, Webhook};
use crate::metrics::{Metrics, Rejection};
use crate::policy::ConfigMapReaders;
use crate::state::{ConfigMapPrefetch, SharedState};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;

/// The API server's own limit on request bodies.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Deadline when the API server sends no `timeout` parameter (its own default is 10 s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bodies up to this size are decided on the request's own task; larger ones on the blocking pool.
const INLINE_DECISION_BYTES: usize = 256 * 1024;
/// ConfigMaps fetched for one review, at most (see the prefetch in `review`).
const MAX_PREFETCHED: usize = 64;
/// The longest deadline honoured (the API server caps webhook timeouts at 30 s).
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// What is still read (and dropped) of a body refused as too large, beyond the limit, at most,
/// and for how long.
const DISCARD_BYTES: u64 = MAX_BODY_BYTES as u64;
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// What every request handler shares.
#[derive(Clone)]
pub struct WebhookState {
    pub engine: Arc<SharedState>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Cluster mode: fetches referenced ConfigMaps the cache lacks.
    pub prefetch: Option<Arc<dyn ConfigMapPrefetch>>,
}

/// The webhook router.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        // The body limit is enforced in `review` so that the refusal is counted and explained.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn validate(State(state): State<WebhookState>, request: Request) -> Response {
    review(state, Webhook::Validate, request).await
}

async fn mutate(State(state): State<WebhookState>, request: Request) -> Response {
    review(state, Webhook::Mutate, request).await
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn enter(metrics: &Arc<Metrics>) -> Self {
        metrics.in_flight.inc();
        InFlight(Arc::clone(metrics))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn review(state: WebhookState, webhook: Webhook, request: Request) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics;

    let declared_len = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let http2 = request.version() == axum::http::Version::HTTP_2;
    if let Some(len) = declared_len.filter(|len| *len > MAX_BODY_BYTES as u64) {
        metrics.reject(Rejection::TooLarge);
        // Nothing read yet: the client may still send the whole declared length.
        let rest = MAX_BODY_BYTES as u64 + DISCARD_BYTES;
        if http2 && len <= rest {
            discard_rest(request.into_body(), rest);
        }
        return too_large();
    }
    let _in_flight = InFlight::enter(metrics);

    let timeout = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("timeout=")))
        .and_then(parse_go_duration)
        .unwrap_or(DEFAULT_TIMEOUT)
        .min(MAX_TIMEOUT);
    // Answer a little before the API server gives up, so that a 500 arrives while it still waits.
    let deadline = started + timeout.saturating_sub((timeout / 10).min(Duration::from_millis(250)));

    // The body first, with slots for reading only (see `limits`): a client that trickles its
    // body holds no decision slot while it does.
    let connection_reads = request.extensions().get::<ConnectionReads>().cloned();
    let mut unread = request.into_body();
    let (body, charge) = {
        // This connection's own streams queue behind each other, holding nothing shared.
        let _connection_read = match connection_reads {
            None => None,
            Some(ConnectionReads(reads)) => {
                match tokio::time::timeout_at(deadline.into(), reads.acquire_owned()).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => return body_too_late(metrics),
                }
            }
        };
        let Ok(_read) = Arc::clone(&state.limits.body_reads).try_acquire_owned() else {
            return overloaded(metrics, "too many request bodies are being read; retry");
        };
        let budget = &state.limits.body_bytes;
        match tokio::time::timeout_at(deadline.into(), read_body(&mut unread, budget)).await {
            Ok(Ok(read)) => read,
            Ok(Err(BodyError::TooLarge)) => {
                metrics.reject(Rejection::TooLarge);
                if http2 {
                    discard_rest(unread, DISCARD_BYTES);
                }
                return too_large();
            }
            Ok(Err(BodyError::Budget)) => {
                return overloaded(
                    metrics,
                    "too many large request bodies are buffered at once; retry",
                );
            }
            Ok(Err(BodyError::Read(e))) => {
                metrics.reject(Rejection::Unreadable);
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                );
            }
            Err(_) => return body_too_late(metrics),
        }
    };
    let large = body.len() > INLINE_DECISION_BYTES;

    // Then a slot for the decision. An ordinary review is decided in microseconds, so its slots
    // are refused at once when all are taken; a large one waits for its own kind of slot (within
    // the deadline), never taking an ordinary review's.
    // Shared with the blocking tasks: a task abandoned at the deadline keeps running, and keeps
    // its slot until it ends, so abandoned work cannot pile up beyond the bound.
    let permit = Arc::new(if large {
        match tokio::time::timeout_at(
            deadline.into(),
            Arc::clone(&state.limits.large_decisions).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            _ => return too_late(metrics, webhook, timeout),
        }
    } else {
        let Ok(permit) = Arc::clone(&state.limits.decisions).try_acquire_owned() else {
            return overloaded(metrics, "too many reviews in flight; retry");
        };
        permit
    });

    let Some(engine) = state.engine.load() else {
        metrics.reject(Rejection::NotReady);
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "hostguard cannot decide yet: the policy snapshot is not loaded",
        );
    };

    // Reading a large body into a JSON tree takes milliseconds: off the async workers too.
    let parsed = if large {
        let body = body.clone();
        let permit = Arc::clone(&permit);
        match tokio::time::timeout_at(
            deadline.into(),
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                admission::parse(&body)
            }),
        )
        .await
        {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(join)) => {
                metrics.reject(Rejection::Panic);
                tracing::error!(error = %join, "the parse task failed");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "the decision failed");
            }
            Err(_) => return too_late(metrics, webhook, timeout),
        }
    } else {
        admission::parse(&body)
    };
    drop(body);
    drop(charge);
    let review = match parsed {
        Ok(admission::Parsed::Review(review)) => review,
        Ok(admission::Parsed::Refused(answer)) => {
            return respond(&state, webhook, *answer, started);
        }
        Err(not_json) => {
            metrics.reject(Rejection::NotJson);
            return plain(
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {not_json}"),
            );
        }
    };
    let looked_up = match &state.prefetch {
        Some(prefetch) => look_up(prefetch.as_ref(), &review, &engine.snapshot, deadline).await,
        None => LookedUp::default(),
    };
    let reads_pods = looked_up
        .readers
        .as_ref()
        .is_some_and(|r| r.as_ref().is_ok_and(|p| !p.is_empty()));

    // A typical review (a few KiB) is decided in microseconds, right here: handing it to another
    // thread would cost more than the decision. A large one is decided off the reactor, so that
    // it cannot stall other requests and the deadline can abandon it. Either way a decision that
    // ends after the deadline is answered with a 500, never with a late verdict.
    let decide = move |review: &admission::ParsedReview| {
        let readers = match &looked_up.readers {
            None => ConfigMapReaders::NotLooked,
            Some(Ok(pods)) => ConfigMapReaders::Listed(pods),
            Some(Err(why)) => ConfigMapReaders::Failed(why),
        };
        // Objects fetched because the watches had not delivered them: this decision's
        // snapshot has them too (a clone shares the maps until written).
        let with_fetched;
        let snapshot = if looked_up.related.is_empty() {
            &engine.snapshot
        } else {
            let mut snapshot = engine.snapshot.clone();
            let namespace = review.info().namespace.as_str();
            for object in &looked_up.related {
                snapshot.insert_related(object, namespace);
            }
            with_fetched = snapshot;
            &with_fetched
        };
        admission::decide_with_readers(review, readers, webhook, &engine.policies, snapshot)
    };
    // Pods are decided one by one against the ConfigMap as it was and as it would be: that is
    // not a microsecond's work, so it goes off the reactor like a large review.
    let answer = if !large && !reads_pods {
        decide(&review)
    } else {
        let permit = Arc::clone(&permit);
        let decided = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            decide(&review)
        });
        match tokio::time::timeout_at(deadline.into(), decided).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(join)) => {
                metrics.reject(Rejection::Panic);
                tracing::error!(error = %join, "the decision task failed");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "the decision failed");
            }
            Err(_) => return too_late(metrics, webhook, timeout),
        }
    };
    if Instant::now() > deadline {
        return too_late(metrics, webhook, timeout);
    }
    respond(&state, webhook, answer, started)
}

/// What a decision needs from the cluster beyond the snapshot, fetched before it (the engine
/// does no I/O).
#[derive(Default)]
struct LookedUp {
    /// For a ConfigMap holding a config file: the Pods that read it, or why they are not known.
    readers: Option<Result<Vec<serde_json::Value>, String>>,
    /// Related objects the object names that the watches had not delivered.
    related: Vec<serde_json::Value>,
}

/// Fetches what the decision on `review` needs and the caches lack, each step within half of
/// what is left of the budget: a slow API server makes a value unresolved (and a namespace's
/// selectors match), it does not make the review late.
async fn look_up(
    prefetch: &dyn ConfigMapPrefetch,
    review: &admission::ParsedReview,
    snapshot: &crate::snapshot::Snapshot,
    deadline: Instant,
) -> LookedUp {
    let until =
        || tokio::time::Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
    let namespace = review.info().namespace.clone();
    // The referenced ConfigMaps, and the namespace when the watch has not delivered it. At
    // most MAX_PREFETCHED GETs for one review: an object naming thousands of ConfigMaps must
    // not turn one admission into thousands of requests to the API server. The ones left out
    // stay unresolved, which fails closed.
    let names: Vec<String> = review
        .config_map_refs()
        .into_iter()
        .take(MAX_PREFETCHED)
        .collect();
    let by = until();
    let _ = tokio::time::timeout_at(by, prefetch.prefetch(namespace.clone(), names, by)).await;

    let mut looked_up = LookedUp::default();
    // Related objects not in the watches' stores (applied a moment before this one), and for
    // an AIGatewayRoute, the Backends of the AIServiceBackends fetched: two hops at most.
    let missing = |keys: Vec<crate::snapshot::RelatedKey>, fetched: &[serde_json::Value]| {
        keys.into_iter()
            .filter(|key| {
                let (g, k, n, name) = key;
                !matches!(
                    snapshot.related(g, k, n, name),
                    crate::snapshot::Lookup::Found(_)
                ) && !fetched
                    .iter()
                    .any(|o| crate::snapshot::related_key(o, n).as_ref() == Some(key))
            })
            .take(MAX_PREFETCHED)
            .collect::<Vec<_>>()
    };
    let mut keys = missing(review.related_references(), &[]);
    for _ in 0..2 {
        if keys.is_empty() {
            break;
        }
        let by = until();
        let fetched = tokio::time::timeout_at(by, prefetch.related_objects(keys, by))
            .await
            .unwrap_or_default();
        let next: Vec<_> = fetched
            .iter()
            .flat_map(|o| crate::detect::adapters::related_references(o, &namespace))
            .collect();
        looked_up.related.extend(fetched);
        keys = missing(next, &looked_up.related);
    }

    // A ConfigMap holding a config file: the Pods that read it, for the engine to judge what
    // the change does to them.
    if let Some(name) = review.config_file_map() {
        let by = until();
        looked_up.readers = Some(
            match tokio::time::timeout_at(
                by,
                prefetch.config_map_readers(namespace, name.to_string(), by),
            )
            .await
            {
                Ok(listed) => listed,
                Err(_) => Err("listing Pods did not finish in time".into()),
            },
        );
    }
    looked_up
}

/// 429 with `Retry-After`: the API server applies the webhook's failurePolicy, and retries
/// later requests elsewhere or here.
fn overloaded(metrics: &Metrics, message: &'static str) -> Response {
    metrics.reject(Rejection::Overloaded);
    let mut response = plain(StatusCode::TOO_MANY_REQUESTS, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn body_too_late(metrics: &Metrics) -> Response {
    metrics.reject(Rejection::Timeout);
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the body did not arrive before the request's timeout",
    )
}

fn too_late(metrics: &Metrics, webhook: Webhook, timeout: Duration) -> Response {
    metrics.reject(Rejection::Timeout);
    tracing::warn!(
        webhook = webhook.as_str(),
        timeout_ms = timeout.as_millis() as u64,
        "decision abandoned at the request's deadline"
    );
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the decision did not finish before the request's timeout",
    )
}

/// Encodes an answer, logs it and counts it.
fn respond(
    state: &WebhookState,
    webhook: Webhook,
    answer: admission::Answer,
    started: Instant,
) -> Response {
    let metrics = &state.metrics;
    let json = match serde_json::to_vec(&answer.review) {
        Ok(json) => json,
        Err(e) => {
            metrics.reject(Rejection::Encode);
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the response: {e}"),
            );
        }
    };
    log_answer(webhook, &answer);
    metrics.record(webhook, &answer, started.elapsed().as_secs_f64());
    if answer.unreadable.is_some() {
        metrics.reject(Rejection::InvalidReview);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response()
}

enum BodyError {
    TooLarge,
    /// The shared buffer budget is exhausted.
    Budget,
    Read(String),
}

fn too_large() -> Response {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body exceeds {MAX_BODY_BYTES} bytes"),
    )
}

/// Reads at most [`MAX_BODY_BYTES`]; stops as soon as the limit is passed, leaving the rest of
/// the body to the caller. What it buffers beyond [`FREE_BODY_BYTES`] is charged to `budget`
/// and held by the returned charge.
async fn read_body(
    body: &mut Body,
    budget: &Arc<ByteBudget>,
) -> Result<(Bytes, Charge), BodyError> {
    let mut charge = budget.charge();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = buf.len() + data.len();
        if len > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        // Charged by what the buffer may hold (its capacity, grown by doubling), so that the
        // budget bounds memory and not only bytes received.
        if len > buf.capacity() {
            let capacity = len.max(buf.capacity() * 2).min(MAX_BODY_BYTES);
            let more = capacity.saturating_sub(FREE_BODY_BYTES) - charge.bytes();
            if more > 0 && !budget.try_grow(&mut charge, more) {
                return Err(BodyError::Budget);
            }
            buf.reserve_exact(capacity - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok((Bytes::from(buf), charge))
}

/// Reads what is left of a body refused over HTTP/2 in the background and drops it, up to
/// `up_to` bytes (the limit was already read, or the declared length is within the limit plus
/// [`DISCARD_BYTES`]) or for [`DISCARD_TIME`].
///
/// Answering before the body is in is allowed, but what happens to the rest decides whether the
/// client sees the answer. A request body dropped unread makes the server end the stream with
/// RST_STREAM(NO_ERROR) right after the 413 (RFC 9113 §8.1 allows exactly that); Go's client
/// (the API server's) and hyper's then read the 413, but a client that is still uploading, such
/// as curl with nghttp2, reports a stream error and never shows it. Reading the rest lets the
/// stream end with both sides' END_STREAM and no reset. A body larger than the bound is still
/// cut off (with the reset), so an endless upload costs at most the bound. HTTP/1.1 is left to
/// hyper, which closes the connection after the answer: reading on there changes nothing for
/// curl and makes Go's client more likely to report its failed write instead of the 413.
fn discard_rest(mut body: Body, up_to: u64) {
    tokio::spawn(async move {
        let mut left = up_to;
        let _ = tokio::time::timeout(DISCARD_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                let Some(rest) = left.checked_sub(len) else {
                    break;
                };
                left = rest;
            }
        })
        .await;
    });
}

/// The uid as logged: the API server's are UUIDs; anything longer is cut.
const LOG_UID_BYTES: usize = 64;
/// Denied field paths listed in the one log line of a denial; the rest are counted.
const LOG_VIOLATIONS: usize = 8;

/// One log line per review, bounded whatever the review: the uid and names cut, at most
/// [`LOG_VIOLATIONS`] denied paths and a count of the rest.
fn log_answer(webhook: Webhook, answer: &admission::Answer) {
    use admission::truncate;
    let info = &answer.info;
    let uid = truncate(&info.uid, LOG_UID_BYTES);
    let name = truncate(&info.name, 256);
    match (&answer.decision, &answer.unreadable) {
        (_, Some(why)) => tracing::info!(
            webhook = webhook.as_str(),
            uid = %uid,
            reason = %truncate(why, 1024),
            "unreadable AdmissionReview refused"
        ),
        (Some(decision), None) if !decision.allowed() && webhook == Webhook::Validate => {
            let denials: Vec<_> = decision.denials().collect();
            let mut paths: Vec<String> = denials
                .iter()
                .take(LOG_VIOLATIONS)
                .map(|v| format!("{}: {}", v.policy, truncate(&v.path, 256)))
                .collect();
            if denials.len() > LOG_VIOLATIONS {
                paths.push(format!("and {} more", denials.len() - LOG_VIOLATIONS));
            }
            tracing::info!(
                webhook = webhook.as_str(),
                uid = %uid,
                namespace = %info.namespace,
                kind = %info.kind,
                name = %name,
                operation = %info.operation,
                dry_run = info.dry_run,
                violations = denials.len(),
                denied = %paths.join("; "),
                "denied"
            );
        }
        (Some(decision), None) => tracing::debug!(
            webhook = webhook.as_str(),
            uid = %uid,
            namespace = %info.namespace,
            kind = %info.kind,
            name = %name,
            operation = %info.operation,
            dry_run = info.dry_run,
            verdict = decision.verdict.as_str(),
            patch_ops = decision.patch.len(),
            "decided"
        ),
        (None, None) => {}
    }
    // kubectl shows each warning in its short form; the log keeps the full detail.
    if let (Some(decision), Webhook::Validate) = (&answer.decision, webhook)
        && !decision.warnings.is_empty()
    {
        let detail: Vec<String> = decision
            .warnings
            .iter()
            .take(LOG_VIOLATIONS)
            .map(|w| truncate(&w.message, 1024).into_owned())
            .collect();
        tracing::info!(
            webhook = webhook.as_str(),
            uid = %uid,
            namespace = %info.namespace,
            kind = %info.kind,
            name = %name,
            warnings = decision.warnings.len(),
            detail = %detail.join("; "),
            "admitted with warnings"
        );
    }
}

/// Parses a Go `time.Duration` string as the API server writes it (`10s`, `1m30s`, `500ms`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration("10parsecs"), None);
    }
}
