//! A load client that calls the webhook the way kube-apiserver does (Go's `net/http`
//! transport): it dials the Service name, so each new connection goes to one of the Service's
//! current endpoints (as kube-proxy routes it) while open connections stay with their Pod;
//! trusts only the CA bundle; keeps one HTTP/2 connection (a new one after GOAWAY) and a pool of
//! kept-alive HTTP/1.1 connections (the most recently used first, a closed one never reused);
//! and retries exactly what Go's transport retries, requests the server provably did not
//! process: an HTTP/2 stream refused (REFUSED_STREAM) or above a GOAWAY's last stream, and a
//! request hyper did not write at all. A POST written to a connection that then closes without
//! an answer is a failure, as it is for the API server (client-go does not retry it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::sync::watch;

use super::{SERVICE_NAME, client_config, tls_connect};

/// Reviews a second the fault tests send: 1,000, as the issue asks. `HOSTGUARD_FAULT_RATE`
/// lowers it only to debug a test against the debug build (which cannot answer 1,000 a second
/// on two cores); CI never sets it.
pub fn rate() -> u32 {
    std::env::var("HOSTGUARD_FAULT_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1000)
}

/// Requests are given up after this long, like the API server's webhook timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pooled connection may take to accept a request before it counts as unusable.
const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts per request (the first plus retries of unprocessed requests).
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// How one review went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub index: u64,
    pub proto: Proto,
    pub sent: Instant,
    pub done: Instant,
    /// The endpoint of the connection that answered (or last failed).
    pub endpoint: Option<SocketAddr>,
    /// (HTTP status, body) or why there was no answer.
    pub result: Result<(u16, Vec<u8>), String>,
    pub retries: usize,
}

impl Outcome {
    pub fn json(&self) -> Option<Value> {
        match &self.result {
            Ok((200, body)) => serde_json::from_slice(body).ok(),
            _ => None,
        }
    }
}

/// The Service: its current endpoints, as kube-proxy would route new connections.
pub struct Service {
    endpoints: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
    h2: Arc<rustls::ClientConfig>,
    h1: Arc<rustls::ClientConfig>,
}

impl Service {
    pub fn new(ca_bundle: &str, endpoints: Vec<SocketAddr>) -> Arc<Service> {
        Arc::new(Service {
            endpoints: Mutex::new(endpoints),
            next: AtomicUsize::new(0),
            h2: client_config(ca_bundle, &[b"h2"], None),
            h1: client_config(ca_bundle, &[b"http/1.1"], None),
        })
    }

    /// What an EndpointSlice update does once it reached kube-proxy.
    pub fn set_endpoints(&self, endpoints: Vec<SocketAddr>) {
        *self.endpoints.lock().unwrap() = endpoints;
    }

    fn pick(&self) -> Result<SocketAddr, String> {
        let endpoints = self.endpoints.lock().unwrap();
        if endpoints.is_empty() {
            return Err("no endpoints available for service".into());
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        Ok(endpoints[i])
    }
}

type Body = Full<Bytes>;

/// The client's connections.
struct Pools {
    service: Arc<Service>,
    /// The HTTP/2 connection in use: (id, endpoint, sender).
    h2: tokio::sync::Mutex<Option<(u64, SocketAddr, http2::SendRequest<Body>)>>,
    dials: std::sync::atomic::AtomicU64,
    h1: Mutex<Vec<(SocketAddr, http1::SendRequest<Body>)>>,
}

/// Whether an error says the server did not process the request (Go retries those).
fn unprocessed(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        source = e.source();
    }
    false
}

impl Pools {
    async fn h2_sender(&self) -> Result<(u64, SocketAddr, http2::SendRequest<Body>), String> {
        let mut current = tokio::time::timeout(REQUEST_TIMEOUT / 4, self.h2.lock())
            .await
            .map_err(|_| "h2 pool: waited for the dialer".to_string())?;
        if let Some((id, addr, sender)) = current.as_ref()
            && !sender.is_closed()
        {
            return Ok((*id, *addr, sender.clone()));
        }
        let addr = self.service.pick()?;
        let tls = tokio::time::timeout(
            REQUEST_TIMEOUT / 4,
            tls_connect(addr, Arc::clone(&self.service.h2)),
        )
        .await
        .map_err(|_| format!("dial {addr}: timed out"))?
        .map_err(|e| format!("dial {addr}: {e}"))?;
        let (sender, conn) = tokio::time::timeout(
            REQUEST_TIMEOUT / 4,
            http2::handshake(TokioExecutor::new(), TokioIo::new(tls)),
        )
        .await
        .map_err(|_| format!("h2 handshake {addr}: timed out"))?
        .map_err(|e| format!("h2 handshake {addr}: {e}"))?;
        tokio::spawn(conn);
        let id = self.dials.fetch_add(1, Ordering::Relaxed);
        *current = Some((id, addr, sender.clone()));
        Ok((id, addr, sender))
    }

