//! A review's pod-bearing object is read straight from its JSON text (`object`,
//! `workload::read_text`) instead of through a `serde_json::Value` tree (issue 17). These tests
//! hold the two readings equal:
//!
//! - on every workload document of the examples, fixtures and corpus, and on variants of each
//!   built to trip a typed reading (fields of the wrong type, `null`s): the text's view is the
//!   tree's view whenever the text is read at all, and the ConfigMaps a text names are the ones
//!   its tree names;
//! - on reviews whose objects repeat keys (which the API server never writes, and a typed
//!   reading refuses where the tree keeps the last): the answer is the one for the object as its
//!   tree has it, with the repeated key's decoy before the real value and after it.
//!
//! The oracle is the tree: serde_json's own reading, the one the engine always used (and which,
//! like Go's `encoding/json`, keeps the last of repeated keys).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hostguard::admission::{self, Webhook};
use hostguard::api::ClusterProvider;
use hostguard::manifest;
use hostguard::policy::PolicySet;
use hostguard::snapshot::Snapshot;
use hostguard::workload::{self, WorkloadKind};
use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files_in(&path, exts, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
        {
            out.push(path);
        }
    }
}

/// Every object of a built-in pod-bearing kind the repository and the corpus hold, by name.
fn workload_objects() -> Vec<(String, WorkloadKind, Value)> {
    let mut objects = Vec::new();
    let mut push = |name: String, value: Value| {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        if let Some(k) = WorkloadKind::from_type(api_version, kind)
            && !matches!(k, WorkloadKind::Other(_))
        {
            objects.push((name, k, value));
        }
    };
    let mut reviews = Vec::new();
    for dir in [
        "tests/fixtures/admission",
        "../shared/corpus/admission",
        "benches/fixtures",
    ] {
        files_in(&root().join(dir), &["json"], &mut reviews);
    }
    for path in reviews {
        let review: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for field in ["object", "oldObject"] {
            if let Some(object) = review.pointer(&format!("/request/{field}")) {
                push(format!("{}:{field}", path.display()), object.clone());
            }
        }
    }
    let mut manifests = Vec::new();
    for dir in [
        "examples/workloads",
        "tests/fixtures",
        "../shared/corpus/real-world",
    ] {
        files_in(&root().join(dir), &["yaml", "yml"], &mut manifests);
    }
    for path in manifests {
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(docs) = manifest::parse_str(&path.display().to_string(), &text) else {
            continue;
        };
        for (i, doc) in docs.into_iter().enumerate() {
            push(format!("{}#{i}", path.display()), doc.value);
        }
    }
    objects
}

/// The object with the value at `pointer` replaced.
fn with(object: &Value, pointer: &str, value: Value) -> Value {
    let mut out = object.clone();
    if let Some(slot) = out.pointer_mut(pointer) {
        *slot = value;
    }
    out
}

/// The JSON pointers of every value in `value`, to at most `depth` levels.
fn pointers(value: &Value, at: String, depth: usize, out: &mut Vec<String>) {
    if depth == 0 {
        return;
    }
    let escape = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{at}/{}", escape(k));
                out.push(here.clone());
                pointers(v, here, depth - 1, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let here = format!("{at}/{i}");
                out.push(here.clone());
                pointers(v, here, depth - 1, out);
            }
        }
        _ => {}
    }
}

/// The text's reading of `object` is absent or the tree's, and both name the same ConfigMaps.
fn assert_readings_agree(name: &str, kind: WorkloadKind, object: &Value) -> bool {
    let text = serde_json::to_string(object).unwrap();
    let mut from_tree = BTreeSet::new();
    workload::config_map_refs(object, &mut from_tree);
    let mut from_text = BTreeSet::new();
    workload::config_map_refs_text(&text, &mut from_text).expect("valid JSON");
    assert_eq!(from_text, from_tree, "{name}: ConfigMaps named");
    let Some((_, view)) = workload::read_text(kind, &text) else {
        return false;
    };
    let tree = workload::read_as(kind, object)
        .unwrap_or_else(|e| panic!("{name}: the text was read but the tree is refused: {e}"));
    assert_eq!(format!("{view:?}"), format!("{tree:?}"), "{name}");
    true
}

