//! hostguard's reading of YAML against kubectl's decoder: every case of a generated corpus of
//! YAML edge cases goes through `tests/yaml-oracle` (a Go program on `sigs.k8s.io/yaml` and
//! go-yaml v2, the code kubectl decodes manifests with) and through
//! `manifest::read_kubectl_document`. Each case must read the same, or hostguard must refuse it
//! with its line; a document kubectl refuses must be refused by hostguard too. Never a silent
//! difference.
//!
//! The oracle: `HOSTGUARD_YAML_ORACLE` names the built binary (`.ci/run` builds it with
//! `tests/yaml-oracle/build` and sets it). When it is set and the binary is missing, the test
//! fails; in CI (`CI` set) it must be set. Elsewhere the test builds the oracle itself when Go
//! and the Debian packages are installed, and otherwise says that it did not run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hostguard::manifest::{LoadError, read_kubectl_document};
use serde_json::Value;

/// What the oracle said of one case.
#[derive(Debug)]
enum Kubectl {
    Json(Value),
    Refused(String),
}

fn oracle() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HOSTGUARD_YAML_ORACLE") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "HOSTGUARD_YAML_ORACLE={} is not a file: build it with tests/yaml-oracle/build",
            path.display()
        );
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must build the YAML oracle and set HOSTGUARD_YAML_ORACLE (see .ci/run)"
    );
    let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/yaml-oracle/build");
    let out = Command::new(&build)
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("yaml-oracle"))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "yaml_differential: NOT RUN: the YAML oracle could not be built here ({}); install golang-go, golang-k8s-sigs-yaml-dev and golang-gopkg-yaml.v2-dev",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn run_oracle(oracle: &Path, cases: &[String]) -> Vec<Kubectl> {
    let mut child = Command::new(oracle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", oracle.display()));
    let input = serde_json::to_vec(cases).expect("cases serialise");
    // The oracle reads all of stdin before it writes, so writing first cannot deadlock.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("oracle reads the cases");
    let out = child.wait_with_output().expect("oracle runs");
    assert!(out.status.success(), "the oracle failed: {:?}", out.status);
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("oracle writes JSON");
    assert_eq!(results.len(), cases.len(), "one result per case");
    results
        .into_iter()
        .map(|r| match (r.get("json"), r.get("error")) {
            (Some(json), None) => Kubectl::Json(json.clone()),
            (None, Some(Value::String(e))) => Kubectl::Refused(e.clone()),
            _ => panic!("unexpected oracle result {r}"),
        })
        .collect()
}

/// JSON equality with numbers compared as numbers: the oracle writes what `json.Marshal` makes
/// of go-yaml's types, hostguard what kubectl's unstructured decoding then reads (an integral
/// float is an int64), and both are the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Scalar spellings whose YAML 1.1 reading (go-yaml v2 `resolve.go`) differs from YAML 1.2's or
/// is easy to get wrong.
const SCALARS: &[&str] = &[
    // Booleans, every spelling of resolveMapList and near misses.
    "y",
    "Y",
    "yes",
    "Yes",
    "YES",
    "n",
    "N",
    "no",
    "No",
    "NO",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "tRUE",
    "yEs",
    "oN",
    "nO",
    "Yes!",
    // Nulls.
    "~",
    "null",
    "Null",
    "NULL",
    "nULL",
    "nil",
    // Integers in Go's ParseInt(s, 0, 64) syntax after removing underscores.
    "0",
    "00",
    "-0",
    "+0",
    "7",
    "0777",
    "-0777",
    "0o17",
    "0O17",
    "0x1A",
    "0X1a",
    "0x_1A",
    "-0x1A",
    "+0x1A",
    "0b101",
    "0B101",
    "-0b101",
    "+0b101",
    "1_000",
    "1__0",
    "_1000",
    "1000_",
    "08",
    "09",
    "010",
    "0_7",
    "0x",
    "0b",
    "0o",
    "0x1G",
    "0b102",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "+18446744073709551615",
    "99999999999999999999999",
    // Sexagesimal (YAML 1.1 only; go-yaml dropped it).
    "190:20:30",
    "1:30",
    "-1:30",
    "1:30.5",
    // Floats.
    "1.5",
    "1.",
    ".5",
    "-.5",
    "+.5",
    "1e3",
    "1E3",
    "1e+3",
    "1e-3",
    "1.5e3",
    "1_000.5",
    "1_000e3",
    ".5e3",
    ".5_0",
    "._5",
    ".",
    "..",
    ".e3",
    "6.8523015e+5",
    "685.230_15e+03",
    "685_230.15",
    "1e999",
    "-1e999",
    "1e-999",
    "0.1",
    "3.14159265358979",
    "123456789.0",
    "1e21",
    "1e20",
    "-0.0",
    "0.0",
    "1e",
    "1e+",
    "+",
    "-",
    "0x1p3",
    "1.5.5",
    // Infinities and NaN.
    ".inf",
    ".Inf",
    ".INF",
    "+.inf",
    "-.inf",
    "-.Inf",
    "+.INF",
    ".nan",
    ".NaN",
    ".NAN",
    ".Nan",
    "inf",
    "nan",
    "Infinity",
    "+inf",
    "-inf",
    ".infinity",
    // Timestamps (strings in an interface{}).
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14T21:59:43.10Z",
    "2001-12-14 21:59:43.10 -5",
    "2002-1-2",
    "2001-12-14 21:59:43.10",
    "2001-13-45",
    // Strings that look special.
    "<<",
    "=",
    "<<<",
    "hello",
    "a b",
    "http://x:1/",
    "a:b",
    "0777a",
    "1_0_0_0",
    "+-1",
    "--1",
    "0x-1",
    "1,000",
    "$1",
    "1e3e3",
    "٣",
];

/// Tags put in front of scalars.
const TAGS: &[&str] = &[
    "!!str",
    "!!int",
    "!!float",
    "!!bool",
    "!!null",
    "!",
    "!custom",
    "!!map",
    "!!seq",
    "!<tag:yaml.org,2002:int>",
    "!<!!str>",
    "!!timestamp",
    "!!merge",
];

fn generated_cases() -> Vec<String> {
    let mut cases = Vec::new();
    for s in SCALARS {
        // As a key, a value, a list item, in flow collections, quoted.
        cases.push(format!("{s}: v\n"));
        cases.push(format!("k: {s}\n"));
        cases.push(format!("- {s}\n"));
        cases.push(format!("{{{s}: v}}\n"));
        cases.push(format!("[{s}]\n"));
        cases.push(format!("k: '{s}'\n"));
        cases.push(format!("\"{s}\": v\n"));
        // A ConfigMap whose data key and value are the scalar, next to a key it may collide with.
        cases.push(format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  {s}: https://example.openai.azure.com/\n  true: t\n  \"26\": n\n"
        ));
        // An env value.
        cases.push(format!(
            "spec:\n  containers:\n  - name: a\n    env:\n    - name: OPENAI_BASE_URL\n      value: {s}\n"
        ));
        for tag in TAGS {
            cases.push(format!("k: {tag} {s}\n"));
            cases.push(format!("{tag} {s}: v\n"));
        }
    }
    // Pairs of keys in one mapping: the same key for go-yaml, or the same JSON key.
    let colliding = [
        "on", "true", "\"true\"", "1", "\"1\"", "1.0", "0x1A", "26", "032", ".nan", "0.0", "-0.0",
        "y", "1_000", "1000", "1e3", "~", "null", "<<x",
    ];
    for a in colliding {
        for b in colliding {
            cases.push(format!("{a}: first\n{b}: second\n"));
        }
    }
    for tag in TAGS {
        cases.push(format!("k: {tag} {{a: 1}}\n"));
        cases.push(format!("k: {tag} [a]\n"));
        cases.push(format!("k: {tag}\n"));
        cases.push(format!("k: {tag} ''\n"));
        cases.push(format!("k: {tag} \"\"\n"));
    }
    cases.extend(MERGES.iter().map(|s| s.to_string()));
    cases.extend(ANCHORS.iter().map(|s| s.to_string()));
    cases.extend(SYNTAX.iter().map(|s| s.to_string()));
    cases.extend(BINARY.iter().map(|s| s.to_string()));
    cases.push(format!("{}: long key\n", "k".repeat(1100)));
    cases.push(format!("\"{}\": long quoted key\n", "k".repeat(1100)));
    cases.push(format!("{}x\n", "[".repeat(130)));
    cases.push(format!(
        "a: &a [x, x]\nb: &b [{}]\n",
        vec!["*a"; 200].join(", ")
    ));
    cases.push(alias_bomb(9));
    cases.push(alias_bomb(3));
    cases
}

