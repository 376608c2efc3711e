//! Stores that keep only what the engine reads of each object of a watch: a Node's provider and
//! schedulability, a Namespace's labels.
//!
//! kube-runtime's reflector store keeps every object whole, as its typed struct: a k8s-openapi
//! `Node` is 1.5 KiB before any of its strings, however much of it was trimmed, and a store
//! also keeps each object's reference (name, uid, resourceVersion) as its key. A cluster of
//! 5,000 Nodes and 5,000 Namespaces held about 20 MB that way (heaptrack,
//! `scripts/bench_cluster.py`).
//! A [`ProjectedWriter`] turns each object into its projection as the event arrives and keeps
//! that, by name; the object itself is dropped at once.
//!
//! It applies the watcher's events as kube-runtime's `Writer` does: a re-list (`Init`, then
//! `InitApply` for each object, then `InitDone`) builds a new map aside and replaces the old one
//! whole when it is done, so that readers never see a half-listed cluster, and objects gone
//! while the watch was down disappear; `Apply` and `Delete` change the current map at once.
//! Only cluster-scoped kinds are projected (the key is the name alone), which the type checks.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::ClusterResourceScope;
use kube::Resource;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

/// What a reflector applies its events to.
pub trait ApplyEvent<K> {
    fn apply_watcher_event(&mut self, event: &Event<K>);
}

impl<K> ApplyEvent<K> for Writer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn apply_watcher_event(&mut self, event: &Event<K>) {
        Writer::apply_watcher_event(self, event);
    }
}

/// The read side: each object's projection by name. Cheap to clone; every clone sees the
/// writer's changes.
#[derive(Debug)]
pub struct ProjectedStore<T> {
    current: Arc<RwLock<HashMap<String, Arc<T>>>>,
}

impl<T> Clone for ProjectedStore<T> {
    fn clone(&self) -> Self {
        ProjectedStore {
            current: Arc::clone(&self.current),
        }
    }
}

impl<T> ProjectedStore<T> {
    /// The projection of the object named `name`, if the store holds it.
    pub fn get(&self, name: &str) -> Option<Arc<T>> {
        self.read().get(name).cloned()
    }

    /// Every object's name and projection, in no particular order.
    pub fn state(&self) -> Vec<(String, Arc<T>)> {
        self.read()
            .iter()
            .map(|(name, t)| (name.clone(), Arc::clone(t)))
            .collect()
    }

    /// Every object's projection, without the names (a Node's name is in its projection).
    pub fn values(&self) -> Vec<Arc<T>> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<T>>> {
        // A panic while the lock was held cannot leave the map half-written: every write is
        // one insert, remove or swap.
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The write side, fed by one watch: projects each object with `project` and keeps the result.
pub struct ProjectedWriter<K, T> {
    store: ProjectedStore<T>,
    /// The map a re-list is building, between `Init` and `InitDone`.
    relisting: Option<HashMap<String, Arc<T>>>,
    project: fn(&K) -> T,
}

impl<K, T> ProjectedWriter<K, T>
where
    K: Resource<Scope = ClusterResourceScope>,
{
    pub fn new(project: fn(&K) -> T) -> Self {
        ProjectedWriter {
            store: ProjectedStore {
                current: Arc::default(),
            },
            relisting: None,
            project,
        }
    }

    pub fn as_reader(&self) -> ProjectedStore<T> {
        self.store.clone()
    }

    /// The store this writer fills, borrowed.
    pub fn store(&self) -> &ProjectedStore<T> {
        &self.store
    }

    /// Whether `object`'s projection differs from the one stored under its name (or none is).
    pub fn differs(&self, object: &K) -> bool
    where
        T: PartialEq,
    {
        let name = object.meta().name.as_deref().unwrap_or_default();
        self.store
            .get(name)
            .is_none_or(|stored| *stored != (self.project)(object))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<T>>> {
        self.store
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, T> ApplyEvent<K> for ProjectedWriter<K, T>
where
    K: Resource<Scope = ClusterResourceScope>,
{
    fn apply_watcher_event(&mut self, event: &Event<K>) {
        let name = |k: &K| k.meta().name.clone().unwrap_or_default();
        match event {
            Event::Apply(k) => {
                let projected = Arc::new((self.project)(k));
                self.write().insert(name(k), projected);
            }
            Event::Delete(k) => {
                self.write().remove(&name(k));
            }
            Event::Init => self.relisting = Some(HashMap::new()),
            Event::InitApply(k) => {
                let projected = Arc::new((self.project)(k));
                self.relisting
                    .get_or_insert_with(HashMap::new)
                    .insert(name(k), projected);
            }
            Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                *self.write() = listed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ns(name: &str, team: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("team".to_string(), team.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn team(ns: &Namespace) -> String {
        ns.metadata.labels.as_ref().unwrap()["team"].clone()
    }

    fn sorted<T: Clone>(store: &ProjectedStore<T>) -> Vec<(String, T)> {
        let mut v: Vec<(String, T)> = store
            .state()
            .into_iter()
            .map(|(n, t)| (n, (*t).clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn a_relist_replaces_the_store_whole_when_it_is_done() {
        let mut w = ProjectedWriter::new(team);
        let store = w.as_reader();
        w.apply_watcher_event(&Event::Init);
        w.apply_watcher_event(&Event::InitApply(ns("a", "red")));
        w.apply_watcher_event(&Event::InitApply(ns("b", "blue")));
        assert!(store.is_empty(), "nothing is visible before InitDone");
        w.apply_watcher_event(&Event::InitDone);
        assert_eq!(
            sorted(&store),
            [("a".into(), "red".into()), ("b".into(), "blue".into())]
        );

        // A watch restart: b is gone from the new list, c is new; until InitDone, readers still
        // see the old list, and events applied meanwhile change it.
        w.apply_watcher_event(&Event::Init);
        w.apply_watcher_event(&Event::InitApply(ns("a", "green")));
        w.apply_watcher_event(&Event::InitApply(ns("c", "red")));
        assert_eq!(store.get("b").as_deref().map(String::as_str), Some("blue"));
        assert_eq!(store.get("a").as_deref().map(String::as_str), Some("red"));
        w.apply_watcher_event(&Event::InitDone);
        assert_eq!(
            sorted(&store),
            [("a".into(), "green".into()), ("c".into(), "red".into())]
        );
    }

    #[test]
    fn apply_and_delete_change_the_store_at_once() {
        let mut w = ProjectedWriter::new(team);
        let store = w.as_reader();
        w.apply_watcher_event(&Event::Apply(ns("a", "red")));
        assert_eq!(store.len(), 1);
        assert!(!w.differs(&ns("a", "red")));
        assert!(w.differs(&ns("a", "blue")));
        assert!(w.differs(&ns("b", "red")), "an object not stored differs");
        w.apply_watcher_event(&Event::Apply(ns("a", "blue")));
        assert_eq!(store.get("a").as_deref().map(String::as_str), Some("blue"));
        w.apply_watcher_event(&Event::Delete(ns("a", "blue")));
        assert!(store.get("a").is_none());
        assert!(store.is_empty());
    }
}
