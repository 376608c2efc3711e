//! The background audit: existing workloads evaluated by the very same [`policy::evaluate`] the
//! webhook uses (as a CREATE of the object as it is), and the results tallied for status,
//! events and metrics.
//!
//! Memory stays bounded whatever the cluster's size: workloads are listed a page at a time and
//! dropped after evaluation; the tally keeps counts plus capped lists (the first violating
//! objects per policy, the matched workloads per AIWorkload, the violations to turn into
//! Events).
//!
//! What is listed: every kind of [`audit_kinds`], and of each only the objects no audited kind
//! controls (a ReplicaSet is covered by its Deployment, a Pod by its ReplicaSet). An object
//! whose controller is anything else, a KubeRay RayCluster, a Spark application, a Kubeflow
//! job, an OpenKruise `apps.kruise.io` StatefulSet, is audited itself: controllers are told
//! apart by API group and kind, not by kind alone.
//!
//! A paginated list can outlive its continue token (the API server compacts old revisions,
//! every five minutes by default, and answers 410 Gone). The kind is then listed again from the
//! start, its results so far thrown away, so that nothing is counted twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, ReplicationController};
use kube::Client;
use kube::api::{ApiResource, DynamicObject, ListParams};
use serde_json::Value;
use serde_json::value::RawValue;

use super::config_maps::Fetcher;
use super::discovery::Served;
use crate::api::{Action, ExemptedObject, MatchedWorkload, ViolatingObject};
use crate::policy::{self, Decision, Operation, PolicySet};
use crate::policy_report::{self, Collected, Resource};
use crate::snapshot::{Labels, Snapshot};

/// Objects per list page.
pub const PAGE_SIZE: u32 = 250;
/// First violating objects kept per policy (the status lists at most this many).
pub const MAX_VIOLATING_OBJECTS: usize = 20;
/// Matched workloads kept per AIWorkload.
pub const MAX_MATCHED: usize = 50;
/// Violations kept for Events per audit (the writer publishes the new ones among them).
pub const MAX_EVENT_CANDIDATES: usize = 5000;
/// How long the audit waits for the ConfigMaps one workload references.
const CONFIG_MAP_DEADLINE: Duration = Duration::from_secs(5);
/// ConfigMap GETs the audit has in flight at once.
const CONCURRENT_FETCHES: usize = 16;

/// How long the audit waits for one page of a list.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often one kind is listed again from the start after its continue token expired.
const MAX_RELISTS: usize = 3;

/// A kind the audit lists, and which of its objects it leaves to their controller.
#[derive(Debug, Clone)]
pub struct AuditKind {
    pub resource: ApiResource,
    /// Skip objects controlled by an owner of one of these (API group, kind) pairs: the audit of
    /// that kind covers them.
    pub skip_controlled_by: Vec<(String, String)>,
}

/// Deployments, StatefulSets, DaemonSets, ReplicaSets no Deployment controls,
/// ReplicationControllers, Jobs no CronJob controls, CronJobs, and Pods that no audited kind
/// controls (bare Pods, and Pods of controllers hostguard does not know).
pub fn audit_kinds() -> Vec<AuditKind> {
    let mut kinds = vec![
        kind::<Deployment>(vec![]),
        kind::<StatefulSet>(vec![]),
        kind::<DaemonSet>(vec![]),
        kind::<ReplicaSet>(vec![group_kind(&ApiResource::erase::<Deployment>(&()))]),
        kind::<ReplicationController>(vec![]),
        kind::<Job>(vec![group_kind(&ApiResource::erase::<CronJob>(&()))]),
        kind::<CronJob>(vec![]),
    ];
    // A Pod is left to its controller only when that controller is audited itself.
    let controllers = kinds.iter().map(|k| group_kind(&k.resource)).collect();
    kinds.push(kind::<Pod>(controllers));
    kinds
}

fn group_kind(r: &ApiResource) -> (String, String) {
    (r.group.clone(), r.kind.clone())
}

fn kind<K: kube::Resource<DynamicType = ()>>(skip: Vec<(String, String)>) -> AuditKind {
    AuditKind {
        resource: ApiResource::erase::<K>(&()),
        skip_controlled_by: skip,
    }
}

