//! hostguard in a live cluster: reflectors that build the engine's snapshot, cluster identity
//! from Nodes, the on-demand ConfigMap cache, the background audit, status and events, and the
//! leader lease that decides which replica writes.
//!
//! (Being built: see issue 4. Until then `start` refuses, and `serve` needs `--standalone`.)

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;

use crate::api::{ClusterProvider, HostingPolicy};
use crate::server::metrics::Metrics;
use crate::server::state::{ConfigMapPrefetch, SharedState};

/// Arguments of `hostguard serve` that only matter in a cluster.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// How often existing workloads are audited (also after every policy change).
    #[arg(long, env = "HOSTGUARD_AUDIT_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub audit_interval: Duration,
    /// Name of the coordination.k8s.io Lease that elects the replica writing status and events.
    #[arg(long, env = "HOSTGUARD_LEASE_NAME", default_value = "hostguard-leader")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else `hostguard`).
    #[arg(long, env = "HOSTGUARD_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// How many ConfigMaps the on-demand cache keeps.
    #[arg(long, env = "HOSTGUARD_CONFIGMAP_CACHE_SIZE", default_value_t = 4096)]
    pub config_map_cache_size: usize,
}

/// What the cluster side gets from the server.
pub struct ClusterContext {
    /// Where to publish each new snapshot (the first publication makes the server ready).
    pub engine: Arc<SharedState>,
    pub metrics: Arc<Metrics>,
    /// Turns true when shutdown starts.
    pub shutdown: watch::Receiver<bool>,
    /// Policies from `--policy` files, enforced besides those in the cluster.
    pub file_policies: Vec<HostingPolicy>,
    /// `--cluster-provider`: overrides detection from Nodes.
    pub cluster_provider: Option<ClusterProvider>,
}

/// The running cluster side.
pub struct Cluster {
    /// Fills the ConfigMap cache before a decision.
    pub prefetch: Arc<dyn ConfigMapPrefetch>,
}

impl Cluster {
    /// Waits for the background tasks to stop (the lease is released on the way out).
    pub async fn stop(self) {}
}

/// Connects to the cluster and starts the watches, the audit and the lease.
pub async fn start(_args: &ClusterArgs, _ctx: ClusterContext) -> anyhow::Result<Cluster> {
    anyhow::bail!(
        "cluster mode is not available in this build: run with --standalone (policies from --policy files and the built-in default, cluster provider from --cluster-provider)"
    )
}
