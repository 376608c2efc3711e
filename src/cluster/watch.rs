//! One reflector: a kube-runtime watch stream (list, then watch, re-listing with backoff after
//! errors) applied to a store (whole objects, or a [projection](super::projection) of them),
//! with sync tracking, metrics, and a wake-up for the publisher when something the engine reads
//! has changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, watch};

use super::projection::{ApplyEvent, ObjectKey, ProjectedWriter};
use crate::metrics::{Metrics, ResourceLabel};

/// Objects per page of a watch's list (kube-runtime's default is 500, client-go's too).
///
/// The four watches list at once when hostguard starts, and a page is held three times while
/// it is read: the body, serde's parse, the typed objects. 500 Nodes with a kubelet's status
/// (images, conditions) are several MB of that; the peak RSS of a start in a cluster of 5,000
/// Nodes and 5,000 Namespaces is set by those pages, not by the stores (`scripts/bench_cluster.py`).
/// 100 costs the API server 50 list requests for those 5,000 Nodes instead of 10.
pub const LIST_PAGE_SIZE: u32 = 100;

/// How every watch of hostguard lists: [`LIST_PAGE_SIZE`] objects a page.
pub fn list_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE_SIZE)
}

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

/// A store one reflector keeps (see [`reflect`]).
pub trait Sink<K>: ApplyEvent<K> {
    /// Whether `object` would change what the engine reads of the stored version (true when
    /// none is stored).
    fn changes(&self, object: &K) -> bool;
    /// How many objects the store holds (for the log).
    fn objects(&self) -> usize;

    /// Applies `event`. For an `Apply`, whether it changed what the engine reads of the stored
    /// version ([`Sink::changes`], asked before the store changes); false for any other event.
    /// A store that can tell while it stores (a projection) overrides this, so that each object
    /// is projected once.
    fn apply_event(&mut self, event: &Event<K>) -> bool {
        let changed = matches!(event, Event::Apply(object) if self.changes(object));
        self.apply_watcher_event(event);
        changed
    }
}

/// A kube-runtime store of whole objects, with what the engine reads of one as a fingerprint:
/// an update that leaves it unchanged (a status write) does not rebuild the snapshot.
pub struct Whole<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    writer: Writer<K>,
    reader: Store<K>,
    fingerprint: fn(&K) -> u64,
}

impl<K> Whole<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    pub fn new(writer: Writer<K>, fingerprint: fn(&K) -> u64) -> Self {
        Whole {
            reader: writer.as_reader(),
            writer,
            fingerprint,
        }
    }
}

impl<K> ApplyEvent<K> for Whole<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn apply_watcher_event(&mut self, event: &Event<K>) {
        self.writer.apply_watcher_event(event);
    }
}

impl<K> Sink<K> for Whole<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    fn changes(&self, object: &K) -> bool {
        let before = self
            .reader
            .get(&ObjectRef::from_obj(object))
            .map(|o| (self.fingerprint)(&o));
        before != Some((self.fingerprint)(object))
    }

    fn objects(&self) -> usize {
        self.reader.len()
    }
}

impl<K, T, Key> Sink<K> for ProjectedWriter<K, T, Key>
where
    Key: ObjectKey<K>,
{
    fn changes(&self, object: &K) -> bool {
        self.differs(object)
    }

    fn objects(&self) -> usize {
        self.store().len()
    }

    fn apply_event(&mut self, event: &Event<K>) -> bool {
        match event {
            Event::Apply(object) => self.apply_object(object),
            other => {
                self.apply_watcher_event(other);
                false
            }
        }
    }
}

/// Runs one reflector until `stop`. `synced` turns true at the end of the first complete list;
/// an event that does not change what the engine reads ([`Sink::changes`]: a status write, a
/// node heartbeat) does not wake the publisher.
pub async fn reflect<K, S>(
    resource: &'static str,
    stream: S,
    mut sink: impl Sink<K>,
    synced: Arc<AtomicBool>,
    shared: Shared,
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
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
            let applied = sink.apply_event(&event);
            let changed = match &event {
                Event::Apply(_) => applied,
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
            if matches!(event, Event::InitDone) && !synced.swap(true, Ordering::SeqCst) {
                tracing::info!(resource, objects = sink.objects(), "initial list synced");
            }
            if changed {
                shared.notify.notify_one();
            }
        },
    )
    .await
}