/// The API group of an `apiVersion` (`apps/v1` → `apps`, `v1` → the core group `""`).
fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// Whether an object is left to its controller: its controller owner reference names one of
/// `skip` by API group and kind. A Pod with ephemeral containers is never left to its
/// controller: those were added to the Pod itself (`kubectl debug`), its template does not
/// have them.
pub fn is_skipped(object: &Value, skip: &[(String, String)]) -> bool {
    let controlled = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .any(|o| {
            let field = |name: &str| o.get(name).and_then(Value::as_str).unwrap_or("");
            skip.iter().any(|(group, kind)| {
                *group == api_group(field("apiVersion")) && *kind == field("kind")
            })
        });
    controlled && !has_ephemeral_containers(object)
}

fn has_ephemeral_containers(object: &Value) -> bool {
    object
        .pointer("/spec/ephemeralContainers")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
}

/// One page of a list as the API server sent it: the body, whose items are read one at a time
/// ([`Page::read`]), so that a page costs its text and one object's tree, not a tree of every
/// object (a `DynamicObject` page was three copies: serde's buffer of each object, the object,
/// and its `Value`).
struct Page {
    body: String,
}

/// What of a list body [`Page`] reads: the continue token, and each item's text.
///
/// Read as kube-core's `ObjectList` reads it: `items` must be there, and `null` is empty (an
/// empty list may be encoded so); a body without `items` (a `Status`, an object a proxy made
/// up) is not a list and fails it, so that the audit never takes it for a kind without objects.
#[derive(serde::Deserialize)]
struct ListBody<'a> {
    #[serde(default)]
    metadata: Option<ListMeta>,
    #[serde(borrow, deserialize_with = "null_as_empty")]
    items: Vec<&'a RawValue>,
}

fn null_as_empty<'de: 'a, 'a, D>(d: D) -> Result<Vec<&'a RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(<Option<Vec<&'a RawValue>> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

#[derive(serde::Deserialize)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    continue_: Option<String>,
}

impl Page {
    /// Lists one page of `resource` (every namespace).
    async fn fetch(
        client: &Client,
        resource: &ApiResource,
        params: &ListParams,
    ) -> Result<Page, kube::Error> {
        let mut request =
            kube::core::Request::new(<DynamicObject as kube::Resource>::url_path(resource, None))
                .list(params)
                .map_err(kube::Error::BuildRequest)?;
        // As `Api::list` marks its requests, for the client's tracing.
        request.extensions_mut().insert("list");
        let response = client.send(request.map(kube::client::Body::from)).await?;
        let status = response.status();
        let body = read_body(response.into_body()).await?;
        if status.is_client_error() || status.is_server_error() {
            return Err(api_error(status, &body));
        }
        Ok(Page { body })
    }

    /// The items' texts, and the continue token (None on the last page).
    fn read(&self) -> Result<(Vec<&RawValue>, Option<String>), kube::Error> {
        let list: ListBody<'_> =
            serde_json::from_str(&self.body).map_err(kube::Error::SerdeError)?;
        let token = list.metadata.and_then(|m| m.continue_);
        Ok((list.items, token.filter(|t| !t.is_empty())))
    }
}

/// A response body as one string, each frame copied out as it arrives and dropped.
///
/// Not `Client::request_text`: that keeps every frame until the last has come, copies them into
/// one buffer, then copies that buffer once more into the string, so a page is held three times
/// over while it is read. Here it is held once, and each frame (with the part of hyper's read
/// buffer it was cut from) is freed as soon as it is copied.
async fn read_body<B>(body: B) -> Result<String, kube::Error>
where
    B: hyper::body::Body<Data = hyper::body::Bytes>,
    kube::Error: From<B::Error>,
{
    use http_body_util::BodyExt;

    // The size the body announces (Content-Length), if any, as the first capacity; bounded, so
    // that a wrong announcement cannot reserve more than a page of Pods needs.
    const FIRST_CAPACITY_LIMIT: u64 = 8 << 20;
    let first = body.size_hint().lower().min(FIRST_CAPACITY_LIMIT);
    let mut text = Vec::with_capacity(usize::try_from(first).unwrap_or(0));
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            text.extend_from_slice(&data);
        }
    }
    String::from_utf8(text).map_err(kube::Error::FromUtf8)
}

