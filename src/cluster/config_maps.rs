//! The on-demand ConfigMap cache: a bounded map of the ConfigMaps that workloads reference.
//!
//! Caching every ConfigMap in the cluster would hold dashboards, CA bundles and scripts that no
//! workload ever reads as an endpoint. Instead the webhook (and the audit) fetch a referenced
//! ConfigMap the first time they meet it, with a deadline, and keep it in a least-recently-used
//! map of bounded size. A metadata-only watch of all ConfigMaps keeps the cached ones fresh: it
//! carries names and resource versions only, and a cached entry whose version moved is fetched
//! again. A ConfigMap that does not exist is cached as absent (the snapshot then treats a
//! `configMapKeyRef` to it like Kubernetes does), and becomes present when the watch sees it.
//! A fetch that fails or misses its deadline caches nothing: the value stays unresolved.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::metrics::{Metrics, ResourceLabel};
use crate::snapshot::{ConfigMapData, ConfigMapSource, Lookup};
use crate::state::ConfigMapPrefetch;

type Key = (String, String);

#[derive(Debug)]
struct Entry {
    /// None: the ConfigMap does not exist.
    data: Option<ConfigMapData>,
    resource_version: Option<String>,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    tick: u64,
}

/// The bounded cache. Lookups never do I/O.
#[derive(Debug)]
pub struct ConfigMapCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl ConfigMapCache {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(ConfigMapCache {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent across a panic elsewhere: every write is one insert/remove.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.lock()
            .entries
            .contains_key(&(namespace.to_string(), name.to_string()))
    }

    /// Stores what a GET returned (None: not found), evicting the least recently used entry
    /// when full.
    pub fn insert(&self, namespace: &str, name: &str, cm: Option<&ConfigMap>) {
        let key = (namespace.to_string(), name.to_string());
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if !inner.entries.contains_key(&key) && inner.entries.len() >= self.capacity {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(
            key,
            Entry {
                data: cm.map(|cm| Arc::new(cm.data.clone().unwrap_or_default())),
                resource_version: cm.and_then(|cm| cm.metadata.resource_version.clone()),
                last_used: tick,
            },
        );
    }

    /// Marks a cached ConfigMap as deleted; uncached names are not tracked.
    pub fn mark_absent(&self, namespace: &str, name: &str) {
        let mut inner = self.lock();
        if let Some(e) = inner
            .entries
            .get_mut(&(namespace.to_string(), name.to_string()))
        {
            e.data = None;
            e.resource_version = None;
        }
    }

    /// Whether a cached entry is stale given the version the watch reports (None when the name
    /// is not cached: nothing to refresh).
    fn stale(&self, namespace: &str, name: &str, resource_version: Option<&str>) -> bool {
        let inner = self.lock();
        inner
            .entries
            .get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|e| e.resource_version.as_deref() != resource_version)
    }

    /// Cached keys not in `seen` that are cached as present: deleted while the watch was down.
    fn present_not_in(&self, seen: &HashSet<Key>) -> Vec<Key> {
        self.lock()
            .entries
            .iter()
            .filter(|(k, e)| e.data.is_some() && !seen.contains(*k))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl ConfigMapSource for ConfigMapCache {
    fn get(&self, namespace: &str, name: &str) -> Lookup<ConfigMapData> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        match inner
            .entries
            .get_mut(&(namespace.to_string(), name.to_string()))
        {
            Some(e) => {
                e.last_used = tick;
                match &e.data {
                    Some(d) => Lookup::Found(Arc::clone(d)),
                    None => Lookup::Absent,
                }
            }
            None => Lookup::Unknown,
        }
    }
}

/// Fetches referenced ConfigMaps into the cache.
#[derive(Clone)]
pub struct Fetcher {
    pub client: Client,
    pub cache: Arc<ConfigMapCache>,
    pub metrics: Arc<Metrics>,
}

impl Fetcher {
    /// GETs one ConfigMap and caches the answer; an error caches nothing.
    async fn fetch(&self, namespace: &str, name: &str) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(found) => self.cache.insert(namespace, name, found.as_ref()),
            Err(e) => tracing::warn!(
                namespace, name, error = %e,
                "cannot fetch a referenced ConfigMap; its values stay unresolved"
            ),
        }
        self.metrics
            .config_map_cache_entries
            .set(self.cache.len() as i64);
    }

