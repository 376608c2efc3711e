//! YAML read as kubectl applies it: a stream is cut into documents the way apimachinery's
//! `YAMLReader` cuts it, and each document becomes the JSON that `sigs.k8s.io/yaml` makes of it
//! over go-yaml v2 (YAML 1.1 scalars, merge keys, last-wins overrides), with the line of every
//! field for reports.
//!
//! kubectl (`cli-runtime` `StreamVisitor`) decodes each document with
//! `yaml.NewYAMLOrJSONDecoder` into a `runtime.RawExtension`; that type has its own
//! `UnmarshalJSON`, so `sigs.k8s.io/yaml` converts with no target type (`YAMLToJSON`: no
//! coercion of numbers to strings) and the API server receives that JSON. The events come from
//! `granit-parser` (a YAML 1.2 parser); everything that differs between YAML 1.1 and 1.2 past
//! the syntax is redone here after go-yaml v2's `resolve.go` and `decode.go`, and
//! `sigs.k8s.io/yaml`'s `convertToJSONableObject`, each rule citing its function. Where
//! hostguard cannot be sure of kubectl's reading (keys that kubectl keeps one of at random,
//! characters that are line breaks only for YAML 1.1, content that kubectl silently drops), the
//! document is refused with its line instead of being guessed. `tests/yaml_differential.rs`
//! holds this module to the real decoder.

use std::collections::HashMap;

use base64::Engine as _;
use granit_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Number, Value};

use super::{Children, Lines};

/// Why a document cannot be read: 1-based line and column, and the message.
pub(super) type Failure = (usize, usize, String);

/// Nesting deeper than this is refused (no real manifest comes close; it bounds the stack).
const MAX_DEPTH: usize = 128;
/// Nesting counted through aliases, which can stack one anchored tree into another.
const MAX_EXPANDED_DEPTH: usize = 512;

const STR_TAG: &str = "tag:yaml.org,2002:str";
const BOOL_TAG: &str = "tag:yaml.org,2002:bool";
const INT_TAG: &str = "tag:yaml.org,2002:int";
const FLOAT_TAG: &str = "tag:yaml.org,2002:float";
const NULL_TAG: &str = "tag:yaml.org,2002:null";
const TIMESTAMP_TAG: &str = "tag:yaml.org,2002:timestamp";
const BINARY_TAG: &str = "tag:yaml.org,2002:binary";
const MERGE_TAG: &str = "tag:yaml.org,2002:merge";

/// The text between two document separators, as apimachinery's `YAMLReader` yields it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment<'a> {
    pub text: &'a str,
    /// 1-based line of the segment's first line in the file.
    pub first_line: usize,
    /// Whether a separator line precedes it (the text before the first separator is a
    /// document only when it has content, as in a YAML stream).
    pub after_separator: bool,
}

/// Cuts a stream at its separator lines as `YAMLReader.Read` (apimachinery
/// `pkg/util/yaml/decoder.go`) does: a line that starts with `---` separates documents when the
/// rest of it, trimmed of Unicode white space, is empty or a comment; any other line starting
/// with `---` is refused (`invalid Yaml document separator`). Separators are found by line, not
/// by YAML syntax, so a `---` line inside a quoted scalar or a flow collection cuts it too, and
/// the YAML parser then reads each piece alone, as go-yaml does.
pub(super) fn split(text: &str) -> Result<Vec<Segment<'_>>, Failure> {
    let mut segments = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut after_separator = false;
    let mut offset = 0usize;
    let mut line_number = 1usize;
    while offset < text.len() {
        let end = text[offset..]
            .find('\n')
            .map_or(text.len(), |i| offset + i + 1);
        let line = &text[offset..end];
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                return Err((
                    line_number,
                    4,
                    format!(
                        "invalid document separator: kubectl refuses text after `---` ({rest:?})"
                    ),
                ));
            }
            segments.push(Segment {
                text: &text[start..offset],
                first_line: start_line,
                after_separator,
            });
            start = end;
            start_line = line_number + 1;
            after_separator = true;
        }
        offset = end;
        line_number += 1;
    }
    segments.push(Segment {
        text: &text[start..],
        first_line: start_line,
        after_separator,
    });
    Ok(segments)
}

/// One document read as kubectl reads it.
pub(super) struct Read {
    pub value: Value,
    pub lines: Lines,
}

/// Reads one segment: `None` when it holds no YAML node at all (only comments or blank lines),
/// else its value (`Null` for `~`) with lines counted in the file.
pub(super) fn read_segment(segment: Segment<'_>) -> Result<Option<Read>, Failure> {
    let shift = |(line, column, message): Failure| (line + segment.first_line - 1, column, message);
    check_characters(segment.text).map_err(shift)?;
    let Some(tree) = compose(segment.text).map_err(shift)? else {
        return Ok(None);
    };
    let mut decoder = Decoder {
        tree: &tree,
        decode_count: 1, // go-yaml counts the document node itself
        alias_count: 0,
        alias_depth: 0,
        expanding: Vec::new(),
    };
    let go = decoder.unmarshal(tree.root, None, 0).map_err(shift)?;
    let (value, lines) = to_json(go, segment.first_line - 1).map_err(shift)?;
    Ok(Some(Read { value, lines }))
}

