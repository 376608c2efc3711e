//! AdmissionReview (`admission.k8s.io/v1`) to engine request, and engine decision to
//! AdmissionReview response.
//!
//! This translation is shared by `hostguard review` and the webhook server, so the two cannot
//! answer differently. Failure semantics (design.md): a body that is not JSON at all is the
//! caller's error ([`NotJson`]: HTTP 400, exit 2); JSON that is not a readable review gets an
//! `allowed: false` response naming what is wrong, with the uid echoed when it can be found; a
//! denial lists every violation in `status.message` and `status.details.causes`.

use base64::Engine as _;
use kube_core::response::{StatusCause, StatusDetails, StatusSummary};
use kube_core::{GroupVersionKind, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::policy::{self, Decision, Operation, PolicySet, Verdict};
use crate::snapshot::Snapshot;

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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<RequestIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    operation: String,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    old_object: Option<Value>,
    #[serde(default)]
    dry_run: Option<bool>,
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

impl Answer {
    /// `deny`, `allow`, `warn`, `skipped`, or `invalid` for an unreadable review.
    pub fn outcome(&self) -> &'static str {
        match &self.decision {
            Some(d) => d.verdict.as_str(),
            None => "invalid",
        }
    }
}

/// A review that was read, ready for a decision.
#[derive(Debug)]
pub struct ParsedReview {
    request: RequestIn,
    operation: Operation,
    pub info: RequestInfo,
}

impl ParsedReview {
    /// Names of the ConfigMaps the object's containers read (`configMapKeyRef`, `configMapRef`),
    /// which live in the request's namespace. The webhook makes sure they are cached before it
    /// decides, so that the decision itself does no I/O.
    pub fn config_map_refs(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        if let Some(object) = &self.request.object {
            crate::workload::config_map_refs(object, &mut out);
        }
        out
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
    if let Err(e) = std::str::from_utf8(body) {
        return Err(NotJson(format!(
            "invalid UTF-8 at byte {}",
            e.valid_up_to()
        )));
    }
    // The fast path parses without tracking the path; only an unreadable body pays for a second
    // pass that names the field at fault.
    let review: ReviewIn = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => {
            // JSON at all? If not, the caller's error; if so, refuse with the reason.
            let value: Value = serde_json::from_slice(body)?;
            let uid = value
                .pointer("/request/uid")
                .and_then(Value::as_str)
                .unwrap_or("");
            let message = match serde_path_to_error::deserialize::<_, ReviewIn>(&value) {
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
            return Ok(refused(uid, message));
        }
    };
    if review.api_version != ADMISSION_API_VERSION || review.kind != ADMISSION_KIND {
        let uid = review
            .request
            .as_ref()
            .map(|r| r.uid.as_str())
            .unwrap_or("");
        return Ok(refused(
            uid,
            format!(
                "apiVersion/kind is {:?}/{:?}; hostguard answers only {ADMISSION_API_VERSION} {ADMISSION_KIND} (set admissionReviewVersions: [v1])",
                review.api_version, review.kind
            ),
        ));
    }
    let Some(request) = review.request else {
        return Ok(refused("", "the AdmissionReview has no request".into()));
    };
    let operation = match request.operation.as_str() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        other => {
            return Ok(refused(
                &request.uid,
                format!("request.operation: {other:?} is not CREATE, UPDATE, DELETE or CONNECT"),
            ));
        }
    };
    let info = RequestInfo {
        uid: request.uid.clone(),
        kind: request.kind.kind.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        name: request
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                request
                    .object
                    .as_ref()
                    .and_then(|o| o.pointer("/metadata/name"))
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .unwrap_or_default(),
        operation: request.operation.clone(),
        sub_resource: request.sub_resource.clone(),
        dry_run: request.dry_run.unwrap_or(false),
    };
    Ok(Parsed::Review(Box::new(ParsedReview {
        request,
        operation,
        info,
    })))
}

/// Decides on a review that was read. Pure: the same review, policies and snapshot give the
/// same response.
pub fn decide(
    review: &ParsedReview,
    webhook: Webhook,
    policies: &PolicySet,
    snapshot: &Snapshot,
) -> Answer {
    let request = &review.request;
    let decision = policy::evaluate(
        &policy::Request {
            operation: review.operation,
            object: request.object.as_ref(),
            old_object: request.old_object.as_ref(),
            namespace: request.namespace.as_deref(),
        },
        policies,
        snapshot,
    );
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

fn refused(uid: &str, message: String) -> Parsed {
    Parsed::Refused(Box::new(refusal(uid, message)))
}

fn refusal(uid: &str, message: String) -> Answer {
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
    }
    out
}

fn validate_response(uid: &str, info: &RequestInfo, decision: &Decision) -> ResponseOut {
    let denials: Vec<_> = decision.denials().collect();
    let status = (!denials.is_empty()).then(|| {
        let what = match (info.namespace.as_str(), info.name.as_str()) {
            ("", "") => info.kind.clone(),
            ("", name) => format!("{} {name}", info.kind),
            (ns, name) => format!("{} {ns}/{name}", info.kind),
        };
        let joined: Vec<&str> = denials.iter().map(|v| v.message.as_str()).collect();
        Status {
            status: Some(StatusSummary::Failure),
            code: 403,
            message: format!("hostguard denied {what}: {}", joined.join("; ")),
            reason: "Forbidden".into(),
            metadata: None,
            details: Some(StatusDetails {
                name: info.name.clone(),
                kind: info.kind.clone(),
                causes: denials
                    .iter()
                    .map(|v| StatusCause {
                        reason: "FieldValueForbidden".into(),
                        message: v.message.clone(),
                        field: v.path.clone(),
                    })
                    .collect(),
                group: String::new(),
                uid: String::new(),
                retry_after_seconds: 0,
            }),
        }
    });
    ResponseOut {
        uid: uid.to_string(),
        allowed: decision.allowed(),
        status,
        patch_type: None,
        patch: None,
        warnings: decision.warnings.clone(),
        audit_annotations: audit_annotations(decision),
    }
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
