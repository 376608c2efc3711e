//! Namespaces fetched on demand: a review for a namespace that the namespace watch has not
//! delivered yet (created in the same GitOps sync as its workloads, or watch lag) would otherwise
//! be decided without its labels, and a `namespaceSelector`-scoped policy would not apply.
//!
//! Before a decision the webhook asks [`NamespaceFetcher::fetch_missing`] for the review's
//! namespace: when neither the reflector store nor this cache holds it, it is read with a GET
//! of its metadata, bounded by the review's deadline, like referenced ConfigMaps
//! (`config_maps`). What the GET says is cached (labels, or "does not exist"); a GET that fails
//! or misses the deadline caches nothing, and the engine then treats the namespace's selectors
//! as matching (the offline rule). The reflector store always wins over this cache: once the
//! watch delivers the namespace, its labels are the ones used, and the entry here is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};

use super::projection::ProjectedStore;
use crate::snapshot::{Labels, Lookup, NamespaceSource, StoredLabels};

/// Namespaces the cache keeps at most; the oldest entry goes first.
pub const NAMESPACE_CACHE_SIZE: usize = 1024;

#[derive(Debug, Default)]
struct Inner {
    /// None: the API server said it does not exist.
    entries: HashMap<String, (Option<Labels>, u64)>,
    tick: u64,
}

/// The namespaces fetched on demand. Lookups never do I/O.
#[derive(Debug, Default)]
pub struct NamespaceCache {
    inner: Mutex<Inner>,
}

impl NamespaceCache {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is one insert or remove under the lock: a panic elsewhere leaves it whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores what a GET said (None: not found), evicting the oldest entry when full.
    pub fn insert(&self, name: &str, labels: Option<Labels>) {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if !inner.entries.contains_key(name) && inner.entries.len() >= NAMESPACE_CACHE_SIZE {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(name.to_string(), (labels, tick));
    }

    /// Forgets a namespace (the watch now holds it).
    pub fn forget(&self, name: &str) {
        self.lock().entries.remove(name);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lock().entries.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NamespaceSource for NamespaceCache {
    fn labels(&self, name: &str) -> Lookup<Labels> {
        match self.lock().entries.get(name) {
            Some((Some(labels), _)) => Lookup::Found(labels.clone()),
            Some((None, _)) => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }
}

/// Fetches a review's namespace when the watch has not delivered it.
#[derive(Clone)]
pub struct NamespaceFetcher {
    pub client: Client,
    /// The namespace watch's store: what it holds is never fetched.
    pub store: ProjectedStore<StoredLabels>,
    pub cache: Arc<NamespaceCache>,
}

impl NamespaceFetcher {
    /// Makes sure `name`'s labels are known, giving up at `deadline`.
    pub async fn fetch_missing(&self, name: &str, deadline: tokio::time::Instant) {
        if name.is_empty() {
            return;
        }
        if self.store.get(name).is_some() {
            self.cache.forget(name);
            return;
        }
        if self.cache.contains(name) {
            return;
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        match tokio::time::timeout_at(deadline, api.get_metadata_opt(name)).await {
            Ok(Ok(found)) => self
                .cache
                .insert(name, found.map(|ns| ns.metadata.labels.unwrap_or_default())),
            Ok(Err(e)) => tracing::warn!(
                namespace = name, error = %e,
                "cannot read a namespace the watch has not delivered; its selectors are treated as matching"
            ),
            Err(_) => tracing::debug!(
                namespace = name,
                "namespace fetch hit the review's deadline; its selectors are treated as matching"
            ),
        }
    }
}
