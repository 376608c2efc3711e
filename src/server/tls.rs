//! TLS for the webhook: rustls with TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, an optional
//! client-certificate requirement, and a serving certificate and client CA that are reloaded
//! when their files change.
//!
//! Kubernetes updates a mounted Secret or ConfigMap by swapping a `..data` symlink, so a watch
//! on the old files' inodes never fires. We re-read the files by path on an interval and compare
//! the bytes: that sees every kind of update. A new serving pair is used only when both files
//! parse and the key matches the certificate; a new client CA only when it holds at least one
//! usable certificate. Otherwise what is in use keeps serving and the reason is logged.
//!
//! The serving pair is swapped inside the resolver, so open connections and the configuration
//! stay as they are. A new client CA builds a new rustls configuration (used by every connection
//! accepted from then on): a fresh configuration also has a fresh session cache, so a client
//! whose certificate the new CA does not sign cannot resume a session the old CA let in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;

use crate::metrics::Metrics;

/// A serving certificate or client CA that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{key}: the private key does not match the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The bytes of a certificate/key pair as last read, to notice changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PairBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses and checks a pair; returns the key and the certificate's notAfter (Unix seconds).
fn certified_key(
    bytes: &PairBytes,
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, i64), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map(|(_, c)| c.validity().not_after.timestamp())
        .map_err(|e| TlsError::Invalid {
            path: cert_path.to_path_buf(),
            message: format!("not an X.509 certificate: {e}"),
        })?;
    let key = PrivateKeyDer::from_pem_slice(&bytes.key).map_err(|e| TlsError::Pem {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        },
        other => TlsError::Invalid {
            path: key_path.to_path_buf(),
            message: other.to_string(),
        },
    })?;
    Ok((certified, not_after))
}

/// The serving certificate in use, swappable while connections are open.
#[derive(Debug)]
pub struct ServingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    last_bytes: std::sync::Mutex<PairBytes>,
    provider: Arc<CryptoProvider>,
    metrics: Arc<Metrics>,
}

impl ServingCert {
    /// Loads the pair once; fails when it cannot be used, so the server never starts without
    /// a certificate.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, TlsError> {
        let bytes = PairBytes {
            cert: read(cert_path)?,
            key: read(key_path)?,
        };
        let (key, not_after) = certified_key(&bytes, cert_path, key_path, &provider)?;
        metrics.cert_expiry.set(not_after as f64);
        Ok(Arc::new(ServingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from_pointee(key),
            last_bytes: std::sync::Mutex::new(bytes),
            provider,
            metrics,
        }))
    }

    /// Re-reads the files; swaps the pair when they changed and are valid. Returns whether the
    /// pair in use changed.
    pub fn reload(&self) -> bool {
        let bytes = match (read(&self.cert_path), read(&self.key_path)) {
            (Ok(cert), Ok(key)) => PairBytes { cert, key },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot re-read the serving certificate; keeping the current one");
                return false;
            }
        };
        let mut last = match self.last_bytes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *last == bytes {
            return false;
        }
        match certified_key(&bytes, &self.cert_path, &self.key_path, &self.provider) {
            Ok((key, not_after)) => {
                self.current.store(Arc::new(key));
                self.metrics.cert_expiry.set(not_after as f64);
                *last = bytes;
                tracing::info!(cert = %self.cert_path.display(), not_after, "serving certificate reloaded");
                true
            }
            Err(e) => {
                // Half-written updates land here too: the next poll sees the finished pair.
                tracing::warn!(error = %e, "new serving certificate is not usable; keeping the current one");
                false
            }
        }
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The client CA in use, as last read.
#[derive(Debug)]
struct ClientCa {
    path: PathBuf,
    last_bytes: Vec<u8>,
}

/// Parses a CA bundle (one or more PEM certificates) into a client-certificate verifier.
fn client_verifier(
    pem: &[u8],
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| TlsError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Builds the rustls server configuration.
fn build_config(
    cert: &Arc<ServingCert>,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Invalid {
            path: PathBuf::from("(tls)"),
            message: e.to_string(),
        })?;
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(cert) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The webhook's TLS: the serving pair, the optional client CA, and the configuration that
/// every new connection is accepted with.
#[derive(Debug)]
pub struct WebhookTls {
    cert: Arc<ServingCert>,
    client_ca: Option<std::sync::Mutex<ClientCa>>,
    config: ArcSwap<ServerConfig>,
    provider: Arc<CryptoProvider>,
}

impl WebhookTls {
    /// Loads the serving pair and the client CA once; fails when either cannot be used, so the
    /// server never starts without them.
    pub fn load(
        cert: Arc<ServingCert>,
        client_ca: Option<&Path>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, TlsError> {
        let (verifier, client_ca) = match client_ca {
            None => (None, None),
            Some(path) => {
                let pem = read(path)?;
                let verifier = client_verifier(&pem, path, &provider)?;
                let state = ClientCa {
                    path: path.to_path_buf(),
                    last_bytes: pem,
                };
                (Some(verifier), Some(std::sync::Mutex::new(state)))
            }
        };
        let config = build_config(&cert, verifier, &provider)?;
        Ok(Arc::new(WebhookTls {
            cert,
            client_ca,
            config: ArcSwap::from_pointee(config),
            provider,
        }))
    }

    /// The configuration to accept a new connection with.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// Re-reads the serving pair and the client CA; swaps what changed and is valid. Returns
    /// whether anything in use changed.
    pub fn reload(&self) -> bool {
        let serving = self.cert.reload();
        serving | self.reload_client_ca()
    }

    /// Re-reads the client CA; a new, valid one takes effect for the next connections.
    pub fn reload_client_ca(&self) -> bool {
        let Some(state) = &self.client_ca else {
            return false;
        };
        let mut state = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pem = match read(&state.path) {
            Ok(pem) => pem,
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the client CA; keeping the current one");
                return false;
            }
        };
        if pem == state.last_bytes {
            return false;
        }
        let built = client_verifier(&pem, &state.path, &self.provider)
            .and_then(|verifier| build_config(&self.cert, Some(verifier), &self.provider));
        match built {
            Ok(config) => {
                self.config.store(Arc::new(config));
                state.last_bytes = pem;
                tracing::info!(client_ca = %state.path.display(), "client CA reloaded");
                true
            }
            Err(e) => {
                // Half-written updates land here too: the next poll sees the finished file.
                tracing::warn!(error = %e, "new client CA is not usable; keeping the current one");
                false
            }
        }
    }

    /// Polls the files every `interval` until `stop` resolves.
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    let this = Arc::clone(&self);
                    // File reads are blocking; keep them off the reactor threads.
                    let _ = tokio::task::spawn_blocking(move || this.reload()).await;
                }
            }
        }
    }
}
