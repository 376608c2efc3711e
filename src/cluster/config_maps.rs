//! The on-demand ConfigMap cache: a bounded map of the ConfigMaps that workloads reference.
//!
//! Caching every ConfigMap in the cluster would hold dashboards, CA bundles and scripts that no
//! workload ever reads as an endpoint. Instead the webhook (and the audit) fetch a referenced
//! ConfigMap the first time they meet it, with a deadline, and keep it in a least-recently-used
//! map of bounded size. A metadata-only watch of all ConfigMaps keeps the cached ones fresh: it
//! carries names, uids and resource versions only, and a cached entry whose version moved is
//! fetched again. A ConfigMap that does not exist is cached as absent (the snapshot then treats a
//! `configMapKeyRef` to it like Kubernetes does), and becomes present when the watch sees it.
//! A fetch that fails or misses its deadline caches nothing: the value stays unresolved.
//!
//! # Ordering
//!
//! GETs and watch events race: a GET that started before a change can return after the watch
//! reported it, and would overwrite newer data with older. Resource versions cannot settle it:
//! the API conventions make them opaque strings that clients must not compare for order, only
//! for equality. The order used instead is the watch's own: events arrive in the order of the
//! changes. Every entry carries a sequence number that moves on each write to it and on each
//! watch event that says it is out of date. A fetch remembers the number when it starts and
//! stores its answer only if the number has not moved since; otherwise the answer's place in
//! the order is unknown and it is dropped, and the event that moved the number has already
//! scheduled a fetch that started after it. So an entry never goes back to older data; at worst
//! it is briefly stale until that fetch lands.
//!
//! The only data a watch event writes itself is a deletion, and only of the incarnation cached
//! (same uid): a ConfigMap deleted and created again has a new uid, and a late DELETE of the old
//! one must not hide the new one. When a relist no longer shows a cached ConfigMap, it is fetched
//! again rather than marked absent, since the list may be older than the entry.
//!
//! Refetches never run in the watch loop: they go to a bounded queue served by a few workers.
//! When the queue is full, the entry is dropped instead (the next review fetches it on demand),
//! and a refetch that fails drops it too: data known to be stale is never served.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::metrics::{Metrics, ResourceLabel};
use crate::snapshot::{CompactMap, ConfigMapData, ConfigMapSource, Lookup};
use crate::state::ConfigMapPrefetch;

type Key = (String, String);

/// Refetches waiting for a worker, at most.
pub const REFETCH_QUEUE: usize = 1024;
/// Refetches running at once.
pub const REFETCH_WORKERS: usize = 4;
/// How long one refetch may take.
const REFETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a fetch for a review is tried again when a watch event overtook it.
const FETCH_ATTEMPTS: usize = 3;

/// What a GET said about one ConfigMap.
#[derive(Debug, Clone)]
struct Fetched {
    /// None: the ConfigMap does not exist.
    data: Option<ConfigMapData>,
    resource_version: Option<String>,
    uid: Option<String>,
}

#[derive(Debug)]
struct Entry {
    /// None while the first fetch is in flight.
    fetched: Option<Fetched>,
    /// Moves on every write and every watch event that makes the entry out of date.
    seq: u64,
    /// Fetches started and not finished.
    in_flight: u32,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Keys waiting in the refetch queue.
    queued: HashSet<Key>,
    tick: u64,
}

impl Inner {
    fn touch(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Makes room for one more entry by evicting the least recently used one that no fetch
    /// is waiting on.
    fn make_room(&mut self, capacity: usize) {
        if self.entries.len() < capacity {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| e.in_flight == 0)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            self.entries.remove(&oldest);
        }
    }
}

/// The bounded cache. Lookups never do I/O.
#[derive(Debug)]
pub struct ConfigMapCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

/// A fetch in flight: where its answer may go (see the module documentation).
#[derive(Debug)]
pub struct Ticket {
    cache: Arc<ConfigMapCache>,
    key: Key,
    seq: u64,
    open: bool,
}

