//! hostguard in a live cluster: reflectors that build the engine's snapshot, cluster identity
//! from Nodes, the on-demand ConfigMap cache, the background audit, status and events, and the
//! leader lease that decides which replica writes.
//!
//! Tasks, all stopped by [`Cluster::stop`]; the audit and the Lease elector already by the
//! shutdown signal (the server keeps answering through its drain, from current caches):
//! - four reflectors ([`watch::reflect`]): HostingPolicies (full objects), AIWorkloads (kept
//!   as their compiled declaration and status), Namespaces (metadata-only: labels are all the
//!   engine reads), Nodes (full watch, because `spec.providerID` is not metadata; kept as the
//!   provider ID, provider labels and `spec.unschedulable`);
//! - the publisher: once every initial list has synced, builds policies and snapshot from the
//!   stores and publishes them atomically, and again on every change that matters;
//! - the ConfigMap freshness watch ([`config_maps::keep_fresh`]);
//! - the Lease elector ([`lease::Elector`]);
//! - the audit loop: every `--audit-interval`, on every policy change and on winning the Lease,
//!   the leader audits existing workloads and writes status and Events.
//!
//! Every replica watches and answers admission from its own caches; only the audit's listing
//! and writing is left to the leader, so that the API server's load does not grow with the
//! replica count.

pub mod audit;
pub mod config_maps;
pub mod discovery;
pub mod identity;
pub mod inventory;
pub mod lease;
pub mod namespaces;
pub mod projection;
pub mod rbac;
pub mod related;
pub mod reports;
pub mod status;
pub mod watch;
pub mod write;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::{Notify, watch as channel};
use tokio::task::JoinHandle;

use crate::api::{AIWorkload, ClusterProvider, HostingPolicy};
use crate::metrics::{AuditResult, ClusterProviderLabels, Metrics, ProviderLabel, ViolationLabels};
use crate::policy::{CompiledPolicy, PolicyError};
use crate::state::{ConfigMapPrefetch, SharedState};
use config_maps::{ConfigMapCache, Fetcher};
use inventory::{BuildInput, Inventory, Writers};
use lease::{Elector, Leadership, Timings};

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
    /// `leaseDurationSeconds` of the Lease: how long other replicas wait, after they last saw it
    /// renewed, before they take over.
    #[arg(long, env = "HOSTGUARD_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// How long the holder trusts its last renewal: it stops writing this long after it, well
    /// before another replica may take over.
    #[arg(long, env = "HOSTGUARD_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_renew_deadline: Duration,
    /// Write the audit's results as PolicyReports in this API (one report per namespace and a
    /// cluster report), when the cluster serves its CRDs. Off when not given.
    #[arg(long, env = "HOSTGUARD_POLICY_REPORTS", value_enum)]
    pub policy_reports: Option<crate::policy_report::ReportApi>,
    /// How often the holder renews the Lease.
    #[arg(long, env = "HOSTGUARD_LEASE_RENEW_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_renew_interval: Duration,
    /// How often a replica that does not hold the Lease tries to take it.
    #[arg(long, env = "HOSTGUARD_LEASE_RETRY_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lease_retry_interval: Duration,
}

impl ClusterArgs {
    /// The Lease timings, checked: renewals must come well within the renew deadline, and the
    /// renew deadline must end before anyone else may take over.
    pub fn lease_timings(&self) -> anyhow::Result<Timings> {
        let t = Timings {
            lease_duration: self.lease_duration,
            renew_deadline: self.lease_renew_deadline,
            renew_interval: self.lease_renew_interval,
            retry_interval: self.lease_retry_interval,
        };
        if t.lease_duration.as_secs() < 1 {
            anyhow::bail!("--lease-duration must be at least 1s (the Lease counts whole seconds)");
        }
        if !(t.renew_interval < t.renew_deadline && t.renew_deadline < t.lease_duration) {
            anyhow::bail!(
                "lease timings must satisfy --lease-renew-interval < --lease-renew-deadline < --lease-duration"
            );
        }
        if t.retry_interval.is_zero() {
            anyhow::bail!("--lease-retry-interval must be above zero");
        }
        Ok(t)
    }

    fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "hostguard".to_string())
    }

    fn identity(&self) -> String {
        self.pod_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("hostguard-{}", std::process::id()))
    }
}

/// What the cluster side gets from the server.
pub struct ClusterContext {
    /// Where to publish each new snapshot (the first publication makes the server ready).
    pub engine: Arc<SharedState>,
    pub metrics: Arc<Metrics>,
    /// Turns true when shutdown starts.
    pub shutdown: channel::Receiver<bool>,
    /// Policies from `--policy` files, enforced besides those in the cluster.
    pub file_policies: Vec<HostingPolicy>,
    /// `--cluster-provider`: overrides detection from Nodes.
    pub cluster_provider: Option<ClusterProvider>,
}

/// The running cluster side.
pub struct Cluster {
    /// Fills the ConfigMap cache before a decision.
    pub prefetch: Arc<dyn ConfigMapPrefetch>,
    /// Who leads (for tests and diagnostics).
    pub leadership: Leadership,
    stop: Arc<channel::Sender<bool>>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    elector: Option<JoinHandle<()>>,
}

/// How long [`Cluster::stop`] waits for each task.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl Cluster {
    /// Stops the background tasks and waits for them; the lease is released last, after the
    /// audit can no longer write.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            if tokio::time::timeout(STOP_TIMEOUT, task).await.is_err() {
                tracing::warn!(task = name, "cluster task did not stop in time");
            }
        }
        if let Some(elector) = self.elector
            && tokio::time::timeout(STOP_TIMEOUT, elector).await.is_err()
        {
            tracing::warn!("the lease elector did not stop in time; the lease will expire");
        }
    }
}

/// Tunables that tests shorten; production uses the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub lease: Timings,
}

/// Connects with kube's default configuration (in-cluster service account, else KUBECONFIG or
/// `~/.kube/config`) and starts the watches, the audit and the lease. Returns at once: the
/// engine state is published when the initial lists have synced.
pub async fn start(args: &ClusterArgs, ctx: ClusterContext) -> anyhow::Result<Cluster> {
    let client = Client::try_default()
        .await
        .context("configuring the Kubernetes client (in-cluster service account or kubeconfig)")?;
    let options = Options {
        lease: args.lease_timings()?,
    };
    start_with_client(client, args, ctx, options)
}