/// The error of a response whose status is an error, as kube's client makes it: the `Status`
/// the API server wrote, or one made from the status code when the body is not one (a proxy's
/// page, a path that is not served).
fn api_error(code: hyper::StatusCode, body: &str) -> kube::Error {
    let status = serde_json::from_str::<kube::core::Status>(body).unwrap_or_else(|_| {
        kube::core::Status::failure(body.trim(), "Failed to parse error data")
            .with_code(code.as_u16())
    });
    kube::Error::Api(status.boxed())
}

/// One listed object as the engine reads it: its tree, with the type the list's items leave
/// out (the API server writes `apiVersion` and `kind` once, on the list) and without the
/// managed fields nobody reads. An item that is not an object fails the list, as it failed
/// the typed list before: the audit does not pass over what it cannot read.
fn listed_object(text: &RawValue, resource: &ApiResource) -> Result<Value, kube::Error> {
    let mut value: Value = serde_json::from_str(text.get()).map_err(kube::Error::SerdeError)?;
    let Some(object) = value.as_object_mut() else {
        return Err(kube::Error::SerdeError(serde::de::Error::custom(format!(
            "an item of the {} list is not an object",
            resource.kind
        ))));
    };
    object.insert("apiVersion".into(), resource.api_version.clone().into());
    object.insert("kind".into(), resource.kind.clone().into());
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        meta.remove("managedFields");
    }
    Ok(value)
}

/// One violating object of one policy, to become an Event.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub reference: ObjectReference,
    pub policy: String,
    pub action: Action,
    pub message: String,
}

impl PendingEvent {
    /// Deduplication key: the object (by uid when known) and the policy.
    pub fn key(&self) -> (String, String) {
        let r = &self.reference;
        let object = match &r.uid {
            Some(uid) if !uid.is_empty() => uid.clone(),
            _ => format!(
                "{}/{}/{}",
                r.kind.as_deref().unwrap_or(""),
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or("")
            ),
        };
        (object, self.policy.clone())
    }
}

/// Per-policy results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyTally {
    /// Violating objects (each counted once, however many violations it has).
    pub violating: i64,
    pub action: Option<Action>,
    pub first: Vec<ViolatingObject>,
    /// Objects an AIWorkload exempted from the policy (each counted once).
    pub exempted: i64,
    pub first_exempted: Vec<ExemptedObject>,
}

/// Per-AIWorkload results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeclaredTally {
    pub matched: Vec<MatchedWorkload>,
    pub total: usize,
    pub violating: usize,
    pub first_violation: Option<String>,
}

/// What one audit found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub objects: usize,
    pub policies: BTreeMap<String, PolicyTally>,
    /// By (namespace, AIWorkload name).
    pub declared: BTreeMap<(String, String), DeclaredTally>,
    pub events: Vec<PendingEvent>,
    pub events_dropped: usize,
    /// PolicyReport results per namespace, when reports are written (see [`Tally::reporting`]).
    pub reports: Option<Collected>,
}

impl Tally {
    /// An empty tally that also gathers PolicyReport results.
    pub fn reporting() -> Self {
        Tally {
            reports: Some(Collected::default()),
            ..Default::default()
        }
    }

    /// Whether nothing has been recorded or absorbed here.
    fn holds_nothing(&self) -> bool {
        let Tally {
            objects,
            policies,
            declared,
            events,
            events_dropped,
            reports,
        } = self;
        *objects == 0
            && policies.is_empty()
            && declared.is_empty()
            && events.is_empty()
            && *events_dropped == 0
            && reports.as_ref().is_none_or(|r| *r == Collected::default())
    }

