//! Reading manifests: files, directories and stdin into [`Document`]s, each with the line of every
//! field, for the offline commands.
//!
//! YAML is read as kubectl applies it ([`kubectl_yaml`]: documents cut at `---` lines, YAML 1.1
//! scalars, merge keys and overrides as go-yaml v2 and `sigs.k8s.io/yaml` read them, refused
//! where hostguard cannot be sure), JSON with `serde_json` (kubectl reads a stream that starts
//! with `{` as JSON too). Each document keeps the line of every mapping key and sequence item, so
//! that a report can point at the exact line of a field path such as
//! `spec.template.spec.containers[0].env[OPENAI_BASE_URL]`. Documents keep their position in the
//! file counting every `---`, empty ones included, and lists (`kind: List` from `kubectl get -o
//! yaml`, or any object with `items`) are expanded into their items at every level. Bad input is
//! an error naming the file and line, never a panic.

use granit_parser::{Event, Parser};
use serde_json::Value;
use thiserror::Error;

mod files;
mod kubectl_yaml;
pub mod scope;

/// The source name of documents read from standard input.
pub const STDIN_SOURCE: &str = "<stdin>";

/// One document of a manifest file.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file path as given or walked, or `<stdin>`.
    pub source: String,
    /// 0-based position of the document in its file, counting every document (empty ones too).
    /// The items of a `List` share the index of the List.
    pub index: usize,
    /// 1-based line where the document's content starts.
    pub line: usize,
    /// The document; `Null` for an empty document.
    pub value: Value,
    /// The chart template a `helm template` document was rendered from: the path its
    /// `# Source: <chart>/templates/<file>` comment names, when it has one.
    pub rendered_from: Option<String>,
    /// Where each field is, mirroring `value`.
    lines: Lines,
}

/// The path of the `# Source:` comment `helm template` writes above each document it renders
/// (helm `pkg/action/action.go`: `fmt.Fprintf(b, "---\n# Source: %s\n", name)`), read from the
/// comments that open the document.
fn helm_source(text: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line == "---" {
            continue;
        }
        let comment = line.strip_prefix('#')?;
        if let Some(path) = comment.trim_start().strip_prefix("Source:") {
            let path = path.trim();
            return (!path.is_empty()).then(|| path.to_string());
        }
    }
    None
}

/// The line of one node and of the nodes under it.
#[derive(Debug, Clone, Default)]
struct Lines {
    line: usize,
    children: Children,
}

#[derive(Debug, Clone, Default)]
enum Children {
    /// A scalar, an alias, or a collection whose shape is not known.
    #[default]
    Leaf,
    /// Mapping entries with scalar keys; each entry's line is its key's line.
    Map(Vec<(String, Lines)>),
    Seq(Vec<Lines>),
}

impl Lines {
    fn leaf(line: usize) -> Self {
        Lines {
            line,
            children: Children::Leaf,
        }
    }

    fn key(&self, key: &str) -> Option<&Lines> {
        match &self.children {
            Children::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, l)| l),
            _ => None,
        }
    }

    fn item(&self, index: usize) -> Option<&Lines> {
        match &self.children {
            Children::Seq(items) => items.get(index),
            _ => None,
        }
    }
}

impl Document {
    /// A document without line information beyond its start (for documents built in code).
    pub fn new(source: impl Into<String>, index: usize, line: usize, value: Value) -> Self {
        Document {
            source: source.into(),
            index,
            line,
            value,
            rendered_from: None,
            lines: Lines::leaf(line),
        }
    }

    /// Whether the document is empty (only comments, `---` alone, or `null`).
    pub fn is_empty(&self) -> bool {
        self.value.is_null()
    }

    /// `apiVersion`, when it is a non-empty string.
    pub fn api_version(&self) -> Option<&str> {
        self.str_at(&["apiVersion"])
    }

    /// `kind`, when it is a non-empty string.
    pub fn kind(&self) -> Option<&str> {
        self.str_at(&["kind"])
    }

    /// `metadata.name`, when it is a non-empty string.
    pub fn name(&self) -> Option<&str> {
        self.str_at(&["metadata", "name"])
    }

    /// `metadata.namespace`, when it is a non-empty string.
    pub fn namespace(&self) -> Option<&str> {
        self.str_at(&["metadata", "namespace"])
    }

    fn str_at(&self, keys: &[&str]) -> Option<&str> {
        let mut v = &self.value;
        for k in keys {
            v = v.get(k)?;
        }
        v.as_str().filter(|s| !s.is_empty())
    }