impl Ticket {
    /// Stores the answer (None: not found) unless the entry moved since the fetch started.
    /// Returns whether it was stored.
    pub fn finish(mut self, cm: Option<&ConfigMap>) -> bool {
        self.open = false;
        let mut inner = self.cache.lock();
        let tick = inner.touch();
        let Some(entry) = inner.entries.get_mut(&self.key) else {
            return false;
        };
        entry.in_flight -= 1;
        if entry.seq != self.seq {
            if entry.fetched.is_none() && entry.in_flight == 0 {
                inner.entries.remove(&self.key);
            }
            return false;
        }
        entry.seq += 1;
        entry.last_used = tick;
        entry.fetched = Some(Fetched {
            data: cm.map(|cm| Arc::new(CompactMap::from(cm.data.as_ref()))),
            resource_version: cm.and_then(|cm| cm.metadata.resource_version.clone()),
            uid: cm.and_then(|cm| cm.metadata.uid.clone()),
        });
        true
    }

    /// The fetch failed: drops the entry's data if nothing newer was written meanwhile (it is
    /// known to be out of date when a refetch was asked for).
    pub fn failed(mut self) {
        self.open = false;
        let mut inner = self.cache.lock();
        if let Some(entry) = inner.entries.get_mut(&self.key) {
            entry.in_flight -= 1;
            if entry.seq == self.seq {
                entry.fetched = None;
                entry.seq += 1;
            }
            if entry.fetched.is_none() && entry.in_flight == 0 {
                inner.entries.remove(&self.key);
            }
        }
    }
}

impl Drop for Ticket {
    /// An abandoned fetch (its deadline passed) leaves the entry as it was.
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let mut inner = self.cache.lock();
        if let Some(entry) = inner.entries.get_mut(&self.key) {
            entry.in_flight -= 1;
            if entry.fetched.is_none() && entry.in_flight == 0 {
                inner.entries.remove(&self.key);
            }
        }
    }
}

/// What a watch event asks of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Nothing: the ConfigMap is not cached, or the cache is current.
    Current,
    /// The cached entry is out of date: fetch it again.
    Refetch,
}

impl ConfigMapCache {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(ConfigMapCache {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent across a panic elsewhere: every update is made under one
        // lock and leaves no half-written entry.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// ConfigMaps cached (present or known absent).
    pub fn len(&self) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|e| e.fetched.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the ConfigMap is cached (present or known absent).
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.lock()
            .entries
            .get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|e| e.fetched.is_some())
    }

    /// Starts a fetch: the ticket says where its answer may go.
    pub fn begin_fetch(self: &Arc<Self>, namespace: &str, name: &str) -> Ticket {
        let key = (namespace.to_string(), name.to_string());
        let mut inner = self.lock();
        let tick = inner.touch();
        if !inner.entries.contains_key(&key) {
            inner.make_room(self.capacity);
        }
        let entry = inner.entries.entry(key.clone()).or_insert(Entry {
            fetched: None,
            seq: 0,
            in_flight: 0,
            last_used: tick,
        });
        entry.in_flight += 1;
        Ticket {
            cache: Arc::clone(self),
            key,
            seq: entry.seq,
            open: true,
        }
    }

    /// Stores what a GET returned (None: not found), as the newest state, evicting the least
    /// recently used entry when full.
    pub fn insert(self: &Arc<Self>, namespace: &str, name: &str, cm: Option<&ConfigMap>) {
        self.begin_fetch(namespace, name).finish(cm);
    }

    /// A watch event reports `resource_version` for a ConfigMap.
    pub fn observe(&self, namespace: &str, name: &str, resource_version: Option<&str>) -> Observed {
        let mut inner = self.lock();
        let Some(entry) = inner
            .entries
            .get_mut(&(namespace.to_string(), name.to_string()))
        else {
            return Observed::Current;
        };
        let current = entry.fetched.as_ref().is_some_and(|f| {
            f.resource_version.is_some() && f.resource_version.as_deref() == resource_version
        });
        if current {
            return Observed::Current;
        }
        entry.seq += 1;
        Observed::Refetch
    }

    /// A watch event reports the deletion of the ConfigMap with `uid`.
    pub fn observe_deleted(&self, namespace: &str, name: &str, uid: Option<&str>) -> Observed {
        let mut inner = self.lock();
        let Some(entry) = inner
            .entries
            .get_mut(&(namespace.to_string(), name.to_string()))
        else {
            return Observed::Current;
        };
        entry.seq += 1;
        let cached_uid = entry.fetched.as_ref().and_then(|f| f.uid.as_deref());
        if let (Some(cached), Some(deleted)) = (cached_uid, uid)
            && cached != deleted
        {
            // Another incarnation was deleted; what is cached may be newer: ask the API server.
            return Observed::Refetch;
        }
        entry.fetched = Some(Fetched {
            data: None,
            resource_version: None,
            uid: None,
        });
        Observed::Current
    }

