//! Stores that keep only what the engine and the status writer read of each object of a watch:
//! a Node's provider and schedulability, a Namespace's labels, an AIWorkload's compiled
//! declaration and status.
//!
//! kube-runtime's reflector store keeps every object whole, as its typed struct: a k8s-openapi
//! `Node` is 1.5 KiB before any of its strings, however much of it was trimmed, and a store
//! also keeps each object's reference (name, uid, resourceVersion) as its key. A cluster of
//! 5,000 Nodes and 5,000 Namespaces held about 20 MB that way, and 10,000 AIWorkloads about
//! 15 MB more, besides the copy of their declarations in the snapshot (heaptrack,
//! `scripts/bench_cluster.py`).
//! A [`ProjectedWriter`] turns each object into its projection as the event arrives and keeps
//! that, by [key](ObjectKey); the object itself is dropped at once.
//!
//! It applies the watcher's events as kube-runtime's `Writer` does: a re-list (`Init`, then
//! `InitApply` for each object, then `InitDone`) builds a new map aside and replaces the old one
//! whole when it is done, so that readers never see a half-listed cluster, and objects gone
//! while the watch was down disappear; `Apply` and `Delete` change the current map at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
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

/// How a projected store keys the objects of kind `K`: by name for a cluster-scoped kind
/// (`String`), by namespace and name for a namespaced one ([`NamespacedName`]). The kind's
/// scope picks the key type, so that a namespaced kind cannot be keyed by its name alone.
pub trait ObjectKey<K>: Eq + Hash + Clone {
    fn of(object: &K) -> Self;
}

impl<K: Resource<Scope = ClusterResourceScope>> ObjectKey<K> for String {
    fn of(object: &K) -> Self {
        object.meta().name.clone().unwrap_or_default()
    }
}

/// The key of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl<K: Resource<Scope = NamespaceResourceScope>> ObjectKey<K> for NamespacedName {
    fn of(object: &K) -> Self {
        NamespacedName {
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: object.meta().name.clone().unwrap_or_default(),
        }
    }
}

/// The read side: each object's projection by key. Cheap to clone; every clone sees the
/// writer's changes.
#[derive(Debug)]
pub struct ProjectedStore<T, Key = String> {
    current: Arc<RwLock<HashMap<Key, Arc<T>>>>,
}

impl<T, Key> Clone for ProjectedStore<T, Key> {
    fn clone(&self) -> Self {
        ProjectedStore {
            current: Arc::clone(&self.current),
        }
    }
}

impl<T, Key: Eq + Hash + Clone> ProjectedStore<T, Key> {
    /// The projection of the object keyed `key`, if the store holds it.
    pub fn get<Q>(&self, key: &Q) -> Option<Arc<T>>
    where
        Key: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.read().get(key).cloned()
    }

    /// Every object's key and projection, in no particular order.
    pub fn state(&self) -> Vec<(Key, Arc<T>)> {
        self.read()
            .iter()
            .map(|(key, t)| (key.clone(), Arc::clone(t)))
            .collect()
    }

    /// Every object's projection, without the keys (a Node's name is in its projection).
    pub fn values(&self) -> Vec<Arc<T>> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Arc<T>>> {
        // A panic while the lock was held cannot leave the map half-written: every write is
        // one insert, remove or swap.
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The write side, fed by one watch: projects each object with `project` and keeps the result.
pub struct ProjectedWriter<K, T, Key = String> {
    store: ProjectedStore<T, Key>,
    /// The map a re-list is building, between `Init` and `InitDone`.
    relisting: Option<HashMap<Key, Arc<T>>>,
    project: fn(&K) -> T,
    /// Whether two projections are the same for the engine (see [`ProjectedWriter::differs`]).
    same: fn(&T, &T) -> bool,
}

impl<K, T, Key> ProjectedWriter<K, T, Key>
where
    Key: ObjectKey<K>,
{
    /// A writer whose projections are the same for the engine when they are equal.
    pub fn new(project: fn(&K) -> T) -> Self
    where
        T: PartialEq,
    {
        Self::comparing(project, T::eq)
    }

    /// A writer whose projections are the same for the engine when `same` says so: a
    /// projection may hold more than the engine reads (an AIWorkload's status, which only the
    /// status writer reads).
    pub fn comparing(project: fn(&K) -> T, same: fn(&T, &T) -> bool) -> Self {
        ProjectedWriter {
            store: ProjectedStore {
                current: Arc::default(),
            },
            relisting: None,
            project,
            same,
        }
    }

    pub fn as_reader(&self) -> ProjectedStore<T, Key> {
        self.store.clone()
    }

    /// The store this writer fills, borrowed.
    pub fn store(&self) -> &ProjectedStore<T, Key> {
        &self.store
    }

    /// Whether `object`'s projection differs, for the engine, from the one stored under its
    /// key (or none is).
    pub fn differs(&self, object: &K) -> bool {
        self.store
            .get(&Key::of(object))
            .is_none_or(|stored| !(self.same)(&stored, &(self.project)(object)))
    }

    /// Stores `object`'s projection under its key; whether it differs, for the engine, from
    /// the one stored before (or none was), as [`ProjectedWriter::differs`] would have said.
    pub fn apply_object(&mut self, object: &K) -> bool {
        let projected = Arc::new((self.project)(object));
        let before = self.write().insert(Key::of(object), Arc::clone(&projected));
        before.is_none_or(|stored| !(self.same)(&stored, &projected))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Arc<T>>> {
        self.store
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, T, Key> ApplyEvent<K> for ProjectedWriter<K, T, Key>
where
    Key: ObjectKey<K>,
{
    fn apply_watcher_event(&mut self, event: &Event<K>) {
        match event {
            Event::Apply(k) => {
                self.apply_object(k);
            }
            Event::Delete(k) => {
                self.write().remove(&Key::of(k));
            }
            Event::Init => self.relisting = Some(HashMap::new()),
            Event::InitApply(k) => {
                let projected = Arc::new((self.project)(k));
                self.relisting
                    .get_or_insert_with(HashMap::new)
                    .insert(Key::of(k), projected);
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
        let mut w: ProjectedWriter<Namespace, String> = ProjectedWriter::new(team);
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

    /// What the reflector learns while it stores an object is what `differs` says before.
    #[test]
    fn applying_an_object_tells_whether_it_differed() {
        let mut w: ProjectedWriter<Namespace, String> = ProjectedWriter::new(team);
        assert!(w.apply_object(&ns("a", "red")), "nothing was stored");
        assert!(!w.apply_object(&ns("a", "red")), "the same projection");
        assert!(w.apply_object(&ns("a", "blue")), "another projection");
        assert_eq!(
            w.store().get("a").as_deref().map(String::as_str),
            Some("blue")
        );

        // With a comparison of its own: what it calls the same is not a change, and is
        // stored all the same (the newer object's projection).
        let mut w: ProjectedWriter<Namespace, String> =
            ProjectedWriter::comparing(team, |a, b| a.len() == b.len());
        assert!(w.apply_object(&ns("a", "red")));
        assert!(
            !w.apply_object(&ns("a", "tan")),
            "same length: the same for the engine"
        );
        assert_eq!(
            w.store().get("a").as_deref().map(String::as_str),
            Some("tan")
        );
        assert!(w.apply_object(&ns("a", "green")));
    }

    #[test]
    fn apply_and_delete_change_the_store_at_once() {
        let mut w: ProjectedWriter<Namespace, String> = ProjectedWriter::new(team);
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