/// A billion-laughs document with `levels` levels of nine aliases each.
fn alias_bomb(levels: usize) -> String {
    let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x]\n");
    for level in 1..=levels {
        let previous = format!("*l{}", level - 1);
        text.push_str(&format!(
            "l{level}: &l{level} [{}]\n",
            [previous.as_str(); 9].join(", ")
        ));
    }
    text
}

/// Merge keys in every position go-yaml v2 `decoder.mapping` and `decoder.merge` distinguish.
const MERGES: &[&str] = &[
    // After and before an explicit key; between two.
    "base: &b {a: merged}\nm:\n  a: explicit\n  <<: *b\n",
    "base: &b {a: merged}\nm:\n  <<: *b\n  a: explicit\n",
    "base: &b {a: merged, c: merged}\nm:\n  a: explicit\n  <<: *b\n  c: explicit\n",
    // Two merge keys: the later one writes last.
    "x: &x {a: x}\ny: &y {a: y}\nm:\n  <<: *x\n  <<: *y\n",
    "x: &x {a: x}\ny: &y {a: y, b: y}\nm:\n  <<: *y\n  b: explicit\n  <<: *x\n",
    // A list of maps: earlier maps take precedence.
    "x: &x {a: x}\ny: &y {a: y, b: y}\nm:\n  <<: [*x, *y]\n",
    "x: &x {a: x}\ny: &y {a: y, b: y}\nm:\n  b: explicit\n  <<: [*y, *x]\n",
    "m:\n  <<: [{a: 1}, {a: 2, b: 2}]\n",
    "m:\n  <<: {a: inline}\n  b: 2\n",
    // Merges that bring merges.
    "x: &x {a: x}\ny: &y {<<: *x, b: y}\nm:\n  <<: *y\n",
    "x: &x {a: x}\ny: &y\n  <<: *x\n  a: y\nm: {<<: *y, c: 1}\n",
    // Invalid merge values.
    "m:\n  <<: scalar\n",
    "s: &s [1, 2]\nm:\n  <<: *s\n",
    "s: &s hello\nm:\n  <<: *s\n",
    "m:\n  <<: [a, b]\n",
    "s: &s [a]\nm:\n  <<: [*s]\n",
    "m:\n  <<: []\n",
    "m:\n  <<: {}\n",
    "m:\n  <<: ~\n",
    "m:\n  <<:\n",
    "m:\n  <<: [[{a: 1}]]\n",
    // What is and is not a merge key.
    "m:\n  \"<<\": {a: 1}\n",
    "m:\n  '<<': {a: 1}\n",
    "m:\n  !!str <<: {a: 1}\n",
    "m:\n  ! <<: {a: 1}\n",
    "m:\n  !!merge <<: {a: 1}\n",
    "m:\n  !!merge x: {a: 1}\n",
    "m:\n  <<x: {a: 1}\n",
    "m:\n  k: <<\n",
    "- <<\n",
    "<<: {a: 1}\n",
    "x: &x {a: 1}\n? <<\n: *x\n",
    "x: &x <<\nm:\n  *x : {a: 1}\n",
    // Merge keys inside ConfigMap data and env lists.
    "defaults: &d\n  OPENAI_BASE_URL: https://example.openai.azure.com/\napiVersion: v1\nkind: ConfigMap\ndata:\n  OPENAI_BASE_URL: https://api.openai.com/v1\n  <<: *d\n",
    "defaults: &d\n  OPENAI_BASE_URL: https://example.openai.azure.com/\napiVersion: v1\nkind: ConfigMap\ndata:\n  <<: *d\n  OPENAI_BASE_URL: https://api.openai.com/v1\n",
    "a: &a {on: x}\ndata:\n  <<: *a\n  true: y\n",
    "a: &a {on: x}\ndata:\n  true: y\n  <<: *a\n",
    "a: &a {\"true\": x}\ndata:\n  on: y\n  <<: *a\n",
    "a: &a {1: x}\ndata:\n  <<: *a\n  \"1\": y\n",
    "env:\n- &e {name: A, value: x}\n- <<: *e\n  value: y\n",
    // Merged keys that collide after conversion to JSON keys.
    "a: &a {0x1A: x}\nb: &b {26: y}\nm:\n  <<: [*a, *b]\n",
    "m:\n  <<: [{.nan: 1}, {.nan: 2}]\n",
    // An anchored map merged into itself.
    "m: &m\n  a: 1\n  <<: *m\n",
];