    /// Records one evaluated object.
    pub fn record(&mut self, object: &Value, decision: &Decision, snapshot: &Snapshot) {
        self.objects += 1;
        if let Some(reports) = &mut self.reports {
            let namespace = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            reports.add(
                namespace,
                policy_report::results(&Resource::of(object), decision),
            );
        }
        let reference = object_reference(object);
        let kind = reference.kind.clone().unwrap_or_default();
        let name = reference.name.clone().unwrap_or_default();
        let namespace = reference.namespace.clone().unwrap_or_default();

        // Violations grouped by policy, in the engine's order.
        let mut by_policy: BTreeMap<&str, Vec<&policy::Violation>> = BTreeMap::new();
        for v in &decision.violations {
            by_policy.entry(v.policy.as_str()).or_default().push(v);
        }
        for (policy, violations) in &by_policy {
            let first = violations[0];
            let t = self.policies.entry(policy.to_string()).or_default();
            t.violating += 1;
            t.action = Some(first.action);
            if t.first.len() < MAX_VIOLATING_OBJECTS {
                make_room(&mut t.first, MAX_VIOLATING_OBJECTS);
                t.first.push(ViolatingObject {
                    kind: kind.clone(),
                    namespace: Some(namespace.clone()).filter(|n| !n.is_empty()),
                    name: name.clone(),
                    message: first.message.clone(),
                });
            }
            if self.events.len() < MAX_EVENT_CANDIDATES {
                let more = violations.len() - 1;
                let message = if more == 0 {
                    first.message.clone()
                } else {
                    format!("{} (and {more} more)", first.message)
                };
                make_room(&mut self.events, MAX_EVENT_CANDIDATES);
                self.events.push(PendingEvent {
                    reference: reference.clone(),
                    policy: policy.to_string(),
                    action: first.action,
                    message,
                });
            } else {
                self.events_dropped += 1;
            }
        }

        // Exemptions by policy: an object with several exempted templates counts once.
        let mut exempted: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for e in &decision.exemptions {
            let by = exempted.entry(e.policy.as_str()).or_default();
            for a in &e.exempted_by {
                if !by.contains(a) {
                    by.push(a.clone());
                }
            }
        }
        for (policy, by) in exempted {
            let t = self.policies.entry(policy.to_string()).or_default();
            t.exempted += 1;
            if t.first_exempted.len() < MAX_VIOLATING_OBJECTS {
                make_room(&mut t.first_exempted, MAX_VIOLATING_OBJECTS);
                t.first_exempted.push(ExemptedObject {
                    kind: kind.clone(),
                    namespace: Some(namespace.clone()).filter(|n| !n.is_empty()),
                    name: name.clone(),
                    exempted_by: by,
                });
            }
        }

        let compliant = decision.violations.is_empty();
        let mut declared: BTreeSet<String> = BTreeSet::new();
        if let Some(labels) = template_labels(object) {
            for d in snapshot.declarations_for(&namespace, &labels) {
                declared.insert(d.name.clone());
            }
        }
        for d in declared {
            let t = self.declared.entry((namespace.clone(), d)).or_default();
            t.total += 1;
            if !compliant {
                t.violating += 1;
                if t.first_violation.is_none() {
                    t.first_violation = decision.violations.first().map(|v| v.message.clone());
                }
            }
            if t.matched.len() < MAX_MATCHED {
                make_room(&mut t.matched, MAX_MATCHED);
                t.matched.push(MatchedWorkload {
                    kind: kind.clone(),
                    name: name.clone(),
                    compliant,
                });
            }
        }
    }
}

impl Tally {
    /// Adds what `other` found after what this tally holds, keeping every cap, as if its
    /// objects had been recorded here one by one.
    pub fn absorb(&mut self, other: Tally) {
        // Into a tally that holds nothing yet (the audit's first kind), absorbing builds what
        // `other` already is: it is taken as it is, so that its lists and maps are not built a
        // second time beside it (in a large cluster, 5,000 Events and an entry per AIWorkload).
        if other.reports.is_some() == self.reports.is_some() && self.holds_nothing() {
            *self = other;
            return;
        }
        self.objects += other.objects;
        for (name, t) in other.policies {
            let mine = self.policies.entry(name).or_default();
            mine.violating += t.violating;
            if t.action.is_some() {
                mine.action = t.action;
            }
            let room = MAX_VIOLATING_OBJECTS.saturating_sub(mine.first.len());
            mine.first.extend(t.first.into_iter().take(room));
            mine.exempted += t.exempted;
            let room = MAX_VIOLATING_OBJECTS.saturating_sub(mine.first_exempted.len());
            mine.first_exempted
                .extend(t.first_exempted.into_iter().take(room));
        }
        for (key, t) in other.declared {
            let mine = self.declared.entry(key).or_default();
            mine.total += t.total;
            mine.violating += t.violating;
            if mine.first_violation.is_none() {
                mine.first_violation = t.first_violation;
            }
            let room = MAX_MATCHED.saturating_sub(mine.matched.len());
            mine.matched.extend(t.matched.into_iter().take(room));
        }
        let room = MAX_EVENT_CANDIDATES.saturating_sub(self.events.len());
        let offered = other.events.len();
        self.events.extend(other.events.into_iter().take(room));
        self.events_dropped += other.events_dropped + offered.saturating_sub(room);
        if let Some(theirs) = other.reports {
            self.reports
                .get_or_insert_with(Collected::default)
                .absorb(theirs);
        }
    }
}

