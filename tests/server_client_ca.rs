//! `--client-ca` is reloaded like the serving pair: the real binary, the CA in a volume laid out
//! like a mounted ConfigMap, updated by a `..data` symlink swap. A new CA applies to the next
//! connections; a broken update is ignored; a session resumed from before a CA change cannot
//! skip the new CA (a new CA comes with a new rustls configuration and session cache).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Ca, SERVICE_NAME, Standalone, VolumeDir, client_config, eventually, standalone};
use rustls::HandshakeKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one connection with `config` got: None when refused, else how the handshake went.
async fn exchange(s: &Standalone, config: &Arc<rustls::ClientConfig>) -> Option<HandshakeKind> {
    let mut tls = common::tls_connect(s.server.webhook, Arc::clone(config))
        .await
        .ok()?;
    let body = common::deployment_review("ca-1", "team-a", None).to_string();
    let request = format!(
        "POST /validate HTTP/1.1\r\nHost: {SERVICE_NAME}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // With TLS 1.3 the client finishes its handshake before the server has judged its
    // certificate: a refused client learns it on the exchange.
    tls.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let kind = tls.get_ref().1.handshake_kind();
    String::from_utf8_lossy(&answer)
        .starts_with("HTTP/1.1 200")
        .then(|| kind.expect("handshake done"))
}

fn client(server_ca: &Ca, client_ca: &Ca, name: &str) -> Arc<rustls::ClientConfig> {
    let (cert, key) = client_ca.leaf(&[name], name);
    client_config(&server_ca.pem, &[b"http/1.1"], Some((&cert, &key)))
}

fn logged(s: &Standalone, message: &str) -> bool {
    s.server.log_lines().iter().any(|l| l["message"] == message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_ca_applies_to_new_connections_and_a_broken_one_is_ignored() {
    let ca = Ca::new("hostguard test CA");
    let first = Ca::new("apiserver client CA 1");
    let second = Ca::new("apiserver client CA 2");
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = VolumeDir::new(dir.path(), "client-ca", &[("ca.crt", &first.pem)]);
    let path = volume.file("ca.crt");
    let s = standalone(&ca, &["--client-ca", path.to_str().expect("utf-8")]);

    let old_client = client(&ca, &first, "apiserver-1");
    let new_client = client(&ca, &second, "apiserver-2");
    assert_eq!(exchange(&s, &old_client).await, Some(HandshakeKind::Full));
    // The same client again resumes its session: this is what the rotation must not allow.
    assert_eq!(
        exchange(&s, &old_client).await,
        Some(HandshakeKind::Resumed)
    );
    assert_eq!(exchange(&s, &new_client).await, None);

    volume.update(&[("ca.crt", &second.pem)]);
    eventually("the new client CA", Duration::from_secs(10), || {
        logged(&s, "client CA reloaded").then_some(())
    });
    assert_eq!(exchange(&s, &new_client).await, Some(HandshakeKind::Full));
    assert_eq!(
        exchange(&s, &old_client).await,
        None,
        "a client of the old CA, even with a session to resume, must be refused"
    );

    // Not a CA at all: ignored, the second CA stays in force.
    volume.update(&[("ca.crt", "-----BEGIN CERTIFICATE-----\nbroken\n")]);
    eventually(
        "the broken CA to be refused",
        Duration::from_secs(10),
        || logged(&s, "new client CA is not usable; keeping the current one").then_some(()),
    );
    assert!(exchange(&s, &new_client).await.is_some());
    assert_eq!(exchange(&s, &old_client).await, None);

    // Both CAs at once, as during a CA change: clients of either are served.
    let bundle = format!("{}{}", first.pem, second.pem);
    volume.update(&[("ca.crt", &bundle)]);
    eventually("the CA bundle", Duration::from_secs(10), || {
        exchange_blocking(&s, &old_client).then_some(())
    });
    assert!(exchange(&s, &new_client).await.is_some());
}

/// [`exchange`] from a synchronous polling closure.
fn exchange_blocking(s: &Standalone, config: &Arc<rustls::ClientConfig>) -> bool {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(exchange(s, config)))
        .is_some()
}