    /// 1-based line of the field named by an engine field path such as
    /// `spec.template.spec.containers[0].env[OPENAI_BASE_URL]`, `spec.containers[1].args[2]` or
    /// `spec.template.spec.containers[0].envFrom[0]`. A numeric `[i]` selects the i-th list
    /// element; `[NAME]` selects the list element whose `name` is NAME, or the map key NAME
    /// (`metadata.annotations[hostguard.dev/provider]`).
    ///
    /// Best effort: the line of the deepest prefix that resolves; the document's line when
    /// nothing does (a path that does not name a field of this document, or a value reached
    /// through a YAML alias or merge key).
    pub fn line_of(&self, field_path: &str) -> usize {
        let mut lines = &self.lines;
        let mut value = Some(&self.value);
        let mut best = self.line;
        for segment in segments(field_path) {
            let next = match segment {
                Segment::Key(key) => lines.key(key).map(|l| (l, value.and_then(|v| v.get(key)))),
                Segment::Bracket(inner) => match &lines.children {
                    Children::Map(_) => lines
                        .key(inner)
                        .map(|l| (l, value.and_then(|v| v.get(inner)))),
                    Children::Seq(_) => {
                        let index = match inner.parse::<usize>() {
                            Ok(i) => Some(i),
                            Err(_) => value.and_then(Value::as_array).and_then(|items| {
                                items.iter().position(|item| {
                                    item.get("name").and_then(Value::as_str) == Some(inner)
                                })
                            }),
                        };
                        index.and_then(|i| lines.item(i).map(|l| (l, value.and_then(|v| v.get(i)))))
                    }
                    Children::Leaf => None,
                },
            };
            let Some((next_lines, next_value)) = next else {
                break;
            };
            lines = next_lines;
            value = next_value;
            best = lines.line;
        }
        best
    }
}

/// One step of a field path.
enum Segment<'a> {
    Key(&'a str),
    /// The text between `[` and `]`.
    Bracket(&'a str),
}

/// Splits `a.b[0].c[NAME]` into `a`, `b`, `[0]`, `c`, `[NAME]`. Text inside brackets may contain
/// dots (`[hostguard.dev/provider]`).
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            match after.find(']') {
                Some(end) => {
                    out.push(Segment::Bracket(&after[..end]));
                    rest = &after[end + 1..];
                }
                None => {
                    out.push(Segment::Key(rest));
                    break;
                }
            }
        } else if let Some(after) = rest.strip_prefix('.') {
            rest = after;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Segment::Key(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

/// Why manifests could not be read.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: the directory holds no .yaml, .yml or .json file")]
    EmptyDirectory { path: String },
    #[error("{path}: larger than {limit} bytes, the most hostguard reads from one file")]
    TooLarge { path: String, limit: u64 },
}

pub use files::{
    InputFile, Inputs, Loaded, MAX_FILE_BYTES, list_inputs, load_paths, load_paths_with_limit,
    read_input,
};

/// A piece of a file that parses on its own: one YAML document as kubectl cuts the stream (the
/// text between two `---` lines), or a whole JSON file. Cutting is a scan for separator lines,
/// so the pieces of a file can be parsed in any order, on any thread.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a>(UnitKind<'a>);

#[derive(Debug, Clone, Copy)]
enum UnitKind<'a> {
    Segment(kubectl_yaml::Segment<'a>),
    Whole(&'a str),
}

impl<'a> Unit<'a> {
    /// The text of the unit.
    pub fn text(&self) -> &'a str {
        match self.0 {
            UnitKind::Segment(s) => s.text,
            UnitKind::Whole(t) => t,
        }
    }

    /// Whether the unit is a whole file whose documents are numbered by [`parse_unit`] (JSON),
    /// rather than one document the caller numbers.
    pub fn is_whole(&self) -> bool {
        matches!(self.0, UnitKind::Whole(_))
    }
}

/// Cuts a file into [`Unit`]s: JSON text (a `.json` source, or text starting with `{` or `[`)
/// is one unit, YAML is cut at its `---` lines.
pub fn split_units<'a>(source: &str, text: &'a str) -> Result<Vec<Unit<'a>>, LoadError> {
    let is_json_name = source.to_ascii_lowercase().ends_with(".json");
    let looks_json = text
        .trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n'])
        .starts_with(['{', '[']);
    if is_json_name || looks_json {
        return Ok(vec![Unit(UnitKind::Whole(text))]);
    }
    let segments =
        kubectl_yaml::split(text).map_err(|(line, column, message)| LoadError::Syntax {
            path: source.to_string(),
            line,
            column,
            message,
        })?;
    Ok(segments
        .into_iter()
        .map(|s| Unit(UnitKind::Segment(s)))
        .collect())
}