/// The pod template labels of a workload object (a Pod's own labels).
pub fn template_labels(object: &Value) -> Option<Labels> {
    let pointer = match object.get("kind").and_then(Value::as_str)? {
        "Pod" => "/metadata/labels",
        "CronJob" => "/spec/jobTemplate/spec/template/metadata/labels",
        _ => "/spec/template/metadata/labels",
    };
    Some(
        object
            .pointer(pointer)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default(),
    )
}

fn object_reference(object: &Value) -> ObjectReference {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).map(String::from);
    ObjectReference {
        api_version: s("/apiVersion"),
        kind: s("/kind"),
        name: s("/metadata/name"),
        namespace: s("/metadata/namespace"),
        uid: s("/metadata/uid"),
        ..Default::default()
    }
}

/// Evaluates one listed object and records it.
pub fn evaluate_into(
    tally: &mut Tally,
    object: &Value,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Decision {
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let decision = policy::evaluate(
        &policy::Request {
            operation: Operation::Create,
            object: Some(object.into()),
            old_object: None,
            namespace,
        },
        policies,
        snapshot,
    );
    tally.record(object, &decision, snapshot);
    decision
}

/// Lists every audited kind a page at a time and evaluates each object. `keep_going` is asked
/// between pages: the audit stops early (with an error) when it turns false, e.g. on lost
/// leadership or shutdown.
pub async fn run(
    client: &Client,
    fetcher: Option<&Fetcher>,
    policies: &PolicySet,
    snapshot: &Snapshot,
    keep_going: &(dyn Fn() -> bool + Sync),
) -> Result<Tally, AuditError> {
    let served = Served::default();
    run_served(
        client, fetcher, policies, snapshot, keep_going, false, &served,
    )
    .await
}

/// [`run`] over the built-in kinds and the kinds of `served` (discovered: the AI tools'
/// resources and other controllers' pod-template kinds), also gathering PolicyReport results
/// when `reports` is set. Their objects are audited themselves,
/// whatever controls them; objects they control are audited as before (a Deployment an
/// InferenceService made is judged itself too, since its controller may add containers and env
/// that the template does not show).
///
/// The related kinds of `served` (an Envoy Gateway `Backend`, a `BackendTLSPolicy`) and the
/// judged kinds adapters look up (`AIServiceBackend`) are listed first, into a copy of the
/// snapshot, so that an adapter's reference is answered from what exists; the lookups are
/// authoritative only when every one of those lists succeeded (else unresolved: fail closed).
pub async fn run_served(
    client: &Client,
    fetcher: Option<&Fetcher>,
    policies: &PolicySet,
    snapshot: &Snapshot,
    keep_going: &(dyn Fn() -> bool + Sync),
    reports: bool,
    served: &Served,
) -> Result<Tally, AuditError> {
    let with_related;
    let snapshot = if served.judged.is_empty() {
        snapshot
    } else {
        with_related = snapshot_with_related(client, snapshot, served).await;
        &with_related
    };
    let mut kinds = audit_kinds();
    kinds.extend(served.judged.iter().map(|resource| AuditKind {
        resource: resource.clone(),
        skip_controlled_by: Vec::new(),
    }));
    let fresh = || {
        if reports {
            Tally::reporting()
        } else {
            Tally::default()
        }
    };
    let mut tally = fresh();
    for kind in kinds {
        let mut relists = 0;
        let found = loop {
            match list_kind(
                client,
                fetcher,
                &kind,
                policies,
                snapshot,
                keep_going,
                fresh(),
            )
            .await
            {
                Err(AuditError::List { kind: name, error }) if is_expired(&error) => {
                    relists += 1;
                    if relists > MAX_RELISTS {
                        return Err(AuditError::List { kind: name, error });
                    }
                    tracing::info!(
                        kind = %name,
                        relists,
                        "the list's continue token expired (410 Gone); listing this kind again from the start"
                    );
                }
                other => break other?,
            }
        };
        tally.absorb(found);
    }
    Ok(tally)
}

/// A copy of `snapshot` holding every object of the related kinds of `served`, and of the
/// judged kinds adapters look up; authoritative for lookups only when every list succeeded.
async fn snapshot_with_related(client: &Client, snapshot: &Snapshot, served: &Served) -> Snapshot {
    let mut copy = snapshot.clone();
    let mut complete = true;
    for resource in &served.looked_up() {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        loop {
            let listed =
                tokio::time::timeout(LIST_TIMEOUT, Page::fetch(client, resource, &params)).await;
            let page = match listed {
                Ok(Ok(page)) => page,
                Ok(Err(error)) => {
                    tracing::warn!(kind = %resource.kind, %error, "cannot list the objects adapters look up; their references stay unresolved in this audit");
                    complete = false;
                    break;
                }
                Err(_) => {
                    tracing::warn!(kind = %resource.kind, "listing the objects adapters look up timed out; their references stay unresolved in this audit");
                    complete = false;
                    break;
                }
            };
            let read = page.read().and_then(|(items, token)| {
                for text in items {
                    copy.insert_related(&listed_object(text, resource)?, "default");
                }
                Ok(token)
            });
            match read {
                Ok(Some(token)) => {
                    params = ListParams::default()
                        .limit(PAGE_SIZE)
                        .continue_token(&token);
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(kind = %resource.kind, %error, "cannot read the list of the objects adapters look up; their references stay unresolved in this audit");
                    complete = false;
                    break;
                }
            }
        }
    }
    copy.set_related_authoritative(complete);
    copy
}

/// Whether a list failed because its continue token (or resource version) is too old.
fn is_expired(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 410)
}

