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

/// POSTs `body` to `path` over a fresh HTTP/1.1 connection: (status, answer body).
async fn post_h1(addr: SocketAddr, ca: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut tls = tls_connect(addr, client_config(ca, &[b"http/1.1"], None))
        .await
        .expect("connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.write_all(body).await.expect("write");
    tls.flush().await.expect("flush");
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.expect("read");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, answer[split + 4..].to_vec())
}

/// A Deployment review of about `bytes` bytes, its size in `containers` containers that each
/// call api.openai.com.
fn review_with_containers(uid: &str, containers: usize) -> Vec<u8> {
    let mut review = deployment_review(uid, "team", Some("https://api.openai.com/v1"));
    let one = review["request"]["object"]["spec"]["template"]["spec"]["containers"][0].clone();
    let all: Vec<serde_json::Value> = (0..containers)
        .map(|i| {
            let mut c = one.clone();
            c["name"] = serde_json::json!(format!("c{i}"));
            c
        })
        .collect();
    review["request"]["object"]["spec"]["template"]["spec"]["containers"] = serde_json::json!(all);
    serde_json::to_vec(&review).expect("JSON")
}

/// A review within every cap as costly to read as the caps allow: `managedFields` (which the
/// API server sends and hostguard does not judge, but must parse) with nearly as many of the
/// smallest JSON values as hostguard reads, and a string filling the body to `bytes`.
fn review_with_managed_fields(uid: &str, bytes: usize) -> Vec<u8> {
    let mut review = deployment_review(uid, "team", Some("https://api.openai.com/v1"));
    let zeros = vec![0u8; hostguard::admission::MAX_JSON_VALUES - 1000];
    let fill = "f".repeat(bytes - 2 * zeros.len() - 2048);
    review["request"]["object"]["metadata"]["managedFields"] =
        serde_json::json!([{"fieldsV1": zeros, "manager": fill}]);
    serde_json::to_vec(&review).expect("JSON")
}

