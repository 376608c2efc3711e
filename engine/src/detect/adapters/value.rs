//! Reading a tool's resource field by field, with the field path kept, so that a field of the
//! wrong shape is an error that names it (`spec.ai.baseUrl: must be a string, found a list`)
//! instead of a silent skip. `null` counts as absent, as the API server treats it.

use serde_json::Value;
use thiserror::Error;

/// A field that does not have the shape the tool's schema gives it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {message}")]
pub struct Malformed {
    pub path: String,
    pub message: String,
}

impl Malformed {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Malformed {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// An owned path and the value under it (paths are built as fields are entered).
#[derive(Debug, Clone)]
pub struct Field<'a> {
    pub value: &'a Value,
    pub path: String,
}

fn shape(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl<'a> Field<'a> {
    pub fn root(value: &'a Value) -> Self {
        Field {
            value,
            path: String::new(),
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn raw(&self, key: &str) -> Option<Field<'a>> {
        match self.value.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(Field {
                value: v,
                path: self.child_path(key),
            }),
        }
    }

    /// The object under `key`, if present.
    pub fn object(&self, key: &str) -> Result<Option<Field<'a>>, Malformed> {
        match self.raw(key) {
            None => Ok(None),
            Some(f) if f.value.is_object() => Ok(Some(f)),
            Some(f) => Err(Malformed::new(
                &f.path,
                format!("must be an object, found {}", shape(f.value)),
            )),
        }
    }

    /// The string under `key`, if present; an empty string counts as absent (every tool here
    /// treats `""` as "not set").
    pub fn string(&self, key: &str) -> Result<Option<&'a str>, Malformed> {
        match self.raw(key) {
            None => Ok(None),
            Some(Field {
                value: Value::String(s),
                ..
            }) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
            Some(f) => Err(Malformed::new(
                &f.path,
                format!("must be a string, found {}", shape(f.value)),
            )),
        }
    }

    /// The list under `key`, each item with its path (`key[i]`), if present.
    pub fn list(&self, key: &str) -> Result<Vec<Field<'a>>, Malformed> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some(Field {
                value: Value::Array(items),
                path,
            }) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| Field {
                    value: v,
                    path: format!("{path}[{i}]"),
                })
                .collect()),
            Some(f) => Err(Malformed::new(
                &f.path,
                format!("must be a list, found {}", shape(f.value)),
            )),
        }
    }

    /// The path of `key` under this field, present or not (for messages about absent fields).
    pub fn path_of(&self, key: &str) -> String {
        self.child_path(key)
    }

    /// This field, which must be an object.
    pub fn expect_object(self) -> Result<Field<'a>, Malformed> {
        if self.value.is_object() {
            Ok(self)
        } else {
            Err(Malformed::new(
                &self.path,
                format!("must be an object, found {}", shape(self.value)),
            ))
        }
    }
}