#[test]
fn the_text_reading_is_the_tree_reading_on_every_workload_and_its_variants() {
    let objects = workload_objects();
    assert!(
        objects.len() >= 100,
        "only {} workload objects",
        objects.len()
    );
    let mut read_from_text = 0;
    let mut variants = 0;
    let mut refused_by_text = 0;
    for (name, kind, object) in &objects {
        // A workload the tree reads must be read from its text too (else the fast path would
        // not be taken where it matters); one the tree refuses (an annotation that is a number)
        // is left to the tree, which names the field.
        if assert_readings_agree(name, *kind, object) {
            read_from_text += 1;
        } else {
            assert!(
                workload::read_as(*kind, object).is_err(),
                "{name}: a workload the tree reads must be read from its text"
            );
        }
        // Every value within six levels, made null and made each wrong type in turn.
        let mut at = Vec::new();
        pointers(object, String::new(), 6, &mut at);
        for pointer in &at {
            for value in [
                Value::Null,
                json!("x"),
                json!(7),
                json!([{}]),
                json!({"a": 1}),
            ] {
                let variant = with(object, pointer, value.clone());
                variants += 1;
                if !assert_readings_agree(&format!("{name} {pointer}={value}"), *kind, &variant) {
                    refused_by_text += 1;
                }
            }
        }
    }
    assert!(read_from_text >= 100);
    eprintln!(
        "{read_from_text} objects read from text; {refused_by_text} of {variants} variants left to the tree"
    );
    // The variants must exercise both ways: read from the text, and left to the tree.
    assert!(
        refused_by_text > 100 && refused_by_text < variants,
        "{refused_by_text} of {variants} variants left to the tree"
    );
}

/// JSON text of `value` where every object repeats each key whose path `repeat` accepts, with
/// `decoy` first (`decoy_last` false: the real value wins in the tree) or last (the decoy wins).
fn with_repeats(
    value: &Value,
    path: &str,
    repeat: &dyn Fn(&str) -> bool,
    decoy: &Value,
    decoy_last: bool,
) -> String {
    match value {
        Value::Object(map) => {
            let mut parts = Vec::new();
            for (k, v) in map {
                let here = format!("{path}/{k}");
                let key = serde_json::to_string(k).unwrap();
                let real = format!(
                    "{key}:{}",
                    with_repeats(v, &here, repeat, decoy, decoy_last)
                );
                if repeat(&here) {
                    let fake = format!("{key}:{decoy}");
                    if decoy_last {
                        parts.push(real);
                        parts.push(fake);
                    } else {
                        parts.push(fake);
                        parts.push(real);
                    }
                } else {
                    parts.push(real);
                }
            }
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, v)| with_repeats(v, &format!("{path}/{i}"), repeat, decoy, decoy_last))
                .collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// A CREATE review around an object's text, as the API server would send it.
fn review_text(uid: &str, kind: WorkloadKind, object: &Value, object_text: &str) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let envelope = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind.as_str()},
            "resource": {"group": group, "version": version, "resource": "things"},
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "text-reading"},
            "object": "OBJECT",
        }
    });
    serde_json::to_string(&envelope)
        .unwrap()
        .replace("\"OBJECT\"", object_text)
}

#[test]
fn a_review_with_repeated_keys_is_answered_as_its_tree_reads() {
    let policies = PolicySet::builtin();
    let snapshot = Snapshot::offline(ClusterProvider::Azure);
    let answer = |body: &str, webhook| {
        let a = admission::answer(body.as_bytes(), webhook, &policies, &snapshot)
            .expect("the review is JSON");
        serde_json::to_string(&a.review).unwrap()
    };
    // Which keys repeat: all of them, the spec alone, or the env values alone (the field an
    // evasion would aim at: a decoy endpoint the reader would see instead of the real one).
    let every: &dyn Fn(&str) -> bool = &|_| true;
    let spec: &dyn Fn(&str) -> bool = &|p| p == "/spec";
    let env_values: &dyn Fn(&str) -> bool = &|p| p.contains("/env/") && p.ends_with("/value");
    let mut denied_differently = 0;
    let mut cases = 0;
    for (name, kind, object) in workload_objects() {
        for (repeat, decoy) in [
            (every, Value::Null),
            (spec, json!({})),
            (
                env_values,
                json!("https://contoso.openai.azure.com/openai/v1"),
            ),
            (env_values, json!("https://api.openai.com/v1")),
        ] {
            for decoy_last in [false, true] {
                let text = with_repeats(&object, "", repeat, &decoy, decoy_last);
                // The tree of the repeated text: the object as serde_json (and the API
                // server's decoder) reads it, last key winning.
                let tree: Value = serde_json::from_str(&text).expect("the text is JSON");
                let tree_text = serde_json::to_string(&tree).unwrap();
                let uid = format!("{name}-{decoy_last}");
                for webhook in Webhook::ALL {
                    let repeated = answer(&review_text(&uid, kind, &tree, &text), webhook);
                    let as_tree = answer(&review_text(&uid, kind, &tree, &tree_text), webhook);
                    assert_eq!(
                        repeated, as_tree,
                        "{name} ({webhook:?}, decoy {decoy} last: {decoy_last})"
                    );
                    cases += 1;
                    let plain = answer(
                        &review_text(
                            &uid,
                            kind,
                            &object,
                            &serde_json::to_string(&object).unwrap(),
                        ),
                        webhook,
                    );
                    if plain != repeated {
                        denied_differently += 1;
                    }
                }
            }
        }
    }
    eprintln!("{cases} answers compared, {denied_differently} changed by the decoys");
    assert!(cases > 1000, "{cases} cases");
    // The decoys must matter somewhere, or the test could not tell the two readings apart.
    assert!(denied_differently > 0);
}