/// go-yaml v2's reader (`readerc.go`, `yaml_parser_update_buffer`) refuses characters outside
/// YAML 1.1's printable set, and its scanner (`yamlprivateh.go`, `is_break`) ends a line at NEL,
/// LINE SEPARATOR and PARAGRAPH SEPARATOR, which YAML 1.2 reads as ordinary characters: a
/// document holding one would have a different shape for kubectl than for any YAML 1.2 reader,
/// so it is refused.
fn check_characters(text: &str) -> Result<(), Failure> {
    let mut line = 1;
    let mut column = 1;
    for c in text.chars() {
        let printable = matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..);
        match c {
            '\u{85}' | '\u{2028}' | '\u{2029}' => {
                return Err((
                    line,
                    column,
                    format!(
                        "U+{:04X} is a line break for kubectl's YAML 1.1 parser but not for YAML 1.2: the document is ambiguous",
                        c as u32
                    ),
                ));
            }
            _ if !printable => {
                return Err((
                    line,
                    column,
                    format!(
                        "control character U+{:04X} is not allowed in YAML (kubectl refuses it)",
                        c as u32
                    ),
                ));
            }
            '\n' => {
                line += 1;
                column = 1;
            }
            _ => column += 1,
        }
    }
    Ok(())
}

/// A node of the YAML tree, as go-yaml's `parser` builds it (`decode.go`).
enum Node {
    Scalar {
        value: String,
        /// The full tag (`tag:yaml.org,2002:str`, `!`, `!foo`), if any.
        tag: Option<String>,
        /// go-yaml's `implicit`: a plain scalar without a tag, or one tagged `!`
        /// (`parserc.go`, `plain_implicit`).
        implicit: bool,
    },
    Seq(Vec<usize>),
    Map(Vec<(usize, usize)>),
    Alias(usize),
}

struct Tree {
    nodes: Vec<(Node, usize, usize)>,
    root: usize,
}

/// A collection being composed.
enum Open {
    Seq(usize, Vec<usize>),
    Map(usize, Vec<usize>),
}

/// Builds the node tree of the segment's first document. go-yaml's `Unmarshal` reads only the
/// first document of what it is given; a second one (after a `...` marker) would be dropped by
/// kubectl without a word, so it is refused.
fn compose(text: &str) -> Result<Option<Tree>, Failure> {
    let mut options = granit_parser::Options::default();
    options.set_emit_comments(false);
    options.emit_anchor_events = true;
    let parser = Parser::new_from_str_with_options(text, options);
    let mut block_scalars: Vec<(usize, usize)> = Vec::new();
    let mut nodes: Vec<(Node, usize, usize)> = Vec::new();
    let mut anchors: HashMap<usize, usize> = HashMap::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<usize> = None;
    let mut documents = 0usize;
    for event in parser {
        let (event, span) = event.map_err(|e| {
            (
                e.marker().line().max(1),
                e.marker().col() + 1,
                e.info().to_string(),
            )
        })?;
        let (line, column) = (span.start.line().max(1), span.start.col() + 1);
        let node = match event {
            Event::DocumentStart(_, version) => {
                documents += 1;
                if documents > 1 {
                    // go-yaml reads one document; after a `...` it drops what follows, or
                    // refuses a document that is only `...` before content.
                    return Err((
                        line,
                        column,
                        "a second document after `...`: kubectl reads only the first; separate documents with `---`".into(),
                    ));
                }
                if version.is_some() {
                    return Err((
                        line,
                        column,
                        "a %YAML directive: kubectl cannot read it (directives need a `---` line, which kubectl takes as a separator)".into(),
                    ));
                }
                continue;
            }
            Event::Anchor(_, name) => {
                // libyaml's `yaml_parser_scan_anchor` takes only ASCII letters, digits, `-` and
                // `_`; YAML 1.2 takes more (`&a.b`, `&a:`), which would change the document.
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err((
                        line,
                        column,
                        format!(
                            "anchor name {name:?}: kubectl's YAML parser accepts only letters, digits, `-` and `_`"
                        ),
                    ));
                }
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                match style {
                    ScalarStyle::DoubleQuoted => {
                        let raw = span
                            .start
                            .byte_offset()
                            .zip(span.end.byte_offset())
                            .and_then(|(a, b)| text.get(a..b))
                            .unwrap_or("");
                        check_escapes(raw).map_err(|message| (line, column, message))?;
                    }
                    ScalarStyle::Literal | ScalarStyle::Folded => {
                        block_scalars.push((line, span.end.line()));
                    }
                    _ => {}
                }
                let tag = tag.map(|t| format!("{}{}", t.handle(), t.suffix()));
                let implicit =
                    (style == ScalarStyle::Plain && tag.is_none()) || tag.as_deref() == Some("!");
                let id = nodes.len();
                nodes.push((
                    Node::Scalar {
                        value: value.into_owned(),
                        tag,
                        implicit,
                    },
                    line,
                    column,
                ));
                if anchor != 0 {
                    anchors.insert(anchor, id);
                }
                id
            }
            Event::Alias(anchor) => {
                let Some(&target) = anchors.get(&anchor) else {
                    return Err((line, column, "an alias to an unknown anchor".into()));
                };
                nodes.push((Node::Alias(target), line, column));
                nodes.len() - 1
            }
            Event::UnresolvedAlias(name) => {
                return Err((line, column, format!("unknown anchor {name:?}")));
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err((
                        line,
                        column,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let id = nodes.len();
                let is_seq = matches!(event, Event::SequenceStart(..));
                nodes.push((
                    if is_seq {
                        Node::Seq(Vec::new())
                    } else {
                        Node::Map(Vec::new())
                    },
                    line,
                    column,
                ));
                // go-yaml registers an anchor when its collection starts, so an alias inside
                // refers to the collection itself (and decoding it fails as a cycle).
                if anchor != 0 {
                    anchors.insert(anchor, id);
                }
                stack.push(if is_seq {
                    Open::Seq(id, Vec::new())
                } else {
                    Open::Map(id, Vec::new())
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Seq(id, items)) => {
                    nodes[id].0 = Node::Seq(items);
                    id
                }
                Some(Open::Map(id, flat)) => {
                    let pairs = flat.chunks(2).map(|p| (p[0], p[1])).collect();
                    nodes[id].0 = Node::Map(pairs);
                    id
                }
                None => continue,
            },
            _ => continue,
        };
        match stack.last_mut() {
            Some(Open::Seq(_, items)) | Some(Open::Map(_, items)) => items.push(node),
            None => root = Some(node),
        }
    }
    check_tabs(text, &block_scalars)?;
    let Some(root) = root else {
        return Ok(None);
    };
    // A `...` before the first node ends a document that go-yaml then finds empty ("did not
    // find expected node content"); YAML 1.2 parsers skip it.
    let root_line = nodes[root].1;
    if let Some(index) = text.split('\n').take(root_line - 1).position(|l| {
        l.strip_prefix("...")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '#']))
    }) {
        return Err((
            index + 1,
            1,
            "a `...` document end before any content: kubectl refuses it".into(),
        ));
    }
    Ok(Some(Tree { nodes, root }))
}

