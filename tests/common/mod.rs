//! Helpers shared by the tests that run the real `hostguard serve` binary: certificates laid
//! out like a mounted Secret, the server process, TLS clients that trust only the CA and dial
//! the service name, and (in `load`) the Go load client of the fault tests. The in-process
//! cluster tests share the strict mock API server (`mock_api`) and their fixtures (`cluster`).
//!
//! Each test file uses part of this, so items unused by one of them are expected.
#![allow(dead_code)]

pub mod cluster;
pub mod load;
pub mod mock_api;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;

/// The name the API server dials: `<service>.<namespace>.svc`.
pub const SERVICE_NAME: &str = "hostguard.hostguard.svc";

/// A CA and what it signs.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
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
    pub fn leaf(&self, names: &[&str], common_name: &str) -> (String, String) {
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

/// A directory laid out like a mounted Secret or ConfigMap volume: `<file> -> ..data/<file>`,
/// `..data -> ..<version>`. The kubelet updates it by writing a new version directory and
/// renaming a new `..data` symlink over the old one.
pub struct VolumeDir {
    pub path: PathBuf,
    version: Mutex<u32>,
}

impl VolumeDir {
    pub fn new(parent: &Path, name: &str, files: &[(&str, &str)]) -> VolumeDir {
        let path = parent.join(name);
        std::fs::create_dir(&path).expect("mkdir");
        let dir = VolumeDir {
            path,
            version: Mutex::new(0),
        };
        dir.update(files);
        for (file, _) in files {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.path.join(file))
                .expect("symlink");
        }
        dir
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Swaps in new contents atomically, as the kubelet does.
    pub fn update(&self, files: &[(&str, &str)]) {
        let mut version = self.version.lock().unwrap();
        *version += 1;
        let name = format!("..v{}", *version);
        let dir = self.path.join(&name);
        std::fs::create_dir(&dir).expect("mkdir");
        for (file, content) in files {
            std::fs::write(dir.join(file), content).expect("write");
        }
        let tmp = self.path.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.path.join("..data")).expect("atomic swap");
    }
}

pub fn rustls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that trusts only `ca_pem` (one or more certificates), offering `alpn`,
/// optionally presenting a client certificate.
pub fn client_config(
    ca_pem: &str,
    alpn: &[&[u8]],
    client: Option<(&str, &str)>,
) -> Arc<rustls::ClientConfig> {
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
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects to `addr` and verifies the server as [`SERVICE_NAME`].
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(SERVICE_NAME).expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// A running `hostguard serve`. Its stderr (JSON logs) is kept in a file, printed when the test
/// fails.
pub struct Server {
    pub child: Child,
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Server {
    /// Starts `hostguard serve` with `args` (plus `--addr`/`--admin-addr` on free loopback ports
    /// and JSON logs) and waits until it logs that it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Server {
        Server::start_bin(Path::new(env!("CARGO_BIN_EXE_hostguard")), args, env, log)
    }

    /// [`Server::start`] with another build of the binary (see [`release_bin`]).
    pub fn start_bin(bin: &Path, args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Server {
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(args)
            .env("HOSTGUARD_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("hostguard starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&log_path).expect("log file");
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                use std::io::Write;
                let _ = writeln!(file, "{line}");
                if !sent
                    && let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send(v);
                    sent = true;
                }
            }
        });
        let listening = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "hostguard did not report listening:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
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
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The resident set size now, in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    pub fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field in /proc status")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!(
                "---- hostguard serve log ({}), last lines ----",
                self.log.display()
            );
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `GET path` on the admin port: (status code, whole response), or None when nothing answers.
pub fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out))
}