/// A review's request as the API server orders it (`kind` before the objects, which the review's
/// parse then reads in the same pass) or with the objects moved first (they are then kept as
/// text and read after: the reading hostguard always had). `fields` are the request's keys with
/// their JSON text, in the API server's order; moving is stable, so that of a repeated key the
/// same one stays last (the one a JSON decoder keeps).
fn request_review(fields: &[(&str, String)], objects_first: bool) -> String {
    let is_object = |k: &str| k == "object" || k == "oldObject";
    let mut ordered: Vec<&(&str, String)> = fields.iter().collect();
    if objects_first {
        ordered.sort_by_key(|(k, _)| !is_object(k));
    }
    let parts: Vec<String> = ordered
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
        .collect();
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{{}}}}}"#,
        parts.join(",")
    )
}

/// The request fields of a review of `object` (its type from the object), as the API server
/// writes them, with `extra` appended and `object`/`oldObject` as given (None: left out).
fn request_fields(
    uid: &str,
    kind: WorkloadKind,
    object: &Value,
    operation: &str,
    new: Option<String>,
    old: Option<String>,
) -> Vec<(&'static str, String)> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = json!({"group": group, "version": version, "kind": kind.as_str()}).to_string();
    let mut fields = vec![
        ("uid", json!(uid).to_string()),
        ("kind", gvk.clone()),
        (
            "resource",
            json!({"group": group, "version": version, "resource": "things"}).to_string(),
        ),
        ("requestKind", gvk),
        ("namespace", json!("team-a").to_string()),
        ("operation", json!(operation).to_string()),
        ("userInfo", json!({"username": "one-pass"}).to_string()),
    ];
    if let Some(new) = new {
        fields.push(("object", new));
    }
    if let Some(old) = old {
        fields.push(("oldObject", old));
    }
    fields.push(("dryRun", "false".to_string()));
    fields
}

