//! AdmissionReview (`admission.k8s.io/v1`) to engine request, and engine decision to
//! AdmissionReview response.
//!
//! This translation is shared by `hostguard review` and the webhook server, so the two cannot
//! answer differently. Failure semantics (design.md): a body that is not JSON at all is the
//! caller's error ([`NotJson`]: HTTP 400, exit 2); JSON that is not a readable review gets an
//! `allowed: false` response naming what is wrong, with the uid echoed when it can be found; a
//! denial lists every violation in `status.message` and `status.details.causes`.
//!
//! The response is built from kube-core's `Status` types. The request is read into this module's
//! own `ReviewIn`/`RequestIn` rather than kube-core's `AdmissionReview<DynamicObject>`: kube-core
//! holds the object as a `DynamicObject` whose data is a `serde_json::Value` too, so it is not
//! faster (criterion `parse_review`, the benchmark review, 2 vCPU AMD EPYC, 2026-12-02: 15.0 µs
//! here, 15.9 µs for kube-core's review and its conversion to an `AdmissionRequest`), and its
//! derived types cannot see in the same pass what hostguard refuses: envelope keys in another
//! letter case, which Go's `encoding/json` would read (see `Miscased`).

use base64::Engine as _;
use kube_core::response::{StatusCause, StatusDetails, StatusSummary};
use kube_core::{GroupVersionKind, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::object::{Object, ReviewField, ReviewObject};
use crate::policy::{self, Decision, Operation, PolicySet, Verdict, Warning};
use crate::snapshot::Snapshot;
use crate::workload::{TypeFields, WorkloadKind, WorkloadView};

/// The only AdmissionReview version hostguard speaks.
pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
const ADMISSION_KIND: &str = "AdmissionReview";

/// Which webhook is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    /// `/validate`: admit or deny, with warnings.
    Validate,
    /// `/mutate`: admit, with a JSON Patch pinning governed Pods.
    Mutate,
}

impl Webhook {
    /// Both webhooks, in the order the CLI lists them.
    pub const ALL: [Webhook; 2] = [Webhook::Validate, Webhook::Mutate];

    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Validate => "validate",
            Webhook::Mutate => "mutate",
        }
    }
}

/// The body is not JSON at all.
#[derive(Debug, Error)]
#[error("the body is not JSON: {0}")]
pub struct NotJson(String);

impl From<serde_json::Error> for NotJson {
    fn from(e: serde_json::Error) -> Self {
        NotJson(e.to_string())
    }
}

/// An AdmissionReview as read. `R` is how its request is read: with the objects read in the
/// same pass ([`FastRequestIn`]), as their JSON text ([`RequestIn`] of `RawValue`), or as
/// trees when an unreadable review is read again to name its fault.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<R> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<R>,
    /// The other keys of the review, looked at only for miscased field names.
    #[serde(flatten)]
    miscased: Miscased<false>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<O> {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    operation: String,
    object: Option<O>,
    old_object: Option<O>,
    #[serde(default)]
    dry_run: Option<bool>,
    /// The other keys of the request, looked at only for miscased field names.
    #[serde(flatten)]
    miscased: Miscased<true>,
}

/// One object of a request, as the review's parse left it: both borrow from the body.
#[derive(Debug)]
enum ObjectIn<'a> {
    /// Read into its workload view in the same pass: a built-in pod-bearing kind that
    /// `request.kind` (which the API server writes before the objects) had already named.
    Read(Box<(TypeFields, WorkloadView<'a>)>),
    /// Kept as its text, to be read once the request is known.
    Text(&'a RawValue),
}

/// A request read with its objects in the same pass (see [`ObjectIn::Read`]): the fields of
/// [`RequestIn`], objects aside, and the objects.
///
/// Read by a visitor of its own rather than derived, because how the object is read depends on
/// `request.kind`, read before it. It accepts exactly what [`RequestIn`] accepts, or less: any
/// error (a repeated or mistyped field, an object that is not of its kind's shape) sends the
/// whole review to the reading with [`RequestIn`], which gives the answer it always gave.
#[derive(Debug)]
struct FastRequestIn<'a> {
    /// The request, its `object` and `oldObject` taken out.
    request: RequestIn<&'a RawValue>,
    object: Option<ObjectIn<'a>>,
    old_object: Option<ObjectIn<'a>>,
}

impl<'a> From<RequestIn<&'a RawValue>> for FastRequestIn<'a> {
    /// A request read with [`RequestIn`]: its objects as text.
    fn from(mut request: RequestIn<&'a RawValue>) -> Self {
        FastRequestIn {
            object: request.object.take().map(ObjectIn::Text),
            old_object: request.old_object.take().map(ObjectIn::Text),
            request,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FastRequestIn<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FastRequestVisitor)
    }
}

struct FastRequestVisitor;

impl<'de> serde::de::Visitor<'de> for FastRequestVisitor {
    type Value = FastRequestIn<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an AdmissionRequest")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::{Error, IgnoredAny};
        fn once<T, E: Error>(slot: &mut Option<T>, value: T, field: &'static str) -> Result<(), E> {
            match slot.replace(value) {
                Some(_) => Err(E::duplicate_field(field)),
                None => Ok(()),
            }
        }
        let mut uid: Option<String> = None;
        let mut kind: Option<GroupVersionKind> = None;
        let mut sub_resource: Option<Option<String>> = None;
        let mut name: Option<Option<String>> = None;
        let mut namespace: Option<Option<String>> = None;
        let mut operation: Option<String> = None;
        let mut object: Option<Option<ObjectIn<'de>>> = None;
        let mut old_object: Option<Option<ObjectIn<'de>>> = None;
        let mut dry_run: Option<Option<bool>> = None;
        let mut miscased = Miscased::<true>::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "uid" => once(&mut uid, map.next_value()?, "uid")?,
                "kind" => once(&mut kind, map.next_value()?, "kind")?,
                "subResource" => once(&mut sub_resource, map.next_value()?, "subResource")?,
                "name" => once(&mut name, map.next_value()?, "name")?,
                "namespace" => once(&mut namespace, map.next_value()?, "namespace")?,
                "operation" => once(&mut operation, map.next_value()?, "operation")?,
                "dryRun" => once(&mut dry_run, map.next_value()?, "dryRun")?,
                "object" => {
                    let value = map.next_value_seed(ObjectSeed(kind.as_ref()))?;
                    once(&mut object, value, "object")?;
                }
                "oldObject" => {
                    let value = map.next_value_seed(ObjectSeed(kind.as_ref()))?;
                    once(&mut old_object, value, "oldObject")?;
                }
                other => {
                    map.next_value::<IgnoredAny>()?;
                    miscased.note(other);
                }
            }
        }
        Ok(FastRequestIn {
            request: RequestIn {
                uid: uid.ok_or_else(|| A::Error::missing_field("uid"))?,
                kind: kind.ok_or_else(|| A::Error::missing_field("kind"))?,
                sub_resource: sub_resource.flatten(),
                name: name.flatten(),
                namespace: namespace.flatten(),
                operation: operation.ok_or_else(|| A::Error::missing_field("operation"))?,
                object: None,
                old_object: None,
                dry_run: dry_run.flatten(),
                miscased,
            },
            object: object.flatten(),
            old_object: old_object.flatten(),
        })
    }
}

