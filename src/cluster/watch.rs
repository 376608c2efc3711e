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

/// Runs one reflector until `stop`. `synced` turns true at the end of the first complete list;
/// `fingerprint` says what of an object the engine reads, so that an update that leaves it
/// unchanged (a status write, a node heartbeat) does not rebuild the snapshot.
pub async fn reflect<K, S>(
    resource: &'static str,
    stream: S,
    mut writer: Writer<K>,
    fingerprint: fn(&K) -> u64,
    synced: Arc<AtomicBool>,
    mut shared: Shared,
) where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    futures::pin_mut!(stream);
    let reader = writer.as_reader();
    let label = ResourceLabel { resource };
    loop {
        let item = tokio::select! {
            _ = shared.stop.wait_for(|s| *s) => break,
            item = stream.next() => item,
        };
        let Some(item) = item else { break };
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                shared.metrics.watch_errors.get_or_create(&label).inc();
                tracing::warn!(
                    resource,
                    error = %e,
                    "watch error; retrying with backoff, the last snapshot keeps serving"
                );
                continue;
            }
        };
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
    }
}
