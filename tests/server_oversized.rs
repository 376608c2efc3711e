//! A body over the 3 MiB limit gets a 413 over HTTP/2 as over HTTP/1.1, against the real binary.
//!
//! Answering before the body is in is allowed (RFC 9113 §8.1), but whether the client sees the
//! answer depends on how the stream then ends. If the server drops the rest of the body, the
//! stream ends with RST_STREAM(NO_ERROR) while the client is still uploading, and a client like
//! curl (nghttp2) reports a stream error instead of the 413. These tests drive the HTTP/2
//! stream frame by frame (the `h2` crate) to see exactly that: for a body within the server's
//! discard bound, the whole upload goes through and the stream ends with END_STREAM from both
//! sides, no reset; beyond the bound, the 413 still arrives complete before a NO_ERROR reset.

mod common;

use std::time::Duration;

use common::{Ca, SERVICE_NAME, client_config, standalone, tls_connect};
use hyper::body::Bytes;

const LIMIT: usize = 3 * 1024 * 1024;
const CHUNK: usize = 16 * 1024;

/// How one oversized upload over HTTP/2 went.
#[derive(Debug)]
struct Upload {
    status: u16,
    body: String,
    /// Bytes of the request body the server let the client send (flow control).
    sent: usize,
    /// How the client's side of the stream ended: None when END_STREAM went out, else the
    /// reason of the reset that stopped the upload.
    reset: Option<h2::Reason>,
    /// When the upload stopped because the stream was already closed by the server's answer and
    /// reset (h2 then refuses more DATA with an error that carries no reason): that error.
    closed: Option<String>,
}

/// POSTs `len` bytes over one HTTP/2 stream, declaring the length or not, sending as the
/// server's flow-control window allows, and reading the answer as it comes.
async fn upload_h2(addr: std::net::SocketAddr, ca: &str, len: usize, declare: bool) -> Upload {
    let tls = tls_connect(addr, client_config(ca, &[b"h2"], None))
        .await
        .expect("TLS");
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let mut request = http::Request::post(format!("https://{SERVICE_NAME}/validate"))
        .header("content-type", "application/json");
    if declare {
        request = request.header("content-length", len.to_string());
    }
    let (response, mut stream) = client
        .send_request(request.body(()).expect("request"), false)
        .expect("stream opens");
    let sending = async {
        let mut sent = 0;
        while sent < len {
            let want = CHUNK.min(len - sent);
            stream.reserve_capacity(want);
            match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(granted)) if granted > 0 => {
                    let n = granted.min(want);
                    let last = sent + n == len;
                    if let Err(e) = stream.send_data(Bytes::from(vec![b'{'; n]), last) {
                        return (
                            sent,
                            e.reason(),
                            e.reason().is_none().then(|| e.to_string()),
                        );
                    }
                    sent += n;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return (
                        sent,
                        e.reason(),
                        e.reason().is_none().then(|| e.to_string()),
                    );
                }
                None => return (sent, Some(h2::Reason::NO_ERROR), None),
            }
        }
        (sent, None, None)
    };
    let receiving = async {
        let response = response.await.expect("a response");
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("the answer's body arrives whole");
            let _ = body.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        (status, String::from_utf8_lossy(&text).into_owned())
    };
    let ((sent, reset, closed), (status, body)) = tokio::time::timeout(
        Duration::from_secs(30),
        futures::future::join(sending, receiving),
    )
    .await
    .expect("the exchange ends in time");
    Upload {
        status,
        body,
        sent,
        reset,
        closed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_uploads_a_little_over_the_limit_end_with_the_413_and_no_reset() {
    let ca = Ca::new("hostguard test CA");
    let s = standalone(&ca, &[]);
    for declare in [true, false] {
        let len = LIMIT + 1024 * 1024;
        let u = upload_h2(s.server.webhook, &ca.pem, len, declare).await;
        assert_eq!(u.status, 413, "declared length: {declare}: {u:?}");
        assert_eq!(u.body, format!("body exceeds {LIMIT} bytes"));
        assert_eq!(
            (u.sent, u.reset, u.closed.as_deref()),
            (len, None, None),
            "declared length: {declare}: the whole upload must go through and end the stream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_uploads_far_over_the_limit_get_the_whole_413_before_a_no_error_reset() {
    let ca = Ca::new("hostguard test CA");
    let s = standalone(&ca, &[]);
    for declare in [true, false] {
        let len = 64 * 1024 * 1024;
        let u = upload_h2(s.server.webhook, &ca.pem, len, declare).await;
        assert_eq!(u.status, 413, "declared length: {declare}: {u:?}");
        assert_eq!(u.body, format!("body exceeds {LIMIT} bytes"));
        // The upload is cut off long before its end: the server reads at most the limit plus
        // its discard bound (and one flow-control window). NO_ERROR when the 413 was out
        // before the bound was reached, CANCEL when (on a loaded machine) it was not yet; the
        // 413 arrives whole either way. When the reset lands between two DATA frames, h2 reports
        // the next send as refused on a closed stream, which carries no reason.
        assert!(
            matches!(u.reset, Some(h2::Reason::NO_ERROR | h2::Reason::CANCEL))
                || u.closed.is_some(),
            "{u:?}"
        );
        assert!(u.sent < 3 * LIMIT, "{u:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_uploads_over_the_limit_get_the_413_before_the_body_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Ca::new("hostguard test CA");
    let s = standalone(&ca, &[]);
    let mut tls = tls_connect(
        s.server.webhook,
        client_config(&ca.pem, &[b"http/1.1"], None),
    )
    .await
    .expect("TLS");
    // The declared length is enough: the answer comes without the body being read (a client
    // that keeps writing a large body after it races the connection's close, over HTTP/1.1).
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        LIMIT + 1
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.write_all(&[b'{'; CHUNK]).await.expect("write");
    tls.flush().await.expect("flush");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.ends_with(&format!("body exceeds {LIMIT} bytes")),
        "{text}"
    );
}