    async fn h1_sender(&self) -> Result<(SocketAddr, http1::SendRequest<Body>), String> {
        loop {
            let idle = self.h1.lock().unwrap().pop();
            match idle {
                // A connection the server closed while idle is noticed and dropped.
                Some((_, sender)) if sender.is_closed() => continue,
                Some(pair) => return Ok(pair),
                None => break,
            }
        }
        let addr = self.service.pick()?;
        let tls = tls_connect(addr, Arc::clone(&self.service.h1))
            .await
            .map_err(|e| format!("dial {addr}: {e}"))?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("h1 handshake {addr}: {e}"))?;
        tokio::spawn(conn);
        Ok((addr, sender))
    }

    /// One attempt; Err(true) when the request was not processed and may be retried.
    async fn attempt(
        &self,
        proto: Proto,
        body: &Bytes,
        endpoint: &mut Option<SocketAddr>,
    ) -> Result<(u16, Vec<u8>), (bool, String)> {
        let request = hyper::Request::post(format!("https://{SERVICE_NAME}/validate?timeout=10s"))
            .header("host", SERVICE_NAME)
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .expect("request");
        let (response, back) = match proto {
            Proto::H2 => {
                let (id, addr, mut sender) = self.h2_sender().await.map_err(|e| (false, e))?;
                *endpoint = Some(addr);
                // Go never puts a new request on a connection that got GOAWAY; hyper does not
                // say when one did, but such a connection never becomes ready again: drop it.
                match tokio::time::timeout(READY_TIMEOUT, sender.ready()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => {
                        let mut current = self.h2.lock().await;
                        if current.as_ref().is_some_and(|(c, _, _)| *c == id) {
                            *current = None;
                        }
                        return Err((true, "h2 connection no longer takes requests".into()));
                    }
                }
                match tokio::time::timeout(REQUEST_TIMEOUT / 2, sender.try_send_request(request))
                    .await
                    .map_err(|_| (false, format!("h2 {addr}: sent, no answer")))?
                {
                    Ok(r) => (r, None),
                    Err(mut e) => {
                        let not_sent = e.take_message().is_some();
                        let error = e.into_error();
                        return Err((
                            not_sent || unprocessed(&error),
                            format!("h2 {addr}: {error:?}"),
                        ));
                    }
                }
            }
            Proto::H1 => {
                let (addr, mut sender) = self.h1_sender().await.map_err(|e| (false, e))?;
                *endpoint = Some(addr);
                if sender.ready().await.is_err() {
                    return Err((true, "h1 connection closed before sending".into()));
                }
                match sender.try_send_request(request).await {
                    Ok(r) => (r, Some((addr, sender))),
                    Err(mut e) => {
                        let not_sent = e.take_message().is_some();
                        let error = e.into_error();
                        return Err((not_sent, format!("h1 {addr}: {error}")));
                    }
                }
            }
        };
        let status = response.status().as_u16();
        let close = response
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| (false, format!("reading the answer: {e}")))?
            .to_bytes()
            .to_vec();
        if let Some(pair) = back
            && !close
        {
            self.h1.lock().unwrap().push(pair);
        }
        Ok((status, bytes))
    }

    async fn review(&self, index: u64, proto: Proto, body: Bytes) -> Outcome {
        let sent = Instant::now();
        let mut endpoint = None;
        let mut retries = 0;
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let mut last = String::new();
            for _ in 0..ATTEMPTS {
                match self.attempt(proto, &body, &mut endpoint).await {
                    Ok(answer) => return Ok(answer),
                    Err((true, why)) => {
                        retries += 1;
                        last = why;
                    }
                    Err((false, why)) => return Err(why),
                }
            }
            Err(format!("gave up after {ATTEMPTS} attempts: {last}"))
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        Outcome {
            index,
            proto,
            sent,
            done: Instant::now(),
            endpoint,
            result,
            retries,
        }
    }
}

/// A running load: `rate` reviews a second, alternating HTTP/2 and HTTP/1.1, until stopped.
pub struct Load {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Load {
    /// Starts sending; `body(i)` is the i-th review.
    pub fn start(
        service: Arc<Service>,
        rate: u32,
        body: impl Fn(u64) -> Vec<u8> + Send + 'static,
    ) -> Load {
        let pools = Arc::new(Pools {
            service,
            h2: tokio::sync::Mutex::new(None),
            dials: std::sync::atomic::AtomicU64::new(0),
            h1: Mutex::new(Vec::new()),
        });
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let sink = Arc::clone(&outcomes);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
            // Open loop, like the API server: requests come when they come, late ticks burst.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut index = 0u64;
            let mut running = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    _ = tick.tick() => {}
                }
                let proto = if index.is_multiple_of(2) {
                    Proto::H2
                } else {
                    Proto::H1
                };
                let pools = Arc::clone(&pools);
                let sink = Arc::clone(&sink);
                let bytes = Bytes::from(body(index));
                running.spawn(async move {
                    let outcome = pools.review(index, proto, bytes).await;
                    sink.lock().unwrap().push(outcome);
                });
                index += 1;
                while running.try_join_next().is_some() {}
            }
            while running.join_next().await.is_some() {}
            index
        });
        Load {
            outcomes,
            stop,
            task,
        }
    }

    /// Stops sending, waits for the reviews in flight, and returns every outcome by index.
    pub async fn finish(self) -> Vec<Outcome> {
        let _ = self.stop.send(true);
        let sent = self.task.await.expect("load task");
        let mut outcomes = std::mem::take(&mut *self.outcomes.lock().unwrap());
        outcomes.sort_by_key(|o| o.index);
        assert_eq!(outcomes.len() as u64, sent, "every review has an outcome");
        outcomes
    }
}
