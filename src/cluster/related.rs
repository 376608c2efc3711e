//! The objects adapters follow references to, watched when the cluster serves them: Envoy
//! Gateway `Backend`s, Gateway API `BackendTLSPolicy`s and Envoy AI Gateway `AIServiceBackend`s
//! (`detect::adapters::related_kinds`). With them in the snapshot the webhook answers an
//! `AIServiceBackend`'s or `AIGatewayRoute`'s reference from what exists, as the audit does.
//!
//! Which of the kinds are served is asked once at start-up (discovery, retried with backoff
//! until it answers); only those are watched, and a kind that is not served is not an error. A
//! CRD installed later is watched after a restart (the audit, which asks before every run,
//! covers it meanwhile). Readiness does not wait for these watches: until discovery has answered
//! and every watch has listed once, lookups are not authoritative, so a reference is unresolved
//! (the policy's `unresolved` disposition, Deny by default), never assumed to exist.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, TypeMeta};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher::Config};
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

    fn add(&self, store: Store<DynamicObject>, synced: Arc<AtomicBool>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.kinds.push(Watched { store, synced });
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

/// Discovers the served related kinds (retrying until it answers) and watches each into
/// `stores` until `shared.stop`.
pub async fn run(client: Client, stores: RelatedStores, shared: Shared) {
    let mut stop = shared.stop.clone();
    let mut backoff = Duration::from_secs(1);
    let served = loop {
        let asked = tokio::time::timeout(DISCOVERY_TIMEOUT, discovery::discover(&client));
        let answer = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            answer = asked => answer,
        };
        let failure = match answer {
            Ok(Ok(served)) => break served,
            // Only a server without the /apis group list answers 404 there: nothing to watch.
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => {
                break discovery::Served::default();
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {DISCOVERY_TIMEOUT:?}"),
        };
        tracing::warn!(error = %failure, retry_in = ?backoff, "cannot ask discovery which Envoy Gateway kinds are served; their references stay unresolved meanwhile");
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };
    let kinds = served.looked_up();
    let mut tasks = Vec::new();
    for resource in &kinds {
        let writer = Writer::new(resource.clone());
        let synced = Arc::new(AtomicBool::new(false));
        stores.add(writer.as_reader(), Arc::clone(&synced));
        tasks.push(tokio::spawn(watch_kind(
            client.clone(),
            resource.clone(),
            writer,
            synced,
            shared.clone(),
        )));
    }
    stores.set_discovered();
    tracing::info!(
        kinds = ?kinds.iter().map(|r| format!("{} {}", r.api_version, r.kind)).collect::<Vec<_>>(),
        "watching the objects AI-tool adapters look up"
    );
    // A build now sees that discovery answered (with nothing to watch, lookups are
    // authoritative at once).
    shared.notify.notify_one();
    for task in tasks {
        let _ = task.await;
    }
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
    let stream = watcher::watcher(api, Config::default())
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
