//! The HTTPS listener: TCP accept with `TCP_NODELAY`, the TLS handshake under a deadline, then
//! HTTP/1.1 or HTTP/2 (by ALPN) on hyper, and the drain that makes a rollout invisible to the
//! API server.
//!
//! `TCP_NODELAY` matters: without it small HTTP/2 frames wait for delayed ACKs and answers stall
//! for tens of milliseconds.
//!
//! # The drain
//!
//! When a Pod is deleted, the kubelet's SIGTERM and the removal of the Pod's endpoint from the
//! Service's EndpointSlices happen at the same time, but the endpoint removal still has to reach
//! every kube-proxy (and so the API server's route to the Service) — seconds, not milliseconds —
//! and connections the API server already holds stay pinned to this Pod by conntrack whatever the
//! endpoints say. A listener that closes on SIGTERM refuses every review sent meanwhile, and with
//! `failurePolicy: Fail` each is a rejected Pod. So shutdown goes through three [`Phase`]s:
//!
//! 1. [`Phase::Serving`] until the first signal.
//! 2. [`Phase::Draining`] for the drain delay: readiness is already false, and the listener keeps
//!    accepting and answering. Clients are asked to move, in the only ways that lose nothing:
//!    HTTP/2 connections open at the signal get a graceful GOAWAY (the client finishes its
//!    streams, and opens a new connection for the next request, which a Go client retries
//!    itself if it raced the GOAWAY); every HTTP/1.1 answer carries `Connection: close`, so the
//!    client closes after reading it. Idle HTTP/1.1 connections are left alone: closing one can
//!    race a request the client is writing, which a client may not retry (Go does not retry a
//!    POST it has written).
//! 3. [`Phase::Closing`] after the drain delay: the listener closes, every connection is shut
//!    down gracefully (HTTP/2 GOAWAY; HTTP/1.1 after its current answer, idle ones at once), and
//!    in-flight reviews get the shutdown grace to finish.
//!
//! By the end of the drain delay the endpoint is gone, so nothing new arrives; what is left are
//! HTTP/1.1 connections that stayed idle through the whole delay, which clients no longer pick
//! (Go reuses the most recently used idle connection first).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::limits::ConnectionReads;
use super::shutdown::Drain;
use super::tls::WebhookTls;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the listener is in its shutdown (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    Draining,
    Closing,
}

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the grace.
    Complete,
    /// The grace ran out with connections still open.
    GraceElapsed,
}

type Builder = auto::Builder<TokioExecutor>;

/// What one connection may hold (see `limits`), and how long it may stay open doing nothing.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub http2_max_concurrent_streams: u32,
    /// Request bodies being read at once on one connection.
    pub body_reads: usize,
    /// From the end of the TLS handshake to the first request: a client that connects and
    /// sends nothing, or only the HTTP/2 preface and PINGs, is closed after this.
    pub first_request_timeout: Duration,
    /// With no request in flight for this long, the connection is closed (HTTP/2: GOAWAY).
    /// Only requests count as activity: keep-alive PINGs do not keep a connection open.
    pub idle_timeout: Duration,
}

/// How long a connection told to go (idle, or shutting down) may take to finish what it has in
/// flight before it is dropped: the longest review deadline, so no answer is cut off.
const LINGER: Duration = Duration::from_secs(30);

/// Serves `router` over TLS on `listener` until `shutdown` turns true, then drains as the module
/// documentation says and returns how the drain ended.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<WebhookTls>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    drain: Drain,
    limits: ConnectionLimits,
) -> Drained {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    // Every connection task holds a receiver; `closed()` on the sender tells when all are done.
    let (phase, _) = watch::channel(Phase::Serving);

    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            changed = shutdown.changed(), if deadline.is_none() => {
                if changed.is_err() || *shutdown.borrow() {
                    // Without a signal sender left there is nothing to drain for: close now.
                    let delay = if changed.is_err() { Duration::ZERO } else { drain.delay };
                    deadline = Some(tokio::time::Instant::now() + delay);
                    phase.send_replace(Phase::Draining);
                    tracing::info!(
                        drain_delay_seconds = delay.as_secs_f64(),
                        "draining: still accepting and answering while the endpoint is removed"
                    );
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                if deadline.is_some() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection = Connection {
            tls: tls.config(),
            builder: Arc::clone(&builder),
            router: router.clone(),
            phase: phase.subscribe(),
            reads: ConnectionReads(Arc::new(Semaphore::new(limits.body_reads))),
            limits,
        };
        tokio::spawn(connection.serve(tcp, peer));
    }
    drop(listener);
    let open = phase.receiver_count();
    phase.send_replace(Phase::Closing);
    tracing::info!(
        open_connections = open,
        grace_seconds = drain.grace.as_secs_f64(),
        "webhook listener closed; finishing in-flight reviews"
    );
    match tokio::time::timeout(drain.grace, phase.closed()).await {
        Ok(()) => Drained::Complete,
        Err(_) => Drained::GraceElapsed,
    }
}

/// Requests on one connection.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    in_flight: usize,
    started: u64,
}

