//! One object to decide on, as the engine is given it: a parsed JSON tree (a manifest, an object
//! from the cluster), or the JSON text an AdmissionReview carries.
//!
//! A review's object of one of the built-in pod-bearing kinds (the webhook's common case) is read
//! straight from its text into the workload view, and no `serde_json::Value` tree is built
//! unless a later step asks for one (the JSON Patch of a governed Pod). Building that tree and
//! dropping it again cost more than the decision itself. Every other kind is parsed into a tree
//! at once, as before.
//!
//! Both ways give the same answer. The text is read directly only when it deserialises cleanly
//! into the view's own types. Anything else (a field of the wrong type, a duplicate key, a type
//! field that disagrees with the review) goes through the tree, whose reading names the field at
//! fault.

use std::sync::OnceLock;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::workload::{self, TypeFields, WorkloadKind, WorkloadView};

/// An object the engine decides on.
#[derive(Debug, Clone, Copy)]
pub enum Object<'a> {
    /// A parsed JSON tree.
    Tree(&'a Value),
    /// An AdmissionReview's object, read from its text.
    Review(&'a ReviewObject),
}

impl<'a> From<&'a Value> for Object<'a> {
    fn from(value: &'a Value) -> Self {
        Object::Tree(value)
    }
}

impl<'a> From<&'a ReviewObject> for Object<'a> {
    fn from(object: &'a ReviewObject) -> Self {
        Object::Review(object)
    }
}

impl<'a> Object<'a> {
    /// The JSON tree; for a review's object, built on first use.
    pub fn tree(self) -> &'a Value {
        match self {
            Object::Tree(value) => value,
            Object::Review(object) => object.tree(),
        }
    }

    /// The workload view read from the text, when the object is a built-in pod-bearing kind
    /// whose text read cleanly; None otherwise (then [`workload::read`] on [`Object::tree`]).
    pub fn text_view(self) -> Option<&'a WorkloadView> {
        match self {
            Object::Tree(_) => None,
            Object::Review(object) => object.text_view(),
        }
    }
}

/// An AdmissionReview's object (or old object): its JSON text, the type the review names, and
/// the workload view or the tree.
#[derive(Debug)]
pub struct ReviewObject {
    text: Box<RawValue>,
    api_version: String,
    kind: String,
    view: Option<WorkloadView>,
    tree: OnceLock<Value>,
}

impl ReviewObject {
    /// Reads `text`, the object of a review whose `request.kind` is `api_version`/`kind`. An
    /// object without `apiVersion`/`kind` (encoders may leave TypeMeta empty) is read as the
    /// review says; one whose own type fields say something else is refused (`Err`, naming
    /// `field`), as is one that is not a JSON object.
    pub fn read(
        text: Box<RawValue>,
        api_version: String,
        kind: String,
        field: &str,
    ) -> Result<Self, String> {
        let from_text = WorkloadKind::from_type(&api_version, &kind)
            .and_then(|k| workload::read_text(k, text.get()))
            .filter(|(types, _)| types_agree(types, &api_version, &kind));
        if let Some((_, view)) = from_text {
            return Ok(ReviewObject {
                text,
                api_version,
                kind,
                view: Some(view),
                tree: OnceLock::new(),
            });
        }
        // The text is valid JSON (the review's parse checked it) no deeper than the parse
        // allows (`admission::parse` checked that), so this does not fail; were it to, the
        // object would be refused, not judged as something else.
        let mut tree: Value =
            serde_json::from_str(text.get()).map_err(|e| format!("{field}: {e}"))?;
        reconcile_type(&mut tree, &api_version, &kind, field)?;
        Ok(ReviewObject {
            text,
            api_version,
            kind,
            view: None,
            tree: OnceLock::from(tree),
        })
    }

    /// The `metadata.name` the object carries, if any.
    pub fn name(&self) -> Option<&str> {
        match &self.view {
            Some(view) => Some(view.name.as_str()).filter(|n| !n.is_empty()),
            None => self
                .tree()
                .pointer("/metadata/name")
                .and_then(Value::as_str),
        }
    }

    /// The view read from the text, if it was.
    pub fn text_view(&self) -> Option<&WorkloadView> {
        self.view.as_ref()
    }

    /// The object's JSON text as the review carries it.
    pub fn text(&self) -> &str {
        self.text.get()
    }

    /// The tree, with the type the review names filled in where the object leaves it out.
    pub fn tree(&self) -> &Value {
        self.tree.get_or_init(|| {
            let mut tree: Value = serde_json::from_str(self.text.get()).unwrap_or(Value::Null);
            // The type fields agreed with the review when the view was read, so this only fills
            // what is missing.
            let _ = reconcile_type(&mut tree, &self.api_version, &self.kind, "");
            tree
        })
    }
}

/// Whether the type fields an object's text carries agree with the review's: each absent,
/// `null`, empty, or equal to it. (Anything else is decided on the tree, which names it.)
fn types_agree(types: &TypeFields, api_version: &str, kind: &str) -> bool {
    let agrees = |field: &Option<Value>, want: &str| match field {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty() || s == want,
        Some(_) => false,
    };
    agrees(&types.api_version, api_version) && agrees(&types.kind, kind)
}

/// Fills a missing `apiVersion`/`kind` from the review's type, and refuses an object whose own
/// type fields say something else.
fn reconcile_type(
    object: &mut Value,
    api_version: &str,
    kind: &str,
    field: &str,
) -> Result<(), String> {
    let Some(map) = object.as_object_mut() else {
        return Err(format!("{field}: is not a JSON object"));
    };
    for (key, want) in [("apiVersion", api_version), ("kind", kind)] {
        match map.get(key) {
            None | Some(Value::Null) => {
                map.insert(key.to_string(), Value::String(want.to_string()));
            }
            Some(Value::String(s)) if s.is_empty() => {
                map.insert(key.to_string(), Value::String(want.to_string()));
            }
            Some(Value::String(s)) if s == want => {}
            Some(other) => {
                return Err(format!(
                    "{field}.{key}: {other} disagrees with request.kind ({api_version} {kind}); hostguard judges an object only as the type the API server admits it as"
                ));
            }
        }
    }
    Ok(())
}