/// JSON object keys are unordered, so a review must be answered the same whatever the order of
/// its request's keys (of a repeated key, the last is the one read). That holds the one-pass reading (objects read as soon as `request.kind`
/// has named their kind) to the reading with the objects kept as text: every workload of the
/// repository and corpus, as CREATE, UPDATE (with an old object) and DELETE (the old object
/// only, and with the object but no name), on both webhooks; then the cases the one-pass
/// reading must hand back (an object whose type fields disagree with `request.kind`, a field of
/// the wrong type, repeated request keys with the decoy first and last, a mistyped request
/// field, a miscased key, `null` objects). The answers, what is logged of the request, and the
/// ConfigMaps the webhook would fetch must be the same.
#[test]
fn a_review_is_answered_the_same_whatever_the_order_of_its_request_keys() {
    let policies = PolicySet::builtin();
    let snapshot = Snapshot::offline(ClusterProvider::Azure);
    let outcome = |body: &str, webhook| {
        let a = admission::answer(body.as_bytes(), webhook, &policies, &snapshot)
            .map_err(|e| e.to_string());
        let refs = match admission::parse(body.as_bytes()) {
            Ok(admission::Parsed::Review(review)) => Some(review.config_map_refs()),
            _ => None,
        };
        a.map(|a| (serde_json::to_string(&a.review).unwrap(), a.info, refs))
    };
    let mut cases = 0;
    let mut denied = 0;
    let mut compare = |name: &str, fields: &[(&str, String)]| {
        for webhook in Webhook::ALL {
            let in_order = outcome(&request_review(fields, false), webhook);
            let objects_first = outcome(&request_review(fields, true), webhook);
            assert_eq!(in_order, objects_first, "{name} ({webhook:?})");
            if let Ok((review, _, _)) = &in_order
                && review.contains("\"allowed\":false")
            {
                denied += 1;
            }
            cases += 1;
        }
    };
    let text_of = |o: &Value| serde_json::to_string(o).unwrap();
    for (name, kind, object) in workload_objects() {
        let text = text_of(&object);
        let without_name = {
            let mut o = object.clone();
            if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("name");
            }
            text_of(&o)
        };
        let uid = name.clone();
        let as_created = request_fields(&uid, kind, &object, "CREATE", Some(text.clone()), None);
        compare(&format!("{name} CREATE"), &as_created);
        let changed = with(&object, "/metadata/labels", json!({"changed": "yes"}));
        compare(
            &format!("{name} UPDATE"),
            &request_fields(
                &uid,
                kind,
                &object,
                "UPDATE",
                Some(text_of(&changed)),
                Some(text.clone()),
            ),
        );
        compare(
            &format!("{name} DELETE"),
            &request_fields(
                &uid,
                kind,
                &object,
                "DELETE",
                Some("null".into()),
                Some(text.clone()),
            ),
        );
        compare(
            &format!("{name} DELETE with an object and no name"),
            &request_fields(&uid, kind, &object, "DELETE", Some(without_name), None),
        );
        // Type fields that disagree with request.kind, and ones that are absent.
        for (pointer, value) in [
            ("/kind", json!("Service")),
            ("/apiVersion", json!("v2")),
            ("/kind", json!(7)),
            ("/kind", Value::Null),
            ("/apiVersion", json!("")),
        ] {
            let o = text_of(&with(&object, pointer, value.clone()));
            compare(
                &format!("{name} {pointer}={value}"),
                &request_fields(&uid, kind, &object, "CREATE", Some(o), None),
            );
        }
        // A field of the wrong type where the one-pass reading reads it.
        let mut wrong = Vec::new();
        pointers(&object, String::new(), 4, &mut wrong);
        for pointer in wrong.iter().take(24) {
            let o = text_of(&with(&object, pointer, json!(12)));
            compare(
                &format!("{name} {pointer}=12"),
                &request_fields(&uid, kind, &object, "CREATE", Some(o), None),
            );
        }
        // The envelope's own hazards.
        let mut repeated_object = as_created.clone();
        repeated_object.insert(
            repeated_object.len() - 1,
            (
                "object",
                json!({"apiVersion": "v1", "kind": "Pod"}).to_string(),
            ),
        );
        compare(&format!("{name} object twice"), &repeated_object);
        let decoy_first: Vec<_> = std::iter::once(("object", "{}".to_string()))
            .chain(as_created.iter().cloned())
            .collect();
        compare(&format!("{name} decoy object first"), &decoy_first);
        let mut repeated_uid = as_created.clone();
        repeated_uid.push(("uid", json!("other").to_string()));
        compare(&format!("{name} uid twice"), &repeated_uid);
        let mut repeated_kind = as_created.clone();
        repeated_kind.push((
            "kind",
            json!({"group": "", "version": "v1", "kind": "Pod"}).to_string(),
        ));
        compare(&format!("{name} kind twice"), &repeated_kind);
        let mut mistyped = as_created.clone();
        mistyped.push(("subResource", "5".to_string()));
        compare(&format!("{name} mistyped subResource"), &mistyped);
        let mut miscased = as_created.clone();
        miscased.push(("Object", "{}".to_string()));
        compare(&format!("{name} miscased Object"), &miscased);
        compare(
            &format!("{name} null object"),
            &request_fields(&uid, kind, &object, "CREATE", Some("null".into()), None),
        );
        compare(
            &format!("{name} no object"),
            &request_fields(&uid, kind, &object, "UPDATE", None, Some(text.clone())),
        );
    }
    eprintln!("{cases} answers compared in both key orders, {denied} of them denials");
    assert!(cases > 4000, "{cases} cases");
    // Denials among them, or the comparison could not tell a reading that allows everything.
    assert!(denied > 100, "{denied} denials");
}
