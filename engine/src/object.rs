//! One object to decide on, as the engine is given it: a parsed JSON tree (a manifest, an object
//! from the cluster), or the JSON text an AdmissionReview carries.
//!
//! A review's object of one of the built-in pod-bearing kinds (the webhook's common case) is read
//! straight from its text into the workload view, and no `serde_json::Value` tree is built
//! unless a later step asks for one (the JSON Patch of a governed Pod). Building that tree and
//! dropping it again cost more than the decision itself. When `request.kind` comes before the
//! object (the API server writes it first), the object is read in the review's own parse and its
//! text is not even kept: a later step that needs it finds it again in the review's body. Every
//! other kind is parsed into a tree at once, as before.
//!
//! Both ways give the same answer. The text is read directly only when it deserialises cleanly
//! into the view's own types. Anything else (a field of the wrong type, a duplicate key, a type
//! field that disagrees with the review) goes through the tree, whose reading names the field at
//! fault.

use std::ops::Range;
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
    Review(&'a ReviewObject<'a>),
}

impl<'a> From<&'a Value> for Object<'a> {
    fn from(value: &'a Value) -> Self {
        Object::Tree(value)
    }
}

impl<'a> From<&'a ReviewObject<'a>> for Object<'a> {
    fn from(object: &'a ReviewObject<'a>) -> Self {
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
    pub fn text_view(self) -> Option<&'a WorkloadView<'a>> {
        match self {
            Object::Tree(_) => None,
            Object::Review(object) => object.text_view(),
        }
    }
}

/// Which of a review's objects: `request.object` or `request.oldObject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewField {
    Object,
    OldObject,
}

impl ReviewField {
    /// The field path, as messages name it.
    pub fn path(self) -> &'static str {
        match self {
            ReviewField::Object => "request.object",
            ReviewField::OldObject => "request.oldObject",
        }
    }
}

/// An AdmissionReview's object (or old object): its JSON text, the type the review names, and
/// the workload view or the tree. Its text and its view's strings are the review body's.
#[derive(Debug)]
pub struct ReviewObject<'a> {
    /// The review's body.
    review: &'a str,
    /// The object's text, when the review's parse kept it.
    kept: Option<&'a str>,
    /// Where the text is in `review`, for an object that parse read into its view already:
    /// found again when a later step asks for it (None: not found, read as `null`). A range,
    /// not a `&str`: what a `OnceLock` holds cannot borrow from the body the review owns.
    found: OnceLock<Option<Range<usize>>>,
    field: ReviewField,
    api_version: String,
    kind: String,
    view: Option<WorkloadView<'a>>,
    tree: OnceLock<Value>,
}

impl<'a> ReviewObject<'a> {
    /// Reads `text`, the object of a review whose `request.kind` is `api_version`/`kind`. An
    /// object without `apiVersion`/`kind` (encoders may leave TypeMeta empty) is read as the
    /// review says; one whose own type fields say something else is refused (`Err`, naming
    /// `field`), as is one that is not a JSON object.
    pub fn read(
        text: &'a RawValue,
        review: &'a str,
        api_version: String,
        kind: String,
        field: ReviewField,
    ) -> Result<Self, String> {
        let from_text = WorkloadKind::from_type(&api_version, &kind)
            .and_then(|k| workload::read_text(k, text.get()))
            .filter(|(types, _)| types_agree(types, &api_version, &kind));
        if let Some((_, view)) = from_text {
            return Ok(ReviewObject {
                review,
                kept: Some(text.get()),
                found: OnceLock::new(),
                field,
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
            serde_json::from_str(text.get()).map_err(|e| format!("{}: {e}", field.path()))?;
        reconcile_type(&mut tree, &api_version, &kind, field.path())?;
        Ok(ReviewObject {
            review,
            kept: Some(text.get()),
            found: OnceLock::new(),
            field,
            api_version,
            kind,
            view: None,
            tree: OnceLock::from(tree),
        })
    }

    /// An object the review's parse read into its view (`types` and `view`, from
    /// [`workload::read_from`]) without keeping its text; `review` is the whole body. The same
    /// object as [`ReviewObject::read`] gives for its text: type fields that disagree with the
    /// review are left to that reading, with the text found again in the body.
    pub fn read_in_review(
        types: TypeFields,
        view: WorkloadView<'a>,
        review: &'a str,
        api_version: String,
        kind: String,
        field: ReviewField,
    ) -> Result<Self, String> {
        if !types_agree(&types, &api_version, &kind) {
            let text = find_text(review, field).unwrap_or_else(|| null_text());
            return Self::read(text, review, api_version, kind, field);
        }
        Ok(ReviewObject {
            review,
            kept: None,
            found: OnceLock::new(),
            field,
            api_version,
            kind,
            view: Some(view),
            tree: OnceLock::new(),
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
    pub fn text_view(&self) -> Option<&WorkloadView<'a>> {
        self.view.as_ref()
    }

    /// The object's JSON text as the review carries it.
    pub fn text(&self) -> &'a str {
        if let Some(kept) = self.kept {
            return kept;
        }
        let found = self.found.get_or_init(|| {
            let text = find_text(self.review, self.field)?.get();
            // `text` is a part of `review`: its offset there.
            let start = (text.as_ptr() as usize).checked_sub(self.review.as_ptr() as usize)?;
            let range = start..start + text.len();
            let at = self.review.get(range.clone())?;
            std::ptr::eq(at, text).then_some(range)
        });
        match found {
            Some(range) => &self.review[range.clone()],
            None => null_text().get(),
        }
    }

    /// The tree, with the type the review names filled in where the object leaves it out.
    pub fn tree(&self) -> &Value {
        self.tree.get_or_init(|| {
            let mut tree: Value = serde_json::from_str(self.text()).unwrap_or(Value::Null);
            // The type fields agreed with the review when the view was read, so this only fills
            // what is missing.
            let _ = reconcile_type(&mut tree, &self.api_version, &self.kind, "");
            tree
        })
    }
}

/// The text of `field` in a review's body. The body was parsed once already (so this does not
/// fail; were it to, the object reads as `null`, which no step judges as allowed), with no
/// repeated key in the request (that parse refuses them), so this is the object it read.
fn find_text(review: &str, field: ReviewField) -> Option<&RawValue> {
    use serde::Deserialize;
    #[derive(Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Option<Request<'a>>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request<'a> {
        #[serde(borrow)]
        object: Option<&'a RawValue>,
        #[serde(borrow)]
        old_object: Option<&'a RawValue>,
    }
    let request = serde_json::from_str::<Review>(review).ok()?.request?;
    match field {
        ReviewField::Object => request.object,
        ReviewField::OldObject => request.old_object,
    }
}

/// The text of an object that is not there.
fn null_text() -> &'static RawValue {
    static NULL: OnceLock<Box<RawValue>> = OnceLock::new();
    NULL.get_or_init(|| RawValue::from_string("null".to_string()).expect("null is JSON"))
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