/// Reads `request.object` or `request.oldObject`: into its view when `request.kind`, read
/// already, names a built-in pod-bearing kind; as text otherwise. `null` is no object.
struct ObjectSeed<'k>(Option<&'k GroupVersionKind>);

impl<'de> serde::de::DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Option<ObjectIn<'de>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let kind = self
            .0
            .and_then(|gvk| WorkloadKind::from_parts(&gvk.group, &gvk.version, &gvk.kind))
            .filter(|k| !matches!(k, WorkloadKind::Other(_)));
        match kind {
            Some(kind) => d.deserialize_option(ObjectVisitor(kind)),
            None => Ok(Option::<&'de RawValue>::deserialize(d)?.map(ObjectIn::Text)),
        }
    }
}

struct ObjectVisitor(WorkloadKind);

impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
    type Value = Option<ObjectIn<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let read = crate::workload::read_from(self.0, d)?;
        Ok(Some(ObjectIn::Read(Box::new(read))))
    }
}

/// What the request was about, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: String,
    pub sub_resource: Option<String>,
    pub dry_run: bool,
}

/// The AdmissionReview sent back.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut {
    pub api_version: String,
    pub kind: String,
    pub response: ResponseOut,
}

/// `response` of an AdmissionReview.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOut {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// Base64 of the JSON Patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub audit_annotations: std::collections::BTreeMap<String, String>,
}

/// A review answered: the response, and what the engine decided (None when the review could not
/// be read).
#[derive(Debug, Clone)]
pub struct Answer {
    pub review: ReviewOut,
    pub info: RequestInfo,
    pub decision: Option<Decision>,
    /// Why the review was refused unread, when it was.
    pub unreadable: Option<String>,
}

/// How a review ended, for metrics and logs: the verdict, or a refusal of the review itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Decided(Verdict),
    /// The review could not be read; the answer says why (`allowed: false`).
    Invalid,
}

impl Outcome {
    /// `deny`, `allow`, `warn`, `skipped`, or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Decided(verdict) => verdict.as_str(),
            Outcome::Invalid => "invalid",
        }
    }
}

impl Answer {
    pub fn outcome(&self) -> Outcome {
        match &self.decision {
            Some(d) => Outcome::Decided(d.verdict),
            None => Outcome::Invalid,
        }
    }
}

/// A review that was read, ready for a decision: its body, and what was read from it.
///
/// The parts borrow their strings from the body (see [`crate::workload::Text`]): a typical
/// review's ninety-odd strings are not copied one by one. The body is the review's text, kept
/// until the review is dropped; it is owned here, with what borrows from it, so that a review can
/// still be moved to another thread (the webhook decides large ones off its reactor).
#[derive(Debug)]
pub struct ParsedReview(ReviewCell);

self_cell::self_cell!(
    /// The body, and the parts that borrow from it.
    struct ReviewCell {
        owner: Box<str>,
        #[covariant]
        dependent: ReviewParts,
    }
    impl {Debug}
);

/// What a review's parse read, borrowing from its body.
#[derive(Debug)]
struct ReviewParts<'a> {
    /// The request; its objects are moved to `object` and `old_object`.
    request: RequestIn<&'a RawValue>,
    /// `request.object` and `request.oldObject`, read (CREATE and UPDATE only).
    object: Option<ReviewObject<'a>>,
    old_object: Option<ReviewObject<'a>>,
    operation: Operation,
    info: RequestInfo,
}

impl ParsedReview {
    /// What the request is about, for logs and metrics.
    pub fn info(&self) -> &RequestInfo {
        &self.parts().info
    }

    fn parts(&self) -> &ReviewParts<'_> {
        self.0.borrow_dependent()
    }

    /// Names of the ConfigMaps the object's containers read (`configMapKeyRef`, `configMapRef`),
    /// which live in the request's namespace. The webhook makes sure they are cached before it
    /// decides, so that the decision itself does no I/O.
    pub fn config_map_refs(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        if let Some(object) = &self.parts().object {
            // A pod-bearing object read from its text is walked as text, to keep its tree
            // unbuilt. (The text is valid JSON, so the walk does not fail; were it to, the tree
            // is walked instead.)
            let walked = object.text_view().is_some()
                && crate::workload::config_map_refs_text(object.text(), &mut out).is_ok();
            if !walked {
                crate::workload::config_map_refs(object.tree(), &mut out);
            }
        }
        out
    }

    /// The related objects the object names (an AIServiceBackend's Backend, an
    /// AIGatewayRoute's AIServiceBackends), which the webhook fetches when its watches have not
    /// delivered them yet.
    pub fn related_references(&self) -> Vec<crate::snapshot::RelatedKey> {
        let parts = self.parts();
        let Some(object) = &parts.object else {
            return Vec::new();
        };
        if object.text_view().is_some() {
            // A built-in pod-bearing kind: it names no object of an adapter's.
            return Vec::new();
        }
        crate::detect::adapters::related_references(
            object.tree(),
            parts.request.namespace.as_deref().unwrap_or("default"),
        )
    }

    /// The name of the ConfigMap under review when it holds a known config file and is being
    /// created or updated: the webhook then lists the Pods that read it (see
    /// [`policy::ConfigMapReaders`]) and decides with [`decide_with_readers`].
    pub fn config_file_map(&self) -> Option<&str> {
        let parts = self.parts();
        if !matches!(parts.operation, Operation::Create | Operation::Update) {
            return None;
        }
        let object = parts.object.as_ref()?;
        if object.text_view().is_some() {
            return None;
        }
        policy::config_file_map_name(object.tree())
    }
}