/// go-yaml v2's scanner (`scannerc.go`, `yaml_parser_scan_double_quoted_scalar`) knows fewer
/// escapes than YAML 1.2: no `\/`, and no `\u` or `\U` code in the surrogate range or past
/// U+10FFFF (YAML 1.2 parsers combine surrogate pairs). kubectl refuses such a scalar.
fn check_escapes(raw: &str) -> Result<(), String> {
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            continue;
        }
        let length = match chars.next() {
            Some('/') => return Err("the escape `\\/` is not YAML 1.1: kubectl refuses it".into()),
            Some('x') => 2,
            Some('u') => 4,
            Some('U') => 8,
            _ => continue,
        };
        let code: String = chars.by_ref().take(length).collect();
        if let Ok(value) = u32::from_str_radix(&code, 16)
            && ((0xD800..=0xDFFF).contains(&value) || value > 0x10FFFF)
        {
            return Err(format!(
                "the escape for U+{value:04X} is not a character for kubectl's YAML parser"
            ));
        }
    }
    Ok(())
}

/// go-yaml v2 takes tabs as separation only after content, after a `:` and in flow context; a
/// tab in a line's indentation, after a block `-` or `?`, or in the indentation of a block
/// scalar is an error there ("found character that cannot start any token"), while YAML 1.2
/// parsers accept some of them. hostguard refuses a tab before the first content of a line
/// (which is more than go-yaml refuses inside multi-line quoted and flow scalars), and in a
/// block scalar a tab within the indentation of its first content line.
fn check_tabs(text: &str, block_scalars: &[(usize, usize)]) -> Result<(), Failure> {
    let mut indent: Option<usize> = None;
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let spaces = line.len() - line.trim_start_matches(' ').len();
        let in_block = block_scalars
            .iter()
            .any(|&(start, end)| number > start && number <= end);
        if in_block {
            let content = line.trim_end_matches('\r');
            if indent.is_none() && !content.trim().is_empty() {
                indent = Some(spaces);
                if content[spaces..].starts_with('\t') {
                    return Err((
                        number,
                        spaces + 1,
                        "a tab in the indentation of a block scalar (kubectl refuses it)".into(),
                    ));
                }
            }
            if content[spaces..].starts_with('\t') && indent.is_none_or(|i| spaces < i) {
                return Err((
                    number,
                    spaces + 1,
                    "a tab in the indentation of a block scalar (kubectl refuses it)".into(),
                ));
            }
            continue;
        }
        indent = None;
        let prefix_end = line
            .char_indices()
            .find(|&(i, c)| {
                !(c == ' '
                    || c == '\t'
                    || matches!(c, '-' | '?' | ':') && line[i + 1..].starts_with([' ', '\t']))
            })
            .map_or(line.len(), |(i, _)| i);
        if let Some(at) = line[..prefix_end].find('\t') {
            return Err((
                number,
                at + 1,
                "a tab before the content of a line: kubectl's YAML parser refuses it or reads it differently".into(),
            ));
        }
    }
    Ok(())
}

