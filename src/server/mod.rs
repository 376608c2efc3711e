//! `hostguard serve`: the HTTPS admission webhook the API server calls, and its admin endpoints.
//!
//! The server only translates: every review goes through [`crate::admission::answer`], the same
//! code as `hostguard review`, against the engine state published in [`state::SharedState`].
//! Start-up order: metrics, policies and snapshot, TLS, then the listeners; readiness turns true
//! only when all of that is done, and false as soon as shutdown starts. Shutdown order: the
//! webhook drains (it answers for `--drain-delay`, then finishes in-flight reviews within
//! `--shutdown-grace`, see `listener`), then the admin server, then the cluster side, whose
//! caches keep the engine current until the last review is answered.

mod admin;
pub mod limits;
mod listener;
mod shutdown;
pub mod tls;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use crate::policy_files::{
    PolicyArgs, compile_or_default, declare_workload, load_policy_files_with,
};
use crate::snapshot::Snapshot;
use crate::state::{Readiness, SharedState};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Arguments of `hostguard serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook (`POST /validate`, `POST /mutate`).
    #[arg(long, env = "HOSTGUARD_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Address of the plain-HTTP admin server (`/livez`, `/readyz`, `/metrics`).
    #[arg(long, env = "HOSTGUARD_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Serving certificate chain (PEM). Reloaded when the file changes.
    #[arg(long, env = "HOSTGUARD_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// Serving private key (PEM). Reloaded when the file changes.
    #[arg(long, env = "HOSTGUARD_TLS_KEY")]
    pub tls_key: PathBuf,
    /// Require a client certificate signed by this CA (PEM), so that only the API server can
    /// call the webhook.
    #[arg(long, env = "HOSTGUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// How often the certificate files are re-read.
    #[arg(long, env = "HOSTGUARD_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,
    /// Run without a cluster: policies from --policy files and the built-in default, cluster
    /// provider from --cluster-provider.
    #[arg(long, env = "HOSTGUARD_STANDALONE")]
    pub standalone: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// What the cluster runs on (azure, aws, gcp, other, unknown). In standalone mode the
    /// default is unknown; in a cluster it overrides detection from Nodes.
    #[arg(long, env = "HOSTGUARD_CLUSTER_PROVIDER", value_parser = parse_provider)]
    pub cluster_provider: Option<crate::api::ClusterProvider>,
    /// Log format. The level comes from HOSTGUARD_LOG (tracing filter syntax, default info).
    #[arg(long, env = "HOSTGUARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// How long the webhook keeps accepting and answering after SIGTERM, with readiness already
    /// false, before it stops accepting. It covers the time the Pod's endpoint takes to leave
    /// the Service everywhere (EndpointSlice update, then every kube-proxy's rule sync): reviews
    /// the API server sends meanwhile are still answered. The default, 15s, leaves room for a
    /// busy control plane; the Pod's terminationGracePeriodSeconds must exceed this plus
    /// --shutdown-grace.
    #[arg(long, env = "HOSTGUARD_DRAIN_DELAY", default_value = "15s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,
    /// How long in-flight reviews may take to finish once the drain delay is over.
    #[arg(long, env = "HOSTGUARD_SHUTDOWN_GRACE", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Reviews decided at once, counted from when their body is in; more are refused with 429
    /// at once rather than queued. Bodies being read hold no such slot.
    #[arg(long, env = "HOSTGUARD_MAX_CONCURRENT_REVIEWS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_reviews: u32,
    /// Reviews over 256 KiB decided at once, on the blocking pool; more wait for a slot until
    /// their deadline. Each costs memory in proportion to its size.
    #[arg(long, env = "HOSTGUARD_MAX_CONCURRENT_LARGE_REVIEWS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_concurrent_large_reviews: u32,
    /// Request bodies being read at once over all connections; more are refused with 429 at
    /// once. A body must arrive before the review's deadline (`?timeout=`, at most 30s).
    #[arg(long, env = "HOSTGUARD_MAX_CONCURRENT_BODY_READS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_body_reads: u32,
    /// Request bodies one connection may have being read at once; its further streams wait for
    /// their turn (within their deadline), so one client cannot hold every body-read slot.
    #[arg(long, env = "HOSTGUARD_MAX_BODY_READS_PER_CONNECTION", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_body_reads_per_connection: u32,
    /// MiB that request bodies may buffer in all beyond their first 64 KiB each; a body that
    /// needs more while it is exhausted is refused with 429.
    #[arg(long, env = "HOSTGUARD_MAX_BUFFERED_BODY_MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(3..=4096))]
    pub max_buffered_body_mib: u32,
    /// Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    /// The API server's client opens another connection when it needs more.
    #[arg(long, env = "HOSTGUARD_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,
    /// How long a webhook connection may stay open after its TLS handshake without sending a
    /// request (nothing at all, or only the HTTP/2 preface and PINGs).
    #[arg(long, env = "HOSTGUARD_FIRST_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub first_request_timeout: Duration,
    /// How long a webhook connection may stay open with no request in flight; keep-alive PINGs
    /// do not count. Longer than the API server's own idle timeout (Go's 90s), so that it is
    /// the client that closes idle connections, not a race with its next request.
    #[arg(long, env = "HOSTGUARD_IDLE_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Connections the admin port serves at once; more are closed at once.
    #[arg(long, env = "HOSTGUARD_ADMIN_MAX_CONNECTIONS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub admin_max_connections: u32,
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

fn parse_provider(s: &str) -> Result<crate::api::ClusterProvider, String> {
    s.parse()
}

/// Runs the server to completion; returns the process exit code.
pub fn run(args: ServeArgs) -> u8 {
    init_tracing(args.log_format);
    // Few blocking threads: they serve only large reviews and certificate re-reads, and each
    // thread costs memory.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hostguard serve: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => 0,
        Err(e) => {
            let message = causes(&e);
            tracing::error!(error = %message, "hostguard serve failed");
            eprintln!("hostguard serve: {message}");
            1
        }
    }
}

/// An error with its causes, like `{:#}`, but without repeating a cause that the message before
/// it already quotes (kube's errors include their source in their own text).
fn causes(error: &anyhow::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.last().is_some_and(|previous| previous.contains(&text)) {
            continue;
        }
        out.push(text);
    }
    out.join(": ")
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("HOSTGUARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = crate::metrics::Metrics::new();
    let readiness = Arc::new(Readiness::default());
    let engine = SharedState::new();
    let shutdown = shutdown::on_signals(Arc::clone(&readiness));

    // The built-in default stands in for the chart's default policy when that one is broken
    // (cluster mode) and applies when no policy is given (standalone): it must be enforceable,
    // or hostguard does not start.
    crate::policy::PolicySet::default_set()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("checking the built-in default policy")?;
    // AIWorkloads go into the standalone snapshot as they are read, not kept beside it; in a
    // cluster they are only counted (the cluster's own are read there).
    let cluster_provider = args.cluster_provider.unwrap_or_default();
    let mut snapshot = Snapshot::offline(cluster_provider);
    let mut ignored_workloads = 0usize;
    let file_policies = load_policy_files_with(&args.policy.policies, |aiw| {
        if args.standalone {
            declare_workload(aiw, &mut snapshot)
        } else {
            ignored_workloads += 1;
            Ok(())
        }
    })
    .map_err(anyhow::Error::msg)
    .context("loading --policy files")?;
    let cluster = if args.standalone {
        let policies = compile_or_default(&file_policies)
            .map_err(anyhow::Error::msg)
            .context("compiling policies")?;
        drop(file_policies);
        tracing::info!(
            policies = policies.len(),
            aiworkloads = snapshot.declared_count(),
            cluster_provider = cluster_provider.as_str(),
            mode = "standalone",
            "policy snapshot loaded"
        );
        engine.publish(policies, snapshot);
        None
    } else {
        if ignored_workloads > 0 {
            tracing::warn!(
                count = ignored_workloads,
                "AIWorkloads in --policy files are ignored in a cluster; apply them to the cluster instead"
            );
        }
        let ctx = crate::cluster::ClusterContext {
            engine: Arc::clone(&engine),
            metrics: Arc::clone(&metrics),
            shutdown: shutdown.clone(),
            file_policies,
            cluster_provider: args.cluster_provider,
        };
        Some(
            crate::cluster::start(&args.cluster, ctx)
                .await
                .context("starting the cluster controller")?,
        )
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = tls::ServingCert::load(
        &args.tls_cert,
        &args.tls_key,
        Arc::clone(&provider),
        Arc::clone(&metrics),
    )
    .context("loading the serving certificate")?;
    let webhook_tls = tls::WebhookTls::load(cert, args.client_ca.as_deref(), provider)
        .context("configuring TLS")?;

    let webhook_listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding the webhook address {}", args.addr))?;
    let admin_listener = TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin address {}", args.admin_addr))?;
    readiness.set_listening();
    tracing::info!(
        webhook = %webhook_listener.local_addr().unwrap_or(args.addr),
        admin = %admin_listener.local_addr().unwrap_or(args.admin_addr),
        client_ca = args.client_ca.is_some(),
        max_concurrent_reviews = args.max_concurrent_reviews,
        "listening"
    );

    let admin_router = admin::router(admin::AdminState {
        engine: Arc::clone(&engine),
        metrics: Arc::clone(&metrics),
        readiness: Arc::clone(&readiness),
    });
    // The admin server outlives the drain: /readyz must keep answering "not ready" while
    // in-flight reviews finish, so that the endpoint is taken out of the Service.
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin_max_connections = args.admin_max_connections as usize;
    let admin = tokio::spawn(async move {
        let stop = async move {
            let _ = admin_stop_rx.await;
        };
        admin::serve(admin_listener, admin_router, admin_max_connections, stop).await
    });

    // Certificates keep reloading through the drain: it lasts the drain delay plus the grace,
    // long enough for a renewal to land in the middle of it.
    let (cert_stop_tx, cert_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cert_stop = async move {
        let _ = cert_stop_rx.await;
    };
    tokio::spawn(Arc::clone(&webhook_tls).watch(args.tls_reload_interval, cert_stop));

    let webhook_router = webhook::router(webhook::WebhookState {
        engine: Arc::clone(&engine),
        metrics: Arc::clone(&metrics),
        limits: limits::Limits::new(limits::LimitSizes {
            decisions: args.max_concurrent_reviews as usize,
            large_decisions: args.max_concurrent_large_reviews as usize,
            body_reads: args.max_concurrent_body_reads as usize,
            body_bytes: args.max_buffered_body_mib as usize * 1024 * 1024,
        }),
        prefetch: cluster.as_ref().map(|c| Arc::clone(&c.prefetch)),
    });
    let drain = shutdown::Drain {
        delay: args.drain_delay,
        grace: args.shutdown_grace,
    };
    let connections = listener::ConnectionLimits {
        http2_max_concurrent_streams: args.http2_max_concurrent_streams,
        body_reads: args.max_body_reads_per_connection as usize,
        first_request_timeout: args.first_request_timeout,
        idle_timeout: args.idle_timeout,
    };
    let drained = listener::serve_tls(
        webhook_listener,
        webhook_tls,
        webhook_router,
        shutdown,
        drain,
        connections,
    )
    .await;
    if drained == listener::Drained::GraceElapsed {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
    let _ = cert_stop_tx.send(());
    let _ = admin_stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(4), admin).await {
        Ok(Err(e)) => tracing::warn!(error = %e, "admin server task failed"),
        Err(_) => tracing::warn!("admin server did not stop in time"),
        Ok(Ok(())) => {}
    }
    if let Some(cluster) = cluster {
        cluster.stop().await;
    }
    tracing::info!("shutdown complete");
    Ok(())
}