/// The outcome of reading a body: a review to decide on, or the refusal already written.
#[derive(Debug)]
pub enum Parsed {
    Review(Box<ParsedReview>),
    Refused(Box<Answer>),
}

/// Reads an AdmissionReview body. `Err` only when the body is not JSON at all.
pub fn parse(body: &[u8]) -> Result<Parsed, NotJson> {
    // JSON is UTF-8. serde_json does not check the bytes of fields it skips, so without this a
    // body with invalid bytes in a field hostguard does not read would still be decided.
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            return Err(NotJson(format!(
                "invalid UTF-8 at byte {}",
                e.valid_up_to()
            )));
        }
    };
    // What a review costs in memory is its number of JSON values (each becomes a node of the
    // tree the engine reads), not its bytes: 3 MiB of `0,0,0…` is 1.5 million nodes. Counted
    // before anything is built, without allocating.
    let shape = json_shape_if_needed(body);
    if shape.values > MAX_JSON_VALUES {
        return Ok(Parsed::Refused(Box::new(too_large(
            &uid_only(body),
            format!(
                "the review holds more than {MAX_JSON_VALUES} JSON values (objects, arrays, strings, numbers), more than hostguard reads in one review"
            ),
        ))));
    }
    // serde_json refuses JSON nested deeper than its recursion limit when it builds a tree, but
    // not in the parts it skips, and the objects are now read in parts. A body that deep is
    // refused as serde_json refuses it, whichever part is deep.
    if shape.depth >= SERDE_JSON_DEPTH_LIMIT {
        serde_json::from_str::<Value>(text)?;
    }
    // The body is kept with what is read from it, which borrows from it. (One copy of the
    // text, as the objects read in the parse used to make to find their text again.)
    match ReviewCell::try_new(Box::from(text), |text| read_review(text)) {
        Ok(cell) => Ok(Parsed::Review(Box::new(ParsedReview(cell)))),
        Err(Unread::Refused(answer)) => Ok(Parsed::Refused(answer)),
        Err(Unread::NotJson(e)) => Err(e),
    }
}

/// Why a body gave no review to decide on.
enum Unread {
    /// Refused, with the answer written.
    Refused(Box<Answer>),
    NotJson(NotJson),
}

/// A review refused unread, with `message`.
fn unread(uid: &str, message: String) -> Unread {
    Unread::Refused(Box::new(refusal(uid, message)))
}

impl From<serde_json::Error> for Unread {
    fn from(e: serde_json::Error) -> Self {
        Unread::NotJson(e.into())
    }
}

/// Reads a review from its validated text (see [`parse`]).
fn read_review(text: &str) -> Result<ReviewParts<'_>, Unread> {
    // From the validated text: serde_json then does not check each string's UTF-8 again. First
    // with the objects read in the same pass (the common case: one reading of the text);
    // whatever that reading refuses is read again with the objects kept as text, read below,
    // which answers as hostguard always did. Neither tracks the path: only an unreadable body
    // pays for a third pass that names the field at fault.
    let review: ReviewIn<FastRequestIn> = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(_) => match serde_json::from_str::<ReviewIn<RequestIn<&RawValue>>>(text) {
            Ok(r) => ReviewIn {
                api_version: r.api_version,
                kind: r.kind,
                request: r.request.map(FastRequestIn::from),
                miscased: r.miscased,
            },
            Err(_) => {
                // JSON at all? If not, the caller's error; if so, refuse with the reason.
                let value: Value = serde_json::from_str(text)?;
                let uid = value
                    .pointer("/request/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let message =
                    match serde_path_to_error::deserialize::<_, ReviewIn<RequestIn<Value>>>(&value)
                    {
                        Ok(_) => "the AdmissionReview cannot be read".to_string(),
                        Err(e) => {
                            let path = e.path().to_string();
                            if path == "." {
                                e.into_inner().to_string()
                            } else {
                                format!("{path}: {}", e.into_inner())
                            }
                        }
                    };
                return Err(unread(uid, message));
            }
        },
    };
    if review.api_version != ADMISSION_API_VERSION || review.kind != ADMISSION_KIND {
        let uid = review
            .request
            .as_ref()
            .map(|r| r.request.uid.as_str())
            .unwrap_or("");
        return Err(unread(
            uid,
            format!(
                "apiVersion/kind is {:?}/{:?}; hostguard answers only {ADMISSION_API_VERSION} {ADMISSION_KIND} (set admissionReviewVersions: [v1])",
                review.api_version, review.kind
            ),
        ));
    }
    let miscased = review.miscased.message().or_else(|| {
        review
            .request
            .as_ref()
            .and_then(|r| r.request.miscased.message())
    });
    if let Some(message) = miscased {
        let uid = review
            .request
            .as_ref()
            .map_or("", |r| r.request.uid.as_str());
        return Err(unread(uid, message));
    }
    let Some(FastRequestIn {
        request,
        object: mut object_in,
        old_object: mut old_object_in,
    }) = review.request
    else {
        return Err(unread("", "the AdmissionReview has no request".into()));
    };
    if request.uid.len() > MAX_UID_BYTES {
        return Err(unread(
            &request.uid,
            format!(
                "request.uid: is {} bytes long; the API server's uids are UUIDs (hostguard reads at most {MAX_UID_BYTES} bytes)",
                request.uid.len()
            ),
        ));
    }

    let operation = match request.operation.as_str() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        other => {
            return Err(unread(
                &request.uid,
                format!("request.operation: {other:?} is not CREATE, UPDATE, DELETE or CONNECT"),
            ));
        }
    };
    let (mut object, mut old_object) = (None, None);
    if matches!(operation, Operation::Create | Operation::Update) {
        let objects = (object_in.take(), old_object_in.take());
        match check_objects(&request, objects, text, operation) {
            Ok((new, old)) => (object, old_object) = (Some(new), old),
            Err(message) => return Err(unread(&request.uid, message)),
        }
        if let Some(message) = object.as_ref().and_then(too_large_to_judge) {
            return Err(Unread::Refused(Box::new(too_large(&request.uid, message))));
        }
    }
    let info = RequestInfo {
        uid: request.uid.clone(),
        kind: request.kind.kind.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        name: request
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| match &object {
                Some(object) => object.name().map(String::from),
                // DELETE and CONNECT: the object, if any, is not judged; its name is still logged.
                None => match &object_in {
                    Some(ObjectIn::Read(read)) => Some(read.1.name.to_string()),
                    Some(ObjectIn::Text(text)) => serde_json::from_str::<Value>(text.get())
                        .ok()
                        .and_then(|o| o.pointer("/metadata/name")?.as_str().map(String::from)),
                    None => None,
                },
            })
            .unwrap_or_default(),
        operation: request.operation.clone(),
        sub_resource: request.sub_resource.clone(),
        dry_run: request.dry_run.unwrap_or(false),
    };
    Ok(ReviewParts {
        request,
        object,
        old_object,
        operation,
        info,
    })
}