/// Lists one kind, all pages, into a tally of its own.
async fn list_kind(
    client: &Client,
    fetcher: Option<&Fetcher>,
    kind: &AuditKind,
    policies: &PolicySet,
    snapshot: &Snapshot,
    keep_going: &(dyn Fn() -> bool + Sync),
    mut tally: Tally,
) -> Result<Tally, AuditError> {
    let list_error = |error| AuditError::List {
        kind: kind.resource.kind.clone(),
        error,
    };
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        if !keep_going() {
            return Err(AuditError::Interrupted);
        }
        let listed =
            tokio::time::timeout(LIST_TIMEOUT, Page::fetch(client, &kind.resource, &params)).await;
        let page = match listed {
            Ok(Ok(page)) => page,
            Ok(Err(error)) => return Err(list_error(error)),
            Err(_) => {
                return Err(AuditError::Timeout {
                    kind: kind.resource.kind.clone(),
                    after: LIST_TIMEOUT,
                });
            }
        };
        let (items, token) = page.read().map_err(list_error)?;
        // First the objects the audit judges, and the ConfigMaps they read; each tree is
        // dropped at once, and built again to be judged (a tree is several times its text).
        let mut judged: Vec<&RawValue> = Vec::with_capacity(items.len());
        let mut config_maps: BTreeSet<(String, String)> = BTreeSet::new();
        for text in items {
            let object = listed_object(text, &kind.resource).map_err(list_error)?;
            if is_skipped(&object, &kind.skip_controlled_by) {
                continue;
            }
            if fetcher.is_some() {
                let mut names = BTreeSet::new();
                crate::workload::config_map_refs(&object, &mut names);
                let namespace = object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                config_maps.extend(names.into_iter().map(|n| (namespace.to_string(), n)));
            }
            judged.push(text);
        }
        // The ConfigMaps the page's objects read that are not cached yet, fetched together (at
        // most CONCURRENT_FETCHES at a time) within one deadline, before any of them is judged.
        if let Some(fetcher) = fetcher
            && !config_maps.is_empty()
        {
            let deadline = tokio::time::Instant::now() + CONFIG_MAP_DEADLINE;
            let wanted: Vec<(String, String)> = config_maps.into_iter().collect();
            fetcher
                .fetch_missing_of_many(&wanted, CONCURRENT_FETCHES, deadline)
                .await;
        }
        for text in judged {
            let object = listed_object(text, &kind.resource).map_err(list_error)?;
            evaluate_into(&mut tally, &object, policies, snapshot);
        }
        match token {
            Some(token) => {
                params = ListParams::default()
                    .limit(PAGE_SIZE)
                    .continue_token(&token);
            }
            None => return Ok(tally),
        }
    }
}

/// Why an audit did not finish.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("listing {kind}: {error}")]
    List { kind: String, error: kube::Error },
    #[error("listing {kind}: no answer within {}s", after.as_secs())]
    Timeout { kind: String, after: Duration },
    #[error("interrupted (leadership lost or shutting down)")]
    Interrupted,
}

