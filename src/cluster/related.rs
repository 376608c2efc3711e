//! The objects adapters follow references to, watched when the cluster serves them: Envoy
//! Gateway `Backend`s, Gateway API `BackendTLSPolicy`s and Envoy AI Gateway `AIServiceBackend`s
//! (`detect::adapters::related_kinds`). With them in the snapshot the webhook answers an
//! `AIServiceBackend`'s or `AIGatewayRoute`'s reference from what exists, as the audit does.
//!
//! Which of the kinds are served is asked at start-up (discovery, retried with backoff until it
//! answers) and again every [`REDISCOVERY_INTERVAL`]; only those are watched, and a kind that is
//! not served is not an error. A CRD installed later is watched from the next discovery on (the
//! audit asks before every run); the kind of one removed is forgotten with its objects. Readiness does not wait for these watches: until discovery has answered
//! and every watch has listed once, lookups are not authoritative, so a reference is unresolved
//! (the policy's `unresolved` disposition, Deny by default), never assumed to exist.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, TypeMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

use super::discovery;
use super::watch::{Shared, for_each_event};
use crate::snapshot::Snapshot;

/// The stores of the related kinds the cluster serves, shared by the watches and the builds.
#[derive(Clone, Default)]
pub struct RelatedStores {
    state: Arc<RwLock<State>>,
}

#[derive(Default)]
struct State {
    /// Discovery has answered and every served kind has a watch.
    discovered: bool,
    kinds: Vec<Watched>,
}

struct Watched {
    group: String,
    kind: String,
    resource: ApiResource,
    store: Store<DynamicObject>,
    synced: Arc<AtomicBool>,
}

impl RelatedStores {
    /// Adds every watched object to `snapshot`, and makes its lookups authoritative once
    /// discovery has answered and every watch has listed once.
    pub fn fill(&self, snapshot: &mut Snapshot) {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        for kind in &state.kinds {
            for object in kind.store.state() {
                if let Ok(value) = serde_json::to_value(object.as_ref()) {
                    snapshot.insert_related(&value, "default");
                }
            }
        }
        snapshot.set_related_authoritative(self.ready_locked(&state));
    }

    /// Whether the lookups are authoritative (see [`fill`](Self::fill)).
    pub fn ready(&self) -> bool {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        self.ready_locked(&state)
    }

    fn ready_locked(&self, state: &State) -> bool {
        state.discovered && state.kinds.iter().all(|k| k.synced.load(Ordering::SeqCst))
    }

    fn add(&self, resource: &ApiResource, store: Store<DynamicObject>, synced: Arc<AtomicBool>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.kinds.push(Watched {
            group: resource.group.clone(),
            kind: resource.kind.clone(),
            resource: resource.clone(),
            store,
            synced,
        });
    }

    /// The served resource of a watched kind (None: not served, or discovery has not answered).
    pub fn resource(&self, group: &str, kind: &str) -> Option<ApiResource> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .kinds
            .iter()
            .find(|w| w.group == group && w.kind == kind)
            .map(|w| w.resource.clone())
    }

    /// Forgets a kind that is no longer served, with its objects.
    fn remove(&self, group: &str, kind: &str) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state
            .kinds
            .retain(|w| !(w.group == group && w.kind == kind));
    }

    fn set_discovered(&self) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .discovered = true;
    }
}

/// How long one discovery attempt may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between two discovery attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How often discovery is asked again once it has answered, so that a CRD installed after
/// hostguard (Envoy Gateway after the admission controller, as platform teams roll out) is
/// watched within this long, without a restart.
pub const REDISCOVERY_INTERVAL: Duration = Duration::from_secs(60);