/// Polls `f` every 20 ms until it returns Some, failing the test after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Deployment review whose only container calls OpenAI at `base_url` (None: no AI at all).
pub fn deployment_review(uid: &str, namespace: &str, base_url: Option<&str>) -> Value {
    let env = match base_url {
        Some(url) => serde_json::json!([
            {"name": "OPENAI_API_KEY", "value": "sk-test"},
            {"name": "OPENAI_BASE_URL", "value": url}
        ]),
        None => serde_json::json!([{"name": "LOG_LEVEL", "value": "debug"}]),
    };
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:deployment-controller"},
            "object": {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "chat", "namespace": namespace},
                "spec": {"selector": {"matchLabels": {"app": "chat"}}, "template": {
                    "metadata": {"labels": {"app": "chat"}},
                    "spec": {"containers": [{"name": "app", "image": "chat:1", "env": env}]}
                }}
            }
        }
    })
}

/// A standalone server (no cluster) with its certificate in a Secret-like volume.
pub struct Standalone {
    pub server: Server,
    pub certs: VolumeDir,
    pub dir: tempfile::TempDir,
}

/// Starts `hostguard serve --standalone --cluster-provider azure` with a certificate for
/// [`SERVICE_NAME`] signed by `ca` (common name `first`), re-read every 100 ms.
pub fn standalone(ca: &Ca, extra: &[&str]) -> Standalone {
    standalone_bin(
        Path::new(env!("CARGO_BIN_EXE_hostguard")),
        ca,
        "first",
        extra,
    )
}

/// The optimised (release) binary, for the fault tests that put real load on it: the debug
/// build answers a few hundred reviews a second on this project's 2-core machine, a fraction of
/// what the release build does, so 1,000 reviews a second would measure an overloaded debug
/// server. `scripts/test` builds it first and names it in `HOSTGUARD_RELEASE_BIN`; without it,
/// the test builds it here (cargo builds it incrementally, from the same sources).
pub fn release_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("HOSTGUARD_RELEASE_BIN") {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "HOSTGUARD_RELEASE_BIN={} is not a file",
                bin.display()
            );
            return bin;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(root)
            .args(["build", "--release", "--locked", "--bin", "hostguard"])
            .output()
            .expect("cargo runs");
        assert!(
            output.status.success(),
            "building the release binary failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("release/hostguard")
    })
    .clone()
}

/// The load client of the fault tests (`tests/load-client/main.go`, Go's own HTTP client, as
/// kube-apiserver calls webhooks with it). `HOSTGUARD_LOAD_CLIENT` names a built binary
/// (`.ci/run` builds it with `tests/load-client/build`); otherwise the test builds it with the
/// machine's Go, and without Go it cannot run: that is a failure, not a skip, because the fault
/// tests are what shows a rollout loses no review.
pub fn load_client() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("HOSTGUARD_LOAD_CLIENT") {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "HOSTGUARD_LOAD_CLIENT={} is not a file: build it with tests/load-client/build",
                bin.display()
            );
            return bin;
        }
        let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/load-client/build");
        let output = Command::new(&build)
            .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("load-client"))
            .output()
            .expect("tests/load-client/build runs");
        assert!(
            output.status.success(),
            "building the load client failed (it needs Go: apt-get install golang-go):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
    .clone()
}

/// A standalone server from `bin`, with its own certificate signed by `ca`.
pub fn standalone_bin(bin: &Path, ca: &Ca, name: &str, extra: &[&str]) -> Standalone {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.leaf(&[SERVICE_NAME], name);
    let certs = VolumeDir::new(
        dir.path(),
        "certs",
        &[("tls.crt", &cert), ("tls.key", &key)],
    );
    let cert_path = certs.file("tls.crt");
    let key_path = certs.file("tls.key");
    let mut args = vec![
        "--standalone",
        "--cluster-provider",
        "azure",
        "--tls-reload-interval",
        "100ms",
        "--tls-cert",
        cert_path.to_str().expect("utf-8"),
        "--tls-key",
        key_path.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let server = Server::start_bin(bin, &args, &[], dir.path().join("serve.log"));
    Standalone { server, certs, dir }
}