/// A value as go-yaml v2 decodes it into `interface{}`: what `convertToJSONableObject` then
/// turns into JSON.
#[derive(Debug, Clone)]
enum Go {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spot>),
    Map(GoMap),
}

/// A Go `map[interface{}]interface{}` that remembers the order entries were first written in
/// (for reports; JSON objects are unordered).
#[derive(Debug, Clone, Default)]
struct GoMap {
    entries: Vec<Entry>,
    index: HashMap<KeyId, usize>,
}

/// The identity of a Go map key under Go's `==`; NaN has none (it equals nothing, not even
/// itself, so every NaN key is a new entry) and -0.0 is 0.0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyId {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(u64),
    Str(String),
}

fn key_id(key: &Go) -> Option<KeyId> {
    Some(match key {
        Go::Null => KeyId::Null,
        Go::Bool(b) => KeyId::Bool(*b),
        Go::Int(i) => KeyId::Int(*i),
        Go::Uint(u) => KeyId::Uint(*u),
        Go::Float(f) if f.is_nan() => return None,
        Go::Float(f) => KeyId::Float(if *f == 0.0 { 0 } else { f.to_bits() }),
        Go::Str(s) => KeyId::Str(s.clone()),
        Go::Seq(_) | Go::Map(_) => return None,
    })
}

/// A decoded value with where it was written: the node's line, or for everything reached
/// through an alias, the alias's line (`leaf`: no deeper lines are known).
#[derive(Debug, Clone)]
struct Spot {
    go: Go,
    line: usize,
    column: usize,
    leaf: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    key: Go,
    key_line: usize,
    key_column: usize,
    value: Spot,
}

struct Decoder<'t> {
    tree: &'t Tree,
    decode_count: usize,
    alias_count: usize,
    alias_depth: usize,
    /// Alias nodes being expanded (go-yaml's `d.aliases`), to refuse an anchor inside itself.
    expanding: Vec<usize>,
}

/// go-yaml v2 `decode.go` `allowedAliasRatio`: the share of decoding that may come from alias
/// expansion, 99 % for small documents down to 10 % for very large ones.
fn allowed_alias_ratio(decode_count: usize) -> f64 {
    const LOW: usize = 400_000;
    const HIGH: usize = 4_000_000;
    if decode_count <= LOW {
        0.99
    } else if decode_count >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((decode_count - LOW) as f64 / (HIGH - LOW) as f64)
    }
}