/// Anchors and aliases as go-yaml's parser records them.
const ANCHORS: &[&str] = &[
    "a: &x 1\nb: *x\n",
    "a: &x 1\na2: &x 2\nb: *x\n",
    "b: *x\na: &x 1\n",
    "a: &x [*x]\n",
    "a: &x {k: *x}\n",
    "a: &x k\n*x : v\n",
    "a: &x {k: v}\n*x : v\n",
    "a: &x [k]\n*x : v\n",
    "a: &a.b 1\nb: *a.b\n",
    "a: &a: 1\nb: *a:\n",
    "a: &ü 1\nb: *ü\n",
    "a: &a[ 1\n",
    "a: &x\nb: *x\n",
    "- &x a\n- *x\n- &x b\n- *x\n",
    "a: &x ~\nb: *x\n",
    "a: &x on\nb: *x\n*x : key\n",
    "&x a: b\n",
    "a: !!str &x 1\nb: *x\n",
    "a: &x !!str 1\nb: *x\n",
    "*x\n",
    "&x\n",
    "a: *\n",
];

/// Syntax where YAML 1.1 (libyaml, go-yaml v2) and YAML 1.2 parsers may part.
const SYNTAX: &[&str] = &[
    // Tabs.
    "a:\tb\n",
    "a: b\t\n",
    "a:\n\tb: c\n",
    "a: [b,\tc]\n",
    "\ta: b\n",
    "a: \"x\ty\"\n",
    "- a\n-\tb\n",
    // Line breaks that YAML 1.2 does not have.
    "a: b\u{85}c: d\n",
    "a: b\u{2028}c: d\n",
    "a: b\u{2029}c: d\n",
    "a: \"b\u{2028}c\"\n",
    "# comment\u{2028}a: b\n",
    "a: |\n  x\u{85}y\n",
    // Byte order marks and control characters.
    "\u{feff}a: b\n",
    "a: b\n\u{feff}c: d\n",
    "a: \u{feff}b\n",
    "a: b\u{1}\n",
    "a: b\u{7f}\n",
    "a: b\u{80}\n",
    "a: b\u{9f}\n",
    "a: b\u{a0}c\n",
    "a: b\u{fffe}\n",
    "a: b\u{e000}\n",
    "a: \"\\u0001\"\n",
    // Line endings.
    "a: b\r\nc: d\r\n",
    "a: b\rc: d\r",
    "a: |\r\n  x\r\n  y\r\n",
    "a: \"x\r\n  y\"\n",
    // Escapes in double quotes.
    "a: \"\\/\"\n",
    "a: \"\\t\"\n",
    "a: \"\\\t\"\n",
    "a: \"\\x41\"\n",
    "a: \"\\u263A\"\n",
    "a: \"\\U0001F600\"\n",
    "a: \"\\ud83d\\ude00\"\n",
    "a: \"\\ud83d\"\n",
    "a: \"\\N\\_\\L\\P\"\n",
    "a: \"\\e\\0\\a\\v\\b\\f\\r\"\n",
    "a: \"\\ \"\n",
    "a: \"\\q\"\n",
    "a: \"\\x4\"\n",
    "a: \"x\\\n  y\"\n",
    "a: 'it''s'\n",
    "a: 'x\n\n  y'\n",
    // Block scalars.
    "a: |\n  x\n  y\n",
    "a: |-\n  x\n\n",
    "a: |+\n  x\n\n",
    "a: >\n  x\n  y\n\n  z\n",
    "a: >-\n  x\n   y\n  z\n",
    "a: |2\n   x\n",
    "a: |1-\n  x\n",
    "a: |\n\n\n  x\n",
    "a: >\n\n  x\n",
    "a: |\nb: c\n",
    "a: |x\n  y\n",
    "a: |  # comment\n  y\n",
    "- |\n x\n- >\n y\n",
    // Plain scalars across lines, with colons and hashes.
    "a: b\n  c\n  d\n",
    "a: b\n\n  c\n",
    "a: b #c\n",
    "a: b#c\n",
    "a: b :c\n",
    "a: b: c\n",
    "a: :b\n",
    "a: -b\n",
    "a: ?b\n",
    "a: - b\n",
    "a: %b\n",
    "a: @b\n",
    "a: `b\n",
    "a: b, c\n",
    "a: [b c, d]\n",
    "key with spaces: v\n",
    "a :b\n",
    "a : b\n",
    // Flow collections.
    "{a:1}\n",
    "[a:1]\n",
    "{a: 1,}\n",
    "[1,]\n",
    "[1,,]\n",
    "{? a}\n",
    "{? a: b}\n",
    "[a: b]\n",
    "[a: b, c]\n",
    "[? a : b]\n",
    "{\"a\":1}\n",
    "{'a':1}\n",
    "{a: [b, {c: d}]}\n",
    "{a: b\n c: d}\n",
    "{a: b,\nc: d}\n",
    "[a,\nb]\n",
    "{a: {b: {c: [1, [2, [3]]]}}}\n",
    "{a, b}\n",
    "{a: }\n",
    "{: b}\n",
    "[a]: b\n",
    "{a: 1} : b\n",
    "a: {b: c}d\n",
    "a: [b]c\n",
    "a: {x: 1\n",
    // Keys.
    "? a\n: b\n",
    "? a\n",
    "? |\n  block key\n: v\n",
    "? [a, b]\n: c\n",
    "? {a: b}\n: c\n",
    ": v\n",
    "a:\n",
    "a: \n",
    "a:b\n",
    "a:\n  - b\n  - c\n",
    "a:\n- b\n- c\n",
    "- - a\n  - b\n- c\n",
    "-a\n",
    "- a: b\n  c: d\n",
    "- a: b\n c: d\n",
    "a:\n  b: 1\n c: 2\n",
    "a:\n    b: 1\n  c: 2\n",
    "a: 1\n b: 2\n",
    // Documents within one kubectl document.
    "a: 1\n...\n",
    "a: 1\n...\nb: 2\n",
    "a: 1\n...\n# only a comment\n",
    "...\na: 1\n",
    "%YAML 1.1\n",
    "%YAML 1.1\na: 1\n",
    "%TAG !e! tag:example.com,2000:\na: !e!x 1\n",
    "--- a\n",
    "a: b\n--- c\n",
    " ---\n",
    // Empty and scalar documents.
    "",
    "\n\n",
    "# only a comment\n",
    "~\n",
    "just text\n",
    "'quoted'\n",
    "!!null\n",
    "!!str\n",
    "- \n",
    "[]\n",
    "{}\n",
    "!!binary aGVsbG8=\n",
    // Unicode.
    "ключ: значение\n",
    "a: \"\\u00e9\"\n",
    "émoji: 😀\n",
    "a: b\u{200b}\n",
    "a\u{a0}: b\n",
];