/// [`start`] with a given client.
pub fn start_with_client(
    client: Client,
    args: &ClusterArgs,
    ctx: ClusterContext,
    options: Options,
) -> anyhow::Result<Cluster> {
    let file_policies = compile_file_policies(&ctx.file_policies)?;
    let identity = args.identity();
    let lease_namespace = args.lease_namespace();
    tracing::info!(
        identity = %identity,
        lease = %format!("{lease_namespace}/{}", args.lease_name),
        file_policies = file_policies.len(),
        cluster_provider_flag = ctx.cluster_provider.map(ClusterProvider::as_str),
        audit_interval = %humantime::format_duration(args.audit_interval),
        "starting the cluster controller"
    );

    let (stop_tx, stop_rx) = channel::channel(false);
    let stop_tx = Arc::new(stop_tx);
    // Leading ends with the shutdown signal: the audit stops and the Lease is released at once,
    // so another replica takes over without waiting for it to expire. The watches go on until
    // `Cluster::stop`, which the server calls once the webhook has drained: reviews answered
    // during the drain are decided with current policies.
    let (lead_stop_rx, bridge) = end_leading_on(ctx.shutdown.clone(), stop_rx.clone());
    let mut tasks: Vec<(&'static str, JoinHandle<()>)> = vec![("shutdown", bridge)];

    let cache = ConfigMapCache::new(args.config_map_cache_size);
    let fetcher = Fetcher {
        client: client.clone(),
        cache: Arc::clone(&cache),
        metrics: Arc::clone(&ctx.metrics),
    };
    tasks.push((
        "configmaps",
        tokio::spawn(config_maps::keep_fresh(fetcher.clone(), stop_rx.clone())),
    ));

    let (inventory, writers) = Inventory::new();
    let namespace_cache = namespaces::NamespaceCache::new();
    let prefetch = Prefetcher {
        config_maps: fetcher.clone(),
        namespaces: namespaces::NamespaceFetcher {
            client: client.clone(),
            store: inventory.namespaces.clone(),
            cache: Arc::clone(&namespace_cache),
        },
        related: inventory.related.clone(),
    };
    let notify = Arc::new(Notify::new());
    let shared = watch::Shared {
        notify: Arc::clone(&notify),
        metrics: Arc::clone(&ctx.metrics),
        stop: stop_rx.clone(),
    };
    let synced: Vec<Arc<AtomicBool>> = (0..4).map(|_| Arc::new(AtomicBool::new(false))).collect();
    tasks.extend(spawn_watches(&client, writers, &synced, &shared));
    tasks.push((
        "related",
        tokio::spawn(related::run(
            client.clone(),
            inventory.related.clone(),
            shared.clone(),
        )),
    ));

    let report = Arc::new(Mutex::new(BuildReport::default()));
    let (policy_tx, policy_rx) = channel::channel(0u64);
    let publisher = Publisher {
        inventory: inventory.clone(),
        file_policies,
        cluster_provider: ctx.cluster_provider,
        cache: Arc::clone(&cache),
        namespace_cache,
        engine: Arc::clone(&ctx.engine),
        metrics: Arc::clone(&ctx.metrics),
        notify,
        synced,
        report: Arc::clone(&report),
        policy_changed: policy_tx,
    };
    tasks.push(("publisher", tokio::spawn(publisher.run(stop_rx.clone()))));

    let elector = Elector::new(
        client.clone(),
        &lease_namespace,
        &args.lease_name,
        &identity,
        options.lease,
    );
    let leadership = elector.leadership();
    let auditor = Auditor {
        client: client.clone(),
        fetcher: fetcher.clone(),
        inventory,
        engine: Arc::clone(&ctx.engine),
        metrics: Arc::clone(&ctx.metrics),
        leadership: leadership.clone(),
        writer: {
            let writer = status::Writer::new(client, leadership.clone(), &identity);
            match args.policy_reports {
                Some(api) => writer.with_reports(api),
                None => writer,
            }
        },
        report,
        interval: args.audit_interval,
        served_before: Vec::new(),
    };
    tasks.push((
        "audit",
        tokio::spawn(auditor.run(policy_rx, lead_stop_rx.clone())),
    ));
    let elector = tokio::spawn(elector.run(Arc::clone(&ctx.metrics), lead_stop_rx));

    Ok(Cluster {
        prefetch: Arc::new(prefetch),
        leadership,
        stop: stop_tx,
        tasks,
        elector: Some(elector),
    })
}

/// A stop signal for the leader's work (audit, Lease) that turns true on the process's shutdown
/// signal or on `Cluster::stop`, whichever comes first.
fn end_leading_on(
    mut shutdown: channel::Receiver<bool>,
    mut own: channel::Receiver<bool>,
) -> (channel::Receiver<bool>, JoinHandle<()>) {
    let (tx, rx) = channel::channel(false);
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {}
            _ = own.wait_for(|s| *s) => {}
        }
        let _ = tx.send(true);
    });
    (rx, task)
}