impl Decoder<'_> {
    /// go-yaml v2 `decoder.unmarshal` into an `interface{}`. `alias_site` is the line and column
    /// of the outermost alias being expanded, which every value under it reports.
    fn unmarshal(
        &mut self,
        id: usize,
        alias_site: Option<(usize, usize)>,
        depth: usize,
    ) -> Result<Spot, Failure> {
        let (node, line, column) = &self.tree.nodes[id];
        let (line, column) = (*line, *column);
        self.count(line, column)?;
        if depth > MAX_EXPANDED_DEPTH {
            return Err((
                line,
                column,
                format!(
                    "nesting deeper than {MAX_EXPANDED_DEPTH} levels once aliases are expanded"
                ),
            ));
        }
        let site = alias_site.unwrap_or((line, column));
        let spot = |go| Spot {
            go,
            line: site.0,
            column: site.1,
            leaf: alias_site.is_some(),
        };
        match node {
            Node::Alias(target) => {
                self.alias(id, *target, alias_site.or(Some((line, column))), depth)
            }
            Node::Scalar {
                value,
                tag,
                implicit,
            } => Ok(spot(
                scalar(value, tag.as_deref(), *implicit)
                    .map_err(|message| (line, column, message))?,
            )),
            Node::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for &item in items {
                    out.push(self.unmarshal(item, alias_site, depth + 1)?);
                }
                Ok(spot(Go::Seq(out)))
            }
            Node::Map(_) => {
                let mut map = GoMap::default();
                self.mapping(id, &mut map, alias_site, depth)?;
                Ok(spot(Go::Map(map)))
            }
        }
    }

    /// The excessive-aliasing check at the top of go-yaml v2's `unmarshal`.
    fn count(&mut self, line: usize, column: usize) -> Result<(), Failure> {
        self.decode_count += 1;
        if self.alias_depth > 0 {
            self.alias_count += 1;
        }
        if self.alias_count > 100
            && self.decode_count > 1000
            && self.alias_count as f64 / self.decode_count as f64
                > allowed_alias_ratio(self.decode_count)
        {
            return Err((
                line,
                column,
                "the document contains excessive aliasing (kubectl refuses it)".into(),
            ));
        }
        Ok(())
    }

    /// go-yaml v2 `decoder.alias`.
    fn alias(
        &mut self,
        alias: usize,
        target: usize,
        site: Option<(usize, usize)>,
        depth: usize,
    ) -> Result<Spot, Failure> {
        let (_, line, column) = self.tree.nodes[alias];
        if self.expanding.contains(&alias) {
            return Err((
                line,
                column,
                "an anchor's value contains an alias to itself".into(),
            ));
        }
        self.expanding.push(alias);
        self.alias_depth += 1;
        let result = self.unmarshal(target, site, depth + 1);
        self.alias_depth -= 1;
        self.expanding.pop();
        result
    }

    /// go-yaml v2 `decoder.mapping` into a map, which may already hold entries when this mapping
    /// is merged into another: entries are written in order and a later write of the same Go key
    /// replaces the earlier one, so a `<<` after an explicit key overrides it and an explicit key
    /// after a `<<` overrides the merged one. Two explicit entries of one mapping with the same
    /// key are duplicates that YAML forbids and that tools resolve differently: refused.
    fn mapping(
        &mut self,
        id: usize,
        out: &mut GoMap,
        alias_site: Option<(usize, usize)>,
        depth: usize,
    ) -> Result<(), Failure> {
        let Node::Map(pairs) = &self.tree.nodes[id].0 else {
            return Ok(());
        };
        let mut own_keys: std::collections::HashSet<KeyId> = std::collections::HashSet::new();
        for &(key, value) in pairs {
            if self.is_merge(key) {
                self.merge(value, out, alias_site, depth)?;
                continue;
            }
            let key_spot = self.unmarshal(key, alias_site, depth + 1)?;
            let (_, line, column) = self.tree.nodes[key];
            if matches!(key_spot.go, Go::Seq(_) | Go::Map(_)) {
                return Err((
                    line,
                    column,
                    "a mapping key that is a list or a map (kubectl refuses it)".into(),
                ));
            }
            let id = key_id(&key_spot.go);
            if id.as_ref().is_some_and(|id| own_keys.contains(id)) {
                return Err((
                    line,
                    column,
                    format!(
                        "duplicate key {}: kubectl keeps the last one, other YAML readers refuse the document or keep the first",
                        describe_key(&key_spot.go)
                    ),
                ));
            }
            own_keys.extend(id);
            let value_spot = self.unmarshal(value, alias_site, depth + 1)?;
            let entry = Entry {
                key: key_spot.go,
                key_line: key_spot.line,
                key_column: key_spot.column,
                value: value_spot,
            };
            set_map_index(out, entry);
        }
        Ok(())
    }

    /// go-yaml v2 `isMerge`: a scalar `<<` that is plain and untagged (or tagged `!`), or
    /// tagged `!!merge`. A quoted `"<<"` is an ordinary key.
    fn is_merge(&self, id: usize) -> bool {
        match &self.tree.nodes[id].0 {
            Node::Scalar {
                value,
                tag,
                implicit,
            } => value == "<<" && (*implicit || tag.as_deref() == Some(MERGE_TAG)),
            _ => false,
        }
    }

    /// go-yaml v2 `decoder.merge`: a mapping, an alias to one, or a sequence of those, whose
    /// entries are written into `out`; a sequence is merged from its last item to its first, so
    /// that earlier maps take precedence.
    fn merge(
        &mut self,
        id: usize,
        out: &mut GoMap,
        alias_site: Option<(usize, usize)>,
        depth: usize,
    ) -> Result<(), Failure> {
        let (node, line, column) = &self.tree.nodes[id];
        let (line, column) = (*line, *column);
        let want_map = || {
            (
                line,
                column,
                "a merge key `<<` needs a map, or a list of maps, as its value".to_string(),
            )
        };
        match node {
            Node::Map(_) => self.merge_one(id, out, alias_site, depth),
            Node::Alias(target) => {
                if !matches!(self.tree.nodes[*target].0, Node::Map(_)) {
                    return Err(want_map());
                }
                self.merge_one(id, out, alias_site, depth)
            }
            Node::Seq(items) => {
                for &item in items.iter().rev() {
                    let ok = match &self.tree.nodes[item].0 {
                        Node::Map(_) => true,
                        Node::Alias(target) => matches!(self.tree.nodes[*target].0, Node::Map(_)),
                        _ => false,
                    };
                    if !ok {
                        let (_, l, c) = self.tree.nodes[item];
                        return Err((l, c, want_map().2));
                    }
                    self.merge_one(item, out, alias_site, depth)?;
                }
                Ok(())
            }
            Node::Scalar { .. } => Err(want_map()),
        }
    }

    /// `d.unmarshal(n, out)` with `out` the map being merged into: counted like any decode, an
    /// alias followed (and checked for cycles).
    fn merge_one(
        &mut self,
        id: usize,
        out: &mut GoMap,
        alias_site: Option<(usize, usize)>,
        depth: usize,
    ) -> Result<(), Failure> {
        let (node, line, column) = &self.tree.nodes[id];
        let (line, column) = (*line, *column);
        self.count(line, column)?;
        if depth > MAX_EXPANDED_DEPTH {
            return Err((
                line,
                column,
                format!(
                    "nesting deeper than {MAX_EXPANDED_DEPTH} levels once aliases are expanded"
                ),
            ));
        }
        match node {
            Node::Alias(target) => {
                let target = *target;
                if self.expanding.contains(&id) {
                    return Err((
                        line,
                        column,
                        "an anchor's value contains an alias to itself".into(),
                    ));
                }
                self.expanding.push(id);
                self.alias_depth += 1;
                let site = alias_site.or(Some((line, column)));
                let (_, target_line, target_column) = self.tree.nodes[target];
                let result = self
                    .count(target_line, target_column)
                    .and_then(|()| self.mapping(target, out, site, depth + 1));
                self.alias_depth -= 1;
                self.expanding.pop();
                result
            }
            _ => self.mapping(id, out, alias_site, depth),
        }
    }
}