/// Makes room for one more entry in a list the tally keeps to at most `cap` entries: as a `Vec`
/// grows, doubling, but from one slot and never past `cap`. A `Vec` of entries this size starts
/// at four slots and doubles past the cap, so 10,000 AIWorkloads' one matched workload each,
/// 1,000 policies' first 20 exempted objects in 32 slots each, or 5,000 Events in 8,192 slots,
/// held megabytes of empty slots through the audit (heaptrack, `scripts/bench_cluster.py`).
fn make_room<T>(list: &mut Vec<T>, cap: usize) {
    if list.len() == list.capacity() && list.len() < cap {
        let len = list.len();
        list.reserve_exact(len.max(1).min(cap - len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::DeclaredWorkload;
    use futures::StreamExt;
    use http_body_util::StreamBody;
    use hyper::body::{Bytes, Frame};

    /// A body that arrives as `frames`, as hyper hands over a page read in several reads.
    fn body_of(
        frames: Vec<Frame<Bytes>>,
    ) -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, kube::Error>>> {
        StreamBody::new(futures::stream::iter(frames).map(Ok))
    }

    #[tokio::test]
    async fn a_body_in_many_frames_is_read_whole_even_when_a_frame_ends_inside_a_character() {
        let text = r#"{"items":[{"metadata":{"name":"café-ü-日本"}}]}"#;
        // Cut after every byte, so that every multi-byte character is split between frames.
        let frames = text
            .as_bytes()
            .iter()
            .map(|b| Frame::data(Bytes::copy_from_slice(&[*b])))
            .collect();
        assert_eq!(read_body(body_of(frames)).await.unwrap(), text);
    }

    #[tokio::test]
    async fn trailers_are_not_part_of_the_body() {
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames = vec![
            Frame::data(Bytes::from_static(b"{\"items\":")),
            Frame::data(Bytes::from_static(b"[]}")),
            Frame::trailers(trailers),
        ];
        assert_eq!(read_body(body_of(frames)).await.unwrap(), r#"{"items":[]}"#);
    }

    #[tokio::test]
    async fn a_body_that_is_not_utf8_is_an_error_not_a_page() {
        // 0xC3 starts a two-byte character; the next frame does not continue it.
        let frames = vec![
            Frame::data(Bytes::from_static(b"{\"items\":[\"\xC3")),
            Frame::data(Bytes::from_static(b"(\"]}")),
        ];
        let error = read_body(body_of(frames)).await.unwrap_err();
        assert!(matches!(error, kube::Error::FromUtf8(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_error_while_reading_ends_the_read_with_that_error() {
        let frames = futures::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"{\"items\":["))),
            Err(kube::Error::LinesCodecMaxLineLengthExceeded),
        ]);
        let error = read_body(StreamBody::new(frames)).await.unwrap_err();
        assert!(
            matches!(error, kube::Error::LinesCodecMaxLineLengthExceeded),
            "{error:?}"
        );
    }

    /// A Deployment whose OpenAI client calls api.openai.com: the built-in policy's violation.
    fn violating(name: &str) -> Value {
        serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}")},
            "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                {"name": "app", "image": "i", "env": [{"name": "OPENAI_API_KEY", "value": "sk-x"}]}
            ]}}}
        })
    }

    fn tally_of(names: std::ops::Range<usize>, reporting: bool) -> Tally {
        let (policies, snapshot) = (
            PolicySet::builtin(),
            Snapshot::offline(crate::api::ClusterProvider::Azure),
        );
        let mut tally = if reporting {
            Tally::reporting()
        } else {
            Tally::default()
        };
        for n in names {
            evaluate_into(
                &mut tally,
                &violating(&format!("d{n}")),
                &policies,
                &snapshot,
            );
        }
        tally
    }

    #[test]
    fn the_events_kept_never_take_more_room_than_their_cap() {
        let tally = tally_of(0..MAX_EVENT_CANDIDATES + 10, false);
        assert_eq!(tally.events.len(), MAX_EVENT_CANDIDATES);
        assert_eq!(tally.events.capacity(), MAX_EVENT_CANDIDATES);
        assert_eq!(tally.events_dropped, 10);
        assert_eq!(tally.events[0].reference.name.as_deref(), Some("d0"));
    }

    #[test]
    fn a_policys_first_violating_objects_take_no_more_room_than_their_cap() {
        let tally = tally_of(0..MAX_VIOLATING_OBJECTS + 5, false);
        let t = &tally.policies[crate::policy::DEFAULT_POLICY_NAME];
        assert_eq!(t.violating, MAX_VIOLATING_OBJECTS as i64 + 5);
        assert_eq!(t.first.len(), MAX_VIOLATING_OBJECTS);
        assert_eq!(t.first.capacity(), MAX_VIOLATING_OBJECTS);
        let one = tally_of(0..1, false);
        assert_eq!(
            one.policies[crate::policy::DEFAULT_POLICY_NAME]
                .first
                .capacity(),
            1
        );
    }

    #[test]
    fn an_aiworkloads_matched_workloads_take_the_room_they_need_up_to_their_cap() {
        let aiw = |name: &str, selector: Value| {
            let aiw: crate::api::AIWorkload = serde_json::from_value(serde_json::json!({
                "apiVersion": "hostguard.dev/v1alpha1", "kind": "AIWorkload",
                "metadata": {"name": name, "namespace": "team-a"},
                "spec": {"selector": selector, "provider": "openai"},
            }))
            .expect("AIWorkload");
            std::sync::Arc::new(DeclaredWorkload::from_resource(&aiw).expect("compiles"))
        };
        let mut snapshot = Snapshot::offline(crate::api::ClusterProvider::Azure);
        snapshot.insert_declared(aiw(
            "one",
            serde_json::json!({"matchLabels": {"app": "d0"}}),
        ));
        snapshot.insert_declared(aiw(
            "three",
            serde_json::json!({"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["d1", "d2", "d3"]}]}),
        ));
        snapshot.insert_declared(aiw(
            "every",
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
        ));
        let policies = PolicySet::builtin();
        let mut tally = Tally::default();
        for n in 0..MAX_MATCHED + 10 {
            evaluate_into(
                &mut tally,
                &violating(&format!("d{n}")),
                &policies,
                &snapshot,
            );
        }
        let matched = |name: &str| &tally.declared[&("team-a".to_string(), name.to_string())];
        for (name, len, capacity) in [
            ("one", 1, 1),
            ("three", 3, 4),
            ("every", MAX_MATCHED, MAX_MATCHED),
        ] {
            let t = matched(name);
            assert_eq!(t.matched.len(), len, "{name}");
            assert_eq!(t.matched.capacity(), capacity, "{name}");
        }
        assert_eq!(matched("every").total, MAX_MATCHED + 10);
        assert_eq!(matched("one").matched[0].name, "d0");
    }

    #[test]
    fn absorbing_is_recording_one_by_one_whether_or_not_the_tally_is_empty() {
        for reporting in [false, true] {
            let whole = tally_of(0..30, reporting);
            assert_eq!(whole.objects, 30);
            assert!(!whole.events.is_empty());

            let mut from_empty = tally_of(0..0, reporting);
            from_empty.absorb(whole.clone());
            assert_eq!(from_empty, whole, "reporting: {reporting}");

            let mut in_two = tally_of(0..12, reporting);
            in_two.absorb(tally_of(12..30, reporting));
            assert_eq!(in_two, whole, "reporting: {reporting}");
        }
        // An empty tally that does not gather reports, given one that does, gathers them.
        let mut plain = Tally::default();
        plain.absorb(tally_of(0..3, true));
        assert_eq!(plain.reports, tally_of(0..3, true).reports);
        assert!(plain.reports.is_some());
    }

    #[test]
    fn an_error_status_is_the_api_servers_status_or_one_made_from_the_code() {
        let written = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","message":"too old resource version","code":410}"#;
        let kube::Error::Api(status) = api_error(hyper::StatusCode::GONE, written) else {
            panic!("not an API error");
        };
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        assert!(is_expired(&kube::Error::Api(status)));

        // A proxy's page in front of the API server: the code and the text, as kube's client
        // reports it.
        let page = "\n<html><body>502 Bad Gateway</body></html>\n";
        let kube::Error::Api(status) = api_error(hyper::StatusCode::BAD_GATEWAY, page) else {
            panic!("not an API error");
        };
        assert_eq!(status.code, 502);
        assert_eq!(status.message, page.trim());
        assert!(!is_expired(&kube::Error::Api(status)));
    }
}