    /// Fetches the names not yet cached, concurrently, until `deadline`.
    pub async fn fetch_missing(
        &self,
        namespace: &str,
        names: &[String],
        deadline: tokio::time::Instant,
    ) {
        let missing = names
            .iter()
            .filter(|n| !self.cache.contains(namespace, n))
            .map(|n| self.fetch(namespace, n));
        let all = futures::future::join_all(missing);
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            tracing::debug!(namespace, "ConfigMap fetch hit its deadline");
        }
    }
}

impl ConfigMapPrefetch for Fetcher {
    fn prefetch(
        &self,
        namespace: String,
        names: Vec<String>,
        deadline: tokio::time::Instant,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let this = self.clone();
        Box::pin(async move { this.fetch_missing(&namespace, &names, deadline).await })
    }
}

/// Keeps the cached ConfigMaps fresh from a metadata-only watch of all ConfigMaps, until
/// `stop` turns true.
pub async fn keep_fresh(fetcher: Fetcher, mut stop: watch::Receiver<bool>) {
    let api: Api<PartialObjectMeta<ConfigMap>> = Api::all(fetcher.client.clone());
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let label = ResourceLabel {
        resource: "configmaps",
    };
    let mut seen: HashSet<Key> = HashSet::new();
    let mut listed_once = false;
    loop {
        let item = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            item = stream.next() => item,
        };
        let Some(item) = item else { break };
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                fetcher.metrics.watch_errors.get_or_create(&label).inc();
                tracing::warn!(resource = "configmaps", error = %e, "watch error; retrying with backoff");
                continue;
            }
        };
        match event {
            Event::Init => {
                if listed_once {
                    fetcher.metrics.watch_restarts.get_or_create(&label).inc();
                }
                seen.clear();
            }
            Event::InitApply(meta) | Event::Apply(meta) => {
                let (ns, name) = key_of(&meta);
                if fetcher.cache.contains(&ns, &name) {
                    seen.insert((ns.clone(), name.clone()));
                }
                if fetcher
                    .cache
                    .stale(&ns, &name, meta.metadata.resource_version.as_deref())
                {
                    fetcher.fetch(&ns, &name).await;
                }
            }
            Event::Delete(meta) => {
                let (ns, name) = key_of(&meta);
                fetcher.cache.mark_absent(&ns, &name);
            }
            Event::InitDone => {
                listed_once = true;
                for (ns, name) in fetcher.cache.present_not_in(&seen) {
                    fetcher.cache.mark_absent(&ns, &name);
                }
                seen.clear();
            }
        }
    }
}

fn key_of(meta: &PartialObjectMeta<ConfigMap>) -> Key {
    (
        meta.metadata.namespace.clone().unwrap_or_default(),
        meta.metadata.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cm(ns: &str, name: &str, rv: &str, data: &[(&str, &str)]) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c.metadata.resource_version = Some(rv.into());
        c.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        c
    }

    #[test]
    fn found_absent_and_unknown() {
        let cache = ConfigMapCache::new(8);
        cache.insert("a", "x", Some(&cm("a", "x", "1", &[("K", "v")])));
        cache.insert("a", "gone", None);
        assert!(
            matches!(cache.get("a", "x"), Lookup::Found(d) if d.get("K").map(String::as_str) == Some("v"))
        );
        assert_eq!(cache.get("a", "gone"), Lookup::Absent);
        assert_eq!(cache.get("a", "never"), Lookup::Unknown);
        cache.mark_absent("a", "x");
        assert_eq!(cache.get("a", "x"), Lookup::Absent);
        // Untracked names stay untracked.
        cache.mark_absent("a", "never");
        assert_eq!(cache.get("a", "never"), Lookup::Unknown);
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted_at_capacity() {
        let cache = ConfigMapCache::new(2);
        cache.insert("a", "1", Some(&cm("a", "1", "1", &[])));
        cache.insert("a", "2", Some(&cm("a", "2", "1", &[])));
        // Touch 1, so 2 is the oldest.
        let _ = cache.get("a", "1");
        cache.insert("a", "3", Some(&cm("a", "3", "1", &[])));
        assert_eq!(cache.len(), 2);
        assert!(cache.contains("a", "1"));
        assert!(!cache.contains("a", "2"));
        assert!(cache.contains("a", "3"));
    }

    #[test]
    fn staleness_follows_the_resource_version() {
        let cache = ConfigMapCache::new(4);
        cache.insert("a", "x", Some(&cm("a", "x", "7", &[])));
        assert!(!cache.stale("a", "x", Some("7")));
        assert!(cache.stale("a", "x", Some("8")));
        assert!(!cache.stale("a", "other", Some("8")));
        cache.insert("a", "missing", None);
        assert!(
            cache.stale("a", "missing", Some("1")),
            "a created ConfigMap is fetched"
        );
    }
}