/// `!!binary` values: decoded with Go's base64.StdEncoding.
const BINARY: &[&str] = &[
    "a: !!binary aGVsbG8=\n",
    "a: !!binary aGVsbG8\n",
    "a: !!binary |\n  aGVs\n  bG8=\n",
    "a: !!binary aGVs bG8=\n",
    "a: !!binary aGVsbG9=\n",
    "a: !!binary /w==\n",
    "a: !!binary \"\"\n",
    "!!binary aGk=: v\n",
    "a: !!binary '@@'\n",
];

#[test]
fn hostguard_reads_yaml_as_kubectls_decoder_or_refuses_it_with_a_line() {
    let Some(oracle) = oracle() else {
        return;
    };
    let cases = generated_cases();
    let kubectl = run_oracle(&oracle, &cases);
    let (mut agreed, mut both_refused, mut refused_by_hostguard) = (0, 0, 0);
    let mut differences = Vec::new();
    for (case, kubectl) in cases.iter().zip(&kubectl) {
        let ours = read_kubectl_document("case.yaml", case);
        match (kubectl, &ours) {
            (Kubectl::Json(want), Ok(got)) if same(want, got) => agreed += 1,
            (Kubectl::Json(want), Ok(got)) => differences.push(format!(
                "{case:?}\n    kubectl:   {want}\n    hostguard: {got}"
            )),
            (Kubectl::Json(_), Err(LoadError::Syntax { line, message, .. }))
                if *line >= 1 && !message.is_empty() =>
            {
                refused_by_hostguard += 1;
            }
            (Kubectl::Refused(_), Err(_)) => both_refused += 1,
            (Kubectl::Refused(why), Ok(got)) => differences.push(format!(
                "{case:?}\n    kubectl refuses it: {why}\n    hostguard reads:   {got}"
            )),
            (_, Err(e)) => differences.push(format!("{case:?}\n    unexpected error {e:?}")),
        }
    }
    eprintln!(
        "yaml_differential: {} cases: {agreed} read the same, {both_refused} refused by both, {refused_by_hostguard} refused by hostguard only",
        cases.len()
    );
    assert!(
        differences.is_empty(),
        "{} cases read differently:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// The cases of issue 16 must be read as kubectl reads them, not merely refused.
#[test]
fn the_issue_cases_read_as_kubectl_reads_them() {
    let Some(oracle) = oracle() else {
        return;
    };
    let cases: Vec<String> = [
        "base: &b {OPENAI_BASE_URL: merged}\ndata:\n  OPENAI_BASE_URL: explicit\n  <<: *b\n",
        "x: &x {a: x}\ny: &y {a: y}\nm:\n  <<: *x\n  <<: *y\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ai}\ndata:\n  on: a\n  0777: c\n  0x1A: d\n  1_000: e\n",
        "data:\n  yes: b\n  no: c\n",
        "spec:\n  containers:\n  - env:\n    - name: OPENAI_BASE_URL\n      valueFrom: {configMapKeyRef: {name: ai, key: \"on\", optional: true}}\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let kubectl = run_oracle(&oracle, &cases);
    for (case, kubectl) in cases.iter().zip(kubectl) {
        let Kubectl::Json(want) = kubectl else {
            panic!("the oracle refuses {case:?}");
        };
        let got = read_kubectl_document("case.yaml", case)
            .unwrap_or_else(|e| panic!("hostguard refuses {case:?}: {e}"));
        assert!(
            same(&want, &got),
            "{case:?}\nkubectl:   {want}\nhostguard: {got}"
        );
    }
}
