//! Hostile clients against the real binary on loopback (issue 16): each attack runs while a
//! probe client sends an ordinary review over its own connection, and the probe must be
//! answered — 200 with its verdict — within its review deadline. Peak memory (VmHWM from
//! /proc) must stay under the chart's memory limit. These are bounds, not timings: nothing here
//! asserts how fast anything is, only that the probe never fails or waits past its deadline.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    Ca, SERVICE_NAME, Standalone, client_config, deployment_review, eventually, proc_status_kib,
    standalone, tls_connect,
};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The probe's review deadline (`?timeout=`), the API server's default.
const PROBE_DEADLINE: Duration = Duration::from_secs(10);
/// The chart's memory limit (values.yaml `resources.limits.memory`).
const CHART_MEMORY_LIMIT_KIB: u64 = 256 * 1024;

/// One ordinary review over a fresh HTTP/1.1 connection: it must be answered 200 with the
/// denial, within its deadline. Returns how long it took.
async fn probe(addr: SocketAddr, ca: &str) -> Duration {
    let started = Instant::now();
    let answer = tokio::time::timeout(PROBE_DEADLINE, async {
        let mut tls = tls_connect(addr, client_config(ca, &[b"http/1.1"], None))
            .await
            .expect("the probe connects");
        let body = serde_json::to_vec(&deployment_review(
            "probe",
            "team",
            Some("https://api.openai.com/v1"),
        ))
        .expect("JSON");
        let head = format!(
            "POST /validate?timeout={}s HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            PROBE_DEADLINE.as_secs(),
            body.len()
        );
        tls.write_all(head.as_bytes()).await.expect("write");
        tls.write_all(&body).await.expect("write");
        tls.flush().await.expect("flush");
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("the probe is answered within its deadline");
    assert!(answer.starts_with("HTTP/1.1 200"), "probe: {answer}");
    assert!(answer.contains("\"allowed\":false"), "probe: {answer}");
    started.elapsed()
}

/// The same probe over HTTP/2 on its own connection.
async fn probe_h2(addr: SocketAddr, ca: &str) -> Duration {
    let started = Instant::now();
    tokio::time::timeout(PROBE_DEADLINE, async {
        let tls = tls_connect(addr, client_config(ca, &[b"h2"], None))
            .await
            .expect("the probe connects");
        let (client, connection) = h2::client::handshake(tls).await.expect("h2");
        tokio::spawn(connection);
        let mut client = client.ready().await.expect("ready");
        let body = serde_json::to_vec(&deployment_review(
            "probe-h2",
            "team",
            Some("https://api.openai.com/v1"),
        ))
        .expect("JSON");
        let request = http::Request::post(format!(
            "https://{SERVICE_NAME}/validate?timeout={}s",
            PROBE_DEADLINE.as_secs()
        ))
        .header("content-type", "application/json")
        .body(())
        .expect("request");
        let (response, mut stream) = client.send_request(request, false).expect("stream");
        stream.send_data(Bytes::from(body), true).expect("send");
        let response = response.await.expect("response");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body");
            let _ = body.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        assert!(text.contains("\"allowed\":false"), "probe: {text}");
    })
    .await
    .expect("the HTTP/2 probe is answered within its deadline");
    started.elapsed()
}

/// `hostguard_admission_in_flight` from the admin port.
fn in_flight(s: &Standalone) -> Option<u64> {
    let (_, text) = common::admin_get(s.server.admin, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("hostguard_admission_in_flight "))
        .and_then(|v| v.trim().parse().ok())
}

fn peak_rss_kib(s: &Standalone) -> u64 {
    proc_status_kib(s.server.pid(), "VmHWM:")
}

/// Opens `n` HTTP/1.1 connections that each declare a 100,000-byte body, send one byte of it
/// and then nothing, with the longest deadline the API server allows.
async fn slow_http1_bodies(addr: SocketAddr, ca: &str, n: usize) -> Vec<common::Tls> {
    let config = client_config(ca, &[b"http/1.1"], None);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tls = tls_connect(addr, config.clone()).await.expect("connects");
        let head = format!(
            "POST /validate?timeout=30s HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
        );
        tls.write_all(head.as_bytes()).await.expect("write");
        tls.flush().await.expect("flush");
        held.push(tls);
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_over_http1_leave_other_reviews_answered_in_time() {
    let ca = Ca::new("hostguard test CA");
    let s = standalone(&ca, &[]);
    // More slow bodies than there are decision slots (256): before issue 16 each held one, and
    // every other review got 429.
    let held = slow_http1_bodies(s.server.webhook, &ca.pem, 300).await;
    eventually(
        "the slow bodies to be in flight",
        Duration::from_secs(30),
        || in_flight(&s).filter(|n| *n >= 300),
    );
    for _ in 0..5 {
        let took = probe(s.server.webhook, &ca.pem).await;
        assert!(took < PROBE_DEADLINE, "{took:?}");
        let took_h2 = probe_h2(s.server.webhook, &ca.pem).await;
        eprintln!("probe during the attack: HTTP/1.1 {took:?}, HTTP/2 {took_h2:?}");
    }
    let peak = peak_rss_kib(&s);
    eprintln!("peak RSS {peak} KiB");
    assert!(
        peak < CHART_MEMORY_LIMIT_KIB,
        "peak RSS {peak} KiB over the chart's limit"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_open_http2_streams_on_one_connection_leave_other_reviews_answered_in_time() {
    let ca = Ca::new("hostguard test CA");
    let s = standalone(&ca, &[]);
    let tls = tls_connect(s.server.webhook, client_config(&ca.pem, &[b"h2"], None))
        .await
        .expect("TLS");
    let (client, connection) = h2::client::handshake(tls).await.expect("h2");
    tokio::spawn(connection);
    // 1,500 streams, each with one byte of a body that never ends: the server lets 128 open
    // (its SETTINGS_MAX_CONCURRENT_STREAMS), of which 16 read their body at a time; the rest
    // wait on the client's side.
    let mut streams = Vec::new();
    for _ in 0..1500 {
        let client = client.clone();
        streams.push(tokio::spawn(async move {
            let mut client = client.ready().await.ok()?;
            let request =
                http::Request::post(format!("https://{SERVICE_NAME}/validate?timeout=30s"))
                    .header("content-type", "application/json")
                    .body(())
                    .ok()?;
            let (response, mut stream) = client.send_request(request, false).ok()?;
            stream.send_data(Bytes::from_static(b"{"), false).ok()?;
            Some((response, stream))
        }));
    }
    eventually(
        "the server's share of streams to be in flight",
        Duration::from_secs(30),
        || in_flight(&s).filter(|n| *n >= 128),
    );
    // No more than the connection's share: the stream limit holds.
    assert!(
        in_flight(&s).is_some_and(|n| n <= 128),
        "{:?}",
        in_flight(&s)
    );
    for _ in 0..5 {
        let took = probe(s.server.webhook, &ca.pem).await;
        assert!(took < PROBE_DEADLINE, "{took:?}");
        let took_h2 = probe_h2(s.server.webhook, &ca.pem).await;
        eprintln!("probe during the attack: HTTP/1.1 {took:?}, HTTP/2 {took_h2:?}");
    }
    let peak = peak_rss_kib(&s);
    eprintln!("peak RSS {peak} KiB");
    assert!(
        peak < CHART_MEMORY_LIMIT_KIB,
        "peak RSS {peak} KiB over the chart's limit"
    );
    for stream in streams {
        stream.abort();
    }
}