/// Discovers the served related kinds (retrying until it answers) and watches each into
/// `stores` until `shared.stop`; asks again every [`REDISCOVERY_INTERVAL`] and watches the
/// kinds that have become served since.
pub async fn run(client: Client, stores: RelatedStores, shared: Shared) {
    let mut stop = shared.stop.clone();
    let mut backoff = Duration::from_secs(1);
    let served = loop {
        match ask(&client, &mut stop).await {
            Asked::Stopped => return,
            Asked::Served(served) => break served,
            Asked::Failed(failure) => {
                tracing::warn!(error = %failure, retry_in = ?backoff, "cannot ask discovery which Envoy Gateway kinds are served; their references stay unresolved meanwhile");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut watched: Vec<WatchedKind> = Vec::new();
    start_watches(
        &client,
        &stores,
        &shared,
        served.looked_up(),
        &mut watched,
        &mut tasks,
    );
    stores.set_discovered();
    // A build now sees that discovery answered (with nothing to watch, lookups are
    // authoritative at once).
    shared.notify.notify_one();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(REDISCOVERY_INTERVAL) => {}
        }
        match ask(&client, &mut stop).await {
            Asked::Stopped => break,
            Asked::Served(served) => {
                let kinds = served.looked_up();
                let before = watched.len();
                // A kind no longer served (its CRD deleted): its objects went with it.
                watched.retain(|w| {
                    let served = kinds.iter().any(|r| r.group == w.group && r.kind == w.kind);
                    if !served {
                        w.task.abort();
                        stores.remove(&w.group, &w.kind);
                        tracing::info!(group = %w.group, kind = %w.kind, "no longer served; not watched any more");
                    }
                    served
                });
                let removed = watched.len() != before;
                let added =
                    start_watches(&client, &stores, &shared, kinds, &mut watched, &mut tasks);
                if added || removed {
                    // Not authoritative until the new watch has listed: a build must see it.
                    shared.notify.notify_one();
                }
            }
            // The kinds already watched stay watched; the next interval asks again.
            Asked::Failed(failure) => {
                tracing::debug!(error = %failure, "asking discovery again failed; trying at the next interval");
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// A kind being watched, and its watch's task.
struct WatchedKind {
    group: String,
    kind: String,
    task: tokio::task::AbortHandle,
}

enum Asked {
    Served(discovery::Served),
    Failed(String),
    Stopped,
}

/// One discovery attempt, bounded by [`DISCOVERY_TIMEOUT`].
async fn ask(client: &Client, stop: &mut tokio::sync::watch::Receiver<bool>) -> Asked {
    let asked = tokio::time::timeout(DISCOVERY_TIMEOUT, discovery::discover(client));
    let answer = tokio::select! {
        _ = stop.wait_for(|s| *s) => return Asked::Stopped,
        answer = asked => answer,
    };
    match answer {
        Ok(Ok(served)) => Asked::Served(served),
        // Only a server without the /apis group list answers 404 there: nothing to watch.
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => {
            Asked::Served(discovery::Served::default())
        }
        Ok(Err(e)) => Asked::Failed(e.to_string()),
        Err(_) => Asked::Failed(format!("no answer within {DISCOVERY_TIMEOUT:?}")),
    }
}

/// Starts a watch for each of `kinds` not yet `watched` (by group and kind: a kind whose
/// preferred version changes keeps its watch, the API server converts). Whether any started.
fn start_watches(
    client: &Client,
    stores: &RelatedStores,
    shared: &Shared,
    kinds: Vec<ApiResource>,
    watched: &mut Vec<WatchedKind>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> bool {
    let new: Vec<ApiResource> = kinds
        .into_iter()
        .filter(|r| {
            !watched
                .iter()
                .any(|w| w.group == r.group && w.kind == r.kind)
        })
        .collect();
    for resource in &new {
        let writer = Writer::new(resource.clone());
        let synced = Arc::new(AtomicBool::new(false));
        stores.add(resource, writer.as_reader(), Arc::clone(&synced));
        let task = tasks.spawn(watch_kind(
            client.clone(),
            resource.clone(),
            writer,
            synced,
            shared.clone(),
        ));
        watched.push(WatchedKind {
            group: resource.group.clone(),
            kind: resource.kind.clone(),
            task,
        });
    }
    if !new.is_empty() {
        tracing::info!(
            kinds = ?new.iter().map(|r| format!("{} {}", r.api_version, r.kind)).collect::<Vec<_>>(),
            "watching the objects AI-tool adapters look up"
        );
    }
    !new.is_empty()
}

/// One related kind's watch: metadata without managedFields, the publisher woken when an
/// object's spec changes or an object comes or goes.
async fn watch_kind(
    client: Client,
    resource: ApiResource,
    mut writer: Writer<DynamicObject>,
    synced: Arc<AtomicBool>,
    shared: Shared,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    // A list's items carry no apiVersion and kind; the snapshot keys objects by them.
    let types = TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    };
    let stream = watcher::watcher(api, super::watch::list_config())
        .default_backoff()
        .modify(move |o: &mut DynamicObject| {
            o.metadata.managed_fields = None;
            o.types = Some(types.clone());
        });
    let reader = writer.as_reader();
    // The metric label of this kind: its plural, which the kind tables hold as 'static.
    let label = discovery::wanted()
        .into_iter()
        .find(|(k, _)| k.group == resource.group && k.kind == resource.kind)
        .map_or("related", |(k, _)| k.plural);
    let metrics = Arc::clone(&shared.metrics);
    for_each_event(
        label,
        stream,
        shared.stop.clone(),
        &metrics,
        "their references are answered from the last list",
        |event: Event<DynamicObject>| {
            let changed = match &event {
                Event::Apply(obj) => {
                    let key = ObjectRef::from_obj_with(obj, resource.clone());
                    reader.get(&key).map(|o| o.data.get("spec").cloned())
                        != Some(obj.data.get("spec").cloned())
                }
                Event::Delete(_) | Event::InitDone => true,
                Event::Init | Event::InitApply(_) => false,
            };
            writer.apply_watcher_event(&event);
            if matches!(event, Event::InitDone) && !synced.swap(true, Ordering::SeqCst) {
                tracing::info!(
                    resource = label,
                    objects = reader.len(),
                    "initial list synced"
                );
            }
            if changed {
                shared.notify.notify_one();
            }
        },
    )
    .await;
}

/// GETs the related objects of `keys` (kinds the cluster serves only: one not served cannot
/// exist), concurrently, until `deadline`; what has not arrived by then, or failed, is left out
/// (the engine then finds it absent from the watches, or unknown, and fails closed). For the
/// webhook: an object applied a moment before the one that names it may not have come through
/// its watch yet.
pub async fn fetch(
    client: &Client,
    stores: &RelatedStores,
    keys: &[crate::snapshot::RelatedKey],
    deadline: tokio::time::Instant,
) -> Vec<serde_json::Value> {
    let gets = keys.iter().filter_map(|(group, kind, namespace, name)| {
        let resource = stores.resource(group, kind)?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let types = TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        };
        Some(async move {
            match tokio::time::timeout_at(deadline, api.get_opt(name)).await {
                Ok(Ok(Some(mut object))) => {
                    object.metadata.managed_fields = None;
                    object.types = Some(types);
                    serde_json::to_value(object).ok()
                }
                Ok(Ok(None)) => None,
                Ok(Err(e)) => {
                    tracing::warn!(%namespace, %name, kind = %resource.kind, error = %e, "cannot fetch a referenced object; it stays unresolved");
                    None
                }
                Err(_) => None,
            }
        })
    });
    futures::future::join_all(gets)
        .await
        .into_iter()
        .flatten()
        .collect()
}