/// Parses one unit, lists expanded: `None` when it is no document at all (comments before the
/// first `---`). The documents of a YAML segment get index 0, for the caller to number; those of
/// a whole file are numbered in it. Line numbers come from the same parse as the values.
pub fn parse_unit(source: &str, unit: Unit<'_>) -> Result<Option<Vec<Document>>, LoadError> {
    let segment = match unit.0 {
        UnitKind::Whole(text) => return parse_str(source, text).map(Some),
        UnitKind::Segment(segment) => segment,
    };
    let read = kubectl_yaml::read_segment(segment).map_err(|(line, column, message)| {
        LoadError::Syntax {
            path: source.to_string(),
            line,
            column,
            message,
        }
    })?;
    let (value, lines) = match read {
        Some(read) => (read.value, read.lines),
        None if segment.after_separator => (Value::Null, Lines::leaf(segment.first_line)),
        None => return Ok(None),
    };
    let document = Document {
        source: source.to_string(),
        index: 0,
        line: lines.line,
        value,
        rendered_from: helm_source(segment.text),
        lines,
    };
    expand_lists(vec![document]).map(Some)
}

/// Parses the documents of one file. JSON (a `.json` source, or text starting with `{` or `[`
/// that parses as JSON) may hold several concatenated values, one document each; anything else
/// is read as a YAML stream.
pub fn parse_str(source: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let is_json_name = source.to_ascii_lowercase().ends_with(".json");
    let looks_json = text
        .trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n'])
        .starts_with(['{', '[']);
    let documents = if is_json_name {
        parse_json(source, text)?
    } else if looks_json {
        match parse_json(source, text) {
            Ok(docs) => docs,
            Err(_) => parse_yaml(source, text)?,
        }
    } else {
        parse_yaml(source, text)?
    };
    expand_lists(documents)
}

/// A syntax error of the event pass: line (1-based), column (1-based), message.
type ScanFailure = (usize, usize, String);

/// A collection being built by the event pass.
enum Frame {
    Map {
        line: usize,
        entries: Vec<(String, Lines)>,
        /// The key read and waiting for its value: its text (None for a non-scalar key) and line.
        key: Option<(Option<String>, usize)>,
    },
    Seq {
        line: usize,
        items: Vec<Lines>,
    },
}

