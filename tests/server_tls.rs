//! The webhook as the API server calls it: the real `hostguard serve` binary, HTTPS with a CA
//! generated here, the service DNS name `hostguard.hostguard.svc`, HTTP/2 and HTTP/1.1,
//! AdmissionReview v1. Also: TLS 1.1 refused, client certificates, rotation by symlink swap,
//! garbage and oversized bodies, and SIGTERM: the drain keeps answering, then in-flight reviews
//! finish.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const SERVICE_NAME: &str = "hostguard.hostguard.svc";

/// A CA and what it signs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA cert");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names`, returned as (cert PEM, key PEM).
    fn leaf(&self, names: &[&str], common_name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }
}

fn rustls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A running `hostguard serve --standalone`.
struct Server {
    child: Child,
    webhook: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
    certs: PathBuf,
}

impl Server {
    /// Starts the server with a certificate directory laid out like a mounted Secret:
    /// `tls.crt -> ..data/tls.crt`, `..data -> ..<version>`.
    fn start(ca: &Ca, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).expect("mkdir");
        let (cert, key) = ca.leaf(&[SERVICE_NAME], "first");
        install_version(&certs, "..v1", &cert, &key);
        std::os::unix::fs::symlink("..data/tls.crt", certs.join("tls.crt")).expect("symlink");
        std::os::unix::fs::symlink("..data/tls.key", certs.join("tls.key")).expect("symlink");

