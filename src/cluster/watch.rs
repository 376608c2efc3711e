//! One reflector: a kube-runtime watch stream (list, then watch, re-listing with backoff after
//! errors) applied to a store, with sync tracking, metrics, and a wake-up for the publisher
//! when something the engine reads has changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, store::Writer};
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, watch};

use crate::metrics::{Metrics, ResourceLabel};

/// What every reflector shares.
#[derive(Clone)]
pub struct Shared {
    pub notify: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub stop: watch::Receiver<bool>,
}

/// Drives a watch stream until `stop` turns true or the stream ends, handing every event to
/// `on_event`. An error is counted (`hostguard_watch_errors_total{resource}`) and logged, and
/// the stream goes on: kube-runtime's watcher re-lists with backoff by itself. `meanwhile` says
/// in the log what keeps working while it does.
pub async fn for_each_event<K, S>(
    resource: &'static str,
    stream: S,
    mut stop: watch::Receiver<bool>,
    metrics: &Metrics,
    meanwhile: &'static str,
    mut on_event: impl FnMut(Event<K>),
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    futures::pin_mut!(stream);
    let label = ResourceLabel { resource };
    loop {
        let item = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            item = stream.next() => item,
        };
        match item {
            None => break,
            Some(Ok(event)) => on_event(event),
            Some(Err(e)) => {
                metrics.watch_errors.get_or_create(&label).inc();
                tracing::warn!(resource, error = %e, meanwhile, "watch error; retrying with backoff");
            }
        }
    }
}

/// Runs one reflector until `stop`. `synced` turns true at the end of the first complete list;
/// `fingerprint` says what of an object the engine reads, so that an update that leaves it
/// unchanged (a status write, a node heartbeat) does not rebuild the snapshot.
pub async fn reflect<K, S>(
    resource: &'static str,
    stream: S,
    mut writer: Writer<K>,
    fingerprint: fn(&K) -> u64,
    synced: Arc<AtomicBool>,
    shared: Shared,
) where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let reader = writer.as_reader();
    let label = ResourceLabel { resource };
    let metrics = Arc::clone(&shared.metrics);
    let meanwhile = "the last snapshot keeps serving";
    for_each_event(
        resource,
        stream,
        shared.stop.clone(),
        &metrics,
        meanwhile,
        |event| {
            let changed = match &event {
                Event::Apply(obj) => {
                    let before = reader
                        .get(&ObjectRef::from_obj(obj))
                        .map(|o| fingerprint(&o));
                    before != Some(fingerprint(obj))
                }
                Event::Delete(_) => true,
                Event::Init => {
                    if synced.load(Ordering::SeqCst) {
                        shared.metrics.watch_restarts.get_or_create(&label).inc();
                        tracing::info!(resource, "re-listing after a watch restart");
                    }
                    false
                }
                Event::InitApply(_) => false,
                Event::InitDone => true,
            };
            writer.apply_watcher_event(&event);
            if matches!(event, Event::InitDone) && !synced.swap(true, Ordering::SeqCst) {
                tracing::info!(resource, objects = reader.len(), "initial list synced");
            }
            if changed {
                shared.notify.notify_one();
            }
        },
    )
    .await
}
