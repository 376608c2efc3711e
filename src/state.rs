//! What the webhook decides with, swapped atomically, and whether it is ready to decide.
//!
//! The admission path loads the current [`EngineState`] with one atomic read and never blocks on
//! a writer: the standalone loader or the cluster reflectors build a whole new state and publish
//! it with [`SharedState::publish`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwapOption;

use crate::policy::PolicySet;
use crate::snapshot::Snapshot;

/// Everything the engine needs besides the request.
#[derive(Debug)]
pub struct EngineState {
    pub policies: PolicySet,
    pub snapshot: Snapshot,
    /// When this state was published, for the snapshot-age metric.
    pub published: Instant,
}

/// The current engine state, shared between the publisher and every request.
#[derive(Debug, Default)]
pub struct SharedState {
    current: ArcSwapOption<EngineState>,
}

impl SharedState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the state; requests already running keep the one they loaded.
    pub fn publish(&self, policies: PolicySet, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(EngineState {
            policies,
            snapshot,
            published: Instant::now(),
        })));
    }

    /// The current state, or None before the first publication (the server cannot decide).
    pub fn load(&self) -> Option<Arc<EngineState>> {
        self.current.load_full()
    }
}

/// Readiness: true only once a state is loaded and the webhook is listening, false again as
/// soon as shutdown starts.
#[derive(Debug, Default)]
pub struct Readiness {
    listening: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Why the server is not ready, or None when it is.
    pub fn not_ready_reason(&self, state: &SharedState) -> Option<&'static str> {
        if self.shutting_down() {
            Some("shutting down")
        } else if state.load().is_none() {
            Some("policy snapshot not loaded")
        } else if !self.listening.load(Ordering::SeqCst) {
            Some("webhook listener not started")
        } else {
            None
        }
    }
}

/// Fills the caches that the snapshot reads, before a decision (cluster mode): the ConfigMaps a
/// workload references and its namespace when the watch has not delivered it. The decision
/// itself never does I/O, so whatever it needs must be fetched first.
pub trait ConfigMapPrefetch: Send + Sync {
    /// Makes sure `names` in `namespace`, and `namespace` itself, are cached, giving up at
    /// `deadline` (a ConfigMap still missing then is unresolved for this decision, a namespace
    /// matches every selector).
    fn prefetch(
        &self,
        namespace: String,
        names: Vec<String>,
        deadline: tokio::time::Instant,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    /// The Pods of `namespace` that read ConfigMap `name` (a volume, a projected source, an env
    /// reference), as JSON objects, with the other ConfigMaps they reference cached; or why they
    /// could not be listed by `deadline`. For a ConfigMap holding a config file: the engine
    /// decides what its change does to them.
    fn config_map_readers(
        &self,
        namespace: String,
        name: String,
        deadline: tokio::time::Instant,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<serde_json::Value>, String>> + Send + 'static>>;

    /// The related objects of `keys` (see `admission::ParsedReview::related_references`) that
    /// could be fetched by `deadline`, for the decision to add to its snapshot.
    fn related_objects(
        &self,
        keys: Vec<crate::snapshot::RelatedKey>,
        deadline: tokio::time::Instant,
    ) -> Pin<Box<dyn Future<Output = Vec<serde_json::Value>> + Send + 'static>>;
}