/// The most containers (of every kind, in all) judged in one object. Kubernetes sets no such
/// limit, but a pod with hundreds of containers is not a workload anyone runs; the cap keeps the
/// cost of a review proportional to what a real one needs.
pub const MAX_CONTAINERS: usize = 256;
/// The most `env` and `envFrom` entries judged in one object, over all its containers.
pub const MAX_ENV_ENTRIES: usize = 8192;
/// The most `command` and `args` entries judged in one object, over all its containers.
pub const MAX_ARGS: usize = 8192;
/// The most findings (endpoints of AI clients) judged in one object.
pub const MAX_FINDINGS: usize = 1024;
/// Denial causes listed one by one in a response; the rest are counted in one last cause.
pub const MAX_CAUSES: usize = 32;
/// Warnings sent one by one; the rest are counted in one last warning. (The API server keeps at
/// most 4 KiB of warnings in all anyway.)
pub const MAX_WARNINGS: usize = 16;
/// The longest cause message; a longer one (a huge quoted value) is cut, its field path first.
pub const MAX_CAUSE_BYTES: usize = 1024;
/// The longest `status.message`.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 8 * 1024;

/// The most JSON values (objects, arrays, strings, numbers, booleans, nulls) read in one review.
/// A Deployment review with `managedFields` from a few managers has thousands; the bound lets
/// real objects up to the API server's size limits through and keeps the tree of the largest
/// review allowed to tens of MiB.
pub const MAX_JSON_VALUES: usize = 200_000;

/// `request.uid` alone, read without building anything else ("" when there is none).
fn uid_only(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Review {
        request: Option<Request>,
    }
    #[derive(Deserialize)]
    struct Request {
        uid: Option<String>,
    }
    serde_json::from_slice::<Review>(body)
        .ok()
        .and_then(|r| r.request)
        .and_then(|r| r.uid)
        .unwrap_or_default()
}

/// How deep serde_json lets JSON nest when it builds a tree (its `remaining_depth`, 128): the
/// 128th nested array or object is refused.
const SERDE_JSON_DEPTH_LIMIT: usize = 128;

/// What [`json_shape`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// JSON values (objects, arrays, strings, keys included, numbers, `true`/`false`/`null`),
    /// counted up to one past the bound given.
    values: usize,
    /// The deepest nesting of arrays and objects.
    depth: usize,
}

/// [`json_shape`] of `body`, or a shape within both bounds when the body is too small to break
/// them: every JSON value takes at least one byte of its own, and every level of nesting an
/// opening bracket, so a body no longer than [`MAX_JSON_VALUES`] bytes with fewer than
/// [`SERDE_JSON_DEPTH_LIMIT`] brackets (inside strings or not) breaks neither. Counting brackets
/// is a fraction of the scan's cost, and real reviews pass it.
fn json_shape_if_needed(body: &[u8]) -> Shape {
    if body.len() <= MAX_JSON_VALUES {
        let brackets = count_opening_brackets(body);
        if brackets < SERDE_JSON_DEPTH_LIMIT {
            return Shape {
                values: body.len(),
                depth: brackets,
            };
        }
    }
    json_shape(body, MAX_JSON_VALUES)
}

/// The number of `{` and `[` bytes in `body`. A branch-free count over every byte, which the
/// compiler vectorises: a review has a bracket every few dozen bytes, and stopping at each one
/// (`memchr2_iter`) cost more than reading them all (callgrind: 5.8 k instructions for a 3.5 KB
/// review, against about 1.7 k).
fn count_opening_brackets(body: &[u8]) -> usize {
    // Counted in blocks of at most 255 bytes into a `u8`, so that the compiler can keep a
    // byte lane per input byte; a `usize` per byte does not vectorise. `[` (0x5B) and `{`
    // (0x7B) differ only in bit 0x20, and no other byte sets to 0x7B with it.
    body.chunks(255)
        .map(|block| {
            let in_block = block
                .iter()
                .fold(0u8, |n, &b| n + u8::from((b | 0x20) == b'{'));
            usize::from(in_block)
        })
        .sum()
}

/// The number of JSON values in `body` (up to one past `max`, where the count stops) and its
/// deepest nesting. A scan of the bytes, not a parse (a parse would cost as much as the
/// review's own): it counts where each value token starts, which for JSON is the parse's count,
/// and for text that is not JSON is a number the parse that follows refuses anyway. Strings are
/// skipped to their closing quote, so nothing inside one counts.
fn json_shape(body: &[u8], max: usize) -> Shape {
    let mut values = 0usize;
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                values += 1;
                i += 1;
                // To the closing quote: a backslash escapes the byte after it.
                while let Some(j) = body
                    .get(i..)
                    .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                {
                    if body[i + j] == b'\\' {
                        i += j + 2;
                    } else {
                        i += j + 1;
                        break;
                    }
                }
                if i > body.len() {
                    break;
                }
            }
            b'{' | b'[' => {
                values += 1;
                depth += 1;
                deepest = deepest.max(depth);
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                values += 1;
                i += 1;
                while i < body.len()
                    && matches!(body[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-' | b'a'..=b'z')
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        if values > max {
            break;
        }
    }
    Shape {
        values,
        depth: deepest,
    }
}

/// Why an object is too large to judge, if it is: more containers, env entries or arguments
/// than hostguard judges. Counted before anything is detected, so that a review with 100,000
/// containers costs a count, not a decision (and the whole review is bounded by
/// [`MAX_JSON_VALUES`] before it is read at all).
fn too_large_to_judge(object: &ReviewObject) -> Option<String> {
    let counts = match object.text_view() {
        Some(view) => view_counts(view)?,
        None => tree_counts(object.tree())?,
    };
    let (at, containers, env, args) = counts;
    let over = |what: &str, n: usize, max: usize| {
        (n > max).then(|| {
            format!("{at} has {n} {what}, more than the {max} hostguard judges in one object")
        })
    };
    over("containers", containers, MAX_CONTAINERS)
        .or_else(|| over("env and envFrom entries", env, MAX_ENV_ENTRIES))
        .or_else(|| over("command and args entries", args, MAX_ARGS))
}

/// Where a built-in kind keeps its pod spec, and its containers, env entries and arguments.
type Counts = (&'static str, usize, usize, usize);

/// [`Counts`] of a pod-bearing object's tree; None for an object of another kind.
fn tree_counts(object: &Value) -> Option<Counts> {
    let api_version = object.get("apiVersion").and_then(Value::as_str)?;
    let kind = object.get("kind").and_then(Value::as_str)?;
    let kind = crate::workload::WorkloadKind::from_type(api_version, kind)?;
    let template = crate::workload::template_value(kind, object)?;
    let spec = if kind == crate::workload::WorkloadKind::Pod {
        template
    } else {
        template.get("spec")?
    };
    let items = |v: &Value, key: &str| -> usize {
        v.get(key).and_then(Value::as_array).map_or(0, Vec::len)
    };
    let (mut containers, mut env, mut args) = (0, 0, 0);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            containers += 1;
            env += items(c, "env") + items(c, "envFrom");
            args += items(c, "command") + items(c, "args");
        }
    }
    Some((spec_path(kind), containers, env, args))
}