/// The line of every field of each document of JSON text, read as YAML events (JSON values are
/// decoded by `serde_json`; this pass only finds lines). Iterative, so deep nesting cannot
/// exhaust the stack.
fn scan(text: &str) -> Result<Vec<Lines>, ScanFailure> {
    let mut options = granit_parser::Options::default();
    options.set_emit_comments(false);
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Lines> = None;
    for event in &mut parser {
        let (event, span) = event.map_err(|e| {
            (
                e.marker().line().max(1),
                e.marker().col() + 1,
                e.info().to_string(),
            )
        })?;
        let line = span.start.line().max(1);
        let done: Option<(Lines, Option<String>)> = match event {
            Event::DocumentStart(..) => {
                stack.clear();
                root = None;
                None
            }
            Event::DocumentEnd => {
                docs.push(root.take().unwrap_or_else(|| Lines::leaf(line)));
                None
            }
            Event::Scalar(value, _, _, _) => {
                let wants_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                Some((Lines::leaf(line), wants_key.then(|| value.into_owned())))
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => Some((Lines::leaf(line), None)),
            Event::MappingStart(..) => {
                stack.push(Frame::Map {
                    line,
                    entries: Vec::new(),
                    key: None,
                });
                None
            }
            Event::SequenceStart(..) => {
                stack.push(Frame::Seq {
                    line,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingEnd | Event::SequenceEnd => match stack.pop() {
                Some(Frame::Map { line, entries, .. }) => Some((
                    Lines {
                        line,
                        children: Children::Map(entries),
                    },
                    None,
                )),
                Some(Frame::Seq { line, items }) => Some((
                    Lines {
                        line,
                        children: Children::Seq(items),
                    },
                    None,
                )),
                None => None,
            },
            _ => None,
        };
        if let Some((node, key_text)) = done {
            match stack.last_mut() {
                None => root = Some(node),
                Some(Frame::Seq { items, .. }) => items.push(node),
                Some(Frame::Map { entries, key, .. }) => match key.take() {
                    None => *key = Some((key_text, node.line)),
                    Some((Some(k), key_line)) => entries.push((
                        k,
                        Lines {
                            line: key_line,
                            children: node.children,
                        },
                    )),
                    // A non-scalar key: kept out of the index (no field path can name it).
                    Some((None, _)) => {}
                },
            }
        }
    }
    Ok(docs)
}

/// One document as kubectl reads it (the text between two `---` lines, without them): its JSON,
/// `Null` when it is empty. For comparing hostguard's reading with kubectl's decoder
/// (`tests/yaml_differential.rs`).
pub fn read_kubectl_document(source: &str, text: &str) -> Result<Value, LoadError> {
    let segment = kubectl_yaml::Segment {
        text,
        first_line: 1,
        after_separator: false,
    };
    match kubectl_yaml::read_segment(segment) {
        Ok(read) => Ok(read.map_or(Value::Null, |r| r.value)),
        Err((line, column, message)) => Err(LoadError::Syntax {
            path: source.to_string(),
            line,
            column,
            message,
        }),
    }
}

/// Reads a YAML stream as kubectl does (see [`kubectl_yaml`]): cut at its `---` lines, each
/// piece one document. Documents are numbered as in a YAML stream: every `---` starts one, and
/// the text before the first `---` is one when it holds anything but comments.
fn parse_yaml(source: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let syntax = |(line, column, message): kubectl_yaml::Failure| LoadError::Syntax {
        path: source.to_string(),
        line,
        column,
        message,
    };
    let mut documents = Vec::new();
    for segment in kubectl_yaml::split(text).map_err(syntax)? {
        let read = kubectl_yaml::read_segment(segment).map_err(syntax)?;
        let (value, lines) = match read {
            Some(read) => (read.value, read.lines),
            None if segment.after_separator => (Value::Null, Lines::leaf(segment.first_line)),
            None => continue,
        };
        documents.push(Document {
            source: source.to_string(),
            index: documents.len(),
            line: lines.line,
            value,
            rendered_from: helm_source(segment.text),
            lines,
        });
    }
    Ok(documents)
}

fn parse_json(source: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut documents = Vec::new();
    // Line counting advances monotonically through the text: linear overall.
    let (mut counted_to, mut line) = (0usize, 1usize);
    loop {
        let start = stream.byte_offset();
        let value = match stream.next() {
            None => break,
            Some(Ok(value)) => value,
            Some(Err(e)) => {
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                return Err(LoadError::Syntax {
                    path: source.to_string(),
                    line: e.line().max(1),
                    column: e.column().max(1),
                    message: message
                        .strip_suffix(&suffix)
                        .unwrap_or(&message)
                        .to_string(),
                });
            }
        };
        let content = start
            + text[start..]
                .find(|c: char| !c.is_ascii_whitespace())
                .unwrap_or(0);
        line += text.as_bytes()[counted_to..content]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        counted_to = content;
        documents.push(Document::new(source, documents.len(), line, value));
    }
    // Field lines come from the YAML event pass, which reads JSON too; when it cannot (several
    // concatenated values are not one YAML stream) only document lines are known.
    if let Ok(skeletons) = scan(text)
        && skeletons.len() == documents.len()
    {
        for (doc, lines) in documents.iter_mut().zip(skeletons) {
            doc.lines = lines;
        }
    }
    Ok(documents)
}

/// Replaces each list document by its items, at every level, as kubectl's decoding finds lists
/// (apimachinery `unstructuredJSONScheme.decode` and `decodeToList`, cli-runtime
/// `FlattenListVisitor`): an object with a `kind` and an `items` field is a list whatever its
/// kind (a `Deployment` with `items` is applied as its items, its own body dropped), `items:
/// null` is an empty list, and an item with neither `kind` nor `apiVersion` takes the list's
/// kind without its `List` suffix and the list's apiVersion. Items keep the list's source and
/// index and get their own line. kubectl refuses a list inside a list (`meta.ExtractList`: "is
/// not a list"), and other tools flatten one level; flattening every level checks whatever any
/// of them could apply.
fn expand_lists(documents: Vec<Document>) -> Result<Vec<Document>, LoadError> {
    let mut out = Vec::with_capacity(documents.len());
    // Depth-first in input order; nesting is bounded by the YAML depth limit.
    let mut pending: Vec<Document> = documents.into_iter().rev().collect();
    while let Some(mut doc) = pending.pop() {
        let is_list = doc.kind().is_some() && doc.value.get("items").is_some();
        if !is_list {
            out.push(doc);
            continue;
        }
        let items_lines = match &mut doc.lines.children {
            Children::Map(entries) => entries
                .iter_mut()
                .find(|(k, _)| k == "items")
                .map(|(_, l)| std::mem::take(l)),
            _ => None,
        };
        let items_line = items_lines.as_ref().map_or(doc.line, |l| l.line);
        let items = match doc.value.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => continue,
            Some(_) => {
                return Err(LoadError::Syntax {
                    path: doc.source.clone(),
                    line: items_line,
                    column: 1,
                    message: "`items` of a list is not a list (kubectl refuses the document)"
                        .into(),
                });
            }
        };
        let item_kind = doc
            .kind()
            .map(|k| k.strip_suffix("List").unwrap_or(k).to_string());
        let list_api_version = doc.api_version().unwrap_or("").to_string();
        let mut item_lines = match items_lines.map(|l| l.children) {
            Some(Children::Seq(lines)) if lines.len() == items.len() => lines.into_iter(),
            _ => Vec::new().into_iter(),
        };
        let mut expanded = Vec::with_capacity(items.len());
        for mut value in items {
            let lines = item_lines.next().unwrap_or_else(|| Lines::leaf(items_line));
            if let Value::Object(item) = &mut value {
                let named = |key: &str| {
                    item.get(key)
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty())
                };
                if !named("kind") && !named("apiVersion") {
                    item.insert(
                        "kind".into(),
                        Value::from(item_kind.clone().unwrap_or_default()),
                    );
                    item.insert("apiVersion".into(), Value::from(list_api_version.clone()));
                }
            }
            expanded.push(Document {
                source: doc.source.clone(),
                index: doc.index,
                line: lines.line,
                value,
                rendered_from: doc.rendered_from.clone(),
                lines,
            });
        }
        pending.extend(expanded.into_iter().rev());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn leading_zero_file_modes_are_octal_as_kubernetes_reads_them() {
        let docs =
            parse_str("m.yaml", "defaultMode: 0400\nother: 0644\nplain: 400\n").expect("parses");
        assert_eq!(docs[0].value["defaultMode"], serde_json::json!(256));
        assert_eq!(docs[0].value["other"], serde_json::json!(420));
        assert_eq!(docs[0].value["plain"], serde_json::json!(400));
    }

    use super::*;
    use pretty_assertions::assert_eq;
    use rstest::rstest;
    use std::fs;

    fn parse(text: &str) -> Vec<Document> {
        match parse_str("test.yaml", text) {
            Ok(docs) => docs,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    /// The 1-based line of the first line of `text` containing `needle`.
    fn line_containing(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle:?} not in text"))
    }

    const DEPLOYMENT: &str = r#"# a comment
apiVersion: apps/v1
kind: Deployment
metadata:
  name: chat
  namespace: team-a
  annotations:
    hostguard.dev/provider: openai
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: busybox
      containers:
        - name: app
          image: example/app
          args: ["--port", "8080",
                 "--base-url=https://api.openai.com/v1"]
          envFrom:
            - configMapRef:
                name: settings
            - secretRef:
                name: keys
              prefix: APP_
          env:
            - name: LOG_LEVEL
              value: debug
            - name: OPENAI_BASE_URL
              value: https://api.openai.com/v1
        - name: sidecar
          args:
            - one
            - two
            - https://example.com/
"#;

    #[test]
    fn multi_document_stream_keeps_indexes_of_empty_documents() {
        let text = "---\n---\napiVersion: v1\nkind: ConfigMap\n---\n# only a comment\n---\n~\n---\nkind: Pod\n";
        let docs = parse(text);
        let summary: Vec<(usize, usize, bool)> = docs
            .iter()
            .map(|d| (d.index, d.line, d.is_empty()))
            .collect();
        assert_eq!(docs.len(), 5);
        assert_eq!(summary[1], (1, 3, false));
        assert_eq!(docs[1].kind(), Some("ConfigMap"));
        assert!(docs[2].is_empty() && docs[3].is_empty() && docs[0].is_empty());
        assert_eq!(summary[4], (4, 10, false));
        assert_eq!(docs[4].kind(), Some("Pod"));
    }

    #[test]
    fn scalar_documents_stay_in_place() {
        let docs = parse("just text\n---\nnull\n---\n'null'\n---\n{a: 1}\n");
        let values: Vec<&Value> = docs.iter().map(|d| &d.value).collect();
        assert_eq!(
            values,
            vec![
                &Value::from("just text"),
                &Value::Null,
                &Value::from("null"),
                &serde_json::json!({"a": 1})
            ]
        );
    }

    #[test]
    fn empty_input_has_no_documents() {
        assert!(parse("").is_empty());
        assert!(parse("# nothing here\n").iter().all(Document::is_empty));
    }

    #[rstest]
    #[case(
        "spec.template.spec.containers[0].env[OPENAI_BASE_URL]",
        "- name: OPENAI_BASE_URL"
    )]
    #[case("spec.template.spec.containers[0].env[LOG_LEVEL]", "- name: LOG_LEVEL")]
    #[case("spec.template.spec.containers[0].args[2]", "\"--base-url=")]
    #[case("spec.template.spec.containers[0].args[0]", "args: [")]
    #[case("spec.template.spec.containers[1].args[2]", "- https://example.com/")]
    #[case("spec.template.spec.containers[0].envFrom[0]", "- configMapRef:")]
    #[case("spec.template.spec.containers[0].envFrom[1]", "- secretRef:")]
    #[case("spec.template.spec.initContainers[0]", "- name: init")]
    #[case("spec.template.spec.containers[sidecar]", "- name: sidecar")]
    #[case(
        "metadata.annotations[hostguard.dev/provider]",
        "hostguard.dev/provider:"
    )]
    #[case("spec.template.spec", "    spec:")]
    #[case("spec", "spec:")]
    // Best effort: the deepest prefix that resolves.
    #[case("spec.template.spec.containers[0].env[MISSING]", "          env:")]
    #[case("spec.template.spec.containers[7].env[X]", "      containers:")]
    #[case("spec.template.spec.containers[0].image.nested", "image: example/app")]
    fn line_of_names_the_field(#[case] path: &str, #[case] needle: &str) {
        let docs = parse(DEPLOYMENT);
        assert_eq!(
            docs[0].line_of(path),
            line_containing(DEPLOYMENT, needle),
            "{path}"
        );
    }

    #[rstest]
    #[case("")]
    #[case("AIWorkload team-a/chat spec.endpoint")]
    #[case("nothing.here")]
    #[case("[")]
    #[case("]]..[[")]
    fn line_of_unknown_paths_is_the_document_line(#[case] path: &str) {
        let docs = parse(DEPLOYMENT);
        assert_eq!(docs[0].line, 2);
        assert_eq!(docs[0].line_of(path), 2);
    }

    #[test]
    fn line_of_in_a_later_document() {
        let text = "kind: ConfigMap\n---\n\napiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    env:\n    - name: X\n";
        let docs = parse(text);
        assert_eq!(docs[1].line, 4);
        assert_eq!(docs[1].line_of("spec.containers[0].env[X]"), 10);
    }

    /// A value reached through an alias is reported at the alias, where the document uses it:
    /// `spec: *b` for `spec.env[X]`, and `<<: *b` for a key the merge brought in.
    #[test]
    fn aliases_and_merge_keys_resolve_to_the_line_of_the_alias() {
        let text =
            "base: &b\n  env:\n  - name: X\nkind: Pod\nspec: *b\nother:\n  <<: *b\n  extra: 1\n";
        let docs = parse(text);
        assert_eq!(docs[0].value["spec"]["env"][0]["name"], "X");
        assert_eq!(docs[0].value["other"]["env"][0]["name"], "X");
        assert_eq!(docs[0].line_of("spec.env[X]"), 5);
        assert_eq!(docs[0].line_of("other.env[X]"), 7);
        assert_eq!(docs[0].line_of("other.extra"), 8);
        assert_eq!(docs[0].line_of("base.env[X]"), 3);
    }

    #[test]
    fn lists_are_expanded_into_their_items() {
        let text = "---\nkind: Namespace\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata:\n    name: b\n  spec:\n    template:\n      spec:\n        containers:\n        - name: c\n          env:\n          - name: OPENAI_API_KEY\n";
        let docs = parse(text);
        let got: Vec<(usize, usize, Option<&str>, Option<&str>)> = docs
            .iter()
            .map(|d| (d.index, d.line, d.kind(), d.name()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 2, Some("Namespace"), None),
                (1, 7, Some("ConfigMap"), Some("a")),
                (1, 10, Some("Deployment"), Some("b")),
            ]
        );
        assert_eq!(
            docs[2].line_of("spec.template.spec.containers[0].env[OPENAI_API_KEY]"),
            20
        );
    }

    #[test]
    fn typed_lists_and_empty_lists_are_expanded() {
        let text = "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n- kind: Deployment\n---\nkind: List\nitems: []\n";
        let docs = parse(text);
        assert_eq!(docs.len(), 1);
        assert_eq!((docs[0].index, docs[0].line), (0, 4));
    }

    /// apimachinery `unstructuredJSONScheme.decode`: any object with a kind and `items` is a
    /// list, whatever its kind; kubectl applies the items and drops the body.
    #[test]
    fn any_object_with_items_is_a_list_and_its_body_is_dropped() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: decoy}\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: real}\n";
        let docs = parse(text);
        let got: Vec<(Option<&str>, Option<&str>, usize)> =
            docs.iter().map(|d| (d.kind(), d.name(), d.line)).collect();
        assert_eq!(got, vec![(Some("Pod"), Some("real"), 5)]);
    }

    /// `decodeToList`: an item with neither kind nor apiVersion takes the list's kind without
    /// its `List` suffix and the list's apiVersion.
    #[test]
    fn items_without_kind_take_the_kind_of_their_list() {
        let text = "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a}\n- kind: ConfigMap\n  metadata: {name: b}\n- apiVersion: v2\n  metadata: {name: c}\n";
        let docs = parse(text);
        let got: Vec<(Option<&str>, Option<&str>, Option<&str>)> = docs
            .iter()
            .map(|d| (d.api_version(), d.kind(), d.name()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("v1"), Some("Pod"), Some("a")),
                (None, Some("ConfigMap"), Some("b")),
                (Some("v2"), None, Some("c")),
            ]
        );
    }

    #[test]
    fn lists_inside_lists_are_flattened_at_every_level() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: Namespace\n  apiVersion: v1\n- apiVersion: v1\n  kind: List\n  items:\n  - apiVersion: v1\n    kind: List\n    items:\n    - apiVersion: apps/v1\n      kind: Deployment\n      metadata: {name: deep}\n- kind: ConfigMap\n  apiVersion: v1\n";
        let docs = parse(text);
        let got: Vec<(usize, Option<&str>, usize)> =
            docs.iter().map(|d| (d.index, d.kind(), d.line)).collect();
        assert_eq!(
            got,
            vec![
                (0, Some("Namespace"), 4),
                (0, Some("Deployment"), 12),
                (0, Some("ConfigMap"), 15)
            ]
        );
        assert_eq!(docs[1].line_of("metadata.name"), 14);
    }

    #[test]
    fn a_list_with_null_items_applies_nothing_and_other_items_are_refused() {
        assert!(parse("kind: List\nitems:\n").is_empty());
        assert!(parse("kind: Deployment\nitems: ~\n").is_empty());
        let err = parse_str("l.yaml", "kind: List\nitems: {a: 1}\n")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("l.yaml:2:1: `items` of a list is not a list (kubectl refuses the document)")
        );
        // Without a kind kubectl refuses the document; a values file with `items` stays one.
        assert_eq!(parse("items: [a, b]\n")[0].value["items"][0], "a");
    }

    /// What kubectl reads differently from a YAML 1.2 parser, end to end through parse_str: the
    /// ConfigMap keys a configMapKeyRef names, and overrides by merge keys.
    #[test]
    fn config_map_keys_and_merges_read_as_kubectl_stores_them() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ai}\nx-defaults: &d {OPENAI_BASE_URL: https://api.openai.com/v1}\ndata:\n  on: https://a.openai.azure.com/\n  0777: b\n  0x1A: c\n  1_000: d\n  OPENAI_BASE_URL: https://a.openai.azure.com/\n  <<: *d\n";
        let docs = parse(text);
        let data = &docs[0].value["data"];
        assert_eq!(data["true"], "https://a.openai.azure.com/");
        assert!(data.get("on").is_none());
        assert_eq!(
            (&data["511"], &data["26"], &data["1000"]),
            (&"b".into(), &"c".into(), &"d".into())
        );
        assert_eq!(data["OPENAI_BASE_URL"], "https://api.openai.com/v1");
        assert_eq!(docs[0].line_of("data[true]"), 6);
        assert_eq!(docs[0].line_of("data[OPENAI_BASE_URL]"), 11);
    }

    #[rstest]
    #[case::separator_with_content("a: 1\n--- b\n", "t.yaml:2:4: invalid document separator")]
    #[case::line_separator("a: b\u{2028}c: d\n", "t.yaml:1:5: U+2028 is a line break")]
    #[case::document_end("a: 1\n...\nkind: Pod\n", "t.yaml:3:1: a second document after `...`")]
    #[case::keys_that_become_one(
        "data:\n  1: a\n  \"1\": b\n",
        "t.yaml:3:3: keys 1 (a number) (line 2) and \"1\""
    )]
    #[case::yaml11_duplicate("---\ndata:\n  on: a\n  true: b\n", "t.yaml:4:3: duplicate key true")]
    #[case::nan_value("value: .nan\n", "t.yaml:1:8: .nan cannot be written as JSON")]
    fn what_kubectl_reads_differently_is_refused_with_its_line(
        #[case] text: &str,
        #[case] start: &str,
    ) {
        let err = parse_str("t.yaml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with(start), "{err}");
    }

    #[test]
    fn json_input_is_read_with_lines() {
        let text = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\",\n  \"spec\": {\n    \"containers\": [\n      {\"name\": \"a\",\n       \"env\": [{\"name\": \"OPENAI_BASE_URL\", \"value\": \"https://api.openai.com/v1\"}]}\n    ]\n  }\n}\n";
        let docs = match parse_str("pod.json", text) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].kind(), Some("Pod"));
        assert_eq!(
            docs[0].line_of("spec.containers[0].env[OPENAI_BASE_URL]"),
            7
        );
        assert_eq!(docs[0].line_of("spec.containers[a]"), 6);
    }

    #[test]
    fn concatenated_json_values_are_documents() {
        let text = "{\"kind\": \"A\"}\n\n{\"kind\": \"B\"}\n[1]";
        let docs = match parse_str("<stdin>", text) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let got: Vec<(usize, usize)> = docs.iter().map(|d| (d.index, d.line)).collect();
        assert_eq!(got, vec![(0, 1), (1, 3), (2, 4)]);
    }

    #[test]
    fn json_errors_name_file_and_line() {
        let err = parse_str("deploy.json", "{\n  \"kind\": \"Pod\",\n  \"spec\": }\n")
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("deploy.json:3:11: expected value"));
    }

    #[test]
    fn flow_yaml_that_is_not_json_is_read_as_yaml() {
        let docs = parse("{kind: Pod, metadata: {name: x}}\n");
        assert_eq!(docs[0].name(), Some("x"));
    }

    #[rstest]
    #[case(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  labels: a: b\n",
        5,
        12,
        "mapping values are not allowed"
    )]
    #[case(
        "kind: Pod\n---\nspec:\n  containers:\n  - name: a\n   env: []\n",
        6,
        4,
        ""
    )]
    #[case("a: [1, 2\n", 1, 4, "")]
    #[case("a: 1\na: 2\n", 2, 1, "duplicate")]
    #[case("a: *nowhere\n", 1, 4, "anchor")]
    #[case("key: \"unterminated\n", 1, 6, "quote")]
    fn malformed_yaml_names_file_and_line(
        #[case] text: &str,
        #[case] line: usize,
        #[case] column: usize,
        #[case] fragment: &str,
    ) {
        match parse_str("deploy.yaml", text) {
            Err(LoadError::Syntax {
                path,
                line: l,
                column: c,
                message,
            }) => {
                assert_eq!((path.as_str(), l), ("deploy.yaml", line), "{message}");
                assert_eq!(c, column, "{message}");
                assert!(message.contains(fragment), "{message}");
                assert!(!message.contains(" at line "), "{message}");
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn syntax_error_display_is_file_line_column_message() {
        let err = parse_str("deploy.yaml", "a: 1\nb: c: d\n")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("deploy.yaml:2:5: mapping values are not allowed in this context")
        );
    }

    #[rstest]
    #[case::nul("\0")]
    #[case::tabs("\t\t- a:\n\tb")]
    #[case::brackets("[[[[[[[[[[[[[[[[[[[[")]
    #[case::deep_flow(&"[".repeat(10_000))]
    #[case::deep_block(&(0..300).map(|i| format!("{}k:\n", " ".repeat(i))).collect::<String>())]
    #[case::braces("}{][")]
    #[case::directive("%YAML 9.9\n%TAG\n---\n")]
    #[case::bad_tag("!<>\n")]
    #[case::anchors("&a &b c")]
    #[case::alias_bomb(
        "a: &a [x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f]\n"
    )]
    #[case::document_markers("...\n---\n...\n--- ---\n")]
    #[case::binary_root("--- !!binary aGVsbG8=\n")]
    #[case::tagged_null("--- !!null\n--- !custom null\n--- ! null\n")]
    #[case::controls("a: \u{1}\u{7f}\u{85}\n")]
    #[case::bom_inside("a: 1\n\u{feff}b: 2\n")]
    #[case::complex_key("? [a, b]\n: c\n? {x: 1}\n: d\n")]
    #[case::json_ish("{\"a\": 1,,}")]
    #[case::huge_number("a: 1e999999\nb: 123456789012345678901234567890\n")]
    #[case::inf(".inf\n---\na: -.inf\nb: .nan\n")]
    fn garbage_never_panics(#[case] text: &str) {
        for source in ["garbage.yaml", "garbage.json"] {
            let result = std::panic::catch_unwind(|| parse_str(source, text));
            assert!(result.is_ok(), "{source} panicked on {text:?}");
            if let Ok(Err(e)) = result {
                assert!(e.to_string().starts_with(&format!("{source}:")), "{e}");
            }
        }
    }

    #[test]
    fn many_documents_are_read() {
        let text = "---\nkind: ConfigMap\ndata: {a: b}\n".repeat(5_000);
        let docs = parse(&text);
        assert_eq!(docs.len(), 5_000);
        assert_eq!(docs[4_999].index, 4_999);
        assert_eq!(docs[4_999].line, 4_999 * 3 + 2);
    }

    #[test]
    fn directories_are_walked_in_order_reading_manifest_extensions_only() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir_all(root.join("b/nested"))?;
        fs::create_dir_all(root.join(".hidden"))?;
        fs::write(root.join("b/nested/z.yml"), "kind: Z\n")?;
        fs::write(root.join("b/a.json"), "{\"kind\": \"A\"}")?;
        fs::write(root.join("a.yaml"), "kind: First\n---\nkind: Second\n")?;
        fs::write(root.join("notes.txt"), "kind: Ignored\n")?;
        fs::write(root.join(".hidden/x.yaml"), "kind: Hidden\n")?;
        fs::write(root.join("explicit.txt"), "kind: Explicit\n")?;
        let docs = load_paths(&[root.to_path_buf(), root.join("explicit.txt")])
            .map_err(std::io::Error::other)?
            .documents;
        let kinds: Vec<&str> = docs.iter().filter_map(Document::kind).collect();
        assert_eq!(kinds, vec!["First", "Second", "A", "Z", "Explicit"]);
        assert_eq!(
            docs[3].source,
            root.join("b/nested/z.yml").display().to_string()
        );
        Ok(())
    }

    #[test]
    fn missing_files_and_empty_directories_are_errors() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("missing.yaml");
        let err = load_paths(std::slice::from_ref(&missing))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!("{}: no such file or directory", missing.display()))
        );
        assert!(matches!(
            load_paths(&[dir.path().to_path_buf()]),
            Err(LoadError::EmptyDirectory { .. })
        ));
        Ok(())
    }

    #[test]
    fn invalid_utf8_names_the_line() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bad.yaml");
        fs::write(&path, b"kind: Pod\nname: \xff\n")?;
        let err = load_paths(std::slice::from_ref(&path))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "{}:2:7: the file is not valid UTF-8",
                path.display()
            ))
        );
        Ok(())
    }
}