/// go-yaml v2 `setMapIndex` (not strict): the entry replaces one with the same Go key, where it
/// stands, or is added.
fn set_map_index(out: &mut GoMap, entry: Entry) {
    let id = key_id(&entry.key);
    match id.as_ref().and_then(|id| out.index.get(id)) {
        Some(&at) => out.entries[at] = entry,
        None => {
            if let Some(id) = id {
                out.index.insert(id, out.entries.len());
            }
            out.entries.push(entry);
        }
    }
}

fn describe_key(key: &Go) -> String {
    match key {
        Go::Str(s) => format!("{s:?}"),
        Go::Bool(b) => format!("{b} (a YAML 1.1 boolean)"),
        Go::Int(i) => format!("{i} (a number)"),
        Go::Uint(u) => format!("{u} (a number)"),
        Go::Float(f) => format!("{f} (a number)"),
        Go::Null => "null".into(),
        Go::Seq(_) | Go::Map(_) => "a collection".into(),
    }
}

/// go-yaml v2 `decoder.scalar` into an `interface{}`: a quoted scalar without a tag is a
/// string; anything else goes through `resolve`, a `!!binary` value is base64-decoded, and a
/// timestamp stays the string it was written as.
fn scalar(value: &str, tag: Option<&str>, implicit: bool) -> Result<Go, String> {
    let tag = match tag {
        None if !implicit => return Ok(Go::Str(value.to_string())),
        None => "",
        Some(tag) => tag,
    };
    match tag {
        BINARY_TAG => {
            // Go's base64.StdEncoding: padding required, `\r` and `\n` ignored, trailing bits
            // allowed.
            let cleaned: String = value.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_allow_trailing_bits(true)
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
            );
            let bytes = engine
                .decode(cleaned.as_bytes())
                .map_err(|_| "a !!binary value that is not valid base64 (kubectl refuses it)".to_string())?;
            String::from_utf8(bytes)
                .map(Go::Str)
                .map_err(|_| "a !!binary value that is not UTF-8 text: kubectl would replace its bytes".to_string())
        }
        TIMESTAMP_TAG => Err(
            "an explicit !!timestamp tag: hostguard does not check timestamps as kubectl's decoder does; remove the tag".into(),
        ),
        "" | STR_TAG | BOOL_TAG | INT_TAG | FLOAT_TAG | NULL_TAG => resolve(tag, value),
        // Any other tag (`!`, `!foo`, `!!map` on a scalar) is not resolvable (`resolvableTag`):
        // the string stays, even for a plain `! on`.
        _ => Ok(Go::Str(value.to_string())),
    }
}

/// go-yaml v2 `resolve.go` `resolve` for the resolvable tags, with the check of its deferred
/// function: an explicit tag must match what the value resolves to (an `!!float` may be an int).
fn resolve(tag: &str, input: &str) -> Result<Go, String> {
    let (rtag, out) = resolve_plain(tag, input)?;
    if tag.is_empty() || tag == rtag || tag == STR_TAG {
        return Ok(out);
    }
    if tag == FLOAT_TAG && rtag == INT_TAG {
        // Only go-yaml's int and int64 become floats; a uint64 does not (`resolve`'s deferred
        // switch), and the tag check below refuses it.
        if let Go::Int(i) = out {
            return Ok(Go::Float(i as f64));
        }
    }
    let short = |t: &str| t.replace("tag:yaml.org,2002:", "!!");
    Err(format!(
        "cannot decode {} `{input}` as a {} (kubectl refuses it)",
        short(rtag),
        short(tag)
    ))
}

