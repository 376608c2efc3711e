//! Leader election with a `coordination.k8s.io/v1` Lease: get, create, update, with the
//! resourceVersion as the only arbiter between replicas.
//!
//! Timings follow client-go's defaults: the Lease lasts 15 s, the holder renews every 5 s, and
//! other replicas retry every 2 s. A holder counts itself leader only until 10 s after its last
//! successful renewal (the renew deadline), so it stops writing well before anyone else may take
//! over (15 s after *they* last saw the Lease change). Expiry is judged from the local time at
//! which this replica last saw the Lease's resourceVersion change, never by comparing clocks
//! with the holder's `renewTime`. On shutdown the holder clears `holderIdentity`, so that another
//! replica takes over at its next retry rather than after the Lease expires.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Lease timings.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// `leaseDurationSeconds` written into the Lease: how long others wait before taking over.
    pub lease_duration: Duration,
    /// How long the holder trusts its last renewal (shorter than `lease_duration`).
    pub renew_deadline: Duration,
    /// How often the holder renews (shorter than `renew_deadline`).
    pub renew_interval: Duration,
    /// How often a non-holder tries to acquire.
    pub retry_interval: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
        }
    }
}

/// Whether this replica may write now. Cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct Leadership {
    inner: Arc<LeadershipInner>,
}

#[derive(Debug)]
struct LeadershipInner {
    /// Until when the last renewal is trusted; None when not leading.
    valid_until: Mutex<Option<Instant>>,
    changes: watch::Sender<bool>,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership {
            inner: Arc::new(LeadershipInner {
                valid_until: Mutex::new(None),
                changes: watch::channel(false).0,
            }),
        }
    }
}

impl Leadership {
    /// True only while a renewal is fresh: a replica that cannot renew stops writing at its
    /// renew deadline even before its next attempt fails.
    pub fn is_leader(&self) -> bool {
        let until = *self
            .inner
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|t| Instant::now() < t)
    }

    /// Turns true on acquisition and false on loss or release.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.changes.subscribe()
    }

    fn renewed(&self, until: Instant) {
        *self
            .inner
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(until);
        self.inner
            .changes
            .send_if_modified(|v| !std::mem::replace(v, true));
    }

    fn lost(&self) {
        *self
            .inner
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.inner
            .changes
            .send_if_modified(|v| std::mem::replace(v, false));
    }
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: Timings,
    leadership: Leadership,
    /// The Lease's resourceVersion as last seen, and when it was first seen.
    observed: Option<(String, Instant)>,
    /// The Lease as last written by this replica while holding it.
    held: Option<Lease>,
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: Timings,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
            leadership: Leadership::default(),
            observed: None,
            held: None,
        }
    }

    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    fn spec(&self, now: Timestamp, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timings.lease_duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to acquire or renew. Returns whether this replica holds the Lease now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let started = Instant::now();
        let now = Timestamp::now();
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: kube::api::ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, 0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => Ok(self.won(created, started)),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let rv = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        match &self.observed {
            Some((seen, _)) if *seen == rv => {}
            _ => self.observed = Some((rv, started)),
        }
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let mut next = current.clone();
        if holder.as_deref() == Some(self.identity.as_str()) {
            next.spec = Some(self.spec(now, transitions, spec.acquire_time.clone()));
        } else {
            let duration = spec
                .lease_duration_seconds
                .filter(|s| *s > 0)
                .map_or(self.timings.lease_duration, |s| {
                    Duration::from_secs(s as u64)
                });
            let seen_at = self.observed.as_ref().map_or(started, |(_, t)| *t);
            let expired = started.duration_since(seen_at) >= duration;
            if holder.is_some() && !expired {
                return Ok(false);
            }
            next.spec = Some(self.spec(now, transitions + 1, None));
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => Ok(self.won(written, started)),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn won(&mut self, lease: Lease, started: Instant) -> bool {
        self.observed = lease
            .metadata
            .resource_version
            .clone()
            .map(|rv| (rv, started));
        self.held = Some(lease);
        self.leadership
            .renewed(started + self.timings.renew_deadline);
        true
    }

    /// Gives the Lease up: stop writing first, then clear `holderIdentity` (an update with the
    /// last written resourceVersion, so a Lease someone else took meanwhile is left alone).
    pub async fn release(&mut self) {
        self.leadership.lost();
        let Some(mut lease) = self.held.take() else {
            return;
        };
        if let Some(spec) = &mut lease.spec {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "leader lease released"),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "cannot release the leader lease; it will expire")
            }
        }
    }

    /// Campaigns and renews until `stop` turns true, then releases the Lease if held.
    pub async fn run(mut self, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
        let mut leading = false;
        loop {
            if *stop.borrow() {
                break;
            }
            let held = match self.try_acquire_or_renew().await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "leader election attempt failed");
                    // Still leader until the renew deadline passes.
                    self.leadership.is_leader()
                }
            };
            if !held {
                self.held = None;
                self.leadership.lost();
            }
            if held != leading {
                leading = held;
                metrics.leader.set(i64::from(held));
                if held {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired the leader lease; this replica writes status and events");
                } else {
                    tracing::info!(lease = %self.name, identity = %self.identity, "not the leader; status and events are left to the lease holder");
                }
            }
            let wait = if held {
                self.timings.renew_interval
            } else {
                self.timings.retry_interval
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if self.held.is_some() {
            self.release().await;
        }
        self.leadership.lost();
        metrics.leader.set(0);
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