/// [`Counts`] of a workload view read from the text: the same numbers as [`tree_counts`] of
/// the same object, since the view holds every element of those lists.
fn view_counts(view: &crate::workload::WorkloadView) -> Option<Counts> {
    let template = view.templates.first()?;
    fn len<T>(list: &Option<Vec<T>>) -> usize {
        list.as_ref().map_or(0, Vec::len)
    }
    let (mut containers, mut env, mut args) = (0, 0, 0);
    let spec = &template.spec;
    for list in [
        &spec.init_containers,
        &spec.containers,
        &spec.ephemeral_containers,
    ] {
        for c in list.iter().flatten() {
            containers += 1;
            env += len(&c.env) + len(&c.env_from);
            args += len(&c.command) + len(&c.args);
        }
    }
    Some((spec_path(view.kind), containers, env, args))
}

fn spec_path(kind: crate::workload::WorkloadKind) -> &'static str {
    match kind {
        crate::workload::WorkloadKind::Pod => "spec",
        crate::workload::WorkloadKind::CronJob => "spec.jobTemplate.spec.template.spec",
        _ => "spec.template.spec",
    }
}

/// A review refused because its object is too large to judge: never admitted, whatever it is.
fn too_large(uid: &str, message: String) -> Answer {
    let mut answer = refusal(uid, message.clone());
    if let Some(status) = answer.review.response.status.as_mut() {
        status.code = 413;
        status.reason = "RequestEntityTooLarge".into();
        status.message =
            format!("hostguard refuses to admit an object too large to judge: {message}");
    }
    answer
}

/// `text` cut to at most `max` bytes at a character boundary, with a mark when cut.
pub fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}...", &text[..end]))
}

/// The longest `request.uid` read. The API server's uids are UUIDs (36 bytes); a longer one
/// comes from a client that is not the API server, and is refused rather than copied into every
/// log line and metric.
pub const MAX_UID_BYTES: usize = 128;

/// CREATE and UPDATE must carry the object they are about, and the object must be of the type
/// `request.kind` names: hostguard judges what the API server will store, never less.
///
/// The API server builds the review from the versioned object it is admitting
/// (`CreateV1AdmissionReview` in k8s.io/apiserver: `kind` is the versioned kind, `object` the
/// object converted to it), so the two always agree and `object` is only null for DELETE and
/// CONNECT. A review where they disagree was not written by the API server, or is read wrong:
/// either way judging the object by its own type field could skip a Deployment dressed as a
/// ConfigMap, so it is refused. An object without `apiVersion`/`kind` (encoders may leave
/// TypeMeta empty) is read as `request.kind` says.
fn check_objects<'a>(
    request: &RequestIn<&'a RawValue>,
    (object, old_object): (Option<ObjectIn<'a>>, Option<ObjectIn<'a>>),
    body: &'a str,
    operation: Operation,
) -> Result<(ReviewObject<'a>, Option<ReviewObject<'a>>), String> {
    let gvk = &request.kind;
    if gvk.kind.is_empty() || gvk.version.is_empty() {
        return Err(format!(
            "request.kind: {:?} does not name a kind and version; hostguard cannot tell what the object is",
            gvk_string(gvk)
        ));
    }
    let Some(object) = object else {
        return Err(format!(
            "request.object: a {} review must carry the object (it is missing or null), so there is nothing to judge",
            operation.as_str()
        ));
    };
    let read = |object, field| match object {
        ObjectIn::Text(text) => {
            ReviewObject::read(text, body, api_version_of(gvk), gvk.kind.clone(), field)
        }
        ObjectIn::Read(read) => {
            let (types, view) = *read;
            ReviewObject::read_in_review(
                types,
                view,
                body,
                api_version_of(gvk),
                gvk.kind.clone(),
                field,
            )
        }
    };
    let object = read(object, ReviewField::Object)?;
    let old = old_object
        .map(|old| read(old, ReviewField::OldObject))
        .transpose()?;
    Ok((object, old))
}

/// `group/version` as written in `apiVersion` (the core group has no prefix).
fn api_version_of(gvk: &GroupVersionKind) -> String {
    if gvk.group.is_empty() {
        gvk.version.clone()
    } else {
        format!("{}/{}", gvk.group, gvk.version)
    }
}

fn gvk_string(gvk: &GroupVersionKind) -> String {
    format!("{} {}", api_version_of(gvk), gvk.kind)
}

/// Fields of `admission.k8s.io/v1` AdmissionReview and AdmissionRequest, as the API server
/// writes them.
const REVIEW_FIELDS: &[&str] = &["apiVersion", "kind", "request", "response"];
const REQUEST_FIELDS: &[&str] = &[
    "uid",
    "kind",
    "resource",
    "subResource",
    "requestKind",
    "requestResource",
    "requestSubResource",
    "name",
    "namespace",
    "operation",
    "userInfo",
    "object",
    "oldObject",
    "dryRun",
    "options",
];