        let mut child = Command::new(env!("CARGO_BIN_EXE_hostguard"))
            .args([
                "serve",
                "--standalone",
                "--cluster-provider",
                "azure",
                "--log-format",
                "json",
            ])
            .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(certs.join("tls.key"))
            .args(["--tls-reload-interval", "100ms", "--shutdown-grace", "10s"])
            .args(extra)
            .env("HOSTGUARD_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("hostguard starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent
                    && let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send(v);
                    sent = true;
                }
            }
        });
        let listening = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server reports listening");
        let addr = |k: &str| {
            listening[k]
                .as_str()
                .and_then(|a| a.parse().ok())
                .expect("address in the log")
        };
        Server {
            child,
            webhook: addr("webhook"),
            admin: addr("admin"),
            _dir: dir,
            certs,
        }
    }

    /// Rotates the certificate the way the kubelet updates a Secret volume.
    fn rotate(&self, cert: &str, key: &str) {
        install_version(&self.certs, "..v2", cert, key);
        let tmp = self.certs.join("..data_tmp");
        std::os::unix::fs::symlink("..v2", &tmp).expect("symlink");
        std::fs::rename(&tmp, self.certs.join("..data")).expect("atomic swap");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn wait(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn install_version(dir: &Path, version: &str, cert: &str, key: &str) {
    let v = dir.join(version);
    std::fs::create_dir_all(&v).expect("mkdir");
    std::fs::write(v.join("tls.crt"), cert).expect("write");
    std::fs::write(v.join("tls.key"), key).expect("write");
    if version == "..v1" {
        std::os::unix::fs::symlink(version, dir.join("..data")).expect("symlink");
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[u8],
    client: Option<(&str, &str)>,
) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(rustls_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(|c| c.expect("pem"))
                .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(SERVICE_NAME).expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    // The handshake may complete before the server's verdict on a client certificate
    // (TLS 1.3): a refused client learns it on the first read.
    Ok(tls)
}

/// The common name of the certificate the server presented.
fn peer_common_name(tls: &Tls) -> String {
    let cert = tls.get_ref().1.peer_certificates().expect("peer certs")[0].clone();
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).expect("x509");
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("")
        .to_string()
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn over(tls: Tls) -> Sender {
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (send, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            Sender::H2(send)
        } else {
            let (send, conn) = http1::handshake(io).await.expect("h1 handshake");
            tokio::spawn(conn);
            Sender::H1(send)
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    async fn post(&mut self, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let request = Request::post(format!("https://{SERVICE_NAME}{path}"))
            .header("content-type", "application/json")
            .header("host", SERVICE_NAME)
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        // Wait until the connection can take another request (HTTP/1.1 finishes the previous
        // exchange first).
        let response = match self {
            Sender::H1(s) => {
                s.ready().await.expect("connection ready");
                s.send_request(request).await
            }
            Sender::H2(s) => {
                s.ready().await.expect("connection ready");
                s.send_request(request).await
            }
        }
        .expect("response");
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
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/admission")
            .join(name),
    )
    .expect("fixture")
}

async fn get_admin(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("admin connect");
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http1_clients_trusting_only_the_ca_get_answers_by_service_name() {
    let ca = Ca::new("hostguard test CA");
    let server = Server::start(&ca, &[]);
    assert_eq!(get_admin(server.admin, "/readyz").await.0, 200);

    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let tls = tls_connect(server.webhook, &ca.pem, alpn, None)
            .await
            .expect("TLS");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let mut sender = Sender::over(tls).await;
        let (status, body) = sender
            .post("/validate?timeout=10s", fixture("deployment-denied.json"))
            .await;
        assert_eq!(status, StatusCode::OK);
        let out: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            out["response"]["uid"],
            "0b3f2a30-0001-4d6e-9a55-6c1f1c5e0001"
        );
        assert_eq!(out["response"]["allowed"], false);
        let (status, body) = sender
            .post("/mutate", fixture("pod-governed-create.json"))
            .await;
        assert_eq!(status, StatusCode::OK);
        let out: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(out["response"]["patchType"], "JSONPatch");
    }

    // A client that does not trust the CA never gets an answer.
    let other = Ca::new("someone else");
    assert!(
        tls_connect(server.webhook, &other.pem, b"h2", None)
            .await
            .is_err()
    );
    let (_, metrics) = get_admin(server.admin, "/metrics").await;
    assert!(
        metrics.contains("hostguard_tls_certificate_expiry_timestamp_seconds"),
        "{metrics}"
    );
}

/// A TLS 1.1 ClientHello, written by hand: rustls cannot even produce one.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend([0x42; 32]); // random
    hello.push(0); // session id
    hello.extend([0x00, 0x04, 0x00, 0x2f, 0xc0, 0x13]); // cipher suites
    hello.extend([0x01, 0x00]); // compression: null
    let mut handshake = vec![0x01, 0x00, (hello.len() >> 8) as u8, hello.len() as u8];
    handshake.extend(hello);
    let mut record = vec![
        0x16,
        0x03,
        0x01,
        (handshake.len() >> 8) as u8,
        handshake.len() as u8,
    ];
    record.extend(handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_is_refused() {
    let ca = Ca::new("hostguard test CA");
    let server = Server::start(&ca, &[]);
    let mut tcp = TcpStream::connect(server.webhook).await.expect("connect");
    tcp.write_all(&tls11_client_hello()).await.expect("write");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply)).await;
    // Either an alert record or a closed connection; never a ServerHello.
    assert!(
        reply.is_empty() || reply[0] == 0x15,
        "server answered a TLS 1.1 hello with {reply:02x?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_with_its_certificates_are_served() {
    let ca = Ca::new("hostguard test CA");
    let client_ca = Ca::new("apiserver client CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let client_ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca_path, &client_ca.pem).expect("write");
    let server = Server::start(
        &ca,
        &["--client-ca", client_ca_path.to_str().expect("utf-8")],
    );

    // Without a certificate: the handshake (or the first exchange) fails.
    let refused = match tls_connect(server.webhook, &ca.pem, b"h2", None).await {
        Err(_) => true,
        Ok(mut tls) => {
            let mut buf = [0u8; 1];
            let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            matches!(
                tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await,
                Ok(Err(_)) | Ok(Ok(0))
            )
        }
    };
    assert!(refused, "a client without a certificate was served");

    // With one signed by the client CA: answered.
    let (cert, key) = client_ca.leaf(&["kube-apiserver"], "kube-apiserver");
    let tls = tls_connect(server.webhook, &ca.pem, b"h2", Some((&cert, &key)))
        .await
        .expect("mTLS");
    let mut sender = Sender::over(tls).await;
    let (status, _) = sender
        .post("/validate", fixture("deployment-denied.json"))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_picked_up_without_dropping_open_connections() {
    let ca = Ca::new("hostguard test CA");
    let server = Server::start(&ca, &[]);
    let tls = tls_connect(server.webhook, &ca.pem, b"h2", None)
        .await
        .expect("TLS");
    assert_eq!(peer_common_name(&tls), "first");
    let mut open = Sender::over(tls).await;
    assert_eq!(
        open.post("/validate", fixture("deployment-denied.json"))
            .await
            .0,
        StatusCode::OK
    );

    // A broken update is ignored: the old pair keeps serving.
    let (_, mismatched_key) = ca.leaf(&[SERVICE_NAME], "unused");
    let (second_cert, _) = ca.leaf(&[SERVICE_NAME], "broken");
    server.rotate(&second_cert, &mismatched_key);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tls = tls_connect(server.webhook, &ca.pem, b"h2", None)
        .await
        .expect("TLS");
    assert_eq!(
        peer_common_name(&tls),
        "first",
        "a mismatched pair must not be used"
    );

    let (cert, key) = ca.leaf(&[SERVICE_NAME], "second");
    server.rotate(&cert, &key);
    let mut seen = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let tls = tls_connect(server.webhook, &ca.pem, b"h2", None)
            .await
            .expect("TLS");
        seen = peer_common_name(&tls);
        if seen == "second" {
            break;
        }
    }
    assert_eq!(seen, "second", "the rotated certificate was not picked up");
    // The connection opened before the rotation still answers.
    assert_eq!(
        open.post("/validate", fixture("deployment-denied.json"))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_bodies_are_refused_and_the_server_keeps_answering() {
    let ca = Ca::new("hostguard test CA");
    let server = Server::start(&ca, &[]);
    let tls = tls_connect(server.webhook, &ca.pem, b"h2", None)
        .await
        .expect("TLS");
    let mut sender = Sender::over(tls).await;
    let (status, _) = sender
        .post("/validate", b"\x00\xff garbage {".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = sender.post("/validate", vec![b'{'; 4 * 1024 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = sender
        .post("/validate", br#"{"kind":"AdmissionReview"}"#.to_vec())
        .await;
    assert_eq!(status, StatusCode::OK);
    let out: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(out["response"]["allowed"], false);
    // Still answering on a fresh connection.
    let tls = tls_connect(server.webhook, &ca.pem, b"http/1.1", None)
        .await
        .expect("TLS");
    let mut sender = Sender::over(tls).await;
    assert_eq!(
        sender
            .post("/validate", fixture("deployment-denied.json"))
            .await
            .0,
        StatusCode::OK
    );
    let (_, metrics) = get_admin(server.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"hostguard_admission_rejected_bodies_total{reason="too_large"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hostguard_admission_rejected_bodies_total{reason="not_json"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_answering_for_the_drain_delay_then_finishes_in_flight_reviews() {
    let ca = Ca::new("hostguard test CA");
    let server = Server::start(&ca, &["--drain-delay", "3s"]);
    let tls = tls_connect(server.webhook, &ca.pem, b"http/1.1", None)
        .await
        .expect("TLS");
    let (mut tls_read, mut tls_write) = tokio::io::split(tls);
    // An HTTP/2 connection in use before the signal.
    let h2 = tls_connect(server.webhook, &ca.pem, b"h2", None)
        .await
        .expect("TLS");
    let mut kept = Sender::over(h2).await;
    assert_eq!(
        kept.post("/validate", fixture("deployment-denied.json"))
            .await
            .0,
        StatusCode::OK
    );

    // Send the headers and half the body, so the review is in flight when the signal comes.
    let body = fixture("deployment-denied.json");
    let (first, rest) = body.split_at(body.len() / 2);
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls_write.write_all(head.as_bytes()).await.expect("write");
    tls_write.write_all(first).await.expect("write");
    tls_write.flush().await.expect("flush");

    server.signal("TERM");
    let signalled = std::time::Instant::now();
    // Readiness goes false at once, so that the endpoint leaves the Service.
    let mut not_ready = false;
    for _ in 0..50 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            get_admin(server.admin, "/readyz"),
        )
        .await
        {
            Ok((503, _)) => {
                not_ready = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(not_ready, "readiness did not turn false on SIGTERM");

    // Until the endpoint is gone, new connections are still accepted and answered; over
    // HTTP/1.1 the answer asks the client to reconnect (through the Service).
    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let tls = tls_connect(server.webhook, &ca.pem, alpn, None)
            .await
            .expect("accepted during the drain");
        let mut sender = Sender::over(tls).await;
        let (status, body) = sender
            .post("/validate", fixture("deployment-denied.json"))
            .await;
        assert_eq!(status, StatusCode::OK);
        let out: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(out["response"]["allowed"], false);
    }
    let (code, text) = raw_h1_review(server.webhook, &ca.pem).await;
    assert_eq!(code, 200, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{text}"
    );
    // The HTTP/2 connection open at the signal got a GOAWAY: the client opens a new one.
    let goaway = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if kept.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(goaway.is_ok(), "the HTTP/2 connection was not asked to go");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "the checks above must run within the drain delay; the machine is too slow"
    );

    // After the drain delay, the listener is closed.
    let mut refused = false;
    for _ in 0..100 {
        if tls_connect(server.webhook, &ca.pem, b"h2", None)
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "listener still accepting after the drain delay");
    assert!(signalled.elapsed() >= Duration::from_secs(3));

    // The review in flight since before the signal is still answered.
    tls_write.write_all(rest).await.expect("write rest");
    tls_write.flush().await.expect("flush");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), tls_read.read(&mut buf))
            .await
            .expect("response in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("0b3f2a30-0001-4d6e-9a55-6c1f1c5e0001"),
        "{text}"
    );
    drop(tls_write);
    drop(tls_read);
    let status = server.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

/// One review over a fresh HTTP/1.1 connection, read raw: (status code, whole answer).
async fn raw_h1_review(addr: SocketAddr, ca_pem: &str) -> (u16, String) {
    let mut tls = tls_connect(addr, ca_pem, b"http/1.1", None)
        .await
        .expect("TLS");
    let body = fixture("deployment-denied.json");
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.write_all(&body).await.expect("write");
    tls.flush().await.expect("flush");
    let mut answer = Vec::new();
    // The server closes the connection after the answer: read to the end.
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}