    /// Drops a ConfigMap's data: it is out of date and cannot be refreshed now.
    pub fn invalidate(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.get_mut(&key) {
            entry.fetched = None;
            entry.seq += 1;
            if entry.in_flight == 0 {
                inner.entries.remove(&key);
            }
        }
    }

    /// Marks a key as waiting for a refetch; false when it already is.
    fn mark_queued(&self, key: &Key) -> bool {
        self.lock().queued.insert(key.clone())
    }

    fn unqueue(&self, key: &Key) {
        self.lock().queued.remove(key);
    }

    /// Cached keys not in `seen`: a relist no longer shows them.
    fn tracked_not_in(&self, seen: &HashSet<Key>) -> Vec<Key> {
        self.lock()
            .entries
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect()
    }

    fn tracks(&self, key: &Key) -> bool {
        self.lock().entries.contains_key(key)
    }
}

impl ConfigMapSource for ConfigMapCache {
    fn get(&self, namespace: &str, name: &str) -> Lookup<ConfigMapData> {
        let mut inner = self.lock();
        let tick = inner.touch();
        match inner
            .entries
            .get_mut(&(namespace.to_string(), name.to_string()))
        {
            Some(Entry {
                fetched: Some(f),
                last_used,
                ..
            }) => {
                *last_used = tick;
                match &f.data {
                    Some(d) => Lookup::Found(Arc::clone(d)),
                    None => Lookup::Absent,
                }
            }
            _ => Lookup::Unknown,
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
    /// GETs one ConfigMap and caches the answer, trying again (while the caller waits) when a
    /// watch event overtook the GET; an error caches nothing.
    async fn fetch(&self, namespace: &str, name: &str) {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        for _ in 0..FETCH_ATTEMPTS {
            let ticket = self.cache.begin_fetch(namespace, name);
            match api.get_opt(name).await {
                Ok(found) => {
                    if ticket.finish(found.as_ref()) {
                        break;
                    }
                }
                Err(e) => {
                    drop(ticket);
                    tracing::warn!(
                        namespace, name, error = %e,
                        "cannot fetch a referenced ConfigMap; its values stay unresolved"
                    );
                    break;
                }
            }
        }
        self.metrics
            .config_map_cache_entries
            .set(self.cache.len() as i64);
    }

    /// One refetch for the background workers: a failure drops the out-of-date entry.
    async fn refetch(&self, key: Key) {
        let (namespace, name) = key;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
        let ticket = self.cache.begin_fetch(&namespace, &name);
        match tokio::time::timeout(REFETCH_TIMEOUT, api.get_opt(&name)).await {
            Ok(Ok(found)) => {
                ticket.finish(found.as_ref());
            }
            Ok(Err(e)) => {
                tracing::warn!(namespace, name, error = %e, "cannot refresh a cached ConfigMap; dropped from the cache");
                ticket.failed();
            }
            Err(_) => {
                tracing::warn!(
                    namespace,
                    name,
                    "refreshing a cached ConfigMap timed out; dropped from the cache"
                );
                ticket.failed();
            }
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

impl Fetcher {
    /// [`Fetcher::fetch_missing`] over ConfigMaps of several namespaces, at most `concurrency`
    /// GETs at a time, all within `deadline` (what has not arrived by then stays unknown).
    pub async fn fetch_missing_of_many(
        &self,
        wanted: &[(String, String)],
        concurrency: usize,
        deadline: tokio::time::Instant,
    ) {
        use futures::StreamExt as _;
        // Collected first: a lazy iterator's closures in the stream's type keep the spawned
        // audit from being `Send` (rust-lang/rust#102211).
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(namespace, name)| !self.cache.contains(namespace, name))
            .map(|(namespace, name)| self.fetch(namespace, name))
            .collect();
        let all = futures::stream::iter(missing)
            .buffer_unordered(concurrency.max(1))
            .for_each(|_| async {});
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            tracing::debug!(
                config_maps = wanted.len(),
                "the audit's ConfigMap fetches hit their deadline"
            );
        }
    }
}

/// Pods asked for in one page when listing the readers of a ConfigMap.
const READERS_PAGE: u32 = 500;
/// Readers decided for one change, at most (each is decided twice): beyond, the change is
/// unresolved rather than a review that holds a namespace's Pods and takes seconds.
pub const MAX_READERS: usize = 256;
/// Other ConfigMaps the readers reference fetched for one change, at most (as for one review).
const MAX_READER_CONFIG_MAPS: usize = 64;

impl Fetcher {
    /// The Pods of `namespace` that reference ConfigMap `name`, listed page by page until
    /// `deadline`, and the other ConfigMaps they reference fetched into the cache (so that the
    /// engine judges them as they are, not as unresolved). Err: why they are not known.
    pub async fn readers(
        &self,
        namespace: &str,
        name: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<serde_json::Value>, String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut readers = Vec::new();
        let mut params = ListParams::default().limit(READERS_PAGE);
        loop {
            let page = match tokio::time::timeout_at(deadline, api.list(&params)).await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return Err(format!("listing Pods failed: {e}")),
                Err(_) => return Err("listing Pods did not finish in time".into()),
            };
            for pod in page.items {
                // A Pod in a terminal phase never starts its containers again, so it never
                // reads the new file.
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if matches!(phase, Some("Succeeded" | "Failed")) {
                    continue;
                }
                let pod = serde_json::to_value(pod)
                    .map_err(|e| format!("a listed Pod cannot be read: {e}"))?;
                let mut refs = std::collections::BTreeSet::new();
                crate::workload::config_map_refs(&pod, &mut refs);
                if refs.contains(name) {
                    if readers.len() == MAX_READERS {
                        return Err(format!(
                            "more than {MAX_READERS} Pods read it, more than hostguard decides for one change"
                        ));
                    }
                    readers.push(pod);
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        let mut others = std::collections::BTreeSet::new();
        for pod in &readers {
            crate::workload::config_map_refs(pod, &mut others);
        }
        others.remove(name);
        let others: Vec<String> = others.into_iter().take(MAX_READER_CONFIG_MAPS).collect();
        self.fetch_missing(namespace, &others, deadline).await;
        Ok(readers)
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

    fn config_map_readers(
        &self,
        namespace: String,
        name: String,
        deadline: tokio::time::Instant,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<serde_json::Value>, String>> + Send + 'static>>
    {
        let this = self.clone();
        Box::pin(async move { this.readers(&namespace, &name, deadline).await })
    }

    /// The ConfigMap fetcher knows no related kinds: nothing is fetched.
    fn related_objects(
        &self,
        _keys: Vec<crate::snapshot::RelatedKey>,
        _deadline: tokio::time::Instant,
    ) -> Pin<Box<dyn Future<Output = Vec<serde_json::Value>> + Send + 'static>> {
        Box::pin(async { Vec::new() })
    }
}

/// Hands refetches to the background workers without ever waiting.
struct Refetches {
    cache: Arc<ConfigMapCache>,
    queue: mpsc::Sender<Key>,
}

impl Refetches {
    fn schedule(&self, key: Key) {
        if !self.cache.mark_queued(&key) {
            return;
        }
        if let Err(e) = self.queue.try_send(key) {
            let key = match e {
                mpsc::error::TrySendError::Full(key) | mpsc::error::TrySendError::Closed(key) => {
                    key
                }
            };
            self.cache.unqueue(&key);
            tracing::debug!(namespace = %key.0, name = %key.1, "refetch queue full; dropping the entry instead");
            self.cache.invalidate(&key.0, &key.1);
        }
    }
}

/// Serves the refetch queue with at most [`REFETCH_WORKERS`] GETs at once, until `stop`.
async fn refetch_workers(
    fetcher: Fetcher,
    mut queue: mpsc::Receiver<Key>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(REFETCH_WORKERS));
    loop {
        let key = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            key = queue.recv() => match key {
                Some(key) => key,
                None => return,
            },
        };
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // Off the queue before the GET starts: an event during the GET queues it again.
        fetcher.cache.unqueue(&key);
        let fetcher = fetcher.clone();
        tokio::spawn(async move {
            fetcher.refetch(key).await;
            drop(slot);
        });
    }
}

/// Keeps the cached ConfigMaps fresh from a metadata-only watch of all ConfigMaps, until
/// `stop` turns true.
pub async fn keep_fresh(fetcher: Fetcher, stop: watch::Receiver<bool>) {
    let api: Api<PartialObjectMeta<ConfigMap>> = Api::all(fetcher.client.clone());
    let stream = watcher::watcher(api, super::watch::list_config()).default_backoff();
    apply_events(fetcher, stream, stop).await
}

/// The watch loop of [`keep_fresh`], over any stream of watch events.
pub async fn apply_events<S>(fetcher: Fetcher, stream: S, stop: watch::Receiver<bool>)
where
    S: futures::Stream<Item = Result<Event<PartialObjectMeta<ConfigMap>>, watcher::Error>>,
{
    let (tx, rx) = mpsc::channel(REFETCH_QUEUE);
    let workers = tokio::spawn(refetch_workers(fetcher.clone(), rx, stop.clone()));
    let refetches = Refetches {
        cache: Arc::clone(&fetcher.cache),
        queue: tx,
    };
    let label = ResourceLabel {
        resource: "configmaps",
    };
    let mut seen: HashSet<Key> = HashSet::new();
    let mut listed_once = false;
    let metrics = Arc::clone(&fetcher.metrics);
    let meanwhile = "cached ConfigMaps keep serving";
    super::watch::for_each_event("configmaps", stream, stop, &metrics, meanwhile, |event| {
        match event {
            Event::Init => {
                if listed_once {
                    fetcher.metrics.watch_restarts.get_or_create(&label).inc();
                }
                seen.clear();
            }
            Event::InitApply(meta) | Event::Apply(meta) => {
                let key = key_of(&meta);
                if fetcher.cache.tracks(&key) {
                    seen.insert(key.clone());
                }
                let rv = meta.metadata.resource_version.as_deref();
                if fetcher.cache.observe(&key.0, &key.1, rv) == Observed::Refetch {
                    refetches.schedule(key);
                }
            }
            Event::Delete(meta) => {
                let key = key_of(&meta);
                let uid = meta.metadata.uid.as_deref();
                if fetcher.cache.observe_deleted(&key.0, &key.1, uid) == Observed::Refetch {
                    refetches.schedule(key);
                }
            }
            Event::InitDone => {
                listed_once = true;
                // The list may predate what a fetch cached meanwhile: ask, do not assume.
                for key in fetcher.cache.tracked_not_in(&seen) {
                    if fetcher.cache.observe(&key.0, &key.1, None) == Observed::Refetch {
                        refetches.schedule(key);
                    }
                }
                seen.clear();
            }
        }
    })
    .await;
    drop(refetches);
    workers.abort();
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

    fn cm(ns: &str, name: &str, rv: &str, uid: &str, data: &[(&str, &str)]) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c.metadata.resource_version = Some(rv.into());
        c.metadata.uid = Some(uid.into());
        c.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        c
    }

    fn value(cache: &ConfigMapCache, name: &str) -> Option<String> {
        match cache.get("a", name) {
            Lookup::Found(d) => d.get("K").map(str::to_string),
            _ => None,
        }
    }

    #[test]
    fn found_absent_and_unknown() {
        let cache = ConfigMapCache::new(8);
        cache.insert("a", "x", Some(&cm("a", "x", "1", "u1", &[("K", "v")])));
        cache.insert("a", "gone", None);
        assert_eq!(value(&cache, "x").as_deref(), Some("v"));
        assert_eq!(cache.get("a", "gone"), Lookup::Absent);
        assert_eq!(cache.get("a", "never"), Lookup::Unknown);
        assert_eq!(
            cache.observe_deleted("a", "x", Some("u1")),
            Observed::Current
        );
        assert_eq!(cache.get("a", "x"), Lookup::Absent);
        // Untracked names stay untracked.
        assert_eq!(
            cache.observe_deleted("a", "never", Some("u9")),
            Observed::Current
        );
        assert_eq!(cache.get("a", "never"), Lookup::Unknown);
    }

    #[test]
    fn the_least_recently_used_entry_is_evicted_at_capacity() {
        let cache = ConfigMapCache::new(2);
        cache.insert("a", "1", Some(&cm("a", "1", "1", "u1", &[])));
        cache.insert("a", "2", Some(&cm("a", "2", "1", "u2", &[])));
        // Touch 1, so 2 is the oldest.
        let _ = cache.get("a", "1");
        cache.insert("a", "3", Some(&cm("a", "3", "1", "u3", &[])));
        assert_eq!(cache.len(), 2);
        assert!(cache.contains("a", "1"));
        assert!(!cache.contains("a", "2"));
        assert!(cache.contains("a", "3"));
    }

    #[test]
    fn a_watch_event_with_another_version_asks_for_a_refetch() {
        let cache = ConfigMapCache::new(4);
        cache.insert("a", "x", Some(&cm("a", "x", "7", "u1", &[])));
        assert_eq!(cache.observe("a", "x", Some("7")), Observed::Current);
        // Versions are compared for equality only: "10" after "9" is just "another".
        assert_eq!(cache.observe("a", "x", Some("8")), Observed::Refetch);
        assert_eq!(cache.observe("a", "other", Some("8")), Observed::Current);
        cache.insert("a", "missing", None);
        assert_eq!(
            cache.observe("a", "missing", Some("1")),
            Observed::Refetch,
            "a created ConfigMap is fetched"
        );
    }

    #[test]
    fn a_fetch_overtaken_by_a_watch_event_is_dropped() {
        let cache = ConfigMapCache::new(4);
        cache.insert("a", "x", Some(&cm("a", "x", "1", "u1", &[("K", "old")])));
        let slow = cache.begin_fetch("a", "x");
        // While the GET is out, the watch reports a change: the GET may have read before it.
        assert_eq!(cache.observe("a", "x", Some("2")), Observed::Refetch);
        assert!(!slow.finish(Some(&cm("a", "x", "1", "u1", &[("K", "old")]))));
        // The refetch the event asked for starts after it and lands.
        let refetch = cache.begin_fetch("a", "x");
        assert!(refetch.finish(Some(&cm("a", "x", "2", "u1", &[("K", "new")]))));
        assert_eq!(value(&cache, "x").as_deref(), Some("new"));
    }

    #[test]
    fn an_older_get_that_finishes_last_does_not_overwrite_a_newer_one() {
        let cache = ConfigMapCache::new(4);
        let first = cache.begin_fetch("a", "x");
        let second = cache.begin_fetch("a", "x");
        assert!(second.finish(Some(&cm("a", "x", "6", "u1", &[("K", "six")]))));
        assert!(!first.finish(Some(&cm("a", "x", "5", "u1", &[("K", "five")]))));
        assert_eq!(value(&cache, "x").as_deref(), Some("six"));
    }

    #[test]
    fn a_first_fetch_overtaken_by_an_event_leaves_nothing_cached() {
        let cache = ConfigMapCache::new(4);
        let first = cache.begin_fetch("a", "new");
        assert_eq!(cache.observe("a", "new", Some("3")), Observed::Refetch);
        assert!(!first.finish(Some(&cm("a", "new", "2", "u1", &[("K", "v2")]))));
        assert_eq!(cache.get("a", "new"), Lookup::Unknown);
        assert!(!cache.contains("a", "new"));
    }

    #[test]
    fn a_late_delete_of_an_older_incarnation_keeps_the_new_one() {
        let cache = ConfigMapCache::new(4);
        // Deleted (uid u1) and created again (u2); the GET saw u2 before the watch's DELETE.
        cache.insert("a", "x", Some(&cm("a", "x", "6", "u2", &[("K", "again")])));
        assert_eq!(
            cache.observe_deleted("a", "x", Some("u1")),
            Observed::Refetch
        );
        assert_eq!(value(&cache, "x").as_deref(), Some("again"));
        // The delete of the cached incarnation itself is applied at once.
        assert_eq!(
            cache.observe_deleted("a", "x", Some("u2")),
            Observed::Current
        );
        assert_eq!(cache.get("a", "x"), Lookup::Absent);
    }

    #[test]
    fn an_abandoned_or_failed_fetch_leaves_no_stale_data() {
        let cache = ConfigMapCache::new(4);
        drop(cache.begin_fetch("a", "x"));
        assert_eq!(cache.get("a", "x"), Lookup::Unknown);
        cache.insert("a", "y", Some(&cm("a", "y", "1", "u1", &[("K", "v1")])));
        assert_eq!(cache.observe("a", "y", Some("2")), Observed::Refetch);
        cache.begin_fetch("a", "y").failed();
        assert_eq!(
            cache.get("a", "y"),
            Lookup::Unknown,
            "known to be stale and not refreshed: dropped"
        );
    }
}
