//! Placement: whether a Pod is pinned to the nodes a policy requires, and the JSON Patch that
//! pins it.
//!
//! A policy's required node affinity is ANDed into every node selector term the Pod already has
//! (the scheduler ORs terms, so each term must carry the requirement). The patch is built from the
//! Pod's raw JSON, never from a typed round-trip, so fields this k8s-openapi version does not know
//! are left alone. It is idempotent: once every term implies a policy term, nothing is added.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use serde_json::Value;

use crate::workload::PodSpecView;

const REQUIRED: [&str; 4] = [
    "spec",
    "affinity",
    "nodeAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
];

fn same_requirement(a: &NodeSelectorRequirement, b: &NodeSelectorRequirement) -> bool {
    let values = |r: &NodeSelectorRequirement| {
        let mut v = r.values.clone().unwrap_or_default();
        v.sort();
        v
    };
    a.key == b.key && a.operator == b.operator && values(a) == values(b)
}

fn values(r: &NodeSelectorRequirement) -> &[String] {
    r.values.as_deref().unwrap_or_default()
}

/// Whether a node label value satisfies `want` (`In`, `NotIn`, `Exists`, `Gt`, `Lt`, as the
/// scheduler's `nodeaffinity` reads them).
fn value_satisfies(value: &str, want: &NodeSelectorRequirement) -> bool {
    let number = |s: &str| s.parse::<i64>().ok();
    match want.operator.as_str() {
        "In" => values(want).iter().any(|v| v == value),
        "NotIn" => !values(want).iter().any(|v| v == value),
        "Exists" => true,
        "Gt" => {
            matches!((number(value), values(want).first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((number(value), values(want).first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// Whether every node that satisfies `have` (one requirement of a Pod's term, on the same key)
/// also satisfies `want`: judged by meaning, so that `In [x]` implies `Exists`, and `In [a, b]`
/// implies `In [a, b, c]`.
fn requirement_implies(have: &NodeSelectorRequirement, want: &NodeSelectorRequirement) -> bool {
    if have.key != want.key {
        return false;
    }
    if same_requirement(have, want) {
        return true;
    }
    match have.operator.as_str() {
        // The label exists with one of these values: every one must satisfy `want`. An empty
        // list matches no node, which implies nothing useful; treat it as not pinning.
        "In" => {
            !values(have).is_empty()
                && want.operator != "DoesNotExist"
                && values(have).iter().all(|v| value_satisfies(v, want))
        }
        // The label exists (as an integer): that is all it says.
        "Gt" | "Lt" => want.operator == "Exists",
        "DoesNotExist" => want.operator == "DoesNotExist" || (want.operator == "NotIn"),
        "NotIn" => {
            want.operator == "NotIn" && values(want).iter().all(|v| values(have).contains(v))
        }
        _ => false,
    }
}

/// A `nodeSelector` entry as the requirement it is (`key In [value]`).
fn selector_requirement(key: &str, value: &str) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_string(),
        operator: "In".into(),
        values: Some(vec![value.to_string()]),
    }
}

/// Whether a node that satisfies every requirement in `have` (a term and the Pod's
/// `nodeSelector`) satisfies every requirement of `required`.
fn conjunction_implies(
    have_expressions: &[NodeSelectorRequirement],
    have_fields: &[NodeSelectorRequirement],
    required: &NodeSelectorTerm,
) -> bool {
    let all = |have: &[NodeSelectorRequirement], want: Option<&Vec<NodeSelectorRequirement>>| {
        want.map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .all(|w| have.iter().any(|h| requirement_implies(h, w)))
    };
    all(have_expressions, required.match_expressions.as_ref())
        && all(have_fields, required.match_fields.as_ref())
}

/// Whether `term`, together with the Pod's `nodeSelector`, implies one of `required`'s terms.
fn term_pinned(
    term: Option<&NodeSelectorTerm>,
    node_selector: &BTreeMap<String, String>,
    required: &NodeSelector,
) -> bool {
    let mut expressions: Vec<NodeSelectorRequirement> = node_selector
        .iter()
        .map(|(k, v)| selector_requirement(k, v))
        .collect();
    let mut fields = Vec::new();
    if let Some(term) = term {
        expressions.extend(term.match_expressions.iter().flatten().cloned());
        fields.extend(term.match_fields.iter().flatten().cloned());
    }
    required
        .node_selector_terms
        .iter()
        .any(|r| conjunction_implies(&expressions, &fields, r))
}

/// Whether `term` alone already implies `required` (the idempotency check of the patch).
fn implies(term: &NodeSelectorTerm, required: &NodeSelectorTerm) -> bool {
    conjunction_implies(
        term.match_expressions.as_deref().unwrap_or_default(),
        term.match_fields.as_deref().unwrap_or_default(),
        required,
    )
}

/// Whether a Pod can only schedule onto nodes that `required` selects. The scheduler ANDs the
/// Pod's `nodeSelector` with its required node affinity, whose terms it ORs: so the Pod is
/// pinned when, for every term (or for the `nodeSelector` alone when there is no term), the
/// term and the `nodeSelector` together imply one of `required`'s terms. Implication is by
/// meaning: `key In [v]` or `nodeSelector: {key: v}` implies `key Exists`.
pub fn pod_is_pinned(spec: &PodSpecView, required: &NodeSelector) -> bool {
    let node_selector = spec.node_selector.clone().unwrap_or_default();
    let terms = spec.required_node_terms();
    if terms.is_empty() {
        return !node_selector.is_empty() && term_pinned(None, &node_selector, required);
    }
    terms
        .iter()
        .all(|t| term_pinned(Some(t), &node_selector, required))
}

/// AND of two terms: the union of their requirements, existing ones first.
fn and_terms(a: &NodeSelectorTerm, b: &NodeSelectorTerm) -> NodeSelectorTerm {
    let merge = |x: Option<&Vec<NodeSelectorRequirement>>,
                 y: Option<&Vec<NodeSelectorRequirement>>| {
        let mut out: Vec<NodeSelectorRequirement> = x.cloned().unwrap_or_default();
        for r in y.map(Vec::as_slice).unwrap_or_default() {
            if !out.iter().any(|o| same_requirement(o, r)) {
                out.push(r.clone());
            }
        }
        (!out.is_empty()).then_some(out)
    };
    NodeSelectorTerm {
        match_expressions: merge(a.match_expressions.as_ref(), b.match_expressions.as_ref()),
        match_fields: merge(a.match_fields.as_ref(), b.match_fields.as_ref()),
    }
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

/// The JSON Patch operations that pin a Pod (raw JSON `pod`, typed `spec`) to every selector in
/// `required`. Empty when it is already pinned.
///
/// The required terms are the existing ones ANDed with each policy's selector; the patch is the
/// minimal one (requirements appended to each term) when the number of terms is unchanged, else
/// the whole required node selector written at once.
pub fn pin_pod_patch(
    pod: &Value,
    spec: &PodSpecView,
    required: &[&NodeSelector],
) -> Vec<PatchOperation> {
    let existing: Vec<NodeSelectorTerm> = spec.required_node_terms().to_vec();
    let terms = pinned_terms(&existing, spec, required);
    if terms == existing {
        return Vec::new();
    }
    let raw_required = REQUIRED.iter().try_fold(pod, |v, k| v.get(k));
    let raw_terms = raw_required
        .and_then(|r| r.get("nodeSelectorTerms"))
        .and_then(Value::as_array);
    match raw_terms {
        Some(raw_terms) if raw_terms.len() == terms.len() && !existing.is_empty() => {
            appended_requirements(&existing, &terms, raw_terms)
        }
        _ => whole_selector(pod, &terms, raw_required.is_some(), raw_terms.is_some()),
    }
}

/// Every policy's selector folded into `existing`: a term that already implies one of the
/// selector's terms stays, any other is ANDed with each of them.
fn pinned_terms(
    existing: &[NodeSelectorTerm],
    spec: &PodSpecView,
    required: &[&NodeSelector],
) -> Vec<NodeSelectorTerm> {
    let mut terms = existing.to_vec();
    for selector in required {
        if selector.node_selector_terms.is_empty() || pod_is_pinned(spec, selector) {
            continue;
        }
        if terms.is_empty() {
            terms = selector.node_selector_terms.clone();
            continue;
        }
        let mut next = Vec::new();
        for t in &terms {
            if selector.node_selector_terms.iter().any(|r| implies(t, r)) {
                next.push(t.clone());
            } else {
                for r in &selector.node_selector_terms {
                    next.push(and_terms(t, r));
                }
            }
        }
        terms = next;
    }
    terms
}

/// The minimal form: the same number of terms, each only gaining requirements, appended to
/// each term's lists (or the list added where the raw term has none).
fn appended_requirements(
    existing: &[NodeSelectorTerm],
    terms: &[NodeSelectorTerm],
    raw_terms: &[Value],
) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    for (i, (old, new)) in existing.iter().zip(terms).enumerate() {
        let index = i.to_string();
        for (field, old_list, new_list) in [
            (
                "matchExpressions",
                old.match_expressions.as_ref(),
                new.match_expressions.as_ref(),
            ),
            (
                "matchFields",
                old.match_fields.as_ref(),
                new.match_fields.as_ref(),
            ),
        ] {
            let old_len = old_list.map_or(0, Vec::len);
            let added = new_list
                .map(Vec::as_slice)
                .unwrap_or_default()
                .get(old_len..)
                .unwrap_or_default();
            if added.is_empty() {
                continue;
            }
            let base = [
                REQUIRED.as_slice(),
                &["nodeSelectorTerms", index.as_str(), field],
            ]
            .concat();
            let raw_list_exists = raw_terms[i].get(field).is_some_and(|v| !v.is_null());
            if raw_list_exists {
                for r in added {
                    let mut path = base.clone();
                    path.push("-");
                    ops.push(PatchOperation::Add(AddOperation {
                        path: pointer(&path),
                        value: serde_json::to_value(r).unwrap_or(Value::Null),
                    }));
                }
            } else {
                ops.push(PatchOperation::Add(AddOperation {
                    path: pointer(&base),
                    value: serde_json::to_value(added).unwrap_or(Value::Null),
                }));
            }
        }
    }
    ops
}

/// The general form: the whole required node selector, replacing or adding
/// `nodeSelectorTerms` where the required selector exists, else creating its parents first.
fn whole_selector(
    pod: &Value,
    terms: &[NodeSelectorTerm],
    required_exists: bool,
    terms_exist: bool,
) -> Vec<PatchOperation> {
    let terms_value = serde_json::to_value(terms).unwrap_or(Value::Null);
    if required_exists {
        let mut path = REQUIRED.to_vec();
        path.push("nodeSelectorTerms");
        let op = if terms_exist {
            PatchOperation::Replace(ReplaceOperation {
                path: pointer(&path),
                value: terms_value,
            })
        } else {
            PatchOperation::Add(AddOperation {
                path: pointer(&path),
                value: terms_value,
            })
        };
        return vec![op];
    }
    let mut value = serde_json::json!({ "nodeSelectorTerms": terms_value });
    // Walk up to the deepest parent that exists, wrapping the value as we go.
    let mut depth = REQUIRED.len();
    while depth > 1 {
        let parent = &REQUIRED[..depth - 1];
        if parent
            .iter()
            .try_fold(pod, |v, k| v.get(k))
            .is_some_and(|v| !v.is_null())
        {
            break;
        }
        value = serde_json::json!({ REQUIRED[depth - 1]: value });
        depth -= 1;
    }
    vec![PatchOperation::Add(AddOperation {
        path: pointer(&REQUIRED[..depth]),
        value,
    })]
}