/// A review field spelled with other letter case than the API server's, e.g. `Object`.
///
/// The API server decodes with sigs.k8s.io/json (`UnmarshalCaseSensitivePreserveInts`, used by
/// k8s.io/apimachinery's JSON serializer), which matches object keys case-sensitively, as serde
/// does here; Go's `encoding/json` would instead match `Object` to `object` (its `EqualFold`).
/// The API server never writes such a key, so a review that has one was written by something
/// else for a decoder that might read it: refused, rather than judged without the field. Only
/// the envelope (review and request) is checked: the object inside is the API server's own
/// serialisation of a typed object.
///
/// Collected in the one parse of the review: the keys of a level that are no field of
/// [`ReviewIn`] (or [`RequestIn`] when `REQUEST`) reach this through `#[serde(flatten)]`, and the
/// first that folds to a field name of that level is kept. (A separate walk over the whole body
/// cost about a tenth of an answer.)
#[derive(Debug, Default)]
struct Miscased<const REQUEST: bool> {
    /// The key as written and the field it folds to.
    first: Option<(String, &'static str)>,
}

impl<const REQUEST: bool> Miscased<REQUEST> {
    const KNOWN: &'static [&'static str] = if REQUEST {
        REQUEST_FIELDS
    } else {
        REVIEW_FIELDS
    };
    const PATH: &'static str = if REQUEST { "request." } else { "" };

    /// Notes `key`, a key of this level that is no field of it, if it is the first that folds
    /// to one.
    fn note(&mut self, key: &str) {
        if self.first.is_none()
            && !Self::KNOWN.contains(&key)
            && let Some(field) = Self::KNOWN.iter().find(|k| folds_to(key, k))
        {
            self.first = Some((key.to_string(), field));
        }
    }

    fn message(&self) -> Option<String> {
        let (key, field) = self.first.as_ref()?;
        let path = Self::PATH;
        Some(format!(
            "{path}{key:?}: field names are case-sensitive and the API server writes {path}{field}; refusing a review that a case-insensitive decoder would read differently"
        ))
    }
}

impl<'de, const REQUEST: bool> Deserialize<'de> for Miscased<REQUEST> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        struct Keys<const REQUEST: bool>;
        impl<'de, const REQUEST: bool> Visitor<'de> for Keys<REQUEST> {
            type Value = Miscased<REQUEST>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the other fields of an AdmissionReview")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Miscased::<REQUEST>::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    map.next_value::<IgnoredAny>()?;
                    out.note(&key);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Keys::<REQUEST>)
    }
}

/// Whether `key` equals `field` under Go's `strings.EqualFold` (simple Unicode case folding):
/// besides ASCII case, the Kelvin sign folds to `k` and the long s to `s`.
fn folds_to(key: &str, field: &str) -> bool {
    let fold = |c: char| match c {
        '\u{212A}' => 'k',
        '\u{017F}' => 's',
        c => c.to_ascii_lowercase(),
    };
    key.chars().map(fold).eq(field.chars().map(fold))
}