/// The body of go-yaml v2 `resolve`: the first character hints at the type, then the YAML 1.1
/// tables (`resolveMapList`: y/yes/on/true…, n/no/off/false…, null spellings, .inf, .nan, `<<`),
/// then Go's integer syntax with `_` removed (`strconv.ParseInt(plain, 0, 64)`: `0x`, `0o`,
/// `0b`, a leading `0` for octal), then floats matching `yamlStyleFloat`. Sexagesimal numbers
/// (`190:20:30`) are strings: go-yaml dropped them.
fn resolve_plain(tag: &str, input: &str) -> Result<(&'static str, Go), String> {
    let hint = match input.as_bytes().first() {
        None => b'N',
        Some(b'+' | b'-') => b'S',
        Some(b'0'..=b'9') => b'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => b'M',
        Some(b'.') => b'.',
        Some(_) => 0,
    };
    if hint == 0 || tag == STR_TAG {
        return Ok((STR_TAG, Go::Str(input.to_string())));
    }
    if let Some(known) = resolve_map(input) {
        return Ok(known);
    }
    match hint {
        b'.' => {
            // `strconv.ParseFloat(in, 64)` on the text as written.
            if input.contains('_') && looks_like_dot_float(&input.replace('_', "")) {
                return Err(format!(
                    "`{input}`: hostguard cannot tell whether kubectl reads this as a number or a string; quote it"
                ));
            }
            if looks_like_dot_float(input)
                && let Some(f) = parse_finite(input)
            {
                return Ok((FLOAT_TAG, Go::Float(f)));
            }
        }
        b'D' | b'S' => {
            // Timestamps (which only the tagless case tries) stay strings in an interface{}, and
            // no timestamp is also a number, so that step changes nothing here.
            let plain = input.replace('_', "");
            if let Some(i) = parse_go_int(&plain) {
                return Ok((INT_TAG, i));
            }
            if is_yaml_style_float(&plain)
                && let Some(f) = parse_finite(&plain)
            {
                return Ok((FLOAT_TAG, Go::Float(f)));
            }
        }
        _ => {}
    }
    Ok((STR_TAG, Go::Str(input.to_string())))
}

fn resolve_map(input: &str) -> Option<(&'static str, Go)> {
    Some(match input {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            (BOOL_TAG, Go::Bool(true))
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            (BOOL_TAG, Go::Bool(false))
        }
        "" | "~" | "null" | "Null" | "NULL" => (NULL_TAG, Go::Null),
        ".nan" | ".NaN" | ".NAN" => (FLOAT_TAG, Go::Float(f64::NAN)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            (FLOAT_TAG, Go::Float(f64::INFINITY))
        }
        "-.inf" | "-.Inf" | "-.INF" => (FLOAT_TAG, Go::Float(f64::NEG_INFINITY)),
        // `<<` resolves to the merge tag with the string as its value; as a value it is "<<".
        "<<" => (MERGE_TAG, Go::Str("<<".into())),
        _ => return None,
    })
}