const MAX_BODY: usize = 3 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_size_reviews_at_full_concurrency_stay_under_the_memory_limit_and_probes_pass() {
    let ca = Ca::new("hostguard test CA");
    let s = standalone(&ca, &[]);
    // The review: 2.9 MiB of containers, over the caps: refused at a count.
    let containers = review_with_containers("many-containers", 20_000);
    // And the costliest review the caps let through: just under the body limit.
    let managed = review_with_managed_fields("managed", MAX_BODY - 64 * 1024);
    assert!(containers.len() < MAX_BODY && managed.len() < MAX_BODY);
    // More at once than the body buffer budget holds (64 MiB: 21 such bodies), plus the probes.
    let addr = s.server.webhook;
    let mut attacks = Vec::new();
    for i in 0..24 {
        let body = if i % 2 == 0 {
            containers.clone()
        } else {
            managed.clone()
        };
        let ca = ca.pem.clone();
        attacks.push(tokio::spawn(async move {
            post_h1(addr, &ca, "/validate?timeout=30s", &body).await
        }));
    }
    for _ in 0..3 {
        let took = probe(addr, &ca.pem).await;
        assert!(took < PROBE_DEADLINE, "{took:?}");
        eprintln!("probe during large reviews: {took:?}");
    }
    let mut shed = 0;
    for (i, attack) in attacks.into_iter().enumerate() {
        let (status, body) = attack.await.expect("joined");
        if status == 429 {
            // Shed by the buffer budget: the API server applies failurePolicy.
            assert!(String::from_utf8_lossy(&body).ends_with("; retry"));
            shed += 1;
            continue;
        }
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let out: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(out["response"]["allowed"], false);
        let message = out["response"]["status"]["message"].as_str().unwrap_or("");
        if i % 2 == 0 {
            assert!(message.contains("too large to judge"), "{message}");
        } else {
            assert!(message.contains("api.openai.com"), "{message}");
        }
        // The answer is bounded whatever the review.
        assert!(body.len() < 64 * 1024, "{} bytes", body.len());
    }
    let peak = peak_rss_kib(&s);
    eprintln!("peak RSS {peak} KiB; {shed} of 24 max-size reviews shed with 429");
    assert!(
        peak < CHART_MEMORY_LIMIT_KIB,
        "peak RSS {peak} KiB over the chart's limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_with_a_huge_uid_or_many_violations_writes_one_bounded_log_line() {
    let ca = Ca::new("hostguard test CA");
    let s = standalone(&ca, &[]);
    let addr = s.server.webhook;
    // 250 containers calling api.openai.com: 250 violations, within the caps.
    let body = review_with_containers("many-violations", 250);
    let (status, answer) = post_h1(addr, &ca.pem, "/validate", &body).await;
    assert_eq!(status, 200);
    let out: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
    assert_eq!(out["response"]["allowed"], false);
    let causes = out["response"]["status"]["details"]["causes"]
        .as_array()
        .expect("causes");
    assert_eq!(causes.len(), 33, "32 causes and the count of the rest");
    assert_eq!(causes[32]["message"], "and 218 more violations");

    // A 100 KiB uid: refused, and logged cut.
    let mut review = deployment_review("x", "team", Some("https://api.openai.com/v1"));
    review["request"]["uid"] = serde_json::json!("u".repeat(100 * 1024));
    let (status, answer) = post_h1(
        addr,
        &ca.pem,
        "/validate",
        &serde_json::to_vec(&review).expect("JSON"),
    )
    .await;
    assert_eq!(status, 200);
    let out: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
    assert_eq!(out["response"]["allowed"], false);

    let lines = eventually("both reviews logged", Duration::from_secs(10), || {
        let lines: Vec<_> = s
            .server
            .log_lines()
            .into_iter()
            .filter(|l| {
                l["message"] == "denied" || l["message"] == "unreadable AdmissionReview refused"
            })
            .collect();
        (lines.len() >= 2).then_some(lines)
    });
    assert_eq!(lines.len(), 2, "one line per review: {lines:?}");
    assert_eq!(lines[0]["violations"], 250);
    assert!(
        lines[0]["denied"]
            .as_str()
            .is_some_and(|d| d.ends_with("and 242 more")),
        "{}",
        lines[0]
    );
    for line in &lines {
        let text = line.to_string();
        assert!(text.len() < 4096, "a log line of {} bytes", text.len());
        assert!(
            line["uid"].as_str().is_some_and(|u| u.len() <= 64),
            "{line}"
        );
    }
}

/// Reads until the server closes the connection (EOF or an error); returns how long it took.
/// Fails past `within`.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(mut s: S, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_or_only_pings_are_closed() {
    let ca = Ca::new("hostguard test CA");
    let s = standalone(
        &ca,
        &["--first-request-timeout", "1s", "--idle-timeout", "2s"],
    );
    let addr = s.server.webhook;
    // TLS, then nothing: closed after the first-request timeout (HTTP/1.1 and h2 offered).
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let tls = tls_connect(addr, client_config(&ca.pem, &[alpn], None))
            .await
            .expect("TLS");
        let took = closed_by_server(tls, Duration::from_secs(10)).await;
        assert!(
            took >= Duration::from_millis(900),
            "closed too early: {took:?}"
        );
    }

    // The HTTP/2 preface, then only PINGs, which the server answers: still closed.
    async fn pinging(addr: SocketAddr, ca: &str, request_first: bool) -> Duration {
        let tls = tls_connect(addr, client_config(ca, &[b"h2"], None))
            .await
            .expect("TLS");
        let (client, mut connection) = h2::client::handshake(tls).await.expect("h2");
        let mut ping = connection.ping_pong().expect("ping handle");
        let started = Instant::now();
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        if request_first {
            let mut client = client.clone().ready().await.expect("ready");
            let request = http::Request::post(format!("https://{SERVICE_NAME}/validate"))
                .body(())
                .expect("request");
            let (response, mut stream) = client.send_request(request, false).expect("stream");
            stream
                .send_data(Bytes::from_static(b"{}"), true)
                .expect("send");
            let _ = response.await.expect("answered");
        }
        let pings = async {
            loop {
                if ping.ping(h2::Ping::opaque()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(45), async {
            tokio::select! {
                _ = pings => {}
                _ = driver => {}
            }
        })
        .await
        .expect("the server ends a connection that only PINGs");
        drop(client);
        started.elapsed()
    }
    let took = pinging(addr, &ca.pem, false).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    let took = pinging(addr, &ca.pem, true).await;
    assert!(
        took >= Duration::from_secs(2),
        "closed before the idle timeout: {took:?}"
    );
    // And the server still answers.
    probe(addr, &ca.pem).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_caps_connections_and_times_out_silent_ones() {
    let ca = Ca::new("hostguard test CA");
    let s = standalone(&ca, &["--admin-max-connections", "4"]);
    let admin = s.server.admin;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::net::TcpStream::connect(admin)
                .await
                .expect("connects"),
        );
    }
    // The cap is reached: the next one is closed at once, with nothing served.
    eventually(
        "the fifth connection to be refused",
        Duration::from_secs(10),
        || {
            let mut c = std::net::TcpStream::connect(admin).ok()?;
            c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            let mut buf = [0u8; 16];
            matches!(std::io::Read::read(&mut c, &mut buf), Ok(0) | Err(_)).then_some(())
        },
    );
    // The silent ones are closed after the header timeout (5 s) ...
    for c in held {
        closed_by_server(c, Duration::from_secs(15)).await;
    }
    // ... and the port serves again.
    let (code, _) = eventually("/livez to answer", Duration::from_secs(10), || {
        common::admin_get(admin, "/livez")
    });
    assert_eq!(code, 200);
}