/// The four watches the engine state is built from, each reflected into its store of the
/// inventory; `synced[i]` turns true when watch `i` has listed everything once.
fn spawn_watches(
    client: &Client,
    writers: Writers,
    synced: &[Arc<AtomicBool>],
    shared: &watch::Shared,
) -> [(&'static str, JoinHandle<()>); 4] {
    [
        spawn_reflector(
            "hostingpolicies",
            Api::<HostingPolicy>::all(client.clone()),
            inventory::trim_meta,
            watch::Whole::new(writers.policies, |p: &HostingPolicy| {
                inventory::spec_fingerprint(&p.spec)
            }),
            &synced[0],
            shared,
        ),
        spawn_reflector(
            "aiworkloads",
            Api::<AIWorkload>::all(client.clone()),
            // Nothing to trim: the object is dropped once its record is made.
            |_| {},
            writers.workloads,
            &synced[1],
            shared,
        ),
        // Metadata only, and only the labels kept: the engine reads nothing else.
        spawn_reflector(
            "namespaces",
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            |_| {},
            writers.namespaces,
            &synced[2],
            shared,
        ),
        // Whole Nodes (providerID is in spec), each kept as what identity reads of it.
        spawn_reflector(
            "nodes",
            Api::<Node>::all(client.clone()),
            |_| {},
            writers.nodes,
            &synced[3],
            shared,
        ),
    ]
}

/// One watch with kube's default backoff, trimmed as it arrives, applied to `sink`.
fn spawn_reflector<K>(
    resource: &'static str,
    api: Api<K>,
    trim: fn(&mut K),
    sink: impl watch::Sink<K> + Send + 'static,
    synced: &Arc<AtomicBool>,
    shared: &watch::Shared,
) -> (&'static str, JoinHandle<()>)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default + Send + Sync,
{
    let stream = watcher::watcher(api, watch::list_config())
        .default_backoff()
        .modify(trim);
    let task = watch::reflect(resource, stream, sink, Arc::clone(synced), shared.clone());
    (resource, tokio::spawn(task))
}

fn compile_file_policies(policies: &[HostingPolicy]) -> anyhow::Result<Vec<CompiledPolicy>> {
    let mut compiled = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for p in policies {
        match CompiledPolicy::compile(p) {
            Ok(c) => compiled.push(c),
            Err(e) => errors.extend(e.iter().map(ToString::to_string)),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("compiling --policy files:\n{}", errors.join("\n"));
    }
    Ok(compiled)
}

/// What the last build left out, for the audit's status writes.
#[derive(Debug, Clone, Default)]
struct BuildReport {
    invalid_policies: BTreeMap<String, Vec<PolicyError>>,
    enforced_instead: BTreeMap<String, inventory::EnforcedInstead>,
    shadowed: Vec<String>,
}

/// What the webhook fetches before a decision: the ConfigMaps the object references and, when
/// the watch has not delivered it yet, the review's namespace.
#[derive(Clone)]
struct Prefetcher {
    config_maps: Fetcher,
    namespaces: namespaces::NamespaceFetcher,
    related: related::RelatedStores,
}

impl ConfigMapPrefetch for Prefetcher {
    fn prefetch(
        &self,
        namespace: String,
        names: Vec<String>,
        deadline: tokio::time::Instant,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let this = self.clone();
        Box::pin(async move {
            let config_maps = this.config_maps.fetch_missing(&namespace, &names, deadline);
            let ns = this.namespaces.fetch_missing(&namespace, deadline);
            futures::join!(config_maps, ns);
        })
    }

    fn config_map_readers(
        &self,
        namespace: String,
        name: String,
        deadline: tokio::time::Instant,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Vec<serde_json::Value>, String>>
                + Send
                + 'static,
        >,
    > {
        self.config_maps
            .config_map_readers(namespace, name, deadline)
    }

    fn related_objects(
        &self,
        keys: Vec<crate::snapshot::RelatedKey>,
        deadline: tokio::time::Instant,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<serde_json::Value>> + Send + 'static>>
    {
        let this = self.clone();
        Box::pin(async move {
            related::fetch(&this.config_maps.client, &this.related, &keys, deadline).await
        })
    }
}

struct Publisher {
    inventory: Inventory,
    file_policies: Vec<CompiledPolicy>,
    cluster_provider: Option<ClusterProvider>,
    cache: Arc<ConfigMapCache>,
    namespace_cache: Arc<namespaces::NamespaceCache>,
    engine: Arc<SharedState>,
    metrics: Arc<Metrics>,
    notify: Arc<Notify>,
    synced: Vec<Arc<AtomicBool>>,
    report: Arc<Mutex<BuildReport>>,
    policy_changed: channel::Sender<u64>,
}

impl Publisher {
    async fn run(self, mut stop: channel::Receiver<bool>) {
        let mut generation = 0u64;
        let mut last_fingerprint: Option<u64> = None;
        let mut last_detection = None;
        let mut last_invalid: BTreeMap<String, Vec<PolicyError>> = BTreeMap::new();
        let mut last_shadowed: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = self.notify.notified() => {}
            }
            if !self.synced.iter().all(|s| s.load(Ordering::SeqCst)) {
                continue;
            }
            generation += 1;
            let built = self.inventory.build(&BuildInput {
                file_policies: &self.file_policies,
                cluster_provider: self.cluster_provider,
                config_maps: Some(Arc::clone(&self.cache) as _),
                namespaces: Some(Arc::clone(&self.namespace_cache) as _),
                generation,
            });
            for (name, errors) in &built.invalid_policies {
                if last_invalid.get(name) != Some(errors) {
                    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    match built.enforced_instead.get(name) {
                        Some(instead) => {
                            tracing::warn!(policy = %name, errors = %errors.join("; "), enforced_instead = ?instead, "HostingPolicy does not compile; its last good version is still enforced")
                        }
                        None => {
                            tracing::warn!(policy = %name, errors = %errors.join("; "), "HostingPolicy does not compile and no earlier version did; it is not enforced")
                        }
                    }
                }
            }
            for name in &built.shadowed {
                if !last_shadowed.contains(name) {
                    tracing::warn!(policy = %name, "HostingPolicy is overridden by a --policy file of the same name");
                }
            }
            last_shadowed.clone_from(&built.shadowed);
            if last_detection.as_ref() != Some(&built.detection) {
                self.record_detection(&built.detection);
                last_detection = Some(built.detection.clone());
            }
            let policies = built.policies.len();
            let fingerprint = built.policy_fingerprint;
            last_invalid = built.invalid_policies.clone();
            *self.report.lock().unwrap_or_else(PoisonError::into_inner) = BuildReport {
                invalid_policies: built.invalid_policies,
                enforced_instead: built.enforced_instead,
                shadowed: built.shadowed,
            };
            let first = generation == 1;
            self.engine.publish(built.policies, built.snapshot);
            if first {
                tracing::info!(
                    policies,
                    "cluster caches synced; engine state published, ready"
                );
            } else {
                tracing::debug!(policies, generation, "engine state published");
            }
            if last_fingerprint != Some(fingerprint) {
                last_fingerprint = Some(fingerprint);
                self.policy_changed.send_modify(|v| *v += 1);
            }
        }
    }

    fn record_detection(&self, d: &identity::Detection) {
        let effective = identity::effective(d.provider, self.cluster_provider);
        let nodes: Vec<String> = d.nodes.iter().map(|(p, n)| format!("{p}={n}")).collect();
        tracing::info!(
            detected = d.provider.as_str(),
            flag = self.cluster_provider.map(ClusterProvider::as_str),
            effective = effective.as_str(),
            nodes = %nodes.join(","),
            unschedulable = d.unschedulable,
            "cluster provider"
        );
        if let Some(flag) = self.cluster_provider
            && flag != d.provider
            && d.provider != ClusterProvider::Unknown
        {
            tracing::warn!(
                detected = d.provider.as_str(),
                flag = flag.as_str(),
                "--cluster-provider overrides what the Nodes say"
            );
        }
        let m = &self.metrics;
        m.cluster_provider.clear();
        m.cluster_provider
            .get_or_create(&ClusterProviderLabels {
                detected: d.provider.as_str(),
                effective: effective.as_str(),
            })
            .set(1);
        m.cluster_nodes.clear();
        for (provider, n) in &d.nodes {
            m.cluster_nodes
                .get_or_create(&ProviderLabel { provider })
                .set(*n as i64);
        }
        m.cluster_nodes_unschedulable.set(d.unschedulable as i64);
    }
}

/// How long the audit waits for discovery before giving up until the next audit.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);

struct Auditor {
    client: Client,
    fetcher: Fetcher,
    inventory: Inventory,
    engine: Arc<SharedState>,
    metrics: Arc<Metrics>,
    leadership: Leadership,
    writer: status::Writer,
    report: Arc<Mutex<BuildReport>>,
    interval: Duration,
    /// The served kinds the last audit found, to log only a change.
    served_before: Vec<String>,
}

impl Auditor {
    async fn run(
        mut self,
        mut policy_changed: channel::Receiver<u64>,
        mut stop: channel::Receiver<bool>,
    ) {
        let mut leading = self.leadership.subscribe();
        let mut next = tokio::time::Instant::now() + self.interval;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep_until(next) => {}
                changed = policy_changed.changed() => {
                    if changed.is_err() { break; }
                }
                changed = leading.changed() => {
                    if changed.is_err() { break; }
                    if !*leading.borrow_and_update() {
                        // A later term starts with no memory of published Events.
                        self.writer.reset();
                        continue;
                    }
                }
            }
            next = tokio::time::Instant::now() + self.interval;
            if !self.leadership.is_leader() {
                continue;
            }
            let Some(state) = self.engine.load() else {
                continue;
            };
            self.audit_once(&state, &stop).await;
        }
    }

    async fn audit_once(
        &mut self,
        state: &crate::state::EngineState,
        stop: &channel::Receiver<bool>,
    ) {
        let started = Instant::now();
        let leadership = self.leadership.clone();
        let stop = stop.clone();
        let keep_going = move || leadership.is_leader() && !*stop.borrow();
        // Asked before every audit, so that a CRD installed since the last one is covered.
        let asked = tokio::time::timeout(DISCOVERY_TIMEOUT, discovery::discover(&self.client));
        let served = match asked.await {
            Ok(Ok(served)) => served,
            // Only a server without the /apis group list answers 404 there: nothing to add.
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => discovery::Served::default(),
            Err(_) => {
                self.metrics.audit_ended(AuditResult::Error);
                tracing::warn!(after = ?DISCOVERY_TIMEOUT, "discovery did not answer; the next audit retries");
                return;
            }
            Ok(Err(e)) => {
                self.metrics.audit_ended(AuditResult::Error);
                tracing::warn!(error = %e, "cannot ask discovery which AI-tool kinds are served; the next audit retries");
                return;
            }
        };
        let names = served.names();
        if names != self.served_before {
            tracing::info!(
                kinds = ?names,
                not_understood = ?served.not_understood,
                "AI-tool and pod-template kinds served by the cluster, audited from now on"
            );
            self.served_before = names;
        }
        let result = audit::run_served(
            &self.client,
            Some(&self.fetcher),
            &state.policies,
            &state.snapshot,
            &keep_going,
            self.writer.reports().is_some(),
            &served,
        )
        .await;
        let tally = match result {
            Ok(t) => t,
            Err(e) => {
                self.metrics.audit_ended(match e {
                    audit::AuditError::Interrupted => AuditResult::Interrupted,
                    audit::AuditError::List { .. } | audit::AuditError::Timeout { .. } => {
                        AuditResult::Error
                    }
                });
                tracing::warn!(error = %e, "audit did not finish; the next one retries");
                return;
            }
        };
        let m = &self.metrics;
        m.audit_objects.set(tally.objects as i64);
        m.audit_violations.clear();
        for p in state.policies.policies() {
            let violating = tally.policies.get(&p.name).map_or(0, |t| t.violating);
            m.audit_violations
                .get_or_create(&ViolationLabels {
                    policy: p.name.clone(),
                    action: p.action.as_str(),
                })
                .set(violating);
        }
        let report = self
            .report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let written = self
            .writer
            .write(
                &self.inventory.policies.state(),
                status::PolicyStates {
                    invalid: &report.invalid_policies,
                    enforced_instead: &report.enforced_instead,
                    shadowed: &report.shadowed,
                },
                &self.inventory.workloads.values(),
                &tally,
                k8s_openapi::jiff::Timestamp::now(),
            )
            .await;
        let seconds = started.elapsed().as_secs_f64();
        m.audit_duration.observe(seconds);
        let violating: i64 = tally.policies.values().map(|t| t.violating).sum();
        match written {
            Ok(status::Written {
                statuses,
                unchanged,
                events,
                reports,
            }) => {
                m.audit_ended(AuditResult::Ok);
                tracing::info!(
                    objects = tally.objects,
                    violating,
                    statuses_written = statuses,
                    statuses_unchanged = unchanged,
                    events,
                    events_over_cap = tally.events_dropped,
                    reports_applied = reports.map_or(0, |r| r.applied),
                    reports_deleted = reports.map_or(0, |r| r.deleted),
                    report_results_over_cap = reports.map_or(0, |r| r.dropped),
                    seconds,
                    "audit finished"
                );
            }
            Err(e) => {
                m.audit_ended(AuditResult::Interrupted);
                tracing::info!(error = %e, "audit results not fully written");
            }
        }
    }
}