/// Decides on a review that was read. Pure: the same review, policies and snapshot give the
/// same response.
pub fn decide(
    review: &ParsedReview,
    webhook: Webhook,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Answer {
    decide_with_readers(
        review,
        policy::ConfigMapReaders::NotLooked,
        webhook,
        policies,
        snapshot,
    )
}

/// [`decide`], given the Pods that read the ConfigMap under review (see
/// [`ParsedReview::config_file_map`]).
pub fn decide_with_readers(
    review: &ParsedReview,
    readers: policy::ConfigMapReaders<'_>,
    webhook: Webhook,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Answer {
    let review = review.parts();
    let request = &review.request;
    let decision = policy::evaluate_with_readers(
        &policy::Request {
            operation: review.operation,
            object: review.object.as_ref().map(Object::from),
            old_object: review.old_object.as_ref().map(Object::from),
            namespace: request.namespace.as_deref(),
        },
        readers,
        policies,
        snapshot,
    );
    if decision.findings.len() > MAX_FINDINGS {
        let mut answer = too_large(
            &request.uid,
            format!(
                "the object has {} AI client endpoints, more than the {MAX_FINDINGS} hostguard judges in one object",
                decision.findings.len()
            ),
        );
        answer.info = review.info.clone();
        return answer;
    }
    let response = match webhook {
        Webhook::Validate => validate_response(&request.uid, &review.info, &decision),
        Webhook::Mutate => mutate_response(&request.uid, &decision),
    };
    Answer {
        review: ReviewOut {
            api_version: ADMISSION_API_VERSION.into(),
            kind: ADMISSION_KIND.into(),
            response,
        },
        info: review.info.clone(),
        decision: Some(decision),
        unreadable: None,
    }
}

/// Answers one AdmissionReview body: [`parse`] then [`decide`].
pub fn answer(
    body: &[u8],
    webhook: Webhook,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Result<Answer, NotJson> {
    Ok(match parse(body)? {
        Parsed::Review(review) => decide(&review, webhook, policies, snapshot),
        Parsed::Refused(answer) => *answer,
    })
}

fn refusal(uid: &str, message: String) -> Answer {
    // What the body quotes back (a kind, a key) is the client's: bounded like any message.
    let message = truncate(&message, MAX_STATUS_MESSAGE_BYTES - 64).into_owned();
    let response = ResponseOut {
        uid: uid.to_string(),
        allowed: false,
        status: Some(Status {
            status: Some(StatusSummary::Failure),
            code: 400,
            message: format!("hostguard cannot read this AdmissionReview: {message}"),
            reason: "BadRequest".into(),
            metadata: None,
            details: None,
        }),
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
        audit_annotations: Default::default(),
    };
    Answer {
        review: ReviewOut {
            api_version: ADMISSION_API_VERSION.into(),
            kind: ADMISSION_KIND.into(),
            response,
        },
        info: RequestInfo {
            uid: uid.to_string(),
            ..Default::default()
        },
        decision: None,
        unreadable: Some(message),
    }
}

fn audit_annotations(decision: &Decision) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    if decision.verdict != Verdict::Skipped {
        out.insert(
            "decision".to_string(),
            decision.verdict.as_str().to_string(),
        );
        if !decision.governed_by.is_empty() {
            out.insert("governed-by".to_string(), decision.governed_by.join(","));
        }
        // The API server stores audit annotations as `<webhook name>/exempted-by`: every
        // exemption in force leaves a trace in the audit log, whoever made the request.
        if let Some(exempted) = decision.exempted_by() {
            out.insert("exempted-by".to_string(), exempted);
        }
        // kubectl shows each warning cut to a line; the audit log keeps them whole.
        if !decision.warnings.is_empty() {
            let all: Vec<&str> = decision
                .warnings
                .iter()
                .map(|w| w.message.as_str())
                .collect();
            out.insert(
                "warnings".to_string(),
                truncate(&all.join("; "), MAX_STATUS_MESSAGE_BYTES).into_owned(),
            );
        }
    }
    out
}

/// The causes that carry each warning's full detail, after the denials' (kubectl shows the
/// short form of each in `warnings`).
fn warning_causes(warnings: &[Warning], room: usize) -> Vec<StatusCause> {
    warnings
        .iter()
        .take(room)
        .map(|w| StatusCause {
            reason: "Warning".into(),
            message: truncate(&w.message, MAX_CAUSE_BYTES).into_owned(),
            field: truncate(&w.path, MAX_CAUSE_BYTES).into_owned(),
        })
        .collect()
}

fn validate_response(uid: &str, info: &RequestInfo, decision: &Decision) -> ResponseOut {
    let denials: Vec<_> = decision.denials().collect();
    // What the messages name; written only for a message (most reviews are admitted silently).
    let what = || match (info.namespace.as_str(), info.name.as_str()) {
        ("", "") => info.kind.clone(),
        ("", name) => format!("{} {name}", info.kind),
        (ns, name) => format!("{} {ns}/{name}", info.kind),
    };
    // Admitted with warnings: the API server does not consult `status` when allowed, but it is
    // where the full detail of each warning travels for `hostguard review`, logs and audits.
    let admitted_status = (denials.is_empty() && !decision.warnings.is_empty()).then(|| Status {
        status: Some(StatusSummary::Success),
        code: 200,
        message: format!(
            "hostguard admitted {} with {} warnings",
            truncate(&what(), MAX_CAUSE_BYTES),
            decision.warnings.len()
        ),
        reason: String::new(),
        metadata: None,
        details: Some(StatusDetails {
            name: truncate(&info.name, MAX_CAUSE_BYTES).into_owned(),
            kind: info.kind.clone(),
            causes: warning_causes(&decision.warnings, MAX_CAUSES),
            group: String::new(),
            uid: String::new(),
            retry_after_seconds: 0,
        }),
    });
    let status = (!denials.is_empty()).then(|| {
        // Bounded whatever the object: the first causes one by one, each cut to a size that
        // keeps its field path and value readable, then a count of the rest.
        let shown = &denials[..denials.len().min(MAX_CAUSES)];
        let rest = denials.len() - shown.len();
        let mut causes: Vec<StatusCause> = shown
            .iter()
            .map(|v| StatusCause {
                reason: "FieldValueForbidden".into(),
                message: truncate(&v.message, MAX_CAUSE_BYTES).into_owned(),
                field: truncate(&v.path, MAX_CAUSE_BYTES).into_owned(),
            })
            .collect();
        let mut joined: Vec<&str> = causes.iter().map(|c| c.message.as_str()).collect();
        let more = format!("and {rest} more violations");
        if rest > 0 {
            joined.push(&more);
        }
        let message = format!(
            "hostguard denied {}: {}",
            truncate(&what(), MAX_CAUSE_BYTES),
            joined.join("; ")
        );
        let message = truncate(&message, MAX_STATUS_MESSAGE_BYTES).into_owned();
        if rest > 0 {
            causes.push(StatusCause {
                reason: "FieldValueForbidden".into(),
                message: more.clone(),
                field: String::new(),
            });
        }
        let room = MAX_CAUSES.saturating_sub(shown.len());
        causes.extend(warning_causes(&decision.warnings, room));
        Status {
            status: Some(StatusSummary::Failure),
            code: 403,
            message,
            reason: "Forbidden".into(),
            metadata: None,
            details: Some(StatusDetails {
                name: truncate(&info.name, MAX_CAUSE_BYTES).into_owned(),
                kind: info.kind.clone(),
                causes,
                group: String::new(),
                uid: String::new(),
                retry_after_seconds: 0,
            }),
        }
    });
    ResponseOut {
        uid: uid.to_string(),
        allowed: decision.allowed(),
        status: status.or(admitted_status),
        patch_type: None,
        patch: None,
        warnings: bounded_warnings(&decision.warnings),
        audit_annotations: audit_annotations(decision),
    }
}

/// The first [`MAX_WARNINGS`] warnings in their short form (at most
/// [`policy::MAX_WARNING_CHARS`] characters each), and a count of the rest.
fn bounded_warnings(warnings: &[Warning]) -> Vec<String> {
    let mut out: Vec<String> = warnings
        .iter()
        .take(MAX_WARNINGS)
        .map(Warning::short)
        .collect();
    if warnings.len() > MAX_WARNINGS {
        out.push(format!(
            "hostguard: and {} more warnings",
            warnings.len() - MAX_WARNINGS
        ));
    }
    out
}

fn mutate_response(uid: &str, decision: &Decision) -> ResponseOut {
    // The mutating webhook never denies: validation does, after every mutation has run.
    let (patch_type, patch) = if decision.patch.is_empty() {
        (None, None)
    } else {
        let bytes = serde_json::to_vec(&decision.patch).unwrap_or_default();
        (
            Some("JSONPatch".to_string()),
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        )
    };
    ResponseOut {
        uid: uid.to_string(),
        allowed: true,
        status: None,
        patch_type,
        patch,
        warnings: Vec::new(),
        audit_annotations: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count as serde_json's parse makes it (the code before the scan), to compare with.
    fn json_values_over_by_parse(body: &[u8], max: usize) -> Option<usize> {
        use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
        use std::cell::Cell;
        use std::fmt;

        struct Count<'a>(&'a Cell<usize>, usize);
        impl Count<'_> {
            fn one<E: serde::de::Error>(&self) -> Result<(), E> {
                let n = self.0.get() + 1;
                self.0.set(n);
                if n > self.1 {
                    return Err(E::custom("too many values"));
                }
                Ok(())
            }
        }
        impl<'de> DeserializeSeed<'de> for Count<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(self)
            }
        }
        impl<'de> Visitor<'de> for Count<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                self.one::<A::Error>()?;
                // Keys count too: each is a string in the tree.
                while map.next_key::<serde::de::IgnoredAny>()?.is_some() {
                    self.one::<A::Error>()?;
                    map.next_value_seed(Count(self.0, self.1))?;
                }
                Ok(())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                self.one::<A::Error>()?;
                while seq.next_element_seed(Count(self.0, self.1))?.is_some() {}
                Ok(())
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
                self.one()
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
                self.one()
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
                self.one()
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
                self.one()
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
                self.one()
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
                self.one()
            }
        }
        let count = Cell::new(0);
        let mut de = serde_json::Deserializer::from_slice(body);
        // An error is either the bound (the count says so) or bad JSON (the parse will say so).
        let _ = Count(&count, max).deserialize(&mut de);
        (count.get() > max).then_some(max)
    }

    /// The scan counts what the parse counts, on every review fixture and on JSON built to trip
    /// a byte scanner (escaped quotes and backslashes, structural characters inside strings,
    /// numbers in every form, literals, deep nesting, non-ASCII text).
    #[test]
    fn the_scan_counts_the_values_the_parse_counts() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for dir in [
            "../tests/fixtures/admission",
            "../../shared/corpus/admission",
            "../benches/fixtures",
        ] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "json") {
                    inputs.push(std::fs::read(&path).unwrap());
                }
            }
        }
        for text in [
            r#"{"a":"x\"y","b":"\\","c":"{[\"]}","d":[1,-2.5e+10,0.0E-1,true,false,null]}"#,
            r#"[[[[[]]]],{},{"":""},"\u0022","tail\\"]"#,
            r#"{"k": "naïve ☃ 日本", "n": [ 1 , 2 ,3 ] , "t" :true}"#,
            r#""just a string""#,
            "12345",
            r#"{"esc":"\\\"","after":1}"#,
        ] {
            inputs.push(text.as_bytes().to_vec());
        }
        assert!(inputs.len() >= 14, "only {} inputs", inputs.len());
        for input in &inputs {
            assert!(
                serde_json::from_slice::<Value>(input).is_ok(),
                "{}",
                String::from_utf8_lossy(input)
            );
            for max in [0, 1, 2, 5, 10, 100, 1_000, 100_000] {
                let shape = json_shape(input, max);
                assert_eq!(
                    (shape.values > max).then_some(max),
                    json_values_over_by_parse(input, max),
                    "max {max}: {}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn the_scan_ends_on_text_that_is_not_json() {
        for text in [
            &b"\"abc"[..],
            b"\"abc\\",
            b"{\"a\":\"\\",
            b"\\",
            b"",
            b"]]]",
            b"\"\\\"",
        ] {
            let _ = json_shape(text, 10);
        }
    }

    /// The shortcut never hides a body that breaks a bound: wherever it skips the scan, the
    /// scan finds both bounds kept (on the fixtures, on the depth ladder, on bodies of values
    /// one byte each, and on bodies just over and under each bound).
    #[test]
    fn the_shortcut_skips_only_bodies_within_both_bounds() {
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for depth in [1, 126, 127, 128, 129] {
            bodies.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes());
            bodies.push(format!("{}{}", "{\"a\":[".repeat(depth), "]}".repeat(depth)).into_bytes());
            // Brackets inside a string count for the shortcut, not for the depth.
            bodies.push(format!("\"{}\"", "[".repeat(depth)).into_bytes());
        }
        for n in [
            MAX_JSON_VALUES / 2 - 1,
            MAX_JSON_VALUES / 2,
            MAX_JSON_VALUES / 2 + 1,
            MAX_JSON_VALUES,
        ] {
            // `[0,0,...]`: 2n+1 bytes, n+1 values.
            bodies.push(format!("[{}]", vec!["0"; n].join(",")).into_bytes());
        }
        bodies.push(
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../benches/fixtures/deployment-review.json"
            ))
            .unwrap(),
        );
        for body in &bodies {
            let scanned = json_shape(body, MAX_JSON_VALUES);
            let quick = json_shape_if_needed(body);
            let breaks = |s: Shape| s.values > MAX_JSON_VALUES || s.depth >= SERDE_JSON_DEPTH_LIMIT;
            assert_eq!(breaks(quick), breaks(scanned), "{} bytes", body.len());
        }
    }

    /// The bracket count is the number of `{` and `[` bytes, whatever the other bytes are and
    /// however long the body is (across the count's 255-byte blocks).
    #[test]
    fn opening_brackets_are_counted_exactly() {
        let every_byte: Vec<u8> = (0..=255u8).collect();
        let mut bodies = vec![Vec::new(), b"{".to_vec(), every_byte.clone()];
        bodies.push(every_byte.repeat(9));
        bodies.push(b"[".repeat(255));
        bodies.push(b"{".repeat(256));
        bodies.push(b"[{".repeat(1000));
        for body in &bodies {
            let expected = body.iter().filter(|&&b| b == b'{' || b == b'[').count();
            assert_eq!(
                count_opening_brackets(body),
                expected,
                "{} bytes",
                body.len()
            );
        }
    }

    /// The depth the scan finds is the one serde_json's tree refuses at: JSON nested just
    /// below its limit parses, at the limit it does not, and the scan says which.
    #[test]
    fn the_scan_finds_the_depth_serde_json_refuses() {
        for depth in [1, 2, 100, 126, 127, 128, 129, 400] {
            for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
                let text = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                let tree = serde_json::from_str::<Value>(&text);
                let shape = json_shape(text.as_bytes(), usize::MAX);
                assert_eq!(shape.depth, depth);
                assert_eq!(
                    tree.is_err(),
                    shape.depth >= SERDE_JSON_DEPTH_LIMIT,
                    "depth {depth}: {tree:?}"
                );
            }
        }
    }

    /// A review whose object nests deeper than serde_json's limit in a field hostguard never
    /// reads (the objects are read in parts, and serde_json does not count depth in what it
    /// skips) is refused as not JSON, as a review deep anywhere is.
    #[test]
    fn a_review_too_deep_in_a_skipped_field_is_not_json() {
        let policies = PolicySet::builtin();
        let snapshot = Snapshot::offline(crate::api::ClusterProvider::Azure);
        let review = |depth: usize| {
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"apps","version":"v1","kind":"Deployment"}},"operation":"CREATE","namespace":"n","object":{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"d"}},"spec":{{"template":{{"spec":{{"containers":[{{"name":"c","image":"i"}}]}}}}}},"status":{{"deep":{}1{}}}}}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // Levels above the array: the review, request, object, status.
        let shallow = answer(
            review(100).as_bytes(),
            Webhook::Validate,
            &policies,
            &snapshot,
        );
        assert!(shallow.expect("JSON").review.response.allowed);
        let deep = answer(
            review(200).as_bytes(),
            Webhook::Validate,
            &policies,
            &snapshot,
        );
        let error = deep.expect_err("refused as not JSON").to_string();
        assert!(error.contains("recursion limit"), "{error}");
    }
}