/// One accepted connection and what it needs.
struct Connection {
    tls: Arc<rustls::ServerConfig>,
    builder: Arc<Builder>,
    router: Router,
    phase: watch::Receiver<Phase>,
    reads: ConnectionReads,
    limits: ConnectionLimits,
}

impl Connection {
    async fn serve(mut self, tcp: TcpStream, peer: std::net::SocketAddr) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let acceptor = TlsAcceptor::from(self.tls);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        // Requests in flight on this connection, and started in all: what counts as activity.
        let (active_tx, mut active) = watch::channel(Activity::default());
        let active_tx = Arc::new(active_tx);
        let service = TowerToHyperService::new(close_when_draining(
            self.router,
            self.phase.clone(),
            self.reads,
            active_tx,
        ));
        let conn = self.builder.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(conn);
        // A connection accepted while draining is served until the listener closes: asking it
        // to go at once would only make the client reconnect here again.
        let mut told = false;
        if *self.phase.borrow_and_update() == Phase::Closing {
            conn.as_mut().graceful_shutdown();
            told = true;
        }
        // Idle since when, and for how long it may be: the first request gets the first-request
        // timeout, later idle spells the idle timeout.
        let mut idle_since = Some(tokio::time::Instant::now());
        let mut idle_limit = self.limits.first_request_timeout;
        // Once told to go, the connection has LINGER to finish, then it is dropped: a client
        // that ignores GOAWAY or never acknowledges its PING does not keep it open.
        let mut linger_until: Option<tokio::time::Instant> =
            told.then(|| tokio::time::Instant::now() + LINGER);
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                changed = active.changed() => {
                    if changed.is_ok() {
                        // A watch shows only the latest value: a request that came and went
                        // between two looks still shows in `started`.
                        let now = *active.borrow_and_update();
                        if now.started > 0 {
                            idle_limit = self.limits.idle_timeout;
                        }
                        if now.in_flight == 0 {
                            idle_since = Some(tokio::time::Instant::now());
                        } else {
                            idle_since = None;
                        }
                    }
                }
                _ = tokio::time::sleep_until(idle_since.map_or_else(tokio::time::Instant::now, |t| t + idle_limit)),
                    if idle_since.is_some() && !told => {
                    tracing::debug!(%peer, idle_seconds = idle_limit.as_secs_f64(), "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    told = true;
                    linger_until = Some(tokio::time::Instant::now() + LINGER);
                }
                _ = tokio::time::sleep_until(linger_until.unwrap_or_else(tokio::time::Instant::now)),
                    if linger_until.is_some() => {
                    tracing::debug!(%peer, "dropping a connection that did not finish after being told to go");
                    return;
                }
                changed = self.phase.changed(), if !told => {
                    let phase = if changed.is_err() {
                        Phase::Closing
                    } else {
                        *self.phase.borrow_and_update()
                    };
                    if phase == Phase::Closing || (phase == Phase::Draining && http2) {
                        conn.as_mut().graceful_shutdown();
                        told = true;
                        // The drain has its own grace for what is in flight.
                    }
                }
            }
        }
    }
}

/// The router, with `Connection: close` on every HTTP/1.x answer sent once the drain has
/// started, so that the client opens its next connection through the Service, and the
/// connection's body-read bound in every request's extensions.
fn close_when_draining(
    router: Router,
    phase: watch::Receiver<Phase>,
    reads: ConnectionReads,
    active: Arc<watch::Sender<Activity>>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone
+ Send {
    tower::service_fn(move |mut request: Request<Incoming>| {
        let http1 = request.version() < Version::HTTP_2;
        request.extensions_mut().insert(reads.clone());
        let phase = phase.clone();
        let answer = router.clone().oneshot(request);
        let active = Arc::clone(&active);
        active.send_modify(|a| {
            a.in_flight += 1;
            a.started += 1;
        });
        async move {
            // Counted down however the request ends (answered, or dropped with its stream).
            struct Done(Arc<watch::Sender<Activity>>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.send_modify(|a| a.in_flight -= 1);
                }
            }
            let _done = Done(active);
            let mut response = answer.await?;
            // Decided when the answer is ready: a review that arrived before the signal and is
            // answered after it closes its connection too.
            if http1 && *phase.borrow() != Phase::Serving {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        }
    })
}
