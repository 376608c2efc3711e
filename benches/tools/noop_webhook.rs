//! The no-op peer of `scripts/bench_webhook.py`: an admission webhook on hostguard's own stack
//! (tokio's multi-thread runtime, rustls with ring, TLS 1.2/1.3 with ALPN h2 and http/1.1,
//! hyper-util's auto HTTP/1.1 + HTTP/2 connection builder, TCP_NODELAY) that reads the whole
//! body, parses it as an AdmissionReview far enough to find `request.uid`, and answers
//! `allowed: true` with that uid. No policy, no metrics, no logging.
//!
//! What hostguard costs on top of its stack is the difference between the two servers under the
//! same load in the same run; the benchmark prints it as a ratio. Not shipped: an example target
//! of the root package, built with `cargo build --release --example noop-webhook`.
//!
//! Usage: `noop-webhook --addr 127.0.0.1:18444 --tls-cert tls.crt --tls-key tls.key`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The one field read; serde still scans (and validates) the whole document, skipping the rest.
#[derive(Deserialize)]
struct Review {
    request: Option<ReviewRequest>,
}

#[derive(Deserialize)]
struct ReviewRequest {
    uid: String,
}

fn answer(body: &[u8]) -> Response<Full<Bytes>> {
    let uid = serde_json::from_slice::<Review>(body)
        .ok()
        .and_then(|r| r.request)
        .map(|r| r.uid);
    let Some(uid) = uid else {
        return Response::builder()
            .status(400)
            .body(Full::new(Bytes::from_static(b"not an AdmissionReview")))
            .expect("static response");
    };
    let out = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out.to_string())))
        .expect("static response")
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(Response::builder()
                .status(400)
                .body(Full::new(Bytes::from_static(b"unreadable body")))
                .expect("static response"));
        }
    };
    Ok(answer(&body))
}

fn flag(args: &[String], name: &str) -> Result<String, String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| format!("missing {name} VALUE"))
}

fn tls_config(cert: &str, key: &str) -> Result<ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn serve(addr: SocketAddr, acceptor: TlsAcceptor) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(handle);
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parsed = (|| {
        let addr: SocketAddr = flag(&args, "--addr")?
            .parse()
            .map_err(|e| format!("--addr: {e}"))?;
        let config = tls_config(&flag(&args, "--tls-cert")?, &flag(&args, "--tls-key")?)?;
        Ok::<_, String>((addr, config))
    })();
    let (addr, config) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("noop-webhook: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(serve(addr, TlsAcceptor::from(Arc::new(config)))) {
        eprintln!("noop-webhook: {e}");
        std::process::exit(1);
    }
}