/// `strconv.ParseInt(s, 0, 64)`, then `strconv.ParseUint(s, 0, 64)` (no sign) for what does not
/// fit an int64: an optional sign, then `0x`/`0X` hex, `0o`/`0O` or a leading `0` octal,
/// `0b`/`0B` binary, or decimal.
fn parse_go_int(s: &str) -> Option<Go> {
    let (negative, signed, body) = match s.as_bytes().first()? {
        b'-' => (true, true, &s[1..]),
        b'+' => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if negative {
        if magnitude <= 1u128 << 63 {
            return Some(Go::Int((magnitude as i128).wrapping_neg() as i64));
        }
        return None;
    }
    if magnitude <= i64::MAX as u128 {
        return Some(Go::Int(magnitude as i64));
    }
    if !signed && magnitude <= u64::MAX as u128 {
        return Some(Go::Uint(magnitude as u64));
    }
    None
}

/// go-yaml v2 `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    } else {
        if !digits(&mut i) {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// What `strconv.ParseFloat` accepts of a text starting with `.`: `.5`, `.5e3`.
fn looks_like_dot_float(s: &str) -> bool {
    s.starts_with('.') && is_yaml_style_float(s)
}

/// `strconv.ParseFloat(s, 64)` for decimal text: an overflow is an error (go-yaml then keeps
/// the string), an underflow rounds to zero.
fn parse_finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `sigs.k8s.io/yaml` `convertToJSONableObject` and `json.Marshal`, then the number conversion
/// of kubectl's unstructured decoding (apimachinery `util/json` `convertNumber`: an integral
/// number that fits an int64 is an int64, anything else a float64). `line_shift` turns segment
/// lines into file lines.
fn to_json(spot: Spot, line_shift: usize) -> Result<(Value, Lines), Failure> {
    let line = spot.line + line_shift;
    let at = |message: String| (line, spot.column, message);
    let (value, children) = match spot.go {
        Go::Null => (Value::Null, Children::Leaf),
        Go::Bool(b) => (Value::Bool(b), Children::Leaf),
        Go::Int(i) => (Value::from(i), Children::Leaf),
        Go::Uint(u) => (json_float(u as f64).map_err(at)?, Children::Leaf),
        Go::Float(f) => (json_float(f).map_err(at)?, Children::Leaf),
        Go::Str(s) => (Value::String(s), Children::Leaf),
        Go::Seq(items) => {
            let mut values = Vec::with_capacity(items.len());
            let mut lines = Vec::with_capacity(items.len());
            for item in items {
                let (v, l) = to_json(item, line_shift)?;
                values.push(v);
                lines.push(l);
            }
            (Value::Array(values), Children::Seq(lines))
        }
        Go::Map(GoMap { entries, .. }) => {
            let mut map = Map::new();
            let mut lines: Vec<(String, Lines)> = Vec::with_capacity(entries.len());
            let mut first_at: HashMap<String, (usize, Go)> = HashMap::new();
            for entry in entries {
                let key_line = entry.key_line + line_shift;
                let key = json_key(&entry.key)
                    .map_err(|message| (key_line, entry.key_column, message))?;
                if let Some((other_line, other)) = first_at.get(&key) {
                    // Distinct Go keys (1 and "1", true and "true", 1 and 1.0) that become one
                    // JSON key: Go's map order decides which value kubectl keeps, at random.
                    return Err((
                        key_line,
                        entry.key_column,
                        format!(
                            "keys {} (line {other_line}) and {} both become {key:?} for kubectl, which keeps one of them at random",
                            describe_key(other),
                            describe_key(&entry.key)
                        ),
                    ));
                }
                first_at.insert(key.clone(), (key_line, entry.key.clone()));
                let (v, mut l) = to_json(entry.value, line_shift)?;
                l.line = key_line;
                map.insert(key.clone(), v);
                lines.push((key, l));
            }
            (Value::Object(map), Children::Map(lines))
        }
    };
    let children = if spot.leaf { Children::Leaf } else { children };
    Ok((value, Lines { line, children }))
}

/// A float as the API server receives it: `json.Marshal` refuses NaN and infinities; an
/// integral value that Go writes without an exponent (below 1e21) and that fits an int64 is read
/// back as an int64.
fn json_float(f: f64) -> Result<Value, String> {
    if !f.is_finite() {
        return Err(format!(
            "{} cannot be written as JSON (kubectl refuses it)",
            if f.is_nan() {
                ".nan"
            } else {
                "an infinite number"
            }
        ));
    }
    if f.fract() == 0.0
        && f.abs() < 1e21
        && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
    {
        return Ok(Value::from(f as i64));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| "a number that cannot be written as JSON".to_string())
}

/// `convertToJSONableObject`'s key conversion: strings as they are, ints in decimal, booleans as
/// `true`/`false`, floats as `strconv.FormatFloat(f, 'g', -1, 32)` (with `.inf`, `-.inf`,
/// `.nan`); null and uint64 keys are refused (`Unsupported map key`).
fn json_key(key: &Go) -> Result<String, String> {
    match key {
        Go::Str(s) => Ok(s.clone()),
        Go::Int(i) => Ok(i.to_string()),
        Go::Bool(b) => Ok(b.to_string()),
        Go::Float(f) => Ok(format_float32_g(*f)),
        Go::Null => Err("a null mapping key (kubectl refuses it)".into()),
        Go::Uint(u) => Err(format!(
            "the mapping key {u} is beyond int64 (kubectl refuses it)"
        )),
        Go::Seq(_) | Go::Map(_) => Err("a mapping key that is a list or a map".into()),
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`: the shortest digits that identify the float32,
/// in `%e` form when the exponent is below -4 or at least 6 (the precision Go uses for shortest
/// `%g`), else positional; then `sigs.k8s.io/yaml`'s `.inf`/`-.inf`/`.nan` spellings.
fn format_float32_g(f: f64) -> String {
    let x = f as f32;
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let negative = x.is_sign_negative();
    let sign = if negative { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    // Rust's `{:e}` prints the shortest round-trip digits: `1.2345679e8`, `1e-7`.
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    if exponent < 0 {
        let zeros = "0".repeat((-exponent - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exponent as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    // Expected strings are Go's strconv.FormatFloat(f, 'g', -1, 32).
    #[case(1.0, "1")]
    #[case(0.5, "0.5")]
    #[case(1000.0, "1000")]
    #[case(1e6, "1e+06")]
    #[case(123456.0, "123456")]
    #[case(123456789.0, "1.2345679e+08")]
    #[case(0.0001, "0.0001")]
    #[case(0.00001, "1e-05")]
    #[case(-2.5, "-2.5")]
    #[case(-0.0, "-0")]
    #[case(1e39, ".inf")]
    #[case(1.2345678901, "1.2345679")]
    fn float_keys_are_formatted_as_go_formats_float32(#[case] f: f64, #[case] want: &str) {
        assert_eq!(format_float32_g(f), want);
    }

    #[rstest]
    #[case("0777", Some(511))]
    #[case("0o17", Some(15))]
    #[case("0x1A", Some(26))]
    #[case("-0x1A", Some(-26))]
    #[case("+0b101", Some(5))]
    #[case("08", None)]
    #[case("0x", None)]
    #[case("-9223372036854775808", Some(i64::MIN))]
    fn integers_follow_go_parse_int_base_0(#[case] text: &str, #[case] want: Option<i64>) {
        let got = match parse_go_int(text) {
            Some(Go::Int(i)) => Some(i),
            _ => None,
        };
        assert_eq!(got, want, "{text}");
    }

    #[test]
    fn separators_are_lines_that_start_with_three_dashes() {
        let segments = split("a: 1\n---\nb: 2\n--- # note\n  ---\n").unwrap_or_default();
        let texts: Vec<&str> = segments.iter().map(|s| s.text).collect();
        assert_eq!(texts, vec!["a: 1\n", "b: 2\n", "  ---\n"]);
        assert_eq!(segments[2].first_line, 5);
        assert!(split("a: 1\n--- b: 2\n").is_err());
        assert!(split("----\n").is_err());
    }
}
